"""YAML configurations: aliases ("billion laughs"), Python tags and deep nesting are refused, quickly and clearly."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import fpga4ml
from fpga4ml.cli import main
from fpga4ml.config import MAX_CONFIG_ENTRIES, ConfigError, check_config_shape
from fpga4ml.yaml_io import MAX_DEPTH, load_yaml
from onnx_models import save_gemm_model


def laughs(levels: int, fanout: int = 10) -> str:
    """A "billion laughs" YAML config: fanout**levels strings from a few hundred bytes, under LayerName."""
    lines = ['Model: {Precision: "fixed<16,6>"}', 'LayerName:', '  l0: &l0 "lol"']
    for k in range(1, levels + 1):
        lines.append(f'  l{k}: &l{k} [' + ', '.join([f'*l{k - 1}'] * fanout) + ']')
    return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def onnx_model(tmp_path_factory):
    """A small Dense model as an .onnx file (fast to convert; no Keras import)."""
    return save_gemm_model(tmp_path_factory.mktemp('yaml') / 'm.onnx', 4, 2)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('fpga4ml: error: '), err
    return err[0]


def test_billion_laughs_config_is_refused_by_convert(onnx_model, tmp_path, capsys):
    """Before the fix, writing config.yml expanded the aliases (10**9 strings for a 9-level file: a hang)."""
    config = tmp_path / 'lol.yml'
    config.write_text(laughs(6))  # 10**6 strings: a few seconds and tens of MB before the fix, refused now
    assert main(['convert', str(onnx_model), '-o', str(tmp_path / 'out'), '--config', str(config)]) == 1
    line = one_line_error(capsys)
    assert str(config) in line and 'line 4, column 12' in line and 'alias *l0 is refused' in line
    assert not (tmp_path / 'out' / 'config.yml').exists()


def test_control_plain_safe_load_accepts_the_same_file():
    """Control: PyYAML's safe_load loads the file (sharing objects): our loader is what refuses it."""
    data = yaml.safe_load(laughs(3))
    assert len(data['LayerName']['l3']) == 10


@pytest.mark.parametrize('text, fragment', [
    ('base: &b {ReuseFactor: 1}\nModel:\n  <<: *b\n', 'alias *b is refused'),  # merge keys are aliases
    ('Model: !!python/object/apply:os.system ["touch pwned"]\n', 'is not valid YAML'),
    ('Model: [' * (MAX_DEPTH + 1) + ']' * (MAX_DEPTH + 1) + '\n', f'nested more than {MAX_DEPTH} levels'),
    ('Model: {Precision: "fixed<16,6>"\n', 'is not valid YAML'),
])
def test_loader_refuses_with_the_source_named(text, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_yaml(text, "configuration file 'c.yml'")
    message = str(err.value)
    assert message.startswith("configuration file 'c.yml'") and fragment in message and '\n' not in message
    assert not (tmp_path / 'pwned').exists()


def test_loader_keeps_plain_configs_and_unused_anchors():
    text = 'Model:\n  Precision: &p "fixed<16,6>"\n  ReuseFactor: 1\nLayerName: {fc: {Trace: true}}\n'
    assert load_yaml(text, 'c.yml') == {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1},
                                        'LayerName': {'fc': {'Trace': True}}}
    assert load_yaml('', 'c.yml') is None


def test_python_api_refuses_an_aliased_config_before_expanding_it(onnx_model):
    """A config loaded with yaml.safe_load (aliases become shared objects) is refused at conversion."""
    config = yaml.safe_load(laughs(9))  # 10**9 strings written out
    with pytest.raises(ConfigError, match=r"config\['LayerName'\]\['l\d'\] expands to \d+ entries"):
        fpga4ml.convert_from_onnx_model(str(onnx_model), hls_config=config)


def test_config_shape_counts_shared_entries_once_per_use():
    shared = {'Precision': 'fixed<8,3>', 'ReuseFactor': 1}
    config = {'Model': shared, 'LayerName': {'a': shared, 'b': shared}}
    assert check_config_shape(config) == 1 + 3 + 1 + 3 + 3
    wide = {'LayerName': {f'n{k}': shared for k in range(MAX_CONFIG_ENTRIES // 3 + 1)}}
    with pytest.raises(ConfigError, match=r"config\['LayerName'\] expands to"):
        check_config_shape(wide)


def test_config_that_contains_itself_is_refused():
    config = {'Model': {'Precision': 'fixed<16,6>'}}
    config['Model']['again'] = config
    with pytest.raises(ConfigError, match='nested more than .* levels deep .or contains itself'):
        check_config_shape(config)
