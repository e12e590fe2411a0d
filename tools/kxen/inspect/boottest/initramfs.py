"""Initramfs images (gzip'd cpio "newc", the format the kernel unpacks) built in memory.

Written here rather than with cpio(1) so that device nodes and ownership need no root
and the same inputs give the same bytes: entries carry mtime 0 and root ownership.
"""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


class Initramfs:
    """Entries in the order added; parent directories are added on demand."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._names: set[str] = set()
        self._inode = 1

    def directory(self, name: str) -> None:
        name = name.strip("/")
        if name in ("", ".") or name in self._names:
            return
        self.directory(str(Path(name).parent))
        self._entry(name, stat.S_IFDIR | 0o755, b"", nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(name, stat.S_IFREG | mode, data)

    def copy(self, name: str, source: Path, mode: int | None = None) -> None:
        data = source.read_bytes()
        self.file(name, data, mode if mode is not None else stat.S_IMODE(source.stat().st_mode))

    def symlink(self, name: str, target: str) -> None:
        self._add(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(name, stat.S_IFCHR | mode, b"", rdev=(major, minor))

    def __contains__(self, name: str) -> bool:
        return name.strip("/") in self._names

    def gzipped(self) -> bytes:
        trailer = self._header(_TRAILER, 0, 0, 1, (0, 0), inode=0)
        archive = b"".join([*self._chunks, trailer])
        return gzip.compress(archive, compresslevel=6, mtime=0)

    def _add(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.strip("/")
        if name in self._names:
            raise ValueError(f"initramfs: {name} added twice")
        self.directory(str(Path(name).parent))
        self._entry(name, mode, data, rdev=rdev)

    def _entry(
        self, name: str, mode: int, data: bytes, nlink: int = 1, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self._names.add(name)
        self._chunks.append(self._header(name, mode, len(data), nlink, rdev, inode=self._inode))
        self._chunks.append(data + _padding(len(data)))
        self._inode += 1

    @staticmethod
    def _header(
        name: str, mode: int, size: int, nlink: int, rdev: tuple[int, int], inode: int
    ) -> bytes:
        encoded = name.encode() + b"\0"
        fields = (inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = _MAGIC + b"".join(b"%08X" % value for value in fields)
        header += encoded
        return header + _padding(len(header))


def _padding(size: int) -> bytes:
    return b"\0" * (-size % 4)
