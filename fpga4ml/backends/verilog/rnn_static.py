"""Static recurrent layers on the Verilog back end: one cell over a Machine, its state fed back in registers.

A SimpleRNN, LSTM or GRU whose configuration says `Static: True` is built as one cell reused for
every time step (hls4ml's static mode), instead of a cell per step (the default of this back end,
lower.py's unrolled scan). The cell is the layer's own recipe run by the netlist interpreter on a
sequence of length 1 whose initial state is the state register (`cell`): the same primitives,
casts and tables as the unrolled lowering and the emulator, so there is no second description of
the cell. It is built as a netlist of its own, pipelined by pipeline.py like an unrolled design
(the model's `clock_period` and `Pipeline` setting: P stages), and copied into the machine with a
register at every stage crossing (`place`). Around it (`static_rnn`):

* the input sequence (and the initial-state inputs h0/c0, cast into their state types) is latched
  at the edge where the layer's start pulse `go` is high (valid_in for a layer fed by the model
  inputs, the previous stateful layer's `done` otherwise);
* a counter runs T x P clocks, P per step; step k reads input row order[k] through a
  counter-indexed multiplexer (order[k] = T-1-k for go_backwards);
* the cell reads h (and c) from the initial states in step 0 and from the state registers after
  it; the registers take the cell's new state in the last clock of every step (the recurrence
  closes over the whole pipeline, so the cell's II is P clocks);
* a sequence output (return_sequences) is collected in T x n registers, written at the end of the
  step whose output belongs there (output_order 'steps' or 'time'); the last h and the final
  states are the state registers themselves;
* `done` rises for one clock T x P + 1 clocks after `go`, when every output is valid.

A layer accepts a new sequence every T x P clocks (II = T x the cell's II) and its latency is
T x P + 1 (`Pipeline: 'none'`: P = 1, a combinational cell). Layers of one model run one after
another; Dense layers with ReuseFactor > 1 fold as in fold.py, all other layers are combinational
between them. The design's II is the largest layer II, its latency the sum along its chain.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...config import ConfigWarning
from ...ir import Graph, GraphError, Node
from ...naming import comment_line, comment_text
from ...semantics.netlist_interp import NetlistLowering
from ...semantics.recipes_rnn import GATES
from ...semantics.spec import attr, spec_of
from .fold import FoldedDesign, fold_dense, folded_layers, folded_manifest
from .fold_stages import stage_budget
from .machine_stages import place, walk
from .netlist import Netlist, Port
from .pipeline import schedule
from .progress import StepClock
from .stateful import Machine, Timing, _MachineWriter

#: the state type variables of each recurrent op (h, and the LSTM's c), in the recipe's order
STATE_VARIABLES = {'SimpleRNN': ('result',), 'LSTM': ('result', 'state'), 'GRU': ('result',)}


@dataclass
class StaticRnnDesign(FoldedDesign):
    """A model with static recurrent layers: the machine, its timing and {layer: (steps, clocks per step)}."""

    recurrent: dict[str, tuple[int, int]] = field(default_factory=dict)


def static_layers(graph: Graph) -> dict[str, int]:
    """{name: sequence length} of the recurrent layers whose configuration asks for `Static: True`."""
    out = {}
    for node in graph:
        static = node.config.get('Static', False)
        if not isinstance(static, (bool, np.bool_)):
            raise GraphError(f'layer {node.name!r}: Static must be True or False, got {static!r}')
        if node.op in GATES and static:
            out[node.name] = int(graph[node.inputs[0]].shape[0])
    return out


def _warn_unfolded(graph: Graph, recurrent: dict[str, int]) -> None:
    """ReuseFactor / RecurrentReuseFactor > 1 on a static layer: its Verilog cell is not folded (say so)."""
    keys = ('ReuseFactor', 'RecurrentReuseFactor')
    folded = [f'{name!r} ({key}={graph[name].config[key]})' for name in recurrent for key in keys
              if graph[name].config.get(key, 1) != 1]
    if folded:
        warnings.warn(f'the Verilog static recurrent cell is not folded (every multiplier of the cell is built once; '
                      f'II = steps x the cell\'s pipeline stages); these settings are ignored: {", ".join(folded)}',
                      ConfigWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------- timers
class _Timers:
    """One step counter and done pulse per (start pulse, length): layers started together share them."""

    def __init__(self, m: Machine) -> None:
        self.m, self.made = m, {}

    def get(self, go: int, clocks: int, name: str) -> tuple[int, int, int]:
        """(count, busy, done) of a counter over `clocks` clocks started by `go` (one clock: no count)."""
        key = (go, clocks)
        if key not in self.made:
            m = self.m
            if clocks == 1:
                count, busy = m.const(0, 0), m.register(0, 1, 0, reset=0, name=f'{name}_busy')
                m.connect(busy, go)
                last = busy
            else:
                count, busy, last = m.counter(clocks, go, name)
            done = m.register(0, 1, 0, reset=0, name=f'{name}_done')
            m.connect(done, last)
            self.made[key] = (count, busy, done)
        return self.made[key]


def _at_steps(m: Machine, count: int, bits: list[int]) -> int:
    """A 0/1 signal that is bits[k] when the count is k (a constant when every count agrees)."""
    return m.const(bits[0], 0) if len(set(bits)) == 1 else m.flag(count, bits)


def _at_frac(m: Machine, s: int, frac: int) -> int:
    """Signal s at the finer LSB `frac` (a constant stays a constant)."""
    sig = m[s]
    return m.const(sig.lo << (frac - sig.frac), frac) if sig.is_const else m.align(s, frac)


def _latched(m: Machine, sigs: list[int], go: int, name: str) -> list[int]:
    """The signals stored at the edge where `go` is high (constants stay constants)."""
    return [m.latch(s, go, f'{name}{k}') for k, s in enumerate(sigs)]


# ---------------------------------------------------------------------------------------- one layer
def static_rnn(m: Machine, node: Node, graph: Graph, ins: list[list[int]], go: int, timers: _Timers,
               prepared: tuple, per_step: int) -> tuple[tuple, int]:
    """One static recurrent layer on the machine: (its outputs as the recipe's tuple, its done pulse).

    prepared: its `pipelined_cell`; per_step: clocks per step (at least the cell's stages).
    """
    steps, n_in = graph[node.inputs[0]].shape
    n = int(attr(node, 'units'))
    variables = STATE_VARIABLES[node.op]
    if len(ins) not in (1, 1 + len(variables)):
        raise GraphError(f'layer {node.name!r}: {node.op} takes the sequence and optionally {len(variables)} '
                         f'initial state input(s), got {len(ins)} inputs')
    cn, out, stage = prepared
    frac = graph[node.inputs[0]].result_type.frac
    x = np.asarray(_latched(m, ins[0], go, f'{node.name}_x'), dtype=object).reshape(steps, n_in)
    x = np.frompyfunc(lambda s: _at_frac(m, s, frac), 1, 1)(x)
    types = [node.types[var] for var in variables]
    count, busy, done = timers.get(go, steps * per_step, node.name)
    cycles = [divmod(c, per_step) for c in range(steps * per_step)]  # (step, clock within the step)
    step = count if per_step == 1 else m.rom(count, np.asarray([k for k, _ in cycles]), 0, 0)
    first = _at_steps(m, count, [int(k == 0) for k, _ in cycles])
    order = list(range(steps - 1, -1, -1)) if attr(node, 'go_backwards') else list(range(steps))
    x_t = [m.mux(step, [x[order[k], i] for k in range(steps)]) for i in range(n_in)]
    regs, state_in = [], []
    for v, t in enumerate(types):
        init = ([m.cast(s, t) for s in _latched(m, ins[1 + v], go, f'{node.name}_{variables[v]}0_')]
                if len(ins) > 1 else [m.const(0, t.frac)] * n)
        reg = [m.register(t.min_mantissa, t.max_mantissa, t.frac, None, f'{node.name}_{variables[v]}{j}')
               for j in range(n)]
        state_in.append([m.select(first, h0, r) for h0, r in zip(init, reg)])
        regs.append(reg)
    sources = [x_t, *state_in]
    out = place(m, cn, stage, {a: s for port, group in zip(cn.inputs, sources) for a, s in zip(port.signals, group)},
                out, node.name)
    stored = m.both(busy, _at_steps(m, count, [int(c == per_step - 1) for _, c in cycles]))
    for reg, new in zip(regs, out[1:]):
        for r, s in zip(reg, new):
            m.connect(r, s, stored)
    first_out = regs[0]
    if attr(node, 'return_sequences'):
        first_out = _collect(m, node, out[0], count, busy, order, cycles)
    return (first_out, *regs), done


def cell(nl, node: Node, in_types: list, x_t: list[int], state: list[list[int]]) -> tuple:
    """One time step: the layer's recipe on a length-1 sequence whose initial state is `state`.

    Returns (the step's output y (n,), new h (n,)[, new c (n,)]) as lists of signals.
    """
    run = NetlistLowering(nl, node, in_types)
    obj = [np.asarray(list(s) + [None], dtype=object)[:-1] for s in [x_t] + state]
    out = spec_of(node).recipe(node, run, obj[0].reshape(1, -1), *obj[1:])
    return tuple(list(np.asarray(o, dtype=object).ravel()) for o in out)


def pipelined_cell(node: Node, in_type, clock_period: float, pipeline) -> tuple[Netlist, tuple, list[int]]:
    """The cell as a netlist of its own, its outputs, and the pipeline stage of every signal.

    Its inputs span their types (x_t the layer's input type, h and c their state types);
    pipeline.py places the stages by its delay model and the clock period.
    """
    cn = Netlist()
    n_in, n = int(np.shape(node.weights['kernel'])[0]), int(attr(node, 'units'))
    types = [node.types[var] for var in STATE_VARIABLES[node.op]]
    xs = cn.add_input('x_t', (n_in,), in_type)
    states = [cn.add_input(var, (n,), t) for var, t in zip(STATE_VARIABLES[node.op], types)]
    out = cell(cn, node, [in_type], xs, states)
    cn.outputs = [Port(f'out{k}', (len(o),), types[max(0, k - 1)], list(o))
                  for k, o in enumerate(out)]
    return cn, out, schedule(cn, clock_period, pipeline).stage


def _collect(m: Machine, node: Node, y: list[int], count: int, busy: int, order: list[int],
             cycles: list[tuple[int, int]]) -> list[int]:
    """The output sequence in T x n registers: position p takes y at the end of the step whose output goes there."""
    steps, per_step = len(order), cycles[-1][1] + 1
    seq = []
    for pos in range(steps):
        k = order.index(pos) if attr(node, 'output_order') == 'time' else pos  # 'steps': in the order they ran
        en = m.both(busy, _at_steps(m, count, [int(c == (k, per_step - 1)) for c in cycles]))
        seq += [m.latch(s, en, f'{node.name}_y{pos}_{j}') for j, s in enumerate(y)]
    return seq


# ---------------------------------------------------------------------------------------- the model
def static_graph(graph: Graph, clock: StepClock | None = None, clock_period: float = 5.0,
                 pipeline: str | int = 'auto') -> StaticRnnDesign:
    """The Machine of a typed graph with static recurrent layers (and possibly folded Dense layers).

    clock_period and pipeline (the model's Pipeline setting) place the pipeline stages of each cell.
    """
    clock = clock or StepClock(None)
    recurrent, rfs = static_layers(graph), folded_layers(graph)
    _warn_unfolded(graph, recurrent)
    cells = {}
    for name in recurrent:
        with clock.step(f'{name} ({graph[name].op}) cell lowered and pipelined'):
            cells[name] = pipelined_cell(graph[name], graph[graph[name].inputs[0]].result_type, clock_period, pipeline)
    # every static layer takes as many clocks per step as the deepest cell: side-by-side layers stay in step
    per_step = 1 + max((stage[s] for _, out, stage in cells.values() for o in out for s in o), default=0)
    m = Machine()
    timers = _Timers(m)
    budget = stage_budget(clock_period, pipeline)

    def stateful(node: Node, ins: list, go):
        if node.name in recurrent:
            y, done = static_rnn(m, node, graph, ins, go(), timers, cells[node.name], per_step)
            return y, done, recurrent[node.name] * per_step + 1, 0
        if node.name in rfs:
            with clock.step(f'{node.name} ({node.op}) folded'):
                rows = fold_dense(m, node, graph, ins, go(), rfs[node.name], budget)
            return rows.outputs, rows.done, rfs[node.name] + 1 + rows.cuts, rows.cuts
        return None

    placed = walk(m, graph, (clock_period, pipeline), clock, stateful)
    layers = {name: (steps, per_step) for name, steps in recurrent.items()}
    ii = max([steps * per for steps, per in layers.values()] + list(rfs.values()))
    return StaticRnnDesign(m, Timing(placed.latency, ii, dict(rfs), placed.cuts), recurrent=layers)


# ---------------------------------------------------------------------------------------- files
class _StaticWriter(_MachineWriter):
    """The machine writer with a header naming the static recurrent layers."""

    def __init__(self, d: StaticRnnDesign, top: str) -> None:
        super().__init__(d.machine, d.timing, top)
        self.recurrent = d.recurrent

    def _header(self) -> list[str]:
        lines = super()._header()
        t = self.timing
        layers = [f'{comment_text(k)} static, {steps} steps x {per} clocks' for k, (steps, per) in self.recurrent.items()]
        layers += [f'{comment_text(k)} R={v}' for k, v in t.stages.items()]
        lines[0] = comment_line(f'// {self.top}: generated by fpga4ml. Latency {t.latency} clocks, II {t.ii} ('
                                + ', '.join(layers) + ').')
        return lines


def static_manifest(model, d: StaticRnnDesign, top: str) -> dict:
    """manifest.json of a static recurrent design: the folded designs' keys and the static layers."""
    info = folded_manifest(model, d, top)
    info['architecture'] = 'static'
    info['static'] = {name: {'steps': steps, 'cell_latency': per, 'cell_ii': per, 'ii': steps * per,
                             'latency': steps * per + 1} for name, (steps, per) in d.recurrent.items()}
    return info


def static_files(model, d: StaticRnnDesign, top: str) -> tuple[dict[str, str], dict]:
    """({file name: Verilog text}, manifest) of a static recurrent design."""
    m = d.machine
    m.check()
    return {f'{top}.v': _StaticWriter(d, top).write()}, static_manifest(model, d, top)


__all__ = ['STATE_VARIABLES', 'StaticRnnDesign', 'cell', 'static_files', 'static_graph', 'static_layers',
           'static_manifest', 'static_rnn']
