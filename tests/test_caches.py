"""Caches that races, crashes and damaged files cannot poison; child processes that die with their parent.

fpga4ml.cache: an artifact is checked against the record written when it was published (size and
sha256 of each file) and rebuilt when it differs; fpga4ml.procs: an interrupted runner leaves no
child behind. Then the real users: the C simulation library and the precompiled header (the
Verilator cache is tested in test_verilator.py, the synthesis of an empty top in test_synth.py).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

from fpga4ml import cache, procs
from fpga4ml.backends.hls import CSimError
from fpga4ml.backends.hls import csim as csim_module
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
needs_gpp = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                               reason='needs g++ and the ap_types headers shipped with hls4ml')


# --------------------------------------------------------------------------- helpers

def damage(path: Path, how: str) -> None:
    """Truncate a file to half, empty it, or flip one bit in its middle."""
    data = bytearray(path.read_bytes())
    if how == 'truncated':
        data = data[:len(data) // 2]
    elif how == 'empty':
        data = bytearray()
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def processes_mentioning(text: str, exclude: tuple[int, ...] = ()) -> list[str]:
    """Command lines of the live processes whose command line contains `text` (a /proc scan)."""
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            cmdline = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(cmdline.replace(b'\0', b' ').decode(errors='replace'))
    return found


def wait_for(condition, timeout: float = 120.0, what: str = 'condition', parent=None) -> None:
    """Poll `condition` until true; fail after `timeout` s or when `parent` (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if parent is not None and parent.poll() is not None:
            raise AssertionError(f'the parent exited ({parent.returncode}) before {what}: {parent.stderr.read()}')
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.02)


def tiny_model(seed: int, output_dir: str | Path, project: str = 'tiny'):
    """Dense 3 -> 2 in fixed<8,3>: builds in about a second; each seed gives other weights."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (3,), source='Input'))
    g.add(Node('d', 'Dense', ['x'], (2,), source='Dense',
               weights={'kernel': rng.normal(0, 1, (3, 2)).astype(np.float32),
                        'bias': rng.normal(0, 1, 2).astype(np.float32)}))
    g.inputs, g.outputs = ['x'], ['d']
    config = {'Model': {'Precision': 'fixed<8,3>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}
    return convert_graph(g, config, output_dir=str(output_dir), project_name=project)


def tiny_inputs() -> np.ndarray:
    return np.random.default_rng(99).normal(0, 3, (500, 3))


def assert_csim_is_emulator(model) -> None:
    x = tiny_inputs()
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))


@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory) -> Path:
    """One $FPGA4ML_CACHE for the module, so the precompiled header is built once."""
    return tmp_path_factory.mktemp('fpga4ml-cache')


@pytest.fixture
def cache_env(shared_cache, monkeypatch) -> Path:
    monkeypatch.setenv('FPGA4ML_CACHE', str(shared_cache))
    return shared_cache


# --------------------------------------------------------------------------- fpga4ml.cache

def counting_builder(content: bytes = b'artifact'):
    calls = []

    def build(staged: Path) -> None:
        calls.append(staged)
        staged.write_bytes(content)
    return build, calls


def test_artifact_is_built_once_and_recorded(tmp_path):
    build, calls = counting_builder()
    artifact = tmp_path / 'c' / 'thing.bin'
    assert cache.ensure(artifact, build, 'the thing') == artifact
    assert cache.ensure(artifact, build, 'the thing') == artifact
    assert len(calls) == 1 and artifact.read_bytes() == b'artifact'
    record = json.loads(cache.record_path(artifact).read_text())
    assert record == {'thing.bin': [8, cache.sha256_file(artifact)]}
    assert cache.check(artifact) is None
    assert calls[0].parent.name.startswith(cache.PRIVATE_PREFIX) and not calls[0].parent.exists()


@pytest.mark.parametrize('how', ['truncated', 'empty', 'bitflip'])
def test_damaged_artifact_is_detected_and_rebuilt(tmp_path, how):
    build, calls = counting_builder(bytes(range(256)) * 4)
    artifact = tmp_path / 'thing.bin'
    cache.ensure(artifact, build, 'the thing')
    damage(artifact, how)
    assert cache.check(artifact) is not None
    with pytest.warns(RuntimeWarning, match=rf'the thing in the cache is damaged .*rebuilding {artifact}'):
        cache.ensure(artifact, build, 'the thing')
    assert len(calls) == 2 and artifact.read_bytes() == bytes(range(256)) * 4
    assert cache.check(artifact) is None


def test_folder_artifact_checks_every_file(tmp_path):
    def build(staged: Path) -> None:
        (staged / 'sub').mkdir(parents=True)
        (staged / 'a').write_text('a')
        (staged / 'sub' / 'b').write_text('b')
    entry = tmp_path / 'entry'
    cache.ensure(entry, build, 'the folder')
    assert cache.check(entry) is None
    (entry / 'sub' / 'b').write_text('c')  # same size, other content
    assert 'sha256 mismatch' in cache.check(entry)
    (entry / 'sub' / 'b').unlink()
    assert 'missing' in cache.check(entry)
    with pytest.warns(RuntimeWarning, match='damaged'):
        cache.ensure(entry, build, 'the folder')
    (entry / 'extra').write_text('x')
    assert 'other files' in cache.check(entry)


def test_a_failed_build_publishes_nothing_and_leaves_no_folder(tmp_path):
    def broken(staged: Path) -> None:
        staged.write_bytes(b'half')
        raise RuntimeError('compiler failed')
    artifact = tmp_path / 'thing.bin'
    with pytest.raises(RuntimeError, match='compiler failed'):
        cache.ensure(artifact, broken, 'the thing')
    assert not artifact.exists() and not cache.record_path(artifact).exists()
    assert not list(tmp_path.glob(cache.PRIVATE_PREFIX + '*'))


def test_unusable_cache_folder_names_the_path(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    build, _ = counting_builder()
    with pytest.raises(cache.CacheError, match=rf'cannot create the cache folder {re.escape(str(blocker))}/sub for the thing'):
        cache.ensure(blocker / 'sub' / 'thing.bin', build, 'the thing')


def test_stale_private_folders_are_removed(tmp_path):
    old, new = tmp_path / (cache.PRIVATE_PREFIX + 'old'), tmp_path / (cache.PRIVATE_PREFIX + 'new')
    old.mkdir()
    new.mkdir()
    os.utime(old, (time.time() - 2 * cache.STALE_AFTER_S,) * 2)
    cache.remove_stale(tmp_path)
    assert not old.exists() and new.exists()  # a recent one may belong to a running build


# --------------------------------------------------------------------------- fpga4ml.procs

RUNNER_SCRIPT = """
import sys
from pathlib import Path
from fpga4ml import procs
cmd = ['sh', '-c', 'sleep {tag} & sleep {tag}']
Path(sys.argv[1]).write_text('started')
if sys.argv[2] == 'run':
    procs.run(cmd)
elif sys.argv[2] == 'run_all':
    procs.run_all([cmd, cmd])
else:
    procs.stream(cmd, print)
"""


@pytest.mark.skipif(os.name != 'posix', reason='process groups are POSIX')
@pytest.mark.parametrize('runner,sig', [('run', signal.SIGINT), ('run_all', signal.SIGTERM),
                                        ('stream', signal.SIGTERM), ('stream', signal.SIGINT)])
def test_interrupted_runner_leaves_no_child(tmp_path, runner, sig):
    """A parent interrupted while its children (and their children) run leaves none of them alive."""
    tag = f'1000.{uuid.uuid4().int % 10**9}'  # a unique `sleep` duration marks our processes
    script = tmp_path / 'parent.py'
    script.write_text(RUNNER_SCRIPT.format(tag=tag))
    flag = tmp_path / 'started'
    parent = subprocess.Popen([sys.executable, str(script), str(flag), runner], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        expected = 4 if runner == 'run_all' else 2  # each sh and its background sleep
        wait_for(lambda: len(processes_mentioning(tag)) >= expected, what='the sleeps to start', parent=parent)
        parent.send_signal(sig)
        parent.wait(30)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode != 0
    wait_for(lambda: not processes_mentioning(tag), timeout=10, what='the children to be gone')


def test_run_timeout_kills_the_group():
    tag = f'1000.{uuid.uuid4().int % 10**9}'
    start = time.monotonic()
    with pytest.raises(TimeoutError, match='sh did not finish within the timeout of 0.5 s'):
        procs.run(['sh', '-c', f'sleep {tag} & sleep {tag}'], timeout=0.5)
    assert time.monotonic() - start < 10
    wait_for(lambda: not processes_mentioning(tag), timeout=10, what='the children to be gone')


def test_run_all_captures_each_output():
    first, second = procs.run_all([['sh', '-c', 'echo one; echo err >&2; exit 3'], ['echo', 'two']])
    assert (first.returncode, first.stdout, first.stderr) == (3, 'one\n', 'err\n')
    assert (second.returncode, second.stdout) == (0, 'two\n')


def test_sigterm_handler_of_the_application_is_kept():
    def mine(signum, frame):
        pass
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with procs.sigterm_as_exit():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    with procs.sigterm_as_exit():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is previous


# --------------------------------------------------------------------------- the C simulation library

BUILD_SCRIPT = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from test_caches import tiny_model
model = tiny_model(int(sys.argv[2]), sys.argv[1])
model.compile(sim='csim')
print(model._csim.path)
"""


def build_elsewhere(seed: int, output_dir: Path, **popen_kw) -> subprocess.Popen:
    """compile(sim='csim') of tiny_model(seed) in a child process, which prints the library path.

    A library this process has loaded stays mapped (and dlopen of the same path returns that
    mapping), so a library to be damaged on purpose is built by another process, as in a past session.
    """
    return subprocess.Popen([sys.executable, '-c', BUILD_SCRIPT, str(output_dir), str(seed)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kw)


def library_built_elsewhere(seed: int, output_dir: Path) -> Path:
    proc = build_elsewhere(seed, output_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return Path(out.strip())


@needs_gpp
@pytest.mark.parametrize('how', ['truncated', 'empty', 'bitflip'])
def test_damaged_csim_library_is_rebuilt(tmp_path, cache_env, how):
    lib = library_built_elsewhere(1, tmp_path / 'p')
    damage(lib, how)
    again = tiny_model(1, tmp_path / 'p')
    with pytest.warns(RuntimeWarning, match=rf'C simulation library of .tiny. in the cache is damaged.*{re.escape(str(lib))}'):
        again.compile(sim='csim')
    assert again._csim.path == lib and cache.check(lib) is None
    assert_csim_is_emulator(again)


@needs_gpp
def test_damaged_precompiled_header_is_rebuilt(tmp_path, cache_env):
    library_built_elsewhere(2, tmp_path / 'a')  # the header exists now
    (folder,) = [p for p in (cache_env / 'pch').iterdir() if p.is_dir()]
    gch = folder / f'{csim_module.PCH_HEADER}.gch'
    damage(gch, 'bitflip')
    model = tiny_model(3, tmp_path / 'b')  # another model: its library is built with the header
    with pytest.warns(RuntimeWarning, match=rf'precompiled ap_types header in the cache is damaged.*{re.escape(str(folder))}'):
        model.compile(sim='csim')
    assert cache.check(folder) is None
    assert_csim_is_emulator(model)


@needs_gpp
def test_failed_rebuild_names_the_cache_entry(tmp_path, cache_env, monkeypatch):
    lib = library_built_elsewhere(4, tmp_path / 'p')
    damage(lib, 'empty')

    def failing(commands, cwd, verbose):
        return [subprocess.CompletedProcess(cmd, 1, '', 'cc1plus: fatal error: out of memory') for cmd in commands]
    monkeypatch.setattr(csim_module, '_run_all', failing)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        with pytest.raises(CSimError, match=rf"g\+\+ failed building the C simulation of 'tiny' \(cache entry {re.escape(str(lib))}\)"
                                            r':\ncc1plus: fatal error: out of memory'):
            tiny_model(4, tmp_path / 'p').compile(sim='csim')
    assert not lib.exists() and not list(lib.parent.glob(cache.PRIVATE_PREFIX + '*'))


@needs_gpp
def test_compiles_the_sources_it_hashes(tmp_path, cache_env, monkeypatch):
    """Another process rewrites the project folder between our write and our compile: the library
    still computes our model (before, g++ compiled whatever the folder held then)."""
    other = tiny_model(6, tmp_path / 'p')
    write_files = csim_module.write_files

    def write_then_overwritten(root, files):
        written = write_files(root, files)
        write_files(root, csim_module.project_files(other))  # the other process wins the folder
        return written
    monkeypatch.setattr(csim_module, 'write_files', write_then_overwritten)
    model = tiny_model(5, tmp_path / 'p')
    model.compile(sim='csim')
    assert_csim_is_emulator(model)
    x = tiny_inputs()
    assert not np.array_equal(other.predict(x), model.predict(x))  # the control: the models differ


def race_worker(seed: int, output_dir: str, cache_dir: str, rounds: int, barrier, results) -> None:
    """One side of the race: compile and compare with the emulator each round, in step with the other side.

    Each round uses a new folder (the same for both sides): dlopen returns the library a process
    loaded before under the same path, so only a first load in a folder shows what was built there.
    """
    os.environ['FPGA4ML_CACHE'] = cache_dir
    x = tiny_inputs()
    wrong = 0
    try:
        for k in range(rounds):
            model = tiny_model(seed, Path(output_dir) / f'round{k}')
            barrier.wait(120)
            model.compile(sim='csim')
            got = model.predict(x, sim='csim')
            wrong += not np.array_equal(got, model.predict(x))
        results.put((seed, wrong, got.tolist(), None))
    except BaseException as exc:  # report instead of hanging the other side
        barrier.abort()
        results.put((seed, wrong, None, repr(exc)))


@needs_gpp
def test_two_processes_racing_on_one_folder_get_their_own_model(tmp_path, shared_cache):
    """Two models, one output_dir and project_name, 20 rounds in lock step: each process always gets
    its own model's results (before, one could load a library holding the other model)."""
    ctx = multiprocessing.get_context('spawn')
    barrier, results = ctx.Barrier(2), ctx.Queue()
    rounds = 20
    workers = [ctx.Process(target=race_worker, args=(seed, str(tmp_path / 'p'), str(shared_cache), rounds,
                                                     barrier, results)) for seed in (11, 12)]
    for w in workers:
        w.start()
    try:
        outcome = {seed: (wrong, got, error) for seed, wrong, got, error in (results.get(timeout=300) for _ in workers)}
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.kill()
    assert {seed: error for seed, (_, _, error) in outcome.items()} == {11: None, 12: None}
    assert {seed: wrong for seed, (wrong, _, _) in outcome.items()} == {11: 0, 12: 0}
    assert outcome[11][1] != outcome[12][1]  # the control: a swapped library would be seen
    assert not list((tmp_path / 'p').rglob(cache.PRIVATE_PREFIX + '*'))




@needs_gpp
@pytest.mark.skipif(os.name != 'posix', reason='process groups are POSIX')
@pytest.mark.parametrize('sig,warm', [(signal.SIGINT, False), (signal.SIGTERM, True)],
                         ids=['sigint-during-header', 'sigterm-during-library'])
def test_interrupted_csim_build_leaves_no_compiler_and_no_folder(tmp_path, shared_cache, monkeypatch, sig, warm):
    """Ctrl-C (or SIGTERM) while g++ builds the precompiled header (cold cache) or the library (warm
    cache): no g++ keeps running and no temporary folder is left."""
    cache_dir = shared_cache if warm else tmp_path / 'cold-cache'
    monkeypatch.setenv('FPGA4ML_CACHE', str(cache_dir))
    if warm:  # make sure the header exists, so that the interrupt hits the library's g++
        tiny_model(7, tmp_path / 'warm').compile(sim='csim')
    out = tmp_path / 'interrupted'
    parent = build_elsewhere(8, out)
    watched = str(out) if warm else str(cache_dir)  # the g++ command lines name these folders
    try:
        wait_for(lambda: any('g++' in c or 'cc1plus' in c for c in processes_mentioning(watched, (parent.pid,))),
                 what='g++ to start', parent=parent)
        parent.send_signal(sig)
        parent.wait(60)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode != 0, parent.stderr.read()
    wait_for(lambda: not processes_mentioning(str(tmp_path), (os.getpid(),)), timeout=10,
             what='every g++ to be gone')
    assert not list(tmp_path.rglob(cache.PRIVATE_PREFIX + '*'))
    assert not list(out.glob('csim/*.so'))
