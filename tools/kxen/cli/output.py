"""How kxen talks to its user: progress on stderr (live on a terminal, phase lines in a
log), the --json summary on stdout, and one exit code per error class. Every line it
prints is neutralised (no control characters, no rich markup or emoji codes)."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kxen.errors import Interrupted, KxenError
from kxen.support.text import neutralise

if TYPE_CHECKING:  # rich, the project and the runner are imported when a command runs
    from rich.console import Console

    from kxen.project import Project

F = TypeVar("F", bound=Callable[..., Any])

MESSAGE_LIMIT = 2000
"""Characters of one message line shown (a hostile input must not print megabytes)."""
DETAILS_LIMIT = 200


@functools.cache
def stderr() -> Console:
    """The console kxen's messages go to. Nothing kxen prints is rich markup or an emoji
    shortcode: a path with `[bold]` or `:x:` in it is shown as it is."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


class TerminalProgress:
    """Phase, current step and elapsed time: live on a terminal, phase lines in a CI log."""

    def __init__(self, console: Console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = console.is_terminal
        self.started = time.monotonic()
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[phase]}", style="bold", markup=False),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("", phase="", total=None)
        self.warnings: list[str] = []
        self._phase = ""
        self._phase_started = self.started

    def __enter__(self) -> TerminalProgress:
        if self.live:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._bar.stop()

    def phase(self, name: str, detail: str = "") -> None:
        if name == self._phase and not detail:
            return
        now = time.monotonic()
        if self.live and self._phase:
            took = now - self._phase_started
            from rich.text import Text

            self.console.print(Text.assemble(("done", "green"), f" {self._phase} ({took:.1f}s)"))
        self._phase, self._phase_started = neutralise(name), now
        self._bar.update(self._task, phase=self._phase, description=neutralise(detail))
        if not self.live:
            line = f"[{self._elapsed():7.1f}s] {self._phase} {neutralise(detail)}".rstrip()
            self.console.print(line)

    def step(self, text: str) -> None:
        self._bar.update(self._task, description=neutralise(text)[:100])

    def transfer(self, name: str, done: int, total: int | None) -> None:
        size = f"{done >> 20} MiB" + (f" of {total >> 20} MiB" if total else "")
        self._bar.update(self._task, description=f"{neutralise(name)}: {size}")

    def notice(self, text: str) -> None:
        line = f"{self._phase}: {capped(neutralise(text))}"
        self.console.print(line if self.live else f"[{self._elapsed():7.1f}s] {line}")

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.console.print(f"kxen: warning: {capped(neutralise(message))}")


@dataclasses.dataclass
class Options:
    repo: Path
    cache: Path
    as_json: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)
    """What the command warned about (also on stderr): repeated in the --json summary."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def open_progress(options: Options) -> Iterator[TerminalProgress]:
    """Progress on stderr whose warnings also reach the --json summary."""
    with TerminalProgress(stderr()) as progress:
        progress.warnings = options.warnings
        yield progress


@contextmanager
def open_project(options: Options) -> Iterator[Project]:
    from kxen.project import Project
    from kxen.support.runner import SubprocessRunner

    with open_progress(options) as progress:
        yield Project(options.repo, options.cache, SubprocessRunner(), progress)


def emit(options: Options, data: dict[str, Any], human: Callable[[], None]) -> None:
    if options.as_json:
        if options.warnings:
            data = {**data, "warnings": options.warnings}
        click.echo(json.dumps({"ok": True, **data}, indent=2, sort_keys=True, default=str))
    else:
        human()


def echo_lines(lines: Iterable[str]) -> Callable[[], None]:
    kept = list(lines)

    def echo() -> None:
        for text in kept:
            for line in text.split("\n"):  # some items are whole paragraphs (explain)
                click.echo(neutralise(line))

    return echo


def capped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def fail(options: Options, error: KxenError, extra: dict[str, Any] | None = None) -> None:
    message = capped(error.message)
    details = [capped(line) for line in error.details[:DETAILS_LIMIT]]
    if len(error.details) > DETAILS_LIMIT:
        details.append(f"... ({len(error.details) - DETAILS_LIMIT} more lines)")
    if options.as_json:
        payload = {
            "ok": False,
            "exit_code": int(error.exit_code),
            "error": message,
            "details": details,
            **({"warnings": options.warnings} if options.warnings else {}),
            **(extra or {}),
        }
        click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
    console = stderr()
    console.print(f"kxen: error: {neutralise(message)}")
    for line in details:
        console.print(f"  {neutralise(line)}")
    sys.exit(int(error.exit_code))


def _os_failure(exc: OSError) -> KxenError:
    """An OSError no library code turned into a KxenError: still one line and an exit
    code (10 disk full, 8 not writable), never a traceback."""
    from kxen.support import fsutil

    where = Path(os.fsdecode(exc.filename)) if exc.filename else Path("?")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        return fsutil.write_error(where, exc, "failed")
    return KxenError(f"{where}: {exc.strerror or exc}")


def _unexpected(options: Options, exc: Exception) -> KxenError:
    """A bug in kxen: one line for the user, the traceback kept in a file for the report."""
    from kxen.support import fsutil

    text = "".join(traceback.format_exception(exc))
    try:
        path = options.cache / "crash" / f"kxen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        fsutil.atomic_write_text(path, text)
        where = f"traceback in {path}"
    except KxenError:
        where = "traceback: " + text.strip().splitlines()[-1]
    message = f"unexpected failure inside kxen: {type(exc).__name__}: {exc}"
    return KxenError(message, details=[where])


def command(group: click.Group, name: str | None = None) -> Callable[[F], click.Command]:
    """A subcommand with --json whose KxenErrors become exit codes."""

    def decorate(func: F) -> click.Command:
        @functools.wraps(func)
        def wrapper(options: Options, as_json: bool, **kwargs: Any) -> None:
            options.as_json = as_json
            signal.signal(signal.SIGTERM, _on_sigterm)
            signal.signal(signal.SIGHUP, _on_sigterm)
            try:
                func(options, **kwargs)
            except KeyboardInterrupt:
                fail(options, Interrupted(signal.SIGINT))
            except KxenError as error:
                report = getattr(error, "report", None)
                extra = {"report": dataclasses.asdict(report)} if report else None
                extra = getattr(error, "payload", None) or extra
                fail(options, error, extra)
            except OSError as exc:
                fail(options, _os_failure(exc))
            except Exception as exc:
                fail(options, _unexpected(options, exc))

        with_json = click.option(
            "--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."
        )(wrapper)
        command_name = name or func.__name__.replace("_", "-")
        return group.command(name=command_name)(click.pass_obj(with_json))

    return decorate
