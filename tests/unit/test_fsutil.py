from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kxen.errors import ExitCode, LockedError, NoSpaceError, PublishError, UnsafePathError
from kxen.support import fsutil


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_write_text_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    fsutil.atomic_write_text(path, "first\n")
    fsutil.atomic_write_text(path, "sécond\n")
    assert path.read_text(encoding="utf-8") == "sécond\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert _entries(path.parent) == ["file.txt"]


def test_atomic_write_failure_leaves_no_temp_file(tmp_path):
    target = tmp_path / "target"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(PublishError) as info:
        fsutil.atomic_write_text(target, "data")
    assert str(target) in info.value.message
    assert info.value.exit_code == ExitCode.PUBLISH
    assert _entries(tmp_path) == ["target"]
    assert _entries(target) == []


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    path.write_text("old\n")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fsutil.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert _entries(tmp_path) == ["file.txt"]


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "blob"
    fsutil.atomic_write_bytes(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kxen.support.fsutil import exclusive_lock
    with exclusive_lock(Path(sys.argv[1]), "test dir"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def _start_holder(lock: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != "locked":
        holder.kill()
        holder.wait()
        pytest.fail("the lock holder did not start")
    return holder


def test_lock_held_by_another_process_names_its_pid(tmp_path):
    lock = tmp_path / "locks" / "results.lock"
    holder = _start_holder(lock)
    try:
        with pytest.raises(LockedError) as info, fsutil.exclusive_lock(lock, "results dir"):
            pytest.fail("took a lock another process holds")
        assert f"results dir is locked by PID {holder.pid}" in info.value.message
        assert info.value.exit_code == ExitCode.LOCKED
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead holder's flock: no stale lock
    pid_file = lock.with_name("results.lock.pid")
    with fsutil.exclusive_lock(lock, "results dir"):
        assert pid_file.read_text() == f"{os.getpid()}\n"
    assert not pid_file.exists()
    assert lock.read_text() == ""  # the lock file itself is never written


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    lock = tmp_path / "x.lock"
    with (
        fsutil.exclusive_lock(lock, "x"),
        pytest.raises(LockedError, match=f"PID {os.getpid()}"),
        fsutil.exclusive_lock(lock, "x"),
    ):
        pytest.fail("took the same lock twice")
    with fsutil.exclusive_lock(lock, "x"):
        pass


def test_lock_is_released_when_the_block_raises(tmp_path):
    lock = tmp_path / "x.lock"
    with pytest.raises(RuntimeError), fsutil.exclusive_lock(lock, "x"):
        raise RuntimeError
    with fsutil.exclusive_lock(lock, "x"):
        pass


def test_scratch_dir_is_removed_however_the_block_ends(tmp_path):
    with fsutil.scratch_dir(tmp_path / "work", ".s-") as first:
        (first / "f").write_text("x")
        assert first.parent == tmp_path / "work"
        assert first.name.startswith(".s-")
    assert not first.exists()
    with pytest.raises(KeyboardInterrupt), fsutil.scratch_dir(tmp_path / "work", ".s-") as second:
        (second / "f").write_text("x")
        raise KeyboardInterrupt
    assert not second.exists()
    assert _entries(tmp_path / "work") == []


def _tree(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / "content").write_text(content)
    return path


def test_replace_dir_puts_staging_in_place(tmp_path):
    final = _tree(tmp_path / "out" / "results", "old")
    staging = _tree(tmp_path / "out" / ".staging", "new")
    fsutil.replace_dir(staging, final)
    assert (final / "content").read_text() == "new"
    assert _entries(tmp_path / "out") == ["results"]


def test_replace_dir_without_previous_content(tmp_path):
    staging = _tree(tmp_path / ".staging", "new")
    final = tmp_path / "a" / "results"
    fsutil.replace_dir(staging, final)
    assert (final / "content").read_text() == "new"
    assert not staging.exists()


def test_replace_dir_keeps_old_content_when_staging_rename_fails(tmp_path):
    final = _tree(tmp_path / "out" / "results", "old")
    missing_staging = tmp_path / "out" / ".staging"
    with pytest.raises(PublishError) as info:
        fsutil.replace_dir(missing_staging, final)
    assert str(final) in info.value.message
    assert (final / "content").read_text() == "old"
    assert _entries(tmp_path / "out") == ["results"]


# --- locks never follow links and never write what they did not create ---------------


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    lock = tmp_path / "results" / ".nvr.lock"
    lock.parent.mkdir()
    lock.symlink_to(target)
    with (
        pytest.raises(UnsafePathError, match="symbolic link") as info,
        fsutil.exclusive_lock(lock, "results/nvr"),
    ):
        pytest.fail("locked through a symlink")
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert target.read_text() == "keep me\n"
    assert lock.is_symlink()


def test_a_lock_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    lock = tmp_path / "x.lock"
    os.mkfifo(lock)
    with (
        pytest.raises(UnsafePathError, match="not a regular file"),
        fsutil.exclusive_lock(lock, "x"),
    ):
        pytest.fail("locked a fifo")


def test_an_existing_lock_file_is_never_truncated(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("somebody's data\n")
    with fsutil.exclusive_lock(lock, "x"):
        pass
    assert lock.read_text() == "somebody's data\n"


def test_a_planted_pid_file_link_is_replaced_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    lock = tmp_path / "x.lock"
    lock.with_name("x.lock.pid").symlink_to(target)
    with fsutil.exclusive_lock(lock, "x"):
        assert lock.with_name("x.lock.pid").read_text() == f"{os.getpid()}\n"
        assert not lock.with_name("x.lock.pid").is_symlink()
    assert target.read_text() == "keep me\n"


# --- scratch directories of dead holders are reclaimed -------------------------------

SCRATCH_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kxen.support.fsutil import scratch_dir
    with scratch_dir(Path(sys.argv[1]), ".work-") as path:
        (path / "payload").write_bytes(b"x" * 4096)
        print(path, flush=True)
        time.sleep(60)
    """
)


def _scratch_holder(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    holder = subprocess.Popen(
        [sys.executable, "-c", SCRATCH_HOLDER, str(parent)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    return holder, Path(holder.stdout.readline().strip())


def test_reclaim_removes_a_killed_holders_dir_and_keeps_a_living_ones(tmp_path):
    dead, dead_dir = _scratch_holder(tmp_path)
    alive, alive_dir = _scratch_holder(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert dead_dir.is_dir()  # SIGKILL: no cleanup ran
        later = time.time() + fsutil.RECLAIM_MIN_AGE_SECONDS + 1
        removed = fsutil.reclaim(tmp_path, now=later)
        assert [r.path for r in removed] == [dead_dir]
        assert removed[0].bytes >= 4096
        assert "left by a kxen that is gone" in removed[0].describe()
        assert not dead_dir.exists()
        assert (alive_dir / "payload").is_file()
    finally:
        alive.kill()
        alive.wait()


def test_reclaim_spares_young_dirs_other_names_and_symlinks(tmp_path):
    young = tmp_path / f".work-young{fsutil.SCRATCH_SUFFIX}"
    young.mkdir()
    other = tmp_path / ".cache-old"
    other.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f".work-link{fsutil.SCRATCH_SUFFIX}").symlink_to(elsewhere)
    old = time.time() - 3600
    os.utime(other, (old, old))
    assert fsutil.reclaim(tmp_path) == []
    assert young.is_dir() and other.is_dir() and elsewhere.is_dir()
    os.utime(young, (old, old))
    assert [r.path for r in fsutil.reclaim(tmp_path)] == [young]


def test_reclaim_looks_as_deep_as_it_is_told(tmp_path):
    nested = tmp_path / "trees" / f".extract-x{fsutil.SCRATCH_SUFFIX}"
    nested.mkdir(parents=True)
    old = time.time() - 3600
    os.utime(nested, (old, old))
    assert fsutil.reclaim(tmp_path) == []
    assert [r.path for r in fsutil.reclaim(tmp_path, depth=2)] == [nested]


# --- write failures and free space -----------------------------------------------------


def test_a_full_disk_is_no_space_and_a_read_only_dir_a_publish_error(tmp_path):
    full = fsutil.write_error(tmp_path / "out", OSError(errno.ENOSPC, "No space left"))
    assert full.exit_code == ExitCode.NO_SPACE and str(tmp_path / "out") in full.message
    denied = fsutil.write_error(tmp_path / "out", OSError(errno.EACCES, "Permission denied"))
    assert denied.exit_code == ExitCode.PUBLISH and "Permission denied" in denied.message


def test_preflight_adds_up_needs_on_one_file_system(tmp_path):
    free = shutil.disk_usage(tmp_path).free >> 20
    fsutil.preflight({tmp_path / "a": 1, tmp_path / "b" / "c": 1})
    with pytest.raises(NoSpaceError) as info:
        fsutil.preflight({tmp_path / "a": free // 2 + 1, tmp_path / "b": free // 2 + 1})
    assert str(tmp_path / "a") in info.value.message and str(tmp_path / "b") in info.value.message
    assert info.value.exit_code == ExitCode.NO_SPACE
