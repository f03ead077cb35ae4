"""nn.TransformerEncoderLayer through torch.onnx.export (opset 17) and the ONNX front end.

Eval mode, batch_first=True, post- and pre-norm, relu and the erf gelu (exported as Div, Erf, Add, Mul,
Mul and fused into one Activation): the float interpreter equals onnxruntime and torch; the converted
graph is the torch front end's (same ops, attributes, types and quantized weights) and predicts its bits
on 2,000 inputs (half scaled x4) at fixed<16,6,RND,SAT> and the default fixed<16,6>; at 24 bits both
stay within 1e-2 of torch. Control: one moved linear1 weight changes the outputs. The GELU spelled with a
Mul by 1/sqrt 2 is fused as well; another constant is refused naming the Erf.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
nn = torch.nn

from fpga4ml.convert import convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.onnx import onnx_to_graph  # noqa: E402
from fpga4ml.frontends.torch import torch_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_attention_onnx import FEAT, E, T, assert_equals_torch_front_end, export, fixed_inputs, make  # noqa: E402
from test_attention_torch import run_torch  # noqa: E402


class Encoder(nn.Module):
    """A Linear embedding and one encoder layer (2 heads, feed-forward 16, dropout skipped in eval); with
    batch_first=False the layer reads and writes (L, N, E) (the module still takes and gives (N, L, E))."""

    def __init__(self, activation: str, norm_first: bool, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(FEAT, E)
        self.enc = nn.TransformerEncoderLayer(E, 2, 16, dropout=0.1, activation=activation, batch_first=batch_first,
                                              norm_first=norm_first)

    def forward(self, x):
        if self.batch_first:
            return self.enc(self.embed(x))
        return self.enc(self.embed(x).transpose(0, 1)).transpose(0, 1)


def float_check_config(graph) -> dict:
    """24-bit types (a LayerNorm reads at most 25 bits over 8 values) and a 2^18-entry GELU table (the default
    4,096 entries index a 24-bit input in steps of 1/4: errors up to 0.14)."""
    return {'Model': {'Precision': 'fixed<24,10,RND,SAT>'},
            'LayerName': {n.name: {'TableSize': 1 << 18} for n in graph.nodes if n.op == 'Activation'}}


@pytest.mark.parametrize('activation, norm_first', [
    ('relu', False), ('gelu', True),
    pytest.param('relu', True, marks=pytest.mark.slow), pytest.param('gelu', False, marks=pytest.mark.slow)])
def test_exported_encoder_layer_is_the_torch_front_ends_bit_for_bit(tmp_path, activation, norm_first):
    torch.manual_seed(7)
    model = make(Encoder(activation, norm_first), seed=8)
    proto = export(model)
    x = fixed_inputs(11)
    want = run_torch(model, x)
    onnxruntime = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x[:300]})[0]
    graph = onnx_to_graph(proto)
    float_out = float_forward(graph, x.astype(np.float64))[0]
    np.testing.assert_allclose(float_out[:300], onnxruntime, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(float_out, want, atol=2e-5, rtol=1e-5)
    assert [n.attrs['function'] for n in graph.nodes if n.op == 'Activation'] == [activation]
    assert not {'Scale', 'Crop', 'Transpose'} & {n.op for n in graph.nodes}  # the attention is torch's nodes
    outs = assert_equals_torch_front_end(tmp_path, graph, model, x)
    # both front ends agree with torch at 24 bits, and with each other
    torch_graph = torch_to_graph(model, (T, FEAT))
    ours = convert_graph(copy.deepcopy(graph), float_check_config(graph), output_dir=str(tmp_path / 'o24')).predict(x)
    theirs = convert_graph(torch_graph, float_check_config(torch_graph), output_dir=str(tmp_path / 't24')).predict(x)
    np.testing.assert_array_equal(ours, theirs)
    assert np.max(np.abs(ours - want)) < 1e-2
    # negative control: one moved linear1 weight changes the 16-bit outputs
    moved = copy.deepcopy(graph)
    dense = next(n for n in moved.nodes if n.op == 'Dense' and n.shape == (T, 16))
    dense.weights['kernel'] = dense.weights['kernel'].copy()
    dense.weights['kernel'][0, 0] += 0.25
    config = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
    assert not np.array_equal(convert_graph(moved, config, output_dir=str(tmp_path / 'm')).predict(x), outs[0])


def test_the_gelu_spelled_with_a_mul_by_one_over_sqrt2_is_fused_too():
    from onnx import TensorProto, helper

    def const(name, value):
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])
    nodes = [helper.make_node('Mul', ['c', 'x'], ['d'], name='scale'),  # constants first, as another exporter may
             helper.make_node('Erf', ['d'], ['e'], name='erf'),
             helper.make_node('Add', ['one', 'e'], ['a'], name='plus_one'),
             helper.make_node('Mul', ['a', 'x'], ['m'], name='times_x'),
             helper.make_node('Mul', ['m', 'half'], ['y'], name='half')]
    inits = [const('c', float(np.float32(1 / np.sqrt(2)))), const('one', 1.0), const('half', 0.5)]
    graph = helper.make_graph(nodes, 'gelu', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 5])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 5])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    x = np.linspace(-4, 4, 50, dtype=np.float32).reshape(10, 5)
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x})[0]
    ir = onnx_to_graph(proto)
    assert [(n.op, n.attrs.get('function')) for n in ir.nodes] == [('Input', None), ('Activation', 'gelu')]
    np.testing.assert_allclose(float_forward(ir, x.astype(np.float64))[0], want, atol=1e-6)
    inits[2].float_data[0] = 0.25  # control: another constant is not the GELU
    with pytest.raises(GraphError, match=r"ONNX node 'erf' \(Erf\): Erf is supported only in the erf GELU"):
        onnx_to_graph(helper.make_model(helper.make_graph(nodes, 'gelu', graph.input, graph.output, inits),
                                        opset_imports=[helper.make_opsetid('', 17)]))
