"""`kxen config check`: does every fragment line survive Kconfig, and if not, why?

Each arch/flavour's merged request is resolved with the Kconfig model of the
real tree (proven equal to the kernel's own olddefconfig/allnoconfig) and
every difference is reported with the fragment line that asked for it and the
reason in Kconfig terms: the unmet `depends on` with current values, the
symbol that selects it, or the choice that excludes it. An allow-list with a
reason per entry silences known cases, and is itself checked for entries that
no longer match anything.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kxen.config import fragments as configs
from kxen.config import toolchain
from kxen.config.fragments import Target, Value, show
from kxen.config.model import KconfigModel, SymbolInfo
from kxen.errors import InputError
from kxen.support import inputs

ALLOW_FILE = "allow.yaml"
Kind = Literal["malformed", "mismatch", "unknown", "invalid", "new", "redefinition", "toolchain"]
FAILING_KINDS: frozenset[str] = frozenset({"malformed", "mismatch", "unknown", "invalid"})
INPUT_KINDS: frozenset[str] = frozenset({"malformed", "unknown", "invalid"})
"""Findings that are mistakes in what was written (exit 2), not values Kconfig refused."""
_KINDS = ("malformed", "mismatch", "unknown", "invalid", "new", "redefinition", "toolchain")


@dataclass(frozen=True)
class Finding:
    kind: Kind
    target: Target
    symbol: str
    where: str
    """The fragment line that set the value (file:line), or "" for a new symbol."""
    requested: Value
    actual: Value
    reason: str = ""
    allowed: str = ""
    """The allow-list reason when an entry silences this finding."""

    def describe(self) -> str:
        head = f"{self.kind:<12} CONFIG_{self.symbol}"
        if self.kind == "new":
            return f"{head} = {show(self.actual)} (no layer sets it; Kconfig default)"
        if self.kind == "malformed":
            return f"{self.kind:<12} {self.where}: {self.reason}"
        text = f"{head} {self.where}: asked {show(self.requested)}"
        if self.kind in ("mismatch", "redefinition", "toolchain"):
            text += f", got {show(self.actual)}"
        if self.reason:
            text += f": {self.reason}"
        if self.allowed:
            text += f" [allowed: {self.allowed}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arch": self.target.arch,
            "flavour": self.target.flavour,
            "symbol": self.symbol,
            "where": self.where,
            "requested": self.requested,
            "actual": self.actual,
            "reason": self.reason,
            "allowed": self.allowed or None,
        }


@dataclass(frozen=True)
class AllowEntry:
    kind: str
    symbol: str
    arch: str
    flavour: str
    reason: str
    line: int

    def matches(self, finding: Finding) -> bool:
        return (
            self.kind == finding.kind
            and self.symbol == finding.symbol
            and self.arch in ("*", finding.target.arch)
            and self.flavour in ("*", finding.target.flavour)
        )


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    stale_allow: list[AllowEntry] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Unreviewed entries of configs/pending/ (`file: CONFIG_X`)."""

    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in FAILING_KINDS and not f.allowed]

    def ok(self, strict: bool) -> bool:
        return not strict or not (self.failing() or self.stale_allow or self.pending)

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": [f"{t.arch}/{t.flavour}" for t in self.targets],
            "findings": [f.as_dict() for f in self.findings],
            "stale_allow": [
                {"line": e.line, "kind": e.kind, "symbol": e.symbol, "reason": e.reason}
                for e in self.stale_allow
            ],
            "counts": {kind: sum(f.kind == kind for f in self.findings) for kind in _KINDS},
            "pending": self.pending,
        }


def grouped(findings: Iterable[Finding]) -> list[tuple[tuple[Target, ...], Finding]]:
    """Findings that read the same for several targets, once each with all of them:
    a line of a shared layer is one problem, not one per arch and flavour."""
    groups: dict[str, tuple[list[Target], Finding]] = {}
    for finding in findings:
        targets, _ = groups.setdefault(finding.describe(), ([], finding))
        targets.append(finding.target)
    ordered = sorted(groups.values(), key=lambda g: (_KINDS.index(g[1].kind), g[1].where))
    return [(tuple(targets), finding) for targets, finding in ordered]


def said_once(items: Iterable[tuple[Target, str]]) -> list[str]:
    """`arch/flavour, arch/flavour: text` lines, one per distinct text, in first-seen order:
    what holds for several targets is said once, naming them all."""
    groups: dict[str, list[Target]] = {}
    for target, text in items:
        groups.setdefault(text, []).append(target)
    return [f"{target_names(targets)}: {text}" for text, targets in groups.items()]


def target_names(targets: Iterable[Target]) -> str:
    return ", ".join(f"{t.arch}/{t.flavour}" for t in targets)


def load_allow_list(configs_dir: Path) -> list[AllowEntry]:
    """`configs/allow.yaml`: a list of {kind, symbol, arch, flavour, reason}; reason required."""
    path = configs_dir / ALLOW_FILE
    if not path.exists() and not path.is_symlink():
        return []
    data, node = inputs.load_yaml(inputs.read_text(path, configs_dir.parent), str(path))
    if data is None:
        return []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise InputError(f"{path}: expected a list of entries")
    entries = []
    for item, item_node in zip(data, node.value, strict=True):
        line = item_node.start_mark.line + 1
        entries.append(_allow_entry(item, f"{path}:{line}", line))
    return entries


def _allow_entry(item: Any, where: str, line: int) -> AllowEntry:
    keys = {"kind", "symbol", "arch", "flavour", "reason"}
    if (
        not isinstance(item, dict)
        or set(item) - keys
        or not {"kind", "symbol", "reason"} <= set(item)
    ):
        raise InputError(
            f"{where}: an entry needs kind, symbol and reason (arch, flavour optional)"
        )
    if item["kind"] not in _KINDS:
        raise InputError(f"{where}: kind must be one of {', '.join(_KINDS)}")
    reason = str(item["reason"]).strip()
    if not reason:
        raise InputError(f"{where}: every allow-list entry needs a reason")
    symbol = str(item["symbol"]).removeprefix("CONFIG_")
    return AllowEntry(
        item["kind"],
        symbol,
        str(item.get("arch", "*")),
        str(item.get("flavour", "*")),
        reason,
        line,
    )


def check(
    configs_dir: Path,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
    repo_root: Path,
) -> CheckReport:
    """Resolve every target with its arch's Kconfig model and collect the findings."""
    return report(configs_dir, targets, findings(configs_dir, targets, tree, models, repo_root))


def findings(
    configs_dir: Path,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
    repo_root: Path,
) -> list[Finding]:
    """The findings of some targets (one arch's, when arches are checked in parallel)."""
    return merged_findings(merged_targets(configs_dir, targets, tree), models, repo_root)


MergedTarget = tuple[configs.Merged, tuple[configs.Problem, ...]]
"""A target's merged request with the lines merge() could not use."""


def merged_targets(configs_dir: Path, targets: Iterable[Target], tree: Path) -> list[MergedTarget]:
    """Every target merged (cheap: no Kconfig), in a stable order."""
    flavours = configs.load_layers(configs_dir)
    merged = []
    for target in sorted(targets, key=lambda t: (t.arch, t.flavour)):
        problems: list[configs.Problem] = []
        merged.append(
            (configs.merge(configs_dir, target, tree, flavours, problems), tuple(problems))
        )
    return merged


def merged_findings(
    merged: Iterable[MergedTarget], models: Mapping[str, KconfigModel], repo_root: Path
) -> list[Finding]:
    """The findings of merged targets, each resolved with its arch's model."""
    found: list[Finding] = []
    for one, problems in merged:
        target = one.target
        model = models[target.arch]
        found += _target_findings(one, model, repo_root)
        found += [_problem_finding(p, target, model, repo_root) for p in problems]
    return found


def report(configs_dir: Path, targets: Iterable[Target], found: list[Finding]) -> CheckReport:
    """Findings of all targets in a stable order, with the allow-list applied and checked."""
    ordered = sorted(targets, key=lambda t: (t.arch, t.flavour))
    rank = {target: index for index, target in enumerate(ordered)}
    report = CheckReport(
        findings=sorted(found, key=lambda f: rank[f.target]),  # stable: keeps per-target order
        targets=ordered,
    )
    allow = load_allow_list(configs_dir)
    used: set[int] = set()
    for index, finding in enumerate(report.findings):
        entry = next((e for e in allow if e.matches(finding)), None)
        if entry is not None:
            used.add(entry.line)
            report.findings[index] = _with_allowed(finding, entry.reason)
    report.stale_allow = [e for e in allow if e.line not in used]
    return report


def _with_allowed(finding: Finding, reason: str) -> Finding:
    data = finding.__dict__ | {"allowed": reason}
    return Finding(**data)


def _relative(where: str, repo_root: Path) -> str:
    path, _, line = where.rpartition(":")
    try:
        return f"{Path(path).relative_to(repo_root)}:{line}"
    except ValueError:
        return where


def _target_findings(merged: configs.Merged, model: KconfigModel, repo_root: Path) -> list[Finding]:
    target = merged.target
    findings: list[Finding] = []
    requested: dict[str, Value] = {}
    for symbol, setting in merged.settings.items():
        if model.defined(symbol):
            requested[symbol] = setting.value
        else:
            stale = "this tree's Kconfig does not define it (stale)" + did_you_mean(model, symbol)
            findings.append(
                Finding(
                    "unknown",
                    target,
                    symbol,
                    _relative(setting.where, repo_root),
                    setting.value,
                    None,
                    stale,
                )
            )
    values = model.resolve(requested, merged.resolve)
    for symbol, wanted in requested.items():
        actual = values.get(symbol)
        where = _relative(merged.settings[symbol].where, repo_root)
        # validity is judged in the resolved state: ranges depend on other symbols
        if not model.valid_value(symbol, wanted):
            reason = value_problem(model, symbol, wanted)
            findings.append(Finding("invalid", target, symbol, where, wanted, actual, reason))
        elif actual != wanted:
            why = model.why_not(symbol, wanted)
            sites = f" ({', '.join(why.definitions)})" if why.definitions else ""
            # Informational: the value records a toolchain (another compiler or pahole than
            # this host's), not a request; the spec's %prep check ignores these too.
            lost: Kind = "toolchain" if toolchain.is_toolchain_symbol(symbol) else "mismatch"
            reason = why.detail + sites
            if lost == "toolchain":
                reason = f"this host's toolchain decides it ({reason})"
            findings.append(Finding(lost, target, symbol, where, wanted, actual, reason))
    for earlier, later in merged.overridden:
        findings.append(
            Finding(
                "redefinition",
                target,
                later.symbol,
                _relative(later.where, repo_root),
                later.value,
                values.get(later.symbol),
                f"overrides {show(earlier.value)} from {_relative(earlier.where, repo_root)}",
            )
        )
    if merged.resolve == "olddefconfig":  # under allnoconfig every unset symbol is off by design
        findings += [
            Finding("new", target, symbol, "", None, value)
            for symbol, value in model.new_symbols(requested)
        ]
    return sorted(findings, key=lambda f: (_KINDS.index(f.kind), f.symbol.encode()))


def _problem_finding(
    problem: configs.Problem, target: Target, model: KconfigModel, repo_root: Path
) -> Finding:
    """A line merge() could not use, said in terms of the tree when it names a symbol:
    `abc` for an int is an invalid value, a misspelt name gets a did-you-mean."""
    where = problem.where(repo_root)
    symbol, raw = problem.symbol or "", problem.value
    if symbol and raw is not None and model.defined(symbol):
        reason = value_problem(model, symbol, raw)
        return Finding("invalid", target, symbol, where, raw, None, reason)
    reason = problem.message
    if symbol and not model.defined(symbol):
        reason += did_you_mean(model, symbol)
    return Finding("malformed", target, symbol, where, raw, None, reason)


_NUMBER_PATTERNS = {"int": re.compile(r"-?[0-9]+"), "hex": re.compile(r"(?:0[xX])?[0-9a-fA-F]+")}
_ARTICLES = {"int": "an int", "hex": "a hex number", "string": "a quoted string"}


def value_problem(model: KconfigModel, symbol: str, value: Value) -> str:
    """What is wrong with `value` and what `symbol` takes, in the last resolve()'s state:
    "`abc` is not an int; NR_CPUS takes 2-8192 on x86_64"."""
    kind = model.symbol_type(symbol)
    shown = "'not set'" if value is None else f"`{value}`"
    takes = _what_it_takes(model, symbol, kind)
    pattern = _NUMBER_PATTERNS.get(kind)
    if value is not None and pattern is not None and pattern.fullmatch(value):
        return f"{shown} is out of range; {symbol} takes {takes} on {model.arch}"
    described = _ARTICLES.get(kind, f"a {kind} value")
    return f"{shown} is not {described}; {symbol} takes {takes} on {model.arch}"


def _what_it_takes(model: KconfigModel, symbol: str, kind: str) -> str:
    if kind in ("bool", "tristate"):
        return "y, m or n" if kind == "tristate" else "y or n"
    if kind == "string":
        return 'a quoted string ("...")'
    bounds = model.active_range(symbol)
    if bounds is None:
        return f"any {kind} number"
    low, high = bounds
    return f"{low}\u2013{high}" if kind == "int" else f"{low:#x}\u2013{high:#x}"


@functools.lru_cache(maxsize=8)
def _names(model: KconfigModel) -> tuple[str, ...]:
    return tuple(model.symbols())


def did_you_mean(model: KconfigModel, symbol: str) -> str:
    """ "; did you mean CONFIG_X?" from the tree's symbol names, or "" when none is close."""
    close = difflib.get_close_matches(symbol, _names(model), n=3, cutoff=0.8)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"CONFIG_{name}" for name in close) + "?"


def symbol_name(text: str) -> str:
    name = text.removeprefix("CONFIG_")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise InputError(f"{text!r} is not a Kconfig symbol name")
    return name


@dataclass(frozen=True)
class Explanation:
    """`kxen config explain`: one symbol in one arch/flavour."""

    target: Target
    layers: tuple[tuple[str, Value], ...]
    """(fragment file:line, value) of every layer setting it; the last one wins."""
    info: SymbolInfo

    def describe(self) -> str:
        head, *rest = self.info.describe().splitlines()
        lines = [f"{self.target.arch}/{self.target.flavour}: {head}"]
        if not self.layers:
            lines.append("  no layer sets it")
        for index, (where, value) in enumerate(self.layers):
            mark = "  (wins)" if index == len(self.layers) - 1 else ""
            lines.append(f"  set in {where}: {show(value)}{mark}")
        return "\n".join([*lines, *rest])

    def as_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "arch": self.target.arch,
            "flavour": self.target.flavour,
            "symbol": info.name,
            "value": info.value,
            "layers": [{"where": w, "value": v} for w, v in self.layers],
            "type": info.type,
            "prompt": info.prompt,
            "definitions": list(info.definitions),
            "depends": info.depends,
            "selected_by": [s.describe() for s in info.selected_by],
            "implied_by": [s.describe() for s in info.implied_by],
            "choice": info.choice,
            "help": info.help,
        }


def _resolve_known(merged: configs.Merged, model: KconfigModel) -> dict[str, Value]:
    """Resolve the merged request, leaving out symbols this tree does not define (as kconfig
    does); the model keeps that state for explain()/why_not()."""
    requested = {s: v.value for s, v in merged.settings.items() if model.defined(s)}
    return model.resolve(requested, merged.resolve)


def explain(
    configs_dir: Path,
    symbol: str,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
    repo_root: Path,
) -> list[Explanation]:
    flavours = configs.load_layers(configs_dir)
    explanations = []
    for target in sorted(targets, key=lambda t: (t.arch, t.flavour)):
        model = models[target.arch]
        if not model.defined(symbol):
            raise InputError(
                f"CONFIG_{symbol}: this tree's Kconfig does not define it"
                + did_you_mean(model, symbol)
            )
        merged = configs.merge(configs_dir, target, tree, flavours)
        _resolve_known(merged, model)
        layers = tuple((_relative(s.where, repo_root), s.value) for s in merged.provenance(symbol))
        explanations.append(Explanation(target, layers, model.explain(symbol)))
    return explanations


@dataclass(frozen=True)
class Effect:
    """What a `config set/unset` did to one arch/flavour's final config."""

    target: Target
    wanted: Value
    actual: Value
    winner: str
    reason: str

    def describe(self) -> str:
        return f"{self.target.arch}/{self.target.flavour}: {self.outcome()}"

    def outcome(self) -> str:
        """The final value and where it came from, without the target."""
        where = f" (from {self.winner})" if self.winner else ""
        text = f"{show(self.actual)}{where}"
        return (
            text
            if self.actual == self.wanted
            else f"{text}; not {show(self.wanted)}: {self.reason}"
        )


def effects(
    configs_dir: Path,
    symbol: str,
    wanted: Value,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
    repo_root: Path,
) -> list[Effect]:
    found = []
    for explanation in explain(configs_dir, symbol, targets, tree, models, repo_root):
        actual = explanation.info.value
        winner = explanation.layers[-1][0] if explanation.layers else ""
        reason = ""
        if actual != wanted:
            model = models[explanation.target.arch]
            last = explanation.layers[-1][1] if explanation.layers else None
            reason = (
                f"a later layer sets {show(last)}"
                if last != wanted
                else model.why_not(symbol, wanted).detail
            )
        found.append(Effect(explanation.target, wanted, actual, winner, reason))
    return found


@dataclass(frozen=True)
class ValueChange:
    target: Target
    symbol: str
    before: Value
    after: Value

    def describe(self) -> str:
        return f"CONFIG_{self.symbol}: {show(self.before)} -> {show(self.after)}"


def final_values(
    configs_dir: Path,
    targets: Iterable[Target],
    tree: Path,
    models: Mapping[str, KconfigModel],
) -> dict[Target, dict[str, Value]]:
    """The resolved config of every target (unknown symbols are left out, as kconfig does)."""
    flavours = configs.load_layers(configs_dir)
    finals = {}
    for target in targets:
        model = models[target.arch]
        merged = configs.merge(configs_dir, target, tree, flavours)
        finals[target] = _resolve_known(merged, model)
    return finals


def diff_values(
    before: Mapping[Target, Mapping[str, Value]], after: Mapping[Target, Mapping[str, Value]]
) -> list[ValueChange]:
    changes = []
    for target in sorted(before.keys() & after.keys(), key=lambda t: (t.arch, t.flavour)):
        old, new = before[target], after[target]
        for symbol in sorted(old.keys() | new.keys(), key=str.encode):
            if old.get(symbol) != new.get(symbol):
                changes.append(ValueChange(target, symbol, old.get(symbol), new.get(symbol)))
    return changes


@dataclass(frozen=True)
class RebasePreview:
    """The same configs/ on two upstream trees: what moving to the new one does."""

    changes: list[ValueChange]
    """Final values that differ between the old and the new tree."""
    regressions: list[Finding]
    """Fragment lines that are fine on the old tree but unknown, invalid or ineffective
    (a mismatch) on the new one."""


def regressions(old: CheckReport, new: CheckReport) -> list[Finding]:
    def key(finding: Finding) -> tuple[str, Target, str]:
        return finding.kind, finding.target, finding.symbol

    before = {key(f) for f in old.findings if f.kind in FAILING_KINDS}
    return [f for f in new.findings if f.kind in FAILING_KINDS and key(f) not in before]
