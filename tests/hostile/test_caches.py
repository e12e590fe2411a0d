"""A byte changed in a derived cache entry (reliability row 17): found before use, named in a
warning, set aside as evidence under `<cache>/corrupt/`, and made again from its inputs, so
what kxen produces is what the untouched cache would have given; the SRPM never carries the
changed bytes. A corrupt lookaside copy with no mirror to fetch it again fails (exit 3)
naming the copy and where it was kept.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kxen.upstream import sources

from ..unit.conftest import kernel_makefile, write_tarball
from .harness import KXEN, Case, Outcome, Scene, run_case

TOP = "linux-6.1.192"
TARBALL = "{tmp}/linux-6.1.192.tar.xz"
FAKE_KBUILD = """
# kbuild's config targets as kxen drives them (make -C TREE O=DIR ARCH=A target):
# the result depends on the tree's Kconfig, as the real one does
olddefconfig:
\t@cat Kconfig >> $(O)/.config
allnoconfig:
\t@cat $(KCONFIG_ALLCONFIG) Kconfig > $(O)/.config
"""
CONFIG = "kernel-6.1.192-x86_64-xen.config"
GENERATE = ("config", "generate", "--arch", "x86_64", "--flavour", "default",
            "--upstream", TARBALL, "-o")  # fmt: skip
SRPM = ("srpm", "--flavour", "default", "--upstream", TARBALL, "-o")


def _kxen(scene: Scene, *args: str) -> None:
    """Run kxen as the case will, to fill the cache first."""
    argv = [str(KXEN), "--repo", str(scene.checkout), *map(scene.expand, args)]
    env = {**os.environ, "KXEN_CACHE_DIR": str(scene.cache)}
    subprocess.run(argv, cwd=scene.tmp, env=env, check=True, capture_output=True, timeout=120)


def _flip_a_byte(path: Path) -> None:
    """In a new inode: a lookaside copy may be a hard link to the file it was imported from."""
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def _warm(command: tuple[str, ...], then: Callable[[Scene], None]) -> Callable[[Scene], None]:
    """Fake kernel tarball, a first run of `command` into {tmp}/good, then `then`."""

    def setup(scene: Scene) -> None:
        makefile = kernel_makefile(6, 1, 192) + FAKE_KBUILD
        write_tarball(
            scene.tmp / "linux-6.1.192.tar.xz",
            {f"{TOP}/Makefile": makefile.encode(), f"{TOP}/Kconfig": b"CONFIG_KXEN_FAKE=y\n"},
        )
        _kxen(scene, *command, "{tmp}/good")
        then(scene)

    return setup


def _y_to_m(path: Path) -> None:
    """One byte changed so that the result is still a valid config: without a check it
    would silently change the config shipped."""
    data = path.read_bytes()
    at = data.rindex(b"=y\n") + 1
    path.write_bytes(data[:at] + b"m" + data[at + 1 :])


def _flip_kconfig(scene: Scene) -> None:
    (kconfig,) = scene.cache.glob(f"trees/*/{TOP}/Kconfig")
    _y_to_m(kconfig)


def _flip_resolved(scene: Scene) -> None:
    for resolved in scene.cache.glob("kconfig/*/resolved/*.config"):
        _y_to_m(resolved)


def _plant_in_kconfig_dir(scene: Scene) -> None:
    (objdir,) = scene.cache.glob("kconfig/*/kconfig-x86_64")
    (objdir / "scripts" / "kconfig").mkdir(parents=True)
    (objdir / "scripts" / "kconfig" / "conf").write_text("#!/bin/sh\necho CONFIG_EVIL=y\n")
    for resolved in scene.cache.glob("kconfig/*/resolved/*"):
        resolved.unlink()


@dataclass(frozen=True)
class Row:
    case: Case
    produced: str
    """What the run makes in {tmp}/out: byte-identical to the first run's {tmp}/good."""
    entries: int = 1
    """Entries set aside under <cache>/corrupt."""


ROWS = [
    Row(Case("tree-kconfig-byte", (*GENERATE, "{tmp}/out"), 0, "prepared tree",
             _warm(GENERATE, _flip_kconfig)), CONFIG),
    Row(Case("resolved-config-byte", (*GENERATE, "{tmp}/out"), 0, "resolved config",
             _warm(GENERATE, _flip_resolved)), CONFIG),
    Row(Case("kconfig-build-dir", (*GENERATE, "{tmp}/out"), 0, "kconfig build directory",
             _warm(GENERATE, _plant_in_kconfig_dir)), CONFIG),
    Row(Case("srpm-tree-kconfig-byte", (*SRPM, "{tmp}/out"), 0, "prepared tree",
             _warm(SRPM, _flip_kconfig)), "kernel-xen-6.1.192-1.src.rpm"),
    Row(Case("srpm-resolved-config-bytes", (*SRPM, "{tmp}/out"), 0, "resolved config",
             _warm(SRPM, _flip_resolved)), "kernel-xen-6.1.192-1.src.rpm", entries=2),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[row.case.id for row in ROWS])
def test_a_changed_cache_entry_is_set_aside_and_made_again(row: Row, scene: Scene) -> None:
    outcome = run_case(row.case, scene)
    produced = scene.tmp / "out" / row.produced
    assert produced.read_bytes() == (scene.tmp / "good" / row.produced).read_bytes()
    kept = sorted((scene.cache / "corrupt").iterdir())
    assert len(kept) == row.entries
    warnings = [str(w) for w in outcome.payload["warnings"]]  # type: ignore[attr-defined]
    for evidence in kept:
        assert any(f"set aside as {evidence};" in w for w in warnings), warnings
        assert f"set aside as {evidence};" in outcome.stderr


# --- the lookaside ---------------------------------------------------------------------

SOURCE = "linux-6.1.tar.xz"


def _corrupt_lookaside_copy(scene: Scene) -> None:
    upstream = write_tarball(
        scene.tmp / SOURCE, {"linux-6.1/Makefile": kernel_makefile(6, 1, 0).encode()}
    )
    lookaside = sources.Lookaside(scene.cache / "lookaside")
    entry = lookaside.import_file(upstream)
    sources.write_sources(scene.checkout / sources.SOURCES_NAME, [entry])
    manifest = scene.checkout / "kernel-xen.yaml"
    text = manifest.read_text()
    dead = f"file://{scene.tmp}/no-mirror/"
    manifest.write_text(text.replace("https://cdn.kernel.org/pub/linux/kernel/", dead))
    _flip_a_byte(lookaside.path_for(entry))


LOOKASIDE = Case("lookaside-copy-no-mirror", ("sources",), 3,
                 f"{SOURCE}: could not download from any mirror (the cached copy ",
                 _corrupt_lookaside_copy)  # fmt: skip


def test_a_corrupt_lookaside_copy_is_named_and_kept_when_no_mirror_answers(
    scene: Scene,
) -> None:
    outcome: Outcome = run_case(LOOKASIDE, scene)
    (entry,) = sources.parse_sources(scene.checkout / sources.SOURCES_NAME)
    copy = sources.Lookaside(scene.cache / "lookaside").path_for(entry)
    (kept,) = (scene.cache / "corrupt").glob(f"*/{SOURCE}")
    error = str(outcome.payload["error"])
    assert f"the cached copy {copy} failed its SHA512 check and is kept as {kept})" in error
    assert kept.read_bytes() != (scene.tmp / SOURCE).read_bytes()
    assert not copy.exists()
    assert f"lookaside copy {copy} failed verification" in outcome.stderr
