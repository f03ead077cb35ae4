"""Symbolic expressions: the operators added after the first suite (issue 15, item 3).

floor, ceiling, rint (Julia's round), Mod by a constant, Eq/Ne/And/Or/Not conditions (in Piecewise and
as 0/1 values), asinh/acosh/atanh/erfc/gamma tables and PySR's operator names, through the same checks
as tests/test_symbolic.py: the emulator equals the exact integer reference written from the program's
documented meaning, the netlist, the g++ C simulation and the Verilator simulation equal the emulator on
10,000 inputs, each with a negative control (one constant one LSB off).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from fpga4ml.emulator.reference import float_forward
from fpga4ml.fixed import parse_precision
from fpga4ml.symbolic.error import error_bounds
from fpga4ml.symbolic.parse import parse, rint
from test_symbolic import HAS_CSIM, convert, emulated, inputs, netlist_outputs, reference

#: every new operator and PySR name, nested, over 3 inputs
OPERATORS = [
    'floor(x0) + ceiling(x1*x2)', 'round(3*x0) - rint(x1/4)', 'Mod(x0, 2.5) + Mod(x1, 0.75)', 'Mod(x0*x1, -1.5)',
    'Mod(x2, 4) - mod(x0, 3)', 'Piecewise((x0, Eq(floor(x1), 1)), (x2, True))',
    'Piecewise((x0, Ne(x1, x2)), (2*x1, True))', 'Eq(floor(x0), floor(x1))', 'x0 > x1',
    'Piecewise((1.5, And(x0 > 0, x1 <= x2)), (x2, Or(x0 < -1, Not(x1 > 0))), (0, True))',
    'asinh(x0) + acosh(Abs(x1) + 1)', 'atanh(x0/32)', 'erfc(x0) + gamma(x1/8 + 3)', 'atanh_clip(x1/4)',
    'logical_or(x0, x1) + logical_and(x1, x2) + greater(x0, x2)', 'cond(x0, x1) + relu(x2) + inv(x1/4 + 16)',
    'log10_abs(x0) + sqrt_abs(x1) + log1p(Abs(x2))', 'cube(x0/4) - square(x1) + neg(x2) + ceil(x0/3)',
    'pow_abs(x0, 1.5) + acosh_abs(x1/2)', 'plus(mult(x0, 2.5), div(x1, 4)) - sub(x2, 1)',
]
PRECISIONS = ['ap_fixed<16,6>', {'default': 'ap_fixed<14,5,AP_RND,AP_SAT>', 'constant': 'ap_fixed<18,6>'}]


@pytest.mark.parametrize('precision', PRECISIONS, ids=['16_6', '14_5_rnd_sat'])
def test_emulator_equals_exact_integer_reference(precision):
    model = convert(OPERATORS, precision)
    x = inputs(model, 2000)
    np.testing.assert_array_equal(emulated(model, x), reference(model, x))


def _one_lsb_off(exprs, precision, **kw):
    """The suite with the constant 2.5 of its 3rd expression moved by one LSB of the constant type."""
    lsb = parse_precision(precision if isinstance(precision, str) else precision['constant']).lsb
    return convert([e.replace('2.5', repr(2.5 + lsb)) if j == 2 else e for j, e in enumerate(exprs)], precision, **kw)


@pytest.mark.parametrize('precision', PRECISIONS, ids=['16_6', '14_5_rnd_sat'])
def test_netlist_equals_emulator_on_10000_inputs_with_negative_control(precision):
    model = convert(OPERATORS, precision)
    x = inputs(model, 10_000, seed=1)
    want = emulated(model, x)
    np.testing.assert_array_equal(netlist_outputs(model, x), want)
    assert not np.array_equal(netlist_outputs(_one_lsb_off(OPERATORS, precision), x), want)


@pytest.mark.slow  # about 50 s of g++
@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_csim_equals_emulator_on_10000_inputs_with_negative_control(tmp_path):
    model = convert(OPERATORS, PRECISIONS[0], tmp_path / 'prj')
    x = inputs(model, 10_000, seed=2)
    csim = model.predict(x, sim='csim')
    np.testing.assert_array_equal(csim, model.predict(x))
    assert not np.array_equal(csim, _one_lsb_off(OPERATORS, PRECISIONS[0], tmp=tmp_path / 'o').predict(x))


@pytest.mark.slow
def test_verilator_rtl_equals_emulator_with_negative_control(tmp_path):
    precision = PRECISIONS[1]
    model = convert(OPERATORS, precision, tmp_path / 'v', backend='Verilog')
    x = inputs(model, 10_000, seed=3)
    rtl = model.predict(x, sim='rtl')
    np.testing.assert_array_equal(rtl, model.predict(x))
    assert not np.array_equal(rtl, _one_lsb_off(OPERATORS, precision, tmp=tmp_path / 'w').predict(x))


def test_exact_values_at_ties_signs_and_boundaries():
    """floor/ceiling/rint at ties and negative values, Mod with the divisor's sign, Eq exactly on equality."""
    exprs = ['floor(x0)', 'ceiling(x0)', 'rint(x0)', 'Mod(x0, 3)', 'Mod(x0, -3)', 'Eq(x0, x1)', 'Ne(x0, x1)',
             'Mod(x0, 0.75)']
    model = convert(exprs, 'ap_fixed<16,6>', n_symbols=2)
    x = np.array([[-0.5, -0.5], [2.5, 1.0], [3.5, 3.5], [-2.5, 0.0], [-1.0, -1.0 + 2 ** -10], [7.25, 7.25]])
    want = np.array([[-1, 0, 0, 2.5, -0.5, 1, 0, 0.25],
                     [2, 3, 2, 2.5, -0.5, 0, 1, 0.25],
                     [3, 4, 4, 0.5, -2.5, 1, 0, 0.5],
                     [-3, -2, -2, 0.5, -2.5, 0, 1, 0.5],
                     [-1, -1, -1, 2, -1, 0, 1, 0.5],
                     [7, 8, 7, 1.25, -1.75, 1, 0, 0.5]])
    np.testing.assert_array_equal(model.predict(x), want)
    assert rint(sympy.Rational(5, 2)) == 2 and rint(sympy.Rational(7, 2)) == 4 and rint(sympy.Float(-2.5)) == -2


def test_mod_by_a_non_dyadic_constant_is_exact_at_the_quantized_divisor():
    model = convert('Mod(x0, 0.1)', 'ap_fixed<16,6>', n_symbols=1)
    c = parse_precision('ap_fixed<16,6>').quantize([0.1])[0] * 2.0 ** -10  # 0.099609375
    t = model.graph['x'].result_type
    x = t.to_float(t.quantize(np.random.default_rng(4).uniform(-20, 20, (2000, 1))))
    np.testing.assert_array_equal(model.predict(x).ravel(), np.mod(x[:, 0], c))


def test_float_reference_is_the_real_formula():
    """The float reference (real constants and functions) equals sympy's numpy functions of the expressions."""
    model = convert(OPERATORS, PRECISIONS[0])
    x = np.random.default_rng(5).uniform(0.2, 0.9, (500, 3))
    got = float_forward(model.graph, x)[0]
    modules = [{'rint': np.rint, 'erfc': np.vectorize(__import__('math').erfc),
                'gamma': np.vectorize(__import__('math').gamma)}, 'numpy']
    for j, e in enumerate(OPERATORS):
        f = sympy.lambdify(sympy.symbols('x0:3'), parse(e), modules=modules)
        want = np.broadcast_to(np.asarray(f(*x.T), dtype=float), (len(x),))
        np.testing.assert_allclose(got[:, j], want, rtol=1e-9, atol=1e-12, err_msg=e)


def test_error_bounds_of_the_continuous_new_functions():
    exprs = ['asinh(x0) + acosh(Abs(x1) + 1)', 'atanh(x0/8)', 'erfc(x0) + gamma(x1/4 + 2)', 'floor(x0) + rint(x1)',
             'Mod(x0, 0.75)', 'Piecewise((x0, Eq(x1, x2)), (x2, True))']
    model = convert(exprs, 'ap_fixed<24,8,AP_RND,AP_SAT>')
    t = model.graph['x'].result_type
    x = t.to_float(t.quantize(np.random.default_rng(6).uniform(-3, 3, (10_000, 3))))
    bounds = error_bounds(model, -3, 3)
    error = np.max(np.abs(model.predict(x) - float_forward(model.graph, x)[0]), axis=0)
    assert np.all(np.isfinite(bounds))  # acosh's slope is unbounded at 1: its Hoelder bound
    assert np.all(error <= bounds), list(zip(exprs, bounds, error))


def test_refused_operators_name_the_problem():
    with pytest.raises(ValueError, match=r'Mod.*must be a constant'):
        convert('Mod(x0, x1)', n_symbols=2)
    with pytest.raises(ValueError, match=r'is 0 in the constant type'):
        convert('Mod(x0, 0.0001)', 'ap_fixed<16,6>', n_symbols=1)
    x0, x1 = sympy.symbols('x0 x1')
    with pytest.raises(ValueError, match=r'condition .*Xor.* is not supported; conditions are'):
        convert(sympy.Piecewise((x0, sympy.Xor(x0 > 0, x1 > 0)), (x1, True)), n_symbols=2)
    with pytest.raises(ValueError, match=r"besselj.*not supported.*'floor'.*'gamma'"):
        convert(sympy.besselj(1, x0), n_symbols=1)
    with pytest.raises(ValueError, match="unknown name 'Xor'"):
        convert('Xor(x0 > 0, x1 > 0)', n_symbols=2)


def test_pysr_hall_of_fame_with_pysr_operator_names(tmp_path):
    """A hall-of-fame equation as PySR writes it (its Julia operator names) converts as its sympy() would."""
    path = tmp_path / 'hall_of_fame.csv'
    path.write_text('Complexity,Loss,Equation\n1,0.9,"x0"\n'
                    '9,0.1,"((round(x0) + mod(x1, 2.0)) * relu(x2)) - greater(x0, x1)"\n', encoding='utf-8')
    model = convert(str(path), n_symbols=3, equation=1)
    x0, x1, x2 = sympy.symbols('x0:3')
    as_sympy = ((rint(x0) + sympy.Mod(x1, 2)) * sympy.Max(x2, 0)
                - sympy.Piecewise((1, x0 > x1), (0, True)))
    direct = convert(as_sympy, n_symbols=3)
    x = inputs(model, 2000, seed=7)
    np.testing.assert_array_equal(model.predict(x), direct.predict(x))
    np.testing.assert_array_equal(emulated(model, x), reference(model, x))


def test_saved_model_round_trip_keeps_the_new_ops(tmp_path):
    from fpga4ml.converters import load_saved_model

    model = convert(OPERATORS, PRECISIONS[1], tmp_path / 'a')
    again = load_saved_model(model.save(tmp_path / 'model'))
    x = inputs(model, 1000, seed=8)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
