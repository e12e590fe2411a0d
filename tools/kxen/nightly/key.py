"""The key of a nightly: a digest over every input that can change what it builds.

Each input has a digest of its own (so a report can say what changed): the upstream
commit (or the tarball's, or the manifest's kernel.org files'), the manifest, `sources`,
configs/, patches/, the spec template, kxen itself (its version and its code), the
backend and its options, the matrix asked for, and the toolchain's fingerprint. The key
is the digest of them all: a run with the key of a completed run would build the same
bytes, so it is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import kxen
from kxen.config import toolchain
from kxen.support import inputs

CHECKOUT_FILES = ("kernel-xen.yaml", "sources")
CHECKOUT_TREES = ("configs", "patches", "specs")


def digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tree_digest(root: Path, top: Path) -> str:
    """Names and contents of every file under `root` (inside the checkout `top`), in a
    fixed order: a file added, removed, renamed or changed changes it."""
    digest = hashlib.sha256()
    if not root.is_dir():
        return digest.hexdigest()
    for path in sorted(_files(root), key=lambda p: str(p.relative_to(root)).encode()):
        data = inputs.read_bytes(path, top, inputs.PATCH_FILE)
        name = str(path.relative_to(root)).encode()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _files(root: Path) -> Iterable[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            yield Path(directory) / name


def kxen_digest(package: Path = Path(kxen.__file__).parent) -> str:
    """kxen's version and a digest of its own code: a changed kxen may build otherwise."""
    digest = hashlib.sha256(importlib.metadata.version("kxen").encode())
    for path in sorted(package.rglob("*"), key=lambda p: str(p).encode()):
        if path.is_file() and path.suffix in (".py", ".json", ".c"):
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def checkout_digests(checkout: Path) -> dict[str, str]:
    """The digest of each packaging input of the checkout."""
    found = {
        name: digest_text(inputs.read_text(checkout / name, checkout)) for name in CHECKOUT_FILES
    }
    found |= {name: tree_digest(checkout / name, checkout) for name in CHECKOUT_TREES}
    return found


def input_digests(
    checkout: Path,
    upstream: str,
    backend: Mapping[str, object],
    matrix: Mapping[str, object],
) -> dict[str, str]:
    """Every input's digest: `upstream` identifies the tree (a commit, a tarball digest),
    `backend` is the backend and its options, `matrix` the arches, flavours and boot modes."""
    return {
        "upstream": digest_text(upstream),
        **checkout_digests(checkout),
        "kxen": kxen_digest(),
        "backend": digest_text(json.dumps(backend, sort_keys=True, default=str)),
        "matrix": digest_text(json.dumps(matrix, sort_keys=True, default=str)),
        "toolchain": toolchain.fingerprint(),
    }


def key_of(digests: Mapping[str, str]) -> str:
    return digest_text(json.dumps(dict(sorted(digests.items()))))


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The inputs whose digest differs (or that one side lacks), in name order."""
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
