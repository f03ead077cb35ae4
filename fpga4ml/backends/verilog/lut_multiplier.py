"""Products of two variables in LUTs: a partial-product array summed by an adder tree.

`VariableProducts` (hls_config['Model'] or a layer's entry) decides where the netlist's products of
two variables go (attention scores and weighted values, softmax's exp * 1/sum, LayerNorm's squares
and scaling, Merge multiply, recurrent gates): 'dsp' (default) writes `a * b`, which synthesis maps
to DSP multipliers; 'lut' lowers every such product into netlist operations that synthesis maps to
LUTs and carry chains; 'auto' does so where the narrower operand has at most LUT_PRODUCT_BITS bits
(a DSP slice is worth about 140 LUTs of an UltraScale+ device, and a narrow array is as fast as a
DSP: one AND level and log2(bits) adder levels).

With b the narrower operand and w its wire width, b = -b_(w-1) 2^(w-1) + sum_(j<w-1) b_j 2^j (two's
complement; a non-negative b has b_(w-1) = 0 and is not read), so

    a * b = sum_(j<w-1) (b_j ? a : 0) << j  -  (b_(w-1) ? a : 0) << (w-1)

Each bit b_j is `cast(b >> j)` into a one-bit unsigned wrapping type (wiring), each partial product
a `select` (an AND per bit, which synthesis merges into the adders' LUTs), and the sum the same
balanced adder tree as the constant products' (adder_graph.shifted_sum), so the netlist's
interpreters, the schedule, the cost model, the writer and the three-input adders all read these
operations as they read any other, and the product is exact by construction (the tests check it
against a * b on every operand pair of small ranges).

When the narrower operand b takes at most MUX_PRODUCT_VALUES values (a 3-bit softmax weight, a
2-bit code), the product is instead a multiplexer: a * b = (b * a for each value b can take)[b],
the multiples of a built once per a from its canonical signed digits (one adder or a negation
each, shared by every product that reads a: attention's values are read by every query) and b
picking one. It is one or two LUT levels after b (a LUT6 picks one of 4 options, MUXF7/F8 join
them) instead of an AND level and log2(bits) adders, and a sum of such products has one term per
product instead of one per bit of b.
"""

from __future__ import annotations

from ...fixed import FixedType
from .adder_graph import Term, csd, shifted_sum
from .netlist import Netlist

#: 'auto' puts a product in LUTs when its narrower operand has at most this many bits (sign included)
LUT_PRODUCT_BITS = 4
#: a LUT product whose narrower operand takes at most this many values is a multiplexer of multiples: an 8:1
#: multiplexer per bit is two LUT6 and a MUXF7, about the LUTs of the two adders its three bits would need
MUX_PRODUCT_VALUES = 16


def in_luts(nl: Netlist, a: int, b: int, setting: str) -> bool:
    """Whether the product of signals a and b is built in LUTs under a VariableProducts setting."""
    if setting == 'lut':
        return True
    if setting == 'auto':
        return min(nl[a].live_bits, nl[b].live_bits) <= LUT_PRODUCT_BITS
    return False


def bit(nl: Netlist, b: int, j: int) -> int:
    """Bit j of signal b's two's complement mantissa as a 0/1 signal (wiring: a shift and a wrap)."""
    shifted = nl.shr(b, j) if j else b
    frac = nl[shifted].frac
    return nl.cast(shifted, FixedType(1, 1 - frac, False, 'TRN', 'WRAP'))


def lut_product(nl: Netlist, a: int, b: int) -> int:
    """a * b (exact, LSB the sum of both) as partial products and an adder tree (module docstring)."""
    if nl[b].live_bits > nl[a].live_bits:
        a, b = b, a
    A, B = nl[a], nl[b]
    if B.hi - B.lo + 1 <= MUX_PRODUCT_VALUES:
        options = [multiple(nl, a, m) for m in range(B.lo, B.hi + 1)]
        return nl.shl(nl.mux(b, options, offset=B.lo), 0, frac=A.frac + B.frac)
    frac, first_new = A.frac + B.frac, len(nl)
    zero = nl.const(0, A.frac)
    terms = []
    for j in range(B.width):
        if j == B.width - 1 and B.lo >= 0:
            break                      # the sign bit of a non-negative operand is 0
        partial = nl.select(bit(nl, b, j), a, zero)
        if not nl[partial].is_const:
            terms.append(Term(partial, j, -1 if j == B.width - 1 else 1))
    product = shifted_sum(nl, terms, frac)
    corners = [x * y for x in (A.lo, A.hi) for y in (B.lo, B.hi)]
    if product >= first_new and not nl[product].is_const:   # the tree's bounds are looser than the product's
        nl.narrow(product, min(corners), max(corners))
    return product


def multiple(nl: Netlist, a: int, m: int) -> int:
    """m * a for an integer constant m, at a's LSB, built once per (a, m): its signed digits summed
    (adder_graph.shifted_sum: a shift of a or of -a for one digit, one adder for two), exact bounds."""
    def build() -> int:
        A = nl[a]
        sig = shifted_sum(nl, [Term(a, shift, sign) for shift, sign in csd(m)], A.frac)
        return sig if nl[sig].is_const or sig == a else nl.narrow(sig, min(m * A.lo, m * A.hi), max(m * A.lo, m * A.hi))
    return nl.once(('multiple', a, m), build)
