"""Fixtures for every test: a scratch checkout of the packaging files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .signing import GpgHome, Keys
from .support import make_checkout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "checkout")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Throwaway signing keys in a GNUPGHOME of their own, one set per test module."""
    gpg = GpgHome(tmp_path_factory.mktemp("signing") / "gnupg")
    try:
        yield Keys(gpg)
    finally:
        gpg.close()
