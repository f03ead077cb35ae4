"""Child processes that never outlive an interrupted caller.

Every external tool fpga4ml runs (g++, make, Verilator and the simulators it builds, Yosys,
nextpnr, the vendor HLS tools) is started here in its own session, i.e. its own process group.
When the wait for it ends early (Ctrl-C raises KeyboardInterrupt; SIGTERM raises SystemExit(143)
while `sigterm_as_exit` is active, which every runner here activates; a timeout; an error in a
callback), the whole group is stopped, grandchildren such as cc1plus or yosys-abc included,
before the exception propagates, so the callers' ``finally`` blocks then remove their temporary
folders. Outputs are captured in unnamed temporary files (never pipes), so several children can
run at once without a reader thread each.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

POSIX = os.name == 'posix'
#: after the tool exits, how long its output pipe may stay open (held by something it started)
LINGER_S = 2.0


# ---------------------------------------------------------------------------- signals
def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While active, SIGTERM raises SystemExit(143) in the main thread, so cleanup code runs.

    Only when SIGTERM still has its default action (a handler of the application is left alone)
    and only on the main thread (the only one Python delivers signals to); nests freely.
    """
    usable = POSIX and threading.current_thread() is threading.main_thread()
    if not usable or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- one process group
def spawn(cmd: Sequence[str | os.PathLike], cwd: str | os.PathLike | None = None,
          env: dict[str, str] | None = None, **popen_kw) -> subprocess.Popen:
    """Start `cmd` in a new session (its own process group) with stdin closed."""
    return subprocess.Popen([os.fspath(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=POSIX, **popen_kw)


def _killpg(pgid: int, sig: int) -> None:
    if not POSIX:
        return
    # the group may be gone already (or its last members may belong to someone else now)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """End `proc` and everything in its process group, then reap it.

    grace > 0: SIGTERM first and SIGKILL what is left after `grace` seconds (for tools that clean
    up after themselves); grace 0: SIGKILL at once (compilers, whose output is thrown away).
    """
    if not POSIX:
        if proc.poll() is None:
            proc.terminate() if grace > 0 else proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(grace, 1.0))
        return
    if grace > 0:
        _killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        deadline = time.monotonic() + 0.5  # let the rest of the group finish exiting
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    _killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(max(grace, 5.0))


def _timeout_error(name: str, timeout: float) -> TimeoutError:
    return TimeoutError(f'{name} did not finish within the timeout of {timeout:g} s and was stopped')


# ---------------------------------------------------------------------------- run to completion
def run_all(cmds: Sequence[Sequence[str | os.PathLike]], cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None, timeout: float | None = None) -> list[subprocess.CompletedProcess]:
    """Run the commands at the same time and return their results, stdout and stderr as text.

    Each runs in its own process group; if the wait is interrupted or `timeout` (seconds, for all
    of them; TimeoutError) runs out, every group is killed before the exception propagates.
    """
    with contextlib.ExitStack() as files, sigterm_as_exit():
        procs: list[tuple[subprocess.Popen, object, object]] = []
        try:
            for cmd in cmds:
                out, err = (files.enter_context(tempfile.TemporaryFile()) for _ in range(2))
                procs.append((spawn(cmd, cwd, env, stdout=out, stderr=err), out, err))
            deadline = None if timeout is None else time.monotonic() + timeout
            for proc, _, _ in procs:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    proc.wait(left)
                except subprocess.TimeoutExpired:
                    raise _timeout_error(Path(proc.args[0]).name, timeout) from None
        except BaseException:
            for proc, _, _ in procs:
                stop(proc)
            raise
        for proc, _, _ in procs:  # what a finished tool left running in its group (none, normally)
            _killpg(proc.pid, signal.SIGKILL)
        return [subprocess.CompletedProcess(proc.args, proc.returncode, _text(out), _text(err))
                for proc, out, err in procs]


def _text(file) -> str:
    file.seek(0)
    return file.read().decode('utf-8', errors='replace')


def run(cmd: Sequence[str | os.PathLike], cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run one command to completion (see `run_all`): subprocess.run with the group killed on interruption."""
    return run_all([cmd], cwd, env, timeout)[0]


# ---------------------------------------------------------------------------- streamed output
def stream(cmd: Sequence[str | os.PathLike], on_line: Callable[[str], object], cwd: str | os.PathLike | None = None,
           env: dict[str, str] | None = None, timeout: float | None = None,
           on_silence: Callable[[float], object] | None = None, silence_s: float = 60.0,
           grace: float = 0.0, name: str | None = None) -> int:
    """Run `cmd` and pass each line of its merged stdout/stderr (line end removed) to `on_line` as it
    comes; return the exit status.

    `timeout` (seconds) stops it and raises TimeoutError naming `name` (default: the program);
    `on_silence(seconds)` is called after each `silence_s` without output. Anything that ends the
    wait early stops the whole process group (SIGTERM, `grace` s, SIGKILL) before it propagates.
    """
    name = name or Path(os.fspath(cmd[0])).name
    lines: queue.Queue[str | None] = queue.Queue()
    with sigterm_as_exit():
        proc = None
        try:
            proc = spawn(cmd, cwd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         encoding='utf-8', errors='replace', bufsize=1)
            reader = threading.Thread(target=_pump, args=(proc, lines), name='fpga4ml-tool-output', daemon=True)
            reader.start()
            lingered = _follow(proc, lines, on_line, timeout, on_silence, silence_s, name)
        except BaseException:
            if proc is not None:
                stop(proc, grace)
            raise
        if lingered:  # the tool exited but something it started still holds its output open
            stop(proc, grace)
        reader.join(timeout=1.0)  # a process that left the group may keep the pipe open: do not wait on it
        return proc.wait()


def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
    """Copy the child's output lines into `lines`, then None (owns proc.stdout: runs in a reader thread)."""
    try:
        for raw in proc.stdout:
            lines.put(raw.rstrip('\r\n'))
    finally:
        lines.put(None)
        proc.stdout.close()


def _follow(proc: subprocess.Popen, lines: queue.Queue, on_line: Callable[[str], object], timeout: float | None,
            on_silence: Callable[[float], object] | None, silence_s: float, name: str) -> bool:
    """Hand the output lines to `on_line` until the output ends; True when it ended because the tool
    exited LINGER_S ago while its pipe stayed open."""
    start = last_output = time.monotonic()
    exited_at = None
    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            now = time.monotonic()
            if timeout is not None and now - start > timeout:
                raise _timeout_error(name, timeout) from None
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > LINGER_S:
                    return True
            if on_silence is not None and now - last_output > silence_s:
                on_silence(now - last_output)
                last_output = now
            continue
        if line is None:
            return False
        last_output = time.monotonic()
        on_line(line)
