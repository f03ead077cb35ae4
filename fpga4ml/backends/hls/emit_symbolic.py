"""HLS C++ of an 'Expression' layer: one statement per program instruction, ap_types only.

The program (fpga4ml/symbolic/program.py) is written out as it is interpreted by its recipe
(fpga4ml/semantics/recipes_symbolic.py): every instruction k becomes ``v<k>``, declared in the
narrowest type holding its exact value (the recipe labels it ``v<k>``: `semantics.intermediate_types`),
so each ``+ - *`` of ap_fixed values (exact, the result type grows) is stored without loss. An
instruction with its own precision computes its exact value ``e<k>`` (also labelled) and assigns it
to ``v<k>`` of that precision: the assignment is the cast. Selections (min, max, abs, Piecewise) are
ternaries that convert only the chosen value; a rounding to an integer (floor, rint) is the
assignment to its integer type with that rounding (AP_TRN, AP_RND_CONV). Functions are tables: the
argument is assigned to its argument type, then to the table's index type (its rounding, SAT), and
the entry is read by address; no vendor math header is used.

An exact value may need more than the 64 bits of a FixedType (``x0*x1*x2*x3*x4`` of ap_fixed<16,6>
inputs is 76 bits wide): it is declared as a `WideType` (intervals.exact_type, shared by every HLS emitter), the same ap_fixed spelling, which ap_types
accept up to AP_INT_MAX_W (1024 bits by default, ap_common.h) and compute exactly, as the emulator
does. Only `div` needs a mantissa of at most 64 bits (it divides the int64 mantissa).
"""

from __future__ import annotations

import re

import sympy
from sympy.printing.str import StrPrinter

from ...fixed import FixedType
from ...ir import GraphError, Node
from ...naming import comment_text
from ...semantics.recipes_symbolic import checked_program, constant_mantissa
from ...symbolic.functions import address_constants
from ...symbolic.program import ROUND_MODES, type_of
from .emit import Context, Port, address, constant, from_bits, header, int_literal, label, real, signature, table_arrays


class _Writer:
    """Statements of one Expression layer."""

    def __init__(self, ctx: Context, node: Node):
        self.ctx, self.node = ctx, node
        self.types = ctx.intermediates(node)
        self.program, self.outputs, self.specs = checked_program(node)
        self.declared: dict[int, FixedType] = {}
        self.lines: list[str] = []

    def typedef(self, var: str, t: FixedType, what: str) -> str:
        return self.ctx.typedef(self.node, var, t, f'{label(self.node)}: {what}')

    def declare(self, k: int, expr: str, what: str, select: bool = False, rounding: str | None = None) -> None:
        """v<k> = expr: directly in its exact type, or through e<k> and the cast into the instruction's precision.

        select: expr is a ternary whose branches are written `{T}`-converted into the declared type.
        rounding: the exact type's rounding (a 'round' instruction: its integer type rounds the assignment).
        """
        op, precision = self.program[k][0], self.program[k][3]
        cast = type_of(precision, f'layer {self.node.name!r}') if op not in ('const', 'func') else None
        name = f'e{k}' if cast is not None else f'v{k}'
        t = self.types[name] if rounding is None else self.types[name].with_(rounding=rounding)
        ct = self.typedef(name, t, f'{what}, exact')
        self.lines.append(f'{ct} {name} = {expr.format(T=ct) if select else expr};  // {what}')
        self.declared[k] = t
        if cast is not None:
            vt = self.typedef(f'v{k}', cast, f'v{k} = ({cast.to_cpp()}) e{k}: the precision of this sub-expression')
            self.lines.append(f'{vt} v{k} = e{k};  // cast into {cast.to_cpp()}')
            self.declared[k] = cast

    def instruction(self, k: int) -> None:
        op, args, value, precision = self.program[k]
        a = [f'v{i}' for i in args]
        if op == 'x':
            self.declare(k, f'x[{value}]', f'x{value}')
        elif op == 'const':
            m, frac = constant_mantissa(value, type_of(precision, label(self.node)))
            decl, name = constant(self.ctx, self.node, f'c{k}', m, frac)
            self.lines.append(decl)
            self.declare(k, name, f'constant {real(m, frac)} ({type_of(precision, label(self.node)).to_cpp()})')
        elif op in ('add', 'sub', 'mul'):
            sym = {'add': '+', 'sub': '-', 'mul': '*'}[op]
            self.declare(k, f'{a[0]} {sym} {a[1]}', f'{a[0]} {sym} {a[1]}')
        elif op in ('min', 'max'):
            cmp = '<' if op == 'min' else '>'
            self.declare(k, f'{a[0]} {cmp} {a[1]} ? ({{T}}) {a[0]} : ({{T}}) {a[1]}', f'{op}({a[0]}, {a[1]})', True)
        elif op == 'neg':
            self.declare(k, f'-{a[0]}', f'-{a[0]}')
        elif op == 'abs':
            self.declare(k, f'{a[0]} > 0 ? ({{T}}) {a[0]} : ({{T}}) -{a[0]}', f'|{a[0]}|', True)
        elif op == 'sign':
            self.declare(k, f'{a[0]} > 0 ? ({{T}}) 1 : {a[0]} < 0 ? ({{T}}) -1 : ({{T}}) 0', f'sign({a[0]})', True)
        elif op == 'shift':
            decl, name = constant(self.ctx, self.node, f'p{k}', 1, -value)
            self.lines.append(decl)
            self.declare(k, f'{a[0]} * {name}', f'{a[0]} * 2^{value}, exact')
        elif op == 'div':
            self.div(k, a[0], args[0], value)
        elif op == 'pow':
            self.declare(k, ' * '.join([a[0]] * value), f'{a[0]}^{value}')
        elif op == 'round':
            self.declare(k, a[0], f'{value} rounding of {a[0]} to an integer (the assignment rounds)',
                         rounding=ROUND_MODES[value])
        elif op == 'func':
            self.table(k, a[0], value, precision)
        elif op == 'select':
            self.declare(k, f'{a[0]} > 0 ? ({{T}}) {a[1]} : ({{T}}) {a[2]}', f'{a[0]} > 0 ? {a[1]} : {a[2]}', True)
        else:
            raise GraphError(f'layer {self.node.name!r}: expression op {op!r} has no HLS emitter')

    def div(self, k: int, a: str, i: int, q: int) -> None:
        t = self.declared[i]
        if t.width > 64:
            raise GraphError(f'layer {self.node.name!r}: instruction {k} divides a {t.width}-bit value by {q}; the '
                             'HLS back end divides mantissas of at most 64 bits: give the dividend a precision')
        self.declare(k, from_bits('{T}', f'{a}.V.to_int64() / {int_literal(q)}'),
                     f'{a} / {q}: its mantissa divided, truncated toward zero', True)

    def table(self, k: int, a: str, value, precision: str) -> None:
        fs, arg_t = self.specs[value[0]], type_of(value[1], label(self.node))
        table = self.node.attrs['tables'][f't{k}']
        what = (f'{fs.math_func} on [{fs.range_start}, {fs.range_end}) in {fs.table_size} steps' if fs.ranged
                else f'{fs.math_func}(index value)')
        it, tt, arr = table_arrays(self.ctx, self.node, f't{k}', table, f'{comment_text(value[0])}: {what}')
        at = self.typedef(f'a{k}', arg_t, f'argument of table t{k}')
        self.lines.append(f'{at} a{k} = {a};  // the argument in its type')
        scaled = f'a{k}'
        if fs.ranged:
            start, scale = address_constants(fs)
            d1, s1 = constant(self.ctx, self.node, f'start{k}', int(start.values[0]), start.frac)
            d2, s2 = constant(self.ctx, self.node, f'scale{k}', int(scale.values[0]), scale.frac)
            self.lines += [d1, d2]
            scaled = f'(a{k} - {s1}) * {s2}'
        self.lines.append(f'{it} i{k} = {scaled};  // the index ({table.index.rounding}, {table.index.overflow})')
        self.declare(k, from_bits(tt, f'{arr}[{address(f"i{k}", table.index)}]'),
                     f'{comment_text(value[0])}({a}) from table t{k}')


class _CommentPrinter(StrPrinter):
    """sympy's text with pow(a, n) for powers: comment_text escapes '*' and '^'."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sympy.Rational(1, 2):
            return f'sqrt({self._print(expr.base)})'
        return f'pow({self._print(expr.base)}, {self._print(expr.exp)})'


def readable(expr: str) -> str:
    """An expression for a comment: pow(a, n) for powers, a space for products, escaped (comment_text)."""
    from ...symbolic.parse import parse
    try:
        text = _CommentPrinter().doprint(parse(expr, re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\(', expr)))
    except ValueError:  # not in the expression language (a hand-made node): shown escaped as it is
        text = expr
    return comment_text(text.replace('*', ' '))


def emit_expression(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """An Expression layer: the program's statements, then y[j] = (result_t) v<output j>."""
    w = _Writer(ctx, node)
    for k in range(len(w.program)):
        w.instruction(k)
    outs = [f'y[{j}] = ({out.ctype}) v{o};' for j, o in enumerate(w.outputs)]
    exprs = [f'y[{j}] = {readable(e)}' for j, e in enumerate(node.attrs.get('expressions') or [])]
    head = header(node, f'symbolic expression, {len(w.program)} instructions, {len(w.outputs)} output(s)', exprs + [
        'every + - * is exact (each value is declared in the narrowest type holding it); functions are tables'])
    body = ['    #pragma HLS PIPELINE'] + [f'    {s}' for s in w.lines + outs]
    return '\n'.join([head + signature(ctx.idents[node.name], ins, out) + ' {'] + body + ['}', ''])
