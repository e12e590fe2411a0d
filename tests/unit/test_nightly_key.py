"""The nightly's key: each input alone changes exactly its own digest, and so the key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import kxen
import pytest
from kxen.nightly import key

BACKEND = {"name": "local"}
MATRIX = {"arches": ["x86_64"], "flavours": ["smoke"], "boot": True}
COMMIT = "git:" + "1" * 40


def digests(checkout: Path, **override: object) -> dict[str, str]:
    return key.input_digests(
        checkout,
        str(override.get("upstream", COMMIT)),
        override.get("backend", BACKEND),  # type: ignore[arg-type]
        override.get("matrix", MATRIX),  # type: ignore[arg-type]
    )


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def first_file(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


CHECKOUT_CHANGES: dict[str, Callable[[Path], None]] = {
    "kernel-xen.yaml": lambda c: append(c / "kernel-xen.yaml", "# reviewed\n"),
    "sources": lambda c: append(c / "sources", "\n"),
    "configs": lambda c: append(first_file(c / "configs", "*.config"), "# CONFIG_X is not set\n"),
    "patches": lambda c: (c / "patches" / "0001-new.patch").write_text("--- a/x\n+++ b/x\n"),
    "specs": lambda c: append(first_file(c / "specs", "*.j2"), "\n"),
}


@pytest.mark.parametrize("name", sorted(CHECKOUT_CHANGES))
def test_a_changed_checkout_input_changes_only_its_digest(checkout: Path, name: str) -> None:
    before = digests(checkout)
    CHECKOUT_CHANGES[name](checkout)
    after = digests(checkout)
    assert key.changed(before, after) == [name]
    assert key.key_of(before) != key.key_of(after)


def test_a_renamed_config_file_changes_the_configs_digest(checkout: Path) -> None:
    before = digests(checkout)
    fragment = first_file(checkout / "configs", "*.config")
    fragment.rename(fragment.with_name("renamed.config"))
    assert key.changed(before, digests(checkout)) == ["configs"]


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("upstream", {"upstream": "git:" + "2" * 40}),
        ("backend", {"backend": {"name": "mock", "roots": {"x86_64": "fedora-43-x86_64"}}}),
        ("matrix", {"matrix": {**MATRIX, "boot": False}}),
        ("matrix", {"matrix": {**MATRIX, "arches": ["x86_64", "i686"]}}),
    ],
)
def test_a_changed_request_changes_only_its_digest(
    checkout: Path, name: str, override: dict[str, object]
) -> None:
    assert key.changed(digests(checkout), digests(checkout, **override)) == [name]


def test_a_changed_toolchain_changes_only_its_digest(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digests(checkout)
    monkeypatch.setenv("HOSTCC", "gcc-13")
    assert key.changed(before, digests(checkout)) == ["toolchain"]


def test_a_changed_kxen_changes_its_digest(tmp_path: Path) -> None:
    package = tmp_path / "kxen"
    shutil.copytree(Path(kxen.__file__).parent, package)
    before = key.kxen_digest(package)
    append(package / "nightly" / "key.py", "\n# one more line\n")
    assert key.kxen_digest(package) != before


def test_equal_inputs_equal_keys(checkout: Path, tmp_path: Path) -> None:
    """Nothing the run does not read (the checkout's path, a log beside it) moves the key."""
    twin = shutil.copytree(checkout, tmp_path / "elsewhere")
    (twin / "build.log").write_text("not an input\n")
    assert key.key_of(digests(checkout)) == key.key_of(digests(twin))
