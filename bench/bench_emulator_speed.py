#!/usr/bin/env python
"""The emulator's predict() speed on the SVHN CNN: this tree against a base commit, in one run.

    KERAS_BACKEND=torch python bench/bench_emulator_speed.py                  # this tree vs HEAD
    KERAS_BACKEND=torch python bench/bench_emulator_speed.py --base 799e0c8 --repeats 5 --per-node

The network is the SVHN CNN of BENCHMARKS.md (tests/svhn_model.py: 3 x [Conv2D 3x3, BatchNorm,
ReLU, MaxPool 2x2], Dense 42, 64, 10, softmax) with dense random weights, configured as in
bench_cnn.py's config (a): granularity='model', fixed<16,6> everywhere (BatchNorm stays a separate
Scale node). The base commit is checked out into a temporary git worktree; every measurement runs
in a fresh interpreter per tree, the trees alternating, and the best of --repeats is printed:

  images/s, 2 threads   Emulator.predict throughput (the default threads), wall clock
  CPU us/image, 1 thread  process_time of Emulator(threads=1).run per image (steadier on a noisy VM)

Both trees' outputs on the same images are compared bit for bit (a difference is an error).
The float32 floor beside them: the same network's float32 forward in numpy (im2col + BLAS per conv,
ReLU, max pool, dense; BatchNorm folded away), in the emulator's chunks and in chunks of 256, CPU
time with one thread. --per-node adds this tree's CPU time per node (1 thread, one chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r'''
import hashlib, json, sys, time, tempfile, warnings
from pathlib import Path
tree, bench, n, per_node = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
sys.path[:0] = [tree, str(Path(tree) / 'tests'), str(Path(bench).parent / 'tests')]
warnings.simplefilter('ignore')
import numpy as np
import fpga4ml
from fpga4ml.emulator.engine import Emulator
from svhn_model import svhn_keras
km = svhn_keras(0, input_name='input_1', logits_name='output_dense', softmax=True)
cfg = fpga4ml.utils.config_from_keras_model(km, granularity='model', default_precision='fixed<16,6>')
model = fpga4ml.converters.convert_from_keras_model(km, hls_config=cfg, output_dir=tempfile.mkdtemp())
x = np.random.default_rng(1).uniform(0, 1, (n, 32, 32, 3))
out = {}
model.predict(x[:200])
walls = []
for _ in range(3):
    t0 = time.perf_counter(); model.predict(x); walls.append(time.perf_counter() - t0)
out['rate'] = n / min(walls)
one = Emulator(model.graph, model.intervals, threads=1)
one.run(x[:200])
cpus = []
for _ in range(3):
    t0 = time.process_time(); one.run(x); cpus.append(time.process_time() - t0)
out['cpu_us'] = min(cpus) / n * 1e6
out['chunk'] = one.chunk
out['digest'] = hashlib.sha256(np.ascontiguousarray(model.predict(x[:500])[0]).tobytes()).hexdigest()
if per_node:
    c = x[:one.chunk]
    vals, best = {}, {}
    for _ in range(20):
        for node in model.graph:
            if node.op == 'Input':
                vals[node.name] = node.result_type.quantize(c)
                continue
            t0 = time.process_time()
            vals[node.name] = one.kernels[node.name]([vals[i] for i in node.inputs], None)
            best[node.name] = min(best.get(node.name, 1e9), time.process_time() - t0)
    out['nodes'] = [(k, model.graph[k].op, v / len(c) * 1e6) for k, v in best.items()]
print('RESULT ' + json.dumps(out))
'''

FLOOR = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from bench_conv_kernel import float_forward
rng = np.random.default_rng(0)
run = float_forward(rng)
x = rng.uniform(0, 1, (int(sys.argv[2]), 32, 32, 3)).astype(np.float32)
out = {}
for chunk in (int(sys.argv[3]), 256):
    parts = [x[i:i + chunk] for i in range(0, len(x), chunk)]
    run(parts[0])
    best = 1e9
    for _ in range(3):
        t0 = time.process_time()
        for p in parts:
            run(p)
        best = min(best, time.process_time() - t0)
    out[str(chunk)] = best / len(x) * 1e6
print('RESULT ' + json.dumps(out))
'''


def _run(code: str, args: list[str], env: dict) -> dict:
    """Run a worker in a fresh interpreter; its RESULT line as a dict."""
    proc = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode or not lines:
        raise SystemExit(f'worker {args[:1]} failed:\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][7:])


def measure(tree: Path, n: int, per_node: bool) -> dict:
    """One fresh-interpreter measurement of the package in `tree` (BLAS on one thread)."""
    env = dict(os.environ, KERAS_BACKEND=os.environ.get('KERAS_BACKEND', 'torch'), OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return _run(WORKER, [str(tree), str(ROOT / 'bench'), str(n), '1' if per_node else '0'], env)


def main(argv=None) -> int:
    """Measure this tree and the base commit side by side; print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--base', default='HEAD', help='the earlier commit (default HEAD: the uncommitted change)')
    ap.add_argument('--repeats', type=int, default=5, help='fresh processes per tree')
    ap.add_argument('--images', type=int, default=4000)
    ap.add_argument('--per-node', action='store_true', help="also print this tree's CPU time per node")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix='fpga4ml-base-')) / 'tree'
    subprocess.run(['git', '-C', str(ROOT), 'worktree', 'add', '--detach', '-q', str(base), args.base], check=True)
    try:
        runs: dict[str, list[dict]] = {'this': [], 'base': []}
        for k in range(args.repeats):
            runs['base'].append(measure(base, args.images, False))
            runs['this'].append(measure(ROOT, args.images, args.per_node and k == 0))
    finally:
        subprocess.run(['git', '-C', str(ROOT), 'worktree', 'remove', '--force', str(base)], check=False)
    if runs['this'][0]['digest'] != runs['base'][0]['digest']:
        raise SystemExit('the outputs of this tree and the base differ')
    chunk = runs['this'][0]['chunk']
    floor = _run(FLOOR, [str(ROOT / 'bench'), str(args.images), str(chunk)], dict(os.environ, OMP_NUM_THREADS='1',
                                                                                   OPENBLAS_NUM_THREADS='1'))
    rate = {t: max(r['rate'] for r in rs) for t, rs in runs.items()}
    cpu = {t: min(r['cpu_us'] for r in rs) for t, rs in runs.items()}
    print(f'SVHN CNN, fixed<16,6>, {args.images} images, chunk {chunk} (this tree), best of {args.repeats}; '
          f'outputs bit-identical')
    print(f'{"":30s}{"this":>12s}{"base " + args.base[:8]:>16s}{"this/base":>11s}')
    print(f'{"predict images/s, 2 threads":30s}{rate["this"]:12,.0f}{rate["base"]:16,.0f}'
          f'{rate["this"] / rate["base"]:11.2f}')
    print(f'{"CPU us/image, 1 thread":30s}{cpu["this"]:12.1f}{cpu["base"]:16.1f}{cpu["this"] / cpu["base"]:11.2f}')
    for c, us in floor.items():
        print(f'{"float32 floor, chunk " + c + ", us/img":30s}{us:12.1f}   (numpy im2col + BLAS, 1 thread CPU)')
    if args.per_node:
        print('\nthis tree, CPU us/image per node (1 thread, one chunk, best of 20):')
        for name, op, us in runs['this'][0]['nodes']:
            print(f'  {name:18s} {op:12s} {us:7.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
