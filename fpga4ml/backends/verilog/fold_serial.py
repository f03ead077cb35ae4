"""Multiplier-free folding (`Folding: 'adders'`): a Dense or Conv row over R digits of its inputs, one adder graph.

A layer with ReuseFactor R > 1 and Folding 'adders' folds each row of fold.py (a Dense row, or a
Conv output pixel's window in im2col order) digit-serially. The latched inputs share one LSB and
fit W bits in two's complement (W counts the sign bit); they are split into R digits of
B = ceil(W' / R) bits, W' = W less the sign bit where every input is non-negative. Cycle c of
the layer's counter handles digit R - 1 - c (the most significant first): a counter-indexed
multiplexer per input picks the digit, the lower digits zero-extended (0 .. 2^B - 1), the top one
sign-extended (the arithmetic shift of x by B (R - 1) bits), so the digits of every cycle fit
B + 1 signed bits and ONE constant-matrix adder graph per row (adder_graph.constant_matvec: CSD
digits and common subexpressions, as the unrolled lowering builds for the whole input) serves
every cycle. An accumulator per output takes acc <- (acc << B) + P (P alone in the first
cycle), so after R cycles it holds the exact sum of x * w at the accumulator's LSB, as Horner's
rule; the output is then (acc + bias) cast into the accumulator type and the result type, as
the emulator's const_matmul and the Dense/Conv recipes define it. Inputs that are constant 0
(padding) or whose weights are all zero take no multiplexer and no part of the graph.

This equals const_matmul bit for bit exactly when the unrolled lowering builds one adder graph
for the layer: every product enters the accumulator without rounding (its LSB is not coarser
than the products') and the accumulator never saturates step by step (it wraps, which equals
wrapping the exact sum once, or its bounds prove the sum cannot overflow). Otherwise
(hls4ml's `fixed<16,6>` default, narrow saturating accumulators) `fold_rows_serial` raises a
GraphError naming the layer and the accumulator type: use Folding 'mac' or an 'auto' accumulator.
R may exceed W: the digits are then single bits and the top ones copies of the sign (the value
sign-extended to R bits), so the layer takes R clocks on the hardware of R = W.

Timing, ports and the done pulse are fold.py's (the valid-every-II contract): the counter, its
`last` flag and the done register are the same construction, so fold_graph, the manifest, the
latency, the estimate, emulate_cycles and the Verilator harness need nothing else.
"""

from __future__ import annotations

import numpy as np

from ...config import check_folding
from ...fixed import FixedType
from ...ir import GraphError, Node
from ...semantics.accumulate import AccumulatePlan, accumulate_plan
from .adder_graph import constant_matvec, csd
from .fold_stages import FoldedRows, LayerPipe, loop_ns, tree_ns
from .netlist import bits_for
from .stateful import Machine


def layer_folding(node: Node) -> str:
    """A folded layer's architecture, 'mac' (default) or 'adders', validated (ConfigError names the layer)."""
    return check_folding(node.config.get('Folding', 'mac'), f'layer {node.name!r}')


def check_exact(node: Node, plan: AccumulatePlan) -> None:
    """GraphError unless the accumulator is exact for the digit-serial sum (see the module docstring)."""
    acc_t = plan.acc_t
    if plan.shift > 0:
        reason = (f'rounds each product into it (the products have LSB 2^-{plan.prod_frac}, the accumulator '
                  f'2^-{acc_t.frac})')
    elif plan.saturating or not plan.products_simple:
        reason = (f'saturates partial sums in input order (sums up to {plan.abs_bound} LSBs can overflow its '
                  f'{acc_t.overflow} range)')
    else:
        return
    raise GraphError(f"layer {node.name!r}: Folding 'adders' needs an exact accumulator, but accum type {acc_t} "
                     f"{reason}; use Folding 'mac' or an exact ('auto') accumulator")


def digit_bits(lo: int, hi: int, rf: int) -> int:
    """B, the bits of each of the rf digits of inputs in [lo, hi]: 1 where rf exceeds their width (the
    extra top digits are copies of the sign, as two's complement extends a value)."""
    width = bits_for(lo, hi)
    magnitude = width - 1 if lo >= 0 else width
    return max(1, -(-magnitude // rf))


def digit_type(k: int, b: int, rf: int, frac: int) -> FixedType:
    """The type that cuts digit k (of rf, b bits each) out of a value at LSB 2^-frac: the bits of a lower
    digit (unsigned, wrapping), the arithmetic shift for the top one (signed, one bit to spare)."""
    lsb = frac - b * k
    if k == rf - 1:
        return FixedType(b + 1, b + 1 - lsb, True, 'TRN', 'WRAP')
    return FixedType(b, b - lsb, False, 'TRN', 'WRAP')


def digit_mux(m: Machine, x: int, count: int, b: int, rf: int, built: dict[int, int]) -> int:
    """The digit of input x that cycle `count` handles (most significant first), at x's LSB; built once
    per input (`built`: input -> its multiplexer), so overlapping Conv windows share it."""
    if x not in built:
        built[x] = _digit_mux(m, x, count, b, rf)
    return built[x]


def _digit_mux(m: Machine, x: int, count: int, b: int, rf: int) -> int:
    sig = m[x]
    frac = sig.frac
    if sig.is_const:
        digits = [(sig.lo >> (b * k)) & ((1 << b) - 1) if k < rf - 1 else sig.lo >> (b * k) for k in range(rf)]
        return m.mux(count, [m.const(v, frac) for v in reversed(digits)], role='digit')
    options = []
    for k in reversed(range(rf)):
        d = m.cast(x, digit_type(k, b, rf, frac))
        options.append(d if m[d].frac == frac else m.shl(d, 0, frac=frac))  # the digit as an integer at x's LSB
    return m.mux(count, options, role='digit')


def partial_bounds(m: Machine, xs: list[int], w: np.ndarray) -> tuple[list[int], list[int]]:
    """Bounds of every partial sum sum_i w[i, j] * floor(x_i / 2^s) (s >= 0) per output j: each floor
    lies between min(lo_i, 0) and max(hi_i, 0)."""
    lo = np.array([min(m[x].lo, 0) for x in xs], dtype=object)[:, None]
    hi = np.array([max(m[x].hi, 0) for x in xs], dtype=object)[:, None]
    wo = w.astype(object)
    a, c = wo * lo, wo * hi
    low = np.where(wo > 0, a, c).sum(axis=0) if len(xs) else np.zeros(w.shape[1], dtype=object)
    high = np.where(wo > 0, c, a).sum(axis=0) if len(xs) else np.zeros(w.shape[1], dtype=object)
    return [int(v) for v in low], [int(v) for v in high]


def row_plan(m: Machine, node: Node, rows: list[list[int]], w_const, b_const) -> AccumulatePlan:
    """The accumulate plan of a folded layer's rows (their latched inputs' LSB and largest magnitude)."""
    frac = m[rows[0][0]].frac
    x_abs = max((max(-m[s].lo, m[s].hi) for row in rows for s in row), default=0)
    return accumulate_plan(node, node.types['accum'], frac, x_abs, np.asarray(w_const.values, dtype=np.int64),
                           w_const.frac, np.asarray(b_const.values), b_const.frac)


def fold_rows_serial(m: Machine, node: Node, rows: list[list[int]], w_const, b_const, go: int, rf: int,
                     budget: float | None = None) -> FoldedRows:
    """Rows of latched inputs times one constant matrix, digit-serially over `rf` cycles, with fold.fold_rows'
    timing (see the module docstring); with a stage `budget` (ns), pipeline registers may cut the digits
    and the adder graphs' sums from the accumulate loop (fold_stages.py)."""
    plan = row_plan(m, node, rows, w_const, b_const)
    check_exact(node, plan)
    b = digit_bits(min(m[s].lo for row in rows for s in row), max(m[s].hi for row in rows for s in row), rf)
    count, busy, last = m.counter(rf, go, node.name)
    pipe = LayerPipe(m, node.name, budget)
    acc_t, zero = plan.acc_t, m.const(0, plan.acc_t.frac)
    w_acc = plan.w << -plan.shift  # the weights at the accumulator's LSB (shift <= 0: exact)
    built: dict[int, int] = {}  # input -> its digit multiplexer (overlapping Conv windows share it)
    live = [[i for i, s in enumerate(row) if not (m[s].is_const and m[s].lo == 0) and plan.w[i].any()] for row in rows]
    digits = [[digit_mux(m, row[i], count, b, rf, built) for i in idx] for row, idx in zip(rows, live)]
    graph_bits = b + 1 + int(np.max(np.abs(w_acc), initial=0)).bit_length()
    digits = pipe.cut(digits, tree_ns(max(csd_terms(w_acc), default=1), graph_bits))
    n_out = plan.w.shape[1]

    def graphs(nl, xs: list[int]) -> list[int]:  # each row's adder graph on its digits, outputs row by row
        ends = np.cumsum([0] + [len(idx) for idx in live])
        return [s for i, j, idx in zip(ends[:-1], ends[1:], live)
                for s in (constant_matvec(nl, xs[i:j], w_acc[idx], None, acc_t.frac) if idx
                          else [nl.const(0, acc_t.frac)] * n_out)]

    flat = pipe.staged([d for row in digits for d in row], graphs)
    sums = pipe.cut([flat[k:k + n_out] for k in range(0, len(flat), n_out)], loop_ns(acc_t.width))
    _, busy_l, _ = loop = pipe.loop_controls(count, busy, rf)  # the loop's view, behind the cuts
    first = m.flag(loop[0], [int(c == 0) for c in range(rf)])
    done = m.register(0, 1, 0, reset=0, name=f'{node.name}_done')
    m.connect(done, loop[2])
    result = []
    for p, (row, idx) in enumerate(zip(rows, live)):
        tag = f'{node.name}_acc' if len(rows) == 1 else f'{node.name}_p{p}_acc'
        lows, highs = partial_bounds(m, [row[i] for i in idx], w_acc[idx])
        for j, product in enumerate(sums[p]):
            acc = zero
            if not m[product].is_const:  # a column with live weights: its accumulator
                acc = m.register(lows[j], highs[j], acc_t.frac, None, f'{tag}{j}')
                # count 0 (the first digit, and every idle cycle) starts from 0, so this sum is always a partial
                # sum of the latched inputs' top digits (Horner): inside [lows[j], highs[j]]
                shifted = m.add(m.select(first, zero, acc), product, b, 0, frac=acc_t.frac)
                m.connect(acc, m.narrow(shifted, lows[j], highs[j]), busy_l)
            bias = m.const(int(plan.bias_acc[j]), acc_t.frac)
            total = bias if acc == zero else m.add(acc, bias) if plan.bias_acc[j] else acc
            result.append(m.cast(m.cast(total, acc_t), node.result_type))
    return FoldedRows(result, done, last, pipe.cuts)


def csd_terms(w: np.ndarray) -> list[int]:
    """The canonical-signed-digit terms of each column of an integer matrix (what its adder graph sums)."""
    return [sum(len(csd(int(v))) for v in col if v) for col in np.asarray(w).T]


__all__ = ['check_exact', 'csd_terms', 'digit_bits', 'digit_mux', 'digit_type', 'fold_rows_serial', 'layer_folding',
           'partial_bounds', 'row_plan']
