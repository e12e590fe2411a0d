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
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

# Symbols a .config records from the toolchain (`$(cc-option)`, `$(success)`, `$(shell)`,
# version probes in init/Kconfig and arch/x86/Kconfig.assembler) or that x86 selects only
# when the compiler supports them: differences are expected between build roots (mock's
# compiler, pahole or 32-bit libc present or not) and are not config drift. Options a
# packager sets (STACKPROTECTOR, INIT_STACK_*, RETHUNK) are deliberately not here.
TOOLCHAIN_SYMBOLS = (
    "CC_VERSION_TEXT|CC_IS_[A-Z]+|(GCC|CLANG|AS|LD|LLD|PAHOLE)_VERSION|AS_IS_[A-Z]+|LD_IS_[A-Z]+"
    "|(RUSTC|BINDGEN)_VERSION_TEXT|RUSTC_VERSION|RUST_IS_AVAILABLE"
    "|CC_HAS_[A-Z0-9_]+|CC_CAN_[A-Z0-9_]+|CC_NO_[A-Z0-9_]+|CC_HAVE_[A-Z0-9_]+"
    "|CC_IMPLICIT_FALLTHROUGH|GCC_ASM_GOTO_OUTPUT_WORKAROUND|AS_HAS_[A-Z0-9_]+"
    "|AS_[A-Z0-9]+_NI|AS_AVX512|AS_TPAUSE|AS_GFNI|AS_WRUSS|TOOLCHAIN_HAS_[A-Z0-9_]+"
    "|LD_ORPHAN_WARN(_LEVEL)?|LD_CAN_[A-Z0-9_]+|TOOLS_SUPPORT_RELR|PAHOLE_HAS_[A-Z0-9_]+"
    "|FTRACE_MCOUNT_USE_CC|HAS_LTO_CLANG|HAVE_KCSAN_COMPILER|HAVE_KMSAN_[A-Z_]+"
    "|ARCH_SUPPORTS_INT128|HAVE_STACKPROTECTOR"
)
_TOOLCHAIN_SYMBOL_RE = re.compile(f"(?:{TOOLCHAIN_SYMBOLS})")


def is_toolchain_symbol(name: str) -> bool:
    """A symbol whose value the build host's tools decide, not the fragments."""
    return _TOOLCHAIN_SYMBOL_RE.fullmatch(name) is not None


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


def compiler(environ: Mapping[str, str] | None = None) -> str | None:
    """The C compiler the build root chose (`CC=`, e.g. gcc-12 or clang), which Kconfig's
    probes run instead of `$(CROSS_COMPILE)gcc`; None for the kernel's default. CC is in
    TOOLCHAIN_VARIABLES, so the fingerprint (and every cache keyed by it) follows it."""
    env = os.environ if environ is None else environ
    return env.get("CC") or None


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
