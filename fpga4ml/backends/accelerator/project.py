"""The VivadoAccelerator project: the Vivado HLS project plus the wrapper, the block design and the driver.

`project_files(model)` is the HLS back end's project (written as for backend 'Vivado'; 'Vitis' for
Alveo cards, whose kernel v++ compiles with Vitis HLS) with the build scripts pointed at the top
(the wrapper `<project>_axi`, or the Alveo kernel `<project>_kernel`), plus wrapper.py's files,
the board's design (project.tcl + design.tcl, or build_xclbin.sh: design_tcl.py) and the PYNQ
driver (driver.py, axi_stream only). `compile_csim` compiles firmware + wrapper (+ kernel) +
bridge with g++ as the HLS C simulation does (same headers, flags and cache), so
`predict(x, sim='csim')` runs every sample through the wrapper. `build` runs the HLS flow
(vivado_hls; vitis-run for Alveo) and, with bitfile=True, Vivado on design.tcl (v++ through
build_xclbin.sh for Alveo).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ... import cache, procs
from ...model_errors import BackendUnavailableError
from ..hls import csim as hls_csim
from ..hls import writer as hls_writer
from ..hls.tcl import VITIS_SCRIPT, VIVADO_SCRIPT, VSYNTH_SCRIPT, format_uncertainty
from . import design_tcl, driver, wrapper
from .boards import AcceleratorSettings, accelerator_settings

#: the log of the bitstream step (Zynq: Vivado on design.tcl) and of the xclbin step (Alveo: v++)
DESIGN_LOG = 'vivado_design.log'
XCLBIN_LOG = 'vitis_xclbin.log'


class _AsHls:
    """The model seen by the HLS writer: everything of the model, with backend 'Vivado' or 'Vitis' (pragmas)."""

    def __init__(self, model, backend: str) -> None:
        object.__setattr__(self, '_model', model)
        object.__setattr__(self, 'backend', backend)

    def __getattr__(self, name):
        return getattr(self._model, name)


def settings_of(model) -> AcceleratorSettings:
    """The model's accelerator settings (hls4ml's defaults when the model was converted without them)."""
    acc = model.settings.get('accelerator')
    return acc if isinstance(acc, AcceleratorSettings) else accelerator_settings()


def _retarget(text: str, old: str, new: str, script: str) -> str:
    if old not in text:
        raise RuntimeError(f'{script}: the line {old!r} to point at the wrapper top was not found')
    return text.replace(old, new)


def _scripts(files: dict[str, str], alveo: bool) -> None:
    """Point the HLS build scripts at the top (wrapper or kernel) and add its sources (in place)."""
    top = '${project_name}_kernel' if alveo else '${project_name}_axi'
    extra = ['_axi', '_kernel'] if alveo else ['_axi']
    for script in (VITIS_SCRIPT, VIVADO_SCRIPT):
        text = _retarget(files[script], '    set_top $project_name\n', f'    set_top {top}\n', script)
        files[script] = _retarget(text, '    add_files firmware/${project_name}.cpp -cflags $cflags\n',
                                  '    add_files firmware/${project_name}.cpp -cflags $cflags\n'
                                  + ''.join(f'    add_files firmware/${{project_name}}{e}.cpp -cflags $cflags\n'
                                            for e in extra)
                                  + '    add_files -tb ${project_name}_axi_sample.h -cflags $tb_cflags\n', script)
    files[VSYNTH_SCRIPT] = _retarget(files[VSYNTH_SCRIPT], 'synth_design -top $project_name ',
                                     f'synth_design -top {top} ', VSYNTH_SCRIPT)


def project_files(model) -> dict[str, str]:
    """Every file of the accelerator project as {relative path: text}."""
    acc = settings_of(model)
    project = model.project_name
    wrapper.io_nodes(model)  # one input and one output, before anything is generated
    alveo = acc.family == 'alveo'
    files = hls_writer.project_files(_AsHls(model, 'Vitis' if alveo else 'Vivado'))
    _scripts(files, alveo)
    inputs = np.array([[float(v) for v in line.split()] for line in
                       files['tb_data/tb_input_features.dat'].splitlines() if line.strip()])
    node = model.graph[model.graph.inputs[0]]
    files.update(wrapper.wrapper_files(model, acc, inputs.reshape((len(inputs),) + node.shape)))
    uncertainty = format_uncertainty(model.settings.get('clock_uncertainty'))
    files[design_tcl.SETTINGS_SCRIPT] = design_tcl.settings_script(project, acc, model.clock_period, uncertainty)
    if alveo:
        files[design_tcl.XCLBIN_SCRIPT] = design_tcl.xclbin_script(project, acc, model.clock_period)
        files[driver.DRIVER_FILE] = driver.alveo_driver_source(project, acc)
        return files
    files[design_tcl.DESIGN_SCRIPT] = design_tcl.design_script(project, acc)
    if acc.interface == 'axi_stream' and acc.driver == 'python':
        files[driver.DRIVER_FILE] = driver.driver_source(project, acc)
    return files


def write(model) -> Path:
    """Write the accelerator project into model.output_dir; returns that directory."""
    return hls_writer.write_files(Path(model.output_dir), project_files(model))


def compile_csim(model, ap_types_dir: str | os.PathLike | None = None, cxx: str | None = None,
                 flags: tuple[str, ...] = hls_csim.CXXFLAGS, verbose: bool = False) -> hls_csim.CSim:
    """Write the project and build (or reuse) the C simulation of firmware + wrapper; predict() goes through it."""
    include = hls_csim.find_ap_types(ap_types_dir)
    cxx = cxx or os.environ.get('CXX') or shutil.which('g++')
    if not cxx:
        raise hls_csim.CSimError('g++ was not found on PATH: the C simulation needs a C++ compiler (or set $CXX)')
    project = model.project_name
    files = project_files(model)
    root = hls_writer.write_files(Path(model.output_dir), files).resolve()
    sources = {rel: text for rel, text in files.items()
               if rel.startswith('firmware/') or rel in (f'{project}_axi_bridge.cpp', f'{project}_axi_sample.h')}
    toolchain = hls_csim.toolchain_id(cxx, tuple(flags), include)
    lib = root / 'csim' / f'{project}_axi_{hls_csim.build_hash(sources, toolchain)}.so'
    units = [f'firmware/{project}.cpp', f'firmware/{project}_axi.cpp', f'{project}_axi_bridge.cpp']
    if settings_of(model).family == 'alveo':
        units.insert(2, f'firmware/{wrapper.kernel_name(model)}.cpp')
    build = functools.partial(_build_library, sources=sources, units=units, project=project, cxx=cxx,
                              flags=tuple(flags), include=include, toolchain=toolchain, verbose=verbose)
    with cache.ensured(lib, build, f'the accelerator C simulation of {project!r}',
                       lock=lib.parent / hls_csim.LOCK_NAME) as path:
        return hls_csim.CSim(path, model)


def _build_library(staged: Path, sources: dict[str, str], units: list[str], project: str, cxx: str,
                   flags: tuple[str, ...], include: Path, toolchain: str, verbose: bool) -> None:
    """Compile the units (at once) and link them into `staged`, with the HLS C simulation's headers."""
    src = staged.parent / 'src'
    for rel, text in sources.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    objects = [str(staged.parent / f'unit{k}.o') for k in range(len(units))]
    base = [cxx, *flags, *hls_csim.precompiled_header(cxx, flags, include, toolchain, verbose),
            f'-I{include}', f'-I{src}', f'-I{src / "firmware"}']
    commands = [base + ['-c', unit, '-o', obj] for unit, obj in zip(units, objects)]
    hls_csim._check(commands, hls_csim._run_all(commands, src, verbose), project, staged)
    link = [cxx, *flags, '-shared', *objects, '-o', str(staged)]
    hls_csim._check([link], hls_csim._run_all([link], src, verbose), project, staged)


#: per family: the tool that makes the bitstream, how it is described, the script it runs, its output
_FINAL = {
    'zynq': ('vivado', 'vivado (AMD Vivado)', design_tcl.DESIGN_SCRIPT, '.bit'),
    'alveo': ('v++', 'v++ (AMD Vitis, with the Alveo platform installed)', design_tcl.XCLBIN_SCRIPT, '.xclbin'),
}


def build(model, csim: bool = True, synth: bool = True, cosim: bool = False, export: bool = False,
          vsynth: bool = False, bitfile: bool = False, timeout: float | None = None, verbose: bool = True) -> dict:
    """Run the HLS steps on the project and, with bitfile=True, make the bitstream (Zynq) or xclbin (Alveo).

    Zynq boards: vivado_hls with the wrapper as top, then Vivado on design.tcl; bitfile=True needs
    the exported IP, so it adds the export step. Alveo cards: vitis-run (or vitis_hls) with the
    kernel as top for the selected steps, then build_xclbin.sh (v++ compile and link; no HLS
    step is needed for it). The tools are looked up on PATH before anything runs; a missing one
    raises BackendUnavailableError naming it.
    """
    from ..hls.build import find_tool
    from ..hls.build import build as hls_build
    from ..hls.reports import parse_report

    acc = settings_of(model)
    alveo = acc.family == 'alveo'
    tool, description, script, suffix = _FINAL['alveo' if alveo else 'zynq']
    root = Path(model.output_dir).resolve()
    if bitfile and not alveo:
        export = True
    hls_steps = any((csim, synth, cosim, export, vsynth))
    if hls_steps:
        find_tool('vitis' if alveo else 'vivado', root)
    if bitfile and shutil.which(tool) is None:
        raise BackendUnavailableError(
            f'{description} was not found on PATH: build(bitfile=True) runs it ({script}) to make the '
            f'{suffix} file of {str(root)!r}; add it to PATH (source its settings64.sh) or call build(bitfile=False).')
    if not hls_steps and not bitfile:
        raise ValueError('build(): no step selected; set at least one of csim, synth, cosim, export, vsynth, bitfile')
    start = time.monotonic()
    if hls_steps:
        report = hls_build(model, csim=csim, synth=synth, cosim=cosim, export=export, vsynth=vsynth,
                           flavor='vitis' if alveo else 'vivado', timeout=timeout, verbose=verbose)
    else:
        write(model)
        report = parse_report(root, model.project_name)
    if bitfile:
        remaining = None if timeout is None else max(1.0, timeout - (time.monotonic() - start))
        command = ([shutil.which('bash') or '/bin/bash', script] if alveo else
                   [shutil.which(tool), '-mode', 'batch', '-nojournal', '-source', script])
        report['bitfile'] = _run_final(command, root, model.project_name + suffix, XCLBIN_LOG if alveo else DESIGN_LOG,
                                       remaining, verbose)
    return report


def _run_final(command: list[str], root: Path, output: str, log_name: str, timeout: float | None,
               verbose: bool) -> dict:
    """Run the bitstream / xclbin step with its output in `log_name`; BuildError unless `output` was written."""
    from ..hls.build import BuildError

    print(f'fpga4ml: running {" ".join(Path(c).name if k == 0 else c for k, c in enumerate(command))} in {root} '
          f'(log: {log_name})', flush=True)
    tail: list[str] = []
    with open(root / log_name, 'w', encoding='utf-8', errors='replace') as log:
        def line(text: str) -> None:
            log.write(text + '\n')
            tail[:] = (tail + [text])[-30:]
            if verbose:
                print(text, flush=True)

        code = procs.stream(command, line, root, dict(os.environ), timeout)
    made = root / output
    if code != 0 or not made.is_file():
        raise BuildError(f'{Path(command[0]).name} exited with status {code} on {command[-1]}'
                         + ('' if code else f' without writing {made.name}') + ':\n' + '\n'.join(tail)
                         + f'\nfull log: {root / log_name}')
    out = {'file': str(made), 'log': str(root / log_name)}
    if output.endswith('.bit'):
        out['bit'], out['hwh'] = str(made), str(made.with_suffix('.hwh'))
    return out
