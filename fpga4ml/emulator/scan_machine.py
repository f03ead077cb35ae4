"""The register machine: a recurrent layer's whole scan recorded as one program (scan_kernels.py runs it).

`ScanMachine` is an interpreter of the primitives that records instructions over registers instead
of computing: it runs a recipe (a scan, unrolled over its time steps) on `MSym`s, asking the node's
interval interpreter for every value's exact bounds as the numpy interpreter does, so the program
computes the numpy interpreter's bits. `compile` keeps the instructions the outputs depend on,
fuses a product-accumulate with the add and cast that consume it (`_fuse_matmul_add`), allocates
registers by liveness and encodes a `MachineProgram`, int32 when the bounds prove every value and
intermediate fits (`INT32_BITS`), else int64. The machine knows no layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import scan_kernels as K
from .scan_kernels import (OP_ADD, OP_CAST, OP_COPY, OP_FILL, OP_GATHER, OP_MATMUL, OP_MAX, OP_MIN, OP_MUL,
                           OP_NEG, OP_SUB, OP_TABLE, OVF_NONE, ROUND_CODES, SAT_ZERO, SATURATE, WRAP_SIGNED,
                           WRAP_UNSIGNED)


class Unfusable(Exception):
    """A value or primitive the register machine does not run (the caller keeps its step-by-step path)."""


#: machine values stay inside +-2^MACHINE_BITS (int64 with a margin, as the numpy interpreter's)
MACHINE_BITS = 62
#: an int32 program's values and intermediates lie inside +-2^INT32_BITS (scan_kernels.INT32_BITS)
INT32_BITS = K.INT32_BITS
#: largest shift amount (and signed wrap width) an int32 program's 32-bit lanes take
INT32_SHIFT = 31


@dataclass
class MSym:
    """A value of a machine program: element `off` onwards of register `reg`, with its exact bounds."""

    reg: int
    off: int
    iv: object  # intervals.Interval

    @property
    def size(self) -> int:
        """Elements per sample."""
        return int(self.iv.lo.size)


@dataclass
class Instruction:
    """One recorded instruction: register operands as (reg, element offset, stride), params ints or arrays."""

    op: int
    out: tuple[int, int]
    n: int
    a: tuple[int, int, int] | None = None
    b: tuple[int, int, int] | None = None
    shifts: tuple[int, int] = (0, 0)
    params: tuple = ()

    def regs(self) -> list[int]:
        """The registers it reads (a matmul's addend included)."""
        regs = [x[0] for x in (self.a, self.b) if x is not None]
        if self.op == OP_MATMUL and self.params[-1] is not None:
            regs.append(self.params[-1][0])
        return regs


def _overflow_params(t) -> tuple[int, int, int, int]:
    """(overflow code, lo, hi, width) of FixedType t (scan_kernels' overflow modes)."""
    if t.overflow == 'WRAP':
        if not t.signed and t.width > 63:
            raise Unfusable(f'unsigned wrap to {t.width} bits')
        return (WRAP_SIGNED, 0, 0, t.width) if t.signed else (WRAP_UNSIGNED, 0, (1 << t.width) - 1, t.width)
    return SAT_ZERO if t.overflow == 'SAT_ZERO' else SATURATE, t._sat_min, t.max_mantissa, t.width


class ScanMachine:
    """An interpreter of the primitives that records a register-machine program (module docstring).

    One instruction (or none: a slice, a reshape, a shift, a cast that cannot change a value) per
    primitive; a cast and the table read of its result are one instruction. A primitive it does not
    run, or a value beyond +-2^62, raises `Unfusable`. `max_bits` is the widest value or
    intermediate recorded, `narrow` whether every shift and wrap fits 32-bit lanes.
    """

    quantized = True

    def __init__(self, node, bounds):
        self.node, self.b = node, bounds
        self.type, self.weight, self.tables = bounds.type, bounds.weight, bounds.tables
        self.sizes: list[int] = []
        self.consts: dict[int, np.ndarray] = {}
        self.inputs: list[MSym] = []
        self.code: list[Instruction] = []
        self.max_bits = 0
        self.narrow = True

    # ------------------------------------------------------------------ values
    def _bits(self, bits: int) -> None:
        """Record a value or intermediate of `bits` bits; unfusable beyond MACHINE_BITS."""
        if bits > MACHINE_BITS:
            raise Unfusable(f'layer {self.node.name!r}: a value needs {bits} bits')
        self.max_bits = max(self.max_bits, bits)

    def _shifts(self, *amounts: int) -> None:
        """Record shift amounts: an int32 program takes 0..INT32_SHIFT."""
        if any(not 0 <= abs(s) <= INT32_SHIFT for s in amounts):
            self.narrow = False

    def _new(self, iv) -> MSym:
        self._bits(iv.max_bits())
        self.sizes.append(max(int(iv.lo.size), 1))
        return MSym(len(self.sizes) - 1, 0, iv)

    def _emit(self, op: int, out: MSym, a=None, b=None, shifts=(0, 0), params=()) -> MSym:
        self._shifts(*shifts)
        self.code.append(Instruction(op, (out.reg, out.off), out.size, a, b, shifts, tuple(params)))
        return out

    def input(self, iv) -> MSym:
        """A value loaded from the batch (the machine's inputs, in this order)."""
        x = self._new(iv)
        self.inputs.append(x)
        return x

    def _operand(self, x: MSym, shape: tuple) -> tuple[int, int, int]:
        """x as an operand of an element-wise op with output `shape` (broadcast: stride 0, or a gather)."""
        if tuple(x.iv.lo.shape) == tuple(shape):
            return x.reg, x.off, 1
        if x.size == 1:
            return x.reg, x.off, 0
        index = np.broadcast_to(np.arange(x.size).reshape(x.iv.lo.shape), shape)
        return self.gather(x, np.ascontiguousarray(index)).reg, 0, 1

    # ------------------------------------------------------------------ constants and resolution
    def param(self, values, auto, store=None):
        return self.b.param(values, auto, store)

    def at_lsb(self, value: float, like: MSym, exact: bool = False):
        return self.b.at_lsb(value, like.iv, exact)

    def shape(self, x: MSym) -> tuple[int, ...]:
        return x.iv.lo.shape

    def _t(self, t):
        from ..fixed import FixedType
        return t if isinstance(t, FixedType) else self.b.type(t)

    # ------------------------------------------------------------------ primitives
    def const(self, c) -> MSym:
        iv = self.b.const(c)
        x = self._new(iv)
        self.consts[x.reg] = np.asarray(c.values).astype(np.int64).reshape(-1)
        return x

    def _cast_params(self, x: MSym, t) -> tuple:
        """(bounds of cast(x, t), its CAST_PARAMS or None where it cannot change a value)."""
        from ..intervals import round_shift
        iv, s = self.b.cast(x.iv, t), x.iv.frac - t.frac
        if s > MACHINE_BITS:
            raise Unfusable(f'layer {self.node.name!r}: a cast by {s} bits')
        self._bits((x.iv.abs_max << max(-s, 0)).bit_length())
        lo, hi = (round_shift(int(v), s, t.rounding) for v in (x.iv.min, x.iv.max))
        omode, olo, ohi, width = (OVF_NONE, 0, 0, 0) if t._sat_min <= lo and hi <= t.max_mantissa \
            else self._overflow(t)
        if s == 0 and omode == OVF_NONE:
            return iv, None
        self._shifts(s)
        return iv, (s, ROUND_CODES[t.rounding] if s > 0 else 0, omode, olo, ohi, width)

    def _overflow(self, t) -> tuple[int, int, int, int]:
        """`_overflow_params(t)`, recording whether its wrap fits 32-bit lanes (a width of at most INT32_SHIFT)."""
        params = _overflow_params(t)
        if params[0] in (WRAP_SIGNED, WRAP_UNSIGNED):
            self._shifts(params[3])
        return params

    def cast(self, x: MSym, t, auto=None, opaque: bool = False) -> MSym:
        iv, params = self._cast_params(x, self._t(t))
        if params is None:
            return MSym(x.reg, x.off, iv)
        return self._emit(OP_CAST, self._new(iv), (x.reg, x.off, 1), params=params)

    def round(self, x: MSym, t) -> MSym:
        t = self._t(t)
        s = x.iv.frac - t.frac
        self._bits((x.iv.abs_max << max(-s, 0)).bit_length())
        self._shifts(s)
        params = (s, ROUND_CODES[t.rounding] if s > 0 else 0, OVF_NONE, 0, 0, 0)
        return self._emit(OP_CAST, self._new(self.b.round(x.iv, t)), (x.reg, x.off, 1), params=params)

    def _binary(self, op: int, a: MSym, b: MSym, iv, align: bool = True) -> MSym:
        out = self._new(iv)
        sa, sb = (iv.frac - a.iv.frac, iv.frac - b.iv.frac) if align else (0, 0)
        for v, s in ((a, sa), (b, sb)):
            self._bits((v.iv.abs_max << s).bit_length())
        shape = iv.lo.shape
        return self._emit(op, out, self._operand(a, shape), self._operand(b, shape), (sa, sb))

    def add(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_ADD, a, b, self.b.add(a.iv, b.iv))

    def sub(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_SUB, a, b, self.b.sub(a.iv, b.iv))

    def mul(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MUL, a, b, self.b.mul(a.iv, b.iv), align=False)

    def maximum(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MAX, a, b, self.b.maximum(a.iv, b.iv))

    def minimum(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MIN, a, b, self.b.minimum(a.iv, b.iv))

    def neg(self, a: MSym) -> MSym:
        return self._binary(OP_NEG, a, a, self.b.neg(a.iv), align=False)

    def shift(self, x: MSym, k: int) -> MSym:
        return MSym(x.reg, x.off, self.b.shift(x.iv, k))

    def const_matmul(self, x: MSym, w, bias, acc: str) -> MSym:
        from ..semantics.accumulate import accumulate_plan
        iv = self.b.const_matmul(x.iv, w, bias, acc)
        acc_t = self.b.type(acc)
        plan = accumulate_plan(self.node, acc_t, x.iv.frac, x.iv.abs_max, w.values, w.frac, bias.values, bias.frac)
        n_in = w.values.shape[0]
        weights, shift = plan.w, plan.shift
        if shift < 0:  # products enter the accumulator exactly, at its LSB
            weights, shift = weights << -shift, 0
        if shift > MACHINE_BITS:
            raise Unfusable(f'layer {self.node.name!r}: products shifted by {shift} bits')
        prod_max = int(np.max(np.abs(weights), initial=0)) * x.iv.abs_max
        simple = (plan.products_simple and (acc_t.overflow == 'WRAP' or plan.sum_fits)
                  and plan.abs_bound.bit_length() <= MACHINE_BITS)
        self._bits(prod_max.bit_length())
        self._shifts(shift)
        if simple:
            self._bits(plan.abs_bound.bit_length())
            mode = 1 if prod_max.bit_length() <= 31 and x.iv.abs_max.bit_length() <= 31 else 0
        else:
            self._bits(acc_t.width + (n_in + 1).bit_length())
            mode = 2
        omode, lo, hi, width = self._overflow(acc_t)
        rows = x.size // n_in
        weights_t = np.ascontiguousarray(weights.T).reshape(-1)  # column j's n_in weights together
        params = (rows, n_in, weights_t, np.asarray(plan.bias_acc, np.int64).reshape(-1), shift, mode,
                  int(plan.saturating), int(not plan.sum_fits), ROUND_CODES[acc_t.rounding], omode, lo, hi, width, None)
        return self._emit(OP_MATMUL, self._new(iv), (x.reg, x.off, 1), params=params)

    def lookup(self, x: MSym, key: str, real=None) -> MSym:
        table = self.node.attrs['tables'][key]
        index_iv, cast = self._cast_params(x, table.index)
        values = np.asarray(table.values, dtype=np.int64)
        params = (values, table.index.min_mantissa, int(bool(getattr(table, 'negated', False))), len(table) - 1)
        params += cast or (0, 0, OVF_NONE, 0, 0, 0)
        return self._emit(OP_TABLE, self._new(self.b.lookup(x.iv, key)), (x.reg, x.off, 1), params=params)

    def gather(self, x: MSym, index, fill=0) -> MSym:
        from ..semantics.primitives import LOWEST
        iv = self.b.gather(x.iv, index, fill)
        flat = np.asarray(index, dtype=np.int64).reshape(-1)
        if flat.size and flat[0] >= 0 and np.array_equal(flat, flat[0] + np.arange(flat.size)):
            return MSym(x.reg, x.off + int(flat[0]), iv)  # a run of elements: a view
        self._bits(63 if fill is LOWEST else abs(int(fill)).bit_length())
        fill = np.iinfo(np.int64).min if fill is LOWEST else int(fill)
        positions = np.where(flat >= 0, flat + x.off, -1)
        return self._emit(OP_GATHER, self._new(iv), (x.reg, 0, 1), params=(positions, fill))

    def concat(self, xs: list, axis: int) -> MSym:
        iv = self.b.concat([x.iv for x in xs], axis)
        out = self._new(iv)
        starts = np.cumsum([0] + [x.size for x in xs])
        ids = np.concatenate([np.arange(x.size).reshape(x.iv.lo.shape) + s for x, s in zip(xs, starts)], axis=axis)
        where = np.argsort(ids.reshape(-1), kind='stable')  # where[g]: output position of element g
        for x, s in zip(xs, starts):
            dst = where[s:s + x.size]
            if np.array_equal(dst, dst[0] + np.arange(x.size)):
                target, dst = MSym(out.reg, int(dst[0]), x.iv), -1
            else:
                target = MSym(out.reg, 0, x.iv)
            self._emit(OP_COPY, target, (x.reg, x.off, 1), shifts=(iv.frac - x.iv.frac, 0), params=(dst,))
        return out

    def reshape(self, x: MSym, shape) -> MSym:
        return MSym(x.reg, x.off, self.b.reshape(x.iv, shape))

    def assume(self, x: MSym, lo=None, hi=None) -> MSym:
        return MSym(x.reg, x.off, self.b.assume(x.iv, lo, hi))

    def label(self, x: MSym, name: str) -> MSym:
        return x

    def piecewise(self, x, t, above, below):
        raise Unfusable('piecewise')

    def reduce(self, x, op, axis, keepdims=False, acc=None, auto=None):
        raise Unfusable('reduce')

    def div_trunc(self, x, n):
        raise Unfusable('div_trunc')

    # ------------------------------------------------------------------ compilation
    def compile(self, outputs: list[MSym]) -> 'MachineProgram':
        """The program computing `outputs` (concatenated per sample) from the inputs, registers allocated."""
        self.sizes.append(max(sum(o.size for o in outputs), 1))
        final, at = len(self.sizes) - 1, 0
        fixed = {x.reg for x in self.inputs} | set(self.consts)
        placed: dict[int, int] = {}  # a whole register computed straight into its place in the output
        for o in outputs:
            if o.off == 0 and o.size == self.sizes[o.reg] and o.reg not in fixed and o.reg not in placed:
                placed[o.reg] = at
            else:
                self.code.append(Instruction(OP_COPY, (final, at), o.size, (o.reg, o.off, 1), params=(-1,)))
            at += o.size
        code = _live_code([_moved(ins, placed, final) for ins in self.code], final)
        code = _fuse_matmul_add(code, self.sizes, final)
        rows, n_rows = _allocate(self.sizes, code, [x.reg for x in self.inputs] + list(self.consts) + [final])
        return MachineProgram.build(self, code, rows, n_rows, final)


def _moved(ins: Instruction, placed: dict[int, int], final: int) -> Instruction:
    """ins with every register of `placed` replaced by its place (an offset) in register `final`."""
    def where(ref):
        if ref is None or ref[0] not in placed:
            return ref
        return (final, placed[ref[0]] + ref[1]) + tuple(ref[2:])
    params = ins.params
    if ins.op == OP_MATMUL:
        params = params[:-1] + (where(params[-1]),)
    return Instruction(ins.op, where(ins.out), ins.n, where(ins.a), where(ins.b), ins.shifts, params)


def _live_code(code: list[Instruction], final: int) -> list[Instruction]:
    """The instructions the final register depends on (a dead value is not computed)."""
    needed, live = {final}, []
    for ins in reversed(code):
        if ins.out[0] in needed:
            live.append(ins)
            needed.update(ins.regs())
    return live[::-1]


def _fuse_matmul_add(code: list[Instruction], sizes: list[int], final: int) -> list[Instruction]:
    """A one-row product-accumulate `r = W h + b` read only by the next instruction `s = a + r` (and that
    only by a cast of s into the accumulator type, no rounding) becomes one instruction
    `s = cast(a + b + sum W h)`: the sums start from a, no pass over r and s.

    Exact: the product-accumulate casts nothing at its end (its sum fits the accumulator, so it
    never saturates either), so a + r is a + b + sum, whose bounds the add recorded; the partial sums
    are only added to, which is exact modulo the register width.
    """
    reads: dict[int, int] = {}
    for ins in code:
        for r in ins.regs():
            reads[r] = reads.get(r, 0) + 1
    out, k = [], 0
    while k < len(code):
        ins = code[k]
        fused = _matmul_add(ins, code[k + 1] if k + 1 < len(code) else None, reads, sizes, final)
        if fused is None:
            out.append(ins)
            k += 1
            continue
        k += 2
        nxt = code[k] if k < len(code) else None
        if (nxt is not None and nxt.op == OP_CAST and nxt.a == (fused.out[0], 0, 1) and nxt.params[0] == 0
                and reads.get(fused.out[0]) == 1 and fused.out[0] != final and nxt.n == fused.n):
            omode, lo, hi, width = nxt.params[2:6]
            fused = replace(fused, out=nxt.out, params=fused.params[:7] + (int(omode != OVF_NONE),)
                            + fused.params[8:9] + (omode, lo, hi, width) + fused.params[13:])
            k += 1
        out.append(fused)
    return out


def _matmul_add(mm: Instruction, add: Instruction | None, reads: dict, sizes: list, final: int) -> Instruction | None:
    """The fused `a + matmul` of `_fuse_matmul_add`, or None where the pair does not qualify."""
    if (add is None or mm.op != OP_MATMUL or add.op != OP_ADD or mm.params[0] != 1 or mm.params[5] == 2
            or mm.params[7] or mm.params[-1] is not None or mm.out[0] == final or mm.out[1] != 0
            or sizes[mm.out[0]] != mm.n or reads.get(mm.out[0]) != 1 or add.n != mm.n or add.shifts != (0, 0)):
        return None
    here = (mm.out[0], 0, 1)
    other = add.b if add.a == here else add.a if add.b == here else None
    if other is None or other[2] != 1:
        return None
    return replace(mm, out=add.out, params=mm.params[:-1] + (other,))


def _allocate(sizes: list[int], code: list[Instruction], pinned: list[int]) -> tuple[dict[int, int], int]:
    """(first row of every register, rows in all): the pinned registers (inputs, constants, the output)
    first, in order, for the whole run; every other one from its first write to its last use, reusing
    the rows of freed registers of the same length."""
    end = {}
    for k, ins in enumerate(code):
        for r in ins.regs() + [ins.out[0]]:
            end[r] = k
    rows, top, kept = {}, 0, set(pinned)
    for r in pinned:
        rows[r], top = top, top + sizes[r]
    free: dict[int, list[int]] = {}
    for k, ins in enumerate(code):
        r = ins.out[0]
        if r not in rows:
            bucket = free.get(sizes[r])
            if bucket:
                rows[r] = bucket.pop()
            else:
                rows[r], top = top, top + sizes[r]
        for used in set(ins.regs() + [r]):
            if end[used] == k and used not in kept:
                free.setdefault(sizes[used], []).append(rows[used])
    return rows, top


def _int32_ok(machine: ScanMachine, pool: np.ndarray) -> bool:
    """Whether the program may run in int32: every value and intermediate within +-2^INT32_BITS, every
    shift and wrap within 32-bit lanes, every constant (weights, tables, biases) an int32."""
    info = np.iinfo(np.int32)
    return (machine.narrow and machine.max_bits <= INT32_BITS
            and (pool.size == 0 or (int(pool.min()) >= info.min and int(pool.max()) <= info.max)))


@dataclass(frozen=True)
class MachineProgram:
    """A compiled machine program: instruction rows, constant pool, register rows, input and output layout."""

    prologue: np.ndarray   # (k, len(CODE_FIELDS)) int64: the constants, run once per call
    code: np.ndarray       # (m, len(CODE_FIELDS)) int64: run once per block of samples
    pool: np.ndarray       # the program's dtype: weights, biases, tables, gather indices, constants
    n_rows: int
    in_rows: tuple[int, int]   # first rows of input 0 and of the other inputs (concatenated)
    in_sizes: tuple[int, ...]
    out_size: int
    out_row: int

    @property
    def dtype(self) -> np.dtype:
        """The registers' dtype: int32 where the bounds prove it exact, else int64."""
        return self.pool.dtype

    @staticmethod
    def build(machine: ScanMachine, code: list[Instruction], rows: dict, n_rows: int, final: int) -> 'MachineProgram':
        """Encode the instructions with register rows and pool offsets; choose the dtype."""
        pool: list[np.ndarray] = []
        at = [0]

        def put(values) -> int:
            values = np.asarray(values, np.int64).reshape(-1)
            pool.append(values)
            at[0] += values.size
            return at[0] - values.size

        def param(p) -> int:
            if isinstance(p, np.ndarray):
                return put(p)
            if p is None:
                return -1
            if isinstance(p, tuple):  # a register operand (a matmul's addend)
                return rows[p[0]] + p[1]
            return int(p)

        def row(ins: Instruction) -> list[int]:
            fields = [ins.op, rows[ins.out[0]] + ins.out[1], ins.n]
            for operand in (ins.a, ins.b):
                fields += [rows[operand[0]] + operand[1], operand[2]] if operand is not None else [0, 0]
            fields += list(ins.shifts) + [param(p) for p in ins.params]
            return fields + [0] * (len(K.CODE_FIELDS) - len(fields))
        prologue = [row(Instruction(OP_FILL, (r, 0), v.size, params=(v,))) for r, v in machine.consts.items() if v.size]
        body = [row(ins) for ins in code]
        pool_all = np.concatenate(pool + [np.zeros(1, np.int64)])
        dtype = np.int32 if _int32_ok(machine, pool_all) else np.int64
        inputs = [x.reg for x in machine.inputs]
        in_rows = (rows[inputs[0]], rows[inputs[1]] if len(inputs) > 1 else 0)
        return MachineProgram(_code_array(prologue), _clamped(_code_array(body), dtype), pool_all.astype(dtype),
                              n_rows, in_rows, tuple(machine.sizes[r] for r in inputs), machine.sizes[final],
                              rows[final])

    def __call__(self, arrays: list[np.ndarray]) -> np.ndarray:
        """(batch, outputs concatenated) int64 from the input mantissa arrays (batch or 1 leading)."""
        n = max(len(a) for a in arrays)
        flat = [np.ascontiguousarray(a, dtype=np.int64).reshape(len(a), -1) for a in arrays]
        x0 = flat[0]
        if len(flat) > 1:
            x1 = np.concatenate([np.broadcast_to(a, (n, a.shape[1])) for a in flat[1:]], axis=1)
        else:
            x1 = np.zeros((1, 0), np.int64)
        out = np.empty((n, self.out_size), np.int64)
        registers = np.zeros(self.n_rows * K.LANES, self.dtype)
        return K.machine_run(x0, x1, self.prologue, self.code, self.pool, np.int64(self.in_rows[0]),
                             np.int64(self.in_rows[1]), np.int64(self.out_row), registers, out)


def _code_array(rows: list[list[int]]) -> np.ndarray:
    """Instruction rows as a (k, len(CODE_FIELDS)) int64 array."""
    return np.asarray(rows, np.int64).reshape(-1, len(K.CODE_FIELDS))


def _clamped(code: np.ndarray, dtype) -> np.ndarray:
    """code with the saturation bounds of casts, tables and matmuls clamped into dtype's range (exact: an
    int32 program's values lie inside +-2^INT32_BITS, so a bound beyond int32 never binds)."""
    if dtype != np.int32:
        return code
    info, code = np.iinfo(np.int32), code.copy()
    p = K.CODE_FIELDS.index('p0')
    for op, lo_hi in ((OP_CAST, (3, 4)), (OP_TABLE, (7, 8)), (OP_MATMUL, (10, 11))):
        sel = code[:, 0] == op
        for c in lo_hi:
            code[sel, p + c] = np.clip(code[sel, p + c], info.min, info.max)
    return code
