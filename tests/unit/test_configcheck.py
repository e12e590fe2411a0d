"""Allow-list parsing and matching of `kxen config check`, and the finding text."""

from __future__ import annotations

from pathlib import Path

import pytest
from kxen.config.check import AllowEntry, Finding, load_allow_list
from kxen.config.fragments import Target
from kxen.errors import InputError

I686 = Target("i686", "default")


def test_allow_list_entries_keep_their_line_and_default_to_every_target(tmp_path: Path) -> None:
    (tmp_path / "allow.yaml").write_text(
        "# known cases\n"
        "- kind: mismatch\n  symbol: CONFIG_XEN_PV\n  arch: i686\n  reason: shared fragment\n"
        "- kind: unknown\n  symbol: OLD\n  reason: kept for 5.x trees\n"
    )
    first, second = load_allow_list(tmp_path)
    assert first == AllowEntry("mismatch", "XEN_PV", "i686", "*", "shared fragment", 2)
    assert (second.arch, second.flavour, second.line) == ("*", "*", 6)
    finding = Finding("mismatch", I686, "XEN_PV", "configs/x:1", "y", None)
    assert first.matches(finding)
    assert not first.matches(
        Finding("mismatch", Target("x86_64", "default"), "XEN_PV", "", "y", None)
    )
    assert not second.matches(finding)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- kind: mismatch\n  symbol: X\n", "allow.yaml:1: an entry needs kind, symbol and reason"),
        ("- kind: typo\n  symbol: X\n  reason: r\n", "allow.yaml:1: kind must be one of"),
        (
            "- kind: new\n  symbol: X\n  reason: '  '\n",
            "allow.yaml:1: every allow-list entry needs",
        ),
        ("kind: new\n", "allow.yaml: expected a list of entries"),
        ("- [unclosed\n", "allow.yaml:2: invalid YAML"),
    ],
)
def test_bad_allow_lists_are_refused_with_their_line(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "allow.yaml").write_text(text)
    with pytest.raises(InputError, match=message):
        load_allow_list(tmp_path)


def test_no_allow_list_is_an_empty_one(tmp_path: Path) -> None:
    assert load_allow_list(tmp_path) == []


def test_finding_text_names_line_values_reason_and_allowance() -> None:
    finding = Finding(
        "mismatch",
        I686,
        "XEN_PV",
        "configs/i686/i686.config:3",
        "y",
        None,
        "depends on X86_64 (=n) (arch/x86/xen/Kconfig:19)",
        allowed="known",
    )
    assert finding.describe() == (
        "mismatch     CONFIG_XEN_PV configs/i686/i686.config:3: asked y, got is not set: "
        "depends on X86_64 (=n) (arch/x86/xen/Kconfig:19) [allowed: known]"
    )
    new = Finding("new", I686, "ACPI_AC", "", None, "y")
    assert new.describe() == "new          CONFIG_ACPI_AC = y (no layer sets it; Kconfig default)"
