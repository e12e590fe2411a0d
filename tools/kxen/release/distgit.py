"""A dist-git checkout that takes kxen's export as one commit, or not at all.

Fedora's kernel is released from dist-git: the spec, the configs and the patches in git,
the upstream tarball in the lookaside cache, named by the `sources` file
(`SHA512 (file) = <hex>`, rpkg's format, one hash type per file) and ignored by git
through `.gitignore`. kxen renders the same into a checkout of such a repository.

The checkout is never half-written. kxen refuses one with uncommitted changes, stages
every file in a scratch directory inside its git directory, and builds the commit with
git's plumbing in an index of its own (`hash-object --no-filters`, `update-index`,
`write-tree`, `commit-tree`): until the commit exists, nothing in the work tree, the index
or a ref has changed. Then `read-tree -m -u` moves the clean work tree to the commit (git
checks every path before it writes one, and replaces a tracked symlink instead of writing
through it) and `update-ref` moves the branch, only if it still points where it did.
Nothing is read from the work tree: what the previous export left (`.gitignore`, the
record of exported files) is read from HEAD's blobs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import DistGitError
from kxen.patches.series import safe_name
from kxen.support import fsutil
from kxen.support.runner import Completed, Runner
from kxen.upstream.sources import SourceEntry

SOURCES = "sources"
GITIGNORE = ".gitignore"
RECORD = ".kxen-export"
"""The files the last export wrote, one a line: the next export removes those it no longer
writes (an old config, a dropped patch) and leaves every other file of the checkout alone."""
RESERVED = (SOURCES, GITIGNORE, RECORD)
REGULAR_FILE = "100644"
LOOKASIDE_HASH = "SHA512"
"""rpkg refuses a `sources` file that mixes hash types: every line is SHA512."""
_RECORD_HEADER = "# files written by kxen dist-git; the next export replaces them"


@dataclass(frozen=True)
class Blob:
    """A file to commit: `path` (written or checked by kxen) under the name `name`."""

    name: str
    path: Path


@dataclass(frozen=True)
class LookasideFile:
    """An upstream file: in the lookaside cache, named in `sources`, ignored by git."""

    name: str
    path: Path
    sha512: str

    @property
    def entry(self) -> SourceEntry:
        return SourceEntry(LOOKASIDE_HASH, self.name, self.sha512)


@dataclass(frozen=True)
class Committed:
    commit: str | None
    """None: HEAD already held exactly this export, nothing was committed."""
    removed: tuple[str, ...]


class Checkout:
    """The top of a git work tree with no uncommitted change (checked when opened)."""

    def __init__(self, root: Path, runner: Runner) -> None:
        self.root = root
        self.runner = runner
        self.git_dir = self._check_top()
        self._check_clean()

    def git(self, *args: str, index: Path | None = None) -> Completed:
        """`git -C <checkout> ARGS`; with `index`, on that index instead of the checkout's."""
        env = {"GIT_INDEX_FILE": str(index)} if index is not None else None
        argv = ["git", "-C", str(self.root), *args]
        result = self.runner.run(argv, check=False, env=env, separate_stderr=True)
        if not result.ok:
            said = (result.stderr or result.output).strip().splitlines()
            raise DistGitError(f"{self.root}: git {args[0]} failed", details=said[-5:])
        return result

    def _check_top(self) -> Path:
        if self.root.is_symlink() or not self.root.is_dir():
            raise DistGitError(
                f"{self.root}: not a directory, or a symbolic link to one (give the "
                "dist-git checkout's own path)"
            )
        found = self.runner.run(
            ["git", "-C", str(self.root), "rev-parse", "--show-toplevel", "--absolute-git-dir"],
            check=False,
            separate_stderr=True,
        )
        lines = found.output.splitlines()
        if not found.ok or len(lines) != 2 or Path(lines[0]) != self.root.resolve():
            raise DistGitError(f"{self.root}: not the top of a git work tree (git clone it first)")
        return Path(lines[1])

    def _check_clean(self) -> None:
        status = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        changed = [entry[3:] for entry in status.output.split("\0") if entry]
        if changed:
            raise DistGitError(
                f"{self.root}: {len(changed)} uncommitted change(s), e.g. {changed[0]!r}: "
                "commit or stash them; kxen exports only into a clean checkout"
            )

    @contextmanager
    def locked_scratch(self) -> Iterator[Path]:
        """A scratch directory in the git directory (the work tree's file system, never
        in the work tree), while holding the checkout's export lock."""
        lock = self.git_dir / "kxen-dist-git.lock"
        with (
            fsutil.exclusive_lock(lock, f"dist-git checkout {self.root}"),
            fsutil.scratch_dir(self.git_dir, "kxen-dist-git-") as scratch,
        ):
            yield scratch

    def head(self) -> str | None:
        found = self.runner.run(
            ["git", "-C", str(self.root), "rev-parse", "--verify", "-q", "HEAD^{commit}"],
            check=False,
        )
        return found.output.strip() if found.ok else None

    def committed_text(self, head: str | None, name: str) -> str | None:
        """A regular file of HEAD as text (None if absent, a symlink or not UTF-8)."""
        if head is None:
            return None
        listed = self.git("ls-tree", "-z", head, "--", name).output.rstrip("\0")
        if not listed.startswith(f"{REGULAR_FILE} blob "):
            return None
        blob = listed.split()[2]
        data = self.runner.run(["git", "-C", str(self.root), "cat-file", "blob", blob], check=False)
        return data.output if data.ok else None

    def commit(self, blobs: list[Blob], message: str, scratch: Path) -> Committed:
        """Commit exactly `blobs` (plus what is left of the checkout's own files) and move
        the work tree and the branch to it; files the previous export wrote and this one
        does not are removed."""
        head = self.head()
        previous = parse_record(self.committed_text(head, RECORD))
        removed = tuple(sorted(set(previous) - {blob.name for blob in blobs}))
        index = scratch / "index"
        base = head or self._empty_tree()
        self.git("read-tree", base, index=index)
        if removed:
            self.git("update-index", "--force-remove", "--", *removed, index=index)
        shas = self.git("hash-object", "-w", "--no-filters", "--", *(str(b.path) for b in blobs))
        entries = [
            arg
            for blob, sha in zip(blobs, shas.output.split(), strict=True)
            for arg in ("--cacheinfo", f"{REGULAR_FILE},{sha},{blob.name}")
        ]
        self.git("update-index", "--add", *entries, index=index)
        tree = self.git("write-tree", index=index).output.strip()
        if head is not None and tree == self.git("rev-parse", f"{head}^{{tree}}").output.strip():
            return Committed(None, ())
        parents = ["-p", head] if head else []
        commit = self.git("commit-tree", tree, *parents, "-m", message).output.strip()
        self._move_to(base, head, commit)
        return Committed(commit, removed)

    def _empty_tree(self) -> str:
        return self.git("hash-object", "-t", "tree", "-w", "/dev/null").output.strip()

    def _move_to(self, base: str, head: str | None, commit: str) -> None:
        """Work tree and index to `commit` (git checks every path first), then the branch,
        only if it still points at `head`; if it moved meanwhile, the work tree goes back."""
        self.git("read-tree", "-m", "-u", base, commit)
        try:
            self.git("update-ref", "-m", "kxen dist-git", "HEAD", commit, head or "")
        except DistGitError:
            self.git("read-tree", "-m", "-u", commit, base)
            raise


def check_names(blobs: Iterable[Blob], lookaside: Iterable[LookasideFile]) -> None:
    """Plain, distinct names that are not the dist-git's own files: a name with `/` or
    `..` would land outside the checkout, a second file of one name replace the first."""
    seen: set[str] = set()
    for name in [*(b.name for b in blobs), *(f.name for f in lookaside)]:
        if not safe_name(name) or name in RESERVED:
            raise DistGitError(f"refusing to export a file named {name!r} (not a plain name)")
        if name in seen:
            raise DistGitError(f"two exported files would be named {name}")
        seen.add(name)


def sources_text(files: Iterable[LookasideFile]) -> str:
    return "".join(f"{item.entry.line()}\n" for item in files)


def gitignore_text(previous: str | None, files: Iterable[LookasideFile]) -> str:
    """The previous `.gitignore` with a `/<file>` line added for each lookaside file it
    lacks (fedpkg's way: older tarballs stay ignored)."""
    lines = (previous or "").splitlines()
    lines += [f"/{item.name}" for item in files if f"/{item.name}" not in lines]
    return "".join(f"{line}\n" for line in lines)


def record_text(names: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in [_RECORD_HEADER, *sorted(names)])


def parse_record(text: str | None) -> list[str]:
    """The names a previous export recorded; anything but a plain name is ignored (the
    record comes from the checkout, which anyone may have edited)."""
    lines = (text or "").splitlines()
    return [line for line in lines if safe_name(line) and line not in RESERVED]


def commit_message(nvr: str, kxen_commit: str, upstream: str) -> str:
    return (
        f"{nvr}\n\n"
        f"Exported by kxen dist-git from kernel-xen commit {kxen_commit}.\n"
        f"NVR: {nvr}\n"
        f"Upstream: {upstream}\n"
    )


_SHA = re.compile(r"[0-9a-f]{40,64}")


def source_commit(repo: Path, runner: Runner) -> str:
    """The commit of the packaging checkout an export comes from (`-dirty` when it has
    uncommitted changes to tracked files), or why there is none."""
    head = runner.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False)
    sha = head.output.strip()
    if not head.ok or not _SHA.fullmatch(sha):
        return "(none: not a git checkout)"
    status = runner.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], check=False
    )
    return f"{sha}-dirty" if status.output.strip() else sha
