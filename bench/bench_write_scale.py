"""Verilog generation time and memory against model size (MLPs of about 1k, 10k and 100k parameters).

Each model is an MLP of 8-bit weights and biases (fixed<8,3>: mantissas drawn uniformly from the
whole 8-bit range with a fixed seed, so almost every weight is non-zero), fixed<8,3> inputs,
ReLU quantized to ufixed<8,3,TRN,SAT> and exact ('auto') accumulators: the network of
bench_verilog.py at 8 bits and other sizes. For every model the script times, each in a fresh
subprocess (so the peak memory, resource.getrusage's ru_maxrss, belongs to that step alone):

* fpga4ml Verilog ``write()`` (lowering with common subexpressions, pipelining, emission, files);
* fpga4ml HLS ``write()`` (the Vitis project) and the emulator's ``predict()`` on 10,000 samples,
  for comparison;
* where da4ml 0.6 is installed (the ``bench`` extra; LGPL, so only ever imported in its own
  subprocess, never by the fpga4ml package), the same network through da4ml's ``comb_trace`` and
  ``RTLModel.write()`` (bench_verilog.build_da4ml), with the time ratio fpga4ml / da4ml.

    python bench/bench_write_scale.py                     # 1k, 10k, 100k (a few minutes with da4ml)
    python bench/bench_write_scale.py --models 100k --progress
    python bench/bench_write_scale.py --models wide       # one Dense 16 -> 100,000 (1.6M weights)

Printed per model: parameters, non-zero weights, seconds, peak memory [MB], seconds per 1,000
non-zero weights, the cost model's LUT estimate (fpga4ml) and da4ml's own cost. The target of
issue 18 (85k parameters written in under 60 s) is printed as met / MISSED next to the numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODELS = {'1k': (16, 32, 16, 5), '10k': (64, 64, 64, 10), '100k': (64, 256, 256, 10), 'wide': (16, 100_000)}
WEIGHT_TYPE = 'fixed<8,3>'
INPUT_TYPE = ('fixed<8,3>', (1, 2, 5))            # fpga4ml type, da4ml (k, i, f)
RELU_TYPE = ('ufixed<8,3,TRN,SAT>', (0, 3, 5))
TARGET = ('100k', 60.0)                           # issue 18: the 85k-parameter MLP in under 60 s
PREDICT_SAMPLES = 10_000


def layers_of(sizes: tuple[int, ...], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed-seed 8-bit weights and biases: mantissas uniform over [-128, 127], step 2^-5."""
    rng = np.random.default_rng(seed)
    return [((rng.integers(-128, 128, (a, b)) / 32).astype(np.float32), (rng.integers(-128, 128, b) / 32).astype(np.float32))
            for a, b in zip(sizes[:-1], sizes[1:])]


def peak_mb() -> float:
    """This process's peak resident memory in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def convert(layers, out: Path, backend: str):
    """The MLP as an fpga4ml model for `backend` (bench_verilog.convert_fpga4ml with the 8-bit types)."""
    from bench_verilog import convert_fpga4ml

    return convert_fpga4ml(layers, out, 5.0, WEIGHT_TYPE, INPUT_TYPE, RELU_TYPE, backend=backend,
                           project_name='scale_fpga4ml')


def worker(tool: str, name: str, out: Path, progress: bool) -> dict:
    """One measurement in this (fresh) process; returns its numbers."""
    layers = layers_of(MODELS[name])
    if tool == 'da4ml':
        from bench_verilog import build_da4ml

        comb, latency, seconds = build_da4ml(layers, out, 5.0, INPUT_TYPE, RELU_TYPE)
        return {'seconds': seconds, 'cost': float(comb.cost), 'latency': latency}
    model = convert(layers, out, 'Vitis' if tool == 'hls' else 'Verilog')
    if tool == 'predict':
        x = np.random.default_rng(1).uniform(-4, 4, (PREDICT_SAMPLES, MODELS[name][0]))
        model.compile()
        t0 = time.perf_counter()
        model.predict(x)
        return {'seconds': time.perf_counter() - t0}
    t0 = time.perf_counter()
    if tool == 'verilog' and progress:
        from fpga4ml.backends.verilog.design import write

        write(model, progress=True)
    else:
        model.write()
    seconds = time.perf_counter() - t0
    extra = {}
    if tool == 'verilog':
        est = model.estimate()
        extra = {'lut': est['LUT'], 'latency': est['latency_cycles'], 'adders': est['adders']}
    return {'seconds': seconds, **extra}


def measure(tool: str, name: str, root: Path, progress: bool, timeout: float) -> dict | None:
    """Run one worker subprocess; its numbers plus peak memory, or None on failure/timeout (printed)."""
    out = root / f'{name}_{tool}'
    argv = [sys.executable, str(Path(__file__).resolve()), '--worker', tool, '--models', name, '--out', str(out)]
    if progress:
        argv.append('--progress')
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f'  {tool} on {name}: no result within {timeout:.0f} s', file=sys.stderr)
        return None
    sys.stderr.write(done.stderr if progress or done.returncode else '')
    if done.returncode != 0:
        print(f'  {tool} on {name}: failed (exit {done.returncode})', file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(value, spec: str) -> str:
    """A number formatted, or '-' (as wide) when missing."""
    return format(value, spec) if value is not None else '-'.rjust(int(spec.split('.')[0]))


def report(name: str, results: dict) -> list[str]:
    """The table rows of one model."""
    sizes = MODELS[name]
    layers = layers_of(sizes)
    params = sum(w.size + b.size for w, b in layers)
    nnz = sum(int(np.count_nonzero(w)) for w, _ in layers)
    rows = []
    for tool in ('verilog', 'hls', 'predict', 'da4ml'):
        r = results.get(tool)
        if tool not in results:
            continue
        sec = r['seconds'] if r else None
        per_k = sec / (nnz / 1000) if sec is not None else None
        note = '' if r else 'no result (timed out or failed: see stderr)'
        if not r and tool == 'verilog' and name == TARGET[0]:
            note += f', target < {TARGET[1]:.0f} s MISSED'
        if r and tool == 'verilog':
            note = f"LUT est {r['lut']}, latency {r['latency']}"
            if name == TARGET[0]:
                note += f", target < {TARGET[1]:.0f} s {'met' if sec < TARGET[1] else 'MISSED'}"
        if r and tool == 'da4ml':
            note = f"cost {r['cost']:.0f} LUT, latency {r['latency']}"
            ours = results.get('verilog')
            if ours:
                note += f", fpga4ml / da4ml time {ours['seconds'] / sec:.2f}"
        rows.append(f"{name + ' ' + '-'.join(map(str, sizes)):22s}{params:>9d}{nnz:>9d}  {tool:8s}"
                    f"{fmt(sec, '9.2f')}{fmt(r and r['peak_mb'], '9.0f')}{fmt(per_k, '10.3f')}  {note}")
    return rows


def main(argv=None) -> int:
    """Measure every model with every tool, in subprocesses; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', default='1k,10k,100k', help=f'comma-separated: {", ".join(MODELS)}')
    parser.add_argument('--tools', default='verilog,hls,predict,da4ml', help='comma-separated subset')
    parser.add_argument('--progress', action='store_true', help="show the Verilog writer's progress lines")
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per measurement (default 600)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--out', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.models, Path(args.out), args.progress)
        print(json.dumps({**result, 'peak_mb': peak_mb()}))
        return 0
    tools = args.tools.split(',')
    if 'da4ml' in tools and importlib.util.find_spec('da4ml') is None:
        print('bench_write_scale: da4ml is not installed (pip install da4ml==0.6.0, the bench extra): '
              'its column is left out', file=sys.stderr)
        tools.remove('da4ml')
    print(f'load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)')
    print(f'{"model":22s}{"params":>9s}{"nonzero":>9s}  {"tool":8s}{"seconds":>9s}{"peak MB":>9s}{"s/1k nz":>10s}')
    with tempfile.TemporaryDirectory(prefix='fpga4ml-bench-scale-') as tmp:
        for name in args.models.split(','):
            results = {tool: measure(tool, name, Path(tmp), args.progress, args.timeout) for tool in tools}
            for r in results.values():
                if r is not None:
                    r.setdefault('peak_mb', None)
            print('\n'.join(report(name, results)), flush=True)
    print(f'load average at end: {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'torch')
    sys.exit(main())
