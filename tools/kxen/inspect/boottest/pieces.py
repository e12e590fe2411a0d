"""What a boot test runs on: a Xen hypervisor, a dom0 kernel, the Xen toolstack, busybox.

Each piece is a path the user may give (a Fedora user points at the files of their own
`xen`, `xen-runtime` and `kernel` packages); whatever is not given comes from Debian's
packages, fetched with `apt-get download` into the cache and unpacked with `dpkg -x`,
never installed on the host.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import InputError, MissingToolError, SourceError
from kxen.support import integrity
from kxen.support.fsutil import atomic_write_text, exclusive_lock, replace_dir, scratch_dir
from kxen.support.progress import Progress
from kxen.support.runner import CommandFailed, Runner

XEN_VERSION = "4.17"
DEBIAN_PACKAGES = (
    f"xen-hypervisor-{XEN_VERSION}-amd64",
    f"xen-utils-{XEN_VERSION}",
    "xen-utils-common",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    f"libxenmisc{XEN_VERSION}",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "busybox-static",
)
DEBIAN_DOM0_KERNEL = "linux-image-amd64"  # the metapackage; it depends on the current ABI's image
TOOLS = ("xl", "xenstored", "xenconsoled", "xen-init-dom0", "libxl-save-helper")
# Where distributions install the toolstack's programs (Debian: versioned dir; Fedora: sbin).
TOOL_DIRS = ("usr/lib/xen-*/bin", "usr/lib/xen/bin", "usr/libexec/xen/bin", "usr/sbin", "usr/bin")
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class XenPieces:
    hypervisor: Path
    """Xen as QEMU's multiboot loader needs it: decompressed."""
    dom0_kernel: Path
    dom0_modules: Path
    """lib/modules/<release> of the dom0 kernel: privcmd, xenfs, evtchn, gntdev are modules."""
    toolstack: Path
    """A root directory holding the toolstack's programs and libraries."""
    busybox: Path
    origin: str

    def tool(self, name: str) -> Path:
        for pattern in TOOL_DIRS:
            for directory in sorted(self.toolstack.glob(pattern)):
                candidate = directory / name
                if candidate.is_file() and _is_elf(candidate):
                    return candidate
        raise InputError(f"{self.toolstack}: no {name} program in {', '.join(TOOL_DIRS)}")


@dataclass(frozen=True)
class PieceChoice:
    """The user's own pieces; None means Debian's."""

    xen: Path | None = None
    dom0_kernel: Path | None = None
    toolstack: Path | None = None
    busybox: Path | None = None


def xen_pieces(choice: PieceChoice, cache: Path, runner: Runner, progress: Progress) -> XenPieces:
    debian: Path | None = None
    quarantine = integrity.Quarantine.in_cache(cache, progress)
    if None in (choice.xen, choice.dom0_kernel, choice.toolstack, choice.busybox):
        debian = debian_root(cache / "boot-test" / "debian", runner, progress, quarantine)
    xen = choice.xen or _only(debian, f"boot/xen-{XEN_VERSION}-amd64.gz")
    dom0 = choice.dom0_kernel or _only(debian, "boot/vmlinuz-*")
    pieces = XenPieces(
        hypervisor=_decompressed_xen(xen, cache / "boot-test" / "xen", quarantine),
        dom0_kernel=dom0,
        dom0_modules=dom0_modules_of(dom0),
        toolstack=choice.toolstack or _need(debian),
        busybox=choice.busybox or _only(debian, "bin/busybox"),
        origin="debian" if debian and not any(vars(choice).values()) else "custom",
    )
    for tool in TOOLS:
        pieces.tool(tool)
    return pieces


def dom0_modules_of(kernel: Path) -> Path:
    """The module tree beside a kernel image: Fedora's lib/modules/R/vmlinuz or /boot/vmlinuz-R."""
    if kernel.name == "vmlinuz" and (kernel.parent / "kernel").is_dir():
        return kernel.parent
    release = kernel.name.removeprefix("vmlinuz-")
    modules = kernel.parent.parent / "lib" / "modules" / release
    if not modules.is_dir():
        raise InputError(
            f"{kernel}: no module tree for it (looked for {modules}); dom0 needs its Xen modules"
        )
    return modules


def debian_root(
    where: Path, runner: Runner, progress: Progress, quarantine: integrity.Quarantine | None = None
) -> Path:
    """Debian's pieces unpacked under `where/root`, fetched once, then verified against
    the manifest made when they were unpacked before each reuse (set aside if they fail)."""
    root = where / "root"
    quarantine = quarantine or integrity.Quarantine(where / integrity.CORRUPT_DIR, progress)
    with exclusive_lock(where / ".lock", "the boot-test package cache", wait=True):
        if root.exists() or root.is_symlink():
            try:
                integrity.verify(root, root / integrity.MANIFEST_NAME)
                return root
            except integrity.Corrupt as corrupt:
                quarantine.set_aside(root, corrupt, "boot-test package root", "fetching it again")
        progress.phase("boot-test", "fetching Debian's Xen, kernel and busybox packages")
        dom0_image = _dom0_image_package(runner)
        with scratch_dir(where, ".fetch-") as scratch:
            debs = scratch / "debs"
            debs.mkdir()
            try:
                runner.run(
                    ["apt-get", "download", "-q", *DEBIAN_PACKAGES, dom0_image],
                    cwd=debs,
                    env={"LC_ALL": "C"},
                )
            except CommandFailed as exc:
                raise SourceError(
                    "apt-get download of the boot-test packages failed", details=exc.details
                ) from exc
            staging = scratch / "root"
            names = sorted(p.name for p in debs.glob("*.deb"))
            for name in names:
                progress.step(f"unpacking {name}")
                runner.run(["dpkg-deb", "-x", debs / name, staging])
            atomic_write_text(staging / ".complete", "".join(f"{n}\n" for n in names))
            integrity.record(staging, staging / integrity.MANIFEST_NAME)
            replace_dir(staging, root)
    return root


def _dom0_image_package(runner: Runner) -> str:
    try:
        shown = runner.run(["apt-cache", "depends", DEBIAN_DOM0_KERNEL], env={"LC_ALL": "C"})
    except CommandFailed as exc:
        raise MissingToolError(
            f"apt-cache knows no {DEBIAN_DOM0_KERNEL} (run apt-get update, or pass --dom0-kernel)"
        ) from exc
    match = re.search(r"Depends: (linux-image-[0-9][^\s]*)", shown.output)
    if not match:
        raise SourceError(f"{DEBIAN_DOM0_KERNEL} depends on no kernel image package")
    return match[1]


def _decompressed_xen(image: Path, where: Path, quarantine: integrity.Quarantine) -> Path:
    """QEMU's multiboot loader reads an uncompressed image only; cached by content and
    checked against the digest recorded when it was decompressed."""
    if not image.is_file():
        raise InputError(f"--xen {image}: no such file")
    data = image.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return image
    target = where / f"xen-{hashlib.sha256(data).hexdigest()[:16]}"
    try:
        if integrity.check_sealed(target) is not None:
            return target
    except integrity.Corrupt as corrupt:
        parts = integrity.sealed_parts(target)
        quarantine.set_aside(parts, corrupt, "decompressed Xen", "decompressing it again")
    integrity.write_sealed(target, gzip.decompress(data))
    return target


def _only(root: Path | None, pattern: str) -> Path:
    found = sorted(_need(root).glob(pattern))
    if len(found) != 1:
        raise SourceError(f"{root}: expected one {pattern}, found {len(found)}")
    return found[0]


def _need(root: Path | None) -> Path:
    assert root is not None, "Debian's packages are fetched whenever a piece is not given"
    return root


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC
