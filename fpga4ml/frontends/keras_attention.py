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
  values) and ``<name>`` (the output EinsumDense). Constant masks (``attention_mask``, ``value_mask``,
  ``key_mask`` as numpy arrays, ``use_causal_mask``, the layer's ``sliding_window``), merged by the
  layer's own ``_compute_attention_mask``, make the softmax a ``MaskedSoftmax``; masks that are model
  tensors, query_mask, a query left without keys, use_gate, return_attention_scores and
  attention_axes other than the default are refused by name.
* ``functools.partial(keras.activations.gelu, approximate=True)`` (or ``keras.ops.gelu``) as an activation
  -> Activation 'gelu_tanh' (``gelu_partial``; keras.py's activation lookup asks it).
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


def gelu_partial(fn: Any) -> str | None:
    """'gelu' or 'gelu_tanh' for functools.partial(keras.activations.gelu or keras.ops.gelu, approximate=...)
    (their own default when not given: False for the activation, True for the op); None for anything else."""
    import functools
    import inspect

    import keras

    if not isinstance(fn, functools.partial) or fn.args or set(fn.keywords) - {'approximate'}:
        return None
    if fn.func is not keras.activations.gelu and fn.func is not keras.ops.gelu:
        return None
    default = inspect.signature(fn.func).parameters['approximate'].default
    return 'gelu_tanh' if fn.keywords.get('approximate', default) else 'gelu'


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


MASK_ARGUMENTS = ('attention_mask', 'value_mask', 'key_mask')


def _call_arguments(call: _Call) -> dict[str, Any]:
    """The keyword arguments of the layer's calls (every call of a shared layer must pass the same ones)."""
    found = [getattr(getattr(knode, 'arguments', None), 'kwargs', {}) or {} for knode in call.layer._inbound_nodes]
    first = found[0] if found else {}
    for other in found[1:]:
        if set(other) != set(first) or any(not np.array_equal(np.asarray(other[k], dtype=object),
                                                              np.asarray(first[k], dtype=object)) for k in first):
            raise GraphError(f'{call.where()}: the layer is called several times with different masks or options; '
                             'use one layer per call')
    return first


def attention_call_mask(call: _Call, q_len: int, k_len: int) -> np.ndarray | None:
    """The constant (query, key) mask of an attention call (True: the key takes part), None without one.

    The layer's own Keras code merges `attention_mask`, `value_mask`, `key_mask`, `use_causal_mask`
    (and the sliding window of Keras >= 3.15) into one boolean mask, evaluated here on constants.
    Masks that are model tensors, `query_mask`, returned scores and non-default attention axes are
    refused, naming them.
    """
    import keras

    layer, kwargs = call.layer, _call_arguments(call)
    tensors = sorted(k for k, v in kwargs.items() if isinstance(v, keras.KerasTensor))
    if tensors:
        raise GraphError(f'{call.where()}: {", ".join(tensors)} is a model tensor; only constant masks (numpy '
                         f'arrays given to {", ".join(MASK_ARGUMENTS)}) and use_causal_mask are accepted')
    refused = [k for k in ('query_mask', 'return_attention_scores') if kwargs.get(k) is not None
               and kwargs.get(k) is not False]
    if getattr(layer, '_use_gate', False):
        refused.append('use_gate=True')
    if refused:
        raise GraphError(f'{call.where()}: {", ".join(refused)} is not supported; accepted: query, value, key and the '
                         f'constant masks {", ".join(MASK_ARGUMENTS)} and use_causal_mask')
    if any(len(shape) != 2 for shape in call.in_shapes):
        raise GraphError(f'{call.where()}: inputs of per-sample shapes {call.in_shapes} are not supported; only '
                         '(sequence, features) inputs')
    if tuple(layer._attention_axes) != (1,):
        raise GraphError(f'{call.where()}: attention_axes={layer._attention_axes!r} is not supported; only the '
                         'default (attention over the sequence axis 1)')
    if len(call.inputs) not in (2, 3):
        raise GraphError(f'{call.where()}: expected the inputs query, value[, key], got {len(call.inputs)} tensors')
    masks = {k: keras.ops.convert_to_tensor(np.asarray(kwargs[k])) for k in MASK_ARGUMENTS
             if kwargs.get(k) is not None}
    mask = layer._compute_attention_mask(keras.ops.zeros((1, q_len, 1)), keras.ops.zeros((1, k_len, 1)),
                                         use_causal_mask=bool(kwargs.get('use_causal_mask')), **masks)
    if mask is None:
        return None
    mask = np.asarray(keras.ops.convert_to_numpy(mask), dtype=bool)
    try:
        return np.broadcast_to(mask, (1, q_len, k_len))[0].copy()
    except ValueError:
        raise GraphError(f'{call.where()}: the masks give a mask of shape {mask.shape}; only masks that broadcast to '
                         f'(1, {q_len}, {k_len}) (one for every sample) are accepted') from None


def _multi_head_attention(call: _Call, graph: Graph) -> str:
    """MultiHeadAttention -> projections, scores, softmax, weighted values, output projection (module doc)."""
    layer, name, source = call.layer, call.layer.name, type(call.layer).__name__
    query, value = call.inputs[:2]
    key = call.inputs[2] if len(call.inputs) == 3 else value
    q_shape, v_shape = call.in_shapes[0], call.in_shapes[1]
    k_shape = call.in_shapes[2] if len(call.inputs) == 3 else v_shape
    mask = attention_call_mask(call, q_shape[0], k_shape[0])
    if mask is not None and not mask.any(axis=-1).all():
        raise GraphError(f'{call.where()}: the masks leave query rows {np.flatnonzero(~mask.any(axis=-1)).tolist()} '
                         "without a key; Keras' result there depends on its backend (0 from its masked softmax, an "
                         "average from the backend's dot_product_attention); give every query one key")
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
    if mask is not None:  # Keras' merged mask (causal: key j takes part for query i when j <= i)
        graph.add(make_node(parts['softmax'], 'MaskedSoftmax', [parts['scores']], scores_shape, source=source,
                            attrs={'mask': mask.astype(np.int64).tolist()}))
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
