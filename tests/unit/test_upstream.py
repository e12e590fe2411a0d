from __future__ import annotations

import difflib
import hashlib
import lzma
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from kxen import manifest
from kxen.errors import InputError, SourceError
from kxen.support import integrity
from kxen.support.runner import Completed, Running, SubprocessRunner
from kxen.upstream import archive, origin, sources
from kxen.upstream import tree as upstream_tree
from kxen.upstream.origin import Upstream
from kxen.versions import UpstreamVersion


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


@pytest.fixture
def tree_616(tmp_path, make_tarball, makefile_text) -> Path:
    """A tiny linux-6.1.5 source tarball."""
    return make_tarball(
        tmp_path / "linux-source-6.1.tar.xz",
        {
            "linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode(),
            "linux-6.1.5/README": b"Linux kernel\n",
            "linux-6.1.5/arch/x86/Kconfig": b"config X86\n",
        },
    )


def _symlink(target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _special(kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info


def _hardlink(target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info


# --- from_tarball --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar.xz", ".tar.bz2", ".tar.gz", ".tar"])
def test_from_tarball_reads_the_version_from_the_makefile(
    tmp_path, make_tarball, makefile_text, suffix
):
    tarball = make_tarball(
        tmp_path / f"linux{suffix}",
        {"linux-6.1.5/README": b"x", "linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode()},
    )
    found = origin.from_tarball(tarball, tmp_path / "cache")
    assert found.version == UpstreamVersion("6.1", 5)
    assert found.topdir == "linux-6.1.5"
    assert found.tarball == tarball.resolve()
    assert found.patches == ()
    assert found.origin == origin.ORIGIN_LOCAL_TARBALL
    assert found.files == (found.tarball,)


def test_from_tarball_identity_follows_the_content(tmp_path, tree_616, make_tarball, makefile_text):
    cache = tmp_path / "cache"
    copy = tmp_path / "copy" / tree_616.name
    copy.parent.mkdir()
    copy.write_bytes(tree_616.read_bytes())
    other = make_tarball(
        tmp_path / "other.tar.xz", {"linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode()}
    )
    first = origin.from_tarball(tree_616, cache)
    assert origin.from_tarball(copy, cache).identity == first.identity
    assert origin.from_tarball(other, cache).identity != first.identity


def test_describe(tree_616, tmp_path):
    found = origin.from_tarball(tree_616, tmp_path / "cache")
    assert found.describe() == {
        "origin": "local-tarball",
        "version": "6.1.5",
        "files": [tree_616.name],
        "tarball": str(tree_616.resolve()),
        "tarball_sha512": hashlib.sha512(tree_616.read_bytes()).hexdigest(),
        "identity": found.identity,
    }


def test_prerelease_makefile(tmp_path, make_tarball, makefile_text):
    tarball = make_tarball(
        tmp_path / "l.tar.xz", {"linux-6.2-rc3/Makefile": makefile_text(6, 2, 0, "-rc3").encode()}
    )
    assert origin.from_tarball(tarball, tmp_path / "cache").version == UpstreamVersion("6.2", rc=3)


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ({"linux-6.1.5/README": b"x"}, "no top-level Makefile"),
        ({"linux-6.1.5/sub/Makefile": b"VERSION = 6\n"}, "no top-level Makefile"),
        ({"linux-6.1.5/Makefile": b"all:\n\ttrue\n"}, "no VERSION/PATCHLEVEL/SUBLEVEL"),
    ],
)
def test_from_tarball_refuses_what_is_not_a_kernel(tmp_path, make_tarball, members, problem):
    tarball = make_tarball(tmp_path / "x.tar.xz", members)
    with pytest.raises(InputError) as info:
        origin.from_tarball(tarball, tmp_path / "cache")
    assert str(tarball) in info.value.message
    assert problem in info.value.message


def test_from_tarball_refuses_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(InputError, match="not a readable tar archive"):
        origin.from_tarball(garbage, tmp_path / "cache")
    with pytest.raises(InputError, match="no such file"):
        origin.from_tarball(tmp_path / "missing.tar.xz", tmp_path / "cache")


# --- check_members ---------------------------------------------------------------


def test_check_members_accepts_a_clean_tree(tmp_path, make_tarball, makefile_text):
    tarball = make_tarball(
        tmp_path / "ok.tar.xz",
        {
            "linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode(),
            "linux-6.1.5/include/a.h": b"",
            "linux-6.1.5/link": _symlink("include/a.h"),
            "linux-6.1.5/include/up": _symlink("../Makefile"),
            "linux-6.1.5/hard": _hardlink("linux-6.1.5/Makefile"),
        },
    )
    archive.check_members(tarball, "linux-6.1.5")


HOSTILE = {
    "dotdot": ("../evil", b"x"),
    "deep dotdot": ("linux-6.1.5/../../evil", b"x"),
    "absolute": ("/tmp/kxen-evil", b"x"),
    "symlink outside": ("linux-6.1.5/escape", _symlink("../../etc/passwd")),
    "symlink to sibling dir": ("linux-6.1.5/sib", _symlink("../other")),
    "absolute symlink": ("linux-6.1.5/abs", _symlink("/etc/passwd")),
    "device node": ("linux-6.1.5/null", _special(tarfile.CHRTYPE)),
    "block device": ("linux-6.1.5/disk", _special(tarfile.BLKTYPE)),
    "fifo": ("linux-6.1.5/fifo", _special(tarfile.FIFOTYPE)),
    "other top dir": ("other/file", b"x"),
    "hard link outside": ("linux-6.1.5/hl", _hardlink("../etc/passwd")),
}


def _hostile_tarball(tmp_path: Path, make_tarball, makefile_text, case: str) -> Path:
    name, member = HOSTILE[case]
    return make_tarball(
        tmp_path / "hostile.tar.xz",
        {"linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode(), name: member},
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_check_members_refuses_hostile_members(tmp_path, make_tarball, makefile_text, case):
    tarball = _hostile_tarball(tmp_path, make_tarball, makefile_text, case)
    with pytest.raises(InputError) as info:
        archive.check_members(tarball, "linux-6.1.5")
    assert info.value.message.startswith(f"{tarball}: ")


def test_check_members_refuses_a_member_that_climbs_out_of_the_top_dir(
    tmp_path, make_tarball, makefile_text
):
    tarball = make_tarball(
        tmp_path / "hostile.tar.xz",
        {"linux-6.1.5/Makefile": makefile_text(6, 1, 5).encode(), "linux-6.1.5/../evil": b"x"},
    )
    with pytest.raises(InputError):
        archive.check_members(tarball, "linux-6.1.5")


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink outside", "device node"])
def test_prepared_tree_extracts_nothing_from_a_hostile_tarball(
    tmp_path, make_tarball, makefile_text, case
):
    tarball = _hostile_tarball(tmp_path, make_tarball, makefile_text, case)
    cache = tmp_path / "cache"
    found = origin.from_tarball(tarball, cache)
    runner = CountingRunner()
    with pytest.raises(InputError):
        upstream_tree.prepared_tree(found, cache, runner)
    assert runner.commands == []
    trees = cache / "trees"
    assert [p.name for p in trees.iterdir() if not p.name.endswith(".lock")] == []
    assert not (tmp_path / "evil").exists()


# --- prepared_tree ---------------------------------------------------------------


def test_prepared_tree_extracts_once_and_reuses(tmp_path, tree_616):
    cache = tmp_path / "cache"
    found = origin.from_tarball(tree_616, cache)
    runner = CountingRunner()
    tree = upstream_tree.prepared_tree(found, cache, runner)
    assert tree == cache / "trees" / found.identity / "linux-6.1.5"
    assert (tree / "arch/x86/Kconfig").read_text() == "config X86\n"
    assert len(runner.commands) == 1
    marker = integrity.read_meta(tree.parent / integrity.MANIFEST_NAME)
    assert marker == {"topdir": "linux-6.1.5", "makefile_version": "6.1.5"}
    assert [p.name for p in (cache / "trees").iterdir() if p.name.startswith(".extract-")] == []

    again = upstream_tree.prepared_tree(found, cache, runner)
    assert again == tree
    assert len(runner.commands) == 1  # nothing was run the second time
    # and a later from_tarball agrees with the cached tree
    assert origin.from_tarball(tree_616, cache) == found


def test_prepared_tree_with_the_real_runner(tmp_path, tree_616):
    cache = tmp_path / "cache"
    found = origin.from_tarball(tree_616, cache)
    tree = upstream_tree.prepared_tree(found, cache, SubprocessRunner())
    assert (tree / "Makefile").is_file()
    assert upstream_tree.prepared_tree(found, cache, SubprocessRunner()) == tree


def _xz_patch(path: Path, old: str, new: str, name: str = "Makefile") -> Path:
    diff = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    path.write_bytes(lzma.compress("".join(diff).encode()))
    return path


@pytest.fixture
def linux_61(tmp_path, make_tarball, makefile_text) -> Path:
    return make_tarball(
        tmp_path / "linux-6.1.tar.xz",
        {"linux-6.1/Makefile": makefile_text(6, 1, 0).encode(), "linux-6.1/README": b"x\n"},
    )


def _kernel_org(tarball: Path, patches: tuple[Path, ...], version: UpstreamVersion) -> Upstream:
    return Upstream(
        version=version,
        tarball=tarball,
        patches=patches,
        topdir="linux-6.1",
        origin=origin.ORIGIN_KERNEL_ORG,
        identity="test-" + "-".join(p.name for p in (tarball, *patches)),
    )


def test_prepared_tree_applies_upstream_patches(tmp_path, linux_61, makefile_text):
    patch = _xz_patch(tmp_path / "patch-6.1.5.xz", makefile_text(6, 1, 0), makefile_text(6, 1, 5))
    cache = tmp_path / "cache"
    found = _kernel_org(linux_61, (patch,), UpstreamVersion("6.1", 5))
    tree = upstream_tree.prepared_tree(found, cache, SubprocessRunner())
    assert (tree / "Makefile").read_text() == makefile_text(6, 1, 5)
    assert not list(tree.rglob("*.orig"))


def _no_tree_left(cache: Path, identity: str) -> None:
    trees = cache / "trees"
    assert not (trees / identity).exists()
    assert [p.name for p in trees.iterdir() if p.name.startswith(".extract-")] == []


def test_patch_that_does_not_apply_leaves_no_tree(tmp_path, linux_61, makefile_text):
    patch = _xz_patch(tmp_path / "patch-6.1.5.xz", makefile_text(6, 2, 0), makefile_text(6, 2, 5))
    cache = tmp_path / "cache"
    found = _kernel_org(linux_61, (patch,), UpstreamVersion("6.1", 5))
    with pytest.raises(SourceError) as info:
        upstream_tree.prepared_tree(found, cache, SubprocessRunner())
    assert info.value.message == "patch-6.1.5.xz: does not apply to the upstream tarball"
    _no_tree_left(cache, found.identity)


def test_tree_whose_makefile_disagrees_is_refused(tmp_path, linux_61):
    cache = tmp_path / "cache"
    found = _kernel_org(linux_61, (), UpstreamVersion("6.1", 7))
    with pytest.raises(SourceError, match=r"Makefile says 6\.1, expected 6\.1\.7"):
        upstream_tree.prepared_tree(found, cache, SubprocessRunner())
    _no_tree_left(cache, found.identity)


def test_from_manifest_uses_the_cache_and_prepares_a_patched_tree(
    tmp_path, checkout, linux_61, makefile_text
):
    patch = _xz_patch(tmp_path / "patch-6.1.5.xz", makefile_text(6, 1, 0), makefile_text(6, 1, 5))
    lookaside = sources.Lookaside(tmp_path / "cache" / "lookaside")
    entries = [lookaside.import_file(linux_61), lookaside.import_file(patch)]
    sources.write_sources(checkout / sources.SOURCES_NAME, entries)
    manifest_path = checkout / manifest.MANIFEST_NAME
    text = manifest_path.read_text()
    assert '  version: "6.1"\n' in text
    dead = f"file://{tmp_path}/no-mirror/"  # every file must come from the cache
    manifest_path.write_text(
        text.replace('  version: "6.1"\n', '  version: "6.1"\n  stable: 5\n').replace(
            "    - https://cdn.kernel.org/pub/linux/kernel/\n", f"    - {dead}\n"
        )
    )
    loaded = manifest.load(manifest_path)
    assert loaded.mirrors == (dead,)

    found = origin.from_manifest(loaded, lookaside)
    assert found.version == UpstreamVersion("6.1", 5)
    assert found.origin == origin.ORIGIN_KERNEL_ORG
    assert found.topdir == "linux-6.1"
    assert [p.name for p in found.files] == ["linux-6.1.tar.xz", "patch-6.1.5.xz"]
    assert found.tarball == lookaside.path_for(entries[0])
    tree = upstream_tree.prepared_tree(found, tmp_path / "cache", SubprocessRunner())
    assert (tree / "Makefile").read_text() == makefile_text(6, 1, 5)

    # the identity is that of the listed digests: another patch gives another tree
    other = _xz_patch(
        tmp_path / "patch-6.1.5.xz", makefile_text(6, 1, 0), makefile_text(6, 1, 5) + "# changed\n"
    )
    entries[1] = lookaside.import_file(other)
    sources.write_sources(checkout / sources.SOURCES_NAME, entries)
    assert origin.from_manifest(loaded, lookaside).identity != found.identity


def test_from_manifest_refuses_an_unlisted_file(tmp_path, checkout, linux_61):
    lookaside = sources.Lookaside(tmp_path / "lookaside")
    sources.write_sources(checkout / sources.SOURCES_NAME, [lookaside.import_file(linux_61)])
    manifest_path = checkout / manifest.MANIFEST_NAME
    manifest_path.write_text(
        manifest_path.read_text().replace('  version: "6.1"\n', '  version: "6.1"\n  stable: 5\n')
    )
    with pytest.raises(InputError) as info:
        origin.from_manifest(manifest.load(manifest_path), lookaside)
    assert "patch-6.1.5.xz is not listed" in info.value.message
    assert str(checkout / sources.SOURCES_NAME) in info.value.message
