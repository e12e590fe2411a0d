"""Fixtures of the hostile-input suite: a scene (scratch checkout, tmp dir, cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import fakelinux
from ..support import make_checkout
from .harness import Scene


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return Scene(make_checkout(tmp_path / "checkout"), tmp, tmp_path / "cache")


@pytest.fixture
def fake_scene(tmp_path: Path) -> Scene:
    """A scene whose checkout's configs/ fit the fake tree (tests/fakes/linux)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return Scene(fakelinux.make_checkout(tmp_path / "checkout"), tmp, tmp_path / "cache")
