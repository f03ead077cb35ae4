"""Keras 3 transformer layers: EinsumDense, LayerNormalization, MultiHeadAttention, Embedding (registered by keras.py).

* ``EinsumDense`` -> ``EinsumDense`` (the equation per sample: the batch letter or the ellipsis is
  dropped; the bias broadcast to the output shape), plus an activation node unless linear.
* ``LayerNormalization`` -> ``LayerNorm`` over trailing axes (``rms_scaling`` is refused).
* ``Embedding`` -> ``Embedding`` (configure the input as an integer type, e.g. 'ufixed<8,8>';
  indices outside [0, input_dim) read zeros, fractional inputs are floored; mask_zero is refused).
* ``MultiHeadAttention(query, value[, key])`` -> five kinds of nodes, each configurable by name:
  ``<name>_query``, ``<name>_key``, ``<name>_value`` (EinsumDense projections; the query's kernel
  and bias carry Keras' 1/sqrt(key_dim) scale), ``<name>_scores`` (Einsum of key and query),
  ``<name>_softmax`` (Softmax over the key axis), ``<name>_combine`` (Einsum of the weights and the
  values) and ``<name>`` (the output EinsumDense). ``use_causal_mask=True`` makes the softmax a
  ``MaskedSoftmax`` with the lower-triangular mask; other masks, return_attention_scores and
  attention_axes other than the default are refused by name.
"""

from __future__ import annotations

import string
from typing import Any, Callable

import numpy as np

from ..ir import Graph, GraphError
from ..semantics.spec import make_node
from .keras import _Call, _check_float_layer, _to_numpy, _with_activation


def per_sample_equation(equation: str, in_ranks: list[int], where: str) -> str:
    """A Keras einsum equation over batched operands as a per-sample one (batch letter or '...' dropped).

    in_ranks: the per-sample ranks of the variable operands (the first len(in_ranks) operands);
    a kernel operand (an EinsumDense's second) keeps all its letters.
    """
    lhs, out = equation.replace(' ', '').split('->')
    operands = lhs.split(',')
    used = set(equation) & set(string.ascii_letters)
    fresh = iter(c for c in string.ascii_letters if c not in used)
    if '...' in equation:
        rank = in_ranks[0]
        named = len(operands[0].replace('...', ''))
        extra = ''.join(next(fresh) for _ in range(rank - named))
        if any(op.count('...') != 1 for op in operands[:len(in_ranks)]) or out.count('...') != 1:
            raise GraphError(f"{where}: equation {equation!r}: only an ellipsis in front of every variable "
                             "operand and of the output is supported")
        operands = [op.replace('...', extra) for op in operands]
        return ','.join(operands) + '->' + out.replace('...', extra)
    batch = operands[0][:1]
    if not batch or any(not op.startswith(batch) for op in operands[:len(in_ranks)]) or not out.startswith(batch):
        raise GraphError(f'{where}: equation {equation!r}: every variable operand and the output must start '
                         'with the batch letter')
    operands = [op[1:] if k < len(in_ranks) else op for k, op in enumerate(operands)]
    return ','.join(operands) + '->' + out[1:]


def _einsum_dense_node(call: _Call, graph: Graph, layer: Any, name: str, source: str, inputs: list[str],
                       in_shape: tuple[int, ...], out_shape: tuple[int, ...], factor: float = 1.0) -> None:
    """One EinsumDense node for a Keras EinsumDense `layer` (its kernel and bias times `factor`)."""
    equation = per_sample_equation(layer.equation, [len(in_shape)], call.where())
    kernel = _to_numpy(layer.kernel) * np.float32(factor)
    use_bias = getattr(layer, 'bias', None) is not None
    bias = _to_numpy(layer.bias) * np.float32(factor) if use_bias else np.zeros(out_shape, np.float32)
    try:
        bias = np.ascontiguousarray(np.broadcast_to(bias, out_shape), dtype=np.float32)
    except ValueError:
        raise GraphError(f'{call.where()}: bias of shape {bias.shape} does not broadcast to the output shape '
                         f'{out_shape}') from None
    graph.add(make_node(name, 'EinsumDense', inputs, out_shape, source=source,
                        attrs={'equation': equation, 'use_bias': use_bias},
                        weights={'kernel': kernel, 'bias': bias}))


def _einsum_dense(call: _Call, graph: Graph) -> str:
    """EinsumDense -> EinsumDense (+ an activation node unless linear)."""
    _check_float_layer(call)
    _einsum_dense_node(call, graph, call.layer, call.name, type(call.layer).__name__, list(call.inputs),
                       call.in_shapes[0], call.out_shape)
    return _with_activation(call, graph, call.name)


def _layer_norm(call: _Call, graph: Graph) -> str:
    """LayerNormalization -> LayerNorm over trailing axes."""
    layer = call.layer
    if getattr(layer, 'rms_scaling', False):
        raise GraphError(f'{call.where()}: rms_scaling=True is not supported; only the mean-centred LayerNorm')
    rank = len(call.out_shape)
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axes = tuple(sorted(int(a) - (rank + 1) if int(a) >= 0 else int(a) for a in axes))
    if any(a < -rank for a in axes):
        raise GraphError(f'{call.where()}: axis={layer.axis!r} includes the batch axis; normalise per sample')
    norm_shape = call.out_shape[rank - len(axes):] if axes == tuple(range(-len(axes), 0)) else ()
    if not norm_shape:
        raise GraphError(f'{call.where()}: axis={layer.axis!r} is not supported; only trailing axes (e.g. -1)')
    gamma = _to_numpy(layer.gamma) if layer.scale else np.ones(norm_shape, np.float32)
    beta = _to_numpy(layer.beta) if layer.center else np.zeros(norm_shape, np.float32)
    attrs = {'axes': axes, 'epsilon': float(layer.epsilon), 'center': bool(layer.center), 'scale': bool(layer.scale)}
    graph.add(call.node('LayerNorm', attrs=attrs, weights={'gamma': gamma.reshape(norm_shape),
                                                           'beta': beta.reshape(norm_shape)}))
    return call.name


def _check_attention_call(call: _Call, causal_ok: bool = False) -> bool:
    """Refuse masks (but a causal one where `causal_ok`), returned scores and non-default attention axes,
    naming them; returns whether the call asks for the causal mask."""
    layer = call.layer
    causal = False
    for knode in layer._inbound_nodes:
        kwargs = getattr(getattr(knode, 'arguments', None), 'kwargs', {}) or {}
        used = sorted(k for k in ('attention_mask', 'query_mask', 'value_mask', 'key_mask') if kwargs.get(k) is not None)
        causal = causal or bool(kwargs.get('use_causal_mask'))
        if kwargs.get('use_causal_mask') and not causal_ok:
            used.append('use_causal_mask')
        if kwargs.get('return_attention_scores'):
            used.append('return_attention_scores')
        if used:
            raise GraphError(f'{call.where()}: {", ".join(used)} is not supported yet; call the layer with '
                             'query, value and optionally key only' + (' (and use_causal_mask)' if causal_ok else ''))
    if any(len(shape) != 2 for shape in call.in_shapes):
        raise GraphError(f'{call.where()}: inputs of per-sample shapes {call.in_shapes} are not supported; only '
                         '(sequence, features) inputs')
    rank = 2
    if tuple(layer._attention_axes) != tuple(range(1, rank)):
        raise GraphError(f'{call.where()}: attention_axes={layer._attention_axes!r} is not supported; only the '
                         f'default (attention over the axes {tuple(range(1, rank))} of the sequence)')
    if len(call.inputs) not in (2, 3):
        raise GraphError(f'{call.where()}: expected the inputs query, value[, key], got {len(call.inputs)} tensors')
    return causal


def _multi_head_attention(call: _Call, graph: Graph) -> str:
    """MultiHeadAttention -> projections, scores, softmax, weighted values, output projection (module doc)."""
    causal = _check_attention_call(call, causal_ok=True)
    layer, name, source = call.layer, call.layer.name, type(call.layer).__name__
    query, value = call.inputs[:2]
    key = call.inputs[2] if len(call.inputs) == 3 else value
    q_shape, v_shape = call.in_shapes[0], call.in_shapes[1]
    k_shape = call.in_shapes[2] if len(call.inputs) == 3 else v_shape
    heads, key_dim = int(layer._num_heads), int(layer._key_dim)
    value_dim = int(layer._value_dim)
    q_out = q_shape[:-1] + (heads, key_dim)
    k_out = k_shape[:-1] + (heads, key_dim)
    v_out = v_shape[:-1] + (heads, value_dim)
    parts = {part: call.fresh(f'{name}_{part}') for part in ('query', 'key', 'value', 'scores', 'softmax', 'combine')}
    scale = float(layer._inverse_sqrt_key_dim)
    _einsum_dense_node(call, graph, layer._query_dense, parts['query'], source, [query], q_shape, q_out, scale)
    _einsum_dense_node(call, graph, layer._key_dense, parts['key'], source, [key], k_shape, k_out)
    _einsum_dense_node(call, graph, layer._value_dense, parts['value'], source, [value], v_shape, v_out)
    scores_shape = (heads,) + q_shape[:-1] + k_shape[:-1]
    dot = per_sample_equation(layer._dot_product_equation, [len(k_out), len(q_out)], call.where())
    graph.add(make_node(parts['scores'], 'Einsum', [parts['key'], parts['query']], scores_shape, source=source,
                        attrs={'equation': dot}))
    if causal:  # Keras: key j takes part for query i when j <= i
        mask = np.tril(np.ones(scores_shape[1:], dtype=np.int64)).tolist()
        graph.add(make_node(parts['softmax'], 'MaskedSoftmax', [parts['scores']], scores_shape, source=source,
                            attrs={'mask': mask}))
    else:
        graph.add(make_node(parts['softmax'], 'Softmax', [parts['scores']], scores_shape, source=source,
                            attrs={'axis': -1}))
    combine = per_sample_equation(layer._combine_equation, [len(scores_shape), len(v_out)], call.where())
    graph.add(make_node(parts['combine'], 'Einsum', [parts['softmax'], parts['value']], q_shape[:-1] + (heads, value_dim),
                        source=source, attrs={'equation': combine}))
    _einsum_dense_node(call, graph, layer._output_dense, call.name, source, [parts['combine']],
                       q_shape[:-1] + (heads, value_dim), call.out_shape)
    return call.name


def _embedding(call: _Call, graph: Graph) -> str:
    """Embedding -> Embedding (indices outside [0, input_dim) read zeros; mask_zero is refused)."""
    layer = call.layer
    _check_float_layer(call)
    if getattr(layer, 'mask_zero', False):
        raise GraphError(f'{call.where()}: mask_zero=True is not supported (fpga4ml layers do not propagate masks)')
    graph.add(call.node('Embedding', weights={'embeddings': _to_numpy(layer.embeddings)}))
    return call.name


HANDLERS: dict[str, Callable[[_Call, Graph], str]] = {
    'Embedding': _embedding,
    'EinsumDense': _einsum_dense,
    'LayerNormalization': _layer_norm,
    'MultiHeadAttention': _multi_head_attention,
}
