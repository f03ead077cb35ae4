"""Run a typed graph over a batch: chunked, vectorized, no C++ build.

`Emulator(graph, intervals)` compiles one kernel per node from its recipe (fpga4ml/semantics). `run()` quantizes the
float inputs into the input types, evaluates the nodes in order on cache-sized chunks of the
batch (two chunks in flight on two threads; numpy and BLAS release the GIL), and returns
int64 mantissas; `predict()` returns floats.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..intervals import Interval
from ..ir import Graph, GraphError, operands
from ..semantics import compile_node
from ..semantics.spec import n_outputs, output_types
from . import fast

#: most samples per chunk: intermediate arrays of a chunk stay in the L2 cache
DEFAULT_CHUNK = 2048
#: int64 elements the largest intermediate array of a chunk may hold (1.8 MB): convolutional
#: networks get chunks of fewer samples, so their feature maps (and im2col windows, without numba)
#: stay near the cache. Arrays of 2 MB and more ran twice as slow per image on the SVHN CNN
#: (bench/bench_emulator_speed.py: 16 images of 30x30x16 per chunk 147 us/image, 17 images 311).
CHUNK_ELEMENTS = 230_400


@dataclass
class LayerStats:
    """What one layer's output did on a batch: overflows and the range used."""

    name: str
    type: str
    count: int = 0
    overflow: int = 0
    min: float = float('inf')
    max: float = float('-inf')
    type_min: float = 0.0
    type_max: float = 0.0
    #: NaN values fed to this layer (inputs only): quantized to 0, as ap_fixed converts NaN
    nan: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def overflow_fraction(self) -> float:
        """Share of values that wrapped or saturated in this layer."""
        return self.overflow / self.count if self.count else 0.0


def _elements_per_sample(graph: Graph, node) -> int:
    """Largest per-sample array a node's kernel holds: its output, or its im2col windows (a Conv
    without numba; the numba kernel reads its windows from the input)."""
    if node.op != 'Conv' or fast.available():
        return node.size
    taps = int(np.prod(node.weights['kernel'].shape[:-2]))
    return max(node.size, node.size // node.shape[-1] * taps * graph[node.inputs[0]].shape[-1])


def auto_chunk(graph: Graph) -> int:
    """Samples per chunk: DEFAULT_CHUNK, fewer when the widest intermediate exceeds CHUNK_ELEMENTS."""
    widest = max((_elements_per_sample(graph, node) for node in graph), default=1)
    return max(8, min(DEFAULT_CHUNK, CHUNK_ELEMENTS // max(widest, 1)))


class Emulator:
    """The bit-exact integer evaluator of a typed graph."""

    def __init__(self, graph: Graph, intervals: dict[str, Interval], chunk: int | None = None,
                 threads: int | None = None) -> None:
        graph.validate()
        self.graph = graph
        self.chunk = int(chunk) if chunk else auto_chunk(graph)
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.kernels = {}
        for node in graph:
            if node.op == 'Input':
                continue
            in_types = operands(node, {i: output_types(graph[i]) for i in node.inputs})
            in_ivs = operands(node, intervals)
            self.kernels[node.name] = compile_node(node, in_types, in_ivs)
        # how many consumers read each node: lets a chunk free intermediates early
        self._uses = {node.name: 0 for node in graph}
        for node in graph:
            for src in node.inputs:
                self._uses[src] += 1

    # ------------------------------------------------------------------ inputs / outputs
    def _as_inputs(self, x) -> list[np.ndarray]:
        names = self.graph.inputs
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise GraphError(f'missing inputs {missing}; the model inputs are {names}')
            xs = [x[n] for n in names]
        if len(xs) != len(names):
            raise GraphError(f'the model has {len(names)} inputs {names}, got {len(xs)} arrays')
        arrays = []
        for name, a in zip(names, xs):
            a = np.asarray(a)
            shape = self.graph[name].shape
            if a.shape[1:] != shape:
                if a.shape == shape:
                    a = a[None]
                else:
                    raise GraphError(f'input {name!r}: expected shape (batch,) + {shape}, got {a.shape}')
            if np.iscomplexobj(a):
                raise GraphError(f'input {name!r}: complex values (dtype {a.dtype}) are not supported; pass the '
                                 'real and imaginary parts as separate real inputs or features')
            if not np.issubdtype(a.dtype, np.number):
                raise GraphError(f'input {name!r}: expected a numeric array, got dtype {a.dtype}')
            arrays.append(a)
        n = {a.shape[0] for a in arrays}
        if len(n) != 1:
            raise GraphError(f'inputs have different batch sizes {sorted(n)}')
        return arrays

    # ------------------------------------------------------------------ evaluation
    def _run_chunk(self, xs: list[np.ndarray], keep: set[str], stats: dict | None) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        uses = dict(self._uses)
        kept: dict[str, np.ndarray] = {}
        for node in self.graph:
            st = None if stats is None else {}
            if node.op == 'Input':
                t = node.result_type
                if st is None:
                    out = t.quantize(xs[self.graph.inputs.index(node.name)])
                else:
                    out, n = t.quantize_count(xs[self.graph.inputs.index(node.name)])
                    st['overflow'] = n
            else:
                out = self.kernels[node.name](operands(node, values), st)
                for src in node.inputs:
                    uses[src] -= 1
                    if uses[src] == 0 and src not in keep:
                        del values[src]
            values[node.name] = out
            if node.name in keep:
                kept[node.name] = out
            if stats is not None:
                stats[node.name] += st.get('overflow', 0)
        return kept

    def run(self, x, keep: list[str] | None = None, stats: dict | None = None) -> dict[str, np.ndarray]:
        """Evaluate the graph; returns int64 mantissas of the outputs (or of the `keep` nodes)."""
        xs = self._as_inputs(x)
        keep_set = {name for name in (keep if keep is not None else self.graph.outputs)
                    if n_outputs(self.graph[name]) == 1}  # a tuple of outputs is kept by its Select nodes
        n = xs[0].shape[0]
        bounds = [(i, min(i + self.chunk, n)) for i in range(0, n, self.chunk)] or [(0, 0)]

        def one(b):
            return self._run_chunk([a[b[0]:b[1]] for a in xs], keep_set, None)

        if stats is not None:
            for node in self.graph:
                stats.setdefault(node.name, 0)
            parts = [self._run_chunk([a[s:e] for a in xs], keep_set, stats) for s, e in bounds]
        elif self.threads > 1 and len(bounds) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(one, bounds))
        else:
            parts = [one(b) for b in bounds]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in keep_set}

    def nan_counts(self, x) -> dict[str, int]:
        """Input name -> number of NaN values in that input of batch `x` (inputs without NaN omitted)."""
        counts = {}
        for name, a in zip(self.graph.inputs, self._as_inputs(x)):
            n = int(np.isnan(a).sum()) if a.dtype.kind == 'f' else 0
            if n:
                counts[name] = n
        return counts

    def predict(self, x) -> list[np.ndarray]:
        """Float outputs (exact values of the output mantissas), one array per graph output."""
        mantissas = self.run(x)
        return [self.graph[name].result_type.to_float(mantissas[name]) for name in self.graph.outputs]

    def trace(self, x) -> tuple[dict[str, np.ndarray], dict[str, LayerStats]]:
        """Every layer's float output and its overflow/range statistics (NaN inputs counted per input)."""
        raw: dict = {}
        mantissas = self.run(x, keep=[n.name for n in self.graph], stats=raw)
        nans = self.nan_counts(x)
        outputs, stats = {}, {}
        for node in self.graph:
            if node.name not in mantissas:
                continue  # a node with several outputs: its Select nodes carry them
            t = node.result_type
            values = t.to_float(mantissas[node.name])
            outputs[node.name] = values
            stats[node.name] = LayerStats(
                name=node.name, type=str(t), count=int(values.size), overflow=int(raw[node.name]),
                min=float(values.min()) if values.size else 0.0, max=float(values.max()) if values.size else 0.0,
                type_min=t.min_value, type_max=t.max_value, nan=nans.get(node.name, 0))
        return outputs, stats
