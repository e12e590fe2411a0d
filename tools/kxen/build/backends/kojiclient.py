"""Builds through a koji hub with the real koji client library.

A scratch build uploads the SRPM, submits `build(..., {'scratch': True})`, watches
the task tree and downloads every RPM and log of each `buildArch` child to
`results/<nvr>/<arch>/`. A release build submits an SCM URL instead.

The hub is a remote service that goes away now and then: every read-only call is
retried through connection errors and `ServerOffline` with bounded backoff (the
sleep is injectable), and when the hub stays away the error names the command that
resumes. `build()` itself is never sent twice: when its answer is lost, the task is
looked up with `listTasks` instead. Like the rest of the library this never prints.
"""

from __future__ import annotations

import http.client
import random
import re
import ssl
import string
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import koji

from kxen.build import results
from kxen.build.backends.base import ArchResult, neutralise
from kxen.errors import BuildError, HubError, InputError, PublishError
from kxen.support.progress import NullProgress, Progress
from kxen.support.runner import Runner

T = TypeVar("T")

STATE_NAMES = {0: "free", 1: "open", 2: "closed", 3: "canceled", 4: "assigned", 5: "failed"}
CLOSED, CANCELED, FAILED = 2, 3, 5
DONE = (CLOSED, CANCELED, FAILED)
LOG_TAIL = 20
# A real hub's clock may differ from ours: look back this far when reconciling.
CLOCK_SLACK = 600.0
KOJI_UPLOAD_BLOCKSIZE = 1 << 20
UPLOAD_BLOCKSIZE = 8 << 20


@dataclass(frozen=True)
class Profile:
    """A koji profile as koji's own config files describe it."""

    name: str
    server: str
    topurl: str
    authtype: str | None
    options: dict[str, Any]
    user: str | None = None
    password: str | None = None
    config_file: Path | None = None

    def command(self, verb: str, task_id: int) -> str:
        """The kxen command line that does `verb` (watch, download) for this task."""
        config = f" --koji-config {self.config_file}" if self.config_file else ""
        return f"kxen koji {verb} --profile {self.name}{config} {task_id}"


def load_profile(
    name: str,
    config_file: Path | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Profile:
    """The profile `name` from /etc/koji.conf(.d) and ~/.koji/config(.d), or `config_file`."""
    try:
        options = dict(
            koji.read_config(name, user_config=str(config_file) if config_file else None)
        )
    except koji.ConfigurationError as exc:
        raise InputError(f"koji profile {name!r}: {exc}") from None
    topurl = options.get("topurl")
    if not topurl:
        raise InputError(f"koji profile {name!r} has no topurl: kxen downloads task output from it")
    return Profile(
        name=name,
        server=str(options["server"]),
        topurl=str(topurl).rstrip("/"),
        authtype=options.get("authtype"),
        options=options,
        user=user,
        password=password,
        config_file=config_file,
    )


@dataclass(frozen=True)
class Patience:
    """How long the hub may stay unreachable before we give up, and the backoff."""

    total: float = 900.0
    first: float = 2.0
    longest: float = 60.0


@dataclass(frozen=True)
class TaskView:
    id: int
    method: str
    label: str | None
    arch: str
    state: str
    seconds: float | None
    parent: int | None

    @property
    def name(self) -> str:
        return self.label or self.method

    @classmethod
    def of(cls, info: dict[str, Any], now: float) -> TaskView:
        start, end = info.get("start_ts"), info.get("completion_ts")
        seconds = None if start is None else float(end if end is not None else now) - start
        return cls(
            id=int(info["id"]),
            method=str(info["method"]),
            label=info.get("label"),
            arch=str(info.get("arch") or ""),
            state=STATE_NAMES.get(int(info["state"]), str(info["state"])),
            seconds=seconds,
            parent=info.get("parent"),
        )


@dataclass(frozen=True)
class TaskTree:
    root: TaskView
    children: tuple[TaskView, ...]

    @property
    def done(self) -> bool:
        return self.root.state in ("closed", "canceled", "failed")

    def lines(self) -> list[str]:
        def one(view: TaskView) -> str:
            took = "" if view.seconds is None else f" {view.seconds:.0f}s"
            return f"{view.id} {view.method} ({view.name}): {view.state}{took}"

        return [one(self.root), *(f"  {one(child)}" for child in self.children)]


@dataclass(frozen=True)
class ArchFailure:
    arch: str
    task_id: int
    fault: str
    logs: dict[str, list[str]]


class RemoteBuildFailed(BuildError):
    """The koji task failed: the arch, the fault text and the tail of its logs."""

    def __init__(self, task_id: int, failures: list[ArchFailure], fault: str) -> None:
        first = failures[0] if failures else None
        where = f" on {first.arch} (task {first.task_id})" if first else ""
        details = []
        for failure in failures:
            details.append(f"{failure.arch}: {failure.fault}")
            for log, tail in failure.logs.items():
                details.append(f"{failure.arch} {log} (last {len(tail)} lines):")
                details.extend(f"  {line}" for line in tail)
        super().__init__(
            f"koji task {task_id} failed{where}: {first.fault if first else fault}",
            details=details,
        )
        self.task_id = task_id
        self.failures = failures
        self.payload = {
            "task_id": task_id,
            "failures": [
                {"arch": f.arch, "task_id": f.task_id, "fault": f.fault, "logs": f.logs}
                for f in failures
            ],
        }


@dataclass
class Downloaded:
    task_id: int
    nvr: str
    results_dir: Path
    arches: dict[str, list[str]] = field(default_factory=dict)


TasksCallback = Callable[[TaskTree], None]


class KojiDriver:
    """One logged-in (or anonymous) session to a hub and the operations kxen needs."""

    def __init__(
        self,
        profile: Profile,
        *,
        progress: Progress | None = None,
        on_tasks: TasksCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
        patience: Patience | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.profile = profile
        self.progress = progress or NullProgress()
        self.on_tasks = on_tasks
        self.sleep = sleep
        self.patience = patience or Patience()
        interval = poll_interval or profile.options.get("poll_interval") or 6
        self.poll_interval = float(interval)
        opts = koji.grab_session_options(profile.options)
        # The driver retries by itself (bounded, injectable sleep) and never resends build().
        opts.update(max_retries=0, anon_retry=False, offline_retry=False)
        if profile.user:
            opts["user"] = profile.user
        if profile.password is not None:
            opts["password"] = profile.password
        self.session = koji.ClientSession(profile.server, opts)
        self._tls = download_context(profile.options)
        self.user: dict[str, Any] | None = None
        self.resume_hint = ""

    # --- plumbing ----------------------------------------------------------

    def _retrying(self, what: str, func: Callable[[], T]) -> T:
        waited, delay = 0.0, self.patience.first
        while True:
            try:
                return func()
            except koji.ServerOffline as exc:
                reason = f"the hub is offline ({exc})"
            except koji.GenericError:
                raise
            except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
                refused = tls_refusal(exc)
                if refused is not None:
                    raise HubError(
                        f"{what}: TLS with {self.profile.server} failed: {refused} "
                        "(check the profile's serverca and cert)"
                    ) from None
                reason = f"cannot reach the hub ({type(exc).__name__}: {exc})"
            if waited >= self.patience.total:
                details = [self.resume_hint] if self.resume_hint else []
                raise HubError(
                    f"{what}: {reason}; gave up after {waited:.0f}s ({self.profile.server})",
                    details=details,
                )
            self.progress.step(f"{what}: {reason}; retrying in {delay:.0f}s")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.patience.longest)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self.session, method)
        try:
            return self._retrying(method, lambda: function(*args, **kwargs))
        except koji.AuthError as exc:
            raise HubError(f"{method}: the hub refused us: {exc}") from None

    # --- session -----------------------------------------------------------

    def login(self) -> dict[str, Any]:
        """Log in with the profile's authtype (password, ssl, gssapi/kerberos)."""
        options = self.profile.options
        authtype = self.profile.authtype
        if authtype is None:
            if options.get("cert") and Path(options["cert"]).is_file():
                authtype = "ssl"
            elif self.profile.user:
                authtype = "password"
            else:
                authtype = "gssapi"
        if authtype == "noauth":
            raise InputError(f"koji profile {self.profile.name!r}: building needs a login")

        def attempt() -> None:
            if authtype == "password":
                if not self.profile.user or self.profile.password is None:
                    raise InputError(
                        "koji password login needs a user and a password "
                        "(--user and $KXEN_KOJI_PASSWORD)"
                    )
                self.session.login()
            elif authtype == "ssl":
                self.session.ssl_login(options.get("cert"), None, options.get("serverca"))
            elif authtype in ("gssapi", "kerberos"):
                self.session.gssapi_login(
                    principal=options.get("principal"), keytab=options.get("keytab")
                )
            else:
                raise InputError(f"koji profile {self.profile.name!r}: unknown authtype {authtype}")

        try:
            self._retrying("login", attempt)
        except koji.GenericError as exc:
            raise HubError(f"login to {self.profile.server} ({authtype}) failed: {exc}") from None
        user = self._call("getLoggedInUser")
        if not user:
            raise HubError(f"login to {self.profile.server} ({authtype}) gave no user")
        self.user = dict(user)
        return self.user

    def check_target(self, target: str) -> dict[str, Any]:
        info = self._call("getBuildTarget", target)
        if not info:
            raise InputError(
                f"koji build target {target!r} does not exist on {self.profile.server}"
            )
        return dict(info)

    def check_package(self, target: dict[str, Any], package: str) -> None:
        """A release build needs the package in the destination tag's package list."""
        listed = self._call("listPackages", tagID=target["dest_tag"], pkgID=package)
        if not any(row.get("package_name") == package and not row.get("blocked") for row in listed):
            raise InputError(
                f"package {package!r} is not in the package list of tag "
                f"{target['dest_tag_name']!r} (target {target['name']!r}); ask a koji admin "
                f"to add it (koji add-pkg {target['dest_tag_name']} {package} --owner ...)"
            )

    # --- submitting ----------------------------------------------------------

    def upload(self, srpm: Path) -> str:
        """Upload the SRPM to cli-build/<time>.<random>/; returns its path under work/."""
        letters = "".join(random.choices(string.ascii_letters, k=8))
        serverdir = f"cli-build/{time.time():.6f}.{letters}"

        def callback(done: int, total: int, piece: int, lap: float, elapsed: float) -> None:
            self.progress.transfer(srpm.name, done, total)

        self.progress.phase("upload", srpm.name)
        self._call(
            "uploadWrapper",
            str(srpm),
            serverdir,
            callback=callback,
            blocksize=upload_blocksize(self.profile.options),
        )
        return f"{serverdir}/{srpm.name}"

    def submit(
        self, src: str, target: str, opts: dict[str, Any], priority: int | None = None
    ) -> int:
        """`build()` exactly once: a lost answer is reconciled with listTasks, never resent."""
        self.progress.phase("submit", f"{src} to {target}")
        since = time.time() - CLOCK_SLACK
        while True:
            try:
                return int(self.session.build(src, target, opts, priority=priority))
            except koji.ServerOffline:
                offline = True
            except (koji.RetryError, OSError, http.client.HTTPException):
                offline = False
            except koji.AuthError as exc:
                raise HubError(f"build: the hub refused us: {exc}") from None
            except koji.GenericError as exc:
                raise BuildError(f"koji refused the build of {src} for {target}: {exc}") from None
            found = self._find_submitted(src, since)
            if found is not None:
                return found
            if not offline:
                # The hub has no such task: the call never reached it, so sending it is safe.
                self.progress.step("build() was not received by the hub; sending it again")
            self._retrying("build", self._raise_if_offline)

    def _raise_if_offline(self) -> None:
        self.session.getAPIVersion()

    def _find_submitted(self, src: str, since: float) -> int | None:
        owner = self.user["id"] if self.user else None
        opts: dict[str, Any] = {"method": "build", "createdAfter": since}
        if owner is not None:
            opts["owner"] = owner
        for task in self._call("listTasks", opts, {"order": "id"}):
            request = task.get("request")
            if isinstance(request, str):
                request = xmlrpc.client.loads(request)[0]
            if request and request[0] == src:
                return int(task["id"])
        return None

    # --- watching ------------------------------------------------------------

    def tree(self, task_id: int) -> TaskTree:
        info = self._call("getTaskInfo", task_id)
        if not info:
            raise InputError(f"koji task {task_id} does not exist on {self.profile.server}")
        children = self._call("getTaskChildren", task_id)
        now = time.time()
        return TaskTree(
            TaskView.of(info, now), tuple(TaskView.of(child, now) for child in children)
        )

    def watch(self, task_id: int) -> TaskTree:
        """Follow the task tree until it is done; raise RemoteBuildFailed if it failed."""
        self.resume_hint = f"resume with: {self.profile.command('watch', task_id)}"
        self.progress.phase("watch", f"task {task_id}")
        while True:
            tree = self.tree(task_id)
            if self.on_tasks:
                self.on_tasks(tree)
            self.progress.step(
                ", ".join(f"{child.name} {child.state}" for child in tree.children)
                or tree.root.state
            )
            if tree.done:
                break
            self.sleep(self.poll_interval)
        if tree.root.state == "failed":
            raise self._failure(tree)
        if tree.root.state == "canceled":
            raise BuildError(f"koji task {task_id} was canceled")
        return tree

    def _failure(self, tree: TaskTree) -> RemoteBuildFailed:
        failed = [child for child in tree.children if child.state == "failed"]
        failures = []
        for child in failed:
            result = self._call("getTaskResult", child.id, raise_fault=False)
            fault = str(result.get("faultString", "")) if isinstance(result, dict) else ""
            logs = {}
            for log in ("build.log", "root.log"):
                try:
                    data = self._call("downloadTaskOutput", child.id, log)
                except koji.GenericError:
                    continue
                lines = data.decode("utf-8", "replace").splitlines()
                logs[log] = [neutralise(line) for line in lines[-LOG_TAIL:]]
            failures.append(ArchFailure(child.name, child.id, neutralise(fault), logs))
        result = self._call("getTaskResult", tree.root.id, raise_fault=False)
        fault = str(result.get("faultString", "")) if isinstance(result, dict) else "failed"
        return RemoteBuildFailed(tree.root.id, failures, neutralise(fault))

    def cancel(self, task_id: int) -> None:
        if self.user is None:
            self.login()
        self._call("cancelTask", task_id)

    # --- downloading ---------------------------------------------------------

    def download(self, task_id: int, results_root: Path) -> Downloaded:
        """Every RPM and log of each buildArch child into results/<nvr>/<arch>/."""
        self.resume_hint = f"resume with: {self.profile.command('download', task_id)}"
        tree = self.tree(task_id)
        if tree.root.state != "closed":
            raise BuildError(f"koji task {task_id} is {tree.root.state}: nothing to download")
        srpm_task = next((c for c in tree.children if c.label == "srpm"), None)
        arch_tasks = [c for c in tree.children if c.method == "buildArch"]
        if srpm_task is None or not arch_tasks:
            raise InputError(f"koji task {task_id} is not a build task with buildArch children")
        srpm_listing = self._listing(srpm_task.id)
        srpms = [name for name in srpm_listing if name.endswith(".src.rpm")]
        if not srpms:
            raise BuildError(f"koji task {srpm_task.id} produced no SRPM")
        nvr = srpms[0].removesuffix(".src.rpm")
        outcome = Downloaded(task_id, nvr, results_root / nvr)
        results_root.mkdir(parents=True, exist_ok=True)
        self.progress.phase("download", f"task {task_id} into {outcome.results_dir}")
        with results.locked_nvr(results_root, nvr) as nvr_dir:
            nvr_dir.mkdir(parents=True, exist_ok=True)
            for child in arch_tasks:
                arch = child.name
                listing = self._listing(child.id)
                wanted = sorted(n for n in listing if n.endswith((".rpm", ".log")))
                with results.staging_for(nvr_dir, arch) as staging:
                    for name in wanted:
                        self._fetch(child.id, name, int(listing[name]["st_size"]), staging)
                    self._fetch(
                        srpm_task.id, srpms[0], int(srpm_listing[srpms[0]]["st_size"]), staging
                    )
                    rpms = [n for n in wanted if n.endswith(".rpm")]
                    record = {
                        "nvr": nvr,
                        "backend": "koji",
                        "hub": self.profile.server,
                        "task_id": task_id,
                        "arch_task_id": child.id,
                    }
                    result = ArchResult(
                        arch=arch,
                        ok=True,
                        seconds=child.seconds or 0.0,
                        rpms=[*rpms, srpms[0]],
                        logs=[n for n in wanted if n.endswith(".log")],
                    )
                    try:
                        results.publish(staging, nvr_dir / arch, result, record)
                    except OSError as exc:
                        raise PublishError(f"cannot publish {nvr_dir / arch}: {exc}") from None
                outcome.arches[arch] = result.rpms
        return outcome

    def _listing(self, task_id: int) -> dict[str, dict[str, Any]]:
        listing = self._call("listTaskOutput", task_id, stat=True)
        return {str(name): dict(info) for name, info in listing.items()}

    def _fetch(self, task_id: int, name: str, size: int, into: Path) -> None:
        url = (
            f"{self.profile.topurl}/work/tasks/{task_id % 10000}/{task_id}/"
            f"{urllib.parse.quote(name)}"
        )
        target = into / name

        def get() -> None:
            done = 0
            try:
                with (
                    urllib.request.urlopen(url, timeout=60, context=self._tls) as answer,
                    target.open("wb") as out,
                ):
                    while chunk := answer.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        self.progress.transfer(name, done, size)
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise ConnectionError(f"HTTP {exc.code} for {url}") from None
                raise BuildError(f"cannot download {url}: HTTP {exc.code}") from None
            if done != size:
                raise ConnectionError(f"{name}: got {done} of {size} bytes")

        self._retrying(f"download {name}", get)


def download_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS for topurl downloads: the system's CAs, plus the profile's `serverca` (a hub with
    a private CA usually serves its files with the same certificate)."""
    context = ssl.create_default_context()
    serverca = options.get("serverca")
    if serverca and Path(serverca).is_file():
        context.load_verify_locations(serverca)
    return context


def tls_refusal(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc` if retrying cannot help (a certificate either side refused).

    requests and urllib wrap the ssl error a few levels deep (in args, `reason` or the
    exception chain); an unexpected EOF or reset during the handshake is a dropped
    connection and is retried like any other."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError) and not isinstance(
            item, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
        ):
            return item
        pending += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


def upload_blocksize(options: dict[str, Any]) -> int:
    """Chunk size of the fast upload: the profile's `upload_blocksize` if it sets one.

    koji's 1 MiB default costs the hub one request, one session check and one lock per
    MiB; the hub streams each chunk to disk in 64 KiB reads whatever its size, so 8 MiB
    chunks upload a 140 MiB kernel SRPM with an eighth of the round trips."""
    configured = int(options.get("upload_blocksize") or KOJI_UPLOAD_BLOCKSIZE)
    return UPLOAD_BLOCKSIZE if configured == KOJI_UPLOAD_BLOCKSIZE else configured


def scratch_opts(arches: list[str] | None) -> dict[str, Any]:
    opts: dict[str, Any] = {"scratch": True, "custom_user_metadata": {}}
    if arches:
        opts["arch_override"] = " ".join(arches)
    return opts


def scm_url(repo: Path, runner: Runner, url: str | None, commit: str | None) -> str:
    """`git+https://...#<commit>` of this checkout for a release build.

    The URL comes from `url` or the checkout's `origin` remote; the commit from `commit`
    or HEAD, which must then have no uncommitted changes (koji builds the commit, not the
    working tree)."""
    if url is None:
        remote = runner.run(["git", "-C", repo, "remote", "get-url", "origin"], check=False)
        if not remote.ok or not remote.output.strip():
            raise InputError(f"{repo} has no git remote 'origin': give --scm-url")
        url = remote.output.strip().splitlines()[-1]
    if url.startswith(("https://", "http://")):
        url = f"git+{url}"
    if not url.startswith(("git+https://", "git+http://", "git://", "git+file://")):
        raise InputError(
            f"SCM URL {url!r}: koji fetches anonymously, give a git+https:// URL (--scm-url)"
        )
    url = url.split("#", 1)[0]
    if commit is None:
        dirty = runner.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], check=False
        )
        if not dirty.ok:
            raise InputError(f"{repo} is not a git checkout: give --scm-url and --commit")
        if dirty.output.strip():
            raise InputError(
                f"{repo} has uncommitted changes: koji builds a pushed commit "
                "(commit and push, or give --commit)"
            )
        head = runner.run(["git", "-C", repo, "rev-parse", "HEAD"], check=False)
        commit = head.output.strip().splitlines()[-1] if head.ok else ""
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit or ""):
        raise InputError(f"commit {commit!r}: expected a commit hash (7 to 40 hex digits)")
    return f"{url}#{commit}"
