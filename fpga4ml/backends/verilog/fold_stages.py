"""Pipeline registers inside a folded layer, placed by the delay model at the boundaries of its parts.

A folded layer (fold.py's multiply-accumulate rows, fold_serial.py's digit-serial rows) is a loop,
its accumulators fed back through one adder, behind a feed-forward part that reads only the
layer's counter and its latched inputs: the input multiplexers and weight ROMs (or the digit
multiplexers), the multipliers, and the adder tree (or the constant adder graph). Registers can cut
the feed-forward part anywhere without changing what the loop adds, only when: `LayerPipe` places
them as pipeline.py does for the unrolled designs (as soon as possible, cut where the next part
would push a path past the clock period's budget by the delay model), at the boundaries between the
parts, every signal crossing a boundary registered. Each cut delays the loop's view of the counter
and of busy by one clock (`LayerPipe.loop_controls`), so the accumulators take the products of the
cycle they were started in, `done` comes one clock later, and the layer's latency is R + 1 + cuts;
its II stays R (the pipeline registers take new products every clock). The loop itself (the
accumulator multiplexer or bias select, one adder and the cast; a saturating accumulator's in-order
chain of additions) is never cut. The knob is the model's `Pipeline` setting: 'none' builds no cut,
anything else ('auto', an adder-level count) cuts by the clock period.
"""

from __future__ import annotations

from typing import NamedTuple

from .machine_stages import staged
from .pipeline import CARRY_NS_PER_BIT, DSP_NS, LUT_NS, STAGE_OVERHEAD_NS
from .stateful import Machine, settle_times


def stage_budget(clock_period: float | None, pipeline) -> float | None:
    """The ns a folded layer's stage may take (None: no pipeline registers inside folded layers)."""
    if clock_period is None or str(pipeline) == 'none':
        return None
    return max(float(clock_period) - STAGE_OVERHEAD_NS, LUT_NS)


def adder_ns(bits: int) -> float:
    """One carry-chain adder of `bits` bits, as pipeline.delay_ns prices it."""
    return LUT_NS + CARRY_NS_PER_BIT * bits


def tree_ns(terms: int, bits: int) -> float:
    """A balanced adder tree over `terms` terms of about `bits` bits."""
    return max(0, (terms - 1).bit_length()) * adder_ns(bits)


#: the delay a multiplier adds (pipeline.py's DSP figure)
MUL_NS = DSP_NS


class FoldedRows(NamedTuple):
    """A folded layer's rows: outputs (row by row), `done` (high in the clock the accumulators hold the
    result), `last` (the counter's last busy clock: the latched inputs are read up to it) and the
    pipeline cuts inside the layer (its latency is R + 1 + cuts)."""

    outputs: list[int]
    done: int
    last: int
    cuts: int


class LayerPipe:
    """The cuts of one folded layer: registers at part boundaries, and the loop's delayed controls."""

    def __init__(self, m: Machine, name: str, budget: float | None) -> None:
        self.m, self.name, self.budget = m, name, budget
        self.cuts = 0
        self._t: list[float] = []  # settle times of the machine's signals so far (stateful.settle_times)

    def arrival(self, sid: int) -> float:
        """When signal sid settles within its clock (ns from the registers and ports it reads)."""
        return settle_times(self.m, self._t)[sid]

    def cut(self, groups: list[list[int]], next_ns: float) -> list[list[int]]:
        """The signals of a part boundary, registered (one more cut) when the part after it, taking
        `next_ns`, would end past the budget; unchanged otherwise. `groups` are all the signals that
        cross the boundary (a constant is passed through: it needs no register)."""
        if self.budget is None:
            return groups
        latest = max((self.arrival(s) for g in groups for s in g), default=0.0)
        if latest <= 0.0 or latest + next_ns <= self.budget:
            return groups
        self.cuts += 1
        return [[self.m.delayed(s, 1, f'{self.name}_pipe{self.cuts}') for s in g] for g in groups]

    def staged(self, ins: list[int], build) -> list[int]:
        """The signals `build(netlist, inputs)` computes from `ins` (combinational, any ops of netlist.py),
        pipelined by the budget (machine_stages.staged: built in a scratch netlist, staged as pipeline.schedule
        does, placed with registers where a value crosses stages): one more cut per stage boundary, every
        output as of the last stage. Without a budget it is built directly."""
        if self.budget is None:
            return build(self.m, ins)
        (out,), depth = staged(self.m, [ins], lambda nl, groups: build(nl, groups[0]),
                               (self.budget + STAGE_OVERHEAD_NS, 'auto'), f'{self.name}_pipe{self.cuts}', self.arrival)
        self.cuts += depth
        return out

    def loop_controls(self, count: int, busy: int, rf: int) -> tuple[int, int, int]:
        """The counter and busy as the loop sees them (delayed by the cuts) and its last flag: (count, busy, last)."""
        m = self.m
        count = m.delayed(count, self.cuts, f'{self.name}_count', reset=0)
        busy = m.delayed(busy, self.cuts, f'{self.name}_busy', reset=0)
        return count, busy, m.both(busy, m.flag(count, [int(c == rf - 1) for c in range(rf)]))


def loop_ns(acc_bits: int, options: int = 2) -> float:
    """The accumulate loop after the last cut: the accumulator multiplexer (or bias select), one adder."""
    return LUT_NS * max(1, (max(options, 2) - 1).bit_length() // 2) + adder_ns(acc_bits)


__all__ = ['FoldedRows', 'LayerPipe', 'MUL_NS', 'adder_ns', 'loop_ns', 'stage_budget', 'tree_ns']
