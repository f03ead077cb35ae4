"""ReuseFactor > 1 on the Verilog back end (backends/verilog/fold.py): multiply-accumulate folded Dense layers.

The folded design's cycle-level interpreter must equal the emulator bit for bit (fixed<16,6> with its
per-product rounding into the accumulator, saturating narrow accumulators, 'auto' types), Verilator
must equal both, and changing one weight ROM word must break the equality.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import design, emulate_cycles, project_files
from fpga4ml.backends.verilog.fold import FoldedDesign
from fpga4ml.backends.verilog.stateful import run_vectors
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph

from verilog_models import mlp_graph

SIZES = (16, 12, 8, 5)
PRECISIONS = {
    'fixed16_6': 'fixed<16,6>',
    # narrow, rounding and saturating accumulators: products round and partial sums saturate in input order
    'narrow_sat': {'default': 'fixed<8,3>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<9,4,RND_CONV,SAT>'},
    'auto': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'},
}


def folded_model(tmp_path, precision, reuse, softmax: bool = False, name: str = 'mlp', **layers):
    """The test MLP with a Model-level ReuseFactor and per-layer ones."""
    cfg = {'Model': {'Precision': PRECISIONS[precision], 'ReuseFactor': reuse},
           'LayerName': {k: {'ReuseFactor': v} for k, v in layers.items()}}
    return convert_graph(mlp_graph(0, sizes=SIZES, softmax=softmax), cfg, output_dir=str(tmp_path / name),
                         project_name=name, backend='Verilog')


def input_mantissas(model, n: int = 3000, seed: int = 0) -> list[np.ndarray]:
    """Random real inputs, a tenth of them far outside the input type (they saturate or wrap), quantized."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (n, SIZES[0]))
    x[: n // 10] *= 40
    t = model.graph['x'].result_type
    return [t.quantize(x)]


def emulated(model, mantissas: list[np.ndarray]) -> list[np.ndarray]:
    """The emulator's output mantissas."""
    g = model.graph
    outs = model.predict(g['x'].result_type.to_float(mantissas[0]))
    outs = outs if isinstance(outs, list) else [outs]
    return [g[name].result_type.quantize(y) for name, y in zip(g.outputs, outs)]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for k, (a, b) in enumerate(zip(got, want)):
        bad = np.flatnonzero(np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1))
        assert not len(bad), f'output {k} differs on {len(bad)} of {len(a)} vectors; first: {bad[0]}'


CASES = [('fixed16_6', 2, {}), ('fixed16_6', 4, {}), ('narrow_sat', 4, {}), ('auto', 2, {}),
         # mixed: R = 6 on a 16 -> 12 layer (2 input blocks x 3 output groups), fc1 unrolled, R = 5 on 8 -> 5
         ('narrow_sat', 1, {'fc0': 6, 'fc2': 5}), ('fixed16_6', 1, {'fc0': 16, 'fc1': 96, 'fc2': 8})]


@pytest.mark.parametrize('precision,reuse,layers', CASES)
def test_interpreter_equals_emulator(tmp_path, precision, reuse, layers):
    model = folded_model(tmp_path, precision, reuse, **layers)
    d = design(model)
    assert isinstance(d, FoldedDesign)
    rfs = {'fc0': reuse, 'fc1': reuse, 'fc2': reuse, **layers}
    rfs = {k: v for k, v in rfs.items() if v > 1}
    assert d.timing.stages == rfs and d.timing.ii == max(rfs.values())
    assert d.timing.latency == sum(r + 1 for r in rfs.values()) + sum(d.timing.cuts.values())
    xs = input_mantissas(model)
    assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))


def test_multipliers_fall_with_the_reuse_factor(tmp_path):
    counts = {}
    for rf in (2, 4, 8):
        model = folded_model(tmp_path, 'fixed16_6', rf, name=f'rf{rf}')
        est, cuts = model.estimate(), design(model).timing.cuts
        counts[rf] = est['multipliers']
        assert est['ii'] == rf and est['latency_cycles'] == 3 * (rf + 1) + sum(cuts.values())
    products = 16 * 12 + 12 * 8 + 8 * 5
    assert all(n <= products / rf for rf, n in counts.items()) and counts[8] < counts[4] < counts[2]


def test_negative_control_one_rom_word(tmp_path):
    model = folded_model(tmp_path, 'narrow_sat', 4)
    d = design(model)
    xs = input_mantissas(model, 500)
    want = emulated(model, xs)
    m = d.machine
    weight_rom = next(m[a] for s in m.signals if s.op == 'mul' for a in s.args if m[a].op == 'rom')
    k = int(np.flatnonzero(weight_rom.p['values'])[0])
    weight_rom.p['values'] = weight_rom.p['values'].copy()
    weight_rom.p['values'][k] += 1
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(run_vectors(m, d.timing, xs), want)


def test_manifest_latency_ii_and_cycles(tmp_path):
    model = folded_model(tmp_path, 'fixed16_6', 1, softmax=True, fc0=4, fc2=2)
    lat = 8 + sum(design(model).timing.cuts.values())  # (R + 1) per folded layer, plus its pipeline cuts
    info = json.loads(project_files(model)['manifest.json'])
    assert (info['ii'], info['latency'], info['architecture']) == (4, lat, 'folded')
    assert info['folding']['reuse_factors'] == {'fc0': 4, 'fc2': 2}
    assert model.latency == lat and model.estimate()['ii'] == 4
    assert_cycles(model, ii=4, latency=lat)


def assert_cycles(model, ii: int, latency: int, n: int = 5) -> None:
    """emulate_cycles: one vector every II clocks, each result LATENCY clocks after it, equal to predict()."""
    x = np.random.default_rng(1).normal(0, 2, (n, SIZES[0]))
    shown, valid_out = emulate_cycles(model, x)
    assert np.flatnonzero(valid_out).tolist() == [ii * t + latency for t in range(n)]
    for got, want in zip(shown, model.predict(x)):
        assert np.array_equal(got[valid_out], want)


def test_reuse_factor_errors_name_layer_value_and_valid_values(tmp_path):
    # every level is checked at convert time: the Model default, a LayerType entry, a LayerName entry
    with pytest.raises(ConfigError, match=r"layer 'fc0' \(Dense 16 -> 12, Strategy Latency\): ReuseFactor 7 is "
                                          r'not valid; valid values are \[1, 2, 3, 4, 6, 8, 12, 16,'):
        folded_model(tmp_path, 'fixed16_6', 7)
    with pytest.raises(ConfigError, match=r"layer 'fc1' .*ReuseFactor 5 is not valid"):
        folded_model(tmp_path, 'fixed16_6', 1, fc1=5)
    cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerType': {'Dense': {'ReuseFactor': 32}}}  # 40 products in fc2
    with pytest.raises(ConfigError, match=r"layer 'fc2' \(Dense 8 -> 5, Strategy Latency\): ReuseFactor 32 is "
                                          r'not valid; valid values are \[1, 2, 4, 5, 8, 10, 20, 40\]'):
        convert_graph(mlp_graph(0, sizes=SIZES), cfg, output_dir=str(tmp_path / 'type'), backend='Verilog')
    # control: a value valid for every layer converts
    assert design(folded_model(tmp_path, 'fixed16_6', 8, name='ok')).timing.ii == 8


def test_unrolled_design_unchanged_at_reuse_factor_1(tmp_path):
    model = folded_model(tmp_path, 'fixed16_6', 1)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        info = json.loads(project_files(model)['manifest.json'])
    assert info['ii'] == 1 and info['architecture'] == 'unrolled'


@pytest.mark.slow
@pytest.mark.parametrize('precision,reuse,layers', [CASES[0], CASES[2], CASES[4]])
def test_verilator_equals_emulator(tmp_path, precision, reuse, layers):
    from fpga4ml.backends.verilog.design import compile_rtl
    from fpga4ml.backends.verilog.verilator import lint

    model = folded_model(tmp_path, precision, reuse, **layers)
    rtl = compile_rtl(model)
    assert lint(model.output_dir) == []
    xs = input_mantissas(model, 2000)
    want = emulated(model, xs)
    for gaps in (False, True):  # bubbles and ce = 0 clocks between the vectors: the same results
        assert_same(rtl.predict_mantissas(xs, gaps=gaps), want)
    x = model.graph['x'].result_type.to_float(xs[0][:300])
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    # negative control: one weight ROM word changed in the written Verilog no longer matches
    kernel = model.graph['fc1'].qweights['kernel']
    kernel.flat[int(np.flatnonzero(kernel)[0])] += 1
    model._verilog_design = None
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(compile_rtl(model).predict_mantissas(xs), want)


def test_prune_for_reuse_removes_whole_multipliers(tmp_path):
    from fpga4ml.folding import mac_schedule, prune_for_reuse

    g = mlp_graph(0, sizes=SIZES, softmax=False)
    kernel = np.random.default_rng(2).normal(0, 1, (16, 12)).astype(np.float32)
    pruned, mask = prune_for_reuse(kernel, 4, 0.5)
    groups = mac_schedule(16, 12, 4).reshape(-1, 4, 2)
    kept = mask[groups[..., 0], groups[..., 1]]
    assert np.all((kept == 0).all(axis=1) | (kept == 1).all(axis=1)) and (kept == 0).all(axis=1).sum() == 24
    assert np.array_equal(pruned, kernel * mask) and mask.mean() == 0.5
    # the folded layer loses exactly the pruned multipliers; the same number of zeros at random loses ~none
    def multipliers(k):
        g['fc0'].weights['kernel'] = k
        cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1}, 'LayerName': {'fc0': {'ReuseFactor': 4}}}
        model = convert_graph(g, cfg, output_dir=str(tmp_path / 'p'), backend='Verilog')
        d = design(model)
        xs = input_mantissas(model, 500)
        assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))
        return model.estimate()['multipliers']
    scattered = kernel.copy()
    scattered.flat[np.random.default_rng(3).permutation(kernel.size)[:kernel.size // 2]] = 0
    assert multipliers(kernel) == 48 and multipliers(pruned) == 24 and multipliers(scattered) > 40
    with pytest.raises(ConfigError, match=r'ReuseFactor 5 is not valid for a 16 x 12 kernel'):
        prune_for_reuse(kernel, 5, 0.5)
