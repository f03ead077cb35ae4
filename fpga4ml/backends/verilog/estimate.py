"""A pre-synthesis cost model: LUT, FF, DSP, latency and Fmax from the scheduled netlist.

Costs are for 6-input-LUT devices with carry chains (UltraScale+/7-series): an adder of W bits
costs one LUT per result bit above the bits that pass through unchanged (the shifted-in zeros
of its other operand), less half a LUT per bit where a non-negative operand is zero-extended
(`binary_add_luts`); comparisons pack two bits per LUT on the carry chain; a 2:1 multiplexer
costs half a LUT per bit; a ROM costs one LUT6 per 64 entries per output bit; multipliers go to
DSP blocks (27x18 each), as Yosys maps them. Registers are
counted exactly from the schedule. The counts are then scaled per op class to what Yosys makes
of them (CALIBRATION); docs/verilog.md compares the result with Yosys.
"""

from __future__ import annotations

import math

import numpy as np

from .netlist import Netlist, Signal, zero_lsbs
from .pipeline import STAGE_OVERHEAD_NS, Schedule, fused_critical_ns
from .ternary import fusion, lut_count, pair_plan

#: Yosys maps every multiply with operands of at least this many bits to DSP blocks (measured on xcup)
DSP_MIN_BITS = 2
#: Yosys maps our structures more compactly than the raw counts above suggest (constant operands,
#: shared sign logic, ROMs of smooth tables); each op class's count is scaled by a factor fitted
#: (non-negative least squares on relative errors) to Yosys 0.70 'fast' xcup results of seven
#: designs, bench/bench_estimate.py. Leave-one-out errors: -11 % .. +9 % except a table-heavy
#: design (+26 %); docs/verilog.md has the table.
CALIBRATION = {'add': 0.92, 'neg': 0.92, 'cast': 0.48, 'max': 0.28, 'min': 0.28, 'select': 0.28, 'rom': 0.076,
               'mul': 0.27, 'divc': 0.27}


def _lut_cost(sig: Signal, nl: Netlist, zeros: list[int] | None = None) -> tuple[float, int]:
    """(LUTs, DSPs) of one signal (`zeros`: netlist.zero_lsbs, for adders)."""
    op, W = sig.op, sig.width
    if op in ('input', 'const', 'shl', 'shr'):
        return 0.0, 0
    if op == 'add':
        return binary_add_luts(sig, nl, zeros), 0
    if op == 'neg':
        return float(W), 0
    if op == 'cast':
        a = nl[sig.args[0]]
        t = sig.p['type']
        s = sig.p['frac_in'] - t.frac
        cost = float(W) if s > 0 and t.rounding != 'TRN' else 0.0
        if t.overflow != 'WRAP' and (a.lo < sig.lo or a.hi > sig.hi):
            cost += math.ceil(a.width / 2) + W / 2
        return cost, 0
    if op in ('max', 'min'):
        wc = max(nl[a].width for a in sig.args)
        return math.ceil(wc / 2) + W / 2, 0
    if op == 'select':
        return math.ceil(nl[sig.args[0]].width / 6) + W / 2, 0
    if op == 'rom':
        return _rom_cost(sig, nl), 0
    if op == 'mux':  # per bit, a LUT6 per 4 distinct options (MUXF7/F8 join them)
        return W * math.ceil(len(set(sig.args[1:])) / 4), 0
    if op == 'mul':
        consts = [abs(nl[a].lo) for a in sig.args if nl[a].is_const]
        if consts and consts[0] & (consts[0] - 1) == 0:  # times 0 or +-2^k: wiring and a negation
            return float(W), 0
        wa, wb = sorted(nl[a].width for a in sig.args)
        if wa >= DSP_MIN_BITS:
            return 0.0, math.ceil(wb / 27) * math.ceil(wa / 18)
        return wa * wb / 2, 0
    if op == 'divc':
        return W * W / 2, 0
    raise ValueError(f'no cost model for op {op!r}')


def binary_add_luts(sig: Signal, nl: Netlist, zeros: list[int] | None = None) -> float:
    """LUTs of a binary adder: one per result bit above the bits that pass through (the shifted-in zeros of
    the other operand), less half a LUT per bit where a non-negative operand is zero-extended.

    emit.py writes a non-negative signal's sign bit as a constant 0, so above such an operand only
    the other operand and the carry remain; Yosys saves about half of those bits (dense JSC MLP:
    1,790 LUT of the 3,930 bits the emission makes constant). The sign bit of a non-negative sum is
    not built either. With `zeros` (netlist.zero_lsbs), an operand's low bits known to be 0 pass the
    other operand's bits through too.
    """
    p = sig.p
    width = sig.live_bits
    za, zb = (zeros[a] for a in sig.args) if zeros else (0, 0)
    low = max(p['sa'] + za, p['sb'] + zb)
    zero_ext = 0
    for a, s in zip(sig.args, (p['sa'], p['sb'])):
        arg = nl[a]
        if arg.lo >= 0 and not arg.is_const:
            zero_ext = max(zero_ext, width - max(low, s + arg.live_bits))
    return max(1.0, width - low - zero_ext / 2)


def _rom_cost(sig: Signal, nl: Netlist) -> float:
    """LUTs of a ROM: per output bit, a LUT6 per 64 entries, or less when the bit changes rarely
    along the addresses (monotone tables: a few comparisons of the address suffice)."""
    a = nl[sig.args[0]]
    values = np.asarray(sig.p['values'][a.lo - sig.p['offset']:a.hi - sig.p['offset'] + 1], dtype=np.int64)
    entries, address_bits = len(values), max(1, a.width)
    cost = 0.0
    for b in range(sig.width):
        bits = (values >> b) & 1
        changes = int(np.count_nonzero(bits[1:] != bits[:-1]))
        cost += min(math.ceil(entries / 64), changes * math.ceil(address_bits / 6) / 2)
    return cost


def estimate_netlist(nl: Netlist, sched: Schedule, adders: str = 'off') -> dict:
    """The cost model's numbers for a scheduled netlist (see the module docstring).

    adders 'carry8'/'carry4': the adds emit.py fuses into three-input adders cost their exact count of
    LUT6_2 primitives (one per computed column, ternary.py), the absorbed adds nothing, and the
    critical stage is timed with them (a LUT level more than a binary add, pipeline.fused_critical_ns).
    """
    lut, dsp, ff = 0.0, 0, 0
    last = sched.last_use(nl)
    ops: dict[str, int] = {}
    written = fusion(nl, sched.stage, adders)   # what emit.write_module writes
    fused, need, skipped = written.fused, written.need, written.skipped
    zeros = written.zeros or zero_lsbs(nl)
    for sig in nl.signals:
        ops[sig.op] = ops.get(sig.op, 0) + 1
        if sig.id in skipped:
            continue
        if sig.id in fused:
            lut += lut_count(pair_plan(nl, sig.id, fused[sig.id], str, need[sig.id], written.zeros))
        else:
            lut_s, dsp_s = _lut_cost(sig, nl, zeros)
            lut += lut_s * CALIBRATION.get(sig.op, 1.0)
            dsp += dsp_s
        if not sig.is_const:
            ff += sig.live_bits * max(0, last[sig.id] - sched.stage[sig.id])
    ff += sched.latency  # the valid pipeline
    critical = fused_critical_ns(nl, sched.stage, fused, skipped) if fused else sched.critical_ns
    stage_ns = critical + (STAGE_OVERHEAD_NS if sched.latency else 0.0)
    return {
        'LUT': int(round(lut)),
        'FF': ff,
        'DSP': dsp,
        'latency_cycles': sched.latency,
        'ii': 1,
        'critical_stage_ns': round(stage_ns, 3),
        'fmax_mhz_estimate': round(1000.0 / stage_ns, 1) if stage_ns > 0 else None,
        'adders': ops.get('add', 0) + ops.get('neg', 0) - len(fused),
        'ternary_adders': len(fused),
        'signals': len(nl.signals),
    }


def estimate_stream(d, adders: str = 'off') -> dict:
    """The cost model of a streaming design: its kernels and head plus line buffers and collector
    (adders: the unrolled kernels' and head's, see estimate_netlist)."""
    from .emit import element_width

    from .stateful import Timing, estimate_machine

    parts = [estimate_netlist(s.netlist, s.schedule, adders) if s.rf == 1 else  # folded kernels (rf > 1): machines
             estimate_machine(s.netlist, Timing(s.latency, s.rf)) for s in d.stages]
    parts.append(estimate_netlist(d.head, d.head_schedule, adders) if d.head_timing is None else  # a folded head
                 estimate_machine(d.head, d.head_timing))
    out = {key: sum(p[key] for p in parts) for key in ('LUT', 'FF', 'DSP', 'adders', 'signals')}
    for stage in d.stages:
        out['FF'] += stage.line_bits + 4 * 16 + 1  # line buffer (each streamed value as deep as read), counters
    last = d.stages[-1]
    out['FF'] += last.out_hwc[0] * last.out_hwc[1] * last.out_hwc[2] * element_width(last.out_type) + 17
    if d.period > 1 or d.head_timing is not None:  # folded kernels or head: their multipliers
        out['multipliers'] = sum(p.get('multipliers', 0) for p in parts)
    crit = max(p['critical_stage_ns'] for p in parts)
    out.update({'latency_cycles': d.latency, 'ii': d.pixels * d.period,
                'critical_stage_ns': crit, 'fmax_mhz_estimate': round(1000.0 / crit, 1) if crit else None})
    return out
