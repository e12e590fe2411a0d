"""Every subprocess kxen starts goes through one injectable runner.

Children run in their own process group, so that stopping a command stops the whole
tree under it (rpmbuild -> make -> gcc) and leaves no orphans; the runner waits for the
group to be gone. One command can be stopped on its own (`Running.stop()`, or its
timeout) while the runner goes on; `stop_all()` is for signals (Ctrl-C, SIGTERM): every
command stops and none starts afterwards.

Each command is started under `supervise.py`, which holds the read end of a lifeline
pipe only this process writes to: if kxen is killed outright (SIGKILL, a crash), the
lifeline breaks and the supervisor stops the group, so nothing runs on. A `quick`
command (sub-second and many, like Kconfig's toolchain probes) skips the supervisor and
its ~17 ms; it still gets a group of its own and a timeout, but if kxen is killed
outright it is left to end by itself.

When a command has a log, its command line goes there first (`$ cd DIR && VAR=value
argv...`, quoted so that it can be pasted into a shell), then its output.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, TypedDict, Unpack

from kxen.errors import KxenError, MissingToolError

LineSink = Callable[[str], None]
Argv = Sequence[str | os.PathLike[str]]

TAIL_LINES = 400
KILL_GRACE_SECONDS = 5.0
QUICK_TIMEOUT_SECONDS = 60.0
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


def command_line(argv: Sequence[str], cwd: Path | None, env: Mapping[str, str]) -> str:
    """`cd CWD && VAR=value ARGV...`, quoted for a POSIX shell: what the log shows, and
    what runs the command again when pasted. `env`: what it gets beyond kxen's own."""
    words = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    words += [shlex.quote(arg) for arg in argv]
    return f"cd {shlex.quote(str(cwd or Path.cwd()))} && {' '.join(words)}"


class StreamOptions(TypedDict, total=False):
    """How a command is started (every key may be left out)."""

    cwd: Path | None
    env: Mapping[str, str] | None
    """Added to kxen's environment."""
    stdin: IO[bytes] | None
    """Default /dev/null. A stream()'s `stdout` here pipes one command into the other."""
    timeout: float | None
    """Seconds; then the command and its group are stopped (Completed.timed_out)."""
    quick: bool
    """A short command, one of many: started without the supervisor, and with a
    timeout of QUICK_TIMEOUT_SECONDS unless it has one."""


class OutputOptions(TypedDict, total=False):
    """What becomes of the output of a command the runner reads."""

    on_line: LineSink | None
    """Called with each output line (without its newline) as it comes."""
    log_path: Path | None
    """Appended to: the command line, then all output (Completed keeps the tail)."""
    separate_stderr: bool
    """Keep stderr apart (Completed.stderr) instead of merged into the output."""


class RunOptions(StreamOptions, OutputOptions, total=False):
    """How a command whose output the runner reads is started and read."""


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str
    """Whole output, or its last TAIL_LINES lines when it went to a log file."""
    log_path: Path | None = None
    tail: tuple[str, ...] = field(default=())
    stderr: str = ""
    """With separate_stderr, and for stream()s: what the command wrote to stderr."""
    timed_out: bool = False
    stopped: bool = False
    """Stopped by the runner (stop(), stop_all() or the timeout) before it ended."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(KxenError):
    def __init__(self, completed: Completed, message: str | None = None) -> None:
        last = completed.output.strip().splitlines()[-3:]
        super().__init__(
            message or f"{completed.argv[0]} exited with status {completed.returncode}",
            details=last,
        )
        self.completed = completed


class CommandTimedOut(CommandFailed):
    def __init__(self, completed: Completed, timeout: float) -> None:
        super().__init__(
            completed, f"{completed.argv[0]} did not end within {timeout:g}s and was stopped"
        )


class StoppedError(KxenError):
    """A command was asked for after stop_all(): it is refused, not started."""


class Runner(Protocol):
    def run(self, argv: Argv, *, check: bool = True, **options: Unpack[RunOptions]) -> Completed:
        """Start the command and wait for it; with `check`, a failure raises CommandFailed."""

    def start(self, argv: Argv, **options: Unpack[RunOptions]) -> Running:
        """Start the command, its output read meanwhile; `stop()` or `wait()` for it."""

    def stream(self, argv: Argv, **options: Unpack[StreamOptions]) -> Running:
        """Start the command with its stdout for the caller to read (`Running.stdout`);
        stderr is kept apart. Use it in a `with` block: it is stopped when the block ends."""

    def stop_all(self) -> None:
        """Stop every command still running (other threads' too) and what it started;
        commands asked for afterwards are refused (StoppedError) instead of started."""


@dataclass(frozen=True)
class _Plan:
    """One command as asked for: what to run, where, and what becomes of its output."""

    argv: tuple[str, ...]
    options: StreamOptions
    output: OutputOptions
    env: dict[str, str]
    timeout: float | None
    streamed: bool
    """stdout is the caller's to read, stderr kept apart."""
    background: bool
    """The output is read from the start, in a thread, not by wait()."""

    @classmethod
    def of(
        cls,
        argv: Argv,
        options: StreamOptions,
        output: OutputOptions,
        *,
        streamed: bool = False,
        background: bool = False,
    ) -> _Plan:
        args = tuple(os.fspath(a) for a in argv)
        timeout = options.get("timeout")
        if timeout is None and options.get("quick"):
            timeout = QUICK_TIMEOUT_SECONDS
        env = {**os.environ, **(options.get("env") or {})}
        return cls(args, options, output, env, timeout, streamed, background)

    @property
    def cwd(self) -> Path | None:
        return self.options.get("cwd")

    @property
    def log_path(self) -> Path | None:
        return self.output.get("log_path")

    def stderr_file(self) -> IO[bytes] | None:
        """Where stderr kept apart goes (read back when the command has ended); None when
        it is merged into stdout."""
        apart = self.streamed or self.output.get("separate_stderr", False)
        return tempfile.TemporaryFile() if apart else None

    def check_startable(self) -> None:
        cwd = self.cwd
        if cwd is not None and not cwd.is_dir():
            raise KxenError(f"{self.argv[0]}: working directory {cwd} does not exist")
        if shutil.which(self.argv[0], path=self.env.get("PATH", os.defpath)) is None:
            raise MissingToolError(f"{self.argv[0]}: command not found (install it first)")

    def log_command_line(self) -> None:
        if self.log_path is None:
            return
        added = {k: v for k, v in (self.options.get("env") or {}).items() if os.environ.get(k) != v}
        with self.log_path.open("ab") as log:
            log.write(f"$ {command_line(self.argv, self.cwd, added)}\n".encode())

    def popen(self, stderr: IO[bytes] | None) -> subprocess.Popen[bytes]:
        quick = self.options.get("quick", False)
        stdin = self.options.get("stdin")
        try:
            return subprocess.Popen(
                list(self.argv) if quick else supervised(self.argv),
                cwd=self.cwd,
                env=self.env,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr if stderr is not None else subprocess.STDOUT,
                start_new_session=True,
                pass_fds=() if quick else (_LIFELINE.read_end(),),
            )
        except OSError as exc:  # only a quick command is exec'd here, not by the supervisor
            raise KxenError(f"{self.argv[0]}: cannot be started ({exc.strerror})") from None


class _Background:
    """A function run in a thread of its own; its result (or exception) kept for later."""

    def __init__(self, work: Callable[[], Sequence[str]], name: str) -> None:
        self._work = work
        self._result: Sequence[str] = ()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as exc:  # re-raised by result(), in the thread that waits
            self._error = exc

    def done_within(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()

    def result(self) -> Sequence[str]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


class Running:
    """A started command: `wait()` for its Completed, or `stop()` it (and its group)
    alone. As a context manager it is stopped and waited for however the block ends."""

    def __init__(
        self,
        plan: _Plan,
        proc: subprocess.Popen[bytes],
        stderr: IO[bytes] | None,
        forget: Callable[[Running], None],
    ) -> None:
        self.argv = plan.argv
        self._plan = plan
        self._proc = proc
        self._stderr = stderr
        self._forget = forget
        self._reader: _Background | None = None
        self._stopped = False
        self._timed_out = False
        self._ended = False
        self._completed: Completed | None = None
        if plan.timeout is not None:
            _WATCHDOG.watch(self, plan.timeout)
        if plan.background:
            self._reader = _Background(self._read_output, name=f"output of {self.argv[0]}")

    @property
    def stdout(self) -> IO[bytes]:
        """A stream()'s output, for the caller to read or to give another command as stdin."""
        assert self._plan.streamed
        return self._pipe()

    def stop(self) -> None:
        """Stop this command and everything in its group (SIGTERM, then SIGKILL after
        KILL_GRACE_SECONDS); the runner and its other commands go on."""
        if self._completed is not None:
            return
        self._stopped = self._stopped or self._proc.poll() is None
        _kill_group(self._proc)

    def ended_within(self, seconds: float) -> bool:
        """Whether the command ended (and its output was read) within `seconds`."""
        deadline = time.monotonic() + seconds
        if self._reader is not None and not self._reader.done_within(seconds):
            return False
        try:
            self._proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def wait(self, check: bool = True) -> Completed:
        """Its Completed, once it has ended; with `check`, CommandFailed (CommandTimedOut)
        unless it succeeded. For a stream(), the caller's end of stdout is closed first,
        so a command whose output was not read to the end is not left blocked."""
        if self._completed is None:
            self._completed = self._finish()
        completed = self._completed
        if check and completed.timed_out and self._plan.timeout is not None:
            raise CommandTimedOut(completed, self._plan.timeout)
        if check and not completed.ok:
            raise CommandFailed(completed)
        return completed

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if not self._ended:
            self.wait(check=False)

    def _finish(self) -> Completed:
        try:
            lines = self._collect_output()
            self._pipe().close()
            self._proc.wait()
        except BaseException:
            self.stop()
            raise
        finally:
            self._ended = True
            self._forget(self)
        return Completed(
            argv=self.argv,
            returncode=self._proc.returncode,
            output="".join(lines),
            log_path=self._plan.log_path,
            tail=tuple(lines),
            stderr=self._read_stderr(),
            timed_out=self._timed_out,
            stopped=self._stopped,
        )

    def _collect_output(self) -> Sequence[str]:
        if self._plan.streamed:
            return ()
        if self._reader is not None:
            return self._reader.result()
        return self._read_output()

    def _read_output(self) -> Sequence[str]:
        log_path, on_line = self._plan.log_path, self._plan.output.get("on_line")
        kept: collections.deque[str] | list[str] = (
            collections.deque(maxlen=TAIL_LINES) if log_path else []
        )
        # unbuffered: a build.log is read while the build runs (tail -f, CI, tests)
        log = log_path.open("ab", buffering=0) if log_path else None
        try:
            for raw in self._pipe():
                if log:
                    log.write(raw)
                line = raw.decode("utf-8", "replace")
                kept.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
        finally:
            if log:
                log.close()
        return kept

    def _pipe(self) -> IO[bytes]:
        assert self._proc.stdout is not None
        return self._proc.stdout

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        with self._stderr:
            self._stderr.seek(0)
            data = self._stderr.read()
        if data and self._plan.log_path is not None:
            with self._plan.log_path.open("ab") as log:
                log.write(data)
        return data.decode("utf-8", "replace")

    def _expire(self) -> None:
        if not self._ended and self._proc.poll() is None:
            self._timed_out = True
            self.stop()


class _Watchdog:
    """One thread for the whole process that stops each command past its timeout (a
    thread per command would cost a quick command more than it takes to run)."""

    def __init__(self) -> None:
        self._reset()
        # a forked child has none of this thread, and maybe its lock taken
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._wakeup = threading.Condition()
        self._due: list[tuple[float, int, Running]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, running: Running, seconds: float) -> None:
        with self._wakeup:
            entry = (time.monotonic() + seconds, next(self._order), running)
            heapq.heappush(self._due, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="timeouts", daemon=True)
                self._thread.start()
            if self._due[0] is entry:  # else the thread wakes up earlier anyway
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            for running in self._next_overdue():
                if not running._ended:
                    # stopping takes up to the kill grace: the others must not wait for it
                    threading.Thread(target=running._expire, daemon=True).start()

    def _next_overdue(self) -> list[Running]:
        with self._wakeup:
            while not self._due or self._due[0][0] > time.monotonic():
                self._wakeup.wait(self._due[0][0] - time.monotonic() if self._due else None)
            now = time.monotonic()
            overdue = []
            while self._due and self._due[0][0] <= now:
                overdue.append(heapq.heappop(self._due)[2])
            return overdue


_WATCHDOG = _Watchdog()


class SubprocessRunner:
    """The real runner: a process group per command, stdout and stderr merged unless asked."""

    def __init__(self) -> None:
        self._live: set[Running] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for running in live:
            running.stop()

    def run(self, argv: Argv, *, check: bool = True, **options: Unpack[RunOptions]) -> Completed:
        return self._start(_Plan.of(argv, options, options)).wait(check)

    def start(self, argv: Argv, **options: Unpack[RunOptions]) -> Running:
        return self._start(_Plan.of(argv, options, options, background=True))

    def stream(self, argv: Argv, **options: Unpack[StreamOptions]) -> Running:
        return self._start(_Plan.of(argv, options, {}, streamed=True))

    def _start(self, plan: _Plan) -> Running:
        plan.check_startable()
        plan.log_command_line()
        # Started and registered under the lock: a stop_all from another thread either
        # sees this command and stops it, or came first and this one never starts.
        with self._lock:
            if self._stopped:
                raise StoppedError(f"{plan.argv[0]}: not started, the work is being stopped")
            stderr = plan.stderr_file()
            running = Running(plan, plan.popen(stderr), stderr, self._forget)
            self._live.add(running)
        return running

    def _forget(self, running: Running) -> None:
        with self._lock:
            self._live.discard(running)


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
            time.sleep(0.01)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
