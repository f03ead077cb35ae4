"""Pipelining: place registers so that every stage fits the clock period, by a delay model.

Each signal gets a stage: the stage of its latest argument, or the next one when its delay
would push the arrival time past the stage budget (as soon as possible, then cut). Arguments
from earlier stages are read through delay registers. The outputs are registered once more at
the end, so the latency in clock cycles is (last output stage + 1) and a new input vector can
enter every clock (II = 1). With ``Pipeline: 'none'`` everything is combinational (latency 0).

The knob (``hls_config['Model']['Pipeline']``): 'auto' (default) places registers by the delay
model below and the clock period; an integer N allows at most N adder levels per stage (smaller
N: more stages, higher Fmax; larger N: fewer stages); 'none' builds no pipeline.

The delay model is a coarse estimate for UltraScale+ (ns): a LUT level with its routing costs
~0.6 ns, a carry chain ~0.02 ns per bit, a DSP multiply ~2.5 ns, plus ~0.6 ns of clock-to-out,
setup and uncertainty per stage. A ROM costs a LUT level for 6 address bits and one more per 2
further bits (MUXF7/F8 trees; a non-negative address's sign bit is a constant, not an address bit),
a multiplexer a LUT level per factor of 4 options, a ReLU (max/min with 0) one LUT level. It is calibrated only roughly; `estimate()` and Yosys report
logic levels to check it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from ...config import check_pipeline
from ...ir import GraphError
from .netlist import Netlist, Signal, clamp_at_zero

LUT_NS = 0.6
CARRY_NS_PER_BIT = 0.02
DSP_NS = 2.5
STAGE_OVERHEAD_NS = 0.6
#: a three-input adder (ternary.py) settles one LUT level later than a binary add of its width
THREE_INPUT_EXTRA_NS = LUT_NS
#: ops that are wiring only
FREE_OPS = ('input', 'const', 'shl', 'shr')


def _rom_levels(sig: Signal, nl: Netlist) -> int:
    address_bits = nl[sig.args[0]].live_bits  # a non-negative address's sign bit is the constant 0 (emit.py)
    return 1 + max(0, (address_bits - 6 + 1) // 2)  # LUT6 plus MUXF7/F8 trees


def mux_levels(sig: Signal) -> int:
    """LUT levels of a multiplexer: a LUT6 picks one of 4 options, and each further level one of 4 more."""
    return max(1, math.ceil(math.log(max(2, len(sig.args) - 1), 4)))


def levels(sig: Signal, nl: Netlist) -> float:
    """The delay of one signal in 'adder levels' (1.0 = one carry-chain adder)."""
    op = sig.op
    if op in FREE_OPS:
        return 0.0
    if op in ('add', 'neg'):
        return 1.0
    if op == 'cast':
        t = sig.p['type']
        rounds = sig.p['frac_in'] > t.frac and t.rounding != 'TRN'
        a = nl[sig.args[0]]
        saturates = t.overflow != 'WRAP' and (a.lo < sig.lo or a.hi > sig.hi)
        return float(rounds) + (1.0 if saturates else 0.0)
    if clamp_at_zero(nl, sig) is not None:
        return 0.5  # an AND per bit with the sign bit: no carry chain
    if op in ('max', 'min'):
        return 1.5
    if op == 'select':
        return 1.0
    if op == 'rom':
        return 0.5 * _rom_levels(sig, nl)
    if op == 'mux':
        return 0.5 * mux_levels(sig)
    if op in ('mul', 'divc'):
        return 3.0
    raise GraphError(f'no delay model for op {op!r}')


def delay_ns(sig: Signal, nl: Netlist) -> float:
    """Estimated combinational delay of one signal in ns (UltraScale+)."""
    op = sig.op
    if op in FREE_OPS:
        return 0.0
    if op in ('add', 'neg'):
        return LUT_NS + CARRY_NS_PER_BIT * sig.live_bits  # a non-negative sum's sign bit is not built
    if op == 'rom':
        return LUT_NS * _rom_levels(sig, nl)
    if op == 'mux':
        return LUT_NS * mux_levels(sig)
    if op == 'mul':
        return DSP_NS
    if clamp_at_zero(nl, sig) is not None:
        return LUT_NS
    return levels(sig, nl) * (LUT_NS + CARRY_NS_PER_BIT * sig.width)


@dataclass
class Schedule:
    """Stage of every signal, the latency in cycles and the estimated critical stage delay."""

    stage: list[int]
    arrival: list[float]
    latency: int
    critical_ns: float
    mode: str

    def last_use(self, nl: Netlist) -> list[int]:
        """For each signal, the latest stage that reads it (outputs are read at stage `latency`)."""
        last = list(self.stage)
        for sig in nl.signals:
            for a in sig.args:
                last[a] = max(last[a], self.stage[sig.id])
        for port in nl.outputs:
            for s in port.signals:
                last[s] = max(last[s], self.latency)
        return last


def schedule(nl: Netlist, clock_period: float, pipeline: str | int = 'auto',
             start: dict[int, float] | None = None, sink: bool = True) -> Schedule:
    """Assign pipeline stages (as soon as possible, cut where a stage's budget is exceeded); `start`: the
    ns into the first stage at which some inputs settle (default 0: straight from registers or ports);
    `sink=False` keeps the as-soon-as-possible stages (no registers moved later where narrower)."""
    mode = check_pipeline(pipeline, 'schedule()')
    if mode == 'auto':
        budget = clock_period - STAGE_OVERHEAD_NS
        cost = delay_ns
        if budget <= LUT_NS:
            raise GraphError(f'clock_period={clock_period} ns leaves no time for logic in a stage')
    elif mode == 'none':
        budget, cost = float('inf'), delay_ns
    else:
        budget, cost = float(mode), levels
    n = len(nl.signals)
    stage, arrival = [0] * n, [0.0] * n
    for sid, t in (start or {}).items():
        arrival[sid] = t
    for sig in nl.signals:
        if sig.is_const or not sig.args:
            continue
        live = [a for a in sig.args if not nl[a].is_const]
        st = max((stage[a] for a in live), default=0)
        t_in = max((arrival[a] for a in live if stage[a] == st), default=0.0)
        d = cost(sig, nl)
        if t_in + d > budget and t_in > 0:
            st, t_in = st + 1, 0.0
        stage[sig.id], arrival[sig.id] = st, t_in + d
    outs = [s for port in nl.outputs for s in port.signals if not nl[s].is_const]
    latency = 0 if mode == 'none' else max((stage[s] for s in outs), default=0) + 1
    if latency > 1 and sink:
        _sink_registers(nl, stage, latency, budget, cost)
    return Schedule(stage, arrival, latency, _critical_ns(nl, stage), str(mode))


def fused_critical_ns(nl: Netlist, stage: list[int], fused: dict[int, int], skipped: set[int]) -> float:
    """The longest in-stage path when the `fused` adds are three-input adders (ternary.py): each settles
    one more LUT level after its latest term; the `skipped` signals (absorbed, or not written) cost nothing."""
    def cost(sig: Signal, nl: Netlist) -> float:
        if sig.id in skipped:
            return 0.0
        return delay_ns(sig, nl) + (THREE_INPUT_EXTRA_NS if sig.id in fused else 0.0)
    return _critical_ns(nl, stage, cost)


def _sink_registers(nl: Netlist, stage: list[int], latency: int, budget: float, cost) -> None:
    """Move signals one stage later where that saves register bits and the later stage still fits.

    A signal held in a register across a stage boundary can instead be computed after it, from its
    (registered) arguments: worth it when its arguments are narrower than it is or are registered
    anyway (typically a wide partial sum of narrow inputs). Each move is checked against the delay
    budget of the stage it enters (only the in-stage readers whose arrival it delays are
    re-timed); the latency never changes.
    """
    n = len(nl.signals)
    const = [sig.is_const for sig in nl.signals]
    delay = [cost(sig, nl) for sig in nl.signals]
    widths = [sig.live_bits for sig in nl.signals]
    readers: list[list[int]] = [[] for _ in range(n)]
    last = list(stage)
    for sig in nl.signals:
        for a in sig.args:
            readers[a].append(sig.id)
            last[a] = max(last[a], stage[sig.id])
    for port in nl.outputs:
        for o in port.signals:
            last[o] = latency
    arrival = _in_stage_arrival(nl, stage, const, delay)
    for _ in range(latency):  # a signal moves at most one stage per sweep
        moved = 0
        for sig in reversed(nl.signals):
            sid, p = sig.id, stage[sig.id]
            if const[sid] or sig.op == 'input' or last[sid] <= p or p + 1 > latency - 1:
                continue
            if any(stage[r] <= p for r in readers[sid]):  # a reader in its own stage needs it there
                continue
            live = [a for a in sig.args if not const[a]]
            added = sum(widths[a] for a in set(live) if last[a] == p)
            if widths[sid] <= added:
                continue
            later = _retime(nl, sid, p + 1, stage, arrival, readers, const, delay, budget)
            if later is None:
                continue
            stage[sid] = p + 1
            arrival.update(later)
            for a in live:
                last[a] = max(last[a], p + 1)
            moved += 1
        if not moved:
            break


def _in_stage_arrival(nl: Netlist, stage: list[int], const: list[bool], delay: list[float]) -> dict[int, float]:
    """Arrival time of every signal within its stage (its in-stage, non-constant arguments first)."""
    t: dict[int, float] = {}
    for sig in nl.signals:
        st = stage[sig.id]
        t[sig.id] = max((t[a] for a in sig.args if not const[a] and stage[a] == st), default=0.0) + delay[sig.id]
    return t


def _retime(nl: Netlist, sid: int, st: int, stage: list[int], arrival: dict[int, float], readers: list[list[int]],
            const: list[bool], delay: list[float], budget: float) -> dict[int, float] | None:
    """New arrival times in stage `st` if signal sid moves there (its arguments are all registered),
    or None when a delayed reader would exceed the budget (as the as-soon-as-possible rule cuts)."""
    new = {sid: delay[sid]}
    todo = [r for r in readers[sid] if stage[r] == st]
    heapq.heapify(todo)
    seen = set(todo)
    while todo:
        r = heapq.heappop(todo)  # in id order: a topological order
        args = nl[r].args
        t_in = max((new.get(a, arrival[a]) if a != sid else new[sid] for a in args
                    if not const[a] and (stage[a] == st or a == sid)), default=0.0)
        t = t_in + delay[r]
        if t > budget and t_in > 0:
            return None
        if t != arrival[r]:
            new[r] = t
            for q in readers[r]:
                if stage[q] == st and q not in seen:
                    seen.add(q)
                    heapq.heappush(todo, q)
    return new


def _critical_ns(nl: Netlist, stage: list[int], cost=None) -> float:
    """The longest in-stage path in ns for a given stage assignment (cost(sig, nl): default delay_ns)."""
    cost = cost or delay_ns
    t = [0.0] * len(nl.signals)
    for sig in nl.signals:
        t_in = max((t[a] for a in sig.args if stage[a] == stage[sig.id] and not nl[a].is_const), default=0.0)
        t[sig.id] = t_in + cost(sig, nl)
    return max(t, default=0.0)
