"""Hostile kernel tarballs beyond their names (reliability row 5): links that only leave the
tree once resolved through other links of the archive, members written through a symlink,
hard links to symlinks, loops, and setuid/setgid/sticky members.

Every refused archive names the archive and the member (exit 2) and leaves nothing in the
cache; an accepted one is extracted without any privileged mode bit.
"""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from ..unit.conftest import kernel_makefile
from .harness import Case, Scene, run_case

TOP = "linux-6.1.192"
TARBALL = "{tmp}/linux-6.1.192.tar"
GENERATE = ("config", "generate", "--arch", "x86_64", "--flavour", "default",
            "--upstream", TARBALL, "-o", "{tmp}/out")  # fmt: skip
FAKE_KBUILD = """
# kbuild's config targets as kxen drives them (make -C TREE O=DIR ARCH=A target)
olddefconfig:
\t@cat Kconfig >> $(O)/.config
allnoconfig:
\t@cat $(KCONFIG_ALLCONFIG) Kconfig > $(O)/.config
"""


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(f"{TOP}/{name}" if name else TOP)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def _dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    return _member(name, tarfile.DIRTYPE, mode=mode)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    return _member(name, tarfile.SYMTYPE, target, 0o777)


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    return _member(name, tarfile.LNKTYPE, f"{TOP}/{target}")


def _tarball(*members: tarfile.TarInfo):
    """A setup writing a kernel tarball: the top dir, its Makefile, then `members` in this
    order (no implicit parent directories: the order is part of the attack)."""

    def setup(scene: Scene) -> None:
        makefile = (kernel_makefile(6, 1, 192) + FAKE_KBUILD).encode()
        with tarfile.open(scene.tmp / "linux-6.1.192.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_dir(""))
            for name, data in (("Makefile", makefile), ("Kconfig", b"CONFIG_FAKE=y\n")):
                info = _member(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for member in members:
                tar.addfile(member, io.BytesIO(b"x" * member.size))

    return setup


def _refused(id: str, member: str, why: str, *members: tarfile.TarInfo) -> Case:
    return Case(id, GENERATE, 2, f"member '{TOP}/{member}' {why}", _tarball(*members),
                absent=("{tmp}/out",))  # fmt: skip


CASES = [
    # a -> top itself (fine alone); b -> a/.. is the directory the archive is extracted in
    _refused("chained-dotdot", "b", "is a symlink to 'a/..', which resolves outside",
             _symlink("a", f"../{TOP}"), _symlink("b", "a/..")),
    # the link that redirects comes after the one that goes through it
    _refused("later-link-redirects", "use", "is a symlink to 'via/..', which resolves outside",
             _symlink("use", "via/.."), _symlink("via", ".")),
    _refused("loop", "a", "is a symlink to 'b', which goes round a loop of symlinks",
             _symlink("a", "b"), _symlink("b", "a")),
    _refused("member-through-symlink", "lnk/Kconfig", "lies under the symlink "
             f"'{TOP}/lnk'", _dir("sub"), _symlink("lnk", "sub"), _member("lnk/Kconfig")),
    _refused("symlink-over-a-directory", "d", "appears twice, once as a symlink",
             _dir("d"), _symlink("d", "sub")),
    # h is the symlink's own inode in another directory: '../../x' from the top leaves it
    _refused("hardlink-to-a-symlink", "h", "is a hard link to",
             _dir("a"), _dir("a/b"), _symlink("a/b/l", "../../x"), _hardlink("h", "a/b/l")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_tarball_extracts_nothing(case: Case, scene: Scene) -> None:
    outcome = run_case(case, scene)
    assert str(outcome.payload["error"]).startswith(f"{scene.tmp}/linux-6.1.192.tar: member ")
    trees = scene.cache / "trees"
    assert not trees.exists() or all(p.name.endswith(".lock") for p in trees.iterdir())


SETUID = Case("setuid-member", GENERATE, 0, "", _tarball(
    _dir("tools"), _member("tools/helper", mode=0o4755), _member("tools/group", mode=0o2755),
    _dir("tmp", 0o1777)))  # fmt: skip


def test_setuid_setgid_and_sticky_bits_are_not_extracted(scene: Scene) -> None:
    run_case(SETUID, scene)
    (tree,) = (scene.cache / "trees").glob(f"*/{TOP}")
    modes = {
        str(path.relative_to(tree)): stat.S_IMODE(path.lstat().st_mode)
        for path in [tree, *tree.rglob("*")]
    }
    assert not [name for name, mode in modes.items() if mode & 0o7000], modes
    assert modes["tools/helper"] == modes["tools/group"] == 0o755
    assert Path(scene.tmp / "out").is_dir()
