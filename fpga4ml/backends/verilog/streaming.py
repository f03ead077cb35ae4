"""Streaming CNNs for the Verilog back end: pixels in one per clock, line buffers, one shared kernel per layer.

For images too large to unroll, ``hls_config['Model']['Architecture'] = 'stream'`` builds:

    pixel in -> [window -> kernel] per Conv/Pool layer -> collect -> head -> outputs

* a *window* module keeps the last (kernel span - 1) image rows plus a few pixels in a shift
  register (the line buffer) and presents the whole receptive field of the current output pixel,
  with a valid flag when that output pixel exists (valid padding, any stride and dilation);
* a *kernel* is the netlist of one output pixel: all filters of the Conv (or the Pool of all
  channels) as adder graphs, followed by the per-pixel ops of the layer (activation, scale,
  quantize), lowered by the same functions as the unrolled design and pipelined (II = 1 pixel);
* *collect* gathers the last feature map pixel by pixel (the Flatten), and the *head* is the
  unrolled netlist of everything after it (Dense layers, softmax), fed once per image.

Each kernel and the head are written by the ordinary emitter as their own modules; the window
and collect modules are fixed, parameterized Verilog (TEMPLATES). The emulator defines the
results; the tests compare the Verilator simulation with it image by image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ... import geometry
from ...fixed import FixedType
from ...intervals import Interval
from ...ir import Graph, GraphError, Node
from .emit import bus_names, element_width, port_entry, port_names, write_module
from ...semantics import lower_node
from .lower import lower_graph
from .netlist import Netlist
from .pipeline import Schedule, schedule

WINDOW_OPS = ('Conv', 'Pool')
PIXEL_OPS = ('Activation', 'Scale', 'Quantize')
#: counters of the window and collect modules
COUNTER_BITS = 16


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
    nodes: list[Node] = field(default_factory=list)
    netlist: Netlist | None = None
    schedule: Schedule | None = None


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
    if any(win.pads):
        raise GraphError(f"layer {node.name!r}: Architecture 'stream' supports 'valid' (unpadded) {node.op} layers; "
                         f'this one pads {win.pads}. Use the unrolled architecture or pad the model input')
    return win


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
            if node.op in WINDOW_OPS:
                win = _window_geometry(node, graph[node.inputs[0]].shape)
                out_hwc = geometry.as_hwc(node.shape)
                kernel, strides, dilation = win.kernel, win.strides, win.dilation
            else:  # per-pixel ops before any window: a 1x1 window
                out_hwc, kernel, strides, dilation = hwc, (1, 1), (1, 1), (1, 1)
            stages.append(Stage(node.name, hwc, out_hwc, kernel, strides, dilation, prev_type, node.result_type))
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
        stage.netlist = _kernel_netlist(stage, graph, cse)
        stage.schedule = schedule(stage.netlist, clock_period, pipeline)
    head_nl = lower_graph(_head_graph(flatten, head), intervals, cse)
    head_sched = schedule(head_nl, clock_period, pipeline)
    # in the harness's sense (outputs shown after the edge `latency - 1` clocks after the one that
    # accepted the last used pixel): one register per window module, each kernel's latency, one for
    # the collector, then the head
    latency = len(stages) + sum(s.schedule.latency for s in stages) + 1 + head_sched.latency
    every_pixel = all((h - (kh - 1) * dh - 1) % sh == 0 and (w - (kw - 1) * dw - 1) % sw == 0
                      for (h, w, _), (kh, kw), (dh, dw), (sh, sw) in
                      ((s.in_hwc, s.kernel, s.dilation, s.strides) for s in stages))
    return StreamDesign(stages, flatten, head_nl, head_sched, latency, every_pixel)


# ---------------------------------------------------------------- Verilog

WINDOW_TEMPLATE = '''// fpga4ml_window: line buffer + receptive field of a streamed image (valid padding).
// Pixels (C elements of WIDTH bits) arrive in row-major order with valid_in; after the pixel at
// (row, col) is accepted, `window` holds the KH x KW cells (stride DH, DW apart) that end there,
// cell (kr, kc, ch) at bits [((kr*KW + kc)*C + ch)*WIDTH +: WIDTH], and valid_out says whether
// that window is an output position (inside the image, on the SH x SW stride grid).
module fpga4ml_window #(
  parameter H = 1, parameter W = 1, parameter C = 1, parameter WIDTH = 8,
  parameter KH = 1, parameter KW = 1, parameter DH = 1, parameter DW = 1, parameter SH = 1, parameter SW = 1
) (
  input  wire clk,
  input  wire rst,
  input  wire ce,
  input  wire valid_in,
  input  wire [C*WIDTH-1:0] pixel,
  output wire [KH*KW*C*WIDTH-1:0] window,
  output reg  valid_out
);
  localparam SPAN_H = (KH - 1) * DH + 1;
  localparam SPAN_W = (KW - 1) * DW + 1;
  localparam DEPTH = (SPAN_H - 1) * W + SPAN_W;
  localparam [CB-1:0] LAST_ROW = H - 1, LAST_COL = W - 1, FIRST_ROW = SPAN_H - 1, FIRST_COL = SPAN_W - 1;
  localparam [CB-1:0] ROW_STEP = SH - 1, COL_STEP = SW - 1;
  reg [C*WIDTH-1:0] line [0:DEPTH-1];
  reg [CB-1:0] row, col, row_phase, col_phase;
  // row >= FIRST_ROW and col >= FIRST_COL, written so that FIRST_* = 0 is not a constant comparison
  wire row_ready = ({1'b0, row} + {{CB{1'b0}}, 1'b1}) > {1'b0, FIRST_ROW};
  wire col_ready = ({1'b0, col} + {{CB{1'b0}}, 1'b1}) > {1'b0, FIRST_COL};
  integer i;
  always @(posedge clk) begin
    if (ce && valid_in) begin
      line[0] <= pixel;
      for (i = 1; i < DEPTH; i = i + 1) line[i] <= line[i - 1];
    end
  end
  always @(posedge clk) begin
    if (rst) begin
      row <= {CB{1'b0}}; col <= {CB{1'b0}}; row_phase <= {CB{1'b0}}; col_phase <= {CB{1'b0}};
      valid_out <= 1'b0;
    end else if (ce) begin
      valid_out <= valid_in && row_ready && col_ready && row_phase == {CB{1'b0}} &&
                   col_phase == {CB{1'b0}};
      if (valid_in) begin
        if (col == LAST_COL) begin
          col <= {CB{1'b0}};
          col_phase <= {CB{1'b0}};
          row <= (row == LAST_ROW) ? {CB{1'b0}} : row + 1'b1;
          if (row == LAST_ROW || !row_ready) row_phase <= {CB{1'b0}};
          else row_phase <= (row_phase == ROW_STEP) ? {CB{1'b0}} : row_phase + 1'b1;
        end else begin
          col <= col + 1'b1;
          if (col_ready) col_phase <= (col_phase == COL_STEP) ? {CB{1'b0}} : col_phase + 1'b1;
        end
      end
    end
  end
  genvar kr, kc;
  generate
    for (kr = 0; kr < KH; kr = kr + 1) begin : rows
      for (kc = 0; kc < KW; kc = kc + 1) begin : cols
        assign window[(kr * KW + kc) * C * WIDTH +: C * WIDTH] =
          line[(SPAN_H - 1 - kr * DH) * W + (SPAN_W - 1 - kc * DW)];
      end
    end
  endgenerate
endmodule
'''

COLLECT_TEMPLATE = '''// fpga4ml_collect: gathers N pixels (C elements of WIDTH bits each) of a feature map, in arrival
// order, into one bus (pixel p at bits [p*C*WIDTH +: C*WIDTH]); `full` is high for one clock after
// the last pixel of a map was stored.
module fpga4ml_collect #(parameter N = 1, parameter C = 1, parameter WIDTH = 8) (
  input  wire clk,
  input  wire rst,
  input  wire ce,
  input  wire valid_in,
  input  wire [C*WIDTH-1:0] pixel,
  output wire [N*C*WIDTH-1:0] data,
  output reg  full
);
  localparam [CB-1:0] LAST = N - 1;
  reg [CB-1:0] index;
  always @(posedge clk) begin
    if (rst) begin
      index <= {CB{1'b0}};
      full <= 1'b0;
    end else if (ce) begin
      full <= valid_in && index == LAST;
      if (valid_in) index <= (index == LAST) ? {CB{1'b0}} : index + 1'b1;
    end
  end
  genvar p;
  generate
    for (p = 0; p < N; p = p + 1) begin : pixels
      localparam [CB-1:0] P = p;
      reg [C*WIDTH-1:0] store;
      always @(posedge clk) begin
        if (ce && valid_in && index == P) store <= pixel;
      end
      assign data[p * C * WIDTH +: C * WIDTH] = store;
    end
  endgenerate
endmodule
'''


def _template(text: str) -> str:
    return text.replace('[CB-1:0]', f'[{COUNTER_BITS - 1}:0]').replace('{CB{', f'{{{COUNTER_BITS}{{')


def stream_files(d: StreamDesign, top: str, graph: Graph) -> dict[str, str]:
    """{file name: Verilog} of the whole streaming design: one module per file, the top last."""
    files = {f'{top}_k{k}.v': write_module(stage.netlist, stage.schedule, f'{top}_k{k}')
             for k, stage in enumerate(d.stages)}
    files[f'{top}_head.v'] = write_module(d.head, d.head_schedule, f'{top}_head')
    files['fpga4ml_window.v'] = _template(WINDOW_TEMPLATE)
    files['fpga4ml_collect.v'] = _template(COLLECT_TEMPLATE)
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
        h, w, c = stage.in_hwc
        kh, kw = stage.kernel
        wid = element_width(stage.in_type)
        out_w = stage.out_hwc[2] * element_width(stage.out_type)
        lines += [f'  wire [{kh * kw * c * wid - 1}:0] win{k};', f'  wire win{k}_valid;',
                  f'  wire [{out_w - 1}:0] pix{k};', f'  wire pix{k}_valid;',
                  f'  fpga4ml_window #(.H({h}), .W({w}), .C({c}), .WIDTH({wid}), .KH({kh}), .KW({kw}), '
                  f'.DH({stage.dilation[0]}), .DW({stage.dilation[1]}), .SH({stage.strides[0]}), '
                  f'.SW({stage.strides[1]})) window{k} (',
                  f'    .clk(clk), .rst(rst), .ce(ce), .valid_in({prev_valid}), .pixel({prev}), '
                  f'.window(win{k}), .valid_out(win{k}_valid));',
                  f'  {top}_k{k} kernel{k} (.clk(clk), .rst(rst), .ce(ce), .valid_in(win{k}_valid), '
                  f'.valid_out(pix{k}_valid), .x_window(win{k}), .y_pixel(pix{k}));']
        prev, prev_valid = f'pix{k}', f'pix{k}_valid'
    last = d.stages[-1]
    n_pix = last.out_hwc[0] * last.out_hwc[1]
    c_last, w_last = last.out_hwc[2], element_width(last.out_type)
    lines += [f'  wire [{n_pix * c_last * w_last - 1}:0] features;', '  wire features_valid;',
              f'  fpga4ml_collect #(.N({n_pix}), .C({c_last}), .WIDTH({w_last})) collect (',
              f'    .clk(clk), .rst(rst), .ce(ce), .valid_in({prev_valid}), .pixel({prev}), .data(features), '
              '.full(features_valid));',
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

