"""Pipeline registers inside folded layers (backends/verilog/fold_stages.py).

At a tight clock period the folded layers get cuts between their operands, products, staged adder
trees (or digit-serial adder graphs) and the accumulate loop; the interpreter must still equal the
emulator bit for bit (wrapping fixed<16,6>, saturating in-order accumulators, 'auto' digit-serial,
folded Conv), the latency grows by the cuts, and the delay model's longest path of the machine stays
within the stage budget wherever a cut can help. Pipeline 'none' builds no cut. Negative control:
the loop's controls not delayed by the cuts give wrong results.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpga4ml.backends.verilog import fold_stages
from fpga4ml.backends.verilog.design import design, project_files
from fpga4ml.backends.verilog.fold import FoldedDesign
from fpga4ml.backends.verilog.fold_stages import LayerPipe, stage_budget
from fpga4ml.backends.verilog.pipeline import STAGE_OVERHEAD_NS
from fpga4ml.backends.verilog.stateful import critical_ns, run_vectors
from fpga4ml.convert import convert_graph

from test_reuse import PRECISIONS as MAC_PRECISIONS, SIZES, assert_same, emulated, input_mantissas
from test_verilog_fold_conv import PRECISIONS as CONV_PRECISIONS, cnn_graph, mantissas, verilator_check
from test_verilog_fold_conv import emulated as conv_emulated
from verilog_models import mlp_graph

PRECISIONS = {**MAC_PRECISIONS, **CONV_PRECISIONS}


def folded(tmp_path, graph, precision: str, clock: float, name: str, folding: str = 'mac', pipeline=None,
           **reuse):
    """A graph with per-layer ReuseFactors at a clock period (and optional Pipeline setting)."""
    model_cfg = {'Precision': PRECISIONS[precision], 'ReuseFactor': 1, 'Folding': folding}
    if pipeline is not None:
        model_cfg['Pipeline'] = pipeline
    cfg = {'Model': model_cfg, 'LayerName': {k: {'ReuseFactor': v} for k, v in reuse.items()}}
    return convert_graph(graph, cfg, output_dir=str(tmp_path / name), project_name=name, backend='Verilog',
                         clock_period=clock)


def mlp(tmp_path, precision, clock, name='mlp', folding='mac', pipeline=None, **reuse):
    """The 16-12-8-5 MLP of test_reuse.py."""
    return folded(tmp_path, mlp_graph(0, sizes=SIZES), precision, clock, name, folding, pipeline, **reuse)


CASES = {  # precision, folding, {layer: R}
    'wrap_fixed16': ('fixed16_6', 'mac', {'fc0': 2, 'fc1': 4, 'fc2': 5}),
    'saturating': ('narrow_sat', 'mac', {'fc0': 4, 'fc1': 2, 'fc2': 8}),
    'auto_mac': ('auto', 'mac', {'fc0': 2, 'fc1': 3, 'fc2': 2}),
    'auto_adders': ('auto', 'adders', {'fc0': 4, 'fc1': 2, 'fc2': 8}),
}


@pytest.mark.parametrize('case', list(CASES))
def test_cut_layers_equal_the_emulator(tmp_path, case):
    precision, folding, reuse = CASES[case]
    model = mlp(tmp_path, precision, 2.5, folding=folding, **reuse)
    d = design(model)
    assert isinstance(d, FoldedDesign)
    assert sum(d.timing.cuts.values()) > 0, 'a 2.5 ns clock must cut the folded layers'
    assert d.timing.latency == sum(r + 1 for r in reuse.values()) + sum(d.timing.cuts.values())
    xs = input_mantissas(model, 3000)  # a tenth far outside the input type
    assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))
    info = json.loads(project_files(model)['manifest.json'])
    assert info['latency'] == d.timing.latency == model.latency and info['folding']['pipeline_cuts'] == d.timing.cuts


@pytest.mark.parametrize('case', ['wrap_fixed16', 'auto_adders'])
def test_cuts_keep_the_modelled_paths_within_the_clock(tmp_path, case):
    """Where the loop is one adder (wrapping or exact accumulators) the cuts shorten the modelled paths below
    the uncut design's (Pipeline 'none'), for multiply-accumulate layers to within the stage budget."""
    precision, folding, reuse = CASES[case]
    clock = 4.0  # above the slowest single op of the model (a 1,024-word ROM: 3 ns)
    cut = design(mlp(tmp_path, precision, clock, 'cut', folding, **reuse)).machine
    flat = design(mlp(tmp_path, precision, clock, 'flat', folding, 'none', **reuse)).machine
    budget = stage_budget(clock, 'auto')
    assert budget == clock - STAGE_OVERHEAD_NS
    assert critical_ns(flat) > budget and critical_ns(cut) < critical_ns(flat)
    if case == 'wrap_fixed16':  # digit-serial: the bias add and output casts after the accumulators stay one stage
        assert critical_ns(cut) <= budget


def test_pipeline_none_builds_no_cut(tmp_path):
    reuse = CASES['wrap_fixed16'][2]
    d = design(mlp(tmp_path, 'fixed16_6', 2.5, pipeline='none', **reuse))
    assert set(d.timing.cuts.values()) <= {0} and d.timing.latency == sum(r + 1 for r in reuse.values())
    assert not [s for s in d.machine.signals if s.op == 'reg' and '_pipe' in s.p['name']]


def test_negative_control_undelayed_loop_controls(tmp_path, monkeypatch):
    """The accumulators must see the counter as it was when their products were started: without the delay
    the interpreter no longer equals the emulator (same cuts, same latency)."""
    precision, folding, reuse = CASES['wrap_fixed16']
    model = mlp(tmp_path, precision, 2.5, folding=folding, **reuse)
    xs = input_mantissas(model, 500)
    want = emulated(model, xs)
    good = design(model)
    assert_same(run_vectors(good.machine, good.timing, xs), want)  # control: the delayed controls work

    def undelayed(self, count, busy, rf):
        m = self.m
        # keep the latency (done delayed as before) but let the loop read the undelayed counter and busy
        last = m.both(busy, m.flag(count, [int(c == rf - 1) for c in range(rf)]))
        return count, busy, m.delayed(last, self.cuts, f'{self.name}_last', reset=0)

    monkeypatch.setattr(LayerPipe, 'loop_controls', undelayed)
    bad = design(mlp(tmp_path, precision, 2.5, 'bad', folding, **reuse))
    assert bad.timing.cuts == good.timing.cuts and bad.timing.latency == good.timing.latency
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(run_vectors(bad.machine, bad.timing, xs), want)


def test_staged_sum_matches_its_combinational_build(tmp_path):
    """LayerPipe.staged: a wide sum split over stages by the budget equals the same sum built directly."""
    from fpga4ml.backends.verilog.adder_graph import sum_terms
    from fpga4ml.backends.verilog.stateful import Machine, Simulator

    m = Machine()
    xs = m.add_input('x', (32,), PRECISION_8)
    pipe = LayerPipe(m, 'sum', 1.5)  # about one adder level per stage
    out = pipe.staged(xs, lambda nl, ins: [sum_terms(nl, ins, 0)])
    assert pipe.cuts >= 3
    m.add_output('y', (1,), _wide(m, out[0]), out)
    m.valid_out = m.valid_in()
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (200, 32))
    sim = Simulator(m, 200)
    for _ in range(pipe.cuts):
        sim.settle([x], 1)
        sim.edge()
    sim.settle([x], 1)
    assert np.array_equal(sim.outputs()[0][:, 0], x.sum(axis=1))
    sim = Simulator(m, 200)  # control: one clock too early it is not the sum yet
    for _ in range(pipe.cuts - 1):
        sim.settle([x], 1)
        sim.edge()
    sim.settle([x], 1)
    assert not np.array_equal(sim.outputs()[0][:, 0], x.sum(axis=1))


def _wide(m, s):
    from fpga4ml.fixed import FixedType

    sig = m[s]
    return FixedType(max(sig.width, 2), max(sig.width, 2), True, 'TRN', 'WRAP')


def _type8():
    from fpga4ml.fixed import FixedType

    return FixedType(8, 8, True, 'TRN', 'WRAP')


PRECISION_8 = _type8()


def test_folded_conv_cut_equals_the_emulator_and_verilator(tmp_path):
    """The CNN of test_verilog_fold_conv.py (Conv R 4, Dense R 2) at a 2.5 ns clock: cut, bit-exact in the
    interpreter and under Verilator (== predict(), == the interpreter clock by clock; control: a changed ROM word)."""
    model = folded(tmp_path, cnn_graph(), 'narrow_sat', 2.5, 'cnn', conv=4, fc=2)
    d = design(model)
    assert d.timing.cuts['conv'] > 0 and d.timing.cuts['fc'] > 0
    xs = mantissas(model, 2000)
    assert_same(run_vectors(d.machine, d.timing, xs), conv_emulated(model, xs))
    verilator_check(model, 3000, 200, rebuild=False)


def test_stage_budget_follows_the_pipeline_setting():
    assert stage_budget(None, 'auto') is None and stage_budget(5.0, 'none') is None
    assert stage_budget(5.0, 'auto') == 5.0 - STAGE_OVERHEAD_NS and stage_budget(5.0, 3) == 5.0 - STAGE_OVERHEAD_NS
    assert fold_stages.tree_ns(1, 8) == 0 and fold_stages.tree_ns(8, 8) == 3 * fold_stages.adder_ns(8)


def _stream_model(tmp_path, graph, reuse: dict, clock: float, name: str):
    from test_verilog_stream_reuse import PRECISION

    cfg = {'Model': {'Precision': PRECISION, 'Architecture': 'stream'},
           'LayerName': {k: {'ReuseFactor': v} for k, v in reuse.items()}}
    return convert_graph(graph(), cfg, backend='Verilog', clock_period=clock, output_dir=str(tmp_path / name),
                         project_name=name)


@pytest.mark.parametrize('case', ['inception', pytest.param('residual', marks=pytest.mark.slow)])
def test_stream_kernels_cut(tmp_path, case):
    """Folded Conv kernels of a stream design at a 2.5 ns clock: cut, and still predict()'s bits back to back
    (every image at the manifest latency) and with bubbles; in the inception block the faster folded Conv's
    outputs wait for the slower one."""
    from test_verilog_stream_reuse import bubbles, images, inception, interpreted, residual

    graph, reuse = {'inception': (inception, {'b1': 2, 'b3': 4}), 'residual': (residual, {'c1': 2, 'c2': 4})}[case]
    model = _stream_model(tmp_path, graph, reuse, 2.5, case)
    d = design(model)
    assert [s.cuts for s in d.stages if s.rf > 1] and all(s.cuts > 0 for s in d.stages if s.rf > 1)
    if case == 'inception':
        folded = next(s for s in d.stages if s.rf > 1).netlist
        assert any('_out' in sig.p['name'] for sig in folded.signals if sig.op == 'reg')
    x = images(model, 90, seed=1)
    want = model.predict_mantissas(x)[model.graph.outputs[0]]
    got, run = interpreted(model, x, 30)
    assert np.array_equal(got, want) and set(run.latencies.tolist()) == {d.latency}
    h, w, _ = d.stages[0].in_hwc
    got, _ = interpreted(model, x[:30], 10, bubbles(3 * h * w, d.period, seed=2))
    assert np.array_equal(got, want[:30])


def test_stream_negative_control_undelayed_fast_layer(tmp_path, monkeypatch):
    """Without the registers that hold the faster folded Conv's outputs, the inception block at 2.5 ns is wrong."""
    from fpga4ml.backends.verilog.stateful import Machine
    from test_verilog_stream_reuse import images, inception, interpreted

    original = Machine.delayed

    def no_wait(self, s, clocks, name, reset=None):
        return s if name.endswith('_out') else original(self, s, clocks, name, reset)

    monkeypatch.setattr(Machine, 'delayed', no_wait)
    model = _stream_model(tmp_path, inception, {'b1': 2, 'b3': 4}, 2.5, 'bad')
    x = images(model, 30, seed=1)
    got, _ = interpreted(model, x, 10)
    assert not np.array_equal(got, model.predict_mantissas(x)[model.graph.outputs[0]])
