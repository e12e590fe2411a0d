"""`kxen verrel`, `spec`, `srpm`, `local`, `mockbuild`: from the checkout to RPMs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.options import RESULTS_OPTION, Selection, ccache_options, selection_options
from kxen.cli.output import Options, command, echo_lines, emit, open_project

if TYPE_CHECKING:  # the library is imported when a command runs: `kxen --help` stays light
    from kxen import pipeline
    from kxen.build.backends.base import ArchResult
    from kxen.build.ccache import Ccache
    from kxen.project import Project


def checkout(project: Project, selection: Selection) -> pipeline.Checkout:
    """What local, mockbuild and scratch-build build: the checkout's SRPM of `selection`."""
    from kxen import pipeline

    return pipeline.Checkout(project, selection.flavour, selection.local_tarball, selection.buildid)


def _built(
    options: Options,
    report: pipeline.BuildReport,
    line: Callable[[ArchResult], str],
    **extra: Any,
) -> None:
    """What local and mockbuild print: a line per arch (with its ccache hits and misses)
    and the results dir, or the report."""
    lines = [line(result) + _ccache_note(result) for result in report.arches]
    emit(
        options,
        {"report": dataclasses.asdict(report), **extra},
        echo_lines([*lines, f"results: {report.results_dir}"]),
    )


def _ccache_note(result: ArchResult) -> str:
    if result.ccache is None:
        return ""
    return f" (ccache: {result.ccache.hits} hits, {result.ccache.misses} misses)"


@command(main_group)
@selection_options
def verrel(options: Options, selection: Selection) -> None:
    """Print the name-version-release the build would produce."""
    from kxen.build import spec as spec_module
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        project.check_flavour(selection.flavour)
        version = (
            resolve_upstream(project, selection.local_tarball).version
            if selection.local_tarball
            else project.manifest.upstream
        )
        build = spec_module.identity(
            project.manifest, version, selection.flavour, selection.buildid
        )
        kernel = {arch: build.kernel_release(arch) for arch in project.manifest.arches}
    emit(options, {"nvr": build.nvr, "kernel_release": kernel}, echo_lines([build.nvr]))


@command(main_group)
@selection_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the spec (default: <name>.spec in the checkout).",
)
def spec(options: Options, selection: Selection, output: Path | None) -> None:
    """Render specs/kernel-xen.spec.j2 into the spec rpmbuild reads."""
    from kxen import pipeline
    from kxen.build import spec as spec_module
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        up = resolve_upstream(project, selection.local_tarball)
        inputs = pipeline.spec_inputs(project, up, selection.flavour, selection.buildid)
        text = spec_module.render(inputs, project.root / "specs")
        target = output or project.root / f"{project.manifest.name}.spec"
        spec_module.write(text, target)
    emit(options, {"spec": str(target), "nvr": inputs.nvr}, echo_lines([str(target)]))


@command(main_group)
@selection_options
@click.option(
    "-o",
    "--outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the SRPM (default: the checkout).",
)
def srpm(options: Options, selection: Selection, outdir: Path | None) -> None:
    """Build the source RPM (bit-identical for identical inputs)."""
    from kxen import pipeline
    from kxen.support.fsutil import scratch_dir

    target_dir = (outdir or options.repo).resolve()
    with open_project(options) as project, scratch_dir(target_dir, ".kxen-srpm-") as work:
        prepared = pipeline.prepare(
            project, selection.flavour, selection.local_tarball, work, selection.buildid
        )
        path = pipeline.build_srpm(project, prepared, target_dir)
    emit(
        options,
        {"srpm": str(path), "nvr": prepared.nvr, "upstream": prepared.upstream.describe()},
        echo_lines([str(path)]),
    )


@command(main_group)
@click.option("--arch", "arches", multiple=True, help="Arch to build (repeatable; default: all).")
@selection_options
@ccache_options
@RESULTS_OPTION
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where rpmbuild unpacks and builds (default: /dev/shm when the build fits in RAM, "
    "else the results root).",
)
def local(
    options: Options,
    arches: tuple[str, ...],
    selection: Selection,
    ccache: Ccache | None,
    results_root: Path,
    workdir: Path | None,
) -> None:
    """Build binary RPMs on this machine with rpmbuild into results/<nvr>/<arch>/."""
    from kxen import pipeline
    from kxen.build.backends.local import LocalBackend, build_area

    with open_project(options) as project:
        wanted = list(arches) or list(project.manifest.arches)
        area = workdir.resolve() if workdir else build_area(results_root)
        backend = LocalBackend(project.runner, area, ccache)
        build_what = checkout(project, selection)
        report = pipeline.build(backend, build_what, wanted, results_root, project.progress)
    _built(options, report, lambda r: f"{r.arch}: ok in {r.seconds:.0f}s: {', '.join(r.rpms)}")


@command(main_group)
@click.option("--arch", "arches", multiple=True, help="Arch to build (repeatable; default: all).")
@selection_options
@click.option(
    "--root",
    "roots",
    multiple=True,
    help="mock config (-r) to use: CONFIG with one --arch, else ARCH=CONFIG (repeatable). "
    "Default: the manifest's mock.roots, else fedora-<N>-x86_64 / fedora-<N>-i386.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Arches built at once (default: all of them, at most one per CPU); make's job "
    "slots are shared between them.",
)
@click.option("--no-clean", is_flag=True, help="Keep the build roots (mock --no-cleanup-after).")
@ccache_options
@RESULTS_OPTION
@click.argument("mock_args", nargs=-1, type=click.UNPROCESSED)
def mockbuild(
    options: Options,
    arches: tuple[str, ...],
    selection: Selection,
    roots: tuple[str, ...],
    jobs: int | None,
    no_clean: bool,
    ccache: Ccache | None,
    results_root: Path,
    mock_args: tuple[str, ...],
) -> None:
    """Build binary RPMs in mock build roots, one per arch, into results/<nvr>/<arch>/.

    Arguments after `--` are passed to every mock run."""
    from kxen import pipeline
    from kxen.build.backends.mock import MockBackend, choose_roots, default_roots

    cpus = os.cpu_count() or 1
    with open_project(options) as project:
        wanted = list(arches) or list(project.manifest.arches)
        project.check_arches(wanted)
        chosen = choose_roots(wanted, default_roots(project.manifest.mock_roots), list(roots))
        backend = MockBackend(
            project.runner,
            chosen,
            jobs=jobs or min(len(wanted), cpus),
            cpus=cpus,
            no_clean=no_clean,
            extra_args=mock_args,
            ccache=ccache,
        )
        build_what = checkout(project, selection)
        report = pipeline.build(backend, build_what, wanted, results_root, project.progress)
    _built(
        options,
        report,
        lambda r: f"{r.arch}: ok in {r.seconds:.0f}s ({chosen[r.arch]}): {', '.join(r.rpms)}",
        roots=chosen,
    )
