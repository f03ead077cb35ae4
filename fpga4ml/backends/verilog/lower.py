"""Lower a typed graph onto a netlist of integer operations, one function per IR op.

Each function mirrors the op's emulator kernel (fpga4ml/emulator/ops.py) step for step, with
the same casts in the same places, so the netlist computes the emulator's bits; the tests check
it by interpreting the netlist (`Netlist.evaluate`) against the emulator. Products with constant
weights become adder graphs (adder_graph.py) unless a layer asks for DSP multipliers.
"""

from __future__ import annotations

import numpy as np

from ... import geometry
from ...emulator.ops import accumulate_plan
from ...fixed import FixedType
from ...intervals import Interval, round_shift
from ...ir import TABLE_ACTIVATIONS, Graph, GraphError, Node
from ...passes.precision import element_groups, param_mantissas, relu_max_mantissa, relu_threshold_mantissa
from .adder_graph import constant_matvec, sum_terms
from .netlist import Netlist
from .progress import StepClock


def lower_graph(graph: Graph, intervals: dict[str, Interval], cse: bool = True,
                clock: StepClock | None = None) -> Netlist:
    """The netlist of a typed graph: input ports, one signal list per node, output ports.

    `clock` reports each layer's lowering time (by default only layers that take long).
    """
    nl = Netlist()
    clock = clock or StepClock(None)
    sigs: dict[str, list[int]] = {}
    for node in graph:
        if node.op == 'Input':
            sigs[node.name] = nl.add_input(node.name, node.shape, node.result_type)
            continue
        lower = LOWERINGS.get(node.op)
        if lower is None:
            raise GraphError(f'layer {node.name!r}: op {node.op!r} has no Verilog lowering; '
                             f'supported ops: {sorted(LOWERINGS)}')
        ctx = LowerContext(nl, node, [graph[i].result_type for i in node.inputs], [intervals[i] for i in node.inputs],
                           cse, clock)
        with clock.step(f'{node.name} ({node.op}) lowered'):
            out = lower(ctx, [sigs[i] for i in node.inputs])
        if len(out) != node.size:
            raise GraphError(f'layer {node.name!r}: lowering produced {len(out)} values for shape {node.shape}')
        sigs[node.name] = out
    for name in graph.outputs:
        node = graph[name]
        nl.add_output(name, node.shape, node.result_type, sigs[name])
    return nl


class LowerContext:
    """What one node's lowering needs: the netlist, the node, its input types and intervals."""

    def __init__(self, nl: Netlist, node: Node, in_types: list[FixedType], in_ivs: list[Interval], cse: bool,
                 clock: StepClock | None = None):
        self.nl, self.node, self.in_types, self.in_ivs, self.cse = nl, node, in_types, in_ivs, cse
        self.clock = clock or StepClock(None)

    @property
    def result(self) -> FixedType:
        """The node's result type."""
        return self.node.types['result']

    def finish(self, sigs: list[int]) -> list[int]:
        """Cast every signal into the node's result type."""
        return [self.nl.cast(s, self.result) for s in sigs]

    def multiplier_mode(self) -> str:
        """'adders' (default) or 'dsp', from the layer's configuration (validated by config.py)."""
        return self.node.config.get('Multipliers', 'adders')


# ---------------------------------------------------------------- Dense and Conv

def matvec_rows(ctx: LowerContext, rows: list[list[int]], w: np.ndarray, bias: np.ndarray, bias_frac: int) -> list[int]:
    """hls4ml's product-accumulate (see emulator matvec) for each row of input signals; flat outputs.

    A row is the list of input signals of one matrix-vector product (None for a padding zero).
    """
    nl, node = ctx.nl, ctx.node
    plan = accumulate_plan(node, ctx.in_types[0], ctx.in_ivs[0].abs_max, w, bias, bias_frac)
    acc_t, shift = plan.acc_t, plan.shift
    exact_products = plan.products_simple and shift <= 0 and not plan.saturating
    dsp = ctx.multiplier_mode() == 'dsp'
    out = []
    for row in rows:
        live = [i for i, s in enumerate(row) if s is not None and plan.w[i].any()]
        xs = [row[i] for i in live]
        w_live = plan.w[live]
        if exact_products and not dsp:
            # every product lands exactly in the accumulator: one adder graph for the whole matrix
            sums = constant_matvec(nl, xs, w_live << -shift, plan.bias_acc, acc_t.frac, ctx.cse,
                                   lambda text, s: ctx.clock.report(f'{node.name}: {text}', s))
        else:
            products = _products(ctx, xs, w_live, plan.prod_frac, dsp)
            sums = [_accumulate(ctx, plan, [products[k][j] for k in range(len(xs)) if w_live[k, j]], j)
                    for j in range(w_live.shape[1])]
        if not plan.sum_fits and not plan.saturating:
            sums = [nl.cast(s, acc_t) for s in sums]  # a WRAP accumulator: wrapping once equals wrapping each step
        out.extend(ctx.finish(sums))
    return out


def _products(ctx: LowerContext, xs: list[int], w: np.ndarray, frac: int, dsp: bool) -> list[list[int | None]]:
    """Exact products xs[k] * w[k, j] at LSB `frac`: per-input adder graphs (or multipliers)."""
    nl = ctx.nl
    out = []
    for k, x in enumerate(xs):
        if dsp:
            w_frac = frac - nl[x].frac
            out.append([nl.mul(x, nl.const(int(v), w_frac)) if v else None for v in w[k]])
        else:
            out.append(constant_matvec(nl, [x], w[k:k + 1], None, frac, ctx.cse))
    return out


def _accumulate(ctx: LowerContext, plan, products: list[int], column: int) -> int:
    """Cast each product into the accumulator and sum them with the bias (saturating in order if needed)."""
    nl, acc_t = ctx.nl, plan.acc_t
    parts = [nl.cast(p, acc_t) for p in products]
    bias = nl.const(int(plan.bias_acc[column]), acc_t.frac)
    if not plan.saturating:
        return sum_terms(nl, parts + [bias], acc_t.frac)
    acc = bias
    for p in parts:  # sequential saturation in input order, as hls4ml's loop
        acc = nl.cast(nl.add(acc, p), acc_t)
    return acc


def _dense(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    node = ctx.node
    kernel = node.qweights['kernel']
    n_in = kernel.shape[0]
    x = ins[0]
    rows = [x[r * n_in:(r + 1) * n_in] for r in range(len(x) // n_in)]
    return matvec_rows(ctx, rows, kernel, node.qweights['bias'], node.types['bias'].frac)


def _conv(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    node = ctx.node
    in_shape = ctx.in_ivs[0].lo.shape
    win = geometry.check_conv(node, in_shape)
    index = geometry.im2col_index(win, in_shape[-1])
    matrix = geometry.conv_matrix(node.qweights['kernel'], int(node.attrs.get('groups', 1)), node.name)
    x = ins[0]
    rows = [[x[i] if i >= 0 else None for i in window] for window in index]
    return matvec_rows(ctx, rows, matrix, node.qweights['bias'], node.types['bias'].frac)


# ---------------------------------------------------------------- pooling and index maps

def _pool(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    index, _ = geometry.pool_index(ctx.node, ctx.in_ivs[0].lo.shape)
    x = ins[0]
    return ctx.finish([pool_window(ctx, [x[i] for i in index[:, o] if i >= 0]) for o in range(index.shape[1])])


def pool_window(ctx: LowerContext, cells: list[int]) -> int:
    """One output of a Pool over the real cells of its window, in the accumulator type (before the result cast)."""
    nl, node = ctx.nl, ctx.node
    x_t, = ctx.in_types
    acc_t = node.types['accum']
    if node.attrs['mode'] == 'max':
        return nl.cast(_reduce(nl, cells, nl.maximum), acc_t)
    total = _average_sum(ctx, cells, x_t, acc_t)
    return nl.divc(total, len(cells)) if len(cells) > 1 else total


def _average_sum(ctx: LowerContext, cells: list[int], x_t: FixedType, acc_t: FixedType) -> int:
    """The average pool's accumulator after adding the window's cells, as the emulator does."""
    nl = ctx.nl
    shift = acc_t.frac - x_t.frac
    bound = sum(max(-nl[c].lo, nl[c].hi) for c in cells)
    acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
    if shift >= 0 and (bound << shift) <= acc_limit:
        return sum_terms(nl, [nl.align(c, acc_t.frac) for c in cells], acc_t.frac)
    if shift >= 0 and acc_t.overflow == 'WRAP':
        return nl.cast(sum_terms(nl, [nl.align(c, acc_t.frac) for c in cells], acc_t.frac), acc_t)
    acc = nl.const(0, acc_t.frac)
    for c in cells:  # step by step, casting into the accumulator after each addition
        if shift >= 0:
            acc = nl.cast(nl.add(acc, nl.align(c, acc_t.frac)), acc_t)
        else:
            acc = nl.cast(nl.add(nl.align(acc, x_t.frac), c), acc_t)
    return acc


def _reduce(nl: Netlist, sigs: list[int], pick) -> int:
    """A balanced tree of a two-input op over signals."""
    while len(sigs) > 1:
        sigs = [pick(sigs[k], sigs[k + 1]) if k + 1 < len(sigs) else sigs[k] for k in range(0, len(sigs), 2)]
    return sigs[0]


def _index_map(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    index = geometry.index_map(ctx.node, ctx.in_ivs[0].lo.shape).ravel()
    zero = ctx.nl.const(0, ctx.in_types[0].frac)
    return [ins[0][i] if i >= 0 else zero for i in index]


def _reshape(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    return list(ins[0])


# ---------------------------------------------------------------- element-wise ops

def _per_element(values: np.ndarray, shape: tuple[int, ...]) -> list[int]:
    return [int(v) for v in np.broadcast_to(np.asarray(values, dtype=np.int64), shape).ravel()]


def _const_product(ctx: LowerContext, x: int, c: int, add: int, frac: int) -> int:
    """x * c + add for constants c and add (exact, mantissas at LSB `frac`)."""
    if ctx.multiplier_mode() == 'dsp' and c not in (0, 1, -1):
        prod = ctx.nl.mul(x, ctx.nl.const(c, frac - ctx.nl[x].frac))
        return sum_terms(ctx.nl, [prod, ctx.nl.const(add, frac)], frac)
    return constant_matvec(ctx.nl, [x], np.array([[c]]), [add], frac, ctx.cse)[0]


def _scale(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    node = ctx.node
    x_t, = ctx.in_types
    s_frac, b_frac = node.types['scale'].frac, node.types['bias'].frac
    frac = max(x_t.frac + s_frac, b_frac)
    scale = _per_element(node.qweights['scale'].astype(np.int64) << (frac - x_t.frac - s_frac), node.shape)
    bias = _per_element(node.qweights['bias'].astype(np.int64) << (frac - b_frac), node.shape)
    return ctx.finish([_const_product(ctx, x, s, b, frac) for x, s, b in zip(ins[0], scale, bias)])


def _activation(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    nl, node = ctx.nl, ctx.node
    x_t, = ctx.in_types
    fn = node.attrs['function']
    fx = x_t.frac
    x = ins[0]
    if fn in TABLE_ACTIVATIONS:
        table = node.attrs['tables']['f']
        return ctx.finish([_lookup(nl, table, s) for s in x])
    if fn == 'linear':
        return ctx.finish(x)
    if fn == 'relu':
        return ctx.finish(_relu(ctx, x, fx))
    params = param_mantissas(node)
    if fn in ('leaky_relu', 'prelu'):
        alpha, fa = params['alpha']
        alphas = _per_element(alpha, node.shape)
        return ctx.finish([nl.select(s, nl.align(s, fx + fa), _const_product(ctx, s, a, 0, fx + fa))
                           for s, a in zip(x, alphas)])
    if fn == 'hard_sigmoid':
        (slope, fp), (shift, _) = params['slope'], params['shift']
        if fx < 0:
            raise GraphError(f'layer {node.name!r}: hard_sigmoid needs an input type with fractional bits >= 0')
        frac = fx + fp
        lo, hi = nl.const(0, frac), nl.const(1 << frac, frac)
        ys = [_const_product(ctx, s, int(slope), int(shift) << fx, frac) for s in x]
        return ctx.finish([nl.maximum(nl.minimum(y, hi), lo) for y in ys])
    if fn == 'hard_tanh':
        frac = max(fx, 0)
        lo, hi = nl.const(-(1 << frac), frac), nl.const(1 << frac, frac)
        return ctx.finish([nl.maximum(nl.minimum(nl.align(s, frac), hi), lo) for s in x])
    raise GraphError(f'layer {node.name!r}: activation {fn!r} has no Verilog lowering')


def _relu(ctx: LowerContext, x: list[int], fx: int) -> list[int]:
    """min(max(x, 0), cap) rounded to the result LSB, before the result's overflow handling.

    Every ap_fixed rounding is monotone and maps 0 to 0, so rounding first and clipping after
    gives the emulator's cast(min(max(x, 0), cap)) exactly, with the comparators and
    multiplexers working on the (usually much narrower) rounded value.
    """
    nl, node, t = ctx.nl, ctx.node, ctx.result
    y = [_round_only(nl, s, t) for s in x]
    frac = t.frac
    zero = nl.const(0, frac)
    theta = relu_threshold_mantissa(node, fx)
    if theta is None:
        y = [nl.maximum(s, zero) for s in y]
    else:  # x > threshold <=> x - theta > 0, decided on the exact input
        th = nl.const(theta, fx)
        y = [nl.select(nl.add(s, th, gb=-1), r, zero) for s, r in zip(x, y)]
    if node.attrs.get('max_value') is not None:
        cap = nl.const(round_shift(relu_max_mantissa(node, fx), fx - frac, t.rounding), frac)
        y = [nl.minimum(s, cap) for s in y]
    return y


def _round_only(nl: Netlist, sig: int, t: FixedType) -> int:
    """Signal rounded to t's LSB with t's rounding mode, without any overflow (exact width)."""
    width = nl[sig].width + max(0, t.frac - nl[sig].frac) + 2
    return nl.cast(sig, FixedType(width, width - t.frac, True, t.rounding, 'WRAP'))


def _lookup(nl: Netlist, table, sig: int) -> int:
    """Table semantics: cast into the index type, address = mantissa - index minimum, read a ROM."""
    address = nl.cast(sig, table.index)
    return nl.rom(address, table.values, table.index.min_mantissa, table.type.frac)


def _softmax(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    nl, node = ctx.nl, ctx.node
    exp_tab, inv_tab = node.attrs['tables']['exp'], node.attrs['tables']['inv']
    n = node.shape[-1]
    last = len(exp_tab) - 1
    x = ins[0]
    out = []
    for r in range(len(x) // n):
        row = x[r * n:(r + 1) * n]
        top = _reduce(nl, list(row), nl.maximum)
        exps = []
        for s in row:
            d = nl.cast(nl.narrow(nl.add(s, top, gb=-1), hi=0), exp_tab.index)  # x - max(x) <= 0
            address = nl.minimum(nl.neg(d), nl.const(last, exp_tab.index.frac))
            exps.append(nl.rom(address, exp_tab.values, 0, exp_tab.type.frac))
        total = sum_terms(nl, exps, exp_tab.type.frac)
        inv = _lookup(nl, inv_tab, total)
        out.extend(nl.mul(e, inv) for e in exps)
    return ctx.finish(out)


def _merge(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    nl, node = ctx.nl, ctx.node
    mode = node.attrs['mode']
    fracs = [t.frac for t in ctx.in_types]
    if mode == 'mul':
        out = list(ins[0])
        for other in ins[1:]:
            out = [nl.mul(a, b) for a, b in zip(out, other)]
        return ctx.finish(out)
    frac = max(fracs)
    aligned = [[nl.align(s, frac) for s in sigs] for sigs in ins]
    if mode == 'concat':
        shapes = [iv.lo.shape for iv in ctx.in_ivs]
        parts = [np.array(a, dtype=object).reshape(shape) for a, shape in zip(aligned, shapes)]
        return ctx.finish(list(np.concatenate(parts, axis=node.attrs.get('axis', -1)).ravel()))
    if mode in ('add', 'avg'):
        out_frac = frac + (len(ins).bit_length() - 1 if mode == 'avg' else 0)
        sums = [sum_terms(nl, list(vals), frac) for vals in zip(*aligned)]
        return ctx.finish([nl.shl(s, 0, frac=out_frac) if out_frac != frac else s for s in sums])
    if mode == 'sub':
        return ctx.finish([nl.add(a, b, gb=-1) for a, b in zip(*aligned)])
    if mode in ('max', 'min'):
        pick = nl.maximum if mode == 'max' else nl.minimum
        return ctx.finish([_reduce(nl, list(vals), pick) for vals in zip(*aligned)])
    raise GraphError(f'layer {node.name!r}: merge mode {mode!r} has no Verilog lowering')


def _quantize(ctx: LowerContext, ins: list[list[int]]) -> list[int]:
    groups = element_groups(ctx.node)
    if groups is None:
        return ctx.finish(ins[0])
    out = [ctx.nl.const(0, ctx.result.frac)] * ctx.node.size  # pruned (0-bit) elements stay 0
    for t, index in groups:  # per element: its own type first, then the result type
        if t is not None:
            for k in index:
                out[k] = ctx.nl.cast(ctx.nl.cast(ins[0][k], t), ctx.result)
    return out


LOWERINGS = {
    'Dense': _dense,
    'Conv': _conv,
    'Pool': _pool,
    **{op: _index_map for op in geometry.INDEX_MAP_OPS},
    'Reshape': _reshape,
    'Scale': _scale,
    'Activation': _activation,
    'Softmax': _softmax,
    'Merge': _merge,
    'Quantize': _quantize,
}

__all__ = ['lower_graph']
