"""The steps of every arch-by-flavour cell of a nightly, each with its status, duration
and log; one failing cell does not stop the others.

Per run: `config check --strict` (all targets at once, split per cell) and `patches
check` (the series is the same for every cell). Per flavour: the SRPM. Per cell: the
build (each arch on its own, so that one arch's failure leaves the other built),
`verify`, and the boot tests (x86_64 as a PV and a PVH domU; an arch no Xen mode boots
under emulation, such as i686, natively). A step whose input is missing (no SRPM, no
RPM) is SKIP. A failure that is the kernel's (a config value lost, a patch, a compile
error, a failed check or boot) is FAIL; one that is not (a tool missing, a full disk, a
hub away, a bug in kxen) is ERROR.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kxen import arches, pipeline
from kxen.build.backends.base import Backend
from kxen.config import fragments
from kxen.config import operations as config_ops
from kxen.errors import ExitCode, KxenError
from kxen.inspect import boottest
from kxen.inspect import verify as verify_module
from kxen.nightly import compare
from kxen.nightly.model import Ccache, Cell, Rpm, Status, Step
from kxen.patches import operations as patch_ops
from kxen.project import Project, UpstreamChoice
from kxen.support.fsutil import atomic_write_text, scratch_dir
from kxen.support.text import neutralise
from kxen.upstream.origin import Upstream

FAILURES = {
    ExitCode.INVALID_INPUT,
    ExitCode.CONFIG,
    ExitCode.BUILD,
    ExitCode.PATCH,
    ExitCode.VERIFY,
    ExitCode.BOOT,
}
"""Exit codes that mean the kernel (its configs, patches, code) failed: FAIL, not ERROR."""
EXCERPT_LINES = 12
BOOT_TIMEOUT = 300.0
BOOT_ATTEMPTS = 2
"""A guest Xen kills before its first line boots again once (see `kxen boot-test`)."""
CCACHE_STATS = "ccache.json"
"""What the local and mock backends leave beside a build's RPMs when ccache is used."""


@dataclass
class Matrix:
    project: Project
    upstream: Upstream
    choice: UpstreamChoice
    arches: list[str]
    flavours: list[str]
    boot: bool
    backend: Callable[[], Backend]
    run_dir: Path
    """The run's staging directory: logs, SRPMs, builds, configs."""
    previous_configs: Path | None = None
    """The previous run's configs/, for the symbols that changed."""
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def run(self) -> list[Cell]:
        self.cells = {
            (arch, flavour): Cell(arch, flavour)
            for flavour in self.flavours
            for arch in self.arches
        }
        self._config_check()
        self._patches_check()
        for flavour in self.flavours:
            srpm = self._srpm(flavour)
            for arch in self.arches:
                self._cell(self.cells[(arch, flavour)], srpm)
        return list(self.cells.values())

    # --- per run ----------------------------------------------------------------

    def _config_check(self) -> None:
        targets = [fragments.Target(a, f) for f in self.flavours for a in self.arches]
        with self._step(list(self.cells.values()), "config-check") as steps:
            report = config_ops.check_configs(self.project, self.upstream, targets)
            failing = report.failing()
            for cell, step in zip(self.cells.values(), steps, strict=True):
                target = fragments.Target(cell.arch, cell.flavour)
                mine = [f.describe() for f in failing if f.target == target]
                found = [f.describe() for f in report.findings if f.target == target]
                self._write_log(cell, step, found)
                step.summary = f"{len(found)} finding(s), {len(mine)} failing"
                if mine:
                    step.status, step.excerpt = Status.FAIL, mine[:EXCERPT_LINES]

    def _patches_check(self) -> None:
        with self._step(list(self.cells.values()), "patches-check") as steps:
            report = patch_ops.check_patches(self.project, self.upstream)
            for cell, step in zip(self.cells.values(), steps, strict=True):
                step.summary = f"{report.total} patch(es) apply"
                self._write_log(cell, step, report.lines() or ["the series is empty"])

    # --- per flavour -----------------------------------------------------------------

    def _srpm(self, flavour: str) -> Path | None:
        cells = [self.cells[(arch, flavour)] for arch in self.arches]
        srpm: Path | None = None
        with self._step(cells, "srpm") as steps, scratch_dir(self.run_dir, ".configs-") as work:
            prepared = pipeline.prepare(self.project, flavour, self.choice, work)
            srpm = pipeline.build_srpm(self.project, prepared, self.run_dir / "srpm" / flavour)
            self._keep_configs(cells, prepared.config_files)
            made = [f"SRPM: {srpm.relative_to(self.run_dir)}"]
            made += [f"config: configs/{path.name}" for path in prepared.config_files]
            for cell, step in zip(cells, steps, strict=True):
                self._write_log(cell, step, made)
            _say(steps, srpm.name)
        return srpm

    def _keep_configs(self, cells: list[Cell], config_files: tuple[Path, ...]) -> None:
        """Keep the configs (the next run compares with them) and note what changed."""
        kept = self.run_dir / "configs"
        for path in config_files:
            text = path.read_text()
            atomic_write_text(kept / path.name, text)
            before = self.previous_configs / path.name if self.previous_configs else None
            old = before.read_text() if before and before.is_file() else None
            for cell in cells:
                if f"-{cell.arch}-" in path.name:
                    cell.config_changes = compare.config_changes(old, text)

    # --- per cell ---------------------------------------------------------------------

    def _cell(self, cell: Cell, srpm: Path | None) -> None:
        rpm = self._build(cell, srpm)
        if rpm is None:
            for name in ("verify", *self._boot_steps(cell)):
                cell.steps.append(Step(name, Status.SKIP, summary="nothing was built"))
            return
        with self._step([cell], "verify") as (step,):
            packages = [rpm.parent / r.name for r in cell.rpms]
            with scratch_dir(self.project.cache, ".verify-") as scratch:
                report = verify_module.verify(
                    self.project, packages, cell.flavour, self.choice, scratch
                )
            self._write_log(cell, step, [c.describe() for c in report.checks])
            if not report.ok:
                raise verify_module.VerifyFailed(report)
            step.summary = f"{len(report.checks)} checks passed"
        for boot in self._boot_steps(cell):
            self._boot(cell, rpm, boot.removeprefix("boot-"))

    def _build(self, cell: Cell, srpm: Path | None) -> Path | None:
        """Build the cell's arch; its kernel RPM if it built."""
        if srpm is None:
            cell.steps.append(Step("build", Status.SKIP, summary="no SRPM"))
            return None
        results_root = self.run_dir / "build"
        nvr = srpm.name.removesuffix(".src.rpm")
        arch_dir = results_root / nvr / cell.arch
        with self._step([cell], "build") as (step,):
            built = pipeline.build(
                self.backend(), srpm, [cell.arch], results_root, self.project.progress
            )
            step.summary = f"built in {built.seconds:.0f}s"
        log = arch_dir / "build.log"
        if not log.is_file():
            log = arch_dir.with_name(f"failed-{cell.arch}") / "build.log"
        if log.is_file():
            cell.steps[-1].log = self._relative(log)
            cell.warnings = _warnings(log)
        kernel = arch_dir / f"{nvr}.{cell.arch}.rpm"
        if not kernel.is_file():
            return None
        cell.nvr = nvr
        cell.rpms = [
            Rpm(p.name, p.stat().st_size)
            for p in sorted(arch_dir.glob("*.rpm"))
            if not p.name.endswith(".src.rpm")
        ]
        cell.ccache = _ccache(arch_dir / CCACHE_STATS)
        return kernel

    def _boot_steps(self, cell: Cell) -> list[str]:
        if not self.boot:
            return []
        modes = [m for m in arches.get(cell.arch).boot_modes if m != arches.NATIVE]
        return [f"boot-{mode}" for mode in modes or [arches.NATIVE]]

    def _boot(self, cell: Cell, rpm: Path, mode: str) -> None:
        log = self.run_dir / "logs" / _cell_dir(cell) / f"boot-{mode}.log"
        with self._step([cell], f"boot-{mode}") as (step,):
            request = boottest.BootRequest(
                package=rpm, mode=mode, timeout=BOOT_TIMEOUT, log=log, attempts=BOOT_ATTEMPTS
            )
            project = self.project
            result = boottest.boot_test(request, project.cache, project.runner, project.progress)
            step.log = self._relative(log)
            if not result.passed:
                raise boottest.BootFailed(result)
            step.summary = f"booted as {result.guest_type} in {result.seconds:.0f}s"

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _step(self, cells: list[Cell], name: str) -> Iterator[list[Step]]:
        """One step of `cells` (one Step in each, yielded in their order): PASS unless the
        block says otherwise or raises (FAIL or ERROR, by what it raised)."""
        self.project.progress.phase(f"nightly {name}", ", ".join(c.name for c in cells))
        steps = [Step(name, Status.PASS) for _ in cells]
        for cell, step in zip(cells, steps, strict=True):
            cell.steps.append(step)
        started = time.monotonic()
        try:
            yield steps
        except KxenError as error:
            status = Status.FAIL if error.exit_code in FAILURES else Status.ERROR
            _failed(steps, status, error.message, error.details)
        except OSError as error:
            _failed(steps, Status.ERROR, str(error), [])
        except Exception as error:  # a bug in kxen: the run goes on, the cell shows it
            message = f"unexpected failure inside kxen: {type(error).__name__}: {error}"
            _failed(steps, Status.ERROR, message, traceback.format_exception(error))
        for step in steps:
            step.seconds = round(time.monotonic() - started, 1)

    def _write_log(self, cell: Cell, step: Step, lines: list[str]) -> None:
        path = self.run_dir / "logs" / _cell_dir(cell) / f"{step.name}.log"
        atomic_write_text(path, "".join(f"{line}\n" for line in lines))
        step.log = self._relative(path)

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.run_dir))


def _say(steps: list[Step], summary: str) -> None:
    for step in steps:
        step.summary = summary


def _failed(steps: list[Step], status: Status, message: str, details: list[str]) -> None:
    lines = [neutralise(line) for line in details[-EXCERPT_LINES:]]
    for step in steps:
        step.status, step.summary, step.excerpt = status, neutralise(message), list(lines)


def _cell_dir(cell: Cell) -> str:
    return f"{cell.arch}-{cell.flavour}"


def _warnings(log: Path) -> int:
    with log.open("rb") as handle:
        return sum(1 for line in handle if b": warning: " in line)


def _ccache(path: Path) -> Ccache | None:
    try:
        data = json.loads(path.read_text())
        return Ccache(int(data["hits"]), int(data["misses"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
