"""Options several commands share: the upstream tree, the build selection, the results
root, and existing paths."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.output import Options
from kxen.errors import InputError, KxenError

if TYPE_CHECKING:  # imported where they are used, so that `kxen --help` stays fast
    from kxen.build.ccache import Ccache
    from kxen.project import UpstreamChoice


def _results_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """--results, else results/ in the checkout: the absolute results root."""
    if value is None:
        options = ctx.find_object(Options)
        value = (options.repo if options else Path.cwd()) / "results"
    return value.resolve()


RESULTS_OPTION = click.option(
    "--results",
    "results_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=_results_root,
    help="Results root (default: results/ in the checkout).",
)
"""--results, handed to the command as `results_root`, the absolute results root."""


def upstream_options(func: Callable[..., None]) -> Callable[..., None]:
    """--upstream TARBALL|CHECKOUT and --ref, handed to `func` as one `local_tarball`
    (a `UpstreamChoice`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, local_tarball: Path | None, ref: str | None, **kwargs: Any) -> None:
        func(*args, local_tarball=_upstream_choice(local_tarball, ref), **kwargs)

    options = (
        click.option(
            "--ref",
            default=None,
            help="With --upstream CHECKOUT: the commit, tag or branch to snapshot (default HEAD).",
        ),
        click.option(
            "--upstream",
            "local_tarball",
            type=click.Path(exists=True, path_type=Path),
            default=None,
            help="Use this local kernel tarball (e.g. Debian's linux-source-6.1) or kernel git "
            "checkout (a reproducible snapshot of --ref) instead of the manifest's kernel.org "
            "files.",
        ),
    )
    for option in options:
        wrapper = option(wrapper)
    return wrapper


UPSTREAM_OPTION = upstream_options


def _upstream_choice(path: Path | None, ref: str | None) -> UpstreamChoice:
    from kxen.project import GitSnapshot
    from kxen.upstream import snapshot

    if path is None:
        if ref is not None:
            raise InputError("--ref needs --upstream CHECKOUT (a kernel git checkout)")
        return None
    if path.is_dir():
        if not snapshot.is_checkout(path):
            raise InputError(f"--upstream {path}: a directory must be a kernel git checkout")
        return GitSnapshot(path, ref or "HEAD")
    if ref is not None:
        raise InputError(f"--ref {ref}: only a git checkout has refs, {path} is a file")
    return path


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to build: the options shared by every command that renders a spec."""

    flavour: str
    local_tarball: UpstreamChoice
    buildid: str | None


def selection_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add --flavour/--upstream/--buildid and hand them to `func` as one `Selection`."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        flavour: str,
        local_tarball: UpstreamChoice,
        buildid: str | None,
        **kwargs: Any,
    ) -> None:
        func(*args, selection=Selection(flavour, local_tarball, buildid), **kwargs)

    options: tuple[Callable[[Callable[..., None]], Callable[..., None]], ...] = (
        click.option(
            "--buildid",
            default=None,
            help="Mark the release (e.g. .local); overrides the manifest.",
        ),
        UPSTREAM_OPTION,
        click.option(
            "--flavour", default="default", show_default=True, help="Config flavour to build."
        ),
    )
    decorated: Callable[..., None] = wrapper
    for option in options:
        decorated = option(decorated)
    return decorated


def existing_path(dir_okay: bool = False, file_okay: bool = True) -> click.Path:
    return click.Path(exists=True, dir_okay=dir_okay, file_okay=file_okay, path_type=Path)


CCACHE_SUBDIR = "ccache"
"""The default ccache directory, inside kxen's cache: one cache per user shared by every
build (and, in CI, by every build of a test session, which shares one kxen cache)."""


def ccache_options(func: Callable[..., None]) -> Callable[..., None]:
    """--ccache DIR / --no-ccache, handed to `func` (whose first argument is the command's
    `Options`) as `ccache`: the cache to compile through, or None."""

    @functools.wraps(func)
    def wrapper(
        options: Options, *args: Any, ccache_dir: Path | None, no_ccache: bool, **kwargs: Any
    ) -> None:
        func(options, *args, ccache=_ccache_choice(options, ccache_dir, no_ccache), **kwargs)

    decorated = click.option(
        "--no-ccache", is_flag=True, help="Compile without ccache (nothing is cached or read)."
    )(wrapper)
    return click.option(
        "--ccache",
        "ccache_dir",
        type=click.Path(path_type=Path),
        metavar="DIR",
        default=None,
        help="Compile through ccache (local and mock builds) with this cache directory "
        "(default: <cache>/ccache); each build's hits and misses go into ccache.json beside "
        "its RPMs.",
    )(decorated)


def _ccache_choice(options: Options, directory: Path | None, off: bool) -> Ccache | None:
    from kxen.build.ccache import Ccache

    if off:
        if directory is not None:
            raise InputError("--ccache DIR and --no-ccache exclude each other")
        return None
    chosen = Ccache((directory or options.cache / CCACHE_SUBDIR).absolute())
    chosen.check()
    return chosen


# --- shell completion (`eval "$(_KXEN_COMPLETE=bash_source kxen)"`) ----------------------


def _completion_layers(ctx: click.Context) -> Any:
    """configs/layers.yaml of the checkout the command line names (or the current one);
    None when there is none to read: completion never fails."""
    from kxen.config import fragments
    from kxen.locate import find_manifest

    try:
        repo = ctx.find_root().params.get("repo") or find_manifest(Path.cwd()).parent
        return fragments.load_layers(Path(repo) / "configs")
    except (KxenError, OSError):  # a half-typed command line must not break the shell
        return None


def complete_arch(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from kxen import arches

    return [name for name in arches.names() if name.startswith(incomplete)]


def complete_flavour(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    flavours = _completion_layers(ctx) or {}
    return [name for name in flavours if name.startswith(incomplete)]


def complete_layer(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    flavours = _completion_layers(ctx) or {}
    names = {n for spec in flavours.values() for layers in spec.layers.values() for n in layers}
    return sorted(n for n in names if n.startswith(incomplete))
