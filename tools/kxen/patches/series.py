"""`patches/series`: the downstream patches, quilt format, applied in order in %prep.

Besides loading the series this module reads what a patch touches (unified and
git diff headers, so `kxen patches list` and the hard-link breaking before
`patch` runs need no external tool) and edits the series in place for
`kxen patches add`, keeping its comments and blank lines.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kxen.errors import InputError
from kxen.support import inputs
from kxen.support.fsutil import atomic_write_bytes, atomic_write_text

SERIES_NAME = "series"
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")
_STRIP_RE = re.compile(r"^-p([0-9])$")


class _Decompressor(Protocol):
    """What zlib's, bz2's and lzma's incremental decompressors have in common."""

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


_DECOMPRESSORS: dict[str, Callable[[], _Decompressor]] = {
    ".gz": lambda: zlib.decompressobj(wbits=31),
    ".bz2": bz2.BZ2Decompressor,
    ".xz": lzma.LZMADecompressor,
}
UNPACKED_PATCH_LIMIT = 4 * inputs.PATCH_FILE
"""A compressed patch may not unpack to more (a compression bomb stops here)."""


@dataclass(frozen=True)
class Patch:
    path: Path
    strip: int
    line: int

    @property
    def name(self) -> str:
        return self.path.name


def safe_name(name: str) -> bool:
    """A plain file name: no directories, no `..`, no whitespace, no leading dot or dash."""
    return bool(_NAME_RE.match(name)) and ".." not in name


def load_series(patches_dir: Path, *, unlisted_ok: Collection[str] = ()) -> list[Patch]:
    """Read the series; every file in patches/ must be listed and every line must exist,
    inside the checkout, and be a diff whose files stay inside the tree: the checks
    `kxen patches add` makes, for every command that reads the series (spec, SRPM).

    `unlisted_ok` names files that may be present but unlisted (the one being added)."""
    patches = _read_series(patches_dir, unlisted_ok)
    for patch in patches:
        check_diff(patch.path, patch.strip, inputs.shown(patch.path, patches_dir.parent))
    return patches


def check_diff(path: Path, strip: int, name: str) -> list[FileChange]:
    """What a patch changes; refused unless it is a diff with hunks whose file names stay
    inside the tree (no absolute names, no `..`)."""
    changes = file_changes(path, strip)
    if all(change.empty for change in changes):
        raise InputError(f"{name}: no hunks (not a unified or git diff)")
    return changes


def _read_series(patches_dir: Path, unlisted_ok: Collection[str]) -> list[Patch]:
    series = patches_dir / SERIES_NAME
    checkout = patches_dir.parent
    if not series.exists() and not series.is_symlink():
        strays = sorted(p.name for p in patches_dir.glob("*")) if patches_dir.is_dir() else []
        if strays:
            raise InputError(f"{series}: missing, but {patches_dir} holds {', '.join(strays)}")
        return []
    patches: list[Patch] = []
    seen: dict[str, int] = {}
    text = inputs.read_text(series, checkout)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{series}:{number}"
        name, *options = line.split()
        if not safe_name(name):
            raise InputError(f"{where}: unsafe patch name {inputs.excerpt(name)}")
        strip = 1
        for option in options:
            match = _STRIP_RE.match(option)
            if not match:
                raise InputError(
                    f"{where}: unknown option {inputs.excerpt(option)} (only -pN is supported)"
                )
            strip = int(match[1])
        if name in seen:
            raise InputError(f"{where}: {name} is already listed on line {seen[name]}")
        path = patches_dir / name
        inputs.contained(path, checkout)
        if not path.is_file():
            raise InputError(f"{where}: {name} is listed but {path} does not exist")
        seen[name] = number
        patches.append(Patch(path, strip, number))
    unlisted = sorted(
        p.name
        for p in patches_dir.iterdir()
        if p.name != SERIES_NAME and p.name not in seen and p.name not in unlisted_ok
    )
    if unlisted:
        raise InputError(
            f"{series}: {', '.join(unlisted)} in {patches_dir} not listed in the series"
        )
    return patches


# --- what a patch touches ------------------------------------------------------

DEV_NULL = "/dev/null"
_HUNK_RE = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_GIT_CHANGES = {
    "new file mode ": "create",
    "deleted file mode ": "delete",
    "rename from ": "rename",
    "copy from ": "copy",
}
_GIT_MOVES = ("rename from ", "rename to ", "copy from ", "copy to ")


@dataclass(frozen=True)
class FileChange:
    """One file a patch touches, named as `patch -pN` sees it (relative to the tree)."""

    path: str
    change: str
    """modify, create, delete, rename, copy or mode (a git mode-only change)."""
    hunks: int
    old_path: str | None = None
    """The other name in the header when it differs (the source of a rename or copy)."""

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,) if self.old_path is None else (self.old_path, self.path)

    @property
    def empty(self) -> bool:
        """Headers without a hunk and without a git-level change: it changes nothing."""
        return self.hunks == 0 and self.change == "modify"


def patch_bytes(path: Path) -> bytes:
    """The patch as `patch` reads it: decompressed like rpm's %patch does (.gz, .bz2, .xz),
    within size limits."""
    data = _unpacked(path, inputs.read_bytes(path, path.parent, inputs.PATCH_FILE))
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise InputError(f"{path}:{line}: holds a NUL byte (a patch is text)")
    return data


def _unpacked(path: Path, data: bytes) -> bytes:
    make = _DECOMPRESSORS.get(path.suffix)
    if make is None:
        return data
    decompressor = make()
    try:
        unpacked = decompressor.decompress(data, UNPACKED_PATCH_LIMIT + 1)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise InputError(f"{path}: not a valid {path.suffix} file ({exc})") from None
    if len(unpacked) > UNPACKED_PATCH_LIMIT:
        raise InputError(f"{path}: unpacks to more than {UNPACKED_PATCH_LIMIT} bytes")
    if not decompressor.eof:
        raise InputError(f"{path}: not a valid {path.suffix} file (truncated)")
    return unpacked


def file_changes(path: Path, strip: int) -> list[FileChange]:
    """What the patch at `path` touches when applied with -p`strip`."""
    text = patch_bytes(path).decode("utf-8", "replace")
    return parse_diff(text, strip, str(path))


def parse_diff(text: str, strip: int, where: str) -> list[FileChange]:
    """Every file a unified or git diff touches, in order, with its number of hunks."""
    return _DiffReader(text.splitlines(), strip, where).read()


@dataclass
class _GitHeader:
    line: int
    names: str
    """What follows `diff --git `: only read when no `---`/`+++` pair names the files."""
    change: str = "mode"
    moved: list[str] = field(default_factory=list)
    """`rename from/to` (or copy) names: without the a/ b/ prefix."""


class _DiffReader:
    """Walks the diff once; hunk bodies are consumed by their line counts, so a removed
    line that starts with `-- ` is never mistaken for the next file's header."""

    def __init__(self, lines: list[str], strip: int, where: str) -> None:
        self.lines, self.strip, self.where = lines, strip, where
        self.changes: list[FileChange] = []

    def read(self) -> list[FileChange]:
        git: _GitHeader | None = None
        index = 0
        while index < len(self.lines):
            line = self.lines[index]
            if line.startswith("diff --git "):
                self._flush(git)
                git = _GitHeader(index + 1, line[len("diff --git ") :])
            elif line.startswith("--- ") and self._next_is_new_name(index):
                index = self._file(index, git)
                git = None
                continue
            elif git is not None:
                git.change = next(
                    (kind for prefix, kind in _GIT_CHANGES.items() if line.startswith(prefix)),
                    git.change,
                )
                if line.startswith(_GIT_MOVES):
                    git.moved.append(_unquote(line.split(" ", 2)[2]))
            index += 1
        self._flush(git)
        return self.changes

    def _next_is_new_name(self, index: int) -> bool:
        return index + 1 < len(self.lines) and self.lines[index + 1].startswith("+++ ")

    def _file(self, index: int, git: _GitHeader | None) -> int:
        """One `---`/`+++` pair and its hunks; returns the index of the line after them."""
        old = self._name(self.lines[index][4:], index)
        new = self._name(self.lines[index + 1][4:], index + 1)
        hunks, end = self._hunks(index + 2)
        if old is None and new is None:
            raise InputError(f"{self.where}:{index + 1}: both names are {DEV_NULL}")
        if old is None or new is None:
            kind = "create" if old is None else "delete"
            self.changes.append(FileChange(new or old or "", kind, hunks))
        else:
            kind = git.change if git and git.change in ("rename", "copy") else "modify"
            self.changes.append(FileChange(new, kind, hunks, old if old != new else None))
        return end

    def _flush(self, git: _GitHeader | None) -> None:
        """A git header with no `---`/`+++` pair: a rename, mode change or empty file."""
        if git is None:
            return
        if len(git.moved) == 2:  # names without their a/ b/ level
            old, new = (
                strip_path(name, max(self.strip - 1, 0), f"{self.where}:{git.line}")
                for name in git.moved
            )
        else:
            old, new = (self._stripped(name, git.line) for name in self._git_names(git))
        if git.change == "delete":
            new = None
        if git.change == "create":
            old = None
        path = new or old
        assert path is not None
        moved = old if old is not None and new is not None and old != new else None
        self.changes.append(FileChange(path, git.change, 0, moved))

    def _hunks(self, index: int) -> tuple[int, int]:
        count = 0
        while index < len(self.lines) and (match := _HUNK_RE.match(self.lines[index])):
            old, new = (int(n) if n is not None else 1 for n in match.groups())
            index += 1
            while old > 0 or new > 0:
                old, new = self._hunk_line(index, old, new)
                index += 1
            while index < len(self.lines) and self.lines[index].startswith("\\"):
                index += 1  # "\ No newline at end of file" after the last line
            count += 1
        return count, index

    def _hunk_line(self, index: int, old: int, new: int) -> tuple[int, int]:
        if index >= len(self.lines):
            raise InputError(f"{self.where}:{index}: the last hunk is cut short")
        tag = self.lines[index][:1]
        if tag in (" ", ""):  # mailers strip the space of an empty context line
            old, new = old - 1, new - 1
        elif tag == "-":
            old -= 1
        elif tag == "+":
            new -= 1
        elif tag != "\\":
            raise InputError(f"{self.where}:{index + 1}: not a hunk line: {self.lines[index]!r}")
        if old < 0 or new < 0:
            raise InputError(f"{self.where}:{index + 1}: more lines than the hunk header says")
        return old, new

    def _git_names(self, git: _GitHeader) -> tuple[str, str]:
        rest = git.names
        if rest.startswith('"') or rest.count(" ") == 1:
            names = re.findall(r'"(?:[^"\\]|\\.)*"|[^ ]+', rest)
            if len(names) == 2:
                return _unquote(names[0]), _unquote(names[1])
        half = (len(rest) - 1) // 2  # unquoted names with spaces: "a/N N b/N N"
        if rest[half : half + 1] == " " and (
            rest[:half].partition("/")[2] == rest[half + 1 :].partition("/")[2]
        ):
            return rest[:half], rest[half + 1 :]
        raise InputError(f"{self.where}:{git.line}: cannot read the file names in {rest!r}")

    def _name(self, raw: str, index: int) -> str | None:
        name = _unquote(raw.split("\t", 1)[0].rstrip("\r"))
        return self._stripped(name, index + 1)

    def _stripped(self, name: str, line: int) -> str | None:
        return strip_path(name, self.strip, f"{self.where}:{line}")


def _unquote(name: str) -> str:
    """git's C-style quoting ("a/caf\\303\\251") back to the name."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def strip_path(name: str, strip: int, where: str) -> str | None:
    """`name` as `patch -p<strip>` sees it, or None for /dev/null.

    Like patch, each level removes everything up to the next run of slashes. The result
    must stay inside the tree: absolute names and `..` are refused."""
    if name == DEV_NULL:
        return None
    parts = [""] if name.startswith("/") else []
    parts += [part for part in name.split("/") if part]
    if strip >= len(parts):
        raise InputError(f"{where}: {name!r} has fewer than {strip + 1} components for -p{strip}")
    kept = [part for part in parts[strip:] if part != "."]
    if not kept or "" in kept or ".." in kept:
        raise InputError(f"{where}: unsafe file name {name!r} (absolute or with ..)")
    return "/".join(kept)


# --- editing the series ----------------------------------------------------------


def series_entry(name: str, strip: int) -> str:
    return name if strip == 1 else f"{name} -p{strip}"


def insert_entry(text: str, entry: str, after_line: int | None) -> str:
    """`text` with `entry` on a line of its own after line `after_line` (1-based), or at
    the end; every other line, comments and blank ones included, stays as it was."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    lines.insert(len(lines) if after_line is None else after_line, entry + "\n")
    return "".join(lines)


@dataclass(frozen=True)
class Added:
    patch: Patch
    changes: list[FileChange]


def add_patch(patches_dir: Path, source: Path, after: str | None, strip: int = 1) -> Added:
    """Copy `source` into patches/ and list it after `after` (default: at the end).

    Everything is checked before anything is written; then the patch is written, then the
    series, and the patch is removed again if the series cannot be written."""
    name = source.name
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    if not safe_name(name) or name == SERIES_NAME:
        raise InputError(
            f"{source}: unsafe patch name {name!r} (letters, digits, . _ + - only; no '..')"
        )
    target = patches_dir / name
    in_place = target.exists() and target.resolve() == source.resolve()
    series = load_series(patches_dir, unlisted_ok={name} if in_place else ())
    series_path = patches_dir / SERIES_NAME
    if any(patch.name == name for patch in series):
        raise InputError(f"{source}: {name} is already in {series_path}")
    changes = check_diff(source, strip, str(source))
    anchor = _anchor_line(series, after, series_path)
    old_text = series_path.read_text(encoding="utf-8") if series_path.exists() else ""
    new_text = insert_entry(old_text, series_entry(name, strip), anchor)
    if not in_place:
        atomic_write_bytes(target, source.read_bytes())
    try:
        atomic_write_text(series_path, new_text)
    except BaseException:
        if not in_place:
            target.unlink(missing_ok=True)
        raise
    line = (len(old_text.splitlines()) if anchor is None else anchor) + 1
    return Added(Patch(target, strip, line), changes)


def _anchor_line(series: list[Patch], after: str | None, series_path: Path) -> int | None:
    if after is None:
        return None
    for patch in series:
        if patch.name == after:
            return patch.line
    raise InputError(f"--after: {after!r} is not a patch in {series_path}")
