"""The CLI's contract on small inputs: sources, new-sources, verrel, exit codes, --json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from kxen.manifest import load
from kxen.upstream.sources import parse_sources

from ..support import REPO
from .conftest import run_kxen


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, bytes]:
    """A file:// mirror laid out like kernel.org, holding a stand-in linux-6.1.tar.xz."""
    root = tmp_path / "mirror"
    (root / "v6.x").mkdir(parents=True)
    payload = b"not really a kernel, but bytes with a known digest\n" * 1000
    (root / "v6.x" / "linux-6.1.tar.xz").write_bytes(payload)
    return root, payload


def _point_at(checkout: Path, mirror_root: Path, digest: str) -> None:
    manifest = checkout / "kernel-xen.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "https://cdn.kernel.org/pub/linux/kernel/", f"file://{mirror_root}/"
        )
    )
    (checkout / "sources").write_text(f"SHA512 (linux-6.1.tar.xz) = {digest}\n")


def test_shipped_sources_list_exactly_the_manifest_upstream_files() -> None:
    manifest = load(REPO / "kernel-xen.yaml")
    listed = [entry.filename for entry in parse_sources(REPO / "sources")]
    assert listed == list(manifest.upstream.files)


def test_sources_downloads_once_then_reuses_the_cache(
    checkout: Path, mirror: tuple[Path, bytes], tmp_path: Path
) -> None:
    root, payload = mirror
    _point_at(checkout, root, hashlib.sha512(payload).hexdigest())
    cache = tmp_path / "cache"
    first = json.loads(run_kxen("sources", "--json", repo=checkout, cache=cache).stdout)
    assert first["sources"][0]["downloaded"] is True
    assert Path(first["sources"][0]["path"]).read_bytes() == payload
    (root / "v6.x" / "linux-6.1.tar.xz").unlink()  # a second download would now fail
    second = json.loads(run_kxen("sources", "--json", repo=checkout, cache=cache).stdout)
    assert second["sources"][0]["downloaded"] is False


def test_sources_mismatch_names_file_and_both_hashes_and_caches_nothing(
    checkout: Path, mirror: tuple[Path, bytes], tmp_path: Path
) -> None:
    root, payload = mirror
    wrong = "0" * 128
    _point_at(checkout, root, wrong)
    cache = tmp_path / "cache"
    run = run_kxen("sources", repo=checkout, cache=cache, check=False)
    assert run.returncode == 3
    assert "linux-6.1.tar.xz" in run.stderr
    assert wrong in run.stderr and hashlib.sha512(payload).hexdigest() in run.stderr
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_new_sources_imports_and_rewrites_sources(checkout: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "linux-6.1.tar.xz"
    tarball.write_bytes(b"local upstream bytes")
    run = run_kxen("new-sources", tarball, repo=checkout, cache=tmp_path / "cache")
    digest = hashlib.sha512(b"local upstream bytes").hexdigest()
    assert (checkout / "sources").read_text() == f"SHA512 (linux-6.1.tar.xz) = {digest}\n"
    assert digest in run.stdout
    cached = tmp_path / "cache" / "lookaside" / "sha512" / digest / "linux-6.1.tar.xz"
    assert cached.read_bytes() == b"local upstream bytes"


def test_verrel_prints_fedora_style_nvr(checkout: Path, tmp_path: Path) -> None:
    assert run_kxen("verrel", repo=checkout, cache=tmp_path).stdout.strip() == "kernel-xen-6.1.0-1"
    data = json.loads(
        run_kxen(
            "verrel",
            "--flavour",
            "smoke",
            "--buildid",
            ".local",
            "--json",
            repo=checkout,
            cache=tmp_path,
        ).stdout
    )
    assert data["nvr"] == "kernel-xen-6.1.0-1.local.smoke"
    assert data["kernel_release"]["i686"] == "6.1.0-1.local.smoke.i686+xen"


def test_bad_manifest_is_exit_2_with_field_path(checkout: Path, tmp_path: Path) -> None:
    manifest = checkout / "kernel-xen.yaml"
    manifest.write_text(
        manifest.read_text().replace('version: "6.1"', 'version: "6.1"\n  stable: x')
    )
    run = run_kxen("verrel", "--json", repo=checkout, cache=tmp_path, check=False)
    assert run.returncode == 2
    assert "kernel-xen.yaml:11: upstream.stable: expected an integer" in run.stderr
    assert json.loads(run.stdout)["exit_code"] == 2


def test_unknown_flavour_and_arch_are_input_errors(checkout: Path, tmp_path: Path) -> None:
    run = run_kxen("verrel", "--flavour", "huge", repo=checkout, cache=tmp_path, check=False)
    assert run.returncode == 2 and "unknown flavour 'huge'" in run.stderr
    run = run_kxen("local", "--arch", "ppc64le", repo=checkout, cache=tmp_path, check=False)
    assert run.returncode == 2 and "unknown arch 'ppc64le'" in run.stderr
