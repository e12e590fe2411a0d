"""`kxen config set/unset`: change one symbol in the right fragment file.

The value goes into one layer: the one named with --layer, or else the layer
every selected arch/flavour shares that the fewest others use (so the change
reaches them and as few bystanders as the layering allows). A line that already sets the
symbol in that layer is rewritten in place, comments untouched; a new symbol
goes into the layer's `kxen-set.config`, kept sorted by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kxen.config import fragments as configs
from kxen.config.fragments import Target, Value, format_setting
from kxen.errors import InputError
from kxen.support import inputs
from kxen.support.fsutil import atomic_write_text

EDIT_FILE = "kxen-set.config"
_EDIT_HEADER = "# Values set with `kxen config set`/`unset`, kept sorted by symbol name.\n"


@dataclass(frozen=True)
class Edit:
    path: Path
    line: int
    before: str | None
    after: str
    original: str | None = None
    """The whole file before the edit (None: the edit created it), to take it back."""


def revert(edits: Sequence[Edit]) -> None:
    """Undo `edits`, last first: a `set` whose value did not take leaves nothing behind."""
    for edit in reversed(edits):
        if edit.original is None:
            edit.path.unlink(missing_ok=True)
        else:
            atomic_write_text(edit.path, edit.original)


def choose_layer(
    targets: Sequence[Target],
    everyone: Sequence[Target],
    flavours: Mapping[str, configs.FlavourLayers],
    explicit: str | None,
) -> str:
    """--layer if given (it must apply to every target); else, of the layers all selected
    targets share, the one the fewest other targets use (the later one on a tie)."""
    lists = [_layers_of(target, flavours) for target in targets]
    if explicit is not None:
        for target, names in zip(targets, lists, strict=True):
            if explicit not in names:
                raise InputError(
                    f"layer {explicit!r} is not used by {target.arch}/{target.flavour} "
                    f"(its layers: {', '.join(names)})"
                )
        return explicit
    shared = [name for name in lists[0] if all(name in other for other in lists[1:])]
    if not shared:
        raise InputError("the selected arches/flavours share no layer: name one with --layer")
    others = [t for t in everyone if t not in targets]
    bystanders = {
        name: sum(name in _layers_of(other, flavours) for other in others) for name in shared
    }
    fewest = min(bystanders.values())
    return [name for name in shared if bystanders[name] == fewest][-1]


def users_of(
    layer: str, everyone: Sequence[Target], flavours: Mapping[str, configs.FlavourLayers]
) -> list[Target]:
    """Every arch/flavour whose final config a change to `layer` can touch."""
    return [target for target in everyone if layer in _layers_of(target, flavours)]


def _layers_of(target: Target, flavours: Mapping[str, configs.FlavourLayers]) -> tuple[str, ...]:
    spec = flavours.get(target.flavour)
    if spec is None or target.arch not in spec.layers:
        raise InputError(f"no layers declared for {target.arch}/{target.flavour}")
    return spec.layers[target.arch]


def write_setting(configs_dir: Path, layer: str, symbol: str, value: Value) -> Edit:
    """Set `symbol` in `layer`: rewrite its line where it is, or add it to the edit file."""
    if layer.startswith(configs.UPSTREAM_LAYER_PREFIX):
        raise InputError(f"layer {layer} is an upstream file: kxen never edits the tree")
    new_line = format_setting(symbol, value)
    checkout = configs_dir.parent
    for path in configs.layer_files(configs_dir, None, layer):
        text = inputs.read_text(path, checkout, inputs.FRAGMENT_FILE)
        for setting in configs.parse_fragment(path, text):
            if setting.symbol == symbol:
                lines = text.splitlines(keepends=True)
                before = lines[setting.line - 1].rstrip("\n")
                lines[setting.line - 1] = new_line + "\n"
                atomic_write_text(path, "".join(lines))
                return Edit(path, setting.line, before, new_line, text)
    path = configs_dir / layer / EDIT_FILE
    exists = path.exists() or path.is_symlink()
    text = inputs.read_text(path, checkout, inputs.FRAGMENT_FILE) if exists else _EDIT_HEADER
    lines = text.splitlines(keepends=True)
    index = _sorted_position(path, text, symbol)
    lines.insert(index, new_line + "\n")
    atomic_write_text(path, "".join(lines))
    return Edit(path, index + 1, None, new_line, text if exists else None)


def _sorted_position(path: Path, text: str, symbol: str) -> int:
    """0-based index before the first setting that sorts after `symbol` (or at the end)."""
    settings = configs.parse_fragment(path, text)
    later = [s.line for s in settings if s.symbol.encode() > symbol.encode()]
    if later:
        return later[0] - 1
    return len(text.splitlines())
