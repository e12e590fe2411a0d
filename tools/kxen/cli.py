"""The `kxen` command line: the only place that prints, shows progress or exits.

Errors from the library arrive as `KxenError` subclasses and leave through
one mapping to exit codes (see `errors.ExitCode` and README.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import (
    boottest,
    configcheck,
    configs,
    fsutil,
    manifest,
    patchapply,
    patches,
    pipeline,
    snapshot,
)
from . import koji as kojidriver
from . import spec as spec_module
from . import verify as verify_module
from .backends.base import Backend, neutralise
from .backends.local import LocalBackend, build_area
from .backends.mock import MockBackend, choose_roots, default_roots
from .boottest.pieces import PieceChoice
from .errors import ConfigError, InputError, Interrupted, KxenError, LintError
from .fsutil import scratch_dir
from .lint import rpmlint
from .runner import SubprocessRunner

F = TypeVar("F", bound=Callable[..., Any])
# Nothing kxen prints is rich markup or emoji shortcodes: a path with `[bold]` or `:x:`
# in it is shown as it is.
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
MESSAGE_LIMIT = 2000
"""Characters of one message line shown (a hostile input must not print megabytes)."""
DETAILS_LIMIT = 200


# --- progress --------------------------------------------------------------


class TerminalProgress:
    """Phase, current step and elapsed time: live on a terminal, phase lines in a CI log."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.started = time.monotonic()
        self._bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.fields[phase]}", style="bold", markup=False),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("", phase="", total=None)
        self.warnings: list[str] = []
        self._phase = ""
        self._phase_started = self.started

    def __enter__(self) -> TerminalProgress:
        if self.live:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._bar.stop()

    def phase(self, name: str, detail: str = "") -> None:
        if name == self._phase and not detail:
            return
        now = time.monotonic()
        if self.live and self._phase:
            took = now - self._phase_started
            self.console.print(Text.assemble(("done", "green"), f" {self._phase} ({took:.1f}s)"))
        self._phase, self._phase_started = neutralise(name), now
        self._bar.update(self._task, phase=self._phase, description=neutralise(detail))
        if not self.live:
            line = f"[{now - self.started:7.1f}s] {self._phase} {neutralise(detail)}".rstrip()
            self.console.print(line)

    def step(self, text: str) -> None:
        self._bar.update(self._task, description=neutralise(text)[:100])

    def transfer(self, name: str, done: int, total: int | None) -> None:
        size = f"{done >> 20} MiB" + (f" of {total >> 20} MiB" if total else "")
        self._bar.update(self._task, description=f"{neutralise(name)}: {size}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.console.print(f"kxen: warning: {capped(neutralise(message))}")


# --- plumbing ----------------------------------------------------------------


@dataclasses.dataclass
class Options:
    repo: Path
    cache: Path
    as_json: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)
    """What the command warned about (also on stderr): repeated in the --json summary."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def _progress(options: Options) -> Iterator[TerminalProgress]:
    """Progress on stderr whose warnings also reach the --json summary."""
    with TerminalProgress(stderr) as progress:
        progress.warnings = options.warnings
        yield progress


@contextmanager
def _project(options: Options) -> Iterator[pipeline.Project]:
    with _progress(options) as progress:
        yield pipeline.Project(options.repo, options.cache, SubprocessRunner(), progress)


def _emit(options: Options, data: dict[str, Any], human: Callable[[], None]) -> None:
    if options.as_json:
        if options.warnings:
            data = {**data, "warnings": options.warnings}
        click.echo(json.dumps({"ok": True, **data}, indent=2, sort_keys=True, default=str))
    else:
        human()


def _echo_lines(lines: Iterable[str]) -> Callable[[], None]:
    kept = list(lines)

    def echo() -> None:
        for line in kept:
            click.echo(neutralise(line))

    return echo


def capped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _fail(options: Options, error: KxenError, extra: dict[str, Any] | None = None) -> None:
    message = capped(error.message)
    details = [capped(line) for line in error.details[:DETAILS_LIMIT]]
    if len(error.details) > DETAILS_LIMIT:
        details.append(f"... ({len(error.details) - DETAILS_LIMIT} more lines)")
    if options.as_json:
        payload = {
            "ok": False,
            "exit_code": int(error.exit_code),
            "error": message,
            "details": details,
            **({"warnings": options.warnings} if options.warnings else {}),
            **(extra or {}),
        }
        click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
    stderr.print(f"kxen: error: {neutralise(message)}")
    for line in details:
        stderr.print(f"  {neutralise(line)}")
    sys.exit(int(error.exit_code))


def _os_failure(exc: OSError) -> KxenError:
    """An OSError no library code turned into a KxenError: still one line and an exit
    code (10 disk full, 8 not writable), never a traceback."""
    where = Path(os.fsdecode(exc.filename)) if exc.filename else Path("?")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        return fsutil.write_error(where, exc, "failed")
    return KxenError(f"{where}: {exc.strerror or exc}")


def _unexpected(options: Options, exc: Exception) -> KxenError:
    """A bug in kxen: one line for the user, the traceback kept in a file for the report."""
    text = "".join(traceback.format_exception(exc))
    try:
        path = options.cache / "crash" / f"kxen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        fsutil.atomic_write_text(path, text)
        where = f"traceback in {path}"
    except KxenError:
        where = "traceback: " + text.strip().splitlines()[-1]
    message = f"unexpected failure inside kxen: {type(exc).__name__}: {exc}"
    return KxenError(message, details=[where])


def command(group: click.Group, name: str | None = None) -> Callable[[F], click.Command]:
    """A subcommand with --json whose KxenErrors become exit codes."""

    def decorate(func: F) -> click.Command:
        @functools.wraps(func)
        def wrapper(options: Options, as_json: bool, **kwargs: Any) -> None:
            options.as_json = as_json
            signal.signal(signal.SIGTERM, _on_sigterm)
            signal.signal(signal.SIGHUP, _on_sigterm)
            try:
                func(options, **kwargs)
            except KeyboardInterrupt:
                _fail(options, Interrupted(signal.SIGINT))
            except KxenError as error:
                report = getattr(error, "report", None)
                extra = {"report": dataclasses.asdict(report)} if report else None
                extra = getattr(error, "payload", None) or extra
                _fail(options, error, extra)
            except OSError as exc:
                _fail(options, _os_failure(exc))
            except Exception as exc:
                _fail(options, _unexpected(options, exc))

        with_json = click.option(
            "--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."
        )(wrapper)
        command_name = name or func.__name__.replace("_", "-")
        return group.command(name=command_name)(click.pass_obj(with_json))

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The kernel-xen checkout (default: found from the current directory).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KXEN_CACHE_DIR",
    default=None,
    help="Lookaside cache and prepared trees (default: ~/.cache/kxen, or $KXEN_CACHE_DIR).",
)
@click.version_option(package_name="kxen")
@click.pass_context
def main_group(ctx: click.Context, repo: Path | None, cache_dir: Path | None) -> None:
    """Build the kernel-xen RPM (Linux paravirt_ops Xen domU) from upstream Linux."""
    if repo is None:
        try:
            repo = manifest.find(Path.cwd()).parent
        except KxenError:
            repo = Path.cwd()
    ctx.obj = Options(repo=repo.resolve(), cache=(cache_dir or pipeline.default_cache_dir()))


RESULTS_OPTION = click.option(
    "--results",
    "results_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results root (default: results/ in the checkout).",
)


def upstream_options(func: Callable[..., None]) -> Callable[..., None]:
    """--upstream TARBALL|CHECKOUT and --ref, handed to `func` as one `local_tarball`
    (a `pipeline.UpstreamChoice`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, local_tarball: Path | None, ref: str | None, **kwargs: Any) -> None:
        func(*args, local_tarball=_upstream_choice(local_tarball, ref), **kwargs)

    options = (
        click.option(
            "--ref",
            default=None,
            help="With --upstream CHECKOUT: the commit, tag or branch to snapshot (default HEAD).",
        ),
        click.option(
            "--upstream",
            "local_tarball",
            type=click.Path(exists=True, path_type=Path),
            default=None,
            help="Use this local kernel tarball (e.g. Debian's linux-source-6.1) or kernel git "
            "checkout (a reproducible snapshot of --ref) instead of the manifest's kernel.org "
            "files.",
        ),
    )
    for option in options:
        wrapper = option(wrapper)
    return wrapper


UPSTREAM_OPTION = upstream_options


def _upstream_choice(path: Path | None, ref: str | None) -> pipeline.UpstreamChoice:
    if path is None:
        if ref is not None:
            raise InputError("--ref needs --upstream CHECKOUT (a kernel git checkout)")
        return None
    if path.is_dir():
        if not snapshot.is_checkout(path):
            raise InputError(f"--upstream {path}: a directory must be a kernel git checkout")
        return pipeline.GitSnapshot(path, ref or "HEAD")
    if ref is not None:
        raise InputError(f"--ref {ref}: only a git checkout has refs, {path} is a file")
    return path


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to build: the options shared by every command that renders a spec."""

    flavour: str
    local_tarball: pipeline.UpstreamChoice
    buildid: str | None


def selection_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add --flavour/--upstream/--buildid and hand them to `func` as one `Selection`."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        flavour: str,
        local_tarball: pipeline.UpstreamChoice,
        buildid: str | None,
        **kwargs: Any,
    ) -> None:
        func(*args, selection=Selection(flavour, local_tarball, buildid), **kwargs)

    options: tuple[Callable[[Callable[..., None]], Callable[..., None]], ...] = (
        click.option(
            "--buildid",
            default=None,
            help="Mark the release (e.g. .local); overrides the manifest.",
        ),
        UPSTREAM_OPTION,
        click.option(
            "--flavour", default="default", show_default=True, help="Config flavour to build."
        ),
    )
    decorated: Callable[..., None] = wrapper
    for option in options:
        decorated = option(decorated)
    return decorated


def _build(
    project: pipeline.Project,
    backend: Backend,
    selection: Selection,
    arches: list[str],
    results_root: Path,
) -> pipeline.BuildReport:
    """One pipeline.build for every backend command (local, mockbuild, ...)."""
    return pipeline.build(
        project,
        backend,
        selection.flavour,
        arches,
        selection.local_tarball,
        results_root,
        selection.buildid,
    )


# --- commands ----------------------------------------------------------------


@command(main_group)
def sources(options: Options) -> None:
    """Download every file listed in `sources` into the lookaside cache (verified)."""
    with _project(options) as project:
        fetched = pipeline.fetch_sources(project)
    rows = [
        {"file": e.filename, "path": str(path), "downloaded": downloaded}
        for e, path, downloaded in fetched
    ]

    def human() -> None:
        for row in rows:
            state = "downloaded" if row["downloaded"] else "cached"
            click.echo(f"{row['file']}: {state} ({row['path']})")

    _emit(options, {"sources": rows}, human)


@command(main_group)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def new_sources(options: Options, files: tuple[Path, ...]) -> None:
    """Import local FILES into the lookaside cache and make them the `sources` list."""
    with _project(options) as project:
        entries = pipeline.new_sources(project, list(files))
    _emit(
        options,
        {"sources": [dataclasses.asdict(e) for e in entries]},
        _echo_lines(e.line() for e in entries),
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
    with _project(options) as project:
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
    _emit(options, data, _echo_lines(lines))


@command(main_group)
@selection_options
def verrel(options: Options, selection: Selection) -> None:
    """Print the name-version-release the build would produce."""
    with _project(options) as project:
        project.check_flavour(selection.flavour)
        version = (
            pipeline.resolve_upstream(project, selection.local_tarball).version
            if selection.local_tarball
            else project.manifest.upstream
        )
        build = spec_module.identity(
            project.manifest, version, selection.flavour, selection.buildid
        )
        kernel = {arch: build.kernel_release(arch) for arch in project.manifest.arches}
    _emit(options, {"nvr": build.nvr, "kernel_release": kernel}, _echo_lines([build.nvr]))


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
    with _project(options) as project:
        up = pipeline.resolve_upstream(project, selection.local_tarball)
        inputs = pipeline.spec_inputs(project, up, selection.flavour, selection.buildid)
        text = spec_module.render(inputs, project.root / "specs")
        target = output or project.root / f"{project.manifest.name}.spec"
        spec_module.write(text, target)
    _emit(options, {"spec": str(target), "nvr": inputs.nvr}, _echo_lines([str(target)]))


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
    target_dir = (outdir or options.repo).resolve()
    with _project(options) as project, scratch_dir(target_dir, ".kxen-srpm-") as work:
        prepared = pipeline.prepare(
            project, selection.flavour, selection.local_tarball, work, selection.buildid
        )
        path = pipeline.build_srpm(project, prepared, target_dir)
    _emit(
        options,
        {"srpm": str(path), "nvr": prepared.nvr, "upstream": prepared.upstream.describe()},
        _echo_lines([str(path)]),
    )


@command(main_group)
@click.option("--arch", "arches", multiple=True, help="Arch to build (repeatable; default: all).")
@selection_options
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
    results_root: Path | None,
    workdir: Path | None,
) -> None:
    """Build binary RPMs on this machine with rpmbuild into results/<nvr>/<arch>/."""
    root = (results_root or options.repo / "results").resolve()
    with _project(options) as project:
        wanted = list(arches) or list(project.manifest.arches)
        backend = LocalBackend(project.runner, workdir.resolve() if workdir else build_area(root))
        report = _build(project, backend, selection, wanted, root)
    lines = [f"{r.arch}: ok in {r.seconds:.0f}s: {', '.join(r.rpms)}" for r in report.arches]
    _emit(
        options,
        {"report": dataclasses.asdict(report)},
        _echo_lines([*lines, f"results: {report.results_dir}"]),
    )


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
@RESULTS_OPTION
@click.argument("mock_args", nargs=-1, type=click.UNPROCESSED)
def mockbuild(
    options: Options,
    arches: tuple[str, ...],
    selection: Selection,
    roots: tuple[str, ...],
    jobs: int | None,
    no_clean: bool,
    results_root: Path | None,
    mock_args: tuple[str, ...],
) -> None:
    """Build binary RPMs in mock build roots, one per arch, into results/<nvr>/<arch>/.

    Arguments after `--` are passed to every mock run."""
    root = (results_root or options.repo / "results").resolve()
    cpus = os.cpu_count() or 1
    with _project(options) as project:
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
        )
        report = _build(project, backend, selection, wanted, root)
    lines = [
        f"{r.arch}: ok in {r.seconds:.0f}s ({chosen[r.arch]}): {', '.join(r.rpms)}"
        for r in report.arches
    ]
    _emit(
        options,
        {"report": dataclasses.asdict(report), "roots": chosen},
        _echo_lines([*lines, f"results: {report.results_dir}"]),
    )


@command(main_group)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def lint(options: Options, paths: tuple[Path, ...]) -> None:
    """Run rpmlint with the checkout's kernel-xen.rpmlintrc on specs and packages."""
    with _project(options) as project:
        rc = project.root / f"{project.manifest.name}.rpmlintrc"
        result = rpmlint(paths, rc, project.runner)
    if result.errors:
        raise LintError(f"rpmlint reported {result.errors} error(s)", details=result.error_lines)
    summary = {"errors": result.errors, "warnings": result.warnings, "lines": list(result.lines)}
    closing = f"{result.warnings} warning(s), no errors"
    _emit(options, summary, _echo_lines([*result.lines, closing]))


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
    type=click.Choice(tuple(verify_module.GUEST_NOTES)),
    help="Guest type the kernels must boot as (repeatable; default: all their arch supports).",
)
def verify(
    options: Options,
    packages: tuple[Path, ...],
    local_tarball: pipeline.UpstreamChoice,
    flavour: str,
    guests: tuple[str, ...],
) -> None:
    """Check built RPMs: metadata, payload, modules, config, Xen ELF notes and rpmlint."""
    with _project(options) as project, scratch_dir(project.cache, ".verify-") as scratch:
        report = verify_module.verify(
            project, list(packages), flavour, local_tarball, scratch, guests
        )
    if not report.ok:
        raise verify_module.VerifyFailed(report)
    lines = [check.describe() for check in report.checks]
    _emit(
        options,
        {"report": dataclasses.asdict(report)},
        _echo_lines([*lines, f"{len(report.checks)} checks passed"]),
    )


def _existing(dir_okay: bool = False, file_okay: bool = True) -> click.Path:
    return click.Path(exists=True, dir_okay=dir_okay, file_okay=file_okay, path_type=Path)


@command(main_group, name="boot-test")
@click.argument("package", type=_existing())
@click.option(
    "--mode",
    type=click.Choice(boottest.MODES),
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
    type=_existing(),
    default=None,
    help="Xen hypervisor image, e.g. /boot/xen-4.17.gz (default: Debian's).",
)
@click.option(
    "--dom0-kernel",
    type=_existing(),
    default=None,
    help="dom0 kernel image with its module tree beside it (default: Debian's).",
)
@click.option(
    "--toolstack",
    type=_existing(dir_okay=True, file_okay=False),
    default=None,
    help="Root holding xl, xenstored, xenconsoled and their libraries (default: Debian's).",
)
@click.option(
    "--busybox",
    type=_existing(),
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
    with _progress(options) as progress:
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
    _emit(
        options, {"result": dataclasses.asdict(result)}, _echo_lines([*retried, *stages, summary])
    )


@main_group.group(name="config")
def config_group() -> None:
    """Kconfig fragments: generate the full configs the spec ships."""


def config_targets(func: Callable[..., None]) -> Callable[..., None]:
    """--arch/--flavour (repeatable, default: all) and --upstream for the config commands."""
    options = (
        UPSTREAM_OPTION,
        click.option("--flavour", "flavours", multiple=True, help="Flavour (default: all)."),
        click.option("--arch", "arches", multiple=True, help="Arch (default: all)."),
    )
    for option in options:
        func = option(func)
    return func


def _targets(
    project: pipeline.Project, arches: tuple[str, ...], flavours: tuple[str, ...]
) -> list[configs.Target]:
    project.check_arches(list(arches))
    for flavour in flavours:
        project.check_flavour(flavour)
    return [
        configs.Target(arch, flavour)
        for flavour in (flavours or project.manifest.flavours)
        for arch in (arches or project.manifest.arches)
    ]


@command(config_group)
@config_targets
@click.option(
    "-o",
    "--outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write the configs.",
)
def generate(
    options: Options,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: pipeline.UpstreamChoice,
    outdir: Path,
) -> None:
    """Merge the fragments and resolve them with the kernel's own kconfig."""
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        up = pipeline.resolve_upstream(project, local_tarball)
        paths = pipeline.generate_configs(project, up, targets, outdir.resolve())
    _emit(options, {"configs": [str(p) for p in paths]}, _echo_lines(str(p) for p in paths))


@command(config_group)
@config_targets
@click.option("--strict", is_flag=True, help="Fail on any mismatch, unknown or invalid value (CI).")
@click.option("--show-new", is_flag=True, help="List every symbol that takes its default.")
def check(
    options: Options,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: pipeline.UpstreamChoice,
    strict: bool,
    show_new: bool,
) -> None:
    """Report values that did not survive Kconfig, and why; new, unknown, redefined symbols."""
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        up = pipeline.resolve_upstream(project, local_tarball)
        report = pipeline.check_configs(project, up, targets)
    lines = []
    for target in report.targets:
        found = [f for f in report.findings if f.target == target]
        shown = [f for f in found if show_new or f.kind != "new"]
        new = len(found) - len(shown)
        summary = f", {new} new symbol(s) take their default (--show-new)" if new else ""
        lines.append(f"{target.arch}/{target.flavour}: {len(shown)} finding(s){summary}")
        lines += [f"  {finding.describe()}" for finding in shown]
    lines += [
        f"stale allow-list entry (line {e.line}): {e.kind} {e.symbol}" for e in report.stale_allow
    ]
    if not report.ok(strict):
        failing = report.failing()
        raise ConfigCheckFailed(
            f"config check --strict: {len(failing)} failing finding(s), "
            f"{len(report.stale_allow)} stale allow-list entr(ies)",
            details=lines,
            payload=report.as_dict(),
        )
    _emit(options, report.as_dict(), _echo_lines(lines))


@command(config_group)
@click.argument("symbol")
@config_targets
def explain(
    options: Options,
    symbol: str,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: pipeline.UpstreamChoice,
) -> None:
    """Where SYMBOL is set, its final value per arch/flavour, and its Kconfig definition."""
    name = configcheck.symbol_name(symbol)
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        up = pipeline.resolve_upstream(project, local_tarball)
        found = pipeline.explain_symbol(project, up, name, targets)
    _emit(
        options,
        {"explanations": [e.as_dict() for e in found]},
        _echo_lines(e.describe() for e in found),
    )


def edit_options(func: Callable[..., None]) -> Callable[..., None]:
    """(--arch A... | --all-arches) [--flavour F]... [--layer L] [--upstream PATH]."""
    options = (
        click.option(
            "--layer",
            default=None,
            help="Layer to write (default: the most "
            "specific layer all selected arches/flavours share).",
        ),
        UPSTREAM_OPTION,
        click.option("--flavour", "flavours", multiple=True, help="Flavour (default: all)."),
        click.option("--all-arches", is_flag=True, help="Every arch of the manifest."),
        click.option("--arch", "arches", multiple=True, help="Arch (repeatable)."),
    )
    for option in options:
        func = option(func)
    return func


def _edit(
    options: Options,
    symbol: str,
    value: configs.Value,
    arches: tuple[str, ...],
    all_arches: bool,
    flavours: tuple[str, ...],
    layer: str | None,
    local_tarball: pipeline.UpstreamChoice,
) -> None:
    if bool(arches) == all_arches:
        raise InputError("name the arches: --arch A (repeatable) or --all-arches")
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        up = pipeline.resolve_upstream(project, local_tarball)
        edit, found = pipeline.set_symbol(project, up, symbol, value, targets, layer)
    where = f"{edit.path.relative_to(options.repo)}:{edit.line}"
    change = f"{edit.before} -> {edit.after}" if edit.before else f"added {edit.after}"
    data = {
        "file": str(edit.path),
        "line": edit.line,
        "before": edit.before,
        "after": edit.after,
        "effects": [
            {
                "arch": e.target.arch,
                "flavour": e.target.flavour,
                "value": e.actual,
                "from": e.winner,
                "reason": e.reason,
            }
            for e in found
        ],
    }
    _emit(options, data, _echo_lines([f"{where}: {change}", *(e.describe() for e in found)]))


@command(config_group, name="set")
@click.argument("assignment", metavar="CONFIG_X=VALUE")
@edit_options
def set_(options: Options, assignment: str, **selection: Any) -> None:
    """Set a symbol in the right fragment file and show what it did to the final configs."""
    name, sep, raw = assignment.partition("=")
    if not sep:
        raise InputError(f"{assignment!r}: expected CONFIG_X=VALUE")
    symbol = configcheck.symbol_name(name)
    (setting,) = configs.parse_fragment(Path("<command line>"), f"CONFIG_{symbol}={raw}")
    _edit(options, symbol, setting.value, **selection)


@command(config_group)
@click.argument("symbol", metavar="CONFIG_X")
@edit_options
def unset(options: Options, symbol: str, **selection: Any) -> None:
    """Mark a symbol `is not set` in the right fragment file and show the effect."""
    _edit(options, configcheck.symbol_name(symbol), None, **selection)


@command(config_group)
@click.argument("revisions", nargs=-1, metavar="[A] [B]")
@config_targets
@click.option(
    "--to-upstream",
    "new_tarball",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rebase preview: resolve configs/ (at revision A, default the working tree) on "
    "this kernel tarball too and show what changes and which fragment lines stop working.",
)
def diff(
    options: Options,
    revisions: tuple[str, ...],
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: pipeline.UpstreamChoice,
    new_tarball: Path | None,
) -> None:
    """Final-config differences between git revisions A and B of configs/ (default: HEAD
    and the working tree), or between two upstream trees (--to-upstream), by arch/flavour."""
    if new_tarball is not None:
        _rebase_preview(options, revisions, arches, flavours, local_tarball, new_tarball)
        return
    if len(revisions) > 2:
        raise InputError("config diff takes at most two revisions")
    defaults = ("HEAD", pipeline.WORKING_TREE)
    pair = (*revisions, *defaults[len(revisions) :])
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        up = pipeline.resolve_upstream(project, local_tarball)
        changes = pipeline.diff_configs(project, up, (pair[0], pair[1]), targets)
    lines = [f"{pair[0]} -> {pair[1]}: {len(changes)} change(s)", *_by_target(changes, [])]
    data = {"from": pair[0], "to": pair[1], "changes": [_change_dict(c) for c in changes]}
    _emit(options, data, _echo_lines(lines))


def _rebase_preview(
    options: Options,
    revisions: tuple[str, ...],
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: pipeline.UpstreamChoice,
    new_tarball: Path,
) -> None:
    if len(revisions) > 1:
        raise InputError("config diff --to-upstream takes at most one revision")
    revision = revisions[0] if revisions else pipeline.WORKING_TREE
    with _project(options) as project:
        targets = _targets(project, arches, flavours)
        old = pipeline.resolve_upstream(project, local_tarball)
        new = pipeline.resolve_upstream(project, new_tarball)
        preview = pipeline.rebase_preview(project, old, new, revision, targets)
    head = (
        f"Linux {old.version} -> Linux {new.version} ({revision}): "
        f"{len(preview.changes)} change(s), "
        f"{len(preview.regressions)} fragment line(s) stop working"
    )
    data = {
        "from": old.describe(),
        "to": new.describe(),
        "revision": revision,
        "changes": [_change_dict(c) for c in preview.changes],
        "regressions": [f.as_dict() for f in preview.regressions],
    }
    _emit(options, data, _echo_lines([head, *_by_target(preview.changes, preview.regressions)]))


def _by_target(
    changes: list[configcheck.ValueChange], findings: list[configcheck.Finding]
) -> list[str]:
    """Changes then findings, grouped under `arch/flavour:` headings in a stable order."""
    targets = {c.target for c in changes} | {f.target for f in findings}
    lines = []
    for target in sorted(targets, key=lambda t: (t.arch, t.flavour)):
        lines.append(f"{target.arch}/{target.flavour}:")
        lines += [f"  {f.describe()}" for f in findings if f.target == target]
        lines += [f"  {c.describe()}" for c in changes if c.target == target]
    return lines


def _change_dict(change: configcheck.ValueChange) -> dict[str, Any]:
    return {
        "arch": change.target.arch,
        "flavour": change.target.flavour,
        "symbol": change.symbol,
        "before": change.before,
        "after": change.after,
    }


class ConfigCheckFailed(ConfigError):
    def __init__(self, message: str, details: list[str], payload: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.payload = payload


# --- patches -------------------------------------------------------------------


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
    with _project(options) as project:
        listed = pipeline.list_patches(project)
    lines = [line for patch, changes in listed for line in _patch_lines(patch, changes)]
    _emit(
        options,
        {"patches": [_patch_dict(patch, changes) for patch, changes in listed]},
        _echo_lines(lines or ["the series is empty"]),
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
    with _project(options) as project:
        added = pipeline.add_patch(project, file, after, strip)
    where = f"patches/series:{added.patch.line}: added"
    _emit(
        options,
        {"added": _patch_dict(added.patch, added.changes), "after": after},
        _echo_lines([where, *_patch_lines(added.patch, added.changes)]),
    )


def _series_result(options: Options, report: patchapply.SeriesReport) -> None:
    version = report.upstream.get("version")
    closing = f"{report.total} patch(es) apply to Linux {version} as %prep applies them"
    _emit(options, {"report": dataclasses.asdict(report)}, _echo_lines([*report.lines(), closing]))


@command(patches_group, name="check")
@UPSTREAM_OPTION
def patches_check(options: Options, local_tarball: pipeline.UpstreamChoice) -> None:
    """Apply the series to a copy of the pristine tree as strictly as %prep (--fuzz=0)."""
    with _project(options) as project:
        up = pipeline.resolve_upstream(project, local_tarball)
        report = pipeline.check_patches(project, up)
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
    with _project(options) as project:
        up = pipeline.resolve_upstream(project, new_tarball)
        report = pipeline.refresh_patches(project, up)
    bad = [outcome for outcome in report.outcomes if not outcome.ok]
    if bad:
        raise patchapply.SeriesFailed(
            f"{len(bad)} of {report.total} patch(es) fail or need fuzz on Linux {up.version}",
            details=report.lines(),
            report=report,
        )
    _series_result(options, report)


# --- koji ----------------------------------------------------------------------


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
        _fail(options, error, {"task_id": task_id})
        raise


def _downloaded(options: Options, done: kojidriver.Downloaded) -> None:
    lines = [f"{arch}: {', '.join(files)}" for arch, files in sorted(done.arches.items())]
    _emit(
        options,
        {
            "task_id": done.task_id,
            "nvr": done.nvr,
            "results_dir": str(done.results_dir),
            "arches": done.arches,
        },
        _echo_lines([*lines, f"results: {done.results_dir}"]),
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
    with _project(options) as project:
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
            _emit(
                options,
                {"task_id": task_id, "watch": driver.profile.command("watch", task_id)},
                _echo_lines([str(task_id)]),
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
    with _project(options) as project:
        source = kojidriver.scm_url(project.root, project.runner, scm_url, commit)
        driver = _koji_driver(hub, project.progress)
        driver.login()
        target_name = target or project.manifest.name
        target_info = driver.check_target(target_name)
        driver.check_package(target_info, project.manifest.name)
        task_id = driver.submit(source, target_name, {})
        stderr.print(f"koji task {task_id}: {source} ({driver.profile.server})", markup=False)
        if nowait:
            _emit(
                options,
                {
                    "task_id": task_id,
                    "source": source,
                    "watch": driver.profile.command("watch", task_id),
                },
                _echo_lines([str(task_id)]),
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
    with _progress(options) as progress:
        driver = _koji_driver(hub, progress)
        tree = _watch_task(options, driver, task_id, cancel_on_interrupt)
    _emit(
        options,
        {"task_id": task_id, "state": tree.root.state, "tasks": tree.lines()},
        _echo_lines([f"koji task {task_id}: {tree.root.state}"]),
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
    with _progress(options) as progress:
        driver = _koji_driver(hub, progress)
        done = driver.download(task_id, root)
    _downloaded(options, done)


def main() -> None:
    try:
        main_group.main(prog_name="kxen", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # Bad command lines are input errors like any other: exit 2, one line, and JSON
        # for CI when it asked for JSON.
        where = f"kxen {exc.ctx.command_path.removeprefix('kxen').strip()}" if exc.ctx else "kxen"
        options = Options(Path.cwd(), Path.cwd(), as_json="--json" in sys.argv[1:])
        _fail(options, InputError(f"{where.strip()}: {exc.format_message()} (see --help)"))
    except click.exceptions.Abort:
        _fail(Options(Path.cwd(), Path.cwd()), Interrupted(signal.SIGINT))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
