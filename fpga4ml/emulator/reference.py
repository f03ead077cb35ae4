"""Float reference forward pass of an IR graph: each op's recipe run by the float interpreter.

Fixed-point types are ignored: casts are the identity, tables evaluate their real function
(fpga4ml.functions), weights and parameters are their float values. The meaning of every op and
its attribute defaults come from its recipe (fpga4ml/semantics/recipes.py), so the float and the
fixed-point meanings cannot drift.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir import Graph, GraphError, operands
from ..semantics import float_node


def _graph_inputs(graph: Graph, x: np.ndarray | Sequence[np.ndarray], dtype: type) -> dict[str, np.ndarray]:
    """Match the given input arrays to graph inputs, checking count and per-sample shapes."""
    arrays = [x] if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)) else list(x)
    if len(arrays) != len(graph.inputs):
        raise ValueError(f'graph has {len(graph.inputs)} inputs {graph.inputs}, got {len(arrays)} arrays')
    values = {}
    for name, a in zip(graph.inputs, arrays):
        a = np.asarray(a, dtype=dtype)
        if a.shape[1:] != graph[name].shape:
            raise ValueError(f'input {name!r}: expected shape (batch, *{graph[name].shape}), got {a.shape}')
        values[name] = a
    return values


def _last_uses(graph: Graph) -> dict[str, int]:
    """For each node name, the index of the last node that reads it."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for src in node.inputs:
            last[src] = i
    return last


def float_forward(graph: Graph, x: np.ndarray | Sequence[np.ndarray],
                  dtype: type = np.float64) -> list[np.ndarray]:
    """Run the graph in floating point (dtype) on a batch; returns one array per graph output."""
    values = _graph_inputs(graph, x, dtype)
    keep = set(graph.outputs)
    last = _last_uses(graph)
    for i, node in enumerate(graph.nodes):
        if node.op == 'Input':
            if node.name not in values:
                raise GraphError(f'Input node {node.name!r} is not listed in graph.inputs')
            continue
        out = float_node(node, operands(node, values), dtype)
        values[node.name] = tuple(out) if isinstance(out, tuple) else np.asarray(out, dtype=dtype)
        for src in set(node.inputs):
            if last[src] == i and src not in keep:
                del values[src]
    return [values[name] for name in graph.outputs]
