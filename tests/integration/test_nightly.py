"""`kxen nightly` end to end on the fake Linux tree (seconds a run): the real CLI, spec,
rpmbuild, history, report, repository and notifications; no boot (the fake kernel does
not boot; the slow nightly test on the 6.1 tree boots its kernels).

One story, told in order by a module fixture: a first nightly of a stable snapshot; the
same again (skipped); a commit that breaks the build (a regression, notified); its
revert (a recovery); then the pruning, the history and a second nightly at once.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kxen.support.fsutil import exclusive_lock

from .. import fakelinux, receivers
from ..support import git
from .conftest import run_kxen

XENBUS = "drivers/xen/xenbus/xenbus_probe_frontend.c"
BROKEN = "int xenbus_register_frontend(const char *devicetype)\n{"
UNCHANGED, FAILED, LOCKED = 3, 1, 7


@dataclass
class Story:
    checkout: Path
    linux: Path
    results: Path
    cache: Path
    outcomes: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    hook: list[dict[str, Any]] = field(default_factory=list)
    listings: dict[str, set[str]] = field(default_factory=dict)
    """The files of each run's directory just after it ran (`--keep` prunes some later)."""
    published: dict[str, set[str]] = field(default_factory=dict)
    """The packages in the repository just after each run."""

    def nightly(self, name: str, *extra: str) -> dict[str, Any]:
        run = run_kxen(
            "nightly", "--upstream", self.linux, "--ref", "HEAD", "--flavour", "smoke",
            "--no-boot", "--no-ccache", "--results", self.results, "--json", *extra,
            repo=self.checkout, cache=self.cache, check=False,
        )  # fmt: skip
        self.outcomes[name] = run
        data: dict[str, Any] = json.loads(run.stdout)
        if isinstance(data.get("run"), dict):
            run_dir = self.run_dir(name)
            self.listings[name] = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}
        self.published[name] = {p.name for p in (self.results / "nightly" / "repo").rglob("*.rpm")}
        return data

    def run_record(self, name: str) -> dict[str, Any]:
        run: dict[str, Any] = json.loads(self.outcomes[name].stdout)["run"]
        return run

    def run_dir(self, name: str) -> Path:
        return self.results / "nightly" / self.run_record(name)["id"]


def commit_change(repo: Path, path: str, old: str, new: str, message: str) -> str:
    target = repo / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new))
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    base = tmp_path_factory.mktemp("nightly")
    linux = fakelinux.make_git(base / "linux")
    told = Story(fakelinux.make_checkout(base / "checkout"), linux, base / "results", base / "c")
    told.commits["xen"] = commit_change(
        linux, XENBUS, "registered++;", "registered += 1;", "xen: count frontends plainly"
    )
    told.nightly("first")
    told.nightly("again")
    with receivers.webhook() as hook:
        told.commits["broken"] = commit_change(
            linux, XENBUS, BROKEN, BROKEN + " this does not compile", "xen: break the build"
        )
        told.nightly("broken", "--notify", hook.url)
        git(linux, "revert", "--no-edit", "HEAD")
        told.commits["revert"] = git(linux, "rev-parse", "HEAD")
        told.nightly("revert", "--notify", hook.url, "--keep", "2")
        told.hook = [{"headers": r.headers, "json": r.json()} for r in hook.requests]
    return told


def cells(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['arch']}/{c['flavour']}": c for c in run["cells"]}


def statuses(cell: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in cell["steps"]}


def test_the_first_nightly_builds_every_arch_of_the_snapshot(story: Story) -> None:
    assert story.outcomes["first"].returncode == 0, story.outcomes["first"].stderr
    run = story.run_record("first")
    assert run["status"] == "PASS"
    assert run["upstream"]["git"]["commit"] == story.commits["xen"]
    assert run["id"].endswith("-" + story.commits["xen"][:12])
    assert set(cells(run)) == {"i686/smoke", "x86_64/smoke"}
    for cell in cells(run).values():
        assert statuses(cell) == {
            "config-check": "PASS",
            "patches-check": "PASS",
            "srpm": "PASS",
            "build": "PASS",
            "verify": "PASS",
        }
        # a stable snapshot: 6.1.192 plus one commit
        assert cell["nvr"] == "kernel-xen-6.1.192-1.git1.smoke"
        assert {rpm["name"].split("-6.1")[0] for rpm in cell["rpms"]} >= {
            "kernel-xen",
            "kernel-xen-devel",
        }
        assert all(step["seconds"] >= 0 for step in cell["steps"])
    files = story.listings["first"]
    assert {"run.json", "report.html", "report.json"} <= files
    assert any(name.startswith("logs/x86_64-smoke/") for name in files)
    assert not list((story.results / "nightly").glob(".run-*")), "staging left behind"


def test_the_first_nightly_publishes_a_repository(story: Story) -> None:
    assert (story.results / "nightly" / "repo" / "repodata" / "repomd.xml").is_file()
    assert story.published["first"] == {
        f"{name}-6.1.192-1.git1.smoke.{arch}.rpm"
        for name in ("kernel-xen", "kernel-xen-devel")
        for arch in ("i686", "x86_64")
    }


def test_an_unchanged_rerun_is_skipped_naming_the_run_that_stands(story: Story) -> None:
    again = story.outcomes["again"]
    assert again.returncode == UNCHANGED, again.stderr
    data = json.loads(again.stdout)
    assert (data["skipped"], data["exit_code"]) == (True, UNCHANGED)
    assert data["run"] == story.run_record("first")["id"]
    assert story.run_record("first")["id"] in again.stderr
    nightly_dir = story.results / "nightly"
    runs = [p for p in nightly_dir.iterdir() if p.is_dir() and p.name[0].isdigit()]
    assert len(runs) <= 2  # first (maybe pruned later) and revert; never one for "again"


def test_a_broken_build_is_a_regression_with_its_commit_range(story: Story) -> None:
    broken = story.outcomes["broken"]
    assert broken.returncode == FAILED, broken.stderr
    run = story.run_record("broken")
    assert run["status"] == "FAIL"
    assert run["previous"] == story.run_record("first")["id"]
    for cell in cells(run).values():
        steps = statuses(cell)
        assert steps["build"] == "FAIL"
        assert steps["verify"] == "SKIP"
        assert steps["srpm"] == "PASS"
    regressions = [c for c in run["changes"] if c["kind"] == "regression"]
    assert {c["cell"] for c in regressions} == {"i686/smoke", "x86_64/smoke"}
    assert {c["step"] for c in regressions} == {"build"}
    assert any("does not compile" in line or "error" in line for line in regressions[0]["excerpt"])
    assert run["commits"] == [f"{story.commits['broken'][:12]} xen: break the build"]
    assert "regression: x86_64/smoke (build)" in broken.stderr


def test_a_failed_build_publishes_nothing(story: Story) -> None:
    assert story.published["broken"] == story.published["first"]


def test_the_revert_is_a_recovery(story: Story) -> None:
    revert = story.outcomes["revert"]
    assert revert.returncode == 0, revert.stderr
    run = story.run_record("revert")
    recoveries = [c for c in run["changes"] if c["kind"] == "recovery"]
    assert {c["cell"] for c in recoveries} == {"i686/smoke", "x86_64/smoke"}
    assert run["previous"] == story.run_record("first")["id"]  # the last good run
    assert [line.split(" ", 1)[1] for line in run["commits"]] == [
        'Revert "xen: break the build"',
        "xen: break the build",
    ]


def test_regression_and_recovery_are_posted_to_the_webhook(story: Story) -> None:
    posted = [post["json"] for post in story.hook]
    assert [p["run"] for p in posted] == [
        story.run_record("broken")["id"],
        story.run_record("revert")["id"],
    ]
    assert [post["headers"]["Content-Type"] for post in story.hook] == ["application/json"] * 2
    text = json.dumps(posted[0])
    assert "regression" in text and story.commits["broken"][:12] in text
    assert {r["cell"] for r in posted[1]["recoveries"]} == {"i686/smoke", "x86_64/smoke"}
    assert posted[1]["regressions"] == []
    assert any(line.startswith("delivered to") for line in story.run_record("broken")[
        "notifications"
    ])  # fmt: skip


def test_keep_prunes_older_runs_but_never_the_newest_good_one(story: Story) -> None:
    nightly_dir = story.results / "nightly"
    kept = {p.name for p in nightly_dir.iterdir() if p.is_dir() and p.name[0].isdigit()}
    assert kept == {story.run_record("revert")["id"], story.run_record("broken")["id"]}
    history = run_kxen(
        "history", "--results", story.results, "--json", repo=story.checkout, cache=story.cache
    )
    assert [r["id"] for r in json.loads(history.stdout)["runs"]] == sorted(kept, reverse=True)
    names = {p.name for p in (nightly_dir / "repo").rglob("*.rpm")}
    assert not [name for name in names if ".git1." in name], "the pruned run's packages"
    assert "kernel-xen-6.1.192-1.git3.smoke.x86_64.rpm" in names


def test_report_regenerates_the_newest_run(story: Story) -> None:
    report = story.run_dir("revert") / "report.html"
    report.unlink()
    run_kxen("report", "--results", story.results, repo=story.checkout, cache=story.cache)
    assert "recovery" in report.read_text()


def test_a_second_nightly_at_once_is_refused(story: Story) -> None:
    lock = story.results / "nightly" / ".nightly.lock"
    with exclusive_lock(lock, "the test's nightly"):
        held = story.nightly("locked")
    assert story.outcomes["locked"].returncode == LOCKED
    assert "locked" in held["error"]


def test_an_infrastructure_error_is_no_verdict_and_is_tried_again(
    fake_linux: Path, fake_checkout: Path, tmp_path: Path
) -> None:
    """mock is not installed here (the stand-in is not on PATH): the build is an ERROR, the
    kernel is not blamed, and the same inputs are built again the next night. The upstream
    is a tarball, named in the run id by its digest."""

    def nightly() -> subprocess.CompletedProcess[str]:
        return run_kxen(
            "nightly", "--upstream", fake_linux, "--backend", "mock", "--arch", "x86_64",
            "--flavour", "smoke", "--no-boot", "--no-ccache", "--results", tmp_path, "--json",
            repo=fake_checkout, cache=tmp_path / "cache", check=False,
        )  # fmt: skip

    first, second = nightly(), nightly()
    for outcome in (first, second):
        assert outcome.returncode == FAILED, outcome.stderr
        run = json.loads(outcome.stdout)["run"]
        assert run["status"] == "ERROR"
        (cell,) = run["cells"]
        assert statuses(cell)["build"] == "ERROR"
        assert statuses(cell)["srpm"] == "PASS"
        assert "mock" in next(s for s in cell["steps"] if s["name"] == "build")["summary"]
        assert run["changes"] == []
    ids = [json.loads(o.stdout)["run"]["id"] for o in (first, second)]
    assert ids[0] != ids[1]
    digest = json.loads(first.stdout)["run"]["upstream"]["tarball_sha512"]
    assert ids[0].endswith("-" + digest[:12])
