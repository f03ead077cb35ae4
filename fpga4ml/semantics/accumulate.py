"""hls4ml's product-accumulate of a constant matrix, decided once and read by numpy and netlist.

`accumulate_plan` decides from types and exact bounds which steps of the accumulate can round or
overflow; both interpreters take the same decisions from it. `matvec` is the numpy row kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..emulator import fast
from ..fixed import FixedType
from ..intervals import round_shift
from ..ir import GraphError, Node
from .primitives import FLOAT_EXACT_BITS, INT_EXACT_BITS

#: a row-wise matrix-vector kernel: (rows, n_in) input mantissas -> (rows, n_out) accumulator mantissas
RowKernel = Callable[[np.ndarray, 'dict | None'], np.ndarray]


def cast(t: FixedType, m: np.ndarray, frac_in: int, stats: dict | None) -> np.ndarray:
    """Cast mantissas into `t`, counting overflows into stats['overflow'] when stats is given."""
    if stats is None:
        return t.cast(m, frac_in)
    out, n = t.cast_count(m, frac_in)
    stats['overflow'] = stats.get('overflow', 0) + n
    return out


def cast_wide(t: FixedType, m: np.ndarray, frac_in: int, stats: dict | None) -> np.ndarray:
    """Cast exact mantissas of any width (a numpy object array of Python ints) into `t` (int64 result).

    The same rounding (intervals.round_shift) and overflow as FixedType.cast, for intermediate
    values that do not fit int64 (products of wide operands).
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


def cast_plan(t: FixedType, frac_in: int, bounds: tuple[int, int] | None):
    """A cast into `t` specialised by the exact mantissa bounds (lo, hi) at `frac_in` of its input.

    Steps that cannot change a value are skipped; a cast that rounds or can overflow runs the numba
    kernel where fast.cast_plan covers its modes; tracing (stats given) always runs the full cast,
    so overflow counts stay exact.
    """
    s = frac_in - t.frac
    no_overflow, kernel = False, None
    if bounds is not None:
        lo, hi = (round_shift(int(b), s, t.rounding) for b in bounds)
        no_overflow = t._sat_min <= lo and hi <= t.max_mantissa
        if max(abs(int(b)) for b in bounds).bit_length() <= INT_EXACT_BITS:
            kernel = fast.cast_plan(t, frac_in)  # the numba cast, exact for inputs inside +-2^62

    def full(m, stats):
        return cast(t, m, frac_in, stats)
    if no_overflow and s == 0:
        return lambda m, stats: m if stats is None else full(m, stats)
    if no_overflow and s < 0:
        return lambda m, stats: m << -s if stats is None else full(m, stats)
    if kernel is not None:
        return lambda m, stats: kernel(m) if stats is None else full(m, stats)
    if not no_overflow:
        return full
    # rounding only: the same LSB and rounding mode in a 64-bit type, where no value can overflow
    rounder = FixedType(64, 64 - t.frac, True, t.rounding, 'WRAP')
    return lambda m, stats: rounder.cast(m, frac_in) if stats is None else full(m, stats)


@dataclass(frozen=True)
class AccumulatePlan:
    """What hls4ml's product-accumulate does to one constant matrix product, decided from types and bounds."""

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


def accumulate_plan(node: Node, acc_t: FixedType, x_frac: int, x_abs_max: int, w: np.ndarray, w_frac: int,
                    bias: np.ndarray, bias_frac: int) -> AccumulatePlan:
    """Decide how the products and the sum of a constant matrix product are cast into its accumulator."""
    w = w.astype(np.int64)
    prod_frac = x_frac + w_frac
    bias_acc = acc_t.cast(np.asarray(bias).astype(np.int64), bias_frac)
    w_abs = np.abs(w).astype(object)
    prod_max = int(np.max(w_abs, initial=0)) * x_abs_max
    if prod_max.bit_length() > INT_EXACT_BITS:
        raise GraphError(f'layer {node.name!r}: products of the input (LSB 2^-{x_frac}, |x| <= {x_abs_max}) and '
                         f'the weights need more than {INT_EXACT_BITS} bits')
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


def numba_args(plan: AccumulatePlan):
    """(weights, non-zero rows, floor shift, wrap width) of the numba kernels, or None where they do not apply.

    They apply when every product enters the accumulator by a floor shift without overflow and the
    sum cannot saturate; the weights are int32 when products and partial sums provably fit 31 bits.
    A WRAP accumulator whose sum can overflow wraps inside the kernel (wrap width > 0).
    """
    acc_t, shift = plan.acc_t, plan.shift
    simple = (plan.products_simple and (acc_t.overflow == 'WRAP' or plan.sum_fits)
              and plan.abs_bound.bit_length() <= INT_EXACT_BITS)
    if not (simple and fast.available()):
        return None
    w_k = plan.w << -shift if shift < 0 else plan.w
    if (plan.prod_max << max(-shift, 0)).bit_length() <= 31 and plan.abs_bound.bit_length() <= 31:
        w_k = w_k.astype(np.int32)  # exact: products and partial sums proven to fit 31 bits
    nz_rows = np.flatnonzero(np.any(w_k != 0, axis=1)).astype(np.int64)
    return w_k, nz_rows, max(shift, 0), 0 if plan.sum_fits else acc_t.width


def matvec(plan: AccumulatePlan) -> tuple[RowKernel, np.dtype]:
    """hls4ml's dense_latency product-accumulate for each row of a (rows, n_in) matrix of inputs.

    Every product x*w is cast into the accumulator type (its rounding and overflow), the bias is
    cast into it too, the sum is accumulated in the accumulator type (sequentially saturating,
    in input order, for SAT modes; modular for WRAP). When interval bounds prove that a step cannot
    round or overflow, it is skipped: the result is the same, only faster (exact float64 BLAS, or
    the numba kernel of fast.py). Returns the kernel and the dtype its input rows should have.
    """
    acc_t, w, shift, bias_acc = plan.acc_t, plan.w, plan.shift, plan.bias_acc
    n_out = w.shape[1]
    simple = (plan.products_simple and (acc_t.overflow == 'WRAP' or plan.sum_fits)
              and plan.abs_bound.bit_length() <= INT_EXACT_BITS)
    acc_cast = None if plan.sum_fits else acc_t

    def finish(acc, stats):
        return acc if acc_cast is None else cast(acc_cast, acc, acc_t.frac, stats)

    kernel_args = numba_args(plan)
    if kernel_args is not None:
        w_k, nz_rows, k_shift, wrap = kernel_args
        identity = np.arange(w_k.shape[0])[None, :]  # each row reads its own inputs: plans made once
        counted = fast.conv_plan(identity, w_k.shape[0], w_k, nz_rows, bias_acc, k_shift)
        wrapped = fast.conv_plan(identity, w_k.shape[0], w_k, nz_rows, bias_acc, k_shift, wrap, acc_t.signed)

        def rows_numba(x2, stats):
            if stats is not None:
                return finish(counted(x2).reshape(-1, n_out), stats)
            return wrapped(x2).reshape(-1, n_out)
        return rows_numba, w_k.dtype

    if simple and shift <= 0 and plan.abs_bound.bit_length() <= FLOAT_EXACT_BITS:
        w_float = w.astype(np.float64) * 2.0 ** -shift
        b_float = bias_acc.astype(np.float64)

        def rows_blas(x2, stats):
            acc = x2.astype(np.float64, copy=False) @ w_float
            acc += b_float
            return finish(acc.astype(np.int64), stats)
        return rows_blas, np.dtype(np.float64)

    rows = [i for i in range(w.shape[0]) if w[i].any()]
    saturating = plan.saturating

    def rows_per_product(x2, stats):
        x2 = x2.astype(np.int64, copy=False)
        acc = np.broadcast_to(bias_acc, (x2.shape[0], n_out)).copy()
        for i in rows:
            acc += cast(acc_t, x2[:, i:i + 1] * w[i], plan.prod_frac, stats)
            if saturating:
                acc = cast(acc_t, acc, acc_t.frac, stats)
        return finish(acc, stats)
    return rows_per_product, np.dtype(np.int64)
