"""`kxen dist-git`, `kxen lookaside upload/download`: releasing through dist-git."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kxen.cli.app import main_group
from kxen.cli.build import checkout
from kxen.cli.options import Selection, existing_path, selection_options
from kxen.cli.output import Options, command, echo_lines, emit, open_progress, open_project

if TYPE_CHECKING:  # the library is imported when a command runs: `kxen --help` stays light
    from kxen.release.lookaside import Tls, Uploaded


def tls_options(func: Callable[..., None]) -> Callable[..., None]:
    """--cert/--ca, handed to `func` as one `tls` (a lookaside.Tls)."""

    @functools.wraps(func)
    def wrapper(*args: Any, cert: Path | None, ca: Path | None, **kwargs: Any) -> None:
        from kxen.release.lookaside import Tls

        func(*args, tls=Tls(cert, ca), **kwargs)

    decorated = click.option(
        "--ca", type=existing_path(), default=None, help="CA certificate to trust for https://."
    )(wrapper)
    return click.option(
        "--cert",
        type=existing_path(),
        default=None,
        help="Client certificate (PEM with its key) the lookaside knows you by.",
    )(decorated)


NAME_OPTION = click.option(
    "--name",
    default=None,
    help="The package as the dist-git knows it, NAME or NAMESPACE/NAME (default: the "
    "manifest's name).",
)


def _upload_lines(uploads: list[Uploaded]) -> list[str]:
    return [
        f"{u.file}: {'uploaded' if u.sent else 'already in the lookaside'} "
        f"({u.size / (1 << 20):.1f} MiB)"
        for u in uploads
    ]


@command(main_group, name="dist-git")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@selection_options
@click.option(
    "--upload",
    "upload_url",
    default=None,
    metavar="URL",
    help="The lookaside's upload.cgi: upload the upstream files (skipping those it has) "
    "before committing.",
)
@NAME_OPTION
@tls_options
def dist_git(
    options: Options,
    directory: Path,
    selection: Selection,
    upload_url: str | None,
    name: str | None,
    tls: Tls,
) -> None:
    """Render the package into the clean dist-git checkout DIRECTORY and commit it: spec,
    generated configs, patches, `sources` and `.gitignore` (one commit, or nothing)."""
    from kxen import pipeline
    from kxen.release.lookaside import Uploader

    with open_project(options) as project:
        package = name or project.manifest.name
        uploader = (
            Uploader(upload_url, package, tls, project.progress.transfer) if upload_url else None
        )
        done = pipeline.export_dist_git(checkout(project, selection), directory, uploader)
    state = f"committed {done.commit}" if done.commit else "unchanged (nothing to commit)"
    data = {
        "checkout": str(done.checkout),
        "nvr": done.nvr,
        "commit": done.commit,
        "files": done.files,
        "removed": done.removed,
        "sources": [item.entry.line() for item in done.lookaside_files],
        "uploads": [dataclasses.asdict(u) for u in done.uploads],
    }
    lines = [*_upload_lines(done.uploads), f"{done.nvr}: {state} in {done.checkout}"]
    emit(options, data, echo_lines(lines))


@main_group.group(name="lookaside")
def lookaside_group() -> None:
    """Upload to and download from a dist-git lookaside cache (fedpkg's layout)."""


@command(lookaside_group, name="upload")
@click.argument("files", nargs=-1, required=True, type=existing_path())
@click.option("--url", required=True, help="The lookaside's upload.cgi URL.")
@NAME_OPTION
@tls_options
def lookaside_upload(
    options: Options, files: tuple[Path, ...], url: str, name: str | None, tls: Tls
) -> None:
    """Upload FILES (under their own names, with their SHA512) unless the lookaside has them.

    Works outside a kernel-xen checkout when --name is given (a dist-git checkout)."""
    from kxen import manifest, pipeline
    from kxen.release.distgit import LOOKASIDE_HASH, LookasideFile
    from kxen.release.lookaside import Uploader
    from kxen.upstream.sources import file_digest

    package = name or manifest.load(options.repo / manifest.MANIFEST_NAME).name
    with open_progress(options) as progress:
        uploader = Uploader(url, package, tls, progress.transfer)
        items = [LookasideFile(p.name, p, file_digest(p, LOOKASIDE_HASH)) for p in files]
        uploads = pipeline.upload_lookaside(uploader, items, progress)
    emit(
        options,
        {"uploads": [dataclasses.asdict(u) for u in uploads]},
        echo_lines(_upload_lines(uploads)),
    )


@command(lookaside_group, name="download")
@click.argument("directory", type=existing_path(dir_okay=True, file_okay=False))
@click.option("--base", required=True, help="The lookaside's download base URL.")
@click.option(
    "--name", required=True, help="The package as the dist-git knows it (NAME or NAMESPACE/NAME)."
)
@tls_options
def lookaside_download(options: Options, directory: Path, base: str, name: str, tls: Tls) -> None:
    """Download every file the dist-git checkout DIRECTORY's `sources` lists into it,
    each checked against its SHA512 (what `fedpkg sources` does)."""
    from kxen.release.lookaside import download_sources
    from kxen.upstream.sources import SOURCES_NAME, parse_sources

    with open_progress(options) as progress:
        entries = parse_sources(directory / SOURCES_NAME)
        fetched = download_sources(base, name, entries, directory, progress.transfer, tls)
    lines = [f"{f.file}: {'downloaded' if f.downloaded else 'present'}" for f in fetched]
    emit(options, {"files": [dataclasses.asdict(f) for f in fetched]}, echo_lines(lines))
