"""Constant attention masks: Keras 3 and HGQ2 MultiHeadAttention, torch nn.MultiheadAttention and SDPA.

Keras' own `_compute_attention_mask` merges attention_mask, value_mask, key_mask, use_causal_mask
and sliding_window into the MaskedSoftmax / TableSoftmax mask (a query row that keeps no key gives
0, as Keras and HGQ2 give); torch's float masks add their finite values to the scores (a BiasAdd
node) and mask their -inf keys. The float interpreter equals Keras/torch, HGQ2 stays bit-identical,
the C simulation and the netlist compute the emulator's bits; masks that are model tensors are
refused by name. Each comparison has a negative control.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
torch = pytest.importorskip('torch')

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_keras_model, convert_from_pytorch_model, convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.frontends.torch import torch_to_graph  # noqa: E402
from fpga4ml.ir import Graph, GraphError, Node  # noqa: E402
from fpga4ml.semantics.spec import make_node  # noqa: E402
from test_hls_csim import assert_bit_identical, make_inputs  # noqa: E402

T, F, E = 6, 3, 8
RNG = np.random.default_rng(21)


def constant_mask(empty_row: bool = False) -> np.ndarray:
    """A (1, T, T) boolean mask: random, the diagonal kept; query row 2 keeping no key when `empty_row`."""
    mask = (np.random.default_rng(1).random((1, T, T)) < 0.6) | np.eye(T, dtype=bool)[None]
    mask[0, 2] = not empty_row
    return mask


def keras_model(masked: bool = True):
    keras.utils.set_random_seed(2)
    x = keras.Input((T, F), name='x')
    h = keras.layers.Dense(E, name='embed')(x)
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=4, name='mha')
    kwargs = {'attention_mask': constant_mask(), 'value_mask': np.array([[1, 1, 1, 1, 0, 1]], bool),
              'use_causal_mask': True} if masked else {}
    return keras.Model(x, mha(h, h, **kwargs))


def test_keras_constant_masks_equal_keras(tmp_path):
    model = keras_model()
    xs = RNG.normal(0, 1, (200, T, F)).astype(np.float32)
    want = model.predict(xs, verbose=0)
    graph = keras_to_graph(model)
    mask = np.asarray(graph['mha_softmax'].attrs['mask'], bool)
    assert not mask[:, 4].any() and not np.triu(mask, 1).any()  # value_mask: key 4; causal
    np.testing.assert_allclose(float_forward(graph, xs.astype(np.float64))[0], want, atol=2e-6)
    hls = convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<18,8,RND,SAT>'}},
                                   output_dir=str(tmp_path / 'k'), backend='Vitis')
    assert np.max(np.abs(hls.predict(xs) - want)) < 0.05
    weights = hls.trace(xs[:20])[1]['mha_softmax']
    assert np.all(weights[:, :, :, 4] == 0) and np.all(weights[:, :, ~mask] == 0)
    nl = lower_graph(hls.graph, hls.intervals)
    np.testing.assert_array_equal(nl.evaluate([hls.graph['x'].result_type.quantize(xs[:30])])[0],
                                  hls.predict_mantissas(xs[:30])['mha'])
    graph['mha_softmax'].attrs['mask'] = np.ones((T, T), int).tolist()  # negative control: no mask
    assert np.max(np.abs(float_forward(graph, xs.astype(np.float64))[0] - want)) > 1e-2


def test_keras_mask_refusals_name_the_layer():
    x = keras.Input((T, F))
    m = keras.Input((T, T))
    out = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, name='by_input')(x, x, attention_mask=m)
    with pytest.raises(GraphError, match=r"layer 'by_input' \(MultiHeadAttention\): attention_mask is a model tensor; "
                                         r"only constant masks \(numpy arrays given to attention_mask, value_mask, "
                                         r"key_mask\) and use_causal_mask are accepted"):
        keras_to_graph(keras.Model([x, m], out))
    out = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, name='per_sample')(
        x, x, attention_mask=np.ones((2, T, T), bool))
    with pytest.raises(GraphError, match=r"layer 'per_sample' .*only masks that broadcast to \(1, 6, 6\)"):
        keras_to_graph(keras.Model(x, out))
    out = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, name='empty')(
        x, x, attention_mask=constant_mask(empty_row=True))
    with pytest.raises(GraphError, match=r"layer 'empty' .*leave query rows \[2\] without a key"):
        keras_to_graph(keras.Model(x, out))


# --------------------------------------------------------------------------- HGQ2


def hgq_model(masked: bool = True):
    from hgq.config import QuantizerConfigScope
    from hgq.layers import QMultiHeadAttention

    keras.utils.set_random_seed(8)
    with QuantizerConfigScope(f0=3, i0=2):
        q = keras.Input((T, 5), name='q')
        mha = QMultiHeadAttention(2, 3, fuse='none', name='mha')
        out = mha(q, q, attention_mask=constant_mask(empty_row=True)) if masked else mha(q, q)
        return keras.Model(q, out)


def test_hgq2_constant_mask_is_bit_identical_to_hgq2_and_csim(tmp_path):
    pytest.importorskip('hgq')
    model = hgq_model()
    xs = (np.random.default_rng(4).normal(0, 1, (2000, T, 5)) * 4).astype(np.float32)
    want = np.asarray(keras.ops.convert_to_numpy(model(xs)), np.float64)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'h'), backend='Vitis')
    assert not np.asarray(hls.graph['mha_softmax'].attrs['mask'], bool)[2].any()
    got = hls.predict(xs)
    assert want.std() > 0.5
    np.testing.assert_array_equal(got, want)
    unmasked = hgq_model(masked=False)  # negative control: the same weights without the mask
    unmasked.set_weights(model.get_weights())
    assert not np.array_equal(got, np.asarray(keras.ops.convert_to_numpy(unmasked(xs)), np.float64))
    if shutil.which('g++') is not None:
        hls.compile(sim='csim')
        assert_bit_identical(hls, [xs[:300]])


def test_hgq2_mask_from_a_model_input_is_refused():
    pytest.importorskip('hgq')
    from hgq.layers import QMultiHeadAttention

    q, m = keras.Input((T, 5)), keras.Input((T, T))
    out = QMultiHeadAttention(2, 3, fuse='none', name='qmha')(q, q, attention_mask=m)
    with pytest.raises(GraphError, match=r"layer 'qmha' \(QMultiHeadAttention\): attention_mask is a model tensor"):
        keras_to_graph(keras.Model([q, m], out))


# --------------------------------------------------------------------------- PyTorch


class TorchMasked(torch.nn.Module):
    """nn.MultiheadAttention with an additive float mask (-inf masks), then SDPA with another additive mask."""

    def __init__(self, additive: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.embed = torch.nn.Linear(F, E)
        self.mha = torch.nn.MultiheadAttention(E, 2, batch_first=True)
        bias = torch.randn(T, T, generator=g) if additive else torch.zeros(T, T)
        bias[torch.rand(T, T, generator=g) < 0.3] = float('-inf')
        bias.fill_diagonal_(0.5 if additive else 0.0)
        self.register_buffer('bias', bias)
        self.register_buffer('sdpa_bias', torch.randn(T, T, generator=g) if additive else torch.zeros(T, T))

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.mha(h, h, h, need_weights=False, attn_mask=self.bias)
        return torch.nn.functional.scaled_dot_product_attention(a, h, h, attn_mask=self.sdpa_bias)


def test_torch_additive_float_masks_equal_torch(tmp_path):
    model = TorchMasked().eval()
    xs = RNG.normal(0, 1, (200, T, F)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(xs)).numpy()
    graph = torch_to_graph(model, (T, F))
    assert graph['mha_mask'].op == 'BiasAdd' and graph['mha_softmax'].op == 'MaskedSoftmax'
    assert graph['scaled_dot_product_attention_mask'].op == 'BiasAdd'
    np.testing.assert_allclose(float_forward(graph, xs.astype(np.float64))[0], want, atol=2e-5)
    hls = convert_from_pytorch_model(model, {'Model': {'Precision': 'fixed<18,8,RND,SAT>'}},
                                     output_dir=str(tmp_path / 't'), input_shape=(T, F))
    assert np.max(np.abs(hls.predict(xs) - want)) < 0.05
    nl = lower_graph(hls.graph, hls.intervals)
    name = hls.graph.outputs[0]
    np.testing.assert_array_equal(nl.evaluate([hls.graph[hls.graph.inputs[0]].result_type.quantize(xs[:20])])[0],
                                  hls.predict_mantissas(xs[:20])[name])
    plain = torch_to_graph(TorchMasked(additive=False).eval(), (T, F))  # negative control: -inf only, no bias
    assert 'mha_mask' not in [n.name for n in plain.nodes]
    graph['mha_mask'].weights['bias'] = np.zeros((T, T), np.float32)
    assert np.max(np.abs(float_forward(graph, xs.astype(np.float64))[0] - want)) > 1e-2


class InputMask(torch.nn.Module):
    """A one-head attention whose mask is a model input (refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(E, 1, batch_first=True)

    def forward(self, x, m):
        return self.mha(x, x, x, need_weights=False, attn_mask=m)[0]


def test_torch_mask_from_a_model_input_is_refused():
    with pytest.raises(GraphError, match=r"node 'mha' .*attn_mask 'm' is computed from the model inputs; only a "
                                         r"constant \(L, S\) mask is accepted"):
        torch_to_graph(InputMask().eval(), [(T, E), (T, T)])


# --------------------------------------------------------------------------- HLS C simulation


def test_csim_equals_emulator_for_bias_add_and_a_row_without_keys(tmp_path):
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    rng = np.random.default_rng(5)
    mask = rng.random((5, 5)) < 0.6
    mask[1] = False  # a query that keeps no key: 0
    mask[0, 0] = True

    def graph(bias: np.ndarray) -> Graph:
        g = Graph()
        g.add(Node('s', 'Input', [], (2, 5, 5)))
        g.add(make_node('b', 'BiasAdd', ['s'], (2, 5, 5), weights={'bias': bias}))
        g.add(make_node('sm', 'MaskedSoftmax', ['b'], (2, 5, 5), attrs={'mask': mask.astype(int).tolist()}))
        g.inputs, g.outputs = ['s'], ['sm', 'b']
        return g

    bias = rng.normal(0, 1, (5, 5))
    cfg = {'Model': {'Precision': 'fixed<12,4,RND,SAT>'}}
    model = convert_graph(graph(bias), cfg, output_dir=str(tmp_path / 'm'), project_name='masks')
    model.compile(sim='csim')
    xs = [make_inputs(rng, 2000, (2, 5, 5), model.graph['s'].result_type)]
    assert_bit_identical(model, xs)
    got = model._csim.predict(xs)
    assert np.all(got[0][:, :, 1] == 0) and np.all(got[0][:, :, ~mask] == 0)
    assert np.all(got[0][:, :, 0].sum(-1) > 0.9)
    moved = bias.copy()
    moved[0, 0] += 1.0  # negative control: one moved bias value
    other = convert_graph(graph(moved), cfg, output_dir=str(tmp_path / 'o'))
    assert not np.array_equal(other.emulator.predict(xs)[1], got[1])


@pytest.mark.slow
def test_verilator_equals_emulator_for_bias_add_and_masks(tmp_path):
    """The Verilog design of nn.MultiheadAttention with an additive float mask and SDPA with another
    (BiasAdd, MaskedSoftmax) computes the emulator's bits on 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    model = TorchMasked().eval()
    config = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
    hls = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / 'v'), input_shape=(T, F),
                                     backend='Verilog')
    hls.compile(sim='rtl', progress=False)
    xs = RNG.normal(0, 1, (2000, T, F))
    got = hls.predict(xs, sim='rtl')
    np.testing.assert_array_equal(got, hls.predict(xs))
    with torch.no_grad():
        model.bias[0, 0] += 1.0  # negative control: one moved mask value
    other = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / 'o'), input_shape=(T, F),
                                       backend='Verilog')
    assert not np.array_equal(other.predict(xs), got)
