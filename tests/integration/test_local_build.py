"""Real smoke kernels for x86_64 and i686 from Debian's linux-source-6.1, inspected with rpm."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kxen.config.fragments import parse_config_values
from kxen.config.toolchain import TOOLCHAIN_SYMBOLS

from .conftest import DEBIAN_TARBALL, SmokeBuild, extract_file, rpm_header

pytestmark = pytest.mark.slow
ARCHES = ("x86_64", "i686")
REQUIRED = {
    "x86_64": {"XEN": "y", "XEN_PV": "y", "XEN_PVH": "y", "HVC_XEN": "y", "KERNEL_XZ": "y"},
    "i686": {"XEN": "y", "X86_PAE": "y", "XEN_PVH": "y", "HVC_XEN": "y", "KERNEL_XZ": "y"},
}


def test_report_names_every_arch_and_the_local_origin(smoke_build: SmokeBuild) -> None:
    report = smoke_build.report
    assert smoke_build.nvr == "kernel-xen-6.1.192-1.smoke"
    assert [a["arch"] for a in report["arches"]] == ["i686", "x86_64"]
    assert all(a["ok"] for a in report["arches"])
    assert report["upstream"]["origin"] == "local-tarball"
    assert report["upstream"]["tarball"] == str(DEBIAN_TARBALL)


@pytest.mark.parametrize("arch", ARCHES)
def test_results_dir_layout(smoke_build: SmokeBuild, arch: str) -> None:
    arch_dir = smoke_build.arch_dir(arch)
    names = sorted(p.name for p in arch_dir.iterdir())
    version = smoke_build.nvr.removeprefix("kernel-xen-")
    assert names == sorted(
        [
            f"kernel-xen-{version}.{arch}.rpm",
            f"kernel-xen-devel-{version}.{arch}.rpm",
            f"{smoke_build.nvr}.src.rpm",
            "build.log",
            "kxen-result.json",
            "ccache.json",  # kxen local compiles through ccache by default
        ]
    )
    ccache = json.loads((arch_dir / "ccache.json").read_text())
    # every compile of a real smoke kernel (980 on i686, 1021 on x86_64; the fake tree has 3)
    assert ccache["hits"] + ccache["misses"] > 900
    record = json.loads((arch_dir / "kxen-result.json").read_text())
    assert record["upstream"]["origin"] == "local-tarball"
    assert record["arch"] == arch and record["result"]["ok"] is True
    assert "Wrote:" in (arch_dir / "build.log").read_text()
    leftovers = [p.name for p in smoke_build.results.rglob(".*")]
    assert leftovers == [".kernel-xen-6.1.192-1.smoke.lock"]


@pytest.mark.parametrize("arch", ARCHES)
def test_kernel_package_files_and_provides(smoke_build: SmokeBuild, arch: str) -> None:
    header = rpm_header(smoke_build.rpm(arch))
    kver = smoke_build.kernel_release(arch)
    files = set(header["filenames"])
    for path in (
        f"/boot/vmlinuz-{kver}",
        f"/boot/System.map-{kver}",
        f"/boot/config-{kver}",
        f"/lib/modules/{kver}/modules.dep",
        f"/lib/modules/{kver}/modules.order",
    ):
        assert path in files
    assert any(f.endswith(".ko") for f in files if f.startswith(f"/lib/modules/{kver}/kernel/"))
    assert header["arch"] == arch
    provides = dict(zip(header["providename"], header["provideversion"], strict=True))
    assert provides["kernel-xen-uname-r"] == kver
    assert "installonlypkg(kernel)" in provides


@pytest.mark.parametrize("arch", ARCHES)
def test_config_inside_has_xen_and_equals_the_shipped_one(
    smoke_build: SmokeBuild, arch: str, tmp_path: Path
) -> None:
    kver = smoke_build.kernel_release(arch)
    inside = extract_file(smoke_build.rpm(arch), f"/boot/config-{kver}", tmp_path / "rpm")
    values = parse_config_values(inside.read_text())
    for symbol, value in REQUIRED[arch].items():
        assert values.get(symbol) == value, symbol
    assert values.get("XEN_BLKDEV_BACKEND") is None  # domU only
    srpm = smoke_build.arch_dir(arch) / f"{smoke_build.nvr}.src.rpm"
    shipped_name = f"kernel-6.1.192-{arch}-smoke-xen.config"
    shipped = extract_file(srpm, shipped_name, tmp_path / "srpm")
    toolchain = re.compile(rf"^({TOOLCHAIN_SYMBOLS})$")
    significant = {
        k: v for k, v in parse_config_values(shipped.read_text()).items() if not toolchain.match(k)
    }
    assert {k: v for k, v in values.items() if not toolchain.match(k)} == significant


@pytest.mark.parametrize("arch", ARCHES)
def test_devel_package_can_build_modules(smoke_build: SmokeBuild, arch: str) -> None:
    header = rpm_header(smoke_build.rpm(arch, "kernel-xen-devel"))
    kver = smoke_build.kernel_release(arch)
    root = f"/usr/src/kernels/{kver}"
    files = set(header["filenames"])
    for relative in (
        "Makefile",
        ".config",
        "Module.symvers",
        "include/generated/autoconf.h",
        "include/config/auto.conf",
        "scripts/Makefile.modpost",
        "scripts/mod/modpost",
        f"arch/x86/include/generated/uapi/asm/unistd_{'64' if arch == 'x86_64' else '32'}.h",
    ):
        assert f"{root}/{relative}" in files, relative
    assert not any(f.endswith((".o", ".cmd")) for f in files)
    provides = dict(zip(header["providename"], header["provideversion"], strict=True))
    assert provides["kernel-xen-devel-uname-r"] == kver
