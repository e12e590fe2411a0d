"""A Kconfig model of a real kernel tree, for checking and explaining configs.

The kernel's own `scripts/kconfig` stays the authority that writes the
shipped configs (see `kxen.configs`). This module loads the same Kconfig
files with Kconfiglib 14.1.0 so that kxen can say *why* a requested value did
not survive: the unmet `depends on` with the value of each symbol in it, the
symbol that `select`s it, the choice that excludes it, and where it is defined.
Its `resolve()` reproduces `make olddefconfig` / `make allnoconfig
KCONFIG_ALLCONFIG=` exactly (the integration tests compare every symbol, and a
differential test a corpus of configs; `kxen.config.model` holds the semantics).

Reading the tree faithfully takes two things Kconfiglib does not do itself:

* Kconfig syntax newer than Kconfiglib: the bare `modules` attribute (Linux
  5.12+, `kernel/module/Kconfig`) is read as the `option modules` Kconfiglib
  knows, and any other line made of one unknown lower-case word (an
  attribute such as 6.18's `transitional`) is dropped and reported in
  `KconfigModel.ignored_attributes`. Files are rewritten line by line while
  they are read (line numbers are kept); the tree is never written.
* The environment the kernel Makefile exports to `conf`: `srctree`, `ARCH`,
  `SRCARCH`, `CC`/`LD`/... (`$(CROSS_COMPILE)gcc` etc.), `KERNELVERSION` and
  `CC_VERSION_TEXT`. `scripts/Kconfig.include` runs the toolchain through
  `$(shell,...)`, so symbols such as `GCC_VERSION` or `CC_HAS_*` come out as
  the compiler on this host makes them, like `make olddefconfig` does. Those
  commands run in a scratch directory (as `conf` runs in the O= directory),
  through kxen's runner as quick commands: no supervisor, a timeout each.

Loading 6.1 for x86 takes about 5 s (2 s of parsing, the rest is the ~90
toolchain probes `$(shell,...)` runs) and 60 MiB peak RSS; `resolve()` takes
0.1-0.3 s. Kconfiglib reads its settings and `$(VAR)`s from `os.environ`, so
`load()` sets the Makefile's environment there under a lock while parsing and
restores it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import kconfiglib  # type: ignore[import-untyped]

from kxen import arches
from kxen.config import toolchain
from kxen.config.model import IgnoredAttribute, KconfigModel
from kxen.errors import ConfigError, InputError, KxenError, MissingToolError
from kxen.support import integrity
from kxen.support.runner import Completed, Runner, SubprocessRunner

_PROBE_VARIABLES = (
    "srctree",
    "ARCH",
    "SRCARCH",
    "CC",
    "CPP",
    "LD",
    "AR",
    "NM",
    "OBJCOPY",
    "OBJDUMP",
    "READELF",
    "STRIP",
    "HOSTCC",
    "HOSTCXX",
    "RUSTC",
    "BINDGEN",
    "PAHOLE",
    "PERL",
    "PYTHON3",
    "AWK",
    "LEX",
    "YACC",
    "CC_VERSION_TEXT",
    "CLANG_FLAGS",
    "USERCFLAGS",
    "USERLDFLAGS",
    "KCFLAGS",
)
"""Make variables the probes' command lines expand (with the tools they name)."""
_PROBE_TIMEOUT_SECONDS = 60.0
"""A probe is one run of a tool, well under a second; make would wait for it forever."""
_OPTION_WORDS = frozenset({"modules", "allnoconfig_y", "defconfig_list"})
"""Attributes newer kernels write bare and Kconfiglib only knows as `option <word>`."""

_HELP_RE = re.compile(r"\s*-*help-*\s*")
_BARE_WORD_RE = re.compile(r"(\s*)([a-z][a-z0-9_]*)\s*(?:#.*)?")
_BARE_WORD_LINE_RE = re.compile(r"^[^\S\n]*([a-z][a-z0-9_]*)[^\S\n]*(?:#.*)?$", re.MULTILINE)

_LOAD_LOCK = threading.Lock()


# --- reading a tree ---------------------------------------------------------


def rewrite_kconfig_text(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Kconfig text as Kconfiglib 14.1.0 can read it, with the same line numbers.

    A line holding only `modules` (or another bare `option` word) becomes
    `option <word>`; a line holding only some other lower-case word that is no
    Kconfig keyword (an attribute newer than Kconfiglib) becomes blank and is
    returned as (line number, word). Help texts are left alone.
    """
    if not any(_needs_rewrite(word) for word in _BARE_WORD_LINE_RE.findall(text)):
        return text, []  # most files: no line a rewrite could touch (cheap pre-scan)
    lines = text.splitlines(keepends=True)
    dropped: list[tuple[int, str]] = []
    help_indent: int | None = None  # inside a help text: its indentation (-1: not yet known)
    continued = False
    for index, line in enumerate(lines):
        if help_indent is not None:
            if not line.strip():
                continue
            indent = _indentation(line)
            if help_indent < 0:
                help_indent = indent if indent else None
                if help_indent is not None:
                    continue
            elif indent >= help_indent:
                continue
            else:
                help_indent = None
        if continued:
            continued = line.endswith("\\\n")
            continue
        continued = line.endswith("\\\n")
        if _HELP_RE.fullmatch(line):
            help_indent = -1
            continue
        match = _BARE_WORD_RE.fullmatch(line.rstrip("\n"))
        if not match:
            continue
        word = match[2]
        newline = "\n" if line.endswith("\n") else ""
        if word in _OPTION_WORDS:
            lines[index] = f"{match[1]}option {word}{newline}"
        elif _is_unknown_word(word):
            lines[index] = newline
            dropped.append((index + 1, word))
    return "".join(lines), dropped


def _needs_rewrite(word: str) -> bool:
    return word in _OPTION_WORDS or _is_unknown_word(word)


def _indentation(line: str) -> int:
    expanded = line.expandtabs()
    return len(expanded) - len(expanded.lstrip())


def _is_unknown_word(word: str) -> bool:
    keyword = cast(Callable[[str], object], kconfiglib._get_keyword)
    return keyword(word) is None


class ProbeCache:
    """Outputs of the `$(shell,...)` toolchain probes of one tree, arch and toolchain.

    They are ~60% of a Kconfig load and only change with the toolchain, so they are
    kept in a file named by `toolchain.fingerprint()` and the kbuild tool variables,
    sealed with its SHA256 (`integrity`). A file that fails its seal is never used: with
    a `quarantine` it is set aside, else it is left alone (neither read nor overwritten)
    for `check_directory` to set aside where the warning can be reported."""

    def __init__(self, path: Path | None, quarantine: integrity.Quarantine | None = None) -> None:
        self.path = path
        self.outputs: dict[str, list[str]] = {}
        self.dirty = False
        if path is not None:
            self.outputs = self._load(path, quarantine)

    def _load(self, path: Path, quarantine: integrity.Quarantine | None) -> dict[str, list[str]]:
        try:
            data = integrity.read_sealed(path)
        except integrity.Corrupt as corrupt:
            if quarantine is None:
                self.path = None
            else:
                parts = integrity.sealed_parts(path)
                quarantine.set_aside(parts, corrupt, "Kconfig probe cache", "probing again")
            return {}
        with contextlib.suppress(ValueError):
            loaded = json.loads(data or b"{}")
            if isinstance(loaded, dict):
                return loaded
        return {}

    @classmethod
    def check_directory(cls, directory: Path, quarantine: integrity.Quarantine) -> None:
        """Set aside every probe cache in `directory` that fails its seal."""
        for path in sorted(directory.glob("probes-*.json")):
            cls(path, quarantine)

    @classmethod
    def for_environment(cls, directory: Path | None, env: Mapping[str, str]) -> ProbeCache:
        if directory is None:
            return cls(None)
        return cls(directory / f"probes-{toolchain_key(env)[:32]}.json")

    def run(
        self, command: str, scratch: Path, env: Mapping[str, str], runner: Runner
    ) -> tuple[str, str]:
        """(stdout, stderr) of `sh -c command`, from the cache or run now in `scratch`."""
        cached = self.outputs.get(command)
        if cached is not None and len(cached) == 2:
            return cached[0], cached[1]
        # as popen() runs it for Kconfig's $(shell,...)
        result = _probe(runner, ["/bin/sh", "-c", command], env, scratch)
        self.outputs[command] = [result.output, result.stderr]
        self.dirty = True
        return result.output, result.stderr

    def save(self) -> None:
        if self.path is not None and self.dirty:
            text = json.dumps(self.outputs, sort_keys=True)
            with contextlib.suppress(KxenError):
                integrity.write_sealed(self.path, text.encode())


def toolchain_key(env: Mapping[str, str]) -> str:
    """Digest of what Kconfig's probes can see in `env` (a `kbuild_environment`): the
    toolchain's fingerprint and the kbuild tool variables their command lines expand."""
    tools = {key: env.get(key, "") for key in _PROBE_VARIABLES}
    return hashlib.sha256(
        (toolchain.fingerprint(env) + json.dumps(tools, sort_keys=True)).encode()
    ).hexdigest()


class _TreeKconfig(kconfiglib.Kconfig):  # type: ignore[misc]
    """Kconfiglib's parser, reading each Kconfig file through rewrite_kconfig_text()."""

    def __init__(
        self, scratch: Path, env: Mapping[str, str], probes: ProbeCache, runner: Runner
    ) -> None:
        self.kxen_scratch = scratch
        self.kxen_env = dict(env)
        self.kxen_probes = probes
        self.kxen_runner = runner
        self.kxen_ignored: list[IgnoredAttribute] = []
        super().__init__("Kconfig", warn=True, warn_to_stderr=False)

    def _open(self, filename: str, mode: str) -> Any:
        handle = super()._open(filename, mode)
        if mode != "r" or not getattr(self, "_parsing_kconfigs", False):
            return handle
        with handle:
            text, dropped = rewrite_kconfig_text(handle.read())
        relative = filename
        prefix = cast(str, self._srctree_prefix)
        if relative.startswith(prefix):
            relative = relative[len(prefix) :]
        self.kxen_ignored += [IgnoredAttribute(relative, n, w) for n, w in dropped]
        return io.StringIO(text)


def _shell(kconf: Any, _name: str, command: str) -> str:
    """`$(shell,...)` as Kconfiglib runs it, but in a scratch directory with the
    Makefile's environment (`cc-option` creates `.tmp_$$` in the current directory)."""
    tree_kconf = cast(_TreeKconfig, kconf)
    stdout, stderr = tree_kconf.kxen_probes.run(
        command, tree_kconf.kxen_scratch, tree_kconf.kxen_env, tree_kconf.kxen_runner
    )
    if stderr:
        kconf._warn(
            f"'{command}' wrote to stderr: {' '.join(stderr.splitlines())}",
            kconf.filename,
            kconf.linenr,
        )
    return "\n".join(stdout.splitlines()).rstrip("\n").replace("\n", " ")


functions = {"shell": (_shell, 1, 1)}
"""Read by Kconfiglib through KCONFIG_FUNCTIONS=kxen.kconfig while loading."""


def _kernel_version(tree: Path) -> str:
    """KERNELVERSION as the top Makefile computes it."""
    try:
        text = (tree / "Makefile").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{tree}: no kernel Makefile ({exc.strerror})") from None
    fields: dict[str, str] = {}
    for line in text.splitlines()[:40]:
        match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$", line)
        if match:
            fields.setdefault(match[1], match[2])
    if not fields.get("VERSION"):
        raise InputError(f"{tree}/Makefile: no VERSION: not a kernel tree")
    version = fields["VERSION"]
    if fields.get("PATCHLEVEL"):
        version += f".{fields['PATCHLEVEL']}"
        if fields.get("SUBLEVEL"):
            version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def kbuild_environment(
    tree: Path,
    kernel_arch: str,
    base: Mapping[str, str] | None = None,
    runner: Runner | None = None,
) -> dict[str, str]:
    """The environment `make ARCH=<kernel_arch> *config` gives scripts/kconfig/conf.

    Mirrors the top-level Makefile for a GCC build: it unexports LC_ALL and
    CONFIG_, exports LC_COLLATE/LC_NUMERIC=C, the tool variables built from
    $(CROSS_COMPILE), SRCARCH, KERNELVERSION and CC_VERSION_TEXT (the first
    line of `$(CC) --version` without '#'). Everything else is inherited.
    """
    base = os.environ if base is None else base
    if base.get("LLVM"):
        raise ConfigError("LLVM= (clang) builds are not modelled; unset LLVM")
    env = {
        key: value
        for key, value in base.items()
        if key not in ("LC_ALL", "CONFIG_") and not key.startswith("KCONFIG_")
    }
    cross = base.get("CROSS_COMPILE", "")
    cc = toolchain.compiler(base) or f"{cross}gcc"
    env.update(
        {
            "srctree": str(tree),
            "ARCH": kernel_arch,
            "SRCARCH": arches.srcarch_of(kernel_arch),
            "KERNELVERSION": _kernel_version(tree),
            "CC": cc,
            "CPP": f"{cc} -E",
            "LD": f"{cross}ld",
            "AR": f"{cross}ar",
            "NM": f"{cross}nm",
            "OBJCOPY": f"{cross}objcopy",
            "OBJDUMP": f"{cross}objdump",
            "READELF": f"{cross}readelf",
            "STRIP": f"{cross}strip",
            "HOSTCC": "gcc",
            "HOSTCXX": "g++",
            "RUSTC": "rustc",
            "RUSTDOC": "rustdoc",
            "RUSTFMT": "rustfmt",
            "BINDGEN": "bindgen",
            "CARGO": "cargo",
            "PAHOLE": "pahole",
            "PERL": "perl",
            "PYTHON3": "python3",
            "AWK": "awk",
            "LEX": "flex",
            "YACC": "bison",
            "BASH": "bash",
            "LC_COLLATE": "C",
            "LC_NUMERIC": "C",
        }
    )
    first = _first_version_line(cc, env, runner or SubprocessRunner())
    if not first:
        raise ConfigError(f"C compiler '{cc}' not found (Kconfig runs it to probe features)")
    env["CC_VERSION_TEXT"] = first.replace("#", "")
    return env


def _first_version_line(cc: str, env: Mapping[str, str], runner: Runner) -> str:
    """The first line `$(CC) --version` prints ('' if there is no such compiler)."""
    try:
        version = _probe(runner, [cc, "--version"], {**env, "LC_ALL": "C"}).output
    except MissingToolError:
        return ""
    return version.splitlines()[0] if version.strip() else ""


def _probe(
    runner: Runner, argv: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> Completed:
    """One short run of the toolchain for Kconfig, stdout and stderr apart."""
    result = runner.run(
        argv,
        cwd=cwd,
        env=env,
        separate_stderr=True,
        timeout=_PROBE_TIMEOUT_SECONDS,
        quick=True,
        check=False,
    )
    if result.timed_out:
        raise ConfigError(
            f"Kconfig's probe {shlex.join(argv)} did not end within {_PROBE_TIMEOUT_SECONDS:g}s"
        )
    return result


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ == env inside the block (only differing keys are touched)."""
    saved = dict(os.environ)
    _set_environment(env)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(env: Mapping[str, str]) -> None:
    for key in set(os.environ) - set(env):
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def load(
    tree: Path, arch: str, probe_cache: Path | None = None, runner: Runner | None = None
) -> KconfigModel:
    """Parse the Kconfig files of `tree` for `arch` (x86_64 or i686). Never writes the tree.

    With `probe_cache` (a directory per tree), toolchain probe outputs are reused
    from earlier loads with the same toolchain. The toolchain runs through `runner`
    (default: a runner of its own)."""
    runner = runner or SubprocessRunner()
    kernel_arch = arches.get(arch).kernel_arch
    tree = tree.resolve()
    if not (tree / "Kconfig").is_file():
        raise InputError(f"{tree}: no top-level Kconfig: not a kernel tree")
    env = kbuild_environment(tree, kernel_arch, runner=runner)
    env["KCONFIG_FUNCTIONS"] = __name__
    probes = ProbeCache.for_environment(probe_cache, env)
    start = time.monotonic()
    with (
        _LOAD_LOCK,
        tempfile.TemporaryDirectory(prefix="kxen-kconfig-") as scratch,
        _environment(env),
    ):
        try:
            kconf = _TreeKconfig(Path(scratch), env, probes, runner)
        except (kconfiglib.KconfigError, OSError) as exc:
            raise ConfigError(f"{tree}: Kconfig cannot be read: {str(exc).strip()}") from None
    probes.save()
    return KconfigModel(kconf, tree, arch, time.monotonic() - start)
