"""kxen against koji's own hub and builder (tests/realkoji): PostgreSQL, the hub under
gunicorn, kojid making the repository and building through the mock stand-in.

The scratch builds use a tiny package, and the kernel-xen SRPM of the fake Linux tree
(seconds, not minutes): the same kxen code paths as the real kernel."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..realkoji import TARGET, USER, RealKoji
from ..realkoji.stack import PASSWORD, running
from .conftest import run_kxen, smoke_srpm
from .test_koji import TINY_SPEC

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
    return work / "tiny-1.0-1.src.rpm"


def kxen(*args: str | Path, config: Path, cache: Path, check: bool = True) -> Any:
    """`kxen ARGS --profile ... --user kojiuser` against the stack (the password in the
    environment, as the README says)."""
    return run_kxen(
        *args, "--profile", PROFILE, "--koji-config", config, "--user", USER,
        cache=cache, check=check, env={"KXEN_KOJI_PASSWORD": PASSWORD},
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
