"""The board's design: project.tcl + design.tcl (Zynq block design to bitstream), build_xclbin.sh (Alveo).

``vivado -mode batch -source design.tcl`` in the project folder (after the HLS ``export`` step has
packaged ``<project>_axi`` as IP under ``<project>_prj/``) creates the Vivado project
``<project>_vivado_accelerator``, the block design with the board's processing system and the
network, runs implementation to the bitstream and copies ``<project>.bit`` and ``<project>.hwh``
(the PYNQ overlay needs both) into the project folder.

Per interface: axi_stream puts an AXI DMA (``hier_0/axi_dma_0``, the PYNQ driver's path) between
the processing system's memory and the wrapper's streams; axi_lite maps the wrapper's registers on
the processing system's AXI master; axi_master lets the wrapper read and write memory itself.
"""

from __future__ import annotations

from ...config import ConfigError
from ..hls.tcl import SOLUTION, format_number
from .boards import BOARDS, AcceleratorSettings

DESIGN_SCRIPT = 'design.tcl'
SETTINGS_SCRIPT = 'project.tcl'
XCLBIN_SCRIPT = 'build_xclbin.sh'

#: per family: the processing system IP and its automation, its ports and clock
_PS = {
    'zynq': {
        'cell': 'processing_system7_0', 'vlnv': 'xilinx.com:ip:processing_system7:5.5',
        'rule': 'xilinx.com:bd_rule:processing_system7',
        'rule_config': '{make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"}',
        'slave_enable': 'CONFIG.PCW_USE_S_AXI_HP0 {1}',
        'master': 'M_AXI_GP0', 'slave': 'S_AXI_HP0', 'clock': 'FCLK_CLK0 (100 MHz)',
    },
    'zynqmp': {
        'cell': 'zynq_ultra_ps_e_0', 'vlnv': 'xilinx.com:ip:zynq_ultra_ps_e:3.3',
        'rule': 'xilinx.com:bd_rule:zynq_ultra_ps_e', 'rule_config': '{apply_board_preset "1"}',
        'slave_enable': 'CONFIG.PSU__USE__S_AXI_GP0 {1} CONFIG.PSU__SAXIGP0__DATA_WIDTH {32}',
        'master': 'M_AXI_HPM0_FPD', 'slave': 'S_AXI_HPC0_FPD', 'clock': 'pl_clk0 (99 MHz)',
    },
}


def settings_script(project: str, acc: AcceleratorSettings, clock_period: float, uncertainty: str) -> str:
    """project.tcl: the variables design.tcl reads."""
    bits_in, bits_out = acc.bitwidths()
    return (f'# {SETTINGS_SCRIPT}: settings of the accelerator "{project}" (written by fpga4ml; read by {DESIGN_SCRIPT})\n'
            f'set project_name "{project}"\nset board "{acc.board}"\nset part "{acc.part}"\n'
            f'set interface "{acc.interface}"\nset clock_period {format_number(clock_period, "clock_period")}\n'
            f'set clock_uncertainty "{uncertainty}"\n'
            f'# bits of one AXI word into the network (DMA MM2S) and out of it (DMA S2MM)\n'
            f'set bit_width_hls_input {bits_in}\nset bit_width_hls_output {bits_out}\n')


def _axi_rule(ps: dict, master: str, slave: str, clock: bool = False) -> str:
    clk = f'{{/{ps["cell"]}/{ps["clock"]}}}' if clock else '{Auto}'
    return (f'apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {{ Clk_master {{Auto}} Clk_slave {clk} '
            f'Clk_xbar {clk} Master {{{master}}} Slave {{{slave}}} ddr_seg {{Auto}} intc_ip {{Auto}} '
            f'master_apm {{0}}}} [get_bd_intf_pins {slave.lstrip("/")}]')


def _network(acc: AcceleratorSettings, ps: dict) -> list[str]:
    """The block-design commands that connect the wrapper IP `nn` for the chosen interface."""
    cell, nn = ps['cell'], '${project_name}_axi_0'
    master, slave = f'/{cell}/{ps["master"]}', f'/{cell}/{ps["slave"]}'
    if acc.interface == 'axi_lite':
        return [_axi_rule(ps, master, f'/{nn}/s_axi_AXILiteS')]
    if acc.interface == 'axi_master':
        return [f'set_property -dict [list {ps["slave_enable"]}] [get_bd_cells {cell}]',
                _axi_rule(ps, master, f'/{nn}/s_axi_CTRL_BUS'),
                _axi_rule(ps, f'/{nn}/m_axi_IN_BUS', slave, clock=True),
                _axi_rule(ps, f'/{nn}/m_axi_OUT_BUS', slave, clock=True)]
    return [f'set_property -dict [list {ps["slave_enable"]}] [get_bd_cells {cell}]',
            'create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 axi_dma_0',
            'set_property -dict [list CONFIG.c_include_sg {0} CONFIG.c_sg_length_width {26} '
            'CONFIG.c_sg_include_stscntrl_strm {0} '
            'CONFIG.c_m_axi_mm2s_data_width ${bit_width_hls_input} CONFIG.c_m_axis_mm2s_tdata_width ${bit_width_hls_input} '
            'CONFIG.c_mm2s_burst_size {256} CONFIG.c_m_axi_s2mm_data_width.VALUE_SRC USER '
            'CONFIG.c_s_axis_s2mm_tdata_width.VALUE_SRC USER '
            'CONFIG.c_m_axi_s2mm_data_width ${bit_width_hls_output} '
            'CONFIG.c_s_axis_s2mm_tdata_width ${bit_width_hls_output} CONFIG.c_s2mm_burst_size {256}] '
            '[get_bd_cells axi_dma_0]',
            _axi_rule(ps, master, '/axi_dma_0/S_AXI_LITE'),
            _axi_rule(ps, '/axi_dma_0/M_AXI_MM2S', slave, clock=True),
            _axi_rule(ps, '/axi_dma_0/M_AXI_S2MM', slave, clock=True),
            f'connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins {nn}/in_r]',
            f'connect_bd_intf_net [get_bd_intf_pins {nn}/out_r] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]',
            f'group_bd_cells hier_0 [get_bd_cells axi_dma_0] [get_bd_cells {nn}]']


def design_script(project: str, acc: AcceleratorSettings) -> str:
    """design.tcl for the board and interface of `acc` (Zynq-7000 and Zynq UltraScale+ boards)."""
    board = BOARDS[acc.board]
    if board.family not in _PS:
        raise ConfigError(f'board {acc.board!r} has no block design (an Alveo card: see xclbin_script); '
                          f'boards with one: {[b for b, info in BOARDS.items() if info.family in _PS]}')
    ps = _PS[board.family]
    nn = '${project_name}_axi_0'
    lines = [
        f'# {DESIGN_SCRIPT}: block design and bitstream of the accelerator "{project}" on {acc.board} '
        f'({acc.interface}; written by fpga4ml).',
        f'# Run after the HLS export step: vivado -mode batch -source {DESIGN_SCRIPT}',
        'set tcldir [file dirname [info script]]', f'source [file join $tcldir {SETTINGS_SCRIPT}]',
        'create_project project_1 ${project_name}_vivado_accelerator -part $part -force',
        f'set_property board_part {board.board_part} [current_project]',
        f'set_property ip_repo_paths ${{project_name}}_prj/{SOLUTION}/impl/ip [current_project]',
        'update_ip_catalog', 'create_bd_design "design_1"',
        f'create_bd_cell -type ip -vlnv {ps["vlnv"]} {ps["cell"]}',
        f'apply_bd_automation -rule {ps["rule"]} -config {ps["rule_config"]} [get_bd_cells {ps["cell"]}]',
        f'create_bd_cell -type ip -vlnv xilinx.com:hls:${{project_name}}_axi:1.0 {nn}',
    ] + _network(acc, ps) + ([  # the AXI automation above clocks an IP with AXI-Lite; the streams do not
        f'apply_bd_automation -rule xilinx.com:bd_rule:clkrst -config {{ Clk {{/{ps["cell"]}/{ps["clock"]}}} }} '
        f'[get_bd_pins {nn}/ap_clk]'] if acc.interface == 'axi_stream' else []) + [
        'validate_bd_design', 'save_bd_design',
        'set bd [get_files design_1.bd]',
        'make_wrapper -files $bd -top',
        'add_files -norecurse [file join [file dirname $bd] hdl design_1_wrapper.v]',
        'launch_runs impl_1 -to_step write_bitstream -jobs 4', 'wait_on_run impl_1',
        'if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {',
        '    puts "ERROR: fpga4ml: implementation did not finish; see the impl_1 run log"', '    exit 1', '}',
        'open_run impl_1', 'report_utilization -file util.rpt -hierarchical -hierarchical_percentages',
        '# the PYNQ overlay: <project>.bit with its hardware handoff <project>.hwh',
        'set bits [glob -nocomplain ${project_name}_vivado_accelerator/project_1.runs/impl_1/*.bit]',
        'set hwhs [glob -nocomplain ${project_name}_vivado_accelerator/project_1.*/sources_1/bd/design_1/hw_handoff/*.hwh]',
        'if {[llength $bits] == 0 || [llength $hwhs] == 0} {',
        '    puts "ERROR: fpga4ml: no bitstream or hardware handoff was written"', '    exit 1', '}',
        'file copy -force [lindex $bits 0] ${project_name}.bit',
        'file copy -force [lindex $hwhs 0] ${project_name}.hwh',
        'puts "fpga4ml: wrote ${project_name}.bit and ${project_name}.hwh"', 'exit 0', '']
    return '\n'.join(lines)


def xclbin_script(project: str, acc: AcceleratorSettings, clock_period: float) -> str:
    """build_xclbin.sh: v++ compile of the kernel and link for the Alveo platform (PLATFORM overrides it)."""
    if acc.family != 'alveo':
        raise ConfigError(f'board {acc.board!r} is not an Alveo card; its design is {DESIGN_SCRIPT}')
    hertz = int(round(1e9 / float(format_number(clock_period, 'clock_period'))))
    kernel = f'{project}_kernel'
    sources = ' '.join(f'firmware/{name}.cpp' for name in (project, f'{project}_axi', kernel))
    return f'''#!/bin/bash
# {XCLBIN_SCRIPT}: the Alveo kernel of "{project}" for {acc.board} (written by fpga4ml).
# Needs Vitis (v++) and the platform installed; PLATFORM=... overrides the platform.
# Writes xo_files/{kernel}.xo, xclbin_files/{kernel}.xclbin and a copy {project}.xclbin.
set -euo pipefail
cd "$(dirname "$0")"
PLATFORM="${{PLATFORM:-{acc.platform}}}"
KERNEL={kernel}
mkdir -p xo_files xclbin_files
echo "==> fpga4ml: v++ compile of $KERNEL for $PLATFORM"
v++ -c -t hw --platform "$PLATFORM" -k "$KERNEL" --hls.clock {hertz}:"$KERNEL" -I firmware \\
    --advanced.prop kernel."$KERNEL".kernel_flags="-std=c++14" {sources} -o xo_files/"$KERNEL".xo
echo "==> fpga4ml: v++ link"
v++ -l -t hw --platform "$PLATFORM" xo_files/"$KERNEL".xo -o xclbin_files/"$KERNEL".xclbin
cp xclbin_files/"$KERNEL".xclbin {project}.xclbin
echo "fpga4ml: wrote {project}.xclbin"
'''
