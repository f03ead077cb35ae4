#!/usr/bin/env python
"""The fused Conv kernel (fast.conv_floor_shift) vs the im2col path on the SVHN CNN's conv layers.

    python bench/bench_conv_kernel.py [--images 4000] [--chunk 10] [--baseline-rev f2f06e1]

Layers: the three Conv2D of the SVHN CNN (/work/shared/BENCHMARKS.md): 32x32x3 -> 16, 15x15x16 -> 16,
6x6x16 -> 24 filters, 3x3, stride 1, valid, built with fpga4ml.geometry. Mantissas as at
fixed<16,6> everywhere: inputs in [0, 2^15), random He-normal weights at 10 fractional bits,
products (20 fractional bits) floored into a 16-bit WRAP accumulator at 10 (shift 10), int32.
Each kernel runs on chunks of --chunk images (the emulator's chunk for this network), one thread
(per-layer us/image) and two threads on a pool of chunks (images/s), best of --repeats.

Columns: 'old' = geometry.take + fast.dense_floor_shift as of --baseline-rev (loaded from git, the
kernel before this change; skipped when git cannot show it), 'take+new dense' = the same im2col
path on today's dense_floor_shift, 'fused' = fast.conv_plan(...)(flat). Bit-exactness is checked
on every layer. The floor: the float32 forward of the whole network (im2col + BLAS matmul per conv,
ReLU, 2x2 max pool, dense layers) in numpy, same chunks and threads. No thresholds are asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fpga4ml import geometry  # noqa: E402
from fpga4ml.emulator import fast  # noqa: E402

#: (name, input H = W, input channels, filters) of the SVHN CNN's convolutions
LAYERS = [('conv_0', 32, 3, 16), ('conv_1', 15, 16, 16), ('conv_2', 6, 16, 24)]
SHIFT, WRAP = 10, 16


def old_fast(rev: str):
    """fpga4ml/emulator/fast.py as of git revision `rev`, as a module (None when git cannot show it)."""
    try:
        src = subprocess.run(['git', 'show', f'{rev}:fpga4ml/emulator/fast.py'], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType(f'fast_{rev}')
    src = src.replace('cache=True', 'cache=False')  # an exec'd source has no file for numba's cache
    exec(compile(src, f'fast.py@{rev}', 'exec'), mod.__dict__)
    return mod


def make_layer(rng, hw: int, c: int, n_out: int, n_images: int):
    """(flat int32 inputs, im2col index, int32 weights, non-zero rows, bias) of one conv layer."""
    win = geometry.Window((hw, hw), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0))
    index = geometry.im2col_index(win, c)
    n_in = index.shape[1]
    flat = rng.integers(0, 2 ** 15, (n_images, hw * hw * c)).astype(np.int32)
    w = np.round(rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)) * 1024).astype(np.int32)
    nz = np.flatnonzero(np.any(w != 0, axis=1)).astype(np.int64)
    return flat, index, w, nz, np.zeros(n_out, np.int64)


def per_image(run, x, chunk: int, threads: int, repeats: int) -> float:
    """Best seconds per image of `run` over x in chunks of `chunk` on `threads` threads."""
    parts = [x[i:i + chunk] for i in range(0, len(x), chunk)]
    run(parts[0])
    best = float('inf')
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            if threads == 1:
                for p in parts:
                    run(p)
            else:
                list(pool.map(run, parts))
            best = min(best, time.perf_counter() - t0)
    return best / len(x)


def float_forward(rng):
    """The SVHN CNN's float32 forward (im2col + BLAS) on a chunk of (n, 32, 32, 3) images."""
    convs = []
    for _, hw, c, n_out in LAYERS:
        index = geometry.im2col_index(geometry.Window((hw, hw), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)), c)
        convs.append((index, rng.normal(0, 0.3, (index.shape[1], n_out)).astype(np.float32), hw - 2, n_out))
    dense = [rng.normal(0, 0.1, shape).astype(np.float32) for shape in ((2 * 2 * 24, 42), (42, 64), (64, 10))]

    def run(x):
        h = x.reshape(len(x), -1)
        for index, w, out_hw, n_out in convs:
            y = np.maximum(np.take(h, index, axis=1) @ w, 0).reshape(len(x), out_hw, out_hw, n_out)
            p = out_hw // 2
            h = y[:, :2 * p, :2 * p].reshape(len(x), p, 2, p, 2, n_out).max(axis=(2, 4)).reshape(len(x), -1)
        for w in dense[:-1]:
            h = np.maximum(h @ w, 0)
        return h @ dense[-1]
    return run


def main(argv=None) -> int:
    """Time the kernels and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--images', type=int, default=4000)
    ap.add_argument('--chunk', type=int, default=10, help='images per kernel call (the emulator uses 10 here)')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--baseline-rev', default='f2f06e1', help='git revision of the kernel before the fused one')
    args = ap.parse_args(argv)
    if not fast.available():
        print('numba is not installed: nothing to compare')
        return 1
    rng = np.random.default_rng(0)
    old = old_fast(args.baseline_rev)
    rows, totals = [], {}
    for name, hw, c, n_out in LAYERS:
        flat, index, w, nz, bias = make_layer(rng, hw, c, n_out, args.images)
        n_in = index.shape[1]
        plan = fast.conv_plan(index, flat.shape[1], w, nz, bias, SHIFT, WRAP, True)
        paths = {'take+new dense': lambda x: fast.dense_floor_shift(geometry.take(x, index).reshape(-1, n_in), w, nz,
                                                                     bias, SHIFT, WRAP, True),
                 'fused': plan}
        if old is not None:
            paths = {'old': lambda x: old.dense_floor_shift(geometry.take(x, index).reshape(-1, n_in), w, nz, bias,
                                                             SHIFT, WRAP, True)} | paths
        want = next(iter(paths.values()))(flat[:50]).reshape(-1)
        for label, run in paths.items():
            if not np.array_equal(run(flat[:50]).reshape(-1), want):
                raise SystemExit(f'{name}: {label} differs from the baseline path')
        for label, run in paths.items():
            for threads in (1, 2):
                s = per_image(run, flat, args.chunk, threads, args.repeats)
                rows.append((name, label, threads, s))
                totals[label, threads] = totals.get((label, threads), 0.0) + s
    x = rng.uniform(0, 1, (args.images, 32, 32, 3)).astype(np.float32)
    run_float = float_forward(rng)
    for threads in (1, 2):
        totals['float32 whole network', threads] = per_image(run_float, x, args.chunk, threads, args.repeats)

    print(f'SVHN CNN conv layers, fixed<16,6> (int32, shift {SHIFT}, {WRAP}-bit WRAP), {args.images} images in '
          f'chunks of {args.chunk}; baseline kernel: {args.baseline_rev if old else "unavailable"}')
    print(f'{"layer":8} {"path":16} {"thr":>3} {"us/image":>9} {"images/s":>10} {"vs first":>8}')
    first = {}
    for name, label, threads, s in rows:
        first.setdefault((name, threads), s)
        print(f'{name:8} {label:16} {threads:3d} {s * 1e6:9.1f} {1 / s:10,.0f} {first[name, threads] / s:7.2f}x')
    print('\nall three conv layers together (the rest of the network not included) and the float floor:')
    for (label, threads), s in totals.items():
        print(f'{"convs" if "float" not in label else "network":8} {label:22} {threads:d} thr {s * 1e6:9.1f} us/image'
              f' {1 / s:10,.0f} images/s')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
