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
operations as they read any other: no new op, and the product is exact by construction (the tests
check it against a * b on every operand pair of small ranges).
"""

from __future__ import annotations

from ...fixed import FixedType
from .adder_graph import Term, shifted_sum
from .netlist import Netlist

#: 'auto' puts a product in LUTs when its narrower operand has at most this many bits (sign included)
LUT_PRODUCT_BITS = 4


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
