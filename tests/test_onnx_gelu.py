"""torch's tanh GELU as exported below opset 20 (fpga4ml/frontends/onnx_attention.py, fuse_gelu), and the
time-major nn.TransformerEncoderLayer (batch_first=False) through the ONNX front end.

The tanh GELU, written by torch.onnx.export at opset 17 as Mul(x, x), Mul(x, x^2), Mul(0.044715, .), Add(x, .),
Mul(sqrt(2/pi), .), Tanh, Add(1, .), Mul(x, .), Mul(0.5, .), becomes one Activation gelu_tanh: the float
interpreter equals onnxruntime and the 16-bit emulator the torch front end's conversion bit for bit (a moved
weight in the ONNX file breaks that). Any constant moved, or an intermediate read twice, leaves the nodes as
they are (converted node by node, still onnxruntime's values). The dynamo exporter's spelling (Pow(x, 3), the
0.5 before the x) is fused too.

The time-major encoder layer converts to the torch front end's graph of the batch_first=True layer with the
same weights and predicts its bits (a moved weight breaks that); element-wise ops and LayerNormalization that
would mix the batch into the per-sample axes are refused naming the node.
"""

from __future__ import annotations

import copy
import functools
import io

import numpy as np
import pytest

torch = pytest.importorskip('torch')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
nn = torch.nn

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpga4ml.convert import convert_from_pytorch_model, convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.onnx import onnx_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_attention_onnx import (CONFIGS, FEAT, E, assert_equals_torch_front_end, export, fixed_inputs,  # noqa: E402
                                 make, signature)
from test_attention_torch import run_torch  # noqa: E402
from test_transformer_onnx import Encoder  # noqa: E402

IN, HIDDEN, OUT = 6, 8, 3
CONFIG = CONFIGS[0]  # fixed<16,6,RND,SAT>
#: the exported pattern's float32 constants, each a Constant node of the opset-17 export
KAPPA, BETA = float(np.float32(0.044715)), float(np.float32(np.sqrt(2 / np.pi)))


def gelu_model() -> nn.Module:
    torch.manual_seed(5)
    return make(nn.Sequential(nn.Linear(IN, HIDDEN), nn.GELU(approximate='tanh'), nn.Linear(HIDDEN, OUT)), seed=6)


def export_flat(model) -> onnx.ModelProto:
    """torch.onnx.export (TorchScript, opset 17, dynamic batch) of a model on (N, IN) inputs."""
    f = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.randn(2, IN),), f, dynamo=False, opset_version=17, input_names=['x'],
                      output_names=['y'], dynamic_axes={'x': {0: 'N'}, 'y': {0: 'N'}})
    return onnx.load_from_string(f.getvalue())


def flat_inputs(seed: int = 2, n: int = 1000) -> np.ndarray:
    """2n inputs: n standard normal, n scaled x4 (they saturate the 16-bit types)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, (n, IN)), 4 * rng.normal(0, 1, (n, IN))]).astype(np.float32)


def onnxruntime(proto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x})


def activations(graph) -> list[str]:
    return [n.attrs['function'] for n in graph.nodes if n.op == 'Activation']


def with_constant(proto, value: float, new: float) -> onnx.ModelProto:
    """A copy of the export with its one scalar Constant node of `value` set to `new`."""
    moved = copy.deepcopy(proto)
    nodes = [n for n in moved.graph.node if n.op_type == 'Constant'
             and numpy_helper.to_array(n.attribute[0].t).size == 1
             and float(numpy_helper.to_array(n.attribute[0].t)) == value]
    assert len(nodes) == 1, value
    nodes[0].attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(new, np.float32)))
    return moved


def test_the_exported_tanh_gelu_is_one_gelu_tanh_table_and_the_torch_front_ends_bits(tmp_path):
    model = gelu_model()
    proto = export_flat(model)
    ops = [n.op_type for n in proto.graph.node if n.op_type != 'Constant']
    assert ops == ['Gemm', 'Mul', 'Mul', 'Mul', 'Add', 'Mul', 'Tanh', 'Add', 'Mul', 'Mul', 'Gemm']  # no Gelu op
    x = flat_inputs()
    graph = onnx_to_graph(proto)
    assert [n.op for n in graph.nodes] == ['Input', 'Dense', 'Activation', 'Dense']
    assert activations(graph) == ['gelu_tanh']
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], onnxruntime(proto, x)[0],
                               atol=2e-5, rtol=1e-5)
    ours = convert_graph(copy.deepcopy(graph), CONFIG, output_dir=str(tmp_path / 'onnx'))
    theirs = convert_from_pytorch_model(model, CONFIG, output_dir=str(tmp_path / 'torch'), input_shape=(IN,))
    assert signature(ours.graph) == signature(theirs.graph)  # ops, shapes, attributes, types, quantized weights
    out = ours.predict(x)
    np.testing.assert_array_equal(out, theirs.predict(x))
    assert np.max(np.abs(out - onnxruntime(proto, x)[0])) > 0  # fixed point, not a copy of float
    # negative control: one first-layer weight moved by 0.25 in the ONNX file
    init = next(i for i in proto.graph.initializer if tuple(i.dims) == (HIDDEN, IN))
    w = numpy_helper.to_array(init).copy()
    w[2, 1] += 0.25
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    moved = convert_graph(onnx_to_graph(proto), CONFIG, output_dir=str(tmp_path / 'moved')).predict(x)
    assert not np.array_equal(moved, out)


@pytest.mark.parametrize('value, new', [
    (0.5, 0.25), (1.0, 0.5), (KAPPA, 2 * KAPPA),
    (BETA, float(np.nextafter(np.float32(BETA), np.float32(1))))])  # one float32 ulp off
def test_a_pattern_with_another_constant_is_not_fused_and_converts_node_by_node(value, new):
    proto = with_constant(export_flat(gelu_model()), value, new)
    x = flat_inputs(3, 200)
    graph = onnx_to_graph(proto)
    assert activations(graph) == ['tanh']  # not fused: the Tanh and the Mul/Add nodes around it
    assert sum(n.op == 'Merge' for n in graph.nodes) == 4  # x*x, x*x^2, x + 0.044715 x^3, x*(1+tanh)
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], onnxruntime(proto, x)[0],
                               atol=2e-5, rtol=1e-5)


def test_a_pattern_whose_tanh_is_read_elsewhere_is_not_fused():
    proto = export_flat(gelu_model())
    tanh = next(n for n in proto.graph.node if n.op_type == 'Tanh')
    proto.graph.output.append(helper.make_tensor_value_info(tanh.output[0], TensorProto.FLOAT, ['N', HIDDEN]))
    x = flat_inputs(4, 200)
    graph = onnx_to_graph(proto)
    assert activations(graph) == ['tanh']
    for got, want in zip(float_forward(graph, x.astype(np.float64)), onnxruntime(proto, x)):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def one_input_model(nodes, consts: dict[str, float]) -> onnx.ModelProto:
    """x (N, 5) -> `nodes` -> y (N, 5) with float32 scalar constants."""
    inits = [helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in consts.items()]
    graph = helper.make_graph(nodes, 'gelu', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 5])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])


def dynamo_spelling(exponent: float) -> onnx.ModelProto:
    """The tanh GELU as torch.onnx.export(dynamo=True) writes it at opset 17: Pow(x, 3), the 0.5 before the x."""
    nodes = [helper.make_node('Pow', ['x', 'three'], ['cube'], name='pow'),
             helper.make_node('Mul', ['kappa', 'cube'], ['k'], name='times_kappa'),
             helper.make_node('Add', ['x', 'k'], ['inner'], name='inner'),
             helper.make_node('Mul', ['beta', 'inner'], ['scaled'], name='times_beta'),
             helper.make_node('Tanh', ['scaled'], ['t'], name='tanh'),
             helper.make_node('Add', ['t', 'one'], ['a'], name='plus_one'),
             helper.make_node('Mul', ['half', 'a'], ['h'], name='half'),
             helper.make_node('Mul', ['x', 'h'], ['y'], name='times_x')]
    return one_input_model(nodes, {'three': exponent, 'kappa': KAPPA, 'beta': BETA, 'one': 1.0, 'half': 0.5})


def test_the_dynamo_spelling_is_fused_too():
    proto = dynamo_spelling(3.0)
    x = np.linspace(-5, 5, 50, dtype=np.float32).reshape(10, 5)
    graph = onnx_to_graph(proto)
    assert [(n.op, n.attrs.get('function')) for n in graph.nodes] == [('Input', None), ('Activation', 'gelu_tanh')]
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], onnxruntime(proto, x)[0], atol=1e-6)
    # control: another exponent is no GELU (and Pow alone has no handler)
    with pytest.raises(GraphError, match=r"ONNX node 'pow' \(Pow\): op 'Pow' is not supported"):
        onnx_to_graph(dynamo_spelling(2.0))
    # the erf GELU with the 0.5 before the x is fused as well
    erf = one_input_model([helper.make_node('Mul', ['x', 'c'], ['d'], name='scale'),
                           helper.make_node('Erf', ['d'], ['e'], name='erf'),
                           helper.make_node('Add', ['e', 'one'], ['a'], name='plus_one'),
                           helper.make_node('Mul', ['a', 'half'], ['h'], name='half'),
                           helper.make_node('Mul', ['h', 'x'], ['y'], name='times_x')],
                          {'c': float(np.float32(1 / np.sqrt(2))), 'one': 1.0, 'half': 0.5})
    graph = onnx_to_graph(erf)
    assert [(n.op, n.attrs.get('function')) for n in graph.nodes] == [('Input', None), ('Activation', 'gelu')]
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], onnxruntime(erf, x)[0], atol=1e-6)


def test_an_encoder_layer_with_the_tanh_gelu_converts_with_one_gelu_tanh():
    # activation=partial(F.gelu, approximate='tanh') keeps torch off its fast path (which computes the erf form for
    # nn.GELU('tanh')), so torch computes the tanh form; the torch front end refuses it, the ONNX export converts
    model = make(Encoder(functools.partial(torch.nn.functional.gelu, approximate='tanh'), False), seed=4)
    proto = export(model)
    x = fixed_inputs(3)[:300]
    graph = onnx_to_graph(proto)
    assert activations(graph) == ['gelu_tanh']
    got = float_forward(graph, x.astype(np.float64))[0]
    np.testing.assert_allclose(got, onnxruntime(proto, x)[0], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(got, run_torch(model, x), atol=2e-5, rtol=1e-5)
    erf = Encoder('gelu', False)  # control: the erf GELU with the same weights is told apart
    erf.load_state_dict(model.state_dict())
    assert np.max(np.abs(got - run_torch(erf.eval(), x))) > 1e-4


# --------------------------------------------------------------------------- time-major TransformerEncoderLayer


@pytest.mark.parametrize('activation, norm_first', [('relu', False),
                                                    pytest.param('gelu', True, marks=pytest.mark.slow)])
def test_a_time_major_encoder_layer_is_the_batch_first_ones_bit_for_bit(tmp_path, activation, norm_first):
    torch.manual_seed(9)
    model = make(Encoder(activation, norm_first, batch_first=False), seed=10)
    twin = Encoder(activation, norm_first)  # batch_first=True, the same weights
    twin.load_state_dict(model.state_dict())
    twin.eval()
    proto = export(model)
    assert sum(n.op_type == 'LayerNormalization' for n in proto.graph.node) == 2
    x = fixed_inputs(13)
    graph = onnx_to_graph(proto)
    np.testing.assert_allclose(float_forward(graph, x[:300].astype(np.float64))[0],
                               ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x[:300]})[0],
                               atol=2e-5, rtol=1e-5)
    assert activations(graph) == [activation]
    assert not {'Scale', 'Crop', 'Transpose'} & {n.op for n in graph.nodes}  # the attention is torch's nodes
    out = assert_equals_torch_front_end(tmp_path, graph, twin, x, [CONFIG])[0]
    # negative control: one linear2 weight moved by 0.25 in the time-major ONNX file
    init = next(i for i in proto.graph.initializer if tuple(i.dims) == (16, E))  # linear2's W^T
    w = numpy_helper.to_array(init).copy()
    w[3, 1] += 0.25
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    moved = convert_graph(onnx_to_graph(proto), CONFIG, output_dir=str(tmp_path / 'moved')).predict(x)
    assert not np.array_equal(moved, out)


def moved_batch(second: onnx.NodeProto) -> onnx.ModelProto:
    """x (N, 3, 3) transposed to 'a' (3, N, 3) and 'c' (3, 3, N), then `second` reading them."""
    moves = {'a': [1, 0, 2], 'c': [1, 2, 0]}
    nodes = [helper.make_node('Transpose', ['x'], [t], name=f'to_{t}', perm=perm)
             for t, perm in moves.items() if t in second.input] + [second]
    graph = helper.make_graph(nodes, 'moved', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 3, 3])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones(3, np.float32), 'ones')])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])


def test_ops_that_would_mix_the_moved_batch_are_refused_by_name():
    # (3, N, 3) + (3, 3, N): at batch 1 both hold 3 x 3 values, but ONNX broadcasts them against each other
    with pytest.raises(GraphError, match=r"ONNX node 'sum' \(Add\): inputs \['a', 'c'\] hold the batch on axes "
                                         r"\['1', '2'\]; Add of tensors needs the batch at the same place"):
        onnx_to_graph(moved_batch(helper.make_node('Add', ['a', 'c'], ['y'], name='sum')))
    # a LayerNormalization over (N, 3) of (3, N, 3) normalises over the batch
    with pytest.raises(GraphError, match=r"ONNX node 'norm' \(LayerNormalization\): input 'a' holds the batch on "
                                         r"1; LayerNormalization reads such a tensor only with the batch on an axis "
                                         r"before the normalised axes \(from axis 1\)"):
        onnx_to_graph(moved_batch(helper.make_node('LayerNormalization', ['a', 'ones'], ['y'], name='norm', axis=1)))
    # control: the same LayerNormalization over the last axis follows the batch
    graph = onnx_to_graph(moved_batch(helper.make_node('LayerNormalization', ['a', 'ones'], ['y'], name='norm',
                                                       axis=-1)))
    assert [n.op for n in graph.nodes] == ['Input', 'LayerNorm']
