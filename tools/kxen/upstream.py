"""Where the upstream tree comes from: kernel.org files or a local tarball.

Either way the result is an `Upstream`: the real version, the files the spec
ships (tarball first, then upstream patches in order) and an identity used to
cache one extracted, patched tree per input. Tarballs are checked member by
member before anything is written, so a hostile archive extracts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from . import signatures, sources
from . import snapshot as snapshot_module
from .errors import InputError, SourceError
from .fsutil import exclusive_lock, scratch_dir
from .manifest import Manifest
from .runner import Runner
from .versions import UpstreamVersion, from_makefile

ORIGIN_KERNEL_ORG = "kernel.org"
ORIGIN_LOCAL_TARBALL = "local-tarball"
ORIGIN_GIT = "git"
_DECOMPRESSORS = {
    ".xz": ["xz", "-dc"],
    ".bz2": ["bzip2", "-dc"],
    ".gz": ["gzip", "-dc"],
    ".zst": ["zstd", "-dc"],
}


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


def from_tarball(path: Path, cache_root: Path) -> Upstream:
    """A local kernel tarball (e.g. Debian's linux-source-6.1): version from its Makefile."""
    path = path.resolve()
    if not path.is_file():
        raise InputError(f"--upstream {path}: no such file")
    digest = sources.file_digest(path, "SHA512")
    identity = _identity([f"SHA512:{digest}"])
    known = _read_marker(_tree_root(cache_root, identity))
    if known:
        topdir, makefile = known["topdir"], known["makefile_version"]
        version = UpstreamVersion.parse(makefile)
    else:
        topdir, text = _scan_for_makefile(path)
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


def from_git(repo: Path, ref: str, cache_root: Path, runner: Runner) -> Upstream:
    """A reproducible snapshot tarball of `ref` in a kernel git checkout."""
    snap = snapshot_module.make(repo, ref, cache_root, runner)
    digest = sources.file_digest(snap.tarball, "SHA512")
    return Upstream(
        version=snap.version,
        tarball=snap.tarball,
        patches=(),
        topdir=snap.topdir,
        origin=ORIGIN_GIT,
        identity=_identity([f"SHA512:{digest}"]),
        tarball_sha512=digest,
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


def _open_stream(path: Path) -> tuple[subprocess.Popen[bytes] | None, IO[bytes]]:
    """Decompress in a separate process (in parallel with tar parsing)."""
    command = _DECOMPRESSORS.get(path.suffix)
    if command is None:
        return None, path.open("rb")
    proc = subprocess.Popen([*command, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, proc.stdout


def _scan_for_makefile(path: Path) -> tuple[str, str]:
    """Return (top directory, top-level Makefile text), reading only as far as needed."""
    proc, stream = _open_stream(path)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            topdir: str | None = None
            for member in archive:
                top = PurePosixPath(member.name).parts[0]
                topdir = topdir or top
                if member.isfile() and member.name == f"{top}/Makefile":
                    handle = archive.extractfile(member)
                    assert handle is not None
                    return top, handle.read().decode("utf-8", "replace")
    except tarfile.TarError as exc:
        raise InputError(f"{path}: not a readable tar archive ({exc})") from None
    finally:
        _close(proc, stream)
    raise InputError(f"{path}: no top-level Makefile: not a kernel source tarball")


def _close(proc: subprocess.Popen[bytes] | None, stream: IO[bytes]) -> None:
    stream.close()
    if proc is not None:
        proc.kill()
        proc.wait()


def check_members(path: Path, topdir: str) -> None:
    """Refuse the archive if any member could write outside the tree or is a device."""
    proc, stream = _open_stream(path)
    target = f"/nonexistent/{topdir}"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                try:
                    tarfile.data_filter(member, "/nonexistent")
                except tarfile.FilterError as exc:
                    raise InputError(f"{path}: unsafe member {member.name!r}: {exc}") from None
                name = PurePosixPath(member.name)
                if name.parts[0] != topdir or ".." in name.parts:
                    raise InputError(
                        f"{path}: member {member.name!r} is outside the top directory {topdir}/"
                    )
                if member.issym() and not _stays_inside(name, member.linkname, target):
                    raise InputError(f"{path}: symlink {member.name!r} points outside the tree")
        if proc is not None and proc.wait() != 0:
            raise InputError(f"{path}: could not be decompressed")
    except tarfile.TarError as exc:
        raise InputError(f"{path}: not a readable tar archive ({exc})") from None
    finally:
        _close(proc, stream)


def _stays_inside(name: PurePosixPath, link: str, root: str) -> bool:
    resolved = os.path.normpath(os.path.join("/nonexistent", str(name.parent), link))
    return resolved == root or resolved.startswith(root + "/")


# --- the cached tree -------------------------------------------------------


def _tree_root(cache_root: Path, identity: str) -> Path:
    return cache_root / "trees" / identity


def _read_marker(root: Path) -> dict[str, str] | None:
    try:
        data: dict[str, str] = json.loads((root / "complete.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def prepared_tree(upstream: Upstream, cache_root: Path, runner: Runner) -> Path:
    """The pristine source tree for `upstream`, extracted and patched once, then reused.

    Callers must not write into it: kconfig runs with O= into directories of
    their own.
    """
    root = _tree_root(cache_root, upstream.identity)
    tree = root / upstream.topdir
    if _read_marker(root):
        return tree
    with exclusive_lock(
        cache_root / "trees" / f"{upstream.identity}.lock", "source tree cache", wait=True
    ):
        if _read_marker(root):
            return tree
        check_members(upstream.tarball, upstream.topdir)
        with scratch_dir(cache_root / "trees", ".extract-") as staging:
            runner.run(["tar", "-xf", upstream.tarball, "-C", staging, "--no-same-owner"])
            for patch in upstream.patches:
                _apply_upstream_patch(patch, staging / upstream.topdir, runner)
            version = from_makefile((staging / upstream.topdir / "Makefile").read_text())
            if str(version) != str(upstream.version.makefile_version):
                raise SourceError(
                    f"{upstream.tarball.name}: the tree's Makefile says {version}, "
                    f"expected {upstream.version}"
                )
            marker = {"topdir": upstream.topdir, "makefile_version": str(version)}
            (staging / "complete.json").write_text(json.dumps(marker))
            shutil.rmtree(root, ignore_errors=True)
            os.replace(staging, root)
    return tree


def _apply_upstream_patch(patch: Path, tree: Path, runner: Runner) -> None:
    proc, stream = _open_stream(patch)
    try:
        result = runner.run(
            ["patch", "-p1", "-s", "-N", "-E", "--no-backup-if-mismatch", "-d", tree],
            stdin=stream,
            check=False,
        )
    finally:
        _close(proc, stream)
    if not result.ok:
        first = result.output.strip().splitlines()[:3]
        raise SourceError(f"{patch.name}: does not apply to the upstream tarball", details=first)
