"""The pieces of `kxen boot-test` that need no Xen: initramfs images, the guest's init,
the console watcher's verdicts, tool lookup and the bounded QEMU run."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from kxen.errors import InputError
from kxen.inspect import boottest
from kxen.inspect.boottest import images, pieces
from kxen.inspect.boottest.initramfs import Initramfs
from kxen.support.progress import NullProgress, Progress
from kxen.support.runner import StoppedError, SubprocessRunner

from ..support import XEN_BOOT_STAGES
from .test_runner import process_gone

TOKEN = "0123456789abcdef"
RELEASE = "6.1.192-1.smoke.x86_64+xen"


def test_initramfs_is_a_cpio_the_kernel_reads(tmp_path: Path) -> None:
    image = Initramfs()
    image.char_device("dev/console", 5, 1)
    image.file("guest/token", b"abc\n")
    image.file("init", b"#!/bin/sh\n", 0o755)
    image.symlink("bin/sh", "busybox")
    data = image.gzipped()
    assert data == image.gzipped()  # same entries, same bytes
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=gzip.decompress(data), capture_output=True, check=True
    ).stdout.decode()
    lines = {
        line.split()[-1] if "->" not in line else line.split()[-3]: line
        for line in listing.splitlines()
    }
    assert lines["dev/console"].startswith("crw-------") and "5,   1" in lines["dev/console"]
    assert lines["guest"].startswith("drwxr-xr-x")  # parents are added on demand
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["bin/sh"].startswith("lrwxrwxrwx") and lines["bin/sh"].endswith("-> busybox")
    subprocess.run(
        ["cpio", "-idm", "--quiet", "guest/token"],
        input=gzip.decompress(data),
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "guest/token").read_bytes() == b"abc\n"
    with pytest.raises(ValueError, match="added twice"):
        image.file("init", b"")


@pytest.mark.parametrize(("arch", "elf_class"), [("x86_64", 64), ("i686", 32)])
def test_guest_init_is_a_static_binary_of_the_guest_arch(
    tmp_path: Path, arch: str, elf_class: int
) -> None:
    init = images.guest_init(arch, tmp_path, SubprocessRunner())
    with init.open("rb") as handle:
        elf = ELFFile(handle)
        assert elf.elfclass == elf_class
        assert elf["e_type"] == "ET_EXEC"
        assert not any(s["p_type"] == "PT_INTERP" for s in elf.iter_segments())
    assert images.guest_init(arch, tmp_path, SubprocessRunner()) == init  # cached


def _watch(lines: list[str], xen: bool = True) -> boottest.Watcher:
    watcher = boottest.Watcher(TOKEN, xen=xen, progress=NullProgress())
    for line in lines:
        watcher.feed(line + "\r")
    return watcher


def _judge(watcher: boottest.Watcher, mode: str = "pv") -> boottest.BootResult:
    result = boottest.BootResult("k.rpm", mode, RELEASE, boottest.EXPECTED_GUEST_TYPE[mode])
    watcher.judge(result, None)
    return result


XEN_BOOT = [
    "(XEN) Xen version 4.17.7 (Debian 4.17.7) (gcc) debug=n",
    "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
    "kxen-dom0: toolstack starting",
    "Parsing config from /guest/guest.cfg",
    "kxen-dom0: domain created",
    f"[domU] [    0.000000] Linux version {RELEASE} (kxen@kernel-xen)",
]


def test_the_marker_with_the_expected_guest_type_passes() -> None:
    watcher = _watch([*XEN_BOOT, f"[domU] kxen-boot-test {TOKEN} release={RELEASE} guest_type=PV"])
    result = _judge(watcher)
    assert result.passed and result.guest_type == "PV"
    assert [s["stage"] for s in result.stages] == XEN_BOOT_STAGES
    assert watcher.settle_by < float("inf")  # QEMU gets a bounded time to power off


@pytest.mark.parametrize(
    ("marker", "failure"),
    [
        (
            f"kxen-boot-test {TOKEN} release={RELEASE} guest_type=HVM",
            "guest_type is HVM, expected PV",
        ),
        (f"kxen-boot-test {TOKEN} release=6.1.0-56-amd64 guest_type=PV", "not " + RELEASE),
        (
            "kxen-boot-test ffffffffffffffff release={RELEASE} guest_type=PV",
            "without the guest's marker",
        ),
    ],
)
def test_a_wrong_marker_fails(marker: str, failure: str) -> None:
    result = _judge(_watch([*XEN_BOOT, marker]))
    assert not result.passed
    assert failure in (result.failure or "")


def test_a_rejected_guest_reports_libxl_errors() -> None:
    lines = [
        *XEN_BOOT[:4],
        "xc: error: panic: xg_dom_core.c:689: xc_dom_find_loader: no loader found: Invalid kernel",
        "libxl: error: libxl_dom.c:591:libxl__build_dom: xc_dom_parse_image failed",
        "kxen-dom0: xl create failed",
    ]
    result = _judge(_watch(lines))
    assert result.failure == "Xen's domain builder rejected the kernel"
    assert any("no loader found" in line for line in result.evidence)


def test_a_panic_reports_its_lines() -> None:
    lines = [
        *XEN_BOOT,
        "[domU] [    1.0] Run /missing as init process",
        "[domU] [    1.1] VFS: Unable to mount root fs on unknown-block(0,0)",
        "[domU] [    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs",
        "[domU] [    1.3] CPU: 0 PID: 1 Comm: swapper/0 Not tainted",
        "kxen-dom0: domain gone",
    ]
    result = _judge(_watch(lines), "pvh")
    assert result.failure == "the kernel panicked"
    assert any("VFS: Unable to mount root fs" in line for line in result.evidence)
    assert any("Kernel panic - not syncing" in line for line in result.evidence)


def test_a_guest_xen_kills_before_its_console_reports_xens_dump() -> None:
    lines = [
        *XEN_BOOT[:5],
        "(XEN) d1v0 Triple fault - invoking HVM shutdown action 1",
        "(XEN) *** Dumping Dom1 vcpu#0 state: ***",
        "(XEN) RIP:    e008:[<ffff82d0402044a5>]",
        "kxen-dom0: domain gone",
        "(XEN) Preparing system for ACPI S5 state.",
    ]
    watcher = _watch(lines, xen=True)
    result = _judge(watcher, "pvh")
    assert (
        result.failure == "Xen killed the guest: d1v0 Triple fault - invoking HVM shutdown action 1"
    )
    assert result.evidence[1:] == lines[6:8]  # the dump, up to the next line not Xen's
    assert watcher.settle_by < float("inf")
    # dom0 (d0) going down is not the guest's crash
    assert not _watch(["(XEN) d0v0 Triple fault - invoking HVM shutdown action 1"]).crash


TRIPLE_FAULT = [
    *XEN_BOOT[:5],
    "(XEN) d1v0 Triple fault - invoking HVM shutdown action 1",
    "kxen-dom0: domain gone",
]
PV_MARKER = f"[domU] kxen-boot-test {TOKEN} release={RELEASE} guest_type=PV"
# dom0 powers the machine off; without ACPI power-off QEMU would idle on, and does here
POWERED_OFF = "(XEN) Preparing system for ACPI S5 state."


class ScriptedQemu:
    """A `qemu-system-x86_64` first on PATH, run by the real runner: its Nth start records
    its PID in `starts`, prints the Nth scripted console, then exits if that console
    ends with the guest's marker, else hangs until it is stopped."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, boots: list[list[str]]):
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for n, lines in enumerate(boots, 1):
            (root / f"boot{n}.txt").write_text("".join(f"{line}\r\n" for line in lines))
            if lines[-1] == PV_MARKER:
                (root / f"boot{n}.exits").touch()
        qemu = bin_dir / boottest.QEMU
        qemu.write_text(
            "#!/bin/sh\n"
            f"cd '{root}'\n"
            "echo $$ >> starts\n"
            "n=$(grep -c . starts)\n"
            'cat "boot$n.txt"\n'
            '[ -e "boot$n.exits" ] && exit 0\n'
            "exec sleep 300\n"
        )
        qemu.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    @property
    def starts(self) -> list[int]:
        path = self.root / "starts"
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def boot(
        self,
        runner: SubprocessRunner,
        attempts: int,
        timeout: float = 60,
        progress: Progress | None = None,
    ) -> boottest.BootResult:
        log = self.root / "boot.log"
        request = boottest.BootRequest(Path("k.rpm"), "pv", timeout, log, attempts=attempts)
        result = boottest.BootResult("k.rpm", "pv", RELEASE, "PV", log=str(log))
        watch = boottest.Watcher.factory(TOKEN, "pv", progress or NullProgress())
        return boottest._boot([boottest.QEMU], request, result, watch, runner)


@pytest.mark.parametrize(
    ("boots", "attempts", "passed", "runs"),
    [
        ([TRIPLE_FAULT, [*XEN_BOOT, PV_MARKER]], 2, True, 2),  # killed before a line: again
        ([TRIPLE_FAULT, TRIPLE_FAULT, TRIPLE_FAULT], 2, False, 2),  # at most `attempts` boots
        ([TRIPLE_FAULT, [*XEN_BOOT, PV_MARKER]], 1, False, 1),  # one attempt by default
        # the guest had spoken: a crash of the kernel itself, never retried
        ([[*XEN_BOOT, *TRIPLE_FAULT[5:]], [*XEN_BOOT, PV_MARKER]], 3, False, 1),
    ],
)
def test_only_a_guest_killed_before_its_first_line_boots_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    boots: list[list[str]],
    attempts: int,
    passed: bool,
    runs: int,
) -> None:
    """Through the real runner: each hanging QEMU is stopped once its outcome settled
    (shortly after it powered off) and the next attempt really starts."""
    monkeypatch.setattr(boottest, "POWER_DOWN_GRACE_SECONDS", 0.2)
    hanging = [lines if lines[-1] == PV_MARKER else [*lines, POWERED_OFF] for lines in boots]
    qemu = ScriptedQemu(tmp_path, monkeypatch, hanging)
    result = qemu.boot(SubprocessRunner(), attempts)
    assert len(qemu.starts) == runs
    assert all(process_gone(pid) for pid in qemu.starts)
    assert result.passed is passed
    assert len(result.earlier_attempts) == runs - 1
    for n, earlier in enumerate(result.earlier_attempts, 1):
        assert earlier["failure"].startswith("Xen killed the guest: d1v0 Triple fault")
        assert Path(earlier["log"]) == tmp_path / f"boot.attempt{n}.log"
        assert "Triple fault" in Path(earlier["log"]).read_text()
    if passed:
        assert result.failure is None and result.guest_type == "PV"
    else:
        assert "Triple fault" in (result.failure or "")


def test_an_attempt_stopped_at_its_timeout_boots_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug of `--attempts 2`: stopping the first QEMU at the timeout retired the
    runner, so the second attempt was refused (StoppedError) instead of started."""
    qemu = ScriptedQemu(tmp_path, monkeypatch, [TRIPLE_FAULT, [*XEN_BOOT, PV_MARKER]])
    runner = SubprocessRunner()
    started = time.monotonic()
    result = qemu.boot(runner, attempts=2, timeout=3)
    first, second = qemu.starts
    assert 3 <= time.monotonic() - started < 20  # the first QEMU hung until its timeout
    assert process_gone(first) and process_gone(second)
    assert result.passed and result.guest_type == "PV"
    [earlier] = result.earlier_attempts
    assert earlier["failure"].startswith("Xen killed the guest: d1v0 Triple fault")
    first_log = Path(earlier["log"]).read_text().splitlines()
    assert first_log[0].startswith("$ cd ") and first_log[0].endswith(f" && {boottest.QEMU}")
    assert runner.run(["true"]).ok  # and the runner still runs commands


class InterruptOnFirstStage(NullProgress):
    """Ctrl-C, shortly after QEMU's console showed Xen starting."""

    def step(self, text: str) -> None:
        if text.startswith("Xen started"):
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_ctrl_c_during_a_boot_stops_everything_and_starts_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qemu = ScriptedQemu(tmp_path, monkeypatch, [TRIPLE_FAULT[:2], [*XEN_BOOT, PV_MARKER]])
    runner = SubprocessRunner()
    with pytest.raises(KeyboardInterrupt):
        qemu.boot(runner, attempts=2, progress=InterruptOnFirstStage())
    [pid] = qemu.starts
    assert process_gone(pid)
    with pytest.raises(StoppedError):
        runner.run(["true"])
    assert len(qemu.starts) == 1


def test_native_boots_expect_no_hypervisor() -> None:
    lines = [
        f"[    0.000000] Linux version {RELEASE} (kxen@kernel-xen)",
        f"kxen-boot-test {TOKEN} release={RELEASE} guest_type=none",
    ]
    result = _judge(_watch(lines, xen=False), "native")
    assert result.passed
    assert [s["stage"] for s in result.stages] == ["kernel started", "init ran"]


def test_qemu_is_stopped_at_the_timeout() -> None:
    watcher = boottest.Watcher(TOKEN, xen=True, progress=NullProgress())
    runner = SubprocessRunner()
    started = time.monotonic()
    argv = ["sh", "-c", "echo '(XEN) Xen version 4.17'; sleep 60 & wait"]
    completed = boottest._run_bounded(argv, runner, watcher, 1.5, Path("/dev/null"))
    assert completed is None and watcher.timed_out
    assert time.monotonic() - started < 15
    result = _judge(watcher)
    assert result.failure and "no marker within the timeout" in result.failure
    assert "(XEN) Xen version 4.17" in result.evidence
    left = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True).stdout
    assert left == ""


def _elf(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF" + b"\0" * 60)


def test_toolstack_programs_are_found_where_distributions_put_them(tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    wrapper = debian / "usr/sbin/xl"  # Debian's xen-utils-wrapper: a script, not the program
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/bin/sh\n")
    _elf(debian / "usr/lib/xen-4.17/bin/xl")
    fedora = tmp_path / "fedora"
    _elf(fedora / "usr/sbin/xl")
    found = pieces.XenPieces(Path(), Path(), Path(), debian, Path(), "test").tool("xl")
    assert found == debian / "usr/lib/xen-4.17/bin/xl"
    found = pieces.XenPieces(Path(), Path(), Path(), fedora, Path(), "test").tool("xl")
    assert found == fedora / "usr/sbin/xl"
    with pytest.raises(InputError, match="no xenstored program"):
        pieces.XenPieces(Path(), Path(), Path(), fedora, Path(), "test").tool("xenstored")


def test_dom0_module_tree_beside_debian_and_fedora_kernels(tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    (debian / "lib/modules/6.1.0-56-amd64").mkdir(parents=True)
    (debian / "boot").mkdir()
    assert pieces.dom0_modules_of(debian / "boot/vmlinuz-6.1.0-56-amd64") == (
        debian / "lib/modules/6.1.0-56-amd64"
    )
    fedora = tmp_path / "fedora/lib/modules/6.11.4-301.fc41.x86_64"
    (fedora / "kernel").mkdir(parents=True)
    assert pieces.dom0_modules_of(fedora / "vmlinuz") == fedora
    with pytest.raises(InputError, match="no module tree"):
        pieces.dom0_modules_of(tmp_path / "elsewhere/vmlinuz-1")
