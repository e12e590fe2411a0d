"""Every subprocess kxen starts goes through one injectable runner.

Children run in their own process group so that a Ctrl-C or SIGTERM aimed at
kxen stops the whole tree under them (rpmbuild -> make -> gcc) and leaves no
orphans; the runner waits for the group to be gone before re-raising. Each
command is started under `supervise.py`, which holds the read end of a lifeline
pipe only this process writes to: if kxen is killed outright (SIGKILL, a crash),
the lifeline breaks and the supervisor stops the group, so nothing runs on.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from kxen.errors import KxenError, MissingToolError

LineSink = Callable[[str], None]

TAIL_LINES = 400
KILL_GRACE_SECONDS = 5.0
SUPERVISOR = Path(__file__).with_name("supervise.py")


class _Lifeline:
    """This process's lifeline pipe. The write end is never written and never inherited
    across exec, so it closes exactly when this process ends (a forked child makes its
    own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0
        self._read_end = -1

    def read_end(self) -> int:
        with self._lock:
            if self._owner != os.getpid():
                self._read_end, _ = os.pipe()
                self._owner = os.getpid()
            return self._read_end


_LIFELINE = _Lifeline()


def supervised(argv: Sequence[str]) -> list[str]:
    """`argv` as the runner starts it: under the supervisor, holding the lifeline."""
    return [sys.executable, "-I", "-S", str(SUPERVISOR), str(_LIFELINE.read_end()), *argv]


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str
    """Whole output, or its last TAIL_LINES lines when it went to a log file."""
    log_path: Path | None = None
    tail: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(KxenError):
    def __init__(self, completed: Completed) -> None:
        last = completed.output.strip().splitlines()[-3:]
        super().__init__(
            f"{completed.argv[0]} exited with status {completed.returncode}",
            details=last,
        )
        self.completed = completed


class StoppedError(KxenError):
    """A command was asked for after stop_all(): it is refused, not started."""


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: LineSink | None = None,
        log_path: Path | None = None,
        stdin: IO[bytes] | None = None,
        check: bool = True,
    ) -> Completed: ...

    def stop_all(self) -> None:
        """Stop every command still running (other threads' too) and what it started;
        commands asked for afterwards are refused (StoppedError) instead of started."""


class SubprocessRunner:
    """The real runner: process group per command, merged stdout/stderr."""

    def __init__(self) -> None:
        self._live: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: LineSink | None = None,
        log_path: Path | None = None,
        stdin: IO[bytes] | None = None,
        check: bool = True,
    ) -> Completed:
        args = tuple(os.fspath(a) for a in argv)
        if cwd is not None and not cwd.is_dir():
            raise KxenError(f"{args[0]}: working directory {cwd} does not exist")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        if shutil.which(args[0], path=full_env.get("PATH", os.defpath)) is None:
            raise MissingToolError(f"{args[0]}: command not found (install it first)")
        # Started and registered under the lock: a stop_all from another thread either
        # sees this command and kills it, or came first and this one never starts.
        with self._lock:
            if self._stopped:
                raise StoppedError(f"{args[0]}: not started, the work is being stopped")
            proc = subprocess.Popen(
                supervised(args),
                cwd=cwd,
                env=full_env,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(_LIFELINE.read_end(),),
            )
            self._live.add(proc)
        try:
            lines = _pump(proc, on_line, log_path)
            proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with self._lock:
                self._live.discard(proc)
        completed = Completed(
            argv=args,
            returncode=proc.returncode,
            output="".join(lines),
            log_path=log_path,
            tail=tuple(lines),
        )
        if check and not completed.ok:
            raise CommandFailed(completed)
        return completed


def _pump(
    proc: subprocess.Popen[bytes], on_line: LineSink | None, log_path: Path | None
) -> collections.deque[str] | list[str]:
    assert proc.stdout is not None
    kept: collections.deque[str] | list[str] = (
        collections.deque(maxlen=TAIL_LINES) if log_path else []
    )
    # unbuffered: a build.log is read while the build runs (tail -f, CI, tests)
    log = log_path.open("ab", buffering=0) if log_path else None
    try:
        for raw in proc.stdout:
            if log:
                log.write(raw)
            line = raw.decode("utf-8", "replace")
            kept.append(line)
            if on_line:
                on_line(line.rstrip("\n"))
    finally:
        if log:
            log.close()
        proc.stdout.close()
    return kept


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
