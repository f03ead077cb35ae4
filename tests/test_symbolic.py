"""Symbolic expressions (issue 15): parsing, the program, tables, and every back end bit for bit.

The emulator is checked against an exact integer reference written here from the program's
documented meaning (program.py: Python integers at an LSB, FixedType casts, the node's tables), the
Verilog netlist and the g++ C simulation against the emulator, and the float reference against
sympy. Each bit-exactness check has a negative control (one constant moved by one LSB).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil

import numpy as np
import pytest
import sympy

from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.convert import convert_graph
from fpga4ml.converters import convert_from_symbolic_expression
from fpga4ml.emulator.reference import float_forward
from fpga4ml.fixed import parse_precision
from fpga4ml.ir import GraphError
from fpga4ml.semantics.accumulate import cast_wide
from fpga4ml.symbolic import build_graph, choose_equation, read_hall_of_fame
from fpga4ml.symbolic.error import error_bounds
from fpga4ml.symbolic.parse import parse
from fpga4ml.symbolic.functions import address_constants, build_table, FunctionSpec, real_function
from fpga4ml.symbolic.program import type_of
from fpga4ml.utils.symbolic_utils import LUTFunction, init_pysr_lut_functions

HAS_CSIM = shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None
LUTS = {'cos_lut': {'math_func': 'cos', 'range_start': -4, 'range_end': 4, 'table_size': 1024},
        'exp_lut': {'math_func': 'exp', 'range_start': -3, 'range_end': 5, 'table_size': 1000}}

#: every operator and function, nested, over 3 inputs (30 expressions)
EXPRESSIONS = [
    'x0 + x1 - x2', 'x0 * x1 * x2', '2.5382*x0 - 0.5', 'x0/3 + x1/4', '-x0*x1/5 + 7*x2', 'x0**2 + x1**3',
    '(x0 + x1)**4 - 2*x1**2', '(x0 + 1)**5 / 64', 'x0/x1', '(x0 + x2)/(x1 - 0.5)', 'Abs(x0) - Abs(x1*x2)',
    'sign(x0) + sign(x1 - x2)', 'Min(x0, x1) + Max(x1, x2, 0.25)',
    'Piecewise((x0, x0 > x1), (x1**2, x1 >= 0.5), (-x2, True))', 'Piecewise((x0 - 1, x2 < 0), (2*x0, True))',
    'Piecewise((x1, x0 <= x2), (0.75, True))', 'sin(x0) + cos(x1)', 'tan(x0/16)', 'exp(x0/8) - 1', 'log(x1) + x0',
    'sqrt(x0) * x1', 'tanh(x0*x1)', 'sigmoid(x0) - 0.5', 'sinh(x0/8) + cosh(x1/8)', 'asin(x0/32) + acos(x1/32)',
    'atan(x0) * erf(x1)', 'x0**0.5 + x1**0.3333', 'cos_lut(x0) + exp_lut(x1/4)',
    'cos(sin(x0) * x1) + sqrt(Abs(x2))', 'Max(exp(x0/16), x1) * sigmoid(x2 - x0)',
]
#: the Verilog back end's signals hold at most 62 bits: the 4th and 5th powers get narrower bases
NARROW = {'x0 + x1': 'ap_fixed<12,5>', 'x0 + 1': 'ap_fixed<10,5,AP_RND,AP_SAT>'}
PRECISIONS = [{'default': 'ap_fixed<16,6>', 'expressions': NARROW},
              {'default': 'ap_fixed<12,4,AP_RND,AP_SAT>', 'expressions': NARROW},
              {'default': 'ap_fixed<18,8>', 'result': 'ap_fixed<10,3,AP_RND_CONV,AP_SAT>', 'constant': 'ap_fixed<20,8>',
               'expressions': NARROW}]


def convert(expr, precision='ap_fixed<16,6>', tmp='/tmp/fpga4ml-symbolic-test', **kw):
    kw.setdefault('lut_functions', LUTS)
    return convert_from_symbolic_expression(expr, n_symbols=kw.pop('n_symbols', 3), precision=precision,
                                            output_dir=str(tmp), **kw)


def inputs(model, n: int, seed: int = 0, scale: float = 1.5) -> np.ndarray:
    """Inputs over the input type (both signs), a few of them beyond it (the input cast wraps)."""
    t = model.graph['x'].result_type
    rng = np.random.default_rng(seed)
    x = rng.uniform(t.min_value * scale, t.max_value * scale, (n, model.graph['x'].shape[0]))
    x[: n // 2] *= rng.uniform(0, 0.25, (n // 2, 1))  # many small values: functions change there
    return x


# --------------------------------------------------------------------------- the exact integer reference

def _align(a, b):
    (ma, fa), (mb, fb) = a, b
    f = max(fa, fb)
    return ma * (1 << (f - fa)), mb * (1 << (f - fb)), f


def _cast(t, m, frac):
    """FixedType's cast of exact mantissas (Python ints; wider than int64: the same cast on big integers)."""
    if max((abs(int(v)) for v in m), default=0).bit_length() <= 62:
        return t.cast(np.asarray(m, dtype=np.int64), frac).astype(object)
    return cast_wide(t, np.asarray(m, dtype=object), frac, None).astype(object)


def _round_integer(m, frac, mode):
    """m * 2^-frac rounded to an integer: 'floor', or 'even' (the nearest, ties to even), in Python integers."""
    if frac <= 0:
        return m * (1 << -frac)
    low = np.asarray([int(v) >> frac for v in m], dtype=object)
    if mode == 'floor':
        return low
    rest = np.asarray([int(v) - (int(lo) << frac) for v, lo in zip(m, low)], dtype=object)
    half = 1 << (frac - 1)
    up = (rest > half) | ((rest == half) & (low % 2 == 1))
    return low + up.astype(object)


def _trunc_div(m, q):
    return np.where(m < 0, -((-m) // q), m // q)


def reference(model, x, program=None) -> np.ndarray:
    """The expression's output mantissas from the documented meaning of its program, in Python integers."""
    node = model.graph['expr1']
    program = program or node.attrs['program']
    in_t = model.graph['x'].result_type
    xm = in_t.quantize(x).astype(object)
    vals = []
    for k, (op, args, value, precision) in enumerate(program):
        a = [vals[i] for i in args]
        if op == 'x':
            v = (xm[:, value], in_t.frac)
        elif op == 'const':
            t = parse_precision(precision)
            v = (np.full(len(x), int(t.quantize([value])[0]), dtype=object), t.frac)
        elif op in ('add', 'sub', 'min', 'max'):
            p, q, f = _align(a[0], a[1])
            v = ({'add': p + q, 'sub': p - q}.get(op) if op in ('add', 'sub') else
                 np.where(p < q, p, q) if op == 'min' else np.where(p > q, p, q), f)
        elif op == 'mul':
            v = (a[0][0] * a[1][0], a[0][1] + a[1][1])
        elif op == 'neg':
            v = (-a[0][0], a[0][1])
        elif op == 'abs':
            v = (np.abs(a[0][0]), a[0][1])
        elif op == 'sign':
            v = (np.sign(a[0][0]).astype(object), 0)
        elif op == 'shift':
            v = (a[0][0], a[0][1] - value)
        elif op == 'div':
            v = (_trunc_div(a[0][0], value), a[0][1])
        elif op == 'pow':
            v = (a[0][0] ** value, a[0][1] * value)
        elif op == 'round':
            v = (_round_integer(a[0][0], a[0][1], value), 0)
        elif op == 'func':
            v = _table_read(node, k, a[0], value)
        else:  # select
            p, q, f = _align(a[1], a[2])
            v = (np.where(a[0][0] > 0, p, q), f)
        if precision is not None and op not in ('const', 'func') and type_of(precision, '') is not None:
            t = parse_precision(precision)
            v = (_cast(t, v[0], v[1]), t.frac)
        vals.append(v)
    r = node.result_type
    return np.stack([_cast(r, vals[o][0], vals[o][1]).astype(np.int64) for o in node.attrs['outputs']], axis=1)


def _table_read(node, k, arg, value):
    fs = FunctionSpec.from_attrs(value[0], node.attrs['functions'][value[0]], '')
    arg_t, table = parse_precision(value[1]), node.attrs['tables'][f't{k}']
    m, f = _cast(arg_t, arg[0], arg[1]), arg_t.frac
    if fs.ranged:
        start, scale = address_constants(fs)
        p, q, f = _align((m, f), (int(start.values[0]), start.frac))
        m, f = (p - q) * int(scale.values[0]), f + scale.frac
    index = (_cast(table.index, m, f) - table.index.min_mantissa).astype(np.int64)
    return table.values[index].astype(object), table.type.frac


def emulated(model, x):
    return model.predict_mantissas(x)['expr1']


# --------------------------------------------------------------------------- bit-exactness

@pytest.mark.parametrize('precision', PRECISIONS, ids=['16_6', '12_4_rnd_sat', 'roles'])
def test_emulator_equals_exact_integer_reference(precision):
    model = convert(EXPRESSIONS, precision)
    x = inputs(model, 2000)
    np.testing.assert_array_equal(emulated(model, x), reference(model, x))


def test_reference_negative_control_one_constant_bit():
    model = convert(EXPRESSIONS, PRECISIONS[0])
    x = inputs(model, 2000)
    program = copy.deepcopy(model.graph['expr1'].attrs['program'])
    k = next(i for i, ins in enumerate(program) if ins[0] == 'const' and ins[2] == 2.5382)
    program[k][2] += parse_precision(program[k][3]).lsb  # one LSB of the constant's type
    assert not np.array_equal(emulated(model, x), reference(model, x, program))


def netlist_outputs(model, x):
    g = model.graph
    return lower_graph(g, model.intervals).evaluate([g['x'].result_type.quantize(x)])[0]


@pytest.mark.parametrize('precision', PRECISIONS, ids=['16_6', '12_4_rnd_sat', 'roles'])
def test_netlist_equals_emulator_on_10000_inputs(precision):
    model = convert(EXPRESSIONS, precision)
    x = inputs(model, 10_000, seed=1)
    np.testing.assert_array_equal(netlist_outputs(model, x), emulated(model, x))


def test_netlist_negative_control_one_constant_bit():
    model = convert(EXPRESSIONS[:6], 'ap_fixed<16,6>')
    x = inputs(model, 2000)
    want = emulated(model, x)
    node = model.graph['expr1']
    k = next(i for i, ins in enumerate(node.attrs['program']) if ins[0] == 'const' and ins[2] == 2.5382)
    node.attrs['program'][k][2] += parse_precision(node.attrs['program'][k][3]).lsb
    assert not np.array_equal(netlist_outputs(model, x), want)


def test_float_reference_equals_sympy():
    model = convert(EXPRESSIONS, PRECISIONS[0])
    x = np.random.default_rng(3).uniform(0.2, 0.9, (500, 3))
    got = float_forward(model.graph, x)[0]
    funcs = {'cos_lut': np.cos, 'exp_lut': np.exp, 'sigmoid': lambda v: 1 / (1 + np.exp(-v)),
             'erf': np.vectorize(__import__('math').erf)}
    for j, e in enumerate(EXPRESSIONS):
        f = sympy.lambdify(sympy.symbols('x0:3'), parse(e, list(LUTS)), modules=[funcs, 'numpy'])
        np.testing.assert_allclose(got[:, j], f(*x.T), rtol=1e-9, atol=1e-12, err_msg=e)


def test_emulator_within_the_documented_error_bound():
    """Exact arithmetic: the only error is the result cast (RND: half an LSB) and, for a table, its sampling."""
    model = convert(['x0*x1 - 0.75*x2 + x0**2', 'x0/3', 'tanh(x0)'], 'ap_fixed<24,8,AP_RND,AP_SAT>')
    t, r = model.graph['x'].result_type, model.graph['expr1'].result_type
    x = t.to_float(t.quantize(np.random.default_rng(4).uniform(-3, 3, (5000, 3))))
    got, want = model.predict(x), float_forward(model.graph, x)[0]
    assert np.max(np.abs(got[:, 0] - want[:, 0])) <= r.lsb / 2
    assert np.max(np.abs(got[:, 1] - want[:, 1])) <= t.lsb + r.lsb / 2  # truncated division at x's LSB
    table = model.graph['expr1'].attrs['tables'][next(iter(model.graph['expr1'].attrs['tables']))]
    bound = table.index.lsb / 2 + table.type.lsb + r.lsb / 2  # |tanh'| <= 1: half an index step, entry, result
    assert np.max(np.abs(got[:, 2] - want[:, 2])) <= bound
    assert np.max(np.abs(got[:, 2] - want[:, 2])) > r.lsb  # the table's sampling is visible at this precision


#: the input domain of the error-bound check where [-3, 3] has a pole or an overflow (low, high per input):
#: 1/x1 and log(x1) need x1 away from 0; (x0 + x1)^4 leaves ap_fixed<24,8> beyond |x0 + x1| = 3.3
DOMAIN_X1_POSITIVE = ((-3, 1, -3), (3, 3, 3))
DOMAINS = {'x0/x1': DOMAIN_X1_POSITIVE, '(x0 + x2)/(x1 - 0.5)': DOMAIN_X1_POSITIVE, 'log(x1) + x0': DOMAIN_X1_POSITIVE,
           '(x0 + x1)**4 - 2*x1**2': ((-1.5, -1.5, -3), (1.5, 1.5, 3))}


def test_emulator_within_the_computed_error_bound_of_every_expression():
    """error_bounds follows the program (fpga4ml/symbolic/error.py): finite for all 30 expressions on their
    domain ([-3, 3], or DOMAINS where a pole or an overflow lies in it), and the emulator stays within it
    on 10,000 inputs of each domain."""
    precision = {'default': 'ap_fixed<24,8,AP_RND,AP_SAT>', 'expressions': NARROW}
    model = convert(EXPRESSIONS, precision)
    t = model.graph['x'].result_type
    bounds, error = np.full(len(EXPRESSIONS), np.inf), np.full(len(EXPRESSIONS), np.nan)
    for low, high in {((-3,) * 3, (3,) * 3), *DOMAINS.values()}:
        cols = [j for j, e in enumerate(EXPRESSIONS) if DOMAINS.get(e, ((-3,) * 3, (3,) * 3)) == (low, high)]
        x = t.to_float(t.quantize(np.random.default_rng(9).uniform(low, high, (10_000, 3))))
        bounds[cols] = error_bounds(model, low, high)[cols]
        error[cols] = np.max(np.abs(model.predict(x) - float_forward(model.graph, x)[0]), axis=0)[cols]
    assert np.all(np.isfinite(bounds)), [e for e, b in zip(EXPRESSIONS, bounds) if not np.isfinite(b)]
    bad = [(e, b, o) for e, b, o in zip(EXPRESSIONS, bounds, error) if not o <= b]
    assert not bad, bad
    x = t.to_float(t.quantize(np.random.default_rng(9).uniform(-3, 3, (10_000, 3))))
    k = EXPRESSIONS.index('2.5382*x0 - 0.5')  # negative control: the constant one LSB off breaks its bound
    changed = convert([e.replace('2.5382', repr(2.5382 + 2 ** -16)) for e in EXPRESSIONS], precision)
    assert np.max(np.abs(changed.predict(x)[:, k] - float_forward(model.graph, x)[0][:, k])) > bounds[k]


def test_hoelder_bound_where_the_slope_is_unbounded():
    """sqrt and x^p (0 < p < 1) have an unbounded slope at 0: the table's error is bounded by moved^p."""
    from fpga4ml.symbolic.error import change_bound

    assert change_bound('sqrt', 0.0, 1.0, 2 ** -10) == pytest.approx(2 ** -5)
    assert change_bound('pow:0.25', 0.0, 1.0, 2 ** -8) == pytest.approx(2 ** -2)
    assert change_bound('sqrt', 1.0, 4.0, 2 ** -10) == pytest.approx(2 ** -11)  # the slope bound is smaller
    assert change_bound('log', 0.0, 1.0, 2 ** -10) == np.inf  # no Hoelder bound: log diverges at 0
    x = np.linspace(0, 2 ** -10, 1025)
    assert np.max(np.sqrt(x) - np.sqrt(x[0])) <= change_bound('sqrt', 0.0, 1.0, 2 ** -10)


@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_csim_equals_emulator_with_negative_control(tmp_path):
    exprs = ['x0**2 + 2.5382*cos_lut(x1) - 0.5', 'x0/3 - Abs(x1)*x2 + sign(x0)', 'Min(x0, x1) / (x2 + 0.5)',
             'Piecewise((x0, x0 > x1), (x1**3, x1 >= 0.5), (-x2, True))', 'sqrt(x0) + exp_lut(x1) + sigmoid(x2)']
    precision = {'default': 'ap_fixed<16,6>', 'expressions': {'x0**2': 'ap_fixed<12,5,AP_RND,AP_SAT>'}}
    model = convert(exprs, precision, tmp_path / 'prj')
    x = inputs(model, 2000, seed=5)
    csim = model.predict(x, sim='csim')
    np.testing.assert_array_equal(csim, model.predict(x))
    changed = [exprs[0].replace('2.5382', repr(2.5382 + 2 ** -10))] + exprs[1:]  # one LSB of ap_fixed<16,6>
    other = convert(changed, precision, tmp_path / 'other')
    assert not np.array_equal(csim, other.predict(x))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_csim_equals_emulator_30_expressions(tmp_path):
    model = convert(EXPRESSIONS, PRECISIONS[0], tmp_path / 'prj')
    x = inputs(model, 10_000, seed=6)
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))


# --------------------------------------------------------------------------- tables and rounding

def test_lut_index_rounding_nearest_and_truncate_differ_as_documented():
    """Entry i holds f(a + i*step); 'nearest' reads round((x - a)/step), 'truncate' floor, both clamped."""
    lut = {'f_lut': {'math_func': 'sin', 'range_start': -4, 'range_end': 4, 'table_size': 16}}
    x = np.array([[-4.0 + 0.75 * 0.5], [-4 + 3.25 * 0.5], [-3.0], [10.0], [-10.0]])  # step 0.5
    outs = {}
    for rounding in ('nearest', 'truncate'):
        model = convert('f_lut(x0)', 'ap_fixed<24,8,AP_RND,AP_SAT>', n_symbols=1, lut_functions=lut,
                        lut_rounding=rounding)
        outs[rounding] = model.predict(x).ravel()
    t = parse_precision('ap_fixed<24,8>')
    sample = lambda i: t.to_float(t.quantize(np.sin(-4 + 0.5 * np.asarray(i, dtype=float))))  # noqa: E731
    np.testing.assert_allclose(outs['nearest'], sample([1, 3, 2, 15, 0]), atol=2 ** -16)
    np.testing.assert_allclose(outs['truncate'], sample([0, 3, 2, 15, 0]), atol=2 ** -16)
    assert outs['nearest'][0] != outs['truncate'][0]


def test_type_addressed_table_is_exact_for_narrow_arguments():
    fs = FunctionSpec('exp', 1024)
    arg_t, table_t = parse_precision('ap_fixed<8,3>'), parse_precision('ap_fixed<18,8>')
    table = build_table(fs, arg_t, table_t)
    assert table.index == arg_t.with_(rounding='RND_CONV', overflow='SAT') and len(table) == 256
    m = np.arange(arg_t.min_mantissa, arg_t.max_mantissa + 1)
    np.testing.assert_array_equal(table.values, table_t.quantize(np.exp(arg_t.to_float(m))))


def test_domains_and_poles_saturate():
    t = parse_precision('ap_fixed<16,6>')
    assert real_function('sqrt')(np.array([-1.0]))[0] == 0
    table = build_table(FunctionSpec('inv', 1024), parse_precision('ap_fixed<8,4>'), t)
    values = dict(zip(range(-128, 128), table.values))
    assert values[0] == t.max_mantissa and values[1] == t.quantize([16.0])[0]  # 1/0 saturates; 1/(1/16) = 16
    assert values[-1] == t.quantize([-16.0])[0]
    log = build_table(FunctionSpec('log', 1024), parse_precision('ap_fixed<8,4>'), t)
    assert log.values[128] == t.min_mantissa  # log(0) saturates low


# --------------------------------------------------------------------------- parsing and safety

@pytest.mark.parametrize('text', [
    "__import__('os').system('touch /tmp/fpga4ml_pwned')", 'x0.__class__', 'lambda: 1', 'exec("1")',
    'foo(x0)', "x0 + 'a'", '[x0]', 'x0 if x0 else x1', 'os.system', 'x0; x1', 'eval', 'getattr(x0, "y")',
    '9**9**9**9', '(9**9)**(9**9) * x0', 'x0**99'])
def test_malicious_or_unknown_text_is_refused(text):
    with pytest.raises(ValueError):
        convert(text, n_symbols=2)
    assert not os.path.exists('/tmp/fpga4ml_pwned')


def test_error_messages_name_the_problem():
    with pytest.raises(ValueError, match="unknown name 'foo'"):
        convert('foo(x0) + x1', n_symbols=2)
    with pytest.raises(ValueError, match="'Heaviside' is not supported|Heaviside"):
        convert(sympy.Heaviside(sympy.Symbol('x0')), n_symbols=1)
    with pytest.raises(ValueError, match='n_symbols'):
        convert('x0 + x3', n_symbols=2)
    with pytest.raises(ValueError, match='match no sub-expression'):
        convert('x0 + x1', {'expressions': {'x0*x2': 'ap_fixed<8,3>'}}, n_symbols=3)
    with pytest.raises(ValueError, match='not an identifier'):
        convert('x0', n_symbols=1, lut_functions={'a*/b': {'math_func': 'cos', 'range_start': 0, 'range_end': 1,
                                                            'table_size': 8}})
    with pytest.raises(GraphError, match='does not fit its type'):
        convert('x0 + 1000', 'ap_fixed<16,6>', n_symbols=1)


def test_program_attributes_are_validated():
    graph, config = build_graph('x0 + cos(x1)', 2)
    node = graph['expr1']
    node.attrs['program'][1] = ['add', [5, 0], None, None]  # an operand that is not computed before
    with pytest.raises(GraphError, match='instruction 1'):
        convert_graph(graph, config)
    graph, config = build_graph('x0 + cos(x1)', 2)
    graph['expr1'].attrs['program'][0] = ['system', [], 'ls', None]
    with pytest.raises(GraphError, match="unknown op 'system'"):
        convert_graph(graph, config)


def test_shared_subexpressions_are_computed_once_and_overrides_apply():
    graph, _ = build_graph(['cos(x0*x1) + x0*x1', 'x0*x1'], 2,
                           precision={'default': 'ap_fixed<16,6>', 'expressions': {'x0*x1': 'ap_fixed<10,4>',
                                                                                   'cos(x0*x1)': 'ap_fixed<9,2>'}})
    program = graph['expr1'].attrs['program']
    assert sum(ins[0] == 'mul' for ins in program) == 1
    mul = next(ins for ins in program if ins[0] == 'mul')
    func = next(ins for ins in program if ins[0] == 'func')
    assert mul[3] == 'ap_fixed<10,4>' and func[3] == 'ap_fixed<9,2>' and func[2][1] == 'ap_fixed<10,4>'


def test_auto_result_is_exact():
    model = convert('x0*x1 + x2', {'default': 'ap_fixed<8,3>', 'result': 'auto'})
    x = inputs(model, 1000)
    np.testing.assert_array_equal(emulated(model, x), reference(model, x))
    t = model.graph['x'].result_type
    xq = t.to_float(t.quantize(x))
    np.testing.assert_array_equal(model.predict(x).ravel(), xq[:, 0] * xq[:, 1] + xq[:, 2])


# --------------------------------------------------------------------------- PySR

def write_hall_of_fame(path):
    path.write_text('Complexity,Loss,Equation\n'
                    '1,0.9,"x0"\n'
                    '3,0.2,"(x0 * 2.5)"\n'
                    '5,0.05,"((x0 * 2.5) + cos_lut(x1))"\n'
                    '8,0.049,"(((x0 * 2.5) + cos_lut(x1)) - (x1 ^ 2))"\n', encoding='utf-8')
    return path


def test_pysr_hall_of_fame_csv(tmp_path):
    path = write_hall_of_fame(tmp_path / 'hall_of_fame.csv')
    rows = read_hall_of_fame(path)
    assert choose_equation(rows, 'best') == '((x0 * 2.5) + cos_lut(x1))'  # the best score among losses <= 1.5 x 0.049
    assert choose_equation(rows, 'accuracy') == rows[3]['equation']
    assert choose_equation(rows, 1) == '(x0 * 2.5)'
    model = convert(str(path), n_symbols=2, equation=3)
    direct = convert('x0*2.5 + cos_lut(x1) - x1**2', n_symbols=2)
    x = inputs(model, 500)
    np.testing.assert_array_equal(model.predict(x), direct.predict(x))


def test_pysr_sympy_output_converts():
    x0, x1 = sympy.symbols('x0 x1')
    cos_lut = sympy.Function('cos_lut')
    expr = 2.5382 * cos_lut(x1) + x0 ** 2 - 0.5  # what PySRRegressor.sympy() returns with a custom operator
    model = convert(expr, n_symbols=2)
    x = inputs(model, 500)
    np.testing.assert_array_equal(emulated(model, x), reference(model, x))


def test_init_pysr_lut_functions_without_julia():
    luts = init_pysr_lut_functions(init_defaults=True, function_definitions=[
        'my_sin(x) = math_lut(sin, x, N=256, range_start=-2, range_end=2)'])
    assert 'function math_lut' in luts['julia'][0] and 'my_sin' in luts['extra_sympy_mappings']
    mine = luts['lut_functions'][-1]
    assert (mine.name, mine.math_func, mine.range_start, mine.range_end, mine.table_size) == \
        ('my_sin', 'sin', -2, 2, 256)
    model = convert('my_sin(x0) + cos_lut(x1)', n_symbols=2, lut_functions=luts['lut_functions'])
    assert len(model.graph['expr1'].attrs['tables']) == 2
    with pytest.raises(ValueError, match='not a LUT function definition'):
        init_pysr_lut_functions(function_definitions=['run(x) = system("ls")'])


def test_hls4ml_tutorial_calls(tmp_path):
    """The calls of hls4ml's symbolic-regression tutorial, unchanged after the import swap."""
    import fpga4ml as hls4ml

    expr = 'x0**2 + 2.5382*cos_lut(x1) - 0.5'
    lut_functions = {'cos_lut': {'math_func': 'cos', 'range_start': -4, 'range_end': 4, 'table_size': 2048}}
    hls_model = hls4ml.converters.convert_from_symbolic_expression(
        expr, n_symbols=16, output_dir=str(tmp_path / 'my-hls-test'), precision='ap_fixed<18,6>',
        part='xcvu9p-flga2577-2-e', lut_functions=lut_functions, hls_include_path='', hls_libs_path='')
    hls_model.write()
    hls_model.compile()
    x = np.random.default_rng(0).uniform(0, 2, (100, 16))
    y = hls_model.predict(x)
    assert y.shape in ((100,), (100, 1))
    np.testing.assert_allclose(np.ravel(y), x[:, 0] ** 2 + 2.5382 * np.cos(x[:, 1]) - 0.5, atol=2e-2)
    assert (tmp_path / 'my-hls-test' / 'firmware' / 'myproject.cpp').exists()
    lut = LUTFunction('cos_lut', 'cos', -4, 4, 2048)
    again = hls4ml.converters.convert_from_symbolic_expression(expr, n_symbols=16, lut_functions=[lut],
                                                               output_dir=str(tmp_path / 'b'),
                                                               precision='ap_fixed<18,6>')
    np.testing.assert_array_equal(again.predict(x), y)


# --------------------------------------------------------------------------- Verilog RTL, io_stream, example

@pytest.mark.slow
def test_verilator_rtl_equals_emulator_with_negative_control(tmp_path):
    exprs = ['x0**2 + 2.5382*cos_lut(x1) - 0.5', 'x0/3 - Abs(x1)*x2 + sign(x0)', 'Min(x0, x1) / (x2 + 0.5)',
             'Piecewise((x0, x0 > x1), (x1**3, x1 >= 0.5), (-x2, True))', 'sqrt(x0) + exp(x1) + sigmoid(x2)']
    model = convert(exprs, 'ap_fixed<12,5>', tmp_path / 'v', backend='Verilog')
    x = inputs(model, 10_000, seed=7)
    rtl = model.predict(x, sim='rtl')
    np.testing.assert_array_equal(rtl, model.predict(x))
    changed = [exprs[0].replace('2.5382', repr(2.5382 + 2 ** -7))] + exprs[1:]  # one LSB of ap_fixed<12,5>
    assert not np.array_equal(rtl, convert(changed, 'ap_fixed<12,5>', tmp_path / 'w').predict(x))


@pytest.mark.slow
def test_verilator_rtl_equals_emulator_30_expressions(tmp_path):
    model = convert(EXPRESSIONS, PRECISIONS[0], tmp_path / 'v', backend='Verilog')
    x = inputs(model, 10_000, seed=6)
    np.testing.assert_array_equal(model.predict(x, sim='rtl'), model.predict(x))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_io_stream_csim_equals_emulator(tmp_path):
    model = convert(EXPRESSIONS[:12], PRECISIONS[1], tmp_path / 's', io_type='io_stream')
    x = inputs(model, 3000, seed=8)
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))


@pytest.mark.slow
def test_example_runs(tmp_path, capsys):
    import importlib

    spec = importlib.util.spec_from_file_location(
        'symbolic_expression', os.path.join(os.path.dirname(__file__), '..', 'examples', 'symbolic_expression.py'))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(['--out', str(tmp_path / 'ex')]) == 0
    out = capsys.readouterr().out
    assert 'PySR would pick: (((x0 * x0) + (cos_lut(x1) * 2.5382)) - 0.5)' in out
    error = float(out.split('max |error| ')[1].split(',')[0])
    assert error < 0.02  # half a table step (8/1024) times 2.5382, plus the LSBs


def test_hls_code_declares_exact_types_and_no_math_header(tmp_path):
    model = convert(['x0**2 + 2.5382*cos_lut(x1) - 0.5', 'exp(x0) / x1'], 'ap_fixed<16,6>', tmp_path / 'h')
    model.write()
    code = (tmp_path / 'h' / 'firmware' / 'myproject.cpp').read_text()
    assert 'hls_math' not in code and 'hls::' not in code and 'std::' not in code
    assert 'y[0] = pow(x0, 2) + 2.5382 cos_lut(x1) - 0.5' in code
    assert code.count('_table[') >= 3  # cos_lut, exp, 1/x1


def test_constant_subexpressions_fold_into_one_constant():
    graph, _ = build_graph('x0/pi + 2**x1 + log(x0, 2) + sqrt(2)', 2)
    ops = [ins[0] for ins in graph['expr1'].attrs['program']]
    assert ops.count('func') == 2  # exp(x1 * log 2) and log(x0): no table of a constant
    model = convert('x0/pi + 2**x1 + log(x0, 2) + sqrt(2)', 'ap_fixed<24,8>', n_symbols=2)
    x = np.array([[1.5, 0.25], [3.0, -1.0]])
    want = x[:, 0] / np.pi + 2 ** x[:, 1] + np.log2(x[:, 0]) + np.sqrt(2)
    np.testing.assert_allclose(np.ravel(model.predict(x)), want, atol=0.02)


def test_saved_model_round_trip(tmp_path):
    from fpga4ml.converters import load_saved_model

    model = convert(EXPRESSIONS[:20], PRECISIONS[1], tmp_path / 'a')
    again = load_saved_model(model.save(tmp_path / 'model'))
    x = inputs(model, 1000, seed=10)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.graph['expr1'].attrs['program'] == model.graph['expr1'].attrs['program']


def test_verilog_lowered_once_and_reused_by_write(tmp_path, monkeypatch):
    """The conversion's width check lowers the expression; write() and estimate() reuse that design, a config
    change lowers it again."""
    import sys

    design_module = sys.modules['fpga4ml.backends.verilog.design']
    calls = []
    real = design_module.lower_graph
    monkeypatch.setattr(design_module, 'lower_graph', lambda *a, **k: calls.append(1) or real(*a, **k))
    model = convert(['x0*x1 + sin(x2)', 'x0/3 - x1**2'], 'ap_fixed<12,5>', tmp_path / 'v', backend='Verilog')
    assert len(calls) == 1
    model.write()
    model.estimate()
    assert len(calls) == 1 and (tmp_path / 'v' / 'myproject.v').exists()
    model.set_layer_setting('expr1', 'Trace', True)  # any config change: lowered again
    model.write()
    assert len(calls) == 2
    model.write()
    assert len(calls) == 2
