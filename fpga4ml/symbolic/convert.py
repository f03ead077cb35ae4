"""convert_from_symbolic_expression: sympy/PySR expressions into a fpga4ml Model (hls4ml's signature)."""

from __future__ import annotations

import re
import warnings
from typing import Any

from ..config import ConfigWarning
from ..ir import Graph
from ..semantics.spec import make_node
from .builder import Builder, precisions_from
from .functions import DEFAULT_TABLE_SIZE, MATH_FUNCTIONS, ROUNDINGS, FunctionSpec
from .parse import TABLE_FUNCTIONS, as_expressions, choose_equation, is_hall_of_fame, n_symbols_of, read_hall_of_fame

#: hls4ml's compiler names -> fpga4ml back ends
COMPILERS = {'vivado_hls': 'Vivado', 'vitis_hls': 'Vitis'}
INPUT_NAME, LAYER_NAME = 'x', 'expr1'


def lut_specs(lut_functions, table_size: int, rounding: str) -> dict[str, dict]:
    """The user's LUT functions (a dict {name: {math_func, range_start, range_end, table_size}} as hls4ml's, or
    a list of LUTFunction objects) as table specs {name: spec}."""
    from ..utils.symbolic_utils import LUTFunction

    if lut_functions is None:
        return {}
    if isinstance(lut_functions, dict):
        items = [LUTFunction(name, **params) for name, params in lut_functions.items()]
    else:
        items = list(lut_functions)
    specs = {}
    for lut in items:
        for field in ('name', 'math_func', 'range_start', 'range_end', 'table_size'):
            if not hasattr(lut, field):
                raise ValueError(f'lut_functions: {lut!r} has no {field!r}; give LUTFunction objects or a dict '
                                 '{name: {math_func, range_start, range_end, table_size}}')
        spec = {'math_func': str(lut.math_func), 'table_size': int(lut.table_size),
                'rounding': getattr(lut, 'rounding', None) or rounding,
                'range_start': float(lut.range_start), 'range_end': float(lut.range_end)}
        FunctionSpec.from_attrs(lut.name, spec, f'LUT function {lut.name!r}')
        if not isinstance(lut.name, str) or not re.fullmatch(r'[A-Za-z][A-Za-z0-9_]{0,63}', lut.name):
            raise ValueError(f'lut_functions: the name {lut.name!r} is not an identifier (a letter, then letters, '
                             'digits or underscores)')
        if lut.name in TABLE_FUNCTIONS:
            raise ValueError(f'LUT function name {lut.name!r} is a built-in function name; choose another '
                             f"(PySR's convention: {lut.name}_lut)")
        specs[str(lut.name)] = spec
    return specs


def function_table(table_size: int, rounding: str, use_built_in_lut_functions: bool) -> dict[str, dict]:
    """The built-in functions' table specs (addressed by the argument's type), plus sin_lut/cos_lut if asked."""
    if rounding not in ROUNDINGS:
        raise ValueError(f'lut_rounding must be one of {list(ROUNDINGS)}, got {rounding!r}')
    specs = {name: {'math_func': name, 'table_size': int(table_size), 'rounding': rounding}
             for name in list(TABLE_FUNCTIONS) + ['inv'] if name in MATH_FUNCTIONS}
    if use_built_in_lut_functions:
        specs['sin_lut'] = {**specs['sin']}
        specs['cos_lut'] = {**specs['cos']}
    return specs


def build_graph(expr, n_symbols=None, lut_functions=None, use_built_in_lut_functions: bool = False,
                precision='ap_fixed<16,6>', table_size: int = DEFAULT_TABLE_SIZE, lut_rounding: str = 'nearest',
                equation='best') -> tuple[Graph, dict]:
    """The graph (Input x -> Expression expr1) and its hls_config for expressions (see the converter)."""
    graph, config, _ = _build(expr, n_symbols, lut_functions, use_built_in_lut_functions, precision, table_size,
                              lut_rounding, equation)
    return graph, config


def _build(expr, n_symbols, lut_functions, use_built_in_lut_functions, precision, table_size, lut_rounding,
           equation) -> tuple[Graph, dict, dict]:
    """build_graph's graph and config, and the sub-expression each instruction computes {index: sympy expr}."""
    luts = lut_specs(lut_functions, table_size, lut_rounding)
    available = {**function_table(table_size, lut_rounding, use_built_in_lut_functions), **luts}
    lut_names = [n for n in available if n not in TABLE_FUNCTIONS and n != 'inv']
    if is_hall_of_fame(expr):
        expr = choose_equation(read_hall_of_fame(expr), equation)
    exprs = as_expressions(expr, lut_names)
    used = n_symbols_of(exprs)
    n = used if n_symbols is None else int(n_symbols)
    if n < max(used, 1):
        raise ValueError(f'n_symbols={n_symbols} but the expressions use {used} input(s) (x0..x{used - 1})'
                         if used else 'an expression without inputs needs n_symbols >= 1')
    prec = precisions_from(precision, lut_names)
    builder = Builder(prec, n, available, [n for n in lut_names])
    outputs = [builder.walk(e) for e in exprs]
    unused = builder.unused_overrides()
    if unused:
        raise ValueError(f"precision['expressions']: {[str(e) for e in unused]} match no sub-expression of "
                         f'{[str(e) for e in exprs]}')
    g = Graph()
    g.add(make_node(INPUT_NAME, 'Input', [], (n,)))
    g.add(make_node(LAYER_NAME, 'Expression', [INPUT_NAME], (len(outputs),), attrs={
        'program': builder.program, 'outputs': outputs, 'n_inputs': n, 'functions': builder.functions,
        'expressions': [str(e) for e in exprs]}))
    g.inputs, g.outputs = [INPUT_NAME], [LAYER_NAME]
    config = {'Model': {'Precision': prec.default, 'ReuseFactor': 1},
              'LayerName': {INPUT_NAME: {'Precision': {'result': prec.of('input')}},
                            LAYER_NAME: {'Precision': {'result': prec.of('result')}}}}
    sources = {k: e for e, k in builder.memo.items() if not isinstance(e, tuple)}  # printed only in an error
    return g, config, sources


def check_verilog_widths(model, sources: dict) -> None:
    """Lower and schedule the Expression once (the Verilog design, cached on the model and reused by write(),
    estimate() and the RTL simulation); a value too wide for the Verilog back end is an error naming it.

    The netlist holds signals of at most MAX_SIGNAL_BITS bits (the HLS back ends have no such limit):
    the error names the first sub-expression beyond it and the precision keys that narrow it.
    """
    from ..backends.verilog.design import design
    from ..backends.verilog.netlist import MAX_SIGNAL_BITS, NetlistError, bits_for
    from ..intervals import Interval
    from ..semantics.bounds import Bounds
    from ..semantics.spec import spec_of

    try:
        design(model, progress=False)
    except NetlistError as err:
        node, x = model.graph[LAYER_NAME], model.graph[INPUT_NAME]
        bounds = Bounds(node, [x.result_type])
        iv = model.intervals[INPUT_NAME] if model.intervals is not None else Interval.of_type(x.result_type, x.shape)
        spec_of(node).recipe(node, bounds, iv)
        wide = [(bits_for(iv.min, iv.max), int(name[1:])) for name, iv in bounds.labels.items()
                if re.fullmatch(r'[ve]\d+', name) and bits_for(iv.min, iv.max) > MAX_SIGNAL_BITS
                and int(name[1:]) in sources]
        if not wide:
            raise
        bits, k = min(wide, key=lambda w: w[1])  # the first one: the others are built on it
        sub = str(sources[k])
        raise ValueError(
            f'layer {LAYER_NAME!r}: the sub-expression {sub} needs {bits} bits exactly, more than the '
            f'{MAX_SIGNAL_BITS} bits of a Verilog signal (the HLS back ends compute it exactly); narrow its operands: '
            "precision={'expressions': {'<an operand>': 'ap_fixed<W,I>'}} (a precision on the sub-expression itself "
            'casts its exact value, which still needs these bits), or narrower inputs: '
            "precision={'input': 'ap_fixed<W,I>'}") from err


def convert_from_symbolic_expression(expr, n_symbols=None, lut_functions=None, use_built_in_lut_functions=False,
                                     output_dir='my-hls-test', project_name='myproject', input_data_tb=None,
                                     output_data_tb=None, precision='ap_fixed<16,6>', part=None, clock_period=5,
                                     backend='Vitis', hls_include_path=None, hls_libs_path=None,
                                     io_type='io_parallel', table_size=DEFAULT_TABLE_SIZE, lut_rounding='nearest',
                                     equation='best', **kwargs: Any):
    """Convert sympy/string expression(s) of x0..x{n-1} (or a PySR hall-of-fame CSV) into a Model.

    hls4ml's signature and meaning (docs/symbolic.md): `expr` a string, a sympy expression, a list of
    them (one output each) or a PySR hall-of-fame .csv path (`equation`: its row index, 'best' (PySR's
    default rule), 'score' or 'accuracy'); `lut_functions` a dict {name: {math_func, range_start,
    range_end, table_size}} or a list of LUTFunction; `precision` a type string or a dict (default,
    input, result, constant, table, argument, expressions: {sub-expression: type}). hls4ml's
    `compiler='vivado_hls'|'vitis_hls'` chooses the Vivado or Vitis back end; `backend='Verilog'`
    gives the Verilog back end. The C++ needs only ap_types (every function is a table), so
    hls_include_path and hls_libs_path are not needed and are ignored. `table_size` and
    `lut_rounding` ('nearest' as PySR fits LUTs, or 'truncate' as hls4ml's C++) apply to every table
    unless a LUTFunction sets its own.
    """
    from ..convert import convert_graph

    compiler = kwargs.pop('compiler', None)
    if compiler is not None:
        if compiler not in COMPILERS:
            raise ValueError(f'compiler must be one of {list(COMPILERS)}, got {compiler!r}')
        backend = COMPILERS[compiler]
    if hls_include_path or hls_libs_path:
        warnings.warn('convert_from_symbolic_expression: hls_include_path/hls_libs_path are not needed (the C++ uses '
                      'only ap_types: every function is a table) and are ignored', ConfigWarning, stacklevel=2)
    graph, config, sources = _build(expr, n_symbols, lut_functions, use_built_in_lut_functions, precision,
                                    table_size, lut_rounding, equation)
    extra = {k: v for k, v in (('input_data_tb', input_data_tb), ('output_data_tb', output_data_tb)) if v is not None}
    model = convert_graph(graph, config, output_dir=output_dir, project_name=project_name, backend=backend, part=part,
                          clock_period=clock_period, io_type=io_type, **extra, **kwargs)
    if str(backend).lower() == 'verilog':
        check_verilog_widths(model, sources)
    return model
