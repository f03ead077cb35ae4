"""HLS vendor flow without a vendor install: tcl scripts, report parsers, build() against a fake tool on PATH."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends.hls import reports, tcl
from fpga4ml.backends.hls.build import BuildError, build, format_elapsed
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node
from fpga4ml.model_errors import BackendUnavailableError

PART = 'xcvu13p-flga2577-2-e'

# ============================================================================ vendor report samples
# Vivado HLS 2020.1, <top>_csynth.xml (DSP48E, absolute latency as text with a unit).
VIVADO_XML = '''\
<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion>
    <Version>2020.1</Version>
  </ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <ProductFamily>virtexuplus</ProductFamily>
    <Part>xcvu9p-flgb2104-2-e</Part>
    <TopModelName>myproject</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod>
    <ClockUncertainty>0.62</ClockUncertainty>
  </UserAssignments>
  <PerformanceEstimates>
    <PipelineType>function</PipelineType>
    <SummaryOfTimingAnalysis>
      <unit>ns</unit>
      <EstimatedClockPeriod>4.360</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>9</Best-caseLatency>
      <Average-caseLatency>9</Average-caseLatency>
      <Worst-caseLatency>9</Worst-caseLatency>
      <Best-caseRealTimeLatency>45.000 ns</Best-caseRealTimeLatency>
      <Average-caseRealTimeLatency>45.000 ns</Average-caseRealTimeLatency>
      <Worst-caseRealTimeLatency>45.000 ns</Worst-caseRealTimeLatency>
      <Interval-min>1</Interval-min>
      <Interval-max>1</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>0</BRAM_18K>
      <DSP48E>17</DSP48E>
      <FF>1416</FF>
      <LUT>3121</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>4320</BRAM_18K>
      <DSP48E>6840</DSP48E>
      <FF>2364480</FF>
      <LUT>1182240</LUT>
      <URAM>960</URAM>
    </AvailableResources>
  </AreaEstimates>
  <InterfaceSummary>
    <RtlPorts>
      <name>ap_clk</name>
      <Object>myproject</Object>
      <Type>return value</Type>
      <IOProtocol>ap_ctrl_hs</IOProtocol>
      <Dir>in</Dir>
      <Bits>1</Bits>
    </RtlPorts>
  </InterfaceSummary>
</profile>
'''

# Vitis HLS 2023.1, csynth.xml (DSP, flow target, latency in us to exercise the unit conversion).
VITIS_XML = '''\
<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion>
    <Version>2023.1</Version>
  </ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <ProductFamily>virtexuplus</ProductFamily>
    <Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>tiny</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod>
    <ClockUncertainty>1.35</ClockUncertainty>
    <FlowTarget>vivado</FlowTarget>
  </UserAssignments>
  <PerformanceEstimates>
    <PipelineType>yes</PipelineType>
    <SummaryOfTimingAnalysis>
      <unit>ns</unit>
      <EstimatedClockPeriod>3.650</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>2</Best-caseLatency>
      <Average-caseLatency>2</Average-caseLatency>
      <Worst-caseLatency>240</Worst-caseLatency>
      <Best-caseRealTimeLatency>10.000 ns</Best-caseRealTimeLatency>
      <Average-caseRealTimeLatency>10.000 ns</Average-caseRealTimeLatency>
      <Worst-caseRealTimeLatency>1.200 us</Worst-caseRealTimeLatency>
      <Interval-min>1</Interval-min>
      <Interval-max>3</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>2</BRAM_18K>
      <DSP>4</DSP>
      <FF>146</FF>
      <LUT>560</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>5376</BRAM_18K>
      <DSP>12288</DSP>
      <FF>3456000</FF>
      <LUT>1728000</LUT>
      <URAM>1280</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
'''

VIVADO_RPT = '''\


================================================================
== Vivado HLS Report for 'myproject'
================================================================
* Date:           Tue Mar  5 10:12:44 2024

* Version:        2020.1 (Build 2897737 on Wed May 27 20:21:33 MDT 2020)
* Project:        myproject_prj
* Solution:       solution1
* Product family: virtexuplus
* Target device:  xcvu9p-flgb2104-2-e


================================================================
== Performance Estimates
================================================================
+ Timing: 
    * Summary: 
    +--------+---------+----------+------------+
    |  Clock |  Target | Estimated| Uncertainty|
    +--------+---------+----------+------------+
    |ap_clk  | 5.00 ns | 4.360 ns |   0.62 ns  |
    +--------+---------+----------+------------+

+ Latency: 
    * Summary: 
    +---------+---------+-----------+-----------+-----+-----+----------+
    |  Latency (cycles) |   Latency (absolute)  |  Interval | Pipeline |
    |   min   |   max   |    min    |    max    | min | max |   Type   |
    +---------+---------+-----------+-----------+-----+-----+----------+
    |        9|        9| 45.000 ns | 45.000 ns |    1|    1| function |
    +---------+---------+-----------+-----------+-----+-----+----------+

    + Detail: 
        * Instance: 
        +------------------------------+-------------------+---------+---------+-----------+-----------+-----+-----+----------+
        |                              |                   |  Latency (cycles) |   Latency (absolute)  |  Interval | Pipeline |
        |           Instance           |       Module      |   min   |   max   |    min    |    max    | min | max |   Type   |
        +------------------------------+-------------------+---------+---------+-----------+-----------+-----+-----+----------+
        |grp_dense_fu_128              |dense              |        3|        3| 15.000 ns | 15.000 ns |    1|    1| function |
        +------------------------------+-------------------+---------+---------+-----------+-----------+-----+-----+----------+

================================================================
== Utilization Estimates
================================================================
* Summary: 
+-----------------+---------+-------+---------+---------+-----+
|       Name      | BRAM_18K| DSP48E|    FF   |   LUT   | URAM|
+-----------------+---------+-------+---------+---------+-----+
|DSP              |        -|      -|        -|        -|    -|
|Expression       |        -|      -|        0|       26|    -|
|FIFO             |        -|      -|        -|        -|    -|
|Instance         |        0|     17|      859|     3027|    -|
|Memory           |        -|      -|        -|        -|    -|
|Multiplexer      |        -|      -|        -|       36|    -|
|Register         |        -|      -|      557|       32|    -|
+-----------------+---------+-------+---------+---------+-----+
|Total            |        0|     17|     1416|     3121|    0|
+-----------------+---------+-------+---------+---------+-----+
|Available        |     4320|   6840|  2364480|  1182240|  960|
+-----------------+---------+-------+---------+---------+-----+
|Utilization (%)  |        0|     ~0|       ~0|       ~0|    0|
+-----------------+---------+-------+---------+---------+-----+
'''

# Vitis HLS 2023.1 text report: 'Available SLR' rows before 'Available', '?' for an unknown latency.
VITIS_RPT = '''\
================================================================
== Vitis HLS Report for 'tiny'
================================================================
* Date:           Wed Jan 10 09:00:00 2024

* Version:        2023.1 (Build 3854077 on May  4 2023)
* Project:        tiny_prj
* Solution:       solution1 (Vivado IP Flow Target)
* Product family: virtexuplus
* Target device:  xcvu13p-flga2577-2-e


================================================================
== Performance Estimates
================================================================
+ Timing: 
    * Summary: 
    +--------+---------+----------+------------+
    |  Clock |  Target | Estimated| Uncertainty|
    +--------+---------+----------+------------+
    |ap_clk  |  5.00 ns|  3.650 ns|     1.35 ns|
    +--------+---------+----------+------------+

+ Latency: 
    * Summary: 
    +---------+---------+-----------+-----------+-----+-----+---------+
    |  Latency (cycles) |   Latency (absolute)  |  Interval | Pipeline|
    |   min   |   max   |    min    |    max    | min | max |   Type  |
    +---------+---------+-----------+-----------+-----+-----+---------+
    |        2|        ?|  10.000 ns|          ?|    1|    ?|       no|
    +---------+---------+-----------+-----------+-----+-----+---------+

================================================================
== Utilization Estimates
================================================================
* Summary: 
+---------------------+---------+------+---------+---------+-----+
|         Name        | BRAM_18K|  DSP |    FF   |   LUT   | URAM|
+---------------------+---------+------+---------+---------+-----+
|DSP                  |        -|     -|        -|        -|    -|
|Expression           |        -|     -|        0|       20|    -|
|Register             |        -|     -|      146|        -|    -|
+---------------------+---------+------+---------+---------+-----+
|Total                |        2|     4|      146|      560|    0|
+---------------------+---------+------+---------+---------+-----+
|Available SLR        |     1344|  3072|   864000|   432000|  320|
+---------------------+---------+------+---------+---------+-----+
|Utilization SLR (%)  |       ~0|    ~0|       ~0|       ~0|    0|
+---------------------+---------+------+---------+---------+-----+
|Available            |     5376| 12288|  3456000|  1728000| 1280|
+---------------------+---------+------+---------+---------+-----+
|Utilization (%)      |       ~0|    ~0|       ~0|       ~0|    0|
+---------------------+---------+------+---------+---------+-----+
'''

# Vivado HLS 2019.2: the latency summary has no absolute-time columns.
VIVADO_2019_RPT = '''\
== Vivado HLS Report for 'old'
* Version:        2019.2 (Build 2698951 on Thu Oct 24 19:15:34 MDT 2019)
* Target device:  xc7z020-clg400-1

+ Latency: 
    * Summary: 
    +-----+-----+-----+-----+----------+
    |  Latency  |  Interval | Pipeline |
    | min | max | min | max |   Type   |
    +-----+-----+-----+-----+----------+
    |    7|    7|    1|    1| function |
    +-----+-----+-----+-----+----------+
'''

COSIM_RPT = '''\
================================================================
== Vivado HLS Report for 'myproject'
================================================================
+----------+----------+-----------------------------------------------+-----------------------------------------------+----------------------+
|          |          |             Latency(Clock Cycles)             |              Interval(Clock Cycles)           | Total Execution Time |
+   RTL    +  Status  +-----------------------------------------------+-----------------------------------------------+    (Clock Cycles)    +
|          |          |      min      |      avg      |      max      |      min      |      avg      |      max      |                      |
+----------+----------+-----------------------------------------------+-----------------------------------------------+----------------------+
|      VHDL|        NA|             NA|             NA|             NA|             NA|             NA|             NA|                    NA|
|   Verilog|      Pass|              9|              9|              9|              1|              1|              1|                    18|
+----------+----------+-----------------------------------------------+-----------------------------------------------+----------------------+
'''

# Vivado 2020.1 report_utilization for UltraScale+: CLB rows; a register-type table and the
# primitives table that must not be mistaken for the summary.
VIVADO_UTIL_ULTRASCALE = '''\
Copyright 1986-2020 Xilinx, Inc. All Rights Reserved.
-------------------------------------------------------------------------------------
| Tool Version : Vivado v.2020.1 (lin64) Build 2902540 Wed May 27 19:54:35 MDT 2020
| Date         : Tue Mar  5 11:02:10 2024
| Command      : report_utilization -file vivado_synth.rpt
| Design       : myproject
| Device       : xcvu9pflgb2104-2
| Design State : Synthesized
-------------------------------------------------------------------------------------

Utilization Design Information

Table of Contents
-----------------
1. CLB Logic
1.1 Summary of Registers by Type
2. BLOCKRAM
3. ARITHMETIC
8. Primitives

1. CLB Logic
------------

+----------------------------+------+-------+-----------+-------+
|          Site Type         | Used | Fixed | Available | Util% |
+----------------------------+------+-------+-----------+-------+
| CLB LUTs*                  | 2874 |     0 |   1182240 |  0.24 |
|   LUT as Logic             | 2874 |     0 |   1182240 |  0.24 |
|   LUT as Memory            |    0 |     0 |    591840 |  0.00 |
| CLB Registers              | 1390 |     0 |   2364480 |  0.06 |
|   Register as Flip Flop    | 1390 |     0 |   2364480 |  0.06 |
|   Register as Latch        |    0 |     0 |   2364480 |  0.00 |
| CARRY8                     |   61 |     0 |    147780 |  0.04 |
+----------------------------+------+-------+-----------+-------+
* Warning! The Final LUT count, after physical optimizations and full implementation, is typically lower.


1.1 Summary of Registers by Type
--------------------------------

+-------+--------------+-------------+--------------+
| Total | Clock Enable | Synchronous | Asynchronous |
+-------+--------------+-------------+--------------+
| 0     |            _ |           - |            - |
| 1390  |          Yes |           - |          Set |
+-------+--------------+-------------+--------------+


2. BLOCKRAM
-----------

+-------------------+------+-------+-----------+-------+
|     Site Type     | Used | Fixed | Available | Util% |
+-------------------+------+-------+-----------+-------+
| Block RAM Tile    |  1.5 |     0 |      2160 |  0.07 |
|   RAMB36/FIFO*    |    1 |     0 |      2160 |  0.05 |
|   RAMB18          |    1 |     0 |      4320 |  0.02 |
| URAM              |    0 |     0 |       960 |  0.00 |
+-------------------+------+-------+-----------+-------+


3. ARITHMETIC
-------------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |   17 |     0 |      6840 |  0.25 |
|   DSP48E2 only |   17 |       |           |       |
+----------------+------+-------+-----------+-------+


8. Primitives
-------------

+----------+------+---------------------+
| Ref Name | Used | Functional Category |
+----------+------+---------------------+
| FDRE     | 1390 |            Register |
| LUT2     |  998 |                 CLB |
| DSP48E2  |   17 |          Arithmetic |
+----------+------+---------------------+
'''

# Vivado 2023.1 report_utilization for 7-series: Slice rows and the extra 'Prohibited' column.
VIVADO_UTIL_7SERIES = '''\
| Tool Version : Vivado v.2023.1 (lin64) Build 3865809 Sun May  7 15:04:56 MDT 2023
| Design       : tiny
| Device       : xc7z020clg400-1

1. Slice Logic
--------------

+-------------------------+------+-------+------------+-----------+-------+
|        Site Type        | Used | Fixed | Prohibited | Available | Util% |
+-------------------------+------+-------+------------+-----------+-------+
| Slice LUTs*             |  812 |     0 |          0 |     53200 |  1.53 |
|   LUT as Logic          |  812 |     0 |          0 |     53200 |  1.53 |
| Slice Registers         |  640 |     0 |          0 |    106400 |  0.60 |
+-------------------------+------+-------+------------+-----------+-------+

2. Memory
---------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| Block RAM Tile |    2 |     0 |          0 |       140 |  1.43 |
|   RAMB36/FIFO* |    2 |     0 |          0 |       140 |  1.43 |
+----------------+------+-------+------------+-----------+-------+

3. DSP
------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |    9 |     0 |          0 |       220 |  4.09 |
|   DSP48E1 only |    9 |       |            |           |       |
+----------------+------+-------+------------+-----------+-------+
'''

VIVADO_TIMING = '''\
------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints  
    -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------  
      0.512        0.000                      0                 2211        0.045        0.000                      0                 2211        2.225        0.000                      0                  1391  


All user specified timing constraints are met.


------------------------------------------------------------------------------------------------
| Clock Summary
| -------------
------------------------------------------------------------------------------------------------

Clock   Waveform(ns)       Period(ns)      Frequency(MHz)
-----   ------------       ----------      --------------
ap_clk  {0.000 2.500}      5.000           200.000         
'''


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ============================================================================ tcl scripts
def test_scripts_carry_settings_for_both_flavors():
    scripts = tcl.build_scripts('jet_tagger', PART, 3.125, '12.5%')
    assert set(scripts) == {'build_prj.tcl', 'build_prj_vivado.tcl', 'vivado_synth.tcl'}
    for name in ('build_prj.tcl', 'build_prj_vivado.tcl'):
        text = scripts[name]
        assert 'set project_name      jet_tagger\n' in text
        assert f'set part              {{{PART}}}\n' in text
        assert 'set clock_period      3.125\n' in text
        assert 'set clock_uncertainty {12.5%}\n' in text
        assert 'set default_steps     {csim synth}\n' in text
        assert 'set known_steps {csim synth cosim export vsynth}' in text
        assert '::env(FPGA4ML_STEPS)' in text
        for command in ('csim_design', 'csynth_design', 'cosim_design', 'export_design -format ip_catalog',
                        'exec vivado -mode batch', 'set_clock_uncertainty $clock_uncertainty default',
                        'create_clock -period $clock_period', 'set_top $project_name',
                        'add_files firmware/${project_name}.cpp', 'add_files -tb tb/${project_name}_test.cpp',
                        'add_files -tb tb_data', 'firmware/weights', 'exit 0'):
            assert command in text, (name, command)
    vitis, vivado = scripts['build_prj.tcl'], scripts['build_prj_vivado.tcl']
    assert 'vitis-run --mode hls --tcl build_prj.tcl' in vitis
    assert 'open_solution -flow_target vivado $solution' in vitis and '-std=c++14' in vitis
    assert 'vivado_hls -f build_prj_vivado.tcl' in vivado
    assert 'open_solution $solution' in vivado and '-flow_target' not in vivado and '-std=c++0x' in vivado
    vsynth = scripts['vivado_synth.tcl']
    assert 'set project_name jet_tagger' in vsynth and f'set part         {{{PART}}}' in vsynth
    assert 'synth_design -top $project_name -part $part -mode out_of_context' in vsynth
    assert 'report_utilization -file vivado_synth.rpt' in vsynth
    # deterministic: the same settings give the same bytes
    assert scripts == tcl.build_scripts('jet_tagger', PART, 3.125, '12.5%')


@pytest.mark.parametrize('value, written', [(None, ''), ('', ''), ('27%', '27%'), (' 12.5 % ', '12.5%'),
                                            (0.5, '0.5'), ('0.625', '0.625'), (1, '1')])
def test_clock_uncertainty_forms(value, written):
    text = tcl.build_scripts('p', PART, 5, value)['build_prj.tcl']
    assert f'set clock_uncertainty {{{written}}}\n' in text


@pytest.mark.parametrize('kwargs, match', [
    ({'project_name': 'my-project'}, 'project_name'), ({'part': 'xc7 z020'}, 'part'),
    ({'clock_period': 0}, 'clock_period'), ({'clock_period': '5'}, 'clock_period'),
    ({'clock_uncertainty': '10 percent'}, 'clock_uncertainty'), ({'clock_uncertainty': -0.1}, 'negative'),
])
def test_scripts_reject_bad_settings(kwargs, match):
    args = {'project_name': 'p', 'part': PART, 'clock_period': 5.0, 'clock_uncertainty': None, **kwargs}
    with pytest.raises(ValueError, match=match):
        tcl.build_scripts(**args)


VENDOR_STUBS = r'''
set ::calls {}
foreach cmd {open_project set_top add_files open_solution set_part create_clock set_clock_uncertainty
             csim_design cosim_design export_design read_verilog read_xdc synth_design opt_design
             report_utilization report_timing_summary} {
    proc $cmd args "lappend ::calls \[list $cmd {*}\$args\]"
}
proc csynth_design args {
    lappend ::calls csynth_design
    file mkdir ${::project_name}_prj/solution1/syn/verilog
}
rename exec _exec
proc exec args { lappend ::calls [list exec {*}$args] }
proc exit {{code 0}} { set ::exit_code $code; return -code error "exit $code" }
'''


def run_tcl(script: Path, steps: str | None = None, argv: str = '') -> tuple[int, list[str]]:
    """Source a build script in a real Tcl interpreter with the vendor commands stubbed; (exit code, calls)."""
    tkinter = pytest.importorskip('tkinter')
    interp = tkinter.Tcl()
    interp.eval(VENDOR_STUBS)
    interp.eval(f'set ::argv {{{argv}}}')
    interp.eval('array unset ::env FPGA4ML_STEPS')
    if steps is not None:
        interp.eval(f'set ::env(FPGA4ML_STEPS) {{{steps}}}')
    cwd = os.getcwd()
    os.chdir(script.parent)
    try:
        interp.eval(f'source {script.name}')
    except tkinter.TclError:
        pass
    finally:
        os.chdir(cwd)
        interp.eval('array unset ::env FPGA4ML_STEPS')  # Tcl's env is the process environment
    calls = [' '.join(interp.splitlist(c)) for c in interp.splitlist(interp.eval('set ::calls'))]
    return int(interp.eval('set ::exit_code')), calls


def test_tcl_runs_selected_steps_in_order(tmp_path):
    scripts = tcl.build_scripts('tiny', PART, 4, '0.5')
    script = write(tmp_path, 'build_prj.tcl', scripts['build_prj.tcl'])
    code, calls = run_tcl(script, steps='vsynth,csim synth cosim')
    designs = [c.split()[0] for c in calls if c.split()[0] in
               ('csim_design', 'csynth_design', 'cosim_design', 'export_design', 'exec')]
    assert code == 0 and designs == ['csim_design', 'csynth_design', 'cosim_design', 'exec']
    assert 'open_project -reset tiny_prj' in calls and 'open_solution -flow_target vivado solution1' in calls
    assert f'set_part {PART}' in calls and 'create_clock -period 4 -name default' in calls
    assert 'set_clock_uncertainty 0.5 default' in calls
    assert 'add_files firmware/tiny.cpp -cflags -std=c++14' in calls
    assert not any('firmware/weights' in c for c in calls)  # added only when the folder exists

    # defaults without FPGA4ML_STEPS; a steps= argument overrides it; unknown steps stop with status 1
    _, calls = run_tcl(script)
    assert [c for c in calls if c.endswith('_design')] == ['csim_design', 'csynth_design']
    _, calls = run_tcl(script, steps='csim', argv='-f build_prj.tcl steps=synth,export')
    assert [c.split()[0] for c in calls if 'design' in c] == ['csynth_design', 'export_design']
    code, calls = run_tcl(script, steps='csim synthesis')
    assert code == 1 and not any(c.endswith('_design') for c in calls)


def test_tcl_needs_rtl_before_cosim_and_no_uncertainty_keeps_default(tmp_path):
    scripts = tcl.build_scripts('tiny', PART, 5, None)
    script = write(tmp_path, 'build_prj_vivado.tcl', scripts['build_prj_vivado.tcl'])
    (tmp_path / 'firmware' / 'weights').mkdir(parents=True)
    code, calls = run_tcl(script, steps='cosim')
    assert code == 1 and 'cosim_design' not in ' '.join(calls)  # no RTL yet: a clear error, not the tool's
    assert 'open_solution solution1' in calls and not any(c.startswith('set_clock_uncertainty') for c in calls)
    assert 'add_files -tb firmware/weights' in calls
    (tmp_path / 'tiny_prj' / 'solution1' / 'syn' / 'verilog').mkdir(parents=True)
    code, calls = run_tcl(script, steps='cosim')
    assert code == 0 and 'cosim_design -rtl verilog -trace_level none' in calls


def test_vivado_synth_script_runs(tmp_path):
    script = write(tmp_path, 'vivado_synth.tcl', tcl.build_scripts('tiny', PART, 2.5, None)['vivado_synth.tcl'])
    code, calls = run_tcl(script)
    assert code == 1 and calls == []  # no RTL yet
    write(tmp_path, 'tiny_prj/solution1/syn/verilog/tiny.v', 'module tiny(); endmodule\n')
    code, calls = run_tcl(script)
    assert code == 0
    assert calls[0].startswith('read_verilog') and calls[0].endswith('tiny.v')
    assert f'synth_design -top tiny -part {PART} -mode out_of_context' in calls
    assert 'report_utilization -file vivado_synth.rpt' in calls
    xdc = (tmp_path / 'fpga4ml_clock.xdc').read_text()
    assert xdc.strip() == 'create_clock -name ap_clk -period 2.5 [get_ports -quiet ap_clk]'


# ============================================================================ report parsers
def test_csynth_xml_vivado_hls(tmp_path):
    r = reports.parse_csynth_xml(write(tmp_path, 'x.xml', VIVADO_XML))
    assert r['tool'] == 'Vivado HLS' and r['version'] == '2020.1' and r['top'] == 'myproject'
    assert r['part'] == 'xcvu9p-flgb2104-2-e'
    assert (r['target_clock_ns'], r['clock_uncertainty_ns'], r['estimated_clock_ns']) == (5.0, 0.62, 4.36)
    assert (r['latency_min'], r['latency_max'], r['latency_min_ns'], r['latency_max_ns']) == (9, 9, 45.0, 45.0)
    assert (r['interval_min'], r['interval_max'], r['pipeline_type']) == (1, 1, 'function')
    assert {k: r[k] for k in reports.RESOURCES} == {'LUT': 3121, 'FF': 1416, 'DSP': 17, 'BRAM_18K': 0, 'URAM': 0}
    assert r['available'] == {'LUT': 1182240, 'FF': 2364480, 'DSP': 6840, 'BRAM_18K': 4320, 'URAM': 960}


def test_csynth_xml_vitis_hls(tmp_path):
    r = reports.parse_csynth_xml(write(tmp_path, 'csynth.xml', VITIS_XML))
    assert r['tool'] == 'Vitis HLS' and r['top'] == 'tiny' and r['part'] == PART
    assert (r['latency_min'], r['latency_max'], r['latency_min_ns']) == (2, 240, 10.0)
    assert r['latency_max_ns'] == pytest.approx(1200.0)
    assert (r['interval_min'], r['interval_max'], r['DSP'], r['BRAM_18K'], r['LUT']) == (1, 3, 4, 2, 560)
    assert r['available']['DSP'] == 12288


def test_csynth_xml_missing_fields_are_none(tmp_path):
    text = '''<?xml version="1.0"?>
    <profile xmlns="urn:example">
      <UserAssignments><TargetClockPeriod>4.00</TargetClockPeriod></UserAssignments>
      <PerformanceEstimates><SummaryOfOverallLatency>
        <Best-caseLatency>5</Best-caseLatency><Worst-caseLatency>undef</Worst-caseLatency>
        <Interval-min>undef</Interval-min>
      </SummaryOfOverallLatency></PerformanceEstimates>
      <AreaEstimates><Resources><LUT>12</LUT><FF>-</FF></Resources></AreaEstimates>
    </profile>'''
    r = reports.parse_csynth_xml(write(tmp_path, 'c.xml', textwrap.dedent(text)))
    assert set(r) == set(reports.CSYNTH_KEYS)
    assert r['latency_min'] == 5 and r['latency_min_ns'] == 20.0  # cycles x target period
    assert r['latency_max'] is None and r['latency_max_ns'] is None and r['interval_min'] is None
    assert r['LUT'] == 12 and r['FF'] is None and r['DSP'] is None and r['part'] is None and r['tool'] is None
    assert r['available'] == dict.fromkeys(reports.RESOURCES)
    empty = reports.parse_csynth_xml(write(tmp_path, 'e.xml', '<profile/>'))
    assert all(v is None for k, v in empty.items() if k not in ('available', 'source'))


def test_csynth_rpt_vivado_and_vitis(tmp_path):
    r = reports.parse_csynth_rpt(write(tmp_path, 'myproject_csynth.rpt', VIVADO_RPT))
    assert (r['tool'], r['version'], r['top'], r['part']) == ('Vivado HLS', '2020.1', 'myproject',
                                                             'xcvu9p-flgb2104-2-e')
    assert (r['target_clock_ns'], r['estimated_clock_ns'], r['clock_uncertainty_ns']) == (5.0, 4.36, 0.62)
    assert (r['latency_min'], r['latency_max'], r['latency_min_ns'], r['latency_max_ns']) == (9, 9, 45.0, 45.0)
    assert (r['interval_min'], r['interval_max'], r['pipeline_type']) == (1, 1, 'function')
    assert {k: r[k] for k in reports.RESOURCES} == {'LUT': 3121, 'FF': 1416, 'DSP': 17, 'BRAM_18K': 0, 'URAM': 0}
    assert r['available'] == {'LUT': 1182240, 'FF': 2364480, 'DSP': 6840, 'BRAM_18K': 4320, 'URAM': 960}

    v = reports.parse_csynth_rpt(write(tmp_path, 'csynth.rpt', VITIS_RPT))
    assert (v['tool'], v['version'], v['top'], v['part']) == ('Vitis HLS', '2023.1', 'tiny', PART)
    assert (v['latency_min'], v['latency_max'], v['latency_min_ns'], v['latency_max_ns']) == (2, None, 10.0, None)
    assert (v['interval_min'], v['interval_max'], v['pipeline_type']) == (1, None, 'no')
    assert (v['LUT'], v['FF'], v['DSP'], v['BRAM_18K']) == (560, 146, 4, 2)
    assert v['available']['LUT'] == 1728000  # the device, not one SLR

    old = reports.parse_csynth_rpt(write(tmp_path, 'old.rpt', VIVADO_2019_RPT))
    assert (old['latency_min'], old['latency_max'], old['interval_max'], old['part']) == (7, 7, 1, 'xc7z020-clg400-1')
    assert old['latency_min_ns'] is None and old['LUT'] is None  # no clock, no utilization table
    assert reports.parse_csynth_rpt(write(tmp_path, 'blank.rpt', ''))['top'] is None


def test_cosim_rpt(tmp_path):
    r = reports.parse_cosim_rpt(write(tmp_path, 'myproject_cosim.rpt', COSIM_RPT))
    assert (r['rtl'], r['status'], r['latency_min'], r['latency_max'], r['interval_min'], r['interval_max']) == \
        ('Verilog', 'Pass', 9, 9, 1, 1)


def test_vivado_utilization_ultrascale_and_7series(tmp_path):
    r = reports.parse_vivado_utilization(write(tmp_path, 'vivado_synth.rpt', VIVADO_UTIL_ULTRASCALE))
    assert (r['tool'], r['version'], r['top'], r['part']) == ('Vivado', '2020.1', 'myproject', 'xcvu9pflgb2104-2')
    assert {k: r[k] for k in reports.RESOURCES} == {'LUT': 2874, 'FF': 1390, 'DSP': 17, 'BRAM_18K': 3, 'URAM': 0}
    assert r['BRAM_tiles'] == 1.5
    assert r['available'] == {'LUT': 1182240, 'FF': 2364480, 'DSP': 6840, 'BRAM_18K': 4320, 'URAM': 960}

    s = reports.parse_vivado_utilization(write(tmp_path, 's.rpt', VIVADO_UTIL_7SERIES))
    assert (s['version'], s['top'], s['part']) == ('2023.1', 'tiny', 'xc7z020clg400-1')
    assert {k: s[k] for k in reports.RESOURCES} == {'LUT': 812, 'FF': 640, 'DSP': 9, 'BRAM_18K': 4, 'URAM': None}
    assert s['available'] == {'LUT': 53200, 'FF': 106400, 'DSP': 220, 'BRAM_18K': 280, 'URAM': None}


def test_vivado_timing(tmp_path):
    t = reports.parse_vivado_timing(write(tmp_path, 't.rpt', VIVADO_TIMING))
    assert t == {'wns_ns': 0.512, 'target_clock_ns': 5.0}
    assert reports.parse_vivado_timing(write(tmp_path, 'n.rpt', 'nothing here\n')) == \
        {'wns_ns': None, 'target_clock_ns': None}


def test_parse_report_tcl_layout(tmp_path):
    write(tmp_path, 'myproject_prj/solution1/syn/report/myproject_csynth.xml', VIVADO_XML)
    write(tmp_path, 'myproject_prj/solution1/syn/report/myproject_csynth.rpt', VIVADO_RPT)
    write(tmp_path, 'myproject_prj/solution1/syn/report/dense_csynth.xml', '<profile/>')  # a sub-module
    write(tmp_path, 'myproject_prj/solution1/sim/report/myproject_cosim.rpt', COSIM_RPT)
    write(tmp_path, 'vivado_synth.rpt', VIVADO_UTIL_ULTRASCALE)
    write(tmp_path, 'vivado_timing.rpt', VIVADO_TIMING)
    rep = reports.parse_report(tmp_path)
    assert rep['files']['csynth_xml'] == 'myproject_prj/solution1/syn/report/myproject_csynth.xml'
    assert set(rep['files']) == {'csynth_xml', 'csynth_rpt', 'cosim_rpt', 'vivado_synth_rpt', 'vivado_timing_rpt'}
    assert rep['errors'] == []
    c = rep['csynth']
    assert (c['latency_max'], c['latency_max_ns'], c['interval_min'], c['LUT'], c['DSP']) == (9, 45.0, 1, 3121, 17)
    assert rep['cosim']['status'] == 'Pass'
    v = rep['vivado_synth']
    assert (v['LUT'], v['wns_ns'], v['target_clock_ns'], v['achieved_clock_ns']) == (2874, 0.512, 5.0, 4.488)
    # hls4ml's keys, for scripts ported from hls4ml
    assert rep['CSynthesisReport']['WorstLatency'] == 9 and rep['CSynthesisReport']['AvailableDSP'] == 6840
    assert rep['CosimReport']['Status'] == 'Pass' and rep['VivadoSynthReport']['DSP48E'] == 17


def test_parse_report_vitis_component_layout_merges_xml_and_rpt(tmp_path):
    # Vitis unified component layout, top given; the xml lacks the absolute latency, the rpt has it
    xml = VITIS_XML.replace('<Worst-caseRealTimeLatency>1.200 us</Worst-caseRealTimeLatency>', '')
    xml = xml.replace('<Part>xcvu13p-flga2577-2-e</Part>', '')
    write(tmp_path, 'tiny_comp/hls/syn/report/csynth.xml', xml)
    write(tmp_path, 'tiny_comp/hls/syn/report/csynth.rpt', VITIS_RPT)
    rep = reports.parse_report(tmp_path, 'tiny')
    c = rep['csynth']
    assert c['source'] == 'tiny_comp/hls/syn/report/csynth.xml'
    assert c['latency_max'] == 240 and c['latency_max_ns'] == 1200.0  # cycles x period from the xml
    assert c['part'] == PART  # filled from the rpt
    assert rep['cosim'] is None and rep['vivado_synth'] is None


def test_parse_report_empty_and_corrupt(tmp_path):
    rep = reports.parse_report(tmp_path)
    assert rep['csynth'] is None and rep['cosim'] is None and rep['vivado_synth'] is None
    assert rep['files'] == {} and rep['errors'] == [] and 'CSynthesisReport' not in rep
    write(tmp_path, 'p_prj/solution1/syn/report/p_csynth.xml', '<profile><Perf')  # killed mid-write
    rep = reports.parse_report(tmp_path)
    assert rep['csynth'] is None and len(rep['errors']) == 1 and 'p_csynth.xml' in rep['errors'][0]


# ============================================================================ build() with a fake tool
FAKE_TOOL = '''\
#!{python}
"""A stand-in for vitis-run / vivado_hls: records how it was called, prints step markers, writes reports."""
import json, os, shutil, subprocess, sys, time
cwd = os.getcwd()
steps = os.environ.get('FPGA4ML_STEPS', '').split()
record = {{'exe': os.path.basename(sys.argv[0]), 'argv': sys.argv[1:], 'cwd': cwd, 'steps': steps}}
with open('fake_tool_call.json', 'w') as f:
    json.dump(record, f)
mode = os.environ.get('FAKE_MODE', 'ok')
print('fake tool: starting', flush=True)
for step in steps:
    print('==> fpga4ml step ' + step, flush=True)
    if step == 'synth' and mode == 'fail':
        print('ERROR: [HLS 207-3777] fake synthesis failure', flush=True)
        sys.exit(3)
    if step == 'synth':
        shutil.copytree(os.environ['FAKE_REPORTS'], cwd, dirs_exist_ok=True)
    if step == 'csim' and mode == 'hang':
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
        with open('fake_pids.json', 'w') as f:
            json.dump([os.getpid(), child.pid], f)
        print('fake tool: hanging', flush=True)
        time.sleep(60)
    print('<== fpga4ml step ' + step + ' done in 0.0 s', flush=True)
sys.exit(0)
'''


def tiny_model(tmp_path, backend='Vitis'):
    rng = np.random.default_rng(0)
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('fc', 'Dense', ['x'], (3,), weights={'kernel': rng.normal(0, 0.5, (4, 3)).astype(np.float32),
                                                    'bias': np.zeros(3, np.float32)}, source='Dense'))
    g.inputs, g.outputs = ['x'], ['fc']
    model = convert_graph(g, output_dir=str(tmp_path / 'prj'), project_name='tiny', backend=backend, part=PART,
                          clock_period=4.0, clock_uncertainty='12.5%')

    def fake_write():  # the writer's project layout, minus the build scripts (build() adds those)
        root = Path(model.output_dir)
        for rel in ('firmware/tiny.cpp', 'firmware/tiny.h', 'firmware/defines.h', 'tb/tiny_test.cpp',
                    'tb_data/tb_input_features.dat', 'tb_data/tb_output_predictions.dat'):
            write(root, rel, '// placeholder\n')
        return str(root)

    model.write = fake_write
    return model


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """An empty PATH directory; install(name) puts the fake tool there under that name."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    monkeypatch.setenv('PATH', str(bindir))
    src = tmp_path / 'fake_reports'
    write(src, 'tiny_prj/solution1/syn/report/tiny_csynth.xml', VITIS_XML)
    write(src, 'tiny_prj/solution1/syn/report/tiny_csynth.rpt', VITIS_RPT)
    monkeypatch.setenv('FAKE_REPORTS', str(src))

    def install(name: str) -> Path:
        exe = bindir / name
        exe.write_text(FAKE_TOOL.format(python=sys.executable))
        exe.chmod(0o755)
        return exe

    install.bindir = bindir
    return install


@pytest.mark.parametrize('backend, flavor, tool', [('Vitis', None, 'vitis-run'), ('Vivado', None, 'vivado_hls'),
                                                   ('Vitis', 'vivado', 'vivado_hls')])
def test_build_without_tool_explains(tmp_path, fake_path, backend, flavor, tool):
    model = tiny_model(tmp_path, backend)
    with pytest.raises(BackendUnavailableError) as info:
        build(model, flavor=flavor)
    message = str(info.value)
    assert message.startswith(tool + ' (') and 'not found on PATH' in message
    assert 'HLS synthesis and co-simulation' in message and "model.compile(sim='csim')" in message
    assert str(Path(model.output_dir).resolve()) in message


def test_build_runs_vitis_run_and_returns_reports(tmp_path, fake_path, capsys):
    exe = fake_path('vitis-run')
    fake_path('vivado_hls')  # present but not the Vitis back end's tool
    model = tiny_model(tmp_path)
    report = build(model)
    project = Path(model.output_dir).resolve()
    call = json.loads((project / 'fake_tool_call.json').read_text())
    assert call['exe'] == 'vitis-run' and call['argv'] == ['--mode', 'hls', '--tcl', 'build_prj.tcl']
    assert Path(call['cwd']).resolve() == project and call['steps'] == ['csim', 'synth']
    # build() added the build scripts a written project carries
    assert (project / 'build_prj.tcl').read_text() == \
        tcl.build_scripts('tiny', PART, 4.0, '12.5%')['build_prj.tcl']
    assert report['build']['command'] == [str(exe), '--mode', 'hls', '--tcl', 'build_prj.tcl']
    assert report['build']['steps'] == ['csim', 'synth'] and report['build']['flavor'] == 'vitis'
    c = report['csynth']
    assert (c['top'], c['latency_min'], c['latency_max'], c['interval_max'], c['LUT'], c['DSP']) == \
        ('tiny', 2, 240, 3, 560, 4)
    assert report['files']['csynth_xml'] == 'tiny_prj/solution1/syn/report/tiny_csynth.xml'
    log = (project / 'build.log').read_text()
    assert log.startswith('fake tool: starting\n') and '==> fpga4ml step synth' in log
    out = capsys.readouterr().out
    assert '[   0:00 csim  ] ==> fpga4ml step csim' in out and '[   0:00 synth ] <== fpga4ml step synth' in out


def test_build_vivado_flavor_steps_and_quiet_output(tmp_path, fake_path, capsys):
    fake_path('vivado_hls')
    model = tiny_model(tmp_path, 'Vivado')
    with pytest.warns(RuntimeWarning, match='cosim'):  # the fake writes no co-simulation report
        report = build(model, csim=False, cosim=True, export=True, verbose=False)
    call = json.loads((Path(model.output_dir) / 'fake_tool_call.json').read_text())
    assert call['exe'] == 'vivado_hls' and call['argv'] == ['-f', 'build_prj_vivado.tcl']
    assert call['steps'] == ['synth', 'cosim', 'export'] and report['build']['flavor'] == 'vivado'
    out = capsys.readouterr().out
    assert 'fake tool: starting' not in out and '==> fpga4ml step export' in out


def test_build_falls_back_to_vitis_hls(tmp_path, fake_path):
    fake_path('vitis_hls')
    model = tiny_model(tmp_path)
    report = build(model, csim=False, verbose=False)
    assert report['build']['command'][1:] == ['-f', 'build_prj.tcl'] and report['csynth']['LUT'] == 560


def test_build_vsynth_needs_vivado_and_steps_are_checked(tmp_path, fake_path):
    fake_path('vitis-run')
    model = tiny_model(tmp_path)
    with pytest.raises(BackendUnavailableError, match=r'^vivado \(AMD Vivado\) was not found on PATH'):
        build(model, vsynth=True)
    with pytest.raises(ValueError, match='no step selected'):
        build(model, csim=False, synth=False)
    with pytest.raises(ValueError, match='flavor'):
        build(model, flavor='quartus')
    model.write = lambda: str(tmp_path / 'elsewhere')  # a writer that wrote somewhere else
    with pytest.raises(FileNotFoundError, match=r'firmware/<project>\.cpp'):
        build(model)


def test_build_failure_names_step_and_shows_tail(tmp_path, fake_path, monkeypatch):
    fake_path('vitis-run')
    monkeypatch.setenv('FAKE_MODE', 'fail')
    with pytest.raises(BuildError, match=r"status 3 during step 'synth'") as info:
        build(tiny_model(tmp_path), verbose=False)
    assert 'ERROR: [HLS 207-3777] fake synthesis failure' in str(info.value) and 'build.log' in str(info.value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited child nobody reaped yet is no longer running
        return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return True


def _pids(project: Path) -> list[int]:
    deadline = time.monotonic() + 5
    while not (project / 'fake_pids.json').exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return json.loads((project / 'fake_pids.json').read_text())


@pytest.mark.skipif(os.name != 'posix', reason='process groups are POSIX')
def test_build_timeout_stops_the_whole_process_group(tmp_path, fake_path, monkeypatch):
    fake_path('vitis-run')
    monkeypatch.setenv('FAKE_MODE', 'hang')
    model = tiny_model(tmp_path)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match='timeout of 1 s'):
        build(model, timeout=1, verbose=False)
    assert time.monotonic() - start < 5
    assert not any(_alive(pid) for pid in _pids(Path(model.output_dir)))


@pytest.mark.skipif(os.name != 'posix', reason='process groups are POSIX')
def test_build_ctrl_c_stops_the_tool(tmp_path, fake_path, monkeypatch):
    fake_path('vitis-run')
    monkeypatch.setenv('FAKE_MODE', 'hang')
    model = tiny_model(tmp_path)
    project = Path(model.output_dir)

    def interrupt():  # Ctrl-C once the tool (and its child) run
        _pids(project)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        build(model, verbose=False)
    assert not any(_alive(pid) for pid in _pids(project))


def test_format_elapsed():
    assert (format_elapsed(0), format_elapsed(61.9), format_elapsed(3725)) == ('0:00', '1:01', '1:02:05')


def test_package_build_attribute_is_the_function_after_any_import_order():
    """`fpga4ml.backends.hls.build` must stay callable even after the submodule is imported."""
    import importlib

    import fpga4ml.backends.hls as hls

    importlib.import_module('fpga4ml.backends.hls.build')
    assert callable(hls.build) and hls.build.__module__ == 'fpga4ml.backends.hls.build'
