"""Hostile names (issue 12): file names, directories and manifest values that are shell or
rpm code, or that rpm refuses, through the real `kxen` command line.

A user's tarball ships as `linux-<version>.tar.<compression>` and unpacks into
`linux-<version>` whatever it and its top directory are called; a path rpm would expand
is refused before any work; a manifest value rpm refuses is refused with its line.
"""

from __future__ import annotations

import io
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from .. import fakelinux
from ..support import REPO
from ..unit.conftest import kernel_makefile, line_number, write_tarball
from .harness import Case, Scene, Setup, run_case
from .injection import (
    HOSTILE_TARBALL_NAMES,
    HOSTILE_TOP_DIRECTORY,
    prep_from_srpm,
    srpm_payload,
    traces,
)

CANONICAL = "linux-6.1.5.tar.xz"
PLAIN = "{tmp}/" + CANONICAL
"""A tarball with an innocent name, for cases about something else."""
SPEC_OUT = "{tmp}/kernel-xen.spec"


@pytest.fixture(scope="module")
def fake_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake tree's tarball (tests/fakelinux.py): kxen builds it for real in seconds."""
    return fakelinux.pack(tmp_path_factory.mktemp("fake-kernel"))


def tarball(name: str, top: str = HOSTILE_TOP_DIRECTORY) -> Setup:
    """A tiny kernel 6.1.5 tarball called `name` in the scene's tmp dir."""

    def setup(scene: Scene) -> None:
        members = {f"{top}/Makefile": kernel_makefile(6, 1, 5).encode(), f"{top}/README": b"x\n"}
        write_tarball(scene.tmp / name, members)

    return setup


def copy_of(tarball: Path, name: str) -> Setup:
    def setup(scene: Scene) -> None:
        shutil.copyfile(tarball, scene.tmp / name)

    return setup


def edit_manifest(old: str, new: str) -> Setup:
    def setup(scene: Scene) -> None:
        path = scene.checkout / "kernel-xen.yaml"
        text = path.read_text()
        assert old in text, f"{old!r} is not in the shipped manifest any more"
        path.write_text(text.replace(old, new, 1))

    return setup


def rpmspec_parse(spec: Path, scene: Scene) -> str:
    """`rpmspec -P` from the scene's tmp dir (where a relative `touch` would land)."""
    result = subprocess.run(
        ["rpmspec", "-P", "--define", "_sourcedir /nonexistent", "--define", "dist %{nil}", spec],
        capture_output=True,
        text=True,
        cwd=scene.tmp,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- a tarball's name and top directory never reach the spec -------------------------


@pytest.mark.parametrize("name", HOSTILE_TARBALL_NAMES.values(), ids=HOSTILE_TARBALL_NAMES.keys())
def test_a_hostile_tarball_name_renders_as_kxen_s_own(scene: Scene, name: str) -> None:
    case = Case(
        "spec",
        ("spec", "--upstream", "{tmp}/" + name, "-o", SPEC_OUT),
        0,
        "",
        setup=tarball(name),
    )
    outcome = run_case(case, scene)
    assert outcome.payload["nvr"] == "kernel-xen-6.1.5-1"
    text = Path(scene.expand(SPEC_OUT)).read_text()
    assert f"Source0: {CANONICAL}\n" in text
    assert "%setup -q -T -n linux-6.1.5 -c\n" in text
    assert name not in text
    assert HOSTILE_TOP_DIRECTORY not in text
    assert "Source0: linux-6.1.5.tar.xz" in rpmspec_parse(Path(scene.expand(SPEC_OUT)), scene)
    assert not traces(scene.tmp)


@pytest.mark.parametrize("key", ["pipe", "newline", "leading-dash"])
def test_verrel_reads_a_hostile_tarball(scene: Scene, key: str) -> None:
    name = HOSTILE_TARBALL_NAMES[key]
    case = Case("verrel", ("verrel", "--upstream", "{tmp}/" + name), 0, "", setup=tarball(name))
    assert run_case(case, scene).payload["nvr"] == "kernel-xen-6.1.5-1"


def test_a_top_directory_with_spaces_is_not_the_build_directory(scene: Scene) -> None:
    case = Case(
        "top-directory",
        ("spec", "--upstream", PLAIN, "-o", SPEC_OUT),
        0,
        "",
        setup=tarball(CANONICAL, top="linux 6.1 (copy)"),
    )
    run_case(case, scene)
    text = Path(scene.expand(SPEC_OUT)).read_text()
    assert "%setup -q -T -n linux-6.1.5 -c\n" in text
    assert "(copy)" not in text
    rpmspec_parse(Path(scene.expand(SPEC_OUT)), scene)


# --- end to end on the fake tree: the SRPM and the build -----------------------------

FAKE = "linux-6.1.192.tar.xz"


# Every name is rendered through the CLI above and built into an SRPM whose %prep runs in
# tests/unit/test_srpm.py; here the whole command, for the names that would run a command
# in each place a name used to reach (a pipeline, a quoted word, an option, a macro).
END_TO_END = ("pipe", "single-quote", "newline", "leading-dash", "percent")


@pytest.mark.parametrize("key", END_TO_END)
def test_the_srpm_ships_a_hostile_tarball_under_kxen_s_name(
    fake_scene: Scene, fake_kernel: Path, key: str
) -> None:
    scene, name = fake_scene, HOSTILE_TARBALL_NAMES[key]
    case = Case(
        "srpm",
        ("srpm", "--upstream", "{tmp}/" + name, "-o", "{tmp}/out"),
        0,
        "",
        setup=copy_of(fake_kernel, name),
    )
    outcome = run_case(case, scene)
    # the original name and path stay in the JSON record, and only there
    recorded = outcome.payload["upstream"]
    assert isinstance(recorded, dict)
    assert recorded["files"] == [name]
    assert Path(recorded["tarball"]) == (scene.tmp / name).resolve()
    srpm = Path(str(outcome.payload["srpm"]))
    assert srpm_payload(srpm) == [
        "kernel-6.1.192-i686-xen.config",
        "kernel-6.1.192-x86_64-xen.config",
        "kernel-xen.spec",
        FAKE,
    ]
    prep = prep_from_srpm(srpm, scene.tmp / "rebuild")
    assert prep.returncode == 0, prep.stderr
    assert not traces(scene.tmp)


@pytest.mark.parametrize("key", ["pipe", "newline", "leading-dash"])
def test_a_local_build_of_a_hostile_tarball_runs_nothing(
    fake_scene: Scene, fake_kernel: Path, key: str
) -> None:
    scene, name = fake_scene, HOSTILE_TARBALL_NAMES[key]
    case = Case(
        "local",
        ("local", "--arch", "x86_64", "--upstream", "{tmp}/" + name, "--results", "{tmp}/results"),
        0,
        "",
        setup=copy_of(fake_kernel, name),
    )
    run_case(case, scene)
    arch_dir = scene.tmp / "results" / "kernel-xen-6.1.192-1" / "x86_64"
    assert (arch_dir / "kernel-xen-6.1.192-1.x86_64.rpm").is_file()
    record = json.loads((arch_dir / "kxen-result.json").read_text())
    assert record["upstream"]["files"] == [name]
    assert not traces(scene.tmp)


def test_the_srpm_of_a_tarball_whose_top_directory_has_spaces(
    fake_scene: Scene, fake_kernel: Path
) -> None:
    case = Case(
        "top-directory",
        ("srpm", "--upstream", "{tmp}/" + FAKE, "-o", "{tmp}/out"),
        0,
        "",
        setup=retopped(fake_kernel, "linux 6.1 (copy) $(touch pwned)", FAKE),
    )
    outcome = run_case(case, fake_scene)
    assert FAKE in srpm_payload(Path(str(outcome.payload["srpm"])))
    assert not traces(fake_scene.tmp.parent)  # the cache (its extracted tree) included


def retopped(tarball: Path, top: str, name: str) -> Setup:
    """A copy of `tarball` (xz) called `name` whose top directory is `top`."""

    def setup(scene: Scene) -> None:
        renamed = io.BytesIO()
        with tarfile.open(tarball) as source, tarfile.open(fileobj=renamed, mode="w") as target:
            for member in source:
                data = source.extractfile(member) if member.isfile() else None
                member.name = top + member.name.removeprefix(fakelinux.TOPDIR)
                target.addfile(member, data)
        (scene.tmp / name).write_bytes(lzma.compress(renamed.getvalue()))

    return setup


# --- paths rpm would expand are refused before any work -----------------------------

HOSTILE_DIRECTORY = "{tmp}/%(touch {canary})"
PATH_CASES = [
    Case(
        "srpm-outdir",
        ("srpm", "--upstream", PLAIN, "-o", HOSTILE_DIRECTORY),
        2,
        "rpm expands or splits paths holding '%'",
        setup=tarball(CANONICAL),
    ),
    Case(
        "local-workdir",
        ("local", "--arch", "x86_64", "--upstream", PLAIN, "--workdir", HOSTILE_DIRECTORY),
        2,
        "rpmbuild's _topdir and kbuild take it unquoted",
        setup=tarball(CANONICAL),
    ),
    Case(
        "local-results",
        ("local", "--arch", "x86_64", "--upstream", PLAIN, "--results", HOSTILE_DIRECTORY),
        2,
        "%(touch ",  # refused as the build area or, with /dev/shm building, as the SRPM's
        setup=tarball(CANONICAL),
    ),
    Case(
        "local-workdir-with-spaces",
        ("local", "--arch", "x86_64", "--upstream", PLAIN, "--workdir", "{tmp}/build area"),
        2,
        "only letters, digits and . _ + @ / - are allowed",
        setup=tarball(CANONICAL),
    ),
]


@pytest.mark.parametrize("case", PATH_CASES, ids=[case.id for case in PATH_CASES])
def test_a_path_rpm_would_expand_is_refused(scene: Scene, case: Case) -> None:
    run_case(case, scene)
    assert not list(scene.tmp.rglob("*.src.rpm"))


# --- manifest values rpm refuses, and control characters in free text ---------------

MANIFEST = (REPO / "kernel-xen.yaml").read_text()
CHANGE = "      - Build the Xen domU kernel from upstream paravirt_ops as a separate package\n"
CHANGE_LINE = line_number(MANIFEST, CHANGE.strip())
AUTHOR = "    author: kernel-xen maintainers <kernel-xen@lists.example.org>\n"
AUTHOR_LINE = line_number(MANIFEST, AUTHOR.strip())
SUMMARY = "summary: The Linux kernel for Xen paravirt_ops domU guests\n"
MANIFEST_CASES = [
    Case(
        "name-double-dot",
        ("spec", "-o", SPEC_OUT),
        2,
        "kernel-xen.yaml:3: name: invalid value 'a..b'",
        setup=edit_manifest("name: kernel-xen\n", "name: a..b\n"),
    ),
    Case(
        "name-leading-dot",
        ("spec", "-o", SPEC_OUT),
        2,
        "kernel-xen.yaml:3: name: invalid value '.kernel-xen'",
        setup=edit_manifest("name: kernel-xen\n", "name: .kernel-xen\n"),
    ),
    Case(
        "name-trailing-dash",
        ("spec", "-o", SPEC_OUT),
        2,
        "kernel-xen.yaml:3: name: invalid value 'kernel-xen-'",
        setup=edit_manifest("name: kernel-xen\n", "name: kernel-xen-\n"),
    ),
    Case(
        "buildid-double-dot",
        ("spec", "-o", SPEC_OUT),
        2,
        "buildid: invalid value '.a..b'",
        setup=edit_manifest("release: 1\n", "release: 1\nbuildid: .a..b\n"),
    ),
    Case(
        "changelog-nul",
        ("spec", "-o", SPEC_OUT),
        2,
        f"kernel-xen.yaml:{CHANGE_LINE}: changelog[0].changes[0]: invalid value 'Build\\x00",
        setup=edit_manifest(CHANGE, '      - "Build\\0 the Xen domU kernel"\n'),
    ),
    Case(
        "changelog-escape",
        ("spec", "-o", SPEC_OUT),
        2,
        f"kernel-xen.yaml:{CHANGE_LINE}: changelog[0].changes[0]: invalid value",
        setup=edit_manifest(CHANGE, '      - "Build \\e[2J the Xen domU kernel"\n'),
    ),
    Case(
        "author-nul",
        ("spec", "-o", SPEC_OUT),
        2,
        f"kernel-xen.yaml:{AUTHOR_LINE}: changelog[0].author: invalid value",
        setup=edit_manifest(AUTHOR, '    author: "kernel-xen\\0 <kernel-xen@lists.example.org>"\n'),
    ),
    Case(
        "summary-tab",
        ("spec", "-o", SPEC_OUT),
        2,
        "kernel-xen.yaml:4: summary: invalid value",
        setup=edit_manifest(SUMMARY, 'summary: "The\\tLinux kernel for Xen"\n'),
    ),
]


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=[case.id for case in MANIFEST_CASES])
def test_a_manifest_value_rpm_refuses_is_refused_with_its_line(scene: Scene, case: Case) -> None:
    run_case(case, scene)
    assert not Path(scene.expand(SPEC_OUT)).exists()
