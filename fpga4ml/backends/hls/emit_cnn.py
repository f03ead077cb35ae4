"""HLS emitters of the window and index-map ops: Conv, Pool, Pad, Crop, Resize, Transpose.

Conv and Pool compute every output pixel in two steps, whatever the io type:

1. gather the window: its cells in (kernel row, kernel column, channel) order, padding cells
   as zeros (Conv) or flagged as not real (Pool);
2. a per-window kernel: Conv is a Dense over the window's im2col row (`emit.dense_function`:
   the same C++ as a Dense layer, Latency or Resource), Pool is `pool_kernel`.

The arithmetic is the recipes' (`conv`, `pool` in fpga4ml/semantics/recipes.py), written with the
ap_fixed facts listed in emit.py: exact + - * and comparisons, a cast on every assignment. Every
variable has the input's type or a type of the node (accum_t, result_t): the window kernels hold
no exact intermediate of their own (Conv's products are those of emit.dense_function). Only the
gather differs:

- io_parallel: the layer function reads its input array through constant index tables written
  from fpga4ml/geometry.py (the arrays the emulator gathers through; -1 is a padding cell) and
  computes ParallelizationFactor output pixels per pipeline step (Conv);
- io_stream (`line_buffer_process`): the input arrives one pixel (all channels) per FIFO read in
  row-major order; the layer keeps the last (effective kernel height - 1) rows in a line buffer
  and the window in registers, walks the padded extent (padding cells are never in the stream:
  the layer inserts them), and computes an output pixel when its window's last cell has arrived,
  writing one pixel per FIFO write. The constants (padded extent, window size, strides) are
  written from geometry.Window.

Pad, Crop, Resize and Transpose gather through a constant index table and take whole arrays in
both io types.
"""

from __future__ import annotations

import numpy as np

from ... import geometry
from ...ir import GraphError, Node
from ...naming import comment_line
from .emit import (Context, Port, checked_reuse_factor, dense_function, from_bits, header, int_literal, int_type, label,
                   layer_strategy, n_writes, signature, valid_reuse_factors)


def index_table(ctx: Context, node: Node, var: str, index: np.ndarray, comment: str) -> str:
    """A constant table of flat input indices (-1: a padding cell) in the layer's weights header."""
    index = np.asarray(index)
    ctype = 'int16_t' if index.max(initial=0) < 1 << 15 else 'int32_t'
    return ctx.array(node, var, ctype, index, f'{label(node)} {comment}; -1: padding')


def loop(var: str, n: int, body: list[str], unroll: bool = True) -> list[str]:
    """`for (int var = 0; var < n; var++) { body }`, fully unrolled by default."""
    return ([f'for (int {var} = 0; {var} < {n}; {var}++) {{'] + (['    #pragma HLS UNROLL'] if unroll else [])
            + ['    ' + s for s in body] + ['}'])


def function(ctx: Context, node: Node, ins: list[Port], out: Port, head: str, body: list[str],
             pragmas: list[str] = ('#pragma HLS PIPELINE',)) -> str:
    """A layer function around `body`, pipelined."""
    lines = [head + signature(ctx.idents[node.name], ins, out) + ' {'] + ['    ' + p for p in pragmas]
    return '\n'.join(lines + ['    ' + s for s in body] + ['}', ''])


def dims(win: geometry.Window) -> str:
    """The geometry of a window op, for comments."""
    return (f'kernel {win.kernel}, strides {win.strides}, dilation {win.dilation}, '
            f'padding (top, bottom, left, right) {win.pads}')


# ---------------------------------------------------------------------------- io_stream line buffer

def real_cell(win: geometry.Window, row: str, col: str, offset: tuple[int, int] = (0, 0)) -> list[str]:
    """C conditions that padded position (row - offset[0], col - offset[1]) is a real input pixel.

    Only the padded sides are tested: without padding the list is empty (every cell is real).
    """
    (h, w), (top, bottom, left, right), (dr, dc) = win.in_hw, win.pads, offset
    sides = ((f'{row} >= {top + dr}', top), (f'{row} < {top + h + dr}', bottom),
             (f'{col} >= {left + dc}', left), (f'{col} < {left + w + dc}', right))
    return [cond for cond, pad in sides if pad]


def line_buffer_process(ctx: Context, node: Node, x: Port, win: geometry.Window, head: str, at_window: list[str],
                        ii: int | None) -> str:
    """The io_stream process of a Conv or Pool: `static void layer(hls::stream<in> &x, hls::stream<out> &y0, ...)`.

    It walks the padded input extent in row-major order, one pixel an iteration (II `ii`; None:
    not pipelined, for a Resource kernel that pipelines itself): a real pixel is one FIFO read,
    a padding pixel a zero that never was in the stream. `line[a][c]` holds column c of the
    last EH-1 rows (EH = the effective kernel height, dilation included), `win[a][b]` the last EW
    columns of the last EH rows, so at padded position (r, c) win[a][b] is the cell
    (r - EH + 1 + a, c - EW + 1 + b). When (r, c) is the bottom-right cell of an output pixel's
    window (r = oh * stride_h + EH - 1, c = ow * stride_w + EW - 1), `at_window` computes that
    pixel from `win` into the packet `o`, which goes to every reader; outputs leave in row-major
    order, one FIFO write each.
    """
    (h, w), (kh, kw), (sh, sw), (dh, dw) = win.in_hw, win.kernel, win.strides, win.dilation
    top, bottom, left, right = win.pads
    hp, wp = top + h + bottom, left + w + right
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    channels = x.shape[-1]
    xp = ctx.packets[node.inputs[0]]
    body = []
    if eh > 1:
        body += [f'{x.ctype} line[{eh - 1}][{wp}][{channels}];  // line buffer: the last {eh - 1} rows '
                 f'(padded width {wp})', '#pragma HLS ARRAY_PARTITION variable=line complete dim=1',
                 '#pragma HLS ARRAY_PARTITION variable=line complete dim=3']
    body += [f'{x.ctype} win[{eh}][{ew}][{channels}];  // the window: the last {ew} columns of the last {eh} rows',
             '#pragma HLS ARRAY_PARTITION variable=win complete dim=0']
    step = [f'#pragma HLS PIPELINE II={ii}'] if ii else []
    real = real_cell(win, 'r', 'c')
    if real:
        step += [f'{xp} px;', f'if ({" && ".join(real)}) {{', '    px = x.read();  // the next pixel: one FIFO read',
                 '} else {  // padding: a zero pixel that is not in the stream']
        step += ['    ' + s for s in loop('ch', channels, ['px.data[ch] = 0;'])] + ['}']
    else:
        step += [f'{xp} px = x.read();  // the next pixel: one FIFO read']
    if ew > 1:
        step.append('// the window moves one column right: its columns shift left, the new column enters')
        step += loop('a', eh, loop('b', ew - 1, loop('ch', channels, ['win[a][b][ch] = win[a][b + 1][ch];'])))
    column = loop('a', eh - 1, [f'win[a][{ew - 1}][ch] = line[a][c][ch];']) if eh > 1 else []
    column.append(f'win[{eh - 1}][{ew - 1}][ch] = px.data[ch];')
    if eh > 2:
        column += loop('a', eh - 2, ['line[a][c][ch] = line[a + 1][c][ch];'])
    if eh > 1:
        column.append(f'line[{eh - 2}][c][ch] = px.data[ch];')
    step += ['// the new column of the window: column c of the line buffer, then the new pixel (which',
             '// replaces the oldest row of the line buffer)'] + loop('ch', channels, column)
    done = []
    for var, first, stride in (('r', eh - 1, sh), ('c', ew - 1, sw)):
        if first:
            done.append(f'{var} >= {first}')
        if stride > 1:
            done.append(f'({var} - {first}) % {stride} == 0' if first else f'{var} % {stride} == 0')
    emit = at_window + [f'y{k}.write(o);' for k in range(n_writes(ctx.graph, node.name))]
    if done:
        step += [f'if ({" && ".join(done)}) {{  // the last cell of an output pixel\'s window']
        step += ['    ' + s for s in emit] + ['}']
    else:
        step += emit
    args = [f'hls::stream<{xp}> &x'] + [f'hls::stream<{ctx.packets[node.name]}> &y{k}'
                                        for k in range(n_writes(ctx.graph, node.name))]
    body += loop('r', hp, loop('c', wp, step, unroll=False), unroll=False)
    lines = [head + f'static void {ctx.idents[node.name]}({", ".join(args)}) {{']
    return '\n'.join(lines + ['    ' + s for s in body] + ['}', ''])


def stream_head(node: Node, x: Port, win: geometry.Window, what: str, kernel: str) -> str:
    """The comment above a line-buffered io_stream layer."""
    return header(node, what, [
        f'io_stream, line buffer: one pixel ({x.shape[-1]} values) a FIFO read, one output pixel a FIFO write;',
        f'each output pixel: its window gathered from the registers, then {kernel}'])


# ---------------------------------------------------------------------------- Conv

def conv_settings(node: Node, n_col: int, n_out: int, win: geometry.Window, stream: bool) -> tuple[str, int, int]:
    """(Strategy, ReuseFactor, ParallelizationFactor) of a Conv, validated (a ValueError lists the valid values).

    ReuseFactor: as for a Dense n_col -> n_out (hls4ml's rule, Latency or Resource).
    ParallelizationFactor (io_parallel): the output pixels computed in parallel, a divisor of
    out_height * out_width (hls4ml's rule); io_stream computes one pixel at a time (only 1).
    """
    strategy = layer_strategy(node)
    rf = checked_reuse_factor(node, f'Conv, {n_col} im2col columns -> {n_out} channels, Strategy {strategy}',
                              valid_reuse_factors(n_col, n_out, strategy))
    oh, ow = win.out_hw
    pixels = oh * ow
    if stream:
        return strategy, rf, checked_reuse_factor(
            node, 'Conv, io_stream: the line buffer computes one output pixel at a time', [1], 'ParallelizationFactor')
    valid = [d for d in range(1, pixels + 1) if pixels % d == 0]
    pf = checked_reuse_factor(node, f'Conv, {oh} x {ow} = {pixels} output pixels: it must divide them', valid,
                              'ParallelizationFactor')
    return strategy, rf, pf


def emit_conv(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """hls4ml's conv_2d_latency_cl / conv_2d_resource_cl: per output pixel a Dense over its receptive field.

    The per-window kernel `<layer>_window` (emit.dense_function over the im2col matrix): acc = (accum_t) bias;
    for each im2col column k (kernel row, kernel column, input channel): acc += (accum_t)(x_k * w[k][j]);
    y = (result_t) acc. A padding cell is a zero, whose product adds exactly nothing. Grouped and
    depthwise convolutions use geometry.conv_matrix's block-diagonal matrix (its zeros add nothing).
    """
    x, = ins
    win = geometry.check_conv(node, x.shape)
    groups = int(node.attrs.get('groups', 1))
    w = geometry.conv_matrix(np.asarray(node.qweights['kernel'], dtype=np.int64), groups, node.name)
    n_col, n_out = w.shape
    channels = x.shape[-1]
    strategy, rf, pf = conv_settings(node, n_col, n_out, win, ctx.stream)
    kernel = ctx.names.new(f'{ctx.idents[node.name]}_window')
    code = dense_function(ctx, node, kernel, w, Port(x.ctype, n_col, (n_col,), x.ftype),
                          Port(out.ctype, n_out, (n_out,), out.ftype), strategy, rf,
                          f'{label(node)} kernel: one window, {n_col} im2col values'
                          + (f' (block-diagonal over {groups} groups)' if groups > 1 else '') + f' -> {n_out}')
    what = (f"Conv{len(x.shape) - 1}D {x.shape} -> {node.shape}, {dims(win)}, groups {groups}; "
            f'{strategy}, ReuseFactor {rf}')
    ii = rf if strategy == 'Latency' else None  # a Resource kernel pipelines its own RF cycles
    col = [f'{x.ctype} col[{n_col}];  // the window, (kernel row, kernel column, channel) order',
           '#pragma HLS ARRAY_PARTITION variable=col complete']
    if ctx.stream:
        (kh, kw), (dh, dw) = win.kernel, win.dilation
        row, column = ('i' if dh == 1 else f'i * {dh}'), ('j' if dw == 1 else f'j * {dw}')
        gather = col + loop('i', kh, loop('j', kw, loop('ch', channels, [
            f'col[(i * {kw} + j) * {channels} + ch] = win[{row}][{column}][ch];'])))
        at_window = gather + [f'{ctx.packets[node.name]} o;', f'{kernel}(col, o.data);']
        return code + '\n' + line_buffer_process(ctx, node, x, win, stream_head(node, x, win, what, kernel),
                                                 at_window, ii)
    index = geometry.im2col_index(win, channels)
    windows = index.shape[0]
    steps = windows // pf
    if steps > 1:
        ctx.folded.add(node.name)
    idx = index_table(ctx, node, 'im2col', index, f'im2col input index of window p, column k: idx[p * {n_col} + k]')
    head = header(node, what + f', ParallelizationFactor {pf}', [
        f'{steps} steps of {pf} output pixels: gather each window from the im2col table (padding: 0), then '
        f'{kernel}'])
    pixel = [f'int p = q * {pf} + u;' if steps > 1 and pf > 1 else f'int p = {"q" if pf == 1 else "u"};']
    pixel += col + loop('k', n_col, [f'int s = {idx}[p * {n_col} + k];', f'col[k] = s < 0 ? ({x.ctype}) 0 : x[s];'])
    pixel += [f'{out.ctype} o[{n_out}];', '#pragma HLS ARRAY_PARTITION variable=o complete', f'{kernel}(col, o);']
    pixel += loop('j', n_out, [f'y[p * {n_out} + j] = o[j];'])
    body = loop('q', steps, ([f'#pragma HLS PIPELINE II={ii}'] if ii else []) + loop('u', pf, pixel), unroll=False)
    return code + '\n' + function(ctx, node, ins, out, head, body, [])


# ---------------------------------------------------------------------------- Pool

def pool_kernel(ctx: Context, node: Node, x: Port, out: Port, taps: int, padded: bool) -> tuple[str, str]:
    """The per-window Pool kernel (hls4ml's pooling2d_cl, count_pad=False, as the pool recipe): (name, code).

    `static void <layer>_window(const x_t w[taps * C], const bool v[taps], y_t y[C])`: the window's
    cells w[t * C + ch] in window order (row, then column), v[t] whether cell t is real (the
    argument exists only when the layer has padding). max: the largest real cell (exact
    comparisons, starting from x_t's smallest value), cast into accum_t, then into result_t.
    avg: acc = 0; acc = (accum_t)(acc + x) over the real cells in window order; then the
    accumulator mantissa divided by the number of real cells, truncated toward zero (C integer
    division); then cast into result_t.
    """
    channels = x.shape[-1]
    mode = node.attrs['mode']
    at = ctx.typedef(node, 'accum', node.types['accum'])
    name = ctx.names.new(f'{ctx.idents[node.name]}_window')
    real = 'v[t] && ' if padded else ''
    args = [f'const {x.ctype} w[{taps * channels}]'] + ([f'const bool v[{taps}]'] if padded else [])
    cell = f'w[t * {channels} + ch]'
    if mode == 'max':
        smallest = int_literal(x.ftype.min_mantissa)
        lines = [f'// {label(node)} kernel: per channel y = ({out.ctype})({at}) max over the real cells of one window']
        body = [f'{x.ctype} m = {from_bits(x.ctype, smallest)};  // the smallest {x.ctype}: no cell is below it']
        body += loop('t', taps, [f'if ({real}{cell} > m) m = {cell};'])
        body += [f'y[ch] = ({out.ctype})({at}) m;']
        before = []
    else:
        lines = [f'// {label(node)} kernel: per channel acc = 0; acc = ({at})(acc + x) over the real cells in',
                 '// window order;',
                 f'// y = ({out.ctype}) from_bits(mantissa(acc) / real cells), the division truncated toward zero']
        if padded:
            before = ['int n = 0;  // real cells'] + loop('t', taps, ['n += v[t];'])
        else:
            before = [f'const int n = {taps};']
        to_int = 'to_int64' if node.types['accum'].signed else 'to_uint64'
        body = [f'{at} acc = 0;'] + loop('t', taps, [f'if (v[t]) acc = acc + {cell};' if padded
                                                     else f'acc = acc + {cell};'])
        body += [f'{int_type(node.types["accum"])} m = acc.V.{to_int}();  // the accumulator mantissa',
                 f'y[ch] = ({out.ctype}) {from_bits(at, "m / n")};']
    code = [comment_line(line) for line in lines]
    code += [f'static void {name}({", ".join(args)}, {out.ctype} y[{channels}]) {{', '    #pragma HLS INLINE']
    code += ['    ' + s for s in before + loop('ch', channels, body)] + ['}', '']
    return name, '\n'.join(code)


def emit_pool(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """Max or average pooling: per output pixel, gather the window, then `pool_kernel`."""
    x, = ins
    win = geometry.check_pool(node, x.shape)
    channels, taps = x.shape[-1], win.taps
    pos = win.positions()  # (output pixels, taps): flat input pixel, -1 for padding
    padded = bool(pos.min() < 0)
    kernel, code = pool_kernel(ctx, node, x, out, taps, padded)
    what = f"{node.attrs['mode']} pool {x.shape} -> {node.shape}, {dims(win)}"
    cells = f'{x.ctype} w[{taps * channels}];  // the window, (row, column, channel) order'
    flags = ([f'bool v[{taps}];  // real cells', '#pragma HLS ARRAY_PARTITION variable=v complete'] if padded else [])
    gather = [cells, '#pragma HLS ARRAY_PARTITION variable=w complete'] + flags
    call = f'{kernel}(w, {"v, " if padded else ""}o{".data" if ctx.stream else ""});'
    if ctx.stream:
        kh, kw = win.kernel
        real = real_cell(win, 'r + i', 'c + j', (kh - 1, kw - 1))
        cell = loop('ch', channels, [f'w[(i * {kw} + j) * {channels} + ch] = win[i][j][ch];'])
        if padded:  # cell (i, j) of the window sits at padded (r - kh + 1 + i, c - kw + 1 + j)
            cell = [f'v[i * {kw} + j] = {" && ".join(real)};'] + cell
        at_window = gather + loop('i', kh, loop('j', kw, cell)) + [f'{ctx.packets[node.name]} o;', call]
        return code + '\n' + line_buffer_process(ctx, node, x, win, stream_head(node, x, win, what, kernel),
                                                 at_window, 1)
    idx = index_table(ctx, node, 'window', pos, f'input pixel of tap t of output pixel p: idx[p * {taps} + t]')
    head = header(node, what, [f'each output pixel: gather its window from the table, then {kernel}'])
    cell = [f'int s = {idx}[p * {taps} + t];'] + (['v[t] = s >= 0;'] if padded else [])
    cell += loop('ch', channels, [f'w[t * {channels} + ch] = s < 0 ? ({x.ctype}) 0 : x[s * {channels} + ch];'
                                  if padded else f'w[t * {channels} + ch] = x[s * {channels} + ch];'])
    pixel = gather + loop('t', taps, cell) + [f'{out.ctype} o[{channels}];',
                                              '#pragma HLS ARRAY_PARTITION variable=o complete', call]
    pixel += loop('ch', channels, [f'y[p * {channels} + ch] = o[ch];'])
    return code + '\n' + function(ctx, node, ins, out, head, loop('p', pos.shape[0], pixel))


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
