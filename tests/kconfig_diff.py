"""Differential testing of kxen's Kconfig model against the tree's own scripts/kconfig.

For a start config and an arch, the kernel side runs `kconfig_oracle.c` (conf.c itself,
built against the tree's scripts/kconfig: the file `olddefconfig` or `allnoconfig
KCONFIG_ALLCONFIG=` writes, `listnewconfig`'s list, and every symbol's visibility, computed
value and select/imply strength) and the model side runs `KconfigModel.resolve()`,
`new_symbols()`, `states()` and `explain()` on the same start config. Every difference is
reported per symbol, with the model's own account of the symbol (its user value,
dependencies, active selects and implies) as the reason to look at.

The corpus is what the README's claim "equal to `make olddefconfig`" rests on:
`debian_starts()` (Debian's real 6.1 configs), `generated_starts()` (`randconfig` with
fixed seeds, thinned so that defaults and the "new" list are exercised too, and the
all*/def configs) and `allnoconfig_starts()`, for every arch.
"""

from __future__ import annotations

import concurrent.futures
import lzma
import random
import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kxen import arches
from kxen.config import fragments, kconfig
from kxen.config.fragments import Value
from kxen.config.model import KconfigModel, Selector

ORACLE_SOURCE = Path(__file__).with_name("kconfig_oracle.c")
DEBIAN_CONFIGS = Path("/usr/src/linux-config-6.1")
KCONFIG_COMMON_OBJECTS = (
    "confdata",
    "expr",
    "lexer.lex",
    "menu",
    "parser.tab",
    "preprocess",
    "symbol",
    "util",
)
"""scripts/kconfig/Makefile's `common-objs`: everything of conf but conf.o."""
ALL_TARGETS = ("allnoconfig", "allyesconfig", "allmodconfig", "alldefconfig")
THINNING = 0.25
"""Share of a generated config's lines dropped, so that olddefconfig has defaults to give
and listnewconfig has symbols to list (a full randconfig output has neither)."""
ALLCONFIG_SHARE = 0.1
"""Share of a randconfig kept as an allnoconfig fragment."""


@dataclass(frozen=True)
class Start:
    """One start config for one arch: what olddefconfig or allnoconfig reads."""

    arch: str
    name: str
    text: str
    base: str = "olddefconfig"
    """olddefconfig: `text` is the .config; allnoconfig: it is KCONFIG_ALLCONFIG."""

    @property
    def label(self) -> str:
        return f"{self.arch}:{self.name}" + ("" if self.base == "olddefconfig" else f":{self.base}")


@dataclass(frozen=True)
class Outcome:
    """What one side computes from a start config."""

    values: dict[str, Value]
    """The config `olddefconfig` writes."""
    new: list[tuple[str, Value]]
    """`listnewconfig` of the start config."""
    states: dict[str, tuple[str, str]]
    """Every symbol: (visibility n/m/y, computed value as kconfig spells it unquoted)."""
    forced: dict[str, tuple[str, str]]
    """Every symbol something selects or implies: what its `select`s and its `imply`s force
    (n/m/y, "-" for none of that kind). The model's come from `explain()`'s reasons."""


@dataclass(frozen=True)
class Difference:
    start: str
    symbol: str
    aspect: str
    """value (written .config), new (listnewconfig), visibility, computed, selected or
    implied (what explain()'s selects / implies force)."""
    model: object
    kconfig: object
    reason: str

    def describe(self) -> str:
        return (
            f"{self.start}: CONFIG_{self.symbol} {self.aspect}: model {self.model!r}, "
            f"kconfig {self.kconfig!r}\n    {self.reason}"
        )


# --- the kernel side ----------------------------------------------------------------


class KernelKconfig:
    """The tree's own kconfig for one arch: conf and the oracle, built once in `objdir`."""

    def __init__(
        self, tree: Path, objdir: Path, arch: str, tools: KernelKconfig | None = None
    ) -> None:
        """With `tools`, its conf and oracle (built from another tree's scripts/kconfig)
        read this tree: how a synthetic tree without kconfig sources is checked."""
        self.tree = tree
        self.arch = arch
        self.objdir = objdir
        self.env = kconfig.kbuild_environment(tree, arches.get(arch).kernel_arch)
        self.conf = objdir / "scripts" / "kconfig" / "conf"
        self.oracle = objdir / "kconfig-oracle"
        if tools is None:
            self._build()
        else:
            self.conf, self.oracle = tools.conf, tools.oracle

    def _build(self) -> None:
        """`make olddefconfig` in O= builds conf and its objects (once per objdir); the
        oracle links them (each time: it is quick and follows kconfig_oracle.c)."""
        kernel_arch = arches.get(self.arch).kernel_arch
        if not self.conf.exists():
            self.objdir.mkdir(parents=True, exist_ok=True)
            make = ["make", "-s", "-C", str(self.tree), f"O={self.objdir}", f"ARCH={kernel_arch}"]
            _run([*make, "olddefconfig"])
        built = self.objdir / "scripts" / "kconfig"
        objects = [str(built / f"{name}.o") for name in KCONFIG_COMMON_OBJECTS]
        includes = [f"-I{self.tree / 'scripts' / 'kconfig'}", f"-I{built}"]
        _run(["gcc", "-O1", "-w", *includes, "-o", str(self.oracle), str(ORACLE_SOURCE), *objects])

    def _jobs(self, jobs: list[str], work: Path) -> list[str]:
        """Run oracle jobs (lines, see kconfig_oracle.c) in `work`; the output of each."""
        work.mkdir(parents=True, exist_ok=True)
        output = _run([str(self.oracle), "Kconfig"], cwd=work, env=self.env, stdin="".join(jobs))
        answers = re.split(r"^(==|!=)\n", output, flags=re.MULTILINE)
        results, statuses = answers[0:-1:2], answers[1::2]
        failed = [jobs[i] for i, status in enumerate(statuses) if status != "=="]
        assert len(results) == len(jobs) and not failed, (len(results), failed)
        return results

    def generate(self, plans: list[tuple[str, str]], work: Path) -> list[str]:
        """The configs `conf --<mode>` writes, for (mode, argument) plans: the seed of a
        randconfig, the file of a defconfig."""
        jobs = [
            f"generate {mode} {index}.config {arg}\n" for index, (mode, arg) in enumerate(plans)
        ]
        self._jobs(jobs, work)
        return [(work / f"{index}.config").read_text() for index in range(len(plans))]

    def outcomes(self, starts: list[Start], work: Path) -> list[Outcome]:
        """The oracle's outcome of every start, from one parse of the tree's Kconfig."""
        work.mkdir(parents=True, exist_ok=True)
        jobs = []
        for index, start in enumerate(starts):
            (work / f"{index}.start").write_text(start.text)
            kind = "check" if start.base == "olddefconfig" else start.base
            jobs.append(f"{kind} {index}.start {index}.out\n")
        reports = self._jobs(jobs, work)
        return [
            _oracle_outcome(report, (work / f"{index}.out").read_text())
            for index, report in enumerate(reports)
        ]

    def conf_generate(self, mode: str, arg: str, work: Path) -> str:
        """`conf --<mode>` itself (randconfig: KCONFIG_SEED=arg), as `make` runs it."""
        work.mkdir(parents=True, exist_ok=True)
        # an existing auto.conf makes conf skip writing it and include/config/ (6.1)
        (work / "auto.conf").touch()
        env = {
            **self.env,
            "KCONFIG_CONFIG": str(work / ".config"),
            "KCONFIG_AUTOCONFIG": str(work / "auto.conf"),
            "KCONFIG_SEED": arg,
        }
        _run([str(self.conf), "-s", f"--{mode}", "Kconfig"], cwd=work, env=env)
        return (work / ".config").read_text()

    def conf_outcome(self, start: Start, work: Path) -> Outcome:
        """`conf --olddefconfig` and `conf --listnewconfig` of `start`, each a fresh conf run
        as `make` starts it: what the oracle must equal (states are not in conf's output)."""
        work.mkdir(parents=True, exist_ok=True)
        config = work / ".config"
        env = {**self.env, "KCONFIG_CONFIG": str(config)}
        config.write_text(start.text)
        listed = _run([str(self.conf), "-s", "--listnewconfig", "Kconfig"], cwd=work, env=env)
        config.write_text(start.text)
        _run([str(self.conf), "-s", "--olddefconfig", "Kconfig"], cwd=work, env=env)
        return Outcome(
            values=fragments.parse_config_values(config.read_text()),
            new=_sorted(fragments.parse_config_values(listed).items()),
            states={},
            forced={},
        )


def _oracle_outcome(report: str, written: str) -> Outcome:
    listed, _, symbols = report.partition("--\n")
    states: dict[str, tuple[str, str]] = {}
    forced: dict[str, tuple[str, str]] = {}
    for line in symbols.splitlines():
        name, visible, rest = line.split("\t", 2)
        value, selected, implied = rest.rsplit("\t", 2)
        states[name] = (visible, value)
        if (selected, implied) != ("-", "-"):
            forced[name] = (selected, implied)
    return Outcome(
        values=fragments.parse_config_values(written),
        new=_sorted(fragments.parse_config_values(listed).items()),
        states=states,
        forced=forced,
    )


def _run(
    argv: list[str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def _sorted(items: Iterable[tuple[str, Value]]) -> list[tuple[str, Value]]:
    return sorted(items, key=lambda item: item[0].encode())


# --- the model side -----------------------------------------------------------------


def model_outcome(model: KconfigModel, start: Start, targets: Iterable[str]) -> Outcome:
    """The model's outcome; `forced` for `targets` (see `reverse_targets()`)."""
    requested = fragments.parse_config_values(start.text)
    values = model.resolve(requested, start.base)
    return Outcome(
        values=values,
        new=model.new_symbols(requested) if start.base == "olddefconfig" else [],
        states=model.states(),
        forced={symbol: _explained_forces(model, symbol) for symbol in targets},
    )


def reverse_targets(model: KconfigModel) -> list[str]:
    """The symbols `explain()` names a select or imply for (independent of values)."""
    return [
        symbol
        for symbol in model.symbols()
        if (info := model.explain(symbol)).selected_by or info.implied_by
    ]


def _explained_forces(model: KconfigModel, symbol: str) -> tuple[str, str]:
    info = model.explain(symbol)
    return _strongest(info.selected_by, info.type), _strongest(info.implied_by, info.type)


_TRI = {None: 0, "m": 1, "y": 2}


def _strongest(selectors: tuple[Selector, ...], kind: str) -> str:
    """What a set of selects (or implies) forces, as symbol.c computes it: the strongest
    one, m raised to y for a bool."""
    if not selectors:
        return "-"
    value = max(_TRI[s.forces] for s in selectors)
    return "nmy"[2 if value == 1 and kind == "bool" else value]


# --- comparing ----------------------------------------------------------------------


def compare(model: KconfigModel, start: Start, mine: Outcome, theirs: Outcome) -> list[Difference]:
    """Every per-symbol difference, each with the model's account of the symbol."""
    found: list[tuple[str, str, object, object]] = []
    found += _mapping_differences("value", mine.values, theirs.values)
    found += _mapping_differences("new", dict(mine.new), dict(theirs.new))
    for aspect, index in (("visibility", 0), ("computed", 1)):
        found += _mapping_differences(
            aspect, _column(mine.states, index), _column(theirs.states, index)
        )
    for aspect, index in (("selected", 0), ("implied", 1)):
        found += _mapping_differences(
            aspect, _column(mine.forced, index), _column(theirs.forced, index)
        )
    if not found:
        return []
    model.resolve(fragments.parse_config_values(start.text), start.base)
    return [
        Difference(start.label, symbol, aspect, ours, kernels, _reason(model, symbol))
        for symbol, aspect, ours, kernels in found
    ]


_MISSING = "<absent>"


def _column(rows: Mapping[str, tuple[str, str]], index: int) -> dict[str, str]:
    return {symbol: row[index] for symbol, row in rows.items()}


def _mapping_differences(
    aspect: str, mine: Mapping[str, object], theirs: Mapping[str, object]
) -> list[tuple[str, str, object, object]]:
    return [
        (symbol, aspect, mine.get(symbol, _MISSING), theirs.get(symbol, _MISSING))
        for symbol in sorted(set(mine) | set(theirs))
        if mine.get(symbol, _MISSING) != theirs.get(symbol, _MISSING)
    ]


def _reason(model: KconfigModel, symbol: str) -> str:
    """The model's account of the symbol: what a fix has to look at."""
    if not model.defined(symbol):
        return "not defined in the model"
    info = model.explain(symbol)
    parts = [f"user value {model.user_value(symbol)!r}"]
    if info.depends:
        parts.append(info.depends)
    parts += [f"selected by {s.describe()}" for s in info.selected_by if s.active]
    parts += [f"implied by {s.describe()}" for s in info.implied_by if s.active]
    if info.choice:
        parts.append(f"member of {info.choice} (selection {info.choice_selection})")
    return "; ".join(parts)


# --- the corpus ---------------------------------------------------------------------


def debian_starts(arch: str) -> list[Start]:
    """Debian's x86 configs of linux-config-6.1. Each is a start for every x86 arch: an
    amd64 config under ARCH=i386 is what `make ARCH=i386 olddefconfig` of it gives."""
    return [
        Start(
            arch,
            f"debian:{path.name.removeprefix('config.').removesuffix('.xz')}",
            lzma.decompress(path.read_bytes()).decode(),
        )
        for path in sorted(DEBIAN_CONFIGS.glob("config.*.xz"))
        if path.name.startswith(("config.amd64", "config.i386"))
    ]


def thinned(text: str, seed: int, drop: float = THINNING) -> str:
    """`text` without a seeded random share `drop` of its lines."""
    chooser = random.Random(seed)
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if chooser.random() >= drop)


def allnoconfig_starts(starts: Iterable[Start], every: int = 5) -> list[Start]:
    """`allnoconfig` starts (KCONFIG_ALLCONFIG, how the smoke flavour resolves): every
    Debian config whole, and a seeded tenth of every `every`th randconfig, a fragment."""
    result = []
    for index, start in enumerate(starts):
        if start.name.startswith("debian:"):
            result.append(Start(start.arch, start.name, start.text, "allnoconfig"))
        elif start.name.startswith("randconfig:") and index % every == 0:
            text = thinned(start.text, index, drop=1 - ALLCONFIG_SHARE)
            result.append(Start(start.arch, start.name, text, "allnoconfig"))
    return result


def generated_starts(kernel: KernelKconfig, work: Path, seeds: Iterable[int]) -> list[Start]:
    """randconfig with each KCONFIG_SEED (thinned), the all*configs and the arch's defconfig,
    as the tree's conf generates them."""
    defconfig = kernel.tree / "arch" / "x86" / "configs" / _defconfig_name(kernel.arch)
    plans = [(mode, "") for mode in ALL_TARGETS] + [("defconfig", str(defconfig))]
    plans += [("randconfig", str(seed)) for seed in seeds]
    texts = kernel.generate(plans, work / kernel.arch)
    return [
        Start(kernel.arch, f"randconfig:seed={arg}", thinned(text, int(arg)))
        if mode == "randconfig"
        else Start(kernel.arch, mode, text)
        for (mode, arg), text in zip(plans, texts, strict=True)
    ]


def _defconfig_name(arch: str) -> str:
    return "x86_64_defconfig" if arches.get(arch).kernel_arch == "x86_64" else "i386_defconfig"


@dataclass(frozen=True)
class Report:
    configs: int
    symbols_compared: int
    """Symbols x configs: every symbol of each start's arch, once per start."""
    seconds: float
    differences: list[Difference]

    @property
    def per_second(self) -> float:
        return self.symbols_compared / self.seconds if self.seconds else 0.0


def run(
    starts: Iterable[Start],
    kernels: Mapping[str, KernelKconfig],
    models: Mapping[str, KconfigModel],
    work: Path,
) -> Report:
    """Compare every start: the oracle of each arch runs (one process per arch) while this
    thread computes the model's outcomes."""
    begin = time.monotonic()
    starts = list(starts)
    by_arch = {arch: [s for s in starts if s.arch == arch] for arch in {s.arch for s in starts}}
    with concurrent.futures.ThreadPoolExecutor(max(1, len(by_arch))) as pool:
        futures = {
            arch: pool.submit(kernels[arch].outcomes, group, work / arch)
            for arch, group in by_arch.items()
        }
        mine = {}
        for arch, group in by_arch.items():
            targets = reverse_targets(models[arch])
            mine[arch] = [model_outcome(models[arch], s, targets) for s in group]
        theirs = {arch: future.result() for arch, future in futures.items()}
    differences: list[Difference] = []
    compared = 0
    for arch, group in by_arch.items():
        for start, ours, kernels_ in zip(group, mine[arch], theirs[arch], strict=True):
            differences += compare(models[arch], start, ours, kernels_)
            compared += len(kernels_.states)
    return Report(len(starts), compared, time.monotonic() - begin, differences)
