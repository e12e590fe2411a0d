"""koji builds through a real HTTP test hub (tests/kojihub) with the real koji library.

The driver tests submit a tiny package rpmbuild makes in seconds; the hub's builder
really rebuilds it per arch, so the downloaded RPMs are real. One test drives the
same hub with koji's own CLI to show the hub speaks koji's protocol."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import koji
import pytest
from kxen import pipeline
from kxen.build.backends import kojiclient as kojidriver
from kxen.build.backends.base import Task
from kxen.build.backends.kojibackend import KojiBackend
from kxen.errors import BuildError, HubError, InputError
from kxen.support.progress import NullProgress

from ..kojihub import Hub, HubState
from ..kojihub.pki import Pki
from ..support import REPO
from .conftest import run_kxen

USER, PASSWORD, TARGET, PROFILE = "kojiuser", "secret", "kx-test", "kxtest"
KOJI_CLI = Path(sys.executable).with_name("koji")

TINY_SPEC = """\
Name: tiny
Version: 1.0
Release: 1
Summary: A tiny package for koji tests
License: MIT

%description
A tiny package.

%prep
%build
echo built for %{_target_cpu} > tiny.txt

%install
mkdir -p %{buildroot}/usr/share/tiny
install -m 644 tiny.txt %{buildroot}/usr/share/tiny/tiny.txt

%files
/usr/share/tiny/tiny.txt
"""


@pytest.fixture(scope="module")
def tiny_srpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    (work / "tiny.spec").write_text(TINY_SPEC)
    subprocess.run(
        [
            "rpmbuild",
            "-bs",
            "--define",
            f"_topdir {work / 'top'}",
            "--define",
            f"_srcrpmdir {work}",
            str(work / "tiny.spec"),
        ],
        check=True,
        capture_output=True,
    )
    return work / "tiny-1.0-1.src.rpm"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    state = HubState(tmp_path / "hub", users={USER: PASSWORD})
    state.add_target(TARGET, ["i686", "x86_64"], packages=["kernel-xen"])
    with Hub(state) as running:
        yield running


@pytest.fixture
def koji_config(tmp_path: Path, hub: Hub) -> Path:
    path = tmp_path / "koji.conf"
    body = (
        f"server = {hub.url}\ntopurl = {hub.topurl}\nauthtype = password\n"
        "poll_interval = 1\nmax_retries = 0\n"
    )
    path.write_text(f"[{PROFILE}]\n{body}\n[koji]\n{body}")
    return path


class Sleeps:
    """An injectable sleep: records the delays, sleeps only a little for real (so the
    hub's builder makes progress) and can run a hook after N sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hooks: dict[int, object] = {}

    def __call__(self, seconds: float) -> None:
        import time

        self.delays.append(seconds)
        hook = self.hooks.get(len(self.delays))
        if callable(hook):
            hook()
        time.sleep(0.05)


def make_driver(
    koji_config: Path,
    sleeps: Sleeps,
    patience: kojidriver.Patience | None = None,
    trees: list[kojidriver.TaskTree] | None = None,
) -> kojidriver.KojiDriver:
    profile = kojidriver.load_profile(PROFILE, koji_config, USER, PASSWORD)
    return kojidriver.KojiDriver(
        profile,
        sleep=sleeps,
        patience=patience or kojidriver.Patience(total=60, first=2, longest=8),
        poll_interval=0.2,
        on_tasks=trees.append if trees is not None else None,
    )


def submit(driver: kojidriver.KojiDriver, srpm: Path, arches: list[str] | None = None) -> int:
    driver.login()
    driver.check_target(TARGET)
    src = driver.upload(srpm)
    return driver.submit(src, TARGET, kojidriver.scratch_opts(arches))


def download(driver: kojidriver.KojiDriver, task_id: int, results: Path) -> pipeline.BuildReport:
    """`kxen koji download`'s pipeline: every arch of a finished task into results/."""
    return pipeline.build(KojiBackend(driver), Task(task_id), [], results, NullProgress())


def rpm_arch(path: Path) -> str:
    run = subprocess.run(
        ["rpm", "-qp", "--nosignature", "--queryformat", "%{ARCH}", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout


def test_scratch_build_downloads_real_rpms(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    trees: list[kojidriver.TaskTree] = []
    driver = make_driver(koji_config, Sleeps(), trees=trees)
    task_id = submit(driver, tiny_srpm)
    tree = driver.watch(task_id)
    assert tree.root.state == "closed"
    # the hub's first build waited for the build tag's repo; kxen shows children by id
    assert [c.name for c in tree.children] == ["waitrepo", "srpm", "i686", "x86_64"]
    assert all(c.state == "closed" and c.seconds is not None for c in tree.children)
    assert trees and trees[-1].done
    done = download(driver, task_id, tmp_path / "results")
    assert done.nvr == "tiny-1.0-1"
    for arch in ("i686", "x86_64"):
        folder = tmp_path / "results" / "tiny-1.0-1" / arch
        rpm = folder / f"tiny-1.0-1.{arch}.rpm"
        assert rpm_arch(rpm) == arch
        child = next(c for c in tree.children if c.name == arch)
        served = hub.state.task_dir(child.id)
        for name in ("build.log", "root.log", rpm.name):
            assert (folder / name).stat().st_size == (served / name).stat().st_size
        assert (folder / "tiny-1.0-1.src.rpm").is_file()
        record = json.loads((folder / "kxen-result.json").read_text())
        assert record["backend"] == "koji" and record["task_id"] == task_id
    # scratch, uploaded to cli-build/<time>.<random>/, exactly one build task
    (build,) = hub.state.build_tasks()
    src, target, opts = build.request
    assert src.startswith("cli-build/") and src.endswith("/tiny-1.0-1.src.rpm")
    assert target == TARGET and opts["scratch"] is True


def test_download_takes_each_file_from_its_volume_and_the_srpm_once(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    driver = make_driver(koji_config, Sleeps())
    tree = driver.watch(submit(driver, tiny_srpm))
    i686 = next(c for c in tree.children if c.name == "i686")
    # the hub moved the i686 build's output (the first buildArch: RPMs, logs, the SRPM)
    hub.state.volumes.append("archive")
    moved = hub.state.task_dir(i686.id, "archive")
    moved.parent.mkdir(parents=True)
    hub.state.task_dir(i686.id).rename(moved)
    fetched: list[kojidriver.Output] = []
    fetch = driver.fetch

    def recording(output: kojidriver.Output, into: Path) -> Path:
        fetched.append(output)
        return fetch(output, into)

    driver.fetch = recording  # type: ignore[method-assign]
    report = download(driver, tree.root.id, tmp_path / "results")
    srpm = "tiny-1.0-1.src.rpm"
    assert [output.name for output in fetched].count(srpm) == 1
    assert any(o.task_id == i686.id and o.volume == "archive" for o in fetched)
    for arch in ("i686", "x86_64"):
        folder = tmp_path / "results" / "tiny-1.0-1" / arch
        assert (folder / srpm).read_bytes() == tiny_srpm.read_bytes()
        assert rpm_arch(folder / f"tiny-1.0-1.{arch}.rpm") == arch
    assert report.srpm == srpm and report.run["task_id"] == tree.root.id


def test_a_failed_arch_is_published_with_its_logs(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    hub.state.fail_arch = "i686"
    driver = make_driver(koji_config, Sleeps())
    results = tmp_path / "results"
    with pytest.raises(pipeline.BuildFailed) as failed:
        pipeline.build(KojiBackend(driver, TARGET), tiny_srpm, [], results, NullProgress())
    error = failed.value
    assert error.exit_code == 5
    assert error.message.startswith("i686: build failed: koji task ")
    assert "mock exited with status 1" in error.message
    assert any("Bad exit status" in line for line in error.details)
    (task,) = hub.state.build_tasks()
    assert error.payload["task_id"] == task.id
    assert error.payload["failures"][0]["arch"] == "i686"
    folder = results / "tiny-1.0-1" / "failed-i686"
    assert {"build.log", "root.log", "kxen-result.json"} <= {p.name for p in folder.iterdir()}
    assert f"(log: {folder / 'build.log'})" in error.message
    assert not (results / "tiny-1.0-1" / "i686").exists()


def test_download_of_an_unfinished_task_is_refused(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    hub.state.build_delay = 30
    driver = make_driver(koji_config, Sleeps())
    task_id = submit(driver, tiny_srpm)
    with pytest.raises(BuildError, match=f"koji task {task_id} is open: nothing to download"):
        download(driver, task_id, tmp_path / "results")
    assert list((tmp_path / "results").iterdir()) == []


def test_ctrl_c_while_following_a_build_leaves_it_running_and_no_results(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    hub.state.build_delay = 30
    sleeps = Sleeps()

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    sleeps.hooks[1] = ctrl_c
    driver = make_driver(koji_config, sleeps)
    results = tmp_path / "results"
    with pytest.raises(kojidriver.Detached) as detached:
        pipeline.build(KojiBackend(driver, TARGET), tiny_srpm, [], results, NullProgress())
    (task,) = hub.state.build_tasks()
    assert detached.value.exit_code == 130 and detached.value.payload == {"task_id": task.id}
    assert detached.value.details == [
        f"koji task {task.id} keeps running on the hub",
        f"resume with: kxen koji watch --profile {PROFILE} --koji-config {koji_config} {task.id}",
    ]
    assert hub.state.tasks[task.id].state == 1  # still open
    # no partial results (the NVR's lock file stays if the SRPM was made before Ctrl-C)
    assert [p.name for p in results.iterdir()] in ([], [".tiny-1.0-1.lock"])


def test_arch_override_builds_only_that_arch(hub: Hub, koji_config: Path, tiny_srpm: Path) -> None:
    driver = make_driver(koji_config, Sleeps())
    tree = driver.watch(submit(driver, tiny_srpm, ["x86_64"]))
    assert [c.name for c in tree.children] == ["waitrepo", "srpm", "x86_64"]
    assert hub.state.build_tasks()[0].request[2]["arch_override"] == "x86_64"


def test_failing_arch_names_arch_fault_and_log_tail(
    hub: Hub, koji_config: Path, tiny_srpm: Path
) -> None:
    hub.state.fail_arch = "i686"
    driver = make_driver(koji_config, Sleeps())
    task_id = submit(driver, tiny_srpm)
    with pytest.raises(kojidriver.RemoteBuildFailed) as failed:
        driver.watch(task_id)
    error = failed.value
    assert isinstance(error, BuildError)
    assert "i686" in error.message
    assert "error building package (arch i686), mock exited with status 1" in error.message
    (failure,) = error.failures
    assert failure.arch == "i686"
    assert any("Bad exit status" in line for line in failure.logs["build.log"])
    assert any("Command failed" in line for line in failure.logs["root.log"])
    assert any("Bad exit status" in line for line in error.details)


def test_keeps_watching_through_dropped_connections(
    hub: Hub, koji_config: Path, tiny_srpm: Path
) -> None:
    hub.state.build_delay = 0.5
    sleeps = Sleeps()
    driver = make_driver(koji_config, sleeps)
    task_id = submit(driver, tiny_srpm)
    # (requests/urllib3 may spend two dropped connections on one call: a stale keep-alive)
    hub.state.drop_connections = 6
    tree = driver.watch(task_id)
    assert tree.root.state == "closed"
    assert hub.state.drop_connections == 0
    backoff = [d for d in sleeps.delays if d >= 2]
    assert len(backoff) >= 3
    assert backoff == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0][: len(backoff)]


def test_waits_while_hub_offline_then_recovers(
    hub: Hub, koji_config: Path, tiny_srpm: Path
) -> None:
    sleeps = Sleeps()
    driver = make_driver(koji_config, sleeps)
    task_id = submit(driver, tiny_srpm)
    hub.state.offline = True

    def back() -> None:
        hub.state.offline = False

    sleeps.hooks[4] = back
    assert driver.watch(task_id).root.state == "closed"
    assert sleeps.delays[:4] == [2.0, 4.0, 8.0, 8.0]


def test_hub_staying_offline_gives_resume_command(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    driver = make_driver(koji_config, sleeps, kojidriver.Patience(total=20, first=2, longest=8))
    task_id = submit(driver, tiny_srpm)
    hub.state.offline = True
    with pytest.raises(HubError) as gave_up:
        driver.watch(task_id)
    assert "offline" in gave_up.value.message
    assert sum(sleeps.delays) >= 20
    assert gave_up.value.details == [
        f"resume with: kxen koji watch --profile {PROFILE} --koji-config {koji_config} {task_id}"
    ]
    # the build was not canceled: once the hub is back, resuming finishes the job
    hub.state.offline = False
    resumed = make_driver(koji_config, Sleeps())
    assert resumed.watch(task_id).root.state == "closed"
    assert [a.arch for a in download(resumed, task_id, tmp_path / "r").arches] == [
        "i686",
        "x86_64",
    ]


def test_lost_build_answer_is_reconciled_not_resubmitted(
    hub: Hub, koji_config: Path, tiny_srpm: Path
) -> None:
    hub.state.swallow_build = True
    driver = make_driver(koji_config, Sleeps())
    task_id = submit(driver, tiny_srpm)
    assert hub.state.swallow_build is False  # the answer really was swallowed
    assert [task.id for task in hub.state.build_tasks()] == [task_id]
    assert hub.state.calls.count("build") == 1
    assert "listTasks" in hub.state.calls
    assert driver.watch(task_id).root.state == "closed"


def test_missing_target_is_a_clear_error(hub: Hub, koji_config: Path) -> None:
    driver = make_driver(koji_config, Sleeps())
    driver.login()
    with pytest.raises(InputError, match="koji build target 'nope' does not exist"):
        driver.check_target("nope")


def test_wrong_password_is_a_hub_error(koji_config: Path) -> None:
    profile = kojidriver.load_profile(PROFILE, koji_config, USER, "wrong")
    with pytest.raises(HubError, match=r"login to .* failed"):
        kojidriver.KojiDriver(profile, sleep=Sleeps()).login()


def test_unknown_profile_is_input_error(koji_config: Path) -> None:
    with pytest.raises(InputError, match="no configuration for profile name: other"):
        kojidriver.load_profile("other", koji_config)


def test_package_must_be_in_dest_tag(hub: Hub, koji_config: Path) -> None:
    driver = make_driver(koji_config, Sleeps())
    driver.login()
    target = driver.check_target(TARGET)
    driver.check_package(target, "kernel-xen")
    with pytest.raises(InputError, match="'tiny' is not in the package list of tag 'kx-test'"):
        driver.check_package(target, "tiny")


# --- the hub speaks koji's wire protocol --------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    connection.request("POST", target, body, headers or {})
    answer = connection.getresponse()
    assert answer.getheader("Koji-Version") == "1.35.3"
    return answer.status, answer.read()


def _fault(body: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as fault:
        xmlrpc.client.loads(body)
    return fault.value


def assert_refusals_as_koji(url: str, session: koji.ClientSession, target: str) -> None:
    """What koji's hub answers (kojihub/auth.py, handle_upload): run against the real hub
    too (test_realkoji), so the imitation is held to the same answers. `session` is
    logged in and may build for `target`."""
    # the hub stores a callnum with a state-changing call: the same one again is
    # RetryError (1009), an older one SequenceError (1008), as in koji's auth.py
    session.build("x.src.rpm", target, {"scratch": True})
    sinfo = session.sinfo

    def headers(callnum: int) -> dict[str, str]:
        return {
            "Koji-Session-Id": str(sinfo["session-id"]),
            "Koji-Session-Key": sinfo["session-key"],
            "Koji-Session-Callnum": str(callnum),
        }

    again = xmlrpc.client.dumps(("x.src.rpm", target, {"scratch": True}), "build").encode()
    retried = _fault(_post(url, again, headers(session.callnum - 1))[1])
    assert retried.faultCode == 1009
    assert retried.faultString.startswith(f"unable to retry call {session.callnum - 1} ")
    older = _fault(_post(url, again, headers(session.callnum - 2))[1])
    assert (older.faultCode, older.faultString) == (
        1008,
        f"{session.callnum - 1} > {session.callnum - 2} (session {sinfo['session-id']})",
    )
    # an upload without a session: its query string is taken for the deprecated session
    # arguments (DisableURLSessions is off by default), which lack the session id
    refused = _fault(
        _post(
            url + "?filename=x.src.rpm&filepath=cli-build/x&fileverify=adler32&offset=0",
            b"data",
            {"Content-Type": "application/octet-stream"},
        )[1]
    )
    assert (refused.faultCode, refused.faultString) == (
        1002,
        "'session-id' not specified in session args",
    )


def test_hub_wire_contract(hub: Hub) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(hub.url)
    assert refused.value.code == 405
    assert refused.value.headers["Koji-Version"] == "1.35.3"
    call = xmlrpc.client.dumps((), "noSuchMethod")
    assert _fault(_post(hub.url, call.encode())[1]).faultCode == 1000
    assert "Invalid method: noSuchMethod" in _fault(_post(hub.url, call.encode())[1]).faultString
    starstar = xmlrpc.client.dumps((1, {"__starstar": True, "bogus": 1}), "getTaskInfo")
    assert _fault(_post(hub.url, starstar.encode())[1]).faultCode == 1019
    session = koji.ClientSession(hub.url, {"user": USER, "password": PASSWORD})
    assert session.getAPIVersion() == 1 and session.getKojiVersion() == "1.35.3"
    assert session.getLoggedInUser() is None
    with pytest.raises(koji.AuthError):
        session.build("x.src.rpm", TARGET, {"scratch": True})
    session.login()
    assert session.getLoggedInUser()["name"] == USER
    assert_refusals_as_koji(hub.url, session, TARGET)
    hub.state.offline = True
    with pytest.raises(koji.ServerOffline):
        session.getAPIVersion()
    hub.state.offline = False
    # sslLogin is served at /ssllogin only
    ssl = xmlrpc.client.dumps((None,), "sslLogin", allow_none=True)
    assert _fault(_post(hub.url, ssl.encode())[1]).faultCode == 1002
    # and, like mod_ssl's SSL_CLIENT_VERIFY, needs a verified client certificate
    assert _fault(_post(hub.url + "/ssllogin", ssl.encode())[1]).faultCode == 1002


def test_real_koji_cli_against_hub(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path
) -> None:
    auth = ["-c", str(koji_config), "--user", USER, "--password", PASSWORD]

    def koji_cli(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [str(KOJI_CLI), *auth, *args], capture_output=True, text=True, cwd=cwd, timeout=120
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    built = koji_cli("build", "--scratch", "--wait", TARGET, str(tiny_srpm))
    (task,) = hub.state.build_tasks()
    assert f"Created task: {task.id}" in built.stdout
    assert "completed successfully" in built.stdout
    watched = koji_cli("watch-task", str(task.id))
    assert "buildArch (tiny-1.0-1.src.rpm, i686): closed" in watched.stdout
    into = tmp_path / "dl"
    into.mkdir()
    koji_cli("download-task", str(task.id), cwd=into)
    assert sorted(p.name for p in into.iterdir()) == [
        "tiny-1.0-1.i686.rpm",
        "tiny-1.0-1.src.rpm",  # like kojid, the hub's first buildArch keeps the SRPM
        "tiny-1.0-1.x86_64.rpm",
    ]
    assert rpm_arch(into / "tiny-1.0-1.i686.rpm") == "i686"
    # a failing arch: the CLI reports koji's fault text
    hub.state.fail_arch = "x86_64"
    failed = subprocess.run(
        [str(KOJI_CLI), *auth, "build", "--scratch", "--wait", TARGET, str(tiny_srpm)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert "error building package (arch x86_64), mock exited with status 1" in failed.stdout


# --- the kxen command line ------------------------------------------------------


def test_cli_scratch_build_nowait_then_resume(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path, kxen_cache: Path
) -> None:
    os.environ["KXEN_KOJI_PASSWORD"] = PASSWORD
    try:
        common = ["--profile", PROFILE, "--koji-config", str(koji_config), "--user", USER]
        submitted = run_kxen(
            "scratch-build",
            *common,
            "--target",
            TARGET,
            "--srpm",
            tiny_srpm,
            "--nowait",
            "--json",
            cache=kxen_cache,
        )
        task_id = json.loads(submitted.stdout)["task_id"]
        watched = run_kxen("koji", "watch", *common, str(task_id), "--json", cache=kxen_cache)
        assert json.loads(watched.stdout)["state"] == "closed"
        results = tmp_path / "results"
        fetched = run_kxen(
            "koji",
            "download",
            *common,
            "--results",
            results,
            str(task_id),
            "--json",
            cache=kxen_cache,
        )
        report = json.loads(fetched.stdout)
        assert report["nvr"] == "tiny-1.0-1"
        assert (results / "tiny-1.0-1" / "x86_64" / "tiny-1.0-1.x86_64.rpm").is_file()
        # a failing build exits 5 with the arch and the fault
        hub.state.fail_arch = "i686"
        failed = run_kxen(
            "scratch-build",
            *common,
            "--target",
            TARGET,
            "--srpm",
            tiny_srpm,
            "--results",
            results,
            "--json",
            cache=kxen_cache,
            check=False,
        )
        assert failed.returncode == 5, failed.stderr
        payload = json.loads(failed.stdout)
        assert payload["failures"][0]["arch"] == "i686"
        assert "mock exited with status 1" in failed.stderr
        # a missing target exits 2 before anything is uploaded
        missing = run_kxen(
            "scratch-build",
            *common,
            "--target",
            "nope",
            "--srpm",
            tiny_srpm,
            cache=kxen_cache,
            check=False,
        )
        assert missing.returncode == 2
        assert "koji build target 'nope' does not exist" in missing.stderr
    finally:
        os.environ.pop("KXEN_KOJI_PASSWORD", None)


@pytest.mark.parametrize("cancel", [False, True], ids=["detach", "cancel-on-interrupt"])
def test_cli_watch_interrupt(
    hub: Hub, koji_config: Path, tiny_srpm: Path, kxen_cache: Path, cancel: bool
) -> None:
    import signal
    import time

    from .conftest import kxen_command

    hub.state.build_delay = 30
    driver = make_driver(koji_config, Sleeps())
    task_id = submit(driver, tiny_srpm)
    argv, env = kxen_command(
        "koji",
        "watch",
        "--profile",
        PROFILE,
        "--koji-config",
        str(koji_config),
        "--user",
        USER,
        *(["--cancel-on-interrupt"] if cancel else []),
        str(task_id),
        repo=REPO,
        cache=kxen_cache,
    )
    env["KXEN_KOJI_PASSWORD"] = PASSWORD
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while "getTaskChildren" not in hub.state.calls[-3:] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    if cancel:
        assert f"koji task {task_id} was canceled" in err
        assert hub.state.tasks[task_id].state == 3  # CANCELED
    else:
        assert f"koji task {task_id} keeps running on the hub" in err
        assert f"resume with: kxen koji watch --profile {PROFILE}" in err
        assert "cancelTask" not in hub.state.calls
        assert hub.state.tasks[task_id].state == 1  # still open


def test_upload_survives_a_dropped_connection(hub: Hub, koji_config: Path, tiny_srpm: Path) -> None:
    sleeps = Sleeps()
    driver = make_driver(koji_config, sleeps)
    driver.login()
    hub.state.drop_connections = 4  # (urllib3 may spend two on one call: stale keep-alive)
    src = driver.upload(tiny_srpm)
    assert hub.state.drop_connections == 0
    assert sleeps.delays and sleeps.delays[0] == 2.0
    uploaded = hub.state.topdir / "work" / src
    assert uploaded.read_bytes() == tiny_srpm.read_bytes()


def test_upload_of_a_missing_srpm_fails_at_once(
    hub: Hub, koji_config: Path, tmp_path: Path
) -> None:
    """A local file error is not a hub outage: no retries for the hub's patience."""
    sleeps = Sleeps()
    driver = make_driver(koji_config, sleeps)
    driver.login()
    with pytest.raises(InputError, match=r"uploadWrapper: No such file or directory: .*gone"):
        driver.upload(tmp_path / "gone-1.0-1.src.rpm")
    assert sleeps.delays == []


def _random_file(path: Path, mib: int) -> Path:
    path.write_bytes(os.urandom(mib << 20))
    return path


def test_upload_uses_8_mib_chunks_unless_the_profile_sets_a_size(
    hub: Hub, koji_config: Path, tmp_path: Path
) -> None:
    srpm = _random_file(tmp_path / "big-1.0-1.src.rpm", 20)
    driver = make_driver(koji_config, Sleeps())
    driver.login()
    src = driver.upload(srpm)
    assert hub.state.upload_chunks[src] == [8 << 20, 8 << 20, 4 << 20]
    assert (hub.state.topdir / "work" / src).read_bytes() == srpm.read_bytes()

    koji_config.write_text(
        koji_config.read_text().replace("\n[koji]", "upload_blocksize = 3145728\n[koji]")
    )
    driver = make_driver(koji_config, Sleeps())
    driver.login()
    src = driver.upload(srpm)
    assert hub.state.upload_chunks[src] == [3 << 20] * 6 + [2 << 20]


# --- TLS: authtype ssl --------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_hub(tmp_path: Path, pki: Pki) -> Iterator[Hub]:
    state = HubState(tmp_path / "tls-hub", users={USER: PASSWORD, "other": "x"})
    state.add_target(TARGET, ["x86_64"], packages=["kernel-xen"])
    with Hub(state, tls=pki.hub_tls()) as running:
        yield running


def _ssl_profile(path: Path, hub: Hub, cert: Path, serverca: Path) -> Path:
    path.write_text(
        f"[{PROFILE}]\nserver = {hub.url}\ntopurl = {hub.topurl}\nauthtype = ssl\n"
        f"cert = {cert}\nserverca = {serverca}\npoll_interval = 1\n"
    )
    return path


@pytest.mark.parametrize("authtype", ["ssl", "password"])
def test_hub_certificate_from_another_ca_fails_at_once(
    tls_hub: Hub, pki: Pki, tmp_path: Path, authtype: str
) -> None:
    """A certificate problem is not a dropped connection: no 15 minutes of retries."""
    stranger_ca = Pki.create(tmp_path / "other-pki", "another CA").ca
    config = _ssl_profile(tmp_path / "koji.conf", tls_hub, pki.client_pem(USER), stranger_ca)
    config.write_text(config.read_text().replace("authtype = ssl", f"authtype = {authtype}"))
    sleeps = Sleeps()
    driver = make_driver(config, sleeps)
    with pytest.raises(HubError, match=r"https://localhost:\d+/kojihub.*CERTIFICATE_VERIFY_FAILED"):
        driver.login()
    assert sleeps.delays == []
    assert not tls_hub.state.sessions


# --- release builds -------------------------------------------------------------


def test_release_build_of_an_scm_url_is_submitted_as_given(
    hub: Hub, koji_config: Path, kxen_cache: Path
) -> None:
    """Only the submission: the imitation cannot check a URL out, and a release build of
    this repository's git cannot work in kojid (no spec in its root; the dist-git export
    is what builds, test_realkoji.py). A package missing from the destination tag is
    refused before anything is submitted."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    url = "https://git.example.org/kernel-xen.git"
    hub.state.add_target("kx-empty", ["x86_64"], packages=[])
    common = ["--profile", PROFILE, "--koji-config", str(koji_config), "--user", USER]
    env = {"KXEN_KOJI_PASSWORD": PASSWORD}
    args: list[str | Path] = ["build", *common, "--scm-url", url, "--commit", commit]
    submitted = run_kxen(*args, "--target", TARGET, "--nowait", "--json", cache=kxen_cache, env=env)
    (task,) = hub.state.build_tasks()
    assert json.loads(submitted.stdout)["task_id"] == task.id
    assert task.request[0] == f"git+{url}#{commit}"
    assert task.request[1] == TARGET and not task.request[2].get("scratch")
    refused = run_kxen(*args, "--target", "kx-empty", cache=kxen_cache, env=env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "'kernel-xen' is not in the package list of tag 'kx-empty'" in refused.stderr
    assert len(hub.state.build_tasks()) == 1


def test_release_build_from_dist_git_url(
    hub: Hub, koji_config: Path, tiny_srpm: Path, tmp_path: Path, kxen_cache: Path
) -> None:
    """`kxen build --dist-git git://...#<commit>` submits that URL as `fedpkg build` does;
    git+file:// is refused before anything reaches the hub (kojid refuses it)."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    url = "git://pkgs.example.org/rpms/kernel-xen.git"
    hub.state.scm_srpms[f"{url}#{commit}"] = tiny_srpm
    common = ["--profile", PROFILE, "--koji-config", str(koji_config), "--user", USER]
    env = {"KXEN_KOJI_PASSWORD": PASSWORD}
    results = tmp_path / "results"
    args: list[str | Path] = ["build", *common, "--target", TARGET, "--results", results, "--json"]
    built = run_kxen(*args, "--dist-git", f"{url}#{commit}", cache=kxen_cache, env=env)
    (task,) = hub.state.build_tasks()
    assert task.request[0] == f"{url}#{commit}"
    assert json.loads(built.stdout)["nvr"] == "tiny-1.0-1"
    local = f"git+file://{tmp_path}/kernel-xen.git#{commit}"
    refused = run_kxen(*args, "--dist-git", local, cache=kxen_cache, env=env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "kojid refuses git+file://" in json.loads(refused.stdout)["error"]
    assert len(hub.state.build_tasks()) == 1


def test_release_build_of_uploaded_srpm_is_refused(
    hub: Hub, koji_config: Path, tiny_srpm: Path
) -> None:
    """As koji's hub does, build() takes the task; the builder's policy check fails it."""
    driver = make_driver(koji_config, Sleeps())
    driver.login()
    task_id = driver.submit(driver.upload(tiny_srpm), TARGET, {})
    with pytest.raises(kojidriver.RemoteBuildFailed) as refused:
        driver.watch(task_id)
    assert refused.value.message == (
        f"koji task {task_id} failed: policy violation (build_from_srpm): "
        "Only admin can do this via default policy"
    )
    assert driver.tree(task_id).children == ()


def test_scm_url_from_checkout(tmp_path: Path) -> None:
    from kxen.support.runner import SubprocessRunner

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("remote", "add", "origin", "https://git.example.org/kernel-xen.git")
    (tmp_path / "kernel-xen.yaml").write_text("name: kernel-xen\n")
    git("add", "kernel-xen.yaml")
    git("-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q", "-m", "x")
    head = git("rev-parse", "HEAD")
    runner = SubprocessRunner()
    url = kojidriver.scm_url(tmp_path, runner, None, None)
    assert url == f"git+https://git.example.org/kernel-xen.git#{head}"
    (tmp_path / "kernel-xen.yaml").write_text("name: changed\n")
    with pytest.raises(InputError, match="uncommitted changes"):
        kojidriver.scm_url(tmp_path, runner, None, None)
    assert kojidriver.scm_url(tmp_path, runner, None, head[:12]).endswith(f"#{head[:12]}")
    refusals = {
        "git@example.org:kernel-xen.git": "koji fetches anonymously",
        f"git+file://{tmp_path}": r"kojid refuses git\+file:// \(it checks out git://, git\+http://",
    }
    for refused, message in refusals.items():
        with pytest.raises(InputError, match=message):
            kojidriver.scm_url(tmp_path, runner, refused, head)
    for scheme in ("git://", "git+rsync://", "git+http://"):
        url = kojidriver.scm_url(tmp_path, runner, f"{scheme}example.org/kernel-xen.git", head)
        assert url == f"{scheme}example.org/kernel-xen.git#{head}"
