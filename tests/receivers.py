"""Real receivers on 127.0.0.1 for the nightly's notifications, each on a port the kernel
picks: an HTTP server that keeps every POST (and answers some paths otherwise), and an
SMTP server (aiosmtpd) that keeps the mail it is given."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """200 for every POST, but /moved (a redirect elsewhere), /broken (500) and /slow."""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.requests.append(
                Received(self.path, dict(self.headers.items()), self.rfile.read(length))
            )
            if self.path == "/slow":
                time.sleep(2)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "ftp://elsewhere.example/")
            else:
                self.send_response(500 if self.path == "/broken" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook() -> Iterator[Receiver]:
    receiver = Receiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.content, policy=email.policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]


class EphemeralController(Controller):
    """aiosmtpd's Controller on a port the kernel picks: it connects to its own port to
    see that it is up, so the port is taken (bound) before it starts."""

    def __init__(self, handler: Mailbox) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._socket.getsockname()[1])

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._socket)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = EphemeralController(box)
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])
