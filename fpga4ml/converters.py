"""hls4ml-style module path: `fpga4ml.converters.convert_from_keras_model`, `convert_from_config`, ...

`convert_from_config(config)` converts from a configuration dictionary or YAML file with hls4ml's
keys (KerasModel / OnnxModel / PytorchModel, OutputDir, ProjectName, Backend, Part, ClockPeriod,
ClockUncertainty, IOType, HLSConfig, InputShape, ...). YAML is read by fpga4ml's safe loader
(yaml_io.load_yaml: plain data only); model files are opened by the frameworks' safe loaders
(Keras with safe_mode=True, ONNX as data). A PyTorch model must be the module object: hls4ml
unpickles a path with torch.load, which can run code from the file, so a path is refused.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path
from typing import Any

from .config import ConfigError, ConfigWarning
from .convert import DEFAULT_PART, convert_from_keras_model, convert_from_onnx_model, convert_from_pytorch_model
from .convert import convert_graph
from .saved import load_saved_model

__all__ = ['convert_from_keras_model', 'convert_from_pytorch_model', 'convert_graph', 'convert_from_onnx_model',
           'convert_from_config', 'create_config', 'load_saved_model', 'parse_yaml_config']

#: the model keys of a conversion configuration, in the order hls4ml looks for them
MODEL_KEYS = ('OnnxModel', 'PytorchModel', 'KerasModel')
#: the other keys hls4ml's conversion configurations hold (create_config's, the testbench data, the board)
SETTING_KEYS = ('OutputDir', 'ProjectName', 'Backend', 'Version', 'Part', 'Board', 'ClockPeriod', 'ClockUncertainty',
                'IOType', 'HLSConfig', 'WriterConfig', 'InputShape', 'InputData', 'OutputPredictions',
                'AcceleratorConfig')
#: hls4ml's front-end switches under HLSConfig/Model that fpga4ml has no use for (its Keras 3 front end is the only one)
_FRONT_END_SWITCHES = ('AllowDAFallback', 'AllowV2Fallback')
#: clock uncertainty per back end, as hls4ml's create_initial_config sets it (Verilog: none)
_UNCERTAINTY = {'vivado': '12.5%', 'vitis': '27%'}


def parse_yaml_config(config_file: str | os.PathLike) -> dict:
    """The conversion configuration in a YAML file, read safely (hls4ml's parse_yaml_config).

    hls4ml's ``!keras_model path`` tag reads as the path; the model is loaded by convert_from_config.
    """
    from .yaml_io import load_yaml

    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f'convert_from_config: no such configuration file {str(path)!r}')
    print('Loading configuration from', config_file)
    config = load_yaml(path.read_text(encoding='utf-8'), str(path))
    if not isinstance(config, dict):
        raise ConfigError(f'{path}: a conversion configuration must be a mapping of keys such as KerasModel, '
                          f'OutputDir, HLSConfig; got {type(config).__name__}')
    return config


def create_config(output_dir: str = 'my-hls-test', project_name: str = 'myproject', backend: str = 'Vivado',
                  version: str = '1.0.0', **kwargs: Any) -> dict:
    """An initial conversion configuration, as hls4ml's create_config (backend settings from kwargs).

    kwargs: part, clock_period, clock_uncertainty, io_type (the back end's create_initial_config
    arguments; VivadoAccelerator adds board, interface, driver, input_type, output_type, platform as
    AcceleratorConfig) and namespace, write_weights_txt, write_tar, tb_output_stream, write_emulation_constants
    (Vitis) (WriterConfig; kept for
    hls4ml's layout, fpga4ml's writers do not use them). Other keywords are ignored, as hls4ml does.
    """
    from .convert import ACCELERATOR, _choose
    from .model import BACKENDS

    name = _choose(backend, BACKENDS + (ACCELERATOR,), 'backend')
    if name == ACCELERATOR:
        from .backends.accelerator import create_initial_config

        head = {'OutputDir': output_dir, 'ProjectName': project_name, 'Backend': name, 'Version': version}
        return {**head, **create_initial_config(**kwargs)}
    config = {'OutputDir': output_dir, 'ProjectName': project_name, 'Backend': name, 'Version': version}

    def pick(key: str, default: Any) -> Any:
        value = kwargs.get(key)
        return default if value is None else value

    config['Part'] = pick('part', DEFAULT_PART)
    config['ClockPeriod'] = pick('clock_period', 5)
    config['ClockUncertainty'] = pick('clock_uncertainty', _UNCERTAINTY.get(name.lower()))
    config['IOType'] = pick('io_type', 'io_parallel')
    config['HLSConfig'] = {}
    config['WriterConfig'] = {'Namespace': kwargs.get('namespace'), 'WriteWeightsTxt': pick('write_weights_txt', True),
                              'WriteTar': pick('write_tar', False), 'TBOutputStream': pick('tb_output_stream', 'both')}
    if name == 'Vitis':
        config['WriterConfig']['WriteEmulationConstants'] = pick('write_emulation_constants', False)
    return config


def _check_keys(config: dict) -> None:
    """Warn once per key that is not one of hls4ml's conversion keys, naming the closest one."""
    known = MODEL_KEYS + SETTING_KEYS
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f'; did you mean {close[0]!r}?' if close else f'; the keys are {list(known)}'
            warnings.warn(f'convert_from_config: unknown key {key!r} is ignored{hint}', ConfigWarning, stacklevel=3)
    if 'KerasH5' in config or 'KerasJson' in config:
        raise ConfigError('convert_from_config: KerasH5/KerasJson (Keras 2 files) are not supported; save the model '
                          'as a .keras file and name it with KerasModel')
    found = [key for key in MODEL_KEYS if key in config]
    if not found:
        raise ConfigError(f'convert_from_config: the configuration names no model; give one of {list(MODEL_KEYS)}')


def _hls_config(config: dict) -> dict | None:
    """HLSConfig without hls4ml's front-end switches (None when absent)."""
    hls = config.get('HLSConfig')
    if hls is None:
        return None
    if not isinstance(hls, dict):
        raise ConfigError(f'convert_from_config: HLSConfig must be a mapping (Model, LayerType, LayerName), '
                          f'got {hls!r}')
    hls = dict(hls)
    if isinstance(hls.get('Model'), dict):
        hls['Model'] = {k: v for k, v in hls['Model'].items() if k not in _FRONT_END_SWITCHES}
    return hls


def _arguments(config: dict) -> dict[str, Any]:
    """The converter keyword arguments a configuration gives (hls4ml's defaults where a key is absent)."""
    args = {'output_dir': config.get('OutputDir', 'my-hls-test'),
            'project_name': config.get('ProjectName', 'myproject'),
            'backend': config.get('Backend', 'Vivado'), 'part': config.get('Part'),
            'clock_period': config.get('ClockPeriod', 5), 'io_type': config.get('IOType', 'io_parallel')}
    for key, arg in (('ClockUncertainty', 'clock_uncertainty'), ('Board', 'board'), ('InputData', 'input_data_tb'),
                     ('OutputPredictions', 'output_data_tb')):
        if config.get(key) is not None:
            args[arg] = config[key]
    if config.get('AcceleratorConfig') is not None:  # VivadoAccelerator: board, interface, driver, word types
        from .backends.accelerator.boards import config_arguments

        args.update(config_arguments(config['AcceleratorConfig']))
    return args


def convert_from_config(config: str | os.PathLike | dict):
    """Convert the model a configuration names (a YAML file path or a dict with hls4ml's keys) into a Model.

    As hls4ml, OnnxModel is looked for first, then PytorchModel, then KerasModel; KerasModel and
    OnnxModel may be a file path or the model object, PytorchModel must be the torch.nn.Module (with
    InputShape).
    """
    if isinstance(config, (str, os.PathLike)):
        config = parse_yaml_config(config)
    if not isinstance(config, dict):
        raise ConfigError(f'convert_from_config: expected a YAML file path or a dict, got {type(config).__name__}')
    _check_keys(config)
    args, hls = _arguments(config), _hls_config(config)
    if 'OnnxModel' in config:
        return convert_from_onnx_model(config['OnnxModel'], hls_config=hls, **args)
    if 'PytorchModel' in config:
        return _convert_pytorch(config, hls, args)
    return convert_from_keras_model(config['KerasModel'], hls_config=hls, **args)


def _convert_pytorch(config: dict, hls: dict | None, args: dict):
    """PytorchModel must be the module: a path would have to be unpickled, which can run code."""
    model = config['PytorchModel']
    if isinstance(model, (str, os.PathLike)):
        raise ConfigError(f'convert_from_config: PytorchModel {str(model)!r} is a path; loading a pickled PyTorch '
                          'model (torch.load) can run code from the file, so fpga4ml does not do it. Pass the '
                          'torch.nn.Module in a dict configuration, or export the model to ONNX and use OnnxModel')
    if config.get('InputShape') is None:
        raise ConfigError('convert_from_config: PytorchModel needs InputShape (the input shape without the batch)')
    return convert_from_pytorch_model(model, hls_config=hls, input_shape=config['InputShape'], **args)


def convert_from_symbolic_expression(expr, n_symbols=None, lut_functions=None, use_built_in_lut_functions=False,
                                     output_dir='my-hls-test', project_name='myproject', **kwargs: Any):
    """Convert sympy/string expressions (or a PySR hall-of-fame CSV) into a Model (fpga4ml/symbolic, docs/symbolic.md)."""
    from .symbolic import convert_from_symbolic_expression as convert

    return convert(expr, n_symbols, lut_functions, use_built_in_lut_functions, output_dir, project_name, **kwargs)
