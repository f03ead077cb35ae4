"""Bad input files give one line, `fpga4ml: error: ...`, naming the file and what is wrong; never a traceback."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from fpga4ml.cli import main
from onnx_models import save_gemm_model

NPY_DENSE = {'descr': '<f8', 'fortran_order': False, 'shape': (10**6, 10**6)}  # 7.3 TiB of float64


def npy_bytes(header: dict, data: bytes = b'\0' * 64) -> bytes:
    """An .npy file: a version 1.0 header saying `header`, followed by `data`."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data


def write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.fixture(scope='module')
def onnx_file(tmp_path_factory):
    """A valid 8 -> 3 Dense ONNX model (the model for the data-file cases)."""
    return save_gemm_model(tmp_path_factory.mktemp('cli_errors') / 'model.onnx', 8, 3)


def run_error(capsys, *argv) -> str:
    """main(argv) must exit 1 with exactly one `fpga4ml: error:` line on stderr; returns that line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith('fpga4ml: error: '), (code, err)
    return lines[0]


def bad_model(tmp_path, kind: str):
    """(path, expected fragment) of a bad model file of the given kind."""
    files = {
        'corrupt.onnx': (b'\x08\x07 not a protobuf ' * 40, 'is not a readable ONNX model'),
        'empty.onnx': (b'', 'is empty'),
        'nograph.onnx': (b'\x08\x07', 'holds no ONNX graph'),  # a valid ModelProto with ir_version 7 only
        'corrupt.keras': (b'PK\x03\x04 truncated zip', 'is not a .keras archive (a zip file)'),
        'empty.keras': (b'', 'is empty'),
        'corrupt.h5': (b'not hdf5 at all', "cannot load Keras model file"),
        'model.txt': (b'hello', "has the extension '.txt': expected a .keras or .h5 file"),
        'model': (b'hello', "has the extension '(none)'"),
    }
    if kind == 'directory.keras':
        (tmp_path / kind).mkdir()
        return tmp_path / kind, 'is a directory, not a file'
    if kind == 'noconfig.keras':
        write_zip(tmp_path / kind, {'hello.txt': b'x'})
        return tmp_path / kind, "cannot load Keras model file"
    data, fragment = files[kind]
    (tmp_path / kind).write_bytes(data)
    return tmp_path / kind, fragment


@pytest.mark.parametrize('kind', ['corrupt.onnx', 'empty.onnx', 'nograph.onnx', 'corrupt.keras', 'empty.keras',
                                  'corrupt.h5', 'model.txt', 'model', 'directory.keras', 'noconfig.keras'])
def test_bad_model_files(kind, tmp_path, capsys):
    if kind.endswith(('.keras', '.h5')) and kind not in ('empty.keras', 'directory.keras', 'corrupt.keras'):
        pytest.importorskip('keras')
    if kind.endswith('.onnx') and kind != 'empty.onnx':
        pytest.importorskip('onnx')
    path, fragment = bad_model(tmp_path, kind)
    line = run_error(capsys, 'summary', path)
    assert repr(str(path)) in line and fragment in line


def test_truncated_keras_file_is_named(tmp_path, capsys):
    """A real .keras file cut in half (a broken download): 'not a .keras archive', not 'File not found'."""
    keras = pytest.importorskip('keras')
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(tmp_path / 'whole.keras')
    data = (tmp_path / 'whole.keras').read_bytes()
    (tmp_path / 'half.keras').write_bytes(data[:len(data) // 2])
    line = run_error(capsys, 'summary', tmp_path / 'half.keras')
    assert 'half.keras' in line and 'not a .keras archive' in line and 'File not found' not in line


def bad_data(tmp_path, kind: str):
    """(path, expected fragment) of a bad data file of the given kind."""
    path = tmp_path / kind
    if kind == 'terabytes.npy':
        path.write_bytes(npy_bytes(NPY_DENSE))
        return path, 'its header claims shape (1000000, 1000000) of float64 (7.3 TiB) but the file holds 64 bytes'
    if kind == 'truncated.npy':
        path.write_bytes(npy_bytes({'descr': '<f4', 'fortran_order': False, 'shape': (100, 8)}, b'\0' * 100))
        return path, 'truncated or corrupt'
    if kind == 'badheader.npy':
        path.write_bytes(b'\x93NUMPY\x01\x00\x10\x00{garbage header}')
        return path, 'its header is corrupt'
    if kind == 'pickled.npy':
        np.save(path, np.array([{'a': 1}, 2], dtype=object), allow_pickle=True)
        return path, 'object arrays are refused: reading them would unpickle'
    if kind == 'strings.npy':
        np.save(path, np.array(['a', 'b']))
        return path, 'expected real numbers'
    if kind == 'terabytes.npz':
        write_zip(path, {'x.npy': npy_bytes(NPY_DENSE)})
        return path, "(member 'x.npy'): its header claims shape (1000000, 1000000)"
    if kind == 'two.npz':
        np.savez(path, a=np.zeros(3), b=np.ones(3))
        return path, "holds 2 members ['a.npy', 'b.npy']"
    if kind == 'corrupt.npz':
        path.write_bytes(b'PK\x03\x04 not really a zip')
        return path, 'is not a readable .npz archive'
    if kind == 'empty.npy':
        path.write_bytes(b'')
        return path, 'is empty'
    path.mkdir()
    return path, 'is a directory, not a file'


@pytest.mark.parametrize('kind', ['terabytes.npy', 'truncated.npy', 'badheader.npy', 'pickled.npy', 'strings.npy',
                                  'terabytes.npz', 'two.npz', 'corrupt.npz', 'empty.npy', 'directory.npy'])
def test_bad_data_files(kind, onnx_file, tmp_path, capsys):
    path, fragment = bad_data(tmp_path, kind)
    line = run_error(capsys, 'profile', onnx_file, path)
    assert repr(str(path)) in line and fragment in line


def test_good_npz_and_npy_still_profile(onnx_file, tmp_path, capsys):
    """Control: well-formed data files pass the header checks."""
    x = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    np.save(tmp_path / 'x.npy', x)
    np.savez_compressed(tmp_path / 'x.npz', x=x)
    for path in (tmp_path / 'x.npy', tmp_path / 'x.npz'):
        assert main(['profile', str(onnx_file), str(path), '--n', '5']) == 0
        assert 'float vs fixed on 5 samples' in capsys.readouterr().out


GOOD_MANIFEST = {'top': 'myproject', 'files': ['myproject.v'], 'latency': 3, 'clock_period_ns': 5.0}


@pytest.mark.parametrize('text, fragment', [
    ('{"top": ', 'is not valid JSON'),
    ('[1, 2]', 'must hold a JSON object with top, files and latency; got a list'),
    ('{}', "lacks the keys ['top', 'files', 'latency']"),
    (dict(GOOD_MANIFEST, files=3), "'files' must be a non-empty list of file names, got 3"),
    (dict(GOOD_MANIFEST, files=['../outside.v']), "file '../outside.v' is outside the project directory"),
    (dict(GOOD_MANIFEST, files=['/etc/hostname']), "file '/etc/hostname' is outside the project directory"),
    (dict(GOOD_MANIFEST, files=['missing.v']), "file 'missing.v' does not exist"),
    (dict(GOOD_MANIFEST, top='my top; yosys -import'), "'top' must be a module name"),
    (dict(GOOD_MANIFEST, latency=-1), "'latency' must be a whole number of cycles >= 0, got -1"),
    (dict(GOOD_MANIFEST, latency='3'), "'latency' must be a whole number"),
    ('{"top": "myproject", "files": ["myproject.v"], "latency": 1, "clock_period_ns": NaN}',
     "'clock_period_ns' must be a finite positive number, got nan"),
    (dict(GOOD_MANIFEST, clock_period_ns=0), "'clock_period_ns' must be a finite positive number, got 0"),
    (b'\xff\xfe binary', 'is not UTF-8 text'),
    (dict(GOOD_MANIFEST, files=['my;project.v']), "file must be a relative path inside the design directory"),
])
def test_bad_synth_manifests(text, fragment, tmp_path, capsys):
    project = tmp_path / 'prj'
    project.mkdir()
    (project / 'myproject.v').write_text('module myproject(); endmodule\n')
    (project / 'my;project.v').write_text('module myproject(); endmodule\n')
    (tmp_path / 'outside.v').write_text('module outside(); endmodule\n')
    manifest = project / 'manifest.json'
    if isinstance(text, bytes):
        manifest.write_bytes(text)
    else:
        manifest.write_text(text if isinstance(text, str) else json.dumps(text))
    line = run_error(capsys, 'synth', project)
    assert str(manifest) in line and fragment in line


def test_synth_of_a_file_instead_of_a_directory(tmp_path, capsys):
    (tmp_path / 'myproject.v').write_text('module myproject(); endmodule\n')
    line = run_error(capsys, 'synth', tmp_path / 'myproject.v')
    assert 'myproject.v' in line and 'is not a directory' in line


@pytest.mark.parametrize('name, content, fragment', [
    ('deep.json', '[' * 100000 + ']' * 100000, 'nested too deeply'),
    ('deep500.json', '{"a": ' * 500 + '1' + '}' * 500, "['a']['a']: nested more than 32 levels deep"),
    ('bad.json', '{"Model": ', 'is not valid JSON'),
    ('binary.yml', b'\x00\xff\xfe', 'is not UTF-8 text'),
    ('cfg.yml', None, 'is a directory, not a file'),
])
def test_bad_config_files(name, content, fragment, onnx_file, tmp_path, capsys):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    line = run_error(capsys, 'summary', onnx_file, '--config', path)
    assert repr(str(path)) in line and fragment in line


def test_empty_config_file_means_defaults(onnx_file, tmp_path, capsys):
    (tmp_path / 'empty.yml').write_text('')
    assert main(['summary', str(onnx_file), '--config', str(tmp_path / 'empty.yml')]) == 0
    assert 'fc' in capsys.readouterr().out


def test_synth_of_a_top_without_logic_is_one_line(tmp_path, capsys):
    pytest.importorskip('pyosys')
    project = tmp_path / 'prj'
    project.mkdir()
    (project / 'no_logic.v').write_text('module no_logic(input wire [7:0] a, output wire [7:0] y);\n'
                                        "  assign y = 8'd5;\nendmodule\n")
    (project / 'manifest.json').write_text(json.dumps({'top': 'no_logic', 'files': ['no_logic.v'], 'latency': 0}))
    code = main(['synth', str(project)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('fpga4ml: error: ')]
    assert code == 1 and 'Traceback' not in err and len(errors) == 1, err  # above it: Yosys' progress lines
    assert "top module 'no_logic'" in errors[0] and 'has no logic' in errors[0]
