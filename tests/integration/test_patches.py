"""`kxen patches` on the real 6.1 tree: real `diff -u` patches, check, refresh, and %prep."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from .conftest import extract_file, run_kxen, smoke_srpm

pytestmark = pytest.mark.slow
PATCH_EXIT = 11


@dataclass(frozen=True)
class Edit:
    """Replace one exact line of a file of the tree."""

    relpath: str
    old: str
    new: str

    def apply(self, text: str) -> str:
        lines = text.split("\n")
        assert lines.count(self.old) == 1, f"{self.relpath}: {self.old!r}"
        return "\n".join(self.new if line == self.old else line for line in lines)


BALLOON = "\t  The balloon driver allows the Xen domain to request more memory from"
GK = " *  GK 2/5/95  -  Changed to support mounting root fs via NFS"
XEN_PORT = "\t  This is the Linux Xen port.  Enabling this will allow the"
GUIDES = "There are several guides for kernel developers and users. These guides can"
EDITS = {
    "0001-xen-balloon-help.patch": Edit(
        "drivers/xen/Kconfig", BALLOON, BALLOON + " (kxen-test: xen patch)"
    ),
    "0002-init-comment.patch": Edit("init/main.c", GK, GK + " (kxen-test: init patch)"),
    "0003-x86-xen-help.patch": Edit("arch/x86/xen/Kconfig", XEN_PORT, XEN_PORT + " (kxen-test)"),
    "0004-readme.patch": Edit("README", GUIDES, GUIDES + " (kxen-test)"),
}
XEN, INIT, X86_XEN, README = EDITS


@pytest.fixture(scope="module")
def tree(linux_tarball: Path, kxen_cache: Path) -> Path:
    up = origin.from_tarball(linux_tarball, kxen_cache)
    return upstream_tree.prepared_tree(up, kxen_cache, SubprocessRunner())


@pytest.fixture(scope="module")
def made(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each edit as a real `diff -u a/FILE b/FILE` against the real tree."""
    out = tmp_path_factory.mktemp("made-patches")
    return {name: _diff(tree, edit, out, name) for name, edit in EDITS.items()}


def _diff(tree: Path, edit: Edit, out: Path, name: str) -> Path:
    work = out / f"work-{name}"
    original = (tree / edit.relpath).read_text()
    for side, text in (("a", original), ("b", edit.apply(original))):
        (work / side / edit.relpath).parent.mkdir(parents=True)
        (work / side / edit.relpath).write_text(text)
    diff = subprocess.run(
        ["diff", "-u", f"a/{edit.relpath}", f"b/{edit.relpath}"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert diff.returncode == 1, diff.stderr
    (out / name).write_text(diff.stdout)
    return out / name


def _add(checkout: Path, cache: Path, *paths: Path) -> None:
    for path in paths:
        run_kxen("patches", "add", path, repo=checkout, cache=cache)


def _fingerprint(tree: Path) -> dict[str, tuple[str, int, int]]:
    """Content digest, inode and link count of every file the patches touch."""
    found = {}
    for edit in EDITS.values():
        path = tree / edit.relpath
        info = path.stat()
        found[edit.relpath] = (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            info.st_ino,
            info.st_nlink,
        )
    return found


def _assert_pristine(tree: Path, before: dict[str, tuple[str, int, int]]) -> None:
    assert _fingerprint(tree) == before
    assert {nlink for _, _, nlink in before.values()} == {1}


def _error_line(stderr: str) -> str:
    """The one-line error (stderr also carries the progress lines of a non-terminal)."""
    return next(line for line in stderr.splitlines() if line.startswith("kxen: error: "))


def _no_scratch_left(cache: Path) -> None:
    assert [p.name for p in (cache / "trees").iterdir() if p.name.startswith(".")] == []


def test_list_shows_the_series_with_files_and_hunks(
    checkout: Path, kxen_cache: Path, made: dict[str, Path]
) -> None:
    _add(checkout, kxen_cache, made[XEN], made[INIT])
    listed = json.loads(
        run_kxen("patches", "list", "--json", repo=checkout, cache=kxen_cache).stdout
    )
    assert [(p["name"], p["strip"]) for p in listed["patches"]] == [(XEN, 1), (INIT, 1)]
    assert listed["patches"][0]["files"] == [
        {"path": "drivers/xen/Kconfig", "change": "modify", "hunks": 1, "old_path": None}
    ]
    human = run_kxen("patches", "list", repo=checkout, cache=kxen_cache).stdout
    assert f"{INIT} -p1\n  M init/main.c (1 hunk(s))" in human


def test_check_applies_two_real_patches_and_leaves_the_pristine_tree_alone(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, tree: Path, made: dict[str, Path]
) -> None:
    _add(checkout, kxen_cache, made[XEN], made[INIT])
    before = _fingerprint(tree)
    run = run_kxen(
        "patches", "check", "--upstream", linux_tarball, "--json", repo=checkout, cache=kxen_cache
    )
    report = json.loads(run.stdout)["report"]
    assert [(o["patch"], o["status"]) for o in report["outcomes"]] == [
        (XEN, "clean"),
        (INIT, "clean"),
    ]
    assert report["total"] == 2
    assert (
        "apply"
        in run_kxen(
            "patches", "check", "--upstream", linux_tarball, repo=checkout, cache=kxen_cache
        ).stdout
    )
    _assert_pristine(tree, before)
    assert "kxen-test" not in (tree / "drivers/xen/Kconfig").read_text()
    _no_scratch_left(kxen_cache)


def test_wrong_context_fails_naming_patch_file_and_hunk(
    checkout: Path,
    kxen_cache: Path,
    linux_tarball: Path,
    tree: Path,
    made: dict[str, Path],
    tmp_path: Path,
) -> None:
    wrong = tmp_path / "0003-wrong-context.patch"
    text = made[X86_XEN].read_text()
    context = "\t  kernel to boot in a paravirtualized environment under the"
    assert f"\n {context}\n" in text
    wrong.write_text(text.replace(f"\n {context}\n", "\n \t  kernel to boot somewhere else\n"))
    _add(checkout, kxen_cache, made[XEN], made[INIT], wrong)
    series = (checkout / "patches" / "series").read_bytes()
    before = _fingerprint(tree)
    run = run_kxen(
        "patches",
        "check",
        "--upstream",
        linux_tarball,
        "--json",
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == PATCH_EXIT, run.stderr
    first = _error_line(run.stderr)
    assert first.startswith(f"kxen: error: {wrong.name}: does not apply: ")
    assert "arch/x86/xen/Kconfig: hunk #1 FAILED at" in first
    assert "patch 3 of 3" in first
    payload = json.loads(run.stdout)
    assert payload["ok"] is False and payload["exit_code"] == PATCH_EXIT
    outcomes = payload["report"]["outcomes"]
    assert [o["status"] for o in outcomes] == ["clean", "clean", "fails"]
    assert outcomes[2]["hunks"][0]["file"] == "arch/x86/xen/Kconfig"
    assert (checkout / "patches" / "series").read_bytes() == series
    _assert_pristine(tree, before)
    _no_scratch_left(kxen_cache)


@pytest.fixture(scope="module")
def bumped_tarball(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "new upstream": the tree with three files changed, as an uncompressed tarball.

    drivers/xen/Kconfig gains lines above the hunk (offset), init/main.c changes the
    hunk's outermost context line (fuzz 1), arch/x86/xen/Kconfig the line the patch
    removes (fails); README stays (clean)."""
    work = tmp_path_factory.mktemp("bumped")
    copy = work / tree.name
    subprocess.run(["cp", "-al", tree, copy], check=True)
    menu = 'menu "Xen driver support"'
    simplified = " *  Simplified starting of init:  Michael A. Griffith <grif@acm.org>"
    changes = [
        Edit("drivers/xen/Kconfig", menu, f"# a\n# b\n# c\n{menu}"),
        Edit("init/main.c", simplified, " *  Simplified starting of init (bumped)"),
        Edit("arch/x86/xen/Kconfig", XEN_PORT, "\t  This is the Xen port, reworded upstream."),
    ]
    for edit in changes:
        path = copy / edit.relpath
        text = edit.apply(path.read_text())
        path.unlink()  # never write through the hard link into the cached tree
        path.write_text(text)
    tarball = work / "linux-bumped.tar"
    subprocess.run(["tar", "-cf", tarball, "-C", work, tree.name], check=True)
    shutil.rmtree(copy)
    return tarball


def test_refresh_reports_offset_fuzz_failure_and_clean(
    checkout: Path,
    kxen_cache: Path,
    tree: Path,
    made: dict[str, Path],
    bumped_tarball: Path,
) -> None:
    _add(checkout, kxen_cache, *(made[name] for name in EDITS))
    series = (checkout / "patches" / "series").read_bytes()
    run = run_kxen(
        "patches",
        "refresh",
        "--upstream",
        bumped_tarball,
        "--json",
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == PATCH_EXIT, run.stderr
    outcomes = {o["patch"]: o for o in json.loads(run.stdout)["report"]["outcomes"]}
    assert {name: o["status"] for name, o in outcomes.items()} == {
        XEN: "offset",
        INIT: "fuzz",
        X86_XEN: "fails",
        README: "clean",
    }
    (offset,) = outcomes[XEN]["hunks"]
    assert (offset["file"], offset["result"], offset["offset"]) == (
        "drivers/xen/Kconfig",
        "offset",
        3,
    )
    (fuzz,) = outcomes[INIT]["hunks"]
    assert (fuzz["file"], fuzz["result"], fuzz["fuzz"]) == ("init/main.c", "fuzz", 1)
    (failed,) = outcomes[X86_XEN]["hunks"]
    assert (failed["file"], failed["number"], failed["result"]) == (
        "arch/x86/xen/Kconfig",
        1,
        "failed",
    )
    assert "2 of 4 patch(es) fail or need fuzz" in _error_line(run.stderr)
    assert f"{INIT}: needs fuzz: fails in %prep (--fuzz=0)" in run.stderr
    assert (checkout / "patches" / "series").read_bytes() == series
    _no_scratch_left(kxen_cache)


def test_refresh_against_an_unchanged_tree_succeeds(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, made: dict[str, Path]
) -> None:
    _add(checkout, kxen_cache, made[XEN], made[INIT])
    run = run_kxen(
        "patches", "refresh", "--upstream", linux_tarball, repo=checkout, cache=kxen_cache
    )
    assert f"{XEN}: applies cleanly" in run.stdout


def test_smoke_srpm_carries_both_patches_and_prep_applies_them(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    _add(checkout, kxen_cache, made[XEN], made[INIT])
    srpm = smoke_srpm(tmp_path / "out", linux_tarball, kxen_cache, repo=checkout)
    spec = extract_file(srpm, "kernel-xen.spec", tmp_path / "spec")
    parsed = subprocess.run(
        ["rpmspec", "-P", "--define", "_sourcedir /nonexistent", str(spec)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Patch0001: {XEN}" in parsed and f"Patch0002: {INIT}" in parsed
    first, second = f"Patch #1 ({XEN})", f"Patch #2 ({INIT})"
    assert first in parsed and second in parsed
    assert parsed.index(first) < parsed.index(second)
    assert parsed.count("--fuzz=0") >= 2

    top = tmp_path / "top"
    define = ["--define", f"_topdir {top}"]
    subprocess.run(["rpm", "-i", *define, str(srpm)], check=True, capture_output=True)
    prep = subprocess.run(
        ["rpmbuild", "-bp", "--nodeps", *define, str(top / "SPECS" / "kernel-xen.spec")],
        capture_output=True,
        text=True,
    )
    try:
        assert prep.returncode == 0, prep.stderr[-3000:]
        (built,) = (top / "BUILD").iterdir()
        assert "(kxen-test: xen patch)" in (built / "drivers/xen/Kconfig").read_text()
        assert "(kxen-test: init patch)" in (built / "init/main.c").read_text()
    finally:
        shutil.rmtree(top, ignore_errors=True)
