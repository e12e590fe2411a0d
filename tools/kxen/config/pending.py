"""`configs/pending/`: new Kconfig symbols waiting for a packager's decision (kernel-ark's way).

After a bump, every symbol the new tree asks about (listnewconfig: a visible prompt no
layer answers) that the old tree did not define gets a file of its own here, with its
prompt, definition, help text and default as comments and the default as the proposed
line. The directory is not a layer the targets apply: it is a review queue. An entry is
cleared by moving its line into a real layer, or by changing its marker to `reviewed`;
`config check --strict` fails while any entry is still unreviewed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kxen.config import fragments as configs
from kxen.config.fragments import Target, Value, format_setting, show
from kxen.config.model import SymbolInfo
from kxen.support import inputs
from kxen.support.fsutil import atomic_write_text

PENDING_DIR = "pending"
MARKER = "# kxen-pending:"
UNREVIEWED = "unreviewed"
REVIEWED = "reviewed"
_MARKER_RE = re.compile(rf"^{re.escape(MARKER)}\s*(\w+)", re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    symbol: str
    path: Path
    reviewed: bool


def entry_path(configs_dir: Path, symbol: str) -> Path:
    return configs_dir / PENDING_DIR / f"CONFIG_{symbol}.config"


def entries(configs_dir: Path) -> list[Entry]:
    """Every entry of configs/pending/, in name order."""
    directory = configs_dir / PENDING_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.config"), key=lambda p: p.name.encode()):
        text = inputs.read_text(path, configs_dir.parent, inputs.FRAGMENT_FILE)
        marker = _MARKER_RE.search(text)
        reviewed = marker is not None and marker[1] == REVIEWED
        found += [Entry(s.symbol, path, reviewed) for s in configs.parse_fragment(path, text)]
    return found


def unreviewed(
    configs_dir: Path, flavours: Mapping[str, configs.FlavourLayers], tree: Path | None = None
) -> list[Entry]:
    """Entries neither marked reviewed nor answered by a line of a real layer."""
    answered = set()
    for name in _real_layers(flavours):
        upstream = name.startswith(configs.UPSTREAM_LAYER_PREFIX)
        root = tree if upstream and tree else configs_dir.parent
        for path in configs.layer_files(configs_dir, tree, name):
            text = inputs.read_text(path, root, inputs.FRAGMENT_FILE)
            # a bad line is the check's finding to report, not a reason to stop here
            answered |= {s.symbol for s in configs.scan_fragment(path, text)[0]}
    return [e for e in entries(configs_dir) if not e.reviewed and e.symbol not in answered]


def _real_layers(flavours: Mapping[str, configs.FlavourLayers]) -> list[str]:
    names = {n for spec in flavours.values() for layers in spec.layers.values() for n in layers}
    return sorted(n for n in names if n != PENDING_DIR)


def render(info: SymbolInfo, defaults: list[tuple[Target, Value]], origin: str) -> str:
    """One entry: what the packager needs to decide, as comments, and the default as the
    proposed line (the value of the first target; every target's default is listed)."""
    # a comment starting `# CONFIG_` would read as an unset line: name the symbol after `#  `
    lines = [f"# new symbol: CONFIG_{info.name} ({info.type}): {info.prompt or 'no prompt'}"]
    lines += [f"# defined at {where}" for where in info.definitions]
    lines.append(f"# new in {origin}")
    if info.depends:
        lines.append(f"# {info.depends}")
    if info.help:
        lines += ["# help:", *(f"#   {line}".rstrip() for line in info.help.splitlines())]
    by_value: dict[str, list[str]] = {}
    for target, value in defaults:
        by_value.setdefault(show(value), []).append(f"{target.arch}/{target.flavour}")
    lines += [f"# default {value}: {', '.join(names)}" for value, names in by_value.items()]
    lines.append(
        f"{MARKER} {UNREVIEWED}  (move the line below into a layer, or write `{REVIEWED}`)"
    )
    lines.append(format_setting(info.name, defaults[0][1]))
    return "\n".join(lines) + "\n"


def write(configs_dir: Path, rendered: Iterable[tuple[str, str]]) -> list[Path]:
    """Write (symbol, text) entries that are not pending yet; an existing entry (perhaps
    already reviewed) is left as the packager has it."""
    written = []
    for symbol, text in rendered:
        path = entry_path(configs_dir, symbol)
        if path.exists() or path.is_symlink():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        written.append(path)
    return written
