"""HLS emitters of the window and index-map ops: Conv, Pool, Pad, Crop, Resize, Transpose.

There is one geometry: no emitter re-derives strides, dilation or padding in C++. Each writes the
index arrays of `fpga4ml/geometry.py` (the arrays the emulator and the interval pass gather
through) as constant tables in firmware/weights/<layer>.h, and the C++ reads its inputs through
them; an index of -1 is a padding cell. The arithmetic is the emulator's (`build_conv`,
`build_pool`, `build_index_map` in fpga4ml/emulator/ops.py), written with the ap_fixed facts
listed in emit.py: exact + - * and comparisons, and a cast on every assignment.

The functions take and return whole arrays like every other layer function, so io_stream
(whose dataflow processes read a whole tensor, call the layer function and write the result)
needs nothing else.
"""

from __future__ import annotations

import math

import numpy as np

from ... import geometry
from ...ir import GraphError, Node
from .emit import (Context, Port, checked_reuse_factor, from_bits, header, index_int_type, int_type,
                   layer_strategy, shift_product, signature, valid_reuse_factors)


def index_table(ctx: Context, node: Node, var: str, index: np.ndarray, comment: str) -> str:
    """A constant table of flat input indices (-1: a padding cell) in the layer's weights header."""
    index = np.asarray(index)
    ctype = 'int16_t' if index.max(initial=0) < 1 << 15 else 'int32_t'
    return ctx.array(node, var, ctype, index, f'{node.name} {comment}; -1: padding')


def loop(var: str, n: int, body: list[str], unroll: bool = True) -> list[str]:
    """`for (int var = 0; var < n; var++) { body }`, fully unrolled by default."""
    return ([f'for (int {var} = 0; {var} < {n}; {var}++) {{'] + (['    #pragma HLS UNROLL'] if unroll else [])
            + ['    ' + s for s in body] + ['}'])


def function(ctx: Context, node: Node, ins: list[Port], out: Port, head: str, body: list[str],
             pragmas: list[str] = ('#pragma HLS PIPELINE',)) -> str:
    """A layer function around `body`, pipelined."""
    lines = [head + signature(ctx.idents[node.name], ins, out) + ' {'] + ['    ' + p for p in pragmas]
    return '\n'.join(lines + ['    ' + s for s in body] + ['}', ''])


def real_first(index: np.ndarray) -> np.ndarray:
    """Each row of a (outputs, taps) index table with its real cells first, in their order (stable)."""
    order = np.argsort(index < 0, axis=1, kind='stable')
    return np.take_along_axis(index, order, axis=1)


# ---------------------------------------------------------------------------- Conv

def conv_settings(node: Node, n_col: int, n_out: int) -> int:
    """The ReuseFactor of a Conv (Strategy Latency only): a divisor of n_col * n_out, as for a Dense
    n_col -> n_out (hls4ml's rule for conv_2d_latency_cl); otherwise a ValueError listing them."""
    strategy = layer_strategy(node)
    if strategy != 'Latency':
        raise ValueError(f'layer {node.name!r} (Conv): Strategy {strategy!r} is not implemented by the HLS back '
                         "end for Conv; use Strategy 'Latency'")
    return checked_reuse_factor(node, f'Conv, {n_col} im2col columns -> {n_out} channels, Strategy Latency',
                                valid_reuse_factors(n_col, n_out, 'Latency'))


def emit_conv(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's conv_2d_latency_cl: per output pixel a Dense over its receptive field.

    acc = (accum_t) bias; for each im2col column k (kernel row, kernel column, input channel):
    acc += (accum_t)(x[idx[p][k]] * w[k][j]); y = (result_t) acc. A padding column multiplies a
    zero, whose product adds exactly nothing, so it is skipped. Grouped and depthwise convolutions
    use geometry.conv_matrix's block-diagonal matrix (its zeros likewise add nothing).
    """
    x, = ins
    win = geometry.check_conv(node, x.shape)
    index = geometry.im2col_index(win, x.shape[-1])
    groups = int(node.attrs.get('groups', 1))
    w = geometry.conv_matrix(np.asarray(node.qweights['kernel'], dtype=np.int64), groups, node.name)
    n_col, n_out = w.shape
    windows = index.shape[0]
    rf = conv_settings(node, n_col, n_out)
    pragmas = [f'#pragma HLS PIPELINE II={rf}']
    if rf > 1:  # the multipliers are shared over the RF cycles of one sample, as in a Latency Dense
        mults = math.ceil(windows * int(np.count_nonzero(w)) / rf)
        pragmas.append(f'#pragma HLS ALLOCATION operation instances=mul limit={mults}')
    at = ctx.typedef(node, 'accum', node.types['accum'])
    wt = ctx.typedef(node, 'weight', node.types['weight'])
    bt = ctx.typedef(node, 'bias', node.types['bias'])
    bias = ctx.mantissa_array(node, 'bias', node.qweights['bias'], node.types['bias'], f'{node.name} bias ({n_out})')
    kern = ctx.mantissa_array(node, 'kernel', w, node.types['weight'],
                              f'{node.name} kernel as an im2col matrix w[k][j] ({n_col} x {n_out}, row-major'
                              + (f', block-diagonal over {groups} groups)' if groups > 1 else ')'))
    idx = index_table(ctx, node, 'im2col', index, f'im2col input index of window p, column k: idx[p * {n_col} + k]')
    what = (f"Conv{len(win.kernel) if len(x.shape) == 3 else 1}D {x.shape} -> {node.shape}, kernel {win.kernel}, "
            f'strides {win.strides}, dilation {win.dilation}, padding {win.pads}, groups {groups}; '
            f'Latency, ReuseFactor {rf}')
    head = header(node, what, [
        f'per window p: acc = ({at}) bias[j]; for k in (kernel row, kernel column, input channel) order:',
        f'acc += ({at})(x[idx[p][k]] * w[k][j]) (padding columns add nothing); y[p][j] = ({out.ctype}) acc'])
    product = (shift_product(ctx, node, x.ftype, w, at, 'x[s]', f'{kern}[k * {n_out} + j]', zeros=True)
               or f'({at})(x[s] * {from_bits(wt, f"{kern}[k * {n_out} + j]")})')  # shifts for binary/ternary weights
    body = [f'{at} acc[{n_out}];', '#pragma HLS ARRAY_PARTITION variable=acc complete']
    body += loop('j', n_out, [f'acc[j] = ({at}) {from_bits(bt, f"{bias}[j]")};'])
    body += loop('k', n_col, [f'int s = {idx}[p * {n_col} + k];',
                              'if (s < 0) continue;  // a padding cell: the product is zero'] +
                 loop('j', n_out, [f'acc[j] += {product};']))
    body += loop('j', n_out, [f'y[p * {n_out} + j] = ({out.ctype}) acc[j];'])
    return function(ctx, node, ins, out, head, loop('p', windows, body), pragmas)


# ---------------------------------------------------------------------------- Pool

def emit_pool(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's pooling2d_cl (count_pad=False), as build_pool computes it.

    max: the largest real cell (exact comparisons), cast into accum_t, then into result_t.
    avg: acc = 0; acc = (accum_t)(acc + x) for each real cell in window order; then the accumulator
    mantissa divided by the number of real cells, truncated toward zero (C integer division);
    then cast into result_t.
    """
    x, = ins
    index, counts = geometry.pool_index(node, x.shape)  # (taps, outputs), (outputs,)
    taps, n = index.shape
    table = real_first(index.T)  # every window has a real cell (check_pool): it comes first
    padded = bool(index.min() < 0)
    mode = node.attrs['mode']
    at = ctx.typedef(node, 'accum', node.types['accum'])
    idx = index_table(ctx, node, 'window', table,
                      f'input index of tap t of output o (real cells first): idx[o * {taps} + t]')
    src = f'{idx}[o * {taps} + t]'
    skip = ['if (s < 0) continue;  // a padding cell is ignored'] if padded else []
    what = f'{mode} pool {x.shape} -> {node.shape}, {taps} taps per window'
    if mode == 'max':
        head = header(node, what, [f'y = ({out.ctype})({at}) max over the real cells, exact comparisons'])
        body = [f'{x.ctype} m = x[{idx}[o * {taps}]];']
        body += loop('t', taps - 1, [f'int s = {idx}[o * {taps} + t + 1];'] + skip + ['if (x[s] > m) m = x[s];'])
        body += [f'y[o] = ({out.ctype})({at}) m;']
        return function(ctx, node, ins, out, head, loop('o', n, body))
    mt = int_type(node.types['accum'])
    if np.all(counts == counts[0]):
        count = str(int(counts[0]))
    else:
        count = f'{ctx.array(node, "count", index_int_type(taps), counts, f"{node.name} real cells per window")}[o]'
    head = header(node, what, [
        f'acc = 0; acc = ({at})(acc + x) over the real cells in window order;',
        f'y = ({out.ctype}) from_bits(mantissa(acc) / real cells), the division truncated toward zero'])
    body = [f'{at} acc = 0;']
    body += loop('t', taps, [f'int s = {src};'] + skip + ['acc = acc + x[s];'])
    to_int = 'to_int64' if node.types['accum'].signed else 'to_uint64'
    body += [f'{mt} m = acc.V.{to_int}();  // the accumulator mantissa',
             f'y[o] = ({out.ctype}) {from_bits(at, f"m / {count}")};']
    return function(ctx, node, ins, out, head, loop('o', n, body))


# ---------------------------------------------------------------------------- index maps

def emit_index_map(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Pad, Crop, Resize, Transpose: y[i] = x[idx[i]] (Pad: zero where idx[i] is -1); the type is unchanged."""
    x, = ins
    if x.ftype != out.ftype:
        raise GraphError(f'layer {node.name!r}: {node.op} keeps its input type ({x.ftype}), '
                         f'but its result type is {out.ftype}')
    index = geometry.index_map(node, x.shape).ravel()
    idx = index_table(ctx, node, 'index', index, 'input index of every output element')
    head = header(node, f'{node.op} {x.shape} -> {node.shape}', ['y[i] = x[idx[i]]' + (
        ', or 0 where idx[i] is -1 (padding)' if index.min() < 0 else '') + '; values and type unchanged'])
    body = [f'int s = {idx}[i];', f'y[i] = s < 0 ? ({out.ctype}) 0 : x[s];'] if index.min() < 0 else \
        [f'y[i] = x[{idx}[i]];']
    return function(ctx, node, ins, out, head, loop('i', out.size, body))


CNN_EMITTERS = {
    'Conv': emit_conv,
    'Pool': emit_pool,
    **{op: emit_index_map for op in geometry.INDEX_MAP_OPS},
}
