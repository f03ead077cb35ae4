"""hls4ml's VivadoAccelerator configuration paths: create_config, convert_from_config with AcceleratorConfig,
config.get_config_value('AcceleratorConfig') and saved models of accelerator designs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpga4ml.backends.accelerator import BOARDS
from fpga4ml.backends.accelerator.project import project_files
from fpga4ml.config import ConfigError, ConfigWarning
from fpga4ml.converters import convert_from_config, create_config, load_saved_model
from fpga4ml.saved import SavedModelError, save_model
from test_accelerator import dense_model, inputs


def test_create_config_adds_the_accelerator_config():
    config = create_config(output_dir='prj', backend='VivadoAccelerator', board='zcu102', interface='axi_stream',
                           input_type='ap_fixed<14,4>', output_type='float', clock_period=4)
    assert (config['OutputDir'], config['Backend'], config['ClockPeriod']) == ('prj', 'VivadoAccelerator', 4)
    assert config['Part'] == BOARDS['zcu102'].part
    acc = config['AcceleratorConfig']
    assert (acc['Board'], acc['Interface'], acc['Driver']) == ('zcu102', 'axi_stream', 'python')
    assert acc['Precision'] == {'Input': 'ap_fixed<16,4>', 'Output': 'float'}  # widened to whole bytes, as hls4ml
    with pytest.raises(ConfigError, match="board='pynq-z3'"):
        create_config(backend='VivadoAccelerator', board='pynq-z3')


def _graph_config(tmp_path, accelerator: dict) -> dict:
    """A conversion configuration of the test's Dense model, given as an ONNX-free dict via its graph."""
    return {'OutputDir': str(tmp_path / 'prj'), 'ProjectName': 'acc', 'Backend': 'VivadoAccelerator',
            'IOType': 'io_parallel', 'AcceleratorConfig': accelerator,
            'HLSConfig': {'Model': {'Precision': 'fixed<12,4,RND,SAT>', 'ReuseFactor': 1}}}


def test_convert_from_config_reads_the_accelerator_config(tmp_path):
    torch = pytest.importorskip('torch')
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    config = _graph_config(tmp_path, {'Board': 'pynq-z2', 'Interface': 'axi_lite',
                                      'Precision': {'Input': 'ap_fixed<16,6>', 'Output': 'float'}})
    config.update(PytorchModel=net, InputShape=[4])
    model = convert_from_config(config)
    acc = model.settings['accelerator']
    assert (acc.board, acc.interface, acc.output_type) == ('pynq-z2', 'axi_lite', 'float')
    assert str(acc.input_type) == 'fixed<16,6>' and model.part == BOARDS['pynq-z2'].part
    assert model.config.get_config_value('AcceleratorConfig') == acc.as_config()
    config['AcceleratorConfig'] = {'Board': 'pynq-z2', 'Interfaces': 'axi_lite'}  # a misspelt key
    with pytest.raises(ConfigError, match="unknown keys \\['Interfaces'\\]"):
        convert_from_config(config)
    config['AcceleratorConfig'] = {'Board': 'pynq-z2', 'Precision': {'Inputs': 'float'}}
    with pytest.raises(ConfigError, match='Precision'):
        convert_from_config(config)


def test_plain_models_have_no_accelerator_config(tmp_path):
    torch = pytest.importorskip('torch')
    config = _graph_config(tmp_path, {})
    del config['AcceleratorConfig']
    config.update(PytorchModel=torch.nn.Sequential(torch.nn.Linear(4, 3)), InputShape=[4], Backend='Vitis')
    assert convert_from_config(config).config.get_config_value('AcceleratorConfig') is None


def test_saved_accelerator_model_round_trips(tmp_path):
    model = dense_model(tmp_path, board='zcu102', interface='axi_master', input_type='double',
                        output_type='ap_fixed<16,6>')
    path = model.save(str(tmp_path / 'acc'))
    saved = json.loads(path.read_text())['settings']['accelerator']
    assert saved == model.settings['accelerator'].as_config()
    loaded = load_saved_model(path)
    assert loaded.settings['accelerator'] == model.settings['accelerator']
    x = np.nan_to_num(inputs(200))
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert project_files(loaded) == project_files(model)  # the same wrapper, block design and driver
    assert save_model(loaded, tmp_path / 'again.fml').read_bytes() == path.read_bytes()
    # negative control: the saved board is what the loaded model uses
    other = json.loads(path.read_text())
    other['settings']['accelerator']['Board'] = 'pynq-z2'
    other['settings']['accelerator']['Interface'] = 'axi_stream'
    (tmp_path / 'other.fml').write_text(json.dumps(other))
    with pytest.warns(ConfigWarning, match="board's part"):
        changed = load_saved_model(tmp_path / 'other.fml')
    assert changed.settings['accelerator'].board == 'pynq-z2' and changed.part == BOARDS['pynq-z2'].part
    assert project_files(changed) != project_files(model)
    other['settings']['accelerator']['Board'] = 'no-such-board'
    (tmp_path / 'bad.fml').write_text(json.dumps(other))
    with pytest.raises(SavedModelError, match='no-such-board'):
        load_saved_model(tmp_path / 'bad.fml')
