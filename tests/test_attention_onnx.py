"""ONNX transformer ops (frontends/onnx_ops.py): LayerNormalization and Einsum (with the existing
Softmax over axis 1 or the last), from torch.onnx.export of PyTorch models; the float interpreter equals
onnxruntime, the emulator at fixed<32,16> stays within 1e-2 of float, and the netlist computes the
emulator's bits (a moved weight breaks that). An exported nn.MultiheadAttention becomes the torch front
end's nodes (frontends/onnx_attention.py) and predicts its bits on 2,000 inputs (a weight moved in the
ONNX file breaks that).
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip('torch')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
nn = torch.nn

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_onnx_model, convert_from_pytorch_model, convert_graph  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.onnx import onnx_to_graph  # noqa: E402
from fpga4ml.frontends.onnx_attention import _scores_factor  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_attention_torch import Small, randomize_norms, run_torch  # noqa: E402

T, FEAT, E = 6, 3, 8


class Block(nn.Module):
    """LayerNorm, einsum of two tensors and of a tensor and a parameter, softmax over the queries or keys."""

    def __init__(self, softmax_dim: int = 1) -> None:
        super().__init__()
        self.softmax_dim = softmax_dim
        self.embed = nn.Linear(FEAT, E)
        self.ln = nn.LayerNorm(E)
        self.w = nn.Parameter(torch.randn(E, 2, 4) * 0.5)
        with torch.no_grad():
            self.ln.weight.copy_(1 + 0.2 * torch.randn(E))
            self.ln.bias.copy_(0.2 * torch.randn(E))

    def forward(self, x):
        h = self.ln(self.embed(x))
        p = torch.einsum('bld,dhk->bhlk', h, self.w)
        s = torch.softmax(torch.einsum('bhlk,bhsk->bhls', p, p), dim=self.softmax_dim)
        return torch.einsum('bhls,bhsk->bhlk', s, p)


def export(model) -> onnx.ModelProto:
    torch.manual_seed(0)
    f = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.randn(2, T, FEAT),), f, dynamo=False, opset_version=17,
                      input_names=['x'], output_names=['y'], dynamic_axes={'x': {0: 'N'}, 'y': {0: 'N'}})
    return onnx.load_from_string(f.getvalue())


def data(n=100, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, T, FEAT)).astype(np.float32)


@pytest.mark.parametrize('dim', [1, -1])
def test_float_interpreter_equals_onnxruntime(dim):
    torch.manual_seed(0)
    proto = export(Block(dim))
    ops = {n.op_type for n in proto.graph.node}
    assert {'LayerNormalization', 'Einsum', 'Softmax'} <= ops
    x = data()
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x})[0]
    graph = onnx_to_graph(proto)
    assert {n.op for n in graph.nodes} >= {'LayerNorm', 'EinsumDense', 'Einsum', 'Softmax'}
    assert sum(n.op == 'Transpose' for n in graph.nodes) == (0 if dim == -1 else 2)  # dim 1: channels-last
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], want, atol=2e-5, rtol=1e-5)


def test_emulator_close_to_float_and_netlist_computes_the_emulator_bits(tmp_path):
    torch.manual_seed(0)
    proto = export(Block(1))
    x = data(200)
    graph = onnx_to_graph(proto)
    ln = next(n for n in graph.nodes if n.op == 'LayerNorm')
    softmax = next(n.name for n in graph.nodes if n.op == 'Softmax')
    # the LayerNorm's input narrowed: from 32-bit inputs its square sum would pass 63 bits (PrecisionError);
    # the softmax tables enlarged: scores reach 24 and the outputs 20, the default tables give 0.011
    config = {'Model': {'Precision': 'fixed<32,16>'},
              'LayerName': {ln.inputs[0]: {'Precision': 'fixed<26,8,RND,SAT>'}, softmax: {'TableSize': 1 << 14}}}
    model = convert_from_onnx_model(proto, config, output_dir=str(tmp_path))
    float_out = float_forward(model.graph, x.astype(np.float64))[0]
    assert np.max(np.abs(model.predict(x) - float_out)) < 1e-2
    low = convert_from_onnx_model(proto, {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}},
                                  output_dir=str(tmp_path / 'low'))
    few = x[:20]
    out_name = low.graph.outputs[0]
    mantissas = low.predict_mantissas(few)[out_name]
    inputs = [low.graph[low.graph.inputs[0]].result_type.quantize(few)]
    np.testing.assert_array_equal(lower_graph(low.graph, low.intervals).evaluate(inputs)[0], mantissas)
    node = next(n for n in low.graph.nodes if n.op == 'EinsumDense')  # negative control: a moved weight
    node.qweights['kernel'] = node.qweights['kernel'].copy()
    node.qweights['kernel'].flat[0] += 1 << 6
    assert not np.array_equal(lower_graph(low.graph, low.intervals).evaluate(inputs)[0], mantissas)


def test_einsum_and_layer_norm_refusals_name_the_node():
    class Three(nn.Module):
        def forward(self, x):
            return torch.einsum('bld,bld,bld->bl', x, x, x)

    with pytest.raises(GraphError, match=r"Einsum.*only Einsum of two operands"):
        onnx_to_graph(export(Three()))
    proto = export(Block(1))
    ln = next(n for n in proto.graph.node if n.op_type == 'LayerNormalization')
    ln.attribute[[a.name for a in ln.attribute].index('axis')].i = 0
    with pytest.raises(GraphError, match=r"LayerNormalization.*axis 0 is not supported"):
        onnx_to_graph(proto)


class Scores(nn.Module):
    """Attention scores as MatMul of two activations and a softmax over the queries (axis 2, not 1 or the last)."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(FEAT, 4), nn.Linear(FEAT, 4)

    def forward(self, x):
        scores = torch.matmul(self.q(x), self.k(x).transpose(1, 2)).unsqueeze(1)  # (N, 1, T, T)
        return torch.softmax(scores, dim=2)


def test_matmul_of_two_activations_and_softmax_on_any_axis():
    torch.manual_seed(1)
    proto = export(Scores())
    assert {'MatMul', 'Softmax'} <= {n.op_type for n in proto.graph.node}
    x = data(150, seed=2)
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x})[0]
    graph = onnx_to_graph(proto)
    assert any(n.op == 'Einsum' for n in graph.nodes) and any(n.op == 'Softmax' for n in graph.nodes)
    np.testing.assert_allclose(float_forward(graph, x.astype(np.float64))[0], want, atol=2e-5, rtol=1e-5)
    # control: the softmax really runs over axis 2 (the same scores normalised over the last axis differ)
    other = torch.softmax(torch.from_numpy(want).log(), dim=3).numpy()
    assert np.abs(other - want).max() > 1e-2


class Attention(Small):
    """test_attention_torch's Linear embedding, nn.MultiheadAttention with a residual add and LayerNorm,
    batch_first either way: torch.onnx.export reshapes the batch together with the heads ((L, N*H, D) and
    (L*N, E))."""

    def __init__(self, batch_first: bool = True, heads: int = 2) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.mha = nn.MultiheadAttention(E, heads, batch_first=batch_first)

    def forward(self, x):
        h = self.embed(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        a = self.mha(h, h, h, need_weights=False)[0]
        if not self.batch_first:
            a = a.transpose(0, 1)
            h = h.transpose(0, 1)
        return self.ln(h + a)


def make(model: nn.Module, seed: int = 3) -> nn.Module:
    """The model in eval mode with random LayerNorm weights and biases and random biases everywhere (torch
    initialises the attention biases to 0, which would hide a bias folded wrongly)."""
    randomize_norms(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if name.endswith('bias') and not isinstance(module, nn.LayerNorm):
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


#: the configurations of the bit-for-bit checks: 16 bits rounding and saturating, and the default (hls4ml's
#: fixed<16,6>, truncating and wrapping, as config_from_*_model(granularity='model') gives it)
CONFIGS = [{'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}, {'Model': {'Precision': {'default': 'fixed<16,6>'}}}]


def fixed_inputs(seed: int, n: int = 1000) -> np.ndarray:
    """2n inputs: n standard normal and n scaled x4 (they saturate the 16-bit types)."""
    return np.concatenate([data(n, seed=seed), 4 * data(n, seed=seed + 1)])


def signature(graph) -> list:
    """Every node's op, shape, attributes, types and quantized weights (not its name)."""
    return [(n.op, n.shape, repr(sorted(n.attrs.items())), sorted((k, str(t)) for k, t in n.types.items()),
             sorted((k, w.tolist()) for k, w in n.qweights.items())) for n in graph.nodes]


def assert_equals_torch_front_end(tmp_path, graph, model, x, configs=CONFIGS) -> list[np.ndarray]:
    """The ONNX graph converted at each config is the torch front end's model of `model` (same ops, attributes,
    types and quantized weights) and predicts the same bits on x; returns the outputs."""
    outs = []
    for k, config in enumerate(configs):
        ours = convert_graph(copy.deepcopy(graph), config, output_dir=str(tmp_path / f'onnx{k}'))
        theirs = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / f'torch{k}'),
                                            input_shape=(T, FEAT))
        assert signature(ours.graph) == signature(theirs.graph)
        outs.append(ours.predict(x))
        np.testing.assert_array_equal(outs[-1], theirs.predict(x))
    return outs


@pytest.mark.parametrize('batch_first, heads', [(True, 2), (False, 4)])
def test_exported_multihead_attention_is_the_torch_front_ends_bit_for_bit(tmp_path, batch_first, heads):
    torch.manual_seed(3)
    model = make(Attention(batch_first, heads))
    with torch.no_grad():  # two query weights that the scale puts on a RND tie and on the TRN grid of 10
        model.mha.in_proj_weight[0, 0] = 3 * 2 ** -10  # fractional bits for head size 4 (factor 0.5): folding
        model.mha.in_proj_weight[1, 0] = 2 ** -9  # the export's two float32 factors (0.49999997) rounds them down
    proto = export(model)
    x = fixed_inputs(5)
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x[:300]})[0]
    graph = onnx_to_graph(proto)
    np.testing.assert_allclose(float_forward(graph, x[:300].astype(np.float64))[0], want, atol=2e-5, rtol=1e-5)
    # the export's MatMuls, Reshapes, Gathers and two Scales are the torch front end's nodes
    assert [n.op for n in graph.nodes if n.name.startswith('mha')] == [
        'EinsumDense', 'EinsumDense', 'EinsumDense', 'Einsum', 'Softmax', 'Einsum', 'EinsumDense']
    outs = assert_equals_torch_front_end(tmp_path, graph, model, x)
    assert np.max(np.abs(outs[0] - run_torch(model, x))) > 0  # fixed point, not a copy of float


def test_a_moved_weight_in_the_onnx_file_breaks_the_equality(tmp_path):
    from onnx import numpy_helper

    torch.manual_seed(3)
    model = make(Attention())
    proto = export(model)
    init = next(i for i in proto.graph.initializer if tuple(i.dims) == (E, 3 * E))  # the in-projection (W^T)
    w = numpy_helper.to_array(init).copy()
    w[1, 2] += 0.25  # a query weight
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    x = fixed_inputs(5)
    config = CONFIGS[0]
    moved = convert_from_onnx_model(proto, config, output_dir=str(tmp_path / 'onnx')).predict(x)
    theirs = convert_from_pytorch_model(model, config, output_dir=str(tmp_path / 'torch'),
                                        input_shape=(T, FEAT)).predict(x)
    assert not np.array_equal(moved, theirs)


def test_the_exported_scale_folds_as_torchs_factor():
    # torch.onnx writes 1/sqrt(D) as two float32 Sqrt(1/Sqrt(D)) factors, whose product is off by an ulp for
    # most D; recognised, they fold as float32(D^-0.5) as the torch front end folds them
    off = 0
    for d in range(1, 257):
        half = float(np.sqrt(np.float32(1) / np.sqrt(np.float32(d))))
        off += np.float32(half * half) != np.float32(d ** -0.5)
        assert _scores_factor([half, half], d) == (float(np.float32(d ** -0.5)), True)
    assert off > 100  # the control: folding the product would not be torch's factor
    assert _scores_factor([0.5, 0.25], 4) == (0.125, False)  # any other scales fold as their exact product
    assert _scores_factor([], 4) == (1.0, False)


def test_exported_multihead_attention_netlist_computes_the_emulator_bits(tmp_path):
    torch.manual_seed(4)
    proto = export(make(Attention()))
    model = convert_from_onnx_model(proto, {'Model': {'Precision': 'fixed<12,4,RND,SAT>'}}, output_dir=str(tmp_path))
    few = data(20, seed=6)
    mantissas = model.predict_mantissas(few)[model.graph.outputs[0]]
    inputs = [model.graph[model.graph.inputs[0]].result_type.quantize(few)]
    np.testing.assert_array_equal(lower_graph(model.graph, model.intervals).evaluate(inputs)[0], mantissas)
    node = model.graph['mha_query']  # negative control: a moved query weight
    node.qweights['kernel'] = node.qweights['kernel'].copy()
    node.qweights['kernel'].flat[0] += 1 << 4
    assert not np.array_equal(lower_graph(model.graph, model.intervals).evaluate(inputs)[0], mantissas)


def test_an_erf_outside_the_exported_gelu_is_refused_by_name():
    class Erf(nn.Module):
        def forward(self, x):
            return torch.erf(x) * 0.5

    with pytest.raises(GraphError, match=r"ONNX node '/Erf' \(Erf\): Erf is supported only in the erf GELU"):
        onnx_to_graph(export(Erf()))


def test_a_reshape_that_splits_the_moved_batch_axis_is_refused():
    class Split(nn.Module):
        def forward(self, x):  # (N, T, F) -> (T, N, F) -> (3, 2 N F): each row mixes samples -> (N, T F)
            return x.transpose(0, 1).reshape(3, -1).reshape(-1, T * FEAT)

    with pytest.raises(GraphError, match=r'Reshape.*splits the batch axis'):
        onnx_to_graph(export(Split()))


class MaskedAttention(Attention):
    """Attention with a constant attn_mask: boolean (True = masked: a causal mask) or float (additive values
    and one -inf), which the export adds to the scores as a (1, 1, L, S) constant."""

    def __init__(self, kind: str) -> None:
        super().__init__(True, 2)
        if kind == 'bool':
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        else:
            mask = 0.5 * torch.randn(T, T, generator=torch.Generator().manual_seed(4))
            mask[0, 3] = float('-inf')
        self.register_buffer('mask', mask)

    def forward(self, x):
        h = self.embed(x)
        return self.ln(h + self.mha(h, h, h, attn_mask=self.mask, need_weights=False)[0])


@pytest.mark.parametrize('kind', ['bool', 'float'])
def test_an_exported_attention_mask_is_the_torch_front_ends_bit_for_bit(tmp_path, kind):
    """The export's Add of the mask becomes the torch front end's BiasAdd (finite values) and MaskedSoftmax
    (-inf keys); the float interpreter equals onnxruntime, the converted model the torch front end's bits."""
    torch.manual_seed(3)
    model = make(MaskedAttention(kind))
    proto = export(model)
    x = fixed_inputs(6)
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {'x': x[:300]})[0]
    graph = onnx_to_graph(proto)
    np.testing.assert_allclose(float_forward(graph, x[:300].astype(np.float64))[0], want, atol=2e-5, rtol=1e-5)
    ops = [n.op for n in graph.nodes if n.name.startswith('mha')]
    assert ops == ['EinsumDense', 'EinsumDense', 'EinsumDense', 'Einsum'] + (['BiasAdd'] if kind == 'float' else []) + [
        'MaskedSoftmax', 'Einsum', 'EinsumDense']
    outs = assert_equals_torch_front_end(tmp_path, graph, model, x)
    unmasked = copy.deepcopy(model)
    with torch.no_grad():
        unmasked.mask.zero_()  # control: the same weights without the mask compute other bits
    plain = convert_graph(onnx_to_graph(export(unmasked)), CONFIGS[0], output_dir=str(tmp_path / 'unmasked'))
    assert not np.array_equal(outs[0], plain.predict(x))


def test_a_masked_sum_read_by_anything_but_a_softmax_is_refused_by_name():
    class Scores(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(FEAT, T)
            mask = torch.zeros(T, T)
            mask[1, 2] = float('-inf')
            self.register_buffer('mask', mask)

        def forward(self, x):
            return torch.relu(self.embed(x) + self.mask)  # the masked sum feeds a Relu

    with pytest.raises(GraphError, match=r"Add.*-inf.*must be read by one Softmax.*\['Relu'\]"):
        onnx_to_graph(export(Scores().eval()))
