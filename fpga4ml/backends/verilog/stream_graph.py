"""The stage plan of a streaming CNN: which layers share a line buffer, and how branches meet again in step.

The layers between the image input and the Flatten may form any DAG of Conv, Pool, per-pixel layers
(Activation, Scale, Quantize) and Merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate on channels). `plan` cuts it into a CHAIN of stages, each one line buffer (a window
machine) and one kernel netlist that computes, per output pixel, every layer of the stage:

* levels: a Conv/Pool layer sits one level after its input, any other layer at the level of its
  latest input (as soon as possible; if two window layers of one level then slide on different pixel
  grids, as late as possible is tried). Stage k computes the layers of level k; stage 0 (a 1x1
  window) exists only for per-pixel layers on the image itself;
* a stage's input is a bundle of feature maps (`Value`s): those computed before it that a layer of
  its level or later reads. The line buffer keeps each value's recent pixels (one shift register per
  value, as deep as its deepest read cell) and shows one window per (value, padding value)
  (`WindowGroup`): the union of the receptive fields of the stage's Conv/Pool layers on one output
  grid (one stride for the stage);
* alignment: a layer reading a value from an earlier stage (a residual block's skip, one branch of an
  inception block) reads it at the window's identity cell, the value's pixel at the output pixel's
  position, and a value that a later stage needs is passed on from that cell. So the early stream
  is delayed by exactly the line-buffer shifts that complete the window and by the kernel's pipeline
  registers: corresponding pixels meet by construction, at one pixel per clock, with valid_in
  bubbles and flush clocks alike. The price is that every stage a value crosses must keep the pixel
  grid (stride 1, the same H x W); a GraphError names the layers and shapes otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ... import geometry
from ...fixed import FixedType
from ...ir import Graph, GraphError, Node
from ...semantics.spec import attr
from .netlist import Netlist
from .pipeline import Schedule
from .stateful import Machine

WINDOW_OPS = ('Conv', 'Pool')
PIXEL_OPS = ('Activation', 'Scale', 'Quantize')
BODY_OPS = WINDOW_OPS + PIXEL_OPS + ('Merge',)

Cell = tuple[int, int]


class GridError(GraphError):
    """Layers that cannot be streamed on one pixel grid (a stage would slide on two, or a merge's inputs
    reach it on different grids)."""


@dataclass
class Value:
    """A feature map streamed between stages: the layer computing it (or the input), channels, type."""

    name: str
    channels: int
    type: FixedType | None


@dataclass
class WindowGroup:
    """One window shown by a line buffer: the cells of one input value that some layers read, with one
    padding value (Conv layers read 0 outside the image, max pools the type's minimum: `streaming._fill`)."""

    value: int  # index into Stage.inputs
    in_type: FixedType | None
    #: the Conv/Pool layers reading these cells (empty: only identity-cell reads)
    nodes: list[Node]
    #: (row, column) positions in the stage's union window, row-major
    cells: list[Cell]
    #: the whole union window (shown as a (kh, kw, C) port), else a (cells, C) port
    full: bool = False


@dataclass
class Stage:
    """One line buffer and its kernel: the window geometry, the layers it computes, the streams in and out.

    A chain stage (one window layer on one value, as before merges were streamed) has one input, one
    window group and one output; in_type/out_type are then that value's types (else the first one's) and
    in_hwc[2]/out_hwc[2] count the channels of all values.
    """

    name: str
    in_hwc: tuple[int, int, int]
    out_hwc: tuple[int, int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    in_type: FixedType | None
    out_type: FixedType | None
    #: padding (top, bottom, left, right)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    nodes: list[Node] = field(default_factory=list)
    #: the kernel: a pipelined netlist (schedule set), or with folded Conv layers (rf > 1) a Machine
    #: (streaming.fold_window; schedule None)
    netlist: Netlist | None = None
    schedule: Schedule | None = None
    #: the largest ReuseFactor of the stage's Conv layers (1: none folded)
    rf: int = 1
    #: a folded kernel's clocks beyond R + 1: the pipeline cuts of its slowest folded layer (fold_stages.py)
    cuts: int = 0
    #: the line buffer (window_machine) and the clocks it shifts on by itself after an image's last pixel
    window: Machine | None = None
    flush: int = 0
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    groups: list[WindowGroup] = field(default_factory=list)
    #: per Conv/Pool layer: (its group, the union cells it reads in its own kernel order)
    reads: dict[str, tuple[int, list[Cell]]] = field(default_factory=dict)
    #: the union cell at the output pixel's own position (None: no layer reads one), and per value read
    #: there (a skip, a carried value) the group showing it
    identity: Cell | None = None
    at_identity: dict[str, int] = field(default_factory=dict)

    @property
    def latency(self) -> int:
        """Clocks from a window's valid to the kernel's valid_out: the pipeline's, or R + 1 + cuts of a folded kernel."""
        return self.rf + 1 + self.cuts if self.rf > 1 else self.schedule.latency

    def line_depth(self, value: int) -> int:
        """Registers per channel of input `value`'s shift register: up to the deepest cell read."""
        (kh, kw), (dh, dw), w = self.kernel, self.dilation, self.in_hwc[1]
        return max(1 + (kh - 1 - kr) * dh * w + (kw - 1 - kc) * dw
                   for g in self.groups if g.value == value for kr, kc in g.cells)

    @property
    def line_bits(self) -> int:
        """Register bits of the line buffer's shift registers (all input values)."""
        return sum(self.line_depth(i) * v.channels * v.type.width for i, v in enumerate(self.inputs))

    @property
    def chain(self) -> bool:
        """One value in, one window, one value out: the ports keep their plain names (pixel, window)."""
        return len(self.inputs) == 1 and len(self.groups) == 1 and len(self.outputs) == 1


# ---------------------------------------------------------------- the graph around the Flatten

def split(graph: Graph) -> tuple[Node, list[Node], Node, list[Node]]:
    """(input, layers before the Flatten in graph order, the Flatten, layers after it); GraphError when
    the graph is not an image input, a DAG of streamable layers, one Flatten and a head reading only it."""
    if len(graph.inputs) != 1:
        raise GraphError(f"Architecture 'stream' needs a model with one image input, got {graph.inputs}")
    x = graph[graph.inputs[0]]
    if len(x.shape) not in (2, 3):
        raise GraphError(f"Architecture 'stream' needs an image input (H, W, C) or (W, C), got {x.shape}")
    body: list[Node] = []
    head: list[Node] = []
    flatten: Node | None = None
    for node in graph:
        if node.op == 'Input':
            continue
        after = [i for i in node.inputs if flatten is not None and (i == flatten.name or i in {n.name for n in head})]
        if after:
            before = [i for i in node.inputs if i not in after]
            if before:
                raise GraphError(f"Architecture 'stream': layer {node.name!r} after the Flatten {flatten.name!r} "
                                 f'also reads {before} from before it; only the Flatten continues past it')
            head.append(node)
        elif node.op == 'Reshape' and len(node.shape) == 1:
            if flatten is not None:
                raise GraphError(f"Architecture 'stream' needs exactly one Flatten; found {flatten.name!r} and "
                                 f'{node.name!r}')
            flatten = node
        elif node.op in BODY_OPS:
            body.append(node)
        else:
            raise GraphError(f"Architecture 'stream': after the convolutional part a Flatten (Reshape to 1-D) must "
                             f'follow; found {node.name!r} ({node.op}). Streaming supports '
                             f'{", ".join(BODY_OPS)} before the Flatten')
    if flatten is None:
        raise GraphError("Architecture 'stream': after the convolutional part a Flatten (Reshape to 1-D) must "
                         f'follow; found none. Streaming supports {", ".join(BODY_OPS)} before the Flatten')
    ends = {flatten.name} | {n.name for n in head}
    if not set(graph.outputs) <= ends:
        raise GraphError(f"Architecture 'stream': the outputs {graph.outputs} must follow the Flatten {flatten.name!r}")
    _check_body(graph, x, body, flatten)
    return x, body, flatten, head


def _check_body(graph: Graph, x: Node, body: list[Node], flatten: Node) -> None:
    """Every layer before the Flatten leads to it, at least one is a Conv/Pool, per-pixel constants and
    merges fit a pixel stream."""
    live = {flatten.inputs[0]}
    for node in reversed(body):
        if node.name in live:
            live.update(node.inputs)
    dead = [n.name for n in body if n.name not in live]
    if dead:
        raise GraphError(f"Architecture 'stream': layers {dead} do not lead to the Flatten {flatten.name!r}")
    if not any(n.op in WINDOW_OPS for n in body):
        raise GraphError("Architecture 'stream' needs at least one Conv or Pool layer after the input")
    for node in body:
        if node.op in PIXEL_OPS:
            _per_pixel(node)
        elif node.op == 'Merge':
            _check_merge(graph, node)


def _per_pixel(node: Node) -> None:
    """Per-pixel ops must use the same constants at every pixel (per-channel at most)."""
    channels = node.shape[-1]
    for key, values in node.qweights.items():
        full = np.broadcast_to(np.asarray(values), node.shape).reshape(-1, channels)
        if not np.all(full == full[:1]):
            raise GraphError(f"layer {node.name!r}: Architecture 'stream' needs per-channel {key!r} values "
                             '(the same at every pixel)')


def _check_merge(graph: Graph, node: Node) -> None:
    """A merge of feature maps of one H x W: element-wise on equal shapes, or a concatenation of channels."""
    shapes = {i: graph[i].shape for i in node.inputs}
    if attr(node, 'mode') == 'concat':
        rank, axis = len(node.shape), int(attr(node, 'axis'))
        if axis not in (-1, rank - 1):
            raise GraphError(f"layer {node.name!r}: Architecture 'stream' concatenates channels only (the last "
                             f'axis); this Concatenate joins axis {axis} of {shapes}')
        if len({s[:-1] for s in shapes.values()}) != 1:
            raise GraphError(f"layer {node.name!r}: Architecture 'stream' concatenates feature maps of one size; "
                             f'got {shapes}')
    elif len(set(shapes.values())) != 1:
        raise GraphError(f"layer {node.name!r}: Architecture 'stream' merges feature maps of equal shapes; got "
                         f'{shapes}')


# ---------------------------------------------------------------- levels

def asap_levels(x: Node, body: list[Node]) -> dict[str, int]:
    """Each layer's level as soon as possible: a Conv/Pool one after its input, others at their latest input's."""
    level = {x.name: 0}
    for node in body:
        ins = [level[i] for i in node.inputs]
        level[node.name] = ins[0] + 1 if node.op in WINDOW_OPS else max(ins)
    return level


def alap_levels(graph: Graph, x: Node, body: list[Node], flatten: Node, asap: dict[str, int]) -> dict[str, int]:
    """Each layer's level as late as possible within the as-soon-as-possible depth."""
    last, names = asap[flatten.inputs[0]], {n.name for n in body}
    level: dict[str, int] = {}
    for node in reversed(body):
        bounds = [level[u.name] - (u.op in WINDOW_OPS) for u in graph.users(node.name) if u.name in names]
        level[node.name] = min(bounds + ([last] if node.name == flatten.inputs[0] else []))
    level[x.name] = 0
    return level


# ---------------------------------------------------------------- stages

def plan(graph: Graph) -> tuple[list[Stage], Node, list[Node]]:
    """Split a CNN into line-buffered stages, the Flatten and the head (GraphError when it does not fit)."""
    x, body, flatten, head = split(graph)
    asap = asap_levels(x, body)
    try:
        stages = _stages(graph, x, body, flatten, asap)
    except GridError as first:
        try:
            stages = _stages(graph, x, body, flatten, alap_levels(graph, x, body, flatten, asap))
        except GridError as second:
            late = str(second).replace("Architecture 'stream': ", '')
            raise GridError(str(first) if late in str(first) else f'{first}. Placed as late as possible: {late}') from None
    return stages, flatten, head


def _stages(graph: Graph, x: Node, body: list[Node], flatten: Node, level: dict[str, int]) -> list[Stage]:
    """The chain of stages for one level assignment."""
    last = level[flatten.inputs[0]]
    read_until: dict[str, int] = {flatten.inputs[0]: last + 1}  # a value's latest reader's level
    for node in body:
        for i in node.inputs:
            read_until[i] = max(read_until.get(i, 0), level[node.name])
    order = [x.name] + [n.name for n in body]
    first = 0 if any(level[n.name] == 0 for n in body) else 1
    stages, bundle, hw = [], [x.name], as_hw(x.shape)
    for k in range(first, last + 1):
        nodes = [n for n in body if level[n.name] == k]
        outs = [v for v in order if level[v] <= k and read_until.get(v, -1) > k]
        stages.append(_stage(graph, k, hw, bundle, nodes, outs, level))
        bundle, hw = outs, stages[-1].out_hwc[:2]
    return stages


def as_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """The (H, W) of a (W, C) or (H, W, C) feature map."""
    return geometry.as_hwc(shape)[:2]


def _window_geometry(node: Node, in_shape: tuple[int, ...]) -> geometry.Window:
    win = geometry.check_conv(node, in_shape) if node.op == 'Conv' else geometry.check_pool(node, in_shape)
    if any(win.pads) and node.op == 'Pool' and attr(node, 'mode') != 'max':
        raise GraphError(f"layer {node.name!r}: Architecture 'stream' pads Conv and max Pool layers; this average "
                         f'Pool pads {win.pads} (its divisor changes at the border). Use valid pooling or the '
                         'unrolled architecture')
    return win


def _stage(graph: Graph, k: int, in_hw: tuple[int, int], bundle: list[str], nodes: list[Node], outs: list[str],
           level: dict[str, int]) -> Stage:
    """Stage k: its union window over the bundle, the window groups, and what it computes and passes on."""
    here = {n.name for n in nodes}
    windows = {n.name: _window_geometry(n, graph[n.inputs[0]].shape) for n in nodes if n.op in WINDOW_OPS}
    strides, out_hw = _grid(k, windows, in_hw)
    direct = [(i, n.name) for n in nodes if n.op not in WINDOW_OPS for i in n.inputs if i not in here]
    carried = [(v, next((u.name for u in graph.users(v) if level.get(u.name, -1) > k), 'the Flatten'))
               for v in outs if v not in here]
    centre = list(dict.fromkeys(v for v, _ in direct + carried))
    if centre and (strides != (1, 1) or out_hw != in_hw):
        v, reader = (direct + carried)[0]
        raise GridError(f"Architecture 'stream': layer {reader!r} reads {v!r} {graph[v].shape} alongside a stream that "
                        f'passed {sorted(windows)} (pixel grid {in_hw[0]}x{in_hw[1]} -> {out_hw[0]}x{out_hw[1]}, strides '
                        f'{strides}). Streams merge only on one pixel grid: every layer between a branch and its merge '
                        'must keep H x W with stride 1 (or use the unrolled architecture)')
    rows = {-w.pads[0] + r * w.dilation[0] for w in windows.values() for r in range(w.kernel[0])}
    cols = {-w.pads[2] + c * w.dilation[1] for w in windows.values() for c in range(w.kernel[1])}
    if centre or not windows:
        rows.add(0), cols.add(0)
    if len(windows) == 1 and not centre:  # one layer's window, exactly as it is
        ((kernel, dilation, pads),) = [(w.kernel, w.dilation, w.pads) for w in windows.values()]
    else:
        (kh, dh, top), (kw, dw, left) = _span(rows), _span(cols)
        kernel, dilation = (kh, kw), (dh, dw)
        pads = (top, (out_hw[0] - 1) * strides[0] + (kh - 1) * dh - (in_hw[0] - 1) - top,
                left, (out_hw[1] - 1) * strides[1] + (kw - 1) * dw - (in_hw[1] - 1) - left)
    inputs, outputs = [_value(graph[v]) for v in bundle], [_value(graph[v]) for v in outs]
    stage = Stage(nodes[0].name if nodes else f'stage{k}', in_hw + (sum(v.channels for v in inputs),),
                  out_hw + (sum(v.channels for v in outputs),), kernel, strides, dilation, inputs[0].type,
                  outputs[0].type, pads, nodes, inputs=inputs, outputs=outputs)
    _group(stage, graph, windows, centre)
    return stage


def _grid(k: int, windows: dict[str, geometry.Window], in_hw: tuple[int, int]):
    """The stage's strides and output (H, W): the same for all its window layers (GridError otherwise)."""
    grids = {(w.strides, w.out_hw) for w in windows.values()}
    if len(grids) > 1:
        each = ', '.join(f'{name!r} -> {w.out_hw[0]}x{w.out_hw[1]} (strides {w.strides})' for name, w in windows.items())
        raise GridError(f"Architecture 'stream': layers {sorted(windows)} at depth {k} (Conv/Pool layers from the input) "
                        f'would share one line buffer on {in_hw[0]}x{in_hw[1]} pixels but slide on different pixel '
                        f'grids: {each}')
    return grids.pop() if grids else ((1, 1), in_hw)


def _span(offsets: set[int]) -> tuple[int, int, int]:
    """(kernel, dilation, padding before) of the smallest window grid holding these offsets."""
    lo, hi = min(offsets), max(offsets)
    step = math.gcd(*(o - lo for o in offsets)) or 1
    return (hi - lo) // step + 1, step, -lo


def _value(node: Node) -> Value:
    return Value(node.name, node.shape[-1], node.result_type)


def _group(stage: Stage, graph: Graph, windows: dict[str, geometry.Window], centre: list[str]) -> None:
    """The window groups of a stage (per input value and padding kind), each layer's cells and the identity cell."""
    (dh, dw), (top, _, left, _) = stage.dilation, stage.pads
    names = [v.name for v in stage.inputs]
    keyed: dict[tuple[str, bool], WindowGroup] = {}
    for name, w in windows.items():
        node = graph[name]
        src = node.inputs[0]
        group = keyed.setdefault((src, node.op == 'Pool'),
                                 WindowGroup(names.index(src), graph[src].result_type, [], []))
        group.nodes.append(node)
        cells = [((-w.pads[0] + r * w.dilation[0] + top) // dh, (-w.pads[2] + c * w.dilation[1] + left) // dw)
                 for r in range(w.kernel[0]) for c in range(w.kernel[1])]
        group.cells = sorted(set(group.cells) | set(cells))
        stage.reads[name] = (-1, cells)
    at_identity: dict[str, WindowGroup] = {}
    if centre:
        stage.identity = (top // dh, left // dw)
        for v in centre:  # the value's first window, or one of its own
            group = next((g for (src, _), g in keyed.items() if src == v), None)
            if group is None:
                group = keyed[(v, False)] = WindowGroup(names.index(v), graph[v].result_type, [], [])
            group.cells = sorted(set(group.cells) | {stage.identity})
            at_identity[v] = group
    stage.groups = sorted(keyed.values(), key=lambda g: g.value)  # stable: per value in order of first reader
    position = {id(g): index for index, g in enumerate(stage.groups)}
    everything = [(r, c) for r in range(stage.kernel[0]) for c in range(stage.kernel[1])]
    for group in stage.groups:
        group.full = group.cells == everything
        for node in group.nodes:
            stage.reads[node.name] = (position[id(group)], stage.reads[node.name][1])
    stage.at_identity = {v: position[id(g)] for v, g in at_identity.items()}

__all__ = ['BODY_OPS', 'GridError', 'PIXEL_OPS', 'Stage', 'Value', 'WINDOW_OPS', 'WindowGroup', 'alap_levels',
           'asap_levels', 'plan', 'split']
