"""Every download kxen makes, under one retry policy: upstream files from the manifest's
mirrors (`kxen sources`, `kxen bump`), their detached signatures, and koji task output
from a hub's `topurl`.

The policy:

- A failure another attempt may well not meet is retried: the connection was refused,
  reset or timed out, a name lookup failed for the time being, the server answered 408,
  425, 429 or 5xx, or the body ended short of the size announced or expected.
- Each attempt starts from the first byte: the caller's output is emptied and any digest
  starts over, so what a failed attempt wrote never mixes with what the next one writes.
- The pauses between attempts start at `Patience.first` seconds and double up to
  `Patience.longest`; once they add up to `Patience.total`, the next failure is final
  (`Unavailable`). The budget is the caller's: a mirror or a signature gets
  `MIRRORS` (1 s, then 2 s: a dead mirror should hand over to the next one quickly),
  koji task output the hub's own patience (2 s doubling to 60 s, 15 minutes).
- Anything else fails at once (`Refused`): an HTTP 4xx, a missing `file://` path, a URL
  urllib does not take, a TLS certificate either side refuses (`TlsRefused`), or more
  bytes than the caller allows or expects (`TooLarge`).
- The sleep is injectable, so tests see the pauses without waiting for them.

`retrying` is the backoff loop itself; the koji driver retries its XML-RPC calls with it
under the same rules.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

T = TypeVar("T")

CHUNK = 1 << 20
TIMEOUT_SECONDS = 60
_TRANSIENT_HTTP = (408, 425, 429)

Sleep = Callable[[float], None]
RetryNotice = Callable[[str, float], None]
"""Called as (why the attempt failed, seconds until the next one)."""
TransferSink = Callable[[str, int, int | None], None]
"""Called as (name, bytes so far, total bytes or None)."""


@dataclass(frozen=True)
class Patience:
    """How long transient failures are ridden out: pauses from `first` seconds, doubling
    up to `longest`, until they add up to `total`."""

    total: float = 900.0
    first: float = 2.0
    longest: float = 60.0


MIRRORS = Patience(total=3.0, first=1.0, longest=2.0)


class Transient(Exception):
    """A failure a later attempt may not meet (raised inside an attempt)."""


class GaveUp(Exception):
    """Transient failures outlasted the patience."""

    def __init__(self, reason: str, waited: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.waited = waited


def retrying(
    attempt: Callable[[], T],
    patience: Patience,
    sleep: Sleep = time.sleep,
    on_retry: RetryNotice | None = None,
) -> T:
    """`attempt()` until it returns. A `Transient` it raises is retried after the next
    pause; once the pauses used up the patience, `GaveUp` says why. Anything else it
    raises goes through at once."""
    waited, delay = 0.0, patience.first
    while True:
        try:
            return attempt()
        except Transient as exc:
            reason = str(exc)
        if waited >= patience.total:
            raise GaveUp(reason, waited)
        if on_retry is not None:
            on_retry(reason, delay)
        sleep(delay)
        waited += delay
        delay = min(delay * 2, patience.longest)


class DownloadError(Exception):
    """A download failed for good; `reason` says why, `url` where from."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


class Unavailable(DownloadError):
    """Transient failures outlasted the patience."""

    def __init__(self, url: str, reason: str, waited: float) -> None:
        super().__init__(url, reason)
        self.waited = waited


class Refused(DownloadError):
    """A failure no retry mends."""


class TlsRefused(Refused):
    """A TLS certificate was refused (ours by the server, or the server's by us)."""


class TooLarge(Refused):
    """More bytes than the caller allows or expects."""


@dataclass(frozen=True)
class Fetched:
    size: int
    digest: str | None
    """The hex digest of what arrived, if an algorithm was asked for."""


@dataclass(frozen=True)
class Request:
    """One download: where from, and what the caller holds it to."""

    url: str
    name: str = ""
    """What progress calls it (default: the URL)."""
    size: int | None = None
    """The exact size expected (koji lists it): fewer bytes are retried, more refused."""
    limit: int | None = None
    """The most bytes accepted (a signature's cap)."""
    algorithm: str | None = None
    """hashlib name of a digest to compute over what arrives (`Fetched.digest`)."""
    context: ssl.SSLContext | None = None
    """TLS trust for https:// (default: the system's CAs)."""


def fetch(
    request: Request,
    out: BinaryIO,
    *,
    patience: Patience = MIRRORS,
    sleep: Sleep = time.sleep,
    progress: TransferSink | None = None,
    on_retry: RetryNotice | None = None,
) -> Fetched:
    """Download `request.url` into `out` (emptied before each attempt) under the policy."""

    def attempt() -> Fetched:
        out.seek(0)
        out.truncate()
        return _attempt(request, out, progress)

    try:
        return retrying(attempt, patience, sleep, on_retry)
    except GaveUp as exc:
        raise Unavailable(request.url, exc.reason, exc.waited) from None


def read(request: Request, *, patience: Patience = MIRRORS, sleep: Sleep = time.sleep) -> bytes:
    """A small download (give `request.limit`) as bytes, under the policy."""
    buffer = io.BytesIO()
    fetch(request, buffer, patience=patience, sleep=sleep)
    return buffer.getvalue()


def _attempt(request: Request, out: BinaryIO, progress: TransferSink | None) -> Fetched:
    hasher = hashlib.new(request.algorithm) if request.algorithm else None
    bounds = [n for n in (request.size, request.limit) if n is not None]
    most = min(bounds) if bounds else None
    name = request.name or request.url
    done = 0
    try:
        with urllib.request.urlopen(
            request.url, timeout=TIMEOUT_SECONDS, context=request.context
        ) as answer:
            total = request.size if request.size is not None else _announced(answer)
            while chunk := answer.read(CHUNK):
                done += len(chunk)
                if most is not None and done > most:
                    raise TooLarge(request.url, f"more than the {most} bytes expected")
                out.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                if progress is not None:
                    progress(name, done, total)
    except DownloadError:
        raise
    except Exception as exc:
        raise _classify(request.url, exc) from exc
    expected = request.size if request.size is not None else total
    if expected is not None and done < expected:
        raise Transient(f"got {done} of {expected} bytes")
    return Fetched(done, hasher.hexdigest() if hasher is not None else None)


def _announced(answer: object) -> int | None:
    headers = getattr(answer, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return int(length) if length and length.isdigit() else None


def _classify(url: str, exc: Exception) -> Exception:
    """A Transient to retry, or the Refused to raise at once."""
    refused = tls_refusal(exc)
    if refused is not None:
        return TlsRefused(url, str(refused))
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code >= 500 or exc.code in _TRANSIENT_HTTP:
            return Transient(f"HTTP {exc.code}")
        return Refused(url, f"HTTP {exc.code}")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        if reason.errno == socket.EAI_AGAIN:
            return Transient(str(reason))
        return Refused(url, str(reason))
    if isinstance(reason, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return Refused(url, str(reason))
    if isinstance(reason, (OSError, http.client.HTTPException)):
        return Transient(f"{reason or type(reason).__name__}")
    return Refused(url, str(reason))


def tls_refusal(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc` if retrying cannot help (a certificate either side refused).

    requests and urllib wrap the ssl error a few levels deep (in args, `reason` or the
    exception chain); an unexpected EOF or reset during the handshake is a dropped
    connection and is retried like any other."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError) and not isinstance(
            item, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
        ):
            return item
        pending += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None
