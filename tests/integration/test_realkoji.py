"""kxen against koji's own hub and builder (tests/realkoji): PostgreSQL, the hub under
gunicorn, kojid making the repository and building through the mock stand-in.

Most builds use a tiny package or the kernel-xen SRPM of the fake Linux tree (seconds):
the same kxen code paths. The real smoke kernel goes through once as a scratch build and
once as the release build from dist-git, both arches each; the builder compiles through
the session's ccache, which the README's smoke build filled (its mock user's config, as a
builder's admin sets it up), so each is a few minutes, not fifteen."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kxen.build.backends import kojiclient
from kxen.build.ccache import Ccache
from kxen.cli.options import CCACHE_SUBDIR
from kxen.errors import HubError

from .. import distgit, support
from ..kojihub.pki import Pki
from ..realkoji import ADMIN, DEST_TAG, TARGET, USER, RealKoji
from ..realkoji.stack import ADMIN_PASSWORD, PASSWORD, free_port, running, stop, wait_for
from .conftest import KXEN, SmokeBuild, ccache_hits, kxen_command, run_kxen, smoke_srpm
from .test_koji import TINY_SPEC, assert_refusals_as_koji

PROFILE = "realkoji"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def realkoji(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealKoji]:
    with running(tmp_path_factory.mktemp("realkoji")) as stack:
        yield stack


@pytest.fixture(scope="session")
def koji_config(realkoji: RealKoji) -> Path:
    path = realkoji.base / "koji.conf"
    path.write_text(
        f"[{PROFILE}]\nserver = {realkoji.url}\ntopurl = {realkoji.topurl}\n"
        "authtype = password\npoll_interval = 1\n"
    )
    return path


def make_srpm(work: Path, spec: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.spec").write_text(spec)
    subprocess.run(
        ["rpmbuild", "-bs", "--define", f"_topdir {work / 'top'}",
         "--define", f"_srcrpmdir {work}", str(work / "tiny.spec")],
        check=True, capture_output=True,
    )  # fmt: skip
    (srpm,) = work.glob("*.src.rpm")
    return srpm


def kxen(
    *args: str | Path, config: Path, cache: Path, check: bool = True, repo: Path = support.REPO
) -> Any:
    """`kxen ARGS --profile ... --user kojiuser` against the stack (the password in the
    environment, as the README says)."""
    return run_kxen(
        *args, "--profile", PROFILE, "--koji-config", config, "--user", USER,
        repo=repo, cache=cache, check=check, env={"KXEN_KOJI_PASSWORD": PASSWORD},
    )  # fmt: skip


def rpm_arch(path: Path) -> str:
    return subprocess.run(
        ["rpm", "-qp", "--nosignature", "--queryformat", "%{ARCH}", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_scratch_build_of_kernel_xen_through_real_koji(
    realkoji: RealKoji,
    koji_config: Path,
    fake_linux: Path,
    fake_checkout: Path,
    kxen_cache: Path,
    tmp_path: Path,
) -> None:
    srpm = smoke_srpm(tmp_path / "srpm", fake_linux, kxen_cache, repo=fake_checkout)
    nvr = srpm.name.removesuffix(".src.rpm")
    results = tmp_path / "results"
    srpm_gets = len(realkoji.gets(".src.rpm"))
    built = kxen(
        "scratch-build", "--target", TARGET, "--srpm", srpm, "--results", results, "--json",
        config=koji_config, cache=kxen_cache,
    )  # fmt: skip
    report = json.loads(built.stdout)
    task_id = report["task_id"]
    assert report["nvr"] == nvr and sorted(report["arches"]) == ["i686", "x86_64"]
    # the SRPM kxen made went up byte for byte, as koji's CLI uploads it: a scratch build
    # of cli-build/<time>.<random>/<srpm>
    src, target, opts = realkoji.request(task_id)
    assert src.startswith("cli-build/") and src.endswith(f"/{srpm.name}")
    assert target == TARGET and opts["scratch"] is True
    assert (realkoji.topdir / "work" / src).read_bytes() == srpm.read_bytes()
    # the hub's build: a scratch build whose output kojid moved to scratch/<user>/task_N
    scratch = realkoji.topdir / "scratch" / USER / f"task_{task_id}"
    for arch in ("i686", "x86_64"):
        folder = results / nvr / arch
        kernel = folder / f"{nvr}.{arch}.rpm"
        assert rpm_arch(kernel) == arch
        assert kernel.stat().st_size == (scratch / kernel.name).stat().st_size
        for log in ("build.log", "root.log", "mock_output.log"):
            assert (folder / log).stat().st_size == (scratch / "logs" / arch / log).stat().st_size
        assert (folder / srpm.name).stat().st_size == (scratch / srpm.name).stat().st_size
    # the SRPM was fetched once, though the srpm task and both buildArch tasks list it
    assert len(realkoji.gets(".src.rpm")) == srpm_gets + 1
    watched = json.loads(
        kxen("koji", "watch", str(task_id), "--json", config=koji_config, cache=kxen_cache).stdout
    )
    assert watched["state"] == "closed"


@pytest.fixture(scope="module")
def builder_ccache(realkoji: RealKoji, kxen_cache: Path, smoke_build: SmokeBuild) -> Iterator[Path]:
    """kojid's builds compile through the cache the session's smoke build filled: the
    lines kxen gives a builder's admin, in the mock user's ~/.config/mock.cfg."""
    cache = Ccache(kxen_cache / CCACHE_SUBDIR)
    realkoji.mock_user_config.parent.mkdir(parents=True, exist_ok=True)
    realkoji.mock_user_config.write_text(cache.koji_builder_config())
    yield cache.dir
    realkoji.mock_user_config.unlink()


def assert_real_kernels(folder: Path, nvr: str, hub_dir: Callable[[str], Path], hits: int) -> None:
    """Both arches' kernels downloaded as the hub holds them, each a bootable kernel-xen,
    compiled through the builder's cache (the smoke kernel has over 900 compiles an arch)."""
    release = nvr.removeprefix("kernel-xen-")
    for arch in ("i686", "x86_64"):
        kernel = folder / nvr / arch / f"{nvr}.{arch}.rpm"
        assert rpm_arch(kernel) == arch
        assert kernel.stat().st_size == (hub_dir(arch) / kernel.name).stat().st_size
        listing = subprocess.run(
            ["rpm", "-qlp", "--nosignature", str(kernel)], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        assert f"/boot/vmlinuz-{release}.{arch}+xen" in listing
    assert hits > 2 * 900


def test_scratch_build_of_the_real_smoke_kernel_through_real_koji(
    realkoji: RealKoji,
    koji_config: Path,
    linux_tarball: Path,
    kxen_cache: Path,
    builder_ccache: Path,
    smoke_build: SmokeBuild,
    tmp_path: Path,
) -> None:
    """kxen makes the real smoke SRPM from linux-source-6.1, uploads it once, kojid builds
    both arches, kxen downloads them and the SRPM once."""
    before, srpm_gets = ccache_hits(builder_ccache), len(realkoji.gets(".src.rpm"))
    results = tmp_path / "results"
    built = kxen(
        "scratch-build", "--target", TARGET, "--flavour", "smoke", "--upstream", linux_tarball,
        "--results", results, "--json", config=koji_config, cache=kxen_cache,
    )  # fmt: skip
    report = json.loads(built.stdout)
    nvr = report["nvr"]
    assert nvr == smoke_build.nvr and sorted(report["arches"]) == ["i686", "x86_64"]
    scratch = realkoji.topdir / "scratch" / USER / f"task_{report['task_id']}"
    hits = ccache_hits(builder_ccache) - before
    assert_real_kernels(results, nvr, lambda arch: scratch, hits)
    assert len(realkoji.gets(".src.rpm")) == srpm_gets + 1


# --- what the real hub does that the imitation got wrong (issue 15) ------------------

FAILS_IN_KOJI = TINY_SPEC.replace(
    "%description",
    '%if "%{?vendor}" == "Koji"\n%{error:tiny refuses to build in koji}\n%endif\n\n%description',
)


@pytest.fixture(scope="module")
def tiny_srpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_srpm(tmp_path_factory.mktemp("tiny"), TINY_SPEC)


def driver(config: Path, user: str = USER, password: str = PASSWORD) -> kojiclient.KojiDriver:
    profile = kojiclient.load_profile(PROFILE, config, user, password)
    return kojiclient.KojiDriver(
        profile, patience=kojiclient.Patience(total=120, first=1, longest=4), poll_interval=0.5
    )


def test_a_failed_srpm_step_shows_mock_output(
    realkoji: RealKoji, koji_config: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    """rebuildSRPM's rpmbuild fails inside the build root: its message is only in
    kojid's mock_output.log, which kxen now tails along with build.log and root.log."""
    srpm = make_srpm(tmp_path / "src", FAILS_IN_KOJI)
    failed = kxen(
        "scratch-build", "--target", TARGET, "--srpm", srpm, "--results", tmp_path / "r",
        "--json", config=koji_config, cache=kxen_cache, check=False,
    )  # fmt: skip
    assert failed.returncode == 5, failed.stderr
    payload = json.loads(failed.stdout)
    (failure,) = payload["failures"]
    assert failure["arch"] == "srpm"
    assert failure["fault"].startswith("error building srpm, mock exited with status 1")
    assert any(
        "tiny refuses to build in koji" in line for line in failure["logs"]["mock_output.log"]
    )
    assert "mock_output.log (last" in failed.stderr
    assert "tiny refuses to build in koji" in failed.stderr


def test_policy_refusal_and_bad_target_are_failed_tasks_with_kojis_text(
    realkoji: RealKoji, koji_config: Path, tiny_srpm: Path
) -> None:
    """The hub's build() checks neither: the task is created and fails in kojid."""
    koji = driver(koji_config)
    koji.login()
    release = koji.submit(koji.upload(tiny_srpm), TARGET, {})
    with pytest.raises(kojiclient.RemoteBuildFailed) as refused:
        koji.watch(release)
    assert refused.value.exit_code == 5
    assert refused.value.message == (
        f"koji task {release} failed: policy violation (build_from_srpm): "
        "Only admin can do this via default policy"
    )
    unknown = koji.submit(koji.upload(tiny_srpm), "no-such-target", kojiclient.scratch_opts([]))
    with pytest.raises(kojiclient.RemoteBuildFailed) as bad:
        koji.watch(unknown)
    assert bad.value.message == f"koji task {unknown} failed: unknown build target: no-such-target"


def test_an_expired_session_is_renewed(
    realkoji: RealKoji, koji_config: Path, tiny_srpm: Path
) -> None:
    koji = driver(koji_config)
    koji.login()
    realkoji.db.sql(
        "koji",
        "UPDATE sessions SET expired = TRUE "
        f"WHERE user_id = (SELECT id FROM users WHERE name = '{USER}')",
    )
    src = koji.upload(tiny_srpm)  # AuthExpired: koji's client logs in again (renew)
    assert (realkoji.topdir / "work" / src).read_bytes() == tiny_srpm.read_bytes()


def test_an_old_callnum_is_a_hub_error(
    realkoji: RealKoji, koji_config: Path, tiny_srpm: Path
) -> None:
    """The hub stores a session's callnum with a state-changing call (here build()): an
    older one after that is koji's SequenceError, reported as the hub refusing us."""
    koji = driver(koji_config)
    koji.login()
    koji.submit(koji.upload(tiny_srpm), "no-such-target", kojiclient.scratch_opts([]))
    koji.session.callnum -= 2
    with pytest.raises(HubError, match=r"getBuildTarget: the hub refused us: \d+ > \d+ \(session"):
        koji.check_target(TARGET)


def test_the_imitations_refusals_are_the_real_hubs(realkoji: RealKoji) -> None:
    """The same raw calls test_koji.py sends to tests/kojihub, answered by koji's hub."""
    session = realkoji.session(USER, PASSWORD)
    assert_refusals_as_koji(realkoji.url, session, TARGET)


def test_the_watcher_rides_out_a_hub_restart(
    realkoji: RealKoji, koji_config: Path, tiny_srpm: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    """The hub process stops and starts again mid-build: kxen retries, kojid too (its
    retry_interval), and the build finishes and is downloaded."""
    argv, env = kxen_command(
        "scratch-build", "--profile", PROFILE, "--koji-config", koji_config, "--user", USER,
        "--target", TARGET, "--srpm", tiny_srpm, "--results", tmp_path / "results", "--json",
        cache=kxen_cache, env={"KXEN_KOJI_PASSWORD": PASSWORD},
    )  # fmt: skip
    admin = realkoji.session()
    owner = admin.getUser(USER)["id"]
    since = time.time()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        tasks = wait_for(
            "the build task",
            lambda: admin.listTasks({"method": "build", "owner": owner, "createdAfter": since}),
            60,
            None,
        )
        unfinished = admin.getTaskInfo(tasks[0]["id"])["state"]
        admin.logout()
        old_hub = realkoji.hub_pid
        realkoji.stop_hub(signal.SIGINT)
        time.sleep(5)
        realkoji.start_hub()
        assert realkoji.hub_pid != old_hub
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert unfinished in (0, 1, 4)  # free, open, assigned: kxen was still watching
    assert process.returncode == 0, err
    # no terminal: each retry is a line of the log, under the phase it interrupted
    assert re.search(r"^\[ *[0-9.]+s\] watch: \w+: .*; retrying in \d+s$", err, re.M), err
    report = json.loads(out)
    assert report["task_id"] == tasks[0]["id"]
    assert sorted(report["arches"]) == ["i686", "x86_64"]
    assert (tmp_path / "results" / "tiny-1.0-1" / "x86_64" / "tiny-1.0-1.x86_64.rpm").is_file()


def test_a_release_build_is_tagged_and_the_same_nvr_is_refused(
    realkoji: RealKoji, koji_config: Path, tmp_path: Path
) -> None:
    """An admin may release-build an uploaded SRPM (build_from_srpm): kojid imports and
    tags it (a tagBuild child); the same NVR again fails with koji's text."""
    srpm = make_srpm(tmp_path / "src", TINY_SPEC.replace("Release: 1", "Release: 7"))
    koji = driver(koji_config, ADMIN, ADMIN_PASSWORD)
    koji.login()
    tree = koji.watch(koji.submit(koji.upload(srpm), TARGET, {}))
    assert {"rebuildSRPM", "buildArch", "tagBuild"} <= {child.method for child in tree.children}
    assert [child.id for child in tree.children] == sorted(child.id for child in tree.children)
    tagged = koji.session.listTagged(DEST_TAG, package="tiny")
    assert [build["nvr"] for build in tagged] == ["tiny-1.0-7"]
    again = koji.submit(koji.upload(srpm), TARGET, {})
    with pytest.raises(kojiclient.RemoteBuildFailed) as exists:
        koji.watch(again)
    assert f"koji task {again} failed" in exists.value.message
    assert f"Build already exists (id={tagged[0]['build_id']}, state=COMPLETE)" in (
        exists.value.message
    )


def test_ssl_login_through_the_wsgi_servers_tls(
    realkoji: RealKoji, tiny_srpm: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    """authtype = ssl: gunicorn's TLS verifies the client certificate, the hub's sslLogin
    takes the user from mod_ssl's SSL_CLIENT_S_DN_CN; RPMs come over HTTPS."""
    pki = Pki.create(tmp_path / "pki")
    base = realkoji.start_tls_hub(pki.hub_tls())
    config = tmp_path / "koji.conf"
    config.write_text(
        f"[{PROFILE}]\nserver = {base}/kojihub\ntopurl = {base}/kojifiles\nauthtype = ssl\n"
        f"cert = {pki.client_pem(USER)}\nserverca = {pki.ca}\npoll_interval = 1\n"
    )
    results = tmp_path / "results"
    built = run_kxen(
        "scratch-build", "--profile", PROFILE, "--koji-config", config, "--target", TARGET,
        "--arch-override", "x86_64", "--srpm", tiny_srpm, "--results", results, "--json",
        cache=kxen_cache,
    )  # fmt: skip
    report = json.loads(built.stdout)
    assert rpm_arch(results / "tiny-1.0-1" / "x86_64" / "tiny-1.0-1.x86_64.rpm") == "x86_64"
    admin = realkoji.session()
    assert admin.getTaskInfo(report["task_id"])["owner"] == admin.getUser(USER)["id"]
    # a certificate for a user the hub does not know is refused (LoginCreatesUser off)
    config.write_text(
        config.read_text().replace(str(pki.client_pem(USER)), str(pki.client_pem("stranger")))
    )
    refused = run_kxen(
        "scratch-build", "--profile", PROFILE, "--koji-config", config, "--target", TARGET,
        "--srpm", tiny_srpm, "--results", results, cache=kxen_cache, check=False,
    )  # fmt: skip
    assert refused.returncode == 12, refused.stderr
    assert "stranger" in refused.stderr


# --- the release: kxen dist-git, the lookaside, git daemon, kojid's source_cmd -------

DIST_GIT_PACKAGE = f"{distgit.NAMESPACE}/kernel-xen"


@dataclass(frozen=True)
class DistGit:
    server: distgit.DistGitServer
    git_url: str
    """git://127.0.0.1:PORT/rpms/kernel-xen.git, served by git daemon."""


def builder_sources_cmd(path: Path, base_url: str) -> None:
    """What a builder installs as its source_cmd for kxen's dist-git (README): in the
    checkout kojid made, fetch what `sources` names from the lookaside, hashes checked,
    as `fedpkg sources` does. Here kxen is this checkout's, through this interpreter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={support.REPO / 'tools'} exec {KXEN} lookaside download . "
        f'--base {base_url} --name "${{KXEN_LOOKASIDE_NAME:-{DIST_GIT_PACKAGE}}}"\n'
    )
    path.chmod(0o755)


@pytest.fixture(scope="module")
def dist_git(realkoji: RealKoji, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistGit]:
    """dist-git's upload.cgi and lookaside (tests/distgit.py), the package repositories
    served by `git daemon` on a private port, and kojid's source_cmd pointing there."""
    base = tmp_path_factory.mktemp("dist-git")
    with distgit.running(base / "server") as server:
        server.add_package("kernel-xen")
        port = free_port()
        daemon = subprocess.Popen(
            ["git", "daemon", f"--base-path={server.git_root}", "--export-all", "--reuseaddr",
             "--listen=127.0.0.1", f"--port={port}", "--informative-errors", str(server.git_root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(base / "git-daemon.log").open("wb"), start_new_session=True,
        )  # fmt: skip
        try:
            url = f"git://127.0.0.1:{port}/{DIST_GIT_PACKAGE}.git"
            wait_for("git daemon", lambda: git_ls_remote(url), 20, base / "git-daemon.log")
            builder_sources_cmd(realkoji.sources_cmd, server.base_url)
            yield DistGit(server, url)
        finally:
            realkoji.sources_cmd.unlink(missing_ok=True)
            stop(daemon)


def git_ls_remote(url: str) -> bool:
    subprocess.run(["git", "ls-remote", url], check=True, capture_output=True, timeout=10)
    return True


def test_release_build_from_dist_git_through_real_koji(
    realkoji: RealKoji,
    koji_config: Path,
    dist_git: DistGit,
    linux_tarball: Path,
    kxen_cache: Path,
    builder_ccache: Path,
    smoke_build: SmokeBuild,
    tmp_path: Path,
) -> None:
    """As kernel-ark releases Fedora's kernel: `kxen dist-git --upload` exports the real
    smoke kernel-xen into the dist-git and linux-source-6.1 into the lookaside; `kxen build
    --dist-git git://...#commit` has kojid clone it, run its source_cmd for the tarball,
    build the SRPM and both arches and tag the build; the same NVR again is refused."""
    packaging = support.make_checkout(tmp_path / "packaging")
    for step in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "packaging")):
        support.git(packaging, *step)
    checkout = tmp_path / "dist-git"
    # a packager's clone pushes over ssh; git daemon serves only reads: clone the path
    repo = dist_git.server.git_root / f"{DIST_GIT_PACKAGE}.git"
    subprocess.run(["git", "clone", "-q", str(repo), str(checkout)], check=True)
    export = run_kxen(
        "dist-git", checkout, "--flavour", "smoke", "--upstream", linux_tarball, "--upload",
        dist_git.server.upload_url, "--name", DIST_GIT_PACKAGE, "--json",
        repo=packaging, cache=kxen_cache, env=support.GIT_IDENTITY,
    )  # fmt: skip
    exported = json.loads(export.stdout)
    support.git(checkout, "push", "-q", "origin", "HEAD")
    nvr, commit = exported["nvr"], exported["commit"]
    assert nvr == smoke_build.nvr
    assert [u["sent"] for u in exported["uploads"]] == [True]
    source = f"{dist_git.git_url}#{commit}"
    args = ("build", "--dist-git", source, "--target", TARGET, "--results", tmp_path / "r")
    before = ccache_hits(builder_ccache)
    built = kxen(*args, "--json", config=koji_config, cache=kxen_cache, repo=packaging)
    report = json.loads(built.stdout)
    assert report["nvr"] == nvr and sorted(report["arches"]) == ["i686", "x86_64"]
    assert realkoji.request(report["task_id"])[0] == source
    tagged = realkoji.session().listTagged(DEST_TAG, package="kernel-xen")
    assert [build["nvr"] for build in tagged] == [nvr]
    version, release = nvr.removeprefix("kernel-xen-").split("-")
    imported = realkoji.topdir / "packages" / "kernel-xen" / version / release
    hits = ccache_hits(builder_ccache) - before
    assert_real_kernels(tmp_path / "r", nvr, lambda arch: imported / arch, hits)
    checkout_log, root_log = srpm_task_logs(realkoji, report["task_id"], "checkout.log", "root.log")
    assert f"git clone -n {dist_git.git_url}" in checkout_log
    assert "git reset --hard KOJI_FETCH_HEAD" in checkout_log
    assert f"Executing command: ['/bin/sh', '-c', '{realkoji.sources_cmd}']" in root_log
    assert f"{exported['uploads'][0]['file']}: downloaded" in root_log
    again = kxen(*args, config=koji_config, cache=kxen_cache, repo=packaging, check=False)
    assert again.returncode == 5, again.stderr
    assert f"Build already exists (id={tagged[0]['build_id']}, state=COMPLETE)" in again.stderr


def srpm_task_logs(realkoji: RealKoji, task_id: int, *names: str) -> list[str]:
    """Logs of the build's buildSRPMFromSCM child, as the hub hands them out."""
    session = realkoji.session()
    (child,) = [c for c in session.getTaskChildren(task_id) if c["method"] == "buildSRPMFromSCM"]
    return [session.downloadTaskOutput(child["id"], name).decode() for name in names]
