"""kxen.kconfig on a tiny synthetic Kconfig tree (the real 6.1 tree: tests/integration)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kxen.config import kconfig
from kxen.config.model import KconfigModel
from kxen.errors import ConfigError, InputError
from kxen.support import integrity

KCONFIG = """\
mainmenu "Test/$(ARCH) $(KERNELVERSION)"

config MODULES
	bool "Enable loadable module support"
	modules
	help
          Lines of a help text are never rewritten:
          modules
          transitional

config 64BIT
	bool "64-bit kernel" if "$(ARCH)" = "x86"
	default "$(ARCH)" != "i386"

config X86_64
	def_bool y
	depends on 64BIT

config X86_32
	def_bool y
	depends on !64BIT

config X86_PAE
	bool "PAE support"
	depends on X86_32

config PARAVIRT
	bool "Paravirt support"

config XEN
	bool "Xen guest support"
	depends on PARAVIRT
	depends on X86_64 || (X86_32 && X86_PAE)
	help
          Xen help text.

config XEN_PV
	bool "Xen PV guest support"
	default y
	depends on XEN
	depends on X86_64

config CRC_LIB
	tristate "CRC library"

config DRIVER
	tristate "A driver"
	select CRC_LIB
	imply HELPER

config HELPER
	tristate "A helper the driver likes"

config SELECTED_IF
	bool "Selected when paravirt"

config PV_DRIVER
	bool "A paravirt driver"
	select SELECTED_IF if XEN

choice
	prompt "Memory model"
	default MEM_SMALL

config MEM_SMALL
	bool "Small"

config MEM_LARGE
	bool "Large"

endchoice

config NR_CPUS
	int "Maximum number of CPUs"
	range 2 64
	default 8

config BASE_ADDR
	hex "Base address"
	default 0x1000

config CMDLINE
	string "Built-in command line"
	default "console=hvc0"

config HIDDEN
	bool
	default y

config NEWER
	bool "Uses an attribute newer than Kconfiglib"
	transitional

config SHOWN_IF
	bool "Only asked with PAE" if X86_PAE

if PARAVIRT
config PV_SPINLOCKS
	bool "Paravirt spinlocks"
endif

config CC_NAME
	string
	default "$(CC)"

config SHELL_DIR
	string
	default "$(shell,pwd)"

config SRCARCH_NAME
	string
	default "$(SRCARCH)"
"""


def make_tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Makefile").write_text(
        "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\nNAME = Test\n"
    )
    (root / "Kconfig").write_text(KCONFIG)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("kconfig-tree") / "linux")


@pytest.fixture(scope="module")
def x86_64(tree: Path) -> KconfigModel:
    return kconfig.load(tree, "x86_64")


@pytest.fixture(scope="module")
def i686(tree: Path) -> KconfigModel:
    return kconfig.load(tree, "i686")


# --- reading the tree -----------------------------------------------------------


def test_rewrite_bare_modules_and_unknown_attributes():
    text = (
        "config MODULES\n"
        '\tbool "modules"\n'
        "\tmodules\n"
        "\ttransitional   # a comment\n"
        "\thelp\n"
        "\t  modules\n"
        "\n"
        "\t  futureword\n"
        "config B\n"
        "\tdepends on A && \\\n"
        "\t\tfoo\n"
        "\toptional\n"
    )
    rewritten, dropped = kconfig.rewrite_kconfig_text(text)
    lines = rewritten.splitlines()
    assert len(lines) == len(text.splitlines())
    assert lines[2] == "\toption modules"
    assert lines[3] == ""
    assert dropped == [(4, "transitional")]
    # the help text, a continued line and known keywords are kept as they are
    assert lines[5:8] == ["\t  modules", "", "\t  futureword"]
    assert lines[10:] == ["\t\tfoo", "\toptional"]


def test_load_reads_modules_and_drops_unknown_attribute(x86_64, tree):
    assert x86_64.symbol_type("MODULES") == "bool"
    assert [(a.file, a.line, a.word) for a in x86_64.ignored_attributes] == [
        ("Kconfig", KCONFIG.splitlines().index("\ttransitional") + 1, "transitional")
    ]
    assert x86_64.parse_seconds > 0
    help_text = x86_64.explain("MODULES").help
    assert help_text is not None and "modules\ntransitional" in help_text


def test_load_sets_the_makefile_environment(x86_64, i686, tree):
    for model, arch in ((x86_64, "x86_64"), (i686, "i386")):
        values = model.resolve({}, "olddefconfig")
        assert values["CC_NAME"] == '"gcc"'
        assert values["SRCARCH_NAME"] == '"x86"'
        assert model._kconf.mainmenu_text == f"Test/{arch} 6.1.192"
        # $(shell,...) runs outside the tree (cc-option writes .tmp_$$ where it runs)
        shell_dir = values["SHELL_DIR"].strip('"')
        assert shell_dir and not shell_dir.startswith(str(tree))
    assert x86_64.resolve({}, "olddefconfig")["64BIT"] == "y"
    assert i686.resolve({}, "olddefconfig").get("64BIT") is None


def test_load_does_not_write_the_tree(tmp_path):
    tree = make_tree(tmp_path / "linux")
    before = snapshot(tree)
    environment = dict(os.environ)
    model = kconfig.load(tree, "i686")
    assert dict(os.environ) == environment  # patched only while parsing
    model.resolve({"XEN": "y"}, "olddefconfig")
    model.new_symbols({})
    assert snapshot(tree) == before


def test_load_refuses_unknown_arch_and_non_tree(tmp_path, tree):
    with pytest.raises(InputError, match="unknown arch"):
        kconfig.load(tree, "arm64")
    with pytest.raises(InputError, match="no top-level Kconfig"):
        kconfig.load(tmp_path, "x86_64")


def test_load_reports_kconfig_errors(tmp_path):
    tree = make_tree(tmp_path / "linux")
    (tree / "Kconfig").write_text('config A\n\tbool "a"\n\tdepends on (B\n')
    with pytest.raises(ConfigError, match="Kconfig cannot be read"):
        kconfig.load(tree, "x86_64")
    (tree / "Kconfig").write_text('source "arch/$(SRCARCH)/Kconfig"\n')
    with pytest.raises(ConfigError, match="arch/x86/Kconfig"):
        kconfig.load(tree, "x86_64")


def test_kbuild_environment(tree):
    base = {"PATH": os.environ["PATH"], "LC_ALL": "de_DE.UTF-8", "CONFIG_": "X_", "HOME": "/h"}
    env = kconfig.kbuild_environment(tree, "i386", base)
    assert "LC_ALL" not in env and "CONFIG_" not in env
    assert (env["LC_COLLATE"], env["LC_NUMERIC"]) == ("C", "C")
    assert env["HOME"] == "/h"
    assert (env["ARCH"], env["SRCARCH"], env["srctree"]) == ("i386", "x86", str(tree))
    assert (env["CC"], env["LD"], env["KERNELVERSION"]) == ("gcc", "ld", "6.1.192")
    assert env["CC_VERSION_TEXT"].startswith("gcc") and "#" not in env["CC_VERSION_TEXT"]
    with pytest.raises(ConfigError, match="not found"):
        kconfig.kbuild_environment(tree, "i386", {**base, "CROSS_COMPILE": "no-such-"})
    with pytest.raises(ConfigError, match="LLVM"):
        kconfig.kbuild_environment(tree, "i386", {**base, "LLVM": "1"})


# --- symbols and values ---------------------------------------------------------


def test_defined_and_types(x86_64):
    assert x86_64.defined("XEN") and x86_64.defined("CONFIG_XEN")
    assert not x86_64.defined("NO_SUCH_SYMBOL")
    assert x86_64.symbol_type("XEN") == "bool"
    assert x86_64.symbol_type("CRC_LIB") == "tristate"
    assert x86_64.symbol_type("NR_CPUS") == "int"
    assert x86_64.symbol_type("BASE_ADDR") == "hex"
    assert x86_64.symbol_type("CMDLINE") == "string"
    with pytest.raises(InputError, match="not defined"):
        x86_64.symbol_type("NO_SUCH_SYMBOL")


@pytest.mark.parametrize(
    ("symbol", "value", "valid"),
    [
        ("XEN", "y", True),
        ("XEN", "n", True),
        ("XEN", None, True),
        ("XEN", "m", False),
        ("CRC_LIB", "m", True),
        ("CRC_LIB", "yes", False),
        ("NR_CPUS", "8", True),
        ("NR_CPUS", "64", True),
        ("NR_CPUS", "65", False),
        ("NR_CPUS", "1", False),
        ("NR_CPUS", "abc", False),
        ("NR_CPUS", "0x10", False),
        ("NR_CPUS", None, False),
        ("BASE_ADDR", "0x1f", True),
        ("BASE_ADDR", "1f", True),
        ("BASE_ADDR", "0xzz", False),
        ("CMDLINE", '"text"', True),
        ("CMDLINE", '"say \\"hi\\""', True),
        ("CMDLINE", "text", False),
    ],
)
def test_valid_value(x86_64, symbol, value, valid):
    assert x86_64.valid_value(symbol, value) is valid


def test_resolve_olddefconfig(x86_64):
    requested = {"MODULES": "y", "PARAVIRT": "y", "XEN": "y", "DRIVER": "m"}
    values = x86_64.resolve(requested, "olddefconfig")
    assert values["XEN"] == "y"
    assert values["XEN_PV"] == "y"  # default y once its dependencies hold
    assert values["CRC_LIB"] == "m"  # selected by an m driver
    assert values["HELPER"] == "m"  # implied
    assert values["MEM_SMALL"] == "y" and values["MEM_LARGE"] is None
    assert values["NR_CPUS"] == "8"
    assert values["BASE_ADDR"] == "0x1000"
    assert values["CMDLINE"] == '"console=hvc0"'
    assert values["HIDDEN"] == "y"
    assert values["PV_SPINLOCKS"] is None
    assert "X86_PAE" not in values  # dependencies unmet: not written at all
    assert x86_64.values() == values


def test_resolve_allnoconfig(x86_64):
    values = x86_64.resolve({"PARAVIRT": "y", "MEM_LARGE": "y"}, "allnoconfig")
    assert values["PARAVIRT"] == "y"
    assert values["XEN"] is None and "XEN_PV" not in values
    assert values["MODULES"] is None
    assert values["HIDDEN"] == "y"  # no prompt: allnoconfig cannot switch it off
    assert values["MEM_LARGE"] == "y" and values["MEM_SMALL"] is None
    assert values["PV_SPINLOCKS"] is None


def test_resolve_rejects_unknown_base(x86_64):
    with pytest.raises(InputError, match="resolve base"):
        x86_64.resolve({}, "defconfig")


# --- explain ----------------------------------------------------------------------


def test_explain(i686):
    i686.resolve({"PARAVIRT": "y", "XEN": "y"}, "olddefconfig")
    info = i686.explain("XEN")
    line = KCONFIG.splitlines().index("config XEN") + 1
    assert info.type == "bool"
    assert info.prompt == "Xen guest support"
    assert info.definitions == (f"Kconfig:{line}",)
    assert info.value is None
    assert info.depends == (
        "depends on PARAVIRT (=y) && (X86_64 (=n) || X86_32 (=y) && X86_PAE (=n))"
    )
    assert info.help == "Xen help text."
    assert info.choice is None
    assert "depends on PARAVIRT (=y)" in info.describe()

    i686.resolve({"DRIVER": "y", "PV_DRIVER": "y"}, "olddefconfig")
    crc = i686.explain("CRC_LIB")
    assert [(s.symbol, s.value, s.condition, s.active) for s in crc.selected_by] == [
        ("DRIVER", "y", None, True)
    ]
    helper = i686.explain("HELPER")
    assert [(s.symbol, s.value, s.active) for s in helper.implied_by] == [("DRIVER", "y", True)]
    selected_if = i686.explain("SELECTED_IF")
    assert [(s.symbol, s.condition, s.active) for s in selected_if.selected_by] == [
        ("PV_DRIVER", "XEN (=n)", False)
    ]
    assert selected_if.selected_by[0].describe() == "PV_DRIVER (=y) if XEN (=n)"

    member = i686.explain("MEM_LARGE")
    assert member.choice is not None and '"Memory model"' in member.choice
    assert member.choice_selection == "MEM_SMALL"

    hidden = i686.explain("HIDDEN")
    assert hidden.prompt is None and hidden.defaults == ("y",)
    assert i686.explain("NR_CPUS").ranges == ("2 64",)
    assert i686.explain("PV_SPINLOCKS").depends == "depends on PARAVIRT (=n)"


# --- why_not: one test per kind of reason ---------------------------------------


def test_why_not_depends(i686):
    i686.resolve({"PARAVIRT": "y", "XEN": "y", "XEN_PV": "y"}, "olddefconfig")
    reason = i686.why_not("XEN_PV", "y")
    assert reason.kind == "depends"
    # only the unmet part of `XEN && X86_64` is named
    assert reason.detail == "depends on XEN (=n) && X86_64 (=n)"
    reason = i686.why_not("XEN", "y")
    assert reason.kind == "depends"
    assert reason.detail == "depends on X86_64 (=n) || X86_32 (=y) && X86_PAE (=n)"
    line = KCONFIG.splitlines().index("config XEN") + 1
    assert reason.definitions == (f"Kconfig:{line}",)
    assert reason.describe() == (
        f"CONFIG_XEN (Kconfig:{line}): wanted y, got is not set: "
        "depends on X86_64 (=n) || X86_32 (=y) && X86_PAE (=n)"
    )

    i686.resolve({"PARAVIRT": "y", "X86_PAE": "y", "XEN": "y", "XEN_PV": "y"}, "olddefconfig")
    assert i686.value("XEN") == "y"
    assert i686.why_not("XEN_PV", "y").detail == "depends on X86_64 (=n)"
    assert i686.why_not("XEN", "y").kind == "satisfied"


def test_why_not_selected(x86_64):
    x86_64.resolve({"MODULES": "y", "DRIVER": "y", "CRC_LIB": "m"}, "olddefconfig")
    reason = x86_64.why_not("CRC_LIB", "m")
    assert reason.kind == "selected"
    assert reason.detail == "selected by DRIVER (=y)"
    assert [s.symbol for s in reason.selectors] == ["DRIVER"]
    x86_64.resolve({"MODULES": "y", "DRIVER": "m", "CRC_LIB": "n"}, "olddefconfig")
    assert x86_64.why_not("CRC_LIB", None).detail == "selected by DRIVER (=m)"


def test_why_not_choice(x86_64):
    x86_64.resolve({"MEM_LARGE": "y", "MEM_SMALL": "y"}, "olddefconfig")
    reason = x86_64.why_not("MEM_LARGE", "y")
    assert reason.kind == "choice"
    assert reason.choice_selection == "MEM_SMALL"
    assert '"Memory model"' in reason.detail and "MEM_SMALL" in reason.detail

    x86_64.resolve({"MEM_SMALL": "n"}, "olddefconfig")
    reason = x86_64.why_not("MEM_SMALL", None)
    assert reason.kind == "choice" and reason.choice_selection == "MEM_SMALL"


def test_why_not_no_prompt_and_hidden_prompt(x86_64, i686):
    x86_64.resolve({"HIDDEN": "n", "SHOWN_IF": "y"}, "olddefconfig")
    reason = x86_64.why_not("HIDDEN", None)
    assert reason.kind == "no_prompt"
    assert "has no prompt" in reason.detail and "default y" in reason.detail
    # SHOWN_IF has no dependency; its prompt is conditional
    reason = x86_64.why_not("SHOWN_IF", "y")
    assert reason.kind == "prompt_condition"
    assert "prompt if X86_PAE (=n)" in reason.detail

    i686.resolve({"64BIT": "y"}, "olddefconfig")
    reason = i686.why_not("64BIT", "y")
    assert reason.kind == "prompt_condition"
    assert 'prompt if "i386" = "x86"' in reason.detail


def test_why_not_invalid(x86_64):
    x86_64.resolve({"NR_CPUS": "128", "XEN": "m", "BASE_ADDR": "zz"}, "olddefconfig")
    reason = x86_64.why_not("NR_CPUS", "128")
    assert reason.kind == "invalid"
    assert reason.actual == "8"
    assert "outside range 2 64" in reason.detail
    assert x86_64.why_not("XEN", "m").kind == "invalid"
    assert x86_64.why_not("BASE_ADDR", "zz").kind == "invalid"


def test_why_not_modules_and_undefined(x86_64):
    x86_64.resolve({"CRC_LIB": "m"}, "olddefconfig")
    reason = x86_64.why_not("CRC_LIB", "m")
    assert (reason.kind, reason.actual) == ("modules", "y")
    assert "MODULES (=n)" in reason.detail
    assert x86_64.why_not("NO_SUCH_SYMBOL", "y").kind == "undefined"


# --- new symbols --------------------------------------------------------------


def test_new_symbols(x86_64):
    x86_64.resolve({"PARAVIRT": "y"}, "allnoconfig")
    requested = {"PARAVIRT": "y", "XEN": "y", "MODULES": "y", "MEM_SMALL": "y", "NR_CPUS": "16"}
    new = x86_64.new_symbols(requested)
    assert new == [
        ("BASE_ADDR", "0x1000"),
        ("CMDLINE", '"console=hvc0"'),
        ("CRC_LIB", None),
        ("DRIVER", None),
        ("HELPER", None),
        ("MEM_LARGE", None),
        ("NEWER", None),
        ("PV_DRIVER", None),
        ("PV_SPINLOCKS", None),
        ("SELECTED_IF", None),
        ("XEN_PV", "y"),
    ]
    # LC_ALL=C order, and the state of the last resolve() is kept
    assert [name for name, _ in new] == sorted(name for name, _ in new)
    assert x86_64.value("XEN") is None and x86_64.value("PARAVIRT") == "y"


def test_probe_outputs_are_reused_while_the_toolchain_is_unchanged(tmp_path, tree):
    cache = tmp_path / "probes"
    first = kconfig.load(tree, "x86_64", cache)
    (saved,) = cache.glob("probes-*.json")
    recorded = json.loads(saved.read_text())
    assert recorded["pwd"][0].strip() == first.resolve({}, "olddefconfig")["SHELL_DIR"].strip('"')
    # A reused output is what the next load sees, without running the probe again.
    recorded["pwd"] = ["/from/the/cache", ""]
    integrity.write_sealed(saved, json.dumps(recorded).encode())
    second = kconfig.load(tree, "x86_64", cache)
    assert second.resolve({}, "olddefconfig")["SHELL_DIR"] == '"/from/the/cache"'
    # Another toolchain (here: another compiler variable) gets its own probe file.
    os.environ["KCFLAGS"] = "-O1"
    try:
        kconfig.load(tree, "x86_64", cache)
    finally:
        del os.environ["KCFLAGS"]
    assert len(list(cache.glob("probes-*.json"))) == 2


def test_unreadable_probe_cache_is_ignored(tmp_path, tree):
    cache = tmp_path / "probes"
    kconfig.load(tree, "x86_64", cache)
    (saved,) = cache.glob("probes-*.json")
    saved.write_text("{not json")
    model = kconfig.load(tree, "x86_64", cache)
    assert model.resolve({}, "olddefconfig")["SHELL_DIR"].strip('"')
    assert saved.read_text() == "{not json"  # failed its seal: neither used nor overwritten
