"""examples/rnn_top_tagging.py: the generated jets, the weight transfer from PyTorch, and a --quick --csim run."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest

pytest.importorskip('keras')
pytest.importorskip('torch')

from test_examples import load_example  # noqa: E402


@pytest.fixture(scope='module')
def example():
    return load_example('rnn_top_tagging')


def test_jets_have_the_layout_and_both_classes(example):
    x, y = example.make_jets(400, seed=3)
    assert x.shape == (400, 20, 6) and x.dtype == np.float32
    assert set(np.unique(y)) == {0, 1}
    assert np.all(np.abs(x.mean(axis=(0, 1))) < 2.5) and np.all(x.std(axis=(0, 1)) < 3)  # roughly standardized
    # particles sorted by pT: the log pT fraction falls along the sequence
    assert np.all(np.diff(x[..., 0], axis=1) <= 0)
    x2, _ = example.make_jets(400, seed=3)
    assert np.array_equal(x, x2)  # fixed seed


def test_gru_weight_transfer_matches_torch(example):
    """The GRU's gate reordering (torch r, z, n -> Keras z, r, h) is right: _to_keras checks the outputs
    (1e-4) and raises otherwise; swapping two gate blocks must make that check fail."""
    import torch
    torch.manual_seed(0)
    net = example._TorchNet('gru')
    example._to_keras(net)  # passes its own check
    original = example._gru_blocks
    example._gru_blocks = lambda w: w  # torch's order unchanged: wrong for Keras
    try:
        with pytest.raises(RuntimeError, match='differs from the trained PyTorch network'):
            example._to_keras(net)
    finally:
        example._gru_blocks = original


@pytest.mark.slow  # about a minute on 2 shared cores: training, two conversions, 1,000 jets each
def test_quick_run(example, tmp_path, capsys):
    csim = shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None  # ap_types headers
    assert example.main(['--quick', '--out', str(tmp_path / 'prj')] + (['--csim'] if csim else [])) == 0
    out = capsys.readouterr().out
    if csim:  # the static-mode C simulation of both precisions equals the emulator
        assert out.count('== emulator, bit for bit, on 100.00 % of 1000 jets') == 2, out
    float_acc = float(re.search(r'Keras float accuracy ([\d.]+) %', out).group(1))
    assert float_acc > 80  # two well-separated classes: far above the 50 % of chance
    agreements = [float(v) for v in re.findall(r'argmax agreement with float ([\d.]+) %', out)]
    assert len(agreements) == 2
    assert all(a >= 97 for a in agreements), out
