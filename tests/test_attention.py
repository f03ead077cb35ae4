"""Transformer ops (semantics/recipes_attention.py): LayerNorm, EinsumDense, Einsum.

Each op is converted in a small graph and checked: the emulator against an integer Python reference
written from the documented semantics (docs/transformers.md), the Verilog netlist against the
emulator, the outputs inside their typed bounds, the float interpreter against numpy's float
formula; every bit-exact comparison has a negative control that must fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.convert import convert_graph
from fpga4ml.emulator.reference import float_forward
from fpga4ml.ir import Graph, GraphError, Node
from fpga4ml.semantics.spec import make_node

RNG = np.random.default_rng(7)


def converted(g: Graph, cfg: dict, tmp_path):
    """A typed model of graph g (Vitis, io_parallel) in tmp_path."""
    return convert_graph(g, cfg, backend='Vitis', output_dir=str(tmp_path))


def on_grid(model, name: str, x: np.ndarray) -> np.ndarray:
    """x quantized into the type of input `name`, as floats."""
    t = model.graph[name].result_type
    return t.to_float(t.quantize(x))


def netlist_outputs(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The Verilog netlist's output mantissas on float inputs (quantized into the input types)."""
    nl = lower_graph(model.graph, model.intervals)
    return nl.evaluate([model.graph[n].result_type.quantize(x) for n, x in zip(model.graph.inputs, xs)])


def inside_bounds(model, name: str, m: np.ndarray) -> bool:
    """Every output mantissa of node `name` lies in its typed interval."""
    iv = model.intervals[name].align(model.graph[name].result_type.frac)
    lo, hi = np.asarray(iv.lo, dtype=np.int64), np.asarray(iv.hi, dtype=np.int64)
    return bool(np.all((m >= lo) & (m <= hi)))


# ---------------------------------------------------------------------------------------- LayerNorm
LN_CFG = {'Model': {'Precision': 'fixed<24,10,RND,SAT>'},
          'LayerName': {'ln': {'Precision': {'accum': 'auto', 'result': 'fixed<20,6,RND,SAT>',
                                             'scale': 'fixed<12,3,RND,SAT>', 'bias': 'fixed<12,3,RND,SAT>'}}}}


def ln_graph(shape=(3, 8), axes=(-1,), center=True, scale=True, epsilon=1e-3) -> Graph:
    """Input -> LayerNorm over `axes` with random gamma and beta."""
    norm = shape[len(shape) - len(axes):]
    g = Graph()
    g.add(Node('x', 'Input', [], shape))
    g.add(make_node('ln', 'LayerNorm', ['x'], shape, attrs={'axes': axes, 'epsilon': epsilon, 'center': center,
                                                              'scale': scale},
                    weights={'gamma': RNG.normal(1, 0.3, norm), 'beta': RNG.normal(0, 0.3, norm)}))
    g.inputs, g.outputs = ['x'], ['ln']
    return g


def ln_reference(node, in_t, xm: np.ndarray, gamma_delta: int = 0) -> np.ndarray:
    """LayerNorm on Python integers, from the documented semantics (not the recipe).

    Per row: d_i = n x_i - sum x, V = sum d_i^2 + E; s = the number of 2-bit left shifts that bring
    V * 2^-H into [1/4, 1); r = table[floor(V 4^s / 2^(u_frac - B))]; z_i = d_i 2^s r at LSB
    2^-(f_x + f_table + H/2), cast into accum; y_i = z_i gamma_i + beta_i cast into result.
    gamma_delta moves the first gamma mantissa (a negative control).
    """
    tab = node.attrs['tables']['rsqrt']
    n = int(np.prod(node.weights['gamma'].shape))
    gamma = node.qweights['gamma'].reshape(-1).astype(object)
    gamma[0] += gamma_delta
    beta = node.qweights['beta'].reshape(-1).astype(object)
    acc_t, res_t, g_t, b_t = (node.types[k] for k in ('accum', 'result', 'scale', 'bias'))
    bits = tab.index.width
    rows = xm.reshape(-1, n).astype(object)
    out = np.zeros(rows.shape, dtype=np.int64)
    z_frac = in_t.frac + tab.type.frac + tab.window // 2
    for r, row in enumerate(rows):
        total = sum(row)
        d = [n * v - total for v in row]
        v = sum(e * e for e in d) + tab.eps_mantissa
        s = 0
        while v and v << (2 * s) < 1 << (tab.u_frac - 2):
            s += 1
        entry = int(tab.values[(v << (2 * s)) >> (tab.u_frac - bits)])
        z = acc_t.cast(np.asarray([e * (1 << s) * entry for e in d], dtype=np.int64), z_frac)
        frac = max(acc_t.frac + g_t.frac, b_t.frac)
        y = [(int(zi) * int(gi) << (frac - acc_t.frac - g_t.frac)) + (int(bi) << (frac - b_t.frac))
             for zi, gi, bi in zip(z, gamma, beta)]
        out[r] = res_t.cast(np.asarray(y, dtype=np.int64), frac)
    return out.reshape(xm.shape)


def layer_norm_float(x: np.ndarray, gamma, beta, axes: int, epsilon: float) -> np.ndarray:
    """numpy's float LayerNorm over the last `axes` axes."""
    ax = tuple(range(x.ndim - axes, x.ndim))
    mean, var = x.mean(axis=ax, keepdims=True), x.var(axis=ax, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


@pytest.mark.parametrize('shape, axes', [((3, 8), (-1,)), ((2, 3, 4), (-2, -1)), ((5,), (-1,))])
def test_layernorm_emulator_equals_integer_reference_and_netlist(tmp_path, shape, axes):
    model = converted(ln_graph(shape, axes), LN_CFG, tmp_path)
    node, in_t = model.graph['ln'], model.graph['x'].result_type
    x = on_grid(model, 'x', RNG.normal(0, 1, (150,) + shape) * np.exp(RNG.uniform(-4, 4, (150,) + (1,) * len(shape))))
    got = model.predict_mantissas(x)['ln']
    np.testing.assert_array_equal(got, ln_reference(node, in_t, in_t.quantize(x)))
    assert not np.array_equal(got, ln_reference(node, in_t, in_t.quantize(x), gamma_delta=1))  # negative control
    assert inside_bounds(model, 'ln', got)
    np.testing.assert_array_equal(netlist_outputs(model, [x])[0], got)


def test_layernorm_accurate_for_variances_1e_minus_3_to_1e3(tmp_path):
    """hls4ml 1.3.0's default table normalises every row with variance >= 1 as if it were ~1 (error 2.59)."""
    model = converted(ln_graph((4, 16), epsilon=1e-3), LN_CFG, tmp_path)
    node = model.graph['ln']
    gamma, beta = (node.types[v].to_float(node.qweights[w]) for v, w in (('scale', 'gamma'), ('bias', 'beta')))
    for log_var in np.linspace(-3, 3, 13):
        x = on_grid(model, 'x', RNG.normal(0, 1, (40, 4, 16)) * 10 ** (log_var / 2))
        want = layer_norm_float(x, gamma, beta, 1, 1e-3)
        error = np.max(np.abs(model.predict(x) - want))
        assert error < 4e-3, (log_var, error)  # the 12-bit table (2^-11 relative) and the result LSB 2^-14
    x = on_grid(model, 'x', RNG.normal(0, 1, (40, 4, 16)) * 10)
    # negative control: a 1 % error in gamma exceeds the tolerance
    assert np.max(np.abs(model.predict(x) - layer_norm_float(x, gamma * 1.01, beta, 1, 1e-3))) > 4e-3


def test_layernorm_float_interpreter_is_the_real_layernorm():
    g = ln_graph((2, 6), center=False)
    x = RNG.normal(0, 3, (30, 2, 6))
    want = layer_norm_float(x, g['ln'].weights['gamma'], 0.0, 1, 1e-3)
    np.testing.assert_allclose(float_forward(g, x)[0], want, rtol=1e-12, atol=1e-12)
    g = ln_graph((2, 6), scale=False, epsilon=0.5)
    np.testing.assert_allclose(float_forward(g, x)[0], layer_norm_float(x, 1.0, g['ln'].weights['beta'], 1, 0.5),
                               rtol=1e-12, atol=1e-12)


def test_layernorm_constant_rows_give_beta(tmp_path):
    model = converted(ln_graph((2, 4), epsilon=0.0), LN_CFG, tmp_path)
    node = model.graph['ln']
    x = on_grid(model, 'x', np.broadcast_to(RNG.uniform(-5, 5, (10, 2, 1)), (10, 2, 4)))
    beta = node.types['result'].to_float(node.types['result'].quantize(
        node.types['bias'].to_float(node.qweights['beta'])))
    np.testing.assert_array_equal(model.predict(x), np.broadcast_to(beta, (10, 2, 4)))


def test_layernorm_refuses_non_trailing_axes_and_negative_epsilon(tmp_path):
    g = ln_graph((3, 4), axes=(-2,))
    with pytest.raises(GraphError, match=r"layer 'ln': LayerNorm axes \(-2,\) are not supported"):
        converted(g, LN_CFG, tmp_path)
    with pytest.raises(GraphError, match=r"layer 'ln': LayerNorm epsilon must be >= 0"):
        converted(ln_graph((3, 4), epsilon=-1.0), LN_CFG, tmp_path)


# ---------------------------------------------------------------------------------------- EinsumDense
WIDE = {'Model': {'Precision': 'fixed<18,6,RND,SAT>'}}
ED_CASES = [('tf,fhd->thd', (5, 4), (4, 2, 3), (5, 2, 3), (5, 2, 3)),   # bias varies along t: one Dense per row
            ('tf,fhd->thd', (5, 4), (4, 2, 3), (5, 2, 3), (2, 3)),      # one bias for every t
            ('abc,bcd->ad', (3, 2, 4), (2, 4, 5), (3, 5), (5,)),
            ('hd,hde->he', (2, 3), (2, 3, 4), (2, 4), (2, 4)),          # a shared letter h
            ('ti,io->ot', (3, 4), (4, 2), (2, 3), (2, 1)),               # a transposed output
            ('ti,io->o', (3, 4), (4, 2), (2,), (2,))]                    # t summed with the kernel repeated


def ed_graph(eq, x_shape, k_shape, out_shape, bias_shape) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], x_shape))
    bias = np.broadcast_to(RNG.normal(0, 1, bias_shape), out_shape).copy()
    g.add(make_node('ed', 'EinsumDense', ['x'], out_shape, attrs={'equation': eq},
                    weights={'kernel': RNG.normal(0, 1, k_shape), 'bias': bias}))
    g.inputs, g.outputs = ['x'], ['ed']
    return g


def batch_equation(eq: str) -> str:
    """The per-sample equation with a batch letter 'Z' in front of the input and the output."""
    ins, out = eq.split('->')
    a, b = ins.split(',')
    return f'Z{a},{b}->Z{out}'


@pytest.mark.parametrize('eq, x_shape, k_shape, out_shape, bias_shape', ED_CASES)
def test_einsum_dense_exact_with_a_wide_accumulator(tmp_path, eq, x_shape, k_shape, out_shape, bias_shape):
    cfg = {'Model': {'Precision': 'fixed<12,4,RND,SAT>'},
           'LayerName': {'ed': {'Precision': {'accum': 'fixed<40,16>', 'result': 'fixed<14,5,RND,SAT>'}}}}
    model = converted(ed_graph(eq, x_shape, k_shape, out_shape, bias_shape), cfg, tmp_path)
    node, in_t = model.graph['ed'], model.graph['x'].result_type
    x = on_grid(model, 'x', RNG.uniform(-8, 8, (100,) + x_shape))
    k, b = node.qweights['kernel'].astype(object), node.qweights['bias'].astype(object)
    w_t, b_t = node.types['weight'], node.types['bias']
    frac = in_t.frac + w_t.frac

    def reference(kernel):
        exact = np.einsum(batch_equation(eq), in_t.quantize(x).astype(object), kernel)
        return node.result_type.cast((exact + b * (1 << (frac - b_t.frac))).astype(np.int64), frac)

    got = model.predict_mantissas(x)['ed']
    np.testing.assert_array_equal(got, reference(k))
    moved = k.copy()
    moved.flat[0] += 1
    assert not np.array_equal(got, reference(moved))  # negative control
    np.testing.assert_array_equal(netlist_outputs(model, [x])[0], got)
    assert inside_bounds(model, 'ed', got)
    real = np.einsum(batch_equation(eq), x, node.weights['kernel']) + node.weights['bias']
    np.testing.assert_allclose(float_forward(model.graph, x)[0], real, rtol=1e-12, atol=1e-12)


def test_einsum_dense_refuses_a_sum_over_kernel_axes_alone(tmp_path):
    g = Graph()
    g.add(Node('x', 'Input', [], (3, 4)))
    g.add(make_node('ed', 'EinsumDense', ['x'], (3,), attrs={'equation': 'ti,ik->t'},
                    weights={'kernel': np.ones((4, 2)), 'bias': np.zeros(3)}))
    g.inputs, g.outputs = ['x'], ['ed']
    with pytest.raises(GraphError, match=r"layer 'ed': EinsumDense 'ti,ik->t': the kernel letters \['k'\]"):
        converted(g, WIDE, tmp_path)


# ---------------------------------------------------------------------------------------- Einsum
def test_einsum_of_two_inputs_equals_integer_reference(tmp_path):
    g = Graph()
    g.add(Node('a', 'Input', [], (2, 3, 4)))
    g.add(Node('b', 'Input', [], (2, 5, 4)))
    g.add(make_node('s', 'Einsum', ['a', 'b'], (2, 3, 5), attrs={'equation': 'hqd,hkd->hqk'}))
    g.inputs, g.outputs = ['a', 'b'], ['s']
    cfg = {'Model': {'Precision': 'fixed<10,3,RND,SAT>'}, 'LayerName': {'s': {'Precision': {'accum': 'auto'}}}}
    model = converted(g, cfg, tmp_path)
    t, node = model.graph['a'].result_type, model.graph['s']
    a, b = (on_grid(model, 'a', RNG.uniform(-6, 6, (80,) + s)) for s in ((2, 3, 4), (2, 5, 4)))
    am, bm = t.quantize(a).astype(object), t.quantize(b).astype(object)
    got = model.predict_mantissas([a, b])['s']
    want = node.result_type.cast(np.einsum('zhqd,zhkd->zhqk', am, bm).astype(np.int64), 2 * t.frac)
    np.testing.assert_array_equal(got, want)
    bm[:, 0, 0, 0] += 1 << t.frac  # one element of b moves by 1.0 in every sample
    assert not np.array_equal(got, node.result_type.cast(np.einsum('zhqd,zhkd->zhqk', am, bm).astype(np.int64),
                                                         2 * t.frac))  # negative control
    assert node.types['accum'].width <= 2 * t.width + 2  # exact: the narrowest type of 4-term sums
    np.testing.assert_array_equal(netlist_outputs(model, [a, b])[0], got)
    assert inside_bounds(model, 's', got)
    np.testing.assert_allclose(float_forward(model.graph, [a, b])[0], np.einsum('zhqd,zhkd->zhqk', a, b), atol=1e-12)
