"""`kxen boot-test`: boot the kernel of a built RPM as a Xen domU under a real Xen in QEMU.

QEMU (software emulation) boots Xen, Xen starts dom0 (a stock kernel with a busybox
initramfs carrying the toolstack), dom0 creates the guest from the RPM's kernel, and the
guest's /init prints a marker with its kernel release and Xen's view of it
(/sys/hypervisor/guest_type) and powers off. The test passes only on that marker with
the expected guest type; Xen's and libxl's errors and kernel panics are reported as
they appear, and QEMU is stopped at the timeout whatever state it is in.
`native` boots the same kernel on QEMU's emulated hardware without Xen.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kxen import arches
from kxen.errors import ExitCode, InputError, KxenError
from kxen.inspect.boottest import images
from kxen.inspect.boottest.pieces import PieceChoice, XenPieces, xen_pieces
from kxen.support.fsutil import scratch_dir
from kxen.support.progress import Progress
from kxen.support.runner import Completed, Runner

# What the guest's /init finds in /sys/hypervisor/guest_type per mode (none: no Xen).
EXPECTED_GUEST_TYPE = {
    **{guest.name: guest.guest_type for guest in arches.guest_types()},
    arches.NATIVE: "none",
}
MODES = arches.boot_modes()
QEMU = "qemu-system-x86_64"
# Measured on a 2-core machine without KVM: `-cpu max` crashes dom0 (SMAP under
# emulation); PVH needs nested SVM with nested paging to give Xen HAP.
XEN_CPU = "qemu64,+svm,+npt"
XEN_COMMAND_LINE = (
    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=1024M,max:1024M"
)
DOM0_COMMAND_LINE = "console=hvc0 earlyprintk=xen rdinit=/init"
GUEST_COMMAND_LINE = {
    "xen": "console=hvc0 rdinit=/init panic=1",
    "native": "console=ttyS0 rdinit=/init panic=-1",
}
# After the outcome is known, how long QEMU gets to power off by itself before it is stopped.
SETTLE_SECONDS = 20.0
POWER_DOWN_GRACE_SECONDS = 3.0
PANIC_CONTEXT_BEFORE = 3
PANIC_LINES_AFTER = 8
CRASH_DUMP_LINES = 14


class BootFailed(KxenError):
    """The kernel did not boot to its marker with the expected guest type."""

    exit_code = ExitCode.BOOT

    def __init__(self, result: BootResult) -> None:
        super().__init__(
            f"{result.package}: boot-test --mode {result.mode} failed: {result.failure}"
            + (
                f" (in all {len(result.earlier_attempts) + 1} attempts)"
                if result.earlier_attempts
                else ""
            ),
            details=result.evidence,
        )
        self.result = result
        self.payload = {"result": asdict(result)}


@dataclass
class BootResult:
    package: str
    mode: str
    kernel_release: str
    expected_guest_type: str
    passed: bool = False
    guest_type: str | None = None
    failure: str | None = None
    evidence: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""
    pieces: dict[str, str] = field(default_factory=dict)
    # boots Xen killed before the guest printed a line, retried (see BootRequest.attempts)
    earlier_attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BootRequest:
    package: Path
    mode: str
    timeout: float
    log: Path
    append: str = ""
    pieces: PieceChoice = field(default_factory=PieceChoice)
    # Under QEMU's emulation a guest very rarely dies of a triple fault before its first
    # console line, and boots in the next run; a kernel that really crashes does so every time.
    attempts: int = 1


def boot_test(request: BootRequest, cache: Path, runner: Runner, progress: Progress) -> BootResult:
    if request.mode not in MODES:
        raise InputError(f"--mode {request.mode}: expected one of {', '.join(MODES)}")
    if request.timeout <= 0:
        raise InputError(f"--timeout {request.timeout}: must be positive")
    if request.attempts < 1:
        raise InputError(f"--attempts {request.attempts}: must be at least 1")
    with scratch_dir(cache, ".boot-test-") as scratch:
        progress.phase("boot-test", f"kernel of {request.package.name}")
        kernel, arch, release = _kernel_of(request.package, scratch, runner)
        token = secrets.token_hex(8)
        flavour = "native" if request.mode == "native" else "xen"
        guest = images.Guest(
            arch=arch,
            kernel=kernel,
            initramfs=images.guest_initramfs(arch, token, cache, runner, progress),
            cmdline=" ".join(filter(None, [GUEST_COMMAND_LINE[flavour], request.append])),
        )
        result = BootResult(
            package=request.package.name,
            mode=request.mode,
            kernel_release=release,
            expected_guest_type=EXPECTED_GUEST_TYPE[request.mode],
            log=str(request.log),
        )
        if request.mode == "native":
            argv = _native_qemu(guest, scratch)
        else:
            pieces = xen_pieces(request.pieces, cache, runner, progress)
            result.pieces = {k: str(v) for k, v in vars(pieces).items()}
            progress.phase("boot-test", "assembling dom0's initramfs")
            argv = _xen_qemu(pieces, guest, request.mode, scratch)
        progress.phase(
            "boot-test", f"booting {release} as {request.mode} (timeout {request.timeout:.0f}s)"
        )
        return _boot(argv, request, result, Watcher.factory(token, request.mode, progress), runner)


def _boot(
    argv: list[str],
    request: BootRequest,
    result: BootResult,
    watch: Callable[[], Watcher],
    runner: Runner,
) -> BootResult:
    """Run QEMU until the guest's outcome is known; again, up to request.attempts times,
    while Xen kills the guest before it printed a line. Earlier logs get `.attemptN`."""
    request.log.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, request.attempts + 1):
        watcher = watch()
        request.log.unlink(missing_ok=True)
        completed = _run_bounded(argv, runner, watcher, request.timeout, request.log)
        watcher.judge(result, completed)
        if result.passed or not watcher.killed_before_console or attempt == request.attempts:
            break
        kept = request.log.with_name(f"{request.log.stem}.attempt{attempt}{request.log.suffix}")
        request.log.replace(kept)
        result.earlier_attempts.append(
            {"failure": result.failure, "evidence": result.evidence, "log": str(kept)}
        )
        watcher.progress.step(f"attempt {attempt}: {result.failure}; booting again")
    return result


def _kernel_of(package: Path, scratch: Path, runner: Runner) -> tuple[Path, str, str]:
    """The RPM's /boot/vmlinuz-*, its arch and kernel release."""
    from kxen.inspect.rpmfile import extract_payload, rpm_header

    try:
        header = rpm_header(package)
    except Exception as exc:  # rpm raises plain errors for non-RPM files
        raise InputError(f"{package}: not a readable RPM ({exc})") from exc
    arch = str(header["arch"])
    bootable = [known.name for known in arches.known() if known.boot_modes]
    if arch not in bootable:
        raise InputError(f"{package}: arch {arch}; boot-test boots {' or '.join(bootable)} kernels")
    root = scratch / "payload"
    extract_payload(package, root, runner)
    found = sorted((root / "boot").glob("vmlinuz-*"))
    if len(found) != 1:
        raise InputError(f"{package}: expected one /boot/vmlinuz-*, found {len(found)}")
    return found[0], arch, found[0].name.removeprefix("vmlinuz-")


def _xen_qemu(pieces: XenPieces, guest: images.Guest, mode: str, scratch: Path) -> list[str]:
    dom0_image = scratch / "dom0.img"
    dom0_image.write_bytes(images.dom0_initramfs(pieces, guest, mode))
    return [
        QEMU,
        *_qemu_machine("2048", "2", XEN_CPU),
        "-kernel",
        str(pieces.hypervisor),
        "-append",
        XEN_COMMAND_LINE,
        "-initrd",
        # multiboot modules, comma separated, each "file arguments"
        f"{_qemu_escape(pieces.dom0_kernel)} {DOM0_COMMAND_LINE},{_qemu_escape(dom0_image)}",
    ]


def _native_qemu(guest: images.Guest, scratch: Path) -> list[str]:
    initramfs = scratch / "guest.img"
    initramfs.write_bytes(guest.initramfs)
    return [
        QEMU,
        *_qemu_machine("512", "1", "qemu64"),
        "-kernel",
        str(guest.kernel),
        "-initrd",
        str(initramfs),
        "-append",
        guest.cmdline,
    ]


def _qemu_machine(memory: str, cpus: str, cpu: str) -> list[str]:
    return [
        "-accel",
        "tcg,thread=multi",
        "-m",
        memory,
        "-smp",
        cpus,
        "-cpu",
        cpu,
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]


def _qemu_escape(path: Path) -> str:
    return str(path).replace(",", ",,")


def _run_bounded(
    argv: list[str], runner: Runner, watcher: Watcher, timeout: float, log: Path
) -> Completed | None:
    """QEMU until it exits, the outcome has settled, or the timeout; None when it was stopped.

    Only this QEMU is stopped then, so that the runner starts the next attempt; an
    interruption (Ctrl-C) stops everything and lets nothing start any more."""
    deadline = time.monotonic() + timeout
    with runner.start(argv, on_line=watcher.feed, log_path=log) as qemu:
        try:
            while not qemu.ended_within(0.2):
                now = time.monotonic()
                if now >= deadline or now >= watcher.settle_by:
                    watcher.stopped_at = now
                    watcher.timed_out = now >= deadline and watcher.settle_by == float("inf")
                    qemu.stop()
                    break
        except BaseException:
            runner.stop_all()
            raise
        completed = qemu.wait(check=False)
    return None if watcher.stopped_at else completed


_ERROR_LINE = re.compile(
    r"libxl: error|xc: error|xc_dom_\w+|kxen-dom0: (xl create failed|insmod)|xenconsoled: |"
    r"\(XEN\).*(Panic|FATAL)"
)
_POWERED_DOWN = re.compile(
    r"reboot: (Power down|System halted)|\(XEN\) Preparing system for ACPI S5"
)
_PANIC = re.compile(r"Kernel panic - not syncing|\(XEN\) \*+ Panic")
# Xen kills a guest that faults beyond recovery before it can say anything itself (an HVM/PVH
# vCPU's triple fault, a PV domain_crash); dom0 is d0, so only d1 and up are guests.
_GUEST_CRASH = re.compile(
    r"\(XEN\) (d[1-9]\d*v\d+ Triple fault|Domain [1-9]\d* \(vcpu#\d+\) crashed)"
)


class Watcher:
    """Reads QEMU's serial console line by line: stage times, marker, errors, panics."""

    def __init__(self, token: str, xen: bool, progress: Progress) -> None:
        self.marker = re.compile(rf"kxen-boot-test {token} release=(\S*) guest_type=(\S*)")
        self.stage_patterns = _XEN_STAGES if xen else _NATIVE_STAGES
        self.progress = progress
        self.started = time.monotonic()
        self.stages: dict[str, float] = {}
        self.found: tuple[str, str] | None = None
        self.errors: list[str] = []
        self.panic: list[str] = []
        self._panic_left = 0
        self.crash: list[str] = []
        self._dumping = False
        self.guest_spoke = False
        self.recent: deque[str] = deque(maxlen=40)
        self.settle_by = float("inf")
        self.stopped_at: float | None = None
        self.timed_out = False

    def feed(self, raw: str) -> None:
        line = raw.replace("\r", "").rstrip()
        now = time.monotonic() - self.started
        for stage, pattern in self.stage_patterns:
            if stage not in self.stages and pattern.search(line):
                self.stages[stage] = now
                self.progress.step(f"{stage} ({now:.1f}s)")
                break
        self.guest_spoke = self.guest_spoke or line.startswith("[domU]")
        match = self.marker.search(line)
        if match and self.found is None:
            self.found = (match[1], match[2])
            self._settle()
        self._dumping = (
            self._dumping and line.startswith("(XEN)") and len(self.crash) < CRASH_DUMP_LINES
        )
        if self._panic_left:
            if line.startswith("[domU]") or not self.panic[-1].startswith("[domU]"):
                self.panic.append(line)  # a guest's panic: its own lines, not dom0's
            self._panic_left -= 1
        elif _PANIC.search(line) and not self.panic:
            self.panic = [*list(self.recent)[-PANIC_CONTEXT_BEFORE:], line]
            self._panic_left = PANIC_LINES_AFTER
            self._settle()
        elif self._dumping:
            self.crash.append(line)  # Xen's dump of the dead vCPU
        elif _GUEST_CRASH.search(line) and not self.crash:
            self.crash = [line]
            self._dumping = True
            self._settle()
        elif _ERROR_LINE.search(line):
            self.errors.append(line)
            if "xl create failed" in line:
                self._settle()
        if "kxen-dom0: domain gone" in line:
            self._settle()
        if _POWERED_DOWN.search(line) and not line.startswith("[domU]"):
            # the machine's last kernel is done; without ACPI power-off QEMU would idle on
            self._settle(POWER_DOWN_GRACE_SECONDS)
        self.recent.append(line)

    @classmethod
    def factory(cls, token: str, mode: str, progress: Progress) -> Callable[[], Watcher]:
        return lambda: cls(token, xen=mode != "native", progress=progress)

    @property
    def killed_before_console(self) -> bool:
        """Xen killed the guest before its kernel printed its first line."""
        return bool(self.crash) and not self.guest_spoke

    def _settle(self, seconds: float = SETTLE_SECONDS) -> None:
        self.settle_by = min(self.settle_by, time.monotonic() + seconds)

    def judge(self, result: BootResult, completed: Completed | None) -> None:
        end = (self.stopped_at or time.monotonic()) - self.started
        result.passed, result.guest_type, result.failure, result.evidence = False, None, None, []
        result.seconds = round(end, 1)
        result.stages = [{"stage": s, "seconds": round(t, 1)} for s, t in self.stages.items()]
        if self.found:
            release, guest_type = self.found
            result.guest_type = guest_type
            if release != result.kernel_release:
                result.failure = (
                    f"the marker came from kernel {release}, not {result.kernel_release}"
                )
            elif guest_type != result.expected_guest_type:
                result.failure = (
                    f"guest_type is {guest_type}, expected {result.expected_guest_type}"
                )
            else:
                result.passed = True
                return
            result.evidence = self.errors[:10]
        elif self.panic:
            result.failure = "the kernel panicked"
            result.evidence = self.panic
        elif self.crash:
            result.failure = "Xen killed the guest: " + self.crash[0].removeprefix("(XEN) ")
            result.evidence = self.crash
        elif self.errors:
            result.failure = self._creation_failure()
            result.evidence = self.errors[:20]
        elif self.timed_out:
            result.failure = (
                f"no marker within the timeout ({result.seconds:.0f}s); last lines below"
            )
            result.evidence = list(self.recent)[-15:]
        else:
            status = completed.returncode if completed else "stopped"
            result.failure = f"QEMU ended (status {status}) without the guest's marker"
            result.evidence = list(self.recent)[-15:]

    def _creation_failure(self) -> str:
        if any("xc_dom_" in e or "xc: error" in e for e in self.errors):
            return "Xen's domain builder rejected the kernel"
        if any("xl create failed" in e for e in self.errors):
            return "xl create failed"
        return "dom0 reported errors"


_XEN_STAGES = (
    ("Xen started", re.compile(r"\(XEN\) Xen version")),
    ("dom0 kernel started", re.compile(r"^(?!\[domU\]).*Linux version")),
    ("dom0 toolstack started", re.compile(r"kxen-dom0: toolstack starting")),
    ("guest created", re.compile(r"kxen-dom0: domain created")),
    ("guest kernel started", re.compile(r"^\[domU\].*Linux version")),
    ("guest init ran", re.compile(r"kxen-boot-test \S+ release=")),
    ("guest gone", re.compile(r"kxen-dom0: domain gone")),
)
_NATIVE_STAGES = (
    ("kernel started", re.compile(r"Linux version")),
    ("init ran", re.compile(r"kxen-boot-test \S+ release=")),
)
