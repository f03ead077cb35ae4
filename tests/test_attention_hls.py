"""HLS C++ of the transformer ops (backends/hls/emit_attention.py): the C simulation equals the emulator.

One g++ build covers LayerNorm (over one and two axes), EinsumDense (a per-row and a shared bias)
and Einsum of two variable tensors, on 2,000 inputs that include values far outside the input
type (they wrap or saturate) and rows whose variance spans 1e-4 to 1e4. The negative controls
compare the C simulation with the emulator of a model that differs in one table size and in
one weight bit: both must differ.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node
from fpga4ml.semantics.spec import make_node
from test_hls_csim import assert_bit_identical, make_inputs

pytestmark = pytest.mark.skipif(shutil.which('g++') is None, reason='needs g++')

RNG = np.random.default_rng(11)
T, F = 4, 6


def graph(kernel_delta: int = 0) -> Graph:
    """x -> LayerNorm -> EinsumDense (query-like, key-like) -> Einsum scores; x -> LayerNorm over two axes."""
    rng = np.random.default_rng(3)
    g = Graph()
    g.add(Node('x', 'Input', [], (T, F)))
    g.add(make_node('ln', 'LayerNorm', ['x'], (T, F), attrs={'epsilon': 1e-3},
                    weights={'gamma': rng.normal(1, 0.3, F), 'beta': rng.normal(0, 0.3, F)}))
    g.add(make_node('ln2', 'LayerNorm', ['x'], (T, F), attrs={'axes': (-2, -1), 'center': False},
                    weights={'gamma': rng.normal(1, 0.3, (T, F)), 'beta': np.zeros((T, F))}))
    kernel = rng.normal(0, 0.5, (F, 2, 3))
    kernel.flat[0] += kernel_delta * 2.0 ** -8
    g.add(make_node('q', 'EinsumDense', ['ln'], (T, 2, 3), attrs={'equation': 'tf,fhd->thd'},
                    weights={'kernel': kernel, 'bias': rng.normal(0, 0.5, (T, 2, 3))}))
    g.add(make_node('k', 'EinsumDense', ['ln2'], (2, 3, T), attrs={'equation': 'tf,fhd->hdt'},
                    weights={'kernel': rng.normal(0, 0.5, (F, 2, 3)),
                             'bias': np.broadcast_to(rng.normal(0, 0.5, (2, 3, 1)), (2, 3, T)).copy()}))
    g.add(make_node('s', 'Einsum', ['q', 'k'], (2, T, T), attrs={'equation': 'thd,hds->hts'}))
    g.inputs, g.outputs = ['x'], ['ln', 's', 'ln2']
    return g


CONFIG = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'},
          'LayerName': {'ln': {'Precision': {'accum': 'auto', 'result': 'fixed<14,4,RND,SAT>'}},
                        'q': {'Precision': {'accum': 'fixed<18,6,RND,SAT>'}},
                        's': {'Precision': {'accum': 'fixed<14,5,RND,SAT>', 'result': 'fixed<12,5,RND,SAT>'}}}}


def inputs(model, n: int = 2000) -> list[np.ndarray]:
    t = model.graph['x'].result_type
    x = make_inputs(RNG, n, (T, F), t)
    x[-400:] = RNG.normal(0, 1, (400, T, F)) * 10 ** RNG.uniform(-2, 2, (400, 1, 1))  # variance 1e-4 .. 1e4
    return [x]


def test_csim_equals_emulator_for_layernorm_einsumdense_einsum(tmp_path):
    model = convert_graph(graph(), CONFIG, output_dir=str(tmp_path / 'attn'), project_name='attn')
    model.compile(sim='csim')
    xs = inputs(model)
    assert_bit_identical(model, xs)
    got = model._csim.predict(xs)
    # negative controls: a smaller 1/sqrt table, and one kernel bit, each change the emulator's bits
    other = {**CONFIG, 'LayerName': {**CONFIG['LayerName'],
                                     'ln': {**CONFIG['LayerName']['ln'], 'TableSize': 256}}}
    smaller = convert_graph(graph(), other, output_dir=str(tmp_path / 'small'))
    assert not np.array_equal(smaller.emulator.predict(xs)[0], got[0])
    moved = convert_graph(graph(kernel_delta=1), CONFIG, output_dir=str(tmp_path / 'moved'))
    assert not np.array_equal(moved.emulator.predict(xs)[1], got[1])


@pytest.mark.slow
def test_verilator_equals_emulator_for_layernorm_einsumdense_einsum(tmp_path):
    """The Verilog design (unrolled, II = 1) computes the emulator's bits on the same 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    model = convert_graph(graph(), CONFIG, output_dir=str(tmp_path / 'rtl'), project_name='attn', backend='Verilog')
    model.compile(sim='rtl', progress=False)
    xs = inputs(model)
    got, want = model.predict(xs, sim='rtl'), model.predict(xs)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    other = convert_graph(graph(kernel_delta=1), CONFIG, output_dir=str(tmp_path / 'moved'), backend='Verilog')
    assert not np.array_equal(other.predict(xs)[1], got[1])  # negative control


def test_csim_equals_emulator_for_embedding(tmp_path):
    g = Graph()
    g.add(Node('ids', 'Input', [], (5,)))
    g.add(make_node('emb', 'Embedding', ['ids'], (5, 3), weights={'embeddings': RNG.normal(0, 1, (12, 3))}))
    g.inputs, g.outputs = ['ids'], ['emb']
    cfg = {'Model': {'Precision': 'fixed<12,4,RND,SAT>'}, 'LayerName': {'ids': {'Precision': 'fixed<8,6>'}}}
    model = convert_graph(g, cfg, output_dir=str(tmp_path / 'emb'), project_name='emb')
    model.compile(sim='csim')
    xs = [RNG.uniform(-4, 17, (2000, 5))]  # fractional, negative and too-large indices
    assert_bit_identical(model, xs)
    g['emb'].weights['embeddings'][0, 0] += 1.0  # negative control: another table
    other = convert_graph(g, cfg, output_dir=str(tmp_path / 'other'))
    assert not np.array_equal(other.emulator.predict(xs)[0], model._csim.predict(xs)[0])


def test_csim_equals_emulator_for_masked_softmax(tmp_path):
    g = Graph()
    g.add(Node('s', 'Input', [], (2, 5, 5)))
    mask = np.tril(np.ones((5, 5), dtype=np.int64))
    g.add(make_node('sm', 'MaskedSoftmax', ['s'], (2, 5, 5), attrs={'mask': mask.tolist()}))
    g.inputs, g.outputs = ['s'], ['sm']
    cfg = {'Model': {'Precision': 'fixed<12,4,RND,SAT>'}}
    model = convert_graph(g, cfg, output_dir=str(tmp_path / 'msm'), project_name='msm')
    model.compile(sim='csim')
    t = model.graph['s'].result_type
    xs = [make_inputs(RNG, 2000, (2, 5, 5), t)]
    assert_bit_identical(model, xs)
    got = model._csim.predict(xs)[0]
    assert np.all(got[:, :, ~mask.astype(bool)] == 0)
    g['sm'].attrs['mask'] = np.ones((5, 5), dtype=np.int64).tolist()  # negative control: no mask
    other = convert_graph(g, cfg, output_dir=str(tmp_path / 'other'))
    assert not np.array_equal(other.emulator.predict(xs)[0], got)
