"""Helpers shared by the unit and integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What `kxen boot-test` reports of a good boot under Xen, in order.
XEN_BOOT_STAGES = [
    "Xen started",
    "dom0 kernel started",
    "dom0 toolstack started",
    "guest created",
    "guest kernel started",
    "guest init ran",
]
CHECKOUT_ITEMS = (
    "kernel-xen.yaml",
    "kernel-xen.rpmlintrc",
    "sources",
    "specs",
    "configs",
    "patches",
    "keys",
)


def make_checkout(target: Path) -> Path:
    """A scratch copy of the repository's packaging files (tests never write the repo)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT_ITEMS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_AUTHOR_DATE": "2026-01-15T12:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-15T12:00:00Z",
}
"""Who commits in the tests' git repositories, and when."""


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@functools.cache
def shared_dir() -> Path:
    """The steering repository's read-only `shared/` (third-party sources the tests run):
    `$KXEN_SHARED_DIR`, else beside the checkout (where CI lays it), else beside the
    repository this checkout was cloned from (a clean clone made elsewhere, e.g. /tmp)."""
    chosen = os.environ.get("KXEN_SHARED_DIR")
    candidates = (
        lambda: Path(chosen) if chosen else None,
        lambda: REPO.parent / "shared",
        lambda: _origin_parent() / "shared",
    )
    for candidate in candidates:
        found = candidate()
        if found is not None and (found / "third_party").is_dir():
            return found
    raise AssertionError("no shared/third_party beside the checkout (set KXEN_SHARED_DIR)")


def _origin_parent() -> Path:
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    local = Path(origin.removeprefix("file://"))
    return local.parent if local.is_absolute() else REPO.parent
