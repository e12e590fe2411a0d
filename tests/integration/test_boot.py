"""`kxen boot-test`: the real smoke kernels boot as Xen domUs under a real Xen 4.17 in
QEMU (software emulation), with Debian's Xen, dom0 kernel and busybox fetched into the
cache; and the ways a boot fails are told apart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kxen import arches

from ..support import XEN_BOOT_STAGES
from .conftest import SmokeBuild, run_kxen

pytestmark = pytest.mark.slow

# What each arch's record says boots under Xen in QEMU's emulation, and natively.
XEN_BOOTS = [
    (arch.name, mode, arches.guest_type(mode).guest_type)
    for arch in arches.known()
    for mode in arch.boot_modes
    if mode != arches.NATIVE
]
NATIVE_BOOTS = [arch.name for arch in arches.known() if arches.NATIVE in arch.boot_modes]


def boot(
    package: Path, mode: str, cache: Path, *extra: str, check: bool = True
) -> tuple[int, dict[str, Any]]:
    # A second boot only if Xen killed the guest before its first line (a rare artefact of
    # QEMU's emulation seen once in CI); any other outcome of the first boot stands.
    run = run_kxen(
        "boot-test", package, "--mode", mode, "--json", "--attempts", "2", *extra,
        cache=cache, check=check,
    )  # fmt: skip
    assert not qemu_left(), "boot-test left a QEMU process behind"
    data = json.loads(run.stdout)
    for earlier in data["result"]["earlier_attempts"]:
        assert earlier["failure"].startswith("Xen killed the guest"), earlier
    return run.returncode, data


def qemu_left() -> list[str]:
    found = subprocess.run(["pgrep", "-a", "qemu-system"], capture_output=True, text=True)
    return found.stdout.splitlines()


@pytest.mark.parametrize(("arch", "mode", "guest_type"), XEN_BOOTS)
def test_smoke_kernel_boots_as_a_xen_domu(
    smoke_build: SmokeBuild, kxen_cache: Path, arch: str, mode: str, guest_type: str
) -> None:
    rc, data = boot(smoke_build.rpm(arch), mode, kxen_cache)
    result = data["result"]
    assert rc == 0 and result["passed"]
    assert result["guest_type"] == guest_type
    assert result["kernel_release"] == smoke_build.kernel_release(arch)
    stages = [s["stage"] for s in result["stages"]]
    assert stages[: len(XEN_BOOT_STAGES)] == XEN_BOOT_STAGES
    log = Path(result["log"]).read_text(errors="replace")
    assert f"release={smoke_build.kernel_release(arch)} guest_type={guest_type}" in log
    print(f"{arch} {mode}: " + ", ".join(f"{s['stage']} {s['seconds']}s" for s in result["stages"]))


@pytest.mark.parametrize("arch", NATIVE_BOOTS)
def test_smoke_kernel_boots_natively(smoke_build: SmokeBuild, kxen_cache: Path, arch: str) -> None:
    """The same kernels on QEMU's emulated PC without Xen (paravirt_ops runs on bare metal
    too). For i686 this is the proof that boots: as a PVH domU under Xen-in-QEMU it hangs
    at its first CPUID (README, Boot tests)."""
    rc, data = boot(smoke_build.rpm(arch), "native", kxen_cache)
    result = data["result"]
    assert rc == 0 and result["passed"]
    assert result["guest_type"] == "none"
    assert result["kernel_release"] == smoke_build.kernel_release(arch)
    assert [s["stage"] for s in result["stages"]] == ["kernel started", "init ran"]


def test_a_kernel_without_xen_pv_is_refused_as_a_pv_guest(
    smoke_build: SmokeBuild, linux_tarball: Path, kxen_cache: Path
) -> None:
    """32-bit PV left Linux in 5.9: the i686 kernel has no XEN_PV and no PV entry notes."""
    package = smoke_build.rpm("i686")
    run = run_kxen(
        "verify", package, "--flavour", "smoke", "--upstream", linux_tarball, "--guest", "pv",
        "--json", cache=kxen_cache, check=False,
    )  # fmt: skip
    assert run.returncode == 13, run.stderr
    checks = {c["check"]: c for c in json.loads(run.stdout)["report"]["checks"]}
    # xen-head.S emits GUEST_OS and FEATURES for every Xen kernel, the PV entry point only
    # with XEN_PV
    entry = checks["Xen ELF note ENTRY"]
    assert not entry["ok"] and entry["found"] == "absent"
    assert checks["Xen ELF note GUEST_OS"]["ok"] and checks["Xen ELF note FEATURES"]["ok"]
    assert checks["config CONFIG_XEN_PV"]["found"] == "not set"
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    assert failed == ["Xen ELF note ENTRY", "config CONFIG_XEN_PV"]
    assert "Xen ELF note ENTRY: FAILED (expected present, found absent)" in run.stderr

    rc, data = boot(package, "pv", kxen_cache, check=False)
    result = data["result"]
    assert rc == 14 and not result["passed"]
    assert result["failure"] == "Xen's domain builder rejected the kernel"
    assert any("libxl: error" in line for line in result["evidence"]), result["evidence"]
    assert result["seconds"] < 120


def test_a_panicking_kernel_fails_with_the_panic_lines(
    smoke_build: SmokeBuild, kxen_cache: Path
) -> None:
    # no init in the initramfs at that path and no root device: the kernel panics
    rc, data = boot(
        smoke_build.rpm("x86_64"), "pvh", kxen_cache, "--append", "rdinit=/missing", check=False
    )
    result = data["result"]
    assert rc == 14 and result["failure"] == "the kernel panicked"
    assert any("Kernel panic - not syncing" in line for line in result["evidence"])
    assert "guest init ran" not in [s["stage"] for s in result["stages"]]


def test_boot_test_ends_at_its_timeout(smoke_build: SmokeBuild, kxen_cache: Path) -> None:
    rc, data = boot(smoke_build.rpm("x86_64"), "pv", kxen_cache, "--timeout", "4", check=False)
    assert rc == 14
    assert "no marker within the timeout" in data["result"]["failure"]
    assert data["result"]["seconds"] < 15


def test_boot_test_refuses_what_is_no_rpm(tmp_path: Path, kxen_cache: Path) -> None:
    bogus = tmp_path / "kernel-xen.rpm"
    bogus.write_text("not an rpm\n")
    run = run_kxen("boot-test", bogus, cache=kxen_cache, check=False)
    assert run.returncode == 2
    assert f"{bogus}: not a readable RPM" in run.stderr
