"""Scratch rpm roots and the tiny stand-in packages a root needs, for the upgrade-path
tests (with rpm) and the nightly repository's tests (with dnf).

The stand-ins are built here with rpmbuild in a blink: a base package (busybox as
/bin/sh and a few applets, a machine id, and a `kernel-install` that writes Boot Loader
Specification entries, so the kernel packages' real scriptlets run in the root),
`xen-hypervisor` (what makes a host a dom0 host) and Fedora 8's dom0-capable
`kernel-xen-2.6.21` (what a host upgrading to Fedora 9 still had).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

MACHINE_ID = "0123456789abcdef0123456789abcdef"
BUSYBOX_APPLETS = ("sh", "cat", "mkdir", "printf", "rm", "test", "[")

KERNEL_INSTALL = """#!/bin/sh
# Stand-in for systemd's kernel-install: `add VERSION IMAGE` writes a Boot Loader
# Specification (type 1) entry, `remove VERSION` deletes it.
set -e
entry=/boot/loader/entries/$(cat /etc/machine-id)-$2.conf
case "$1" in
  add)
    [ -f "$3" ] || { echo "kernel-install: $3: no such file" >&2; exit 1; }
    mkdir -p /boot/loader/entries
    printf 'title Linux %s\\nversion %s\\nlinux /vmlinuz-%s\\n' "$2" "$2" "$2" > "$entry" ;;
  remove)
    rm -f "$entry" ;;
  *)
    exit 1 ;;
esac
"""

BASE_SPEC = """
%global debug_package %{nil}
%global __os_install_post %{nil}
Name: base-standin
Version: 1
Release: 1
Summary: busybox as /bin/sh, a machine id and a kernel-install stand-in
License: GPL-2.0-only

%description
The minimum a root needs for kernel packages' scriptlets.

%install
install -d %{buildroot}/bin %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/boot
install -m 0755 %{inputs}/busybox %{buildroot}/bin/busybox
for applet in %{applets}; do ln -s busybox "%{buildroot}/bin/$applet"; done
install -m 0755 %{inputs}/kernel-install %{buildroot}/usr/bin/kernel-install
echo %{machine_id} > %{buildroot}/etc/machine-id

%files
/bin/*
/usr/bin/kernel-install
/etc/machine-id
%dir /boot
"""

XEN_HYPERVISOR_SPEC = """
%global debug_package %{nil}
Name: xen-hypervisor
Version: 4.17.5
Release: 1
Summary: Stand-in for Fedora's Xen hypervisor package: what makes a host a dom0 host
License: GPL-2.0-only
BuildArch: noarch

%description
The hypervisor image a dom0 host boots.

%install
install -d %{buildroot}/boot
echo xen > %{buildroot}/boot/xen-4.17.5.gz

%files
/boot/xen-4.17.5.gz
"""

KERNEL_INSTALL_SCRIPTLETS = """%posttrans
/usr/bin/kernel-install add %{uname} /boot/vmlinuz-%{uname}

%preun
/usr/bin/kernel-install remove %{uname}
"""
"""How every kernel stand-in installs and removes its boot entry (kernel-install, as
Fedora's kernel packages do)."""

# Fedora 8's kernel-xen, a variant of the kernel SRPM built from XenSource's 2.6.18 patches
# forward-ported to 2.6.21: one kernel for dom0 and domU, `uname -r` ending in "xen". Its
# dependency header is the variants' of that era: `Provides: kernel = %{version}` (what made
# yum, and makes dnf, keep it as an installonly kernel), `kernel-<arch>` and the xen conflicts.
OLD_KERNEL_XEN_UNAME = "2.6.21-2950.fc8xen"
OLD_KERNEL_XEN_SPEC = (
    """
%global debug_package %{nil}
%global __os_install_post %{nil}
%global uname 2.6.21-2950.fc8xen
Name: kernel-xen
Version: 2.6.21
Release: 2950.fc8
Summary: Stand-in for Fedora 8's kernel-xen: XenSource's patches, dom0 and domU
License: GPL-2.0-only
Provides: kernel = %{version}
Provides: kernel-%{_target_cpu} = %{version}-%{release}xen
Conflicts: glibc < 2.3.5-1, xen < 3.0.1

%description
The Xen kernel a Fedora 8 host boots, as a dom0 under the hypervisor or as a guest.

%install
install -d %{buildroot}/boot %{buildroot}/lib/modules/%{uname}
echo kernel-xen > %{buildroot}/boot/vmlinuz-%{uname}
touch %{buildroot}/lib/modules/%{uname}/modules.dep

"""
    + KERNEL_INSTALL_SCRIPTLETS
    + """
%files
/boot/vmlinuz-%{uname}
/lib/modules/%{uname}
"""
)


def rpmbuild(spec_path: Path, topdir: Path, *defines: tuple[str, str]) -> list[Path]:
    argv = ["rpmbuild", "-bb", "--nodeps", "--target", "x86_64", "--define", f"_topdir {topdir}"]
    argv += ["--define", "dist %{nil}"]
    for name, value in defines:
        argv += ["--define", f"{name} {value}"]
    result = subprocess.run([*argv, str(spec_path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return sorted(topdir.glob("RPMS/*/*.rpm"))


@dataclasses.dataclass(frozen=True)
class StandIns:
    """Builds stand-in packages in `work`; `inputs` holds the files they install."""

    work: Path
    inputs: Path

    def build(self, name: str, text: str, *defines: tuple[str, str]) -> list[Path]:
        spec_path = self.work / f"{name}.spec"
        spec_path.write_text(text)
        return rpmbuild(spec_path, self.work / name, ("inputs", str(self.inputs)), *defines)

    def build_base(self) -> Path:
        (base,) = self.build(
            "base",
            BASE_SPEC,
            ("applets", " ".join(f"'{a}'" for a in BUSYBOX_APPLETS)),
            ("machine_id", MACHINE_ID),
        )
        return base

    def build_xen_hypervisor(self) -> Path:
        (xen_hypervisor,) = self.build("xen-hypervisor", XEN_HYPERVISOR_SPEC)
        return xen_hypervisor

    def build_old_kernel_xen(self) -> Path:
        (kernel_xen,) = self.build("kernel-xen-2.6.21", OLD_KERNEL_XEN_SPEC)
        return kernel_xen


def stand_ins(work: Path) -> StandIns:
    """A builder whose inputs are the host's static busybox and KERNEL_INSTALL."""
    inputs = work / "inputs"
    inputs.mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox, "run tools/setup-host: it installs busybox-static"
    shutil.copy(busybox, inputs / "busybox")
    (inputs / "kernel-install").write_text(KERNEL_INSTALL)
    return StandIns(work, inputs)


class Root:
    """A scratch rpm root with its own database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        subprocess.run(["rpm", "--root", str(path), "--initdb"], check=True)

    def rpm(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["rpm", "--root", str(self.path), *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check:
            assert result.returncode == 0, f"{argv}: {result.stderr}"
        return result

    def installed(self, name: str) -> list[str]:
        result = self.rpm("-q", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n", name, check=False)
        return sorted(result.stdout.split()) if result.returncode == 0 else []

    def entries(self) -> dict[str, str]:
        """Boot entries by kernel version (the `version` line of each BLS entry)."""
        found = {}
        for entry in sorted((self.path / "boot/loader/entries").glob("*.conf")):
            fields = dict(line.split(" ", 1) for line in entry.read_text().splitlines())
            assert (self.path / "boot" / fields["linux"].lstrip("/")).is_file(), entry
            found[fields["version"]] = entry.name
        return found
