"""The koji backend: the hub builds, kxen follows the task tree and collects each arch.

Started on a local SRPM it uploads it and submits a scratch build (`kxen scratch-build`);
on an SCM URL, a release build (`kxen build`); on a task, it takes a build already on
the hub (`kxen koji download`). The run's NVR is the SRPM's the hub made, known once
its `srpm` child task closed; the SRPM is downloaded once from that task, and each
`buildArch` child is yielded as it finishes: a closed one's RPMs and logs, a failed
one's logs, are downloaded when pipeline collects it.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from pathlib import Path
from typing import Any

from kxen.build.backends.base import ArchBuild, ArchResult, Scm, Source, Task
from kxen.build.backends.kojiclient import (
    TAILED_LOGS,
    KojiDriver,
    Output,
    TaskTree,
    TaskView,
    log_tail,
    scratch_opts,
    tail_lines,
)
from kxen.errors import BuildError, InputError
from kxen.support.fsutil import Reclaimed
from kxen.support.progress import Progress

SRPM_LABEL = "srpm"
"""The label of the build task's child that makes the SRPM (rebuildSRPM, buildSRPMFromSCM)."""
ARCH_METHOD = "buildArch"


class KojiBackend:
    name = "koji"
    jobs = 1
    """The hub builds every arch at once; kxen downloads one arch at a time."""

    def __init__(
        self,
        driver: KojiDriver,
        target: str | None = None,
        *,
        package: str | None = None,
        cancel_on_interrupt: bool = False,
    ) -> None:
        """`target`: where new builds go (none: only tasks already on the hub are taken);
        `package`: checked in the destination tag's package list (release builds)."""
        self.driver = driver
        self.target = target
        self.package = package
        self.cancel_on_interrupt = cancel_on_interrupt

    def check_host(self, arches: list[str]) -> None:
        """Log in and check the target (and the package list) before anything is built
        or uploaded; taking a task already on the hub needs neither."""
        if self.target is None:
            return
        self.driver.login()
        target = self.driver.check_target(self.target)
        if self.package is not None:
            self.driver.check_package(target, self.package)

    def reclaim(self) -> list[Reclaimed]:
        """Nothing of a koji build lives on this machine but kxen's staging."""
        return []

    def stop(self) -> None:
        """No process runs here; the hub's build goes on unless `cancel_on_interrupt`."""

    def start(self, source: Source, arches: list[str], progress: Progress) -> KojiRun:
        if isinstance(source, Task):
            return self._attach(source.id)
        if self.target is None:
            raise InputError("a koji build needs a target")
        if isinstance(source, Scm):
            submitted = source.url
            task_id = self.driver.submit(submitted, self.target, {})
        else:
            submitted = self.driver.upload(source)
            task_id = self.driver.submit(submitted, self.target, scratch_opts(arches))
        return KojiRun(self.driver, task_id, submitted, self.cancel_on_interrupt)

    def _attach(self, task_id: int) -> KojiRun:
        tree = self.driver.tree(task_id)
        if tree.root.method != "build":
            raise InputError(f"koji task {task_id} is a {tree.root.method} task, not a build")
        if not tree.done:
            follow = self.driver.profile.command("watch", task_id)
            raise BuildError(
                f"koji task {task_id} is {tree.root.state}: nothing to download yet "
                f"(follow it with: {follow})"
            )
        return KojiRun(self.driver, task_id, None, self.cancel_on_interrupt)


class KojiRun:
    """One build task on the hub: its NVR, its SRPM, then each arch as it finishes."""

    def __init__(
        self, driver: KojiDriver, task_id: int, submitted: str | None, cancel_on_interrupt: bool
    ) -> None:
        self.driver = driver
        self.task_id = task_id
        self.cancel_on_interrupt = cancel_on_interrupt
        self.record: dict[str, Any] = {"hub": driver.profile.server, "task_id": task_id}
        if submitted is not None:
            self.record["source"] = submitted
        self._srpm: Output | None = None

    def nvr(self) -> str:
        """Follows the task until its SRPM is made; raises why not if the build ended
        without one (RemoteBuildFailed, canceled)."""
        with self.driver.detaching(self.task_id, self.cancel_on_interrupt):
            for tree in self.driver.follow(self.task_id):
                self._srpm = self._made_srpm(tree)
                if self._srpm is not None:
                    return self._srpm.name.removesuffix(".src.rpm")
        raise self.driver.outcome_error(tree) or BuildError(
            f"koji task {self.task_id} made no SRPM"
        )

    def srpm(self, into: Path) -> Path:
        if self._srpm is None:
            self.nvr()
        assert self._srpm is not None
        self._resume_with("download")
        return self.driver.fetch(self._srpm, into)

    def arches(self) -> Generator[ArchBuild, None, None]:
        """Each buildArch child once it closed or failed; at the end, why the task failed
        if no arch said it (RemoteBuildFailed, canceled)."""
        collected: set[int] = set()
        with self.driver.detaching(self.task_id, self.cancel_on_interrupt):
            for tree in self.driver.follow(self.task_id):
                for child in _finished_arches(tree):
                    if child.id not in collected:
                        collected.add(child.id)
                        yield self._arch(child)
        problem = self.driver.outcome_error(tree)
        if problem is not None:
            raise problem

    def _made_srpm(self, tree: TaskTree) -> Output | None:
        maker = next((c for c in tree.children if c.label == SRPM_LABEL), None)
        if maker is None or maker.state != "closed":
            return None
        srpms = [o for o in self.driver.outputs(maker.id).values() if o.name.endswith(".src.rpm")]
        return srpms[0] if srpms else None

    def _arch(self, child: TaskView) -> ArchBuild:
        return ArchBuild(
            child.name,
            functools.partial(self._collect, child),
            doing="download",
            record={"arch_task_id": child.id},
        )

    def _collect(self, child: TaskView, staging: Path, progress: Progress) -> ArchResult:
        self._resume_with("download")
        outputs = self.driver.outputs(child.id)
        if child.state == "closed":
            return self._built(child, outputs, staging)
        return self._failed(child, outputs, staging)

    def _built(self, child: TaskView, outputs: dict[str, Output], staging: Path) -> ArchResult:
        """The RPMs and logs (the first arch also lists the SRPM: it is fetched once)."""
        rpms = sorted(n for n in outputs if n.endswith(".rpm") and not n.endswith(".src.rpm"))
        logs = sorted(n for n in outputs if n.endswith(".log"))
        for name in [*rpms, *logs]:
            self.driver.fetch(outputs[name], staging)
        return ArchResult(child.name, ok=True, seconds=child.seconds or 0.0, rpms=rpms, logs=logs)

    def _failed(self, child: TaskView, outputs: dict[str, Output], staging: Path) -> ArchResult:
        """Its logs, the ones that explain a failure first, and their last lines."""
        found = sorted(n for n in outputs if n.endswith(".log"))
        logs = [n for n in TAILED_LOGS if n in found] + [n for n in found if n not in TAILED_LOGS]
        for name in logs:
            self.driver.fetch(outputs[name], staging)
        tails = {n: log_tail((staging / n).read_bytes()) for n in TAILED_LOGS if n in logs}
        return ArchResult(
            child.name,
            ok=False,
            seconds=child.seconds or 0.0,
            logs=logs,
            error=f"koji task {child.id}: {self.driver.fault(child.id)}",
            error_lines=tail_lines(tails),
        )

    def _resume_with(self, verb: str) -> None:
        self.driver.resume_hint = f"resume with: {self.driver.profile.command(verb, self.task_id)}"


def _finished_arches(tree: TaskTree) -> list[TaskView]:
    return [
        child
        for child in tree.children
        if child.method == ARCH_METHOD and child.state in ("closed", "failed")
    ]
