"""Names that are shell or rpm code, and how to prove they ran nothing (shared by the unit
and the hostile-input tests).

Each name runs `touch pwned` wherever it would reach a shell or rpm's macro expander as code,
or breaks the command it lands in where it cannot run anything by itself. A file name cannot
hold `/`, so the file lands in the working directory of whatever ran it (kxen, rpmspec,
`%prep` in the build tree): `traces()` finds it anywhere under a test's scratch directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .harness import CANARY

HOSTILE_TARBALL_NAMES = {
    "pipe": "linux|touch pwned|.tar.xz",
    "semicolon": "linux;touch pwned;.tar.xz",
    "ampersand": "linux&touch pwned&.tar.xz",
    "dollar": "linux$(touch pwned).tar.xz",
    "parentheses": "linux-6.1 (1).tar.xz",
    "open-parenthesis": "linux-6.1 (1.tar.xz",
    "star": "linux-*.tar.xz",
    "question-mark": "linux-6.1.?.tar.xz",
    "single-quote": "linux'$(touch pwned)'.tar.xz",
    "double-quote": 'linux"$(touch pwned)".tar.xz',
    "backslash": "linux\\;touch pwned;.tar.xz",
    "space": "linux 6.1.tar.xz",
    "newline": "linux\ntouch pwned\n.tar.xz",
    "leading-dash": "--to-command=touch pwned.tar.xz",
    "percent": "linux-%(touch pwned).tar.xz",
}
"""What a user's kernel tarball may be called; kxen must ship it as linux-<version>.tar.xz."""

HOSTILE_TOP_DIRECTORY = "linux 6.1 (copy) $(touch pwned)"
"""A top directory with spaces and a command: it must never reach the spec."""

HOSTILE_CHARACTERS = {
    "pipe": "|",
    "semicolon": ";",
    "ampersand": "&",
    "dollar": "$",
    "open-parenthesis": "(",
    "close-parenthesis": ")",
    "star": "*",
    "question-mark": "?",
    "single-quote": "'",
    "double-quote": '"',
    "backslash": "\\",
    "space": " ",
    "newline": "\n",
    "tab": "\t",
    "nul": "\x00",
    "percent": "%",
    "braces": "{",
    "backtick": "`",
    "comma": ",",
    "equals": "=",
}
"""Characters no token (version, release, file name, URL) may hold."""

HOSTILE_TOKENS = {
    **{key: f"x{char}y" for key, char in HOSTILE_CHARACTERS.items()},
    "leading-dash": "-x",
    "leading-tilde": "~x",
}
"""Values of token fields that must be refused: one hostile character each (among characters
tokens may hold, so that it alone is the reason), or a leading `-` or `~`."""


def srpm_payload(srpm: Path) -> list[str]:
    """The file names an SRPM carries, sorted."""
    listed = subprocess.run(
        ["rpm", "-qpl", "--nosignature", srpm], capture_output=True, text=True, check=True
    )
    return sorted(listed.stdout.splitlines())


def prep_from_srpm(srpm: Path, topdir: Path) -> subprocess.CompletedProcess[str]:
    """`%prep` of the SRPM's own spec (`rpmbuild -rp`), as a rebuild on any host runs it."""
    return subprocess.run(
        [
            "rpmbuild",
            "-rp",
            "--nodeps",
            "--target",
            "x86_64",
            "--define",
            f"_topdir {topdir}",
            "--define",
            "dist %{nil}",
            srpm,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def traces(root: Path) -> list[Path]:
    """Every file a hostile name's `touch pwned` made under `root` (none, or it ran)."""
    return sorted(root.rglob(CANARY))
