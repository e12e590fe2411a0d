"""File-system helpers that never leave a half-written file or a stale lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import LockedError, PublishError


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise PublishError(f"{path}: could not write: {exc.strerror}") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """flock-based lock: released by the kernel when the holder dies, so never stale.

    Results refuse a second holder at once (`wait=False`); shared caches make the
    second process wait its turn and then reuse what the first one produced."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise LockedError(f"{what} is locked by PID {holder} ({lock_path})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary directory under `parent`, removed however the block ends."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(staging: Path, final: Path) -> None:
    """Put `staging` in place of `final`; the old content survives any failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    try:
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(staging, final)
        except OSError:
            if old.exists():
                os.replace(old, final)
            raise
    except OSError as exc:
        raise PublishError(f"{final}: could not publish results: {exc.strerror}") from exc
    shutil.rmtree(old, ignore_errors=True)
