"""Run the vendor HLS tool on the written project and return its parsed reports.

``build(model, csim=True, synth=True, cosim=False, export=False, vsynth=False)`` writes the project,
runs ``vitis-run --mode hls --tcl build_prj.tcl`` (Vitis back end; ``vitis_hls -f build_prj.tcl``
where only an older Vitis HLS is installed) or ``vivado_hls -f build_prj_vivado.tcl`` (Vivado back
end) in the project directory with the selected steps in the environment variable FPGA4ML_STEPS
(see tcl.py), shows the tool's output line by line with the elapsed time and the current step,
keeps the whole output in ``build.log``, and returns `reports.parse_report()` of the project plus a
``build`` entry (flavor, command, steps, seconds, log). Ctrl-C or `timeout` stops the tool's whole
process group before the exception propagates (fpga4ml.procs.stream, shared by every tool runner).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import IO

from ... import procs
from ...model_errors import BackendUnavailableError
from .reports import parse_report
from .tcl import STEP_DONE, STEP_START, STEPS, STEPS_ENV, VITIS_SCRIPT, VIVADO_SCRIPT, build_scripts

FLAVORS = ('vitis', 'vivado')
LOG_NAME = 'build.log'
TERMINATE_GRACE_S = 5.0  # seconds between SIGTERM and SIGKILL of the tool's process group
SILENCE_NOTE_S = 60.0  # print a 'still running' line after this long without output

# What each flavor needs on PATH, in order of preference, and how to run it.
_LAUNCHERS = {
    'vitis': (('vitis-run', ['--mode', 'hls', '--tcl', VITIS_SCRIPT]), ('vitis_hls', ['-f', VITIS_SCRIPT])),
    'vivado': (('vivado_hls', ['-f', VIVADO_SCRIPT]),),
}
_DESCRIPTIONS = {'vitis': 'vitis-run (AMD Vitis 2023.1 or newer)', 'vivado': 'vivado_hls (Xilinx Vivado HLS 2020.1)'}


class BuildError(RuntimeError):
    """The vendor tool ran and failed; the message names the step and ends with its last output lines."""


def resolve_flavor(model, flavor: str | None) -> str:
    """'vitis' or 'vivado': `flavor` when given, else from the model's backend ('Vitis' / 'Vivado')."""
    name = (flavor if flavor is not None else getattr(model, 'backend', 'Vitis')).lower()
    if name not in FLAVORS:
        raise ValueError(f'build(flavor={flavor!r}): flavor must be one of {list(FLAVORS)} '
                         f'(None takes it from the model backend {getattr(model, "backend", None)!r})')
    return name


def find_tool(flavor: str, project_dir: str | Path | None = None) -> list[str]:
    """The command line that runs the build script of `flavor`, with the tool's absolute path.

    Raises BackendUnavailableError naming the missing tool when it is not on PATH.
    """
    for exe, args in _LAUNCHERS[flavor]:
        path = shutil.which(exe)
        if path is not None:
            return [path, *args]
    where = f' of the project written in {str(project_dir)!r}' if project_dir is not None else ''
    raise BackendUnavailableError(
        f'{_DESCRIPTIONS[flavor]} was not found on PATH: it is needed for HLS synthesis and '
        f'co-simulation{where}; add the tool to PATH (source its settings64.sh) or use the C simulation, '
        f"which needs only g++: model.compile(sim='csim') then model.predict(x, sim='csim').")


def write_missing_scripts(model, project_dir: str | Path) -> list[str]:
    """Write the build scripts the project lacks (a written project normally has them); returns their names."""
    scripts = build_scripts(model.project_name, model.part, model.clock_period,
                            getattr(model, 'settings', {}).get('clock_uncertainty'))
    written = []
    for name, text in scripts.items():
        path = Path(project_dir) / name
        if not path.exists():
            path.write_text(text)
            written.append(name)
    return written


def build(model, csim: bool = True, synth: bool = True, cosim: bool = False, export: bool = False,
          vsynth: bool = False, flavor: str | None = None, timeout: float | None = None,
          verbose: bool = True) -> dict:
    """Write the HLS project, run the vendor tool on the selected steps and return the parsed reports.

    Steps: csim (C simulation in the vendor tool), synth (C synthesis), cosim (C/RTL co-simulation),
    export (Vivado IP), vsynth (Vivado logic synthesis; needs `vivado` on PATH). `flavor` 'vitis' or
    'vivado' overrides the model's backend. `timeout` (seconds) stops the tool and raises TimeoutError.
    verbose=False prints only the step lines and errors (build.log always has everything).
    """
    chosen = resolve_flavor(model, flavor)
    selected = dict(zip(STEPS, (csim, synth, cosim, export, vsynth)))
    steps = [step for step in STEPS if selected[step]]
    if not steps:
        raise ValueError('build(): no step selected; set at least one of csim, synth, cosim, export, vsynth')
    if timeout is not None and timeout <= 0:
        raise ValueError(f'build(timeout={timeout!r}): timeout must be a positive number of seconds or None')

    written = model.write()
    project_dir = Path(written if written is not None else model.output_dir).resolve()
    top_source = project_dir / 'firmware' / f'{model.project_name}.cpp'
    if not top_source.is_file():
        raise FileNotFoundError(f'build(): the written project has no {top_source}; the build scripts expect '
                                f'firmware/<project>.cpp, tb/<project>_test.cpp and tb_data/ in {project_dir}')
    command = find_tool(chosen, project_dir)
    if vsynth and shutil.which('vivado') is None:
        raise BackendUnavailableError(
            f'vivado (AMD Vivado) was not found on PATH: the vsynth step runs Vivado logic synthesis on the '
            f'HLS output of {str(project_dir)!r}; add Vivado to PATH or call build(vsynth=False).')
    write_missing_scripts(model, project_dir)

    env = dict(os.environ)
    env[STEPS_ENV] = ' '.join(steps)
    log_path = project_dir / LOG_NAME
    tool_name = Path(command[0]).name
    print(f'fpga4ml: running {tool_name} in {project_dir} (steps: {" ".join(steps)}; log: {LOG_NAME})', flush=True)
    start = time.monotonic()
    with open(log_path, 'w', encoding='utf-8', errors='replace') as log:
        progress = Progress(start, verbose)
        try:
            returncode = procs.stream(command, lambda line: (log.write(line + '\n'), progress.line(line)),
                                      project_dir, env, timeout, on_silence=progress.silence,
                                      silence_s=SILENCE_NOTE_S, grace=TERMINATE_GRACE_S)
        except TimeoutError as exc:
            raise TimeoutError(f'{exc} during step {progress.step or "setup"!r}; its output: {log_path}') from None
    elapsed = time.monotonic() - start
    if returncode != 0:
        tail = '\n'.join(progress.tail)
        raise BuildError(f'{tool_name} exited with status {returncode} during step {progress.step or "setup"!r}; '
                         f'the last lines of its output:\n{tail}\nfull log: {log_path}')
    print(f'fpga4ml: {tool_name} finished in {format_elapsed(elapsed)}', flush=True)

    report = parse_report(project_dir, model.project_name)
    missing = [step for step, key in (('synth', 'csynth'), ('cosim', 'cosim'), ('vsynth', 'vivado_synth'))
               if step in steps and report[key] is None]
    if missing:
        warnings.warn(f'build(): the tool succeeded but no report of {missing} was found in {project_dir}; '
                      f'see {log_path}', RuntimeWarning, stacklevel=2)
    report['build'] = {'flavor': chosen, 'command': command, 'steps': steps, 'project_dir': str(project_dir),
                       'seconds': round(elapsed, 3), 'log': str(log_path)}
    return report


# ---------------------------------------------------------------------------- progress
def format_elapsed(seconds: float) -> str:
    """'m:ss' (or 'h:mm:ss') of a duration in seconds."""
    s = int(seconds)
    return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}' if s >= 3600 else f'{s // 60}:{s % 60:02d}'


class Progress:
    """Prints the tool's lines prefixed with the elapsed time and the current step; remembers the last ones."""

    def __init__(self, start: float, verbose: bool, stream: IO[str] | None = None, keep: int = 30):
        self.start, self.verbose, self.stream = start, verbose, stream
        self.step: str | None = None
        self.tail: list[str] = []
        self.keep = keep

    def _print(self, text: str) -> None:
        stamp = format_elapsed(time.monotonic() - self.start)
        print(f'[{stamp:>7} {self.step or "setup":<6}] {text}', file=self.stream or sys.stdout, flush=True)

    def line(self, text: str) -> None:
        started = STEP_START.search(text)
        if started:
            self.step = started.group(1)
        self.tail = (self.tail + [text])[-self.keep:]
        if self.verbose or started or STEP_DONE.search(text) or 'ERROR' in text:
            self._print(text)

    def silence(self, seconds: float) -> None:
        self._print(f'... still running ({format_elapsed(seconds)} without output)')
