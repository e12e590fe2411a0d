"""`kxen scratch-build`, `kxen build`, `kxen koji watch/download`: builds on a koji hub."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kxen import pipeline
from kxen.build.backends import kojiclient as kojidriver
from kxen.build.backends.base import neutralise
from kxen.cli.app import main_group
from kxen.cli.options import RESULTS_OPTION, Selection, selection_options
from kxen.cli.output import (
    Options,
    command,
    echo_lines,
    emit,
    fail,
    open_progress,
    open_project,
    stderr,
)
from kxen.errors import Interrupted
from kxen.support.fsutil import scratch_dir


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


def _koji_driver(hub: HubChoice, progress: Any) -> kojidriver.KojiDriver:
    profile = kojidriver.load_profile(
        hub.profile, hub.config_file, hub.user, os.environ.get("KXEN_KOJI_PASSWORD")
    )
    seen: list[list[tuple[int, str]]] = []

    def show(tree: kojidriver.TaskTree) -> None:
        states = [(view.id, view.state) for view in (tree.root, *tree.children)]
        if not seen or seen[-1] != states:
            seen.append(states)
            for line in tree.lines():
                stderr.print(neutralise(line), markup=False)

    return kojidriver.KojiDriver(profile, progress=progress, on_tasks=show)


def _watch_task(
    options: Options, driver: kojidriver.KojiDriver, task_id: int, cancel_on_interrupt: bool
) -> kojidriver.TaskTree:
    """Watch until done; Ctrl-C stops watching (and cancels only if asked)."""
    try:
        return driver.watch(task_id)
    except KeyboardInterrupt:
        error = Interrupted(signal.SIGINT)
        if cancel_on_interrupt:
            driver.cancel(task_id)
            error.details = [f"koji task {task_id} was canceled"]
        else:
            error.details = [
                f"koji task {task_id} keeps running on the hub",
                f"resume with: {driver.profile.command('watch', task_id)}",
            ]
        fail(options, error, {"task_id": task_id})
        raise


def _downloaded(options: Options, done: kojidriver.Downloaded) -> None:
    lines = [f"{arch}: {', '.join(files)}" for arch, files in sorted(done.arches.items())]
    emit(
        options,
        {
            "task_id": done.task_id,
            "nvr": done.nvr,
            "results_dir": str(done.results_dir),
            "arches": done.arches,
        },
        echo_lines([*lines, f"results: {done.results_dir}"]),
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
    results_root: Path | None,
    selection: Selection,
) -> None:
    """Scratch-build the SRPM on a koji hub, watch it and download the RPMs."""
    root = (results_root or options.repo / "results").resolve()
    arches = [a.strip() for a in (arch_override or "").split(",") if a.strip()]
    with open_project(options) as project:
        if arches:
            project.check_arches(arches)
        driver = _koji_driver(hub, project.progress)
        driver.login()
        target_name = target or project.manifest.name
        driver.check_target(target_name)
        if srpm is not None:
            src = driver.upload(srpm.resolve())
        else:
            with scratch_dir(
                root.parent if root.parent.is_dir() else Path.cwd(), ".kxen-srpm-"
            ) as work:
                prepared = pipeline.prepare(
                    project, selection.flavour, selection.local_tarball, work, selection.buildid
                )
                src = driver.upload(pipeline.build_srpm(project, prepared, work))
        task_id = driver.submit(src, target_name, kojidriver.scratch_opts(arches))
        stderr.print(f"koji task {task_id} ({driver.profile.server})", markup=False)
        if nowait:
            emit(
                options,
                {"task_id": task_id, "watch": driver.profile.command("watch", task_id)},
                echo_lines([str(task_id)]),
            )
            return
        _watch_task(options, driver, task_id, cancel_on_interrupt)
        done = driver.download(task_id, root)
    _downloaded(options, done)


@command(main_group, name="build")
@koji_options
@click.option("--target", default=None, help="The koji build target (default: the package name).")
@click.option(
    "--scm-url",
    default=None,
    help="git+https:// URL of this repository as koji fetches it (default: the origin remote).",
)
@click.option(
    "--commit",
    default=None,
    help="The pushed commit to build (default: HEAD, which must be clean).",
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
    commit: str | None,
    nowait: bool,
    cancel_on_interrupt: bool,
    results_root: Path | None,
) -> None:
    """Release (non-scratch) build on a koji hub from this repository's SCM URL."""
    root = (results_root or options.repo / "results").resolve()
    with open_project(options) as project:
        source = kojidriver.scm_url(project.root, project.runner, scm_url, commit)
        driver = _koji_driver(hub, project.progress)
        driver.login()
        target_name = target or project.manifest.name
        target_info = driver.check_target(target_name)
        driver.check_package(target_info, project.manifest.name)
        task_id = driver.submit(source, target_name, {})
        stderr.print(f"koji task {task_id}: {source} ({driver.profile.server})", markup=False)
        if nowait:
            emit(
                options,
                {
                    "task_id": task_id,
                    "source": source,
                    "watch": driver.profile.command("watch", task_id),
                },
                echo_lines([str(task_id)]),
            )
            return
        _watch_task(options, driver, task_id, cancel_on_interrupt)
        done = driver.download(task_id, root)
    _downloaded(options, done)


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
        driver = _koji_driver(hub, progress)
        tree = _watch_task(options, driver, task_id, cancel_on_interrupt)
    emit(
        options,
        {"task_id": task_id, "state": tree.root.state, "tasks": tree.lines()},
        echo_lines([f"koji task {task_id}: {tree.root.state}"]),
    )


@command(koji_group, name="download")
@koji_options
@RESULTS_OPTION
@click.argument("task_id", type=int)
def koji_download(
    options: Options, hub: HubChoice, results_root: Path | None, task_id: int
) -> None:
    """Download every RPM and log of a finished koji build task into results/<nvr>/<arch>/."""
    root = (results_root or options.repo / "results").resolve()
    with open_progress(options) as progress:
        driver = _koji_driver(hub, progress)
        done = driver.download(task_id, root)
    _downloaded(options, done)
