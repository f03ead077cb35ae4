"""LUT functions for symbolic expressions, and their definitions for PySR 2.x (hls4ml's symbolic_utils).

`LUTFunction(name, math_func, range_start, range_end, table_size)` declares a function `name(x)`
that the converter evaluates through a table of `table_size` samples of `math_func` on
[range_start, range_end) (fpga4ml/symbolic/functions.py). PySR fits such a function with its Julia
`math_lut` (nearest-rounded index, clamped to the table); `init_pysr_lut_functions` gives the same
definitions for PySR 2.x without needing Julia here: it returns them, and registers them in PySR's
Julia session only when asked (`register=True`, which imports pysr and so needs Julia).
"""

from __future__ import annotations

import re

#: PySR's LUT approximation in Julia (hls4ml's), nearest rounding of the index, clamped to the table
MATH_LUT_JULIA = """
function math_lut(fun::Function, x ; N::Integer = 1024, range_start::Real = 0, range_end::Real = 8)
    range = range_end - range_start
    step = range / N
    idx = round((x - range_start) * N / range)
    idx = clamp(idx, 0, N - 1)
    x_approx = range_start + step * idx
    return convert(typeof(x), fun(x_approx))
end
"""

#: hls4ml's default LUT functions (init_defaults=True)
DEFAULT_DEFINITIONS = (
    'sin_lut(x) = math_lut(sin, x, N=1024, range_start=-4, range_end=4)',
    'cos_lut(x) = math_lut(cos, x, N=1024, range_start=-4, range_end=4)',
    'tan_lut(x) = math_lut(tan, x, N=1024, range_start=-4, range_end=4)',
    'log_lut(x) = math_lut(log, x, N=1024, range_start=0, range_end=8)',
    'exp_lut(x) = math_lut(exp, x, N=1024, range_start=0, range_end=16)',
)

_NUMBER = r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
_DEFINITION = re.compile(
    rf'^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\(x\)\s*=\s*math_lut\(\s*(?P<func>[a-z]+)\s*,\s*x\s*'
    rf'(?:,\s*N\s*=\s*(?P<n>\d+)\s*)?,\s*range_start\s*=\s*(?P<a>{_NUMBER})\s*,'
    rf'\s*range_end\s*=\s*(?P<b>{_NUMBER})\s*\)\s*$')


class LUTFunction:
    """A function `name(x)` computed by a table of `math_func` on [range_start, range_end) (hls4ml's class).

    rounding: the table index rounding, 'nearest' (as PySR fits it) or 'truncate' (hls4ml's C++);
    None takes the converter's `lut_rounding`.
    """

    def __init__(self, name, math_func, range_start, range_end, table_size=1024, rounding=None) -> None:
        self.name = name
        self.math_func = math_func
        self.range_start = range_start
        self.range_end = range_end
        self.table_size = table_size
        self.rounding = rounding

    def __repr__(self) -> str:
        return (f'LUTFunction({self.name!r}, {self.math_func!r}, {self.range_start}, {self.range_end}, '
                f'{self.table_size}, rounding={self.rounding!r})')

    def julia(self) -> str:
        """Its definition for PySR: ``name(x) = math_lut(func, x, N=.., range_start=.., range_end=..)``."""
        return (f'{self.name}(x) = math_lut({self.math_func}, x, N={self.table_size}, '
                f'range_start={self.range_start}, range_end={self.range_end})')


def lut_function_from_definition(definition: str) -> LUTFunction:
    """The LUTFunction of one PySR definition ``name(x) = math_lut(func, x, N=n, range_start=a, range_end=b)``."""
    m = _DEFINITION.match(definition)
    if m is None:
        raise ValueError(f'{definition!r} is not a LUT function definition of the form '
                         "'<name>(x) = math_lut(<func>, x, N=<table_size>, range_start=<start>, range_end=<end>)'")
    return LUTFunction(m['name'], m['func'], float(m['a']), float(m['b']), int(m['n'] or 1024))


def init_pysr_lut_functions(init_defaults=False, function_definitions=None, register=False) -> dict:
    """The LUT functions for PySR 2.x: Julia code, operator names, sympy mappings and LUTFunction objects.

    Returns {'julia': [math_lut, definitions...], 'unary_operators': [names], 'extra_sympy_mappings':
    {name: sympy function}, 'lut_functions': [LUTFunction]}: pass ``unary_operators`` (as the
    definition strings, PySR's custom-operator form) and ``extra_sympy_mappings`` to PySRRegressor,
    and ``lut_functions`` to convert_from_symbolic_expression. Nothing here needs Julia; with
    ``register=True`` the code is also evaluated in PySR's Julia session (``pysr.jl.seval``), which
    imports pysr (and so Julia).
    """
    import sympy

    definitions = list(DEFAULT_DEFINITIONS if init_defaults else ()) + list(function_definitions or [])
    luts = [lut_function_from_definition(d) for d in definitions]
    result = {'julia': [MATH_LUT_JULIA] + definitions,
              'unary_operators': definitions,
              'extra_sympy_mappings': {lut.name: sympy.Function(lut.name) for lut in luts},
              'lut_functions': luts}
    if register:
        from pysr import jl  # PySR >= 0.17: juliacall's Main

        for code in result['julia']:
            jl.seval(code)
    return result


def register_pysr_lut_function(func: str, julia_main=None) -> None:
    """Evaluate one LUT definition in PySR's Julia session (pysr.jl, or `julia_main` when given)."""
    lut_function_from_definition(func)
    if julia_main is None:
        from pysr import jl as julia_main
    (julia_main.seval if hasattr(julia_main, 'seval') else julia_main.eval)(func)
