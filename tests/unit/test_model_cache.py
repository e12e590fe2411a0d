"""Parsed Kconfig models kept between runs: the same answers as a fresh parse, sealed,
and never loaded when a byte of an entry changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from kxen.config import kconfig, model_cache
from kxen.config.model import KconfigModel
from kxen.support import integrity
from kxen.support.integrity import Quarantine

from .test_integrity import RecordingProgress
from .test_kconfig import make_tree

REQUEST = {"PARAVIRT": "y", "XEN": "y", "CRC_LIB": "m"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "linux")


def _answers(model: KconfigModel) -> tuple[object, ...]:
    values = model.resolve(REQUEST, "olddefconfig")
    return (
        values,
        model.new_symbols(REQUEST),
        model.explain("XEN_PV").describe(),
        model.why_not("XEN_PV", None).describe(),
        model.warnings,
        model.ignored_attributes,
    )


def test_a_cached_model_answers_as_the_parsed_one(tree: Path, tmp_path: Path) -> None:
    parsed = kconfig.load(tree, "x86_64")
    model_cache.save(tmp_path / "models", "k" * 64, parsed)
    expected = _answers(parsed)
    loaded = model_cache.load(tmp_path / "models", "k" * 64, Quarantine(tmp_path / "corrupt"))
    assert loaded is not None and loaded is not parsed
    assert _answers(loaded) == expected
    assert model_cache.load(tmp_path / "models", "x" * 64, Quarantine(tmp_path / "c")) is None


def test_a_changed_byte_in_a_cached_model_is_set_aside_unloaded(tree: Path, tmp_path: Path) -> None:
    directory = tmp_path / "models"
    model_cache.save(directory, "k" * 64, kconfig.load(tree, "x86_64"))
    (entry,) = directory.glob("*.pickle")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(data))
    progress = RecordingProgress()
    quarantine = Quarantine(tmp_path / "corrupt", progress)
    assert model_cache.load(directory, "k" * 64, quarantine) is None
    assert not entry.exists()
    (warning,) = progress.warnings
    assert "cached Kconfig model" in warning and "failed verification" in warning
    (evidence,) = (tmp_path / "corrupt").iterdir()
    assert (evidence / integrity.NOTE_NAME).is_file()


def test_the_key_follows_every_input() -> None:
    base = ("id", Path("/t"), "x86_64", "toolchain")
    keys = {model_cache.key(*base)}
    for index, other in enumerate(("id2", Path("/u"), "i686", "toolchain2")):
        changed = list(base)
        changed[index] = other
        keys.add(model_cache.key(*changed))  # type: ignore[arg-type]
    assert len(keys) == 5
