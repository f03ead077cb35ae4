"""TableSemantics 'hls4ml': the table entries against hls4ml's own C++, and the errors around the mode.

The bit-exactness of whole models against hls4ml's C simulation is in test_hls4ml_bitexact.py.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, GraphError, Node
from fpga4ml.semantics.tables import HLS4ML_TABLE_RANGE, hls4ml_elu_entries, hls4ml_entries

SIZES = (256, 1024, 2048, 4096)


def _hls4ml_templates() -> Path | None:
    spec = importlib.util.find_spec('hls4ml')
    if spec is None or shutil.which('g++') is None:
        return None
    return Path(spec.origin).parent / 'templates' / 'vivado'


def _hls4ml_entries_gpp(tmp_path: Path, templates: Path) -> dict[tuple[str, int], np.ndarray]:
    """hls4ml's init_<fn>_table (sigmoid, tanh, softplus, softsign, elu, selu) with a float table_t: the float32 entries."""
    calls = []
    for n in SIZES:
        calls.append(f'struct c{n} {{ typedef float table_t; }};')
    body = ''.join(
        f'{{ static float t[{n}]; nnet::init_{fn}_table<c{n}, {n}>(t); '
        f'for (int i = 0; i < {n}; i++) std::printf("{fn} {n} %a\\n", t[i]); }}\n'
        for n in SIZES for fn in (*HLS4ML_TABLE_RANGE, 'elu', 'selu'))
    source = tmp_path / 'tables.cpp'
    source.write_text('#include <cstdio>\n#include "nnet_utils/nnet_activation.h"\n' + '\n'.join(calls)
                      + f'\nint main() {{\n{body}return 0;\n}}\n')
    exe = tmp_path / 'tables'
    subprocess.run(['g++', '-O1', '-std=c++14', f'-I{templates}', f'-I{templates / "ap_types"}', str(source),
                    '-o', str(exe)], check=True, capture_output=True, timeout=300)
    out: dict[tuple[str, int], list[float]] = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        fn, n, value = line.split()
        out.setdefault((fn, int(n)), []).append(float.fromhex(value))
    return {key: np.asarray(v, dtype=np.float32) for key, v in out.items()}


def test_entries_equal_hls4ml_cpp(tmp_path):
    """Every float32 entry equals what hls4ml's own header computes with g++ (libm expf/tanh included)."""
    templates = _hls4ml_templates()
    if templates is None or not (templates / 'nnet_utils' / 'nnet_activation.h').exists():
        pytest.skip('needs g++ and hls4ml (its nnet_utils headers and ap_types)')
    theirs = _hls4ml_entries_gpp(tmp_path, templates)
    for (fn, n), values in theirs.items():
        ours = hls4ml_elu_entries(fn, n) if fn in ('elu', 'selu') else hls4ml_entries(fn, n)
        assert ours.dtype == np.float32 and ours.shape == values.shape
        np.testing.assert_array_equal(ours, values, err_msg=f'{fn} {n}')
    # negative control: the entries in double precision are not hls4ml's
    assert not np.array_equal(1.0 / (1.0 + np.exp(-(np.arange(1024) - 512) / 64.0)), theirs[('sigmoid', 1024)])
    assert not np.array_equal(np.expm1(-8.0 * np.arange(1024) / 1024).astype(np.float32), theirs[('elu', 1024)])


def _graph(fn: str) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('f', fn if fn == 'Softmax' else 'Activation', ['x'], (4,),
               attrs={} if fn == 'Softmax' else {'function': fn}))
    g.inputs, g.outputs = ['x'], ['f']
    return g


def test_mode_errors_name_the_layer(tmp_path):
    with pytest.raises(ConfigError, match=r"TableSemantics='HLS4ML'; use one of \['exact', 'hls4ml'\]"):
        convert_graph(_graph('sigmoid'), {'Model': {'TableSemantics': 'HLS4ML'}}, output_dir=str(tmp_path))
    hls4ml = {'Model': {'Precision': 'fixed<16,6>', 'TableSemantics': 'hls4ml'}}
    with pytest.raises(GraphError, match=r"layer 'f': TableSemantics 'hls4ml' covers \['elu', 'selu', 'sigmoid', "
                                         r"'softplus', 'softsign', 'tanh'\], not 'exp'"):
        convert_graph(_graph('exp'), hls4ml, output_dir=str(tmp_path))
    wide_neg = {**hls4ml, 'LayerName': {'x': {'Precision': {'result': 'fixed<40,30>'}}}}
    with pytest.raises(GraphError, match=r"layer 'f': hls4ml's table index \(x \* N / -8 in a C int\) overflows"):
        convert_graph(_graph('elu'), wide_neg, output_dir=str(tmp_path))
    # a softmax follows the model's mode (its implementations: test_softmax_hls4ml.py)
    assert convert_graph(_graph('Softmax'), hls4ml, output_dir=str(tmp_path)).graph['f'].types['inv_inp']
    wide = {**hls4ml, 'LayerName': {'x': {'Precision': {'result': 'fixed<40,30>'}}}}
    with pytest.raises(GraphError, match=r"layer 'f': hls4ml's table index .* overflows"):
        convert_graph(_graph('sigmoid'), wide, output_dir=str(tmp_path))
    # per layer: the softmax keeps the exact tables while the model asks for hls4ml's
    model = convert_graph(_graph('Softmax'), {**hls4ml, 'LayerName': {'f': {'TableSemantics': 'exact'}}},
                          output_dir=str(tmp_path))
    assert model.graph['f'].config['TableSemantics'] == 'exact'
    assert 'inv_inp' not in model.graph['f'].types  # fpga4ml's exact softmax has no inv_inp_t


def test_index_is_hls4ml_c_arithmetic(tmp_path):
    """address = clamp(int(x * N / R) + N/2, 0, N - 1), C int conversion toward zero, on every input value."""
    model = convert_graph(_graph('tanh'), {'Model': {'Precision': 'fixed<12,4,RND,SAT>', 'TableSemantics': 'hls4ml'},
                                           'LayerName': {'f': {'TableSize': 512}}}, output_dir=str(tmp_path))
    t_in, node = model.graph['x'].result_type, model.graph['f']
    x = t_in.to_float(np.arange(t_in.min_mantissa, t_in.max_mantissa + 1))
    address = np.clip(np.trunc(x * 512 / 8).astype(np.int64) + 256, 0, 511)
    table = node.attrs['tables']['f']
    want = node.result_type.cast(table.values[address], table.type.frac)
    got = model.predict_mantissas(np.repeat(x[:, None], 4, axis=1))['f'][:, 0]
    np.testing.assert_array_equal(got, want)
    floor = np.clip(np.floor(x * 512 / 8).astype(np.int64) + 256, 0, 511)  # negative control: floor, not trunc
    assert not np.array_equal(got, node.result_type.cast(table.values[floor], table.type.frac))


def _two_tables(tmp_path, mode: str = 'hls4ml'):
    g = Graph()
    g.add(Node('x', 'Input', [], (6,)))
    g.add(Node('s', 'Activation', ['x'], (6,), attrs={'function': 'sigmoid'}))
    g.add(Node('t', 'Activation', ['x'], (6,), attrs={'function': 'tanh'}))
    g.add(Node('p', 'Activation', ['x'], (6,), attrs={'function': 'softplus'}))
    g.add(Node('q', 'Activation', ['x'], (6,), attrs={'function': 'softsign'}))
    g.inputs, g.outputs = ['x'], ['s', 't', 'p', 'q']
    cfg = {'Model': {'Precision': 'fixed<14,5,RND,SAT>', 'TableSemantics': mode},
           'LayerName': {'t': {'TableSize': 256, 'Precision': {'result': 'fixed<10,1,RND_CONV,SAT>'}}}}
    return convert_graph(g, cfg, output_dir=str(tmp_path / mode))


def test_netlist_and_csim_equal_the_emulator(tmp_path):
    """The Verilog netlist and the HLS C simulation compute the hls4ml tables' bits too."""
    from fpga4ml.backends.verilog.lower import lower_graph
    model = _two_tables(tmp_path)
    x = np.random.default_rng(3).uniform(-12, 12, (3000, 6))
    want = model.predict_mantissas(x)
    t_in = model.graph['x'].result_type
    got = lower_graph(model.graph, model.intervals).evaluate([t_in.quantize(x)])
    for name, g in zip(model.graph.outputs, got):
        np.testing.assert_array_equal(g, want[name], err_msg=name)
    exact = _two_tables(tmp_path, 'exact').predict_mantissas(x)  # negative control: the default tables differ
    for name in model.graph.outputs:
        assert not np.array_equal(exact[name], want[name]), name
    if _hls4ml_templates() is None:
        pytest.skip('the C simulation needs g++ and the ap_types headers shipped with hls4ml')
    model.compile(sim='csim')
    for name, a, b in zip(model.graph.outputs, model.predict(x), model.predict(x, sim='csim')):
        np.testing.assert_array_equal(b, a, err_msg=name)


@pytest.mark.slow  # about 35 s under load: hls4ml's project compiles with g++ -O3
def test_softplus_softsign_equal_hls4ml_csim(tmp_path_factory):
    """softplus and softsign under TableSemantics 'hls4ml' equal hls4ml 1.3.0's C simulation on 10,000 inputs
    (default 1024 entries and a configured TableSize); one weight LSB changed must differ."""
    keras = pytest.importorskip('keras')
    from test_hls4ml_bitexact import (_make_text_safe, _set_weights, assert_bit_exact, assert_negative_control,
                                      assert_same_types, bump_weight, compiled_cases)
    x = keras.Input((10,), name='x')
    h = keras.layers.Dense(10, name='d0')(x)
    km = keras.Model(x, [keras.layers.Activation('softplus', name='sp')(h),
                         keras.layers.Activation('softsign', name='ss')(h)])
    _set_weights(km.get_layer('d0'), np.random.default_rng(5), 1.5, 0.5)
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency', 'TableSemantics': 'hls4ml'},
           'LayerName': {'x': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
                         'd0': {'Precision': {'weight': 'fixed<10,2,RND>', 'accum': 'fixed<18,7>',
                                              'result': 'fixed<14,6>'}},
                         'sp': {'Precision': {'result': 'ufixed<12,4,RND,SAT>'}, 'TableSize': 512},
                         'ss': {'Precision': {'result': 'fixed<10,1,RND_CONV,SAT>'}}}}
    ours, = _make_text_safe(km, [cfg], 7)
    with compiled_cases({'softplus_softsign': (km, cfg, ours)}, {'softplus_softsign': 10000},
                        np.random.default_rng(8), tmp_path_factory) as out:
        case = out['softplus_softsign']
        assert_same_types(case)
        assert_bit_exact(case)
        assert [len(ours.graph[n].attrs['tables']['f']) for n in ('sp', 'ss')] == [512, 1024]
        assert_negative_control(case, bump_weight('d0', index=(2, 3)))


def _elu_selu(tmp_path, mode: str = 'hls4ml', io_type: str = 'io_parallel'):
    g = Graph()
    g.add(Node('x', 'Input', [], (6,)))
    g.add(Node('e', 'Activation', ['x'], (6,), attrs={'function': 'elu', 'alpha': 0.7}))
    g.add(Node('s', 'Activation', ['x'], (6,), attrs={'function': 'selu'}))
    g.inputs, g.outputs = ['x'], ['e', 's']
    cfg = {'Model': {'Precision': 'fixed<14,5,RND,SAT>', 'TableSemantics': mode},
           'LayerName': {'e': {'TableSize': 256, 'Precision': {'param': 'ufixed<6,0,RND>'}},
                         's': {'Precision': {'result': 'fixed<12,4,RND_CONV,SAT>'}}}}
    return convert_graph(g, cfg, output_dir=str(tmp_path / f'{mode}_{io_type}'), io_type=io_type)


def test_elu_selu_index_branch_and_alpha(tmp_path):
    """x >= 0: x (elu) or (ap_ufixed<16,1>) lambda * x (selu); x < 0: table[min(int(x * N / -8), N - 1)], times
    alpha in the param type (elu), on every input value."""
    model = _elu_selu(tmp_path)
    t_in = model.graph['x'].result_type
    x = t_in.to_float(np.arange(t_in.min_mantissa, t_in.max_mantissa + 1))
    got = model.predict_mantissas(np.repeat(x[:, None], 6, axis=1))
    alpha = 45 / 64  # 0.7 in ufixed<6,0,RND>
    lam = np.floor(1.0507009873554805 * 2 ** 15) / 2 ** 15
    for name, n, pos, scale in (('e', 256, x, alpha), ('s', 1024, lam * x, 1.0)):
        node = model.graph[name]
        table = node.attrs['tables']['f']
        entries = table.values * 2.0 ** -table.type.frac
        address = np.minimum(np.trunc(-x * n / 8).astype(np.int64), n - 1)
        want = node.result_type.quantize(np.where(x >= 0, pos, scale * entries[np.maximum(address, 0)]))
        np.testing.assert_array_equal(got[name][:, 0], want, err_msg=name)
        rounded = np.minimum(np.round(-x * n / 8).astype(np.int64), n - 1)  # negative control: round, not trunc
        wrong = node.result_type.quantize(np.where(x >= 0, pos, scale * entries[np.maximum(rounded, 0)]))
        assert not np.array_equal(got[name][:, 0], wrong), name
    assert model.graph['e'].types['param'] == model.graph['e'].config['Precision']['param']


def test_elu_selu_netlist_and_csim_equal_the_emulator(tmp_path):
    """The Verilog netlist and the HLS C simulation (io_parallel and io_stream) compute hls4ml's elu/selu bits too."""
    from fpga4ml.backends.verilog.lower import lower_graph
    model = _elu_selu(tmp_path)
    x = np.random.default_rng(4).uniform(-20, 12, (3000, 6))
    want = model.predict_mantissas(x)
    t_in = model.graph['x'].result_type
    got = lower_graph(model.graph, model.intervals).evaluate([t_in.quantize(x)])
    for name, g in zip(model.graph.outputs, got):
        np.testing.assert_array_equal(g, want[name], err_msg=name)
    exact = _elu_selu(tmp_path, 'exact').predict_mantissas(x)  # negative control: the default tables differ
    for name in model.graph.outputs:
        assert not np.array_equal(exact[name], want[name]), name
    if _hls4ml_templates() is None:
        pytest.skip('the C simulation needs g++ and the ap_types headers shipped with hls4ml')
    for io_type in ('io_parallel', 'io_stream'):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter('always')
            model = _elu_selu(tmp_path, io_type=io_type)
        said = [str(w.message) for w in seen if "io_stream selu casts lambda" in str(w.message)]
        assert len(said) == (io_type == 'io_stream'), said  # hls4ml's io_stream selu differs: said once
        model.compile(sim='csim')
        for name, a, b in zip(model.graph.outputs, model.predict(x), model.predict(x, sim='csim')):
            np.testing.assert_array_equal(b, a, err_msg=f'{name} {io_type}')


@pytest.mark.slow  # hls4ml's project compiles with g++ -O3
def test_elu_selu_equal_hls4ml_csim(tmp_path_factory):
    """Dense -> ELU(alpha) / Activation('selu') under TableSemantics 'hls4ml' equal hls4ml 1.3.0's C simulation
    on 10,000 inputs; one weight LSB changed must differ."""
    keras = pytest.importorskip('keras')
    from test_hls4ml_bitexact import (_make_text_safe, _set_weights, assert_bit_exact, assert_negative_control,
                                      assert_same_types, bump_weight, compiled_cases)
    x = keras.Input((10,), name='x')
    h = keras.layers.Dense(10, name='d0')(x)
    km = keras.Model(x, [keras.layers.ELU(alpha=0.6, name='elu')(h), keras.layers.Activation('selu', name='selu')(h)])
    _set_weights(km.get_layer('d0'), np.random.default_rng(6), 1.5, 0.5)
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency', 'TableSemantics': 'hls4ml'},
           'LayerName': {'x': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
                         'd0': {'Precision': {'weight': 'fixed<10,3,RND>', 'accum': 'fixed<18,7>',
                                              'result': 'fixed<14,6>'}},
                         'elu': {'Precision': {'result': 'fixed<12,4,RND,SAT>', 'param': 'fixed<8,1,RND>'},
                                 'TableSize': 512},
                         'selu': {'Precision': {'result': 'fixed<12,4,RND_CONV,SAT>'}}}}
    ours, = _make_text_safe(km, [cfg], 7)
    with compiled_cases({'elu_selu': (km, cfg, ours)}, {'elu_selu': 10000},
                        np.random.default_rng(9), tmp_path_factory) as out:
        case = out['elu_selu']
        assert_same_types(case)
        assert_bit_exact(case)
        assert [len(ours.graph[n].attrs['tables']['f']) for n in ('elu', 'selu')] == [512, 1024]
        assert_negative_control(case, bump_weight('d0', index=(2, 3)))
