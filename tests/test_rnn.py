"""Recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed): Keras front end and semantics.

* The float interpreter of every recipe equals Keras' own float output (tight tolerance), for every
  layer and option the front end accepts.
* The emulator equals a plain integer loop over time steps and units written from the hls4ml
  formulas (docs/rnn.md), with narrow saturating and wrapping types, both table semantics; a
  negative control (one weight mantissa changed) must break the equality.
* The Verilog lowering's netlist computes the emulator's bits (with a negative control).
* At ap_fixed<32,16> the emulator is close to Keras float (hls4ml's own tests allow 5e-2).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

L = keras.layers
T, N_IN, UNITS = 5, 3, 4


def _seq(layer, steps: int = T, n_in: int = N_IN):
    x = keras.Input((steps, n_in), name='x')
    return keras.Model(x, layer(x))


def _with_states(kind: str):
    x, h0, c0 = keras.Input((T, N_IN), name='x'), keras.Input((UNITS,), name='h0'), keras.Input((UNITS,), name='c0')
    layer = getattr(L, kind)(UNITS, return_sequences=True, return_state=True, name='rnn')
    states = [h0, c0] if kind == 'LSTM' else [h0]
    return keras.Model([x] + states, layer(x, initial_state=states))


def _time_distributed_conv():
    x = keras.Input((T, 6, 2), name='x')
    y = L.TimeDistributed(L.Conv1D(3, 3, activation='relu'), name='td')(x)
    y = L.TimeDistributed(L.Flatten(), name='flat')(y)
    return keras.Model(x, L.GRU(UNITS, name='gru')(y))


def _lstm_then_dense():
    x = keras.Input((T, N_IN), name='x')
    y = L.LSTM(UNITS, return_sequences=True, name='lstm')(x)
    return keras.Model(x, L.TimeDistributed(L.Dense(2, activation='tanh'), name='td')(y))


MODELS = {
    'lstm_seq': lambda: _seq(L.LSTM(UNITS, return_sequences=True)),
    'lstm_last_state': lambda: _seq(L.LSTM(UNITS, return_state=True)),
    'lstm_backwards': lambda: _seq(L.LSTM(UNITS, return_sequences=True, go_backwards=True)),
    'gru_reset_after': lambda: _seq(L.GRU(UNITS, return_sequences=True)),
    'gru_reset_before_backwards': lambda: _seq(L.GRU(UNITS, reset_after=False, return_sequences=True,
                                                     go_backwards=True, return_state=True)),
    'gru_no_bias_relu': lambda: _seq(L.GRU(UNITS, use_bias=False, activation='relu')),
    'simple_rnn': lambda: _seq(L.SimpleRNN(UNITS, return_sequences=True)),
    'simple_rnn_relu_last': lambda: _seq(L.SimpleRNN(UNITS, activation='relu', return_state=True)),
    'lstm_one_step': lambda: _seq(L.LSTM(UNITS), steps=1),
    'lstm_initial_states': lambda: _with_states('LSTM'),
    'gru_initial_state': lambda: _with_states('GRU'),
    **{f'bidir_{mode}': (lambda mode=mode: _seq(L.Bidirectional(L.LSTM(UNITS, return_sequences=True),
                                                                  merge_mode=mode)))
       for mode in ('concat', 'sum', 'mul', 'ave', None)},
    'bidir_gru_states': lambda: _seq(L.Bidirectional(L.GRU(UNITS, return_state=True), merge_mode='sum')),
    'bidir_mixed_backward_gru': lambda: _seq(L.Bidirectional(
        L.LSTM(UNITS, return_sequences=True), backward_layer=L.GRU(3, return_sequences=True, go_backwards=True))),
    'time_distributed_dense': _lstm_then_dense,
    'time_distributed_conv': _time_distributed_conv,
}


def _inputs(model, n: int = 64, seed: int = 0, scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-scale, scale, (n,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]


def _as_list(y) -> list[np.ndarray]:
    return [np.asarray(a) for a in (y if isinstance(y, (list, tuple)) else [y])]


@pytest.mark.parametrize('name', list(MODELS))
def test_float_reference_equals_keras(name):
    keras.utils.set_random_seed(1)
    km = MODELS[name]()
    xs = _inputs(km)
    want = _as_list(km.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    got = _as_list(float_forward(keras_to_graph(km), xs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize('name', ['lstm_seq', 'gru_reset_after', 'gru_reset_before_backwards', 'lstm_backwards',
                                  'bidir_concat', 'bidir_sum', 'bidir_gru_states', 'simple_rnn'])
def test_fixed_32_16_close_to_keras(name):
    """At ap_fixed<32,16> with 2^14-entry tables the emulator is within 1e-2 of Keras (hls4ml tests allow 5e-2).

    Among them the layers hls4ml 1.3.0 gets silently wrong or crashes on: GRU(reset_after=False),
    go_backwards, Bidirectional merge_mode='sum', Bidirectional(GRU) with return_state.
    """
    keras.utils.set_random_seed(2)
    km = MODELS[name]()
    xs = _inputs(km, 200)
    model = fpga4ml.convert_from_keras_model(km, hls_config={'Model': {'Precision': 'fixed<32,16>'},
                                                             'LayerType': _rnn_types(km, {'TableSize': 1 << 14})})
    err = max(np.max(np.abs(g - w)) for g, w in zip(_as_list(model.predict(xs[0])),
                                                     _as_list(km.predict(xs[0], verbose=0))))
    assert err < 1e-2, err


def _rnn_types(km, settings: dict) -> dict:
    """A LayerType config entry for every recurrent layer class in the Keras model."""
    return {n.source: dict(settings) for n in keras_to_graph(km) if n.op in ('LSTM', 'GRU', 'SimpleRNN')}


# --------------------------------------------------------------------------- integer loop reference
def _dense(x, x_frac, w, w_frac, b, b_frac, acc):
    """hls4ml's dense: bias, then every product cast into acc and added in input order (cast after each)."""
    out = []
    for j in range(w.shape[1]):
        a = acc.cast(np.full(len(x), int(b[j]), dtype=np.int64), b_frac)
        for i in range(w.shape[0]):
            a = acc.cast(a + acc.cast(x[:, i] * int(w[i, j]), x_frac + w_frac), acc.frac)
        out.append(a)
    return np.stack(out, axis=1)


def _table(node, key, v, v_frac, into):
    """The node's table `key` at v (index cast after hls4ml's x*N/R shift), cast into `into`."""
    table = node.attrs['tables'][key]
    address = table.index.cast(v, v_frac - table.shift) - table.index.min_mantissa
    return into.cast(table.values[address], table.type.frac)


def _up(m, frac, to):
    return m << (to - frac)


def reference(model, x: np.ndarray, layer: str) -> np.ndarray:
    """The output sequence of an LSTM or GRU layer fed by the input node 'x', by integer loops."""
    node = model.graph[layer]
    t, q = node.types, node.qweights
    acc, res = t['accum'], t['result']
    xm = model.graph['x'].result_type.quantize(x)
    x_frac = model.graph['x'].result_type.frac
    n = node.attrs['units']
    h = np.zeros((len(x), n), dtype=np.int64)
    c = np.zeros((len(x), n), dtype=np.int64)
    ys = []
    for step in range(x.shape[1]):
        a = _dense(xm[:, step], x_frac, q['kernel'], t['weight'].frac, q['bias'], t['bias'].frac, acc)
        r = _dense(h, res.frac, q['recurrent_kernel'], t['recurrent_weight'].frac, q['recurrent_bias'],
                   t['recurrent_bias'].frac, acc)
        if node.op == 'LSTM':
            s = acc.cast(a + r, acc.frac)
            i, f, o = (_table(node, 'ract', s[:, k * n:(k + 1) * n], acc.frac, acc) for k in (0, 1, 3))
            g = _table(node, 'act', s[:, 2 * n:3 * n], acc.frac, acc)
            st = t['state']
            frac = max(2 * acc.frac, st.frac + acc.frac)
            c = st.cast(_up(g * i, 2 * acc.frac, frac) + _up(c * f, st.frac + acc.frac, frac), frac)
            tc = _table(node, 'act_c', c, st.frac, acc)
            h = res.cast(o * tc, 2 * acc.frac)
        else:  # GRU, reset_after
            s = acc.cast(a[:, :2 * n] + r[:, :2 * n], acc.frac)
            zr = _table(node, 'ract', s, acc.frac, acc)
            z, rr = zr[:, :n], zr[:, n:]
            qq = acc.cast(rr * r[:, 2 * n:], 2 * acc.frac)
            u = acc.cast(a[:, 2 * n:] + qq, acc.frac)
            hc = _table(node, 'act', u, acc.frac, acc)
            one_minus_z = (1 << acc.frac) - z
            frac = max(2 * acc.frac, res.frac + acc.frac)
            h = res.cast(_up(hc * one_minus_z, 2 * acc.frac, frac) + _up(h * z, res.frac + acc.frac, frac), frac)
        ys.append(h)
    return np.stack(ys, axis=1)


NARROW = {
    'weight': 'fixed<8,2,RND>', 'recurrent_weight': 'fixed<8,1,RND>', 'bias': 'fixed<8,3>',
    'recurrent_bias': 'fixed<8,2>', 'accum': 'fixed<14,5,RND,SAT>', 'result': 'fixed<10,2,RND,SAT>',
    'table': 'fixed<10,2,RND>',
}


def _narrow_model(kind: str, semantics: str, seed: int):
    keras.utils.set_random_seed(seed)
    layer = getattr(L, kind)(UNITS, return_sequences=True, name='rnn')
    km = _seq(layer, steps=7)
    rng = np.random.default_rng(seed)
    for w in layer.weights:  # larger weights: the accumulator and the state really saturate and round
        w.assign(np.clip(rng.normal(0, 0.7, tuple(w.shape)), -0.99, 0.99).astype(np.float32))
    precision = dict(NARROW, **({'state': 'fixed<12,3,TRN,WRAP>'} if kind == 'LSTM' else {}))
    cfg = {'Model': {'Precision': 'fixed<12,3,RND,SAT>', 'TableSemantics': semantics},
           'LayerName': {'rnn': {'Precision': precision, 'TableSize': 256}}}
    return km, fpga4ml.convert_from_keras_model(km, hls_config=cfg)


@pytest.mark.parametrize('kind,semantics', [('LSTM', 'exact'), ('LSTM', 'hls4ml'), ('GRU', 'exact'),
                                            ('GRU', 'hls4ml')])
def test_emulator_equals_integer_loops(kind, semantics):
    km, model = _narrow_model(kind, semantics, seed=3)
    x = np.random.default_rng(4).uniform(-5, 5, (300, 7, N_IN))
    got = model.predict_mantissas(x)[model.graph.outputs[0]]
    want = reference(model, x, 'rnn')
    np.testing.assert_array_equal(got, want)
    _, traced = model.trace(x)
    assert traced.stats['rnn_seq'].overflow == 0  # the result saturates inside the recipe, not at the Select
    bad = copy.deepcopy(model)  # negative control: one recurrent weight a few LSBs off
    bad.graph['rnn'].qweights['recurrent_kernel'][0, 0] += 4
    assert not np.array_equal(reference(bad, x, 'rnn'), got)


@pytest.mark.parametrize('name', ['lstm_seq', 'gru_reset_before_backwards', 'simple_rnn', 'bidir_sum'])
def test_netlist_equals_emulator(name):
    keras.utils.set_random_seed(5)
    km = MODELS[name]()
    cfg = {'Model': {'Precision': 'fixed<10,3,RND,SAT>'}, 'LayerType': _rnn_types(km, {'TableSize': 64})}
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg)
    graph = model.graph
    xin = _inputs(km, 400, 6, 6.0)[0]
    mantissas = [graph[graph.inputs[0]].result_type.quantize(xin)]
    want = model.predict_mantissas(xin)
    got = lower_graph(graph, model.intervals).evaluate(mantissas)
    for out, g in zip(graph.outputs, got):
        np.testing.assert_array_equal(g, want[out])
    bad = copy.deepcopy(model)  # negative control
    rnn = next(n for n in bad.graph if n.op in ('LSTM', 'GRU', 'SimpleRNN'))
    rnn.qweights['recurrent_kernel'][0, 0] += 3
    got_bad = lower_graph(bad.graph, bad.intervals).evaluate(mantissas)
    assert any(not np.array_equal(g, want[out]) for out, g in zip(graph.outputs, got_bad))


# --------------------------------------------------------------------------- refusals
def test_refusals_name_the_layer_and_attribute():
    with pytest.raises(GraphError, match=r"layer 'st' \(LSTM\).*stateful=True"):
        keras_to_graph(keras.Sequential([keras.Input((T, N_IN), batch_size=2), L.LSTM(UNITS, stateful=True,
                                                                                       name='st')]))
    with pytest.raises(GraphError, match=r"layer 'hs' \(GRU\).*recurrent_activation='hard_sigmoid'"):
        keras_to_graph(_seq(L.GRU(UNITS, recurrent_activation='hard_sigmoid', name='hs')))
    with pytest.raises(GraphError, match=r"layer 'sw' \(SimpleRNN\).*activation='silu'"):
        keras_to_graph(_seq(L.SimpleRNN(UNITS, activation='swish', name='sw')))


def test_rnn_node_checks_its_weights_and_options():
    g = keras_to_graph(_seq(L.GRU(UNITS, name='gru')))
    node = g['gru']
    node.weights['recurrent_kernel'] = node.weights['recurrent_kernel'][:, :5]
    with pytest.raises(GraphError, match=r"layer 'gru': GRU weight 'recurrent_kernel' has shape \(4, 5\)"):
        g.lint()
    g = keras_to_graph(_seq(L.GRU(UNITS, name='gru')))
    g['gru'].attrs['gate_order'] = 'zr'
    with pytest.raises(GraphError, match=r"layer 'gru': GRU gate_order 'zr'"):
        g.lint()
