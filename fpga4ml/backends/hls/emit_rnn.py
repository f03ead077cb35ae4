"""HLS C++ of the recurrent layers (SimpleRNN, LSTM, GRU) and of the Select nodes that read them.

Two forms with the same bits (the recipe is one), chosen by the layer's `Static` key (hls4ml's
default True): static, one cell function (`INLINE off`, pipelined at II = max(ReuseFactor,
RecurrentReuseFactor)) called by a rolled loop over time, the state in the layer function's local
arrays (little area, II about T times the cell's); non-static, the time loop unrolled inside one
pipelined function (a cell per step), the input products of all steps computed first. ReuseFactor
folds the input product and RecurrentReuseFactor the recurrent one: each product sits in a region
whose multipliers are limited to ceil(products / factor) (`ALLOCATION`), as the Dense emitter does;
a folded or static layer makes the io_parallel top a DATAFLOW pipeline. Each step is the recipe of
semantics/recipes_rnn.py written in C++: hls4ml's Dense products (bias, then every product cast
into accum_t and added in input order), the gate sums cast into accum_t, table lookups (or exact
relu/linear) cast into accum_t, and one cast of the exact new state.

The layer's array carries its first output (the sequence, or the last h). A Select of the final h
copies the row of the last step that ran. An LSTM's final cell state leaves the layer function
through a second output array (`side_outputs`): the top function passes the array (io_parallel),
or the FIFOs and output ports (io_stream), of the Select that reads it, and that Select has no
function of its own. Every array then has one writer and its readers, as a DATAFLOW pipeline
(io_stream, or a static or folded layer) needs.
"""

from __future__ import annotations

import math

import numpy as np

from ...fixed import FixedType
from ...folding import checked_reuse_factor, layer_strategy, valid_reuse_factors
from ...intervals import Interval, type_for
from ...ir import Graph, GraphError, Node
from ...semantics.params import element_groups, enclosing_type
from ...semantics.recipes_rnn import GATES, QUANTIZER_POINTS, table_keys
from ...semantics.spec import attr
from .emit import Context, Port, address, arg_names, constant, from_bits, header, label, signature, table_arrays

RNN_OPS = tuple(GATES)


class _Code:
    """The typedefs, weight arrays and tables of one recurrent layer, and C++ snippets over them."""

    def __init__(self, ctx: Context, node: Node, out: Port):
        self.ctx, self.node, self.out = ctx, node, out
        self.n = int(attr(node, 'units'))
        self.cols = GATES[node.op] * self.n
        self.static, self.rf, self.rrf = recurrent_settings(node)
        self.arow = '' if self.static else f't * {self.cols} + '  # the step's row of the input products a
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
        #: HGQ2's in-cell quantizers: point -> (function, its result type); their definitions
        self.quantizers: dict[str, tuple[str, str]] = {}
        self.helpers: list[str] = []
        sizes = {'gates': 2 * self.n}
        for point, spec in sorted((node.attrs.get('quantizers') or {}).items()):
            self.quantizers[point] = self.quantizer(point, spec, sizes.get(point, self.n))

    def quantizer(self, point: str, spec: dict, n: int) -> tuple[str, str]:
        """(name, result type) of `name(j, v)`: element j of v cast into its own type (recipes_rnn.quantize_at),
        then HGQ2's exact affine y * 2^e + m * 2^-f where the point has one; pruned elements are 0."""
        ctx, node = self.ctx, self.node
        where = f"layer {node.name!r}: the HLS back end does not write HGQ2's in-cell quantizers of a {node.op} "
        if point not in QUANTIZER_POINTS.get(node.op, ()) or not all(k in spec for k in ('k', 'i', 'f')):
            raise GraphError(where + f"({[point]}): point {point!r} needs per-element 'k', 'i', 'f' types at one of "
                             f'{list(QUANTIZER_POINTS.get(node.op, ()))}')
        groups = element_groups(Node(f'{node.name}_{point}', 'Quantize', [], (n,), attrs={'element_types': spec}))
        y_t = enclosing_type([t for t, _ in groups if t is not None])
        y = ctx.typedef(node, f'q_{point}_value', y_t, f'{label(node)}: quantizer {point}, any element exactly')
        cases = []
        for g, (t, idx) in enumerate(groups):
            value = f'({ctx.typedef(node, f"q_{point}_{g}", t)}) v' if t is not None else '0'
            labels = ' '.join(f'case {int(j)}:' for j in idx)
            cases.append(f'    {labels} y = {value}; break;' if t is not None else f'    {labels} y = 0; break;  // pruned')
        result, body = y, []
        if spec.get('affine') is not None:
            e, m, f = (int(a) for a in spec['affine'])
            result = ctx.typedef(node, f'q_{point}', _affine_type(y_t, e, m, f),
                                 f'{label(node)}: quantizer {point} after y * 2^{e} + {m} * 2^-{f}')
            scale = ctx.typedef(node, f'q_{point}_scale', FixedType(1, e + 1, False), f'{label(node)}: 2^{e}')
            declaration, shift = constant(ctx, node, f'q_{point}_shift', m, f)
            body = [f'    {declaration}', f'    return ({result})(y * {from_bits(scale, "1")} + {shift});']
        name = ctx.names.new(f'{ctx.idents[node.name]}_q_{point}')
        self.helpers.append('\n'.join(
            [f'// {label(node)}: HGQ2 quantizer {point!r}, each of the {n} elements cast into its own type',
             f'template <class T> static {result} {name}(int j, T v) {{', '    #pragma HLS INLINE', f'    {y} y;',
             '    switch (j) {'] + cases + ['    default: y = 0;', '    }'] + (body or ['    return y;']) + ['}', '']))
        return name, result

    def quantize(self, point: str, index: str, value: str) -> str:
        """C expression: `value` through the quantizer `point` (element `index`), or `value` without one."""
        if point not in self.quantizers:
            return value
        return f'{self.quantizers[point][0]}({index}, {value})'

    def qtype(self, point: str, default: str) -> str:
        """The C type of values after the quantizer `point` (`default` without one)."""
        return self.quantizers[point][1] if point in self.quantizers else default

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

    def folded(self, lines: list[str], products: int, factor: int, indent: str) -> list[str]:
        """`lines` (computing `products` products) in a region sharing ceil(products/factor) multipliers."""
        if factor == 1:
            return lines
        return ([f'{indent}{{  // {products} products over {factor} cycles',
                 f'{indent}    #pragma HLS ALLOCATION operation instances=mul limit={math.ceil(products / factor)}']
                + [f'    {s}' for s in lines] + [f'{indent}}}'])

    def recurrent(self, dst: str, src: str, first: int, last: int, indent: str) -> list[str]:
        """dst = Dense(src, recurrent_kernel, recurrent_bias) over columns first..last-1, RecurrentReuseFactor."""
        return self.folded(self.dense(dst, src, '', self.n, 'recurrent_kernel', 'recurrent_bias', first, last, indent),
                           self.n * (last - first), self.rrf, indent)

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


def _affine_type(y_t: FixedType, e: int, m: int, f: int) -> FixedType:
    """The narrowest type holding y * 2^e + m * 2^-f for every y of type y_t."""
    frac = max(y_t.frac - e, f)
    ends = [(v << (frac - y_t.frac + e)) + (m << (frac - f)) for v in (y_t.min_mantissa, y_t.max_mantissa)]
    return type_for(Interval.of_values(np.asarray(ends, dtype=object), frac))


def _loop(var: str, n: int, body: list[str], indent: str) -> list[str]:
    return ([f'{indent}for (int {var} = 0; {var} < {n}; {var}++) {{', f'{indent}    #pragma HLS UNROLL']
            + [f'{indent}    {s}' for s in body] + [f'{indent}}}'])


def _declare(ctype: str, name: str, size: int, indent: str) -> list[str]:
    return [f'{indent}{ctype} {name}[{size}];', f'{indent}#pragma HLS ARRAY_PARTITION variable={name} complete']


def _lstm_step(c: _Code, ind: str) -> list[str]:
    n, acc = c.n, c.acc
    lines = _declare(acc, 'rec', 4 * n, ind) + c.recurrent('rec', 'h', 0, 4 * n, ind)
    body = [f'{acc} s_{g} = ({acc})(a[{c.arow}{k} * {n} + j] + rec[{k} * {n} + j]);'
            for k, g in enumerate('ifgo')]
    for g in 'ifo':
        body += c.activate('ract', 'recurrent_activation', f's_{g}', acc, f'gate_{g}')
    body += c.activate('act', 'activation', 's_g', acc, 'gate_g')
    body.append(f'cs[j] = ({c.state})(gate_g * gate_i + cs[j] * gate_f);')
    body += c.activate('act_c', 'activation', 'cs[j]', acc, 'tc')
    body.append(f'h[j] = ({c.out.ctype})(gate_o * tc);')
    return lines + _loop('j', n, body, ind)


def _quantized_state(c: _Code, ind: str) -> tuple[str, list[str]]:
    """(the array the step reads h from, its statements): h through HGQ2's state quantizer, if any."""
    if 'state' not in c.quantizers:
        return 'h', []
    return 'qh', _declare(c.qtype('state', ''), 'qh', c.n, ind) + _loop('j', c.n, [f'qh[j] = {c.quantize("state", "j", "h[j]")};'], ind)


def _gru_step(c: _Code, ind: str) -> list[str]:
    n, acc, res = c.n, c.acc, c.out.ctype
    reset_after = bool(attr(c.node, 'reset_after'))
    width = 3 * n if reset_after else 2 * n
    hq, lines = _quantized_state(c, ind)
    lines += _declare(acc, 'rec', width, ind) + c.recurrent('rec', hq, 0, width, ind)
    lines += _declare(c.qtype('gates', acc), 'zr', 2 * n, ind)
    lines += _loop('k', 2 * n, [f'{acc} s = ({acc})(a[{c.arow}k] + rec[k]);']
                   + c.activate('ract', 'recurrent_activation', 's', acc, 'g')
                   + [f'zr[k] = {c.quantize("gates", "k", "g")};'], ind)
    z, r = ('zr[j]', f'zr[{n} + j]') if attr(c.node, 'gate_order') == 'zrh' else (f'zr[{n} + j]', 'zr[j]')
    lines += _declare(acc, 'q', n, ind)
    if reset_after:
        lines += _loop('j', n, [f'q[j] = ({acc})({r} * {c.quantize("recurrent_h", "j", f"rec[{2 * n} + j]")});'], ind)
    else:
        rh = (f'rh[j] = {c.quantize("recurrent_h", "j", f"{r} * {hq}[j]")};' if 'recurrent_h' in c.quantizers
              else f'rh[j] = ({res})({r} * {hq}[j]);')
        lines += _declare(c.qtype('recurrent_h', res), 'rh', n, ind) + _loop('j', n, [rh], ind)
        lines += c.folded(c.dense('q', 'rh', '', n, 'recurrent_kernel', 'recurrent_bias', 2 * n, 3 * n, ind), n * n,
                          c.rrf, ind)
    body = [f'{acc} u = ({acc})(a[{c.arow}{2 * n} + j] + q[j]);']
    body += c.activate('act', 'activation', 'u', acc, 'hc')
    body.append(f'h[j] = ({res})({c.quantize("candidate", "j", "hc")} * (one - {z}) + {hq}[j] * {z});')
    return lines + _loop('j', n, body, ind)


def _simple_rnn_step(c: _Code, ind: str) -> list[str]:
    n, acc = c.n, c.acc
    hq, lines = _quantized_state(c, ind)
    lines += _declare(acc, 'rec', n, ind) + c.recurrent('rec', hq, 0, n, ind)
    body = [f'{acc} s = ({acc})(a[{c.arow}j] + rec[j]);']
    if 'pre_activation' in c.quantizers:
        body.append(f'{c.qtype("pre_activation", acc)} sq = {c.quantize("pre_activation", "j", "s")};')
    body += c.activate('act', 'activation', 'sq' if 'pre_activation' in c.quantizers else 's', c.out.ctype, 'hn')
    return lines + _loop('j', n, body + ['h[j] = hn;'], ind)


STATE_UPDATES = {'LSTM': "c' = (state_t)(g*i + c*f); h' = (result_t)(o * (accum_t) act(c'))",
                 'GRU': "h' = (result_t)(hc*(1 - z) + h*z), the reset gate applied",
                 'SimpleRNN': "h' = (result_t) act(gates)"}
STEPS = {'LSTM': _lstm_step, 'GRU': _gru_step, 'SimpleRNN': _simple_rnn_step}


def recurrent_settings(node: Node) -> tuple[bool, int, int]:
    """(Static, ReuseFactor, RecurrentReuseFactor) of a recurrent layer, validated.

    Static (hls4ml's default True): one cell function called once per time step. ReuseFactor folds
    the input product (n_in x G*n), RecurrentReuseFactor the recurrent one (n x G*n), each by the
    Dense rule of folding.py under the layer's Strategy; invalid values raise naming the layer, the
    value and the valid values.
    """
    static = node.config.get('Static', True)
    if not isinstance(static, (bool, np.bool_)):
        raise GraphError(f'layer {node.name!r}: Static must be True or False, got {static!r}')
    n_in, cols = np.shape(node.weights['kernel'])
    n = int(attr(node, 'units'))
    strategy = layer_strategy(node)
    rf = checked_reuse_factor(node, f'{node.op} input product {n_in} x {cols}, Strategy {strategy}',
                              valid_reuse_factors(n_in, cols, strategy))
    rrf = checked_reuse_factor(node, f'{node.op} recurrent product {n} x {cols}, Strategy {strategy}',
                               valid_reuse_factors(n, cols, strategy), key='RecurrentReuseFactor')
    return bool(static), rf, rrf


def _input_products(code: _Code, ins: list[Port], names: list[str]) -> list[str]:
    """Non-static: the input products of every step first, a[t][:] = Dense(x[t], kernel, bias) in accum_t."""
    steps, n_in = ins[0].shape
    cols = code.cols
    lines = ['    // the input products of every time step: a[t][:] = Dense(x[t], kernel, bias) in accum_t']
    lines += _declare(code.acc, 'a', steps * cols, '    ')
    return lines + code.folded(_loop('t', steps, code.dense('a', names[0], f't * {n_in} + ', n_in, 'kernel', 'bias', 0,
                                                            cols, '', dst_offset=f't * {cols} + '), '    '),
                               steps * n_in * cols, code.rf, '    ')


def _one(code: _Code, indent: str) -> list[str]:
    """GRU: the constant 1 of h' = hc*(1 - z) + h*z."""
    if code.node.op != 'GRU':
        return []
    declaration, _ = constant(code.ctx, code.node, 'one', 1, 0)
    return [f'{indent}{declaration}']


def _initial_state(code: _Code, ins: list[Port], names: list[str]) -> list[str]:
    """h (and c) declared and set to their initial values (the extra inputs, or zero)."""
    node, out, n = code.node, code.out, code.n
    lines = _declare(out.ctype, 'h', n, '    ')
    init = [f'h[j] = ({out.ctype}) {names[1]}[j];' if len(ins) > 1 else f'h[j] = ({out.ctype}) 0;']
    if node.op == 'LSTM':
        lines += _declare(code.state, 'cs', n, '    ')
        init.append(f'cs[j] = ({code.state}) {names[2]}[j];' if len(ins) > 2 else f'cs[j] = ({code.state}) 0;')
    return lines + _loop('j', n, init, '    ')


def _step_order(code: _Code, steps: int) -> list[str]:
    """The time step t of run number `run` (go_backwards: from the last step to the first)."""
    return [f'const int t = {steps - 1} - run;' if attr(code.node, 'go_backwards') else 'const int t = run;']


def _outputs(code: _Code) -> tuple[list[str], list[str]]:
    """(the statement writing a step's row of a sequence output, the statements after the time loop)."""
    n = code.n
    if attr(code.node, 'return_sequences'):
        row = 'run' if attr(code.node, 'output_order') == 'steps' else 't'
        return _loop('j', n, [f'y[{row} * {n} + j] = h[j];'], ''), []
    return [], _loop('j', n, ['y[j] = h[j];'], '    ')


def _time_loop(code: _Code, steps: int) -> list[str]:
    """Non-static: the unrolled steps (in go_backwards order), each writing its row of a sequence output."""
    per_step, after = _outputs(code)
    return _loop('run', steps, _step_order(code, steps) + STEPS[code.node.op](code, '') + per_step, '    ') + after


def _cell_function(code: _Code, x: Port) -> tuple[str, str]:
    """Static: (the cell function's name, its definition): one time step, x_t -> h, c updated in place."""
    ctx, node, n, n_in = code.ctx, code.node, code.n, x.shape[-1]
    name = ctx.names.new(f'{ctx.idents[node.name]}_cell')
    args = [f'const {x.ctype} xt[{n_in}]', f'{code.out.ctype} h[{n}]'] + (
        [f'{code.state} cs[{n}]'] if node.op == 'LSTM' else [])
    lines = ['    #pragma HLS INLINE off', f'    #pragma HLS PIPELINE II={max(code.rf, code.rrf)}'] + _one(code, '    ')
    lines += _declare(code.acc, 'a', code.cols, '    ')
    lines += code.folded(code.dense('a', 'xt', '', n_in, 'kernel', 'bias', 0, code.cols, '    '), n_in * code.cols,
                         code.rf, '    ')
    lines += [f'    {s}' for s in STEPS[node.op](code, '')]
    head = header(node, f'{node.op} cell: one time step (static mode: this one cell is reused for every step)',
                  [f'a = Dense(x_t) (ReuseFactor {code.rf}), Dense(h) (RecurrentReuseFactor {code.rrf}), in accum_t'])
    return name, '\n'.join([head + f'static void {name}({", ".join(args)}) {{'] + lines + ['}', ''])


def _static_loop(code: _Code, cell: str, ins: list[Port], names: list[str]) -> list[str]:
    """Static: a rolled loop over time calling the one cell function."""
    steps, n_in = ins[0].shape
    per_step, after = _outputs(code)
    state = ', cs' if code.node.op == 'LSTM' else ''
    body = _step_order(code, steps) + [f'{cell}(&{names[0]}[t * {n_in}], h{state});'] + per_step
    return ([f'    for (int run = 0; run < {steps}; run++) {{  // rolled: one cell, {steps} calls']
            + [f'        {s}' for s in body] + ['    }'] + after)


def side_outputs(graph: Graph, node: Node) -> list[Node]:
    """The Select nodes whose tensor `node`'s layer function writes through extra output arrays.

    An LSTM's final cell state exists only inside the layer (the main output carries h); each
    Select of it (index 2) is written by the LSTM itself, after y. Other layers have none.
    """
    if node.op != 'LSTM':
        return []
    return [c for c in graph.consumers(node.name) if c.op == 'Select' and int(c.attrs['index']) == 2]


def written_by_producer(graph: Graph, node: Node) -> bool:
    """Whether `node` is a Select that its recurrent producer writes (see `side_outputs`): no call of its own."""
    return node.op == 'Select' and any(s.name == node.name for s in side_outputs(graph, graph[node.inputs[0]]))


def _final_cell_state(code: _Code, selects: list[Node]) -> tuple[list[str], list[str]]:
    """(the extra output arguments, the statements casting c into them) of an LSTM whose c is read."""
    args, lines = [], []
    for k, select in enumerate(selects):
        ctype = code.ctx.tensor_types[select.name]
        args.append(f'{ctype} c_final{k}[{code.n}]')
        lines += _loop('j', code.n, [f'c_final{k}[j] = ({ctype}) cs[j];'], '    ')
    return args, lines


def emit_rnn(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """A SimpleRNN/LSTM/GRU layer, static (one cell called per step) or not (the steps unrolled)."""
    code = _Code(ctx, node, out)
    steps, n_in = ins[0].shape
    names = arg_names(len(ins))
    before: list[str] = list(code.helpers)
    if code.static:
        ctx.folded.add(node.name)  # a rolled loop: the io_parallel top becomes a DATAFLOW pipeline
        cell, definition = _cell_function(code, ins[0])
        before.append(definition)
        lines = _initial_state(code, ins, names) + _static_loop(code, cell, ins, names)
    else:
        if max(code.rf, code.rrf) > 1:
            ctx.folded.add(node.name)
        lines = ([f'    #pragma HLS PIPELINE II={max(code.rf, code.rrf)}'] + _one(code, '    ')
                 + _input_products(code, ins, names) + _initial_state(code, ins, names) + _time_loop(code, steps))
    extra, copy = _final_cell_state(code, side_outputs(ctx.graph, node))
    lines += copy
    order = 'from the last time step to the first' if attr(node, 'go_backwards') else 'over time'
    mode = ('static: one cell function called once per step' if code.static else
            'non-static: the steps unrolled')
    head = header(node, f'{node.op} {n_in} -> {code.n} units, {steps} steps {order} ({mode}; ReuseFactor '
                  f'{code.rf}, RecurrentReuseFactor {code.rrf})', [
        'per step: gates = (accum_t)(Dense(x_t) + Dense(h)); tables/exact activations cast into accum_t;',
        STATE_UPDATES[node.op] if node.op != 'GRU' else
        STATE_UPDATES['GRU'] + (' after' if attr(node, 'reset_after') else ' before') + ' the recurrent product'])
    return '\n'.join(before + [head + signature(ctx.idents[node.name], ins, out, extra) + ' {'] + lines + ['}', ''])


def emit_select(ctx: Context, node: Node, ins: list[Port], out: Port) -> str:
    """One output of a recurrent layer: its array or the last step's row of it ('' for a final cell
    state, which the LSTM writes itself: `side_outputs`)."""
    parent = ctx.graph[node.inputs[0]]
    if parent.op not in RNN_OPS:
        raise GraphError(f'layer {node.name!r}: the HLS back end reads several outputs only of {list(RNN_OPS)}, '
                         f'not of {parent.op} {parent.name!r}')
    if written_by_producer(ctx.graph, node):
        return ''
    index = int(node.attrs['index'])
    sig = signature(ctx.idents[node.name], ins, out)
    n = int(attr(parent, 'units'))
    if index == 1 and attr(parent, 'return_sequences'):
        steps = parent.shape[0]
        last = 0 if attr(parent, 'output_order') == 'time' and attr(parent, 'go_backwards') else steps - 1
        source, what = f'x[{last * n} + i]', f'the final h (row {last} of the sequence)'
    else:
        source, what = 'x[i]', 'the layer output' if index == 0 else 'the final h'
    head = header(node, f'Select {index} of {label(parent)}: {what}')
    lines = [head + sig + ' {', '    #pragma HLS PIPELINE'] + _loop('i', out.size, [f'y[i] = {source};'], '    ')
    return '\n'.join(lines + ['}', ''])


RNN_EMITTERS = {**{op: emit_rnn for op in RNN_OPS}, 'Select': emit_select}
