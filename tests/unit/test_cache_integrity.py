"""Every derived cache of kxen is checked before use: a changed byte is found, the entry is
set aside as evidence with a warning, and the entry is made again from its inputs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from kxen.config import fragments as configs
from kxen.config import kconfig
from kxen.errors import SourceError
from kxen.inspect.boottest import images, pieces
from kxen.support import integrity
from kxen.support.integrity import Quarantine
from kxen.support.runner import Completed, Running, SubprocessRunner
from kxen.upstream import origin, snapshot, sources
from kxen.upstream import tree as upstream_tree

from ..support import git
from .conftest import kernel_makefile, write_tarball
from .test_integrity import RecordingProgress


class CountingRunner:
    """The real runner, counting the commands it runs."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.real = SubprocessRunner()

    def stop_all(self) -> None:
        pass

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
        self.commands.append([os.fspath(a) for a in argv])
        return self.real.run(argv, **kwargs)  # type: ignore[arg-type]

    def stream(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Running:
        return self.real.stream(argv, **kwargs)  # type: ignore[arg-type]


def _flip_a_byte(path: Path) -> None:
    """In a new inode: a lookaside copy may be a hard link to the file it was imported from."""
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def _evidence(cache: Path) -> Path:
    (kept,) = (cache / "corrupt").iterdir()
    return kept


@pytest.fixture(autouse=True)
def _new_process() -> None:
    """Each test starts as a fresh kxen process would: nothing verified yet."""
    integrity._MANIFESTS.clear()


# --- prepared trees ---------------------------------------------------------------

KCONFIG = b'config XEN\n\tbool "Xen"\n'


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    return write_tarball(
        tmp_path / "linux-source-6.1.tar.xz",
        {
            "linux-6.1.5/Makefile": kernel_makefile(6, 1, 5).encode(),
            "linux-6.1.5/Kconfig": KCONFIG,
            "linux-6.1.5/README": b"Linux kernel\n",
        },
    )


def _prepared(tarball: Path, cache: Path, progress: RecordingProgress, **kwargs: object) -> Path:
    found = origin.from_tarball(tarball, cache)
    return upstream_tree.prepared_tree(
        found, cache, CountingRunner(), quarantine=Quarantine.in_cache(cache, progress), **kwargs
    )


def test_a_flipped_byte_in_a_cached_kconfig_is_set_aside_and_the_tree_extracted_again(
    tmp_path, tarball
):
    cache = tmp_path / "cache"
    progress = RecordingProgress()
    tree = _prepared(tarball, cache, progress)
    _flip_a_byte(tree / "Kconfig")
    integrity._MANIFESTS.clear()  # the next kxen run

    again = _prepared(tarball, cache, progress, scope=integrity.CONFIG_INPUTS)

    assert again == tree
    assert (tree / "Kconfig").read_bytes() == KCONFIG
    kept = _evidence(cache)
    entry = tree.parent
    assert (kept / entry.name / "linux-6.1.5" / "Kconfig").read_bytes() != KCONFIG
    (warning,) = progress.warnings
    assert warning.startswith(f"prepared tree {entry} failed verification (Kconfig: content")
    assert f"set aside as {kept}; extracting it again" in warning


def test_a_file_added_to_a_cached_tree_is_found_by_the_listing(tmp_path, tarball):
    cache = tmp_path / "cache"
    progress = RecordingProgress()
    tree = _prepared(tarball, cache, progress)
    (tree / "drivers").mkdir()
    (tree / "drivers" / "evil.c").write_text("int evil;\n")
    integrity._MANIFESTS.clear()
    _prepared(tarball, cache, progress, scope=integrity.CONFIG_INPUTS)
    assert not (tree / "drivers").exists()
    assert "drivers: not in the record" in progress.warnings[0]


def test_content_outside_the_config_inputs_is_checked_for_the_whole_tree(tmp_path, tarball):
    cache = tmp_path / "cache"
    progress = RecordingProgress()
    tree = _prepared(tarball, cache, progress)
    readme = tree / "README"
    readme.write_bytes(readme.read_bytes().upper())  # same size
    integrity._MANIFESTS.clear()
    _prepared(tarball, cache, progress, scope=integrity.CONFIG_INPUTS)
    assert progress.warnings == []  # kconfig never reads it: not hashed for config work
    _prepared(tarball, cache, progress, scope=integrity.WHOLE)  # patches check reads it all
    assert readme.read_bytes() == b"Linux kernel\n"
    assert "README: content differs from the record" in progress.warnings[0]


def test_a_tree_cached_before_manifests_existed_is_removed_not_kept(tmp_path, tarball):
    """Nothing to compare it with, and not evidence of anything: a 1.4 GB tree per upgrade
    is not kept in corrupt/."""
    cache = tmp_path / "cache"
    progress = RecordingProgress()
    found = origin.from_tarball(tarball, cache)
    old = cache / "trees" / found.identity
    (old / "linux-6.1.5").mkdir(parents=True)
    (old / "complete.json").write_text('{"topdir": "linux-6.1.5", "makefile_version": "6.1.5"}')
    tree = _prepared(tarball, cache, progress)
    assert (tree / "Kconfig").read_bytes() == KCONFIG
    assert "no digest manifest" in progress.warnings[0]
    assert "removed it; extracting it again" in progress.warnings[0]
    assert not (old / "complete.json").exists()
    assert not (cache / "corrupt").exists()


def test_a_cached_tree_that_is_a_symlink_is_set_aside_without_touching_its_target(
    tmp_path, tarball
):
    cache = tmp_path / "cache"
    progress = RecordingProgress()
    tree = _prepared(tarball, cache, progress)
    elsewhere = tmp_path / "elsewhere"
    tree.parent.rename(elsewhere)
    os.symlink(elsewhere, tree.parent)
    integrity._MANIFESTS.clear()
    _prepared(tarball, cache, progress)
    assert not tree.parent.is_symlink()
    assert (elsewhere / "linux-6.1.5" / "Kconfig").read_bytes() == KCONFIG
    assert "is a symlink" in progress.warnings[0]


def test_from_tarball_does_not_trust_a_changed_manifest(tmp_path, tarball):
    cache = tmp_path / "cache"
    tree = _prepared(tarball, cache, RecordingProgress())
    manifest = tree.parent / integrity.MANIFEST_NAME
    manifest.write_bytes(manifest.read_bytes().replace(b'"6.1.5"', b'"6.1.9"'))
    integrity._MANIFESTS.clear()
    assert str(origin.from_tarball(tarball, cache).version) == "6.1.5"  # read from the tarball


def test_setuid_setgid_and_sticky_bits_do_not_survive_extraction(tmp_path):
    def member(kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo()
        info.type = kind
        info.mode = mode
        return info

    tarball = write_tarball(
        tmp_path / "linux.tar",
        {
            "linux-6.1.5/Makefile": kernel_makefile(6, 1, 5).encode(),
            "linux-6.1.5/tools/suid": member(tarfile.REGTYPE, 0o4755),
            "linux-6.1.5/tools/sgid": member(tarfile.REGTYPE, 0o2755),
            "linux-6.1.5/tmp": member(tarfile.DIRTYPE, 0o1777),
        },
    )
    tree = _prepared(tarball, tmp_path / "cache", RecordingProgress())
    modes = {name: stat.S_IMODE((tree / name).stat().st_mode) for name in ("tools/suid", "tmp")}
    modes["tools/sgid"] = stat.S_IMODE((tree / "tools/sgid").stat().st_mode)
    assert modes == {"tools/suid": 0o755, "tools/sgid": 0o755, "tmp": 0o755}


# --- resolved configs and the kconfig O= directory -------------------------------


class FakeKbuild:
    """`make olddefconfig` with O=: compiles `conf` into the O= dir once, then writes the
    fragment plus what the tree's Kconfig says (so the result depends on the tree)."""

    def __init__(self, returncode: int = 0) -> None:
        self.runs = 0
        self.returncode = returncode

    def stop_all(self) -> None:
        pass

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
        self.runs += 1
        args = [os.fspath(a) for a in argv]
        tree = Path(args[args.index("-C") + 1])
        objdir = Path(next(a for a in args if a.startswith("O="))[2:])
        conf = objdir / "scripts" / "kconfig" / "conf"
        if not conf.exists():
            conf.parent.mkdir(parents=True)
            conf.write_bytes(b"\x7fELF conf")
        config = objdir / ".config"
        config.write_text(config.read_text() + (tree / "Kconfig").read_text())
        return Completed(tuple(args), self.returncode, "")


def _merged() -> configs.Merged:
    return configs.Merged(configs.Target("x86_64", "default"), "olddefconfig")


def _resolve(tmp_path: Path, runner: FakeKbuild, progress: RecordingProgress) -> str:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "Kconfig").write_text("CONFIG_FROM_THE_TREE=y\n")
    quarantine = Quarantine.in_cache(tmp_path / "cache", progress)
    work = tmp_path / "cache" / "kconfig" / "tree"
    resolved = configs.resolve(_merged(), tree, work, runner, "toolchain-1", quarantine)
    return resolved.text


def test_a_changed_resolved_config_is_set_aside_and_resolved_again(tmp_path):
    runner, progress = FakeKbuild(), RecordingProgress()
    first = _resolve(tmp_path, runner, progress)
    assert _resolve(tmp_path, runner, progress) == first
    assert runner.runs == 1  # the second came from the cache
    (cached,) = (tmp_path / "cache" / "kconfig" / "tree" / "resolved").glob("*.config")
    cached.write_text(first.replace("CONFIG_FROM_THE_TREE=y", "CONFIG_FROM_THE_TREE=m"))

    assert _resolve(tmp_path, runner, progress) == first
    assert runner.runs == 2
    kept = _evidence(tmp_path / "cache")
    assert "CONFIG_FROM_THE_TREE=m" in (kept / cached.name).read_text()
    assert (kept / f"{cached.name}.sha256").is_file()
    (warning,) = progress.warnings
    assert warning.startswith(f"resolved config {cached} failed verification")
    assert integrity.read_sealed(cached) == first.encode()


def test_a_resolved_config_without_its_record_is_not_used(tmp_path):
    runner, progress = FakeKbuild(), RecordingProgress()
    first = _resolve(tmp_path, runner, progress)
    (record,) = (tmp_path / "cache" / "kconfig" / "tree" / "resolved").glob("*.sha256")
    record.unlink()
    assert _resolve(tmp_path, runner, progress) == first
    assert runner.runs == 2
    assert "has no sha256 record" in progress.warnings[0]


def test_a_changed_kconfig_build_directory_is_set_aside_and_built_again(tmp_path):
    runner, progress = FakeKbuild(), RecordingProgress()
    first = _resolve(tmp_path, runner, progress)
    objdir = tmp_path / "cache" / "kconfig" / "tree" / "kconfig-x86_64"
    assert integrity.MANIFEST_NAME in os.listdir(objdir)
    (objdir / "scripts" / "kconfig" / "conf").write_bytes(b"\x7fELF evil conf")
    for cached in (objdir.parent / "resolved").iterdir():
        cached.unlink()
    integrity._MANIFESTS.clear()

    assert _resolve(tmp_path, runner, progress) == first
    assert (objdir / "scripts" / "kconfig" / "conf").read_bytes() == b"\x7fELF conf"
    kept = _evidence(tmp_path / "cache")
    assert (kept / "kconfig-x86_64" / "scripts" / "kconfig" / "conf").read_bytes() == (
        b"\x7fELF evil conf"
    )
    (warning,) = progress.warnings
    assert warning.startswith(f"kconfig build directory {objdir} failed verification")
    assert "scripts/kconfig/conf: a file" in warning


def test_every_kconfig_run_records_what_it_built(tmp_path):
    """The next run checks the O= dir against the last run's record: no false alarm, even
    after kconfig failed (what it built came from the verified tree)."""
    progress = RecordingProgress()
    with pytest.raises(configs.ConfigError):
        _resolve(tmp_path, FakeKbuild(returncode=2), progress)
    integrity._MANIFESTS.clear()
    _resolve(tmp_path, FakeKbuild(), progress)
    assert progress.warnings == []


def test_an_interrupted_kconfig_run_leaves_no_half_built_directory(tmp_path):
    class Interrupted(FakeKbuild):
        def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
            super().run(argv, **kwargs)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _resolve(tmp_path, Interrupted(), RecordingProgress())
    assert not (tmp_path / "cache" / "kconfig" / "tree" / "kconfig-x86_64").exists()


# --- the Kconfig probe cache --------------------------------------------------------


def test_a_changed_probe_cache_is_neither_used_nor_overwritten_and_is_set_aside(tmp_path):
    directory = tmp_path / "cache" / "kconfig" / "tree"
    good = directory / "probes-good.json"
    changed = directory / "probes-changed.json"
    for path in (good, changed):
        probes = kconfig.ProbeCache(path)
        probes.outputs = {"$(CC) --version": ["gcc 12\n", ""]}
        probes.dirty = True
        probes.save()
    changed.write_text(json.dumps({"$(CC) --version": ["gcc 99\n", ""]}))

    loaded = kconfig.ProbeCache(changed)  # in a Kconfig worker: no way to warn
    assert loaded.outputs == {}
    loaded.outputs, loaded.dirty = {"x": ["y", ""]}, True
    loaded.save()
    assert "gcc 99" in changed.read_text()

    progress = RecordingProgress()
    kconfig.ProbeCache.check_directory(directory, Quarantine.in_cache(tmp_path / "cache", progress))
    assert not changed.exists() and good.exists()
    assert (_evidence(tmp_path / "cache") / changed.name).is_file()
    (warning,) = progress.warnings
    assert warning.startswith(f"Kconfig probe cache {changed} failed verification")
    assert kconfig.ProbeCache(good).outputs == {"$(CC) --version": ["gcc 12\n", ""]}


# --- git snapshot tarballs ------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "linux"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "Makefile").write_text(kernel_makefile(6, 2, 0))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Linux 6.2")
    git(repo, "tag", "-a", "v6.2", "-m", "Linux 6.2")
    return repo


@pytest.mark.parametrize("damage", ["flipped byte", "record removed"])
def test_a_changed_snapshot_tarball_is_set_aside_and_made_again(tmp_path, checkout, damage):
    cache = tmp_path / "cache"
    first = snapshot.make(checkout, "HEAD", cache, SubprocessRunner())
    good = first.tarball.read_bytes()
    assert first.tarball_sha512 == hashlib.sha512(good).hexdigest()
    if damage == "flipped byte":
        _flip_a_byte(first.tarball)
    else:
        integrity.sidecar(first.tarball, "sha512").unlink()
    progress = RecordingProgress()

    again = snapshot.make(
        checkout, "HEAD", cache, SubprocessRunner(), Quarantine.in_cache(cache, progress)
    )

    assert again == first
    assert again.tarball.read_bytes() == good
    if damage == "flipped byte":
        assert (_evidence(cache) / first.tarball.name).is_file()
        assert progress.warnings[0].startswith(
            f"snapshot tarball {first.tarball} failed verification"
        )
    else:  # no record to compare with: made again, nothing kept as evidence
        assert not (cache / "corrupt").exists()
        assert progress.warnings[0].startswith(f"snapshot tarball {first.tarball}: it has no")


# --- the lookaside ------------------------------------------------------------------


CONTENT = b"upstream tarball bytes\n"


def _lookaside_copy(tmp_path: Path) -> tuple[sources.Lookaside, sources.SourceEntry, Path]:
    source = tmp_path / "linux-6.1.tar.xz"
    source.write_bytes(CONTENT)
    progress = RecordingProgress()
    cache = sources.Lookaside(
        tmp_path / "cache" / "lookaside", Quarantine.in_cache(tmp_path / "cache", progress)
    )
    entry = cache.import_file(source)
    path = cache.path_for(entry)
    _flip_a_byte(path)
    return cache, entry, path


def test_a_corrupt_lookaside_copy_with_no_mirror_is_named_and_kept(tmp_path):
    cache, entry, path = _lookaside_copy(tmp_path)
    corrupt = path.read_bytes()
    with pytest.raises(SourceError) as info:
        cache.fetch(entry, [f"file://{tmp_path}/no-mirror/linux-6.1.tar.xz"])
    kept = _evidence(tmp_path / "cache") / path.name
    assert kept.read_bytes() == corrupt
    assert not path.exists()
    assert info.value.message == (
        f"linux-6.1.tar.xz: could not download from any mirror (the cached copy {path} failed "
        f"its SHA512 check and is kept as {kept})"
    )
    (warning,) = cache.quarantine.progress.warnings  # type: ignore[attr-defined]
    assert warning.startswith(
        f"lookaside copy {path} failed verification (linux-6.1.tar.xz: SHA512"
    )


def test_a_corrupt_lookaside_copy_is_fetched_again_from_a_mirror(tmp_path):
    cache, entry, path = _lookaside_copy(tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "linux-6.1.tar.xz").write_bytes(CONTENT)
    got, downloaded = cache.fetch(entry, [f"file://{mirror}/linux-6.1.tar.xz"])
    assert (got, downloaded) == (path, True)
    assert got.read_bytes() == CONTENT
    assert (_evidence(tmp_path / "cache") / path.name).read_bytes() != CONTENT


def test_a_mirror_serving_other_bytes_still_names_the_kept_copy(tmp_path):
    cache, entry, path = _lookaside_copy(tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "linux-6.1.tar.xz").write_bytes(b"other bytes")
    with pytest.raises(SourceError) as info:
        cache.fetch(entry, [f"file://{mirror}/linux-6.1.tar.xz"])
    kept = _evidence(tmp_path / "cache") / path.name
    assert "SHA512 mismatch" in info.value.message
    assert info.value.details == [
        f"the cached copy {path} failed its SHA512 check and is kept as {kept}"
    ]


# --- boot-test pieces -----------------------------------------------------------------


def test_a_changed_guest_init_is_set_aside_and_built_again(tmp_path):
    progress = RecordingProgress()
    quarantine = Quarantine.in_cache(tmp_path, progress)
    init = images.guest_init("x86_64", tmp_path, SubprocessRunner(), quarantine)
    good = init.read_bytes()
    _flip_a_byte(init)
    assert images.guest_init("x86_64", tmp_path, SubprocessRunner(), quarantine) == init
    assert init.read_bytes() == good
    assert progress.warnings[0].startswith(f"guest init binary {init} failed verification")


def test_a_changed_decompressed_xen_is_set_aside_and_decompressed_again(tmp_path):
    image = tmp_path / "xen-4.17-amd64.gz"
    image.write_bytes(gzip.compress(b"\x7fELF xen hypervisor"))
    progress = RecordingProgress()
    quarantine = Quarantine.in_cache(tmp_path / "cache", progress)
    where = tmp_path / "cache" / "boot-test" / "xen"
    plain = pieces._decompressed_xen(image, where, quarantine)
    plain.write_bytes(b"\x7fELF evil hypervisor")
    assert pieces._decompressed_xen(image, where, quarantine) == plain
    assert plain.read_bytes() == b"\x7fELF xen hypervisor"
    assert progress.warnings[0].startswith(f"decompressed Xen {plain} failed verification")


class FakeApt:
    """`apt-cache depends`, `apt-get download` and `dpkg-deb -x` on a fake package set."""

    def __init__(self) -> None:
        self.downloads = 0

    def stop_all(self) -> None:
        pass

    def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
        args = [os.fspath(a) for a in argv]
        output = ""
        if args[:2] == ["apt-cache", "depends"]:
            output = "linux-image-amd64\n  Depends: linux-image-6.1.0-9-amd64\n"
        elif args[:2] == ["apt-get", "download"]:
            self.downloads += 1
            (Path(str(kwargs["cwd"])) / "xen_4.17_amd64.deb").write_bytes(b"!<arch>")
        elif args[:2] == ["dpkg-deb", "-x"]:
            root = Path(args[3])
            (root / "boot").mkdir(parents=True)
            (root / "boot" / "xen-4.17-amd64.gz").write_bytes(gzip.compress(b"xen"))
        return Completed(tuple(args), 0, output)


def test_a_changed_debian_root_is_set_aside_and_fetched_again(tmp_path):
    where = tmp_path / "cache" / "boot-test" / "debian"
    apt, progress = FakeApt(), RecordingProgress()
    root = pieces.debian_root(where, apt, progress)
    assert pieces.debian_root(where, apt, progress) == root
    assert apt.downloads == 1
    (root / "boot" / "xen-4.17-amd64.gz").write_bytes(gzip.compress(b"evil"))
    integrity._MANIFESTS.clear()

    quarantine = Quarantine.in_cache(tmp_path / "cache", progress)
    assert pieces.debian_root(where, apt, progress, quarantine) == root
    assert apt.downloads == 2
    assert gzip.decompress((root / "boot" / "xen-4.17-amd64.gz").read_bytes()) == b"xen"
    assert progress.warnings[0].startswith(f"boot-test package root {root} failed verification")
