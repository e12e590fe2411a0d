"""The packager's config commands on the fake tree (tests/fakes/linux): seconds each.

Every test drives the real `kxen` command against a scratch checkout whose configs/ is
written for the fake Kconfig, and asserts what it printed, its exit code and the files
it left."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .conftest import KXEN, run_kxen

BAD_LINES = "CONFIG_NR_CPUS=abc\nCONFIG_XEN_BALLON=y\nexport CONFIG_Q=y\n"


def kxen(checkout: Path, tarball: Path, *args: str) -> Any:
    """`kxen config ARGS --upstream <fake tarball>` in `checkout`, never raising."""
    cache = checkout.parent / "cache"
    return run_kxen("config", *args, "--upstream", tarball, repo=checkout, cache=cache, check=False)


def _snapshot(checkout: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (checkout / "configs").rglob("*") if p.is_file()}


def test_check_reports_every_bad_line_once_with_its_reason(
    fake_checkout: Path, fake_linux: Path
) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    run = kxen(fake_checkout, fake_linux, "check")
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert "3 fragment line(s) cannot be used" in err
    # a line of a layer both arches share is one line naming both targets
    assert "malformed    configs/default/zz.config:3: malformed line 'export CONFIG_Q=y'" in err
    assert err.count("configs/default/zz.config:3") == 1
    assert "[i686/default, x86_64/default]" in err
    assert "did you mean CONFIG_XEN_BALLOON?" in err
    assert "`abc` is not an int; NR_CPUS takes 2\u2013512 on x86_64" in err
    assert "`abc` is not an int; NR_CPUS takes 2\u2013512 on i686" in err


def test_check_json_keeps_one_finding_per_target(fake_checkout: Path, fake_linux: Path) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    run = kxen(fake_checkout, fake_linux, "check", "--json")
    assert run.returncode == 2
    report = json.loads(run.stdout)
    kinds = sorted((f["kind"], f["arch"]) for f in report["findings"] if f["flavour"] == "default")
    assert ("invalid", "i686") in kinds and ("malformed", "x86_64") in kinds
    assert report["counts"]["malformed"] == 2 and report["counts"]["unknown"] == 2


def test_generate_names_every_unusable_line_and_writes_nothing(
    fake_checkout: Path, fake_linux: Path, tmp_path: Path
) -> None:
    (fake_checkout / "configs" / "default" / "zz.config").write_text(BAD_LINES)
    out = tmp_path / "out"
    run = kxen(fake_checkout, fake_linux, "generate", "-o", str(out))
    assert run.returncode == 2
    for line in (":1: asked abc", ":2: asked y", ":3: malformed line"):
        assert f"configs/default/zz.config{line}" in run.stderr
    assert not out.exists() or not list(out.glob("*.config"))


def test_shipped_fake_configs_check_clean(fake_checkout: Path, fake_linux: Path) -> None:
    run = kxen(fake_checkout, fake_linux, "check", "--strict")
    assert run.returncode == 0, run.stderr
    assert "x86_64/smoke: 0 finding(s)" in run.stdout


def _without_networking(checkout: Path) -> None:
    """The fake configs with NET, NETDEVICES and the network frontend taken out."""
    for name, drop in (("core", ("CONFIG_NET=", "CONFIG_NETDEVICES=")), ("xen-domu", ("NETDEV",))):
        path = checkout / "configs" / "base" / f"{name}.config"
        kept = [line for line in path.read_text().splitlines() if not any(d in line for d in drop)]
        path.write_text("\n".join(kept) + "\n")


def test_set_names_the_whole_dependency_path_and_writes_nothing(
    fake_checkout: Path, fake_linux: Path
) -> None:
    _without_networking(fake_checkout)
    before = _snapshot(fake_checkout)
    run = kxen(fake_checkout, fake_linux, "set", "CONFIG_XEN_NETDEV_FRONTEND=m", "--all-arches")
    assert run.returncode == 4, run.stderr
    assert (
        "i686/default, x86_64/default, i686/smoke, x86_64/smoke: needs NET=y (init/Kconfig:74), "
        "then NETDEVICES=y (drivers/net/Kconfig:3)" in run.stderr
    )
    assert "--with-deps" in run.stderr
    assert _snapshot(fake_checkout) == before


def test_set_with_deps_applies_the_path_in_one_step_and_shows_every_change(
    fake_checkout: Path, fake_linux: Path
) -> None:
    _without_networking(fake_checkout)
    args = ("set", "CONFIG_XEN_NETDEV_FRONTEND=m", "--all-arches", "--flavour", "default")
    run = kxen(fake_checkout, fake_linux, *args, "--with-deps", "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert [e["after"] for e in data["edits"]] == [
        "CONFIG_NET=y",
        "CONFIG_NETDEVICES=y",
        "CONFIG_XEN_NETDEV_FRONTEND=m",
    ]
    assert data["layer"] == "default"
    changed = {(c["arch"], c["symbol"], c["after"]) for c in data["changes"]}
    for arch in ("i686", "x86_64"):
        assert {(arch, "NET", "y"), (arch, "NETDEVICES", "y")} <= changed
        assert (arch, "XEN_NETDEV_FRONTEND", "m") in changed
    edit_file = fake_checkout / "configs" / "default" / "kxen-set.config"
    assert "CONFIG_NETDEVICES=y\nCONFIG_XEN_NETDEV_FRONTEND=m\n" in edit_file.read_text()
    # and the result passes the check the CI runs
    assert kxen(fake_checkout, fake_linux, "check", "--strict").returncode == 0


def test_set_a_value_that_cannot_be_had_is_exit_4_with_the_reason(
    fake_checkout: Path, fake_linux: Path
) -> None:
    before = _snapshot(fake_checkout)
    run = kxen(fake_checkout, fake_linux, "set", "CONFIG_XEN_PV=y", "--arch", "i686")
    assert run.returncode == 4
    assert (
        "i686/default, i686/smoke: CONFIG_XEN_PV=y: depends on X86_64 (=n), and X86_64 has no "
        "prompt: nothing can set it" in run.stderr
    )
    assert _snapshot(fake_checkout) == before


def test_set_refuses_a_symbol_without_a_prompt(fake_checkout: Path, fake_linux: Path) -> None:
    before = _snapshot(fake_checkout)
    run = kxen(fake_checkout, fake_linux, "set", "CONFIG_PVH=y", "--all-arches")
    assert run.returncode == 2
    assert "CONFIG_PVH has no prompt: no config can set it" in run.stderr
    assert "defined at arch/x86/Kconfig:123" in run.stderr
    assert _snapshot(fake_checkout) == before


def test_set_rejects_values_with_what_the_symbol_takes(
    fake_checkout: Path, fake_linux: Path
) -> None:
    before = _snapshot(fake_checkout)
    run = kxen(fake_checkout, fake_linux, "set", "CONFIG_NR_CPUS=abc", "--arch", "x86_64")
    assert run.returncode == 2
    assert "`abc` is not an int; NR_CPUS takes 2\u2013512 on x86_64" in run.stderr
    run = kxen(fake_checkout, fake_linux, "set", "CONFIG_NR_CPU=4", "--arch", "x86_64")
    assert "does not define it; did you mean CONFIG_NR_CPUS?" in run.stderr
    assert _snapshot(fake_checkout) == before


def test_set_overridden_by_a_later_layer_is_exit_4_and_taken_back(
    fake_checkout: Path, fake_linux: Path
) -> None:
    before = _snapshot(fake_checkout)
    args = ("set", "CONFIG_NR_CPUS=32", "--arch", "x86_64", "--layer", "base")
    run = kxen(fake_checkout, fake_linux, *args)
    assert run.returncode == 4
    assert "a later layer sets 64" in run.stderr
    assert _snapshot(fake_checkout) == before


def test_set_warns_when_the_layer_reaches_more_than_asked(
    fake_checkout: Path, fake_linux: Path
) -> None:
    args = ("set", "CONFIG_IKCONFIG=y", "--arch", "x86_64", "--flavour", "default")
    run = kxen(fake_checkout, fake_linux, *args)
    assert run.returncode == 0, run.stderr
    assert (
        "warning: layer default also reaches i686/default, beyond the arches/flavours asked for"
        in run.stderr
    )
    assert run.stdout.splitlines()[0] == "layer default reaches i686/default, x86_64/default"


def test_layers_lists_each_targets_layers_in_order_with_files_and_line_counts(
    fake_checkout: Path,
) -> None:
    cache = fake_checkout.parent / "cache"
    args = ("config", "layers", "--arch", "i686", "--flavour", "smoke")
    run = run_kxen(*args, repo=fake_checkout, cache=cache)
    assert run.stdout.splitlines()[:4] == [
        "i686/smoke:",
        "  1. base (2 file(s), 36 lines)",
        "       configs/base/core.config (21)",
        "       configs/base/xen-domu.config (15)",
    ]
    assert run.stdout.splitlines()[-2:] == [
        "  4. smoke (1 file(s), 2 lines)",
        "       configs/smoke/smoke.config (2)",
    ]
    data = json.loads(run_kxen(*args, "--json", repo=fake_checkout, cache=cache).stdout)
    (target,) = data["targets"]
    assert [layer["name"] for layer in target["layers"]] == ["base", "x86", "i686", "smoke"]


def _complete(checkout: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (click's protocol)."""
    env = {
        **os.environ,
        "_KXEN_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    argv = [str(KXEN), "--repo", str(checkout)]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return [line.split(",", 1)[1] for line in run.stdout.splitlines()]


def test_shell_completion_offers_arches_flavours_and_layers(fake_checkout: Path) -> None:
    prefix = f"kxen --repo {fake_checkout} config"
    assert _complete(fake_checkout, f"{prefix} set X --layer ") == [
        "base",
        "default",
        "i686",
        "smoke",
        "x86",
        "x86_64",
    ]
    assert _complete(fake_checkout, f"{prefix} check --flavour sm") == ["smoke"]
    assert _complete(fake_checkout, f"{prefix} layers --arch ") == ["i686", "x86_64"]


def test_pending_queues_new_symbols_and_strict_check_waits_for_review(
    fake_checkout: Path, fake_linux: Path
) -> None:
    run = kxen(fake_checkout, fake_linux, "pending", "--json")
    assert run.returncode == 0, run.stderr
    written = json.loads(run.stdout)["written"]
    assert "configs/pending/CONFIG_XEN_BALLOON_MEMORY_HOTPLUG.config" in written
    entry = (fake_checkout / "configs/pending/CONFIG_XEN_BALLOON_MEMORY_HOTPLUG.config").read_text()
    assert entry.splitlines() == [
        "# new symbol: CONFIG_XEN_BALLOON_MEMORY_HOTPLUG (bool): Memory hotplug support for "
        "Xen balloon driver",
        "# defined at drivers/xen/Kconfig:13",
        "# new in Linux 6.1.192",
        "# depends on XEN_BALLOON (=y) && MEMORY_HOTPLUG (=y) && XEN (=y)",
        "# help:",
        "#   Implied by XEN_BALLOON: on where memory hotplug exists (64-bit),",
        '#   and still written as "is not set" where it does not.',
        "# default y: x86_64/default",
        "# kxen-pending: unreviewed  (move the line below into a layer, or write `reviewed`)",
        "CONFIG_XEN_BALLOON_MEMORY_HOTPLUG=y",
    ]
    run = kxen(fake_checkout, fake_linux, "check", "--strict")
    assert run.returncode == 4
    assert f"{len(written)} unreviewed pending entr(ies)" in run.stderr
    # moving a line into a real layer clears its entry, so does marking it reviewed
    moved = fake_checkout / "configs/pending/CONFIG_EXPERT.config"
    moved.unlink()
    (fake_checkout / "configs/default/expert.config").write_text("# CONFIG_EXPERT is not set\n")
    for name in written:
        path = fake_checkout / name
        if path.exists():
            path.write_text(path.read_text().replace("unreviewed", "reviewed"))
    run = kxen(fake_checkout, fake_linux, "check", "--strict")
    assert run.returncode == 0, run.stderr
    # a second run leaves reviewed entries as they are and does not queue what a layer sets
    again = kxen(fake_checkout, fake_linux, "pending", "--json")
    assert json.loads(again.stdout)["written"] == []


def test_cc_chooses_the_compiler_kconfig_probes(
    fake_checkout: Path, fake_linux: Path, tmp_path: Path
) -> None:
    """A packager reproducing another distro's config names its compiler: generate and
    the model (explain) both run it, and the cache does not hand back gcc's result."""
    wrapper = tmp_path / "distro-cc"
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "distro-cc (Other) 99.1"; exit 0; fi\n'
        'exec gcc "$@"\n'
    )
    wrapper.chmod(0o755)
    target = ("--arch", "x86_64", "--flavour", "smoke")
    plain = kxen(fake_checkout, fake_linux, "generate", *target, "-o", str(tmp_path / "a"))
    assert plain.returncode == 0, plain.stderr
    args = ("generate", *target, "--cc", str(wrapper), "-o", str(tmp_path / "b"))
    run = kxen(fake_checkout, fake_linux, *args)
    assert run.returncode == 0, run.stderr
    (config,) = (tmp_path / "b").glob("*.config")
    assert 'CONFIG_CC_VERSION_TEXT="distro-cc (Other) 99.1"' in config.read_text()
    (default,) = (tmp_path / "a").glob("*.config")
    assert "distro-cc" not in default.read_text()
    explained = kxen(
        fake_checkout, fake_linux, "explain", "CC_VERSION_TEXT", *target, "--cc", str(wrapper)
    )
    assert '= "distro-cc (Other) 99.1"' in explained.stdout
    missing = kxen(fake_checkout, fake_linux, "generate", *target, "--cc", "kxen-no-such-cc")
    assert missing.returncode == 4
    assert "C compiler 'kxen-no-such-cc' not found" in missing.stderr
