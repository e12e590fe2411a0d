"""Run ids: two nightlies of the same commit in the same second never share a directory."""

from __future__ import annotations

from pathlib import Path

from kxen.nightly import run as nightly_run
from kxen.nightly.model import Run


def test_a_taken_run_id_gets_a_number(tmp_path: Path) -> None:
    wanted = "20261130T020000Z-1a2b3c4d5e6f"
    assert nightly_run._unused(tmp_path, wanted, []) == wanted
    (tmp_path / wanted).mkdir()
    assert nightly_run._unused(tmp_path, wanted, []) == f"{wanted}.2"
    recorded = [Run(id=f"{wanted}.2", started="")]
    assert nightly_run._unused(tmp_path, wanted, recorded) == f"{wanted}.3"
