"""The two initramfs images of a boot test.

dom0's carries busybox, the Xen toolstack with every library it loads, dom0's Xen
modules, the guest (kernel, initramfs, xl config) and an init script that starts the
toolstack, creates the guest, relays its console to the serial line and powers off.
The guest's carries only a freestanding /init (guest_init.c) and a per-run token.
"""

from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from kxen import arches
from kxen.errors import InputError, MissingToolError
from kxen.inspect.boottest.initramfs import Initramfs
from kxen.inspect.boottest.pieces import TOOLS, XenPieces
from kxen.support import integrity
from kxen.support.fsutil import atomic_write_bytes
from kxen.support.progress import Progress
from kxen.support.runner import CommandFailed, Runner

GUEST_NAME = "kxen-guest"
GUEST_MEMORY_MIB = 256
GUEST_LOG = f"/var/log/xen/console/guest-{GUEST_NAME}.log"
# privcmd before xenfs, which uses it; the rest back xenstored, xenconsoled and xl.
DOM0_MODULES = ("xen-privcmd", "xenfs", "xen-evtchn", "xen-gntdev", "xen-gntalloc")
HOST_LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
TOOLSTACK_LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64")
# Loaded with dlopen by glibc's pthread_cancel: without it xl's background child aborts
# and the guest's shutdown is never handled.
DLOPENED = ("libgcc_s.so.1",)
DOM0_WAIT_SECONDS = 3600  # dom0 gives up on the guest only when the host's timeout has not hit

DOM0_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/sbin LD_LIBRARY_PATH=/lib
mkdir -p /proc /sys /dev /run /tmp /var
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /run/lock /var/lib/xen /var/lib/xenstored /var/log/xen/console
ln -s /run /var/run
ln -s /run/lock /var/lock
for module in {modules}; do
  insmod /modules/$module.ko || echo "kxen-dom0: insmod $module failed"
done
mount -t xenfs xenfs /proc/xen
echo "kxen-dom0: toolstack starting"
/tools/xenstored
/tools/xen-init-dom0
/tools/xenconsoled --log=guest --log-dir=/var/log/xen/console
if /tools/xl create /guest/guest.cfg; then
  echo "kxen-dom0: domain created"
  touch {log}
  tail -n +1 -f {log} | while IFS= read -r line; do echo "[domU] $line"; done &
  relay=$!
  waited=0
  while /tools/xl list {name} >/dev/null 2>&1 && [ $waited -lt {wait} ]; do
    sleep 1
    waited=$((waited + 1))
  done
  sleep 1
  kill $relay
  echo "kxen-dom0: domain gone"
else
  echo "kxen-dom0: xl create failed"
fi
poweroff -f
"""

GUEST_CONFIG = """name = "{name}"
type = "{mode}"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/initramfs"
extra = "{cmdline}"
memory = {memory}
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"""


@dataclass(frozen=True)
class Guest:
    arch: str
    kernel: Path
    initramfs: bytes
    cmdline: str


def guest_initramfs(
    arch: str, token: str, cache: Path, runner: Runner, progress: Progress | None = None
) -> bytes:
    image = Initramfs()
    image.char_device("dev/console", 5, 1)
    quarantine = integrity.Quarantine.in_cache(cache, progress)
    image.copy("init", guest_init(arch, cache, runner, quarantine), 0o755)
    image.file("token", f"{token}\n".encode())
    return image.gzipped()


def guest_init(
    arch: str, cache: Path, runner: Runner, quarantine: integrity.Quarantine | None = None
) -> Path:
    """guest_init.c built for the guest's arch (cached by source and flags, and checked
    against the digest recorded when it was built)."""
    source = resources.files(__package__).joinpath("guest_init.c").read_bytes()
    flags = [
        arches.get(arch).gcc_flag,
        "-static",
        "-nostdlib",
        "-ffreestanding",
        "-fno-stack-protector",
        "-fno-pie",
        "-no-pie",
        "-mgeneral-regs-only",
        "-O2",
    ]
    key = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:16]
    target = cache / "boot-test" / "init" / f"init-{arch}-{key}"
    try:
        if integrity.check_sealed(target) is not None:
            return target
    except integrity.Corrupt as corrupt:
        quarantine = quarantine or integrity.Quarantine.in_cache(cache)
        quarantine.set_aside(
            integrity.sealed_parts(target), corrupt, "guest init binary", "building it again"
        )
    source_path = target.with_suffix(".c")
    atomic_write_bytes(source_path, source)
    built = target.with_name(f".{target.name}.tmp")
    try:
        runner.run(["gcc", *flags, "-o", built, source_path])
    except CommandFailed as exc:
        raise MissingToolError(
            f"gcc could not build the {arch} guest init", details=exc.details
        ) from exc
    integrity.seal_as(target, integrity.digest_of(built))
    built.replace(target)
    return target


def dom0_initramfs(pieces: XenPieces, guest: Guest, mode: str) -> bytes:
    image = Initramfs()
    image.char_device("dev/console", 5, 1)
    image.copy("bin/busybox", pieces.busybox, 0o755)
    programs = {tool: pieces.tool(tool) for tool in TOOLS}
    for tool, program in programs.items():
        image.copy(f"tools/{tool}", program, 0o755)
    _add_libraries(image, list(programs.values()), pieces.toolstack)
    for name in DOM0_MODULES:
        image.file(f"modules/{name}.ko", _module(pieces.dom0_modules, name))
    image.file("etc/xen/xl.conf", b'autoballoon="off"\n')
    image.copy("guest/vmlinuz", guest.kernel)
    image.file("guest/initramfs", guest.initramfs)
    config = GUEST_CONFIG.format(
        name=GUEST_NAME, mode=mode, cmdline=guest.cmdline, memory=GUEST_MEMORY_MIB
    )
    image.file("guest/guest.cfg", config.encode())
    script = DOM0_INIT.format(
        modules=" ".join(DOM0_MODULES), log=GUEST_LOG, name=GUEST_NAME, wait=DOM0_WAIT_SECONDS
    )
    image.file("init", script.encode(), 0o755)
    return image.gzipped()


def _module(tree: Path, name: str) -> bytes:
    """A module of dom0's kernel, decompressed (busybox insmod reads plain .ko files)."""
    for suffix, unpack in ((".ko", bytes), (".ko.xz", lzma.decompress)):
        found = sorted(tree.rglob(f"{name}{suffix}"))
        if found:
            return unpack(found[0].read_bytes())
    raise InputError(f"{tree}: dom0 kernel has no {name} module (.ko or .ko.xz)")


def _add_libraries(image: Initramfs, programs: list[Path], toolstack: Path) -> None:
    """Every shared library the programs need, in /lib, and the dynamic loader at its path."""
    search = [toolstack / d for d in TOOLSTACK_LIBRARY_DIRS] + [Path(d) for d in HOST_LIBRARY_DIRS]
    pending = list(programs)
    seen: set[str] = set()

    def add(name: str) -> None:
        if name not in seen:
            seen.add(name)
            library = _find_library(name, search)
            image.copy(f"lib/{name}", library, 0o755)
            pending.append(library)

    for name in DLOPENED:
        add(name)
    while pending:
        needed, interpreter = _dynamic_info(pending.pop())
        if interpreter and interpreter not in image:
            image.copy(interpreter, Path(interpreter).resolve(), 0o755)
        for name in needed:
            add(name)


def _dynamic_info(binary: Path) -> tuple[list[str], str | None]:
    with binary.open("rb") as handle:
        elf = ELFFile(handle)
        interpreter = None
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
        needed = [
            str(getattr(tag, "needed"))  # noqa: B009 (set dynamically by pyelftools)
            for section in elf.iter_sections()
            if isinstance(section, DynamicSection)
            for tag in section.iter_tags()
            if tag.entry.d_tag == "DT_NEEDED"
        ]
    return needed, interpreter


def _find_library(name: str, search: list[Path]) -> Path:
    for directory in search:
        candidate = directory / name
        if candidate.exists():
            return candidate.resolve()
    raise InputError(f"shared library {name} not found in {', '.join(map(str, search))}")
