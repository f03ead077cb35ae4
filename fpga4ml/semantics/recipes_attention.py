"""Recipes of the transformer ops: LayerNorm, EinsumDense, Einsum, TableSoftmax, Embedding, MaskedSoftmax,
BiasAdd and TableDense (registered by recipes.py).

A multi-head attention is not one op: the front ends lower it into EinsumDense (query, key, value
projections, the 1/sqrt(key_dim) scale folded into the query kernel and bias), Einsum (scores),
Softmax (over the key axis, the last), Einsum (weighted values) and EinsumDense (output projection),
each a node with its own types, as hls4ml does for HGQ2's attention. docs/transformers.md.

Equations are per sample: letters only, no batch letter, no ellipsis ('tf,fhd->thd').
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..fixed import FixedType
from ..ir import GraphError
from .compose import einsum, einsum_index, parse_einsum
from .primitives import Const
from .spec import REQUIRED, attr, recipe
from .tables_attention import build_rsqrt_table, rsqrt_table_type

LINEAR_WEIGHTS = {'kernel': 'weight', 'bias': 'bias'}
LINEAR_PRECISION = ('weight', 'bias', 'accum', 'result')


# ---------------------------------------------------------------------------------------- LayerNorm
def norm_axes(node) -> tuple[tuple[int, ...], int]:
    """The normalised per-sample axes (negative, trailing) and how many values each row has."""
    axes = attr(node, 'axes')
    rank = len(node.shape)
    try:
        axes = tuple(sorted({int(a) - rank if int(a) >= 0 else int(a) for a in axes}))
    except (TypeError, ValueError):
        raise GraphError(f'layer {node.name!r}: LayerNorm axes must be a list of per-sample axes, got {axes!r}') from None
    if not axes or axes != tuple(range(-len(axes), 0)) or len(axes) > rank:
        raise GraphError(f'layer {node.name!r}: LayerNorm axes {attr(node, "axes")!r} are not supported on a per-sample '
                         f'shape {node.shape}; only trailing axes (e.g. [-1] or [-2, -1], the batch axis excluded)')
    return axes, int(np.prod(node.shape[len(node.shape) - len(axes):], dtype=np.int64))


def _row_broadcast(node, lead: tuple[int, ...], n: int) -> np.ndarray:
    """The gather index repeating each row's single value n times: (lead..., 1) -> (lead..., n)."""
    rows = int(np.prod(lead, dtype=np.int64))
    return np.repeat(np.arange(rows, dtype=np.int64), n).reshape(lead + (n,))


def _normalized(node, p, d, q, n: int, lead: tuple[int, ...]):
    """d_i * sqrt(n) / sqrt(q + E) in fixed point: V normalised by conditional shifts, then the table."""
    eps = float(attr(node, 'epsilon'))
    p.type('table', rsqrt_table_type(n))
    table = p.tables(lambda nd, in_types: build_rsqrt_table(nd, q, n, eps, in_types[0]))['rsqrt']
    v_frac = table.u_frac - table.window
    v = p.label(p.add(q, p.const(Const(np.asarray(table.eps_mantissa), v_frac))), 'variance')
    u = p.shift(v, -table.window)  # [0, 1): the mantissas stay
    index = _row_broadcast(node, lead, n)
    frac = node_frac(p, d)
    for k in table.stages:
        t = Const(np.asarray((1 << (table.u_frac - 2 * k)) - 1), table.u_frac)  # u > t <=> u >= 4^-k
        d = p.piecewise(p.gather(u, index), t, lambda _: d, lambda _, k=k: p.shift(_bounded(p, d, table, k, frac), k))
        u = p.piecewise(u, t, lambda w: w, lambda w, k=k: p.shift(_below(p, w, table, k), 2 * k))
    d = p.label(d, 'scaled')
    r = p.lookup(p.label(u, 'normalized_variance'), 'rsqrt', lambda w: math.sqrt(n) / np.sqrt(w))
    return p.shift(p.mul(d, r), -(table.window // 2))


def _bounded(p, d, table, k: int, frac: int):
    """d where u < 4^-k, in a type that holds it there: |d_i| <= sqrt(sum d^2) <= sqrt(u 2^H) < 2^(H/2 - k).

    A fact the bounds cannot see, stated as a cast (WRAP, exact on the lanes that select this
    branch) and not as an `assume`: the netlist narrows an assumed signal in place, and d is also
    read where the fact does not hold.
    """
    integer = max(table.window // 2 - k + 1, 2 - frac)
    return p.cast(d, FixedType(integer + frac, integer, True, 'TRN', 'WRAP'))


def _below(p, u, table, k: int):
    """u where u < 4^-k, in ufixed<u_frac - 2k, -2k> (a cast, exact there; see _bounded)."""
    return p.cast(u, FixedType(table.u_frac - 2 * k, -2 * k, False, 'TRN', 'WRAP'))


def node_frac(p, d) -> int:
    """The LSB of d (n*x - sum x): the input's, in every fixed-point interpreter."""
    return getattr(p, 'b', p).in_types[0].frac


@recipe('LayerNorm', attrs={'axes': (-1,), 'epsilon': 1e-3, 'center': True, 'scale': True},
        weights={'gamma': 'scale', 'beta': 'bias'}, precision=('scale', 'bias', 'accum', 'table', 'result'))
def layer_norm(node, p, x):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the trailing `axes`, exact but for one table.

    d_i = n*x_i - sum(x) and sum(d_i^2) are exact integers; 1/sqrt comes from a table over the
    normalised variance (tables_attention.py), so every variance its type holds is resolved alike.
    The normalised value is cast into 'accum' (auto: exact), then gamma and beta are applied exactly
    and the sum is cast into 'result' (auto: the model default).
    """
    axes, n = norm_axes(node)
    lead = tuple(node.shape[:len(node.shape) - len(axes)])
    rows = p.reshape(x, lead + (n,))
    total = p.label(p.reduce(rows, 'sum', axis=-1, keepdims=True), 'row_sum')
    d = p.label(p.sub(p.mul(rows, p.const(Const(np.asarray(n), 0))), total), 'centered')
    q = p.label(p.reduce(p.mul(d, d), 'sum', axis=-1, keepdims=True), 'square_sum')
    if p.quantized:
        z = _normalized(node, p, d, q, n, lead)
    else:  # the real meaning: n^3 * epsilon exactly
        v = p.add(q, p.const(Const(np.asarray(float(n) ** 3 * float(attr(node, 'epsilon'))), None)))
        z = p.mul(d, p.lookup(v, 'rsqrt', lambda w: math.sqrt(n) / np.sqrt(w)))
    y = p.cast(z, 'accum', 'exact')
    if attr(node, 'scale'):
        y = p.mul(y, p.const(p.weight('gamma').map(lambda g: np.reshape(g, (n,)))))
    if attr(node, 'center'):
        y = p.add(y, p.const(p.weight('beta').map(lambda b: np.reshape(b, (n,)))))
    return p.cast(p.reshape(y, node.shape), 'result', 'default')


# ---------------------------------------------------------------------------------------- EinsumDense
def einsum_dense_letters(node, x_shape: tuple[int, ...], k_shape: tuple[int, ...]):
    """The letter groups of an EinsumDense: shared (I), input-only (L0), kernel-only (L1), contracted (C).

    Input letters in neither the kernel nor the output are contracted too (summed, the kernel
    repeated along them), as einsum and Keras define it.
    """
    spec = attr(node, 'equation')
    (li, lk), out, contracted, sizes = parse_einsum(node, spec, [x_shape, k_shape])
    shared = ''.join(c for c in out if c in li and c in lk)
    free_x = ''.join(c for c in li if c in out and c not in lk)
    free_k = ''.join(c for c in lk if c in out and c not in li)
    lonely = sorted(set(lk) - set(out) - set(li))
    if lonely:
        raise GraphError(f'layer {node.name!r}: EinsumDense {spec!r}: the kernel letters {lonely} appear in neither '
                         'the input nor the output (a sum over kernel axes alone) is not supported')
    return li, lk, out, shared, free_x, free_k, ''.join(c for c in li if c in contracted), sizes


def _size(letters: str, sizes: dict[str, int]) -> int:
    return int(np.prod([sizes[c] for c in letters], dtype=np.int64))


def einsum_terms(node, spec: str, shapes: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Per output element (C order), the flat indices into both operands of its terms, in summation order.

    Two (outputs, terms) arrays; the terms come in C order of the contracted letters as they first
    appear in the spec, the order of compose.einsum and of EinsumDense (the HLS emitters read them).
    """
    (la, lb), out, contracted, sizes = parse_einsum(node, spec, shapes)
    joint, shape = out + contracted, (_size(out, sizes), _size(contracted, sizes))
    return (einsum_index(la, shapes[0], joint, sizes).reshape(shape),
            einsum_index(lb, shapes[1], joint, sizes).reshape(shape))


@recipe('EinsumDense', attrs={'equation': REQUIRED, 'use_bias': True}, weights=LINEAR_WEIGHTS,
        precision=LINEAR_PRECISION)
def einsum_dense(node, p, x):
    """A Dense per output position: out[i, l0, :] = x[i, l0, :] @ kernel[i] + bias[i, l0, :] (hls4ml).

    The input is regrouped as (shared I, input-only L0, contracted C) and the kernel as (I, C,
    kernel-only L1), each group in C order of its letters as they appear in the input/kernel. Every
    product and the bias are cast into 'accum' and summed in C order (hls4ml's dense_latency),
    then cast into 'result' and put in the output's letter order. The bias has the output shape.
    """
    k_shape = tuple(node.weights['kernel'].shape)
    li, lk, out, shared, free_x, free_k, contracted, sizes = einsum_dense_letters(node, p.shape(x), k_shape)
    n_i, n_0, n_c, n_1 = (_size(g, sizes) for g in (shared, free_x, contracted, free_k))
    x_index = einsum_index(li, p.shape(x), shared + free_x + contracted, sizes).reshape(n_i, n_0, n_c)
    k_index = einsum_index(lk, k_shape, shared + contracted + free_k, sizes).reshape(n_i, n_c, n_1)
    out_shape = tuple(sizes[c] for c in out)
    b_index = einsum_index(out, out_shape, shared + free_x + free_k, sizes).reshape(n_i, n_0, n_1)
    kernel, bias = p.weight('kernel'), p.weight('bias')
    blocks = []
    for i in range(n_i):
        k_i = kernel.map(lambda k, i=i: np.asarray(k).ravel()[k_index[i]])
        b_rows = np.asarray(bias.values).ravel()[b_index[i]] if np.ndim(bias.values) else None
        rows = range(n_0)
        if b_rows is None or all(np.array_equal(b_rows[0], b_rows[r]) for r in rows):
            groups = [(np.arange(n_0), 0)]  # one bias row serves every position
        else:
            groups = [(np.asarray([r]), r) for r in rows]
        for pos, r in groups:
            b = bias.map(lambda v, r=r, i=i: np.asarray(v).ravel()[b_index[i][r]])
            xs = p.gather(x, x_index[i][pos])
            blocks.append(p.const_matmul(xs, k_i, b, 'accum'))
    stacked = p.concat(blocks, 0) if len(blocks) > 1 else blocks[0]
    y = p.reshape(stacked, (n_i * n_0 * n_1,))
    y = p.gather(y, einsum_index(shared + free_x + free_k, tuple(sizes[c] for c in shared + free_x + free_k),
                                 out, sizes))
    return p.cast(y, 'result', 'accum')


class EinsumDenseRows(NamedTuple):
    """An EinsumDense as rows sharing one matrix: per position its inputs in term order (flat indices into
    x), the matrix and bias as flat indices into the kernel and bias, and per output element (C order of
    the output) its index among the rows' outputs (row-major: position, then kernel-only output)."""

    rows: np.ndarray          # (positions, terms)
    kernel_index: np.ndarray  # (terms, outputs per position)
    bias_index: np.ndarray    # (outputs per position,)
    order: np.ndarray         # (output elements,)


def einsum_dense_rows(node, x_shape: tuple[int, ...]) -> EinsumDenseRows:
    """The recipe's products as rows of one shared matrix (what a folded EinsumDense computes); GraphError
    when the kernel or the bias differs between positions (the recipe's blocks per shared letter or bias row)."""
    k_shape = tuple(np.shape(node.weights['kernel']))
    li, lk, out, shared, free_x, free_k, contracted, sizes = einsum_dense_letters(node, x_shape, k_shape)
    where = f"layer {node.name!r}: EinsumDense {attr(node, 'equation')!r} cannot fold"
    if shared:
        raise GraphError(f'{where}: it has a kernel slice per position (the letters {shared!r} are in the input, the '
                         'kernel and the output); only a kernel every position shares folds. Set its ReuseFactor to 1')
    if set(contracted) - set(lk):
        raise GraphError(f'{where}: it sums input axes {sorted(set(contracted) - set(lk))} the kernel does not have; '
                         'set its ReuseFactor to 1')
    n_0, n_c, n_1 = (_size(g, sizes) for g in (free_x, contracted, free_k))
    rows = einsum_index(li, x_shape, free_x + contracted, sizes).reshape(n_0, n_c)
    kernel_index = einsum_index(lk, k_shape, contracted + free_k, sizes).reshape(n_c, n_1)
    bias_index = einsum_index(out, tuple(sizes[c] for c in out), free_x + free_k, sizes).reshape(n_0, n_1)
    bias = (node.qweights or node.weights).get('bias')
    if bias is not None and np.ndim(bias):
        flat = np.asarray(bias).ravel()
        if any(not np.array_equal(flat[bias_index[0]], flat[b]) for b in bias_index[1:]):
            raise GraphError(f'{where}: its bias differs between positions; set its ReuseFactor to 1')
    order = einsum_index(free_x + free_k, tuple(sizes[c] for c in free_x + free_k), out, sizes).ravel()
    return EinsumDenseRows(rows, kernel_index, bias_index[0], order)


# ---------------------------------------------------------------------------------------- Einsum
@recipe('Einsum', attrs={'equation': REQUIRED}, precision=('accum', 'result'))
def einsum_op(node, p, a, b):
    """The contraction of two variable tensors: exact products cast into 'accum', summed there in C order
    of the contracted letters (compose.einsum), then cast into 'result' (auto: the accumulator)."""
    return p.cast(einsum(p, attr(node, 'equation'), a, b, acc='accum'), 'result', 'accum')


# ---------------------------------------------------------------------------------------- TableSoftmax
def _given_table(node, key: str, index, entries_attr: str) -> None:
    """Table `key` of the node from the entries a front end gives (mantissas of its table type, one per
    value of the `index` type in mantissa order)."""
    from .tables import Table
    entries = np.asarray(attr(node, entries_attr), dtype=np.int64)
    if entries.shape != (1 << index.width,):
        raise GraphError(f"layer {node.name!r}: attrs[{entries_attr!r}] has {entries.size} entries; the index type "
                         f'{index} has {1 << index.width} values')
    tables = dict(node.attrs.get('tables') or {})
    tables[key] = Table(FixedType(index.width, index.integer, index.signed, 'TRN', 'SAT'), entries,
                        node.types[f'{key}_table'])
    node.attrs['tables'] = tables


@recipe('TableSoftmax', attrs={'exp_index': REQUIRED, 'exp_entries': REQUIRED, 'inv_index': REQUIRED,
                               'inv_entries': REQUIRED, 'scale': 1.0, 'epsilon': 0.0, 'mask': None, 'stable': True},
        precision=('exp_table', 'inv_table', 'result'))
def table_softmax(node, p, x):
    """Softmax over the last axis with given tables (HGQ2's QSoftmax):

    stable (default): d = max(x) - x cast into `exp_index` (its rounding and overflow); e = exp table[d]
    (entries: the front end's, real meaning exp(-d * scale)). Not stable (HGQ2's stable=False, no
    maximum: a shorter path): d = x cast into `exp_index`, e = exp table[d] (real meaning exp(d * scale);
    the front end makes the index type saturate where the table is constant, so the cast is exact).
    Then s = sum(e), exact, cast into `inv_index`; r = inv table[s] (real meaning 1 / (s + epsilon));
    y = e * r, exact, cast into 'result' (auto: exact).
    With a constant `mask` (0/1, broadcast to the shape) the maximum is over the kept keys and masked
    keys read d = 0 and e = 0 (HGQ2 multiplies their exp by the mask).
    """
    exp_index, inv_index = attr(node, 'exp_index'), attr(node, 'inv_index')
    scale, eps = float(attr(node, 'scale')), float(attr(node, 'epsilon'))
    p.type('exp_table', 'default')
    p.type('inv_table', 'default')
    p.tables(lambda nd, in_types: (_given_table(nd, 'exp', exp_index, 'exp_entries'),
                                   _given_table(nd, 'inv', inv_index, 'inv_entries')))
    top, masked, empty = _masking(node, p, None if attr(node, 'mask') is None else softmax_mask(node))
    if attr(node, 'stable'):
        d = p.cast(p.assume(masked(p.sub(top(x), x)), lo=0), exp_index)
        e = masked(p.lookup(d, 'exp', lambda v: np.exp(-v * scale)))
    else:
        e = masked(p.lookup(p.cast(x, exp_index), 'exp', lambda v: np.exp(v * scale)))
    s = p.cast(p.label(p.reduce(e, 'sum', axis=-1, keepdims=True), 'sum'), inv_index)
    r = p.lookup(s, 'inv', lambda v: 1.0 / (v + eps))
    return p.cast(empty(p.mul(e, r)), 'result', 'exact')


def _masking(node, p, mask: np.ndarray | None):
    """(top, masked, empty): the row maximum over the kept keys, a value with its masked cells replaced by 0
    (gathers of the value and one appended 0), and a value with the rows that keep no key replaced by 0.

    A row that keeps no key (a masked query) is computed as if it kept every key and then zeroed, as
    Keras' and HGQ2's masked softmax give 0 there. Without a mask: the plain maximum and identities.
    """
    from .primitives import LOWEST
    if mask is None:
        return (lambda v: p.reduce(v, 'max', axis=-1, keepdims=True)), (lambda v: v), (lambda v: v)
    flat = np.arange(node.size, dtype=np.int64).reshape(node.shape)
    zero = p.const(Const(np.zeros(1, dtype=np.int64), 0))
    none = ~mask.any(axis=-1, keepdims=True)
    kept = np.where(mask | none, flat, node.size)

    def top(v):
        return p.reduce(p.gather(v, np.where(mask | none, flat, -1), LOWEST), 'max', axis=-1, keepdims=True)

    def masked(v):
        return p.gather(p.concat([p.reshape(v, (node.size,)), zero], 0), kept)

    def empty(v):
        if not none.any():
            return v
        return p.gather(p.concat([p.reshape(v, (node.size,)), zero], 0), np.where(none, node.size, flat))
    return top, masked, empty


# ---------------------------------------------------------------------------------------- Embedding
def embedding_index_type(node) -> FixedType:
    """The index type of an Embedding of V rows: fixed<b+1, b+1, TRN, SAT> with 2^b > V (every index
    outside [0, V) reads a zero row; a fractional input is floored)."""
    rows = int(np.shape(node.weights['embeddings'])[0])
    bits = rows.bit_length()
    return FixedType(bits + 1, bits + 1, True, 'TRN', 'SAT')


def _embedding_tables(node) -> None:
    """One table per embedding column over every value of the index type (zeros outside [0, V))."""
    from .tables import Table
    index = embedding_index_type(node)
    values = np.asarray(node.qweights['embeddings'], dtype=np.int64)
    rows = np.arange(index.min_mantissa, index.max_mantissa + 1)
    valid = (rows >= 0) & (rows < len(values))
    table = np.zeros((rows.size, values.shape[1]), dtype=np.int64)
    table[valid] = values[rows[valid]]
    node.attrs['tables'] = {f'column{j}': Table(index, table[:, j].copy(), node.types['weight'])
                            for j in range(values.shape[1])}


@recipe('Embedding', weights={'embeddings': 'weight'}, precision=('weight', 'result'))
def embedding(node, p, x):
    """y[..., j] = embeddings[index(x), j]: x floored and saturated into the index type, rows outside
    [0, V) read zeros; one table per column; the result type (auto) holds the weights exactly."""
    table = np.asarray(node.weights['embeddings'], dtype=np.float64)
    rows = len(table)
    p.tables(lambda nd, in_types: _embedding_tables(nd))

    def real(j):
        def column(v):
            idx = np.floor(np.asarray(v, dtype=np.float64))
            ok = (idx >= 0) & (idx < rows)
            return np.where(ok, table[np.clip(idx, 0, rows - 1).astype(np.int64), j], 0.0)
        return column

    shape = p.shape(x)
    cols = [p.reshape(p.lookup(x, f'column{j}', real(j)), tuple(shape) + (1,)) for j in range(table.shape[1])]
    return p.cast(p.concat(cols, -1), 'result', 'exact')


# ---------------------------------------------------------------------------------------- MaskedSoftmax
def softmax_mask(node) -> np.ndarray:
    """The node's constant mask broadcast to its shape (True: the key takes part; a row without one gives 0)."""
    try:
        return np.broadcast_to(np.asarray(attr(node, 'mask'), dtype=bool), node.shape)
    except ValueError:
        raise GraphError(f"layer {node.name!r}: the mask of shape {np.shape(attr(node, 'mask'))} does not broadcast "
                         f'to the shape {node.shape}') from None


@recipe('MaskedSoftmax', attrs={'mask': REQUIRED}, precision=('result', 'exp_table', 'inv_table'))
def masked_softmax(node, p, x):
    """Softmax over the last axis of the keys a constant mask keeps; masked keys give 0 (Keras' masked softmax).

    The maximum is over the kept keys; d = x - max there and 0 at masked keys, e = exp table[d] (fpga4ml's
    exact softmax tables, tables.build_softmax_tables), masked e replaced by 0, s = sum(e) exact,
    y = e * inv table[s], cast into 'result' (auto: the model default). A row that keeps no key gives 0 (Keras;
    the HLS code computes e = 0 there, so 0 * inv table[0]).
    """
    from .tables import build_softmax_tables
    p.tables(lambda nd, in_types: build_softmax_tables(nd))
    top, masked, empty = _masking(node, p, softmax_mask(node))
    e = masked(p.lookup(p.assume(masked(p.sub(x, top(x))), hi=0), 'exp', np.exp))
    inv = p.lookup(p.label(p.reduce(e, 'sum', axis=-1, keepdims=True), 'sum'), 'inv', np.reciprocal)
    return p.cast(empty(p.mul(e, inv)), 'result', 'default', opaque=True)


# ---------------------------------------------------------------------------------------- BiasAdd
@recipe('BiasAdd', weights={'bias': 'bias'}, precision=('bias', 'result'))
def bias_add(node, p, x):
    """y = x + bias, a constant broadcast to the node's shape (torch's additive attention mask on the scores),
    exact, cast into 'result' (auto: exact)."""
    try:
        np.broadcast_shapes(np.shape(node.weights['bias']), tuple(node.shape))
    except ValueError:
        raise GraphError(f"layer {node.name!r}: BiasAdd bias of shape {np.shape(node.weights['bias'])} does not "
                         f'broadcast to the shape {node.shape}') from None
    return p.cast(p.add(x, p.const(p.weight('bias'))), 'result', 'exact')


# ---------------------------------------------------------------------------------------- TableDense
def _element_tables(node) -> None:
    """One table per presum element e (HGQ2's QEinsumDenseT): index_types[e] (cast TRN, SAT: the values are
    already on its grid) -> entries[e], mantissas of entry_types[e]."""
    from .tables import Table
    tables = {}
    for e, (idx, entries, et) in enumerate(zip(attr(node, 'index_types'), attr(node, 'entries'),
                                               attr(node, 'entry_types'))):
        if idx is not None:
            index = FixedType(idx.width, idx.integer, idx.signed, 'TRN', 'SAT')
            tables[f'e{e}'] = Table(index, np.asarray(entries, dtype=np.int64), et)
    node.attrs['tables'] = tables


def _element_term(node, p, flat, e: int):
    """Term e of a TableDense: the input element cast into its index type, then its table (a constant when
    the element's input quantizer is pruned: the input is always 0)."""
    idx, entries, et = (attr(node, k)[e] for k in ('index_types', 'entries', 'entry_types'))
    if idx is None:
        return p.const(Const(np.asarray(entries[:1], dtype=np.int64), et.frac))
    values = np.asarray(entries, dtype=np.int64)

    def real(v, idx=idx, values=values, et=et):
        return et.to_float(values[idx.quantize(v) - idx.min_mantissa])
    return p.lookup(p.cast(p.gather(flat, np.asarray([attr(node, 'gather')[e]])), idx), f'e{e}', real)


@recipe('TableDense', attrs={'gather': REQUIRED, 'index_types': REQUIRED, 'entries': REQUIRED,
                             'entry_types': REQUIRED, 'sum_index': REQUIRED}, precision=('result',))
def table_dense(node, p, x):
    """A sum of per-element tables (HGQ2's QEinsumDenseT): term e reads input element gather[e], casts it into
    index_types[e] (the input quantizer: its rounding and overflow) and looks up its own table; output o is the
    exact sum of the terms sum_index[o] in order, cast into 'result' (auto: exact)."""
    p.tables(lambda nd, in_types: _element_tables(nd))
    flat = p.reshape(x, (int(np.prod(p.shape(x), dtype=np.int64)),))
    terms = p.label(p.concat([_element_term(node, p, flat, e) for e in range(len(attr(node, 'gather')))], 0),
                    'terms')
    sums = p.label(p.reduce(p.gather(terms, np.asarray(attr(node, 'sum_index'), dtype=np.int64)), 'sum', axis=-1),
                   'sum')
    return p.cast(p.reshape(sums, node.shape), 'result', 'exact')
