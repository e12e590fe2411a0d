"""The integrity mechanism of derived cache entries: manifests, sealed files, set-aside."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from kxen.support import integrity
from kxen.support.integrity import CONFIG_INPUTS, WHOLE, Corrupt, Quarantine


class RecordingProgress:
    """A Progress that keeps the warnings it is given."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def phase(self, name: str, detail: str = "") -> None:
        pass

    def step(self, text: str) -> None:
        pass

    def transfer(self, name: str, done: int, total: int | None) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _tree(root: Path) -> Path:
    files = {
        "Makefile": "VERSION = 6\n",
        "Kconfig": 'source "arch/Kconfig"\n',
        "arch/Kconfig": "config X86\n\tbool\n",
        "arch/x86/configs/x86_64_defconfig": "CONFIG_SMP=y\n",
        "scripts/kconfig/conf.c": "int main(void) { return 0; }\n",
        "scripts/Kbuild.include": "cc-option = x\n",
        "drivers/xen/events.c": "/* not read by kconfig */\n",
        "README": "Linux\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "scripts/run.sh").write_text("#!/bin/sh\n")
    (root / "scripts/run.sh").chmod(0o755)
    (root / "arch/x86/boot").mkdir(parents=True)
    os.symlink("../../x86/configs", root / "arch/x86/boot/configs-link")
    return root


@pytest.fixture
def entry(tmp_path: Path) -> tuple[Path, Path]:
    """A recorded tree and its manifest (beside it, as the prepared trees keep it)."""
    root = _tree(tmp_path / "entry" / "linux")
    manifest = tmp_path / "entry" / integrity.MANIFEST_NAME
    integrity.record(root, manifest, {"topdir": "linux"})
    integrity._MANIFESTS.clear()  # as a later kxen process finds it
    return root, manifest


def test_an_untouched_entry_verifies_in_every_scope(entry):
    root, manifest = entry
    assert integrity.verify(root, manifest, CONFIG_INPUTS).meta == {"topdir": "linux"}
    assert integrity.verify(root, manifest, WHOLE).listing["arch/x86/boot/configs-link"] == (
        "l ../../x86/configs"
    )


@pytest.mark.parametrize(
    "path",
    ["Kconfig", "arch/Kconfig", "scripts/kconfig/conf.c", "scripts/Kbuild.include", "Makefile"],
)
def test_a_flipped_byte_in_a_config_input_is_found(entry, path):
    root, manifest = entry
    _flip_a_byte(root / path)
    with pytest.raises(Corrupt) as info:
        integrity.verify(root, manifest, CONFIG_INPUTS)
    assert info.value.problems == [f"{path}: content differs from the record"]


def test_content_outside_the_scope_is_hashed_by_the_whole_tree_check(entry):
    root, manifest = entry
    _flip_a_byte(root / "drivers/xen/events.c")
    integrity.verify(root, manifest, CONFIG_INPUTS)  # kconfig never reads it
    integrity._MANIFESTS.clear()
    with pytest.raises(Corrupt, match=r"drivers/xen/events\.c: content differs"):
        integrity.verify(root, manifest, WHOLE)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


def _grow(root: Path) -> None:
    (root / "README").write_text("Linux, and more\n")


def _chmod(root: Path) -> None:
    (root / "scripts/run.sh").chmod(0o644)


def _add(root: Path) -> None:
    (root / "arch/Kconfig.extra").write_text("config EVIL\n")


def _remove(root: Path) -> None:
    (root / "README").unlink()


def _retarget(root: Path) -> None:
    link = root / "arch/x86/boot/configs-link"
    link.unlink()
    os.symlink("/etc", link)


def _file_to_link(root: Path) -> None:
    (root / "README").unlink()
    os.symlink("Makefile", root / "README")


def test_a_file_outside_the_scope_is_checked_by_type_only_unless_the_whole_tree_is(entry):
    """A config-scope check does not stat files kconfig never reads (half its cost)."""
    root, manifest = entry
    _grow(root)
    integrity.verify(root, manifest, CONFIG_INPUTS)
    integrity._MANIFESTS.clear()
    with pytest.raises(Corrupt) as info:
        integrity.verify(root, manifest, WHOLE)
    assert info.value.problems == [
        "README: a file (mode 644, 16 bytes), recorded as a file (mode 644, 6 bytes)"
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_chmod, "scripts/run.sh: a file (mode 644, 10 bytes), recorded as a file (mode 755"),
        (_add, "arch/Kconfig.extra: not in the record"),
        (_remove, "README: missing"),
        (_retarget, "arch/x86/boot/configs-link: a symlink to '/etc', recorded as a symlink"),
        (_file_to_link, "README: a symlink to 'Makefile', recorded as a file"),
    ],
)
def test_the_listing_is_checked_whatever_the_scope(entry, change, problem):
    root, manifest = entry
    change(root)
    with pytest.raises(Corrupt) as info:
        integrity.verify(root, manifest, CONFIG_INPUTS)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_a_changed_manifest_is_refused(entry):
    root, manifest = entry
    data = manifest.read_bytes().replace(b'"topdir": "linux"', b'"topdir": "linuX"')
    manifest.write_bytes(data)
    with pytest.raises(Corrupt, match="does not match its own seal"):
        integrity.verify(root, manifest)
    assert integrity.read_meta(manifest) is None


def test_an_entry_without_a_manifest_is_refused(entry):
    root, manifest = entry
    manifest.unlink()
    with pytest.raises(Corrupt, match="no digest manifest"):
        integrity.verify(root, manifest)


def test_a_symlinked_root_is_refused(entry, tmp_path):
    root, manifest = entry
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    os.symlink(moved, root)
    with pytest.raises(Corrupt, match="is not a directory"):
        integrity.verify(root, manifest)


def test_a_tree_is_verified_once_per_process_and_again_when_remade(entry):
    root, manifest = entry
    integrity.verify(root, manifest, CONFIG_INPUTS)
    assert integrity.already_verified(manifest, CONFIG_INPUTS)
    assert not integrity.already_verified(manifest, WHOLE)
    integrity.verify(root, manifest, WHOLE)
    assert integrity.already_verified(manifest, WHOLE)
    integrity.record(root, manifest, {"topdir": "other"})  # a new manifest file
    assert integrity.read_meta(manifest) == {"topdir": "other"}


def test_record_clears_setuid_setgid_and_sticky_bits(tmp_path):
    root = tmp_path / "tree"
    (root / "dir").mkdir(parents=True)
    (root / "dir").chmod(0o3755)
    (root / "tool").write_text("#!/bin/sh\n")
    (root / "tool").chmod(0o6755)
    made = integrity.record(root, tmp_path / "manifest")
    assert stat.S_IMODE((root / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "dir").stat().st_mode) == 0o755
    assert made.listing["tool"] == "f 755 10"
    assert made.listing["dir"] == "d 755"


def test_a_manifest_inside_its_root_is_not_part_of_the_listing(tmp_path):
    root = _tree(tmp_path / "root")
    made = integrity.record(root, root / integrity.MANIFEST_NAME, ignore=[".config"])
    (root / ".config").write_text("rewritten by every run\n")
    assert integrity.MANIFEST_NAME not in made.listing
    integrity._MANIFESTS.clear()
    integrity.verify(root, root / integrity.MANIFEST_NAME, ignore=[".config"])


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("Kconfig", True),
        ("arch/x86/Kconfig.debug", True),
        ("drivers/net/Makefile", True),
        ("arch/x86/Makefile_32.cpu", True),
        ("net/Kbuild", True),
        ("scripts/Kbuild.include", True),
        ("scripts/kconfig/lexer.l", True),
        ("scripts/subarch.include", True),
        ("arch/x86/configs/x86_64_defconfig", True),
        ("kernel/configs/xen.config", True),
        ("drivers/xen/events/events_base.c", False),
        ("Documentation/kbuild/kconfig.rst", False),
        ("include/linux/kconfig.h", False),
    ],
)
def test_config_inputs(path, read):
    assert CONFIG_INPUTS.wants(path) is read


# --- sealed files ---------------------------------------------------------------


def test_a_sealed_file_reads_back_and_a_changed_one_does_not(tmp_path):
    path = tmp_path / "resolved" / "key.config"
    integrity.write_sealed(path, b"CONFIG_XEN=y\n")
    assert integrity.read_sealed(path) == b"CONFIG_XEN=y\n"
    assert integrity.check_sealed(path) is not None
    path.write_bytes(b"CONFIG_XEN=n\n")
    with pytest.raises(Corrupt, match="does not match its recorded sha256"):
        integrity.read_sealed(path)
    with pytest.raises(Corrupt):
        integrity.check_sealed(path)


def test_sealed_file_record_is_sha256sum_format(tmp_path):
    path = tmp_path / "f"
    integrity.write_sealed(path, b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (tmp_path / "f.sha256").read_text() == f"{digest}  f\n"
    integrity.write_sealed(path, b"abc", "sha512")
    assert (tmp_path / "f.sha512").read_text().endswith("  f\n")


def test_a_missing_file_is_a_miss_and_a_missing_record_is_corrupt(tmp_path):
    path = tmp_path / "f"
    assert integrity.read_sealed(path) is None
    assert integrity.check_sealed(path) is None
    path.write_bytes(b"made before records existed")
    with pytest.raises(Corrupt, match="has no sha256 record"):
        integrity.read_sealed(path)


def test_a_sealed_file_replaced_by_a_symlink_is_corrupt(tmp_path):
    path = tmp_path / "f"
    integrity.write_sealed(path, b"abc")
    (tmp_path / "other").write_bytes(b"abc")
    path.unlink()
    os.symlink(tmp_path / "other", path)
    with pytest.raises(Corrupt, match="symlink"):
        integrity.read_sealed(path)
    with pytest.raises(Corrupt, match="symlink"):
        integrity.check_sealed(path)


# --- setting aside ----------------------------------------------------------------


def test_set_aside_keeps_the_entry_and_a_note_and_warns(tmp_path):
    cache = tmp_path / "cache"
    path = cache / "resolved" / "key.config"
    integrity.write_sealed(path, b"CONFIG_XEN=y\n")
    path.write_bytes(b"CONFIG_XEN=m\n")
    progress = RecordingProgress()
    quarantine = Quarantine.in_cache(cache, progress)
    with pytest.raises(Corrupt) as info:
        integrity.read_sealed(path)
    evidence = quarantine.set_aside(
        integrity.sealed_parts(path), info.value, "resolved config", "resolving it again"
    )
    assert evidence.parent == cache / "corrupt"
    assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z-key\.config-\w+", evidence.name)
    assert (evidence / "key.config").read_bytes() == b"CONFIG_XEN=m\n"
    assert (evidence / "key.config.sha256").is_file()
    note = (evidence / integrity.NOTE_NAME).read_text()
    assert f"resolved config {path}" in note and "does not match" in note
    assert not path.exists() and not integrity.sidecar(path).exists()
    (warning,) = progress.warnings
    assert warning.startswith(f"resolved config {path} failed verification (")
    assert f"set aside as {evidence}; resolving it again" in warning


def test_set_aside_moves_a_symlink_without_following_it(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "data").write_text("keep me\n")
    entry = tmp_path / "cache" / "trees" / "abc"
    entry.parent.mkdir(parents=True)
    os.symlink(target, entry)
    evidence = Quarantine.in_cache(tmp_path / "cache").set_aside(
        entry, Corrupt(["it is a symlink"]), "prepared tree", "extracting it again"
    )
    assert (evidence / "abc").is_symlink()
    assert (target / "data").read_text() == "keep me\n"
    assert not entry.exists() and not entry.is_symlink()


def test_two_entries_set_aside_in_the_same_second_do_not_collide(tmp_path):
    quarantine = Quarantine.in_cache(tmp_path / "cache")
    kept = []
    for _ in range(2):
        entry = tmp_path / "cache" / "x.config"
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text("x")
        kept.append(quarantine.set_aside(entry, Corrupt(["x"]), "resolved config", "again"))
    assert kept[0] != kept[1]
    assert all((k / "x.config").is_file() for k in kept)


def test_an_entry_that_cannot_be_set_aside_stops_the_work(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corrupt").write_text("a file where the evidence directory goes")
    entry = cache / "x.config"
    entry.write_text("x")
    with pytest.raises(integrity.CorruptCacheError) as info:
        Quarantine.in_cache(cache).set_aside(entry, Corrupt(["x"]), "resolved config", "again")
    assert info.value.exit_code == 3
    assert str(entry) in info.value.message
    assert entry.exists()


def test_names_with_any_byte_but_nul_round_trip(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    odd = [b"new\nline", b"tab\there", b"latin-1 \xe9", b"back\\slash"]
    for name in odd:
        with open(os.path.join(os.fsencode(root), name), "wb") as handle:
            handle.write(name)
    os.symlink(b"target\nwith \xff", os.path.join(os.fsencode(root), b"link"))
    made = integrity.record(root, tmp_path / "manifest", {"topdir": "tree"})
    integrity._MANIFESTS.clear()
    assert integrity.read_manifest(tmp_path / "manifest") == made
    integrity.verify(root, tmp_path / "manifest")
    assert made.listing[os.fsdecode(b"link")] == "l " + os.fsdecode(b"target\nwith \xff")


# --- verifying again by inode status ------------------------------------------


def _next_process() -> None:
    """What a later kxen process knows: nothing verified yet."""
    integrity._MANIFESTS.clear()
    integrity._QUICKLY_VERIFIED.clear()


@pytest.fixture
def settled(entry: tuple[Path, Path]) -> tuple[Path, Path]:
    """An entry verified once by hashing, long enough after it was made that its status
    is recorded (times from the coarse clock cannot hide a change made after it)."""
    root, manifest = entry
    time.sleep(2 * integrity._RACY_NS / 1e9)
    integrity.verify_quickly(root, manifest, CONFIG_INPUTS)
    assert integrity.stats_path(manifest).is_file()
    _next_process()
    return root, manifest


def test_an_unchanged_entry_is_verified_by_status_without_reading_its_manifest(settled):
    root, manifest = settled
    integrity.verify_quickly(root, manifest, CONFIG_INPUTS)
    assert integrity.already_verified(manifest, CONFIG_INPUTS)
    assert not integrity._MANIFESTS  # neither parsed nor hashed: the status record answered


def test_an_entry_changed_too_soon_after_its_verification_gets_no_status_record(entry):
    root, manifest = entry  # just made: its times are within the coarse clock's reach
    integrity.verify_quickly(root, manifest, CONFIG_INPUTS)
    assert not integrity.stats_path(manifest).exists()


def test_a_same_size_write_with_its_mtime_put_back_is_still_found(settled):
    root, manifest = settled
    path = root / "arch/Kconfig"
    before = path.stat()
    _flip_a_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime cannot be put back
    with pytest.raises(Corrupt, match=r"arch/Kconfig: content differs from the record"):
        integrity.verify_quickly(root, manifest, CONFIG_INPUTS)


def test_a_file_added_outside_the_scope_is_found_by_its_directory(settled):
    root, manifest = settled
    (root / "drivers/xen/extra.c").write_text("/* new */\n")
    with pytest.raises(Corrupt, match=r"drivers/xen/extra\.c: not in the record"):
        integrity.verify_quickly(root, manifest, CONFIG_INPUTS)


def test_an_altered_status_record_means_hashing_again(settled):
    root, manifest = settled
    record = integrity.stats_path(manifest)
    before = integrity._status(root / "Kconfig").encode()
    _flip_a_byte(root / "Kconfig")
    after = integrity._status(root / "Kconfig").encode()
    record.write_bytes(record.read_bytes().replace(before, after))  # its seal now differs
    with pytest.raises(Corrupt, match=r"Kconfig: content differs from the record"):
        integrity.verify_quickly(root, manifest, CONFIG_INPUTS)


def test_a_status_record_of_a_narrower_scope_does_not_verify_the_whole_tree(settled):
    root, manifest = settled
    _flip_a_byte(root / "drivers/xen/events.c")
    integrity.verify_quickly(root, manifest, CONFIG_INPUTS)  # kconfig never reads it
    with pytest.raises(Corrupt, match=r"drivers/xen/events\.c: content differs"):
        integrity.verify_quickly(root, manifest, WHOLE)


def _settled_file(tmp_path: Path) -> Path:
    path = tmp_path / "linux.tar.xz"
    path.write_bytes(b"a kernel tarball\n" * 100)
    time.sleep(2 * integrity._RACY_NS / 1e9)
    return path


def test_a_remembered_digest_answers_while_the_file_is_unchanged(tmp_path):
    path, records = _settled_file(tmp_path), tmp_path / "digests"
    real = integrity.digest_of(path, "sha512")
    assert integrity.remembered_digest(path, records) == real
    (record,) = (p for p in records.iterdir() if p.suffix == ".sha512")
    status = record.read_text().partition("\n")[0]
    integrity.write_sealed(record, f"{status}\n{'0' * 128}".encode())
    assert integrity.remembered_digest(path, records) == "0" * 128  # the record answered


def test_a_remembered_digest_is_hashed_again_after_a_write_that_keeps_size_and_mtime(tmp_path):
    path, records = _settled_file(tmp_path), tmp_path / "digests"
    integrity.remembered_digest(path, records)
    before = path.stat()
    _flip_a_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert integrity.remembered_digest(path, records) == integrity.digest_of(path, "sha512")


def test_an_altered_digest_record_is_not_believed(tmp_path):
    path, records = _settled_file(tmp_path), tmp_path / "digests"
    integrity.remembered_digest(path, records)
    (record,) = (p for p in records.iterdir() if p.suffix == ".sha512")
    status = record.read_text().partition("\n")[0]
    record.write_text(f"{status}\n{'0' * 128}")  # its seal no longer matches
    assert integrity.remembered_digest(path, records) == integrity.digest_of(path, "sha512")
