"""The numpy interpreter: a recipe compiled once per node into a short program over the batch.

Running the recipe on `Sym`s (a register slot plus the exact bounds of its values) records one
step per primitive; the bounds choose each step's fast path at build time (a cast that cannot
overflow is a shift, a matrix product whose sums fit runs in the numba kernel). The kernel then
runs the steps on int64 mantissa arrays with a leading batch axis. Steps whose inputs are all
constants run once at build time. Values that need more than 62 bits are exact Python integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import geometry
from ..fixed import FixedType
from ..intervals import Interval, trunc_div
from ..ir import GraphError, Node
from ..emulator import fast
from . import compose
from .accumulate import accumulate_plan, cast, cast_plan, cast_wide, matvec, numba_args
from .bounds import Bounds
from .primitives import INT_EXACT_BITS, LOWEST, Const, batch_axis


@dataclass
class Sym:
    """A value of the program: its register slot and exact bounds; `lazy` is a gather not yet run,
    `affine` a per-channel multiply-add not yet run (an `Affine`, fused into the cast that reads it)."""

    slot: int
    iv: Interval
    lazy: tuple | None = None
    affine: 'Affine | None' = None


@dataclass(frozen=True)
class Affine:
    """The exact int64 values ``src * scale + bias`` per channel (the last axis), |each term| < 2^62."""

    src: int              # slot of the int64 input values
    scale: np.ndarray     # (C,) int64
    bias: np.ndarray      # (C,) int64

    def numpy(self, m: np.ndarray, stats) -> np.ndarray:
        """The values with numpy (no cast)."""
        return m.astype(np.int64, copy=False) * self.scale + self.bias


def _wide(iv: Interval) -> bool:
    return iv.max_bits() > INT_EXACT_BITS


def _gather_fn(index: np.ndarray, fill, dtype=None) -> Callable:
    """The step gathering flat[:, index] from a batch (converted to `dtype` first); -1 reads `fill`."""
    fill = np.iinfo(np.int64).min if fill is LOWEST else fill
    index = np.asarray(index)
    if index.ndim == 1 and index.size and index[0] >= 0 and np.array_equal(index, index[0] + np.arange(index.size)):
        start, stop = int(index[0]), int(index[0]) + index.size  # a run of columns (an RNN's gate block)

        def columns(flat, stats):  # a copied slice: faster than np.take, contiguous for what follows
            flat = flat.reshape(len(flat), -1)[:, start:stop]
            return np.array(flat, dtype=flat.dtype if dtype is None else dtype, order='C')
        return columns

    def gather(flat, stats):
        flat = flat.reshape(len(flat), -1)
        if dtype is not None:
            flat = flat.astype(dtype, copy=False)
        return geometry.take(flat, index, fill)
    return gather


class NumpyProgram:
    """Records a recipe as steps ``regs[out] = fn(*regs[args], stats)`` and builds the node's kernel."""

    #: casts round and saturate (the float interpreter's are the identity)
    quantized = True
    #: run a scan as one fused numba program (`fused_scan`) where it can; False: step by step
    fuse_scans = True

    def __init__(self, node: Node, in_types: list[FixedType], in_ivs: list[Interval]):
        self.b = Bounds(node, in_types)
        self.node, self.in_types = node, in_types
        self.regs: list = [None] * len(in_ivs)
        self.is_const: list[bool] = [False] * len(in_ivs)
        self.steps: list[tuple[int, Callable, tuple[int, ...]]] = []
        self.inputs = [Sym(k, iv) for k, iv in enumerate(in_ivs)]
        #: (id of a lazy Sym, dtype) -> (the Sym, the slot of its gathered values)
        self._gathered: dict[tuple, tuple] = {}
        #: slot of a const_matmul's output -> (input slot, input bounds, w, bias, acc): fused_scan
        #: computes the input products of a scan inside its program when they were the last step
        self._products: dict[int, tuple] = {}
        self.type, self.weight, self.tables = self.b.type, self.b.weight, self.b.tables

    # ------------------------------------------------------------------ program building
    def _slot(self, value=None, const: bool = False) -> int:
        self.regs.append(value)
        self.is_const.append(const)
        return len(self.regs) - 1

    def _arg(self, x: Sym, dtype=None) -> int:
        """The slot holding x's values (runs a pending gather or multiply-add, a gather converting its
        source to `dtype` first)."""
        if x.affine is not None:
            return self._emit(x.affine.numpy, [x.affine.src]).slot
        if x.lazy is None:
            return x.slot
        key = (id(x), dtype)
        if key not in self._gathered:  # run once, however many steps read it (a GRU reads z twice)
            src, index, fill, _ = x.lazy
            self._gathered[key] = (x, self._emit(_gather_fn(index, fill, dtype), [src]).slot)  # x: keeps id(x) unique
        return self._gathered[key][1]

    def _emit(self, fn: Callable, args: list, iv: Interval | None = None) -> Sym:
        slots = [a if isinstance(a, int) else self._arg(a) for a in args]
        if all(self.is_const[s] for s in slots):  # constant folding
            return Sym(self._slot(fn(*[self.regs[s] for s in slots], None), True), iv)
        out = self._slot()
        self.steps.append((out, fn, tuple(slots)))
        return Sym(out, iv)

    def kernel(self, result: Sym):
        """The node's kernel ``kernel(inputs, stats) -> int64 mantissas`` running the recorded steps."""
        out = self._arg(result)
        template, steps, n_in = list(self.regs), list(self.steps), len(self.inputs)

        def run(inputs, stats):
            regs = list(template)
            regs[:n_in] = inputs
            for slot, fn, args in steps:
                regs[slot] = fn(*[regs[a] for a in args], stats)
            return regs[out]
        return run

    # ------------------------------------------------------------------ scan dispatch
    def fused_scan(self, step: Callable, xs, init, state_types, reverse: bool = False, ys_order: str = 'time'):
        """compose.scan as one step running fast.ScanMachine's fused program (every time step in one numba
        call), or None (the caller unrolls the scan step by step) where the machine cannot run it.

        The machine records the same recipe step on the same bounds; tracing (overflow counts) runs
        the step-by-step program, built on first use.
        """
        if not (self.fuse_scans and fast.available()):
            return None
        seqs = xs if isinstance(xs, tuple) else (xs,)
        values = list(seqs) + list(init)
        fixed = [self._const_values(v) for v in values]
        if fixed[0] is not None:
            return None
        first = values[0]
        product = self._products.get(first.slot) if first.lazy is None and first.affine is None else None
        if product is not None and not (self.steps and self.steps[-1][0] == first.slot):
            product = None  # only the products computed just before the scan (read by nothing else yet)
        machine = fast.ScanMachine(self.node, self.b)
        try:
            ms = []
            if product is not None:  # the scan's input products inside the program, not a (batch, T, G*n) array
                ms.append(machine.const_matmul(machine.input(product[1]), *product[2:]))
            ms += [machine.input(v.iv) if c is None else machine.const(Const(c, v.iv.frac))
                   for v, c in zip(values[len(ms):], fixed[len(ms):])]
            mxs = tuple(ms[:len(seqs)]) if isinstance(xs, tuple) else ms[0]
            ys, state = compose.scan(machine, step, mxs, ms[len(seqs):], state_types, reverse, ys_order)
            outs = ([] if ys is None else [ys]) + list(state)
            program = machine.compile(outs)
        except fast.Unfusable:
            return None
        args = [v for v, c in zip(values, fixed) if c is None]
        if product is not None:
            self.steps.pop()  # the products step: the program computes them
            args[0] = Sym(product[0], product[1])
        reference = self._scan_reference(step, args, [c is None for c in fixed], values, isinstance(xs, tuple),
                                         (state_types, reverse, ys_order), product)
        shapes = [tuple(o.iv.lo.shape) for o in outs]
        ends = np.cumsum([0] + [int(np.prod(sh, dtype=np.int64)) for sh in shapes])

        def run(*ms_st):
            *arrays, st = ms_st
            if st is not None:
                return reference(arrays, st)
            flat = program(arrays)
            return tuple(flat[:, a:b].reshape((len(flat),) + sh) for a, b, sh in zip(ends[:-1], ends[1:], shapes))
        packed = self._emit(run, args)
        syms = [self._emit(lambda t, st, k=k: t[k], [packed], o.iv) for k, o in enumerate(outs)]
        return (None if ys is None else syms[0]), tuple(syms[len(syms) - len(state):])

    def _const_values(self, x: Sym) -> np.ndarray | None:
        """The int64 values of a constant Sym (one sample), or None."""
        if x.lazy is not None or x.affine is not None or not self.is_const[x.slot]:
            return None
        v = self.regs[x.slot]
        return v[0] if isinstance(v, np.ndarray) and v.dtype == np.int64 else None

    def _scan_reference(self, step, args: list, is_input: list, values: list, tuple_xs: bool, how: tuple,
                        product: tuple | None = None):
        """The step-by-step scan as a function ``(arrays, stats) -> outputs``, built when first called
        (with `product`, its first input is the input of the products the scan reads, computed first)."""
        built = []
        state_types, reverse, ys_order = how
        n_seqs = len(values) - len(state_types)

        def build():
            child = NumpyProgram(self.node, self.in_types, [a.iv for a in args])
            child.fuse_scans = False
            inputs = iter(child.inputs)
            vals = [next(inputs) if is_in else child.const(Const(self._const_values(v), v.iv.frac))
                    for v, is_in in zip(values, is_input)]
            if product is not None:
                vals[0] = child.const_matmul(vals[0], *product[2:])
            xs = tuple(vals[:n_seqs]) if tuple_xs else vals[0]
            ys, state = compose.scan(child, step, xs, vals[n_seqs:], state_types, reverse, ys_order)
            outs = ([] if ys is None else [ys]) + list(state)
            return child.kernel(child._emit(lambda *v: v[:-1], outs))

        def reference(arrays, stats):
            if not built:
                built.append(build())
            return built[0](list(arrays), stats)
        return reference

    # ------------------------------------------------------------------ constants and resolution
    def param(self, values, auto, store: str | None = None) -> Const:
        return self.b.param(values, auto, store)

    def at_lsb(self, value: float, like: Sym, exact: bool = False) -> Const:
        return self.b.at_lsb(value, like.iv, exact)

    def shape(self, x: Sym) -> tuple[int, ...]:
        return x.iv.lo.shape

    def _t(self, t) -> FixedType:
        return t if isinstance(t, FixedType) else self.b.type(t)

    # ------------------------------------------------------------------ primitives
    def const(self, c: Const) -> Sym:
        values = np.asarray(c.values)
        iv = self.b.const(c)
        m = values.astype(object) if _wide(iv) else values.astype(np.int64)
        return Sym(self._slot(m[None], True), iv)

    def cast(self, x: Sym, t, auto=None, opaque: bool = False) -> Sym:
        t = self._t(t)
        iv, frac = self.b.cast(x.iv, t), x.iv.frac
        if _wide(x.iv):
            return self._emit(lambda m, st: cast_wide(t, m, frac, st), [x], iv)
        kernel = fast.cast_plan(t, frac) if x.affine is not None else None
        if kernel is not None:
            return self._emit(self._affine_cast(x.affine, kernel, t, frac), [x.affine.src], iv)
        plan = cast_plan(t, frac, (x.iv.min, x.iv.max))
        return self._emit(plan, [x], iv)

    @staticmethod
    def _affine_cast(affine: Affine, kernel, t: FixedType, frac: int):
        """cast(src * scale + bias) in one numba pass (tracing runs the numpy steps, counting overflows)."""
        def fused(m, st):
            if st is None and m.dtype == np.int64:
                return fast.affine_cast(m, affine.scale, affine.bias, kernel)
            return cast(t, affine.numpy(m, st), frac, st)
        return fused

    def _channel_const(self, c: Sym, x: Sym) -> np.ndarray | None:
        """A constant Sym's int64 values as one per channel of x (its last axis), or None if it is not one."""
        if c.lazy is not None or c.affine is not None or not self.is_const[c.slot] or not x.iv.lo.shape:
            return None
        v, n_ch = self.regs[c.slot], x.iv.lo.shape[-1]
        if not isinstance(v, np.ndarray) or v.dtype != np.int64:
            return None
        if v.size == 1:
            return np.full(n_ch, v.reshape(-1)[0], np.int64)
        return v.reshape(-1) if v.shape == (1, n_ch) else None

    def round(self, x: Sym, t) -> Sym:
        t = self._t(t)
        iv, s = self.b.round(x.iv, t), x.iv.frac - t.frac
        if s <= 0:
            return self._emit(lambda m, st: m << -s if s else m, [x], iv)
        rounder = FixedType(64, 64 - t.frac, True, t.rounding, 'WRAP')
        return self._emit(lambda m, st: rounder.cast(m, x.iv.frac), [x], iv)

    def _binary(self, op: Callable, a: Sym, b: Sym, iv: Interval, align: bool = True) -> Sym:
        sa, sb = (iv.frac - a.iv.frac, iv.frac - b.iv.frac) if align else (0, 0)
        wide = _wide(iv) or _wide(a.iv) or _wide(b.iv)

        def fn(x, y, st):
            if wide:
                x, y = x.astype(object), y.astype(object)
            return op(x << sa if sa else x, y << sb if sb else y)
        return self._emit(fn, [a, b], iv)

    def add(self, a: Sym, b: Sym) -> Sym:
        iv = self.b.add(a.iv, b.iv)
        if b.affine is not None:
            a, b = b, a
        bias = self._channel_const(b, a) if a.affine is not None and not a.affine.bias.any() else None
        if bias is not None and not _wide(iv):
            sa, sb = iv.frac - a.iv.frac, iv.frac - b.iv.frac
            fits = (a.iv.abs_max << sa).bit_length() <= INT_EXACT_BITS and (b.iv.abs_max << sb).bit_length() <= INT_EXACT_BITS
            if fits:  # (src * scale) << sa + bias << sb == src * (scale << sa) + (bias << sb), exactly
                return Sym(-1, iv, affine=Affine(a.affine.src, a.affine.scale << sa, bias << sb))
        return self._binary(np.add, a, b, iv)

    def sub(self, a: Sym, b: Sym) -> Sym:
        return self._binary(np.subtract, a, b, self.b.sub(a.iv, b.iv))

    def neg(self, a: Sym) -> Sym:
        return self._emit(lambda x, st: -x, [a], self.b.neg(a.iv))

    def shift(self, x: Sym, k: int) -> Sym:
        return Sym(self._arg(x), self.b.shift(x.iv, k))

    def mul(self, a: Sym, b: Sym) -> Sym:
        iv = self.b.mul(a.iv, b.iv)
        if self._channel_const(a, b) is not None:
            a, b = b, a
        scale = self._channel_const(b, a)
        if scale is not None and fast.available() and not (_wide(iv) or _wide(a.iv)):
            return Sym(-1, iv, affine=Affine(self._arg(a), scale, np.zeros_like(scale)))
        return self._binary(np.multiply, a, b, iv, align=False)

    def maximum(self, a: Sym, b: Sym) -> Sym:
        iv = self.b.maximum(a.iv, b.iv)
        if self._channel_const(a, b) is not None:
            a, b = b, a
        floor = self._channel_const(b, a)
        if (floor is not None and fast.available() and iv.frac == a.iv.frac and not _wide(iv) and not _wide(a.iv)
                and np.all(floor == floor[0])):
            lowest = int(floor[0]) << (iv.frac - b.iv.frac)  # ReLU: max(x, 0), one numba pass
            return self._emit(lambda m, st: fast.clip_below(m, lowest), [a], iv)
        return self._binary(np.maximum, a, b, iv)

    def minimum(self, a: Sym, b: Sym) -> Sym:
        return self._binary(np.minimum, a, b, self.b.minimum(a.iv, b.iv))

    def const_matmul(self, x: Sym, w: Const, bias: Const, acc: str) -> Sym:
        iv = self.b.const_matmul(x.iv, w, bias, acc)
        plan = accumulate_plan(self.node, self.b.type(acc), x.iv.frac, x.iv.abs_max, w.values, w.frac,
                               bias.values, bias.frac)
        n_in, n_out = w.values.shape
        kernel_args = numba_args(plan)
        if x.lazy is not None and x.lazy[2] == 0 and np.ndim(x.lazy[1]) >= 2 and kernel_args is not None:
            return self._emit(self._window_product(plan, x, kernel_args), [x.lazy[0]], iv)
        rows, dtype = matvec(plan)
        src = self._arg(x, dtype)

        def product(m, st):
            return rows(m.reshape(-1, n_in).astype(dtype, copy=False), st).reshape(m.shape[:-1] + (n_out,))
        out = self._emit(product, [src], iv)
        self._products[out.slot] = (src, x.iv, w, bias, acc)  # a scan reading it may compute it itself
        return out

    def _window_product(self, plan, x: Sym, kernel_args):
        """The numba kernel reading each window of a gathered input straight from the flat input (Conv)."""
        w_k, nz_rows, k_shift, wrap = kernel_args
        index, n_flat = x.lazy[1], int(np.prod(x.lazy[3], dtype=np.int64))
        args = (index, n_flat, w_k, nz_rows, plan.bias_acc, k_shift)
        wrapped, counted = fast.conv_plan(*args, wrap, plan.acc_t.signed), fast.conv_plan(*args)
        acc_t, shape = plan.acc_t, index.shape[:-1] + (w_k.shape[1],)

        def product(m, st):
            flat = m.reshape(len(m), -1)
            if st is None:
                return wrapped(flat).reshape((len(m),) + shape)
            acc = counted(flat)
            return (acc if plan.sum_fits else cast(acc_t, acc, acc_t.frac, st)).reshape((len(m),) + shape)
        return product

    def piecewise(self, x: Sym, t: Const, above, below) -> Sym:
        slot, theta = self._arg(x), np.asarray(t.values)
        x_above, x_below = self.b.split(x.iv, t)
        a, b = above(Sym(slot, x_above)), below(Sym(slot, x_below))
        iv = self.b.join(x.iv, t, a.iv, b.iv)
        sa, sb = iv.frac - a.iv.frac, iv.frac - b.iv.frac

        def pick(m, y, z, st):
            return np.where(m > theta, y << sa if sa else y, z << sb if sb else z)
        return self._emit(pick, [slot, a, b], iv)

    def lookup(self, x: Sym, key: str, real=None) -> Sym:
        table = self.node.attrs['tables'][key]
        frac, base, last = x.iv.frac, table.index.min_mantissa, len(table) - 1
        values = np.asarray(table.values, dtype=np.int64)
        kernel = None if _wide(x.iv) else fast.cast_plan(table.index, frac)
        address = kernel if kernel is not None else (lambda m: table.index.cast(m, frac))
        if getattr(table, 'negated', False):
            return self._emit(lambda m, st: values[np.minimum(-address(m), last)], [x], self.b.lookup(x.iv, key))
        return self._emit(lambda m, st: values[address(m) - base], [x], self.b.lookup(x.iv, key))

    def reduce(self, x: Sym, op: str, axis: int, keepdims: bool = False, acc: str | None = None, auto=None) -> Sym:
        iv = self.b.reduce(x.iv, op, axis, keepdims, acc, auto)
        ax = batch_axis(axis)
        if (op == 'max' and x.lazy is not None and axis == 0 and not keepdims and fast.available()
                and np.ndim(x.lazy[1]) == 2 and (x.lazy[2] is LOWEST or np.ndim(x.lazy[2]) == 0)):
            return self._emit(self._gather_max(x), [x.lazy[0]], iv)
        if op in ('max', 'min'):
            pick = np.max if op == 'max' else np.min
            return self._emit(lambda m, st: pick(m, axis=ax, keepdims=keepdims), [x], iv)
        if acc is None:
            return self._emit(lambda m, st: np.sum(m, axis=ax, keepdims=keepdims), [x], iv)
        return self._emit(self._accumulate(x, axis, keepdims, self.b.type(acc)), [x], iv)

    def _gather_max(self, x: Sym):
        """max over axis 0 of a pending gather (a max pool's taps) in one numba pass over its source."""
        _, index, fill, _ = x.lazy
        index_t = np.ascontiguousarray(np.asarray(index, np.int64).T)  # (outputs, taps)
        lowest = np.iinfo(np.int64).min if fill is LOWEST else int(fill)
        gather = _gather_fn(index, fill)

        def pool(m, st):
            flat = m.reshape(len(m), -1)
            if flat.dtype != np.int64:  # exact Python integers
                return np.max(gather(m, st), axis=1)
            return fast.gather_max(flat, index_t, lowest)
        return pool

    def _accumulate(self, x: Sym, axis: int, keepdims: bool, acc_t: FixedType):
        """acc = cast(acc + x_k) for k along the axis, from 0; one wrap at the end where that is equal."""
        n = x.iv.lo.shape[axis]
        shift = acc_t.frac - x.iv.frac
        bound = n * x.iv.abs_max
        need = max((bound << max(shift, 0)).bit_length(), acc_t.width - min(shift, 0))
        if need > INT_EXACT_BITS:
            raise GraphError(f'layer {self.node.name!r}: the sum needs {need} bits, more than the emulator '
                             f'evaluates exactly ({INT_EXACT_BITS}); use a narrower accum type')
        acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
        sum_fits = shift >= 0 and bound << shift <= acc_limit
        modular = shift >= 0 and acc_t.overflow == 'WRAP'  # one cast at the end equals a cast per step
        step = None if sum_fits or modular else acc_t
        end = acc_t if modular and not sum_fits else None
        ax, frac = batch_axis(axis), x.iv.frac

        def run(m, st):
            acc = None
            for k in range(n):
                v = np.take(m, k, axis=ax)
                if shift >= 0:
                    v = v << shift if shift else v
                    acc = v.copy() if acc is None else acc + v
                    acc = acc if step is None else cast(step, acc, acc_t.frac, st)
                else:
                    acc = cast(acc_t, v if acc is None else (acc << -shift) + v, frac, st)
            if end is not None:
                acc = cast(end, acc, acc_t.frac, st)
            return np.expand_dims(acc, ax) if keepdims else acc
        return run

    def div_trunc(self, x: Sym, n) -> Sym:
        n = np.asarray(n)
        if n.size and np.all(n == n.flat[0]):
            n = int(n.flat[0])
        return self._emit(lambda m, st: trunc_div(m, n), [x], self.b.div_trunc(x.iv, n))

    def gather(self, x: Sym, index: np.ndarray, fill=0) -> Sym:
        return Sym(-1, self.b.gather(x.iv, index, fill), (self._arg(x), index, fill, x.iv.lo.shape))

    def concat(self, xs: list[Sym], axis: int) -> Sym:
        iv = self.b.concat([x.iv for x in xs], axis)
        shifts = [iv.frac - x.iv.frac for x in xs]
        ax = batch_axis(axis)
        wide = _wide(iv)  # aligned to the finest LSB, a part may need more than int64 holds exactly

        def join(*ms):
            n = max(len(m) for m in ms[:-1])
            parts = [np.broadcast_to(m, (n,) + m.shape[1:]) if len(m) != n else m for m in ms[:-1]]
            if wide:
                parts = [m.astype(object) for m in parts]
            return np.concatenate([m << s if s else m for m, s in zip(parts, shifts)], axis=ax)
        return self._emit(join, list(xs), iv)

    def reshape(self, x: Sym, shape: tuple[int, ...]) -> Sym:
        return self._emit(lambda m, st: m.reshape((len(m),) + tuple(shape)), [x], self.b.reshape(x.iv, shape))

    def assume(self, x: Sym, lo: int | None = None, hi: int | None = None) -> Sym:
        return Sym(self._arg(x), self.b.assume(x.iv, lo, hi))

    def label(self, x: Sym, name: str) -> Sym:
        return x
