"""The mock backend against the mock stand-in (tests/fakes/mock), which really runs rpmbuild.

Driver tests build tiny real packages in seconds; one slow test makes a real smoke
kernel-xen through `kxen mockbuild`.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from kxen import pipeline
from kxen.build.backends.base import ArchResult
from kxen.build.backends.mock import MockBackend, choose_roots, default_roots, smp_flags
from kxen.errors import InputError
from kxen.support.progress import NullProgress
from kxen.support.runner import SubprocessRunner

from ..support import REPO

FAKES = REPO / "tests" / "fakes"
STAND_IN = FAKES / "mock"
MOCK_LOGS = {"build.log", "root.log", "state.log", "hw_info.log", "installed_pkgs.log"}
TINY = "tiny-1.0-1"


@pytest.fixture
def mock_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The stand-in first on PATH, its locks and build roots in this test's tmp dir."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MOCK_STANDIN_STATE_DIR", str(tmp_path / "mock-state"))
    monkeypatch.setenv("KXEN_TEST_MARKER", uuid.uuid4().hex)
    monkeypatch.delenv("MOCK_STANDIN_FAIL", raising=False)
    monkeypatch.delenv("MOCK_STANDIN_CONFIG_DIR", raising=False)
    return dict(os.environ)


def make_srpm(where: Path, build: str, name: str = "tiny") -> Path:
    """A tiny real SRPM whose %build runs `build` (shell)."""
    where.mkdir(parents=True, exist_ok=True)
    spec = where / f"{name}.spec"
    spec.write_text(
        textwrap.dedent(
            f"""\
            Name: {name}
            Version: 1.0
            Release: 1
            Summary: A tiny package for driver tests
            License: MIT
            %global debug_package %{{nil}}
            %description
            Tiny.
            %build
            echo "smp flags: %{{?_smp_mflags}}"
            """
        )
        + build
        + textwrap.dedent(
            f"""
            %install
            mkdir -p %{{buildroot}}/usr/share/{name}
            echo hello > %{{buildroot}}/usr/share/{name}/hello
            %files
            /usr/share/{name}/hello
            """
        )
    )
    subprocess.run(
        [
            "rpmbuild",
            "-bs",
            "--define",
            f"_topdir {where / 'top'}",
            "--define",
            f"_sourcedir {where}",
            str(spec),
        ],
        check=True,
        capture_output=True,
    )
    return where / "top" / "SRPMS" / f"{name}-1.0-1.src.rpm"


def build(
    srpm: Path, arches: list[str], results: Path, **options: object
) -> tuple[list[ArchResult], Path]:
    """pipeline.build with the mock backend, published under results/<nvr>/."""
    backend = MockBackend(SubprocessRunner(), default_roots(), **options)  # type: ignore[arg-type]
    try:
        report = pipeline.build(backend, srpm, arches, results, NullProgress())
    except pipeline.BuildFailed as failed:
        report = failed.report
    return report.arches, results / report.nvr


def state_times(state_log: Path, what: str) -> tuple[datetime.datetime, datetime.datetime]:
    """When `Start: <what>` and `Finish: <what>` were logged."""
    stamps = {}
    for line in state_log.read_text().splitlines():
        stamp, _, text = line.partition(" - ")
        for kind in ("Start", "Finish"):
            if text.startswith(f"{kind}: {what}"):
                stamps[kind] = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    return stamps["Start"], stamps["Finish"]


# --- the driver's command line -------------------------------------------------------


def test_command_line_per_arch() -> None:
    backend = MockBackend(
        SubprocessRunner(),
        default_roots(),
        jobs=2,
        cpus=2,
        no_clean=True,
        extra_args=("--with", "debuginfo"),
        unique_prefix="u",
    )
    srpm, staging = Path("/s/p.src.rpm"), Path("/r/.staging")
    from kxen.build.backends.base import BuildRequest

    i686 = backend.command(BuildRequest(srpm, "i686", staging))
    x86 = backend.command(BuildRequest(srpm, "x86_64", staging))
    assert i686[:9] == [
        "mock",
        "-r",
        i686[2],
        "--rebuild",
        str(srpm),
        "--resultdir",
        str(staging),
        "--uniqueext",
        "u-i686",
    ]
    assert i686[2].startswith("fedora-") and i686[2].endswith("-i386")
    assert x86[2].endswith("-x86_64") and x86[8] == "u-x86_64"
    assert "--arch" not in i686
    assert i686[9:] == [
        "--no-cleanup-after",
        "--isolation=simple",
        "--no-bootstrap-image",
        "--define",
        "_smp_mflags -j2 -l2",
        "--with",
        "debuginfo",
    ]


def test_job_slots_and_roots() -> None:
    assert [smp_flags(2, 2), smp_flags(2, 1), smp_flags(8, 3), smp_flags(1, 2)] == [
        "-j2 -l2",
        "-j2",
        "-j8 -l8",
        "-j1 -l1",
    ]
    defaults = default_roots((("i686", "centos-stream-9-i686"),))
    assert defaults["i686"] == "centos-stream-9-i686"
    assert choose_roots(["x86_64"], defaults, ["my.cfg"]) == {"x86_64": "my.cfg"}
    both = choose_roots(["i686", "x86_64"], defaults, ["x86_64=alt-x86_64"])
    assert both == {"i686": "centos-stream-9-i686", "x86_64": "alt-x86_64"}
    with pytest.raises(InputError, match="say which"):
        choose_roots(["i686", "x86_64"], defaults, ["alt"])
    with pytest.raises(InputError, match="not an arch being built"):
        choose_roots(["x86_64"], defaults, ["i686=alt"])


def test_manifest_mock_roots(tmp_path: Path) -> None:
    from kxen import manifest

    from ..support import make_checkout

    checkout = make_checkout(tmp_path / "co")
    path = checkout / "kernel-xen.yaml"
    path.write_text(path.read_text() + "mock:\n  roots:\n    x86_64: alma-9-x86_64\n")
    assert manifest.load(path).mock_roots == (("x86_64", "alma-9-x86_64"),)
    path.write_text(path.read_text() + "    ppc64le: x\n")
    with pytest.raises(InputError, match="mock"):
        manifest.load(path)


# --- the stand-in honours mock's command line -----------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["-r", "fedora-41-x86_64", "--rebuild", "a.src.rpm", "--bogus"], 5),
        (["-r", "fedora-41-x86_64", "--rebuild", "a.src.rpm", "b.src.rpm"], 5),
        (["-r", "fedora-41-x86_64", "--chain", "a.src.rpm", "--resultdir", "/tmp/x"], 5),
        (["-r", "fedora-41-x86_64", "--rebuild"], 5),
        (["-r", "fedora-41-x86_64", "--rebuild", "a.src.rpm", "--isolation", "chroot"], 5),
        (["-r", "fedora-41-x86_64", "--rebuild", "a.src.rpm", "--define", "nospace"], 5),
        (["-r", "no-such-config", "--rebuild", "a.src.rpm", "--resultdir", "/tmp/x"], 3),
        (["-r", "/nowhere/x.cfg", "--rebuild", "a.src.rpm", "--resultdir", "/tmp/x"], 3),
    ],
)
def test_stand_in_refuses_what_mock_refuses(
    mock_env: dict[str, str], args: list[str], code: int
) -> None:
    run = subprocess.run([str(STAND_IN), *args], capture_output=True, text=True, env=mock_env)
    assert run.returncode == code, run.stderr


def test_stand_in_reads_a_config_dir_and_targets_i686(
    mock_env: dict[str, str], tmp_path: Path
) -> None:
    configs = tmp_path / "mock-configs"
    configs.mkdir()
    (configs / "site-i686.cfg").write_text(
        "config_opts['root'] = 'site-i686'\nconfig_opts['target_arch'] = 'i686'\n"
    )
    srpm = make_srpm(tmp_path / "src", "")
    out = tmp_path / "out"
    run = subprocess.run(
        [str(STAND_IN), "-r", "site-i686", "--rebuild", str(srpm), "--resultdir", str(out), "-N"],
        capture_output=True,
        text=True,
        env={**mock_env, "MOCK_STANDIN_CONFIG_DIR": str(configs)},
    )
    assert run.returncode == 0, run.stderr
    assert (out / f"{TINY}.i686.rpm").is_file()
    assert (tmp_path / "mock-state" / "site-i686").is_dir()  # -N kept the build root


# --- builds through the backend --------------------------------------------------------


def test_success_publishes_rpms_and_every_mock_log(
    mock_env: dict[str, str], tmp_path: Path
) -> None:
    srpm = make_srpm(tmp_path / "src", "")
    (outcome,), nvr_dir = build(srpm, ["x86_64"], tmp_path / "results")
    assert outcome.ok, outcome.error
    assert outcome.rpms == [f"{TINY}.x86_64.rpm"]
    published = {p.name for p in (nvr_dir / "x86_64").iterdir()}
    assert published >= MOCK_LOGS | {f"{TINY}.x86_64.rpm", srpm.name, "kxen-result.json"}
    assert set(outcome.logs) >= MOCK_LOGS
    build_log = (nvr_dir / "x86_64" / "build.log").read_text()
    assert build_log.rstrip().endswith("Child return code was: 0")
    assert "smp flags: -j" in build_log
    assert "DEBUG " in (nvr_dir / "x86_64" / "root.log").read_text()
    assert not (tmp_path / "mock-state" / f"fedora-{41}-x86_64").exists()
    assert [p.name for p in nvr_dir.iterdir()] == ["x86_64"]  # no staging left behind


def test_missing_build_dependency_is_named(
    mock_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srpm = make_srpm(tmp_path / "src", "")
    monkeypatch.setenv("MOCK_STANDIN_FAIL", "deps")
    (outcome,), nvr_dir = build(srpm, ["x86_64"], tmp_path / "results")
    assert not outcome.ok
    assert outcome.error == "missing build dependency: elfutils-libelf-devel"
    assert outcome.logs[0] == "root.log"
    failed = nvr_dir / "failed-x86_64"
    assert MOCK_LOGS - {"build.log"} <= {p.name for p in failed.iterdir()}
    assert "Start: rpmbuild" not in (failed / "state.log").read_text()
    assert not (nvr_dir / "x86_64").exists()


def test_compile_error_shows_the_compiler_lines(mock_env: dict[str, str], tmp_path: Path) -> None:
    broken = textwrap.dedent(
        """\
        printf 'int main(void)\\n{\\n\\treturn undeclared_thing;\\n}\\n' > broken.c
        gcc -c broken.c -o broken.o
        """
    )
    srpm = make_srpm(tmp_path / "src", broken)
    (outcome,), nvr_dir = build(srpm, ["x86_64"], tmp_path / "results")
    assert not outcome.ok
    assert "status 10" in outcome.error and "rpmbuild phase failed" in outcome.error
    assert outcome.logs[0] == "build.log"
    assert "error: 'undeclared_thing' undeclared" in outcome.error_lines[0]
    assert "Child return code was: 1" in (nvr_dir / "failed-x86_64" / "build.log").read_text()


def _wait_for(path: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{path}: no {text!r} within {timeout}s")


def test_locked_root_is_reported(mock_env: dict[str, str], tmp_path: Path) -> None:
    srpm = make_srpm(tmp_path / "src", "sleep 30\n")
    first_out = tmp_path / "first"
    holder = subprocess.Popen(
        [
            str(STAND_IN),
            "-r",
            "fedora-41-x86_64",
            "--rebuild",
            str(srpm),
            "--resultdir",
            str(first_out),
            "--uniqueext",
            "same-x86_64",
        ],
        env=mock_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(first_out / "state.log", "Start: rpmbuild")
        (outcome,), _ = build(srpm, ["x86_64"], tmp_path / "results", unique_prefix="same", cpus=2)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert not outcome.ok
    assert outcome.error == "build root fedora-41-x86_64 is locked by another process"


def test_two_arches_build_concurrently_sharing_job_slots(
    mock_env: dict[str, str], tmp_path: Path
) -> None:
    srpm = make_srpm(tmp_path / "src", "sleep 3\n")
    outcomes, nvr_dir = build(srpm, ["x86_64", "i686"], tmp_path / "results", jobs=2, cpus=2)
    assert [o.arch for o in outcomes] == ["x86_64", "i686"] and all(o.ok for o in outcomes)
    spans = {a: state_times(nvr_dir / a / "state.log", "rpmbuild") for a in ("x86_64", "i686")}
    (start_a, end_a), (start_b, end_b) = spans["x86_64"], spans["i686"]
    assert start_a < end_b and start_b < end_a, spans
    for arch in ("x86_64", "i686"):
        assert "smp flags: -j2 -l2" in (nvr_dir / arch / "build.log").read_text()
        assert (nvr_dir / arch / f"{TINY}.{arch}.rpm").is_file()


DRIVER = """
import signal, sys
from pathlib import Path
sys.path.insert(0, {tools!r})
sys.path.insert(0, {repo!r})
from kxen import pipeline
from kxen.build.backends.mock import MockBackend, default_roots
from kxen.cli import output
from kxen.support.progress import NullProgress
from kxen.support.runner import SubprocessRunner

signal.signal(signal.SIGTERM, output._on_sigterm)
backend = MockBackend(SubprocessRunner(), default_roots(), jobs=2, cpus=2)
srpm, results = Path(sys.argv[1]), Path(sys.argv[2])
try:
    pipeline.build(backend, srpm, ["x86_64", "i686"], results, NullProgress())
except BaseException as exc:
    print("stopped by", type(exc).__name__, flush=True)
    sys.exit(3)
"""


def _processes_with(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_every_mock_and_rpmbuild(
    mock_env: dict[str, str], tmp_path: Path, signum: int
) -> None:
    srpm = make_srpm(tmp_path / "src", "sleep 120\n")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tools=str(REPO / "tools"), repo=str(REPO)))
    results = tmp_path / "results"
    driver = subprocess.Popen(
        [sys.executable, str(script), str(srpm), str(results)],
        env=mock_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = list(results.glob(f"{TINY}/.staging-*/state.log"))
            if len(logs) == 2 and all("Start: rpmbuild" in p.read_text() for p in logs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the two mock runs did not both start rpmbuild")
        assert any("rpmbuild" in cmd for cmd in _processes_with(mock_env["KXEN_TEST_MARKER"]))
        driver.send_signal(signum)
        out, _ = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 3 and "stopped by" in out
    assert _processes_with(mock_env["KXEN_TEST_MARKER"]) == []
    assert not (results / TINY / "x86_64").exists()
