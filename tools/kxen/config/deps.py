"""What a `config set` needs besides its own line: the whole dependency path at once.

Kconfig drops a value whose `depends on` is unmet, so setting XEN_NETDEV_FRONTEND on a
config without networking used to take one `set` per level, each revealing the next
parent. `plan()` walks the path with the Kconfig model instead: it resolves the
request with the value on top, asks the model why a value did not take, adds the
parents named in the unmet `depends on` and repeats until every value takes or one of
them cannot be had (no prompt, a choice, a select), which it names with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kxen.config import fragments as configs
from kxen.config.fragments import Target, Value, show
from kxen.config.model import KconfigModel

MAX_STEPS = 32
"""More parents than any real dependency chain has (6.1's deepest is about 10)."""

_OPERAND = re.compile(r"(!?)\b([A-Za-z0-9_]+) \(=([nmy])\)")
"""One `SYMBOL (=value)` operand of a `depends on` as the model prints it."""


@dataclass(frozen=True)
class Step:
    symbol: str
    value: Value
    definitions: tuple[str, ...]

    def describe(self) -> str:
        where = f" ({', '.join(self.definitions)})" if self.definitions else ""
        return f"{self.symbol}={show(self.value) if self.value else 'n'}{where}"


@dataclass
class Plan:
    """For one target: the values to set, parents first and the asked-for one last."""

    target: Target
    steps: list[Step] = field(default_factory=list)
    blocked: str = ""
    """Why the value cannot be had on this target ("" when the steps suffice)."""

    @property
    def parents(self) -> list[Step]:
        return self.steps[:-1]

    def path(self) -> str:
        """ "needs NET=y (file:line), then NETDEVICES=y (file:line)"."""
        return "needs " + ", then ".join(step.describe() for step in self.parents)


def plans(
    configs_dir: Path,
    symbol: str,
    wanted: Value,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
) -> list[Plan]:
    """The dependency path of `symbol`=`wanted` in every target, over its merged layers."""
    flavours = configs.load_layers(configs_dir)
    found = []
    for target in targets:
        model = models[target.arch]
        merged = configs.merge(configs_dir, target, tree, flavours)
        requested = {s: v.value for s, v in merged.settings.items() if model.defined(s)}
        found.append(plan(model, target, requested, merged.resolve, symbol, wanted))
    return found


def plan(
    model: KconfigModel,
    target: Target,
    requested: dict[str, Value],
    base: str,
    symbol: str,
    wanted: Value,
) -> Plan:
    """The values that together give `symbol` its `wanted` value over `requested`, parents
    first; `blocked` says why when no values can."""
    extra: dict[str, Value] = {symbol: wanted}
    blocked = f"CONFIG_{symbol} still does not take {show(wanted)}"
    for _ in range(MAX_STEPS):
        model.apply({**requested, **extra}, base)  # only the values it reads are computed
        missing = [s for s, v in extra.items() if model.value(s) != v]
        if not missing:
            blocked = ""
            break
        added, why = _add_parents(model, missing, extra)
        if why or not added:
            blocked = why or blocked
            break
    model.apply(requested, base)  # leave the model as the layers have it
    pairs = list(reversed(extra.items()))
    return Plan(target, [Step(n, v, model.explain(n).definitions) for n, v in pairs], blocked)


def _add_parents(
    model: KconfigModel, missing: list[str], extra: dict[str, Value]
) -> tuple[bool, str]:
    """Add the parents the `missing` values need to `extra`: (any added, why not)."""
    added = False
    for name in missing:
        parents, blocked = _parents(model, name, extra[name])
        if blocked:
            return added, blocked
        for parent, value in parents:
            if parent in extra and extra[parent] != value:
                return added, f"{parent} would need both {show(extra[parent])} and {show(value)}"
            added |= parent not in extra
            extra.setdefault(parent, value)
    return added, ""


def _parents(
    model: KconfigModel, symbol: str, wanted: Value
) -> tuple[list[tuple[str, Value]], str]:
    """The values the unmet `depends on` of `symbol` needs, or why there are none."""
    reason = model.why_not(symbol, wanted)
    if reason.kind == "modules" and wanted == "m" and model.defined("MODULES"):
        return [("MODULES", "y")], ""  # m is only a value while MODULES is on
    if reason.kind != "depends":
        return [], f"CONFIG_{symbol}={show(wanted)}: {reason.detail}"
    needed: list[tuple[str, Value]] = []
    for negated, name, value in _OPERAND.findall(reason.detail):
        if not model.defined(name):
            continue
        if negated and value != "n":
            needed.append((name, None))
        elif not negated and value != "y":
            needed.append((name, "y" if model.symbol_type(name) == "bool" else wanted or "y"))
    unsettable = [name for name, _ in needed if model.explain(name).prompt is None]
    if unsettable or not needed:
        detail = (
            reason.detail
            if not unsettable
            else (f"{reason.detail}, and {', '.join(unsettable)} has no prompt: nothing can set it")
        )
        return [], f"CONFIG_{symbol}={show(wanted)}: {detail}"
    return needed, ""
