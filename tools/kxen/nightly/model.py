"""What a nightly run is, as data: the report, the history, the KCIDB export and the
notifications are all written from these records (and read back from run.json).

A run builds one upstream commit (or tarball) for a matrix of arch-by-flavour cells; each
cell goes through the same steps, and each step ends PASS, FAIL (the kernel's fault),
ERROR (the infrastructure's: a missing tool, a full disk, a hub away) or SKIP (an earlier
step of the cell did not pass, or the step does not apply).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"


# Worst first: what a cell or a run shows when its steps disagree.
SEVERITY = (Status.FAIL, Status.ERROR, Status.PASS, Status.SKIP)

STEPS = ("config-check", "patches-check", "srpm", "build", "verify", "boot")
"""The steps of every cell, in order; `boot` runs once per boot mode (`boot-pv`, ...)."""


def worst(statuses: list[Status]) -> Status:
    """FAIL over ERROR over PASS; SKIP only if nothing ran."""
    return next((s for s in SEVERITY if s in statuses), Status.SKIP)


@dataclass
class Step:
    name: str
    """One of STEPS, or `boot-<mode>`."""
    status: Status
    seconds: float = 0.0
    log: str | None = None
    """The step's log, relative to the run directory."""
    summary: str = ""
    """One line: what happened (the error message when it did not pass)."""
    excerpt: list[str] = field(default_factory=list)
    """The first error lines, when it did not pass."""


@dataclass
class Rpm:
    name: str
    """The package file name."""
    size: int


@dataclass
class Ccache:
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass
class Cell:
    arch: str
    flavour: str
    steps: list[Step] = field(default_factory=list)
    nvr: str | None = None
    rpms: list[Rpm] = field(default_factory=list)
    warnings: int = 0
    """Compiler warnings in the build log."""
    ccache: Ccache | None = None
    config_changes: list[str] = field(default_factory=list)
    """`CONFIG_X: old -> new` for every symbol new or changed since the previous run."""

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.flavour}"

    @property
    def status(self) -> Status:
        return worst([step.status for step in self.steps])

    def step(self, name: str) -> Step | None:
        return next((step for step in self.steps if step.name == name), None)

    @property
    def failure(self) -> Step | None:
        """The first step that did not pass (FAIL or ERROR)."""
        return next((s for s in self.steps if s.status in (Status.FAIL, Status.ERROR)), None)


@dataclass
class Change:
    """A cell whose verdict changed since the previous good run."""

    cell: str
    """`arch/flavour`."""
    kind: str
    """`regression` (passed there, fails here) or `recovery` (failed there, passes here)."""
    step: str
    """The step that now fails (regression) or that failed before (recovery)."""
    excerpt: list[str] = field(default_factory=list)


@dataclass
class Run:
    id: str
    """`<UTC date-time>-<short commit>` (`20261130T020000Z-1a2b3c4d`), or `-<digest>` for a
    tarball: the directory name under results/nightly/."""
    started: str
    """ISO 8601, UTC."""
    finished: str = ""
    key: str = ""
    """The digest of every input (see `kxen.nightly.key`): equal keys, equal builds."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Each input's own digest, so that a report can say what changed."""
    upstream: dict[str, Any] = field(default_factory=dict)
    """Origin, commit, describe, version, tarball digest (Upstream.describe())."""
    backend: str = "local"
    cells: list[Cell] = field(default_factory=list)
    previous: str | None = None
    """The run compared with: the newest earlier run that passed every cell it shares."""
    commits: list[str] = field(default_factory=list)
    """`git log --oneline previous..this` (newest first)."""
    changes: list[Change] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    """What became of each notification (`delivered to ...`, `not delivered: ...`)."""

    @property
    def status(self) -> Status:
        return worst([cell.status for cell in self.cells])

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "regression"]

    @property
    def recoveries(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "recovery"]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        for cell, raw in zip(self.cells, data["cells"], strict=True):
            raw["status"] = str(cell.status)
        return data


def run_from_dict(data: dict[str, Any]) -> Run:
    """A Run as run.json holds it (the derived `status` fields are recomputed)."""
    cells = [
        Cell(
            arch=raw["arch"],
            flavour=raw["flavour"],
            steps=[Step(**{**step, "status": Status(step["status"])}) for step in raw["steps"]],
            nvr=raw.get("nvr"),
            rpms=[Rpm(**rpm) for rpm in raw.get("rpms", [])],
            warnings=raw.get("warnings", 0),
            ccache=Ccache(**raw["ccache"]) if raw.get("ccache") else None,
            config_changes=raw.get("config_changes", []),
        )
        for raw in data.get("cells", [])
    ]
    fields = {k: v for k, v in data.items() if k not in ("cells", "changes", "status")}
    changes = [Change(**change) for change in data.get("changes", [])]
    return Run(**fields, cells=cells, changes=changes)
