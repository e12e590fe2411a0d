"""The contract every build backend honours.

A backend turns one SRPM into binary RPMs for one arch and leaves them, with
its logs, in the staging directory it is given; publishing the staging
directory as `results/<nvr>/<arch>/` is the caller's job, so every backend
shares that layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kxen.support.fsutil import Reclaimed
from kxen.support.progress import Progress


@dataclass(frozen=True)
class BuildRequest:
    srpm: Path
    arch: str
    staging: Path


@dataclass
class ArchResult:
    arch: str
    ok: bool
    seconds: float
    rpms: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    error: str = ""
    error_lines: list[str] = field(default_factory=list)


class Backend(Protocol):
    """A backend may also have `jobs: int`, how many arches pipeline.build_arches may build
    at once (concurrent builds each get their own staging dir); without it, one at a time."""

    name: str

    def check_host(self, arches: list[str]) -> None:
        """Raise MissingToolError before any work starts if the host cannot build."""

    def reclaim(self) -> list[Reclaimed]:
        """Remove the build areas of runs that were killed (their holder is gone)."""

    def build(self, request: BuildRequest, progress: Progress) -> ArchResult: ...


_COMPILER_ERROR = re.compile(
    r"(: (fatal )?error: |^ERROR: |\*\*\* \[|undefined reference to"
    r"|^Hunk #\d+ FAILED|can't find file to patch|malformed patch)"
)
# A CSI or OSC escape sequence as one unit, or any single C0/C1 control character (tab
# aside) or Unicode bidirectional override, which can reorder what a terminal shows.
_CONTROL = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def neutralise(line: str) -> str:
    """Make a line safe to show on a terminal: every escape sequence and control
    character (line breaks included) becomes `?`."""
    return _CONTROL.sub("?", line)


def first_errors(lines: list[str], limit: int = 8) -> list[str]:
    """The first compiler/linker/make error lines of a build log, with a little context."""
    for index, line in enumerate(lines):
        if _COMPILER_ERROR.search(line):
            return [neutralise(item.rstrip("\n")) for item in lines[index : index + limit]]
    return [neutralise(item.rstrip("\n")) for item in lines[-limit:]]
