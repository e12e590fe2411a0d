"""`kxen sources`, `kxen new-sources`, `kxen bump`: the upstream files and version."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import click

from kxen.cli.app import main_group
from kxen.cli.output import Options, command, echo_lines, emit, open_project


@command(main_group)
def sources(options: Options) -> None:
    """Download every file listed in `sources` into the lookaside cache (verified)."""
    from kxen import pipeline

    with open_project(options) as project:
        fetched = pipeline.fetch_sources(project)
    rows = [
        {"file": e.filename, "path": str(path), "downloaded": downloaded}
        for e, path, downloaded in fetched
    ]

    def human() -> None:
        for row in rows:
            state = "downloaded" if row["downloaded"] else "cached"
            click.echo(f"{row['file']}: {state} ({row['path']})")

    emit(options, {"sources": rows}, human)


@command(main_group)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def new_sources(options: Options, files: tuple[Path, ...]) -> None:
    """Import local FILES into the lookaside cache and make them the `sources` list."""
    from kxen import pipeline

    with open_project(options) as project:
        entries = pipeline.new_sources(project, list(files))
    emit(
        options,
        {"sources": [dataclasses.asdict(e) for e in entries]},
        echo_lines(e.line() for e in entries),
    )


@command(main_group)
@click.option("--to", "to", required=True, help="Upstream version: 6.1.193, 6.2-rc3, 6.2, ...")
@click.option("--release", type=int, default=None, help="Release number (default: 1, or the "
              "next one when the version stays).")  # fmt: skip
@click.option("-m", "--message", default=None, help="Changelog text (default: Rebase to ...).")
@click.option("--author", default=None, help="Changelog author 'Name <email>' (default: "
              "$RPM_PACKAGER, else the newest entry's).")  # fmt: skip
@click.option("--force", is_flag=True, help="Allow a version that does not sort higher.")
def bump(
    options: Options,
    to: str,
    release: int | None,
    message: str | None,
    author: str | None,
    force: bool,
) -> None:
    """Move to another upstream version: manifest, `sources` (fetched and verified) and
    changelog, then show what changes in the spec."""
    from kxen import pipeline

    with open_project(options) as project:
        done = pipeline.bump_version(
            project, to, release, message, author, force, datetime.date.today()
        )
    plan = done.plan
    data = {
        "from": plan.old_evr,
        "to": plan.new_evr,
        "sources": [entry.line() for entry in done.entries],
        "signatures_moved": plan.renamed_signatures,
        "spec_diff": done.spec_diff,
    }
    lines = [f"{plan.old_evr} -> {plan.new_evr}", *done.spec_diff]
    emit(options, data, echo_lines(lines))
