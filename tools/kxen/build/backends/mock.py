"""The mock backend: one clean Fedora build root per arch.

mock leaves its logs (build.log, root.log, state.log, hw_info.log,
installed_pkgs.log), the binary RPMs and the rebuilt SRPM in the result dir it
is given, which here is the staging directory, so every one of them is
published. Several arches may build at once (`jobs`): each run gets its own
`--uniqueext` and result dir, and they share make's job slots (see smp_flags).
A failure is diagnosed the way koji does it: mock's exit code, then state.log
(did rpmbuild start?), then the first error lines of the log that matters.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kxen.arches import ARCHES
from kxen.build.backends.base import (
    BUILD_LOCALE,
    ArchResult,
    BuildRequest,
    RunnerBackend,
    first_errors,
)
from kxen.build.ccache import Ccache
from kxen.errors import InputError, MissingToolError
from kxen.support.fsutil import Reclaimed
from kxen.support.progress import Progress
from kxen.support.runner import Runner
from kxen.support.text import neutralise

DEFAULT_FEDORA = 41
OUTPUT_LOG = "mock-output.log"
"""mock's own stdout/stderr, beside the logs it writes into the result dir."""

# mock's exit codes (mockbuild/exception.py, and 7 for Ctrl-C in mock.py), in our words.
EXIT_MEANINGS = {
    1: "generic error (or rpmbuild failed)",
    2: "run without its setuid wrapper",
    3: "mock config error",
    4: "only some packages were built (--chain)",
    5: "mock refused the command line",
    6: "invalid arch for this config",
    7: "interrupted (Ctrl-C)",
    10: "rpmbuild phase failed",
    11: "a command (rpmbuild) timed out",
    20: "chroot error",
    25: "LVM error",
    30: "package manager error",
    31: "unknown external dependency",
    40: "bad SRPM or no results",
    50: "mode error (the mock command failed)",
    60: "build root locked",
    65: "LVM thin pool locked",
    70: "result dir not accessible",
    80: "unsharing namespaces failed",
    90: "bootstrap error",
    110: "unbalanced state calls (see state.log)",
    120: "weak dependency not installed",
    129: "killed by SIGHUP",
    141: "killed by SIGPIPE",
    143: "killed by SIGTERM",
}
_DNF_PROBLEM = re.compile(r"(No match for argument: .*|nothing provides .*)")


def default_roots(overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Root (mock config) per arch: Fedora's, unless the manifest's `mock.roots` says."""
    roots = {a.name: f"fedora-{DEFAULT_FEDORA}-{a.mock_config_arch}" for a in ARCHES.values()}
    roots.update(dict(overrides))
    return roots


def choose_roots(
    arches: list[str], defaults: dict[str, str], overrides: list[str]
) -> dict[str, str]:
    """Apply `--root CONFIG` (only with one arch) and `--root ARCH=CONFIG`."""
    roots = {arch: defaults[arch] for arch in arches if arch in defaults}
    for item in overrides:
        arch, equals, config = item.partition("=")
        if not equals:
            if len(arches) != 1:
                raise InputError(
                    f"--root {item}: with several arches, say which: --root ARCH={item}"
                )
            arch, config = arches[0], item
        if arch not in arches:
            raise InputError(f"--root {item}: {arch} is not an arch being built")
        if not config:
            raise InputError(f"--root {item}: empty mock config")
        roots[arch] = config
    missing = [arch for arch in arches if arch not in roots]
    if missing:
        raise InputError(f"no mock root for {', '.join(missing)}: pass --root ARCH=CONFIG")
    return roots


def smp_flags(cpus: int, jobs: int) -> str:
    """make's job flags for each of `jobs` concurrent builds on `cpus` CPUs.

    Concurrent builds share the CPUs through make's load limit rather than a fixed split:
    each may run up to `cpus` jobs, but make (4.3+ reads the runnable count in
    /proc/loadavg) starts none while `cpus` processes are runnable. So a build in a
    single-threaded phase (unpacking, packaging, cleaning up) leaves its slots to the
    other's compile instead of idling them, and the CPUs are not oversubscribed."""
    if jobs <= 1:
        return f"-j{cpus}"
    return f"-j{cpus} -l{cpus}"


@dataclass(frozen=True)
class Diagnosis:
    error: str
    log: str
    lines: list[str]


def diagnose(code: int, resultdir: Path, root: str) -> Diagnosis:
    """Why a mock run failed, from its exit code, state.log and the log that matters."""
    meaning = EXIT_MEANINGS.get(code, "unknown exit status")
    started_rpmbuild = "Start: rpmbuild" in _read(resultdir / "state.log")
    root_lines = _read(resultdir / "root.log").splitlines()
    build_lines = _read(resultdir / "build.log").splitlines()
    if code == 30:
        problems = [m[1] for line in root_lines if (m := _DNF_PROBLEM.search(line))]
        if problems:
            what = problems[0].removeprefix("No match for argument: ")
            return Diagnosis(
                f"missing build dependency: {neutralise(what)}", "root.log", _neutral(problems[:8])
            )
    if code == 60:
        return Diagnosis(
            f"build root {root} is locked by another process", "root.log", _neutral(root_lines[-8:])
        )
    if build_lines and (code == 10 or (code == 1 and started_rpmbuild)):
        return Diagnosis(
            f"mock exited with status {code} ({meaning})", "build.log", first_errors(build_lines)
        )
    tail = root_lines[-8:] or _read(resultdir / OUTPUT_LOG).splitlines()[-8:]
    return Diagnosis(f"mock exited with status {code} ({meaning})", "root.log", _neutral(tail))


def _neutral(lines: list[str]) -> list[str]:
    return [neutralise(line) for line in lines]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class MockBackend(RunnerBackend):
    name = "mock"

    def __init__(
        self,
        runner: Runner,
        roots: dict[str, str],
        *,
        jobs: int = 1,
        cpus: int | None = None,
        no_clean: bool = False,
        extra_args: tuple[str, ...] = (),
        unique_prefix: str | None = None,
        ccache: Ccache | None = None,
    ) -> None:
        self.runner = runner
        self.roots = roots
        self.jobs = max(1, jobs)
        self.cpus = cpus or os.cpu_count() or 1
        self.no_clean = no_clean
        self.extra_args = extra_args
        self.unique_prefix = unique_prefix or f"kxen{os.getpid()}"
        self.ccache = ccache

    def check_host(self, arches: list[str]) -> None:
        if not shutil.which("mock"):
            raise MissingToolError("the mock backend needs mock on the host (PATH)")
        missing = [arch for arch in arches if arch not in self.roots]
        if missing:
            raise InputError(f"no mock root for {', '.join(missing)}")
        if self.ccache is not None:  # mock's plugin installs ccache into the build root
            self.ccache.prepare()

    def reclaim(self) -> list[Reclaimed]:
        """mock cleans its own build roots (and its result dirs are kxen's staging)."""
        return []

    def command(self, request: BuildRequest) -> list[str]:
        argv = [
            "mock",
            "-r",
            self.roots[request.arch],
            "--rebuild",
            str(request.srpm),
            "--resultdir",
            str(request.staging),
            "--uniqueext",
            self._unique(request),
        ]
        if self.no_clean:
            argv.append("--no-cleanup-after")
        argv += [
            "--isolation=simple",
            "--no-bootstrap-image",
            "--define",
            f"_smp_mflags {smp_flags(self.cpus, self.jobs)}",
            *self._ccache_args(request),
            *self.extra_args,
        ]
        return argv

    def _unique(self, request: BuildRequest) -> str:
        """The build root's --uniqueext: one per concurrent run, and the name its ccache
        stats are kept under."""
        return f"{self.unique_prefix}-{request.arch}"

    def _ccache_args(self, request: BuildRequest) -> list[str]:
        """mock's ccache plugin on kxen's cache, and the spec's ccache settings.

        The plugin bind-mounts the cache as /var/tmp/ccache, sets CCACHE_DIR (and
        CCACHE_UMASK, CCACHE_NOHASHDIR) and installs ccache; the login shell mock runs
        rpmbuild in puts Fedora's /usr/lib64/ccache first on PATH (/etc/profile.d/ccache.sh).
        It sets no base dir, sloppiness or stats log, and mock gives the build root none of
        kxen's environment: those come through the spec's macro (see kxen.build.ccache),
        with the build root's tree as base dir."""
        if self.ccache is None:
            return []
        return [*self.ccache.mock_options(), *self.ccache.spec_define(self._unique(request))]

    def build(self, request: BuildRequest, progress: Progress) -> ArchResult:
        started = time.monotonic()
        root = self.roots[request.arch]
        progress.step(f"mock -r {root}")
        result = self.runner.run(
            self.command(request),
            env=BUILD_LOCALE,
            log_path=request.staging / OUTPUT_LOG,
            check=False,
        )
        seconds = time.monotonic() - started
        stats = self.ccache.collect(self._unique(request), request.staging) if self.ccache else None
        logs = sorted(p.name for p in request.staging.glob("*.log"))
        if not result.ok:
            found = diagnose(result.returncode, request.staging, root)
            return ArchResult(
                request.arch,
                ok=False,
                seconds=seconds,
                logs=[found.log, *(name for name in logs if name != found.log)],
                error=found.error,
                error_lines=found.lines,
                ccache=stats,
            )
        rpms = sorted(
            p.name for p in request.staging.glob("*.rpm") if not p.name.endswith(".src.rpm")
        )
        return ArchResult(
            request.arch, ok=True, seconds=seconds, rpms=rpms, logs=logs, ccache=stats
        )
