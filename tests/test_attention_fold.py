"""ReuseFactor > 1 on transformer layers: EinsumDense and Einsum fold in Verilog (fold.fold_einsum_dense,
fold.fold_einsum) and in HLS (II = R); an attention's projections fold in parallel branches that meet
again (machine_stages.ValidChains), its scores and weighted values fold as Einsums.

The folded Verilog design's cycle-level interpreter and its Verilator simulation must compute the
emulator's (and HGQ2's) bits, and the C simulation the emulator's; each comparison has a negative
control. EinsumDense layers whose kernel or bias differ between positions are refused by name.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import emulate_cycles
from fpga4ml.ir import GraphError

keras = pytest.importorskip('keras')


def einsum_model(bias_per_position: bool = False):
    """Two Keras EinsumDense layers on 4 x 6: a per-position projection to (2, 3) and one back to 5."""
    keras.utils.set_random_seed(3)
    x = keras.Input((4, 6))
    h = keras.layers.EinsumDense('abc,cde->abde', output_shape=(4, 2, 3), bias_axes='bde' if bias_per_position
                                 else 'de', name='proj')(x)
    y = keras.layers.EinsumDense('abde,dec->abc', output_shape=(4, 5), bias_axes='c', name='out')(h)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for layer in model.layers[1:]:
        layer.set_weights([rng.normal(size=np.shape(w)) for w in layer.get_weights()])
    return model


def convert(model, tmp_path, name: str, config: dict, backend: str = 'Verilog'):
    from fpga4ml.convert import convert_from_keras_model
    return convert_from_keras_model(model, hls_config=config, backend=backend, output_dir=str(tmp_path / name))


def cycles(model, x) -> np.ndarray:
    """The folded design's outputs from its cycle-level interpreter, at the clocks valid_out is set."""
    shown, valid_out = emulate_cycles(model, x)
    return np.asarray(shown[0])[valid_out].reshape((len(x),) + np.shape(model.predict(x[:1]))[1:])


X = np.random.default_rng(1).normal(0, 2, (3000, 4, 6)).astype(np.float32)


@pytest.mark.parametrize('rf,folding', [(2, 'mac'), pytest.param(6, 'mac', marks=pytest.mark.slow),
                                        pytest.param(3, 'adders', marks=pytest.mark.slow)])
def test_folded_einsum_dense_machine_computes_the_emulator_bits(tmp_path, rf, folding):
    config = {'Model': {'Precision': 'fixed<24,10,RND,SAT>' if folding == 'mac' else 'fixed<24,10>',
                        'ReuseFactor': rf, 'Folding': folding}}
    if folding == 'adders':   # digit-serial folding needs an exact accumulator
        config['LayerName'] = {n: {'Precision': {'accum': 'auto'}} for n in ('proj', 'out')}
    model = convert(einsum_model(), tmp_path, f'r{rf}{folding}', config)
    est = model.estimate()
    assert est['ii'] == rf and est['latency_cycles'] >= 2 * (rf + 1)
    x = X[:400]                                # the cycle interpreter is slow; Verilator checks 2,000 below
    got = cycles(model, x)
    assert np.array_equal(got, model.predict(x))
    moved = einsum_model()                     # control: the emulator of a model with one moved weight
    w = moved.get_layer('out').get_weights()
    w[0].flat[0] += 0.5
    moved.get_layer('out').set_weights(w)
    assert not np.array_equal(got, convert(moved, tmp_path, f'm{rf}{folding}', config).predict(x))


def einsum_graph():
    """Einsum 'bc,dc->bd' of two variable inputs (3 x 4 and 2 x 4): 6 outputs of 4 terms."""
    from fpga4ml.ir import Graph, Node
    from fpga4ml.semantics.spec import make_node
    g = Graph()
    g.add(Node('x', 'Input', [], (3, 4)))
    g.add(Node('y', 'Input', [], (2, 4)))
    g.add(make_node('scores', 'Einsum', ['x', 'y'], (3, 2), attrs={'equation': 'bc,dc->bd'}))
    g.inputs, g.outputs = ['x', 'y'], ['scores']
    return g


@pytest.mark.parametrize('precision', ['fixed<16,6>', 'fixed<10,3,TRN,SAT>'])
@pytest.mark.parametrize('rf', [4, 24])
def test_folded_einsum_of_two_variables_computes_the_emulator_bits(tmp_path, precision, rf):
    """Wrapping and saturating accumulators (the order of the additions observable), 6 and 1 multipliers."""
    from fpga4ml.convert import convert_graph
    rng = np.random.default_rng(rf)
    xs = [rng.normal(0, 3, (400, 3, 4)), rng.normal(0, 3, (400, 2, 4))]
    model = convert_graph(einsum_graph(), {'Model': {'Precision': precision, 'ReuseFactor': rf}}, backend='Verilog',
                          output_dir=str(tmp_path / 'e'))
    est = model.estimate()
    assert (est['ii'], est['DSP']) == (rf, 24 // rf)
    shown, valid_out = emulate_cycles(model, xs)
    got = np.asarray(shown[0])[valid_out].reshape(400, 3, 2)
    assert np.array_equal(got, model.predict(xs))
    xs[1][:, 0, 0] += 0.25                     # control: one operand moved
    assert not np.array_equal(got, model.predict(xs))


def test_einsum_dense_with_a_bias_per_position_is_refused_by_name(tmp_path):
    model = convert(einsum_model(bias_per_position=True), tmp_path, 'b', {'Model': {'ReuseFactor': 2}})
    with pytest.raises(GraphError, match=r"layer 'proj': EinsumDense .* cannot fold: its bias differs between "
                                         r"positions; set its ReuseFactor to 1"):
        model.estimate()
    # the same layers unrolled build
    assert convert(einsum_model(True), tmp_path, 'b1', {'Model': {'ReuseFactor': 1}}).estimate()['ii'] == 1


def test_einsum_dense_reuse_factor_is_validated_naming_the_layer(tmp_path):
    from fpga4ml.config import ConfigError
    with pytest.raises(ConfigError, match=r"layer 'out' \(EinsumDense, per position 6 -> 5, Strategy Latency\): "
                                          r"ReuseFactor 4 is not valid; valid values are \[1, 2, 3, 5, 6, 10, 15, 30\]"):
        convert(einsum_model(), tmp_path, 'bad', {'Model': {'ReuseFactor': 4}})


def test_hls_einsum_dense_with_reuse_factor_shares_multipliers_and_csim_equals_emulator(tmp_path):
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    from test_hls_csim import assert_bit_identical
    config = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {'out': {'ReuseFactor': 3}}}
    from fpga4ml.convert import convert_graph
    scores = convert_graph(einsum_graph(), {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 4}},
                           output_dir=str(tmp_path / 'einsum'))
    scores.write()
    text = (tmp_path / 'einsum' / 'firmware' / 'myproject.cpp').read_text()
    assert '#pragma HLS PIPELINE II=4' in text and 'instances=mul limit=6' in text   # 24 products / 4
    scores.compile(sim='csim')
    rng = np.random.default_rng(3)
    xs = [rng.normal(0, 3, (2000, 3, 4)), rng.normal(0, 3, (2000, 2, 4))]
    assert_bit_identical(scores, xs)
    model = convert(einsum_model(), tmp_path, 'hls', config, backend='Vitis')
    model.write()
    text = (tmp_path / 'hls' / 'firmware' / 'myproject.cpp').read_text()
    out_fn = text[text.index('EinsumDense bde,dec->bc'):]
    assert '#pragma HLS PIPELINE II=3' in out_fn and 'instances=mul limit=40' in out_fn   # 120 products / 3
    assert 'II=3' not in text[text.index('EinsumDense bc,cde->bde'):text.index('EinsumDense bde,dec->bc')]
    model.compile(sim='csim')
    assert_bit_identical(model, [X[:2000]])
    got = model._csim.predict([X[:2000]])[0]
    moved = einsum_model()                     # control: one moved weight changes the emulator's bits
    w = moved.get_layer('out').get_weights()
    w[0].flat[1] += 0.5
    moved.get_layer('out').set_weights(w)
    assert not np.array_equal(got, convert(moved, tmp_path, 'hls_moved', config, backend='Vitis').predict(X[:2000]))


# ------------------------------------------------------------------ HGQ2 attention, projections folded
def folded_attention(tmp_path, name: str, folding: str = 'mac'):
    """HGQ2 QMultiHeadAttention(2, 2) on 4 x 5 with R 2 on its four projections, scores and weighted values."""
    pytest.importorskip('hgq')
    from test_verilog_lut_products import attention_model
    model = attention_model()
    config = {'LayerType': {'QEinsumDense': {'ReuseFactor': 2, 'Folding': folding},
                            'QMultiHeadAttention': {'ReuseFactor': 2}}}
    return model, convert(model, tmp_path, name, config)


def hgq_inputs(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 1, (n, 4, 5)) * 4).astype(np.float32)


def test_attention_with_folded_projections_computes_hgq2_bits(tmp_path):
    """Query, key and value projections fold in parallel (II = 2); the scores read all three, aligned; the
    scores and the weighted values fold as Einsums."""
    model, hls = folded_attention(tmp_path, 'mha')
    x = hgq_inputs(400, 4)                     # the cycle interpreter is slow; Verilator checks 2,000 below
    want = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)
    from fpga4ml.backends.verilog.design import design
    timing = design(hls).timing
    assert timing.ii == 2 and set(timing.stages) == {'mha_query', 'mha_key', 'mha_value', 'mha_scores',
                                                     'mha_combine', 'mha'}
    got = cycles(hls, x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(hls.predict(x), want)
    layer = model.get_layer('mha')._key_dense              # control: HGQ2 with one key weight moved
    values = keras.ops.convert_to_numpy(layer.kernel).copy()
    values.flat[np.argmax(np.abs(values))] += 1.0
    layer.kernel.assign(values)
    assert not np.array_equal(got, np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64))


def test_verilator_folded_attention_and_einsum_dense_equal_the_emulator(tmp_path):
    from verilog_models import require_verilator
    require_verilator()
    model, hls = folded_attention(tmp_path, 'mha_rtl')
    x = hgq_inputs(2000, 5)
    hls.compile(sim='rtl', progress=False)
    got = hls.predict(x, sim='rtl')
    np.testing.assert_array_equal(got, np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64))
    config = {'Model': {'Precision': 'fixed<24,10,RND,SAT>', 'ReuseFactor': 3}}
    ed = convert(einsum_model(), tmp_path, 'ed_rtl', config)
    ed.compile(sim='rtl', progress=False)
    got = ed.predict(X[:2000], sim='rtl')
    np.testing.assert_array_equal(got, ed.predict(X[:2000]))
    moved = einsum_model()                     # control: one moved weight changes the emulator's bits
    w = moved.get_layer('proj').get_weights()
    w[0].flat[3] += 0.5
    moved.get_layer('proj').set_weights(w)
    assert not np.array_equal(got, convert(moved, tmp_path, 'ed_moved', config).predict(X[:2000]))
