"""PyTorch nn.RNN/LSTM/GRU mapped onto the recurrent IR ops (fpga4ml/frontends/torch_rnn.py).

The graph is built directly with `add_torch_rnn` (the torch front end's graph walk does not route
tuple-valued modules yet). The float interpreter equals torch's own outputs (output, h_n, c_n, with
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
    for module, pattern in ((torch.nn.LSTM(F, H), r"module 'rnn' \(LSTM\): batch_first=False"),
                            (torch.nn.LSTM(F, H, batch_first=True, proj_size=2), r'proj_size=2'),
                            (torch.nn.Linear(F, H), r'Linear is not a recurrent module')):
        with pytest.raises(GraphError, match=pattern):
            add_torch_rnn(Graph(), module, 'rnn', 'x', (T, F), lambda b: b)
