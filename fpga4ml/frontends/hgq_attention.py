"""HGQ2 transformer layers, bit-exact (registered by hgq.py): QEinsumDense (any equation), QEinsumDenseBatchnorm,
QEinsum, QMultiHeadAttention, QLinformerAttention, QSoftmax, QSum, QMeanPow2 and QUnaryFunctionLUT.

* ``QEinsumDense`` whose equation is a Dense over the last axis stays hgq.py's Dense; any other
  equation -> [iq] Quantize, ``EinsumDense`` (HGQ2's quantized kernel and bias, the bias broadcast to
  the output shape; exact 'auto' accumulator and result), activation, [oq].
* ``QEinsum`` of two tensors -> a Quantize per input (iq), an exact ``Einsum``, [oq].
* ``QMultiHeadAttention(query, value[, key])`` (old and new module path; fuse='none') -> its own
  sublayers, in HGQ2's order: ``<mha>_query``/``_key``/``_value`` (QEinsumDense each: iq, EinsumDense,
  oq), ``<mha>_scores`` (exact Einsum of key and query), ``<mha>_softmax`` (TableSoftmax: the exp and
  1/x tables are HGQ2's own layers evaluated on every value of their input quantizer's type, the
  1/sqrt(key_dim) sits in the exp table as HGQ2's input_scaler) and its output quantizer
  ``<mha>_softmax_oq``, ``<mha>_combine`` (exact Einsum), ``<mha>`` (the output QEinsumDense) and the
  layer's own oq. HGQ2 computes the two einsums, the sum of exps and the product e * 1/s in float32,
  exactly for the widths its quantizers give (at most 24 significant bits); fpga4ml computes them
  exactly in integers.

A standalone ``QSoftmax`` -> [iq] Quantize, the TableSoftmax and [oq] as above. ``QSum``/``QMeanPow2`` ->
[iq] Quantize, an exact EinsumDense with the constant kernel ``scale`` (a power of two) over the summed axes,
a Reshape to the output shape when it differs, [oq]. ``QUnaryFunctionLUT`` -> iq Quantize, Activation 'lut'
(HGQ2's layer evaluated on every value of its iq type: the table).

* ``QEinsumDenseBatchnorm`` as QEinsumDense, with HGQ2's own folded and quantized kernel and bias
  (``qkernel``/``qbias``: the moving statistics and gamma folded in float32, then quantized).
* ``QLinformerAttention`` as QMultiHeadAttention after ``<mha>_lin_key``/``<mha>_lin_value`` (its
  QEinsumDense projections of the key and value along the sequence axis, shared or not).

Constant masks (``attention_mask``, ``value_mask``, ``key_mask``, ``use_causal_mask``, merged by the
layer's own ``_compute_attention_mask``) go into the TableSoftmax (HGQ2 multiplies the masked exps by 0;
a query row without keys gives 0). Masks that are model tensors, query_mask, return_attention_scores,
attention_axes other than the default, masks on a QLinformerAttention, fused projections and
heterogeneous softmax tables are refused with a GraphError naming the layer.

``QEinsumDenseT`` and ``QDenseT`` (a small network per input/output pair, HGQ2's table dense) -> ``TableDense``: one
table per element of the input broadcast over the kernel-only letters, HGQ2's own sub-network, batch
norm and table output quantizer evaluated on every value of that element's input quantizer type, the
tables' values summed exactly over the contracted letters; then activation, [oq]. ``QConvT1D``/``QConvT2D``
(hgq_convt.py, registered here) are the same TableDense over im2col windows (``table_dense_node``).
``QMultiHeadAttentionT`` and ``QLinformerAttentionT`` lower like QMultiHeadAttention/QLinformerAttention
with TableDense projections.
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any, Callable

import numpy as np

from ..fixed import AUTO, FixedType
from ..ir import Graph, GraphError
from ..semantics.spec import make_node
from . import hgq as H
from . import keras as K
from .keras_attention import attention_call_mask, per_sample_equation


def _sub_call(call: K._Call, layer: Any, name: str, inputs: list[str], in_shapes: list[tuple[int, ...]],
              out_shape: tuple[int, ...], prefix: str) -> K._Call:
    """A _Call for a sublayer of a composed layer: node names prefixed with the owner's name."""
    return dataclasses.replace(call, layer=layer, name=name, inputs=list(inputs), in_shapes=list(in_shapes),
                               out_shape=tuple(out_shape), fresh=lambda base: call.fresh(f'{prefix}_{base}'))


def _qeinsum_dense(call: K._Call, graph: Graph) -> str:
    """QEinsumDense -> hgq.py's Dense for Dense-like equations, else [iq] Quantize, EinsumDense, activation, [oq]."""
    layer = call.layer
    try:
        return H._qeinsum_dense(call, graph)
    except GraphError as err:  # not a Dense over the last axis: an EinsumDense
        if not str(err).startswith(f'{call.where()}: equation '):
            raise
    K._check_float_layer(call)
    src = H._input_quantizer(call, graph)
    equation = per_sample_equation(layer.equation, [len(call.in_shapes[0])], call.where())
    kernel, kt = H.quantized_weights(layer.kq, layer.qkernel, call.where(), 'kernel')
    if layer.bias is None:
        bias, bt, use_bias = np.zeros(call.out_shape), FixedType(1, 1, False), False
    else:
        bias, bt = H.quantized_weights(layer.bq, layer.qbias, call.where(), 'bias')
        use_bias = True
    try:
        bias = np.ascontiguousarray(np.broadcast_to(bias, call.out_shape))
    except ValueError:
        raise GraphError(f'{call.where()}: bias of shape {bias.shape} does not broadcast to the output shape '
                         f'{call.out_shape}') from None
    node = make_node(call.name, 'EinsumDense', [src], call.out_shape, weights={'kernel': kernel, 'bias': bias},
                     attrs={'equation': equation, 'use_bias': use_bias}, source=type(layer).__name__)
    graph.add(H._fixed(node, weight=kt, bias=bt, accum=AUTO, result=AUTO))
    return H._finish(call, graph, call.name)


#: the most values of one element's input quantizer a QEinsumDenseT table may cover
MAX_ELEMENT_TABLE_BITS = 12


def _element_types(spec: H.QuantSpec | None, shape: tuple[int, ...], where: str, what: str) -> list:
    """The type of every element of a quantizer over `shape` (None where it is pruned)."""
    if spec is None:
        raise GraphError(f'{where}: the {what} must be enabled (the tables are indexed by its types)')
    k, i, f = (np.broadcast_to(a, shape).ravel() for a in (spec.k, spec.i, spec.f))
    pruned = np.broadcast_to(spec.pruned, shape).ravel()
    return [None if pruned[e] else spec.element_type(int(k[e]), int(i[e]), int(f[e])) for e in range(k.size)]


def _table_network(layer: Any, v: Any) -> Any:
    """HGQ2's per-element sub-network and batch norm of a QEinsumDenseT / QDenseT on quantized inputs v."""
    out = layer.module(v[..., None], training=False)
    if not hasattr(layer, '_apply_batch_norm'):  # QDenseT and its QConvT1D/QConvT2D subclasses
        return layer.bn_module(out, training=False) / math.sqrt(layer.n_in) if layer.enable_bn else out
    return layer._apply_batch_norm(out, training=False)


def _dense_t_tables(layer: Any, presum: tuple[int, ...], where: str) -> tuple[list, list, list]:
    """(index types, entries, entry types) per presum element of a QEinsumDenseT: its sub-network, batch norm
    and table output quantizer (toq) evaluated by HGQ2 on every value of the element's input quantizer type."""
    import keras

    index = _element_types(H.quantizer_spec(layer.iq, presum, where, 'input quantizer (iq)'), presum, where,
                           'input quantizer (iq)')
    toq = _element_types(H.quantizer_spec(layer.toq, presum, where, 'table output quantizer (toq)'), presum, where,
                         'table output quantizer (toq)')
    widest = max((t.width for t in index if t is not None), default=0)
    if widest > MAX_ELEMENT_TABLE_BITS:
        raise GraphError(f'{where}: an input quantizer element of {widest} bits; the tables cover at most '
                         f'{MAX_ELEMENT_TABLE_BITS}')
    size = 1 << widest
    grid = np.zeros((size, len(index)), dtype=np.float32)
    for e, t in enumerate(index):
        if t is not None:
            values = t.to_float(np.arange(t.min_mantissa, t.max_mantissa + 1, dtype=np.int64))
            grid[:, e] = values[np.minimum(np.arange(size), values.size - 1)]
    out = layer.toq(_table_network(layer, keras.ops.convert_to_tensor(grid.reshape((size,) + presum))),
                    training=False)
    table = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64).reshape(size, len(index))
    entries, types = [], []
    for e, (t, et) in enumerate(zip(index, toq)):
        column = table[:(1 << t.width) if t is not None else 1, e]
        et = et or FixedType(1, 1, False)  # a pruned toq element: always 0
        mantissas = np.ldexp(column, et.frac)
        if np.any(mantissas != np.round(mantissas)) or np.any(et.quantize(column) != mantissas):
            raise GraphError(f'{where}: the table of element {e} gives values off the grid of its type {et}')
        entries.append(mantissas.astype(np.int64).tolist())
        types.append(et)
    return index, entries, types


def _qeinsum_dense_t(call: K._Call, graph: Graph) -> str:
    """QEinsumDenseT / QDenseT -> TableDense (one table per element of the broadcast input, the sums over the contracted
    letters), activation, [oq]."""
    layer, in_shape = call.layer, call.in_shapes[0]
    if type(layer).__name__ == 'QDenseT':  # x (..., n_in) broadcast to (..., n_in, n_out), summed over n_in
        reshape, presum = tuple(in_shape) + (1,), tuple(in_shape) + (int(layer.n_out),)
        contract, perm = [len(in_shape) - 1], list(range(len(in_shape)))
    else:
        reshape, presum = (tuple(int(d) for d in shape[1:]) for shape in layer._bcast[:2])
        contract, perm = [a - 1 for a in layer._contract_axes], [a - 1 for a in layer._output_transpose[1:]]
    size = int(np.prod(in_shape, dtype=np.int64))
    source = np.broadcast_to(np.arange(size).reshape(reshape), presum)
    return table_dense_node(call, graph, source, contract, perm)


def table_dense_node(call: K._Call, graph: Graph, source: np.ndarray, contract: list[int], perm: list[int]) -> str:
    """The TableDense of a table layer (QEinsumDenseT, QDenseT, QConvT*D), then activation, [oq].

    `source` has the presum shape (the input broadcast to the kernel-only letters, where the layer's quantizers
    live): the flat input element each presum element reads, -1 where it reads a constant 0 (a convolution's
    padding: HGQ2 quantizes and looks up that 0 too, so the term is the constant entry of 0). The terms are
    summed over the presum axes `contract`, and the kept axes put in the output order `perm`."""
    layer, presum = call.layer, tuple(source.shape)
    if not getattr(layer, 'enable_iq', False):
        raise GraphError(f'{call.where()}: a {type(layer).__name__} needs its input quantizer (enable_iq=True)')
    index, entries, types = _dense_t_tables(layer, presum, call.where())
    H._require_input(graph, call.inputs[0], H.quantizer_spec(layer.iq, presum, call.where(), 'iq'), call.where())
    gather = source.ravel().tolist()
    for e in np.flatnonzero(source.ravel() < 0):  # a padding zero: the element's entry of 0, a constant
        zero = 0 if index[e] is None else -index[e].min_mantissa
        index[e], entries[e], gather[e] = None, entries[e][zero:zero + 1], 0
    ids = np.moveaxis(np.arange(len(index)).reshape(presum), contract, list(range(-len(contract), 0)))
    kept = ids.shape[:ids.ndim - len(contract)]
    ids = ids.reshape(kept + (-1,)).transpose(perm + [len(kept)])
    attrs = {'gather': gather, 'index_types': index, 'entries': entries, 'entry_types': types,
             'sum_index': ids.reshape(-1, ids.shape[-1]).tolist()}
    node = make_node(call.name, 'TableDense', [call.inputs[0]], call.out_shape, attrs=attrs,
                     source=type(layer).__name__)
    graph.add(H._fixed(node, result=AUTO))
    return H._finish(call, graph, call.name)


def _projection_dense(call: K._Call, graph: Graph) -> str:
    """An attention projection: QEinsumDense or QEinsumDenseT (the table-projection attention layers)."""
    return (_qeinsum_dense_t if type(call.layer).__name__ == 'QEinsumDenseT' else _qeinsum_dense)(call, graph)


def _table(lut: Any, in_shape: tuple[int, ...], where: str, what: str,
           index: FixedType | None = None) -> tuple[FixedType, FixedType, list[int]]:
    """(index type, entry type, entries) of an HGQ2 QUnaryFunctionLUT: the layer itself on every index value
    (`index`: the index type of a table without input quantizer; default: its iq's type)."""
    import keras

    if index is None:
        iq = H.quantizer_spec(lut.iq, in_shape, where, f'{what} input quantizer')
        index = iq.uniform if iq else None
    oq = H.quantizer_spec(lut.oq, in_shape, where, f'{what} output quantizer')
    entry = oq.uniform if oq else None
    if index is None or entry is None:
        raise GraphError(f'{where}: the {what} table needs one input and one output type for every element '
                         '(softmax_allow_heterogeneous_table=False, nothing pruned)')
    if index.width > 16:
        raise GraphError(f'{where}: the {what} table input type {index} has more than 2^16 values')
    grid = index.to_float(np.arange(index.min_mantissa, index.max_mantissa + 1, dtype=np.int64))
    per = int(np.prod(in_shape, dtype=np.int64))
    batch = -(-grid.size // per)
    padded = np.zeros(batch * per, dtype=np.float32)
    padded[:grid.size] = grid
    out = keras.ops.convert_to_numpy(lut(padded.reshape((batch,) + tuple(in_shape)), training=False))
    values = np.asarray(out, dtype=np.float64).ravel()[:grid.size]
    mantissas = np.ldexp(values, entry.frac)
    if np.any(mantissas != np.round(mantissas)):
        raise GraphError(f'{where}: the {what} table gives values off the grid of its output type {entry}')
    return index, entry, entry.quantize(values).tolist()


def _softmax(call: K._Call, graph: Graph, sm: Any, src: str, shape: tuple[int, ...], name: str,
             prefix: str, mask: list | None = None, iq_done: bool = False, input_frac: int | None = None) -> str:
    """HGQ2's QSoftmax over the last axis -> TableSoftmax (exact product; a constant mask) and its oq.

    `iq_done`: the caller has added the softmax's own input quantizer (a standalone QSoftmax).
    `input_frac`: fractional bits that hold every input value (needed by stable=False: its exp table
    reads the input itself; see `_unstable_exp_index`)."""
    if (sm.enable_iq and not iq_done) or tuple(sm.axes) != (len(shape),):
        raise GraphError(f'{call.where()}: the softmax must be without input quantizer, over the key axis '
                         f'(enable_iq={sm.enable_iq}, axes={sm.axes})')
    where = call.where()
    if sm.stable:
        exp_index, exp_t, exp_entries = _table(sm.exp_table, shape, where, 'softmax exp')
    else:
        if input_frac is None:
            raise GraphError(f'{where}: a softmax with stable=False needs inputs of known fractional bits (quantized '
                             'query and key projections, or the softmax input quantizer)')
        index = _unstable_exp_index(sm, input_frac, shape, where)
        exp_index, exp_t, exp_entries = _table(sm.exp_table, shape, where, 'softmax exp', index)
        _check_constant_beyond(sm.exp_table, shape, index, exp_t, exp_entries, where)
    inv_index, inv_t, inv_entries = _table(sm.inv_table, shape[:-1] + (1,), where, 'softmax 1/x')
    attrs = {'exp_index': exp_index, 'exp_entries': exp_entries, 'inv_index': inv_index, 'inv_entries': inv_entries,
             'scale': float(sm.input_scaler), 'epsilon': float(K._import_keras().backend.epsilon()), 'mask': mask,
             'stable': bool(sm.stable)}
    node = make_node(name, 'TableSoftmax', [src], shape, attrs=attrs, source=type(sm).__name__)
    graph.add(H._fixed(node, exp_table=exp_t, inv_table=inv_t, result=AUTO))
    if getattr(sm, 'enable_oq', False):
        sub = _sub_call(call, sm, name, [src], [shape], shape, prefix)
        return H._quantize(sub, graph, sm.oq, name, shape, 'oq', 'softmax output quantizer (oq)')
    return name


def _unstable_exp_index(sm: Any, frac: int, shape: tuple[int, ...], where: str) -> FixedType:
    """The exp table index of a stable=False softmax (HGQ2 gives that table no input quantizer: it reads the
    scores): signed, `frac` fractional bits, saturating, and wide enough that exp(x * scale) rounds to 0
    below it and saturates the table's output type above it, so saturating the input is exact."""
    oq = H.quantizer_spec(sm.exp_table.oq, shape, where, 'softmax exp output quantizer')
    entry, scale = (oq.uniform if oq else None), float(sm.input_scaler)
    if entry is None or not scale > 0:
        raise GraphError(f'{where}: a stable=False softmax needs one exp output type and input_scaler > 0 '
                         f'(input_scaler={scale})')
    reach = max(abs(math.log(entry.lsb / 4)), abs(math.log(2 * entry.max_value))) / scale
    integer = max(1, math.ceil(math.log2(reach)) + 1)
    index = FixedType(integer + frac, integer, True, 'TRN', 'SAT')
    if index.width > 16:
        raise GraphError(f'{where}: a stable=False softmax on inputs with {frac} fractional bits needs a '
                         f'{index.width}-bit exp table index ({index}: |x| up to {reach:.3g}); at most 16 bits are '
                         'supported. Use fewer fractional bits in the query and key, or stable_softmax=True')
    return index


def _check_constant_beyond(lut: Any, shape: tuple[int, ...], index: FixedType, entry: FixedType,
                           entries: list[int], where: str) -> None:
    """GraphError unless HGQ2's exp table gives its first entry everywhere below the index type and its last
    everywhere above (probed up to 2^24), which makes the saturating index exact."""
    import keras
    probes = [float(v) for k in range(index.integer, 25) for v in (-2.0 ** k, 2.0 ** k)]
    per = int(np.prod(shape, dtype=np.int64))
    batch = -(-len(probes) // per)
    padded = np.zeros(batch * per, dtype=np.float32)
    padded[:len(probes)] = probes
    out = keras.ops.convert_to_numpy(lut(padded.reshape((batch,) + tuple(shape)), training=False))
    got = np.ldexp(np.asarray(out, dtype=np.float64).ravel()[:len(probes)], entry.frac)
    want = np.array([entries[0] if v < 0 else entries[-1] for v in probes], dtype=np.float64)
    if not np.array_equal(got, want):
        raise GraphError(f'{where}: the stable=False exp table is not constant beyond its index type {index} '
                         f'(HGQ2 gives {got.tolist()} at {probes}); it cannot be saturated exactly')


def _qsoftmax(call: K._Call, graph: Graph) -> str:
    """A standalone QSoftmax (over the last axis) -> [iq] Quantize, TableSoftmax, [oq]."""
    src = H._input_quantizer(call, graph)
    if graph[src].op == 'Input':
        raise GraphError(f'{call.where()}: a QSoftmax without input quantizer (enable_iq=False) on a float model '
                         'input is not supported: HGQ2 computes max(x) - x in float32; set enable_iq=True or '
                         'quantize the input first')
    layer = call.layer
    iq = H.quantizer_spec(layer.iq, call.in_shapes[0], call.where(), 'input quantizer (iq)') \
        if getattr(layer, 'enable_iq', False) else None
    return _softmax(call, graph, layer, src, call.in_shapes[0], call.name, layer.name, iq_done=True,
                    input_frac=_max_frac(iq))


def _max_frac(spec) -> int | None:
    """The most fractional bits of a quantizer's elements (None: no quantizer, or every element pruned)."""
    if spec is None or spec.pruned.all():
        return None
    return int(spec.f[~spec.pruned].max())


def _qsum(call: K._Call, graph: Graph) -> str:
    """QSum / QMeanPow2 -> [iq] Quantize, an exact EinsumDense whose kernel is `scale` (a power of two) over the
    summed axes (and a trailing axis of 1), a Reshape to the layer's output shape when it differs, [oq]."""
    layer, shape = call.layer, call.in_shapes[0]
    axes = sorted(int(a) - 1 for a in layer.axes)  # built: non-negative, batched
    if not axes or axes[0] < 0:
        raise GraphError(f'{call.where()}: axes={tuple(layer.axes)} sums over the batch axis; only per-sample axes')
    exponent = math.log2(float(layer.scale))
    src = H._input_quantizer(call, graph)
    letters = string.ascii_lowercase[:len(shape)]
    kept = ''.join(c for i, c in enumerate(letters) if i not in axes)
    summed = ''.join(letters[i] for i in axes)
    ein_shape = tuple(shape[i] for i in range(len(shape)) if i not in axes) + (1,)
    kernel = np.full(tuple(shape[i] for i in axes) + (1,), float(layer.scale))
    reshape = ein_shape != tuple(call.out_shape)
    name = call.fresh(f'{layer.name}_sum') if reshape else call.name
    node = make_node(name, 'EinsumDense', [src], ein_shape, weights={'kernel': kernel, 'bias': np.zeros(ein_shape)},
                     attrs={'equation': f'{letters},{summed}z->{kept}z', 'use_bias': False},
                     source=type(layer).__name__)
    graph.add(H._fixed(node, weight=FixedType(1, int(exponent) + 1, False), bias=FixedType(1, 1, False),
                       accum=AUTO, result=AUTO))
    if reshape:
        graph.add(make_node(call.name, 'Reshape', [name], call.out_shape, attrs={'shape': call.out_shape},
                            source=type(layer).__name__))
    return H._finish(call, graph, call.name)


def _qunary_lut(call: K._Call, graph: Graph) -> str:
    """A standalone QUnaryFunctionLUT -> iq Quantize, Activation 'lut' (HGQ2's layer on every value of its iq type,
    so its float32 function and its oq are reproduced bit for bit)."""
    layer, shape = call.layer, call.in_shapes[0]
    if not (getattr(layer, 'enable_iq', False) and getattr(layer, 'enable_oq', False)):
        raise GraphError(f'{call.where()}: a QUnaryFunctionLUT needs its input and output quantizers '
                         f'(enable_iq={layer.enable_iq}, enable_oq={layer.enable_oq})')
    index, entry, entries = _table(layer, shape, call.where(), 'lookup')
    src = H._input_quantizer(call, graph)
    node = make_node(call.name, 'Activation', [src], shape, source=type(layer).__name__,
                     attrs={'function': 'lut', 'lut_index': index, 'lut_entries': entries, 'lut_type': entry})
    graph.add(H._fixed(node, table=entry, result=entry))
    return call.name


def _multi_head_attention(call: K._Call, graph: Graph) -> str:
    """QMultiHeadAttention -> the sublayers of the module doc, bit-exact with HGQ2's inference."""
    layer = call.layer
    if getattr(layer, '_fuse', 'none') != 'none':
        raise GraphError(f"{call.where()}: fuse={layer._fuse!r} is not supported; only fuse='none'")
    if float(layer._inverse_sqrt_key_dim) != 1.0:
        raise GraphError(f'{call.where()}: the query scale {layer._inverse_sqrt_key_dim} is not in the softmax table')
    name = layer.name
    query, value = call.inputs[:2]
    key = call.inputs[2] if len(call.inputs) == 3 else value
    q_shape, v_shape = call.in_shapes[0], call.in_shapes[1]
    k_shape = call.in_shapes[2] if len(call.inputs) == 3 else v_shape
    mask = attention_call_mask(call, q_shape[0], k_shape[0])
    if hasattr(layer, '_lin_k_proj'):  # QLinformerAttention: key and value projected along the sequence first
        if mask is not None:
            raise GraphError(f'{call.where()}: masks are not supported on a QLinformerAttention (its keys are '
                             'projections of the sequence, not positions)')
        key, k_shape = _linformer_projection(call, graph, layer._lin_k_proj, key, k_shape, 'lin_key')
        value, v_shape = _linformer_projection(call, graph, layer._lin_v_proj, value, v_shape, 'lin_value')
    heads = int(layer._num_heads)
    outs = {}
    for part, sub, src, shape, width in (('query', layer._query_dense, query, q_shape, layer._key_dim),
                                          ('key', layer._key_dense, key, k_shape, layer._key_dim),
                                          ('value', layer._value_dense, value, v_shape, layer._value_dim)):
        out_shape = shape[:-1] + (heads, int(width))
        sub_call = _sub_call(call, sub, call.fresh(f'{name}_{part}'), [src], [shape], out_shape, name)
        outs[part] = (_projection_dense(sub_call, graph), out_shape)
    scores_shape = (heads,) + q_shape[:-1] + k_shape[:-1]
    (k_name, k_out), (q_name, q_out) = outs['key'], outs['query']
    scores = call.fresh(f'{name}_scores')
    dot = per_sample_equation(layer._dot_product_equation, [len(k_out), len(q_out)], call.where())
    graph.add(H._fixed(make_node(scores, 'Einsum', [k_name, q_name], scores_shape, attrs={'equation': dot},
                                 source=type(layer).__name__), accum=AUTO, result=AUTO))
    mask = None if mask is None else mask.astype(np.int64).tolist()  # Keras' merged mask (causal: key j <= query i)
    fracs = [_max_frac(H.quantizer_spec(sub.oq, shape, call.where(), f'{part} output quantizer'))
             if getattr(sub, 'enable_oq', False) else None
             for part, sub, shape in (('query', layer._query_dense, q_out), ('key', layer._key_dense, k_out))]
    weights = _softmax(call, graph, layer._softmax, scores, scores_shape, call.fresh(f'{name}_softmax'), name, mask,
                       input_frac=None if None in fracs else sum(fracs))
    v_name, v_out = outs['value']
    combined_shape = q_shape[:-1] + v_out[-2:]
    combine = call.fresh(f'{name}_combine')
    eq = per_sample_equation(layer._combine_equation, [len(scores_shape), len(v_out)], call.where())
    graph.add(H._fixed(make_node(combine, 'Einsum', [weights, v_name], combined_shape, attrs={'equation': eq},
                                 source=type(layer).__name__), accum=AUTO, result=AUTO))
    out_call = _sub_call(call, layer._output_dense, call.name, [combine], [combined_shape], call.out_shape, name)
    out = _projection_dense(out_call, graph)
    if getattr(layer, 'enable_oq', False):
        out = H._quantize(call, graph, layer.oq, out, call.out_shape, 'oq', 'output quantizer (oq)')
    return out


def _linformer_projection(call: K._Call, graph: Graph, proj: Any, src: str, shape: tuple[int, ...],
                          part: str) -> tuple[str, tuple[int, ...]]:
    """QLinformerAttention's low-rank projection of the key or value along the sequence axis (a QEinsumDense
    without bias, 'abc,bd->adc'): its node and output shape (the projected length, the same features)."""
    out_shape = tuple(int(d) for d in proj.full_output_shape[1:])
    sub = _sub_call(call, proj, call.fresh(f'{call.layer.name}_{part}'), [src], [shape], out_shape, call.layer.name)
    return _projection_dense(sub, graph), out_shape


def _qeinsum(call: K._Call, graph: Graph) -> str:
    """QEinsum of two tensors -> a Quantize per input (iq), exact Einsum, [oq]."""
    layer = call.layer
    if len(call.inputs) != 2:
        raise GraphError(f'{call.where()}: QEinsum of {len(call.inputs)} tensors is not supported; only of two')
    srcs = list(call.inputs)
    if getattr(layer, 'enable_iq', False):
        srcs = [H._quantize(call, graph, layer.iq[k], s, call.in_shapes[k], f'iq{k}', f'input quantizer {k} (iq)')
                for k, s in enumerate(srcs)]
    equation = per_sample_equation(layer.equation, [len(s) for s in call.in_shapes], call.where())
    node = make_node(call.name, 'Einsum', srcs, call.out_shape, attrs={'equation': equation},
                     source=type(layer).__name__)
    graph.add(H._fixed(node, accum=AUTO, result=AUTO))
    return H._finish(call, graph, call.name)


HANDLERS: dict[str, Callable[[K._Call, Graph], str]] = {
    'QEinsum': _qeinsum,
    'QEinsumDense': _qeinsum_dense,
    'QMultiHeadAttention': _multi_head_attention,
    'QLinformerAttention': _multi_head_attention,
    'QMultiHeadAttentionT': _multi_head_attention,
    'QLinformerAttentionT': _multi_head_attention,
    'QEinsumDenseT': _qeinsum_dense_t,
    'QDenseT': _qeinsum_dense_t,
    'QEinsumDenseBatchnorm': _qeinsum_dense,
    'QSoftmax': _qsoftmax,
    'QSum': _qsum,
    'QMeanPow2': _qsum,
    'QUnaryFunctionLUT': _qunary_lut,
}

from .hgq_convt import HANDLERS as _CONVT_HANDLERS  # noqa: E402  (QConvT1D, QConvT2D: they reuse table_dense_node)

HANDLERS.update(_CONVT_HANDLERS)
