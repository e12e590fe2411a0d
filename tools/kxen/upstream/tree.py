"""The prepared tree: an upstream archive extracted and patched once per input, recorded
(see `kxen.support.integrity`) and checked before every use, never written to."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kxen.errors import SourceError
from kxen.support import integrity
from kxen.support.fsutil import exclusive_lock, scratch_dir
from kxen.support.runner import Runner
from kxen.upstream.archive import check_members, decompressed
from kxen.versions import from_makefile

if TYPE_CHECKING:  # the tree is made from an Upstream; origin reads the tree's record
    from kxen.upstream.origin import Upstream


def _tree_root(cache_root: Path, identity: str) -> Path:
    return cache_root / "trees" / identity


def tree_is_cached(upstream: Upstream, cache_root: Path) -> bool:
    """Whether `prepared_tree` would find the tree made (before verifying it)."""
    return (_tree_root(cache_root, upstream.identity) / integrity.MANIFEST_NAME).is_file()


def recorded_meta(cache_root: Path, identity: str) -> Mapping[str, str] | None:
    """What the extraction of the tree `identity` recorded (topdir, Makefile version), if
    its record is intact: a local tarball's version without reading the tarball again."""
    return integrity.read_meta(_tree_root(cache_root, identity) / integrity.MANIFEST_NAME)


def prepared_tree(
    upstream: Upstream,
    cache_root: Path,
    runner: Runner,
    *,
    scope: integrity.Scope = integrity.WHOLE,
    quarantine: integrity.Quarantine | None = None,
) -> Path:
    """The pristine source tree for `upstream`, extracted and patched once, then reused.

    Before it is used, it is checked against the manifest made at extraction: the whole
    listing, and the content of the files in `scope` (what the caller reads). A tree
    that fails is set aside (see `integrity`) and extracted again. Callers must not
    write into it: kconfig runs with O= into directories of their own.
    """
    root = _tree_root(cache_root, upstream.identity)
    tree = root / upstream.build_dir
    manifest = root / integrity.MANIFEST_NAME
    if integrity.already_verified(manifest, scope):
        return tree
    quarantine = quarantine or integrity.Quarantine.in_cache(cache_root)
    with exclusive_lock(
        cache_root / "trees" / f"{upstream.identity}.lock", "source tree cache", wait=True
    ):
        if root.exists() or root.is_symlink():
            try:
                _verify_tree(upstream, root, scope)
                return tree
            except integrity.Corrupt as corrupt:
                quarantine.set_aside(root, corrupt, "prepared tree", "extracting it again")
        _extract(upstream, root, runner)
    return tree


def _verify_tree(upstream: Upstream, root: Path, scope: integrity.Scope) -> None:
    if root.is_symlink():
        raise integrity.Corrupt(["it is a symlink"])
    manifest = root / integrity.MANIFEST_NAME
    meta = integrity.read_meta(manifest)
    if meta is None:
        integrity.read_manifest(manifest)  # raises Corrupt saying what is wrong with it
        raise integrity.Corrupt(["its manifest cannot be parsed"])
    if meta.get("topdir") != upstream.topdir:
        raise integrity.Corrupt([f"made for {meta.get('topdir')!r}, not {upstream.topdir!r}"])
    integrity.verify_quickly(root / upstream.build_dir, manifest, scope)


def _extract(upstream: Upstream, root: Path, runner: Runner) -> None:
    """Check, extract, patch and record the tree, then rename it into place whole."""
    check_members(upstream.tarball, upstream.topdir, runner)
    with scratch_dir(root.parent, ".extract-") as staging:
        tree = staging / upstream.build_dir
        tree.mkdir()
        # As root GNU tar keeps the archive's modes: --no-same-permissions drops setuid,
        # setgid and sticky bits (integrity.record clears any a patch might set).
        runner.run(
            [
                "tar",
                "-xf",
                upstream.tarball,
                "-C",
                tree,
                "--strip-components=1",
                "--no-same-owner",
                "--no-same-permissions",
            ]
        )
        for patch in upstream.patches:
            _apply_upstream_patch(patch, tree, runner)
        version = from_makefile((tree / "Makefile").read_text())
        if str(version) != str(upstream.version.makefile_version):
            raise SourceError(
                f"{upstream.tarball.name}: the tree's Makefile says {version}, "
                f"expected {upstream.version}"
            )
        meta = {"topdir": upstream.topdir, "makefile_version": str(version)}
        integrity.record(tree, staging / integrity.MANIFEST_NAME, meta)
        os.replace(staging, root)


def _apply_upstream_patch(patch: Path, tree: Path, runner: Runner) -> None:
    with decompressed(patch, runner) as source:
        result = runner.run(
            ["patch", "-p1", "-s", "-N", "-E", "--no-backup-if-mismatch", "-d", tree],
            stdin=source.data,
            check=False,
        )
    if not result.ok:
        first = result.output.strip().splitlines()[:3]
        raise SourceError(f"{patch.name}: does not apply to the upstream tarball", details=first)
