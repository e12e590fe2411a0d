"""rpmlint with the repository's own filters (`kernel-xen.rpmlintrc`), as fedpkg lint does."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import KxenError
from kxen.support import inputs
from kxen.support.runner import Runner

_SUMMARY = re.compile(r"(\d+) errors?, (\d+) warnings?")


@dataclass(frozen=True)
class LintResult:
    errors: int
    warnings: int
    lines: tuple[str, ...]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.lines if ": E: " in line]


def rpmlint(
    paths: Iterable[Path], rpmlintrc: Path, runner: Runner, *, ignore_unused: bool = False
) -> LintResult:
    """`ignore_unused`: filters meant for other kinds of input (a spec's, a binary
    package's) are not reported as unused."""
    argv: list[str | Path] = ["rpmlint"]
    if ignore_unused:
        argv.append("--ignore-unused-rpmlintrc")
    if rpmlintrc.is_file():
        argv += ["-r", inputs.contained(rpmlintrc, rpmlintrc.parent)]
    result = runner.run([*argv, *paths], check=False)
    summary = _SUMMARY.search(result.output)
    if summary is None:
        raise KxenError("rpmlint did not report a summary", details=result.output.splitlines()[-5:])
    lines = tuple(line for line in result.output.splitlines() if re.search(r": [EW]: ", line))
    return LintResult(int(summary[1]), int(summary[2]), lines)
