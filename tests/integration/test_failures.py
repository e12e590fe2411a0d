"""A build that fails or is interrupted says where, leaves no partial result and no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import SMOKE_X86_64, kxen_command, run_kxen

pytestmark = pytest.mark.slow
NVR = "kernel-xen-6.1.192-1.smoke"
BREAKING_PATCH = """\
--- a/kernel/bounds.c
+++ b/kernel/bounds.c
@@ -1,4 +1,5 @@
 // SPDX-License-Identifier: GPL-2.0
+#error kxen-test: this patch breaks the build on purpose
 /*
  * Generate definitions needed by the preprocessor.
  * This code generates raw asm output which is post-processed
"""


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or working directory is under `text`."""
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


def _assert_no_partial_results(results: Path) -> None:
    assert not (results / NVR / "x86_64").exists()
    leftovers = [p.name for p in results.rglob("*") if p.name.startswith((".staging", ".work"))]
    assert leftovers == []


def test_compile_error_names_arch_and_first_error_lines(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, tmp_path: Path
) -> None:
    (checkout / "patches" / "0001-break-build.patch").write_text(BREAKING_PATCH)
    (checkout / "patches" / "series").write_text("0001-break-build.patch\n")
    results = tmp_path / "results"
    run = run_kxen(
        *SMOKE_X86_64,
        "--upstream",
        linux_tarball,
        "--results",
        results,
        "--json",
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == 5, run.stderr
    assert "x86_64: build failed" in run.stderr
    assert "#error kxen-test" in run.stderr
    payload = json.loads(run.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 5
    assert any("#error kxen-test" in line for line in payload["details"])
    failed_log = results / NVR / "failed-x86_64" / "build.log"
    assert "kernel/bounds.c" in failed_log.read_text()
    _assert_no_partial_results(results)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_build_stops_everything(
    kxen_cache: Path, linux_tarball: Path, tmp_path: Path, signum: int, code: int
) -> None:
    results = tmp_path / f"results-{signum}"
    area = tmp_path / f"work-{signum}"  # where rpmbuild unpacks and compiles (default: RAM)
    argv, env = kxen_command(
        *SMOKE_X86_64, "--upstream", linux_tarball, "--results", results, "--workdir", area,
        cache=kxen_cache,
    )  # fmt: skip
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if "build x86_64" in line or time.monotonic() > deadline:
            break
    time.sleep(15)  # let rpmbuild get into %prep/%build with children running
    assert _processes_mentioning(str(results)), "rpmbuild should be running"
    assert _processes_mentioning(str(area)), "tar or make should be working in the area"
    proc.send_signal(signum)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == code, rest
    assert "interrupted" in rest
    assert _processes_mentioning(str(results)) == []
    assert _processes_mentioning(str(area)) == []
    assert list(area.iterdir()) == []  # the unpacked tree is gone too
    _assert_no_partial_results(results)
