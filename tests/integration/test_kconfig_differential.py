"""The Kconfig model equals the tree's own scripts/kconfig, on a broad corpus.

Every start config of the corpus (Debian's x86 configs of linux-config-6.1, `randconfig`
with fixed KCONFIG_SEEDs, the all*configs and the defconfig, for each arch) is resolved by
the model and by conf itself (tests/kconfig_oracle.c: conf.c with a dump of every symbol);
every symbol's written value, computed value and visibility, the "new" list, and what the
selects and implies `explain()` names really force must be equal. KXEN_KCONFIG_SEEDS sets
the number of randconfig seeds per arch (default 50).
"""

from __future__ import annotations

import os
from pathlib import Path

import kconfiglib
import pytest
from kxen import arches
from kxen.config import fragments, kconfig
from kxen.config import model as model_module
from kxen.config.model import KconfigModel

from .. import kconfig_diff as diff
from ..unit.test_kconfig import KCONFIG, make_tree
from ..unit.test_kconfig_semantics import SEMANTICS_KCONFIG

pytestmark = pytest.mark.slow

SEEDS = range(1, 1 + int(os.environ.get("KXEN_KCONFIG_SEEDS", "50")))
ARCHES = arches.names()


@pytest.fixture(scope="module")
def kernels(
    linux_tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, diff.KernelKconfig]:
    root = tmp_path_factory.mktemp("kconfig-oracle")
    return {arch: diff.KernelKconfig(linux_tree, root / arch, arch) for arch in ARCHES}


@pytest.fixture(scope="module")
def models(linux_tree: Path) -> dict[str, KconfigModel]:
    return {arch: kconfig.load(linux_tree, arch) for arch in ARCHES}


def _starts(kernels: dict[str, diff.KernelKconfig], work: Path, seeds: range) -> list[diff.Start]:
    starts: list[diff.Start] = []
    for arch, kernel in kernels.items():
        starts += diff.debian_starts(arch)
        starts += diff.generated_starts(kernel, work / "generated", seeds)
    return starts + diff.allnoconfig_starts(starts)


def test_oracle_is_the_kernels_conf(kernels, tmp_path):
    """What the oracle generates and answers equals fresh `conf` runs, as make starts them."""
    for arch, kernel in kernels.items():
        plans = [("randconfig", "7"), ("allmodconfig", "")]
        generated = kernel.generate(plans, tmp_path / arch / "generated")
        for (mode, arg), text in zip(plans, generated, strict=True):
            assert text == kernel.conf_generate(mode, arg, tmp_path / arch / mode)
        starts = [
            *diff.debian_starts(arch)[:2],
            diff.Start(arch, "thinned randconfig", diff.thinned(generated[0], 7)),
        ]
        answers = kernel.outcomes(starts, tmp_path / arch / "oracle")
        for index, (start, answer) in enumerate(zip(starts, answers, strict=True)):
            fresh = kernel.conf_outcome(start, tmp_path / arch / f"conf-{index}")
            assert (answer.values, answer.new) == (fresh.values, fresh.new), start.label
            assert len(answer.states) > 10000 and len(answer.forced) > 1000


def test_model_equals_kconfig_on_the_corpus(kernels, models, tmp_path):
    starts = _starts(kernels, tmp_path, SEEDS)
    assert len(starts) >= len(ARCHES) * (len(SEEDS) + len(diff.ALL_TARGETS) + 1)
    assert any(s.name.startswith("debian:") for s in starts)
    assert any(s.base == "allnoconfig" for s in starts)
    report = diff.run(starts, kernels, models, tmp_path)
    print(
        f"\n{report.configs} configs, {report.symbols_compared} symbols x configs compared "
        f"in {report.seconds:.1f}s ({report.per_second:.0f}/s)"
    )
    assert [d.describe() for d in report.differences] == []
    assert report.symbols_compared > report.configs * 10000


def test_the_differential_catches_kconfiglibs_old_imply(kernels, models, tmp_path, monkeypatch):
    """The harness sees the bug this model had: Kconfiglib's own `imply` rules turn
    Debian's cloud config (EXT4_FS=y) CRYPTO_XTS=m into y."""
    cloud = [s for s in diff.debian_starts("x86_64") if "cloud" in s.name]
    monkeypatch.setattr(kconfiglib.Symbol, "tri_value", model_module._KCONFIGLIB_TRI_VALUE_PROPERTY)
    report = diff.run(cloud, kernels, models, tmp_path)
    wrong = {(d.symbol, d.model, d.kconfig) for d in report.differences if d.aspect == "value"}
    assert ("CRYPTO_XTS", "y", "m") in wrong


@pytest.mark.parametrize(
    ("kconfig_text", "requests"),
    [
        (
            SEMANTICS_KCONFIG,
            [
                {"MODULES": "y", "FS": "y", "CIPHER": "m"},
                {"MODULES": "y", "FS": "y", "MOD_DEP": "m"},
                {"MODULES": "y", "MOD_DEP": "m", "BOOL_IN_M_MENU": "y", "CIPHER": "n"},
                {"MODULES": "y", "MOD_DEP": "m", "BOOL_IN_M_MENU": "y", "STRONG": "y"},
                {"MODULES": "y", "FS": "m"},
                {"NR_CPUS": "128"},
                {"NR_CPUS": "1", "FS": "y"},
            ],
        ),
        (
            KCONFIG.replace("\ttransitional\n", ""),  # unknown to 6.1's conf
            [
                {"MODULES": "y", "PARAVIRT": "y", "XEN": "y", "DRIVER": "m"},
                {"MODULES": "y", "DRIVER": "y", "HELPER": "m"},
                {"MEM_LARGE": "y", "MEM_SMALL": "y"},
                {"NR_CPUS": "128", "XEN": "m", "HIDDEN": "n"},
            ],
        ),
    ],
    ids=["semantics", "unit-tree"],
)
def test_tiny_trees_equal_kconfig(kconfig_text, requests, kernels, tmp_path):
    """The unit tests' synthetic trees, through the same harness (olddefconfig and
    allnoconfig): their expectations are what 6.1's conf does."""
    tree = make_tree(tmp_path / "linux")
    (tree / "Kconfig").write_text(kconfig_text)
    for arch in ARCHES:
        tiny = diff.KernelKconfig(tree, tmp_path / f"o-{arch}", arch, tools=kernels[arch])
        starts = [
            diff.Start(
                arch,
                f"request {i}",
                "".join(f"{fragments.format_setting(s, v)}\n" for s, v in request.items()),
                base,
            )
            for i, request in enumerate(requests)
            for base in ("olddefconfig", "allnoconfig")
        ]
        report = diff.run(starts, {arch: tiny}, {arch: kconfig.load(tree, arch)}, tmp_path / arch)
        assert report.configs == len(starts) and report.symbols_compared > 5 * len(starts)
        # $(shell,pwd) differs by design: the model runs commands in a scratch directory
        assert [d.describe() for d in report.differences if d.symbol != "SHELL_DIR"] == []
