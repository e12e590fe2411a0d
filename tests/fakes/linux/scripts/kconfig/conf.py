# SPDX-License-Identifier: GPL-2.0-only
"""The config tool of the fake tree: the parts of Linux's scripts/kconfig/conf that
kxen and its spec use, on Kconfiglib (the library kxen's own Kconfig model is built on).

The Makefile runs it in the object directory with kbuild's environment (srctree,
ARCH, SRCARCH, KERNELVERSION, CC, CC_VERSION_TEXT), with one mode:

  --olddefconfig   .config -> .config: symbols it does not set take their defaults
  --allnoconfig    .config with every symbol as far off as Kconfig allows, except
                   those the file named by $KCONFIG_ALLCONFIG sets
  --listnewconfig  print the symbols .config leaves unset that a user would be asked
  --syncconfig     .config -> include/config/auto.conf, include/generated/autoconf.h

.config is written the way conf writes it, which differs from Kconfiglib's own
writer in one place: a bool/tristate that an active `imply` reaches is written
even when its own dependencies are not met (as "is not set").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kconfiglib  # type: ignore[import-untyped]

BOOL_TRISTATE = (kconfiglib.BOOL, kconfiglib.TRISTATE)
NUMBERS = (kconfiglib.INT, kconfiglib.HEX)
PREFIX = "CONFIG_"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="conf")
    modes = parser.add_mutually_exclusive_group(required=True)
    for mode in ("olddefconfig", "allnoconfig", "listnewconfig", "syncconfig"):
        modes.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("-s", "--silent", action="store_true")
    parser.add_argument("kconfig", help="the root Kconfig file")
    args = parser.parse_args(argv)
    config = Path(os.environ.get("KCONFIG_CONFIG") or ".config")
    try:
        kconf = kconfiglib.Kconfig(args.kconfig, warn_to_stderr=True)
    except kconfiglib.KconfigError as exc:
        print(f"conf: {exc}", file=sys.stderr)
        return 1
    # conf does not report values a .config assigns twice or that do not take
    kconf.warn_assign_override = False
    kconf.warn_assign_redun = False
    if args.mode == "allnoconfig":
        if not all_no(kconf):
            return 1
    elif config.is_file():
        kconf.load_config(str(config), replace=True)
    if args.mode == "listnewconfig":
        for sym in new_symbols(kconf):
            print(f"{PREFIX}{sym.name}={listed_value(sym)}")
        return 0
    write_if_changed(config, config_text(kconf))
    if args.mode == "syncconfig":
        write_if_changed(Path("include/config/auto.conf"), auto_conf(kconf))
        write_if_changed(Path("include/generated/autoconf.h"), autoconf_h(kconf))
    elif not args.silent:
        print(f"#\n# configuration written to {config}\n#")
    return 0


def all_no(kconf: Any) -> bool:
    """allnoconfig: every bool/tristate asked for n, then the KCONFIG_ALLCONFIG file's
    values on top (they win, as they do in conf)."""
    warn, kconf.warn = kconf.warn, False  # symbols without a prompt ignore it, silently
    for sym in kconf.unique_defined_syms:
        if sym.orig_type in BOOL_TRISTATE:
            sym.set_value(0)
    kconf.warn = warn
    allconfig = os.environ.get("KCONFIG_ALLCONFIG")
    if allconfig is None:
        return True
    if allconfig in ("", "1"):  # conf's convention: look for the mode's default file
        found = [p for p in ("allno.config", "all.config") if Path(p).is_file()]
        if found:
            kconf.load_config(found[0], replace=False)
        return True
    if not Path(allconfig).is_file():
        print(f"conf: KCONFIG_ALLCONFIG: {allconfig} not found", file=sys.stderr)
        return False
    kconf.load_config(allconfig, replace=False)
    return True


# --- writing ------------------------------------------------------------------


def config_line(sym: Any) -> str:
    """The symbol's .config line as conf writes it ("" when conf leaves it out)."""
    line: str = sym.config_string
    if line or sym.orig_type not in BOOL_TRISTATE:
        return line
    if not kconfiglib.expr_value(sym.weak_rev_dep):
        return ""
    value = kconfiglib.TRI_TO_STR[sym.tri_value]
    if value == "n":
        return f"# {PREFIX}{sym.name} is not set\n"
    return f"{PREFIX}{sym.name}={value}\n"


def _menu_shown(node: Any) -> bool:
    return bool(kconfiglib.expr_value(node.dep) and kconfiglib.expr_value(node.visibility))


def _lines(node: Any, seen: set[str]) -> Iterator[str]:
    """Every symbol once (at its first definition), in menu order, with menu headings."""
    while node is not None:
        item = node.item
        if isinstance(item, kconfiglib.Symbol) and item.name not in seen:
            seen.add(item.name)
            yield config_line(item)
        heading = item is kconfiglib.MENU and _menu_shown(node)
        if heading:
            yield f"\n#\n# {node.prompt[0]}\n#\n"
        if node.list is not None:
            yield from _lines(node.list, seen)
        if heading:
            yield f"# end of {node.prompt[0]}\n"
        node = node.next


def config_text(kconf: Any) -> str:
    header = f"#\n# Automatically generated file; DO NOT EDIT.\n# {kconf.mainmenu_text}\n#\n"
    return header + "".join(_lines(kconf.top_node.list, set()))


def _set_symbols(kconf: Any) -> Iterator[tuple[Any, str]]:
    """(symbol, value) of every symbol .config gives a value other than n."""
    for sym in kconf.unique_defined_syms:
        line = config_line(sym)
        if line and not line.startswith("#"):
            yield sym, line.split("=", 1)[1].rstrip("\n")


def auto_conf(kconf: Any) -> str:
    lines = [f"{PREFIX}{sym.name}={value}\n" for sym, value in _set_symbols(kconf)]
    return "# Automatically generated file; DO NOT EDIT.\n" + "".join(lines)


def autoconf_h(kconf: Any) -> str:
    lines = []
    for sym, value in _set_symbols(kconf):
        if sym.orig_type in BOOL_TRISTATE:
            suffix = "_MODULE" if value == "m" else ""
            lines.append(f"#define {PREFIX}{sym.name}{suffix} 1\n")
        elif sym.orig_type == kconfiglib.HEX and not value.lower().startswith("0x"):
            lines.append(f"#define {PREFIX}{sym.name} 0x{value}\n")
        else:  # int, or a string already quoted and escaped as in .config
            lines.append(f"#define {PREFIX}{sym.name} {value}\n")
    return "/* Automatically generated file; DO NOT EDIT. */\n" + "".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """Leave an unchanged file alone: make decides what to rebuild by its mtime."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


# --- listnewconfig ------------------------------------------------------------


def new_symbols(kconf: Any) -> Iterator[Any]:
    """What conf's listnewconfig asks about: symbols in a visible menu entry whose prompt
    a user could change (visibility above what `select`s force) and that .config left
    unset, in menu order."""
    yield from _unasked(kconf.top_node, set())


def _unasked(node: Any, seen: set[str]) -> Iterator[Any]:
    if not _entry_visible(node):
        return
    sym = node.item
    if isinstance(sym, kconfiglib.Symbol) and sym.name not in seen:
        forced = kconfiglib.expr_value(sym.rev_dep)
        if forced == 1 and sym.orig_type == kconfiglib.BOOL:
            forced = 2  # a bool selected by an m symbol is y
        if not _has_user_value(sym) and sym.visibility > forced:
            seen.add(sym.name)
            yield sym
    child = node.list
    while child is not None:
        yield from _unasked(child, seen)
        child = child.next


def _entry_visible(node: Any) -> bool:
    """A menu entry a user would see: its prompt is visible, or it is a symbol or choice
    that is not n and has a visible entry below it."""
    if not node.prompt:
        return False
    if node.item is kconfiglib.MENU and not kconfiglib.expr_value(node.visibility):
        return False
    if kconfiglib.expr_value(node.prompt[1]):
        return True
    item = node.item
    if not isinstance(item, (kconfiglib.Symbol, kconfiglib.Choice)) or not item.tri_value:
        return False
    child = node.list
    while child is not None:
        if _entry_visible(child):
            return True
        child = child.next
    return False


def _has_user_value(sym: Any) -> bool:
    """conf keeps a .config value of an int/hex symbol only inside its active range."""
    if sym.user_value is None:
        return False
    if sym.orig_type not in NUMBERS:
        return True
    base = 10 if sym.orig_type == kconfiglib.INT else 16
    try:
        number = int(sym.user_value, base)
    except ValueError:
        return False
    for low, high, cond in sym.ranges:
        if kconfiglib.expr_value(cond):
            return int(low.str_value, base) <= number <= int(high.str_value, base)
    return True


def listed_value(sym: Any) -> str:
    if sym.orig_type in BOOL_TRISTATE:
        return str(kconfiglib.TRI_TO_STR[sym.tri_value])
    if sym.orig_type == kconfiglib.STRING:
        return f'"{kconfiglib.escape(sym.str_value)}"'
    return str(sym.str_value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
