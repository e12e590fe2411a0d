from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kxen.errors import PatchError
from kxen.patches.apply import (
    Hunk,
    apply_patch,
    apply_series,
    break_links,
    hardlinked_copy,
    parse_patch_output,
)
from kxen.patches.series import Patch
from kxen.support.progress import NullProgress
from kxen.support.runner import SubprocessRunner

LINES = [f"line {n}" for n in range(1, 21)]


def test_patch_output_with_offset_fuzz_and_failure() -> None:
    output = (
        "patching file drivers/xen/Kconfig\n"
        "Hunk #1 succeeded at 14 (offset 3 lines).\n"
        "Hunk #2 succeeded at 40 with fuzz 2 (offset -1 lines).\n"
        "Hunk #3 succeeded at 50 with fuzz 1.\n"
        "Hunk #4 FAILED at 100.\n"
        "1 out of 4 hunks FAILED\n"
        "patching file b (renamed from a)\n"
        "Hunk #1 succeeded at 7 (offset 1 line).\n"
    )
    run = parse_patch_output(output, 1, 1)
    assert run.files == ["drivers/xen/Kconfig", "b", "a"]
    assert run.hunks == [
        Hunk("drivers/xen/Kconfig", 1, "offset", 14, 3, 0),
        Hunk("drivers/xen/Kconfig", 2, "fuzz", 40, -1, 2),
        Hunk("drivers/xen/Kconfig", 3, "fuzz", 50, 0, 1),
        Hunk("drivers/xen/Kconfig", 4, "failed", 100),
        Hunk("b", 1, "offset", 7, 1, 0),
    ]
    assert run.status() == "fails"
    assert run.hunks[1].describe() == (
        "drivers/xen/Kconfig: hunk #2 applies at 40 with fuzz 2 (offset -1 lines)"
    )
    assert run.hunks[3].describe() == "drivers/xen/Kconfig: hunk #4 FAILED at 100"


def test_patch_output_missing_file_and_dry_run() -> None:
    output = (
        "checking file kept.c\n"
        "can't find file to patch at input line 3\n"
        "Perhaps you used the wrong -p or --strip option?\n"
        "The text leading up to this was:\n"
        "--------------------------\n"
        "|--- a/drivers/gone.c\t2024-01-01\n"
        "|+++ b/drivers/gone.c\t2024-01-02\n"
        "--------------------------\n"
        "No file to patch.  Skipping patch.\n"
        "1 out of 1 hunk ignored\n"
    )
    run = parse_patch_output(output, 1, 1)
    assert run.files == ["kept.c"]
    assert run.hunks == [Hunk("drivers/gone.c", None, "missing")]
    assert run.hunks[0].describe() == "drivers/gone.c: no such file in the tree"


def test_patch_output_statuses() -> None:
    assert parse_patch_output("patching file x\n", 0, 1).status() == "clean"
    offset = "patching file x\nHunk #1 succeeded at 3 (offset 2 lines).\n"
    assert parse_patch_output(offset, 0, 1).status() == "offset"
    malformed = "patching file x\npatch: **** malformed patch at line 7: junk\n"
    run = parse_patch_output(malformed, 2, 1)
    assert (run.status(), run.errors) == ("fails", ["malformed patch at line 7: junk"])
    assert parse_patch_output("", 2, 1).errors == ["patch exited with status 2"]


def test_break_links_gives_touched_files_an_inode_of_their_own(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine.c"
    pristine.write_text("original\n")
    pristine.chmod(0o640)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.link(pristine, tree / "sub" / "file.c")
    os.link(pristine, tree / "untouched.c")
    (tree / "link.c").symlink_to("sub/file.c")
    broken = break_links(tree, ["sub/file.c", "sub/file.c", "new.c", "link.c"])
    assert broken == ["sub/file.c"]
    copy = tree / "sub" / "file.c"
    assert copy.stat().st_ino != pristine.stat().st_ino
    assert copy.stat().st_mode & 0o777 == 0o640
    # written in place (no rename, unlike GNU patch): the pristine file does not notice
    with copy.open("r+") as handle:
        handle.write("MODIFIED")
    assert pristine.read_text() == "original\n"
    assert pristine.stat().st_nlink == 2  # only untouched.c still shares it


def test_break_links_refuses_paths_leaving_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.c").write_text("x")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "escape").symlink_to(outside)
    with pytest.raises(PatchError, match=r"escape/x\.c: resolves outside the tree"):
        break_links(tree, ["escape/x.c"])


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    tree = tmp_path / "cache" / "linux"
    (tree / "drivers" / "xen").mkdir(parents=True)
    (tree / "drivers" / "xen" / "Kconfig").write_text("\n".join(LINES) + "\n")
    (tree / "README").write_text("\n".join(LINES) + "\n")
    return tree


def _diff(tmp_path: Path, relpath: str, before: list[str], after: list[str], name: str) -> Path:
    """A real `diff -u` between a/<relpath> and b/<relpath>."""
    work = tmp_path / f"diff-{name}"
    for side, lines in (("a", before), ("b", after)):
        (work / side / relpath).parent.mkdir(parents=True, exist_ok=True)
        (work / side / relpath).write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        ["diff", "-u", f"a/{relpath}", f"b/{relpath}"], cwd=work, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    path = tmp_path / "patches" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(result.stdout)
    return path


def _edit(lines: list[str], index: int, text: str) -> list[str]:
    return [*lines[:index], text, *lines[index + 1 :]]


def test_apply_clean_then_offset_fuzz_and_failure_on_a_copy(tmp_path: Path, pristine: Path) -> None:
    runner = SubprocessRunner()
    kconfig = "drivers/xen/Kconfig"
    changed = _edit(LINES, 9, "line 10 patched")
    clean = Patch(_diff(tmp_path, kconfig, LINES, changed, "clean.patch"), 1, 1)
    other = Patch(_diff(tmp_path, "README", LINES, _edit(LINES, 2, "x"), "readme.patch"), 1, 2)
    before = (pristine / kconfig).read_bytes()
    with hardlinked_copy(pristine, pristine.parent, runner) as tree:
        scratch = tree.parent
        assert (tree / kconfig).stat().st_nlink == 2
        outcome = apply_patch(tree, clean, runner)
        assert (outcome.status, outcome.hunks, outcome.errors) == ("clean", [], [])
        assert "line 10 patched" in (tree / kconfig).read_text()
        assert (tree / "README").stat().st_nlink == 2  # not touched: still shared
        # the same tree again: the first patch is now applied, so its context is gone
        assert apply_patch(tree, clean, runner).status == "fails"
        assert apply_patch(tree, other, runner).status == "clean"
    assert not scratch.exists()
    assert (pristine / kconfig).read_bytes() == before
    assert (pristine / kconfig).stat().st_nlink == 1


def test_offset_fuzz_and_failure_are_told_apart(tmp_path: Path, pristine: Path) -> None:
    runner = SubprocessRunner()
    kconfig = "drivers/xen/Kconfig"
    patch = Patch(_diff(tmp_path, kconfig, LINES, _edit(LINES, 9, "patched"), "p.patch"), 1, 1)
    variants = {
        "offset": ["new 1", "new 2", *LINES],
        "fuzz": _edit(LINES, 6, "line 7 moved on"),  # outermost context line differs
        "fails": _edit(LINES, 8, "line 9 moved on"),  # innermost context line differs
    }
    for expected, content in variants.items():
        (pristine / kconfig).write_text("\n".join(content) + "\n")
        with hardlinked_copy(pristine, pristine.parent, runner) as tree:
            outcome = apply_patch(tree, patch, runner)
        assert outcome.status == expected, outcome
        assert outcome.ok == (expected == "offset")
    (pristine / kconfig).write_text("\n".join(variants["offset"]) + "\n")
    with hardlinked_copy(pristine, pristine.parent, runner) as tree:
        (hunk,) = apply_patch(tree, patch, runner).hunks
    assert hunk == Hunk(kconfig, 1, "offset", 9, 2, 0)


def test_series_stops_at_the_first_failure_unless_keep_going(
    tmp_path: Path, pristine: Path
) -> None:
    runner = SubprocessRunner()
    broken = _edit(LINES, 0, "not what the file says")
    series = [
        Patch(_diff(tmp_path, "README", broken, _edit(broken, 1, "b"), "bad.patch"), 1, 1),
        Patch(_diff(tmp_path, "README", LINES, _edit(LINES, 15, "y"), "good.patch"), 1, 2),
    ]
    with hardlinked_copy(pristine, pristine.parent, runner) as tree:
        stopped = apply_series(tree, series, runner, NullProgress(), keep_going=False)
    with hardlinked_copy(pristine, pristine.parent, runner) as tree:
        all_of_it = apply_series(tree, series, runner, NullProgress(), keep_going=True)
    assert [o.status for o in stopped] == ["fails"]
    assert stopped[0].details() == ["README: hunk #1 FAILED at 1"]
    assert [o.status for o in all_of_it] == ["fails", "clean"]


def test_missing_file_is_reported(tmp_path: Path, pristine: Path) -> None:
    runner = SubprocessRunner()
    patch = Patch(_diff(tmp_path, "gone/x.c", LINES, _edit(LINES, 3, "z"), "gone.patch"), 1, 1)
    with hardlinked_copy(pristine, pristine.parent, runner) as tree:
        outcome = apply_patch(tree, patch, runner)
    assert outcome.status == "fails"
    assert outcome.details() == ["gone/x.c: no such file in the tree"]
