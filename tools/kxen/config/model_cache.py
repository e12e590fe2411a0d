"""Parsed Kconfig models kept between runs, so `config set/explain/diff` skip the parse.

Parsing 6.1's Kconfig for one arch takes 1.5-2 s; loading the same model from this cache
about 0.4 s. An entry is named by a digest of everything the parse reads (the tree's
identity and path, the arch, what the toolchain probes see and the code that parses:
`findings_cache.code_digest`), and sealed: its SHA256 sits in a sidecar record
(`integrity.write_sealed`) and is checked before a byte is unpickled. One that fails is
set aside and the tree parsed again. The cache directory is the user's own.

A model is a graph of ~35,000 linked objects (menu nodes chain to their siblings), too
deep for pickle's recursion. Kconfiglib's objects are therefore written flat: each is
first pickled empty, and the contents follow in batches, so pickling never goes deeper
than one object's own state; loading fills them in C (pickle's BUILD).
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import gc
import hashlib
import io
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kconfiglib  # type: ignore[import-untyped]

from kxen.config import findings_cache
from kxen.config.model import KconfigModel
from kxen.errors import KxenError
from kxen.support import integrity
from kxen.support.fsutil import exclusive_lock

FORMAT = "kxen-kconfig-model 1"
DIRECTORY = "models"
KEPT_ENTRIES = 4
"""Entries per tree (one per arch and toolchain; ~12 MB each)."""

_FLAT_TYPES: tuple[type, ...] = (
    kconfiglib.Kconfig,
    kconfiglib.Symbol,
    kconfiglib.Choice,
    kconfiglib.MenuNode,
    kconfiglib.Variable,
    KconfigModel,
)
_PARSE_ONLY = frozenset({"kxen_runner", "kxen_probes", "kxen_env", "kxen_scratch", "_readline"})
"""What the parser needed and a loaded model does not: a runner with its locks, the probe
cache, the environment (kept out of the cache) and scratch directory, the last file read."""


def key(tree_identity: str, tree: Path, arch: str, toolchain_key: str) -> str:
    inputs = [FORMAT, findings_cache.code_digest(), tree_identity, str(tree), arch, toolchain_key]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


def _entry(directory: Path, digest: str) -> Path:
    return directory / f"{digest[:40]}.pickle"


def load(directory: Path, digest: str, quarantine: integrity.Quarantine) -> KconfigModel | None:
    """The cached model for `digest` if its bytes match their record; None on a miss."""
    path = _entry(directory, digest)
    try:
        with _lock(directory):  # a pickle's bytes differ between parses: never half-written
            data = integrity.read_sealed(path)
    except integrity.Corrupt as corrupt:
        what = "cached Kconfig model"
        quarantine.set_aside(integrity.sealed_parts(path), corrupt, what, "parsing again")
        return None
    if data is None:
        return None
    try:
        return _unflatten(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        return None  # sealed by a kxen whose format differs: its key should have too


def save(directory: Path, digest: str, model: KconfigModel) -> None:
    """Seal and store the model (best effort: only the next run's speed depends on it)."""
    data = _flatten(model)
    try:
        with _lock(directory):
            integrity.write_sealed(_entry(directory, digest), data)
    except (OSError, KxenError):
        return
    entries = sorted(directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns)
    for old in entries[:-KEPT_ENTRIES]:
        for part in integrity.sealed_parts(old):
            part.unlink(missing_ok=True)


def _lock(directory: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive_lock(directory / ".lock", "the Kconfig model cache", wait=True)


# --- flat pickling ------------------------------------------------------------


@functools.cache
def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    kept = (n for n in dict.fromkeys(names) if n not in ("__dict__", "__weakref__"))
    return tuple(n for n in kept if n not in _PARSE_ONLY)


_MISSING = object()


def _state(obj: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The state pickle's BUILD gives an object: its __dict__ and its slots (set in C)."""
    slots = {}
    kind: type = obj.__class__
    for name in _slots(kind):
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:  # Kconfiglib leaves some slots unset until needed
            slots[name] = value
    extra = {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in _PARSE_ONLY}
    return extra or None, slots


def _same(obj: Any) -> Any:
    """The object itself: for pickle to BUILD an object made earlier in the stream."""
    return obj


@dataclass(frozen=True)
class _Contents:
    """An object's state, written after the object itself (already in the stream)."""

    obj: Any


class _FlatPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.objects: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        """Kconfiglib's objects (and the model) as empty objects, their contents queued for
        a later batch; the rest as usual (pickle asks only about objects that are not
        plain containers or atoms, and about each object once)."""
        if isinstance(obj, _Contents):
            return _same, (obj.obj,), _state(obj.obj)
        if not isinstance(obj, _FLAT_TYPES):
            return NotImplemented
        self.objects.append(obj)
        return copyreg.__newobj__, (type(obj),)  # type: ignore[attr-defined]

    def batches(self) -> Iterator[list[_Contents]]:
        """The contents of the objects written so far, then of those they named..."""
        done = 0
        while done < len(self.objects):
            batch = self.objects[done:]
            done += len(batch)
            yield [_Contents(obj) for obj in batch]


def _flatten(model: KconfigModel) -> bytes:
    buffer = io.BytesIO()
    pickler = _FlatPickler(buffer)
    pickler.dump(model)
    for batch in pickler.batches():
        pickler.dump(batch)
    pickler.dump(None)
    return buffer.getvalue()


def _unflatten(data: bytes) -> KconfigModel:
    """The model of a _flatten() stream (one Unpickler: later batches name objects by its
    memo); the objects are filled in C by pickle's BUILD, as their batches are read."""
    unpickler = pickle.Unpickler(io.BytesIO(data))
    gc.disable()  # a million new objects, none garbage: collecting would only cost time
    try:
        model = unpickler.load()
        while unpickler.load() is not None:
            pass
    finally:
        gc.enable()
    if not isinstance(model, KconfigModel) or not hasattr(model, "_kconf"):
        raise TypeError("not a Kconfig model")
    return model
