"""hls4ml-style configuration: schema, precedence, validation and 'auto' inference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import fpga4ml

from fpga4ml.config import ConfigError, ConfigWarning, config_from_graph
from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType, parse_precision
from fpga4ml.ir import Graph, Node


def mlp(rng, sizes=(8, 12, 6, 3)) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], (sizes[0],)))
    prev = 'x'
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 0.6, (a, b)).astype(np.float32)
        w[rng.random(w.shape) < 0.3] = 0
        g.add(Node(f'fc{k}', 'Dense', [prev], (b,), weights={'kernel': w, 'bias': rng.normal(0, 0.3, b).astype(np.float32)},
                   source='Dense'))
        g.add(Node(f'fc{k}_relu', 'Activation', [f'fc{k}'], (b,), attrs={'function': 'relu'}, source='Activation'))
        prev = f'fc{k}_relu'
    g.inputs, g.outputs = ['x'], [prev]
    return g


def test_config_from_graph_granularities():
    g = mlp(np.random.default_rng(0))
    model = config_from_graph(g, 'model', default_precision='fixed<12,4>', max_precision='fixed<24,10>')
    assert model['Model']['Precision'] == {'default': 'fixed<12,4>', 'maximum': 'fixed<24,10>'}
    assert model['Model']['ReuseFactor'] == 1 and model['Model']['Strategy'] == 'Latency'
    by_type = config_from_graph(g, 'type')
    assert set(by_type['LayerType']) == {'Input', 'Dense', 'Activation'}
    by_name = config_from_graph(g, 'name')
    assert list(by_name['LayerName']) == [n.name for n in g]
    assert by_name['LayerName']['fc0']['Precision'] == {'weight': 'auto', 'bias': 'auto', 'accum': 'auto', 'result': 'auto'}
    with pytest.raises(ConfigError, match="granularity"):
        config_from_graph(g, 'layer')
    with pytest.raises(ValueError, match="fixed<16"):
        config_from_graph(g, 'model', default_precision='fixed<16')


def test_precedence_name_over_type_over_model_per_variable():
    g = mlp(np.random.default_rng(1))
    cfg = {'Model': {'Precision': {'default': 'fixed<16,6>', 'accum': 'fixed<20,8>'}},
           'LayerType': {'Dense': {'Precision': {'weight': 'fixed<8,2>', 'result': 'fixed<14,5>'}}},
           'LayerName': {'fc1': {'Precision': {'weight': 'fixed<6,1>'}}, 'fc2': {'Precision': 'fixed<10,3>'}}}
    model = convert_graph(g, cfg)
    t = {n.name: n.types for n in model.graph}
    assert t['fc0']['weight'] == parse_precision('fixed<8,2>')  # type
    assert t['fc1']['weight'] == parse_precision('fixed<6,1>')  # name beats type
    assert t['fc1']['result'] == parse_precision('fixed<14,5>')  # type for the other variable
    assert t['fc0']['accum'] == parse_precision('fixed<20,8>')  # model per-variable
    assert t['fc0']['bias'] == parse_precision('fixed<16,6>')  # model default
    assert t['fc2']['weight'] == t['fc2']['result'] == parse_precision('fixed<10,3>')  # layer string = layer default
    assert t['fc0_relu']['result'] == parse_precision('fixed<16,6>')


def test_unknown_keys_warn_with_nearest():
    g = mlp(np.random.default_rng(2))
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactr': 2},
           'LayerName': {'fc9': {}, 'fc1': {'Precison': 'fixed<8,3>', 'Precision': {'wieght': 'fixed<8,3>'}}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        convert_graph(g, cfg)
    text = '\n'.join(str(w.message) for w in caught if issubclass(w.category, ConfigWarning))
    for bad, good in [('ReuseFactr', 'ReuseFactor'), ('fc9', 'fc2'), ('Precison', 'Precision'), ('wieght', 'weight')]:
        assert repr(bad) in text and repr(good) in text, text


@pytest.mark.parametrize('cfg,match', [
    ({'Model': {'Precision': 'fixed<16,6,RND,SATT>'}}, 'SATT'),
    ({'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {'fc0': {'Precision': {'weight': 'apfixed<8,3>'}}}}, 'apfixed'),
    ({'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 0}}, 'ReuseFactor'),
    ({'Model': {'Precision': 'fixed<16,6>', 'Strategy': 'Fastest'}}, 'Fastest'),
    ({'Model': {'Precision': 'auto'}}, 'explicit'),
])
def test_invalid_values_raise_naming_the_value(cfg, match):
    with pytest.raises(ValueError, match=match):
        convert_graph(mlp(np.random.default_rng(3)), cfg)


def test_auto_types_never_overflow_on_extreme_inputs():
    """Interval-inferred accumulators and results hold every value the inputs can produce."""
    rng = np.random.default_rng(4)
    g = mlp(rng)
    cfg = config_from_graph(g, 'name')
    for name in ('fc0_relu', 'fc1_relu'):  # keep activations exact too, so the check covers the chain
        cfg['LayerName'][name]['Precision']['result'] = 'fixed<40,20>'
    model = convert_graph(g, cfg)
    in_t = model.graph['x'].result_type
    corners = rng.choice([in_t.min_value, in_t.max_value, 0.0], size=(4000, 8))
    _, traced = model.trace(np.concatenate([corners, rng.normal(0, 9, (2000, 8))]))
    for node in model.graph:
        if node.op == 'Dense':
            assert traced.stats[node.name].overflow == 0, node.name
    # the inferred accumulator is exactly as wide as the largest reachable sum needs (not wider)
    fc0 = model.graph['fc0']
    w = fc0.qweights['kernel'].astype(object)
    bound = max(max(abs(int(v)) for v in col) for col in [np.abs(w).sum(axis=0) * max(-in_t.min_mantissa, in_t.max_mantissa)])
    assert fc0.types['accum'].width <= bound.bit_length() + 2


def test_max_precision_caps_inferred_types():
    g = mlp(np.random.default_rng(5))
    cfg = config_from_graph(g, 'name', max_precision='fixed<18,8,RND,SAT>')
    model = convert_graph(g, cfg)
    for node in model.graph:
        if node.op == 'Dense':
            assert node.types['accum'].width <= 18 and node.types['accum'].integer <= 8
            assert node.types['accum'].overflow == 'SAT'


def test_overflow_counted_in_trace_and_profile():
    g = mlp(np.random.default_rng(6))
    cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {'fc0': {'Precision': {'result': 'fixed<4,1,TRN,SAT>'}}}}
    model = convert_graph(g, cfg)
    x = np.random.default_rng(7).normal(0, 4, (500, 8))
    _, traced = model.trace(x)
    assert traced.stats['fc0'].overflow > 0
    assert traced.stats['fc0'].max <= FixedType(4, 1, True).max_value
    assert traced.stats['fc1'].overflow == 0
    table = model.profile(x)
    assert 'fc0' in table and 'overflows' in table


def test_model_fixed_precisions_win_unless_named_explicitly():
    """Types a quantization-aware model fixes (node.attrs['fixed_precision']) beat type/model config."""
    g = mlp(np.random.default_rng(2))
    q6 = parse_precision('fixed<6,1>')
    g['fc0'].attrs['fixed_precision'] = {'weight': q6, 'result': parse_precision('ufixed<6,0,RND,SAT>')}
    cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerType': {'Dense': {'Precision': {'weight': 'fixed<8,2>'}}}}
    t = convert_graph(g, cfg).graph['fc0'].types
    assert t['weight'] == q6 and t['result'] == parse_precision('ufixed<6,0,RND,SAT>')
    assert t['bias'] == parse_precision('fixed<16,6>')
    named = config_from_graph(g, 'name')
    assert named['LayerName']['fc0']['Precision']['weight'] == str(q6)
    named['LayerName']['fc0']['Precision']['weight'] = 'fixed<4,1>'  # the user's explicit name entry wins
    assert convert_graph(g, named).graph['fc0'].types['weight'] == parse_precision('fixed<4,1>')


def test_type_granularity_has_hls4ml_softmax_entry():
    """granularity='type' keys a softmax as hls4ml's class Softmax (a Keras Activation('softmax') too)."""
    keras = pytest.importorskip('keras')
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation='relu', name='fc1'),
                           keras.layers.Dense(3, name='fc2'), keras.layers.Activation('softmax', name='softmax')])
    by_type = fpga4ml.utils.config_from_keras_model(km, granularity='type')['LayerType']
    assert set(by_type) == {'InputLayer', 'Dense', 'Activation', 'Softmax'}
    assert by_type['Activation']['Precision'] == {'result': 'auto'}
    assert by_type['Softmax']['Precision'] == {'result': 'auto', 'exp_table': 'auto', 'inv_table': 'auto'}
    by_type['Softmax']['Precision']['result'] = 'fixed<10,1,RND,SAT>'  # the entry reaches the softmax node only
    model = fpga4ml.converters.convert_from_keras_model(km, hls_config={'Model': {'Precision': 'fixed<16,6>'},
                                                                        'LayerType': by_type})
    assert str(model.graph['softmax'].result_type) == 'fixed<10,1,RND,SAT>'
    assert model.graph['fc1_relu'].result_type != model.graph['softmax'].result_type


def test_einsum_reuse_factor_is_validated_naming_the_layer(tmp_path):
    """An Einsum of two variables folds by its products (outputs x terms): an invalid ReuseFactor names both."""
    from fpga4ml.semantics.spec import make_node
    g = Graph()
    g.add(Node('x', 'Input', [], (3, 4)))
    g.add(Node('y', 'Input', [], (2, 4)))
    g.add(make_node('scores', 'Einsum', ['x', 'y'], (3, 2), attrs={'equation': 'bc,dc->bd'}))
    g.inputs, g.outputs = ['x', 'y'], ['scores']
    with pytest.raises(ConfigError, match=r"layer 'scores' \(Einsum, terms per output 4 -> 6, Strategy Latency\): "
                                          r"ReuseFactor 5 is not valid; valid values are \[1, 2, 3, 4, 6, 8, 12, 24\]"):
        convert_graph(g, {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 5}}, output_dir=str(tmp_path / 'a'))
    assert convert_graph(g, {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 6}},
                         output_dir=str(tmp_path / 'b')).graph['scores'].config['ReuseFactor'] == 6
