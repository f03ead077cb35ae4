"""Every IR op as one recipe over the primitives (primitives.py), with its one declaration (spec.py).

A recipe reads the node's attributes through `attr` (one default each), names type variables
instead of reading types, and ends with the cast into 'result' (or keeps its input's type). The
'auto' rule of each variable is named where the variable is first cast into: 'exact' (the
narrowest type holding the value), 'default' (the model default, as hls4ml), 'input', or another
variable. See docs/semantics.md for the hls4ml C++ each recipe reproduces.
"""

from __future__ import annotations

import numpy as np

from .. import geometry
from ..fixed import FixedType
from ..functions import SELU_ALPHA, SELU_SCALE, table_function
from ..intervals import type_for
from ..ir import TABLE_ACTIVATIONS, GraphError
from .params import default_param_type, element_groups, enclosing_type
from .primitives import LOWEST, Const
from .spec import REQUIRED, attr, recipe
from .compose import balanced_sum
from .tables import (HLS4ML_TABLE_TYPE, build_activation_table, build_lut_table, build_hls4ml_softmax_tables,
                     build_legacy_softmax_tables, build_softmax_tables, hls4ml_selu_lambda, hls4ml_tables,
                     softmax_implementation)

ZERO, ONE = Const(np.asarray(0), 0), Const(np.asarray(1), 0)
WINDOW_ATTRS = {'kernel_size': REQUIRED, 'strides': None, 'dilation': None, 'padding': None}
LINEAR_WEIGHTS = {'kernel': 'weight', 'bias': 'bias'}
LINEAR_PRECISION = ('weight', 'bias', 'accum', 'result')

recipe('Input', attrs={'input_quantizers': None})(None)  # a graph input: typed by the config, computes nothing


@recipe('Dense', attrs={'use_bias': True}, weights=LINEAR_WEIGHTS, precision=LINEAR_PRECISION)
def dense(node, p, x):
    """x @ kernel + bias over the last axis, hls4ml's dense_latency accumulate."""
    acc = p.const_matmul(x, p.weight('kernel'), p.weight('bias'), 'accum')
    return p.cast(acc, 'result', 'accum')


@recipe('Conv', attrs={**WINDOW_ATTRS, 'groups': 1, 'use_bias': True}, weights=LINEAR_WEIGHTS,
        precision=LINEAR_PRECISION)
def conv(node, p, x):
    """Each output pixel is a Dense over its receptive field in im2col order (padding cells are zeros)."""
    in_shape = p.shape(x)
    cols = p.gather(x, geometry.im2col_index(geometry.check_conv(node, in_shape), in_shape[-1]))
    kernel = p.weight('kernel').map(lambda k: geometry.conv_matrix(k, int(attr(node, 'groups')), node.name))
    acc = p.const_matmul(cols, kernel, p.weight('bias'), 'accum')
    return p.cast(p.reshape(acc, node.shape), 'result', 'accum')


@recipe('Pool', attrs={'mode': REQUIRED, 'pool_size': None, 'strides': None, 'padding': None, 'global': False},
        precision=('accum', 'result'))
def pool(node, p, x):
    """Max or average over the real cells of each window (hls4ml pooling, count_pad=False).

    max: the largest real cell, cast into the accumulator. avg: the cells summed in window order,
    each partial sum cast into the accumulator, then divided by the number of real cells
    (truncated toward zero at the accumulator's LSB).
    """
    index, counts = geometry.pool_index(node, p.shape(x))  # (taps, outputs)
    if attr(node, 'mode') == 'max':
        y = p.cast(p.reduce(p.gather(x, index, LOWEST), 'max', axis=0), 'accum', 'input')
    else:
        extra = (len(index) - 1).bit_length()  # ceil(log2(taps)): a power-of-two division is exact
        total = p.reduce(p.gather(x, index), 'sum', axis=0, acc='accum',
                         auto=lambda exact: type_for(exact.align(exact.frac + extra)))
        y = p.div_trunc(total, counts)
    return p.cast(p.reshape(y, node.shape), 'result', 'input')


def index_map(node, p, x):
    """Pad, Crop, Resize, Transpose: a gather of the input (Pad reads zeros); the type is the input's."""
    return p.reshape(p.gather(x, geometry.index_map(node, p.shape(x)).ravel()), node.shape)


for _op in geometry.INDEX_MAP_OPS:
    recipe(_op, attrs={'padding': None, 'cropping': None, 'scale': None, 'index': None, 'method': 'nearest',
                       'perm': None}, keeps_type=True)(index_map)


@recipe('Select', attrs={'index': REQUIRED}, keeps_type=True)
def select(node, p, x):
    """One output of a node with several outputs (the drivers hand it that output: `ir.operands`)."""
    return x


@recipe('Reshape', attrs={'shape': None}, keeps_type=True)
def reshape(node, p, x):
    """The same values in the node's shape."""
    return p.reshape(x, node.shape)


@recipe('Scale', attrs={'axis': -1, 'epsilon': None, 'bn': None, 'fold': True, 'quantizer_scale': False},
        weights={'scale': 'scale', 'bias': 'bias'}, precision=('scale', 'bias', 'result'))
def scale(node, p, x):
    """x * scale + bias per channel, exact, then cast (hls4ml normalize)."""
    y = p.add(p.mul(x, p.const(p.weight('scale'))), p.const(p.weight('bias')))
    return p.cast(y, 'result', 'exact')


ACTIVATION_ATTRS = {'function': REQUIRED, 'alpha': 0.3, 'slope': 0.2, 'shift': 0.5, 'max_value': None,
                    'threshold': 0.0, 'exact_result': False, 'lut_index': None, 'lut_entries': None,
                    'lut_type': None}


def activation_precision(node) -> tuple[str, ...]:
    """'result', plus 'param' (leaky_relu, prelu, hard_sigmoid) or 'table' (table functions); elu has both
    (its alpha is a 'param' under TableSemantics 'hls4ml'; the exact table holds alpha * (e^x - 1) itself)."""
    fn = node.attrs.get('function')
    extra = ('param',) if fn in ('leaky_relu', 'prelu', 'hard_sigmoid') else ('table',) if fn in TABLE_ACTIVATIONS else ()
    return ('result',) + extra + (('param',) if fn == 'elu' else ())


@recipe('Activation', attrs=ACTIVATION_ATTRS, weights={'alpha': None}, precision=activation_precision)
def activation(node, p, x):
    """Table functions by lookup; piecewise ones exactly, then one cast into the result type.

    An 'auto' result is the model default (as hls4ml), or the exact type when `exact_result` is set
    (quantization-aware models compute piecewise activations exactly).
    """
    fn = attr(node, 'function')
    if fn in ('elu', 'selu') and hls4ml_tables(node):
        return _elu_hls4ml(node, p, x)
    if fn == 'lut':
        return _given_lut(node, p, x)
    if fn in TABLE_ACTIVATIONS:
        p.type('result', 'default')
        p.type('table', HLS4ML_TABLE_TYPE if hls4ml_tables(node) else 'result')
        tables = p.tables(lambda n, in_types: build_activation_table(n, in_types[0]))
        f, k = table_function(fn, node.attrs), tables['f'].shift if tables else 0  # hls4ml's: x * N / R
        return p.cast(p.lookup(p.shift(x, k), 'f', lambda v: f(v * 2.0 ** -k)), 'result', opaque=True)
    exact = bool(attr(node, 'exact_result'))
    auto = 'exact' if exact else 'default'
    if fn == 'linear':
        return p.cast(x, 'result', auto)
    if fn == 'relu':
        return p.cast(_relu(node, p, x, exact), 'result', auto)
    if fn in ('leaky_relu', 'prelu'):
        values = node.weights.get('alpha') if fn == 'prelu' else attr(node, 'alpha')
        if values is None:
            raise GraphError(f"layer {node.name!r}: prelu needs weights['alpha']")
        alpha = p.const(_param(node, p, values, 'alpha' if fn == 'prelu' else None))
        if attr(node, 'threshold') or attr(node, 'max_value') is not None:
            return _shifted_leaky(node, p, x, alpha)
        return p.cast(p.piecewise(x, ZERO, lambda v: v, lambda v: p.mul(v, alpha)), 'result', auto)
    if fn == 'hard_sigmoid':
        slope, shift = (p.const(_param(node, p, attr(node, k))) for k in ('slope', 'shift'))
        y = p.label(p.add(p.mul(x, slope), shift), 'exact')  # the HLS emitter declares it
        return p.cast(p.minimum(p.maximum(y, p.const(ZERO)), p.const(ONE)), 'result', auto)
    if fn == 'hard_tanh':
        return p.cast(p.minimum(p.maximum(x, p.const(Const(np.asarray(-1), 0))), p.const(ONE)), 'result', auto)
    raise GraphError(f'layer {node.name!r}: activation {fn!r} is not supported; supported: '
                     f"{sorted(TABLE_ACTIVATIONS) + ['hard_sigmoid', 'hard_tanh', 'leaky_relu', 'linear', 'prelu', 'relu']}")


def _given_lut(node, p, x):
    """Function 'lut' (HGQ2's QUnaryFunctionLUT): y = table[(lut_index) x] with the front end's entries (its real
    meaning the same step function; lut_type: the entries' type), cast into the result type (auto: the table type)."""
    p.type('table', attr(node, 'lut_type'))
    p.type('result', 'table')
    p.tables(lambda n, in_types: build_lut_table(n))
    index, entries = attr(node, 'lut_index'), np.asarray(attr(node, 'lut_entries'), dtype=np.int64)
    idx = FixedType(index.width, index.integer, index.signed, 'TRN', 'SAT')

    def step(v):
        return attr(node, 'lut_type').to_float(entries[idx.quantize(v) - idx.min_mantissa])
    return p.cast(p.lookup(x, 'f', step), 'result', opaque=True)


def _elu_hls4ml(node, p, x):
    """hls4ml's elu and selu (nnet_activation.h): a table of the negative side only.

    x >= 0: elu (result_t) x, selu (result_t)(lambda * x) with lambda = ap_ufixed<16,1>(1.0507...).
    x < 0: t = table[min(int(x * N / -8), N - 1)] (tables.build_hls4ml_elu_table); elu
    (result_t)(alpha * t), alpha in the 'param' type (auto: the model default, as hls4ml), selu (result_t) t.
    Both sides give 0 at x = 0, so the branch is x > 0; the table reads min(x, 0).
    """
    fn = attr(node, 'function')
    p.type('result', 'default')
    p.type('table', HLS4ML_TABLE_TYPE)
    tables = p.tables(lambda n, in_types: build_activation_table(n, in_types[0]))
    k = tables['f'].shift if tables else 0
    scale = 1.0 if fn == 'elu' else SELU_SCALE * SELU_ALPHA

    def negative(v):
        v = p.shift(p.minimum(v, p.const(ZERO)), k)
        return p.lookup(v, 'f', lambda u: scale * np.expm1(np.minimum(u, 0) * 2.0 ** -k))
    if fn == 'elu':
        alpha = p.const(p.param(attr(node, 'alpha'), 'default'))
        y = p.piecewise(x, ZERO, lambda v: v, lambda v: p.mul(negative(v), alpha))
    else:
        lam_m, lam_frac = hls4ml_selu_lambda()
        lam = p.const(Const(np.asarray(lam_m), lam_frac))
        y = p.piecewise(x, ZERO, lambda v: p.mul(v, lam), negative)
    return p.cast(y, 'result')


def _shifted_leaky(node, p, x, alpha):
    """Keras' ReLU(negative_slope, threshold, max_value): relu part - alpha * max(threshold - x, 0).

    Only its real meaning exists: a threshold is not on the fixed-point grid in general, so the
    fixed-point interpreters refuse it (as hls4ml does).
    """
    if p.quantized:
        raise GraphError(f"layer {node.name!r}: a negative slope together with threshold="
                         f"{attr(node, 'threshold')} or max_value={attr(node, 'max_value')} is not supported; "
                         'use threshold=0 and no max_value, or a ReLU without a slope')
    below = p.maximum(p.sub(p.const(p.at_lsb(attr(node, 'threshold'), x)), x), p.const(ZERO))
    return p.sub(_relu(node, p, x, True), p.mul(below, alpha))


def _param(node, p, values, store=None) -> Const:
    return p.param(values, lambda _: default_param_type(node, p.in_types[0]), store)


def _relu(node, p, x, exact: bool):
    """max(x, 0) or (x > threshold ? x : 0), capped at max_value, rounded to the result LSB first.

    Every ap_fixed rounding is monotone and maps 0 to 0, so rounding first and clipping after is
    the cast of the clipped value, with the comparisons on the (narrower) rounded value; the
    threshold is compared on the exact input.
    """
    if not exact:
        p.type('result', 'default')
    rounded = (lambda v: v) if exact else (lambda v: p.round(v, 'result'))
    threshold = attr(node, 'threshold')
    if threshold:
        if attr(node, 'max_value') is not None and float(threshold) < 0:
            raise GraphError(f'layer {node.name!r}: a negative threshold={threshold} together with max_value is '
                             'not supported')
        y = p.piecewise(x, p.at_lsb(threshold, x), rounded, lambda v: p.const(ZERO))
    else:
        y = p.maximum(rounded(x), p.const(ZERO))
    if attr(node, 'max_value') is not None:
        y = p.minimum(y, rounded(p.const(p.at_lsb(attr(node, 'max_value'), x, exact=True))))
    return y


@recipe('Softmax', attrs={'axis': -1}, precision=('result', 'exp_table', 'inv_table'))
def softmax(node, p, x):
    """Softmax over the last axis: fpga4ml's exact tables, or one of hls4ml's implementations.

    Which one: `tables.softmax_implementation` (config Implementation and TableSemantics). With
    Skip (hls4ml removes the layer) the input passes unchanged into the result type (default: its own).
    """
    if attr(node, 'axis') not in (-1, len(node.shape) - 1):
        raise GraphError(f"layer {node.name!r}: softmax axis {attr(node, 'axis')} is not supported; only the last")
    if node.config.get('Skip', False):
        return p.cast(x, 'result', 'input')
    return SOFTMAX_RECIPES[softmax_implementation(node)](node, p, x)


def _softmax_exact(node, p, x):
    """exp(x - max(x)) from a table, times 1/sum from a table, cast into the result (docs/semantics.md)."""
    p.tables(lambda n, in_types: build_softmax_tables(n))
    top = p.reduce(x, 'max', axis=-1, keepdims=True)
    e = p.lookup(p.assume(p.sub(x, top), hi=0), 'exp', np.exp)
    inv = p.lookup(p.label(p.reduce(e, 'sum', axis=-1, keepdims=True), 'sum'), 'inv', np.reciprocal)
    return p.cast(p.mul(e, inv), 'result', 'default', opaque=True)


def _softmax_hls4ml(node, p, x):
    """hls4ml's softmax_latency / softmax_stable (nnet_activation.h), step by step.

    latency: e_i = (accum_t) exp_table[top bits of x_i]. stable: d_i = (inp_norm_t)(max(x) - x_i),
    e_i = (accum_t) exp_table[top bits of d_i]. Both: s = (inv_inp_t) of the balanced Op_add tree of the
    e_i in accum_t; y_i = (result_t)(e_i * inv_table[top bits of s]), an exact product.
    """
    p.type('accum', 'default')  # hls4ml: the model default when not configured
    p.tables(lambda n, in_types: build_hls4ml_softmax_tables(n, in_types[0]))  # types the tables and inp_norm
    if softmax_implementation(node) == 'stable':
        top = p.reduce(x, 'max', axis=-1, keepdims=True)
        x = p.cast(p.sub(top, x), 'inp_norm')
        e = p.cast(p.lookup(x, 'exp', lambda d: np.exp(-d)), 'accum')
    else:
        e = p.cast(p.lookup(x, 'exp', np.exp), 'accum')
    s = p.cast(balanced_sum(p, e, 'accum'), 'inv_inp')
    return p.cast(p.mul(e, p.lookup(s, 'inv', np.reciprocal)), 'result', 'default', opaque=True)


def _softmax_legacy(node, p, x):
    """hls4ml's softmax_legacy: y_i = (result_t) inv_table[s_i], s_i = sum over j (in table_t, in order)
    of exp_table[x_j - x_i] (tables and index arithmetic: tables.build_legacy_softmax_tables)."""
    p.type('accum', 'default')
    tables = p.tables(lambda n, in_types: build_legacy_softmax_tables(n, in_types[0]))  # types table_t
    k_exp, k_inv = (tables['exp'].shift, tables['inv'].shift) if tables else (0, 0)
    shape = tuple(p.shape(x))
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    pairs = shape + (shape[-1],)  # [..., i, j]
    xj = p.gather(x, np.ascontiguousarray(np.broadcast_to(flat[..., None, :], pairs)))
    xi = p.gather(x, np.ascontiguousarray(np.broadcast_to(flat[..., :, None], pairs)))
    e = p.lookup(p.shift(p.sub(xj, xi), k_exp), 'exp', lambda v: np.exp(v * 2.0 ** -k_exp))
    s = p.reduce(e, 'sum', axis=-1, acc='table')
    return p.cast(p.lookup(p.shift(s, k_inv), 'inv', lambda v: 2.0 ** k_inv / v), 'result', 'default', opaque=True)


def _softmax_argmax(node, p, x):
    """hls4ml's softmax_argmax: 1 at the first maximum of each row, 0 elsewhere, cast into the result type.

    is_max_i = (max(x) - x_i == 0); the first maximum is the one with no maximum before it
    (is_max_i - sum_{j<i} is_max_j > 0).
    """
    shape = tuple(p.shape(x))
    n = shape[-1]
    top = p.reduce(x, 'max', axis=-1, keepdims=True)
    is_max = p.piecewise(p.sub(top, x), ZERO, lambda v: p.const(ZERO), lambda v: p.const(ONE))
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    earlier = np.where(np.arange(n)[None, :] < np.arange(n)[:, None], flat[..., None, :], -1)  # [..., i, j<i]
    before = p.reduce(p.gather(is_max, np.ascontiguousarray(earlier)), 'sum', axis=-1)
    first = p.piecewise(p.sub(is_max, before), ZERO, lambda v: p.const(ONE), lambda v: p.const(ZERO))
    return p.cast(first, 'result', 'default')


SOFTMAX_RECIPES = {'exact': _softmax_exact, 'stable': _softmax_hls4ml, 'latency': _softmax_hls4ml,
                   'legacy': _softmax_legacy, 'argmax': _softmax_argmax}


MERGE_MODES = ('add', 'sub', 'mul', 'avg', 'max', 'min', 'concat')


@recipe('Merge', attrs={'mode': REQUIRED, 'axis': -1})
def merge(node, p, *xs):
    """Element-wise merges computed exactly at the finest input LSB, then cast (hls4ml nnet_merge)."""
    mode = attr(node, 'mode')
    if mode == 'concat':
        rank, axis = len(node.shape), int(attr(node, 'axis'))
        if not -rank <= axis < rank:
            raise GraphError(f'layer {node.name!r}: concat axis {axis} is out of range for per-sample rank {rank}')
        node.attrs['axis'] = axis = axis - rank if axis >= 0 else axis  # the same on batched arrays
        return p.cast(p.concat(list(xs), axis), 'result', 'exact')
    if mode == 'sub' and len(xs) != 2:
        raise GraphError(f'layer {node.name!r}: subtract needs exactly 2 inputs, got {len(xs)}')
    if mode == 'avg' and len(xs) & (len(xs) - 1) and p.quantized:
        raise GraphError(f'layer {node.name!r}: Average of {len(xs)} inputs is not supported '
                         f'(only powers of two are exact); use Add and a Dense/Scale instead')
    ops = {'add': p.add, 'avg': p.add, 'sub': p.sub, 'mul': p.mul, 'max': p.maximum, 'min': p.minimum}
    if mode not in ops:
        raise GraphError(f'layer {node.name!r}: merge mode {mode!r} is not supported; supported: {list(MERGE_MODES)}')
    y = p.label(xs[0], 'operands')  # the HLS max/min holds every operand in one variable
    for other in xs[1:]:
        y = ops[mode](y, p.label(other, 'operands'))
    if mode == 'avg' and len(xs) & (len(xs) - 1):  # the real meaning only (refused above in fixed point)
        y = p.mul(y, p.const(Const(np.asarray(1.0 / len(xs)), None)))
    elif mode == 'avg':
        y = p.shift(y, 1 - len(xs).bit_length())
    return p.cast(y, 'result', 'exact')


@recipe('Quantize', attrs={'element_types': None})
def quantize(node, p, x):
    """An explicit cast; per element (attrs['element_types']) each element is first cast into its own
    type (a pruned, 0-bit element is 0), then into the result type (by default the enclosing type)."""
    groups = element_groups(node)
    if groups is None:
        return p.cast(x, 'result', 'exact')
    types = [t for t, _ in groups if t is not None]
    flat = p.reshape(x, (node.size,))
    frac = max((t.frac for t in types), default=0)
    parts = [p.const(Const(np.zeros(len(idx), dtype=np.int64), frac)) if t is None else p.cast(p.gather(flat, idx), t)
             for t, idx in groups]
    order = np.argsort(np.concatenate([idx for _, idx in groups]), kind='stable')
    y = p.reshape(p.gather(p.concat(parts, 0), order), node.shape)
    spec = node.attrs['element_types']
    return p.cast(y, 'result', enclosing_type(types, spec.get('rounding', 'TRN'), spec.get('overflow', 'WRAP')))
from . import recipes_rnn  # noqa: E402,F401  (SimpleRNN, LSTM, GRU: recipes over scan)
from . import recipes_symbolic  # noqa: E402,F401  (Expression: symbolic expressions, fpga4ml/symbolic)
from . import recipes_attention  # noqa: E402,F401  (LayerNorm, EinsumDense, Einsum: transformers)
