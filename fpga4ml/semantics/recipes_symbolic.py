"""The 'Expression' op: a symbolic expression (fpga4ml/symbolic) run as a program of primitives.

The node's attribute `program` is a validated list of instructions (fpga4ml/symbolic/program.py);
this recipe interprets it with the primitives, so the emulator, the typing, the float reference and
the Verilog lowering all follow from this one function. Every instruction's value is labelled
``v<k>`` (the HLS emitter declares it in the narrowest type of its exact bounds). Several outputs
are each cast into the node's result type and concatenated along the last axis.
"""

from __future__ import annotations

import numpy as np

from ..symbolic.functions import FunctionSpec, address_constants, build_table, real_function
from ..symbolic.program import ROUND_MODES, check_program, type_of
from ..fixed import FixedType
from ..intervals import type_for
from ..ir import GraphError
from .primitives import Const
from .spec import REQUIRED, attr, recipe

ZERO = Const(np.asarray([0], dtype=np.int64), 0)


def _where(node) -> str:
    return f'layer {node.name!r} (Expression)'


def function_specs(node) -> dict[str, FunctionSpec]:
    """The node's table functions, validated: key -> FunctionSpec."""
    functions = attr(node, 'functions') or {}
    return {key: FunctionSpec.from_attrs(key, spec, _where(node)) for key, spec in functions.items()}


def checked_program(node) -> tuple[list, list, dict[str, FunctionSpec]]:
    """(program, outputs, function specs) of an Expression node, checked against its one input's size."""
    specs = function_specs(node)
    program, outputs = attr(node, 'program'), attr(node, 'outputs')
    check_program(program, outputs, int(attr(node, 'n_inputs')), specs, _where(node))
    return program, outputs, specs


def build_tables(node, in_types) -> None:
    """One table per 'func' instruction k (key 't<k>'), from its argument type and entry type."""
    program, _, specs = checked_program(node)
    tables = {}
    for k, (op, _, value, precision) in enumerate(program):
        if op == 'func':
            where = f'{_where(node)}: instruction {k}'
            tables[f't{k}'] = build_table(specs[value[0]], type_of(value[1], where), type_of(precision, where))
    node.attrs['tables'] = tables


def constant_mantissa(value: float, t) -> tuple[int, int]:
    """(m, frac): `value` quantized into t, with trailing zero bits dropped (the same value m * 2^-frac)."""
    q, overflows = t.quantize_count(np.asarray([float(value)]))
    if overflows:
        raise GraphError(f'the constant {value!r} does not fit its type {t} (range [{t.min_value}, {t.max_value}]); '
                         "give the constants a wider type: precision={'constant': ...} or per sub-expression")
    m, frac = int(q[0]), t.frac
    while m and m % 2 == 0 and frac > 0:
        m, frac = m // 2, frac - 1
    return m, frac if m else 0


def constant(p, value: float, t) -> Const:
    """A constant quantized into t (constant_mantissa); its real value in the float interpreter."""
    if not p.quantized:
        return Const(np.asarray([float(value)]), None)
    m, frac = constant_mantissa(value, t)
    return Const(np.asarray([m], dtype=np.int64), frac)


def _power(p, v, n: int):
    """v^n by repeated squaring (exact)."""
    result, base = None, v
    while n:
        if n & 1:
            result = base if result is None else p.mul(result, base)
        n >>= 1
        if n:
            base = p.mul(base, base)
    return result


def rounding_type(mode: str) -> FixedType:
    """The integer type a 'round' instruction casts into, with its rounding; only the rounding is applied."""
    return FixedType(64, 64, True, ROUND_MODES[mode], 'WRAP')


def _round(p, v, mode: str):
    """v rounded to an integer: floor, or the nearest with ties to even (the real function in the float meaning)."""
    if not p.quantized:
        return np.floor(v) if mode == 'floor' else np.rint(v)
    return p.round(v, rounding_type(mode))


def _sign(p, v):
    one, minus = Const(np.asarray([1]), 0), Const(np.asarray([-1]), 0)
    return p.piecewise(v, ZERO, lambda _: p.const(one),
                       lambda u: p.piecewise(p.neg(u), ZERO, lambda _: p.const(minus), lambda _: p.const(ZERO)))


def _func(node, p, k: int, v, value, specs, tables):
    """A table read: the argument cast into its type, then addressed by type or by range (functions.py)."""
    where = f'{_where(node)}: instruction {k}'
    fs, arg_t = specs[value[0]], type_of(value[1], where)
    f = real_function(fs.math_func)
    arg = p.cast(v, arg_t)
    if not fs.ranged:
        y = p.lookup(arg, f't{k}', f)
    else:
        start, scale = address_constants(fs)
        a_real, s_real = start.values[0] * 2.0 ** -start.frac, scale.values[0] * 2.0 ** -scale.frac
        u = p.mul(p.sub(arg, p.const(start)), p.const(scale))
        y = p.lookup(u, f't{k}', lambda w: f(w / s_real + a_real))
    if tables is None:  # the float meaning has no tables
        return y
    values = tables[f't{k}'].values  # a read lies between the smallest and the largest entry
    return p.assume(y, int(np.min(values)), int(np.max(values)))


def step(node, p, x, k: int, ins, vals: list, specs, tables):
    """The value of instruction k (program.py lists the ops)."""
    op, args, value, precision = ins
    a = [vals[i] for i in args]
    if op == 'x':
        return p.gather(x, np.asarray([value]))
    if op == 'const':
        return p.const(constant(p, value, type_of(precision, _where(node))))
    if op in ('add', 'sub', 'mul', 'min', 'max'):
        fn = {'add': p.add, 'sub': p.sub, 'mul': p.mul, 'min': p.minimum, 'max': p.maximum}[op]
        return fn(a[0], a[1])
    if op == 'neg':
        return p.neg(a[0])
    if op == 'abs':
        return p.piecewise(a[0], ZERO, lambda u: u, lambda u: p.neg(u))
    if op == 'sign':
        return _sign(p, a[0])
    if op == 'shift':
        return p.shift(a[0], value)
    if op == 'div':
        return p.div_trunc(a[0], value)
    if op == 'pow':
        return _power(p, a[0], value)
    if op == 'round':
        return _round(p, a[0], value)
    if op == 'func':
        return _func(node, p, k, a[0], value, specs, tables)
    return p.piecewise(a[0], ZERO, lambda _: a[1], lambda _: a[2])  # select


@recipe('Expression', attrs={'program': REQUIRED, 'outputs': REQUIRED, 'n_inputs': REQUIRED, 'functions': None,
                             'expressions': None})
def expression(node, p, x):
    """Interpret the node's program (docs/symbolic.md): exact arithmetic, casts where the program says, tables."""
    program, outputs, specs = checked_program(node)
    tables = p.tables(build_tables) if any(ins[0] == 'func' for ins in program) else None
    vals = []
    for k, ins in enumerate(program):
        v = step(node, p, x, k, ins, vals, specs, tables)
        t = type_of(ins[3], _where(node)) if ins[0] not in ('const', 'func') else None
        if t is not None:  # the exact value before the cast: the HLS emitter declares it too
            v = p.cast(p.label(v, f'e{k}'), t)
        vals.append(p.label(v, f'v{k}'))
    outs = [vals[o] for o in outputs]
    # each output is cast on its own (the same values as a cast after concatenating them at the finest LSB,
    # which could need more than 64 bits); an 'auto' result is the narrowest type holding every output
    hull = outs[0] if len(outs) == 1 else None

    def exact(value):
        return type_for(hull if hull is not None else p.concat(outs, 0))
    ys = [p.cast(v, 'result', exact) for v in outs]
    return ys[0] if len(ys) == 1 else p.concat(ys, 0)
