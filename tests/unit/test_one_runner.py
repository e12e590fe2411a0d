"""Every command kxen starts goes through the runner it was given: the Kconfig probes and
the compiler check, the decompressors of upstream archives (issue 13, item 2)."""

from __future__ import annotations

import io
import lzma
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kxen.config import kconfig
from kxen.errors import ConfigError, InputError
from kxen.support.runner import (
    Argv,
    Completed,
    Running,
    RunOptions,
    StoppedError,
    SubprocessRunner,
)
from kxen.upstream import archive, origin

from .conftest import kernel_makefile, write_tarball
from .test_kconfig import make_tree
from .test_runner import process_gone


class RecordingRunner(SubprocessRunner):
    """The real runner, noting each command it starts and how."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[list[str], RunOptions]] = []
        self.streams: list[list[str]] = []

    def run(self, argv: Argv, *, check: bool = True, **options: object) -> Completed:
        self.runs.append(([os.fspath(a) for a in argv], options))  # type: ignore[arg-type]
        return super().run(argv, check=check, **options)  # type: ignore[arg-type]

    def stream(self, argv: Argv, **options: object) -> Running:
        self.streams.append([os.fspath(a) for a in argv])
        return super().stream(argv, **options)  # type: ignore[arg-type]


def _pid_from(path: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.02)
    return int(path.read_text())


# --- Kconfig ----------------------------------------------------------------------


def test_kconfig_probes_and_the_compiler_run_through_the_given_runner(tmp_path: Path) -> None:
    runner = RecordingRunner()
    model = kconfig.load(make_tree(tmp_path / "linux"), "x86_64", runner=runner)
    commands = [argv for argv, _ in runner.runs]
    assert commands[0] == ["gcc", "--version"]
    assert ["/bin/sh", "-c", "pwd"] in commands
    for _, options in runner.runs:  # short and many: no supervisor, a timeout, stderr apart
        assert options["quick"] and options["separate_stderr"]
        assert options["timeout"] == kconfig._PROBE_TIMEOUT_SECONDS
    [pwd] = [options for argv, options in runner.runs if argv == ["/bin/sh", "-c", "pwd"]]
    assert model.resolve({}, "olddefconfig")["SHELL_DIR"] == f'"{pwd["cwd"]}"'


def test_a_probe_that_hangs_is_stopped_at_its_timeout_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_tree(tmp_path / "linux")
    pid_file = tmp_path / "probe.pid"
    hang = f"echo $$ > {pid_file}; exec sleep 300"
    with (tree / "Kconfig").open("a") as kconfig_file:
        kconfig_file.write(f'config HANGS\n\tstring\n\tdefault "$(shell,{hang})"\n')
    monkeypatch.setattr(kconfig, "_PROBE_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(ConfigError, match=r"probe /bin/sh -c 'echo .*' did not end within 0.5s"):
        kconfig.load(tree, "x86_64")
    assert process_gone(_pid_from(pid_file))


def test_a_stopped_runner_starts_no_probe(tmp_path: Path) -> None:
    runner = RecordingRunner()
    runner.stop_all()
    with pytest.raises(StoppedError):
        kconfig.load(make_tree(tmp_path / "linux"), "x86_64", runner=runner)


# --- upstream archives ------------------------------------------------------------


def _tarball_with_a_long_tail(path: Path) -> Path:
    """linux-6.1.5/Makefile first, then 8 MiB more than a pipe holds: a decompressor
    left alone would block on its output for ever."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("linux-6.1.5/Makefile", kernel_makefile(6, 1, 5).encode()),
            ("linux-6.1.5/zeros", bytes(8 << 20)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(lzma.compress(buffer.getvalue(), preset=0))
    return path


@pytest.fixture
def xz_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An `xz` first on PATH that notes its PID and becomes the real xz."""
    real = next(Path(d) / "xz" for d in os.environ["PATH"].split(":") if (Path(d) / "xz").is_file())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "xz.pid"
    script = bin_dir / "xz"
    script.write_text(f'#!/bin/sh\necho $$ > {pid_file}\nexec {real} "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield pid_file


def test_a_scan_stops_its_decompressor_once_the_makefile_is_found(
    tmp_path: Path, xz_on_path: Path
) -> None:
    tarball = _tarball_with_a_long_tail(tmp_path / "linux-source.tar.xz")
    runner = RecordingRunner()
    found = origin.from_tarball(tarball, tmp_path / "cache", runner)
    assert (str(found.version), found.topdir) == ("6.1.5", "linux-6.1.5")
    assert runner.streams == [["xz", "-dc", str(tarball)]]
    assert process_gone(_pid_from(xz_on_path))


def test_checking_members_reads_the_whole_stream_and_its_decompressor_ends_cleanly(
    tmp_path: Path, xz_on_path: Path
) -> None:
    tarball = _tarball_with_a_long_tail(tmp_path / "linux-source.tar.xz")
    runner = RecordingRunner()
    archive.check_members(tarball, "linux-6.1.5", runner)
    assert runner.streams == [["xz", "-dc", str(tarball)]]
    assert process_gone(_pid_from(xz_on_path))


def test_a_decompressor_failure_is_reported_with_what_it_said(tmp_path: Path) -> None:
    tarball = write_tarball(
        tmp_path / "t.tar.xz", {"linux-6.1.5/Makefile": kernel_makefile(6, 1, 5).encode()}
    )
    with tarball.open("ab") as damaged:
        damaged.write(b"trailing bytes that are no xz stream")
    with pytest.raises(InputError, match="could not be decompressed") as info:
        archive.check_members(tarball, "linux-6.1.5", SubprocessRunner())
    assert info.value.details[-1].startswith(f"xz: {tarball}: ")  # xz's own words


def test_a_stopped_runner_starts_no_decompressor(tmp_path: Path) -> None:
    tarball = _tarball_with_a_long_tail(tmp_path / "linux-source.tar.xz")
    runner = SubprocessRunner()
    runner.stop_all()
    with pytest.raises(StoppedError):
        origin.from_tarball(tarball, tmp_path / "cache", runner)
