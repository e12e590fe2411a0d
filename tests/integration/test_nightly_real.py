"""`kxen nightly` on a git repository of the real 6.1 tree: smoke flavour, x86_64, built,
verified, booted as a PV and a PVH domU, published, compared, reported and notified.

Two kernels, each built once, cheap through the session's ccache: a stable snapshot one
commit after v6.1.192 (the first nightly), and a commit that makes the guest panic in its
Xen setup (a boot regression, delivered to a webhook and by mail). Between the two, the
same ref again is skipped. The recovery after a revert is the fake tree's story
(test_nightly.py); a third real kernel would only cost CI minutes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .. import receivers
from ..support import git
from .conftest import run_kxen
from .test_snapshot import rewrite, tree_repo

pytestmark = pytest.mark.slow

MANAGE = "drivers/xen/manage.c"
SETUP_LINE = "\tregister_xenstore_notifier(&xenstore_notifier);\n"
PANIC = '\tpanic("kxen nightly test: this Xen guest refuses to set up\\n");\n'
BALLOON = "drivers/xen/balloon.c"


@dataclass
class Nights:
    results: Path
    outcomes: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    posts: list[dict[str, Any]] = field(default_factory=list)
    mail: list[Any] = field(default_factory=list)

    def run(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.outcomes[name].stdout)["run"]
        return record

    def cell(self, name: str) -> dict[str, Any]:
        (cell,) = self.run(name)["cells"]
        return dict(cell)

    def steps(self, name: str) -> dict[str, str]:
        return {step["name"]: step["status"] for step in self.cell(name)["steps"]}


@pytest.fixture(scope="module")
def linux_git(
    linux_tarball: Path, kxen_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The 6.1.192 tree committed and tagged v6.1.192, as on kernel.org's stable branch;
    removed after the module, so that the cached tree's files are no longer hard-linked
    (later tests check that nothing links to the pristine tree)."""
    repo = tree_repo(
        linux_tarball, kxen_cache, tmp_path_factory.mktemp("stable") / "linux", "v6.1.192"
    )
    yield repo
    shutil.rmtree(repo)


def change(repo: Path, path: str, old: str, new: str, message: str) -> str:
    rewrite(repo / path, (old, new))
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def nights(linux_git: Path, kxen_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Nights:
    told = Nights(tmp_path_factory.mktemp("nightly-results"))
    with receivers.webhook() as hook, receivers.smtp_server() as mailbox:
        environment = {"KXEN_SMTP_HOST": "127.0.0.1", "KXEN_SMTP_PORT": str(mailbox.port)}

        def nightly(name: str) -> None:
            told.outcomes[name] = run_kxen(
                "nightly", "--upstream", linux_git, "--ref", "HEAD", "--arch", "x86_64",
                "--flavour", "smoke", "--notify", hook.url, "--notify",
                "mailto:release-engineers@example.org", "--results", told.results, "--json",
                cache=kxen_cache, check=False, env=environment,
            )  # fmt: skip

        told.commits["first"] = change(
            linux_git,
            BALLOON,
            " * Xen balloon driver - ",
            " * The Xen balloon driver - ",
            "xen/balloon: a comment",
        )
        nightly("first")
        nightly("again")
        told.commits["panic"] = change(
            linux_git, MANAGE, SETUP_LINE, PANIC + SETUP_LINE, "xen: panic in guest setup"
        )
        nightly("panic")
        told.posts = [{"json": request.json()} for request in hook.requests]
        told.mail = mailbox.messages()
    return told


def test_the_first_nightly_builds_verifies_boots_and_publishes(nights: Nights) -> None:
    first = nights.outcomes["first"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert nights.steps("first") == {
        "config-check": "PASS",
        "patches-check": "PASS",
        "srpm": "PASS",
        "build": "PASS",
        "verify": "PASS",
        "boot-pv": "PASS",
        "boot-pvh": "PASS",
    }
    assert nights.cell("first")["nvr"] == "kernel-xen-6.1.192-1.git1.smoke"
    repo = nights.results / "nightly" / "repo"
    assert (repo / "repodata" / "repomd.xml").is_file()
    assert any(p.name.startswith("kernel-xen-6.1.192-1.git1") for p in repo.rglob("*.rpm"))


def test_the_same_ref_again_is_skipped(nights: Nights) -> None:
    again = nights.outcomes["again"]
    assert again.returncode == 3, again.stderr
    assert json.loads(again.stdout)["run"] == nights.run("first")["id"]


def test_a_xen_commit_rebuilds_from_ccache_with_a_new_snapshot_release(nights: Nights) -> None:
    cell = nights.cell("panic")
    assert cell["nvr"] == "kernel-xen-6.1.192-1.git2.smoke"
    assert nights.steps("panic")["build"] == "PASS"
    hits, misses = cell["ccache"]["hits"], cell["ccache"]["misses"]
    assert hits > 10 * misses, cell["ccache"]


def test_a_guest_that_panics_is_a_boot_regression(nights: Nights) -> None:
    panic = nights.outcomes["panic"]
    assert panic.returncode == 1, panic.stderr[-3000:]
    steps = nights.steps("panic")
    assert (steps["verify"], steps["boot-pv"], steps["boot-pvh"]) == ("PASS", "FAIL", "FAIL")
    (regression, *_) = [c for c in nights.run("panic")["changes"] if c["kind"] == "regression"]
    assert regression["cell"] == "x86_64/smoke"
    assert regression["step"] in ("boot-pv", "boot-pvh")
    assert any("Kernel panic" in line for line in regression["excerpt"])
    assert nights.run("panic")["commits"] == [
        f"{nights.commits['panic'][:12]} xen: panic in guest setup"
    ]


def test_the_regression_is_in_the_report(nights: Nights) -> None:
    run_dir = nights.results / "nightly" / nights.run("panic")["id"]
    html = (run_dir / "report.html").read_text()
    assert "regression" in html and "xen: panic in guest setup" in html
    assert "Kernel panic" in html


def test_the_regression_is_delivered(nights: Nights) -> None:
    run = nights.run("panic")["id"]
    assert [post["json"]["run"] for post in nights.posts] == [run]
    (message,) = nights.mail
    assert run in str(message["Subject"])
    body = message.get_content()
    assert "regression" in body and nights.commits["panic"][:12] in body
    assert len([n for n in nights.run("panic")["notifications"] if "delivered to" in n]) == 2
