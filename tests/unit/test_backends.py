"""Failure diagnosis and progress parsing of the local backend, on recorded log lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kxen.build.backends.base import first_errors
from kxen.build.backends.local import (
    BUILD_SPACE_MIB,
    RAM_AREA,
    RAM_RESERVE_MIB,
    LocalBackend,
    _progress_parser,
    build_area,
)
from kxen.errors import NoSpaceError
from kxen.support.runner import SubprocessRunner
from kxen.support.text import neutralise


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def phase(self, name: str, detail: str = "") -> None:
        raise AssertionError("the backend reports steps, not phases")

    def step(self, text: str) -> None:
        self.steps.append(text)

    def transfer(self, name: str, done: int, total: int | None) -> None:
        raise AssertionError("no transfers in a build")


def test_first_errors_start_at_the_compiler_error() -> None:
    log = [
        "  CC      kernel/fork.o\n",
        "kernel/bounds.c:2:2: error: #error kxen-test\n",
        "    2 | #error kxen-test\n",
        "make[1]: *** [scripts/Makefile.build:250: kernel/bounds.s] Error 1\n",
    ]
    assert first_errors(log)[:2] == [
        "kernel/bounds.c:2:2: error: #error kxen-test",
        "    2 | #error kxen-test",
    ]


def test_first_errors_name_a_rejected_patch() -> None:
    log = ["patching file kernel/bounds.c\n", "Hunk #1 FAILED at 1.\n", "1 out of 1 hunk FAILED\n"]
    assert first_errors(log) == ["Hunk #1 FAILED at 1.", "1 out of 1 hunk FAILED"]


def test_first_errors_fall_back_to_the_log_tail() -> None:
    log = [f"line {n}\n" for n in range(20)]
    assert first_errors(log, limit=3) == ["line 17", "line 18", "line 19"]


def test_terminal_escapes_are_neutralised() -> None:
    assert neutralise("\x1b[31mred\x1b[0m\x07") == "?red??"


def test_progress_parser_reports_rpm_phases_and_make_steps() -> None:
    recorder = Recorder()
    parse = _progress_parser(recorder)
    for line in (
        "Executing(%prep): /bin/sh -e /var/tmp/rpm-tmp.x",
        "  CC      kernel/fork.o",
        "  LD [M]  drivers/xen/xen-evtchn.ko",
        "some other output",
        "Processing files: kernel-xen-6.1.192-1.smoke.x86_64",
        "Wrote: /tmp/t/RPMS/x86_64/kernel-xen-6.1.192-1.smoke.x86_64.rpm",
    ):
        parse(line)
    assert recorder.steps == [
        "%prep",
        "CC kernel/fork.o",
        "LD [M] drivers/xen/xen-evtchn.ko",
        "packaging kernel-xen-6.1.192-1.smoke.x86_64",
        "wrote kernel-xen-6.1.192-1.smoke.x86_64.rpm",
    ]


def test_too_little_disk_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _path: usage._replace(free=(BUILD_SPACE_MIB - 1) << 20)
    )
    backend = LocalBackend(SubprocessRunner(), tmp_path / "results")
    with pytest.raises(NoSpaceError, match=rf"{BUILD_SPACE_MIB - 1} MiB free.*needs"):
        backend._check_space()
    assert list((tmp_path / "results").iterdir()) == []


def test_enough_disk_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _path: usage._replace(free=BUILD_SPACE_MIB << 20)
    )
    LocalBackend(SubprocessRunner(), tmp_path).check_host(["x86_64"])


def meminfo(tmp_path: Path, available_mib: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_mib << 10} kB\n")
    return path


def test_build_area_is_ram_only_when_the_build_fits_with_room_to_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plenty = BUILD_SPACE_MIB + RAM_RESERVE_MIB + 1
    usage = shutil.disk_usage(tmp_path)._replace(free=plenty << 20)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage)
    assert build_area(tmp_path, meminfo(tmp_path, plenty)) == RAM_AREA
    # The compilers need memory too: the RAM area must leave the reserve available.
    assert build_area(tmp_path, meminfo(tmp_path, plenty - 2)) == tmp_path
    small = usage._replace(free=(BUILD_SPACE_MIB - 1) << 20)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: small)
    assert build_area(tmp_path, meminfo(tmp_path, plenty * 4)) == tmp_path
    assert build_area(tmp_path, tmp_path / "no-meminfo") == tmp_path


# --- the interface ---------------------------------------------------------------------


class RecordingRunner:
    """Records what a backend runs and fails it at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, object]]] = []

    def run(self, argv: list[object], **options: object) -> object:
        from kxen.support.runner import Completed

        self.calls.append(([str(a) for a in argv], options))
        return Completed(tuple(str(a) for a in argv), 1, "error: no\n", tail=("error: no\n",))

    def stop_all(self) -> None:
        pass


def test_builds_run_in_the_c_locale_whatever_the_users(tmp_path: Path) -> None:
    from kxen.build.backends.base import BUILD_LOCALE
    from kxen.build.backends.mock import MockBackend
    from kxen.support.progress import NullProgress

    runner = RecordingRunner()
    srpm = tmp_path / "tiny-1.0-1.src.rpm"
    for backend in (
        LocalBackend(runner, tmp_path / "area"),  # type: ignore[arg-type]
        MockBackend(runner, {"x86_64": "fedora-41-x86_64"}),  # type: ignore[arg-type]
    ):
        run = backend.start(srpm, ["x86_64"], NullProgress())
        assert run.nvr() == "tiny-1.0-1" and run.srpm(tmp_path) == srpm
        (arch,) = run.arches()
        staging = tmp_path / backend.name
        staging.mkdir()
        assert not arch.collect(staging, NullProgress()).ok
    assert [argv[0] for argv, _ in runner.calls] == ["rpmbuild", "mock"]
    assert all(options["env"] == BUILD_LOCALE for _, options in runner.calls)
    assert BUILD_LOCALE["LC_ALL"] == BUILD_LOCALE["LANG"] == "C"


def test_local_and_mock_build_a_local_srpm_only(tmp_path: Path) -> None:
    from kxen.build.backends.base import Scm, Task
    from kxen.errors import InputError
    from kxen.support.progress import NullProgress

    backend = LocalBackend(SubprocessRunner(), tmp_path)
    for source in (Scm("git+https://example.org/k.git#0123abc"), Task(7)):
        with pytest.raises(InputError, match="the local backend builds a local SRPM"):
            backend.start(source, ["x86_64"], NullProgress())


def test_mock_exit_codes_are_mocks_whole_table() -> None:
    from kxen.build.backends.mock import EXIT_MEANINGS

    # mockbuild/exception.py's codes, and 7 for Ctrl-C (mock.py)
    assert set(EXIT_MEANINGS) == {
        *(1, 2, 3, 4, 5, 6, 7, 10, 11, 20, 25, 30, 31, 40, 50, 60, 65, 70, 80, 90),
        *(110, 120, 129, 141, 143),
    }
    assert EXIT_MEANINGS[10] == "rpmbuild phase failed"
    assert EXIT_MEANINGS[60] == "build root locked"
