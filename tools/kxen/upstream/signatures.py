"""Detached OpenPGP signatures of upstream files, checked against pinned keys.

The digest in `sources` says *which* bytes to build; the signature says *who*
released them, so a `sources` update taken from a compromised mirror or a
typo-squatted tarball is caught. The manifest pins, per upstream file, the
fingerprints allowed to sign it (`upstream.signatures`); their public keys
live in the checkout as `keys/<FINGERPRINT>.asc`.

kernel.org signs the *uncompressed* tar and patches (`linux-6.1.tar.sign`
covers `xz -dc linux-6.1.tar.xz`), so the data is decompressed into gpgv's
stdin. gpgv runs with a throwaway home directory and a keyring made of exactly
the pinned keys: nothing the user trusts in ~/.gnupg or $GNUPGHOME can make a
signature pass. Its `--status-fd` lines decide, never its human text.

The check runs on the untrusted download after the digest matched and before
the rename into the lookaside cache. The signature that verified is then kept
beside the cached file with a record of its signer, so a cached copy is
decompressed and checked once per pinning, not on every run; a copy cached
before a signature was declared has no record and is checked before use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kxen.errors import InputError, SourceError
from kxen.manifest import Manifest, SignatureRule
from kxen.support import download, inputs
from kxen.support.fsutil import atomic_write_bytes, atomic_write_text
from kxen.support.runner import Runner, SubprocessRunner
from kxen.upstream import archive

KEYS_DIR = "keys"
RECORD_SUFFIX = ".verified.json"
MAX_SIGNATURE_BYTES = 64 * 1024
_DECOMPRESSORS = {".xz": ["xz", "-dc"], ".bz2": ["bzip2", "-dc"], ".gz": ["gzip", "-dc"]}
_STATUS_PREFIX = "[GNUPG:] "
_NO_PUBLIC_KEY = "9"  # ERRSIG return code: the signing key is not in the keyring


def verifier_for(
    manifest: Manifest, filename: str, runner: Runner | None = None
) -> SignatureVerifier | None:
    """The verifier of `filename` if the manifest declares its signature, else None.

    The pinned keys are read now, so a missing or wrong key file is refused
    (exit 2) before anything is downloaded.
    """
    rule = manifest.signature_rule(filename)
    if rule is None:
        return None
    keyring = b"".join(load_key(manifest.root, fpr, f"{rule.where}.keys") for fpr in rule.keys)
    return SignatureVerifier(rule, keyring, runner or SubprocessRunner())


# --- pinned keys -----------------------------------------------------------


def load_key(root: Path, fingerprint: str, where: str) -> bytes:
    """The binary (de-armored) public key `keys/<fingerprint>.asc`.

    The file must hold exactly one primary key and it must be the one its name
    pins: otherwise renaming a file would be enough to trust another key.
    """
    path = root / KEYS_DIR / f"{fingerprint}.asc"
    if not path.exists() and not path.is_symlink():
        raise InputError(
            f"{where}: {path}: no such key file (export it with gpg --armor --export {fingerprint})"
        )
    text = inputs.read_text(path, root)
    if not text.isascii():
        raise InputError(f"{path}: not an ASCII-armored public key")
    try:
        data = dearmor(text)
        found = primary_fingerprints(data)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    if found != [fingerprint]:
        raise InputError(f"{path}: holds key {', '.join(found)}, not {fingerprint}")
    return data


_ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"


def dearmor(text: str) -> bytes:
    """Decode one ASCII-armored public key block (RFC 4880 section 6), checking its CRC."""
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = lines.index(_ARMOR_BEGIN)
        end = lines.index(_ARMOR_END, start)
    except ValueError:
        raise ValueError("not an ASCII-armored public key block") from None
    if _ARMOR_BEGIN in lines[end:]:
        raise ValueError("more than one key block (keep one key per file)")
    body = lines[start + 1 : end]
    if "" in body:  # armor headers (Comment:, Version:) end at the first blank line
        body = body[body.index("") + 1 :]
    checksum = body.pop() if body and body[-1].startswith("=") else None
    try:
        data = base64.b64decode("".join(body), validate=True)
        expected = base64.b64decode(checksum[1:], validate=True) if checksum else None
    except binascii.Error:
        raise ValueError("the key block is not valid base64") from None
    if expected is not None and expected != _crc24(data).to_bytes(3, "big"):
        raise ValueError("the key block's checksum does not match (damaged file)")
    return data


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def primary_fingerprints(data: bytes) -> list[str]:
    """Fingerprints of the primary keys in binary OpenPGP data (v4: SHA-1 of the packet)."""
    found: list[str] = []
    for number, (tag, body) in enumerate(_packets(data)):
        if number == 0 and tag != 6:
            raise ValueError("does not start with a public key packet")
        if tag in (5, 7):
            raise ValueError("holds secret key material; export the public key only")
        if tag != 6:
            continue
        if not body or body[0] != 4:
            raise ValueError("only OpenPGP v4 keys (40-hex-digit fingerprints) are supported")
        prefix = b"\x99" + len(body).to_bytes(2, "big")
        found.append(hashlib.sha1(prefix + body).hexdigest().upper())
    if not found:
        raise ValueError("holds no public key")
    return found


def _packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each packet; keys never use partial or indeterminate lengths."""
    pos = 0
    try:
        while pos < len(data):
            header = data[pos]
            pos += 1
            if not header & 0x80:
                raise ValueError("not OpenPGP data")
            if header & 0x40:  # new format
                tag, first = header & 0x3F, data[pos]
                if first < 192:
                    length, pos = first, pos + 1
                elif first < 224:
                    length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
                elif first == 255:
                    length, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
                else:
                    raise ValueError("partial-length packet in a key")
            else:
                tag, size = (header >> 2) & 0x0F, {0: 1, 1: 2, 2: 4}.get(header & 3)
                if size is None:
                    raise ValueError("indeterminate-length packet in a key")
                length, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
            body = data[pos : pos + length]
            if len(body) != length:
                raise IndexError
            pos += length
            yield tag, body
    except IndexError:
        raise ValueError("truncated OpenPGP data") from None


# --- gpgv ------------------------------------------------------------------


@dataclass
class Status:
    """What gpgv's status lines (doc/DETAILS of GnuPG) say about the signatures."""

    returncode: int
    signers: list[str] = field(default_factory=list)
    """Primary-key fingerprints of VALIDSIG lines."""
    good: int = 0
    bad: list[str] = field(default_factory=list)
    unknown_keys: list[str] = field(default_factory=list)
    """Fingerprint (or key id) of signatures made by a key not in the keyring."""
    other_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """EXPSIG / EXPKEYSIG / REVKEYSIG: a signature gpgv will not call good."""
    no_data: bool = False

    @property
    def valid(self) -> bool:
        clean = not (self.bad or self.unknown_keys or self.other_errors or self.problems)
        return self.returncode == 0 and clean and self.good > 0 and len(self.signers) > 0


def parse_status(output: str, returncode: int) -> Status:
    """Read the `[GNUPG:] KEYWORD args` lines; anything else is human text and ignored."""
    status = Status(returncode)
    for line in output.splitlines():
        if not line.startswith(_STATUS_PREFIX):
            continue
        keyword, *args = line[len(_STATUS_PREFIX) :].split()
        if keyword == "GOODSIG":
            status.good += 1
        elif keyword == "VALIDSIG" and args:
            status.signers.append(args[9] if len(args) > 9 else args[0])
        elif keyword == "BADSIG" and args:
            status.bad.append(args[0])
        elif keyword == "ERRSIG" and args:
            fingerprint = args[6] if len(args) > 6 and args[6] != "-" else args[0]
            code = args[5] if len(args) > 5 else "?"
            if code == _NO_PUBLIC_KEY:
                status.unknown_keys.append(fingerprint)
            else:
                status.other_errors.append(f"key {fingerprint}: gpgv error code {code}")
        elif keyword == "NO_PUBKEY" and args:
            if not any(known.endswith(args[0]) for known in status.unknown_keys):
                status.unknown_keys.append(args[0])
        elif keyword in ("EXPSIG", "EXPKEYSIG", "REVKEYSIG") and args:
            status.problems.append(f"{keyword} {args[0]}")
        elif keyword == "NODATA":
            status.no_data = True
    return status


class SignatureVerifier:
    """Checks one upstream file against its declared signature (a `sources.Verifier`)."""

    def __init__(self, rule: SignatureRule, keyring: bytes, runner: Runner) -> None:
        self.rule = rule
        self.keyring = keyring
        self.runner = runner

    def downloaded(self, path: Path, url: str, directory: Path) -> None:
        signature_url = url[: url.rfind("/") + 1] + self.rule.signature
        signature = _read_url(signature_url, self.rule)
        signer = self.check(path, signature)
        self._keep(directory, signature, signer)

    def cached(self, path: Path, urls: Sequence[str]) -> None:
        """Reuse earlier evidence if it still holds; else check with the kept signature,
        then with each mirror's, and keep the one that verified."""
        directory = path.parent
        if self._evidence_holds(directory):
            return
        candidates: list[tuple[str, Path | None]] = []
        kept = directory / self.rule.signature
        if kept.is_file():
            candidates.append((str(kept), kept))
        candidates += [(url[: url.rfind("/") + 1] + self.rule.signature, None) for url in urls]
        failures: list[str] = []
        first: SourceError | None = None
        for where, local in candidates:
            try:
                signature = local.read_bytes() if local else _read_url(where, self.rule)
                signer = self.check(path, signature)
            except SourceError as exc:
                first = first or exc
                failures.append(exc.message)
                continue
            self._keep(directory, signature, signer)
            return
        if first is None:
            raise SourceError(f"{self.rule.file}: no mirror to fetch {self.rule.signature} from")
        raise SourceError(first.message, details=failures if len(failures) > 1 else [])

    def check(self, path: Path, signature: bytes) -> str:
        """Verify `path` (compressed as its name says) against `signature`; return the
        signer's primary fingerprint or raise a SourceError saying what is wrong."""
        name, sig = self.rule.file, self.rule.signature
        decompress = _DECOMPRESSORS.get(Path(name).suffix)
        with tempfile.TemporaryDirectory(prefix="kxen-gpgv-") as scratch:
            work = Path(scratch)
            (work / "home").mkdir(mode=0o700)
            (work / "pinned.gpg").write_bytes(self.keyring)
            (work / "signature").write_bytes(signature)
            status, decompressed = self._gpgv(work, path, decompress)
            if (status.valid or status.bad) and not decompressed:
                # gpgv read the whole stream, so the decompressor itself failed
                raise SourceError(
                    f"{name}: could not be decompressed with {' '.join(decompress or [])} "
                    "to check its signature"
                )
            if status.valid:
                return self._pinned_signer(status)
            if status.bad and decompress:
                raw, _ = self._gpgv(work, path, None)
                if raw.valid:
                    command = f"{' '.join(decompress)} {name} | gpgv {sig} -"
                    raise SourceError(
                        f"{name}: {sig} was made over the compressed file, but kernel.org "
                        f"signs the uncompressed tar ({command}); use the signature of the "
                        "uncompressed data"
                    )
        raise SourceError(self._failure(status))

    def _gpgv(self, work: Path, path: Path, decompress: list[str] | None) -> tuple[Status, bool]:
        """Run gpgv on the (decompressed) data; (status, whether decompression succeeded)."""
        argv: list[str | Path] = [
            "gpgv",
            "--homedir",
            work / "home",
            "--keyring",
            work / "pinned.gpg",
            "--status-fd",
            "1",
            work / "signature",
            "-",
        ]
        env = {"GNUPGHOME": str(work / "home"), "LC_ALL": "C"}
        with archive.reading(path, self.runner, decompress) as source:
            result = self.runner.run(argv, env=env, stdin=source.data, check=False)
            decompressor = source.finish()
        decompressed = decompressor is None or decompressor.ok
        return parse_status(result.output, result.returncode), decompressed

    def _pinned_signer(self, status: Status) -> str:
        # The keyring holds only pinned keys, so this holds by construction; checked anyway.
        unpinned = [fpr for fpr in status.signers if fpr not in self.rule.keys]
        if unpinned:
            raise SourceError(self._unpinned(unpinned[0]))
        return status.signers[0]

    def _unpinned(self, key: str) -> str:
        return (
            f"{self.rule.file}: {self.rule.signature} was made by key {key}, which is not "
            f"pinned ({self.rule.where}.keys: {', '.join(self.rule.keys)})"
        )

    def _failure(self, status: Status) -> str:
        name, sig = self.rule.file, self.rule.signature
        if status.bad:
            return (
                f"{name}: BAD signature {sig} from pinned key {status.bad[0]}: the file is "
                "not what was signed (tampered or wrong file)"
            )
        if status.unknown_keys:
            return self._unpinned(status.unknown_keys[0])
        if status.problems:
            return f"{name}: {sig} is not acceptable ({status.problems[0]}: expired or revoked)"
        if status.other_errors:
            return f"{name}: {sig} could not be checked ({status.other_errors[0]})"
        if status.no_data:
            return f"{name}: {sig} is not an OpenPGP signature"
        return f"{name}: gpgv did not accept {sig} (exit status {status.returncode})"

    # --- evidence kept in the cache ----------------------------------------

    def _record_path(self, directory: Path) -> Path:
        return directory / f"{self.rule.file}{RECORD_SUFFIX}"

    def _keep(self, directory: Path, signature: bytes, signer: str) -> None:
        atomic_write_bytes(directory / self.rule.signature, signature)
        record = {
            "file": self.rule.file,
            "signature": self.rule.signature,
            "signature_sha256": hashlib.sha256(signature).hexdigest(),
            "signer": signer,
        }
        atomic_write_text(self._record_path(directory), json.dumps(record, indent=1) + "\n")

    def _evidence_holds(self, directory: Path) -> bool:
        """A record of an earlier check of this very file (its cache directory is named by
        its digest) with this signature, by a key that is still pinned."""
        try:
            record = json.loads(self._record_path(directory).read_text())
            kept = (directory / self.rule.signature).read_bytes()
        except (OSError, ValueError):
            return False
        return (
            isinstance(record, dict)
            and record.get("file") == self.rule.file
            and record.get("signature") == self.rule.signature
            and record.get("signature_sha256") == hashlib.sha256(kept).hexdigest()
            and record.get("signer") in self.rule.keys
        )


def _read_url(url: str, rule: SignatureRule) -> bytes:
    """The detached signature at `url`, at most MAX_SIGNATURE_BYTES, under kxen's retry
    policy (`kxen.support.download`)."""
    try:
        return download.read(download.Request(url, rule.signature, limit=MAX_SIGNATURE_BYTES))
    except download.TooLarge:
        raise SourceError(f"{rule.file}: {url} is too large for a detached signature") from None
    except download.DownloadError as exc:
        raise SourceError(
            f"{rule.file}: could not download {rule.signature} ({url}: {exc.reason})"
        ) from None
