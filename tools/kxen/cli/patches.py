"""`kxen patches ...`: list, add, check and refresh the downstream series."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.options import UPSTREAM_OPTION
from kxen.cli.output import Options, command, echo_lines, emit, open_project

if TYPE_CHECKING:  # imported where they are used, so that `kxen --help` stays fast
    from kxen.patches import apply as patchapply
    from kxen.patches import series as patches
    from kxen.project import UpstreamChoice


@main_group.group(name="patches")
def patches_group() -> None:
    """The downstream patch series (patches/series): list, add, check, refresh."""


_CHANGE_MARKS = {"modify": "M", "create": "A", "delete": "D", "rename": "R", "copy": "C"}


def _patch_lines(patch: patches.Patch, changes: list[patches.FileChange]) -> list[str]:
    lines = [f"{patch.name} -p{patch.strip}"]
    for change in changes:
        name = f"{change.old_path} -> {change.path}" if change.old_path else change.path
        mark = _CHANGE_MARKS.get(change.change, "T")
        lines.append(f"  {mark} {name} ({change.hunks} hunk(s))")
    return lines


def _patch_dict(patch: patches.Patch, changes: list[patches.FileChange]) -> dict[str, Any]:
    return {
        "name": patch.name,
        "strip": patch.strip,
        "line": patch.line,
        "files": [dataclasses.asdict(change) for change in changes],
    }


@command(patches_group, name="list")
def patches_list(options: Options) -> None:
    """The series in order, with strip level and the files each patch touches."""
    from kxen.patches import operations as patch_ops

    with open_project(options) as project:
        listed = patch_ops.list_patches(project)
    lines = [line for patch, changes in listed for line in _patch_lines(patch, changes)]
    emit(
        options,
        {"patches": [_patch_dict(patch, changes) for patch, changes in listed]},
        echo_lines(lines or ["the series is empty"]),
    )


@command(patches_group, name="add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--after", default=None, metavar="NAME", help="Insert after this patch.")
@click.option(
    "-p",
    "--strip",
    default=1,
    show_default=True,
    type=click.IntRange(0, 9),
    help="Strip level the patch is applied with (patch -pN).",
)
def patches_add(options: Options, file: Path, after: str | None, strip: int) -> None:
    """Copy FILE into patches/ and list it in the series after NAME (default: at the end)."""
    from kxen.patches import operations as patch_ops

    with open_project(options) as project:
        added = patch_ops.add_patch(project, file, after, strip)
    where = f"patches/series:{added.patch.line}: added"
    emit(
        options,
        {"added": _patch_dict(added.patch, added.changes), "after": after},
        echo_lines([where, *_patch_lines(added.patch, added.changes)]),
    )


def _series_result(options: Options, report: patchapply.SeriesReport) -> None:
    version = report.upstream.get("version")
    closing = f"{report.total} patch(es) apply to Linux {version} as %prep applies them"
    emit(options, {"report": dataclasses.asdict(report)}, echo_lines([*report.lines(), closing]))


@command(patches_group, name="check")
@UPSTREAM_OPTION
def patches_check(options: Options, local_tarball: UpstreamChoice) -> None:
    """Apply the series to a copy of the pristine tree as strictly as %prep (--fuzz=0)."""
    from kxen.patches import operations as patch_ops
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        up = resolve_upstream(project, local_tarball)
        report = patch_ops.check_patches(project, up)
    _series_result(options, report)


@command(patches_group, name="refresh")
@click.option(
    "--upstream",
    "new_tarball",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new upstream tarball to check every patch against.",
)
def patches_refresh(options: Options, new_tarball: Path) -> None:
    """How every patch applies to another upstream tree: cleanly, with offset, with fuzz
    (fails in %prep) or not at all; exits 11 if any fails or needs fuzz."""
    from kxen.patches import apply as patchapply
    from kxen.patches import operations as patch_ops
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        up = resolve_upstream(project, new_tarball)
        report = patch_ops.refresh_patches(project, up)
    bad = [outcome for outcome in report.outcomes if not outcome.ok]
    if bad:
        raise patchapply.SeriesFailed(
            f"{len(bad)} of {report.total} patch(es) fail or need fuzz on Linux {up.version}",
            details=report.lines(),
            report=report,
        )
    _series_result(options, report)
