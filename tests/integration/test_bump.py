"""`kxen bump`: manifest, sources and changelog move to another upstream version."""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path

import pytest
import yaml

from .conftest import run_kxen

MIRROR_LINE = "    - https://cdn.kernel.org/pub/linux/kernel/\n"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A file:// mirror laid out like kernel.org (small stand-ins: bump only hashes them)."""
    root = tmp_path / "mirror"
    (root / "v6.x").mkdir(parents=True)
    (root / "v6.x" / "testing").mkdir()
    for name in (
        "patch-6.1.5.xz",
        "linux-6.0.tar.xz",
        "linux-6.1.tar.xz",
        "testing/patch-6.1-rc7.xz",
    ):
        (root / "v6.x" / name).write_bytes(lzma.compress(f"stand-in for {name}\n".encode()))
    return root


@pytest.fixture
def repo(checkout: Path, mirror: Path) -> Path:
    manifest = checkout / "kernel-xen.yaml"
    text = manifest.read_text()
    assert MIRROR_LINE in text
    manifest.write_text(text.replace(MIRROR_LINE, f"    - file://{mirror}/\n"))
    return checkout


def snapshot(repo: Path) -> dict[str, bytes]:
    return {name: (repo / name).read_bytes() for name in ("kernel-xen.yaml", "sources")}


def test_bump_to_a_stable_update(repo: Path, mirror: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = (repo / "kernel-xen.yaml").read_text()
    run = run_kxen(
        "bump", "--to", "6.1.5", "-m", "Update to 6.1.5", "--author", "R E <re@example.org>",
        "--json", repo=repo, cache=cache,
    )  # fmt: skip
    data = json.loads(run.stdout)
    assert (data["from"], data["to"]) == ("6.1.0-1", "6.1.5-1")
    text = (repo / "kernel-xen.yaml").read_text()
    # a round trip: every comment of the hand-written manifest is still there
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [
        line for line in text.splitlines() if line.lstrip().startswith("#")
    ]
    loaded = yaml.safe_load(text)
    assert loaded["upstream"]["version"] == "6.1" and loaded["upstream"]["stable"] == 5
    assert loaded["release"] == 1
    newest = loaded["changelog"][0]
    assert newest["author"] == "R E <re@example.org>"
    assert newest["changes"] == ["Update to 6.1.5"]
    digest = hashlib.sha512((mirror / "v6.x" / "patch-6.1.5.xz").read_bytes()).hexdigest()
    lines = (repo / "sources").read_text().splitlines()
    assert lines[0].startswith("SHA256 (linux-6.1.tar.xz) = ")  # the tarball entry is kept
    assert lines[1] == f"SHA512 (patch-6.1.5.xz) = {digest}"
    diff = "\n".join(data["spec_diff"])
    assert "-Version: 6.1.0" in diff and "+Version: 6.1.5" in diff
    assert "+Source1: file://" in diff and "patch-6.1.5.xz" in diff
    # The same version again is a rebuild: the release goes up.
    again = run_kxen("bump", "--to", "6.1.5", "--json", repo=repo, cache=cache)
    assert json.loads(again.stdout)["to"] == "6.1.5-2"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--to", "6.0"), 2, "does not sort above the current 6.1.0-1"),
        (("--to", "6.1-rc7"), 2, "does not sort above"),
        (("--to", "6.1", "--release", "1"), 2, "does not sort above"),
        (("--to", "6.1.x"), 2, "--to: invalid kernel version"),
        (("--to", "6.1.6"), 3, "patch-6.1.6.xz: could not download from any mirror"),
    ],
)
def test_refusals_change_nothing(
    repo: Path, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    before = snapshot(repo)
    run = run_kxen("bump", *args, repo=repo, cache=tmp_path / "cache", check=False)
    assert run.returncode == code, run.stderr
    assert message in run.stderr
    assert snapshot(repo) == before


def test_forced_downgrade_and_rc_to_final_order(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_kxen("bump", "--to", "6.1-rc7", "--force", repo=repo, cache=cache)
    loaded = yaml.safe_load((repo / "kernel-xen.yaml").read_text())
    assert loaded["upstream"] == {
        "version": "6.1",
        "rc": 7,
        "mirrors": loaded["upstream"]["mirrors"],
    }
    # rc -> final is an upgrade in rpm's order: 6.1.0-0.1.rc7 < 6.1.0-1
    sources = (repo / "sources").read_text()
    assert "(linux-6.0.tar.xz)" in sources and "(patch-6.1-rc7.xz)" in sources
    assert "(linux-6.1.tar.xz)" not in sources
    final = run_kxen("bump", "--to", "6.1", "--json", repo=repo, cache=cache)
    assert json.loads(final.stdout)["to"] == "6.1.0-1"
    assert "(linux-6.0.tar.xz)" not in (repo / "sources").read_text()
