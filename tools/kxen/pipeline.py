"""The stages in order: manifest -> sources/upstream -> configs -> patches -> spec -> SRPM -> build.

Each command of the CLI is one walk down this pipeline, stopping where it has
what it needs; data only flows forward.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import (
    configcheck,
    configedit,
    configs,
    kconfig,
    manifest,
    patches,
    results,
    sources,
    spec,
    srpm,
    toolchain,
    upstream,
)
from .backends.base import ArchResult, Backend, BuildRequest
from .errors import BuildError, ConfigError, InputError, KxenError
from .fsutil import scratch_dir
from .progress import Progress
from .runner import Runner


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

    @property
    def lookaside(self) -> sources.Lookaside:
        return sources.Lookaside(self.cache / "lookaside")

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
        path, downloaded = project.lookaside.fetch(entry, urls, project.progress.transfer)
        fetched.append((entry, path, downloaded))
    return fetched


def new_sources(project: Project, files: list[Path]) -> list[sources.SourceEntry]:
    """`kxen new-sources`: import local files and make them the whole `sources` list."""
    entries = [project.lookaside.import_file(path) for path in files]
    sources.write_sources(project.root / sources.SOURCES_NAME, entries)
    return entries


def resolve_upstream(project: Project, local_tarball: Path | None) -> upstream.Upstream:
    project.progress.phase("sources")
    if local_tarball is not None:
        return upstream.from_tarball(local_tarball, project.cache)
    return upstream.from_manifest(project.manifest, project.lookaside, project.progress.transfer)


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
    def sources(self) -> list[Path]:
        return [
            *self.upstream.files,
            *self.config_files,
            *(patch.path for patch in self.spec_inputs.patches),
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
    project.progress.phase("tree", f"Linux {up.version}")
    tree = upstream.prepared_tree(up, project.cache, project.runner)
    project.progress.phase("configs", ", ".join(f"{t.arch}/{t.flavour}" for t in targets))
    work = project.cache / "kconfig" / up.identity
    try:
        resolved = configs.generate(
            project.configs_dir, targets, tree, work, project.runner, toolchain.fingerprint()
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
    tree = upstream.prepared_tree(up, project.cache, project.runner)
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
    tree = upstream.prepared_tree(up, project.cache, project.runner)
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
    return project.cache / "kconfig" / up.identity


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
    local_tarball: Path | None,
    workdir: Path,
    buildid: str | None = None,
) -> Prepared:
    """Everything the SRPM is made of, with configs generated into `workdir`."""
    up = resolve_upstream(project, local_tarball)
    inputs = spec_inputs(project, up, flavour, buildid)
    project.progress.phase("spec")
    spec_text = spec.render(inputs, project.root / "specs")
    targets = [configs.Target(arch, flavour) for arch in project.manifest.arches]
    config_files = generate_configs(project, up, targets, workdir)
    return Prepared(up, inputs, spec_text, tuple(config_files))


def build_srpm(project: Project, prepared: Prepared, outdir: Path) -> Path:
    project.progress.phase("srpm", prepared.nvr)
    return srpm.build_srpm(
        f"{project.manifest.name}.spec",
        prepared.spec_text,
        prepared.sources,
        outdir,
        project.runner,
    )


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
    local_tarball: Path | None,
    results_root: Path,
    buildid: str | None = None,
) -> BuildReport:
    """SRPM once, then one backend build per arch, each published on success."""
    started = time.monotonic()
    project.check_flavour(flavour)
    project.check_arches(arches)
    backend.check_host(arches)
    results_root.mkdir(parents=True, exist_ok=True)
    with scratch_dir(results_root, ".work-") as work:
        prepared = prepare(project, flavour, local_tarball, work / "configs", buildid)
        with results.locked_nvr(results_root, prepared.nvr) as nvr_dir:
            srpm_path = build_srpm(project, prepared, work)
            record = {
                "nvr": prepared.nvr,
                "flavour": flavour,
                "backend": backend.name,
                "upstream": prepared.upstream.describe(),
                "srpm": srpm_path.name,
            }
            outcomes = []
            for arch in arches:
                project.progress.phase(f"build {arch}", prepared.nvr)
                outcome = _build_arch(backend, srpm_path, arch, nvr_dir, record, project.progress)
                outcomes.append(outcome)
                if not outcome.ok:
                    break
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
        log = results_root / prepared.nvr / f"failed-{failed.arch}" / "build.log"
        raise BuildFailed(
            f"{failed.arch}: build failed: {failed.error} (log: {log})", failed.error_lines, report
        )
    return report


class BuildFailed(BuildError):
    def __init__(self, message: str, details: list[str], report: BuildReport) -> None:
        super().__init__(message, details=details)
        self.report = report


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
            os.link(srpm_path, staging / srpm_path.name)
            results.publish(staging, nvr_dir / arch, outcome, record)
            shutil.rmtree(nvr_dir / f"failed-{arch}", ignore_errors=True)  # superseded
        else:
            results.publish(staging, nvr_dir / f"failed-{arch}", outcome, record)
    return outcome
