"""Conversion entry points with hls4ml's signatures: front end + passes -> Model."""

from __future__ import annotations

import copy
import difflib
import warnings
from typing import Any

from .config import ConfigError, ConfigWarning, config_from_graph, resolve_config
from .ir import Graph
from .model import BACKENDS, IO_TYPES, Model
from .passes.bn_fuse import fuse_batchnorm
from .passes.precision import assign_types

DEFAULT_PART = 'xcvu13p-flga2577-2-e'
#: keyword arguments hls4ml's converters accept that change nothing in fpga4ml's emulator
_ACCEPTED_KWARGS = ('input_data_tb', 'output_data_tb', 'board', 'clock_uncertainty', 'namespace',
                    'write_weights_txt', 'write_tar', 'hls_config')


def _choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    for a in allowed:
        if str(value).lower() == a.lower():
            return a
    raise ConfigError(f'{what} must be one of {list(allowed)}, got {value!r}')


def convert_graph(graph: Graph, hls_config: dict | None = None, output_dir: str = 'my-fpga4ml-prj',
                  project_name: str = 'myproject', backend: str = 'Vitis', part: str | None = None,
                  clock_period: float = 5, io_type: str = 'io_parallel', **kwargs: Any) -> Model:
    """Configure, fuse, type and quantize a front-end graph into a Model."""
    for key in kwargs:
        if key not in _ACCEPTED_KWARGS:
            close = difflib.get_close_matches(key, list(_ACCEPTED_KWARGS), n=1)
            hint = f'; did you mean {close[0]!r}?' if close else ''
            warnings.warn(f'convert: unknown keyword argument {key!r} is ignored{hint}', ConfigWarning, stacklevel=3)
    settings = {
        'backend': _choose(backend, BACKENDS, 'backend'),
        'io_type': _choose(io_type, IO_TYPES, 'io_type'),
        'output_dir': str(output_dir),
        'project_name': str(project_name),
        'part': part or DEFAULT_PART,
        'clock_period': float(clock_period),
        'clock_uncertainty': kwargs.get('clock_uncertainty'),
    }
    if settings['clock_period'] <= 0:
        raise ConfigError(f'clock_period must be a positive number of nanoseconds, got {clock_period!r}')
    if not str(project_name).isidentifier():
        raise ConfigError(f'project_name must be a C identifier, got {project_name!r}')
    config = copy.deepcopy(hls_config) if hls_config is not None else config_from_graph(graph)
    model_cfg = resolve_config(graph, config)
    fuse_batchnorm(graph)
    intervals = assign_types(graph, model_cfg)
    return Model(graph, intervals, config, settings)


def config_from_keras_model(model, granularity: str = 'model', backend: str | None = None,
                            default_precision: str = 'fixed<16,6>', default_reuse_factor: int = 1,
                            max_precision: str | None = None) -> dict:
    """hls4ml-compatible config dict for a Keras model (object or .keras path)."""
    from .frontends.keras import keras_to_graph, load_keras_model

    if backend is not None:
        _choose(backend, BACKENDS, 'backend')
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
