"""HLS C++ of the recurrent layers: g++ C simulation equals the emulator bit for bit.

One Keras model holds the configurations as separate outputs, so one g++ build checks them all:
an LSTM with return_sequences, return_state and initial states (its three outputs), a backward GRU
(reset_after=True), a GRU with reset_after=False and relu, a Bidirectional SimpleRNN averaged, and a
one-step LSTM; 8 time steps otherwise. Narrow saturating types, inputs in range, on rounding ties and
far outside. The LSTM with initial states and the SimpleRNNs are non-static (steps unrolled), the
others static (hls4ml's default; tests/test_rnn_static.py covers that mode). A negative control: an
emulator with one recurrent weight changed must disagree with the same C simulation. io_parallel with
fpga4ml's tables runs by default; io_stream with hls4ml's tables is marked slow (a second g++ build).
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402

from test_hls_csim import assert_bit_identical, model_inputs  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                                reason='needs g++ and the ap_types headers shipped with hls4ml')
L = keras.layers
STEPS, N_IN = 8, 3


def zoo():
    """The Keras model: every recurrent configuration as its own outputs."""
    keras.utils.set_random_seed(11)
    x, one = keras.Input((STEPS, N_IN), name='x'), keras.Input((1, N_IN), name='one_step')
    h0, c0 = keras.Input((4,), name='h0'), keras.Input((4,), name='c0')
    lstm = L.LSTM(4, return_sequences=True, return_state=True, name='lstm')(x, initial_state=[h0, c0])
    outs = list(lstm) + [
        L.GRU(4, return_sequences=True, go_backwards=True, name='gru_back')(x),
        L.GRU(3, reset_after=False, activation='relu', name='gru_before')(x),
        L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode='ave', name='bidir')(x),
        L.LSTM(2, name='lstm_one')(one),
    ]
    return keras.Model([x, one, h0, c0], outs)


def config(semantics: str) -> dict:
    return {'Model': {'Precision': 'fixed<12,4,RND,SAT>', 'TableSemantics': semantics},
            'LayerType': {'SimpleRNN': {'Static': False}},
            'LayerName': {'lstm': {'Precision': {'accum': 'fixed<14,5,RND,SAT>', 'state': 'fixed<10,3,RND,SAT>',
                                                 'table': 'fixed<10,2,RND>'}, 'TableSize': 256, 'Static': False},
                          'gru_back': {'Precision': {'accum': 'fixed<16,6>', 'result': 'fixed<9,2,RND,SAT>'}}}}


def check(tmp_path, io_type: str, semantics: str) -> None:
    model = fpga4ml.convert_from_keras_model(zoo(), hls_config=config(semantics), output_dir=str(tmp_path / 'prj'),
                                             project_name='rnn_zoo', io_type=io_type)
    model.compile(sim='csim')
    xs = model_inputs(model, 2000)
    assert_bit_identical(model, xs)
    # negative control: the emulator of the model with one recurrent weight changed disagrees with this C simulation
    csim = model._csim.predict(xs)
    model.graph['gru_back'].qweights['recurrent_kernel'][0, 1] += 2
    model._emulator = None
    changed = model.emulator.predict(xs)
    names = model.graph.outputs
    assert not np.array_equal(changed[names.index('gru_back_seq')], csim[names.index('gru_back_seq')])
    assert np.array_equal(changed[names.index('lstm_c')], csim[names.index('lstm_c')])  # the other layers agree


def test_csim_equals_emulator_io_parallel(tmp_path):
    check(tmp_path, 'io_parallel', 'exact')


@pytest.mark.slow
def test_csim_equals_emulator_io_stream_hls4ml_tables(tmp_path):
    check(tmp_path, 'io_stream', 'hls4ml')
