from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from kxen.errors import ExitCode, MissingToolError
from kxen.support import runner
from kxen.support.runner import CommandFailed, StoppedError, SubprocessRunner


def test_captures_stdout_and_stderr_in_order():
    result = SubprocessRunner().run(["sh", "-c", "echo out; echo err >&2; echo end"])
    assert result.ok
    assert result.returncode == 0
    assert result.output == "out\nerr\nend\n"
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; echo end")
    assert result.log_path is None


def test_on_line_gets_each_line_without_newline():
    lines: list[str] = []
    SubprocessRunner().run(["printf", "a\\nb b\\n\\nc"], on_line=lines.append)
    assert lines == ["a", "b b", "", "c"]


def test_env_cwd_and_stdin(tmp_path):
    (tmp_path / "marker").write_text("")
    stdin = tmp_path / "in"
    stdin.write_bytes(b"from stdin\n")
    with stdin.open("rb") as handle:
        result = SubprocessRunner().run(
            ["sh", "-c", 'echo "$KXEN_TEST_VAR"; ls; cat'],
            cwd=tmp_path,
            env={"KXEN_TEST_VAR": "value"},
            stdin=handle,
        )
    assert result.output == "value\nin\nmarker\nfrom stdin\n"


def test_stdin_defaults_to_devnull():
    assert SubprocessRunner().run(["cat"]).output == ""


def test_nonzero_exit_without_check():
    result = SubprocessRunner().run(["sh", "-c", "echo nope; exit 3"], check=False)
    assert not result.ok
    assert result.returncode == 3
    assert result.output == "nope\n"


def test_check_raises_command_failed_with_the_last_lines():
    script = "for i in 1 2 3 4 5; do echo line$i; done; exit 7"
    with pytest.raises(CommandFailed) as info:
        SubprocessRunner().run(["sh", "-c", script])
    assert info.value.message == "sh exited with status 7"
    assert info.value.details == ["line3", "line4", "line5"]
    assert info.value.completed.returncode == 7
    assert info.value.exit_code == ExitCode.FAILURE


def test_missing_binary_is_a_missing_tool_error(tmp_path):
    with pytest.raises(MissingToolError) as info:
        SubprocessRunner().run([tmp_path / "no-such-tool", "--version"])
    assert info.value.message.startswith(f"{tmp_path / 'no-such-tool'}: command not found")
    assert info.value.exit_code == ExitCode.MISSING_TOOL


def test_missing_cwd_is_not_reported_as_a_missing_tool(tmp_path):
    with pytest.raises(Exception) as info:
        SubprocessRunner().run(["true"], cwd=tmp_path / "gone")
    assert not isinstance(info.value, MissingToolError)
    assert "command not found" not in str(info.value)


def test_log_path_gets_everything_and_output_keeps_the_tail(tmp_path):
    log = tmp_path / "build.log"
    log.write_bytes(b"earlier run\n")
    count = runner.TAIL_LINES + 100
    result = SubprocessRunner().run(["seq", "1", str(count)], log_path=log)
    logged = log.read_text().splitlines()
    assert logged == ["earlier run", *map(str, range(1, count + 1))]
    kept = result.output.splitlines()
    assert len(kept) == runner.TAIL_LINES
    assert kept[0] == str(count - runner.TAIL_LINES + 1)
    assert kept[-1] == str(count)
    assert result.log_path == log


def _state(pid: int) -> str | None:
    """Process state letter from /proc, None when the PID no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def test_interrupt_from_on_line_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "sleep.pid"
    group_file = tmp_path / "group.pid"
    script = f"echo $$ > {group_file}; sleep 300 & echo $! > {pid_file}; echo started; wait"

    def on_line(line: str) -> None:
        if line == "started":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SubprocessRunner().run(["sh", "-c", script], on_line=on_line)
    sleep_pid = int(pid_file.read_text())
    group = int(group_file.read_text())
    try:
        assert os.getpgid(os.getpid()) != group  # the child ran in a group of its own
        assert _state(sleep_pid) in (None, "Z"), "the background sleep survived"
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)  # nothing of the group is left, not even a zombie
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # never leave a sleep behind on failure


def test_commands_after_stop_all_are_refused_not_started(tmp_path):
    """The race a Ctrl-C used to lose: a thread that checked "stop?" just before the
    main thread stopped everything must not start its command afterwards."""
    runner = SubprocessRunner()
    marker = tmp_path / "started"
    running = threading.Thread(target=runner.run, args=(["sleep", "30"],), kwargs={"check": False})
    running.start()
    time.sleep(0.3)
    runner.stop_all()
    running.join(timeout=15)
    assert not running.is_alive()
    with pytest.raises(StoppedError, match="not started"):
        runner.run(["touch", str(marker)])
    assert not marker.exists()


def test_a_command_killed_by_a_signal_reports_that_signal():
    result = SubprocessRunner().run(["sh", "-c", "kill -TERM $$"], check=False)
    assert result.returncode == -signal.SIGTERM


KXEN_KILLED_HOLDER = """
import sys
from kxen.support.runner import SubprocessRunner
SubprocessRunner().run(["sh", "-c", "sleep 300 & sleep 300; wait"], on_line=print)
"""


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[3]) == pgid:
                    members.append(int(entry.name))
    return members


def test_sigkill_of_kxen_takes_the_command_group_with_it():
    """No orphan runs on when kxen itself dies without any chance to clean up."""
    import subprocess
    import sys

    kxen = subprocess.Popen([sys.executable, "-c", KXEN_KILLED_HOLDER])
    try:
        deadline = time.monotonic() + 20
        group: list[int] = []
        while time.monotonic() < deadline and len(group) < 4:  # supervisor, sh, 2 sleeps
            children = [
                int(p) for p in Path(f"/proc/{kxen.pid}/task/{kxen.pid}/children")
                .read_text().split()
            ]
            group = _group_members(children[0]) if children else []
            time.sleep(0.1)
        assert len(group) == 4, group
    finally:
        kxen.kill()
        kxen.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_members(children[0]):
        time.sleep(0.1)
    assert _group_members(children[0]) == []

