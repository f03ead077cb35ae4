#!/usr/bin/env python
"""fpga4ml vs hls4ml 1.3.0 on the SVHN CNN, side by side in one process.

    KERAS_BACKEND=torch python bench/bench_cnn.py             # ~4-6 min on 2 cores: three hls4ml compiles
    KERAS_BACKEND=torch python bench/bench_cnn.py --quick     # ~2-3 min: two hls4ml compiles, fewer images
    KERAS_BACKEND=torch python bench/bench_cnn.py --no-hls    # fpga4ml only, quotes BENCHMARKS.md for hls4ml
    KERAS_BACKEND=torch python bench/bench_cnn.py --no-csim   # the emulator side only ([1]-[3])

Model: the SVHN CNN of /work/shared/BENCHMARKS.md (hls4ml "fast CNN" paper and tutorial), input
32x32x3: 3 x [Conv2D (16, 16, 24 filters, 3x3, valid, no bias) -> BatchNorm -> ReLU -> MaxPool 2x2],
Flatten -> Dense 42 (no bias) -> BN -> ReLU -> Dense 64 (no bias) -> BN -> ReLU -> Dense 10 -> softmax,
about 14k parameters; seeded He-normal weights and random BatchNorm statistics (not trained);
inputs are uniform [0, 1) images, float64.

Configs: (a) hls4ml's default `config_from_keras_model(model, granularity='model')`, ap_fixed<16,6>
everywhere (BatchNorm stays a separate layer, products are truncated into a 16-bit accumulator),
the same dict for both libraries; (b) granularity='name' ('auto', BatchNorm folded into the Conv
and Dense layers), fpga4ml only unless --hls-both (a second ~70-110 s hls4ml compile).

Measurements (time.perf_counter; nothing is asserted, targets are printed as met / MISSED):
  [1] convert + compile: hls4ml convert_from_keras_model(backend='Vitis', io_type='io_parallel') +
      compile() (write the C++ project, run g++) vs fpga4ml's, first call and median of N. An hls4ml
      compile that runs past --hls-limit seconds is stopped and BENCHMARKS.md's 66.5 s is quoted.
  [2] predict throughput in images/s: fpga4ml on N images (best of R after a warm-up; two emulator
      threads and, for information, one), hls4ml's C simulation on M images.
  [3] agreement on the hls4ml images: argmax agreement with Keras float; bit-identical logits:
      the outputs of the last Dense layer, from a second hls4ml compile of the model cut before the
      softmax (fpga4ml's softmax has its own, documented table semantics; every layer below it is
      hls4ml's bit for bit). --quick skips that second compile.
  [4] HLS C simulation, config (a), io_parallel and io_stream: fpga4ml's convert + compile(sim='csim')
      (write the project, g++; a fresh directory, so a real build; the vendor headers' precompiled
      header is cached across runs in $FPGA4ML_CACHE) vs hls4ml's convert + compile(); C-sim predict
      throughput on --n-csim images (fpga4ml: one library call, its threads; hls4ml: its per-image
      loop); the share of images whose fpga4ml C-sim outputs equal fpga4ml's emulator bit for bit
      (must be 100 %). fpga4ml's io_stream C++ is line-buffered (docs/hls.md).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

os.environ.setdefault('KERAS_BACKEND', 'torch')
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (  # noqa: E402
    REPO, Table, cpu_model, fmt_rate, fmt_ratio, fmt_time, git_revision, gpp_version, load_average, median,
    numba_cache_state, pct, perf, quiet,
)

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: hls4ml 1.3.0 on this model, measured on a machine like ours (/work/shared/BENCHMARKS.md)
QUOTED = {'compile': 66.5, 'rate': 109.0, 'stream_compile': 7.1, 'stream_rate': 104.0}


class CompileTooSlow(RuntimeError):
    """hls4ml's g++ build ran past the time limit and was stopped."""


@contextmanager
def time_limited_builds(limit: float):
    """Run hls4ml's build_lib.sh in its own process group, stopped (with its g++) after `limit` seconds."""
    real_popen = subprocess.Popen

    def run(*args, **kwargs):
        with real_popen(*args, start_new_session=True, **kwargs) as proc:
            try:
                out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the build's own process group: bash and g++
                proc.communicate()
                raise CompileTooSlow(f'hls4ml compile stopped after {limit:.0f} s') from None
            return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    with mock.patch.object(subprocess, 'run', run):
        yield


def build_model(keras, np, seed: int):
    """The SVHN CNN (BENCHMARKS.md), seeded He-normal weights and random BatchNorm statistics."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
    from svhn_model import svhn_keras

    return svhn_keras(seed, input_name='input_1', logits_name='output_dense', softmax=True)


def hls4ml_side(hls4ml, model, cfg: dict, out_dir: Path, limit: float, io_type: str = 'io_parallel'):
    """hls4ml convert + compile (time-limited): (model or None, convert s, compile s, note)."""
    with quiet():
        t0 = perf()
        hm = hls4ml.converters.convert_from_keras_model(model, hls_config=copy.deepcopy(cfg), backend='Vitis',
                                                        io_type=io_type, output_dir=str(out_dir))
        t1 = perf()
    try:
        with quiet(), time_limited_builds(limit):
            hm.compile()
    except CompileTooSlow as err:
        return None, t1 - t0, None, str(err)
    return hm, t1 - t0, perf() - t1, ''


def fpga4ml_side(fpga4ml, model, granularity: str, repeats: int, out_dir: Path):
    """fpga4ml config + convert + compile timings.

    Returns (model, config, config s, first convert+compile s, median convert s, median compile s,
    median convert+compile s).
    """
    t0 = perf()
    cfg = fpga4ml.config_from_keras_model(model, granularity=granularity)
    t_cfg = perf() - t0
    conv, comp, tot = [], [], []
    for i in range(repeats + 1):
        t0 = perf()
        fm = fpga4ml.convert_from_keras_model(model, hls_config=copy.deepcopy(cfg), backend='Vitis',
                                              io_type='io_parallel', output_dir=str(out_dir / f'f_{i}'))
        t1 = perf()
        fm.compile()
        t2 = perf()
        conv.append(t1 - t0), comp.append(t2 - t1), tot.append(t2 - t0)
    return fm, cfg, t_cfg, tot[0], median(conv[1:]), median(comp[1:]), median(tot[1:])


def logits_identity(fpga4ml, hls4ml, keras, model, cfg: dict, x, workdir: Path, limit: float) -> float | None:
    """Share of images whose logits (the model cut before its softmax) are bit-identical in both libraries."""
    cut = keras.Model(model.input, model.get_layer('output_dense').output)
    hm, _, _, note = hls4ml_side(hls4ml, cut, cfg, workdir / 'hls_logits', limit)
    if hm is None:
        print(f'hls4ml logits model: {note}')
        return None
    ours = fpga4ml.convert_from_keras_model(cut, hls_config=copy.deepcopy(cfg))
    with quiet():
        theirs = hm.predict(x)
    same = (theirs.reshape(len(x), -1) == ours.predict(x)).all(axis=1)
    return float(same.mean())


def csim_side(fpga4ml, model, cfg: dict, io_type: str, out_dir: Path, x) -> dict:
    """fpga4ml's HLS C simulation of `model`: convert + compile(sim='csim') time in a fresh directory,
    predict(x, sim='csim') throughput (after a warm-up; also one thread on a few images, for
    information) and the share of images whose C-sim outputs equal the emulator's bit for bit."""
    import numpy as np

    t0 = perf()
    fm = fpga4ml.convert_from_keras_model(model, hls_config=copy.deepcopy(cfg), backend='Vitis', io_type=io_type,
                                          output_dir=str(out_dir))
    fm.compile(sim='csim')
    build = perf() - t0
    fm.predict(x[:8], sim='csim')
    t0 = perf()
    y_csim = np.asarray(fm.predict(x, sim='csim')).reshape(len(x), -1)
    rate = len(x) / (perf() - t0)
    few = x[:min(len(x), 200)]
    t0 = perf()
    fm._csim.predict(few, threads=1)
    rate1 = len(few) / (perf() - t0)
    y_emu = np.asarray(fm.predict(x)).reshape(len(x), -1)
    return {'build': build, 'rate': rate, 'rate1': rate1, 'equal': float(np.mean(np.all(y_csim == y_emu, axis=1)))}


def hls4ml_csim_rate(hm, x) -> float:
    """Images/s of hls4ml's C-sim predict (after a warm-up on a few images)."""
    with quiet():
        hm.predict(x[:8])
        t0 = perf()
        hm.predict(x)
    return len(x) / (perf() - t0)


def predict_rate(fm, x, repeats: int, threads: int | None = None) -> float:
    """Images/s of fpga4ml's predict (best of `repeats`), optionally with a given emulator thread count."""
    emu = fm.emulator
    saved = emu.threads
    emu.threads = threads or saved
    try:
        best = float('inf')
        for _ in range(repeats):
            t0 = perf()
            fm.predict(x)
            best = min(best, perf() - t0)
    finally:
        emu.threads = saved
    return len(x) / best


def main(argv=None) -> int:
    """Run the benchmark and print the table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='20k/500 images instead of 50k/2k')
    ap.add_argument('--n-predict', type=int, help='images for fpga4ml predict (default 50000)')
    ap.add_argument('--n-hls', type=int, help='images for hls4ml predict and agreement (default 2000)')
    ap.add_argument('--repeats', type=int, default=3, help='fpga4ml convert+compile runs and predict timings')
    ap.add_argument('--hls-limit', type=float, default=180.0, help='seconds after which an hls4ml compile is stopped')
    ap.add_argument('--hls-both', action='store_true', help="also compile hls4ml's granularity='name' config")
    ap.add_argument('--no-hls', action='store_true', help='skip hls4ml (quote BENCHMARKS.md)')
    ap.add_argument('--no-logits', action='store_true',
                    help='skip the bit-identity check of the logits (a second hls4ml compile; --quick skips it)')
    ap.add_argument('--no-csim', action='store_true', help="skip [4], the HLS C simulation (compile(sim='csim'))")
    ap.add_argument('--n-csim', type=int, help='images for the C-sim predict and its comparison (default: --n-hls)')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    n_pred = args.n_predict or (20_000 if args.quick else 50_000)
    n_hls = min(args.n_hls or (500 if args.quick else 2_000), n_pred)
    t_start, load_start = perf(), load_average()
    workdir = Path(tempfile.mkdtemp(prefix='bench_cnn_'))

    import numpy as np
    with quiet():
        import keras
    import fpga4ml
    jit_state = numba_cache_state()
    hls4ml, hls_note = None, ''
    if args.no_hls:
        hls_note = 'skipped (--no-hls)'
    elif importlib.util.find_spec('hls4ml') is None:
        hls_note = 'hls4ml is not installed (pip install -e .[bench])'
    elif gpp_version() is None:
        hls_note = 'g++ not found'
    else:
        if importlib.util.find_spec('da4ml') is not None:
            sys.modules['da4ml'] = None  # BENCHMARKS.md: hls4ml's Keras 3 parser trips over an installed da4ml
        with quiet():
            import hls4ml

    with quiet():
        model = build_model(keras, np, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = np.ascontiguousarray(rng.uniform(0.0, 1.0, (n_pred, 32, 32, 3)))
    x_hls = x[:n_hls]
    y_keras = np.asarray(model.predict(x_hls.astype(np.float32), batch_size=512, verbose=0))

    configs = {'a': ("(a) granularity='model', fixed<16,6>", 'model'), 'b': ("(b) granularity='name', 'auto'", 'name')}
    res: dict = {k: {} for k in configs}
    for key, (_, gran) in configs.items():
        r = res[key]
        fm, r['cfg'], r['f_cfg'], r['f_first'], r['f_conv'], r['f_comp'], r['f_total'] = \
            fpga4ml_side(fpga4ml, model, gran, args.repeats, workdir)
        t0 = perf()
        fm.predict(x[:64])
        r['f_first_predict'] = perf() - t0
        r['fm'] = fm
        if hls4ml is not None and (key == 'a' or args.hls_both):
            h_cfg = r['cfg'] if key == 'a' else hls4ml.utils.config_from_keras_model(model, granularity=gran,
                                                                                      backend='Vitis')
            hm, r['h_conv'], r['h_comp'], r['h_note'] = hls4ml_side(hls4ml, model, h_cfg, workdir / f'hls_{key}',
                                                                     args.hls_limit)
            r['hm'] = hm

    logits = None
    if hls4ml is not None and not (args.quick or args.no_logits):
        logits = logits_identity(fpga4ml, hls4ml, keras, model, res['a']['cfg'], x_hls, workdir, args.hls_limit)

    csim: dict = {}
    n_csim = min(args.n_csim or n_hls, n_pred)
    if not args.no_csim:
        ra = res['a']
        for io in ('io_parallel', 'io_stream'):
            c = csim_side(fpga4ml, model, ra['cfg'], io, workdir / f'csim_{io}', x[:n_csim])
            if hls4ml is not None:
                if io == 'io_parallel':
                    hm, h_conv, h_comp = ra.get('hm'), ra.get('h_conv'), ra.get('h_comp')
                else:
                    hm, h_conv, h_comp, c['h_note'] = hls4ml_side(hls4ml, model, ra['cfg'], workdir / 'hls_stream',
                                                                  args.hls_limit, 'io_stream')
                c['h_build'] = None if h_comp is None else h_conv + h_comp
                if hm is not None and io == 'io_stream':  # io_parallel: measured in [2] (r['h_rate'])
                    c['h_rate'] = hls4ml_csim_rate(hm, x_hls)
            csim[io] = c

    for key, r in res.items():
        r['f_rate'] = predict_rate(r['fm'], x, args.repeats)
        r['f1_rate'] = predict_rate(r['fm'], x, args.repeats, threads=1)
        r['f_y'] = np.asarray(r['fm'].predict(x_hls))
        if r.get('hm') is not None:
            with quiet():
                r['hm'].predict(x_hls[:20])
                t0 = perf()
                r['h_y'] = np.asarray(r['hm'].predict(x_hls)).reshape(n_hls, -1)
                r['h_rate'] = n_hls / (perf() - t0)

    table = Table()
    for key, (label, _) in configs.items():
        r = res[key]
        h_total = None if r.get('h_comp') is None else r['h_conv'] + r['h_comp']
        quoted = h_total is None and key == 'a'
        h_ref = QUOTED['compile'] if quoted else h_total
        table.section(f'[1] convert + compile, {label}')
        table.row('  config_from_keras_model', fmt_time(r['f_cfg']))
        table.row('  convert_from_keras_model (median)', fmt_time(r['f_conv']), fmt_time(r.get('h_conv')))
        table.row('  compile() (median)', fmt_time(r['f_comp']), fmt_time(r.get('h_comp')))
        table.row('  convert + compile, first call', fmt_time(r['f_first']))
        rc = None if h_ref is None else h_ref / r['f_total']
        table.row(f'  convert + compile (median of {args.repeats})', fmt_time(r['f_total']),
                  (fmt_time(h_ref) + ' (quoted)') if quoted else fmt_time(h_ref), fmt_ratio(rc), '>= 50x',
                  None if rc is None else rc >= 50)
        table.row('  first predict() (numba JIT/cache)', fmt_time(r['f_first_predict']))
    for key, (label, _) in configs.items():
        r = res[key]
        quoted = 'h_rate' not in r and key == 'a'
        h_rate = QUOTED['rate'] if quoted else r.get('h_rate')
        table.section(f'[2] predict throughput, {label}')
        table.row(f'  images/s, {n_pred:,} images ({r["fm"].emulator.threads} threads)', fmt_rate(r['f_rate']),
                  (fmt_rate(h_rate) + ' (quoted)') if quoted else fmt_rate(h_rate),
                  fmt_ratio(None if h_rate is None else r['f_rate'] / h_rate), '>= 10 k/s', r['f_rate'] >= 1e4)
        table.row('  images/s, 1 emulator thread (info)', fmt_rate(r['f1_rate']))
    table.section(f'[3] agreement on {n_hls:,} images')
    if logits is not None:
        table.row('  a: logits (output_dense) bit-identical, fpga4ml vs hls4ml', pct(logits))
    for key in configs:
        r = res[key]
        if 'h_y' in r:
            table.row(f'  {key}: softmax outputs bit-identical (own table semantics)',
                      pct(float(np.mean(np.all(r['h_y'] == r['f_y'], axis=1)))))
        table.row(f'  {key}: argmax == Keras float', pct(float(np.mean(r['f_y'].argmax(1) == y_keras.argmax(1)))),
                  pct(None if 'h_y' not in r else float(np.mean(r['h_y'].argmax(1) == y_keras.argmax(1)))))

    if csim:
        table.section(f"[4] HLS C simulation, config (a), fpga4ml on {n_csim:,} images, hls4ml on {n_hls:,}")
        for io, c in csim.items():  # hls4ml skipped or stopped: BENCHMARKS.md's numbers, marked (quoted)
            prefix = '' if io == 'io_parallel' else 'stream_'
            h_build = c.get('h_build')
            h_rate = c.get('h_rate') or (res['a'].get('h_rate') if io == 'io_parallel' else None)
            build_note = '' if h_build is not None else ' (quoted)'
            rate_note = '' if h_rate is not None else ' (quoted)'
            h_build = QUOTED[prefix + 'compile'] if h_build is None else h_build
            h_rate = QUOTED[prefix + 'rate'] if h_rate is None else h_rate
            table.row(f"  {io}: convert + compile(sim='csim') / compile()", fmt_time(c['build']),
                      fmt_time(h_build) + build_note, fmt_ratio(h_build / c['build']))
            table.row(f'  {io}: C-sim predict, images/s', fmt_rate(c['rate']), fmt_rate(h_rate) + rate_note,
                      fmt_ratio(c['rate'] / h_rate))
            table.row(f'  {io}: C-sim predict, 1 thread (info)', fmt_rate(c['rate1']))
            table.row(f'  {io}: C-sim == fpga4ml emulator, bit for bit', pct(c['equal']), '', '', '100 %',
                      c['equal'] == 1.0)

    fm = res['a']['fm']
    print(f'fpga4ml {fpga4ml.__version__} (git {git_revision()}) vs hls4ml {getattr(hls4ml, "__version__", "n/a")}: '
          f'SVHN CNN 32x32x3 ({model.count_params():,} parameters), backend Vitis, io_parallel '
          f'([4]: also io_stream)')
    print(f'machine: {cpu_model()}, {os.cpu_count()} cores, load average {load_start} at the start, '
          f'{load_average()} at the end')
    print(f'fpga4ml emulator: {fm.emulator.threads} threads, chunk {fm.emulator.chunk} images; numba: {jit_state}; '
          f'{gpp_version() or "no g++"}')
    if hls_note:
        print(f'hls4ml: {hls_note}; hls4ml numbers are quoted from BENCHMARKS.md where marked')
    for key, r in res.items():
        if r.get('h_note'):
            print(f'hls4ml ({key}): {r["h_note"]}; quoting BENCHMARKS.md ({QUOTED["compile"]} s)')
    if csim.get('io_stream', {}).get('h_note'):
        print(f'hls4ml (io_stream): {csim["io_stream"]["h_note"]}; '
              f'quoting BENCHMARKS.md ({QUOTED["stream_compile"]} s)')
    print()
    print(table.render())
    print()
    print(f'note: total wall time {perf() - t_start:.1f} s')
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
