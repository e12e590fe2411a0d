"""kxen killed outright (SIGKILL, SIGHUP) at several points of a smoke build: its children
die with it, and the next run reclaims every area it left, says so, and succeeds.

Reliability rows 9 and 19, on the fake kernel tree (tests/fakes/linux) so that each
build takes seconds; FAKE_LINUX_STALL holds the build in the vmlinux link.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kxen.support.fsutil import SCRATCH_SUFFIX

from .conftest import kxen_command

NVR = "kernel-xen-6.1.192-1.smoke"


def _leftovers(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob(f"*{SCRATCH_SUFFIX}"))


def _processes_under(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if text in cmdline or cwd.startswith(text):
            found.append(int(entry.name))
    return found


def _wait_for(what: str, condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _stalled_in(results: Path, arch: str) -> Callable[[], bool]:
    def stalled() -> bool:
        logs = results.glob(f"{NVR}/.staging-{arch}-*/build.log")
        return any("fake-linux: stalling" in log.read_text(errors="replace") for log in logs)

    return stalled


def _started(results: Path) -> Callable[[], bool]:
    return lambda: any(results.glob(f".work-*{SCRATCH_SUFFIX}"))


# Where kxen dies: as soon as its work directory exists (configs, SRPM), while the first
# arch compiles, and while the second arch compiles after the first was published.
POINTS = {
    "early": (_started, None, {}),
    "first-arch": (lambda results: _stalled_in(results, "i686"), None, {"FAKE_LINUX_STALL": "300"}),
    "second-arch": (
        lambda results: _stalled_in(results, "x86_64"),
        "i686",
        {"FAKE_LINUX_STALL_x86_64": "300"},
    ),
}


# SIGHUP is handled like SIGTERM (exit 129, everything cleaned up): one point shows it.
KILLS = [(point, signal.SIGKILL) for point in POINTS] + [("first-arch", signal.SIGHUP)]


@pytest.mark.parametrize(
    ("point", "signum"), KILLS, ids=[f"{p}-{signal.Signals(s).name}" for p, s in KILLS]
)
def test_killed_build_is_reclaimed_by_the_next_run(
    fake_linux: Path, fake_checkout: Path, tmp_path: Path, point: str, signum: int
) -> None:
    results, area, cache = tmp_path / "results", tmp_path / "area", tmp_path / "cache"
    build = ("local", "--flavour", "smoke", "--upstream", fake_linux,
             "--results", results, "--workdir", area)  # fmt: skip
    argv, env = kxen_command(*build, repo=fake_checkout, cache=cache)
    condition, published, stall = POINTS[point]
    kxen = subprocess.Popen(
        argv, env={**env, **stall}, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_for(f"kxen to reach {point}", condition(results))
        kxen.send_signal(signum)
        _, stderr = kxen.communicate(timeout=60)
    finally:
        if kxen.poll() is None:
            kxen.kill()
            kxen.wait()
    if signum == signal.SIGHUP:
        assert kxen.returncode == 129, stderr
        assert b"interrupted by SIGHUP" in stderr
        assert _leftovers(results, area, cache) == []
    else:
        assert kxen.returncode == -signal.SIGKILL
    # Its children die with it, even with no chance to clean up.
    _wait_for("the build's processes to be gone", lambda: not _processes_under(str(tmp_path)), 30)
    if published:
        assert (results / NVR / published / "kxen-result.json").is_file()
    left = _leftovers(results, area, cache)
    if signum == signal.SIGKILL:
        assert left, "a killed kxen leaves its scratch directories behind"
    for path in left:  # age them past the window in which a new holder locks its directory
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    rerun = subprocess.run(
        [*argv, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    for path in left:
        assert f"removed {path}" in rerun.stderr
        assert not path.exists()
    report = json.loads(rerun.stdout)
    assert [a["arch"] for a in report["report"]["arches"]] == ["i686", "x86_64"]
    assert sorted(w.split(" (")[0] for w in report.get("warnings", [])) == sorted(
        f"removed {path}" for path in left
    )
    assert _leftovers(results, area, cache) == []
    assert sorted(p.name for p in (results / NVR).iterdir()) == ["i686", "x86_64"]


def test_interrupted_first_build_leaves_no_empty_results_dir(
    fake_linux: Path, fake_checkout: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    argv, env = kxen_command(
        "local", "--flavour", "smoke", "--arch", "x86_64", "--upstream", fake_linux,
        "--results", results, "--workdir", tmp_path / "area",
        repo=fake_checkout, cache=tmp_path / "cache",
    )  # fmt: skip
    kxen = subprocess.Popen(argv, env={**env, "FAKE_LINUX_STALL": "300"}, stderr=subprocess.PIPE)
    try:
        _wait_for("the build to stall", _stalled_in(results, "x86_64"))
        kxen.send_signal(signal.SIGTERM)
        assert kxen.wait(timeout=60) == 143
    finally:
        if kxen.poll() is None:
            kxen.kill()
            kxen.wait()
    assert not (results / NVR).exists()
    assert [p.name for p in results.iterdir()] == [f".{NVR}.lock"]


def test_a_second_build_of_the_same_nvr_is_refused_and_the_first_goes_on(
    fake_linux: Path, fake_checkout: Path, tmp_path: Path
) -> None:
    """Reliability row 8: "locked by PID N" (exit 7), the running build unaffected."""
    results = tmp_path / "results"
    argv, env = kxen_command(
        "local", "--flavour", "smoke", "--arch", "x86_64", "--upstream", fake_linux,
        "--results", results, "--workdir", tmp_path / "area",
        repo=fake_checkout, cache=tmp_path / "cache",
    )  # fmt: skip
    first = subprocess.Popen(argv, env={**env, "FAKE_LINUX_STALL": "4"}, stderr=subprocess.PIPE)
    try:
        _wait_for("the first build to stall", _stalled_in(results, "x86_64"))
        second = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True)
        assert second.returncode == 7, second.stderr
        assert f"results/{NVR} is locked by PID {first.pid}" in second.stderr
        assert json.loads(second.stdout)["exit_code"] == 7
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, first_err
    assert (results / NVR / "x86_64" / "kxen-result.json").is_file()
