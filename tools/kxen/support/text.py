"""Text from files, logs and names made safe to show on a terminal."""

from __future__ import annotations

import re

# A CSI or OSC escape sequence as one unit, or any single C0/C1 control character (tab
# aside) or Unicode bidirectional override, which can reorder what a terminal shows.
_CONTROL = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def neutralise(line: str) -> str:
    """Make a line safe to show on a terminal: every escape sequence and control
    character (line breaks included) becomes `?`."""
    return _CONTROL.sub("?", line)
