"""Speed and quality of the semantics layer against an earlier commit, side by side in one run.

    KERAS_BACKEND=torch python bench/bench_semantics.py                 # this tree vs HEAD
    KERAS_BACKEND=torch python bench/bench_semantics.py --base f2f06e1 --synth

The earlier commit is checked out into a temporary git worktree; each measurement runs in a fresh
subprocess per tree (alternating, best of --repeats), on the same machine and inputs:
  jsc    predict throughput of the JSC-shaped MLP 16-64-32-32-5 at fixed<16,6>, dense random weights
  svhn   predict throughput of the SVHN CNN of BENCHMARKS.md at fixed<16,6> (dense random weights)
  gen    Verilog generation (convert + write) of bench_verilog.py's quantized JSC MLP, dense and pruned
  lut    (--synth) Yosys LUTs of those two designs (the bench_verilog.py synthesis script)
and prints each pair with the ratio this/base.
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
import json, os, sys, time, tempfile
from pathlib import Path
tree, bench, what, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path[:0] = [tree, bench, str(Path(tree) / 'tests'), str(Path(bench).parent / 'tests')]
import numpy as np
import fpga4ml
out = {}
if what == 'jsc':
    from fpga4ml.convert import convert_graph
    from fpga4ml.ir import Graph, Node
    rng = np.random.default_rng(0)
    g = Graph(); g.add(Node('x', 'Input', [], (16,))); prev = 'x'; sizes = (16, 64, 32, 32, 5)
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        g.add(Node(f'fc{k}', 'Dense', [prev], (b,), weights={'kernel': rng.normal(0, 0.5, (a, b)),
                                                               'bias': rng.normal(0, 0.1, b)}))
        prev = f'fc{k}'
        if k < len(sizes) - 2:
            g.add(Node(f'relu{k}', 'Activation', [prev], (b,), attrs={'function': 'relu'})); prev = f'relu{k}'
    g.inputs, g.outputs = ['x'], [prev]
    model = convert_graph(g, {'Model': {'Precision': 'fixed<16,6>'}}, backend='Vitis', output_dir=tempfile.mkdtemp())
    x = rng.uniform(-4, 4, (n, 16))
    model.predict(x[:1000])
    t = min(_t for _t in [(lambda s: (model.predict(x), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3)])
    out['rate'] = n / t
    out['checksum'] = float(np.asarray(model.predict(x[:2000])).sum())
elif what == 'svhn':
    import warnings; warnings.simplefilter('ignore')
    from svhn_model import svhn_keras
    km = svhn_keras(0, input_name='input_1', logits_name='output_dense', softmax=True)
    cfg = fpga4ml.utils.config_from_keras_model(km, granularity='model', default_precision='fixed<16,6>')
    model = fpga4ml.converters.convert_from_keras_model(km, hls_config=cfg, output_dir=tempfile.mkdtemp())
    x = np.random.default_rng(1).uniform(0, 1, (n, 32, 32, 3))
    model.predict(x[:200])
    t = min((lambda s: (model.predict(x), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))
    out['rate'] = n / t
    out['checksum'] = float(np.asarray(model.predict(x[:500])).sum())
elif what in ('gen', 'lut'):
    import bench_verilog as bv
    for name, sparsity in (('dense', 0.0), ('pruned', 0.5)):
        d = Path(tempfile.mkdtemp())
        times = []
        for _ in range(n if what == 'gen' else 1):
            model, seconds = bv.build_fpga4ml(bv.weights(seed=0, sparsity=sparsity), d, 5.0)
            times.append(seconds)
        out[name] = min(times)
        if what == 'lut':
            out[name] = bv.synth([d / 'jsc_fpga4ml.v'], 'jsc_fpga4ml', 'xcup', 5.0, d)['LUT']
print('RESULT ' + json.dumps(out))
'''


def measure(tree: Path, what: str, n: int) -> dict:
    """Run one measurement in a fresh interpreter on the package in `tree`."""
    env = dict(os.environ, KERAS_BACKEND=os.environ.get('KERAS_BACKEND', 'torch'))
    proc = subprocess.run([sys.executable, '-c', WORKER, str(tree), str(ROOT / 'bench'), what, str(n)],
                          capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode or not lines:
        raise SystemExit(f'{what} on {tree} failed:\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][7:])


def best(runs: list[dict], key: str, higher: bool) -> float:
    values = [r[key] for r in runs]
    return max(values) if higher else min(values)


def main(argv=None) -> int:
    """Measure this tree and the base commit side by side; print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--base', default='HEAD', help='the earlier commit (default HEAD: the uncommitted change)')
    ap.add_argument('--repeats', type=int, default=3, help='fresh processes per tree and measurement')
    ap.add_argument('--synth', action='store_true', help='also synthesize with Yosys (minutes)')
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix='fpga4ml-base-')) / 'tree'
    subprocess.run(['git', '-C', str(ROOT), 'worktree', 'add', '--detach', '-q', str(base), args.base], check=True)
    try:
        rows = []
        plan = [('jsc', 200_000, 'rate', True, 'JSC MLP predict [samples/s]'),
                ('svhn', 5_000, 'rate', True, 'SVHN CNN predict [images/s]'),
                ('gen', 3, 'dense', False, 'Verilog generation, dense [s]'),
                ('gen', 3, 'pruned', False, 'Verilog generation, pruned [s]')]
        if args.synth:
            plan += [('lut', 1, 'dense', False, 'Yosys LUT, dense'), ('lut', 1, 'pruned', False, 'Yosys LUT, pruned')]
        cache: dict = {}
        for what, n, key, higher, label in plan:
            if what not in cache:
                runs = {'this': [], 'base': []}
                for _ in range(args.repeats if what != 'lut' else 1):
                    runs['base'].append(measure(base, what, n))
                    runs['this'].append(measure(ROOT, what, n))
                cache[what] = runs
            runs = cache[what]
            this, ref = best(runs['this'], key, higher), best(runs['base'], key, higher)
            rows.append((label, this, ref))
            if 'checksum' in runs['this'][0] and runs['this'][0]['checksum'] != runs['base'][0]['checksum']:
                print(f'warning: {what} outputs differ between the trees', file=sys.stderr)
        print(f'{"":34s}{"this":>14s}{"base " + args.base[:8]:>16s}{"this/base":>11s}')
        for label, this, ref in rows:
            print(f'{label:34s}{this:14,.2f}{ref:16,.2f}{this / ref:11.3f}')
    finally:
        subprocess.run(['git', '-C', str(ROOT), 'worktree', 'remove', '--force', str(base)], check=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
