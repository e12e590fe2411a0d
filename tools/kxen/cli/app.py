"""The `kxen` root command and its global options; every command group registers on it."""

from __future__ import annotations

from pathlib import Path

import click

from kxen.cli.output import Options
from kxen.errors import KxenError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The kernel-xen checkout (default: found from the current directory).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KXEN_CACHE_DIR",
    default=None,
    help="Lookaside cache and prepared trees (default: ~/.cache/kxen, or $KXEN_CACHE_DIR).",
)
@click.version_option(package_name="kxen")
@click.pass_context
def main_group(ctx: click.Context, repo: Path | None, cache_dir: Path | None) -> None:
    """Build the kernel-xen RPM (Linux paravirt_ops Xen domU) from upstream Linux."""
    from kxen.locate import default_cache_dir, find_manifest

    if repo is None:
        try:
            repo = find_manifest(Path.cwd()).parent
        except KxenError:
            repo = Path.cwd()
    ctx.obj = Options(repo=repo.resolve(), cache=(cache_dir or default_cache_dir()))
