"""The contract every build backend honours: local rpmbuild, mock and koji alike.

A backend is started on a source, normally an SRPM, and the arches to build, and
hands back a `Run`. The run tells its NVR first (a koji build from an SCM URL knows
it only once the hub made the SRPM), then the SRPM, then yields each arch as it is
ready to be collected: local and mock build it in `ArchBuild.collect`, koji has built
it already and `collect` downloads it. `collect` leaves RPMs and logs in the staging
directory it is given; locking `results/<nvr>/`, staging, publishing and reporting
are `pipeline`'s job, so every backend shares that layout and its guarantees.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kxen.build.ccache import Stats
from kxen.errors import InputError
from kxen.support.fsutil import Reclaimed
from kxen.support.progress import Progress
from kxen.support.runner import Runner
from kxen.support.text import neutralise

BUILD_LOCALE = {"LC_ALL": "C", "LANG": "C", "LC_CTYPE": "C", "LC_MESSAGES": "C"}
"""The environment of the builds kxen runs: compilers speak English with ASCII quotes
whatever the user's locale, so `first_errors` finds their errors and a build log reads
the same on every machine. kbuild unexports LC_ALL, hence LANG and the two categories
diagnostics depend on as well. (mock gives its build root the LANG of its config.)"""


@dataclass(frozen=True)
class BuildRequest:
    """One arch of a local SRPM, built into `staging` (local and mock backends)."""

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
    """The log that explains a failure first."""
    error: str = ""
    error_lines: list[str] = field(default_factory=list)
    ccache: Stats | None = None
    """Hits and misses of the compiles, when the build went through ccache."""


@dataclass(frozen=True)
class Scm:
    """A koji release build's source: `git+https://...#<commit>`, checked out by the hub."""

    url: str


@dataclass(frozen=True)
class Task:
    """A build task already on a koji hub (`kxen koji download`)."""

    id: int


Source = Path | Scm | Task
"""What a backend is started on: a local SRPM (every backend), or for koji an SCM URL
or an existing task."""


@dataclass(frozen=True)
class ArchBuild:
    """One arch of a run, ready to be collected into a staging directory."""

    arch: str
    collect: Callable[[Path, Progress], ArchResult]
    """Fill the staging directory (RPMs, logs); say how it went."""
    doing: str = "build"
    """What `collect` does, for progress: "build" (local, mock) or "download" (koji)."""
    record: dict[str, Any] = field(default_factory=dict)
    """What kxen-result.json says of this arch beyond the run's record (koji: its task)."""


class Run(Protocol):
    """One source being built for its arches by one backend."""

    record: dict[str, Any]
    """Where the build runs (koji: hub, task id, source), for kxen-result.json and reports."""

    def nvr(self) -> str:
        """The NVR of what is built; may wait until a remote builder made the SRPM."""

    def srpm(self, into: Path) -> Path:
        """The SRPM as a local file, fetched into `into` if it is remote (once per run)."""

    def arches(self) -> Generator[ArchBuild, None, None]:
        """Each arch as it is ready to be collected (koji: as the hub finishes it). The
        caller stops iterating at the first failure; what was not yielded is not built."""


class Backend(Protocol):
    name: str
    jobs: int
    """How many arches pipeline collects at once (each in its own staging directory)."""

    def check_host(self, arches: list[str]) -> None:
        """Raise before any work starts if this backend cannot build here (MissingToolError,
        NoSpaceError; koji: the login, the target and the package list)."""

    def reclaim(self) -> list[Reclaimed]:
        """Remove the build areas of runs that were killed (their holder is gone)."""

    def start(self, source: Source, arches: list[str], progress: Progress) -> Run:
        """Start building `source` for `arches` (empty: every arch the source builds for)."""

    def stop(self) -> None:
        """Stop every process the backend's runs started (other threads' too): Ctrl-C."""


class RunnerBackend:
    """What the local and mock backends share: a local SRPM built arch by arch by
    processes of their runner."""

    name: str
    runner: Runner

    def build(self, request: BuildRequest, progress: Progress) -> ArchResult:
        raise NotImplementedError

    def start(self, source: Source, arches: list[str], progress: Progress) -> Run:
        if not isinstance(source, Path):
            raise InputError(f"the {self.name} backend builds a local SRPM, not {source}")
        return SrpmRun(source, arches, self.build)

    def stop(self) -> None:
        self.runner.stop_all()


class SrpmRun:
    """A local SRPM, each arch built when it is collected."""

    def __init__(
        self,
        srpm: Path,
        arches: list[str],
        build: Callable[[BuildRequest, Progress], ArchResult],
    ) -> None:
        self.record: dict[str, Any] = {}
        self._srpm = srpm
        self._arches = arches
        self._build = build

    def nvr(self) -> str:
        return self._srpm.name.removesuffix(".src.rpm")

    def srpm(self, into: Path) -> Path:
        return self._srpm

    def arches(self) -> Generator[ArchBuild, None, None]:
        for arch in self._arches:
            yield ArchBuild(arch, functools.partial(self._collect, arch))

    def _collect(self, arch: str, staging: Path, progress: Progress) -> ArchResult:
        return self._build(BuildRequest(self._srpm, arch, staging), progress)


_COMPILER_ERROR = re.compile(
    r"(: (fatal )?error: |^ERROR: |\*\*\* \[|undefined reference to"
    r"|^Hunk #\d+ FAILED|can't find file to patch|malformed patch)"
)


def first_errors(lines: list[str], limit: int = 8) -> list[str]:
    """The first compiler/linker/make error lines of a build log, with a little context."""
    for index, line in enumerate(lines):
        if _COMPILER_ERROR.search(line):
            return [neutralise(item.rstrip("\n")) for item in lines[index : index + limit]]
    return [neutralise(item.rstrip("\n")) for item in lines[-limit:]]
