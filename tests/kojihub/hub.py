"""The test hub: koji's XML-RPC contract, a real rpmbuild builder, fault switches.

koji's own hub and builder run in tests/realkoji; this imitation stays for what they
cannot be made to do on demand (a swallowed build() answer, dropped connections, a hub
offline for a while, a failing arch, a slow build) and answers as the real hub does
where they meet: build() checks neither target nor policy (the task fails, with koji's
text), children come in no particular order and hold waitrepo and tagBuild tasks, an
upload without a session is an AuthError, an old callnum is SequenceError."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import inspect
import os
import secrets
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import xmlrpc.client
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KOJI_VERSION = "1.35.3"

FREE, OPEN, CLOSED, CANCELED, ASSIGNED, FAILED = 0, 1, 2, 3, 4, 5
DONE = (CLOSED, CANCELED, FAILED)

GENERIC, AUTH, NOT_ALLOWED, BUILD, SEQUENCE, RETRY, OFFLINE, PARAMETER = (
    1000,
    1002,
    1004,
    1005,
    1008,
    1009,
    1014,
    1019,
)

# koji's canonArch for the labels a build tag lists
CANON = {"i686": "i386", "i586": "i386", "x86_64": "x86_64", "noarch": "noarch"}
# the calls after which the hub commits, and so stores the session's callnum
STATE_CHANGING = {"build", "cancelTask"}
POLICY_REFUSAL = "policy violation (build_from_srpm): Only admin can do this via default policy"


class Fault(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


@dataclass
class Task:
    id: int
    method: str
    owner: int
    request: list[Any]
    arch: str = "noarch"
    label: str | None = None
    parent: int | None = None
    state: int = FREE
    created: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    result: Any = None
    fault: tuple[int, str] | None = None
    priority: int = 20
    channel_id: int = 1

    def info(self, request: bool = False) -> dict[str, Any]:
        def stamp(value: float | None) -> str | None:
            if value is None:
                return None
            return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(" ")

        data: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "create_time": stamp(self.created),
            "create_ts": self.created,
            "start_time": stamp(self.started),
            "start_ts": self.started,
            "completion_time": stamp(self.completed),
            "completion_ts": self.completed,
            "channel_id": self.channel_id,
            "host_id": 1 if self.started else None,
            "parent": self.parent,
            "label": self.label,
            "waiting": None,
            "awaited": None,
            "owner": self.owner,
            "method": self.method,
            "arch": self.arch,
            "priority": self.priority,
            "weight": 1.0,
        }
        if request:
            data["request"] = self.request
        return data


@dataclass
class HubState:
    """Everything the hub knows, plus the fault-injection switches tests flip."""

    topdir: Path
    users: dict[str, str] = field(default_factory=lambda: {"kojiuser": "secret"})
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_arches: dict[str, list[str]] = field(default_factory=dict)
    tag_packages: dict[str, list[str]] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    # fault switches
    drop_connections: int = 0
    offline: bool = False
    swallow_build: bool = False
    fail_arch: str | None = None
    build_delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    next_task: int = 1000
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    scm_srpms: dict[str, Path] = field(default_factory=dict)
    builds: dict[str, int] = field(default_factory=dict)
    # upload path -> [first chunk arrived, checkUpload answered, bytes] (monotonic clock)
    uploads: dict[str, list[Any]] = field(default_factory=dict)
    upload_chunks: dict[str, list[int]] = field(default_factory=dict)  # path -> chunk sizes
    run_builds: bool = True  # False: tasks are created but never picked up (benchmarks)
    volumes: list[str] = field(default_factory=lambda: ["DEFAULT"])  # like list_volumes()
    repo_ready: bool = False  # the first build waits for the build tag's repo (waitrepo)

    def add_target(self, name: str, arches: list[str], packages: list[str] | None = None) -> None:
        build_tag, dest_tag = f"{name}-build", name
        ident = len(self.targets) + 1
        self.targets[name] = {
            "id": ident,
            "name": name,
            "build_tag": ident * 10,
            "dest_tag": ident * 10 + 1,
            "build_tag_name": build_tag,
            "dest_tag_name": dest_tag,
        }
        self.tag_arches[build_tag] = list(arches)
        self.tag_arches.setdefault(dest_tag, [])
        self.tag_packages[dest_tag] = list(packages or [])

    def user_id(self, name: str) -> int:
        return sorted(self.users).index(name) + 1

    def task_dir(self, task_id: int, volume: str = "DEFAULT") -> Path:
        """koji's pathinfo.work(volume)/taskrelpath(task_id) under topdir."""
        base = self.topdir if volume == "DEFAULT" else self.topdir / "vol" / volume
        return base / "work" / "tasks" / str(task_id % 10000) / str(task_id)

    def build_tasks(self) -> list[Task]:
        return [task for task in self.tasks.values() if task.method == "build"]


@dataclass(frozen=True)
class Tls:
    """The hub's certificate and key, and the CA whose client certificates it accepts.

    Like a koji hub behind mod_ssl with `SSLVerifyClient optional`: any connection may
    present a client certificate; sslLogin maps a verified one's CN to the user."""

    cert: Path
    key: Path
    client_ca: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        context.load_verify_locations(self.client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


class Hub:
    """Serves `state` on 127.0.0.1: XML-RPC at /kojihub, task files under /files;
    over HTTPS with `tls` (the URLs name `localhost`, which the certificate must match)."""

    def __init__(self, state: HubState, tls: Tls | None = None) -> None:
        self.state = state
        self.api = _Api(state)
        handler = _make_handler(self)
        self.server = _Server(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.context().wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        base = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self.url = f"{base}/kojihub"
        self.topurl = f"{base}/files"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in list(self.state.threads):
            thread.join(timeout=120)

    def wait_idle(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self.state.threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(hub: Hub) -> type[http.server.BaseHTTPRequestHandler]:
    state = hub.state

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in separate writes: without TCP_NODELAY every answer
        # waits for the client's delayed ACK (40 ms), which no real hub does
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dropped(self) -> bool:
            with state.lock:
                if state.drop_connections > 0:
                    state.drop_connections -= 1
                    self.close_connection = True
                    return True
            return False

        def _send(self, code: int, body: bytes, ctype: str = "text/xml") -> None:
            self.send_response(code)
            self.send_header("Koji-Version", KOJI_VERSION)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _not_allowed(self) -> None:
            self.send_response(405)
            self.send_header("Koji-Version", KOJI_VERSION)
            self.send_header("Allow", "POST")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._serve_file(head=False)

        def do_HEAD(self) -> None:
            self._serve_file(head=True)

        def _serve_file(self, head: bool) -> None:
            if self._dropped():
                return
            path = urllib.parse.urlsplit(self.path).path
            if not path.startswith("/files/"):
                self._not_allowed()
                return
            relative = urllib.parse.unquote(path[len("/files/") :])
            target = (state.topdir / relative).resolve()
            if not target.is_relative_to(state.topdir.resolve()) or not target.is_file():
                self._send(404, b"not found", "text/plain")
                return
            data = target.read_bytes()
            if head:
                self.send_response(200)
                self.send_header("Koji-Version", KOJI_VERSION)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return
            self._send(200, data, "application/octet-stream")

        def do_PUT(self) -> None:
            self._not_allowed()

        def do_DELETE(self) -> None:
            self._not_allowed()

        def _client_cn(self) -> str | None:
            """CN of the client certificate the TLS handshake verified, if any."""
            if not isinstance(self.connection, ssl.SSLSocket):
                return None
            peer = self.connection.getpeercert() or {}
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return str(value)
            return None

        def do_POST(self) -> None:
            if self._dropped():
                return
            parts = urllib.parse.urlsplit(self.path)
            if parts.path not in ("/kojihub", "/kojihub/ssllogin"):
                self._send(404, b"not found", "text/plain")
                return
            arrived = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            query = urllib.parse.parse_qs(parts.query)
            swallow = False
            try:
                if state.offline:
                    raise Fault(OFFLINE, "server is offline")
                session = hub.api.session_from(self.headers)
                if "filename" in query:
                    hub.api.check_callnum(session, "rawUpload", self.headers)
                    answer: Any = hub.api.upload(session, query, body)
                    key = f"{query['filepath'][0]}/{query['filename'][0]}"
                    with state.lock:
                        state.uploads.setdefault(key, [arrived, arrived, 0])
                        state.uploads[key][2] += len(body)
                        state.upload_chunks.setdefault(key, []).append(len(body))
                else:
                    args, method = xmlrpc.client.loads(body, use_builtin_types=True)
                    if method is None:
                        raise Fault(GENERIC, "no method")
                    if method == "sslLogin" and parts.path != "/kojihub/ssllogin":
                        raise Fault(AUTH, "sslLogin is only served at /ssllogin")
                    hub.api.check_callnum(session, method, self.headers)
                    with state.lock:
                        state.calls.append(method)
                    hub.api.client.cn = self._client_cn()
                    answer = hub.api.dispatch(session, method, list(args))
                    swallow = method == "build" and state.swallow_build
                response = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=True)
            except Fault as fault:
                response = xmlrpc.client.dumps(
                    xmlrpc.client.Fault(fault.code, fault.text), allow_none=True
                )
            except Exception as exc:
                response = xmlrpc.client.dumps(
                    xmlrpc.client.Fault(GENERIC, f"{type(exc).__name__}: {exc}"),
                    allow_none=True,
                )
            if swallow:
                with state.lock:
                    state.swallow_build = False
                self.close_connection = True
                return
            self._send(200, response.encode())

    return Handler


class _Api:
    def __init__(self, state: HubState) -> None:
        self.state = state
        self.client = threading.local()  # .cn: the verified client certificate's CN

    # --- sessions ----------------------------------------------------------

    def session_from(self, headers: Any) -> dict[str, Any] | None:
        sid = headers.get("Koji-Session-Id")
        if sid is None:
            return None
        key = headers.get("Koji-Session-Key")
        with self.state.lock:
            session = self.state.sessions.get(int(sid))
        if session is None or session["key"] != key:
            raise Fault(AUTH, f"invalid session or session key (session id {sid})")
        return session

    def check_callnum(self, session: dict[str, Any] | None, method: str, headers: Any) -> None:
        raw = headers.get("Koji-Session-Callnum")
        if session is None or raw is None:
            return
        callnum = int(raw)
        with self.state.lock:
            last = session["callnum"]
            if last is not None and last > callnum:
                raise Fault(SEQUENCE, f"{last} > {callnum} (session {session['id']})")
            if last is not None and last == callnum:
                raise Fault(
                    RETRY,
                    f"unable to retry call {callnum} (method {method}) for session {session['id']}",
                )
            if method in STATE_CHANGING:
                session["callnum"] = callnum

    def _new_session(self, user: str) -> dict[str, Any]:
        with self.state.lock:
            sid = len(self.state.sessions) + 1
            key = f"{sid}-{secrets.token_hex(10)}"
            self.state.sessions[sid] = {"id": sid, "key": key, "user": user, "callnum": None}
        return {"session-id": sid, "session-key": key, "header-auth": True}

    def dispatch(self, session: dict[str, Any] | None, method: str, args: list[Any]) -> Any:
        kwargs: dict[str, Any] = {}
        if args and isinstance(args[-1], dict) and args[-1].get("__starstar"):
            kwargs = {k: v for k, v in args.pop().items() if k != "__starstar"}
        func: Callable[..., Any] | None = getattr(self, f"rpc_{method}", None)
        if func is None:
            raise Fault(GENERIC, f"Invalid method: {method}")
        try:
            inspect.signature(func).bind(session, *args, **kwargs)
        except TypeError as exc:
            raise Fault(PARAMETER, f"{method}: {exc}") from None
        return func(session, *args, **kwargs)

    def _user(self, session: dict[str, Any] | None) -> str:
        if session is None:
            raise Fault(AUTH, "Not logged-in")
        return str(session["user"])

    # --- calls -------------------------------------------------------------

    def rpc_login(
        self, session: Any, username: str, password: str, opts: Any = None, renew: bool = False
    ) -> dict[str, Any]:
        if self.state.users.get(username) != password:
            raise Fault(AUTH, "invalid username or password")
        return self._new_session(username)

    def rpc_sslLogin(self, session: Any, proxyuser: str | None = None) -> dict[str, Any]:
        cn = getattr(self.client, "cn", None)
        if cn is None:
            raise Fault(AUTH, "could not verify client: no client certificate")
        if cn not in self.state.users:
            raise Fault(AUTH, f"Unknown user: {cn}")
        return self._new_session(cn)

    def rpc_logout(self, session: Any, session_id: int | None = None) -> None:
        if session is not None:
            with self.state.lock:
                self.state.sessions.pop(session["id"], None)

    def rpc_logoutChild(self, session: Any, session_id: int) -> None:
        return None

    def rpc_getAPIVersion(self, session: Any) -> int:
        return 1

    def rpc_getKojiVersion(self, session: Any) -> str:
        return KOJI_VERSION

    def rpc_getLoggedInUser(self, session: Any) -> dict[str, Any] | None:
        if session is None:
            return None
        name = session["user"]
        return {
            "id": self.state.user_id(name),
            "name": name,
            "status": 0,
            "usertype": 0,
            "krb_principals": [],
            "authtype": 0,
            "krb_principal": None,
        }

    def rpc_getUser(
        self, session: Any, userInfo: Any = None, strict: bool = False, krb_princs: bool = True
    ) -> dict[str, Any] | None:
        name = session["user"] if userInfo is None and session else userInfo
        if name not in self.state.users:
            return None
        return {"id": self.state.user_id(name), "name": name, "status": 0, "usertype": 0}

    def rpc_getBuildTarget(
        self, session: Any, info: Any, event: Any = None, strict: bool = False
    ) -> dict[str, Any] | None:
        target = self.state.targets.get(info)
        if target is None and strict:
            raise Fault(GENERIC, f"No such build target: {info}")
        return target

    def rpc_getTag(
        self, session: Any, tagInfo: Any, strict: bool = False, event: Any = None, **kw: Any
    ) -> dict[str, Any] | None:
        names = {t["build_tag"]: t["build_tag_name"] for t in self.state.targets.values()}
        names.update({t["dest_tag"]: t["dest_tag_name"] for t in self.state.targets.values()})
        ids = {name: ident for ident, name in names.items()}
        name = names.get(tagInfo, tagInfo)
        if name not in self.state.tag_arches:
            if strict:
                raise Fault(GENERIC, f"No such tagInfo: {tagInfo!r}")
            return None
        arches = self.state.tag_arches[name]
        return {
            "id": ids.get(name, 0),
            "name": name,
            "arches": " ".join(arches),
            "locked": False,
            "perm": None,
            "perm_id": None,
            "maven_support": False,
            "maven_include_all": False,
            "extra": {},
        }

    def rpc_getHost(
        self, session: Any, hostInfo: Any, strict: bool = False, event: Any = None
    ) -> dict[str, Any]:
        return {"id": 1, "name": "builder.test", "arches": "i386 x86_64", "enabled": True}

    def rpc_listPackages(
        self, session: Any, tagID: Any = None, userID: Any = None, pkgID: Any = None, **kw: Any
    ) -> list[dict[str, Any]]:
        tag = self.rpc_getTag(session, tagID)
        names = self.state.tag_packages.get(tag["name"], []) if tag else []
        if pkgID is not None:
            names = [name for name in names if name == pkgID]
        return [
            {"package_id": index + 1, "package_name": name, "tag_name": tagID, "blocked": False}
            for index, name in enumerate(names)
        ]

    def rpc_getPackageConfig(
        self, session: Any, tag: Any, pkg: Any, event: Any = None, strict: bool = False
    ) -> dict[str, Any] | None:
        if pkg not in self.state.tag_packages.get(tag, []):
            return None
        return {"package_name": pkg, "tag_name": tag, "blocked": False, "owner_name": "kojiadmin"}

    def upload(
        self, session: dict[str, Any] | None, query: dict[str, list[str]], body: bytes
    ) -> dict[str, Any]:
        if session is None:
            # koji reads the upload's query string as the deprecated session arguments
            raise Fault(AUTH, "'session-id' not specified in session args")

        def one(name: str, default: str | None = None) -> str:
            values = query.get(name)
            if not values:
                if default is None:
                    raise Fault(PARAMETER, f"upload: missing {name}")
                return default
            return values[0]

        name, path = one("filename"), one("filepath")
        verify, offset = one("fileverify", ""), int(one("offset", "0"))
        overwrite = one("overwrite", "") in ("1", "True", "true")
        target = self._upload_target(path, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if offset == 0 and target.exists():
            if not overwrite:
                raise Fault(GENERIC, f"upload path exists: {path}/{name}")
            target.unlink()
        with open(target, "r+b" if target.exists() else "wb") as handle:
            handle.seek(offset)
            handle.write(body)
        size = len(body)
        result: dict[str, Any] = {"size": size, "fileverify": verify, "offset": offset}
        if verify == "adler32":
            result["hexdigest"] = f"{zlib.adler32(body) & 0xFFFFFFFF:08x}"
        elif verify:
            raise Fault(GENERIC, f"Unsupported verify type: {verify}")
        return result

    def _upload_target(self, path: str, name: str) -> Path:
        if "/" in name or name.startswith(".") or ".." in path.split("/") or path.startswith("/"):
            raise Fault(GENERIC, f"invalid upload path {path!r}/{name!r}")
        return self.state.topdir / "work" / path / name

    def rpc_checkUpload(
        self, session: Any, path: str, name: str, verify: str | None = None, **kw: Any
    ) -> dict[str, Any] | None:
        self._user(session)
        target = self._upload_target(path, name)
        if not target.is_file():
            return None
        with self.state.lock:
            if f"{path}/{name}" in self.state.uploads:
                self.state.uploads[f"{path}/{name}"][1] = time.monotonic()
        stat = target.stat()
        info: dict[str, Any] = {"size": stat.st_size, "mtime": stat.st_mtime}
        if verify == "adler32":
            info["sumlength"] = stat.st_size
            info["hexdigest"] = f"{zlib.adler32(target.read_bytes()) & 0xFFFFFFFF:08x}"
        return info

    def rpc_build(
        self,
        session: Any,
        src: str,
        target: str,
        opts: dict[str, Any] | None = None,
        priority: int | None = None,
        channel: str | None = None,
    ) -> int:
        # like koji's hub, build() checks the login and creates the task: the target and
        # the build_from_srpm policy are checked by the builder, which fails the task
        user = self._user(session)
        opts = dict(opts or {})
        owner = self.state.user_id(user)
        with self.state.lock:
            parent = self._new_task("build", owner, [src, target, opts], priority=priority or 20)
            parent.state = OPEN
            parent.started = time.time()
        if not self.state.run_builds:
            return parent.id
        worker = threading.Thread(
            target=self._start_build, args=(parent, src, target, opts), daemon=True
        )
        self.state.threads.append(worker)
        worker.start()
        return parent.id

    def _new_task(self, method: str, owner: int, request: list[Any], **extra: Any) -> Task:
        with self.state.lock:
            task_id = self.state.next_task
            self.state.next_task += 1
            task = Task(task_id, method, owner, request, **extra)
            self.state.tasks[task_id] = task
        return task

    # --- the builder -------------------------------------------------------

    def _finish(self, task: Task, state: int, result: Any = None, fault: Any = None) -> None:
        with self.state.lock:
            if task.state in DONE:
                return
            task.state, task.result, task.fault = state, result, fault
            task.completed = time.time()

    def _start_build(self, parent: Task, src: str, target: str, opts: dict[str, Any]) -> None:
        """What kojid's build task checks before it makes any child task."""
        info = self.state.targets.get(target)
        scm = "://" in src or src.startswith("git+")
        scratch = bool(opts.get("scratch"))
        if info is None:
            self._finish(parent, FAILED, fault=(GENERIC, f"unknown build target: {target}"))
            return
        if not scm and not scratch:
            self._finish(parent, FAILED, fault=(NOT_ALLOWED, POLICY_REFUSAL))
            return
        arches = list(self.state.tag_arches[info["build_tag_name"]])
        if opts.get("arch_override"):
            wanted = str(opts["arch_override"]).split()
            arches = [arch for arch in arches if arch in wanted]
        if not self.state.repo_ready:
            waitrepo = self._new_task(
                "waitrepo", parent.owner, [info["build_tag"], None, None], parent=parent.id
            )
            waitrepo.state, waitrepo.started = OPEN, time.time()
            self._finish(waitrepo, CLOSED, result={"id": 1, "tag_id": info["build_tag"]})
            self.state.repo_ready = True
        self._run_build(parent, src, scm, scratch, arches, info)

    def _run_build(
        self,
        parent: Task,
        src: str,
        scm: bool,
        scratch: bool,
        arches: list[str],
        target: dict[str, Any],
    ) -> None:
        srpm_task = self._new_task(
            "buildSRPMFromSCM" if scm else "rebuildSRPM",
            parent.owner,
            [src, target["build_tag"], {}],
            label="srpm",
            parent=parent.id,
        )
        with self.state.lock:
            srpm_task.state, srpm_task.started = OPEN, time.time()
        srpm_dir = self.state.task_dir(srpm_task.id)
        srpm_dir.mkdir(parents=True, exist_ok=True)
        # an SCM URL stands for the SRPM a test registered for it (no real checkout here)
        source = self.state.scm_srpms.get(src) if scm else self.state.topdir / "work" / src
        if source is None:
            self._finish(
                srpm_task, FAILED, fault=(BUILD, f"Could not checkout {src}: no such repository")
            )
            self._finish(parent, FAILED, fault=srpm_task.fault)
            return
        if not source.is_file():  # kojid's rebuildSRPM: the upload it was given is not there
            self._finish(srpm_task, FAILED, fault=(BUILD, f"Input SRPM file missing: {source}"))
            self._finish(parent, FAILED, fault=srpm_task.fault)
            return
        nvr = source.name.removesuffix(".src.rpm")
        if not scratch and nvr in self.state.builds:
            self._finish(srpm_task, CLOSED, result={})
            fault = (
                GENERIC,
                f"Build already exists (id={self.state.builds[nvr]}, state=COMPLETE): "
                f"{{'name': '{nvr.rsplit('-', 2)[0]}', 'task_id': {parent.id}}}",
            )
            self._finish(parent, FAILED, fault=fault)
            return
        shutil.copy2(source, srpm_dir / source.name)
        (srpm_dir / "build.log").write_text(f"srpm {source.name} taken as is\n")
        relative = f"tasks/{srpm_task.id % 10000}/{srpm_task.id}"
        self._finish(
            srpm_task,
            CLOSED,
            result={
                "srpm": f"{relative}/{source.name}",
                "logs": [f"{relative}/build.log"],
                "brootid": srpm_task.id,
            },
        )
        children = []
        for index, label in enumerate(arches):
            keep_srpm = index == 0  # kojid: the first buildArch also outputs the SRPM
            child = self._new_task(
                "buildArch",
                parent.owner,
                [src, target["build_tag"], label, keep_srpm, {}],
                label=label,
                arch=CANON.get(label, label),
                parent=parent.id,
            )
            children.append(child)
        workers = [
            threading.Thread(target=self._build_arch, args=(child, source), daemon=True)
            for child in children
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [child for child in children if child.state == FAILED]
        if failed:
            self._finish(parent, FAILED, fault=failed[0].fault)
        elif any(child.state == CANCELED for child in children):
            self._finish(parent, CANCELED)
        else:
            if not scratch:
                with self.state.lock:
                    self.state.builds[nvr] = len(self.state.builds) + 1
                tag = self._new_task(
                    "tagBuild",
                    parent.owner,
                    [target["dest_tag"], self.state.builds[nvr]],
                    parent=parent.id,
                )
                self._finish(tag, CLOSED)
            self._finish(parent, CLOSED, result=None)

    def _build_arch(self, task: Task, srpm: Path) -> None:
        label = str(task.label)
        with self.state.lock:
            task.state, task.started = OPEN, time.time()
        out = self.state.task_dir(task.id)
        out.mkdir(parents=True, exist_ok=True)
        if self.state.build_delay:
            self.state.stopping.wait(self.state.build_delay)
        root_log = [f"DEBUG mock: building {srpm.name} for {label}", "INFO installing buildroot"]
        (out / "hw_info.log").write_text("CPU(s): 2\n")
        (out / "mock_config.log").write_text(f"config_opts['target_arch'] = '{label}'\n")
        relative = f"tasks/{task.id % 10000}/{task.id}"
        if self.state.fail_arch == label:
            (out / "build.log").write_text(
                f"Building target platforms: {label}\n"
                "+ make\n"
                "tiny.c:1:1: error: unknown type name 'broken'\n"
                "error: Bad exit status from /var/tmp/rpm-tmp.1 (%build)\n"
                "RPM build errors:\n"
            )
            root_log.append("ERROR: Command failed: rpmbuild -bb")
            (out / "root.log").write_text("\n".join(root_log) + "\n")
            self._finish(
                task,
                FAILED,
                fault=(
                    BUILD,
                    f"error building package (arch {label}), mock exited with status 1; "
                    "see build.log or root.log for more information",
                ),
            )
            return
        (self.state.topdir / "scratch").mkdir(exist_ok=True)
        topdir = Path(tempfile.mkdtemp(prefix=f"{task.id}-", dir=self.state.topdir / "scratch"))
        environment = {**os.environ, "LC_ALL": "C"}
        run = subprocess.run(
            [
                "rpmbuild",
                "--rebuild",
                "--nodeps",
                "--target",
                label,
                "--define",
                f"_topdir {topdir}",
                str(srpm),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            env=environment,
        )
        (out / "build.log").write_text(run.stdout)
        (out / "root.log").write_text("\n".join(root_log) + "\n")
        rpms = []
        for rpm in sorted((topdir / "RPMS").rglob("*.rpm")):
            shutil.move(rpm, out / rpm.name)
            rpms.append(f"{relative}/{rpm.name}")
        shutil.rmtree(topdir, ignore_errors=True)
        srpms = []
        if task.request[3]:  # keep_srpm
            shutil.copy2(srpm, out / srpm.name)
            srpms.append(f"{relative}/{srpm.name}")
        (out / "state.log").write_text("done\n")
        if run.returncode != 0:
            self._finish(
                task,
                FAILED,
                fault=(
                    BUILD,
                    f"error building package (arch {label}), mock exited with status 1; "
                    "see build.log or root.log for more information",
                ),
            )
            return
        logs = [
            f"{relative}/{name}"
            for name in ("build.log", "root.log", "state.log", "hw_info.log", "mock_config.log")
        ]
        self._finish(
            task,
            CLOSED,
            result={"rpms": rpms, "srpms": srpms, "logs": logs, "brootid": task.id},
        )

    # --- tasks -------------------------------------------------------------

    def _task(self, task_id: int, strict: bool = True) -> Task | None:
        task = self.state.tasks.get(int(task_id))
        if task is None and strict:
            raise Fault(GENERIC, f"No such task: {task_id}")
        return task

    def rpc_getTaskInfo(
        self, session: Any, task_id: Any, request: bool = False, strict: bool = False
    ) -> Any:
        if isinstance(task_id, list):
            return [self.rpc_getTaskInfo(session, one, request, strict) for one in task_id]
        task = self._task(task_id, strict)
        return None if task is None else task.info(request)

    def rpc_getTaskChildren(
        self, session: Any, task_id: int, request: bool = False, strict: bool = False
    ) -> list[dict[str, Any]]:
        with self.state.lock:
            children = [t for t in self.state.tasks.values() if t.parent == task_id]
        # koji's query has no ORDER BY: the order is the database's, not the tasks'
        return [child.info(request) for child in sorted(children, key=lambda t: -t.id)]

    def rpc_getTaskResult(self, session: Any, task_id: int, raise_fault: bool = True) -> Any:
        task = self._task(task_id)
        assert task is not None
        if task.state == FAILED and task.fault is not None:
            code, text = task.fault
            if raise_fault:
                raise Fault(code, text)
            return {"faultCode": code, "faultString": text}
        if task.state == CANCELED:
            raise Fault(GENERIC, f"Task {task_id} is canceled")
        if task.state != CLOSED:
            raise Fault(GENERIC, f"Task {task_id} is not finished")
        return task.result

    def rpc_listTaskOutput(
        self, session: Any, taskID: int, stat: bool = False, all_volumes: bool = False
    ) -> Any:
        """Like the hub's list_task_output: the DEFAULT volume, or with all_volumes every
        volume's copy of the task directory, by file name."""
        found: dict[str, dict[str, Any]] = {}
        for volume in self.state.volumes if all_volumes else ["DEFAULT"]:
            folder = self.state.task_dir(int(taskID), volume)
            files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
            for path in files:
                info = path.stat()
                found.setdefault(path.name, {})[volume] = {
                    "st_size": str(info.st_size),
                    "st_atime": info.st_atime,
                    "st_mtime": info.st_mtime,
                    "st_ctime": info.st_ctime,
                }
        if all_volumes:
            if stat:
                return found
            return {name: list(volumes) for name, volumes in found.items()}
        if stat:
            return {name: volumes["DEFAULT"] for name, volumes in found.items()}
        return list(found)

    def rpc_downloadTaskOutput(
        self,
        session: Any,
        taskID: int,
        fileName: str,
        offset: int = 0,
        size: int = -1,
        volume: Any = None,
    ) -> str:
        if "/" in fileName or fileName.startswith("."):
            raise Fault(GENERIC, f"Invalid file name: {fileName}")
        path = self.state.task_dir(int(taskID)) / fileName
        if not path.is_file():
            raise Fault(GENERIC, f"no file {fileName} output by task {taskID}")
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read() if size < 0 else handle.read(size)
        return base64.b64encode(data).decode()

    def rpc_cancelTask(self, session: Any, task_id: int, recurse: bool = True) -> None:
        self._user(session)
        task = self._task(task_id)
        assert task is not None
        self._finish(task, CANCELED)
        if recurse:
            with self.state.lock:
                children = [t for t in self.state.tasks.values() if t.parent == task.id]
            for child in children:
                self._finish(child, CANCELED)

    def rpc_listTasks(
        self, session: Any, opts: dict[str, Any] | None = None, queryOpts: Any = None
    ) -> list[dict[str, Any]]:
        opts = opts or {}
        after = opts.get("createdAfter")
        if isinstance(after, str):
            after = dt.datetime.fromisoformat(after).replace(tzinfo=dt.UTC).timestamp()
        found = []
        with self.state.lock:
            tasks = list(self.state.tasks.values())
        for task in tasks:
            if "owner" in opts and opts["owner"] is not None:
                owners = opts["owner"] if isinstance(opts["owner"], list) else [opts["owner"]]
                if task.owner not in owners:
                    continue
            if "method" in opts and task.method != opts["method"]:
                continue
            if "parent" in opts and task.parent != opts["parent"]:
                continue
            if "state" in opts and task.state not in opts["state"]:
                continue
            if after is not None and task.created <= float(after):
                continue
            found.append(task.info(request=True))
        return sorted(found, key=lambda info: info["id"])
