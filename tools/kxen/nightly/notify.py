"""Telling people about a nightly: a JSON POST to a webhook, or a mail through SMTP.

Only a run worth telling about is sent (a regression, a failure, a recovery). Delivery
is best effort: whatever goes wrong with one target (refused, unreachable, slow, a bad
SMTP setting) becomes its outcome line, never an exception, and never changes the run's
verdict. The targets are checked when the command line is read (`check_target`), so a
typo fails the command before anything is built.

Every text sent comes from builds and names that may be hostile: it is neutralised (no
control characters, so no line break can start a mail header), and the summary is the
same data for both kinds of target.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import socket
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from kxen.errors import InputError
from kxen.nightly.model import Change, Run, Status, Step
from kxen.support.text import neutralise

TIMEOUT = 10.0
"""Seconds a webhook or the SMTP server may take (to connect, and for each reply)."""
SHOWN = 120
"""Characters shown of a target or a reason in a message."""
EXCERPT_LINES, EXCERPT_WIDTH = 40, 500
SMTP_HOST, SMTP_PORT, SMTP_FROM = "KXEN_SMTP_HOST", "KXEN_SMTP_PORT", "KXEN_SMTP_FROM"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})*$")
"""A plain address (`user@host`): no display name, no comments, no second recipient."""


# --- the targets ------------------------------------------------------------------------


def check_target(url: str) -> None:
    """Refuse (InputError, exit 2) what is not an http://, https:// or mailto:address."""
    _parse(url)


def _parse(url: str) -> tuple[str, str]:
    """(`http` or `mail`, the URL or the address)."""
    if url != neutralise(url) or any(c.isspace() for c in url):
        raise _refused(url, "it holds a space or a control character")
    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            return "http", _web(url, parts)
        if parts.scheme == "mailto":
            return "mail", _address(url, parts)
    except ValueError as error:  # urlsplit and .port on a malformed URL
        raise _refused(url, str(error)) from None
    raise _refused(url, "not an http://, https:// or mailto: target")


def _web(url: str, parts: SplitResult) -> str:
    if not parts.hostname:
        raise _refused(url, "no host")
    _ = parts.port  # raises ValueError for a port that is no number or out of range
    return url


def _address(url: str, parts: SplitResult) -> str:
    address = parts.path
    if parts.netloc or parts.query or parts.fragment or not _ADDRESS.match(address):
        raise _refused(url, "not a mailto:user@host address")
    return address


def _refused(url: str, why: str) -> InputError:
    return InputError(f"--notify {_short(url)!r}: {why}")


def _short(text: str) -> str:
    """One line of at most SHOWN characters."""
    line = neutralise(text)
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"


def _shown(url: str) -> str:
    """A target as an outcome line may show it: without a password in the URL."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            url = parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
    except ValueError:
        pass
    return _short(url)


# --- what is sent -----------------------------------------------------------------------


def worth_telling(run: Run) -> bool:
    """A regression, a cell that failed or errored, or a recovery."""
    failed = any(cell.status in (Status.FAIL, Status.ERROR) for cell in run.cells)
    return failed or bool(run.regressions or run.recoveries)


def summary(run: Run, report_path: Path) -> dict[str, Any]:
    """What both a webhook and a mail say, every text neutralised."""
    git = run.upstream.get("git")
    git = git if isinstance(git, dict) else {}
    commits = [_text(line) for line in run.commits]
    return {
        "run": _text(run.id),
        "status": str(run.status),
        "upstream": {
            "commit": _text(git.get("commit") or ""),
            "describe": _text(git.get("describe") or ""),
            "version": _text(run.upstream.get("version") or ""),
        },
        "cells": [
            {
                "cell": _text(cell.name),
                "status": str(cell.status),
                "failure": _step(cell.failure) if cell.failure else None,
            }
            for cell in run.cells
        ],
        "regressions": [_change(change, commits) for change in run.regressions],
        "recoveries": [_change(change, []) for change in run.recoveries],
        "previous": _text(run.previous or ""),
        "commits": commits,
        "report": _text(report_path),
    }


def _text(value: object) -> str:
    return neutralise(str(value))


def _excerpt(lines: list[str]) -> list[str]:
    """The first error lines, as many and as long as a mail or a chat message can take."""
    return [_text(line)[:EXCERPT_WIDTH] for line in lines[:EXCERPT_LINES]]


def _step(step: Step) -> dict[str, Any]:
    return {
        "step": _text(step.name),
        "status": str(step.status),
        "summary": _text(step.summary),
        "excerpt": _excerpt(step.excerpt),
    }


def _change(change: Change, commits: list[str]) -> dict[str, Any]:
    """A regression names the commits since the cell last passed; a recovery does not."""
    found = {
        "cell": _text(change.cell),
        "step": _text(change.step),
        "excerpt": _excerpt(change.excerpt),
    }
    return found | ({"commits": commits} if commits else {})


def subject(data: dict[str, Any]) -> str:
    """`kxen nightly <run>: <status> (<n> regressions)`, of a summary."""
    count = len(data["regressions"])
    noun = "regression" if count == 1 else "regressions"
    return f"kxen nightly {data['run']}: {data['status']} ({count} {noun})"


def body(data: dict[str, Any]) -> str:
    """The summary as plain text, for a mail."""
    upstream = data["upstream"]
    lines = [
        subject(data),
        f"upstream: {upstream['describe'] or upstream['version']} {upstream['commit']}".rstrip(),
        f"report: {data['report']}",
        "",
        "Cells:",
    ]
    for cell in data["cells"]:
        failure = cell["failure"]
        said = f": {failure['step']}: {failure['summary']}" if failure else ""
        lines.append(f"  {cell['cell']}  {cell['status']}{said}")
    for kind in ("regressions", "recoveries"):
        if data[kind]:
            lines += ["", f"{kind.capitalize()}:"]
        for change in data[kind]:
            lines.append(f"  {change['cell']} at {change['step']}")
            lines += [f"    | {line}" for line in change["excerpt"]]
    if data["commits"]:
        lines += ["", f"Commits since run {data['previous']} (newest first):"]
        lines += [f"  {line}" for line in data["commits"]]
    return "\n".join(lines) + "\n"


# --- delivery ---------------------------------------------------------------------------


def send(run: Run, targets: list[str], report_path: Path) -> list[str]:
    """Tell each target; one outcome line per target, in their order."""
    data = summary(run, report_path)
    return [_deliver(target, data) for target in targets]


def _deliver(target: str, data: dict[str, Any]) -> str:
    """`delivered to URL` or `not delivered to URL: reason`, whatever happened: a
    notification must never stop the others or change the run's verdict."""
    try:
        kind, where = _parse(target)
        if kind == "http":
            _post(where, data)
        else:
            _mail(where, subject(data), body(data))
    except Exception as error:  # any failure of one delivery is its outcome, not ours
        return f"not delivered to {_shown(target)}: {_reason(error)}"
    return f"delivered to {_shown(target)}"


def _reason(error: Exception) -> str:
    import requests  # only when a notification is sent: `kxen nightly` starts faster

    text = str(error) or type(error).__name__
    if isinstance(error, requests.Timeout | TimeoutError):
        text = f"no answer within {TIMEOUT:g} s"
    elif isinstance(error, requests.ConnectionError | ConnectionError):
        text = f"could not connect ({type(error).__name__})"
    return _short(text)


class Undelivered(Exception):
    """The receiver answered, but did not take the notification."""


def _post(url: str, data: dict[str, Any]) -> None:
    """POST the summary; only a 2xx answer is a delivery (a redirect is not followed, so
    the summary goes nowhere but where the user said)."""
    import requests

    response = requests.post(
        url,
        data=json.dumps(data).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "kxen-nightly"},
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    response.close()
    if not 200 <= response.status_code < 300:
        moved = " (redirects are not followed)" if response.is_redirect else ""
        raise Undelivered(f"HTTP {response.status_code} {_text(response.reason)}{moved}")


def _mail(address: str, title: str, text: str) -> None:
    """Mail through the SMTP server of $KXEN_SMTP_HOST:$KXEN_SMTP_PORT (localhost:25)."""
    host = os.environ.get(SMTP_HOST) or "localhost"
    port = _port(os.environ.get(SMTP_PORT) or "25")
    sender = os.environ.get(SMTP_FROM) or f"kxen@{socket.gethostname()}"
    message = EmailMessage()
    message["From"] = _text(sender)  # EmailMessage refuses a line break in a header
    message["To"] = address
    message["Subject"] = title
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid("kxen", domain=_text(sender).rpartition("@")[2] or None)
    message.set_content(text)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
        smtp.send_message(message)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Undelivered(f"${SMTP_PORT} {_short(text)!r} is not a port number")
    return int(text)
