"""Cross-check fpga4ml.fixed against the real Xilinx ap_fixed headers shipped inside hls4ml.

A C++ program instantiating ap_fixed/ap_ufixed targets for every rounding x overflow mode
and a range of (W, I) shapes is generated, compiled once with g++ and fed tailored inputs
(ties, range bounds, overflows, huge/tiny values, random bit patterns).  Its output
mantissas must equal FixedType.quantize (from double) and FixedType.cast (from int64
mantissas held in an ap_fixed<64, 64-frac_in> source) bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType

# (width, integer, signed): negative I, I > W, W = 1 and W = 64 / 63 (unsigned) included.
SHAPES = [
    (1, 1, True), (8, 3, True), (8, -3, True), (6, 10, True), (53, 20, True), (54, 60, True),
    (64, 32, True), (64, 64, True), (64, -4, True),
    (1, 0, False), (8, 0, False), (12, -2, False), (5, 9, False), (63, 30, False),
]
# Cast shift distances s = frac_in - frac_out (positive: right shift with rounding).
SHIFTS = [1, 2, 3, 5, 17, 40, 62, 63, 64, 65, 100, 0, -1, -3, -40, -63, -64, -70]
CASTS_PER_TYPE = 2
N_TRANSLATION_UNITS = max(2, min(8, os.cpu_count() or 1))  # compiled in parallel


@dataclass(frozen=True)
class Case:
    """One conversion checked by the C++ program: a target type and a source (None = double)."""

    ident: int
    target: FixedType
    frac_in: int | None


def _ap_types_dir() -> Path:
    """Locate hls4ml's bundled ap_types headers without importing hls4ml."""
    spec = importlib.util.find_spec('hls4ml')
    if spec is None or spec.origin is None:
        pytest.fail('hls4ml is a test dependency (it ships the Xilinx ap_types headers) but is not installed')
    path = Path(spec.origin).parent / 'templates' / 'vivado' / 'ap_types'
    if not (path / 'ap_fixed.h').is_file():
        pytest.fail(f'Xilinx ap_fixed.h not found in the installed hls4ml package (looked in {path})')
    return path


def _make_cases() -> list[Case]:
    """All target types (shape x 28 modes), each from double and from a few int64 sources."""
    rng = np.random.default_rng(1234)
    cases: list[Case] = []
    for width, integer, signed in SHAPES:
        for rounding in ROUNDING_MODES:
            for overflow in OVERFLOW_MODES:
                t = FixedType(width, integer, signed, rounding, overflow)
                cases.append(Case(len(cases), t, None))
                for s in rng.choice(SHIFTS, CASTS_PER_TYPE, replace=False):
                    cases.append(Case(len(cases), t, t.frac + int(s)))
    return cases


CASES = _make_cases()

_PRELUDE = r'''#include <ap_fixed.h>
#include <cstdio>
#include <cstring>
template <class T> void from_double(int n) {
  for (int i = 0; i < n; ++i) {
    unsigned long long b; double d;
    if (std::scanf("%llx", &b) != 1) return;
    std::memcpy(&d, &b, sizeof d);
    T v = d;
    std::printf("%llx\n", (unsigned long long)v.range().to_uint64());
  }
}
template <class T, int FIN> void from_mantissa(int n) {
  for (int i = 0; i < n; ++i) {
    long long m;
    if (std::scanf("%lld", &m) != 1) return;
    ap_fixed<64, 64 - FIN> src;
    src.setBits((ap_ulong)m);
    T v = src;
    std::printf("%llx\n", (unsigned long long)v.range().to_uint64());
  }
}
'''


def _cpp_sources(cases: list[Case]) -> list[str]:
    """Split the cases over a few translation units plus a main() dispatcher."""
    chunks = [cases[i::N_TRANSLATION_UNITS] for i in range(N_TRANSLATION_UNITS)]
    units = []
    for k, chunk in enumerate(chunks):
        body = [_PRELUDE, f'bool run_{k}(int id, int n) {{', '  switch (id) {']
        for c in chunk:
            cpp_type = c.target.to_cpp()
            call = (f'from_double<{cpp_type} >(n)' if c.frac_in is None
                    else f'from_mantissa<{cpp_type}, {c.frac_in}>(n)')
            body.append(f'    case {c.ident}: {call}; return true;')
        body += ['    default: return false;', '  }', '}']
        units.append('\n'.join(body))
    decls = ''.join(f'bool run_{k}(int, int);\n' for k in range(N_TRANSLATION_UNITS))
    tries = ' || '.join(f'run_{k}(id, n)' for k in range(N_TRANSLATION_UNITS))
    units.append(
        '#include <cstdio>\n' + decls
        + 'int main() {\n  int id, n;\n  while (std::scanf("%d %d", &id, &n) == 2)\n'
        + f'    if (!({tries})) {{ std::fprintf(stderr, "unknown case %d\\n", id); return 2; }}\n'
        + '  return 0;\n}\n'
    )
    return units


@pytest.fixture(scope='module')
def apfixed_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the reference program once per test session."""
    include = _ap_types_dir()
    gxx = shutil.which('g++')
    if gxx is None:
        pytest.fail('g++ is required to cross-check against the Xilinx ap_fixed headers')
    work = tmp_path_factory.mktemp('apfixed')
    sources = []
    for k, text in enumerate(_cpp_sources(CASES)):
        path = work / f'unit{k}.cpp'
        path.write_text(text)
        sources.append(path)

    def compile_one(src: Path) -> Path:
        """Compile one translation unit.  -DNDEBUG: the header's C-sim model asserts ("read bit
        beyond MSB") when a conversion drops more than 64 bits, although the result is right."""
        obj = src.with_suffix('.o')
        cmd = [gxx, '-std=c++14', '-O0', '-DNDEBUG', '-w', '-I', str(include), '-c', str(src), '-o', str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f'g++ failed on {src.name}:\n{proc.stderr[-4000:]}')
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(sources), os.cpu_count() or 1)) as pool:
        objects = list(pool.map(compile_one, sources))
    exe = work / 'apfixed_ref'
    proc = subprocess.run([gxx, *map(str, objects), '-o', str(exe)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f'linking failed:\n{proc.stderr[-4000:]}')
    return exe


# ----------------------------------------------------------------------------- inputs
def _doubles_for(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Doubles probing ties, range bounds, overflow, huge/tiny values and random bit patterns."""
    lsb_exp = -t.frac
    vals: list[float] = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e30, -1e30, 1e300, -1e300, 5e-324, -5e-324,
                         1e-300, -1e-300, np.inf, -np.inf, 2.0**63, -(2.0**63), 2.0**64, 2.0**70 + 2.0**20]
    lo, hi = t.min_mantissa, t.max_mantissa
    for m in (lo, hi, 0, 1, -1, lo + 1, hi - 1, lo - 1, hi + 1, 2 * hi + 1, 2 * lo - 1, hi + 2, lo - 2):
        for half_units in (-1, 0, 1):  # m - 1/2, m, m + 1/2 LSB (float-rounded when |2m| >= 2**53)
            vals.append(float(np.ldexp(float(2 * m + half_units), lsb_exp - 1)))
        for delta in (2.0**-40, 2.0**-60):
            vals.append(float(np.ldexp(float(m), lsb_exp)) * (1 + delta))
            vals.append(float(np.ldexp(float(m), lsb_exp)) * (1 - delta))
    ties = rng.integers(-(2**20), 2**20, 60) * 2 + 1  # exact odd half-LSB multiples: ties
    vals += list(np.ldexp(ties.astype(np.float64), lsb_exp - 1))
    span = max(abs(t.min_value), abs(t.max_value), t.lsb)
    vals += list(rng.uniform(-2.5 * span, 2.5 * span, 60))
    vals += list(np.ldexp(rng.uniform(-1, 1, 40), rng.integers(lsb_exp - 70, t.integer + 70, 40)))
    bits = rng.integers(0, 2**64, 60, dtype=np.uint64).view(np.float64)
    vals += [b for b in bits if not np.isnan(b)]
    out = np.array(vals, dtype=np.float64)
    return out[~np.isnan(out)]


def _mantissas_for(t: FixedType, frac_in: int, rng: np.random.Generator) -> np.ndarray:
    """int64 mantissas probing ties, range thresholds and the int64 extremes for one shift."""
    s = frac_in - t.frac
    lo64, hi64 = -(2**63), 2**63 - 1
    cand: list[int] = [0, 1, -1, 2, -2, 3, -3, lo64, hi64, lo64 + 1, hi64 - 1]
    lo, hi = t.min_mantissa, t.max_mantissa
    for m in (lo, hi, lo + 1, hi - 1, lo - 1, hi + 1, hi + 2, lo - 2, 0):
        if s >= 0:
            base = m << s
            for off in (-(1 << max(s - 1, 0)) - 1, -(1 << max(s - 1, 0)), -1, 0, 1, (1 << max(s - 1, 0)) - 1,
                        1 << max(s - 1, 0), (1 << max(s - 1, 0)) + 1):
                cand.append(base + off)
        else:
            cand += [(m >> -s) + d for d in (-1, 0, 1)]
    if 1 <= s <= 64:
        odd = rng.integers(-(2**20), 2**20, 40) * 2 + 1
        cand += [int(k) << (s - 1) for k in odd]
        cand += [int(k) << (s - 1) for k in rng.integers(-(2**30), 2**30, 20)]
    cand += [int(v) for v in rng.integers(lo64, hi64, 60, dtype=np.int64, endpoint=True)]
    cand += [int(v) >> int(sh) for v, sh in zip(rng.integers(lo64, hi64, 60, dtype=np.int64, endpoint=True),
                                                 rng.integers(0, 63, 60))]
    return np.array([c for c in cand if lo64 <= c <= hi64], dtype=np.int64)


def _sign_extend(raw: int, t: FixedType) -> int:
    """Interpret the W-bit pattern printed by the C++ program as a mantissa."""
    raw &= (1 << t.width) - 1
    if t.signed and raw >> (t.width - 1):
        raw -= 1 << t.width
    return raw


# ----------------------------------------------------------------------------- the test
def test_matches_xilinx_ap_fixed(apfixed_binary: Path, tmp_path: Path) -> None:
    """quantize/cast agree bit-exactly with g++-compiled ap_fixed for all cases."""
    rng = np.random.default_rng(42)
    inputs: list[np.ndarray] = []
    lines: list[str] = []
    for c in CASES:
        if c.frac_in is None:
            x = _doubles_for(c.target, rng)
            lines.append(f'{c.ident} {x.size}')
            lines += [format(int(b), 'x') for b in x.view(np.uint64)]
        else:
            x = _mantissas_for(c.target, c.frac_in, rng)
            lines.append(f'{c.ident} {x.size}')
            lines += [str(int(v)) for v in x]
        inputs.append(x)
    (tmp_path / 'in.txt').write_text('\n'.join(lines) + '\n')
    with open(tmp_path / 'in.txt') as fin:
        proc = subprocess.run([str(apfixed_binary)], stdin=fin, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = proc.stdout.split()
    assert len(outputs) == sum(x.size for x in inputs), 'C++ program produced an unexpected number of results'

    mismatches: list[str] = []
    pos = n_checked = n_bad = 0
    for c, x in zip(CASES, inputs):
        expected = [_sign_extend(int(h, 16), c.target) for h in outputs[pos:pos + x.size]]
        pos += x.size
        got = c.target.quantize(x) if c.frac_in is None else c.target.cast(x, c.frac_in)
        n_checked += x.size
        for xi, e, g in zip(x.tolist(), expected, got.tolist()):
            if e == g:
                continue
            n_bad += 1
            if len(mismatches) < 40:
                t = c.target
                src = 'double' if c.frac_in is None else f'ap_fixed<64,{64 - c.frac_in}> (frac_in={c.frac_in})'
                shown = f'{float.hex(xi)} ({xi!r})' if c.frac_in is None else str(xi)
                mismatches.append(f'{t.to_cpp()} [{t.rounding}/{t.overflow}] from {src}: input {shown}: '
                                  f'ap_fixed={e} fpga4ml={g}')
    assert not n_bad, f'{n_bad} mismatches (of {n_checked}), first ones:\n' + '\n'.join(mismatches)
    assert n_checked > 50_000
