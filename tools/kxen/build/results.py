"""Publishing build results as `results/<nvr>/<arch>/` (or `failed-<arch>/`) and the
summary CI reads.

Results are assembled in a staging directory next to their final place and
renamed in only when the arch built: a failed or interrupted build leaves the
previous results of that NVR untouched and no partial directory behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kxen.build.backends.base import ArchResult
from kxen.errors import LockedError
from kxen.support.fsutil import (
    Reclaimed,
    atomic_write_text,
    exclusive_lock,
    reclaim,
    remove_if_empty,
    replace_dir,
    scratch_dir,
)
from kxen.upstream.sources import link_or_copy

RESULT_FILE = "kxen-result.json"
STAGING_PREFIX = ".staging-"


@contextmanager
def locked_nvr(results_root: Path, nvr: str) -> Iterator[Path]:
    """Hold the lock of `results/<nvr>/` for a whole build; an `<nvr>/` it leaves empty
    (every arch interrupted before publishing) is removed."""
    nvr_dir = results_root / nvr
    with exclusive_lock(results_root / f".{nvr}.lock", f"results/{nvr}"):
        try:
            yield nvr_dir
        finally:
            remove_if_empty(nvr_dir)


def reclaim_results(results_root: Path) -> list[Reclaimed]:
    """Scratch and staging directories of dead kxen runs under a results root, and the
    `<nvr>/` directories they leave empty (only where no living build holds the lock)."""
    removed = reclaim(results_root)
    for nvr_dir in _nvr_dirs(results_root):
        with contextlib.suppress(LockedError), locked_nvr(results_root, nvr_dir.name):
            removed += reclaim(nvr_dir)
    return removed


def _nvr_dirs(root: Path) -> list[Path]:
    """The `<nvr>/` directories kxen made (each has its lock file beside it)."""
    try:
        found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(p for p in found if (root / f".{p.name}.lock").is_file())


@contextmanager
def staging_for(nvr_dir: Path, arch: str) -> Iterator[Path]:
    with scratch_dir(nvr_dir, f"{STAGING_PREFIX}{arch}-") as staging:
        yield staging


def failed_name(arch: str) -> str:
    """Where a failed arch's logs are kept: `results/<nvr>/failed-<arch>/`."""
    return f"failed-{arch}"


def publish_arch(
    staging: Path, nvr_dir: Path, result: ArchResult, record: dict[str, Any], srpm: Path
) -> Path:
    """An arch that built as `<nvr>/<arch>/`, with the SRPM beside its RPMs (unless the
    backend left its rebuilt one) and any earlier failure of it removed; one that failed
    as `<nvr>/failed-<arch>/`."""
    if not result.ok:
        return publish(staging, nvr_dir / failed_name(result.arch), result, record)
    if not (staging / srpm.name).exists():
        link_or_copy(srpm, staging / srpm.name)
    final = publish(staging, nvr_dir / result.arch, result, record)
    shutil.rmtree(nvr_dir / failed_name(result.arch), ignore_errors=True)  # superseded
    return final


def publish(staging: Path, final: Path, result: ArchResult, record: dict[str, Any]) -> Path:
    record = {**record, "arch": result.arch, "result": asdict(result)}
    atomic_write_text(staging / RESULT_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    replace_dir(staging, final)
    return final
