"""kxen.snapshot on tiny real git repositories: versions from tags, reproducible tarballs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from kxen.errors import InputError
from kxen.support.runner import SubprocessRunner
from kxen.upstream import snapshot

from ..support import git

MAKEFILE = "VERSION = {v}\nPATCHLEVEL = {p}\nSUBLEVEL = {s}\nEXTRAVERSION = {e}\nNAME = Test\n"


def commit(repo: Path, message: str, **files: str) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """v6.2-rc3 plus two commits."""
    path = tmp_path / "linux"
    path.mkdir()
    git(path, "init", "-q")
    commit(path, "Linux 6.2-rc3", Makefile=MAKEFILE.format(v=6, p=2, s=0, e="-rc3"))
    git(path, "tag", "-a", "v6.2-rc3", "-m", "Linux 6.2-rc3")
    commit(path, "xen: a fix", **{"xen.c": "int x;\n"})
    commit(path, "another one")
    return path


def test_commits_after_an_rc_tag_are_a_git_snapshot(repo: Path, tmp_path: Path) -> None:
    made = snapshot.make(repo, "HEAD", tmp_path / "cache", SubprocessRunner())
    assert str(made.version) == "6.2-rc3-git2"
    assert made.version.rpm_release(1) == "0.1.rc3.git2"
    assert made.commit == git(repo, "rev-parse", "HEAD")
    assert made.describe.startswith("v6.2-rc3-2-g")
    assert made.tarball.name == "linux-6.2-rc3-git2.tar.zst"
    assert str(made.committed) == "2026-01-15"
    listing = subprocess.run(
        ["tar", "--zstd", "-tf", str(made.tarball)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "linux-6.2-rc3-git2/Makefile" in listing and "linux-6.2-rc3-git2/xen.c" in listing


def test_the_tag_itself_is_the_release(repo: Path, tmp_path: Path) -> None:
    made = snapshot.make(repo, "v6.2-rc3", tmp_path / "cache", SubprocessRunner())
    assert str(made.version) == "6.2-rc3"


def test_same_commit_gives_the_same_bytes(repo: Path, tmp_path: Path) -> None:
    first = snapshot.make(repo, "HEAD", tmp_path / "one", SubprocessRunner())
    second = snapshot.make(repo, "HEAD", tmp_path / "two", SubprocessRunner())
    assert first.tarball != second.tarball
    digests = {hashlib.sha512(p.read_bytes()).hexdigest() for p in (first.tarball, second.tarball)}
    assert len(digests) == 1


def test_snapshot_after_a_release_leads_to_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "linux"
    path.mkdir()
    git(path, "init", "-q")
    commit(path, "Linux 6.1", Makefile=MAKEFILE.format(v=6, p=1, s=0, e=""))
    git(path, "tag", "v6.1")
    commit(path, "merge window")
    made = snapshot.make(path, "HEAD", tmp_path / "cache", SubprocessRunner())
    assert str(made.version) == "6.1-git1"
    assert made.version.kernelversion == "6.2.0"


def test_a_stable_branch_snapshot_sorts_between_its_update_and_the_next(tmp_path: Path) -> None:
    """linux-6.1.y five commits past v6.1.192, as LKFT and KernelCI test stable-rc."""
    import rpm

    path = tmp_path / "linux"
    path.mkdir()
    git(path, "init", "-q")
    commit(path, "Linux 6.1.192", Makefile=MAKEFILE.format(v=6, p=1, s=192, e=""))
    git(path, "tag", "v6.1.192")
    for number in range(5):
        commit(path, f"backport {number}")
    made = snapshot.make(path, "HEAD", tmp_path / "cache", SubprocessRunner())
    assert str(made.version) == "6.1.192-git5"
    assert made.version.kernelversion == "6.1.192"
    evr = ("0", made.version.rpm_version, made.version.rpm_release(1))
    assert evr == ("0", "6.1.192", "1.git5")
    update = ("0", "6.1.192", "1")
    next_update = ("0", "6.1.193", "1")
    later_snapshot = ("0", "6.1.192", "1.git10")
    assert rpm.labelCompare(update, evr) == -1
    assert rpm.labelCompare(evr, later_snapshot) == -1
    assert rpm.labelCompare(later_snapshot, next_update) == -1


@pytest.mark.parametrize(
    ("setup", "ref", "message"),
    [
        ("none", "no-such-branch", "not a commit"),
        ("untagged", "HEAD", r"no v\* tag is reachable"),
        ("wrong-makefile", "HEAD", "the Makefile says 6.1 but the tags say 6.2-rc1"),
    ],
)
def test_refusals(tmp_path: Path, setup: str, ref: str, message: str) -> None:
    path = tmp_path / "linux"
    path.mkdir()
    git(path, "init", "-q")
    commit(path, "base", Makefile=MAKEFILE.format(v=6, p=1, s=0, e=""))
    if setup == "wrong-makefile":
        git(path, "tag", "v6.2-rc1")
    with pytest.raises(InputError, match=message):
        snapshot.make(path, ref, tmp_path / "cache", SubprocessRunner())
    assert not (tmp_path / "cache" / "snapshots").exists() or not any(
        (tmp_path / "cache" / "snapshots").glob("*/*.tar.zst")
    )
