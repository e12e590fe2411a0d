"""A Kconfig model of a real kernel tree, for checking and explaining configs.

The kernel's own `scripts/kconfig` stays the authority that writes the
shipped configs (see `kxen.configs`). This module loads the same Kconfig
files with Kconfiglib 14.1.0 so that kxen can say *why* a requested value did
not survive: the unmet `depends on` with the value of each symbol in it, the
symbol that `select`s it, the choice that excludes it, and where it is defined.
Its `resolve()` reproduces `make olddefconfig` / `make allnoconfig
KCONFIG_ALLCONFIG=` exactly (the integration tests compare every symbol).

Reading the tree faithfully takes two things Kconfiglib does not do itself:

* Kconfig syntax newer than Kconfiglib: the bare `modules` attribute (Linux
  5.12+, `kernel/module/Kconfig`) is read as the `option modules` Kconfiglib
  knows, and any other line made of one unknown lower-case word (an
  attribute such as 6.18's `transitional`) is dropped and reported in
  `KconfigModel.ignored_attributes`. Files are rewritten line by line while
  they are read (line numbers are kept); the tree is never written.
* The environment the kernel Makefile exports to `conf`: `srctree`, `ARCH`,
  `SRCARCH`, `CC`/`LD`/... (`$(CROSS_COMPILE)gcc` etc.), `KERNELVERSION` and
  `CC_VERSION_TEXT`. `scripts/Kconfig.include` runs the toolchain through
  `$(shell,...)`, so symbols such as `GCC_VERSION` or `CC_HAS_*` come out as
  the compiler on this host makes them, like `make olddefconfig` does. Those
  commands run in a scratch directory (as `conf` runs in the O= directory).

Loading 6.1 for x86 takes about 5 s (2 s of parsing, the rest is the ~90
toolchain probes `$(shell,...)` runs) and 60 MiB peak RSS; `resolve()` takes
0.1-0.3 s. Kconfiglib reads its settings and `$(VAR)`s from `os.environ`, so
`load()` sets the Makefile's environment there under a lock while parsing and
restores it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import kconfiglib  # type: ignore[import-untyped]

from . import integrity, toolchain
from .configs import KERNEL_ARCH, RESOLVE_MODES, Value, format_setting, show
from .errors import ConfigError, InputError, KxenError

SymbolType = Literal["bool", "tristate", "int", "hex", "string"]
ResolveBase = Literal["olddefconfig", "allnoconfig"]
ReasonKind = Literal[
    "satisfied",
    "undefined",
    "invalid",
    "depends",
    "modules",
    "selected",
    "choice",
    "no_prompt",
    "prompt_condition",
    "unknown",
]

_SRCARCH = {"i386": "x86", "x86_64": "x86"}
_PROBE_VARIABLES = (
    "srctree",
    "ARCH",
    "SRCARCH",
    "CC",
    "CPP",
    "LD",
    "AR",
    "NM",
    "OBJCOPY",
    "OBJDUMP",
    "READELF",
    "STRIP",
    "HOSTCC",
    "HOSTCXX",
    "RUSTC",
    "BINDGEN",
    "PAHOLE",
    "PERL",
    "PYTHON3",
    "AWK",
    "LEX",
    "YACC",
    "CC_VERSION_TEXT",
    "CLANG_FLAGS",
    "USERCFLAGS",
    "USERLDFLAGS",
    "KCFLAGS",
)
"""Make variables the probes' command lines expand (with the tools they name)."""
_OPTION_WORDS = frozenset({"modules", "allnoconfig_y", "defconfig_list"})
"""Attributes newer kernels write bare and Kconfiglib only knows as `option <word>`."""

_INT_RE = re.compile(r"-?[0-9]+")
_HEX_RE = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
_NUMBER_RE = re.compile(r"-?[0-9]+|0[xX][0-9a-fA-F]+")
_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_HELP_RE = re.compile(r"\s*-*help-*\s*")
_BARE_WORD_RE = re.compile(r"(\s*)([a-z][a-z0-9_]*)\s*(?:#.*)?")
_BARE_WORD_LINE_RE = re.compile(r"^[^\S\n]*([a-z][a-z0-9_]*)[^\S\n]*(?:#.*)?$", re.MULTILINE)

_TYPE_NAMES: dict[int, SymbolType] = {
    kconfiglib.BOOL: "bool",
    kconfiglib.TRISTATE: "tristate",
    kconfiglib.INT: "int",
    kconfiglib.HEX: "hex",
    kconfiglib.STRING: "string",
}
_TRI = {None: 0, "n": 0, "m": 1, "y": 2}
_LOAD_LOCK = threading.Lock()

# Operator precedence for printing expressions like the C tools do: a
# sub-expression is parenthesised only when it binds less tightly than its parent.
_OR, _AND, _NOT, _RELATION, _ATOM = 1, 2, 3, 4, 5
_RELATIONS = {
    kconfiglib.EQUAL: "=",
    kconfiglib.UNEQUAL: "!=",
    kconfiglib.LESS: "<",
    kconfiglib.LESS_EQUAL: "<=",
    kconfiglib.GREATER: ">",
    kconfiglib.GREATER_EQUAL: ">=",
}


# --- reading a tree ---------------------------------------------------------


@dataclass(frozen=True)
class IgnoredAttribute:
    """A Kconfig line Kconfiglib cannot parse that was dropped while reading."""

    file: str
    line: int
    word: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def rewrite_kconfig_text(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Kconfig text as Kconfiglib 14.1.0 can read it, with the same line numbers.

    A line holding only `modules` (or another bare `option` word) becomes
    `option <word>`; a line holding only some other lower-case word that is no
    Kconfig keyword (an attribute newer than Kconfiglib) becomes blank and is
    returned as (line number, word). Help texts are left alone.
    """
    if not any(_needs_rewrite(word) for word in _BARE_WORD_LINE_RE.findall(text)):
        return text, []  # most files: no line a rewrite could touch (cheap pre-scan)
    lines = text.splitlines(keepends=True)
    dropped: list[tuple[int, str]] = []
    help_indent: int | None = None  # inside a help text: its indentation (-1: not yet known)
    continued = False
    for index, line in enumerate(lines):
        if help_indent is not None:
            if not line.strip():
                continue
            indent = _indentation(line)
            if help_indent < 0:
                help_indent = indent if indent else None
                if help_indent is not None:
                    continue
            elif indent >= help_indent:
                continue
            else:
                help_indent = None
        if continued:
            continued = line.endswith("\\\n")
            continue
        continued = line.endswith("\\\n")
        if _HELP_RE.fullmatch(line):
            help_indent = -1
            continue
        match = _BARE_WORD_RE.fullmatch(line.rstrip("\n"))
        if not match:
            continue
        word = match[2]
        newline = "\n" if line.endswith("\n") else ""
        if word in _OPTION_WORDS:
            lines[index] = f"{match[1]}option {word}{newline}"
        elif _is_unknown_word(word):
            lines[index] = newline
            dropped.append((index + 1, word))
    return "".join(lines), dropped


def _needs_rewrite(word: str) -> bool:
    return word in _OPTION_WORDS or _is_unknown_word(word)


def _indentation(line: str) -> int:
    expanded = line.expandtabs()
    return len(expanded) - len(expanded.lstrip())


def _is_unknown_word(word: str) -> bool:
    keyword = cast(Callable[[str], object], kconfiglib._get_keyword)
    return keyword(word) is None


class ProbeCache:
    """Outputs of the `$(shell,...)` toolchain probes of one tree, arch and toolchain.

    They are ~60% of a Kconfig load and only change with the toolchain, so they are
    kept in a file named by `toolchain.fingerprint()` and the kbuild tool variables,
    sealed with its SHA256 (`integrity`). A file that fails its seal is never used: with
    a `quarantine` it is set aside, else it is left alone (neither read nor overwritten)
    for `check_directory` to set aside where the warning can be reported."""

    def __init__(self, path: Path | None, quarantine: integrity.Quarantine | None = None) -> None:
        self.path = path
        self.outputs: dict[str, list[str]] = {}
        self.dirty = False
        if path is not None:
            self.outputs = self._load(path, quarantine)

    def _load(self, path: Path, quarantine: integrity.Quarantine | None) -> dict[str, list[str]]:
        try:
            data = integrity.read_sealed(path)
        except integrity.Corrupt as corrupt:
            if quarantine is None:
                self.path = None
            else:
                parts = integrity.sealed_parts(path)
                quarantine.set_aside(parts, corrupt, "Kconfig probe cache", "probing again")
            return {}
        with contextlib.suppress(ValueError):
            loaded = json.loads(data or b"{}")
            if isinstance(loaded, dict):
                return loaded
        return {}

    @classmethod
    def check_directory(cls, directory: Path, quarantine: integrity.Quarantine) -> None:
        """Set aside every probe cache in `directory` that fails its seal."""
        for path in sorted(directory.glob("probes-*.json")):
            cls(path, quarantine)

    @classmethod
    def for_environment(cls, directory: Path | None, env: Mapping[str, str]) -> ProbeCache:
        if directory is None:
            return cls(None)
        tools = {key: env.get(key, "") for key in _PROBE_VARIABLES}
        key = hashlib.sha256(
            (toolchain.fingerprint(env) + json.dumps(tools, sort_keys=True)).encode()
        ).hexdigest()
        return cls(directory / f"probes-{key[:32]}.json")

    def run(self, command: str, scratch: Path, env: Mapping[str, str]) -> tuple[str, str]:
        cached = self.outputs.get(command)
        if cached is not None and len(cached) == 2:
            return cached[0], cached[1]
        result = subprocess.run(
            command, shell=True, capture_output=True, cwd=scratch, env=env, check=False
        )
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        self.outputs[command] = [stdout, stderr]
        self.dirty = True
        return stdout, stderr

    def save(self) -> None:
        if self.path is not None and self.dirty:
            text = json.dumps(self.outputs, sort_keys=True)
            with contextlib.suppress(KxenError):
                integrity.write_sealed(self.path, text.encode())


class _TreeKconfig(kconfiglib.Kconfig):  # type: ignore[misc]
    """Kconfiglib's parser, reading each Kconfig file through rewrite_kconfig_text()."""

    def __init__(self, scratch: Path, env: Mapping[str, str], probes: ProbeCache) -> None:
        self.kxen_scratch = scratch
        self.kxen_env = dict(env)
        self.kxen_probes = probes
        self.kxen_ignored: list[IgnoredAttribute] = []
        super().__init__("Kconfig", warn=True, warn_to_stderr=False)

    def _open(self, filename: str, mode: str) -> Any:
        handle = super()._open(filename, mode)
        if mode != "r" or not getattr(self, "_parsing_kconfigs", False):
            return handle
        with handle:
            text, dropped = rewrite_kconfig_text(handle.read())
        relative = filename
        prefix = cast(str, self._srctree_prefix)
        if relative.startswith(prefix):
            relative = relative[len(prefix) :]
        self.kxen_ignored += [IgnoredAttribute(relative, n, w) for n, w in dropped]
        return io.StringIO(text)


def _shell(kconf: Any, _name: str, command: str) -> str:
    """`$(shell,...)` as Kconfiglib runs it, but in a scratch directory with the
    Makefile's environment (`cc-option` creates `.tmp_$$` in the current directory)."""
    tree_kconf = cast(_TreeKconfig, kconf)
    stdout, stderr = tree_kconf.kxen_probes.run(
        command, tree_kconf.kxen_scratch, tree_kconf.kxen_env
    )
    if stderr:
        kconf._warn(
            f"'{command}' wrote to stderr: {' '.join(stderr.splitlines())}",
            kconf.filename,
            kconf.linenr,
        )
    return "\n".join(stdout.splitlines()).rstrip("\n").replace("\n", " ")


functions = {"shell": (_shell, 1, 1)}
"""Read by Kconfiglib through KCONFIG_FUNCTIONS=kxen.kconfig while loading."""


def _kernel_version(tree: Path) -> str:
    """KERNELVERSION as the top Makefile computes it."""
    try:
        text = (tree / "Makefile").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{tree}: no kernel Makefile ({exc.strerror})") from None
    fields: dict[str, str] = {}
    for line in text.splitlines()[:40]:
        match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$", line)
        if match:
            fields.setdefault(match[1], match[2])
    if not fields.get("VERSION"):
        raise InputError(f"{tree}/Makefile: no VERSION: not a kernel tree")
    version = fields["VERSION"]
    if fields.get("PATCHLEVEL"):
        version += f".{fields['PATCHLEVEL']}"
        if fields.get("SUBLEVEL"):
            version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def kbuild_environment(
    tree: Path, kernel_arch: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `make ARCH=<kernel_arch> *config` gives scripts/kconfig/conf.

    Mirrors the top-level Makefile for a GCC build: it unexports LC_ALL and
    CONFIG_, exports LC_COLLATE/LC_NUMERIC=C, the tool variables built from
    $(CROSS_COMPILE), SRCARCH, KERNELVERSION and CC_VERSION_TEXT (the first
    line of `$(CC) --version` without '#'). Everything else is inherited.
    """
    base = os.environ if base is None else base
    if base.get("LLVM"):
        raise ConfigError("LLVM= (clang) builds are not modelled; unset LLVM")
    env = {
        key: value
        for key, value in base.items()
        if key not in ("LC_ALL", "CONFIG_") and not key.startswith("KCONFIG_")
    }
    cross = base.get("CROSS_COMPILE", "")
    cc = f"{cross}gcc"
    env.update(
        {
            "srctree": str(tree),
            "ARCH": kernel_arch,
            "SRCARCH": _SRCARCH.get(kernel_arch, kernel_arch),
            "KERNELVERSION": _kernel_version(tree),
            "CC": cc,
            "CPP": f"{cc} -E",
            "LD": f"{cross}ld",
            "AR": f"{cross}ar",
            "NM": f"{cross}nm",
            "OBJCOPY": f"{cross}objcopy",
            "OBJDUMP": f"{cross}objdump",
            "READELF": f"{cross}readelf",
            "STRIP": f"{cross}strip",
            "HOSTCC": "gcc",
            "HOSTCXX": "g++",
            "RUSTC": "rustc",
            "RUSTDOC": "rustdoc",
            "RUSTFMT": "rustfmt",
            "BINDGEN": "bindgen",
            "CARGO": "cargo",
            "PAHOLE": "pahole",
            "PERL": "perl",
            "PYTHON3": "python3",
            "AWK": "awk",
            "LEX": "flex",
            "YACC": "bison",
            "BASH": "bash",
            "LC_COLLATE": "C",
            "LC_NUMERIC": "C",
        }
    )
    try:
        version = subprocess.run(
            [cc, "--version"],
            capture_output=True,
            text=True,
            env={**env, "LC_ALL": "C"},
            check=False,
        ).stdout
    except OSError:
        version = ""
    first = version.splitlines()[0] if version.strip() else ""
    if not first:
        raise ConfigError(f"C compiler '{cc}' not found (Kconfig runs it to probe features)")
    env["CC_VERSION_TEXT"] = first.replace("#", "")
    return env


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ == env inside the block (only differing keys are touched)."""
    saved = dict(os.environ)
    _set_environment(env)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(env: Mapping[str, str]) -> None:
    for key in set(os.environ) - set(env):
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def load(tree: Path, arch: str, probe_cache: Path | None = None) -> KconfigModel:
    """Parse the Kconfig files of `tree` for `arch` (x86_64 or i686). Never writes the tree.

    With `probe_cache` (a directory per tree), toolchain probe outputs are reused
    from earlier loads with the same toolchain."""
    kernel_arch = KERNEL_ARCH.get(arch)
    if kernel_arch is None:
        raise InputError(f"unknown arch {arch!r} (expected {' or '.join(KERNEL_ARCH)})")
    tree = tree.resolve()
    if not (tree / "Kconfig").is_file():
        raise InputError(f"{tree}: no top-level Kconfig: not a kernel tree")
    env = kbuild_environment(tree, kernel_arch)
    env["KCONFIG_FUNCTIONS"] = __name__
    probes = ProbeCache.for_environment(probe_cache, env)
    start = time.monotonic()
    with (
        _LOAD_LOCK,
        tempfile.TemporaryDirectory(prefix="kxen-kconfig-") as scratch,
        _environment(env),
    ):
        try:
            kconf = _TreeKconfig(Path(scratch), env, probes)
        except (kconfiglib.KconfigError, OSError) as exc:
            raise ConfigError(f"{tree}: Kconfig cannot be read: {str(exc).strip()}") from None
    probes.save()
    return KconfigModel(kconf, tree, arch, time.monotonic() - start)


# --- results ----------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A symbol that `select`s or `imply`s another one."""

    symbol: str
    value: Value
    condition: str | None
    """The select's own `if` condition with current values; None when unconditional."""
    active: bool
    """Whether it takes effect now (the symbol and its condition are not n)."""

    def describe(self) -> str:
        text = f"{self.symbol} (={_show_tri(self.value)})"
        return f"{text} if {self.condition}" if self.condition else text


@dataclass(frozen=True)
class SymbolInfo:
    name: str
    type: SymbolType
    prompt: str | None
    definitions: tuple[str, ...]
    """file:line of every `config` entry, relative to the tree."""
    value: Value
    """After the last resolve(), as .config spells it (None: not set / not written)."""
    depends: str | None
    """`depends on A (=y) && ...` with current values; None without dependencies."""
    selected_by: tuple[Selector, ...]
    implied_by: tuple[Selector, ...]
    help: str | None
    choice: str | None = None
    """The choice it belongs to (`choice "prompt"`), if any."""
    choice_selection: str | None = None
    defaults: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    settable: bool = False
    """It has a prompt visible now, so a .config value can take effect."""

    def describe(self) -> str:
        lines = [f"CONFIG_{self.name} ({self.type}) = {show(self.value)}"]
        if self.prompt:
            lines.append(f"  prompt: {self.prompt}")
        else:
            lines.append("  no prompt: the value comes from its defaults")
        lines += [f"  defined at {where}" for where in self.definitions]
        if self.depends:
            lines.append(f"  {self.depends}")
        lines += [f"  selected by {s.describe()}" for s in self.selected_by]
        lines += [f"  implied by {s.describe()}" for s in self.implied_by]
        lines += [f"  default {d}" for d in self.defaults]
        lines += [f"  range {r}" for r in self.ranges]
        if self.choice:
            lines.append(f"  member of {self.choice}, selection: {self.choice_selection}")
        if self.help:
            lines += ["  help:", *(f"    {line}" for line in self.help.splitlines())]
        return "\n".join(lines)


@dataclass(frozen=True)
class Reason:
    """Why `symbol` did not get `wanted`, in Kconfig terms."""

    symbol: str
    wanted: Value
    actual: Value
    kind: ReasonKind
    detail: str
    definitions: tuple[str, ...] = ()
    selectors: tuple[Selector, ...] = ()
    choice: str | None = None
    choice_selection: str | None = None

    def describe(self) -> str:
        where = f" ({', '.join(self.definitions)})" if self.definitions else ""
        return (
            f"CONFIG_{self.symbol}{where}: wanted {show(self.wanted)}, got "
            f"{show(self.actual)}: {self.detail}"
        )


@dataclass
class _Select:
    selector: Any
    node: Any
    condition: Any  # full condition (own `if` && the selector's dependencies)


@dataclass
class _Index:
    selects: dict[str, list[_Select]] = field(default_factory=dict)
    implies: dict[str, list[_Select]] = field(default_factory=dict)


# --- the model --------------------------------------------------------------


class KconfigModel:
    """The Kconfig symbols of one tree and arch, with the values of the last resolve()."""

    def __init__(self, kconf: Any, tree: Path, arch: str, parse_seconds: float) -> None:
        self._kconf = kconf
        self.tree = tree
        self.arch = arch
        self.parse_seconds = parse_seconds
        self.warnings: tuple[str, ...] = tuple(cast(list[str], kconf.warnings))
        self.ignored_attributes: tuple[IgnoredAttribute, ...] = tuple(kconf.kxen_ignored)
        self._last: tuple[dict[str, Value], ResolveBase] = ({}, "olddefconfig")
        kconf.warn = False
        self._index = _Index()
        for sym in kconf.unique_defined_syms:
            for node in sym.nodes:
                for target, cond in node.selects:
                    self._index.selects.setdefault(target.name, []).append(_Select(sym, node, cond))
                for target, cond in node.implies:
                    self._index.implies.setdefault(target.name, []).append(_Select(sym, node, cond))

    # --- symbols ----------------------------------------------------------

    def _sym(self, symbol: str) -> Any:
        name = symbol.removeprefix("CONFIG_")
        sym = self._kconf.syms.get(name)
        if sym is None or not sym.nodes:
            return None
        return sym

    def _require(self, symbol: str) -> Any:
        sym = self._sym(symbol)
        if sym is None:
            raise InputError(f"CONFIG_{symbol.removeprefix('CONFIG_')} is not defined in Kconfig")
        return sym

    def defined(self, symbol: str) -> bool:
        sym = self._sym(symbol)
        return sym is not None and sym.orig_type in _TYPE_NAMES

    def symbols(self) -> list[str]:
        """Every defined symbol, in Kconfig order."""
        return [s.name for s in self._kconf.unique_defined_syms if s.orig_type in _TYPE_NAMES]

    def symbol_type(self, symbol: str) -> SymbolType:
        sym = self._require(symbol)
        kind = _TYPE_NAMES.get(sym.orig_type)
        if kind is None:
            raise InputError(f"CONFIG_{sym.name} has no type in Kconfig")
        return kind

    def valid_value(self, symbol: str, value: Value) -> bool:
        """Whether `value` (as .config spells it) is acceptable for the symbol's type and
        active `range`. "Not set" (None) only exists for bool and tristate symbols."""
        return self._invalid(self._require(symbol), value) is None

    def _invalid(self, sym: Any, value: Value) -> str | None:
        kind = _TYPE_NAMES.get(sym.orig_type)
        if kind is None:
            return f"CONFIG_{sym.name} has no type"
        if kind in ("bool", "tristate"):
            allowed = ("y", "m", "n") if kind == "tristate" else ("y", "n")
            if value is None or value in allowed:
                return None
            return f"{value!r} is not a {kind} value ({'/'.join(allowed)})"
        if value is None:
            article = "an" if kind == "int" else "a"
            return f"{article} {kind} symbol cannot be 'not set' (kconfig ignores it)"
        if kind == "string":
            return None if _STRING_RE.fullmatch(value) else f"{value!r} is not a quoted string"
        pattern = _INT_RE if kind == "int" else _HEX_RE
        if not pattern.fullmatch(value):
            return f"{value!r} is not a {kind} value"
        active = self._active_range(sym)
        if active is not None:
            base = 10 if kind == "int" else 16
            low, high, text = active
            if low is not None and high is not None and not low <= int(value, base) <= high:
                return f"{value} is outside range {text}"
        return None

    def _active_range(self, sym: Any) -> tuple[int | None, int | None, str] | None:
        base = 10 if sym.orig_type == kconfiglib.INT else 16
        for low, high, cond in sym.ranges:
            if kconfiglib.expr_value(cond):
                text = f"{_expr(low)} {_expr(high)}"
                return _number(low.str_value, base), _number(high.str_value, base), text
        return None

    # --- resolving --------------------------------------------------------

    def resolve(self, requested: Mapping[str, Value], base: str) -> dict[str, Value]:
        """Every symbol .config would hold after `make olddefconfig` with `requested` as
        .config, or `make allnoconfig KCONFIG_ALLCONFIG=<requested>`."""
        if base not in RESOLVE_MODES:
            raise InputError(
                f"unknown resolve base {base!r} (expected olddefconfig or allnoconfig)"
            )
        mode = cast(ResolveBase, base)
        self._apply(dict(requested), mode)
        return self.values()

    def _apply(self, requested: dict[str, Value], base: ResolveBase) -> None:
        kconf = self._kconf
        text = "".join(f"{format_setting(s, v)}\n" for s, v in requested.items())
        with tempfile.TemporaryDirectory(prefix="kxen-kconfig-") as scratch:
            path = Path(scratch) / "request.config"
            path.write_text(text, encoding="utf-8")
            if base == "allnoconfig":
                kconf.unset_values()
                for sym in kconf.unique_defined_syms:
                    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
                        sym.set_value(0)
                kconf.load_config(str(path), replace=False)
            else:
                kconf.load_config(str(path), replace=True)
        self._last = (requested, base)

    def values(self) -> dict[str, Value]:
        """The current values, as the last resolve() left them."""
        result: dict[str, Value] = {}
        for sym in self._kconf.unique_defined_syms:
            line = _config_line(sym)
            if line:
                result[sym.name] = _config_value(line)
        return result

    def value(self, symbol: str) -> Value:
        return _config_value(_config_line(self._require(symbol)))

    def new_symbols(self, requested: Mapping[str, Value]) -> list[tuple[str, Value]]:
        """What `make listnewconfig` prints with `requested` as .config: symbols with a
        visible, changeable prompt that `requested` does not set, with the value
        olddefconfig gives them; sorted by name (LC_ALL=C). The state of the last
        resolve() is kept."""
        previous = self._last
        self._apply(dict(requested), "olddefconfig")
        found: dict[str, Value] = {}
        try:
            self._check_conf(self._kconf.top_node, found)
        finally:
            if previous != self._last:
                self._apply(*previous)
        return sorted(found.items(), key=lambda item: item[0].encode())

    def _check_conf(self, node: Any, found: dict[str, Value]) -> None:
        # scripts/kconfig/conf.c:check_conf() over Kconfiglib's menu tree
        if not _menu_is_visible(node):
            return
        sym = node.item
        if (
            isinstance(sym, kconfiglib.Symbol)
            and not self._has_user_value(sym)
            and sym.visibility > _rev_dep_value(sym)
        ):
            found[sym.name] = _listed_value(sym)
        child = node.list
        while child is not None:
            self._check_conf(child, found)
            child = child.next

    def _has_user_value(self, sym: Any) -> bool:
        if sym.user_value is None:
            return False
        if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX, kconfiglib.STRING):
            # conf_read() drops values outside the active range
            return self._invalid(sym, _spell(sym.orig_type, sym.user_value)) is None
        return True

    # --- explaining -------------------------------------------------------

    def explain(self, symbol: str) -> SymbolInfo:
        sym = self._require(symbol)
        prompt = next((n.prompt[0] for n in sym.nodes if n.prompt), None)
        help_text = next((n.help for n in sym.nodes if n.help is not None), None)
        choice, selection = self._choice_of(sym)
        return SymbolInfo(
            name=sym.name,
            type=self.symbol_type(sym.name),
            prompt=prompt,
            definitions=_definitions(sym),
            value=_config_value(_config_line(sym)),
            depends=_depends_text(sym.direct_dep),
            selected_by=self._selectors(self._index.selects.get(sym.name, [])),
            implied_by=self._selectors(self._index.implies.get(sym.name, [])),
            help=help_text,
            choice=choice,
            choice_selection=selection,
            defaults=tuple(
                _default_text(n, value, cond) for n in sym.nodes for value, cond in n.defaults
            ),
            ranges=tuple(
                f"{_expr(low)} {_expr(high)}" + _own_condition_suffix(n, cond)
                for n in sym.nodes
                for low, high, cond in n.ranges
            ),
            settable=bool(sym.visibility),
        )

    def _selectors(self, entries: list[_Select]) -> tuple[Selector, ...]:
        result = []
        for entry in entries:
            own = _own_condition(entry.node, entry.condition)
            result.append(
                Selector(
                    symbol=entry.selector.name,
                    value=_tri_value(entry.selector),
                    condition=None if own is None else _expr(own),
                    active=bool(
                        min(entry.selector.tri_value, kconfiglib.expr_value(entry.condition))
                    ),
                )
            )
        return tuple(result)

    def _choice_of(self, sym: Any) -> tuple[str | None, str | None]:
        choice = sym.choice
        if choice is None:
            return None, None
        selection = choice.selection
        return _choice_name(choice), None if selection is None else selection.name

    def why_not(self, symbol: str, wanted: Value) -> Reason:
        """After a resolve() in which `symbol` did not get `wanted`: the reason."""
        name = symbol.removeprefix("CONFIG_")
        sym = self._sym(name)
        if sym is None:
            return Reason(name, wanted, None, "undefined", "not defined in Kconfig for this arch")
        actual = _config_value(_config_line(sym))
        base = {"symbol": sym.name, "wanted": wanted, "actual": actual}
        defs = _definitions(sym)
        if wanted == "n":
            wanted = None
        invalid = self._invalid(sym, wanted)
        if invalid is not None:
            return Reason(**base, kind="invalid", detail=invalid, definitions=defs)
        if actual == wanted:
            return Reason(**base, kind="satisfied", detail="has the requested value")
        if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
            if _TRI[wanted] > _TRI[actual]:
                return self._why_lower(sym, wanted, defs, base)
            return self._why_higher(sym, wanted, defs, base)
        if not kconfiglib.expr_value(sym.direct_dep):
            return Reason(
                **base, kind="depends", detail=_unmet_depends(sym.direct_dep, 1), definitions=defs
            )
        return self._why_fixed(sym, defs, base) or Reason(
            **base, kind="unknown", detail="kept its computed value", definitions=defs
        )

    def _why_lower(
        self, sym: Any, wanted: Value, defs: tuple[str, ...], base: dict[str, Any]
    ) -> Reason:
        """The symbol ended lower than wanted (e.g. n instead of y)."""
        need = _TRI[wanted]
        if sym.orig_type == kconfiglib.BOOL:
            need = 1  # a bool is y as soon as its dependencies are m
        if kconfiglib.expr_value(sym.direct_dep) < need:
            detail = _unmet_depends(sym.direct_dep, need)
            return Reason(**base, kind="depends", detail=detail, definitions=defs)
        if wanted == "m" and not self._kconf.modules.tri_value:
            return Reason(
                **base,
                kind="modules",
                detail=f"m needs MODULES (={_show_tri(_tri_value(self._kconf.modules))})",
                definitions=defs,
            )
        fixed = self._why_fixed(sym, defs, base)
        if fixed is not None:
            return fixed
        if sym.choice is not None:
            return self._choice_reason(sym, defs, base)
        return Reason(
            **base, kind="unknown", detail="Kconfig computed a lower value", definitions=defs
        )

    def _why_higher(
        self, sym: Any, wanted: Value, defs: tuple[str, ...], base: dict[str, Any]
    ) -> Reason:
        """The symbol ended higher than wanted (e.g. y instead of n or m)."""
        need = _TRI[wanted]
        forcing = [
            s
            for s in self._selectors(self._index.selects.get(sym.name, []))
            if _TRI[s.value] > need and s.active
        ]
        if forcing:
            names = ", ".join(s.describe() for s in forcing)
            return Reason(
                **base,
                kind="selected",
                detail=f"selected by {names}",
                definitions=defs,
                selectors=tuple(forcing),
            )
        if sym.choice is not None and sym.choice.selection is sym:
            return self._choice_reason(sym, defs, base)
        if wanted == "m" and not self._kconf.modules.tri_value:
            return Reason(
                **base,
                kind="modules",
                detail=f"m needs MODULES (={_show_tri(_tri_value(self._kconf.modules))}); "
                "without it m becomes y",
                definitions=defs,
            )
        return self._why_fixed(sym, defs, base) or Reason(
            **base, kind="unknown", detail="Kconfig computed a higher value", definitions=defs
        )

    def _why_fixed(self, sym: Any, defs: tuple[str, ...], base: dict[str, Any]) -> Reason | None:
        """No prompt, or no visible prompt: the user value is ignored."""
        defaults = [_default_text(n, v, c) for n in sym.nodes for v, c in n.defaults]
        from_defaults = (
            f"; its value comes from: default {' / default '.join(defaults)}"
            if defaults
            else "; it has no default"
        )
        prompts = [n for n in sym.nodes if n.prompt]
        if not prompts:
            return Reason(
                **base,
                kind="no_prompt",
                detail="has no prompt: it cannot be set in a config" + from_defaults,
                definitions=defs,
            )
        if not sym.visibility:
            own = [_own_condition(n, n.prompt[1]) for n in prompts]
            conditions = [c for c in own if c is not None]
            if conditions:
                text = " || ".join(_expr(c, _OR) for c in conditions)
                detail = f"its prompt is hidden: prompt if {text}"
            else:
                detail = f"its prompt is hidden: {_unmet_depends(sym.direct_dep, 1)}"
            if sym.choice is not None and not sym.choice.visibility:
                detail = f"{_choice_name(sym.choice)} is hidden"
            return Reason(
                **base, kind="prompt_condition", detail=detail + from_defaults, definitions=defs
            )
        return None

    def _choice_reason(self, sym: Any, defs: tuple[str, ...], base: dict[str, Any]) -> Reason:
        choice, selection = self._choice_of(sym)
        if selection == sym.name:
            detail = f"{choice} needs one selection and selected it (nothing else is set)"
        else:
            detail = f"excluded by {choice}, whose selection is {selection or 'none'}"
        return Reason(
            **base,
            kind="choice",
            detail=detail,
            definitions=defs,
            choice=choice,
            choice_selection=selection,
        )


# --- helpers ----------------------------------------------------------------


def _number(text: str, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _config_line(sym: Any) -> str:
    """The symbol's .config line as scripts/kconfig writes it ('' when not written).

    Kconfiglib 14.1.0 writes an implied (`imply`) symbol only when its own
    dependencies are met; conf (6.1 symbol.c:sym_calc_value) writes it whenever
    the `imply` is active, as `# CONFIG_X is not set` when its dependencies are not.
    """
    line = cast(str, sym.config_string)
    if (
        not line
        and sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE)
        and kconfiglib.expr_value(sym.weak_rev_dep)
    ):
        value = _tri_value(sym)
        line = format_setting(sym.name, value) + "\n"
    return line


def _config_value(line: str) -> Value:
    """The value of one .config line as Kconfiglib writes it ('' when not written)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    value = line.split("=", 1)[1]
    return None if value == "n" else value


def _spell(kind: int, value: object) -> Value:
    if kind == kconfiglib.STRING:
        return f'"{kconfiglib.escape(str(value))}"'
    return str(value)


def _tri_value(sym: Any) -> Value:
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return {0: None, 1: "m", 2: "y"}[cast(int, sym.tri_value)]
    value = cast(str, sym.str_value)
    return value or None


def _listed_value(sym: Any) -> Value:
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return _tri_value(sym)
    return (
        _spell(sym.orig_type, sym.str_value)
        if sym.orig_type == kconfiglib.STRING
        else (cast(str, sym.str_value))
    )


def _rev_dep_value(sym: Any) -> int:
    """How far `select`s force the symbol (m counts as y for a bool, as in symbol.c)."""
    value = cast(int, kconfiglib.expr_value(sym.rev_dep))
    return 2 if value == 1 and sym.orig_type == kconfiglib.BOOL else value


def _show_tri(value: Value) -> str:
    return "n" if value is None else value


def _definitions(sym: Any) -> tuple[str, ...]:
    return tuple(f"{node.filename}:{node.linenr}" for node in sym.nodes)


def _choice_name(choice: Any) -> str:
    prompt = next((n.prompt[0] for n in choice.nodes if n.prompt), None)
    where = ", ".join(f"{n.filename}:{n.linenr}" for n in choice.nodes)
    label = choice.name or (f'"{prompt}"' if prompt else "<choice>")
    return f"choice {label} ({where})"


def _menu_is_visible(node: Any) -> bool:
    # scripts/kconfig/menu.c:menu_is_visible()
    if not node.prompt:
        return False
    if node.item is kconfiglib.MENU and not kconfiglib.expr_value(node.visibility):
        return False
    if kconfiglib.expr_value(node.prompt[1]):
        return True
    item = node.item
    if not isinstance(item, kconfiglib.Symbol | kconfiglib.Choice) or not item.tri_value:
        return False
    child = node.list
    while child is not None:
        if _menu_is_visible(child):
            return True
        child = child.next
    return False


def _own_condition(node: Any, cond: Any) -> Any:
    """The `if` part of a property, without the dependencies Kconfiglib propagated into it."""
    dep = node.dep
    if cond is dep:
        return None
    if isinstance(cond, tuple) and cond[0] is kconfiglib.AND and cond[2] is dep:
        return cond[1]
    return cond


def _own_condition_suffix(node: Any, cond: Any) -> str:
    own = _own_condition(node, cond)
    return "" if own is None else f" if {_expr(own)}"


def _default_text(node: Any, value: Any, cond: Any) -> str:
    return f"{_expr(value)}{_own_condition_suffix(node, cond)}"


def _atom(sc: Any) -> str:
    if isinstance(sc, kconfiglib.Choice):
        label = sc.name or next((f'"{n.prompt[0]}"' for n in sc.nodes if n.prompt), "")
        return f"<choice {label}> (={kconfiglib.TRI_TO_STR[sc.tri_value]})".replace("  ", " ")
    name = cast(str, sc.name)
    if sc.is_constant and name not in kconfiglib.STR_TO_TRI:
        return f'"{kconfiglib.escape(name)}"'
    if sc.is_constant or (not sc.nodes and _NUMBER_RE.fullmatch(name)):
        return name  # n/m/y, or a number (Kconfig reads `range 2 64` as undefined symbols)
    value = sc.str_value if sc.orig_type in _TYPE_NAMES else kconfiglib.TRI_TO_STR[sc.tri_value]
    return f"{name} (={value})"


def _expr(expr: Any, parent: int = 0) -> str:
    """An expression in Kconfig syntax with every symbol's current value: `A (=y) && B (=n)`."""
    if not isinstance(expr, tuple):
        return _atom(expr)
    op = expr[0]
    if op is kconfiglib.AND:
        own, text = _AND, f"{_expr(expr[1], _AND)} && {_expr(expr[2], _AND)}"
    elif op is kconfiglib.OR:
        own, text = _OR, f"{_expr(expr[1], _OR)} || {_expr(expr[2], _OR)}"
    elif op is kconfiglib.NOT:
        own, text = _NOT, f"!{_expr(expr[1], _NOT + 1)}"
    else:
        own = _RELATION
        text = f"{_expr(expr[1], _ATOM)} {_RELATIONS[op]} {_expr(expr[2], _ATOM)}"
    return f"({text})" if parent > own else text


def _conjuncts(expr: Any) -> list[Any]:
    if isinstance(expr, tuple) and expr[0] is kconfiglib.AND:
        return _conjuncts(expr[1]) + _conjuncts(expr[2])
    return [expr]


def _depends_text(expr: Any) -> str | None:
    if not isinstance(expr, tuple) and expr.is_constant and expr.name == "y":
        return None
    return f"depends on {_expr(expr)}"


def _unmet_depends(expr: Any, need: int) -> str:
    """`depends on ...` limited to the parts of a dependency below `need` (1: m, 2: y)."""
    unmet = [c for c in _conjuncts(expr) if kconfiglib.expr_value(c) < need]
    if not unmet:
        return f"depends on {_expr(expr)}"
    parent = _AND if len(unmet) > 1 else 0
    return "depends on " + " && ".join(_expr(c, parent) for c in unmet)
