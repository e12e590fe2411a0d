"""Derived cache entries that prove, before each use, that they are still what kxen made.

A cache entry is derived from verified inputs (a prepared tree from a tarball whose
digest `sources` pins, a resolved config from that tree and the fragments), so a byte
changed in it afterwards would reach the SRPM without any check noticing. Each entry
therefore carries a record made when it was created:

- a directory has a manifest: every path with its type, mode, size or link target, and
  the SHA256 of every file, sealed by the digest of the manifest itself. Checking the
  listing is cheap and always done; hashing is limited to the files the consumer reads
  (`Scope`), and a tree is checked once per process;
- a single file has a sidecar `<file>.sha256` (or `.sha512`) in `sha256sum` format.

An entry that does not match its record (or has none) is never used: it is moved to
`<cache>/corrupt/<time>-<name>-<random>/` with a note of what differed, named in a
warning, and the caller makes it again from its inputs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kxen.errors import ExitCode, KxenError
from kxen.support.fsutil import atomic_write_bytes
from kxen.support.progress import NullProgress, Progress

MANIFEST_NAME = ".kxen-manifest"
CORRUPT_DIR = "corrupt"
NOTE_NAME = "kxen-corrupt.txt"
_MANIFEST_MAGIC = b"kxen-manifest 2 sha256:"
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_READ_SIZE = 1 << 20
_SHOWN_PROBLEMS = 3


class Corrupt(Exception):
    """An entry differs from its record; `problems` says how (one line each)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)

    def summary(self) -> str:
        shown = "; ".join(self.problems[:_SHOWN_PROBLEMS])
        more = len(self.problems) - _SHOWN_PROBLEMS
        return shown + (f" and {more} more difference(s)" if more > 0 else "")


class Unrecorded(Corrupt):
    """An entry with no record at all: made by a kxen older than records (or its record
    was removed). Not evidence of tampering: it is removed, not kept, and made again."""


class CorruptCacheError(KxenError):
    """A corrupt entry could not even be moved aside, so it cannot be replaced."""

    exit_code = ExitCode.SOURCE_VERIFY


# --- what a consumer reads ----------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The files of a tree whose content a consumer depends on (paths relative to it)."""

    name: str
    wants: Callable[[str], bool]


def _is_config_input(relative: str) -> bool:
    """What kbuild's config targets and a Kconfig model read: kconfig's sources and the
    scripts Kconfig runs, every Kconfig, Makefile and *.include, and the defconfigs and
    fragments (arch/*/configs, kernel/configs) a layer may name. (String tests: a regular
    expression takes three times as long over 80,000 paths.)"""
    name = relative[relative.rfind("/") + 1 :]
    return (
        name.startswith(("Kconfig", "Makefile", "Kbuild"))
        or name.endswith(".include")
        or relative.startswith(("scripts/", "configs/"))
        or "/configs/" in relative
    )


WHOLE = Scope("whole tree", lambda relative: True)
CONFIG_INPUTS = Scope("config inputs", _is_config_input)


# --- digests ------------------------------------------------------------------


def digest_of(path: str | Path, algorithm: str = "sha256") -> str:
    """Digest of a regular file, never through a symlink (os.read: no per-call buffer
    allocation, which makes hashing 80,000 small files several times faster)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        hasher = hashlib.new(algorithm)
        while chunk := os.read(fd, _READ_SIZE):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest()


# --- directories: manifests ---------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    meta: Mapping[str, str]
    listing: Mapping[str, str]
    """Relative path -> `f <mode> <size>`, `d <mode>`, `l <target>` or `o <type> <mode>`."""
    digests: Mapping[str, str]
    """Relative path of every regular file -> its SHA256."""


def record(
    root: Path, manifest: Path, meta: Mapping[str, str] | None = None, ignore: Iterable[str] = ()
) -> Manifest:
    """Describe the freshly made entry `root` into `manifest`, hashing every file.

    Setuid, setgid and sticky bits are cleared on the way: a cache holds data, and a
    tarball or patch must not be able to leave a privileged program in it."""
    listing = _listing(root, _ignored(root, manifest, ignore), clear_special=True)
    base = os.fspath(root)
    digests = {
        relative: digest_of(os.path.join(base, relative))
        for relative, described in listing.items()
        if described.startswith("f ")
    }
    made = Manifest(dict(meta or {}), listing, digests)
    atomic_write_bytes(manifest, _sealed(made))
    _remember(manifest, made, WHOLE)
    return made


def _sealed(made: Manifest) -> bytes:
    """Header with the SHA256 of the body; the body is the meta (JSON) on one line, then
    path, description and digest ("" for non-files) of every entry, all separated by NUL,
    the one byte no path or link target holds (parsed several times faster than JSON)."""
    fields = [
        field
        for path, described in sorted(made.listing.items())
        for field in (path, described, made.digests.get(path, ""))
    ]
    meta = json.dumps(dict(made.meta), sort_keys=True)
    body = (meta + "\n" + "\0".join(fields)).encode("utf-8", "surrogateescape")
    return _MANIFEST_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _parsed(body: bytes) -> Manifest:
    meta, _, records = body.decode("utf-8", "surrogateescape").partition("\n")
    fields = records.split("\0") if records else []
    if len(fields) % 3:
        raise ValueError("truncated entry")
    paths = fields[0::3]
    listing = dict(zip(paths, fields[1::3], strict=True))
    digests = {path: digest for path, digest in zip(paths, fields[2::3], strict=True) if digest}
    return Manifest(dict(json.loads(meta)), listing, digests)


def read_manifest(manifest: Path) -> Manifest:
    """The sealed manifest, or Corrupt if it is missing, unreadable or altered."""
    key = _stat_key(manifest)
    known = _MANIFESTS.get(key)
    if known is not None:
        return known[0]
    body = _sealed_body(manifest)
    try:
        loaded = _parsed(body)
    except (ValueError, TypeError):
        raise Corrupt(["its manifest cannot be parsed"]) from None
    _MANIFESTS[key] = (loaded, set())
    return loaded


def read_meta(manifest: Path) -> Mapping[str, str] | None:
    """What the entry's maker recorded about it, if its manifest is intact (without
    parsing the entries: a caller may need only this)."""
    known = _MANIFESTS.get(_stat_key(manifest))
    if known is not None:
        return known[0].meta
    try:
        meta = json.loads(_sealed_body(manifest).partition(b"\n")[0])
    except (Corrupt, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _sealed_body(manifest: Path) -> bytes:
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        missing = "it has no digest manifest (made by an older kxen, or removed)"
        raise Unrecorded([missing]) from None
    except OSError as exc:
        raise Corrupt([f"its manifest cannot be read: {exc.strerror}"]) from None
    header, _, body = data.partition(b"\n")
    if not header.startswith(_MANIFEST_MAGIC) or not body:
        raise Corrupt(["its manifest is not a kxen manifest"])
    if hashlib.sha256(body).hexdigest().encode() != header[len(_MANIFEST_MAGIC) :]:
        raise Corrupt(["its manifest does not match its own seal"])
    return body


def verify(
    root: Path, manifest: Path, scope: Scope = WHOLE, ignore: Iterable[str] = ()
) -> Manifest:
    """Check `root` against its manifest: the whole listing, and the content of the files
    in `scope`. Raises Corrupt naming what differs; a tree is checked once per process."""
    recorded = read_manifest(manifest)
    if already_verified(manifest, scope):
        return recorded
    if root.is_symlink() or not root.is_dir():
        raise Corrupt([f"{root} is not a directory"])
    listing = _listing(root, _ignored(root, manifest, ignore), clear_special=False, scope=scope)
    problems = _listing_problems(recorded.listing, listing)
    problems += _content_problems(root, recorded, listing, scope)
    if problems:
        raise Corrupt(problems)
    _remember(manifest, recorded, scope)
    return recorded


# --- verifying again by inode status, as git's index does ----------------------
#
# Hashing a tree's config inputs costs a second per process. Once a verification has
# hashed them, the status of every directory and of every file in scope is recorded:
# inode, size, mode, mtime and ctime. A later check that finds them all unchanged has
# verified the same content: a write changes a file's ctime, which no user can set
# back, and adding, removing or renaming an entry changes its directory's. Anything
# that differs (or a missing or altered record) means hashing again, as verify() does.


_STATS_MAGIC = b"kxen-stats 1 sha256:"
_RACY_NS = 100_000_000
"""File times are taken from a coarse clock: an entry changed less than this before a
verification began may show times older than the change, so none is recorded then."""


def stats_path(manifest: Path) -> Path:
    """The status record of the entry described by `manifest`, beside it."""
    return manifest.with_name(manifest.name + ".stats")


def verify_quickly(
    root: Path, manifest: Path, scope: Scope = WHOLE, ignore: Iterable[str] = ()
) -> None:
    """verify(), answered from the status record when nothing changed since a verification
    hashed `scope`; otherwise verify() hashes and, when it passes, records the status."""
    if already_verified(manifest, scope) or _unchanged_since_recorded(root, manifest, scope):
        _remember_quick(manifest, scope)
        return
    started = time.time_ns()
    verify(root, manifest, scope, ignore)
    _record_stats(root, manifest, scope, started)
    # the parsed manifest (60 MB for a kernel tree) is not needed once verified
    _MANIFESTS.pop(_stat_key(manifest), None)
    _remember_quick(manifest, scope)


def _unchanged_since_recorded(root: Path, manifest: Path, scope: Scope) -> bool:
    try:
        data = stats_path(manifest).read_bytes()
    except OSError:
        return False
    header, _, body = data.partition(b"\n")
    if header != _STATS_MAGIC + hashlib.sha256(body).hexdigest().encode():
        return False
    head, _, rows = body.decode("utf-8", "surrogateescape").partition("\n")
    made_for = {"manifest": _status(manifest), "scope": scope.name, "root": os.fspath(root)}
    fields = rows.split("\0") if rows else []
    if head != json.dumps(made_for) or len(fields) % 2:
        return False
    base = os.fspath(root)
    for relative, recorded in zip(fields[0::2], fields[1::2], strict=True):
        if _status(os.path.join(base, relative) if relative else base) != recorded:
            return False
    return True


def _status(path: str | Path) -> str:
    try:
        info = os.lstat(path)
    except OSError:
        return "-"
    return f"{info.st_ino} {info.st_mode:o} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}"


def _record_stats(root: Path, manifest: Path, scope: Scope, started: int) -> None:
    """Record the status of every directory and in-scope file of the verified `root`;
    nothing when an entry changed too close to the verification to trust its times."""
    base = os.fspath(root)
    rows: list[str] = ["", _status(base)]
    pending = [("", base)]
    newest = os.lstat(base).st_ctime_ns
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as found:
            for entry in found:
                relative = prefix + entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not (
                    entry.is_file(follow_symlinks=False) and scope.wants(relative)
                ):
                    continue  # its directory's times say whether it was replaced
                info = entry.stat(follow_symlinks=False)
                newest = max(newest, info.st_ctime_ns, info.st_mtime_ns)
                rows += [relative, _status(entry.path)]
                if is_dir:
                    pending.append((relative + "/", entry.path))
    if newest >= started - _RACY_NS:
        return
    head = json.dumps({"manifest": _status(manifest), "scope": scope.name, "root": base})
    body = (head + "\n" + "\0".join(rows)).encode("utf-8", "surrogateescape")
    sealed = _STATS_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    with contextlib.suppress(OSError, KxenError):  # only the next check's speed needs it
        atomic_write_bytes(stats_path(manifest), sealed)


def remembered_digest(path: Path, records: Path, algorithm: str = "sha512") -> str:
    """The digest of the regular file `path`, hashed once and then answered from a sealed
    record of the file's status (device, inode, size, mtime, ctime) while it is unchanged:
    any write changes its ctime. A record that fails its seal only means hashing again."""
    record = records / f"{hashlib.sha256(os.fsencode(path)).hexdigest()[:32]}.{algorithm}"
    status = f"{os.stat(path).st_dev} {_status(path)}"
    with contextlib.suppress(Corrupt, ValueError):
        known = read_sealed(record)
        if known is not None:
            recorded_status, _, digest = known.decode().partition("\n")
            if recorded_status == status:
                return digest
    started = time.time_ns()
    digest = digest_of(path, algorithm)
    info = os.stat(path)
    if max(info.st_mtime_ns, info.st_ctime_ns) < started - _RACY_NS and status == (
        f"{info.st_dev} {_status(path)}"
    ):
        with contextlib.suppress(OSError, KxenError):  # only the next run's speed needs it
            write_sealed(record, f"{status}\n{digest}".encode())
    return digest


def _ignored(root: Path, manifest: Path, ignore: Iterable[str]) -> frozenset[str]:
    inside = {manifest.name, stats_path(manifest).name} if manifest.parent == root else set()
    return frozenset({*ignore, *inside})


_UNSTATED_FILE = "f"
"""A regular file outside the verified scope, listed by its directory entry alone."""


def _listing(
    root: Path, ignore: frozenset[str], *, clear_special: bool, scope: Scope = WHOLE
) -> dict[str, str]:
    """Relative path -> its description without content, walking without following links.

    A regular file outside `scope` is described by its type only: the directory entry
    says that much, and skipping its lstat halves the cost of a config-scope check."""
    listing: dict[str, str] = {}
    pending = [("", os.fspath(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as found:
            for entry in found:
                if not prefix and entry.name in ignore:
                    continue
                relative = prefix + entry.name
                if (
                    scope is not WHOLE
                    and entry.is_file(follow_symlinks=False)
                    and not scope.wants(relative)
                ):
                    listing[relative] = _UNSTATED_FILE
                    continue
                info = entry.stat(follow_symlinks=False)
                if clear_special and info.st_mode & _SPECIAL_BITS:
                    info = _without_special_bits(entry.path, info)
                if stat.S_ISREG(info.st_mode):  # most entries: described inline, for speed
                    listing[relative] = f"f {info.st_mode & 0o7777:o} {info.st_size}"
                    continue
                listing[relative] = _describe(entry.path, info)
                if stat.S_ISDIR(info.st_mode):
                    pending.append((relative + "/", entry.path))
    return listing


def _without_special_bits(path: str, info: os.stat_result) -> os.stat_result:
    if stat.S_ISLNK(info.st_mode):
        return info
    os.chmod(path, stat.S_IMODE(info.st_mode) & ~_SPECIAL_BITS)
    return os.stat(path, follow_symlinks=False)


def _describe(path: str, info: os.stat_result) -> str:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        return f"d {stat.S_IMODE(mode):o}"
    if stat.S_ISLNK(mode):
        return f"l {os.readlink(path)}"
    if stat.S_ISREG(mode):
        return f"f {stat.S_IMODE(mode):o} {info.st_size}"
    return f"o {stat.S_IFMT(mode):o} {stat.S_IMODE(mode):o}"


def _listing_problems(recorded: Mapping[str, str], listing: Mapping[str, str]) -> list[str]:
    if recorded == listing:
        return []
    problems = [f"{path}: missing" for path in recorded.keys() - listing.keys()]
    problems += [f"{path}: not in the record" for path in listing.keys() - recorded.keys()]
    problems += [
        f"{path}: {_show(found)}, recorded as {_show(recorded[path])}"
        for path, found in listing.items()
        if path in recorded and not _same_entry(recorded[path], found)
    ]
    return sorted(problems)


def _same_entry(recorded: str, found: str) -> bool:
    if found == _UNSTATED_FILE:
        return recorded.startswith("f ")
    return recorded == found


def _content_problems(
    root: Path, recorded: Manifest, listing: Mapping[str, str], scope: Scope
) -> list[str]:
    problems = []
    base = os.fspath(root)
    for path, expected in recorded.digests.items():
        if not scope.wants(path) or listing.get(path) != recorded.listing.get(path):
            continue  # out of scope, or already reported by the listing
        try:
            actual = digest_of(os.path.join(base, path))
        except OSError as exc:
            problems.append(f"{path}: cannot be read: {exc.strerror}")
            continue
        if actual != expected:
            problems.append(f"{path}: content differs from the record")
    return problems


def _show(description: str) -> str:
    kind, _, rest = description.partition(" ")
    if kind == "f":
        mode, _, size = rest.partition(" ")
        return f"a file (mode {mode}, {size} bytes)" if rest else "a file"
    if kind == "d":
        return f"a directory (mode {rest})"
    if kind == "l":
        return f"a symlink to {rest!r}"
    return f"a special file ({rest})"


# Per process: manifests read and the scopes already verified against them, keyed by
# the manifest file's identity (a remade entry is read again; a staging directory
# renamed into place keeps what its making recorded).
_MANIFESTS: dict[tuple[int, int, int, int], tuple[Manifest, set[str]]] = {}
_NO_FILE = (-1, -1, -1, -1)


def _stat_key(manifest: Path) -> tuple[int, int, int, int]:
    try:
        info = manifest.stat()
    except OSError:
        return _NO_FILE
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


def _remember(manifest: Path, made: Manifest, scope: Scope) -> None:
    key = _stat_key(manifest)
    if key == _NO_FILE:
        return
    _, scopes = _MANIFESTS.setdefault(key, (made, set()))
    scopes.add(scope.name)


def already_verified(manifest: Path, scope: Scope) -> bool:
    """Whether this process checked the entry of `manifest` (unchanged since) in `scope`."""
    key = _stat_key(manifest)
    known = _MANIFESTS.get(key)
    if known is not None and {scope.name, WHOLE.name} & known[1]:
        return True
    return bool({scope.name, WHOLE.name} & _QUICKLY_VERIFIED.get(key, set()))


# Scopes verified by their status record, per manifest identity: without reading the
# manifest itself (its 80,000 entries take 60 MB).
_QUICKLY_VERIFIED: dict[tuple[int, int, int, int], set[str]] = {}


def _remember_quick(manifest: Path, scope: Scope) -> None:
    key = _stat_key(manifest)
    if key != _NO_FILE:
        _QUICKLY_VERIFIED.setdefault(key, set()).add(scope.name)


# --- single files: a sidecar digest -------------------------------------------


def sidecar(path: Path, algorithm: str = "sha256") -> Path:
    return path.with_name(f"{path.name}.{algorithm}")


def seal_as(path: Path, digest: str, algorithm: str = "sha256") -> None:
    """Record the digest `path` must have (before the file is renamed into place, so a
    reader that sees the file always finds its record)."""
    text = f"{digest}  {path.name}\n"
    atomic_write_bytes(sidecar(path, algorithm), text.encode())


def write_sealed(path: Path, data: bytes, algorithm: str = "sha256") -> None:
    seal_as(path, hashlib.new(algorithm, data).hexdigest(), algorithm)
    atomic_write_bytes(path, data)


def read_sealed(path: Path, algorithm: str = "sha256") -> bytes | None:
    """The file's bytes if they match its record; None if there is no such file."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Corrupt([_unreadable(path, exc)]) from None
    _compare(path, hashlib.new(algorithm, data).hexdigest(), algorithm)
    return data


def check_sealed(path: Path, algorithm: str = "sha256") -> str | None:
    """The digest of the file if it matches its record; None if there is no such file."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        actual = digest_of(path, algorithm)
    except OSError as exc:
        raise Corrupt([_unreadable(path, exc)]) from None
    _compare(path, actual, algorithm)
    return actual


def _unreadable(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symlink"
    return f"it cannot be read: {exc.strerror}"


def _compare(path: Path, actual: str, algorithm: str) -> None:
    try:
        recorded = sidecar(path, algorithm).read_text().split(" ", 1)[0]
    except FileNotFoundError:
        raise Unrecorded([f"it has no {algorithm} record"]) from None
    except (OSError, UnicodeDecodeError):
        raise Corrupt([f"its {algorithm} record cannot be read"]) from None
    if actual != recorded:
        raise Corrupt([f"its content does not match its recorded {algorithm}"])


def sealed_parts(path: Path, algorithm: str = "sha256") -> list[Path]:
    """What to set aside for a sealed file: the file and its record."""
    return [path, sidecar(path, algorithm)]


# --- setting a corrupt entry aside --------------------------------------------


@dataclass(frozen=True)
class Quarantine:
    """Where corrupt entries are kept as evidence, and who hears about them."""

    root: Path
    progress: Progress = field(default_factory=NullProgress)

    @classmethod
    def in_cache(cls, cache_root: Path, progress: Progress | None = None) -> Quarantine:
        return cls(cache_root / CORRUPT_DIR, progress or NullProgress())

    def set_aside(
        self, parts: Path | Sequence[Path], corrupt: Corrupt, what: str, remedy: str
    ) -> Path:
        """Move the entry (its parts: the file and its record) into a new evidence
        directory with a note of what differed, warn, and return the directory.

        An entry without any record is removed instead (there is nothing to compare it
        with, and keeping a 1.4 GB tree per upgrade would fill the cache): the returned
        directory is then empty."""
        parts = [parts] if isinstance(parts, Path) else list(parts)
        entry = parts[0]
        if isinstance(corrupt, Unrecorded):
            return self._discard(parts, corrupt, what, remedy)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            evidence = Path(tempfile.mkdtemp(prefix=f"{stamp}-{entry.name}-", dir=self.root))
            for part in parts:
                if part.exists() or part.is_symlink():
                    _move(part, evidence / part.name)
            note = f"{what} {entry}\n" + "".join(f"{p}\n" for p in corrupt.problems)
            (evidence / NOTE_NAME).write_text(note, errors="backslashreplace")
        except OSError as exc:
            raise CorruptCacheError(
                f"{what} {entry} failed verification and cannot be set aside "
                f"({exc.strerror}); remove it by hand",
                details=corrupt.problems[:20],
            ) from None
        self.progress.warn(
            f"{what} {entry} failed verification ({corrupt.summary()}); "
            f"set aside as {evidence}; {remedy}"
        )
        return evidence

    def _discard(self, parts: list[Path], corrupt: Corrupt, what: str, remedy: str) -> Path:
        for part in parts:
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)
        self.progress.warn(f"{what} {parts[0]}: {corrupt.summary()}; removed it; {remedy}")
        return self.root


def _move(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source, target)
