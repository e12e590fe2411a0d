"""Nightly snapshots: an upstream tarball made from a kernel git checkout.

`git archive` of a commit is reproducible (every member gets the commit time, the
pax header holds the commit id), and zstd's multi-threaded mode gives the same
bytes whatever the thread count, so the same commit always yields the same
tarball, cached under its commit id. The version comes from the newest `v*` tag
the commit descends from: `v6.2-rc3` plus 45 commits is the snapshot `6.2-rc3-git45`
(rpm Release `0.<n>.rc3.git45`), cross-checked with the commit's Makefile.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import InputError
from kxen.support import integrity
from kxen.support.fsutil import exclusive_lock, scratch_dir
from kxen.support.runner import Runner
from kxen.versions import UpstreamVersion, from_makefile

_DESCRIBE_RE = re.compile(r"^v(?P<tag>[0-9][0-9.]*(?:-rc[0-9]+)?)-(?P<count>[0-9]+)-g[0-9a-f]+$")
_DIGEST = "sha512"
"""What the spec records of an upstream tarball: the seal gives it without hashing again."""
ARCHIVE_COMPRESSOR = "zstd -T0 -3 -q -c"
"""Multi-threaded zstd: fast, and its output does not depend on the number of threads."""


@dataclass(frozen=True)
class Snapshot:
    repo: Path
    commit: str
    describe: str
    """`git describe` of the commit (`v6.2-rc3-45-g1234abcd5678`)."""
    version: UpstreamVersion
    tarball: Path
    committed: datetime.date
    """The commit date (UTC): the date of the changelog entry that records it."""
    tarball_sha512: str
    """Recorded when the tarball was made and checked on every use."""

    @property
    def topdir(self) -> str:
        return f"linux-{self.version}"


def is_checkout(path: Path) -> bool:
    return path.is_dir() and (path / ".git").exists()


def make(
    repo: Path,
    ref: str,
    cache_root: Path,
    runner: Runner,
    quarantine: integrity.Quarantine | None = None,
) -> Snapshot:
    """Resolve `ref`, derive its version and return its (cached) reproducible tarball.

    A cached tarball that no longer matches the SHA512 recorded when it was made is set
    aside and made again (the same commit gives the same bytes)."""
    repo = repo.resolve()
    commit = resolve_commit(repo, ref, runner)
    describe = _git(
        runner, repo, "describe", "--tags", "--long", "--abbrev=12", "--match", "v[0-9]*", commit
    )
    if describe is None:
        raise InputError(f"{repo}: no v* tag is reachable from {ref}: cannot derive the version")
    version = _version(describe, ref)
    _check_makefile(runner, repo, commit, version, ref)
    quarantine = quarantine or integrity.Quarantine.in_cache(cache_root)
    tarball, digest = _archive(repo, commit, version, cache_root, runner, quarantine)
    stamp = _git(runner, repo, "show", "-s", "--format=%ct", commit) or "0"
    committed = datetime.datetime.fromtimestamp(int(stamp), datetime.UTC).date()
    return Snapshot(repo, commit, describe, version, tarball, committed, digest)


def resolve_commit(repo: Path, ref: str, runner: Runner) -> str:
    """The full hash of the commit `ref` names in `repo` (one quick git call)."""
    commit = _git(runner, repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit is None:
        raise InputError(f"--ref {ref}: not a commit in {repo}")
    return commit


def _version(describe: str, ref: str) -> UpstreamVersion:
    match = _DESCRIBE_RE.match(describe)
    if not match:
        raise InputError(f"--ref {ref}: tag of {describe!r} is not a kernel release tag")
    tagged = UpstreamVersion.parse(match["tag"])
    count = int(match["count"])
    if not count:
        return tagged
    return UpstreamVersion(tagged.base, stable=tagged.stable, rc=tagged.rc, git=count)


def _check_makefile(
    runner: Runner, repo: Path, commit: str, version: UpstreamVersion, ref: str
) -> None:
    """The commit's Makefile must agree with its tag (a -gitN snapshot before rc1 still
    names the previous release, which the spec then advances)."""
    text = _git(runner, repo, "show", f"{commit}:Makefile")
    if text is None:
        raise InputError(f"--ref {ref}: no top-level Makefile: not a kernel tree")
    try:
        found = from_makefile(text)
    except ValueError as exc:
        raise InputError(f"--ref {ref}: {exc}") from None
    expected = UpstreamVersion(version.base, version.stable, version.rc)
    if str(found) != str(expected):
        raise InputError(
            f"--ref {ref}: the Makefile says {found} but the tags say {version}; "
            "tag the release commits (v6.2-rc3, ...) as kernel.org does"
        )


def _archive(
    repo: Path,
    commit: str,
    version: UpstreamVersion,
    cache_root: Path,
    runner: Runner,
    quarantine: integrity.Quarantine,
) -> tuple[Path, str]:
    """The snapshot tarball of `commit` and its SHA512, made once and checked on each use."""
    directory = cache_root / "snapshots" / commit
    tarball = directory / f"linux-{version}.tar.zst"
    with exclusive_lock(cache_root / "snapshots" / f"{commit}.lock", "snapshot", wait=True):
        try:
            digest = integrity.check_sealed(tarball, _DIGEST)
        except integrity.Corrupt as corrupt:
            parts = integrity.sealed_parts(tarball, _DIGEST)
            quarantine.set_aside(parts, corrupt, "snapshot tarball", "making it again")
            digest = None
        if digest is not None:
            return tarball, digest
        with scratch_dir(cache_root / "snapshots", ".archive-") as scratch:
            partial = scratch / tarball.name
            runner.run(
                [
                    "git",
                    "-C",
                    repo,
                    "-c",
                    f"tar.tar.zst.command={ARCHIVE_COMPRESSOR}",
                    "archive",
                    "--format=tar.zst",
                    f"--prefix=linux-{version}/",
                    "-o",
                    partial,
                    commit,
                ]
            )
            digest = integrity.digest_of(partial, _DIGEST)
            integrity.seal_as(tarball, digest, _DIGEST)
            partial.replace(tarball)
    return tarball, digest


def _git(runner: Runner, repo: Path, *args: str) -> str | None:
    result = runner.run(["git", "-C", repo, *args], check=False)
    return result.output.strip() if result.ok else None
