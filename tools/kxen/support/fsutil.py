"""File-system helpers that never leave a half-written file, a stale lock or a
dead holder's scratch directory behind, and never write through a link.

Locks are `flock`s, released by the kernel when their holder dies. A lock file is
opened without following a symlink and is never written: the holder's PID goes
into a file beside it that is replaced by rename (a rename replaces a planted link
instead of writing through it). Every scratch directory holds a `flock` on itself
while it is in use, so a directory whose lock can be taken belongs to a process
that is gone (killed, crashed, powered off) and `reclaim` may remove it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import KxenError, LockedError, NoSpaceError, PublishError, UnsafePathError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
PID_SUFFIX = ".pid"
SCRATCH_SUFFIX = ".kxen-tmp"
"""Every scratch directory's name ends so: how `reclaim` tells them from anything else."""
RECLAIM_MIN_AGE_SECONDS = 60.0
"""A scratch directory is locked microseconds after it is made: one this old and unlocked
has no living holder (the age closes the window between mkdtemp and flock)."""


def write_error(path: Path, exc: OSError, doing: str = "could not write") -> KxenError:
    """The error to raise for a failed write under `path`: disk full (exit 10) or not
    writable (exit 8), naming the path."""
    if exc.errno in _NO_SPACE:
        return NoSpaceError(f"{path}: no space left on the device ({doing})")
    return PublishError(f"{path}: {doing}: {exc.strerror or exc}")


def make_dirs(path: Path) -> Path:
    """mkdir -p, with a failure reported as a write error naming the directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PublishError(f"{path}: exists and is not a directory") from None
    except OSError as exc:
        raise write_error(path, exc, "could not create the directory") from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it (a symlink at
    `path` is replaced, never followed)."""
    make_dirs(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- locks --------------------------------------------------------------------


def _open_lock(lock_path: Path) -> int:
    """The lock file's descriptor: created if missing, never through a link, never
    truncated; anything but a regular file of ours is refused."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock_path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{lock_path}: the lock file is a symbolic link; kxen never follows one (remove it)"
            ) from None
        raise write_error(lock_path, exc, "could not open the lock file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePathError(
            f"{lock_path}: the lock file is not a regular file of this user (remove it)"
        )
    return fd


def _holder(lock_path: Path) -> str:
    """The PID recorded beside a lock, read without following a link."""
    try:
        fd = os.open(_pid_path(lock_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "?"
    try:
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return text if text.isdigit() else "?"


def _pid_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + PID_SUFFIX)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """flock-based lock: released by the kernel when the holder dies, so never stale.

    Results refuse a second holder at once (`wait=False`); shared caches make the
    second process wait its turn and then reuse what the first one produced."""
    make_dirs(lock_path.parent)
    fd = _open_lock(lock_path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(
                f"{what} is locked by PID {_holder(lock_path)} ({lock_path})"
            ) from None
        atomic_write_text(_pid_path(lock_path), f"{os.getpid()}\n")
        try:
            yield
        finally:
            _pid_path(lock_path).unlink(missing_ok=True)
    finally:
        os.close(fd)


# --- scratch directories and what dead holders left --------------------------


def _lock_directory(path: Path, *, wait: bool) -> int | None:
    """An flock on the directory itself: its descriptor, or None if another holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary directory under `parent`, locked while in use and removed however the
    block ends; if the process is killed instead, `reclaim` recognises it as dead."""
    make_dirs(parent)
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, suffix=SCRATCH_SUFFIX, dir=parent))
    except OSError as exc:
        raise write_error(parent, exc, "could not create a scratch directory") from None
    fd = _lock_directory(path, wait=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True)
class Reclaimed:
    path: Path
    bytes: int

    def describe(self) -> str:
        return f"removed {self.path} ({self.bytes >> 20} MiB) left by a kxen that is gone"


def reclaim(parent: Path, *, depth: int = 1, now: float | None = None) -> list[Reclaimed]:
    """Remove the scratch directories in `parent` (and its subdirectories down to `depth`
    levels) whose holder is gone (their lock is free); a directory in use, another
    user's, or a symlink is left alone."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    current = time.time() if now is None else now
    removed = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if not entry.name.endswith(SCRATCH_SUFFIX):
            if depth > 1:
                removed += reclaim(Path(entry.path), depth=depth - 1, now=current)
            continue
        info = entry.stat(follow_symlinks=False)
        if info.st_uid != os.geteuid() or current - info.st_mtime < RECLAIM_MIN_AGE_SECONDS:
            continue
        found = _remove_if_unheld(Path(entry.path))
        if found is not None:
            removed.append(found)
    return removed


def _remove_if_unheld(path: Path) -> Reclaimed | None:
    try:
        fd = _lock_directory(path, wait=False)
    except OSError:
        return None
    if fd is None:
        return None
    try:
        size = tree_size(path)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
    return Reclaimed(path, size)


def tree_size(path: Path) -> int:
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total


def remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def replace_dir(staging: Path, final: Path) -> None:
    """Put `staging` in place of `final`; the old content survives any failure."""
    make_dirs(final.parent)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    try:
        if final.exists() or final.is_symlink():
            os.replace(final, old)
        try:
            os.replace(staging, final)
        except OSError:
            if old.exists() or old.is_symlink():
                os.replace(old, final)
            raise
    except OSError as exc:
        raise write_error(final, exc, "could not publish results") from None
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


# --- free space -------------------------------------------------------------------


def preflight(needs: Mapping[Path, int]) -> None:
    """Refuse before any work if a directory's file system lacks the MiB it will need;
    directories on one file system share its free space, so their needs add up."""
    by_device: dict[int, tuple[list[Path], int, int]] = {}
    for directory, mib in needs.items():
        existing = _nearest_existing(directory)
        info = os.stat(existing)
        free = shutil.disk_usage(existing).free >> 20
        paths, wanted, _ = by_device.get(info.st_dev, ([], 0, free))
        by_device[info.st_dev] = ([*paths, directory], wanted + mib, free)
    for paths, wanted, free in by_device.values():
        if free < wanted:
            names = ", ".join(str(p) for p in paths)
            raise NoSpaceError(
                f"{names}: {free} MiB free, this command needs {wanted} MiB there "
                "(checked before any work started)"
            )


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
