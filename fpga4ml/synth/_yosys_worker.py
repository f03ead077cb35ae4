"""Child process that runs a list of Yosys commands through pyosys.

Usage: ``python -m fpga4ml.synth._yosys_worker JOB.json`` where the JSON holds
``{"steps": [[label, command], ...]}``. The Yosys log goes to stdout; before each command the
worker prints a marker line ``@@fpga4ml step <label>\\t<command>`` that the parent uses for
progress and error messages. A failing Yosys pass prints ``ERROR: ...`` and exits with status 1
(Yosys itself ends the process).
"""

from __future__ import annotations

import ctypes
import json
import sys

MARKER = '@@fpga4ml '   # same as fpga4ml.synth.yosys.MARKER (not imported: keep this light)


def _line_buffer_c_stdout() -> None:
    """Make C stdio's stdout line buffered so the Yosys log streams through a pipe (best effort)."""
    try:
        libc = ctypes.CDLL(None)
        stdout = ctypes.c_void_p.in_dll(libc, 'stdout')
        libc.setvbuf(stdout, None, 1, 0)   # _IOLBF
    except (OSError, ValueError, AttributeError):
        pass


def emit(kind: str, text: str = '') -> None:
    """Print one marker line for the parent process."""
    sys.stdout.write(f'{MARKER}{kind} {text}\n')
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Run the job file given on the command line; return the exit status."""
    if len(argv) != 1:
        print('usage: python -m fpga4ml.synth._yosys_worker JOB.json', file=sys.stderr)
        return 2
    with open(argv[0], encoding='utf-8') as f:
        steps = json.load(f)['steps']
    _line_buffer_c_stdout()
    from pyosys import libyosys as ys

    emit('version', ys.yosys_maybe_version())
    design = ys.Design()
    for label, command in steps:
        emit('step', f'{label}\t{command}')
        ys.run_pass(command, design)
        ys.log_flush()
    emit('done')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
