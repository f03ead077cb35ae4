"""Streaming CNNs for the Verilog back end: pixels in one per clock, line buffers, one shared kernel per stage.

For images too large to unroll, ``hls_config['Model']['Architecture'] = 'stream'`` builds:

    pixel in -> [window -> kernel] per stage -> collect -> head -> outputs

The stages are planned by stream_graph.py: a chain of stages, one per Conv/Pool layer of a chain
of layers; where the layers before the Flatten branch and merge (residual and inception blocks),
a stage computes every layer of its level and carries the values later stages read.

* a *window* is a stateful netlist (stateful.Machine): a line buffer of registers that keeps the
  last (kernel span - 1) image rows plus a few pixels, row and column counters, and flags (ROMs
  addressed by the counters) that say when the buffer holds the whole receptive field of the next
  output pixel (any stride and dilation). Padded layers ('same'): a cell outside the image reads the
  padding value (0 for a Conv, the input type's minimum for a max pool, which then never wins), and
  the output pixels whose windows reach below or right of the image come out in the clocks right
  after the image's last pixel (the line buffer shifts on by itself for `flush` clocks);
* a *kernel* is the netlist of one output pixel: all filters of the Conv (or the Pool of all
  channels) as adder graphs, followed by the per-pixel ops of the layer (activation, scale,
  quantize, merges), lowered by the same functions as the unrolled design and pipelined (II = 1
  pixel); values read from earlier stages come from the window's identity cell, so they meet the
  pixels computed here in the same clock;
* *collect* is a stateful netlist too: a shift register that gathers the last feature map pixel by
  pixel (the Flatten), and the *head* is the unrolled netlist of everything after it (Dense
  layers, softmax), fed once per image; with a folded layer among them (ReuseFactor R > 1) the
  head is the Machine of fold.fold_graph instead (`fold_head`).

ReuseFactor R > 1 on a Conv layer before the Flatten (validated by folding.py as for the unrolled
architecture) makes its stage's kernel a folded machine (`fold_window`): each output pixel's window
is one row of fold.fold_rows, R clocks on about 1/R of the multipliers, valid_out R + 1 clocks after
the window. The whole design then takes one pixel every P = max R clocks (the valid-every-II
contract per pixel: valid_in high at most once in any P enabled clocks); a line buffer's flush
shifts once per P clocks, and a pixel that arrives fewer than P clocks after one of those shifts
waits in a one-pixel holding register (`_pacer`), so every stage sees its pixels P clocks apart.

ReuseFactor R > 1 on a Dense of the head (after the Flatten; validated the same way) makes the whole
head one folded machine (fold.fold_graph on `_head_graph`), fed once per image by the collector's
valid_out: its latency and II are the FoldedDesign's timing. An image takes pixels * P clocks, so the
head's II must not exceed that (else a GraphError names the layer, its R and the largest R that fits);
the design's ii stays pixels * P.

Every module is written by the ordinary emitters (emit.write_module for kernels and the head,
stateful.write_machine for windows and the collector); the top module only wires them. The
emulator defines the results; the tests compare the stream interpreter (stream_sim.py) and the
Verilator simulation with it image by image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ... import geometry
from ...fixed import FixedType
from ...intervals import Interval
from ...ir import Graph, GraphError, Node
from ...folding import check_reuse_factors, fold_shape, layer_strategy, valid_reuse_factors
from ...semantics import lower_node
from ...semantics.bounds import Bounds
from .emit import bus_names, element_width, port_entry, port_names, write_module
from .fold import fold_graph, row_folder
from .fold_stages import FoldedRows, stage_budget
from .lower import lower_graph
from .netlist import Netlist
from .pipeline import Schedule, schedule
from .stateful import Machine, Timing, write_machine
from .stream_graph import PIXEL_OPS, WINDOW_OPS, Stage, plan

__all__ = ['PIXEL_OPS', 'Stage', 'StreamDesign', 'WINDOW_OPS', 'collect_machine', 'design_stream', 'fold_head',
           'fold_window', 'output_shifts', 'plan', 'stage_ports', 'stream_files', 'stream_manifest', 'window_ends',
           'window_machine']


@dataclass
class StreamDesign:
    """The stages, the head (netlist of what follows the Flatten) and the total latency."""

    stages: list[Stage]
    flatten: Node
    #: what follows the Flatten: a pipelined netlist (head_schedule set) or, with folded layers, a Machine
    head: Netlist
    head_schedule: Schedule | None
    latency: int
    #: every input pixel reaches the outputs (else the last rows/columns are dropped by the stride grid
    #: and the outputs can come before the last pixel: the latency counts from the last pixel used)
    uses_every_pixel: bool
    seconds: float = 0.0
    #: clocks per input pixel: the largest ReuseFactor of the folded Conv layers (1: one pixel per clock)
    period: int = 1
    #: a folded head's timing (fold.fold_graph's: latency, II, {layer: R}); None for the pipelined head
    head_timing: Timing | None = None

    @property
    def pixels(self) -> int:
        """Input pixels per image."""
        return self.stages[0].in_hwc[0] * self.stages[0].in_hwc[1]

    @property
    def head_latency(self) -> int:
        """Clocks from the collector's valid_out to the head's outputs."""
        return self.head_timing.latency if self.head_timing else self.head_schedule.latency


def _fill(stage) -> int:
    """The mantissa a padded cell reads: 0 for a Conv, the input type's minimum for a max pool (never the max).

    `stage` is a Stage (of one window layer) or a WindowGroup: its first layer and input type decide."""
    return stage.in_type.min_mantissa if stage.nodes and stage.nodes[0].op == 'Pool' else 0


def _window_node(node: Node, in_shape: tuple[int, ...]) -> Node:
    """The node computing one output pixel from one window: the same layer with stride 1 and no padding."""
    rank = len(in_shape) - 1
    one = (1,) * rank
    attrs = {**node.attrs, 'strides': one, 'padding': (0,) * 2 * rank}
    if node.op == 'Conv':
        attrs['dilation'] = one
    else:
        attrs['global'] = False
    return dataclasses.replace(node, attrs=attrs, shape=one + node.shape[-1:])


def _pixel_node(node: Node) -> Node:
    """A per-pixel layer (activation, scale, quantize, merge) on one pixel: shape (C,), per-channel constants."""
    channels = node.shape[-1]  # per-channel constants (_per_pixel checked they are the same everywhere)

    def per_channel(arrays):
        return {k: np.broadcast_to(np.asarray(v), node.shape).reshape(-1, channels)[0] for k, v in arrays.items()}
    attrs = {**node.attrs, 'axis': -1} if node.op == 'Merge' else node.attrs  # a concat joins channels
    return dataclasses.replace(node, shape=(channels,), attrs=attrs, qweights=per_channel(node.qweights),
                               weights=per_channel(node.weights))


def stage_ports(stage: Stage) -> tuple[list[str], list[str], list[str]]:
    """Port names of a stage: the line buffer's inputs (one per value), its windows (the kernel's inputs), the
    kernel's outputs. A chain stage keeps 'pixel', 'window', 'pixel'."""
    if stage.chain:
        return ['pixel'], ['window'], ['pixel']
    wins, seen = [], {}
    for g in stage.groups:
        name = stage.inputs[g.value].name
        seen[name] = seen.get(name, 0) + 1
        wins.append(f'window_{name}' + (f'_{seen[name]}' if seen[name] > 1 else ''))
    return [f'pixel_{v.name}' for v in stage.inputs], wins, [f'pixel_{v.name}' for v in stage.outputs]


def _kernel_netlist(stage: Stage, graph: Graph, cse: bool, rfs: dict[str, int] | None = None,
                    budget: float | None = None, period: int = 1) -> Netlist:
    """The netlist computing one output pixel of a stage (all its layers) from its windows (im2col order);
    with folded layers among them (`rfs`: {layer: R > 1}) the stage's Machine (`fold_window`, `_Hold`; `budget`:
    the ns a stage of a folded layer may take, None for no pipeline cuts; `period`: clocks per pixel)."""
    folded = {n.name: rfs[n.name] for n in stage.nodes if rfs and n.name in rfs}
    nl = Machine() if folded else Netlist()
    kh, kw = stage.kernel
    _, win_ports, out_ports = stage_ports(stage)
    shown = []  # per window group: {cell: the signals of its channels}
    for g, name in zip(stage.groups, win_ports):
        c = stage.inputs[g.value].channels
        sigs = nl.add_input(name, (kh, kw, c) if g.full else (len(g.cells), c), g.in_type)
        shown.append({cell: sigs[i * c:(i + 1) * c] for i, cell in enumerate(g.cells)})
    values: dict[str, list[int]] = {}
    hold = _Hold(nl, stage, folded, shown, graph, values, budget, period) if folded else None

    def centre(value: str) -> list[int]:  # a value's pixel at the output pixel's position (a skip, a carried value)
        return shown[stage.at_identity[value]][stage.identity]
    read = hold.read if hold else (lambda sigs: sigs)  # folded: the window's values held until valid_out
    for node in stage.nodes:
        if node.name in values:  # folded (by _Hold)
            continue
        if node.op in WINDOW_OPS:
            sigs, in_shape = _window_input(stage, node, graph, shown)
            out = lower_node(nl, _window_node(node, in_shape), [graph[node.inputs[0]].result_type], [read(sigs)],
                             [in_shape], cse)
        else:
            ins = [values[i] if i in values else read(centre(i)) for i in node.inputs]
            out = lower_node(nl, _pixel_node(node), [graph[i].result_type for i in node.inputs], ins,
                             [(len(s),) for s in ins], cse)
        values[node.name] = out
    for v, name in zip(stage.outputs, out_ports):
        nl.add_output(name, (v.channels,), v.type, values[v.name] if v.name in values else read(centre(v.name)))
    if hold:
        nl.valid_out = hold.done
        nl.check()
    return nl


def _window_input(stage: Stage, node: Node, graph: Graph, shown) -> tuple[list[int], tuple[int, ...]]:
    """A Conv/Pool layer's window signals in its own kernel order (im2col) and their shape (taps..., C)."""
    src = graph[node.inputs[0]]
    group, cells = stage.reads[node.name]
    win = geometry.window_of(node, src.shape)
    in_shape = win.kernel + (src.shape[-1],) if len(src.shape) == 3 else (win.kernel[1], src.shape[-1])
    return [s for cell in cells for s in shown[group][cell]], in_shape


class _Hold:
    """The folded layers of a stage's kernel (each by `fold_window`) and the registers that keep the window's
    values for them and for the stage's other layers.

    The window shows a pixel's window from its valid_out (the kernel's go, clock g) for P clocks only
    (until the next shift), so its values are taken at go (registers valid from g + 1 to g + P, read by
    the folded layers in clocks g + 1 .. g + R). The other layers' results are needed at the kernel's
    valid_out (g + R + 1), after the next go when R = P: their inputs are taken again from those
    registers in the folded layers' last clock (g + R), which holds them until R clocks after the next go.
    """

    def __init__(self, m: Machine, stage: Stage, folded: dict[str, int], shown, graph: Graph, values: dict,
                 budget: float | None = None, period: int = 1) -> None:
        self.m, self.stage, self.at_go, self.held = m, stage, {}, {}
        go, rows = m.valid_in(), {}
        for node in stage.nodes:
            if node.name in folded:
                sigs, in_shape = _window_input(stage, node, graph, shown)
                rows[node.name] = fold_window(m, node, graph[node.inputs[0]].result_type,
                                              self._take(sigs, go, self.at_go, 'x'), in_shape, go, folded[node.name],
                                              budget)
        # the slowest folded layer (R + pipeline cuts) says when the pixel is done; a faster one's accumulators
        # hold from its own done until the next window's first accumulation, P + cuts + 1 clocks after go:
        # where that ends before the slowest is done, its outputs pass through registers that delay them
        slow = max(folded, key=lambda name: folded[name] + rows[name].cuts)
        span = folded[slow] + rows[slow].cuts
        for name, r in rows.items():
            late = span - folded[name] - r.cuts if span > period + r.cuts else 0
            values[name] = [m.delayed(s, late, f'{name}_out') for s in r.outputs]
        self.done, self.last, self.cuts = rows[slow].done, rows[slow].last, rows[slow].cuts
        self.go = go
        self.stage.cuts = span - max(folded.values())

    def _take(self, sigs: list[int], en: int, cache: dict, tag: str) -> list[int]:
        """Registers of `sigs` taken when `en` is 1, one per signal (shared through `cache`)."""
        for s in sigs:
            if s not in cache:
                cache[s] = self.m.latch(s, en, f'{self.stage.name}_{tag}{len(cache)}')
        return [cache[s] for s in sigs]

    def read(self, sigs: list[int]) -> list[int]:
        """Window signals for the stage's other layers: taken at go, again in the slowest folded layer's last
        clock, then delayed by its pipeline cuts (so they hold at its done)."""
        held = self._take(self._take(sigs, self.go, self.at_go, 'x'), self.last, self.held, 'hold')
        return [self.m.delayed(s, self.cuts, f'{self.stage.name}_hold') for s in held]


def fold_window(m: Machine, node: Node, in_type: FixedType, sigs: list[int], in_shape: tuple[int, ...], go: int,
                rf: int, budget: float | None = None) -> FoldedRows:
    """One output pixel of a Conv from its window's signals (shape `in_shape`, im2col order), folded over `rf`
    clocks by fold.fold_rows, or digit-serially (Folding 'adders'), one row (with pipeline cuts by `budget`).
    The window must hold still until the counter's last clock."""
    wnode = _window_node(node, in_shape)
    index = geometry.im2col_index(geometry.check_conv(wnode, in_shape), in_shape[-1])  # (1, taps * C)
    bounds = Bounds(wnode, [in_type])
    w_const, b_const = bounds.weight('kernel'), bounds.weight('bias')
    kernel = w_const.map(lambda k: geometry.conv_matrix(np.asarray(k), int(node.attrs.get('groups', 1)), node.name))
    return row_folder(wnode)(m, wnode, [[sigs[i] for i in index[0]]], kernel, b_const, go, rf, budget)


def _head_graph(flatten: Node, head: list[Node], outputs: list[str]) -> Graph:
    """The layers after the Flatten as a graph whose input is the flattened feature map."""
    g = Graph()
    inp = Node(flatten.name, 'Input', [], flatten.shape)
    inp.types = {'result': flatten.result_type}
    g.add(inp)
    for node in head:
        g.add(node)
    g.inputs = [flatten.name]
    g.outputs = list(outputs)
    return g


def fold_head(graph: Graph, flatten: Node, head: list[Node], interval: int, clock_period: float | None = None,
              pipeline='auto') -> tuple[Machine, Timing]:
    """The head (layers after the Flatten, some with ReuseFactor > 1) as fold.fold_graph's machine and its
    timing; GraphError when it would take a new image less often than one every `interval` clocks."""
    folded = fold_graph(_head_graph(flatten, head, graph.outputs), clock_period=clock_period, pipeline=pipeline)
    timing = folded.timing
    if timing.ii > interval:
        rfs = timing.stages
        slow = [name for name, rf in rfs.items() if rf > interval] or [max(rfs, key=rfs.get)]
        parts = []
        for name in slow:
            node = graph[name]
            fits = [r for r in valid_reuse_factors(*fold_shape(node), layer_strategy(node)) if r <= interval]
            parts.append(f'layer {name!r} (ReuseFactor {rfs[name]}): the largest ReuseFactor it can take is '
                         f'{max(fits)}')
        raise GraphError(f"Architecture 'stream': the folded head takes a new image every {timing.ii} clocks, but "
                         f'images come every {interval} clocks (pixels x clocks per pixel); ' + '; '.join(parts))
    return folded.machine, timing


def design_stream(graph: Graph, intervals: dict[str, Interval], clock_period: float, pipeline, cse: bool = True) -> StreamDesign:
    """Plan, lower and schedule the streaming architecture of a CNN."""
    stages, flatten, head = plan(graph)
    rfs = check_reuse_factors(n for s in stages for n in s.nodes)  # {Conv: R > 1}, validated as in convert()
    period = max(rfs.values(), default=1)
    for stage in stages:
        stage.rf = max((rfs.get(n.name, 1) for n in stage.nodes), default=1)
        stage.window, stage.flush = window_machine(stage, period)
        stage.netlist = _kernel_netlist(stage, graph, cse, rfs, stage_budget(clock_period, pipeline), period)
        stage.schedule = None if stage.rf > 1 else schedule(stage.netlist, clock_period, pipeline)
    if check_reuse_factors(head):  # folded head layers: one machine, fed once per image
        h, w, _ = stages[0].in_hwc
        head_nl, head_timing = fold_head(graph, flatten, head, h * w * period, clock_period, pipeline)
        head_sched, head_latency = None, head_timing.latency
    else:
        head_nl = lower_graph(_head_graph(flatten, head, graph.outputs), intervals, cse)
        head_sched, head_timing = schedule(head_nl, clock_period, pipeline), None
        head_latency = head_sched.latency
    # in the harness's sense (outputs shown after the edge `latency - 1` clocks after the one that
    # accepted the last used pixel): per stage the window's register, its flush shifts (one per P clocks)
    # and the kernel's latency; one for the collector, then the head. The stages are a chain (merged
    # streams meet inside a stage), so this is the longest path
    latency = sum(1 + max(s.flush, 0) * period + s.latency for s in stages) + 1 + head_latency
    every_pixel = all(s.flush >= 0 for s in stages)  # else the stride grid drops the last rows or columns
    return StreamDesign(stages, flatten, head_nl, head_sched, latency, every_pixel, period=period,
                        head_timing=head_timing)


# ---------------------------------------------------------------- line buffers and collector (stateful netlists)

def _next(m: Machine, count: int, n: int) -> int:
    """(count + 1) mod n of a counter register in [0, n - 1]."""
    return m.const(0, 0) if n == 1 else m.rom(count, np.array([(k + 1) % n for k in range(n)]), 0, 0)


def _grid_counter(m: Machine, rows: int, cols: int, step: int, name: str) -> tuple[int, int, int]:
    """Row and column registers of a row-major scan that advance when `step` is 1; (row, col, last_col)."""
    row = m.register(0, rows - 1, 0, reset=0, name=f'{name}_row')
    col = m.register(0, cols - 1, 0, reset=0, name=f'{name}_col')
    last_col = m.flag(col, [int(k == cols - 1) for k in range(cols)])
    m.connect(col, _next(m, col, cols), step)
    m.connect(row, m.select(last_col, _next(m, row, rows), row), step)
    return row, col, last_col


def window_ends(stage: Stage) -> tuple[list[int], list[int]]:
    """The input row of each output row's bottom cells and the input column of each output column's right
    cells (past the image where they are padding)."""
    (kh, kw), (dh, dw), (sh, sw) = stage.kernel, stage.dilation, stage.strides
    top, _, left, _ = stage.pads
    oh, ow = stage.out_hwc[:2]
    return ([o * sh - top + (kh - 1) * dh for o in range(oh)], [o * sw - left + (kw - 1) * dw for o in range(ow)])


def output_shifts(stage: Stage) -> list[int]:
    """For each output pixel (row-major) the line-buffer shift that completes its window: the index of the
    input pixel holding its bottom-right cell, counted past the image's end when that cell is padding.

    Cell columns past the row's end count on into the next row (index row * W + col), so an output
    whose window ends in the right padding comes with the first pixels of the next row.
    """
    h, w, _ = stage.in_hwc
    row_end, col_end = window_ends(stage)
    shifts = [r * w + c for r in row_end for c in col_end]
    flush = shifts[-1] - (h * w - 1)
    if any(b <= a for a, b in zip(shifts, shifts[1:])) or shifts[0] < 0 or shifts[0] < flush or max(col_end) >= 2 * w:
        raise GraphError(f"layer {stage.name!r}: Architecture 'stream' cannot schedule this window (kernel "
                         f'{stage.kernel}, strides {stage.strides}, dilation {stage.dilation}, padding {stage.pads} on '
                         f'{stage.in_hwc[:2]}): its output pixels would need more than one clock each')
    return shifts


def window_machine(stage: Stage, period: int = 1) -> tuple[Machine, int]:
    """The line buffer of a stage (input 'pixel' (C,), output 'window' (KH, KW, C)) and its flush clocks.

    The buffer shifts on every accepted pixel, and on its own for up to `flush` clocks after an image's
    last pixel (outputs in the bottom or right padding) until the next image's first pixel comes;
    valid_out rises after the shift that completes an output window (`output_shifts`). So the
    latency from an image's last pixel is exact when the next image follows back to back or not
    at all; valid_in bubbles among the next image's first `flush` pixels delay the last outputs by
    as many clocks. The window's cells are fixed taps of the buffer; a cell
    outside the image (padding) reads the padding value instead (`_fill`), by per-row and per-column flags that
    are registered with valid_out.

    A stage of several layers (stream_graph) has one input port per value and one window port per
    `WindowGroup` (its cells only); each value's shift register is as deep as its deepest cell.

    `period` P > 1 (folded kernels): pixels come at most one every P clocks, and the flush shifts once
    every P clocks; a pixel that comes sooner after one of those waits (`_pacer`), so the window's
    valid_out pulses are at least P clocks apart.
    """
    (h, w, _), (kh, kw), (dh, dw) = stage.in_hwc, stage.kernel, stage.dilation
    (sh, sw), (top, _, left, _) = stage.strides, stage.pads
    oh, ow = stage.out_hwc[:2]
    shifts = output_shifts(stage)
    ends, flush = set(shifts), shifts[-1] - (h * w - 1)
    m = Machine()
    in_ports, win_ports, _ = stage_ports(stage)
    pixels = [m.add_input(name, (v.channels,), v.type) for name, v in zip(in_ports, stage.inputs)]
    valid, pace = m.valid_in(), None
    if period > 1 and flush > 0:  # own shifts in the flush: pace them, hold a pixel that comes too soon after one
        pixels, valid, pace = _pacer(m, stage, pixels, valid, period)
    row, col, last_col = _grid_counter(m, h, w, valid, 'in')
    # an output completes at shift v = R * W + C of this image (its last cell in row R, or in the right
    # padding of row R - 1), or in the flush after the image's last pixel
    row_end, col_end = (set(e) for e in window_ends(stage))
    emit = m.either(m.both(m.flag(row, [int(r in row_end) for r in range(h)]),
                           m.flag(col, [int(k in col_end) for k in range(w)])),
                    m.both(m.flag(row, [int(r - 1 in row_end) for r in range(h)]),
                           m.flag(col, [int(k + w in col_end) for k in range(w)])))
    emit = m.both(valid, emit)
    if flush > 0:
        # the flush: tail step k (1..flush) is shift h*w - 1 + k after the image's last pixel. It shifts on its
        # own only until the next image's first pixel (its row and column counters are at 0 until then):
        # after that only that image's pixels shift, so they stay contiguous in the buffer
        tail = m.register(0, flush, 0, reset=0, name='flush')
        last_pixel = m.both(valid, m.both(last_col, m.flag(row, [int(r == h - 1) for r in range(h)])))
        idle = m.both(m.flag(row, [int(r == 0) for r in range(h)]), m.flag(col, [int(k == 0) for k in range(w)]))
        own = m.both(m.flag(tail, [0] + [1] * flush), idle)
        shift = m.either(valid, own if pace is None else m.both(pace[1], own))
        m.connect(tail, m.select(last_pixel, m.const(1, 0), m.rom(tail, np.array([0, *range(2, flush + 1), 0]), 0, 0)),
                  shift)
        tail_emit = m.flag(tail, [0] + [int(h * w - 1 + k in ends) for k in range(1, flush + 1)])
        emit = m.either(emit, m.both(shift, tail_emit))
    else:
        shift = valid
    if pace is not None:  # P clocks from one shift to the next
        reg = pace[0]
        down = m.rom(reg, np.array([max(k - 1, 0) for k in range(period)]), 0, 0)
        m.connect(reg, m.select(shift, m.const(period - 1, 0), down))
    lines = _shift_lines(m, stage, pixels, shift)
    valid_out = m.register(0, 1, 0, reset=0, name='valid_out')
    m.connect(valid_out, emit)
    m.valid_out = valid_out
    orow, ocol, _ = _grid_counter(m, oh, ow, emit, 'out')  # the output pixel the next emit shows
    read = {cell for g in stage.groups for cell in g.cells}
    row_ok = {kr: m.latch(m.flag(orow, [int(0 <= o * sh - top + kr * dh < h) for o in range(oh)]), emit, f'row_ok{kr}')
              for kr in range(kh) if any(r == kr for r, _ in read)}
    col_ok = {kc: m.latch(m.flag(ocol, [int(0 <= o * sw - left + kc * dw < w) for o in range(ow)]), emit, f'col_ok{kc}')
              for kc in range(kw) if any(c == kc for _, c in read)}
    for g, name in zip(stage.groups, win_ports):
        fill = m.const(_fill(g) if g.nodes else 0, g.in_type.frac)
        cells = []
        for kr, kc in g.cells:
            tap = lines[g.value][1 + (kh - 1 - kr) * dh * w + (kw - 1 - kc) * dw]
            inside = m.both(row_ok[kr], col_ok[kc])
            cells += [m.select(inside, s, fill) for s in tap]
        c = stage.inputs[g.value].channels
        m.add_output(name, (kh, kw, c) if g.full else (len(g.cells), c), g.in_type, cells)
    m.check()
    return m, flush


def _pacer(m: Machine, stage: Stage, pixels: list[list[int]], valid: int, period: int):
    """The pixels that enter a line buffer paced at one shift per `period` clocks: (pixels, take, (pace, ready)).

    `pace` (connect it: period - 1 at each shift, counting down to 0) says how many clocks the buffer
    must still wait; `ready` is pace == 0. A pixel arriving while not ready (only just after a flush
    shift: pixels themselves come `period` clocks apart) is stored and enters at the first ready clock,
    before the next pixel can come; `take` is 1 in the clock a pixel enters.
    """
    pace = m.register(0, period - 1, 0, reset=0, name='pace')
    ready = m.flag(pace, [1] + [0] * (period - 1))
    early = m.both(valid, m.select(ready, m.const(0, 0), m.const(1, 0)))
    pending = m.register(0, 1, 0, reset=0, name='pending')
    m.connect(pending, m.select(early, m.const(1, 0), m.select(ready, m.const(0, 0), pending)))
    out = []
    for j, pixel in enumerate(pixels):
        label = 'held' if len(pixels) == 1 else f'{stage.inputs[j].name}_held'
        out.append([m.select(pending, m.latch(s, early, f'{label}_{ch}'), s) for ch, s in enumerate(pixel)])
    return out, m.both(ready, m.either(pending, valid)), (pace, ready)


def _shift_lines(m: Machine, stage: Stage, pixels: list[list[int]], shift: int) -> list[list[list[int]]]:
    """Per input value its shift register [pixel, 1 shift ago, 2 shifts ago, ...] (line_depth registers each)."""
    lines = [[p] for p in pixels]
    depth = [stage.line_depth(i) for i in range(len(pixels))]
    for i in range(max(depth)):
        for j, line in enumerate(lines):
            if i < depth[j]:
                label = f'line{i}' if len(lines) == 1 else f'{stage.inputs[j].name}_line{i}'
                line.append([m.latch(s, shift, f'{label}_{ch}') for ch, s in enumerate(line[-1])])
    return lines


def collect_machine(n: int, c: int, t: FixedType) -> Machine:
    """The collector: a shift register of the last n pixels (C elements of type t) in arrival order on
    output 'data' (pixel p at elements [p*C, (p+1)*C)); valid_out rises after the n-th pixel of a map."""
    m = Machine()
    pixel = m.add_input('pixel', (c,), t)
    valid = m.valid_in()
    stored = [pixel]
    for p in range(n):
        stored.append([m.latch(s, valid, f'pixel{p}_{ch}') for ch, s in enumerate(stored[-1])])
    index = m.register(0, n - 1, 0, reset=0, name='index')
    m.connect(index, _next(m, index, n), valid)
    full = m.register(0, 1, 0, reset=0, name='full')
    m.connect(full, m.both(valid, m.flag(index, [int(k == n - 1) for k in range(n)])))
    m.valid_out = full
    m.add_output('data', (n * c,), t, [s for p in range(n) for s in stored[n - p]])
    m.check()
    return m


# ---------------------------------------------------------------- Verilog

def stream_files(d: StreamDesign, top: str, graph: Graph, adders: str = 'off') -> dict[str, str]:
    """{file name: Verilog} of the whole streaming design: one module per file, the top last.

    adders: the unrolled kernels' and head's adders (emit.write_module; 'off' = binary adders)."""
    files = {}
    for k, stage in enumerate(d.stages):
        title = _window_title(stage)
        files[f'{top}_w{k}.v'] = write_machine(stage.window, Timing(1 + max(stage.flush, 0) * d.period, d.period),
                                               f'{top}_w{k}', title)
        files[f'{top}_k{k}.v'] = (write_module(stage.netlist, stage.schedule, f'{top}_k{k}', adders) if stage.rf == 1 else
                                  write_machine(stage.netlist, _kernel_timing(stage), f'{top}_k{k}'))
    last = d.stages[-1]
    n_pix = last.out_hwc[0] * last.out_hwc[1]
    files[f'{top}_collect.v'] = write_machine(
        collect_machine(n_pix, last.out_hwc[2], last.out_type), Timing(1, 1), f'{top}_collect',
        f'Collector: the {n_pix} pixels of the last feature map in arrival order, then valid_out for one clock.')
    files[f'{top}_head.v'] = (write_module(d.head, d.head_schedule, f'{top}_head', adders) if d.head_timing is None else
                              write_machine(d.head, d.head_timing, f'{top}_head'))
    files[f'{top}.v'] = _top_module(d, top, graph)
    return files


def _kernel_timing(stage: Stage) -> Timing:
    """A folded kernel's timing: valid_out R + 1 clocks after its window, a new window every R clocks."""
    return Timing(stage.latency, stage.rf, check_reuse_factors(stage.nodes))


def _window_title(stage: Stage) -> str:
    """The header of a line buffer's module: what it buffers and how it slides."""
    h, w, c = stage.in_hwc
    flush = f'{stage.flush if stage.flush > 0 else 0} flush clocks after the last pixel of an image.'
    if stage.chain:
        return (f'Line buffer of layer {stage.name}: {h} x {w} x {c} pixels in, kernel {stage.kernel}, '
                f'strides {stage.strides}, dilation {stage.dilation},\npadding {stage.pads}; {flush}')
    values = ', '.join(f'{v.name} ({v.channels})' for v in stage.inputs)
    return (f'Line buffer of layers {", ".join(n.name for n in stage.nodes)}: {h} x {w} pixels of {values} in,\n'
            f'union window {stage.kernel}, strides {stage.strides}, dilation {stage.dilation}, padding '
            f'{stage.pads}; {flush}')


def _stage_instances(stage: Stage, k: int, top: str, wires: dict[str, str], valid: str) -> list[str]:
    """The wires and the two instances (line buffer, kernel) of stage k; `wires` maps each streamed value to the
    wire carrying it and gets this stage's outputs."""
    w_in, w_out = port_names(stage.window)
    k_in, k_out = port_names(stage.netlist)
    win = [f'win{k}' if stage.chain else f'win{k}_{g}' for g in range(len(stage.groups))]
    pix = [f'pix{k}' if stage.chain else f'pix{k}_{j}' for j in range(len(stage.outputs))]
    lines = [] if stage.chain else [
        f'  // stage {k}: layers {", ".join(n.name for n in stage.nodes)}; streams in '
        f'{", ".join(v.name for v in stage.inputs)}, out {", ".join(v.name for v in stage.outputs)}']
    lines += [f'  wire [{len(g.cells) * stage.inputs[g.value].channels * element_width(g.in_type) - 1}:0] {name};'
              for g, name in zip(stage.groups, win)] + [f'  wire win{k}_valid;']
    lines += [f'  wire [{v.channels * element_width(v.type) - 1}:0] {name};'
              for v, name in zip(stage.outputs, pix)] + [f'  wire pix{k}_valid;']
    ins = ', '.join(f'.{p}({wires[v.name]})' for p, v in zip(w_in, stage.inputs))
    lines += [f'  {top}_w{k} window{k} (.clk(clk), .rst(rst), .ce(ce), .valid_in({valid}), {ins}, ' +
              ', '.join(f'.{p}({name})' for p, name in zip(w_out, win)) + f', .valid_out(win{k}_valid));',
              f'  {top}_k{k} kernel{k} (.clk(clk), .rst(rst), .ce(ce), .valid_in(win{k}_valid), '
              f'.valid_out(pix{k}_valid), ' + ', '.join(f'.{p}({name})' for p, name in zip(k_in, win)) + ', ' +
              ', '.join(f'.{p}({name})' for p, name in zip(k_out, pix)) + ');']
    wires.update({v.name: name for v, name in zip(stage.outputs, pix)})
    return lines


def _top_module(d: StreamDesign, top: str, graph: Graph) -> str:
    x = graph[graph.inputs[0]]
    in_t = x.result_type
    c0 = d.stages[0].in_hwc[2]
    outs = [graph[name] for name in graph.outputs]
    (x_port,), y_ports = bus_names([x.name], [o.name for o in outs])
    (flat_port,), head_ports = port_names(d.head)
    rate = 'One pixel per clock' if d.period == 1 else f'One pixel every {d.period} clocks (at most)'
    lines = [f'// {top}: streaming CNN generated by fpga4ml. {rate} on {x_port} (row-major),',
             f'// outputs once per image, {d.latency} clocks after the last pixel the outputs depend on.',
             f'module {top} (', '  input  wire clk,', '  input  wire rst,', '  input  wire ce,',
             '  input  wire valid_in,', '  output wire valid_out,',
             f'  input  wire [{c0 * element_width(in_t) - 1}:0] {x_port},']
    lines += [f'  output wire [{o.size * element_width(o.result_type) - 1}:0] {y},' for o, y in zip(outs, y_ports)]
    lines[-1] = lines[-1].rstrip(',')
    lines.append(');')
    wires, prev_valid = {x.name: x_port}, 'valid_in'
    for k, stage in enumerate(d.stages):
        lines += _stage_instances(stage, k, top, wires, prev_valid)
        prev_valid = f'pix{k}_valid'
    prev = wires[d.stages[-1].outputs[0].name]
    last = d.stages[-1]
    n_pix = last.out_hwc[0] * last.out_hwc[1]
    c_last, w_last = last.out_hwc[2], element_width(last.out_type)
    lines += [f'  wire [{n_pix * c_last * w_last - 1}:0] features;', '  wire features_valid;',
              f'  {top}_collect collect (.clk(clk), .rst(rst), .ce(ce), .valid_in({prev_valid}), .x_pixel({prev}), '
              '.y_data(features), .valid_out(features_valid));',
              f'  {top}_head head (.clk(clk), .rst(rst), .ce(ce), .valid_in(features_valid), .valid_out(valid_out), '
              f'.{flat_port}(features), ' +
              ', '.join(f'.{h}({y})' for h, y in zip(head_ports, y_ports)) + ');',
              'endmodule', '']
    return '\n'.join(lines)


def stream_manifest(d: StreamDesign, top: str, graph: Graph, clock_period: float, files: list[str]) -> dict:
    """manifest.json of a streaming design (see docs/verilator.md, stream mode); `files` as written."""
    x = graph[graph.inputs[0]]
    h, w, c = d.stages[0].in_hwc
    (x_port,), _ = bus_names([x.name], [])
    entry = {'name': x.name, 'port': x_port, 'shape': [h, w, c], 'elements': c,
             'width': element_width(x.result_type), 'frac': x.result_type.frac, 'signed': x.result_type.signed,
             'type': str(x.result_type)}
    stream = {'pixels': h * w} if d.period == 1 else {'pixels': h * w, 'interval': d.period}  # clocks per pixel
    if d.head_timing is not None:  # the folded head: its own latency and II (at most the image interval)
        stream['head'] = {'latency': d.head_timing.latency, 'ii': d.head_timing.ii,
                          'reuse_factors': dict(d.head_timing.stages)}
    return {
        'top': top, 'files': list(files), 'latency': d.latency, 'ii': h * w * d.period, 'clock_period_ns': clock_period,
        'architecture': 'stream', 'stream': stream, 'latency_from_last_pixel': d.uses_every_pixel,
        'inputs': [entry], 'outputs': [port_entry(p, bus) for p, bus in zip(d.head.outputs, port_names(d.head)[1])],
    }

