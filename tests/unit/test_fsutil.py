from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kxen import fsutil
from kxen.errors import ExitCode, LockedError, PublishError


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
    from kxen.fsutil import exclusive_lock
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
    with fsutil.exclusive_lock(lock, "results dir"):
        assert lock.read_text() == str(os.getpid())
    assert lock.read_text() == ""


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
