"""Pipelined logic between the stateful parts of a Machine, and the valid pulses that time it.

A layer between stateful ones (folded layers, static recurrent cells) is lowered into a scratch
netlist, staged by pipeline.schedule (the clock period and the model's Pipeline setting), and copied
into the machine with a register wherever a value is read in a later stage than its own (`place`);
its outputs come `depth` clocks after its inputs. `ValidChains` keeps, per valid pulse (valid_in or a
stateful layer's done), the chain of delayed pulses, and lines the inputs of a layer up to the
latest of them. Used by fold.py (folded designs) and rnn_static.py (static recurrent designs).
"""

from __future__ import annotations

from typing import NamedTuple

from ...ir import Graph, GraphError, Node, operands
from ...semantics import lower_node
from ...semantics.spec import output_types
from .netlist import Netlist
from .pipeline import schedule
from .progress import StepClock
from .stateful import Machine, settle_times


def place(m: Machine, cn: Netlist, stage: list[int], placed: dict[int, int], out: tuple, name: str) -> tuple:
    """Copy a netlist into the machine, its inputs fed by `placed` ({input id: machine signal}), with a
    register wherever a signal is read in a later stage than its own; returns the machine signals of
    the outputs `out` (a tuple of signal lists), all as of the last stage."""
    def at(a: int, st: int) -> int:
        """Cell signal a as read in stage st (through st - stage[a] registers)."""
        if cn[a].is_const:
            return m.const(cn[a].lo, cn[a].frac)
        return m.delayed(placed[a], max(st - stage[a], 0), f'{name}_stage')

    for sig in cn.signals:
        if sig.op != 'input' and not sig.is_const:
            placed[sig.id] = m._new(sig.op, tuple(at(a, stage[sig.id]) for a in sig.args), sig.lo, sig.hi, sig.frac,
                                    **sig.p)
    last = max((stage[s] for o in out for s in o), default=0)
    return tuple([at(s, last) for s in o] for o in out)


def staged(m: Machine, ins: list[list[int]], build, pacing: tuple, name: str, arrival=None) -> tuple[tuple, int]:
    """What `build(netlist, input groups)` computes from the machine signals `ins` (groups of signals), built
    in a scratch netlist, staged by pipeline.schedule (pacing: clock period, Pipeline setting) and placed
    into the machine: (the output groups, all as of the last stage; the stages it adds). `build` returns a
    list of signals or a tuple of lists; `arrival(s)`, when given, says when a machine signal settles within
    its clock (ns), so the first stage starts there."""
    cn, placed, start = Netlist(), {}, {}

    def mirror(s: int) -> int:
        sig = m[s]
        if sig.is_const:
            return cn.const(sig.lo, sig.frac)
        a = cn._new('input', (), sig.lo, sig.hi, sig.frac, port=0, element=len(placed))
        placed[a] = s
        if arrival is not None:
            start[a] = arrival(s)
        return a
    out = build(cn, [[mirror(s) for s in group] for group in ins])
    groups = out if isinstance(out, tuple) else (out,)
    stage = schedule(cn, *pacing, start=start).stage
    return place(m, cn, stage, placed, groups, name), max((stage[s] for o in groups for s in o), default=0)


def pipelined_node(m: Machine, node: Node, graph: Graph, ins: list, pacing: tuple, clock: StepClock,
                   arrival=None) -> tuple[object, int]:
    """A layer between stateful ones, pipelined on its own: (its output signals, the stages it adds).

    Its outputs are valid that many clocks after its inputs (a Select is wiring: 0); `arrival(s)`: when
    an input settles within its clock (the previous layer's last stage may end unregistered).
    """
    in_shapes = [node.shape] if node.op == 'Select' else [graph[i].shape for i in node.inputs]
    in_types = operands(node, {i: output_types(graph[i]) for i in node.inputs})
    if node.op == 'Select':
        return lower_node(m, node, in_types, ins, in_shapes, True, clock), 0
    tuples = []

    def build(cn: Netlist, groups: list[list[int]]):
        out = lower_node(cn, node, in_types, groups, in_shapes, True, clock)
        tuples.append(isinstance(out, tuple))
        return out
    with clock.step(f'{node.name} ({node.op}) lowered'):
        got, depth = staged(m, ins, build, pacing, node.name, arrival)
    return (got if tuples[0] else got[0]), depth


class ValidChains:
    """When tensors are valid: k clocks after a pulse (valid_in or a stateful layer's done), as delayed pulses."""

    def __init__(self, m: Machine) -> None:
        self.m, self.cycle = m, {}

    def pulse(self, base: int, k: int) -> int:
        """base delayed by k clocks (a chain of registers, shared)."""
        return self.m.delayed(base, k, 'valid', reset=0)

    def align(self, name: str, ins: list, starts: list[tuple[int, int]]) -> tuple[list, tuple[int, int]]:
        """The inputs of a layer (or the model outputs) delayed to the latest of their (base pulse, delay).

        Every base pulse is valid_in delayed by a fixed number of clocks (`cycle`), so inputs out of
        different stateful layers (parallel folded branches) line up too: each is delayed by the clocks
        between its own valid time and the latest one, whose (base, delay) the layer takes.
        """
        when = [self.cycle[b] + k for b, k in starts]
        late = max(when)
        out = [[self.m.delayed(s, late - t, 'align') for s in group] for group, t in zip(ins, when)]
        return out, starts[when.index(late)]


class Walk(NamedTuple):
    """A graph placed into a machine by `walk`: its latency (clocks from valid_in to valid_out) and the
    pipeline registers per layer (inside stateful layers and in the layers between them)."""

    latency: int
    cuts: dict


def walk(m: Machine, graph: Graph, pacing: tuple, clock: StepClock, stateful) -> Walk:
    """Every layer of a graph into the machine, in order, its inputs lined up behind their valid pulses; the
    outputs as ports, valid_out set. `stateful(node, ins, go)` builds a stateful layer (`go()` gives its
    start pulse) and returns (outputs, done, clocks from the start pulse to done, its pipeline cuts), or
    None for any other layer, which is lowered and pipelined by `pipelined_node` (pacing: clock period,
    Pipeline setting)."""
    valid = ValidChains(m)
    valid.cycle[m.valid_in()] = 0
    times: list[float] = []  # settle times of the machine's signals so far (stateful.settle_times, extended)
    sigs: dict = {}
    when: dict[str, tuple[int, int]] = {}  # tensor -> (the valid pulse its values belong to, clocks after it)
    cuts: dict[str, int] = {}
    for node in graph:
        if node.op == 'Input':
            sigs[node.name], when[node.name] = m.add_input(node.name, node.shape, node.result_type), (m.valid_in(), 0)
            continue
        ins = operands(node, sigs)
        if node.op != 'Select':
            ins, (base, k) = valid.align(f'layer {node.name!r}', ins, [when[i] for i in node.inputs])
        else:
            base, k = when[node.inputs[0]]
        built = stateful(node, ins, lambda: valid.pulse(base, k))
        if built is not None:
            sigs[node.name], done, clocks, cut = built
            valid.cycle[done] = valid.cycle[base] + k + clocks
            when[node.name] = (done, 0)
        else:
            settle_times(m, times)
            sigs[node.name], cut = pipelined_node(m, node, graph, ins, pacing, clock, times.__getitem__)
            when[node.name] = (base, k + cut)
        if cut:
            cuts[node.name] = cut
    outs, (base, k) = valid.align(f'outputs {list(graph.outputs)}', [sigs[n] for n in graph.outputs],
                                  [when[n] for n in graph.outputs])
    for name, group in zip(graph.outputs, outs):
        node = graph[name]
        m.add_output(name, node.shape, node.result_type, group)
    m.valid_out = valid.pulse(base, k)
    m.check()
    return Walk(valid.cycle[base] + k, cuts)


__all__ = ['ValidChains', 'Walk', 'pipelined_node', 'place', 'staged', 'walk']
