"""Fixtures for every test: scratch checkouts of the packaging files, the fake Linux tree."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import fakelinux
from .signing import GpgHome, Keys
from .support import make_checkout

# A CI runner may start the tests as a background job of a non-interactive shell, which
# ignores SIGINT; the processes the tests start would inherit that, and the Ctrl-C tests
# would signal processes that cannot hear it. A handled signal reverts to its default in
# exec'd children, so handling it here gives them back the disposition a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "checkout")


@pytest.fixture(scope="session")
def fake_linux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake Linux tree (tests/fakes/linux) as linux-6.1.192.tar.xz, packed once per
    session with this interpreter as the one that runs its Kconfig."""
    return fakelinux.pack(tmp_path_factory.mktemp("fake-linux"))


@pytest.fixture
def fake_checkout(tmp_path: Path) -> Path:
    """A scratch checkout of the packaging files whose configs/ is written for the fake
    tree's Kconfig (tests/fakes/linux-configs)."""
    return fakelinux.make_checkout(tmp_path / "fake-checkout")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Throwaway signing keys in a GNUPGHOME of their own, one set per test module."""
    gpg = GpgHome(tmp_path_factory.mktemp("signing") / "gnupg")
    try:
        yield Keys(gpg)
    finally:
        gpg.close()
