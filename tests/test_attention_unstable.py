"""HGQ2's softmax without the maximum (QMultiHeadAttention(stable_softmax=False), QSoftmax(stable=False)).

HGQ2 gives that exp table no input quantizer: it reads the scores. fpga4ml indexes it by the scores'
own grid, saturated where the table is constant (frontends/hgq_attention.py). Bit-identical with HGQ2
on inputs scaled x4, emulator == netlist == C simulation, each with a negative control.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
hgq = pytest.importorskip('hgq')

from hgq.config import QuantizerConfigScope  # noqa: E402
from hgq.layers import QMultiHeadAttention, QSoftmax  # noqa: E402

from fpga4ml.convert import convert_from_keras_model  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_attention_hgq import assert_netlist_and_csim, hgq_output, inputs, moved  # noqa: E402


def unstable_mha(seed: int = 5, f0: int = 2, causal: bool = False):
    keras.utils.set_random_seed(seed)
    with QuantizerConfigScope(f0=f0, i0=2):
        q = keras.Input((5, 6), name='q')
        out = QMultiHeadAttention(2, 3, fuse='none', stable_softmax=False, name='mha')(q, q, use_causal_mask=causal)
        return keras.Model(q, out)


@pytest.mark.parametrize('causal', [False, True])
def test_unstable_attention_is_bit_identical_to_hgq2(tmp_path, causal):
    model = unstable_mha(causal=causal)
    xs = inputs(model, 2000)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    node = hls.graph['mha_softmax']
    assert node.attrs['stable'] is False and node.attrs['exp_index'].overflow == 'SAT'
    got = hls.predict(xs[0])
    assert want.std() > 0.5
    np.testing.assert_array_equal(got, want)
    # the saturated index is exercised: some scores lie beyond the index type on these inputs
    _, traced = hls.trace(xs[0])
    index = node.attrs['exp_index']
    assert np.mean((traced['mha_scores'] > index.max_value) | (traced['mha_scores'] < index.min_value)) > 0.001
    moved(model.get_layer('mha')._key_dense)
    assert not np.array_equal(got, hgq_output(model, xs))  # negative control


def test_unstable_attention_netlist_and_csim(tmp_path):
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    model = unstable_mha(seed=6)
    xs = inputs(model, 2000, seed=1)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'mha'), backend='Vitis')
    other = unstable_mha(seed=6)
    moved(other.get_layer('mha')._query_dense)
    assert_netlist_and_csim(hls, xs, 'mha', other, tmp_path)


def test_standalone_unstable_qsoftmax(tmp_path):
    keras.utils.set_random_seed(3)
    with QuantizerConfigScope(f0=3, i0=3):
        x = keras.Input((4, 7))
        out = QSoftmax(stable=False, enable_iq=True, name='sm')(x)
        model = keras.Model(x, out)
    xs = inputs(model, 2000, seed=2)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'sm'), backend='Vitis')
    np.testing.assert_array_equal(hls.predict(xs[0]), want)
    assert not np.array_equal(hls.predict(xs[0] + 0.25), want)  # control: the inputs moved by 2 LSBs


def test_unstable_softmax_without_input_quantizer_or_with_too_fine_scores_is_refused():
    keras.utils.set_random_seed(3)
    x = keras.Input((4, 7))
    with pytest.raises(GraphError, match=r"layer 'bare' \(QSoftmax\).*stable=False needs inputs of known fractional"):
        convert_from_keras_model(keras.Model(x, QSoftmax(stable=False, name='bare')(
            keras.layers.Activation('linear')(x))), backend='Vitis')
    model = unstable_mha(f0=6)
    with pytest.raises(GraphError, match=r'stable=False softmax on inputs with 12 fractional bits needs a 1\d-bit'):
        convert_from_keras_model(model, backend='Vitis')


@pytest.mark.slow
def test_verilator_equals_hgq2_for_unstable_attention(tmp_path):
    """The Verilog design (unrolled, II = 1; narrow products in LUTs) computes HGQ2's bits on 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    model = unstable_mha(seed=7, causal=True)
    xs = inputs(model, 2000, seed=9)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'rtl'), backend='Verilog',
                                   hls_config={'Model': {'VariableProducts': 'auto'}})
    hls.compile(sim='rtl', progress=False)
    got = hls.predict(xs[0], sim='rtl')
    np.testing.assert_array_equal(got, hgq_output(model, xs))
    moved(model.get_layer('mha')._key_dense)  # negative control: HGQ2 with a moved key weight
    assert not np.array_equal(got, hgq_output(model, xs))
