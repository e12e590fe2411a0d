"""Fixtures shared by the tests that drive the real `kxen` command end to end.

The real smoke kernels are built once per session (both arches) and shared by
every test that inspects them; the prepared 6.1 tree is cached once per
session too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from ..support import REPO

DEBIAN_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
KXEN = Path(sys.executable).with_name("kxen")


@pytest.fixture(scope="session")
def linux_tarball() -> Path:
    assert DEBIAN_TARBALL.is_file(), "run tools/setup-host: it installs linux-source-6.1"
    return DEBIAN_TARBALL


@pytest.fixture(scope="session")
def kxen_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kxen-cache")


@pytest.fixture(scope="session")
def linux_tree(linux_tarball: Path, kxen_cache: Path) -> Path:
    """The prepared 6.1 tree, as kxen extracts it (once per session, never written)."""
    up = origin.from_tarball(linux_tarball, kxen_cache)
    return upstream_tree.prepared_tree(up, kxen_cache, SubprocessRunner())


def kxen_command(
    *args: str | Path, repo: Path = REPO, cache: Path, env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a `kxen` run against `repo` with its own cache (and `env`
    on top of this process's environment)."""
    environment = {**os.environ, **(env or {}), "KXEN_CACHE_DIR": str(cache)}
    return [str(KXEN), "--repo", str(repo), *map(str, args)], environment


def run_kxen(
    *args: str | Path,
    repo: Path = REPO,
    cache: Path,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv, env = kxen_command(*args, repo=repo, cache=cache, env=env)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"kxen {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def smoke_srpm(outdir: Path, tarball: Path, cache: Path, repo: Path = REPO) -> Path:
    """`kxen srpm --flavour smoke` from a local tarball; the SRPM's path."""
    run = run_kxen(
        "srpm", "--flavour", "smoke", "--upstream", tarball, "-o", outdir, repo=repo, cache=cache
    )
    return Path(run.stdout.strip())


SMOKE_X86_64 = ("local", "--arch", "x86_64", "--flavour", "smoke")


@dataclass(frozen=True)
class SmokeBuild:
    report: dict[str, Any]
    results: Path
    nvr: str

    def arch_dir(self, arch: str) -> Path:
        return self.results / self.nvr / arch

    def rpm(self, arch: str, name: str = "kernel-xen") -> Path:
        return self.arch_dir(arch) / f"{name}-{self.nvr.removeprefix('kernel-xen-')}.{arch}.rpm"

    def kernel_release(self, arch: str) -> str:
        return f"{self.nvr.removeprefix('kernel-xen-')}.{arch}+xen"


@pytest.fixture(scope="session")
def smoke_build(
    linux_tarball: Path, kxen_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> SmokeBuild:
    """The README's main job: a real smoke build of both arches from linux-source-6.1."""
    results = tmp_path_factory.mktemp("results")
    run = run_kxen(
        "local",
        "--flavour",
        "smoke",
        "--upstream",
        linux_tarball,
        "--results",
        results,
        "--json",
        cache=kxen_cache,
    )
    report = json.loads(run.stdout)["report"]
    return SmokeBuild(report, results, report["nvr"])


def ccache_hits(cache_dir: Path) -> int:
    """The hits ccache has counted in `cache_dir` so far (direct and preprocessed)."""
    stats = subprocess.run(
        ["ccache", "--print-stats"], capture_output=True, text=True, check=True,
        env={**os.environ, "CCACHE_DIR": str(cache_dir)},
    ).stdout  # fmt: skip
    counters = dict(line.split("\t") for line in stats.splitlines())
    return int(counters["direct_cache_hit"]) + int(counters["preprocessed_cache_hit"])


def rpm_header(path: Path) -> Any:
    import rpm

    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    with path.open("rb") as handle:
        return ts.hdrFromFdno(handle.fileno())


def extract_file(package: Path, member: str, target: Path) -> Path:
    """One file of an RPM's payload, via rpm2cpio | cpio."""
    target.mkdir(parents=True, exist_ok=True)
    payload = subprocess.run(["rpm2cpio", str(package)], capture_output=True, check=True).stdout
    # binary RPMs store ./boot/..., source RPMs bare file names
    pattern = f".{member}" if member.startswith("/") else member
    subprocess.run(["cpio", "-idm", "--quiet", pattern], input=payload, cwd=target, check=True)
    return target / member.lstrip("/")
