"""The stages in order: manifest -> sources/upstream -> configs -> patches -> spec -> SRPM -> build.

Each command of the CLI is one walk down this pipeline, stopping where it has
what it needs; data only flows forward.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import (
    bump,
    configcheck,
    configedit,
    configs,
    fsutil,
    inputs,
    integrity,
    kconfig,
    manifest,
    patchapply,
    patches,
    results,
    signatures,
    sources,
    spec,
    srpm,
    toolchain,
    upstream,
)
from .backends.base import ArchResult, Backend, BuildRequest
from .errors import BuildError, ConfigError, InputError, KxenError
from .fsutil import atomic_write_text, scratch_dir
from .progress import Progress
from .runner import Runner
from .versions import UpstreamVersion

CACHE_SCRATCH_DEPTH = 3
"""How deep scratch directories sit in the cache (`kconfig/<tree>/.merge-...`)."""


def default_cache_dir() -> Path:
    explicit = os.environ.get("KXEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kxen"


@dataclass
class Project:
    """A checkout of this repository, and the machine-local state kxen uses with it."""

    root: Path
    cache: Path
    runner: Runner
    progress: Progress
    manifest: manifest.Manifest = field(init=False)

    def __post_init__(self) -> None:
        self.manifest = manifest.load(self.root / manifest.MANIFEST_NAME)
        self.reclaim(self.cache, depth=CACHE_SCRATCH_DEPTH)

    def reclaim(self, directory: Path, depth: int = 1) -> None:
        """Remove what killed kxen runs left in `directory` (their scratch directories),
        and say so."""
        for found in fsutil.reclaim(directory, depth=depth):
            self.progress.warn(found.describe())

    @property
    def quarantine(self) -> integrity.Quarantine:
        """Where corrupt cache entries are kept as evidence, warning through `progress`."""
        return integrity.Quarantine.in_cache(self.cache, self.progress)

    @property
    def lookaside(self) -> sources.Lookaside:
        return sources.Lookaside(self.cache / "lookaside", self.quarantine)

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    def check_flavour(self, flavour: str) -> None:
        if flavour not in self.manifest.flavours:
            known = ", ".join(self.manifest.flavours)
            raise InputError(f"unknown flavour {flavour!r} (the manifest has {known})")

    def check_arches(self, arches: list[str]) -> None:
        for arch in arches:
            if arch not in self.manifest.arches:
                raise InputError(
                    f"unknown arch {arch!r} (the manifest has {', '.join(self.manifest.arches)})"
                )


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
    up = upstream.named(which)
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


@dataclass(frozen=True)
class GitSnapshot:
    """`--upstream CHECKOUT --ref REF`: build a snapshot of a kernel git checkout."""

    repo: Path
    ref: str


UpstreamChoice = Path | GitSnapshot | None
"""A local tarball, a git snapshot, or None for the manifest's kernel.org files."""


def resolve_upstream(project: Project, local_tarball: UpstreamChoice) -> upstream.Upstream:
    project.progress.phase("sources")
    if isinstance(local_tarball, GitSnapshot):
        project.progress.phase("snapshot", f"git archive {local_tarball.ref}")
        return upstream.from_git(
            local_tarball.repo, local_tarball.ref, project.cache, project.runner, project.quarantine
        )
    if local_tarball is not None:
        return upstream.from_tarball(local_tarball, project.cache)
    return upstream.from_manifest(
        project.manifest, project.lookaside, project.progress.transfer, project.runner
    )


# --- configs, spec, SRPM ---------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    upstream: upstream.Upstream
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
    project: Project, up: upstream.Upstream, flavour: str, buildid: str | None
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


def generate_configs(
    project: Project, up: upstream.Upstream, targets: list[configs.Target], outdir: Path
) -> list[Path]:
    check_space(project, up, {outdir: 1 + len(targets)})
    project.progress.phase("tree", f"Linux {up.version}")
    tree = _prepared_tree(project, up, integrity.CONFIG_INPUTS)
    project.progress.phase("configs", ", ".join(f"{t.arch}/{t.flavour}" for t in targets))
    work = project.cache / "kconfig" / up.identity
    try:
        resolved = configs.generate(
            project.configs_dir,
            targets,
            tree,
            work,
            project.runner,
            toolchain.fingerprint(),
            project.quarantine,
        )
    except ConfigError as lost:
        raise _explain_lost_values(project, up, targets, lost) from None
    return configs.write_configs(resolved, up.version.kernelversion, outdir)


def _explain_lost_values(
    project: Project, up: upstream.Upstream, targets: list[configs.Target], lost: ConfigError
) -> KxenError:
    """kconfig dropped requested values: say why, in Kconfig terms (only paid on failure).

    Unknown symbols and values invalid for their type are input errors (exit 2); values
    Kconfig could not give are config errors (exit 4) with the unmet dependency."""
    report = check_configs(project, up, targets)
    failing = [f for f in report.findings if f.kind in configcheck.FAILING_KINDS]
    if not failing:
        return lost
    details = [f"{f.target.arch}/{f.target.flavour}: {f.describe()}" for f in failing]
    if any(f.kind in ("unknown", "invalid") for f in failing):
        return InputError(f"{len(failing)} fragment value(s) cannot be used", details=details)
    return ConfigError(f"{len(failing)} requested config value(s) did not survive", details=details)


def _kconfig_models(
    project: Project, up: upstream.Upstream, targets: list[configs.Target]
) -> tuple[Path, dict[str, kconfig.KconfigModel]]:
    project.progress.phase("tree", f"Linux {up.version}")
    tree = _prepared_tree(project, up, integrity.CONFIG_INPUTS)
    models = {}
    for arch in sorted({target.arch for target in targets}):
        project.progress.phase("kconfig", f"reading Kconfig for {arch}")
        models[arch] = kconfig.load(tree, arch, _probe_dir(project, up))
    return tree, models


def check_configs(
    project: Project, up: upstream.Upstream, targets: list[configs.Target]
) -> configcheck.CheckReport:
    """`kxen config check`: every target resolved with its arch's Kconfig model.

    Each arch's model is loaded and checked in a process of its own (Kconfig parsing
    is CPU-bound Python), as many at once as there are CPUs."""
    project.progress.phase("tree", f"Linux {up.version}")
    tree = _prepared_tree(project, up, integrity.CONFIG_INPUTS)
    by_arch: dict[str, list[configs.Target]] = {}
    for target in targets:
        by_arch.setdefault(target.arch, []).append(target)
    jobs = [
        _ArchCheck(
            project.configs_dir, arch, tuple(group), tree, _probe_dir(project, up), project.root
        )
        for arch, group in sorted(by_arch.items())
    ]
    project.progress.phase("check", ", ".join(f"{t.arch}/{t.flavour}" for t in targets))
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            parts = list(pool.map(_check_arch, jobs))
    else:
        parts = [_check_arch(job) for job in jobs]
    found = [finding for part in parts for finding in part]
    return configcheck.report(project.configs_dir, targets, found)


@dataclass(frozen=True)
class _ArchCheck:
    configs_dir: Path
    arch: str
    targets: tuple[configs.Target, ...]
    tree: Path
    probe_dir: Path
    repo_root: Path


def _check_arch(job: _ArchCheck) -> list[configcheck.Finding]:
    model = kconfig.load(job.tree, job.arch, job.probe_dir)
    return configcheck.findings(
        job.configs_dir, job.targets, job.tree, {job.arch: model}, job.repo_root
    )


def _probe_dir(project: Project, up: upstream.Upstream) -> Path:
    directory = project.cache / "kconfig" / up.identity
    kconfig.ProbeCache.check_directory(directory, project.quarantine)  # before any fork
    return directory


def _prepared_tree(project: Project, up: upstream.Upstream, scope: integrity.Scope) -> Path:
    """The cached tree, verified in `scope`: what the caller reads of it."""
    return upstream.prepared_tree(
        up, project.cache, project.runner, scope=scope, quarantine=project.quarantine
    )


def explain_symbol(
    project: Project, up: upstream.Upstream, symbol: str, targets: list[configs.Target]
) -> list[configcheck.Explanation]:
    tree, models = _kconfig_models(project, up, targets)
    project.progress.phase("explain", f"CONFIG_{symbol}")
    return configcheck.explain(project.configs_dir, symbol, targets, tree, models, project.root)


def set_symbol(
    project: Project,
    up: upstream.Upstream,
    symbol: str,
    value: configs.Value,
    targets: list[configs.Target],
    layer: str | None,
) -> tuple[configedit.Edit, list[configcheck.Effect]]:
    """`kxen config set/unset`: validate against Kconfig, write one line, show the effect."""
    flavours = configs.load_layers(project.configs_dir)
    everyone = [
        configs.Target(arch, flavour)
        for flavour in project.manifest.flavours
        for arch in project.manifest.arches
    ]
    chosen = configedit.choose_layer(targets, everyone, flavours, layer)
    touched = configedit.users_of(chosen, everyone, flavours)
    tree, models = _kconfig_models(project, up, touched)
    for explained in configcheck.explain(
        project.configs_dir, symbol, targets, tree, models, project.root
    ):
        model = models[explained.target.arch]
        if not model.valid_value(symbol, value):
            ranges = "; ".join(explained.info.ranges)
            raise InputError(
                f"CONFIG_{symbol}: {configs.show(value)} is not a valid "
                f"{model.symbol_type(symbol)} value for {explained.target.arch}/"
                f"{explained.target.flavour}" + (f" (range {ranges})" if ranges else "")
            )
    project.progress.phase("edit", f"{chosen}: CONFIG_{symbol}")
    edit = configedit.write_setting(project.configs_dir, chosen, symbol, value)
    found = configcheck.effects(
        project.configs_dir, symbol, value, touched, tree, models, project.root
    )
    return edit, found


WORKING_TREE = "WORKTREE"


def diff_configs(
    project: Project,
    up: upstream.Upstream,
    revisions: tuple[str, str],
    targets: list[configs.Target],
) -> list[configcheck.ValueChange]:
    """`kxen config diff A B`: final-config differences between two revisions of configs/."""
    tree, models = _kconfig_models(project, up, targets)
    finals = []
    with scratch_dir(project.cache, ".diff-") as scratch:
        for index, revision in enumerate(revisions):
            project.progress.phase("diff", f"resolving {revision}")
            configs_dir = _configs_at(project, revision, scratch / str(index))
            finals.append(configcheck.final_values(configs_dir, targets, tree, models))
    return configcheck.diff_values(finals[0], finals[1])


def rebase_preview(
    project: Project,
    old: upstream.Upstream,
    new: upstream.Upstream,
    revision: str,
    targets: list[configs.Target],
) -> configcheck.RebasePreview:
    """`kxen config diff --to-upstream NEW`: configs/ at `revision` on the old and new tree."""
    with scratch_dir(project.cache, ".rebase-") as scratch:
        configs_dir = _configs_at(project, revision, scratch / "configs-at")
        finals, reports = [], []
        for up in (old, new):  # one tree's models at a time: they are ~60 MiB per arch
            tree, models = _kconfig_models(project, up, targets)
            project.progress.phase("diff", f"resolving on Linux {up.version}")
            finals.append(configcheck.final_values(configs_dir, targets, tree, models))
            reports.append(configcheck.check(configs_dir, targets, tree, models, project.root))
            del models
    return configcheck.RebasePreview(
        configcheck.diff_values(finals[0], finals[1]),
        configcheck.regressions(reports[0], reports[1]),
    )


def _configs_at(project: Project, revision: str, into: Path) -> Path:
    """configs/ as of a git revision of the checkout (or the working tree)."""
    if revision == WORKING_TREE:
        return project.configs_dir
    into.mkdir(parents=True)
    tarball = into / "configs.tar"
    archive = project.runner.run(
        ["git", "-C", project.root, "archive", "--format=tar", "-o", tarball, revision, "configs"],
        check=False,
    )
    if not archive.ok:
        raise InputError(f"git revision {revision!r}: {archive.output.strip().splitlines()[-1]}")
    project.runner.run(["tar", "-xf", tarball, "-C", into])
    return into / "configs"


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


CACHE_WORK_MIB = 64
"""Cache space any command may use: configs, kconfig build directories, probes."""
TREE_UNPACK_RATIO = 12
"""An unpacked kernel tree takes about this many times its xz tarball (6.1: 1.4 GB/140 MB)."""
RPMS_PER_ARCH_MIB = 256
"""A default kernel-xen and its devel package of one arch, with room to spare (27 MB in 6.1)."""


def srpm_mib(up: upstream.Upstream) -> int:
    """The SRPM's size, about: its sources (configs and patches are small)."""
    return (sum(path.stat().st_size for path in up.files) >> 20) + 16


def check_space(project: Project, up: upstream.Upstream, outputs: Mapping[Path, int]) -> None:
    """Refuse (exit 10) before any work if a directory the command writes lacks room:
    `outputs`, and the cache (the unpacked tree too, if it is not cached yet)."""
    needs = dict(outputs)
    cache = CACHE_WORK_MIB
    if not upstream.tree_is_cached(up, project.cache):
        cache += (up.tarball.stat().st_size >> 20) * TREE_UNPACK_RATIO
    needs[project.cache] = needs.get(project.cache, 0) + cache
    fsutil.preflight(needs)


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


def list_patches(project: Project) -> list[tuple[patches.Patch, list[patches.FileChange]]]:
    """`kxen patches list`: the series in order and the files each patch touches."""
    project.progress.phase("patches", "reading the series")
    series = patches.load_series(project.root / "patches")
    return [(patch, patches.file_changes(patch.path, patch.strip)) for patch in series]


def add_patch(project: Project, source: Path, after: str | None, strip: int) -> patches.Added:
    """`kxen patches add`: copy the patch into patches/ and list it in the series."""
    project.progress.phase("patches", f"adding {source.name}")
    return patches.add_patch(project.root / "patches", source, after, strip)


def check_patches(project: Project, up: upstream.Upstream) -> patchapply.SeriesReport:
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


def refresh_patches(project: Project, up: upstream.Upstream) -> patchapply.SeriesReport:
    """`kxen patches refresh`: every patch against another upstream tree (after a bump),
    through the whole series; the caller decides what counts as failure."""
    return _apply_to_copy(project, up, keep_going=True)


def _apply_to_copy(
    project: Project, up: upstream.Upstream, *, keep_going: bool
) -> patchapply.SeriesReport:
    series = patches.load_series(project.root / "patches")
    project.progress.phase("tree", f"Linux {up.version}")
    pristine = _prepared_tree(project, up, integrity.WHOLE)
    project.progress.phase("copy", f"cp -al {pristine.name}")
    # Beside the cached trees: hard links need the same file system.
    with patchapply.hardlinked_copy(pristine, pristine.parent.parent, project.runner) as tree:
        outcomes = patchapply.apply_series(
            tree, series, project.runner, project.progress, keep_going=keep_going
        )
        project.progress.phase("cleanup", "removing the scratch tree")
    return patchapply.SeriesReport(up.describe(), len(series), outcomes)


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
