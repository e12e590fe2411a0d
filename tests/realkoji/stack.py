"""koji's own hub and builder, from ../shared/third_party/koji, on 127.0.0.1 and private
ports, as ../shared/notes/koji-real.md brought them up:

- PostgreSQL (Debian's), a private cluster (fsync off) holding koji's schema, an admin,
  a user and the builder's host user;
- the hub (`kojihub.kojixmlrpc.application`) under gunicorn, with KojiDir served at
  /kojifiles (front.py);
- `kojid`, a copy whose host paths (/usr/bin/mock, /etc/mock/koji, /var/log/kojid.log,
  the group `mock`) point into the stack's directory, running mock through the stand-in
  tests/fakes/mock; it also makes the build tag's repository (newRepo, createrepo_c).

Every process is started here and stopped by its PID; nothing outside the stack's
directory (and PostgreSQL's, a private directory under /tmp the postgres user can reach,
removed at the end) is written.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import koji

from ..kojihub.hub import Tls
from ..support import REPO, shared_dir


def koji_src() -> Path:
    """koji's own source tree (hub, builder, library, schema) in ../shared."""
    return shared_dir() / "third_party" / "koji"


FAKE_MOCK = REPO / "tests" / "fakes" / "mock"
FRONT_DIR = Path(__file__).resolve().parent
# kojid imports dnf, librepo, Cheetah and rpm, which only Debian packages (for its
# python3.11); they are appended to kojid's path, after the pinned PyPI packages.
DEBIAN_PYTHON = "/usr/lib/python3/dist-packages"

ADMIN, ADMIN_PASSWORD = "kojiadmin", "admin-secret"
USER, PASSWORD = "kojiuser", "secret"
HOST, HOST_PASSWORD = "builder.test", "builder-secret"
BUILD_TAG, DEST_TAG, TARGET = "kx-build", "kx-dest", "kx-test"
ARCHES = "i686 x86_64"
PACKAGES = ("kernel-xen", "tiny")

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float, log: Path | None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s\n{tail}")


def daemon(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`argv` in a session of its own (stopped by PID), its output appended to `log`."""
    with log.open("ab") as output:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop one process we started, by its PID; its process group if it will not go."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 and a socket directory of its own."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        assert bins, "run tools/setup-host: it installs postgresql"
        self.bin = bins[-1].parent
        self.port = free_port()
        # The server refuses to run as root: as root it runs as the user `postgres`,
        # which cannot reach pytest's private directories; it gets its own under /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="kxen-realkoji-pg-"))
        self.user = "postgres" if os.getuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data, self.socket_dir = self.dir / "data", self.dir
        self.process: subprocess.Popen[bytes] | None = None

    def _run(self, *argv: str, input: bytes | None = None) -> None:
        done = subprocess.run(
            argv, input=input, capture_output=True, user=self.user, cwd=self.dir, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-A", "trust", "-U", "koji", "-E", "UTF8", "--no-sync",
            "--no-instructions", "-D", str(self.data),
        )  # fmt: skip
        log = (self.dir / "postgres.log").open("wb")
        if self.user:
            os.chown(log.name, pwd.getpwnam(self.user).pw_uid, -1)
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ],
            stdout=log, stderr=subprocess.STDOUT, user=self.user, cwd=self.dir,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_for("PostgreSQL", self._ready, 30, self.dir / "postgres.log")

    def _ready(self) -> bool:
        self.sql("postgres", "SELECT 1")
        return True

    def sql(self, database: str, statements: str) -> None:
        self._run(
            str(self.bin / "psql"), "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h",
            str(self.socket_dir), "-p", str(self.port), "-U", "koji", "-d", database, "-f", "-",
            input=statements.encode(),
        )  # fmt: skip

    def stop(self) -> None:
        stop(self.process, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


class RealKoji:
    """The whole stack in `base`; `start()` returns once kojid made the build tag's repo."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.topdir = base / "kojifiles"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/kojihub"
        self.topurl = f"http://127.0.0.1:{self.port}/kojifiles"
        self.db = Postgres()
        self.hub_process: subprocess.Popen[bytes] | None = None
        self.kojid_process: subprocess.Popen[bytes] | None = None
        self.tls_process: subprocess.Popen[bytes] | None = None
        self.hub_conf = base / "hub.conf"
        self.access_log = base / "access.log"
        self.sources_cmd = base / "builder-bin" / "kxen-sources"
        """kojid's source_cmd for dist-git packages (git://127.0.0.1:PORT/rpms/...): run
        in the checkout, it fetches the lookaside files `sources` names. A test writes it
        once it knows the lookaside's URL (it may not contain ':', allowed_scms's
        separator, so a builder configures the URL in the script, as fedpkg does in its
        config); until then an SCM build of rpms/ fails in its SRPM step."""
        self.mock_user_config = base / "mockuser" / ".config" / "mock.cfg"
        """The mock user's own mock config, which mock reads after kojid's (the stand-in
        takes the user's home from MOCK_STANDIN_HOME): where a builder enables ccache."""
        self.timings: dict[str, float] = {}
        self.upload_times: Path | None = None
        """Set before start(): the hub's front logs each upload chunk's times there."""

    # --- start-up ------------------------------------------------------------

    def start(self, builder: bool = True) -> RealKoji:
        """Everything; without `builder`, the hub alone (tasks are created, none run)."""
        began = time.monotonic()
        for sub in ("packages", "repos", "repos-dist", "scratch", "work", "vol"):
            (self.topdir / sub).mkdir(parents=True, exist_ok=True)
        self.db.start()
        self.db.sql("postgres", "CREATE DATABASE koji")
        self.db.sql("koji", (koji_src() / "schemas" / "schema.sql").read_text())
        self.db.sql(
            "koji",
            f"""
            INSERT INTO users (name, password, status, usertype)
                VALUES ('{ADMIN}', '{ADMIN_PASSWORD}', 0, 0), ('{USER}', '{PASSWORD}', 0, 0);
            INSERT INTO user_perms (user_id, perm_id, creator_id)
                SELECT u.id, p.id, u.id FROM users u, permissions p
                WHERE u.name = '{ADMIN}' AND p.name = 'admin';
            """,
        )
        self.timings["database"] = time.monotonic() - began
        self._write_hub_conf()
        self.start_hub()
        self.timings["hub"] = time.monotonic() - began
        self._populate()
        if builder:
            self.start_kojid()
            self._make_repo()
            self.timings["repo"] = time.monotonic() - began
        return self

    def _write_hub_conf(self) -> None:
        self.hub_conf.write_text(
            "[hub]\n"
            f"DBName = koji\nDBUser = koji\nDBHost = {self.db.socket_dir}\n"
            f"DBPort = {self.db.port}\nKojiDir = {self.topdir}\n"
            "CheckClientIP = False\nLoginCreatesUser = Off\nDisableNotifications = True\n"
            "RunInterval = 1\nDNUsernameComponent = CN\nLogLevel = WARNING\n"
        )
        (self.base / "hub.conf.d").mkdir(exist_ok=True)

    def hub_argv(self, port: int, tls: Tls | None = None) -> list[str]:
        argv = [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--worker-class", "gthread", "--threads", "8",
            "--timeout", "300", "--graceful-timeout", "5", "--pythonpath", str(FRONT_DIR),
            "--chdir", str(self.base), "--access-logfile", str(self.access_log),
            "--access-logformat", "%(m)s %(U)s %(s)s %(B)s %(a)s",
        ]  # fmt: skip
        if tls:
            # like mod_ssl with SSLVerifyClient optional: front.py hands a verified client
            # certificate to the hub as mod_ssl's variables
            argv += [
                "--certfile", str(tls.cert), "--keyfile", str(tls.key),
                "--ca-certs", str(tls.client_ca), "--cert-reqs", str(int(ssl.CERT_OPTIONAL)),
            ]  # fmt: skip
        return [*argv, "front:app"]

    def start_hub(self) -> None:
        self.hub_process = self._spawn_hub(self.port, None)
        wait_for("the hub", self._hub_answers, 60, self.base / "hub.log")

    def start_tls_hub(self, tls: Tls) -> str:
        """A second front, over HTTPS, to the same hub and files: its base URL."""
        port = free_port()
        self.tls_process = self._spawn_hub(port, tls)
        base = f"https://localhost:{port}"

        def answers() -> bool:
            context = ssl.create_default_context(cafile=str(tls.client_ca))
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return True

        wait_for("the TLS hub", answers, 60, self.base / "hub.log")
        return base

    def _spawn_hub(self, port: int, tls: Tls | None) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": str(koji_src()),
            "KXEN_REALKOJI_HUBCONF": str(self.hub_conf),
            "KXEN_REALKOJI_TOPDIR": str(self.topdir),
        }
        if self.upload_times is not None:
            env["KXEN_REALKOJI_UPLOAD_TIMES"] = str(self.upload_times)
        return daemon(self.hub_argv(port, tls), env, self.base / "hub.log")

    def _hub_answers(self) -> bool:
        return koji.ClientSession(self.url, {"max_retries": 0}).getAPIVersion() == 1

    @property
    def hub_pid(self) -> int | None:
        return self.hub_process.pid if self.hub_process else None

    def gets(self, suffix: str, agent: str = "Python-urllib/") -> list[str]:
        """The /kojifiles paths ending in `suffix` that a client (by default one on
        urllib, as kxen is; kojid uses requests and librepo) fetched so far."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [
            fields[1]
            for fields in (line.split(None, 4) for line in lines)
            if len(fields) == 5
            and fields[0] == "GET"
            and fields[1].startswith("/kojifiles/")
            and fields[1].endswith(suffix)
            and fields[4].startswith(agent)
        ]

    def stop_hub(self, sig: int = signal.SIGTERM) -> None:
        """Stop gunicorn: SIGTERM lets requests finish, SIGINT is its quick shutdown (the
        connections drop, as when a hub host goes away)."""
        stop(self.hub_process, sig)
        self.hub_process = None

    def session(self, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> Any:
        session = koji.ClientSession(self.url, {"user": user, "password": password})
        session.login()
        return session

    def request(self, task_id: int) -> list[Any]:
        """The arguments a task was created with, as the hub stored them."""
        info = koji.ClientSession(self.url).getTaskInfo(task_id, request=True)
        return list(info["request"])

    def _populate(self) -> None:
        admin = self.session()
        admin.createTag(BUILD_TAG, arches=ARCHES)
        admin.createTag(DEST_TAG)
        admin.createBuildTarget(TARGET, BUILD_TAG, DEST_TAG)
        for package in PACKAGES:
            admin.packageListAdd(DEST_TAG, package, owner=ADMIN)
        for group in ("build", "srpm-build"):
            admin.groupListAdd(BUILD_TAG, group)
        admin.addHost(HOST, ["i386", "x86_64"])
        admin.addHostToChannel(HOST, "createrepo")
        admin.logout()
        self.db.sql("koji", f"UPDATE users SET password = '{HOST_PASSWORD}' WHERE name = '{HOST}'")

    def _kojid_copy(self) -> Path:
        """kojid, and the koji library's daemon module, with their host paths moved into
        the stack's directory; returns the copy of kojid (the library is beside it)."""
        mock_etc = self.base / "mock-etc"
        (mock_etc / "koji").mkdir(parents=True, exist_ok=True)
        library = self.base / "kojilib" / "koji"
        shutil.copytree(koji_src() / "koji", library, dirs_exist_ok=True)
        daemon = library / "daemon.py"
        text = daemon.read_text()
        assert "'/etc/mock/koji'" in text, "koji/daemon.py changed: '/etc/mock/koji' is gone"
        daemon.write_text(text.replace("'/etc/mock/koji'", repr(str(mock_etc / "koji"))))
        text = (koji_src() / "builder" / "kojid").read_text()
        replacements = [
            (
                "from __future__ import absolute_import, division\n",
                "from __future__ import absolute_import, division\n"
                f"import sys as _sys; _sys.path.append({DEBIAN_PYTHON!r})\n",
            ),
            ('"/usr/bin/mock"', repr(str(FAKE_MOCK))),
            ("'/etc/mock/koji'", repr(str(mock_etc / "koji"))),
            ('"/var/log/kojid.log"', repr(str(self.base / "kojid.log"))),
            ("grp.getgrnam('mock')", "grp.getgrgid(os.getgid())"),
        ]
        for old, new in replacements:
            assert old in text, f"kojid changed: {old!r} is gone"
            text = text.replace(old, new)
        copy = self.base / "kojid"
        copy.write_text(text)
        return copy

    def start_kojid(self) -> None:
        conf = self.base / "kojid.conf"
        conf.write_text(
            "[kojid]\n"
            f"server = {self.url}\ntopurl = {self.topurl}\ntopdir = {self.topdir}\n"
            f"workdir = {self.base / 'kojid-work'}\nmockdir = {self.base / 'mock'}\n"
            f"mockuser = {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"user = {HOST}\npassword = {HOST_PASSWORD}\n"
            "sleeptime = 1\nmaxjobs = 8\nminspace = 1\n"
            # host:repository:use_common:source_cmd, the first match wins; the host is
            # the URL's netloc, which holds the port (a pattern cannot: ':' separates)
            f"allowed_scms = 127.0.0.1*:/rpms/*:no:{self.sources_cmd} 127.0.0.1*:/*:no\n"
            "use_createrepo_c = True\nlog_level = INFO\nbuildroot_basic_cleanup_delay = 0\n"
            "max_retries = 30\nretry_interval = 2\noffline_retry_interval = 2\n"
        )
        (self.base / "mock").mkdir(exist_ok=True)
        kojid = self._kojid_copy()
        env = {
            **os.environ,
            "PYTHONPATH": str(self.base / "kojilib"),
            "MOCK_STANDIN_CONFIG_DIR": str(self.base / "mock-etc"),
            "MOCK_STANDIN_STATE_DIR": str(self.base / "mock-state"),
            "MOCK_STANDIN_HOME": str(self.base / "mockuser"),
        }
        env.pop("MOCK_STANDIN_FAIL", None)
        self.kojid_process = daemon(
            [sys.executable, str(kojid), "--fg", "--force-lock", "-c", str(conf)],
            env,
            self.base / "kojid.out",
        )

    def _make_repo(self) -> None:
        admin = self.session()
        task_id = admin.newRepo(BUILD_TAG)
        self.wait_task(admin, task_id, 120)
        admin.logout()

    def wait_task(self, session: Any, task_id: int, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            if self.kojid_process is not None and self.kojid_process.poll() is not None:
                raise RuntimeError("kojid exited")
            info = session.getTaskInfo(task_id)
            return info if info["state"] in (2, 3, 5) else None

        info: dict[str, Any] = wait_for(f"task {task_id}", done, timeout, self.base / "kojid.log")
        return info

    # --- shutdown ------------------------------------------------------------

    def stop(self) -> None:
        stop(self.kojid_process)
        stop(self.tls_process)
        self.stop_hub()
        self.db.stop()


@contextlib.contextmanager
def running(base: Path, builder: bool = True) -> Iterator[RealKoji]:
    stack = RealKoji(base)
    try:
        yield stack.start(builder)
    finally:
        stack.stop()
