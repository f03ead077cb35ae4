"""Streaming CNNs for the Verilog back end: pixels in one per clock, line buffers, one shared kernel per layer.

For images too large to unroll, ``hls_config['Model']['Architecture'] = 'stream'`` builds:

    pixel in -> [window -> kernel] per Conv/Pool layer -> collect -> head -> outputs

* a *window* is a stateful netlist (stateful.Machine): a line buffer of registers that keeps the
  last (kernel span - 1) image rows plus a few pixels, row and column counters, and flags (ROMs
  addressed by the counters) that say when the buffer holds the whole receptive field of the next
  output pixel (any stride and dilation). Padded layers ('same'): a cell outside the image reads the
  padding value (0 for a Conv, the input type's minimum for a max pool, which then never wins), and
  the output pixels whose windows reach below or right of the image come out in the clocks right
  after the image's last pixel (the line buffer shifts on by itself for `flush` clocks);
* a *kernel* is the netlist of one output pixel: all filters of the Conv (or the Pool of all
  channels) as adder graphs, followed by the per-pixel ops of the layer (activation, scale,
  quantize), lowered by the same functions as the unrolled design and pipelined (II = 1 pixel);
* *collect* is a stateful netlist too: a shift register that gathers the last feature map pixel by
  pixel (the Flatten), and the *head* is the unrolled netlist of everything after it (Dense
  layers, softmax), fed once per image.

Every module is written by the ordinary emitters (emit.write_module for kernels and the head,
stateful.write_machine for windows and the collector); the top module only wires them. The
emulator defines the results; the tests compare the Verilator simulation with it image by image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ... import geometry
from ...fixed import FixedType
from ...intervals import Interval
from ...ir import Graph, GraphError, Node
from ...semantics import lower_node
from ...semantics.spec import attr
from .emit import bus_names, element_width, port_entry, port_names, write_module
from .lower import lower_graph
from .netlist import Netlist
from .pipeline import Schedule, schedule
from .stateful import Machine, Timing, write_machine

WINDOW_OPS = ('Conv', 'Pool')
PIXEL_OPS = ('Activation', 'Scale', 'Quantize')


@dataclass
class Stage:
    """One line-buffered layer: the window geometry and the kernel netlist of one output pixel."""

    name: str
    in_hwc: tuple[int, int, int]
    out_hwc: tuple[int, int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    in_type: FixedType
    out_type: FixedType
    #: padding (top, bottom, left, right)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    nodes: list[Node] = field(default_factory=list)
    netlist: Netlist | None = None
    schedule: Schedule | None = None
    #: the line buffer (window_machine) and the clocks it shifts on by itself after an image's last pixel
    window: Machine | None = None
    flush: int = 0


@dataclass
class StreamDesign:
    """The stages, the head (netlist of what follows the Flatten) and the total latency."""

    stages: list[Stage]
    flatten: Node
    head: Netlist
    head_schedule: Schedule
    latency: int
    #: every input pixel reaches the outputs (else the last rows/columns are dropped by the stride grid
    #: and the outputs can come before the last pixel: the latency counts from the last pixel used)
    uses_every_pixel: bool
    seconds: float = 0.0


def _chain(graph: Graph) -> list[Node]:
    """The graph as a single chain from its one input (GraphError otherwise)."""
    if len(graph.inputs) != 1:
        raise GraphError(f"Architecture 'stream' needs a model with one image input, got {graph.inputs}")
    consumers: dict[str, list[str]] = {n.name: [] for n in graph}
    for node in graph:
        for src in node.inputs:
            consumers[src].append(node.name)
    chain = [graph[graph.inputs[0]]]
    while consumers[chain[-1].name]:
        nxt = consumers[chain[-1].name]
        if len(nxt) != 1 or len(graph[nxt[0]].inputs) != 1:
            raise GraphError(f"Architecture 'stream': layer {chain[-1].name!r} feeds {nxt}; only a chain of "
                             'single-input layers is supported (no branches or merges)')
        chain.append(graph[nxt[0]])
    if [chain[-1].name] != list(graph.outputs):
        raise GraphError(f"Architecture 'stream': the outputs {graph.outputs} must be the end of the chain")
    return chain


def _window_geometry(node: Node, in_shape: tuple[int, ...]) -> geometry.Window:
    win = geometry.check_conv(node, in_shape) if node.op == 'Conv' else geometry.check_pool(node, in_shape)
    if any(win.pads) and node.op == 'Pool' and attr(node, 'mode') != 'max':
        raise GraphError(f"layer {node.name!r}: Architecture 'stream' pads Conv and max Pool layers; this average "
                         f'Pool pads {win.pads} (its divisor changes at the border). Use valid pooling or the '
                         'unrolled architecture')
    return win


def _fill(stage: Stage) -> int:
    """The mantissa a padded cell reads: 0 for a Conv, the input type's minimum for a max pool (never the max)."""
    return stage.in_type.min_mantissa if stage.nodes[0].op == 'Pool' else 0


def _per_pixel(node: Node) -> None:
    """Per-pixel ops must use the same constants at every pixel (per-channel at most)."""
    channels = node.shape[-1]
    for key, values in node.qweights.items():
        full = np.broadcast_to(np.asarray(values), node.shape).reshape(-1, channels)
        if not np.all(full == full[:1]):
            raise GraphError(f"layer {node.name!r}: Architecture 'stream' needs per-channel {key!r} values "
                             '(the same at every pixel)')


def plan(graph: Graph) -> tuple[list[Stage], Node, list[Node]]:
    """Split a CNN into line-buffered stages, the Flatten and the head (GraphError when it does not fit)."""
    chain = _chain(graph)
    x = chain[0]
    if len(x.shape) not in (2, 3):
        raise GraphError(f"Architecture 'stream' needs an image input (H, W, C) or (W, C), got {x.shape}")
    hwc = geometry.as_hwc(x.shape)
    stages: list[Stage] = []
    prev_type = x.result_type
    k = 1
    while k < len(chain) and chain[k].op in WINDOW_OPS + PIXEL_OPS:
        node = chain[k]
        if node.op in WINDOW_OPS or not stages:
            pads = (0, 0, 0, 0)
            if node.op in WINDOW_OPS:
                win = _window_geometry(node, graph[node.inputs[0]].shape)
                out_hwc = geometry.as_hwc(node.shape)
                kernel, strides, dilation, pads = win.kernel, win.strides, win.dilation, win.pads
            else:  # per-pixel ops before any window: a 1x1 window
                out_hwc, kernel, strides, dilation = hwc, (1, 1), (1, 1), (1, 1)
            stages.append(Stage(node.name, hwc, out_hwc, kernel, strides, dilation, prev_type, node.result_type,
                                pads))
            hwc = out_hwc
        if node.op in PIXEL_OPS:
            _per_pixel(node)
        stages[-1].nodes.append(node)
        stages[-1].out_type = node.result_type
        prev_type = node.result_type
        k += 1
    if not stages:
        raise GraphError("Architecture 'stream' needs at least one Conv or Pool layer after the input")
    if k == len(chain) or chain[k].op != 'Reshape' or len(chain[k].shape) != 1:
        where = chain[k].name if k < len(chain) else 'the end'
        raise GraphError(f"Architecture 'stream': after the convolutional part a Flatten (Reshape to 1-D) must "
                         f'follow; found {where!r} ({chain[k].op if k < len(chain) else "no layer"}). '
                         f'Streaming supports Conv, Pool, {", ".join(PIXEL_OPS)} before the Flatten')
    return stages, chain[k], chain[k + 1:]


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


def _kernel_netlist(stage: Stage, graph: Graph, cse: bool) -> Netlist:
    """The netlist computing one output pixel of a stage from its window (im2col order)."""
    nl = Netlist()
    kh, kw = stage.kernel
    c_in = stage.in_hwc[2]
    sigs = nl.add_input('window', (kh, kw, c_in), stage.in_type)
    for node in stage.nodes:
        src = graph[node.inputs[0]]
        if node.op in WINDOW_OPS:
            in_shape = (kh, kw, c_in) if len(src.shape) == 3 else (kw, c_in)
            pixel = _window_node(node, in_shape)
        else:
            in_shape = (len(sigs),)
            channels = node.shape[-1]  # per-channel constants (_per_pixel checked they are the same everywhere)
            def per_channel(arrays):
                return {k: np.broadcast_to(np.asarray(v), node.shape).reshape(-1, channels)[0] for k, v in arrays.items()}
            pixel = dataclasses.replace(node, shape=(channels,), qweights=per_channel(node.qweights),
                                        weights=per_channel(node.weights))
        sigs = lower_node(nl, pixel, [src.result_type], [sigs], [in_shape], cse)
    nl.add_output('pixel', (stage.out_hwc[2],), stage.out_type, sigs)
    return nl


def _head_graph(flatten: Node, head: list[Node]) -> Graph:
    """The layers after the Flatten as a graph whose input is the flattened feature map."""
    g = Graph()
    inp = Node(flatten.name, 'Input', [], flatten.shape)
    inp.types = {'result': flatten.result_type}
    g.add(inp)
    for node in head:
        g.add(node)
    g.inputs = [flatten.name]
    g.outputs = [head[-1].name] if head else [flatten.name]
    return g


def design_stream(graph: Graph, intervals: dict[str, Interval], clock_period: float, pipeline, cse: bool = True) -> StreamDesign:
    """Plan, lower and schedule the streaming architecture of a CNN."""
    stages, flatten, head = plan(graph)
    for stage in stages:
        stage.window, stage.flush = window_machine(stage)
        stage.netlist = _kernel_netlist(stage, graph, cse)
        stage.schedule = schedule(stage.netlist, clock_period, pipeline)
    head_nl = lower_graph(_head_graph(flatten, head), intervals, cse)
    head_sched = schedule(head_nl, clock_period, pipeline)
    # in the harness's sense (outputs shown after the edge `latency - 1` clocks after the one that
    # accepted the last used pixel): per stage the window's register, its flush clocks and the
    # kernel's latency; one for the collector, then the head
    latency = sum(1 + max(s.flush, 0) + s.schedule.latency for s in stages) + 1 + head_sched.latency
    every_pixel = all(s.flush >= 0 for s in stages)  # else the stride grid drops the last rows or columns
    return StreamDesign(stages, flatten, head_nl, head_sched, latency, every_pixel)


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


def window_machine(stage: Stage) -> tuple[Machine, int]:
    """The line buffer of a stage (input 'pixel' (C,), output 'window' (KH, KW, C)) and its flush clocks.

    The buffer shifts on every accepted pixel, and on its own for up to `flush` clocks after an image's
    last pixel (outputs in the bottom or right padding) until the next image's first pixel comes;
    valid_out rises after the shift that completes an output window (`output_shifts`). So the
    latency from an image's last pixel is exact when the next image follows back to back or not
    at all; valid_in bubbles among the next image's first `flush` pixels delay the last outputs by
    as many clocks. The window's cells are fixed taps of the buffer; a cell
    outside the image (padding) reads the padding value instead (`_fill`), by per-row and per-column flags that
    are registered with valid_out.
    """
    (h, w, c), (kh, kw), (dh, dw) = stage.in_hwc, stage.kernel, stage.dilation
    (sh, sw), (top, _, left, _) = stage.strides, stage.pads
    oh, ow = stage.out_hwc[:2]
    shifts = output_shifts(stage)
    ends, flush = set(shifts), shifts[-1] - (h * w - 1)
    m = Machine()
    pixel = m.add_input('pixel', (c,), stage.in_type)
    valid = m.valid_in()
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
        shift = m.either(valid, m.both(m.flag(tail, [0] + [1] * flush), idle))
        m.connect(tail, m.select(last_pixel, m.const(1, 0), m.rom(tail, np.array([0, *range(2, flush + 1), 0]), 0, 0)),
                  shift)
        tail_emit = m.flag(tail, [0] + [int(h * w - 1 + k in ends) for k in range(1, flush + 1)])
        emit = m.either(emit, m.both(shift, tail_emit))
    else:
        shift = valid
    line, taps = [pixel], (kh - 1) * dh * w + (kw - 1) * dw + 1
    for i in range(taps):
        line.append([m.latch(s, shift, f'line{i}_{ch}') for ch, s in enumerate(line[-1])])
    valid_out = m.register(0, 1, 0, reset=0, name='valid_out')
    m.connect(valid_out, emit)
    m.valid_out = valid_out
    orow, ocol, _ = _grid_counter(m, oh, ow, emit, 'out')  # the output pixel the next emit shows
    row_ok = [m.latch(m.flag(orow, [int(0 <= o * sh - top + kr * dh < h) for o in range(oh)]), emit, f'row_ok{kr}')
              for kr in range(kh)]
    col_ok = [m.latch(m.flag(ocol, [int(0 <= o * sw - left + kc * dw < w) for o in range(ow)]), emit, f'col_ok{kc}')
              for kc in range(kw)]
    fill = m.const(_fill(stage), stage.in_type.frac)
    cells = []
    for kr in range(kh):
        for kc in range(kw):
            tap = line[1 + (kh - 1 - kr) * dh * w + (kw - 1 - kc) * dw]
            inside = m.both(row_ok[kr], col_ok[kc])
            cells += [m.select(inside, s, fill) for s in tap]
    m.add_output('window', (kh, kw, c), stage.in_type, cells)
    m.check()
    return m, flush


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

def stream_files(d: StreamDesign, top: str, graph: Graph) -> dict[str, str]:
    """{file name: Verilog} of the whole streaming design: one module per file, the top last."""
    files = {}
    for k, stage in enumerate(d.stages):
        h, w, c = stage.in_hwc
        title = (f'Line buffer of layer {stage.name}: {h} x {w} x {c} pixels in, kernel {stage.kernel}, '
                 f'strides {stage.strides}, dilation {stage.dilation},\npadding {stage.pads}; '
                 f'{stage.flush if stage.flush > 0 else 0} flush clocks after the last pixel of an image.')
        files[f'{top}_w{k}.v'] = write_machine(stage.window, Timing(1 + max(stage.flush, 0), 1), f'{top}_w{k}', title)
        files[f'{top}_k{k}.v'] = write_module(stage.netlist, stage.schedule, f'{top}_k{k}')
    last = d.stages[-1]
    n_pix = last.out_hwc[0] * last.out_hwc[1]
    files[f'{top}_collect.v'] = write_machine(
        collect_machine(n_pix, last.out_hwc[2], last.out_type), Timing(1, 1), f'{top}_collect',
        f'Collector: the {n_pix} pixels of the last feature map in arrival order, then valid_out for one clock.')
    files[f'{top}_head.v'] = write_module(d.head, d.head_schedule, f'{top}_head')
    files[f'{top}.v'] = _top_module(d, top, graph)
    return files


def _top_module(d: StreamDesign, top: str, graph: Graph) -> str:
    x = graph[graph.inputs[0]]
    in_t = x.result_type
    c0 = d.stages[0].in_hwc[2]
    outs = [graph[name] for name in graph.outputs]
    (x_port,), y_ports = bus_names([x.name], [o.name for o in outs])
    (flat_port,), head_ports = port_names(d.head)
    lines = [f'// {top}: streaming CNN generated by fpga4ml. One pixel per clock on {x_port} (row-major),',
             f'// outputs once per image, {d.latency} clocks after the last pixel the outputs depend on.',
             f'module {top} (', '  input  wire clk,', '  input  wire rst,', '  input  wire ce,',
             '  input  wire valid_in,', '  output wire valid_out,',
             f'  input  wire [{c0 * element_width(in_t) - 1}:0] {x_port},']
    lines += [f'  output wire [{o.size * element_width(o.result_type) - 1}:0] {y},' for o, y in zip(outs, y_ports)]
    lines[-1] = lines[-1].rstrip(',')
    lines.append(');')
    prev, prev_valid = x_port, 'valid_in'
    for k, stage in enumerate(d.stages):
        c = stage.in_hwc[2]
        kh, kw = stage.kernel
        wid = element_width(stage.in_type)
        out_w = stage.out_hwc[2] * element_width(stage.out_type)
        lines += [f'  wire [{kh * kw * c * wid - 1}:0] win{k};', f'  wire win{k}_valid;',
                  f'  wire [{out_w - 1}:0] pix{k};', f'  wire pix{k}_valid;',
                  f'  {top}_w{k} window{k} (.clk(clk), .rst(rst), .ce(ce), .valid_in({prev_valid}), '
                  f'.x_pixel({prev}), .y_window(win{k}), .valid_out(win{k}_valid));',
                  f'  {top}_k{k} kernel{k} (.clk(clk), .rst(rst), .ce(ce), .valid_in(win{k}_valid), '
                  f'.valid_out(pix{k}_valid), .x_window(win{k}), .y_pixel(pix{k}));']
        prev, prev_valid = f'pix{k}', f'pix{k}_valid'
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
    return {
        'top': top, 'files': list(files), 'latency': d.latency, 'ii': h * w, 'clock_period_ns': clock_period,
        'architecture': 'stream', 'stream': {'pixels': h * w}, 'latency_from_last_pixel': d.uses_every_pixel,
        'inputs': [entry], 'outputs': [port_entry(p, bus) for p, bus in zip(d.head.outputs, port_names(d.head)[1])],
    }

