"""Gaps found by running hls4ml's own test suite through fpga4ml (issue 18 item 6).

ac_fixed/ac_int precision strings, thresholded ReLU, the selu table's accuracy, products wider
than 62 bits, and PyTorch nearest upsampling to any output size.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

os.environ.setdefault('KERAS_BACKEND', 'torch')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import FixedType, PrecisionError, parse_precision  # noqa: E402
from fpga4ml.serialize import config_yaml  # noqa: E402

# ----------------------------------------------------------------------------- ac_fixed / ac_int


@pytest.mark.parametrize('text, expected', [
    ('ac_fixed<16,6>', FixedType(16, 6, True, 'TRN', 'WRAP')),
    ('ac_fixed<16,6,false>', FixedType(16, 6, False, 'TRN', 'WRAP')),
    ('ac_fixed<16,6,true,AC_RND,AC_SAT>', FixedType(16, 6, True, 'RND', 'SAT')),
    ('ac_fixed<8,3,true,AC_RND_CONV,AC_SAT_SYM>', FixedType(8, 3, True, 'RND_CONV', 'SAT_SYM')),
    ('ac_fixed<10,2,false,AC_RND_MIN_INF,AC_SAT_ZERO>', FixedType(10, 2, False, 'RND_MIN_INF', 'SAT_ZERO')),
    ('ac_fixed< 12, 4, true, AC_TRN_ZERO >', FixedType(12, 4, True, 'TRN_ZERO', 'WRAP')),
    ('ac_fixed<12,4,true,AC_RND_ZERO,AC_WRAP>', FixedType(12, 4, True, 'RND_ZERO', 'WRAP')),
    ('ac_fixed<12,4,true,AC_RND_INF>', FixedType(12, 4, True, 'RND_INF', 'WRAP')),
    # ac_int converts from fixed point by flooring (to_ac_int casts through an AC_TRN ac_fixed), then wraps
    ('ac_int<8>', FixedType(8, 8, True, 'TRN', 'WRAP')),
    ('ac_int<8,false>', FixedType(8, 8, False, 'TRN', 'WRAP')),
    ('ac_int<5,true>', FixedType(5, 5, True, 'TRN', 'WRAP')),
])
def test_ac_precision_strings(text, expected):
    assert parse_precision(text) == expected
    assert parse_precision(str(expected)) == expected  # our spelling round-trips


@pytest.mark.parametrize('text, words', [
    ('ac_fixed<16,6,true,AC_RND_CONV_ODD>', ['AC_RND_CONV_ODD', 'ties to odd', 'cannot be represented']),
    ('ac_fixed<16,6,maybe>', ["'maybe'", 'true or false']),
    ('ac_fixed<16,6,true,AC_TRN,AC_CLAMP>', ['AC_CLAMP', 'AC_SAT_SYM']),
    ('ac_int<8,true,AC_RND>', ['ac_int takes W[,S]']),
    ('ac_fixed<16>', ['ac_fixed takes W,I[,S[,Q[,O]]]']),
    ('ac_fixed<16,6,false>'.replace('16', '64'), ['64', 'unsigned']),
])
def test_ac_precision_errors_name_the_string(text, words):
    with pytest.raises(PrecisionError) as err:
        parse_precision(text)
    assert repr(text) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_ac_precision_config_round_trip(tmp_path):
    """A model configured with ac_ strings converts, writes its config as YAML, and converts again the same."""
    keras = pytest.importorskip('keras')
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,), name='x')
    out = keras.layers.Dense(4, name='fc')(keras.layers.Dense(5, activation='relu', name='h')(inp))
    kmodel = keras.Model(inp, out)
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='ac_fixed<16,6>')
    config['LayerName']['h']['Precision'] = {'weight': 'ac_fixed<8,2,true,AC_RND,AC_SAT>', 'result': 'ac_int<6,false>'}
    config['LayerName']['fc']['Precision'] = {'result': 'ac_fixed<12,4,true,AC_RND_CONV,AC_SAT_SYM>'}
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config, output_dir=str(tmp_path / 'a'))
    h, fc = model.graph['h'], model.graph['fc']
    assert h.types['weight'] == FixedType(8, 2, True, 'RND', 'SAT')
    assert h.types['result'] == FixedType(6, 6, False, 'TRN', 'WRAP')
    assert fc.types['result'] == FixedType(12, 4, True, 'RND_CONV', 'SAT_SYM')
    reloaded = yaml.safe_load(config_yaml(model.config))
    again = fpga4ml.convert_from_keras_model(kmodel, hls_config=reloaded, output_dir=str(tmp_path / 'b'))
    assert {n.name: n.types for n in again.graph} == {n.name: n.types for n in model.graph}
    x = np.random.default_rng(0).uniform(-4, 4, (200, 6))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


# ----------------------------------------------------------------------------- shared helpers

def one_layer(op: str, in_shape, out_shape, attrs, weights=None):
    """A graph x -> op with an IR node built directly (no framework needed)."""
    from fpga4ml.ir import Graph, Node
    g = Graph()
    g.add(Node('x', 'Input', [], tuple(in_shape)))
    g.add(Node('op', op, ['x'], tuple(out_shape), attrs=attrs, weights=weights or {}, source=op))
    g.inputs, g.outputs = ['x'], ['op']
    return g


def two_inputs(op: str, shape, attrs):
    """A graph (a, b) -> op."""
    from fpga4ml.ir import Graph, Node
    g = Graph()
    g.add(Node('a', 'Input', [], tuple(shape)))
    g.add(Node('b', 'Input', [], tuple(shape)))
    g.add(Node('op', op, ['a', 'b'], tuple(shape), attrs=attrs, source=op))
    g.inputs, g.outputs = ['a', 'b'], ['op']
    return g


def convert(graph, precisions: dict, tmp_path=None):
    """convert_graph with per-layer Precision dicts ({'x': {'result': ...}, 'op': {...}})."""
    from fpga4ml.convert import convert_graph
    cfg = {'Model': {'Precision': 'fixed<16,6>'},
           'LayerName': {name: {'Precision': p} for name, p in precisions.items()}}
    return convert_graph(graph, cfg, output_dir=str(tmp_path or 'prj'))


def grid_inputs(model, n: int, seed: int = 0) -> list[np.ndarray]:
    """Every input on its type's grid, spread over the type's whole range."""
    rng = np.random.default_rng(seed)
    xs = []
    for name in model.graph.inputs:
        t = model.graph[name].result_type
        m = rng.integers(t.min_mantissa, t.max_mantissa, (n,) + model.graph[name].shape, endpoint=True)
        xs.append(t.to_float(m))
    return xs


def netlist_mantissas(model, xs) -> list[np.ndarray]:
    """The Verilog netlist interpreter's output mantissas."""
    from fpga4ml.backends.verilog.lower import lower_graph
    graph = model.graph
    mantissas = [graph[name].result_type.quantize(x) for name, x in zip(graph.inputs, xs)]
    return lower_graph(graph, model.intervals).evaluate(mantissas)


def emulator_mantissas(model, xs) -> list[np.ndarray]:
    """The emulator's output mantissas."""
    ref = model.predict_mantissas(xs if len(xs) > 1 else xs[0])
    return [ref[name] for name in model.graph.outputs]


def have_csim() -> bool:
    """g++ and the ap_types headers (shipped with hls4ml) are available."""
    import importlib.util
    import shutil
    return shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None


def csim_outputs(model, xs) -> list[np.ndarray]:
    """Compile the model's HLS C simulation and run it."""
    model.compile(sim='csim')
    return model._csim.predict(xs)


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Two lists of outputs are bit-identical."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- thresholded ReLU

def test_keras_relu_threshold_matches_keras_exactly():
    """Keras 3's ReLU(threshold=t) (its ThresholdedReLU): x if x > t else 0, also at x == t."""
    keras = pytest.importorskip('keras')
    inp = keras.Input((8,), name='x')
    out = keras.layers.ReLU(threshold=0.75, name='thr')(inp)
    capped = keras.layers.ReLU(threshold=0.5, max_value=2.0, name='thr_cap')(inp)
    kmodel = keras.Model(inp, [out, capped])
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name')
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config)
    lsb = 2.0 ** -10
    x = np.random.default_rng(1).integers(-4096, 4096, (500, 8)) * lsb  # on the fixed<16,6> grid
    x[0] = [0.75, 0.75 + lsb, 0.75 - lsb, 0.5, 0.5 + lsb, 2.0, 2.0 + lsb, -0.75]
    want = kmodel.predict(x, verbose=0)
    got = model.predict(x)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, np.asarray(w, dtype=np.float64))
    assert got[0][0, 0] == 0.0 and got[0][0, 1] == 0.75 + lsb
    # hls4ml's own test (test_activations.py, threshold_relu, theta=0.75): inputs rand - 0.5, tolerance 2e-2
    x = np.random.default_rng(2).random((1000, 8)) - 0.5
    np.testing.assert_allclose(model.predict(x)[0], kmodel.predict(x, verbose=0)[0], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('threshold', [0.3, -0.25, 0.0])
def test_torch_threshold_matches_torch(threshold):
    """nn.Threshold(t, 0) and F.threshold(x, t, 0): x if x > t else 0, negative thresholds included."""
    torch = pytest.importorskip('torch')

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.thr = torch.nn.Threshold(threshold, 0.0)

        def forward(self, x):
            return self.thr(x) + torch.nn.functional.threshold(x, threshold, 0.0)

    net = Net().eval()
    model = fpga4ml.convert_from_pytorch_model(net, hls_config={'Model': {'Precision': 'fixed<16,6>'}}, input_shape=(None, 6))
    lsb = 2.0 ** -10
    x = np.random.default_rng(3).integers(-1024, 1024, (400, 6)) * lsb
    below = np.floor(threshold / lsb) * lsb  # the grid value at or just below the threshold
    x[0, :3] = [below, below + lsb, below - lsb]
    want = net(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(model.predict(x), want)


def test_torch_threshold_with_a_value_raises():
    torch = pytest.importorskip('torch')
    net = torch.nn.Sequential(torch.nn.Threshold(0.5, 1.0))
    with pytest.raises(ValueError, match=r'Threshold\(threshold=0.5, value=1.0\) is not supported'):
        fpga4ml.convert_from_pytorch_model(net, input_shape=(None, 4))


def test_thresholded_relu_backends_bit_exact(tmp_path):
    """Emulator == Verilog netlist == HLS C simulation; a threshold one LSB higher must differ."""
    def model_for(threshold, directory):
        g = one_layer('Activation', (16,), (16,), {'function': 'relu', 'threshold': threshold})
        return convert(g, {'x': {'result': 'fixed<10,3>'}, 'op': {'result': 'fixed<7,2,RND,SAT>'}}, directory)

    model = model_for(0.3, tmp_path / 'a')  # not on the input grid: x > 0.3 <=> x >= 0.3125
    xs = grid_inputs(model, 3000)
    emu = emulator_mantissas(model, xs)
    assert all(np.array_equal(a, b) for a, b in zip(netlist_mantissas(model, xs), emu))
    other = model_for(0.3125, tmp_path / 'b')  # negative control: x == 0.3125 now gives 0
    assert not np.array_equal(netlist_mantissas(other, xs)[0], emu[0])
    assert not np.array_equal(emulator_mantissas(other, xs)[0], emu[0])
    if have_csim():
        want = model.emulator.predict(xs)
        assert same(csim_outputs(model, xs), want)
        assert not same(csim_outputs(other, xs), want)


# ----------------------------------------------------------------------------- selu table accuracy

@pytest.mark.parametrize('activation', ['selu', 'elu', 'softplus', 'softsign', 'tanh', 'sigmoid'])
def test_table_activations_meet_hls4ml_tolerance(activation):
    """hls4ml's test_activations.py: default config (fixed<16,6>), inputs rand - 0.5, rtol = atol = 2e-2.

    The selu table missed it (max error 0.027: its 12-bit index over [-32, 32) floors inputs to 1/64
    and selu's slope is 1.76 just below 0); entries now sample the centre of their input cell.
    """
    keras = pytest.importorskip('keras')
    inp = keras.Input((8,))
    layer = keras.layers.ELU(alpha=1.25) if activation == 'elu' else keras.layers.Activation(activation)
    kmodel = keras.Model(inp, layer(inp))
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name')
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config)
    x = np.random.default_rng(0).random((1000, 8)) - 0.5
    np.testing.assert_allclose(model.predict(x), kmodel.predict(x, verbose=0), rtol=2e-2, atol=2e-2)


def _table_case(in_prec: str, fn: str = 'selu'):
    g = one_layer('Activation', (4,), (4,), {'function': fn})
    return convert(g, {'x': {'result': in_prec}, 'op': {'result': 'fixed<16,6>'}})


def test_narrow_input_tables_stay_exact():
    """An input type with at most TableSize values indexes the table directly: output = cast(f(x)) for every x."""
    from fpga4ml.functions import table_function
    model = _table_case('fixed<12,4>')
    t_in, node = model.graph['x'].result_type, model.graph['op']
    assert node.attrs['tables']['f'].index.frac == t_in.frac
    m = np.arange(t_in.min_mantissa, t_in.max_mantissa + 1)
    x = np.resize(t_in.to_float(m), (len(m) // 4 + 1) * 4).reshape(-1, 4)
    want = node.types['result'].quantize(table_function('selu', {})(x))
    np.testing.assert_array_equal(model.predict_mantissas(x)['op'], want)


def test_wide_input_table_entries_sample_cell_centres():
    """A wider input is floored onto the index; each entry is f at the centre of the inputs it serves."""
    from fpga4ml.functions import table_function
    model = _table_case('fixed<16,6>')
    t_in, table = model.graph['x'].result_type, model.graph['op'].attrs['tables']['f']
    idx = table.index
    assert idx.width == 12 and idx.frac == 6
    f = table_function('selu', {})
    k = np.arange(len(table))
    centres = idx.to_float(idx.min_mantissa + k) + (idx.lsb - t_in.lsb) / 2
    np.testing.assert_array_equal(table.values, table.type.quantize(f(centres)))
    # every input's error is at most half a cell's change of selu plus one output LSB
    m = np.arange(t_in.min_mantissa, t_in.max_mantissa + 1, 7)
    x = np.resize(t_in.to_float(m), (len(m) // 4 + 1) * 4).reshape(-1, 4)
    err = np.abs(model.predict(x) - f(x))
    near = np.abs(x) < 1
    assert err[near].max() < 1.7581 * idx.lsb / 2 + table.type.lsb


# ----------------------------------------------------------------------------- nearest resize to any size

def _torch_resize_case(kind: str):
    torch = pytest.importorskip('torch')
    F = torch.nn.functional

    class Interp(torch.nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.kw = kw

        def forward(self, x):
            return F.interpolate(x, **self.kw)
    cases = {
        '1d_size19': ((3, 8), torch.nn.Upsample(size=19)),
        '1d_exact19': ((3, 8), torch.nn.Upsample(size=19, mode='nearest-exact')),
        '2d_size': ((2, 8, 5), Interp(size=(19, 13))),
        '2d_factor2.5': ((2, 6, 4), torch.nn.Upsample(scale_factor=2.5)),
        '2d_factor3.2': ((2, 3, 5), Interp(scale_factor=(3.2, 1.7))),  # 3 -> 9 rows, yet not a plain repeat
        '2d_recompute': ((2, 3, 5), Interp(scale_factor=3.2, recompute_scale_factor=True)),
        '2d_exact': ((2, 7, 4), torch.nn.Upsample(size=(10, 11), mode='nearest-exact')),
        '2d_int': ((2, 4, 3), torch.nn.Upsample(scale_factor=2)),
    }
    shape, module = cases[kind]
    return torch, shape, torch.nn.Sequential(module).eval()


@pytest.mark.parametrize('kind', ['1d_size19', '1d_exact19', '2d_size', '2d_factor2.5', '2d_factor3.2',
                                  '2d_recompute', '2d_exact', '2d_int'])
def test_torch_nearest_resize_any_size_matches_torch(kind):
    torch, shape, net = _torch_resize_case(kind)
    model = fpga4ml.convert_from_pytorch_model(net, hls_config={'Model': {'Precision': 'fixed<16,6>'}},
                                               input_shape=(None,) + shape)
    x = np.random.default_rng(5).integers(-2 ** 15, 2 ** 15, (64,) + shape) * 2.0 ** -10  # on the grid
    want = np.moveaxis(net(torch.tensor(x)).numpy(), 1, -1)  # fpga4ml's outputs are channels-last
    got = model.predict(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    node = next(n for n in model.graph if n.op == 'Resize')
    assert ('scale' in node.attrs) == (kind == '2d_int')  # integer factors stay the common case


def test_resize_index_backends_bit_exact(tmp_path):
    """A Resize with a source index per axis: emulator == Verilog netlist == HLS C simulation; a changed
    index entry must differ (negative control)."""
    rows = (0, 0, 1, 1, 2, 3, 3)  # 4 -> 7
    cols = (0, 0, 0, 1, 1, 1, 2, 2)  # 3 -> 8

    def model_for(r, directory):
        g = one_layer('Resize', (4, 3, 2), (7, 8, 2), {'index': (r, cols), 'method': 'nearest'})
        return convert(g, {'x': {'result': 'fixed<9,3>'}}, directory)

    model = model_for(rows, tmp_path / 'a')
    xs = grid_inputs(model, 500)
    emu = emulator_mantissas(model, xs)
    m = model.graph['x'].result_type.quantize(xs[0])
    np.testing.assert_array_equal(emu[0], m[:, list(rows)][:, :, list(cols)])
    assert same(netlist_mantissas(model, xs), emu)
    other = model_for((0, 0, 1, 2, 2, 3, 3), tmp_path / 'b')
    assert not same(netlist_mantissas(other, xs), emu)
    assert not same(emulator_mantissas(other, xs), emu)
    if have_csim():
        want = model.emulator.predict(xs)
        assert same(csim_outputs(model, xs), want)
        assert not same(csim_outputs(other, xs), want)


def test_resize_index_out_of_range_raises():
    g = one_layer('Resize', (4, 2), (5, 2), {'index': ((0, 1, 2, 3, 4),), 'method': 'nearest'})
    with pytest.raises(ValueError, match="node 'op': index must give 1 non-empty lists of source indices"):
        convert(g, {'x': {'result': 'fixed<8,3>'}})


# ----------------------------------------------------------------------------- products wider than int64

def _exact_product_reference(a_t, b_t, res_t, ma, mb) -> np.ndarray:
    """cast(a * b) computed with Python Fractions (independent of the emulator's helpers)."""
    import math
    from fractions import Fraction
    out = np.empty(ma.shape, dtype=np.int64)
    for i, (x, y) in enumerate(zip(ma.ravel().tolist(), mb.ravel().tolist())):
        v = Fraction(x * y, 2 ** (a_t.frac + b_t.frac)) * 2 ** res_t.frac  # the product in result LSBs
        q = math.floor(v) if res_t.rounding == 'TRN' else round(v)  # round(): ties to even (RND_CONV)
        if res_t.overflow == 'WRAP':
            q = (q - res_t.min_mantissa) % (1 << res_t.width) + res_t.min_mantissa
        else:
            q = min(max(q, res_t.min_mantissa), res_t.max_mantissa)
        out.flat[i] = q
    return out


@pytest.mark.parametrize('in_prec, res_prec', [
    ('fixed<40,20>', 'fixed<32,12>'),                   # 80-bit exact product, TRN + WRAP
    ('fixed<34,10>', 'fixed<24,16,RND_CONV,SAT>'),      # 68 bits, ties to even, saturating
    ('fixed<32,31>', 'fixed<64,62,RND_CONV,SAT>'),      # 64-bit products into a 64-bit result
])
def test_merge_mul_wider_than_int64_is_exact(in_prec, res_prec, tmp_path):
    g = two_inputs('Merge', (6,), {'mode': 'mul'})
    model = convert(g, {'a': {'result': in_prec}, 'b': {'result': in_prec}, 'op': {'result': res_prec}}, tmp_path)
    xs = grid_inputs(model, 400)
    a_t, b_t, res_t = (model.graph[n].types['result'] for n in ('a', 'b', 'op'))
    ma, mb = a_t.quantize(xs[0]), b_t.quantize(xs[1])
    got = emulator_mantissas(model, xs)[0]
    np.testing.assert_array_equal(got, _exact_product_reference(a_t, b_t, res_t, ma, mb))
    mb_changed = mb.copy()
    mb_changed[:, 0] ^= 1 << 16  # negative control: one input bit of one element
    assert not np.array_equal(got, _exact_product_reference(a_t, b_t, res_t, ma, mb_changed))
    if have_csim():
        assert same(csim_outputs(model, xs), model.emulator.predict(xs))


def test_keras_multiply_wide_product():
    """Keras Multiply of two 40-bit inputs (an 80-bit exact product) converts and predicts."""
    keras = pytest.importorskip('keras')
    a, b = keras.Input((4,), name='a'), keras.Input((4,), name='b')
    kmodel = keras.Model([a, b], keras.layers.Multiply(name='mul')([a, b]))
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='fixed<40,20>')
    config['LayerName']['mul']['Precision']['result'] = 'fixed<24,8,TRN,SAT>'
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config)
    rng = np.random.default_rng(7)
    xa, xb = rng.uniform(-1000, 1000, (300, 4)), rng.uniform(-1000, 1000, (300, 4))
    want = np.clip(np.floor(xa * xb * 2 ** 16) / 2 ** 16, -128, 128 - 2 ** -16)  # float64 close enough here
    got = model.predict([xa, xb])
    np.testing.assert_allclose(got, want, atol=2 ** -15)
    assert (np.abs(xa * xb) >= 128).any()


def test_wide_product_auto_result_raises_naming_the_layer():
    g = two_inputs('Merge', (6,), {'mode': 'mul'})
    with pytest.raises(ValueError, match=r"layer 'op': the exact result type cannot be inferred .*width 80.*"
                                         r"set Precision\['result'\] explicitly"):
        convert(g, {'a': {'result': 'fixed<40,20>'}, 'b': {'result': 'fixed<40,20>'}, 'op': {'result': 'auto'}})



def test_thresholded_relu_bounds_are_exact():
    """The typing pass's bounds of `m > theta ? m : 0` equal brute force over every interval."""
    from fpga4ml.intervals import Interval
    from fpga4ml.semantics.bounds import Bounds
    from fpga4ml.semantics.primitives import Const

    def _thresholded_bounds(x, theta):  # the interval interpreter's bounds of piecewise(x, theta, x, 0)
        zero = Interval(np.zeros_like(x.lo), np.zeros_like(x.lo), 0)
        iv = Bounds(None, []).piecewise(x, Const(np.asarray(theta), 0), lambda v: v, lambda v: zero)
        return iv.lo, iv.hi
    cases = [(lo, hi, th) for lo in range(-6, 7) for hi in range(lo, 7) for th in range(-7, 8)]
    lo = np.array([c[0] for c in cases], dtype=object)
    hi = np.array([c[1] for c in cases], dtype=object)
    for theta in range(-7, 8):
        sel = [i for i, c in enumerate(cases) if c[2] == theta]
        got_lo, got_hi = _thresholded_bounds(Interval(lo[sel], hi[sel], 0), theta)
        for k, i in enumerate(sel):
            values = [m if m > theta else 0 for m in range(cases[i][0], cases[i][1] + 1)]
            assert (got_lo[k], got_hi[k]) == (min(values), max(values)), cases[i]


def test_relu_threshold_with_negative_slope_raises():
    keras = pytest.importorskip('keras')
    inp = keras.Input((4,))
    kmodel = keras.Model(inp, keras.layers.ReLU(negative_slope=0.1, threshold=0.5, name='r')(inp))
    with pytest.raises(ValueError, match=r"layer 'r': a negative slope together with threshold=0.5"):
        fpga4ml.convert_from_keras_model(kmodel, hls_config=fpga4ml.config_from_keras_model(kmodel))


def test_wide_product_trace_counts_saturations():
    """trace() counts the saturated elements of a wide product exactly."""
    g = two_inputs('Merge', (6,), {'mode': 'mul'})
    model = convert(g, {'a': {'result': 'fixed<40,20>'}, 'b': {'result': 'fixed<40,20>'},
                        'op': {'result': 'fixed<24,8,TRN,SAT>'}})
    xs = grid_inputs(model, 200)
    _, traced = model.trace(xs)
    a_t, b_t = model.graph['a'].result_type, model.graph['b'].result_type
    exact = a_t.quantize(xs[0]).astype(object) * b_t.quantize(xs[1]).astype(object)  # LSB 2^-40
    res_t = model.graph['op'].result_type
    floor = exact // (1 << (a_t.frac + b_t.frac - res_t.frac))
    expected = int(np.count_nonzero((floor > res_t.max_mantissa) | (floor < res_t.min_mantissa)))
    assert expected > 0 and traced.stats['op'].overflow == expected


# ----------------------------------------------------------------------------- Keras Dot (hls4ml's dot1d)

def _cast_fraction(v, t: FixedType) -> int:
    """The mantissa of the exact value `v` (a Fraction) cast into `t` (ap_fixed rounding and overflow)."""
    import math
    from fractions import Fraction
    x, half = v * 2 ** t.frac, Fraction(1, 2)
    q = {'TRN': lambda: math.floor(x), 'TRN_ZERO': lambda: math.trunc(x), 'RND': lambda: math.floor(x + half),
         'RND_MIN_INF': lambda: math.ceil(x - half), 'RND_CONV': lambda: round(x),
         'RND_ZERO': lambda: math.floor(x + half) if x < 0 else math.ceil(x - half),
         'RND_INF': lambda: math.floor(x + half) if x >= 0 else math.ceil(x - half)}[t.rounding]()
    lo, hi = t.min_mantissa, t.max_mantissa
    if t.overflow == 'WRAP':
        return (q - lo) % (1 << t.width) + lo
    if t.overflow == 'SAT_ZERO':
        return q if lo <= q <= hi else 0
    lo = -hi if t.overflow == 'SAT_SYM' and t.signed else lo
    return min(max(q, lo), hi)


def _dot1d_reference(ma, mb, frac_in: int, acc_t, res_t, stepwise: bool = True) -> np.ndarray:
    """hls4ml's dot1d with Python Fractions: each product cast into accum, `acc = cast(acc + p)` in order
    (or, with stepwise=False, the sum cast once: what a Dot must NOT do with a SAT accumulator)."""
    from fractions import Fraction
    out = np.empty(len(ma), dtype=np.int64)
    for r, (xa, xb) in enumerate(zip(ma.tolist(), mb.tolist())):
        acc = 0
        for x, y in zip(xa, xb):
            p = _cast_fraction(Fraction(x * y, 2 ** frac_in), acc_t)
            acc = _cast_fraction(Fraction(acc + p, 2 ** acc_t.frac), acc_t) if stepwise else acc + p
        acc = acc if stepwise else _cast_fraction(Fraction(acc, 2 ** acc_t.frac), acc_t)
        out[r] = _cast_fraction(Fraction(acc, 2 ** acc_t.frac), res_t)
    return out[:, None]


def _keras_dot_model(n: int = 8, axes=1):
    keras = pytest.importorskip('keras')
    a, b = keras.Input((n,), name='a'), keras.Input((n,), name='b')
    return keras.Model([a, b], keras.layers.Dot(axes, name='dot')([a, b]))


def _dot_model(kmodel, in_prec: str, accum: str, result: str, directory):
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name')
    for name in ('a', 'b'):
        config['LayerName'][name]['Precision']['result'] = in_prec
    config['LayerName']['dot']['Precision'] = {'accum': accum, 'result': result}
    return fpga4ml.convert_from_keras_model(kmodel, hls_config=config, output_dir=str(directory))


@pytest.mark.parametrize('in_prec, accum, result', [
    ('fixed<10,4>', 'fixed<10,4,RND,SAT>', 'fixed<8,3>'),                       # SAT step by step
    ('fixed<9,3>', 'fixed<12,5,TRN,WRAP>', 'fixed<8,4,RND_CONV,SAT_SYM>'),
    ('fixed<8,2>', 'fixed<9,3,RND_ZERO,SAT_ZERO>', 'fixed<7,3,RND_INF,SAT>'),
    ('fixed<9,4>', 'fixed<11,5,RND_MIN_INF,SAT_SYM>', 'fixed<9,5,TRN_ZERO,WRAP>'),
    ('fixed<34,12>', 'fixed<16,8,RND_CONV,SAT>', 'fixed<12,6,TRN,SAT>'),        # 68-bit exact products
])
def test_keras_dot_is_hls4ml_dot1d(in_prec, accum, result, tmp_path):
    """Emulator == a Fraction reference of dot1d (== Verilog netlist == HLS C simulation); one flipped
    input bit must differ, and a SAT accumulator saturates at each step, not once at the end."""
    kmodel = _keras_dot_model()
    model = _dot_model(kmodel, in_prec, accum, result, tmp_path)
    assert [n.name for n in model.graph] == ['a', 'b', 'dot_mul', 'dot']
    xs = grid_inputs(model, 600)
    scale = 2 / abs(model.graph['a'].result_type.min_value)  # the whole range, and values in [-2, 2]
    xs = [np.concatenate([x[:300], x[300:] * scale]) for x in xs]
    in_t, acc_t, res_t = (model.graph[n].types[v] for n, v in (('a', 'result'), ('dot', 'accum'), ('dot', 'result')))
    ma, mb = in_t.quantize(xs[0]), in_t.quantize(xs[1])
    emu = emulator_mantissas(model, xs)
    np.testing.assert_array_equal(emu[0], _dot1d_reference(ma, mb, 2 * in_t.frac, acc_t, res_t))
    if accum == 'fixed<10,4,RND,SAT>':  # the order of saturation is observable and followed
        assert not np.array_equal(emu[0], _dot1d_reference(ma, mb, 2 * in_t.frac, acc_t, res_t, stepwise=False))
    changed = [xs[0], xs[1].copy()]
    changed[1][:, 0] = in_t.to_float(mb[:, 0] ^ (1 << (in_t.width - 3)))  # negative control
    assert not same(emulator_mantissas(model, changed), emu)
    if 2 * in_t.width <= 62:  # the Verilog back end multiplies signals of up to 62 bits
        assert same(netlist_mantissas(model, xs), emu)
        assert not same(netlist_mantissas(model, changed), emu)
    if have_csim():
        want = model.emulator.predict(xs)
        assert same(csim_outputs(model, xs), want)
        assert not same(model._csim.predict(changed), want)


def test_keras_dot_config_is_hls4ml_s():
    """A Dot has accum and result like hls4ml's; its product node has no entry of its own; a Dense
    LayerType entry does not reach it; BatchNormalization after a Dot is not folded into it."""
    keras = pytest.importorskip('keras')
    kmodel = _keras_dot_model(4, axes=-1)
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name')
    assert set(config['LayerName']) == {'a', 'b', 'dot'}
    assert config['LayerName']['dot']['Precision'] == {'accum': 'auto', 'result': 'auto'}
    by_type = fpga4ml.config_from_keras_model(kmodel, granularity='type')
    assert by_type['LayerType']['Dot']['Precision'] == {'accum': 'auto', 'result': 'auto'}
    config['LayerType'] = {'Dense': {'Precision': {'accum': 'fixed<4,2>'}}}
    config['LayerName']['dot']['Precision'] = {'accum': 'fixed<12,5,RND,SAT>', 'result': 'fixed<9,4>'}
    config['LayerName']['dot_mul'] = {'Precision': {'result': 'fixed<4,2>'}}
    with pytest.warns(UserWarning) as caught:
        model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config)
    messages = ' | '.join(str(w.message) for w in caught)
    assert "LayerType']: unknown configuration key 'Dense' is ignored" in messages
    assert "LayerName']: unknown configuration key 'dot_mul' is ignored" in messages
    assert model.graph['dot_mul'].types['result'] == parse_precision('fixed<12,5,RND,SAT>')
    assert model.graph['dot'].types['accum'] == parse_precision('fixed<12,5,RND,SAT>')
    assert model.graph['dot'].types['weight'] == FixedType(1, 1, False)
    # auto: exact products and an exact sum
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=fpga4ml.config_from_keras_model(
        kmodel, granularity='name', default_precision='fixed<8,3>'))
    xa, xb = (np.random.default_rng(s).uniform(-16, 16, (200, 4)) for s in (1, 2))
    in_t = model.graph['a'].result_type
    qa, qb = (in_t.to_float(in_t.quantize(x)) for x in (xa, xb))
    np.testing.assert_array_equal(model.predict([xa, xb]).ravel(), (qa * qb).sum(axis=1))
    a, b = kmodel.inputs
    bn = keras.Model([a, b], keras.layers.BatchNormalization(name='bn')(kmodel.outputs[0]))
    bn.get_layer('bn').set_weights([np.array([2.0]), np.array([0.5]), np.array([0.0]), np.array([1.0])])
    model = fpga4ml.convert_from_keras_model(bn, hls_config=fpga4ml.config_from_keras_model(bn, granularity='name'))
    assert 'bn' in {n.name for n in model.graph} and np.all(model.graph['dot'].qweights['kernel'] == 1)


@pytest.mark.parametrize('kwargs, shapes, match', [
    ({'axes': 1, 'normalize': True}, ((4,), (4,)), r"layer 'dot' \(Dot\): normalize=True .* not supported"),
    ({'axes': 0}, ((4,), (4,)), r"layer 'dot' \(Dot\): axes=0 is not supported; only the last axis"),
    ({'axes': 2}, ((3, 4), (3, 4)), r"layer 'dot' \(Dot\): inputs of shapes \[\(3, 4\), \(3, 4\)\] are not supported"),
    ({'axes': (1, 1)}, ((3, 4), (3, 5)), r"layer 'dot' \(Dot\): inputs of shapes .* two vectors of the same length"),
])
def test_keras_dot_unsupported_raises_naming_layer_and_attribute(kwargs, shapes, match):
    keras = pytest.importorskip('keras')
    a, b = keras.Input(shapes[0], name='a'), keras.Input(shapes[1], name='b')
    kmodel = keras.Model([a, b], keras.layers.Dot(name='dot', **kwargs)([a, b]))
    with pytest.raises(ValueError, match=match):
        fpga4ml.convert_from_keras_model(kmodel)


def test_keras_dot_equals_hls4ml_csim(tmp_path_factory):
    """hls4ml's test_merge Dot (two 10-vectors, axes=1, ap_fixed<32,16>: 64-bit products) and Dots with
    narrow SAT/WRAP accumulators: bit-identical to hls4ml 1.3.0's C simulation, types included."""
    keras = pytest.importorskip('keras')
    from test_hls4ml_bitexact import assert_bit_exact, assert_negative_control, assert_same_types, compiled_cases
    a, b = keras.Input((10,), name='a'), keras.Input((10,), name='b')
    c, d = keras.Input((10,), name='c'), keras.Input((10,), name='d')
    dot = keras.layers.Dot
    kmodel = keras.Model([a, b, c, d], [dot(1, name='dot')([a, b]), dot(1, name='dot_sat')([a, b]),
                                        dot(-1, name='dot_wrap')([c, d]), dot(1, name='dot_rnd')([c, d])])
    cfg = {'Model': {'Precision': 'fixed<32,16>', 'ReuseFactor': 1, 'Strategy': 'Latency'},
           'LayerName': {'c': {'Precision': {'result': 'fixed<9,4,RND,SAT>'}},
                         'd': {'Precision': {'result': 'fixed<8,3>'}},
                         'dot_sat': {'Precision': {'accum': 'fixed<12,5,RND,SAT>', 'result': 'fixed<10,4>'}},
                         'dot_wrap': {'Precision': {'accum': 'fixed<11,5>', 'result': 'fixed<8,3,RND,SAT>'}},
                         'dot_rnd': {'Precision': {'accum': 'fixed<10,4,RND_CONV,SAT_SYM>',
                                                   'result': 'fixed<8,4,RND_INF,SAT_ZERO>'}}}}
    ours = fpga4ml.convert_from_keras_model(kmodel, hls_config=cfg, output_dir=str(tmp_path_factory.mktemp('ours')))
    with compiled_cases({'dot': (kmodel, cfg, ours)}, {'dot': 2000}, np.random.default_rng(18),
                        tmp_path_factory) as cases:
        case = cases['dot']
        small = [np.random.default_rng(5).uniform(-2, 2, x.shape) for x in case.inputs]
        case.inputs[:] = [np.concatenate([x[:1000], s[1000:]]) for x, s in zip(case.inputs, small)]
        assert_same_types(case)
        assert_bit_exact(case)
        _, traced = ours.trace(case.inputs)
        assert all(traced.stats[n].overflow > 0 for n in ('dot_sat', 'dot_wrap', 'dot_rnd'))
        changed = [x.copy() for x in case.inputs]
        changed[3][:, 0] += 1.0  # negative control: one input of one Dot
        assert_negative_control(case, inputs=changed)
    rng = np.random.default_rng(0)  # hls4ml's own test: inputs in [0, 1), atol 1e-3 against Keras
    xs = [rng.random((100, 10)) for _ in range(4)]
    np.testing.assert_allclose(ours.predict(xs)[0], kmodel.predict(xs, verbose=0)[0], rtol=0, atol=1e-3)


def test_keras_dot_auto_accum_too_wide_names_the_dot():
    """An 'auto' accum whose exact products need 80 bits: the error names the Dot and its accum variable."""
    kmodel = _keras_dot_model(4)
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='fixed<40,20>')
    with pytest.raises(ValueError, match=r"layer 'dot': the exact accum type cannot be inferred .*width 80.*"
                                         r"set Precision\['accum'\] explicitly"):
        fpga4ml.convert_from_keras_model(kmodel, hls_config=config)
