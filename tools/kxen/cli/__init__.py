"""The `kxen` command line: the only place that prints, shows progress or exits.

One module per command group, each thin over the library; errors from the library
arrive as `KxenError` subclasses and leave through one mapping to exit codes (see
`errors.ExitCode` and README.md), in `kxen.cli.output`.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from kxen.cli import build, config, hub, inspect, nightly, patches, release, sources  # noqa: F401
from kxen.cli.app import main_group
from kxen.cli.output import Options, fail
from kxen.errors import InputError, Interrupted


def main() -> None:
    try:
        main_group.main(prog_name="kxen", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # Bad command lines are input errors like any other: exit 2, one line, and JSON
        # for CI when it asked for JSON.
        where = f"kxen {exc.ctx.command_path.removeprefix('kxen').strip()}" if exc.ctx else "kxen"
        options = Options(Path.cwd(), Path.cwd(), as_json="--json" in sys.argv[1:])
        fail(options, InputError(f"{where.strip()}: {exc.format_message()} (see --help)"))
    except click.exceptions.Abort:
        fail(Options(Path.cwd(), Path.cwd()), Interrupted(signal.SIGINT))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
