"""Nightly builds from a kernel git checkout: `--upstream CHECKOUT --ref REF`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from ..support import git
from .conftest import extract_file, rpm_header, run_kxen

pytestmark = pytest.mark.slow


def tree_repo(
    linux_tarball: Path, cache: Path, repo: Path, tag: str, *makefile: tuple[str, str]
) -> Path:
    """The cached 6.1 tree, hard-linked to `repo` (its Makefile changed as asked), committed
    and tagged `tag` as kernel.org tags a release."""
    prepared = upstream_tree.prepared_tree(
        origin.from_tarball(linux_tarball, cache), cache, SubprocessRunner()
    )
    subprocess.run(["cp", "-al", str(prepared), str(repo)], check=True)
    if makefile:
        rewrite(repo / "Makefile", *makefile)
    release = f"Linux {tag.removeprefix('v')}"
    git(repo, "init", "-q")
    # a test's scratch repository: zlib on 1.3 GB of objects was half of a 46 s `git add`
    git(repo, "config", "core.looseCompression", "0")
    git(repo, "add", "-A", "-f")  # Debian's tree ignores everything in its .gitignore
    git(repo, "commit", "-q", "-m", release)
    git(repo, "tag", "-a", tag, "-m", release)
    return repo


@pytest.fixture(scope="module")
def kernel_git(
    linux_tarball: Path, kxen_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The 6.1 tree committed as "v6.2-rc3", then two commits (one touching Xen code)."""
    repo = tree_repo(
        linux_tarball,
        kxen_cache,
        tmp_path_factory.mktemp("git") / "linux",
        "v6.2-rc3",
        ("PATCHLEVEL = 1\n", "PATCHLEVEL = 2\n"),
        ("SUBLEVEL = 192\n", "SUBLEVEL = 0\n"),
        ("EXTRAVERSION =\n", "EXTRAVERSION = -rc3\n"),
    )
    rewrite(repo / "drivers/xen/Kconfig", ('menu "Xen driver support"\n', 'menu "Xen drivers"\n'))
    git(repo, "commit", "-q", "-am", "xen: shorter menu title")
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    return repo


def rewrite(path: Path, *changes: tuple[str, str]) -> None:
    """Change a file of a hard-linked tree copy without writing the shared inode."""
    text = path.read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.unlink()
    path.write_text(text)


def test_snapshot_srpm_records_the_commit(
    kernel_git: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    head = git(kernel_git, "rev-parse", "HEAD")
    run = run_kxen(
        "srpm", "--flavour", "smoke", "--upstream", kernel_git, "--ref", "HEAD",
        "-o", tmp_path, "--json", cache=kxen_cache,
    )  # fmt: skip
    data = json.loads(run.stdout)
    assert data["nvr"] == "kernel-xen-6.2.0-0.1.rc3.git2.smoke"
    assert data["upstream"]["git"]["commit"] == head
    assert data["upstream"]["git"]["describe"].startswith("v6.2-rc3-2-g")
    srpm = Path(data["srpm"])
    header = rpm_header(srpm)
    changelog = header["changelogtext"][0]
    assert f"Snapshot of upstream git commit {head} (v6.2-rc3-2-g" in changelog
    spec = extract_file(srpm, "kernel-xen.spec", tmp_path / "payload").read_text()
    assert f"# Git snapshot: commit {head} (v6.2-rc3-2-g" in spec
    assert "Source0: linux-6.2-rc3-git2.tar.zst" in spec
    tarball = extract_file(srpm, "linux-6.2-rc3-git2.tar.zst", tmp_path / "payload")
    xen_kconfig = subprocess.run(
        ["tar", "--zstd", "-xOf", str(tarball), "linux-6.2-rc3-git2/drivers/xen/Kconfig"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert 'menu "Xen drivers"' in xen_kconfig
    # The same ref again: the same tarball, hence the same SRPM bytes.
    again = run_kxen(
        "srpm", "--flavour", "smoke", "--upstream", kernel_git, "--ref", "HEAD",
        "-o", tmp_path / "again", "--json", cache=kxen_cache,
    )  # fmt: skip
    assert Path(json.loads(again.stdout)["srpm"]).read_bytes() == srpm.read_bytes()


def test_a_tag_builds_the_tagged_release(kernel_git: Path, kxen_cache: Path) -> None:
    run = run_kxen(
        "verrel", "--upstream", kernel_git, "--ref", "v6.2-rc3", "--json", cache=kxen_cache
    )
    assert json.loads(run.stdout)["nvr"] == "kernel-xen-6.2.0-0.1.rc3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ref", "HEAD"), "--ref needs --upstream CHECKOUT"),
        (("--upstream", "/usr/src/linux-source-6.1.tar.xz", "--ref", "HEAD"), "is a file"),
        (("--upstream", "/usr/src"), "must be a kernel git checkout"),
    ],
)
def test_ref_refusals(kxen_cache: Path, args: tuple[str, ...], message: str) -> None:
    run = run_kxen("verrel", *args, cache=kxen_cache, check=False)
    assert run.returncode == 2
    assert message in run.stderr
