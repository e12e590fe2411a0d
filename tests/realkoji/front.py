"""The WSGI application gunicorn serves for the real-koji tests: koji's own hub at
/kojihub (and /kojihub/ssllogin), the hub's KojiDir as static files at /kojifiles/, as
Apache serves them on a koji hub.

With TLS (gunicorn's --certfile/--ca-certs), a verified client certificate becomes
mod_ssl's environment (SSL_CLIENT_VERIFY, SSL_CLIENT_S_DN, SSL_CLIENT_S_DN_CN), which is
what the hub's sslLogin reads. Configured by the environment gunicorn is started with:
KXEN_REALKOJI_HUBCONF (hub.conf) and KXEN_REALKOJI_TOPDIR (KojiDir); with
KXEN_REALKOJI_UPLOAD_TIMES, each chunk of koji's fast upload (a POST whose query names the
`filename`) appends `<filepath>/<filename> <offset> <bytes> <start> <end>` there (wall
clock, seconds): the hub's own view of an upload, which tools/bench-koji-upload measures.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kojihub import kojixmlrpc

HUB_CONF = os.environ["KXEN_REALKOJI_HUBCONF"]
TOPDIR = Path(os.environ["KXEN_REALKOJI_TOPDIR"]).resolve()
CHUNK = 1 << 16
UPLOAD_TIMES = os.environ.get("KXEN_REALKOJI_UPLOAD_TIMES")

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/kojihub" or path.startswith("/kojihub/"):
        environ["koji.hub.ConfigFile"] = HUB_CONF
        environ["koji.hub.ConfigDir"] = HUB_CONF + ".d"
        environ.update(_mod_ssl(environ))
        if UPLOAD_TIMES and "filename=" in environ.get("QUERY_STRING", ""):
            return _timed_upload(environ, start_response, UPLOAD_TIMES)
        return kojixmlrpc.application(environ, start_response)  # type: ignore[no-any-return]
    if path.startswith("/kojifiles/"):
        return _static(environ, start_response, path.removeprefix("/kojifiles/"))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def _timed_upload(environ: dict[str, Any], start_response: StartResponse, log: str) -> Any:
    """One upload chunk through the hub (which reads, checks and writes it before it
    answers), its times appended to `log`."""
    start = time.time()
    answer = kojixmlrpc.application(environ, start_response)
    end = time.time()
    query = urllib.parse.parse_qs(environ["QUERY_STRING"])
    name = f"{query.get('filepath', [''])[0]}/{query['filename'][0]}"
    offset = query.get("offset", ["0"])[0]
    with open(log, "a") as out:
        out.write(f"{name} {offset} {environ.get('CONTENT_LENGTH') or 0} {start:.6f} {end:.6f}\n")
    return answer


def _mod_ssl(environ: dict[str, Any]) -> dict[str, str]:
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return {}
    environ["HTTPS"] = "on"
    cert = sock.getpeercert()
    if not cert:
        return {"SSL_CLIENT_VERIFY": "NONE"}
    subject = [pair for rdn in cert.get("subject", ()) for pair in rdn]
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    dn = ",".join(f"{short.get(k, k)}={v}" for k, v in reversed(subject))
    values = {"SSL_CLIENT_VERIFY": "SUCCESS", "SSL_CLIENT_S_DN": dn}
    for key, value in subject:
        if key in short:
            values[f"SSL_CLIENT_S_DN_{short[key]}"] = value
    return values


def _static(environ: dict[str, Any], start_response: StartResponse, rel: str) -> Iterable[bytes]:
    target = (TOPDIR / rel).resolve()
    if not target.is_relative_to(TOPDIR) or not target.is_file():
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    size = target.stat().st_size
    start, end = 0, size
    status = "200 OK"
    ranged = environ.get("HTTP_RANGE", "")
    if ranged.startswith("bytes=") and "," not in ranged:
        first, _, last = ranged[6:].partition("-")
        if first.isdigit() and int(first) < size:
            start = int(first)
            end = int(last) + 1 if last.isdigit() else size
            status = "206 Partial Content"
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(end - start))]
    if status.startswith("206"):
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
    start_response(status, headers)
    return _read(target, start, end)


def _read(target: Path, start: int, end: int) -> Iterator[bytes]:
    with target.open("rb") as data:
        data.seek(start)
        left = end - start
        while left > 0:
            block = data.read(min(CHUNK, left))
            if not block:
                return
            left -= len(block)
            yield block
