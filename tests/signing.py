"""Real GnuPG for the signature tests: throwaway keys, detached signatures and tiny
kernel.org-like tarballs served from a file:// mirror laid out like kernel.org."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

GPG_BATCH = ("--batch", "--pinentry-mode", "loopback", "--passphrase", "")


class GpgHome:
    """A temporary GNUPGHOME holding secret keys made for one test module."""

    def __init__(self, home: Path) -> None:
        assert shutil.which("gpg"), "gpg is missing: run tools/setup-host (it installs gnupg)"
        assert shutil.which("gpgv"), "gpgv is missing: run tools/setup-host"
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def gpg(self, *args: str | Path) -> bytes:
        command = ["gpg", "--homedir", str(self.home), *GPG_BATCH, *map(str, args)]
        return subprocess.run(command, capture_output=True, check=True).stdout

    def new_key(self, uid: str) -> str:
        """Generate an ed25519 signing key; return its fingerprint."""
        self.gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self.gpg("--with-colons", "--list-keys", f"={uid}").decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def armored(self, fingerprint: str) -> str:
        return self.gpg("--armor", "--export", fingerprint).decode()

    def sign(self, fingerprint: str, data: Path, signature: Path) -> Path:
        """An armored detached signature of `data`, like kernel.org's .sign files."""
        signature.unlink(missing_ok=True)
        self.gpg("--armor", "--local-user", fingerprint, "--detach-sign", "-o", signature, data)
        return signature

    def close(self) -> None:
        """Stop the gpg-agent this home started."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False)


def kernel_tar(directory: Path, version: str, note: str = "") -> tuple[Path, Path]:
    """A tiny `linux-<version>.tar` and its `.tar.xz` (made with tar and xz), with a real
    kernel Makefile; returns (uncompressed tar, compressed tar)."""
    directory.mkdir(parents=True, exist_ok=True)
    major, minor, *sub = version.split(".")
    top = directory / f"linux-{version}"
    top.mkdir()
    (top / "Makefile").write_text(
        f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = {sub[0] if sub else 0}\n"
        "EXTRAVERSION =\n"
    )
    (top / "README").write_text(f"Linux {version} for the signature tests{note}\n")
    tar = directory / f"linux-{version}.tar"
    subprocess.run(
        ["tar", "-cf", tar.name, "--owner=0", "--group=0", top.name], cwd=directory, check=True
    )
    shutil.rmtree(top)
    subprocess.run(["xz", "-kf", tar], check=True)
    return tar, tar.with_name(tar.name + ".xz")


def sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` with its (size, mtime_ns): what a failure must not change."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class Keys:
    """Two throwaway signers: one the tests pin, one they do not."""

    def __init__(self, gpg: GpgHome) -> None:
        self.gpg = gpg
        self.pinned = gpg.new_key("Pinned Release Signer <pinned@example.org>")
        self.other = gpg.new_key("Someone Else <other@example.org>")
