"""GELU as a table activation ('gelu': x Phi(x) with erf; 'gelu_tanh': the tanh approximation).

The float interpreter equals Keras, PyTorch and onnxruntime (float32 rounding only); the table is exact
when the input type has at most TableSize values (every representable input gives quantize(gelu(x)),
and the erf and tanh forms are told apart); wider inputs stay within the truncated index's bound;
the Verilog netlist computes the emulator's bits (one changed table entry breaks that).
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_pytorch_model  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.torch import torch_to_graph  # noqa: E402
from fpga4ml.functions import gelu, gelu_tanh  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

FUNCTIONS = {'none': ('gelu', gelu), 'tanh': ('gelu_tanh', gelu_tanh)}
#: max |d/dx gelu(x)| (at x ~ 1.5; the tanh form's is within 1e-3 of it)
GELU_SLOPE = 1.13


class Act(nn.Module):
    """One GELU module."""

    def __init__(self, approximate: str = 'none') -> None:
        super().__init__()
        self.act = nn.GELU(approximate=approximate)

    def forward(self, x):
        return self.act(x)


class Mlp(nn.Module):
    """Linear -> nn.GELU -> Linear -> F.gelu(tanh)."""

    def __init__(self, approximate: str = 'none') -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 8), nn.GELU(approximate=approximate), nn.Linear(8, 3)

    def forward(self, x):
        return F.gelu(self.fc2(self.act(self.fc1(x))), approximate='tanh')


def data(shape, n=200, scale=2.0, seed=0):
    return np.random.default_rng(seed).normal(0, scale, (n,) + shape).astype(np.float32)


def run_torch(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize('approximate', ['none', 'tanh'])
def test_float_interpreter_equals_torch(approximate):
    torch.manual_seed(0)
    model = Mlp(approximate).eval()
    graph = torch_to_graph(model, (4,))
    acts = [n.attrs['function'] for n in graph.nodes if n.op == 'Activation']
    assert acts == [FUNCTIONS[approximate][0], 'gelu_tanh']
    x = data((4,))
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], run_torch(model, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('approximate', ['none', 'tanh'])
def test_table_is_exact_on_every_input_of_a_narrow_type(tmp_path, approximate):
    config = {'Model': {'Precision': 'fixed<12,4>'}, 'LayerName': {'act': {'Precision': {'result': 'fixed<18,4>'}}}}
    model = convert_from_pytorch_model(Act(approximate), config, output_dir=str(tmp_path), input_shape=(1,))
    in_t, out_t = model.graph['x'].result_type, model.graph['act'].result_type
    x = in_t.to_float(np.arange(in_t.min_mantissa, in_t.max_mantissa + 1))[:, None]
    got = model.predict_mantissas(x.astype(np.float32))['act']
    name, f = FUNCTIONS[approximate]
    np.testing.assert_array_equal(got, out_t.quantize(f(x)))
    _, other = FUNCTIONS['tanh' if approximate == 'none' else 'none']  # negative control: the other form
    assert not np.array_equal(got, out_t.quantize(other(x)))
    assert abs(gelu(-8.0)) < out_t.lsb and model.graph['act'].attrs['function'] == name


def test_wide_input_stays_within_the_truncated_index_bound(tmp_path):
    config = {'Model': {'Precision': 'fixed<24,6,RND,SAT>'}}
    model = convert_from_pytorch_model(Act(), config, output_dir=str(tmp_path), input_shape=(16,))
    node = model.graph['act']
    index, in_t, out_t = node.attrs['tables']['f'].index, model.graph['x'].result_type, node.result_type
    assert index.width == 12 and index.integer == in_t.integer  # gelu is not monotonic: the whole range kept
    x = data((16,), 500, scale=3.0)
    err = np.max(np.abs(model.predict(x) - gelu(in_t.to_float(in_t.quantize(x)))))
    bound = GELU_SLOPE * (index.lsb - in_t.lsb) / 2 + out_t.lsb
    assert 0 < err <= bound


def test_netlist_computes_the_emulator_bits(tmp_path):
    torch.manual_seed(0)
    model = convert_from_pytorch_model(Mlp(), {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}},
                                       output_dir=str(tmp_path), input_shape=(4,))
    x = data((4,), 300)
    out = model.graph.outputs[0]
    mantissas = model.predict_mantissas(x)[out]
    inputs = [model.graph['x'].result_type.quantize(x)]
    np.testing.assert_array_equal(lower_graph(model.graph, model.intervals).evaluate(inputs)[0], mantissas)
    node = model.graph['act']  # negative control: the entry the most inputs address moves
    table, in_t = node.attrs['tables']['f'], model.graph['fc1'].result_type
    index = np.clip(in_t.quantize(model.trace(x)[1]['fc1']) >> (in_t.frac - table.index.frac),
                    table.index.min_mantissa, table.index.max_mantissa) - table.index.min_mantissa
    values = table.values.copy()
    values[np.bincount(index.ravel()).argmax()] += 1 << 8
    node.attrs['tables'] = {'f': dataclasses.replace(table, values=values)}
    assert not np.array_equal(lower_graph(model.graph, model.intervals).evaluate(inputs)[0], mantissas)


def test_keras_gelu_float_equals_keras():
    keras = pytest.importorskip('keras')
    from fpga4ml.frontends.keras import keras_to_graph

    inp = keras.Input((4,))
    h = keras.layers.Dense(6, activation='gelu', name='fc')(inp)
    h = keras.layers.Activation('gelu', name='act')(h)
    out = keras.layers.Activation(keras.activations.gelu, name='act2')(keras.layers.Dense(3, name='fc2')(h))
    model = keras.Model(inp, out)
    graph = keras_to_graph(model)
    assert sum(n.attrs.get('function') == 'gelu' for n in graph.nodes if n.op == 'Activation') == 3
    x = data((4,))
    want = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], want, atol=1e-5, rtol=1e-5)


def test_keras_gelu_approximate_maps_to_the_tanh_form():
    """functools.partial(keras.activations.gelu, approximate=True) and keras.ops.gelu (approximate=True by default)
    give 'gelu_tanh'; approximate=False gives 'gelu'; float equals Keras."""
    import functools

    keras = pytest.importorskip('keras')
    from fpga4ml.frontends.keras import keras_to_graph

    inp = keras.Input((4,))
    h = keras.layers.Dense(6, activation=functools.partial(keras.activations.gelu, approximate=True), name='fc')(inp)
    h = keras.layers.Activation(functools.partial(keras.ops.gelu), name='act')(h)
    h = keras.layers.Activation(functools.partial(keras.activations.gelu, approximate=False), name='act2')(h)
    model = keras.Model(inp, keras.layers.Dense(3, name='out')(h))
    graph = keras_to_graph(model)
    assert [n.attrs['function'] for n in graph.nodes if n.op == 'Activation'] == ['gelu_tanh', 'gelu_tanh', 'gelu']
    x = data((4,)) * 3
    want = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], want, atol=1e-5, rtol=1e-5)
    graph['act'].attrs['function'] = 'gelu'  # negative control: the erf form on the tanh layer
    assert np.max(np.abs(float_forward(graph, x.astype(np.float64))[0] - want)) > 1e-5


def gelu_onnx(approximate: str):
    """An opset-20 ONNX model: y = Gelu(x, approximate) on 5 features."""
    from onnx import TensorProto, helper

    node = helper.make_node('Gelu', ['x'], ['y'], name='g', approximate=approximate)
    g = helper.make_graph([node], 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [None, 5])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [None, 5])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid('', 20)])


@pytest.mark.parametrize('approximate', ['none', 'tanh'])
def test_onnx_gelu_float_equals_onnxruntime(approximate):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    from fpga4ml.frontends.onnx import onnx_to_graph

    proto = gelu_onnx(approximate)
    onnx.checker.check_model(proto)
    x = data((5,))
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x})[0]
    graph = onnx_to_graph(proto)
    assert [n.attrs['function'] for n in graph.nodes if n.op == 'Activation'] == [FUNCTIONS[approximate][0]]
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('activation', ['gelu', nn.GELU()])
def test_transformer_encoder_layer_with_gelu_float_equals_torch(activation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, activation=activation)).eval()
    graph = torch_to_graph(model, (5, 8))
    assert [n.attrs['function'] for n in graph.nodes if n.op == 'Activation'] == ['gelu']
    x = data((5, 8), 50, scale=1.0)
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], run_torch(model, x), atol=2e-5, rtol=1e-5)


def test_refusals_name_the_layer_and_the_setting(tmp_path):
    with pytest.raises(GraphError, match=r"node 'act' .*approximate argument must be either none or tanh"):
        torch_to_graph(Act('sigmoid').eval(), (4,))
    tanh_encoder = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True,
                                                            activation=nn.GELU(approximate='tanh')))
    with pytest.raises(GraphError, match=r"nn.GELU\(approximate='tanh'\) is not supported: torch computes it two ways"):
        torch_to_graph(tanh_encoder.eval(), (5, 8))
    from fpga4ml.frontends.onnx import onnx_to_graph

    with pytest.raises(GraphError, match=r"Gelu.*approximate='sigmoid' is not supported; supported: "):
        onnx_to_graph(gelu_onnx('sigmoid'))
    config = {'Model': {'Precision': 'fixed<12,4>'}, 'LayerName': {'act': {'TableSemantics': 'hls4ml'}}}
    with pytest.raises(GraphError, match=r"layer 'act': TableSemantics 'hls4ml' covers .*not 'gelu'"):
        convert_from_pytorch_model(Act(), config, output_dir=str(tmp_path), input_shape=(4,))



@pytest.mark.skipif(shutil.which('g++') is None, reason='needs g++')
def test_csim_equals_emulator(tmp_path):
    from test_hls_csim import assert_bit_identical

    torch.manual_seed(0)
    config = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
    model = convert_from_pytorch_model(Mlp(), config, output_dir=str(tmp_path / 'mlp'), input_shape=(4,))
    model.compile(sim='csim')
    xs = [data((4,), 2000, scale=4.0)]  # beyond the input range too: saturating casts before the tables
    assert_bit_identical(model, xs)
    torch.manual_seed(0)  # the same weights, the tanh form in the first GELU
    other = convert_from_pytorch_model(Mlp('tanh'), config, output_dir=str(tmp_path / 'tanh'), input_shape=(4,))
    assert not np.array_equal(other.emulator.predict(xs)[0], model._csim.predict(xs)[0])  # the other form


@pytest.mark.slow
def test_verilator_equals_emulator(tmp_path):
    """The Verilog design (unrolled, II = 1) computes the emulator's bits on 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    torch.manual_seed(0)
    config = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
    model = convert_from_pytorch_model(Mlp(), config, output_dir=str(tmp_path / 'rtl'), input_shape=(4,),
                                       backend='Verilog')
    model.compile(sim='rtl', progress=False)
    x = data((4,), 2000, scale=4.0)
    got = model.predict(x, sim='rtl')
    np.testing.assert_array_equal(got, model.predict(x))
    torch.manual_seed(0)  # negative control: the same weights, the tanh form in the first GELU
    other = convert_from_pytorch_model(Mlp('tanh'), config, output_dir=str(tmp_path / 'tanh'), input_shape=(4,),
                                       backend='Verilog')
    assert not np.array_equal(other.predict(x), got)
