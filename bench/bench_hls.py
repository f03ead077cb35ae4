#!/usr/bin/env python
"""fpga4ml's HLS back end vs hls4ml 1.3.0: C-simulation build time, C-sim throughput, project size.

    KERAS_BACKEND=torch python bench/bench_hls.py            # JSC MLP, both libraries, ~1 min
    KERAS_BACKEND=torch python bench/bench_hls.py --quick    # fewer samples and repeats

Model: the JSC MLP of bench_core.py (trained 2 epochs on synthetic teacher data, seeded), config
`config_from_keras_model(model, granularity='model')` (ap_fixed<16,6> everywhere), backend
'Vitis', io_parallel, the same dict for both libraries.

Measurements (time.perf_counter; printed, never asserted):
  [1] C-simulation build: hls4ml `compile()` (writes the project, runs g++) vs fpga4ml
      `compile(sim='csim')` (writes the project, runs g++), each into a fresh directory so no
      build cache is reused. Target: >= 3x faster.
  [2] C-simulation predict: samples/s through each library's compiled C++ (hls4ml: one ctypes
      call per sample; fpga4ml: one per batch). Target: >= 20x.
  [3] generated project: lines of C/C++/Tcl written into the output directory (vendor headers
      excluded), and bit agreement of fpga4ml's C simulation with its emulator and with hls4ml.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import Table, best_of, build_model, fmt_rate, fmt_ratio, fmt_time, perf, quiet  # noqa: E402

SOURCE_SUFFIXES = ('.cpp', '.h', '.hpp', '.cc', '.tcl')
VENDOR_DIRS = ('ap_types',)


def count_lines(root: Path) -> tuple[int, int]:
    """(files, lines) of C++/Tcl sources under root, without vendor header folders."""
    files = lines = 0
    for path in root.rglob('*'):
        if path.suffix not in SOURCE_SUFFIXES or any(part in VENDOR_DIRS for part in path.parts):
            continue
        files += 1
        lines += sum(1 for _ in path.open(errors='replace'))
    return files, lines


def timed_builds(make, repeats: int) -> list[float]:
    """Wall times of `make(i)` (a full write + g++ build into a fresh directory each time)."""
    times = []
    for i in range(repeats):
        t0 = perf()
        make(i)
        times.append(perf() - t0)
    return times


def main(argv=None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer samples and repeats')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    n_predict = 20_000 if args.quick else 100_000
    n_hls = 2_000 if args.quick else 10_000
    repeats = 1 if args.quick else 2

    import keras
    import numpy as np

    import fpga4ml

    with quiet():
        import hls4ml
    model, info = build_model(keras, np, args.seed, train=True, epochs=2, n_train=30_000)
    cfg = fpga4ml.config_from_keras_model(model, granularity='model')
    x = np.ascontiguousarray(np.random.default_rng(args.seed).normal(size=(n_predict, 16)))
    work = Path(tempfile.mkdtemp(prefix='bench_hls_'))

    def ours(i: int):
        fm = fpga4ml.convert_from_keras_model(model, hls_config=copy.deepcopy(cfg), backend='Vitis',
                                              output_dir=str(work / f'fpga4ml_{i}'))
        fm.compile(sim='csim')
        return fm

    def theirs(i: int):
        with quiet():
            hm = hls4ml.converters.convert_from_keras_model(model, hls_config=copy.deepcopy(cfg), backend='Vitis',
                                                            io_type='io_parallel', output_dir=str(work / f'hls4ml_{i}'))
            hm.compile()
        return hm

    t_ours = timed_builds(ours, repeats)
    t_theirs = timed_builds(theirs, repeats)
    fm, hm = ours(repeats), theirs(repeats)

    table = Table()
    table.section('[1] C-simulation build (write project + g++), JSC MLP, fresh directory')
    for k, (a, b) in enumerate(zip(t_ours, t_theirs)):
        table.row(f'  build {k + 1}', fmt_time(a), fmt_time(b), fmt_ratio(b / a))
    build_ratio = min(t_theirs) / min(t_ours)
    table.row('  best', fmt_time(min(t_ours)), fmt_time(min(t_theirs)), fmt_ratio(build_ratio), '>= 3x', build_ratio >= 3)

    fm.predict(x[:100], sim='csim')
    t_fm = best_of(lambda: fm.predict(x, sim='csim'), 3)
    xh = np.ascontiguousarray(x[:n_hls])
    with quiet():
        hm.predict(xh[:100])
        t_hm = best_of(lambda: hm.predict(xh), 2)
    r_fm, r_hm = n_predict / t_fm, n_hls / t_hm
    table.section(f'[2] C-simulation predict ({n_predict:,} samples fpga4ml, {n_hls:,} hls4ml)')
    table.row('  samples/s', fmt_rate(r_fm), fmt_rate(r_hm), fmt_ratio(r_fm / r_hm), '>= 20x', r_fm / r_hm >= 20)
    t_emu = best_of(lambda: fm.predict(x), 3)
    table.row('  fpga4ml emulator, same samples (info)', fmt_rate(n_predict / t_emu))

    files_ours, lines_ours = count_lines(Path(fm.output_dir))
    files_theirs, lines_theirs = count_lines(Path(hm.config.get_output_dir()))
    table.section('[3] generated project and agreement')
    table.row('  source files (vendor headers excluded)', f'{files_ours}', f'{files_theirs}')
    table.row('  lines of C++/Tcl', f'{lines_ours:,}', f'{lines_theirs:,}', fmt_ratio(lines_theirs / lines_ours))
    y_csim, y_emu = fm.predict(x, sim='csim'), fm.predict(x)
    table.row('  csim == emulator, bit for bit', f'{100 * np.mean(np.all(y_csim == y_emu, axis=1)):.2f} %')
    with quiet():
        y_h = hm.predict(xh)
    y_h = np.asarray(y_h).reshape(y_csim[:n_hls].shape)
    table.row('  fpga4ml csim == hls4ml csim (softmax differs by design)',
              f'{100 * np.mean(np.all(y_csim[:n_hls] == y_h, axis=1)):.2f} %')

    print(f'fpga4ml {fpga4ml.__version__} vs hls4ml {hls4ml.__version__}: JSC MLP, backend Vitis, io_parallel, '
          f"granularity='model' (fixed<16,6>)")
    print(f'weights: {info}; {os.cpu_count()} cores; projects in {work}')
    print(table.render())
    return 0


if __name__ == '__main__':
    sys.exit(main())
