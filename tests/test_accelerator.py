"""The VivadoAccelerator flow: settings, project files, the wrapper's C simulation, the PYNQ driver, build().

The wrapper's C simulation (g++ with the ap_types headers, as the HLS C simulation) must equal
`wrapper.reference` (the emulator with the wrapper's float / fixed conversions) exactly; a negative
control changes one weight (and one expected bit) and must make the comparison fail. build() runs
against fake vivado_hls / vivado scripts on PATH, as tests/test_hls_build.py does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends import Backend, get_backend
from fpga4ml.backends.accelerator import BOARDS, accelerator_settings, driver, settings_of, wrapper
from fpga4ml.config import ConfigError, ConfigWarning
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node
from fpga4ml.model_errors import BackendUnavailableError

pytestmark = pytest.mark.filterwarnings('ignore:predict. the inputs hold NaN', 'ignore:build... the tool succeeded')

HAVE_CSIM = shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None
needs_csim = pytest.mark.skipif(not HAVE_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')


def dense_model(tmp_path, io_type='io_parallel', name='acc', change=None, **kwargs):
    """A Dense -> ReLU -> Dense model (4 inputs on a 2x2 grid for io_stream) on the VivadoAccelerator back end."""
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(0, 0.6, (4, 5)).astype(np.float32), rng.normal(0, 0.6, (5, 3)).astype(np.float32)
    if change is not None:
        w2[change] += 0.25
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('fc1', 'Dense', ['x'], (5,), weights={'kernel': w1, 'bias': rng.normal(0, 0.2, 5).astype(np.float32)},
               source='Dense'))
    g.add(Node('relu', 'Activation', ['fc1'], (5,), attrs={'function': 'relu'}, source='Activation'))
    g.add(Node('fc2', 'Dense', ['relu'], (3,), weights={'kernel': w2, 'bias': np.zeros(3, np.float32)},
               source='Dense'))
    g.inputs, g.outputs = ['x'], ['fc2']
    config = {'Model': {'Precision': 'fixed<12,4,RND,SAT>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}
    return convert_graph(g, config, output_dir=str(tmp_path / name), project_name=name, backend='VivadoAccelerator',
                         io_type=io_type, **kwargs)


def inputs(n=2000, seed=0) -> np.ndarray:
    """In range, far out of range (wraps/saturates in the input type), values between grid points, NaN."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-8, 8, (n // 2, 4)), rng.uniform(-40, 40, (n - n // 2, 4))])
    x[0, 0], x[1, 1] = np.nan, 7.99999
    return x


# ------------------------------------------------------------------ settings and configuration
def test_convert_takes_board_and_uses_its_part(tmp_path):
    model = dense_model(tmp_path, board='zcu102', interface='axi_stream', input_type='ap_fixed<12,4>')
    acc = settings_of(model)
    assert model.backend == 'VivadoAccelerator' and model.part == 'xczu9eg-ffvb1156-2-e' == BOARDS['zcu102'].part
    assert acc.board == 'zcu102' and acc.input_type.to_cpp() == 'ap_fixed<16,4>'  # width to a multiple of 8
    assert acc.output_type == 'float' and acc.bitwidths() == (16, 32)
    with pytest.warns(ConfigWarning, match="part='xcvu9p-flga2104-2-e' does not belong to board 'pynq-z2'"):
        model = dense_model(tmp_path, board='pynq-z2', part='xcvu9p-flga2104-2-e')
    assert model.part == 'xc7z020clg400-1'


@pytest.mark.parametrize('kwargs, message', [
    ({'board': 'pynq-z3'}, "board='pynq-z3' is not supported; accepted: ['pynq-z2', 'zcu102', 'alveo-u50'"),
    ({'interface': 'axi_full'}, "interface='axi_full' is not supported; accepted: ['axi_stream', 'axi_master', "
                                "'axi_lite']"),
    ({'board': 'zcu102', 'interface': 'axi_lite'}, "interface='axi_lite' has no block design for board 'zcu102'"),
    ({'driver': 'c'}, "driver='c' is not supported; accepted: ['python']"),
    ({'input_type': 'half'}, "input_type='half': use one of ['float', 'double'] or a fixed-point precision"),
])
def test_bad_accelerator_settings_name_value_and_choices(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as info:
        dense_model(tmp_path, **kwargs)
    assert message in str(info.value)


def test_create_initial_config_as_hls4ml():
    backend = get_backend('VivadoAccelerator')
    assert isinstance(backend, Backend) and backend.name == 'VivadoAccelerator'
    config = backend.create_initial_config()
    assert config == {
        'Part': 'xc7z020clg400-1', 'ClockPeriod': 5, 'ClockUncertainty': '12.5%', 'IOType': 'io_parallel',
        'HLSConfig': {}, 'WriterConfig': {'Namespace': None, 'WriteWeightsTxt': True, 'WriteTar': False,
                                          'TBOutputStream': 'both'},
        'AcceleratorConfig': {'Board': 'pynq-z2', 'Interface': 'axi_stream', 'Driver': 'python',
                              'Precision': {'Input': 'float', 'Output': 'float'}}}
    alveo = backend.create_initial_config(board='alveo-u50', clock_period=4, io_type='io_stream',
                                          output_type='ap_fixed<16,6>')
    assert alveo['AcceleratorConfig']['Platform'] == 'xilinx_u250_xdma_201830_2'
    assert (alveo['Part'], alveo['ClockPeriod'], alveo['IOType']) == ('xcu50-fsvh2104-2-e', 4, 'io_stream')
    assert alveo['AcceleratorConfig']['Precision'] == {'Input': 'float', 'Output': 'ap_fixed<16,6>'}
    with pytest.raises(ConfigError, match="board='kv260' is not supported"):
        backend.create_initial_config(board='kv260')


def test_get_backend_keeps_module_use_and_offers_initial_config():
    from fpga4ml.backends import hls, verilog

    vivado = get_backend('Vivado')
    assert vivado.write is hls.write and vivado.compile_csim is hls.compile_csim and vivado.build is hls.build
    assert get_backend('Verilog').compile_rtl is verilog.compile_rtl
    assert get_backend('vivadoaccelerator').name == 'VivadoAccelerator'  # hls4ml's names are case-insensitive
    config = vivado.create_initial_config(part='xcku115-flvb2104-2-i', clock_period=10)
    assert (config['Part'], config['ClockPeriod'], config['ClockUncertainty']) == ('xcku115-flvb2104-2-i', 10, '12.5%')
    assert get_backend('Vitis').create_initial_config()['ClockUncertainty'] == '27%'
    assert 'AcceleratorConfig' not in config and 'Backend' not in config
    with pytest.raises(BackendUnavailableError, match="unknown back end 'Quartus'; available: "):
        get_backend('Quartus')


# ------------------------------------------------------------------ project files
def test_project_files(tmp_path):
    model = dense_model(tmp_path, board='pynq-z2', output_type='ap_fixed<16,6>')
    root = model.write()
    for rel in ('firmware/acc.cpp', 'firmware/acc_axi.h', 'firmware/acc_axi.cpp', 'acc_axi_bridge.cpp',
                'tb/acc_test.cpp', 'tb_data/tb_axi_predictions.dat', 'project.tcl', 'design.tcl',
                'axi_stream_driver.py', 'build_prj_vivado.tcl'):
        assert (root / rel).is_file(), rel
    hls = (root / 'build_prj_vivado.tcl').read_text()
    assert 'set_top ${project_name}_axi\n' in hls and 'add_files firmware/${project_name}_axi.cpp' in hls
    assert '-top ${project_name}_axi ' in (root / 'vivado_synth.tcl').read_text()
    # the Vivado HLS pragmas of the HLS back end (the project is a Vivado HLS one)
    assert '#pragma HLS INTERFACE axis port=in' in (root / 'firmware/acc_axi.cpp').read_text()
    assert 'typedef ap_fixed<16,6> T_out;' in (root / 'firmware/acc_axi.h').read_text()
    settings = (root / 'project.tcl').read_text()
    assert 'set bit_width_hls_input 32\n' in settings and 'set bit_width_hls_output 16\n' in settings
    design = (root / 'design.tcl').read_text()
    assert 'processing_system7:5.5' in design and 'tul.com.tw:pynq-z2:part0:1.0' in design
    assert 'group_bd_cells hier_0 [get_bd_cells axi_dma_0]' in design and '${project_name}_axi_0/in_r' in design
    assert 'bd_rule:clkrst' in design  # the streams do not clock the IP; the AXI-Lite automation does
    zcu = dense_model(tmp_path, board='zcu102', interface='axi_master', name='zcu')
    files = zcu.write()
    design = (files / 'design.tcl').read_text()
    assert 'zynq_ultra_ps_e:3.3' in design and 'm_axi_IN_BUS' in design and 'axi_dma' not in design and 'bd_rule:clkrst' not in design
    assert not (files / 'axi_stream_driver.py').exists()  # the PYNQ driver is for the DMA (axi_stream) design
    assert '#pragma HLS INTERFACE m_axi depth=4 port=in offset=slave bundle=IN_BUS' in \
        (files / 'firmware/zcu_axi.cpp').read_text()


def test_alveo_project_files(tmp_path):
    model = dense_model(tmp_path, board='alveo-u250', platform='xilinx_u250_gen3x16_xdma_4_1_202210_1')
    root = model.write()
    assert model.part == 'xcu250-figd2104-2L-e' and not (root / 'design.tcl').exists()
    script = (root / 'build_xclbin.sh').read_text()
    assert 'PLATFORM="${PLATFORM:-xilinx_u250_gen3x16_xdma_4_1_202210_1}"' in script
    assert 'v++ -c -t hw --platform "$PLATFORM" -k "$KERNEL" --hls.clock 200000000:"$KERNEL"' in script
    assert 'firmware/acc.cpp firmware/acc_axi.cpp firmware/acc_kernel.cpp -o xo_files/"$KERNEL".xo' in script
    kernel = (root / 'firmware/acc_kernel.cpp').read_text()
    assert 'extern "C" void acc_kernel(const T_in *fifo_in, T_out *fifo_out, unsigned length_r_in, ' \
        'unsigned length_r_out)' in kernel and '#pragma HLS INTERFACE m_axi port=fifo_in' in kernel
    hls = (root / 'build_prj.tcl').read_text()
    assert 'set_top ${project_name}_kernel\n' in hls and 'add_files firmware/${project_name}_kernel.cpp' in hls
    assert 'DATA_PACK' not in (root / 'firmware/acc.cpp').read_text()  # written for Vitis HLS (v++)
    assert 'self.acc_kernel_1.call(' in (root / 'axi_stream_driver.py').read_text()
    with pytest.raises(ConfigError, match="platform='u250; rm -rf /': an Alveo platform name"):
        dense_model(tmp_path, board='alveo-u250', platform='u250; rm -rf /')


def test_several_outputs_raise(tmp_path):
    model = dense_model(tmp_path)
    model.graph.outputs = ['fc2', 'relu']
    with pytest.raises(ConfigError, match="one input and one output .* outputs \\['fc2', 'relu'\\]"):
        model.write()


# ------------------------------------------------------------------ C simulation through the wrapper
CSIM_CASES = [  # io_type, interface, input_type, output_type, board
    ('io_parallel', 'axi_stream', 'float', 'float', 'pynq-z2'),
    ('io_stream', 'axi_stream', 'ap_fixed<12,4>', 'ap_fixed<10,3,RND,SAT>', 'zcu102'),
    ('io_parallel', 'axi_master', 'double', 'ap_fixed<8,2>', 'pynq-z2'),
    ('io_parallel', 'axi_stream', 'float', 'ap_fixed<16,6>', 'alveo-u50'),  # the kernel on the whole batch
]


@needs_csim
@pytest.mark.parametrize('io_type, interface, input_type, output_type, board', CSIM_CASES)
def test_wrapper_csim_is_bit_identical(tmp_path, io_type, interface, input_type, output_type, board):
    model = dense_model(tmp_path, io_type, interface=interface, input_type=input_type, output_type=output_type,
                        board=board)
    x = inputs()
    got = model.predict(x, sim='csim')  # compiled on demand through the wrapper (TLAST checked per sample)
    want = wrapper.reference(model, settings_of(model), x)
    assert got.shape == want.shape == (len(x), 3)
    np.testing.assert_array_equal(got, want)
    if output_type != 'float':  # the wrapper type really converts: its grid, and its overflow
        t = settings_of(model).output_type
        assert np.all(got * 2 ** t.frac == np.round(got * 2 ** t.frac)) and got.max() <= t.max_value
    flipped = want.copy()
    flipped[7, 1] += settings_of(model).output_type.lsb if output_type != 'float' else 2 ** -10
    assert not np.array_equal(got, flipped)  # negative control: one bit of the expected outputs


@needs_csim
def test_wrapper_csim_negative_control_one_weight(tmp_path):
    model = dense_model(tmp_path, name='good')
    changed = dense_model(tmp_path, name='bad', change=(2, 1))
    x = inputs(500)
    want = wrapper.reference(model, settings_of(model), x)
    np.testing.assert_array_equal(model.predict(x, sim='csim'), want)
    assert not np.array_equal(changed.predict(x, sim='csim'), want)


@needs_csim
@pytest.mark.slow
def test_vendor_testbench_through_the_wrapper(tmp_path):
    """tb/<project>_test.cpp, as vivado_hls's csim_design compiles it, passes on the written project."""
    from fpga4ml.backends.hls import find_ap_types

    model = dense_model(tmp_path, 'io_stream', output_type='ap_fixed<16,6>')
    root = model.write()
    exe = tmp_path / 'tb'
    cmd = ['g++', '-O1', '-std=c++14', '-w', f'-I{root}', f'-I{root / "firmware"}', f'-I{find_ap_types()}',
           'tb/acc_test.cpp', 'firmware/acc.cpp', 'firmware/acc_axi.cpp', '-o', str(exe)]
    subprocess.run(cmd, cwd=root, check=True)
    run = subprocess.run([str(exe)], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0 and 'outputs identical to fpga4ml' in run.stdout, run.stdout
    expected = root / 'tb_data/tb_axi_predictions.dat'
    lines = expected.read_text().splitlines()
    lines[3] = ' '.join(['1000'] + lines[3].split()[1:])
    expected.write_text('\n'.join(lines) + '\n')
    run = subprocess.run([str(exe)], cwd=root, capture_output=True, text=True)
    assert run.returncode == 1 and 'outputs DIFFER' in run.stdout


@needs_csim
@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_same_as_hls4ml_vivado_accelerator(tmp_path, capsys):
    """hls4ml 1.3.0's own VivadoAccelerator C simulation (through its wrapper, float words) gives the same bits.

    (hls4ml 1.3.0 cannot compile fixed-point AXI words: it writes `typedef fixed<16,4> T_in;`.)
    """
    keras = pytest.importorskip('keras')
    import hls4ml

    import fpga4ml

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name='fc1'),
                              keras.layers.Activation('relu', name='relu'), keras.layers.Dense(3, name='fc2')])
    for layer in model.layers:  # weights on the fixed<16,6> grid: hls4ml's decimal weight text is exact
        if layer.get_weights():
            layer.set_weights([np.round(rng.normal(0, 0.5, w.shape) * 64) / 64 for w in layer.get_weights()])
    x = rng.uniform(-40, 40, (1000, 6)).astype(np.float32)
    theirs = hls4ml.converters.convert_from_keras_model(
        model, hls_config=hls4ml.utils.config_from_keras_model(model, default_precision='fixed<16,6>'),
        output_dir=str(tmp_path / 'hls4ml'), backend='VivadoAccelerator', board='pynq-z2')
    theirs.compile()
    want = np.asarray(theirs.predict(x), dtype=np.float64)
    config = fpga4ml.utils.config_from_keras_model(model, default_precision='fixed<16,6>')
    ours = fpga4ml.converters.convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / 'ours'),
                                                       backend='VivadoAccelerator', board='pynq-z2')
    np.testing.assert_array_equal(ours.predict(x, sim='csim'), want)
    changed = fpga4ml.converters.convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / 'bad'),
                                                          backend='VivadoAccelerator', board='pynq-z2')
    changed.graph['fc2'].qweights['kernel'][0, 0] += 1  # negative control: one quantized weight, one LSB
    assert not np.array_equal(changed.predict(x), want)


# ------------------------------------------------------------------ the PYNQ driver
class _FakeChannel:
    def __init__(self, dma, send: bool):
        self.dma, self.send = dma, send

    def transfer(self, buffer):
        if self.send:
            self.dma.sent = np.array(buffer)
        else:
            self.dma.received = buffer

    def wait(self):
        if not self.send:
            self.dma.run()


def fake_pynq(accelerator):
    """A stand-in for the pynq package whose DMA runs `accelerator(words) -> words`."""
    pynq = types.ModuleType('pynq')

    class Overlay:
        def __init__(self, bitfile_name, **kwargs):
            dma = types.SimpleNamespace(sent=None, received=None)
            dma.run = lambda: dma.received.__setitem__(slice(None), accelerator(dma.sent))
            dma.sendchannel, dma.recvchannel = _FakeChannel(dma, True), _FakeChannel(dma, False)
            self.bitfile_name, self.hier_0 = bitfile_name, types.SimpleNamespace(axi_dma_0=dma)

    pynq.Overlay = Overlay
    pynq.allocate = lambda shape, dtype: np.zeros(shape, dtype)
    return pynq


@needs_csim
def test_pynq_driver_round_trip(tmp_path, monkeypatch, capsys):
    model = dense_model(tmp_path, input_type='ap_fixed<12,4>', output_type='ap_fixed<16,6,RND,SAT>')
    acc = settings_of(model)
    sim = get_backend('VivadoAccelerator').compile_csim(model)
    t_in, t_out = acc.input_type, acc.output_type

    def accelerator(words):  # the device: integer words in, integer words out
        assert words.dtype == np.int16
        y = sim.predict(words * 2.0 ** -t_in.frac)[0]
        return np.round(y * 2 ** t_out.frac).astype(np.int16)

    monkeypatch.setitem(sys.modules, 'pynq', fake_pynq(accelerator))
    spec = importlib.util.spec_from_file_location('acc_driver', Path(model.write()) / driver.DRIVER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = inputs(200)
    x[0, 0] = 0.0  # the driver's encoding takes real numbers (NaN -> 0 as well)
    nn = module.NeuralNetworkOverlay('acc.bit', x.shape, (len(x), 3))
    y, seconds, rate = nn.predict(x, profile=True)
    np.testing.assert_array_equal(y, wrapper.reference(model, acc, x))
    assert seconds > 0 and rate > 0 and 'Classified 200 samples' in capsys.readouterr().out
    assert not np.array_equal(nn.predict(x + t_in.lsb), y)  # negative control: the inputs one LSB up


class _DeviceBuffer(np.ndarray):
    """pynq's buffer on an Alveo card: an array with sync and flush calls (recorded)."""

    def sync_to_device(self):
        self.synced = 'to'

    def sync_from_device(self):
        self.synced = 'from'


@needs_csim
def test_alveo_driver_calls_the_kernel(tmp_path, monkeypatch):
    model = dense_model(tmp_path, board='alveo-u50', output_type='ap_fixed<16,6>')
    sim = get_backend('VivadoAccelerator').compile_csim(model)
    calls = []

    def kernel_call(fifo_in, fifo_out, length_in, length_out):  # the card: float words in, int16 words out
        assert fifo_in.synced == 'to' and fifo_in.dtype == np.float32 and fifo_out.dtype == np.int16
        calls.append((length_in, length_out))
        fifo_out[:] = np.round(sim.predict(np.asarray(fifo_in, np.float64))[0] * 2 ** 10)

    pynq = types.ModuleType('pynq')

    class Overlay:
        def __init__(self, xclbin_name, **kwargs):
            self.acc_kernel_1 = types.SimpleNamespace(call=kernel_call)

    pynq.Overlay = Overlay
    pynq.allocate = lambda shape, dtype, target=None: np.zeros(shape, dtype).view(_DeviceBuffer)
    monkeypatch.setitem(sys.modules, 'pynq', pynq)
    spec = importlib.util.spec_from_file_location('alveo_driver', Path(model.write()) / driver.DRIVER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = inputs(100)
    x[0, 0] = 0.0
    y = module.NeuralNetworkOverlay('acc.xclbin').predict(x, (len(x), 3))
    assert calls == [(400, 300)]  # hls4ml's kernel arguments: total input and output words
    np.testing.assert_array_equal(y, wrapper.reference(model, settings_of(model), x))


# ------------------------------------------------------------------ build with fake tools
FAKE_HLS = '''#!{python}
import json, os, sys
steps = os.environ.get('FPGA4ML_STEPS', '').split()
json.dump({{'argv': sys.argv[1:], 'steps': steps}}, open('fake_hls.json', 'w'))
for step in steps:
    print('==> fpga4ml step ' + step, flush=True)
    print('<== fpga4ml step ' + step + ' done in 0.0 s', flush=True)
'''
FAKE_VIVADO = '''#!{python}
import json, sys
json.dump(sys.argv[1:], open('fake_vivado.json', 'w'))
open('acc.bit', 'w').write('bits')
open('acc.hwh', 'w').write('handoff')
print('fake vivado done', flush=True)
'''


FAKE_VPP = '''#!{python}
import json, sys
with open('fake_vpp.json', 'a') as f:
    f.write(json.dumps(sys.argv[1:]) + '\\n')
open(sys.argv[sys.argv.index('-o') + 1], 'w').write('kernel')
'''


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for tool in ('cp', 'mkdir', 'dirname'):  # what build_xclbin.sh runs besides v++
        (bindir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv('PATH', str(bindir))

    def install(name, text):
        exe = bindir / name
        exe.write_text(text.format(python=sys.executable))
        exe.chmod(0o755)
    return install


def test_build_bitfile_runs_vivado_hls_then_vivado(tmp_path, fake_bin, capsys):
    fake_bin('vivado_hls', FAKE_HLS)
    fake_bin('vivado', FAKE_VIVADO)
    model = dense_model(tmp_path)
    report = model.build(csim=False, export=True, bitfile=True)  # hls4ml's keywords, tutorial part 7a
    root = Path(model.output_dir)
    call = json.loads((root / 'fake_hls.json').read_text())
    assert call == {'argv': ['-f', 'build_prj_vivado.tcl'], 'steps': ['synth', 'export']}
    assert json.loads((root / 'fake_vivado.json').read_text()) == ['-mode', 'batch', '-nojournal', '-source',
                                                                   'design.tcl']
    assert report['build']['flavor'] == 'vivado' and Path(report['bitfile']['bit']).read_text() == 'bits'
    assert 'fake vivado done' in (root / 'vivado_design.log').read_text()
    # bitfile needs the exported IP: export is added
    get_backend('VivadoAccelerator').build(model, csim=False, synth=False, bitfile=True)
    assert json.loads((root / 'fake_hls.json').read_text())['steps'] == ['export']


def test_build_without_tools_says_which(tmp_path, fake_bin):
    model = dense_model(tmp_path)
    with pytest.raises(BackendUnavailableError, match=r'^vivado_hls \(Xilinx Vivado HLS 2020.1\) was not found'):
        model.build(bitfile=True)
    fake_bin('vivado_hls', FAKE_HLS)
    with pytest.raises(BackendUnavailableError, match=r'^vivado \(AMD Vivado\) was not found on PATH: '
                                                      r'build\(bitfile=True\)'):
        model.build(export=True, bitfile=True)
    assert not (Path(model.output_dir) / 'fake_hls.json').exists()  # nothing ran
    model.build(csim=False)  # without a bitstream vivado is not needed
    assert json.loads((Path(model.output_dir) / 'fake_hls.json').read_text())['steps'] == ['synth']


def test_build_alveo_xclbin(tmp_path, fake_bin):
    model = dense_model(tmp_path, board='alveo-u280')
    with pytest.raises(BackendUnavailableError, match=r'^v\+\+ \(AMD Vitis, with the Alveo platform installed\) '
                                                      r'was not found on PATH'):
        model.build(csim=False, synth=False, bitfile=True)
    fake_bin('v++', FAKE_VPP)
    report = model.build(csim=False, synth=False, bitfile=True)  # v++ runs HLS itself: no HLS step needed
    root = Path(model.output_dir)
    compile_args, link_args = [json.loads(line) for line in (root / 'fake_vpp.json').read_text().splitlines()]
    assert compile_args[:7] == ['-c', '-t', 'hw', '--platform', 'xilinx_u250_xdma_201830_2', '-k', 'acc_kernel']
    assert link_args[:2] == ['-l', '-t'] and link_args[-1] == 'xclbin_files/acc_kernel.xclbin'
    assert (root / 'acc.xclbin').read_text() == 'kernel' and report['bitfile']['file'] == str(root / 'acc.xclbin')
    with pytest.raises(BackendUnavailableError, match=r'^vitis-run \(AMD Vitis 2023.1 or newer\)'):
        model.build(csim=True, bitfile=True)  # HLS steps on an Alveo project: Vitis HLS


def test_tutorial_part_7a_spelling(tmp_path):
    """The calls of hls4ml's tutorial part 7a, with fpga4ml in place of hls4ml."""
    import fpga4ml as hls4ml

    keras = pytest.importorskip('keras')
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name='fc1'),
                              keras.layers.Activation('relu', name='relu1'), keras.layers.Dense(2, name='out')])
    config = hls4ml.utils.config_from_keras_model(model, granularity='name', backend='VivadoAccelerator')
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / 'prj'),
                                                           backend='VivadoAccelerator', board='pynq-z2')
    assert hls_model.backend == 'VivadoAccelerator' and hls_model.part == 'xc7z020clg400-1'
    hls_model.compile()
    assert (tmp_path / 'prj' / 'design.tcl').is_file() and (tmp_path / 'prj' / 'axi_stream_driver.py').is_file()
    x = np.random.default_rng(0).uniform(-1, 1, (5, 6))
    np.testing.assert_array_equal(hls_model.predict(x), hls_model.emulator.predict([x])[0])
    initial = hls4ml.backends.get_backend('VivadoAccelerator').create_initial_config()
    assert initial['AcceleratorConfig']['Board'] == 'pynq-z2'


def test_settings_are_plain_hls4ml_config():
    acc = accelerator_settings('pynq-z2', 'axi_lite', 'python', 'ap_ufixed<7,3>', 'double')
    assert acc.as_config() == {'Board': 'pynq-z2', 'Interface': 'axi_lite', 'Driver': 'python',
                               'Precision': {'Input': 'ap_ufixed<8,3>', 'Output': 'double'}}
