"""HLS static mode of the recurrent layers (Static, ReuseFactor, RecurrentReuseFactor).

Static (hls4ml's default) writes one cell function called by a rolled loop over time; non-static
unrolls the steps. Both are the same recipe, so both must equal the emulator bit for bit: one Keras
model holds an LSTM (sequence, final h and c), a backward GRU with reset_after=False and a
SimpleRNN on 8 steps, and an LSTM and a GRU on a one-step input, with ReuseFactor and
RecurrentReuseFactor > 1 on some layers. 2,000 sequences each, with a negative control. The
second precision, io_stream, and the non-static form (compared with the static C simulation) are
marked slow (one g++ build each). Invalid Static / ReuseFactor / RecurrentReuseFactor values raise
naming the layer, the value and the valid values.
"""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.backends.hls.writer import source_files  # noqa: E402
from fpga4ml.config import ConfigError  # noqa: E402

from test_hls_csim import assert_bit_identical, model_inputs  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                               reason='needs g++ and the ap_types headers shipped with hls4ml')
L = keras.layers
STEPS, N_IN = 8, 3
#: (model default, LSTM accum/state) of the two precisions
PRECISIONS = {'narrow': ('fixed<10,3,RND,SAT>', 'fixed<13,5,RND,SAT>'),
              'wide': ('fixed<16,6>', 'fixed<20,8>')}


def zoo():
    """The Keras model: long and one-step sequences through LSTM, GRU and SimpleRNN."""
    keras.utils.set_random_seed(5)
    x, one = keras.Input((STEPS, N_IN), name='x'), keras.Input((1, N_IN), name='one_step')
    lstm = L.LSTM(4, return_sequences=True, return_state=True, name='lstm')(x)
    outs = list(lstm) + [
        L.GRU(4, reset_after=False, go_backwards=True, return_sequences=True, name='gru')(x),
        L.SimpleRNN(3, name='rnn')(x),
        L.LSTM(2, name='lstm_one')(one),
        L.GRU(3, name='gru_one')(one),
    ]
    return keras.Model([x, one], outs)


def config(precision: str, static: bool) -> dict:
    """Both precisions; folded products on the 8-step LSTM and GRU."""
    default, accum = PRECISIONS[precision]
    return {'Model': {'Precision': default, 'ReuseFactor': 1},
            'LayerType': {'LSTM': {'Static': static}, 'GRU': {'Static': static}, 'SimpleRNN': {'Static': static}},
            'LayerName': {'lstm': {'Precision': {'accum': accum, 'state': accum}, 'ReuseFactor': 3,
                                   'RecurrentReuseFactor': 4, 'TableSize': 256},
                          'gru': {'ReuseFactor': 2, 'RecurrentReuseFactor': 6}}}


def convert(tmp_path, precision: str = 'narrow', static: bool = True, io_type: str = 'io_parallel', **overrides):
    cfg = config(precision, static)
    for name, entry in overrides.items():
        cfg['LayerName'].setdefault(name, {}).update(entry)
    return fpga4ml.convert_from_keras_model(zoo(), hls_config=cfg, output_dir=str(tmp_path / f'prj_{precision}'),
                                            project_name='rnn_static', io_type=io_type)


def firmware(model) -> str:
    return '\n'.join(text for path, text in source_files(model).items() if path.endswith('.cpp'))


# ---------------------------------------------------------------------------------------- code shape, no g++
def test_static_writes_one_cell_and_honours_the_reuse_factors(tmp_path):
    code = firmware(convert(tmp_path))
    cells = re.findall(r'static void (\w+_cell)\(', code)
    assert sorted(cells) == sorted(f'{n}_cell' for n in ('lstm', 'gru', 'rnn', 'lstm_one', 'gru_one'))
    assert 'for (int run = 0; run < 8; run++) {  // rolled' in code
    assert 'HLS DATAFLOW' in code  # rolled loops: the top is no longer one PIPELINE
    # lstm: input product 3 x 16 over RF 3 (16 multipliers), recurrent 4 x 16 over RRF 4 (16)
    lstm_cell = code[code.index('static void lstm_cell('):code.index('static void lstm(')]
    assert 'PIPELINE II=4' in lstm_cell
    assert lstm_cell.count('ALLOCATION operation instances=mul limit=16') == 2
    # gru (reset_after=False): input 3 x 12 over 2 (18); recurrent 4 x 8 over 6 (6), then 4 x 4 over 6 (3)
    gru_cell = code[code.index('static void gru_cell('):code.index('static void gru(')]
    assert [int(v) for v in re.findall(r'instances=mul limit=(\d+)', gru_cell)] == [18, 6, 3]


def test_non_static_unrolls_the_steps(tmp_path):
    code = firmware(convert(tmp_path, static=False, lstm={'ReuseFactor': 1, 'RecurrentReuseFactor': 1},
                            gru={'ReuseFactor': 1, 'RecurrentReuseFactor': 1}))
    assert '_cell(' not in code
    assert 'HLS DATAFLOW' not in code
    assert code.count('for (int run = 0; run < 8; run++) {\n        #pragma HLS UNROLL') == 3


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_lstm_final_cell_state_leaves_through_an_output_array(tmp_path, io_type):
    """The static LSTM writes its final c through a second output array (no file-scope state shared
    between DATAFLOW processes); the Select reading it has no function of its own."""
    code = firmware(convert(tmp_path, io_type=io_type))
    assert 'thread_local' not in code and '_c_final' not in code
    head = re.search(r'static void lstm\(([^)]*)\)', code).group(1)
    assert head.endswith('lstm_t y[32], lstm_c_t c_final0[4]')
    assert 'c_final0[j] = (lstm_c_t) cs[j];' in code
    assert 'static void lstm_c(' not in code  # the Select of c: written by the LSTM
    assert 'static void lstm_h(' in code  # the Select of the final h still copies the last row
    if io_type == 'io_stream':
        process = code[code.index('static void lstm_stream('):]
        process = process[:process.index('\n}\n')]
        assert '&z0_0' in process and 'z0_0.write(b);' in process
    else:
        assert re.search(r'    lstm\(x, lstm_y, \w+\);', code)


@pytest.mark.parametrize('key, value, valid', [
    ('ReuseFactor', 5, '[1, 2, 3, 4, 6, 8, 12, 16, 24, 48]'),
    ('RecurrentReuseFactor', 3, '[1, 2, 4, 8, 16, 32, 64]'),
])
def test_invalid_reuse_factor_names_layer_value_and_valid_values(tmp_path, key, value, valid):
    with pytest.raises(ValueError) as err:  # at convert time, before any code is written
        convert(tmp_path, lstm={key: value})
    message = str(err.value)
    assert "'lstm'" in message and f'{key} {value}' in message and valid in message


def test_invalid_static_and_recurrent_reuse_factor_types_raise(tmp_path):
    with pytest.raises(ConfigError, match=r"\['lstm'\].*Static must be True or False, got 'yes'"):
        convert(tmp_path, lstm={'Static': 'yes'})
    with pytest.raises(ConfigError, match=r"\['gru'\].*RecurrentReuseFactor must be a positive integer, got 0"):
        convert(tmp_path, gru={'RecurrentReuseFactor': 0})


def test_hgq2_in_cell_quantizers_are_refused_not_dropped(tmp_path):
    model = convert(tmp_path)
    model.graph['gru'].attrs['quantizers'] = {'state': {}}  # as the HGQ2 front end records them
    with pytest.raises(fpga4ml.GraphError, match=r"layer 'gru': the HLS back end does not write HGQ2's in-cell "
                                                 r"quantizers of a GRU \(\['state'\]\)"):
        firmware(model)
    del model.graph['gru'].attrs['quantizers']
    assert 'gru_cell' in firmware(model)  # the control: without them the layer is written


def test_generated_config_has_hls4mls_recurrent_keys():
    cfg = fpga4ml.utils.config_from_keras_model(zoo(), granularity='name')
    assert cfg['LayerName']['lstm']['Static'] is True and cfg['LayerName']['gru']['RecurrentReuseFactor'] == 1
    assert 'Static' not in cfg['LayerName'].get('x', {})


# ---------------------------------------------------------------------------------------- C simulation
def check_csim(tmp_path, precision: str, static: bool = True, io_type: str = 'io_parallel'):
    """C simulation == emulator on 2,000 sequences (every output); returns the model, inputs and C sim outputs."""
    model = convert(tmp_path, precision, static, io_type)
    model.compile(sim='csim')
    xs = model_inputs(model, 2000)
    assert_bit_identical(model, xs)
    return model, xs, model._csim.predict(xs)


@needs_gxx
def test_static_csim_equals_emulator_narrow(tmp_path):
    model, xs, csim = check_csim(tmp_path, 'narrow')
    # negative control: one recurrent weight of the folded LSTM changed -> its outputs differ, the GRU's do not
    model.graph['lstm'].qweights['recurrent_kernel'][1, 5] += 1
    model._emulator = None
    changed = model.emulator.predict(xs)
    names = model.graph.outputs
    assert not np.array_equal(changed[names.index('lstm_c')], csim[names.index('lstm_c')])
    assert np.array_equal(changed[names.index('gru_seq')], csim[names.index('gru_seq')])


@needs_gxx
@pytest.mark.slow
def test_static_csim_equals_emulator_wide_and_non_static_has_the_same_bits(tmp_path):
    _, xs, static = check_csim(tmp_path / 'static', 'wide')
    _, _, unrolled = check_csim(tmp_path / 'unrolled', 'wide', static=False)
    for a, b in zip(static, unrolled):
        assert np.array_equal(a, b)


@needs_gxx
def test_static_csim_equals_emulator_io_stream(tmp_path):
    model, xs, csim = check_csim(tmp_path, 'narrow', io_type='io_stream')
    # negative control: one recurrent weight changed -> the LSTM's final c (its second output array) differs
    model.graph['lstm'].qweights['recurrent_kernel'][1, 5] += 1
    model._emulator = None
    names = model.graph.outputs
    assert not np.array_equal(model.emulator.predict(xs)[names.index('lstm_c')], csim[names.index('lstm_c')])
