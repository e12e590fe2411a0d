from __future__ import annotations

import re
from pathlib import Path

import pytest
from kxen.errors import InputError
from kxen.patches.series import (
    SERIES_NAME,
    FileChange,
    Patch,
    add_patch,
    file_changes,
    insert_entry,
    load_series,
    parse_diff,
    strip_path,
)


def _patches(tmp_path: Path, series: str | None, files: list[str]) -> Path:
    directory = tmp_path / "patches"
    directory.mkdir()
    if series is not None:
        (directory / SERIES_NAME).write_text(series)
    for name in files:  # a real diff: the series loader checks what each patch touches
        (directory / name).write_text(f"--- a/x/{name}\n+++ b/x/{name}\n@@ -1 +1 @@\n-a\n+b\n")
    return directory


def test_series_with_comments_blank_lines_and_strip_levels(tmp_path):
    directory = _patches(
        tmp_path,
        "# downstream patches\n"
        "\n"
        "0001-first.patch\n"
        "   # indented comment\n"
        "0002-second.patch -p0   # trailing comment\n"
        "0003-third.patch\t-p2\n",
        ["0001-first.patch", "0002-second.patch", "0003-third.patch"],
    )
    assert load_series(directory) == [
        Patch(directory / "0001-first.patch", 1, 3),
        Patch(directory / "0002-second.patch", 0, 5),
        Patch(directory / "0003-third.patch", 2, 6),
    ]


def test_shipped_series_loads(repo):
    patches = load_series(repo / "patches")
    assert all(p.path.is_file() for p in patches)


def test_empty_series_and_missing_directory(tmp_path):
    assert load_series(_patches(tmp_path, "# nothing yet\n", [])) == []
    assert load_series(tmp_path / "absent") == []


def test_patch_name_property(tmp_path):
    directory = _patches(tmp_path, "a.patch\n", ["a.patch"])
    assert [p.name for p in load_series(directory)] == ["a.patch"]


def _refusal(directory: Path) -> str:
    with pytest.raises(InputError) as info:
        load_series(directory)
    return info.value.message


def test_unlisted_file_is_refused(tmp_path):
    directory = _patches(tmp_path, "a.patch\n", ["a.patch", "b.patch", "c.patch"])
    message = _refusal(directory)
    assert message.startswith(f"{directory / SERIES_NAME}: ")
    assert "b.patch, c.patch" in message
    assert "not listed" in message


def test_listed_missing_file_is_refused(tmp_path):
    directory = _patches(tmp_path, "a.patch\nmissing.patch\n", ["a.patch"])
    message = _refusal(directory)
    assert message.startswith(f"{directory / SERIES_NAME}:2: ")
    assert "missing.patch" in message


@pytest.mark.parametrize(
    "name", ["sub/a.patch", "../a.patch", "a..patch", ".hidden.patch", "-p1", "/etc/passwd"]
)
def test_unsafe_names_are_refused(tmp_path, name):
    directory = _patches(tmp_path, f"a.patch\n{name}\n", ["a.patch"])
    message = _refusal(directory)
    assert message == f"{directory / SERIES_NAME}:2: unsafe patch name {name!r}"


def test_duplicates_are_refused(tmp_path):
    directory = _patches(tmp_path, "a.patch\nb.patch\na.patch -p0\n", ["a.patch", "b.patch"])
    message = _refusal(directory)
    assert message == f"{directory / SERIES_NAME}:3: a.patch is already listed on line 1"


@pytest.mark.parametrize("option", ["-R", "-p", "-p10", "--fuzz=3", "p1", "-p1x"])
def test_unknown_options_are_refused(tmp_path, option):
    directory = _patches(tmp_path, f"a.patch {option}\n", ["a.patch"])
    message = _refusal(directory)
    assert message.startswith(f"{directory / SERIES_NAME}:1: unknown option {option!r}")


def test_patch_files_without_a_series_are_refused(tmp_path):
    directory = _patches(tmp_path, None, ["a.patch"])
    with pytest.raises(InputError):
        load_series(directory)


# --- what a patch touches ------------------------------------------------------

UNIFIED = """\
--- linux-6.1.orig/drivers/xen/Kconfig\t2024-01-01 12:00:00.000000000 +0100
+++ linux-6.1/drivers/xen/Kconfig\t2024-01-02 12:00:00.000000000 +0100
@@ -1,3 +1,3 @@
 menu "Xen driver support"
-config XEN_BALLOON
+config XEN_BALLOON_X
 \tbool
@@ -10 +10,2 @@
 context
+added
"""


def test_unified_diff_with_timestamps_and_two_hunks() -> None:
    assert parse_diff(UNIFIED, 1, "x.patch") == [FileChange("drivers/xen/Kconfig", "modify", 2)]


def test_strip_levels_are_honoured() -> None:
    assert parse_diff(UNIFIED, 0, "x.patch")[0] == FileChange(
        "linux-6.1/drivers/xen/Kconfig", "modify", 2, "linux-6.1.orig/drivers/xen/Kconfig"
    )
    assert parse_diff(UNIFIED, 2, "x.patch")[0].path == "xen/Kconfig"


@pytest.mark.parametrize(
    ("name", "strip", "expected"),
    [
        ("a/b/c", 1, "b/c"),
        ("a//b/./c", 1, "b/c"),
        ("/abs/x", 1, "abs/x"),
        ("x", 0, "x"),
        ("/dev/null", 1, None),
    ],
)
def test_strip_path(name: str, strip: int, expected: str | None) -> None:
    assert strip_path(name, strip, "w") == expected


@pytest.mark.parametrize(
    ("name", "strip", "reason"),
    [
        ("a/../../etc/passwd", 1, "unsafe file name"),
        ("/etc/passwd", 0, "unsafe file name"),
        ("x", 1, "fewer than 2 components"),
    ],
)
def test_strip_path_refusals(name: str, strip: int, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        strip_path(name, strip, "w.patch:3")


def test_created_and_deleted_files_use_dev_null() -> None:
    text = (
        "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        "--- a/old.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
    )
    assert parse_diff(text, 1, "p") == [
        FileChange("new.c", "create", 1),
        FileChange("old.c", "delete", 1),
    ]


def test_git_diff_with_rename_mode_change_and_new_empty_file() -> None:
    text = """\
From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] several things

---
 a | 2 +-

diff --git a/drivers/xen/events.c b/drivers/xen/events.c
index 111..222 100644
--- a/drivers/xen/events.c
+++ b/drivers/xen/events.c
@@ -5,2 +5,2 @@ static int x;
 a
--- removed line that looks like a header
+++ added line that looks like a header
diff --git a/old name.c b/new name.c
similarity index 100%
rename from old name.c
rename to new name.c
diff --git a/scripts/tool b/scripts/tool
old mode 100644
new mode 100755
diff --git "a/caf\\303\\251.txt" "b/caf\\303\\251.txt"
new file mode 100644
index 0000000..e69de29
-- \n2.39.2
"""
    assert parse_diff(text, 1, "p") == [
        FileChange("drivers/xen/events.c", "modify", 1),
        FileChange("new name.c", "rename", 0, "old name.c"),
        FileChange("scripts/tool", "mode", 0),
        FileChange("café.txt", "create", 0),
    ]


def test_git_rename_with_hunks_names_both_files() -> None:
    text = (
        "diff --git a/x.c b/y.c\nsimilarity index 90%\nrename from x.c\nrename to y.c\n"
        "--- a/x.c\n+++ b/y.c\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n"
    )
    (change,) = parse_diff(text, 1, "p")
    assert change == FileChange("y.c", "rename", 1, "x.c")
    assert change.paths == ("x.c", "y.c")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n", "cut short"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n", None),
        ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n?b\n", "not a hunk line"),
        ("--- /dev/null\n+++ /dev/null\n", "both names"),
    ],
)
def test_malformed_diffs_are_refused_with_the_line(text: str, reason: str | None) -> None:
    if reason is None:  # the extra "+c" is simply not part of the hunk
        assert parse_diff(text, 1, "p")[0].hunks == 1
        return
    with pytest.raises(InputError, match=reason) as info:
        parse_diff(text, 1, "bad.patch")
    assert info.value.message.startswith("bad.patch:")


def test_compressed_patches_are_read_like_rpm_does(tmp_path: Path) -> None:
    import lzma

    path = tmp_path / "x.patch.xz"
    path.write_bytes(lzma.compress(UNIFIED.encode()))
    assert file_changes(path, 1) == [FileChange("drivers/xen/Kconfig", "modify", 2)]
    (tmp_path / "bad.patch.xz").write_bytes(b"not xz")
    with pytest.raises(InputError, match=re.escape("bad.patch.xz: not a valid .xz file")):
        file_changes(tmp_path / "bad.patch.xz", 1)


# --- editing the series ----------------------------------------------------------

SERIES = "# downstream\n\n0001-a.patch\n# about b\n0002-b.patch -p0\n"


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (None, SERIES + "new.patch\n"),
        (3, "# downstream\n\n0001-a.patch\nnew.patch\n# about b\n0002-b.patch -p0\n"),
        (0, "new.patch\n" + SERIES),
    ],
)
def test_insert_entry_keeps_comments_and_blank_lines(after: int | None, expected: str) -> None:
    assert insert_entry(SERIES, "new.patch", after) == expected


def test_insert_entry_without_final_newline_and_into_nothing() -> None:
    assert insert_entry("a.patch", "b.patch -p2", None) == "a.patch\nb.patch -p2\n"
    assert insert_entry("", "b.patch", None) == "b.patch\n"


def _new_patch(tmp_path: Path, name: str = "0003-new.patch", text: str = UNIFIED) -> Path:
    source = tmp_path / "incoming" / name
    source.parent.mkdir(exist_ok=True)
    source.write_text(text)
    return source


def _series_dir(tmp_path: Path) -> Path:
    return _patches(tmp_path, SERIES, ["0001-a.patch", "0002-b.patch"])


def test_add_after_a_patch_copies_and_lists_it(tmp_path: Path) -> None:
    directory = _series_dir(tmp_path)
    added = add_patch(directory, _new_patch(tmp_path), "0001-a.patch")
    assert added.patch == Patch(directory / "0003-new.patch", 1, 4)
    assert added.changes == [FileChange("drivers/xen/Kconfig", "modify", 2)]
    assert (directory / "0003-new.patch").read_text() == UNIFIED
    assert (directory / SERIES_NAME).read_text() == (
        "# downstream\n\n0001-a.patch\n0003-new.patch\n# about b\n0002-b.patch -p0\n"
    )
    assert [p.name for p in load_series(directory)] == [
        "0001-a.patch",
        "0003-new.patch",
        "0002-b.patch",
    ]


def test_add_defaults_to_the_end_with_its_strip_level(tmp_path: Path) -> None:
    directory = _series_dir(tmp_path)
    added = add_patch(directory, _new_patch(tmp_path), None, strip=2)
    assert added.patch.line == 6
    assert (directory / SERIES_NAME).read_text() == SERIES + "0003-new.patch -p2\n"
    assert load_series(directory)[-1] == Patch(directory / "0003-new.patch", 2, 6)


def test_add_a_file_already_in_patches_dir(tmp_path: Path) -> None:
    directory = _series_dir(tmp_path)
    (directory / "0003-new.patch").write_text(UNIFIED)
    add_patch(directory, directory / "0003-new.patch", None)
    assert load_series(directory)[-1].name == "0003-new.patch"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    ("name", "text", "after", "reason"),
    [
        ("my fix.patch", UNIFIED, None, "unsafe patch name 'my fix.patch'"),
        ("a..patch", UNIFIED, None, "unsafe patch name 'a..patch'"),
        ("series", UNIFIED, None, "unsafe patch name 'series'"),
        ("0001-a.patch", UNIFIED, None, "0001-a.patch is already in"),
        ("empty.patch", "just some text\n--- a/x\n+++ b/x\n", None, "no hunks"),
        ("0003-new.patch", UNIFIED, "missing.patch", "--after: 'missing.patch' is not"),
        ("0003-new.patch", UNIFIED, "sub/0001-a.patch", "--after: 'sub/0001-a.patch'"),
    ],
)
def test_add_refusals_change_nothing(
    tmp_path: Path, name: str, text: str, after: str | None, reason: str
) -> None:
    directory = _series_dir(tmp_path)
    before = _snapshot(directory)
    source = _new_patch(tmp_path, name, text)
    with pytest.raises(InputError, match=re.escape(reason)) as info:
        add_patch(directory, source, after)
    assert "\n" not in info.value.message
    assert _snapshot(directory) == before


def test_add_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        add_patch(_series_dir(tmp_path), tmp_path / "absent.patch", None)


def test_add_removes_the_copy_when_the_series_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kxen.errors import PublishError
    from kxen.patches import series as patches

    directory = _series_dir(tmp_path)
    before = _snapshot(directory)

    def fail(path: Path, text: str) -> None:
        raise PublishError(f"{path}: could not write: disk full")

    monkeypatch.setattr(patches, "atomic_write_text", fail)
    with pytest.raises(PublishError):
        add_patch(directory, _new_patch(tmp_path), None)
    assert _snapshot(directory) == before
