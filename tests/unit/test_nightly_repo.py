"""The nightly dnf repository (kxen.nightly.repo) on tiny noarch RPMs: what publish writes
and refuses, that a failed update leaves the metadata a reader had, and what prune keeps.

The metadata is read back with createrepo_c's own reader; tests/integration/
test_nightly_dnf.py installs from the repository with dnf.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import createrepo_c as cr  # type: ignore[import-untyped]
import pytest
from kxen.errors import InputError, UnsafePathError
from kxen.nightly import repo
from kxen.nightly.model import Cell, Rpm, Run, Status, Step

from ..rpmroots import rpmbuild

TINY_SPEC = """
Name: %{pkgname}
Version: 1
Release: 1
Summary: A package for the repository tests
License: MIT
BuildArch: noarch

%description
%{text}

%files
"""


@dataclasses.dataclass(frozen=True)
class Rpms:
    alpha: Path
    beta: Path
    gamma: Path
    alpha_rebuilt: Path
    """alpha's file name, other bytes."""


def _tiny(work: Path, name: str, text: str) -> Path:
    spec = work / f"{name}-{len(text)}.spec"
    spec.write_text(TINY_SPEC)
    (built,) = rpmbuild(spec, work / spec.stem, ("pkgname", name), ("text", text))
    return built


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> Rpms:
    work = tmp_path_factory.mktemp("tiny-rpms")
    alpha, beta, gamma = (_tiny(work, name, "first build") for name in ("alpha", "beta", "gamma"))
    made = Rpms(alpha, beta, gamma, _tiny(work, "alpha", "second build, same NVR"))
    assert made.alpha.name == made.alpha_rebuilt.name == "alpha-1-1.noarch.rpm"
    assert made.alpha.read_bytes() != made.alpha_rebuilt.read_bytes()
    return made


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "nightly" / repo.REPO_DIR


def listed(repo_dir: Path) -> list[str]:
    """The packages the repository's metadata lists, as dnf would find them."""
    metadata = cr.Metadata()
    metadata.locate_and_load_xml(str(repo_dir))
    keys = metadata.keys()  # a Metadata is not iterable
    return sorted(metadata.get(key).location_href for key in keys)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def metadata_files(repo_dir: Path) -> set[str]:
    return {p.name for p in (repo_dir / repo.REPODATA_DIR).iterdir()} - {repo.REPOMD}


# --- publish ------------------------------------------------------------------------------


def test_publish_writes_metadata_naming_every_package(repo_dir: Path, rpms: Rpms) -> None:
    repo.publish(repo_dir, [rpms.alpha, rpms.beta])
    assert listed(repo_dir) == ["Packages/alpha-1-1.noarch.rpm", "Packages/beta-1-1.noarch.rpm"]
    repomd = cr.Repomd(str(repo_dir / "repodata" / "repomd.xml"))
    assert sorted(r.type for r in repomd.records) == ["filelists", "other", "primary"]
    for record in repomd.records:
        assert (repo_dir / record.location_href).is_file()
    # same file system: a hard link to the run's package, not a second copy
    assert os.path.samefile(repo_dir / "Packages" / rpms.alpha.name, rpms.alpha)
    assert not [p for p in repo_dir.iterdir() if p.name.startswith(".")]


def test_publishing_the_same_packages_again_changes_nothing(repo_dir: Path, rpms: Rpms) -> None:
    repo.publish(repo_dir, [rpms.alpha, rpms.beta])
    before = snapshot(repo_dir)
    copy = repo_dir.parent / "elsewhere" / rpms.alpha.name
    copy.parent.mkdir()
    shutil.copy(rpms.alpha, copy)  # same name, same bytes, another file
    repo.publish(repo_dir, [copy, rpms.beta])
    repo.publish(repo_dir, [])
    assert snapshot(repo_dir) == before


def test_publish_adds_and_keeps_the_previous_metadata_a_while(repo_dir: Path, rpms: Rpms) -> None:
    repo.publish(repo_dir, [rpms.alpha])
    first = metadata_files(repo_dir)
    repo.publish(repo_dir, [rpms.beta])
    second = metadata_files(repo_dir) - first
    assert listed(repo_dir) == ["Packages/alpha-1-1.noarch.rpm", "Packages/beta-1-1.noarch.rpm"]
    # a dnf that read the first repomd.xml just before the swap still finds its files
    assert metadata_files(repo_dir) == first | second
    repo.publish(repo_dir, [rpms.gamma])
    assert first.isdisjoint(metadata_files(repo_dir))
    assert second < metadata_files(repo_dir)


def test_an_empty_publish_makes_an_empty_valid_repository(repo_dir: Path) -> None:
    repo.publish(repo_dir, [])
    assert listed(repo_dir) == []
    assert (repo_dir / "Packages").is_dir()


def test_same_name_other_bytes_is_refused_and_nothing_changes(repo_dir: Path, rpms: Rpms) -> None:
    repo.publish(repo_dir, [rpms.alpha])
    before = snapshot(repo_dir)
    with pytest.raises(repo.RepoError, match="already published with other bytes") as caught:
        repo.publish(repo_dir, [rpms.beta, rpms.alpha_rebuilt])
    assert caught.value.exit_code == 8
    assert snapshot(repo_dir) == before
    # and within one call: the same name twice with other bytes
    with pytest.raises(repo.RepoError, match="other bytes"):
        repo.publish(repo_dir.parent / "fresh", [rpms.alpha, rpms.alpha_rebuilt])


def test_a_package_that_cannot_be_read_leaves_the_old_metadata(
    repo_dir: Path, rpms: Rpms, tmp_path: Path
) -> None:
    repo.publish(repo_dir, [rpms.alpha])
    before = snapshot(repo_dir)
    broken = tmp_path / "broken-1-1.noarch.rpm"
    broken.write_bytes(b"not an rpm" * 100)
    with pytest.raises(repo.RepoError, match="not a readable RPM"):
        repo.publish(repo_dir, [rpms.beta, broken])
    assert snapshot(repo_dir) == before
    assert listed(repo_dir) == ["Packages/alpha-1-1.noarch.rpm"]


def test_a_damaged_published_package_stops_the_update_midway(repo_dir: Path, rpms: Rpms) -> None:
    """createrepo fails on a package already in the repository, after it read others:
    the staged metadata is dropped and repomd.xml still names the old, complete set."""
    repo.publish(repo_dir, [rpms.alpha])
    (repo_dir / "Packages" / "zz-damaged-1-1.noarch.rpm").write_bytes(b"\0" * 4096)
    before = snapshot(repo_dir)
    with pytest.raises(repo.RepoError, match="zz-damaged"):
        repo.publish(repo_dir, [rpms.beta])
    assert snapshot(repo_dir) == before
    assert listed(repo_dir) == ["Packages/alpha-1-1.noarch.rpm"]


def test_a_failed_swap_takes_the_new_packages_back(
    repo_dir: Path, rpms: Rpms, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.publish(repo_dir, [rpms.alpha])
    before = snapshot(repo_dir)

    def disk_full(*_: object) -> None:
        raise repo.RepoError("no space left")

    monkeypatch.setattr(repo, "_swap_repodata", disk_full)
    with pytest.raises(repo.RepoError, match="no space left"):
        repo.publish(repo_dir, [rpms.beta])
    assert snapshot(repo_dir) == before


@pytest.mark.parametrize("kind", ["source rpm", "symlink", "directory"])
def test_publish_takes_binary_rpm_files_only(
    repo_dir: Path, rpms: Rpms, tmp_path: Path, kind: str
) -> None:
    if kind == "source rpm":
        given = tmp_path / "alpha-1-1.src.rpm"
        shutil.copy(rpms.alpha, given)
    elif kind == "symlink":
        given = tmp_path / rpms.alpha.name
        given.symlink_to(rpms.alpha)
    else:
        given = tmp_path / "dir-1-1.noarch.rpm"
        given.mkdir()
    with pytest.raises(repo.RepoError):
        repo.publish(repo_dir, [given])
    assert not (repo_dir / "repodata").exists()


def test_publish_never_writes_through_a_linked_packages_dir(
    repo_dir: Path, rpms: Rpms, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo_dir.mkdir(parents=True)
    (repo_dir / "Packages").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        repo.publish(repo_dir, [rpms.alpha])
    assert list(elsewhere.iterdir()) == []


# --- prune --------------------------------------------------------------------------------


def cell(status: Status, *packages: Path) -> Cell:
    return Cell(
        arch="noarch",
        flavour="smoke",
        steps=[Step("build", status)],
        nvr="tiny-1-1",
        rpms=[Rpm(p.name, p.stat().st_size) for p in packages],
    )


def make_run(nightly_dir: Path, number: int, *cells: Cell) -> Run:
    """A completed run with its directory (and a file in it)."""
    run = Run(id=f"2026112{number}T020000Z-{number:012x}", started="", cells=list(cells))
    (nightly_dir / run.id / "build").mkdir(parents=True)
    (nightly_dir / run.id / "run.json").write_text("{}")
    return run


def test_prune_keeps_the_newest_and_the_newest_good_run(tmp_path: Path, rpms: Rpms) -> None:
    nightly = tmp_path / "nightly"
    oldest = make_run(nightly, 1, cell(Status.PASS, rpms.alpha))
    good = make_run(nightly, 2, cell(Status.PASS, rpms.beta))
    failed = make_run(nightly, 3, cell(Status.FAIL))
    newest = make_run(nightly, 4, cell(Status.PASS, rpms.gamma), cell(Status.ERROR))
    repo_dir = nightly / repo.REPO_DIR
    repo.publish(repo_dir, [rpms.alpha, rpms.beta, rpms.gamma])
    runs = [newest, failed, good, oldest]

    assert repo.prune(nightly, runs, keep=5) == []
    assert len(listed(repo_dir)) == 3
    # `newest` failed one cell: the newest run that passed everything is `good`
    assert repo.prune(nightly, runs, keep=2) == [oldest.id]
    assert sorted(p.name for p in nightly.iterdir() if not p.name.startswith(".")) == sorted(
        [newest.id, failed.id, good.id, repo.REPO_DIR]
    )
    assert listed(repo_dir) == ["Packages/beta-1-1.noarch.rpm", "Packages/gamma-1-1.noarch.rpm"]
    assert sorted(p.name for p in (repo_dir / "Packages").iterdir()) == [
        rpms.beta.name,
        rpms.gamma.name,
    ]
    assert rpms.alpha.is_file()  # the build result it was linked from is not touched

    assert repo.prune(nightly, [newest, failed, good], keep=0) == [newest.id, failed.id]
    assert listed(repo_dir) == ["Packages/beta-1-1.noarch.rpm"]


def test_only_passed_cells_keep_a_package(tmp_path: Path, rpms: Rpms) -> None:
    """A kept run whose cell failed names its RPMs (they were built) but never published
    them: they do not keep another run's package of the same name."""
    nightly = tmp_path / "nightly"
    old = make_run(nightly, 1, cell(Status.PASS, rpms.alpha))
    good = make_run(nightly, 2, cell(Status.PASS, rpms.gamma))
    new = make_run(nightly, 3, cell(Status.FAIL, rpms.alpha), cell(Status.PASS, rpms.beta))
    repo.publish(nightly / repo.REPO_DIR, [rpms.alpha, rpms.beta, rpms.gamma])
    assert repo.prune(nightly, [new, good, old], keep=1) == [old.id]
    assert listed(nightly / repo.REPO_DIR) == [
        "Packages/beta-1-1.noarch.rpm",
        "Packages/gamma-1-1.noarch.rpm",
    ]


def test_prune_without_a_repository_or_a_run_directory(tmp_path: Path, rpms: Rpms) -> None:
    nightly = tmp_path / "nightly"
    kept = make_run(nightly, 2, cell(Status.PASS, rpms.beta))
    gone = Run(id="20261121T020000Z-000000000001", started="")  # its directory is gone already
    assert repo.prune(nightly, [kept, gone], keep=1) == [gone.id]
    assert not (nightly / repo.REPO_DIR).exists()
    assert (nightly / kept.id / "run.json").is_file()


@pytest.mark.parametrize(
    "run_id", ["..", ".", "", "a/b", "../outside", "/etc", ".nightly.lock", "repo", "x\0y"]
)
def test_prune_refuses_a_run_id_that_is_not_a_directory_name(
    tmp_path: Path, rpms: Rpms, run_id: str
) -> None:
    nightly = tmp_path / "nightly"
    kept = make_run(nightly, 2, cell(Status.PASS, rpms.beta))
    older = make_run(nightly, 1, cell(Status.PASS, rpms.alpha))
    repo.publish(nightly / repo.REPO_DIR, [rpms.alpha, rpms.beta])
    (tmp_path / "outside").mkdir()
    before = snapshot(tmp_path)
    hostile = Run(id=run_id, started="")
    with pytest.raises(UnsafePathError, match="nothing pruned"):
        repo.prune(nightly, [kept, older, hostile], keep=1)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_prune_never_deletes_through_a_link(tmp_path: Path, kind: str) -> None:
    nightly = tmp_path / "nightly"
    nightly.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    entry = nightly / "20261120T020000Z-000000000000"
    if kind == "symlink":
        entry.symlink_to(precious)
    else:
        entry.write_text("history, say")
    with pytest.raises(UnsafePathError, match="never deletes through"):
        repo.prune(nightly, [Run(id=entry.name, started="")], keep=0)
    assert (precious / "data").read_text() == "keep me"
    assert entry.is_symlink() or entry.is_file()


def test_prune_refuses_a_negative_keep(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="keep"):
        repo.prune(tmp_path, [], keep=-1)
