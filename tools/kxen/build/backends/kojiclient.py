"""A session to a koji hub with the real koji client library: what the koji backend
(`kojibackend`) and `kxen koji watch` do there.

It uploads an SRPM, submits `build(...)` (scratch, or a release build of an SCM URL),
follows the task tree, lists a task's output on every volume and downloads it from the
profile's `topurl`, the paths made by koji's own `PathInfo`.

The hub is a remote service that goes away now and then: every read-only call and
every download is retried through connection errors and `ServerOffline` under
`kxen.support.download`'s policy with the hub's patience (the sleep is injectable), and
when the hub stays away the error names the command that resumes. `build()` itself is
never sent twice: when its answer is lost, the task is looked up with `listTasks`
instead. Like the rest of the library this never prints.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import signal
import ssl
import string
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import koji

from kxen.errors import BuildError, HubError, InputError, Interrupted, KxenError
from kxen.support import download
from kxen.support.download import Patience
from kxen.support.progress import NullProgress, Progress
from kxen.support.runner import Runner
from kxen.support.text import neutralise

T = TypeVar("T")

STATE_NAMES = {0: "free", 1: "open", 2: "closed", 3: "canceled", 4: "assigned", 5: "failed"}
CLOSED, CANCELED, FAILED = 2, 3, 5
DONE = (CLOSED, CANCELED, FAILED)
LOG_TAIL = 20
TAILED_LOGS = ("build.log", "root.log", "mock_output.log", "checkout.log")
"""A failed task's logs whose last lines explain it, in this order: rpmbuild's and mock's
for a failed build; kojid's capture of mock's output and its SCM checkout's log for a
failed SRPM step, whose cause is often only there."""
LOCAL_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""OSErrors of local files, which retrying cannot mend (a connection error is also an
OSError, and is retried)."""
SCM_SCHEMES = ("git://", "git+http://", "git+https://", "git+rsync://")
"""The git URLs kojid's SCM class fetches (koji/daemon.py: SCM.types)."""
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
            details.extend(tail_lines(failure.logs, f"{failure.arch} "))
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


class Detached(Interrupted):
    """Ctrl-C while following a koji task: kxen stopped following it; the build goes on
    on the hub (or was canceled, if asked)."""

    def __init__(self, task_id: int, details: list[str]) -> None:
        super().__init__(signal.SIGINT)
        self.details = details
        self.payload = {"task_id": task_id}


@dataclass(frozen=True)
class Output:
    """A file a task wrote, on the volume that holds it."""

    task_id: int
    name: str
    volume: str
    size: int


TasksCallback = Callable[[TaskTree], None]
SubmittedCallback = Callable[[int, str], None]
"""Called as (task id, what was submitted) once the hub created the build task."""


class KojiDriver:
    """One logged-in (or anonymous) session to a hub and the operations kxen needs."""

    def __init__(
        self,
        profile: Profile,
        *,
        progress: Progress | None = None,
        on_tasks: TasksCallback | None = None,
        on_submitted: SubmittedCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
        patience: Patience | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.profile = profile
        self.progress = progress or NullProgress()
        self.on_tasks = on_tasks
        self.on_submitted = on_submitted
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
        self._paths = koji.PathInfo(topdir=profile.topurl)
        self.user: dict[str, Any] | None = None
        self.resume_hint = ""

    # --- plumbing ----------------------------------------------------------

    def _retrying(self, what: str, func: Callable[[], T]) -> T:
        """`func()` under kxen's retry policy with the hub's patience: a dropped
        connection or a hub in maintenance is retried, a certificate refusal is not."""

        def attempt() -> T:
            try:
                return func()
            except koji.ServerOffline as exc:
                raise download.Transient(f"the hub is offline ({exc})") from exc
            except koji.GenericError:
                raise
            except LOCAL_FILE_ERRORS as exc:
                # a file of ours (the SRPM being uploaded), not the network: no retry
                raise InputError(f"{what}: {exc.strerror}: {exc.filename}") from None
            except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
                refused = download.tls_refusal(exc)
                if refused is not None:
                    raise self._tls_failed(what, self.profile.server, refused) from None
                raise download.Transient(
                    f"cannot reach the hub ({type(exc).__name__}: {exc})"
                ) from exc

        try:
            return download.retrying(attempt, self.patience, self.sleep, self._notice(what))
        except download.GaveUp as exc:
            raise self._gave_up(what, exc.reason, exc.waited, self.profile.server) from None

    def _notice(self, what: str) -> download.RetryNotice:
        def notice(reason: str, delay: float) -> None:
            self.progress.notice(f"{what}: {reason}; retrying in {delay:.0f}s")

        return notice

    def _gave_up(self, what: str, reason: str, waited: float, where: str) -> HubError:
        details = [self.resume_hint] if self.resume_hint else []
        return HubError(f"{what}: {reason}; gave up after {waited:.0f}s ({where})", details=details)

    @staticmethod
    def _tls_failed(what: str, where: str, refused: object) -> HubError:
        return HubError(
            f"{what}: TLS with {where} failed: {refused} (check the profile's serverca and cert)"
        )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self.session, method)
        try:
            return self._retrying(method, lambda: function(*args, **kwargs))
        except (koji.AuthError, koji.ActionNotAllowed) as exc:
            # AuthError covers AuthExpired (after the client's own renewal failed) and
            # SequenceError (an old callnum); ActionNotAllowed is e.g. an upload without login
            raise HubError(f"{method}: the hub refused us: {neutralise(str(exc))}") from None

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
        task_id = self._submit_once(src, target, opts, priority)
        if self.on_submitted:
            self.on_submitted(task_id, src)
        return task_id

    def _submit_once(
        self, src: str, target: str, opts: dict[str, Any], priority: int | None
    ) -> int:
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
                self.progress.notice("build() was not received by the hub; sending it again")
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
        # the hub lists children in no particular order: show them in creation order
        children = sorted(self._call("getTaskChildren", task_id), key=lambda c: int(c["id"]))
        now = time.time()
        return TaskTree(
            TaskView.of(info, now), tuple(TaskView.of(child, now) for child in children)
        )

    def follow(self, task_id: int) -> Iterator[TaskTree]:
        """The task tree at every poll (also told to `on_tasks`) until it is done."""
        self.progress.phase("watch", f"task {task_id}")
        while True:
            self.resume_hint = f"resume with: {self.profile.command('watch', task_id)}"
            tree = self.tree(task_id)
            if self.on_tasks:
                self.on_tasks(tree)
            self.progress.step(
                ", ".join(f"{child.name} {child.state}" for child in tree.children)
                or tree.root.state
            )
            yield tree
            if tree.done:
                return
            self.sleep(self.poll_interval)

    def watch(self, task_id: int, cancel_on_interrupt: bool = False) -> TaskTree:
        """Follow the task tree until it is done; raise RemoteBuildFailed if it failed.
        Ctrl-C stops following (`Detached`) and cancels the task only if asked."""
        with self.detaching(task_id, cancel_on_interrupt):
            *_, tree = self.follow(task_id)
        problem = self.outcome_error(tree)
        if problem is not None:
            raise problem
        return tree

    def outcome_error(self, tree: TaskTree) -> KxenError | None:
        """Why a finished task tree did not build (None if it did)."""
        if tree.root.state == "failed":
            return self._failure(tree)
        if tree.root.state == "canceled":
            return BuildError(f"koji task {tree.root.id} was canceled")
        return None

    @contextlib.contextmanager
    def detaching(self, task_id: int, cancel: bool) -> Iterator[None]:
        """Ctrl-C inside stops following `task_id`; the task goes on on the hub unless
        `cancel`."""
        try:
            yield
        except KeyboardInterrupt:
            if cancel:
                self.cancel(task_id)
                raise Detached(task_id, [f"koji task {task_id} was canceled"]) from None
            raise Detached(
                task_id,
                [
                    f"koji task {task_id} keeps running on the hub",
                    f"resume with: {self.profile.command('watch', task_id)}",
                ],
            ) from None

    def _failure(self, tree: TaskTree) -> RemoteBuildFailed:
        failed = [child for child in tree.children if child.state == "failed"]
        failures = []
        for child in failed:
            logs = {}
            for log in TAILED_LOGS:
                try:
                    logs[log] = log_tail(self._call("downloadTaskOutput", child.id, log))
                except koji.GenericError:
                    continue
            failures.append(ArchFailure(child.name, child.id, self.fault(child.id), logs))
        result = self._call("getTaskResult", tree.root.id, raise_fault=False)
        fault = str(result.get("faultString", "")) if isinstance(result, dict) else "failed"
        return RemoteBuildFailed(tree.root.id, failures, neutralise(fault))

    def fault(self, task_id: int) -> str:
        """The fault text a failed task stored (neutralised)."""
        result = self._call("getTaskResult", task_id, raise_fault=False)
        return neutralise(str(result.get("faultString", "")) if isinstance(result, dict) else "")

    def cancel(self, task_id: int) -> None:
        if self.user is None:
            self.login()
        self._call("cancelTask", task_id)

    # --- task output ---------------------------------------------------------

    def outputs(self, task_id: int) -> dict[str, Output]:
        """Every file the task wrote, by name, on the volume that holds it (DEFAULT first)."""
        listing = self._call("listTaskOutput", task_id, stat=True, all_volumes=True)
        found = {}
        for name, volumes in listing.items():
            volume = "DEFAULT" if "DEFAULT" in volumes else sorted(volumes)[0]
            found[str(name)] = Output(task_id, str(name), volume, int(volumes[volume]["st_size"]))
        return found

    def fetch(self, output: Output, into: Path) -> Path:
        """Download `output` from topurl into `into` under kxen's retry policy, its size
        checked against the listing."""
        relative = f"{self._paths.taskrelpath(output.task_id)}/{urllib.parse.quote(output.name)}"
        url = f"{self._paths.work(volume=output.volume)}/{relative}"
        request = download.Request(url, output.name, size=output.size, context=self._tls)
        target = into / output.name
        what = f"download {output.name}"
        try:
            with target.open("wb") as out:
                download.fetch(
                    request,
                    out,
                    patience=self.patience,
                    sleep=self.sleep,
                    progress=self.progress.transfer,
                    on_retry=self._notice(what),
                )
        except download.TlsRefused as exc:
            raise self._tls_failed(what, self.profile.topurl, exc.reason) from None
        except download.Unavailable as exc:
            raise self._gave_up(what, exc.reason, exc.waited, self.profile.topurl) from None
        except download.Refused as exc:
            raise BuildError(f"cannot download {url}: {exc.reason}") from None
        return target


def log_tail(data: bytes) -> list[str]:
    """The last LOG_TAIL lines of a log, safe to show."""
    lines = data.decode("utf-8", "replace").splitlines()
    return [neutralise(line) for line in lines[-LOG_TAIL:]]


def tail_lines(tails: dict[str, list[str]], prefix: str = "") -> list[str]:
    """Log tails as error details: a heading per log, then its lines indented."""
    lines = []
    for log, tail in tails.items():
        lines.append(f"{prefix}{log} (last {len(tail)} lines):")
        lines.extend(f"  {line}" for line in tail)
    return lines


def download_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS for topurl downloads: the system's CAs, plus the profile's `serverca` (a hub with
    a private CA usually serves its files with the same certificate)."""
    context = ssl.create_default_context()
    serverca = options.get("serverca")
    if serverca and Path(serverca).is_file():
        context.load_verify_locations(serverca)
    return context


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
    url = check_scm_url(url, "--scm-url")
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
    return f"{url}#{check_commit(commit)}"


_URL_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f'\"\\`;|&$<>]")


def check_scm_url(url: str, what: str) -> str:
    """`url` without its `#fragment`, if kojid can check it out anonymously."""
    base = url.split("#", 1)[0]
    if base.startswith("git+file://"):
        raise InputError(
            f"{what} {url!r}: kojid refuses git+file:// (it checks out "
            f"{', '.join(SCM_SCHEMES)}); serve the repository with git daemon or http"
        )
    if not base.startswith(SCM_SCHEMES) or len(base) <= len("git://"):
        raise InputError(
            f"{what} {url!r}: koji fetches anonymously, give a git+https:// URL (or git://)"
        )
    if _URL_UNSAFE.search(url):
        raise InputError(f"{what} {url!r}: holds whitespace, a quote or a shell character")
    return base


def check_commit(commit: str | None) -> str:
    if commit is None or not re.fullmatch(r"[0-9a-f]{7,40}|[0-9a-f]{64}", commit):
        raise InputError(f"commit {commit!r}: expected a commit hash (7 to 40 hex digits)")
    return commit


def dist_git_url(url: str, commit: str | None) -> str:
    """`git://host/rpms/kernel-xen.git#<commit>` of a dist-git, as `fedpkg build` submits
    it: the commit from the URL's `#fragment` or from `commit` (both only if equal). kojid
    checks it out, finds the spec in its root and fetches the lookaside files with its
    `source_cmd`."""
    base = check_scm_url(url, "--dist-git")
    fragment = url.partition("#")[2] or None
    if fragment and commit and fragment != commit:
        raise InputError(f"--dist-git {url!r} names commit {fragment}, --commit {commit}")
    chosen = fragment or commit
    if chosen is None:
        raise InputError(f"--dist-git {url!r}: name the commit to build (URL#<commit> or --commit)")
    return f"{base}#{check_commit(chosen)}"
