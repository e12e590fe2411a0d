"""Build the source RPM, reproducibly.

The same inputs give the same bytes: build time and file mtimes come from the
changelog's newest date (SOURCE_DATE_EPOCH), the build host is fixed, and
rpmbuild runs in a topdir of its own so nothing of ~/rpmbuild leaks in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kxen.errors import BuildError, InputError
from kxen.patches.series import safe_name
from kxen.support.fsutil import scratch_dir
from kxen.support.runner import Runner
from kxen.upstream.sources import link_or_copy

BUILD_HOST = "kernel-xen.build"
# Sources are already compressed tarballs: a cheap, deterministic codec is enough.
SOURCE_PAYLOAD = "w3.zstdio"
# rpm expands macros in every path it is handed, even the directory rpmbuild runs in (a
# `%(...)` there runs a shell), and pastes paths into the shell scripts it writes.
_UNSAFE_IN_RPM_PATH = re.compile(r"[%'\"\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Source:
    """A file the SRPM carries, under the name the spec declares it (SourceN, PatchN)."""

    name: str
    path: Path


def check_rpm_path(path: Path, what: str) -> None:
    """Refuse (exit 2) a path rpm would not take literally, before any work starts."""
    found = _UNSAFE_IN_RPM_PATH.search(str(path))
    if found:
        raise InputError(
            f"{what} {str(path)!r}: rpm expands or splits paths holding {found[0]!r} "
            "(% starts a macro, %(...) runs a shell): choose a directory without %, quotes, "
            "backslashes or control characters"
        )


def reproducible_defines() -> list[str]:
    defines = {
        "source_date_epoch_from_changelog": "1",
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_buildhost": BUILD_HOST,
    }
    return [arg for key, value in defines.items() for arg in ("--define", f"{key} {value}")]


def build_srpm(
    spec_name: str,
    spec_text: str,
    sources: Iterable[Source],
    outdir: Path,
    runner: Runner,
) -> Path:
    """Run `rpmbuild -bs` in a private topdir; publish the SRPM into `outdir` atomically.

    Each source is linked into SOURCES under its `name`, whatever its own file is called."""
    check_rpm_path(outdir, "SRPM directory")
    shipped = _checked_names(list(sources))
    outdir.mkdir(parents=True, exist_ok=True)
    with scratch_dir(outdir, ".srpm-") as top:
        (top / "SPECS").mkdir()
        (top / "SOURCES").mkdir()
        spec = top / "SPECS" / spec_name
        spec.write_text(spec_text)
        for source in shipped:
            link_or_copy(source.path, top / "SOURCES" / source.name)
        result = runner.run(
            [
                "rpmbuild",
                "-bs",
                "--nodeps",
                # A relative topdir: rpm records the expanded %prep (with the topdir in
                # it) in the SRPM header, and the SRPM must not depend on where it was built.
                "--define",
                "_topdir .",
                "--define",
                f"_source_payload {SOURCE_PAYLOAD}",
                *reproducible_defines(),
                spec.relative_to(top),
            ],
            cwd=top,
            check=False,
        )
        if not result.ok:
            raise BuildError(
                "rpmbuild -bs failed",
                details=_rpm_errors(result.output) or result.output.splitlines()[-5:],
            )
        built = sorted((top / "SRPMS").glob("*.src.rpm"))
        if len(built) != 1:
            raise BuildError(f"rpmbuild -bs produced {len(built)} source packages, expected 1")
        final = outdir / built[0].name
        os.replace(built[0], final)
    return final


def _checked_names(sources: list[Source]) -> list[Source]:
    """Plain, distinct file names: a name with `/` or `..` would land outside SOURCES, and
    a second file of one name would replace the first."""
    seen: set[str] = set()
    for source in sources:
        if not safe_name(source.name):
            raise InputError(
                f"refusing to ship {source.path} as {source.name!r} (not a plain name)"
            )
        if source.name in seen:
            raise InputError(f"two sources would ship as {source.name}")
        seen.add(source.name)
    return sources


def _rpm_errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")][:10]
