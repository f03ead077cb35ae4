"""The VivadoAccelerator project: the Vivado HLS project plus the wrapper, the block design and the driver.

`project_files(model)` is the HLS back end's project (written as for backend 'Vivado') with the
build scripts pointed at the wrapper top `<project>_axi`, plus wrapper.py's files, project.tcl and
design.tcl (design_tcl.py) and the PYNQ driver (driver.py, axi_stream only). `compile_csim`
compiles firmware + wrapper + bridge with g++ as the HLS C simulation does (same headers, flags
and cache), so `predict(x, sim='csim')` runs every sample through the wrapper. `build` runs the
HLS flow (vivado_hls) and, with bitfile=True, Vivado on design.tcl.
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

DESIGN_LOG = 'vivado_design.log'


class _AsVivado:
    """The model seen by the HLS writer: everything of the model, with backend 'Vivado' (its pragmas)."""

    backend = 'Vivado'

    def __init__(self, model) -> None:
        object.__setattr__(self, '_model', model)

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


def _scripts(files: dict[str, str], project: str) -> None:
    """Point the HLS build scripts at the wrapper top and add the wrapper's source (in place)."""
    for script in (VITIS_SCRIPT, VIVADO_SCRIPT):
        text = _retarget(files[script], '    set_top $project_name\n',
                         '    set_top ${project_name}_axi\n', script)
        files[script] = _retarget(text, '    add_files firmware/${project_name}.cpp -cflags $cflags\n',
                                  '    add_files firmware/${project_name}.cpp -cflags $cflags\n'
                                  '    add_files firmware/${project_name}_axi.cpp -cflags $cflags\n'
                                  '    add_files -tb ${project_name}_axi_sample.h -cflags $tb_cflags\n', script)
    files[VSYNTH_SCRIPT] = _retarget(files[VSYNTH_SCRIPT], 'synth_design -top $project_name ',
                                     'synth_design -top ${project_name}_axi ', VSYNTH_SCRIPT)


def project_files(model) -> dict[str, str]:
    """Every file of the accelerator project as {relative path: text}."""
    acc = settings_of(model)
    project = model.project_name
    wrapper.io_nodes(model)  # one input and one output, before anything is generated
    design = design_tcl.design_script(project, acc)  # raises for boards without a block design
    files = hls_writer.project_files(_AsVivado(model))
    _scripts(files, project)
    inputs = np.array([[float(v) for v in line.split()] for line in
                       files['tb_data/tb_input_features.dat'].splitlines() if line.strip()])
    node = model.graph[model.graph.inputs[0]]
    files.update(wrapper.wrapper_files(model, acc, inputs.reshape((len(inputs),) + node.shape)))
    uncertainty = format_uncertainty(model.settings.get('clock_uncertainty'))
    files[design_tcl.SETTINGS_SCRIPT] = design_tcl.settings_script(project, acc, model.clock_period, uncertainty)
    files[design_tcl.DESIGN_SCRIPT] = design
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


def build(model, csim: bool = True, synth: bool = True, cosim: bool = False, export: bool = False,
          vsynth: bool = False, bitfile: bool = False, timeout: float | None = None, verbose: bool = True) -> dict:
    """Run vivado_hls on the project (the wrapper is the top) and, with bitfile=True, Vivado on design.tcl.

    bitfile=True needs the exported IP, so it adds the export step. Both tools are looked up on
    PATH before anything runs; a missing one raises BackendUnavailableError naming it.
    """
    from ..hls.build import BuildError, find_tool
    from ..hls.build import build as hls_build

    if bitfile:
        export = True
        find_tool('vivado', Path(model.output_dir).resolve())  # vivado_hls first: its message is the HLS one
        if shutil.which('vivado') is None:
            raise BackendUnavailableError(
                f'vivado (AMD Vivado) was not found on PATH: build(bitfile=True) runs it on design.tcl to make the '
                f'bitstream of {str(Path(model.output_dir).resolve())!r}; add Vivado to PATH (source its '
                'settings64.sh) or call build(bitfile=False).')
    start = time.monotonic()
    report = hls_build(model, csim=csim, synth=synth, cosim=cosim, export=export, vsynth=vsynth, flavor='vivado',
                       timeout=timeout, verbose=verbose)
    if bitfile:
        root = Path(report['build']['project_dir'])
        remaining = None if timeout is None else max(1.0, timeout - (time.monotonic() - start))
        command = [shutil.which('vivado'), '-mode', 'batch', '-nojournal', '-source', design_tcl.DESIGN_SCRIPT]
        print(f'fpga4ml: running vivado on {design_tcl.DESIGN_SCRIPT} in {root} (log: {DESIGN_LOG})', flush=True)
        tail: list[str] = []
        with open(root / DESIGN_LOG, 'w', encoding='utf-8', errors='replace') as log:
            def line(text: str) -> None:
                log.write(text + '\n')
                tail[:] = (tail + [text])[-30:]
                if verbose:
                    print(text, flush=True)

            code = procs.stream(command, line, root, dict(os.environ), remaining)
        bit = root / f'{model.project_name}.bit'
        if code != 0 or not bit.is_file():
            raise BuildError(f'vivado exited with status {code} on {design_tcl.DESIGN_SCRIPT}'
                             + ('' if code else f' without writing {bit.name}') + ':\n' + '\n'.join(tail)
                             + f'\nfull log: {root / DESIGN_LOG}')
        report['bitfile'] = {'bit': str(bit), 'hwh': str(root / f'{model.project_name}.hwh'),
                             'log': str(root / DESIGN_LOG)}
    return report
