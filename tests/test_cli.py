"""The fpga4ml command: convert, summary, profile; exit codes and one-line error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

from fpga4ml.cli import main  # noqa: E402
from fpga4ml.frontends.keras import SUPPORTED_LAYERS  # noqa: E402


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A small saved classifier, matching data, and a few bad input files."""
    d = tmp_path_factory.mktemp('cli')
    keras.utils.set_random_seed(3)
    inp = keras.Input((8,), name='x')
    h = keras.layers.Dense(6, activation='relu', name='fc1')(inp)
    h = keras.layers.Dense(3, name='fc2')(h)
    out = keras.layers.Activation('softmax', name='softmax')(h)
    keras.Model(inp, out).save(d / 'model.keras')
    rng = np.random.default_rng(0)
    np.save(d / 'x.npy', rng.normal(size=(300, 8)).astype(np.float32))
    np.save(d / 'wrong_shape.npy', rng.normal(size=(10, 7)))
    np.save(d / 'objects.npy', np.array([{'a': 1}, 2], dtype=object), allow_pickle=True)
    (d / 'text.npy').write_text('not numpy')
    (d / 'list.yml').write_text('- 1\n- 2\n')
    return d


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('fpga4ml: error: '), err
    for f in fragments:
        assert f in lines[0], (f, err)


def test_convert_writes_typed_graph_deterministically(files, tmp_path, capsys):
    code, out, err = run(capsys, 'convert', files / 'model.keras', '-o', tmp_path / 'a', '--granularity', 'name')
    assert code == 0, err
    assert 'graph.json' in out
    code, _, err = run(capsys, 'convert', files / 'model.keras', '-o', tmp_path / 'b', '--granularity', 'name')
    assert code == 0, err
    for name in ('graph.json', 'config.yml', 'summary.txt'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes(), name
    graph = json.loads((tmp_path / 'a' / 'graph.json').read_text())
    assert [n['name'] for n in graph['nodes']] == ['x', 'fc1', 'fc1_relu', 'fc2', 'softmax']
    config = yaml.safe_load((tmp_path / 'a' / 'config.yml').read_text())
    assert set(config['LayerName']) == {'x', 'fc1', 'fc1_relu', 'fc2', 'softmax'}


def test_convert_options_reach_the_model(files, tmp_path, capsys):
    code, _, err = run(capsys, 'convert', files / 'model.keras', '-o', tmp_path, '--default-precision',
                       'ap_fixed<10,4>', '--io-type', 'io_stream', '--project-name', 'jets', '--clock-period', '4')
    assert code == 0, err
    graph = json.loads((tmp_path / 'graph.json').read_text())
    assert graph['settings'] == {'backend': 'Vitis', 'io_type': 'io_stream', 'project_name': 'jets',
                                 'part': 'xcvu13p-flga2577-2-e', 'clock_period': 4.0, 'clock_uncertainty': None}
    assert graph['nodes'][0]['types']['result'] == 'fixed<10,4>'
    assert "fpga4ml model 'jets'" in (tmp_path / 'summary.txt').read_text()


def test_convert_with_config_file(files, tmp_path, capsys):
    assert run(capsys, 'convert', files / 'model.keras', '-o', tmp_path / 'first', '--granularity', 'name')[0] == 0
    config = yaml.safe_load((tmp_path / 'first' / 'config.yml').read_text())
    config['LayerName']['fc1']['Precision']['weight'] = 'fixed<6,1>'
    (tmp_path / 'c.yml').write_text(yaml.safe_dump(config))
    (tmp_path / 'c.json').write_text(json.dumps(config))
    for path in (tmp_path / 'c.yml', tmp_path / 'c.json'):
        out_dir = tmp_path / path.suffix[1:]
        code, _, err = run(capsys, 'convert', files / 'model.keras', '-o', out_dir, '--config', path)
        assert code == 0, err
        graph = json.loads((out_dir / 'graph.json').read_text())
        assert graph['nodes'][1]['types']['weight'] == 'fixed<6,1>'
        assert yaml.safe_load((out_dir / 'config.yml').read_text()) == config


def test_convert_with_hls4ml_project_file(files, tmp_path, capsys):
    project = {'OutputDir': str(tmp_path / 'prj'), 'ProjectName': 'tagger', 'IOType': 'io_parallel',
               'HLSConfig': {'Model': {'Precision': 'fixed<14,5>', 'ReuseFactor': 1}}}
    (tmp_path / 'project.yml').write_text(yaml.safe_dump(project))
    code, _, err = run(capsys, 'convert', files / 'model.keras', '-c', tmp_path / 'project.yml')
    assert code == 0, err
    graph = json.loads((tmp_path / 'prj' / 'graph.json').read_text())
    assert graph['settings']['project_name'] == 'tagger'
    assert graph['nodes'][0]['types']['result'] == 'fixed<14,5>'


def test_convert_verilog_then_synth(files, tmp_path, capsys):
    code, out, err = run(capsys, 'convert', files / 'model.keras', '-o', tmp_path, '--backend', 'verilog',
                         '--project-name', 'clf')
    assert code == 0, err
    assert (tmp_path / 'graph.json').is_file() and (tmp_path / 'clf.v').is_file()
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert manifest['top'] == 'clf' and manifest['latency'] >= 1
    pytest.importorskip('pyosys')
    code, out, err = run(capsys, 'synth', tmp_path, '--family', 'ice40')
    assert code == 0, err
    report = json.loads((tmp_path / 'synth_report.json').read_text())
    assert report['LUT'] > 0 and report['FF'] > 0 and report['latency_cycles'] == manifest['latency']
    assert 'LUT' in out and 'ice40' in out


def test_synth_without_a_verilog_project_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run(capsys, 'synth', tmp_path)
    assert code == 1
    assert_one_line_error(err, 'no manifest.json')


def test_unknown_config_key_warns_in_one_line(files, tmp_path, capsys):
    (tmp_path / 'c.yml').write_text(yaml.safe_dump({'Model': {'Precision': 'fixed<16,6>', 'ReuseFactr': 1}}))
    code, _, err = run(capsys, 'convert', files / 'model.keras', '-o', tmp_path / 'o', '--config', tmp_path / 'c.yml')
    assert code == 0
    assert any(line.startswith('fpga4ml: warning: ') and 'ReuseFactr' in line and 'ReuseFactor' in line
               for line in err.splitlines()), err


def test_summary_prints_layer_table(files, capsys):
    code, out, err = run(capsys, 'summary', files / 'model.keras', '--granularity', 'type')
    assert code == 0, err
    assert 'layer' in out and 'result type' in out
    assert 'fc1_relu' in out and 'Activation(relu)' in out and 'Softmax' in out


def test_profile_prints_ranges_and_agreement(files, capsys):
    code, out, err = run(capsys, 'profile', files / 'model.keras', files / 'x.npy', '--n', '200')
    assert code == 0, err
    assert 'overflows' in out and 'fc2' in out
    assert 'float vs fixed on 200 samples' in out
    assert 'argmax agreement' in out and 'max |float - fixed|' in out


@pytest.mark.parametrize('data, fragment', [
    ('missing.npy', 'does not exist'),
    ('text.npy', 'not a .npy file'),
    ('objects.npy', 'object arrays are refused'),
    ('wrong_shape.npy', 'expects (n_samples, 8)'),
])
def test_profile_rejects_bad_data(files, capsys, data, fragment):
    code, out, err = run(capsys, 'profile', files / 'model.keras', files / data)
    assert code == 1
    assert_one_line_error(err, fragment)


def test_bad_inputs_give_one_line_errors(files, tmp_path, capsys):
    model = files / 'model.keras'
    cases = [
        (('summary', tmp_path / 'nope.keras'), 'does not exist'),
        (('summary', files / 'x.npy'), 'expected a .keras or .h5 file'),
        (('summary', model, '--default-precision', 'fixed<16'), "invalid precision 'fixed<16'"),
        (('summary', model, '--config', files / 'list.yml'), 'must hold a mapping'),
        (('summary', model, '--config', tmp_path / 'none.yml'), 'does not exist'),
        (('summary', model, '--config', files / 'list.yml', '--granularity', 'name'), 'cannot be combined'),
        (('convert', model), 'no output directory'),
        (('convert', model, '-o', tmp_path, '--project-name', 'my-project'), 'project_name'),
        (('profile', model, files / 'x.npy', '--n', '0'), '--n must be a positive'),
    ]
    for argv, fragment in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        assert_one_line_error(err, fragment)


def test_unsupported_layer(tmp_path, capsys):
    if 'UnitNormalization' in SUPPORTED_LAYERS:
        pytest.skip('UnitNormalization became supported; pick another unsupported layer')
    inp = keras.Input((4,))
    out = keras.layers.UnitNormalization(name='unit')(keras.layers.Dense(3, name='fc')(inp))
    keras.Model(inp, out).save(tmp_path / 'unsupported.keras')
    code, _, err = run(capsys, 'summary', tmp_path / 'unsupported.keras')
    assert code == 1
    assert_one_line_error(err, "'unit'", 'UnitNormalization', 'not supported')


def test_argparse_errors_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['convert', 'm.keras', '-o', 'd', '--backend', 'quartus'])
    assert exc.value.code == 2
    assert "invalid choice 'quartus'" in capsys.readouterr().err
    assert main([]) == 2
    assert 'convert' in capsys.readouterr().out


def test_entry_point_in_a_subprocess(tmp_path):
    """The command runs as a program: --help without importing Keras, errors without a traceback."""
    env = dict(os.environ, KERAS_BACKEND='torch')
    cmd = [sys.executable, '-m', 'fpga4ml.cli']
    help_ = subprocess.run(cmd + ['profile', '--help'], capture_output=True, text=True, env=env, timeout=60)
    assert help_.returncode == 0 and 'DATA.npy' in help_.stdout
    bad = subprocess.run(cmd + ['summary', str(tmp_path / 'missing.keras')], capture_output=True, text=True,
                         env=env, timeout=60)
    assert bad.returncode == 1
    assert bad.stdout == ''
    assert_one_line_error(bad.stderr, 'missing.keras', 'does not exist')


def test_onnx_model_converts_to_verilog_and_profiles(tmp_path, capsys):
    """An .onnx file goes through the ONNX front end: convert (Verilog), summary and profile."""
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    inits = {'W1': rng.normal(0, 0.5, (6, 8)).astype(np.float32), 'b1': np.zeros(6, np.float32),
             'W2': rng.normal(0, 0.5, (3, 6)).astype(np.float32)}
    nodes = [helper.make_node('Gemm', ['x', 'W1', 'b1'], ['h'], name='fc1', transB=1),
             helper.make_node('Relu', ['h'], ['a'], name='relu1'),
             helper.make_node('Gemm', ['a', 'W2'], ['y'], name='fc2', transB=1)]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 8])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 3])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / 'm.onnx')
    code, out, err = run(capsys, 'convert', tmp_path / 'm.onnx', '-o', tmp_path / 'rtl', '--backend', 'verilog',
                         '--default-precision', 'fixed<10,4>')
    assert code == 0, err
    assert (tmp_path / 'rtl' / 'manifest.json').is_file() and (tmp_path / 'rtl' / 'myproject.v').is_file()
    code, out, err = run(capsys, 'summary', tmp_path / 'm.onnx')
    assert code == 0 and 'fc1' in out, err
    np.save(tmp_path / 'x.npy', rng.normal(size=(50, 8)).astype(np.float32))
    code, out, err = run(capsys, 'profile', tmp_path / 'm.onnx', tmp_path / 'x.npy')
    assert code == 0 and 'float vs fixed' in out, err
