"""A flat list of typed integer operations: what the Verilog back end lowers a typed graph to.

Every `Signal` is one integer-valued wire with exact bounds [lo, hi] on its mantissa and a
fractional bit count `frac` (value = mantissa * 2^-frac). The bounds come from interval
arithmetic, so each wire is exactly as wide as it must be and nothing ever overflows except
where an explicit `cast` says so (with ap_fixed rounding and overflow, like the emulator).

The netlist has its own vectorized interpreter (`Netlist.evaluate`), which the tests compare
with the emulator: the lowering is checked without any simulator, and the emitted Verilog is
then checked against the same interpreter/emulator with Verilator.

Ops (args are signal ids; `p` holds the op's parameters):

=========  ========================================================================
input      element `p.element` of model input `p.port`
const      the constant `p.value`
add        (a << p.sa) * p.ga + (b << p.sb) * p.gb, with ga, gb in {+1, -1}
neg        -a
shr        a >> p.s (floor; drops LSBs: wiring only)
shl        a << p.s (wiring only)
cast       FixedType p.type applied to a (input frac p.frac_in): rounding + overflow
max/min    of a and b
select     a > 0 ? b : c
mul        a * b
rom        p.values[a - p.offset]  (a is already cast into the table's index type)
mux        options[sel - p.offset]: args (sel, *options), the options at one LSB (p.role: what the
           cost model prices it as, 'data' or a folded layer's 'digit' picker)
divc       a / p.n truncated toward zero (constant n >= 2)
=========  ========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ...fixed import FixedType
from ...intervals import round_shift, trunc_div

#: mantissas must stay inside int64 with headroom; the lowering checks it
MAX_SIGNAL_BITS = 62


class NetlistError(ValueError):
    """A lowering produced an invalid netlist (out of range, wrong frac alignment)."""


def bits_for(lo: int, hi: int) -> int:
    """Bits of a signed two's complement wire that holds every integer in [lo, hi] (at least 1)."""
    return max(hi.bit_length() if hi > 0 else 0, (-lo - 1).bit_length() if lo < 0 else 0) + 1


@dataclass(slots=True)
class Signal:
    """One wire: op, argument signal ids, parameters, exact mantissa bounds and LSB position.

    `width` (bits of the signed wire holding it) follows from the bounds; it is kept as a field
    (the scheduler and the writer read it millions of times on big designs), so bounds change
    only through Netlist.narrow, which updates it.
    """

    id: int
    op: str
    args: tuple[int, ...]
    lo: int
    hi: int
    frac: int
    p: dict[str, Any] = field(default_factory=dict)
    width: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.width = bits_for(self.lo, self.hi)

    @property
    def live_bits(self) -> int:
        """The bits synthesis keeps: the width less the sign bit of a non-negative signal (a constant 0, see emit.py)."""
        return self.width - 1 if self.lo >= 0 else self.width

    @property
    def is_const(self) -> bool:
        """True for constants (they need no registers)."""
        return self.op == 'const'


@dataclass
class Port:
    """A model input or output tensor: its name, shape, element type and one signal id per element."""

    name: str
    shape: tuple[int, ...]
    type: FixedType
    signals: list[int]


class Netlist:
    """Signals in topological order (creation order), plus input and output ports."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.inputs: list[Port] = []
        self.outputs: list[Port] = []
        self._consts: dict[tuple[int, int], int] = {}
        self._negs: dict[int, int] = {}  # signal -> its negation
        self._uses: list[int] = []  # readers of each signal so far (the rounding fold's single-use test)
        self._shared: dict[tuple, int] = {}  # derived signals built once per key (multiplexers, multiples)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, sid: int) -> Signal:
        return self.signals[sid]

    # ------------------------------------------------------------------ construction
    def _new(self, op: str, args: tuple[int, ...], lo: int, hi: int, frac: int, **p: Any) -> int:
        lo, hi = int(lo), int(hi)
        if lo > hi:
            raise NetlistError(f'{op}: empty bounds [{lo}, {hi}]')
        if bits_for(lo, hi) > MAX_SIGNAL_BITS:
            raise NetlistError(f'{op}: a {bits_for(lo, hi)}-bit intermediate exceeds the {MAX_SIGNAL_BITS} '
                               'bits the Verilog back end supports; use narrower types')
        sid = len(self.signals)
        self.signals.append(Signal(sid, op, args, lo, hi, frac, p))
        self._uses.append(0)
        for a in args:
            self._uses[a] += 1
        return sid

    def add_input(self, name: str, shape: tuple[int, ...], t: FixedType) -> list[int]:
        """A model input port; returns one signal per element (C order)."""
        port = len(self.inputs)
        n = int(np.prod(shape, dtype=np.int64))
        sigs = [self._new('input', (), t.min_mantissa, t.max_mantissa, t.frac, port=port, element=k) for k in range(n)]
        self.inputs.append(Port(name, tuple(shape), t, sigs))
        return sigs

    def add_output(self, name: str, shape: tuple[int, ...], t: FixedType, sigs: list[int]) -> None:
        """A model output port: the given signals, whose values lie in type `t`."""
        for s in sigs:
            sig = self.signals[s]
            if sig.frac != t.frac or sig.lo < t.min_mantissa or sig.hi > t.max_mantissa:
                raise NetlistError(f'output {name!r}: signal {s} [{sig.lo}, {sig.hi}] / 2^{sig.frac} is not of type {t}')
        self.outputs.append(Port(name, tuple(shape), t, list(sigs)))

    def const(self, value: int, frac: int) -> int:
        """A constant (shared between uses)."""
        key = (int(value), frac)
        if key not in self._consts:
            self._consts[key] = self._new('const', (), value, value, frac, value=int(value))
        return self._consts[key]

    def add(self, a: int, b: int, sa: int = 0, sb: int = 0, ga: int = 1, gb: int = 1,
            frac: int | None = None) -> int:
        """(a << sa) * ga + (b << sb) * gb on mantissas.

        Without `frac` both operands must reach the same LSB (frac + shift) and the result has it.
        With `frac` the shifts are integer multiplications (adder graphs of constant products, whose
        operands share one LSB) and the result is labelled with the given LSB.
        """
        A, B = self.signals[a], self.signals[b]
        if frac is None:
            if A.frac + sa != B.frac + sb:
                raise NetlistError(f'add: operands at LSB 2^-{A.frac + sa} and 2^-{B.frac + sb} are not aligned')
            frac = A.frac + sa
        ca = sorted((ga * (A.lo << sa), ga * (A.hi << sa)))
        cb = sorted((gb * (B.lo << sb), gb * (B.hi << sb)))
        return self._new('add', (a, b), ca[0] + cb[0], ca[1] + cb[1], frac, sa=sa, sb=sb, ga=ga, gb=gb)

    def narrow(self, a: int, lo: int | None = None, hi: int | None = None) -> int:
        """Tighten a signal's bounds with a fact interval arithmetic cannot see (e.g. x - max(x) <= 0)."""
        sig = self.signals[a]
        sig.lo = sig.lo if lo is None else max(sig.lo, lo)
        sig.hi = sig.hi if hi is None else min(sig.hi, hi)
        sig.width = bits_for(sig.lo, sig.hi)
        return a

    def neg(self, a: int) -> int:
        """-a (one per signal: shared between readers)."""
        if a not in self._negs:
            A = self.signals[a]
            self._negs[a] = self._new('neg', (a,), -A.hi, -A.lo, A.frac)
        return self._negs[a]

    def shr(self, a: int, s: int) -> int:
        """Floor shift right by s >= 1 (the LSB moves up by s bits)."""
        A = self.signals[a]
        return self._new('shr', (a,), A.lo >> s, A.hi >> s, A.frac - s, s=s)

    def shl(self, a: int, s: int, frac: int | None = None) -> int:
        """a << s on mantissas: by default the same value at the LSB 2^-(frac + s).

        With `frac` the shift is an integer multiplication and the result is labelled with that LSB.
        """
        A = self.signals[a]
        if frac is None:
            if s == 0:
                return a
            frac = A.frac + s
        return self._new('shl', (a,), A.lo << s, A.hi << s, frac, s=s)

    def align(self, a: int, frac: int) -> int:
        """The same value at a finer LSB (frac >= the signal's frac)."""
        return self.shl(a, frac - self.signals[a].frac)

    def cast(self, a: int, t: FixedType) -> int:
        """ap_fixed cast of a into t (rounding, then overflow), as FixedType.cast; no-op casts vanish.

        A rounding (RND) cast of a sum with a constant folds its half into that constant
        (`_rounding_into_constant`). (Taking a monotone cast before a ReLU's max, cast(max(x, 0)) =
        max(cast(x), 0), was measured too: one stage off two of bench_verilog.py's MLPs, none off the
        particle transformer, 49 % more registers on the dense MLP.)
        """
        A = self.signals[a]
        s = A.frac - t.frac
        if s > 0 and t.rounding == 'RND':
            folded = self._rounding_into_constant(a, s)
            if folded is not None:  # round half up = floor(a + half): the half joins a's constant term
                return self.cast(folded, replace(t, rounding='TRN'))
        lo, hi = (round_shift(v, s, t.rounding) for v in (A.lo, A.hi))
        if lo >= t._sat_min and hi <= t.max_mantissa:
            if s == 0:
                return a
            if s < 0:
                return self.shl(a, -s)
            if t.rounding == 'TRN':
                return self.shr(a, s)
        elif t.overflow == 'WRAP':
            lo, hi = t.min_mantissa, t.max_mantissa
        else:  # saturation clips the rounded bounds; SAT_ZERO may also give 0
            lo, hi = (min(max(v, t._sat_min), t.max_mantissa) for v in (lo, hi))
            if t.overflow == 'SAT_ZERO':
                lo, hi = min(lo, 0), max(hi, 0)
        return self._new('cast', (a,), lo, hi, t.frac, type=t, frac_in=A.frac)

    def _rounding_into_constant(self, a: int, s: int) -> int | None:
        """a + 2^(s-1) with the half folded into the constant leaf of a's adder tree (a bias, an offset), or None.

        The tree is a's adds that nothing else reads; the path from a down to the constant is rebuilt with
        the constant moved, so a rounding cast costs no adder. None without such a constant, or when the
        half is not a whole multiple of the constant's weight. (Adding the half at a leaf of a tree without
        a constant was measured too: no stage fewer on the particle transformer, 12 % more registers.)
        """
        half = 1 << (s - 1)
        path = self._path_to_constant(a, 1, 64, readers=0)
        if path is None or half % abs(path[-1][1]):
            return None
        *steps, (leaf, weight) = path
        C = self.signals[leaf]
        new = self.const(C.p['value'] + half // weight, C.frac)
        weights = [1]  # of each path node in a's mantissa: the half adds half // weight to it
        for sid, pos in steps[:-1]:
            weights.append(weights[-1] * self._terms(self.signals[sid])[pos][1])
        try:
            for (sid, pos), w in zip(reversed(steps), reversed(weights)):
                sig = self.signals[sid]
                args = list(sig.args)
                args[pos] = new
                new = self.add(*args, sig.p['sa'], sig.p['sb'], sig.p['ga'], sig.p['gb'], frac=sig.frac)
                self.narrow(new, sig.lo + half // w, sig.hi + half // w)  # keeps facts narrowed into the old path
        except NetlistError:  # a wider sum would pass the signal limit: keep the rounding adder
            return None
        return new

    def _terms(self, sig: Signal):
        """(argument, its weight in sig's mantissa) of an add."""
        return ((sig.args[0], sig.p['ga'] << sig.p['sa']), (sig.args[1], sig.p['gb'] << sig.p['sb']))

    def _path_to_constant(self, sid: int, weight: int, budget: int, readers: int = 1) -> list | None:
        """[(add, argument position), ..., (const, its weight in the root's mantissa)] through adds with
        `readers` readers (the root: none yet; below it: one), so the rebuilt path replaces the old one."""
        sig = self.signals[sid]
        if sig.op == 'const':
            return [(sid, weight)]
        if sig.op != 'add' or budget <= 0 or self._uses[sid] != readers:
            return None
        for pos, (arg, w) in enumerate(self._terms(sig)):
            found = self._path_to_constant(arg, weight * w, budget - 1)
            if found is not None:
                return [(sid, pos)] + found
        return None

    def maximum(self, a: int, b: int) -> int:
        """max(a, b) of two signals at the same LSB."""
        return self._pick('max', a, b)

    def minimum(self, a: int, b: int) -> int:
        """min(a, b) of two signals at the same LSB."""
        return self._pick('min', a, b)

    def _pick(self, op: str, a: int, b: int) -> int:
        A, B = self.signals[a], self.signals[b]
        if A.frac != B.frac:
            raise NetlistError(f'{op}: operands at different LSBs')
        if op == 'max':
            if A.lo >= B.hi:
                return a
            if B.lo >= A.hi:
                return b
            return self._new(op, (a, b), max(A.lo, B.lo), max(A.hi, B.hi), A.frac)
        if A.hi <= B.lo:
            return a
        if B.hi <= A.lo:
            return b
        return self._new(op, (a, b), min(A.lo, B.lo), min(A.hi, B.hi), A.frac)

    def select(self, cond: int, a: int, b: int) -> int:
        """cond > 0 ? a : b (a and b at the same LSB)."""
        C, A, B = self.signals[cond], self.signals[a], self.signals[b]
        if A.frac != B.frac:
            raise NetlistError('select: operands at different LSBs')
        if C.lo > 0:
            return a
        if C.hi <= 0:
            return b
        return self._new('select', (cond, a, b), min(A.lo, B.lo), max(A.hi, B.hi), A.frac)

    def mul(self, a: int, b: int) -> int:
        """a * b (exact; the LSB is the sum of both)."""
        A, B = self.signals[a], self.signals[b]
        corners = [x * y for x in (A.lo, A.hi) for y in (B.lo, B.hi)]
        return self._new('mul', (a, b), min(corners), max(corners), A.frac + B.frac)

    def rom(self, a: int, values: np.ndarray, offset: int, frac: int) -> int:
        """values[a - offset]: a lookup table of constant mantissas addressed by signal a."""
        A = self.signals[a]
        vals = np.asarray(values, dtype=np.int64)
        if A.lo - offset < 0 or A.hi - offset >= len(vals):
            raise NetlistError(f'rom: addresses [{A.lo - offset}, {A.hi - offset}] outside a {len(vals)}-entry table')
        used = vals[A.lo - offset:A.hi - offset + 1]
        return self._new('rom', (a,), int(used.min()), int(used.max()), frac, values=vals, offset=int(offset))

    def mux(self, sel: int, options: list[int], offset: int = 0, role: str = 'data') -> int:
        """options[sel - offset]: a multiplexer (every value sel can take picks an option), built once per
        selector and options; `role` ('data', or 'digit' for a digit-serial layer's digit picker) is what
        the cost model prices it as."""
        S = self[sel]
        if S.lo - offset < 0 or S.hi - offset >= len(options):
            raise NetlistError(f'mux: selector bounds [{S.lo}, {S.hi}] outside {len(options)} options from {offset}')
        used = options[S.lo - offset:S.hi - offset + 1]
        if len(set(used)) == 1:
            return used[0]
        fracs = {self[o].frac for o in used}
        if len(fracs) != 1:
            raise NetlistError(f'mux: options at different LSBs {sorted(fracs)}')
        lo, hi, frac = min(self[o].lo for o in used), max(self[o].hi for o in used), fracs.pop()
        return self.once(('mux', sel, tuple(options), offset, role),
                         lambda: self._new('mux', (sel, *options), lo, hi, frac, offset=offset, role=role))

    def once(self, key: tuple, build) -> int:
        """The signal `build()` made for `key` the first time it was asked for (derived signals built once:
        multiplexers, a signal's multiples)."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]

    def divc(self, a: int, n: int) -> int:
        """a / n truncated toward zero, for a constant n >= 2 (a power of two: one adder, see `_div_pow2`)."""
        A = self.signals[a]
        if n & (n - 1) == 0:
            return self._div_pow2(a, n.bit_length() - 1)
        q = trunc_div(np.array([A.lo, A.hi], dtype=np.int64), n)
        return self._new('divc', (a,), int(q[0]), int(q[1]), A.frac, n=int(n))

    def _div_pow2(self, a: int, k: int) -> int:
        """a / 2^k truncated toward zero: (a + (a < 0 ? 2^k - 1 : 0)) >> k, the addend being a's sign bit
        repeated k times (wiring), so one adder; the result keeps a's LSB label, as divc."""
        A = self.signals[a]
        if A.lo < 0 and self.zero_lsbs_of(a) < k:  # a multiple of 2^k divides exactly: a shift
            sign = self.shl(self.shr(a, A.width - 1), 0, frac=A.frac)  # -1 or 0
            a = self.add(a, self.cast(sign, FixedType(k, k - A.frac, False, 'TRN', 'WRAP')))
        return self.shl(self.shr(a, k), 0, frac=A.frac)

    def zero_lsbs_of(self, s: int, depth: int = 16) -> int:
        """How many low mantissa bits of signal s are always 0: zero_lsbs' rule on s's cone, up to `depth`
        operations back (a lower bound: beyond that, none are assumed)."""
        memo: dict[int, int] = {}

        def zeros(t: int, left: int) -> int:
            if t not in memo:
                sig = self.signals[t]
                stop = left == 0 or sig.op in ('input', 'divc')
                memo[t] = 0 if stop else _zero_rule(sig, [zeros(x, left - 1) for x in sig.args])
            return memo[t]
        return zeros(s, depth)

    # ------------------------------------------------------------------ interpretation
    def evaluate(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the netlist on int64 input mantissas, one (batch, elements) array per input port."""
        batch = len(inputs[0]) if inputs else 1
        flat = [np.asarray(x, dtype=np.int64).reshape(batch, -1) for x in inputs]
        values: list[np.ndarray | None] = [None] * len(self.signals)
        for sig in self.signals:
            values[sig.id] = _EVAL[sig.op](sig, [values[a] for a in sig.args], flat, batch)
        return [np.stack([values[s] for s in port.signals], axis=1).reshape((batch,) + port.shape)
                for port in self.outputs]

    def stats(self) -> dict[str, int]:
        """Number of signals per op."""
        out: dict[str, int] = {}
        for sig in self.signals:
            out[sig.op] = out.get(sig.op, 0) + 1
        return out


def needed_bits(nl: Netlist) -> list[int]:
    """For each signal, how many of its low bits anything downstream depends on.

    Backwards from the output ports (the bits of their types): the low k bits of a sum, shift or
    negation depend only on the low k (shifted) bits of its operands, and a wrapping cast's on the
    bits below its dropped top; every other reader needs all bits. Bits above a signal's need may be
    computed wrongly without changing any output (a three-input adder computes only the needed ones,
    as synthesis prunes a binary adder's unread top bits itself).
    """
    need = [0] * len(nl)
    for port in nl.outputs:
        for s in port.signals:
            need[s] = max(need[s], min(nl[s].width, port.type.width))
    for sig in reversed(nl.signals):
        k = need[sig.id]
        if k == 0 or sig.is_const:
            continue
        op, p = sig.op, sig.p
        if op == 'add':
            demands = [(sig.args[0], k - p['sa']), (sig.args[1], k - p['sb'])]
        elif op in ('shl', 'shr'):
            demands = [(sig.args[0], k - p['s'] if op == 'shl' else k + p['s'])]
        elif op == 'neg':
            demands = [(sig.args[0], k)]
        elif op == 'mux':
            demands = [(sig.args[0], nl[sig.args[0]].width)] + [(o, k) for o in sig.args[1:]]
        elif op == 'cast' and p['type'].overflow == 'WRAP':
            demands = [(sig.args[0], p['frac_in'] - p['type'].frac + k)]
        else:
            demands = [(a, nl[a].width) for a in sig.args]
        for a, d in demands:
            need[a] = max(need[a], min(nl[a].width, d))
    return need


def clamp_at_zero(nl: Netlist, sig: Signal) -> int | None:
    """The variable operand x of a max(x, 0) or min(x, 0) (ReLU's form), else None: x's sign bit alone
    chooses between x and 0, so the op is one LUT level (an AND per bit), no comparison."""
    if sig.op not in ('max', 'min'):
        return None
    a, b = sig.args
    if nl[b].is_const and nl[b].lo == 0:
        return a
    if nl[a].is_const and nl[a].lo == 0:
        return b
    return None


def zero_lsbs(nl: Netlist) -> list[int]:
    """For each signal, how many of its low mantissa bits are always 0 (a lower bound).

    Forward from the operands: a constant's trailing zeros; a sum keeps the fewer of its shifted
    operands', a product adds both, a left shift adds its shift and a right shift (or a truncating,
    wrapping cast) removes it; max, min and select keep the fewer of their values'; a ROM the fewest
    of its entries'; anything else (inputs, rounding or saturating casts, division) none. Synthesis sees
    these zeros through a binary adder itself; a three-input adder's LUTs (ternary.pair_plan) read
    them as constants so that it does too.
    """
    zeros = [0] * len(nl)
    for sig in nl.signals:
        zeros[sig.id] = _zero_rule(sig, [zeros[x] for x in sig.args])
    return zeros


def _zero_rule(sig: Signal, a: list[int]) -> int:
    """zero_lsbs' rule for one signal, given its arguments' counts."""
    op, p = sig.op, sig.p
    if op == 'const':
        z = sig.width if sig.lo == 0 else (sig.lo & -sig.lo).bit_length() - 1
    elif op == 'add':
        z = min(a[0] + p['sa'], a[1] + p['sb'])
    elif op in ('neg',):
        z = a[0]
    elif op == 'shl':
        z = a[0] + p['s']
    elif op == 'shr':
        z = max(0, a[0] - p['s'])
    elif op == 'mul':
        z = a[0] + a[1]
    elif op in ('max', 'min'):
        z = min(a)
    elif op == 'select':
        z = min(a[1], a[2])
    elif op == 'mux':
        z = min(a[1:])
    elif op == 'cast' and p['type'].overflow == 'WRAP' and (p['type'].rounding == 'TRN' or
                                                              p['frac_in'] <= p['type'].frac):
        z = max(0, a[0] - (p['frac_in'] - p['type'].frac))
    elif op == 'rom':
        values = np.asarray(p['values'], dtype=np.int64)
        nonzero = values[values != 0]
        z = sig.width if nonzero.size == 0 else int(min((int(v) & -int(v)).bit_length() - 1 for v in
                                                       np.unique(nonzero)))
    else:
        z = 0
    return min(z, sig.width)


def _eval_mux(sig: Signal, a: list, flat, batch) -> np.ndarray:
    options = np.stack([np.broadcast_to(x, (batch,)) for x in a[1:]], axis=0)
    return np.take_along_axis(options, (a[0] - sig.p['offset'])[None, :], axis=0)[0]


def dead_signals(nl: Netlist, need: list[int]) -> set[int]:
    """The computed signals no output depends on (`needed_bits` 0), inputs and constants excepted."""
    return {sig.id for sig in nl.signals if need[sig.id] == 0 and sig.op not in ('input', 'const')}


def _eval_add(sig: Signal, a: list, flat, batch) -> np.ndarray:
    p = sig.p
    return p['ga'] * (a[0] << p['sa']) + p['gb'] * (a[1] << p['sb'])


_EVAL = {
    'input': lambda sig, a, flat, batch: flat[sig.p['port']][:, sig.p['element']],
    'const': lambda sig, a, flat, batch: np.full(batch, sig.p['value'], dtype=np.int64),
    'add': _eval_add,
    'neg': lambda sig, a, flat, batch: -a[0],
    'shr': lambda sig, a, flat, batch: a[0] >> sig.p['s'],
    'shl': lambda sig, a, flat, batch: a[0] << sig.p['s'],
    'cast': lambda sig, a, flat, batch: sig.p['type'].cast(a[0], sig.p['frac_in']),
    'max': lambda sig, a, flat, batch: np.maximum(a[0], a[1]),
    'min': lambda sig, a, flat, batch: np.minimum(a[0], a[1]),
    'select': lambda sig, a, flat, batch: np.where(a[0] > 0, a[1], a[2]),
    'mul': lambda sig, a, flat, batch: a[0] * a[1],
    'rom': lambda sig, a, flat, batch: sig.p['values'][a[0] - sig.p['offset']],
    'divc': lambda sig, a, flat, batch: trunc_div(a[0], sig.p['n']),
    'mux': _eval_mux,
}
