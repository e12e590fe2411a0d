"""The `sources` file and the lookaside cache of upstream files.

`sources` lists each upstream file with its digest, dist-git style:
`SHA512 (linux-6.1.tar.xz) = <128 hex>` (kernel.org's published SHA256 is
accepted too). Files live in a content-addressed cache; a download goes to an
untrusted temporary name in the cache, is verified, and only then renamed to
its final name, so a failed or tampered download never becomes a cached file.
A `Verifier` (the manifest's signatures, `kxen.signatures`) checks it in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from kxen.errors import InputError, SourceError
from kxen.support import download, inputs, integrity
from kxen.support.fsutil import atomic_write_text

SOURCES_NAME = "sources"
ALGORITHMS = {"SHA512": 128, "SHA256": 64}
NEW_SOURCES_ALGORITHM = "SHA512"
_LINE_RE = re.compile(r"^(?P<algo>[A-Z0-9]+) \((?P<name>[^)]+)\) = (?P<digest>[0-9a-f]+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+~-]*$")

ProgressSink = Callable[[str, int, int | None], None]
"""Called as (file name, bytes done, total bytes or None)."""


class Verifier(Protocol):
    """A check beyond the digest (a detached signature); raises SourceError on failure."""

    def downloaded(self, path: Path, url: str, directory: Path) -> None:
        """Check a download, still at its untrusted temporary name, that came from `url`.

        Runs before the rename into the cache; may keep its evidence in `directory`
        (the cache directory of the file) once the check passed.
        """

    def cached(self, path: Path, urls: Sequence[str]) -> None:
        """Check (or find earlier evidence for) a cached file before it is reused."""


@dataclass(frozen=True)
class SourceEntry:
    algorithm: str
    filename: str
    digest: str

    def line(self) -> str:
        return f"{self.algorithm} ({self.filename}) = {self.digest}"


def parse_sources(path: Path) -> list[SourceEntry]:
    """Read a `sources` file; every refusal names the file and line."""
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no sources file")
    text = inputs.read_text(path, path.parent)
    entries: list[SourceEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line, f"{path}:{number}")
        if entry.filename in seen:
            first = seen[entry.filename]
            raise InputError(f"{path}:{number}: {entry.filename} is already listed on line {first}")
        seen[entry.filename] = number
        entries.append(entry)
    return entries


def _parse_line(line: str, where: str) -> SourceEntry:
    match = _LINE_RE.match(line)
    if not match:
        if re.match(r"^[0-9a-f]{32}  \S+$", line):
            raise InputError(f"{where}: MD5 entries are too weak; re-import with kxen new-sources")
        raise InputError(
            f"{where}: expected 'SHA512 (file) = <hex digest>', got {inputs.excerpt(line)}"
        )
    algorithm, name, digest = match["algo"], match["name"], match["digest"]
    if algorithm not in ALGORITHMS:
        raise InputError(f"{where}: unsupported hash {algorithm} (use SHA512 or SHA256)")
    if len(digest) != ALGORITHMS[algorithm]:
        raise InputError(
            f"{where}: {algorithm} digest of {name} has {len(digest)} hex digits, "
            f"expected {ALGORITHMS[algorithm]}"
        )
    check_filename(name, where)
    return SourceEntry(algorithm, name, digest)


def check_filename(name: str, where: str) -> None:
    if not _NAME_RE.match(name) or ".." in name:
        raise InputError(f"{where}: unsafe file name {inputs.excerpt(name)}")


def write_sources(path: Path, entries: Iterable[SourceEntry]) -> None:
    atomic_write_text(path, "".join(entry.line() + "\n" for entry in entries))


def file_digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm.lower()).hexdigest()


class Lookaside:
    """Content-addressed cache: `<root>/<algorithm>/<digest>/<file name>`.

    A cached copy is hashed before every use; one that no longer matches its digest is
    set aside as evidence (by default in `<root>/corrupt/`) and downloaded again."""

    def __init__(self, root: Path, quarantine: integrity.Quarantine | None = None) -> None:
        self.root = root
        self.quarantine = quarantine or integrity.Quarantine(root / integrity.CORRUPT_DIR)

    def path_for(self, entry: SourceEntry) -> Path:
        return self.root / entry.algorithm.lower() / entry.digest / entry.filename

    def cached(self, entry: SourceEntry) -> Path | None:
        """The cached file if present and still matching its digest."""
        return self._check_cached(entry).path

    def _check_cached(self, entry: SourceEntry) -> _CachedCopy:
        path = self.path_for(entry)
        if not path.exists() and not path.is_symlink():
            return _CachedCopy(None)
        problem = _copy_problem(path, entry)
        if problem is None:
            return _CachedCopy(path)
        evidence = self.quarantine.set_aside(
            path, integrity.Corrupt([problem]), "lookaside copy", "fetching it again"
        )
        return _CachedCopy(None, (path, evidence / path.name))

    def fetch(
        self,
        entry: SourceEntry,
        urls: Iterable[str],
        progress: ProgressSink | None = None,
        verifier: Verifier | None = None,
    ) -> tuple[Path, bool]:
        """Return (path, downloaded): reuse a good cached copy or download and verify.

        A `verifier` sees every download before it enters the cache and every cached
        copy before it is reused; its failure leaves the cache as it was.
        """
        urls = list(urls)
        copy = self._check_cached(entry)
        if copy.path:
            if verifier is not None:
                verifier.cached(copy.path, urls)
            return copy.path, False
        failures: list[str] = []
        mismatch: SourceError | None = None
        for url in urls:
            try:
                return self._download(entry, url, progress, verifier), True
            except download.DownloadError as exc:
                failures.append(f"{url}: {exc.reason}")
            except SourceError as exc:  # that mirror served other bytes: try the next one
                mismatch = mismatch or exc
                failures.append(exc.message)
        kept = copy.describe(entry)
        if mismatch is not None:  # the details list every mirror's failure, if several
            details = failures if len(failures) > 1 else []
            raise SourceError(mismatch.message, details=[*details, *kept])
        cause = f" ({kept[0]})" if kept else ""
        raise SourceError(
            f"{entry.filename}: could not download from any mirror{cause}", details=failures
        )

    def _download(
        self,
        entry: SourceEntry,
        url: str,
        progress: ProgressSink | None,
        verifier: Verifier | None = None,
    ) -> Path:
        final = self.path_for(entry)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".untrusted-", dir=final.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _fetch(url, out, entry.filename, entry.algorithm, progress)
            if actual != entry.digest:
                raise SourceError(
                    f"{entry.filename}: {entry.algorithm} mismatch: expected {entry.digest}, "
                    f"got {actual} (from {url})"
                )
            if verifier is not None:
                verifier.downloaded(tmp, url, final.parent)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
            _remove_if_empty(final.parent)
        return final

    def adopt(
        self,
        filename: str,
        urls: Iterable[str],
        progress: ProgressSink | None = None,
        verifier: Verifier | None = None,
    ) -> SourceEntry:
        """Download a file no `sources` entry pins yet (`kxen bump`): its SHA512 is taken
        from what arrives, so the declared signature, if any, is the only check; it runs
        before the file enters the cache."""
        check_filename(filename, "upstream file")
        incoming = self.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for url in urls:
            fd, tmp_name = tempfile.mkstemp(prefix=".untrusted-", dir=incoming)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    digest = _fetch(url, out, filename, NEW_SOURCES_ALGORITHM, progress)
                entry = SourceEntry(NEW_SOURCES_ALGORITHM, filename, digest)
                final = self.path_for(entry)
                final.parent.mkdir(parents=True, exist_ok=True)
                if verifier is not None:
                    verifier.downloaded(tmp, url, final.parent)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                return entry
            except download.DownloadError as exc:
                failures.append(f"{url}: {exc.reason}")
            finally:
                tmp.unlink(missing_ok=True)
        raise SourceError(f"{filename}: could not download from any mirror", details=failures)

    def import_file(self, source: Path) -> SourceEntry:
        """Put a local file into the cache under its SHA512 (new-sources)."""
        check_filename(source.name, str(source))
        if not source.is_file():
            raise InputError(f"{source}: no such file")
        entry = SourceEntry(
            NEW_SOURCES_ALGORITHM, source.name, file_digest(source, NEW_SOURCES_ALGORITHM)
        )
        if self.cached(entry):
            return entry
        final = self.path_for(entry)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".untrusted-", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            link_or_copy(source, tmp)
            if file_digest(tmp, entry.algorithm) != entry.digest:
                raise SourceError(f"{source}: changed while it was being imported")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return entry


@dataclass(frozen=True)
class _CachedCopy:
    path: Path | None
    """A cached copy that matched its digest."""
    set_aside: tuple[Path, Path] | None = None
    """A copy that did not match: where it was, and where it is kept as evidence."""

    def describe(self, entry: SourceEntry) -> list[str]:
        if self.set_aside is None:
            return []
        was, kept = self.set_aside
        return [f"the cached copy {was} failed its {entry.algorithm} check and is kept as {kept}"]


def _copy_problem(path: Path, entry: SourceEntry) -> str | None:
    try:
        actual = integrity.digest_of(path, entry.algorithm.lower())
    except OSError as exc:
        return f"{path.name} cannot be read as a file: {exc.strerror}"
    if actual != entry.digest:
        return f"{path.name}: {entry.algorithm} {actual}, expected {entry.digest}"
    return None


def _fetch(
    url: str, out: BinaryIO, name: str, algorithm: str, progress: ProgressSink | None
) -> str:
    """Download `url` into `out` under kxen's retry policy (`kxen.support.download`);
    the hex digest of what arrived."""
    request = download.Request(url, name, algorithm=algorithm.lower())
    fetched = download.fetch(request, out, progress=progress)
    assert fetched.digest is not None
    return fetched.digest


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link when on one file system (no copy of a 140 MB tarball), else copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def mirror_urls(mirrors: Iterable[str], relative_path: str) -> list[str]:
    return [mirror + relative_path for mirror in mirrors]
