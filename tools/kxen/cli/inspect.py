"""`kxen lint`, `verify`, `boot-test`: checks of what was built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kxen import arches
from kxen.cli.app import main_group
from kxen.cli.options import UPSTREAM_OPTION, existing_path
from kxen.cli.output import Options, command, echo_lines, emit, open_progress, open_project
from kxen.errors import LintError

if TYPE_CHECKING:  # imported where they are used, so that `kxen --help` stays fast
    from kxen.project import UpstreamChoice


@command(main_group)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def lint(options: Options, paths: tuple[Path, ...]) -> None:
    """Run rpmlint with the checkout's kernel-xen.rpmlintrc on specs and packages."""
    from kxen.inspect.lint import rpmlint

    with open_project(options) as project:
        rc = project.root / f"{project.manifest.name}.rpmlintrc"
        result = rpmlint(paths, rc, project.runner)
    if result.errors:
        raise LintError(f"rpmlint reported {result.errors} error(s)", details=result.error_lines)
    summary = {"errors": result.errors, "warnings": result.warnings, "lines": list(result.lines)}
    closing = f"{result.warnings} warning(s), no errors"
    emit(options, summary, echo_lines([*result.lines, closing]))


@command(main_group)
@click.argument(
    "packages",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@UPSTREAM_OPTION
@click.option("--flavour", default="default", show_default=True, help="Flavour the RPMs are of.")
@click.option(
    "--guest",
    "guests",
    multiple=True,
    type=click.Choice([guest.name for guest in arches.guest_types()]),
    help="Guest type the kernels must boot as (repeatable; default: all their arch supports).",
)
def verify(
    options: Options,
    packages: tuple[Path, ...],
    local_tarball: UpstreamChoice,
    flavour: str,
    guests: tuple[str, ...],
) -> None:
    """Check built RPMs: metadata, payload, modules, config, Xen ELF notes and rpmlint."""
    from kxen.inspect import verify as verify_module
    from kxen.support.fsutil import scratch_dir

    with open_project(options) as project, scratch_dir(project.cache, ".verify-") as scratch:
        report = verify_module.verify(
            project, list(packages), flavour, local_tarball, scratch, guests
        )
    if not report.ok:
        raise verify_module.VerifyFailed(report)
    lines = [check.describe() for check in report.checks]
    emit(
        options,
        {"report": dataclasses.asdict(report)},
        echo_lines([*lines, f"{len(report.checks)} checks passed"]),
    )


@command(main_group, name="boot-test")
@click.argument("package", type=existing_path())
@click.option(
    "--mode",
    type=click.Choice(arches.boot_modes()),
    default="pvh",
    show_default=True,
    help="Boot as a Xen PV or PVH domU, or natively on QEMU's hardware without Xen.",
)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds after which QEMU is stopped, whatever it is doing.",
)
@click.option("--append", default="", help="Extra kernel command line for the guest.")
@click.option(
    "--attempts",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Boot again (up to this many times in all) when Xen kills the guest before its "
    "kernel prints a line, which QEMU's emulation very rarely causes.",
)
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to keep the serial console log (default: in the cache).",
)
@click.option(
    "--xen",
    type=existing_path(),
    default=None,
    help="Xen hypervisor image, e.g. /boot/xen-4.17.gz (default: Debian's).",
)
@click.option(
    "--dom0-kernel",
    type=existing_path(),
    default=None,
    help="dom0 kernel image with its module tree beside it (default: Debian's).",
)
@click.option(
    "--toolstack",
    type=existing_path(dir_okay=True, file_okay=False),
    default=None,
    help="Root holding xl, xenstored, xenconsoled and their libraries (default: Debian's).",
)
@click.option(
    "--busybox",
    type=existing_path(),
    default=None,
    help="A static busybox for dom0's initramfs (default: Debian's busybox-static).",
)
def boot_test(
    options: Options,
    package: Path,
    mode: str,
    timeout: float,
    append: str,
    attempts: int,
    log: Path | None,
    xen: Path | None,
    dom0_kernel: Path | None,
    toolstack: Path | None,
    busybox: Path | None,
) -> None:
    """Boot the kernel of a built RPM as a Xen domU under Xen in QEMU (or natively)."""
    from kxen.inspect import boottest
    from kxen.inspect.boottest.pieces import PieceChoice
    from kxen.support.runner import SubprocessRunner

    cache = options.cache
    request = boottest.BootRequest(
        package=package,
        mode=mode,
        timeout=timeout,
        log=log or cache / "boot-test" / "logs" / f"{package.name.removesuffix('.rpm')}-{mode}.log",
        append=append,
        pieces=PieceChoice(xen, dom0_kernel, toolstack, busybox),
        attempts=attempts,
    )
    with open_progress(options) as progress:
        result = boottest.boot_test(request, cache, SubprocessRunner(), progress)
    if not result.passed:
        raise boottest.BootFailed(result)
    stages = [f"  {s['seconds']:6.1f}s  {s['stage']}" for s in result.stages]
    summary = (
        f"{result.package}: booted {result.kernel_release} as {result.mode}"
        f" (guest_type {result.guest_type}) in {result.seconds:.1f}s; log {result.log}"
    )
    retried = [
        f"  attempt {n} failed: {earlier['failure']} (log {earlier['log']})"
        for n, earlier in enumerate(result.earlier_attempts, 1)
    ]
    emit(options, {"result": dataclasses.asdict(result)}, echo_lines([*retried, *stages, summary]))
