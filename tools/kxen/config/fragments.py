"""Kconfig fragments in layers, resolved into full configs by the kernel's own kconfig.

`configs/layers.yaml` declares, per flavour and arch, the layers applied in
order (kernel-ark style: base -> x86 -> arch -> flavour); a later layer
overrides an earlier one and every value keeps the file:line it came from.
The merged fragment is resolved with `make olddefconfig` (unset symbols take
their Kconfig default) or `make allnoconfig KCONFIG_ALLCONFIG=` (unset symbols
are switched off: how the minimal smoke flavour stays small), in an O= build
directory per tree and arch so the upstream tree itself is never written and
the kconfig tools are compiled once.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kxen import arches
from kxen.config import toolchain
from kxen.errors import ConfigError, InputError
from kxen.support import inputs, integrity
from kxen.support.fsutil import atomic_write_text, exclusive_lock, scratch_dir
from kxen.support.runner import Runner

LAYERS_FILE = "layers.yaml"
UPSTREAM_LAYER_PREFIX = "upstream:"
RESOLVE_MODES = {"olddefconfig": "olddefconfig", "allnoconfig": "allnoconfig"}
CPUS = os.cpu_count() or 1

_SET_RE = re.compile(
    r'^CONFIG_([A-Za-z0-9_]+)=(y|m|n|-?[0-9]+|(?:0[xX])?[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$'
)
"""Hex values may lack the 0x: conf writes a hex default such as `34c` as it is spelled."""
_LOOSE_SET_RE = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
"""A line that names a symbol but whose value no .config can hold (`CONFIG_NR_CPUS=abc`)."""
_UNSET_RE = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
_UNSET_START = "# CONFIG_"
"""A comment starting so must be exactly an unset line: `# CONFIG_X is not set # x` is not."""

Value = str | None
"""A symbol's value as .config spells it (`y`, `m`, `64`, `"text"`); None is "not set"."""


@dataclass(frozen=True)
class Setting:
    symbol: str
    value: Value
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Mismatch:
    """A value a fragment asked for that did not survive Kconfig resolution."""

    setting: Setting
    actual: Value

    def describe(self) -> str:
        return (
            f"{self.setting.where}: CONFIG_{self.setting.symbol}: asked for "
            f"{show(self.setting.value)}, got {show(self.actual)}"
        )


@dataclass(frozen=True)
class Target:
    arch: str
    flavour: str

    def config_name(self, kernelversion: str) -> str:
        """Spec Source name: kernel-<version>-<arch>[-<flavour>]-xen.config."""
        suffix = "" if self.flavour == "default" else f"-{self.flavour}"
        return f"kernel-{kernelversion}-{self.arch}{suffix}-xen.config"


@dataclass(frozen=True)
class FlavourLayers:
    resolve: str
    layers: Mapping[str, tuple[str, ...]]


@dataclass
class Merged:
    """The merged request for one target, with where every value came from."""

    target: Target
    resolve: str
    settings: dict[str, Setting] = field(default_factory=dict)
    overridden: list[tuple[Setting, Setting]] = field(default_factory=list)

    def provenance(self, symbol: str) -> list[Setting]:
        """Every layer line that sets `symbol`, in layer order; the last one wins."""
        chain = [earlier for earlier, _ in self.overridden if earlier.symbol == symbol]
        final = self.settings.get(symbol)
        return [*chain, final] if final else chain

    def fragment_text(self) -> str:
        lines = [f"# kxen: merged layers for {self.target.arch}/{self.target.flavour}"]
        lines += [format_setting(s.symbol, s.value) for s in self.settings.values()]
        return "\n".join(lines) + "\n"


def show(value: Value) -> str:
    return "is not set" if value is None else value


def format_setting(symbol: str, value: Value) -> str:
    return f"# CONFIG_{symbol} is not set" if value is None else f"CONFIG_{symbol}={value}"


# --- reading fragments -----------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A fragment line kxen cannot use, kept so that every one is reported in one pass.

    `symbol` and `value` are filled when the line names a symbol (`CONFIG_X=abc`), so a
    caller that knows the tree's Kconfig can say what that symbol takes instead."""

    file: Path
    line: int
    message: str
    symbol: str | None = None
    value: str | None = None

    def where(self, root: Path | None = None) -> str:
        """file:line, relative to `root` (the checkout) when the file is inside it."""
        if root is not None and self.file.is_relative_to(root):
            return f"{self.file.relative_to(root)}:{self.line}"
        return f"{self.file}:{self.line}"

    def describe(self, root: Path | None = None) -> str:
        return f"{self.where(root)}: {self.message}"


def problems_error(problems: list[Problem], root: Path | None = None) -> InputError:
    """One error naming every problem (a single one is the message itself)."""
    lines = [p.describe(root) for p in problems]
    if len(lines) == 1:
        return InputError(lines[0])
    return InputError(f"{len(lines)} fragment lines cannot be used", details=lines)


def scan_fragment(path: Path, text: str) -> tuple[list[Setting], list[Problem]]:
    """Settings of one fragment and every line that is not one, in a single pass."""
    settings: list[Setting] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or (line.startswith("#") and not line.startswith(_UNSET_START)):
            continue
        if match := _SET_RE.match(line):
            value: Value = None if match[2] == "n" else match[2]
            settings.append(Setting(match[1], value, path, number))
        elif match := _UNSET_RE.match(line):
            settings.append(Setting(match[1], None, path, number))
        else:
            problems.append(_malformed(path, number, line))
    return settings, problems


def _malformed(path: Path, number: int, line: str) -> Problem:
    message = (
        f"malformed line {inputs.excerpt(line)} (expected CONFIG_X=value or "
        "'# CONFIG_X is not set')"
    )
    if match := _LOOSE_SET_RE.match(line):
        return Problem(path, number, message, match[1], match[2])
    return Problem(path, number, message)


def parse_fragment(
    path: Path, text: str | None = None, *, root: Path | None = None
) -> list[Setting]:
    """Settings of one fragment or .config; `CONFIG_X=n` reads as "not set".

    Without `text` the file is read through the input gate, inside `root` (the checkout,
    or the tree for an upstream layer; default: the file's directory). Every malformed
    line is named in the one error raised."""
    if text is None:
        text = inputs.read_text(path, root or path.parent, inputs.FRAGMENT_FILE)
    settings, problems = scan_fragment(path, text)
    if problems:
        raise problems_error(problems)
    return settings


def parse_config_values(text: str) -> dict[str, Value]:
    return {s.symbol: s.value for s in parse_fragment(Path(".config"), text)}


def load_layers(configs_dir: Path) -> dict[str, FlavourLayers]:
    path = configs_dir / LAYERS_FILE
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: missing (it declares the layer order)")
    data, _ = inputs.load_yaml(inputs.read_text(path, configs_dir.parent), str(path))
    if (
        not isinstance(data, dict)
        or set(data) != {"flavours"}
        or not isinstance(data["flavours"], dict)
    ):
        raise InputError(f"{path}: expected a single 'flavours:' mapping")
    flavours: dict[str, FlavourLayers] = {}
    for flavour, spec in data["flavours"].items():
        flavours[flavour] = _flavour_layers(path, flavour, spec)
    return flavours


def _flavour_layers(path: Path, flavour: str, spec: Any) -> FlavourLayers:
    where = f"{path}: flavours.{flavour}"
    if not isinstance(spec, dict) or set(spec) - {"resolve", "layers"}:
        raise InputError(f"{where}: expected keys 'resolve' and 'layers'")
    resolve = spec.get("resolve")
    if resolve not in RESOLVE_MODES:
        raise InputError(f"{where}.resolve: expected one of {', '.join(RESOLVE_MODES)}")
    layers = spec.get("layers")
    if not isinstance(layers, dict):
        raise InputError(f"{where}.layers: expected a mapping of arch to layer list")
    result: dict[str, tuple[str, ...]] = {}
    for arch, names in layers.items():
        if arch not in arches.ARCHES:
            expected = " or ".join(arches.names())
            raise InputError(f"{where}.layers.{arch}: unknown arch (expected {expected})")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{where}.layers.{arch}: expected a list of layer names")
        result[arch] = tuple(names)
    return FlavourLayers(resolve, result)


def layer_files(configs_dir: Path, tree: Path | None, layer: str) -> list[Path]:
    if layer.startswith(UPSTREAM_LAYER_PREFIX):
        relative = layer[len(UPSTREAM_LAYER_PREFIX) :]
        if tree is None:
            raise InputError(f"layer {layer}: needs the upstream tree")
        if ".." in Path(relative).parts or relative.startswith("/"):
            raise InputError(f"layer {layer}: must be a path inside the tree")
        path = tree / relative
        inputs.contained(path, tree)
        if not path.is_file():
            raise InputError(f"layer {layer}: {relative} does not exist in this tree")
        return [path]
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", layer) or ".." in layer:
        raise InputError(
            f"{configs_dir / LAYERS_FILE}: layer {inputs.excerpt(layer)} is not a directory name"
        )
    directory = configs_dir / layer
    inputs.contained(directory, configs_dir.parent)
    if not directory.is_dir():
        raise InputError(
            f"{configs_dir / LAYERS_FILE}: layer {layer!r} has no directory {directory}"
        )
    return sorted(directory.glob("*.config"), key=lambda p: p.name.encode())


def merge(
    configs_dir: Path,
    target: Target,
    tree: Path | None,
    flavours: Mapping[str, FlavourLayers],
    problems: list[Problem] | None = None,
) -> Merged:
    """The layers of `target` merged in order, every line kept with its file:line.

    Every unusable line of every layer (malformed, or set twice in one layer) is found
    in one pass: with a `problems` list they are appended there and skipped (a checker
    reports them with the rest), without one they are raised together."""
    merged = Merged(target, _flavour_of(configs_dir, target, flavours).resolve)
    found: list[Problem] = []
    for layer in layer_names(configs_dir, target, flavours):
        in_layer = _read_layer(configs_dir, tree, layer, found)
        for symbol, setting in in_layer.items():
            if previous := merged.settings.pop(symbol, None):
                merged.overridden.append((previous, setting))
            merged.settings[symbol] = setting
    if problems is not None:
        problems += found
    elif found:
        raise problems_error(found, configs_dir.parent)
    return merged


def _flavour_of(
    configs_dir: Path, target: Target, flavours: Mapping[str, FlavourLayers]
) -> FlavourLayers:
    spec = flavours.get(target.flavour)
    if spec is None:
        raise InputError(f"{configs_dir / LAYERS_FILE}: no flavour {target.flavour!r}")
    return spec


def layer_names(
    configs_dir: Path, target: Target, flavours: Mapping[str, FlavourLayers]
) -> tuple[str, ...]:
    """The layers `target` applies, in order."""
    names = _flavour_of(configs_dir, target, flavours).layers.get(target.arch)
    if names is None:
        raise InputError(
            f"{configs_dir / LAYERS_FILE}: flavour {target.flavour} declares no layers for "
            f"{target.arch}"
        )
    return names


def _read_layer(
    configs_dir: Path, tree: Path | None, layer: str, problems: list[Problem]
) -> dict[str, Setting]:
    """One layer's settings by symbol; bad lines and repeats go to `problems`."""
    in_layer: dict[str, Setting] = {}
    root = tree if layer.startswith(UPSTREAM_LAYER_PREFIX) and tree else configs_dir.parent
    for path in layer_files(configs_dir, tree, layer):
        text = inputs.read_text(path, root, inputs.FRAGMENT_FILE)
        settings, bad = scan_fragment(path, text)
        problems += bad
        for setting in settings:
            if first := in_layer.get(setting.symbol):
                where = Problem(first.file, first.line, "").where(configs_dir.parent)
                problems.append(
                    Problem(
                        setting.file,
                        setting.line,
                        f"CONFIG_{setting.symbol} is already set in this layer at {where}",
                        setting.symbol,
                    )
                )
                continue
            in_layer[setting.symbol] = setting
    return in_layer


@dataclass(frozen=True)
class LayerFiles:
    """One layer of a target as `kxen config layers` shows it."""

    name: str
    files: tuple[tuple[Path, int], ...]
    """(fragment, number of lines) in the order they are read; empty for an upstream layer
    when no tree is at hand."""


def target_layers(
    configs_dir: Path, target: Target, flavours: Mapping[str, FlavourLayers]
) -> list[LayerFiles]:
    """The layers `target` applies, in order, with their files and line counts: what a
    packager needs to see to know where a line goes and what it reaches."""
    found = []
    for name in layer_names(configs_dir, target, flavours):
        files: list[tuple[Path, int]] = []
        if not name.startswith(UPSTREAM_LAYER_PREFIX):
            for path in layer_files(configs_dir, None, name):
                text = inputs.read_text(path, configs_dir.parent, inputs.FRAGMENT_FILE)
                files.append((path, len(text.splitlines())))
        found.append(LayerFiles(name, tuple(files)))
    return found


# --- resolving with the kernel's kconfig ------------------------------------


@dataclass(frozen=True)
class Resolved:
    target: Target
    text: str
    values: dict[str, Value]
    mismatches: tuple[Mismatch, ...]
    merged: Merged


def resolve(
    merged: Merged,
    tree: Path,
    work_root: Path,
    runner: Runner,
    toolchain_key: str = "",
    quarantine: integrity.Quarantine | None = None,
) -> Resolved:
    """Run kconfig on the merged fragments in a per-arch O= dir (kconfig built once).

    With a `toolchain_key` (see `toolchain.fingerprint`) the result is cached by
    everything kconfig reads: the tree (`work_root` is per tree), arch, mode,
    fragments and toolchain; an unchanged checkout then resolves in milliseconds.
    A cached result and the O= dir are checked against the digests recorded when they
    were made; one that fails is set aside (default: in `work_root/corrupt`) and made
    again, so a changed byte never reaches a shipped config."""
    arch = arches.get(merged.target.arch).kernel_arch
    fragment = merged.fragment_text()
    quarantine = quarantine or integrity.Quarantine(work_root / integrity.CORRUPT_DIR)
    cached = None
    if toolchain_key:
        key = hashlib.sha256(
            "\0".join((arch, merged.resolve, toolchain_key, fragment)).encode()
        ).hexdigest()
        cached = work_root / "resolved" / f"{key}.config"
    text = _cached_config(cached, quarantine) if cached is not None else None
    if text is None:
        objdir = work_root / f"kconfig-{arch}"
        text = _run_kconfig(merged, fragment, tree, objdir, runner, quarantine)
        if cached is not None:
            integrity.write_sealed(cached, text.encode())
    values = parse_config_values(text)
    # A fragment may record what its author's toolchain probed (a full distro config does);
    # this host's tools decide those values, so they are not requests that can be lost.
    mismatches = tuple(
        Mismatch(setting, values.get(symbol))
        for symbol, setting in merged.settings.items()
        if values.get(symbol) != setting.value and not toolchain.is_toolchain_symbol(symbol)
    )
    return Resolved(merged.target, text, values, mismatches, merged)


def _cached_config(path: Path, quarantine: integrity.Quarantine) -> str | None:
    try:
        data = integrity.read_sealed(path)
    except integrity.Corrupt as corrupt:
        parts = integrity.sealed_parts(path)
        quarantine.set_aside(parts, corrupt, "resolved config", "resolving it again")
        return None
    return None if data is None else data.decode()


_KCONFIG_OUTPUTS = (".config", ".config.old")
"""What every kconfig run rewrites in the O= dir: outside its manifest."""


def _run_kconfig(
    merged: Merged,
    fragment: str,
    tree: Path,
    objdir: Path,
    runner: Runner,
    quarantine: integrity.Quarantine,
) -> str:
    arch = arches.get(merged.target.arch).kernel_arch
    lock = objdir.with_name(f"{objdir.name}.lock")
    with exclusive_lock(lock, f"kconfig directory {objdir}", wait=True):
        _check_objdir(objdir, quarantine)
        objdir.mkdir(parents=True, exist_ok=True)
        config = objdir / ".config"
        config.unlink(missing_ok=True)
        try:
            with scratch_dir(objdir.parent, ".merge-") as scratch:
                fragment_file = scratch / "merged.config"
                fragment_file.write_text(fragment)
                make: list[str | Path] = ["make", "-s", "-C", tree, f"O={objdir}", f"ARCH={arch}"]
                if cc := toolchain.compiler():
                    make.append(f"CC={cc}")  # the Makefile's own CC= wins over the environment
                if merged.resolve == "allnoconfig":
                    command = [*make, f"KCONFIG_ALLCONFIG={fragment_file}", "allnoconfig"]
                else:
                    config.write_text(fragment)
                    command = [*make, "olddefconfig"]
                result = runner.run(command, check=False)
        except BaseException:
            shutil.rmtree(objdir, ignore_errors=True)  # half-built by us: nothing to keep
            raise
        # What make built from the verified tree: the record the next run checks against.
        integrity.record(objdir, objdir / integrity.MANIFEST_NAME, ignore=_KCONFIG_OUTPUTS)
        if not result.ok:
            raise ConfigError(
                f"{merged.target.arch}/{merged.target.flavour}: kconfig failed",
                details=result.output.strip().splitlines()[-10:],
            )
        return config.read_text()


def _check_objdir(objdir: Path, quarantine: integrity.Quarantine) -> None:
    """The O= dir holds the compiled `conf` that decides every value: verify it whole."""
    if not objdir.exists() and not objdir.is_symlink():
        return
    try:
        integrity.verify(objdir, objdir / integrity.MANIFEST_NAME, ignore=_KCONFIG_OUTPUTS)
    except integrity.Corrupt as corrupt:
        quarantine.set_aside(objdir, corrupt, "kconfig build directory", "building it again")


def generate(
    configs_dir: Path,
    targets: Iterable[Target],
    tree: Path,
    work_root: Path,
    runner: Runner,
    toolchain_key: str = "",
    quarantine: integrity.Quarantine | None = None,
) -> list[Resolved]:
    """Resolve every target; refuse if any requested value did not survive.

    Targets run concurrently (kconfig is a subprocess): each arch has its own O= dir
    under a lock, so two arches proceed in parallel and two flavours of one arch take
    turns instead of racing on the kconfig tools kbuild compiles there."""
    flavours = load_layers(configs_dir)
    merged = [merge(configs_dir, t, tree, flavours) for t in targets]

    def one(target: Merged) -> Resolved:
        return resolve(target, tree, work_root, runner, toolchain_key, quarantine)

    with concurrent.futures.ThreadPoolExecutor(max(1, min(len(merged), CPUS))) as pool:
        try:
            results = list(pool.map(one, merged))
        except BaseException:
            runner.stop_all()  # Ctrl-C reaches this thread only: stop the other makes too
            raise
    lost = [m for r in results for m in r.mismatches]
    if lost:
        raise ConfigError(
            f"{len(lost)} requested config value(s) did not survive kconfig",
            details=[m.describe() for m in lost],
        )
    return results


def write_configs(results: Iterable[Resolved], kernelversion: str, outdir: Path) -> list[Path]:
    paths = []
    for result in results:
        path = outdir / result.target.config_name(kernelversion)
        atomic_write_text(path, result.text)
        paths.append(path)
    return paths
