"""`patches/series`: the downstream patches, quilt format, applied in order in %prep."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

SERIES_NAME = "series"
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")
_STRIP_RE = re.compile(r"^-p([0-9])$")


@dataclass(frozen=True)
class Patch:
    path: Path
    strip: int
    line: int

    @property
    def name(self) -> str:
        return self.path.name


def load_series(patches_dir: Path) -> list[Patch]:
    """Read the series; every file in patches/ must be listed and every line must exist."""
    series = patches_dir / SERIES_NAME
    if not series.exists():
        strays = sorted(p.name for p in patches_dir.glob("*")) if patches_dir.is_dir() else []
        if strays:
            raise InputError(f"{series}: missing, but {patches_dir} holds {', '.join(strays)}")
        return []
    patches: list[Patch] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(series.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{series}:{number}"
        name, *options = line.split()
        if not _NAME_RE.match(name) or ".." in name:
            raise InputError(f"{where}: unsafe patch name {name!r}")
        strip = 1
        for option in options:
            match = _STRIP_RE.match(option)
            if not match:
                raise InputError(f"{where}: unknown option {option!r} (only -pN is supported)")
            strip = int(match[1])
        if name in seen:
            raise InputError(f"{where}: {name} is already listed on line {seen[name]}")
        path = patches_dir / name
        if not path.is_file():
            raise InputError(f"{where}: {name} is listed but {path} does not exist")
        seen[name] = number
        patches.append(Patch(path, strip, number))
    unlisted = sorted(
        p.name for p in patches_dir.iterdir() if p.name != SERIES_NAME and p.name not in seen
    )
    if unlisted:
        raise InputError(
            f"{series}: {', '.join(unlisted)} in {patches_dir} not listed in the series"
        )
    return patches
