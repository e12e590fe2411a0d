"""Reading built RPMs: the header through rpm's own bindings, the payload unpacked with
rpm2cpio | cpio (no absolute names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kxen.support.runner import Runner


def rpm_header(path: Path) -> Any:
    import rpm

    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    with path.open("rb") as handle:
        return ts.hdrFromFdno(handle.fileno())


def header_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def extract_payload(package: Path, into: Path, runner: Runner) -> None:
    into.mkdir(parents=True, exist_ok=True)
    runner.run(
        [
            "bash",
            "-c",
            'set -o pipefail; rpm2cpio "$0" | cpio -idm --quiet --no-absolute-filenames',
            package.resolve(),
        ],
        cwd=into,
    )
