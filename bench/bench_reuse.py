"""ReuseFactor on the Verilog back end: the JSC MLP at RF 1, 2, 4, 8, 16 (multiply-accumulate or digit-serial folding).

The JSC MLP of BENCHMARKS.md (16 -> 64 -> 32 -> 32 -> 5, ReLU; fixed-seed weights of
bench_verilog.py) in two type settings:

- 'fixed<16,6>': hls4ml's default everywhere (per-product truncation into a fixed<16,6>
  accumulator, wrapping); RF 1 is the unrolled design with one DSP multiplier per non-zero weight
  (Multipliers 'dsp'), the shape hls4ml's latency strategy has;
- '6-bit auto': bench_verilog.py's quantized network (fixed<6,1> weights, exact 'auto'
  accumulators, ufixed<6,0> ReLUs, fixed<10,5> inputs); RF 1 is the unrolled CSD adder graph.

`--types conv` is a folded convolution instead: tests/test_verilog_fold_conv.py's Conv2D 8x8x2 -> 3x3
'same', 4 filters -> ReLU (64 output pixels, fixed<16,6>; 'mac' folding only).

--folding picks the folded architecture (`Folding`): 'mac' (multiply-accumulate, the default) and/or
'adders' (digit-serial on one multiplier-free adder graph per layer: exact accumulators only, so
only the '6-bit auto' network; a layer whose inputs have fewer than RF bits W takes single-bit
digits, the top ones sign copies: the hardware of RF = W). RF 1 is the unrolled design whatever --folding.

For each RF: the design is generated, its cycle-level interpreter is checked bit for bit against
the emulator on random inputs (a tenth far outside the input type), and the estimate (LUT, FF,
DSP, multipliers, latency, II, Fmax) is printed; with --synth each design is also synthesized by
Yosys (fpga4ml.synth, 'fast', xcup) for LUT, FF, DSP, CARRY and its critical-path estimate.

    python bench/bench_reuse.py                 # estimates and bit-exactness, ~10 s
    python bench/bench_reuse.py --synth         # plus Yosys (minutes per design on 2 cores)
    python bench/bench_reuse.py --synth --rf 4 16 --types fixed16
    python bench/bench_reuse.py --rtl 10000      # plus Verilator == emulator on 10,000 vectors
    python bench/bench_reuse.py --prune 0.5      # 50 % structured sparsity (folding.prune_for_reuse)
    python bench/bench_reuse.py --synth --types auto6 --rf 1 2 4 8 --folding mac adders   # docs/verilog.md
    python bench/bench_reuse.py --synth ... > LOG; python bench/bench_reuse.py --fit LOG   # refit the estimate
    python bench/bench_reuse.py --synth --types conv --rf 1 2 4 8       # a folded Conv2D, 64 pixels
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / 'tests')]
from bench_verilog import SIZES, convert_fpga4ml, weights  # noqa: E402

TYPES = ('fixed16', 'auto6', 'conv')
FOLDINGS = ('mac', 'adders')


def jsc_fixed16(layers, out: Path, rf: int):
    """The JSC MLP with fixed<16,6> everywhere at ReuseFactor rf (RF 1: DSP multipliers, unrolled)."""
    from fpga4ml.convert import convert_graph
    from fpga4ml.ir import Graph, Node

    g = Graph()
    g.add(Node('x', 'Input', [], (SIZES[0],)))
    prev = 'x'
    for n, (w, b) in enumerate(layers):
        g.add(Node(f'fc{n}', 'Dense', [prev], (w.shape[1],), weights={'kernel': w, 'bias': b}))
        prev = f'fc{n}'
        if n < len(layers) - 1:
            g.add(Node(f'relu{n}', 'Activation', [prev], (w.shape[1],), attrs={'function': 'relu'}))
            prev = f'relu{n}'
    g.inputs, g.outputs = ['x'], [prev]
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': rf, 'Multipliers': 'dsp'}}
    return convert_graph(g, cfg, backend='Verilog', output_dir=str(out), project_name=f'jsc_f16_rf{rf}')


def jsc_auto6(layers, out: Path, rf: int, folding: str = 'mac'):
    """bench_verilog.py's 6-bit network with exact accumulators at ReuseFactor rf (Folding 'mac' or 'adders')."""
    model = convert_fpga4ml(layers, out, 5.0, project_name=f'jsc_a6_rf{rf}_{folding}')
    if rf > 1:
        model.config.setdefault('Model', {})['ReuseFactor'] = rf
        for node in model.graph:
            if node.op == 'Dense':
                model.set_layer_setting(node.name, 'ReuseFactor', rf)
                model.set_layer_setting(node.name, 'Folding', folding)
    return model


def build(kind: str, rf: int, folding: str, prune: float, out: Path):
    """The JSC MLP of `kind` ('fixed16' or 'auto6') at ReuseFactor rf, a fraction `prune` of its multiplier
    groups zeroed (folding.prune_for_reuse: whole groups of weights sharing a multiplier) when rf > 1."""
    layers = weights(seed=1, sparsity=0.0)
    if prune and rf > 1:
        from fpga4ml.folding import prune_for_reuse
        layers = [(prune_for_reuse(w, rf, prune)[0], b) for w, b in layers]
    if kind == 'conv':
        return conv_same(out, rf)
    return jsc_fixed16(layers, out, rf) if kind == 'fixed16' else jsc_auto6(layers, out, rf, folding)


def conv_same(out: Path, rf: int):
    """tests/test_verilog_fold_conv.py's Conv2D: 8x8x2 -> 3x3 'same', 4 filters (a quarter of the weights zero)
    -> ReLU, 64 output pixels, hls4ml's fixed<16,6> everywhere, the Conv at ReuseFactor rf."""
    from fpga4ml.convert import convert_graph
    from test_verilog_fold_conv import PRECISIONS, SAME_3X3, conv2d_graph

    cfg = {'Model': {'Precision': PRECISIONS['fixed16_6'], 'ReuseFactor': 1},
           'LayerName': {'conv': {'ReuseFactor': rf}}}
    return convert_graph(conv2d_graph(SAME_3X3), cfg, backend='Verilog', output_dir=str(out),
                         project_name=f'conv_rf{rf}')


def test_inputs(model, n: int) -> np.ndarray:
    """n random input vectors as mantissas, a tenth of them far outside the input type (saturated or wrapped)."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1.5, (n,) + tuple(model.graph['x'].shape))
    x[: n // 10] *= 50
    return model.graph['x'].result_type.quantize(x)


def mismatches(model, got: np.ndarray, xm: np.ndarray) -> int:
    """Vectors where output mantissas `got` differ from the emulator's."""
    out = model.graph[model.graph.outputs[0]].result_type
    want = out.quantize(model.predict(model.graph['x'].result_type.to_float(xm)))
    return int(np.count_nonzero(np.any(got.reshape(len(got), -1) != want.reshape(len(want), -1), axis=1)))


def check_bit_exact(model, n: int = 2000) -> int:
    """Vectors (of n) where the design's cycle-level interpreter (or netlist) differs from the emulator."""
    from fpga4ml.backends.verilog.design import design
    from fpga4ml.backends.verilog.fold import FoldedDesign
    from fpga4ml.backends.verilog.stateful import run_vectors

    xm = test_inputs(model, n)
    d = design(model)
    got = run_vectors(d.machine, d.timing, [xm])[0] if isinstance(d, FoldedDesign) else d.netlist.evaluate([xm])[0]
    return mismatches(model, got, xm)


def check_rtl(model, n: int) -> tuple[int, float]:
    """(mismatching vectors, build seconds): n vectors through the Verilator simulation, with random gaps."""
    from fpga4ml.backends.verilog.design import compile_rtl

    start = time.perf_counter()
    rtl = compile_rtl(model, progress=False)
    built = time.perf_counter() - start
    xm = test_inputs(model, n)
    return mismatches(model, rtl.predict_mantissas([xm], gaps=True)[0], xm), round(built, 1)


def run(kind: str, rf: int, root: Path, synth: bool, rtl: int = 0, prune: float = 0.0, folding: str = 'mac') -> dict:
    """One design: generation time, bit-exactness, estimate and (synth) the Yosys report."""
    start = time.perf_counter()
    model = build(kind, rf, folding, prune, root / f'{kind}_rf{rf}_{folding}')
    est = model.estimate()
    layer_rfs = sorted({n.config['ReuseFactor'] for n in model.graph if n.op in ('Dense', 'Conv')}, reverse=True)
    row = {'types': kind + (f' pruned {prune:.0%}' if prune and rf > 1 else ''),
           'folding': 'unrolled' if rf == 1 else folding, 'rf': '/'.join(map(str, layer_rfs)),
           'gen_s': round(time.perf_counter() - start, 2),
           'mismatches': check_bit_exact(model), **{f'est_{k}': est.get(k) for k in
                                                   ('LUT', 'FF', 'DSP', 'multipliers', 'fmax_mhz_estimate')},
           'latency': est['latency_cycles'], 'ii': est['ii']}
    if rtl:
        row['rtl_mismatches'], row['verilator_build_s'] = check_rtl(model, rtl)
    if synth:
        start = time.perf_counter()
        rep = model.build(family='xcup')
        row.update({'LUT': rep.get('LUT'), 'FF': rep.get('FF'), 'DSP': rep.get('DSP'), 'CARRY': rep.get('CARRY'),
                    'crit_ns': rep.get('critical_delay_ns'), 'synth_s': round(time.perf_counter() - start, 1)})
    print(row, flush=True)
    return row


def _minimax_fit(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients c minimizing the largest |a @ c - y| (the rows already relative errors; ties
    broken by the mean error), by a grid search refined around its best point (two or three coefficients)."""
    scale = np.abs(np.linalg.lstsq(a, y, rcond=None)[0]).max() * 4 + 1.0
    lo, hi = np.zeros(a.shape[1]), np.full(a.shape[1], scale)
    for _ in range(12):
        axes = [np.linspace(l, h, 41) for l, h in zip(lo, hi)]
        grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, a.shape[1])
        errors = np.abs(grid @ a.T - y)
        worst = errors.max(axis=1) + 0.05 * errors.mean(axis=1)
        best = grid[int(np.argmin(worst))]
        step = (hi - lo) / 40
        lo, hi = np.maximum(best - 2 * step, 0.0), best + 2 * step
    return best


def fit_estimate(log: Path) -> None:
    """Fit the folded designs' multiplexer LUT coefficients (stateful.MUX_OPTION_LUT, DIGIT_MUX_LUT) to the
    Yosys rows of an earlier `--synth` run's output (its dict lines), minimizing the largest relative error
    (the target is a bound on it); prints the coefficients, each design's error and the leave-one-out errors."""
    import ast

    from fpga4ml.backends.verilog.design import design
    from fpga4ml.backends.verilog.stateful import machine_lut_terms

    rows = [ast.literal_eval(line) for line in log.read_text().splitlines() if line.startswith('{')]
    rows = [r for r in rows if r.get('LUT') and r['folding'] in FOLDINGS]
    feats = []
    with tempfile.TemporaryDirectory(prefix='bench-reuse-fit-') as tmp:
        for r in rows:
            kind, rf = r['types'].split()[0], int(str(r['rf']).split('/')[0])
            prune = float(r['types'].split('pruned ')[1].rstrip('%')) / 100 if 'pruned' in r['types'] else 0.0
            model = build(kind, rf, r['folding'], prune, Path(tmp) / f'{kind}_{rf}_{r["folding"]}_{prune}')
            feats.append(machine_lut_terms(design(model).machine))
    y = np.array([r['LUT'] for r in rows], dtype=float)
    other = np.array([f['other'] for f in feats])
    a = np.array([[f['mux_options'], f['digit_muxes']] for f in feats], dtype=float)
    coef = _minimax_fit(a / y[:, None], (y - other) / y)
    print(f'MUX_OPTION_LUT = {coef[0]:.2f}, DIGIT_MUX_LUT = {coef[1]:.2f}')
    for k, r in enumerate(rows):
        keep = np.arange(len(rows)) != k
        loo = _minimax_fit(a[keep] / y[keep, None], (y[keep] - other[keep]) / y[keep])
        est, est_loo = other[k] + a[k] @ coef, other[k] + a[k] @ loo
        print(f"{r['types']:>18} {r['folding']:>6} RF {r['rf']:>3}: Yosys {int(y[k]):>6,} estimate {int(est):>6,} "
              f"({100 * (est - y[k]) / y[k]:+.1f} %), leave-one-out {100 * (est_loo - y[k]) / y[k]:+.1f} %")


def combinations(types, rfs, foldings) -> list[tuple[str, int, str]]:
    """(types, RF, folding) of each design: RF 1 once (unrolled), 'adders' only for the exact 'auto6' types."""
    out = []
    for kind in types:
        for rf in rfs:
            for folding in (['mac'] if rf == 1 else foldings):
                if folding == 'adders' and kind != 'auto6':  # fixed<16,6> rounds its products
                    print(f"skipped: {kind} RF {rf} Folding 'adders' (its accumulators round: not exact)")
                    continue
                out.append((kind, rf, folding))
    return out


def main(argv=None) -> None:
    """Print one line per (types, RF) and a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--synth', action='store_true', help='also synthesize with Yosys (slow)')
    ap.add_argument('--rf', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    ap.add_argument('--types', nargs='+', choices=TYPES, default=list(TYPES))
    ap.add_argument('--folding', nargs='+', choices=FOLDINGS, default=['mac'],
                    help="folded architecture(s) at RF > 1: 'mac' (multipliers) and/or 'adders' (digit-serial, "
                         "multiplier-free; 6-bit auto types only)")
    ap.add_argument('--prune', type=float, default=0.0, metavar='S',
                    help='zero a fraction S of the multiplier groups of every Dense (prune_for_reuse) at RF > 1')
    ap.add_argument('--rtl', type=int, default=0, metavar='N',
                    help='also run N random vectors through Verilator (with random gaps) against the emulator')
    ap.add_argument('--fit', type=Path, metavar='LOG',
                    help="fit the folded designs' multiplexer LUT terms of the estimate to the Yosys rows "
                         'that an earlier --synth run printed to LOG, and print the errors (nothing else runs)')
    args = ap.parse_args(argv)
    if args.fit:
        fit_estimate(args.fit)
        return
    with tempfile.TemporaryDirectory(prefix='bench-reuse-') as tmp:
        rows = [run(kind, rf, Path(tmp), args.synth, args.rtl, args.prune, folding)
                for kind, rf, folding in combinations(args.types, args.rf, args.folding)]
    keys = [k for k in rows[0] if k != 'types']
    print('\n| types | ' + ' | '.join(keys) + ' |\n|---|' + '---|' * len(keys))
    for r in rows:
        print(f"| {r['types']} | " + ' | '.join('' if r.get(k) is None else f'{r[k]:,}' if isinstance(r[k], int)
                                                else str(r[k]) for k in keys) + ' |')


if __name__ == '__main__':
    main()
