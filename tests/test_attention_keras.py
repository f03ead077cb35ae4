"""Keras 3 transformer layers through fpga4ml (frontends/keras_attention.py).

The float interpreter of the converted graph must equal Keras' own float outputs (float32 rounding
only), the fixed-point emulator must classify like Keras at 16 bits, and the Verilog netlist must
compute the emulator's bits (a changed weight must break that equality).
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip('keras')

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_keras_model  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

T, F, E = 6, 3, 8


def randomize_norms(model) -> None:
    """Non-trivial LayerNorm gamma and beta (Keras initialises them to 1 and 0)."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        for w in layer.weights:
            if w.path.endswith('gamma') or w.path.endswith('beta'):
                w.assign(rng.normal(1.0 if w.path.endswith('gamma') else 0.0, 0.2, w.shape))


def encoder(key_input: bool = False):
    """A small transformer block: embedding, self- or cross-attention, residual, LayerNorm, FFN, classifier."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T, F), name='x')
    h = keras.layers.Dense(E, name='embed')(x)
    if key_input:
        k = keras.Input((T + 2, F), name='k')
        kv = keras.layers.Dense(E, name='kv_embed')(k)
        a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, output_shape=E, name='mha')(h, kv, kv)
        inputs = [x, k]
    else:
        a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name='mha')(h, h)
        inputs = [x]
    h = keras.layers.Add(name='res')([h, a])
    h = keras.layers.LayerNormalization(name='ln')(h)
    h = keras.layers.EinsumDense('abc,cd->abd', output_shape=(T, E), bias_axes='d', activation='relu', name='ffn')(h)
    h = keras.layers.GlobalAveragePooling1D(name='pool')(h)
    out = keras.layers.Dense(3, activation='softmax', name='out')(h)
    model = keras.Model(inputs, out)
    randomize_norms(model)
    return model


def data(model, n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, 1, (n,) + tuple(i.shape[1:])).astype(np.float32) for i in model.inputs]
    return xs if len(xs) > 1 else xs[0]


@pytest.mark.parametrize('key_input', [False, True])
def test_float_interpreter_equals_keras(key_input):
    model = encoder(key_input)
    x = data(model)
    graph = keras_to_graph(model)
    assert [n.op for n in graph.nodes if n.name.startswith('mha')] == [
        'EinsumDense', 'EinsumDense', 'EinsumDense', 'Einsum', 'Softmax', 'Einsum', 'EinsumDense']
    got = float_forward(graph, [np.asarray(v, np.float64) for v in x] if key_input else x.astype(np.float64))[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=2e-6)


def test_fixed_point_classifies_like_keras_and_the_netlist_computes_the_emulator_bits(tmp_path):
    model = encoder()
    x = data(model, 300)
    hls = convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<16,6,RND,SAT>'}},
                                   output_dir=str(tmp_path), backend='Vitis')
    want = model.predict(x, verbose=0)
    got = hls.predict(x)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.99
    assert np.max(np.abs(got - want)) < 0.02
    few = x[:20]
    mantissas = hls.predict_mantissas(few)['out_softmax']
    nl = lower_graph(hls.graph, hls.intervals)
    np.testing.assert_array_equal(nl.evaluate([hls.graph['x'].result_type.quantize(few)])[0], mantissas)
    node = hls.graph['mha_value']  # negative control: one value-projection weight moves
    node.qweights['kernel'] = node.qweights['kernel'].copy()
    node.qweights['kernel'].flat[0] += 1 << 6
    moved = lower_graph(hls.graph, hls.intervals).evaluate([hls.graph['x'].result_type.quantize(few)])[0]
    assert not np.array_equal(moved, mantissas)


def test_einsum_dense_ellipsis_and_inner_bias_and_layernorm_over_two_axes():
    keras.utils.set_random_seed(3)
    x = keras.Input((4, 5))
    h = keras.layers.EinsumDense('...b,bc->...c', output_shape=6, bias_axes='c', name='ell')(x)
    h = keras.layers.EinsumDense('abc,cd->abd', output_shape=(4, 3), bias_axes='b', name='inner')(h)
    h = keras.layers.LayerNormalization(axis=[1, 2], center=False, name='ln2')(h)
    h = keras.layers.LayerNormalization(axis=-1, scale=False, epsilon=0.1, name='ln1')(h)
    model = keras.Model(x, h)
    for w in model.weights:
        w.assign(np.random.default_rng(4).normal(0.5, 0.5, w.shape))
    xs = np.random.default_rng(5).normal(0, 2, (50, 4, 5)).astype(np.float32)
    graph = keras_to_graph(model)
    assert graph['ell'].attrs['equation'] == 'ab,bc->ac'
    assert graph['ln2'].attrs['axes'] == (-2, -1)
    np.testing.assert_allclose(float_forward(graph, xs.astype(np.float64))[0], model.predict(xs, verbose=0), atol=1e-5)


def test_refusals_name_the_layer_and_the_option():
    x = keras.Input((4, 3))
    m = keras.Input((4, 4))
    a = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, name='masked')(x, x, attention_mask=m)
    with pytest.raises(GraphError, match=r"layer 'masked' \(MultiHeadAttention\): attention_mask is a model tensor; "
                                         r"only constant masks"):
        keras_to_graph(keras.Model([x, m], a))
    y = keras.layers.LayerNormalization(rms_scaling=True, name='rms')(x)
    with pytest.raises(GraphError, match=r"layer 'rms' \(LayerNormalization\): rms_scaling=True is not supported"):
        keras_to_graph(keras.Model(x, y))
    y = keras.layers.LayerNormalization(axis=1, name='mid')(x)
    with pytest.raises(GraphError, match=r"layer 'mid' \(LayerNormalization\): axis=\[1\] is not supported"):
        keras_to_graph(keras.Model(x, y))


def test_embedding_reads_rows_and_zeros_outside_the_table(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name='ids')
    model = keras.Model(x, keras.layers.Embedding(20, 4, name='emb')(x))
    ids = np.random.default_rng(2).integers(-3, 24, (300, 6)).astype(np.float32)
    inside = (ids >= 0) & (ids < 20)
    graph = keras_to_graph(model)
    valid = np.clip(ids, 0, 19)
    np.testing.assert_array_equal(float_forward(graph, valid.astype(np.float64))[0], model.predict(valid, verbose=0))
    hls = convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<16,6,RND,SAT>'},
                                                      'LayerName': {'ids': {'Precision': 'fixed<8,8>'}}},
                                   output_dir=str(tmp_path), backend='Vitis')
    node = hls.graph['emb']
    rows = node.types['weight'].to_float(node.qweights['embeddings'])
    want = np.where(inside[..., None], rows[valid.astype(int)], 0.0)
    np.testing.assert_array_equal(hls.predict(ids), want)
    rows[3, 1] += 1.0  # negative control: one moved table entry
    assert not np.array_equal(hls.predict(ids), np.where(inside[..., None], rows[valid.astype(int)], 0.0))
    with pytest.raises(GraphError, match=r"layer 'masked' \(Embedding\): mask_zero=True is not supported"):
        keras_to_graph(keras.Model(x, keras.layers.Embedding(20, 4, mask_zero=True, name='masked')(x)))


def test_causal_attention_masks_later_keys(tmp_path):
    """use_causal_mask=True: a MaskedSoftmax with the lower-triangular mask, equal to Keras in float."""
    keras.utils.set_random_seed(4)
    x = keras.Input((T, F), name='x')
    h = keras.layers.Dense(E, name='embed')(x)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name='mha')(h, h, use_causal_mask=True)
    model = keras.Model(x, a)
    xs = data(model, 200)
    graph = keras_to_graph(model)
    assert graph['mha_softmax'].op == 'MaskedSoftmax'
    np.testing.assert_allclose(float_forward(graph, xs.astype(np.float64))[0], model.predict(xs, verbose=0), atol=2e-6)
    hls = convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<18,8,RND,SAT>'}},
                                   output_dir=str(tmp_path), backend='Vitis')
    weights = hls.trace(xs[:50])[1]['mha_softmax']
    assert np.all(weights[:, :, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)  # later keys get 0
    assert np.max(np.abs(hls.predict(xs) - model.predict(xs, verbose=0))) < 0.05
    nl = lower_graph(hls.graph, hls.intervals)
    np.testing.assert_array_equal(nl.evaluate([hls.graph['x'].result_type.quantize(xs[:30])])[0],
                                  hls.predict_mantissas(xs[:30])['mha'])
    unmasked = keras_to_graph(keras.Model(x, keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(h, h)))
    assert unmasked.nodes[-3].op == 'Softmax'  # negative control: without the mask, the plain softmax


def test_layernorm_input_width_limit(tmp_path):
    """A 26-bit input over 8 values is the widest whose exact sum of squares fits (accurate for variances 1e-3
    to 1e3); a 32-bit input is refused naming the layer, the input type and the widest accepted width."""
    x = keras.Input((4, 8), name='x')
    model = keras.Model(x, keras.layers.LayerNormalization(name='ln')(x))
    randomize_norms(model)
    rng = np.random.default_rng(2)
    xs = (rng.normal(0, 1, (400, 4, 8)) * np.sqrt(10.0 ** rng.uniform(-3, 3, (400, 4, 1)))).astype(np.float32)
    config = {'Model': {'Precision': 'fixed<20,6,RND,SAT>'}, 'LayerName': {'x': {'Precision': 'fixed<26,13>'}}}
    hls = convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / 'w26'), backend='Vitis')
    quantized = hls.graph['x'].result_type.to_float(hls.graph['x'].result_type.quantize(xs))
    assert np.max(np.abs(hls.predict(xs) - model.predict(quantized, verbose=0))) < 4e-3
    config['LayerName']['x']['Precision'] = 'fixed<32,16>'
    with pytest.raises(GraphError, match=r"layer 'ln': LayerNorm over 8 values of the input type fixed<32,16>: the "
                                         r"exact sum of squares n\^3 var needs 73 bits.*at most 63 are supported. "
                                         r"Narrow the input to at most 26 bits"):
        convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / 'w32'), backend='Vitis')
