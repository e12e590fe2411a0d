"""Upstream archives read without extracting them: decompressed in a stream, their top
directory and Makefile found, and every member checked before anything is written.

Links are resolved through a view of the whole archive (a symlink made later can
redirect an earlier name), so a chain like `a -> ../top`, `b -> a/..` is seen to leave
the tree; no member may be written through a symlink, a device, or outside the top
directory.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from kxen.errors import InputError
from kxen.support.runner import Completed, Runner, Running, SubprocessRunner

_DECOMPRESSORS = {
    ".xz": ["xz", "-dc"],
    ".bz2": ["bzip2", "-dc"],
    ".gz": ["gzip", "-dc"],
    ".zst": ["zstd", "-dc"],
}


@dataclass(frozen=True)
class Reading:
    """A file's content as it streams in, through its decompressor if it has one."""

    data: IO[bytes]
    decompressor: Running | None

    def finish(self) -> Completed | None:
        """How the decompressor ended (None: there was none), once `data` was read."""
        return None if self.decompressor is None else self.decompressor.wait(check=False)


@contextlib.contextmanager
def reading(path: Path, runner: Runner, decompressor: Sequence[str] | None) -> Iterator[Reading]:
    """`path`'s content, piped through `decompressor` (a process of its own, working while
    the caller reads) or read as it is. The decompressor is stopped however the block ends."""
    if decompressor is None:
        with path.open("rb") as data:
            yield Reading(data, None)
        return
    with runner.stream([*decompressor, path]) as running:
        yield Reading(running.stdout, running)


def decompressed(
    path: Path, runner: Runner | None = None
) -> contextlib.AbstractContextManager[Reading]:
    """`path` decompressed as its name says (.xz, .bz2, .gz, .zst; else read as it is)."""
    return reading(path, runner or SubprocessRunner(), _DECOMPRESSORS.get(path.suffix))


def scan_for_makefile(path: Path, runner: Runner | None = None) -> tuple[str, str]:
    """Return (top directory, top-level Makefile text), reading only as far as needed."""
    with decompressed(path, runner) as source:
        try:
            with tarfile.open(fileobj=source.data, mode="r|") as archive:
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
    raise InputError(f"{path}: no top-level Makefile: not a kernel source tarball")


def check_members(path: Path, topdir: str, runner: Runner | None = None) -> None:
    """Refuse the archive if extracting it could write or point outside the tree.

    Names are checked one by one as they stream past; links are then resolved through a
    view of the whole archive (a symlink made later can redirect an earlier name), so a
    chain like `a -> ../top`, `b -> a/..` is seen to leave the tree."""
    view = _ArchiveView(path, topdir)
    with decompressed(path, runner) as source:
        try:
            with tarfile.open(fileobj=source.data, mode="r|") as archive:
                for member in archive:
                    view.add(member)
        except tarfile.TarError as exc:
            raise InputError(f"{path}: not a readable tar archive ({exc})") from None
        # tarfile stops at the end-of-archive blocks: the padding after them is read too,
        # or the decompressor could fail writing it
        while source.data.read(1 << 16):
            pass
        ended = source.finish()
        if ended is not None and not ended.ok:
            raise InputError(
                f"{path}: could not be decompressed", details=ended.stderr.splitlines()[-3:]
            )
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
