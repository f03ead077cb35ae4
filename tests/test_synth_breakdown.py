"""fpga4ml.synth.breakdown: Yosys cells attributed to layers and op kinds, summing to the totals."""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.backends.verilog.netlist import Netlist
from fpga4ml.fixed import FixedType
from fpga4ml.synth import breakdown as bd

XCUP_PORTS = {'LUT2': ('I0', 'I1'), 'LUT3': ('I0', 'I1', 'I2'), 'CARRY4': ('S', 'DI', 'CI'), 'FDRE': ('D', 'C', 'CE')}


def cell(kind: str, inputs: list[int], outputs: dict[str, list[int]]) -> dict:
    """A mapped cell of the Yosys JSON netlist: inputs on the type's first ports, then its outputs."""
    ports = XCUP_PORTS[kind]
    conns = {p: [b] for p, b in zip(ports, inputs)} | outputs
    dirs = {p: 'input' for p in ports[:len(inputs)]} | {p: 'output' for p in outputs}
    return {'type': kind, 'connections': conns, 'port_directions': dirs}


def tiny_netlist():
    """Signals 0, 1 inputs; 2 = 0 + 1 (layer fc); 3 = cast(2) (relu); 4 = 3 + 0 (fc2)."""
    nl = Netlist()
    a, b = nl.add_input('x', (2,), FixedType(6, 3))
    s = nl.add(a, b)
    c = nl.cast(s, FixedType(5, 2, overflow='SAT'))
    d = nl.add(c, a)
    assert (s, c, d) == (2, 3, 4)
    return nl, ['x', 'x', 'fc', 'relu', 'fc2'], ['other', 'other', 'adders', 'casts/activations', 'adders']


def mapped(names: dict[str, int]) -> dict:
    """Cells: a LUT into a carry chain (s2), the carry, s2's pipeline register, a LUT computing the
    cast after the register (unnamed), the LUT of s4, and the valid chain's flip-flop."""
    cells = {
        'lut_a': cell('LUT2', [10, 11], {'O': [20]}),
        'carry': cell('CARRY4', [20], {'O': [30]}),
        'ff': cell('FDRE', [30], {'Q': [31]}),
        'lut_b': cell('LUT3', [31], {'O': [40]}),
        'lut_c': cell('LUT2', [40, 10], {'O': [50]}),
        'valid': cell('FDRE', [61], {'Q': [60]}),
    }
    netnames = {name: {'hide_name': 0, 'bits': [bit]} for name, bit in names.items()}
    return {'modules': {'top': {'cells': cells, 'netnames': netnames, 'ports': {}}}}


NAMES = {'s0': 10, 's1': 11, 's2': 30, 's2_d1': 31, 's4': 50, 'valid_sr': 60}


def test_attribution_rules():
    nl, owners, kinds = tiny_netlist()
    cells = bd.attribute_cells(mapped(NAMES), 'top', 'xcup', nl, owners, kinds)
    assert dict(zip(['lut_a', 'carry', 'ff', 'lut_b', 'lut_c', 'valid'], [(l, k) for _, l, k in cells])) == {
        'lut_a': ('fc', 'adders'),                      # feeds s2's carry chain
        'carry': ('fc', 'adders'),                      # drives s2
        'ff': ('fc', 'pipeline registers'),             # s2_d1
        'lut_b': ('relu', 'casts/activations'),         # between s2_d1 and s4: the cast s3
        'lut_c': ('fc2', 'adders'),                     # drives s4
        'valid': ('other', 'other')}
    tables = bd.tabulate(cells, 'xcup')
    assert tables['by_layer']['fc'] == {'LUT': 1, 'FF': 1, 'CARRY': 1, 'DSP': 0, 'BRAM': 0, 'SRL': 0}
    assert tables['by_kind']['casts/activations']['LUT'] == 1
    # control: with s3 visible as a named net (kept), the LUT computing it is attributed to what it drives
    cells = bd.attribute_cells(mapped(NAMES | {'s3': 40}), 'top', 'xcup', nl, owners, kinds)
    assert cells[3][1:] == ('relu', 'casts/activations')


def test_attribution_control_other_owner():
    """Negative control: the same cells with the cast owned by another layer move with it."""
    nl, owners, kinds = tiny_netlist()
    owners[3] = 'fc'
    tables = bd.tabulate(bd.attribute_cells(mapped(NAMES), 'top', 'xcup', nl, owners, kinds), 'xcup')
    assert 'relu' not in tables['by_layer'] and tables['by_layer']['fc']['LUT'] == 2


def tiny_model(tmp_path):
    from fpga4ml.convert import convert_graph
    from fpga4ml.ir import Graph, Node

    rng = np.random.default_rng(0)
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('fc0', 'Dense', ['x'], (3,), weights={'kernel': np.round(rng.uniform(-1, 1, (4, 3)) * 8) / 8,
                                                    'bias': np.array([0.25, -0.5, 0.125])}))
    g.add(Node('relu0', 'Activation', ['fc0'], (3,), attrs={'function': 'relu'}))
    g.add(Node('fc1', 'Dense', ['relu0'], (2,), weights={'kernel': np.round(rng.uniform(-1, 1, (3, 2)) * 8) / 8,
                                                        'bias': np.zeros(2)}))
    g.inputs, g.outputs = ['x'], ['fc1']
    cfg = {'Model': {'Precision': {'default': 'fixed<4,1>', 'accum': 'auto', 'result': 'auto'}},
           'LayerName': {'x': {'Precision': {'result': 'fixed<10,5>'}},
                         'relu0': {'Precision': {'result': 'ufixed<6,0,TRN,SAT>'}}}}
    return convert_graph(g, cfg, backend='Verilog', output_dir=str(tmp_path), project_name='tiny')


def test_signal_owners_follow_the_layers(tmp_path):
    model = tiny_model(tmp_path)
    owners, kinds = bd.signal_owners(model)
    nl = bd._design_netlist(model)
    ops = {(owners[s.id], s.op) for s in nl.signals if s.op not in bd.WIRING}
    assert {layer for layer, op in ops if op == 'add'} <= {'fc0', 'fc1'}
    assert {op for layer, op in ops if layer == 'relu0'} & {'max', 'select', 'cast'}
    assert all(owners[s] == 'x' for p in nl.inputs for s in p.signals)
    assert all(owners[s] == 'fc1' for p in nl.outputs for s in p.signals)


@pytest.mark.slow
def test_breakdown_sums_to_the_totals(tmp_path, capsys):
    """Yosys on the tiny model (about 10 s of CPU): every table sums to the report's totals."""
    pytest.importorskip('pyosys')
    model = tiny_model(tmp_path)
    report = model.build(progress=False)
    tables = bd.breakdown(model)
    for table in ('by_layer', 'by_kind', 'by_layer_kind'):
        for key in ('LUT', 'FF', 'CARRY'):
            assert sum(row[key] for row in tables[table].values()) == report[key], (table, key)
    assert {'fc0', 'relu0', 'fc1'} <= set(tables['by_layer'])
    assert tables['by_kind']['adders']['CARRY'] > 0 and tables['by_kind']['pipeline registers']['FF'] > 0
    text = bd.format_breakdown(tables)
    assert 'per layer' in text and 'fc0' in text and 'adders' in text
    # the report of a built model shows it (hls4ml's read_vivado_report / parse_vivado_report)
    from fpga4ml import report as hreport
    assert hreport.parse_vivado_report(model)['Breakdown'] == tables
    hreport.read_vivado_report(model)
    assert 'YOSYS CELLS PER LAYER AND OP KIND:\n' + text in capsys.readouterr().out
