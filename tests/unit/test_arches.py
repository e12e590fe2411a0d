"""kxen.arches: one record per arch, and every stage reads it.

A made-up arch, registered in `arches.ARCHES` alone, reaches the manifest schema,
layers.yaml, kconfig, the spec, mock's roots and what `kxen verify` requires."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kxen import arches, manifest
from kxen.arches import Arch, GuestType
from kxen.build import spec
from kxen.build.backends.mock import default_roots
from kxen.config import fragments as configs
from kxen.config import kconfig
from kxen.errors import ConfigError, InputError
from kxen.inspect import boottest, verify, xennotes

from .test_kconfig import make_tree
from .test_spec import UP_192, _inputs

TOY_GUEST = GuestType(
    name="toyvm", guest_type="TOYVM", options=("XEN_TOYVM",), notes=(xennotes.XEN_ELFNOTE_ENTRY,)
)
# Every field its own, so that no stage can pass by falling back on x86.
TOY = Arch(
    name="toy64", kernel_arch="toy", srcarch="toyland", mock_config_arch="toy",
    image_path="arch/toyland/boot/Image.toy", gcc_flag="-mtoy",
    guests=(TOY_GUEST,), required_options=("XEN", "TOY_PAGING"), boot_modes=(),
)  # fmt: skip
BOTH = "arches: [i686, x86_64]"
WITH_TOY = "arches: [i686, x86_64, toy64]\nmock: {roots: {toy64: toy-rawhide}}"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Arch:
    monkeypatch.setitem(arches.ARCHES, TOY.name, TOY)
    return TOY


def manifest_with_toy(checkout: Path) -> manifest.Manifest:
    path = checkout / manifest.MANIFEST_NAME
    text = path.read_text()
    assert BOTH in text
    return manifest.parse(text.replace(BOTH, WITH_TOY), path)


def test_the_x86_records_keep_what_kxen_documents() -> None:
    assert arches.names() == ("i686", "x86_64")
    assert [guest.name for guest in arches.guest_types()] == ["pv", "pvh"]
    assert arches.get("i686").guests == (arches.PVH,)  # 32-bit PV left Linux in 5.9
    assert "X86_PAE" in arches.get("i686").required_options
    assert {arch.srcarch for arch in arches.known()} == {"x86"}
    assert {arch.image_target for arch in arches.known()} == {"bzImage"}
    assert default_roots() == {"i686": "fedora-41-i386", "x86_64": "fedora-41-x86_64"}
    assert boottest.MODES == ("pv", "pvh", "native")
    assert boottest.EXPECTED_GUEST_TYPE == {"pv": "PV", "pvh": "PVH", "native": "none"}
    with pytest.raises(InputError, match=r"unknown arch 'ppc64le' \(expected i686 or x86_64\)"):
        arches.get("ppc64le")


@pytest.mark.parametrize("arch", arches.known(), ids=arches.names())
def test_an_arch_boots_only_as_a_guest_it_is(arch: Arch) -> None:
    guests = {guest.name for guest in arch.guests}
    assert set(arch.boot_modes) <= guests | {arches.NATIVE}


def test_the_schema_takes_a_new_arch_and_its_mock_root(checkout: Path, toy: Arch) -> None:
    loaded = manifest_with_toy(checkout)
    assert loaded.arches == ("i686", "x86_64", "toy64")
    assert loaded.mock_roots == (("toy64", "toy-rawhide"),)
    assert default_roots()["toy64"] == "fedora-41-toy"


def test_without_its_record_the_schema_refuses_it(checkout: Path) -> None:
    with pytest.raises(InputError, match=r"arches\[2\]: 'toy64' is not one of i686, x86_64"):
        manifest_with_toy(checkout)


def test_layers_yaml_takes_a_new_arch(
    tmp_path: Path, toy: Arch, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / configs.LAYERS_FILE).write_text(
        "flavours:\n  default:\n    resolve: olddefconfig\n    layers: {toy64: [base]}\n"
    )
    assert configs.load_layers(tmp_path)["default"].layers == {"toy64": ("base",)}
    monkeypatch.delitem(arches.ARCHES, toy.name)
    with pytest.raises(InputError, match=r"toy64: unknown arch \(expected i686 or x86_64\)"):
        configs.load_layers(tmp_path)


def test_kconfig_reads_the_tree_of_a_new_arch(tmp_path: Path, toy: Arch) -> None:
    tree = make_tree(tmp_path / "linux")
    (tree / "Kconfig").write_text('source "arch/$(SRCARCH)/Kconfig"\n')
    with pytest.raises(ConfigError, match="arch/toyland/Kconfig"):
        kconfig.load(tree, "toy64")


def test_the_spec_builds_a_new_arch_from_its_record(
    checkout: Path, toy: Arch, rpmspec: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    rendered = spec.render(_inputs(manifest_with_toy(checkout), UP_192), checkout / "specs")
    block = (
        "%ifarch toy64\n"
        "%global kernel_arch toy\n"
        "%global kernel_srcarch toyland\n"
        "%global kernel_image arch/toyland/boot/Image.toy\n"
        "%global kernel_image_target Image.toy\n"
        "%global kconfig %{SOURCE102}\n"
        "%endif\n"
    )
    assert block in rendered
    assert "ExclusiveArch: i686 x86_64 toy64\n" in rendered
    path = checkout / "kernel-xen.spec"
    path.write_text(rendered)
    parsed = rpmspec("-P", "--target", "toy64", path).stdout
    assert 'cp "/nonexistent/kernel-6.1.192-toy64-xen.config" .config' in parsed
    assert "ARCH=toy LOCALVERSION= \\\n" in parsed
    assert "  Image.toy modules\n" in parsed
    assert 'install -m 0755 arch/toyland/boot/Image.toy "' in parsed
    assert "find include scripts arch/toyland/include " in parsed
    assert "arch/x86" not in parsed


def test_verify_asks_a_new_arch_for_its_options_and_notes(tmp_path: Path, toy: Arch) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_XEN=y\n")
    report = verify.VerifyReport("kernel-xen-6.1.192-1", "default")
    verify._check_config(report, "k.rpm", config, (toy, toy.guests), {"XEN": "y"})
    failed = sorted(check.check for check in report.failures)
    assert failed == ["config CONFIG_TOY_PAGING", "config CONFIG_XEN_TOYVM"]
    assert verify.required_notes(toy.guests) == (xennotes.XEN_ELFNOTE_ENTRY,)
    assert arches.guest_type("toyvm") is TOY_GUEST
