"""The converted model: hls4ml's ModelGraph API on top of the typed graph and the emulator."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..emulator.engine import Emulator, LayerStats
from ..intervals import Interval
from ..ir import Graph
from ..layers import Layer, ModelConfig, TensorVariable
from ..model_errors import BackendUnavailableError

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
        self.config = config  # kept as a ModelConfig: the dict plus hls4ml's HLSConfig queries
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

    @property
    def config(self) -> ModelConfig:
        """The configuration dict (Model, LayerType, LayerName) with hls4ml's get_config_value/get_layer_config."""
        return self._config

    @config.setter
    def config(self, value: dict) -> None:
        self._config = ModelConfig(value if value is not None else {}, self)

    # ------------------------------------------------------------------ emulation
    def compile(self, sim: str = 'emulator', write: bool | None = None, **options) -> None:
        """Prepare predict(): the emulator (milliseconds, no C++), the HLS C simulation or the RTL simulation.

        As hls4ml's compile(), it writes the project into output_dir: by default for the HLS back ends
        (hls4ml's, written in well under a second), not for the Verilog back end, whose writing lowers
        the whole design (seconds to minutes for large ones; write(), build() and compile(sim='rtl')
        write it). write=True/False forces it either way for the emulator; the C and RTL simulations
        always write. sim='csim' writes the HLS project (Vitis/Vivado back ends) and compiles it with g++ into a
        shared library; `options` go to the back end (e.g. ap_types_dir=...). predict(x, sim='csim')
        then runs it, one library call per batch. sim='rtl' (Verilog back end) writes the Verilog
        and builds a Verilator simulator of it (cached by content); predict(x, sim='rtl') streams
        the batch through it, one vector per clock.
        """
        if sim not in SIMULATORS:
            raise ValueError(f'compile(sim={sim!r}): sim must be one of {list(SIMULATORS)}')
        self._ensure_emulator()
        if sim == 'emulator' and (write if write is not None else self.backend != 'Verilog'):
            self.write()
        if sim == 'csim':
            from ..backends import get_backend

            self._csim = get_backend(self.backend).compile_csim(self, **options)
        if sim == 'rtl':
            from ..backends import get_backend

            if self.backend != 'Verilog':
                raise ValueError(f"compile(sim='rtl') needs backend='Verilog' (this model's backend is "
                                 f"{self.backend!r}); use sim='csim' for the HLS back ends")
            self._rtl = get_backend('Verilog').compile_rtl(self, **options)

    def _ensure_emulator(self) -> Emulator:
        if self._emulator is None:
            self._emulator = Emulator(self.graph, self.intervals)
        return self._emulator

    @property
    def emulator(self) -> Emulator:
        """The compiled emulator (compiled on first use; writes nothing)."""
        return self._ensure_emulator()

    def predict(self, x, sim: str = 'emulator') -> np.ndarray | list[np.ndarray]:
        """Bit-exact fixed-point outputs as float64; a list when the model has several outputs.

        sim='emulator' (default) runs the integer emulator; sim='csim' the compiled HLS C simulation
        and sim='rtl' the Verilator simulation of the Verilog, both compiled on first use when
        compile(sim=...) was not called (cached); all three give the same bits. A single sample
        without batch axis (shape (n_in,)) gives outputs without batch axis, as in hls4ml.
        """
        if sim not in SIMULATORS:
            raise ValueError(f'predict(sim={sim!r}): sim must be one of {list(SIMULATORS)}')
        simulator = self._simulator(sim)
        single = self._is_single_sample(x)
        xs = self._checked_inputs(x, 'predict')
        if xs[0].shape[0] == 0:  # an empty batch: no simulator is run
            outs = [np.zeros((0,) + self.graph[name].shape) for name in self.graph.outputs]
        else:
            outs = simulator.predict(xs)
        if single:
            outs = [out[0] for out in outs]
        return outs[0] if len(outs) == 1 else outs

    def _simulator(self, sim: str):
        """The simulator behind predict(sim=...), compiled now when it was not (C and RTL ones are cached)."""
        if sim == 'csim' and self._csim is None:
            self.compile(sim='csim')
        if sim == 'rtl' and self._rtl is None:
            self.compile(sim='rtl')
        return {'emulator': self.emulator, 'csim': self._csim, 'rtl': self._rtl}[sim]

    def _is_single_sample(self, x) -> bool:
        """True when every input array has exactly the input's per-sample shape (no batch axis)."""
        xs = [x[n] for n in self.graph.inputs] if isinstance(x, dict) else (
            list(x) if isinstance(x, (list, tuple)) and len(self.graph.inputs) > 1 else [x])
        shapes = [np.shape(a) for a in xs]
        return len(xs) == len(self.graph.inputs) and all(
            shape == self.graph[name].shape for shape, name in zip(shapes, self.graph.inputs))

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

        When any layer's `Trace` flag is set (config or layer.set_attr('trace', True)) only those
        layers are returned, as in hls4ml; with none set, every layer is (hls4ml returns none).
        `stats[layer]` (every layer) counts the values that wrapped or saturated in that layer and
        the range actually used against the range of its type. A single sample without batch axis
        gives predictions without it; the traced outputs keep a batch axis of 1, as in hls4ml.
        """
        single = self._is_single_sample(x)
        outputs, stats = self.emulator.trace(self._checked_inputs(x, 'trace'))
        flagged = [node.name for node in self.graph if node.config.get('Trace')]
        traced = TraceOutputs({name: value for name, value in outputs.items() if not flagged or name in flagged})
        traced.stats = stats
        preds = [outputs[name][0] if single else outputs[name] for name in self.graph.outputs]
        return (preds[0] if len(preds) == 1 else preds), traced

    def profile(self, x) -> str:
        """A per-layer table of types, ranges used and overflow counts on data `x`."""
        _, traced = self.trace(x)
        return format_profile(self.graph, traced.stats)

    # ------------------------------------------------------------------ firmware
    def save(self, path):
        """Save the converted model as one versioned JSON file (`.fml`); load it with converters.load_saved_model."""
        from ..saved import save_model

        return save_model(self, path)

    def write(self):
        """Write the firmware project for the selected back end into output_dir; returns its path."""
        from ..backends import get_backend

        return get_backend(self.backend).write(self)

    def build(self, **options) -> dict:
        """Run the back end's vendor/synthesis flow and return its report as a dict.

        Takes the back end's own keywords and hls4ml's (reset, csim, synth, cosim, validation, export,
        vsynth, fifo_opt, bitfile, ...): those that apply are passed on, the others are named in one
        warning; a keyword neither has raises TypeError.
        """
        from ..backends import build_options, get_backend

        return get_backend(self.backend).build(self, **build_options(self.backend, options))

    @property
    def latency(self) -> int:
        """Clock cycles from input to output of the Verilog implementation (II = 1 unrolled)."""
        return self.estimate()['latency_cycles']

    def emulate_cycles(self, x, valid=None):
        """The Verilog design clock by clock from the emulator: (outputs per cycle, valid_out per cycle)."""
        from ..backends import get_backend

        return get_backend('Verilog').emulate_cycles(self, x, valid)

    def estimate(self) -> dict:
        """LUT, FF, DSP, latency and Fmax estimates of the Verilog implementation (no tool, < 1 s)."""
        from ..backends import get_backend

        return get_backend('Verilog').estimate(self)

    # ------------------------------------------------------------------ introspection
    def get_layers(self) -> list[Layer]:
        """The typed layers in evaluation order, as hls4ml Layer views (layer.node is the IR node)."""
        return [Layer(self, node) for node in self.graph]

    def get_layer(self, name: str) -> Layer:
        """The layer called `name` (KeyError naming the layers otherwise)."""
        if name not in self.graph:
            raise KeyError(f'no layer named {name!r}; layers: {self.get_layer_names()}')
        return Layer(self, self.graph[name])

    def get_layer_names(self) -> list[str]:
        """Names of all layers in evaluation order."""
        return [node.name for node in self.graph]

    def get_input_variables(self) -> list[TensorVariable]:
        """The input tensors (name, shape, type.precision), in predict() argument order."""
        return [self.get_layer(name).get_output_variable() for name in self.graph.inputs]

    def get_output_variables(self) -> list[TensorVariable]:
        """The output tensors (name, shape, type.precision), in predict() result order."""
        return [self.get_layer(name).get_output_variable() for name in self.graph.outputs]

    def get_weight_variables(self) -> list:
        """Every layer's weight variables (hls4ml's WeightVariable API: data, type.precision)."""
        return [w for layer in self.get_layers() for w in layer.get_weights()]

    def set_layer_setting(self, name: str, key: str, value: Any) -> None:
        """Set a validated per-layer setting ('ReuseFactor', 'Strategy', 'Trace') after conversion.

        It goes into the layer's resolved config and config['LayerName'][name]; compiled C and RTL
        simulators are dropped so the next predict(sim=...) rebuilds them with it.
        """
        self.graph[name].config[key] = value
        if not isinstance(self.config.get('LayerName'), dict):
            self.config['LayerName'] = {}
        entry = self.config['LayerName'].get(name)
        if not isinstance(entry, dict):
            entry = self.config['LayerName'][name] = dict(entry or {})
        entry[key] = value
        self._csim = self._rtl = None

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
