"""examples/symbolic_jets.py: its least-squares expression search, and its --quick run's printed numbers."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.converters import convert_from_symbolic_expression
from fpga4ml.emulator.reference import float_forward
from fpga4ml.fixed import parse_precision
from fpga4ml.symbolic.error import error_bounds
from fpga4ml.symbolic.functions import FunctionSpec, build_table

from test_examples import load_example  # examples/<name>.py as a module


@pytest.fixture(scope='module')
def example():
    return load_example('symbolic_jets')


def printed_percent(out: str, label: str) -> float:
    """The percentage printed after `label` in the accuracy table, as a fraction."""
    match = re.search(re.escape(label) + r'\s+([0-9.]+) %', out)
    assert match, f'{label!r} not printed:\n{out}'
    return float(match.group(1)) / 100


def test_forward_selection_recovers_a_sparse_linear_model(example):
    rng = np.random.default_rng(0)
    columns = rng.normal(size=(500, 12))
    target = 0.75 + 2.0 * columns[:, 3] - 0.5 * columns[:, 7]
    picked, coef = example.forward_selection(columns, target, 2)
    assert picked == [3, 7]
    np.testing.assert_allclose(coef, [0.75, 2.0, -0.5], atol=1e-9)
    # one term too few cannot fit it
    _, coef1 = example.forward_selection(columns, target, 1)
    assert not np.allclose(coef1, [0.75, 2.0], atol=1e-3)
    assert example.expression_text(['x3', 'x7'], np.array([0.75, 2.0, -0.5])) == '0.75 + 2*x3 - 0.5*x7'


def test_searched_expressions_fixed_point_follows_float(example):
    (x, y, x_test, _), source = example.load_jets(3000, 2000, 1, data_home=str(Path('/nonexistent')))
    assert source.startswith('SYNTHETIC')
    expr = example.search_expressions(x, y, 4)
    assert len(expr) == 5 and all('x' in e for e in expr)

    def error(precision):
        model = convert_from_symbolic_expression(expr, n_symbols=16, precision=precision,
                                                 lut_functions=example.LUT_FUNCTIONS, output_dir='unused')
        return np.max(np.abs(model.predict(x_test) - float_forward(model.graph, x_test)[0]))

    assert error(example.PRECISION) < 0.03          # ap_fixed<16,6>: 10 fraction bits, 256-entry tables
    assert error('ap_fixed<8,4>') > 0.05            # control: 4 fraction bits do not stay that close


def test_quick_run_prints_sane_numbers(example, tmp_path, capsys):
    assert example.main(['--quick', '--no-synth', '--out', str(tmp_path / 'prj')]) == 0
    out = capsys.readouterr().out
    assert 'SYNTHETIC stand-in' in out or 'OpenML' in out
    fixed = printed_percent(out, 'expressions, ap_fixed<16,6>, sin_lut/cos_lut')
    floating = printed_percent(out, 'expressions, float (real sin/cos)')
    mlp = printed_percent(out, 'JSC MLP, Keras float32')
    assert fixed > 0.3 and floating > 0.3 and mlp > 0.3    # 5 classes: chance is 0.2
    assert abs(fixed - floating) < 0.02
    agree = float(re.search(r'fixed \(LUT\) vs float expressions: ([0-9.]+) %', out).group(1))
    assert agree > 97
    rows = {m.group(1): [int(v.replace(',', '')) for v in m.group(2, 3)]
            for m in re.finditer(r'^  (expressions|JSC MLP)\s+(\d+)\s+([\d,]+)', out, re.M)}
    assert rows['expressions'][0] < rows['JSC MLP'][0]      # latency in clocks
    assert rows['expressions'][1] < rows['JSC MLP'][1]      # estimated LUTs
    assert (tmp_path / 'prj' / 'hls_lut').is_dir()


@pytest.mark.slow
def test_quick_run_synthesizes_the_expressions(example, tmp_path):
    if importlib.util.find_spec('pyosys') is None:
        pytest.skip('pyosys is not installed')
    results = example.run(example.parse_args(['--quick', '--out', str(tmp_path / 'prj')]))
    expr_fw = results['expr_fw']
    assert expr_fw['LUT'] > 0 and expr_fw['LUT'] < results['mlp_fw']['est_LUT']
    assert (tmp_path / 'prj' / 'verilog_expr' / 'synth_report.json').is_file()


#: five expressions in the form of the tutorial's PySR output (sin(u)*cos(u) from its `sc` operator,
#: products inside the sin argument, nested products of sums); our own coefficients. Two constructs
#: of the tutorial's own expressions have tests of their own below: sin/cos of a constant, which its
#: `replace('sin', 'sin_lut')` turns into a LUT call of a constant, and a product whose exact type is
#: wider than 64 bits.
TUTORIAL_FORM = [
    '-0.1630*sin(2*x14 - 1.037)*cos(2*x14 - 1.037)'
    ' - sin(x14 - (0.9238 - 0.1193*x3)*(-x15 + 2*x2 - 0.3817) + 1.761)',
    '(-(0.5822*sin(0.8381*x14)*cos(0.8381*x14) - 0.5325)'
    ' + sin(x14 - 0.3924*x15 + x3 + 0.5117)*cos(x14 - 0.3924*x15 + x3 + 0.5117))*(0.5610*sin(x15) - 0.4728) - 0.8406',
    '0.4924*(sin(x3)*cos(x3) + sin(x15 + 0.7678*x3)*cos(x15 + 0.7678*x3))*(0.3 + sin(x2)*cos(x2))'
    ' - sin(x14 + 0.2572*x15*x3 - x2 - x3 + 0.6644)',
    '0.4107*(0.9299 - sin(0.5938*x15))*(sin(x14)*cos(x14) + 5.255*sin(0.7191 - x3)*cos(0.7191 - x3)) - 0.8638',
    '(1.075 - sin(-x14 - 0.4095)*cos(-x14 - 0.4095))*(-0.1574*x15 - sin(x14 - 4.259)*cos(x14 - 4.259) - 0.6902)',
]
LUT_256 = {'sin_lut': {'math_func': 'sin', 'range_start': -8, 'range_end': 8, 'table_size': 256},
           'cos_lut': {'math_func': 'cos', 'range_start': -8, 'range_end': 8, 'table_size': 256}}


HAS_CSIM = shutil.which('g++') is not None and importlib.util.find_spec('hls4ml') is not None
#: the tutorial's form of a LUT call of a constant (its sin(-0.75052315) after replace('sin', 'sin_lut'))
C = -0.75052315


def sin_lut_entry(c: float, argument: str = 'ap_fixed<16,6>', table: str = 'ap_fixed<16,6>') -> float:
    """sin_lut(c) by hand: c quantized into the argument type, its range address (round half to even), the entry."""
    spec = FunctionSpec('sin', 256, 'nearest', -8.0, 8.0)
    arg_t, table_t = parse_precision(argument), parse_precision(table)
    a = float(arg_t.to_float(arg_t.quantize(np.asarray([c])))[0])
    address = int(np.clip(np.round((a + 8.0) * 256 / 16), 0, 255))
    return float(table_t.to_float(build_table(spec, arg_t, table_t).values[address]))


def test_lut_function_of_a_constant_is_the_table_entry_it_addresses():
    """sin_lut(c) means the table entry an input fixed to c reads, not the real sin(c) quantized."""
    entry = sin_lut_entry(C)
    real = float(parse_precision('ap_fixed<16,6>').to_float(parse_precision('ap_fixed<16,6>').quantize(
        np.asarray([np.sin(C)])))[0])
    assert entry != real  # the two meanings differ here, so the test tells them apart
    model = convert_from_symbolic_expression(['sin_lut(-0.75052315) + x0', 'sin_lut(-0.75052315) - sin_lut(x1)',
                                              'sin_lut(-0.75)*cos_lut(-0.75)*x0'], n_symbols=2,
                                             lut_functions=LUT_256, output_dir='unused')
    y = model.predict(np.asarray([[0.0, C]]))
    assert y[0, 0] == entry and y[0, 1] == 0.0  # the constant's entry == the entry of an input fixed to it
    assert y[0, 2] == 0.0  # a product of two LUT calls of constants (the tutorial's form) converts; x0 = 0
    x = np.random.default_rng(2).uniform(-32, 32, (500, 2))
    netlist = lower_graph(model.graph, model.intervals).evaluate([model.graph['x'].result_type.quantize(x)])[0]
    np.testing.assert_array_equal(netlist, model.graph['expr1'].result_type.quantize(model.predict(x)))
    other = convert_from_symbolic_expression('sin_lut(-0.75052315 + 0.0625) + x0', n_symbols=1,  # negative control:
                                             lut_functions=LUT_256, output_dir='unused')  # the next entry
    assert other.predict(np.zeros((1, 1)))[0, 0] != entry


def test_unsupported_function_of_a_constant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown name 'foo'"):
        convert_from_symbolic_expression('foo(0.5)*x0', n_symbols=1, lut_functions=LUT_256, output_dir='unused')
    with pytest.raises(ValueError, match='non-finite or complex number'):
        convert_from_symbolic_expression('log(-1)*x0', n_symbols=1, output_dir='unused')


#: an exact product of five ap_fixed<16,6> inputs needs 76 bits, beyond a 64-bit integer; the result
#: saturates and rounds, so both its high and its low bits are compared
WIDE = ['x0*x1*x2*x3*x4', '(x0*x1*x2*x3 + 3.3)*x4*x2', 'sin_lut(-0.75052315)*cos_lut(x0)']
WIDE_PRECISION = {'default': 'ap_fixed<16,6>', 'result': 'ap_fixed<32,22,AP_RND,AP_SAT>'}


def wide_inputs(n: int, seed: int) -> np.ndarray:
    """Inputs over the whole ap_fixed<16,6> range, the two corners (largest products) first."""
    t = parse_precision('ap_fixed<16,6>')
    x = np.random.default_rng(seed).integers(t.min_mantissa, t.max_mantissa + 1, size=(n, 5))
    x[0], x[1] = t.min_mantissa, t.max_mantissa
    return t.to_float(x)


def test_hls_declares_a_product_wider_than_64_bits(tmp_path):
    model = convert_from_symbolic_expression(WIDE, n_symbols=5, precision=WIDE_PRECISION, lut_functions=LUT_256,
                                             output_dir=str(tmp_path / 'prj'))
    model.write()
    defines = (tmp_path / 'prj' / 'firmware' / 'defines.h').read_text()
    assert 'ap_fixed<76,26>' in defines  # x0*x1*x2*x3*x4 exactly
    x = np.concatenate([wide_inputs(2, 0), np.full((1, 5), 3.0), np.full((1, 5), 1.5)])
    y = model.predict(x)[:, 0]  # (-32)^5 and 31.999^5 saturate; 3^5 and 1.5^5 are exact
    np.testing.assert_array_equal(y, [-2.0 ** 21, 2.0 ** 21 - 2.0 ** -10, 243.0, 7.59375])


def test_verilog_error_names_the_sub_expression_wider_than_62_bits():
    with pytest.raises(ValueError, match=r'sub-expression x0\*x1\*x2\*x3\*x4 needs 76 bits.*narrower inputs'):
        convert_from_symbolic_expression('x0*x1*x2*x3*x4', n_symbols=5, backend='Verilog', output_dir='unused')
    narrow = convert_from_symbolic_expression('x0*x1*x2*x3*x4', n_symbols=5, backend='Verilog', output_dir='unused',
                                              precision={'default': 'ap_fixed<16,6>', 'input': 'ap_fixed<12,4>'})
    assert narrow.predict(np.full((1, 5), 1.5))[0, 0] == 7.59375  # 60 bits: the workaround converts


@pytest.mark.skipif(not HAS_CSIM, reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_csim_equals_emulator_on_products_wider_than_64_bits(tmp_path):
    model = convert_from_symbolic_expression(WIDE, n_symbols=5, precision=WIDE_PRECISION, lut_functions=LUT_256,
                                             output_dir=str(tmp_path / 'prj'))
    x = wide_inputs(2000, 1)
    csim = model.predict(x, sim='csim')
    np.testing.assert_array_equal(csim, model.predict(x))
    changed = [WIDE[0], WIDE[1].replace('3.3', repr(3.3 + 2 ** -10)), WIDE[2]]  # one LSB of the constant
    other = convert_from_symbolic_expression(changed, n_symbols=5, precision=WIDE_PRECISION, lut_functions=LUT_256,
                                             output_dir=str(tmp_path / 'other'))
    assert not np.array_equal(csim, other.predict(x))


def test_tutorial_calls_on_expressions_of_its_form(tmp_path):
    """Part 8's calls, unchanged after `import fpga4ml as hls4ml`, on five expressions shaped like its own."""
    import sympy

    import fpga4ml as hls4ml
    from fpga4ml.utils.symbolic_utils import init_pysr_lut_functions

    function_definitions = ['sin_lut(x) = math_lut(sin, x, N=256, range_start=-8, range_end=8)',
                            'cos_lut(x) = math_lut(cos, x, N=256, range_start=-8, range_end=8)']
    init_pysr_lut_functions(init_defaults=True, function_definitions=function_definitions)
    lut_functions = LUT_256
    expr = list(TUTORIAL_FORM)
    expr_lut = [e.replace('sin', 'sin_lut').replace('cos', 'cos_lut') for e in expr]
    for i in range(len(expr)):
        expr[i] = sympy.parsing.sympy_parser.parse_expr(expr[i])
        expr_lut[i] = sympy.parsing.sympy_parser.parse_expr(expr_lut[i])
    hls_model = hls4ml.converters.convert_from_symbolic_expression(
        expr, n_symbols=16, output_dir=str(tmp_path / 'my-hls-test'), precision='ap_fixed<16,6>',
        part='xcvu9p-flga2577-2-e')
    hls_model.write()
    hls_model.compile()
    hls_model_lut = hls4ml.converters.convert_from_symbolic_expression(
        expr_lut, n_symbols=16, output_dir=str(tmp_path / 'my-hls-test-lut'), precision='ap_fixed<16,6>',
        part='xcvu9p-flga2577-2-e', lut_functions=lut_functions)
    hls_model_lut.write()
    hls_model_lut.compile()
    test_vector = np.round((np.random.default_rng(3).random((2000, 16)) * 4 - 2) * 1024) / 1024  # on the input grid
    exact = np.column_stack([sympy.lambdify(sympy.symbols('x0:16'), e, 'numpy')(*test_vector.T) for e in expr])
    np.testing.assert_allclose(float_forward(hls_model.graph, test_vector)[0], exact, atol=1e-9)
    for model in (hls_model, hls_model_lut):
        bounds = error_bounds(model, -2, 2)            # docs/symbolic.md: the emulator's error bound
        error = np.max(np.abs(model.predict(test_vector) - exact), axis=0)
        assert np.all(error[np.isfinite(bounds)] <= bounds[np.isfinite(bounds)])
    assert np.isfinite(error_bounds(hls_model, -2, 2)).all()
    # the first LUT output reads sin_lut beyond [-8, 8] (clamped): unbounded, and far off here
    assert not np.isfinite(error_bounds(hls_model_lut, -2, 2)[0]) and error[0] > 0.5
    # control: 2 fraction bits fewer leave the ap_fixed<16,6> bounds
    coarse = hls4ml.converters.convert_from_symbolic_expression(expr, n_symbols=16, precision='ap_fixed<14,6>',
                                                                output_dir=str(tmp_path / 'coarse'))
    assert np.any(np.max(np.abs(coarse.predict(test_vector) - exact), axis=0) > error_bounds(hls_model, -2, 2))
    assert hls_model_lut.predict(test_vector[:1]).shape == (1, 5)
    assert (tmp_path / 'my-hls-test-lut' / 'firmware' / 'myproject.cpp').is_file()


def write_jets_file(path, example, n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A small file in OpenML's hls4ml_lhc_jets_hlf layout (ARFF or CSV by suffix): shuffled feature columns, an
    extra column, the class as g/q/w/z/t; returns the jets (features in FEATURES order, labels 0..4)."""
    x, y = example.JetTeacher().sample(n, np.random.default_rng(seed))
    order = list(reversed(range(len(example.FEATURES))))  # another column order than FEATURES
    names = [example.FEATURES[i] for i in order] + ['extra', 'class']
    rows = [','.join([f'{x[k, i]:.6g}' for i in order] + ['0', example.CLASSES[y[k]].lower()]) for k in range(n)]
    if path.suffix == '.arff':
        head = ['@RELATION hls4ml_lhc_jets_hlf'] + [f'@ATTRIBUTE {c} NUMERIC' for c in names[:-1]]
        head += ['@ATTRIBUTE class {g,q,w,z,t}', '@DATA']
        path.write_text('\n'.join(['% generated for a test'] + head + rows) + '\n')
    else:
        path.write_text('\n'.join([','.join(names)] + rows) + '\n')
    return np.asarray([[float(f'{v:.6g}') for v in row] for row in x], dtype=np.float32), y


@pytest.mark.parametrize('suffix', ['.arff', '.csv'])
def test_data_file_flag_reads_the_openml_layout(example, tmp_path, suffix):
    path = tmp_path / f'hls4ml_lhc_jets_hlf{suffix}'
    x, y = write_jets_file(path, example, 500)
    got_x, got_y = example.read_jets_file(str(path))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    (x_train, y_train, x_test, y_test), source = example.load_jets(8000, 5000, 1, None, str(path))
    assert source.startswith(str(path)) and len(x_train) + len(x_test) == 500 and len(x_train) == 307
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)  # standardized with the training set
    assert sorted(set(y_train) | set(y_test)) == [0, 1, 2, 3, 4]
    bad = tmp_path / f'bad{suffix}'
    bad.write_text(path.read_text().replace('mass_mmdt', 'mass'))
    with pytest.raises(ValueError, match=r"missing \['mass_mmdt'\]"):
        example.read_jets_file(str(bad))


@pytest.mark.slow  # trains the MLP and lowers it: about a minute
def test_quick_run_on_a_data_file(example, tmp_path, capsys):
    path = tmp_path / 'jets.csv'
    write_jets_file(path, example, 1500)
    assert example.main(['--quick', '--no-synth', '--epochs', '1', '--data-file', str(path),
                         '--out', str(tmp_path / 'prj')]) == 0
    out = capsys.readouterr().out
    assert f'data: {path} (1,500 jets); 923 training / 577 test jets' in out
    assert 'SYNTHETIC' not in out
