"""The packager's config commands on the fake tree (tests/fakes/linux): seconds each.

Every test drives the real `kxen` command against a scratch checkout whose configs/ is
written for the fake Kconfig, and asserts what it printed, its exit code and the files
it left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import run_kxen

BAD_LINES = "CONFIG_NR_CPUS=abc\nCONFIG_XEN_BALLON=y\nexport CONFIG_Q=y\n"


def kxen(checkout: Path, tarball: Path, *args: str) -> Any:
    """`kxen config ARGS --upstream <fake tarball>` in `checkout`, never raising."""
    cache = checkout.parent / "cache"
    return run_kxen("config", *args, "--upstream", tarball, repo=checkout, cache=cache, check=False)


def _snapshot(checkout: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (checkout / "configs").rglob("*") if p.is_file()}


def test_check_reports_every_bad_line_once_with_its_reason(
    fake_checkout: Path, fake_linux: Path
) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    run = kxen(fake_checkout, fake_linux, "check")
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert "3 fragment line(s) cannot be used" in err
    # a line of a layer both arches share is one line naming both targets
    assert "malformed    configs/default/zz.config:3: malformed line 'export CONFIG_Q=y'" in err
    assert err.count("configs/default/zz.config:3") == 1
    assert "[i686/default, x86_64/default]" in err
    assert "did you mean CONFIG_XEN_BALLOON?" in err
    assert "`abc` is not an int; NR_CPUS takes 2\u2013512 on x86_64" in err
    assert "`abc` is not an int; NR_CPUS takes 2\u2013512 on i686" in err


def test_check_json_keeps_one_finding_per_target(fake_checkout: Path, fake_linux: Path) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    run = kxen(fake_checkout, fake_linux, "check", "--json")
    assert run.returncode == 2
    report = json.loads(run.stdout)
    kinds = sorted((f["kind"], f["arch"]) for f in report["findings"] if f["flavour"] == "default")
    assert ("invalid", "i686") in kinds and ("malformed", "x86_64") in kinds
    assert report["counts"]["malformed"] == 2 and report["counts"]["unknown"] == 2


def test_generate_names_every_unusable_line_and_writes_nothing(
    fake_checkout: Path, fake_linux: Path, tmp_path: Path
) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    out = tmp_path / "out"
    run = kxen(fake_checkout, fake_linux, "generate", "-o", str(out))
    assert run.returncode == 2
    for line in (":1: asked abc", ":2: asked y", ":3: malformed line"):
        assert f"configs/default/zz.config{line}" in run.stderr
    assert not out.exists() or not list(out.glob("*.config"))


def test_shipped_fake_configs_check_clean(fake_checkout: Path, fake_linux: Path) -> None:
    run = kxen(fake_checkout, fake_linux, "check", "--strict")
    assert run.returncode == 0, run.stderr
    assert "x86_64/smoke: 0 finding(s)" in run.stdout
