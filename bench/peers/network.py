"""The integer network of a typed fpga4ml model, handed to a peer tool run in a subprocess.

`export_ops` reads the typed graph (a chain of Input, Quantize, Dense and ReLU nodes) and writes
what the peers need: the quantized weights as fpga4ml uses them and every cast as per-element
(k, i, f) with its rounding and overflow (the op list of bench/peers/peer_worker.py). Dense
accumulators must be exact (fpga4ml's 'auto'): the peers sum exactly and then cast into the
Dense's result type; the bench checks the outputs are equal on thousands of inputs anyway.

`run_peer` runs peer_worker.py with the same interpreter, so the LGPL peers (da4ml, alkaid) are
only ever imported in that child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name('peer_worker.py')
#: fpga4ml rounding / overflow modes the peers' quantize reproduces
PEER_ROUNDING = ('TRN', 'RND')
PEER_OVERFLOW = ('WRAP', 'SAT', 'SAT_SYM')


class PeerError(RuntimeError):
    """A peer tool failed, or the network uses something the peers cannot express."""


def kif(t, size: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, i, f) arrays of one FixedType broadcast to `size` elements (i excludes the sign bit)."""
    if t.rounding not in PEER_ROUNDING or t.overflow not in PEER_OVERFLOW:
        raise PeerError(f'{where}: type {t} has rounding {t.rounding} / overflow {t.overflow}; the peers '
                        f'support rounding {PEER_ROUNDING} and overflow {PEER_OVERFLOW}')
    full = lambda v: np.full(size, v, dtype=np.int64)  # noqa: E731
    return full(int(t.signed)), full(t.integer - int(t.signed)), full(t.width - t.integer)


class OpList:
    """The op list being built plus the arrays it refers to by key."""

    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value: np.ndarray) -> str:
        """Store an array and return its key."""
        key = f'a{len(self.arrays)}'
        self.arrays[key] = np.asarray(value)
        return key

    def quantize(self, k, i, f, rounding: str, overflow: str) -> None:
        """Append a per-element cast."""
        self.ops.append({'op': 'quantize', 'k': self.array(k), 'i': self.array(i), 'f': self.array(f),
                         'round': rounding, 'overflow': overflow})

    def cast(self, t, size: int, where: str) -> None:
        """Append a cast into one FixedType."""
        self.quantize(*kif(t, size, where), t.rounding, t.overflow)

    def save(self, path: Path) -> Path:
        """Write the network file the worker reads (.npz with the op list under 'ops')."""
        np.savez(path, ops=np.asarray(json.dumps(self.ops)), **self.arrays)
        return path


def element_kif(node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-element (k, i, f) of a Quantize with attrs['element_types'] (pruned elements: 0, 0, 0)."""
    spec = node.attrs['element_types']
    k, i, f = (np.broadcast_to(np.asarray(spec[key], dtype=np.int64), node.shape).reshape(-1).copy()
               for key in ('k', 'i', 'f'))
    pruned = k + i + f <= 0        # element type fixed<k+i+f, k+i> (semantics.params.element_groups)
    k[pruned], i[pruned], f[pruned] = 0, 0, 0
    return k, i, f


def export_ops(model) -> OpList:
    """The op list of a typed fpga4ml model made of Input, Quantize, Dense and ReLU nodes in a chain."""
    graph, out = model.graph, OpList()
    prev = None
    for node in graph:
        where = f'layer {node.name!r} ({node.op})'
        if node.inputs and node.inputs != [prev]:
            raise PeerError(f'{where}: the peer export handles a chain of layers only')
        if node.op == 'Input':
            out.cast(node.result_type, node.size, where)
        elif node.op == 'Quantize':
            if 'element_types' in node.attrs:
                spec = node.attrs['element_types']
                out.quantize(*element_kif(node), spec.get('rounding', 'TRN'), spec.get('overflow', 'WRAP'))
            out.cast(node.result_type, node.size, where)
        elif node.op == 'Dense':
            w_t, b_t = node.types['weight'], node.types.get('bias')
            kernel = w_t.to_float(node.qweights['kernel'])
            bias = b_t.to_float(node.qweights['bias']) if 'bias' in node.qweights else np.zeros(node.size)
            out.ops.append({'op': 'dense', 'kernel': out.array(kernel), 'bias': out.array(bias)})
            out.cast(node.result_type, node.size, where)
        elif node.op == 'Activation' and node.attrs.get('function') == 'relu':
            out.ops.append({'op': 'relu'})
            out.cast(node.result_type, node.size, where)
        else:
            raise PeerError(f'{where}: not supported by the peer export (Input, Quantize, Dense, relu Activation)')
        prev = node.name
    return out


def run_peer(tool: str, ops: OpList, x: np.ndarray, out_dir: Path, top: str, clock_period: float,
             latency_cutoff: float, timeout: float = 3600) -> dict:
    """Build the network with `tool` in a child process; returns the worker's result with the
    predictions loaded (key 'predictions': float64 array, one row per input row)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / 'inputs.npy', np.asarray(x, dtype=np.float64))
    job = {'tool': tool, 'top': top, 'out_dir': str(out_dir), 'latency_cutoff': latency_cutoff,
           'clock_period': clock_period, 'network': str(ops.save(out_dir / 'network.npz')),
           'inputs': str(out_dir / 'inputs.npy'), 'result': str(out_dir / 'peer_result.json')}
    (out_dir / 'peer_job.json').write_text(json.dumps(job, indent=1))
    proc = subprocess.run([sys.executable, str(WORKER), str(out_dir / 'peer_job.json')], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PeerError(f'{tool} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}')
    result = json.loads((out_dir / 'peer_result.json').read_text())
    result['predictions'] = np.load(result['predictions'])
    return result
