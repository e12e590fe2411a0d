"""Publishing build results as `results/<nvr>/<arch>/` and the summary CI reads.

Results are assembled in a staging directory next to their final place and
renamed in only when the arch built: a failed or interrupted build leaves the
previous results of that NVR untouched and no partial directory behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .backends.base import ArchResult
from .fsutil import atomic_write_text, exclusive_lock, replace_dir, scratch_dir

RESULT_FILE = "kxen-result.json"


@contextmanager
def locked_nvr(results_root: Path, nvr: str) -> Iterator[Path]:
    """Hold the lock of `results/<nvr>/` for a whole build."""
    nvr_dir = results_root / nvr
    with exclusive_lock(results_root / f".{nvr}.lock", f"results/{nvr}"):
        yield nvr_dir


@contextmanager
def staging_for(nvr_dir: Path, arch: str) -> Iterator[Path]:
    with scratch_dir(nvr_dir, f".staging-{arch}-") as staging:
        yield staging


def publish(staging: Path, final: Path, result: ArchResult, record: dict[str, Any]) -> Path:
    record = {**record, "arch": result.arch, "result": asdict(result)}
    atomic_write_text(staging / RESULT_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    replace_dir(staging, final)
    return final
