"""Patch commands over a checkout: list the series, add a patch, and apply the series
to a scratch copy of the pristine tree (check, or refresh against a new tree)."""

from __future__ import annotations

from pathlib import Path

from kxen.patches import apply as patchapply
from kxen.patches import series as patches
from kxen.project import (
    Project,
    prepared_tree,
)
from kxen.support import integrity
from kxen.upstream import origin


def list_patches(project: Project) -> list[tuple[patches.Patch, list[patches.FileChange]]]:
    """`kxen patches list`: the series in order and the files each patch touches."""
    project.progress.phase("patches", "reading the series")
    series = patches.load_series(project.root / "patches")
    return [(patch, patches.file_changes(patch.path, patch.strip)) for patch in series]


def add_patch(project: Project, source: Path, after: str | None, strip: int) -> patches.Added:
    """`kxen patches add`: copy the patch into patches/ and list it in the series."""
    project.progress.phase("patches", f"adding {source.name}")
    return patches.add_patch(project.root / "patches", source, after, strip)


def check_patches(project: Project, up: origin.Upstream) -> patchapply.SeriesReport:
    """`kxen patches check`: the series on a copy of the pristine tree, as strict as %prep;
    the first patch that fails (or needs fuzz) stops it."""
    report = _apply_to_copy(project, up, keep_going=False)
    if not report.ok:
        failed = report.outcomes[-1]
        raise patchapply.SeriesFailed(
            f"{failed.describe()}: {failed.culprit()} "
            f"(series line {failed.line}, patch {len(report.outcomes)} of {report.total})",
            details=failed.details(),
            report=report,
        )
    return report


def refresh_patches(project: Project, up: origin.Upstream) -> patchapply.SeriesReport:
    """`kxen patches refresh`: every patch against another upstream tree (after a bump),
    through the whole series; the caller decides what counts as failure."""
    return _apply_to_copy(project, up, keep_going=True)


def _apply_to_copy(
    project: Project, up: origin.Upstream, *, keep_going: bool
) -> patchapply.SeriesReport:
    series = patches.load_series(project.root / "patches")
    project.progress.phase("tree", f"Linux {up.version}")
    pristine = prepared_tree(project, up, integrity.WHOLE)
    project.progress.phase("copy", f"cp -al {pristine.name}")
    # Beside the cached trees: hard links need the same file system.
    with patchapply.hardlinked_copy(pristine, pristine.parent.parent, project.runner) as tree:
        outcomes = patchapply.apply_series(
            tree, series, project.runner, project.progress, keep_going=keep_going
        )
        project.progress.phase("cleanup", "removing the scratch tree")
    return patchapply.SeriesReport(up.describe(), len(series), outcomes)
