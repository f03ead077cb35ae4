"""PyTorch nn.RNN/LSTM/GRU mapped onto the recurrent IR ops (fpga4ml/frontends/torch_rnn.py).

First the mapping alone (graphs built with `add_torch_rnn`), then whole models through
`torch_to_graph` / `convert_from_pytorch_model` (tuples, getitem, out[:, -1], h_n[-1], batch_first
either way, initial states as model inputs). The float interpreter equals torch's own outputs (output, h_n, c_n, with
h_n/c_n per sample: torch's transposed) for tanh/relu RNNs, LSTMs and GRUs (torch's gate order r, z,
n and its two biases), stacked (num_layers 2), bidirectional, with and without initial states and
biases; the emulator at ap_fixed<32,16> stays close to torch. Unsupported attributes are refused.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from fpga4ml.convert import convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.torch_rnn import add_torch_rnn  # noqa: E402
from fpga4ml.ir import Graph, GraphError  # noqa: E402
from fpga4ml.semantics.spec import make_node  # noqa: E402

T, F, H = 6, 3, 4
CASES = {
    'rnn_tanh': (lambda: torch.nn.RNN(F, H, batch_first=True), False),
    'rnn_relu_2layers_bidir': (lambda: torch.nn.RNN(F, H, 2, nonlinearity='relu', batch_first=True,
                                                   bidirectional=True), True),
    'lstm': (lambda: torch.nn.LSTM(F, H, batch_first=True), False),
    'lstm_2layers_bidir_states': (lambda: torch.nn.LSTM(F, H, 2, batch_first=True, bidirectional=True), True),
    'lstm_no_bias': (lambda: torch.nn.LSTM(F, H, batch_first=True, bias=False), False),
    'gru': (lambda: torch.nn.GRU(F, H, batch_first=True), False),
    'gru_2layers_bidir_states': (lambda: torch.nn.GRU(F, H, 2, batch_first=True, bidirectional=True), True),
}


def build(module, with_states: bool) -> Graph:
    g = Graph()
    g.add(make_node('x', 'Input', [], (T, F)))
    rows = module.num_layers * (2 if module.bidirectional else 1)
    lstm = isinstance(module, torch.nn.LSTM)
    states = ['h0', 'c0'] if lstm else ['h0']
    for s in states if with_states else []:
        g.add(make_node(s, 'Input', [], (rows, H)))

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in g:
            k += 1
            name = f'{base}_{k}'
        return name
    outs = add_torch_rnn(g, module, 'rnn', 'x', (T, F), fresh, *(states if with_states else []))
    g.inputs = ['x'] + (states if with_states else [])
    g.outputs = outs
    g.validate()
    return g


def torch_outputs(module, xs: list[np.ndarray]) -> list[np.ndarray]:
    """torch's (output, h_n[, c_n]) with h_n, c_n per sample (batch first)."""
    t = [torch.tensor(a, dtype=torch.float64) for a in xs]
    module = module.double()
    with torch.no_grad():
        if len(t) == 1:
            out, state = module(t[0])
        else:
            init = tuple(s.transpose(0, 1).contiguous() for s in t[1:])
            out, state = module(t[0], init if len(init) > 1 else init[0])
    states = state if isinstance(state, tuple) else (state,)
    return [out.numpy()] + [s.transpose(0, 1).numpy() for s in states]


def inputs(module, with_states: bool, n: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    rows = module.num_layers * (2 if module.bidirectional else 1)
    xs = [rng.uniform(-1, 1, (n, T, F))]
    if with_states:
        xs += [rng.uniform(-0.5, 0.5, (n, rows, H)) for _ in range(2 if isinstance(module, torch.nn.LSTM) else 1)]
    return xs


@pytest.mark.parametrize('case', list(CASES))
def test_float_reference_equals_torch(case):
    make, with_states = CASES[case]
    torch.manual_seed(1)
    module = make()
    g = build(module, with_states)
    xs = inputs(module, with_states)
    want = torch_outputs(module, xs)
    got = float_forward(g, xs)
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, atol=1e-9)


@pytest.mark.parametrize('case', ['lstm_2layers_bidir_states', 'gru_2layers_bidir_states'])
def test_emulator_close_to_torch_at_32_16(case, tmp_path):
    make, with_states = CASES[case]
    torch.manual_seed(2)
    module = make()
    g = build(module, with_states)
    xs = inputs(module, with_states, 200)
    rnn_layers = {n.name: {'TableSize': 1 << 14} for n in g if n.op in ('LSTM', 'GRU')}
    model = convert_graph(g, {'Model': {'Precision': 'fixed<32,16>'}, 'LayerName': rnn_layers},
                          output_dir=str(tmp_path))
    got = model.predict(xs)
    err = max(np.max(np.abs(a - w)) for a, w in zip(got, torch_outputs(module, xs)))
    assert err < 1e-2, err


def test_refusals_name_module_and_attribute():
    for module, pattern in ((torch.nn.LSTM(F, H, batch_first=True, proj_size=2), r"module 'rnn' \(LSTM\): proj_size=2"),
                            (torch.nn.Linear(F, H), r'Linear is not a recurrent module')):
        with pytest.raises(GraphError, match=pattern):
            add_torch_rnn(Graph(), module, 'rnn', 'x', (T, F), lambda b: b)


# --------------------------------------------------------------------------- through torch_to_graph
class Classifier(torch.nn.Module):
    """LSTM -> last step -> Linear: the usual sequence classifier."""

    def __init__(self, layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.lstm = torch.nn.LSTM(F, H, layers, batch_first=True, bidirectional=bidirectional)
        self.fc = torch.nn.Linear(H * (2 if bidirectional else 1), 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.fc(out[:, -1])


class TimeMajor(torch.nn.Module):
    """batch_first=False: the batch moved to axis 1 and back; h_n[-1] and a slice of the sequence."""

    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(F, H, 2, bidirectional=True)

    def forward(self, x):
        out, h = self.gru(x.transpose(0, 1))
        return out.transpose(0, 1), h[-1], out[1:4].permute(1, 0, 2)


class WholeTuple(torch.nn.Module):
    """The module's tuple returned as it is (output, h_n), nn.RNN relu with an initial state input."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(F, H, 2, nonlinearity='relu', batch_first=True)

    def forward(self, x, h0):
        return self.rnn(x, h0.transpose(0, 1))


class StatesIn(torch.nn.Module):
    """LSTM with (h0, c0) inputs returning every output, then a second LSTM reading the sequence."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(F, H, bidirectional=True, batch_first=True)
        self.lstm2 = torch.nn.LSTM(2 * H, H, batch_first=True)

    def forward(self, x, h0, c0):
        out, (h, c) = self.lstm(x, (h0.transpose(0, 1), c0.transpose(0, 1)))
        out2, _ = self.lstm2(out)
        return out2[:, -2:], h, c


class ZeroStates(torch.nn.Module):
    """The tutorial form: (h0, c0) as torch.zeros of a batch-dependent shape built in forward."""

    def __init__(self):
        super().__init__()
        self.lstm, self.fc = torch.nn.LSTM(F, H, 2, batch_first=True), torch.nn.Linear(H, 2)

    def forward(self, x):
        h0 = torch.zeros(2, x.size(0), H, dtype=x.dtype, device=x.device)
        c0 = torch.zeros(2, x.size(0), H, dtype=x.dtype, device=x.device)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


MODELS = {
    'zero_states_in_forward': (ZeroStates, [(T, F)]),
    'classifier': (lambda: Classifier(), [(T, F)]),
    'classifier_2layers_bidir': (lambda: Classifier(2, True), [(T, F)]),
    'time_major_gru': (TimeMajor, [(T, F)]),
    'whole_tuple_rnn': (WholeTuple, [(T, F), (2, H)]),
    'lstm_states_in': (StatesIn, [(T, F), (2, H), (2, H)]),
}


def model_outputs(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """torch's outputs flattened, each batch first (tensors torch holds with the batch on axis 1 transposed)."""
    with torch.no_grad():
        out = model(*[torch.tensor(a) for a in xs])
    flat: list = []

    def walk(item):
        if isinstance(item, (tuple, list)):
            for part in item:
                walk(part)
        else:
            flat.append(item.numpy())
    walk(out)
    return flat


@pytest.mark.parametrize('case', list(MODELS))
def test_torch_to_graph_float_equals_torch(case):
    from fpga4ml.frontends.torch import torch_to_graph
    make, shapes = MODELS[case]
    torch.manual_seed(3)
    model = make().double().eval()
    g = torch_to_graph(model, shapes)
    g.lint()
    rng = np.random.default_rng(4)
    xs = [rng.uniform(-1, 1, (32,) + s) for s in shapes]
    want = model_outputs(model, xs)
    if case == 'whole_tuple_rnn':  # h_n: torch holds it (layers, batch, H); the IR per sample
        want[1] = want[1].transpose(1, 0, 2)
    if case == 'lstm_states_in':
        want[1], want[2] = want[1].transpose(1, 0, 2), want[2].transpose(1, 0, 2)
    got = float_forward(g, xs)
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, atol=1e-9)


def test_unused_outputs_are_dropped():
    from fpga4ml.frontends.torch import torch_to_graph
    g = torch_to_graph(Classifier(), (T, F))
    assert [n.op for n in g].count('Select') == 1  # only the sequence: h_n, c_n and their Selects are gone
    assert not any(n.name.endswith(('_h_n', '_c_n')) for n in g)


def test_convert_lstm_classifier_end_to_end(tmp_path):
    from fpga4ml import convert_from_pytorch_model
    torch.manual_seed(5)
    model = Classifier()
    config = {'Model': {'Precision': 'fixed<32,16>'}, 'LayerName': {'lstm_l0': {'TableSize': 1 << 14}}}
    hls_model = convert_from_pytorch_model(model, config, output_dir=str(tmp_path), input_shape=(T, F))
    x = np.random.default_rng(6).uniform(-1, 1, (300, T, F)).astype(np.float32)
    got = hls_model.predict(x)
    with torch.no_grad():
        want = model(torch.tensor(x)).numpy()
    err = np.max(np.abs(got - want))
    assert err < 1e-2, err
    assert np.mean(np.argmax(got, 1) == np.argmax(want, 1)) > 0.99


class BadIndex(torch.nn.Module):
    def __init__(self, index):
        super().__init__()
        self.gru, self.index = torch.nn.GRU(F, H, batch_first=True), index

    def forward(self, x):
        return self.gru(x)[0][self.index]


class ReadsHn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.fc = torch.nn.GRU(F, H, batch_first=True), torch.nn.Linear(H, 2)

    def forward(self, x):
        return self.fc(self.gru(x)[1])


class WrongBatchAxis(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(F, H)  # batch_first=False, fed a batch-first tensor

    def forward(self, x):
        return self.gru(x)[0]


@pytest.mark.parametrize('model, pattern', [
    (BadIndex(-1), r'indexes the batch axis'),
    (BadIndex((slice(None), slice(None), 0)), r'only the first axis after the batch may be indexed'),
    (BadIndex((slice(None), slice(0, 4, 2))), r'a non-empty slice of step 1'),
    (ReadsHn(), r"reads \['getitem'\].*batch on axis 1"),
    (WrongBatchAxis(), r"the input 'x' has the batch on axis 0, the module expects it on axis 1"),
])
def test_walk_refusals_name_node_and_what(model, pattern):
    from fpga4ml.frontends.torch import torch_to_graph
    with pytest.raises(GraphError, match=pattern):
        torch_to_graph(model, (T, F))


@pytest.mark.parametrize('case', ['gru_2layers_bidir_states', 'rnn_tanh'])
def test_bare_module_converts(case):
    """A bare nn.GRU / nn.RNN (not inside a model) converts: its outputs (output, h_n) as torch returns them."""
    from fpga4ml.frontends.torch import torch_to_graph
    torch.manual_seed(8)
    module = CASES[case][0]()
    g = torch_to_graph(module, (T, F))
    xs = inputs(module, False)
    got, want = float_forward(g, xs), torch_outputs(module, xs)
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, atol=1e-9)


@pytest.mark.slow
def test_hls_csim_equals_emulator(tmp_path):
    """The torch-converted bidirectional LSTM with (h0, c0) inputs feeding a second LSTM: C simulation ==
    emulator on 2,000 samples at fixed<16,6>; negative control: the emulator with one recurrent weight one
    LSB off disagrees with that C simulation."""
    from fpga4ml.frontends.torch import torch_to_graph
    torch.manual_seed(9)
    model = StatesIn()
    shapes = [(T, F), (2, H), (2, H)]
    config = {'Model': {'Precision': 'fixed<16,6>'}}
    converted = convert_graph(torch_to_graph(model, shapes), config, output_dir=str(tmp_path / 'a'))
    rng = np.random.default_rng(10)
    xs = [rng.uniform(-2, 2, (2000,) + s) for s in shapes]
    csim = converted.predict(xs, sim='csim')
    assert all(np.array_equal(a, b) for a, b in zip(converted.predict(xs), csim))
    g = torch_to_graph(model, shapes)
    node = g['lstm2_l0']
    node.weights['recurrent_kernel'][0, 0] += 2.0 ** -10
    moved = convert_graph(g, config, output_dir=str(tmp_path / 'b')).predict(xs)
    assert not all(np.array_equal(a, b) for a, b in zip(moved, csim))
