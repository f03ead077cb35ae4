"""C simulation of the written HLS project: g++ builds firmware + bridge into a shared library.

`compile_csim(model)` writes the project, finds the Xilinx ap_types headers, compiles
``firmware/<project>.cpp`` and ``<project>_bridge.cpp`` with ``g++ -O2 -std=c++14 -shared -fPIC``
into ``<output_dir>/csim/<project>_<hash>.so`` and returns a `CSim` whose ``predict(x)`` runs a
whole batch in one ctypes call. The sources are compiled from the generated texts in a private
folder (not from the written project, which another process may be rewriting), and the hash
covers exactly those texts, the compiler, the flags and the vendor headers (path and content),
so compiling the same model again loads the existing library without g++. Building, checking
(size and sha256 recorded at publish time) and loading happen under the lock of the csim/ folder
(see fpga4ml.cache); a damaged library is rebuilt, and an interrupted build leaves no g++
running and no temporary folder behind (fpga4ml.procs).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ... import cache, procs
from ...ir import GraphError
from .writer import project_files, write_files

#: -O2: g++ CPU time within 6 % of -O0 and -O1 (template instantiation dominates), C simulation 10-25 % faster than -O1, 25x faster than -O0
CXXFLAGS = ('-O2', '-std=c++14', '-fPIC', '-pthread', '-w')
HEADER = 'ap_fixed.h'
#: the lock file of a project's csim/ folder (building, loading and pruning libraries take it)
LOCK_NAME = '.lock'
#: libraries of one project kept in its csim/ folder (most recently used first): two processes or
#: notebooks that alternate between models in one folder reuse their builds instead of deleting them
KEEP_LIBRARIES = 4


class CSimError(RuntimeError):
    """The C simulation could not be built (headers missing, compiler missing or failing)."""


def find_ap_types(ap_types_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding ap_fixed.h: the argument, $XILINX_HLS/include, or hls4ml's bundled copy."""
    tried = []
    candidates = []
    if ap_types_dir is not None:
        candidates.append(('the ap_types_dir argument', Path(ap_types_dir)))
    if os.environ.get('XILINX_HLS'):
        candidates.append(('$XILINX_HLS/include', Path(os.environ['XILINX_HLS']) / 'include'))
    spec = importlib.util.find_spec('hls4ml')  # locates the package without importing it (slow)
    if spec is not None and spec.origin is not None:
        candidates.append(("the hls4ml package's templates/vivado/ap_types",
                           Path(spec.origin).parent / 'templates' / 'vivado' / 'ap_types'))
    for what, path in candidates:
        if (path / HEADER).is_file():
            return path.resolve()
        tried.append(f'{what} ({path})')
        if what == 'the ap_types_dir argument':
            raise CSimError(f'{HEADER} not found in ap_types_dir={str(ap_types_dir)!r}')
    raise CSimError(
        f'the Xilinx ap_types headers ({HEADER}, ap_int.h, hls_stream.h) were not found; looked in: '
        '(1) the ap_types_dir argument of compile(sim="csim", ap_types_dir=...), '
        '(2) $XILINX_HLS/include (a Vitis HLS installation), '
        "(3) the installed hls4ml package's templates/vivado/ap_types (pip install hls4ml)"
        + (f'; checked {", ".join(tried)}' if tried else ''))


def compiler_id(cxx: str) -> str:
    """The compiler's path and version line (part of the build hash)."""
    try:
        proc = procs.run([cxx, '--version'])
    except OSError as exc:
        raise CSimError(f'the C++ compiler {cxx!r} does not run ({exc}); install g++ or set $CXX') from None
    if proc.returncode != 0:
        raise CSimError(f'the C++ compiler {cxx!r} does not run ({proc.stderr.strip()}); install g++ or set $CXX')
    return f'{cxx}\n{proc.stdout.splitlines()[0] if proc.stdout else ""}'


def toolchain_id(cxx: str, flags: tuple[str, ...], include: Path) -> str:
    """Compiler, flags and a digest of the vendor headers: everything of a build that is not a source."""
    return '\0'.join([compiler_id(cxx), ' '.join(flags), str(include), cache.tree_digest(include)])


def build_hash(sources: dict[str, str], toolchain: str) -> str:
    """16 hex digits of sha256 over the toolchain and every compiled source (path and text)."""
    h = hashlib.sha256(toolchain.encode() + b'\0')
    for rel in sorted(sources):
        h.update(rel.encode() + b'\0' + sources[rel].encode() + b'\0')
    return h.hexdigest()[:16]


def compile_csim(model, ap_types_dir: str | os.PathLike | None = None, cxx: str | None = None,
                 flags: tuple[str, ...] = CXXFLAGS, verbose: bool = False) -> 'CSim':
    """Write the project, build (or reuse) its C simulation library and load it."""
    include = find_ap_types(ap_types_dir)
    cxx = cxx or os.environ.get('CXX') or shutil.which('g++')
    if not cxx:
        raise CSimError('g++ was not found on PATH: the C simulation needs a C++ compiler (or set $CXX)')
    project = model.project_name
    files = project_files(model)
    root = write_files(Path(model.output_dir), files).resolve()
    # compiled from these texts (not from the folder, which another process may be rewriting)
    sources = {rel: text for rel, text in files.items() if rel.startswith('firmware/') or rel == f'{project}_bridge.cpp'}
    toolchain = toolchain_id(cxx, tuple(flags), include)
    lib = root / 'csim' / f'{project}_{build_hash(sources, toolchain)}.so'
    build = functools.partial(build_library, sources=sources, project=project, cxx=cxx, flags=tuple(flags),
                              include=include, toolchain=toolchain, verbose=verbose)
    # one lock for the folder: loading a library and pruning old ones never overlap
    with cache.ensured(lib, build, f'the C simulation library of {project!r}', lock=lib.parent / LOCK_NAME) as path:
        prune_libraries(path.parent, project, keep=path)
        return CSim(path, model)


def prune_libraries(folder: Path, project: str, keep: Path, newest: int = KEEP_LIBRARIES) -> None:
    """Delete this project's libraries (and records) beyond the `newest` most recently used, never `keep`."""
    os.utime(keep)
    pattern = re.compile(re.escape(project) + r'_[0-9a-f]{16}\.so')
    libs = [p for p in folder.iterdir() if pattern.fullmatch(p.name) and p != keep]
    libs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in libs[newest - 1:]:
        cache.discard(old)


def build_library(staged: Path, sources: dict[str, str], project: str, cxx: str, flags: tuple[str, ...],
                  include: Path, toolchain: str, verbose: bool = False) -> None:
    """Compile firmware and bridge (two translation units, at once) from `sources` and link them into `staged`.

    Works in the private folder of `staged`; errors name the cache entry being built.
    """
    src = staged.parent / 'src'
    for rel, text in sources.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    units = [f'firmware/{project}.cpp', f'{project}_bridge.cpp']
    objects = [str(staged.parent / f'unit{k}.o') for k in range(len(units))]
    base = [cxx, *flags, *precompiled_header(cxx, flags, include, toolchain, verbose),
            f'-I{include}', f'-I{src}', f'-I{src / "firmware"}']
    commands = [base + ['-c', unit, '-o', obj] for unit, obj in zip(units, objects)]
    _check(commands, _run_all(commands, src, verbose), project, staged)
    link = [cxx, *flags, '-shared', *objects, '-o', str(staged)]
    _check([link], _run_all([link], src, verbose), project, staged)


def _check(commands: list[list[str]], results: list[subprocess.CompletedProcess], project: str, staged: Path) -> None:
    """CSimError with the compiler's last lines when one of the commands failed."""
    for proc in results:
        if proc.returncode != 0:
            tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            entry = staged.parent.parent / staged.name
            raise CSimError(f'g++ failed building the C simulation of {project!r} (cache entry {entry}):\n{tail}')


#: what every generated translation unit includes first; precompiled once per compiler/flags/headers
PCH_SOURCE = '#include <stdint.h>\n#include "ap_fixed.h"\n#include "ap_int.h"\n#include "hls_stream.h"\n'
PCH_HEADER = 'fpga4ml_pch.h'


def cache_dir() -> Path:
    """Where fpga4ml keeps build artefacts shared between projects ($FPGA4ML_CACHE or ~/.cache/fpga4ml)."""
    return cache.default_root()


def precompiled_header(cxx: str, flags: tuple[str, ...], include: Path, toolchain: str,
                       verbose: bool = False) -> list[str]:
    """g++ options that pre-include the vendor headers from a cached precompiled header.

    Parsing ap_fixed.h is about half of a small project's compile time. The header is compiled
    once per toolchain (compiler, flags, header directory and content) into the cache folder
    pch/<hash>, checked against its record before each use and rebuilt when damaged. g++ only
    uses the .gch when the flags match and otherwise reads the plain header, so the result is
    the same either way. Returns [] (no precompiled header) when the cache cannot be written or
    g++ fails.
    """
    key = hashlib.sha256(f'{toolchain}\0{PCH_SOURCE}'.encode()).hexdigest()[:16]
    build = functools.partial(_build_pch, cxx=cxx, flags=flags, include=include, verbose=verbose)
    try:
        folder = cache.ensure(cache_dir() / 'pch' / key, build, 'the precompiled ap_types header')
    except (cache.CacheError, CSimError):
        return []
    return [f'-I{folder}', '-include', PCH_HEADER]


def _build_pch(staged: Path, cxx: str, flags: tuple[str, ...], include: Path, verbose: bool) -> None:
    """The folder `staged` with the pre-included header and its .gch."""
    staged.mkdir()
    header = staged / PCH_HEADER
    header.write_text(PCH_SOURCE)
    cmd = [cxx, *flags, f'-I{include}', '-x', 'c++-header', str(header), '-o', f'{header}.gch']
    (proc,) = _run_all([cmd], staged, verbose)
    if proc.returncode != 0:
        raise CSimError(f'g++ could not precompile {header}: {proc.stderr.strip()[-2000:]}')


def _run_all(commands: list[list[str]], cwd: Path, verbose: bool) -> list[subprocess.CompletedProcess]:
    """Run the compiler commands at once; Ctrl-C or SIGTERM kills them all (see fpga4ml.procs)."""
    if verbose:
        for cmd in commands:
            print(' '.join(cmd))
    try:
        return procs.run_all(commands, cwd)
    except OSError as exc:
        raise CSimError(f'cannot run the C++ compiler {commands[0][0]!r} ({exc}); install g++ or set $CXX') from None


class CSim:
    """A loaded C simulation library: predict(x) -> float64 outputs, one library call per batch."""

    def __init__(self, lib: Path, model) -> None:
        graph = model.graph
        self.path = Path(lib)
        self.input_names = list(graph.inputs)
        self.input_shapes = [graph[name].shape for name in graph.inputs]
        self.output_shapes = [graph[name].shape for name in graph.outputs]
        self.n_in = sum(int(np.prod(s, dtype=np.int64)) for s in self.input_shapes)
        self.n_out = sum(int(np.prod(s, dtype=np.int64)) for s in self.output_shapes)
        self._lib = ctypes.CDLL(str(self.path))
        project = model.project_name
        sizes = self._lib[f'{project}_io_sizes']
        sizes.argtypes = [ctypes.POINTER(ctypes.c_long), ctypes.POINTER(ctypes.c_long)]
        n_in, n_out = ctypes.c_long(), ctypes.c_long()
        sizes(ctypes.byref(n_in), ctypes.byref(n_out))
        if (n_in.value, n_out.value) != (self.n_in, self.n_out):
            raise CSimError(f'{self.path} has {n_in.value} inputs and {n_out.value} outputs per sample, '
                            f'the model {self.n_in} and {self.n_out}')
        self._predict = self._lib[f'{project}_predict']
        double_p = np.ctypeslib.ndpointer(np.float64, flags='C_CONTIGUOUS')
        self._predict.argtypes = [double_p, double_p, ctypes.c_long, ctypes.c_int]
        self._predict.restype = ctypes.c_int

    def _inputs(self, x) -> np.ndarray:
        """The batch as one C-contiguous (n, n_in) float64 array (inputs concatenated in graph order)."""
        if isinstance(x, dict):
            missing = [n for n in self.input_names if n not in x]
            if missing:
                raise GraphError(f'missing inputs {missing}; the model inputs are {self.input_names}')
            xs = [x[n] for n in self.input_names]
        else:
            xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.input_names):
            raise GraphError(f'the model has {len(self.input_names)} inputs {self.input_names}, got {len(xs)} arrays')
        flat = []
        for name, shape, a in zip(self.input_names, self.input_shapes, xs):
            a = np.asarray(a, dtype=np.float64)
            if a.shape == shape:
                a = a[None]
            if a.shape[1:] != shape:
                raise GraphError(f'input {name!r}: expected shape (batch,) + {shape}, got {a.shape}')
            flat.append(a.reshape(a.shape[0], -1))
        if len({a.shape[0] for a in flat}) != 1:
            raise GraphError(f'inputs have different batch sizes {sorted({a.shape[0] for a in flat})}')
        return np.ascontiguousarray(np.concatenate(flat, axis=1) if len(flat) > 1 else flat[0])

    def predict(self, x, threads: int | None = None) -> list[np.ndarray]:
        """float64 outputs in graph output order, shapes (batch,) + output shape.

        One library call for the whole batch, which the library splits over `threads` threads
        (default: the CPUs this process may use).
        """
        xin = self._inputs(x)
        n = xin.shape[0]
        y = np.empty((n, self.n_out), dtype=np.float64)
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
        if n:
            status = self._predict(xin, y, n, int(threads))
            if status != 0:
                raise CSimError(f'{self.path}: predict returned {status}')
        outs, offset = [], 0
        for shape in self.output_shapes:
            size = int(np.prod(shape, dtype=np.int64))
            outs.append(y[:, offset:offset + size].reshape((n,) + shape))
            offset += size
        return outs
