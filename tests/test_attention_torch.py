"""PyTorch transformer layers through fpga4ml (frontends/torch_attention.py).

The float interpreter of the converted graph equals torch's own outputs (float32 rounding only);
the emulator at fixed<32,16> stays within 1e-2 of float; the Verilog netlist computes the
emulator's bits (a moved weight breaks that); the same network in Keras 3 and in PyTorch with
copied weights gives identical emulator outputs; unsupported options are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_pytorch_model  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.torch import torch_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

T, FEAT, E = 6, 3, 8


def randomize_norms(model) -> None:
    """Non-trivial LayerNorm weights and biases (torch initialises them to 1 and 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))


class Encoder(nn.Module):
    """Embedding, masked self-attention, residual, LayerNorm, two encoder layers, einsum and SDPA heads."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(FEAT, E)
        self.mha = nn.MultiheadAttention(E, 2, batch_first=batch_first)
        self.ln = nn.LayerNorm(E)
        self.post = nn.TransformerEncoderLayer(E, 2, 16, dropout=0.1, batch_first=batch_first)
        self.pre = nn.TransformerEncoderLayer(E, 2, 12, batch_first=batch_first, norm_first=True)
        self.register_buffer('causal', torch.triu(torch.full((T, T), float('-inf')), 1))

    def move(self, v):
        """Batch to axis 1 for time-major modules, and back."""
        return v if self.batch_first else v.transpose(0, 1)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.mha(self.move(h), self.move(h), self.move(h), need_weights=False, attn_mask=self.causal)
        h = self.ln(h + self.move(a))
        h = self.move(self.post(self.move(h)))
        h = self.move(self.pre(self.move(h), src_mask=self.causal, is_causal=True))
        s = F.scaled_dot_product_attention(h, h, h, is_causal=True, scale=0.3)
        return torch.einsum('bld,bsd->bls', h, s)


def make(module):
    torch.manual_seed(0)
    model = module.eval()
    randomize_norms(model)
    return model


def run_torch(model, x):
    with torch.no_grad():
        out = model(*[torch.tensor(v) for v in (x if isinstance(x, list) else [x])])
    return out.numpy()


def data(shape, n=100, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0, scale, (n,) + shape).astype(np.float32)


@pytest.mark.parametrize('batch_first', [True, False])
def test_float_interpreter_equals_torch(batch_first):
    model = make(Encoder(batch_first))
    x = data((T, FEAT))
    graph = torch_to_graph(model, (T, FEAT))
    assert [n.op for n in graph.nodes if n.name.startswith('mha')] == [
        'EinsumDense', 'EinsumDense', 'EinsumDense', 'Einsum', 'MaskedSoftmax', 'Einsum', 'EinsumDense']
    assert graph['post'].op == 'LayerNorm' and graph['pre'].op == 'Merge'  # post-norm ends in norm2, pre-norm in add
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], run_torch(model, x), atol=2e-5, rtol=1e-5)


class Options(nn.Module):
    """kdim/vdim, no biases, LayerNorm without affine / bias over two axes, F.layer_norm, einsum with a
    parameter, per-head SDPA with a boolean mask."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(E, 4, kdim=5, vdim=3, bias=False, batch_first=True)
        self.ln2 = nn.LayerNorm((T, E), elementwise_affine=False)
        self.ln1 = nn.LayerNorm(E, bias=False)
        self.w = nn.Parameter(torch.randn(2, E, 4))
        self.g = nn.Parameter(torch.rand(4) + 0.5)
        self.register_buffer('mask', torch.rand(T, T) > 0.7)

    def forward(self, q, kv):
        a, _ = self.mha(q, kv[:, :, :5], kv[:, :, 5:])
        h = self.ln1(self.ln2(a))
        p = torch.einsum('btd,hdk->bhtk', h, self.w)
        p = F.layer_norm(p, (4,), self.g, None, 1e-3)
        s = F.scaled_dot_product_attention(p, p, p, attn_mask=self.mask.logical_not() | torch.eye(T, dtype=torch.bool))
        return s


def test_options_float_equals_torch():
    model = make(Options())
    q, kv = data((T, E), seed=1), data((T + 1, 8), seed=2)
    with pytest.raises(GraphError, match='index'):  # kv[:, :, :5] slices the feature axis: not lowered
        torch_to_graph(model, [(T, E), (T + 1, 8)])

    class Split(Options):
        def forward(self, q, k, v):
            a, _ = self.mha(q, k, v)
            h = self.ln1(self.ln2(a))
            p = F.layer_norm(torch.einsum('btd,hdk->bhtk', h, self.w), (4,), self.g, None, 1e-3)
            return F.scaled_dot_product_attention(p, p, p, attn_mask=self.mask.logical_not()
                                                  | torch.eye(T, dtype=torch.bool))
    model = make(Split())
    model.load_state_dict(make(Options()).state_dict())
    k, v = data((T + 1, 5), seed=2), data((T + 1, 3), seed=3)
    graph = torch_to_graph(model, [(T, E), (T + 1, 5), (T + 1, 3)])
    assert graph['einsum'].op == 'EinsumDense' and graph['einsum'].attrs['equation'] == 'td,hdk->htk'
    assert graph['ln2'].attrs == {'axes': (-2, -1), 'epsilon': 1e-5, 'center': False, 'scale': False}
    assert not graph['ln1'].attrs['center'] and graph['ln1'].attrs['scale']
    assert graph['scaled_dot_product_attention_softmax'].op == 'MaskedSoftmax'
    got = float_forward(graph, [v.astype(np.float64) for v in (q, k, v)])[0]
    np.testing.assert_allclose(got, run_torch(model, [q, k, v]), atol=2e-5, rtol=1e-5)


class Small(nn.Module):
    """A small block for the fixed-point checks."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(FEAT, E)
        self.mha = nn.MultiheadAttention(E, 2, batch_first=True)
        self.ln = nn.LayerNorm(E)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.mha(h, h, h)
        return self.ln(h + a)


def test_emulator_close_to_float_and_netlist_computes_the_emulator_bits(tmp_path):
    model = make(Small())
    x = data((T, FEAT), 200)
    # the LayerNorm's input narrowed: from 32-bit inputs its square sum would pass 63 bits (PrecisionError)
    config = {'Model': {'Precision': 'fixed<32,16>'}, 'LayerName': {'add': {'Precision': 'fixed<24,10,RND,SAT>'}}}
    hls = convert_from_pytorch_model(model, config, output_dir=str(tmp_path), input_shape=(T, FEAT))
    float_out = float_forward(hls.graph, x.astype(np.float64))[0]
    assert np.max(np.abs(hls.predict(x) - float_out)) < 1e-2
    low = convert_from_pytorch_model(model, {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}},
                                     output_dir=str(tmp_path / 'low'), input_shape=(T, FEAT))
    few = x[:20]
    mantissas = low.predict_mantissas(few)['ln']
    inputs = [low.graph['x'].result_type.quantize(few)]
    np.testing.assert_array_equal(lower_graph(low.graph, low.intervals).evaluate(inputs)[0], mantissas)
    node = low.graph['mha_value']  # negative control: one value-projection weight moves
    node.qweights['kernel'] = node.qweights['kernel'].copy()
    node.qweights['kernel'].flat[0] += 1 << 6
    assert not np.array_equal(lower_graph(low.graph, low.intervals).evaluate(inputs)[0], mantissas)


def test_keras_and_torch_give_identical_emulator_outputs(tmp_path):
    keras = pytest.importorskip('keras')
    from fpga4ml.convert import convert_from_keras_model

    model = make(Small())
    keras.utils.set_random_seed(0)
    xin = keras.Input((T, FEAT), name='x')
    h = keras.layers.Dense(E, name='embed')(xin)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=E // 2, name='mha')(h, h)
    out = keras.layers.LayerNormalization(epsilon=1e-5, name='ln')(keras.layers.Add()([h, a]))
    kmodel = keras.Model(xin, out)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    kmodel.get_layer('embed').set_weights([sd['embed.weight'].T, sd['embed.bias']])
    mha = kmodel.get_layer('mha')
    w, b = sd['mha.in_proj_weight'], sd['mha.in_proj_bias']
    for k, dense in enumerate((mha._query_dense, mha._key_dense, mha._value_dense)):
        dense.set_weights([w[k * E:(k + 1) * E].T.reshape(E, 2, E // 2), b[k * E:(k + 1) * E].reshape(2, E // 2)])
    mha._output_dense.set_weights([sd['mha.out_proj.weight'].T.reshape(2, E // 2, E), sd['mha.out_proj.bias']])
    kmodel.get_layer('ln').set_weights([sd['ln.weight'], sd['ln.bias']])
    x = data((T, FEAT), 300, scale=2.0)
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), run_torch(model, x), atol=2e-5)
    config = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
    from_torch = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / 't'), input_shape=(T, FEAT))
    from_keras = convert_from_keras_model(kmodel, hls_config=config, output_dir=str(tmp_path / 'k'), backend='Vitis')
    got = from_torch.predict(x)
    np.testing.assert_array_equal(got, from_keras.predict(x))
    with torch.no_grad():  # negative control: one moved LayerNorm weight changes the emulator outputs
        model.ln.weight[0] += 0.25
    moved = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / 'm'), input_shape=(T, FEAT))
    assert not np.array_equal(moved.predict(x), got)


class Refused(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.mha = nn.MultiheadAttention(E, 2, batch_first=True, add_bias_kv=kind == 'bias_kv')
        self.enc = nn.TransformerEncoderLayer(E, 2, 16, batch_first=True, activation=F.silu)
        self.pad = nn.Linear(E, 1)

    def forward(self, x):
        if self.kind == 'weights':
            a, w = self.mha(x, x, x)
            return a + w.sum()
        if self.kind == 'padding':
            return self.mha(x, x, x, key_padding_mask=self.pad(x).squeeze(-1))[0]
        if self.kind == 'silu':
            return self.enc(x)
        if self.kind == 'tuple':
            return self.mha(x, x, x, need_weights=False)
        return self.mha(x, x, x)[0]


@pytest.mark.parametrize('kind, message', [
    ('weights', r"node 'getitem_1' .*reads the attention weights of 'mha'"),
    ('padding', r"node 'mha' .*key_padding_mask is not supported"),
    ('bias_kv', r"node 'mha' .*add_bias_kv=True is not supported"),
    ('silu', r"node 'enc' .*activation 'silu' is not supported; only relu and gelu"),
    ('tuple', r"the model returns 'mha', a MultiheadAttention's \(output, weights\) tuple"),
])
def test_refusals_name_the_node_and_the_option(kind, message):
    with pytest.raises(GraphError, match=message):
        torch_to_graph(Refused(kind).eval(), (T, E))
