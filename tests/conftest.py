"""Fixtures for every test: a scratch checkout of the packaging files."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import make_checkout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "checkout")
