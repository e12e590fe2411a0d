"""Nightly notifications delivered for real: a webhook receiver (http.server) and an SMTP
server (aiosmtpd) on 127.0.0.1, each on a port the kernel picks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kxen.errors import InputError
from kxen.nightly import notify
from kxen.nightly.model import Change, Status

from .. import receivers
from ..receivers import Mailbox, Receiver, closed_port
from ..unit.test_nightly_report import HOSTILE, make_cell, make_run, regression_run

REPORT = Path("/srv/results/nightly/20261120T020000Z-202b3c4d5e6f/report.html")


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with receivers.webhook() as receiver:
        yield receiver


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    with receivers.smtp_server() as box:
        monkeypatch.setenv(notify.SMTP_HOST, "127.0.0.1")
        monkeypatch.setenv(notify.SMTP_PORT, str(box.port))
        monkeypatch.setenv(notify.SMTP_FROM, "nightly@build.example.org")
        yield box


# --- tests ------------------------------------------------------------------------------


def test_the_webhook_gets_the_summary_with_the_regression_and_commit_range(
    webhook: Receiver,
) -> None:
    run = regression_run()
    target = f"{webhook.url}/hooks/kxen"
    assert notify.send(run, [target], REPORT) == [f"delivered to {target}"]

    (request,) = webhook.requests
    assert request.path == "/hooks/kxen"
    assert request.headers["Content-Type"] == "application/json"
    data = json.loads(request.body)
    assert data["run"] == run.id
    assert data["status"] == "FAIL"
    assert data["upstream"]["describe"] == "v6.13-rc20"
    assert data["report"] == str(REPORT)
    (regression,) = data["regressions"]
    assert regression["cell"] == "x86_64/default"
    assert regression["step"] == "boot-pvh"
    assert regression["excerpt"][0].startswith("[    0.52] Kernel panic")
    assert regression["commits"] == [
        "abcdef012345 xen/pvh: drop the early console",
        "0123456789ab Linux 6.13-rc20",
    ]
    cells = {cell["cell"]: cell for cell in data["cells"]}
    assert cells["i686/smoke"]["status"] == "ERROR"
    assert cells["i686/smoke"]["failure"]["excerpt"] == ["mock: No space left on device"]
    assert cells["x86_64/smoke"]["failure"] is None


def test_the_mail_arrives_with_the_subject_and_the_excerpt(mailbox: Mailbox) -> None:
    run = regression_run()
    assert notify.send(run, ["mailto:kernel-team@example.org"], REPORT) == [
        "delivered to mailto:kernel-team@example.org"
    ]
    (envelope,) = mailbox.envelopes
    assert envelope.mail_from == "nightly@build.example.org"
    assert envelope.rcpt_tos == ["kernel-team@example.org"]
    (message,) = mailbox.messages()
    assert message["Subject"] == f"kxen nightly {run.id}: FAIL (1 regression)"
    assert message["To"] == "kernel-team@example.org"
    text = message.get_content().replace("\r\n", "\n")  # as SMTP carried it
    assert text.startswith(f"kxen nightly {run.id}: FAIL (1 regression)\n")
    assert "  i686/smoke  ERROR: build: build did not pass" in text
    assert "x86_64/default at boot-pvh" in text
    assert "    | [    0.52] Kernel panic - not syncing: VFS: Unable to mount root fs" in text
    assert "  abcdef012345 xen/pvh: drop the early console" in text
    assert f"report: {REPORT}" in text


def test_hostile_names_cannot_add_mail_headers(mailbox: Mailbox) -> None:
    run = make_run(21, [make_cell("x86_64", f"x\r\nBcc: victim@evil.example\r\n{HOSTILE}", 21)])
    run.id = "20261121T020000Z-1\r\nBcc: victim@evil.example"
    run.cells[0].steps[-1].status = Status.FAIL
    run.changes = [Change(run.cells[0].name, "regression", "boot-pvh", ["a\r\nBcc: x@y"])]
    assert notify.send(run, ["mailto:team@example.org"], REPORT) == [
        "delivered to mailto:team@example.org"
    ]
    (envelope,) = mailbox.envelopes
    assert envelope.rcpt_tos == ["team@example.org"]
    (message,) = mailbox.messages()
    assert message["Bcc"] is None
    assert message["Subject"].startswith("kxen nightly 20261121T020000Z-1??Bcc: victim@evil")
    assert "\r" not in message.get_content().replace("\r\n", "\n")


def test_unreachable_targets_are_reported_and_nothing_raises(
    monkeypatch: pytest.MonkeyPatch, webhook: Receiver
) -> None:
    monkeypatch.setenv(notify.SMTP_HOST, "127.0.0.1")
    monkeypatch.setenv(notify.SMTP_PORT, str(closed_port()))
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    targets = [dead, "mailto:team@example.org", f"{webhook.url}/after"]
    outcomes = notify.send(regression_run(), targets, REPORT)
    assert outcomes[0] == f"not delivered to {dead}: could not connect (ConnectionError)"
    assert outcomes[1].startswith("not delivered to mailto:team@example.org: could not connect")
    assert outcomes[2] == f"delivered to {webhook.url}/after"  # the others still go


def test_an_answer_that_is_no_delivery_is_reported(
    monkeypatch: pytest.MonkeyPatch, webhook: Receiver
) -> None:
    monkeypatch.setattr(notify, "TIMEOUT", 0.5)
    monkeypatch.setenv(notify.SMTP_PORT, "smtp")
    targets = [
        f"{webhook.url}/broken",
        f"{webhook.url}/moved",
        f"{webhook.url}/slow",
        "mailto:team@example.org",
        "ftp://x",
    ]
    assert notify.send(regression_run(), targets, REPORT) == [
        f"not delivered to {webhook.url}/broken: HTTP 500 Internal Server Error",
        f"not delivered to {webhook.url}/moved: HTTP 302 Found (redirects are not followed)",
        f"not delivered to {webhook.url}/slow: no answer within 0.5 s",
        "not delivered to mailto:team@example.org: $KXEN_SMTP_PORT 'smtp' is not a port number",
        "not delivered to ftp://x: --notify 'ftp://x': not an http://, https:// or mailto: target",
    ]
    assert [r.path for r in webhook.requests] == ["/broken", "/moved", "/slow"]  # not followed


def test_a_password_in_a_webhook_url_is_not_repeated(webhook: Receiver) -> None:
    target = webhook.url.replace("http://", "http://bot:s3cret@") + "/hook"
    (outcome,) = notify.send(regression_run(), [target], REPORT)
    assert outcome == f"delivered to {webhook.url.replace('http://', 'http://bot:***@')}/hook"
    assert webhook.requests[0].headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "mailto:",
        "javascript:alert(1)",
        "https://hooks.example/a\nX-Injected: 1",
        "mailto:a@example.org?bcc=b@example.org",
        "mailto:a@example.org,b@example.org",
        "http://",
        "https://host:99999/",
        "hooks.example/kxen",
        "x" * 500,
    ],
)
def test_check_target_refuses_what_is_no_webhook_or_address(url: str) -> None:
    with pytest.raises(InputError) as caught:
        notify.check_target(url)
    message = caught.value.message
    assert message.startswith("--notify '")
    assert "\n" not in message and len(message) < 250


@pytest.mark.parametrize(
    "url", ["https://hooks.example/kxen?token=a", "http://127.0.0.1:8080/", "mailto:ops@b.example"]
)
def test_check_target_takes_webhooks_and_addresses(url: str) -> None:
    notify.check_target(url)


def test_worth_telling_is_a_regression_a_failure_or_a_recovery() -> None:
    assert not notify.worth_telling(make_run(19))
    assert notify.worth_telling(regression_run())
    errored = make_run(19, [make_cell("i686", "default", 19, "build", Status.ERROR)])
    assert notify.worth_telling(errored)
    recovered = make_run(19)
    recovered.changes = [Change("x86_64/default", "recovery", "boot-pvh")]
    assert notify.worth_telling(recovered)
