"""The nightly history: what it keeps, its schema migrations, two writers at once, a
writer killed mid-transaction, and files that are not a history."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from kxen.errors import ExitCode
from kxen.nightly import history
from kxen.nightly.model import Ccache, Cell, Rpm, Run, Status, Step


def a_run(number: int, status: Status = Status.PASS, key: str | None = None) -> Run:
    cell = Cell(
        "x86_64",
        "smoke",
        steps=[
            Step("build", Status.PASS, 300.0 + number, log="build/x.log"),
            Step("boot-pvh", status, 12.5, summary="boot", excerpt=["Kernel panic"]),
        ],
        nvr=f"kernel-xen-6.1.192-{number}.smoke",
        rpms=[Rpm("kernel-xen.rpm", 1000 + number), Rpm("kernel-xen-devel.rpm", 50)],
        warnings=3,
        ccache=Ccache(hits=90, misses=10),
        config_changes=["CONFIG_XEN_NEW: (new) -> y"],
    )
    return Run(
        id=f"2026113{number}T020000Z-{number:012d}",
        started=f"2026-11-3{number}T02:00:00+00:00",
        finished=f"2026-11-3{number}T02:30:00+00:00",
        key=key or f"key-{number}",
        upstream={"git": {"commit": f"{number}" * 40, "describe": f"v6.1-{number}"}},
        cells=[cell],
    )


def test_a_run_reads_back_as_it_was_recorded(tmp_path: Path) -> None:
    run = a_run(1, Status.FAIL)
    with history.opened(tmp_path) as past:
        past.record(run)
        (back,) = past.runs()
        cell_row = past._db.execute(
            "SELECT status, rpm_bytes, warnings, ccache_hits, ccache_misses, failure FROM cells"
        ).fetchone()
    assert back.as_dict() == run.as_dict()
    assert cell_row == ("FAIL", 1051, 3, 90, 10, "Kernel panic")


def test_runs_come_newest_first_and_last_limits(tmp_path: Path) -> None:
    with history.opened(tmp_path) as past:
        for number in (2, 1, 3):
            past.record(a_run(number))
        assert [r.id[:9] for r in past.runs()] == ["20261133T", "20261132T", "20261131T"]
        assert len(past.runs(2)) == 2


def test_a_key_stands_unless_its_run_ended_in_error(tmp_path: Path) -> None:
    with history.opened(tmp_path) as past:
        past.record(a_run(1, Status.FAIL, key="same"))
        assert past.run_with_key("same") == a_run(1).id
        past.forget([a_run(1).id])
        past.record(a_run(2, Status.ERROR, key="same"))
        assert past.run_with_key("same") is None
        assert past._db.execute("SELECT count(*) FROM steps").fetchone() == (2,)


def test_forget_takes_the_cells_and_steps_along(tmp_path: Path) -> None:
    with history.opened(tmp_path) as past:
        past.record(a_run(1))
        past.forget([a_run(1).id])
        counts = [past._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
                  ("runs", "cells", "steps")]  # fmt: skip
    assert counts == [0, 0, 0]


def test_an_older_schema_is_migrated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with history.opened(tmp_path) as past:
        past.record(a_run(1))
    later = {**history.MIGRATIONS, 2: ("ALTER TABLE runs ADD COLUMN reviewed TEXT",)}
    monkeypatch.setattr(history, "MIGRATIONS", later)
    monkeypatch.setattr(history, "SCHEMA_VERSION", 2)
    with history.opened(tmp_path) as past:
        assert past._db.execute("PRAGMA user_version").fetchone() == (2,)
        assert past._db.execute("SELECT id, reviewed FROM runs").fetchall() == [(a_run(1).id, None)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with history.opened(tmp_path):
        pass
    with sqlite3.connect(tmp_path / history.HISTORY_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(history.HistoryError, match="schema 99 is newer"), history.opened(tmp_path):
        pass


def test_a_file_that_is_not_a_history_is_refused(tmp_path: Path) -> None:
    (tmp_path / history.HISTORY_NAME).write_bytes(b"not sqlite at all, " * 100)
    with pytest.raises(history.HistoryError) as caught, history.opened(tmp_path):
        pass
    assert "not a usable kxen history" in caught.value.message
    assert caught.value.exit_code == ExitCode.PUBLISH


def _record_many(directory: str, first: int, count: int) -> None:
    with history.opened(Path(directory)) as past:
        for number in range(first, first + count):
            run = a_run(1)
            run.id = f"run-{number:04d}"
            past.record(run)


def test_two_writers_at_once_both_land_and_the_file_stays_sound(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_record_many, args=(str(tmp_path), first, 40)) for first in (0, 1000)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    with history.opened(tmp_path) as past:
        assert len(past.runs()) == 80
        assert past.integrity() == "ok"


def _write_forever(directory: str) -> None:
    """Hold write transactions open (each one mid-way when the parent kills us)."""
    with history.opened(Path(directory)) as past, past._writing() as db:
        for number in range(10**9):
            db.execute(
                "INSERT INTO runs VALUES (?, '', '', NULL, NULL, 'k', 'PASS', 'local', NULL, '{}')",
                (f"half-{number}",),
            )


def test_a_writer_killed_mid_transaction_leaves_the_last_committed_state(
    tmp_path: Path,
) -> None:
    with history.opened(tmp_path) as past:
        past.record(a_run(1))
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_forever, args=(str(tmp_path),)
    )
    writer.start()
    deadline = time.monotonic() + 30
    wal = tmp_path / f"{history.HISTORY_NAME}-wal"
    while (not wal.exists() or wal.stat().st_size < 100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    with history.opened(tmp_path) as past:
        assert [run.id for run in past.runs()] == [a_run(1).id]
        assert past.integrity() == "ok"
        past.record(a_run(2))  # and it takes writes again
        assert len(past.runs()) == 2
