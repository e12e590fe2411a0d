"""The upgrade path, with rpm in scratch roots (`rpm --root`): kernel-xen beside the
bare-metal kernel, kernel-xen versions side by side, and the dom0-host policy.

kernel-xen comes from the real smoke build and, for two versions side by side, from
the real spec template rendered by kxen over a tiny tree whose Makefile stands in for
kbuild's targets (rpmbuild then takes seconds). The bare-metal `kernel`,
`xen-hypervisor`, a busybox /bin/sh and systemd's `kernel-install` (which writes Boot
Loader Specification entries) are tiny stand-ins built here; rpm runs the packages'
real scriptlets in the root.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kxen import manifest
from kxen.build import spec
from kxen.upstream.origin import ORIGIN_KERNEL_ORG, Upstream
from kxen.versions import UpstreamVersion

from ..rpmroots import KERNEL_INSTALL_SCRIPTLETS, Root, StandIns, rpmbuild, stand_ins
from ..support import make_checkout
from ..unit.conftest import kernel_makefile, write_tarball
from .conftest import SmokeBuild

pytestmark = pytest.mark.slow
# The bare-metal kernel as Fedora lays it out for this spec's era: /boot files named by
# `uname -r` (no variant suffix), modules under /lib/modules, installonly, kernel-install.
KERNEL_SPEC = (
    """
%global debug_package %{nil}
%global __os_install_post %{nil}
Name: kernel
Version: %{kversion}
Release: %{krelease}
Summary: Stand-in for the bare-metal kernel
License: GPL-2.0-only
Provides: kernel-uname-r = %{uname}
Provides: installonlypkg(kernel)

%description
Same version-release as the kernel-xen it is installed beside.

%install
install -d %{buildroot}/boot %{buildroot}/lib/modules/%{uname}
echo kernel > %{buildroot}/boot/vmlinuz-%{uname}
echo map > %{buildroot}/boot/System.map-%{uname}
echo CONFIG_XEN=y > %{buildroot}/boot/config-%{uname}
touch %{buildroot}/lib/modules/%{uname}/modules.dep

"""
    + KERNEL_INSTALL_SCRIPTLETS
    + """
%files
/boot/vmlinuz-%{uname}
/boot/System.map-%{uname}
/boot/config-%{uname}
/lib/modules/%{uname}
"""
)

# What the spec asks of kbuild, done in a blink: kernelversion/olddefconfig for %prep,
# bzImage/modules for %build, modules_install for %install.
FAKE_KBUILD_TARGETS = """
bzImage:
\t@mkdir -p arch/x86/boot include/config
\t@echo "bzImage of $(KERNELVERSION)" > arch/x86/boot/bzImage
\t@echo "ffffffff81000000 T _text" > System.map
\t@echo "$(KERNELVERSION)$(LOCALVERSION)" > include/config/kernel.release
modules:
\t@touch Module.symvers
modules_install:
\t@mkdir -p $(INSTALL_MOD_PATH)/lib/modules/$(KERNELVERSION)
\t@touch $(INSTALL_MOD_PATH)/lib/modules/$(KERNELVERSION)/modules.dep
"""
TINY_UPSTREAM = Upstream(
    version=UpstreamVersion("6.1"),
    tarball=Path("linux-6.1.tar.xz"),
    patches=(),
    topdir="linux-6.1",
    origin=ORIGIN_KERNEL_ORG,
    identity="tiny",
)


@dataclasses.dataclass(frozen=True)
class Packages(StandIns):
    base: Path
    xen_hypervisor: Path
    tiny_kernel_xen: dict[int, Path]  # release -> kernel-xen RPM from the real spec


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    work = tmp_path_factory.mktemp("upgrade-packages")
    made = stand_ins(work)
    tiny = {n: _tiny_kernel_xen(work / f"kernel-xen-{n}", n) for n in (1, 2)}
    return Packages(made.work, made.inputs, made.build_base(), made.build_xen_hypervisor(), tiny)


def _tiny_kernel_xen(work: Path, release: int) -> Path:
    """kernel-xen from the real spec template at `release`, over the tiny tree."""
    checkout = make_checkout(work / "checkout")
    path = checkout / manifest.MANIFEST_NAME
    text = path.read_text()
    assert "\nrelease: 1" in text
    path.write_text(text.replace("\nrelease: 1", f"\nrelease: {release}", 1))
    loaded = manifest.load(path)
    inputs = spec.SpecInputs(
        manifest=loaded,
        upstream=TINY_UPSTREAM,
        flavour="smoke",
        buildid=spec.flavour_buildid(loaded.buildid, "smoke"),
        patches=(),
        config_names=spec.config_names(loaded, TINY_UPSTREAM, "smoke"),
    )
    topdir = work / "rpmbuild"
    sources = topdir / "SOURCES"
    sources.mkdir(parents=True)
    tree = {
        "linux-6.1/Makefile": (kernel_makefile(6, 1, 0) + FAKE_KBUILD_TARGETS).encode(),
        "linux-6.1/COPYING": b"GPL-2.0\n",
        "linux-6.1/include/linux/kernel.h": b"/* header */\n",
        "linux-6.1/arch/x86/include/asm/xen.h": b"/* header */\n",
        "linux-6.1/scripts/Makefile.build": b"# build\n",
    }
    write_tarball(sources / TINY_UPSTREAM.tarball.name, tree)
    for config in inputs.config_names:
        (sources / config).write_text("CONFIG_XEN=y\n")
    spec_path = work / "kernel-xen.spec"
    spec.write(spec.render(inputs, checkout / "specs"), spec_path)
    built = rpmbuild(spec_path, topdir)
    (main,) = [p for p in built if p.name.startswith(f"kernel-xen-6.1.0-{release}.")]
    return main


@pytest.fixture
def root(tmp_path: Path, packages: Packages) -> Root:
    scratch = Root(tmp_path / "root")
    scratch.rpm("-i", packages.base)
    return scratch


def test_kernel_xen_installs_beside_the_bare_metal_kernel(
    root: Root, packages: Packages, smoke_build: SmokeBuild
) -> None:
    kernel_xen = smoke_build.rpm("x86_64")
    version_release = smoke_build.nvr.removeprefix("kernel-xen-")
    version, release = version_release.split("-")
    # the bare-metal kernel of the very version-release of the real smoke kernel-xen
    (kernel,) = packages.build(
        "kernel",
        KERNEL_SPEC,
        ("kversion", version),
        ("krelease", release),
        ("uname", f"{version_release}.x86_64"),
    )
    root.rpm("-i", kernel)
    # same version-release as the bare-metal kernel, yet not one shared path
    root.rpm("-i", "--test", kernel_xen)
    root.rpm("-i", kernel_xen)
    assert root.installed("kernel") == [f"kernel-{version_release}"]
    assert root.installed("kernel-xen") == [f"kernel-xen-{version_release}"]
    bare, xen = f"{version_release}.x86_64", smoke_build.kernel_release("x86_64")
    assert sorted(root.entries()) == sorted([bare, xen])
    for uname in (bare, xen):
        assert (root.path / f"boot/vmlinuz-{uname}").is_file()
        assert (root.path / f"lib/modules/{uname}").is_dir()
    root.rpm("-V", "kernel", "kernel-xen")
    # removing kernel-xen leaves the bare-metal kernel and its entry alone
    root.rpm("-e", "kernel-xen")
    assert list(root.entries()) == [bare]
    root.rpm("-V", "kernel")


def test_newer_kernel_xen_installs_alongside(root: Root, packages: Packages) -> None:
    older, newer = packages.tiny_kernel_xen[1], packages.tiny_kernel_xen[2]
    provides = root.rpm("-qp", "--provides", newer).stdout.splitlines()
    # what makes dnf install it alongside instead of upgrading in place
    assert "installonlypkg(kernel)" in provides
    root.rpm("-i", older)
    root.rpm("-i", newer)
    assert root.installed("kernel-xen") == ["kernel-xen-6.1.0-1.smoke", "kernel-xen-6.1.0-2.smoke"]
    assert sorted(root.entries()) == ["6.1.0-1.smoke.x86_64+xen", "6.1.0-2.smoke.x86_64+xen"]
    # dnf removes the oldest of installonly_limit; its entry goes with it
    root.rpm("-e", "kernel-xen-6.1.0-1.smoke")
    assert list(root.entries()) == ["6.1.0-2.smoke.x86_64+xen"]
    assert (root.path / "boot/vmlinuz-6.1.0-2.smoke.x86_64+xen").is_file()
    assert not (root.path / "boot/vmlinuz-6.1.0-1.smoke.x86_64+xen").exists()


def test_dom0_hosts_refuse_kernel_xen(root: Root, packages: Packages) -> None:
    kernel_xen = packages.tiny_kernel_xen[1]
    root.rpm("-i", packages.xen_hypervisor)
    refused = root.rpm("-i", kernel_xen, check=False)
    assert refused.returncode != 0
    assert "xen-hypervisor conflicts with kernel-xen-6.1.0-1.smoke" in refused.stderr, (
        refused.stderr
    )
    assert root.installed("kernel-xen") == []
    assert not (root.path / "boot/loader/entries").exists()
    # and the other way round: a domU with kernel-xen does not become a dom0 host by accident
    domu = Root(root.path.parent / "domu")
    domu.rpm("-i", packages.base)
    domu.rpm("-i", kernel_xen)
    refused = domu.rpm("-i", packages.xen_hypervisor, check=False)
    assert refused.returncode != 0
    assert "xen-hypervisor conflicts with (installed) kernel-xen-6.1.0-1.smoke" in refused.stderr
