"""Shared fixtures of the kxen unit tests: scratch checkouts, tiny tarballs, rpmspec."""

from __future__ import annotations

import io
import lzma
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from ..support import REPO


@pytest.fixture
def repo() -> Path:
    """The real repository: read only, never written by a test."""
    return REPO


def line_number(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


@pytest.fixture
def line_of() -> Callable[[str, str], int]:
    return line_number


def kernel_makefile(version: int, patchlevel: int, sublevel: int, extra: str = "") -> str:
    return (
        "# SPDX-License-Identifier: GPL-2.0\n"
        f"VERSION = {version}\n"
        f"PATCHLEVEL = {patchlevel}\n"
        f"SUBLEVEL = {sublevel}\n"
        f"EXTRAVERSION = {extra}\n"
        "NAME = Test Kernel\n"
        "\n"
        "# what %prep of the spec asks of the kernel's kbuild\n"
        "KERNELVERSION = $(VERSION)$(if $(PATCHLEVEL),.$(PATCHLEVEL)$(if $(SUBLEVEL),.$(SUBLEVEL)))"
        "$(EXTRAVERSION)\n"
        "kernelversion:\n"
        '\t@echo "$(KERNELVERSION)"\n'
        "kernelrelease:\n"
        '\t@echo "$(KERNELVERSION)$(LOCALVERSION)"\n'
        "olddefconfig:\n"
        "\t@test -f .config\n"
    )


@pytest.fixture
def makefile_text() -> Callable[..., str]:
    return kernel_makefile


Member = bytes | tarfile.TarInfo
TarballFactory = Callable[..., Path]


def write_tarball(path: Path, members: Mapping[str, Member]) -> Path:
    """Write a tar archive; the compression follows the suffix (.xz, .bz2, .gz, none).

    A bytes value is a regular file; a TarInfo is added as it is (its name is set from
    the key), for symlinks, devices and other special members.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directories = sorted({str(Path(n).parent) for n in members if not n.startswith("/")})
        for directory in directories:
            if directory in (".", "") or directory.startswith(".."):
                continue
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for name, value in members.items():
            if isinstance(value, tarfile.TarInfo):
                value.name = name
                archive.addfile(value)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(value)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(value))
    data = buffer.getvalue()
    if path.suffix == ".xz":
        data = lzma.compress(data)
    elif path.suffix == ".bz2":
        import bz2

        data = bz2.compress(data)
    elif path.suffix == ".gz":
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def make_tarball() -> TarballFactory:
    return write_tarball


@pytest.fixture
def rpmspec() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `rpmspec` with the host's dist and source dir neutralised."""
    if shutil.which("rpmspec") is None:
        pytest.skip("rpmspec is not installed")

    def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            "rpmspec",
            "--define",
            "_sourcedir /nonexistent",
            "--define",
            "dist %{nil}",
            *map(str, args),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{command} failed:\n{result.stderr}")
        return result

    return run
