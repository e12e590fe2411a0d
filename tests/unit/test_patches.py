from __future__ import annotations

from pathlib import Path

import pytest
from kxen.errors import InputError
from kxen.patches import SERIES_NAME, Patch, load_series


def _patches(tmp_path: Path, series: str | None, files: list[str]) -> Path:
    directory = tmp_path / "patches"
    directory.mkdir()
    if series is not None:
        (directory / SERIES_NAME).write_text(series)
    for name in files:
        (directory / name).write_text(f"--- a/{name}\n")
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
