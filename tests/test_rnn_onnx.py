"""ONNX RNN/LSTM/GRU ops (fpga4ml/frontends/onnx_ops.py): the float reference against onnxruntime, the emulator.

Models come from torch.onnx.export of nn.RNN/LSTM/GRU (layout 0: the Transposes, Squeezes and
Reshapes around the op carry the batch off axis 0; Gather and Slice take steps and features) and from onnx.helper for what torch does not
write: direction reverse, layout 1, GRU linear_before_reset=0, initial_h/initial_c as graph inputs.
The float interpreter equals onnxruntime within float32 rounding (onnxruntime refuses layout 1: the
same model in layout 0 is its reference); the emulator at ap_fixed<32,16>
stays within 1e-2; unsupported attributes are refused by name.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip('torch')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('qonnx')

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpga4ml.convert import convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.onnx import onnx_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

T, F, H = 6, 3, 4


class LastStep(torch.nn.Module):
    """LSTM -> out[:, -1] -> Linear."""

    def __init__(self):
        super().__init__()
        self.lstm, self.fc = torch.nn.LSTM(F, H, batch_first=True), torch.nn.Linear(H, 2)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


class Whole(torch.nn.Module):
    """A module's whole tuple (output, h_n[, c_n]) flattened."""

    def __init__(self, module):
        super().__init__()
        self.rnn = module

    def forward(self, x):
        out, state = self.rnn(x)
        return (out,) + (state if isinstance(state, tuple) else (state,))


class LastState(torch.nn.Module):
    """GRU (2 layers, bidirectional) -> h_n[-1] -> Linear."""

    def __init__(self):
        super().__init__()
        self.gru, self.fc = torch.nn.GRU(F, H, 2, batch_first=True, bidirectional=True), torch.nn.Linear(H, 2)

    def forward(self, x):
        return self.fc(self.gru(x)[1][-1])


class Slices(torch.nn.Module):
    """GRU -> the last two steps and a middle slice of the features (ONNX Slice), flattened -> Linear."""

    def __init__(self):
        super().__init__()
        self.gru, self.fc = torch.nn.GRU(F, H, batch_first=True), torch.nn.Linear(2 * 2, 2)

    def forward(self, x):
        out = self.gru(x)[0]
        return self.fc(out[:, -2:, 1:3].reshape(-1, 4)), out[:, 1:4]


TORCH_MODELS = {
    'gru_slices': Slices,
    'lstm_last_step': LastStep,
    'gru_2layers_bidir_h_last': LastState,
    'rnn_relu_2layers': lambda: Whole(torch.nn.RNN(F, H, 2, nonlinearity='relu', batch_first=True)),
    'lstm_bidir_all_outputs': lambda: Whole(torch.nn.LSTM(F, H, batch_first=True, bidirectional=True)),
    'gru_all_outputs': lambda: Whole(torch.nn.GRU(F, H, batch_first=True)),
}


def export(model) -> onnx.ModelProto:
    """torch.onnx.export with a dynamic batch (TorchScript exporter, opset 17)."""
    f = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.zeros(2, T, F),), f, input_names=['x'], dynamic_axes={'x': {0: 'N'}},
                      dynamo=False, opset_version=17)
    return onnx.load_from_string(f.getvalue())


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return session.run(None, {k: v.astype(np.float32) for k, v in feeds.items()})


def batch_first(model: onnx.ModelProto, outs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Outputs with the batch moved first (Y_h/Y_c of layout 0 hold it on axis 1, Y on axis 2)."""
    fixed = []
    for o in outs:
        axis = next(a for a, d in enumerate(o.shape) if d == batch)
        fixed.append(np.moveaxis(o, axis, 0))
    return fixed


@pytest.mark.parametrize('case', list(TORCH_MODELS))
def test_torch_exported_float_equals_onnxruntime(case):
    torch.manual_seed(7)
    model = export(TORCH_MODELS[case]())
    g = onnx_to_graph(model)
    g.lint()
    x = np.random.default_rng(8).uniform(-1, 1, (17, T, F)).astype(np.float32)
    want = batch_first(model, run_ort(model, {'x': x}), 17)
    got = float_forward(g, [x.astype(np.float64)])
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, atol=2e-6)


# --------------------------------------------------------------------------- models built with onnx.helper
GATES = {'RNN': 1, 'LSTM': 4, 'GRU': 3}


def rnn_model(op: str, direction: str = 'forward', layout: int = 0, states: bool = False, seed: int = 0,
              **attrs) -> onnx.ModelProto:
    """x (batch first) -> [Transpose] -> op -> Y, Y_h (, Y_c): initial states as graph inputs when `states`."""
    rng = np.random.default_rng(seed)
    d, g = 2 if direction == 'bidirectional' else 1, GATES[op] * H
    inits = [numpy_helper.from_array(rng.uniform(-0.6, 0.6, s).astype(np.float32), name)
             for name, s in (('W', (d, g, F)), ('R', (d, g, H)), ('B', (d, 2 * g)))]
    nodes, x_in = [], 'x'
    if layout == 0:
        nodes.append(helper.make_node('Transpose', ['x'], ['xt'], perm=[1, 0, 2]))
        x_in = 'xt'
    state_names = (['h0', 'c0'] if op == 'LSTM' else ['h0']) if states else []
    inputs = [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', T, F])]
    op_inputs = [x_in, 'W', 'R', 'B', ''] + [s + ('t' if layout == 0 else '') for s in state_names]
    for s in state_names:
        inputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, ['N', d, H]))
        if layout == 0:
            nodes.append(helper.make_node('Transpose', [s], [s + 't'], perm=[1, 0, 2]))
    outs = ['Y', 'Y_h'] + (['Y_c'] if op == 'LSTM' else [])
    nodes.append(helper.make_node(op, op_inputs, outs, name='rnn', hidden_size=H, direction=direction,
                                  **({'layout': layout} if layout else {}), **attrs))
    y_shape = ([T, d, 'N', H] if layout == 0 else ['N', T, d, H])
    s_shape = ([d, 'N', H] if layout == 0 else ['N', d, H])
    outputs = [helper.make_tensor_value_info('Y', TensorProto.FLOAT, y_shape)] + \
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, s_shape) for o in outs[1:]]
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    model.ir_version = 8
    return model


HELPER_MODELS = {
    'lstm_reverse_layout1_states': dict(op='LSTM', direction='reverse', layout=1, states=True),
    'lstm_bidir_states': dict(op='LSTM', direction='bidirectional', states=True),
    'gru_reset_before_bidir': dict(op='GRU', direction='bidirectional', linear_before_reset=0),
    'gru_linear_before_reset_layout1_states': dict(op='GRU', layout=1, states=True, linear_before_reset=1),
    'rnn_reverse_states': dict(op='RNN', direction='reverse', states=True),
}


def helper_feeds(spec: dict, n: int, seed: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = 2 if spec.get('direction') == 'bidirectional' else 1
    feeds = {'x': rng.uniform(-1, 1, (n, T, F))}
    if spec.get('states'):
        for s in ['h0', 'c0'] if spec['op'] == 'LSTM' else ['h0']:
            feeds[s] = rng.uniform(-0.5, 0.5, (n, d, H))
    return {k: v.astype(np.float32) for k, v in feeds.items()}


def reference_outputs(spec: dict, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs, batch first. It refuses layout 1: the layout-0 model with the same weights stands
    in for it (its Transposes put the batch-first inputs in time-major order)."""
    outs = run_ort(rnn_model(**{**spec, 'layout': 0}), feeds)
    return [np.moveaxis(o, 2 if o.ndim == 4 else 1, 0) for o in outs]


@pytest.mark.parametrize('case', list(HELPER_MODELS))
def test_onnx_attributes_float_equals_onnxruntime(case):
    spec = HELPER_MODELS[case]
    model = rnn_model(**spec)
    g = onnx_to_graph(model)
    g.lint()
    feeds = helper_feeds(spec, 19)
    want = reference_outputs(spec, feeds)
    got = float_forward(g, [feeds[k].astype(np.float64) for k in feeds])
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, atol=2e-6)


@pytest.mark.parametrize('case', ['lstm_bidir_states', 'gru_reset_before_bidir'])
def test_emulator_close_to_onnxruntime_at_32_16(case, tmp_path):
    spec = HELPER_MODELS[case]
    model = rnn_model(**spec)
    g = onnx_to_graph(model)
    layers = {n.name: {'TableSize': 1 << 14} for n in g if n.op in ('LSTM', 'GRU')}
    hls = convert_graph(g, {'Model': {'Precision': 'fixed<32,16>'}, 'LayerName': layers}, output_dir=str(tmp_path))
    feeds = helper_feeds(spec, 200)
    want = reference_outputs(spec, feeds)
    got = hls.predict([feeds[k] for k in feeds])
    err = max(np.max(np.abs(a - w)) for a, w in zip(got, want))
    assert err < 1e-2, err


@pytest.mark.parametrize('spec, pattern', [
    (dict(op='LSTM', activations=['HardSigmoid', 'Tanh', 'Tanh']), r"ONNX node 'rnn' \(LSTM\): activations="),
    (dict(op='GRU', clip=1.0), r"attribute 'clip' is not supported"),
    (dict(op='LSTM', input_forget=1), r'input_forget=1 is not supported'),
    (dict(op='RNN', direction='sideways'), r"direction='sideways' is not supported"),
    (dict(op='RNN', activation_alpha=[1.0]), r"attribute 'activation_alpha' is not supported"),
])
def test_refusals_name_node_and_attribute(spec, pattern):
    with pytest.raises(GraphError, match=pattern):
        onnx_to_graph(rnn_model(**spec))


def test_sequence_lens_and_constant_state_refused():
    model = rnn_model('GRU')
    node = model.graph.node[-1]
    node.input[4] = 'lens'
    model.graph.initializer.append(numpy_helper.from_array(np.array([T - 1], np.int32), 'lens'))
    with pytest.raises(GraphError, match='sequence_lens is not supported'):
        onnx_to_graph(model)
    model = rnn_model('GRU')
    node = model.graph.node[-1]
    node.input.append('h0c')
    model.graph.initializer.append(numpy_helper.from_array(np.full((1, 1, H), 0.5, np.float32), 'h0c'))
    with pytest.raises(GraphError, match='constant non-zero initial_h'):
        onnx_to_graph(model)


class Strided(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(F, H, batch_first=True)

    def forward(self, x):
        return self.gru(x)[0][:, ::2]


def test_strided_slice_refused():
    with pytest.raises(GraphError, match=r'\(Slice\): slicing axis 1 with step 2 is not supported'):
        onnx_to_graph(export(Strided()))


@pytest.mark.slow
def test_hls_csim_equals_emulator(tmp_path):
    """The ONNX bidirectional LSTM with initial states: C simulation == emulator on 2,000 samples at
    fixed<16,6>; negative control: one recurrent weight one LSB off in the emulator disagrees."""
    spec = HELPER_MODELS['lstm_bidir_states']
    config = {'Model': {'Precision': 'fixed<16,6>'}}
    converted = convert_graph(onnx_to_graph(rnn_model(**spec)), config, output_dir=str(tmp_path / 'a'))
    feeds = helper_feeds(spec, 2000)
    xs = [feeds[k] for k in feeds]
    csim = converted.predict(xs, sim='csim')
    assert all(np.array_equal(a, b) for a, b in zip(converted.predict(xs), csim))
    g = onnx_to_graph(rnn_model(**spec))
    g['rnn_reverse'].weights['recurrent_kernel'][0, 0] += 2.0 ** -10
    moved = convert_graph(g, config, output_dir=str(tmp_path / 'b')).predict(xs)
    assert not all(np.array_equal(a, b) for a, b in zip(moved, csim))
