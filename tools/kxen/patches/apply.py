"""Apply the series to a throwaway copy of the pristine tree, as %prep would.

The copy is a hard-linked `cp -al` of the cached tree: cheap, but every file in
it shares its inode with the pristine one. Before `patch` runs, each file the
patch will touch gets an inode of its own, so nothing written into the copy
can reach the cache, whatever `patch` itself does. The files come from two
sources: the patch's own headers, and `patch --dry-run`'s list (which also
covers anything the header reader does not understand).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kxen.errors import InputError, PatchError
from kxen.patches.series import Patch, file_changes, patch_bytes, strip_path
from kxen.support.fsutil import scratch_dir
from kxen.support.progress import Progress
from kxen.support.runner import Runner

PREP_FUZZ = 0
"""rpm's %patch runs `patch --fuzz=0` (%_default_patch_fuzz): %prep's strictness."""
LENIENT_FUZZ = 2
"""GNU patch's own default: how much fuzz a patch that fails under %prep would need."""
# Exactly the options %patch adds (rpm 4.18: --no-backup-if-mismatch -f); rejects discarded.
_PATCH_ARGS = ("--no-backup-if-mismatch", "-f", "--reject-file=-", "--quoting-style=literal")
_C_LOCALE = {"LC_ALL": "C", "LANGUAGE": ""}

_FILE_RE = re.compile(r"^(?:patching|checking) file (.+?)(?: \((?:renamed|copied) from (.+)\))?$")
_SUCCEEDED_RE = re.compile(
    r"^Hunk #(\d+) succeeded at (\d+)(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?\.$"
)
_FAILED_RE = re.compile(r"^Hunk #(\d+) FAILED at (\d+)")
_FATAL_RE = re.compile(r"^patch: \*\*\*\* (.+)$")


@dataclass(frozen=True)
class Hunk:
    """A hunk that did not apply exactly where its header says."""

    file: str
    number: int | None
    """None: the file itself is missing from the tree."""
    result: str
    """offset, fuzz, failed or missing."""
    line: int | None = None
    offset: int = 0
    fuzz: int = 0

    def describe(self) -> str:
        if self.result == "missing":
            return f"{self.file}: no such file in the tree"
        where = f"{self.file}: hunk #{self.number}"
        if self.result == "failed":
            return f"{where} FAILED at {self.line}"
        shift = f" (offset {self.offset} lines)" if self.offset else ""
        fuzz = f" with fuzz {self.fuzz}" if self.fuzz else ""
        return f"{where} applies at {self.line}{fuzz}{shift}"


@dataclass(frozen=True)
class Outcome:
    """How one patch applied: clean, offset, fuzz (fails under --fuzz=0) or fails."""

    patch: str
    line: int
    status: str
    hunks: list[Hunk] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """What `patch` said besides hunk results (malformed input, refused files)."""

    @property
    def ok(self) -> bool:
        return self.status in ("clean", "offset")

    def describe(self) -> str:
        head = {
            "clean": "applies cleanly",
            "offset": "applies with offsets",
            "fuzz": "needs fuzz: fails in %prep (--fuzz=0)",
            "fails": "does not apply",
        }[self.status]
        return f"{self.patch}: {head}"

    def details(self) -> list[str]:
        return [hunk.describe() for hunk in self.hunks] + self.errors

    def culprit(self) -> str:
        """What makes it fail %prep: the first failed hunk, missing file, error or fuzz."""
        failed = [h.describe() for h in self.hunks if h.result in ("failed", "missing")]
        fuzzed = [h.describe() for h in self.hunks if h.result == "fuzz"]
        return next(iter([*failed, *self.errors, *fuzzed]), "")


@dataclass(frozen=True)
class SeriesReport:
    upstream: dict[str, object]
    total: int
    outcomes: list[Outcome]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    def lines(self) -> list[str]:
        out = []
        for outcome in self.outcomes:
            out.append(outcome.describe())
            out += [f"  {detail}" for detail in outcome.details()]
        return out


class SeriesFailed(PatchError):
    """A patch failed (or needs fuzz); `report` says how far the series got."""

    def __init__(self, message: str, details: list[str], report: SeriesReport) -> None:
        super().__init__(message, details=details)
        self.report = report


# --- the scratch tree -------------------------------------------------------------


@contextmanager
def hardlinked_copy(pristine: Path, scratch_parent: Path, runner: Runner) -> Iterator[Path]:
    """A `cp -al` copy of `pristine` in a scratch directory removed however the block ends.

    `scratch_parent` must be on the pristine tree's file system (hard links)."""
    with scratch_dir(scratch_parent, ".patches-") as scratch:
        copy = scratch / pristine.name
        runner.run(["cp", "-al", pristine, copy])
        yield copy


def break_links(tree: Path, relpaths: Iterable[str]) -> list[str]:
    """Give every listed regular file that shares its inode a fresh copy of its own.

    Returns the paths whose links were broken. A path whose directory resolves outside
    `tree` (through a symlink) is refused rather than followed."""
    root = os.path.realpath(tree)
    broken = []
    for relpath in sorted(set(relpaths)):
        path = tree / relpath
        parent = os.path.realpath(path.parent)
        if parent != root and not parent.startswith(root + os.sep):
            raise PatchError(f"{relpath}: resolves outside the tree ({parent})")
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue  # created by the patch
        if not stat.S_ISREG(info.st_mode) or info.st_nlink == 1:
            continue
        fresh = path.with_name(f".{path.name}.kxen-unlink")
        shutil.copy2(path, fresh)
        os.replace(fresh, path)
        broken.append(relpath)
    return broken


# --- applying -----------------------------------------------------------------------


def apply_series(
    tree: Path,
    series: list[Patch],
    runner: Runner,
    progress: Progress,
    *,
    keep_going: bool,
) -> list[Outcome]:
    """Apply each patch in order; stop at the first that fails %prep unless `keep_going`.

    With `keep_going` a failing patch is applied as far as it goes (fuzz 2, rejects
    dropped), so later patches are judged on the tree they would really meet."""
    outcomes = []
    for index, patch in enumerate(series, 1):
        progress.phase("apply", f"{patch.name} ({index}/{len(series)})")
        outcome = apply_patch(tree, patch, runner)
        outcomes.append(outcome)
        if not outcome.ok and not keep_going:
            break
    return outcomes


def apply_patch(tree: Path, patch: Patch, runner: Runner) -> Outcome:
    """Apply `patch` with %prep's --fuzz=0; if that fails, with fuzz 2 to tell fuzz from
    failure. Links of every file it touches are broken first."""
    data = patch_bytes(patch.path)
    probe = _run_patch(tree, patch, data, PREP_FUZZ, runner, dry_run=True)
    headers = [path for change in file_changes(patch.path, patch.strip) for path in change.paths]
    break_links(tree, [*headers, *probe.files])
    fuzz = PREP_FUZZ if probe.ok else LENIENT_FUZZ
    applied = _run_patch(tree, patch, data, fuzz, runner, dry_run=False)
    # A patch the --fuzz=0 probe refused fails %prep; "fuzz" if fuzz 2 gets it through.
    lenient = "fuzz" if applied.ok else "fails"
    status = applied.status() if probe.ok else lenient
    return Outcome(patch.name, patch.line, status, applied.hunks, applied.errors)


@dataclass
class PatchRun:
    """What GNU patch reported (C locale): files, hunks off their mark, other errors."""

    returncode: int
    files: list[str] = field(default_factory=list)
    hunks: list[Hunk] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.errors and not self._failed

    @property
    def _failed(self) -> bool:
        return any(hunk.result in ("failed", "missing") for hunk in self.hunks)

    def status(self) -> str:
        if not self.ok:
            return "fails"
        results = {hunk.result for hunk in self.hunks}
        return "fuzz" if "fuzz" in results else "offset" if "offset" in results else "clean"


def _run_patch(
    tree: Path, patch: Patch, data: bytes, fuzz: int, runner: Runner, *, dry_run: bool
) -> PatchRun:
    argv: list[str | os.PathLike[str]] = [
        "patch",
        *_PATCH_ARGS,
        f"-p{patch.strip}",
        f"--fuzz={fuzz}",
        "-d",
        tree,
    ]
    if dry_run:
        argv.append("--dry-run")
    with tempfile.TemporaryFile() as stdin:
        stdin.write(data)
        stdin.seek(0)
        result = runner.run(argv, stdin=stdin, env=_C_LOCALE, check=False)
    return parse_patch_output(result.output, result.returncode, patch.strip)


def parse_patch_output(output: str, returncode: int, strip: int) -> PatchRun:
    """Read GNU patch's messages: "patching file X", "Hunk #N succeeded at L (offset K
    lines)", "... with fuzz F", "Hunk #N FAILED at L", "can't find file to patch"."""
    run = PatchRun(returncode)
    current = ""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if match := _FILE_RE.match(line):
            current = match[1]
            run.files += [name for name in match.groups() if name]
        elif match := _SUCCEEDED_RE.match(line):
            number, at, fuzz, offset = (int(g) if g else 0 for g in match.groups())
            result = "fuzz" if fuzz else "offset"
            run.hunks.append(Hunk(current, number, result, at, offset, fuzz))
        elif match := _FAILED_RE.match(line):
            run.hunks.append(Hunk(current, int(match[1]), "failed", int(match[2])))
        elif line.startswith("can't find file to patch"):
            run.hunks.append(Hunk(_missing_file(lines[index:], strip), None, "missing"))
        elif match := _FATAL_RE.match(line):
            run.errors.append(match[1])
        elif "-- refusing to patch" in line or "Ignoring potentially dangerous" in line:
            run.errors.append(line.strip())
    if returncode != 0 and not run.hunks and not run.errors:
        run.errors.append(f"patch exited with status {returncode}")
    return run


def _missing_file(block: list[str], strip: int) -> str:
    """The name patch could not find, from the `|--- a/x` / `|+++ b/x` lines it echoes."""
    names = {}
    for line in block[1:]:
        if line.startswith("No file to patch"):
            break
        if line.startswith(("|--- ", "|+++ ")):
            names[line[1:4]] = line[5:].split("\t", 1)[0]
    for key in ("+++", "---"):
        name = names.get(key)
        if name and name != "/dev/null":
            try:
                return strip_path(name, strip, "patch output") or name
            except InputError:
                return name
    return "?"
