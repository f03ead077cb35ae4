"""ReuseFactor R > 1 on Conv layers in the Verilog stream architecture (streaming.fold_window).

A folded Conv computes each output pixel's window by fold.fold_rows over R clocks; the design then
takes one pixel every P = max R clocks. A small CNN (Conv 'same' R 4 -> ReLU -> MaxPool -> Conv R 2
-> Flatten -> Dense -> softmax) and residual blocks with folded Convs: the stream interpreter
(stream_sim) must equal predict() on hundreds of images, back to back with the manifest latency and
with valid_in bubbles; Verilator must equal predict() on 1,200 images (inputs up to twice the input
range) and the interpreter clock by clock. Negative control: a changed weight-ROM word in a folded
kernel makes the interpreter differ. Invalid R raise at convert time; designs with every R = 1 keep
their pipelined kernels.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import design, project_files
from fpga4ml.backends.verilog.stateful import Machine
from fpga4ml.backends.verilog.stream_sim import run_design
from fpga4ml.config import ConfigError, ConfigWarning
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node

import test_verilog_stream
from test_verilog_fold_conv import change_one_word
from test_verilog_stream import images
from test_verilog_stream_merge import conv_on, finish, inception, max_pool, pixel_op, residual, start
from verilog_models import require_verilator

PRECISION = {'default': 'fixed<8,3,RND,SAT>', 'accum': 'auto', 'result': 'auto'}


def cnn() -> Graph:
    """8x8x2 -> Conv2D(4, 3x3, "same") -> ReLU -> MaxPool 2x2 -> Conv2D(4, 3x3) -> Flatten -> Dense(5) -> softmax."""
    g = start((8, 8, 2))
    conv_on(g, 'c1', 'x', 4, 3)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    max_pool(g, 'mp', 'r1')
    conv_on(g, 'c2', 'mp', 4, 3, same=False)
    finish(g, 'c2', 5)
    g.add(Node('sm', 'Softmax', ['fc'], (5,), attrs={'axis': -1}))
    g.outputs = ['sm']
    return g


def seeded(build, seed: int = 12):
    """`build` with its random weights drawn from a fixed seed (the shared weight generator of
    test_verilog_stream is restored afterwards), so a case does not depend on the tests run before it."""
    def graph() -> Graph:
        rng = test_verilog_stream.RNG
        saved = rng.bit_generator.state
        rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        try:
            return build()
        finally:
            rng.bit_generator.state = saved
    return graph


cnn, residual, inception = seeded(cnn), seeded(residual), seeded(inception)

CASES = {  # graph, {layer: R}
    'cnn_rf4_rf2': (cnn, {'c1': 4, 'c2': 2}),
    'residual_rf4': (residual, {'c2': 4}),  # the folded Conv's stage also adds the skip (held registers)
}
SLOW_CASES = {
    'residual_rf2_rf4': (residual, {'c1': 2, 'c2': 4}),
    'inception_rf2_rf4': (inception, {'b1': 2, 'b3': 4}),  # two folded Convs of one stage, different R
    'cnn_rf72': (cnn, {'c1': 72}),  # one product per clock
}


def convert(graph: Graph, reuse: dict[str, int], tmp=None, name: str = 'sr', **model):
    """The graph in the stream architecture with per-layer ReuseFactors."""
    cfg = {'Model': {'Precision': PRECISION, 'Architecture': 'stream', **model},
           'LayerName': {k: {'ReuseFactor': v} for k, v in reuse.items()}}
    kwargs = {'output_dir': str(tmp / name), 'project_name': name} if tmp is not None else {}
    return convert_graph(graph, cfg, backend='Verilog', **kwargs)


def interpreted(model, x: np.ndarray, instances: int, valid=None):
    """The stream interpreter on images x (split over `instances`): (output mantissas in image order, run)."""
    d = design(model)
    t = model.graph['x'].result_type
    run = run_design(d, t.quantize(x).reshape((instances, len(x) // instances) + x.shape[1:]), valid)
    out = run.outputs[0]
    return out.reshape((len(x),) + out.shape[2:]), run


def bubbles(n_pixels: int, period: int, seed: int) -> np.ndarray:
    """valid_in over clocks: pixels at least `period` clocks apart, with random longer gaps."""
    rng = np.random.default_rng(seed)
    spacing = period + rng.integers(0, 3, n_pixels) * (rng.random(n_pixels) < 0.3)
    valid = np.zeros(int(spacing.sum()) + 1, dtype=bool)
    valid[np.cumsum(spacing) - spacing[0]] = True
    return valid


def check_interpreter(graph, reuse, n: int = 300, **model_keys):
    """Interpreter == predict() back to back (every image at the manifest latency) and with bubbles;
    returns the design."""
    model = convert(graph(), reuse, **model_keys)
    d = design(model)
    assert d.period == max(reuse.values())
    assert {s.name: s.rf for s in d.stages if s.rf > 1} == {
        s.name: max(reuse.get(node.name, 1) for node in s.nodes) for s in d.stages if
        any(node.name in reuse for node in s.nodes)}
    assert all(isinstance(s.netlist, Machine) == (s.rf > 1) for s in d.stages)
    x = images(model, n, seed=1)
    want = model.predict_mantissas(x)[model.graph.outputs[0]]
    got, run = interpreted(model, x, n // 3)
    assert np.array_equal(got, want)
    assert set(run.latencies.tolist()) == {d.latency}
    h, w, _ = d.stages[0].in_hwc
    got, _ = interpreted(model, x[:60], 20, bubbles(3 * h * w, d.period, seed=2))
    assert np.array_equal(got, want[:60])
    return d


@pytest.mark.parametrize('case', list(CASES))
def test_interpreter_equals_predict(case):
    check_interpreter(*CASES[case])


def test_digit_serial_folding_in_a_stream():
    """Folding 'adders' on the stream's folded Convs ('auto' accumulators): the same bits, no multiplier."""
    d = check_interpreter(cnn, {'c1': 4, 'c2': 2}, 150, Folding='adders')
    folded = [s for s in d.stages if s.rf > 1]
    assert len(folded) == 2 and not any(sig.op == 'mul' for s in folded for sig in s.netlist.signals)
    # negative control: the same design against the emulator of a model with one weight one LSB off
    model = convert(cnn(), {'c1': 4, 'c2': 2}, Folding='adders')
    x = images(model, 150, seed=1)
    got, _ = interpreted(model, x, 50)
    node = model.graph['c1']
    node.qweights['kernel'].flat[0] += 1
    model._emulator = None
    assert not np.array_equal(got, model.predict_mantissas(x)[model.graph.outputs[0]])


@pytest.mark.slow
@pytest.mark.parametrize('case', list(SLOW_CASES))
def test_interpreter_variants(case):
    check_interpreter(*SLOW_CASES[case])


def test_negative_control_one_rom_word():
    model = convert(cnn(), {'c1': 4, 'c2': 2})
    x = images(model, 150, seed=3)
    want = model.predict_mantissas(x)[model.graph.outputs[0]]
    got, _ = interpreted(model, x, 75)
    assert np.array_equal(got, want)  # control: the design as built is exact
    change_one_word(design(model).stages[0].netlist)
    got, _ = interpreted(model, x, 75)
    assert not np.array_equal(got, want)


def test_manifest_latency_estimate_and_multipliers(tmp_path):
    model = convert(cnn(), {'c1': 4, 'c2': 2}, tmp_path)
    d = design(model)
    info = json.loads(project_files(model)['manifest.json'])
    assert info['stream'] == {'pixels': 64, 'interval': 4} and info['ii'] == 64 * 4
    assert info['latency'] == d.latency == model.latency
    est = model.estimate()
    assert est['ii'] == 256 and est['latency_cycles'] == d.latency
    # a folded kernel: 3x3x2 -> 4 (72 products) on 72 / 4 multipliers; 3x3x4 -> 4 (144) on 144 / 2
    muls = [sum(s.op == 'mul' for s in st.netlist.signals) for st in d.stages if st.rf > 1]
    assert muls == [72 // 4, 144 // 2]
    assert est['multipliers'] == sum(muls)
    files = project_files(model)
    assert 'One pixel every 4 clocks' in files['sr.v'] and 'R=4' in files['sr_k0.v']
    check_emulate_cycles(model, d)


def check_emulate_cycles(model, d, period: int = 4, pixels: int = 64) -> None:
    """emulate_cycles: one pixel every `period` clocks; image i's outputs `latency` clocks after its last pixel."""
    x = images(model, 3, seed=4)
    shown, valid_out = model.emulate_cycles(x)
    assert np.flatnonzero(valid_out).tolist() == [(i + 1) * pixels * period - period + d.latency for i in range(3)]
    assert np.array_equal(shown[0][valid_out], model.predict(x))


def test_every_reuse_factor_one_keeps_the_pipelined_kernels(tmp_path):
    graph = cnn()
    model = convert(copy.deepcopy(graph), {'c1': 1, 'c2': 1}, tmp_path)
    d = design(model)
    assert d.period == 1 and not any(isinstance(s.netlist, Machine) for s in d.stages)
    info = json.loads(project_files(model)['manifest.json'])
    assert info['stream'] == {'pixels': 64} and info['ii'] == 64
    files = project_files(convert(graph, {}, tmp_path))
    assert files == project_files(model)  # ReuseFactor 1 set or not: the same files


def test_invalid_reuse_factor_raises_at_convert_time():
    valid = r'\[1, 2, 3, 4, 6, 8, 9, 12, 18, 24, 36, 72\]'
    with pytest.raises(ConfigError, match=rf"layer 'c1' \(Conv, im2col 18 -> 4, Strategy Latency\): "
                                          rf'ReuseFactor 5 is not valid; valid values are {valid}'):
        convert(cnn(), {'c1': 5})
    assert design(convert(cnn(), {'c1': 9})).period == 9  # control: a valid value folds


def test_reuse_factor_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)  # a folded Conv and a folded head: no warning
        design(convert(cnn(), {'c1': 4}))
        assert design(convert(cnn(), {'c1': 4, 'fc': 5})).head_timing.ii == 5  # the head folds too


def stream_trace(model, cycles: int, seed: int):
    """Per-clock stimulus for the whole design: junk pixels where valid_in is 0, pixels >= P clocks apart."""
    d = design(model)
    t = model.graph['x'].result_type
    rng = np.random.default_rng(seed)
    valid = bubbles(cycles, d.period, seed)[:cycles]
    data = rng.integers(2 * t.min_mantissa, 2 * t.max_mantissa + 1, (cycles, d.stages[0].in_hwc[2]))
    return np.clip(data, t.min_mantissa, t.max_mantissa), valid


def check_verilator(model, n: int, rebuild: bool = False, target=None) -> None:
    """Verilator == predict() on n images (back to back, exact latency; and with gaps), == the interpreter
    clock by clock; the interpreter with a changed weight-ROM word (in `target(design)`, default the first
    folded kernel) differs from Verilator. rebuild: the Verilog lints clean and, written from the changed
    machine, differs from predict() under Verilator."""
    require_verilator()
    model.compile(sim='rtl', progress=False)
    d = design(model)
    x = images(model, n, seed=5)  # up to twice the input range
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    t = model.graph['x'].result_type
    gappy = model._rtl.simulator.run([t.quantize(x[:200])], gaps=True, check_latency=False)[0]
    assert np.array_equal(gappy, model.predict_mantissas(x[:200])[model.graph.outputs[0]])
    # clock by clock: valid_out in every clock and the outputs where it is set
    h, w, c = d.stages[0].in_hwc
    cycles = 6 * h * w * d.period
    data, valid = stream_trace(model, cycles, seed=6)
    n_img = int(valid.sum()) // (h * w)
    valid[np.flatnonzero(valid)[n_img * h * w:]] = False  # whole images only, as the interpreter streams them
    outs, vout = model._rtl.simulator.trace([data], valid)
    pixels = data[valid][:n_img * h * w].reshape(1, n_img, h, w, c)
    run = run_design(d, pixels, valid)
    assert np.flatnonzero(vout).tolist() == run.shown.tolist()
    assert np.array_equal(outs[0][vout], run.outputs[0][0])
    # negative control: one weight-ROM word of a folded kernel changed (300 images: a one-LSB weight change
    # need not show in a few softmax outputs)
    rtl = model._rtl.predict_mantissas([t.quantize(x[:300])])[0]
    assert np.array_equal(interpreted(model, x[:300], 100)[0], rtl)  # control: as built, equal
    change_one_word(target(d) if target else next(s.netlist for s in d.stages if s.rf > 1))
    assert not np.array_equal(interpreted(model, x[:300], 100)[0], rtl)
    if rebuild:
        from fpga4ml.backends.verilog.design import compile_rtl
        from fpga4ml.backends.verilog.verilator import lint

        changed = compile_rtl(model, progress=False)  # the Verilog written from the changed machine
        assert lint(model.output_dir) == []
        assert not np.array_equal(changed.predict(x[:300])[0], model.predict(x[:300]))


def test_verilator_cnn_equals_predict_and_interpreter(tmp_path):
    """The acceptance check: the CNN with Conv R 4 and R 2, 1,200 images."""
    check_verilator(convert(cnn(), {'c1': 4, 'c2': 2}, tmp_path), 1200)


@pytest.mark.slow
def test_verilator_residual_equals_predict_and_interpreter(tmp_path):
    check_verilator(convert(residual(), {'c1': 2, 'c2': 4}, tmp_path), 1200, rebuild=True)


@pytest.mark.slow
def test_axi_wrapper_spaces_pixels(tmp_path):
    """The AXI4-Stream wrapper holds tready low for P - 1 clocks after each pixel: == predict() with gaps and
    backpressure."""
    from fpga4ml.backends.verilog import axi

    require_verilator()
    model = convert(cnn(), {'c1': 4, 'c2': 2}, tmp_path, name='sx', Interface='axi_stream')
    text = project_files(model)['sx_axis.v']
    assert 'pixel interval = 4' in text
    x = images(model, 60, seed=8)
    want = model.predict(x)
    for seed, gap, stall in ((3, 30, 30), (4, 0, 0)):  # with and without gaps and backpressure
        outs, last, stats = axi.simulate(model, x, seed=seed, gap=gap, stall=stall)
        assert np.array_equal(outs[0], want) and last.all() and stats['violations'] == 0
    # negative control: without the countdown the design gets a pixel every clock: results lost or wrong
    root = tmp_path / 'sx'
    text = (root / 'sx_axis.v').read_text()
    (root / 'sx_axis.v').write_text(text.replace('wire can_take = wait_count == 0;', "wire can_take = 1'b1;"))
    sim = axi.compile_axis(root)
    pixels = model.graph['x'].result_type.quantize(x).reshape(len(x) * 64, -1)
    try:
        got, _, _ = sim.run([pixels], np.zeros(len(pixels), bool), 4, 0, 0)
    except RuntimeError:
        return  # fewer output beats than images came out: caught
    assert not np.array_equal(got[0], model.graph['sm'].result_type.quantize(want).reshape(len(x), -1))
