"""Gaps found by running hls4ml's own test suite through fpga4ml (issue 18 item 6).

ac_fixed/ac_int precision strings, thresholded ReLU, the selu table's accuracy, products wider
than 62 bits, and PyTorch nearest upsampling to any output size.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

os.environ.setdefault('KERAS_BACKEND', 'torch')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import FixedType, PrecisionError, parse_precision  # noqa: E402
from fpga4ml.serialize import config_yaml  # noqa: E402

# ----------------------------------------------------------------------------- ac_fixed / ac_int


@pytest.mark.parametrize('text, expected', [
    ('ac_fixed<16,6>', FixedType(16, 6, True, 'TRN', 'WRAP')),
    ('ac_fixed<16,6,false>', FixedType(16, 6, False, 'TRN', 'WRAP')),
    ('ac_fixed<16,6,true,AC_RND,AC_SAT>', FixedType(16, 6, True, 'RND', 'SAT')),
    ('ac_fixed<8,3,true,AC_RND_CONV,AC_SAT_SYM>', FixedType(8, 3, True, 'RND_CONV', 'SAT_SYM')),
    ('ac_fixed<10,2,false,AC_RND_MIN_INF,AC_SAT_ZERO>', FixedType(10, 2, False, 'RND_MIN_INF', 'SAT_ZERO')),
    ('ac_fixed< 12, 4, true, AC_TRN_ZERO >', FixedType(12, 4, True, 'TRN_ZERO', 'WRAP')),
    ('ac_fixed<12,4,true,AC_RND_ZERO,AC_WRAP>', FixedType(12, 4, True, 'RND_ZERO', 'WRAP')),
    ('ac_fixed<12,4,true,AC_RND_INF>', FixedType(12, 4, True, 'RND_INF', 'WRAP')),
    # ac_int converts from fixed point by flooring (to_ac_int casts through an AC_TRN ac_fixed), then wraps
    ('ac_int<8>', FixedType(8, 8, True, 'TRN', 'WRAP')),
    ('ac_int<8,false>', FixedType(8, 8, False, 'TRN', 'WRAP')),
    ('ac_int<5,true>', FixedType(5, 5, True, 'TRN', 'WRAP')),
])
def test_ac_precision_strings(text, expected):
    assert parse_precision(text) == expected
    assert parse_precision(str(expected)) == expected  # our spelling round-trips


@pytest.mark.parametrize('text, words', [
    ('ac_fixed<16,6,true,AC_RND_CONV_ODD>', ['AC_RND_CONV_ODD', 'ties to odd', 'cannot be represented']),
    ('ac_fixed<16,6,maybe>', ["'maybe'", 'true or false']),
    ('ac_fixed<16,6,true,AC_TRN,AC_CLAMP>', ['AC_CLAMP', 'AC_SAT_SYM']),
    ('ac_int<8,true,AC_RND>', ['ac_int takes W[,S]']),
    ('ac_fixed<16>', ['ac_fixed takes W,I[,S[,Q[,O]]]']),
    ('ac_fixed<16,6,false>'.replace('16', '64'), ['64', 'unsigned']),
])
def test_ac_precision_errors_name_the_string(text, words):
    with pytest.raises(PrecisionError) as err:
        parse_precision(text)
    assert repr(text) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_ac_precision_config_round_trip(tmp_path):
    """A model configured with ac_ strings converts, writes its config as YAML, and converts again the same."""
    keras = pytest.importorskip('keras')
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,), name='x')
    out = keras.layers.Dense(4, name='fc')(keras.layers.Dense(5, activation='relu', name='h')(inp))
    kmodel = keras.Model(inp, out)
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='ac_fixed<16,6>')
    config['LayerName']['h']['Precision'] = {'weight': 'ac_fixed<8,2,true,AC_RND,AC_SAT>', 'result': 'ac_int<6,false>'}
    config['LayerName']['fc']['Precision'] = {'result': 'ac_fixed<12,4,true,AC_RND_CONV,AC_SAT_SYM>'}
    model = fpga4ml.convert_from_keras_model(kmodel, hls_config=config, output_dir=str(tmp_path / 'a'))
    h, fc = model.graph['h'], model.graph['fc']
    assert h.types['weight'] == FixedType(8, 2, True, 'RND', 'SAT')
    assert h.types['result'] == FixedType(6, 6, False, 'TRN', 'WRAP')
    assert fc.types['result'] == FixedType(12, 4, True, 'RND_CONV', 'SAT_SYM')
    reloaded = yaml.safe_load(config_yaml(model.config))
    again = fpga4ml.convert_from_keras_model(kmodel, hls_config=reloaded, output_dir=str(tmp_path / 'b'))
    assert {n.name: n.types for n in again.graph} == {n.name: n.types for n in model.graph}
    x = np.random.default_rng(0).uniform(-4, 4, (200, 6))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
