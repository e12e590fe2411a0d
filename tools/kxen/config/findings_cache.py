"""`config check` findings of one arch, cached by a digest of everything they derive from.

An unchanged warm check then evaluates no Kconfig at all: parsing a tree's Kconfig is
seconds per arch, reading a cached answer milliseconds. The key covers every input:

- the tree: its identity (the tarball's digest and upstream patches) and its path; the
  tree itself is verified against its manifest before any of this runs;
- the arch, and the toolchain Kconfig probes (`kconfig.toolchain_key`: tool binaries,
  package databases, CC= and the kbuild tool variables);
- every merged target of the arch: each setting with its file:line, each overridden line
  and each unusable line, so any fragment edit changes the key;
- the checkout's path (findings name fragment lines relative to it) and the code that
  computes findings (the kxen.config sources and Kconfiglib's), so an upgrade of kxen
  never answers from an older rule.

Entries are sealed (`integrity.write_sealed`) and verified on every read; one that fails
is set aside in the quarantine and the findings are computed again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import kconfiglib  # type: ignore[import-untyped]

from kxen.config import fragments as configs
from kxen.config.check import Finding, Kind
from kxen.errors import KxenError
from kxen.support import integrity

FORMAT = "kxen-check-findings 1"
DIRECTORY = "findings"
KEPT_ENTRIES = 16
"""Entries per tree kept after a write (each edit of configs/ makes a new key)."""


@functools.cache
def code_digest() -> str:
    """SHA256 of the sources that decide findings: kxen.config's modules and Kconfiglib."""
    digest = hashlib.sha256()
    sources = sorted(Path(__file__).parent.glob("*.py"))
    for source in [*sources, Path(cast(str, kconfiglib.__file__))]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def key(
    tree_identity: str,
    tree: Path,
    arch: str,
    toolchain_key: str,
    merged: Sequence[tuple[configs.Merged, Sequence[configs.Problem]]],
    repo_root: Path,
) -> str:
    """The digest naming the findings of `merged` (one arch's targets) on this tree."""
    inputs = {
        "format": FORMAT,
        "code": code_digest(),
        "tree": [tree_identity, str(tree)],
        "arch": arch,
        "toolchain": toolchain_key,
        "repo": str(repo_root),
        "targets": [_merged_inputs(one, problems) for one, problems in merged],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _merged_inputs(merged: configs.Merged, problems: Sequence[configs.Problem]) -> list[Any]:
    def setting(s: configs.Setting) -> list[Any]:
        return [s.symbol, s.value, s.where]

    return [
        merged.target.arch,
        merged.target.flavour,
        merged.resolve,
        [setting(s) for s in merged.settings.values()],
        [[setting(a), setting(b)] for a, b in merged.overridden],
        [[str(p.file), p.line, p.message, p.symbol, p.value] for p in problems],
    ]


def _entry(directory: Path, digest: str) -> Path:
    return directory / f"{digest[:40]}.json"


def load(directory: Path, digest: str, quarantine: integrity.Quarantine) -> list[Finding] | None:
    """The cached findings for `digest`, verified against their seal; None on a miss (a
    corrupt entry is set aside and counts as a miss)."""
    path = _entry(directory, digest)
    try:
        data = integrity.read_sealed(path)
    except integrity.Corrupt as corrupt:
        quarantine.set_aside(
            integrity.sealed_parts(path), corrupt, "cached check findings", "checking again"
        )
        return None
    if data is None:
        return None
    try:
        stored = json.loads(data)
        if stored.get("key") != digest:
            return None  # a truncated-name collision: not this entry's inputs
        return [_finding(row) for row in stored["findings"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def save(directory: Path, digest: str, findings: Iterable[Finding]) -> None:
    """Seal and store the findings (best effort: a full disk only costs the next run)."""
    rows = [_row(f) for f in findings]
    text = json.dumps({"key": digest, "findings": rows}, separators=(",", ":"))
    with contextlib.suppress(KxenError, OSError):
        directory.mkdir(parents=True, exist_ok=True)
        integrity.write_sealed(_entry(directory, digest), text.encode())
        _prune(directory)


def _prune(directory: Path) -> None:
    """Keep the newest KEPT_ENTRIES entries (and their seals)."""
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEPT_ENTRIES:]:
        for part in integrity.sealed_parts(old):
            part.unlink(missing_ok=True)


def _row(finding: Finding) -> list[Any]:
    target = finding.target
    return [
        finding.kind,
        target.arch,
        target.flavour,
        finding.symbol,
        finding.where,
        finding.requested,
        finding.actual,
        finding.reason,
    ]


def _finding(row: list[Any]) -> Finding:
    kind, arch, flavour, symbol, where, requested, actual, reason = row
    return Finding(
        cast(Kind, kind), configs.Target(arch, flavour), symbol, where, requested, actual, reason
    )
