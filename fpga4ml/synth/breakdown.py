"""Where the LUTs go: the cells of a synthesized Verilog design attributed to layers and op kinds.

The Verilog back end writes one flat module in which every netlist signal N is the wire ``sN``
(adders are kept, so Yosys keeps their names) and its pipeline copies are ``sN_dK``. Two steps:

1. `signal_owners(model)`: the layer and op kind of every netlist signal. Each layer's output
   signals are found by value (the netlist interpreter and the emulator's trace on the same random
   inputs; among equal candidates the first one created after the previous layer's outputs; the
   graph outputs' signals are the netlist's output ports), and
   a layer owns every signal in the backward cone of its outputs that no earlier layer owns.
2. `attribute_cells(netlist, ...)`: every cell of Yosys' mapped netlist (``netlist.json``) gets the
   signal of the named net it drives (``sN``: its op; ``sN_dK``: a pipeline register), or, for
   logic inside a mapped expression (unnamed nets), the signal it feeds: a cell that feeds a carry
   chain belongs to that adder, any other one to the nearest unnamed logic signal (a cast, ReLU,
   maximum, ...) between the named nets around it.

`breakdown(model)` puts both together on the netlist.json that ``model.build()`` keeps in the
project folder, and returns LUT/FF/CARRY/... per layer, per op kind and per (layer, kind); each
table sums to the synthesis totals. Op kinds: 'adders' (add, sub, neg), 'casts/activations'
(cast, select, max, min, shifts), 'multipliers', 'multiplexers' (mux), 'tables' (ROMs), 'dividers',
'pipeline registers' and 'other' (the valid chain, ports and cells no signal explains).
"""

from __future__ import annotations

import copy
import json
import re
from collections import deque
from pathlib import Path

import numpy as np

from .yosys import FAMILIES, cell_pins, check_family

KINDS = {'add': 'adders', 'neg': 'adders', 'cast': 'casts/activations', 'select': 'casts/activations',
         'max': 'casts/activations', 'min': 'casts/activations', 'shr': 'casts/activations',
         'shl': 'casts/activations', 'mul': 'multipliers', 'rom': 'tables', 'divc': 'dividers', 'mux': 'multiplexers',
         'input': 'other', 'const': 'other'}
REGISTERS, OTHER = 'pipeline registers', 'other'
#: netlist ops that compute nothing in hardware (wiring or constants)
WIRING = ('shr', 'shl', 'input', 'const')
NET_NAME = re.compile(r's(\d+)(?:_d(\d+)|_c|_r)?')
SAMPLES = 128


# --------------------------------------------------------------------------- signal owners

def _design_netlist(model):
    """The unrolled design's netlist (ValueError for streaming or folded designs)."""
    from ..backends.verilog.design import Design, design

    d = design(model, progress=False)
    if not isinstance(d, Design):
        raise ValueError(f'the LUT breakdown supports the unrolled architecture with ReuseFactor 1; '
                         f'{model.project_name!r} is a {type(d).__name__}')
    return d.netlist


def signal_values(nl, mantissas: list[np.ndarray]) -> np.ndarray:
    """Real values (batch, signals) of every netlist signal on the given input mantissas."""
    from ..backends.verilog.netlist import Port

    probe = copy.copy(nl)
    probe.outputs = [Port('all', (len(nl),), None, list(range(len(nl))))]
    values = probe.evaluate(mantissas)[0]
    frac = np.array([s.frac for s in nl.signals])
    return np.ldexp(values.astype(np.float64), -frac) + 0.0   # + 0.0: no negative zeros


def _random_inputs(model, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(float inputs, their mantissas): uniform over each input type's range (clipped to +-16)."""
    rng = np.random.default_rng(0)
    xs, ms = [], []
    for name in model.graph.inputs:
        node = model.graph[name]
        t = node.result_type
        x = rng.uniform(max(t.min_value, -16.0), min(t.max_value, 16.0), (n,) + tuple(node.shape))
        ms.append(t.quantize(x))
        xs.append(t.to_float(ms[-1]))
    return xs, ms


def _layer_outputs(model, nl, n: int) -> dict[str, list[int]]:
    """Output signal ids of every layer, matched by value (see the module docstring)."""
    xs, ms = _random_inputs(model, n)
    values = signal_values(nl, ms)
    by_value: dict[bytes, list[int]] = {}
    for sid in range(values.shape[1]):
        by_value.setdefault(values[:, sid].tobytes(), []).append(sid)
    _, traced = model.trace(xs if len(xs) > 1 else xs[0])
    outputs: dict[str, list[int]] = {p.name: list(p.signals) for p in nl.inputs}
    last = max((s for p in nl.inputs for s in p.signals), default=-1)
    for node in model.graph:
        value = traced.get(node.name) if node.op != 'Input' else None
        if not isinstance(value, np.ndarray) or value.size != n * node.size:
            continue
        cols = np.asarray(value, dtype=np.float64).reshape(n, -1) + 0.0
        sids = []
        for j in range(cols.shape[1]):
            cands = by_value.get(np.ascontiguousarray(cols[:, j]).tobytes(), [])
            newer = [s for s in cands if s > last]
            if newer or cands:
                sids.append(newer[0] if newer else cands[-1])
        outputs[node.name] = sids
        last = max([last] + sids)
    outputs.update((p.name, list(p.signals)) for p in nl.outputs)   # known exactly
    return outputs


def signal_owners(model, samples: int = SAMPLES) -> tuple[list[str | None], list[str]]:
    """(layer name or None, op kind) of every signal of the model's unrolled netlist."""
    nl = _design_netlist(model)
    owner: list[str | None] = [None] * len(nl)
    outputs = _layer_outputs(model, nl, samples)
    for node in model.graph:
        queue = deque(s for s in outputs.get(node.name, ()) if owner[s] is None)
        for s in queue:
            owner[s] = node.name
        while queue:
            for a in nl[queue.popleft()].args:
                if owner[a] is None:
                    owner[a] = node.name
                    queue.append(a)
    return owner, [KINDS.get(s.op, OTHER) for s in nl.signals]


# --------------------------------------------------------------------------- Yosys cells

def _net_signals(module: dict) -> dict[int, tuple[int, bool]]:
    """bit -> (signal id, is a pipeline copy) for the bits of nets named sN / sN_dK / sN_c / sN_r."""
    named = {}
    for name, net in module['netnames'].items():
        match = NET_NAME.fullmatch(name)
        if match:
            for bit in net['bits']:
                if not isinstance(bit, str):
                    named.setdefault(bit, (int(match.group(1)), match.group(2) is not None))
    return named


def _wiring(module: dict) -> tuple[dict, dict]:
    """(bit -> driving cell, bit -> reading cells) of a mapped module."""
    drivers, readers = {}, {}
    for name, cell in module['cells'].items():
        for _, bit, output in cell_pins(cell):
            if output:
                drivers[bit] = name
            else:
                readers.setdefault(bit, []).append(name)
    return drivers, readers


def _cell_bits(cell: dict, direction: str) -> list[int]:
    """The non-constant bits of a cell's input or output ports."""
    return [bit for _, bit, output in cell_pins(cell) if output == (direction == 'output')]


def _nearest(start: str, module: dict, named: dict, step, limit: int = 64) -> list[int]:
    """Signal ids of the named nets nearest to a cell, walking cells with `step` (forward/backward)."""
    found, seen, queue = [], {start}, deque([start])
    while queue and len(seen) < limit:
        for bit, nxt in step(queue.popleft()):
            if bit in named:
                found.append(named[bit][0])
            elif nxt is not None and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return found


def _between(nl, downstream: list[int], upstream: set[int], visible: set[int]) -> list[int]:
    """Netlist signals computed between the named nets around a cell (no wiring), nearest first."""
    out, seen = [], set(upstream)
    queue = deque(downstream)
    while queue:
        for a in nl[queue.popleft()].args:
            if a in seen or a in visible:
                continue
            seen.add(a)
            queue.append(a)
            if nl[a].op not in WIRING:
                out.append(a)
    return out


def _carry_types(fam) -> re.Pattern:
    return re.compile('|'.join(fam.groups.get('CARRY', {})) or r'(?!)')


def attribute_cells(netlist: dict, top: str, family: str, nl, owners: list, kinds: list[str]) -> list[tuple]:
    """(cell type, layer, kind) of every cell of the mapped top module (see the module docstring)."""
    fam = check_family(family)
    module = netlist['modules'][top]
    cells = module['cells']
    named = _net_signals(module)
    visible = {sid for sid, _ in named.values()}
    drivers, readers = _wiring(module)
    carry = _carry_types(fam)
    ff = re.compile('|'.join(fam.groups.get('FF', {})) or r'(?!)')
    forward = lambda c: [(b, r) for b in _cell_bits(cells[c], 'output') for r in readers.get(b, [None])]  # noqa: E731
    backward = lambda c: [(b, drivers.get(b)) for b in _cell_bits(cells[c], 'input')]  # noqa: E731
    out = []
    for name, cell in cells.items():
        sid, kind = None, None
        own = [named[b] for b in _cell_bits(cell, 'output') if b in named]
        if own:
            sid, copy_ = own[0]
            kind = REGISTERS if copy_ else None
        else:
            down = _nearest(name, module, named, forward)
            feeds_carry = any(r is not None and carry.fullmatch(cells[r]['type']) for _, r in forward(name))
            if down and not feeds_carry:
                between = _between(nl, down, set(_nearest(name, module, named, backward)), visible)
                sid = between[0] if between else down[0]
            elif down:
                sid = down[0]
        if sid is None or sid >= len(owners):
            out.append((cell['type'], OTHER, OTHER))
            continue
        if ff.fullmatch(cell['type']):
            kind = REGISTERS
        out.append((cell['type'], owners[sid] or OTHER, kind or kinds[sid]))
    return out


def tabulate(cells: list[tuple], family: str) -> dict:
    """Resource counts (the family's report keys) per layer, per kind and per 'layer / kind'."""
    groups = FAMILIES[family].groups
    tables: dict[str, dict[str, dict[str, int]]] = {'by_layer': {}, 'by_kind': {}, 'by_layer_kind': {}}
    for cell_type, layer, kind in cells:
        for key, patterns in groups.items():
            weight = next((w for p, w in patterns.items() if re.fullmatch(p, cell_type)), 0)
            if not weight:
                continue
            for table, row in (('by_layer', layer), ('by_kind', kind), ('by_layer_kind', f'{layer} / {kind}')):
                counts = tables[table].setdefault(row, dict.fromkeys(groups, 0))
                counts[key] += weight
            break
    return tables


def breakdown(model, synth_dir=None, family: str | None = None) -> dict:
    """LUT/FF/CARRY/... of a built Verilog model per layer and op kind (tables sum to the totals).

    synth_dir: the folder with Yosys' netlist.json and synth_report.json (default: the model's
    output_dir, where ``model.build()`` leaves them); family defaults to the one the report names.
    """
    folder = Path(synth_dir if synth_dir is not None else model.output_dir)
    netlist_path, report_path = folder / 'netlist.json', folder / 'synth_report.json'
    if not netlist_path.is_file():
        raise FileNotFoundError(f'{netlist_path} not found: run model.build() (Yosys) first')
    if family is None:
        family = json.loads(report_path.read_text()).get('family', 'xcup') if report_path.is_file() else 'xcup'
    owners, kinds = signal_owners(model)
    netlist = json.loads(netlist_path.read_text())
    return tabulate(attribute_cells(netlist, model.project_name, family, _design_netlist(model), owners, kinds),
                    family)


def format_breakdown(tables: dict, keys=('LUT', 'FF', 'CARRY')) -> str:
    """The per-layer and per-kind tables as text."""
    lines = []
    for title, table in (('per layer', tables['by_layer']), ('per op kind', tables['by_kind'])):
        width = max([len(r) for r in table] + [10])
        lines.append(f'    {title:<{width}}' + ''.join(f'{k:>9s}' for k in keys))
        for row, counts in sorted(table.items(), key=lambda kv: -kv[1].get('LUT', 0)):
            lines.append(f'    {row:<{width}}' + ''.join(f'{counts.get(k, 0):>9d}' for k in keys))
    return '\n'.join(lines)
