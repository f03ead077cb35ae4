"""ReuseFactor R > 1 on the Verilog back end: multiply-accumulate folding of Dense and Conv layers over a Machine.

A Dense n_in -> n_out with ReuseFactor R (folding.py validates it: any divisor of n_in * n_out)
runs its n_in * n_out products in R clock cycles on M = n_in * n_out / R multipliers. With
g = gcd(R, n_in), the inputs split into g blocks of a = n_in / g and the outputs into r = R / g
groups of L = n_out / r (r divides n_out because R divides n_in * n_out). Cycle c handles input
block c // r for output group c % r: lane l (one per output of a group) multiplies the a inputs
of the block by their weights (a multiplexer picks the input, a ROM addressed by the layer's
counter the weight) and adds the products to its accumulator, each product cast into the
accumulator type, as the emulator's const_matmul (hls4ml's `acc += (accum_t)(x * w)`): a
saturating accumulator adds them in input order, casting each partial sum; a wrapping (or
never overflowing) one sums them by an adder tree and wraps once a cycle, which equals wrapping
each step. An output's blocks come in increasing cycles, so its
sum runs in input order for any accumulator type, hls4ml's fixed<16,6> included. The first block
starts from the bias cast into the accumulator.

A Conv is the same product for each of its P output pixels (hls4ml's meaning of R: a divisor of
the per-pixel product count kh * kw * C_in * C_out, folding.fold_shape's im2col matrix; with
groups > 1 its block-diagonal zeros build no multiplier): every pixel's window, in im2col order
with padding cells a constant 0, is one row with its own lanes, multipliers and accumulators, and
all rows share the counter, the flags and the weight and bias ROMs (the same weights in the same
cycle), so the layer has at most P * n_in * n_out / R multipliers where the unrolled one has P
adder graphs. A Dense on an N-D input folds its rows (the last axis) the same way, and so does an
EinsumDense whose kernel and bias all output positions share (each position a row of its contracted
inputs in the recipe's term order; recipes_attention.einsum_dense_rows).

Timing (the valid-every-II contract): a folded layer latches its input vector at the edge where its
`go` pulse (valid_in for the first layer, the previous folded layer's `done` after it) is high,
runs R cycles, and raises `done` for one cycle, in which its accumulators hold the result; the
layers between folded ones are combinational (the unrolled lowering, adder graphs). A layer accepts
a new input every R clocks, the design every II = max(R) clocks; the latency is the sum of
(R + 1) over the folded layers. Layers with R = 1 stay fully parallel. Branches that meet after
different folded layers (an attention's query, key and value projections) line up: each is valid a
fixed number of clocks after valid_in, and the earlier ones wait in delay registers.

This is the default architecture (`Folding: 'mac'`); a layer with `Folding: 'adders'` folds the same
rows digit-serially on one multiplier-free adder graph instead, with the same timing (fold_serial.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ... import geometry
from ...folding import mac_schedule, reuse_factor
from ...ir import Graph, GraphError, Node
from ...semantics.bounds import Bounds
from ...semantics.recipes_attention import einsum_dense_rows, einsum_terms
from .adder_graph import sum_terms
from .fold_serial import fold_rows_serial, layer_folding, row_plan
from .machine_stages import walk
from .fold_stages import MUL_NS, FoldedRows, LayerPipe, adder_ns, loop_ns, stage_budget, tree_ns
from .progress import StepClock
from .stateful import Machine, Timing


@dataclass
class FoldedDesign:
    """A folded model: the machine, its latency and II, and generation time."""

    machine: Machine
    timing: Timing
    seconds: float = 0.0

    @property
    def latency(self) -> int:
        """Latency in clocks (as the manifest counts it)."""
        return self.timing.latency


def folded_layers(graph: Graph) -> dict[str, int]:
    """{name: R} of the layers the Verilog back end folds (validated ReuseFactors > 1)."""
    out = {}
    for node in graph:
        rf = reuse_factor(node, graph)
        if rf > 1:
            if node.op not in FOLDERS:
                raise GraphError(f'layer {node.name!r} ({node.op}): the Verilog back end folds only '
                                 f'{" and ".join(FOLDERS)} layers; set its ReuseFactor to 1 (it has {rf})')
            out[node.name] = rf
    return out


def fold_graph(graph: Graph, clock: StepClock | None = None, clock_period: float | None = None,
               pipeline='auto') -> FoldedDesign:
    """The Machine of a typed graph with folded Dense and Conv layers (see the module docstring); with a
    clock period (and `pipeline` not 'none'), pipeline registers inside the folded layers (fold_stages.py)
    and in the layers between them (machine_stages.pipelined_node)."""
    clock = clock or StepClock(None)
    budget = stage_budget(clock_period, pipeline)
    pacing = (clock_period, pipeline) if budget is not None else (5.0, 'none')
    rfs = folded_layers(graph)
    m = Machine()

    def folded(node: Node, ins: list, go):
        if node.name not in rfs:
            return None
        with clock.step(f'{node.name} ({node.op}) folded'):
            rows = FOLDERS[node.op](m, node, graph, ins, go(), rfs[node.name], budget)
        return rows.outputs, rows.done, rfs[node.name] + 1 + rows.cuts, rows.cuts

    placed = walk(m, graph, pacing, clock, folded)
    return FoldedDesign(m, Timing(placed.latency, max(rfs.values(), default=1), rfs, placed.cuts))


def fold_dense(m: Machine, node: Node, graph: Graph, ins: list[list[int]], go: int, rf: int,
               budget: float | None = None) -> FoldedRows:
    """One folded Dense (on the last axis of its input, each row a MAC over the shared ROMs)."""
    x = ins[0]
    w_const, b_const = _weights(node, graph)
    n_in = w_const.values.shape[0]
    in_shape = graph[node.inputs[0]].shape
    if len(x) % n_in or in_shape[-1] != n_in:
        raise GraphError(f'layer {node.name!r}: a Dense with {n_in} inputs cannot fold over input shape {in_shape}')
    xr = _latch(m, node.name, x, go, range(len(x)))
    rows = [[xr[i] for i in range(k, k + n_in)] for k in range(0, len(x), n_in)]
    return row_folder(node)(m, node, rows, w_const, b_const, go, rf, budget)


def fold_conv(m: Machine, node: Node, graph: Graph, ins: list[list[int]], go: int, rf: int,
              budget: float | None = None) -> FoldedRows:
    """One folded Conv: each output pixel a Dense of its window in im2col order (padding reads a
    constant 0), all pixels on the same counter and weight ROMs (see the module docstring)."""
    x = ins[0]
    in_shape = graph[node.inputs[0]].shape
    index = geometry.im2col_index(geometry.check_conv(node, in_shape), in_shape[-1])  # (pixels, taps * C)
    w_const, b_const = _weights(node, graph)
    kernel = w_const.map(lambda k: geometry.conv_matrix(np.asarray(k), int(node.attrs.get('groups', 1)), node.name))
    xr = _latch(m, node.name, x, go, sorted(set(index[index >= 0].tolist())))
    zero = m.const(0, max(m[s].frac for s in xr.values()))
    rows = [[xr[i] if i >= 0 else zero for i in window] for window in index]
    return row_folder(node)(m, node, rows, kernel, b_const, go, rf, budget)


def fold_einsum_dense(m: Machine, node: Node, graph: Graph, ins: list[list[int]], go: int, rf: int,
                      budget: float | None = None) -> FoldedRows:
    """One folded EinsumDense whose kernel and bias every output position shares (the attention
    projections): each position a row of its contracted inputs, as a Dense on N-D input folds."""
    x = ins[0]
    plan = einsum_dense_rows(node, graph[node.inputs[0]].shape)
    w_const, b_const = _weights(node, graph)
    kernel = w_const.map(lambda k: np.asarray(k).ravel()[plan.kernel_index])
    n_1 = len(plan.bias_index)
    bias = b_const.map(lambda b: np.asarray(b).ravel()[plan.bias_index] if np.ndim(b) else np.full(n_1, b))
    xr = _latch(m, node.name, x, go, sorted(set(plan.rows.ravel().tolist())))
    folded = row_folder(node)(m, node, [[xr[i] for i in row] for row in plan.rows], kernel, bias, go, rf, budget)
    return folded._replace(outputs=[folded.outputs[k] for k in plan.order])


def fold_einsum(m: Machine, node: Node, graph: Graph, ins: list[list[int]], go: int, rf: int,
                budget: float | None = None) -> FoldedRows:
    """One folded Einsum of two variables: its n_out x n_terms products on n_out * n_terms / R multipliers,
    both operands picked by multiplexers each cycle (mac_schedule's assignment, the terms of an output
    in order), each product cast into 'accum' and added from 0 (the recipe's order); `Folding` does not
    apply (no constant operand)."""
    a_index, b_index = einsum_terms(node, str(node.attrs['equation']), [tuple(graph[i].shape) for i in node.inputs])
    n_out, n_terms = a_index.shape
    schedule = mac_schedule(n_terms, n_out, rf)  # [lane, t, cycle] -> (term, output)
    used = [sorted(set(index.ravel().tolist())) for index in (a_index, b_index)]
    a, b = (_latch(m, f'{node.name}_{k}', x, go, u) for k, x, u in zip('ab', ins, used))
    count, busy, last = m.counter(rf, go, node.name)
    slots, pairs = [], []
    for lane in range(schedule.shape[0]):
        for t in range(schedule.shape[1]):
            terms = [(int(c), int(o)) for c, o in schedule[lane, t]]
            slots.append((0, lane))
            pairs.append([m.mux(count, [a[a_index[o, c]] for c, o in terms]),
                          m.mux(count, [b[b_index[o, c]] for c, o in terms])])
    acc_t = node.types['accum']
    a_max, b_max = (max(max(-m[s].lo, m[s].hi) for s in x.values()) for x in (a, b))
    total = n_terms * a_max * b_max              # |sum of the products| at their LSB
    shift = m[a[used[0][0]]].frac + m[b[used[1][0]]].frac - acc_t.frac
    fits = (total >> shift if shift > 0 else total << -shift) + n_terms <= min(acc_t.max_mantissa, -acc_t._sat_min)
    loop = MacLoop(schedule, count, busy, last, 1, np.zeros(n_out, dtype=np.int64),
                   acc_t.overflow != 'WRAP' and not fits)
    return mac_loop(m, node, loop, slots, pairs, rf, budget)


def row_folder(node: Node):
    """fold_rows (Folding 'mac', the default) or fold_serial.fold_rows_serial (Folding 'adders') for a layer."""
    return fold_rows_serial if layer_folding(node) == 'adders' else fold_rows


def _latch(m: Machine, name: str, x: list[int], go: int, used) -> dict[int, int]:
    """{index: register} of the input elements a folded layer reads, aligned to one LSB and latched at `go`."""
    frac = max(m[x[i]].frac for i in used)
    out = {}
    for i in used:
        s = x[i]
        d = m.align(s, frac) if not m[s].is_const else m.const(m[s].lo << (frac - m[s].frac), frac)
        out[i] = m.latch(d, go, f'{name}_x{i}')
    return out


def fold_rows(m: Machine, node: Node, rows: list[list[int]], w_const, b_const, go: int, rf: int,
              budget: float | None = None) -> FoldedRows:
    """Rows of latched inputs times one constant matrix, folded over `rf` cycles (see the module docstring).

    Every row has its own lanes and accumulators; the counter, the bias and weight ROMs, the
    cycle flags and the accumulator enables are built once and shared by all rows. With a stage
    `budget` (ns), pipeline registers may cut the operands, the products and the adder trees from
    the accumulate loop (fold_stages.py).
    """
    n_in, n_out = np.shape(w_const.values)
    plan = row_plan(m, node, rows, w_const, b_const)
    schedule = mac_schedule(n_in, n_out, rf)  # [lane, t, cycle] -> (input, output): folding.py
    lanes, a = schedule.shape[:2]
    count, busy, last = m.counter(rf, go, node.name)
    outs = schedule[:, 0, :, 1]  # [lane, cycle]: the output each lane serves
    weights = {}  # (lane, t) -> its weight ROM; a multiplier whose weights are all zero (prune_for_reuse): none
    for lane in range(lanes):
        for t in range(a):
            column = plan.w[schedule[lane, t, :, 0], outs[lane]]
            if column.any():
                weights[lane, t] = m.rom(count, column, 0, w_const.frac)
    slots, pairs = [], []  # (row, lane) of each product, its [input, weight]
    for p, row in enumerate(rows):
        for lane in range(lanes):
            for t in range(a):
                if (lane, t) not in weights:  # every weight zero: no multiplier, no input multiplexer
                    continue
                xs = m.mux(count, [row[i] for i in schedule[lane, t, :, 0]])
                if not (m[xs].is_const and m[xs].lo == 0):  # only padding: a zero product, none built
                    slots.append((p, lane))
                    pairs.append([xs, weights[lane, t]])
    return mac_loop(m, node, MacLoop(schedule, count, busy, last, len(rows), plan.bias_acc, plan.saturating),
                    slots, pairs, rf, budget)


class MacLoop(NamedTuple):
    """What the multiply-accumulate loop of a folded layer needs besides its products: the schedule
    ([lane, t, cycle] -> (term, output)), the layer's counter, busy and last flags, its number of
    rows, the bias in the accumulator (per output) and whether the accumulator saturates step by step."""

    schedule: np.ndarray
    count: int
    busy: int
    last: int
    rows: int
    bias_acc: np.ndarray
    saturating: bool


def mac_loop(m: Machine, node: Node, loop: MacLoop, slots: list[tuple[int, int]], pairs: list[list[int]], rf: int,
             budget: float | None) -> FoldedRows:
    """The accumulators of a folded layer: each (row, lane) slot's products (its [x, w] pairs multiplied and
    cast into the accumulator type) added to the accumulator its lane serves in each cycle, from the
    bias in the first block (see the module docstring); the outputs row by row."""
    acc_t = node.types['accum']
    schedule, count, busy, last = loop.schedule, loop.count, loop.busy, loop.last
    lanes, a = schedule.shape[:2]
    n_out = int(schedule[..., 1].max()) + 1
    outs = schedule[:, 0, :, 1]  # [lane, cycle]: the output each lane serves
    pipe = LayerPipe(m, node.name, budget)
    acc_bits = acc_t.width
    pairs = pipe.cut(pairs, MUL_NS)
    products = [[m.cast(m.mul(x, w), acc_t)] for x, w in pairs]
    after = (a * adder_ns(acc_bits) if loop.saturating else tree_ns(a + 1, acc_bits)) + loop_ns(acc_bits, rf)
    parts: dict[tuple[int, int], list[int]] = {}
    for slot, (prod,) in zip(slots, pipe.cut(products, after)):
        parts.setdefault(slot, []).append(prod)
    if not loop.saturating and pipe.budget is not None and any(len(v) > 1 for v in parts.values()):
        # each lane's products summed before the loop, so a cut can take the tree out of it
        keys = sorted(parts)

        def trees(nl, xs: list[int]) -> list[int]:  # one wrapped sum per lane of each row
            ends = np.cumsum([0] + [len(parts[k]) for k in keys])
            return [nl.cast(sum_terms(nl, xs[i:j], acc_t.frac), acc_t) for i, j in zip(ends[:-1], ends[1:])]

        summed = pipe.staged([x for k in keys for x in parts[k]], trees)
        parts = {k: tree for k, tree in zip(keys, pipe.cut([[t] for t in summed], loop_ns(acc_bits, rf)))}
    count_l, busy_l, last_l = pipe.loop_controls(count, busy, rf)  # the loop's view, behind the cuts
    done = m.register(0, 1, 0, reset=0, name=f'{node.name}_done')
    m.connect(done, last_l)
    first = m.flag(count_l, [int(i < a) for i in schedule[0, 0, :, 0]])  # input block 0: start from the bias
    bias = [m.rom(count_l, loop.bias_acc[outs[lane]], 0, acc_t.frac) for lane in range(lanes)]
    enables = {(lane, j): m.both(busy_l, m.flag(count_l, [int(o == j) for o in outs[lane]]))
               for lane in range(lanes) for j in sorted(set(outs[lane].tolist()))}
    result = []
    for p in range(loop.rows):
        tag = f'{node.name}_acc' if loop.rows == 1 else f'{node.name}_p{p}_acc'
        acc = [m.register(acc_t.min_mantissa, acc_t.max_mantissa, acc_t.frac, None, f'{tag}{j}') for j in range(n_out)]
        for lane in range(lanes):
            s = m.select(first, bias[lane], m.mux(count_l, [acc[j] for j in outs[lane]]))
            terms = parts.get((p, lane), [])
            if loop.saturating:  # the order is observable: one addition and cast after the other
                for part in terms:
                    s = m.cast(m.add(s, part), acc_t)
            elif terms:  # a wrapping (or never overflowing) sum: an adder tree, wrapped once
                s = m.cast(sum_terms(m, [s] + terms, acc_t.frac), acc_t)
            for j in sorted(set(outs[lane].tolist())):
                m.connect(acc[j], m.cast(s, acc_t), enables[lane, j])
        result += [m.cast(reg, node.result_type) for reg in acc]
    return FoldedRows(result, done, last, pipe.cuts)


#: op -> its folding function (m, node, graph, input signals, go, R, stage budget) -> FoldedRows
FOLDERS = {'Dense': fold_dense, 'Conv': fold_conv, 'EinsumDense': fold_einsum_dense, 'Einsum': fold_einsum}


def _weights(node: Node, graph: Graph):
    """The kernel and bias of a typed Dense or Conv as Consts (mantissas and LSB), as its recipe reads them."""
    b = Bounds(node, [graph[i].result_type for i in node.inputs])
    return b.weight('kernel'), b.weight('bias')




def folded_manifest(model, d: FoldedDesign, top: str) -> dict:
    """manifest.json of a folded design: the unrolled designs' keys, ii = max R, and the folded layers."""
    from .emit import port_entry, port_names

    m = d.machine
    in_ports, out_ports = port_names(m)
    kinds = {name: layer_folding(model.graph[name]) for name in d.timing.stages}  # 'mac' or 'adders' per layer
    kind = next(iter(set(kinds.values()))) if len(set(kinds.values())) == 1 else 'mixed'
    return {
        'top': top,
        'files': [f'{top}.v'],
        'latency': d.timing.latency,
        'ii': d.timing.ii,
        'clock_period_ns': model.clock_period,
        'pipeline': 'none',
        'architecture': 'folded',
        'folding': {'architecture': kind, 'architectures': kinds, 'reuse_factors': dict(d.timing.stages),
                    'pipeline_cuts': dict(d.timing.cuts)},
        'inputs': [port_entry(p, bus) for p, bus in zip(m.inputs, in_ports)],
        'outputs': [port_entry(p, bus) for p, bus in zip(m.outputs, out_ports)],
    }


def folded_cycles(model, d: FoldedDesign, x, valid=None) -> tuple[list[np.ndarray], np.ndarray]:
    """The folded design clock by clock from its cycle-level interpreter (the valid-every-II contract).

    Input vector t is presented in cycle t * II with valid_in = valid[t] (default 1), and valid_in = 0
    in the cycles between; returns (outputs, valid_out) over len(x) * II + latency cycles: outputs[k][t]
    is what output port k shows in cycle t (as real values), meaningful where valid_out[t] is set.
    """
    from .stateful import run_stream

    graph = model.graph
    xs = model.emulator._as_inputs(x)
    mantissas = [graph[name].result_type.quantize(a) for name, a in zip(graph.inputs, xs)]
    n, ii = len(mantissas[0]), d.timing.ii
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (n,):
        raise ValueError(f'valid must have one flag per input vector ({n}), got shape {valid.shape}')
    cycles = n * ii + d.timing.latency
    stream = []
    for mant in mantissas:
        seq = np.zeros((cycles,) + mant.shape[1:], dtype=np.int64)
        seq[:n * ii:ii] = mant
        stream.append(seq)
    flags = np.zeros(cycles, dtype=bool)
    flags[:n * ii:ii] = valid
    shown, valid_out = run_stream(d.machine, stream, flags)
    return [graph[name].result_type.to_float(y) for name, y in zip(graph.outputs, shown)], valid_out


__all__ = ['FOLDERS', 'FoldedDesign', 'FoldedRows', 'fold_conv', 'fold_dense', 'fold_graph', 'fold_rows', 'folded_cycles',
           'folded_layers', 'folded_manifest']
