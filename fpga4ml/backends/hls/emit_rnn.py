"""HLS C++ of the recurrent layers (SimpleRNN, LSTM, GRU) and of the Select nodes that read them.

Non-static form: the time loop is unrolled inside one pipelined function (a cell per step, as
hls4ml's non-static mode). Each step is the recipe of semantics/recipes_rnn.py written in C++:
hls4ml's Dense products (bias, then every product cast into accum_t and added in input order),
the gate sums cast into accum_t, table lookups (or exact relu/linear) cast into accum_t, and one
cast of the exact new state. The input products of all time steps are computed first (they do not
depend on the state).

The layer's array carries its first output (the sequence, or the last h). A Select of the final h
copies the row of the last step that ran; a Select of an LSTM's final cell state reads a file-scope
array the layer function writes (thread_local in C simulation, whose library runs samples on
several threads). That suits the io_parallel PIPELINE top; under DATAFLOW (io_stream) a file-scope
array shared by two processes is not synthesizable as such: it would need to be a port (not done).
"""

from __future__ import annotations

import numpy as np

from ...fixed import FixedType
from ...ir import GraphError, Node
from ...semantics.recipes_rnn import GATES, table_keys
from ...semantics.spec import attr
from .emit import Context, Port, address, arg_names, constant, from_bits, header, label, signature, table_arrays

RNN_OPS = tuple(GATES)


class _Code:
    """The typedefs, weight arrays and tables of one recurrent layer, and C++ snippets over them."""

    def __init__(self, ctx: Context, node: Node, out: Port):
        self.ctx, self.node, self.out = ctx, node, out
        self.n = int(attr(node, 'units'))
        self.cols = GATES[node.op] * self.n
        t, q = node.types, node.qweights
        self.acc = ctx.typedef(node, 'accum', t['accum'])
        self.state = ctx.typedef(node, 'state', t['state']) if node.op == 'LSTM' else out.ctype
        self.w = {}
        for name, var in (('kernel', 'weight'), ('recurrent_kernel', 'recurrent_weight'), ('bias', 'bias'),
                          ('recurrent_bias', 'recurrent_bias')):
            ctype = ctx.typedef(node, var, t[var])
            array = ctx.mantissa_array(node, name, np.asarray(q[name]).ravel(), t[var],
                                       f'{label(node)} {name} {tuple(np.shape(q[name]))} (row-major)')
            self.w[name] = (ctype, array)
        self.tables = {}
        for key, fn_attr, _ in table_keys(node):
            table = node.attrs['tables'][key]
            it, tt, arr = table_arrays(ctx, node, key, table, f'{attr(node, fn_attr)}(index value)')
            scale = ''
            if table.shift:  # hls4ml's index x * N / R: an exact product by a power of two
                st = ctx.typedef(node, f'{key}_scale', FixedType(1, table.shift + 1, False),
                                 f'{label(node)}: 2^{table.shift}')
                scale = f' * {from_bits(st, "1")}'
            self.tables[key] = (it, tt, arr, scale, table)

    def weight(self, name: str, index: str) -> str:
        ctype, array = self.w[name]
        return from_bits(ctype, f'{array}[{index}]')

    def dense(self, dst: str, src: str, src_offset: str, n_in: int, kernel: str, bias: str, first: int, last: int,
              indent: str, dst_offset: str = '') -> list[str]:
        """dst[j - first] = hls4ml's Dense of src over columns first..last-1 of kernel and bias, in accum_t."""
        acc = self.acc
        return [f'{indent}for (int j = {first}; j < {last}; j++) {{', f'{indent}    #pragma HLS UNROLL',
                f'{indent}    {acc} sum = ({acc}) {self.weight(bias, "j")};',
                f'{indent}    for (int i = 0; i < {n_in}; i++) {{', f'{indent}        #pragma HLS UNROLL',
                f'{indent}        sum = ({acc})(sum + ({acc})({src}[{src_offset}i] * '
                f'{self.weight(kernel, f"i * {self.cols} + j")}));',
                f'{indent}    }}', f'{indent}    {dst}[{dst_offset}j - {first}] = sum;', f'{indent}}}']

    def activate(self, key: str, fn_attr: str, value: str, into: str, var: str) -> list[str]:
        """Statements declaring `into var` = the activation `fn_attr` of `value` (table `key` or exact)."""
        fn = attr(self.node, fn_attr)
        if fn == 'linear':
            return [f'{into} {var} = ({into}) {value};']
        if fn == 'relu':
            return [f'{into} {var} = {value} > 0 ? ({into}) {value} : ({into}) 0;']
        it, tt, arr, scale, table = self.tables[key]
        entry = from_bits(tt, f'{arr}[{address(var + "_idx", table.index)}]')
        return [f'{it} {var}_idx = ({it})({value}{scale});', f'{into} {var} = ({into}) {entry};']


def _loop(var: str, n: int, body: list[str], indent: str) -> list[str]:
    return ([f'{indent}for (int {var} = 0; {var} < {n}; {var}++) {{', f'{indent}    #pragma HLS UNROLL']
            + [f'{indent}    {s}' for s in body] + [f'{indent}}}'])


def _declare(ctype: str, name: str, size: int, indent: str) -> list[str]:
    return [f'{indent}{ctype} {name}[{size}];', f'{indent}#pragma HLS ARRAY_PARTITION variable={name} complete']


def _lstm_step(c: _Code, ind: str) -> list[str]:
    n, acc = c.n, c.acc
    lines = _declare(acc, 'rec', 4 * n, ind) + c.dense('rec', 'h', '', n, 'recurrent_kernel', 'recurrent_bias', 0,
                                                      4 * n, ind)
    body = [f'{acc} s_{g} = ({acc})(a[t * {4 * n} + {k} * {n} + j] + rec[{k} * {n} + j]);'
            for k, g in enumerate('ifgo')]
    for g in 'ifo':
        body += c.activate('ract', 'recurrent_activation', f's_{g}', acc, f'gate_{g}')
    body += c.activate('act', 'activation', 's_g', acc, 'gate_g')
    body.append(f'cs[j] = ({c.state})(gate_g * gate_i + cs[j] * gate_f);')
    body += c.activate('act_c', 'activation', 'cs[j]', acc, 'tc')
    body.append(f'h[j] = ({c.out.ctype})(gate_o * tc);')
    return lines + _loop('j', n, body, ind)


def _gru_step(c: _Code, ind: str) -> list[str]:
    n, acc, res = c.n, c.acc, c.out.ctype
    reset_after = bool(attr(c.node, 'reset_after'))
    width = 3 * n if reset_after else 2 * n
    lines = _declare(acc, 'rec', width, ind) + c.dense('rec', 'h', '', n, 'recurrent_kernel', 'recurrent_bias', 0,
                                                      width, ind)
    lines += _declare(acc, 'zr', 2 * n, ind)
    lines += _loop('k', 2 * n, [f'{acc} s = ({acc})(a[t * {3 * n} + k] + rec[k]);']
                   + c.activate('ract', 'recurrent_activation', 's', acc, 'g') + ['zr[k] = g;'], ind)
    z, r = ('zr[j]', f'zr[{n} + j]') if attr(c.node, 'gate_order') == 'zrh' else (f'zr[{n} + j]', 'zr[j]')
    lines += _declare(acc, 'q', n, ind)
    if reset_after:
        lines += _loop('j', n, [f'q[j] = ({acc})({r} * rec[{2 * n} + j]);'], ind)
    else:
        lines += _declare(res, 'rh', n, ind) + _loop('j', n, [f'rh[j] = ({res})({r} * h[j]);'], ind)
        lines += c.dense('q', 'rh', '', n, 'recurrent_kernel', 'recurrent_bias', 2 * n, 3 * n, ind)
    body = [f'{acc} u = ({acc})(a[t * {3 * n} + {2 * n} + j] + q[j]);']
    body += c.activate('act', 'activation', 'u', acc, 'hc')
    body.append(f'h[j] = ({res})(hc * (one - {z}) + h[j] * {z});')
    return lines + _loop('j', n, body, ind)


def _simple_rnn_step(c: _Code, ind: str) -> list[str]:
    n, acc = c.n, c.acc
    lines = _declare(acc, 'rec', n, ind) + c.dense('rec', 'h', '', n, 'recurrent_kernel', 'recurrent_bias', 0, n, ind)
    body = [f'{acc} s = ({acc})(a[t * {n} + j] + rec[j]);']
    body += c.activate('act', 'activation', 's', c.out.ctype, 'hn') + ['h[j] = hn;']
    return lines + _loop('j', n, body, ind)


STATE_UPDATES = {'LSTM': "c' = (state_t)(g*i + c*f); h' = (result_t)(o * (accum_t) act(c'))",
                 'GRU': "h' = (result_t)(hc*(1 - z) + h*z), the reset gate applied",
                 'SimpleRNN': "h' = (result_t) act(gates)"}
STEPS = {'LSTM': _lstm_step, 'GRU': _gru_step, 'SimpleRNN': _simple_rnn_step}


def _prologue(code: _Code, ins: list[Port], names: list[str]) -> list[str]:
    """The input products of every step, then h (and c) at their initial values."""
    node, out, n, cols = code.node, code.out, code.n, code.cols
    steps, n_in = ins[0].shape
    lines = []
    if node.op == 'GRU':
        declaration, _ = constant(code.ctx, node, 'one', 1, 0)
        lines.append(f'    {declaration}')
    lines += ['    // the input products of every time step: a[t][:] = Dense(x[t], kernel, bias) in accum_t']
    lines += _declare(code.acc, 'a', steps * cols, '    ')
    lines += _loop('t', steps, code.dense('a', names[0], f't * {n_in} + ', n_in, 'kernel', 'bias', 0, cols, '',
                                          dst_offset=f't * {cols} + '), '    ')
    lines += _declare(out.ctype, 'h', n, '    ')
    init = [f'h[j] = ({out.ctype}) {names[1]}[j];' if len(ins) > 1 else f'h[j] = ({out.ctype}) 0;']
    if node.op == 'LSTM':
        lines += _declare(code.state, 'cs', n, '    ')
        init.append(f'cs[j] = ({code.state}) {names[2]}[j];' if len(ins) > 2 else f'cs[j] = ({code.state}) 0;')
    return lines + _loop('j', n, init, '    ')


def _time_loop(code: _Code, steps: int) -> list[str]:
    """The unrolled steps (in go_backwards order), each writing its row of a sequence output."""
    node, n = code.node, code.n
    step = [f'const int t = {steps - 1} - run;' if attr(node, 'go_backwards') else 'const int t = run;']
    step += STEPS[node.op](code, '')
    if attr(node, 'return_sequences'):
        row = 'run' if attr(node, 'output_order') == 'steps' else 't'
        step += _loop('j', n, [f'y[{row} * {n} + j] = h[j];'], '')
    lines = _loop('run', steps, step, '    ')
    if not attr(node, 'return_sequences'):
        lines += _loop('j', n, ['y[j] = h[j];'], '    ')
    return lines


def _final_cell_state(code: _Code) -> tuple[list[str], list[str]]:
    """(the file-scope array declaration, the statements copying c into it) of an LSTM."""
    ctx, node, n = code.ctx, code.node, code.n
    final = ctx.names.new(f'{ctx.idents[node.name]}_c_final')
    final_states(ctx)[node.name] = final
    declaration = ['#ifdef __SYNTHESIS__',
                   f'static {code.state} {final}[{n}];  // the final cell state (read by its Select)',
                   '#else  // the C simulation library runs samples on several threads',
                   f'static thread_local {code.state} {final}[{n}];', '#endif']
    return declaration, _loop('j', n, [f'{final}[j] = cs[j];'], '    ')


def emit_rnn(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """A SimpleRNN/LSTM/GRU layer: its time loop unrolled (non-static), the first output into y."""
    code = _Code(ctx, node, out)
    steps, n_in = ins[0].shape
    lines = ['    #pragma HLS PIPELINE'] + _prologue(code, ins, arg_names(len(ins))) + _time_loop(code, steps)
    before: list[str] = []
    if node.op == 'LSTM':
        before, copy = _final_cell_state(code)
        lines += copy
    order = 'from the last time step to the first' if attr(node, 'go_backwards') else 'over time'
    head = header(node, f'{node.op} {n_in} -> {code.n} units, {steps} steps {order} (non-static: the steps '
                  'unrolled)', [
        'per step: gates = (accum_t)(Dense(x_t) + Dense(h)); tables/exact activations cast into accum_t;',
        STATE_UPDATES[node.op] if node.op != 'GRU' else
        STATE_UPDATES['GRU'] + (' after' if attr(node, 'reset_after') else ' before') + ' the recurrent product'])
    return '\n'.join(before + [head + signature(ctx.idents[node.name], ins, out) + ' {'] + lines + ['}', ''])


def final_states(ctx: Context) -> dict[str, str]:
    """Layer name -> the file-scope array holding its final cell state (kept on the context)."""
    if not hasattr(ctx, 'rnn_final_states'):
        ctx.rnn_final_states = {}
    return ctx.rnn_final_states


def emit_select(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """One output of a recurrent layer: its array, the last step's row of it, or its final cell state."""
    parent = ctx.graph[node.inputs[0]]
    if parent.op not in RNN_OPS:
        raise GraphError(f'layer {node.name!r}: the HLS back end reads several outputs only of {list(RNN_OPS)}, '
                         f'not of {parent.op} {parent.name!r}')
    index = int(node.attrs['index'])
    sig = signature(ctx.idents[node.name], ins, out)
    n = int(attr(parent, 'units'))
    if index == 2:
        source, what = f'{final_states(ctx)[parent.name]}[i]', 'the final cell state'
    elif index == 1 and attr(parent, 'return_sequences'):
        steps = parent.shape[0]
        last = 0 if attr(parent, 'output_order') == 'time' and attr(parent, 'go_backwards') else steps - 1
        source, what = f'x[{last * n} + i]', f'the final h (row {last} of the sequence)'
    else:
        source, what = 'x[i]', 'the layer output' if index == 0 else 'the final h'
    head = header(node, f'Select {index} of {label(parent)}: {what}')
    lines = [head + sig + ' {', '    #pragma HLS PIPELINE'] + _loop('i', out.size, [f'y[i] = {source};'], '    ')
    return '\n'.join(lines + ['}', ''])


RNN_EMITTERS = {**{op: emit_rnn for op in RNN_OPS}, 'Select': emit_select}
