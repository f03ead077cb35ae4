"""How close is `model.estimate()` to Yosys? Designs of different sizes, both numbers side by side.

For each design the cost model (no tool, milliseconds) and Yosys (fpga4ml.synth, 'fast' script)
give LUT and FF counts; the script prints both, the relative error and the estimate's run time.
Designs: the small test graphs of the Verilog back end (an MLP, activations, merges, a tiny CNN)
and the quantized JSC MLP of bench_verilog.py, pruned and dense.

    python bench/bench_estimate.py [--family xcup] [--designs mlp,cnn,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / 'tests')]


def designs(root: Path) -> dict:
    """name -> a function building the converted model (Verilog back end) in its own folder."""
    import verilog_models
    from bench_verilog import build_fpga4ml, weights

    def test_graph(graph: str, precision: str):
        return lambda: verilog_models.convert(verilog_models.GRAPHS[graph](), precision,
                                              output_dir=str(root / f'{graph}_{precision}'),
                                              project_name=f'{graph}_{precision}')

    def jsc(sparsity: float, name: str):
        return lambda: build_fpga4ml(weights(0, sparsity), root / name, 5.0)[0]

    return {
        'merges': test_graph('merges', 'auto'),
        'activations': test_graph('activations', 'narrow_sat'),
        'mlp': test_graph('mlp', 'auto'),
        'mlp16': test_graph('mlp', 'hls4ml_default'),
        'cnn': test_graph('cnn', 'auto'),
        'jsc_pruned70': jsc(0.7, 'jsc_pruned70'),
        'jsc_dense': jsc(0.0, 'jsc_dense'),
    }


def error(est: float, real: float) -> str:
    """Relative error of an estimate, in percent."""
    return f'{100 * (est - real) / real:+.1f} %' if real else '-'


def main(argv=None) -> int:
    """Estimate and synthesize each design; print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--family', default='xcup')
    parser.add_argument('--designs', default=None, help='comma-separated subset of the design names')
    args = parser.parse_args(argv)
    from fpga4ml.synth import synthesize

    root = Path(tempfile.mkdtemp(prefix='fpga4ml-bench-estimate-'))
    table = designs(root)
    names = args.designs.split(',') if args.designs else list(table)
    print(f'{"design":14s}{"est LUT":>9s}{"yosys LUT":>10s}{"error":>9s}{"est FF":>8s}{"yosys FF":>9s}'
          f'{"error":>9s}{"est [ms]":>9s}{"yosys [s]":>10s}')
    for name in names:
        model = table[name]()
        model.write()
        t0 = time.perf_counter()
        est = model.estimate()
        t_est = time.perf_counter() - t0
        rep = synthesize(Path(model.output_dir) / f'{model.project_name}.v', model.project_name,
                         family=args.family, output_dir=model.output_dir, progress=False)
        print(f'{name:14s}{est["LUT"]:9d}{rep["LUT"]:10d}{error(est["LUT"], rep["LUT"]):>9s}{est["FF"]:8d}'
              f'{rep["FF"]:9d}{error(est["FF"], rep["FF"]):>9s}{1e3 * t_est:9.1f}{rep["seconds"]:10.1f}', flush=True)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'torch')
    sys.exit(main())
