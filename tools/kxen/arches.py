"""The architectures kernel-xen is built for, as data.

Every stage reads these records rather than a table of its own: the manifest
schema's `arches` and `mock.roots`, layers.yaml validation, kconfig's ARCH and
SRCARCH, the spec's per-arch block, mock's default roots, what `kxen verify`
requires of a kernel and which RPMs `kxen boot-test` can boot. A new arch is
one `Arch` in `ARCHES` plus its layers in configs/layers.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from kxen.errors import InputError
from kxen.inspect.xennotes import (
    XEN_ELFNOTE_ENTRY,
    XEN_ELFNOTE_FEATURES,
    XEN_ELFNOTE_GUEST_OS,
    XEN_ELFNOTE_PHYS32_ENTRY,
)


@dataclass(frozen=True)
class GuestType:
    """A kind of Xen domU a kernel-xen boots as, and what the kernel needs for it."""

    name: str
    """`kxen verify --guest`, `kxen boot-test --mode` and xl's `type =` all call it so."""
    guest_type: str
    """What /sys/hypervisor/guest_type says inside such a guest: boot-test's marker."""
    options: tuple[str, ...]
    """Kconfig symbols (without CONFIG_) that build the kernel's entry for this guest type."""
    notes: tuple[int, ...]
    """Xen ELF notes Xen's domain builder reads to start the kernel this way."""


# libxc's PV loader takes only a kernel whose notes say it is Linux (GUEST_OS), where its PV
# entry point is (ENTRY) and what it supports (FEATURES); ENTRY exists only with XEN_PV.
PV = GuestType(
    name="pv",
    guest_type="PV",
    options=("XEN_PV",),
    notes=(XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES),
)
# Xen starts a PVH guest in 32-bit protected mode at the address PHYS32_ENTRY gives.
PVH = GuestType(
    name="pvh",
    guest_type="PVH",
    options=("XEN_PVH",),
    notes=(XEN_ELFNOTE_PHYS32_ENTRY,),
)

# Xen guest support itself, the Xen console (hvc0: xl console, boot-test's serial relay) and
# /sys/hypervisor, where a guest (and boot-test's /init) reads what Xen runs it as.
XEN_DOMU_OPTIONS = ("XEN", "HVC_XEN", "XEN_SYS_HYPERVISOR")


@dataclass(frozen=True)
class Arch:
    """What kxen knows of one arch it builds kernel-xen for."""

    name: str
    """rpm's name: the manifest's `arches`, ExclusiveArch and %ifarch, the RPMs' arch and
    `results/<nvr>/<arch>/`."""
    kernel_arch: str
    """make's ARCH=: kbuild names the kernel's arch its own way (32-bit x86 is i386)."""
    srcarch: str
    """The directory under arch/ that kbuild builds from (its SRCARCH; i386 and x86_64 share
    arch/x86): kconfig's environment, and the arch files kernel-xen-devel ships."""
    image_path: str
    """The boot image make leaves in the tree, shipped as /boot/vmlinuz-<kver>; its file
    name is the make target that builds it."""
    mock_config_arch: str
    """The arch in the names of mock's configs (`fedora-<N>-<this>`): mock's i386 configs
    target i686, so kxen picks the config rather than passing `--arch i686`."""
    gcc_flag: str
    """What the host's gcc needs to build boot-test's guest /init for this arch: a 64-bit
    /init does not run in a 32-bit guest."""
    guests: tuple[GuestType, ...]
    """The Xen guest types this arch's kernel-xen boots as: what `kxen verify` checks
    unless `--guest` says otherwise."""
    required_options: tuple[str, ...]
    """Kconfig symbols every kernel-xen of this arch has, whatever guest it boots as."""
    boot_modes: tuple[str, ...]
    """The boot-test modes its kernel boots in under Xen in QEMU's emulation (what CI
    proves); none: boot-test cannot boot it at all."""

    @property
    def image_target(self) -> str:
        """make's target for the boot image: `bzImage` on x86, `Image` on arm64."""
        return PurePosixPath(self.image_path).name


NATIVE = "native"
"""The boot-test mode without Xen: the same kernel on QEMU's emulated PC."""

X86_64 = Arch(
    name="x86_64",
    kernel_arch="x86_64",
    srcarch="x86",
    image_path="arch/x86/boot/bzImage",
    mock_config_arch="x86_64",
    gcc_flag="-m64",
    guests=(PV, PVH),
    required_options=XEN_DOMU_OPTIONS,
    boot_modes=(PV.name, PVH.name, NATIVE),
)
# Built from the same arch/x86 sources into the same bzImage; what differs, and why:
I686 = replace(
    X86_64,
    name="i686",
    kernel_arch="i386",
    mock_config_arch="i386",
    gcc_flag="-m32",
    # 32-bit PV left Linux in 5.9: XEN_PV depends on X86_64.
    guests=(PVH,),
    # XEN depends on X86_PAE on 32-bit x86: Xen runs 32-bit guests on PAE page tables only.
    required_options=(*XEN_DOMU_OPTIONS, "X86_PAE"),
    # As a PVH domU it spins on its first CPUID under QEMU's TCG, which lacks SVM's
    # NRIP-save (README, Boot tests); it boots on hardware.
    boot_modes=(NATIVE,),
)

ARCHES: dict[str, Arch] = {arch.name: arch for arch in (I686, X86_64)}
"""Every arch kxen builds for, by rpm name, in the order messages list them."""


def known() -> tuple[Arch, ...]:
    return tuple(ARCHES.values())


def names() -> tuple[str, ...]:
    return tuple(ARCHES)


def get(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise InputError(f"unknown arch {name!r} (expected {' or '.join(names())})") from None


def guest_types() -> tuple[GuestType, ...]:
    """Every guest type some arch boots as, in name order (`--guest`, `--mode`)."""
    by_name = {guest.name: guest for arch in ARCHES.values() for guest in arch.guests}
    return tuple(by_name[name] for name in sorted(by_name))


def boot_modes() -> tuple[str, ...]:
    """`kxen boot-test --mode`: each guest type under Xen, and the kernel without Xen."""
    return (*(guest.name for guest in guest_types()), NATIVE)


def guest_type(name: str) -> GuestType:
    return next(guest for guest in guest_types() if guest.name == name)


def srcarch_of(kernel_arch: str) -> str:
    """kbuild's SRCARCH for `make ARCH=kernel_arch`: ARCH itself unless an arch says."""
    return next((a.srcarch for a in ARCHES.values() if a.kernel_arch == kernel_arch), kernel_arch)
