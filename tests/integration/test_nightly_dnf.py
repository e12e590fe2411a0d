"""The nightly repository, proven with dnf: Debian's dnf 4 installs from it into scratch
roots (`--installroot`, the root's own rpm database, read back with `rpm --root`).

The nightlies are real kernel-xen RPMs: the fake Linux tree (tests/fakes/linux) built
through the real spec by `kxen local`, one release per night, laid out as `kxen nightly`
leaves them (`<run>/build/<nvr>/<arch>/`) and published with `repo.publish`. The roots
hold the stand-ins of tests/rpmroots.py: a base package (busybox as /bin/sh, a
kernel-install that writes boot entries), `xen-hypervisor`, and Fedora 8's dom0-capable
kernel-xen-2.6.21. dnf is kept inside the test's directories: a dnf.conf of its own, no
repository but the nightly one, no plugins, cache, history and logs in tmp.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kxen import manifest
from kxen.nightly import repo
from kxen.nightly.model import Cell, Rpm, Run, Status, Step

from .. import fakelinux
from ..rpmroots import OLD_KERNEL_XEN_UNAME, Root, stand_ins
from .conftest import run_kxen

ARCH = "x86_64"
NIGHTS = {1: (ARCH,), 2: (ARCH,), 3: ("i686", ARCH)}
"""The arches each night builds: the last one publishes both, as `kxen nightly` does."""
HOST_DNF_STATE = ("/etc/dnf", "/var/cache/dnf", "/var/lib/dnf", "/var/log")


def kernel_xen(night: int) -> str:
    return f"kernel-xen-{fakelinux.VERSION}-{night}.smoke"


def uname(night: int) -> str:
    return f"{fakelinux.VERSION}-{night}.smoke.{ARCH}+xen"


DOM0_REFUSAL = (
    f"package {kernel_xen(1)}.{ARCH} conflicts with xen-hypervisor "
    "provided by xen-hypervisor-4.17.5-1.noarch"
)


# --- the nightlies and the stand-ins, built once ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Nightlies:
    runs_dir: Path
    """Where the runs' directories are, as under results/nightly/."""
    runs: dict[int, Run]

    def passed(self, night: int) -> list[Path]:
        """The RPMs `kxen nightly` publishes for the run: those of its passed cells."""
        run = self.runs[night]
        return [
            self.runs_dir / run.id / "build" / str(cell.nvr) / cell.arch / rpm.name
            for cell in run.cells
            if cell.status == Status.PASS
            for rpm in cell.rpms
        ]


@pytest.fixture(scope="module")
def nightlies(fake_linux: Path, tmp_path_factory: pytest.TempPathFactory) -> Nightlies:
    work = tmp_path_factory.mktemp("nightlies")
    checkout = fakelinux.make_checkout(work / "checkout")
    runs_dir = work / "nightly"
    runs = {}
    for night, arches in NIGHTS.items():
        _set_release(checkout, night)
        run = Run(id=f"2026112{night}T020000Z-{night:012x}", started="")
        build = runs_dir / run.id / "build"
        run_kxen(
            "local", *(f"--arch={arch}" for arch in arches), "--flavour", "smoke",
            "--upstream", fake_linux, "--results", build, repo=checkout, cache=work / "cache",
        )  # fmt: skip
        run.cells = [_passed_cell(build / kernel_xen(night), arch) for arch in arches]
        runs[night] = run
    return Nightlies(runs_dir, runs)


def _passed_cell(nvr_dir: Path, arch: str) -> Cell:
    """The cell of `arch` as the matrix records a build that passed."""
    built = sorted(p for p in (nvr_dir / arch).glob("*.rpm") if not p.name.endswith(".src.rpm"))
    cell = Cell(arch, "smoke", [Step("build", Status.PASS)], nvr=nvr_dir.name)
    cell.rpms = [Rpm(p.name, p.stat().st_size) for p in built]
    return cell


def _set_release(checkout: Path, release: int) -> None:
    path = checkout / manifest.MANIFEST_NAME
    loaded = manifest.load(path)
    text = path.read_text()
    old = f"\nrelease: {loaded.release}\n"
    assert old in text
    path.write_text(text.replace(old, f"\nrelease: {release}\n", 1))


@dataclasses.dataclass(frozen=True)
class Hosts:
    base: Path
    xen_hypervisor: Path
    old_kernel_xen: Path
    """Fedora 8's kernel-xen-2.6.21: dom0 and domU."""


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Hosts:
    made = stand_ins(tmp_path_factory.mktemp("stand-ins"))
    return Hosts(made.build_base(), made.build_xen_hypervisor(), made.build_old_kernel_xen())


@pytest.fixture(scope="module", autouse=True)
def host_dnf_untouched() -> Iterator[None]:
    """dnf runs here only inside the tests' directories: the host's dnf state stays."""

    def state() -> dict[str, list[tuple[str, int]]]:
        found = {}
        for name in HOST_DNF_STATE:
            entries = sorted(Path(name).iterdir()) if Path(name).is_dir() else []
            found[name] = [
                (p.name, p.stat().st_mtime_ns)
                for p in entries
                if name != "/var/log" or p.name.startswith(("dnf", "hawkey"))
            ]
        return found

    before = state()
    yield
    assert state() == before


# --- dnf in scratch roots -------------------------------------------------------------------


class Dnf:
    """Debian's dnf on the nightly repository, with nothing of the host's: a dnf.conf of
    its own (Fedora's `best=False`, no plugins, no repository directory), and its cache,
    history and logs under `state`."""

    def __init__(self, state: Path, repo_dir: Path) -> None:
        state.mkdir(parents=True)
        self.repo_dir = repo_dir
        self.config = state / "dnf.conf"
        self.config.write_text(
            "[main]\nbest=False\nplugins=0\ngpgcheck=0\nreposdir=/dev/null\n"
            f"cachedir={state / 'cache'}\npersistdir={state / 'persist'}\n"
            f"logdir={state / 'log'}\n"
        )

    def argv(self, root: Root, limit: int) -> list[str]:
        return [
            "dnf", "-y", "--config", str(self.config), "--installroot", str(root.path),
            "--setopt=reposdir=/dev/null", "--repofrompath", f"nightly,{self.repo_dir.as_uri()}",
            "--repo", "nightly", "--releasever", "9", "--nogpgcheck", "--refresh",
            f"--setopt=installonly_limit={limit}",
        ]  # fmt: skip

    def __call__(
        self, root: Root, *args: str, limit: int = 3, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv(root, limit), *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check:
            assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "results" / "nightly" / repo.REPO_DIR


@pytest.fixture
def dnf(tmp_path: Path, repo_dir: Path) -> Dnf:
    return Dnf(tmp_path / "dnf", repo_dir)


def make_root(path: Path, *packages: Path) -> Root:
    root = Root(path)
    root.rpm("-i", *packages)
    return root


def everything(root: Root) -> list[str]:
    return sorted(root.rpm("-qa").stdout.split())


# --- a guest follows the nightlies ----------------------------------------------------------


def test_each_nightly_installs_beside_the_last_up_to_the_limit(
    tmp_path: Path, nightlies: Nightlies, hosts: Hosts, repo_dir: Path, dnf: Dnf
) -> None:
    domu = make_root(tmp_path / "domu", hosts.base)
    repo.publish(repo_dir, nightlies.passed(1))
    dnf(domu, "install", "kernel-xen", limit=2)
    assert domu.installed("kernel-xen") == [kernel_xen(1)]
    assert sorted(domu.entries()) == [uname(1)]
    # the next night's is installed alongside (installonlypkg(kernel)), not over it
    repo.publish(repo_dir, nightlies.passed(2))
    dnf(domu, "upgrade", limit=2)
    assert domu.installed("kernel-xen") == [kernel_xen(1), kernel_xen(2)]
    assert sorted(domu.entries()) == [uname(1), uname(2)]
    # beyond installonly_limit dnf removes the oldest, and its boot entry goes with it
    repo.publish(repo_dir, nightlies.passed(3))
    dnf(domu, "upgrade", limit=2)
    assert domu.installed("kernel-xen") == [kernel_xen(2), kernel_xen(3)]
    assert sorted(domu.entries()) == [uname(2), uname(3)]
    assert not (domu.path / f"boot/vmlinuz-{uname(1)}").exists()
    domu.rpm("-V", "kernel-xen")
    # one repository for both arches: an x86_64 guest never takes the i686 kernel
    assert domu.rpm("-q", "--qf", "%{ARCH}\\n", "kernel-xen").stdout.split() == [ARCH, ARCH]


def test_a_dom0_host_refuses_kernel_xen(
    tmp_path: Path, nightlies: Nightlies, hosts: Hosts, repo_dir: Path, dnf: Dnf
) -> None:
    dom0 = make_root(tmp_path / "dom0", hosts.base, hosts.xen_hypervisor)
    had = everything(dom0)
    repo.publish(repo_dir, nightlies.passed(1))
    refused = dnf(dom0, "install", "kernel-xen", check=False)
    assert refused.returncode == 1
    assert DOM0_REFUSAL in refused.stderr, refused.stderr
    assert everything(dom0) == had
    assert not (dom0.path / "boot/loader/entries").exists()


# --- Fedora 8 to 9: why kernel-xen became a package of its own ------------------------------


def test_a_fedora_8_dom0_upgrades_without_losing_its_dom0_kernel(
    tmp_path: Path, nightlies: Nightlies, hosts: Hosts, repo_dir: Path, dnf: Dnf
) -> None:
    dom0 = make_root(tmp_path / "dom0", hosts.base, hosts.xen_hypervisor, hosts.old_kernel_xen)
    had = everything(dom0)
    repo.publish(repo_dir, nightlies.passed(1))
    upgrade = dnf(dom0, "upgrade")
    assert "Skipping packages with conflicts" in upgrade.stdout, upgrade.stdout
    assert everything(dom0) == had
    assert list(dom0.entries()) == [OLD_KERNEL_XEN_UNAME]
    # asked for the best candidate only, dnf says why and still changes nothing
    best = dnf(dom0, "upgrade", "--best", check=False)
    assert best.returncode == 1
    assert DOM0_REFUSAL in best.stderr, best.stderr
    assert everything(dom0) == had


def test_a_fedora_8_domu_gets_the_new_kernel_beside_the_old(
    tmp_path: Path, nightlies: Nightlies, hosts: Hosts, repo_dir: Path, dnf: Dnf
) -> None:
    domu = make_root(tmp_path / "domu", hosts.base, hosts.old_kernel_xen)
    repo.publish(repo_dir, nightlies.passed(1))
    dnf(domu, "upgrade")
    assert domu.installed("kernel-xen") == ["kernel-xen-2.6.21-2950.fc8", kernel_xen(1)]
    assert sorted(domu.entries()) == [OLD_KERNEL_XEN_UNAME, uname(1)]


# --- prune: what dnf no longer sees -------------------------------------------------------


def test_a_pruned_nightly_leaves_the_repository(
    tmp_path: Path, nightlies: Nightlies, hosts: Hosts, dnf: Dnf, repo_dir: Path
) -> None:
    nightly_dir = repo_dir.parent
    for night in NIGHTS:
        repo.publish(repo_dir, nightlies.passed(night))
    domu = make_root(tmp_path / "domu", hosts.base)
    query = ("repoquery", "--arch", ARCH, "--qf", "%{name}-%{version}-%{release}", "kernel-xen")
    assert dnf(domu, *query).stdout.split() == [kernel_xen(n) for n in NIGHTS]
    newest_first = [nightlies.runs[n] for n in sorted(NIGHTS, reverse=True)]
    nightly_dir.joinpath(newest_first[-1].id).mkdir()
    assert repo.prune(nightly_dir, newest_first, keep=2) == [newest_first[-1].id]
    assert not nightly_dir.joinpath(newest_first[-1].id).exists()
    assert dnf(domu, *query).stdout.split() == [kernel_xen(2), kernel_xen(3)]
    dnf(domu, "install", "kernel-xen")
    assert domu.installed("kernel-xen") == [kernel_xen(3)]
