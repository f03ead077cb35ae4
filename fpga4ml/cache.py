"""Build caches that a race, a crash or a damaged file cannot poison.

An artifact (a file or a folder: a C-simulation library, a precompiled header, a Verilator
simulator, the Verilator runtime objects) is named by a hash of the inputs actually compiled
(sources, compiler, flags), so one name always means one build. `ensured` hands it out:

- under an exclusive lock (``fcntl.flock`` on ``<artifact>.lock``, or a lock shared by a folder
  of artifacts) for as long as the caller holds it, so no other process replaces it meanwhile;
- after checking it against its record ``<artifact>.sha256`` (JSON: the size and sha256 of every
  file, by path relative to the artifact's folder), which is written last when it is published;
- when the check fails (no record: never finished; a different size or hash: damaged), rebuilt
  in a private temporary folder next to it (the same file system) and moved into place with an
  atomic rename; the private folder is removed on any exit, Ctrl-C and SIGTERM included.

Errors name the cache path; a damaged artifact is reported with a RuntimeWarning and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

from .procs import sigterm_as_exit

RECORD_SUFFIX = '.sha256'
LOCK_SUFFIX = '.lock'
PRIVATE_PREFIX = '.tmp-'
#: private folders older than this are leftovers of a killed process (SIGKILL, power loss)
STALE_AFTER_S = 86400.0

try:  # POSIX; elsewhere the cache works without locks (the atomic publish still holds)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class CacheError(RuntimeError):
    """A cache folder or artifact cannot be created or replaced; the message names the path."""


def default_root() -> Path:
    """The folder of the caches shared between projects: $FPGA4ML_CACHE or ~/.cache/fpga4ml."""
    return Path(os.environ.get('FPGA4ML_CACHE') or Path.home() / '.cache' / 'fpga4ml')


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def tree_digest(folder: Path) -> str:
    """sha256 over the names and contents of every file below `folder` (e.g. a header directory)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob('*') if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b'\0' + sha256_file(path).encode() + b'\0')
    return h.hexdigest()


# ---------------------------------------------------------------------------- records
def record_path(artifact: Path) -> Path:
    """Where the record of `artifact` lives: next to it, named <artifact>.sha256."""
    return artifact.with_name(artifact.name + RECORD_SUFFIX)


def lock_path(artifact: Path) -> Path:
    """The default lock file of `artifact`: next to it, named <artifact>.lock."""
    return artifact.with_name(artifact.name + LOCK_SUFFIX)


def _files(root: Path) -> list[Path]:
    """The files of an artifact: itself, or every file below it (links are not followed)."""
    if root.is_dir() and not root.is_symlink():
        return sorted(p for p in root.rglob('*') if p.is_file() or p.is_symlink())
    return [root]


def _published(root: Path, name: str) -> dict[str, Path]:
    """{path as published (under `name`, relative to the cache folder): file} of the files of `root`."""
    return {(Path(name) / path.relative_to(root) if path != root else Path(name)).as_posix(): path
            for path in _files(root)}


def describe(root: Path, name: str) -> dict[str, list]:
    """{path as published (under `name`): [size, sha256]} of the files of `root`."""
    return {rel: [path.stat().st_size, sha256_file(path)] for rel, path in _published(root, name).items()}


def check(artifact: Path) -> str | None:
    """None when `artifact` matches its record; otherwise why not, in words."""
    record = record_path(artifact)
    try:
        wanted = json.loads(record.read_text())
    except FileNotFoundError:
        return 'it has no record (never finished)'
    except (OSError, ValueError) as exc:
        return f'its record {record} cannot be read ({exc})'
    if not isinstance(wanted, dict) or not wanted:
        return f'its record {record} is not a file list'
    folder = artifact.parent
    for rel, entry in wanted.items():
        path = folder / rel
        try:
            size, digest = entry
            if not path.is_file() or path.is_symlink():
                return f'{path} is missing'
            if path.stat().st_size != size:
                return f'{path} has {path.stat().st_size} bytes, {size} when it was built'
            if sha256_file(path) != digest:
                return f'the content of {path} differs from the build (sha256 mismatch)'
        except (TypeError, ValueError, OSError) as exc:
            return f'{path} cannot be checked ({exc})'
    if set(_published(artifact, artifact.name)) != set(wanted):
        return f'{artifact} holds other files than when it was built'
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def discard(artifact: Path) -> None:
    """Remove an artifact and its record (the record first: a half-removed artifact is never valid)."""
    record_path(artifact).unlink(missing_ok=True)
    if artifact.is_dir() and not artifact.is_symlink():
        shutil.rmtree(artifact)
    elif artifact.exists() or artifact.is_symlink():
        artifact.unlink()


def _discard_or_fail(artifact: Path, what: str) -> None:
    try:
        discard(artifact)
    except OSError as exc:
        raise CacheError(f'cannot remove the damaged cache entry {artifact} of {what}: {exc}') from None


def publish(staged: Path, artifact: Path) -> None:
    """Move `staged` (in a private folder on the same file system) to `artifact` with an atomic
    rename, then write its record, last."""
    record = describe(staged, artifact.name)
    discard(artifact)
    os.replace(staged, artifact)
    _write_atomic(record_path(artifact), json.dumps(record, indent=1, sort_keys=True) + '\n')


# ---------------------------------------------------------------------------- locks and private folders
@contextlib.contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created when missing) while the body runs."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise CacheError(f'cannot create the lock file {lock}: {exc}') from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remove_stale(parent: Path, max_age_s: float = STALE_AFTER_S) -> None:
    """Delete private folders in `parent` left more than `max_age_s` ago by killed processes."""
    now = time.time()
    for old in parent.glob(PRIVATE_PREFIX + '*'):
        with contextlib.suppress(OSError):
            if now - old.lstat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def private_dir(parent: Path) -> Iterator[Path]:
    """A new folder in `parent` that only this build uses; removed on exit, Ctrl-C and SIGTERM included."""
    remove_stale(parent)
    with sigterm_as_exit():
        try:
            path = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=parent))
        except OSError as exc:
            raise CacheError(f'cannot create a build folder in {parent}: {exc}') from None
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def make_folder(folder: Path, what: str) -> Path:
    """Create a cache folder (and its parents); CacheError naming it when that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f'cannot create the cache folder {folder} for {what}: {exc}; '
                         'set $FPGA4ML_CACHE (or the output folder) to a writable place') from None
    return folder


# ---------------------------------------------------------------------------- the one entry point
@contextlib.contextmanager
def ensured(artifact: Path, build: Callable[[Path], None], what: str,
            lock: Path | None = None) -> Iterator[Path]:
    """Yield `artifact`, checked against its record, while holding its lock.

    When the check fails, `build(staged)` must create the artifact (a file or a folder) at the
    path `staged` in a private folder; it is then published with an atomic rename and a new
    record. `what` names the artifact in messages; `lock` replaces the default <artifact>.lock.
    """
    make_folder(artifact.parent, what)
    with locked(lock or lock_path(artifact)):
        problem = check(artifact)
        if problem is not None:
            if record_path(artifact).exists() or artifact.exists():
                warnings.warn(f'{what} in the cache is damaged or incomplete ({problem}); rebuilding {artifact}',
                              RuntimeWarning, stacklevel=3)
                _discard_or_fail(artifact, what)
            with private_dir(artifact.parent) as tmp:
                staged = tmp / artifact.name
                build(staged)
                if not staged.exists():
                    raise CacheError(f'building {what} produced no {staged} (for the cache entry {artifact})')
                try:
                    publish(staged, artifact)
                except OSError as exc:
                    raise CacheError(f'cannot publish {what} to the cache entry {artifact}: {exc}') from None
        yield artifact


def ensure(artifact: Path, build: Callable[[Path], None], what: str, lock: Path | None = None) -> Path:
    """`ensured` without holding the lock afterwards: the checked (or rebuilt) artifact's path."""
    with ensured(artifact, build, what, lock) as path:
        return path
