"""Hostile checkout files: outside the checkout, not UTF-8, huge, YAML bombs, strictness,
terminal escapes in names, and output directories that are full or not writable.

Rows of reliability.md covered here: 6 (malformed fragment lines), 18 (files outside the
checkout), 20 (encodings, sizes, alias bombs, full or unwritable output), 21 (terminal
safety of what is printed).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from ..unit.conftest import kernel_makefile, write_tarball
from .harness import Case, Scene, run_case

DIFF = "--- a/Makefile\n+++ b/Makefile\n@@ -1 +1 @@\n-# SPDX-License-Identifier: GPL-2.0\n+# x\n"
SECRET = "kxen-secret-outside-the-checkout"
TARBALL = "{tmp}/linux-6.1.192.tar.xz"
UNSHARE = ("unshare", "--mount", "--propagation", "private", "sh", "-c")


def tiny_tarball(scene: Scene) -> None:
    write_tarball(
        scene.tmp / "linux-6.1.192.tar.xz",
        {"linux-6.1.192/Makefile": kernel_makefile(6, 1, 192).encode()},
    )


def outside(scene: Scene, text: str = f"{SECRET}\n") -> Path:
    target = scene.tmp / "outside.txt"
    target.write_text(text)
    return target


def link_patch_outside(scene: Scene) -> None:
    patches = scene.checkout / "patches"
    (patches / "0001-x.patch").symlink_to(outside(scene, DIFF.replace("# x", f"# {SECRET}")))
    (patches / "series").write_text("0001-x.patch\n")


def link_series_outside(scene: Scene) -> None:
    series = scene.checkout / "patches" / "series"
    series.unlink()
    series.symlink_to(outside(scene))


def link_fragment_outside(scene: Scene) -> None:
    tiny_tarball(scene)
    (scene.checkout / "configs" / "smoke" / "zz-outside.config").symlink_to(outside(scene))


def link_layer_outside(scene: Scene) -> None:
    tiny_tarball(scene)
    layer = scene.checkout / "configs" / "smoke"
    shutil.rmtree(layer)
    elsewhere = scene.tmp / "layer"
    elsewhere.mkdir()
    (elsewhere / "a.config").write_text("CONFIG_XEN=y\n")
    layer.symlink_to(elsewhere)


def link_manifest_outside(scene: Scene) -> None:
    manifest = scene.checkout / "kernel-xen.yaml"
    target = outside(scene, manifest.read_text())
    manifest.unlink()
    manifest.symlink_to(target)


def link_sources_outside(scene: Scene) -> None:
    sources = scene.checkout / "sources"
    sources.unlink()
    sources.symlink_to(outside(scene))


def link_template_outside(scene: Scene) -> None:
    tiny_tarball(scene)
    template = scene.checkout / "specs" / "kernel-xen.spec.j2"
    template.unlink()
    template.symlink_to(outside(scene, "{{ nothing }}" + SECRET))


def link_rpmlintrc_outside(scene: Scene) -> None:
    rc = scene.checkout / "kernel-xen.rpmlintrc"
    rc.unlink()
    rc.symlink_to(outside(scene))
    (scene.tmp / "x.spec").write_text("Name: x\n")


def write(relative: str, data: bytes, also_tarball: bool = False) -> object:
    def setup(scene: Scene) -> None:
        if also_tarball:
            tiny_tarball(scene)
        (scene.checkout / relative).write_bytes(data)

    return setup


def add_patch(name: str, data: bytes) -> object:
    def setup(scene: Scene) -> None:
        (scene.checkout / "patches" / name).write_bytes(data)
        (scene.checkout / "patches" / "series").write_text(f"{name}\n")

    return setup


ALIAS_BOMB = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
    for i in range(9)
)
ESCAPES = "\x1b[2J\x1b]0;owned\x07"
# 242 bytes of bzip2 that unpack to 300 MiB of newlines (bz2.compress of b"\n" * (300 << 20),
# written out here because making it takes seconds): a patch compression bomb.
BZ2_BOMB = base64.b64decode(
    "QlpoOTFBWSZTWStxu3EBX45AAIAQAAggADCATUZCoCWpCoCXMUFZJlNZK3G7cQFfjkAAgBAACCAAMIBNRkKgJakK"
    "gJcxQVkmU1krcbtxAV+OQACAEAAIIAAwgE1GQqAlqQqAlzFBWSZTWStxu3EBX45AAIAQAAggADCATUZCoCWpCoCX"
    "MUFZJlNZK3G7cQFfjkAAgBAACCAAMIBNRkKgJakKgJcxQVkmU1krcbtxAV+OQACAEAAIIAAwgE1GQqAlqQqAlzFB"
    "WSZTWVwdXFUBLBJABIAQAAEACCAAMMwFKaYiBSNiRApHi7kinChIfPuMw4A="
)


def escape_patch(scene: Scene) -> None:
    """A patch whose header names a file with terminal escapes in it."""
    patch = f"Subject: {ESCAPES}clear the screen\n\n{DIFF}".replace("Makefile", f"M{ESCAPES}f")
    add_patch("0001-escape.patch", patch.encode())(scene)  # type: ignore[operator]


def escape_fragment(scene: Scene) -> None:
    tiny_tarball(scene)
    (scene.checkout / "configs" / "smoke" / "zz.config").write_text(f"CONFIG_{ESCAPES}=y\n")


FULL_DISK = (*UNSHARE, "mount -t tmpfs -o size=16k tmpfs {tmp}/full && "
             "head -c 12k /dev/zero > {tmp}/full/filler; {kxen}")  # fmt: skip
READ_ONLY = (*UNSHARE, "mount -t tmpfs -o ro tmpfs {tmp}/full && {kxen}")


def full_dir(scene: Scene) -> None:
    (scene.tmp / "full").mkdir()
    tiny_tarball(scene)


CASES = [
    # --- 18: nothing outside the checkout is read, packed or echoed ---------------------
    Case("patch-symlink-outside", ("patches", "list"), 2,
         "patches/0001-x.patch: leads outside the checkout", link_patch_outside,
         never_shown=SECRET),
    Case("patch-symlink-outside-spec", ("spec", "--upstream", TARBALL, "-o", "{tmp}/x.spec"), 2,
         "patches/0001-x.patch: leads outside the checkout",
         lambda s: (tiny_tarball(s), link_patch_outside(s)), absent=("{tmp}/x.spec",),
         never_shown=SECRET),
    Case("series-symlink-outside", ("patches", "list"), 2,
         "patches/series: leads outside the checkout", link_series_outside, never_shown=SECRET),
    Case("fragment-symlink-outside",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "configs/smoke/zz-outside.config: leads outside the checkout",
         link_fragment_outside, absent=("{tmp}/out",), never_shown=SECRET),
    Case("layer-dir-symlink-outside",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "configs/smoke: leads outside the checkout", link_layer_outside,
         absent=("{tmp}/out",)),
    Case("manifest-symlink-outside", ("verrel",), 2,
         "kernel-xen.yaml: leads outside the checkout", link_manifest_outside),
    Case("sources-symlink-outside", ("sources",), 2, "sources: leads outside the checkout",
         link_sources_outside, never_shown=SECRET),
    Case("spec-template-symlink-outside",
         ("spec", "--upstream", TARBALL, "-o", "{tmp}/x.spec"), 2,
         "specs/kernel-xen.spec.j2: leads outside the checkout", link_template_outside,
         absent=("{tmp}/x.spec",), never_shown=SECRET),
    Case("rpmlintrc-symlink-outside", ("lint", "{tmp}/x.spec"), 2,
         "kernel-xen.rpmlintrc: leads outside the checkout", link_rpmlintrc_outside),
    # --- 20: encodings, sizes, bombs --------------------------------------------------
    Case("series-not-utf8", ("patches", "list"), 2, "patches/series:2: not UTF-8 text",
         write("patches/series", b"# fine\n\xff\xfe\n")),
    Case("sources-not-utf8", ("sources",), 2, "sources:1: not UTF-8 text",
         write("sources", b"SHA512 (\xff) = 00\n")),
    Case("manifest-not-utf8", ("verrel",), 2, "kernel-xen.yaml:3: not UTF-8 text",
         write("kernel-xen.yaml", b"# a\n# b\nname: \xc3\x28\n")),
    Case("layers-not-utf8",
         ("config", "generate", "--upstream", TARBALL, "-o", "{tmp}/out"), 2,
         "configs/layers.yaml:1: not UTF-8 text",
         write("configs/layers.yaml", b"\x80flavours: {}\n", also_tarball=True)),
    Case("fragment-not-utf8",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "configs/smoke/smoke.config:1: not UTF-8 text",
         write("configs/smoke/smoke.config", b"CONFIG_\xe9=y\n", also_tarball=True)),
    Case("patch-with-nul", ("patches", "list"), 2, "0001-nul.patch:1: holds a NUL byte",
         add_patch("0001-nul.patch", b"--- a/x\x00\n")),
    Case("manifest-alias-bomb", ("verrel",), 2, "anchors and aliases (&, *) are not allowed",
         write("kernel-xen.yaml", ALIAS_BOMB), timeout=20),
    Case("manifest-huge", ("verrel",), 2, "more than the 1048576",
         write("kernel-xen.yaml", b"# x\n" * 600_000), timeout=20),
    Case("layers-alias", ("config", "generate", "--upstream", TARBALL, "-o", "{tmp}/out"), 2,
         "anchors and aliases",
         write("configs/layers.yaml", b"flavours:\n  default: &d {resolve: olddefconfig}\n"
               b"  smoke: *d\n", also_tarball=True)),
    Case("long-fragment-line-is-cut-short",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "malformed line 'xxxxxxxx",
         write("configs/smoke/smoke.config", b"x" * 1_000_000 + b"\n", also_tarball=True),
         stderr_limit=2000),
    Case("patch-bz2-bomb", ("patches", "list"), 2, "0001-bomb.patch.bz2: unpacks to more than",
         lambda s: add_patch("0001-bomb.patch.bz2", BZ2_BOMB)(s)),  # type: ignore[operator]
    # --- 8: strict parsing ------------------------------------------------------------
    Case("layers-duplicate-key", ("config", "generate", "--upstream", TARBALL, "-o", "{tmp}/o"),
         2, "configs/layers.yaml:5: invalid YAML: duplicate key 'smoke' (first on line 3)",
         write("configs/layers.yaml", b"flavours:\n  # x\n  smoke: {resolve: allnoconfig}\n"
               b"  # y\n  smoke: {resolve: olddefconfig}\n", also_tarball=True)),
    Case("unset-line-with-junk",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "smoke.config:1: malformed line '# CONFIG_XEN is not set # junk'",
         write("configs/smoke/smoke.config", b"# CONFIG_XEN is not set # junk\n",
               also_tarball=True)),
    # --- 21: what kxen prints is safe for a terminal ------------------------------------
    Case("escapes-in-a-patch-are-neutralised", ("patches", "list"), 0, "",
         escape_patch, json=False, stdout_has="  M M??f (1 hunk(s))"),
    Case("escapes-in-a-fragment-symbol",
         ("config", "generate", "--flavour", "smoke", "--upstream", TARBALL, "-o", "{tmp}/out"),
         2, "malformed line", escape_fragment, json=False),
    Case("markup-and-emoji-codes-print-literally",
         ("spec", "--upstream", TARBALL, "-o", "{tmp}/a:x:[bold]b[/bold].spec"), 0, "",
         tiny_tarball, json=False, stdout_has="a:x:[bold]b[/bold].spec"),
    # --- 20 / 10: full and unwritable output directories ----------------------------------
    Case("spec-into-a-full-disk", ("spec", "--upstream", TARBALL, "-o", "{tmp}/full/x.spec"),
         10, "no space left on the device", full_dir, wrap=FULL_DISK),
    Case("srpm-into-a-small-disk", ("srpm", "--upstream", TARBALL, "-o", "{tmp}/full"),
         10, "MiB free, this command needs", full_dir, wrap=FULL_DISK,
         absent=("{tmp}/cache",)),
    Case("cache-on-a-small-disk", ("config", "generate", "--upstream", TARBALL, "-o", "{tmp}/o"),
         10, "{tmp}/full/cache: 0 MiB free, this command needs", full_dir, wrap=FULL_DISK,
         env={"KXEN_CACHE_DIR": "{tmp}/full/cache"}, absent=("{tmp}/o",)),
    Case("spec-into-a-read-only-dir", ("spec", "--upstream", TARBALL, "-o", "{tmp}/full/x.spec"),
         8, "Read-only file system", full_dir, wrap=READ_ONLY),
    Case("spec-under-a-file", ("spec", "--upstream", TARBALL, "-o", "{tmp}/file/x.spec"), 8,
         "file: exists and is not a directory",
         lambda s: (tiny_tarball(s), (s.tmp / "file").write_text("x"))),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_checkout_input(case: Case, scene: Scene) -> None:
    run_case(case, scene)


def test_config_check_shows_a_fragment_file_name_with_escapes_neutralised(
    fake_scene: Scene, fake_linux: Path
) -> None:
    """Findings name their fragment file: its name is shown, its escapes are not sent."""
    layer = fake_scene.checkout / "configs" / "smoke"
    (layer / f"zz-{ESCAPES}.config").write_text("CONFIG_KXEN_NO_SUCH_SYMBOL=y\n")
    case = Case("config-check-escapes", ("config", "check", "--upstream", str(fake_linux)), 0, "",
                json=False, stdout_has="configs/smoke/zz-??.config:1")  # fmt: skip
    run_case(case, fake_scene)


def test_a_multi_line_explanation_prints_as_lines_not_escaped_breaks(
    fake_scene: Scene, fake_linux: Path
) -> None:
    """Neutralising every printed line must not turn an explanation's line breaks into ?."""
    case = Case("explain", ("config", "explain", "CONFIG_XEN_PV", "--arch", "x86_64",
                            "--flavour", "smoke", "--upstream", str(fake_linux)), 0, "",
                json=False, stdout_has="\n  set in configs/")  # fmt: skip
    outcome = run_case(case, fake_scene)
    assert "?  set in" not in outcome.stdout
