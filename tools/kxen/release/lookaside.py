"""The lookaside cache of a dist-git, as Fedora runs it: uploads through dist-git's
`upload.cgi`, downloads from the tree it fills.

The upload protocol is the CGI's (what rpkg's client sends): a multipart POST of
`name` (the package, optionally `namespace/name`), `sha512sum` and `filename` asks
whether the file is there; the CGI answers `Available` or `Missing`. A missing file is
then POSTed with `name`, `sha512sum` and the `file` itself; the CGI hashes what arrived,
refuses a mismatch, and stores it as `<name>/<file>/sha512/<hash>/<file>`, the path
fedpkg downloads from below the lookaside's base URL. A file already there is never sent
again.

The body is streamed from the file (a kernel tarball is 140 MB), its progress reported
as it goes. Connection failures and 502/503/504 answers are retried under kxen's policy
(`kxen.support.download`); any other answer is final and reported with the CGI's text.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import InputError, LookasideError, SourceError
from kxen.patches.series import safe_name
from kxen.support import download
from kxen.support.download import Patience, Sleep, TransferSink
from kxen.support.text import neutralise
from kxen.upstream.sources import SourceEntry, file_digest

HASH_TYPE = "sha512"
CHUNK = 1 << 20
TIMEOUT_SECONDS = 300
RETRY = Patience(total=30.0, first=1.0, longest=8.0)
_TRANSIENT_STATUS = (502, 503, 504)
_PART = "[A-Za-z0-9][A-Za-z0-9._+-]*"
_NAME_RE = re.compile(f"{_PART}(/{_PART})?")
_DIGEST_RE = re.compile(r"[0-9a-f]{128}")
ANSWER_LIMIT = 4096


def check_name(name: str) -> str:
    """A package name as dist-git knows it (`kernel-xen`, `rpms/kernel-xen`): it becomes
    a path on the server and in every download URL."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise InputError(f"lookaside package name {name!r}: expected NAME or NAMESPACE/NAME")
    return name


def check_url(url: str, what: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{what} {url!r}: expected an http:// or https:// URL")
    if any(c in url for c in " \"'<>\\") or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise InputError(f"{what} {url!r}: holds a character a URL may not")
    return parts


def download_url(base: str, name: str, filename: str, digest: str) -> str:
    """fedpkg's layout: `<base>/<name>/<file>/sha512/<hash>/<file>`."""
    check_url(base, "lookaside base URL")
    quoted = urllib.parse.quote(filename)
    return f"{base.rstrip('/')}/{check_name(name)}/{quoted}/{HASH_TYPE}/{digest}/{quoted}"


@dataclass(frozen=True)
class Tls:
    """TLS for https://: a client certificate (PEM with its key) and the CA to trust."""

    cert: Path | None = None
    ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert))
        return context


@dataclass(frozen=True)
class Uploaded:
    file: str
    sha512: str
    sent: bool
    """False: the lookaside had it already, nothing was sent."""
    size: int


class Uploader:
    """One lookaside's `upload.cgi`, for one package."""

    def __init__(
        self,
        url: str,
        name: str,
        tls: Tls | None = None,
        progress: TransferSink | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.parts = check_url(url, "lookaside upload URL")
        self.url = url
        self.name = check_name(name)
        self.tls = tls or Tls()
        self.progress = progress
        self.sleep = sleep

    def has(self, filename: str, digest: str) -> bool:
        """Ask the CGI whether the file with this hash is there."""
        fields = {"name": self.name, f"{HASH_TYPE}sum": digest, "filename": filename}
        answer = self._post(fields, None)
        if answer == "Available":
            return True
        if answer == "Missing":
            return False
        raise LookasideError(f"{self.url}: unexpected answer about {filename}: {answer!r}")

    def upload(self, path: Path, filename: str, digest: str) -> Uploaded:
        """Send the file unless the lookaside has it already."""
        if not safe_name(filename):
            raise InputError(f"refusing to upload a file named {filename!r} (not a plain name)")
        size = path.stat().st_size
        if self.has(filename, digest):
            return Uploaded(filename, digest, False, size)
        fields = {"name": self.name, f"{HASH_TYPE}sum": digest}
        answer = self._post(fields, (filename, path))
        if "stored OK" not in answer and "already exists" not in answer:
            raise LookasideError(f"{self.url}: {filename}: unexpected answer {answer!r}")
        return Uploaded(filename, digest, True, size)

    def _post(self, fields: dict[str, str], upload: tuple[str, Path] | None) -> str:
        def attempt() -> str:
            return self._attempt(fields, upload)

        try:
            return download.retrying(attempt, RETRY, self.sleep)
        except download.GaveUp as exc:
            raise LookasideError(
                f"{self.url}: the lookaside stayed unreachable ({exc.reason})"
            ) from None

    def _attempt(self, fields: dict[str, str], upload: tuple[str, Path] | None) -> str:
        body = _Multipart(fields, upload)
        try:
            with contextlib.closing(self._connection()) as connection:
                connection.putrequest("POST", self.parts.path or "/")
                connection.putheader("Content-Type", body.content_type)
                connection.putheader("Content-Length", str(body.length))
                connection.endheaders()
                for done, chunk in body.chunks():
                    connection.send(chunk)
                    if upload is not None and self.progress is not None:
                        self.progress(upload[0], done, body.length)
                response = connection.getresponse()
                text = response.read(ANSWER_LIMIT).decode("utf-8", "replace").strip()
                status = response.status
        except (OSError, http.client.HTTPException) as exc:
            refused = download.tls_refusal(exc)
            if refused is not None:
                raise LookasideError(f"{self.url}: TLS refused: {refused}") from None
            raise download.Transient(str(exc) or type(exc).__name__) from None
        if status in _TRANSIENT_STATUS:
            raise download.Transient(f"HTTP {status}")
        if status != 200:
            said = neutralise(text.splitlines()[0] if text else "")
            raise LookasideError(f"{self.url}: HTTP {status}: {said}")
        return text

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.parts.hostname or "", self.parts.port
        if self.parts.scheme == "https":
            context = self.tls.context()
            return http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SECONDS, context=context)
        return http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)


class _Multipart:
    """A multipart/form-data body streamed from its parts (the file is never read whole)."""

    def __init__(self, fields: dict[str, str], upload: tuple[str, Path] | None) -> None:
        self.boundary = f"kxen-{secrets.token_hex(16)}"
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        head = "".join(self._field(key, value) for key, value in fields.items())
        self.upload = upload
        if upload is not None:
            head += (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{upload[0]}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
        self.head = head.encode()
        self.tail = (("\r\n" if upload else "") + f"--{self.boundary}--\r\n").encode()
        size = upload[1].stat().st_size if upload else 0
        self.length = len(self.head) + size + len(self.tail)

    def _field(self, key: str, value: str) -> str:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        )

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        done = len(self.head)
        yield done, self.head
        if self.upload is not None:
            with self.upload[1].open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    done += len(chunk)
                    yield done, chunk
        yield done + len(self.tail), self.tail


# --- downloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    file: str
    sha512: str
    downloaded: bool
    """False: the directory held a good copy already."""


def download_sources(
    base: str,
    name: str,
    entries: Iterable[SourceEntry],
    directory: Path,
    progress: TransferSink | None = None,
    tls: Tls | None = None,
) -> list[Downloaded]:
    """Every file of a dist-git `sources` list into `directory` (a checkout, as `fedpkg
    sources` does): a good copy there is kept; a download goes to an untrusted
    temporary name, is checked against its hash, and only then renamed (a symlink at
    the final name is replaced, never followed)."""
    done = []
    for entry in entries:
        if entry.algorithm != HASH_TYPE.upper() or not _DIGEST_RE.fullmatch(entry.digest):
            raise InputError(f"{entry.filename}: the lookaside is addressed by SHA512 only")
        final = directory / entry.filename
        if _good_copy(final, entry.digest):
            done.append(Downloaded(entry.filename, entry.digest, False))
            continue
        url = download_url(base, name, entry.filename, entry.digest)
        _fetch_checked(url, entry, final, progress, tls)
        done.append(Downloaded(entry.filename, entry.digest, True))
    return done


def _good_copy(path: Path, digest: str) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    return file_digest(path, HASH_TYPE) == digest


def _fetch_checked(
    url: str, entry: SourceEntry, final: Path, progress: TransferSink | None, tls: Tls | None
) -> None:
    fd, name = tempfile.mkstemp(prefix=".kxen-untrusted-", dir=final.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = download.Request(
                url, entry.filename, algorithm=HASH_TYPE, context=tls.context() if tls else None
            )
            fetched = download.fetch(request, out, progress=progress)
        if fetched.digest != entry.digest:
            raise SourceError(
                f"{entry.filename}: SHA512 mismatch: expected {entry.digest}, "
                f"got {fetched.digest} (from {url})"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except download.DownloadError as exc:
        raise LookasideError(f"{entry.filename}: {url}: {exc.reason}") from None
    finally:
        tmp.unlink(missing_ok=True)
