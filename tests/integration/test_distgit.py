"""Releasing through dist-git on the fake Linux tree: `kxen dist-git` into a checkout of a
package repository, the upstream tarball through dist-git's real upload.cgi, fedpkg's
download layout, and `rpmbuild -bs` in the exported checkout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .. import distgit, fakelinux, support
from .conftest import run_kxen
from .test_fakelinux import description_patch

NAME = "kernel-xen"
PACKAGE = f"{distgit.NAMESPACE}/{NAME}"
NVR = f"kernel-xen-{fakelinux.VERSION}-1.smoke"
TARBALL = fakelinux.TARBALL_NAME
PATCH = "0001-blkfront-description.patch"
DIST_GIT_FAILED = 15
LOOKASIDE_FAILED = 16
# rpkg's `sources` line (BSD style, as `sha512sum --tag` prints): HASHTYPE (file) = hash
RPKG_SOURCES_LINE = re.compile(r"^(?P<type>[^ ]+?) \((?P<file>[^ )]+?)\) = (?P<hash>[^ ]+?)$")


@dataclass(frozen=True)
class Release:
    server: distgit.DistGitServer
    repo: Path
    """The package's bare repository on the server (the dist-git)."""
    packaging: Path
    """The kernel-xen checkout kxen exports from (a git repository with one patch)."""
    cache: Path
    tarball: Path
    work: Path

    def clone(self, name: str) -> Path:
        target = self.work / name
        subprocess.run(["git", "clone", "-q", str(self.repo), str(target)], check=True)
        return target

    def kxen(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_kxen(
            *args, repo=self.packaging, cache=self.cache, check=check, env=support.GIT_IDENTITY
        )

    def export(self, checkout: Path, *extra: str, check: bool = True) -> Any:
        args = ("dist-git", checkout, "--flavour", "smoke", "--upstream", self.tarball)
        return self.kxen(*args, *extra, "--json", check=check)


def sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def state(checkout: Path) -> tuple[str, str, str]:
    """HEAD, the index and the work tree (tracked, untracked and ignored) as text."""
    head = support.git(checkout, "rev-parse", "-q", "--verify", "HEAD^{commit}") or ""
    index = support.git(checkout, "ls-files", "-s")
    files = support.git(checkout, "status", "--porcelain", "--ignored", "--untracked-files=all")
    return head, index, files


@pytest.fixture(scope="module")
def release(fake_linux: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    base = tmp_path_factory.mktemp("dist-git")
    with distgit.running(base / "server") as server:
        packaging = fakelinux.make_checkout(base / "packaging")
        support.git(packaging, "init", "-q")
        release = Release(
            server, server.add_package(NAME), packaging, base / "cache", fake_linux, base
        )
        release.kxen("patches", "add", description_patch(base))
        support.git(packaging, "add", "-A")
        support.git(packaging, "commit", "-q", "-m", "packaging")
        yield release


@pytest.fixture(scope="module")
def exported(release: Release) -> tuple[Path, dict[str, Any]]:
    """The first export, uploaded to the lookaside and pushed to the dist-git."""
    checkout = release.clone("first")
    run = release.export(checkout, "--upload", release.server.upload_url, "--name", PACKAGE)
    support.git(checkout, "push", "-q", "origin", "HEAD")
    return checkout, json.loads(run.stdout)


def test_export_commits_spec_configs_patches_and_sources(
    release: Release, exported: tuple[Path, dict[str, Any]]
) -> None:
    checkout, report = exported
    head = support.git(checkout, "rev-parse", "HEAD")
    assert report["commit"] == head and report["nvr"] == NVR
    message = support.git(checkout, "log", "-1", "--format=%B")
    kxen_commit = support.git(release.packaging, "rev-parse", "HEAD")
    assert message.splitlines()[0] == NVR
    assert f"kernel-xen commit {kxen_commit}." in message and f"NVR: {NVR}" in message
    configs = [f"kernel-{fakelinux.VERSION}-{arch}-smoke-xen.config" for arch in ("i686", "x86_64")]
    committed = support.git(checkout, "ls-tree", "--name-only", "HEAD").splitlines()
    expected = [".gitignore", ".kxen-export", *configs, PATCH, "kernel-xen.spec", "sources"]
    assert sorted(committed) == sorted(expected)
    assert state(checkout)[2] == ""  # the work tree is the commit
    rendered = release.work / "kxen.spec"
    release.kxen("spec", "--flavour", "smoke", "--upstream", release.tarball, "-o", rendered)
    assert (checkout / "kernel-xen.spec").read_text() == rendered.read_text()
    assert (checkout / PATCH).read_bytes() == (release.packaging / "patches" / PATCH).read_bytes()
    assert (checkout / ".gitignore").read_text() == f"/{TARBALL}\n"


def test_sources_file_is_in_rpkg_format(exported: tuple[Path, dict[str, Any]]) -> None:
    checkout, report = exported
    text = (checkout / "sources").read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    line = RPKG_SOURCES_LINE.match(text.rstrip("\n"))
    assert line is not None
    assert line["type"] == "SHA512" and line["file"] == TARBALL
    assert re.fullmatch(r"[0-9a-f]{128}", line["hash"])
    assert report["sources"] == [text.rstrip("\n")]


def test_upload_stores_the_tarball_and_skips_it_when_present(
    release: Release, exported: tuple[Path, dict[str, Any]]
) -> None:
    checkout, report = exported
    digest = sha512(release.tarball)
    assert report["uploads"] == [
        {"file": TARBALL, "sha512": digest, "sent": True, "size": release.tarball.stat().st_size}
    ]
    stored = release.server.stored(NAME, TARBALL, digest)
    assert stored.read_bytes() == release.tarball.read_bytes()
    before = stored.stat()
    uploads_before = release.server.log.read_text().count("Processing upload request")
    again = run_kxen(  # from the dist-git checkout: no kernel-xen checkout needed
        "lookaside", "upload", release.tarball, "--url", release.server.upload_url,
        "--name", PACKAGE, "--json", repo=checkout, cache=release.cache,
    )  # fmt: skip
    assert [u["sent"] for u in json.loads(again.stdout)["uploads"]] == [False]
    assert release.server.log.read_text().count("Processing upload request") == uploads_before
    assert stored.stat().st_ino == before.st_ino and stored.stat().st_mtime == before.st_mtime


def test_download_in_fedpkg_layout_and_rpmbuild_in_the_checkout(
    release: Release, exported: tuple[Path, dict[str, Any]]
) -> None:
    digest = sha512(release.tarball)
    url = f"{release.server.base_url}/{PACKAGE}/{TARBALL}/sha512/{digest}/{TARBALL}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == release.tarball.read_bytes()
    checkout = release.clone("built")
    planted = release.work / "planted.tar.xz"  # a link at the name: replaced, not followed
    planted.write_text("not yours\n")
    (checkout / TARBALL).symlink_to(planted)
    fetch = ("lookaside", "download", checkout, "--base", release.server.base_url)
    first = json.loads(release.kxen(*fetch, "--name", PACKAGE, "--json").stdout)
    assert first["files"] == [{"file": TARBALL, "sha512": digest, "downloaded": True}]
    assert not (checkout / TARBALL).is_symlink() and planted.read_text() == "not yours\n"
    assert (checkout / TARBALL).read_bytes() == release.tarball.read_bytes()
    again = json.loads(release.kxen(*fetch, "--name", PACKAGE, "--json").stdout)
    assert again["files"][0]["downloaded"] is False
    assert support.git(checkout, "status", "--porcelain") == ""  # the tarball is ignored
    srpms = release.work / "srpms"
    subprocess.run(
        ["rpmbuild", "-bs", "--define", f"_sourcedir {checkout}", "--define",
         f"_srcrpmdir {srpms}", str(checkout / "kernel-xen.spec")],
        check=True, capture_output=True,
    )  # fmt: skip
    kxen_srpm = release.kxen("srpm", "--flavour", "smoke", "--upstream", release.tarball, "-o",
                             release.work / "kxen-srpm", "--json")  # fmt: skip
    assert json.loads(kxen_srpm.stdout)["nvr"] == NVR
    assert [p.name for p in srpms.iterdir()] == [f"{NVR}.src.rpm"]


def test_download_refuses_a_tampered_file(
    release: Release, exported: tuple[Path, dict[str, Any]]
) -> None:
    checkout = release.clone("tampered")
    stored = release.server.stored(NAME, TARBALL, sha512(release.tarball))
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        run = release.kxen(
            "lookaside", "download", checkout, "--base", release.server.base_url, "--name",
            PACKAGE, check=False,
        )  # fmt: skip
    finally:
        stored.write_bytes(original)
    assert run.returncode == 3, run.stderr
    assert f"{TARBALL}: SHA512 mismatch" in run.stderr
    assert not (checkout / TARBALL).exists()
    assert [p.name for p in checkout.iterdir() if p.name.startswith(".kxen-untrusted")] == []


def test_export_again_is_unchanged_and_a_dropped_patch_is_removed(
    release: Release, exported: tuple[Path, dict[str, Any]]
) -> None:
    checkout = release.clone("second")
    head = support.git(checkout, "rev-parse", "HEAD")
    killed = checkout / ".git" / "kxen-dist-git-killed.kxen-tmp"  # what a killed export left
    (killed / "tree").mkdir(parents=True)
    os.utime(killed, (1_000_000_000, 1_000_000_000))
    same = json.loads(release.export(checkout).stdout)
    assert same["commit"] is None and support.git(checkout, "rev-parse", "HEAD") == head
    assert not killed.exists()
    assert any(f"removed {killed}" in warning for warning in same["warnings"])
    packaging = release.work / "packaging-without-patch"
    shutil.copytree(release.packaging, packaging)
    (packaging / "patches" / PATCH).unlink()
    (packaging / "patches" / "series").write_text("")
    run = run_kxen(
        "dist-git", checkout, "--flavour", "smoke", "--upstream", release.tarball, "--json",
        repo=packaging, cache=release.cache, env=support.GIT_IDENTITY,
    )  # fmt: skip
    report = json.loads(run.stdout)
    assert report["removed"] == [PATCH]
    assert support.git(checkout, "rev-parse", "HEAD~1") == head
    assert not (checkout / PATCH).exists()
    assert PATCH not in (checkout / ".kxen-export").read_text()
    assert "-dirty" in support.git(checkout, "log", "-1", "--format=%B")


def test_dirty_checkout_is_refused(release: Release, exported: tuple[Path, Any]) -> None:
    checkout = release.clone("dirty")
    (checkout / "notes.txt").write_text("mine\n")
    before = state(checkout)
    run = release.export(checkout, check=False)
    assert run.returncode == DIST_GIT_FAILED, run.stderr
    error = json.loads(run.stdout)["error"]
    assert "1 uncommitted change(s)" in error and "notes.txt" in error
    assert len(run.stderr.strip().splitlines()) == 1
    assert state(checkout) == before
    assert (checkout / "notes.txt").read_text() == "mine\n"


def test_failed_upload_leaves_the_checkout_unchanged(
    release: Release, exported: tuple[Path, Any]
) -> None:
    """The lookaside refuses (no such package): nothing is committed or written."""
    checkout = release.clone("refused")
    (checkout / "README.md").write_text("kernel-xen dist-git\n")
    support.git(checkout, "add", "README.md")
    support.git(checkout, "commit", "-q", "-m", "readme")
    before = state(checkout)
    run = release.export(
        checkout, "--upload", release.server.upload_url, "--name", "rpms/nosuch", check=False
    )
    assert run.returncode == LOOKASIDE_FAILED, run.stderr
    assert 'HTTP 404: Module "rpms/nosuch" does not exist!' in run.stderr
    assert state(checkout) == before
    assert not list((checkout / ".git").glob("kxen-dist-git-*"))


def test_export_replaces_a_symlink_instead_of_writing_through_it(
    release: Release, exported: tuple[Path, Any]
) -> None:
    checkout = release.clone("symlinked")
    outside = release.work / "outside.spec"
    outside.write_text("not yours\n")
    (checkout / "kernel-xen.spec").unlink()
    (checkout / "kernel-xen.spec").symlink_to(outside)
    support.git(checkout, "add", "kernel-xen.spec")
    support.git(checkout, "commit", "-q", "-m", "a link")
    release.export(checkout)
    assert outside.read_text() == "not yours\n"
    assert not (checkout / "kernel-xen.spec").is_symlink()
    assert (checkout / "kernel-xen.spec").read_text().startswith("#")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--upload", "http://127.0.0.1:1/x", "--name", "rpms/k;rm -rf ~"), 2, "package name"),
        (("--upload", "file:///etc/passwd"), 2, "expected an http:// or https:// URL"),
    ],
)
def test_hostile_options_are_refused(
    release: Release, exported: tuple[Path, Any], args: tuple[str, ...], code: int, message: str
) -> None:
    checkout = release.clone(f"hostile-{code}-{len(message)}")
    before = state(checkout)
    run = release.export(checkout, *args, check=False)
    assert run.returncode == code, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert state(checkout) == before


def test_not_the_top_of_a_work_tree_is_refused(
    release: Release, exported: tuple[Path, Any]
) -> None:
    checkout = release.clone("nested")
    (checkout / "sub").mkdir()
    run = release.export(checkout / "sub", check=False)
    assert run.returncode == DIST_GIT_FAILED, run.stderr
    assert "not the top of a git work tree" in run.stderr
    assert state(checkout)[2] == ""


def test_patch_leading_outside_the_packaging_checkout_is_refused(
    release: Release, exported: tuple[Path, Any]
) -> None:
    checkout = release.clone("outside-patch")
    packaging = release.work / "packaging-outside-patch"
    shutil.copytree(release.packaging, packaging)
    outside = release.work / "outside.patch"
    shutil.copy2(packaging / "patches" / PATCH, outside)
    (packaging / "patches" / PATCH).unlink()
    (packaging / "patches" / PATCH).symlink_to(outside)
    before = state(checkout)
    run = run_kxen(
        "dist-git", checkout, "--flavour", "smoke", "--upstream", release.tarball,
        repo=packaging, cache=release.cache, env=support.GIT_IDENTITY, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "leads outside the checkout" in run.stderr
    assert state(checkout) == before


def test_commit_git_refuses_leaves_the_checkout_unchanged(
    release: Release, exported: tuple[Path, Any]
) -> None:
    """git refuses to make the commit (no committer name): every file was staged, nothing
    of the checkout changed."""
    checkout = release.clone("no-identity")
    packaging = release.work / "packaging-other-release"
    shutil.copytree(release.packaging, packaging)
    manifest = packaging / "kernel-xen.yaml"
    manifest.write_text(manifest.read_text().replace("release: 1", "release: 2", 1))
    before = state(checkout)
    anonymous = {**support.GIT_IDENTITY, "GIT_COMMITTER_NAME": "", "GIT_AUTHOR_NAME": ""}
    run = run_kxen(
        "dist-git", checkout, "--flavour", "smoke", "--upstream", release.tarball,
        repo=packaging, cache=release.cache, env=anonymous, check=False,
    )  # fmt: skip
    assert run.returncode == DIST_GIT_FAILED, run.stderr
    assert "git commit-tree failed" in run.stderr
    assert state(checkout) == before
    assert not list((checkout / ".git").glob("kxen-dist-git-*"))


def test_a_second_export_into_a_checkout_being_exported_is_refused(
    release: Release, exported: tuple[Path, Any]
) -> None:
    from kxen.support.fsutil import exclusive_lock

    checkout = release.clone("locked")
    before = state(checkout)
    with exclusive_lock(checkout / ".git" / "kxen-dist-git.lock", "an export"):
        run = release.export(checkout, check=False)
    assert run.returncode == 7, run.stderr
    assert f"is locked by PID {os.getpid()}" in run.stderr
    assert state(checkout) == before


def test_upload_over_https_with_a_client_certificate(release: Release, tmp_path: Path) -> None:
    """As Fedora's lookaside: TLS, and the CGI knows the uploader by the client
    certificate's CN; a server certificate kxen cannot verify fails at once."""
    from ..kojihub.pki import Pki

    pki = Pki.create(tmp_path / "pki")
    server_tls = pki.hub_tls()
    tls = (server_tls.cert, server_tls.key, pki.ca)
    with distgit.running(tmp_path / "tls-server", tls) as server:
        server.add_package(NAME)
        upload = ("lookaside", "upload", release.tarball, "--url", server.upload_url,
                  "--name", PACKAGE, "--cert", pki.client_pem("releng"))  # fmt: skip
        unverified = release.kxen(*upload, check=False)
        assert unverified.returncode == LOOKASIDE_FAILED, unverified.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
        sent = json.loads(release.kxen(*upload, "--ca", pki.ca, "--json").stdout)
        assert [u["sent"] for u in sent["uploads"]] == [True]
        assert "[username=releng] Stored" in server.log.read_text()
        stored = server.stored(NAME, TARBALL, sha512(release.tarball))
        assert stored.read_bytes() == release.tarball.read_bytes()
