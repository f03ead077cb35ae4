"""Recurrent networks (issue 13): fpga4ml against hls4ml 1.3.0 on the top-tagging model, in one run.

The model is examples/rnn_top_tagging.py's: 20 particles x 6 features -> LSTM or GRU(20) ->
Dense(2) -> softmax (Keras initial weights, seeded: throughput does not depend on training), at
fixed<16,6> with hls4ml's tables (TableSemantics 'hls4ml'), io_parallel, Vitis. For each cell:

* throughput on the same sequences: fpga4ml's emulator (model.predict, after one warm-up call, then
  repeated for at least a second) against hls4ml 1.3.0's C simulation (its compiled library, also
  warmed up; one call of the 4,000 sequences takes seconds), and the ratio, per
  wall-clock second and per CPU second of the process (the emulator runs two threads, hls4ml's C
  simulation one; on a loaded shared machine the wall-clock ratio depends on the load);
  the fraction of sequences on which the two give the same bits (hls4ml's softmax and its
  static-mode LSTM/GRU compute the same recipe under TableSemantics 'hls4ml');
* C simulation build time: fpga4ml's (write + g++ of the static-mode project) against hls4ml's
  (write + its build script);
* Verilog back end (non-static: a cell per step): latency and II, and fpga4ml's resource estimate
  (model.estimate(); no Yosys run: a 20-step LSTM(20) unrolled is far beyond what synthesizes in
  minutes here), at 20 steps and at 1 step (one cell: the arithmetic a static design reuses T
  times). With --no-hls4ml the hls4ml columns are left out; --verilog-steps picks the lengths
  (none: no Verilog).

    KERAS_BACKEND=torch .venv/bin/python bench/bench_rnn.py [--cells lstm gru] [--n 4000] [--no-hls4ml]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import fpga4ml  # noqa: E402

CONFIG = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency', 'TableSemantics': 'hls4ml'}}


def load_example():
    """examples/rnn_top_tagging.py as a module (its model and jet generator)."""
    spec = importlib.util.spec_from_file_location('rnn_top_tagging', REPO / 'examples' / 'rnn_top_tagging.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, *args):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def rate(predict, x, min_seconds: float = 1.0) -> tuple[float, float]:
    """Sequences per second of predict over x, after a warm-up call on a few sequences: per wall-clock
    second and per CPU second of this process (all its threads; fairer on a loaded shared machine).
    predict(x) runs again until min_seconds of wall clock have passed (one call where one call takes
    that long), and the rates are the totals: a call of a few tens of milliseconds alone is at the
    mercy of the shared machine's scheduling and of first-call costs (fresh pages, thread start)."""
    predict(x[:16])
    cpu, start, calls = time.process_time(), time.perf_counter(), 0
    while calls == 0 or time.perf_counter() - start < min_seconds:
        predict(x)
        calls += 1
    seconds = time.perf_counter() - start
    return calls * len(x) / seconds, calls * len(x) / max(time.process_time() - cpu, 1e-9)


def fpga4ml_numbers(km, x, root: Path) -> dict:
    """Emulator throughput and outputs, C simulation build time (static-mode project)."""
    model = fpga4ml.convert_from_keras_model(km, hls_config=copy.deepcopy(CONFIG), output_dir=str(root / 'ours'),
                                             project_name='rnn_ours', io_type='io_parallel')
    model.compile()
    wall, cpu = rate(model.predict, x)
    out = {'emulator_seq_s': wall, 'emulator_seq_cpu_s': cpu, 'emulator_out': np.asarray(model.predict(x))}
    _, out['csim_build_s'] = timed(model.compile, 'csim')
    return out


def hls4ml_numbers(km, x, root: Path) -> dict:
    """hls4ml 1.3.0's build time (write + compile) and C simulation throughput and outputs."""
    import hls4ml
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        theirs = hls4ml.converters.convert_from_keras_model(km, hls_config=copy.deepcopy(CONFIG), backend='Vitis',
                                                            io_type='io_parallel', output_dir=str(root / 'theirs'))
    build, wall, cpu, out = hls4ml_build_and_rate(theirs, x)
    return {'csim_build_s': build, 'csim_seq_s': wall, 'csim_seq_cpu_s': cpu, 'csim_out': out}


def hls4ml_build_and_rate(theirs, x):
    """Write and compile an hls4ml model: (build seconds, samples/s wall, samples/s CPU, outputs as float64 rows)."""
    start = time.perf_counter()
    theirs.write()
    theirs._compile()
    build = time.perf_counter() - start
    xc = np.ascontiguousarray(x)
    wall, cpu = rate(theirs.predict, xc)
    return build, wall, cpu, np.asarray(theirs.predict(xc), dtype=np.float64).reshape(len(x), -1)


def verilog_numbers(km_builder, cell: str, steps: int, root: Path) -> dict:
    """Latency, II and resource estimate of the non-static Verilog design (steps time steps)."""
    import keras
    keras.utils.set_random_seed(0)
    km = km_builder(cell, steps)
    model = fpga4ml.convert_from_keras_model(km, hls_config=copy.deepcopy(CONFIG), backend='Verilog',
                                             output_dir=str(root / 'verilog'), project_name='rnn_v')
    est, seconds = timed(model.estimate)
    return {'steps': steps, 'latency': est['latency_cycles'], 'ii': est['ii'], 'lut': est['LUT'], 'ff': est['FF'],
            'dsp': est['DSP'], 'fmax_mhz': est.get('fmax_mhz_estimate'), 'estimate_s': seconds}


def model_with_steps(example, cell: str, steps: int):
    """The example's model on `steps` particles instead of 20 (for the Verilog estimate)."""
    import keras
    layers = keras.layers
    x = keras.Input((steps, example.FEATURES), name='particles')
    h = {'lstm': layers.LSTM, 'gru': layers.GRU}[cell](example.UNITS, name=cell)(x)
    logits = layers.Dense(len(example.CLASSES), name='dense')(h)
    return keras.Model(x, layers.Activation('softmax', name='softmax')(logits))


def bench_cell(example, cell: str, n: int, with_hls4ml: bool, verilog_steps: list[int]) -> dict:
    """Every number of one cell."""
    import keras
    keras.utils.set_random_seed(0)
    km = example.build_model(cell)
    x, _ = example.make_jets(n, seed=3)
    row = {'cell': cell.upper()}
    with tempfile.TemporaryDirectory(prefix='bench_rnn_') as tmp:
        root = Path(tmp)
        ours = fpga4ml_numbers(km, x, root)
        row.update(emulator_seq_s=ours['emulator_seq_s'], emulator_seq_cpu_s=ours['emulator_seq_cpu_s'],
                   ours_build_s=ours['csim_build_s'])
        if with_hls4ml:
            theirs = hls4ml_numbers(km, x, root)
            row.update(hls4ml_seq_s=theirs['csim_seq_s'], hls4ml_build_s=theirs['csim_build_s'],
                       ratio=ours['emulator_seq_s'] / theirs['csim_seq_s'],
                       cpu_ratio=ours['emulator_seq_cpu_s'] / theirs['csim_seq_cpu_s'])
            same = np.all(ours['emulator_out'].reshape(n, -1) == theirs['csim_out'], axis=1)
            row['bit_identical'] = float(same.mean())
        row['verilog'] = [verilog_numbers(lambda c, s: model_with_steps(example, c, s), cell, steps, root / f'v{steps}')
                          for steps in verilog_steps]
    return row


def report(rows: list[dict]) -> None:
    """The table of numbers."""
    print('| cell | emulator seq/s | hls4ml C sim seq/s | ratio | ratio per CPU second | same bits | '
          'C sim build: fpga4ml / hls4ml (s) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        cols = ['-', '-', '-', '-', '-']
        if 'hls4ml_seq_s' in r:
            cols = [f"{r['hls4ml_seq_s']:,.0f}", f"{r['ratio']:.1f}x", f"{r['cpu_ratio']:.1f}x",
                    f"{100 * r['bit_identical']:.2f} %", f"{r['hls4ml_build_s']:.1f}"]
        print(f"| {r['cell']} | {r['emulator_seq_s']:,.0f} | {cols[0]} | {cols[1]} | {cols[2]} | {cols[3]} | "
              f"{r['ours_build_s']:.1f} / {cols[4]} |")
    for r in rows:
        designs = sorted(r['verilog'], key=lambda v: v['steps'])
        if len(designs) > 1:  # the cost of one more cell (one step with h = 0 folds its recurrent product away)
            a, b = designs[0], designs[-1]
            k = b['steps'] - a['steps']
            print(f"{r['cell']}: one cell (from the {a['steps']}- and {b['steps']}-step estimates) ~ "
                  f"{(b['lut'] - a['lut']) / k:,.0f} LUT / {(b['ff'] - a['ff']) / k:,.0f} FF / "
                  f"{(b['dsp'] - a['dsp']) / k:.0f} DSP")
        for v in designs:
            print(f"Verilog non-static {r['cell']}({v['steps']} steps): latency {v['latency']} cycles, II {v['ii']}, "
                  f"estimate {v['lut']:,} LUT / {v['ff']:,} FF / {v['dsp']} DSP, fmax ~{v['fmax_mhz']} MHz "
                  f"(estimated in {v['estimate_s']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cells', nargs='+', choices=('lstm', 'gru'), default=['lstm', 'gru'])
    ap.add_argument('--n', type=int, default=4000, help='sequences per throughput measurement')
    ap.add_argument('--no-hls4ml', action='store_true')
    ap.add_argument('--verilog-steps', type=int, nargs='*', default=[1, 20],
                    help='sequence lengths of the Verilog estimates (1: one cell, the arithmetic of the static form)')
    ap.add_argument('--verilog-static', action='store_true',
                    help='instead: Verilog static against non-static (latency, II, estimate, Yosys) on a small model')
    ap.add_argument('--no-synth', action='store_true', help='with --verilog-static: skip Yosys')
    args = ap.parse_args(argv)
    if args.verilog_static:
        verilog_static_vs_unrolled(synth=not args.no_synth)
        return 0
    example = load_example()
    rows = [bench_cell(example, cell, args.n, not args.no_hls4ml, args.verilog_steps) for cell in args.cells]
    report(rows)
    return 0


# ---------------------------------------------------------------------------------------- Verilog static
def verilog_static_vs_unrolled(cells=('lstm', 'gru'), steps: int = 8, units: int = 8, features: int = 6,
                               precision: str = 'fixed<10,3,RND,SAT>', table_size: int = 64,
                               synth: bool = True, check: int = 500, modes=(True, False)) -> list[dict]:
    """Verilog static (`Static: True`: one cell, state registers) against non-static (a cell per step).

    Per cell and mode: latency and II (clocks), the cost model's LUT/FF/DSP and critical path, the
    interpreter's mismatches against the emulator on `check` sequences, and with `synth` Yosys' LUT,
    FF, DSP and critical path (xcup, 'fast'). The model is `features` -> LSTM/GRU(units) on `steps`
    time steps -> Dense(2), at one precision everywhere with exact tables of `table_size` entries;
    modes: the Static values to build.
    Run it with: python bench/bench_rnn.py --verilog-static [--no-synth]
    """
    import keras

    from fpga4ml.backends.verilog.design import design
    from fpga4ml.backends.verilog.rnn_static import StaticRnnDesign
    from fpga4ml.backends.verilog.stateful import run_vectors
    rows = []
    for cell in cells:
        for static in modes:
            keras.utils.set_random_seed(0)
            x = keras.Input((steps, features), name='particles')
            h = {'lstm': keras.layers.LSTM, 'gru': keras.layers.GRU}[cell](units, name=cell)(x)
            km = keras.Model(x, keras.layers.Dense(2, name='dense')(h))
            cfg = {'Model': {'Precision': precision},
                   'LayerName': {cell: {'Static': static, 'TableSize': table_size}}}
            with tempfile.TemporaryDirectory(prefix='bench_rnn_static_') as tmp:
                model = fpga4ml.convert_from_keras_model(km, hls_config=cfg, backend='Verilog', output_dir=tmp,
                                                         project_name='rnn_v')
                est, gen_s = timed(model.estimate)
                xs = np.random.default_rng(1).uniform(-8, 8, (check, steps, features))
                d = design(model, progress=False)
                mant = [model.graph['particles'].result_type.quantize(xs)]
                if isinstance(d, StaticRnnDesign):
                    got = run_vectors(d.machine, d.timing, mant)[0]
                else:
                    got = d.netlist.evaluate([mant[0].reshape(check, -1)])[0]
                want = model.graph['dense'].result_type.quantize(model.predict(xs))
                row = {'cell': cell.upper(), 'mode': 'static' if static else 'non-static', 'steps': steps,
                       'units': units, 'latency': est['latency_cycles'], 'ii': est['ii'], 'est_LUT': est['LUT'],
                       'est_FF': est['FF'], 'est_DSP': est['DSP'], 'est_crit_ns': est['critical_stage_ns'],
                       'generation_s': round(gen_s, 1),
                       'mismatches': int(np.any(np.asarray(got).reshape(check, -1) != want.reshape(check, -1),
                                                axis=1).sum())}
                if synth:
                    rep, synth_s = timed(model.build)
                    row.update(LUT=rep.get('LUT'), FF=rep.get('FF'), DSP=rep.get('DSP'),
                               crit_ns=rep.get('critical_delay_ns'), synth_s=round(synth_s, 1))
            print(row, flush=True)
            rows.append(row)
    keys = [k for k in ('cell', 'mode', 'latency', 'ii', 'LUT', 'FF', 'DSP', 'crit_ns', 'est_LUT', 'est_FF', 'est_DSP',
                        'est_crit_ns', 'mismatches', 'generation_s', 'synth_s') if any(k in r for r in rows)]
    print('| ' + ' | '.join(keys) + ' |\n|' + '---|' * len(keys))
    for r in rows:
        print('| ' + ' | '.join(str(r.get(k, '')) for k in keys) + ' |')
    return rows


if __name__ == '__main__':
    raise SystemExit(main())
