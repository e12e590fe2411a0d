"""The model's `imply`, `select` and `range` semantics are 6.1's scripts/kconfig, not
Kconfiglib 14.1.0's older rules (tests/integration/test_kconfig_differential.py checks the
same against the kernel's own conf on the real tree)."""

from __future__ import annotations

import pytest
from kxen.config import kconfig
from kxen.config.model import KconfigModel

from .test_kconfig import make_tree

SEMANTICS_KCONFIG = """\
config MODULES
	bool "Enable loadable module support"
	modules

config FS
	tristate "A filesystem"
	imply CIPHER
	imply MOD_HELPER
	imply OFF_HELPER

config CIPHER
	tristate "A cipher the filesystem likes"

config MOD_DEP
	tristate "Something built as a module"

config MOD_HELPER
	tristate "A helper that depends on the module"
	depends on MOD_DEP

config OFF
	bool "Off unless asked"

config OFF_HELPER
	tristate "A helper whose dependency is off"
	depends on OFF

config STRONG
	bool "Selects the cipher built in"
	select CIPHER

menu "Drivers of the module"
	depends on MOD_DEP

config BOOL_IN_M_MENU
	bool "A bool under an m menu"
	select CIPHER

endmenu

config NR_CPUS
	int "Maximum number of CPUs"
	range 2 64
	default 8
"""
"""Also resolved by 6.1's own conf in tests/integration/test_kconfig.py."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> KconfigModel:
    tree = make_tree(tmp_path_factory.mktemp("imply-tree") / "linux")
    (tree / "Kconfig").write_text(SEMANTICS_KCONFIG)
    return kconfig.load(tree, "x86_64")


def test_imply_keeps_the_user_value_of_a_visible_symbol(model: KconfigModel) -> None:
    """Debian's EXT4_FS=y with CRYPTO_XTS=m: kconfig keeps m (Kconfiglib said y)."""
    values = model.resolve({"MODULES": "y", "FS": "y", "CIPHER": "m"}, "olddefconfig")
    assert values["CIPHER"] == "m"
    assert model.explain("CIPHER").value == "m"
    assert model.why_not("CIPHER", "m").kind == "satisfied"
    # not in the request: not in the "new" list either, m is what the user asked
    assert "CIPHER" not in dict(model.new_symbols({"MODULES": "y", "FS": "y", "CIPHER": "m"}))


def test_imply_gives_its_value_to_a_symbol_without_user_value(model: KconfigModel) -> None:
    values = model.resolve({"MODULES": "y", "FS": "y"}, "olddefconfig")
    assert values["CIPHER"] == "y"
    (implied,) = model.explain("CIPHER").implied_by
    assert (implied.symbol, implied.active, implied.forces) == ("FS", True, "y")
    assert (
        values["MODULES"] == "y"
        and model.resolve({"MODULES": "y", "FS": "m"}, "olddefconfig")["CIPHER"] == "m"
    )


def test_imply_is_capped_by_the_dependencies(model: KconfigModel) -> None:
    """FS=y implies MOD_HELPER, which depends on an m symbol: m (Kconfiglib said y)."""
    values = model.resolve({"MODULES": "y", "FS": "y", "MOD_DEP": "m"}, "olddefconfig")
    assert values["MOD_HELPER"] == "m"


def test_implied_symbol_with_unmet_dependencies_is_written_as_not_set(
    model: KconfigModel,
) -> None:
    values = model.resolve({"MODULES": "y", "FS": "y"}, "olddefconfig")
    assert "OFF_HELPER" in values and values["OFF_HELPER"] is None
    values = model.resolve({"MODULES": "y"}, "olddefconfig")
    assert "OFF_HELPER" not in values  # no imply in effect: not written at all


def test_a_bool_under_an_m_menu_selects_only_m(model: KconfigModel) -> None:
    values = model.resolve(
        {"MODULES": "y", "MOD_DEP": "m", "BOOL_IN_M_MENU": "y", "CIPHER": "n"}, "olddefconfig"
    )
    assert values["BOOL_IN_M_MENU"] == "y" and values["CIPHER"] == "m"
    selectors = {s.symbol: s for s in model.explain("CIPHER").selected_by}
    assert (selectors["BOOL_IN_M_MENU"].value, selectors["BOOL_IN_M_MENU"].forces) == ("y", "m")
    assert selectors["BOOL_IN_M_MENU"].describe() == "BOOL_IN_M_MENU (=y), forcing m"
    assert not selectors["STRONG"].active and selectors["STRONG"].forces is None
    reason = model.why_not("CIPHER", None)
    assert reason.kind == "selected"
    assert reason.detail == "selected by BOOL_IN_M_MENU (=y), forcing m"


def test_a_reason_names_only_the_selects_that_force_y(model: KconfigModel) -> None:
    """Asked m, got y: the select that forces only m is not the reason."""
    requested = {"MODULES": "y", "MOD_DEP": "m", "BOOL_IN_M_MENU": "y", "STRONG": "y"}
    values = model.resolve({**requested, "CIPHER": "m"}, "olddefconfig")
    assert values["CIPHER"] == "y"
    reason = model.why_not("CIPHER", "m")
    assert reason.kind == "selected"
    assert [s.symbol for s in reason.selectors] == ["STRONG"]
    assert reason.detail == "selected by STRONG (=y)"


def test_states_give_visibility_and_computed_values(model: KconfigModel) -> None:
    model.resolve({"MODULES": "y", "MOD_DEP": "m", "BOOL_IN_M_MENU": "y"}, "olddefconfig")
    states = model.states()
    assert states["BOOL_IN_M_MENU"] == ("y", "y")  # a bool's m visibility counts as y
    assert states["MOD_HELPER"] == ("m", "n")
    assert states["OFF_HELPER"] == ("n", "n")
    assert model.user_value("MOD_DEP") == "m" and model.user_value("FS") is None


def test_out_of_range_user_value(model: KconfigModel) -> None:
    """olddefconfig (conf_read) drops it for the default; allnoconfig with
    KCONFIG_ALLCONFIG (conf_read_simple) keeps it, clamped to the bound it crosses."""
    assert model.resolve({"NR_CPUS": "128"}, "olddefconfig")["NR_CPUS"] == "8"
    assert model.resolve({"NR_CPUS": "128"}, "allnoconfig")["NR_CPUS"] == "64"
    assert model.resolve({"NR_CPUS": "1"}, "allnoconfig")["NR_CPUS"] == "2"
    assert model.resolve({"NR_CPUS": "16"}, "allnoconfig")["NR_CPUS"] == "16"
