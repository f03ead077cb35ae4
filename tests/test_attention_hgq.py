"""HGQ2 0.2 transformer layers (frontends/hgq_attention.py) bit-identical with HGQ2's own inference.

Inputs are scaled x4 so that quantizers saturate and wrap. Each comparison has a negative control:
HGQ2's output after one weight moves must differ from fpga4ml's. The C simulation and the Verilog
netlist must compute the emulator's bits.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
hgq = pytest.importorskip('hgq')

from hgq.config import QuantizerConfigScope  # noqa: E402
from hgq.layers import (QDenseT, QEinsum, QEinsumDense, QEinsumDenseBatchnorm, QEinsumDenseT,  # noqa: E402
                        QLinformerAttention, QLinformerAttentionT, QMultiHeadAttention, QMultiHeadAttentionT)

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_keras_model  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_hls_csim import assert_bit_identical  # noqa: E402


def hgq_output(model, xs) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(xs if len(xs) > 1 else xs[0])), dtype=np.float64)


def inputs(model, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 1, (n,) + tuple(i.shape[1:])) * 4).astype(np.float32) for i in model.inputs]


def moved(layer, attr: str = 'kernel') -> None:
    """Move the largest weight of `layer` by one unit (a negative control)."""
    w = getattr(layer, attr)
    values = keras.ops.convert_to_numpy(w).copy()
    values.flat[np.argmax(np.abs(values))] += 1.0
    w.assign(values)


def mha_model(cross: bool):
    keras.utils.set_random_seed(2)
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((5, 6), name='q')
        if cross:  # hls4ml's test_hgq2_mha shape pattern: query and key/value of other lengths and widths
            v = keras.Input((7, 4), name='v')
            out = QMultiHeadAttention(2, 3, fuse='none', name='mha')(q, v)
            return keras.Model([q, v], out)
        out = QMultiHeadAttention(2, 4, value_dim=2, fuse='none', name='mha')(q, q)
        return keras.Model(q, out)


@pytest.mark.parametrize('cross', [True, False])
def test_qmultiheadattention_is_bit_identical_to_hgq2(tmp_path, cross):
    model = mha_model(cross)
    xs = inputs(model, 2000)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    got = hls.predict(xs if cross else xs[0])
    assert want.std() > 0.5
    np.testing.assert_array_equal(got, want)
    moved(model.get_layer('mha')._value_dense)
    assert not np.array_equal(got, hgq_output(model, xs))  # negative control


def test_causal_qmultiheadattention_is_bit_identical_to_hgq2_and_csim(tmp_path):
    keras.utils.set_random_seed(8)
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((6, 5), name='q')
        out = QMultiHeadAttention(2, 3, fuse='none', name='mha')(q, q, use_causal_mask=True)
        model = keras.Model(q, out)
    xs = inputs(model, 2000, seed=4)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'causal'), backend='Vitis')
    assert np.asarray(hls.graph['mha_softmax'].attrs['mask']).tolist() == np.tril(np.ones((6, 6), int)).tolist()
    got = hls.predict(xs[0])
    np.testing.assert_array_equal(got, want)
    keras.utils.set_random_seed(8)
    with QuantizerConfigScope(f0=3, i0=2):  # negative control: the same layer without the mask
        free = QMultiHeadAttention(2, 3, fuse='none', name='mha')
        unmasked = keras.Model(q, free(q, q))
    free.set_weights(model.get_layer('mha').get_weights())
    assert not np.array_equal(got, hgq_output(unmasked, xs))
    if shutil.which('g++') is not None:
        hls.compile(sim='csim')
        assert_bit_identical(hls, [xs[0][:300]])


def test_qmultiheadattention_with_per_element_bit_widths(tmp_path):
    """Every quantizer with its own integer and fractional bits per element (as after HGQ2 training)."""
    model = mha_model(cross=True)
    rng = np.random.default_rng(0)
    for w in model.weights:  # the quantizers' trainable bit counts: i (integer), f (fractional), b (kernel bits)
        name = w.path.rsplit('/', 1)[-1]
        if name in ('i', 'f', 'b'):
            values = keras.ops.convert_to_numpy(w)
            w.assign((2.0 if name == 'i' else 3.0) + rng.integers(-1, 3, values.shape).astype(values.dtype))
    xs = inputs(model, 2000, seed=1)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    assert all('element_types' in n.attrs for n in hls.graph.nodes if n.op == 'Quantize')
    got = hls.predict(xs)
    np.testing.assert_array_equal(got, want)
    moved(model.get_layer('mha')._query_dense)
    assert not np.array_equal(got, hgq_output(model, xs))  # negative control


def test_qeinsumdense_any_equation_is_bit_identical_to_hgq2(tmp_path):
    keras.utils.set_random_seed(5)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5))
        h = QEinsumDense('abc,cde->abde', output_shape=(4, 2, 3), bias_axes='de', name='proj')(x)
        h = QEinsumDense('abde,bdf->afe', output_shape=(3, 3), bias_axes='f', name='mix')(h)
        h = keras.layers.Flatten()(h)
        h = QEinsumDense('ab,bcd->acd', output_shape=(4, 2), name='ein')(h)  # refused by hls4ml 1.3.0
        model = keras.Model(x, h)
    xs = inputs(model, 1000)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'ed'), backend='Vitis')
    assert [hls.graph[n].op for n in ('proj', 'mix', 'ein')] == ['EinsumDense'] * 3
    np.testing.assert_array_equal(hls.predict(xs[0]), want)
    moved(model.get_layer('mix'))
    assert not np.array_equal(hls.predict(xs[0]), hgq_output(model, xs))  # negative control


def test_qeinsum_of_two_tensors_is_bit_identical_to_hgq2(tmp_path):
    """hls4ml's test_qeinsum equations (xbi,xj->xbij and xbi,xio->xbo have a kernel-like second input)."""
    keras.utils.set_random_seed(6)
    with QuantizerConfigScope(f0=3, i0=2):
        a, b, c = keras.Input((3, 4)), keras.Input((5,)), keras.Input((4, 2))
        outer = QEinsum('xbi,xj->xbij', name='outer')([a, b])
        mixed = QEinsum('xbi,xio->xbo', name='mixed')([a, c])
        model = keras.Model([a, b, c], [outer, mixed])
    xs = inputs(model, 1000)
    want = [np.asarray(keras.ops.convert_to_numpy(y), np.float64) for y in model(xs)]
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'ein'), backend='Vitis')
    got = hls.predict(xs)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    shifted = [x.copy() for x in xs]
    shifted[0][:, 0, 0] += 1.0  # negative control: HGQ2 on one moved input element differs from fpga4ml's outputs
    assert not np.array_equal(got[1], np.asarray(keras.ops.convert_to_numpy(model(shifted)[1]), np.float64))


def test_netlist_and_csim_compute_the_emulator_bits(tmp_path):
    model = mha_model(cross=True)
    xs = inputs(model, 300, seed=3)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    nl = lower_graph(hls.graph, hls.intervals)
    got = nl.evaluate([hls.graph[n].result_type.quantize(x) for n, x in zip(hls.graph.inputs, xs)])[0]
    np.testing.assert_array_equal(got, hls.predict_mantissas(xs)['mha'])
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    hls.compile(sim='csim')
    assert_bit_identical(hls, xs)


def test_refuses_fused_projections_and_masks():
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((5, 6))
        out = QMultiHeadAttention(2, 3, fuse='qkv', name='fused')(q, q)
    with pytest.raises(GraphError, match=r"layer 'fused' \(QMultiHeadAttention\): fuse='qkv' is not supported"):
        convert_from_keras_model(keras.Model(q, out), backend='Vitis')


def assert_netlist_and_csim(hls, xs, output: str, moved_model, tmp_path) -> None:
    """The netlist and the C simulation of `hls` compute its emulator's bits; the emulator of `moved_model` (the
    source model after a change, converted again) differs from the C simulation (the negative control)."""
    nl = lower_graph(hls.graph, hls.intervals)
    got = nl.evaluate([hls.graph[n].result_type.quantize(x) for n, x in zip(hls.graph.inputs, xs)])[0]
    np.testing.assert_array_equal(got, hls.predict_mantissas(xs)[output])
    hls.compile(sim='csim')
    assert_bit_identical(hls, xs)
    other = convert_from_keras_model(moved_model, output_dir=str(tmp_path / 'other'), backend='Vitis')
    assert not np.array_equal(other.predict(xs[0]), hls._csim.predict(xs)[0])


def batchnorm_model():
    """QEinsumDenseBatchnorm with a non-Dense equation (-> EinsumDense) and a Dense one (-> Dense), with
    non-trivial moving statistics and gamma (HGQ2 folds them into the kernel and bias before quantizing)."""
    keras.utils.set_random_seed(3)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5))
        h = QEinsumDenseBatchnorm('abc,cde->abde', output_shape=(4, 2, 3), bias_axes='de', name='proj')(x)
        h = QEinsumDenseBatchnorm('abde,bdf->afe', output_shape=(3, 3), bias_axes='f', name='mix')(h)
        h = keras.layers.Reshape((9,))(h)
        h = QEinsumDenseBatchnorm('ab,bc->ac', output_shape=(4,), bias_axes='c', name='dense')(h)
        model = keras.Model(x, h)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, QEinsumDenseBatchnorm):
            layer.moving_mean.assign(rng.normal(0, 1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.3, 3, layer.moving_variance.shape))
            layer.bn_gamma.assign(rng.normal(1, 0.3, layer.bn_gamma.shape))
    return model


def test_qeinsumdensebatchnorm_is_bit_identical_to_hgq2(tmp_path):
    model = batchnorm_model()
    xs = inputs(model, 2000)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'bn'), backend='Vitis')
    assert [hls.graph[n].op for n in ('proj', 'mix', 'dense')] == ['EinsumDense', 'EinsumDense', 'Dense']
    got = hls.predict(xs[0])
    assert want.std() > 0.5
    np.testing.assert_array_equal(got, want)
    layer = model.get_layer('mix')  # negative control: another moving variance changes the folded kernel
    layer.moving_variance.assign(keras.ops.convert_to_numpy(layer.moving_variance) * 4.0)
    assert not np.array_equal(got, hgq_output(model, xs))


def linformer_model(share: bool = False):
    """QLinformerAttention: cross-attention (query 6 x 5, key/value 8 x 4 projected to 3 positions), or
    self-attention with one projection shared by key and value."""
    keras.utils.set_random_seed(4)
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((6, 5), name='q')
        if share:
            out = QLinformerAttention(2, 4, key_dim=3, value_dim=2, share_kv_proj=True, name='lin')(q, q)
            return keras.Model(q, out)
        v = keras.Input((8, 4), name='v')
        out = QLinformerAttention(2, 3, key_dim=3, name='lin')(q, v)
        return keras.Model([q, v], out)


@pytest.mark.parametrize('share', [False, True])
def test_qlinformerattention_is_bit_identical_to_hgq2(tmp_path, share):
    model = linformer_model(share)
    xs = inputs(model, 2000, seed=5)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'lin'), backend='Vitis')
    assert hls.graph['lin_lin_key'].op == 'EinsumDense' and hls.graph['lin_scores'].shape == (2, 6, 4 if share else 3)
    got = hls.predict(xs if len(xs) > 1 else xs[0])
    assert want.std() > 0.5
    np.testing.assert_array_equal(got, want)
    moved(model.get_layer('lin')._lin_k_proj)  # negative control: one weight of the sequence projection
    assert not np.array_equal(got, hgq_output(model, xs))


def test_linformer_and_batchnorm_csim_and_netlist_compute_the_emulator_bits(tmp_path):
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    keras.utils.set_random_seed(6)
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((5, 4), name='q')
        h = QEinsumDenseBatchnorm('abc,cd->abd', output_shape=(5, 4), bias_axes='d', name='bn')(q)
        out = QLinformerAttention(2, 3, key_dim=2, name='lin')(h, h)
        model = keras.Model(q, out)
    xs = inputs(model, 300, seed=7)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'lin'), backend='Vitis')
    np.testing.assert_array_equal(hls.predict(xs[0]), hgq_output(model, xs))
    moved(model.get_layer('lin')._lin_v_proj)  # for the negative control: one moved weight
    assert_netlist_and_csim(hls, xs, 'lin', model, tmp_path)


def moved_subnet(layer) -> None:
    """Move the largest weight of a QEinsumDenseT's sub-network by 0.5 (a negative control)."""
    w = layer.module.weights[0]
    values = keras.ops.convert_to_numpy(w).copy()
    values.flat[np.argmax(np.abs(values))] += 0.5
    w.assign(values)


def test_qeinsumdenset_is_bit_identical_to_hgq2(tmp_path):
    """QEinsumDenseT (one small network per input/output pair, read as tables), with per-element input
    quantizers of which a fifth are pruned, and a second one with batch_norm=True."""
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5))
        h = QEinsumDenseT('abc,cde->abde', output_shape=(4, 2, 3), bias_axes='de', name='t')(x)
        h = QEinsumDenseT('abde,bdf->afe', output_shape=(3, 3), bias_axes='f', batch_norm=True, name='bn')(h)
        model = keras.Model(x, h)
    rng = np.random.default_rng(0)
    iq = {w.path.rsplit('/', 1)[-1]: w for w in model.get_layer('t').iq.weights}
    bits = {k: keras.ops.convert_to_numpy(iq[k]) for k in ('i', 'f')}
    bits = {k: v + rng.integers(-1, 2, v.shape).astype(v.dtype) for k, v in bits.items()}
    pruned = rng.random(bits['i'].shape) < 0.2
    bits['i'][pruned], bits['f'][pruned] = -1, 0  # k + i + f = 0: always 0
    for k, v in bits.items():
        iq[k].assign(v)
    bn = model.get_layer('bn')
    bn.moving_variance.assign(rng.uniform(0.02, 0.1, bn.moving_variance.shape))  # larger outputs
    bn.moving_mean.assign(rng.normal(0, 0.2, bn.moving_mean.shape))
    xs = inputs(model, 2000, seed=2)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 't'), backend='Vitis')
    assert [hls.graph[n].op for n in ('t', 'bn')] == ['TableDense', 'TableDense']
    assert sum(t is None for t in hls.graph['t'].attrs['index_types']) > 10
    got = hls.predict(xs[0])
    assert want.std() > 0.2
    np.testing.assert_array_equal(got, want)
    moved_subnet(model.get_layer('bn'))  # negative control
    assert not np.array_equal(got, hgq_output(model, xs))


def test_qdenset_is_bit_identical_to_hgq2(tmp_path):
    """QDenseT on (4, 5) and flat inputs, one with batch_norm=True (its BatchNormalization, / sqrt(n_in))."""
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5))
        h = QDenseT(2, batch_norm=True, name='bn')(QDenseT(3, name='a')(x))
        flat = QDenseT(3, name='flat')(keras.layers.Flatten()(x))
        model = keras.Model(x, [h, flat])
    bn = model.get_layer('bn').bn_module
    rng = np.random.default_rng(1)
    bn.moving_variance.assign(rng.uniform(0.01, 0.05, bn.moving_variance.shape))  # larger outputs
    xs = inputs(model, 2000, seed=5)
    want = [np.asarray(keras.ops.convert_to_numpy(y), np.float64) for y in model(xs[0])]
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'dt'), backend='Vitis')
    assert [hls.graph[n].op for n in ('a', 'bn', 'flat')] == ['TableDense'] * 3
    got = hls.predict(xs[0])
    for g, w in zip(got, want):
        assert w.std() > 0.1
        np.testing.assert_array_equal(g, w)
    moved_subnet(model.get_layer('flat'))  # negative control
    assert not np.array_equal(got[1], np.asarray(keras.ops.convert_to_numpy(model(xs[0])[1]), np.float64))


@pytest.mark.parametrize('cls', [QMultiHeadAttentionT, QLinformerAttentionT])
def test_table_projection_attention_is_bit_identical_to_hgq2(tmp_path, cls):
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5), name='x')
        layer = cls(2, 3, key_dim=2, name='mha') if cls is QLinformerAttentionT else cls(2, 2, name='mha')
        model = keras.Model(x, layer(x, x))
    xs = inputs(model, 2000, seed=3)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    assert hls.graph['mha_query'].op == 'TableDense' and hls.graph['mha'].op == 'TableDense'
    got = hls.predict(xs[0])
    np.testing.assert_array_equal(got, want)
    moved_subnet(model.get_layer('mha')._value_dense)  # negative control
    assert not np.array_equal(got, hgq_output(model, xs))


def test_qmultiheadattentiont_csim_and_netlist_compute_the_emulator_bits(tmp_path):
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5), name='x')
        model = keras.Model(x, QMultiHeadAttentionT(2, 2, name='mha')(x, x))
    xs = inputs(model, 300, seed=4)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    moved_subnet(model.get_layer('mha')._query_dense)  # for the negative control: another table
    assert_netlist_and_csim(hls, xs, 'mha', model, tmp_path)


@pytest.mark.slow
def test_verilator_equals_hgq2_for_table_and_linformer_attention(tmp_path):
    """The Verilog designs (unrolled, II = 1) of QMultiHeadAttentionT (TableDense projections) and of a
    QEinsumDenseBatchnorm + QLinformerAttention model compute HGQ2's bits on 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5), name='x')
        table = keras.Model(x, QMultiHeadAttentionT(2, 2, name='mha')(x, x))
        h = QEinsumDenseBatchnorm('abc,cd->abd', output_shape=(4, 4), bias_axes='d', name='bn')(x)
        linformer = keras.Model(x, QLinformerAttention(2, 3, key_dim=2, name='mha')(h, h))
    for k, model in enumerate((table, linformer)):
        xs = inputs(model, 2000, seed=9)
        hls = convert_from_keras_model(model, output_dir=str(tmp_path / str(k)), backend='Verilog')
        hls.compile(sim='rtl', progress=False)
        got = hls.predict(xs[0], sim='rtl')
        np.testing.assert_array_equal(got, hgq_output(model, xs))
    moved(linformer.get_layer('mha')._lin_v_proj)  # negative control: HGQ2 with a moved projection weight
    assert not np.array_equal(got, hgq_output(linformer, xs))
