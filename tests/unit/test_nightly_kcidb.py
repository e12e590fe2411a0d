"""report.json: a nightly in KCIDB's I/O schema, checked with kcidb-io's own validator."""

from __future__ import annotations

from typing import Any

import jsonschema
import kcidb_io  # type: ignore[import-untyped]
import pytest
from kxen.errors import KxenError
from kxen.nightly import kcidb
from kxen.nightly.model import Cell, Run, Status, Step

from .test_nightly_report import (
    CONTROL,
    HOSTILE,
    make_cell,
    make_run,
    regression_run,
)


def tarball_run() -> Run:
    run = make_run(22)
    run.id = "20261122T020000Z-9f86d081884c"
    run.upstream = {"origin": "local", "version": "6.12.9", "tarball_sha512": "9f86d081" * 16}
    return run


def skipped_run() -> Run:
    """config-check failed everywhere: nothing was built, every later step skipped."""
    return make_run(23, [make_cell(a, "default", 23, "config-check") for a in ("x86_64", "i686")])


def hostile_run() -> Run:
    cell = make_cell(f"X86 {HOSTILE}", CONTROL, 24, "verify", Status.FAIL, [CONTROL])
    cell.steps += [
        Step("boot-p\x00v!", Status.FAIL),
        Step("boot-p v.x", Status.ERROR, float("nan"), excerpt=["\x00" * 20000]),
    ]
    run = make_run(24, [cell], started="yesterday", finished="", key=HOSTILE)
    run.upstream = {"git": {"commit": "NOT-A-SHA\x00", "describe": CONTROL, "url": "file:///x"}}
    return run


RUNS = {
    "pass": lambda: make_run(19),
    "fail-and-error": regression_run,
    "skip": skipped_run,
    "tarball": tarball_run,
    "no-cells": lambda: Run(id="20261130T020000Z-deadbeefdead", started="2026-11-30T02:00:00Z"),
    "hostile": hostile_run,
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_run_exports_valid_kcidb_data(name: str) -> None:
    data = kcidb.export(RUNS[name]())
    kcidb_io.schema.LATEST.validate(data)  # the package's own check, not ours
    assert kcidb_io.schema.LATEST.is_compatible_exactly(data)
    assert data["version"] == {
        "major": kcidb_io.schema.LATEST.major,
        "minor": kcidb_io.schema.LATEST.minor,
    }


def test_checkout_builds_and_tests_are_linked_by_id() -> None:
    run = regression_run()
    data = kcidb.export(run)
    (checkout,) = data["checkouts"]
    assert checkout["id"] == f"kxen:{run.id}"
    assert checkout["origin"] == "kxen"
    assert checkout["git_commit_hash"] == "20" + "1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5"[2:]
    assert checkout["git_commit_name"] == "v6.13-rc20"
    assert checkout["start_time"] == "2026-11-20T02:00:00+00:00"
    assert checkout["valid"] is True
    assert "git_repository_url" not in checkout  # a local path is no https:// URL

    builds = {b["id"]: b for b in data["builds"]}
    assert list(builds) == [
        f"kxen:{run.id}:x86_64:default",
        f"kxen:{run.id}:x86_64:smoke",
        f"kxen:{run.id}:i686:default",
        f"kxen:{run.id}:i686:smoke",
    ]
    assert {b["checkout_id"] for b in builds.values()} == {checkout["id"]}
    assert {b["build_id"] for b in data["tests"]} == set(builds)
    x86 = builds[f"kxen:{run.id}:x86_64:default"]
    assert (x86["architecture"], x86["config_name"]) == ("x86_64", "default")
    assert x86["misc"]["nvr"] == "kernel-xen-6.13.0-0.20.nightly"
    assert x86["misc"]["ccache"] == {"hits": 250, "misses": 350, "hit_rate": 0.4167}
    assert x86["misc"]["warnings"] == 20

    tests = {t["id"]: t for t in data["tests"]}
    per_build = [t["path"] for t in data["tests"] if t["build_id"] == x86["id"]]
    assert per_build == [
        "kxen.config-check",
        "kxen.patches-check",
        "kxen.verify",
        "kxen.boot.pv",
        "kxen.boot.pvh",
    ]
    assert len(set(tests)) == len(data["tests"])


def test_statuses_map_to_kcidb_statuses() -> None:
    data = kcidb.export(regression_run())
    status = {t["id"].split(":", 2)[2]: t["status"] for t in data["tests"]}
    assert status["x86_64:default:boot-pvh"] == "FAIL"
    assert status["x86_64:default:boot-pv"] == "PASS"
    assert status["i686:smoke:verify"] == "SKIP"
    assert status["i686:smoke:boot-native"] == "SKIP"
    builds = {b["id"].split(":", 2)[2]: b for b in data["builds"]}
    assert builds["x86_64:default"]["status"] == "PASS"  # it built; its boot failed
    assert builds["i686:smoke"]["status"] == "ERROR"
    assert builds["i686:smoke"]["log_excerpt"] == "mock: No space left on device\n"
    assert builds["i686:smoke"]["misc"]["cell_status"] == "ERROR"

    pvh = next(t for t in data["tests"] if t["id"].endswith("x86_64:default:boot-pvh"))
    assert pvh["log_excerpt"].startswith("[    0.52] Kernel panic - not syncing")
    assert pvh["duration"] == 135.0
    assert pvh["misc"]["log"] == "logs/x86_64-default/boot-pvh.log"
    assert "log_url" not in pvh  # the schema wants an absolute URL; the path is in misc

    skipped = kcidb.export(skipped_run())
    assert [b["status"] for b in skipped["builds"]] == ["SKIP", "SKIP"]
    assert {t["status"] for t in skipped["tests"] if t["path"] == "kxen.config-check"} == {"FAIL"}


def test_a_cell_without_build_steps_is_a_missing_build() -> None:
    run = make_run(25, [Cell("x86_64", "default", [Step("config-check", Status.PASS)])])
    (build,) = kcidb.export(run)["builds"]
    assert build["status"] == "MISS"


def test_patches_that_do_not_apply_make_the_checkout_invalid() -> None:
    run = make_run(26, [make_cell("x86_64", "default", 26, "patches-check")])
    assert kcidb.export(run)["checkouts"][0]["valid"] is False


def test_a_tarball_run_has_a_checkout_without_a_commit() -> None:
    (checkout,) = kcidb.export(tarball_run())["checkouts"]
    assert "git_commit_hash" not in checkout
    assert checkout["id"] == "kxen:20261122T020000Z-9f86d081884c"
    assert checkout["comment"] == "Linux 6.12.9 (kxen nightly)"
    assert checkout["misc"]["upstream"]["tarball_sha512"] == "9f86d081" * 16


def test_hostile_values_are_left_out_or_made_to_fit() -> None:
    data = kcidb.export(hostile_run())
    (checkout,) = data["checkouts"]
    assert "git_commit_hash" not in checkout and "start_time" not in checkout
    assert "git_repository_url" not in checkout
    (build,) = data["builds"]
    assert "architecture" not in build
    assert build["misc"]["arch"] == f"X86 {HOSTILE}"
    paths = [t["path"] for t in data["tests"]]
    assert "kxen.boot.p_v_" in paths and "kxen.boot.p_v_x" in paths
    odd = data["tests"][-1]
    assert "duration" not in odd  # NaN is no number KCIDB takes
    assert len(odd["log_excerpt"]) == kcidb.MAX_EXCERPT
    assert "\x00" not in str(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "KCIDB data must be a JSON object, not list"),
        ({"version": {"major": 5, "minor": 3}, "builds": [{"id": "x"}]}, "at builds/0"),
        ({"version": {"major": 5, "minor": 3}, "tests": [{}]}, "at tests/0"),
        ({}, "at the top level: 'version' is a required property"),
    ],
)
def test_validate_names_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(kcidb.ExportError) as caught:
        kcidb.validate(data)
    assert message in caught.value.message
    assert isinstance(caught.value, KxenError)
    with pytest.raises((jsonschema.exceptions.ValidationError, TypeError, AttributeError)):
        kcidb_io.schema.LATEST.validate(data)  # kcidb-io agrees that it is not valid
