"""Where the upstream tree comes from: kernel.org files, a local tarball or a git snapshot.

Whichever it is, the result is an `Upstream`: the real version, the files the spec
ships (tarball first, then upstream patches in order) and an identity used to
cache one extracted, patched tree per input (`kxen.upstream.tree`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import InputError
from kxen.manifest import Manifest
from kxen.support import integrity
from kxen.support.runner import Runner
from kxen.upstream import archive, signatures, sources, tree
from kxen.upstream import snapshot as snapshot_module
from kxen.versions import UpstreamVersion, from_makefile

ORIGIN_KERNEL_ORG = "kernel.org"
ORIGIN_LOCAL_TARBALL = "local-tarball"
ORIGIN_GIT = "git"
DIGESTS_DIR = "digests"
"""Where a local tarball's digest is remembered by its file status (see integrity)."""


@dataclass(frozen=True)
class Upstream:
    version: UpstreamVersion
    tarball: Path
    patches: tuple[Path, ...]
    topdir: str
    origin: str
    identity: str
    """Digest over every input file: equal identities mean equal trees."""
    tarball_sha512: str | None = None
    """SHA512 of a local tarball, recorded in the spec and the results."""
    snapshot: snapshot_module.Snapshot | None = None
    """The git commit a snapshot tarball was made from."""

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.tarball, *self.patches)

    @property
    def is_local(self) -> bool:
        """Made or given here rather than fetched from kernel.org by name."""
        return self.origin in (ORIGIN_LOCAL_TARBALL, ORIGIN_GIT)

    @property
    def build_dir(self) -> str:
        """The directory the tree is unpacked into, by kxen and by `%setup -c`: the
        tarball's own top directory is stripped, so whatever it is called (spaces, shell
        characters) never reaches a path kbuild, rpm or a shell sees."""
        if not self.is_local:
            return self.version.tarball_topdir
        return f"linux-{self.version}"

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "origin": self.origin,
            "version": str(self.version),
            "files": [path.name for path in self.files],
            "tarball": str(self.tarball) if self.is_local else None,
            "tarball_sha512": self.tarball_sha512,
            "identity": self.identity,
        }
        if self.snapshot is not None:
            described["git"] = {
                "repository": str(self.snapshot.repo),
                "commit": self.snapshot.commit,
                "describe": self.snapshot.describe,
            }
        return described


def named(manifest: Manifest) -> Upstream:
    """The manifest's upstream by file names only (nothing fetched): enough to render a
    spec for comparison, never to build."""
    version = manifest.upstream
    return Upstream(
        version=version,
        tarball=Path(version.tarball),
        patches=tuple(Path(name) for name in version.patches),
        topdir=version.tarball_topdir,
        origin=ORIGIN_KERNEL_ORG,
        identity="",
    )


def from_manifest(
    manifest: Manifest,
    lookaside: sources.Lookaside,
    progress: sources.ProgressSink | None = None,
    runner: Runner | None = None,
) -> Upstream:
    """Fetch (or reuse) every upstream file the manifest's version needs, checking the
    signatures the manifest declares."""
    version = manifest.upstream
    listed = {e.filename: e for e in sources.parse_sources(manifest.root / sources.SOURCES_NAME)}
    paths: list[Path] = []
    for name in version.files:
        entry = listed.get(name)
        if entry is None:
            raise InputError(
                f"{manifest.root / sources.SOURCES_NAME}: {name} is not listed "
                f"(upstream {version} needs {', '.join(version.files)})"
            )
        urls = sources.mirror_urls(manifest.mirrors, version.path_of(name))
        verifier = signatures.verifier_for(manifest, name, runner)
        path, _ = lookaside.fetch(entry, urls, progress, verifier)
        paths.append(path)
    identity = _identity(f"{e.algorithm}:{e.digest}" for e in (listed[n] for n in version.files))
    return Upstream(
        version=version,
        tarball=paths[0],
        patches=tuple(paths[1:]),
        topdir=version.tarball_topdir,
        origin=ORIGIN_KERNEL_ORG,
        identity=identity,
    )


def from_tarball(path: Path, cache_root: Path, runner: Runner | None = None) -> Upstream:
    """A local kernel tarball (e.g. Debian's linux-source-6.1): version from its Makefile
    (read through `runner`'s decompressor when the tree is not cached yet)."""
    path = path.resolve()
    if not path.is_file():
        raise InputError(f"--upstream {path}: no such file")
    digest = integrity.remembered_digest(path, cache_root / DIGESTS_DIR, "sha512")
    identity = _identity([f"SHA512:{digest}"])
    known = tree.recorded_meta(cache_root, identity)
    if known and {"topdir", "makefile_version"} <= known.keys():
        topdir, makefile = known["topdir"], known["makefile_version"]
        version = UpstreamVersion.parse(makefile)
    else:
        topdir, text = archive.scan_for_makefile(path, runner)
        version = _version_from(text, path)
    return Upstream(
        version=version,
        tarball=path,
        patches=(),
        topdir=topdir,
        origin=ORIGIN_LOCAL_TARBALL,
        identity=identity,
        tarball_sha512=digest,
    )


def from_git(
    repo: Path,
    ref: str,
    cache_root: Path,
    runner: Runner,
    quarantine: integrity.Quarantine | None = None,
) -> Upstream:
    """A reproducible snapshot tarball of `ref` in a kernel git checkout."""
    snap = snapshot_module.make(repo, ref, cache_root, runner, quarantine)
    return Upstream(
        version=snap.version,
        tarball=snap.tarball,
        patches=(),
        topdir=snap.topdir,
        origin=ORIGIN_GIT,
        identity=_identity([f"SHA512:{snap.tarball_sha512}"]),
        tarball_sha512=snap.tarball_sha512,
        snapshot=snap,
    )


def _version_from(makefile: str, where: Path) -> UpstreamVersion:
    try:
        return from_makefile(makefile)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _identity(parts: Iterable[str]) -> str:
    joined = "\n".join(parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:24]
