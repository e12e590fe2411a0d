"""Builds through ccache on the fake Linux tree (seconds): `kxen local` and `kxen mockbuild`
(the stand-in, honouring mock's ccache plugin) with the real spec, rpmbuild and ccache.

The fake tree compiles with absolute paths (its srctree is absolute), so a hit across
build directories needs the base dir kxen sets; its init/version.c and every module's
.mod.c include utsrelease.h, the only compiles a new release may miss.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kxen.build.ccache import Ccache

from .. import fakelinux
from ..support import REPO
from .conftest import ccache_hits, kxen_command, rpm_header, run_kxen

ARCHES = ("i686", "x86_64")
VERSION = fakelinux.VERSION
NVR = f"kernel-xen-{VERSION}-1.smoke"
FAKES = REPO / "tests" / "fakes"

pytestmark = pytest.mark.skipif(
    not (Path("/usr/lib/ccache/gcc").exists() or Path("/usr/lib64/ccache/gcc").exists()),
    reason="ccache is not installed (tools/setup-host installs it)",
)


@dataclass(frozen=True)
class ColdBuild:
    """Both arches built once with an empty ccache."""

    cache: Path
    results: Path
    arches: dict[str, dict[str, Any]]

    @property
    def ccache(self) -> Path:
        return self.cache / "ccache"


def with_release(checkout: Path, release: int) -> Path:
    manifest = checkout / "kernel-xen.yaml"
    text, count = re.subn(r"(?m)^release: \d+$", f"release: {release}", manifest.read_text())
    assert count == 1
    manifest.write_text(text)
    return checkout


def arch_reports(stdout: str) -> dict[str, dict[str, Any]]:
    return {a["arch"]: a for a in json.loads(stdout)["report"]["arches"]}


def stand_in_env(env: dict[str, str], state: Path) -> dict[str, str]:
    """The mock stand-in first on PATH, its build roots in `state`."""
    path = f"{FAKES}{os.pathsep}{env['PATH']}"
    return {**env, "PATH": path, "MOCK_STANDIN_STATE_DIR": str(state)}


def release_bound(arch_dir: Path, arch: str) -> int:
    """How many compiles include utsrelease.h: init/version.c and each module's .mod.c
    (its vermagic)."""
    (kernel,) = arch_dir.glob(f"kernel-xen-{VERSION}-*.{arch}.rpm")
    modules = [name for name in rpm_header(kernel)["filenames"] if name.endswith(".ko")]
    assert modules
    return 1 + len(modules)


@pytest.fixture(scope="module")
def cold(fake_linux: Path, tmp_path_factory: pytest.TempPathFactory) -> ColdBuild:
    base = tmp_path_factory.mktemp("ccache-cold")
    checkout = fakelinux.make_checkout(base / "checkout")
    run = run_kxen(
        "local", "--flavour", "smoke", "--upstream", fake_linux, "--results", base / "results",
        "--json", repo=checkout, cache=base / "cache",
    )  # fmt: skip
    return ColdBuild(base / "cache", base / "results", arch_reports(run.stdout))


@pytest.mark.parametrize("arch", ARCHES)
def test_a_cold_build_misses_and_records_it_beside_the_rpms(cold: ColdBuild, arch: str) -> None:
    stats = cold.arches[arch]["ccache"]
    assert stats["hits"] == 0 and stats["misses"] > 0
    arch_dir = cold.results / NVR / arch
    assert json.loads((arch_dir / "ccache.json").read_text()) == stats
    record = json.loads((arch_dir / "kxen-result.json").read_text())
    assert record["result"]["ccache"] == stats
    assert list(cold.ccache.glob("kxen-stats-*")) == []


def test_a_new_release_elsewhere_misses_only_what_includes_the_release(
    cold: ColdBuild, fake_linux: Path, tmp_path: Path
) -> None:
    checkout = with_release(fakelinux.make_checkout(tmp_path / "checkout"), 2)
    results = tmp_path / "results"
    run = run_kxen(
        "local", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", results, "--workdir", tmp_path / "elsewhere", "--json",
        repo=checkout, cache=cold.cache,
    )  # fmt: skip
    warm = arch_reports(run.stdout)["x86_64"]["ccache"]
    kernel = results / f"kernel-xen-{VERSION}-2.smoke" / "x86_64"
    bound = release_bound(kernel, "x86_64")
    assert warm == {"hits": cold.arches["x86_64"]["ccache"]["misses"] - bound, "misses": bound}
    assert json.loads((kernel / "ccache.json").read_text()) == warm
    log = (kernel / "build.log").read_text()
    assert f"CCACHE_BASEDIR={tmp_path / 'elsewhere'}/" in log


def test_the_summary_shows_hits_and_misses(
    cold: ColdBuild, fake_linux: Path, tmp_path: Path
) -> None:
    run = run_kxen(
        "local", "--arch", "i686", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", tmp_path / "results", repo=fakelinux.make_checkout(tmp_path / "checkout"),
        cache=cold.cache,
    )  # fmt: skip
    misses = cold.arches["i686"]["ccache"]["misses"]
    # The same NVR again: only the compile time in init/version.c's UTS_VERSION may differ,
    # and rpm fixes it from the changelog (SOURCE_DATE_EPOCH).
    assert f"(ccache: {misses} hits, 0 misses)" in run.stdout


def test_no_ccache_caches_nothing(fake_linux: Path, fake_checkout: Path, tmp_path: Path) -> None:
    cache, results = tmp_path / "cache", tmp_path / "results"
    run = run_kxen(
        "local", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", results, "--no-ccache", "--json", repo=fake_checkout, cache=cache,
    )  # fmt: skip
    assert arch_reports(run.stdout)["x86_64"]["ccache"] is None
    arch_dir = results / NVR / "x86_64"
    assert not (arch_dir / "ccache.json").exists()
    assert "CCACHE" not in (arch_dir / "build.log").read_text()
    assert not (cache / "ccache").exists()


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("symlink", ("--ccache", "{tmp}/link"), "symbolic link"),
        ("file", ("--ccache", "{tmp}/file"), "not a directory"),
        ("", ("--ccache", "{tmp}/100%"), "braces or control characters"),
        ("", ("--ccache", "{tmp}/cc", "--no-ccache"), "exclude each other"),
    ],
)
def test_a_ccache_dir_kxen_cannot_use_is_refused_before_any_work(
    fake_linux: Path, fake_checkout: Path, tmp_path: Path, make: str, args: tuple[str, ...],
    message: str,
) -> None:  # fmt: skip
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "file").write_text("not a cache\n")
    chosen = [arg.format(tmp=tmp_path) for arg in args]
    run = run_kxen(
        "local", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", tmp_path / "results", *chosen, repo=fake_checkout, cache=tmp_path / "cache",
        check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "results").exists()
    assert list((tmp_path / "target").iterdir()) == []


# --- mock: its ccache plugin ---------------------------------------------------------------


def test_mock_gets_the_plugin_and_two_arches_at_once_keep_their_own_counts(
    cold: ColdBuild, fake_linux: Path, fake_checkout: Path, tmp_path: Path
) -> None:
    cache_dir, results = tmp_path / "mock-ccache", tmp_path / "results"
    argv, env = kxen_command(
        "mockbuild", "--flavour", "smoke", "--upstream", fake_linux, "--jobs", "2",
        "--ccache", cache_dir, "--results", results, "--json",
        repo=fake_checkout, cache=tmp_path / "cache",
    )  # fmt: skip
    # mock hands its build root none of the caller's ccache settings: these must not matter
    env = {**stand_in_env(env, tmp_path / "mock-state"), "CCACHE_DISABLE": "1"}
    run = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for arch, report in arch_reports(run.stdout).items():
        # cold, and counted apart although both compiled into one cache at once
        assert report["ccache"] == {"hits": 0, "misses": cold.arches[arch]["ccache"]["misses"]}
        arch_dir = results / NVR / arch
        command = (arch_dir / "mock-output.log").read_text().splitlines()[0]
        for option in (
            "--enable-plugin=ccache",
            f"--plugin-option=ccache:dir={cache_dir}",
            "--plugin-option=ccache:max_cache_size=5G",
            "--plugin-option=ccache:hashdir=False",
        ):
            assert option in command
        root_log = (arch_dir / "root.log").read_text()
        assert "enabled ccache" in root_log
        assert "Executing command: ['ccache', '-M', '5G']" in root_log
        assert "CCACHE_BASEDIR=" in (arch_dir / "build.log").read_text()
    assert "max_size = 5G" in (cache_dir / "ccache.conf").read_text()
    assert list(cache_dir.glob("kxen-stats-*")) == []


def test_mock_hits_what_a_local_build_of_the_tree_cached(
    cold: ColdBuild, fake_linux: Path, tmp_path: Path
) -> None:
    checkout = with_release(fakelinux.make_checkout(tmp_path / "checkout"), 3)
    argv, env = kxen_command(
        "mockbuild", "--arch", "x86_64", "--flavour", "smoke", "--upstream", fake_linux,
        "--results", tmp_path / "results", "--json", repo=checkout, cache=cold.cache,
    )  # fmt: skip
    run = subprocess.run(
        argv, capture_output=True, text=True, env=stand_in_env(env, tmp_path / "s"), check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stats = arch_reports(run.stdout)["x86_64"]["ccache"]
    bound = release_bound(
        tmp_path / "results" / f"kernel-xen-{VERSION}-3.smoke" / "x86_64", "x86_64"
    )
    assert stats == {"hits": cold.arches["x86_64"]["ccache"]["misses"] - bound, "misses": bound}


def test_a_koji_builder_hits_through_its_mock_users_config(
    cold: ColdBuild, fake_linux: Path, tmp_path: Path
) -> None:
    """kojid's generated config turns the ccache plugin off; the lines kxen gives a builder's
    admin for the mock user's ~/.config/mock.cfg, which mock reads after it, turn it on,
    with kxen's compile settings: the builder, in mock's C.UTF-8, hits a local build's
    objects."""
    import koji

    checkout = with_release(fakelinux.make_checkout(tmp_path / "checkout"), 4)
    made = run_kxen(
        "srpm", "--flavour", "smoke", "--upstream", fake_linux, "-o", tmp_path / "srpm",
        repo=checkout, cache=cold.cache,
    )  # fmt: skip
    srpm = Path(made.stdout.strip())
    configs = tmp_path / "etc-mock"
    configs.mkdir()
    kojid_config = koji.genMockConfig(
        "f41-build-1-1", "x86_64", repoid=1, tag_name="f41-build", topdir=str(tmp_path / "koji"),
        mockdir=str(tmp_path / "mock"),
    )  # fmt: skip
    assert "config_opts['plugin_conf']['ccache_enable'] = False" in kojid_config
    (configs / "f41-build-1-1.cfg").write_text(kojid_config)
    home = tmp_path / "kojibuilder"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "mock.cfg").write_text(Ccache(cold.ccache).koji_builder_config())
    before = ccache_hits(cold.ccache)
    env = {
        **stand_in_env(dict(os.environ), tmp_path / "state"), "LANG": "C.UTF-8",
        "MOCK_STANDIN_CONFIG_DIR": str(configs), "MOCK_STANDIN_HOME": str(home),
    }  # fmt: skip
    out = tmp_path / "result"
    run = subprocess.run(
        ["mock", "-r", "f41-build-1-1", "--rebuild", srpm, "--resultdir", out],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, (out / "build.log").read_text()[-3000:]
    assert "enabled ccache" in (out / "root.log").read_text()
    bound = release_bound(out, "x86_64")
    assert ccache_hits(cold.ccache) - before == cold.arches["x86_64"]["ccache"]["misses"] - bound


# --- the stand-in refuses what mock refuses --------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--enable-plugin=nosuch", "Bad option for '--enable-plugin=nosuch'. Expecting one of:"),
        ("--disable-plugin=nosuch", "Bad option for '--disable-plugin=nosuch'"),
        ("--plugin-option=ccache", "Use --plugin-option 'plugin:key=value'"),
        ("--plugin-option=nosuch:dir=/x", "No such plugin: nosuch"),
    ],
)
def test_stand_in_refuses_plugin_options_mock_refuses(
    tmp_path: Path, option: str, message: str
) -> None:
    run = subprocess.run(
        [FAKES / "mock", "-r", "fedora-41-x86_64", "--rebuild", tmp_path / "x.src.rpm", option],
        capture_output=True,
        text=True,
        env={**os.environ, "MOCK_STANDIN_STATE_DIR": str(tmp_path / "state")},
        check=False,
    )
    assert run.returncode == 5
    assert message in run.stderr
