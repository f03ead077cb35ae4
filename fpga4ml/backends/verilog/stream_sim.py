"""A streaming design run clock by clock by its own interpreters, without Verilator.

Line buffers and the collector are stateful machines run by stateful.Simulator; each kernel and the
head are netlists evaluated (Netlist.evaluate) in the clock their input is valid, their results
shown `schedule.latency` clocks later, as their pipelined modules do; the wiring is the top
module's (streaming._stage_instances). A folded kernel (ReuseFactor > 1) is a stateful machine too,
and the pixels then come one every `period` clocks by default; so is a folded head (fold.fold_graph's
machine, fed by the collector's valid_out). Vectorized over independent instances: instance b streams
its own images, all instances with the same valid_in pattern (the timing does not depend on the
data), so a few clocks per pixel cover hundreds of images.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .netlist import Netlist
from .stateful import Simulator
from .streaming import StreamDesign, collect_machine

__all__ = ['StreamRun', 'run_design', 'stream_cycles']


class _Delay:
    """A netlist behind its pipeline: results of the inputs valid in clock t, shown in clock t + latency."""

    def __init__(self, nl: Netlist, latency: int, batch: int) -> None:
        self.nl, self.batch = nl, batch
        self.idle = [np.zeros((batch,) + p.shape, dtype=np.int64) for p in nl.outputs]
        self.queue: deque = deque([(False, self.idle)] * latency)

    def step(self, valid: bool, inputs: list[np.ndarray]) -> tuple[bool, list[np.ndarray]]:
        """Present this clock's inputs; returns (valid_out, outputs) shown in this clock."""
        outs = self.nl.evaluate([a.reshape(self.batch, -1) for a in inputs]) if valid else self.idle
        self.queue.append((valid, outs))
        return self.queue.popleft()


class _Machine:
    """A stateful machine with its valid_in, as instantiated in the top module."""

    def __init__(self, m, batch: int) -> None:
        self.sim = Simulator(m, batch)
        self.sim.reset()

    def step(self, valid: bool, inputs: list[np.ndarray]) -> tuple[bool, list[np.ndarray]]:
        """The outputs and valid_out shown in this clock (before its rising edge); `edge` ends the clock."""
        self.sim.settle(inputs, int(valid))
        shown = self.sim.valid_out()
        if shown.any() != shown.all():
            raise RuntimeError('valid_out differs between instances fed the same valid_in')
        return bool(shown[0]), self.sim.outputs()

    def edge(self) -> None:
        """The rising clock edge."""
        self.sim.edge()


class _Head(_Machine):
    """A folded head: a machine whose outputs are read only where valid_out is 1, so it sleeps (is not
    evaluated) from a clock that provably changes nothing until its next valid_in.

    A clock with valid_in = 0 proves the machine idle when valid_out is 0 and no register changed, and
    neither valid_out nor any register's next value depends on the input ports: each register's input
    (or its enable, then 0) is a function of the registers and valid_in alone. Every later clock with
    valid_in = 0 is then the same clock again, whatever the inputs (only the outputs, unread, differ).
    """

    def __init__(self, m, batch: int) -> None:
        super().__init__(m, batch)
        fed = [False] * len(m.signals)  # depends on an input port within the clock (registers cut it)
        for sig in m.signals:
            fed[sig.id] = sig.op == 'input' or (sig.op != 'reg' and any(fed[a] for a in sig.args))
        self.fed, self.asleep, self.valid = fed, False, False
        self.idle_outputs: list[np.ndarray] | None = None

    def step(self, valid: bool, inputs: list[np.ndarray]) -> tuple[bool, list[np.ndarray]]:
        """As _Machine.step; asleep (and valid_in 0): valid_out 0 without evaluating the machine."""
        self.valid = valid
        if self.asleep and not valid:
            return False, self.idle_outputs
        self.asleep = False
        shown, outs = super().step(valid, inputs)
        self.idle_outputs = outs
        return shown, outs

    def edge(self) -> None:
        """The rising clock edge (none while asleep); falls asleep after a clock that proves the machine idle."""
        if self.asleep:
            return
        before = self.sim.state
        self.sim.edge()
        self.asleep = not self.valid and self._idle(before)

    def _idle(self, before: dict) -> bool:
        m, values, fed = self.sim.m, self.sim.values, self.fed
        if fed[m.valid_out] or values[m.valid_out].any():
            return False
        for r in m.registers:
            if not np.array_equal(before[r], self.sim.state[r]):
                return False
            d, en = (m[r].args + (None,))[:2]
            if fed[d] and (en is None or fed[en] or values[en].any()):
                return False
        return True


class StreamRun:
    """Outputs per image and clock by clock timing of one `run_design` call."""

    def __init__(self, outputs: list[np.ndarray], last_pixel: np.ndarray, shown: np.ndarray) -> None:
        #: per graph output (instances, images, *shape) mantissas
        self.outputs = outputs
        #: per image the clock presenting its last pixel, and the clock its outputs are shown (valid_out)
        self.last_pixel, self.shown = last_pixel, shown

    @property
    def latencies(self) -> np.ndarray:
        """Clocks from each image's last pixel to its outputs (the manifest's latency when fed back to back)."""
        return self.shown - self.last_pixel


def run_design(d: StreamDesign, images: np.ndarray, valid: np.ndarray | None = None) -> StreamRun:
    """Stream integer input mantissas (instances, images, H, W, C) or (instances, images, W, C) through the
    design: pixel by pixel in row-major order, one per clock where `valid` (a 0/1 pattern over clocks, the
    same for every instance; default back to back: every clock, or every `d.period` clocks) is 1, then idle
    until every image's outputs have come. With period P > 1 the pattern must keep pixels P clocks apart."""
    batch, n = images.shape[:2]
    h, w, c = d.stages[0].in_hwc
    pixels = np.asarray(images, dtype=np.int64).reshape(batch, n * h * w, c)
    if valid is None:
        valid = np.zeros(n * h * w * d.period, dtype=bool)
        valid[::d.period] = True
    valid = np.asarray(valid, dtype=bool)
    if valid.sum() < n * h * w:
        raise ValueError(f'valid has {int(valid.sum())} ones for {n * h * w} pixels')
    windows = [_Machine(s.window, batch) for s in d.stages]
    kernels = [_Delay(s.netlist, s.schedule.latency, batch) if s.rf == 1 else _Machine(s.netlist, batch)
               for s in d.stages]
    last = d.stages[-1]
    collect = _Machine(collect_machine(last.out_hwc[0] * last.out_hwc[1], last.out_hwc[2], last.out_type), batch)
    head = _Delay(d.head, d.head_schedule.latency, batch) if d.head_timing is None else _Head(d.head, batch)
    outs: list[list[np.ndarray]] = []
    last_pixel, shown, sent = [], [], 0
    limit = len(valid) + n * (d.latency + 1) + 4 * h * w * d.period
    idle = np.zeros((batch, c), dtype=np.int64)
    for t in range(limit):
        v = bool(valid[t]) if t < len(valid) and sent < n * h * w else False
        streams = {d.stages[0].inputs[0].name: pixels[:, sent] if v else idle}
        if v:
            sent += 1
            if sent % (h * w) == 0:
                last_pixel.append(t)
        for stage, window, kernel in zip(d.stages, windows, kernels):
            v, win = window.step(v, [streams[s.name] for s in stage.inputs])
            v, pix = kernel.step(v, win)
            streams = {s.name: p for s, p in zip(stage.outputs, pix)}
        v, (features,) = collect.step(v, [streams[last.outputs[0].name]])
        v, result = head.step(v, [features])
        if v:
            outs.append(result)
            shown.append(t)
            if len(outs) == n:
                break
        for machine in windows + [k for k in kernels + [head] if isinstance(k, _Machine)] + [collect]:
            machine.edge()
    if len(outs) != n:
        raise RuntimeError(f'{len(outs)} of {n} images came out within {limit} clocks')
    return StreamRun([np.stack([o[k] for o in outs], axis=1) for k in range(len(d.head.outputs))],
                     np.array(last_pixel), np.array(shown))


def stream_cycles(model, d: StreamDesign, x, valid=None) -> tuple[list[np.ndarray], np.ndarray]:
    """A streaming design clock by clock from its interpreter (`emulate_cycles` of a stream design).

    The images of `x` are presented pixel by pixel in row-major order, one pixel every `d.period` clocks
    (or where the 0/1 clock pattern `valid` is 1, as `run_design`); returns (outputs, valid_out) over the
    clocks up to the last image's outputs: outputs[k][t] is what output port k shows in clock t, as real
    values (zeros where valid_out[t] is 0; the head's ports hold other values there).
    """
    graph = model.graph
    x = np.asarray(model.emulator._as_inputs(x)[0])
    mantissas = graph[graph.inputs[0]].result_type.quantize(x)
    run = run_design(d, mantissas[None], valid)
    cycles = int(run.shown[-1]) + 1 if len(run.shown) else 0
    valid_out = np.zeros(cycles, dtype=bool)
    valid_out[run.shown] = True
    shown = []
    for name, out in zip(graph.outputs, run.outputs):
        seq = np.zeros((cycles,) + out.shape[2:], dtype=np.int64)
        seq[run.shown] = out[0]
        shown.append(graph[name].result_type.to_float(seq))
    return shown, valid_out
