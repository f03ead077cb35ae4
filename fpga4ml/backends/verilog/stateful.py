"""State over the netlist: registers, counters, ROMs and multiplexers indexed by a counter, run clock by clock.

A `Machine` is a `Netlist` with two more ops (args are signal ids; the counter-indexed multiplexers are
netlist.py's `mux`):

=========  ========================================================================
reg        a register: its value in a cycle is what it stored at the last enabled clock edge.
           args (d,) or (d, en) are connected after creation (`connect`), so a register may be
           fed from logic that reads it (an accumulator, a counter). p.reset: the value a
           synchronous reset stores (None: a data register that no reset touches)
valid_in   the design's valid_in control input (0 or 1)
=========  ========================================================================

Every other op is combinational, exactly as in netlist.py; the ROM op addressed by a counter is the
weight memory of folded layers. The clock convention is the unrolled designs': on a rising edge
with rst = 1 every register with a reset value takes it; otherwise, with ce = 1 and its enable
(default 1) set, a register takes its d input; ce = 0 freezes every register.

The machine's own cycle-level interpreter (`Simulator`) runs it clock by clock, vectorized over
independent instances (a batch axis), and is what `emulate_cycles` and the tests compare with the
emulator and with Verilator. `write_machine` emits it as one Verilog-2001 module through emit.py's
signal printer (combinational logic as wires, each register in its own always block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...naming import comment_line, comment_text
from .emit import _Writer, element_width
from .netlist import _EVAL, Netlist, NetlistError, Signal, bits_for
from .pipeline import LUT_NS, STAGE_OVERHEAD_NS, Schedule, delay_ns

STATE_OPS = ('reg', 'valid_in')


class Machine(Netlist):
    """A netlist with registers (enable, reset, feedback), counter-indexed multiplexers and valid_in."""

    def __init__(self) -> None:
        super().__init__()
        self.registers: list[int] = []
        self.valid_out: int | None = None
        self._valid_in: int | None = None

    # ------------------------------------------------------------------ construction
    def valid_in(self) -> int:
        """The valid_in control input as a 0/1 signal (one per machine)."""
        if self._valid_in is None:
            self._valid_in = self._new('valid_in', (), 0, 1, 0)
        return self._valid_in

    def register(self, lo: int, hi: int, frac: int, reset: int | None = None, name: str = '') -> int:
        """A register holding mantissas in [lo, hi] at LSB 2^-frac; connect its input with `connect`."""
        if reset is not None and not lo <= reset <= hi:
            raise NetlistError(f'register {name!r}: reset value {reset} outside [{lo}, {hi}]')
        sid = self._new('reg', (), lo, hi, frac, reset=reset, name=name)
        self.registers.append(sid)
        return sid

    def connect(self, reg: int, d: int, en: int | None = None) -> None:
        """Feed register `reg` from signal d (stored when en is 1; en None: every enabled clock)."""
        R, D = self[reg], self[d]
        if R.op != 'reg' or R.args:
            raise NetlistError(f'signal {reg} is not an unconnected register')
        if D.frac != R.frac or D.lo < R.lo or D.hi > R.hi:
            raise NetlistError(f'register {R.p["name"]!r} [{R.lo}, {R.hi}] / 2^{R.frac} cannot hold signal {d} '
                               f'[{D.lo}, {D.hi}] / 2^{D.frac}')
        if en is not None and (self[en].lo < 0 or self[en].hi > 1 or self[en].frac != 0):
            raise NetlistError(f'register {R.p["name"]!r}: its enable must be a 0/1 signal')
        R.args = (d,) if en is None else (d, en)

    def latch(self, d: int, en: int | None, name: str = '') -> int:
        """A data register (no reset) with d's bounds, storing d when en is 1; constants stay constants."""
        D = self[d]
        if D.is_const:
            return d
        reg = self.register(D.lo, D.hi, D.frac, None, name)
        self.connect(reg, d, en)
        return reg

    def delayed(self, s: int, clocks: int, name: str, reset: int | None = None) -> int:
        """Signal s as it was `clocks` enabled clocks ago: a chain of registers (with `reset`, a control pulse or
        counter that rst clears; None, data), built once per signal, depth and reset and shared."""
        for k in range(clocks):
            key = ('delay', s, reset)
            if key not in self._shared:
                S = self[s]
                if reset is None:
                    self._shared[key] = self.latch(s, None, f'{name}_d{k + 1}')
                else:
                    reg = self.register(min(S.lo, reset), max(S.hi, reset), S.frac, reset, f'{name}_d{k + 1}')
                    self.connect(reg, s)
                    self._shared[key] = reg
            s = self._shared[key]
        return s

    def flag(self, sel: int, bits: list[int]) -> int:
        """A 0/1 signal bits[sel] (a ROM addressed by a counter), built once per selector and bits; a
        constant where every bit the selector can address is the same."""
        S = self[sel]
        if len({int(b) for b in bits[max(S.lo, 0):S.hi + 1]}) == 1:
            return self.const(int(bits[max(S.lo, 0)]), 0)
        return self.once(('flag', sel, tuple(int(b) for b in bits)),
                         lambda: self.rom(sel, np.asarray(bits, dtype=np.int64), 0, 0))

    def both(self, a: int, b: int) -> int:
        """a AND b of two 0/1 signals."""
        return self.select(a, b, self.const(0, 0))

    def either(self, a: int, b: int) -> int:
        """a OR b of two 0/1 signals."""
        return self.select(a, self.const(1, 0), b)

    def counter(self, n: int, start: int, name: str) -> tuple[int, int, int]:
        """A counter that runs 0 .. n-1 once after each `start` pulse: (count, busy, last).

        `start` (a 0/1 signal) clears the count and sets busy at the next edge; the count then
        advances every enabled clock while busy, and `last` (combinational) is 1 in the busy cycle
        whose count is n - 1, after which busy clears (unless start comes again in that cycle).
        """
        zero, one = self.const(0, 0), self.const(1, 0)
        count = self.register(0, n - 1, 0, reset=0, name=f'{name}_count')
        busy = self.register(0, 1, 0, reset=0, name=f'{name}_busy')
        nxt = self.rom(count, np.array([(k + 1) % n for k in range(n)], dtype=np.int64), 0, 0)
        last = self.both(busy, self.flag(count, [int(k == n - 1) for k in range(n)]))
        self.connect(count, self.select(start, zero, self.select(busy, nxt, count)))
        self.connect(busy, self.select(start, one, self.select(last, zero, busy)))
        return count, busy, last

    def check(self) -> None:
        """Every register connected and valid_out set."""
        loose = [self[r].p['name'] or r for r in self.registers if not self[r].args]
        if loose:
            raise NetlistError(f'registers without an input: {loose}')
        if self.valid_out is None:
            raise NetlistError('the machine has no valid_out')

    def evaluate(self, inputs):
        """Machines have state: run them with `Simulator` (clock by clock), not as one combinational pass."""
        raise NetlistError('a Machine has registers: use stateful.Simulator to run it clock by clock')


class Simulator:
    """Runs a Machine clock by clock on `batch` independent instances (registers start at 0)."""

    def __init__(self, m: Machine, batch: int = 1) -> None:
        m.check()
        self.m, self.batch = m, batch
        self.state = {r: np.zeros(batch, dtype=np.int64) for r in m.registers}
        self.values: list[np.ndarray | None] = []

    def settle(self, inputs: list[np.ndarray], valid) -> list[np.ndarray]:
        """All signal values in this cycle (before the edge), for input mantissas (batch, elements) per port."""
        m, batch = self.m, self.batch
        flat = [np.asarray(x, dtype=np.int64).reshape(batch, -1) for x in inputs]
        valid = np.broadcast_to(np.asarray(valid, dtype=np.int64), (batch,))
        values: list = [None] * len(m.signals)
        for sig in m.signals:
            if sig.op == 'reg':
                values[sig.id] = self.state[sig.id]
            elif sig.op == 'valid_in':
                values[sig.id] = valid
            else:
                values[sig.id] = _EVAL[sig.op](sig, [values[a] for a in sig.args], flat, batch)
        self.values = values
        return values

    def edge(self, rst: bool = False, ce=True) -> None:
        """The rising clock edge after `settle`: registers take their reset, their input or keep their value."""
        values, ce = self.values, np.broadcast_to(np.asarray(ce, dtype=bool), (self.batch,))
        new = {}
        for r in self.m.registers:
            sig = self.m[r]
            if rst and sig.p['reset'] is not None:
                new[r] = np.full(self.batch, sig.p['reset'], dtype=np.int64)
                continue
            take = ce if len(sig.args) == 1 else ce & (values[sig.args[1]] != 0)
            new[r] = np.where(take, values[sig.args[0]], self.state[r])
        self.state = new

    def outputs(self) -> list[np.ndarray]:
        """The output ports' values in the settled cycle, one (batch, *shape) array per port."""
        return [np.stack([self.values[s] for s in port.signals], axis=1).reshape((self.batch,) + port.shape)
                for port in self.m.outputs]

    def valid_out(self) -> np.ndarray:
        """valid_out in the settled cycle (batch,)."""
        return self.values[self.m.valid_out].astype(bool)

    def reset(self, cycles: int = 2) -> None:
        """Hold rst for `cycles` clocks with valid_in = 0 and zero inputs."""
        zeros = [np.zeros((self.batch, len(p.signals)), dtype=np.int64) for p in self.m.inputs]
        for _ in range(cycles):
            self.settle(zeros, 0)
            self.edge(rst=True)


@dataclass
class Timing:
    """Latency (enabled clocks from the edge accepting an input to the one showing its outputs, plus
    one, as the unrolled designs count it) and initiation interval of a machine."""

    latency: int
    ii: int
    stages: dict[str, int] = field(default_factory=dict)
    cuts: dict[str, int] = field(default_factory=dict)  # pipeline registers inside each folded layer


def run_vectors(m: Machine, timing: Timing, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Each input vector through its own instance (vectorized): present it once, clock until valid_out.

    Checks that valid_out rises exactly in cycle `timing.latency` (cycle 0 presents the input; cycle k
    is the one after the k-th clock edge), the convention of the unrolled designs and of `run_stream`.
    """
    batch = len(inputs[0])
    sim = Simulator(m, batch)
    sim.reset()
    zeros = [np.zeros_like(np.asarray(x, dtype=np.int64).reshape(batch, -1)) for x in inputs]
    for cycle in range(timing.latency + 2):
        sim.settle(inputs if cycle == 0 else zeros, 1 if cycle == 0 else 0)
        if cycle > 0 and sim.valid_out().any():
            if cycle != timing.latency or not sim.valid_out().all():
                raise NetlistError(f'valid_out came {cycle} clocks after the input; the timing says '
                                   f'{timing.latency}')
            return sim.outputs()
        sim.edge()
    raise NetlistError(f'no valid_out within {timing.latency} clocks')


def trace_cycles(m: Machine, inputs: list[np.ndarray], valid: np.ndarray, ce: np.ndarray | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """One instance clock by clock: inputs[k][t], valid[t] and ce[t] in cycle t (after a 2-clock reset).

    Returns (outputs[k][t], valid_out[t]) as they show in cycle t before its rising edge: the trace
    that the Verilator harness's trace mode (`RtlSimulator.trace`) records for the same stimulus.
    """
    cycles = len(valid)
    ce = np.ones(cycles, dtype=bool) if ce is None else np.asarray(ce, dtype=bool)
    sim = Simulator(m, 1)
    sim.reset()
    shown = [np.zeros((cycles,) + port.shape, dtype=np.int64) for port in m.outputs]
    vout = np.zeros(cycles, dtype=bool)
    for t in range(cycles):
        sim.settle([np.asarray(x[t:t + 1], dtype=np.int64).reshape(1, -1) for x in inputs], int(valid[t]))
        for k, y in enumerate(sim.outputs()):
            shown[k][t] = y[0]
        vout[t] = bool(sim.valid_out()[0])
        sim.edge(ce=bool(ce[t]))
    return shown, vout


def run_stream(m: Machine, inputs: list[np.ndarray], valid: np.ndarray, ce: np.ndarray | None = None
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """`trace_cycles` with valid_out counted only in enabled clocks (ce = 1): where a result is taken."""
    shown, vout = trace_cycles(m, inputs, valid, ce)
    return shown, vout if ce is None else vout & np.asarray(ce, dtype=bool)


# ---------------------------------------------------------------------------- timing estimate

#: ops whose value is ready at the start of a clock (a register's output, a port, a constant)
CLOCK_ROOTS = ('reg', 'valid_in', 'input', 'const')


def signal_ns(sig: Signal, m: Machine) -> float:
    """The delay of one signal of a machine in ns: pipeline.py's model, a counter multiplexer as a LUT tree."""
    if sig.op in CLOCK_ROOTS:
        return 0.0
    return delay_ns(sig, m)


def settle_times(m: Machine, t: list[float] | None = None) -> list[float]:
    """When each signal settles within its clock (ns after the registers and ports it reads), by pipeline.py's
    delay model; `t`, the times of a prefix of the signals computed before, is extended in place (signals are
    in topological order: a register is a root, its input connected later)."""
    t = [] if t is None else t
    for sig in m.signals[len(t):]:
        t.append(0.0 if sig.op in CLOCK_ROOTS else max((t[a] for a in sig.args), default=0.0) + signal_ns(sig, m))
    return t


def critical_ns(m: Machine) -> float:
    """The longest register-to-register (or port-to-register) path in ns by pipeline.py's delay model."""
    return max(settle_times(m), default=0.0)


# ---------------------------------------------------------------------------- Verilog

def flat_schedule(m: Machine) -> Schedule:
    """The writer's view of a machine: every signal in stage 0, no pipeline registers (the state is explicit)."""
    n = len(m.signals)
    return Schedule([0] * n, [0.0] * n, 0, critical_ns(m), 'none')


class _MachineWriter(_Writer):
    """emit.py's writer with the state ops: registers in always blocks, counter-indexed case multiplexers."""

    def __init__(self, m: Machine, timing: Timing, top: str, title: str | None = None) -> None:
        super().__init__(m, flat_schedule(m), top)
        self.timing, self.title = timing, title

    def expr(self, sig: Signal) -> list[str]:
        """Declarations and assignments computing one signal (state ops here, the rest in emit.py)."""
        name, W = f's{sig.id}', sig.width
        if sig.op == 'reg':
            return [f'reg [{W - 1}:0] {name};']
        if sig.op == 'valid_in':
            return [f'wire [{W - 1}:0] {name};', f"assign {name} = {{1'b0, valid_in}};"]
        return super().expr(sig)

    def _registers(self) -> tuple[list[str], list[str]]:
        lines = []
        for r in self.nl.registers:
            sig = self.nl[r]
            d = self.ext(sig.args[0], sig.width, 0)
            cond = 'ce' if len(sig.args) == 1 else f'ce & {self.bits(sig.args[1], 0, 0, 0)}'
            label = f'  // {comment_text(sig.p["name"])}' if sig.p['name'] else ''
            lines.append('always @(posedge clk) begin' + label)
            if sig.p['reset'] is not None:
                lines += [f'  if (rst) s{r} <= {self.const(sig.p["reset"], sig.width)};',
                          f'  else if ({cond}) s{r} <= {d};']
            else:
                lines.append(f'  if ({cond}) s{r} <= {d};')
            lines.append('end')
        return lines, [f'assign valid_out = {self.bits(self.nl.valid_out, 0, 0, 0)};']

    def _header(self) -> list[str]:
        lines = super()._header()
        t = self.timing
        if self.title is not None:  # a part of a larger design (a streaming line buffer): its own description
            return [comment_line(f'// {self.top}: generated by fpga4ml. {line}') if k == 0 else comment_line(f'// {line}')
                    for k, line in enumerate(self.title.splitlines())] + lines[1:]
        lines[0] = (f'// {self.top}: generated by fpga4ml. Latency {t.latency} clocks, II {t.ii} (folded: '
                    + ', '.join(f'{k} R={v}' for k, v in t.stages.items()) + ').')
        contract = ('// II > 1: assert valid_in at most once every II enabled clocks (the design latches the input\n'
                    '// vector at that edge); outputs are valid in the cycle valid_out is high.')
        return lines[:1] + [comment_line(line) for line in contract.splitlines()] + lines[1:]


def write_machine(m: Machine, timing: Timing, top: str, title: str | None = None) -> str:
    """The Verilog text of a machine as one module named `top` (ports as the unrolled designs'); `title`
    replaces the folded designs' first header lines (latency, II, the valid-every-II contract)."""
    m.check()
    return _MachineWriter(m, timing, top, title).write()


#: LUTs per extra distinct option of a counter-indexed data multiplexer (one more input routed to a multiplier:
#: its multiplexer bits, the weight ROM word and the enables around it; the counter-addressed ROMs are not
#: priced apart) and per digit multiplexer of a digit-serial layer: fitted (smallest largest relative error)
#: to Yosys (xcup, 'fast') on 17 folded designs by `bench/bench_reuse.py --fit`: the JSC MLP at RF 2-16
#: (fixed<16,6> and 6-bit 'auto', multiply-accumulate and digit-serial, 50 % structured pruning) and a
#: 64-pixel Conv2D at RF 2-8, pipelined at 5 ns, the other ops costed as in estimate.py; errors within
#: 14.4 % (docs/verilog.md)
MUX_OPTION_LUT = 14.89
DIGIT_MUX_LUT = 13.92


def machine_lut_terms(m: Machine) -> dict:
    """The parts of a machine's LUT estimate: `other` (ops costed as in estimate.py), `mux_options` (distinct
    options beyond the first of the counter-indexed data multiplexers) and `digit_muxes` (digit multiplexers)."""
    from .estimate import CALIBRATION, _lut_cost

    terms = {'other': 0.0, 'mux_options': 0, 'digit_muxes': 0, 'DSP': 0, 'multipliers': 0}
    for sig in m.signals:
        if sig.op in ('reg', 'valid_in') or sig.op == 'rom' and m[sig.args[0]].op == 'reg':
            continue
        if sig.op == 'mux':
            if sig.p['role'] == 'digit':
                terms['digit_muxes'] += 1
            else:
                terms['mux_options'] += len(set(sig.args[1:])) - 1  # a repeated option (padding) is free
        else:
            lut_s, dsp_s = _lut_cost(sig, m)
            terms['other'] += lut_s * CALIBRATION.get(sig.op, 1.0)
            terms['DSP'] += dsp_s
            terms['multipliers'] += sig.op == 'mul'
    return terms


def estimate_machine(m: Machine, timing: Timing) -> dict:
    """The cost model's numbers for a machine: LUTs of its logic and multiplexers, register bits, DSPs."""
    t = machine_lut_terms(m)
    lut = t['other'] + MUX_OPTION_LUT * t['mux_options'] + DIGIT_MUX_LUT * t['digit_muxes']
    ff = sum(m[r].width for r in m.registers)
    stage_ns = critical_ns(m) + STAGE_OVERHEAD_NS
    return {'LUT': int(round(lut)), 'FF': ff, 'DSP': t['DSP'], 'multipliers': t['multipliers'],
            'latency_cycles': timing.latency, 'ii': timing.ii,
            'critical_stage_ns': round(stage_ns, 3), 'fmax_mhz_estimate': round(1000.0 / stage_ns, 1),
            'adders': sum(s.op in ('add', 'neg') for s in m.signals), 'signals': len(m.signals)}


__all__ = ['CLOCK_ROOTS', 'Machine', 'STATE_OPS', 'Simulator', 'Timing', 'bits_for', 'critical_ns', 'element_width',
           'estimate_machine', 'flat_schedule', 'machine_lut_terms', 'run_stream', 'run_vectors', 'settle_times', 'signal_ns', 'trace_cycles',
           'write_machine']
