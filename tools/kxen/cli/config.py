"""`kxen config ...`: generate, check, explain, set/unset and diff the configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.options import UPSTREAM_OPTION, complete_arch, complete_flavour, complete_layer
from kxen.cli.output import Options, command, echo_lines, emit, open_project
from kxen.errors import ConfigError, InputError

if TYPE_CHECKING:  # imported where they are used, so that `kxen --help` stays fast
    from kxen.config import check as configcheck
    from kxen.config import edit as configedit
    from kxen.config import fragments as configs
    from kxen.config import operations as config_ops
    from kxen.project import Project, UpstreamChoice


@main_group.group(name="config")
def config_group() -> None:
    """Kconfig fragments: generate the full configs the spec ships."""


FLAVOUR_OPTION = click.option(
    "--flavour",
    "flavours",
    multiple=True,
    shell_complete=complete_flavour,
    help="Flavour (repeatable; default: all).",
)


def _use_compiler(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--cc: the compiler of the build root being reproduced, for kconfig's probes and
    the model's alike (both read CC from the environment, as kbuild passes it)."""
    if value:
        os.environ["CC"] = value


CC_OPTION = click.option(
    "--cc",
    default=None,
    expose_value=False,
    callback=_use_compiler,
    envvar="CC",
    help="C compiler Kconfig probes (e.g. gcc-12, clang; default: $CC, else gcc).",
)


def config_targets(func: Callable[..., None]) -> Callable[..., None]:
    """--arch/--flavour (repeatable, default: all), --upstream and --cc for the config
    commands."""
    options = (
        CC_OPTION,
        UPSTREAM_OPTION,
        FLAVOUR_OPTION,
        click.option(
            "--arch",
            "arches",
            multiple=True,
            shell_complete=complete_arch,
            help="Arch (default: all).",
        ),
    )
    for option in options:
        func = option(func)
    return func


def _targets(
    project: Project, arches: tuple[str, ...], flavours: tuple[str, ...]
) -> list[configs.Target]:
    from kxen.config import fragments as configs

    project.check_arches(list(arches))
    for flavour in flavours:
        project.check_flavour(flavour)
    return [
        configs.Target(arch, flavour)
        for flavour in (flavours or project.manifest.flavours)
        for arch in (arches or project.manifest.arches)
    ]


@command(config_group)
@config_targets
@click.option(
    "-o",
    "--outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write the configs.",
)
def generate(
    options: Options,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
    outdir: Path,
) -> None:
    """Merge the fragments and resolve them with the kernel's own kconfig."""
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        paths = config_ops.generate_configs(project, up, targets, outdir.resolve())
    emit(options, {"configs": [str(p) for p in paths]}, echo_lines(str(p) for p in paths))


@command(config_group)
@config_targets
@click.option("--strict", is_flag=True, help="Fail on any mismatch, unknown or invalid value (CI).")
@click.option("--show-new", is_flag=True, help="List every symbol that takes its default.")
def check(
    options: Options,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
    strict: bool,
    show_new: bool,
) -> None:
    """Report values that did not survive Kconfig, and why; new, unknown, redefined symbols."""
    from kxen.config import check as configcheck
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        report = config_ops.check_configs(project, up, targets)
    lines = _check_lines(report, show_new)
    if any(f.kind == "malformed" for f in report.findings):
        bad = {f.where for f in report.findings if f.kind in configcheck.INPUT_KINDS}
        raise ConfigCheckBadInput(
            f"config check: {len(bad)} fragment line(s) cannot be used",
            details=lines,
            payload=report.as_dict(),
        )
    if not report.ok(strict):
        failing = report.failing()
        raise ConfigCheckFailed(
            f"config check --strict: {len(failing)} failing finding(s), "
            f"{len(report.stale_allow)} stale allow-list entr(ies), "
            f"{len(report.pending)} unreviewed pending entr(ies)",
            details=lines,
            payload=report.as_dict(),
        )
    emit(options, report.as_dict(), echo_lines(lines))


def _check_lines(report: configcheck.CheckReport, show_new: bool) -> list[str]:
    """A count per target, then every finding once, naming the targets it holds for."""
    from kxen.config import check as configcheck

    lines = []
    for target in report.targets:
        found = [f for f in report.findings if f.target == target]
        shown = [f for f in found if show_new or f.kind != "new"]
        new = len(found) - len(shown)
        summary = f", {new} new symbol(s) take their default (--show-new)" if new else ""
        lines.append(f"{target.arch}/{target.flavour}: {len(shown)} finding(s){summary}")
    shown = [f for f in report.findings if show_new or f.kind != "new"]
    everyone = len(report.targets)
    for targets, finding in configcheck.grouped(shown):
        names = "all targets" if len(targets) == everyone > 1 else configcheck.target_names(targets)
        lines.append(f"  {finding.describe()}  [{names}]")
    lines += [
        f"stale allow-list entry (line {e.line}): {e.kind} {e.symbol}" for e in report.stale_allow
    ]
    lines += [f"pending, not reviewed: {entry}" for entry in report.pending]
    return lines


@command(config_group)
@FLAVOUR_OPTION
@click.option(
    "--arch", "arches", multiple=True, shell_complete=complete_arch, help="Arch (default: all)."
)
def layers(options: Options, arches: tuple[str, ...], flavours: tuple[str, ...]) -> None:
    """The layers of each arch/flavour in order, with their files and line counts."""
    from kxen.config import fragments as configs

    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        flavour_layers = configs.load_layers(project.configs_dir)
        found = {t: configs.target_layers(project.configs_dir, t, flavour_layers) for t in targets}
    lines = []
    for target, layer_list in found.items():
        lines.append(f"{target.arch}/{target.flavour}:")
        for index, layer in enumerate(layer_list, 1):
            total = sum(count for _, count in layer.files)
            lines.append(f"  {index}. {layer.name} ({len(layer.files)} file(s), {total} lines)")
            lines += [f"       {p.relative_to(options.repo)} ({n})" for p, n in layer.files]
    data = [_layers_dict(options.repo, target, found[target]) for target in found]
    emit(options, {"targets": data}, echo_lines(lines))


def _layers_dict(
    repo: Path, target: configs.Target, layer_list: list[configs.LayerFiles]
) -> dict[str, Any]:
    return {
        "arch": target.arch,
        "flavour": target.flavour,
        "layers": [
            {
                "name": layer.name,
                "files": [{"path": str(p.relative_to(repo)), "lines": n} for p, n in layer.files],
            }
            for layer in layer_list
        ],
    }


@command(config_group)
@config_targets
@click.option(
    "--since",
    "old_tarball",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The tree before the bump: only symbols it did not define are new.",
)
def pending(
    options: Options,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
    old_tarball: Path | None,
) -> None:
    """Write every new symbol, with its help and default, to configs/pending/ for review."""
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        since = resolve_upstream(project, old_tarball) if old_tarball else None
        written = config_ops.write_pending(project, up, targets, since)
    names = [str(path.relative_to(options.repo)) for path in written]
    lines = [f"{len(names)} new pending entr(ies)", *(f"  {name}" for name in names)]
    emit(options, {"written": names}, echo_lines(lines))


@command(config_group)
@click.argument("symbol")
@config_targets
def explain(
    options: Options,
    symbol: str,
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
) -> None:
    """Where SYMBOL is set, its final value per arch/flavour, and its Kconfig definition."""
    from kxen.config import check as configcheck
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    name = configcheck.symbol_name(symbol)
    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        found = config_ops.explain_symbol(project, up, name, targets)
    emit(
        options,
        {"explanations": [e.as_dict() for e in found]},
        echo_lines(e.describe() for e in found),
    )


def edit_options(func: Callable[..., None]) -> Callable[..., None]:
    """(--arch A... | --all-arches) [--flavour F]... [--layer L] [--upstream PATH]."""
    options = (
        click.option(
            "--layer",
            default=None,
            shell_complete=complete_layer,
            help="Layer to write (default: the most "
            "specific layer all selected arches/flavours share).",
        ),
        UPSTREAM_OPTION,
        CC_OPTION,
        FLAVOUR_OPTION,
        click.option("--all-arches", is_flag=True, help="Every arch of the manifest."),
        click.option(
            "--arch",
            "arches",
            multiple=True,
            shell_complete=complete_arch,
            help="Arch (repeatable).",
        ),
    )
    for option in options:
        func = option(func)
    return func


WITH_DEPS_OPTION = click.option(
    "--with-deps",
    is_flag=True,
    help="Also set every parent the unmet `depends on` path needs, in the same layer.",
)


def _edit(
    options: Options,
    symbol: str,
    value: configs.Value,
    arches: tuple[str, ...],
    all_arches: bool,
    flavours: tuple[str, ...],
    layer: str | None,
    local_tarball: UpstreamChoice,
    with_deps: bool = False,
) -> None:
    from kxen.config import check as configcheck
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    if bool(arches) == all_arches:
        raise InputError("name the arches: --arch A (repeatable) or --all-arches")
    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        result = config_ops.set_symbol(project, up, symbol, value, targets, layer, with_deps)
    lines = [f"layer {result.layer} reaches {configcheck.target_names(result.reach)}"]
    lines += [_edit_line(options.repo, edit) for edit in result.edits]
    lines += configcheck.said_once(_set_outcomes(symbol, result))
    data: dict[str, Any] = {
        "layer": result.layer,
        "reach": [f"{t.arch}/{t.flavour}" for t in result.reach],
        "edits": [
            {"file": str(e.path), "line": e.line, "before": e.before, "after": e.after}
            for e in result.edits
        ],
        "effects": [
            {
                "arch": e.target.arch,
                "flavour": e.target.flavour,
                "value": e.actual,
                "from": e.winner,
                "reason": e.reason,
            }
            for e in result.effects
        ],
        "changes": [_change_dict(c) for c in result.changes],
    }
    main = result.edits[-1]  # the asked-for symbol's line comes after its parents'
    data |= {"file": str(main.path), "line": main.line, "before": main.before, "after": main.after}
    emit(options, data, echo_lines(lines))


def _set_outcomes(
    symbol: str, result: config_ops.SetResult
) -> Iterator[tuple[configs.Target, str]]:
    """Per target, the asked-for symbol's change and where its value now comes from in one
    line; then every other value that changed (parents, what they select)."""
    from kxen.config import fragments as configs

    changes = {(c.target, c.symbol): c for c in result.changes}
    for effect in result.effects:
        change = changes.pop((effect.target, symbol), None)
        if change is None:
            yield effect.target, f"CONFIG_{symbol} unchanged: {effect.outcome()}"
        else:
            shown = f"CONFIG_{symbol}: {configs.show(change.before)} -> {effect.outcome()}"
            yield effect.target, shown
    yield from ((c.target, c.describe()) for c in changes.values())


def _edit_line(repo: Path, edit: configedit.Edit) -> str:
    where = f"{edit.path.relative_to(repo)}:{edit.line}"
    change = f"{edit.before} -> {edit.after}" if edit.before else f"added {edit.after}"
    return f"{where}: {change}"


@command(config_group, name="set")
@click.argument("assignment", metavar="CONFIG_X=VALUE")
@edit_options
@WITH_DEPS_OPTION
def set_(options: Options, assignment: str, **selection: Any) -> None:
    """Set a symbol in the right fragment file and show what it did to the final configs."""
    from kxen.config import check as configcheck
    from kxen.config import fragments as configs

    name, sep, raw = assignment.partition("=")
    if not sep:
        raise InputError(f"{assignment!r}: expected CONFIG_X=VALUE")
    symbol = configcheck.symbol_name(name)
    settings, _ = configs.scan_fragment(Path("<command line>"), f"CONFIG_{symbol}={raw}")
    # a value no .config can hold goes on to Kconfig, which says what the symbol takes
    value = settings[0].value if settings else raw
    _edit(options, symbol, value, **selection)


@command(config_group)
@click.argument("symbol", metavar="CONFIG_X")
@edit_options
def unset(options: Options, symbol: str, **selection: Any) -> None:
    """Mark a symbol `is not set` in the right fragment file and show the effect."""
    from kxen.config import check as configcheck

    _edit(options, configcheck.symbol_name(symbol), None, **selection)


@command(config_group)
@click.argument("revisions", nargs=-1, metavar="[A] [B]")
@config_targets
@click.option(
    "--to-upstream",
    "new_tarball",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rebase preview: resolve configs/ (at revision A, default the working tree) on "
    "this kernel tarball too and show what changes and which fragment lines stop working.",
)
def diff(
    options: Options,
    revisions: tuple[str, ...],
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
    new_tarball: Path | None,
) -> None:
    """Final-config differences between git revisions A and B of configs/ (default: HEAD
    and the working tree), or between two upstream trees (--to-upstream), by arch/flavour."""
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    if new_tarball is not None:
        _rebase_preview(options, revisions, arches, flavours, local_tarball, new_tarball)
        return
    if len(revisions) > 2:
        raise InputError("config diff takes at most two revisions")
    defaults = ("HEAD", config_ops.WORKING_TREE)
    pair = (*revisions, *defaults[len(revisions) :])
    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        up = resolve_upstream(project, local_tarball)
        changes = config_ops.diff_configs(project, up, (pair[0], pair[1]), targets)
    lines = [f"{pair[0]} -> {pair[1]}: {len(changes)} change(s)", *_by_target(changes, [])]
    data = {"from": pair[0], "to": pair[1], "changes": [_change_dict(c) for c in changes]}
    emit(options, data, echo_lines(lines))


def _rebase_preview(
    options: Options,
    revisions: tuple[str, ...],
    arches: tuple[str, ...],
    flavours: tuple[str, ...],
    local_tarball: UpstreamChoice,
    new_tarball: Path,
) -> None:
    from kxen.config import operations as config_ops
    from kxen.project import resolve_upstream

    if len(revisions) > 1:
        raise InputError("config diff --to-upstream takes at most one revision")
    revision = revisions[0] if revisions else config_ops.WORKING_TREE
    with open_project(options) as project:
        targets = _targets(project, arches, flavours)
        old = resolve_upstream(project, local_tarball)
        new = resolve_upstream(project, new_tarball)
        preview = config_ops.rebase_preview(project, old, new, revision, targets)
    head = (
        f"Linux {old.version} -> Linux {new.version} ({revision}): "
        f"{len(preview.changes)} change(s), "
        f"{len(preview.regressions)} fragment line(s) stop working"
    )
    data = {
        "from": old.describe(),
        "to": new.describe(),
        "revision": revision,
        "changes": [_change_dict(c) for c in preview.changes],
        "regressions": [f.as_dict() for f in preview.regressions],
    }
    emit(options, data, echo_lines([head, *_by_target(preview.changes, preview.regressions)]))


def _by_target(
    changes: list[configcheck.ValueChange], findings: list[configcheck.Finding]
) -> list[str]:
    """Findings then changes, each said once naming every arch/flavour it holds for."""
    from kxen.config import check as configcheck

    def order(target: configs.Target) -> tuple[str, str]:
        return target.arch, target.flavour

    lines = configcheck.said_once(
        (f.target, f.describe()) for f in sorted(findings, key=lambda f: order(f.target))
    )
    by_symbol = sorted(changes, key=lambda c: (c.symbol.encode(), order(c.target)))
    return lines + configcheck.said_once((c.target, c.describe()) for c in by_symbol)


def _change_dict(change: configcheck.ValueChange) -> dict[str, Any]:
    return {
        "arch": change.target.arch,
        "flavour": change.target.flavour,
        "symbol": change.symbol,
        "before": change.before,
        "after": change.after,
    }


class ConfigCheckFailed(ConfigError):
    def __init__(self, message: str, details: list[str], payload: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.payload = payload


class ConfigCheckBadInput(InputError):
    """A fragment line no .config can hold: exit 2, with the whole report."""

    def __init__(self, message: str, details: list[str], payload: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.payload = payload
