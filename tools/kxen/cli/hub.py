"""`kxen scratch-build`, `kxen build`, `kxen koji watch/download`: builds on a koji hub."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.build import checkout
from kxen.cli.options import RESULTS_OPTION, Selection, selection_options
from kxen.cli.output import (
    Options,
    command,
    echo_lines,
    emit,
    open_progress,
    open_project,
    stderr,
)
from kxen.support.text import neutralise

if TYPE_CHECKING:  # koji is imported when a command runs: `kxen --help` stays light
    from kxen import pipeline
    from kxen.build.backends.kojibackend import KojiBackend
    from kxen.build.backends.kojiclient import KojiDriver, TaskTree
    from kxen.support.progress import Progress


@dataclasses.dataclass(frozen=True)
class HubChoice:
    """Which koji profile to use and who we are there."""

    profile: str
    config_file: Path | None
    user: str | None


def koji_options(func: Callable[..., None]) -> Callable[..., None]:
    """--profile/--koji-config/--user, handed to `func` as one `HubChoice`."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, profile: str, koji_config: Path | None, user: str | None, **kwargs: Any
    ) -> None:
        func(*args, hub=HubChoice(profile, koji_config, user), **kwargs)

    options = (
        click.option(
            "--user",
            default=None,
            help="User for password login (the password comes from $KXEN_KOJI_PASSWORD).",
        ),
        click.option(
            "--koji-config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="A koji config file to read instead of ~/.koji/config(.d).",
        ),
        click.option(
            "--profile", default="koji", show_default=True, help="The koji profile to use."
        ),
    )
    decorated: Callable[..., None] = wrapper
    for option in options:
        decorated = option(decorated)
    return decorated


def _koji_driver(hub: HubChoice, progress: Progress) -> KojiDriver:
    """A session to the profile's hub that shows the task tree as it changes and says
    which task a build became."""
    from kxen.build.backends import kojiclient

    profile = kojiclient.load_profile(
        hub.profile, hub.config_file, hub.user, os.environ.get("KXEN_KOJI_PASSWORD")
    )
    seen: list[list[tuple[int, str]]] = []

    def show(tree: TaskTree) -> None:
        states = [(view.id, view.state) for view in (tree.root, *tree.children)]
        if not seen or seen[-1] != states:
            seen.append(states)
            for line in tree.lines():
                stderr().print(neutralise(line), markup=False)

    def announce(task_id: int, submitted: str) -> None:
        stderr().print(neutralise(f"koji task {task_id}: {submitted} ({profile.server})"))

    return kojiclient.KojiDriver(profile, progress=progress, on_tasks=show, on_submitted=announce)


def _koji_backend(
    hub: HubChoice, progress: Progress, target: str | None = None, **options: Any
) -> KojiBackend:
    from kxen.build.backends.kojibackend import KojiBackend

    return KojiBackend(_koji_driver(hub, progress), target, **options)


def _followed(
    options: Options, backend: KojiBackend, outcome: pipeline.BuildReport | pipeline.Submitted
) -> None:
    """What scratch-build, build and koji download print: the task id and how to follow it
    (--nowait), else every arch's files in results/<nvr>/<arch>/."""
    from kxen import pipeline

    if isinstance(outcome, pipeline.Submitted):
        task_id = outcome.run["task_id"]
        watch = backend.driver.profile.command("watch", task_id)
        emit(options, {**outcome.run, "watch": watch}, echo_lines([str(task_id)]))
        return
    arches = {result.arch: [*result.rpms, outcome.srpm] for result in outcome.arches}
    lines = [f"{arch}: {', '.join(files)}" for arch, files in sorted(arches.items())]
    emit(
        options,
        {
            "task_id": outcome.run.get("task_id"),
            "nvr": outcome.nvr,
            "results_dir": outcome.results_dir,
            "arches": arches,
        },
        echo_lines([*lines, f"results: {outcome.results_dir}"]),
    )


@command(main_group, name="scratch-build")
@koji_options
@click.option("--target", default=None, help="The koji build target (default: the package name).")
@click.option(
    "--arch-override", default=None, help="Comma-separated arches to build (default: the tag's)."
)
@click.option("--nowait", is_flag=True, help="Submit and print the task id without watching.")
@click.option(
    "--cancel-on-interrupt", is_flag=True, help="Ctrl-C cancels the build instead of detaching."
)
@click.option(
    "--srpm",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Submit this SRPM instead of building one from the checkout.",
)
@RESULTS_OPTION
@selection_options
def scratch_build(
    options: Options,
    hub: HubChoice,
    target: str | None,
    arch_override: str | None,
    nowait: bool,
    cancel_on_interrupt: bool,
    srpm: Path | None,
    results_root: Path,
    selection: Selection,
) -> None:
    """Scratch-build the SRPM on a koji hub, watch it and download the RPMs."""
    from kxen import pipeline
    from kxen.build.backends.base import Source

    arches = [a.strip() for a in (arch_override or "").split(",") if a.strip()]
    with open_project(options) as project:
        project.check_arches(arches)
        name = project.manifest.name
        backend = _koji_backend(
            hub, project.progress, target or name, cancel_on_interrupt=cancel_on_interrupt
        )
        source: Source | pipeline.Checkout = (
            srpm.resolve() if srpm is not None else checkout(project, selection)
        )
        outcome = pipeline.build(
            backend, source, arches, results_root, project.progress, wait=not nowait
        )
    _followed(options, backend, outcome)


@command(main_group, name="build")
@koji_options
@click.option("--target", default=None, help="The koji build target (default: the package name).")
@click.option(
    "--scm-url",
    default=None,
    help="git+https:// URL of this repository as koji fetches it (default: the origin remote).",
)
@click.option(
    "--dist-git",
    "dist_git",
    default=None,
    metavar="URL[#COMMIT]",
    help="Build this dist-git instead (`kxen dist-git` exported and pushed it), as fedpkg "
    "build does: git://host/rpms/kernel-xen.git#<commit>.",
)
@click.option(
    "--commit",
    default=None,
    help="The pushed commit to build (default: HEAD of this checkout, which must be clean; "
    "with --dist-git, the URL's #commit).",
)
@click.option("--nowait", is_flag=True, help="Submit and print the task id without watching.")
@click.option(
    "--cancel-on-interrupt", is_flag=True, help="Ctrl-C cancels the build instead of detaching."
)
@RESULTS_OPTION
def release_build(
    options: Options,
    hub: HubChoice,
    target: str | None,
    scm_url: str | None,
    dist_git: str | None,
    commit: str | None,
    nowait: bool,
    cancel_on_interrupt: bool,
    results_root: Path,
) -> None:
    """Release (non-scratch) build on a koji hub of a dist-git commit (--dist-git), or of
    this repository's SCM URL."""
    from kxen import pipeline
    from kxen.build.backends.base import Scm
    from kxen.build.backends.kojiclient import dist_git_url
    from kxen.build.backends.kojiclient import scm_url as checkout_url
    from kxen.errors import InputError

    if dist_git and scm_url:
        raise InputError("--dist-git and --scm-url exclude each other")
    with open_project(options) as project:
        source = Scm(
            dist_git_url(dist_git, commit)
            if dist_git
            else checkout_url(project.root, project.runner, scm_url, commit)
        )
        name = project.manifest.name
        backend = _koji_backend(
            hub,
            project.progress,
            target or name,
            package=name,
            cancel_on_interrupt=cancel_on_interrupt,
        )
        outcome = pipeline.build(
            backend, source, [], results_root, project.progress, wait=not nowait
        )
    _followed(options, backend, outcome)


@main_group.group(name="koji")
def koji_group() -> None:
    """Follow and fetch koji tasks (resume after an interrupted scratch-build)."""


@command(koji_group, name="watch")
@koji_options
@click.option(
    "--cancel-on-interrupt", is_flag=True, help="Ctrl-C cancels the build instead of detaching."
)
@click.argument("task_id", type=int)
def koji_watch(options: Options, hub: HubChoice, cancel_on_interrupt: bool, task_id: int) -> None:
    """Watch a koji task tree until it is done (exit 5 if it failed)."""
    with open_progress(options) as progress:
        tree = _koji_driver(hub, progress).watch(task_id, cancel_on_interrupt)
    emit(
        options,
        {"task_id": task_id, "state": tree.root.state, "tasks": tree.lines()},
        echo_lines([f"koji task {task_id}: {tree.root.state}"]),
    )


@command(koji_group, name="download")
@koji_options
@RESULTS_OPTION
@click.argument("task_id", type=int)
def koji_download(options: Options, hub: HubChoice, results_root: Path, task_id: int) -> None:
    """Download every RPM and log of a finished koji build task into results/<nvr>/<arch>/."""
    from kxen import pipeline
    from kxen.build.backends.base import Task

    with open_progress(options) as progress:
        backend = _koji_backend(hub, progress)
        outcome = pipeline.build(backend, Task(task_id), [], results_root, progress)
    _followed(options, backend, outcome)
