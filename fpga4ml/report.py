"""hls4ml's report module: `read_vivado_report`, `parse_vivado_report`, `print_vivado_report`.

For an HLS project (Vitis or Vivado back end) these read the reports the vendor tool left in the
project written by fpga4ml (``<project>_prj/<solution>/{csim,syn,sim}/report/``, vivado_synth.rpt)
with the parsers of fpga4ml.backends.hls.reports, and print the sections hls4ml prints. For a
Verilog project (its manifest.json) they print the design's latency from the manifest and the
Yosys report ``build()`` saved (synth_report.json, with the pre-synthesis estimate); given the
Model itself instead of its directory, the estimate is computed when there is no Yosys report.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .backends.hls import reports
from .backends.hls.tcl import VITIS_SCRIPT, VIVADO_SCRIPT

__all__ = ['parse_vivado_report', 'print_vivado_report', 'read_vivado_report']

VERILOG_MANIFEST = 'manifest.json'
YOSYS_REPORT = 'synth_report.json'


def _project(hls_dir: Any) -> tuple[Path, Any]:
    """(project directory, the Model when one was given); FileNotFoundError when the directory is missing."""
    model = None
    if hasattr(hls_dir, 'graph') and hasattr(hls_dir, 'output_dir'):
        model, hls_dir = hls_dir, hls_dir.output_dir
    path = Path(os.fspath(hls_dir))
    if not path.is_dir():
        raise FileNotFoundError(f'Path {str(path)!r} does not exist: give the output_dir of a written project')
    return path, model


def top_function(project_dir: Path) -> str | None:
    """The project's top function: from fpga4ml's build scripts, hls4ml's project.tcl or the one <name>_prj folder."""
    for script in (VITIS_SCRIPT, VIVADO_SCRIPT, 'project.tcl'):
        path = project_dir / script
        if path.is_file():
            match = re.search(r'^\s*set\s+project_name\s+"?([A-Za-z_]\w*)"?', path.read_text(errors='replace'), re.M)
            if match:
                return match.group(1)
    folders = [p.name[:-len('_prj')] for p in project_dir.glob('*_prj') if p.is_dir()]
    return folders[0] if len(folders) == 1 else None


def solutions(solution_root: Path) -> list[str]:
    """The solution folders of an HLS project folder (solution1 first, then by name)."""
    found = [p.name for p in solution_root.iterdir()
             if p.is_dir() and any((p / step).is_dir() for step in ('csim', 'syn', 'sim'))]
    return sorted(found, key=lambda name: (name != 'solution1', name))


# ---------------------------------------------------------------------------- read (print)
def read_vivado_report(hls_dir, full_report: bool = False) -> None:
    """Print the C simulation, C synthesis and co-simulation reports of every solution, as hls4ml does.

    `hls_dir` is the project directory (a converted Model is accepted too). full_report=True prints
    the whole synthesis report, otherwise it stops before the per-instance details. For a Verilog
    project it prints the latency from manifest.json and the Yosys report of build().
    """
    project_dir, model = _project(hls_dir)
    if (project_dir / VERILOG_MANIFEST).is_file():
        print(format_verilog_report(project_dir, model))
        return
    top = top_function(project_dir)
    if top is None:
        print('Unable to read project data. Exiting.')
        return
    solution_root = project_dir / f'{top}_prj'
    if not solution_root.is_dir():
        print(f'Project {top}_prj does not exist. Run hls_model.build() (it needs Vitis HLS or Vivado HLS) '
              f'to create it in {project_dir}.')
        return
    found = solutions(solution_root)
    print(f'Found {len(found)} solution(s) in {solution_root}.')
    for name in found:
        print(f'Reports for solution "{name}":\n')
        _print_solution(solution_root / name, top, full_report)


def _print_solution(folder: Path, top: str, full_report: bool) -> None:
    """hls4ml's three sections for one solution, each or its 'not found' line."""
    csim = folder / 'csim' / 'report' / f'{top}_csim.log'
    if csim.is_file():
        print('C SIMULATION RESULT:')
        print(csim.read_text(errors='replace'))
    else:
        print('C simulation report not found.')
    synth = folder / 'syn' / 'report' / f'{top}_csynth.rpt'
    if synth.is_file():
        print('SYNTHESIS REPORT:')
        for line in synth.read_text(errors='replace').splitlines(keepends=True)[2:]:
            if not full_report and '* DSP48' in line:
                break
            print(line, end='')
    else:
        print('Synthesis report not found.')
    cosim = folder / 'sim' / 'report' / f'{top}_cosim.rpt'
    if cosim.is_file():
        print('CO-SIMULATION RESULT:')
        print(cosim.read_text(errors='replace'))
    else:
        print('Co-simulation report not found.')


# ---------------------------------------------------------------------------- parse (dict)
def parse_vivado_report(hls_dir) -> dict:
    """The project's reports as a dict: hls4ml's keys (CSynthesisReport, CosimReport, VivadoSynthReport,
    CSimResults, CosimResults) with numbers for values, plus fpga4ml's (csynth, cosim, vivado_synth, files).

    Prints hls4ml's line for each report that is missing. For a Verilog project: {'manifest': ...,
    'YosysReport': synth_report.json or None, 'estimate': ... (when a Model is given or the Yosys report has it),
    'Breakdown': the Yosys cells per layer and op kind (fpga4ml.synth.breakdown; when a Model is given and
    build() has run)}.
    """
    project_dir, model = _project(hls_dir)
    if (project_dir / VERILOG_MANIFEST).is_file():
        return _verilog_reports(project_dir, model)
    report = reports.parse_report(project_dir, top_function(project_dir))
    for key, name in (('CSimResults', 'csim_results.log'), ('CosimResults', 'rtl_cosim_results.log')):
        log = project_dir / 'tb_data' / name
        if log.is_file():
            report[key] = [line.split() for line in log.read_text(errors='replace').splitlines()]
    for key, missing in (('CSynthesisReport', 'CSynthesis report not found.'),
                         ('VivadoSynthReport', 'Vivado synthesis report not found.'),
                         ('CosimReport', 'Cosim report not found.')):
        if key not in report:
            print(missing)
    return report


def _verilog_reports(project_dir: Path, model) -> dict:
    """manifest.json, synth_report.json (None when build() has not run) and the estimate."""
    out: dict[str, Any] = {'manifest': _json(project_dir / VERILOG_MANIFEST)}
    yosys = project_dir / YOSYS_REPORT
    out['YosysReport'] = _json(yosys) if yosys.is_file() else None
    estimate = (out['YosysReport'] or {}).get('estimate')
    if estimate is None and model is not None:
        estimate = model.estimate()
    out['estimate'] = estimate
    if model is not None and out['YosysReport'] is not None and (project_dir / 'netlist.json').is_file():
        from .synth.breakdown import breakdown
        out['Breakdown'] = breakdown(model, project_dir, out['YosysReport'].get('family'))
    return out


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f'{path}: could not be read as JSON ({err})') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object')
    return data


def format_verilog_report(project_dir: Path, model=None) -> str:
    """The text read_vivado_report prints for a Verilog project."""
    info = _verilog_reports(project_dir, model)
    m = info['manifest']
    period = m.get('clock_period_ns')
    latency = m.get('latency')
    lines = [f"VERILOG PROJECT {m.get('top')!r} in {project_dir}:",
             f"    Latency:      {latency} cycles" + (f' ({latency * period:g} ns at {period:g} ns)'
                                                      if isinstance(latency, int) and period else ''),
             f"    II:           {m.get('ii')}",
             f"    Architecture: {m.get('architecture')}, pipeline {m.get('pipeline')}"]
    yosys = info['YosysReport']
    if yosys is None:
        lines.append('Yosys synthesis report not found (run hls_model.build() to synthesize with Yosys).')
    else:
        lines.append(f"YOSYS SYNTHESIS REPORT ({yosys.get('yosys_version', 'Yosys')}, family {yosys.get('family')}, "
                     f"script {yosys.get('script')}):")
        lines += [f'    {key + ":":<22}{yosys[key]}' for key in ('LUT', 'FF', 'CARRY', 'DSP', 'BRAM', 'SRL',
                                                                   'logic_levels', 'critical_delay_ns',
                                                                   'fmax_mhz_estimate', 'fmax_mhz') if key in yosys]
    if info.get('Breakdown'):
        from .synth.breakdown import format_breakdown
        lines += ['YOSYS CELLS PER LAYER AND OP KIND:', format_breakdown(info['Breakdown'])]
    estimate = info['estimate']
    if estimate is not None:
        lines.append('PRE-SYNTHESIS ESTIMATE (fpga4ml cost model):')
        lines += [f'    {key + ":":<22}{estimate[key]}' for key in ('LUT', 'FF', 'DSP', 'latency_cycles',
                                                                      'fmax_mhz_estimate') if key in estimate]
    return '\n'.join(lines)


# ---------------------------------------------------------------------------- print (tables)
def _header(title: str) -> str:
    sep = '=' * 54 + '\n'
    return '\n' + sep + '== ' + title + '\n' + sep


def _table(title: str, rows: dict[str, Any]) -> str:
    width = max(len(name) for name in rows) + 1
    return f'\n - {title}:\n' + '\n'.join(f'    {name + ":":<{width}} {value}' for name, value in rows.items()) + '\n'


def _cycles(n: int, period: float | None) -> str:
    """'9 (45.0 ns)': hls4ml's cycles with the time at the target clock (ns, µs, ms or s)."""
    if period is None:
        return str(n)
    t, unit = n * float(period), 'ns'
    for bigger in ('\u00b5s', 'ms', 's'):
        if t < 1000:
            break
        t, unit = t / 1000, bigger
    return f'{n} ({t} {unit})'


def _used(report: dict, name: str) -> str:
    used, avail = report.get(name), report.get('Available' + name)
    if used is None:
        return 'N/A'
    return f'{used} / {avail} ({round(used / avail * 100, 1)}%)' if avail else str(used)


def format_vivado_report(report: dict) -> str:
    """hls4ml's text tables for a parse_vivado_report dict (C synthesis, Vivado synthesis, co-simulation)."""
    body = ''
    c = report.get('CSynthesisReport')
    if c:
        period = c.get('TargetClockPeriod')
        body += _header('C Synthesis report')
        body += _table('Performance estimates', {
            'Best-case latency': _cycles(c['BestLatency'], period) if 'BestLatency' in c else 'N/A',
            'Worst-case latency': _cycles(c['WorstLatency'], period) if 'WorstLatency' in c else 'N/A',
            'Interval Min': c.get('IntervalMin', 'N/A'), 'Interval Max': c.get('IntervalMax', 'N/A'),
            'Estimated Clock Period': c.get('EstimatedClockPeriod', 'N/A')})
        body += _table('Resource estimates', {name: _used(c, name) for name in ('BRAM_18K', 'DSP', 'FF', 'LUT')}
                       | {'URAM': _used(c, 'URAM') if c.get('AvailableURAM') else 'N/A'})
    v = report.get('VivadoSynthReport')
    if v:
        body += _header('Vivado Synthesis report')
        body += _table('Resource utilization', {'BRAM_18K': v.get('BRAM_18K', 'N/A'), 'DSP48E': v.get('DSP48E', 'N/A'),
                                                'FF': v.get('FF', 'N/A'), 'LUT': v.get('LUT', 'N/A'),
                                                'URAM': v.get('URAM', 'N/A')})
    s = report.get('CosimReport')
    if s:
        body += _header('Co-Simulation report')
        body += _table('Performance', {'Status': s.get('Status', 'N/A'),
                                       'Best-case latency': s.get('LatencyMin', 'N/A'),
                                       'Worst-case latency': s.get('LatencyMax', 'N/A'),
                                       'Interval Min': s.get('IntervalMin', 'N/A'),
                                       'Interval Max': s.get('IntervalMax', 'N/A')})
    return body


def print_vivado_report(report_dict: dict) -> None:
    """Print a parse_vivado_report dict as hls4ml's text tables (hls4ml shows HTML in notebooks; this prints text)."""
    print(format_vivado_report(report_dict))
