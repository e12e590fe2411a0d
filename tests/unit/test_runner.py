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
from kxen.support.runner import (
    CommandFailed,
    CommandTimedOut,
    Completed,
    StoppedError,
    SubprocessRunner,
)


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
    command = f"$ cd {os.getcwd()} && seq 1 {count}"
    assert logged == ["earlier run", command, *map(str, range(1, count + 1))]
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


def process_gone(pid: int) -> bool:
    """Ended: no such process, or only its exit status left for its parent."""
    return _state(pid) in (None, "Z")


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
    with pytest.raises(StoppedError):
        runner.start(["touch", str(marker)])
    with pytest.raises(StoppedError):
        runner.stream(["touch", str(marker)])
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
                int(p)
                for p in Path(f"/proc/{kxen.pid}/task/{kxen.pid}/children").read_text().split()
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


# --- one command stopped, timeouts, quick commands --------------------------------


def _pids_written_to(path: Path) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not path.read_text().endswith("\n"):
        time.sleep(0.02)
    return [int(word) for word in path.read_text().split()]


def _assert_all_gone(pids: list[int]) -> None:
    """Every one ended within a few seconds: a signalled process dies when the kernel next
    runs it, which on a loaded machine is not at once."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(process_gone(pid) for pid in pids):
        time.sleep(0.05)
    assert [pid for pid in pids if not process_gone(pid)] == []


def _group_holder(pid_file: Path) -> list[str]:
    """A command whose group outlives its first process: a background sleep holds stdout."""
    pid_file.touch()
    return ["sh", "-c", f"sleep 300 & echo $$ $! > {pid_file}; echo started; wait"]


def test_stopping_one_command_leaves_the_runner_working(tmp_path):
    runner = SubprocessRunner()
    pids = tmp_path / "pids"
    running = runner.start(_group_holder(pids))
    started = _pids_written_to(pids)
    other = runner.start(["sh", "-c", "sleep 0.5; echo other"])
    running.stop()
    completed = running.wait(check=False)
    assert completed.stopped and not completed.timed_out
    assert completed.returncode == -signal.SIGTERM
    assert completed.output == "started\n"
    _assert_all_gone(started)
    assert other.wait().output == "other\n"  # the other command ran on
    assert runner.run(["echo", "still working"]).output == "still working\n"
    with pytest.raises(CommandFailed):
        running.wait()  # check=True: a stopped command did not succeed


def test_ended_within_polls_a_started_command():
    running = SubprocessRunner().start(["sh", "-c", "sleep 0.4; echo done"])
    assert not running.ended_within(0.05)
    assert running.ended_within(10)
    assert running.wait() == Completed(
        ("sh", "-c", "sleep 0.4; echo done"), 0, "done\n", tail=("done\n",)
    )


def test_a_failing_on_line_of_a_started_command_stops_it_and_reaches_wait(tmp_path):
    pids = tmp_path / "pids"

    def on_line(line: str) -> None:
        raise ValueError(line)

    running = SubprocessRunner().start(_group_holder(pids), on_line=on_line)
    with pytest.raises(ValueError, match="started"):
        running.wait()
    _assert_all_gone(_pids_written_to(pids))


def test_a_command_past_its_timeout_is_stopped_with_its_group(tmp_path):
    pids = tmp_path / "pids"
    began = time.monotonic()
    completed = SubprocessRunner().run(_group_holder(pids), timeout=0.5, check=False)
    assert time.monotonic() - began < 5
    assert completed.timed_out and completed.stopped and not completed.ok
    assert completed.output == "started\n"
    _assert_all_gone(_pids_written_to(pids))


def test_a_timeout_with_check_is_a_clear_error():
    with pytest.raises(CommandTimedOut) as info:
        SubprocessRunner().run(["sh", "-c", "echo waiting; sleep 30"], timeout=0.3)
    assert info.value.message == "sh did not end within 0.3s and was stopped"
    assert info.value.details == ["waiting"]
    assert isinstance(info.value, CommandFailed)
    assert info.value.completed.timed_out


def test_a_command_within_its_timeout_is_not_touched():
    completed = SubprocessRunner().run(["echo", "quick enough"], timeout=30)
    assert completed.ok and not completed.timed_out and not completed.stopped


def test_separate_stderr_keeps_both_streams_apart():
    result = SubprocessRunner().run(
        ["sh", "-c", "echo out; echo err >&2; exit 1"], separate_stderr=True, check=False
    )
    assert (result.output, result.stderr, result.returncode) == ("out\n", "err\n", 1)


def _parent_and_group() -> list[str]:
    # fields 4 and 5 of /proc/PID/stat: parent and process group
    return [
        "sh",
        "-c",
        "read -r pid comm state parent group rest < /proc/$$/stat; echo $parent $group $$",
    ]


def test_a_quick_command_skips_the_supervisor_but_not_its_own_group():
    quick = SubprocessRunner().run(_parent_and_group(), quick=True).output.split()
    parent, group, pid = map(int, quick)
    assert parent == os.getpid()  # started directly, no supervisor in between
    assert group == pid != os.getpgid(0)
    parent, group, pid = map(int, SubprocessRunner().run(_parent_and_group()).output.split())
    assert parent != os.getpid() and group == parent  # the supervisor leads the group


def test_a_quick_command_has_a_timeout_even_when_none_is_given(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "QUICK_TIMEOUT_SECONDS", 0.3)
    completed = SubprocessRunner().run(["sleep", "30"], quick=True, check=False)
    assert completed.timed_out
    with pytest.raises(MissingToolError):
        SubprocessRunner().run([tmp_path / "missing"], quick=True)


# --- streams and pipes ------------------------------------------------------------


def test_a_stream_is_read_by_the_caller_and_its_stderr_kept(tmp_path):
    with SubprocessRunner().stream(["sh", "-c", "seq 1 3; echo note >&2"], cwd=tmp_path) as seq:
        assert seq.stdout.read() == b"1\n2\n3\n"
        completed = seq.wait()
    assert (completed.output, completed.stderr) == ("", "note\n")


def test_a_stream_left_unread_is_stopped_when_its_block_ends(tmp_path):
    pids = tmp_path / "pids"
    pids.touch()
    producer = ["sh", "-c", f"echo $$ > {pids}; exec yes"]
    with pytest.raises(RuntimeError), SubprocessRunner().stream(producer) as stream:
        assert stream.stdout.read(4) == b"y\ny\n"
        raise RuntimeError("the reader gave up")
    _assert_all_gone(_pids_written_to(pids))
    with SubprocessRunner().stream(producer) as stream:
        stream.stdout.read(4)
        completed = stream.wait(check=False)  # the reader's end closed: no blocked writer
    assert not completed.ok


def test_one_command_piped_into_another(tmp_path):
    runner = SubprocessRunner()
    with runner.stream(["printf", "piped data"]) as source:
        result = runner.run(["tr", "a-z", "A-Z"], stdin=source.stdout)
        assert source.wait().ok
    assert result.output == "PIPED DATA"


def test_a_pipe_is_stopped_whole_when_the_consumer_fails(tmp_path):
    pids = tmp_path / "pids"
    pids.touch()
    runner = SubprocessRunner()
    with (
        pytest.raises(CommandTimedOut),
        runner.stream(["sh", "-c", f"echo $$ > {pids}; exec yes"]) as source,
    ):
        runner.run(["sh", "-c", "head -c 2 >/dev/null; sleep 30"], stdin=source.stdout, timeout=0.5)
    _assert_all_gone(_pids_written_to(pids))


# --- command lines in the log -----------------------------------------------------


def test_the_log_starts_with_a_command_line_that_runs_again_when_pasted(tmp_path):
    import subprocess

    work = tmp_path / "work dir"
    work.mkdir()
    log = tmp_path / "step.log"
    script = 'printf "%s|%s|%s\\n" "$1" "$2" "$KXEN_TEST_VAR"; pwd'
    argv = ["sh", "-c", script, "sh", "two words", "it's $HOME"]
    result = SubprocessRunner().run(argv, cwd=work, env={"KXEN_TEST_VAR": "a;b"}, log_path=log)
    first, *output = log.read_text().splitlines(keepends=True)
    assert first.startswith(f"$ cd '{work}' && KXEN_TEST_VAR='a;b' sh -c ")
    assert "".join(output) == result.output == f"two words|it's $HOME|a;b\n{work}\n"
    pasted = subprocess.run(
        ["sh", "-c", first.removeprefix("$ ")], cwd="/", capture_output=True, text=True
    )
    assert pasted.stdout == result.output


def test_every_command_of_a_step_is_logged_before_its_output(tmp_path):
    log = tmp_path / "step.log"
    runner = SubprocessRunner()
    runner.run(["echo", "one"], log_path=log)
    runner.run(["sh", "-c", "echo two; echo apart >&2"], log_path=log, separate_stderr=True)
    assert log.read_text().splitlines() == [
        f"$ cd {os.getcwd()} && echo one",
        "one",
        f"$ cd {os.getcwd()} && sh -c 'echo two; echo apart >&2'",
        "two",
        "apart",
    ]
