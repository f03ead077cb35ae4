"""Conversion entry points with hls4ml's signatures: front end + passes -> Model."""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import warnings
from typing import Any

import numpy as np

from .config import ConfigError, ConfigWarning, check_config_shape, config_from_graph, resolve_config
from .ir import Graph
from .model import BACKENDS, IO_TYPES, Model
from .naming import check_project_name
from .passes.bn_fuse import fuse_batchnorm
from .passes.precision import assign_types
from .passes.validate import check_finite_weights, check_weight_ranges

DEFAULT_PART = 'xcvu13p-flga2577-2-e'
#: keyword arguments hls4ml's converters accept that change nothing in fpga4ml's emulator
_ACCEPTED_KWARGS = ('input_data_tb', 'output_data_tb', 'board', 'clock_uncertainty', 'namespace',
                    'write_weights_txt', 'write_tar', 'hls_config')
#: hls4ml's VivadoAccelerator keywords (backend='VivadoAccelerator'; other back ends ignore them, as hls4ml)
_ACCELERATOR_KWARGS = ('board', 'interface', 'driver', 'input_type', 'output_type', 'platform')
ACCELERATOR = 'VivadoAccelerator'


def _choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    for a in allowed:
        if str(value).lower() == a.lower():
            return a
    raise ConfigError(f'{what} must be one of {list(allowed)}, got {value!r}')


def check_clock_period(value: Any) -> float:
    """The clock period in ns as a float; anything but a finite positive real number raises."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ConfigError(f'clock_period must be a finite positive number of nanoseconds (int or float), '
                          f'got {value!r} of type {type(value).__name__}')
    period = float(value)
    if not math.isfinite(period) or period <= 0:
        raise ConfigError(f'clock_period must be a finite positive number of nanoseconds, got {value!r}')
    return period


def convert_graph(graph: Graph, hls_config: dict | None = None, output_dir: str = 'my-fpga4ml-prj',
                  project_name: str = 'myproject', backend: str = 'Vitis', part: str | None = None,
                  clock_period: float = 5, io_type: str = 'io_parallel', **kwargs: Any) -> Model:
    """Configure, fuse, type and quantize a front-end graph into a Model."""
    for key in kwargs:
        if key not in _ACCEPTED_KWARGS + _ACCELERATOR_KWARGS:
            close = difflib.get_close_matches(key, list(_ACCEPTED_KWARGS + _ACCELERATOR_KWARGS), n=1)
            hint = f'; did you mean {close[0]!r}?' if close else ''
            warnings.warn(f'convert: unknown keyword argument {key!r} is ignored{hint}', ConfigWarning, stacklevel=3)
    chosen = _choose(backend, BACKENDS + (ACCELERATOR,), 'backend')
    accelerator = None
    if chosen == ACCELERATOR:
        from .backends.accelerator import accelerator_settings

        accelerator = accelerator_settings(part=part, **{k: v for k, v in kwargs.items() if k in _ACCELERATOR_KWARGS})
        part = accelerator.part
    settings = {
        'backend': chosen,
        'io_type': _choose(io_type, IO_TYPES, 'io_type'),
        'output_dir': str(output_dir),
        'project_name': str(project_name),
        'part': part or DEFAULT_PART,
        'clock_period': check_clock_period(clock_period),
        'clock_uncertainty': kwargs.get('clock_uncertainty'),
    }
    if accelerator is not None:
        settings['accelerator'] = accelerator
    check_project_name(project_name)  # the HLS top function and Verilog top module (naming.py)
    if hls_config is not None:
        check_config_shape(hls_config)  # before deepcopy: a self-referencing or 10^9-entry config
    config = copy.deepcopy(hls_config) if hls_config is not None else config_from_graph(graph)
    model_cfg = resolve_config(graph, config)
    check_finite_weights(graph)
    fuse_batchnorm(graph)
    intervals = assign_types(graph, model_cfg)
    if settings['io_type'] == 'io_stream':
        _warn_stream_selu(graph)
    check_weight_ranges(graph)
    return Model(graph, intervals, config, settings)


def _warn_stream_selu(graph: Graph) -> None:
    """hls4ml's io_stream selu differs from its io_parallel one; fpga4ml computes the io_parallel meaning: say so."""
    from .semantics.tables import hls4ml_tables

    for node in graph:
        if node.op == 'Activation' and node.attrs.get('function') == 'selu' and hls4ml_tables(node):
            warnings.warn(f"layer {node.name!r}: under TableSemantics 'hls4ml' fpga4ml computes hls4ml's io_parallel "
                          'selu (lambda as ap_ufixed<16,1>) for io_stream too; hls4ml 1.3.0\'s io_stream selu casts '
                          'lambda into the input type instead, so its bits may differ (docs/hls4ml-compat.md)',
                          ConfigWarning, stacklevel=4)


def config_from_keras_model(model, granularity: str = 'model', backend: str | None = None,
                            default_precision: str = 'fixed<16,6>', default_reuse_factor: int = 1,
                            max_precision: str | None = None) -> dict:
    """hls4ml-compatible config dict for a Keras model (object or .keras path)."""
    from .frontends.keras import keras_to_graph, load_keras_model

    if backend is not None:
        _choose(backend, BACKENDS + (ACCELERATOR,), 'backend')
    graph = keras_to_graph(load_keras_model(model))
    return config_from_graph(graph, granularity, default_precision, default_reuse_factor, max_precision)


def convert_from_keras_model(model, hls_config: dict | None = None, output_dir: str = 'my-fpga4ml-prj',
                             project_name: str = 'myproject', backend: str = 'Vitis', part: str | None = None,
                             clock_period: float = 5, io_type: str = 'io_parallel', **kwargs: Any) -> Model:
    """Convert a Keras 3 model (object or .keras path) into a fpga4ml Model, as hls4ml does."""
    from .frontends.keras import keras_to_graph, load_keras_model

    graph = keras_to_graph(load_keras_model(model))
    return convert_graph(graph, hls_config, output_dir=output_dir, project_name=project_name, backend=backend,
                         part=part, clock_period=clock_period, io_type=io_type, **kwargs)


# --------------------------------------------------------------------------- PyTorch

#: 'Model' keys of a PyTorch config that steer the front end (hls4ml's), not the layers
_PYTORCH_MODEL_KEYS = ('ChannelsLastConversion', 'TransposeOutputs')


def config_from_pytorch_model(model, input_shape, granularity: str = 'model', backend: str | None = None,
                              default_precision: str = 'fixed<16,6>', default_reuse_factor: int = 1,
                              channels_last_conversion: str = 'full', transpose_outputs: bool = False,
                              max_precision: str | None = None) -> dict:
    """hls4ml-compatible config dict for a torch.nn.Module; input_shape excludes the batch (or starts with None).

    As in hls4ml 1.3 the config also holds 'PytorchModel' (the module), 'InputShape' and, under 'Model',
    'ChannelsLastConversion' and 'TransposeOutputs', which convert_from_pytorch_model reads back.
    """
    from .frontends.torch import torch_to_graph

    if backend is not None:
        _choose(backend, BACKENDS + (ACCELERATOR,), 'backend')
    graph = torch_to_graph(model, input_shape, channels_last_conversion, transpose_outputs)
    config = config_from_graph(graph, granularity, default_precision, default_reuse_factor, max_precision)
    config['Model']['ChannelsLastConversion'] = channels_last_conversion
    config['Model']['TransposeOutputs'] = transpose_outputs
    layers = {key: config.pop(key) for key in ('LayerType', 'LayerName') if key in config}
    config['PytorchModel'] = model
    config['InputShape'] = input_shape
    config.update(layers)
    return config


def convert_from_pytorch_model(model, hls_config: dict | None = None, output_dir: str = 'my-fpga4ml-prj',
                               project_name: str = 'myproject', backend: str = 'Vitis', part: str | None = None,
                               clock_period: float = 5, io_type: str = 'io_parallel', input_shape=None,
                               **kwargs: Any) -> Model:
    """Convert a torch.nn.Module into a fpga4ml Model, as hls4ml does.

    The input shape comes from hls_config['InputShape'] (set by config_from_pytorch_model) or `input_shape`;
    the channels-last settings from hls_config['Model'] (default 'full', no output transpose).
    """
    from .frontends.torch import normalize_input_shapes, torch_to_graph

    config = {key: value for key, value in (hls_config or {}).items() if key not in ('PytorchModel', 'InputShape')}
    model_cfg = dict(config.get('Model') or {})
    front = {key: model_cfg.pop(key) for key in _PYTORCH_MODEL_KEYS if key in model_cfg}
    if 'Model' in config:
        config['Model'] = model_cfg
    stored = (hls_config or {}).get('InputShape')
    if input_shape is None:
        input_shape = stored
    elif stored is not None and normalize_input_shapes(stored) != normalize_input_shapes(input_shape):
        raise ConfigError(f"input_shape={input_shape!r} differs from hls_config['InputShape']={stored!r}")
    if input_shape is None:
        raise ConfigError("convert_from_pytorch_model needs the input shape: pass input_shape=(...) or an hls_config "
                          'made by config_from_pytorch_model(model, input_shape)')
    graph = torch_to_graph(model, input_shape, front.get('ChannelsLastConversion', 'full'),
                           front.get('TransposeOutputs', False))
    return convert_graph(graph, config if hls_config is not None else None, output_dir=output_dir,
                         project_name=project_name, backend=backend, part=part, clock_period=clock_period,
                         io_type=io_type, **kwargs)


def config_from_onnx_model(model, granularity: str = 'name', backend: str | None = None,
                           default_precision: str = 'fixed<16,6>', default_reuse_factor: int = 1,
                           max_precision: str | None = None) -> dict:
    """hls4ml-compatible config dict for an ONNX/QONNX model (ModelProto, ModelWrapper or .onnx path)."""
    from .frontends.onnx import onnx_to_graph

    if backend is not None:
        _choose(backend, BACKENDS + (ACCELERATOR,), 'backend')
    graph = onnx_to_graph(model)
    return config_from_graph(graph, granularity, default_precision, default_reuse_factor, max_precision)


def convert_from_onnx_model(model, hls_config: dict | None = None, output_dir: str = 'my-fpga4ml-prj',
                            project_name: str = 'myproject', backend: str = 'Vitis', part: str | None = None,
                            clock_period: float = 5, io_type: str = 'io_parallel', **kwargs: Any) -> Model:
    """Convert an ONNX/QONNX model into a fpga4ml Model, as hls4ml does; predict() takes NCHW inputs like ONNX.

    Without hls_config, the configuration is config_from_onnx_model(model)'s: per-layer 'auto' types.
    """
    from .frontends.onnx import onnx_to_graph

    kwargs.pop('bit_exact', None)  # hls4ml's switch; QONNX types are always honoured exactly here
    graph = onnx_to_graph(model)
    if hls_config is None:  # config_from_onnx_model's defaults: inferred ('auto') per-layer types
        hls_config = config_from_graph(graph, 'name')
    return convert_graph(graph, hls_config, output_dir=output_dir, project_name=project_name, backend=backend,
                         part=part, clock_period=clock_period, io_type=io_type, **kwargs)
