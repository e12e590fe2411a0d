"""`kxen nightly`: one run, from the upstream commit to the report and the notifications.

Skipped (Unchanged, exit 3) when a completed run had the same key. Otherwise the matrix
is built in a staging directory, compared with the runs before it, written (run.json,
report.html, report.json) and renamed into `results/nightly/<run>/`; the RPMs of the
cells that passed go into the dnf repository `results/nightly/repo/`; the run goes into
the history; those who asked are told about regressions, failures and recoveries; and
runs beyond `--keep` are pruned. One nightly at a time per results root (exit 7).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kxen.build.backends.base import Backend
from kxen.errors import ExitCode, KxenError
from kxen.nightly import history, key
from kxen.nightly.model import Run, Status
from kxen.project import GitSnapshot, Project, UpstreamChoice, resolve_upstream
from kxen.support import fsutil
from kxen.support.fsutil import atomic_write_text, exclusive_lock, scratch_dir
from kxen.upstream.origin import Upstream

NIGHTLY_DIR = "nightly"
RUN_RECORD = "run.json"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


class Unchanged(KxenError):
    """Every input equals a completed run's: nothing is built (exit 3 for `kxen nightly`)."""

    exit_code = ExitCode.SOURCE_VERIFY  # 3: what CI scripts read as "skipped"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"unchanged since run {run_id}: nothing to build")
        self.run_id = run_id
        self.payload = {"skipped": True, "run": run_id}


class NightlyError(KxenError):
    """The nightly could not start (its upstream could not be had): exit 1, nothing run."""


@dataclass(frozen=True)
class Request:
    choice: UpstreamChoice
    arches: list[str]
    flavours: list[str]
    boot: bool
    backend: str
    backend_options: Mapping[str, Any]
    make_backend: Callable[[], Backend]
    results_root: Path
    notify: list[str] = field(default_factory=list)
    keep: int | None = None


def nightly(project: Project, request: Request, now: dt.datetime | None = None) -> Run:
    nightly_dir = fsutil.make_dirs(request.results_root / NIGHTLY_DIR)
    project.reclaim(nightly_dir)
    with exclusive_lock(nightly_dir / ".nightly.lock", f"the nightly of {nightly_dir}"):
        request = replace(request, choice=_pinned(project, request.choice))
        up = None if isinstance(request.choice, GitSnapshot) else _upstream(project, request.choice)
        digests = key.input_digests(
            project.root,
            _identity(request.choice, up),
            {"name": request.backend, **request.backend_options},
            {"arches": request.arches, "flavours": request.flavours, "boot": request.boot},
        )
        with history.opened(nightly_dir) as past:
            done = past.run_with_key(key.key_of(digests))
            if done is not None:
                raise Unchanged(done)
            up = up or _upstream(project, request.choice)
            run = _run(project, request, up, digests, past.runs(), now, nightly_dir)
            past.record(run)
            _tell(run, request, nightly_dir, past)
            if request.keep is not None:
                from kxen.nightly import repo

                gone = repo.prune(nightly_dir, past.runs(), request.keep)
                past.forget(gone)
    return run


def _upstream(project: Project, choice: UpstreamChoice) -> Upstream:
    try:
        return resolve_upstream(project, choice)
    except KxenError as error:
        if error.exit_code == ExitCode.INVALID_INPUT:
            raise
        raise NightlyError(
            f"the nightly cannot start: {error.message}", details=error.details
        ) from None


def _pinned(project: Project, choice: UpstreamChoice) -> UpstreamChoice:
    """A git ref pinned to its commit: one quick git call decides whether anything changed
    (the snapshot tarball is made only for a run that builds), and a branch that moves while
    the run builds does not change what it builds."""
    if not isinstance(choice, GitSnapshot):
        return choice
    from kxen.upstream import snapshot

    try:
        commit = snapshot.resolve_commit(choice.repo.resolve(), choice.ref, project.runner)
    except OSError as error:
        raise NightlyError(f"the nightly cannot start: {choice.repo}: {error}") from None
    return GitSnapshot(choice.repo, commit)


def _identity(choice: UpstreamChoice, up: Upstream | None) -> str:
    """The tree the run builds: the git commit, else the tarball's (or files') digest."""
    if isinstance(choice, GitSnapshot):
        return f"git:{choice.ref}"
    assert up is not None
    return f"{up.origin}:{up.tarball_sha512 or up.identity}"


def run_id(up: Upstream, started: dt.datetime) -> str:
    short = up.snapshot.commit[:12] if up.snapshot else (up.tarball_sha512 or up.identity)[:12]
    return f"{started:%Y%m%dT%H%M%SZ}-{short}"


def _unused(nightly_dir: Path, wanted: str, earlier: list[Run]) -> str:
    """`wanted`, or `wanted.2`, ... when a run of the same second and commit exists (the
    nightly lock keeps anyone else from taking it meanwhile)."""
    taken = {run.id for run in earlier}
    chosen, number = wanted, 1
    while chosen in taken or (nightly_dir / chosen).exists():
        number += 1
        chosen = f"{wanted}.{number}"
    return chosen


def _run(
    project: Project,
    request: Request,
    up: Upstream,
    digests: dict[str, str],
    earlier: list[Run],
    now: dt.datetime | None,
    nightly_dir: Path,
) -> Run:
    started = now or dt.datetime.now(dt.UTC)
    run = Run(
        id=_unused(nightly_dir, run_id(up, started), earlier),
        started=started.isoformat(timespec="seconds"),
        key=key.key_of(digests),
        inputs=digests,
        upstream=up.describe(),
        backend=request.backend,
    )
    from kxen.nightly import repo
    from kxen.nightly.matrix import Matrix

    previous = nightly_dir / earlier[0].id / "configs" if earlier else None
    with scratch_dir(nightly_dir, ".run-") as stage:
        matrix = Matrix(
            project,
            up,
            request.choice,
            request.arches,
            request.flavours,
            request.boot,
            request.make_backend,
            stage,
            previous,
        )
        run.cells = matrix.run()
        run.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _compare(project, request, run, earlier)
        write(stage, run, earlier)
        fsutil.replace_dir(stage, nightly_dir / run.id)
    passed = [
        nightly_dir / run.id / "build" / str(cell.nvr) / cell.arch / rpm.name
        for cell in run.cells
        if cell.status == Status.PASS
        for rpm in cell.rpms
    ]
    repo.publish(nightly_dir / repo.REPO_DIR, passed)
    return run


def _compare(project: Project, request: Request, run: Run, earlier: list[Run]) -> None:
    from kxen.nightly import compare

    run.changes = compare.changes(run, earlier)
    good = compare.last_good(run, earlier)
    run.previous = good.id if good else (earlier[0].id if earlier else None)
    older = compare.commit_of(good) if good else None
    newer = compare.commit_of(run)
    if older and newer and isinstance(request.choice, GitSnapshot):
        run.commits = compare.commits_between(request.choice.repo, older, newer, project.runner)


def write(run_dir: Path, run: Run, earlier: list[Run]) -> None:
    """run.json, report.html and report.json of `run` (again after notifying)."""
    from kxen.nightly import kcidb, report

    atomic_write_text(run_dir / RUN_RECORD, json.dumps(run.as_dict(), indent=2, sort_keys=True))
    report.write(run_dir / REPORT_HTML, run, earlier)
    export = kcidb.export(run)
    atomic_write_text(run_dir / REPORT_JSON, json.dumps(export, indent=2, sort_keys=True))


def _tell(run: Run, request: Request, nightly_dir: Path, past: history.History) -> None:
    """Notify on a regression, a failure or a recovery; delivery problems are reported in
    the run, never change its verdict."""
    from kxen.nightly import notify

    if not request.notify or not notify.worth_telling(run):
        return
    run_dir = nightly_dir / run.id
    run.notifications = notify.send(run, request.notify, run_dir / REPORT_HTML)
    write(run_dir, run, past.runs()[1:])
    past.record(run)


def load(run_dir: Path) -> Run:
    from kxen.nightly.model import run_from_dict

    return run_from_dict(json.loads((run_dir / RUN_RECORD).read_text()))
