"""The converted model: hls4ml's ModelGraph API on top of the typed graph and the emulator."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .emulator.engine import Emulator, LayerStats
from .intervals import Interval
from .ir import Graph, Node
from .model_errors import BackendUnavailableError

SIMULATORS = ('emulator', 'csim', 'rtl')

BACKENDS = ('Vitis', 'Vivado', 'Verilog')
IO_TYPES = ('io_parallel', 'io_stream')


class InputWarning(UserWarning):
    """The input batch holds values that the fixed-point design cannot represent (NaN)."""


class TraceOutputs(dict):
    """Layer name -> float output array, plus `stats`: layer name -> LayerStats."""

    stats: dict[str, LayerStats]


class Model:
    """A converted network: `predict()` runs the bit-exact emulator; back ends write firmware."""

    def __init__(self, graph: Graph, intervals: dict[str, Interval], config: dict, settings: dict[str, Any]):
        self.graph = graph
        self.config = config
        self.intervals = intervals
        self.backend = settings['backend']
        self.io_type = settings['io_type']
        self.output_dir = settings['output_dir']
        self.project_name = settings['project_name']
        self.part = settings['part']
        self.clock_period = settings['clock_period']
        self.settings = settings
        self._emulator: Emulator | None = None
        self._csim = None
        self._rtl = None

    # ------------------------------------------------------------------ emulation
    def compile(self, sim: str = 'emulator', **options) -> None:
        """Prepare predict(): the emulator (milliseconds, no C++), the HLS C simulation or the RTL simulation.

        sim='csim' writes the HLS project (Vitis/Vivado back ends) and compiles it with g++ into a
        shared library; `options` go to the back end (e.g. ap_types_dir=...). predict(x, sim='csim')
        then runs it, one library call per batch. sim='rtl' (Verilog back end) writes the Verilog
        and builds a Verilator simulator of it (cached by content); predict(x, sim='rtl') streams
        the batch through it, one vector per clock.
        """
        if sim not in SIMULATORS:
            raise ValueError(f'compile(sim={sim!r}): sim must be one of {list(SIMULATORS)}')
        if self._emulator is None:
            self._emulator = Emulator(self.graph, self.intervals)
        if sim == 'csim':
            from .backends import get_backend

            self._csim = get_backend(self.backend).compile_csim(self, **options)
        if sim == 'rtl':
            from .backends import get_backend

            if self.backend != 'Verilog':
                raise ValueError(f"compile(sim='rtl') needs backend='Verilog' (this model's backend is "
                                 f"{self.backend!r}); use sim='csim' for the HLS back ends")
            self._rtl = get_backend('Verilog').compile_rtl(self, **options)

    @property
    def emulator(self) -> Emulator:
        """The compiled emulator (compiled on first use)."""
        self.compile()
        assert self._emulator is not None
        return self._emulator

    def predict(self, x, sim: str = 'emulator') -> np.ndarray | list[np.ndarray]:
        """Bit-exact fixed-point outputs as float64; a list when the model has several outputs.

        sim='emulator' (default) runs the integer emulator; sim='csim' the compiled HLS C simulation
        (after compile(sim='csim')) and sim='rtl' the Verilator simulation of the Verilog (after
        compile(sim='rtl')); both must give the same bits.
        """
        if sim not in SIMULATORS:
            raise ValueError(f'predict(sim={sim!r}): sim must be one of {list(SIMULATORS)}')
        simulator = {'emulator': self.emulator, 'csim': self._csim, 'rtl': self._rtl}[sim]
        if simulator is None:
            raise RuntimeError(f"predict(sim={sim!r}) needs compile(sim={sim!r}) first")
        xs = self._checked_inputs(x, 'predict')
        if xs[0].shape[0] == 0:  # an empty batch: no simulator is run
            outs = [np.zeros((0,) + self.graph[name].shape) for name in self.graph.outputs]
        else:
            outs = simulator.predict(xs)
        return outs[0] if len(outs) == 1 else outs

    def _checked_inputs(self, x, what: str) -> list[np.ndarray]:
        """The batch as one array per input (shapes, dtypes checked); warns once when it holds NaN."""
        xs = self.emulator._as_inputs(x)
        nans = self.emulator.nan_counts(xs)
        if nans:
            counts = ', '.join(f'{n} in {name!r}' for name, n in nans.items())
            warnings.warn(f'{what}: the inputs hold NaN values ({counts}); each is quantized to 0, as ap_fixed '
                          'converts NaN', InputWarning, stacklevel=3)
        return xs

    def predict_mantissas(self, x) -> dict[str, np.ndarray]:
        """The raw int64 mantissas of every graph output (value = mantissa * 2^-frac)."""
        return self.emulator.run(x)

    def trace(self, x) -> tuple[np.ndarray | list[np.ndarray], TraceOutputs]:
        """(predictions, {layer: float output}) as hls4ml's trace(), plus per-layer `stats`.

        `stats[layer]` counts the values that wrapped or saturated in that layer and the range
        actually used against the range of its type.
        """
        outputs, stats = self.emulator.trace(self._checked_inputs(x, 'trace'))
        traced = TraceOutputs(outputs)
        traced.stats = stats
        preds = [outputs[name] for name in self.graph.outputs]
        return (preds[0] if len(preds) == 1 else preds), traced

    def profile(self, x) -> str:
        """A per-layer table of types, ranges used and overflow counts on data `x`."""
        _, traced = self.trace(x)
        return format_profile(self.graph, traced.stats)

    # ------------------------------------------------------------------ firmware
    def write(self):
        """Write the firmware project for the selected back end into output_dir; returns its path."""
        from .backends import get_backend

        return get_backend(self.backend).write(self)

    def build(self, **options) -> dict:
        """Run the back end's vendor/synthesis flow and return its report as a dict."""
        from .backends import get_backend

        return get_backend(self.backend).build(self, **options)

    @property
    def latency(self) -> int:
        """Clock cycles from input to output of the Verilog implementation (II = 1 unrolled)."""
        return self.estimate()['latency_cycles']

    def emulate_cycles(self, x, valid=None):
        """The Verilog design clock by clock from the emulator: (outputs per cycle, valid_out per cycle)."""
        from .backends import get_backend

        return get_backend('Verilog').emulate_cycles(self, x, valid)

    def estimate(self) -> dict:
        """LUT, FF, DSP, latency and Fmax estimates of the Verilog implementation (no tool, < 1 s)."""
        from .backends import get_backend

        return get_backend('Verilog').estimate(self)

    # ------------------------------------------------------------------ introspection
    def get_layers(self) -> list[Node]:
        """The typed layers in evaluation order."""
        return list(self.graph.nodes)

    def get_input_names(self) -> list[str]:
        """Names of the model inputs, in predict() argument order."""
        return list(self.graph.inputs)

    def get_output_names(self) -> list[str]:
        """Names of the model outputs, in predict() result order."""
        return list(self.graph.outputs)

    def summary(self) -> str:
        """The per-layer table (name, op, shapes, types, parameters, non-zero weights)."""
        head = (f'fpga4ml model {self.project_name!r}: backend {self.backend}, {self.io_type}, '
                f'part {self.part}, clock {self.clock_period} ns')
        return head + '\n' + self.graph.table()

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f'<fpga4ml.Model {self.project_name!r}: {len(self.graph)} layers, backend {self.backend}>'


def format_profile(graph: Graph, stats: dict[str, LayerStats]) -> str:
    """Render per-layer numerical statistics as an aligned text table."""
    header = ('layer', 'type', 'used min', 'used max', 'type min', 'type max', 'overflows', '%', 'NaN in')
    rows = []
    for node in graph:
        st = stats[node.name]
        rows.append((node.name, st.type, f'{st.min:.6g}', f'{st.max:.6g}', f'{st.type_min:.6g}',
                     f'{st.type_max:.6g}', str(st.overflow), f'{100 * st.overflow_fraction:.2f}',
                     str(st.nan) if node.op == 'Input' else ''))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), '  '.join('-' * w for w in widths)]
    lines += ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return '\n'.join(lines)
