"""`kxen config check` on the real 6.1 tree: values that did not survive, and why."""

from __future__ import annotations

import json
import lzma
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin
from kxen.upstream import tree as upstream_tree

from .conftest import kxen_command, run_kxen

pytestmark = pytest.mark.slow
I686_DEFAULT = ("--arch", "i686", "--flavour", "default")


def _check(checkout: Path, cache: Path, tarball: Path, *args: str) -> tuple[int, dict[str, Any]]:
    run = run_kxen(
        "config",
        "check",
        "--upstream",
        tarball,
        "--strict",
        "--json",
        *args,
        repo=checkout,
        cache=cache,
        check=False,
    )
    return run.returncode, json.loads(run.stdout)


def _only(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind]


def test_shipped_configs_pass_strict_on_both_arches_and_flavours(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    code, report = _check(checkout, kxen_cache, linux_tarball)
    assert code == 0
    assert sorted(report["targets"]) == [
        "i686/default",
        "i686/smoke",
        "x86_64/default",
        "x86_64/smoke",
    ]
    counts = report["counts"]
    assert counts["mismatch"] == counts["unknown"] == counts["invalid"] == 0
    assert counts["new"] > 1000  # default flavours are deltas over Kconfig defaults


def test_an_unchanged_check_answers_from_its_verified_cache(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    """The second check reads no Kconfig and says the same; an edit is seen at once; an
    altered cache entry is set aside with a warning and the findings computed again."""
    cache = kxen_cache
    earlier = set(cache.glob("kconfig/*/findings/*.json"))
    first = _check(checkout, cache, linux_tarball, *I686_DEFAULT)
    (entry,) = set(cache.glob("kconfig/*/findings/*.json")) - earlier
    made = entry.stat().st_mtime_ns
    assert _check(checkout, cache, linux_tarball, *I686_DEFAULT) == first
    assert entry.stat().st_mtime_ns == made  # answered from the entry, not rewritten

    (checkout / "configs" / "i686" / "zz-pv.config").write_text("CONFIG_XEN_PV=y\n")
    code, report = _check(checkout, cache, linux_tarball, *I686_DEFAULT)
    assert code == 4 and [f["symbol"] for f in _only(report, "mismatch")] == ["XEN_PV"]
    (checkout / "configs" / "i686" / "zz-pv.config").unlink()

    entry.write_text(entry.read_text().replace('"new"', '"unknown"', 1))
    run = run_kxen(
        "config",
        "check",
        "--upstream",
        linux_tarball,
        "--strict",
        "--json",
        *I686_DEFAULT,
        repo=checkout,
        cache=cache,
        check=False,
    )
    assert "cached check findings" in run.stderr and "failed verification" in run.stderr
    again = json.loads(run.stdout)
    assert any("cached check findings" in warning for warning in again.pop("warnings"))
    assert (run.returncode, again) == first
    assert any(entry.name in p.name for p in (cache / "corrupt").iterdir())


def test_i686_xen_pv_reports_the_unmet_dependency(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    (checkout / "configs" / "i686" / "zz-pv.config").write_text("# 32-bit PV?\nCONFIG_XEN_PV=y\n")
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 4
    (finding,) = _only(report, "mismatch")
    assert finding["symbol"] == "XEN_PV"
    assert finding["where"] == "configs/i686/zz-pv.config:2"
    assert finding["requested"] == "y" and finding["actual"] is None
    assert "depends on X86_64 (=n)" in finding["reason"]
    assert "arch/x86/xen/Kconfig:" in finding["reason"]


def test_xen_lost_without_pae_names_x86_pae(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    fragment = checkout / "configs" / "i686" / "i686.config"
    text = fragment.read_text().replace("CONFIG_HIGHMEM64G=y", "CONFIG_HIGHMEM4G=y")
    fragment.write_text(text.replace("CONFIG_X86_PAE=y\n", ""))
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 4
    xen = next(f for f in _only(report, "mismatch") if f["symbol"] == "XEN")
    assert "X86_PAE (=n)" in xen["reason"]
    assert xen["where"].startswith("configs/base/")


def test_unknown_symbol_is_named_with_its_line(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    (checkout / "configs" / "i686" / "zz-stale.config").write_text("CONFIG_KXEN_NO_SUCH=y\n")
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 4
    (finding,) = _only(report, "unknown")
    assert (finding["symbol"], finding["where"]) == (
        "KXEN_NO_SUCH",
        "configs/i686/zz-stale.config:1",
    )


def test_allow_list_silences_a_known_case_and_flags_stale_entries(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    (checkout / "configs" / "i686" / "zz-pv.config").write_text("CONFIG_XEN_PV=y\n")
    allow = checkout / "configs" / "allow.yaml"
    allow.write_text(
        "- kind: mismatch\n  symbol: XEN_PV\n  arch: i686\n"
        "  reason: shared fragment also used by x86_64\n"
    )
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 0
    (finding,) = _only(report, "mismatch")
    assert finding["allowed"] == "shared fragment also used by x86_64"
    allow.write_text(
        allow.read_text() + "- kind: mismatch\n  symbol: XEN\n  reason: no longer happens\n"
    )
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 4
    assert [(e["line"], e["symbol"]) for e in report["stale_allow"]] == [(5, "XEN")]


def test_allow_entry_without_reason_is_refused(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    (checkout / "configs" / "allow.yaml").write_text("- kind: mismatch\n  symbol: XEN_PV\n")
    run = run_kxen(
        "config",
        "check",
        "--upstream",
        linux_tarball,
        *I686_DEFAULT,
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == 2
    assert "allow.yaml:1: an entry needs kind, symbol and reason" in run.stderr


def test_override_across_layers_is_recorded_not_failed(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    (checkout / "configs" / "x86" / "zz-cpus.config").write_text("CONFIG_NR_CPUS=16\n")
    (checkout / "configs" / "default" / "zz-override.config").write_text("CONFIG_NR_CPUS=8\n")
    code, report = _check(checkout, kxen_cache, linux_tarball, *I686_DEFAULT)
    assert code == 0
    (finding,) = _only(report, "redefinition")
    assert finding["symbol"] == "NR_CPUS"
    assert finding["where"] == "configs/default/zz-override.config:1"
    assert finding["reason"] == "overrides 16 from configs/x86/zz-cpus.config:1"
    assert finding["actual"] == "8"


def test_explain_a_symbol_set_in_three_layers(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    for layer, value in (("x86", 16), ("i686", 12), ("default", 8)):
        (checkout / "configs" / layer / "zz-cpus.config").write_text(f"CONFIG_NR_CPUS={value}\n")
    run = run_kxen(
        "config",
        "explain",
        "NR_CPUS",
        "--upstream",
        linux_tarball,
        *I686_DEFAULT,
        "--json",
        repo=checkout,
        cache=kxen_cache,
    )
    (explained,) = json.loads(run.stdout)["explanations"]
    assert explained["value"] == "8"
    assert explained["layers"] == [
        {"where": "configs/x86/zz-cpus.config:1", "value": "16"},
        {"where": "configs/i686/zz-cpus.config:1", "value": "12"},
        {"where": "configs/default/zz-cpus.config:1", "value": "8"},
    ]
    assert explained["type"] == "int"
    assert any(d.startswith("arch/x86/Kconfig:") for d in explained["definitions"])
    assert "CPUs" in explained["prompt"]
    human = run_kxen(
        "config",
        "explain",
        "CONFIG_NR_CPUS",
        "--upstream",
        linux_tarball,
        *I686_DEFAULT,
        repo=checkout,
        cache=kxen_cache,
    ).stdout
    assert "set in configs/default/zz-cpus.config:1: 8  (wins)" in human
    assert "set in configs/x86/zz-cpus.config:1: 16\n" in human


def test_explain_refuses_an_unknown_symbol(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    run = run_kxen(
        "config",
        "explain",
        "KXEN_NO_SUCH",
        "--upstream",
        linux_tarball,
        *I686_DEFAULT,
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == 2
    assert "CONFIG_KXEN_NO_SUCH: this tree's Kconfig does not define it" in run.stderr


def _edit(checkout: Path, cache: Path, tarball: Path, *args: str) -> Any:
    return run_kxen("config", *args, "--upstream", tarball, repo=checkout, cache=cache, check=False)


def test_set_and_unset_round_trip_in_place(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    fragment = checkout / "configs" / "default-x86_64" / "x86_64.config"
    original = fragment.read_text()
    target = ("--arch", "x86_64", "--flavour", "default")
    run = _edit(checkout, kxen_cache, linux_tarball, "set", "CONFIG_NR_CPUS=256", *target, "--json")
    data = json.loads(run.stdout)
    assert (data["before"], data["after"]) == ("CONFIG_NR_CPUS=512", "CONFIG_NR_CPUS=256")
    assert data["effects"] == [
        {
            "arch": "x86_64",
            "flavour": "default",
            "value": "256",
            "from": "configs/default-x86_64/x86_64.config:17",
            "reason": "",
        },
    ]
    assert fragment.read_text() == original.replace("CONFIG_NR_CPUS=512", "CONFIG_NR_CPUS=256")
    _edit(checkout, kxen_cache, linux_tarball, "set", "NR_CPUS=512", *target)
    assert fragment.read_text() == original


def test_new_symbol_goes_to_a_sorted_edit_file_and_reports_what_it_could_not_get(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    run = _edit(checkout, kxen_cache, linux_tarball, "set", "CONFIG_XEN_PV=y", "--arch", "i686")
    # a value that cannot be had is refused (exit 4) with the reason, and nothing written
    assert run.returncode == 4, run.stderr
    assert "i686/default, i686/smoke: CONFIG_XEN_PV=y: depends on X86_64 (=n)" in run.stderr
    edit_file = checkout / "configs" / "i686" / "kxen-set.config"
    assert not edit_file.exists()
    guest = ("CONFIG_XEN_PVHVM_GUEST=y", "--arch", "i686", "--flavour", "default")
    run = _edit(checkout, kxen_cache, linux_tarball, "set", *guest, "--layer", "i686")
    assert run.returncode == 0, run.stderr
    assert "layer i686 also reaches i686/smoke" in run.stderr  # where PCI is off
    # smoke sets EXPERT=y in a later layer: unsetting it for every i686 flavour cannot take
    run = _edit(checkout, kxen_cache, linux_tarball, "unset", "CONFIG_EXPERT", "--arch", "i686")
    assert run.returncode == 4
    assert "i686/smoke: y (from configs/smoke/smoke.config:9); not is not set" in run.stderr
    run = _edit(
        checkout, kxen_cache, linux_tarball, "unset", "CONFIG_EXPERT", *guest[1:], "--layer", "i686"
    )
    assert run.returncode == 0, run.stderr
    settings = [line for line in edit_file.read_text().splitlines() if "CONFIG_" in line]
    assert settings == ["# CONFIG_EXPERT is not set", "CONFIG_XEN_PVHVM_GUEST=y"]
    assert edit_file.read_text().startswith("# Values set with `kxen config set`")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "CONFIG_KXEN_NO_SUCH=y", "--all-arches"), "does not define it"),
        (
            ("set", "NR_CPUS=16", "--all-arches", "--flavour", "default"),
            "`16` is out of range; NR_CPUS takes 2\u20138 on i686",
        ),
        (("set", "CONFIG_XEN=m", "--arch", "x86_64"), "`m` is not a bool value; XEN takes y or n"),
        (("set", "CONFIG_HZ=7", "--arch", "x86_64"), "CONFIG_HZ has no prompt: no config can set"),
        (("set", "CONFIG_XEN=y"), "--arch A (repeatable) or --all-arches"),
        (
            ("set", "CONFIG_XEN=y", "--arch", "i686", "--layer", "x86_64"),
            "layer 'x86_64' is not used by i686/default",
        ),
    ],
)
def test_refused_edits_change_nothing(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, args: tuple[str, ...], message: str
) -> None:
    before = {p: p.read_bytes() for p in (checkout / "configs").rglob("*") if p.is_file()}
    run = _edit(checkout, kxen_cache, linux_tarball, *args)
    assert run.returncode == 2
    assert message in run.stderr
    after = {p: p.read_bytes() for p in (checkout / "configs").rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize(
    ("line", "code", "text"),
    [
        ("CONFIG_KXEN_NO_SUCH=y", 2, "unknown      CONFIG_KXEN_NO_SUCH configs/i686/zz.config:1"),
        (
            "CONFIG_XEN_PV=y",
            4,
            "CONFIG_XEN_PV configs/i686/zz.config:1: asked y, got is not set: "
            "depends on X86_64 (=n)",
        ),
    ],
)
def test_generate_refuses_with_the_reason_and_writes_nothing(
    checkout: Path,
    kxen_cache: Path,
    linux_tarball: Path,
    tmp_path: Path,
    line: str,
    code: int,
    text: str,
) -> None:
    (checkout / "configs" / "i686" / "zz.config").write_text(line + "\n")
    out = tmp_path / "out"
    run = run_kxen(
        "config",
        "generate",
        "--upstream",
        linux_tarball,
        "--arch",
        "i686",
        "--flavour",
        "smoke",
        "-o",
        out,
        repo=checkout,
        cache=kxen_cache,
        check=False,
    )
    assert run.returncode == code
    assert text in run.stderr
    assert not out.exists()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def test_diff_between_two_revisions_and_the_working_tree(
    checkout: Path, kxen_cache: Path, linux_tarball: Path
) -> None:
    _git(checkout, "init", "-q")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-q", "-m", "first")
    fragment = checkout / "configs" / "default-x86_64" / "x86_64.config"
    fragment.write_text(fragment.read_text().replace("CONFIG_NR_CPUS=512", "CONFIG_NR_CPUS=256"))
    _git(checkout, "commit", "-q", "-am", "fewer CPUs")
    target = ("--arch", "x86_64", "--flavour", "default", "--upstream", str(linux_tarball))
    run = run_kxen(
        "config", "diff", "HEAD~1", "HEAD", *target, "--json", repo=checkout, cache=kxen_cache
    )
    changes = json.loads(run.stdout)["changes"]
    assert {
        "arch": "x86_64",
        "flavour": "default",
        "symbol": "NR_CPUS",
        "before": "512",
        "after": "256",
    } in changes
    assert all(c["arch"] == "x86_64" for c in changes)
    extra = checkout / "configs" / "default-x86_64" / "zz.config"
    extra.write_text("# CONFIG_XEN_BALLOON is not set\n")
    human = run_kxen("config", "diff", *target, repo=checkout, cache=kxen_cache).stdout
    assert "HEAD -> WORKTREE" in human
    assert "\nx86_64/default: CONFIG_XEN_BALLOON: y -> is not set\n" in human
    shared = checkout / "configs" / "default" / "10-xen.config"  # a layer of both arches
    shared.write_text(
        shared.read_text().replace("CONFIG_XEN_GNTDEV=m", "# CONFIG_XEN_GNTDEV is not set")
    )
    both = ("--flavour", "default", "--upstream", str(linux_tarball))
    human = run_kxen("config", "diff", *both, repo=checkout, cache=kxen_cache).stdout
    lines = [line for line in human.splitlines() if "CONFIG_XEN_GNTDEV:" in line]
    assert lines == ["i686/default, x86_64/default: CONFIG_XEN_GNTDEV: m -> is not set"]
    bad = run_kxen(
        "config", "diff", "no-such-rev", *target, repo=checkout, cache=kxen_cache, check=False
    )
    assert bad.returncode == 2 and "no-such-rev" in bad.stderr


DEBIAN_CONFIGS = Path("/usr/src/linux-config-6.1")
X86_64_DEFAULT_LAYERS = "x86_64: [base, x86, x86_64, default, default-x86_64]"


@pytest.fixture(scope="module")
def prepared(linux_tarball: Path, kxen_cache: Path) -> Path:
    up = origin.from_tarball(linux_tarball, kxen_cache)
    return upstream_tree.prepared_tree(up, kxen_cache, SubprocessRunner())


@pytest.mark.parametrize("flavour", ["amd64_none_amd64", "amd64_none_cloud-amd64"])
def test_debian_amd64_config_as_the_only_layer(
    flavour: str,
    checkout: Path,
    kxen_cache: Path,
    linux_tarball: Path,
    prepared: Path,
    tmp_path: Path,
) -> None:
    """A real distro config (10k lines) checks clean and generates what make does. The
    cloud flavour builds ext4 in (EXT4_FS=y, which implies CRYPTO_XTS and others that it
    builds as modules): 6.1's kconfig keeps their m, and so does kxen."""
    debian = lzma.decompress((DEBIAN_CONFIGS / f"config.{flavour}.xz").read_bytes()).decode()
    (checkout / "configs" / "debian").mkdir()
    (checkout / "configs" / "debian" / "amd64.config").write_text(debian)
    layers = checkout / "configs" / "layers.yaml"
    assert X86_64_DEFAULT_LAYERS in layers.read_text()
    layers.write_text(layers.read_text().replace(X86_64_DEFAULT_LAYERS, "x86_64: [debian]"))
    target = ("--arch", "x86_64", "--flavour", "default")
    code, report = _check(checkout, kxen_cache, linux_tarball, *target)
    assert code == 0
    counts = report["counts"]
    assert counts["mismatch"] == counts["unknown"] == counts["invalid"] == 0
    # Debian builds with CC=gcc-12: the one value that records another toolchain
    assert [f["symbol"] for f in _only(report, "toolchain")] == ["CC_VERSION_TEXT"]

    out = tmp_path / "out"
    run_kxen(
        "config", "generate", "--upstream", linux_tarball, *target, "-o", out,
        repo=checkout, cache=kxen_cache,
    )  # fmt: skip
    objdir = tmp_path / "make"
    objdir.mkdir()
    (objdir / ".config").write_text(debian)
    subprocess.run(
        ["make", "-s", "-C", str(prepared), f"O={objdir}", "ARCH=x86_64", "olddefconfig"],
        check=True,
        capture_output=True,
    )
    (generated,) = out.glob("*.config")
    assert generated.read_text() == (objdir / ".config").read_text()

    implied = "CONFIG_EXT4_FS=y" in debian and "CONFIG_CRYPTO_XTS=m" in debian
    assert implied == (flavour == "amd64_none_cloud-amd64")
    explained = run_kxen(
        "config", "explain", "CONFIG_CRYPTO_XTS", "--upstream", linux_tarball, *target, "--json",
        repo=checkout, cache=kxen_cache,
    )  # fmt: skip
    (xts,) = json.loads(explained.stdout)["explanations"]
    assert xts["value"] == "m" and "CONFIG_CRYPTO_XTS=m" in generated.read_text()
    # implied by a y symbol in the cloud flavour, and still m
    assert ("FS_ENCRYPTION_ALGS (=y)" in xts["implied_by"]) == implied


NEW_SYMBOL_KCONFIG = """config XEN_KXEN_TEST_NEW
\tbool "A symbol new in 6.1.193"
\tdefault y
\thelp
\t  Only in kxen's test tree.
"""


def _replace_file(path: Path, old: str, new: str) -> None:
    """Edit a file of a hard-linked tree copy without touching the shared inode."""
    text = path.read_text()
    assert old in text
    path.unlink()
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def newer_tarball(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ "6.1.193": 6.1.192 with a renamed symbol, a new one (XEN_KXEN_TEST_NEW, default y)
    and a dependency that breaks HVC_XEN."""
    root = tmp_path_factory.mktemp("newer")
    tree = root / prepared.name
    subprocess.run(["cp", "-al", str(prepared), str(tree)], check=True)
    _replace_file(tree / "Makefile", "SUBLEVEL = 192", "SUBLEVEL = 193")
    _replace_file(
        tree / "drivers/xen/Kconfig",
        "config XEN_SYS_HYPERVISOR\n",
        f"{NEW_SYMBOL_KCONFIG}\nconfig XEN_SYSFS_HYPERVISOR\n",
    )
    _replace_file(
        tree / "drivers/tty/hvc/Kconfig",
        'config HVC_XEN\n\tbool "Xen Hypervisor Console support"\n\tdepends on XEN\n',
        'config HVC_XEN\n\tbool "Xen Hypervisor Console support"\n\tdepends on XEN && BROKEN\n',
    )
    tarball = root / "linux-6.1.193.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(root), prepared.name], check=True)
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    return tarball


def test_pending_writes_the_new_symbols_of_a_bump_for_review(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, newer_tarball: Path
) -> None:
    target = ("--arch", "x86_64", "--flavour", "default")
    args = ("config", "pending", *target, "--upstream", newer_tarball, "--since", linux_tarball)
    data = json.loads(run_kxen(*args, "--json", repo=checkout, cache=kxen_cache).stdout)
    # only what 6.1.192 did not define: the new symbol and the renamed one
    assert data["written"] == [
        "configs/pending/CONFIG_XEN_KXEN_TEST_NEW.config",
        "configs/pending/CONFIG_XEN_SYSFS_HYPERVISOR.config",
    ]
    entry = (checkout / data["written"][0]).read_text()
    assert "#   Only in kxen's test tree." in entry
    assert "# default y: x86_64/default" in entry
    assert entry.endswith(
        "# kxen-pending: unreviewed  (move the line below into a layer, or "
        "write `reviewed`)\nCONFIG_XEN_KXEN_TEST_NEW=y\n"
    )
    check = ("config", "check", "--strict", *target, "--upstream", linux_tarball)
    run = run_kxen(*check, repo=checkout, cache=kxen_cache, check=False)
    assert run.returncode == 4
    assert "pending, not reviewed: configs/pending/CONFIG_XEN_KXEN_TEST_NEW.config" in run.stderr
    for name in data["written"]:
        path = checkout / name
        path.write_text(path.read_text().replace("unreviewed", "reviewed"))
    run_kxen(*check, repo=checkout, cache=kxen_cache)


def test_rebase_preview_names_lines_that_stop_working(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, newer_tarball: Path
) -> None:
    target = ("--arch", "x86_64", "--flavour", "smoke", "--upstream", str(linux_tarball))
    args = ("config", "diff", *target, "--to-upstream", str(newer_tarball))
    data = json.loads(run_kxen(*args, "--json", repo=checkout, cache=kxen_cache).stdout)
    assert data["from"]["version"] == "6.1.192" and data["to"]["version"] == "6.1.193"
    lost = {(f["kind"], f["symbol"]): f for f in data["regressions"]}
    assert set(lost) == {("unknown", "XEN_SYS_HYPERVISOR"), ("mismatch", "HVC_XEN")}
    assert lost["unknown", "XEN_SYS_HYPERVISOR"]["where"] == "configs/base/xen-domu.config:22"
    assert "BROKEN (=n)" in lost["mismatch", "HVC_XEN"]["reason"]
    changes = {c["symbol"]: (c["before"], c["after"]) for c in data["changes"]}
    assert changes["XEN_SYS_HYPERVISOR"] == ("y", None)
    assert "XEN_SYSFS_HYPERVISOR" not in changes  # smoke is allnoconfig: unnamed means off
    assert changes["HVC_XEN"] == ("y", None)
    human = run_kxen(*args, repo=checkout, cache=kxen_cache).stdout
    assert human.startswith("Linux 6.1.192 -> Linux 6.1.193 (WORKTREE):")
    assert "\nx86_64/smoke: mismatch     CONFIG_HVC_XEN configs/base/" in human
    unknown = (
        "\nx86_64/smoke: unknown      CONFIG_XEN_SYS_HYPERVISOR configs/base/xen-domu.config:22"
    )
    assert unknown in human


def test_concurrent_generates_share_one_cache_without_racing(
    checkout: Path, kxen_cache: Path, linux_tarball: Path, tmp_path: Path
) -> None:
    """Two kxen processes on a cold cache: one prepares the tree and kconfig tools while
    the other waits; both arches of each run resolve in parallel."""
    cold = tmp_path / "cold-cache"
    started = []
    for flavour in ("default", "smoke"):
        argv, env = kxen_command(
            "config", "generate", "--upstream", linux_tarball, "--flavour", flavour,
            "-o", tmp_path / flavour, repo=checkout, cache=cold,
        )  # fmt: skip
        started.append(subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True))
    for process in started:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    reference = tmp_path / "sequential"
    run_kxen(
        "config", "generate", "--upstream", linux_tarball, "-o", reference,
        repo=checkout, cache=kxen_cache,
    )  # fmt: skip
    produced = {p.name: p.read_text() for p in tmp_path.glob("[ds]*/*.config")}
    assert len(produced) == 4
    assert produced == {p.name: p.read_text() for p in reference.glob("*.config")}
