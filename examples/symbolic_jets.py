"""Jet tagging with symbolic expressions: one formula per class, fixed point, firmware, against the JSC MLP.

This mirrors part 8 of the hls4ml tutorial (symbolic regression): 16 high-level jet features ->
one expression per class (gluon, light quark, W, Z, top), targets +-1 (`Y = 2 * one_hot - 1`), the
class is the argmax of the five expressions, `sin_lut`/`cos_lut` are tables of 256 entries over
[-8, 8], and the precision is `ap_fixed<16,6>`. The tutorial finds its expressions with PySR
(Julia); here a small least-squares search finds them, without Julia or PySR: per class, greedy
forward selection (orthogonal matching pursuit) over a basis of candidate terms of the features
(x_i, x_i**2, x_i*x_j, sin_lut(x_i), cos_lut(x_i)), refitting all coefficients by least squares after
each pick; coefficients are written with 4 significant digits, as PySR prints them.

The real data set is OpenML's `hls4ml_lhc_jets_hlf` (830,000 jets, the 16 features and the class
g, q, w, z or t). This machine has no network, so the runs documented in docs/symbolic.md used a
SYNTHETIC STAND-IN: the fixed-seed jet "teacher" of examples/jet_tagging.py (same 16 feature names
and 5 classes, each class a mixture of correlated Gaussians, gluon/quark and W/Z overlapping). The
output says which data ran. To run it on the real jets, fetch them where there is network, either
the file itself (OpenML serves it as ARFF; its CSV export works too) or into scikit-learn's cache:

    python -c "from sklearn.datasets import fetch_openml; fetch_openml('hls4ml_lhc_jets_hlf', data_home='jets')"

then pass the file (`--data-file hls4ml_lhc_jets_hlf.arff` or `.csv`: a header naming the 16 features
and a `class` column, read by this script without scikit-learn) or the cache (`--data-home jets`).

Steps: data -> expression search -> `convert_from_symbolic_expression` (with math-library functions
and with LUT functions, as the tutorial) -> `write()`, `compile()`, `predict()` -> accuracy of the
fixed-point expressions vs their float value vs the JSC MLP (Keras, trained a few epochs) -> the
expressions and the MLP as pipelined Verilog: latency in clocks, cost-model estimate, Yosys LUTs
(pyosys; the MLP's Yosys run takes about 15 minutes, so it runs with `--synth-mlp` only). Run it with:

    KERAS_BACKEND=torch .venv/bin/python examples/symbolic_jets.py [--quick] [--no-synth] [--synth-mlp]
        [--data-file hls4ml_lhc_jets_hlf.arff | --data-home DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')  # before keras is imported

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jet_tagging import CLASSES, FEATURES, JetTeacher, jsc_mlp  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.converters import convert_from_symbolic_expression  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.utils.symbolic_utils import init_pysr_lut_functions  # noqa: E402

PRECISION = 'ap_fixed<16,6>'
PART = 'xcvu9p-flga2577-2-e'
FUNCTION_DEFINITIONS = ['sin_lut(x) = math_lut(sin, x, N=256, range_start=-8, range_end=8)',
                        'cos_lut(x) = math_lut(cos, x, N=256, range_start=-8, range_end=8)']
LUT_FUNCTIONS = {'sin_lut': {'math_func': 'sin', 'range_start': -8, 'range_end': 8, 'table_size': 256},
                 'cos_lut': {'math_func': 'cos', 'range_start': -8, 'range_end': 8, 'table_size': 256}}
OPENML_NAME = 'hls4ml_lhc_jets_hlf'


# --------------------------------------------------------------------------- data


def load_jets(n_train: int, n_test: int, seed: int, data_home: str | None,
              data_file: str | None = None) -> tuple[tuple, str]:
    """((x_train, y_train, x_test, y_test), description): the jets of `data_file` (ARFF or CSV), else OpenML's
    when scikit-learn has them cached, else the synthetic teacher.

    Features are standardized with the training set's mean and deviation; labels are 0..4 in the
    order of CLASSES. A file with fewer than n_train + n_test jets is split in the same proportion.
    """
    real = read_jets_file(data_file) if data_file else cached_openml_jets(data_home)
    if real is None:
        teacher = JetTeacher()
        rng = np.random.default_rng(seed)
        x_train, y_train = teacher.sample(n_train, rng)
        x_test, y_test = teacher.sample(n_test, rng)
        return (x_train, y_train, x_test, y_test), (
            'SYNTHETIC stand-in (examples/jet_tagging.py JetTeacher: 16 features, 5 classes; OpenML '
            f'{OPENML_NAME} is not cached and there is no network here: --data-file takes the real jets)')
    x, y = real
    if n_train + n_test > len(x):
        n_train = int(len(x) * n_train / (n_train + n_test))
        n_test = len(x) - n_train
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:n_train], order[n_train:n_train + n_test]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = ((x - mean) / np.where(std > 0, std, 1)).astype(np.float32)
    source = f'{data_file} ({len(real[0]):,} jets)' if data_file else f'OpenML {OPENML_NAME} (cached)'
    return (x[train], y[train], x[test], y[test]), source


def read_jets_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 16) in FEATURES order, labels 0..4) from OpenML's hls4ml_lhc_jets_hlf as ARFF or CSV.

    The attributes are found by name (any order, other columns ignored); the label column is `class`
    with the values g, q, w, z, t (any case).
    """
    text = Path(path).read_text(encoding='utf-8')
    if Path(path).suffix.lower() == '.arff':
        names, rows = _arff_table(text, path)
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        names, rows = [n.strip().strip('"') for n in lines[0].split(',')], [line.split(',') for line in lines[1:]]
    lower = [n.lower() for n in names]
    missing = [f for f in FEATURES + ('class',) if f.lower() not in lower]
    if missing or not rows:
        raise ValueError(f'{path}: expected the columns of {OPENML_NAME} (the 16 features and class) and at least one '
                         f'row; missing {missing}, found {names[:20]} and {len(rows)} rows')
    cols = [lower.index(f.lower()) for f in FEATURES]
    label = lower.index('class')
    index = {name.lower(): k for k, name in enumerate(CLASSES)}
    try:
        x = np.array([[float(row[c]) for c in cols] for row in rows], dtype=np.float32)
        y = np.array([index[row[label].strip().strip('"\'').lower()] for row in rows])
    except (ValueError, KeyError, IndexError) as err:
        raise ValueError(f'{path}: a row has a non-numeric feature or a class outside {CLASSES}: {err}') from None
    return x, y


def _arff_table(text: str, path: str) -> tuple[list[str], list[list[str]]]:
    """(attribute names, data rows as strings) of an ARFF file (numeric attributes and a nominal class)."""
    names, rows, data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('%'):
            continue
        if data:
            rows.append(line.split(','))
        elif line.lower().startswith('@attribute'):
            names.append(line.split(None, 2)[1].strip('"\''))
        elif line.lower().startswith('@data'):
            data = True
    if not data:
        raise ValueError(f'{path}: not an ARFF file (no @DATA section)')
    return names, rows


def cached_openml_jets(data_home: str | None):
    """(features (n, 16), labels 0..4) from scikit-learn's OpenML cache, or None when it is not cached."""
    home = Path(data_home or os.environ.get('SCIKIT_LEARN_DATA', '~/scikit_learn_data')).expanduser()
    if not (home / 'openml').is_dir() or not any((home / 'openml').rglob('*')):
        return None
    try:
        from sklearn.datasets import fetch_openml

        data = fetch_openml(OPENML_NAME, data_home=str(home), as_frame=False, parser='liac-arff')
    except Exception:  # not in the cache (and no network): use the stand-in
        return None
    names = list(data['feature_names'])
    x = np.asarray(data['data'], dtype=np.float32)[:, [names.index(f) for f in FEATURES]]
    index = {name.lower(): k for k, name in enumerate(CLASSES)}  # OpenML writes the labels in lower case
    y = np.array([index[str(label).lower()] for label in data['target']])
    return x, y


# --------------------------------------------------------------------------- expression search


def candidate_terms(n_features: int) -> list[tuple[str, Callable]]:
    """The search basis: (expression text, numpy evaluation) of x_i, x_i**2, x_i*x_j, sin_lut(x_i), cos_lut(x_i)."""
    terms = []
    for i in range(n_features):
        terms += [(f'x{i}', lambda x, i=i: x[:, i]),
                  (f'x{i}**2', lambda x, i=i: x[:, i] ** 2),
                  (f'sin_lut(x{i})', lambda x, i=i: np.sin(x[:, i])),
                  (f'cos_lut(x{i})', lambda x, i=i: np.cos(x[:, i]))]
    for i, j in combinations(range(n_features), 2):
        terms.append((f'x{i}*x{j}', lambda x, i=i, j=j: x[:, i] * x[:, j]))
    return terms


def forward_selection(columns: np.ndarray, target: np.ndarray, n_terms: int) -> tuple[list[int], np.ndarray]:
    """Greedy least squares: pick n_terms columns one at a time, each the most correlated with the residual.

    Returns (picked column indices, coefficients with the intercept first), refitted by least squares.
    """
    scale = columns.std(axis=0)
    scale[scale == 0] = np.inf
    normed = (columns - columns.mean(axis=0)) / scale
    picked: list[int] = []
    coef = np.array([target.mean()])
    residual = target - coef[0]
    for _ in range(n_terms):
        score = np.abs(normed.T @ residual)
        score[picked] = -1
        picked.append(int(np.argmax(score)))
        design = np.column_stack([np.ones(len(target)), columns[:, picked]])
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        residual = target - design @ coef
    return picked, coef


def expression_text(names: list[str], coef: np.ndarray) -> str:
    """'c0 + c1*term1 + ...' with every coefficient at 4 significant digits (as PySR prints them)."""
    text = f'{coef[0]:.4g}'
    for name, c in zip(names, coef[1:]):
        text += f' {"-" if c < 0 else "+"} {abs(c):.4g}*{name}'
    return text


def search_expressions(x: np.ndarray, y: np.ndarray, n_terms: int) -> list[str]:
    """One expression of the features per class, fitted to the targets 2 * one_hot - 1 (the tutorial's)."""
    terms = candidate_terms(x.shape[1])
    columns = np.column_stack([f(x.astype(np.float64)) for _, f in terms])
    exprs = []
    for k in range(len(CLASSES)):
        picked, coef = forward_selection(columns, np.where(y == k, 1.0, -1.0), n_terms)
        exprs.append(expression_text([terms[p][0] for p in picked], coef))
    return exprs


# --------------------------------------------------------------------------- models


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Fraction of jets whose highest-scoring class is the true one."""
    return float(np.mean(np.argmax(scores, axis=1) == y))


def train_mlp(x, y, epochs: int, seed: int):
    """The JSC MLP of BENCHMARKS.md (16-64-32-32-5, ReLU, softmax), trained `epochs` epochs with Adam."""
    import keras

    keras.utils.set_random_seed(seed)
    model = jsc_mlp()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    model.fit(x, y, batch_size=1024, epochs=epochs, verbose=0)
    return model


def mlp_firmware(model, out: Path):
    """The MLP up to its logits (argmax needs no softmax) as Verilog, hls4ml's default fixed<16,6> precision."""
    import keras

    logits = keras.Model(model.inputs, model.get_layer('output').output, name='jsc_logits')
    config = fpga4ml.config_from_keras_model(logits, granularity='name', default_precision='fixed<16,6>')
    return fpga4ml.convert_from_keras_model(logits, hls_config=config, output_dir=str(out), project_name='jsc_mlp',
                                            backend='Verilog', clock_period=5)


def firmware_numbers(model, synth: bool) -> dict:
    """Latency (clocks), the cost model's LUT/FF estimate and, with synth, Yosys's LUT/FF (family xcup)."""
    estimate = model.estimate()
    numbers = {'latency': estimate['latency_cycles'], 'est_LUT': estimate['LUT'], 'est_FF': estimate['FF'],
               'LUT': None, 'FF': None, 'synth_s': None}
    if synth:
        report = model.build(family='xcup')
        numbers.update(LUT=report.get('LUT'), FF=report.get('FF'), synth_s=report.get('seconds'))
    return numbers


# --------------------------------------------------------------------------- the example


def parse_args(argv):
    """Command line: sizes of the run and which syntheses to do."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='build/symbolic_jets', help='project directories go here')
    parser.add_argument('--quick', action='store_true', help='small run: fewer jets, terms and epochs (~30 s)')
    parser.add_argument('--terms', type=int, help='terms per expression (default 8, quick 5)')
    parser.add_argument('--epochs', type=int, help='MLP training epochs (default 5, quick 2)')
    parser.add_argument('--seed', type=int, default=123)
    parser.add_argument('--no-synth', action='store_true', help='no Yosys run (estimates only)')
    parser.add_argument('--synth-mlp', action='store_true', help='also synthesize the JSC MLP with Yosys (minutes)')
    parser.add_argument('--data-home', help="scikit-learn's data folder holding the cached OpenML jets")
    parser.add_argument('--data-file', help=f'the real jets: OpenML {OPENML_NAME} as an .arff or .csv file '
                                            '(fetched where there is network; see the module doc)')
    args = parser.parse_args(argv)
    args.terms = args.terms or (5 if args.quick else 8)
    args.epochs = args.epochs or (2 if args.quick else 5)
    args.n_train, args.n_test = (8_000, 5_000) if args.quick else (30_000, 20_000)
    return args


def report_accuracy(results: dict) -> None:
    """The accuracy table."""
    print(f'\naccuracy on {results["n_test"]:,} test jets (argmax of the 5 outputs):')
    for key, label in (('acc_float', 'expressions, float (real sin/cos)'),
                       ('acc_fixed_math', f'expressions, {PRECISION}, sin/cos tables'),
                       ('acc_fixed_lut', f'expressions, {PRECISION}, sin_lut/cos_lut'),
                       ('acc_mlp_float', 'JSC MLP, Keras float32'),
                       ('acc_mlp_fixed', 'JSC MLP, fixed<16,6> (emulator)')):
        print(f'  {label:45s} {100 * results[key]:6.2f} %')
    print(f'  argmax agreement, fixed (LUT) vs float expressions: {100 * results["agree_fixed_float"]:.2f} %; '
          f'max |fixed - float| = {results["max_err"]:.4f}')


def report_firmware(expr_fw: dict, mlp_fw: dict) -> None:
    """The firmware table: latency, estimates, Yosys LUTs, expressions vs MLP."""
    def cell(v):
        return '-' if v is None else f'{v:,}'

    print('\nfirmware (Verilog back end, pipelined II = 1, 5 ns clock; Yosys family xcup):')
    print(f'  {"":16s}{"latency clk":>12s}{"est. LUT":>10s}{"est. FF":>9s}{"Yosys LUT":>11s}{"Yosys FF":>10s}')
    for label, fw in (('expressions', expr_fw), ('JSC MLP', mlp_fw)):
        print(f'  {label:16s}{fw["latency"]:>12d}{cell(fw["est_LUT"]):>10s}{cell(fw["est_FF"]):>9s}'
              f'{cell(fw["LUT"]):>11s}{cell(fw["FF"]):>10s}')
    if mlp_fw['LUT'] is None:
        print('  (the MLP is synthesized with --synth-mlp only: about 15 minutes of Yosys on 2 cores)')


def run(args) -> dict:
    """The whole example; returns the measured numbers (accuracies, errors, firmware)."""
    t_start = time.perf_counter()
    (x_train, y_train, x_test, y_test), source = load_jets(args.n_train, args.n_test, args.seed, args.data_home,
                                                           args.data_file)
    print(f'data: {source}; {len(x_train):,} training / {len(x_test):,} test jets')
    print('features: ' + ', '.join(f'x{i}={name}' for i, name in enumerate(FEATURES)))

    t0 = time.perf_counter()
    expr = search_expressions(x_train, y_train, args.terms)
    print(f'\nexpression search ({args.terms} terms per class, {time.perf_counter() - t0:.1f} s):')
    for name, e in zip(CLASSES, expr):
        print(f'  {name}: {e}')

    # the tutorial's calls: PySR LUT operators (no Julia needed), then the two conversions
    pysr = init_pysr_lut_functions(init_defaults=True, function_definitions=FUNCTION_DEFINITIONS)
    print(f'PySR operators for a real search: unary_operators={pysr["unary_operators"][-2:]}')
    out = Path(args.out)
    expr_math = [e.replace('sin_lut', 'sin').replace('cos_lut', 'cos') for e in expr]
    hls_model = convert_from_symbolic_expression(expr_math, n_symbols=16, output_dir=str(out / 'hls_math'),
                                                 precision=PRECISION, part=PART)
    hls_model.write()
    hls_model.compile()
    hls_model_lut = convert_from_symbolic_expression(expr, n_symbols=16, output_dir=str(out / 'hls_lut'),
                                                     precision=PRECISION, part=PART, lut_functions=LUT_FUNCTIONS)
    hls_model_lut.write()
    hls_model_lut.compile()

    y_float = float_forward(hls_model.graph, x_test)[0]
    y_math, y_lut = hls_model.predict(x_test), hls_model_lut.predict(x_test)
    t0 = time.perf_counter()
    mlp = train_mlp(x_train, y_train, args.epochs, args.seed)
    t_train = time.perf_counter() - t0
    mlp_fw_model = mlp_firmware(mlp, out / 'verilog_mlp')
    results = {'n_test': len(x_test), 'source': source, 'expressions': expr,
               'acc_float': accuracy(y_float, y_test), 'acc_fixed_math': accuracy(y_math, y_test),
               'acc_fixed_lut': accuracy(y_lut, y_test),
               'acc_mlp_float': accuracy(mlp.predict(x_test, batch_size=4096, verbose=0), y_test),
               'acc_mlp_fixed': accuracy(mlp_fw_model.predict(x_test), y_test),
               'agree_fixed_float': float(np.mean(np.argmax(y_lut, 1) == np.argmax(y_float, 1))),
               'max_err': float(np.max(np.abs(y_lut - y_float)))}
    print(f'JSC MLP trained {args.epochs} epochs in {t_train:.1f} s')
    report_accuracy(results)

    synth = not args.no_synth and importlib.util.find_spec('pyosys') is not None
    rtl = convert_from_symbolic_expression(expr, n_symbols=16, output_dir=str(out / 'verilog_expr'),
                                           precision=PRECISION, part=PART, lut_functions=LUT_FUNCTIONS,
                                           backend='Verilog', clock_period=5)
    results['expr_fw'] = firmware_numbers(rtl, synth)
    results['mlp_fw'] = firmware_numbers(mlp_fw_model, synth and args.synth_mlp)
    report_firmware(results['expr_fw'], results['mlp_fw'])
    results['seconds'] = time.perf_counter() - t_start
    print(f'\ntotal {results["seconds"]:.0f} s')
    return results


def main(argv=None) -> int:
    """Run the example; returns 0 when the fixed-point expressions beat chance (1/5) on the test jets."""
    results = run(parse_args(argv))
    return 0 if results['acc_fixed_lut'] > 1 / len(CLASSES) else 1


if __name__ == '__main__':
    raise SystemExit(main())
