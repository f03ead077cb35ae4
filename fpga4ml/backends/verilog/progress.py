"""Progress lines for the Verilog generation steps, printed to stderr like fpga4ml.synth's.

A step prints ``[verilog   12.3 s] fc1 (Dense): 4.1 s`` (time since generation started, then
the step's own time) when it took at least LONG_STEP_SECONDS, or always with ``progress=True``;
``progress=False`` prints nothing. Small designs therefore stay silent by default.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

#: steps at least this long are reported even without progress=True
LONG_STEP_SECONDS = 2.0


class StepClock:
    """Times generation steps and reports the long ones (or all of them) on stderr."""

    def __init__(self, progress: bool | None = None) -> None:
        self.progress = progress
        self.start = time.monotonic()

    def report(self, label: str, seconds: float) -> None:
        """Print one line for a finished step when it was long or progress is on."""
        if self.progress is False or (self.progress is None and seconds < LONG_STEP_SECONDS):
            return
        print(f'[verilog {time.monotonic() - self.start:6.1f} s] {label}: {seconds:.1f} s', file=sys.stderr, flush=True)

    @contextmanager
    def step(self, label: str):
        """Time the body of a with-block as one step."""
        t0 = time.monotonic()
        yield
        self.report(label, time.monotonic() - t0)

