"""HLS C++ of the softmax variants other than fpga4ml's exact one: hls4ml 1.3.0's 'latency', 'stable',
'legacy' and 'argmax' implementations (TableSemantics 'hls4ml', config Implementation) and Skip.

Each function writes the C++ of the steps its recipe (fpga4ml/semantics/recipes.py, `_softmax_hls4ml`,
`_softmax_legacy`, `_softmax_argmax`) takes, with the types and tables the typing built
(fpga4ml/semantics/tables.py), so the C simulation equals the emulator bit for bit. The table index
types carry hls4ml's index arithmetic: a cast into ufixed<N, I, TRN, WRAP> keeps the top N bits of a
value (softmax_idx_from_real_val); a cast into fixed<N, N, TRN_ZERO, SAT> of x * 2^k is hls4ml's
clamped `int(x * N / R)` of the legacy tables.
"""

from __future__ import annotations

from ...fixed import FixedType
from ...ir import Node
from ...semantics.tables import Table, softmax_implementation
from .emit import Context, Port, address, from_bits, header, label, signature, table_arrays


def emit_softmax_variant(ctx: Context, node: Node, ins: list[Port], out: Port) -> str | None:
    """The C++ of a skipped softmax or of one of hls4ml's implementations; None for fpga4ml's exact softmax."""
    if node.config.get('Skip', False):
        return _function(ctx, node, ins, out, 'Softmax skipped (hls4ml removes the layer)', ['y = (result_t) x'],
                         [f'for (int i = 0; i < {node.shape[-1]}; i++) {{', '    #pragma HLS UNROLL',
                          f'    y[{{o}}i] = ({out.ctype}) x[{{o}}i];', '}'])
    impl = softmax_implementation(node)
    if impl == 'exact':
        return None
    return {'latency': _latency_stable, 'stable': _latency_stable, 'legacy': _legacy, 'argmax': _argmax}[impl](
        ctx, node, ins, out)


def _function(ctx: Context, node: Node, ins: list[Port], out: Port, what: str, steps: list[str],
              body: list[str]) -> str:
    """A pipelined layer function running `body` once per softmax row (`{o}` in it: the row offset)."""
    n = node.shape[-1]
    rows = ins[0].size // n
    lines = [s.replace('{o}', f'r * {n} + ' if rows > 1 else '') for s in body]
    if rows > 1:
        lines = [f'for (int r = 0; r < {rows}; r++) {{'] + ['    ' + s for s in lines] + ['}']
    head = header(node, what, steps)
    return '\n'.join([head + signature(ctx.idents[node.name], ins, out) + ' {', '    #pragma HLS PIPELINE']
                     + ['    ' + s for s in lines] + ['}', ''])


def balanced_tree(terms: list[str], acc: str) -> str:
    """hls4ml's reduce<accum_t, N, Op_add>: the first 2^floor(log2(N-1)) terms and the rest, each reduced
    the same way, every sum cast into `acc` (compose.balanced_sum)."""
    if len(terms) == 1:
        return terms[0]
    left = 1 << ((len(terms) - 1).bit_length() - 1)
    return f'({acc})({balanced_tree(terms[:left], acc)} + {balanced_tree(terms[left:], acc)})'


def _latency_stable(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's softmax_latency / softmax_stable: e = exp_table[top bits], a balanced sum, 1/s from inv_table."""
    x, = ins
    n = node.shape[-1]
    stable = softmax_implementation(node) == 'stable'
    exp_tab: Table = node.attrs['tables']['exp']
    inv_tab: Table = node.attrs['tables']['inv']
    eit, ett, exp_arr = table_arrays(ctx, node, 'exp', exp_tab, 'exp(-v)' if stable else 'exp(v)')
    iit, itt, inv_arr = table_arrays(ctx, node, 'inv', inv_tab, '1 / v')
    at = ctx.typedef(node, 'accum', node.types['accum'])
    ii = ctx.typedef(node, 'inv_inp', node.types['inv_inp'])
    body = [f'{at} e[{n}];', '#pragma HLS ARRAY_PARTITION variable=e complete']
    if stable:
        nt = ctx.typedef(node, 'inp_norm', node.types['inp_norm'], f'{label(node)}: max(x) - x (hls4ml inp_norm_t)')
        body += [f'{x.ctype} m = x[{{o}}0];', f'for (int i = 1; i < {n}; i++) {{', '    #pragma HLS UNROLL',
                 '    if (x[{o}i] > m) m = x[{o}i];', '}']
        index = f'({eit})({nt})(m - x[{{o}}i])'
    else:
        index = f'({eit}) x[{{o}}i]'
    exp_entry = from_bits(ett, f"{exp_arr}[{address('idx', exp_tab.index)}]")
    inv_entry = from_bits(itt, f"{inv_arr}[{address('si', inv_tab.index)}]")
    body += [f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL', f'    {eit} idx = {index};',
             f'    e[i] = ({at}) {exp_entry};', '}',
             f'{ii} s = {balanced_tree([f"e[{i}]" for i in range(n)], at)};',
             f'{iit} si = ({iit}) s;',
             f'{itt} inv = {inv_entry};',
             f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
             f'    y[{{o}}i] = ({out.ctype})(e[i] * inv);', '}']
    steps = [('1. d = (inp_norm_t)(max(x) - x); ' if stable else '1. ') +
             f'e = (accum_t) exp_table[top {exp_tab.index.width} bits of {"d" if stable else "x"}]',
             '2. s = (inv_inp_t) balanced sum of e (every partial sum cast into accum_t)',
             f'3. y = (result_t)(e * inv_table[top {inv_tab.index.width} bits of s]), an exact product']
    return _function(ctx, node, ins, out, f"hls4ml's softmax_{'stable' if stable else 'latency'} over {n} values",
                     steps, body)


def _scale(ctx: Context, node: Node, var: str, k: int) -> str:
    """A constant 2^k (k >= 0) as a one-bit unsigned type: multiplying by it is exact."""
    st = ctx.typedef(node, var, FixedType(1, k + 1, False), f'{label(node)}: 2^{k}')
    return from_bits(st, '1')


def _legacy(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's softmax_legacy: y_i = inv_table[int(s_i N/64)], s_i = sum_j exp_table[int((x_j - x_i) N/16) + N/2]."""
    n = node.shape[-1]
    exp_tab: Table = node.attrs['tables']['exp']
    inv_tab: Table = node.attrs['tables']['inv']
    eit, tt, exp_arr = table_arrays(ctx, node, 'exp', exp_tab, 'exp(16 (address - N/2) / N)')
    iit, itt, inv_arr = table_arrays(ctx, node, 'inv', inv_tab, '1 / (64 address / N)')
    exp_scale, inv_scale = _scale(ctx, node, 'exp_scale', exp_tab.shift), _scale(ctx, node, 'inv_scale', inv_tab.shift)
    exp_entry = from_bits(tt, f"{exp_arr}[{address('k', exp_tab.index)}]")
    inv_entry = from_bits(itt, f"{inv_arr}[{address('q', inv_tab.index)}]")
    body = [f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL', f'    {tt} s = 0;',
            f'    for (int j = 0; j < {n}; j++) {{', '        #pragma HLS UNROLL',
            f'        {eit} k = ({eit})((x[{{o}}j] - x[{{o}}i]) * {exp_scale});',
            f'        s += {exp_entry};', '    }',
            f'    {iit} q = ({iit})(s * {inv_scale});',
            f'    y[{{o}}i] = ({out.ctype}) {inv_entry};', '}']
    steps = [f'1. s_i = sum over j in order, in table_t, of exp_table[(exp_index_t)((x_j - x_i) * 2^{exp_tab.shift})]',
             f'2. y_i = (result_t) inv_table[(inv_index_t)(s_i * 2^{inv_tab.shift})] (index casts: TRN_ZERO, SAT)']
    return _function(ctx, node, ins, out, f"hls4ml's softmax_legacy over {n} values", steps, body)


def _argmax(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's softmax_argmax: 1 at the first maximum, 0 elsewhere."""
    x, = ins
    n = node.shape[-1]
    body = [f'{x.ctype} m = x[{{o}}0];', 'int k = 0;', f'for (int i = 1; i < {n}; i++) {{', '    #pragma HLS UNROLL',
            '    if (x[{o}i] > m) {', '        m = x[{o}i];', '        k = i;', '    }', '}',
            f'for (int i = 0; i < {n}; i++) {{', '    #pragma HLS UNROLL',
            f'    y[{{o}}i] = i == k ? ({out.ctype}) 1 : ({out.ctype}) 0;', '}']
    return _function(ctx, node, ins, out, f"hls4ml's softmax_argmax over {n} values",
                     ['y = (result_t) 1 at the first maximum of x, (result_t) 0 elsewhere'], body)
