"""kxen.support.download's retry policy against a loopback HTTP server that answers from
a script: what is retried, after which pauses, and what fails at once."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kxen.support import download

BODY = b"kernel bits " * 1000


class Script:
    """What the server answers, one entry per request: an HTTP status, or "short" (a body
    that stops half way), or "ok"."""

    def __init__(self) -> None:
        self.answers: list[int | str] = []
        self.requests = 0


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            script.requests += 1
            answer = script.answers.pop(0) if script.answers else "ok"
            if isinstance(answer, int):
                self.send_error(answer)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY if answer == "ok" else BODY[: len(BODY) // 2])

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/file", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _fetch(url: str, sleeps: list[float], **request: object) -> tuple[bytes, download.Fetched]:
    out = io.BytesIO()
    got = download.fetch(
        download.Request(url, **request),  # type: ignore[arg-type]
        out,
        sleep=sleeps.append,
    )
    return out.getvalue(), got


def test_transient_failures_are_retried_from_the_first_byte(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.answers = [503, "short"]
    sleeps: list[float] = []
    data, got = _fetch(url, sleeps, algorithm="sha256")
    assert data == BODY  # the short attempt's half body was thrown away
    assert got == download.Fetched(len(BODY), hashlib.sha256(BODY).hexdigest())
    assert sleeps == [1.0, 2.0] and script.requests == 3


def test_transient_failures_outlasting_the_patience(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [502, 429, 503, 503]
    sleeps: list[float] = []
    with pytest.raises(download.Unavailable) as gave_up:
        _fetch(url, sleeps)
    assert gave_up.value.reason == "HTTP 503" and gave_up.value.waited == 3.0
    assert sleeps == [1.0, 2.0] and script.requests == 3


@pytest.mark.parametrize("status", [403, 404])
def test_client_errors_fail_at_once(server: tuple[str, Script], status: int) -> None:
    url, script = server
    script.answers = [status]
    sleeps: list[float] = []
    with pytest.raises(download.Refused, match=f"HTTP {status}"):
        _fetch(url, sleeps)
    assert sleeps == [] and script.requests == 1


def test_more_than_the_limit_or_the_listed_size_fails_at_once(
    server: tuple[str, Script],
) -> None:
    url, script = server
    sleeps: list[float] = []
    with pytest.raises(download.TooLarge):
        _fetch(url, sleeps, limit=len(BODY) - 1)
    with pytest.raises(download.TooLarge):
        _fetch(url, sleeps, size=len(BODY) - 1)
    assert sleeps == [] and script.requests == 2


def test_fewer_bytes_than_listed_are_retried(server: tuple[str, Script]) -> None:
    url, _ = server
    sleeps: list[float] = []
    with pytest.raises(download.Unavailable, match=f"got {len(BODY)} of {len(BODY) + 1} bytes"):
        _fetch(url, sleeps, size=len(BODY) + 1)
    assert sleeps == [1.0, 2.0]


def test_a_missing_file_and_a_bad_url_fail_at_once(tmp_path: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(download.Refused):
        _fetch(f"file://{tmp_path}/nothing-here", sleeps)
    with pytest.raises(download.Refused):
        _fetch("nonsense://x", sleeps)
    assert sleeps == []


def test_read_returns_a_small_file(tmp_path: Path) -> None:
    (tmp_path / "sig").write_bytes(b"signature")
    url = f"file://{tmp_path}/sig"
    assert download.read(download.Request(url, limit=64)) == b"signature"
    with pytest.raises(download.TooLarge):
        download.read(download.Request(url, limit=4))


def test_retrying_backs_off_doubling_up_to_the_longest_pause() -> None:
    sleeps: list[float] = []
    notices: list[tuple[str, float]] = []

    def attempt() -> None:
        raise download.Transient("hub away")

    patience = download.Patience(total=20, first=2, longest=8)
    with pytest.raises(download.GaveUp) as gave_up:
        download.retrying(attempt, patience, sleeps.append, lambda *n: notices.append(n))
    assert sleeps == [2, 4, 8, 8] and gave_up.value.waited == 22
    assert notices == [("hub away", delay) for delay in sleeps]
