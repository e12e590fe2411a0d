"""report.json: a nightly in KCIDB's I/O schema (the newest version kcidb-io knows), so
that a KernelCI dashboard can take it as it is.

One checkout (the upstream tree), one build per cell (its SRPM and binary build), one
test per other step of the cell (`kxen.config-check`, `kxen.patches-check`,
`kxen.verify`, `kxen.boot.<mode>`). kxen's statuses are KCIDB's own: PASS, FAIL (the
kernel's fault), ERROR (the infrastructure's) and SKIP; a build with no build step at
all is MISS (the harness never ran it). Logs are named by their path inside the run
directory under `misc`, since the schema wants absolute URLs and a run directory has
none. Whatever a run record holds, the export is made to fit the schema (a value the
schema would refuse is left out, and kept under `misc` where it helps); `validate`
checks it with kcidb-io's own validator all the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any

import jsonschema
import kcidb_io  # type: ignore[import-untyped]

from kxen.errors import KxenError
from kxen.nightly.model import Cell, Run, Status, Step, worst
from kxen.support.text import neutralise

ORIGIN = "kxen"
BUILD_STEPS = ("srpm", "build")
"""The steps that make a cell's KCIDB build; every other step is a test of it."""
STATUSES = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.ERROR: "ERROR", Status.SKIP: "SKIP"}
NO_BUILD = "MISS"
MAX_EXCERPT = 16384
"""The schema's maxLength of a log excerpt."""
_ARCH = re.compile(r"^[a-z0-9_]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PATH_PART = re.compile(r"[^a-zA-Z0-9_-]")


class ExportError(KxenError):
    """report.json would not be valid KCIDB data: a bug in kxen, named with where."""


def schema() -> Any:
    """The KCIDB schema version report.json follows (kcidb-io's newest)."""
    return kcidb_io.schema.LATEST


def export(run: Run) -> dict[str, Any]:
    """`run` as KCIDB I/O data, checked against the schema."""
    version = schema()
    checkout = _checkout(run)
    builds, tests = [], []
    for cell in run.cells:
        build = _build(cell, checkout["id"])
        builds.append(build)
        tests += [_test(step, build["id"]) for step in cell.steps if step.name not in BUILD_STEPS]
    data = {
        "version": {"major": version.major, "minor": version.minor},
        "checkouts": [checkout],
        "builds": builds,
        "tests": tests,
    }
    validate(data)
    return data


def validate(data: object) -> None:
    """Raise ExportError unless `data` is valid for kcidb-io's newest schema."""
    if not isinstance(data, dict):
        raise ExportError(f"KCIDB data must be a JSON object, not {type(data).__name__}")
    try:
        schema().validate(data)
    except jsonschema.exceptions.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise ExportError(
            f"not valid KCIDB {schema()} data at {_text(where)}: {_text(error.message)[:300]}"
        ) from None


# --- the objects ------------------------------------------------------------------------


def _checkout(run: Run) -> dict[str, Any]:
    """The upstream tree: its commit when it came from git; otherwise (a tarball) only
    kxen's own id for it, with the tarball's digest under misc."""
    git = run.upstream.get("git")
    git = git if isinstance(git, dict) else {}
    checkout: dict[str, Any] = {
        "id": _id(run.id),
        "origin": ORIGIN,
        "comment": _text(f"Linux {run.upstream.get('version') or 'upstream'} (kxen nightly)"),
        "valid": _checkout_valid(run),
        "misc": _plain(
            {
                "run": run.id,
                "status": str(run.status),
                "key": run.key,
                "inputs": run.inputs,
                "upstream": run.upstream,
                "backend": run.backend,
                "previous": run.previous,
                "commits": run.commits,
                "changes": [dataclasses.asdict(change) for change in run.changes],
            }
        ),
    }
    commit = str(git.get("commit") or "")
    if _COMMIT.match(commit):
        checkout["git_commit_hash"] = commit
    optional = {
        "git_commit_name": git.get("describe"),
        "git_repository_branch": git.get("branch") or run.upstream.get("branch"),
        "git_repository_url": git.get("url") or run.upstream.get("url"),
        "start_time": _time(run.started),
        "origin_builds_finish_time": _time(run.finished),
    }
    checkout |= {name: _text(value) for name, value in optional.items() if value}
    if not str(checkout.get("git_repository_url", "")).startswith("https://"):
        checkout.pop("git_repository_url", None)  # the schema takes an https:// URL only
    return checkout


def _checkout_valid(run: Run) -> bool:
    """False when the downstream patches did not apply (KCIDB's own example of an invalid
    checkout); the upstream itself was had, or there would be no run."""
    checks = [cell.step("patches-check") for cell in run.cells]
    return not any(step is not None and step.status == Status.FAIL for step in checks)


def _build(cell: Cell, checkout_id: str) -> dict[str, Any]:
    steps = [step for step in cell.steps if step.name in BUILD_STEPS]
    build: dict[str, Any] = {
        "checkout_id": checkout_id,
        "id": f"{checkout_id}:{_text(cell.arch)}:{_text(cell.flavour)}",
        "origin": ORIGIN,
        "config_name": _text(cell.flavour),
        "status": STATUSES[worst([s.status for s in steps])] if steps else NO_BUILD,
        "misc": _plain(
            {
                "cell": cell.name,
                "cell_status": str(cell.status),
                "arch": cell.arch,
                "nvr": cell.nvr,
                "rpms": [{"name": rpm.name, "size": rpm.size} for rpm in cell.rpms],
                "warnings": cell.warnings,
                "ccache": _ccache(cell),
                "config_changes": cell.config_changes,
                "logs": {step.name: step.log for step in steps if step.log},
            }
        ),
    }
    if _ARCH.match(cell.arch):
        build["architecture"] = cell.arch
    if cell.nvr:
        build["comment"] = _text(cell.nvr)
    return build | _outcome(steps)


def _ccache(cell: Cell) -> dict[str, Any] | None:
    if cell.ccache is None:
        return None
    hits, misses = cell.ccache.hits, cell.ccache.misses
    return {"hits": hits, "misses": misses, "hit_rate": round(cell.ccache.hit_rate, 4)}


def _test(step: Step, build_id: str) -> dict[str, Any]:
    test: dict[str, Any] = {
        "build_id": build_id,
        "id": f"{build_id}:{_text(step.name)}",
        "origin": ORIGIN,
        "path": kcidb_path(step.name),
        "status": STATUSES[step.status],
        "misc": _plain({"step": step.name, "log": step.log}),
    }
    if step.summary:
        test["comment"] = _text(step.summary)
    return test | _outcome([step])


def kcidb_path(step: str) -> str:
    """`kxen.<step>`, a boot mode one level down (`kxen.boot.pvh`): KCIDB's dotted test
    path, every part reduced to the characters it allows."""
    parts = ["boot", step.removeprefix("boot-")] if step.startswith("boot-") else [step]
    return ".".join([ORIGIN, *(_PATH_PART.sub("_", part) or "_" for part in parts)])


def _outcome(steps: list[Step]) -> dict[str, Any]:
    """The duration of `steps` and the excerpt of the first that did not pass."""
    found: dict[str, Any] = {}
    seconds = sum(step.seconds for step in steps)
    if steps and math.isfinite(seconds) and seconds >= 0:
        found["duration"] = round(seconds, 1)
    failed = next((s for s in steps if s.status in (Status.FAIL, Status.ERROR)), None)
    if failed is not None and failed.excerpt:
        excerpt = "\n".join(_text(line) for line in failed.excerpt) + "\n"
        found["log_excerpt"] = excerpt[:MAX_EXCERPT]
    return found


# --- values the schema takes ------------------------------------------------------------


def _id(run_id: str) -> str:
    return f"{ORIGIN}:{_text(run_id)}"


def _text(value: object) -> str:
    """A string without control characters (the schema refuses NUL in every one)."""
    return neutralise(str(value))


def _time(value: str) -> str | None:
    """An RFC 3339 date-time, or None for what is not one (a naive time is UTC)."""
    try:
        when = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat()


def _plain(value: object) -> Any:
    """JSON data with every string neutralised, every key a string and no null (KCIDB
    leaves out what is not known): misc is free-form, but report.json is read by other
    tools."""
    if isinstance(value, dict):
        return {_text(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return _text(value)
