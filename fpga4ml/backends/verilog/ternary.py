"""Three-input adders on Xilinx LUT6_2 + carry-chain primitives (one LUT per result bit).

A sum of three terms ``±(u << su) ± (v << sv) ± (w << sw)`` fits one LUT per bit on the carry
chains of UltraScale(+) (CARRY8) and 7-series (CARRY4) devices: at column i the LUT6_2, with I5
tied to 1, computes on its O5 output the majority m_i of the three term bits (the carry-save
carry into column i + 1) and on its O6 output the propagate bit t_i ^ m_(i-1), where t_i is the
three bits' XOR and m_(i-1) comes from the LUT of the column below (its O5). The carry chain adds
t + (m << 1): select S_i = O6_i, data DI_i = m_(i-1) (equal to t_i whenever the propagate is 0).
Two binary adders of the same sum cost one LUT per bit each, so a fused pair saves the LUTs of the
inner adder. Synthesis tools count a LUT6_2 as one LUT (Vivado packs such pairs of 5-input
functions itself; Yosys does not, so the primitives are instantiated).

Subtraction folds into the LUT (an inverted term bit) and two carry-in slots: -(v << s) equals
the inverted bits of v from column s up, ones in columns [start, s) and +2^start, where `start` is
the first column the chain computes; the +2^start of one negated term is the chain's carry-in, that
of a second one the m_(start-1) input of the first LUT. So at most two terms may be negated.
Columns below `start` pass the lowest term's bits through (when a single non-negated term reaches
below the others), as a binary adder's shifted-in zeros do.

`plan` builds the column structure, `evaluate` runs it bit by bit through the LUT INIT words and
the carry recursion (the tests check it against integer sums), `verilog` writes it, and
`sim_models` is our behavioural Verilog of the three primitives for simulators without the vendor
libraries (Verilator here; the file is not synthesized: Yosys and Vivado use their own cells).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .netlist import dead_signals, needed_bits, zero_lsbs
from .pipeline import THREE_INPUT_EXTRA_NS, delay_ns

#: a bit of a term: a constant 0/1, or (wire name, bit index)
Bit = int | tuple[str, int]

#: TernaryAdders setting -> carry primitive ('off': binary adders only)
CARRY_PRIMITIVES = {'carry8': 'CARRY8', 'carry4': 'CARRY4', 'off': None}
#: the bits one carry primitive spans
CARRY_BITS = {'CARRY8': 8, 'CARRY4': 4}


@dataclass(frozen=True)
class Term:
    """One term ±(v << shift) of a three-input sum: v is a wire (name, width, non_negative) or a constant."""

    shift: int
    negate: bool = False
    name: str | None = None     # None: the constant `value`
    width: int = 0
    non_negative: bool = False  # a non-negative wire's sign bit is 0 (emit.py writes it as a constant)
    value: int = 0
    offset: int = 0             # v is the wire's bits from this one up (the wire's lower bits are zeros)

    def bit(self, k: int) -> Bit:
        """Bit k (k >= 0) of v, sign- or zero-extended beyond its width."""
        if self.name is None:
            return (self.value >> k) & 1
        top, k = self.width - 1, k + self.offset
        if self.non_negative:
            return (self.name, k) if k < top else 0
        return (self.name, min(k, top))


@dataclass
class Column:
    """One LUT6_2 of the chain: term bits on I0-I2 (with inversions), m_(i-1) on I3."""

    pins: tuple[Bit, Bit, Bit]
    invert: tuple[bool, bool, bool]

    @property
    def init(self) -> int:
        """The LUT6_2 INIT word: O5 = majority of the (inverted) term bits, O6 (I5 = 1) = their XOR ^ I3."""
        return init_word(self.invert)


@functools.lru_cache(maxsize=8)
def init_word(invert: tuple[bool, bool, bool]) -> int:
    """The INIT word of a column whose term bits on I0-I2 are inverted as given (see Column.init)."""
    word = 0
    for idx in range(32):
        x = [((idx >> j) & 1) ^ invert[j] for j in range(3)]
        m_prev = (idx >> 3) & 1
        word |= int(sum(x) >= 2) << idx
        word |= (x[0] ^ x[1] ^ x[2] ^ m_prev) << (32 + idx)
    return word


@dataclass
class Plan:
    """A three-input sum as bits: `low` pass-through bits (LSB first), then LUT columns from `start`."""

    width: int
    start: int
    low: list[Bit]
    columns: list[Column]
    m_in: int       # the m_(start-1) input of the first LUT (the second negated term's +2^start)
    carry_in: int   # the chain's carry-in (the first negated term's +2^start)


def negations(terms: list[Term]) -> int:
    """How many wire terms are subtracted (constants are folded into one added value)."""
    return sum(1 for t in terms if t.negate and t.name is not None)


def plan(terms: list[Term], width: int) -> Plan:
    """The column structure of sum(terms) modulo 2^width (at most two negated wire terms)."""
    terms = _fold_constants(terms, width)
    if negations(terms) > 2 or len(terms) > 3:
        raise ValueError(f'a three-input adder takes at most three terms with two subtracted, got {terms}')
    order = sorted(terms, key=lambda t: t.shift)
    lowest = order[0]
    start = lowest.shift
    low: list[Bit] = [0] * min(start, width)
    if not lowest.negate and (len(order) == 1 or order[1].shift > start):
        start = min(width, order[1].shift if len(order) > 1 else width)
        low += [lowest.bit(i - lowest.shift) for i in range(lowest.shift, start)]
    columns = []
    for i in range(start, width):
        pins, invert = [], []
        for t in terms:
            if i < t.shift:
                pins.append(int(t.negate))   # zeros, or the ones of a negated term below its shift
                invert.append(False)
            else:
                pins.append(t.bit(i - t.shift))
                invert.append(t.negate)
        while len(pins) < 3:
            pins.append(0)
            invert.append(False)
        columns.append(Column(tuple(pins), tuple(invert)))
    n = negations(terms)
    return Plan(width, start, low, columns, m_in=int(n == 2), carry_in=int(n >= 1))


def _fold_constants(terms: list[Term], width: int) -> list[Term]:
    """Constant terms become one non-negated constant (its value modulo 2^width); a zero one is dropped."""
    mask = (1 << width) - 1
    total = sum((-1 if t.negate else 1) * (t.value << t.shift) for t in terms if t.name is None) & mask
    wires = [t for t in terms if t.name is not None]
    if total == 0:
        return wires or [Term(shift=width, value=0)]
    zeros = (total & -total).bit_length() - 1
    return wires + [Term(shift=zeros, value=total >> zeros)]


#: the previous column's O5 (m_(i-1)) as a select input of a column without a LUT (see `wired_columns`)
M_PREV = 'm_prev'


def wired_columns(p: Plan) -> list[tuple[Bit | str, Bit] | None]:
    """Per column, (S, m) when it needs no LUT, else None.

    A column whose propagate O6 is a constant or one of its inputs as it is (a term bit, or M_PREV: the
    previous column's m, when that is not a known constant) and whose majority O5 is a constant or
    one term bit as it is, is wiring: S and m read those. Decided on the column's truth table over its
    distinct variables, so constant pins, a bit read twice (x ^ x = 0, maj(x, x, z) = x) and
    inversions are all seen. Synthesis treats a binary adder's bit with a constant operand the same
    way (S from the other operand, no LUT).
    """
    out: list[tuple[Bit | str, Bit] | None] = []
    m: int | None = p.m_in     # m_(i-1) when it is a known constant (m_in, a wired column's constant m)
    for col in p.columns:
        variables = list(dict.fromkeys(b for b in col.pins if not isinstance(b, int)))
        shape = tuple(b if isinstance(b, int) else -1 - variables.index(b) for b in col.pins)
        wiring = _column_wiring(shape, col.invert, m)
        if wiring is None:
            out.append(None)
            m = None
            continue
        o6, o5 = (variables[w[1]] if isinstance(w, tuple) else w for w in wiring)
        out.append((o6, o5))
        m = o5 if isinstance(o5, int) else None
    return out


@functools.lru_cache(maxsize=4096)
def _column_wiring(shape: tuple[int, ...], invert: tuple[bool, ...], m: int | None):
    """(O6, O5) of a column as constants, ('v', k) for its k-th distinct variable or M_PREV, when both are
    wires (see wired_columns); `shape`: each pin a constant 0/1 or -1 - k for variable k."""
    names = sorted({-1 - c for c in shape if c < 0}) + ([M_PREV] if m is None else [])
    o6s, o5s = [], []
    for row in range(1 << len(names)):
        value = {name: (row >> k) & 1 for k, name in enumerate(names)}
        bits = [(c if c >= 0 else value[-1 - c]) ^ inv for c, inv in zip(shape, invert)]
        o6s.append(bits[0] ^ bits[1] ^ bits[2] ^ (m if m is not None else value[M_PREV]))
        o5s.append(int(sum(bits) >= 2))
    o6, o5 = _as_wire(o6s, names), _as_wire(o5s, names)
    if o6 is None or o5 is None or o5 == M_PREV:
        return None
    return o6, o5


def _as_wire(table: list[int], names: list):
    """The constant (int) or ('v', k) / M_PREV for the variable (as it is) a truth table over `names`
    equals, else None."""
    if len(set(table)) == 1:
        return table[0]
    for k, name in enumerate(names):
        if all(v == (row >> k) & 1 for row, v in enumerate(table)):
            return name if name == M_PREV else ('v', name)
    return None


def evaluate(p: Plan, values: dict[str, int]) -> int:
    """The plan's output bits (an unsigned width-bit integer) for wire values {name: unsigned bits}, as
    `verilog` writes it: LUT columns through their INIT words, wired columns as wires."""
    def level(b: Bit) -> int:
        return b if isinstance(b, int) else (values[b[0]] >> b[1]) & 1

    out = 0
    for i, b in enumerate(p.low):
        out |= level(b) << i
    m_prev, carry = p.m_in, p.carry_in
    for i, (col, wired) in enumerate(zip(p.columns, wired_columns(p))):
        if wired is None:
            idx = level(col.pins[0]) | level(col.pins[1]) << 1 | level(col.pins[2]) << 2 | m_prev << 3
            o6, o5 = (col.init >> (32 + idx)) & 1, (col.init >> idx) & 1
        else:
            o6 = m_prev if wired[0] == M_PREV else level(wired[0])
            o5 = level(wired[1])
        out |= (o6 ^ carry) << (p.start + i)
        carry = carry if o6 else m_prev     # CO = S ? CI : DI, DI = this column's I3
        m_prev = o5
    return out


def lut_count(p: Plan) -> int:
    """The LUT6_2 primitives a plan instantiates (its columns less the wired ones)."""
    return sum(1 for w in wired_columns(p) if w is None)


def verilog(p: Plan, name: str, primitive: str, text, width: int | None = None) -> list[str]:
    """Declarations and instances computing wire `name`; text(bit) writes a Bit.

    The wire has `width` bits (default p.width); bits above p.width, which nothing depends on
    (`netlist.needed_bits`), are written as zeros.
    """
    n = len(p.columns)
    width = p.width if width is None else width
    zeros = [f"{width - p.width}'b0"] if width > p.width else []
    lines = [f'wire [{width - 1}:0] {name};']
    if n == 0:
        lines.append(f'assign {name} = {_concat(zeros + [text(b) for b in reversed(p.low)])};')
        return lines
    span = CARRY_BITS[primitive]
    blocks = -(-n // span)
    pad = blocks * span - n
    lines.append(f'wire [{blocks * span - 1}:0] {name}_t, {name}_m, {name}_o, {name}_c;')
    for i, (col, wired) in enumerate(zip(p.columns, wired_columns(p))):
        m_prev = f"1'b{p.m_in}" if i == 0 else f'{name}_m[{i - 1}]'
        if wired is not None:   # no LUT: the select and the majority are wires
            lines.append(f'assign {name}_t[{i}] = {m_prev if wired[0] == M_PREV else text(wired[0])};')
            lines.append(f'assign {name}_m[{i}] = {text(wired[1])};')
            continue
        pins = ', '.join(f'.I{j}({text(b)})' for j, b in enumerate(col.pins))
        lines.append(f"LUT6_2 #(.INIT(64'h{col.init:016x})) {name}_l{i} ({pins}, .I3({m_prev}), .I4(1'b0), "
                     f".I5(1'b1), .O6({name}_t[{i}]), .O5({name}_m[{i}]));")
    if pad:
        lines.append(f"assign {name}_t[{blocks * span - 1}:{n}] = {pad}'b0;")
        lines.append(f"assign {name}_m[{blocks * span - 1}:{n}] = {pad}'b0;")
    # DI of column i is m_(i-1): the m bus shifted up by one, m_in at the bottom
    di = f"{{{name}_m[{blocks * span - 2}:0], 1'b{p.m_in}}}" if blocks * span > 1 else f"1'b{p.m_in}"
    lines.append(f'wire [{blocks * span - 1}:0] {name}_d = {di};')
    for k in range(blocks):
        hi, lo = k * span + span - 1, k * span
        ci = f"1'b{p.carry_in}" if k == 0 else f'{name}_c[{lo - 1}]'
        if primitive == 'CARRY8':
            lines.append(f"CARRY8 {name}_k{k} (.CI({ci}), .CI_TOP(1'b0), .DI({name}_d[{hi}:{lo}]), "
                         f'.S({name}_t[{hi}:{lo}]), .O({name}_o[{hi}:{lo}]), .CO({name}_c[{hi}:{lo}]));')
        else:  # CARRY4: the chain's first carry-in enters through CYINIT
            ci_pin, init_pin = ("1'b0", ci) if k == 0 else (ci, "1'b0")
            lines.append(f'CARRY4 {name}_k{k} (.CI({ci_pin}), .CYINIT({init_pin}), .DI({name}_d[{hi}:{lo}]), '
                         f'.S({name}_t[{hi}:{lo}]), .O({name}_o[{hi}:{lo}]), .CO({name}_c[{hi}:{lo}]));')
    parts = zeros + [f'{name}_o[{n - 1}:0]' if n > 1 else f'{name}_o[0]'] + [text(b) for b in reversed(p.low)]
    lines.append(f'assign {name} = {_concat(parts)};')
    return lines


def unused_wires(p: Plan, name: str, primitive: str) -> list[str]:
    """The bits of the helper buses that nothing reads (for the module's `unused` lint wire)."""
    n = len(p.columns)
    if n == 0:
        return []
    total = -(-n // CARRY_BITS[primitive]) * CARRY_BITS[primitive]
    bits = [f'{name}_c[{b}]' for b in range(total) if b % CARRY_BITS[primitive] != CARRY_BITS[primitive] - 1 or
            b == total - 1]
    bits += [f'{name}_o[{b}]' for b in range(n, total)]
    return bits + [f'{name}_m[{total - 1}]']


def _concat(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else '{' + ', '.join(parts) + '}'


def sim_models() -> str:
    """Behavioural Verilog of LUT6_2, CARRY8 and CARRY4 (same ports and function as the vendor cells)."""
    return _SIM_MODELS


_SIM_MODELS = """\
// Behavioural models of the Xilinx primitives that fpga4ml's three-input adders instantiate,
// written by fpga4ml for simulators without the vendor libraries (Verilator). Not for synthesis:
// Yosys and Vivado use their own cell libraries.
/* verilator lint_off DECLFILENAME */
module LUT6_2 #(parameter [63:0] INIT = 64'h0) (
  output wire O6, output wire O5,
  input wire I0, input wire I1, input wire I2, input wire I3, input wire I4, input wire I5);
  assign O6 = INIT[{I5, I4, I3, I2, I1, I0}];
  assign O5 = INIT[{1'b0, I4, I3, I2, I1, I0}];
endmodule

module CARRY8 #(parameter CARRY_TYPE = "SINGLE_CY8") (
  output wire [7:0] CO, output wire [7:0] O,
  input wire CI, input wire CI_TOP, input wire [7:0] DI, input wire [7:0] S);
  wire [8:0] c;
  wire mid = (CARRY_TYPE == "DUAL_CY4") ? CI_TOP : c[4];
  assign c[0] = CI;
  genvar i;
  generate
    for (i = 0; i < 8; i = i + 1) begin : bit_
      wire cin = (i == 4) ? mid : c[i];
      assign O[i] = S[i] ^ cin;
      assign c[i + 1] = S[i] ? cin : DI[i];
    end
  endgenerate
  assign CO = c[8:1];
endmodule

module CARRY4 (
  output wire [3:0] CO, output wire [3:0] O,
  input wire CI, input wire CYINIT, input wire [3:0] DI, input wire [3:0] S);
  wire [4:0] c;
  assign c[0] = CI | CYINIT;
  genvar i;
  generate
    for (i = 0; i < 4; i = i + 1) begin : bit_
      assign O[i] = S[i] ^ c[i];
      assign c[i + 1] = S[i] ? c[i] : DI[i];
    end
  endgenerate
  assign CO = c[4:1];
endmodule
/* verilator lint_on DECLFILENAME */
"""

#: Xilinx part-name prefixes by carry primitive (UltraScale and UltraScale+: CARRY8; 7-series: CARRY4)
_PART_FAMILIES = (
    (re.compile(r'xc7[aksvz]', re.I), 'carry4'),
    (re.compile(r'xc(vu|ku|zu|au|u\d)', re.I), 'carry8'),
)


def carry_for_part(part: str | None) -> str:
    """'carry8' for UltraScale(+) parts, 'carry4' for 7-series, 'off' for anything else (Versal, other vendors)."""
    for pattern, setting in _PART_FAMILIES:
        if part and pattern.match(part):
            return setting
    return 'off'


# --------------------------------------------------------------------------- fusing netlist adders

def _signed_terms(nl, sid: int, shift: int = 0, sign: int = 1) -> list[tuple[int, int, int]]:
    """The add signal sid's two operands as (signal, shift, sign), scaled by << shift and sign."""
    p = nl[sid].p
    a, b = nl[sid].args
    return [(a, p['sa'] + shift, p['ga'] * sign), (b, p['sb'] + shift, p['gb'] * sign)]


def _inner_add(nl, sid: int) -> tuple[int, int] | None:
    """(add, extra shift) when signal sid is an add, or a left shift of one (x << s is exact wiring)."""
    sig = nl[sid]
    if sig.op == 'add':
        return sid, 0
    if sig.op == 'shl' and nl[sig.args[0]].op == 'add':
        return sig.args[0], sig.p['s']
    return None


def pair_terms(nl, outer: int, inner: int) -> list[tuple[int, int, int]]:
    """The three (signal, shift, sign) terms of add `outer` with its operand `inner` (an add, or a
    left shift of one) expanded."""
    terms = []
    for sid, shift, sign in _signed_terms(nl, outer):
        if sid == inner:
            add, extra = _inner_add(nl, inner)
            terms += _signed_terms(nl, add, shift + extra, sign)
        else:
            terms.append((sid, shift, sign))
    return terms


def _subtracted(nl, terms: list[tuple[int, int, int]]) -> int:
    return sum(1 for sid, _, sign in terms if sign < 0 and not nl[sid].is_const)


def absorbed_signals(nl, pairs: dict[int, int]) -> set[int]:
    """The signals fused pairs make redundant: each absorbed add (and the left shift in front of it)."""
    out = set()
    for inner in pairs.values():
        out.add(inner)
        out.add(_inner_add(nl, inner)[0])
    return out


def fused_pairs(nl, stage: list[int], zeros: list[int] | None = None) -> dict[int, int]:
    """{outer add: the operand it absorbs} for three-input adders.

    First, an add absorbs an operand that is an add, or a left shift of an add, read (like that add)
    by nothing else (no other signal, no output port) in the same pipeline stage (so no register
    sits between them), unless that add absorbs one itself or the sum would subtract all three
    terms; of two candidates the one that does not make the sum settle later (by the scheduler's delay
    model: a three-input adder settles a LUT level plus its carry chain after its latest term, which
    is later than the binary pair when the third term arrives last), then the wider add (more LUTs
    saved). Signals are visited inputs first, which pairs every chain of adds greedily from its
    start. Then a shared add (a common subexpression
    that absorbs nothing) is absorbed by all of its readers when every one of them is an add of the
    same stage with no operand absorbed yet: the subexpression is then computed inside each of them
    and costs nothing of its own.
    """
    readers: list[list[int]] = [[] for _ in range(len(nl))]
    for sig in nl.signals:
        for a in sig.args:
            readers[a].append(sig.id)
    for port in nl.outputs:
        for s in port.signals:
            readers[s].append(-1)
    from .estimate import binary_add_luts   # the LUTs an absorbed binary adder would have taken
    pairs: dict[int, int] = {}
    arrival = [0.0] * len(nl)   # in-stage settle times, three-input adders included

    def fits(outer: int, inner: int, add: int) -> bool:
        return (stage[add] == stage[outer] == stage[inner] and add not in pairs
                and _subtracted(nl, pair_terms(nl, outer, inner)) <= 2)

    def settles(sid: int, args, extra: float = 0.0) -> float:
        t_in = max((arrival[a] for a in args if stage[a] == stage[sid] and not nl[a].is_const), default=0.0)
        return t_in + delay_ns(nl[sid], nl) + extra

    for sig in nl.signals:
        arrival[sig.id] = settles(sig.id, sig.args)
        if sig.op != 'add':
            continue
        best, best_key, best_time = None, None, 0.0
        for a in sig.args:
            found = _inner_add(nl, a)
            if found is None or len(readers[a]) != 1 or len(readers[found[0]]) != 1 or not fits(sig.id, a, found[0]):
                continue
            t = settles(sig.id, [sid for sid, _, _ in pair_terms(nl, sig.id, a)], THREE_INPUT_EXTRA_NS)
            key = (t <= arrival[sig.id] + 1e-9, binary_add_luts(nl[found[0]], nl, zeros))
            if best_key is None or key > best_key:
                best, best_key, best_time = a, key, t
        if best is not None:
            pairs[sig.id] = best
            arrival[sig.id] = best_time
    taken = set(pairs.values())
    for sig in nl.signals:
        users = readers[sig.id]
        if sig.op != 'add' or len(users) < 2 or sig.id in pairs or sig.id in taken:
            continue
        if all(r >= 0 and nl[r].op == 'add' and r not in pairs and r not in taken and nl[r].args.count(sig.id) == 1
               and fits(r, sig.id, sig.id) for r in users):
            for r in users:
                pairs[r] = sig.id
            taken.add(sig.id)
    return pairs


@dataclass
class Fusion:
    """How a netlist is written: the fused pairs, each signal's needed bits, the signals not written."""

    fused: dict[int, int]
    need: list[int]
    skipped: set[int]
    zeros: list[int]    # each signal's low bits known to be 0 (netlist.zero_lsbs; empty without fused pairs)


def fusion(nl, stage: list[int], adders: str, prune: bool = True) -> Fusion:
    """The one decision emit.write_module writes and estimate.estimate_netlist prices: the adds fused
    into three-input adders (adders 'carry8'/'carry4'; none for 'off'), and the signals not written
    (those absorbed into a three-input adder and, with prune, those no output depends on)."""
    zeros = zero_lsbs(nl) if CARRY_PRIMITIVES[adders] else []
    fused = fused_pairs(nl, stage, zeros) if CARRY_PRIMITIVES[adders] else {}
    need = needed_bits(nl) if fused or prune else []
    skipped = absorbed_signals(nl, fused) | (dead_signals(nl, need) if prune else set())
    return Fusion(fused, need, skipped, zeros)


def pair_plan(nl, outer: int, inner: int, wire, need: int | None = None, zeros: list[int] | None = None) -> Plan:
    """The column plan of a fused pair; wire(sid) names a signal's wire (emit.py: its pipeline copy);
    only the low `need` bits are computed (default all, see `netlist.needed_bits`).

    A term is read from its wire above its low bits known to be 0 (`zeros`, netlist.zero_lsbs; a left
    shift's shifted-in zeros at least): they are constants, which pass through or enter the LUTs as
    constants, as synthesis would see them through a binary adder.
    """
    terms = []
    for sid, shift, sign in pair_terms(nl, outer, inner):
        sig = nl[sid]
        known = zeros[sid] if zeros else 0
        zeros_here = max(known, sig.p['s'] if sig.op == 'shl' else 0)
        if sig.is_const:
            terms.append(Term(shift=shift, negate=sign < 0, value=sig.lo))
        else:
            terms.append(Term(shift=shift + zeros_here, negate=sign < 0, name=wire(sid), width=sig.width,
                              non_negative=sig.lo >= 0, offset=zeros_here))
    width = nl[outer].width
    return plan(terms, width if need is None else max(1, min(width, need)))
