"""The nightly dnf repository, `results/nightly/repo/`: the RPMs of the cells that passed,
so that a guest can follow the nightlies with `dnf upgrade`.

Layout: one repository for every arch, packages in `Packages/` (their file names carry
the arch; dnf takes the host's), metadata in `repodata/` as createrepo_c writes it
(primary, filelists and other, gzip: what every dnf reads; no sqlite, dnf does not use
it). A host points `baseurl` at `repo/`.

Readers never see half-written metadata: it is written into a scratch directory beside
`repodata/`, then moved in file by file (the data files' names hold their checksum, so a
new file never replaces an old one's content) and `repomd.xml` is renamed over last. The
data files of the previous `repomd.xml` are kept until the next change, for a dnf that
read it just before the swap. A package file is never overwritten: a name already
published with other bytes is refused (a rebuilt NVR must get a new release). Packages
are hard links to the run's build results where the file system allows, else copies.
Every change rereads every package's header and checksum (createrepo_c's way without a
cache): seconds for the few nights' kernels a pruned repository holds.

One writer at a time (an flock beside the repository); the library never prints.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import createrepo_c as cr  # type: ignore[import-untyped]

from kxen.errors import InputError, PublishError, UnsafePathError
from kxen.nightly.model import Run, Status
from kxen.support import fsutil
from kxen.support.fsutil import exclusive_lock, make_dirs, scratch_dir, write_error

REPO_DIR = "repo"
PACKAGES_DIR = "Packages"
REPODATA_DIR = "repodata"
REPOMD = "repomd.xml"
METADATA = {
    "primary": cr.PrimaryXmlFile,
    "filelists": cr.FilelistsXmlFile,
    "other": cr.OtherXmlFile,
}
"""What dnf needs of a repository, by repomd record type."""
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""A run directory's name: one plain path component (never `.`, `..` or hidden)."""


class RepoError(PublishError):
    """The repository was not changed: a package clashes with the one published under its
    name, is not a readable binary RPM, or the repository holds what kxen did not put
    there (exit 8, like every results directory that cannot be written)."""


# --- publish ----------------------------------------------------------------------------


def publish(repo_dir: Path, rpms: list[Path]) -> None:
    """Add binary RPMs to the repository and regenerate its metadata.

    A file already published under the same name with the same bytes is kept (publishing
    a run twice changes nothing); with other bytes the whole call is refused before the
    repository changes. Nothing to add to a repository that exists: nothing is written.
    Nothing to add and no repository yet: an empty, valid one is made, so a host already
    pointed at it does not fail on a missing repomd.xml before the first good night.
    """
    with _locked(repo_dir):
        packages = _real_dir(repo_dir / PACKAGES_DIR)
        published = _published(packages)
        new = _new_packages(published, rpms)
        if not new and (repo_dir / REPODATA_DIR / REPOMD).is_file():
            return
        listed = {**published, **new}
        with scratch_dir(repo_dir, ".repodata.new-") as staged:
            # every header is read before anything is placed: a bad package changes nothing
            _write_repodata(staged, listed)
            added = _add_packages(packages, new)
            try:
                _swap_repodata(repo_dir, staged)
            except BaseException:
                for path in added:
                    path.unlink(missing_ok=True)
                raise


def _new_packages(published: Mapping[str, Path], rpms: list[Path]) -> dict[str, Path]:
    """The packages not published yet, by file name; refuses a name published (or given
    twice) with other bytes, a source RPM, and anything but a regular file."""
    new: dict[str, Path] = {}
    for source in rpms:
        name = _binary_rpm_name(source)
        earlier = new.get(name) or published.get(name)
        if earlier is None:
            new[name] = source
        elif not _same_bytes(source, earlier):
            raise RepoError(
                f"{source}: {earlier} is already published with other bytes; "
                "a rebuilt package needs a new release (the repository is unchanged)"
            )
    return new


def _binary_rpm_name(source: Path) -> str:
    name = source.name
    if not name.endswith(".rpm") or name.endswith(".src.rpm") or name.startswith("."):
        raise RepoError(f"{source}: not a binary RPM's file name")
    if not _is_regular(source):
        raise RepoError(f"{source}: not a regular file (kxen never follows a link)")
    return name


def _same_bytes(one: Path, other: Path) -> bool:
    return os.path.samefile(one, other) or filecmp.cmp(one, other, shallow=False)


def _add_packages(packages: Path, new: Mapping[str, Path]) -> list[Path]:
    """Place the new packages; what was placed (removed again if a later step fails)."""
    added: list[Path] = []
    try:
        for name, source in sorted(new.items()):
            _place(source, packages / name)
            added.append(packages / name)
    except BaseException:
        for path in added:
            path.unlink(missing_ok=True)
        raise
    return added


def _place(source: Path, target: Path) -> None:
    """Hard link `source` at `target` (no second copy of a kernel), or copy it when they
    are on different file systems; `os.link` never replaces an existing file, so neither
    path can overwrite a published package."""
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise write_error(target, exc, "could not publish the package") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.link(tmp_name, target)
    except OSError as exc:
        raise write_error(target, exc, "could not copy the package") from None
    finally:
        Path(tmp_name).unlink(missing_ok=True)


# --- prune --------------------------------------------------------------------------------


def prune(nightly_dir: Path, runs: list[Run], keep: int) -> list[str]:
    """Delete the runs beyond the `keep` newest, and the packages no kept run refers to.

    `runs` are the completed runs, newest first. The newest good run (status PASS) is
    always kept, however old: it is what the next run compares with and what its
    packages offer a host. Every id is checked before anything is deleted. The repository
    stops listing the packages before their files go, and the runs go last, so an
    interrupted prune leaves nothing listed that cannot be downloaded and is simply
    done again by the next nightly. Returns the ids of the pruned runs.
    """
    if keep < 0:
        raise InputError(f"keep: expected 0 or more runs, got {keep}")
    kept, pruned = _split(runs, keep)
    doomed = [_run_dir(nightly_dir, run.id) for run in pruned]
    repo_dir = nightly_dir / REPO_DIR
    if repo_dir.exists() or repo_dir.is_symlink():
        _drop_unreferenced(repo_dir, _referenced(kept))
    for run_dir in doomed:
        _remove_run_dir(run_dir)
    return [run.id for run in pruned]


def _split(runs: list[Run], keep: int) -> tuple[list[Run], list[Run]]:
    """(kept, pruned): the `keep` newest and the newest good run, and the others."""
    kept = runs[:keep]
    good = next((run for run in runs if run.status == Status.PASS), None)
    if good is not None and good.id not in {run.id for run in kept}:
        kept = [*kept, good]
    kept_ids = {run.id for run in kept}
    return kept, [run for run in runs if run.id not in kept_ids]


def _referenced(runs: list[Run]) -> set[str]:
    """The package files the runs published: the RPMs of their cells that passed (the
    ones `kxen nightly` gives to `publish`)."""
    passed = (cell for run in runs for cell in run.cells if cell.status == Status.PASS)
    return {rpm.name for cell in passed for rpm in cell.rpms}


def _run_dir(nightly_dir: Path, run_id: str) -> Path:
    """The run's directory, if `run_id` names one plainly: one path component, not the
    repository, and a real directory (or nothing) there, never a link or a file."""
    if not RUN_ID.fullmatch(run_id) or run_id == REPO_DIR:
        raise UnsafePathError(f"run id {run_id!r} is not a run directory's name; nothing pruned")
    path = nightly_dir / run_id
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISDIR(path.lstat().st_mode):
            raise UnsafePathError(
                f"{path}: not a directory (a link or a file); kxen never deletes through "
                "one (remove it); nothing pruned"
            )
    return path


def _remove_run_dir(run_dir: Path) -> None:
    """Move the run into a scratch directory, then delete it: a prune killed halfway
    leaves a scratch directory `reclaim` removes, never half a run that looks whole."""
    if not _exists(run_dir):
        return
    with scratch_dir(run_dir.parent, f".pruned-{run_dir.name}-") as bin_dir:
        try:
            os.rename(run_dir, bin_dir / run_dir.name)
        except OSError as exc:
            raise write_error(run_dir, exc, "could not delete the run") from None


def _drop_unreferenced(repo_dir: Path, referenced: set[str]) -> None:
    """Stop listing the packages outside `referenced`, then delete their files (the
    build results they were linked from keep their own link)."""
    with _locked(repo_dir):
        packages = _real_dir(repo_dir / PACKAGES_DIR)
        published = _published(packages)
        gone = sorted(set(published) - referenced)
        if not gone and (repo_dir / REPODATA_DIR / REPOMD).is_file():
            return
        with scratch_dir(repo_dir, ".repodata.new-") as staged:
            _write_repodata(staged, {n: p for n, p in published.items() if n not in gone})
            _swap_repodata(repo_dir, staged)
        for name in gone:
            published[name].unlink(missing_ok=True)


# --- the repository's files -----------------------------------------------------------------


@contextlib.contextmanager
def _locked(repo_dir: Path) -> Iterator[None]:
    """One writer at a time: the lock sits beside the repository (nothing in it that a
    web server would serve), and a second writer waits: publishing takes seconds.
    Scratch directories a killed writer left are removed first."""
    lock = repo_dir.with_name(f".{repo_dir.name}.lock")
    with exclusive_lock(lock, f"the repository {repo_dir}", wait=True):
        _real_dir(repo_dir)
        fsutil.reclaim(repo_dir)
        yield


def _real_dir(path: Path) -> Path:
    """`path` as a directory of its own, made if missing; a link there is refused, since
    writing through it would put packages wherever it points."""
    if path.is_symlink():
        raise UnsafePathError(f"{path}: a symbolic link; kxen never writes through one (remove it)")
    make_dirs(path)
    return path


def _published(packages: Path) -> dict[str, Path]:
    """The published packages by file name; a `.rpm` entry that is not a regular file (a
    link planted there) is refused rather than listed."""
    found = {}
    for entry in sorted(packages.iterdir()):
        if entry.name.endswith(".rpm") and not entry.name.startswith("."):
            if not _is_regular(entry):
                raise RepoError(f"{entry}: not a regular file; kxen never follows a link")
            found[entry.name] = entry
    return found


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _write_repodata(target: Path, packages: Mapping[str, Path]) -> None:
    """createrepo_c's primary, filelists and other for `packages` (file name in
    Packages/ -> the file to read its header from) and the repomd.xml naming them, all in
    `target`; a package that cannot be read as an RPM is a RepoError."""
    try:
        _write_data_files(target, packages)
        repomd = cr.Repomd()
        for kind in METADATA:
            record = cr.RepomdRecord(kind, str(target / f"{kind}.xml.gz"))
            record.fill(cr.SHA256)
            record.rename_file()  # <sha256>-primary.xml.gz: a new generation never clashes
            repomd.set_record(record)
    except cr.CreaterepoCError as exc:  # writing, not reading: a full disk, say
        raise PublishError(f"{target}: could not write the repository metadata: {exc}") from None
    fsutil.atomic_write_text(target / REPOMD, repomd.xml_dump())


def _write_data_files(target: Path, packages: Mapping[str, Path]) -> None:
    writers = {
        kind: cls(str(target / f"{kind}.xml.gz"), cr.GZ_COMPRESSION)
        for kind, cls in METADATA.items()
    }
    try:
        for writer in writers.values():
            writer.set_num_of_pkgs(len(packages))
        for name, path in sorted(packages.items()):
            package = _read_package(path, f"{PACKAGES_DIR}/{name}")
            for writer in writers.values():
                writer.add_pkg(package)
    finally:
        for writer in writers.values():
            writer.close()


def _read_package(path: Path, href: str) -> object:
    try:
        return cr.package_from_rpm(str(path), checksum_type=cr.SHA256, location_href=href)
    except (cr.CreaterepoCError, OSError) as exc:
        raise RepoError(
            f"{path}: not a readable RPM ({exc}); the repository is unchanged"
        ) from None


def _swap_repodata(repo_dir: Path, staged: Path) -> None:
    """Move the staged metadata into repodata/, repomd.xml last by rename, then remove
    the data files neither the new nor the previous repomd.xml names."""
    repodata = _real_dir(repo_dir / REPODATA_DIR)
    previous = _named_by(repodata / REPOMD)
    try:
        for path in sorted(staged.iterdir(), key=lambda p: p.name == REPOMD):
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(path, repodata / path.name)
    except OSError as exc:
        raise write_error(repodata, exc, "could not update the repository metadata") from None
    keep = previous | _named_by(repodata / REPOMD) | {REPOMD}
    for entry in repodata.iterdir():
        if entry.name not in keep and _is_regular(entry):
            entry.unlink(missing_ok=True)


def _named_by(repomd: Path) -> set[str]:
    """The data files a repomd.xml names (none if there is none, or it cannot be read)."""
    if not _is_regular(repomd):
        return set()
    try:
        records = cr.Repomd(str(repomd)).records
    except (cr.CreaterepoCError, OSError):
        return set()
    return {Path(record.location_href).name for record in records}
