"""`kxen verify` pieces on small synthetic inputs: bzImage payloads, ELF notes, .modinfo."""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from kxen import arches
from kxen.inspect import elf, verify, xennotes

XEN_NOTES_ASM = """
    .section .note.Xen,"a",@note
    .balign 4
    .long 4, 6, 6
    .asciz "Xen"
    .asciz "linux"
    .balign 4
    .long 4, 8, 18
    .asciz "Xen"
    .quad 0x1000000
    .section .modinfo,"a"
    .asciz "license=GPL"
    .asciz "vermagic=6.1.192-1.smoke.x86_64+xen SMP mod_unload "
"""


@pytest.fixture(scope="module")
def xen_elf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real x86_64 ELF object with two Xen notes (GUEST_OS, PHYS32_ENTRY) and a .modinfo."""
    if shutil.which("as") is None:
        pytest.skip("binutils' as is needed")
    work = tmp_path_factory.mktemp("elf")
    (work / "notes.s").write_text(XEN_NOTES_ASM)
    subprocess.run(["as", "--64", "-o", work / "notes.o", work / "notes.s"], check=True)
    return (work / "notes.o").read_bytes()


def note(owner: bytes, kind: int, desc: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    return struct.pack("<III", len(owner), len(desc), kind) + pad(owner) + pad(desc)


def test_parse_notes_reads_owner_type_and_unaligned_descriptors() -> None:
    data = (
        note(b"Xen\0", 6, b"linux\0")
        + note(b"GNU\0", 3, b"\x01\x02\x03")
        + note(b"Xen\0", 18, b"\0" * 4)
    )
    notes = elf.parse_notes(data)
    assert [(n.owner, n.type) for n in notes] == [("Xen", 6), ("GNU", 3), ("Xen", 18)]
    assert notes[0].desc == b"linux\0" and notes[1].desc == b"\x01\x02\x03"


def test_parse_notes_stops_at_a_truncated_record() -> None:
    data = note(b"Xen\0", 6, b"linux\0")
    assert len(elf.parse_notes(data + struct.pack("<III", 4, 100, 1) + b"Xen\0")) == 1


def test_xen_notes_of_a_real_elf(xen_elf: bytes) -> None:
    notes = elf.xen_notes(xen_elf)
    assert set(notes) == {xennotes.XEN_ELFNOTE_GUEST_OS, xennotes.XEN_ELFNOTE_PHYS32_ENTRY}
    assert notes[xennotes.XEN_ELFNOTE_GUEST_OS] == b"linux\0"


def test_modinfo_reads_vermagic(xen_elf: bytes, tmp_path: Path) -> None:
    module = tmp_path / "fake.ko"
    module.write_bytes(xen_elf)
    info = elf.modinfo(module)
    assert info["vermagic"].startswith("6.1.192-1.smoke.x86_64+xen ")
    assert info["license"] == "GPL"


@pytest.mark.parametrize(
    ("compression", "pack"),
    [("xz", lambda data: lzma.compress(data, lzma.FORMAT_XZ)), ("gzip", gzip.compress)],
)
def test_find_payload_scans_a_container(xen_elf: bytes, compression: str, pack: object) -> None:
    assert callable(pack)
    # decoys first: a gzip magic that is no stream, then the real one with trailing bytes
    image = b"MZ" + b"\0" * 500 + b"\x1f\x8b\x08garbage" + pack(xen_elf) + b"\x10\x20\x30\x40"
    payload = elf.find_payload(image)
    assert payload.compression == compression
    assert payload.elf == xen_elf


def bzimage(payload: bytes, setup_sects: int = 2) -> bytes:
    """A bzImage-shaped file: setup sectors with a 2.08+ header, then the payload."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 0x40, len(payload))
    return bytes(setup) + b"\xee" * 0x40 + payload + b"\0" * 16


def test_find_payload_uses_the_setup_header(xen_elf: bytes) -> None:
    packed = lzma.compress(xen_elf, lzma.FORMAT_XZ)
    payload = elf.find_payload(bzimage(packed))
    assert (payload.compression, payload.offset, payload.elf) == ("xz", 3 * 512 + 0x40, xen_elf)


def test_find_payload_names_a_compression_xen_cannot_read(xen_elf: bytes) -> None:
    payload = elf.find_payload(bzimage(b"BZh91AY&SY" + b"\0" * 64))
    assert payload.compression == "bzip2"
    assert payload.elf is None and "Xen" in payload.problem


def test_find_payload_without_an_elf() -> None:
    payload = elf.find_payload(b"\0" * 4096 + gzip.compress(b"not an elf"))
    assert payload.elf is None and payload.problem


def test_modules_dep_parsing_stops_at_depmods_next_file() -> None:
    text = (
        "kernel/a.ko:\n"
        "kernel/b/c.ko.xz: kernel/a.ko\n"
        "# Aliases extracted from modules themselves.\n"
        "alias fs-x x\n"
    )
    assert verify._parse_modules_dep(text) == {
        "kernel/a.ko": (),
        "kernel/b/c.ko.xz": ("kernel/a.ko",),
    }


def test_config_check_names_missing_xen_options_and_differences(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "CONFIG_XEN=y\nCONFIG_XEN_PVH=y\nCONFIG_HVC_XEN=y\nCONFIG_XEN_SYS_HYPERVISOR=y\n"
        "# CONFIG_XEN_PV is not set\nCONFIG_GCC_VERSION=120200\n"
    )
    generated = {
        "XEN": "y",
        "XEN_PVH": "y",
        "HVC_XEN": "y",
        "XEN_SYS_HYPERVISOR": "y",
        "XEN_PV": "y",
        "GCC_VERSION": "140000",
    }
    report = verify.VerifyReport("kernel-xen-6.1.192-1", "default")
    verify._check_config(report, "k.rpm", config, (arches.X86_64, arches.X86_64.guests), generated)
    failed = {check.check: check for check in report.failures}
    assert set(failed) == {"config CONFIG_XEN_PV", "config equals the generated one"}
    assert failed["config CONFIG_XEN_PV"].found == "not set"
    assert failed["config equals the generated one"].expected == "CONFIG_XEN_PV=y"
    assert "GCC_VERSION" not in failed["config equals the generated one"].found


def test_required_options_per_arch() -> None:
    x86_64, i686 = arches.get("x86_64"), arches.get("i686")
    assert verify.required_options(x86_64, x86_64.guests) == (
        "XEN", "HVC_XEN", "XEN_SYS_HYPERVISOR", "XEN_PV", "XEN_PVH",
    )  # fmt: skip
    assert verify.required_options(i686, i686.guests) == (
        "XEN", "HVC_XEN", "XEN_SYS_HYPERVISOR", "X86_PAE", "XEN_PVH",
    )  # fmt: skip
    assert verify.required_notes(i686.guests) == (xennotes.XEN_ELFNOTE_PHYS32_ENTRY,)
    assert verify.required_notes(x86_64.guests) == (
        xennotes.XEN_ELFNOTE_GUEST_OS,
        xennotes.XEN_ELFNOTE_ENTRY,
        xennotes.XEN_ELFNOTE_FEATURES,
        xennotes.XEN_ELFNOTE_PHYS32_ENTRY,
    )


def test_a_failed_check_is_exit_13_naming_expected_and_found() -> None:
    report = verify.VerifyReport("kernel-xen-6.1.192-1", "default")
    report.add("k.rpm", "arch", True, "i686 or x86_64", "x86_64")
    report.add("k.rpm", "Xen ELF note ENTRY", False, "present", "absent")
    error = verify.VerifyFailed(report)
    assert int(error.exit_code) == 13
    assert error.message == "1 of 2 checks failed"
    assert error.details == ["k.rpm: Xen ELF note ENTRY: FAILED (expected present, found absent)"]


def test_binary_rpmlintrc_keeps_the_checkouts_filters(tmp_path: Path) -> None:
    checkout = tmp_path / "kernel-xen.rpmlintrc"
    checkout.write_text('addFilter("no-signature")\n')
    text = verify._binary_rpmlintrc(checkout, tmp_path / "rc").read_text()
    assert text.startswith('addFilter("no-signature")\n')
    assert 'addFilter("zero-length /lib/modules/[^/ ]+/modules\\.")' in text
