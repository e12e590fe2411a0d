from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from kxen.config import fragments as configs
from kxen.config.fragments import Setting, Target
from kxen.errors import ConfigError, InputError
from kxen.support.runner import Completed

# --- fragments ---------------------------------------------------------------


def test_parse_fragment_values(tmp_path):
    path = tmp_path / "f.config"
    text = (
        "# a comment\n"
        "\n"
        "CONFIG_A=y\n"
        "CONFIG_B=m\n"
        "CONFIG_C=n\n"
        "# CONFIG_D is not set\n"
        "CONFIG_E=64\n"
        "CONFIG_F=-1\n"
        "CONFIG_G=0x1000\n"
        'CONFIG_H="console=hvc0 \\"quoted\\""\n'
        'CONFIG_I=""\n'
        "   CONFIG_J=y   \n"
        "#CONFIG_K is not set\n"
    )
    path.write_text(text)
    settings = configs.parse_fragment(path)
    assert [(s.symbol, s.value, s.line) for s in settings] == [
        ("A", "y", 3),
        ("B", "m", 4),
        ("C", None, 5),
        ("D", None, 6),
        ("E", "64", 7),
        ("F", "-1", 8),
        ("G", "0x1000", 9),
        ("H", '"console=hvc0 \\"quoted\\""', 10),
        ("I", '""', 11),
        ("J", "y", 12),
    ]
    assert all(s.file == path for s in settings)
    assert settings[0].where == f"{path}:3"
    # the same text given directly parses the same way
    assert configs.parse_fragment(path, text) == settings


@pytest.mark.parametrize(
    "line",
    [
        "CONFIG_A=yes",
        "CONFIG_A=",
        "CONFIG_A y",
        "CONFIG_A=y # trailing comment",
        'CONFIG_A="unterminated',
        "CONFIG_A=0xZZ",
        "A=y",
        "CONFIG_=y",
        "export CONFIG_A=y",
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "bad.config"
    path.write_text(f"CONFIG_OK=y\n# comment\n{line}\n")
    with pytest.raises(InputError) as info:
        configs.parse_fragment(path)
    assert info.value.message.startswith(f"{path}:3: malformed line {line.strip()!r}")


def test_every_malformed_line_of_every_layer_is_named_in_one_error(tmp_path):
    files = {
        **FILES,
        "base/c.config": "CONFIG_X=y\nCONFIG_NR_CPUS=a-b-c\nexport CONFIG_Z=y\n",
        "arch/y.config": "CONFIG_A=yes\n",
    }
    root = _configs_dir(tmp_path, LAYERS, files)
    with pytest.raises(InputError) as info:
        configs.merge(root, Target("x86_64", "default"), None, configs.load_layers(root))
    assert info.value.message == "3 fragment lines cannot be used"
    assert [d.split(": ")[0] for d in info.value.details] == [
        "configs/base/c.config:2",
        "configs/base/c.config:3",
        "configs/arch/y.config:1",
    ]


def test_problems_are_collected_and_the_good_lines_still_merge(tmp_path):
    # (`abc` alone would be a hex value: conf writes hex defaults without 0x)
    files = {**FILES, "base/c.config": "CONFIG_NR_CPUS=a-b-c\nCONFIG_X=y\n"}
    root = _configs_dir(tmp_path, LAYERS, files)
    problems: list[configs.Problem] = []
    merged = configs.merge(
        root, Target("x86_64", "default"), None, configs.load_layers(root), problems
    )
    (problem,) = problems
    # the symbol and raw value are kept so a Kconfig-aware caller can say what it takes
    assert (problem.symbol, problem.value, problem.line) == ("NR_CPUS", "a-b-c", 1)
    assert problem.where(tmp_path) == "configs/base/c.config:1"
    assert merged.settings["X"].value == "y"


def test_unreadable_fragment(tmp_path):
    with pytest.raises(InputError, match=r"missing\.config: no such file"):
        configs.parse_fragment(tmp_path / "missing.config")


def test_parse_config_values():
    values = configs.parse_config_values("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\n")
    assert values == {"A": "y", "B": None, "C": None}


def test_format_setting_round_trips_through_the_parser(tmp_path):
    cases = {"A": "y", "B": None, "C": '"x y"', "D": "0x10"}
    text = "\n".join(configs.format_setting(symbol, value) for symbol, value in cases.items())
    assert configs.parse_config_values(text) == cases


@pytest.mark.parametrize(
    ("arch", "flavour", "expected"),
    [
        ("x86_64", "default", "kernel-6.1.192-x86_64-xen.config"),
        ("i686", "smoke", "kernel-6.1.192-i686-smoke-xen.config"),
        ("i686", "default", "kernel-6.1.192-i686-xen.config"),
    ],
)
def test_target_config_name(arch, flavour, expected):
    assert Target(arch, flavour).config_name("6.1.192") == expected


# --- layers ------------------------------------------------------------------

LAYERS = """\
flavours:
  default:
    resolve: olddefconfig
    layers:
      x86_64: [base, arch, top]
      i686: [base]
  small:
    resolve: allnoconfig
    layers:
      x86_64: [base, small]
"""


def _configs_dir(tmp_path: Path, layers: str, files: Mapping[str, str]) -> Path:
    root = tmp_path / "configs"
    root.mkdir()
    (root / configs.LAYERS_FILE).write_text(layers)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FILES = {
    "base/a.config": "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n",
    "base/b.config": "CONFIG_D=m\n",
    "arch/x.config": "CONFIG_B=n\nCONFIG_E=64\n",
    "top/t.config": "CONFIG_E=32\nCONFIG_C=y\n",
    "small/s.config": "CONFIG_A=n\n",
}


def test_load_layers(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    flavours = configs.load_layers(root)
    assert set(flavours) == {"default", "small"}
    assert flavours["default"].resolve == "olddefconfig"
    assert flavours["default"].layers == {"x86_64": ("base", "arch", "top"), "i686": ("base",)}
    assert flavours["small"].resolve == "allnoconfig"


def test_merge_later_layer_overrides_earlier(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("x86_64", "default"), None, configs.load_layers(root))
    assert merged.resolve == "olddefconfig"
    values = {symbol: s.value for symbol, s in merged.settings.items()}
    assert values == {"A": "y", "B": None, "C": "y", "D": "m", "E": "32"}
    assert merged.settings["E"].where == f"{root / 'top/t.config'}:1"
    assert merged.settings["A"].where == f"{root / 'base/a.config'}:1"
    overridden = {(old.where, new.where) for old, new in merged.overridden}
    assert overridden == {
        (f"{root / 'base/a.config'}:2", f"{root / 'arch/x.config'}:1"),  # B
        (f"{root / 'arch/x.config'}:2", f"{root / 'top/t.config'}:1"),  # E
        (f"{root / 'base/a.config'}:3", f"{root / 'top/t.config'}:2"),  # C
    }
    # other arch and flavour see only their own layers
    i686 = configs.merge(root, Target("i686", "default"), None, configs.load_layers(root))
    assert {s: v.value for s, v in i686.settings.items()} == {
        "A": "y",
        "B": "y",
        "C": None,
        "D": "m",
    }
    assert i686.overridden == []


def test_fragment_text_reparses_to_the_merged_values(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("x86_64", "small"), None, configs.load_layers(root))
    values = configs.parse_config_values(merged.fragment_text())
    assert values == {symbol: s.value for symbol, s in merged.settings.items()}
    assert values["A"] is None


def test_duplicate_symbol_within_one_layer_names_both_places(tmp_path):
    files = {**FILES, "base/c.config": "CONFIG_X=y\nCONFIG_D=y\n"}
    root = _configs_dir(tmp_path, LAYERS, files)
    with pytest.raises(InputError) as info:
        configs.merge(root, Target("i686", "default"), None, configs.load_layers(root))
    message = info.value.message
    # repository-relative, as a packager reads them in `git status`
    assert message == (
        "configs/base/c.config:2: CONFIG_D is already set in this layer at configs/base/b.config:1"
    )


def test_duplicate_symbol_within_one_file(tmp_path):
    files = {**FILES, "base/b.config": "CONFIG_D=m\n# CONFIG_D is not set\n"}
    root = _configs_dir(tmp_path, LAYERS, files)
    with pytest.raises(InputError, match=r"b\.config:2: CONFIG_D .*b\.config:1"):
        configs.merge(root, Target("i686", "default"), None, configs.load_layers(root))


def test_layer_files_are_read_in_c_locale_order(tmp_path):
    files = {"l/b.config": "", "l/A.config": "", "l/_x.config": "", "l/notes.txt": ""}
    root = _configs_dir(tmp_path, LAYERS, files)
    assert [p.name for p in configs.layer_files(root, None, "l")] == [
        "A.config",
        "_x.config",
        "b.config",
    ]


def test_upstream_layer(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, {})
    tree = tmp_path / "linux"
    (tree / "arch/x86/configs").mkdir(parents=True)
    (tree / "arch/x86/configs/xen.config").write_text("CONFIG_XEN=y\n")
    layer = "upstream:arch/x86/configs/xen.config"
    assert configs.layer_files(root, tree, layer) == [tree / "arch/x86/configs/xen.config"]
    with pytest.raises(InputError, match="needs the upstream tree"):
        configs.layer_files(root, None, layer)
    for bad in ("upstream:../etc/passwd", "upstream:/etc/passwd"):
        with pytest.raises(InputError, match="inside the tree"):
            configs.layer_files(root, tree, bad)
    with pytest.raises(InputError, match="does not exist"):
        configs.layer_files(root, tree, "upstream:arch/x86/configs/nope.config")


def test_merge_refusals(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    flavours = configs.load_layers(root)
    with pytest.raises(InputError, match="no flavour 'debug'"):
        configs.merge(root, Target("x86_64", "debug"), None, flavours)
    with pytest.raises(InputError, match="declares no layers for i686"):
        configs.merge(root, Target("i686", "small"), None, flavours)
    (root / "small" / "s.config").unlink()
    (root / "small").rmdir()
    with pytest.raises(InputError, match="layer 'small' has no directory"):
        configs.merge(root, Target("x86_64", "small"), None, flavours)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("flavours: [", "invalid YAML"),
        ("- a\n", "single 'flavours:' mapping"),
        ("flavours: {}\nextra: 1\n", "single 'flavours:' mapping"),
        ("flavours: [default]\n", "single 'flavours:' mapping"),
        ("flavours:\n  d: [a]\n", "flavours.d: expected keys 'resolve' and 'layers'"),
        ("flavours:\n  d: {resolve: olddefconfig, layers: {}, extra: 1}\n", "flavours.d: expected"),
        (
            "flavours:\n  d: {resolve: defconfig, layers: {}}\n",
            "flavours.d.resolve: expected one of",
        ),
        ("flavours:\n  d: {layers: {}}\n", "flavours.d.resolve"),
        ("flavours:\n  d: {resolve: allnoconfig, layers: [a]}\n", "flavours.d.layers: expected"),
        (
            "flavours:\n  d: {resolve: allnoconfig, layers: {arm64: [a]}}\n",
            "flavours.d.layers.arm64: unknown arch",
        ),
        (
            "flavours:\n  d: {resolve: allnoconfig, layers: {i686: a}}\n",
            "flavours.d.layers.i686: expected a list",
        ),
        (
            "flavours:\n  d: {resolve: allnoconfig, layers: {i686: [a, 1]}}\n",
            "flavours.d.layers.i686: expected a list",
        ),
    ],
)
def test_load_layers_refusals(tmp_path, text, problem):
    root = _configs_dir(tmp_path, text, {})
    with pytest.raises(InputError) as info:
        configs.load_layers(root)
    assert info.value.message.startswith(f"{root / configs.LAYERS_FILE}:")
    assert problem in info.value.message


def test_missing_layers_file(tmp_path):
    with pytest.raises(InputError, match="missing"):
        configs.load_layers(tmp_path)


# --- the shipped layers ------------------------------------------------------


def test_shipped_layers_declare_both_arches(repo):
    flavours = configs.load_layers(repo / "configs")
    for flavour in ("default", "smoke"):
        assert set(flavours[flavour].layers) == {"i686", "x86_64"}
        assert flavours[flavour].resolve in configs.RESOLVE_MODES


@pytest.mark.parametrize("flavour", ["default", "smoke"])
@pytest.mark.parametrize("arch", ["i686", "x86_64"])
def test_shipped_fragments_parse_without_duplicates(repo, arch, flavour):
    flavours = configs.load_layers(repo / "configs")
    merged = configs.merge(repo / "configs", Target(arch, flavour), None, flavours)
    assert merged.settings
    assert all(s.file.is_relative_to(repo / "configs") for s in merged.settings.values())


def test_every_shipped_layer_directory_is_used(repo):
    flavours = configs.load_layers(repo / "configs")
    used = {name for f in flavours.values() for names in f.layers.values() for name in names}
    present = {p.name for p in (repo / "configs").iterdir() if p.is_dir()}
    assert present <= used


# --- resolving (kconfig replaced by a fake runner) -----------------------------


class FakeKconfig:
    """Plays `make olddefconfig` / `make allnoconfig` on the O= directory."""

    def __init__(self, result: Mapping[str, str | None], returncode: int = 0) -> None:
        self.result = result
        self.returncode = returncode
        self.commands: list[list[str]] = []
        self.seen_fragment: str | None = None

    def stop_all(self) -> None:
        pass

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
        args = [os.fspath(a) for a in argv]
        self.commands.append(args)
        objdir = Path(next(a for a in args if a.startswith("O="))[2:])
        config = objdir / ".config"
        allconfig = [a for a in args if a.startswith("KCONFIG_ALLCONFIG=")]
        source = Path(allconfig[0].split("=", 1)[1]) if allconfig else config
        self.seen_fragment = source.read_text()
        values = {**configs.parse_config_values(self.seen_fragment), **self.result}
        config.write_text("\n".join(configs.format_setting(s, v) for s, v in values.items()) + "\n")
        return Completed(tuple(args), self.returncode, "kconfig said something\n")


def test_resolve_runs_olddefconfig_on_the_merged_fragment(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("x86_64", "default"), None, configs.load_layers(root))
    fake = FakeKconfig({"NEW": "y"})
    tree = tmp_path / "tree"
    resolved = configs.resolve(merged, tree, tmp_path / "work", fake)
    (command,) = fake.commands
    assert command[-1] == "olddefconfig"
    assert f"O={tmp_path / 'work' / 'kconfig-x86_64'}" in command
    assert "ARCH=x86_64" in command
    assert configs.parse_config_values(fake.seen_fragment) == {
        s: v.value for s, v in merged.settings.items()
    }
    assert resolved.mismatches == ()
    assert resolved.values["NEW"] == "y"
    # the scratch merge directory is gone
    assert [p.name for p in (tmp_path / "work").iterdir() if p.name.startswith(".merge-")] == []


def test_resolve_allnoconfig_uses_kconfig_allconfig(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("x86_64", "small"), None, configs.load_layers(root))
    fake = FakeKconfig({})
    configs.resolve(merged, tmp_path / "tree", tmp_path / "work", fake)
    (command,) = fake.commands
    assert command[-1] == "allnoconfig"
    assert any(a.startswith("KCONFIG_ALLCONFIG=") for a in command)


def test_i686_resolves_with_arch_i386(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("i686", "default"), None, configs.load_layers(root))
    fake = FakeKconfig({})
    configs.resolve(merged, tmp_path / "tree", tmp_path / "work", fake)
    assert "ARCH=i386" in fake.commands[0]


def test_generate_refuses_values_that_do_not_survive(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    fake = FakeKconfig({"E": "16", "C": None})
    with pytest.raises(ConfigError) as info:
        configs.generate(
            root, [Target("x86_64", "default")], tmp_path / "tree", tmp_path / "work", fake
        )
    details = sorted(info.value.details)
    assert details == sorted(
        [
            f"{root / 'top/t.config'}:1: CONFIG_E: asked for 32, got 16",
            f"{root / 'top/t.config'}:2: CONFIG_C: asked for y, got is not set",
        ]
    )


def test_kconfig_failure_is_a_config_error(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    merged = configs.merge(root, Target("x86_64", "default"), None, configs.load_layers(root))
    with pytest.raises(ConfigError) as info:
        configs.resolve(merged, tmp_path / "tree", tmp_path / "work", FakeKconfig({}, 2))
    assert info.value.details == ["kconfig said something"]


def test_generate_and_write_configs(tmp_path):
    root = _configs_dir(tmp_path, LAYERS, FILES)
    targets = [Target("x86_64", "default"), Target("x86_64", "small")]
    results = configs.generate(root, targets, tmp_path / "tree", tmp_path / "work", FakeKconfig({}))
    out = tmp_path / "out"
    paths = configs.write_configs(results, "6.1.192", out)
    assert [p.name for p in paths] == [
        "kernel-6.1.192-x86_64-xen.config",
        "kernel-6.1.192-x86_64-small-xen.config",
    ]
    small = configs.parse_config_values(paths[1].read_text())
    assert small == {"A": None, "B": "y", "C": None, "D": "m"}


def test_mismatch_describe():
    setting = Setting("X", "y", Path("f.config"), 4)
    assert configs.Mismatch(setting, None).describe() == (
        "f.config:4: CONFIG_X: asked for y, got is not set"
    )
