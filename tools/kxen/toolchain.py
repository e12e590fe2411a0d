"""A cheap fingerprint of everything Kconfig's toolchain probes can see.

A resolved .config records what the compiler, assembler, linker and pahole
support (`$(shell,...)`, `$(cc-option,...)`, `$(success,...)` in Kconfig), and
some probes also depend on installed libraries (CC_CAN_LINK needs a libc for
`-m32`). Rerunning the probes costs seconds; checking what they could see
costs milliseconds. The fingerprint changes when a tool binary on PATH, the
package database (any install, upgrade or removal) or a make variable that
selects the toolchain changes, so a cache keyed by it is never stale.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

PROBED_TOOLS = (
    "gcc",
    "cc",
    "as",
    "ld",
    "ld.bfd",
    "objcopy",
    "nm",
    "pahole",
    "clang",
    "ld.lld",
    "rustc",
    "bindgen",
    "perl",
    "sh",
)
TOOLCHAIN_VARIABLES = (
    "PATH",
    "CC",
    "HOSTCC",
    "LD",
    "AS",
    "CROSS_COMPILE",
    "LLVM",
    "LLVM_IAS",
    "KCFLAGS",
    "KCPPFLAGS",
    "USERCFLAGS",
    "USERLDFLAGS",
    "PAHOLE",
    "RUSTC",
    "BINDGEN",
)
PACKAGE_DATABASES = (
    Path("/var/lib/dpkg/status"),
    Path("/var/lib/rpm"),
    Path("/usr/lib/sysimage/rpm"),
)


def fingerprint(environ: Mapping[str, str] | None = None) -> str:
    """Hex digest of the tool binaries, package databases and toolchain variables."""
    env = os.environ if environ is None else environ
    digest = hashlib.sha256()
    for name in TOOLCHAIN_VARIABLES:
        digest.update(f"{name}={env.get(name, '')}\0".encode())
    path = env.get("PATH", os.defpath)
    for tool in PROBED_TOOLS:
        found = shutil.which(tool, path=path)
        digest.update(f"{tool}:{_stat_key(Path(found).resolve()) if found else '-'}\0".encode())
    for database in PACKAGE_DATABASES:
        digest.update(f"{database}:{_stat_key(database)}\0".encode())
    return digest.hexdigest()


def _stat_key(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "-"
    if path.is_dir():
        # rpm's database is a directory; its files change on every transaction.
        newest = max((_mtime(child) for child in path.iterdir()), default=stat.st_mtime_ns)
        return f"{path}:dir:{newest}"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
