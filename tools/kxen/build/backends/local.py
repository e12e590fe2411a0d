"""The embedded default backend: rpmbuild on this machine.

The host's rpm database is usually empty (Debian), so BuildRequires cannot be
checked by rpm: rpmbuild runs with --nodeps and this backend checks the
tools itself, before anything starts.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path

from kxen.build import ccache as ccache_module
from kxen.build.backends.base import (
    BUILD_LOCALE,
    ArchResult,
    BuildRequest,
    RunnerBackend,
    first_errors,
)
from kxen.build.ccache import Ccache
from kxen.build.srpm import reproducible_defines
from kxen.errors import InputError, MissingToolError, NoSpaceError
from kxen.support.fsutil import Reclaimed, reclaim, scratch_dir
from kxen.support.progress import Progress
from kxen.support.runner import LineSink, Runner

HOST_TOOLS = (
    "rpmbuild",
    "gcc",
    "make",
    "bc",
    "bison",
    "flex",
    "perl",
    "xz",
    "zstd",
    "tar",
    "patch",
    "hostname",
    "depmod",
    "find",
    "cpio",
    "readelf",
    "strip",
)
HOST_HEADERS = {
    "libelf development headers (libelf-dev / elfutils-libelf-devel)": "/usr/include/gelf.h",
    "OpenSSL development headers (libssl-dev / openssl-devel)": "/usr/include/openssl/opensslv.h",
}
_SBIN = ("/usr/sbin", "/sbin")
# Measured on 6.1: the unpacked tree is 1.5 GB, a smoke build adds ~0.5 GB, a default build
# several GB of objects, plus the packages and the SRPM.
BUILD_SPACE_MIB = 6 * 1024
_PHASE = re.compile(r"^Executing\(%(\w+)\)")
# The build area becomes rpmbuild's `_topdir`: rpm expands macros in it (`%(...)` runs a
# shell), its %setup and the spec's scripts paste it into shell commands, and kbuild refuses
# spaces and colons in the tree's path.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._+@/-]+")
_MAKE_STEP = re.compile(r"^\s{2}([A-Z][A-Z0-9_]*(?: \[M\])?)\s+(\S+)")


# A build in RAM skips writing and later deleting ~80k files (half a minute of disk
# I/O per build here), as mock's tmpfs plugin does. Only taken when the build fits with
# room to spare for the compilers and the page cache.
RAM_AREA = Path("/dev/shm")
RAM_RESERVE_MIB = 4 * 1024


def build_area(disk: Path, meminfo: Path = Path("/proc/meminfo")) -> Path:
    """Where rpmbuild's topdir goes: RAM when it comfortably fits, else `disk`."""
    try:
        free_ram = shutil.disk_usage(RAM_AREA).free >> 20
        available = _meminfo_mib(meminfo.read_text(), "MemAvailable")
    except (OSError, ValueError):
        return disk
    if min(free_ram, available - RAM_RESERVE_MIB) >= BUILD_SPACE_MIB:
        return RAM_AREA
    return disk


def _meminfo_mib(text: str, field: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) >> 10
    raise ValueError(f"no {field} in meminfo")


def check_build_area(path: Path) -> None:
    """Refuse (exit 2) a build area rpmbuild, its scripts or kbuild would not take literally."""
    if not _PLAIN_PATH.fullmatch(str(path)):
        raise InputError(
            f"build area {str(path)!r}: rpmbuild's _topdir and kbuild take it unquoted, so only "
            "letters, digits and . _ + @ / - are allowed (choose another with --workdir)"
        )


class LocalBackend(RunnerBackend):
    name = "local"
    jobs = 1

    def __init__(self, runner: Runner, work_root: Path, ccache: Ccache | None = None) -> None:
        self.runner = runner
        self.work_root = work_root
        self.ccache = ccache

    def check_host(self, arches: list[str]) -> None:
        check_build_area(self.work_root)
        missing = [tool for tool in HOST_TOOLS if not _which(tool)]
        missing += [name for name, path in HOST_HEADERS.items() if not Path(path).exists()]
        if missing:
            raise MissingToolError(
                "the local backend needs these on the host: " + ", ".join(missing)
            )
        if self.ccache is not None:
            ccache_module.check_host()
            self.ccache.prepare()
        self._check_space()

    def reclaim(self) -> list[Reclaimed]:
        return reclaim(self.work_root)

    def _check_space(self) -> None:
        """Refuse before any work when the build tree cannot fit (arches build one at a time)."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.work_root).free >> 20
        if free < BUILD_SPACE_MIB:
            raise NoSpaceError(
                f"{self.work_root}: {free} MiB free, a local kernel build needs "
                f"{BUILD_SPACE_MIB} MiB (unpacked tree, objects, packages)"
            )

    def build(self, request: BuildRequest, progress: Progress) -> ArchResult:
        started = time.monotonic()
        log = request.staging / "build.log"
        name = f"local-{request.arch}-{secrets.token_hex(6)}"
        with scratch_dir(self.work_root, f".rpmbuild-{request.arch}-") as top:
            result = self.runner.run(
                self._rpmbuild(request, top, name),
                env={**BUILD_LOCALE, **(self.ccache.environment() if self.ccache else {})},
                log_path=log,
                on_line=_progress_parser(progress),
                check=False,
            )
            seconds = time.monotonic() - started
            stats = self.ccache.collect(name, request.staging) if self.ccache else None
            if not result.ok:
                return ArchResult(
                    request.arch,
                    ok=False,
                    seconds=seconds,
                    logs=[log.name],
                    error=f"rpmbuild exited with status {result.returncode}",
                    error_lines=first_errors(list(result.tail)),
                    ccache=stats,
                )
            rpms = sorted((top / "RPMS").glob("*/*.rpm"))
            for rpm in rpms:
                shutil.move(rpm, request.staging / rpm.name)
        return ArchResult(
            request.arch,
            ok=True,
            seconds=seconds,
            rpms=[p.name for p in rpms],
            logs=[log.name],
            ccache=stats,
        )

    def _rpmbuild(self, request: BuildRequest, top: Path, name: str) -> list[str | Path]:
        """rpmbuild's command line for one arch in `top`; through ccache, counted as `name`."""
        return [
            "rpmbuild",
            "--rebuild",
            request.srpm,
            "--target",
            request.arch,
            "--nodeps",
            "--define",
            f"_topdir {top}",
            *reproducible_defines(),
            *(self.ccache.spec_define(name) if self.ccache else []),
        ]


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for directory in _SBIN:
        candidate = Path(directory) / tool
        if candidate.exists():
            return str(candidate)
    return None


def _progress_parser(progress: Progress) -> LineSink:
    def on_line(line: str) -> None:
        if match := _PHASE.match(line):
            progress.step(f"%{match[1]}")
        elif match := _MAKE_STEP.match(line):
            progress.step(f"{match[1]} {match[2]}")
        elif line.startswith("Processing files:"):
            progress.step("packaging " + line.split(":", 1)[1].strip())
        elif line.startswith("Wrote:"):
            progress.step("wrote " + Path(line.split(":", 1)[1].strip()).name)

    return on_line
