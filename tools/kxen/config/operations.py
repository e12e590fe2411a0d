"""Config commands over a checkout: generate the configs the spec ships, check and
explain them with the Kconfig model of the tree, edit one symbol in the right layer,
and diff two revisions of configs/ or two upstream trees."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from kxen import arches
from kxen.config import check as configcheck
from kxen.config import deps, findings_cache, kconfig, model_cache, pending, toolchain
from kxen.config import edit as configedit
from kxen.config import fragments as configs
from kxen.config.model import KconfigModel, SymbolInfo
from kxen.errors import ConfigError, InputError, KxenError
from kxen.project import (
    Project,
    check_space,
    prepared_tree,
    probe_dir,
)
from kxen.support import integrity
from kxen.support.fsutil import scratch_dir
from kxen.upstream import origin


def generate_configs(
    project: Project, up: origin.Upstream, targets: list[configs.Target], outdir: Path
) -> list[Path]:
    check_space(project, up, {outdir: 1 + len(targets)})
    project.progress.phase("tree", f"Linux {up.version}")
    tree = prepared_tree(project, up, integrity.CONFIG_INPUTS)
    project.progress.phase("configs", ", ".join(f"{t.arch}/{t.flavour}" for t in targets))
    work = project.cache / "kconfig" / up.identity
    problems = _unusable_lines(project.configs_dir, targets, tree)
    if problems:
        raise _explain_problems(project, up, targets, problems)
    try:
        resolved = configs.generate(
            project.configs_dir,
            targets,
            tree,
            work,
            project.runner,
            toolchain.fingerprint(),
            project.quarantine,
        )
    except ConfigError as lost:
        raise _explain_lost_values(project, up, targets, lost) from None
    return configs.write_configs(resolved, up.version.kernelversion, outdir)


def _explain_lost_values(
    project: Project, up: origin.Upstream, targets: list[configs.Target], lost: KxenError
) -> KxenError:
    """kconfig dropped requested values: say why, in Kconfig terms (only paid on failure).

    Unknown symbols and values invalid for their type are input errors (exit 2); values
    Kconfig could not give are config errors (exit 4) with the unmet dependency."""
    report = check_configs(project, up, targets)
    failing = [f for f in report.findings if f.kind in configcheck.FAILING_KINDS]
    if not failing:
        return lost
    groups = configcheck.grouped(failing)
    details = [f"{configcheck.target_names(targets)}: {f.describe()}" for targets, f in groups]
    if any(f.kind in configcheck.INPUT_KINDS for f in failing):
        return InputError(f"{len(groups)} fragment value(s) cannot be used", details=details)
    return ConfigError(f"{len(groups)} requested config value(s) did not survive", details=details)


def _unusable_lines(
    configs_dir: Path, targets: list[configs.Target], tree: Path
) -> list[configs.Problem]:
    """Every line of the targets' layers no .config can hold (cheap: no Kconfig needed)."""
    flavours = configs.load_layers(configs_dir)
    problems: list[configs.Problem] = []
    for target in targets:
        configs.merge(configs_dir, target, tree, flavours, problems)
    return list(dict.fromkeys(problems))  # a shared layer's line once, not once per target


def _explain_problems(
    project: Project,
    up: origin.Upstream,
    targets: list[configs.Target],
    problems: list[configs.Problem],
) -> KxenError:
    """The bad lines with every other unusable value (the full check); the bad lines
    alone when the tree's Kconfig cannot even be read."""
    plain = configs.problems_error(problems, project.root)
    try:
        return _explain_lost_values(project, up, targets, plain)
    except KxenError:
        return plain


def _kconfig_models(
    project: Project, up: origin.Upstream, targets: list[configs.Target]
) -> tuple[Path, dict[str, KconfigModel]]:
    project.progress.phase("tree", f"Linux {up.version}")
    tree = prepared_tree(project, up, integrity.CONFIG_INPUTS)
    work = probe_dir(project, up)
    models = {
        arch: _model(project, up, tree, arch, work) for arch in sorted({t.arch for t in targets})
    }
    # the models live as long as the command: spare the collector from walking their
    # million objects again and again (rebase_preview() frees one tree's before the next)
    gc.freeze()
    return tree, models


def _free_models() -> None:
    """Hand the models _kconfig_models() froze back to the collector, once dropped."""
    gc.unfreeze()
    gc.collect()


def _model(
    project: Project, up: origin.Upstream, tree: Path, arch: str, work: Path
) -> KconfigModel:
    """The arch's model from the verified model cache, else parsed (and cached)."""
    digest = model_cache.key(up.identity, tree, arch, _toolchain_key(project, tree, arch))
    directory = work / model_cache.DIRECTORY
    model = model_cache.load(directory, digest, project.quarantine)
    if model is None:
        project.progress.phase("kconfig", f"reading Kconfig for {arch}")
        model = kconfig.load(tree, arch, work, project.runner)
        model_cache.save(directory, digest, model)
    return model


def _toolchain_key(project: Project, tree: Path, arch: str) -> str:
    """What Kconfig's probes see for `arch` on this host (see kconfig.toolchain_key)."""
    kernel_arch = arches.get(arch).kernel_arch
    env = kconfig.kbuild_environment(tree.resolve(), kernel_arch, runner=project.runner)
    return kconfig.toolchain_key(env)


def check_configs(
    project: Project, up: origin.Upstream, targets: list[configs.Target]
) -> configcheck.CheckReport:
    """`kxen config check`: every target resolved with its arch's Kconfig model.

    An arch whose inputs are unchanged since an earlier check answers from the findings
    cache (`findings_cache`) without reading Kconfig; the others are checked anew."""
    project.progress.phase("tree", f"Linux {up.version}")
    tree = prepared_tree(project, up, integrity.CONFIG_INPUTS)
    work = probe_dir(project, up)
    cache = work / findings_cache.DIRECTORY
    merged = configcheck.merged_targets(project.configs_dir, targets, tree)
    found: list[configcheck.Finding] = []
    misses: list[tuple[_ArchCheck, str]] = []
    for arch in sorted({target.arch for target in targets}):
        job = _ArchCheck(
            arch, tuple(m for m in merged if m[0].target.arch == arch), tree, work, project.root
        )
        digest = _findings_key(project, up, job)
        cached = findings_cache.load(cache, digest, project.quarantine)
        if cached is None:
            misses.append((job, digest))
        else:
            found += cached
    if misses:
        project.progress.phase("check", ", ".join(f"{t.arch}/{t.flavour}" for t in targets))
    parts = _run_checks([job for job, _ in misses])
    for (_, digest), part in zip(misses, parts, strict=True):
        findings_cache.save(cache, digest, part)
        found += part
    report = configcheck.report(project.configs_dir, targets, found)
    flavours = configs.load_layers(project.configs_dir)
    report.pending = [
        f"{e.path.relative_to(project.root)}: CONFIG_{e.symbol}"
        for e in pending.unreviewed(project.configs_dir, flavours, tree)
    ]
    return report


@dataclass(frozen=True)
class _ArchCheck:
    arch: str
    merged: tuple[configcheck.MergedTarget, ...]
    tree: Path
    probe_dir: Path
    repo_root: Path


def _findings_key(project: Project, up: origin.Upstream, job: _ArchCheck) -> str:
    toolchain_key = _toolchain_key(project, job.tree, job.arch)
    return findings_cache.key(
        up.identity, job.tree, job.arch, toolchain_key, job.merged, job.repo_root
    )


def _run_checks(jobs: list[_ArchCheck]) -> list[list[configcheck.Finding]]:
    """Each arch's model loaded and checked in turn, in this process, one model at a time:
    two in parallel take twice the memory (each ~60 MiB with its parse) for little
    time on a 2-CPU build host, where the probes' compilers compete for the same CPUs."""
    parts = []
    for job in jobs:
        parts.append(_check_arch(job))
        gc.collect()  # Kconfiglib's objects are cycles: free one model before the next
    return parts


def _check_arch(job: _ArchCheck) -> list[configcheck.Finding]:
    model = kconfig.load(job.tree, job.arch, job.probe_dir)
    return configcheck.merged_findings(job.merged, {job.arch: model}, job.repo_root)


def explain_symbol(
    project: Project, up: origin.Upstream, symbol: str, targets: list[configs.Target]
) -> list[configcheck.Explanation]:
    tree, models = _kconfig_models(project, up, targets)
    project.progress.phase("explain", f"CONFIG_{symbol}")
    return configcheck.explain(project.configs_dir, symbol, targets, tree, models, project.root)


@dataclass(frozen=True)
class SetResult:
    """What a `config set/unset` wrote and what it did to the final configs."""

    layer: str
    reach: list[configs.Target]
    """Every target the layer reaches (more than those asked for: a warning says so)."""
    edits: list[configedit.Edit]
    effects: list[configcheck.Effect]
    changes: list[configcheck.ValueChange]
    """Every final value that changed, the asked-for symbol's and its parents'."""


def set_symbol(
    project: Project,
    up: origin.Upstream,
    symbol: str,
    value: configs.Value,
    targets: list[configs.Target],
    layer: str | None,
    with_deps: bool = False,
) -> SetResult:
    """`kxen config set/unset`: validate against Kconfig, find the whole dependency path,
    write the line (and, `with_deps`, its parents' lines) in one layer and show every
    value that changed. Nothing stays written when the value cannot be had (exit 4)."""
    flavours = configs.load_layers(project.configs_dir)
    everyone = [
        configs.Target(arch, flavour)
        for flavour in project.manifest.flavours
        for arch in project.manifest.arches
    ]
    chosen = configedit.choose_layer(targets, everyone, flavours, layer)
    touched = configedit.users_of(chosen, everyone, flavours)
    if set(touched) - set(targets):
        project.progress.warn(reach_warning(chosen, targets, touched))
    tree, models = _kconfig_models(project, up, touched)
    _validate_setting(project, symbol, value, targets, tree, models)
    values = _values_to_write(project, symbol, value, targets, tree, models, with_deps)
    before = configcheck.final_values(project.configs_dir, touched, tree, models)
    project.progress.phase("edit", f"{chosen}: CONFIG_{symbol}")
    edits: list[configedit.Edit] = []
    try:
        for name, wanted in values:
            edits.append(configedit.write_setting(project.configs_dir, chosen, name, wanted))
        found = configcheck.effects(
            project.configs_dir, symbol, value, touched, tree, models, project.root
        )
        _refuse_lost(symbol, value, [e for e in found if e.target in targets])
    except BaseException:
        configedit.revert(edits)
        raise
    after = configcheck.final_values(project.configs_dir, touched, tree, models)
    return SetResult(chosen, touched, edits, found, configcheck.diff_values(before, after))


def reach_warning(layer: str, targets: list[configs.Target], touched: list[configs.Target]) -> str:
    extra = [t for t in touched if t not in targets]
    names = ", ".join(f"{t.arch}/{t.flavour}" for t in extra)
    return (
        f"layer {layer} also reaches {names}, beyond the arches/flavours asked for "
        "(--layer chooses another)"
    )


def _validate_setting(
    project: Project,
    symbol: str,
    value: configs.Value,
    targets: list[configs.Target],
    tree: Path,
    models: dict[str, KconfigModel],
) -> None:
    """Refuse (exit 2) a value no config can give: unknown symbol, wrong type or range, or
    a symbol without a prompt (its value only ever comes from its defaults)."""
    for explained in configcheck.explain(
        project.configs_dir, symbol, targets, tree, models, project.root
    ):
        model, info = models[explained.target.arch], explained.info
        if info.prompt is None:
            defaults = " / ".join(info.defaults) or "none"
            raise InputError(
                f"CONFIG_{symbol} has no prompt: no config can set it, its value comes from "
                f"its defaults ({defaults}); nothing written",
                details=[f"defined at {where}" for where in info.definitions],
            )
        if not model.valid_value(symbol, value):
            raise InputError(
                f"CONFIG_{symbol}: {configcheck.value_problem(model, symbol, value)} "
                f"({explained.target.arch}/{explained.target.flavour}); nothing written"
            )


def _values_to_write(
    project: Project,
    symbol: str,
    value: configs.Value,
    targets: list[configs.Target],
    tree: Path,
    models: dict[str, KconfigModel],
    with_deps: bool,
) -> list[tuple[str, configs.Value]]:
    """The symbol's value, after its parents' when `with_deps`; exit 4 naming the whole
    path when parents are needed and not asked for, or when no values can give it."""
    found = deps.plans(project.configs_dir, symbol, value, targets, tree, models)
    head = f"CONFIG_{deps.Step(symbol, value, ()).describe()}"
    blocked = configcheck.said_once((p.target, p.blocked) for p in found if p.blocked)
    if blocked:
        raise ConfigError(f"{head} cannot be had; nothing written", details=blocked)
    needing = [p for p in found if p.parents]
    if needing and not with_deps:
        details = configcheck.said_once((p.target, p.path()) for p in needing)
        raise ConfigError(
            f"{head} needs its dependencies set first (--with-deps sets them all in one step); "
            "nothing written",
            details=details,
        )
    merged: dict[str, configs.Value] = {}
    for step in (s for p in found for s in p.parents):
        if merged.setdefault(step.symbol, step.value) != step.value:
            raise ConfigError(f"{head}: the arches need different values of {step.symbol}")
    return [*merged.items(), (symbol, value)]


def _refuse_lost(symbol: str, value: configs.Value, found: list[configcheck.Effect]) -> None:
    lost = [e for e in found if e.actual != e.wanted]
    if lost:
        raise ConfigError(
            f"CONFIG_{symbol} does not take {configs.show(value)}; nothing written",
            details=configcheck.said_once((e.target, e.outcome()) for e in lost),
        )


def write_pending(
    project: Project,
    up: origin.Upstream,
    targets: list[configs.Target],
    since: origin.Upstream | None,
) -> list[Path]:
    """`kxen config pending`: an entry in configs/pending/ for every symbol the tree asks
    about that no layer answers (and, with `since`, that the old tree did not define)."""
    before: dict[str, set[str]] = {}
    if since is not None:
        _, old_models = _kconfig_models(project, since, targets)
        before = {arch: set(model.symbols()) for arch, model in old_models.items()}
        del old_models  # one tree's models at a time: they are ~60 MiB per arch
        _free_models()
    tree, models = _kconfig_models(project, up, targets)
    project.progress.phase("pending", "new symbols")
    found = _new_symbols(project.configs_dir, targets, tree, models, before)
    label = f"Linux {up.version}" + (f" (not in Linux {since.version})" if since else "")
    rendered = [
        (symbol, pending.render(info, values, label))
        for symbol, (info, values) in sorted(found.items(), key=lambda item: item[0].encode())
    ]
    return pending.write(project.configs_dir, rendered)


def _new_symbols(
    configs_dir: Path,
    targets: list[configs.Target],
    tree: Path,
    models: dict[str, KconfigModel],
    before: dict[str, set[str]],
) -> dict[str, tuple[SymbolInfo, list[tuple[configs.Target, configs.Value]]]]:
    """listnewconfig of every olddefconfig target (under allnoconfig an unset symbol is off
    by design), without the symbols the old tree already had: each symbol as the first
    target that lists it explains it, with every target's default."""
    flavours = configs.load_layers(configs_dir)
    found: dict[str, tuple[SymbolInfo, list[tuple[configs.Target, configs.Value]]]] = {}
    for target in targets:
        model = models[target.arch]
        merged = configs.merge(configs_dir, target, tree, flavours)
        if merged.resolve != "olddefconfig":
            continue
        requested = {s: v.value for s, v in merged.settings.items() if model.defined(s)}
        model.resolve(requested, merged.resolve)  # explain() shows this target's values
        for symbol, value in model.new_symbols(requested):
            if symbol not in before.get(target.arch, ()):
                found.setdefault(symbol, (model.explain(symbol), []))[1].append((target, value))
    return found


WORKING_TREE = "WORKTREE"


def diff_configs(
    project: Project,
    up: origin.Upstream,
    revisions: tuple[str, str],
    targets: list[configs.Target],
) -> list[configcheck.ValueChange]:
    """`kxen config diff A B`: final-config differences between two revisions of configs/."""
    tree, models = _kconfig_models(project, up, targets)
    finals = []
    with scratch_dir(project.cache, ".diff-") as scratch:
        for index, revision in enumerate(revisions):
            project.progress.phase("diff", f"resolving {revision}")
            configs_dir = _configs_at(project, revision, scratch / str(index))
            finals.append(configcheck.final_values(configs_dir, targets, tree, models))
    return configcheck.diff_values(finals[0], finals[1])


def rebase_preview(
    project: Project,
    old: origin.Upstream,
    new: origin.Upstream,
    revision: str,
    targets: list[configs.Target],
) -> configcheck.RebasePreview:
    """`kxen config diff --to-upstream NEW`: configs/ at `revision` on the old and new tree."""
    with scratch_dir(project.cache, ".rebase-") as scratch:
        configs_dir = _configs_at(project, revision, scratch / "configs-at")
        finals, reports = [], []
        for up in (old, new):  # one tree's models at a time: they are ~60 MiB per arch
            tree, models = _kconfig_models(project, up, targets)
            project.progress.phase("diff", f"resolving on Linux {up.version}")
            finals.append(configcheck.final_values(configs_dir, targets, tree, models))
            reports.append(configcheck.check(configs_dir, targets, tree, models, project.root))
            del models
            _free_models()
    return configcheck.RebasePreview(
        configcheck.diff_values(finals[0], finals[1]),
        configcheck.regressions(reports[0], reports[1]),
    )


def _configs_at(project: Project, revision: str, into: Path) -> Path:
    """configs/ as of a git revision of the checkout (or the working tree)."""
    if revision == WORKING_TREE:
        return project.configs_dir
    into.mkdir(parents=True)
    tarball = into / "configs.tar"
    archive = project.runner.run(
        ["git", "-C", project.root, "archive", "--format=tar", "-o", tarball, revision, "configs"],
        check=False,
    )
    if not archive.ok:
        raise InputError(f"git revision {revision!r}: {archive.output.strip().splitlines()[-1]}")
    project.runner.run(["tar", "-xf", tarball, "-C", into])
    return into / "configs"
