"""A checkout of this repository and the machine-local state kxen uses with it: the
manifest, the cache, the runner and progress every stage is handed, and the upstream
tree a command works on (kernel.org files, a local tarball or a git snapshot)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kxen import locate, manifest
from kxen.errors import InputError
from kxen.support import fsutil, integrity
from kxen.support.progress import Progress
from kxen.support.runner import Runner

if TYPE_CHECKING:  # every command opens a project: the stages load when they are used
    from kxen.upstream import origin, sources

CACHE_SCRATCH_DEPTH = 3
"""How deep scratch directories sit in the cache (`kconfig/<tree>/.merge-...`)."""


default_cache_dir = locate.default_cache_dir


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
        from kxen.upstream import sources

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


@dataclass(frozen=True)
class GitSnapshot:
    """`--upstream CHECKOUT --ref REF`: build a snapshot of a kernel git checkout."""

    repo: Path
    ref: str


UpstreamChoice = Path | GitSnapshot | None
"""A local tarball, a git snapshot, or None for the manifest's kernel.org files."""


def resolve_upstream(project: Project, local_tarball: UpstreamChoice) -> origin.Upstream:
    from kxen.upstream import origin

    project.progress.phase("sources")
    if isinstance(local_tarball, GitSnapshot):
        project.progress.phase("snapshot", f"git archive {local_tarball.ref}")
        return origin.from_git(
            local_tarball.repo, local_tarball.ref, project.cache, project.runner, project.quarantine
        )
    if local_tarball is not None:
        return origin.from_tarball(local_tarball, project.cache, project.runner)
    return origin.from_manifest(
        project.manifest, project.lookaside, project.progress.transfer, project.runner
    )


def probe_dir(project: Project, up: origin.Upstream) -> Path:
    directory = project.cache / "kconfig" / up.identity
    from kxen.config import kconfig

    kconfig.ProbeCache.check_directory(directory, project.quarantine)  # before any fork
    return directory


def prepared_tree(project: Project, up: origin.Upstream, scope: integrity.Scope) -> Path:
    """The cached tree, verified in `scope`: what the caller reads of it."""
    from kxen.upstream import tree as upstream_tree

    return upstream_tree.prepared_tree(
        up, project.cache, project.runner, scope=scope, quarantine=project.quarantine
    )


CACHE_WORK_MIB = 64
"""Cache space any command may use: configs, kconfig build directories, probes."""


TREE_UNPACK_RATIO = 12
"""An unpacked kernel tree takes about this many times its xz tarball (6.1: 1.4 GB/140 MB)."""


def srpm_mib(up: origin.Upstream) -> int:
    """The SRPM's size, about: its sources (configs and patches are small)."""
    return (sum(path.stat().st_size for path in up.files) >> 20) + 16


def check_space(project: Project, up: origin.Upstream, outputs: Mapping[Path, int]) -> None:
    """Refuse (exit 10) before any work if a directory the command writes lacks room:
    `outputs`, and the cache (the unpacked tree too, if it is not cached yet)."""
    needs = dict(outputs)
    cache = CACHE_WORK_MIB
    from kxen.upstream import tree as upstream_tree

    if not upstream_tree.tree_is_cached(up, project.cache):
        cache += (up.tarball.stat().st_size >> 20) * TREE_UNPACK_RATIO
    needs[project.cache] = needs.get(project.cache, 0) + cache
    fsutil.preflight(needs)
