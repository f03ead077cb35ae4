"""Yosys synthesis through the `pyosys` wheel, run in a child process.

`build_script` turns (sources, top, family, script) into a list of labelled Yosys commands,
`run_yosys` executes them in `python -m fpga4ml.synth._yosys_worker` (so Ctrl-C, a timeout or a
crash never takes the caller down and the memory is returned), streaming the Yosys log, and
`parse_report` turns the `stat -json` / `ltp` outputs into the resource report.

The scripts, the delay constants and the meaning of every number are documented in docs/synth.md.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from fpga4ml import procs
from fpga4ml.model_errors import BackendUnavailableError

PYOSYS_HINT = "pip install 'fpga4ml[rtl]'"
SCRIPTS = ('fast', 'default')

# ABC script of the 'fast' flow (abc9 -script syntax: leading '+' = inline script, ';' separates
# ABC commands, ',' stands for a space). It is the cheap script of BENCHMARKS.md with `&sweep`
# added: without it constant-input carry boxes survive and LUT/CARRY counts grow by ~30 %.
FAST_ABC9_SCRIPT = '+&st;&sweep;&if,-W,{wire_delay},-v;&ps,-l'

# Marker lines the worker prints between Yosys passes (never written by Yosys itself).
MARKER = '@@fpga4ml '


class SynthesisError(RuntimeError):
    """Yosys (or the place-and-route tool) stopped with an error; the message quotes it."""


@dataclass(frozen=True)
class DelayModel:
    """Arc delays (ns) of the timing estimate; values and sources are in docs/synth.md.

    Each arc delay includes the net that feeds the cell input, except the dedicated carry
    and wide-mux connections.
    """

    register: float      # clock-to-out + last net + setup of a register-to-register path
    lut: float           # net + LUT (also used for unknown combinational cells)
    carry_entry: float   # net + a carry cell from a non-carry input (S/DI/A/B -> CO/O)
    carry_hop: float     # dedicated carry-in -> carry-out of the next carry cell of a chain
    carry_exit: float    # carry-in -> sum output (ice40: SB_CARRY.CO -> SB_LUT4.I3 -> O)
    mux: float           # dedicated wide-LUT mux (MUXF7/MUXF8/PFUMX/L6MUX21)
    dsp: float           # net + a combinational DSP/multiplier cell


@dataclass(frozen=True)
class Family:
    """How to synthesize for, and count the cells of, one FPGA family."""

    name: str
    synth: str                         # stock synthesis command, without -top
    labels: tuple[str, ...]            # labels of the stock script, in order (`help synth_*`)
    fast_map_luts: tuple[str, ...]     # replaces the 'map_luts' label in the fast Xilinx flow
    groups: dict[str, dict[str, int]]  # report key -> {cell-type regex: weight}
    sequential: tuple[str, ...]        # cell-type globs that end a combinational path
    delay: DelayModel


_XILINX_LABELS = ('begin', 'prepare', 'map_dsp', 'coarse', 'map_memory', 'map_ffram', 'fine',
                  'map_cells', 'map_ffs', 'map_luts', 'finalize', 'check')
# Yosys 0.70 `help synth_xilinx`, label map_luts, for xc7/xcu/xcup without -nowidelut/-dff/-nosrl,
# with its `abc9` call replaced by the cheap script.
_XILINX_FAST_MAP_LUTS = (
    'opt_expr -mux_undef -noclkinv',
    'abc9 -luts 2:2,3,6:5,10,20 -script ' + FAST_ABC9_SCRIPT.format(wire_delay=300),
    'clean',
    'xilinx_srl -fixed -minlen 3',
    'techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6',
    'xilinx_dffopt',
    'opt_lut_ins -tech xilinx',
)
_XILINX_GROUPS = {
    'LUT': {r'LUT[1-6]|LUT6_2|INV': 1},   # INV is a LUT1 primitive; LUT6_2 one LUT with two outputs
    'FF': {r'FD[RSCP]E(_1)?': 1},
    'CARRY': {r'CARRY[48]': 1},
    'DSP': {r'DSP48E[12]': 1},
    'BRAM': {r'RAMB18E[12]': 1, r'RAMB36E[12]': 2},
    'SRL': {r'SRL16E|SRLC16E|SRLC32E': 1},
}
_XILINX_SEQUENTIAL = ('FD*', 'LD*', 'SRL*', 'RAMB*', 'URAM*', 'FIFO*', 'BUFG*', 'IBUF*', 'OBUF*')

_XCUP = Family(
    name='xcup', synth='synth_xilinx -family xcup -flatten -noiopad -noclkbuf',
    labels=_XILINX_LABELS, fast_map_luts=_XILINX_FAST_MAP_LUTS, groups=_XILINX_GROUPS,
    sequential=_XILINX_SEQUENTIAL,
    delay=DelayModel(register=0.5, lut=0.45, carry_entry=0.25, carry_hop=0.05, carry_exit=0.15, mux=0.1, dsp=2.0))

FAMILIES: dict[str, Family] = {
    'xcup': _XCUP,
    # 7-series: the same flow and cells, slower delays
    'xc7': replace(_XCUP, name='xc7', synth='synth_xilinx -family xc7 -flatten -noiopad -noclkbuf',
                   delay=DelayModel(register=0.9, lut=0.7, carry_entry=0.45, carry_hop=0.11, carry_exit=0.3,
                                    mux=0.3, dsp=3.5)),
    'ecp5': Family(
        name='ecp5', synth='synth_ecp5',
        labels=('begin', 'coarse', 'map_ram', 'map_ffram', 'map_gates', 'map_ffs', 'map_luts',
                'map_cells', 'check'),
        fast_map_luts=(),
        groups={'LUT': {r'LUT4': 1}, 'FF': {r'TRELLIS_FF': 1}, 'CARRY': {r'CCU2C': 1},
                'DSP': {r'MULT18X18D|ALU54B': 1}, 'BRAM': {r'DP16KD|PDPW16KD': 1},
                'SRL': {}},
        sequential=('TRELLIS_FF', 'DP16KD', 'PDPW16KD', 'TRELLIS_DPR16X4', 'EHXPLLL', 'DCC*'),
        delay=DelayModel(register=1.1, lut=1.35, carry_entry=1.55, carry_hop=0.07,
                         carry_exit=0.42, mux=0.3, dsp=5.6)),
    'ice40': Family(
        name='ice40', synth='synth_ice40',
        labels=('begin', 'flatten', 'coarse', 'map_ram', 'map_ffram', 'map_gates', 'map_ffs',
                'map_luts', 'map_cells', 'check'),
        fast_map_luts=(),
        groups={'LUT': {r'SB_LUT4': 1}, 'FF': {r'SB_DFF\w*': 1}, 'CARRY': {r'SB_CARRY': 1},
                'DSP': {r'SB_MAC16': 1}, 'BRAM': {r'SB_RAM40_4K\w*': 1}, 'SRL': {}},
        sequential=('SB_DFF*', 'SB_RAM*', 'SB_SPRAM*', 'SB_GB*', 'SB_IO*'),
        delay=DelayModel(register=1.5, lut=1.35, carry_entry=1.1, carry_hop=0.13,
                         carry_exit=0.6, mux=0.4, dsp=5.5)),
}


# --------------------------------------------------------------------------- script


def check_family(family: str) -> Family:
    """Return the Family of a name, or raise ValueError listing the accepted names."""
    if family not in FAMILIES:
        raise ValueError(f'unknown FPGA family {family!r}; accepted: {", ".join(FAMILIES)}')
    return FAMILIES[family]


def resolve_sources(sources) -> list[Path]:
    """A directory (its `*.v` files, sorted) or a list of files -> existing absolute paths."""
    if isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        files = sorted(Path(sources).glob('*.v'))
        if not files:
            raise FileNotFoundError(f'no *.v files in {sources}')
    else:
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        files = [Path(f) for f in items]
        if not files:
            raise ValueError('no Verilog sources given')
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f'Verilog source(s) not found: {", ".join(missing)}')
    return [f.resolve() for f in files]


def _quote(path: Path | str) -> str:
    """Quote a path for the Yosys command line."""
    text = str(path)
    if '"' in text:
        raise ValueError(f'path with a double quote is not supported by Yosys: {text}')
    return f'"{text}"'


def synth_steps(fam: Family, top: str, script: str) -> list[tuple[str, str]]:
    """The synthesis proper as (label, command) pairs, one per label of the stock script."""
    base = f'{fam.synth} -top {top}'
    labels = fam.labels
    steps = []
    for start, stop in zip(labels, labels[1:] + ('',)):
        if script == 'fast' and start == 'map_luts' and fam.fast_map_luts:
            steps += [('map_luts', cmd) for cmd in fam.fast_map_luts]
        else:
            steps.append((start, f'{base} -run {start}:{stop}'))
    return steps


def build_script(sources: Sequence[Path], top: str, family: str, script: str, workdir: Path,
                 netlist: Path) -> list[tuple[str, str]]:
    """All Yosys commands of a run as (label, command): read, synthesize, report, write netlist.

    The report steps write `stat.json` and `ltp.txt` into workdir; the mapped netlist (Yosys JSON,
    the input of nextpnr and of the timing estimate) goes to `netlist`.
    """
    fam = check_family(family)
    if script not in SCRIPTS:
        raise ValueError(f'unknown synthesis script {script!r}; accepted: {", ".join(SCRIPTS)}')
    if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_$]*', top):
        raise ValueError(f'invalid top module name {top!r}')
    include_dirs = dict.fromkeys(Path(s).parent for s in sources)   # for `include "..."
    includes = ' '.join(f'-I {_quote(d)}' for d in include_dirs)
    steps = [('read', f'read_verilog {includes} ' + ' '.join(_quote(s) for s in sources))]
    if script == 'fast':
        # ABC's `&verify` equivalence check costs 2-3x the mapping itself on adder-heavy designs.
        steps.append(('read', 'scratchpad -set abc9.verify 0'))
    steps += synth_steps(fam, top, script)
    seq = ' '.join(f't:{pattern}' for pattern in fam.sequential)
    steps += [
        ('report', f'tee -q -o {_quote(workdir / "stat.json")} stat -json'),
        ('report', f'select -set fpga4ml_seq {seq}'),
        ('report', f'tee -q -o {_quote(workdir / "ltp.txt")} ltp -noff w:* t:* @fpga4ml_seq %d'),
        ('report', 'select -clear'),
        ('write_json', f'write_json {_quote(netlist)}'),
    ]
    return steps


# --------------------------------------------------------------------------- process


def require_pyosys() -> None:
    """Raise BackendUnavailableError (with the install hint) when pyosys is not installed."""
    if importlib.util.find_spec('pyosys') is None:
        raise BackendUnavailableError(f'Yosys (pyosys) is not installed: {PYOSYS_HINT}')


def run_streaming(argv: list[str], log_path: Path, on_line: Callable[[str], None],
                  timeout: float | None, tag: str, cwd: Path | None = None) -> int:
    """Run argv, stream its merged stdout/stderr to log_path (without the worker's marker lines)
    and to on_line; return the exit code.

    The child runs in its own process group (fpga4ml.procs.stream): Ctrl-C, SIGTERM or the timeout
    (TimeoutError naming `tag`) kill the whole group, e.g. yosys-abc too, before propagating.
    """
    with open(log_path, 'w', encoding='utf-8') as log:
        def line(text: str) -> None:
            if not text.startswith(MARKER):
                log.write(text + '\n')
            on_line(text)
        return procs.stream(argv, line, cwd, timeout=timeout, name=tag)


@dataclass
class _Progress:
    """Collects the step markers of the worker and prints them with elapsed time."""

    tag: str
    enabled: bool
    start: float = field(default_factory=time.monotonic)
    step: tuple[str, str] = ('start', '')
    errors: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    version: str = ''

    def __call__(self, line: str) -> None:
        """Handle one log line of the child."""
        line = line.rstrip('\n')
        if line.startswith(MARKER):
            kind, _, rest = line[len(MARKER):].partition(' ')
            if kind == 'version':
                self.version = rest
            elif kind == 'step':
                label, _, command = rest.partition('\t')
                if label != self.step[0] or command.startswith('abc9'):
                    self.say(f'{label}: {command[:90]}')
                self.step = (label, command)
            return
        if 'ERROR:' in line:
            self.errors.append(line.strip())
        self.tail = (self.tail + [line])[-40:]

    def say(self, text: str) -> None:
        """Print one progress line to stderr."""
        if self.enabled:
            print(f'[{self.tag} {time.monotonic() - self.start:6.1f} s] {text}',
                  file=sys.stderr, flush=True)


def log_note(log_path: Path, keep: bool) -> str:
    """The '(full log: ...)' tail of an error message, or a hint when the log is not kept."""
    return f'(full log: {log_path})' if keep else '(pass output_dir to keep the log)'


def run_yosys(steps: list[tuple[str, str]], workdir: Path, log_path: Path, progress: bool = True,
              timeout: float | None = None, keep_log: bool = True) -> str:
    """Execute the steps in a worker process; return the Yosys version string.

    Raises SynthesisError quoting the Yosys ERROR line(s) when a pass fails.
    """
    require_pyosys()
    job = workdir / 'yosys_job.json'
    job.write_text(json.dumps({'steps': steps}, indent=1))
    watcher = _Progress('yosys', progress)
    argv = [sys.executable, '-m', 'fpga4ml.synth._yosys_worker', str(job)]
    rc = run_streaming(argv, log_path, watcher, timeout, 'Yosys', cwd=workdir)
    if rc != 0:
        label, command = watcher.step
        detail = ' | '.join(watcher.errors) or '\n'.join(watcher.tail[-15:])
        raise SynthesisError(f'Yosys failed in step {label!r} ({command}): {detail} '
                             + log_note(log_path, keep_log))
    watcher.say('done')
    return watcher.version


# --------------------------------------------------------------------------- report


def _cells_of(stat: dict, top: str) -> dict[str, int]:
    """Cell-type counts of the top module in a `stat -json` document."""
    modules = stat.get('modules', {})
    module = modules.get('\\' + top) or modules.get(top) or stat.get('design', {})
    cells = module.get('num_cells_by_type', {})
    return {name.lstrip('\\'): int(n) for name, n in sorted(cells.items())}


def count_group(cells: dict[str, int], patterns: dict[str, int]) -> int:
    """Weighted count of the cells whose type fully matches one of the regex patterns."""
    total = 0
    for name, n in cells.items():
        for pattern, weight in patterns.items():
            if re.fullmatch(pattern, name):
                total += n * weight
                break
    return total


def parse_ltp(text: str) -> int:
    """Length (cells) of the longest combinational path from `ltp` output; 0 when none."""
    match = re.search(r'\(length=(-?\d+)\)', text)
    return max(int(match.group(1)), 0) if match else 0


# --------------------------------------------------------------------------- timing estimate

CARRY_PORTS = {  # carry cell type -> (carry-in port, carry-out port)
    'CARRY4': ('CI', 'CO'), 'CARRY8': ('CI', 'CO'), 'CCU2C': ('CIN', 'COUT'),
    'SB_CARRY': ('CI', 'CO'),
}
MUX_RE = re.compile(r'MUXF[789]|PFUMX|L6MUX21')
DSP_RE = re.compile(r'DSP48E[12]|MULT18X18D|ALU54B|SB_MAC16')


def arc_delay(d: DelayModel, cell_type: str, in_port: str, out_port: str,
              driver: tuple[str, str] | None) -> float:
    """Delay (ns) from one input port to one output port of a cell; driver = (type, port) of the
    cell driving that input, None for a register, a top-level port or a constant."""
    from_carry_out = driver is not None and CARRY_PORTS.get(driver[0], ('', None))[1] == driver[1]
    if cell_type in CARRY_PORTS:
        cin, cout = CARRY_PORTS[cell_type]
        if in_port == cin and from_carry_out:
            return d.carry_hop if out_port == cout else d.carry_exit
        return d.carry_entry
    if from_carry_out and cell_type == 'SB_LUT4' and in_port == 'I3':
        return d.carry_exit
    if MUX_RE.fullmatch(cell_type):
        return d.mux
    if DSP_RE.fullmatch(cell_type):
        return d.dsp
    return d.lut


def lut_input_matters(cell: dict, in_port: str, out_port: str) -> bool:
    """False when a LUT6_2's output does not depend on that input under its INIT (no timing arc).

    fpga4ml's three-input adders tie the neighbour column's carry into I3 of a LUT6_2 whose O5 ignores
    it; without this the estimate would see a ripple through every column's O5.
    """
    if cell['type'] != 'LUT6_2' or not re.fullmatch(r'I[0-5]', in_port):
        return True
    return _depends(int(_param(cell, 'INIT')), int(in_port[1]), 6 if out_port == 'O6' else 5)


@functools.lru_cache(maxsize=4096)
def _depends(init: int, k: int, n: int) -> bool:
    """Whether the n-input truth table in the low 2^n bits of init depends on input k."""
    return k < n and any((init >> i & 1) != (init >> (i ^ 1 << k) & 1) for i in range(1 << n))


def _param(cell: dict, name: str, default='0'):
    """A cell parameter from the Yosys JSON netlist (binary strings become ints)."""
    value = cell.get('parameters', {}).get(name, default)
    if isinstance(value, str) and value and set(value) <= {'0', '1'}:
        return int(value, 2)
    return value


def _registered(cell: dict, port: str, reg_param: str) -> bool:
    """Whether a DSP input is registered inside the cell (or is a constant, which needs none)."""
    if cell['type'].startswith('DSP48'):
        clocked = bool(_param(cell, reg_param))
    else:
        clocked = _param(cell, reg_param, 'NONE') != 'NONE'
    bits = cell['connections'].get(port, [])
    return clocked or all(isinstance(b, str) for b in bits)


def dsp_registers(cell: dict) -> tuple[bool, bool, bool]:
    """(inputs, multiplier output, final output) registered inside a DSP cell."""
    if cell['type'].startswith('DSP48'):
        return (_registered(cell, 'A', 'AREG') and _registered(cell, 'B', 'BREG'),
                bool(_param(cell, 'MREG')), bool(_param(cell, 'PREG')))
    if cell['type'] == 'MULT18X18D':
        return (_registered(cell, 'A', 'REG_INPUTA_CLK')
                and _registered(cell, 'B', 'REG_INPUTB_CLK'),
                _param(cell, 'REG_PIPELINE_CLK', 'NONE') != 'NONE',
                _param(cell, 'REG_OUTPUT_CLK', 'NONE') != 'NONE')
    return False, False, False


DSP_MULT_SHARE = 0.6   # part of the DSP delay before the multiplier register (MREG), the rest after


def _timing_role(fam: Family, cell: dict) -> tuple[float, float] | None:
    """None for a combinational cell, else (delay from its inputs to its first internal register,
    delay from the clock to its outputs) on top of the register overhead: registers, RAMs, clock
    buffers, unknown boxes, and DSPs with internal registers."""
    if 'port_directions' not in cell:
        return 0.0, 0.0
    if any(fnmatch.fnmatchcase(cell['type'], pattern) for pattern in fam.sequential):
        return 0.0, 0.0
    if not DSP_RE.fullmatch(cell['type']):
        return None
    in_reg, mid_reg, out_reg = dsp_registers(cell)
    if not (in_reg or mid_reg or out_reg):
        return None
    dsp = fam.delay.dsp
    to_reg = 0.0 if in_reg else DSP_MULT_SHARE * dsp if mid_reg else dsp
    from_reg = 0.0 if out_reg else (1 - DSP_MULT_SHARE) * dsp if mid_reg else dsp
    return to_reg, from_reg


def cell_pins(cell: dict):
    """(port, bit, is an output) for every non-constant bit of a cell of the Yosys JSON netlist."""
    dirs = cell.get('port_directions', {})
    for port, bits in cell['connections'].items():
        for bit in bits:
            if not isinstance(bit, str):
                yield port, bit, dirs.get(port) == 'output'


def _split_cells(fam: Family, cells: dict) -> tuple[dict, dict, dict, dict]:
    """Classify the netlist: (driver (cell, port) of every cell-output bit, combinational cells,
    endpoints: bit -> delay to the register it feeds, starts: bit -> arrival after the clock)."""
    drivers, comb, endpoints, starts = {}, {}, {}, {}
    for name, cell in cells.items():
        role = _timing_role(fam, cell)
        for port, bit, output in cell_pins(cell):
            if output:
                drivers[bit] = (name, port)
                if role is not None:
                    starts[bit] = role[1]
            elif role is not None:
                endpoints[bit] = max(endpoints.get(bit, 0.0), role[0])
        if role is None:
            comb[name] = cell
    return drivers, comb, endpoints, starts


def _topological(comb: dict, drivers: dict) -> list[str]:
    """Combinational cells in topological order (Kahn); cells on a loop are left out."""
    fanout: dict[str, list[str]] = {}
    indegree = dict.fromkeys(comb, 0)
    for name, cell in comb.items():
        preds = set()
        for port, bits in cell['connections'].items():
            if cell['port_directions'].get(port) == 'input':
                preds.update(drivers[b][0] for b in bits if not isinstance(b, str) and b in drivers)
        for pred in preds & comb.keys():
            if pred != name:
                fanout.setdefault(pred, []).append(name)
                indegree[name] += 1
    order = [name for name, n in indegree.items() if n == 0]
    for name in order:   # the list grows while we walk it
        for succ in fanout.get(name, ()):
            indegree[succ] -= 1
            if indegree[succ] == 0:
                order.append(succ)
    return order


def critical_path(netlist: dict, top: str, fam: Family) -> dict:
    """Longest register-to-register (or port) path of a mapped netlist under the family's delay
    model: {'delay_ns', 'levels', 'cells' (type -> count on the path), 'loops'}."""
    module = netlist['modules'][top]
    cells = module['cells']
    drivers, comb, endpoints, arrival = _split_cells(fam, cells)
    for port in module['ports'].values():
        if port['direction'] != 'input':
            endpoints.update((b, 0.0) for b in port['bits'] if not isinstance(b, str))
    via: dict[int, tuple[int | None, str]] = {}
    order = _topological(comb, drivers)
    for name in order:
        cell = comb[name]
        dirs = cell['port_directions']
        ins = [(p, b) for p, bits in cell['connections'].items() if dirs.get(p) == 'input'
               for b in bits if not isinstance(b, str)]
        for out_port, bits in cell['connections'].items():
            if dirs.get(out_port) != 'output':
                continue
            best, best_in = 0.0, None
            for in_port, bit in ins:
                if not lut_input_matters(cell, in_port, out_port):
                    continue
                src = drivers.get(bit)
                src_type = (cells[src[0]]['type'], src[1]) if src else None
                t = arrival.get(bit, 0.0) + arc_delay(fam.delay, cell['type'], in_port, out_port,
                                                      src_type)
                if t > best:
                    best, best_in = t, bit
            for bit in bits:
                if not isinstance(bit, str):
                    arrival[bit], via[bit] = best, (best_in, cell['type'])
    total = {b: arrival.get(b, 0.0) + extra for b, extra in endpoints.items()}
    end = max(total, key=total.get, default=None)
    path_cells: dict[str, int] = {}
    levels, bit = 0, end
    while bit is not None and bit in via and levels <= len(comb):
        prev, cell_type = via[bit]
        path_cells[cell_type] = path_cells.get(cell_type, 0) + 1
        levels, bit = levels + 1, prev
    delay = fam.delay.register + (total[end] if end is not None else 0.0)
    return {'delay_ns': round(delay, 3), 'levels': levels,
            'cells': dict(sorted(path_cells.items())), 'loops': len(comb) - len(order)}


def check_has_logic(cells: dict[str, int], netlist: dict, top: str) -> None:
    """SynthesisError naming the top module and its file when nothing of it is left after synthesis."""
    if any(cells.values()):
        return
    src = netlist.get('modules', {}).get(top, {}).get('attributes', {}).get('src', '')
    where = src.rsplit(':', 1)[0] if src else 'its source file'
    raise SynthesisError(f'top module {top!r} ({where}) has no logic after synthesis (0 cells): its outputs are '
                         f'constant or wired straight to its inputs, or it has no outputs; a resource report of '
                         f'zeros would be meaningless. Check that the outputs of {top!r} depend on its inputs '
                         f'through logic or registers.')


def parse_report(workdir: Path, netlist_path: Path, top: str, family: str, script: str) -> dict:
    """Build the resource/timing report from stat.json, ltp.txt and the mapped netlist."""
    fam = check_family(family)
    cells = _cells_of(json.loads((workdir / 'stat.json').read_text()), top)
    netlist = json.loads(netlist_path.read_text())
    check_has_logic(cells, netlist, top)
    report = {'family': family, 'top': top, 'script': script}
    for key, patterns in fam.groups.items():
        report[key] = count_group(cells, patterns)
    timing = critical_path(netlist, top, fam)
    report.update(cells=cells, logic_levels=parse_ltp((workdir / 'ltp.txt').read_text()),
                  critical_delay_ns=timing['delay_ns'],
                  fmax_mhz_estimate=round(1000.0 / timing['delay_ns'], 1),
                  critical_path_levels=timing['levels'], critical_path_cells=timing['cells'])
    if timing['loops']:
        report['combinational_loop_cells'] = timing['loops']
    return report
