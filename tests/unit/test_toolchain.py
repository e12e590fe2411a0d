"""kxen.toolchain: the fingerprint that keys caches of toolchain-dependent results."""

from __future__ import annotations

import os
import stat

from kxen.config import toolchain


def fake_tool(directory, name, body="#!/bin/sh\necho 1\n"):
    path = directory / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_fingerprint_is_stable_and_follows_tools_and_variables(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gcc = fake_tool(bindir, "gcc")
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    first = toolchain.fingerprint(env)
    assert toolchain.fingerprint(dict(env)) == first
    gcc.write_text("#!/bin/sh\necho 2 # another compiler\n")
    assert toolchain.fingerprint(env) != first
    assert toolchain.fingerprint({**env, "CROSS_COMPILE": "x86_64-linux-gnu-"}) != first
    # Variables nothing in the toolchain reads do not matter.
    assert toolchain.fingerprint({**env, "HOME": "/elsewhere"}) == toolchain.fingerprint(env)
