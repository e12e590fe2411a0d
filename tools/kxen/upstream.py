"""Where the upstream tree comes from: kernel.org files or a local tarball.

Either way the result is an `Upstream`: the real version, the files the spec
ships (tarball first, then upstream patches in order) and an identity used to
cache one extracted, patched tree per input. Tarballs are checked member by
member before anything is written, so a hostile archive extracts nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from . import integrity, signatures, sources
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


def from_tarball(path: Path, cache_root: Path) -> Upstream:
    """A local kernel tarball (e.g. Debian's linux-source-6.1): version from its Makefile."""
    path = path.resolve()
    if not path.is_file():
        raise InputError(f"--upstream {path}: no such file")
    digest = sources.file_digest(path, "SHA512")
    identity = _identity([f"SHA512:{digest}"])
    known = _tree_meta(_tree_root(cache_root, identity))
    if known and {"topdir", "makefile_version"} <= known.keys():
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
    """Refuse the archive if extracting it could write or point outside the tree.

    Names are checked one by one as they stream past; links are then resolved through a
    view of the whole archive (a symlink made later can redirect an earlier name), so a
    chain like `a -> ../top`, `b -> a/..` is seen to leave the tree."""
    view = _ArchiveView(path, topdir)
    proc, stream = _open_stream(path)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                view.add(member)
        if proc is not None and proc.wait() != 0:
            raise InputError(f"{path}: could not be decompressed")
    except tarfile.TarError as exc:
        raise InputError(f"{path}: not a readable tar archive ({exc})") from None
    finally:
        _close(proc, stream)
    view.check_links()


_MAX_LINK_HOPS = 40
"""Symlinks followed while resolving one name: Linux gives up (ELOOP) after 40 as well."""


_MEMBER_KINDS = {tarfile.SYMTYPE: "l", tarfile.LNKTYPE: "h", tarfile.DIRTYPE: "d"}


class _ArchiveView:
    """Every member name of an archive and its links, as extraction would leave them."""

    def __init__(self, path: Path, topdir: str) -> None:
        self.path = path
        self.topdir = topdir
        self.names: list[str] = []
        self.kinds: dict[str, str] = {}
        self.symlinks: dict[str, str] = {}

    def refuse(self, name: str, why: str) -> InputError:
        return InputError(f"{self.path}: member {name!r} {why}")

    def add(self, member: tarfile.TarInfo) -> None:
        """Check one member on its own (name, type) and note it for check_links().

        (tarfile's `data_filter` would check the same and more slowly: it resolves each
        name against the real file system, a third of the time of a kernel tarball.)"""
        parts = PurePosixPath(member.name).parts
        if not parts or parts[0] != self.topdir or ".." in parts:
            raise self.refuse(member.name, f"is outside the top directory {self.topdir}/")
        name = "/".join(parts)
        kind = _MEMBER_KINDS.get(member.type, "f" if member.isreg() else "")
        if not kind:
            raise self.refuse(name, "is a device node or other special file")
        earlier = self.kinds.get(name)
        if earlier is not None and "l" in (earlier, kind):
            raise self.refuse(name, "appears twice, once as a symlink")
        if kind == "h":
            self._check_hardlink(name, member.linkname)
        if kind == "l":
            self.symlinks[name] = member.linkname
        self.kinds[name] = kind
        self.names.append(name)

    def _check_hardlink(self, name: str, target: str) -> None:
        """A hard link must name an earlier regular file: a link to a symlink would be a
        copy of that symlink in another directory, pointing elsewhere."""
        resolved = "/".join(PurePosixPath(target).parts)
        if self.kinds.get(resolved) not in ("f", "h"):
            raise self.refuse(name, f"is a hard link to {target!r}, not an earlier file")

    def check_links(self) -> None:
        """No member is written through a symlink; every symlink resolves inside the tree."""
        if not self.symlinks:
            return
        for name in self.names:
            through = self._symlink_above(name)
            if through is not None:
                raise self.refuse(name, f"lies under the symlink {through!r}")
        for name, target in self.symlinks.items():
            problem = self._resolution_problem(name, target)
            if problem is not None:
                raise self.refuse(name, f"is a symlink to {target!r}, which {problem}")

    def _symlink_above(self, name: str) -> str | None:
        cut = name.find("/")
        while cut != -1:
            if name[:cut] in self.symlinks:
                return name[:cut]
            cut = name.find("/", cut + 1)
        return None

    def _resolution_problem(self, name: str, target: str) -> str | None:
        """Resolve like the kernel would on the extracted tree, following every symlink of
        the archive (names the archive lacks resolve as written); None if it stays inside."""
        outside = f"resolves outside {self.topdir}/"
        if target.startswith("/"):
            return outside
        current = name.split("/")[:-1]
        pending = target.split("/")
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    return outside  # above the directory the archive is extracted in
                current.pop()
                continue
            current.append(part)
            link = self.symlinks.get("/".join(current))
            if link is None:
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return f"goes round a loop of symlinks (more than {_MAX_LINK_HOPS} hops)"
            if link.startswith("/"):
                return outside
            current.pop()
            pending = link.split("/") + pending
        return None if current and current[0] == self.topdir else outside


# --- the cached tree -------------------------------------------------------


def _tree_root(cache_root: Path, identity: str) -> Path:
    return cache_root / "trees" / identity


def tree_is_cached(upstream: Upstream, cache_root: Path) -> bool:
    """Whether `prepared_tree` would find the tree made (before verifying it)."""
    return (_tree_root(cache_root, upstream.identity) / integrity.MANIFEST_NAME).is_file()


def _tree_meta(root: Path) -> Mapping[str, str] | None:
    """What the tree's extraction recorded (topdir, Makefile version), if intact."""
    return integrity.read_meta(root / integrity.MANIFEST_NAME)


def prepared_tree(
    upstream: Upstream,
    cache_root: Path,
    runner: Runner,
    *,
    scope: integrity.Scope = integrity.WHOLE,
    quarantine: integrity.Quarantine | None = None,
) -> Path:
    """The pristine source tree for `upstream`, extracted and patched once, then reused.

    Before it is used, it is checked against the manifest made at extraction: the whole
    listing, and the content of the files in `scope` (what the caller reads). A tree
    that fails is set aside (see `integrity`) and extracted again. Callers must not
    write into it: kconfig runs with O= into directories of their own.
    """
    root = _tree_root(cache_root, upstream.identity)
    tree = root / upstream.build_dir
    manifest = root / integrity.MANIFEST_NAME
    if integrity.already_verified(manifest, scope):
        return tree
    quarantine = quarantine or integrity.Quarantine.in_cache(cache_root)
    with exclusive_lock(
        cache_root / "trees" / f"{upstream.identity}.lock", "source tree cache", wait=True
    ):
        if root.exists() or root.is_symlink():
            try:
                _verify_tree(upstream, root, scope)
                return tree
            except integrity.Corrupt as corrupt:
                quarantine.set_aside(root, corrupt, "prepared tree", "extracting it again")
        _extract(upstream, root, runner)
    return tree


def _verify_tree(upstream: Upstream, root: Path, scope: integrity.Scope) -> None:
    if root.is_symlink():
        raise integrity.Corrupt(["it is a symlink"])
    manifest = root / integrity.MANIFEST_NAME
    meta = integrity.read_manifest(manifest).meta
    if meta.get("topdir") != upstream.topdir:
        raise integrity.Corrupt([f"made for {meta.get('topdir')!r}, not {upstream.topdir!r}"])
    integrity.verify(root / upstream.build_dir, manifest, scope)


def _extract(upstream: Upstream, root: Path, runner: Runner) -> None:
    """Check, extract, patch and record the tree, then rename it into place whole."""
    check_members(upstream.tarball, upstream.topdir)
    with scratch_dir(root.parent, ".extract-") as staging:
        tree = staging / upstream.build_dir
        tree.mkdir()
        # As root GNU tar keeps the archive's modes: --no-same-permissions drops setuid,
        # setgid and sticky bits (integrity.record clears any a patch might set).
        runner.run(
            [
                "tar",
                "-xf",
                upstream.tarball,
                "-C",
                tree,
                "--strip-components=1",
                "--no-same-owner",
                "--no-same-permissions",
            ]
        )
        for patch in upstream.patches:
            _apply_upstream_patch(patch, tree, runner)
        version = from_makefile((tree / "Makefile").read_text())
        if str(version) != str(upstream.version.makefile_version):
            raise SourceError(
                f"{upstream.tarball.name}: the tree's Makefile says {version}, "
                f"expected {upstream.version}"
            )
        meta = {"topdir": upstream.topdir, "makefile_version": str(version)}
        integrity.record(tree, staging / integrity.MANIFEST_NAME, meta)
        os.replace(staging, root)


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
