"""A lookaside cache on 127.0.0.1 the way dist-git's httpd configuration serves one.

`POST /repo/pkgs/upload.cgi` runs dist-git's real `upload.cgi` (in place, from the shared
third_party tree, never a copy) as a CGI/1.1 script: the request body on its stdin, the
CGI variables in its environment, `$DISTGIT_CONFIG` naming the test's dist-git.conf; its
`Status:` header becomes the HTTP status. `GET /repo/pkgs/<path>` serves the lookaside
tree the CGI fills (fedpkg's download URLs), refusing any path that leaves it.

Run as `python lookaside_server.py CGI LOOKASIDE_DIR PORT_FILE LOG [CERT KEY CLIENT_CA]`: it
listens on a free port, writes the port into PORT_FILE and serves until it is terminated.
With CERT, KEY and CLIENT_CA it serves HTTPS the way dist-git's mod_ssl setup does
(`SSLVerifyClient optional`, `+StdEnvVars`): a verified client certificate's CN reaches the
CGI as `SSL_CLIENT_S_DN_CN`, the name it knows the uploader by; over plain HTTP the
uploader is `REMOTE_USER=packager`.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/repo/pkgs/"
UPLOAD = PREFIX + "upload.cgi"


class Handler(BaseHTTPRequestHandler):
    server_version = "kxen-test-lookaside"
    cgi: Path
    lookaside: Path
    log: Path

    def do_POST(self) -> None:
        if self.path != UPLOAD:
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        with tempfile.TemporaryFile() as body, self.log.open("ab") as log:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                body.write(chunk)
                remaining -= len(chunk)
            body.seek(0)
            ran = subprocess.run(
                [sys.executable, str(self.cgi)],
                stdin=body,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self._cgi_environment(length),
                check=False,
            )
        self._relay(ran.stdout)

    def _cgi_environment(self, length: int) -> dict[str, str]:
        host, port = self.server.server_address[:2]
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DISTGIT_CONFIG": os.environ["DISTGIT_CONFIG"],
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "REQUEST_METHOD": "POST",
            "REQUEST_URI": self.path,
            "SCRIPT_NAME": UPLOAD,
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            **self._user(),
        }

    def _user(self) -> dict[str, str]:
        if not isinstance(self.connection, ssl.SSLSocket):
            return {"REMOTE_USER": "packager"}
        subject = (self.connection.getpeercert() or {}).get("subject", ())
        names = [value for rdn in subject for key, value in rdn if key == "commonName"]
        return {"HTTPS": "on", **({"SSL_CLIENT_S_DN_CN": names[0]} if names else {})}

    def _relay(self, output: bytes) -> None:
        head, _, body = output.replace(b"\r\n", b"\n").partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key.strip(), value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        relative = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not relative.startswith(PREFIX):
            self.send_error(404)
            return
        target = (self.lookaside / relative[len(PREFIX) :]).resolve()
        if self.lookaside.resolve() not in target.parents or not target.is_file():
            self.send_error(404)
            return
        with target.open("rb") as handle:
            self.send_response(200)
            self.send_header("Content-Length", str(target.stat().st_size))
            self.end_headers()
            shutil.copyfileobj(handle, self.wfile)

    def log_message(self, format: str, *args: object) -> None:
        with self.log.open("a") as log:
            log.write(f"{self.address_string()} {format % args}\n")


def main(cgi: str, lookaside: str, port_file: str, log: str, *tls: str) -> None:
    Handler.cgi, Handler.lookaside, Handler.log = Path(cgi), Path(lookaside), Path(log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        cert, key, client_ca = tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
        server.socket = context.wrap_socket(server.socket, server_side=True)
    Path(port_file + ".tmp").write_text(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
