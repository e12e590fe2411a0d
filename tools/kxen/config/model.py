"""The Kconfig model of a tree: what `resolve()` computes (equal to the kernel's own
`make olddefconfig` / `allnoconfig KCONFIG_ALLCONFIG=`), and why a symbol has its value:
the unmet `depends on` with the value of each symbol in it, the symbol that `select`s
or `imply`s it, the choice that excludes it, and where it is defined. `kxen.config.kconfig`
loads it from a real tree.

Values follow 6.1's scripts/kconfig/symbol.c where Kconfiglib 14.1.0 follows older rules
(`imply`, selects of choice members, out-of-range ints in allnoconfig).
tests/integration/test_kconfig_differential.py compares every symbol's value, visibility,
"new" status and select/imply strength with the tree's own conf on Debian's configs,
seeded randconfigs, the all*configs and allnoconfig fragments of each arch."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import kconfiglib  # type: ignore[import-untyped]

from kxen.config.fragments import RESOLVE_MODES, Value, format_setting, show
from kxen.errors import InputError

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


_INT_RE = re.compile(r"-?[0-9]+")
_HEX_RE = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
_NUMBER_RE = re.compile(r"-?[0-9]+|0[xX][0-9a-fA-F]+")
_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


_TYPE_NAMES: dict[int, SymbolType] = {
    kconfiglib.BOOL: "bool",
    kconfiglib.TRISTATE: "tristate",
    kconfiglib.INT: "int",
    kconfiglib.HEX: "hex",
    kconfiglib.STRING: "string",
}
_TRI = {None: 0, "n": 0, "m": 1, "y": 2}
_TRI_VALUES: dict[int, Value] = {0: None, 1: "m", 2: "y"}
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


@dataclass(frozen=True)
class IgnoredAttribute:
    """A Kconfig line Kconfiglib cannot parse that was dropped while reading."""

    file: str
    line: int
    word: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# --- Kconfig 6.1 semantics ---------------------------------------------------


def _sym_calc_tri(sym: Any) -> int:
    """A bool/tristate symbol's value as 6.1's scripts/kconfig/symbol.c:sym_calc_value()
    computes it, where Kconfiglib 14.1.0 keeps older `imply` rules that 6.1 dropped:

    * a visible symbol with a user value takes it (capped by visibility, raised by
      `select`); an `imply` does not touch it. Kconfiglib raised a user `m` to `y`
      whenever a `y` symbol implied it: `EXT4_FS=y` turned Debian's `CRYPTO_XTS=m` into y.
    * otherwise an active `imply` raises the default, capped by the symbol's own
      `depends on` (an `imply` from a y symbol on one that depends on an m symbol gives m,
      where Kconfiglib gave y), and the symbol is written even when that cap is n.

    It sets `_write_to_conf` like symbol.c's SYMBOL_WRITE, so `config_string` is conf's.
    Choice members keep Kconfiglib's rules (its choice handling is conf's).
    """
    if sym._cached_tri_val is not None:
        return cast(int, sym._cached_tri_val)
    if sym.orig_type not in (kconfiglib.BOOL, kconfiglib.TRISTATE) or sym.choice:
        return _KCONFIGLIB_TRI_VALUE(sym)
    visibility = cast(int, sym.visibility)
    sym._write_to_conf = visibility != 0
    if visibility and sym.user_value is not None:
        value = min(cast(int, sym.user_value), visibility)
    else:
        value = _default_or_implied(sym)
    selected = cast(int, kconfiglib.expr_value(sym.rev_dep))
    if selected:
        value = max(value, selected)
        sym._write_to_conf = True
    if value == 1 and sym.type is kconfiglib.BOOL:
        value = 2
    sym._cached_tri_val = value
    return value


def _default_or_implied(sym: Any) -> int:
    """The first active `default`, raised by active `imply`s up to the `depends on`."""
    value = 0
    for default, condition in sym.defaults:
        active = cast(int, kconfiglib.expr_value(condition))
        if active:
            value = min(cast(int, kconfiglib.expr_value(default)), active)
            if value:
                sym._write_to_conf = True
            break
    implied = cast(int, kconfiglib.expr_value(sym.weak_rev_dep))
    if implied:
        sym._write_to_conf = True
        value = min(max(value, implied), cast(int, kconfiglib.expr_value(sym.direct_dep)))
    return value


_KCONFIGLIB_TRI_VALUE_PROPERTY = cast(property, kconfiglib.Symbol.__dict__["tri_value"])
_KCONFIGLIB_TRI_VALUE = cast(Callable[[Any], int], _KCONFIGLIB_TRI_VALUE_PROPERTY.fget)
kconfiglib.Symbol.tri_value = property(_sym_calc_tri, doc=_KCONFIGLIB_TRI_VALUE_PROPERTY.__doc__)
"""Kconfiglib is a single module with no hook for a symbol's value: its property is
replaced at import, for every Kconfig object (kxen's models are its only users)."""


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
    forces: Value = None
    """What it forces now: the lower of the symbol's value and the condition's (with the
    selector's dependencies). A bool y under an `m` menu forces only m."""

    def describe(self) -> str:
        text = f"{self.symbol} (={_show_tri(self.value)})"
        if self.condition:
            text += f" if {self.condition}"
        if self.active and self.forces != self.value:
            text += f", forcing {_show_tri(self.forces)}"
        return text


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

_RECENT_RESOLVES = 4


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
        self._recent: dict[tuple[frozenset[tuple[str, Value]], ResolveBase], dict[str, Value]] = {}
        """The values of the last few requests: `config set` resolves the same layers
        before and after its checks, and computing every value is most of a resolve."""
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

    def active_range(self, symbol: str) -> tuple[int, int] | None:
        """The bounds of the `range` in force in the last resolve()'s state (None: no
        range applies, or its bounds are not numbers), for messages saying what a symbol
        takes."""
        active = self._active_range(self._require(symbol))
        if active is None or active[0] is None or active[1] is None:
            return None
        return active[0], active[1]

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
        request, mode = self.apply(requested, base)
        key = (frozenset(request.items()), mode)
        values = self._recent.pop(key, None)
        if values is None:
            values = self.values()
        self._recent[key] = values  # newest last
        while len(self._recent) > _RECENT_RESOLVES:
            del self._recent[next(iter(self._recent))]
        return dict(values)

    def apply(
        self, requested: Mapping[str, Value], base: str
    ) -> tuple[dict[str, Value], ResolveBase]:
        """Put the model in the state resolve() would, without computing every value
        (value() and explain() then compute only what they read)."""
        if base not in RESOLVE_MODES:
            raise InputError(
                f"unknown resolve base {base!r} (expected olddefconfig or allnoconfig)"
            )
        request, mode = dict(requested), cast(ResolveBase, base)
        if self._last != (request, mode):
            self._apply(request, mode)
        return request, mode

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
                _clamp_user_values(kconf)
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

    def states(self) -> dict[str, tuple[str, str]]:
        """Every symbol's visibility (n/m/y: how far its prompt lets a value in) and
        computed value, unquoted, as the last resolve() left them: what kconfig holds
        for symbols .config does not show, for comparing the model with it."""
        return {
            sym.name: (kconfiglib.TRI_TO_STR[sym.visibility], cast(str, sym.str_value))
            for sym in self._kconf.unique_defined_syms
            if sym.orig_type in _TYPE_NAMES
        }

    def user_value(self, symbol: str) -> Value:
        """The value the last resolve() read for the symbol (None: not in the request)."""
        sym = self._require(symbol)
        if sym.user_value is None:
            return None
        if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
            return _show_tri(_TRI_VALUES[cast(int, sym.user_value)])
        return _spell(sym.orig_type, sym.user_value)

    def new_symbols(self, requested: Mapping[str, Value]) -> list[tuple[str, Value]]:
        """What `make listnewconfig` prints with `requested` as .config: symbols with a
        visible, changeable prompt that `requested` does not set, with the value
        olddefconfig gives them; sorted by name (LC_ALL=C). The state of the last
        resolve() is kept."""
        previous = self._last
        if previous != (requested, "olddefconfig"):
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
            selected_by=self._selectors(sym, self._index.selects),
            implied_by=self._selectors(sym, self._index.implies),
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

    def _selectors(self, target: Any, index: dict[str, list[_Select]]) -> tuple[Selector, ...]:
        """The selects (or implies) of `target` with what each forces now. A choice member
        takes its value from the choice alone: symbol.c never applies a select or imply to
        it, so none is active (6.1 only warns about such selects)."""
        result = []
        for entry in index.get(target.name, []):
            own = _own_condition(entry.node, entry.condition)
            forces = 0
            if target.choice is None:
                forces = min(entry.selector.tri_value, kconfiglib.expr_value(entry.condition))
            result.append(
                Selector(
                    symbol=entry.selector.name,
                    value=_tri_value(entry.selector),
                    condition=None if own is None else _expr(own),
                    active=bool(forces),
                    forces=_TRI_VALUES[forces],
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
        forcing = [s for s in self._selectors(sym, self._index.selects) if _TRI[s.forces] > need]
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


def _clamp_user_values(kconf: Any) -> None:
    """allnoconfig reads KCONFIG_ALLCONFIG with conf_read_simple(), which keeps an int/hex
    user value outside its active range; symbol.c:sym_validate_range() then clamps it to
    the bound it crosses. (olddefconfig's conf_read() drops such a value for the default,
    as Kconfiglib does.) A clamped value can move another symbol's range: repeat."""
    for _ in range(len(kconf.unique_defined_syms)):
        clamped = [
            (sym, bound)
            for sym in kconf.unique_defined_syms
            if sym.orig_type in (kconfiglib.INT, kconfiglib.HEX)
            and sym.user_value
            and sym.visibility
            and (bound := _crossed_bound(sym)) is not None
        ]
        if not clamped:
            return
        for sym, bound in clamped:
            sym.set_value(bound)


def _crossed_bound(sym: Any) -> str | None:
    """The active range's bound the user value lies beyond, as the bound spells it."""
    base = 10 if sym.orig_type == kconfiglib.INT else 16
    value = _number(cast(str, sym.user_value), base)
    for low, high, cond in sym.ranges:
        if not kconfiglib.expr_value(cond):
            continue
        if value is None:
            return None
        if value < (_number(low.str_value, base) or 0):
            return cast(str, low.str_value)
        if value > (_number(high.str_value, base) or 0):
            return cast(str, high.str_value)
        return None
    return None


def _number(text: str, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _config_line(sym: Any) -> str:
    """The symbol's .config line as scripts/kconfig writes it ('' when not written)."""
    return cast(str, sym.config_string)


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
        return _TRI_VALUES[cast(int, sym.tri_value)]
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
    """How far `select`s force the symbol (m counts as y for a bool, as in symbol.c).
    Never for a choice member: symbol.c does not apply (or compute) its selects, so conf
    lists a selected member without a user value as new."""
    if sym.choice is not None:
        return 0
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
