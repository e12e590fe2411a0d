"""A dist-git server of the tests' own: bare package repositories and dist-git's real
lookaside upload CGI behind `tests/lookaside_server.py`, on 127.0.0.1.

The layout follows dist-git's configuration (`configs/dist-git/dist-git.conf`):
`git/<namespace>/<name>.git` (the CGI accepts uploads only for a package whose repository
exists) and `lookaside/<namespace>/<name>/<file>/sha512/<hash>/<file>`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import support

NAMESPACE = "rpms"
SERVER = Path(__file__).with_name("lookaside_server.py")
START_SECONDS = 20.0


def upload_cgi() -> Path:
    """dist-git's upload.cgi, run where it lies (never copied)."""
    cgi = support.shared_dir() / "third_party/dist-git/dist-git/scripts/httpd/upload.cgi"
    assert cgi.is_file(), f"{cgi}: missing"
    return cgi


@dataclass(frozen=True)
class DistGitServer:
    root: Path
    port: int
    scheme: str = "http"

    @property
    def git_root(self) -> Path:
        return self.root / "git"

    @property
    def lookaside_dir(self) -> Path:
        return self.root / "lookaside"

    @property
    def upload_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/repo/pkgs/upload.cgi"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/repo/pkgs"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def add_package(self, name: str) -> Path:
        """A new bare repository `<namespace>/<name>.git` (what dist-git's
        setup_git_package makes); its path."""
        repo = self.git_root / NAMESPACE / f"{name}.git"
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        return repo

    def stored(self, name: str, filename: str, digest: str) -> Path:
        return self.lookaside_dir / NAMESPACE / name / filename / "sha512" / digest / filename


def write_config(root: Path) -> Path:
    """dist-git.conf for the CGI: this tree, the `rpms` namespace, no message bus, and
    the packager group check off (the server passes REMOTE_USER without a group db)."""
    config = root / "dist-git.conf"
    config.write_text(
        "[dist-git]\n"
        f"lookaside_dir = {root / 'lookaside'}\n"
        f"gitroot_dir = {root / 'git'}\n"
        f"default_namespace = {NAMESPACE}\n"
        "[upload]\n"
        "fedmsgs = False\n"
        "fedora_messaging = False\n"
        "old_paths = False\n"
        "nomd5 = True\n"
        "disable_group_check = True\n"
    )
    return config


@contextmanager
def running(root: Path, tls: tuple[Path, Path, Path] | None = None) -> Iterator[DistGitServer]:
    """The server started on a free port, stopped (by its PID) when the block ends; over
    HTTPS with `tls` (its certificate, key, and the CA of the client certificates)."""
    (root / "git").mkdir(parents=True)
    (root / "lookaside").mkdir()
    port_file = root / "port"
    env = {**os.environ, "DISTGIT_CONFIG": str(write_config(root))}
    argv = [sys.executable, str(SERVER), str(upload_cgi()), str(root / "lookaside")]
    process = subprocess.Popen(
        [*argv, str(port_file), str(root / "server.log"), *map(str, tls or ())],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not port_file.exists():
            assert process.poll() is None, "the lookaside server died at start"
            assert time.monotonic() < deadline, "the lookaside server did not start"
            time.sleep(0.05)
        yield DistGitServer(root, int(port_file.read_text()), "https" if tls else "http")
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
