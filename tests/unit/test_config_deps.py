"""The dependency path of a `config set` and the wording of bad values, on the fake
tree's real Kconfig (tests/fakes/linux): what the commands print is built from these."""

from __future__ import annotations

import pytest
from kxen.config import check as configcheck
from kxen.config import deps, kconfig
from kxen.config.fragments import Target
from kxen.config.model import KconfigModel

from ..fakelinux import FAKE_TREE

X86_64 = Target("x86_64", "default")
I686 = Target("i686", "default")
BASE = {"XEN": "y", "HYPERVISOR_GUEST": "y", "PARAVIRT": "y", "SMP": "y", "64BIT": "y"}
MODULAR = {**BASE, "MODULES": "y"}


@pytest.fixture(scope="module")
def x86_64() -> KconfigModel:
    return kconfig.load(FAKE_TREE, "x86_64")


@pytest.fixture(scope="module")
def i686() -> KconfigModel:
    return kconfig.load(FAKE_TREE, "i686")


def test_the_whole_path_parents_first(x86_64: KconfigModel) -> None:
    plan = deps.plan(x86_64, X86_64, dict(MODULAR), "olddefconfig", "XEN_NETDEV_FRONTEND", "m")
    assert plan.blocked == ""
    assert [(s.symbol, s.value) for s in plan.steps] == [
        ("NET", "y"),
        ("NETDEVICES", "y"),
        ("XEN_NETDEV_FRONTEND", "m"),
    ]
    assert plan.path() == "needs NET=y (init/Kconfig:74), then NETDEVICES=y (drivers/net/Kconfig:3)"
    # the model is left as the layers have it
    assert x86_64.value("NET") is None


def test_a_value_already_reachable_needs_no_parent(x86_64: KconfigModel) -> None:
    requested = {**MODULAR, "NET": "y", "NETDEVICES": "y"}
    plan = deps.plan(x86_64, X86_64, requested, "olddefconfig", "XEN_NETDEV_FRONTEND", "m")
    assert (plan.blocked, plan.parents) == ("", [])


def test_m_without_modules_asks_for_modules(x86_64: KconfigModel) -> None:
    requested = {**BASE, "NET": "y", "NETDEVICES": "y"}
    plan = deps.plan(x86_64, X86_64, requested, "olddefconfig", "XEN_NETDEV_FRONTEND", "m")
    assert plan.blocked == ""
    assert [s.symbol for s in plan.parents] == ["MODULES"]


def test_a_parent_without_a_prompt_blocks_with_the_reason(i686: KconfigModel) -> None:
    requested = {**BASE, "64BIT": None, "HIGHMEM64G": "y", "X86_PAE": "y"}
    plan = deps.plan(i686, I686, requested, "olddefconfig", "XEN_PV", "y")
    assert plan.blocked == (
        "CONFIG_XEN_PV=y: depends on X86_64 (=n), and X86_64 has no prompt: nothing can set it"
    )


@pytest.mark.parametrize(
    ("symbol", "value", "text"),
    [
        ("NR_CPUS", "abc", "`abc` is not an int; NR_CPUS takes 2\u2013512 on x86_64"),
        ("NR_CPUS", "9999", "`9999` is out of range; NR_CPUS takes 2\u2013512 on x86_64"),
        ("XEN", "m", "`m` is not a bool value; XEN takes y or n on x86_64"),
        ("LOCALVERSION", "abc", "`abc` is not a quoted string; LOCALVERSION takes a quoted"),
    ],
)
def test_bad_values_say_what_the_symbol_takes(
    x86_64: KconfigModel, symbol: str, value: str, text: str
) -> None:
    x86_64.resolve(BASE, "olddefconfig")
    assert configcheck.value_problem(x86_64, symbol, value).startswith(text)


def test_did_you_mean_comes_from_the_trees_names(x86_64: KconfigModel) -> None:
    assert configcheck.did_you_mean(x86_64, "XEN_BALLON") == "; did you mean CONFIG_XEN_BALLOON?"
    assert configcheck.did_you_mean(x86_64, "KXEN_NOTHING_LIKE_IT") == ""
