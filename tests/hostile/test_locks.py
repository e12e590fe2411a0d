"""Lock files that are symlinks (reliability row 16): refused, their targets untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from kxen.upstream import origin

from .harness import Case, Scene, run_case
from .test_inputs import TARBALL, tiny_tarball

PRECIOUS = "{tmp}/precious"


def _plant(where: str) -> object:
    def setup(scene: Scene) -> None:
        tiny_tarball(scene)
        (scene.tmp / "precious").write_text("keep me\n")
        identity = origin.from_tarball(scene.tmp / "linux-6.1.192.tar.xz", scene.cache).identity
        lock = scene.cache / where.format(identity=identity)
        lock.parent.mkdir(parents=True)
        lock.symlink_to(scene.tmp / "precious")

    return setup


GENERATE = ("config", "generate", "--arch", "x86_64", "--flavour", "smoke",
            "--upstream", TARBALL, "-o", "{tmp}/out")  # fmt: skip
CASES = [
    Case("source-tree-lock", GENERATE, 2, "the lock file is a symbolic link",
         _plant("trees/{identity}.lock"), unchanged=(PRECIOUS,), absent=("{tmp}/out",)),
    Case("kconfig-lock", GENERATE, 2, "the lock file is a symbolic link",
         _plant("kconfig/{identity}/kconfig-x86_64.lock"), unchanged=(PRECIOUS,),
         absent=("{tmp}/out",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_lock_files_are_never_followed(case: Case, scene: Scene) -> None:
    run_case(case, scene)
    assert Path(scene.expand(PRECIOUS)).read_text() == "keep me\n"
