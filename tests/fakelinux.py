"""A tiny fake Linux tree that goes through kxen's real code paths in seconds.

`tests/fakes/linux/` is a small kernel tree whose Makefile answers the kbuild targets
the spec and kxen use (config targets with O=, kernelversion, bzImage, modules,
modules_install) with real products: a .config resolved from a real Kconfig by
Kconfiglib, an ELF vmlinux with Xen ELF notes inside an x86 bzImage, modules depmod
reads. `pack()` makes the upstream tarball of it (`linux-6.1.192.tar.xz`, the same
bytes for the same interpreter), `make_checkout()` a scratch checkout of the
packaging files whose `configs/` (`tests/fakes/linux-configs/`) is written for the
fake Kconfig. See tests/fakes/linux/README.
"""

from __future__ import annotations

import io
import lzma
import shutil
import sys
import tarfile
from pathlib import Path

from . import support

FAKE_TREE = support.REPO / "tests" / "fakes" / "linux"
FAKE_CONFIGS = support.REPO / "tests" / "fakes" / "linux-configs"
VERSION = "6.1.192"
TOPDIR = f"linux-{VERSION}"
TARBALL_NAME = f"{TOPDIR}.tar.xz"
# Where the Makefile finds the Python that runs Kconfiglib (written when packing).
PYTHON_MK = "scripts/kconfig/python.mk"
# Every member gets the same owner and time, so the archive depends on the contents only.
MTIME = 1_764_028_800  # 2025-11-25


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tree_files(root: Path) -> list[Path]:
    """The tree's directories and files, parents first, in a fixed (byte) order."""
    found = [
        path
        for path in root.rglob("*")
        if not any(part == "__pycache__" or part.endswith(".pyc") for part in path.parts)
    ]
    return sorted(found, key=lambda p: str(p.relative_to(root)).encode())


def tar_bytes(python: str = sys.executable, tree: Path = FAKE_TREE) -> bytes:
    """The uncompressed tar of the tree under TOPDIR/, with PYTHON_MK naming `python`.

    `python` is written as a path, never linked: kxen refuses archives whose symlinks
    point outside the tree."""
    generated = {PYTHON_MK: f"KCONFIG_PYTHON := {python}\n".encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(_info(TOPDIR, tarfile.DIRTYPE, 0o755))
        for path in _tree_files(tree):
            relative = path.relative_to(tree).as_posix()
            name = f"{TOPDIR}/{relative}"
            if path.is_dir():
                archive.addfile(_info(name, tarfile.DIRTYPE, 0o755))
            elif relative not in generated:
                data = path.read_bytes()
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                archive.addfile(_info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        for relative, data in generated.items():
            info = _info(f"{TOPDIR}/{relative}", tarfile.REGTYPE, 0o644, len(data))
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pack(outdir: Path, python: str = sys.executable) -> Path:
    """Write `outdir/linux-6.1.192.tar.xz`; `python` must be able to import kconfiglib."""
    outdir.mkdir(parents=True, exist_ok=True)
    tarball = outdir / TARBALL_NAME
    tarball.write_bytes(lzma.compress(tar_bytes(python), format=lzma.FORMAT_XZ, preset=6))
    return tarball


def make_checkout(target: Path) -> Path:
    """A scratch checkout of the packaging files with the fake tree's configs/."""
    support.make_checkout(target)
    shutil.rmtree(target / "configs")
    shutil.copytree(FAKE_CONFIGS, target / "configs")
    return target


def make_git(target: Path, python: str = sys.executable) -> Path:
    """A kernel git checkout of the fake tree: the tree committed and tagged `v6.1.192`
    (annotated, as kernel.org's tags are), so that later commits are stable snapshots."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(python)), mode="r:") as archive:
        archive.extractall(target.parent, filter="tar")
    (target.parent / TOPDIR).rename(target)
    support.git(target, "init", "-q")
    support.git(target, "add", "-A", "-f")
    support.git(target, "commit", "-q", "-m", f"Linux {VERSION}")
    support.git(target, "tag", "-a", f"v{VERSION}", "-m", f"Linux {VERSION}")
    return target
