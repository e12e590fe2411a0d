"""`kxen --help`, `kxen config --help` and shell completion answer fast: they import no
stage (koji, rpm, the Kconfig model, JSON Schema) that only a command's work needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("koji", "rpm", "kconfiglib", "kxen.config.model", "jsonschema", "rich", "yaml")
_PROBE = """
import json, sys
from kxen.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args", [("--help",), ("config", "--help"), ("config", "set", "--help"), ("build", "--help")]
)
def test_help_imports_no_stage(args: tuple[str, ...], tmp_path) -> None:
    code = _PROBE.format(heavy=HEAVY)
    env = {**os.environ, "KXEN_CACHE_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    assert "Usage:" in run.stdout
    assert json.loads(run.stderr.strip().splitlines()[-1]) == []
