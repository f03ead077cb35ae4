"""The integer semantics of every op: the specification every back end must match bit for bit.

Each `build_<op>` returns a kernel ``kernel(inputs, stats) -> mantissas`` for one typed node:
`inputs` are int64 mantissa arrays (batch axis first) of the node's inputs, typed by the input
nodes' result types; `stats`, when given, is a dict whose 'overflow' count the kernel increases
by the number of values that wrapped or saturated in this node. Every op computes an exact
intermediate value and ends with one cast into its result type (rounding + overflow of that
type), except where hls4ml's C++ casts earlier (Dense and Conv products and bias into the
accumulator; pooling into its accumulator, cell by cell for averages).
Exact float64 arithmetic (BLAS) is used only where interval bounds prove it exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fixed import FixedType
from ..intervals import Interval, round_shift, trunc_div
from ..ir import TABLE_ACTIVATIONS, GraphError, Node
from .. import geometry
from ..passes.precision import element_groups, param_mantissas, relu_max_mantissa, relu_threshold_mantissa
from ..passes.tables import Table
from . import fast

Kernel = Callable[[list, 'dict | None'], np.ndarray]

#: float64 represents every integer below 2^53 exactly; keep one bit of margin
FLOAT_EXACT_BITS = 52
#: int64 intermediate results must stay below 2^62 in magnitude
INT_EXACT_BITS = 62


def cast(t: FixedType, m: np.ndarray, frac_in: int, stats: dict | None) -> np.ndarray:
    """Cast mantissas into `t`, counting overflows into stats['overflow'] when stats is given."""
    if stats is None:
        return t.cast(m, frac_in)
    out, n = t.cast_count(m, frac_in)
    stats['overflow'] = stats.get('overflow', 0) + n
    return out


def cast_wide(t: FixedType, m: np.ndarray, frac_in: int, stats: dict | None) -> np.ndarray:
    """Cast exact mantissas of any width (a numpy object array of Python ints) into `t`.

    The same rounding (intervals.round_shift) and overflow as FixedType.cast, for intermediate
    values that do not fit int64 (products of wide operands); the result is an int64 array.
    """
    s = frac_in - t.frac
    q = m * (1 << -s) if s <= 0 else np.frompyfunc(lambda v: round_shift(v, s, t.rounding), 1, 1)(m)
    lo, hi = t._sat_min, t.max_mantissa
    over = (q < lo) | (q > hi)
    if stats is not None:
        stats['overflow'] = stats.get('overflow', 0) + int(np.count_nonzero(over))
    if t.overflow == 'WRAP':
        q = (q - t.min_mantissa) % (1 << t.width) + t.min_mantissa
    elif t.overflow == 'SAT_ZERO':
        q = np.where(over, 0, q)
    else:
        q = np.minimum(np.maximum(q, lo), hi)
    return np.asarray(q, dtype=object).astype(np.int64)


def cast_plan(t: FixedType, frac_in: int, bounds: tuple[int, int, int] | None):
    """A cast into `t` specialised by known input bounds: steps that cannot change a value are skipped.

    `bounds` are exact mantissa bounds (lo, hi, frac) of the values that will be cast, or None
    when unknown (they are used only when frac == frac_in). Tracing (stats given) always runs
    the full cast, so overflow counts stay exact.
    """
    s = frac_in - t.frac
    no_overflow = False
    if bounds is not None and bounds[2] == frac_in:
        lo, hi = (round_shift(int(b), s, t.rounding) for b in bounds[:2])
        no_overflow = t._sat_min <= lo and hi <= t.max_mantissa

    def full(m, stats):
        return cast(t, m, frac_in, stats)
    if not no_overflow:
        return full
    if s == 0:
        return lambda m, stats: m if stats is None else full(m, stats)
    if s < 0:
        return lambda m, stats: m << -s if stats is None else full(m, stats)
    # rounding only: the same LSB and rounding mode in a 64-bit type, where no value can overflow
    rounder = FixedType(64, 64 - t.frac, True, t.rounding, 'WRAP')
    return lambda m, stats: rounder.cast(m, frac_in) if stats is None else full(m, stats)


def _shift_left(m: np.ndarray, s: int) -> np.ndarray:
    return m << s if s else m


def _check_int_bits(node: Node, iv: Interval, what: str) -> None:
    if iv.max_bits() > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: the exact {what} needs {iv.max_bits()} bits, more than '
                         f'the emulator evaluates exactly ({INT_EXACT_BITS}); use narrower types')


# ---------------------------------------------------------------- Dense and Conv

#: a row-wise matrix-vector kernel: (rows, n_in) input mantissas -> (rows, n_out) result mantissas
RowKernel = Callable[[np.ndarray, 'dict | None'], np.ndarray]


@dataclass(frozen=True)
class AccumulatePlan:
    """What hls4ml's product-accumulate does to one Dense/Conv, decided from types and bounds.

    Shared by the emulator and the Verilog lowering so both take the same decisions.
    """

    acc_t: FixedType
    w: np.ndarray          # int64 weight mantissas (n_in, n_out)
    prod_frac: int         # LSB position of the exact products x * w
    shift: int             # prod_frac - acc frac: > 0 means products lose LSBs in the accumulator
    bias_acc: np.ndarray   # the bias cast into the accumulator (mantissas at acc frac)
    prod_max: int          # largest |x * w| (mantissa at prod_frac)
    abs_bound: int         # bound on |accumulator| (at acc frac), rounding slack included
    #: every product enters the accumulator by a plain floor shift (or exactly), never overflows
    #: it or wraps there (then wrapping each product and the sum equals wrapping the sum once)
    products_simple: bool
    sum_fits: bool         # the accumulated sum can never overflow the accumulator

    @property
    def saturating(self) -> bool:
        """The accumulator saturates step by step (the order of the additions is observable)."""
        return self.acc_t.overflow != 'WRAP' and not self.sum_fits


def accumulate_plan(node: Node, x_t: FixedType, x_abs_max: int, w: np.ndarray, bias: np.ndarray,
                    bias_frac: int) -> AccumulatePlan:
    """Decide how the products and the sum of a Dense/Conv are cast into its accumulator."""
    acc_t = node.types['accum']
    w = w.astype(np.int64)
    prod_frac = x_t.frac + node.types['weight'].frac
    bias_acc = acc_t.cast(bias.astype(np.int64), bias_frac)
    w_abs = np.abs(w).astype(object)
    prod_max = int(np.max(w_abs, initial=0)) * x_abs_max
    if prod_max.bit_length() > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: products of input ({x_t}) and weight '
                         f"({node.types['weight']}) need more than {INT_EXACT_BITS} bits")
    acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
    shift = prod_frac - acc_t.frac
    prod_acc_max = prod_max >> shift if shift > 0 else prod_max << -shift
    products_simple = (shift <= 0 or acc_t.rounding == 'TRN') and (prod_acc_max <= acc_limit or
                                                                     acc_t.overflow == 'WRAP')
    col_sum = int(np.max(w_abs.sum(axis=0), initial=0)) * x_abs_max
    abs_bound = (col_sum >> shift if shift > 0 else col_sum << -shift) + w.shape[0]
    abs_bound += int(np.max(np.abs(bias_acc), initial=0))
    return AccumulatePlan(acc_t, w, prod_frac, shift, bias_acc, prod_max, abs_bound, products_simple,
                          abs_bound <= acc_limit)


def matvec(node: Node, x_t: FixedType, x_abs_max: int, w: np.ndarray, bias: np.ndarray,
           bias_frac: int) -> tuple[RowKernel, np.dtype]:
    """hls4ml's dense_latency product-accumulate for each row of a (rows, n_in) matrix of inputs.

    Every product x*w is cast into the accumulator type (its rounding and overflow), the bias is
    cast into it too, the sum is accumulated in the accumulator type (sequentially saturating,
    in input order, for SAT modes; modular for WRAP), and the sum is cast into the result type.
    When interval bounds prove that a step cannot round or overflow, it is skipped: the result
    is the same, only faster (exact float64 BLAS, or the numba kernel of fast.py).
    Returns the kernel and the dtype its input rows should have (int32, int64 or float64; rows
    of mantissas in another dtype are converted).
    """
    plan = accumulate_plan(node, x_t, x_abs_max, w, bias, bias_frac)
    acc_t, w, shift, bias_acc = plan.acc_t, plan.w, plan.shift, plan.bias_acc
    n_in, n_out = w.shape
    prod_frac, prod_max, abs_bound, sum_fits = plan.prod_frac, plan.prod_max, plan.abs_bound, plan.sum_fits
    simple = plan.products_simple and (acc_t.overflow == 'WRAP' or sum_fits) and abs_bound.bit_length() <= INT_EXACT_BITS
    acc_cast = None if sum_fits else acc_t
    final = cast_plan(node.types['result'], acc_t.frac, node.attrs.get('exact_bounds'))

    def finish(acc, stats):
        if acc_cast is not None:
            acc = cast(acc_cast, acc, acc_t.frac, stats)
        return final(acc, stats)

    if simple and fast.available():
        w_k = w << -shift if shift < 0 else w
        if (prod_max << max(-shift, 0)).bit_length() <= 31 and abs_bound.bit_length() <= 31:
            w_k = w_k.astype(np.int32)  # exact: products and partial sums proven to fit 31 bits
        nz_rows = np.flatnonzero(np.any(w_k != 0, axis=1)).astype(np.int64)
        k_shift = max(shift, 0)
        # a WRAP accumulator wraps inside the kernel (tracing runs the counting cast instead)
        wrap = acc_t.width if acc_cast is not None else 0

        def rows_numba(x2, stats):
            if stats is not None:
                return finish(fast.dense_floor_shift(x2, w_k, nz_rows, bias_acc, k_shift), stats)
            return final(fast.dense_floor_shift(x2, w_k, nz_rows, bias_acc, k_shift, wrap, acc_t.signed), None)
        return rows_numba, w_k.dtype

    if simple and shift <= 0 and abs_bound.bit_length() <= FLOAT_EXACT_BITS:
        w_float = w.astype(np.float64) * 2.0 ** -shift
        b_float = bias_acc.astype(np.float64)

        def rows_blas(x2, stats):
            acc = x2.astype(np.float64, copy=False) @ w_float
            acc += b_float
            return finish(acc.astype(np.int64), stats)
        return rows_blas, np.dtype(np.float64)

    saturating = plan.saturating
    rows = [i for i in range(n_in) if w[i].any()]

    def rows_per_product(x2, stats):
        x2 = x2.astype(np.int64, copy=False)
        acc = np.broadcast_to(bias_acc, (x2.shape[0], n_out)).copy()
        for i in rows:
            acc += cast(acc_t, x2[:, i:i + 1] * w[i], prod_frac, stats)
            if saturating:
                acc = cast(acc_t, acc, acc_t.frac, stats)
        return finish(acc, stats)
    return rows_per_product, np.dtype(np.int64)


def build_dense(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """x @ kernel + bias over the last axis, hls4ml's dense_latency semantics (see `matvec`)."""
    kernel = node.qweights['kernel']
    rows, _ = matvec(node, in_types[0], in_ivs[0].abs_max, kernel, node.qweights['bias'], node.types['bias'].frac)
    n_in, n_out = kernel.shape

    def dense_kernel(inputs, stats):
        x = inputs[0]
        return rows(x.reshape(-1, n_in), stats).reshape(x.shape[:-1] + (n_out,))
    return dense_kernel


def build_conv(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Convolution as hls4ml's conv_2d_latency_cl / conv_1d_latency_cl compute it.

    Each output pixel is a Dense over its receptive field, read in hls4ml's im2col order
    (kernel row, kernel column, input channel; padding cells are zeros): bias first, then each
    product cast into the accumulator, in that order (observable with SAT accumulators), then one
    cast into the result type. The windows of the whole batch are gathered with a precomputed
    index array and go through the same row kernel as Dense (`matvec`); grouped and depthwise
    convolutions use a block-diagonal matrix whose zero weights contribute nothing.
    """
    x_iv, = in_ivs
    in_shape = x_iv.lo.shape
    win = geometry.check_conv(node, in_shape)
    index = geometry.im2col_index(win, in_shape[-1])
    matrix = geometry.conv_matrix(node.qweights['kernel'], int(node.attrs.get('groups', 1)), node.name)
    rows, dtype = matvec(node, in_types[0], x_iv.abs_max, matrix, node.qweights['bias'], node.types['bias'].frac)
    n_in = matrix.shape[0]

    def conv_kernel(inputs, stats):
        x = inputs[0]
        flat = x.reshape(len(x), -1).astype(dtype, copy=False)
        cols = geometry.take(flat, index)  # (batch, windows, taps * channels)
        return rows(cols.reshape(-1, n_in), stats).reshape((len(x),) + node.shape)
    return conv_kernel


# ---------------------------------------------------------------- pooling and index maps

def build_pool(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Max or average pooling as hls4ml's pooling1d_cl / pooling2d_cl compute it (count_pad=False).

    max: the largest real cell of the window (padding is skipped), cast into the accumulator,
    then into the result type. avg: acc = 0; for each tap in window order acc = cast_accum(acc + x)
    over the real cells; then acc / n with n the number of real cells, truncated toward zero in
    the accumulator's LSB (ap_fixed operator/ by an integer); then cast into the result type.
    """
    x_t, = in_types
    x_iv, = in_ivs
    acc_t, res_t = node.types['accum'], node.types['result']
    index, counts = geometry.pool_index(node, x_iv.lo.shape)
    final = cast_plan(res_t, acc_t.frac, node.attrs.get('exact_bounds'))
    shape = node.shape
    if node.attrs['mode'] == 'max':
        to_acc = cast_plan(acc_t, x_t.frac, (x_iv.min, x_iv.max, x_iv.frac))
        lowest = np.iinfo(np.int64).min

        def max_kernel(inputs, stats):
            x = inputs[0]
            flat = geometry.with_fill(x.reshape(len(x), -1), index, lowest)
            y = np.take(flat, index[0], axis=1)
            for k in index[1:]:
                np.maximum(y, np.take(flat, k, axis=1), out=y)
            return final(to_acc(y, stats), stats).reshape((len(x),) + shape)
        return max_kernel

    shift = acc_t.frac - x_t.frac  # >= 0: inputs enter the accumulator exactly
    need = max(((len(index) * x_iv.abs_max) << max(shift, 0)).bit_length(), acc_t.width - min(shift, 0))
    if need > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: the average pool sum needs {need} bits, more than the '
                         f'emulator evaluates exactly ({INT_EXACT_BITS}); use a narrower accum type')
    acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
    sum_fits = shift >= 0 and (len(index) * x_iv.abs_max) << shift <= acc_limit
    modular = shift >= 0 and acc_t.overflow == 'WRAP'  # one cast at the end equals a cast per step
    step = None if sum_fits or modular else acc_t
    end = acc_t if modular and not sum_fits else None
    whole = bool(np.all(counts == len(index)))

    def add(acc, v, stats):
        if shift >= 0:
            acc += v << shift if shift else v
            return acc if step is None else cast(step, acc, acc_t.frac, stats)
        return cast(acc_t, (acc << -shift) + v, x_t.frac, stats)

    def avg_kernel(inputs, stats):
        x = inputs[0]
        flat = geometry.with_fill(x.reshape(len(x), -1), index, 0)
        acc = np.zeros((len(x), index.shape[1]), dtype=np.int64)
        for k in index:
            acc = add(acc, np.take(flat, k, axis=1), stats)
        if end is not None:
            acc = cast(end, acc, acc_t.frac, stats)
        q = trunc_div(acc, len(index) if whole else counts)
        return final(q, stats).reshape((len(x),) + shape)
    return avg_kernel


def build_index_map(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Pad, Crop, Resize, Transpose: a gather of input mantissas (Pad reads zeros); the type is unchanged."""
    index = geometry.index_map(node, in_ivs[0].lo.shape).ravel()
    shape = node.shape

    def gather_kernel(inputs, stats):
        x = inputs[0]
        return geometry.take(x.reshape(len(x), -1), index).reshape((len(x),) + shape)
    return gather_kernel


# ---------------------------------------------------------------- element-wise ops

def build_scale(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """x * scale + bias per channel, computed exactly, then cast to the result type (hls4ml normalize)."""
    x_t, = in_types
    res_t = node.types['result']
    s_frac, b_frac = node.types['scale'].frac, node.types['bias'].frac
    frac = max(x_t.frac + s_frac, b_frac)
    scale = _shift_left(node.qweights['scale'].astype(np.int64), frac - x_t.frac - s_frac)
    bias = _shift_left(node.qweights['bias'].astype(np.int64), frac - b_frac)
    bound = in_ivs[0].abs_max * int(np.max(np.abs(scale), initial=0)) + int(np.max(np.abs(bias), initial=0))
    if bound.bit_length() > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: x*scale+bias needs {bound.bit_length()} bits')

    final = cast_plan(res_t, frac, node.attrs.get('exact_bounds'))
    # per-sample shaped constants: numpy then runs one long inner loop, not one per channel vector
    scale, bias = (np.ascontiguousarray(np.broadcast_to(a, node.shape)) for a in (scale, bias))

    def scale_kernel(inputs, stats):
        y = inputs[0] * scale
        y += bias
        return final(y, stats)
    return scale_kernel


def build_activation(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Piecewise activations computed exactly then cast; table activations by lookup."""
    x_t, = in_types
    res_t = node.types['result']
    fn = node.attrs['function']
    fx = x_t.frac
    if fn in TABLE_ACTIVATIONS:
        table: Table = node.attrs['tables']['f']

        def table_kernel(inputs, stats):
            return cast(res_t, lookup(table, inputs[0], fx), table.type.frac, stats)
        return table_kernel
    params = param_mantissas(node)
    bounds = node.attrs.get('exact_bounds')
    if fn == 'linear':
        final = cast_plan(res_t, fx, bounds)
        return lambda inputs, stats: final(inputs[0], stats)
    if fn == 'relu':
        cap = relu_max_mantissa(node, fx) if node.attrs.get('max_value') is not None else None
        theta = relu_threshold_mantissa(node, fx)  # x > threshold <=> mantissa > theta
        final = cast_plan(res_t, fx, bounds)

        def relu_kernel(inputs, stats):
            x = inputs[0]
            y = np.maximum(x, 0) if theta is None else np.where(x > theta, x, 0)
            if cap is not None:
                np.minimum(y, cap, out=y)
            return final(y, stats)
        return relu_kernel
    if fn in ('leaky_relu', 'prelu'):
        alpha, fa = params['alpha']
        alpha = alpha.astype(np.int64)
        _check_int_bits(node, Interval.of_values(np.asarray([in_ivs[0].abs_max * int(np.max(np.abs(alpha)))]), 0),
                        'negative-slope product')

        final = cast_plan(res_t, fx + fa, bounds)

        def leaky_kernel(inputs, stats):
            x = inputs[0]
            return final(np.where(x > 0, _shift_left(x, fa), x * alpha), stats)
        return leaky_kernel
    if fn == 'hard_sigmoid':
        slope, fp = params['slope']
        shift, _ = params['shift']
        frac = fx + fp
        slope_i, shift_i = int(slope), int(shift) << fx if fx >= 0 else None
        if shift_i is None:
            raise GraphError(f'layer {node.name!r}: hard_sigmoid needs an input type with fractional bits >= 0')
        one = 1 << frac

        def hard_sigmoid_kernel(inputs, stats):
            y = inputs[0] * slope_i + shift_i
            return cast(res_t, np.clip(y, 0, one), frac, stats)
        return hard_sigmoid_kernel
    if fn == 'hard_tanh':
        frac = max(fx, 0)
        one = 1 << frac

        def hard_tanh_kernel(inputs, stats):
            return cast(res_t, np.clip(_shift_left(inputs[0], frac - fx), -one, one), frac, stats)
        return hard_tanh_kernel
    raise GraphError(f'layer {node.name!r}: activation {fn!r} has no emulator semantics')


def lookup(table: Table, m: np.ndarray, frac_in: int) -> np.ndarray:
    """Table semantics: cast the input into the index type, address = mantissa - index minimum."""
    address = table.index.cast(m, frac_in) - table.index.min_mantissa
    return table.values[address]


def build_softmax(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Softmax over the last axis through an exp table and a reciprocal table (docs/semantics.md).

    d = x - max(x) <= 0 is floored into the exp index type and negated into an address, so only
    the maximum itself reads exp(0); the exact sum s of the exps addresses the reciprocal table;
    the output is the exact product exp(d) * (1/s) cast into the result type.
    """
    x_t, = in_types
    res_t = node.types['result']
    exp_tab: Table = node.attrs['tables']['exp']
    inv_tab: Table = node.attrs['tables']['inv']
    fx = x_t.frac
    last = len(exp_tab) - 1
    out_frac = exp_tab.type.frac + inv_tab.type.frac

    def softmax_kernel(inputs, stats):
        x = inputs[0]
        d = x - x.max(axis=-1, keepdims=True)
        address = np.minimum(-exp_tab.index.cast(d, fx), last)
        e = exp_tab.values[address]
        s = e.sum(axis=-1, keepdims=True)
        inv = lookup(inv_tab, s, exp_tab.type.frac)
        return cast(res_t, e * inv, out_frac, stats)
    return softmax_kernel


def build_merge(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Element-wise merges computed exactly at the finest input LSB, then cast (hls4ml nnet_merge)."""
    res_t = node.types['result']
    mode = node.attrs['mode']
    fracs = [t.frac for t in in_types]
    if mode == 'mul':
        frac = sum(fracs)
        bound = int(np.prod([iv.abs_max for iv in in_ivs], dtype=object))
        if bound.bit_length() > INT_EXACT_BITS:  # wider than int64: exact Python integers, this op only
            def wide_mul_kernel(inputs, stats):
                y = inputs[0].astype(object)
                for x in inputs[1:]:
                    y = y * x.astype(object)
                return cast_wide(res_t, y, frac, stats)
            return wide_mul_kernel

        final = cast_plan(res_t, frac, node.attrs.get('exact_bounds'))

        def mul_kernel(inputs, stats):
            y = inputs[0]
            for x in inputs[1:]:
                y = y * x
            return final(y, stats)
        return mul_kernel
    frac = max(fracs)
    shifts = [frac - f for f in fracs]

    def aligned(inputs):
        return [_shift_left(x, s) for x, s in zip(inputs, shifts)]

    out_frac = frac + (len(in_types).bit_length() - 1 if mode == 'avg' else 0)
    final = cast_plan(res_t, out_frac, node.attrs.get('exact_bounds'))
    if mode == 'concat':
        axis = node.attrs.get('axis', -1)
        return lambda inputs, stats: final(np.concatenate(aligned(inputs), axis=axis), stats)
    if mode in ('add', 'avg'):
        def add_kernel(inputs, stats):
            xs = aligned(inputs)
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return final(y, stats)
        return add_kernel
    if mode == 'sub':
        def sub_kernel(inputs, stats):
            a, b = aligned(inputs)
            return final(a - b, stats)
        return sub_kernel
    if mode in ('max', 'min'):
        pick = np.maximum if mode == 'max' else np.minimum

        def pick_kernel(inputs, stats):
            return final(pick.reduce(aligned(inputs)), stats)
        return pick_kernel
    raise GraphError(f'layer {node.name!r}: merge mode {mode!r} has no emulator semantics')


def build_reshape(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """Reshape keeps mantissas and type; only the per-sample shape changes."""
    shape = node.shape
    return lambda inputs, stats: inputs[0].reshape((inputs[0].shape[0],) + shape)


def build_quantize(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """An explicit cast into the result type; per element (attrs['element_types']) each element is
    first cast into its own type (a pruned, 0-bit element is 0), then into the result type (exact
    when the result is the enclosing type, the default)."""
    res_t = node.types['result']
    groups = element_groups(node)
    if groups is None:
        final = cast_plan(res_t, in_types[0].frac, node.attrs.get('exact_bounds'))
        return lambda inputs, stats: final(inputs[0], stats)
    fx = in_types[0].frac
    groups = [(t, idx) for t, idx in groups if t is not None]
    shape = node.shape

    def per_element_kernel(inputs, stats):
        flat = inputs[0].reshape(len(inputs[0]), -1)
        y = np.zeros(flat.shape, dtype=np.int64)
        for t, idx in groups:  # vectorized over the batch and over all elements of one type
            y[:, idx] = cast(res_t, cast(t, flat[:, idx], fx, stats), t.frac, stats)
        return y.reshape((len(y),) + shape)
    return per_element_kernel


BUILDERS = {
    'Dense': build_dense,
    'Conv': build_conv,
    'Pool': build_pool,
    **{op: build_index_map for op in geometry.INDEX_MAP_OPS},
    'Scale': build_scale,
    'Activation': build_activation,
    'Softmax': build_softmax,
    'Merge': build_merge,
    'Reshape': build_reshape,
    'Quantize': build_quantize,
}
