"""The nightly history: one SQLite file beside the runs, `results/nightly/history.sqlite`.

Per run: its id, times, commit, key, status and the whole run record (run.json); per
cell: status, NVR, RPM sizes, compiler warnings, ccache hits and misses, the config
symbols that changed, the failure excerpt; per step: status, duration and log. The
schema's version is SQLite's `user_version`; `MIGRATIONS` brings an older file up to
date in one transaction. Writers take SQLite's write lock at once (BEGIN IMMEDIATE) and
wait for it up to `BUSY_SECONDS`; the file is in WAL mode, so a reader never blocks a
writer and a writer killed mid-transaction leaves the last committed state.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from kxen.errors import ExitCode, KxenError, LockedError
from kxen.nightly.model import Run, run_from_dict

HISTORY_NAME = "history.sqlite"
BUSY_SECONDS = 30.0
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT NOT NULL,
            commit_id TEXT,
            describe TEXT,
            key TEXT NOT NULL,
            status TEXT NOT NULL,
            backend TEXT NOT NULL,
            previous TEXT,
            record TEXT NOT NULL
        )""",
        "CREATE INDEX runs_by_key ON runs (key)",
        "CREATE INDEX runs_by_start ON runs (started)",
        """CREATE TABLE cells (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            arch TEXT NOT NULL,
            flavour TEXT NOT NULL,
            status TEXT NOT NULL,
            nvr TEXT,
            rpm_bytes INTEGER NOT NULL,
            warnings INTEGER NOT NULL,
            ccache_hits INTEGER,
            ccache_misses INTEGER,
            config_changes TEXT NOT NULL,
            failure TEXT NOT NULL,
            PRIMARY KEY (run_id, arch, flavour)
        )""",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            arch TEXT NOT NULL,
            flavour TEXT NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            seconds REAL NOT NULL,
            log TEXT,
            PRIMARY KEY (run_id, arch, flavour, name)
        )""",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


class HistoryError(KxenError):
    """The history file cannot be read or written (not a kxen history, or damaged): the
    results store is unusable, as when results cannot be written (exit 8)."""

    exit_code = ExitCode.PUBLISH


class History:
    """A connection to the history file (made, and migrated, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
            _patiently(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path}: not a usable kxen history ({exc})") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding SQLite's write lock from its start."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LockedError(f"{self.path}: another kxen is writing the history ({exc})") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path}: schema {version} is newer than this kxen's ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        with self._writing() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()  # another migrated it
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- writing ----------------------------------------------------------------

    def record(self, run: Run) -> None:
        """Add (or replace) a completed run, with its cells and steps, in one transaction."""
        upstream = run.upstream.get("git") or {}
        with self._writing() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run.id,))
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.started,
                    run.finished,
                    upstream.get("commit"),
                    upstream.get("describe"),
                    run.key,
                    str(run.status),
                    run.backend,
                    run.previous,
                    json.dumps(run.as_dict(), sort_keys=True),
                ),
            )
            for cell in run.cells:
                failure = cell.failure
                db.execute(
                    "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.id,
                        cell.arch,
                        cell.flavour,
                        str(cell.status),
                        cell.nvr,
                        sum(rpm.size for rpm in cell.rpms),
                        cell.warnings,
                        cell.ccache.hits if cell.ccache else None,
                        cell.ccache.misses if cell.ccache else None,
                        json.dumps(cell.config_changes),
                        "\n".join(failure.excerpt) if failure else "",
                    ),
                )
                db.executemany(
                    "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (run.id, cell.arch, cell.flavour, s.name, str(s.status), s.seconds, s.log)
                        for s in cell.steps
                    ],
                )

    def forget(self, run_ids: list[str]) -> None:
        """Remove pruned runs (their cells and steps go with them)."""
        with self._writing() as db:
            db.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in run_ids])

    # --- reading ----------------------------------------------------------------

    def run_with_key(self, key: str) -> str | None:
        """The newest completed run with this key whose verdict stands: a run that ended
        in ERROR (the infrastructure failed, not the kernel) is tried again."""
        row = self._db.execute(
            "SELECT id FROM runs WHERE key = ? AND status != 'ERROR' ORDER BY started DESC LIMIT 1",
            (key,),
        ).fetchone()
        return str(row[0]) if row else None

    def runs(self, last: int | None = None) -> list[Run]:
        """Completed runs, newest first."""
        query = "SELECT record FROM runs ORDER BY started DESC, id DESC"
        rows = self._db.execute(query + (" LIMIT ?" if last else ""), (last,) if last else ())
        return [run_from_dict(json.loads(record)) for (record,) in rows]

    def integrity(self) -> str:
        (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return str(result)


def _patiently(statement: Callable[[], object]) -> None:
    """Run `statement`, waiting up to BUSY_SECONDS while another connection holds the
    lock: SQLite answers a change of journal mode with "locked" at once, without calling
    the busy handler that waits for other statements."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def opened(nightly_dir: Path) -> Iterator[History]:
    nightly_dir.mkdir(parents=True, exist_ok=True)
    with closing(History(nightly_dir / HISTORY_NAME)) as history:
        yield history
