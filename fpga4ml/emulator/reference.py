"""Float reference forward pass of an IR graph (fixed-point types are ignored).

This defines the real-valued meaning of every op in `ir.OPS`. Activation functions:

* ``relu``/``leaky_relu`` (as Keras): ``y = where(x > threshold, x, 0)``, clipped to ``[0, max_value]``
  when ``max_value`` is set, then ``y -= alpha * max(threshold - x, 0)`` for leaky_relu
  (``alpha``, ``max_value``, ``threshold`` default to 0.2 (leaky only), None, 0).
* ``prelu``: ``where(x > 0, x, alpha * x)`` with ``weights['alpha']`` broadcast to x.
* ``hard_sigmoid``: ``clip(slope * x + shift, 0, 1)`` (defaults slope 1/6, shift 0.5, Keras 3);
  ``hard_tanh``: ``clip(x, -1, 1)``.
* ``elu``: ``where(x > 0, x, alpha * expm1(x))`` (alpha default 1); ``selu``: the fixed SELU constants.
* ``sigmoid``, ``tanh``, ``softplus`` (``log1p(exp(x))``, stable), ``softsign``, ``exp``, ``linear``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import geometry
from ..functions import table_function
from ..ir import TABLE_ACTIVATIONS, Graph, GraphError, Node

def _relu(x: np.ndarray, node: Node, w: dict[str, np.ndarray]) -> np.ndarray:
    threshold = float(node.attrs.get('threshold') or 0.0)
    max_value = node.attrs.get('max_value')
    y = np.maximum(x, 0) if threshold == 0 else np.where(x > threshold, x, 0).astype(x.dtype)
    if max_value is not None:
        y = np.clip(y, 0, float(max_value))
    if node.attrs.get('function') == 'leaky_relu':
        alpha = float(node.attrs.get('alpha', 0.2))
        y = y - alpha * np.maximum(threshold - x, 0)
    return y


def _prelu(x: np.ndarray, node: Node, w: dict[str, np.ndarray]) -> np.ndarray:
    if 'alpha' not in w:
        raise GraphError(f"node {node.name!r}: prelu needs weights['alpha']")
    return np.where(x > 0, x, w['alpha'] * x)


def _hard_sigmoid(x: np.ndarray, node: Node, w: dict[str, np.ndarray]) -> np.ndarray:
    slope = float(node.attrs.get('slope', 1.0 / 6.0))
    shift = float(node.attrs.get('shift', 0.5))
    return np.clip(slope * x + shift, 0, 1)


def _table(x: np.ndarray, node: Node, w: dict[str, np.ndarray]) -> np.ndarray:
    """The real function behind a table activation (fpga4ml.functions), in x's dtype."""
    return table_function(node.attrs['function'], node.attrs)(x).astype(x.dtype, copy=False)


#: IR activation function -> f(x, node, weights)
ACTIVATION_FUNCTIONS: dict[str, Callable[[np.ndarray, Node, dict[str, np.ndarray]], np.ndarray]] = {
    'linear': lambda x, node, w: x,
    'relu': _relu,
    'leaky_relu': _relu,
    'prelu': _prelu,
    'hard_sigmoid': _hard_sigmoid,
    'hard_tanh': lambda x, node, w: np.clip(x, -1, 1),
    **{name: _table for name in TABLE_ACTIVATIONS},
}


def _softmax(x: np.ndarray, node: Node) -> np.ndarray:
    axis = node.attrs.get('axis', -1)
    if axis not in (-1, len(node.shape) - 1):
        raise GraphError(f'node {node.name!r}: softmax axis {axis} is not supported; only -1 is')
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _merge(xs: list[np.ndarray], node: Node) -> np.ndarray:
    mode = node.attrs.get('mode')
    if mode == 'concat':
        axis = int(node.attrs.get('axis', -1))
        return np.concatenate(xs, axis=axis if axis < 0 else axis + 1)  # +1: batch axis
    if mode == 'sub':
        if len(xs) != 2:
            raise GraphError(f"node {node.name!r}: merge mode 'sub' needs 2 inputs, got {len(xs)}")
        return xs[0] - xs[1]
    reducers = {'add': np.add, 'mul': np.multiply, 'avg': np.add, 'max': np.maximum, 'min': np.minimum}
    if mode not in reducers:
        raise GraphError(f"node {node.name!r}: unknown merge mode {mode!r}; "
                         f"supported: {sorted(reducers) + ['concat', 'sub']}")
    y = xs[0]
    for other in xs[1:]:
        y = reducers[mode](y, other)
    return y / len(xs) if mode == 'avg' else y


def _conv(x: np.ndarray, node: Node, w: dict[str, np.ndarray]) -> np.ndarray:
    """Convolution as a matrix product of the im2col windows (zero padding) with the kernel matrix."""
    win = geometry.check_conv(node, x.shape[1:])
    cols = geometry.take(x.reshape(len(x), -1), geometry.im2col_index(win, x.shape[-1]))
    matrix = geometry.conv_matrix(w['kernel'], int(node.attrs.get('groups', 1)), node.name)
    return (cols @ matrix + w['bias']).reshape((len(x),) + node.shape)


def _pool(x: np.ndarray, node: Node) -> np.ndarray:
    """Max or mean over the real (unpadded) cells of each window, per channel."""
    index, counts = geometry.pool_index(node, x.shape[1:])
    fill = -np.inf if node.attrs['mode'] == 'max' else 0.0
    taps = geometry.take(x.reshape(len(x), -1), index, fill)  # (batch, taps, outputs)
    y = taps.max(axis=1) if node.attrs['mode'] == 'max' else taps.sum(axis=1) / counts
    return y.reshape((len(x),) + node.shape)


def _apply(node: Node, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate one non-Input node on batched inputs."""
    if node.op == 'Dense':
        return xs[0] @ w['kernel'] + w['bias']
    if node.op == 'Conv':
        return _conv(xs[0], node, w)
    if node.op == 'Pool':
        return _pool(xs[0], node)
    if node.op in geometry.INDEX_MAP_OPS:
        index = geometry.index_map(node, xs[0].shape[1:]).ravel()
        return geometry.take(xs[0].reshape(len(xs[0]), -1), index).reshape((len(xs[0]),) + node.shape)
    if node.op == 'Activation':
        function = node.attrs.get('function')
        if function not in ACTIVATION_FUNCTIONS:
            raise GraphError(f'node {node.name!r}: unknown activation function {function!r}; '
                             f'supported: {sorted(ACTIVATION_FUNCTIONS)}')
        return ACTIVATION_FUNCTIONS[function](xs[0], node, w)
    if node.op == 'Softmax':
        return _softmax(xs[0], node)
    if node.op == 'Scale':
        return xs[0] * w['scale'] + w['bias']
    if node.op == 'Merge':
        return _merge(xs, node)
    if node.op == 'Reshape':
        return xs[0].reshape((xs[0].shape[0], *node.attrs.get('shape', node.shape)))
    if node.op == 'Quantize':
        return xs[0]
    raise GraphError(f'node {node.name!r}: op {node.op!r} has no float reference implementation')


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
        weights = {k: np.asarray(v, dtype=dtype) for k, v in node.weights.items()}
        values[node.name] = np.asarray(_apply(node, [values[s] for s in node.inputs], weights), dtype=dtype)
        for src in set(node.inputs):
            if last[src] == i and src not in keep:
                del values[src]
    return [values[name] for name in graph.outputs]
