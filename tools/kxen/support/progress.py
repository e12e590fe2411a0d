"""How long-running library code tells its caller what it is doing.

The library never prints: it reports phases and steps to a `Progress`, and
the CLI decides whether that becomes a live terminal display, JSON or nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str, detail: str = "") -> None:
        """A new phase began (e.g. "configs", "build x86_64")."""

    def step(self, text: str) -> None:
        """The current step inside the phase changed (e.g. "CC kernel/fork.o")."""

    def transfer(self, name: str, done: int, total: int | None) -> None:
        """Bytes of a download or upload so far."""

    def notice(self, text: str) -> None:
        """A passing condition worth a line in a log as well as on a terminal (a retry
        after a dropped connection): not a warning, the work goes on as planned."""

    def warn(self, message: str) -> None:
        """Something the user must hear about although the work goes on (a corrupt cache
        entry set aside, a dead holder's leftovers reclaimed)."""


class NullProgress:
    def phase(self, name: str, detail: str = "") -> None:
        pass

    def step(self, text: str) -> None:
        pass

    def transfer(self, name: str, done: int, total: int | None) -> None:
        pass

    def notice(self, text: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass
