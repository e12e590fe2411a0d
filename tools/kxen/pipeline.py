"""The stages in order: manifest -> sources/upstream -> configs -> patches -> spec -> SRPM -> build.

Each command of the CLI is one walk down this pipeline, stopping where it has
what it needs; data only flows forward.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxen import manifest
from kxen.build import results, spec, srpm
from kxen.build.backends.base import ArchResult, Backend, BuildRequest
from kxen.config import fragments as configs
from kxen.config.operations import generate_configs
from kxen.errors import BuildError, InputError
from kxen.patches import series as patches
from kxen.project import (
    Project,
    UpstreamChoice,
    check_space,
    resolve_upstream,
    srpm_mib,
)
from kxen.support import fsutil, inputs
from kxen.support.fsutil import atomic_write_text, scratch_dir
from kxen.support.progress import Progress
from kxen.support.runner import Runner
from kxen.upstream import bump, origin, signatures, sources
from kxen.versions import UpstreamVersion

# --- sources ---------------------------------------------------------------


def fetch_sources(project: Project) -> list[tuple[sources.SourceEntry, Path, bool]]:
    """`kxen sources`: every file listed in `sources` into the lookaside cache."""
    version = project.manifest.upstream
    fetched = []
    for entry in sources.parse_sources(project.root / sources.SOURCES_NAME):
        try:
            relative = version.path_of(entry.filename)
        except ValueError:
            raise InputError(
                f"{project.root / sources.SOURCES_NAME}: {entry.filename} is not an upstream "
                f"file of {version}; import it with kxen new-sources"
            ) from None
        urls = sources.mirror_urls(project.manifest.mirrors, relative)
        project.progress.phase("sources", entry.filename)
        verifier = signatures.verifier_for(project.manifest, entry.filename, project.runner)
        path, downloaded = project.lookaside.fetch(entry, urls, project.progress.transfer, verifier)
        fetched.append((entry, path, downloaded))
    return fetched


@dataclass(frozen=True)
class Bumped:
    plan: bump.Plan
    entries: list[sources.SourceEntry]
    spec_diff: list[str]


def bump_version(
    project: Project,
    to: str,
    release: int | None,
    message: str | None,
    author: str | None,
    force: bool,
    today: dt.date,
) -> Bumped:
    """`kxen bump`: new version, release, changelog and sources, written only if all of it
    (downloads and signature checks included) succeeded."""
    current = project.manifest
    try:
        new = UpstreamVersion.parse(to)
    except ValueError as exc:
        raise InputError(f"--to: {exc}") from None
    number = bump.target_release(current, new, release)
    bump.check_direction(current, new, number, force)
    who = author or os.environ.get("RPM_PACKAGER") or current.changelog[0].author
    change = message or bump.default_change(new, current.upstream)
    text = inputs.read_text(current.path, current.root)
    plan = bump.plan(current, text, new, number, change, who, today)
    edited = manifest.parse(plan.manifest_text, current.path)
    sources_path = project.root / sources.SOURCES_NAME
    listed = sources.parse_sources(sources_path)
    entries = [_bumped_entry(project, edited, name, listed) for name in new.files]
    retired = set(current.upstream.files) | set(new.files)
    entries += [entry for entry in listed if entry.filename not in retired]
    diff = bump.spec_diff(
        _rendered_spec(project, current), _rendered_spec(project, edited), Path("kernel-xen.spec")
    )
    sources.write_sources(sources_path, entries)
    atomic_write_text(current.path, plan.manifest_text)
    return Bumped(plan, entries, diff)


def _bumped_entry(
    project: Project, edited: manifest.Manifest, name: str, listed: list[sources.SourceEntry]
) -> sources.SourceEntry:
    known = next((entry for entry in listed if entry.filename == name), None)
    if known is not None:
        return known
    project.progress.phase("sources", name)
    urls = sources.mirror_urls(edited.mirrors, edited.upstream.path_of(name))
    verifier = signatures.verifier_for(edited, name, project.runner)
    return project.lookaside.adopt(name, urls, project.progress.transfer, verifier)


def _rendered_spec(project: Project, which: manifest.Manifest) -> str:
    up = origin.named(which)
    inputs = spec.SpecInputs(
        manifest=which,
        upstream=up,
        flavour="default",
        buildid=spec.effective_buildid(which, "default", None),
        patches=tuple(patches.load_series(project.root / "patches")),
        config_names=spec.config_names(which, up, "default"),
    )
    return spec.render(inputs, project.root / "specs")


def new_sources(project: Project, files: list[Path]) -> list[sources.SourceEntry]:
    """`kxen new-sources`: import local files and make them the whole `sources` list."""
    entries = [project.lookaside.import_file(path) for path in files]
    sources.write_sources(project.root / sources.SOURCES_NAME, entries)
    return entries








# --- configs, spec, SRPM ---------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    upstream: origin.Upstream
    spec_inputs: spec.SpecInputs
    spec_text: str
    config_files: tuple[Path, ...]

    @property
    def nvr(self) -> str:
        return self.spec_inputs.nvr

    @property
    def sources(self) -> list[srpm.Source]:
        """Every file the spec declares, under the name it declares it: a local tarball
        ships under kxen's canonical name, not the one it had on disk."""
        upstream_files = zip(spec.shipped_names(self.upstream), self.upstream.files, strict=True)
        return [
            *(srpm.Source(name, path) for name, path in upstream_files),
            *(srpm.Source(path.name, path) for path in self.config_files),
            *(srpm.Source(patch.name, patch.path) for patch in self.spec_inputs.patches),
        ]


def spec_inputs(
    project: Project, up: origin.Upstream, flavour: str, buildid: str | None
) -> spec.SpecInputs:
    project.check_flavour(flavour)
    return spec.SpecInputs(
        manifest=project.manifest,
        upstream=up,
        flavour=flavour,
        buildid=spec.effective_buildid(project.manifest, flavour, buildid),
        patches=tuple(patches.load_series(project.root / "patches")),
        config_names=spec.config_names(project.manifest, up, flavour),
        local_tarball_sha512=up.tarball_sha512,
    )






























def prepare(
    project: Project,
    flavour: str,
    local_tarball: UpstreamChoice,
    workdir: Path,
    buildid: str | None = None,
    outputs: Mapping[Path, int] | None = None,
) -> Prepared:
    """Everything the SRPM is made of, with configs generated into `workdir`.

    Before any work, the free space of every directory the command writes is checked:
    `workdir` (where the SRPM is built), the cache and `outputs` (MiB each)."""
    # The SRPM is built beside `workdir` (under -o or the results root): refused before any work.
    srpm.check_rpm_path(workdir, "work directory")
    up = resolve_upstream(project, local_tarball)
    check_space(project, up, {workdir: srpm_mib(up), **(outputs or {})})
    made = spec_inputs(project, up, flavour, buildid)
    project.progress.phase("spec")
    spec_text = spec.render(made, project.root / "specs")
    targets = [configs.Target(arch, flavour) for arch in project.manifest.arches]
    config_files = generate_configs(project, up, targets, workdir)
    return Prepared(up, made, spec_text, tuple(config_files))


RPMS_PER_ARCH_MIB = 256
"""A default kernel-xen and its devel package of one arch, with room to spare (27 MB in 6.1)."""






def build_srpm(project: Project, prepared: Prepared, outdir: Path) -> Path:
    project.progress.phase("srpm", prepared.nvr)
    return srpm.build_srpm(
        f"{project.manifest.name}.spec",
        prepared.spec_text,
        prepared.sources,
        outdir,
        project.runner,
    )


# --- patches ---------------------------------------------------------------












# --- binary builds ---------------------------------------------------------


@dataclass
class BuildReport:
    nvr: str
    backend: str
    upstream: dict[str, Any]
    srpm: str
    arches: list[ArchResult]
    results_dir: str
    seconds: float

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.arches)


def build(
    project: Project,
    backend: Backend,
    flavour: str,
    arches: list[str],
    local_tarball: UpstreamChoice,
    results_root: Path,
    buildid: str | None = None,
) -> BuildReport:
    """SRPM once, then one backend build per arch, each published on success."""
    started = time.monotonic()
    project.check_flavour(flavour)
    project.check_arches(arches)
    fsutil.make_dirs(results_root)
    for found in [*results.reclaim_results(results_root), *backend.reclaim()]:
        project.progress.warn(found.describe())
    backend.check_host(arches)
    with scratch_dir(results_root, ".work-") as work:
        rpms = {results_root: RPMS_PER_ARCH_MIB * len(arches)}
        prepared = prepare(project, flavour, local_tarball, work / "configs", buildid, rpms)
        with results.locked_nvr(results_root, prepared.nvr) as nvr_dir:
            srpm_path = build_srpm(project, prepared, work)
            record = {
                "nvr": prepared.nvr,
                "flavour": flavour,
                "backend": backend.name,
                "upstream": prepared.upstream.describe(),
                "srpm": srpm_path.name,
            }
            outcomes = build_arches(
                backend, srpm_path, arches, nvr_dir, record, project.runner, project.progress
            )
    report = BuildReport(
        nvr=prepared.nvr,
        backend=backend.name,
        upstream=prepared.upstream.describe(),
        srpm=srpm_path.name,
        arches=outcomes,
        results_dir=str(results_root / prepared.nvr),
        seconds=round(time.monotonic() - started, 1),
    )
    if not report.ok:
        failed = next(result for result in outcomes if not result.ok)
        log_name = failed.logs[0] if failed.logs else "build.log"
        log = results_root / prepared.nvr / f"failed-{failed.arch}" / log_name
        raise BuildFailed(
            f"{failed.arch}: build failed: {failed.error} (log: {log})", failed.error_lines, report
        )
    return report


class BuildFailed(BuildError):
    def __init__(self, message: str, details: list[str], report: BuildReport) -> None:
        super().__init__(message, details=details)
        self.report = report


def build_arches(
    backend: Backend,
    srpm_path: Path,
    arches: list[str],
    nvr_dir: Path,
    record: dict[str, Any],
    runner: Runner,
    progress: Progress,
) -> list[ArchResult]:
    """One backend build per arch, each published as it finishes; stops at the first failure.

    Backends with `jobs > 1` (mock) build up to that many arches at once, one thread each;
    once one fails, arches not started yet are not started. Ctrl-C/SIGTERM reach the main
    thread: it stops every command of every thread (their process groups) and re-raises."""
    jobs = min(getattr(backend, "jobs", 1), len(arches))
    if jobs <= 1:
        outcomes = []
        for arch in arches:
            progress.phase(f"build {arch}", srpm_path.name.removesuffix(".src.rpm"))
            outcome = _build_arch(backend, srpm_path, arch, nvr_dir, record, progress)
            outcomes.append(outcome)
            if not outcome.ok:
                break
        return outcomes
    progress.phase(f"build {', '.join(arches)}", f"{jobs} at a time")
    failed = threading.Event()

    def one(arch: str) -> ArchResult | None:
        if failed.is_set():
            return None
        outcome = _build_arch(backend, srpm_path, arch, nvr_dir, record, progress)
        if not outcome.ok:
            failed.set()
        return outcome

    pool = concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix="kxen-build")
    futures: list[concurrent.futures.Future[ArchResult | None]] = []
    try:
        futures = [pool.submit(one, arch) for arch in arches]
        done = [future.result() for future in futures]
    except BaseException:
        failed.set()
        for future in futures:
            future.cancel()
        runner.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [outcome for outcome in done if outcome is not None]


def _build_arch(
    backend: Backend,
    srpm_path: Path,
    arch: str,
    nvr_dir: Path,
    record: dict[str, Any],
    progress: Progress,
) -> ArchResult:
    with results.staging_for(nvr_dir, arch) as staging:
        outcome = backend.build(BuildRequest(srpm_path, arch, staging), progress)
        if outcome.ok:
            if not (staging / srpm_path.name).exists():  # mock leaves the rebuilt SRPM
                os.link(srpm_path, staging / srpm_path.name)
            results.publish(staging, nvr_dir / arch, outcome, record)
            shutil.rmtree(nvr_dir / f"failed-{arch}", ignore_errors=True)  # superseded
        else:
            results.publish(staging, nvr_dir / f"failed-{arch}", outcome, record)
    return outcome
