"""Tcl build scripts for the vendor HLS tools: Vitis HLS (vitis-run), Vivado HLS 2020.1, Vivado synthesis.

`build_scripts()` returns the text of three scripts, written into the project directory next to
firmware/, tb/ and tb_data/:

- ``build_prj.tcl``: Vitis HLS 2023.1 and newer, ``vitis-run --mode hls --tcl build_prj.tcl``
  (older Vitis HLS releases run the same file with ``vitis_hls -f build_prj.tcl``);
- ``build_prj_vivado.tcl``: Vivado HLS 2020.1, ``vivado_hls -f build_prj_vivado.tcl``;
- ``vivado_synth.tcl``: out-of-context Vivado logic synthesis of the generated RTL, run by the
  ``vsynth`` step or by hand with ``vivado -mode batch -source vivado_synth.tcl``.

Every setting is a Tcl variable at the top of each script, so a user can read and edit them.

Step selection. The steps, always run in this order, are ``csim`` (C simulation), ``synth``
(C synthesis to RTL), ``cosim`` (C/RTL co-simulation), ``export`` (package the RTL as Vivado IP)
and ``vsynth`` (Vivado logic synthesis, needs ``vivado`` on PATH). The scripts run the steps named
by the environment variable ``FPGA4ML_STEPS`` (space or comma separated, e.g. ``"csim synth"``);
a ``steps=csim,synth`` word among the script arguments (``vivado_hls -f build_prj_vivado.tcl
steps=csim,synth``) overrides it; without either they run ``default_steps`` (csim and synth).
The environment is the mechanism fpga4ml's ``build()`` uses, because it works the same for every
tool launcher (``vitis-run`` has no documented way to pass arguments to the script).

Progress markers. Each step prints ``==> fpga4ml step NAME`` when it starts and
``<== fpga4ml step NAME done in S s`` when it ends (`STEP_START`, `STEP_DONE`); a failure prints
``ERROR: fpga4ml step NAME failed: ...`` and exits with status 1, so the tool never waits at an
interactive prompt.
"""

from __future__ import annotations

import re

from ...naming import check_project_name

VITIS_SCRIPT = 'build_prj.tcl'
VIVADO_SCRIPT = 'build_prj_vivado.tcl'
VSYNTH_SCRIPT = 'vivado_synth.tcl'

STEPS = ('csim', 'synth', 'cosim', 'export', 'vsynth')
DEFAULT_STEPS = ('csim', 'synth')
STEPS_ENV = 'FPGA4ML_STEPS'
SOLUTION = 'solution1'

# Regular expressions for the progress lines the scripts print (build.py follows them).
STEP_START = re.compile(r'==> fpga4ml step (\w+)')
STEP_DONE = re.compile(r'<== fpga4ml step (\w+) done in ([0-9.]+) s')

# Per flavor: the C++ dialect flag the HLS front end accepts, the open_solution options, the
# tool's own name, the command line.
_FLAVORS = {
    'vitis': {
        'tool': 'Vitis HLS 2023.1 or newer',
        'run': f'vitis-run --mode hls --tcl {VITIS_SCRIPT}',
        'alt_run': f'vitis_hls -f {VITIS_SCRIPT}     (Vitis HLS 2020.2 to 2023.2)',
        'cflags': '-std=c++14',
        'solution_opts': '-flow_target vivado ',
    },
    'vivado': {
        'tool': 'Vivado HLS 2020.1',
        'run': f'vivado_hls -f {VIVADO_SCRIPT}',
        'alt_run': None,
        'cflags': '-std=c++0x',
        'solution_opts': '',
    },
}

#: whole-string patterns (fullmatch: '$' alone would accept a trailing newline)
_PART_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.\-]*')
_UNCERTAINTY_RE = re.compile(r'([0-9]+(\.[0-9]*)?|\.[0-9]+)%?')


def build_scripts(project_name: str, part: str, clock_period: float,
                  clock_uncertainty: str | float | None) -> dict[str, str]:
    """The three build scripts as {file name: text}: build_prj.tcl, build_prj_vivado.tcl, vivado_synth.tcl.

    `clock_uncertainty` is nanoseconds (a number or '0.5') or a percentage of the period ('12.5%');
    None keeps the tool's default (27% in Vitis HLS, 12.5% in Vivado HLS).
    """
    check_project_name(project_name)  # it is written unquoted into the scripts: an ASCII identifier only
    if not isinstance(part, str) or not _PART_RE.fullmatch(part):
        raise ValueError(f'part must be an FPGA part name such as "xcvu13p-flga2577-2-e", got {part!r}')
    period = format_number(clock_period, 'clock_period')
    if float(period) <= 0:
        raise ValueError(f'clock_period must be a positive number of nanoseconds, got {clock_period!r}')
    uncertainty = format_uncertainty(clock_uncertainty)
    return {
        VITIS_SCRIPT: _hls_script('vitis', project_name, part, period, uncertainty),
        VIVADO_SCRIPT: _hls_script('vivado', project_name, part, period, uncertainty),
        VSYNTH_SCRIPT: _vsynth_script(project_name, part, period),
    }


def format_number(value: float, what: str) -> str:
    """A Tcl-ready decimal for a number of nanoseconds: 5 -> '5', 3.3333333333 -> '3.3333333333'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{what} must be a number of nanoseconds, got {value!r}')
    text = format(float(value), '.12g')
    if 'e' in text or text in ('nan', 'inf', '-inf'):
        raise ValueError(f'{what} must be a finite number of nanoseconds, got {value!r}')
    return text


def format_uncertainty(value: str | float | None) -> str:
    """clock_uncertainty as written in the scripts: '' (tool default), '0.5' (ns) or '12.5%'."""
    if value is None:
        return ''
    if isinstance(value, str):
        text = value.strip().replace(' ', '')
        if text == '':
            return ''
        if _UNCERTAINTY_RE.fullmatch(text):
            return text
        raise ValueError(f'clock_uncertainty must be nanoseconds (0.5, "0.5") or a percentage of the '
                         f'clock period ("12.5%"), got {value!r}')
    text = format_number(value, 'clock_uncertainty')
    if float(text) < 0:
        raise ValueError(f'clock_uncertainty must not be negative, got {value!r}')
    return text


def _hls_script(flavor: str, project: str, part: str, period: str, uncertainty: str) -> str:
    f = _FLAVORS[flavor]
    script = VITIS_SCRIPT if flavor == 'vitis' else VIVADO_SCRIPT
    alt = f'#     {f["alt_run"]}\n' if f['alt_run'] else ''
    return f'''\
# {script}: builds the fpga4ml HLS project "{project}" with {f["tool"]}.
#
# Run it from this directory:
#     {f["run"]}
{alt}#
# Steps, run in this order when selected:
#     csim    C simulation of firmware/ with the testbench tb/ on tb_data/
#     synth   C synthesis to RTL; reports in {project}_prj/{SOLUTION}/syn/report/
#     cosim   C/RTL co-simulation of the synthesized RTL with the same testbench
#     export  package the RTL as Vivado IP ({project}_prj/{SOLUTION}/impl/)
#     vsynth  Vivado logic synthesis of the RTL ({VSYNTH_SCRIPT}; writes vivado_synth.rpt)
# Choose them without editing this file through the environment, e.g.
#     {STEPS_ENV}="csim synth cosim" {f["run"]}
# or with a "steps=csim,synth,cosim" script argument where the launcher passes one on;
# otherwise default_steps below run. fpga4ml's build() sets {STEPS_ENV}.

# show each line as soon as it is printed, also when the output goes to a pipe
catch {{fconfigure stdout -buffering line}}

# ---- settings ----------------------------------------------------------------
set project_name      {project}
set part              {{{part}}}
set clock_period      {period}
# nanoseconds or a percentage of the period; empty keeps the tool's default
set clock_uncertainty {{{uncertainty}}}
set solution          {SOLUTION}
set cflags            {{{f["cflags"]}}}
# the testbench also finds headers relative to the project directory
set tb_cflags         "$cflags -I[pwd] -I[pwd]/firmware"
set default_steps     {{{" ".join(DEFAULT_STEPS)}}}

# ---- step selection ----------------------------------------------------------
set known_steps {{{" ".join(STEPS)}}}
set steps $default_steps
if {{[info exists ::env({STEPS_ENV})]}} {{
    set steps [string map {{, " "}} $::env({STEPS_ENV})]
}}
foreach arg $::argv {{
    if {{[regexp {{^steps=(.*)$}} $arg -> value]}} {{
        set steps [string map {{, " "}} $value]
    }}
}}
foreach step $steps {{
    if {{[lsearch -exact $known_steps $step] < 0}} {{
        puts "ERROR: fpga4ml: unknown step '$step'; the steps are: $known_steps"
        exit 1
    }}
}}
puts "fpga4ml: project $project_name, part $part, clock $clock_period ns, steps: $steps"

# Run one step: print the progress markers, time it, stop the tool with status 1 on error.
proc run_step {{name body}} {{
    puts "==> fpga4ml step $name"
    set start [clock milliseconds]
    if {{[catch {{uplevel #0 $body}} message]}} {{
        puts "ERROR: fpga4ml step $name failed: $message"
        exit 1
    }}
    set seconds [expr {{([clock milliseconds] - $start) / 1000.0}}]
    puts [format "<== fpga4ml step %s done in %.1f s" $name $seconds]
}}

proc selected {{step}} {{
    return [expr {{[lsearch -exact $::steps $step] >= 0}}]
}}

# The later steps need the RTL that synth writes (now or in an earlier run).
proc require_rtl {{step}} {{
    set rtl_dir ${{::project_name}}_prj/${{::solution}}/syn/verilog
    if {{![file isdirectory $rtl_dir]}} {{
        error "$step needs the synthesized RTL in $rtl_dir: run the synth step first"
    }}
}}

# ---- project -----------------------------------------------------------------
run_step setup {{
    open_project -reset ${{project_name}}_prj
    set_top $project_name
    add_files firmware/${{project_name}}.cpp -cflags $cflags
    add_files -tb tb/${{project_name}}_test.cpp -cflags $tb_cflags
    add_files -tb tb_data
    if {{[file isdirectory firmware/weights]}} {{
        add_files -tb firmware/weights
    }}
    open_solution {f["solution_opts"]}$solution
    set_part $part
    create_clock -period $clock_period -name default
    if {{$clock_uncertainty ne ""}} {{
        set_clock_uncertainty $clock_uncertainty default
    }}
}}

# ---- steps -------------------------------------------------------------------
if {{[selected csim]}} {{
    run_step csim {{
        csim_design
    }}
}}
if {{[selected synth]}} {{
    run_step synth {{
        csynth_design
    }}
}}
if {{[selected cosim]}} {{
    run_step cosim {{
        require_rtl cosim
        cosim_design -rtl verilog -trace_level none
    }}
}}
if {{[selected export]}} {{
    run_step export {{
        require_rtl export
        export_design -format ip_catalog
    }}
}}
if {{[selected vsynth]}} {{
    run_step vsynth {{
        require_rtl vsynth
        exec vivado -mode batch -nojournal -nolog -source {VSYNTH_SCRIPT} >@ stdout 2>@1
    }}
}}

exit 0
'''


def _vsynth_script(project: str, part: str, period: str) -> str:
    return f'''\
# {VSYNTH_SCRIPT}: out-of-context Vivado synthesis of the RTL that HLS generated for "{project}".
#
# Run it from this directory after C synthesis (the vsynth step of the build scripts does):
#     vivado -mode batch -source {VSYNTH_SCRIPT}
# Writes vivado_synth.rpt (report_utilization) and vivado_timing.rpt (report_timing_summary).

# ---- settings ----------------------------------------------------------------
set project_name {project}
set part         {{{part}}}
set clock_period {period}
set rtl_dir      ${{project_name}}_prj/{SOLUTION}/syn/verilog

if {{![file isdirectory $rtl_dir]}} {{
    puts "ERROR: fpga4ml: no RTL in $rtl_dir; run C synthesis (the synth step) first"
    exit 1
}}

# The HLS RTL, and the memory initialization files its ROMs read.
read_verilog [glob -directory $rtl_dir *.v]
set rom_files [glob -nocomplain -directory $rtl_dir *.dat]
if {{[llength $rom_files] > 0}} {{
    add_files $rom_files
}}

# Constrain the HLS clock port before synthesis, so that synthesis optimizes for it.
set xdc fpga4ml_clock.xdc
set fh [open $xdc w]
puts $fh "create_clock -name ap_clk -period $clock_period \\[get_ports -quiet ap_clk\\]"
close $fh
read_xdc -mode out_of_context $xdc

synth_design -top $project_name -part $part -mode out_of_context
opt_design
report_utilization -file vivado_synth.rpt
report_timing_summary -file vivado_timing.rpt
exit 0
'''
