"""Save a converted model's typed graph as plain, deterministic text files.

`write_typed_graph(model, directory)` writes three files:

* ``graph.json``: the typed graph, i.e. every node in evaluation order with its op, inputs, shape,
  attributes, fixed-point types (hls4ml spelling, ``fixed<16,6>``), resolved per-layer configuration
  and quantized weights as integer mantissas (value = mantissa * 2^-frac of the weight's type);
  lookup tables are stored with their index type, value type and integer entries.
* ``config.yml``: the hls4ml-style configuration dictionary the model was converted with; it can be
  passed back to ``fpga4ml convert --config``.
* ``summary.txt``: the per-layer table, as ``print(model)`` shows it.

The same model and configuration give byte-identical files: keys are sorted, there are no
timestamps and no absolute paths (the model's ``output_dir`` is left out). Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .fixed import FixedType
from .ir import Graph, Node
from .semantics.tables import Table

#: identifies the layout of graph.json; bump FORMAT_VERSION when it changes incompatibly
FORMAT = 'fpga4ml-typed-graph'
FORMAT_VERSION = 1
#: model settings saved in graph.json (output_dir is left out: it may be an absolute path)
SAVED_SETTINGS = ('backend', 'io_type', 'project_name', 'part', 'clock_period', 'clock_uncertainty')


class _Skip:
    """Marker for values that have no JSON form (numpy arrays in attrs, arbitrary objects)."""


_SKIP = _Skip()


def _plain(value: Any) -> Any:
    """`value` as JSON/YAML-safe Python data, or `_SKIP` when it has no faithful plain form."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else str(f)  # 'inf', '-inf', 'nan': strict JSON has no such numbers
    if isinstance(value, FixedType):
        return str(value)
    if isinstance(value, Table):
        return {'index': str(value.index), 'type': str(value.type), 'size': len(value),
                'values': np.asarray(value.values).tolist()}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            pv = _plain(v)
            if pv is not _SKIP:
                out[str(k)] = pv
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    return _SKIP  # numpy arrays and other objects


def node_to_dict(node: Node) -> dict[str, Any]:
    """One node as plain data: name, op, source, inputs, shape, attrs, types, config, qweights."""
    return {
        'name': node.name,
        'op': node.op,
        'source': node.source,
        'inputs': list(node.inputs),
        'shape': list(node.shape),
        'attrs': _plain(node.attrs),
        'types': {var: str(t) for var, t in node.types.items()},
        'config': _plain(node.config),
        'qweights': {k: np.asarray(v, dtype=np.int64).tolist() for k, v in node.qweights.items()},
    }


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The typed graph as plain data: {'inputs', 'outputs', 'nodes': [node dicts in order]}."""
    return {
        'inputs': list(graph.inputs),
        'outputs': list(graph.outputs),
        'nodes': [node_to_dict(node) for node in graph],
    }


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _dumps(value: Any, indent: int = 0, sort_keys: bool = True) -> str:
    """Indented JSON (keys sorted unless sort_keys=False), with lists of numbers kept on one line (weights, tables)."""
    pad, inner = ' ' * indent, ' ' * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return '{}'
        keys = sorted(value) if sort_keys else list(value)
        items = [f'{inner}{json.dumps(k)}: {_dumps(value[k], indent + 2, sort_keys)}' for k in keys]
        return '{\n' + ',\n'.join(items) + '\n' + pad + '}'
    if isinstance(value, list):
        if all(_is_scalar(v) for v in value):
            return '[' + ', '.join(json.dumps(v, allow_nan=False) for v in value) + ']'
        return '[\n' + ',\n'.join(inner + _dumps(v, indent + 2, sort_keys) for v in value) + '\n' + pad + ']'
    return json.dumps(value, allow_nan=False)


def typed_graph_json(model) -> str:
    """The text of graph.json for a converted model."""
    from . import __version__

    data = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'fpga4ml_version': __version__,
        'settings': {k: _plain(model.settings.get(k)) for k in SAVED_SETTINGS},
        **graph_to_dict(model.graph),
    }
    return _dumps(data) + '\n'


def config_yaml(config: dict) -> str:
    """An hls4ml-style config dict as YAML with sorted keys (FixedType values become strings)."""
    plain = _plain(config or {})
    if plain is _SKIP:
        raise ValueError('the configuration holds values that cannot be written as YAML')
    return yaml.safe_dump(plain, sort_keys=True, default_flow_style=False)


def _write_text(path: Path, text: str) -> None:
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)


def write_typed_graph(model, directory: str | os.PathLike) -> list[Path]:
    """Write graph.json, config.yml and summary.txt for `model` into `directory` (created if needed).

    Returns the paths written. The files are byte-identical for the same model and configuration.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        'graph.json': typed_graph_json(model),
        'config.yml': config_yaml(model.config),
        'summary.txt': model.summary().rstrip('\n') + '\n',
    }
    written = []
    for name, text in files.items():
        path = directory / name
        _write_text(path, text)
        written.append(path)
    return written
