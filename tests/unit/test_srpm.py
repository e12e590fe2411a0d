"""The SRPM ships every source under the name its spec declares, and rpm never sees a path
it would expand: hostile file names and directories neither run nor break anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from kxen import manifest, pipeline
from kxen.build import spec, srpm
from kxen.build.backends.local import LocalBackend, check_build_area
from kxen.errors import ExitCode, InputError
from kxen.support.runner import SubprocessRunner
from kxen.upstream import origin

from ..hostile.injection import (
    HOSTILE_TARBALL_NAMES,
    HOSTILE_TOP_DIRECTORY,
    prep_from_srpm,
    srpm_payload,
    traces,
)


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The working directory, where a hostile name's `touch pwned` would land."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def prepared(tmp_path, checkout, make_tarball, makefile_text):
    """What `pipeline.prepare` hands the SRPM build, for a local tarball called `name`."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")

    def make(name: str) -> pipeline.Prepared:
        given = tmp_path / "given"
        given.mkdir()
        members = {
            f"{HOSTILE_TOP_DIRECTORY}/Makefile": makefile_text(6, 1, 5).encode(),
            f"{HOSTILE_TOP_DIRECTORY}/README": b"Linux\n",
        }
        local = origin.from_tarball(make_tarball(given / name, members), tmp_path / "cache")
        loaded = manifest.load(checkout / manifest.MANIFEST_NAME)
        inputs = spec.SpecInputs(
            manifest=loaded,
            upstream=local,
            flavour="default",
            buildid="",
            patches=(),
            config_names=spec.config_names(loaded, local, "default"),
            local_tarball_sha512=local.tarball_sha512,
        )
        configs = tmp_path / "configs"
        configs.mkdir()
        config_files = [configs / config for config in inputs.config_names]
        for path in config_files:
            path.write_text("CONFIG_XEN=y\n")
        text = spec.render(inputs, checkout / "specs")
        return pipeline.Prepared(local, inputs, text, tuple(config_files))

    return make


def _build(prepared: pipeline.Prepared, outdir: Path) -> Path:
    return srpm.build_srpm(
        "kernel-xen.spec", prepared.spec_text, prepared.sources, outdir, SubprocessRunner()
    )


@pytest.mark.parametrize("name", HOSTILE_TARBALL_NAMES.values(), ids=HOSTILE_TARBALL_NAMES.keys())
def test_a_hostile_tarball_ships_under_its_canonical_name_and_prep_runs_nothing(
    tmp_path, prepared, scratch, name
):
    built = _build(prepared(name), tmp_path / "out")
    assert srpm_payload(built) == [
        "kernel-6.1.5-i686-xen.config",
        "kernel-6.1.5-x86_64-xen.config",
        "kernel-xen.spec",
        "linux-6.1.5.tar.xz",
    ]
    result = prep_from_srpm(built, tmp_path / "rebuild")
    assert result.returncode == 0, result.stderr
    tree = tmp_path / "rebuild" / "BUILD" / "linux-6.1.5"
    assert (tree / "README").read_text() == "Linux\n"
    assert "EXTRAVERSION = -1.x86_64+xen\n" in (tree / "Makefile").read_text()
    assert not traces(scratch)


def test_an_srpm_directory_rpm_would_expand_is_refused_before_rpmbuild(tmp_path, prepared, scratch):
    outdir = tmp_path / f"out%(touch {tmp_path}/pwned)"
    with pytest.raises(InputError) as info:
        _build(prepared("linux-6.1.5.tar.xz"), outdir)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert str(outdir) in info.value.message
    assert not traces(scratch)
    assert not (tmp_path / "out%(touch ").exists()


def test_control_check_rpmbuild_itself_expands_its_working_directory(tmp_path, scratch):
    """Why the check exists: rpmbuild -bs run inside such a directory runs the command."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    top = tmp_path / "%(touch pwned)"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS" / "t.spec").write_text(
        "Name: t\nVersion: 1\nRelease: 1\nSummary: t\nLicense: MIT\n%description\nt\n"
    )
    subprocess.run(
        ["rpmbuild", "-bs", "--define", "_topdir .", "SPECS/t.spec"],
        cwd=top,
        capture_output=True,
        check=False,
    )
    assert traces(scratch)


def test_an_srpm_directory_with_spaces_is_fine(tmp_path, prepared, scratch):
    built = _build(prepared("linux-6.1.5.tar.xz"), tmp_path / "my srpms (new)")
    assert built.parent == tmp_path / "my srpms (new)"
    assert "linux-6.1.5.tar.xz" in srpm_payload(built)


@pytest.mark.parametrize("name", ["../linux.tar.xz", "a/b", "a b", ".hidden", "-x", "a..b", ""])
def test_sources_ship_only_under_plain_names(tmp_path, name):
    source = tmp_path / "file"
    source.write_text("x")
    with pytest.raises(InputError, match="not a plain name"):
        srpm.build_srpm(
            "kernel-xen.spec", "", [srpm.Source(name, source)], tmp_path / "out", SubprocessRunner()
        )
    assert not (tmp_path / "out").exists()


def test_two_sources_of_one_name_are_refused(tmp_path):
    source = tmp_path / "file"
    source.write_text("x")
    twice = [srpm.Source("linux-6.1.tar.xz", source)] * 2
    with pytest.raises(InputError, match=r"two sources would ship as linux-6\.1\.tar\.xz"):
        srpm.build_srpm("kernel-xen.spec", "", twice, tmp_path / "out", SubprocessRunner())


@pytest.mark.parametrize(
    "path",
    [
        "/srv/%(touch x)",
        "/srv/%{lua:x}",
        "/srv/it's",
        '/srv/a"b',
        "/srv/a\\b",
        "/srv/a\nb",
        "/a\x00",
    ],
)
def test_paths_rpm_would_not_take_literally_are_refused(path):
    with pytest.raises(InputError, match="rpm expands or splits"):
        srpm.check_rpm_path(Path(path), "-o")


@pytest.mark.parametrize("name", ["%(touch x)", "a b", "a:b", "it's", "$(x)", "a;b", "a\nb"])
def test_a_build_area_rpmbuild_or_kbuild_would_split_is_refused_before_any_work(tmp_path, name):
    work_root = tmp_path / name
    backend = LocalBackend(SubprocessRunner(), work_root)
    with pytest.raises(InputError) as info:
        backend.check_host(["x86_64"])
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert repr(str(work_root)) in info.value.message
    assert "--workdir" in info.value.message
    assert not work_root.exists()


@pytest.mark.parametrize(
    "work_root", ["/dev/shm", "/home/user/kernel-xen/results", "/srv/first.last@corp/k_x+1"]
)
def test_ordinary_build_areas_pass(work_root):
    check_build_area(Path(work_root))  # a check of the name only: nothing is created
