"""The stages in order: manifest -> sources/upstream -> configs -> patches -> spec -> SRPM -> build.

Each command of the CLI is one walk down this pipeline, stopping where it has
what it needs; data only flows forward.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from kxen import manifest
from kxen.build import results, spec, srpm
from kxen.build.backends.base import ArchBuild, ArchResult, Backend, Run, Source
from kxen.config import fragments as configs
from kxen.errors import BuildError, InputError
from kxen.patches import series as patches
from kxen.project import (
    Project,
    UpstreamChoice,
    check_space,
    resolve_upstream,
    srpm_mib,
)
from kxen.release import distgit, lookaside
from kxen.support import fsutil, inputs
from kxen.support.fsutil import atomic_write_text, scratch_dir
from kxen.support.progress import Progress
from kxen.upstream import origin, signatures, sources
from kxen.versions import UpstreamVersion

if TYPE_CHECKING:  # imported where used: `kxen scratch-build --srpm` needs neither (rpm, yaml)
    from kxen.upstream import bump

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
    if new.stable_snapshot:
        raise InputError(f"--to {to}: kernel.org publishes no snapshot of a stable update")
    from kxen.upstream import bump

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
    """The default flavour's spec as `which` (the manifest before or after a bump) renders it."""
    inputs = spec_inputs(project, origin.named(which), "default", None, which)
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
    project: Project,
    up: origin.Upstream,
    flavour: str,
    buildid: str | None,
    which: manifest.Manifest | None = None,
) -> spec.SpecInputs:
    """What the spec of `flavour` is made of: the checkout's manifest (or `which`), the
    upstream files, the series and the config names."""
    described = which or project.manifest
    project.check_flavour(flavour)
    return spec.SpecInputs(
        manifest=described,
        upstream=up,
        flavour=flavour,
        buildid=spec.effective_buildid(described, flavour, buildid),
        patches=tuple(patches.load_series(project.root / "patches")),
        config_names=spec.config_names(described, up, flavour),
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
    from kxen.config.operations import generate_configs

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


@dataclass(frozen=True)
class Checkout:
    """The SRPM this checkout makes (`kxen srpm`): what `local`, `mockbuild` and
    `scratch-build` build unless scratch-build is handed an SRPM."""

    project: Project
    flavour: str
    local_tarball: UpstreamChoice
    buildid: str | None = None


@dataclass
class BuildReport:
    nvr: str
    backend: str
    upstream: dict[str, Any]
    srpm: str
    arches: list[ArchResult]
    results_dir: str
    seconds: float
    run: dict[str, Any] = field(default_factory=dict)
    """Where the build ran if not here (koji: hub, task id, what was submitted)."""

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.arches)


@dataclass(frozen=True)
class Submitted:
    """A build started and not followed (koji's `--nowait`)."""

    backend: str
    run: dict[str, Any]


class BuildFailed(BuildError):
    """An arch failed: its error, the lines that explain it, and where its logs are kept."""

    def __init__(self, report: BuildReport) -> None:
        failed = next(result for result in report.arches if not result.ok)
        log = Path(report.results_dir) / results.failed_name(failed.arch)
        log /= failed.logs[0] if failed.logs else "build.log"
        super().__init__(
            f"{failed.arch}: build failed: {failed.error} (log: {log})",
            details=failed.error_lines,
        )
        self.report = report
        failure = {"arch": failed.arch, "error": failed.error, "log": str(log)}
        self.payload = {"report": asdict(report), **report.run, "failures": [failure]}


@overload
def build(
    backend: Backend,
    source: Checkout | Source,
    arches: list[str],
    results_root: Path,
    progress: Progress,
) -> BuildReport: ...


@overload
def build(
    backend: Backend,
    source: Checkout | Source,
    arches: list[str],
    results_root: Path,
    progress: Progress,
    *,
    wait: bool,
) -> BuildReport | Submitted: ...


def build(
    backend: Backend,
    source: Checkout | Source,
    arches: list[str],
    results_root: Path,
    progress: Progress,
    *,
    wait: bool = True,
) -> BuildReport | Submitted:
    """Every binary build: `source` (this checkout's SRPM, an SRPM file, a koji SCM URL or
    task) built by `backend` for `arches` (empty: every arch the source builds for).

    Once the run knows its NVR, `results/<nvr>/` is locked and each arch is published
    there as it is collected: `<arch>/` when it built, `failed-<arch>/` with its logs when
    not, which stops the arches not started yet (BuildFailed). Without `wait`, returns as
    soon as the backend started (a koji task)."""
    started = time.monotonic()
    if isinstance(source, Checkout):
        source.project.check_flavour(source.flavour)
        source.project.check_arches(arches)
    _get_ready(backend, arches, results_root, progress)
    with scratch_dir(results_root, ".work-") as work:
        what, described = _what_to_build(source, arches, results_root, work)
        run = backend.start(what, arches, progress)
        if not wait:
            return Submitted(backend.name, run.record)
        report = _collect(backend, run, results_root, work, described, progress)
    report.seconds = round(time.monotonic() - started, 1)
    if not report.ok:
        raise BuildFailed(report)
    return report


def _get_ready(backend: Backend, arches: list[str], results_root: Path, progress: Progress) -> None:
    """Before any work: the results root exists, what killed runs left is gone (and
    said), and the backend can build."""
    fsutil.make_dirs(results_root)
    for found in [*results.reclaim_results(results_root), *backend.reclaim()]:
        progress.warn(found.describe())
    backend.check_host(arches)


def _what_to_build(
    source: Checkout | Source, arches: list[str], results_root: Path, work: Path
) -> tuple[Source, dict[str, Any]]:
    """What the backend is started on (the checkout's SRPM is built in `work`), and what
    the results record of where it came from."""
    if not isinstance(source, Checkout):
        return source, {}
    project = source.project
    rpms = {results_root: RPMS_PER_ARCH_MIB * len(arches)}
    prepared = prepare(
        project, source.flavour, source.local_tarball, work / "configs", source.buildid, rpms
    )
    path = build_srpm(project, prepared, work)
    return path, {"flavour": source.flavour, "upstream": prepared.upstream.describe()}


def _collect(
    backend: Backend,
    run: Run,
    results_root: Path,
    work: Path,
    described: dict[str, Any],
    progress: Progress,
) -> BuildReport:
    nvr = run.nvr()
    with results.locked_nvr(results_root, nvr) as nvr_dir:
        srpm_path = run.srpm(work)
        record = {"nvr": nvr, "backend": backend.name, "srpm": srpm_path.name}
        record |= described | run.record
        outcomes = _collect_arches(backend, run, srpm_path, nvr_dir, record, progress)
    return BuildReport(
        nvr=nvr,
        backend=backend.name,
        upstream=described.get("upstream", {}),
        srpm=srpm_path.name,
        arches=outcomes,
        results_dir=str(results_root / nvr),
        seconds=0.0,
        run=run.record,
    )


def _collect_arches(
    backend: Backend,
    run: Run,
    srpm_path: Path,
    nvr_dir: Path,
    record: dict[str, Any],
    progress: Progress,
) -> list[ArchResult]:
    """Each arch of `run` staged and published as it is collected; stops at the first
    failure.

    A backend with `jobs > 1` (mock) has up to that many arches collected at once, one
    thread each; once one fails, arches not started yet are not started. Ctrl-C/SIGTERM
    reach the main thread: it stops every process of the backend (their process groups)
    and re-raises."""
    with contextlib.closing(run.arches()) as builds:
        if backend.jobs <= 1:
            return _one_at_a_time(builds, srpm_path, nvr_dir, record, progress)
        return _at_once(backend, list(builds), srpm_path, nvr_dir, record, progress)


def _one_at_a_time(
    builds: Iterable[ArchBuild],
    srpm_path: Path,
    nvr_dir: Path,
    record: dict[str, Any],
    progress: Progress,
) -> list[ArchResult]:
    outcomes = []
    for arch in builds:
        progress.phase(f"{arch.doing} {arch.arch}", nvr_dir.name)
        outcome = _collect_arch(arch, srpm_path, nvr_dir, record, progress)
        outcomes.append(outcome)
        if not outcome.ok:
            break
    return outcomes


def _at_once(
    backend: Backend,
    builds: list[ArchBuild],
    srpm_path: Path,
    nvr_dir: Path,
    record: dict[str, Any],
    progress: Progress,
) -> list[ArchResult]:
    jobs = min(backend.jobs, len(builds))
    names = ", ".join(arch.arch for arch in builds)
    progress.phase(f"{builds[0].doing} {names}" if builds else "build", f"{jobs} at a time")
    failed = threading.Event()

    def one(arch: ArchBuild) -> ArchResult | None:
        if failed.is_set():
            return None
        outcome = _collect_arch(arch, srpm_path, nvr_dir, record, progress)
        if not outcome.ok:
            failed.set()
        return outcome

    pool = concurrent.futures.ThreadPoolExecutor(max(jobs, 1), thread_name_prefix="kxen-build")
    futures: list[concurrent.futures.Future[ArchResult | None]] = []
    try:
        futures = [pool.submit(one, arch) for arch in builds]
        done = [future.result() for future in futures]
    except BaseException:
        failed.set()
        for future in futures:
            future.cancel()
        backend.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [outcome for outcome in done if outcome is not None]


def _collect_arch(
    arch: ArchBuild, srpm_path: Path, nvr_dir: Path, record: dict[str, Any], progress: Progress
) -> ArchResult:
    with results.staging_for(nvr_dir, arch.arch) as staging:
        outcome = arch.collect(staging, progress)
        results.publish_arch(staging, nvr_dir, outcome, {**record, **arch.record}, srpm_path)
    return outcome


# --- dist-git ----------------------------------------------------------------


@dataclass(frozen=True)
class DistGitExport:
    """What `kxen dist-git` committed (`commit` None: the checkout held it already)."""

    checkout: Path
    nvr: str
    commit: str | None
    files: list[str]
    removed: list[str]
    lookaside_files: list[distgit.LookasideFile]
    uploads: list[lookaside.Uploaded]


def export_dist_git(
    source: Checkout,
    directory: Path,
    uploader: lookaside.Uploader | None = None,
) -> DistGitExport:
    """`kxen dist-git`: the spec, the generated configs, the patches, `sources` and
    `.gitignore` committed into a clean dist-git checkout as one commit; with `uploader`,
    the upstream files go to the lookaside first, so that no commit names a file the
    lookaside lacks. On any failure the checkout stays as it was."""
    project = source.project
    target = distgit.Checkout(directory, project.runner)
    project.reclaim(target.git_dir)  # what a killed export left
    with target.locked_scratch() as scratch:
        prepared = prepare(
            project, source.flavour, source.local_tarball, scratch / "configs", source.buildid
        )
        upstream = _lookaside_files(prepared)
        blobs = _staged(project, prepared, upstream, target, scratch / "tree")
        uploads = upload_lookaside(uploader, upstream, project.progress) if uploader else []
        project.progress.phase("commit", str(directory))
        origin_text = ", ".join(spec.shipped_names(prepared.upstream))
        message = distgit.commit_message(
            prepared.nvr, distgit.source_commit(project.root, project.runner), origin_text
        )
        done = target.commit(blobs, message, scratch)
    return DistGitExport(
        directory, prepared.nvr, done.commit, sorted(b.name for b in blobs),
        list(done.removed), upstream, uploads,
    )  # fmt: skip


def upload_lookaside(
    uploader: lookaside.Uploader, files: list[distgit.LookasideFile], progress: Progress
) -> list[lookaside.Uploaded]:
    """Each file to the lookaside unless it has it (`kxen dist-git --upload`, `kxen
    lookaside upload`)."""
    uploads = []
    for item in files:
        progress.phase("lookaside", item.name)
        uploads.append(uploader.upload(item.path, item.name, item.sha512))
    return uploads


def _lookaside_files(prepared: Prepared) -> list[distgit.LookasideFile]:
    """The upstream files (Source0 and kernel.org's patch), under the names the spec gives them."""
    shipped = prepared.sources[: len(prepared.upstream.files)]
    return [
        distgit.LookasideFile(s.name, s.path, sources.file_digest(s.path, distgit.LOOKASIDE_HASH))
        for s in shipped
    ]


def _staged(
    project: Project,
    prepared: Prepared,
    upstream: list[distgit.LookasideFile],
    target: distgit.Checkout,
    staging: Path,
) -> list[distgit.Blob]:
    """Every file the commit holds, written into `staging` (the configs where kxen
    generated them); patches are read through the checkout's input gate."""
    fsutil.make_dirs(staging)
    texts = {f"{project.manifest.name}.spec": prepared.spec_text}
    blobs = [distgit.Blob(path.name, path) for path in prepared.config_files]
    for patch in prepared.spec_inputs.patches:
        data = inputs.read_bytes(patch.path, project.root, inputs.PATCH_FILE)
        fsutil.atomic_write_bytes(staging / patch.name, data)
        blobs.append(distgit.Blob(patch.name, staging / patch.name))
    blobs += [distgit.Blob(name, staging / name) for name in texts]
    distgit.check_names(blobs, upstream)
    head = target.head()
    texts[distgit.SOURCES] = distgit.sources_text(upstream)
    previous_ignore = target.committed_text(head, distgit.GITIGNORE)
    texts[distgit.GITIGNORE] = distgit.gitignore_text(previous_ignore, upstream)
    texts[distgit.RECORD] = distgit.record_text(b.name for b in blobs)
    for name, text in texts.items():
        atomic_write_text(staging / name, text)
    return [*blobs, *(distgit.Blob(n, staging / n) for n in distgit.RESERVED)]
