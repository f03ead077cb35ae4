"""Keras 3 front end: graph structure and float equivalence with Keras itself."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import (  # noqa: E402
    ACTIVATIONS, SUPPORTED_LAYERS, keras_to_graph, load_keras_model,
)
from fpga4ml.ir import Graph, GraphError, Node  # noqa: E402

layers = keras.layers
RNG = np.random.default_rng(1234)


def _randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _keras_out(model, x) -> list[np.ndarray]:
    """Keras inference outputs as a list of numpy arrays."""
    y = model(x, training=False)
    y = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in y]


def assert_matches(model, graph: Graph, x) -> None:
    """float_forward(graph) == model(x) within 1e-5 relative (to each output's largest magnitude)."""
    ref = _keras_out(model, x)
    got = float_forward(graph, x)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(np.abs(r).max()))


def ops(graph: Graph) -> list[tuple[str, str]]:
    return [(n.name, n.op) for n in graph]


def _randomize(model, scale: float = 0.5) -> None:
    """Give every weight of `model` random values (PReLU alphas start at zero)."""
    for w in model.weights:
        w.assign(_randn(*w.shape, scale=scale))


# --------------------------------------------------------------------------- models


@pytest.fixture(scope='module')
def jsc():
    return keras.Sequential([
        keras.Input((16,), name='inputs'),
        layers.Dense(64, activation='relu', name='fc1'),
        layers.Dense(32, activation='relu', name='fc2'),
        layers.Dense(32, activation='relu', name='fc3'),
        layers.Dense(5, activation='softmax', name='output'),
    ], name='jsc')


ACTIVATION_NAMES = sorted(ACTIVATIONS)


@pytest.fixture(scope='module')
def activation_model():
    """One Dense(act) and one Activation(act) branch per Keras activation string."""
    x = keras.Input((8,), name='x')
    outputs = []
    for act in ACTIVATION_NAMES:
        outputs.append(layers.Dense(6, activation=act, name=f'd_{act}')(x))
        outputs.append(layers.Activation(act, name=f'a_{act}')(x))
    return keras.Model(x, outputs)


@pytest.fixture(scope='module')
def activation_layer_model():
    x = keras.Input((5, 4), name='x')
    branches = [
        layers.ReLU(name='relu'),
        layers.ReLU(max_value=6.0, name='relu6'),
        layers.ReLU(threshold=0.5, name='relu_thr'),
        layers.ReLU(negative_slope=0.1, max_value=1.5, threshold=0.2, name='relu_all'),
        layers.LeakyReLU(name='leaky_default'),
        layers.LeakyReLU(negative_slope=0.05, name='leaky'),
        layers.PReLU(name='prelu'),
        layers.PReLU(shared_axes=[1], name='prelu_shared'),
        layers.ELU(alpha=0.7, name='elu'),
        layers.Softmax(name='softmax'),
        layers.Softmax(axis=2, name='softmax_pos'),
    ]
    model = keras.Model(x, [b(x) for b in branches])
    for name in ('prelu', 'prelu_shared'):
        alpha = model.get_layer(name).alpha
        alpha.assign(RNG.uniform(0.05, 0.5, alpha.shape).astype(np.float32))
    return model


@pytest.fixture(scope='module')
def batchnorm_model():
    x = keras.Input((3, 6), name='x')
    h = layers.Dense(6, name='fc')(x)
    a = layers.BatchNormalization(name='bn')(h)
    b = layers.BatchNormalization(scale=False, center=False, epsilon=0.01, name='bn_plain')(h)
    model = keras.Model(x, [a, b])
    for name in ('bn', 'bn_plain'):
        bn = model.get_layer(name)
        for w in bn.weights:
            if 'variance' in w.path:
                w.assign(RNG.uniform(0.2, 3.0, w.shape).astype(np.float32))
            else:
                w.assign(_randn(*w.shape))
    return model


@pytest.fixture(scope='module')
def merge_model():
    """Two inputs, two outputs; the Dense outputs are shared tensors feeding every merge."""
    a = keras.Input((8,), name='a')
    b = keras.Input((8,), name='b')
    da = layers.Dense(8, name='da')(a)
    db = layers.Dense(8, use_bias=False, name='db')(b)
    merged = [
        layers.Add(name='add')([da, db]),
        layers.Subtract(name='sub')([da, db]),
        layers.Multiply(name='mul')([da, db]),
        layers.Average(name='avg')([da, db, a]),
        layers.Maximum(name='max')([da, db]),
        layers.Minimum(name='min')([da, db]),
    ]
    cat = layers.Concatenate(name='cat')(merged)
    out2 = layers.Dense(3, name='head')(layers.Add(name='add3')([a, b, da]))
    return keras.Model([a, b], [out2, cat])


@pytest.fixture(scope='module')
def reshape_model():
    x = keras.Input((4, 6), name='x')
    f = layers.Flatten(name='flat')(x)
    r = layers.Reshape((-1, 4), name='r64')(f)
    d = layers.Reshape((2, 4), name='r24')(layers.Dense(8, name='fc')(f))
    c = layers.Concatenate(axis=1, name='cat')([r, d])
    return keras.Model(x, [c, layers.Flatten(name='flat2')(c)])


@pytest.fixture(scope='module')
def dropout_model():
    return keras.Sequential([
        keras.Input((6, 4), name='x'),
        layers.Dropout(0.5, name='drop'),
        layers.Dense(8, activation='tanh', name='fc1'),
        layers.SpatialDropout1D(0.3, name='sdrop'),
        layers.GaussianNoise(0.1, name='noise'),
        layers.GaussianDropout(0.1, name='gdrop'),
        layers.AlphaDropout(0.1, name='adrop'),
        layers.ActivityRegularization(l1=0.01, name='actreg'),
        layers.Identity(name='ident'),
        layers.Dense(3, name='fc2'),
        layers.Dropout(0.5, name='drop_last'),
    ])


# --------------------------------------------------------------------------- structure + values


def test_jsc_mlp(jsc):
    graph = keras_to_graph(jsc)
    assert ops(graph) == [
        ('inputs', 'Input'), ('fc1', 'Dense'), ('fc1_relu', 'Activation'), ('fc2', 'Dense'),
        ('fc2_relu', 'Activation'), ('fc3', 'Dense'), ('fc3_relu', 'Activation'),
        ('output', 'Dense'), ('output_softmax', 'Softmax'),
    ]
    assert [n.shape for n in graph] == [(16,), (64,), (64,), (32,), (32,), (32,), (32,), (5,), (5,)]
    assert graph.inputs == ['inputs'] and graph.outputs == ['output_softmax']
    fc1 = graph['fc1']
    assert fc1.source == 'Dense' and fc1.inputs == ['inputs'] and fc1.attrs['use_bias'] is True
    assert fc1.weights['kernel'].shape == (16, 64) and fc1.weights['kernel'].dtype == np.float32
    np.testing.assert_array_equal(fc1.weights['kernel'], keras.ops.convert_to_numpy(jsc.get_layer('fc1').kernel))
    assert graph['fc1_relu'].source == 'Activation' and graph['fc1_relu'].attrs == {'function': 'relu'}
    assert graph['output_softmax'].attrs == {'axis': -1}
    graph.validate()
    x = _randn(256, 16)
    np.testing.assert_allclose(float_forward(graph, x)[0], jsc.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_jsc_float32_forward(jsc):
    graph = keras_to_graph(jsc)
    x = _randn(64, 16)
    (y32,) = float_forward(graph, x, dtype=np.float32)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, float_forward(graph, x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('act', ACTIVATION_NAMES)
def test_activation_strings(activation_model, act):
    graph = keras_to_graph(activation_model)
    op, function, attrs = ACTIVATIONS[act]
    dense_act = f'd_{act}_{act}'
    if act == 'linear':
        assert dense_act not in graph
        assert graph['a_linear'].attrs == {'function': 'linear'}
        return
    node = graph[dense_act]
    assert node.op == op and node.inputs == [f'd_{act}'] and node.source == 'Activation'
    assert graph['a_' + act].op == op and graph['a_' + act].inputs == ['x']
    expected = {'axis': -1} if op == 'Softmax' else {'function': function, **attrs}
    assert node.attrs == expected == graph['a_' + act].attrs


def test_activation_conventions(activation_model):
    graph = keras_to_graph(activation_model)
    assert graph['a_hard_sigmoid'].attrs == {'function': 'hard_sigmoid', 'slope': 1 / 6, 'shift': 0.5}
    assert graph['a_relu6'].attrs == {'function': 'relu', 'max_value': 6.0}
    assert graph['a_leaky_relu'].attrs == {'function': 'leaky_relu', 'alpha': 0.2}
    assert graph['a_exponential'].attrs == {'function': 'exp'}
    assert graph['a_elu'].attrs == {'function': 'elu', 'alpha': 1.0}


def test_activation_values(activation_model):
    assert_matches(activation_model, keras_to_graph(activation_model), _randn(128, 8, scale=3.0))


def test_activation_layers(activation_layer_model):
    graph = keras_to_graph(activation_layer_model)
    attrs = {n.name: n.attrs for n in graph if n.op != 'Input'}
    assert attrs['relu'] == {'function': 'relu'}
    assert attrs['relu6'] == {'function': 'relu', 'max_value': 6.0}
    assert attrs['relu_thr'] == {'function': 'relu', 'threshold': 0.5}
    assert attrs['relu_all'] == {'function': 'leaky_relu', 'alpha': 0.1, 'max_value': 1.5, 'threshold': 0.2}
    assert attrs['leaky_default'] == {'function': 'leaky_relu', 'alpha': pytest.approx(0.3)}
    assert attrs['leaky'] == {'function': 'leaky_relu', 'alpha': pytest.approx(0.05)}
    assert attrs['elu'] == {'function': 'elu', 'alpha': 0.7}
    assert attrs['softmax'] == attrs['softmax_pos'] == {'axis': -1}
    assert graph['softmax'].op == 'Softmax' and graph['relu'].source == 'ReLU'
    # PReLU: alpha broadcast over shared axes to the full per-sample shape
    shared = graph['prelu_shared']
    assert shared.attrs == {'function': 'prelu'} and shared.weights['alpha'].shape == (5, 4)
    assert shared.weights['alpha'].dtype == np.float32
    raw = keras.ops.convert_to_numpy(activation_layer_model.get_layer('prelu_shared').alpha)
    assert raw.shape == (1, 4)
    np.testing.assert_array_equal(shared.weights['alpha'], np.broadcast_to(raw, (5, 4)))
    assert graph['prelu'].weights['alpha'].shape == (5, 4)
    assert_matches(activation_layer_model, graph, _randn(64, 5, 4, scale=2.0))


def test_batchnorm(batchnorm_model):
    graph = keras_to_graph(batchnorm_model)
    bn = graph['bn']
    assert bn.op == 'Scale' and bn.source == 'BatchNormalization' and bn.shape == (3, 6)
    layer = batchnorm_model.get_layer('bn')
    gamma, beta, mean, var = (keras.ops.convert_to_numpy(w) for w in
                              (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
    scale = gamma / np.sqrt(var + layer.epsilon)
    np.testing.assert_array_equal(bn.weights['scale'], scale)
    np.testing.assert_array_equal(bn.weights['bias'], beta - scale * mean)
    assert bn.weights['scale'].dtype == bn.weights['bias'].dtype == np.float32
    assert bn.attrs['epsilon'] == layer.epsilon and bn.attrs['axis'] == -1
    np.testing.assert_array_equal(bn.attrs['bn']['variance'], var)
    plain = graph['bn_plain']
    np.testing.assert_array_equal(plain.attrs['bn']['gamma'], np.ones(6, np.float32))
    np.testing.assert_array_equal(plain.attrs['bn']['beta'], np.zeros(6, np.float32))
    assert_matches(batchnorm_model, graph, _randn(64, 3, 6))


def test_dense_without_bias_and_on_sequence(merge_model, batchnorm_model):
    db = keras_to_graph(merge_model)['db']
    assert db.attrs['use_bias'] is False
    assert db.weights['bias'].dtype == np.float32 and not db.weights['bias'].any()
    fc = keras_to_graph(batchnorm_model)['fc']
    assert fc.shape == (3, 6) and fc.weights['kernel'].shape == (6, 6)


def test_functional_merges(merge_model):
    graph = keras_to_graph(merge_model)
    assert graph.inputs == ['a', 'b'] and graph.outputs == ['head', 'cat']
    modes = {n.name: n.attrs['mode'] for n in graph if n.op == 'Merge'}
    assert modes == {'add': 'add', 'sub': 'sub', 'mul': 'mul', 'avg': 'avg', 'max': 'max',
                     'min': 'min', 'cat': 'concat', 'add3': 'add'}
    assert graph['avg'].inputs == ['da', 'db', 'a'] and graph['sub'].inputs == ['da', 'db']
    assert graph['cat'].attrs['axis'] == -1 and graph['cat'].shape == (48,)
    assert graph['cat'].inputs == ['add', 'sub', 'mul', 'avg', 'max', 'min']
    assert len(graph.consumers('da')) == 7  # six merges + add3
    x = [_randn(32, 8), _randn(32, 8)]
    assert_matches(merge_model, graph, x)


def test_flatten_reshape_concat_axis(reshape_model):
    graph = keras_to_graph(reshape_model)
    assert graph['flat'].op == 'Reshape' and graph['flat'].attrs == {'shape': (24,)}
    assert graph['flat'].source == 'Flatten'
    assert graph['r64'].attrs == {'shape': (6, 4)} and graph['r64'].source == 'Reshape'
    assert graph['cat'].attrs == {'mode': 'concat', 'axis': -2} and graph['cat'].shape == (8, 4)
    assert graph['flat2'].shape == (32,)
    assert_matches(reshape_model, graph, _randn(16, 4, 6))


def test_dropout_like_layers_skipped(dropout_model):
    graph = keras_to_graph(dropout_model)
    assert ops(graph) == [('x', 'Input'), ('fc1', 'Dense'), ('fc1_tanh', 'Activation'), ('fc2', 'Dense')]
    assert graph['fc1'].inputs == ['x'] and graph['fc2'].inputs == ['fc1_tanh']
    assert graph.outputs == ['fc2'] and graph['fc2'].shape == (6, 3)
    assert_matches(dropout_model, graph, _randn(16, 6, 4))


def test_sequential_built_without_input():
    model = keras.Sequential([layers.Dense(4, activation='sigmoid', name='d')])
    model.build((None, 3))
    graph = keras_to_graph(model)
    assert [n.op for n in graph] == ['Input', 'Dense', 'Activation']
    assert graph[graph.inputs[0]].shape == (3,) and graph.outputs == ['d_sigmoid']
    assert_matches(model, graph, _randn(8, 3))


def test_nested_models_are_inlined():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(4, activation='relu', name='inner_fc')],
                             name='inner')
    p = keras.Input((4,), name='p')
    q = keras.Input((4,), name='q')
    pair = keras.Model([p, q], layers.Subtract(name='pair_sub')([p, q]), name='pair')
    x = keras.Input((4,), name='x')
    h = inner(x)
    y = pair([h, x])
    model = keras.Model(x, layers.Dense(2, name='head')(y))
    graph = keras_to_graph(model)
    assert ops(graph) == [('x', 'Input'), ('inner_fc', 'Dense'), ('inner_fc_relu', 'Activation'),
                          ('pair_sub', 'Merge'), ('head', 'Dense')]
    assert graph['pair_sub'].inputs == ['inner_fc_relu', 'x']
    assert_matches(model, graph, _randn(8, 4))


def test_shared_layer_called_twice():
    dense = layers.Dense(4, name='shared')
    a, b = keras.Input((4,), name='a'), keras.Input((4,), name='b')
    model = keras.Model([a, b], layers.Add(name='sum')([dense(a), dense(b)]))
    graph = keras_to_graph(model)
    assert graph['sum'].inputs == ['shared', 'shared_1']
    assert_matches(model, graph, [_randn(8, 4), _randn(8, 4)])


def test_save_and_load_by_path(tmp_path, jsc):
    path = tmp_path / 'jsc.keras'
    jsc.save(path)
    for source in (path, str(path)):
        graph = keras_to_graph(source)
        assert ops(graph) == ops(keras_to_graph(jsc))
        assert_matches(jsc, graph, _randn(32, 16))
    assert isinstance(load_keras_model(path), keras.Model)
    assert load_keras_model(jsc) is jsc
    legacy = tmp_path / 'jsc.h5'
    jsc.save(legacy)
    assert_matches(jsc, keras_to_graph(legacy), _randn(8, 16))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.keras'):
        load_keras_model(tmp_path / 'missing.keras')
    with pytest.raises(ValueError, match=r'\.keras or \.h5'):
        load_keras_model(tmp_path / 'model.onnx')
    with pytest.raises(ValueError, match='keras.Model'):
        load_keras_model(42)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize('make', [
    lambda: layers.Masking(name='my_masking'),
    lambda: layers.Conv1DTranspose(2, 3, name='my_deconv'),
], ids=['Masking', 'Conv1DTranspose'])
def test_unsupported_layer(make):
    layer = make()
    model = keras.Sequential([keras.Input((6, 4)), layer])
    cls = type(layer).__name__
    with pytest.raises(GraphError, match=rf"{layer.name}.*{cls}") as err:
        keras_to_graph(model)
    assert 'Dense' in str(err.value) and 'BatchNormalization' in str(err.value)


def test_unsupported_activation():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation='mish', name='fc_mish')])
    with pytest.raises(GraphError, match=r"fc_mish.*'mish'.*relu"):
        keras_to_graph(model)
    model = keras.Sequential([keras.Input((4,)), layers.Activation('swish', name='act_swish')])
    with pytest.raises(GraphError, match=r"act_swish.*silu"):
        keras_to_graph(model)


def test_unsupported_axes():
    x = keras.Input((3, 6))
    with pytest.raises(GraphError, match=r"bn1.*BatchNormalization.*axis=1"):
        keras_to_graph(keras.Model(x, layers.BatchNormalization(axis=1, name='bn1')(x)))
    with pytest.raises(GraphError, match=r"sm1.*axis=1"):
        keras_to_graph(keras.Model(x, layers.Softmax(axis=1, name='sm1')(x)))


def test_broadcasting_merge_rejected():
    a, b = keras.Input((8,)), keras.Input((1,))
    with pytest.raises(GraphError, match=r"bcast.*\(8,\).*\(1,\)"):
        keras_to_graph(keras.Model([a, b], layers.Add(name='bcast')([a, b])))


def test_other_model_errors():
    with pytest.raises(GraphError, match='not built'):
        keras_to_graph(keras.Sequential([layers.Dense(2)]))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    sub = Sub()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(GraphError, match='subclassed'):
        keras_to_graph(sub)
    x = keras.Input((3,))
    with pytest.raises(GraphError, match='keras.ops'):
        keras_to_graph(keras.Model(x, keras.ops.add(x, x)))


def test_supported_layers_listed():
    for cls in ('Dense', 'Activation', 'ReLU', 'PReLU', 'BatchNormalization', 'Concatenate', 'Dropout',
                'Flatten', 'Reshape', 'InputLayer'):
        assert cls in SUPPORTED_LAYERS


# --------------------------------------------------------------------------- reference forward


def _tiny(node: Node, shape=(4,)) -> Graph:
    graph = Graph(inputs=['x'], outputs=[node.name])
    graph.add(Node('x', 'Input', [], shape))
    graph.add(node)
    return graph


def test_reference_piecewise_and_quantize():
    x = np.linspace(-4, 4, 33).reshape(-1, 1)
    cases = {
        'hard_tanh': np.clip(x, -1, 1),
        'linear': x,
    }
    for function, expected in cases.items():
        graph = _tiny(Node('f', 'Activation', ['x'], (1,), attrs={'function': function}), (1,))
        np.testing.assert_array_equal(float_forward(graph, x)[0], expected)
    graph = _tiny(Node('q', 'Quantize', ['x'], (1,)), (1,))
    np.testing.assert_array_equal(float_forward(graph, [x])[0], x)
    softplus = _tiny(Node('f', 'Activation', ['x'], (1,), attrs={'function': 'softplus'}), (1,))
    big = np.array([[-800.0], [0.0], [800.0]])
    np.testing.assert_allclose(float_forward(softplus, big)[0].ravel(), [0.0, np.log(2.0), 800.0])


def test_reference_errors():
    with pytest.raises(GraphError, match="'mish'"):
        float_forward(_tiny(Node('f', 'Activation', ['x'], (4,), attrs={'function': 'mish'})), np.ones((2, 4)))
    with pytest.raises(GraphError, match="'pow'"):
        float_forward(_tiny(Node('m', 'Merge', ['x', 'x'], (4,), attrs={'mode': 'pow'})), np.ones((2, 4)))
    with pytest.raises(ValueError, match='shape'):
        float_forward(_tiny(Node('q', 'Quantize', ['x'], (4,))), np.ones((2, 5)))


def test_core_import_does_not_load_keras():
    code = ('import sys, fpga4ml, fpga4ml.frontends, fpga4ml.emulator.reference; '
            'bad = [m for m in ("keras", "torch", "tensorflow") if m in sys.modules]; '
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
