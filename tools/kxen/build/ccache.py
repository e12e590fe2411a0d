"""Compiling through ccache (local and mock backends), so that a rebuild of the same tree
under a new release, in another build directory or as the next nightly snapshot compiles
only what changed, and what each build hit and missed.

Whether a compile hits depends on three things, each set up where the backend can reach it:

- where the cache is, CCACHE_DIR: kxen's environment for rpmbuild (local); mock's ccache
  plugin (`--plugin-option=ccache:dir=...`), which bind-mounts the directory into the build
  root as /var/tmp/ccache and points CCACHE_DIR there;
- how the compiler reaches ccache: its masquerade directory first on PATH, so that kbuild's
  `gcc` (CC and HOSTCC) is ccache and the spec needs no `CC=` (and builds the same without
  ccache): kxen's PATH (local); in mock, Fedora's /etc/profile.d/ccache.sh, which the
  `bash --login` that mock runs rpmbuild in sources;
- what goes into a compile's hash: `COMPILE_SETTINGS`, and the tree as CCACHE_BASEDIR. mock
  hands its build root none of the caller's environment and its plugin sets none of these,
  so they travel as the rpm macro `kxen_ccache_env` (`--define`, which mock passes on to
  rpmbuild): the spec exports it with `CCACHE_BASEDIR="$PWD"` in %prep and %build, for both
  backends alike, and does nothing without it.

Why a new release does not miss: the release reaches the compile only through the
Makefile's EXTRAVERSION, hence include/generated/utsrelease.h (init/version.c and each
module's vermagic), never through a Kconfig symbol (the spec builds with `LOCALVERSION=`
and CONFIG_LOCALVERSION is empty), so include/generated/autoconf.h, which every object
includes, stays the same; KBUILD_BUILD_TIMESTAMP, _USER and _HOST are fixed by the spec.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from kxen.errors import InputError, MissingToolError, UnsafePathError
from kxen.support.fsutil import atomic_write_text, make_dirs

STATS_FILE = "ccache.json"
"""Hits and misses of one build, beside its RPMs (what `kxen nightly` records)."""
SPEC_MACRO = "kxen_ccache_env"
"""The spec exports this macro's assignments (and the tree as base dir) before it compiles."""
MASQUERADE_DIRS = (Path("/usr/lib/ccache"), Path("/usr/lib64/ccache"))
"""Where ccache's links named after the compilers live: Debian's, then Fedora's."""
MAX_SIZE = "5G"
"""ccache's own default size, passed to mock's plugin too: it runs `ccache -M` with its own
default (4G) before every build, which would shrink the cache the local builds share."""
COMPILE_SETTINGS = {
    # ccache hashes the working directory when a compile makes debug info. The build
    # directory is a random scratch name for `kxen local` and holds the release under
    # rpm >= 4.20; kxen's kernels build without -g (CONFIG_DEBUG_INFO is off).
    "CCACHE_NOHASHDIR": "1",
    # %prep unpacks a fresh tree and kbuild writes generated headers (autoconf.h) just
    # before compiling: by default ccache neither trusts nor records direct-mode results
    # for headers that new. Their content is still hashed. kbuild refuses __DATE__ and
    # __TIME__ (-Werror=date-time): a file that merely names them needs no special case.
    "CCACHE_SLOPPINESS": "include_file_ctime,include_file_mtime,time_macros",
    # Every mock build root installs gcc afresh: the compiler's content, not its mtime.
    "CCACHE_COMPILERCHECK": "content",
    # ccache hashes LANG, LC_ALL, LC_CTYPE and LC_MESSAGES when set (the diagnostics'
    # language). rpm sets LANG=C in every scriptlet and kbuild unexports LC_ALL, but kxen's
    # own builds also set the two categories (BUILD_LOCALE) and mock's build root or a koji
    # builder does not: without these, neither shares one object with a local build.
    "LANG": "C",
    "LC_CTYPE": "C",
    "LC_MESSAGES": "C",
}
_STATS_LOG = "kxen-stats-{}.log"
STALE_LOG_SECONDS = 24 * 3600
"""A build's stats log not written for this long was left by a kxen that was killed."""
_BUILD_NAME = re.compile(r"[A-Za-z0-9._-]+")
# mock formats the plugin's `dir` with `%` and renders its config options as Jinja
# templates ({{ }}, {% %}); rpm and the shell take none of these literally either.
_UNSAFE = re.compile(r"[%{}\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Stats:
    """What one build's compiles found in the cache (ccache's own counting: a hit is a
    direct or preprocessed hit; calls it cannot cache are neither)."""

    hits: int
    misses: int


@dataclass(frozen=True)
class Ccache:
    """The cache a build compiles through (`--ccache DIR`)."""

    dir: Path

    def check(self) -> None:
        """Refuse (exit 2) a directory kxen would have to follow a link to, one that is
        not a directory, or one mock or rpm would not take literally."""
        where = f"ccache directory {str(self.dir)!r}"
        other = "(--ccache DIR chooses another, --no-ccache builds without)"
        if self.dir.is_symlink():
            raise UnsafePathError(
                f"{where}: a symbolic link; kxen never follows one (name its target) {other}"
            )
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(f"{where}: exists and is not a directory {other}")
        found = _UNSAFE.search(str(self.dir))
        if found:
            raise InputError(
                f"{where}: mock and rpm expand {found[0]!r} in paths: choose a directory "
                f"without %, braces or control characters {other}"
            )

    def prepare(self) -> None:
        """Before a build: the directory exists, and stats logs of killed builds are gone."""
        self.check()
        make_dirs(self.dir)
        cutoff = time.time() - STALE_LOG_SECONDS
        for log in self.dir.glob(_STATS_LOG.format("*")):
            try:
                if log.lstat().st_mtime < cutoff:
                    log.unlink()
            except FileNotFoundError:
                pass

    def stats_log(self, build: str) -> Path:
        """Where ccache counts the compiles of `build` (CCACHE_STATSLOG): a file of its own
        per build, so that builds sharing the cache at once are told apart."""
        if not _BUILD_NAME.fullmatch(build):
            raise ValueError(f"not a plain build name: {build!r}")
        return self.dir / _STATS_LOG.format(build)

    def spec_define(self, build: str) -> list[str]:
        """`--define` of the macro the spec exports: COMPILE_SETTINGS and the stats log, named
        from $CCACHE_DIR so that it is the same file inside mock's build root."""
        log = self.stats_log(build).name
        assignments = f'{_assignments()} CCACHE_STATSLOG="${{CCACHE_DIR}}/{log}"'
        return ["--define", f"{SPEC_MACRO} {assignments}"]

    def environment(self) -> dict[str, str]:
        """What rpmbuild on this machine needs besides the spec's macro (what mock's plugin
        and Fedora's profile give a mock build root): the cache, and the compilers' links
        first on PATH."""
        path = os.environ.get("PATH", os.defpath)
        return {"CCACHE_DIR": str(self.dir), "PATH": f"{masquerade_dir()}{os.pathsep}{path}"}

    def mock_options(self) -> list[str]:
        """mock's ccache plugin on this cache (a bind mount as /var/tmp/ccache in the build
        root). hashdir=False sets CCACHE_NOHASHDIR (mock >= 5.7; the spec sets it anyway)."""
        return [
            "--enable-plugin=ccache",
            *(f"--plugin-option=ccache:{key}={value}" for key, value in self._plugin().items()),
        ]

    def _plugin(self) -> dict[str, object]:
        """The options of mock's ccache plugin, on the command line or in a config."""
        return {"dir": str(self.dir), "max_cache_size": MAX_SIZE, "hashdir": False}

    def koji_builder_config(self) -> str:
        """The lines a koji builder's admin puts in the mock user's ~/.config/mock.cfg to
        compile kernel-xen through this cache. kojid's generated config turns mock's ccache
        plugin off and no tag extra reaches it, but mock reads that file after the config
        `-r` names. No stats log: nobody collects a builder's counts per build."""
        plugin = "config_opts['plugin_conf']"
        lines = [
            "# kxen: kernel-xen compiles through ccache on this builder",
            f"{plugin}['ccache_enable'] = True",
            *(f"{plugin}['ccache_opts'][{k!r}] = {v!r}" for k, v in self._plugin().items()),
            f"config_opts['macros']['%{SPEC_MACRO}'] = {_assignments()!r}",
        ]
        return "\n".join(lines) + "\n"

    def collect(self, build: str, into: Path) -> Stats:
        """The hits and misses of `build`, written to `into`/ccache.json; its stats log
        removed. No log means no compile went through ccache: zero and zero."""
        log = self.stats_log(build)
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        stats = parse_stats_log(text)
        atomic_write_text(into / STATS_FILE, json.dumps(asdict(stats), sort_keys=True) + "\n")
        log.unlink(missing_ok=True)
        return stats


def _assignments() -> str:
    return " ".join(f"{key}={value}" for key, value in COMPILE_SETTINGS.items())


def parse_stats_log(text: str) -> Stats:
    """Count a CCACHE_STATSLOG: each compile appends `# <source>` and one line per counter
    it raised (ccache's counter names, as `ccache --print-stats` shows them)."""
    counters = Counter(line.strip() for line in text.splitlines() if not line.startswith("#"))
    hits = counters["direct_cache_hit"] + counters["preprocessed_cache_hit"]
    return Stats(hits=hits, misses=counters["cache_miss"])


def masquerade_dir() -> Path:
    """ccache's directory of compiler links on this machine (it must hold `gcc`)."""
    for directory in MASQUERADE_DIRS:
        if (directory / "gcc").exists():
            return directory
    shown = " or ".join(str(d / "gcc") for d in MASQUERADE_DIRS)
    raise MissingToolError(
        f"ccache: no {shown} (install ccache, e.g. apt-get install ccache, or build "
        "with --no-ccache)"
    )


def check_host() -> None:
    """Refuse (exit 6) before any work a host that cannot compile through ccache."""
    masquerade_dir()
