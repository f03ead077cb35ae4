"""Build one integer network with a peer tool (da4ml 0.6.0 or alkaid 0.8.2) in its own process.

Both peers are LGPLv3: bench/bench_verilog.py never imports them; it runs this script with the same
interpreter (``python bench/peers/peer_worker.py JOB.json``) and reads the result file back.

The job (JSON) holds:

* ``tool``: 'da4ml' or 'alkaid'; ``top``: the top module name; ``out_dir``: where the peer writes
  its project (Verilog in ``out_dir/src`` and ``out_dir/src/static``);
* ``latency_cutoff``: the peer's pipelining knob (da4ml: adder levels per stage; alkaid:
  nanoseconds of its own delay model per stage); ``clock_period`` (ns) for its constraint files;
* ``network``: the path of an ``.npz`` with ``ops`` (a JSON list, below) and the arrays it names;
* ``inputs``: an ``.npy`` batch (float64, already on the input grid) to predict; ``result``: the
  JSON file this script writes.

Ops, applied in order to the flat input vector:

* ``{"op": "quantize", "k": A, "i": A, "f": A, "round": "TRN"|"RND", "overflow": "WRAP"|"SAT"|"SAT_SYM"}``
  with A the npz key of a per-element int array (k = 1 signed, i integer bits without the sign,
  f fractional bits); the first op is the input's quantize;
* ``{"op": "dense", "kernel": A, "bias": A}``: ``x @ kernel + bias``, exact;
* ``{"op": "relu"}``: ``max(x, 0)``, exact.

The result holds ``seconds`` (trace, optimization and Verilog writing, after a warm-up build of a
2-input network so that imports and first-call set-up are not timed),
``stages`` (pipeline latency in clock cycles from input to output), ``cost`` (the peer's own LUT
estimate), ``files`` (the Verilog files the top needs) and ``predictions`` (an ``.npy`` path of the
peer's own interpreter on ``inputs``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

TOOLS = ('da4ml', 'alkaid')


def load_ops(path: str) -> list[dict]:
    """The op list of a network file, with every array key replaced by its array."""
    data = np.load(path)
    ops = json.loads(str(data['ops']))
    for op in ops:
        for key, value in op.items():
            if key != 'op' and isinstance(value, str) and value in data.files:
                op[key] = data[value]
    return ops


def apply_ops(x, ops: list[dict], relu, quantize):
    """Run the op list on a symbolic peer array with the peer's relu and quantize functions."""
    for n, op in enumerate(ops[1:], 1):
        kind = op['op']
        if kind == 'dense':
            x = x @ op['kernel'].astype(np.float64) + op['bias'].astype(np.float64)
        elif kind == 'relu':
            x = relu(x)
        elif kind == 'quantize':
            x = quantize(x, op['k'], op['i'], op['f'], overflow_mode=op['overflow'], round_mode=op['round'])
        else:
            raise ValueError(f'op {n}: unknown kind {kind!r}; accepted: quantize, dense, relu')
    return x


def input_quantize(inp, op: dict):
    """The input's quantize (the first op of every network)."""
    if op['op'] != 'quantize':
        raise ValueError(f'the first op must quantize the input, got {op["op"]!r}')
    return inp.quantize(op['k'], op['i'], op['f'], overflow_mode=op['overflow'], round_mode=op['round'])


def build_da4ml(ops: list[dict], job: dict):
    """da4ml 0.6.0: trace, optimize, pipeline by adder levels; returns (comb logic, stages)."""
    from da4ml.codegen import RTLModel
    from da4ml.trace import FixedVariableArrayInput, comb_trace
    from da4ml.trace.ops import quantize, relu

    inp = FixedVariableArrayInput((ops[0]['k'].size,))
    out = apply_ops(input_quantize(inp, ops[0]), ops, relu, quantize)
    comb = comb_trace(inp, out)
    RTLModel(comb, job['top'], job['out_dir'], latency_cutoff=job['latency_cutoff'],
             clock_period=job['clock_period'], print_latency=False).write()
    # metadata counts da4ml's combinational stages; its top registers the inputs before stage 0
    # and the outputs after the last stage, so the latency in clock cycles is one more
    meta = json.loads((Path(job['out_dir']) / 'metadata.json').read_text())
    return comb, int(meta['latency']) + 1


def build_alkaid(ops: list[dict], job: dict):
    """alkaid 0.8.2: trace, optimize, pipeline by its delay model; returns (comb logic, stages)."""
    from alkaid.codegen import RTLModel
    from alkaid.trace import FVArrayInput, trace
    from alkaid.trace.ops import quantize, relu

    inp = FVArrayInput((ops[0]['k'].size,))
    out = apply_ops(input_quantize(inp, ops[0]), ops, relu, quantize)
    comb = trace(inp, out)
    rtl = RTLModel(comb, job['out_dir'], job['top'], latency_cutoff=job['latency_cutoff'],
                   clock_period=job['clock_period'], print_latency=False)
    rtl.write()
    # alkaid's latency counts its logic blocks; its top registers the inputs before the first and
    # every block's outputs after it, so the latency in clock cycles is one more (as da4ml's)
    return comb, int(round(rtl.latency)) + 1


def needed_files(src: Path, top: str) -> list[str]:
    """The generated modules plus the library modules (src/static) that they instantiate."""
    files = sorted(p for p in src.glob('*.v') if not p.stem.endswith('_wrapper'))
    text = ''.join(p.read_text() for p in files)
    files += [p for p in sorted((src / 'static').glob('*.v'))
              if re.search(rf'\b{re.escape(p.stem)}\s*(#|\w+\s*\()', text)]
    return [str(p) for p in files]


def warm_up(build, job: dict) -> None:
    """Build a 2-input Dense + ReLU once (into out_dir/warmup), so lazy imports are not timed."""
    two = np.ones(2, dtype=np.int64)
    ops = [{'op': 'quantize', 'k': two, 'i': two * 3, 'f': two * 4, 'round': 'TRN', 'overflow': 'WRAP'},
           {'op': 'dense', 'kernel': np.array([[0.5, -0.25], [0.75, 1.0]]), 'bias': np.zeros(2)}, {'op': 'relu'}]
    build(ops, {**job, 'top': 'warmup', 'out_dir': str(Path(job['out_dir']) / 'warmup')})


def main(argv: list[str]) -> int:
    """Run the job file given on the command line; return the exit status."""
    if len(argv) != 1:
        print('usage: python bench/peers/peer_worker.py JOB.json', file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    if job['tool'] not in TOOLS:
        print(f'unknown tool {job["tool"]!r}; accepted: {", ".join(TOOLS)}', file=sys.stderr)
        return 2
    ops = load_ops(job['network'])
    build = build_da4ml if job['tool'] == 'da4ml' else build_alkaid
    warm_up(build, job)
    start = time.perf_counter()
    comb, stages = build(ops, job)
    seconds = time.perf_counter() - start
    x = np.load(job['inputs'])
    pred = np.asarray(comb.predict(x), dtype=np.float64).reshape(len(x), -1)
    pred_path = Path(job['result']).with_suffix('.npy')
    np.save(pred_path, pred)
    result = {'tool': job['tool'], 'seconds': seconds, 'stages': stages, 'cost': float(comb.cost),
              'files': needed_files(Path(job['out_dir']) / 'src', job['top']), 'predictions': str(pred_path)}
    Path(job['result']).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
