"""kxen.cli.output.TerminalProgress: what a CI log (no terminal) and a terminal show."""

from __future__ import annotations

import io
import re

from kxen.cli.output import TerminalProgress
from rich.console import Console


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=200, highlight=False), out


def test_a_ci_log_gets_phases_and_notices_but_not_steps() -> None:
    log, out = console(terminal=False)
    with TerminalProgress(log) as progress:
        progress.phase("watch", "task 7")
        progress.step("buildArch open")
        progress.notice("getTaskInfo: cannot reach the hub\x1b[2J; retrying in 4s")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[ *\d+\.\ds\] watch task 7", lines[0])
    assert re.fullmatch(
        r"\[ *\d+\.\ds\] watch: getTaskInfo: cannot reach the hub\?; retrying in 4s", lines[1]
    )
    assert "\x1b" not in out.getvalue()


def test_a_terminal_gets_the_notice_above_the_live_display() -> None:
    terminal, out = console(terminal=True)
    with TerminalProgress(terminal) as progress:
        progress.phase("upload", "x.src.rpm")
        progress.notice("uploadFile: the hub dropped the connection; retrying in 2s")
    assert "upload: uploadFile: the hub dropped the connection; retrying in 2s" in out.getvalue()
