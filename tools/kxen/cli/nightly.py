"""`kxen nightly`, `kxen history`, `kxen report`: builds for CI, what they found, and the
report people read."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.hub import HubChoice, koji_options
from kxen.cli.options import RESULTS_OPTION, UPSTREAM_OPTION, ccache_options
from kxen.cli.output import Options, command, echo_lines, emit, open_project
from kxen.errors import KxenError

if TYPE_CHECKING:  # imported where they are used, so that `kxen --help` stays fast
    from kxen.build.backends.base import Backend
    from kxen.build.ccache import Ccache
    from kxen.nightly.model import Run
    from kxen.project import Project, UpstreamChoice

BACKENDS = ("local", "mock", "koji")


@command(main_group)
@UPSTREAM_OPTION
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True)
@click.option("--arch", "arches", multiple=True, help="Arch (repeatable; default: all).")
@click.option("--flavour", "flavours", multiple=True, help="Flavour (repeatable; default: all).")
@click.option("--boot/--no-boot", default=True, show_default=True, help="Boot-test every kernel.")
@click.option(
    "--notify",
    "targets",
    multiple=True,
    metavar="URL",
    help="On a regression, failure or recovery: POST the summary to this http(s) URL, or mail "
    "it to a mailto: address (SMTP server from $KXEN_SMTP_HOST, $KXEN_SMTP_PORT). Repeatable.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many newest runs (never pruning the newest good one) and their packages.",
)
@click.option("--target", default=None, help="koji build target (--backend koji).")
@koji_options
@ccache_options
@RESULTS_OPTION
def nightly(
    options: Options,
    local_tarball: UpstreamChoice,
    backend: str,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    boot: bool,
    targets: tuple[str, ...],
    keep: int | None,
    target: str | None,
    hub: HubChoice,
    ccache: Ccache | None,
    results_root: Path,
) -> None:
    """Build, verify and boot every arch and flavour of an upstream commit, unless nothing
    changed since a completed run (exit 3); record it, compare it with the previous good
    run, publish the RPMs into results/nightly/repo/ and write results/nightly/<run>/."""
    from kxen.nightly import notify
    from kxen.nightly.model import Status
    from kxen.nightly.run import Request
    from kxen.nightly.run import nightly as run_nightly

    for url in targets:
        notify.check_target(url)
    with open_project(options) as project:
        wanted_arches = list(arches) or list(project.manifest.arches)
        wanted_flavours = list(flavours) or list(project.manifest.flavours)
        project.check_arches(wanted_arches)
        for flavour in wanted_flavours:
            project.check_flavour(flavour)
        make, described = _backend(project, backend, hub, target, results_root, ccache)
        request = Request(
            local_tarball,
            wanted_arches,
            wanted_flavours,
            boot,
            backend,
            described,
            make,
            results_root,
            list(targets),
            keep,
        )
        run = run_nightly(project, request)
    lines, data = _shown(run, results_root)
    if run.status != Status.PASS:
        raise NightlyFailed(f"nightly {run.id}: {run.status}", lines[1:], data)
    emit(options, data, echo_lines(lines))


class NightlyFailed(KxenError):
    """A cell failed (or could not be built): exit 1, with the run in the --json summary."""

    def __init__(self, message: str, details: list[str], payload: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.payload = payload


def _backend(
    project: Project,
    name: str,
    hub: HubChoice,
    target: str | None,
    results_root: Path,
    ccache: Ccache | None,
) -> tuple[Callable[[], Backend], dict[str, Any]]:
    """A factory of the chosen backend (each build starts from a fresh one) and what of it
    goes into the nightly's key. The ccache (local, mock) is not part of the key: a cache
    changes how long a build takes, never what it makes."""
    if name == "mock":
        from kxen.build.backends.mock import MockBackend, default_roots

        roots = default_roots(project.manifest.mock_roots)

        def make_mock() -> Backend:
            cpus = os.cpu_count() or 1
            return MockBackend(project.runner, roots, jobs=1, cpus=cpus, ccache=ccache)

        return make_mock, {"roots": roots}
    if name == "koji":
        from kxen.cli.hub import _koji_backend

        def make_koji() -> Backend:
            return _koji_backend(hub, project.progress, target)

        return make_koji, {"profile": hub.profile, "target": target or project.manifest.name}
    from kxen.build.backends.local import LocalBackend, build_area

    area = build_area(results_root)

    def make_local() -> Backend:
        return LocalBackend(project.runner, area, ccache)

    return make_local, {}


def _shown(run: Run, results_root: Path) -> tuple[list[str], dict[str, Any]]:
    """What a nightly prints: a line per cell (with its first failure), the changes and the
    commits behind them, the notifications, and where the report is."""
    from kxen.nightly.run import NIGHTLY_DIR, REPORT_HTML

    run_dir = results_root / NIGHTLY_DIR / run.id
    lines = [f"{run.id}: {run.status}"]
    for cell in run.cells:
        steps = " ".join(f"{s.name}={s.status}" for s in cell.steps)
        lines.append(f"  {cell.name}: {cell.status} ({steps})")
        failure = cell.failure
        if failure is not None:
            lines.append(f"    {failure.name}: {failure.summary}")
    for change in run.changes:
        lines.append(f"  {change.kind}: {change.cell} ({change.step})")
    lines += [f"    {commit}" for commit in run.commits[:20]]
    lines += [f"  notify: {line}" for line in run.notifications]
    lines.append(f"report: {run_dir / REPORT_HTML}")
    return lines, {"run": run.as_dict(), "run_dir": str(run_dir)}


@command(main_group)
@click.option("--last", type=click.IntRange(min=1), default=10, show_default=True)
@RESULTS_OPTION
def history(options: Options, last: int, results_root: Path) -> None:
    """The newest nightly runs: commit, status, and each cell's steps."""
    from kxen.nightly import history as history_module
    from kxen.nightly.run import NIGHTLY_DIR

    with history_module.opened(results_root / NIGHTLY_DIR) as past:
        runs = past.runs(last)
    lines = []
    for run in runs:
        git = run.upstream.get("git") or {}
        where = git.get("describe") or run.upstream.get("version", "")
        lines.append(f"{run.id}  {run.status:5}  {where}")
        lines += [f"  {cell.name}: {cell.status}" for cell in run.cells]
    emit(options, {"runs": [run.as_dict() for run in runs]}, echo_lines(lines or ["no runs yet"]))


@command(main_group)
@click.argument("run_id", required=False)
@RESULTS_OPTION
def report(options: Options, run_id: str | None, results_root: Path) -> None:
    """Write report.html (and report.json) of a nightly run again: RUN, or the newest."""
    from kxen.errors import InputError
    from kxen.nightly import history as history_module
    from kxen.nightly.run import NIGHTLY_DIR, load, write

    nightly_dir = results_root / NIGHTLY_DIR
    with history_module.opened(nightly_dir) as past:
        runs = past.runs()
    ids = [run.id for run in runs]
    chosen = run_id or (ids[0] if ids else None)
    if chosen is None or chosen not in ids:
        raise InputError(f"no nightly run {chosen!r} in {nightly_dir} (kxen history lists them)")
    earlier = runs[ids.index(chosen) + 1 :]
    run_dir = nightly_dir / chosen
    write(run_dir, load(run_dir), earlier)
    emit(
        options,
        {"report": str(run_dir / "report.html")},
        echo_lines([str(run_dir / "report.html")]),
    )
