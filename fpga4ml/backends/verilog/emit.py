"""Write a scheduled netlist as one synthesizable Verilog-2001 module.

Every signal is one exact-width wire ``sN`` holding its mantissa in two's complement; each
expression extends or slices its operands to the result width explicitly, so the arithmetic
is modulo 2^W on W-bit vectors and needs no implicit sign rules (and Verilator's -Wall lint
has nothing to say). Adders carry ``(* keep *)`` so synthesis maps each one to a carry chain
instead of flattening whole sums. Pipeline registers ``sN_dK`` (signal N, K stages later) have
no reset; only the valid chain is reset. Ports: see `ports_doc`.
"""

from __future__ import annotations

from ...fixed import FixedType
from ...intervals import round_shift
from ...naming import Names, comment_line, comment_text
from .netlist import Netlist, Port, Signal, bits_for, clamp_at_zero
from .pipeline import Schedule
from .ternary import CARRY_PRIMITIVES, fusion, pair_plan, unused_wires
from .ternary import verilog as ternary_verilog


def bus_names(inputs: list[str], outputs: list[str]) -> tuple[list[str], list[str]]:
    """Verilog identifiers of the input (x_<name>) and output (y_<name>) buses of tensors, in order.

    Legal and unique: characters other than [A-Za-z0-9_] become '_', and tensors whose names
    collide after that (``in-1``, ``in_1``) get suffixes (naming.Names).
    """
    names = Names()
    return [names.new('x_' + name) for name in inputs], [names.new('y_' + name) for name in outputs]


def port_names(nl: Netlist) -> tuple[list[str], list[str]]:
    """The bus identifiers of a netlist's input and output ports (`bus_names`)."""
    return bus_names([p.name for p in nl.inputs], [p.name for p in nl.outputs])


def element_width(t: FixedType) -> int:
    """Bits of one element of a port of type t (the type's width)."""
    return t.width


def ports_doc() -> str:
    """The port convention, as written into every generated module's header comment."""
    return (
        '// Ports: clk (rising edge), rst (synchronous, active high; clears only the valid pipeline),\n'
        '// ce (clock enable; tie to 1 when unused), valid_in/valid_out, and one packed bus per tensor:\n'
        '// element k of a tensor (C order of its shape) is bits [k*W +: W], W = the type width,\n'
        '// two\'s complement for signed types. Outputs appear LATENCY clocks after the inputs (II = 1).\n')


class _Writer:
    def __init__(self, nl: Netlist, sched: Schedule, top: str, adders: str = 'off', prune: bool = False) -> None:
        self.nl, self.sched, self.top = nl, sched, top
        self.in_ports, self.out_ports = port_names(nl)
        self.lines: list[str] = []
        self.last_use = sched.last_use(nl)
        self.used_bits: dict[str, int] = {}
        #: helper wires of casts (name -> width), checked for unused bits like the signals
        self.internal: dict[str, int] = {}
        #: three-input adders (ternary.py): the carry primitive, outer add -> the add it absorbs
        self.carry = CARRY_PRIMITIVES[adders]
        plan = fusion(nl, sched.stage, adders, prune)
        #: signals not written: those computed inside a three-input adder, and (prune) those no output depends on
        self.fused, self.need, self.skipped, self.zeros = plan.fused, plan.need, plan.skipped, plan.zeros
        self.unread: list[str] = []   # helper bits of the three-input adders that nothing reads

    # -------------------------------------------------------------- references
    def ref(self, sid: int, stage: int) -> str:
        """The name of signal sid as seen from `stage` (through its delay registers)."""
        sig = self.nl[sid]
        if sig.is_const:
            return self.const(sig.lo, sig.width)
        k = stage - self.sched.stage[sid]
        return f's{sid}' if k <= 0 else f's{sid}_d{k}'

    @staticmethod
    def const(value: int, width: int) -> str:
        """A width-bit two's complement constant."""
        return f"{width}'h{value & ((1 << width) - 1):x}"

    def ext(self, sid: int, width: int, stage: int) -> str:
        """Signal sid as a width-bit vector: sign-extended, or sliced when its value fits.

        A non-negative signal's sign bit is 0: it is written as a constant (zero extension), so
        synthesis sees constant bits instead of a computed one and builds nothing for them.
        """
        sig = self.nl[sid]
        if sig.is_const:
            return self.const(sig.lo, width)
        w = sig.width
        name = self.ref(sid, stage)
        if sig.lo >= 0 and width >= w:
            if w == 1:
                return self.const(0, width)
            self._use(name, 0, w - 1)
            part = f'{name}[{w - 2}:0]' if w > 2 else f'{name}[0]'
            return f"{{{width - w + 1}'b0, {part}}}"
        if width == w:
            self._use(name, 0, w)
            return name
        if width < w:
            self._use(name, 0, width)
            return f'{name}[{width - 1}:0]'
        self._use(name, 0, w)
        sign = f'{name}[{w - 1}]'
        return f'{{{{{width - w}{{{sign}}}}}, {name}}}'

    def bits(self, sid: int, hi: int, lo: int, stage: int) -> str:
        """Bits [hi:lo] of signal sid (sign bits beyond its width are repeated; a non-negative signal's are 0)."""
        sig = self.nl[sid]
        w = sig.width
        name = self.ref(sid, stage)
        if sig.is_const:
            return self.const(sig.lo >> lo, hi - lo + 1)
        if sig.lo >= 0:
            w -= 1  # the sign bit is the constant 0
            if lo >= w:
                return self.const(0, hi - lo + 1)
        elif lo >= w:
            self._use(name, w - 1, w)
            return f'{{{hi - lo + 1}{{{name}[{w - 1}]}}}}'
        top = min(hi, w - 1)
        self._use(name, lo, top + 1)
        part = f'{name}[{top}:{lo}]' if top > lo else f'{name}[{lo}]'
        if hi > top:
            pad = self.const(0, hi - top) if sig.lo >= 0 else f'{{{hi - top}{{{name}[{w - 1}]}}}}'
            return f'{{{pad}, {part}}}'
        return part

    def _use(self, name: str, lo: int, hi: int) -> None:
        """Mark bits [lo, hi) of a wire as read (one integer bit mask per wire)."""
        self.used_bits[name] = self.used_bits.get(name, 0) | ((1 << hi) - (1 << lo))

    # -------------------------------------------------------------- ops
    def expr(self, sig: Signal) -> list[str]:
        """Declarations and assignments computing one signal."""
        st, W, a = self.sched.stage[sig.id], sig.width, sig.args
        name = f's{sig.id}'
        decl = f'wire [{W - 1}:0] {name};'
        op = sig.op
        if op == 'input':
            port = self.nl.inputs[sig.p['port']]
            tw = element_width(port.type)
            k = sig.p['element']
            bus = self.in_ports[sig.p['port']]
            src = f'{bus}[{k * tw + tw - 1}:{k * tw}]' if tw > 1 else f'{bus}[{k * tw}]'
            if not port.type.signed:
                src = f"{{1'b0, {src}}}"
            return [decl, f'assign {name} = {src};']
        if sig.id in self.skipped:   # computed inside the three-input adder that reads it, or unused
            return []
        if sig.id in self.fused:
            return self._ternary(sig)
        if op == 'add':
            p = sig.p
            ta = self._shifted(a[0], p['sa'], W, st)
            tb = self._shifted(a[1], p['sb'], W, st)
            if p['ga'] > 0:
                e = f'{ta} {"+" if p["gb"] > 0 else "-"} {tb}'
            elif p['gb'] > 0:
                e = f'{tb} - {ta}'
            else:
                e = f"{self.const(0, W)} - {ta} - {tb}"
            return ['(* keep = "true" *) ' + decl, f'assign {name} = {e};']
        if op == 'neg':
            return ['(* keep = "true" *) ' + decl, f'assign {name} = -{self.ext(a[0], W, st)};']
        if op == 'shr':
            s = sig.p['s']
            return [decl, f'assign {name} = {self.bits(a[0], s + W - 1, s, st)};']
        if op == 'shl':
            return [decl, f'assign {name} = {self._shifted(a[0], sig.p["s"], W, st)};']
        if op == 'cast':
            return self._cast(sig, decl)
        if op in ('max', 'min') and clamp_at_zero(self.nl, sig) is not None:
            x = clamp_at_zero(self.nl, sig)
            sign = self.bits(x, self.nl[x].width - 1, self.nl[x].width - 1, st)
            kept, zero = self.ext(x, W, st), self.const(0, W)
            return [decl, f'assign {name} = {sign} ? {zero if op == "max" else kept} : {kept if op == "max" else zero};']
        if op in ('max', 'min'):
            wc = max(self.nl[a[0]].width, self.nl[a[1]].width)
            cmp = '>' if op == 'max' else '<'
            lines = [f'wire {name}_c;',
                     f'assign {name}_c = $signed({self.ext(a[0], wc, st)}) {cmp} $signed({self.ext(a[1], wc, st)});',
                     decl, f'assign {name} = {name}_c ? {self.ext(a[0], W, st)} : {self.ext(a[1], W, st)};']
            return lines
        if op == 'select':
            c = self.nl[a[0]]
            positive = f'(~{self.bits(a[0], c.width - 1, c.width - 1, st)} & |{self.ext(a[0], c.width, st)})'
            return [decl, f'assign {name} = {positive} ? {self.ext(a[1], W, st)} : {self.ext(a[2], W, st)};']
        if op == 'mul':
            return [decl, f'assign {name} = $signed({self.ext(a[0], W, st)}) * $signed({self.ext(a[1], W, st)});']
        if op == 'rom':
            return self._rom(sig)
        if op == 'mux':
            return self._mux(sig)
        if op == 'divc':
            n = sig.p['n']
            wd = max(self.nl[a[0]].width, bits_for(0, n))
            self.internal[f'{name}_q'] = wd
            self._use(f'{name}_q', 0, W)
            return [f'wire [{wd - 1}:0] {name}_q;',
                    f'assign {name}_q = $signed({self.ext(a[0], wd, st)}) / $signed({self.const(n, wd)});',
                    decl, f'assign {name} = {name}_q[{W - 1}:0];']
        raise ValueError(f'signal {sig.id}: op {op!r} cannot be emitted')

    def _ternary(self, sig: Signal) -> list[str]:
        """An add with its absorbed operand add as one three-input adder (LUT6_2 + carry primitives)."""
        st, name = self.sched.stage[sig.id], f's{sig.id}'
        plan = pair_plan(self.nl, sig.id, self.fused[sig.id], lambda sid: self.ref(sid, st), self.need[sig.id],
                         self.zeros)
        self.unread += unused_wires(plan, name, self.carry)
        lines = ternary_verilog(plan, name, self.carry, self._bit_text, sig.width)
        return ['(* keep = "true" *) ' + lines[0]] + lines[1:]

    def _bit_text(self, bit) -> str:
        """A ternary.Bit as Verilog: a constant, or one bit of a wire (marked as read)."""
        if isinstance(bit, int):
            return f"1'b{bit}"
        name, k = bit
        self._use(name, k, k + 1)
        return f'{name}[{k}]'

    def _shifted(self, sid: int, s: int, width: int, stage: int) -> str:
        """(signal << s) as a width-bit vector."""
        if s == 0:
            return self.ext(sid, width, stage)
        if s >= width:
            return self.const(0, width)
        return f"{{{self.ext(sid, width - s, stage)}, {s}'b0}}"

    def _cast(self, sig: Signal, decl: str) -> list[str]:
        """Rounding (increment from the dropped bits) then overflow (wrap, saturate or zero)."""
        t: FixedType = sig.p['type']
        st, W, (a,) = self.sched.stage[sig.id], sig.width, sig.args
        A = self.nl[a]
        name = f's{sig.id}'
        s = sig.p['frac_in'] - t.frac
        lines = []
        if s > 0:
            q_lo, q_hi = (round_shift(v, s, t.rounding) for v in (A.lo, A.hi))
            wq = bits_for(min(q_lo, A.lo >> s), max(q_hi, A.hi >> s))
            floor = self.bits(a, s + wq - 1, s, st)
            inc = self._round_increment(a, s, t.rounding, st, floor_lsb=f'{name}_f[0]')
            lines += [f'wire [{wq - 1}:0] {name}_f;', f'assign {name}_f = {floor};']
            self.internal[f'{name}_f'] = wq
            if inc is None:
                q = f'{name}_f'
            else:
                lines += [f'wire [{wq - 1}:0] {name}_r;',
                          f"assign {name}_r = {name}_f + {{{wq - 1}'b0, {inc}}};" if wq > 1 else
                          f'assign {name}_r = {name}_f + {inc};']
                self._use(f'{name}_f', 0, wq)
                q = f'{name}_r'
        else:
            q_lo, q_hi = A.lo << -s, A.hi << -s
            wq = bits_for(q_lo, q_hi)
            lines += [f'wire [{wq - 1}:0] {name}_r;', f'assign {name}_r = {self._shifted(a, -s, wq, st)};']
            q = f'{name}_r'
        self.internal[q] = wq
        lo, hi = t._sat_min, t.max_mantissa
        if lo <= q_lo and q_hi <= hi:
            self._use(q, 0, min(wq, W))
            return lines + [decl, f'assign {name} = {self._fit(q, wq, W)};']
        if t.overflow == 'WRAP':
            self._use(q, 0, min(wq, t.width))
            kept = self._fit(q, wq, t.width) if t.width > 1 else f'{q}[0]'  # sign-extended when q is narrower
            value = kept if t.signed else f"{{1'b0, {kept}}}"
            return lines + [decl, f'assign {name} = {value};']
        self._use(q, 0, wq)
        over = f'($signed({q}) > $signed({self.const(hi, wq)}))' if q_hi > hi else None
        under = f'($signed({q}) < $signed({self.const(lo, wq)}))' if q_lo < lo else None
        inner = self._fit(q, wq, W)
        if t.overflow == 'SAT_ZERO':
            cond = ' | '.join(c for c in (over, under) if c)
            return lines + [decl, f'assign {name} = ({cond}) ? {self.const(0, W)} : {inner};']
        value = inner
        if under:
            value = f'{under} ? {self.const(lo, W)} : {value}'
        if over:
            value = f'{over} ? {self.const(hi, W)} : {value}'
        return lines + [decl, f'assign {name} = {value};']

    @staticmethod
    def _fit(q: str, wq: int, width: int) -> str:
        if wq == width:
            return q
        if wq > width:
            return f'{q}[{width - 1}:0]'
        return f'{{{{{width - wq}{{{q}[{wq - 1}]}}}}, {q}}}'

    def _round_increment(self, a: int, s: int, rounding: str, st: int, floor_lsb: str) -> str | None:
        """The 1-bit expression added to floor(a / 2^s) for a rounding mode (None for TRN)."""
        if rounding == 'TRN':
            return None
        A = self.nl[a]

        def sign() -> str:
            return self.bits(a, A.width - 1, A.width - 1, st)

        def rest() -> str:  # any dropped bit below the half bit set
            return f'(|{self.bits(a, s - 2, 0, st)})' if s >= 2 else "1'b0"
        if rounding == 'TRN_ZERO':
            return f'({sign()} & (|{self.bits(a, s - 1, 0, st)}))'
        half = self.bits(a, s - 1, s - 1, st)
        if rounding == 'RND':
            return half
        if rounding == 'RND_MIN_INF':
            return f'({half} & {rest()})'
        if rounding == 'RND_ZERO':
            return f'({half} & ({rest()} | {sign()}))'
        if rounding == 'RND_INF':
            return f'({half} & ({rest()} | ~{sign()}))'
        if rounding == 'RND_CONV':
            return f'({half} & ({rest()} | {floor_lsb}))'
        raise ValueError(f'unknown rounding {rounding!r}')

    def _rom(self, sig: Signal) -> list[str]:
        values, offset = sig.p['values'], sig.p['offset']
        return self._case(sig, sig.args[0], lambda v: self.const(int(values[v - offset]), sig.width))

    def _mux(self, sig: Signal) -> list[str]:
        st, (sel, *options) = self.sched.stage[sig.id], sig.args
        return self._case(sig, sel, lambda v: self.ext(options[v - sig.p['offset']], sig.width, st))

    def _case(self, sig: Signal, sel: int, entry) -> list[str]:
        """A case statement on signal sel: for each value v it can take, sig = entry(v) (a ROM, a multiplexer)."""
        st, W, S = self.sched.stage[sig.id], sig.width, self.nl[sel]
        name = f's{sig.id}'
        lines = [f'reg [{W - 1}:0] {name};', 'always @(*) begin', f'  case ({self.ext(sel, S.width, st)})']
        for v in range(S.lo, S.hi + 1):
            lines.append(f'    {self.const(v, S.width)}: {name} = {entry(v)};')
        lines += [f'    default: {name} = {self.const(0, W)};', '  endcase', 'end']
        return lines

    # -------------------------------------------------------------- module
    def write(self) -> str:
        nl, sched = self.nl, self.sched
        body = []
        for sig in nl.signals:
            if sig.is_const:
                continue
            body.extend(self.expr(sig))
        regs, assigns = self._registers()
        outs = self._outputs()
        unused = self._unused()
        head = self._header()
        return '\n'.join(head + ['', '  // ---- datapath'] + ['  ' + line for line in body] +
                         ['', '  // ---- pipeline registers'] + ['  ' + line for line in regs + assigns] +
                         ['', '  // ---- outputs'] + ['  ' + line for line in outs + unused] + ['endmodule', ''])

    def _registers(self) -> tuple[list[str], list[str]]:
        nl, sched = self.nl, self.sched
        decls, body = [], []
        for sig in nl.signals:
            if sig.is_const or sig.id in self.skipped:
                continue
            depth = self.last_use[sig.id] - sched.stage[sig.id]
            for k in range(1, depth + 1):
                prev = f's{sig.id}' if k == 1 else f's{sig.id}_d{k - 1}'
                decls.append(f'reg [{sig.width - 1}:0] s{sig.id}_d{k};')
                body.append(f'    s{sig.id}_d{k} <= {prev};')
                self._use(prev, 0, sig.width)
        L = sched.latency
        lines = list(decls)
        if body:
            lines += ['always @(posedge clk) begin', '  if (ce) begin'] + body + ['  end', 'end']
        if L == 0:
            lines.append('assign valid_out = valid_in;')
            return lines, ["wire unused_ctrl = &{1'b0, clk, rst, ce, 1'b0};"]
        lines += [f'reg [{L - 1}:0] valid_sr;', 'always @(posedge clk) begin',
                  f"  if (rst) valid_sr <= {L}'b0;",
                  f'  else if (ce) valid_sr <= {{valid_sr[{L - 2}:0], valid_in}};' if L > 1 else
                  '  else if (ce) valid_sr <= valid_in;', 'end', f'assign valid_out = valid_sr[{L - 1}];']
        return lines, []

    def _outputs(self) -> list[str]:
        lines = []
        L = self.sched.latency
        for port, bus in zip(self.nl.outputs, self.out_ports):
            tw = element_width(port.type)
            parts = []
            for s in reversed(port.signals):
                sig = self.nl[s]
                if sig.is_const:
                    parts.append(self.const(sig.lo, tw))
                else:
                    parts.append(self.ext(s, tw, L))
            lines += [f'assign {bus} = {{'] + _wrapped(parts, ',')[:-1] + \
                [_wrapped(parts, ',')[-1].rstrip(',') + '};']
        return lines

    def _unused(self) -> list[str]:
        """One `unused` wire reading every bit nothing else reads (Verilator's lint convention)."""
        unused = list(self.unread)
        for sig in self.nl.signals:
            if sig.is_const or sig.id in self.skipped:
                continue
            depth = self.last_use[sig.id] - self.sched.stage[sig.id]
            for name in [f's{sig.id}'] + [f's{sig.id}_d{k}' for k in range(1, depth + 1)]:
                unused.extend(_unread(name, sig.width, self.used_bits.get(name, 0)))
        for name, width in self.internal.items():
            unused.extend(_unread(name, width, self.used_bits.get(name, 0)))
        if not unused:
            return []
        return ["wire unused_bits = &{1'b0,"] + _wrapped(unused, ',') + ["  1'b0};"]

    def _header(self) -> list[str]:
        nl, sched = self.nl, self.sched
        ports = ['  input  wire clk,', '  input  wire rst,', '  input  wire ce,', '  input  wire valid_in,',
                 '  output wire valid_out']
        for port, bus in zip(nl.inputs, self.in_ports):
            n = len(port.signals) * element_width(port.type)
            ports[-1] += ','
            ports.append(f'  input  wire [{n - 1}:0] {bus}')
        for port, bus in zip(nl.outputs, self.out_ports):
            n = len(port.signals) * element_width(port.type)
            ports[-1] += ','
            ports.append(f'  output wire [{n - 1}:0] {bus}')
        doc = [f'// {self.top}: generated by fpga4ml. Latency {sched.latency} clocks, II 1.'] + ports_doc().splitlines()
        for port, bus in zip(nl.inputs + nl.outputs, self.in_ports + self.out_ports):
            doc.append(comment_line(f'//   {bus}: tensor {comment_text(port.name)}, shape {list(port.shape)}, '
                                    f'{port.type}'))
        return doc + [f'module {self.top} ('] + ports + [');']


def _unread(name: str, width: int, used: int) -> list[str]:
    """`name[b]` for every bit b of a width-bit wire that the mask `used` does not mark as read."""
    free = ~used & ((1 << width) - 1)
    return [f'{name}[{b}]' for b in range(width) if free >> b & 1]


def _wrapped(items: list[str], sep: str, per_line: int = 16) -> list[str]:
    """Items joined by `sep` (after each item), a few per line: tools limit line lengths."""
    lines = []
    for k in range(0, len(items), per_line):
        lines.append('  ' + ' '.join(f'{item}{sep}' for item in items[k:k + per_line]))
    return lines


def write_module(nl: Netlist, sched: Schedule, top: str, adders: str = 'off') -> str:
    """The Verilog text of the whole design as one module named `top`.

    adders: 'off' (binary adders, portable Verilog) or 'carry8' / 'carry4' (adds fused in pairs into
    three-input adders on Xilinx LUT6_2 + CARRY8 / CARRY4 primitives, ternary.py). Signals no output
    depends on (netlist.dead_signals: e.g. a unit whose every outgoing weight is zero) are not written.
    """
    return _Writer(nl, sched, top, adders, prune=True).write()


def port_entry(port: Port, bus: str) -> dict:
    """The manifest entry of one port (`bus`: its Verilog identifier, from `port_names`)."""
    t = port.type
    return {'name': port.name, 'port': bus, 'shape': list(port.shape),
            'elements': len(port.signals), 'width': element_width(t), 'frac': t.frac, 'signed': t.signed,
            'type': str(t)}
