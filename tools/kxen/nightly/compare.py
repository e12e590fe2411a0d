"""A run compared with the runs before it: regressions, recoveries, the commits between.

A cell that passed in the previous run and fails now is a regression, named with the
commits since the newest run in which it passed (`git log --oneline A..B`); a cell that
failed in the previous run and passes now is a recovery. An ERROR (the infrastructure's
fault) is neither: it says nothing about the kernel.
"""

from __future__ import annotations

from pathlib import Path

from kxen.config.fragments import parse_config_values
from kxen.nightly.model import Cell, Change, Run, Status
from kxen.support.runner import Runner
from kxen.support.text import neutralise

MAX_COMMITS = 200
"""Commits listed between two runs (a range can span months after a long failure)."""


def changes(run: Run, earlier: list[Run]) -> list[Change]:
    """`earlier`: the completed runs before `run`, newest first."""
    previous = earlier[0] if earlier else None
    found = []
    for cell in run.cells:
        before = _cell(previous, cell) if previous else None
        if before is None:
            continue
        if before.status == Status.PASS and cell.status == Status.FAIL:
            step = cell.failure
            found.append(
                Change(
                    cell.name, "regression", step.name if step else "", step.excerpt if step else []
                )
            )
        elif before.status in (Status.FAIL, Status.ERROR) and cell.status == Status.PASS:
            step = before.failure
            found.append(Change(cell.name, "recovery", step.name if step else ""))
    return found


def last_good(run: Run, earlier: list[Run]) -> Run | None:
    """The newest earlier run in which every cell `run` shares with it passed."""
    for candidate in earlier:
        shared = [c for c in run.cells if _cell(candidate, c) is not None]
        if shared and all(_cell(candidate, c).status == Status.PASS for c in shared):  # type: ignore[union-attr]
            return candidate
    return None


def _cell(run: Run, like: Cell) -> Cell | None:
    return next((c for c in run.cells if (c.arch, c.flavour) == (like.arch, like.flavour)), None)


def commit_of(run: Run) -> str | None:
    git = run.upstream.get("git")
    return str(git["commit"]) if isinstance(git, dict) and git.get("commit") else None


def commits_between(repo: Path, older: str, newer: str, runner: Runner) -> list[str]:
    """`git log --oneline older..newer`, newest first (empty if git cannot say); hashes
    as long as in run ids."""
    result = runner.run(
        [
            "git",
            "-C",
            repo,
            "log",
            "--oneline",
            "--abbrev=12",
            "--no-decorate",
            f"-{MAX_COMMITS}",
            f"{older}..{newer}",
        ],
        check=False,
        quick=True,
    )
    if not result.ok:
        return []
    return [neutralise(line) for line in result.output.splitlines() if line.strip()]


def config_changes(before: str | None, after: str) -> list[str]:
    """`CONFIG_X: old -> new` for each symbol whose resolved value differs (new symbols as
    `unset -> value`); nothing when there is no earlier config to compare with."""
    if before is None:
        return []
    old, new = parse_config_values(before), parse_config_values(after)
    return [
        f"CONFIG_{symbol}: {_shown(old.get(symbol))} -> {_shown(new.get(symbol))}"
        for symbol in sorted(old.keys() | new.keys())
        if old.get(symbol) != new.get(symbol)
    ]


def _shown(value: str | None) -> str:
    return "unset" if value is None else value
