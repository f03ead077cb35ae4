"""Typed-graph files: content, JSON/YAML round trips and byte-for-byte determinism."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import FixedType  # noqa: E402
from fpga4ml.serialize import _plain, _SKIP, graph_to_dict, typed_graph_json, write_typed_graph  # noqa: E402


@pytest.fixture(scope='module')
def kmodel():
    """Dense -> relu -> Dense -> tanh (table) -> Softmax (tables), with fixed random weights."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((6,), name='x')
    h = keras.layers.Dense(5, activation='relu', name='fc1')(inp)
    h = keras.layers.Dense(4, name='fc2')(h)
    h = keras.layers.Activation('tanh', name='act')(h)
    out = keras.layers.Softmax(name='softmax')(h)
    return keras.Model(inp, out)


def _convert(kmodel, output_dir='prj'):
    config = fpga4ml.config_from_keras_model(kmodel, granularity='name', default_precision='fixed<12,4>')
    config['LayerName']['softmax']['Precision']['result'] = 'ufixed<10,0,RND,SAT>'
    return fpga4ml.convert_from_keras_model(kmodel, hls_config=config, output_dir=output_dir)


def test_graph_to_dict_content(kmodel):
    model = _convert(kmodel)
    d = graph_to_dict(model.graph)
    assert d['inputs'] == ['x'] and d['outputs'] == ['softmax']
    assert [n['name'] for n in d['nodes']] == [n.name for n in model.graph]
    fc1 = d['nodes'][1]
    assert fc1['op'] == 'Dense' and fc1['inputs'] == ['x'] and fc1['shape'] == [5]
    assert fc1['types']['weight'] == 'fixed<12,4>'
    assert fc1['qweights']['kernel'] == model.graph['fc1'].qweights['kernel'].tolist()
    assert all(isinstance(v, int) for row in fc1['qweights']['kernel'] for v in row)
    sm = d['nodes'][-1]
    assert sm['types']['result'] == 'ufixed<10,0,RND,SAT>'
    exp = sm['attrs']['tables']['exp']
    table = model.graph['softmax'].attrs['tables']['exp']
    assert exp['index'] == str(table.index) and exp['type'] == str(table.type)
    assert exp['values'] == table.values.tolist() and exp['size'] == len(table.values)
    act = model.graph['act'].attrs['tables']['f']
    assert d['nodes'][-2]['attrs']['tables']['f']['values'] == act.values.tolist()
    # the whole dict is plain JSON
    assert json.loads(json.dumps(d)) == d


def test_write_typed_graph_is_deterministic_and_path_free(kmodel, tmp_path):
    a = write_typed_graph(_convert(kmodel, output_dir=str(tmp_path / 'one')), tmp_path / 'one')
    b = write_typed_graph(_convert(kmodel, output_dir=str(tmp_path / 'two')), tmp_path / 'two')
    assert [p.name for p in a] == ['graph.json', 'config.yml', 'summary.txt']
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert str(tmp_path) not in pa.read_text()
        assert pa.read_bytes().endswith(b'\n')


def test_files_round_trip(kmodel, tmp_path):
    model = _convert(kmodel)
    write_typed_graph(model, tmp_path)
    data = json.loads((tmp_path / 'graph.json').read_text())
    assert data['format'] == 'fpga4ml-typed-graph' and data['format_version'] == 1
    assert data['settings']['backend'] == 'Vitis' and 'output_dir' not in data['settings']
    assert {k: v for k, v in data.items() if k in ('inputs', 'outputs', 'nodes')} == graph_to_dict(model.graph)
    assert yaml.safe_load((tmp_path / 'config.yml').read_text()) == model.config
    assert (tmp_path / 'summary.txt').read_text() == model.summary() + '\n'
    # the saved configuration converts to the same typed graph
    again = fpga4ml.convert_from_keras_model(kmodel, hls_config=yaml.safe_load((tmp_path / 'config.yml').read_text()))
    assert typed_graph_json(again) == typed_graph_json(model)


def test_plain_values():
    assert _plain({'t': FixedType(8, 3), 'n': np.int32(4), 'f': np.float32(0.5), 'b': np.bool_(True)}) == \
        {'t': 'fixed<8,3>', 'n': 4, 'f': 0.5, 'b': True}
    assert _plain(float('inf')) == 'inf' and _plain(float('nan')) == 'nan'
    assert _plain({'arr': np.zeros(3), 'ok': (1, 2)}) == {'ok': [1, 2]}
    assert _plain((1, np.zeros(2))) is _SKIP
