"""Releasing through dist-git: the SCM URLs koji builds, the `sources` and `.gitignore`
kxen writes, the names and URLs of the lookaside."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from kxen.build.backends import kojiclient
from kxen.errors import DistGitError, InputError
from kxen.release import distgit, lookaside
from kxen.upstream.sources import SourceEntry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "ab" * 64


# --- what koji builds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "commit"),
    [
        (f"git://pkgs.example.org/rpms/kernel-xen.git#{COMMIT}", None),
        ("git://pkgs.example.org/rpms/kernel-xen.git", COMMIT),
        (f"git://pkgs.example.org/rpms/kernel-xen.git#{COMMIT}", COMMIT),
        ("git+https://pkgs.example.org/git/rpms/kernel-xen.git", COMMIT[:12]),
        ("git+rsync://pkgs.example.org/rpms/kernel-xen.git", COMMIT),
    ],
)
def test_dist_git_url_as_fedpkg_build_submits_it(url: str, commit: str | None) -> None:
    formed = kojiclient.dist_git_url(url, commit)
    base = url.split("#")[0]
    assert formed == f"{base}#{commit or COMMIT}"


@pytest.mark.parametrize(
    ("url", "commit", "message"),
    [
        (f"git+file:///srv/git/rpms/kernel-xen.git#{COMMIT}", None, "kojid refuses git+file://"),
        (f"file:///srv/kernel-xen.git#{COMMIT}", None, "koji fetches anonymously"),
        (f"ssh://pkgs.example.org/rpms/kernel-xen.git#{COMMIT}", None, "koji fetches anon"),
        (f"https://pkgs.example.org/rpms/kernel-xen.git#{COMMIT}", None, "git+https://"),
        ("git://pkgs.example.org/rpms/kernel-xen.git", None, "name the commit to build"),
        (f"git://pkgs.example.org/k.git#{COMMIT}", "fedcba9", "names commit"),
        ("git://pkgs.example.org/k.git#master", None, "expected a commit hash"),
        (f"git://pkgs.example.org/k.git;touch /tmp/x#{COMMIT}", None, "shell character"),
        (f"git://pkgs.example.org/k.git\n#{COMMIT}", None, "whitespace"),
        ("git://#" + COMMIT, None, "koji fetches anonymously"),
    ],
)
def test_dist_git_url_refusals(url: str, commit: str | None, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        kojiclient.dist_git_url(url, commit)


def test_scm_url_of_this_checkout_refuses_git_file(tmp_path: Path) -> None:
    from kxen.support.runner import SubprocessRunner

    with pytest.raises(InputError, match=r"kojid refuses git\+file://"):
        kojiclient.scm_url(tmp_path, SubprocessRunner(), "git+file:///srv/kernel-xen.git", COMMIT)
    formed = kojiclient.scm_url(tmp_path, SubprocessRunner(), "https://h/k.git#old", COMMIT)
    assert formed == f"git+https://h/k.git#{COMMIT}"


# --- what the dist-git checkout holds -------------------------------------------------------


def test_sources_lines_are_rpkgs_sha512_format(tmp_path: Path) -> None:
    tarball = tmp_path / "linux-6.1.192.tar.xz"
    tarball.write_bytes(b"tar")
    digest = hashlib.sha512(b"tar").hexdigest()
    files = [distgit.LookasideFile(tarball.name, tarball, digest)]
    assert distgit.sources_text(files) == f"SHA512 (linux-6.1.192.tar.xz) = {digest}\n"


def test_gitignore_keeps_earlier_lines_and_adds_each_file_once(tmp_path: Path) -> None:
    new = distgit.LookasideFile("linux-6.2.tar.xz", tmp_path / "x", DIGEST)
    old = distgit.LookasideFile("linux-6.1.tar.xz", tmp_path / "y", DIGEST)
    assert distgit.gitignore_text(None, [new]) == "/linux-6.2.tar.xz\n"
    previous = "/linux-6.1.tar.xz\n*.rpm\n"
    assert distgit.gitignore_text(previous, [old, new]) == (
        "/linux-6.1.tar.xz\n*.rpm\n/linux-6.2.tar.xz\n"
    )


def test_export_record_round_trip_ignores_what_is_not_a_plain_name() -> None:
    text = distgit.record_text(["kernel-xen.spec", "0001-a.patch"])
    assert distgit.parse_record(text) == ["0001-a.patch", "kernel-xen.spec"]
    hostile = "../../etc/passwd\n.git/config\nsources\n-rf\nok.patch\n"
    assert distgit.parse_record(hostile) == ["ok.patch"]
    assert distgit.parse_record(None) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "sources", ".gitignore", "-x", "a b", "$(x)"])
def test_exported_names_are_plain_and_not_the_dist_gits_own(tmp_path: Path, name: str) -> None:
    with pytest.raises(DistGitError, match="not a plain name"):
        distgit.check_names([distgit.Blob(name, tmp_path / "f")], [])


def test_two_exported_files_of_one_name_are_refused(tmp_path: Path) -> None:
    blob = distgit.Blob("linux-6.1.tar.xz", tmp_path / "f")
    upstream = distgit.LookasideFile("linux-6.1.tar.xz", tmp_path / "g", DIGEST)
    with pytest.raises(DistGitError, match="two exported files"):
        distgit.check_names([blob], [upstream])


# --- the lookaside's names and URLs ----------------------------------------------------------


def test_download_url_is_fedpkgs_layout() -> None:
    url = lookaside.download_url("https://pkgs.example.org/repo/pkgs/", "rpms/kernel-xen",
                                 "linux-6.1.tar.xz", DIGEST)  # fmt: skip
    assert url == (
        "https://pkgs.example.org/repo/pkgs/rpms/kernel-xen/linux-6.1.tar.xz/sha512/"
        f"{DIGEST}/linux-6.1.tar.xz"
    )


@pytest.mark.parametrize("name", ["", "../kernel", "rpms/../x", "a/b/c", "k;rm", "k x", "/k"])
def test_lookaside_package_names_are_allowlisted(name: str) -> None:
    with pytest.raises(InputError, match="package name"):
        lookaside.check_name(name)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://h/x", "http://", "http://h/a b", "http://h/\x1b[2J"]
)
def test_lookaside_urls_are_http(url: str) -> None:
    with pytest.raises(InputError):
        lookaside.check_url(url, "lookaside upload URL")


def test_download_takes_sha512_entries_only(tmp_path: Path) -> None:
    """The lookaside is addressed by SHA512: another hash is refused before any request."""
    entry = SourceEntry("SHA256", "linux-6.1.tar.xz", "ab" * 32)
    with pytest.raises(InputError, match="SHA512 only"):
        lookaside.download_sources("http://127.0.0.1:1/repo/pkgs", "rpms/k", [entry], tmp_path)
    assert list(tmp_path.iterdir()) == []
