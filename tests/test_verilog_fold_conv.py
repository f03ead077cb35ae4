"""ReuseFactor > 1 on Conv layers in the Verilog back end (backends/verilog/fold.py, fold_conv).

Each output pixel of a folded Conv is a folded Dense of its window (im2col order, padding cells a
constant 0) on the layer's shared counter and weight ROMs. The cycle-level interpreter must equal
the emulator bit for bit on inputs outside the input type (Conv2D 'valid' and 'same', strided,
grouped, a dilated Conv1D followed by a Dense on its 2-D output; fixed<16,6>, saturating and
wrapping narrow accumulators, 'auto'); Verilator must equal predict() on 10,000 inputs and the interpreter clock by
clock; one changed weight ROM word must break both equalities.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import design, emulate_cycles, project_files
from fpga4ml.backends.verilog.fold import FoldedDesign
from fpga4ml.backends.verilog.stateful import run_vectors, trace_cycles
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node

from test_reuse import assert_same
from test_stateful import assert_same_trace, clocked_stimulus
from verilog_models import random_inputs, require_verilator

PRECISIONS = {
    'fixed16_6': 'fixed<16,6>',
    # rounding products and a saturating accumulator: the order of the additions is observable
    'narrow_sat': {'default': 'fixed<8,3>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<9,4,RND_CONV,SAT>'},
    # a narrow wrapping accumulator that overflows: wrapped once a cycle (equal to wrapping each step)
    'narrow_wrap': {'default': 'fixed<8,3,RND,SAT>', 'accum': 'fixed<9,3,RND_INF,WRAP>', 'result': 'fixed<9,4>'},
    'auto': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'},
}
SAME_3X3 = (1, 1, 1, 1)


def _conv(g: Graph, rng, name: str, src: str, out_shape, kernel, c_in: int, padding, strides=None,
          groups: int = 1, dilation=None) -> str:
    """A Conv node with random weights (a quarter of them zero) and bias."""
    rank = len(kernel)
    w = rng.normal(0, 0.5, tuple(kernel) + (c_in // groups, out_shape[-1]))
    w[rng.random(w.shape) < 0.25] = 0
    g.add(Node(name, 'Conv', [src], out_shape, attrs={
        'kernel_size': tuple(kernel), 'strides': strides or (1,) * rank, 'dilation': dilation or (1,) * rank,
        'padding': padding, 'groups': groups},
        weights={'kernel': w.astype(np.float32), 'bias': rng.normal(0, 0.3, out_shape[-1]).astype(np.float32)}))
    return name


def conv2d_graph(padding=(0, 0, 0, 0), strides=(1, 1), groups: int = 1, seed: int = 0) -> Graph:
    """8x8x2 -> Conv2D 3x3, 4 filters (any padding, strides and groups) -> ReLU."""
    rng = np.random.default_rng(seed)
    t, b, l, r = padding
    oh, ow = (8 + t + b - 3) // strides[0] + 1, (8 + l + r - 3) // strides[1] + 1
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 8, 2)))
    _conv(g, rng, 'conv', 'x', (oh, ow, 4), (3, 3), 2, padding, strides, groups)
    g.add(Node('relu', 'Activation', ['conv'], (oh, ow, 4), attrs={'function': 'relu'}))
    g.inputs, g.outputs = ['x'], ['relu']
    return g


def conv1d_graph(seed: int = 1) -> Graph:
    """(16, 3) -> Conv1D k=3, dilation 2, 'same', 4 filters -> ReLU -> Dense 4 -> 3 on the (16, 4) tensor."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (16, 3)))
    _conv(g, rng, 'conv', 'x', (16, 4), (3,), 3, (2, 2), dilation=(2,))
    g.add(Node('relu', 'Activation', ['conv'], (16, 4), attrs={'function': 'relu'}))
    g.add(Node('fc', 'Dense', ['relu'], (16, 3), weights={'kernel': rng.normal(0, 0.5, (4, 3)).astype(np.float32),
                                                          'bias': rng.normal(0, 0.3, 3).astype(np.float32)}))
    g.inputs, g.outputs = ['x'], ['fc']
    return g


def cnn_graph(seed: int = 2) -> Graph:
    """8x8x2 -> Conv2D 3x3 stride 2 'same' (4x4x4) -> ReLU -> MaxPool 2x2 -> Flatten (16) -> Dense 5 -> softmax."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 8, 2)))
    _conv(g, rng, 'conv', 'x', (4, 4, 4), (3, 3), 2, (0, 1, 0, 1), (2, 2))  # Keras 'same' at stride 2
    g.add(Node('relu', 'Activation', ['conv'], (4, 4, 4), attrs={'function': 'relu'}))
    g.add(Node('pool', 'Pool', ['relu'], (2, 2, 4), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                          'padding': (0, 0, 0, 0)}))
    g.add(Node('flat', 'Reshape', ['pool'], (16,), attrs={'shape': (16,)}))
    g.add(Node('fc', 'Dense', ['flat'], (5,), weights={'kernel': rng.normal(0, 0.5, (16, 5)).astype(np.float32),
                                                       'bias': rng.normal(0, 0.3, 5).astype(np.float32)}))
    g.add(Node('softmax', 'Softmax', ['fc'], (5,), attrs={'axis': -1}))
    g.inputs, g.outputs = ['x'], ['softmax']
    return g


def convert(tmp_path, graph: Graph, precision: str, name: str = 'cnn', **reuse):
    """The graph for the Verilog back end with per-layer ReuseFactors (the Model default 1)."""
    cfg = {'Model': {'Precision': PRECISIONS[precision], 'ReuseFactor': 1},
           'LayerName': {k: {'ReuseFactor': v} for k, v in reuse.items()}}
    return convert_graph(graph, cfg, output_dir=str(tmp_path / name), project_name=name, backend='Verilog')


def mantissas(model, n: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs over twice the input type's range (half of them wrap or saturate), quantized as predict() does."""
    return [model.graph[name].result_type.quantize(x)
            for name, x in zip(model.graph.inputs, random_inputs(model, n, seed))]


def emulated(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The emulator's output mantissas for input mantissas."""
    g = model.graph
    outs = model.predict([g[name].result_type.to_float(x) for name, x in zip(g.inputs, xs)])
    outs = outs if isinstance(outs, list) else [outs]
    return [g[name].result_type.quantize(y) for name, y in zip(g.outputs, outs)]


def weight_rom(m):
    """The first weight ROM of a folded design (a ROM feeding a multiplier, directly or through a pipeline cut)."""
    def source(a):
        return m[m[a].args[0]] if m[a].op == 'reg' and '_pipe' in m[a].p['name'] else m[a]
    return next(source(a) for s in m.signals if s.op == 'mul' for a in s.args if source(a).op == 'rom')


def change_one_word(m) -> None:
    """Add 1 to one nonzero word of a weight ROM of machine m (in place)."""
    rom = weight_rom(m)
    k = int(np.flatnonzero(rom.p['values'])[0])
    rom.p['values'] = rom.p['values'].copy()
    rom.p['values'][k] += 1


CASES = {  # graph, precision, {layer: R}
    'valid_rf2_fixed16_6': (conv2d_graph(), 'fixed16_6', {'conv': 2}),
    'valid_rf8_narrow_sat': (conv2d_graph(), 'narrow_sat', {'conv': 8}),
    'same_rf4_narrow_sat': (conv2d_graph(SAME_3X3), 'narrow_sat', {'conv': 4}),
    'same_rf72_narrow_wrap': (conv2d_graph(SAME_3X3), 'narrow_wrap', {'conv': 72}),  # one product a cycle
    'same_rf3_auto': (conv2d_graph(SAME_3X3), 'auto', {'conv': 3}),
    'strided_grouped_rf6': (conv2d_graph(SAME_3X3, (2, 2), groups=2), 'narrow_sat', {'conv': 6}),
    'conv1d_rf4_dense_rf3': (conv1d_graph(), 'narrow_sat', {'conv': 4, 'fc': 3}),
    'cnn_rf4_rf2': (cnn_graph(), 'narrow_sat', {'conv': 4, 'fc': 2}),
}


@pytest.mark.parametrize('case', list(CASES))
def test_interpreter_equals_emulator(tmp_path, case):
    graph, precision, reuse = CASES[case]
    model = convert(tmp_path, graph, precision, **reuse)
    d = design(model)
    assert isinstance(d, FoldedDesign)
    assert d.timing.stages == reuse and d.timing.ii == max(reuse.values())
    assert d.timing.latency == sum(r + 1 for r in reuse.values()) + sum(d.timing.cuts.values())
    xs = mantissas(model, 2000)
    assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))


def test_negative_control_one_rom_word(tmp_path):
    graph, precision, reuse = CASES['same_rf4_narrow_sat']
    model = convert(tmp_path, graph, precision, **reuse)
    d = design(model)
    xs = mantissas(model, 500)
    want = emulated(model, xs)
    assert_same(run_vectors(d.machine, d.timing, xs), want)  # control: the design as built is exact
    change_one_word(d.machine)
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(run_vectors(d.machine, d.timing, xs), want)


def test_weight_roms_shared_by_every_pixel(tmp_path):
    # 8x8 'same' pixels x 72 products / R multipliers; one ROM per multiplier of a pixel, read by all 64 pixels
    counts = {}
    for rf in (2, 4, 8):
        model = convert(tmp_path, conv2d_graph(SAME_3X3), 'fixed16_6', name=f'rf{rf}', conv=rf)
        m = design(model).machine
        muls = [s for s in m.signals if s.op == 'mul']
        roms = {a for s in muls for a in s.args if m[a].op == 'rom'}
        assert len(muls) <= 64 * 72 // rf and len(roms) <= 72 // rf
        assert len(muls) > 60 * len(roms)  # each ROM feeds (nearly) every pixel's multiplier of its lane
        est = model.estimate()
        cuts = sum(design(model).timing.cuts.values())
        assert (est['ii'], est['latency_cycles'], est['multipliers']) == (rf, rf + 1 + cuts, len(muls))
        counts[rf] = len(muls)
    assert counts[8] < counts[4] < counts[2]


def test_manifest_latency_ii_and_cycles(tmp_path):
    model = convert(tmp_path, cnn_graph(), 'narrow_sat', conv=4, fc=2)
    lat = 8 + sum(design(model).timing.cuts.values())  # (R + 1) per folded layer, plus its pipeline cuts
    info = json.loads(project_files(model)['manifest.json'])
    assert (info['ii'], info['latency'], info['architecture']) == (4, lat, 'folded')
    assert info['folding']['reuse_factors'] == {'conv': 4, 'fc': 2}
    assert model.latency == lat and model.estimate()['ii'] == 4 and model.estimate()['latency_cycles'] == lat
    # emulate_cycles: one image every II clocks, each result LATENCY clocks after it
    x = random_inputs(model, 6, seed=3)[0]
    shown, valid_out = emulate_cycles(model, x)
    assert np.flatnonzero(valid_out).tolist() == [4 * t + lat for t in range(6)]
    assert np.array_equal(shown[0][valid_out], model.predict(x))


def test_invalid_conv_reuse_factor_raises_at_convert_time(tmp_path):
    # 3x3 kernel, 2 channels, 4 filters: 72 products per pixel; the same rule and message on both back ends
    valid = r'\[1, 2, 3, 4, 6, 8, 9, 12, 18, 24, 36, 72\]'
    for backend in ('Verilog', 'Vitis'):
        cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {'conv': {'ReuseFactor': 5}}}
        with pytest.raises(ConfigError, match=rf"layer 'conv' \(Conv, im2col 18 -> 4, Strategy Latency\): "
                                              rf'ReuseFactor 5 is not valid; valid values are {valid}'):
            convert_graph(conv2d_graph(), cfg, output_dir=str(tmp_path / backend), backend=backend)
    with pytest.raises(ConfigError, match=r"layer 'conv' .*ReuseFactor 144 is not valid"):
        convert(tmp_path, conv2d_graph(), 'fixed16_6', conv=144)
    # control: a valid value converts and folds
    assert design(convert(tmp_path, conv2d_graph(), 'fixed16_6', name='ok', conv=9)).timing.ii == 9


def verilator_check(model, n: int, cycles: int, rebuild: bool, change=None) -> None:
    """Verilator == predict() == the interpreter on n inputs (with and without gaps) and == the interpreter
    clock by clock over `cycles` clocks (the interpreter runs one instance there: slow for long traces).
    Negative control: the interpreter with `change(machine)` applied (default: one weight ROM word
    changed) differs from Verilator; rebuild: also the Verilog lints clean and, written from the
    changed machine, differs from the emulator and from the trace."""
    from fpga4ml.backends.verilog.design import compile_rtl
    from fpga4ml.backends.verilog.verilator import lint

    require_verilator()
    model.compile(sim='rtl', progress=False)
    g, d = model.graph, design(model)
    x = random_inputs(model, n, seed=7)  # half of the values outside the input type
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    xs = [g[name].result_type.quantize(a) for name, a in zip(g.inputs, x)]
    got = model._rtl.predict_mantissas(xs)
    assert_same(run_vectors(d.machine, d.timing, xs), got)
    head = [a[:2000] for a in xs]
    assert_same(model._rtl.predict_mantissas(head, gaps=True), emulated(model, head))
    # clock by clock: junk data between accepted vectors, valid_in at most once every II clocks, ce = 0 clocks
    data, valid, ce = clocked_stimulus([(p.type, p.shape) for p in d.machine.inputs], cycles, d.timing.ii)
    trace = trace_cycles(d.machine, data, valid, ce)
    assert trace[1].sum() > cycles // (4 * d.timing.ii), 'the stimulus must produce results'
    assert_same_trace(model._rtl.simulator.trace(data, valid, ce), trace)
    (change or change_one_word)(d.machine)  # negative control
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(run_vectors(d.machine, d.timing, xs), got)
    if not rebuild:
        return
    assert lint(model.output_dir) == []
    changed = compile_rtl(model, progress=False)  # the Verilog written from the changed machine
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(changed.predict_mantissas(xs), emulated(model, xs))
    with pytest.raises(AssertionError, match='traces differ'):
        assert_same_trace(changed.simulator.trace(data, valid, ce), trace)


def test_verilator_cnn_equals_predict_and_interpreter(tmp_path):
    """The acceptance check: Conv2D (R 4) -> ReLU -> MaxPool -> Flatten -> Dense (R 2) -> softmax, 10,000 images."""
    verilator_check(convert(tmp_path, cnn_graph(), 'narrow_sat', conv=4, fc=2), 10_000, 300, rebuild=False)


@pytest.mark.slow
@pytest.mark.parametrize('case', ['valid_rf2_fixed16_6', 'same_rf4_narrow_sat', 'same_rf72_narrow_wrap',
                                  'strided_grouped_rf6', 'conv1d_rf4_dense_rf3'])
def test_verilator_variants(tmp_path, case):
    graph, precision, reuse = CASES[case]
    verilator_check(convert(tmp_path, graph, precision, **reuse), 10_000, 400, rebuild=True)
