"""`kxen bump`: move the package to another upstream version in one safe step.

Like rpmdev-bumpspec, but for the manifest: the upstream version and release
change, a changelog entry is added, the `sources` entries of the new upstream
files replace the old ones, and signature rules follow their files (the new
tarball keeps the old tarball's pinned keys, the new stable patch the old
patch's). The manifest is edited as a round trip (ruamel.yaml), so comments and
layout survive; the result is validated like any hand edit before anything is
written, and a downgrade is refused unless forced (rpm's own version compare).
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from kxen import manifest as manifest_module
from kxen.errors import InputError
from kxen.manifest import Manifest
from kxen.versions import UpstreamVersion

LEVELS = ("stable", "rc", "git")


@dataclass(frozen=True)
class Plan:
    old: UpstreamVersion
    new: UpstreamVersion
    old_evr: str
    new_evr: str
    release: int
    manifest_text: str
    renamed_signatures: dict[str, str]
    """Old upstream file name -> new one, for files whose signature rule moves along."""


def target_release(current: Manifest, new: UpstreamVersion, release: int | None) -> int:
    """An explicit release, else the next one for the same version, else 1."""
    if release is not None:
        if release < 1:
            raise InputError(f"--release {release}: must be 1 or more")
        return release
    return current.release + 1 if new == current.upstream else 1


def evr(version: UpstreamVersion, release: int) -> tuple[str, str, str]:
    return ("0", version.rpm_version, version.rpm_release(release))


def check_direction(current: Manifest, new: UpstreamVersion, release: int, force: bool) -> None:
    """Refuse anything that does not sort above the current package (rpmvercmp)."""
    import rpm  # only here: importing rpm's bindings costs a tenth of a second

    before, after = evr(current.upstream, current.release), evr(new, release)
    if rpm.labelCompare(after, before) <= 0 and not force:
        raise InputError(
            f"--to {new}: {after[1]}-{after[2]} does not sort above the current "
            f"{before[1]}-{before[2]} (rpm would not upgrade); use --force to do it anyway"
        )


def plan(
    current: Manifest,
    text: str,
    new: UpstreamVersion,
    release: int,
    change: str,
    author: str,
    today: dt.date,
) -> Plan:
    """The edited manifest text (validated), without writing anything."""
    yaml = _round_trip()
    data = yaml.load(text)
    _set_upstream(data["upstream"], new)
    data["release"] = release
    renamed = _move_signatures(data["upstream"], current.upstream, new)
    entry = CommentedMap()
    entry["date"] = max(today, current.changelog[0].date)
    entry["author"] = author
    entry["changes"] = CommentedSeq([change])
    data["changelog"].insert(0, entry)
    out = io.StringIO()
    yaml.dump(data, out)
    edited = out.getvalue()
    manifest_module.parse(edited, current.path)  # refuses what a hand edit would get refused for
    old_pair, new_pair = evr(current.upstream, current.release), evr(new, release)
    return Plan(
        current.upstream,
        new,
        f"{old_pair[1]}-{old_pair[2]}",
        f"{new_pair[1]}-{new_pair[2]}",
        release,
        edited,
        renamed,
    )


def _round_trip() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _set_upstream(upstream: Any, new: UpstreamVersion) -> None:
    upstream["version"] = DoubleQuotedScalarString(new.base)
    position = list(upstream).index("version") + 1
    for level in LEVELS:
        value = getattr(new, level)
        if value is None:
            upstream.pop(level, None)
        elif level in upstream:
            upstream[level] = value
        else:
            upstream.insert(position, level, value)
        if level in upstream:
            position = list(upstream).index(level) + 1


def _move_signatures(upstream: Any, old: UpstreamVersion, new: UpstreamVersion) -> dict[str, str]:
    """Rules of the old tarball/patches follow the file in the same role; rules of
    files without a counterpart are dropped."""
    rules = upstream.get("signatures")
    if not rules:
        return {}
    counterpart = dict(zip((old.tarball, *old.patches), (new.tarball, *new.patches), strict=False))
    renamed: dict[str, str] = {}
    kept = CommentedSeq()
    for rule in rules:
        target = counterpart.get(rule["file"])
        if target is None:
            continue
        renamed[rule["file"]] = target
        if "signature" in rule:
            rule["signature"] = manifest_module.default_signature_name(target)
        rule["file"] = target
        kept.append(rule)
    if kept:
        upstream["signatures"] = kept
    else:
        del upstream["signatures"]
    return renamed


def default_change(new: UpstreamVersion, old: UpstreamVersion) -> str:
    return f"Rebase to Linux {new}" if new != old else f"Rebuild of Linux {new}"


def spec_diff(before: str, after: str, name: Path) -> list[str]:
    return list(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), f"a/{name}", f"b/{name}", lineterm=""
        )
    )
