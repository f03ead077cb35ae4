"""Accuracy of the table activations and softmax: fpga4ml's exact tables next to hls4ml's (TableSemantics).

    KERAS_BACKEND=torch python bench/bench_tables.py            # ~10 s
    KERAS_BACKEND=torch python bench/bench_tables.py --precision 'fixed<18,8>' --softmax-rows 50000

Each function runs at the default types (the model default Precision for the input and the result,
each mode's own table defaults: fpga4ml 2^12-entry tables of the result type, hls4ml 1024 entries of
ap_fixed<18,8>). Activations: every representable input value; the error is max |y - f(x)| over the
inputs whose real value f(x) lies inside the result type (outside it both modes wrap alike, which is
not a table error). Softmax: random rows of --classes logits, uniform in [-R, R) (--logit-range, default 8), and also the share
of rows whose argmax equals the float softmax's. Prints a Markdown table (docs/semantics.md quotes it).
"""

from __future__ import annotations

import argparse

import numpy as np

from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType, parse_precision
from fpga4ml.functions import table_function
from fpga4ml.ir import Graph, Node

ACTIVATIONS = ('sigmoid', 'tanh', 'softplus', 'softsign', 'elu', 'selu')
SOFTMAXES = (('exact', 'stable', 'exact'), ('hls4ml', 'stable', 'stable'), ('hls4ml', 'latency', 'latency'),
             ('hls4ml', 'legacy', 'legacy'), ('hls4ml', 'argmax', 'argmax'))


def _model(node: Node, width: int, mode: str, precision: str, out_dir: str):
    """A one-layer model: Input(width) -> node, converted under TableSemantics `mode`."""
    g = Graph()
    g.add(Node('x', 'Input', [], (width,)))
    g.add(node)
    g.inputs, g.outputs = ['x'], [node.name]
    cfg = {'Model': {'Precision': precision, 'TableSemantics': mode}}
    return convert_graph(g, cfg, output_dir=out_dir)


def activation_error(fn: str, mode: str, precision: str) -> tuple[float, int]:
    """max |y - f(x)| over every input value whose f(x) the result type holds, and the table's entry count."""
    model = _model(Node('f', 'Activation', ['x'], (1,), attrs={'function': fn, 'alpha': 1.0}), 1, mode, precision,
                   f'/tmp/bench_tables_{fn}_{mode}')
    t_in: FixedType = model.graph['x'].result_type
    t_out: FixedType = model.graph['f'].result_type
    x = t_in.to_float(np.arange(t_in.min_mantissa, t_in.max_mantissa + 1))
    y = np.asarray(model.predict(x[:, None])).ravel()
    real = table_function(fn, {'alpha': 1.0})(x)
    inside = (real >= t_out.min_value) & (real <= t_out.max_value)
    return float(np.max(np.abs(y - real)[inside])), len(model.graph['f'].attrs['tables']['f'])


def softmax_error(mode: str, impl: str, precision: str, classes: int, rows: int, span: float) -> tuple[float, float]:
    """max |y - softmax(x)| and the argmax agreement with the float softmax on random logit rows."""
    model = _softmax_model(classes, mode, impl, precision)
    x = np.random.default_rng(0).uniform(-span, span, (rows, classes))
    t_in: FixedType = model.graph['x'].result_type
    xq = t_in.to_float(t_in.quantize(x))  # the softmax of the input the model sees
    y = np.asarray(model.predict(x))
    e = np.exp(xq - xq.max(axis=1, keepdims=True))
    real = e / e.sum(axis=1, keepdims=True)
    return float(np.max(np.abs(y - real))), float(np.mean(np.argmax(y, 1) == np.argmax(real, 1)))


def _softmax_model(classes: int, mode: str, impl: str, precision: str):
    """Input(classes) -> Softmax with config Implementation `impl` under TableSemantics `mode`."""
    g = Graph()
    g.add(Node('x', 'Input', [], (classes,)))
    g.add(Node('f', 'Softmax', ['x'], (classes,), attrs={'axis': -1}))
    g.inputs, g.outputs = ['x'], ['f']
    cfg = {'Model': {'Precision': precision, 'TableSemantics': mode},
           'LayerName': {'f': {'Implementation': impl}}}
    return convert_graph(g, cfg, output_dir=f'/tmp/bench_tables_softmax_{impl}_{mode}')


def main() -> None:
    """Print the accuracy table."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--precision', default='fixed<16,6>', help='model default Precision (input and result types)')
    ap.add_argument('--classes', type=int, default=5)
    ap.add_argument('--softmax-rows', type=int, default=20000)
    ap.add_argument('--logit-range', type=float, default=8.0, help='softmax logits uniform in [-R, R)')
    args = ap.parse_args()
    lsb = parse_precision(args.precision).lsb
    print(f'default types: Precision {args.precision} (result LSB {lsb:g}); max |error| vs the real function\n')
    print('| function | fpga4ml exact tables | entries | hls4ml tables | entries |')
    print('|---|---|---|---|---|')
    for fn in ACTIVATIONS:
        (e_exact, n_exact), (e_hls, n_hls) = (activation_error(fn, m, args.precision) for m in ('exact', 'hls4ml'))
        print(f'| {fn} | {e_exact:.3g} | {n_exact} | {e_hls:.3g} | {n_hls} |')
    r = f'{args.logit_range:g}'
    print(f'\n| softmax ({args.classes} classes, logits in [-{r}, {r})) | max abs error | argmax agreement |')
    print('|---|---|---|')
    for mode, impl, label in SOFTMAXES:
        err, agree = softmax_error(mode, impl, args.precision, args.classes, args.softmax_rows,
                                   args.logit_range)
        name = 'fpga4ml exact (default)' if mode == 'exact' else f"hls4ml '{label}'"
        print(f'| {name} | {err:.3g} | {agree:.2%} |')


if __name__ == '__main__':
    main()
