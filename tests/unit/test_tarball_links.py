"""archive.check_members resolves links through the whole archive (reliability row 5)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from kxen.errors import InputError
from kxen.upstream import archive

TOP = "linux-6.1.5"


def _write(path: Path, members: list[tuple[str, bytes, str]]) -> Path:
    """Members in this order, no implicit directories: (name, type, link target)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, kind, link in members:
            info = tarfile.TarInfo(f"{TOP}/{name}" if name else TOP)
            info.type = kind
            info.linkname = f"{TOP}/{link}" if kind == tarfile.LNKTYPE else link
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            archive.addfile(info, io.BytesIO(b""))
    return path


D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
BASE = [("", D, ""), ("Makefile", F, ""), ("sub", D, ""), ("sub/file", F, "")]

ACCEPTED = {
    "chain inside": [("a", L, "b"), ("b", L, "sub/file")],
    "through the extraction dir and back": [("x", L, f"../{TOP}/sub")],
    "dangling inside": [("d", L, "missing/file")],
    "the top itself": [("sub/top", L, "..")],
    "hard link to an earlier file": [("h", H, "sub/file")],
    "a link used before it is defined": [("a", L, "b/file"), ("b", L, "sub")],
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_links_that_stay_inside_are_accepted(tmp_path, case):
    archive.check_members(_write(tmp_path / "t.tar", [*BASE, *ACCEPTED[case]]), TOP)


REFUSED = {
    "a/.. after a link to the top": (
        [("a", L, f"../{TOP}"), ("b", L, "a/..")],
        "member 'linux-6.1.5/b' is a symlink to 'a/..', which resolves outside linux-6.1.5/",
    ),
    "redirected by a later link": (
        [("use", L, "via/.."), ("via", L, ".")],
        "member 'linux-6.1.5/use' is a symlink to 'via/..', which resolves outside",
    ),
    "absolute at the end of a chain": (
        [("a", L, "b/passwd"), ("b", L, "/etc")],
        "member 'linux-6.1.5/a' is a symlink to 'b/passwd', which resolves outside",
    ),
    "loop": (
        [("a", L, "b"), ("b", L, "a")],
        "member 'linux-6.1.5/a' is a symlink to 'b', which goes round a loop of symlinks",
    ),
    "written through a link": (
        [("lnk", L, "sub"), ("lnk/evil", F, "")],
        "member 'linux-6.1.5/lnk/evil' lies under the symlink 'linux-6.1.5/lnk'",
    ),
    "a directory later replaced by a link": (
        [("d", D, ""), ("d/f", F, ""), ("d", L, "sub")],
        "member 'linux-6.1.5/d' appears twice, once as a symlink",
    ),
    "hard link to a symlink": (
        [("a", D, ""), ("a/b", D, ""), ("a/b/l", L, "../../x"), ("h", H, "a/b/l")],
        "member 'linux-6.1.5/h' is a hard link to 'linux-6.1.5/a/b/l', not an earlier file",
    ),
    "hard link to a later file": (
        [("h", H, "late"), ("late", F, "")],
        "member 'linux-6.1.5/h' is a hard link to 'linux-6.1.5/late', not an earlier file",
    ),
    "fifo": ([("fifo", tarfile.FIFOTYPE, "")], "is a device node or other special file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_links_that_leave_the_tree_are_refused_naming_archive_and_member(tmp_path, case):
    members, message = REFUSED[case]
    tarball = _write(tmp_path / "t.tar", [*BASE, *members])
    with pytest.raises(InputError) as info:
        archive.check_members(tarball, TOP)
    assert info.value.message.startswith(f"{tarball}: member ")
    assert message in info.value.message
    assert info.value.exit_code == 2
