"""The table-driven harness of the hostile-input suite.

Each `Case` is one row of a table: what to put in a scratch checkout (or beside it),
the `kxen` command to run, the exit code and message fragment the user must get, and
what must be unchanged (or absent) on disk afterwards. Every case runs with `--json`
too: stdout must still be a JSON error, stderr must hold no traceback and no control
character, and no canary file a hostile name tries to create may exist.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KXEN = Path(sys.executable).with_name("kxen")
CANARY = "pwned"
"""Hostile names try to `touch $TMP/pwned`: it must never exist."""

Setup = Callable[["Scene"], None]


@dataclass
class Scene:
    """Where a case plays: a scratch checkout, a scratch dir beside it and a cache."""

    checkout: Path
    tmp: Path
    cache: Path

    @property
    def canary(self) -> Path:
        return self.tmp / CANARY

    def expand(self, text: str) -> str:
        return (
            text.replace("{checkout}", str(self.checkout))
            .replace("{tmp}", str(self.tmp))
            .replace("{canary}", str(self.canary))
        )


def _nothing(scene: Scene) -> None:
    pass


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    """kxen's arguments after `--repo CHECKOUT`; `{checkout}`, `{tmp}`, `{canary}` expand."""
    exit_code: int
    message: str
    """A fragment the error message (stderr, and the JSON error or details) must hold."""
    setup: Setup = _nothing
    unchanged: tuple[str, ...] = ()
    """Paths (expanded, relative ones under the checkout) whose bytes, link target or
    whole tree must be the same after the run as before it."""
    absent: tuple[str, ...] = ()
    """Paths that must not exist after the run."""
    timeout: float = 120.0
    env: dict[str, str] = field(default_factory=dict)
    json: bool = True
    """False: run without --json and hold stdout to the same rules as stderr."""
    stdout_has: str = ""
    """A fragment stdout must hold (e.g. a path printed literally)."""
    never_shown: str = ""
    """A fragment neither stdout nor stderr may hold (content of a file outside)."""
    stderr_limit: int = 0
    """If set, stderr may not be longer (a huge input gives a short error)."""
    wrap: tuple[str, ...] = ()
    """A command line the kxen command is run under (e.g. a private mount namespace);
    `{kxen}` in it is replaced by kxen's argv, `{tmp}` and `{checkout}` expand."""


def snapshot(path: Path) -> object:
    """Everything observable of `path` without following a symlink at its top."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return (
            "dir",
            {
                str(child.relative_to(path)): snapshot(child)
                for child in sorted(path.rglob("*"))
                if not child.is_dir() or child.is_symlink()
            },
        )
    if path.is_file():
        return ("file", path.read_bytes())
    return ("absent",)


def _resolve(scene: Scene, name: str) -> Path:
    path = Path(scene.expand(name))
    return path if path.is_absolute() else scene.checkout / path


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    payload: dict[str, object]


def run_case(case: Case, scene: Scene) -> Outcome:
    case.setup(scene)
    before = {name: snapshot(_resolve(scene, name)) for name in case.unchanged}
    argv = [str(KXEN), "--repo", str(scene.checkout), *map(scene.expand, case.args)]
    argv += ["--json"] if case.json else []
    if case.wrap:
        command = " ".join(map(shlex.quote, argv))
        argv = [scene.expand(part).replace("{kxen}", command) for part in case.wrap]
    env = {
        **os.environ,
        "KXEN_CACHE_DIR": str(scene.cache),
        **{key: scene.expand(value) for key, value in case.env.items()},
    }
    result = subprocess.run(
        argv, capture_output=True, env=env, timeout=case.timeout, check=False, cwd=scene.tmp
    )
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    context = f"{' '.join(argv)}\nexit {result.returncode}\nstderr:\n{stderr[-3000:]}"
    assert result.returncode == case.exit_code, context
    assert "Traceback" not in stderr, context
    shown = stderr if case.json else stderr + stdout
    for line in shown.splitlines():
        assert not any((ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 for c in line), line
    assert case.stdout_has in stdout, stdout
    assert not case.stderr_limit or len(stderr) <= case.stderr_limit, f"{len(stderr)} characters"
    if case.never_shown:
        assert case.never_shown not in stdout + stderr, "echoed what it must not show"
    payload = json.loads(stdout) if case.json and stdout.strip() else {}
    if case.exit_code != 0 and case.json:
        assert payload.get("ok") is False, stdout
        assert payload.get("exit_code") == case.exit_code, stdout
        said = " ".join([str(payload.get("error")), *map(str, payload.get("details") or [])])
        assert scene.expand(case.message) in said, f"{case.message!r} not in the error: {said}"
    assert scene.expand(case.message) in stderr, context
    assert not scene.canary.exists(), f"{scene.canary} was created: a name ran as code"
    for name, was in before.items():
        assert snapshot(_resolve(scene, name)) == was, f"{name} changed"
    for name in case.absent:
        assert not _resolve(scene, name).exists(), f"{name} exists"
    return Outcome(result.returncode, stdout, stderr, payload)
