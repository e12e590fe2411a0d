"""kxen.kconfig on the real Linux 6.1 tree, checked against the kernel's own kconfig.

Every comparison runs `make -C <tree> O=<dir> ARCH=... olddefconfig|allnoconfig|
listnewconfig` itself and compares ALL symbols of the resulting .config with the
model's resolve(). The prepared tree comes from kxen itself (Debian's
linux-source-6.1 tarball), shared with the other integration tests.
"""

from __future__ import annotations

import lzma
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from kxen import arches
from kxen.config import fragments as configs
from kxen.config import kconfig
from kxen.config.fragments import Value
from kxen.config.model import KconfigModel
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from ..support import REPO
from ..unit.test_kconfig import KCONFIG, make_tree

pytestmark = pytest.mark.slow

CONFIGS_DIR = REPO / "configs"
DEBIAN_AMD64_CONFIG = Path("/usr/src/linux-config-6.1/config.amd64_none_amd64.xz")
TARGETS = [
    (arch, flavour)
    for flavour, spec in configs.load_layers(CONFIGS_DIR).items()
    for arch in spec.layers
]

MakeConfig = Callable[[str, Mapping[str, Value], str], dict[str, Value]]


@pytest.fixture(scope="session")
def tree(linux_tarball: Path, kxen_cache: Path) -> Path:
    """The same prepared tree the end-to-end tests use (extracted once per session)."""
    up = origin.from_tarball(linux_tarball, kxen_cache)
    return upstream_tree.prepared_tree(up, kxen_cache, SubprocessRunner())


@pytest.fixture(scope="module")
def models(tree: Path) -> dict[str, KconfigModel]:
    return {arch: kconfig.load(tree, arch) for arch in arches.names()}


@pytest.fixture(scope="module")
def objdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One O= directory per arch, so scripts/kconfig/conf is built once."""
    root = tmp_path_factory.mktemp("kconfig-objdirs")
    return {arch: root / arch for arch in arches.names()}


def config_text(values: Mapping[str, Value]) -> str:
    return "".join(f"{configs.format_setting(s, v)}\n" for s, v in values.items())


def run_make(tree: Path, objdir: Path, arch: str, *args: str) -> str:
    objdir.mkdir(parents=True, exist_ok=True)
    command = ["make", "-s", "-C", str(tree), f"O={objdir}", f"ARCH={arches.get(arch).kernel_arch}"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def make_config(tree: Path, objdirs: dict[str, Path]) -> MakeConfig:
    """The kernel's own result: `make olddefconfig` with the request as .config, or
    `make allnoconfig KCONFIG_ALLCONFIG=<request>`."""

    def run(arch: str, requested: Mapping[str, Value], base: str) -> dict[str, Value]:
        objdir = objdirs[arch]
        objdir.mkdir(parents=True, exist_ok=True)
        config = objdir / ".config"
        config.unlink(missing_ok=True)
        request = objdir.parent / f"{arch}-request.config"
        request.write_text(config_text(requested))
        if base == "allnoconfig":
            run_make(tree, objdir, arch, f"KCONFIG_ALLCONFIG={request}", "allnoconfig")
        else:
            config.write_text(request.read_text())
            run_make(tree, objdir, arch, "olddefconfig")
        return configs.parse_config_values(config.read_text())

    return run


def listnewconfig(tree: Path, objdir: Path, arch: str, requested: Mapping[str, Value]) -> list:
    (objdir / ".config").write_text(config_text(requested))
    output = run_make(tree, objdir, arch, "listnewconfig")
    listed = configs.parse_config_values(output)
    return sorted(listed.items(), key=lambda item: item[0].encode())


def merged_request(tree: Path, arch: str, flavour: str) -> configs.Merged:
    flavours = configs.load_layers(CONFIGS_DIR)
    return configs.merge(CONFIGS_DIR, configs.Target(arch, flavour), tree, flavours)


def differences(mine: Mapping[str, Value], theirs: Mapping[str, Value]) -> dict[str, tuple]:
    missing = "<not written>"
    return {
        s: (mine.get(s, missing), theirs.get(s, missing))
        for s in sorted(set(mine) | set(theirs))
        if mine.get(s, missing) != theirs.get(s, missing)
    }


# --- the model equals the kernel's kconfig ---------------------------------------


def test_load_real_tree(models, tree):
    for arch, model in models.items():
        assert model.tree == tree.resolve() and model.arch == arch
        assert model.ignored_attributes == ()  # 6.1 only needs the `modules` rewrite
        assert model.symbol_type("MODULES") == "bool"
        assert model.parse_seconds < 60
    values = models["x86_64"].resolve({"MODULES": "y", "EXT4_FS": "m"}, "olddefconfig")
    assert values["MODULES"] == "y" and values["EXT4_FS"] == "m" and values["64BIT"] == "y"
    values = models["x86_64"].resolve({"EXT4_FS": "m"}, "olddefconfig")
    assert values["MODULES"] is None and values["EXT4_FS"] == "y"  # m needs MODULES
    assert values["CC_IS_GCC"] == "y" and int(values["GCC_VERSION"] or 0) > 0
    values = models["i686"].resolve({}, "olddefconfig")
    assert values["X86_32"] == "y" and values.get("64BIT") is None
    # loading wrote nothing into the tree (kconfig's cc-option works in its cwd)
    assert not [p.name for p in tree.iterdir() if p.name.startswith((".tmp", ".config"))]
    assert not (tree / "include" / "config").exists()


@pytest.mark.parametrize(("arch", "flavour"), TARGETS)
def test_resolve_equals_make_on_shipped_configs(arch, flavour, tree, models, make_config):
    merged = merged_request(tree, arch, flavour)
    requested = {symbol: s.value for symbol, s in merged.settings.items()}
    theirs = make_config(arch, requested, merged.resolve)
    mine = models[arch].resolve(requested, merged.resolve)
    assert differences(mine, theirs) == {}
    assert len(mine) > 500


@pytest.mark.parametrize(
    ("arch", "flavour"),
    [(a, f) for a, f in TARGETS if configs.load_layers(CONFIGS_DIR)[f].resolve == "olddefconfig"],
)
def test_new_symbols_equal_make_listnewconfig(arch, flavour, tree, models, objdirs):
    merged = merged_request(tree, arch, flavour)
    requested = {symbol: s.value for symbol, s in merged.settings.items()}
    models[arch].resolve(requested, merged.resolve)
    objdirs[arch].mkdir(parents=True, exist_ok=True)
    assert models[arch].new_symbols(requested) == listnewconfig(
        tree, objdirs[arch], arch, requested
    )


def test_resolve_equals_make_on_debian_amd64_config(models, make_config, tree, objdirs):
    requested = configs.parse_config_values(
        lzma.decompress(DEBIAN_AMD64_CONFIG.read_bytes()).decode()
    )
    assert len(requested) > 8000
    theirs = make_config("x86_64", requested, "olddefconfig")
    mine = models["x86_64"].resolve(requested, "olddefconfig")
    assert differences(mine, theirs) == {}
    assert models["x86_64"].new_symbols(requested) == listnewconfig(
        tree, objdirs["x86_64"], "x86_64", requested
    )


def test_tiny_tree_matches_the_kernels_conf(tmp_path, make_config, objdirs):
    """The synthetic tree of the unit tests, resolved by 6.1's own conf binary."""
    make_config("x86_64", {}, "olddefconfig")  # builds scripts/kconfig/conf
    conf = objdirs["x86_64"] / "scripts" / "kconfig" / "conf"
    tiny = make_tree(tmp_path / "linux")
    (tiny / "Kconfig").write_text(KCONFIG.replace("\ttransitional\n", ""))  # unknown to 6.1
    requests = [
        ({"MODULES": "y", "PARAVIRT": "y", "XEN": "y", "DRIVER": "m"}, "olddefconfig"),
        ({"PARAVIRT": "y", "MEM_LARGE": "y"}, "allnoconfig"),
        ({"MODULES": "y", "DRIVER": "m", "CRC_LIB": "n"}, "olddefconfig"),
        ({"MEM_LARGE": "y", "MEM_SMALL": "y"}, "olddefconfig"),
        ({"NR_CPUS": "128", "XEN": "m", "BASE_ADDR": "zz", "HIDDEN": "n"}, "olddefconfig"),
        ({"CRC_LIB": "m", "PARAVIRT": "y", "X86_PAE": "y", "XEN": "y"}, "olddefconfig"),
    ]
    for arch in arches.known():
        model = kconfig.load(tiny, arch.name)
        env = kconfig.kbuild_environment(tiny, arch.kernel_arch)
        for requested, base in requests:
            work = tmp_path / "o"
            work.mkdir(exist_ok=True)
            (work / "request").write_text(config_text(requested))
            (work / ".config").write_text("" if base == "allnoconfig" else config_text(requested))
            run_env = {**env, "KCONFIG_ALLCONFIG": str(work / "request")}
            subprocess.run(
                [str(conf), "-s", f"--{base}", "Kconfig"], cwd=work, env=run_env, check=True
            )
            theirs = configs.parse_config_values((work / ".config").read_text())
            mine = model.resolve(requested, base)
            # $(shell,pwd) differs by design: the model runs commands in a scratch directory
            assert differences(mine, theirs).keys() == {"SHELL_DIR"}, (arch.name, requested)
            if base == "olddefconfig":
                (work / ".config").write_text(config_text(requested))
                listed = subprocess.run(
                    [str(conf), "-s", "--listnewconfig", "Kconfig"],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                expected = sorted(configs.parse_config_values(listed).items())
                assert model.new_symbols(requested) == expected, (arch.name, requested)


# --- explaining -------------------------------------------------------------------


def test_xen_pv_on_i686_reports_x86_64(tree, models, make_config):
    merged = merged_request(tree, "i686", "default")
    requested = {symbol: s.value for symbol, s in merged.settings.items()}
    requested["XEN_PV"] = "y"
    theirs = make_config("i686", requested, "olddefconfig")
    model = models["i686"]
    mine = model.resolve(requested, "olddefconfig")
    assert differences(mine, theirs) == {}
    assert mine["XEN"] == "y" and mine.get("XEN_PV") is None
    reason = model.why_not("XEN_PV", "y")
    assert reason.kind == "depends"
    assert reason.detail == "depends on X86_64 (=n)"
    assert "X86_64 (=n)" in reason.describe()
    xen_kconfig = (tree / "arch/x86/xen/Kconfig").read_text().splitlines()
    line = xen_kconfig.index("config XEN_PV") + 1
    assert reason.definitions == (f"arch/x86/xen/Kconfig:{line}",)


def test_xen_on_i386_without_pae_names_x86_pae(tree, models, make_config):
    merged = merged_request(tree, "i686", "default")
    requested = {
        symbol: s.value
        for symbol, s in merged.settings.items()
        if symbol not in ("X86_PAE", "HIGHMEM64G")
    }
    requested["HIGHMEM4G"] = "y"
    requested["XEN"] = "y"
    theirs = make_config("i686", requested, "olddefconfig")
    model = models["i686"]
    mine = model.resolve(requested, "olddefconfig")
    assert differences(mine, theirs) == {}
    assert mine.get("XEN") is None and mine.get("X86_PAE") is None
    reason = model.why_not("XEN", "y")
    assert reason.kind == "depends"
    assert "X86_PAE (=n)" in reason.detail
    assert reason.detail == "depends on X86_64 (=n) || X86_32 (=y) && X86_PAE (=n)"
    # and asking for PAE itself names the choice member that excludes it
    pae = model.why_not("X86_PAE", "y")
    assert pae.kind == "depends" and "HIGHMEM4G (=y)" in pae.detail


def test_explain_xen_on_x86_64(tree, models):
    model = models["x86_64"]
    model.resolve({}, "olddefconfig")
    info = model.explain("XEN")
    line = (tree / "arch/x86/xen/Kconfig").read_text().splitlines().index("config XEN") + 1
    assert info.definitions == (f"arch/x86/xen/Kconfig:{line}",)
    assert info.type == "bool" and info.prompt == "Xen guest support"
    assert info.depends is not None
    assert info.depends.startswith("depends on PARAVIRT (=")
    assert "X86_64 (=y)" in info.depends
    assert info.help is not None and "Xen hypervisor" in info.help
    assert info.value is None  # PARAVIRT is off by default
    assert "arch/x86/xen/Kconfig" in info.describe()
