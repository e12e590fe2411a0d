"""`kxen sources` with detached signatures, end to end with real gpg and gpgv.

A tiny real tarball named like kernel.org's is served from a file:// mirror laid out
like kernel.org (v6.x/), its real SHA512 is in the checkout's `sources` and the pinned
key is exported into the checkout's keys/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..signing import GpgHome, Keys, files_under, kernel_tar, sha512
from .conftest import kxen_command

NAME = "linux-6.1.tar.xz"
SIGN = "linux-6.1.tar.sign"

MANIFEST = """\
name: kernel-xen
summary: The Linux kernel for Xen paravirt_ops domU guests
upstream:
  version: "6.1"
  mirrors: [{mirror}]
{signatures}release: 1
arches: [i686, x86_64]
flavours: [default, smoke]
changelog:
  - date: 2026-11-25
    author: Test <t@example.org>
    changes: [Signature tests]
"""


class Scene:
    """A scratch checkout, a kernel.org-like file:// mirror and a kxen cache."""

    def __init__(self, root: Path, checkout: Path, keys: Keys) -> None:
        self.root = root
        self.checkout = checkout
        self.keys = keys
        self.mirror = root / "mirror"
        self.published = self.mirror / "v6.x"
        self.published.mkdir(parents=True)
        self.cache = root / "cache"
        self.tar, self.tar_xz = kernel_tar(root / "upstream", "6.1")
        (checkout / "keys" / f"{keys.pinned}.asc").write_text(keys.gpg.armored(keys.pinned))

    @property
    def lookaside(self) -> Path:
        return self.cache / "lookaside"

    def declare(self, signed: bool = True, pins: tuple[str, ...] | None = None) -> None:
        block = ""
        if signed:
            pinned = ", ".join(pins or (self.keys.pinned,))
            block = (
                "  signatures:\n"
                f"    - file: {NAME}\n"
                f"      signature: {SIGN}\n"
                f"      keys: [{pinned}]\n"
            )
        text = MANIFEST.format(mirror=f"file://{self.mirror}/", signatures=block)
        (self.checkout / "kernel-xen.yaml").write_text(text)

    def publish(self, tar_xz: Path, signature: Path | None) -> None:
        """Put the file (and its signature) on the mirror and its SHA512 in `sources`."""
        data = signature.read_bytes() if signature is not None else None
        shutil.copyfile(tar_xz, self.published / NAME)
        (self.published / SIGN).unlink(missing_ok=True)
        if data is not None:
            (self.published / SIGN).write_bytes(data)
        (self.checkout / "sources").write_text(f"SHA512 ({NAME}) = {sha512(tar_xz)}\n")

    def sign(self, key: str, data: Path) -> Path:
        return self.keys.gpg.sign(key, data, self.root / f"{data.name}.{key[:8]}.sign")

    def kxen(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        argv, full_env = kxen_command(*args, "--json", repo=self.checkout, cache=self.cache)
        full_env.update(env or {})
        run = subprocess.run(argv, capture_output=True, text=True, env=full_env, check=False)
        assert run.stdout, run.stderr
        return run.returncode, json.loads(run.stdout)

    def cached_file(self) -> Path:
        return self.lookaside / "sha512" / sha512(self.published / NAME) / NAME


@pytest.fixture
def scene(tmp_path: Path, checkout: Path, keys: Keys) -> Scene:
    return Scene(tmp_path, checkout, keys)


def _refused(scene: Scene, env: dict[str, str] | None = None) -> str:
    """Run `kxen sources`, expect exit 3 and an unchanged cache; return the message."""
    before = files_under(scene.cache)
    code, out = scene.kxen("sources", env=env)
    assert (code, out["ok"], out["exit_code"]) == (3, False, 3), out
    assert files_under(scene.cache) == before
    assert not list(scene.cache.rglob(".untrusted-*"))
    message: str = out["error"]
    assert message.startswith(f"{NAME}: "), message
    assert "\n" not in message
    return message


def test_good_signature_passes_and_the_file_is_cached(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar))
    code, out = scene.kxen("sources")
    assert code == 0, out
    [row] = out["sources"]
    assert (row["file"], row["downloaded"]) == (NAME, True)
    cached = Path(row["path"])
    assert cached == scene.cached_file()
    assert cached.read_bytes() == scene.tar_xz.read_bytes()
    assert (cached.parent / SIGN).read_bytes() == (scene.published / SIGN).read_bytes()
    record = json.loads((cached.parent / f"{NAME}.verified.json").read_text())
    assert record["signer"] == scene.keys.pinned

    # the kept signature and its record serve the next run, even with the mirror gone
    shutil.rmtree(scene.mirror)
    code, out = scene.kxen("sources")
    assert code == 0, out
    assert [(r["path"], r["downloaded"]) for r in out["sources"]] == [(str(cached), False)]


def test_signature_over_the_compressed_file_is_refused_with_the_hint(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar_xz))
    message = _refused(scene)
    assert f"{SIGN} was made over the compressed file" in message
    assert "kernel.org signs the uncompressed tar" in message
    assert f"xz -dc {NAME} | gpgv {SIGN} -" in message
    assert files_under(scene.lookaside) == {}


def test_signature_by_an_unpinned_key_names_its_fingerprint(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.other, scene.tar))
    message = _refused(scene)
    assert f"made by key {scene.keys.other}, which is not pinned" in message
    assert scene.keys.pinned in message  # what is pinned instead
    assert files_under(scene.lookaside) == {}


def test_tampered_tarball_is_a_bad_signature(scene):
    signature = scene.sign(scene.keys.pinned, scene.tar)
    _, tampered = kernel_tar(scene.root / "tampered", "6.1", note=" (with a backdoor)")
    scene.declare()
    scene.publish(tampered, signature)  # its own SHA512 in `sources`: the digest passes
    message = _refused(scene)
    assert f"BAD signature {SIGN} from pinned key {scene.keys.pinned[-16:]}" in message
    assert files_under(scene.lookaside) == {}


def test_a_failure_leaves_an_older_good_cached_copy_untouched(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar))
    assert scene.kxen("sources")[0] == 0
    good = scene.cached_file()
    kept = files_under(scene.cache)
    assert len(kept) == 3  # the file, its signature and the record

    _, tampered = kernel_tar(scene.root / "tampered", "6.1", note=" (tampered)")
    scene.publish(tampered, scene.published / SIGN)
    assert "BAD signature" in _refused(scene)
    assert files_under(scene.cache) == kept
    assert good.read_bytes() == scene.tar_xz.read_bytes()


def test_user_gnupghome_that_trusts_the_signer_changes_nothing(scene, tmp_path):
    """The unpinned signer is fully trusted in the user's GNUPGHOME (keyring, ownertrust
    and gpgv's trustedkeys.kbx) and in ~/.gnupg: kxen still refuses it."""
    home = tmp_path / "home"
    user = GpgHome(home / ".gnupg")
    try:
        exported = tmp_path / "other.asc"
        exported.write_text(scene.keys.gpg.armored(scene.keys.other))
        user.gpg("--import", exported)
        user.gpg("--import-ownertrust", _ownertrust(tmp_path, scene.keys.other))
        user.gpg("--no-default-keyring", "--keyring", "trustedkeys.kbx", "--import", exported)
        scene.declare()
        signature = scene.sign(scene.keys.other, scene.tar)
        check = subprocess.run(
            ["gpgv", "--homedir", str(user.home), str(signature), str(scene.tar)],
            capture_output=True,
            check=False,
        )
        assert check.returncode == 0, "the user's own gpgv accepts this signature"
        scene.publish(scene.tar_xz, signature)
        env = {"GNUPGHOME": str(user.home), "HOME": str(home)}
        message = _refused(scene, env=env)
        assert f"made by key {scene.keys.other}, which is not pinned" in message
        assert files_under(scene.lookaside) == {}
    finally:
        user.close()


def _ownertrust(directory: Path, fingerprint: str) -> Path:
    path = directory / "ownertrust.txt"
    path.write_text(f"{fingerprint}:6:\n")  # 6 = ultimate
    return path


def test_copy_cached_before_the_signature_was_declared_is_verified_before_use(scene):
    scene.declare(signed=False)
    scene.publish(scene.tar_xz, scene.sign(scene.keys.other, scene.tar))
    code, out = scene.kxen("sources")
    assert code == 0, out
    cached = scene.cached_file()
    assert files_under(scene.lookaside) == {str(cached.relative_to(scene.lookaside)): _stat(cached)}

    scene.declare()  # now pinned: the mirror's signature is by another key
    message = _refused(scene)
    assert f"made by key {scene.keys.other}, which is not pinned" in message

    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar))
    code, out = scene.kxen("sources")
    assert code == 0, out
    assert [(r["path"], r["downloaded"]) for r in out["sources"]] == [(str(cached), False)]
    assert (cached.parent / SIGN).is_file()
    assert (cached.parent / f"{NAME}.verified.json").is_file()


def _stat(path: Path) -> tuple[int, int]:
    return path.stat().st_size, path.stat().st_mtime_ns


def test_pinned_key_file_is_required(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar))
    (scene.checkout / "keys" / f"{scene.keys.pinned}.asc").unlink()
    code, out = scene.kxen("sources")
    assert code == 2, out
    assert (
        f"upstream.signatures[0].keys: {scene.checkout}/keys/{scene.keys.pinned}.asc"
        in (out["error"])
    )
    assert "no such key file" in out["error"]
    assert files_under(scene.cache) == {}


def test_local_upstream_tarball_is_not_signature_checked(scene):
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.other, scene.tar))  # would be refused
    spec = scene.root / "kernel-xen.spec"
    code, out = scene.kxen("spec", "-o", str(spec))
    assert (code, out["exit_code"]) == (3, 3), out
    assert "not pinned" in out["error"]
    assert not spec.exists()

    code, out = scene.kxen("spec", "--upstream", str(scene.tar_xz), "-o", str(spec))
    assert code == 0, out
    # recorded as a local tarball instead
    assert f"# Local tarball: {NAME}, SHA512 {sha512(scene.tar_xz)}" in spec.read_text()
    assert files_under(scene.lookaside) == {}


@pytest.mark.parametrize("variable", ["GNUPGHOME", "HOME"])
def test_environment_does_not_leak_into_the_check(scene, variable, tmp_path):
    """An unusable GNUPGHOME or HOME (no such directory) does not break a good check."""
    scene.declare()
    scene.publish(scene.tar_xz, scene.sign(scene.keys.pinned, scene.tar))
    code, out = scene.kxen("sources", env={variable: str(tmp_path / "nonexistent")})
    assert code == 0, out
    assert os.path.isfile(out["sources"][0]["path"])
