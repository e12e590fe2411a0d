"""Where the checkout and the cache are: what every command needs before anything else.

Kept free of heavy imports (YAML, JSON Schema, the project) so that the root command can
find them while `kxen --help` and shell completion stay fast."""

from __future__ import annotations

import os
from pathlib import Path

from kxen.errors import InputError

MANIFEST_NAME = "kernel-xen.yaml"


def find_manifest(start: Path) -> Path:
    """The manifest of the repository containing `start` (like git finding .git)."""
    for directory in (start, *start.parents):
        candidate = directory / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    raise InputError(f"no {MANIFEST_NAME} in {start} or any parent directory")


def default_cache_dir() -> Path:
    explicit = os.environ.get("KXEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kxen"
