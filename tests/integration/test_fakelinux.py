"""kxen end to end on the fake Linux tree (tests/fakes/linux): seconds, not minutes.

The commands the slow tests run on Debian's 6.1 tree, through the real CLI, the real
spec and rpmbuild, on a tree whose kernel and modules build in about a second: srpm,
local (both arches), verify, config generate/check, patches check, mockbuild with the
stand-in, and a kernel built without XEN_PV that verify must refuse.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kxen import arches
from kxen.config import fragments as configs
from kxen.config import kconfig
from kxen.inspect import elf, xennotes
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from .. import fakelinux
from ..support import REPO
from .conftest import extract_file, kxen_command, rpm_header, run_kxen, smoke_srpm

ARCHES = ("i686", "x86_64")
VERSION = fakelinux.VERSION
NVR = f"kernel-xen-{VERSION}-1.smoke"
VERIFY_FAILED = 13
CONFIG_FAILED = 4
MODULES = (
    "kernel/drivers/block/xen-blkfront.ko",
    "kernel/drivers/net/xen-netfront.ko",
    "kernel/drivers/xen/xenbus/xenbus_probe_frontend.ko",
)
BLKFRONT = "drivers/block/xen-blkfront.c"
DESCRIPTION = "Xen virtual block device frontend (kxen fake tree)"
PATCHED = "Xen virtual block device frontend (kxen fake tree, patched)"


def kernel_release(arch: str) -> str:
    return f"{VERSION}-1.smoke.{arch}+xen"


def package(results: Path, arch: str, name: str = "kernel-xen") -> Path:
    return results / NVR / arch / f"{name}-{VERSION}-1.smoke.{arch}.rpm"


def checks_of(stdout: str) -> dict[str, dict[str, Any]]:
    """`kxen verify --json` checks by "package: check" name."""
    report = json.loads(stdout)["report"]
    return {f"{c['package']}: {c['check']}": c for c in report["checks"]}


def failed_checks(stdout: str) -> dict[str, str]:
    """What the failed checks found, by check name."""
    report = json.loads(stdout)["report"]
    return {c["check"]: c["found"] for c in report["checks"] if not c["ok"]}


# --- patches made with difflib against the fake tree ------------------------------------


def write_patch(path: Path, relpath: str, before: str, after: str) -> Path:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{relpath}",
        f"b/{relpath}",
    )
    path.write_text("".join(lines))
    return path


def description_patch(where: Path) -> Path:
    """A patch giving the block frontend another description (seen in its .modinfo)."""
    original = (fakelinux.FAKE_TREE / BLKFRONT).read_text()
    assert original.count(DESCRIPTION) == 1
    patched = original.replace(DESCRIPTION, PATCHED)
    return write_patch(where / "0001-blkfront-description.patch", BLKFRONT, original, patched)


# --- one two-arch smoke build shared by the module ------------------------------------------


@dataclass(frozen=True)
class FakeBuild:
    report: dict[str, Any]
    results: Path
    checkout: Path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake-kxen-cache")


@pytest.fixture(scope="module")
def build(fake_linux: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> FakeBuild:
    """`kxen local --flavour smoke` of both arches, from a checkout with one patch."""
    base = tmp_path_factory.mktemp("fake-build")
    checkout = fakelinux.make_checkout(base / "checkout")
    run_kxen("patches", "add", description_patch(base), repo=checkout, cache=cache)
    run = run_kxen(
        "local", "--flavour", "smoke", "--upstream", fake_linux, "--results", base / "results",
        "--json", repo=checkout, cache=cache,
    )  # fmt: skip
    return FakeBuild(json.loads(run.stdout)["report"], base / "results", checkout)


def prepared_tree(tarball: Path, cache: Path) -> Path:
    found = origin.from_tarball(tarball, cache)
    return upstream_tree.prepared_tree(found, cache, SubprocessRunner())


# --- srpm -------------------------------------------------------------------------------------


def test_srpm_ships_the_tarball_and_the_configs(
    fake_linux: Path, fake_checkout: Path, cache: Path, tmp_path: Path
) -> None:
    srpm = smoke_srpm(tmp_path, fake_linux, cache, repo=fake_checkout)
    assert srpm.name == f"{NVR}.src.rpm"
    header = rpm_header(srpm)
    assert (header["name"], header["version"], header["release"]) == (
        "kernel-xen",
        VERSION,
        "1.smoke",
    )
    assert set(header["basenames"]) == {
        "kernel-xen.spec",
        fakelinux.TARBALL_NAME,
        *(f"kernel-{VERSION}-{arch}-smoke-xen.config" for arch in ARCHES),
    }
    shipped = extract_file(srpm, fakelinux.TARBALL_NAME, tmp_path / "unpacked")
    assert shipped.read_bytes() == fake_linux.read_bytes()


# --- local ------------------------------------------------------------------------------------


def test_local_builds_both_arches_into_results(build: FakeBuild, fake_linux: Path) -> None:
    report = build.report
    assert report["nvr"] == NVR
    assert [(a["arch"], a["ok"]) for a in report["arches"]] == [("i686", True), ("x86_64", True)]
    assert report["upstream"]["tarball"] == str(fake_linux)
    for arch in ARCHES:
        arch_dir = build.results / NVR / arch
        assert sorted(p.name for p in arch_dir.iterdir()) == sorted(
            [
                package(build.results, arch).name,
                package(build.results, arch, "kernel-xen-devel").name,
                f"{NVR}.src.rpm",
                "build.log",
                "kxen-result.json",
                "ccache.json",  # kxen local compiles through ccache by default
            ]
        )
        assert set(json.loads((arch_dir / "ccache.json").read_text())) == {"hits", "misses"}
        record = json.loads((arch_dir / "kxen-result.json").read_text())
        assert record["arch"] == arch and record["result"]["ok"] is True
        log = (arch_dir / "build.log").read_text()
        assert "Kernel: arch/x86/boot/bzImage is ready" in log
        assert "  CC [M]  drivers/block/xen-blkfront.o" in log


@pytest.mark.parametrize("arch", ARCHES)
def test_kernel_package_holds_the_kernel_and_its_modules(
    build: FakeBuild, arch: str, tmp_path: Path
) -> None:
    kver = kernel_release(arch)
    kernel = package(build.results, arch)
    header = rpm_header(kernel)
    files = set(header["filenames"])
    for path in ("vmlinuz", "System.map", "config"):
        assert f"/boot/{path}-{kver}" in files
    for module in (*MODULES, "modules.dep", "modules.alias", "modules.order"):
        assert f"/lib/modules/{kver}/{module}" in files
    provides = dict(zip(header["providename"], header["provideversion"], strict=True))
    assert provides["kernel-xen-uname-r"] == kver
    assert "installonlypkg(kernel)" in provides
    deps = extract_file(kernel, f"/lib/modules/{kver}/modules.dep", tmp_path).read_text()
    assert f"{MODULES[0]}: {MODULES[2]}\n" in deps  # depmod found the exported symbol


def test_series_patch_is_applied_in_prep(build: FakeBuild, tmp_path: Path) -> None:
    kver = kernel_release("x86_64")
    module = f"/lib/modules/{kver}/{MODULES[0]}"
    info = elf.modinfo(extract_file(package(build.results, "x86_64"), module, tmp_path))
    assert info["description"] == PATCHED
    assert info["vermagic"] == f"{kver} SMP mod_unload "
    assert (info["name"], info["alias"]) == ("xen_blkfront", "xen:vbd")


@pytest.mark.parametrize("arch", ARCHES)
def test_devel_package_has_what_module_builds_need(build: FakeBuild, arch: str) -> None:
    kver = kernel_release(arch)
    header = rpm_header(package(build.results, arch, "kernel-xen-devel"))
    files = set(header["filenames"])
    for relative in (
        "Makefile",
        ".config",
        "Module.symvers",
        "System.map",
        "Kconfig",
        "arch/x86/Kconfig",
        "include/generated/autoconf.h",
        "include/config/auto.conf",
        "include/linux/module.h",
        "arch/x86/include/asm/layout.h",
        "scripts/mod/modpost.sh",
        "arch/x86/tools/xen-notes",  # a host program, stripped by %install
    ):
        assert f"/usr/src/kernels/{kver}/{relative}" in files, relative
    assert not any(f.endswith((".o", ".ko", ".cmd")) for f in files)


# --- verify -----------------------------------------------------------------------------------


def test_verify_passes_every_check(build: FakeBuild, fake_linux: Path, cache: Path) -> None:
    rpms = [
        package(build.results, a, n) for a in ARCHES for n in ("kernel-xen", "kernel-xen-devel")
    ]
    run = run_kxen(
        "verify", *rpms, "--flavour", "smoke", "--upstream", fake_linux, "--json",
        repo=build.checkout, cache=cache,
    )  # fmt: skip
    checks = checks_of(run.stdout)
    assert [name for name, c in checks.items() if not c["ok"]] == []
    common = [
        "modules.dep matches depmod",
        "module dependencies resolve",
        "module vermagic",
        "config equals the generated one",
        "config CONFIG_XEN_PVH",
        "kernel compression",
        "vmlinux inside the bzImage",
        "Xen ELF note PHYS32_ENTRY",
    ]
    pv = ["config CONFIG_XEN_PV", "Xen ELF note ENTRY", "Xen ELF note FEATURES",
          "Xen ELF note GUEST_OS value"]  # fmt: skip
    x86_64, i686 = (package(build.results, arch).name for arch in ("x86_64", "i686"))
    for name in (*common, *pv):
        assert f"{x86_64}: {name}" in checks, name
    for name in (*common, "config CONFIG_X86_PAE"):
        assert f"{i686}: {name}" in checks, name
    assert f"{i686}: Xen ELF note ENTRY" not in checks  # 32-bit boots as PVH only
    assert checks[f"{x86_64}: kernel compression"]["found"] == "xz"
    assert any(name.endswith(": rpmlint") for name in checks)


def test_verify_fails_a_kernel_built_without_xen_pv(
    fake_linux: Path, fake_checkout: Path, cache: Path, tmp_path: Path
) -> None:
    (fake_checkout / "configs" / "smoke" / "zz-no-pv.config").write_text(
        "# CONFIG_XEN_PV is not set\n"
    )
    results = tmp_path / "results"
    run_kxen(
        "local", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", results, repo=fake_checkout, cache=cache,
    )  # fmt: skip
    run = run_kxen(
        "verify", package(results, "x86_64"), "--flavour", "smoke", "--upstream", fake_linux,
        "--json", repo=fake_checkout, cache=cache, check=False,
    )  # fmt: skip
    assert run.returncode == VERIFY_FAILED, run.stderr
    # only what a PV guest needs fails: it is still a PVH kernel, built as configured
    assert failed_checks(run.stdout) == {
        "config CONFIG_XEN_PV": "not set",
        "Xen ELF note GUEST_OS": "absent",
        "Xen ELF note ENTRY": "absent",
        "Xen ELF note FEATURES": "absent",
    }
    assert "Xen ELF note GUEST_OS" in run.stderr and "CONFIG_XEN_PV" in run.stderr


@pytest.mark.parametrize(
    ("compression", "readable"),
    [
        ("GZIP", True),
        ("XZ", True),
        ("BZIP2", False),
        ("ZSTD", True),
    ],
)
def test_verify_finds_the_vmlinux_in_a_bzimage_of_each_compression(
    fake_linux: Path, cache: Path, tmp_path: Path, compression: str, readable: bool
) -> None:
    """A fake kernel built straight with make (O=), for every CONFIG_KERNEL_* choice."""
    tree = prepared_tree(fake_linux, cache)
    target = configs.Target("x86_64", "smoke")
    merged = configs.merge(
        fakelinux.FAKE_CONFIGS, target, tree, configs.load_layers(fakelinux.FAKE_CONFIGS)
    )
    request = tmp_path / "request.config"
    request.write_text(
        merged.fragment_text().replace("CONFIG_KERNEL_XZ=y", f"CONFIG_KERNEL_{compression}=y")
    )
    make: list[str | Path] = ["make", "-s", "-C", tree, f"O={tmp_path / 'obj'}", "ARCH=x86_64"]
    subprocess.run([*make, f"KCONFIG_ALLCONFIG={request}", "allnoconfig"], check=True)
    subprocess.run([*make, "-j2", "bzImage"], check=True)
    image = (tmp_path / "obj" / "arch" / "x86" / "boot" / "bzImage").read_bytes()
    payload = elf.find_payload(image, SubprocessRunner(), tmp_path)
    assert payload.compression == compression.lower()
    if not readable:
        assert (payload.elf, payload.problem) == (None, "not a compression Xen reads")
        return
    assert payload.elf is not None, payload.problem
    assert elf.xen_notes(payload.elf)[xennotes.XEN_ELFNOTE_GUEST_OS] == b"linux\0"


# --- configs ----------------------------------------------------------------------------------


def config_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith(("CONFIG_", "# CONFIG_"))}


def test_generated_configs_equal_the_kconfig_model(
    fake_linux: Path, fake_checkout: Path, cache: Path, tmp_path: Path
) -> None:
    """`make olddefconfig`/`allnoconfig` of the fake tree (via `kxen config generate`)
    and kxen's Kconfig model agree line for line, "is not set" lines included."""
    run = run_kxen(
        "config", "generate", "--upstream", fake_linux, "-o", tmp_path / "out", "--json",
        repo=fake_checkout, cache=cache,
    )  # fmt: skip
    generated = {Path(p).name: Path(p).read_text() for p in json.loads(run.stdout)["configs"]}
    assert len(generated) == 4
    tree = prepared_tree(fake_linux, cache)
    configs_dir = fake_checkout / "configs"
    layers = configs.load_layers(configs_dir)
    for arch in ARCHES:
        model = kconfig.load(tree, arch)
        for flavour in ("default", "smoke"):
            target = configs.Target(arch, flavour)
            merged = configs.merge(configs_dir, target, tree, layers)
            values = model.resolve({s: v.value for s, v in merged.settings.items()}, merged.resolve)
            text = generated[target.config_name(VERSION)]
            assert config_lines(text) == {configs.format_setting(s, v) for s, v in values.items()}
    # the case where conf and Kconfiglib's own writer differ: an `imply` whose target's
    # dependencies are unmet (no MEMORY_HOTPLUG on 32-bit) is still written
    i686_default = generated[configs.Target("i686", "default").config_name(VERSION)]
    assert "# CONFIG_XEN_BALLOON_MEMORY_HOTPLUG is not set" in config_lines(i686_default)


def test_listnewconfig_equals_the_kconfig_model(
    fake_linux: Path, cache: Path, tmp_path: Path
) -> None:
    tree = prepared_tree(fake_linux, cache)
    configs_dir = fakelinux.FAKE_CONFIGS
    for arch in ARCHES:
        merged = configs.merge(
            configs_dir, configs.Target(arch, "default"), tree, configs.load_layers(configs_dir)
        )
        objdir = tmp_path / arch
        objdir.mkdir()
        (objdir / ".config").write_text(merged.fragment_text())
        listed = subprocess.run(
            ["make", "-s", "-C", tree, f"O={objdir}", f"ARCH={arches.get(arch).kernel_arch}",
             "listnewconfig"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        requested = {s: v.value for s, v in merged.settings.items()}
        new = kconfig.load(tree, arch).new_symbols(requested)
        assert sorted(configs.parse_config_values(listed).items()) == sorted(new)
        assert new  # the default flavour leaves symbols to their defaults


def test_config_check_strict_passes_on_every_target(
    fake_linux: Path, fake_checkout: Path, cache: Path
) -> None:
    run = run_kxen(
        "config", "check", "--strict", "--upstream", fake_linux, "--json",
        repo=fake_checkout, cache=cache,
    )  # fmt: skip
    report = json.loads(run.stdout)
    assert sorted(report["targets"]) == [
        "i686/default",
        "i686/smoke",
        "x86_64/default",
        "x86_64/smoke",
    ]
    counts = report["counts"]
    assert counts["mismatch"] == counts["unknown"] == counts["invalid"] == 0
    assert {f["flavour"] for f in report["findings"] if f["kind"] == "new"} == {"default"}


def test_config_check_explains_xen_pv_lost_on_i686(
    fake_linux: Path, fake_checkout: Path, cache: Path
) -> None:
    (fake_checkout / "configs" / "i686" / "zz-pv.config").write_text("CONFIG_XEN_PV=y\n")
    run = run_kxen(
        "config", "check", "--strict", "--arch", "i686", "--flavour", "smoke",
        "--upstream", fake_linux, "--json", repo=fake_checkout, cache=cache, check=False,
    )  # fmt: skip
    assert run.returncode == CONFIG_FAILED, run.stderr
    (finding,) = [f for f in json.loads(run.stdout)["findings"] if f["kind"] == "mismatch"]
    assert (finding["symbol"], finding["where"]) == ("XEN_PV", "configs/i686/zz-pv.config:1")
    assert "depends on X86_64 (=n)" in finding["reason"]
    assert "arch/x86/xen/Kconfig:" in finding["reason"]


# --- patches ----------------------------------------------------------------------------------


def test_patches_check_applies_the_series_as_prep_does(
    fake_linux: Path, fake_checkout: Path, cache: Path
) -> None:
    patches = fake_checkout / "patches"
    series = patches / "series"
    series.write_text(series.read_text() + description_patch(patches).name + "\n")
    run = run_kxen(
        "patches", "check", "--upstream", fake_linux, "--json", repo=fake_checkout, cache=cache
    )
    report = json.loads(run.stdout)["report"]
    assert report["upstream"]["version"] == VERSION
    assert [(o["patch"], o["status"]) for o in report["outcomes"]] == [
        ("0001-blkfront-description.patch", "clean")
    ]


# --- mock -------------------------------------------------------------------------------------


def test_mockbuild_with_the_stand_in(
    fake_linux: Path, fake_checkout: Path, cache: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    argv, env = kxen_command(
        "mockbuild", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", results, "--json", repo=fake_checkout, cache=cache,
    )  # fmt: skip
    env["PATH"] = f"{REPO / 'tests' / 'fakes'}{os.pathsep}{env['PATH']}"
    env["MOCK_STANDIN_STATE_DIR"] = str(tmp_path / "mock-state")
    env.pop("MOCK_STANDIN_FAIL", None)
    run = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["roots"]["x86_64"].endswith("-x86_64")
    names = {p.name for p in (results / NVR / "x86_64").iterdir()}
    assert {"build.log", "root.log", "state.log", f"{NVR}.src.rpm"} <= names
    files = set(rpm_header(package(results, "x86_64"))["filenames"])
    assert f"/boot/vmlinuz-{kernel_release('x86_64')}" in files
    assert f"/lib/modules/{kernel_release('x86_64')}/{MODULES[0]}" in files
