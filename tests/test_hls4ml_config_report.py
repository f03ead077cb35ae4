"""hls4ml's report module, convert_from_config / create_config and saved models (issue 16 items 3, 4, 5)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml import report as hreport  # noqa: E402
from fpga4ml.config import ConfigError, ConfigWarning  # noqa: E402
from fpga4ml.converters import convert_from_config, create_config, load_saved_model  # noqa: E402
from fpga4ml.saved import FORMAT_VERSION, SavedModelError, save_model  # noqa: E402
from test_hls_build import COSIM_RPT, VIVADO_RPT, VIVADO_UTIL_ULTRASCALE, VIVADO_XML  # noqa: E402

PART = 'xcvu9p-flgb2104-2-e'


@pytest.fixture(scope='module')
def kmodel():
    """Dense -> BatchNorm -> relu -> Dense -> tanh (table) -> Dense -> softmax (tables)."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((8,), name='x')
    h = keras.layers.Dense(6, name='fc1')(inp)
    h = keras.layers.BatchNormalization(name='bn')(h)
    h = keras.layers.Activation('relu', name='relu')(h)
    h = keras.layers.Dense(5, activation='tanh', name='fc2')(h)
    out = keras.layers.Dense(3, activation='softmax', name='fc3')(h)
    model = keras.Model(inp, out)
    model.get_layer('bn').set_weights([np.linspace(0.5, 1.5, 6), np.linspace(-0.2, 0.3, 6),
                                       np.linspace(-0.1, 0.1, 6), np.linspace(0.8, 1.2, 6)])
    return model


@pytest.fixture(scope='module')
def x():
    return np.random.default_rng(0).normal(0, 1.5, (300, 8))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


# ============================================================================ create_config
@pytest.mark.parametrize('backend', ['Vivado', 'Vitis'])
def test_create_config_is_hls4mls(backend):
    from hls4ml.utils.config import create_config as hls4ml_create_config

    kwargs = dict(output_dir='out', project_name='prj', backend=backend, part=PART, clock_period=4, io_type='io_stream')
    ours, theirs = create_config(**kwargs), hls4ml_create_config(**kwargs)
    assert ours == theirs  # keys, values and the clock uncertainty default per back end
    assert create_config(backend=backend.lower())['Backend'] == backend
    assert create_config()['Backend'] == 'Vivado' and create_config()['ClockUncertainty'] == '12.5%'


def test_create_config_refuses_unknown_backend():
    with pytest.raises(ConfigError, match="backend must be one of .*'Quartus'"):
        create_config(backend='Quartus')


# ============================================================================ convert_from_config
# ReuseFactor 3 divides every layer's products (8x6, 6x5, 5x3): a Model-level value must be valid for each
HLS_CONFIG = {'Model': {'Precision': 'fixed<14,5>', 'ReuseFactor': 3},
              'LayerName': {'fc3': {'Precision': {'result': 'ufixed<10,0,RND,SAT>'}}}}


def _yaml(path: Path, model_line: str, backend: str = 'Vitis') -> Path:
    path.write_text(f'''{model_line}
OutputDir: {path.parent / 'prj'}
ProjectName: tagger
Backend: {backend}
Part: {PART}
ClockPeriod: 4
IOType: io_parallel
HLSConfig:
  Model:
    Precision: fixed<14,5>
    ReuseFactor: 3
    AllowDAFallback: true
  LayerName:
    fc3:
      Precision:
        result: ufixed<10,0,RND,SAT>
''')
    return path


def test_convert_from_config_yaml_and_dict_match_the_direct_call(kmodel, x, tmp_path):
    keras_file = tmp_path / 'model.keras'
    kmodel.save(keras_file)
    want = fpga4ml.convert_from_keras_model(kmodel, hls_config=HLS_CONFIG, output_dir=str(tmp_path / 'direct'),
                                            project_name='tagger', backend='Vitis', part=PART, clock_period=4)
    for line in (f'KerasModel: {keras_file}', f'KerasModel: !keras_model {keras_file}'):
        model = convert_from_config(str(_yaml(tmp_path / 'config.yml', line)))
        assert (model.backend, model.project_name, model.part, model.clock_period, model.io_type) == \
            ('Vitis', 'tagger', PART, 4.0, 'io_parallel')
        assert model.output_dir == str(tmp_path / 'prj')
        assert str(model.graph['fc3'].result_type) == 'ufixed<10,0,RND,SAT>'
        assert model.graph['fc1'].config['ReuseFactor'] == 3
        assert np.array_equal(model.predict(x), want.predict(x))
    as_dict = {'KerasModel': kmodel, 'OutputDir': str(tmp_path / 'd'), 'ProjectName': 'tagger', 'Backend': 'Vitis',
               'Part': PART, 'ClockPeriod': 4,
               'HLSConfig': {**HLS_CONFIG, 'Model': {**HLS_CONFIG['Model'], 'AllowDAFallback': True}}}
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)  # hls4ml's front-end switches are accepted silently
        assert np.array_equal(convert_from_config(as_dict).predict(x), want.predict(x))
    # hls4ml's defaults where keys are absent: backend Vivado, project 'myproject', clock 5 ns
    bare = convert_from_config({'KerasModel': kmodel})
    assert (bare.backend, bare.project_name, bare.clock_period, bare.output_dir) == \
        ('Vivado', 'myproject', 5.0, 'my-hls-test')


def test_convert_from_config_pytorch_and_onnx(tmp_path):
    torch = pytest.importorskip('torch')
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    xt = np.random.default_rng(1).normal(size=(50, 6))
    want = fpga4ml.convert_from_pytorch_model(module, input_shape=(6,), backend='Vivado').predict(xt)
    got = convert_from_config({'PytorchModel': module, 'InputShape': [None, 6], 'IOType': 'io_parallel'})
    assert np.array_equal(got.predict(xt), want)
    with pytest.raises(ConfigError, match='torch.load.*can run code'):
        convert_from_config({'PytorchModel': 'model.pt', 'InputShape': [6]})
    with pytest.raises(ConfigError, match='needs InputShape'):
        convert_from_config({'PytorchModel': module})
    onnx_models = pytest.importorskip('onnx_models')
    path = onnx_models.save_gemm_model(tmp_path / 'gemm.onnx', 5, 3)
    direct = fpga4ml.convert_from_onnx_model(str(path), backend='Vivado', hls_config=HLS_CONFIG | {'LayerName': {}})
    with pytest.warns(ConfigWarning, match="unknown configuration key 'fc3'"):  # the YAML names a Keras layer
        from_yaml = convert_from_config(str(_yaml(tmp_path / 'onnx.yml', f'OnnxModel: {path}', 'Vivado')))
    xo = np.random.default_rng(2).normal(size=(40, 5))
    assert np.array_equal(from_yaml.predict(xo), direct.predict(xo)) and from_yaml.project_name == 'tagger'


def test_convert_from_config_refusals(kmodel, tmp_path):
    with pytest.raises(ConfigError, match='names no model'):
        convert_from_config({'OutputDir': 'x'})
    with pytest.raises(FileNotFoundError, match='no such configuration file'):
        convert_from_config(str(tmp_path / 'missing.yml'))
    evil = tmp_path / 'evil.yml'
    evil.write_text('KerasModel: !!python/object/apply:os.system ["echo pwned"]\n')
    with pytest.raises(ConfigError, match='evil.yml'):
        convert_from_config(str(evil))
    (tmp_path / 'list.yml').write_text('- KerasModel\n')
    with pytest.raises(ConfigError, match='must be a mapping'):
        convert_from_config(str(tmp_path / 'list.yml'))
    with pytest.warns(ConfigWarning, match="unknown key 'OutputDirectory'.*did you mean 'OutputDir'"):
        convert_from_config({'KerasModel': kmodel, 'OutputDirectory': 'x'})


# ============================================================================ saved models
def _convert(kmodel, tmp_path, backend='Vitis', io_type='io_parallel', name='orig'):
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='fixed<14,5>')
    config['LayerName']['fc3_softmax' if 'fc3_softmax' in config['LayerName'] else 'fc3']['Precision']['result'] = \
        'ufixed<10,0,RND,SAT>'
    return fpga4ml.convert_from_keras_model(kmodel, hls_config=config, output_dir=str(tmp_path / name),
                                            backend=backend, io_type=io_type, part=PART, clock_period=4.5,
                                            clock_uncertainty='12%')


@pytest.mark.parametrize('backend', ['Vitis', 'Verilog'])
def test_saved_model_predicts_and_writes_the_same_bits(kmodel, x, tmp_path, backend):
    model = _convert(kmodel, tmp_path, backend)
    path = model.save(str(tmp_path / 'tagger'))  # hls4ml's hls_model.save(path)
    assert path == tmp_path / 'tagger.fml' and json.loads(path.read_text())['format_version'] == FORMAT_VERSION
    loaded = load_saved_model(path, output_dir=str(tmp_path / 'loaded'))
    assert loaded.output_dir == str(tmp_path / 'loaded')
    assert (loaded.backend, loaded.part, loaded.clock_period, loaded.settings['clock_uncertainty']) == \
        (backend, PART, 4.5, '12%')
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert loaded.config == model.config and loaded.summary() == model.summary()
    for node, again in zip(model.graph, loaded.graph):
        assert again.types == node.types and again.config == node.config
        for key, w in node.weights.items():
            assert again.weights[key].dtype == w.dtype and np.array_equal(again.weights[key], w)
    model.write()
    loaded.write()
    first, second = _files(tmp_path / 'orig'), _files(tmp_path / 'loaded')
    assert len(first) >= 2 and first == second
    # saving the loaded model gives the same file (the format is deterministic and loses nothing)
    reloaded = load_saved_model(path)
    assert reloaded.output_dir == str(tmp_path / 'orig')  # the saved output_dir by default
    assert save_model(reloaded, tmp_path / 'again.json').read_bytes() == path.read_bytes()


def test_saved_stream_cnn_round_trip(tmp_path):
    keras.utils.set_random_seed(5)
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(3, 3, activation='relu')(inp)
    h = keras.layers.MaxPooling2D()(h)
    out = keras.layers.Dense(2, activation='sigmoid')(keras.layers.Flatten()(h))
    cnn = keras.Model(inp, out)
    model = fpga4ml.convert_from_keras_model(cnn, output_dir=str(tmp_path / 'a'), io_type='io_stream')
    loaded = load_saved_model(save_model(model, tmp_path / 'cnn.fml'), output_dir=str(tmp_path / 'b'))
    xs = np.random.default_rng(3).normal(size=(40, 8, 8, 2))
    assert np.array_equal(loaded.predict(xs), model.predict(xs))
    model.write()
    loaded.write()
    assert _files(tmp_path / 'a') == _files(tmp_path / 'b')


def _edit(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _node(data: dict, name: str) -> dict:
    return next(n for n in data['nodes'] if n['name'] == name)


def test_a_changed_weight_in_the_file_changes_the_predictions(kmodel, x, tmp_path):
    model = _convert(kmodel, tmp_path)
    path = save_model(model, tmp_path / 'm.fml')

    def change(data):
        fc1 = _node(data, 'fc1')
        fc1['weights']['kernel']['$array']['data'][0] = 0.75
        del fc1['qweights'], fc1['types']  # derived: recomputed from the edited weight
    assert model.graph['fc1'].qweights['kernel'].ravel()[0] != 0.75 * 2 ** 9
    changed = load_saved_model(_edit(path, change))
    assert not np.array_equal(changed.predict(x), model.predict(x))
    assert changed.graph['fc1'].qweights['kernel'].ravel()[0] == 0.75 * 2 ** 9  # fixed<14,5>: 9 fractional bits
    assert np.array_equal(load_saved_model(save_model(model, tmp_path / 'same.fml')).predict(x), model.predict(x))


def test_corrupted_or_foreign_files_raise(kmodel, tmp_path):
    model = _convert(kmodel, tmp_path)
    good = save_model(model, tmp_path / 'good.fml').read_text()

    def fresh(name: str) -> Path:
        path = tmp_path / name
        path.write_text(good)
        return path

    cases = [
        (lambda d: _node(d, 'fc1')['qweights']['kernel'][0].__setitem__(0, 12345),
         r"nodes\[1\] \('fc1'\)\.qweights\['kernel'\]: differ from weights"),
        (lambda d: _node(d, 'fc2')['types'].__setitem__('result', 'fixed<9,2>'), r"\('fc2'\)\.types: the file says"),
        (lambda d: d.__setitem__('format_version', FORMAT_VERSION + 1), 'format_version 2 is not supported'),
        (lambda d: d.__setitem__('format', 'hls4ml'), "not a saved fpga4ml model \\(format 'hls4ml'"),
        (lambda d: _node(d, 'fc1')['weights']['kernel']['$array'].__setitem__('shape', [9, 9]),
         r"weights\['kernel'\]: array of shape \[9, 9\] needs 81 values"),
        (lambda d: _node(d, 'fc1')['attrs'].__setitem__('bad', {'$code': 'os.system'}),
         r"attrs\['bad'\]: \['\$code'\]"),
        (lambda d: d['settings'].__setitem__('backend', 'Quartus'), r"settings\['backend'\]: 'Quartus'"),
        (lambda d: _node(d, 'fc2').__setitem__('inputs', ['nowhere']), "input 'nowhere' is not defined"),
        (lambda d: _node(d, 'fc1')['config'].__setitem__('ReuseFactor', 0), 'ReuseFactor must be a positive integer'),
        (lambda d: d.__setitem__('extra', 1), r"unknown keys \['extra'\]"),
    ]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(SavedModelError, match=message):
            load_saved_model(_edit(fresh(f'c{i}.fml'), change))
    truncated = fresh('cut.fml')
    truncated.write_text(good[:len(good) // 2])
    with pytest.raises(SavedModelError, match='not UTF-8 JSON'):
        load_saved_model(truncated)
    with pytest.raises(FileNotFoundError):
        load_saved_model(tmp_path / 'none.fml')


# ============================================================================ reports
CSIM_LOG = 'INFO: [SIM 2] *************** CSIM start ***************\nPredictions match\nINFO: CSIM done\n'
SYNTH_TAIL = '\n+ Detail:\n    * DSP48E: \n    N/A\n    * Instance details: grp_dense_fu_128\n'


def _hls_project(kmodel, tmp_path) -> Path:
    """A written Vitis project with a Vivado HLS solution's reports in it (no vendor tool here)."""
    model = fpga4ml.convert_from_keras_model(kmodel, output_dir=str(tmp_path / 'prj'), project_name='myproject',
                                             backend='Vitis', part=PART)
    root = Path(model.write())
    solution = root / 'myproject_prj' / 'solution1'
    for rel, text in (('syn/report/myproject_csynth.xml', VIVADO_XML), ('syn/report/myproject_csynth.rpt',
                                                                         VIVADO_RPT + SYNTH_TAIL),
                      ('sim/report/myproject_cosim.rpt', COSIM_RPT), ('csim/report/myproject_csim.log', CSIM_LOG)):
        (solution / rel).parent.mkdir(parents=True, exist_ok=True)
        (solution / rel).write_text(text)
    (root / 'vivado_synth.rpt').write_text(VIVADO_UTIL_ULTRASCALE)
    (root / 'tb_data' / 'csim_results.log').write_text('0.25 0.5 0.25\n0.125 0.75 0.125\n')
    return root


def test_read_vivado_report_prints_hls4mls_sections(kmodel, tmp_path, capsys):
    root = _hls_project(kmodel, tmp_path)
    hreport.read_vivado_report(str(root))
    out = capsys.readouterr().out
    assert f'Found 1 solution(s) in {root / "myproject_prj"}.' in out and 'Reports for solution "solution1":' in out
    order = [out.index(s) for s in ('C SIMULATION RESULT:', 'Predictions match', 'SYNTHESIS REPORT:',
                                    "== Vivado HLS Report for 'myproject'", '|Total            |        0|     17|',
                                    'CO-SIMULATION RESULT:')]
    assert order == sorted(order)
    assert 'Instance details' not in out  # stops at '* DSP48' unless full_report
    hreport.read_vivado_report(str(root), full_report=True)
    assert 'Instance details: grp_dense_fu_128' in capsys.readouterr().out


def test_read_vivado_report_before_a_build(kmodel, tmp_path, capsys):
    model = fpga4ml.convert_from_keras_model(kmodel, output_dir=str(tmp_path / 'p'), backend='Vivado')
    model.write()
    hreport.read_vivado_report(model.output_dir)
    assert 'Project myproject_prj does not exist. Run hls_model.build()' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match='does not exist'):
        hreport.read_vivado_report(str(tmp_path / 'nowhere'))


def test_parse_and_print_vivado_report(kmodel, tmp_path, capsys):
    rep = hreport.parse_vivado_report(str(_hls_project(kmodel, tmp_path)))
    c = rep['CSynthesisReport']
    assert (c['BestLatency'], c['WorstLatency'], c['LUT'], c['DSP'], c['AvailableDSP'], c['TargetClockPeriod']) == \
        (9, 9, 3121, 17, 6840, 5.0)
    assert rep['CosimReport']['Status'] == 'Pass' and rep['VivadoSynthReport']['DSP48E'] == 17
    assert rep['CSimResults'] == [['0.25', '0.5', '0.25'], ['0.125', '0.75', '0.125']]
    assert 'not found' not in capsys.readouterr().out
    hreport.print_vivado_report(rep)
    out = capsys.readouterr().out
    assert '== C Synthesis report' in out and 'Best-case latency:      9 (45.0 ns)' in out
    assert 'DSP:      17 / 6840 (0.2%)' in out and '== Co-Simulation report' in out and 'Status:' in out
    empty = tmp_path / 'empty'
    (empty / 'e_prj').mkdir(parents=True)
    rep = hreport.parse_vivado_report(str(empty))
    assert 'CSynthesisReport' not in rep and 'CSynthesis report not found.' in capsys.readouterr().out


def test_report_of_a_verilog_project(kmodel, tmp_path, capsys):
    model = fpga4ml.convert_from_keras_model(kmodel, output_dir=str(tmp_path / 'v'), backend='Verilog',
                                             project_name='vtop', clock_period=4)
    model.write()
    estimate = model.estimate()
    hreport.read_vivado_report(model)
    out = capsys.readouterr().out
    latency = estimate['latency_cycles']
    assert f"VERILOG PROJECT 'vtop'" in out and f'Latency:      {latency} cycles ({latency * 4:g} ns at 4 ns)' in out
    assert 'Yosys synthesis report not found' in out and f"LUT:                  {estimate['LUT']}" in out
    yosys = {'family': 'xcup', 'script': 'fast', 'yosys_version': 'Yosys 0.70', 'LUT': 321, 'FF': 45, 'DSP': 0,
             'BRAM': 0, 'logic_levels': 7, 'fmax_mhz_estimate': 412.5, 'estimate': estimate}
    (tmp_path / 'v' / 'synth_report.json').write_text(json.dumps(yosys))
    hreport.read_vivado_report(str(tmp_path / 'v'))
    out = capsys.readouterr().out
    assert 'YOSYS SYNTHESIS REPORT (Yosys 0.70, family xcup, script fast):' in out
    assert 'LUT:                  321' in out
    parsed = hreport.parse_vivado_report(str(tmp_path / 'v'))
    assert parsed['YosysReport']['LUT'] == 321 and parsed['manifest']['latency'] == latency
