"""The integer semantics of every op: the specification every back end must match bit for bit.

Each `build_<op>` returns a kernel ``kernel(inputs, stats) -> mantissas`` for one typed node:
`inputs` are int64 mantissa arrays (batch axis first) of the node's inputs, typed by the input
nodes' result types; `stats`, when given, is a dict whose 'overflow' count the kernel increases
by the number of values that wrapped or saturated in this node. Every op computes an exact
intermediate value and ends with one cast into its result type (rounding + overflow of that
type), except where hls4ml's C++ casts earlier (Dense products and bias into the accumulator).
Exact float64 arithmetic (BLAS) is used only where interval bounds prove it exact.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..fixed import FixedType
from ..intervals import Interval, round_shift
from ..ir import TABLE_ACTIVATIONS, GraphError, Node
from ..passes.precision import param_mantissas, relu_max_mantissa
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


# ---------------------------------------------------------------- Dense

def build_dense(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> Kernel:
    """x @ kernel + bias, hls4ml's dense_latency semantics.

    Every product x*w is cast into the accumulator type (its rounding and overflow), the bias is
    cast into it too, the sum is accumulated in the accumulator type (sequentially saturating,
    in input order, for SAT modes; modular for WRAP), and the sum is cast into the result type.
    When interval bounds prove that a step cannot round or overflow, it is skipped: the result
    is the same, only faster (exact float64 BLAS, or the numba kernel of fast.py).
    """
    x_t, = in_types
    x_iv, = in_ivs
    acc_t, res_t = node.types['accum'], node.types['result']
    w = node.qweights['kernel'].astype(np.int64)
    prod_frac = x_t.frac + node.types['weight'].frac
    n_in, n_out = w.shape
    bias_acc = acc_t.cast(node.qweights['bias'].astype(np.int64), node.types['bias'].frac)

    x_max = max(abs(x_iv.min), abs(x_iv.max))
    w_abs = np.abs(w).astype(object)
    prod_max = int(np.max(w_abs, initial=0)) * x_max
    if prod_max.bit_length() > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: products of input ({x_t}) and weight '
                         f"({node.types['weight']}) need more than {INT_EXACT_BITS} bits")
    acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
    shift = prod_frac - acc_t.frac  # > 0: products lose LSBs in the accumulator
    prod_acc_max = prod_max >> shift if shift > 0 else prod_max << -shift
    # products enter the accumulator by a plain floor shift (or exactly) and never overflow it
    products_simple = (shift <= 0 or acc_t.rounding == 'TRN') and prod_acc_max <= acc_limit
    col_sum = int(np.max(w_abs.sum(axis=0), initial=0)) * x_max
    abs_bound = (col_sum >> shift if shift > 0 else col_sum << -shift) + n_in
    abs_bound += int(np.max(np.abs(bias_acc), initial=0))
    sum_fits = abs_bound <= acc_limit
    simple = products_simple and (acc_t.overflow == 'WRAP' or sum_fits) and abs_bound.bit_length() <= INT_EXACT_BITS
    acc_cast = None if sum_fits else acc_t
    final = cast_plan(res_t, acc_t.frac, node.attrs.get('exact_bounds'))

    def finish(acc, lead, stats):
        if acc_cast is not None:
            acc = cast(acc_cast, acc, acc_t.frac, stats)
        return final(acc, stats).reshape(lead + (n_out,))

    if simple and fast.available():
        w_k = w << -shift if shift < 0 else w
        if (prod_max << max(-shift, 0)).bit_length() <= 31 and abs_bound.bit_length() <= 31:
            w_k = w_k.astype(np.int32)  # exact: products and partial sums proven to fit 31 bits
        nz_rows = np.flatnonzero(np.any(w_k != 0, axis=1)).astype(np.int64)
        k_shift = max(shift, 0)

        def dense_numba(inputs, stats):
            x = inputs[0]
            acc = fast.dense_floor_shift(x.reshape(-1, n_in), w_k, nz_rows, bias_acc, k_shift)
            return finish(acc, x.shape[:-1], stats)
        return dense_numba

    if simple and shift <= 0 and abs_bound.bit_length() <= FLOAT_EXACT_BITS:
        w_float = w.astype(np.float64) * 2.0 ** -shift
        b_float = bias_acc.astype(np.float64)

        def dense_blas(inputs, stats):
            x = inputs[0]
            acc = x.reshape(-1, n_in).astype(np.float64) @ w_float
            acc += b_float
            return finish(acc.astype(np.int64), x.shape[:-1], stats)
        return dense_blas

    saturating = acc_t.overflow != 'WRAP' and not sum_fits
    rows = [i for i in range(n_in) if w[i].any()]

    def dense_per_product(inputs, stats):
        x = inputs[0]
        x2 = x.reshape(-1, n_in)
        acc = np.broadcast_to(bias_acc, (x2.shape[0], n_out)).copy()
        for i in rows:
            acc += cast(acc_t, x2[:, i:i + 1] * w[i], prod_frac, stats)
            if saturating:
                acc = cast(acc_t, acc, acc_t.frac, stats)
        return finish(acc, x.shape[:-1], stats)
    return dense_per_product


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

    def scale_kernel(inputs, stats):
        return final(inputs[0] * scale + bias, stats)
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
        final = cast_plan(res_t, fx, bounds)

        def relu_kernel(inputs, stats):
            y = np.maximum(inputs[0], 0)
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
        _check_int_bits(node, Interval.of_values(np.asarray([np.prod([iv.abs_max for iv in in_ivs], dtype=object)]), 0),
                        'product')

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
    """An explicit cast into the result type."""
    final = cast_plan(node.types['result'], in_types[0].frac, node.attrs.get('exact_bounds'))
    return lambda inputs, stats: final(inputs[0], stats)


BUILDERS = {
    'Dense': build_dense,
    'Scale': build_scale,
    'Activation': build_activation,
    'Softmax': build_softmax,
    'Merge': build_merge,
    'Reshape': build_reshape,
    'Quantize': build_quantize,
}
