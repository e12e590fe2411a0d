"""`kxen verify` on the real smoke RPMs, and on a tiny real RPM that is no Xen kernel."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from .conftest import SmokeBuild, run_kxen

pytestmark = pytest.mark.slow
ARCHES = ("x86_64", "i686")


def checks_of(stdout: str) -> dict[str, dict[str, object]]:
    report = json.loads(stdout)["report"]
    return {f"{c['package']}: {c['check']}": c for c in report["checks"]}


@pytest.mark.parametrize("arch", ARCHES)
def test_verify_passes_on_the_smoke_rpms(
    smoke_build: SmokeBuild, linux_tarball: Path, kxen_cache: Path, arch: str
) -> None:
    main = smoke_build.rpm(arch)
    devel = smoke_build.rpm(arch, "kernel-xen-devel")
    run = run_kxen(
        "verify", main, devel, "--flavour", "smoke", "--upstream", linux_tarball, "--json",
        cache=kxen_cache,
    )  # fmt: skip
    checks = checks_of(run.stdout)
    assert all(c["ok"] for c in checks.values())
    kver = smoke_build.kernel_release(arch)
    expected = [
        f"file /boot/vmlinuz-{kver}",
        "modules.dep matches depmod",
        "module vermagic",
        "config equals the generated one",
        "kernel compression",
        "Xen ELF note PHYS32_ENTRY",
        "provides installonlypkg(kernel)",
    ]
    if arch == "x86_64":
        expected += ["config CONFIG_XEN_PV", "Xen ELF note ENTRY", "Xen ELF note FEATURES",
                     "Xen ELF note GUEST_OS", "Xen ELF note GUEST_OS value"]  # fmt: skip
    else:
        expected += ["config CONFIG_X86_PAE"]
    for name in expected:
        assert f"{main.name}: {name}" in checks, name
    assert f"{devel.name}: provides kernel-xen-devel-uname-r" in checks


KVER = "6.1.192-1.smoke.x86_64+xen"
TINY_SPEC = f"""
%global debug_package %{{nil}}
%global __os_install_post %{{nil}}
Name: kernel-xen
Version: 6.1.192
Release: 1.smoke
Summary: Not a Xen kernel
License: GPL-2.0-only
Provides: kernel-xen-uname-r = {KVER}
Provides: installonlypkg(kernel)

%description
A bzImage-shaped gzip of /bin/true: an ELF file without Xen notes.

%install
install -d %{{buildroot}}/boot %{{buildroot}}/lib/modules/{KVER}
install -m 0755 %{{inputs}}/vmlinuz %{{buildroot}}/boot/vmlinuz-{KVER}
install -m 0644 %{{inputs}}/config %{{buildroot}}/boot/config-{KVER}
install -m 0644 %{{inputs}}/System.map %{{buildroot}}/boot/System.map-{KVER}

%files
/boot/vmlinuz-{KVER}
/boot/config-{KVER}
/boot/System.map-{KVER}
/lib/modules/{KVER}
"""


def test_verify_names_missing_xen_notes_and_options(
    linux_tarball: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    fake_image = b"\0" * 1024 + gzip.compress(Path("/bin/true").read_bytes()) + b"\0" * 4
    (inputs / "vmlinuz").write_bytes(fake_image)
    (inputs / "config").write_text(
        "CONFIG_XEN=y\nCONFIG_XEN_PVH=y\nCONFIG_HVC_XEN=y\n# CONFIG_XEN_PV is not set\n"
    )
    (inputs / "System.map").write_text("ffffffff81000000 T _text\n")
    spec = tmp_path / "tiny.spec"
    spec.write_text(TINY_SPEC)
    topdir = tmp_path / "rpmbuild"
    subprocess.run(
        ["rpmbuild", "-bb", "--nodeps", "--target", "x86_64", "--define", f"_topdir {topdir}",
         "--define", f"inputs {inputs}", spec],
        check=True, capture_output=True,
    )  # fmt: skip
    (package,) = topdir.glob("RPMS/x86_64/kernel-xen-*.rpm")
    run = run_kxen(
        "verify", package, "--flavour", "smoke", "--upstream", linux_tarball, "--json",
        cache=kxen_cache, check=False,
    )  # fmt: skip
    assert run.returncode == 13, run.stderr
    checks = checks_of(run.stdout)
    failed = {name.split(": ", 1)[1]: c for name, c in checks.items() if not c["ok"]}
    for note in ("GUEST_OS", "ENTRY", "FEATURES", "PHYS32_ENTRY"):
        assert failed[f"Xen ELF note {note}"]["found"] == "absent"
    assert failed["config CONFIG_XEN_PV"]["found"] == "not set"
    assert failed["config CONFIG_XEN_SYS_HYPERVISOR"]["found"] == "not set"
    assert "config equals the generated one" in failed
    # what is right about it is reported as such
    for fine in (
        "name",
        "version-release",
        "arch",
        "kernel compression",
        "vmlinux inside the bzImage",
    ):
        assert checks[f"{package.name}: {fine}"]["ok"], fine
    assert "Xen ELF note PHYS32_ENTRY" in run.stderr and "CONFIG_XEN_PV" in run.stderr
