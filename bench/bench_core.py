#!/usr/bin/env python
"""fpga4ml vs hls4ml 1.3.0 on the JSC MLP, side by side in one process.

    KERAS_BACKEND=torch python bench/bench_core.py            # full run: ~45 s idle, ~90 s loaded (2 cores)
    KERAS_BACKEND=torch python bench/bench_core.py --quick    # smaller run: ~25-45 s
    make bench [BENCH_ARGS=--quick]                           # the same through the project's venv

Model: the hls4ml tutorial's jet-tagging MLP (see /work/shared/BENCHMARKS.md): Input(16) ->
Dense 64 -> ReLU -> Dense 32 -> ReLU -> Dense 32 -> ReLU -> Dense 5 -> Softmax, lecun_uniform,
l1(1e-4). By default it is trained for 2 epochs on synthetic data labelled by a fixed random
"teacher" network (seeded; `--no-train` keeps the seeded random initial weights, whose biases are 0).
Inputs are standard-normal, like the standardized JSC features.

Configs:
  (a) hls4ml's default `config_from_keras_model(model, granularity='model')`: ap_fixed<16,6> for
      every type (products truncated into a 16-bit accumulator), the same dict for both libraries.
  (b) `granularity='name'`: 'auto' precisions; hls4ml's config is generated with backend='Vitis',
      fpga4ml's by fpga4ml.config_from_keras_model(model, granularity='name').

Measurements (all with time.perf_counter; nothing is asserted, the script only prints):
  [1] convert + compile: hls4ml convert_from_keras_model(backend='Vitis', io_type='io_parallel')
      + compile() (writes the C++ project and runs g++) vs fpga4ml's. First call in the process
      and the median of N.
  [2] predict throughput: fpga4ml on N samples (best of 3 after a warm-up), hls4ml C simulation
      on M samples (best of 2 after a warm-up), in samples/s.
  [3] float floor: fpga4ml's predict time against a float32 numpy forward pass of the same
      network on the same samples (fpga4ml.emulator.reference.float_forward on the unfused
      front-end graph, and a hand-written 4-matmul forward).
  [4] agreement on the hls4ml samples: bit-identical outputs (per layer, from hls4ml.trace()),
      argmax agreement with Keras float, number of distinct output vectors.

Targets are printed next to the numbers with 'met' / 'MISSED'; they are goals, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

perf = time.perf_counter


# ---------------------------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def quiet():
    """Silence stdout/stderr at the file-descriptor level (hls4ml's prints, C++ prints, warnings).

    The captured text is printed if the block raises, so failures stay diagnosable.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    log = tempfile.TemporaryFile(mode='w+b')
    saved = os.dup(1), os.dup(2)
    py_out = io.StringIO()
    failed = False
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_out), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    except BaseException:
        failed = True
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        if failed:
            log.seek(0)
            text = py_out.getvalue() + log.read().decode(errors='replace')
            print('---- captured output of the failing step (last 3000 chars) ----\n' + text[-3000:], file=sys.stderr)
        log.close()


def fmt_time(s: float | None) -> str:
    if s is None:
        return 'n/a'
    if s < 1e-3:
        return f'{s * 1e6:.0f} us'
    if s < 1:
        return f'{s * 1e3:.1f} ms'
    return f'{s:.2f} s'


def fmt_rate(r: float | None) -> str:
    if r is None:
        return 'n/a'
    if r >= 1e6:
        return f'{r / 1e6:.2f} M/s'
    if r >= 1e3:
        return f'{r / 1e3:.1f} k/s'
    return f'{r:.0f} /s'


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return ''
    return f'{r:,.0f}x' if r >= 100 else f'{r:.1f}x'


def pct(x: float | None) -> str:
    return 'n/a' if x is None else f'{100 * x:.2f} %'


class Table:
    """Rows of (measurement, fpga4ml, hls4ml, ratio, target, status), printed aligned."""

    HEAD = ('measurement', 'fpga4ml', 'hls4ml', 'ratio', 'target', '')

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...] | str] = []

    def section(self, title: str) -> None:
        self.rows.append(title)

    def row(self, name: str, f: str = '', h: str = '', ratio: str = '', target: str = '', ok: bool | None = None):
        status = '' if ok is None else ('met' if ok else 'MISSED')
        self.rows.append((name, f, h, ratio, target, status))

    def render(self) -> str:
        cells = [self.HEAD] + [r for r in self.rows if isinstance(r, tuple)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(self.HEAD))]
        total = sum(widths) + 2 * (len(widths) - 1)

        def line(r):
            return '  '.join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()
        out = [line(self.HEAD), '-' * total]
        for r in self.rows:
            out.append(r if isinstance(r, str) else line(r))
        return '\n'.join(out)


def median(xs):
    return statistics.median(xs) if xs else None


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = perf()
        fn()
        times.append(perf() - t0)
    return min(times)


# ---------------------------------------------------------------------------------------------- machine

def blas_info(np) -> str:
    try:
        cfg = np.show_config(mode='dicts')
        blas = cfg['Build Dependencies']['blas']
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return 'unknown'


def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpp_version() -> str | None:
    gpp = shutil.which('g++')
    if gpp is None:
        return None
    out = subprocess.run([gpp, '--version'], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else 'g++ (unknown version)'


def numba_cache_state() -> str:
    """Whether numba's on-disk cache of the emulator kernel exists before this run's first predict."""
    from fpga4ml.emulator import fast
    if not fast.available():
        return 'numba not installed: pure-numpy kernels'
    dirs = [Path(fast.__file__).parent / '__pycache__']
    if os.environ.get('NUMBA_CACHE_DIR'):
        dirs = [Path(os.environ['NUMBA_CACHE_DIR'])]
    found = any(d.exists() and any(d.rglob('fast._dense_floor_shift*.nbi')) for d in dirs)
    return 'on-disk JIT cache present (first predict loads it)' if found else \
        'no on-disk JIT cache (first predict compiles the kernel)'


class BlasThreads:
    """Get/set numpy's OpenBLAS thread count at run time (threadpoolctl when installed, else ctypes).

    On a loaded 2-core machine multithreaded OpenBLAS can run a small-matrix forward pass ~10x
    slower than one thread, so the float floor is timed with both settings and the faster is kept.
    """

    PREFIXES = ('scipy_openblas_', 'openblas_')
    SUFFIXES = ('64_', '')

    def __init__(self) -> None:
        import ctypes
        self.funcs = []
        try:
            paths = {line.split()[-1] for line in open('/proc/self/maps') if '/' in line}
        except OSError:
            paths = set()
        for path in sorted(p for p in paths if 'openblas' in os.path.basename(p).lower()):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pre in self.PREFIXES:
                for suf in self.SUFFIXES:
                    get, put = f'{pre}get_num_threads{suf}', f'{pre}set_num_threads{suf}'
                    if hasattr(lib, get) and hasattr(lib, put):
                        getattr(lib, get).restype = ctypes.c_int
                        self.funcs.append((getattr(lib, get), getattr(lib, put)))
                        break
                else:
                    continue
                break

    def get(self) -> int | None:
        return int(self.funcs[0][0]()) if self.funcs else None

    @contextlib.contextmanager
    def limit(self, n: int):
        import ctypes
        old = [g() for g, _ in self.funcs]
        for _, put in self.funcs:
            put(ctypes.c_int(n))
        try:
            yield
        finally:
            for (_, put), o in zip(self.funcs, old):
                put(ctypes.c_int(o))


def git_revision() -> str:
    """The repository's commit, with '+dirty' when the working tree has changes (or 'unknown')."""
    try:
        rev = subprocess.run(['git', 'describe', '--always', '--dirty=+dirty'], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        return rev.stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def load_average() -> str:
    try:
        return ' '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return 'n/a'


# ---------------------------------------------------------------------------------------------- model

def build_model(keras, np, seed: int, train: bool, epochs: int, n_train: int):
    """The JSC MLP (hls4ml tutorial layout and names), seeded; optionally trained on teacher data."""
    from keras import layers, regularizers
    keras.utils.set_random_seed(seed)
    reg = regularizers.l1(1e-4)
    kw = dict(kernel_initializer='lecun_uniform', kernel_regularizer=reg)
    model = keras.Sequential([
        keras.Input((16,), name='input_1'),
        layers.Dense(64, name='fc1', **kw), layers.Activation('relu', name='relu1'),
        layers.Dense(32, name='fc2', **kw), layers.Activation('relu', name='relu2'),
        layers.Dense(32, name='fc3', **kw), layers.Activation('relu', name='relu3'),
        layers.Dense(5, name='output', **kw), layers.Activation('softmax', name='softmax'),
    ], name='jsc_mlp')
    info = 'seeded random weights (lecun_uniform, zero biases), not trained'
    if train:
        rng = np.random.default_rng(seed + 1)
        w1, w2 = rng.normal(size=(16, 32)), rng.normal(size=(32, 5))
        x = rng.normal(size=(n_train, 16)).astype(np.float32)
        y = np.argmax(np.tanh(x @ w1 / 4) @ w2 + 0.3 * rng.gumbel(size=(n_train, 5)), axis=1)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy',
                      metrics=['accuracy'])
        t0 = perf()
        torch_threads = None
        if keras.backend.backend() == 'torch':  # a tiny MLP trains faster on one thread, more so on a loaded machine
            import torch
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        try:
            hist = model.fit(x, y, batch_size=256, epochs=epochs, verbose=0, shuffle=True)
        finally:
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
        acc = hist.history['accuracy'][-1]
        info = (f'trained {epochs} epochs on {n_train:,} synthetic teacher-labelled samples '
                f'({perf() - t0:.1f} s, train accuracy {100 * acc:.1f} %)')
    return model, info


def layer_breakdown(emulator, x, perf, repeats: int = 20) -> dict[str, float]:
    """Seconds per sample spent in each node of the emulator on one chunk, single-threaded."""
    total: dict[str, float] = {}
    graph = emulator.graph
    for _ in range(repeats):
        values = {}
        for node in graph:
            t0 = perf()
            if node.op == 'Input':
                out = node.result_type.quantize(x)
            else:
                out = emulator.kernels[node.name]([values[i] for i in node.inputs], None)
            total[node.name] = total.get(node.name, 0.0) + perf() - t0
            values[node.name] = out
    return {k: v / repeats / len(x) for k, v in total.items()}


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='smaller run: 20k/2k samples, 1 hls4ml compile per config')
    ap.add_argument('--n-predict', type=int, help='samples for fpga4ml and the float floor (default 100000)')
    ap.add_argument('--n-hls', type=int, help='samples for hls4ml predict and agreement (default 10000)')
    ap.add_argument('--hls-repeats', type=int, help='hls4ml convert+compile repeats per config (default 3)')
    ap.add_argument('--repeats', type=int, default=3,
                    help='fpga4ml convert+compile runs (median) and predict/float-floor timings (best of); default 3')
    ap.add_argument('--no-train', action='store_true', help='use the seeded random initial weights')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--cold-jit', action='store_true',
                    help="point NUMBA_CACHE_DIR at an empty folder: the first predict pays numba's full JIT "
                         'compile, as on a fresh clone')
    ap.add_argument('--breakdown', action='store_true',
                    help="print each fpga4ml layer's share of predict time (one thread, one chunk)")
    ap.add_argument('--keep', action='store_true', help='keep the hls4ml project folders')
    args = ap.parse_args(argv)
    n_pred = args.n_predict or (20_000 if args.quick else 100_000)
    n_hls = min(args.n_hls or (2_000 if args.quick else 10_000), n_pred)
    hls_repeats = args.hls_repeats or (1 if args.quick else 3)
    f_repeats = args.repeats
    t_start = perf()
    load_start = load_average()

    workdir = Path(tempfile.mkdtemp(prefix='bench_core_'))
    if args.cold_jit:
        os.environ['NUMBA_CACHE_DIR'] = str(workdir / 'numba_cache')

    import numpy as np
    t0 = perf()
    with quiet():
        import keras
    t_keras_import = perf() - t0

    t0 = perf()
    import fpga4ml
    t_f_import = perf() - t0
    from fpga4ml.emulator import fast
    from fpga4ml.emulator.reference import float_forward
    from fpga4ml.frontends.keras import keras_to_graph
    jit_state = numba_cache_state()

    # hls4ml is a bench/test dependency; without it (or g++) the script still runs fpga4ml's side.
    hls4ml, hls_missing, t_h_import = None, None, None
    gpp = gpp_version()
    if importlib.util.find_spec('hls4ml') is None:
        hls_missing = 'hls4ml is not installed (pip install -e .[bench])'
    elif gpp is None:
        hls_missing = 'g++ not found: hls4ml cannot compile its C simulation'
    else:
        if importlib.util.find_spec('da4ml') is not None:
            sys.modules['da4ml'] = None  # BENCHMARKS.md: hls4ml's Keras 3 parser trips over an installed da4ml
        t0 = perf()
        with quiet():
            import hls4ml
        t_h_import = perf() - t0

    try:
        import numba
        numba_v = numba.__version__
    except ImportError:
        numba_v = None

    # ------------------------------------------------------------------ model and data
    with quiet():
        model, weights_info = build_model(keras, np, args.seed, not args.no_train, epochs=2 if not args.quick else 1,
                                          n_train=30_000 if not args.quick else 20_000)
    rng = np.random.default_rng(args.seed + 2)
    x = np.ascontiguousarray(rng.standard_normal((n_pred, 16)))  # float64, C order: what hls4ml wants
    x_hls = x[:n_hls]
    with quiet():
        y_keras = np.asarray(model.predict(x_hls.astype(np.float32), batch_size=4096, verbose=0))
    n_params = model.count_params()

    table = Table()
    notes: list[str] = []
    results: dict = {}

    configs = {
        'a': dict(label="(a) granularity='model', fixed<16,6>", granularity='model', hls_backend=None),
        'b': dict(label="(b) granularity='name', 'auto'", granularity='name', hls_backend='Vitis'),
    }

    # ------------------------------------------------------------------ [1] convert + compile
    f_models, h_models = {}, {}
    for key, c in configs.items():
        r = results.setdefault(key, {})
        # fpga4ml: config, then convert + compile; first call separately, then the median of f_repeats
        t0 = perf()
        f_cfg = fpga4ml.config_from_keras_model(model, granularity=c['granularity'])
        r['f_config'] = perf() - t0
        conv, comp, tot = [], [], []
        for i in range(f_repeats + 1):
            cfg_i = copy.deepcopy(f_cfg)
            t0 = perf()
            fm = fpga4ml.convert_from_keras_model(model, hls_config=cfg_i, backend='Vitis',
                                                  io_type='io_parallel', output_dir=str(workdir / f'f_{key}_{i}'))
            t1 = perf()
            fm.compile()
            t2 = perf()
            conv.append(t1 - t0), comp.append(t2 - t1), tot.append(t2 - t0)
        r['f_first'] = tot[0]
        r['f_convert'], r['f_compile'], r['f_total'] = median(conv[1:]), median(comp[1:]), median(tot[1:])
        # first predict: numba JIT compile or cache load happens here, not in compile()
        t0 = perf()
        fm.predict(x[:64])
        r['f_first_predict'] = perf() - t0
        f_models[key] = fm

        if hls4ml is None:
            continue
        with quiet():
            t0 = perf()
            kw = {} if c['hls_backend'] is None else {'backend': c['hls_backend']}
            h_cfg = hls4ml.utils.config_from_keras_model(model, granularity=c['granularity'], **kw)
            r['h_config'] = perf() - t0
        conv, comp, tot = [], [], []
        for i in range(hls_repeats):
            out_dir = workdir / f'hls_{key}_{i}'
            cfg_i = copy.deepcopy(h_cfg)
            with quiet():
                t0 = perf()
                hm = hls4ml.converters.convert_from_keras_model(
                    model, hls_config=cfg_i, backend='Vitis', io_type='io_parallel',
                    output_dir=str(out_dir))
                t1 = perf()
                hm.compile()
                t2 = perf()
            conv.append(t1 - t0), comp.append(t2 - t1), tot.append(t2 - t0)
            if i < hls_repeats - 1 and not args.keep:
                shutil.rmtree(out_dir, ignore_errors=True)
        r['h_first'] = tot[0]
        r['h_convert'], r['h_compile'], r['h_total'] = median(conv), median(comp), median(tot)
        r['h_cfg'] = h_cfg
        h_models[key] = hm

    # ------------------------------------------------------------------ [2] + [3] predict and float floor
    # fpga4ml and the float floors are timed in interleaved rounds (best of f_repeats each), so a
    # load change on a shared machine hits both sides of the ratio alike.
    graph = keras_to_graph(model)  # unfused front-end graph, float weights
    dense = [layer for layer in model.layers if layer.__class__.__name__ == 'Dense']
    ws = [(np.asarray(d.kernel.numpy(), np.float32), np.asarray(d.bias.numpy(), np.float32)) for d in dense]
    x32 = x.astype(np.float32)

    def hand_forward(a):
        for w, b in ws[:-1]:
            a = a @ w
            a += b
            np.maximum(a, 0, out=a)
        z = a @ ws[-1][0]
        z += ws[-1][1]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    blas = BlasThreads()
    blas_default = blas.get()
    floor_threads = [blas_default] + ([1] if blas_default not in (None, 1) else [])
    timed = {f'f_{key}': (lambda fm=f_models[key]: fm.predict(x)) for key in configs}
    emu_threads = f_models['a'].emulator.threads
    if emu_threads > 1:  # informational: the emulator with one chunk thread (robust on a loaded machine)
        def one_thread(fm):
            fm.emulator.threads = 1
            try:
                fm.predict(x)
            finally:
                fm.emulator.threads = emu_threads
        for key in configs:
            timed[f'f1_{key}'] = lambda fm=f_models[key]: one_thread(fm)
    for nt in floor_threads:
        timed[f'float_forward/{nt}'] = lambda: float_forward(graph, x32, dtype=np.float32)
        timed[f'hand/{nt}'] = lambda: hand_forward(x32)

    def call(k):
        if '/' in k and blas.funcs:
            with blas.limit(int(k.split('/')[1])):
                t0 = perf()
                timed[k]()
                return perf() - t0
        t0 = perf()
        timed[k]()
        return perf() - t0
    for k in timed:  # warm-up
        call(k)
    times: dict[str, list[float]] = {k: [] for k in timed}
    for _ in range(f_repeats):
        for k in timed:
            times[k].append(call(k))
    floor_best = {}
    for what in ('float_forward', 'hand'):
        nt = min(floor_threads, key=lambda n: min(times[f'{what}/{n}']))
        floor_best[what] = (min(times[f'{what}/{nt}']), nt, {n: min(times[f'{what}/{n}']) for n in floor_threads})
    t_ff, t_hand = floor_best['float_forward'][0], floor_best['hand'][0]
    y_hand = hand_forward(x32[:n_hls])
    notes.append(f'hand-written float32 forward vs Keras: max |diff| = {np.max(np.abs(y_hand - y_keras)):.2e}')
    for key in configs:
        r = results[key]
        fm = f_models[key]
        r['f_pred_time'] = min(times[f'f_{key}'])
        r['f_rate'] = n_pred / r['f_pred_time']
        if f'f1_{key}' in times:
            r['f1_rate'] = n_pred / min(times[f'f1_{key}'])
        r['f_y_hls'] = np.asarray(fm.predict(x_hls))
        if key in h_models:
            hm = h_models[key]
            with quiet():
                hm.predict(x_hls[:100])  # warm-up
                t = []
                for _ in range(1 if args.quick else 2):
                    t0 = perf()
                    y_h = hm.predict(x_hls)
                    t.append(perf() - t0)
            r['h_pred_time'] = min(t)
            r['h_rate'] = n_hls / r['h_pred_time']
            r['h_y'] = np.asarray(y_h).reshape(n_hls, -1)

    breakdown = {}
    if args.breakdown:
        for key in configs:
            breakdown[key] = layer_breakdown(f_models[key].emulator, x[:f_models[key].emulator.chunk], perf)

    # ------------------------------------------------------------------ [4] agreement
    am_keras = y_keras.argmax(axis=1)
    for key in configs:
        r = results[key]
        r['f_argmax'] = float(np.mean(r['f_y_hls'].argmax(axis=1) == am_keras))
        r['f_distinct'] = len(np.unique(r['f_y_hls'], axis=0))
        if 'h_y' in r:
            r['h_argmax'] = float(np.mean(r['h_y'].argmax(axis=1) == am_keras))
            r['h_distinct'] = len(np.unique(r['h_y'], axis=0))
            r['bit_identical'] = float(np.mean(np.all(r['h_y'] == r['f_y_hls'], axis=1)))
    # per-layer bit identity for config (a): hls4ml.trace() recompiles the (a) project with tracing
    layer_identity = None
    if 'a' in h_models:
        hm = h_models['a']
        for layer in hm.get_layers():
            layer.set_attr('trace', True)
        with quiet():
            t0 = perf()
            _, h_trace = hm.trace(x_hls)
            t_trace = perf() - t0
        _, f_trace = f_models['a'].trace(x_hls)
        layer_identity = []
        for name, h_val in h_trace.items():
            if name in f_trace:
                same = np.all(h_val.reshape(n_hls, -1) == np.asarray(f_trace[name]).reshape(n_hls, -1), axis=1)
                layer_identity.append((name, float(np.mean(same))))
        notes.append(f'hls4ml.trace() for the per-layer comparison: {t_trace:.1f} s (recompile + per-sample loop)')

    # ------------------------------------------------------------------ report
    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    for key, c in configs.items():
        r = results[key]
        table.section(f"[1] convert + compile, {c['label']}")
        table.row('  config_from_keras_model', fmt_time(r['f_config']), fmt_time(r.get('h_config')),
                  fmt_ratio(ratio(r.get('h_config'), r['f_config'])))
        table.row(f'  convert_from_keras_model (median)', fmt_time(r['f_convert']), fmt_time(r.get('h_convert')),
                  fmt_ratio(ratio(r.get('h_convert'), r['f_convert'])))
        table.row(f'  compile() (median)', fmt_time(r['f_compile']), fmt_time(r.get('h_compile')),
                  fmt_ratio(ratio(r.get('h_compile'), r['f_compile'])))
        table.row('  convert + compile, first call', fmt_time(r['f_first']), fmt_time(r.get('h_first')),
                  fmt_ratio(ratio(r.get('h_first'), r['f_first'])))
        rc = ratio(r.get('h_total'), r['f_total'])
        table.row(f'  convert + compile, median of {f_repeats} / {hls_repeats}', fmt_time(r['f_total']),
                  fmt_time(r.get('h_total')), fmt_ratio(rc), '>= 50x', None if rc is None else rc >= 50)
        table.row('  first predict() (numba JIT/cache)', fmt_time(r['f_first_predict']), '', '')
    for key, c in configs.items():
        r = results[key]
        table.section(f"[2] predict throughput, {c['label']}")
        table.row(f'  fpga4ml {n_pred:,} samples (best of {f_repeats})', fmt_time(r['f_pred_time']))
        if 'h_pred_time' in r:
            table.row(f'  hls4ml C-sim {n_hls:,} samples', '', fmt_time(r['h_pred_time']))
        table.row(f'  samples/s ({emu_threads} emulator threads)', fmt_rate(r['f_rate']), '', '', '>= 1 M/s',
                  r['f_rate'] >= 1e6)
        if 'f1_rate' in r:
            table.row('  samples/s (1 emulator thread, info)', fmt_rate(r['f1_rate']))
        rr = ratio(r['f_rate'], r.get('h_rate'))
        table.row('  samples/s vs hls4ml', fmt_rate(r['f_rate']), fmt_rate(r.get('h_rate')), fmt_ratio(rr),
                  '>= 60x', None if rr is None else rr >= 60)
    table.section(f'[3] float floor, {n_pred:,} samples, float32 (best of {f_repeats})')
    for what, label in (('float_forward', 'float_forward(graph, float32)'), ('hand', 'hand-written 4-matmul numpy')):
        t, nt, per = floor_best[what]
        detail = ', '.join(f'{n} BLAS thr {fmt_time(v)}' for n, v in per.items())
        table.row(f'  {label}', fmt_time(t), '', '', '', None)
        notes.append(f'float floor {what}: {detail}; kept the faster ({nt} thread{"s" if nt != 1 else ""})')
    for key, c in configs.items():
        r = results[key]
        for what, t in (('float_forward', t_ff), ('hand numpy', t_hand)):
            rf = r['f_pred_time'] / t
            table.row(f'  fpga4ml {key} predict / {what}', f'{rf:.1f}x', '', '', '<= 5x', rf <= 5)
    table.section(f'[4] agreement on {n_hls:,} samples')
    for key, c in configs.items():
        r = results[key]
        if 'bit_identical' in r:
            table.row(f'  {key}: final outputs bit-identical, f vs h', pct(r['bit_identical']))
        if key == 'a' and layer_identity:
            for name, frac in layer_identity:
                table.row(f'    a: layer {name}, f vs h', pct(frac))
    for key, c in configs.items():
        r = results[key]
        table.row(f'  {key}: argmax == Keras float', pct(r['f_argmax']), pct(r.get('h_argmax')))
        table.row(f'  {key}: distinct output vectors', f"{r['f_distinct']:,}",
                  'n/a' if 'h_distinct' not in r else f"{r['h_distinct']:,}")
    if 'h_distinct' in results['b'] and results['b']['h_distinct'] == 1:
        const = results['b']['h_y'][0]
        notes.append(f"hls4ml (b) returns one constant output vector for every sample: {np.round(const, 4).tolist()}; "
                     f"its argmax (class {int(const.argmax())}) matches Keras only where Keras picks that class "
                     f"({pct(float(np.mean(am_keras == const.argmax())))} of the samples)")

    # ------------------------------------------------------------------ print
    import torch
    print(f'fpga4ml {fpga4ml.__version__} (git {git_revision()}) vs hls4ml {getattr(hls4ml, "__version__", "n/a")}: JSC MLP '
          f'16-64-32-32-5 ({n_params:,} parameters), backend Vitis, io_parallel')
    print(f'weights: {weights_info} (seed {args.seed}); inputs: standard normal, float64')
    print(f'machine: {cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), '
          f'load average {load_start} at the start, {load_average()} at the end')
    print(f'python {platform.python_version()}, numpy {np.__version__} (BLAS: {blas_info(np)}), '
          f'numba {numba_v or "absent"} ({"used" if fast.available() else "not used"}), keras {keras.__version__} '
          f'({os.environ.get("KERAS_BACKEND")}, torch {torch.__version__}), {gpp or "no g++"}')
    print(f'numpy BLAS threads: {blas_default if blas_default is not None else "unknown (not OpenBLAS)"}; '
          f'fpga4ml emulator: {f_models["a"].emulator.threads} threads, chunk {f_models["a"].emulator.chunk}; '
          f'numba: {jit_state}')
    if hls_missing:
        print(f'hls4ml columns are n/a: {hls_missing}')
    print()
    print(table.render())
    print()
    for n in notes:
        print('note: ' + n)
    for key, bd in breakdown.items():
        tot = sum(bd.values())
        parts = ', '.join(f'{k} {100 * v / tot:.0f}%' for k, v in bd.items())
        print(f'breakdown {key}: {tot * 1e9:.0f} ns/sample single-threaded: {parts}')
    for key in configs:
        if 'h_cfg' in results[key] and key == 'b':
            sm = results[key]['h_cfg'].get('LayerName', {}).get('softmax', {})
            print(f"note: hls4ml (b) softmax config: {sm.get('Precision')}, Implementation {sm.get('Implementation')}")
    print(f'note: imports: keras {t_keras_import:.2f} s, fpga4ml {t_f_import:.2f} s, hls4ml '
          f'{"n/a" if t_h_import is None else f"{t_h_import:.2f} s"}; total wall time {perf() - t_start:.1f} s')
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f'note: projects kept in {workdir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
