"""Parsers for the vendor reports of an HLS project: C synthesis (xml, rpt), co-simulation, Vivado synthesis.

`parse_report(project_dir)` finds whichever reports exist and returns::

    {'csynth': {...} | None,        # C synthesis estimates, CSYNTH_KEYS
     'cosim': {...} | None,         # C/RTL co-simulation result, COSIM_KEYS
     'vivado_synth': {...} | None,  # Vivado logic synthesis, VSYNTH_KEYS
     'files': {kind: path relative to project_dir},
     'errors': [str],               # reports that exist but could not be read
     'CSynthesisReport': {...}, 'CosimReport': {...}, 'VivadoSynthReport': {...}}  # hls4ml's keys

Every field a report does not give is None, never an error. Resources use one vocabulary for every
tool: LUT, FF, DSP (Vivado HLS calls it DSP48E), BRAM_18K, URAM. Vivado synthesis counts block RAM
in 36 Kb tiles (``Block RAM Tile``); BRAM_18K is twice that, and ``BRAM_tiles`` keeps the tile count.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

RESOURCES = ('LUT', 'FF', 'DSP', 'BRAM_18K', 'URAM')

CSYNTH_KEYS = ('tool', 'version', 'top', 'part', 'target_clock_ns', 'clock_uncertainty_ns', 'estimated_clock_ns',
               'latency_min', 'latency_max', 'latency_min_ns', 'latency_max_ns', 'interval_min', 'interval_max',
               'pipeline_type', *RESOURCES, 'available', 'source')
COSIM_KEYS = ('rtl', 'status', 'latency_min', 'latency_avg', 'latency_max', 'interval_min', 'interval_avg',
              'interval_max', 'source')
VSYNTH_KEYS = ('tool', 'version', 'top', 'part', *RESOURCES, 'BRAM_tiles', 'available', 'target_clock_ns',
               'wns_ns', 'achieved_clock_ns', 'source')

# Resource names as the tools spell them -> ours.
_HLS_RESOURCE_NAMES = {'LUT': 'LUT', 'FF': 'FF', 'DSP': 'DSP', 'DSP48E': 'DSP', 'DSP48': 'DSP',
                       'BRAM_18K': 'BRAM_18K', 'URAM': 'URAM'}
# First cell of Vivado's report_utilization rows -> ours (UltraScale says CLB, 7-series Slice).
_VIVADO_ROWS = {'CLB LUTs': 'LUT', 'Slice LUTs': 'LUT', 'CLB Registers': 'FF', 'Slice Registers': 'FF',
                'DSPs': 'DSP', 'Block RAM Tile': 'BRAM_tiles', 'URAM': 'URAM'}
_TIME_UNITS_NS = {'ps': 1e-3, 'ns': 1.0, 'us': 1e3, 'ms': 1e6, 's': 1e9, 'sec': 1e9}


# ---------------------------------------------------------------------------- values
def to_int(text: str | None) -> int | None:
    """'123' -> 123, '1.0' -> 1; None for '-', '?', 'undef', 'NA' or anything else."""
    value = to_float(text)
    return int(value) if value is not None and value == int(value) else None


def to_float(text: str | None) -> float | None:
    """The leading decimal number of `text` ('4.360 ns' -> 4.36), None when there is none."""
    if text is None:
        return None
    match = re.match(r'\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)', text)
    return float(match.group(1)) if match else None


def to_ns(text: str | None) -> float | None:
    """A time with its unit ('45.000 ns', '1.2 us', '0.5') in nanoseconds; a bare number is ns."""
    value = to_float(text)
    if value is None:
        return None
    unit = re.search(r'(ps|ns|us|ms|sec|s)\s*$', text.strip())
    return value * _TIME_UNITS_NS[unit.group(1)] if unit else value


def _empty(keys: tuple[str, ...]) -> dict:
    out = dict.fromkeys(keys)
    if 'available' in out:
        out['available'] = dict.fromkeys(RESOURCES)
    return out


def _tool_for(version: str | None) -> str | None:
    """Vivado HLS ended with 2020.1; Vitis HLS took over with 2020.2."""
    match = re.match(r'(\d{4})\.(\d+)', version or '')
    if not match:
        return None
    return 'Vitis HLS' if (int(match.group(1)), int(match.group(2))) >= (2020, 2) else 'Vivado HLS'


# ---------------------------------------------------------------------------- text tables
def _tables(lines: list[str]) -> list[list[list[str]]]:
    """The ASCII tables of a report: each a list of rows, each row the list of its stripped cells.

    A table is a run of lines starting with '|' or '+'; '+---' rule lines are dropped.
    """
    tables: list[list[list[str]]] = []
    current = None
    for line in lines:
        stripped = line.strip()
        if stripped[:1] in ('|', '+'):
            if current is None:
                current = []
                tables.append(current)
            if stripped.startswith('|'):
                current.append([cell.strip() for cell in stripped.strip('|').split('|')])
        else:
            current = None
    return [t for t in tables if t]


# ---------------------------------------------------------------------------- C synthesis
def parse_csynth_xml(path: str | Path) -> dict:
    """C synthesis estimates from csynth.xml / <top>_csynth.xml (Vivado HLS and Vitis HLS)."""
    root = ET.parse(path).getroot()
    for element in root.iter():
        if isinstance(element.tag, str) and '}' in element.tag:
            element.tag = element.tag.split('}', 1)[1]

    def text(xpath: str) -> str | None:
        node = root.find(xpath)
        return node.text.strip() if node is not None and node.text and node.text.strip() else None

    out = _empty(CSYNTH_KEYS)
    out['source'] = str(path)
    out['version'] = text('ReportVersion/Version')
    out['tool'] = _tool_for(out['version'])
    out['top'] = text('UserAssignments/TopModelName')
    out['part'] = text('UserAssignments/Part')
    out['target_clock_ns'] = to_ns(text('UserAssignments/TargetClockPeriod'))
    out['clock_uncertainty_ns'] = to_ns(text('UserAssignments/ClockUncertainty'))
    out['estimated_clock_ns'] = to_ns(text('PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod'))
    latency = 'PerformanceEstimates/SummaryOfOverallLatency/'
    out['latency_min'] = to_int(text(latency + 'Best-caseLatency'))
    out['latency_max'] = to_int(text(latency + 'Worst-caseLatency'))
    out['latency_min_ns'] = to_ns(text(latency + 'Best-caseRealTimeLatency'))
    out['latency_max_ns'] = to_ns(text(latency + 'Worst-caseRealTimeLatency'))
    out['interval_min'] = to_int(text(latency + 'Interval-min'))
    out['interval_max'] = to_int(text(latency + 'Interval-max'))
    out['pipeline_type'] = text(latency + 'PipelineType') or text('PerformanceEstimates/PipelineType')
    for section, target in (('Resources', out), ('AvailableResources', out['available'])):
        node = root.find('AreaEstimates/' + section)
        for child in node if node is not None else ():
            name = _HLS_RESOURCE_NAMES.get(child.tag)
            if name is not None:
                target[name] = to_int(child.text)
    _fill_latency_ns(out)
    return out


def parse_csynth_rpt(path: str | Path) -> dict:
    """C synthesis estimates from the text report csynth.rpt / <top>_csynth.rpt."""
    content = Path(path).read_text(errors='replace')
    out = _empty(CSYNTH_KEYS)
    out['source'] = str(path)
    header = re.search(r"==\s*(Vivado|Vitis) HLS Report for '(\w+)'", content)
    if header:
        out['tool'] = f'{header.group(1)} HLS'
        out['top'] = header.group(2)
    version = re.search(r'^\*\s*Version:\s*(\S+)', content, re.M)
    out['version'] = version.group(1) if version else None
    out['tool'] = out['tool'] or _tool_for(out['version'])
    part = re.search(r'^\*\s*Target device:\s*(\S+)', content, re.M)
    out['part'] = part.group(1) if part else None

    for table in _tables(content.splitlines()):
        head = ' '.join(table[0])
        if 'Clock' in table[0] and 'Target' in head and 'Estimated' in head and out['target_clock_ns'] is None:
            row = next((r for r in table[1:] if len(r) >= 3 and r[0]), None)
            if row:
                out['target_clock_ns'], out['estimated_clock_ns'] = to_ns(row[1]), to_ns(row[2])
                out['clock_uncertainty_ns'] = to_ns(row[3]) if len(row) > 3 else None
        elif head.startswith('Latency') and 'Pipeline' in head and out['latency_max'] is None:
            # Summary table: min/max cycles, [min/max absolute], interval min/max, pipeline type.
            rows = [r for r in table[2:] if r and r[0] not in ('', 'min')]
            if not rows:
                continue
            row = rows[0]
            absolute = 'absolute' in head
            cells = row + [None] * 7
            out['latency_min'], out['latency_max'] = to_int(cells[0]), to_int(cells[1])
            if absolute:
                out['latency_min_ns'], out['latency_max_ns'] = to_ns(cells[2]), to_ns(cells[3])
                cells = cells[2:]
            out['interval_min'], out['interval_max'] = to_int(cells[2]), to_int(cells[3])
            out['pipeline_type'] = cells[4] or None
        elif table[0][0] == 'Name' and 'FF' in table[0]:
            columns = [_HLS_RESOURCE_NAMES.get(c) for c in table[0][1:]]
            for row in table[1:]:
                target = {'Total': out, 'Available': out['available']}.get(row[0])
                for name, cell in zip(columns, row[1:]):
                    if target is not None and name is not None:
                        target[name] = to_int(cell)
    _fill_latency_ns(out)
    return out


def _fill_latency_ns(out: dict) -> None:
    """Absolute latency = cycles x target period, as the HLS tools compute it, when the report omits it."""
    period = out['target_clock_ns']
    for key in ('latency_min', 'latency_max'):
        if out[key + '_ns'] is None and out[key] is not None and period is not None:
            out[key + '_ns'] = out[key] * period


def merge(primary: dict | None, secondary: dict | None) -> dict | None:
    """`primary` with its None fields (and None available resources) taken from `secondary`."""
    if primary is None or secondary is None:
        return primary if primary is not None else secondary
    out = dict(primary)
    for key, value in secondary.items():
        if key == 'available':
            out[key] = {k: v if v is not None else value.get(k) for k, v in primary[key].items()}
        elif out.get(key) is None:
            out[key] = value
    return out


# ---------------------------------------------------------------------------- co-simulation
def parse_cosim_rpt(path: str | Path) -> dict:
    """C/RTL co-simulation status, latency and interval (cycles) from <top>_cosim.rpt."""
    out = _empty(COSIM_KEYS)
    out['source'] = str(path)
    for table in _tables(Path(path).read_text(errors='replace').splitlines()):
        for row in table:
            if row[0] in ('Verilog', 'VHDL') and len(row) >= 2 and row[1] != 'NA':
                cells = row + [None] * 8
                out.update(rtl=row[0], status=row[1], latency_min=to_int(cells[2]), latency_avg=to_float(cells[3]),
                           latency_max=to_int(cells[4]), interval_min=to_int(cells[5]),
                           interval_avg=to_float(cells[6]), interval_max=to_int(cells[7]))
                return out
    return out


# ---------------------------------------------------------------------------- Vivado synthesis
def parse_vivado_utilization(path: str | Path) -> dict:
    """Resources used and available from Vivado's report_utilization output (vivado_synth.rpt)."""
    content = Path(path).read_text(errors='replace')
    out = _empty(VSYNTH_KEYS)
    out['source'] = str(path)
    available: dict[str, float | None] = {}
    version = re.search(r'Tool Version\s*:\s*Vivado v\.?(\S+)', content)
    out['tool'], out['version'] = ('Vivado', version.group(1)) if version else (None, None)
    design = re.search(r'^\|\s*Design\s*:\s*(\S+)', content, re.M)
    out['top'] = design.group(1) if design else None
    device = re.search(r'^\|\s*Device\s*:\s*(\S+)', content, re.M)
    out['part'] = device.group(1) if device else None
    for table in _tables(content.splitlines()):
        header = table[0]
        if 'Site Type' not in header or 'Used' not in header:
            continue
        used_col = header.index('Used')
        avail_col = header.index('Available') if 'Available' in header else None
        for row in table[1:]:
            name = _VIVADO_ROWS.get(row[0].rstrip('*').strip())
            if name is None or out[name] is not None or len(row) <= used_col:
                continue  # the first table naming a resource is its summary
            out[name] = _number(row[used_col])
            available[name] = _number(row[avail_col]) if avail_col is not None and len(row) > avail_col else None
    tiles = out['BRAM_tiles']
    out['BRAM_18K'] = int(round(2 * tiles)) if tiles is not None else None
    for name in RESOURCES:
        source = 'BRAM_tiles' if name == 'BRAM_18K' else name
        value = available.get(source)
        out['available'][name] = (int(round(2 * value)) if name == 'BRAM_18K' else value) if value is not None else None
    return out


def parse_vivado_timing(path: str | Path) -> dict:
    """Worst negative slack and clock period from report_timing_summary output (vivado_timing.rpt)."""
    lines = Path(path).read_text(errors='replace').splitlines()
    out = {'wns_ns': None, 'target_clock_ns': None}
    for i, line in enumerate(lines):
        if 'WNS(ns)' in line and out['wns_ns'] is None:
            names = re.split(r'\s{2,}', line.strip())
            values = next((v.split() for v in lines[i + 1:i + 4] if v.strip() and not set(v.strip()) <= set('- ')), [])
            if 'WNS(ns)' in names and len(values) > names.index('WNS(ns)'):
                out['wns_ns'] = to_float(values[names.index('WNS(ns)')])
        if line.strip().startswith('Clock') and 'Period(ns)' in line and out['target_clock_ns'] is None:
            for row in lines[i + 1:i + 6]:
                fields = row.split()
                if fields and not set(row.strip()) <= set('- '):
                    period = re.search(r'\}\s+([0-9.]+)', row)
                    out['target_clock_ns'] = float(period.group(1)) if period else None
                    break
    return out


def _number(text: str | None) -> int | float | None:
    value = to_float(text)
    if value is None:
        return None
    return int(value) if value == int(value) else value


# ---------------------------------------------------------------------------- finding reports
def find_reports(project_dir: str | Path, project_name: str | None = None) -> dict[str, Path]:
    """Paths of the reports present: csynth_xml, csynth_rpt, cosim_rpt, vivado_synth_rpt, vivado_timing_rpt.

    Looks in the tcl-project layout ``<project>_prj/solution1/{syn,sim}/report/`` (Vivado HLS, Vitis HLS
    with open_project, any solution name) and the Vitis unified-component layout
    ``<component>/hls/{syn,sim}/report/``. The top function is `project_name`, else inferred from the
    ``<name>_prj`` folder.
    """
    root = Path(project_dir)
    found: dict[str, Path] = {}
    solutions: list[tuple[Path, str | None]] = []  # (folder holding syn/ and sim/, top function)
    for prj in sorted(p for p in root.glob('*_prj') if p.is_dir()):
        top = project_name or prj.name[:-len('_prj')]
        subdirs = [p for p in prj.iterdir() if (p / 'syn').is_dir() or (p / 'sim').is_dir()]
        solutions += [(p, top) for p in sorted(subdirs, key=lambda p: (p.name != 'solution1', p.name))]
    solutions += [(p, project_name) for p in sorted(root.glob('*/hls')) if p.is_dir()]
    for solution, top in solutions:
        syn, sim = solution / 'syn' / 'report', solution / 'sim' / 'report'
        names = [f'{top}_csynth', 'csynth'] if top else ['csynth']
        for kind, folder, stems, ext in (('csynth_xml', syn, names, '.xml'), ('csynth_rpt', syn, names, '.rpt'),
                                         ('cosim_rpt', sim, [f'{top}_cosim'] if top else [], '.rpt')):
            if kind in found:
                continue
            for stem in stems:
                if (folder / (stem + ext)).is_file():
                    found[kind] = folder / (stem + ext)
                    break
            if kind == 'cosim_rpt' and kind not in found and folder.is_dir():
                candidates = sorted(folder.glob('*_cosim.rpt'))
                if len(candidates) == 1:
                    found[kind] = candidates[0]
    for kind, name in (('vivado_synth_rpt', 'vivado_synth.rpt'), ('vivado_timing_rpt', 'vivado_timing.rpt')):
        if (root / name).is_file():
            found[kind] = root / name
    return found


def parse_report(project_dir: str | Path, project_name: str | None = None) -> dict:
    """Every report present in the project, parsed; see the module docstring for the layout."""
    root = Path(project_dir)
    files = find_reports(root, project_name)
    errors: list[str] = []

    def read(kind: str, parser):
        if kind not in files:
            return None
        try:
            result = parser(files[kind])
        except (OSError, ET.ParseError, ValueError) as exc:
            errors.append(f'{_relative(files[kind], root)}: could not be read ({exc})')
            return None
        if isinstance(result, dict) and 'source' in result:
            result['source'] = _relative(files[kind], root)
        return result

    csynth = merge(read('csynth_xml', parse_csynth_xml), read('csynth_rpt', parse_csynth_rpt))
    cosim = read('cosim_rpt', parse_cosim_rpt)
    vsynth = read('vivado_synth_rpt', parse_vivado_utilization)
    timing = read('vivado_timing_rpt', parse_vivado_timing)
    if timing is not None:
        vsynth = vsynth if vsynth is not None else _empty(VSYNTH_KEYS)
        vsynth['wns_ns'] = timing['wns_ns']
        vsynth['target_clock_ns'] = timing['target_clock_ns']
    if vsynth is not None:
        if vsynth['target_clock_ns'] is None and csynth is not None:
            vsynth['target_clock_ns'] = csynth['target_clock_ns']
        if vsynth['wns_ns'] is not None and vsynth['target_clock_ns'] is not None:
            vsynth['achieved_clock_ns'] = round(vsynth['target_clock_ns'] - vsynth['wns_ns'], 6)
    report = {'csynth': csynth, 'cosim': cosim, 'vivado_synth': vsynth,
              'files': {kind: _relative(path, root) for kind, path in files.items()}, 'errors': errors}
    report.update(hls4ml_view(report))
    return report


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def hls4ml_view(report: dict) -> dict:
    """The same numbers under hls4ml's report keys (CSynthesisReport, CosimReport, VivadoSynthReport).

    Values are numbers, not hls4ml's strings; keys whose value is unknown are left out.
    """
    view = {}
    if report.get('csynth'):
        c = report['csynth']
        pairs = {'TargetClockPeriod': c['target_clock_ns'], 'EstimatedClockPeriod': c['estimated_clock_ns'],
                 'BestLatency': c['latency_min'], 'WorstLatency': c['latency_max'],
                 'IntervalMin': c['interval_min'], 'IntervalMax': c['interval_max']}
        pairs.update({name: c[name] for name in RESOURCES})
        pairs.update({'Available' + name: c['available'][name] for name in RESOURCES})
        view['CSynthesisReport'] = {k: v for k, v in pairs.items() if v is not None}
    if report.get('cosim') and report['cosim']['status'] is not None:
        c = report['cosim']
        pairs = {'RTL': c['rtl'], 'Status': c['status'], 'LatencyMin': c['latency_min'],
                 'LatencyMax': c['latency_max'], 'IntervalMin': c['interval_min'], 'IntervalMax': c['interval_max']}
        view['CosimReport'] = {k: v for k, v in pairs.items() if v is not None}
    if report.get('vivado_synth'):
        v = report['vivado_synth']
        pairs = {'LUT': v['LUT'], 'FF': v['FF'], 'BRAM_18K': v['BRAM_18K'], 'URAM': v['URAM'], 'DSP48E': v['DSP']}
        view['VivadoSynthReport'] = {k: val for k, val in pairs.items() if val is not None}
    return view
