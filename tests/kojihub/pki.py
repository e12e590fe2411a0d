"""A throw-away PKI made with the real openssl CLI: a CA, the hub's certificate for
localhost, and client certificates in koji's `cert` format (certificate and key in one PEM)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .hub import Tls


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @classmethod
    def create(cls, root: Path, ca_name: str = "kxen test CA") -> Pki:
        root.mkdir(parents=True, exist_ok=True)
        pki = cls(root)
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", root / "ca.key", "-out", pki.ca, "-days", "2",
            "-subj", f"/CN={ca_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return pki

    def issue(self, name: str, cn: str, extensions: str) -> tuple[Path, Path]:
        """A certificate for `cn` signed by this CA: (certificate, key)."""
        key, csr, cert = (self.root / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext_file = self.root / f"{name}.ext"
        ext_file.write_text(extensions)
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.root / "ca.key",
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext_file,
        )  # fmt: skip
        return cert, key

    def hub_tls(self) -> Tls:
        cert, key = self.issue(
            "hub",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        return Tls(cert=cert, key=key, client_ca=self.ca)

    def client_pem(self, user: str) -> Path:
        """koji's `cert` option: the client certificate and its key in one file."""
        cert, key = self.issue(f"client-{user}", user, "extendedKeyUsage=clientAuth\n")
        pem = self.root / f"{user}.pem"
        pem.write_text(cert.read_text() + key.read_text())
        return pem
