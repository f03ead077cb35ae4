"""HLS C++ emitter: one function per IR op, each returning readable ap_fixed C++ for one layer.

Every emitted layer computes exactly what the op's recipe (fpga4ml/semantics/recipes.py) computes
(docs/semantics.md). The C++ relies on three facts about Xilinx ap_fixed, all checked against the
real headers: `a * b`, `a + b` and `a - b` of two ap_fixed values are exact (the result type grows),
comparisons are exact, and assigning a value to an ap_fixed variable (or a C-style cast) applies
that type's rounding and then its overflow mode, which is fpga4ml's cast. Assigning a double is the
same cast of the double's exact value (the emulator's Input quantization).

An exact expression cast at once (`(result_t)(x * scale + bias)`) keeps the type ap_fixed gives it.
An exact intermediate the C++ stores in a variable of its own (hard_sigmoid's `x * slope + shift`,
Softmax's sum, the running max of a Merge) is declared in the narrowest type holding every value
the recipe's interval interpretation bounds it by: the recipe labels that value (`p.label`) and
`Context.intermediate` reads its type from `semantics.intermediate_types`.

Weights, biases and table entries are written as plain C integer arrays of mantissas (value =
mantissa * 2^-F) and turned into fixed-point values by `from_bits<T>(m)` (a bit assignment: wiring
in hardware). An array of ap_fixed initialised from decimal literals is equivalent, but g++ compiles
one constructor call per element: see `WEIGHTS_NOTE`.

The emitted layer functions take arrays: ``static void name(const in_t x[N], out_t y[M])``.
Tensors of any shape are flattened in C (row-major) order, as numpy stores them. With io_stream
(`Context.stream`) every tensor travels as packets of its last axis (a pixel's channels; a flat
vector is one packet) and each layer is one of three kinds (`stream_kind`): Conv and Pool are
line-buffered stream processes written by emit_cnn.py; per-position layers (Dense, Scale,
activations, Softmax, element-wise merges) are emitted for one packet and called once per
packet; the rest (Reshape, Pad, Crop, Resize, Transpose, concat, ...) take whole arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...fixed import FixedType
# the ReuseFactor rules live in folding.py (shared with the Verilog back end); emit_cnn imports them from here
from ...folding import (STRATEGIES, checked_reuse_factor, dense_settings, layer_strategy,  # noqa: F401
                        valid_reuse_factors)
from ...intervals import Interval, WideType, type_for
from ...ir import PIECEWISE_ACTIVATIONS, TABLE_ACTIVATIONS, Graph, GraphError, Node
from ...naming import Names, comment_line, comment_text
from ...semantics import intermediate_types
from ...semantics.params import element_groups, param_mantissas, relu_max_mantissa, relu_threshold_mantissa
from ...semantics.tables import Table, hls4ml_selu_lambda

WEIGHTS_NOTE = (
    'Weights are stored as integer mantissas (value = mantissa * 2^-F) and converted by from_bits<T>():\n'
    'g++ compiles a plain integer array in milliseconds, while an ap_fixed array initialised from\n'
    'decimal literals costs one inlined constructor call per element (g++ 12 -O1: 74 s for 10k\n'
    'weights, more than 10 minutes for 100k).')



# ---------------------------------------------------------------------------- names and literals

def int_type(t: FixedType) -> str:
    """The smallest C integer type that holds every mantissa of `t`."""
    for bits in (8, 16, 32, 64):
        if t.width <= bits:
            return f'int{bits}_t' if t.signed else f'uint{bits}_t'
    raise GraphError(f'type {t} is wider than 64 bits')


def index_int_type(n: int) -> str:
    """C type of an index array addressing n elements."""
    return 'uint16_t' if n <= 1 << 16 else 'uint32_t'


def int_literal(m: int) -> str:
    """A C integer literal for mantissa m (64-bit safe)."""
    m = int(m)
    if m == -(1 << 63):
        return '(-9223372036854775807LL - 1)'
    if -(1 << 31) <= m < (1 << 31):
        return str(m)
    return f'{m}LL'


def format_ints(values, per_line: int = 16) -> str:
    """Integers as the body of a C array initializer, `per_line` values a line."""
    vals = [int_literal(v) for v in np.asarray(values).ravel().tolist()]
    lines = [', '.join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return ',\n'.join('    ' + line for line in lines)


def real(m: int, frac: int) -> str:
    """Exact decimal text of m * 2^-frac (for comments)."""
    value = m / 2.0 ** frac if abs(m) < 1 << 53 else float(m) * 2.0 ** -frac
    return repr(float(value))


# ---------------------------------------------------------------------------- multiplier-free products

#: at most this many distinct non-zero weight values are selected among in a multiplier-free product
MAX_SHIFT_TERMS = 4


def shift_product(ctx: 'Context', node: Node, x_t: FixedType, w: np.ndarray, at: str, x_expr: str, w_expr: str,
                  zeros: bool) -> str | None:
    """A multiplier-free `(accum_t)(x * w)` for binary/ternary/power-of-two weights, or None.

    When every non-zero weight mantissa is +-2^q (binary {-1, +1}, ternary {-1, 0, +1}, any 2-bit
    signed type {-2, -1, 0, 1}, each times a power of two) and there are at most MAX_SHIFT_TERMS
    distinct values, the product x * w = +-(x * 2^t) is an exact shift (wiring) and an optional
    negation: `(accum_t)(((shift_t) x) << t)` or `(accum_t)(-(...))`, with shift_t giving the
    shift its headroom (or its extra fractional bits for t < 0). shift_t is a fact of the C++, not an
    intermediate of the recipe (const_matmul casts every product straight into the accumulator):
    ap_fixed's << and >> keep their operand's type, so x is first converted into its own type with
    the binary point moved t places, which holds x * 2^t exactly for every x. `w_expr` (the weight mantissa)
    selects the term; with constant weights (Latency) the select folds away. `zeros`: zero weights
    can occur (Resource, Conv) and add `(accum_t) 0`. The exact value before the cast is the same as
    the product's, so the cast and the result are bit-identical to the emulator's.
    """
    values = np.unique(np.asarray(w, dtype=np.int64))
    values = values[values != 0]
    mags = [abs(int(v)) for v in values]
    if not 0 < len(values) <= MAX_SHIFT_TERMS or any(m & (m - 1) for m in mags):
        return None
    frac_w = node.types['weight'].frac
    shift_types: dict[int, str] = {}
    terms = []
    for v in values.tolist():
        t = abs(v).bit_length() - 1 - frac_w  # x * w = sign * x * 2^t
        if t == 0:
            shifted = x_expr
        else:
            if t not in shift_types:
                st = (FixedType(x_t.width + t, x_t.integer + t, x_t.signed) if t > 0 else
                      FixedType(x_t.width - t, x_t.integer, x_t.signed))
                shift_types[t] = ctx.typedef(node, f'shift{t}' if t > 0 else f'shiftm{-t}', st,
                                             f'{label(node)}: input times 2^{t}, exact (a shift)')
            shifted = f'(({shift_types[t]}) {x_expr}) {"<<" if t > 0 else ">>"} {abs(t)}'
        terms.append((v, f'({at})({shifted})' if v > 0 else f'({at})(-({shifted}))'))
    expr = f'({at}) 0' if zeros else terms.pop()[1]
    for v, term in reversed(terms):
        expr = f'({w_expr} == {int_literal(v)} ? {term} : {expr})'
    return expr


# ---------------------------------------------------------------------------- emission context

@dataclass
class Port:
    """An array argument of a layer function: the tensor's C type and its element count."""

    ctype: str
    size: int
    shape: tuple[int, ...]
    ftype: FixedType


@dataclass
class Context:
    """Everything emitted for one model: typedefs, weight arrays and layer functions."""

    graph: Graph
    names: Names
    #: 'Vitis' or 'Vivado': the few pragmas that differ between the tools
    backend: str = 'Vitis'
    #: (typedef name, C++ type, comment) in emission order
    typedefs: list[tuple[str, str, str]] = field(default_factory=list)
    #: layer identifier (its weights header firmware/weights/<layer>.h) -> array definitions
    arrays: dict[str, list[str]] = field(default_factory=dict)
    #: node name -> typedef name of its output tensor
    tensor_types: dict[str, str] = field(default_factory=dict)
    #: node name -> C identifier (layer function name)
    idents: dict[str, str] = field(default_factory=dict)
    #: io_stream: FIFOs carry packets (one position's values); io_parallel: arrays
    stream: bool = False
    #: io_stream: node name -> typedef name of the packet of its output tensor
    packets: dict[str, str] = field(default_factory=dict)
    #: io_stream: (typedef name, C++ type, comment) of every packet type
    packet_typedefs: list[tuple[str, str, str]] = field(default_factory=list)
    #: layers that are not fully unrolled (Resource, or a Conv computing its pixels in several
    #: steps): an io_parallel top function is then a DATAFLOW pipeline instead of one PIPELINE
    folded: set[str] = field(default_factory=set)
    #: node name -> bounds of its output (the model's intervals); None: every input spans its whole type
    intervals: dict[str, Interval] | None = None

    def intermediates(self, node: Node) -> dict[str, FixedType | WideType]:
        """The exact type of every intermediate that node's recipe labels (a WideType beyond 64 bits)."""
        ins = [self.graph[i] for i in node.inputs]
        ivs = [self.intervals[n.name] if self.intervals is not None else Interval.of_type(n.result_type, n.shape)
               for n in ins]
        return intermediate_types(node, [n.result_type for n in ins], ivs)

    def intermediate(self, node: Node, name: str) -> FixedType:
        """The narrowest type holding the exact intermediate `name` that node's recipe labels.

        The recipe runs in the interval interpreter (semantics.intermediate_types) on the bounds of
        the node's inputs: `intervals` when given, else the full range of each input's type.
        """
        types = self.intermediates(node)
        if name not in types:
            raise GraphError(f'layer {node.name!r}: the {node.op} recipe labels no intermediate {name!r} '
                             f'(it labels {sorted(types)})')
        return types[name]

    def typedef(self, node: Node, var: str, t: FixedType, comment: str = '') -> str:
        """Declare `typedef <t> <node>_<var>_t;` and return its name."""
        stem = self.idents[node.name] if var == 'result' else f'{self.idents[node.name]}_{var}'
        name = self.names.new(f'{stem}_t')
        self.typedefs.append((name, t.to_cpp(), comment_line(comment or f'{label(node)}: {var}')))
        return name

    def array(self, node: Node, var: str, ctype: str, values, comment: str) -> str:
        """A `static const <ctype> <node>_<var>[N]` in firmware/weights/<node>.h; returns its name."""
        name = self.names.new(f'{self.idents[node.name]}_{var}')
        values = np.asarray(values).ravel()
        text = (f'// {comment_line(comment)}\n'
                f'static const {ctype} {name}[{values.size}] = {{\n{format_ints(values)}\n}};\n')
        self.arrays.setdefault(self.idents[node.name], []).append(text)
        return name

    def mantissa_array(self, node: Node, var: str, values, t: FixedType, what: str) -> str:
        """Mantissas of type `t` as the smallest C integer array; read them with from_bits<t>."""
        return self.array(node, var, int_type(t), values,
                          f'{what}: {t.to_cpp()}, value = mantissa * 2^-{t.frac}' if t.frac >= 0 else
                          f'{what}: {t.to_cpp()}, value = mantissa * 2^{-t.frac}')


def header(node: Node, what: str, lines: list[str] = ()) -> str:
    """The comment block above each layer function."""
    out = [f'// ---- {label(node)}: {what}'] + [f'// {line}' for line in lines]
    return '\n'.join(comment_line(line) for line in out) + '\n'


def label(node: Node) -> str:
    """The node's name as written in comments: an inert escape (naming.comment_text)."""
    return comment_text(node.name)


def arg_names(n: int) -> list[str]:
    """Names of a layer function's input arrays: x, or x0, x1, ... for several inputs."""
    return ['x'] if n == 1 else [f'x{k}' for k in range(n)]


def signature(func: str, ins: list[Port], out: Port, extra_outputs: list[str] = ()) -> str:
    """A layer function's head: the input arrays, the output array y, then any extra output arrays."""
    args = [f'const {p.ctype} {x}[{p.size}]' for x, p in zip(arg_names(len(ins)), ins)]
    return f'static void {func}({", ".join(args + [f"{out.ctype} y[{out.size}]"] + list(extra_outputs))})'


def elementwise(head: str, sig: str, n: int, body: list[str], before: list[str] = ()) -> str:
    """A layer function that applies `body` (statements using index i) to every element."""
    lines = [head + sig + ' {', '    #pragma HLS PIPELINE']
    lines += [f'    {s}' for s in before]
    lines += [f'    for (int i = 0; i < {n}; i++) {{', '        #pragma HLS UNROLL']
    lines += [f'        {s}' for s in body]
    lines += ['    }', '}', '']
    return '\n'.join(lines)


def address(var: str, idx: FixedType) -> str:
    """C expression of a table address: the index mantissa minus the index type's minimum.

    For a signed W-bit index that is its raw bits with the sign bit flipped; unsigned: the raw bits.
    """
    bits = f'{var}.range().to_uint()'
    return f'({bits} ^ {1 << (idx.width - 1)}u)' if idx.signed else bits


def from_bits(ctype: str, expr: str) -> str:
    return f'from_bits<{ctype}>({expr})'


def constant(ctx: Context, node: Node, var: str, m: int, frac: int) -> tuple[str, str]:
    """A scalar constant in the narrowest type with `frac` fractional bits holding it: (declaration, name)."""
    t = type_for(Interval.of_values(np.asarray(int(m)), frac))
    ctype = ctx.typedef(node, var, t, f'{label(node)}: {var} = {real(int(m), frac)}')
    return f'const {ctype} {var} = {from_bits(ctype, int_literal(m))};  // {real(int(m), frac)}', var


# ---------------------------------------------------------------------------- Dense

def emit_dense(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's dense_latency: acc = (accum_t) bias; acc += (accum_t)(x[i] * w[i][j]) in input order."""
    x, = ins
    w = np.asarray(node.qweights['kernel'], dtype=np.int64)
    n_in, n_out = w.shape
    strategy, rf = dense_settings(node, n_in, n_out)
    return dense_function(ctx, node, ctx.idents[node.name], w, x, out, strategy, rf, f'Dense {n_in} -> {n_out}')


def dense_function(ctx: Context, node: Node, func: str, w: np.ndarray, x: Port, out: Port, strategy: str, rf: int,
                   what: str) -> str:
    """`static void func(x, y)`: y = (result_t)(bias + sum of products cast into accum_t), one matrix w.

    The one product-accumulate of fpga4ml's HLS C++: Dense layers and the per-window kernel of a
    Conv (w = its im2col matrix) are both this function, Latency (dense_latency) or Resource
    (dense_resource). x holds one or more positions of w.shape[0] values each.
    """
    n_in, n_out = w.shape
    positions = x.size // n_in  # Dense acts on the last axis; leading axes are positions
    if strategy == 'Resource':
        ctx.folded.add(node.name)
    at = ctx.typedef(node, 'accum', node.types['accum'])
    wt = ctx.typedef(node, 'weight', node.types['weight'])
    bt = ctx.typedef(node, 'bias', node.types['bias'])
    bias = ctx.mantissa_array(node, 'bias', node.qweights['bias'], node.types['bias'], f'{label(node)} bias ({n_out})')
    nnz = int(np.count_nonzero(w))
    xo = f'p * {n_in} + ' if positions > 1 else ''
    # acc[j] += (accum_t)(x[i] * w[i][j]), with {xi} and {w} filled in by the strategy
    # binary/ternary/power-of-two weights: shifts and negations instead of multiplications
    shifts = shift_product(ctx, node, x.ftype, w, at, 'x[{xi}]', '{w}', zeros=strategy == 'Resource')
    product = shifts or f'({at})(x[{{xi}}] * {from_bits(wt, "{w}")})'
    if strategy == 'Latency':
        what = (f'{what}, Latency, ReuseFactor {rf} ({nnz} of {w.size} weights non-zero; '
                'zero weights add 0 exactly and are left out)')
        pragmas, products = dense_latency(ctx, node, w, rf, product, xo, positions)
    else:
        what = (f'{what}, Resource, ReuseFactor {rf} ({w.size // rf} '
                f'{"products" if shifts else "multiplications"} a cycle)')
        pragmas, products = dense_resource(ctx, node, w, rf, product, xo)
    head = header(node, what, [
        f'acc = ({at}) bias[j]; for i in input order: acc += ({at})(x[i] * w[i][j]); y[j] = ({out.ctype}) acc',
        'every product is rounded into the accumulator type and every partial sum takes its overflow mode']
        + (['weights are 0 or +-2^k: no multipliers, each product is a shift and an optional negation']
           if shifts else []))
    body = [f'{at} acc[{n_out}];', '#pragma HLS ARRAY_PARTITION variable=acc complete',
            f'for (int j = 0; j < {n_out}; j++) {{', '    #pragma HLS UNROLL',
            f'    acc[j] = ({at}) {from_bits(bt, f"{bias}[j]")};', '}']
    body += products
    body += [f'for (int j = 0; j < {n_out}; j++) {{', '    #pragma HLS UNROLL',
             f"    y[{f'p * {n_out} + ' if positions > 1 else ''}j] = ({out.ctype}) acc[j];", '}']
    if positions > 1:
        body = [f'for (int p = 0; p < {positions}; p++) {{'] + ['    ' + s for s in body] + ['}']
    pragmas.append(f'#pragma HLS ARRAY_PARTITION variable={bias} complete')
    lines = [head + signature(func, [x], out) + ' {'] + ['    ' + s for s in pragmas + body]
    return '\n'.join(lines + ['}', ''])


def dense_latency(ctx: Context, node: Node, w: np.ndarray, rf: int, product: str, xo: str,
                  positions: int) -> tuple[list[str], list[str]]:
    """Fully unrolled products over the non-zero weights, listed row-major (input order per output)."""
    nnz = int(np.count_nonzero(w))
    pragmas = [f'#pragma HLS PIPELINE II={rf}']
    if rf > 1:  # the multipliers are shared over the RF cycles of one sample
        pragmas.append(f'#pragma HLS ALLOCATION operation instances=mul limit={max(1, math.ceil(positions * nnz / rf))}')
    if not nnz:
        return pragmas, []
    n_in, n_out = w.shape
    rows, cols = np.nonzero(w)  # row-major: input order within every output
    w_in = ctx.array(node, 'w_in', index_int_type(n_in), rows, f'{label(node)}: input index i of each non-zero weight')
    w_out = ctx.array(node, 'w_out', index_int_type(n_out), cols,
                      f'{label(node)}: output index j of each non-zero weight')
    w_val = ctx.mantissa_array(node, 'w', w[rows, cols], node.types['weight'],
                               f'{label(node)} non-zero weights w[i][j], row-major')
    # every constant in a register of its own, so the unrolled loop folds them into the logic
    pragmas += [f'#pragma HLS ARRAY_PARTITION variable={a} complete' for a in (w_in, w_out, w_val)]
    return pragmas, [f'for (int k = 0; k < {nnz}; k++) {{', '    #pragma HLS UNROLL',
                     f'    acc[{w_out}[k]] += ' + product.format(xi=f'{xo}{w_in}[k]', w=f'{w_val}[k]') + ';', '}']


def dense_resource(ctx: Context, node: Node, w: np.ndarray, rf: int, product: str, xo: str) -> tuple[list[str], list[str]]:
    """RF pipelined cycles over the kernel in one array, each a fixed block of n_in*n_out/RF products.

    The kernel is walked row-major, so every output still sums its products in input order.
    """
    n_in, n_out = w.shape
    kern = ctx.mantissa_array(node, 'kernel', w, node.types['weight'],
                              f'{label(node)} kernel w[i][j] ({n_in} x {n_out}, row-major)')
    # the kernel in block RAM, one block of n_in*n_out/RF weights read a cycle
    storage = (f'#pragma HLS RESOURCE variable={kern} core=ROM_2P_BRAM' if ctx.backend == 'Vivado' else
               f'#pragma HLS BIND_STORAGE variable={kern} type=rom_2p impl=bram')
    pragmas = ['#pragma HLS INLINE off', storage,
               f'#pragma HLS ARRAY_RESHAPE variable={kern} block factor={w.size // rf}']
    if n_in % rf == 0:  # cycle r: input rows r*R .. r*R+R-1 into all outputs
        rows = n_in // rf
        return pragmas, [
            f'for (int r = 0; r < {rf}; r++) {{', '    #pragma HLS PIPELINE II=1',
            f'    for (int u = 0; u < {rows}; u++) {{', '        #pragma HLS UNROLL', f'        int i = r * {rows} + u;',
            f'        for (int j = 0; j < {n_out}; j++) {{', '            #pragma HLS UNROLL',
            '            acc[j] += ' + product.format(xi=f'{xo}i', w=f'{kern}[i * {n_out} + j]') + ';',
            '        }', '    }', '}']
    slices = rf // n_in  # n_in divides rf: cycle r multiplies C outputs of input row i = r / S
    width = n_out // slices
    return pragmas, [
        f'for (int r = 0; r < {rf}; r++) {{', '    #pragma HLS PIPELINE II=1',
        f'    int i = r / {slices};', f'    int j0 = (r % {slices}) * {width};',
        f'    for (int c = 0; c < {width}; c++) {{', '        #pragma HLS UNROLL',
        '        acc[j0 + c] += ' + product.format(xi=f'{xo}i', w=f'{kern}[i * {n_out} + j0 + c]') + ';',
        '    }', '}']


# ---------------------------------------------------------------------------- element-wise ops

def emit_scale(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """y = (result_t)(x * scale + bias), exact before the cast; scale and bias per last-axis channel."""
    x, = ins
    channels = node.shape[-1]
    s_t, b_t = node.types['scale'], node.types['bias']
    st, bt = ctx.typedef(node, 'scale', s_t), ctx.typedef(node, 'bias', b_t)
    scale = ctx.mantissa_array(node, 'scale', node.qweights['scale'], s_t, f'{label(node)} scale ({channels})')
    bias = ctx.mantissa_array(node, 'bias', node.qweights['bias'], b_t, f'{label(node)} bias ({channels})')
    c = 'i' if x.size == channels else f'i % {channels}'
    head = header(node, f'Scale over {channels} channels', ['y = (result_t)(x * scale + bias), exact before the cast'])
    return elementwise(head, signature(ctx.idents[node.name], ins, out), x.size, [
        f'y[i] = ({out.ctype})(x[i] * {from_bits(st, f"{scale}[{c}]")} + {from_bits(bt, f"{bias}[{c}]")});'])


def emit_activation(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Piecewise activations (exact, then one cast) and table activations (lookup)."""
    fn = node.attrs['function']
    if fn in TABLE_ACTIVATIONS:
        return emit_table_activation(ctx, node, ins, out)
    if fn not in PIECEWISE_ACTIVATIONS:
        raise GraphError(f'layer {node.name!r}: activation {fn!r} has no HLS emitter')
    x, = ins
    sig = signature(ctx.idents[node.name], ins, out)
    y = out.ctype
    n = x.size
    fx = x.ftype.frac
    if fn == 'linear':
        return elementwise(header(node, 'linear activation', ['y = (result_t) x']), sig, n, [f'y[i] = ({y}) x[i];'])
    if fn == 'relu':
        theta_m = relu_threshold_mantissa(node, fx)  # x > threshold <=> x > theta (exact at x's LSB)
        before, th, what = [], '0', 'max(x, 0)'
        if theta_m is not None:
            decl, th = constant(ctx, node, 'theta', theta_m, fx)
            before, what = [decl], f"(x > {node.attrs['threshold']} ? x : 0)"
        if node.attrs.get('max_value') is None:
            return elementwise(header(node, 'ReLU', [f'y = (result_t) {what}']), sig, n,
                               [f'y[i] = x[i] > {th} ? ({y}) x[i] : ({y}) 0;'], before)
        cap_m = relu_max_mantissa(node, fx)
        decl, cap = constant(ctx, node, 'cap', cap_m, fx)
        low = cap if cap_m < 0 else '0'  # min(0, max_value), where x is not above the threshold
        # the cast is monotone: casting the smaller of x and max_value (chosen by an exact comparison)
        # is the cast of the clipped value, with no variable to hold it
        head = header(node, f"ReLU with max_value {node.attrs['max_value']}", [
            f'y = (result_t) min({what}, max_value): the cast of x or of max_value, compared exactly'])
        clipped = f'x[i] > {cap} ? ({y}) {cap} : ({y}) x[i]'
        return elementwise(head, sig, n, [f'y[i] = x[i] > {th} ? ({clipped}) : ({y}) {low};'], before + [decl])
    params = param_mantissas(node)
    if fn in ('leaky_relu', 'prelu'):
        pt = ctx.typedef(node, 'param', node.types['param'])
        alpha_m, fa = params['alpha']
        if fn == 'leaky_relu':
            before = [f'const {pt} alpha = {from_bits(pt, int_literal(int(alpha_m)))};  // {real(int(alpha_m), fa)}']
            alpha = 'alpha'
            what = f'LeakyReLU, alpha = {real(int(alpha_m), fa)}'
        else:
            arr = ctx.mantissa_array(node, 'alpha', np.broadcast_to(alpha_m, node.shape), node.types['param'],
                                     f'{label(node)} alpha per element')
            before, alpha = [], from_bits(pt, f'{arr}[i]')
            what = 'PReLU'
        head = header(node, what, ['y = x > 0 ? (result_t) x : (result_t)(x * alpha), the product exact'])
        return elementwise(head, sig, n, [f'y[i] = x[i] > 0 ? ({y}) x[i] : ({y})(x[i] * {alpha});'], before)
    if fn == 'hard_tanh':
        head = header(node, 'hard tanh', ['y = (result_t) clip(x, -1, 1)'])
        return elementwise(head, sig, n, [f'y[i] = x[i] > 1 ? ({y}) 1 : x[i] < -1 ? ({y}) -1 : ({y}) x[i];'])
    if fn == 'hard_sigmoid':
        p_t = node.types['param']
        pt = ctx.typedef(node, 'param', p_t)
        slope_m, shift_m = int(params['slope'][0]), int(params['shift'][0])
        vt = ctx.typedef(node, 'exact', ctx.intermediate(node, 'exact'),
                         f'{label(node)}: x * slope + shift, exact (the narrowest type of its bounds)')
        before = [f'const {pt} slope = {from_bits(pt, int_literal(slope_m))};  // {real(slope_m, p_t.frac)}',
                  f'const {pt} shift = {from_bits(pt, int_literal(shift_m))};  // {real(shift_m, p_t.frac)}']
        head = header(node, 'hard sigmoid', ['y = (result_t) clip(x * slope + shift, 0, 1), exact before the cast'])
        return elementwise(head, sig, n, [f'{vt} v = x[i] * slope + shift;',
                                          f'y[i] = v < 0 ? ({y}) 0 : v > 1 ? ({y}) 1 : ({y}) v;'], before)
    raise GraphError(f'layer {node.name!r}: activation {fn!r} has no HLS emitter')


def table_arrays(ctx: Context, node: Node, var: str, table: Table, what: str) -> tuple[str, str, str]:
    """Typedefs and the entry array of a table: (index type, entry type, array name)."""
    modes = f'{table.index.rounding}, {table.index.overflow}'
    it = ctx.typedef(node, f'{var}_index', table.index, f'{label(node)}: {var} table index ({modes})')
    tt = ctx.typedef(node, f'{var}_table', table.type, f'{label(node)}: {var} table entries')
    arr = ctx.mantissa_array(node, f'{var}_table', table.values, table.type,
                             f'{label(node)} {what}: {len(table)} entries addressed by {table.index.to_cpp()}')
    return it, tt, arr


def emit_table_activation(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Table activation: idx = (index_t) x; address = mantissa(idx) - min; y = (result_t) table[address]."""
    x, = ins
    table: Table = node.attrs['tables']['f']
    fn = node.attrs['function']
    it, tt, arr = table_arrays(ctx, node, 'f', table, f'{fn}(index value)')
    if table.negated:
        return emit_hls4ml_elu(ctx, node, ins, out, (it, tt, arr))
    scaled = 'x[i]'
    if table.shift:  # hls4ml's tables: the index is x * N / R, a power of two: an exact product
        st = ctx.typedef(node, 'scale', FixedType(1, table.shift + 1, False), f'{label(node)}: 2^{table.shift}')
        scaled = f'(x[i] * {from_bits(st, "1")})'
    head = header(node, f'{fn} through a {len(table)}-entry table', [
        f'idx = (index_t) {scaled.replace("[i]", "")} ({table.index.rounding}, {table.index.overflow}); '
        'address = mantissa(idx) - min mantissa; y = (result_t) table[address]'])
    entry = from_bits(tt, f"{arr}[{address('idx', table.index)}]")
    return elementwise(head, signature(ctx.idents[node.name], ins, out), x.size, [
        f'{it} idx = ({it}) {scaled};', f'y[i] = ({out.ctype}) {entry};'])


def emit_hls4ml_elu(ctx: Context, node: Node, ins: list[Port], out: Port, names: tuple[str, str, str]) -> str:
    """hls4ml's elu/selu (recipes._elu_hls4ml): x > 0: x or lambda * x; else table[min(-mantissa(idx), N - 1)],
    idx = (index_t)(x * N / 8) (TRN_ZERO), times alpha (elu); the products exact, then (result_t)."""
    x, = ins
    table: Table = node.attrs['tables']['f']
    fn, y = node.attrs['function'], out.ctype
    it, tt, arr = names
    st = ctx.typedef(node, 'scale', FixedType(1, table.shift + 1, False), f'{label(node)}: 2^{table.shift}')
    entry = from_bits(tt, f'{arr}[a]')
    if fn == 'elu':
        pt = ctx.typedef(node, 'param', node.types['param'])
        alpha_m = int(node.types['param'].quantize(np.asarray([node.attrs.get('alpha', 1.0)]))[0])  # as p.param
        before = [f"const {pt} alpha = {from_bits(pt, int_literal(alpha_m))};  // {real(alpha_m, node.types['param'].frac)}"]
        above, below, what = f'({y}) x[i]', f'({y})({entry} * alpha)', f"ELU, alpha = {real(alpha_m, node.types['param'].frac)}"
    else:
        lam_m, lam_f = hls4ml_selu_lambda()
        decl, lam = constant(ctx, node, 'lambda', lam_m, lam_f)
        before, above, below, what = [decl], f'({y})(x[i] * {lam})', f'({y}) {entry}', 'SELU'
    head = header(node, f"{what}: hls4ml's {len(table)}-entry table of the negative side", [
        'x > 0: y = (result_t) ' + ('x' if fn == 'elu' else '(lambda * x)'),
        'else: idx = (index_t)(x * 2^%d) (TRN_ZERO, SAT); a = min(-mantissa(idx), %d); y = (result_t) %s'
        % (table.shift, len(table) - 1, 'table[a] * alpha' if fn == 'elu' else 'table[a]')])
    body = [f'if (x[i] > 0) {{', f'    y[i] = {above};', '} else {',
            f'    {it} idx = ({it})(x[i] * {from_bits(st, "1")});', '    int a = -idx.to_int();',
            f'    if (a > {len(table) - 1}) a = {len(table) - 1};', f'    y[i] = {below};', '}']
    return elementwise(head, signature(ctx.idents[node.name], ins, out), x.size, body, before)


def emit_softmax(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Softmax over the last axis, the steps of docs/semantics.md (hls4ml's implementations and Skip:
    emit_softmax.py)."""
    from .emit_softmax import emit_softmax_variant  # it builds on the helpers of this module
    variant = emit_softmax_variant(ctx, node, ins, out)
    if variant is not None:
        return variant
    x, = ins
    n = node.shape[-1]
    rows = x.size // n
    exp_tab: Table = node.attrs['tables']['exp']
    inv_tab: Table = node.attrs['tables']['inv']
    eit, ett, exp_arr = table_arrays(ctx, node, 'exp', exp_tab, 'exp(-address * 2^-F)')
    iit, itt, inv_arr = table_arrays(ctx, node, 'inv', inv_tab, '1 / (address * lsb)')
    # s starts at 0 and adds the e values one at a time: every partial sum lies between 0 and a bound
    # of the total, so the narrowest type of the total's bounds holds each of them exactly
    st = ctx.typedef(node, 'sum', ctx.intermediate(node, 'sum'),
                     f'{label(node)}: exact sum of {n} exp values (the narrowest type of its bounds)')
    bits = exp_tab.index.width - 1  # the index is fixed<B+1, R+1>: d in [-2^R, 0], mantissa in [-2^B, 0]
    last = len(exp_tab) - 1
    o = 'r * %d + ' % n if rows > 1 else ''
    head = header(node, f'Softmax over {n} values', [
        '1. d = x - max(x), exact; 2. floor d into the exp index type and negate its mantissa: address 0..2^B-1',
        '3. e = exp_table[address]; 4. s = sum(e), exact; 5. 1/s = inv_table[mantissa((inv_index_t) s)]',
        '6. y = (result_t)(e * 1/s), exact product'])
    body = [
        f'{x.ctype} m = x[{o}0];',
        f'for (int i = 1; i < {n}; i++) {{', '    #pragma HLS UNROLL', f'    if (x[{o}i] > m) m = x[{o}i];', '}',
        f'{ett} e[{n}];', '#pragma HLS ARRAY_PARTITION variable=e complete', f'{st} s = 0;',
        f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
        f'    {eit} d = ({eit})(x[{o}i] - m);',
        f"    unsigned a = {1 << bits}u - {address('d', exp_tab.index)};  // -mantissa(d), 0..{1 << bits}",
        f'    if (a > {last}u) a = {last}u;',
        f'    e[i] = {from_bits(ett, f"{exp_arr}[a]")};', '    s += e[i];', '}',
        f'{iit} si = ({iit}) s;',
        f"{itt} inv = {from_bits(itt, inv_arr + '[' + address('si', inv_tab.index) + ']')};",
        f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL', f'    y[{o}i] = ({out.ctype})(e[i] * inv);', '}']
    if rows > 1:
        body = [f'for (int r = 0; r < {rows}; r++) {{'] + ['    ' + s for s in body] + ['}']
    lines = [head + signature(ctx.idents[node.name], ins, out) + ' {', '    #pragma HLS PIPELINE']
    return '\n'.join(lines + ['    ' + s for s in body] + ['}', ''])


def emit_merge(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Merges computed exactly (ap_fixed + - * are exact), then one cast; concat casts each element."""
    mode = node.attrs['mode']
    sig = signature(ctx.idents[node.name], ins, out)
    xs = [f'{x}[i]' for x in arg_names(len(ins))]
    y = out.ctype
    if mode == 'concat':
        return emit_concat(ctx, node, ins, out, sig)
    if mode in ('add', 'avg', 'mul', 'sub'):
        op = {'add': ' + ', 'avg': ' + ', 'mul': ' * ', 'sub': ' - '}[mode]
        expr = op.join(xs)
        before = []
        if mode == 'avg':
            k = len(ins).bit_length() - 1
            decl, _ = constant(ctx, node, 'inv_n', 1, k)
            before.append(decl)
            expr = f'({expr}) * inv_n'
        head = header(node, f'Merge {mode} of {len(ins)} inputs', [
            f'y = (result_t)({expr.replace("[i]", "")}), exact before the cast'])
        return elementwise(head, sig, out.size, [f'y[i] = ({y})({expr});'], before)
    if mode in ('max', 'min'):
        vt = ctx.typedef(node, 'operands', ctx.intermediate(node, 'operands'),
                         f'{label(node)}: holds every input value exactly (the hull of their bounds)')
        cmp = '>' if mode == 'max' else '<'
        body = [f'{vt} v = {xs[0]};'] + [f'if ({x} {cmp} v) v = {x};' for x in xs[1:]] + [f'y[i] = ({y}) v;']
        head = header(node, f'Merge {mode} of {len(ins)} inputs', [f'y = (result_t) {mode}(x0, x1, ...), exact comparisons'])
        return elementwise(head, sig, out.size, body)
    raise GraphError(f"layer {node.name!r}: merge mode {mode!r} has no HLS emitter")


def emit_concat(ctx: Context, node: Node, ins: list[Port], out: Port, sig: str) -> str:
    """Concatenation along an axis: each element cast into the result type."""
    ndim = len(node.shape)
    axis = int(node.attrs.get('axis', -1))
    if not -ndim <= axis < 0:  # the IR's concat axis is a negative per-sample axis (the emulator's convention)
        raise GraphError(f'layer {node.name!r}: concat axis {axis} must be a negative per-sample axis '
                         f'in [-{ndim}, -1]')
    axis += ndim
    outer = int(np.prod(node.shape[:axis], dtype=np.int64))
    inners = [int(np.prod(p.shape[axis:], dtype=np.int64)) for p in ins]
    total = sum(inners)
    body, offset = [], 0
    for k, inner in enumerate(inners):
        body += [f'for (int i = 0; i < {inner}; i++) {{', '    #pragma HLS UNROLL',
                 f'    y[o * {total} + {offset} + i] = ({out.ctype}) {arg_names(len(ins))[k]}[o * {inner} + i];', '}']
        offset += inner
    head = header(node, f'Concatenate {len(ins)} inputs along axis {axis}', ['each element: y = (result_t) x'])
    lines = [head + sig + ' {', '    #pragma HLS PIPELINE', f'    for (int o = 0; o < {outer}; o++) {{',
             '        #pragma HLS UNROLL']
    return '\n'.join(lines + ['        ' + s for s in body] + ['    }', '}', ''])


def emit_reshape(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Reshape/Flatten: the values are copied unchanged (C order)."""
    head = header(node, f'Reshape {ins[0].shape} -> {node.shape}', ['y = x (same type, C order)'])
    return elementwise(head, signature(ctx.idents[node.name], ins, out), out.size, ['y[i] = x[i];'])


def emit_quantize(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """An explicit cast into the result type; per element (attrs['element_types']) a cast into each
    element's own type first: one unrolled loop per distinct type over a constant index table."""
    groups = element_groups(node)
    if groups is None:
        head = header(node, 'Quantize', ['y = (result_t) x'])
        return elementwise(head, signature(ctx.idents[node.name], ins, out), out.size, [f'y[i] = ({out.ctype}) x[i];'])
    head = header(node, f'Quantize per element: {len(groups)} distinct element types', [
        'y[e] = (result_t)(element_t) x[e] for every element e (element_t: its own type); pruned elements are 0'])
    lines = [head + signature(ctx.idents[node.name], ins, out) + ' {', '    #pragma HLS PIPELINE']
    for g, (t, idx) in enumerate(groups):
        table = ctx.array(node, f'e{g}_index', index_int_type(out.size), idx,
                          f'{label(node)}: the {len(idx)} elements of type {t.to_cpp() if t else "pruned (always 0)"}')
        lines.append(f'    #pragma HLS ARRAY_PARTITION variable={table} complete')
        if t is None:
            value = f'({out.ctype}) 0'
        else:
            et = ctx.typedef(node, f'e{g}', t, f'{label(node)}: element type {g}')
            value = f'({out.ctype})({et}) x[{table}[k]]'
        lines += [f'    for (int k = 0; k < {len(idx)}; k++) {{', '        #pragma HLS UNROLL',
                  f'        y[{table}[k]] = {value};', '    }']
    return '\n'.join(lines + ['}', ''])


def emit_expression(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """A symbolic expression layer (emit_symbolic.py builds on the helpers of this module)."""
    from .emit_symbolic import emit_expression as emit

    return emit(ctx, node, ins, out)


EMITTERS: dict[str, Callable[[Context, Node, list[Port], Port], str]] = {
    'Dense': emit_dense,
    'Scale': emit_scale,
    'Activation': emit_activation,
    'Softmax': emit_softmax,
    'Merge': emit_merge,
    'Reshape': emit_reshape,
    'Quantize': emit_quantize,
    'Expression': emit_expression,
}


from .emit_attention import ATTENTION_EMITTERS  # noqa: E402  (LayerNorm, EinsumDense, Einsum)

EMITTERS.update(ATTENTION_EMITTERS)

from .emit_rnn import RNN_EMITTERS  # noqa: E402  (SimpleRNN, LSTM, GRU and the Select nodes reading them)

EMITTERS.update(RNN_EMITTERS)


def emitter_of(op: str) -> Callable[[Context, Node, list[Port], Port], str] | None:
    """The emitter of an IR op: those above, or the window and index-map ops of emit_cnn.py."""
    from .emit_cnn import CNN_EMITTERS  # emit_cnn builds on the helpers of this module

    return EMITTERS.get(op) or CNN_EMITTERS.get(op)


#: ops whose packets of output are each computed from the same packets of the inputs (io_stream
#: calls them once per position); see `stream_kind`
POSITION_OPS = ('Dense', 'Scale', 'Activation', 'Softmax', 'Merge', 'Quantize')


def positions(shape: tuple[int, ...]) -> int:
    """How many packets carry a tensor in io_stream: its size over its last axis (pixels of a feature map)."""
    return int(np.prod(shape[:-1], dtype=np.int64))


def stream_kind(graph: Graph, node: Node) -> str:
    """How a layer streams: 'line' (Conv, Pool: a line buffer), 'position' (a packet at a time), 'tensor' (arrays).

    A per-position op streams packet by packet when every input has the output's positions;
    PReLU (an alpha per element), per-element Quantize and concat need the element's place in the
    tensor and take whole arrays, as Reshape and the index-map ops do.
    """
    if node.op in ('Conv', 'Pool'):
        return 'line'
    if node.op not in POSITION_OPS or any(positions(graph[i].shape) != positions(node.shape) for i in node.inputs):
        return 'tensor'
    if ((node.op == 'Activation' and node.attrs.get('function') == 'prelu')
            or (node.op == 'Merge' and node.attrs.get('mode') == 'concat')
            or (node.op == 'Quantize' and element_groups(node) is not None)):
        return 'tensor'
    return 'position'


def n_writes(graph: Graph, name: str) -> int:
    """How many FIFOs or output ports a layer writes in io_stream: one per reading input and graph output."""
    return sum(c.inputs.count(name) for c in graph) + list(graph.outputs).count(name)


def emit_layer(ctx: Context, node: Node) -> str:
    """The C++ function of one typed node (its typedefs and arrays go into `ctx`)."""
    from ...semantics.spec import n_outputs
    if (node.op == 'Select' or n_outputs(node) > 1) and node.op not in RNN_EMITTERS:
        raise GraphError(f'layer {node.name!r}: the HLS back end does not support nodes with several outputs yet '
                         f'({node.op}); the emulator and the Verilog back end do')
    emitter = emitter_of(node.op)
    if emitter is None:
        from .emit_cnn import CNN_EMITTERS

        raise GraphError(f'layer {node.name!r}: op {node.op!r} has no HLS emitter; '
                         f'supported: {sorted(EMITTERS | CNN_EMITTERS)}')
    if 'ParallelizationFactor' in node.config and node.op != 'Conv':
        raise ValueError(f'layer {node.name!r} ({node.op}): ParallelizationFactor applies to Conv layers only '
                         '(the output pixels computed in parallel); remove it from this layer')
    one = ctx.stream and stream_kind(ctx.graph, node) == 'position'
    ins = [port(ctx, ctx.graph[name], one) for name in node.inputs]
    return emitter(ctx, node, ins, port(ctx, node, one))


def port(ctx: Context, node: Node, one_position: bool = False) -> Port:
    """The array argument carrying `node`'s output tensor (or one packet of it: its last axis)."""
    shape = node.shape[-1:] if one_position else node.shape
    return Port(ctx.tensor_types[node.name], int(np.prod(shape, dtype=np.int64)), shape, node.result_type)


def new_context(graph: Graph, reserved: set[str], backend: str = 'Vitis', stream: bool = False,
                intervals: dict[str, Interval] | None = None) -> Context:
    """A context with identifiers and result typedefs for every node (and io_stream packets), in graph order.

    intervals: the bounds of every node's output (Model.intervals), which narrow the exact
    intermediate types; without them each input is bounded by its type.
    """
    ctx = Context(graph, Names(reserved), backend=backend, stream=stream, intervals=intervals)
    for node in graph:
        ctx.idents[node.name] = ctx.names.new(node.name)
    for node in graph:
        if node.result_type is None:
            raise GraphError(f'layer {node.name!r} has no result type: convert the graph before writing it')
        shape = 'x'.join(str(d) for d in node.shape)
        ctx.tensor_types[node.name] = ctx.typedef(node, 'result', node.result_type,
                                                  f'{label(node)}: {node.op} output ({shape})')
    if stream:
        for node in graph:
            name = ctx.names.new(f'{ctx.idents[node.name]}_packet_t')
            ctx.packets[node.name] = name
            ctx.packet_typedefs.append((name, f'packet<{ctx.tensor_types[node.name]}, {node.shape[-1]}>', comment_line(
                f'{label(node)}: {positions(node.shape)} transfer(s) of {node.shape[-1]} values')))
    return ctx
