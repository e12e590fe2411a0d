from __future__ import annotations

import pytest
import rpm
from kxen.versions import UTS_RELEASE_MAX, UpstreamVersion, from_makefile, kernel_release

# text, base, stable, rc, git
PARSED = [
    ("2.6.25", "2.6.25", None, None, None),
    ("2.6.25-rc8", "2.6.25", None, 8, None),
    ("2.6.25-rc8-git3", "2.6.25", None, 8, 3),
    ("2.6.24.4", "2.6.24", 4, None, None),
    ("2.6.24-git15", "2.6.24", None, None, 15),
    ("6.1", "6.1", None, None, None),
    ("6.1.192", "6.1", 192, None, None),
    ("6.2-rc3", "6.2", None, 3, None),
    ("6.0-rc1", "6.0", None, 1, None),
    ("3.0-rc2", "3.0", None, 2, None),
]


@pytest.mark.parametrize(("text", "base", "stable", "rc", "git"), PARSED)
def test_parse_and_str_round_trip(text, base, stable, rc, git):
    version = UpstreamVersion.parse(text)
    assert (version.base, version.stable, version.rc, version.git) == (base, stable, rc, git)
    assert str(version) == text
    assert UpstreamVersion.parse(str(version)) == version


def test_parse_ignores_surrounding_whitespace():
    assert UpstreamVersion.parse(" 6.1.192\n") == UpstreamVersion("6.1", 192)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "6",
        "6.1.",
        "v6.1",
        "6.1-rc",
        "6.1-rc3-",
        "6.1-git3-rc2",
        "6.1.0",  # a stable update starts at 1
        "6.1.5-rc1",  # stable and rc at once
        "2.6",
        "2.4.37",
        "1.0",
        "6.1 .2",
        "6.1.192; rm -rf /",
        "%(touch x)",
    ],
)
def test_invalid_versions_are_refused(text):
    with pytest.raises(ValueError):
        UpstreamVersion.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": "6"},
        {"base": "6.1.2"},
        {"base": "2.4.1"},
        {"base": "6.1", "stable": 0},
        {"base": "6.1", "stable": 2, "rc": 1},
    ],
)
def test_constructor_refuses_inconsistent_versions(kwargs):
    with pytest.raises(ValueError):
        UpstreamVersion(**kwargs)


# version -> kernel.org paths (relative to pub/linux/kernel/) of its files, tarball first
KERNEL_ORG = [
    ("2.6.24", ["v2.6/linux-2.6.24.tar.bz2"]),
    ("2.6.24.4", ["v2.6/linux-2.6.24.tar.bz2", "v2.6/patch-2.6.24.4.bz2"]),
    ("2.6.25-rc8", ["v2.6/linux-2.6.24.tar.bz2", "v2.6/testing/patch-2.6.25-rc8.bz2"]),
    (
        "2.6.25-rc8-git3",
        [
            "v2.6/linux-2.6.24.tar.bz2",
            "v2.6/testing/patch-2.6.25-rc8.bz2",
            "v2.6/snapshots/patch-2.6.25-rc8-git3.bz2",
        ],
    ),
    ("2.6.24-git15", ["v2.6/linux-2.6.24.tar.bz2", "v2.6/snapshots/patch-2.6.24-git15.bz2"]),
    ("6.1", ["v6.x/linux-6.1.tar.xz"]),
    ("6.1.192", ["v6.x/linux-6.1.tar.xz", "v6.x/patch-6.1.192.xz"]),
    ("6.2-rc3", ["v6.x/linux-6.1.tar.xz", "v6.x/testing/patch-6.2-rc3.xz"]),
    ("6.0-rc1", ["v5.x/linux-5.19.tar.xz", "v6.x/testing/patch-6.0-rc1.xz"]),
]


@pytest.mark.parametrize(("text", "paths"), KERNEL_ORG)
def test_files_and_kernel_org_paths(text, paths):
    version = UpstreamVersion.parse(text)
    assert list(version.files) == [path.rsplit("/", 1)[1] for path in paths]
    assert version.tarball == version.files[0]
    assert [version.path_of(name) for name in version.files] == paths


@pytest.mark.parametrize(
    ("text", "tarball", "topdir"),
    [
        ("6.0-rc1", "linux-5.19.tar.xz", "linux-5.19"),
        ("3.0-rc2", "linux-2.6.39.tar.bz2", "linux-2.6.39"),
        ("4.0-rc1", "linux-3.19.tar.xz", "linux-3.19"),
        ("5.0-rc1", "linux-4.20.tar.xz", "linux-4.20"),
        ("6.2-rc3", "linux-6.1.tar.xz", "linux-6.1"),
        ("2.6.25-rc8", "linux-2.6.24.tar.bz2", "linux-2.6.24"),
        ("6.1.192", "linux-6.1.tar.xz", "linux-6.1"),
    ],
)
def test_rc_patches_apply_to_the_previous_release(text, tarball, topdir):
    version = UpstreamVersion.parse(text)
    assert version.tarball == tarball
    assert version.tarball_topdir == topdir


def test_path_of_refuses_a_foreign_file():
    version = UpstreamVersion.parse("6.1.192")
    with pytest.raises(ValueError, match="not an upstream file"):
        version.path_of("linux-6.2.tar.xz.sig")


# version, build number, rpm Version, rpm Release
RPM = [
    ("6.1", 1, "6.1.0", "1"),
    ("6.1.192", 3, "6.1.192", "3"),
    ("6.2-rc3", 1, "6.2.0", "0.1.rc3"),
    ("6.2-rc3", 7, "6.2.0", "0.7.rc3"),
    ("6.0-rc1", 2, "6.0.0", "0.2.rc1"),
    ("2.6.25-rc8-git3", 4, "2.6.25", "0.4.rc8.git3"),
    ("2.6.25", 1, "2.6.25", "1"),
    ("2.6.24.4", 2, "2.6.24.4", "2"),
    ("2.6.24-git15", 1, "2.6.25", "0.1.rc0.git15"),
]


@pytest.mark.parametrize(("text", "build", "version", "release"), RPM)
def test_rpm_version_and_release(text, build, version, release):
    upstream = UpstreamVersion.parse(text)
    assert upstream.rpm_version == version
    assert upstream.rpm_release(build) == release


@pytest.mark.parametrize(
    ("text", "extraversion"),
    [("2.6.24.4", ".4"), ("2.6.25-rc8", ""), ("6.1.192", ""), ("6.2-rc3", "")],
)
def test_makefile_extraversion(text, extraversion):
    assert UpstreamVersion.parse(text).makefile_extraversion == extraversion


def _evr(text: str, build: int) -> tuple[str, str, str]:
    version = UpstreamVersion.parse(text)
    return ("0", version.rpm_version, version.rpm_release(build))


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        # the natural order of one release cycle: each step must be an rpm upgrade
        (("2.6.25-rc8", 1), ("2.6.25-rc8-git3", 2)),
        (("2.6.25-rc8-git3", 2), ("2.6.25", 1)),
        (("2.6.25-rc8", 1), ("2.6.25", 1)),
        (("2.6.24", 1), ("2.6.24-git15", 1)),
        (("2.6.24-git15", 1), ("2.6.25-rc1", 1)),
        (("2.6.24.4", 1), ("2.6.25-rc1", 1)),
        (("6.1", 1), ("6.1.192", 1)),
        (("6.1.192", 1), ("6.2-rc1", 1)),
        (("6.2-rc1", 1), ("6.2-rc3", 1)),
        (("6.2-rc3", 1), ("6.2-rc3", 2)),
        (("6.2-rc3", 9), ("6.2", 1)),
        (("6.2", 1), ("6.2", 2)),
        (("6.2", 3), ("6.2.1", 1)),
    ],
)
def test_rpm_ordering_follows_the_release_cycle(older, newer):
    assert rpm.labelCompare(_evr(*older), _evr(*newer)) == -1
    assert rpm.labelCompare(_evr(*newer), _evr(*older)) == 1


@pytest.mark.parametrize(
    ("text", "release", "arch", "expected"),
    [
        ("6.1.192", "1", "x86_64", "6.1.192-1.x86_64+xen"),
        ("6.1", "1.local", "i686", "6.1.0-1.local.i686+xen"),
        ("6.2-rc3", "0.1.rc3", "x86_64", "6.2.0-0.1.rc3.x86_64+xen"),
        ("2.6.24.4", "2", "i686", "2.6.24.4-2.i686+xen"),
        ("2.6.25-rc8-git3", "0.4.rc8.git3", "i686", "2.6.25-0.4.rc8.git3.i686+xen"),
    ],
)
def test_kernel_release(text, release, arch, expected):
    assert kernel_release(UpstreamVersion.parse(text), release, arch) == expected


def test_kernel_release_limit_is_64_characters():
    version = UpstreamVersion.parse("6.1.192")
    fixed = len("6.1.192-") + len(".x86_64+xen")
    longest = "1" * (UTS_RELEASE_MAX - fixed)
    assert len(kernel_release(version, longest, "x86_64")) == 64
    with pytest.raises(ValueError, match="65 characters; the limit is 64"):
        kernel_release(version, longest + "1", "x86_64")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ((6, 1, 192, ""), "6.1.192"),
        ((6, 1, 0, ""), "6.1"),
        ((6, 2, 0, "-rc3"), "6.2-rc3"),
        ((2, 6, 24, ".4"), "2.6.24.4"),
        ((2, 6, 24, ""), "2.6.24"),
        ((2, 6, 25, "-rc8-git3"), "2.6.25-rc8-git3"),
        ((3, 0, 0, "-rc2"), "3.0-rc2"),
    ],
)
def test_from_makefile(makefile_text, fields, expected):
    assert from_makefile(makefile_text(*fields)) == UpstreamVersion.parse(expected)


def test_from_makefile_accepts_no_spaces_around_equals():
    assert from_makefile("VERSION=6\nPATCHLEVEL=1\nSUBLEVEL=5\n") == UpstreamVersion("6.1", 5)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "VERSION = 6\nPATCHLEVEL = 1\n",
        "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = x\n",
        "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION = -foo\n",
    ],
)
def test_from_makefile_refuses_what_is_not_a_kernel_version(text):
    with pytest.raises(ValueError):
        from_makefile(text)


# Fedora packages of the paravirt_ops transition and today (name-version-release without
# %{?dist}), with the upstream version and build number they were made from.
FEDORA_NVRS = [
    ("kernel-xen", "2.6.21", 2950, "kernel-xen-2.6.21-2950"),  # Fedora 8's kernel-xen
    ("kernel", "2.6.24.4", 64, "kernel-2.6.24.4-64"),  # Fedora 8 update
    ("kernel", "2.6.25", 14, "kernel-2.6.25-14"),  # Fedora 9 GA, first pv_ops kernel-xen era
    ("kernel", "2.6.25-rc8-git3", 4, "kernel-2.6.25-0.4.rc8.git3"),
    ("kernel", "2.6.26-rc0-git0", 1, None),  # not a kernel.org version: refused
    ("kernel", "6.1.5", 200, "kernel-6.1.5-200"),  # Fedora 37 update
    ("kernel", "6.2-rc3", 1, "kernel-6.2.0-0.1.rc3"),
]


@pytest.mark.parametrize(("name", "text", "build", "nvr"), FEDORA_NVRS)
def test_fedora_nvrs(name, text, build, nvr):
    if nvr is None:
        with pytest.raises(ValueError):
            UpstreamVersion.parse(text)
        return
    version = UpstreamVersion.parse(text)
    assert f"{name}-{version.rpm_version}-{version.rpm_release(build)}" == nvr


def test_a_stable_branch_snapshot_is_no_prerelease_of_the_next_update():
    """6.1.5-git2: linux-6.1.y two commits past v6.1.5; it reports 6.1.5 and sorts after
    6.1.5's release (1.git2 > 1), not among 6.2's prereleases."""
    version = UpstreamVersion.parse("6.1.5-git2")
    assert version.stable_snapshot and not version.prerelease
    assert (version.kernelversion, version.rpm_release(1)) == ("6.1.5", "1.git2")
    assert version.makefile_version == UpstreamVersion("6.1", 5)
    assert version.snapshot_levels is None
