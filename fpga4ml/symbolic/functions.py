"""The math functions of symbolic expressions and their lookup tables.

Every function of an expression (sin, exp, a user's LUT function, 1/x, ...) is a table built at
conversion time and addressed from the real type of its argument (the argument is first cast into
its configured type). Two kinds of table exist:

* **type-addressed** (built-in functions): the address is the argument's own mantissa when its type
  has at most 2^bits values (the table is exact: one entry per representable argument), else its
  top `bits` bits over the range where the function still changes (monotonic functions) or the
  whole range of the type. The index rounding is 'nearest' (RND_CONV: an entry holds f at its grid
  point, arguments round to the nearest one, ties to even) or 'truncate' (TRN: an entry holds f at
  the centre of the arguments that floor onto it).
* **range-addressed** (`LUTFunction(name, math_func, range_start a, range_end b, table_size N)`):
  entry i holds f(a + i * (b - a) / N), as PySR's `math_lut` and hls4ml's `lookup_table` sample it;
  the address is ``clamp(round((x - a) * N / (b - a)), 0, N - 1)`` with 'nearest' (PySR fits its
  LUT functions this way: Julia's round, ties to even) or ``clamp(floor(...))`` with 'truncate'
  (hls4ml's C++). The address is computed exactly from `a` and `N / (b - a)` quantized at a fine
  LSB (`address_constants`): both are exact when they are dyadic (a power-of-two range).

Outside a function's domain an entry takes the value at the nearest point of the domain (sqrt of a
negative argument is 0; asin and acos clip to [-1, 1], acosh to [1, inf), atanh to [-1, 1]); poles
(1/0, atanh(+-1), gamma at 0, -1, -2, ...) and log(x <= 0) saturate; every entry
is saturated into the table's type before its rounding (no wrap-around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fixed import FixedType
from ..ir import GraphError
from ..semantics.primitives import Const
from ..semantics.tables import Table, _index_type, _index_values

#: index roundings: the name a user gives -> the ap_fixed rounding of the table index
ROUNDINGS = {'nearest': 'RND_CONV', 'truncate': 'TRN'}
#: table size of a function when none is given (hls4ml's LUT default)
DEFAULT_TABLE_SIZE = 1024
#: significant bits of N / (b - a) when it is not dyadic; `a` is kept to 2^-ADDRESS_GUARD_BITS of a step
ADDRESS_SCALE_BITS = 18
ADDRESS_GUARD_BITS = 16


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _erfc(x):
    return np.vectorize(math.erfc, otypes=[np.float64])(x)


def _gamma_one(v: float) -> float:
    try:
        return math.gamma(v)
    except (ValueError, OverflowError):  # a pole (0, -1, -2, ...) or beyond the doubles: saturates
        return math.inf


def _gamma(x):
    return np.vectorize(_gamma_one, otypes=[np.float64])(x)


#: name -> (function of float64 arrays, domain (lo, hi) the argument is clipped into, monotonic)
MATH_FUNCTIONS: dict[str, tuple] = {
    'sin': (np.sin, None, False), 'cos': (np.cos, None, False), 'tan': (np.tan, None, False),
    'exp': (np.exp, None, True), 'log': (np.log, None, True), 'sqrt': (np.sqrt, (0.0, None), True),
    'tanh': (np.tanh, None, True), 'sigmoid': (_sigmoid, None, True), 'sinh': (np.sinh, None, True),
    'cosh': (np.cosh, None, False), 'asin': (np.arcsin, (-1.0, 1.0), True), 'acos': (np.arccos, (-1.0, 1.0), True),
    'atan': (np.arctan, None, True), 'erf': (_erf, None, True), 'inv': (np.reciprocal, None, False),
    'asinh': (np.arcsinh, None, True), 'acosh': (np.arccosh, (1.0, None), True),
    'atanh': (np.arctanh, (-1.0, 1.0), True), 'erfc': (_erfc, None, True), 'gamma': (_gamma, None, False),
}


def check_math_func(name: str, where: str) -> str:
    """`name` if it is a supported math function (a clear error naming `where` otherwise)."""
    if name not in MATH_FUNCTIONS and not name.startswith('pow:'):
        raise GraphError(f'{where}: math function {name!r} is not supported; supported: '
                         f"{sorted(MATH_FUNCTIONS)} and 'pow:<exponent>'")
    return name


def real_function(name: str):
    """The real function `name` (float64 arrays in and out), domain-clipped, a pole giving the largest double."""
    if name.startswith('pow:'):
        a = float(name[4:])
        return lambda x: np.power(np.maximum(np.asarray(x, dtype=np.float64), 0.0), a)
    fn, domain, _ = MATH_FUNCTIONS[name]

    def f(x):
        x = np.asarray(x, dtype=np.float64)
        if domain is not None:
            x = np.clip(x, domain[0], np.inf if domain[1] is None else domain[1])
        with np.errstate(all='ignore'):
            y = fn(x)
        if name == 'log':
            y = np.where(x <= 0, -np.inf, y)
        big = np.finfo(np.float64).max  # a pole is the largest double: 0 * f(pole) stays 0 (shape inference)
        return np.clip(np.asarray(y, dtype=np.float64), -big, big)
    return f


def monotonic(name: str) -> bool:
    """Whether the function is monotonic on its domain (its table index may skip the flat ends)."""
    return name.startswith('pow:') or MATH_FUNCTIONS[name][2]


def saturated(values: np.ndarray, t: FixedType) -> np.ndarray:
    """Float values into the mantissas of `t`, saturated first (inf and poles give the ends, NaN gives 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=t.max_value, neginf=t.min_value)
    return t.quantize(np.clip(v, t.min_value, t.max_value))


@dataclass(frozen=True)
class FunctionSpec:
    """One table function of an expression: its math function, size, index rounding and optional range."""

    math_func: str
    table_size: int = DEFAULT_TABLE_SIZE
    rounding: str = 'nearest'
    range_start: float | None = None
    range_end: float | None = None

    @staticmethod
    def from_attrs(key: str, spec: dict, where: str) -> 'FunctionSpec':
        """A validated spec from the node attribute `functions[key]` (errors name the layer and key)."""
        if not isinstance(spec, dict):
            raise GraphError(f'{where}: functions[{key!r}] must be a dict, got {type(spec).__name__}')
        unknown = set(spec) - {'math_func', 'table_size', 'rounding', 'range_start', 'range_end'}
        if unknown:
            raise GraphError(f'{where}: functions[{key!r}] has unknown keys {sorted(unknown)}')
        fs = FunctionSpec(check_math_func(str(spec.get('math_func')), f'{where}: functions[{key!r}]'),
                          spec.get('table_size', DEFAULT_TABLE_SIZE), spec.get('rounding', 'nearest'),
                          spec.get('range_start'), spec.get('range_end'))
        n = fs.table_size
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= 1 << 20:
            raise GraphError(f'{where}: functions[{key!r}] table_size must be an integer in [2, 2^20], got {n!r}')
        if fs.rounding not in ROUNDINGS:
            raise GraphError(f'{where}: functions[{key!r}] rounding must be one of {list(ROUNDINGS)}, '
                             f'got {fs.rounding!r}')
        if (fs.range_start is None) != (fs.range_end is None):
            raise GraphError(f'{where}: functions[{key!r}] needs both range_start and range_end, or neither')
        if fs.ranged and not (math.isfinite(fs.range_start) and math.isfinite(fs.range_end)
                              and fs.range_end > fs.range_start):
            raise GraphError(f'{where}: functions[{key!r}] range [{fs.range_start}, {fs.range_end}) must be finite '
                             'with range_end > range_start')
        return fs

    @property
    def ranged(self) -> bool:
        """A range-addressed table (a LUTFunction) rather than a type-addressed one."""
        return self.range_start is not None

    @property
    def bits(self) -> int:
        """Address bits: ceil(log2(table_size))."""
        return max(int(self.table_size - 1).bit_length(), 1)


def _dyadic(value: float, frac: int) -> Const:
    """`value` rounded to nearest at 2^-frac, then with its trailing zero bits dropped (the same value)."""
    m = int(round(value * 2.0 ** frac))
    while frac > 0 and m and m % 2 == 0:
        m, frac = m // 2, frac - 1
    if m == 0:
        frac = 0
    return Const(np.asarray([m], dtype=np.int64), frac)


def address_constants(fs: FunctionSpec) -> tuple[Const, Const]:
    """(a, N / (b - a)) of a range-addressed table as exact constants: the address is ``(x - a) * s``.

    s keeps ADDRESS_SCALE_BITS significant bits (exact when dyadic, e.g. N / 8 for a power-of-two N);
    a is kept at 2^-ADDRESS_GUARD_BITS of a table step (exact when dyadic at that LSB).
    """
    s = fs.table_size / (fs.range_end - fs.range_start)
    scale = _dyadic(s, max(ADDRESS_SCALE_BITS - 1 - math.floor(math.log2(s)), 0))
    start = _dyadic(fs.range_start, max(math.ceil(math.log2(s)) + ADDRESS_GUARD_BITS, 0))
    return start, scale


def ranged_index_type(fs: FunctionSpec) -> FixedType:
    """The address type of a range-addressed table: ufixed<B, B> with the spec's rounding, saturating."""
    return FixedType(fs.bits, fs.bits, False, ROUNDINGS[fs.rounding], 'SAT')


def build_table(fs: FunctionSpec, arg_t: FixedType, table_t: FixedType) -> Table:
    """The table of one function for arguments of type `arg_t`, entries of type `table_t` (see the module doc)."""
    f = real_function(fs.math_func)
    if fs.ranged:
        n, step = fs.table_size, (fs.range_end - fs.range_start) / fs.table_size
        samples = fs.range_start + step * np.arange(n, dtype=np.float64)
        values = saturated(f(samples), table_t)
        pad = (1 << fs.bits) - n  # addresses N .. 2^B - 1 (the saturated index) read the last entry
        return Table(ranged_index_type(fs), np.concatenate([values, np.repeat(values[-1:], pad)]), table_t)

    def fq(v: float) -> int:
        return int(saturated(f(np.asarray([v])), table_t)[0])

    bits = fs.bits
    if fs.table_size != 1 << bits:
        raise GraphError(f'math function {fs.math_func!r}: the table_size of a table addressed by the argument type '
                         f'must be a power of two, got {fs.table_size}')
    idx = _index_type(arg_t, bits, fq, monotonic(fs.math_func))
    idx = idx.with_(rounding=ROUNDINGS[fs.rounding])
    if fs.rounding == 'nearest' or idx.frac >= arg_t.frac:
        points = idx.to_float(np.arange(idx.min_mantissa, idx.max_mantissa + 1, dtype=np.int64))
    else:
        points = _index_values(idx, arg_t)
    return Table(idx, saturated(f(points), table_t), table_t)
