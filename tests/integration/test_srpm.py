"""SRPM and spec from the real template, tree and configs: reproducible, lint-clean, inert."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from kxen.manifest import load

from ..support import REPO
from .conftest import rpm_header, run_kxen, smoke_srpm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srpm_pair(
    linux_tarball: Path, kxen_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    first, second = (
        smoke_srpm(tmp_path_factory.mktemp(name), linux_tarball, kxen_cache)
        for name in ("first", "second")
    )
    return first, second


def test_srpm_is_bit_identical_when_built_twice(srpm_pair: tuple[Path, Path]) -> None:
    first, second = srpm_pair
    assert first.name == second.name == "kernel-xen-6.1.192-1.smoke.src.rpm"
    assert first.read_bytes() == second.read_bytes()


def test_srpm_carries_tarball_configs_and_spec(srpm_pair: tuple[Path, Path]) -> None:
    header = rpm_header(srpm_pair[0])
    assert header["name"] == "kernel-xen"
    assert header["version"] == "6.1.192"
    assert header["release"] == "1.smoke"
    assert header["buildhost"] == "kernel-xen.build"
    assert sorted(header["filenames"]) == sorted(
        [
            "kernel-xen.spec",
            "linux-6.1.192.tar.xz",  # kxen's own name for Debian's linux-source-6.1.tar.xz
            "kernel-6.1.192-i686-smoke-xen.config",
            "kernel-6.1.192-x86_64-smoke-xen.config",
        ]
    )
    # SOURCE_DATE_EPOCH: midnight UTC of the newest changelog date (rpm keeps noon for the entry)
    newest = load(REPO / "kernel-xen.yaml").changelog[0].date
    midnight = dt.datetime.combine(newest, dt.time(), tzinfo=dt.UTC).timestamp()
    assert header["buildtime"] == midnight
    assert header["changelogtime"][0] == midnight + 12 * 3600


def test_rpmlint_reports_no_errors_on_spec_and_srpm(
    srpm_pair: tuple[Path, Path], linux_tarball: Path, kxen_cache: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "kernel-xen.spec"
    run_kxen(
        "spec", "--flavour", "smoke", "--upstream", linux_tarball, "-o", spec, cache=kxen_cache
    )
    run = run_kxen("lint", spec, srpm_pair[0], "--json", cache=kxen_cache)
    summary = json.loads(run.stdout)
    assert summary["errors"] == 0, summary["lines"]
    assert not any(": E: " in line for line in summary["lines"])


def test_lint_fails_with_exit_9_on_rpmlint_errors(kxen_cache: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.spec"
    broken.write_text(
        "Name: broken\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\n"
        "%description\nd\n%prep\ncd $RPM_SOURCE_DIR\n%files\n"
    )
    run = run_kxen("lint", broken, cache=kxen_cache, check=False)
    assert run.returncode == 9
    assert "use-of-RPM_SOURCE_DIR" in run.stderr


def test_rendered_spec_parses_with_rpmspec(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "kernel-xen.spec"
    run_kxen("spec", "--upstream", linux_tarball, "-o", spec, repo=checkout, cache=kxen_cache)
    parsed = subprocess.run(
        ["rpmspec", "-q", "--srpm", "--qf", "%{name}-%{version}-%{release}\\n", str(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert parsed.stdout.strip() == "kernel-xen-6.1.192-1"


def test_percent_in_free_text_is_rendered_inert(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "CANARY"
    manifest = checkout / "kernel-xen.yaml"
    text = manifest.read_text()
    text = text.replace(
        "summary: The Linux kernel for Xen paravirt_ops domU guests",
        f"summary: \"%(touch {canary}) %{{lua: os.execute('touch {canary}')}} for Xen\"",
    )
    text = text.replace(
        "      - Build the Xen", f'      - "%(touch {canary})"\n      - Build the Xen'
    )
    manifest.write_text(text)
    spec = tmp_path / "kernel-xen.spec"
    run_kxen("spec", "--upstream", linux_tarball, "-o", spec, repo=checkout, cache=kxen_cache)
    rendered = spec.read_text()
    assert f"%%(touch {canary})" in rendered
    parsed = subprocess.run(["rpmspec", "-P", str(spec)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert f"%(touch {canary})" in parsed.stdout  # shown literally, never run
    assert not canary.exists()


@pytest.mark.parametrize(
    ("original", "hostile", "field"),
    [
        ("release: 1", 'release: "%(touch {canary})"', "release"),
        ("# buildid: .local", 'buildid: ".%(touch {canary})"', "buildid"),
        ('version: "6.1"', 'version: "6.1%(touch {canary})"', "upstream.version"),
        ("name: kernel-xen", 'name: "kernel-xen%(touch {canary})"', "name"),
    ],
)
def test_hostile_token_field_is_refused_and_previous_spec_kept(
    checkout: Path,
    kxen_cache: Path,
    linux_tarball: Path,
    tmp_path: Path,
    original: str,
    hostile: str,
    field: str,
) -> None:
    canary = tmp_path / "CANARY"
    spec = tmp_path / "kernel-xen.spec"
    run_kxen("spec", "--upstream", linux_tarball, "-o", spec, repo=checkout, cache=kxen_cache)
    before = spec.read_bytes()
    manifest = checkout / "kernel-xen.yaml"
    assert original in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(original, hostile.format(canary=canary)))
    result = run_kxen(
        "spec",
        "--upstream",
        linux_tarball,
        "-o",
        spec,
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert result.returncode == 2
    assert f"{field}: " in result.stderr
    assert "kernel-xen.yaml:" in result.stderr
    assert spec.read_bytes() == before
    assert not canary.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
