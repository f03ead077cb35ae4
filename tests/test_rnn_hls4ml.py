"""Keras LSTM and GRU(reset_after=True): fpga4ml's emulator equals hls4ml 1.3.0's C simulation bit for bit.

Both libraries convert the same Keras model under the same config with TableSemantics 'hls4ml'
(hls4ml's sigmoid/tanh tables: entries and index arithmetic), Vitis, io_parallel, Latency, on the
configurations hls4ml computes correctly (docs/rnn.md lists the ones it does not): an LSTM whose
input, accumulator and result types are one type (hls4ml does not compile others), and a GRU with
reset_after=True. Weights are put on their types' grids first, so hls4ml's decimal weight text is
exact. Sequences of 7 steps, inputs in range, on rounding ties and far outside (they saturate).
Each comparison has a negative control: one quantized weight changed in fpga4ml must break it.
The hls4ml projects take about a minute to compile: marked slow.
"""

from __future__ import annotations

import copy
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import parse_precision  # noqa: E402

L = keras.layers
STEPS, N_IN, UNITS = 7, 5, 6
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')]

CONFIGS = {
    'LSTM': {'weight': 'fixed<12,4>', 'recurrent_weight': 'fixed<12,4>', 'bias': 'fixed<12,4>',
             'recurrent_bias': 'fixed<12,4>', 'accum': 'fixed<16,6>', 'result': 'fixed<16,6>'},
    'GRU': {'weight': 'fixed<12,4>', 'recurrent_weight': 'fixed<10,3>', 'bias': 'fixed<12,4>',
            'recurrent_bias': 'fixed<10,3>', 'accum': 'fixed<20,8>', 'result': 'fixed<16,6>'},
}

#: hls4ml's non-static lstm() passes h (result type) where the input type is expected: it compiles only
#: when the input, accumulator and result types are one type
INPUT_TYPES = {'LSTM': 'fixed<16,6>', 'GRU': 'fixed<12,4,RND,SAT>'}


def _model(kind: str, seed: int):
    """A Keras (7, 5) -> LSTM/GRU(6, return_sequences) model with weights on their types' grids."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((STEPS, N_IN), name='x')
    layer = getattr(L, kind)(UNITS, return_sequences=True, name='rnn')
    km = keras.Model(x, layer(x))
    rng = np.random.default_rng(seed)
    types = CONFIGS[kind]
    for w in layer.weights:
        var = {'kernel': 'weight', 'recurrent_kernel': 'recurrent_weight', 'bias': 'bias'}[w.name]
        t = parse_precision(types[var])
        w.assign(t.to_float(t.quantize(rng.normal(0, 0.6, tuple(w.shape)))).astype(np.float32))
    return km


def _config(kind: str) -> dict:
    return {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency',
                      'TableSemantics': 'hls4ml'},
            'LayerName': {'x': {'Precision': {'result': INPUT_TYPES[kind]}},
                          'rnn': {'Precision': dict(CONFIGS[kind])}}}


def _inputs(kind: str, n: int, seed: int) -> np.ndarray:
    t = parse_precision(INPUT_TYPES[kind])
    rng = np.random.default_rng(seed)
    shape = (n, STEPS, N_IN)
    x = np.where(rng.random(shape) < 0.1, rng.uniform(-20, 20, shape), rng.normal(0, 2.5, shape))
    ties = rng.random(shape) < 0.2
    return np.where(ties, (np.round(x / t.lsb) + 0.5) * t.lsb, x)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    """{kind: (our model, hls4ml model)}, both hls4ml projects compiled in parallel."""
    try:
        import hls4ml
    except ImportError:
        pytest.fail('hls4ml==1.3.0 is a test dependency but is not installed')
    if shutil.which('g++') is None:
        pytest.fail('g++ is required to compile hls4ml C simulations')
    out, futures = {}, []
    with ThreadPoolExecutor(2) as pool:
        for seed, kind in enumerate(CONFIGS):
            km = _model(kind, seed)
            cfg = _config(kind)
            ours = fpga4ml.convert_from_keras_model(km, hls_config=copy.deepcopy(cfg))
            theirs = hls4ml.converters.convert_from_keras_model(
                km, hls_config=copy.deepcopy(cfg), backend='Vitis', io_type='io_parallel',
                output_dir=str(tmp_path_factory.mktemp(kind) / 'prj'))
            theirs.write()
            futures.append(pool.submit(theirs._compile))
            out[kind] = (ours, theirs)
        for f in futures:
            f.result()
    return out


@pytest.mark.parametrize('kind', list(CONFIGS))
def test_bit_exact_with_hls4ml_csim(compiled, kind):
    ours, theirs = compiled[kind]
    x = _inputs(kind, 3000, 7)
    want = np.asarray(theirs.predict(np.ascontiguousarray(x)), dtype=np.float64).reshape(len(x), -1)
    got = np.asarray(ours.predict(x), dtype=np.float64).reshape(len(x), -1)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f'{len(bad)} values differ; first: vector {bad[0][0]}, output {bad[0][1]}: fpga4ml '
                           f'{got[tuple(bad[0])]}, hls4ml {want[tuple(bad[0])]}')
    assert len(np.unique(got)) > 100  # the outputs really vary
    model = copy.deepcopy(ours)  # negative control: one recurrent weight one LSB off
    model.graph['rnn'].qweights['recurrent_kernel'][1, 2] += 1
    model._emulator = None
    assert not np.array_equal(np.asarray(model.predict(x), dtype=np.float64).reshape(len(x), -1), want)
