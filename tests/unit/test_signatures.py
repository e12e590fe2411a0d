"""Signature rules in the manifest, pinned key files, gpgv status lines and the
lookaside cache with a verifier, with real gpg keys and gpgv."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest
from kxen import manifest
from kxen.errors import ExitCode, InputError, MissingToolError, SourceError
from kxen.support.runner import Completed, Running, SubprocessRunner
from kxen.upstream import signatures
from kxen.upstream.sources import Lookaside, SourceEntry

from ..signing import Keys, files_under, kernel_tar, sha512

BASE = """\
name: kernel-xen
summary: The Linux kernel for Xen domU guests
upstream:
  version: "{version}"
  mirrors: [{mirror}]
{signatures}release: 1
arches: [i686, x86_64]
flavours: [default]
changelog:
  - date: 2026-11-25
    author: Jane Doe <jane@example.org>
    changes: [Test]
"""
FPR_A = "647F28654894E3BD457199BE38DBBDC86092693E"
FPR_B = "ABAF11C65A2970B130ABE3C479BE3E4300411886"


def _manifest_text(
    rule: str = f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A}]\n",
    version: str = "6.1",
    mirror: str = "https://cdn.kernel.org/pub/linux/kernel/",
) -> str:
    block = f"  signatures:\n{rule}" if rule else ""
    return BASE.format(version=version, mirror=mirror, signatures=block)


def _load(root: Path, text: str) -> manifest.Manifest:
    path = root / manifest.MANIFEST_NAME
    path.write_text(text)
    return manifest.load(path)


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as info:
        _load(tmp_path, text)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    return info.value.message


# --- the manifest ------------------------------------------------------------


def test_rules_are_read_with_kernel_org_signature_names(tmp_path, line_of):
    rules = (
        f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A}, {FPR_B}]\n"
        "    - file: patch-6.1.192.xz\n      signature: patch-6.1.192.sign\n"
        f"      keys: [{FPR_A}]\n"
    )
    text = _manifest_text(rules).replace('version: "6.1"\n', 'version: "6.1"\n  stable: 192\n')
    loaded = _load(tmp_path, text)
    first, second = loaded.signatures
    assert (first.file, first.signature, first.keys) == (
        "linux-6.1.tar.xz",
        "linux-6.1.tar.sign",
        (FPR_A, FPR_B),
    )
    line = line_of(text, "- file: linux-6.1.tar.xz")
    assert first.where == f"{tmp_path / manifest.MANIFEST_NAME}:{line}: upstream.signatures[0]"
    assert (second.file, second.signature) == ("patch-6.1.192.xz", "patch-6.1.192.sign")
    assert loaded.signature_rule("patch-6.1.192.xz") == second
    assert loaded.signature_rule("linux-6.2.tar.xz") is None
    assert _load(tmp_path, _manifest_text("")).signatures == ()


def test_2_6_era_default_signature_name(tmp_path):
    rule = f"    - file: linux-2.6.25.tar.bz2\n      keys: [{FPR_A}]\n"
    [loaded] = _load(tmp_path, _manifest_text(rule, version="2.6.25")).signatures
    assert loaded.signature == "linux-2.6.25.tar.sign"


@pytest.mark.parametrize(
    ("rule", "field", "problem"),
    [
        (
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A}]\n      sig: x.sign\n",
            "upstream.signatures[0].sig",
            "unknown key",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A.lower()}]\n",
            "upstream.signatures[0].keys[0]",
            f"invalid value '{FPR_A.lower()}': expected a 40-hex-digit OpenPGP fingerprint",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A[:-1]}]\n",
            "upstream.signatures[0].keys[0]",
            "invalid value",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A}, {FPR_A}]\n",
            "upstream.signatures[0].keys",
            "has non-unique elements",
        ),
        ("    - file: linux-6.1.tar.xz\n      keys: []\n", "upstream.signatures[0].keys", ""),
        ("    - file: linux-6.1.tar.xz\n", "upstream.signatures[0]", "'keys' is required"),
        (
            f"    - file: linux-6.2.tar.xz\n      keys: [{FPR_A}]\n",
            "upstream.signatures[0].file",
            "linux-6.2.tar.xz is not an upstream file of 6.1 (its files: linux-6.1.tar.xz)",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_A}]\n"
            f"    - file: linux-6.1.tar.xz\n      keys: [{FPR_B}]\n",
            "upstream.signatures[1].file",
            "linux-6.1.tar.xz already has a signature rule",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      signature: linux-6.1.tar.xz\n"
            f"      keys: [{FPR_A}]\n",
            "upstream.signatures[0].signature",
            "invalid signature file name 'linux-6.1.tar.xz'",
        ),
        (
            f"    - file: linux-6.1.tar.xz\n      signature: ../x.sign\n      keys: [{FPR_A}]\n",
            "upstream.signatures[0].signature",
            "invalid value '../x.sign'",
        ),
    ],
)
def test_bad_rules_are_refused_with_the_field_path(tmp_path, line_of, rule, field, problem):
    text = _manifest_text(rule)
    message = _refusal(tmp_path, text)
    where, _, rest = message.partition(": ")
    assert where.startswith(f"{tmp_path / manifest.MANIFEST_NAME}:")
    line = int(where.rsplit(":", 1)[1])
    assert line >= line_of(text, "signatures:")
    assert rest.startswith(f"{field}: "), message
    assert problem in rest


# --- pinned key files ----------------------------------------------------------


def _key_file(root: Path, name: str, text: str) -> Path:
    path = root / "keys" / f"{name}.asc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_dearmor_matches_gpg_and_finds_the_fingerprint(keys):
    armored = keys.gpg.armored(keys.pinned)
    binary = signatures.dearmor(armored)
    assert binary == keys.gpg.gpg("--export", keys.pinned)
    assert signatures.primary_fingerprints(binary) == [keys.pinned]


def test_dearmor_refuses_damage(keys):
    armored = keys.gpg.armored(keys.pinned)
    lines = armored.splitlines()
    crc_index = next(i for i, line in enumerate(lines) if line.startswith("="))
    body_index = crc_index - 1
    flipped = lines[body_index][:-2] + ("AA" if lines[body_index][-2:] != "AA" else "BB")
    damaged = "\n".join([*lines[:body_index], flipped, *lines[body_index + 1 :]])
    with pytest.raises(ValueError, match=r"checksum does not match|truncated|base64"):
        signatures.primary_fingerprints(signatures.dearmor(damaged))
    with pytest.raises(ValueError, match="not an ASCII-armored public key block"):
        signatures.dearmor("hello\n")
    with pytest.raises(ValueError, match="more than one key block"):
        signatures.dearmor(armored + armored)


def test_load_key(tmp_path, keys):
    _key_file(tmp_path, keys.pinned, keys.gpg.armored(keys.pinned))
    data = signatures.load_key(tmp_path, keys.pinned, "where")
    assert signatures.primary_fingerprints(data) == [keys.pinned]


def test_key_file_must_hold_exactly_the_pinned_key(tmp_path, keys):
    path = _key_file(tmp_path, keys.pinned, keys.gpg.armored(keys.other))
    with pytest.raises(InputError) as info:
        signatures.load_key(tmp_path, keys.pinned, "where")
    assert info.value.message == f"{path}: holds key {keys.other}, not {keys.pinned}"
    both = keys.gpg.gpg("--armor", "--export", keys.pinned, keys.other).decode()
    _key_file(tmp_path, keys.pinned, both)
    with pytest.raises(InputError, match=f"holds key {keys.pinned}, {keys.other}, not"):
        signatures.load_key(tmp_path, keys.pinned, "where")
    secret = keys.gpg.gpg("--armor", "--export-secret-keys", keys.pinned).decode()
    _key_file(tmp_path, keys.pinned, secret)
    with pytest.raises(InputError, match="not an ASCII-armored public key block"):
        signatures.load_key(tmp_path, keys.pinned, "where")


def test_missing_key_file(tmp_path):
    with pytest.raises(InputError) as info:
        signatures.load_key(tmp_path, FPR_A, "kernel-xen.yaml:9: upstream.signatures[0].keys")
    assert info.value.message == (
        f"kernel-xen.yaml:9: upstream.signatures[0].keys: {tmp_path}/keys/{FPR_A}.asc: "
        f"no such key file (export it with gpg --armor --export {FPR_A})"
    )


# --- gpgv status lines ----------------------------------------------------------


def test_parse_status_reads_only_status_lines():
    output = (
        "gpgv: Good signature from [GNUPG:] not a status line\n"
        "[GNUPG:] NEWSIG\n"
        f"[GNUPG:] GOODSIG {FPR_A[-16:]} Someone <s@example.org>\n"
        f"[GNUPG:] VALIDSIG {FPR_B} 2026-11-26 1 0 4 0 22 8 00 {FPR_A}\n"
    )
    status = signatures.parse_status(output, 0)
    assert status.valid
    assert status.signers == [FPR_A]  # the primary key, not the signing subkey
    assert not signatures.parse_status(output, 1).valid


def test_parse_status_failures():
    errsig = "[GNUPG:] ERRSIG 79BE3E4300411886 22 8 00 1795656232 9 -\n"
    status = signatures.parse_status(errsig + "[GNUPG:] NO_PUBKEY 79BE3E4300411886\n", 2)
    assert status.unknown_keys == ["79BE3E4300411886"]
    assert not status.valid
    expired = signatures.parse_status(
        f"[GNUPG:] EXPKEYSIG {FPR_A[-16:]} A\n"
        f"[GNUPG:] VALIDSIG {FPR_A} x 1 0 4 0 22 8 00 {FPR_A}\n",
        0,
    )
    assert expired.problems and not expired.valid
    assert signatures.parse_status("[GNUPG:] NODATA 1\n", 2).no_data


# --- the lookaside cache with a verifier ----------------------------------------


class RecordingRunner:
    """The real runner, recording each command and its environment."""

    def __init__(self) -> None:
        self.inner = SubprocessRunner()
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        stdin: IO[bytes] | None = None,
        **kwargs: object,
    ) -> Completed:
        self.calls.append(([os.fspath(a) for a in argv], dict(env or {})))
        return self.inner.run(argv, env=env, stdin=stdin, **kwargs)  # type: ignore[arg-type]

    def stream(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Running:
        return self.inner.stream(argv, **kwargs)  # type: ignore[arg-type]

    def stop_all(self) -> None:
        self.inner.stop_all()


class Mirror:
    """linux-6.1.tar.xz (tar + xz) on a kernel.org-like file:// mirror, a checkout
    with the pinned key, and a lookaside cache."""

    def __init__(self, root: Path, keys: Keys, name: str = "mirror") -> None:
        self.root = root
        self.keys = keys
        self.base = root / name
        (self.base / "v6.x").mkdir(parents=True)
        self.tar, self.tar_xz = kernel_tar(root / f"{name}-upstream", "6.1")
        (self.base / "v6.x" / self.tar_xz.name).write_bytes(self.tar_xz.read_bytes())
        self.checkout = root / "checkout"
        _key_file(self.checkout, keys.pinned, keys.gpg.armored(keys.pinned))
        self.cache = Lookaside(root / "cache")
        self.entry = SourceEntry("SHA512", "linux-6.1.tar.xz", sha512(self.tar_xz))

    @property
    def url(self) -> str:
        return f"file://{self.base}/v6.x/linux-6.1.tar.xz"

    def sign(self, key: str, data: Path | None = None) -> None:
        target = self.base / "v6.x" / "linux-6.1.tar.sign"
        self.keys.gpg.sign(key, data or self.tar, target)

    def verifier(
        self, runner: RecordingRunner, pins: tuple[str, ...] | None = None
    ) -> signatures.SignatureVerifier:
        pinned = ", ".join(pins or (self.keys.pinned,))
        rule = f"    - file: linux-6.1.tar.xz\n      keys: [{pinned}]\n"
        loaded = _load(self.checkout, _manifest_text(rule, mirror=f"file://{self.base}/"))
        verifier = signatures.verifier_for(loaded, "linux-6.1.tar.xz", runner)
        assert verifier is not None
        return verifier


@pytest.fixture
def mirror(tmp_path: Path, keys: Keys) -> Mirror:
    return Mirror(tmp_path, keys)


def test_verified_download_keeps_its_evidence_and_is_not_checked_again(mirror):
    mirror.sign(mirror.keys.pinned)
    runner = RecordingRunner()
    path, downloaded = mirror.cache.fetch(
        mirror.entry, [mirror.url], verifier=mirror.verifier(runner)
    )
    assert downloaded
    assert path.read_bytes() == mirror.tar_xz.read_bytes()
    [(argv, env)] = runner.calls
    home = Path(argv[argv.index("--homedir") + 1])
    keyring = Path(argv[argv.index("--keyring") + 1])
    assert argv[0] == "gpgv"
    assert argv[argv.index("--status-fd") + 1] == "1"
    assert env["GNUPGHOME"] == str(home)
    assert keyring.parent == home.parent
    assert not home.parent.exists()  # the throwaway keyring is gone
    record = json.loads((path.parent / "linux-6.1.tar.xz.verified.json").read_text())
    assert record["signer"] == mirror.keys.pinned
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "linux-6.1.tar.sign",
        "linux-6.1.tar.xz",
        "linux-6.1.tar.xz.verified.json",
    ]

    again, downloaded = mirror.cache.fetch(mirror.entry, [], verifier=mirror.verifier(runner))
    assert (again, downloaded) == (path, False)
    assert len(runner.calls) == 1  # the record still holds: no second gpgv run


def test_evidence_that_no_longer_holds_is_checked_again(mirror):
    mirror.sign(mirror.keys.pinned)
    runner = RecordingRunner()
    path, _ = mirror.cache.fetch(mirror.entry, [mirror.url], verifier=mirror.verifier(runner))
    kept = path.parent / "linux-6.1.tar.sign"
    kept.write_bytes(kept.read_bytes() + b"\n")  # the record's digest no longer matches
    mirror.cache.fetch(mirror.entry, [], verifier=mirror.verifier(runner))
    assert len(runner.calls) == 2

    # the signer is no longer pinned: refused, and the cached copy stays as it was
    _key_file(mirror.checkout, mirror.keys.other, mirror.keys.gpg.armored(mirror.keys.other))
    before = files_under(mirror.root / "cache")
    with pytest.raises(SourceError) as info:
        mirror.cache.fetch(
            mirror.entry,
            [mirror.url],
            verifier=mirror.verifier(runner, pins=(mirror.keys.other,)),
        )
    assert f"made by key {mirror.keys.pinned}, which is not pinned" in info.value.message
    assert files_under(mirror.root / "cache") == before


@pytest.mark.parametrize("problem", ["compressed", "unpinned", "tampered", "garbage", "missing"])
def test_failed_download_leaves_nothing(mirror, problem):
    keys = mirror.keys
    if problem == "compressed":
        mirror.sign(keys.pinned, mirror.tar_xz)
        expected = "was made over the compressed file, but kernel.org signs the uncompressed tar"
    elif problem == "unpinned":
        mirror.sign(keys.other)
        expected = f"made by key {keys.other}, which is not pinned"
    elif problem == "tampered":
        mirror.sign(keys.pinned)
        _, other = kernel_tar(mirror.root / "tampered", "6.1", note=" tampered")
        (mirror.base / "v6.x" / "linux-6.1.tar.xz").write_bytes(other.read_bytes())
        mirror.entry = SourceEntry("SHA512", "linux-6.1.tar.xz", sha512(other))
        expected = "BAD signature linux-6.1.tar.sign from pinned key"
    elif problem == "garbage":
        (mirror.base / "v6.x" / "linux-6.1.tar.sign").write_text("not a signature\n")
        expected = "linux-6.1.tar.sign is not an OpenPGP signature"
    else:
        expected = "could not download linux-6.1.tar.sign"
    with pytest.raises(SourceError) as info:
        mirror.cache.fetch(mirror.entry, [mirror.url], verifier=mirror.verifier(RecordingRunner()))
    assert info.value.message.startswith("linux-6.1.tar.xz: ")
    assert expected in info.value.message
    assert info.value.exit_code == ExitCode.SOURCE_VERIFY
    assert files_under(mirror.root / "cache") == {}


def test_next_mirror_with_a_good_signature_wins(tmp_path, keys):
    bad = Mirror(tmp_path, keys, "bad")
    bad.sign(keys.other)
    good = f"file://{tmp_path}/good/v6.x/linux-6.1.tar.xz"
    (tmp_path / "good" / "v6.x").mkdir(parents=True)
    (tmp_path / "good" / "v6.x" / "linux-6.1.tar.xz").write_bytes(bad.tar_xz.read_bytes())
    keys.gpg.sign(keys.pinned, bad.tar, tmp_path / "good" / "v6.x" / "linux-6.1.tar.sign")
    path, downloaded = bad.cache.fetch(
        bad.entry, [bad.url, good], verifier=bad.verifier(RecordingRunner())
    )
    assert downloaded
    assert (path.parent / "linux-6.1.tar.sign").read_bytes() == (
        tmp_path / "good" / "v6.x" / "linux-6.1.tar.sign"
    ).read_bytes()


def test_bzip2_tarball_of_the_2_6_era(tmp_path, keys):
    """linux-2.6.25.tar.bz2 is checked against the signature of the uncompressed tar."""
    tar, _ = kernel_tar(tmp_path / "upstream", "2.6.25")
    bz2 = tmp_path / "linux-2.6.25.tar.bz2"
    bz2.write_bytes(subprocess.run(["bzip2", "-c", tar], capture_output=True, check=True).stdout)
    (tmp_path / "m" / "v2.6").mkdir(parents=True)
    (tmp_path / "m" / "v2.6" / bz2.name).write_bytes(bz2.read_bytes())
    keys.gpg.sign(keys.pinned, tar, tmp_path / "m" / "v2.6" / "linux-2.6.25.tar.sign")
    checkout = tmp_path / "checkout"
    _key_file(checkout, keys.pinned, keys.gpg.armored(keys.pinned))
    rule = f"    - file: {bz2.name}\n      keys: [{keys.pinned}]\n"
    loaded = _load(checkout, _manifest_text(rule, version="2.6.25"))
    verifier = signatures.verifier_for(loaded, bz2.name, RecordingRunner())
    entry = SourceEntry("SHA512", bz2.name, sha512(bz2))
    path, _ = Lookaside(tmp_path / "cache").fetch(
        entry, [f"file://{tmp_path}/m/v2.6/{bz2.name}"], verifier=verifier
    )
    assert (path.parent / "linux-2.6.25.tar.sign").is_file()


def test_unsigned_files_get_no_verifier(tmp_path):
    loaded = _load(tmp_path, _manifest_text(""))
    assert signatures.verifier_for(loaded, "linux-6.1.tar.xz") is None


def test_missing_gpgv_is_a_missing_tool_and_leaves_nothing(mirror):
    mirror.sign(mirror.keys.pinned)

    class NoGpgv(RecordingRunner):
        def run(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> Completed:
            raise MissingToolError("gpgv: command not found (install it first)")

    verifier = mirror.verifier(NoGpgv())
    with pytest.raises(MissingToolError):
        mirror.cache.fetch(mirror.entry, [mirror.url], verifier=verifier)
    assert files_under(mirror.root / "cache") == {}
