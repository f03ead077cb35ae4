"""Saved models: a converted model as one versioned JSON file, and back, without running code from it.

`save_model(model, path)` writes the typed graph (every node's op, inputs, shape, attributes, float
weights, resolved configuration, fixed-point types and quantized weights), the hls4ml-style
configuration and the model settings into one UTF-8 JSON file (hls4ml's ``.fml`` suffix is added
when missing, as hls4ml does; the content is JSON, not hls4ml's tar archive). Values JSON has no
form for are written as one-key objects: ``{"$tuple": [...]}``, ``{"$array": {"dtype", "shape",
"data"}}``, ``{"$fixed": "fixed<16,6>"}``, ``{"$table": {...}}``, ``{"$scalar": [dtype, value]}``,
``{"$float": "inf"}``, ``{"$dict": [[key, value], ...]}`` (a dict whose keys are not plain strings).
Floats are written with Python's shortest round-trip repr, so every weight reads back to the same bits.

`load_saved_model(path)` reads it with the standard JSON parser (no pickle, no imports, nothing
executed), checks every value (an error names the key path) and types the graph again with the
semantics layer. The derived fields (`types`, `qweights` and the tables and bounds in `attrs`) are
compared with what the file says: a file edited in one place but not in the other, or corrupted,
raises. `types` and `qweights` may be left out; they are then derived from the weights and the
configuration. A file of another format or format version raises.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .config import (ConfigError, ConfigWarning, _check_multipliers, _check_reuse, _check_strategy,
                     _check_table_semantics, check_config_shape, check_variable_products, resolve_config)
from .fixed import AUTO, FixedType, PrecisionError, parse_precision
from .ir import OPS, Graph, GraphError, Node, operands
from .semantics.tables import Table
from .serialize import _dumps

FORMAT = 'fpga4ml-saved-model'
FORMAT_VERSION = 1
SUFFIX = '.fml'
#: numpy dtypes an array or scalar in a saved model may have
DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32',
          'float64', 'object')
_TOP_KEYS = ('format', 'format_version', 'fpga4ml_version', 'settings', 'config', 'inputs', 'outputs', 'nodes')
_NODE_KEYS = ('name', 'op', 'source', 'inputs', 'shape', 'attrs', 'weights', 'config', 'types', 'qweights')
_OPTIONAL_NODE_KEYS = ('types', 'qweights')
#: settings every model has; others (added by newer back ends) must be plain scalars
_REQUIRED_SETTINGS = ('backend', 'io_type', 'output_dir', 'project_name', 'part', 'clock_period')
#: deepest nesting accepted in a saved file (graphs are a few levels deep; weights add their rank)
MAX_DEPTH = 64


class SavedModelError(ValueError):
    """A saved model file is of another format or version, corrupted, or inconsistent (names the key)."""


# ---------------------------------------------------------------------------- encoding
def encode(value: Any, where: str = 'value') -> Any:
    """`value` as JSON data that `decode` turns back into an equal value of the same type."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {'$float': str(value)}
    if isinstance(value, np.generic):
        return {'$scalar': [_dtype_name(value.dtype, where), encode(value.item(), where)]}
    if isinstance(value, FixedType):
        return {'$fixed': str(value)}
    if isinstance(value, Table):
        return {'$table': {'index': str(value.index), 'type': str(value.type), 'values': encode(value.values, where),
                           'negated': bool(value.negated), 'shift': int(value.shift)}}
    if isinstance(value, tuple):
        return {'$tuple': [encode(v, f'{where}[{i}]') for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith('$') for k in value):
            return {k: encode(v, f'{where}[{k!r}]') for k, v in value.items()}
        return {'$dict': [[encode(k, where), encode(v, f'{where}[{k!r}]')] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        return {'$array': {'dtype': _dtype_name(value.dtype, where), 'shape': list(value.shape),
                           'data': [encode(v, where) for v in value.ravel().tolist()]}}
    raise SavedModelError(f'{where}: a {type(value).__name__} value cannot be saved')


def _dtype_name(dtype: np.dtype, where: str) -> str:
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise SavedModelError(f'{where}: numpy dtype {name!r} cannot be saved; saved models hold {list(DTYPES)}')
    return name


def decode(data: Any, where: str, depth: int = 0) -> Any:
    """The value `encode` wrote as `data`; SavedModelError naming `where` for anything malformed."""
    if depth > MAX_DEPTH:
        raise SavedModelError(f'{where}: nested more than {MAX_DEPTH} levels deep')
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(v, f'{where}[{i}]', depth + 1) for i, v in enumerate(data)]
    if not isinstance(data, dict):
        raise SavedModelError(f'{where}: unexpected JSON value {data!r}')
    tags = [k for k in data if k.startswith('$')]
    if not tags:
        return {k: decode(v, f'{where}[{k!r}]', depth + 1) for k, v in data.items()}
    if len(data) != 1 or tags[0] not in _DECODERS:
        raise SavedModelError(f'{where}: {sorted(data)} is not a saved value; a tagged value has one key of '
                              f'{sorted(_DECODERS)}')
    return _DECODERS[tags[0]](data[tags[0]], where, depth + 1)


def _decode_float(data: Any, where: str, depth: int) -> float:
    if data not in ('inf', '-inf', 'nan'):
        raise SavedModelError(f"{where}: $float must be 'inf', '-inf' or 'nan', got {data!r}")
    return float(data)


def _decode_scalar(data: Any, where: str, depth: int) -> np.generic:
    if not (isinstance(data, list) and len(data) == 2 and data[0] in DTYPES and data[0] != 'object'):
        raise SavedModelError(f'{where}: $scalar must be [dtype, value] with a numeric dtype, got {data!r}')
    return _array_of([decode(data[1], where, depth)], data[0], (), where)[()]


def _decode_fixed(data: Any, where: str, depth: int = 0) -> FixedType:
    if not isinstance(data, str):
        raise SavedModelError(f'{where}: a fixed-point type must be a string, got {data!r}')
    try:
        t = parse_precision(data)
    except PrecisionError as err:
        raise SavedModelError(f'{where}: {err}') from None
    if not isinstance(t, FixedType) or str(t) != data:
        raise SavedModelError(f'{where}: {data!r} is not a fixed-point type as fpga4ml writes it')
    return t


def _decode_table(data: Any, where: str, depth: int) -> Table:
    keys = ('index', 'type', 'values', 'negated', 'shift')
    if not isinstance(data, dict) or sorted(data) != sorted(keys):
        raise SavedModelError(f'{where}: $table must have exactly the keys {list(keys)}')
    values = decode(data['values'], f'{where}.values', depth)
    if not isinstance(values, np.ndarray) or values.dtype.kind not in 'iu':
        raise SavedModelError(f'{where}.values: a table holds an integer array')
    if not isinstance(data['negated'], bool) or isinstance(data['shift'], bool) or not isinstance(data['shift'], int):
        raise SavedModelError(f'{where}: negated must be a bool and shift an int')
    return Table(_decode_fixed(data['index'], f'{where}.index'), values, _decode_fixed(data['type'], f'{where}.type'),
                 negated=data['negated'], shift=data['shift'])


def _decode_tuple(data: Any, where: str, depth: int) -> tuple:
    if not isinstance(data, list):
        raise SavedModelError(f'{where}: $tuple must be a list')
    return tuple(decode(v, f'{where}[{i}]', depth) for i, v in enumerate(data))


def _decode_dict(data: Any, where: str, depth: int) -> dict:
    if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
        raise SavedModelError(f'{where}: $dict must be a list of [key, value] pairs')
    out = {}
    for key, value in data:
        key = decode(key, where, depth)
        try:
            out[key] = decode(value, f'{where}[{key!r}]', depth)
        except TypeError:
            raise SavedModelError(f'{where}: key {key!r} cannot be a dict key') from None
    return out


def _decode_array(data: Any, where: str, depth: int) -> np.ndarray:
    if not isinstance(data, dict) or sorted(data) != ['data', 'dtype', 'shape']:
        raise SavedModelError(f"{where}: $array must have exactly the keys ['dtype', 'shape', 'data']")
    dtype, shape, flat = data['dtype'], data['shape'], data['data']
    if dtype not in DTYPES:
        raise SavedModelError(f'{where}: array dtype {dtype!r} is not one of {list(DTYPES)}')
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise SavedModelError(f'{where}: array shape must be a list of non-negative ints, got {shape!r}')
    if not isinstance(flat, list) or len(flat) != math.prod(shape):
        raise SavedModelError(f'{where}: array of shape {shape} needs {math.prod(shape)} values, '
                              f'the file has {len(flat) if isinstance(flat, list) else flat!r}')
    return _array_of([decode(v, where, depth) for v in flat], dtype, tuple(shape), where)


def _array_of(values: list, dtype: str, shape: tuple, where: str) -> np.ndarray:
    """A numpy array of `dtype` holding exactly `values` (each of the right Python type)."""
    kind = np.dtype(dtype).kind
    allowed = {'b': (bool,), 'i': (int,), 'u': (int,), 'f': (int, float), 'O': (int, float)}[kind]
    for v in values:
        if not isinstance(v, allowed) or (kind != 'b' and isinstance(v, bool)):
            raise SavedModelError(f'{where}: value {v!r} does not belong in a {dtype} array')
    if kind == 'O':
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(shape)
    if kind in 'iu':
        info = np.iinfo(dtype)
        bad = next((v for v in values if not info.min <= v <= info.max), None)
        if bad is not None:
            raise SavedModelError(f'{where}: {bad} is out of range for {dtype}')
    try:  # a float is rounded to the array's dtype (exact for every value save_model wrote)
        return np.array(values, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as err:
        raise SavedModelError(f'{where}: {err}') from None


_DECODERS = {'$float': _decode_float, '$scalar': _decode_scalar, '$fixed': _decode_fixed, '$table': _decode_table,
             '$tuple': _decode_tuple, '$dict': _decode_dict, '$array': _decode_array}


# ---------------------------------------------------------------------------- saving
def saved_path(path: str | os.PathLike) -> Path:
    """The file `save_model` writes for `path`: '.fml' added to a str without it, a Path's suffix replaced."""
    if isinstance(path, str):
        return Path(path if path.endswith(SUFFIX) else path + SUFFIX)
    return Path(path).with_suffix(SUFFIX)


def node_record(node: Node) -> dict[str, Any]:
    """One typed node as saved-model data (graph.json's fields, exact, plus the float weights)."""
    where = f'layer {node.name!r}'
    return {
        'name': node.name, 'op': node.op, 'source': node.source, 'inputs': list(node.inputs),
        'shape': list(node.shape),
        'attrs': encode(node.attrs, f'{where} attrs'),
        'weights': {k: encode(np.asarray(v), f'{where} weights[{k!r}]') for k, v in node.weights.items()},
        'config': encode(node.config, f'{where} config'),
        'types': {var: str(t) for var, t in node.types.items()},
        'qweights': {k: np.asarray(v, dtype=np.int64).tolist() for k, v in node.qweights.items()},
    }


def _plain_settings(settings: dict) -> dict:
    """The settings as plain values: VivadoAccelerator settings as hls4ml's AcceleratorConfig dict."""
    plain = dict(settings)
    if plain.get('accelerator') is not None:
        plain['accelerator'] = plain['accelerator'].as_config()
    return plain


def saved_model_json(model) -> str:
    """The text `save_model` writes for `model` (deterministic: the same model gives the same text)."""
    from . import __version__

    data = {
        'format': FORMAT, 'format_version': FORMAT_VERSION, 'fpga4ml_version': __version__,
        'settings': encode(_plain_settings(model.settings), 'settings'),
        'config': encode(model.config, 'config'),
        'inputs': list(model.graph.inputs), 'outputs': list(model.graph.outputs),
        'nodes': [node_record(node) for node in model.graph],
    }
    return _dumps(data, sort_keys=False) + '\n'


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a converted model into one JSON file (hls4ml's `ModelGraph.save`); returns the path written.

    '.fml' is appended to a str path without it (a Path's suffix is replaced), as hls4ml does. The
    file is published atomically: a reader sees the old file or the complete new one.
    """
    target = saved_path(path)
    text = saved_model_json(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8', newline='\n') as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---------------------------------------------------------------------------- loading
def _read(path: Path) -> dict:
    """The JSON object of a saved model file; SavedModelError for anything else."""
    if not path.is_file():
        raise FileNotFoundError(f'load_saved_model: no such file {str(path)!r}')
    try:
        data = json.loads(path.read_text(encoding='utf-8'), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SavedModelError(f'{path}: not a saved fpga4ml model (not UTF-8 JSON: {err})') from None
    except RecursionError:
        raise SavedModelError(f'{path}: nested too deeply to be a saved fpga4ml model') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise SavedModelError(f'{path}: not a saved fpga4ml model (format {found!r}, expected {FORMAT!r})')
    if data.get('format_version') != FORMAT_VERSION:
        raise SavedModelError(f"{path}: format_version {data.get('format_version')!r} is not supported; this "
                              f'fpga4ml reads format_version {FORMAT_VERSION} (the file says it was written by '
                              f"fpga4ml {data.get('fpga4ml_version')!r})")
    _check_keys(data, _TOP_KEYS, (), 'the file')
    return data


def _refuse_constant(name: str) -> None:
    raise SavedModelError(f'{name} is not JSON (non-finite floats are saved as {{"$float": ...}})')


def _check_keys(data: dict, allowed: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    missing = [k for k in allowed if k not in data and k not in optional]
    unknown = [k for k in data if k not in allowed]
    if missing or unknown:
        raise SavedModelError(f'{where}: ' + '; '.join(
            ([f'missing keys {missing}'] if missing else []) + ([f'unknown keys {unknown}'] if unknown else [])))


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SavedModelError(f'{where}: must be a list of layer names (strings), got {value!r}')
    return value


def _settings(data: Any) -> dict[str, Any]:
    """The model settings, each checked as convert() checks it."""
    from .convert import ACCELERATOR, check_clock_period
    from .model import BACKENDS, IO_TYPES
    from .naming import check_project_name

    settings = decode(data, 'settings')
    if not isinstance(settings, dict):
        raise SavedModelError(f'settings: must be a dict, got {settings!r}')
    missing = [k for k in _REQUIRED_SETTINGS if k not in settings]
    if missing:
        raise SavedModelError(f'settings: missing keys {missing}')
    accelerator = settings.pop('accelerator', None)
    for key, allowed in (('backend', BACKENDS + (ACCELERATOR,)), ('io_type', IO_TYPES)):
        if settings[key] not in allowed:
            raise SavedModelError(f'settings[{key!r}]: {settings[key]!r} is not one of {list(allowed)}')
    for key in ('output_dir', 'project_name', 'part'):
        if not isinstance(settings[key], str):
            raise SavedModelError(f'settings[{key!r}]: must be a string, got {settings[key]!r}')
    for key, value in settings.items():
        if key not in _REQUIRED_SETTINGS and not (value is None or isinstance(value, (bool, int, float, str))):
            raise SavedModelError(f'settings[{key!r}]: must be a plain value, got {value!r}')
    try:
        check_project_name(settings['project_name'])
        settings['clock_period'] = check_clock_period(settings['clock_period'])
        if accelerator is not None:
            from .backends.accelerator.boards import settings_from_config

            settings['accelerator'] = settings_from_config(accelerator, settings['part'], "settings['accelerator']")
            settings['part'] = settings['accelerator'].part  # the board's part, as convert() sets it
    except (ConfigError, ValueError) as err:
        raise SavedModelError(f'settings: {err}') from None
    return settings


def _node(record: Any, index: int) -> tuple[Node, dict]:
    """A Node (before typing) from its record, and the record's derived fields to check after typing."""
    where = f'nodes[{index}]'
    if not isinstance(record, dict):
        raise SavedModelError(f'{where}: must be a dict, got {type(record).__name__}')
    _check_keys(record, _NODE_KEYS, _OPTIONAL_NODE_KEYS, where)
    name = record['name']
    if not isinstance(name, str) or not name:
        raise SavedModelError(f'{where}.name: must be a non-empty string, got {name!r}')
    where = f'nodes[{index}] ({name!r})'
    if record['op'] not in OPS:
        raise SavedModelError(f"{where}.op: {record['op']!r} is not an op of this fpga4ml ({sorted(OPS)})")
    if not isinstance(record['source'], str):
        raise SavedModelError(f"{where}.source: must be a string, got {record['source']!r}")
    shape = record['shape']
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise SavedModelError(f'{where}.shape: must be a list of positive ints, got {shape!r}')
    attrs, config = decode(record['attrs'], f'{where}.attrs'), decode(record['config'], f'{where}.config')
    weights = decode(record['weights'], f'{where}.weights')
    for key, value in (('attrs', attrs), ('config', config), ('weights', weights)):
        if not isinstance(value, dict):
            raise SavedModelError(f'{where}.{key}: must be a dict, got {type(value).__name__}')
    for key, value in weights.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != 'f':
            raise SavedModelError(f'{where}.weights[{key!r}]: must be a float array')
    _check_node_config(config, f'{where}.config')
    node = Node(name, record['op'], _names(record['inputs'], f'{where}.inputs'), tuple(shape), attrs=attrs,
                weights=weights, source=record['source'], config=config)
    return node, {'types': record.get('types'), 'qweights': record.get('qweights'), 'attrs': record['attrs']}


def _check_node_config(config: dict, where: str) -> None:
    """A node's resolved configuration: known keys checked as resolve_config checks them, others plain."""
    checks = {'ReuseFactor': _check_reuse, 'Strategy': _check_strategy, 'Multipliers': _check_multipliers,
              'VariableProducts': check_variable_products,
              'TableSemantics': _check_table_semantics,
              'ParallelizationFactor': lambda v, w: _check_reuse(v, w, 'ParallelizationFactor')}
    try:
        for key, value in config.items():
            if key in checks:
                checks[key](value, f'{where}[{key!r}]')
            elif key == 'Precision':
                types_ok = isinstance(value, dict) and all(v == AUTO or isinstance(v, FixedType)
                                                           for v in value.values())
                if not types_ok:
                    raise SavedModelError(f"{where}['Precision']: must map variables to fixed-point types or 'auto'")
            elif not (value is None or isinstance(value, (bool, int, float, str))):
                raise SavedModelError(f'{where}[{key!r}]: must be a plain value, got {value!r}')
    except ConfigError as err:
        raise SavedModelError(str(err)) from None


def _graph(data: dict) -> tuple[Graph, list[dict]]:
    """The untyped graph of the file (linted) and each node's derived fields."""
    if not isinstance(data['nodes'], list) or not data['nodes']:
        raise SavedModelError('nodes: must be a non-empty list of layers')
    graph, derived = Graph(), []
    for index, record in enumerate(data['nodes']):
        node, fields = _node(record, index)
        try:
            graph.add(node)
        except GraphError as err:
            raise SavedModelError(f'nodes[{index}] ({node.name!r}): {err}') from None
        derived.append(fields)
    graph.inputs, graph.outputs = _names(data['inputs'], 'inputs'), _names(data['outputs'], 'outputs')
    try:
        _check_structure(graph)
    except (GraphError, ValueError, KeyError, TypeError, IndexError) as err:
        raise SavedModelError(f'the saved graph is not valid: {err}') from None
    return graph, derived


def _check_structure(graph: Graph) -> None:
    """Names, order, inputs and outputs (Graph.validate), Input nodes, and every shape as the op's recipe infers it.

    Not Graph.lint: conversion passes annotate nodes (bn_fuse's 'fused') beyond the attributes lint accepts.
    """
    from .semantics import output_shapes

    graph.validate()
    shapes: dict = {}
    for node in graph:
        if (node.op == 'Input') != (node.name in graph.inputs) or (node.op == 'Input' and node.inputs):
            raise GraphError(f'node {node.name!r}: an Input node must be listed in the graph inputs and read nothing')
        inferred = (node.shape,) if node.op == 'Input' else output_shapes(node, operands(node, shapes))
        shapes[node.name] = inferred if len(inferred) > 1 else inferred[0]
        if inferred[0] != node.shape:
            raise GraphError(f'node {node.name!r}: its inputs give shape {inferred[0]}, the file says {node.shape}')


def _model_settings(config: dict) -> dict:
    """The model-level typing settings of `config` (its 'Model' entry, as resolve_config reads it)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConfigWarning)  # shown when the model was converted
        try:
            return resolve_config(Graph(), {'Model': config.get('Model') or {}})
        except ConfigError as err:
            raise SavedModelError(f"config['Model']: {err}") from None


def _check_derived(graph: Graph, derived: list[dict]) -> None:
    """The types, quantized weights and derived attributes the file holds are the ones typing gives."""
    for index, (node, fields) in enumerate(zip(graph, derived)):
        where = f'nodes[{index}] ({node.name!r})'
        if fields['types'] is not None:
            typed = {var: str(t) for var, t in node.types.items()}
            if fields['types'] != typed:
                raise SavedModelError(f"{where}.types: the file says {fields['types']}, the weights and configuration "
                                      f'give {typed}: the file was edited in one place only, or is corrupted')
        if fields['qweights'] is not None:
            _check_qweights(node, fields['qweights'], where)
        attrs = encode(node.attrs, f'{where}.attrs')
        for key in sorted(set(attrs) | set(fields['attrs'])):
            if attrs.get(key) != fields['attrs'].get(key):
                raise SavedModelError(f'{where}.attrs[{key!r}]: differs from what typing the saved graph gives '
                                      '(tables and bounds are derived from the weights, types and configuration): '
                                      'the file was edited in one place only, or is corrupted')


def _check_qweights(node: Node, stored: Any, where: str) -> None:
    if not isinstance(stored, dict) or sorted(stored) != sorted(node.qweights):
        raise SavedModelError(f'{where}.qweights: keys {sorted(stored) if isinstance(stored, dict) else stored!r}, '
                              f'expected {sorted(node.qweights)}')
    for key, q in node.qweights.items():
        if stored[key] != np.asarray(q).tolist():
            t = node.types.get(key) or node.types.get('weight')
            raise SavedModelError(f'{where}.qweights[{key!r}]: differ from weights[{key!r}] quantized to its type '
                                  f'{t}: the file was edited in one place only, or is corrupted (qweights may be '
                                  'left out: they are then derived from the weights)')


def load_saved_model(file_path: str | os.PathLike, output_dir: str | os.PathLike | None = None):
    """A Model from a file `save_model` wrote (hls4ml's load_saved_model); predicts and writes the same bits.

    `output_dir` replaces the saved model's output directory (where write() and compile() put the project).
    """
    from .model import Model
    from .passes.precision import assign_types

    path = Path(file_path)
    data = _read(path)
    settings = _settings(data['settings'])
    if output_dir is not None:
        settings['output_dir'] = str(output_dir)
    config = decode(data['config'], 'config')
    if not isinstance(config, dict):
        raise SavedModelError(f'config: must be a dict, got {type(config).__name__}')
    try:
        check_config_shape(config)
    except ConfigError as err:
        raise SavedModelError(f'config: {err}') from None
    graph, derived = _graph(data)
    model_cfg = _model_settings(config)
    try:
        intervals = assign_types(graph, model_cfg)
    except (GraphError, ConfigError, PrecisionError, ValueError, KeyError, TypeError) as err:
        raise SavedModelError(f'{path}: typing the saved graph failed: {err}') from None
    _check_derived(graph, derived)
    return Model(graph, intervals, config, settings)
