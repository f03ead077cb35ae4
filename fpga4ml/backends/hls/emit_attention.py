"""HLS C++ of the transformer ops (recipes_attention.py): EinsumDense, Einsum, LayerNorm, TableSoftmax,
MaskedSoftmax, Embedding, BiasAdd, TableDense.

Each function computes its recipe's steps in the same order with the same casts, so the C
simulation is bit-identical to the emulator. Index plans (which input element meets which weight)
come from recipes_attention.einsum_terms, the order the recipes sum in; the LayerNorm table and its
normalisation layout come from the typed node; the exact intermediates are declared in the
narrowest types of their bounds (Context.intermediate, from the recipe's labels).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...fixed import FixedType
from ...folding import reuse_factor
from ...ir import Node
from ...semantics.recipes_attention import einsum_terms, norm_axes, softmax_mask
from .emit import (Context, Port, address, constant, from_bits, header, index_int_type, int_literal, label, signature,
                   table_arrays)


def _index_array(ctx: Context, node: Node, var: str, index: np.ndarray, what: str) -> str:
    """A constant integer array of flat indices (C order of `index`)."""
    return ctx.array(node, var, index_int_type(int(index.max(initial=0)) + 1), index, what)


def _pow2(ctx: Context, node: Node, var: str, k: int) -> str:
    """A constant 2^k in the one-bit type holding it exactly: (C expression)."""
    t = ctx.typedef(node, var, FixedType(1, k + 1, False), f'{label(node)}: 2^{k}, exact')
    return from_bits(t, '1')


def _function(ctx: Context, node: Node, ins: list[Port], out: Port, head: str, body: list[str], ii: int = 1) -> str:
    pipeline = '    #pragma HLS PIPELINE' + (f' II={ii}' if ii > 1 else '')
    lines = [head + signature(ctx.idents[node.name], ins, out) + ' {', pipeline]
    return '\n'.join(lines + ['    ' + s for s in body] + ['}', ''])


def _multiplier_limit(products: int, rf: int) -> list[str]:
    """hls4ml's dense_latency sharing: at most ceil(products / R) multipliers when R > 1 (none otherwise)."""
    if rf <= 1:
        return []
    return [f'#pragma HLS ALLOCATION operation instances=mul limit={max(1, math.ceil(products / rf))}']


def _terms_loop(n_out: int, n_terms: int, init: str, term: str, at: str, out: Port) -> list[str]:
    """for every output o: acc = init; acc += (accum_t)(term) over its terms c; y[o] = (result_t) acc."""
    return [f'for (int o = 0; o < {n_out}; o++) {{', '    #pragma HLS UNROLL', f'    {at} acc = {init};',
            f'    for (int c = 0; c < {n_terms}; c++) {{', '        #pragma HLS UNROLL',
            f'        acc += ({at})({term});', '    }', f'    y[o] = ({out.ctype}) acc;', '}']


def emit_einsum_dense(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """y[o] = (result_t)((accum_t) bias[o] + sum over c of (accum_t)(x[xi[o][c]] * w[o][c])), hls4ml's Dense per position."""
    x, = ins
    eq = node.attrs['equation']
    kernel = np.asarray(node.qweights['kernel'], dtype=np.int64)
    xi, ki = einsum_terms(node, eq, [x.shape, kernel.shape])
    n_out, n_terms = xi.shape
    at = ctx.typedef(node, 'accum', node.types['accum'])
    wt = ctx.typedef(node, 'weight', node.types['weight'])
    bt = ctx.typedef(node, 'bias', node.types['bias'])
    w = ctx.mantissa_array(node, 'weight', kernel.ravel()[ki], node.types['weight'],
                           f'{label(node)} kernel per output and term ({n_out} x {n_terms})')
    b = ctx.mantissa_array(node, 'bias', node.qweights['bias'], node.types['bias'], f'{label(node)} bias ({n_out})')
    xs = _index_array(ctx, node, 'x_index', xi, f'{label(node)}: input element of each output and term')
    rf = reuse_factor(node)   # hls4ml's dense_latency: II = R, the multiplications shared over R cycles
    products = int(np.count_nonzero(kernel.ravel()[ki]))
    head = header(node, f'EinsumDense {eq}: {n_out} outputs of {n_terms} terms, ReuseFactor {rf}', [
        f'acc = ({at}) bias[o]; acc += ({at})(x[x_index[o][c]] * w[o][c]) in term order; y[o] = (result_t) acc'])
    body = [f'#pragma HLS ARRAY_PARTITION variable={arr} complete' for arr in (w, b, xs)]
    body += _multiplier_limit(products, rf)
    body += _terms_loop(n_out, n_terms, f'({at}) {from_bits(bt, f"{b}[o]")}',
                        f'x[{xs}[o * {n_terms} + c]] * {from_bits(wt, f"{w}[o * {n_terms} + c]")}', at, out)
    return _function(ctx, node, ins, out, head, body, rf)


def emit_einsum(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """y[o] = (result_t)(acc), acc = 0; acc += (accum_t)(a * b) over the terms (compose.einsum's order)."""
    a, b = ins
    eq = node.attrs['equation']
    ai, bi = einsum_terms(node, eq, [a.shape, b.shape])
    n_out, n_terms = ai.shape
    at = ctx.typedef(node, 'accum', node.types['accum'])
    ax = _index_array(ctx, node, 'a_index', ai, f'{label(node)}: first operand element of each output and term')
    bx = _index_array(ctx, node, 'b_index', bi, f'{label(node)}: second operand element of each output and term')
    rf = reuse_factor(node, ctx.graph)   # II = R, the multiplications shared over R cycles
    head = header(node, f'Einsum {eq}: {n_out} outputs of {n_terms} terms, ReuseFactor {rf}', [
        f'acc = 0; acc += ({at})(x0[a] * x1[b]) in term order (every product and partial sum cast); '
        'y[o] = (result_t) acc'])
    body = [f'#pragma HLS ARRAY_PARTITION variable={arr} complete' for arr in (ax, bx)]
    body += _multiplier_limit(n_out * n_terms, rf)
    body += _terms_loop(n_out, n_terms, f'({at}) 0',
                        f'x0[{ax}[o * {n_terms} + c]] * x1[{bx}[o * {n_terms} + c]]', at, out)
    return _function(ctx, node, ins, out, head, body, rf)


def emit_layer_norm(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """LayerNorm per row, the steps of tables_attention.py (exact integers, normalised variance, one table)."""
    x, = ins
    _, n = norm_axes(node)
    rows = x.size // n
    table = node.attrs['tables']['rsqrt']
    kinds = {name: ctx.typedef(node, name, ctx.intermediate(node, name), f'{label(node)}: {name}, exact')
             for name in ('row_sum', 'centered', 'square_sum', 'variance', 'scaled')}
    ut = ctx.typedef(node, 'u', FixedType(table.u_frac, 0, False), f'{label(node)}: variance * 2^-{table.window}')
    it, tt, arr = table_arrays(ctx, node, 'rsqrt', table, 'sqrt(n) / sqrt(normalised variance)')
    at = ctx.typedef(node, 'accum', node.types['accum'])
    o = f'r * {n} + ' if rows > 1 else ''
    eps, eps_name = constant(ctx, node, 'eps', table.eps_mantissa, table.u_frac - table.window)
    body = [eps, f'{kinds["row_sum"]} s = 0;', f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
            f'    s += x[{o}i];', '}',
            f'{kinds["scaled"]} d[{n}];', '#pragma HLS ARRAY_PARTITION variable=d complete',
            f'{kinds["square_sum"]} q = 0;', f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
            f'    {kinds["centered"]} c = {n} * x[{o}i] - s;', '    d[i] = c;', '    q += c * c;', '}',
            f'{kinds["variance"]} v = q + {eps_name};',
            f'{ut} u = ({ut})(v * {_pow2(ctx, node, "window", -table.window)});']
    for k in table.stages:
        threshold = from_bits(ut, int_literal(1 << (table.u_frac - 2 * k)))
        body += [f'if (u < {threshold}) {{  // below 4^-{k}: scale u by 4^{k}, d by 2^{k}',
                 f'    u = u << {2 * k};', f'    for (int i = 0; i < {n}; i++) {{', '        #pragma HLS UNROLL',
                 f'        d[i] = d[i] << {k};', '    }', '}']
    entry = from_bits(tt, arr + '[' + address('idx', table.index) + ']')
    body += [f'{it} idx = ({it}) u;', f'{tt} t = {entry};',
             f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
             f'    {at} z = ({at})(d[i] * t * {_pow2(ctx, node, "half_window", -(table.window // 2))});',
             f'    y[{o}i] = ({out.ctype})({_affine(ctx, node, n)});', '}']
    if rows > 1:
        body = [f'for (int r = 0; r < {rows}; r++) {{'] + ['    ' + s for s in body] + ['}']
    head = header(node, f'LayerNorm over {n} values per row, {rows} rows', [
        'd = n x - sum(x), q = sum(d^2), v = q + round(n^3 eps): exact; u = v 2^-H in [0, 1)',
        'while u < 4^-k (k = stages): u <<= 2k, d <<= k; t = table[(index_t) u] = sqrt(n)/sqrt(u)',
        'z = (accum_t)(d t 2^-H/2); y = (result_t)(z gamma + beta), exact'])
    return _function(ctx, node, ins, out, head, body)


def _affine(ctx: Context, node: Node, n: int) -> str:
    """z * gamma[i] + beta[i] (each only when the layer has it), exact."""
    expr = 'z'
    if node.attrs.get('scale', True):
        st = ctx.typedef(node, 'scale', node.types['scale'])
        g = ctx.mantissa_array(node, 'gamma', node.qweights['gamma'], node.types['scale'], f'{label(node)} gamma ({n})')
        expr = f'z * {from_bits(st, f"{g}[i]")}'
    if node.attrs.get('center', True):
        bt = ctx.typedef(node, 'bias', node.types['bias'])
        b = ctx.mantissa_array(node, 'beta', node.qweights['beta'], node.types['bias'], f'{label(node)} beta ({n})')
        expr = f'{expr} + {from_bits(bt, f"{b}[i]")}'
    return expr


def emit_table_softmax(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """TableSoftmax per row: d = (exp_index_t)(max - x) (not stable: (exp_index_t) x); e = exp_table[d]; s = sum(e), exact;
    r = inv_table[(inv_index_t) s]; y = (result_t)(e * r)."""
    x, = ins
    n = node.shape[-1]
    rows = x.size // n
    tabs = node.attrs['tables']
    eit, ett, exp_arr = table_arrays(ctx, node, 'exp', tabs['exp'], 'exp(-d * scale)')
    iit, itt, inv_arr = table_arrays(ctx, node, 'inv', tabs['inv'], '1 / (s + epsilon)')
    dt = ctx.typedef(node, 'd_in', node.attrs['exp_index'], f'{label(node)}: the exp input quantizer')
    st = ctx.typedef(node, 'si', node.attrs['inv_index'], f'{label(node)}: the 1/x input quantizer')
    sum_t = ctx.typedef(node, 'sum', ctx.intermediate(node, 'sum'), f'{label(node)}: exact sum of the exp values')
    exp_entry = from_bits(ett, exp_arr + '[' + address('a', tabs['exp'].index) + ']')
    inv_entry = from_bits(itt, inv_arr + '[' + address('b', tabs['inv'].index) + ']')
    mask = None if node.attrs.get('mask') is None else softmax_mask(node).reshape(rows, n)
    keep = None if mask is None else ctx.array(node, 'mask', 'bool', mask.astype(int),
                                               f'{label(node)}: 1 where the key takes part ({rows} x {n})')
    kept = (lambda i: 'true') if keep is None else (lambda i: f'{keep}[r * {n} + {i}]')
    stable = node.attrs.get('stable', True)
    top = [f'{x.ctype} m = 0;', 'bool seen = false;', f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
           f"    if ({kept('i')} && (!seen || x[r * {n} + i] > m)) {{ m = x[r * {n} + i]; seen = true; }}", '}']
    d_of = f'(m - x[r * {n} + i])' if stable else f'x[r * {n} + i]'
    body = (top if stable else []) + [
            f'{ett} e[{n}];', '#pragma HLS ARRAY_PARTITION variable=e complete', f'{sum_t} s = 0;',
            f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL', '    e[i] = 0;',
            f"    if ({kept('i')}) {{",
            f'        {dt} d = ({dt}){d_of};', f'        {eit} a = ({eit}) d;', f'        e[i] = {exp_entry};',
            '    }', '    s += e[i];', '}',
            f'{st} si = ({st}) s;', f'{iit} b = ({iit}) si;', f'{itt} inv = {inv_entry};',
            f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL', f'    y[r * {n} + i] = ({out.ctype})(e[i] * inv);', '}']
    body = [f'for (int r = 0; r < {rows}; r++) {{'] + ['    ' + s for s in body] + ['}']
    if keep is not None:
        body.insert(0, f'#pragma HLS ARRAY_PARTITION variable={keep} complete')
    head = header(node, f'softmax over {n} values through given tables, {rows} rows', [
        f"d = (exp_index_t)({'max(x) - x' if stable else 'x'}); e = exp_table[d]; s = sum(e) exact; "
        'r = inv_table[(inv_index_t) s]; y = (result_t)(e * r)'] + ([] if keep is None else ['a constant mask: the maximum over kept keys, e = 0 at masked keys']))
    return _function(ctx, node, ins, out, head, body)


def emit_embedding(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """y[p * E + j] = (result_t) table[address((index_t) x[p]) * E + j]: one row of the embedding per index."""
    x, = ins
    tabs = node.attrs['tables']
    cols = len(tabs)
    first = tabs['column0']
    it = ctx.typedef(node, 'index', first.index, f'{label(node)}: the row index ({first.index.rounding}, '
                     f'{first.index.overflow}); rows outside the embedding read zeros')
    wt = ctx.typedef(node, 'weight', node.types['weight'])
    rows = np.stack([tabs[f'column{j}'].values for j in range(cols)], axis=1)
    arr = ctx.mantissa_array(node, 'table', rows, node.types['weight'],
                             f'{label(node)} embedding rows by index address ({len(rows)} x {cols})')
    head = header(node, f'Embedding of {len(rows)} addresses x {cols} values', [
        'idx = (index_t) x[p]; y[p][j] = (result_t) table[mantissa(idx) - min][j]'])
    body = [f'for (int p = 0; p < {x.size}; p++) {{', '    #pragma HLS UNROLL', f'    {it} idx = ({it}) x[p];',
            f"    unsigned a = {address('idx', first.index)};", f'    for (int j = 0; j < {cols}; j++) {{',
            '        #pragma HLS UNROLL', f'        y[p * {cols} + j] = ({out.ctype}) {from_bits(wt, f"{arr}[a * {cols} + j]")};',
            '    }', '}']
    return _function(ctx, node, ins, out, head, body)


def emit_masked_softmax(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """MaskedSoftmax per row: the maximum over kept keys; e = exp_table[x - max] kept, 0 masked; s = sum(e);
    y = (result_t)(e * inv_table[(inv_index_t) s])."""
    x, = ins
    n = node.shape[-1]
    rows = x.size // n
    mask = softmax_mask(node).reshape(rows, n)
    exp_tab, inv_tab = node.attrs['tables']['exp'], node.attrs['tables']['inv']
    eit, ett, exp_arr = table_arrays(ctx, node, 'exp', exp_tab, 'exp(-address * 2^-F)')
    iit, itt, inv_arr = table_arrays(ctx, node, 'inv', inv_tab, '1 / (address * lsb)')
    st = ctx.typedef(node, 'sum', ctx.intermediate(node, 'sum'), f'{label(node)}: exact sum of the kept exp values')
    keep = ctx.array(node, 'mask', 'bool', mask.astype(int), f'{label(node)}: 1 where the key takes part ({rows} x {n})')
    bits, last = exp_tab.index.width - 1, len(exp_tab) - 1
    body = [f'for (int r = 0; r < {rows}; r++) {{',
            f'    {x.ctype} m = 0;', '    bool seen = false;',
            f'    for (int i = 0; i < {n}; i++) {{', '        #pragma HLS UNROLL',
            f'        if ({keep}[r * {n} + i] && (!seen || x[r * {n} + i] > m)) {{ m = x[r * {n} + i]; seen = true; }}',
            '    }', f'    {ett} e[{n}];', '    #pragma HLS ARRAY_PARTITION variable=e complete', f'    {st} s = 0;',
            f'    for (int i = 0; i < {n}; i++) {{', '        #pragma HLS UNROLL', f'        e[i] = 0;',
            f'        if ({keep}[r * {n} + i]) {{',
            f'            {eit} d = ({eit})(x[r * {n} + i] - m);',
            f"            unsigned a = {1 << bits}u - {address('d', exp_tab.index)};",
            f'            if (a > {last}u) a = {last}u;', f'            e[i] = {from_bits(ett, f"{exp_arr}[a]")};',
            '        }', '        s += e[i];', '    }',
            f'    {iit} si = ({iit}) s;',
            f"    {itt} inv = {from_bits(itt, inv_arr + '[' + address('si', inv_tab.index) + ']')};",
            f'    for (int i = 0; i < {n}; i++) {{', '        #pragma HLS UNROLL',
            f'        y[r * {n} + i] = ({out.ctype})(e[i] * inv);', '    }', '}']
    head = header(node, f'softmax over the kept keys of {n}, {rows} rows (a constant mask)', [
        'm = max over kept keys; e = exp_table[(index_t)(x - m)] kept, 0 masked; s = sum(e) exact;',
        'y = (result_t)(e * inv_table[(inv_index_t) s])'])
    body.insert(0, f'#pragma HLS ARRAY_PARTITION variable={keep} complete')
    return _function(ctx, node, ins, out, head, body)


def emit_bias_add(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """y[o] = (result_t)(x[o] + bias[o]), the bias broadcast to the node's shape (an additive attention mask)."""
    x, = ins
    bias = np.broadcast_to(np.asarray(node.qweights['bias'], dtype=np.int64), node.shape).ravel()
    bt = ctx.typedef(node, 'bias', node.types['bias'])
    b = ctx.mantissa_array(node, 'bias', bias, node.types['bias'], f'{label(node)} bias ({x.size}, broadcast)')
    head = header(node, f'BiasAdd of {x.size} values', ['y[o] = (result_t)(x[o] + bias[o]), exact before the cast'])
    body = [f'#pragma HLS ARRAY_PARTITION variable={b} complete', f'for (int o = 0; o < {x.size}; o++) {{',
            '    #pragma HLS UNROLL', f'    y[o] = ({out.ctype})(x[o] + {from_bits(bt, f"{b}[o]")});', '}']
    return _function(ctx, node, ins, out, head, body)


def emit_table_dense(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """TableDense: t[e] = table_e[(index_e_t) x[gather[e]]] per element (one table each; a constant where the
    input quantizer is pruned); y[o] = (result_t)(sum of t over sum_index[o], exact)."""
    x, = ins
    tt = ctx.typedef(node, 'terms', ctx.intermediate(node, 'terms'), f'{label(node)}: every table entry, exact')
    st = ctx.typedef(node, 'sum', ctx.intermediate(node, 'sum'), f'{label(node)}: exact sums of the entries')
    gather, tables = node.attrs['gather'], node.attrs['tables']
    body = [f'{tt} t[{len(gather)}];', '#pragma HLS ARRAY_PARTITION variable=t complete']
    for e, (g, idx) in enumerate(zip(gather, node.attrs['index_types'])):
        if idx is None:
            entry_t = node.attrs['entry_types'][e]
            ct = ctx.typedef(node, f'e{e}_const', entry_t, f'{label(node)}: element {e}, pruned input')
            body.append(f"t[{e}] = {from_bits(ct, int_literal(int(node.attrs['entries'][e][0])))};")
            continue
        qt = ctx.typedef(node, f'e{e}_iq', idx, f'{label(node)}: element {e} input quantizer')
        it, et, arr = table_arrays(ctx, node, f'e{e}', tables[f'e{e}'], f'element {e}')
        body.append(f'{{ {it} i = ({it})({qt}) x[{g}]; t[{e}] = {from_bits(et, arr + "[" + address("i", idx) + "]")}; }}')
    si = np.asarray(node.attrs['sum_index'], dtype=np.int64)
    n_out, n_terms = si.shape
    xs = _index_array(ctx, node, 'sum_index', si, f'{label(node)}: the terms of each output')
    body += [f'#pragma HLS ARRAY_PARTITION variable={xs} complete']
    body += _terms_loop(n_out, n_terms, f'({st}) 0', f't[{xs}[o * {n_terms} + c]]', st, out)
    head = header(node, f'TableDense: {len(gather)} element tables, {n_out} sums of {n_terms}', [
        't[e] = table_e[(index_e_t) x[gather[e]]]; y[o] = (result_t) sum of t[sum_index[o][c]] (exact)'])
    return _function(ctx, node, ins, out, head, body)


ATTENTION_EMITTERS: dict[str, Callable[[Context, Node, list[Port], Port], str]] = {
    'EinsumDense': emit_einsum_dense,
    'Einsum': emit_einsum,
    'LayerNorm': emit_layer_norm,
    'TableSoftmax': emit_table_softmax,
    'Embedding': emit_embedding,
    'MaskedSoftmax': emit_masked_softmax,
    'BiasAdd': emit_bias_add,
    'TableDense': emit_table_dense,
}
