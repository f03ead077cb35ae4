"""The Verilog back end's model-level steps: lower + schedule once, write, simulate, synthesize, estimate.

`design(model)` lowers the typed graph to a netlist (adder graphs, exact widths) and places the
pipeline registers; it is cached on the model. `write(model)` writes ``<project>.v`` and
``manifest.json`` into output_dir; `compile_rtl(model)` builds a Verilator simulator of them
(cached by content hash); `build(model)` runs Yosys (and nextpnr for ECP5); `estimate(model)`
returns the cost model's numbers without any tool.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config import ConfigError, ConfigWarning, model_setting
from ...naming import check_project_name, json_text
from .adder_graph import BLOCK_ROWS, PAIR_BUDGET
from .axi import add_axi_stream, model_interface
from .emit import port_entry, port_names, write_module
from .estimate import estimate_netlist, estimate_stream
from .fold import FoldedDesign, fold_graph, folded_cycles, folded_layers, folded_manifest
from .lower import lower_graph
from .netlist import Netlist
from .pipeline import Schedule, schedule
from .progress import StepClock
from .rnn_static import StaticRnnDesign, static_files, static_graph, static_layers
from .stateful import estimate_machine, write_machine
from .streaming import StreamDesign, design_stream, stream_files, stream_manifest
from .ternary import carry_for_part, sim_models

MANIFEST = 'manifest.json'
#: behavioural models of the Xilinx primitives of three-input adders, for simulation only (a subfolder:
#: synthesizing the design folder's *.v files leaves it out; the manifest lists it as a simulation file)
SIM_CELLS = 'sim/fpga4ml_cells.v'
#: the Yosys families whose cell libraries have each carry primitive (Vivado maps CARRY4 onto UltraScale too)
ADDER_FAMILIES = {'carry8': ('xcup',), 'carry4': ('xc7', 'xcup')}


@dataclass
class Design:
    """A lowered and scheduled model: the netlist, its schedule and how long generation took."""

    netlist: Netlist
    schedule: Schedule
    seconds: float


def design(model, progress: bool | None = None):
    """The model's Design (unrolled) or StreamDesign (Architecture 'stream'), computed once per settings.

    Steps that take long (a big layer's lowering, scheduling) print one line to stderr;
    progress=True prints every step, progress=False none (see progress.py).
    """
    return _design(model, StepClock(progress))


def _design(model, clock: StepClock):
    pipeline = model_setting(model.config, 'Pipeline', 'auto')
    # hls4ml users ask for streaming with io_type='io_stream': the Verilog analogue is the stream architecture
    architecture = model_setting(model.config, 'Architecture',
                                 'stream' if model.io_type == 'io_stream' else 'unrolled')
    key = (model.clock_period, str(pipeline), architecture, repr(model.config))  # a config change lowers again
    cached = getattr(model, '_verilog_design', None)
    if cached is not None and cached[0] == key:
        return cached[1]
    _warn_ignored_settings(model)
    start = time.perf_counter()
    if architecture == 'stream':
        result = design_stream(model.graph, model.intervals, model.clock_period, pipeline)
        result.seconds = time.perf_counter() - start
    elif static_layers(model.graph):  # Static: True recurrent layers: one cell, state registers (rnn_static.py)
        _warn_binary_adders(model, 'a static recurrent design')
        result = static_graph(model.graph, clock, model.clock_period, pipeline)
        result.seconds = time.perf_counter() - start
    elif folded_layers(model.graph):  # ReuseFactor > 1 (validated): multiply-accumulate folding (fold.py)
        _warn_binary_adders(model, 'a folded design (ReuseFactor > 1)')
        result = fold_graph(model.graph, clock, model.clock_period, pipeline)
        result.seconds = time.perf_counter() - start
    else:
        nl = lower_graph(model.graph, model.intervals, clock=clock)
        with clock.step(f'pipeline schedule of {len(nl)} signals'):
            sched = schedule(nl, model.clock_period, pipeline)
        result = Design(nl, sched, time.perf_counter() - start)
    model._verilog_design = (key, result)
    return result


def _warn_binary_adders(model, what: str) -> None:
    """ConfigWarning when TernaryAdders asks for three-input adders that `what` does not build."""
    if adders_setting(model) != 'off':
        warnings.warn(f"TernaryAdders={model_setting(model.config, 'TernaryAdders', 'off')!r} is ignored: {what} "
                      'keeps binary adders (three-input adders are built in unrolled designs and the unrolled '
                      'kernels and head of stream designs)', ConfigWarning, stacklevel=4)


def _warn_ignored_settings(model) -> None:
    """HLS knobs the Verilog design does not use (Strategy): say so."""
    ignored = [f"{n.name} (Strategy={n.config.get('Strategy')})" for n in model.graph
               if n.config.get('Strategy', 'Latency') != 'Latency']
    if ignored:
        warnings.warn('the Verilog back end folds Dense and Conv layers by ReuseFactor alone; these HLS settings are '
                      'ignored: ' + ', '.join(ignored[:8]) +
                      (' ...' if len(ignored) > 8 else ''), ConfigWarning, stacklevel=3)


def adders_setting(model) -> str:
    """The adders of unrolled designs and stream kernels: 'carry8' / 'carry4' (three-input adders on Xilinx
    primitives) or 'off'.

    config['Model']['TernaryAdders']: 'off' (default: portable binary adders), 'carry8', 'carry4', or
    'auto' ('carry8' for UltraScale(+) parts, 'carry4' for 7-series, 'off' for others, by `model.part`).
    """
    value = model_setting(model.config, 'TernaryAdders', 'off')
    return carry_for_part(model.part) if value == 'auto' else value


def manifest(model, d: Design) -> dict:
    """Ports, element types, latency and II of the design (written as manifest.json)."""
    nl = d.netlist
    in_ports, out_ports = port_names(nl)
    return {
        'top': model.project_name,
        'files': [f'{model.project_name}.v'],
        'latency': d.schedule.latency,
        'ii': 1,
        'clock_period_ns': model.clock_period,
        'pipeline': d.schedule.mode,
        'architecture': 'unrolled',
        'cse': {'block_rows': BLOCK_ROWS, 'pair_budget': PAIR_BUDGET},  # the search's size limits (adder_graph.py)
        'inputs': [port_entry(p, bus) for p, bus in zip(nl.inputs, in_ports)],
        'outputs': [port_entry(p, bus) for p, bus in zip(nl.outputs, out_ports)],
    }


def project_files(model, progress: bool | None = None) -> dict[str, str]:
    """{relative path: text} of the Verilog project (progress: see design())."""
    clock = StepClock(progress)
    d = _design(model, clock)
    top = check_project_name(model.project_name)
    adders = adders_setting(model) if isinstance(d, (Design, StreamDesign)) else 'off'
    if isinstance(d, StreamDesign):
        files = stream_files(d, top, model.graph, adders)
        info = stream_manifest(d, top, model.graph, model.clock_period, list(files))
    elif isinstance(d, StaticRnnDesign):
        with clock.step(f'{top}.v text (static recurrent)'):
            files, info = static_files(model, d, top)
    elif isinstance(d, FoldedDesign):
        with clock.step(f'{top}.v text (folded)'):
            files, info = {f'{top}.v': write_machine(d.machine, d.timing, top)}, folded_manifest(model, d, top)
    else:
        with clock.step(f'{top}.v text'):
            files, info = {f'{top}.v': write_module(d.netlist, d.schedule, top, adders)}, manifest(model, d)
    if isinstance(d, (Design, StreamDesign)):   # the architectures with binary or three-input adders
        info['ternary_adders'] = adders
    if adders != 'off':   # models of the vendor cells, for simulators only
        files[SIM_CELLS] = sim_models()
        info['simulation_files'] = [SIM_CELLS]
    if model_interface(model.config) == 'axi_stream':  # the AXI4-Stream wrapper besides the design (axi.py)
        add_axi_stream(files, info, top)
    return {**files, MANIFEST: json_text(info)}


def write(model, progress: bool | None = None) -> Path:
    """Write the Verilog design and its manifest into model.output_dir; returns that directory.

    progress: None (default) reports only long steps on stderr, True every step, False none.
    """
    return _write_files(model, project_files(model, progress))


def _write_files(model, files: dict[str, str]) -> Path:
    root = Path(model.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return root


class RtlSim:
    """predict() through the Verilator simulation of the written design."""

    def __init__(self, model, simulator, exact_latency: bool = True) -> None:
        self.model, self.simulator, self.exact_latency = model, simulator, exact_latency

    def predict(self, x) -> list[np.ndarray]:
        """Quantize inputs like the emulator, stream them through the RTL, return float outputs."""
        graph = self.model.graph
        xs = self.model.emulator._as_inputs(x)
        mantissas = [graph[name].result_type.quantize(a) for name, a in zip(graph.inputs, xs)]
        outs = self.predict_mantissas(mantissas)
        return [graph[name].result_type.to_float(m) for name, m in zip(graph.outputs, outs)]

    def predict_mantissas(self, mantissas: list[np.ndarray], gaps: bool = False) -> list[np.ndarray]:
        """Stream raw input mantissas through the RTL; returns the output mantissas.

        The latency is checked vector by vector, except for streaming designs that drop the last
        rows or columns of an image (their outputs can come before the last pixel).
        """
        return self.simulator.run(mantissas, gaps=gaps, check_latency=self.exact_latency)


def compile_rtl(model, **options) -> RtlSim:
    """Write the design and build (or reuse) its Verilator simulator; options go to verilator.compile_rtl."""
    from .verilator import compile_rtl as build_simulator

    root = write(model)
    d = design(model)
    return RtlSim(model, build_simulator(root, **options), getattr(d, 'uses_every_pixel', True))


def build(model, family: str = 'xcup', place_route: bool = False, script: str = 'fast', **options) -> dict:
    """Write the design and synthesize it with Yosys (ECP5: optionally place and route); returns the report."""
    from ...synth import synthesize

    files = project_files(model)
    _check_adder_family(model, family)
    root = _write_files(model, files)
    sources = [root / name for name in files if name.endswith('.v') and name != SIM_CELLS]
    report = synthesize(sources, model.project_name,
                        family=family, output_dir=root, script=script, place_route=place_route,
                        clock_period=model.clock_period, **options)
    report['estimate'] = estimate(model)
    report['latency_cycles'] = report['estimate']['latency_cycles']
    report['ii'] = report['estimate'].get('ii', 1)  # clocks between inputs (folded: the largest ReuseFactor)
    (root / 'synth_report.json').write_text(json_text(report, default=str))
    return report


def _check_adder_family(model, family: str) -> None:
    """ConfigError when a design's three-input adders use primitives `family` does not have."""
    adders = adders_setting(model)
    if isinstance(design(model), (Design, StreamDesign)) and adders != 'off' and family not in ADDER_FAMILIES[adders]:
        raise ConfigError(f"the design's three-input adders instantiate Xilinx {adders.upper()} primitives "
                          f"(config['Model']['TernaryAdders'] = {model_setting(model.config, 'TernaryAdders', 'off')!r}"
                          f', part {model.part!r}), which family {family!r} does not have; build for '
                          f"{' or '.join(ADDER_FAMILIES[adders])}, or set TernaryAdders to 'off' for portable adders")


def estimate(model) -> dict:
    """LUT, FF, DSP, latency and Fmax estimates from the netlist (no synthesis tool)."""
    d = design(model)
    if isinstance(d, FoldedDesign):
        out = estimate_machine(d.machine, d.timing)
    elif isinstance(d, StreamDesign):
        out = estimate_stream(d, adders_setting(model))
    else:
        out = estimate_netlist(d.netlist, d.schedule, adders_setting(model))
    out['generation_seconds'] = round(d.seconds, 3)
    return out


def emulate_cycles(model, x, valid=None) -> tuple[list[np.ndarray], np.ndarray]:
    """The unrolled design's behaviour clock by clock, from the emulator: what a testbench sees.

    Input vector t of `x` is presented in clock cycle t with valid_in = valid[t] (default all 1;
    ce = 1). Returns (outputs, valid_out) over `len(x) + latency` cycles: outputs[k][t] is what
    output port k shows in cycle t, which is the emulator's result for input t - latency (zeros
    before the pipeline has filled), and valid_out[t] = valid[t - latency]. A folded design (ReuseFactor
    > 1, II > 1) runs in its cycle-level interpreter instead, one input vector every II clocks
    (fold.folded_cycles); a streaming design in its interpreter, one pixel every P clocks and `valid`
    a pattern over clocks (stream_sim.stream_cycles).
    """
    d = design(model)
    if isinstance(d, StreamDesign):  # pixel by pixel: the stream interpreter (stream_sim.py)
        from .stream_sim import stream_cycles

        return stream_cycles(model, d, x, valid)
    if isinstance(d, FoldedDesign):  # II > 1: the stateful interpreter, one vector every II clocks
        return folded_cycles(model, d, x, valid)
    latency = d.schedule.latency
    outs = model.predict(x)
    outs = outs if isinstance(outs, list) else [outs]
    n = len(outs[0])
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (n,):
        raise ValueError(f'valid must have one flag per input vector ({n}), got shape {valid.shape}')
    shown = []
    for y in outs:
        seq = np.zeros((n + latency,) + y.shape[1:], dtype=y.dtype)
        seq[latency:] = y
        shown.append(seq)
    valid_out = np.zeros(n + latency, dtype=bool)
    valid_out[latency:] = valid
    return shown, valid_out
