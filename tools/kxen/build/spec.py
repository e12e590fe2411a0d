"""Render `specs/kernel-xen.spec.j2` into the spec rpmbuild reads.

rpm expands macros in almost every part of a spec, so a manifest value that
reaches it unchecked can run a shell (`%(...)`) or Lua when the spec is merely
parsed. Every value therefore passes one gate, the environment's `finalize`:
tokens (versions, file names) must match an allowlist, and free text must have
been escaped with `text()` (`%` -> `%%`). Anything else aborts the render
before a byte is written.

File names the user chose never reach the spec: a local upstream tarball ships
as `linux-<version>.tar.<compression>` and unpacks into `linux-<version>`,
whatever it and its top directory were called (kxen-result.json keeps the
original).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from kxen import arches
from kxen.config import toolchain
from kxen.config.fragments import Target
from kxen.errors import InputError
from kxen.manifest import Manifest
from kxen.patches.series import Patch
from kxen.support import inputs
from kxen.support.fsutil import atomic_write_text
from kxen.upstream.origin import Upstream
from kxen.versions import UNAME_VARIANT, UpstreamVersion, kernel_release

TEMPLATE_NAME = "kernel-xen.spec.j2"
UPSTREAM_SOURCE_BASE = 1
CONFIG_SOURCE_BASE = 100
PATCH_BASE = 1
BUILDID_RE = re.compile(r"\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
# What rpm and kernel.org names are made of (versions, releases, file names, mirror URLs):
# no character a shell or rpm's macro expander gives a meaning to, no whitespace, and no
# leading `-` (an option to the command it lands in) or `~` (a home directory to a shell).
_TOKEN_RE = re.compile(r"(?![-~])[A-Za-z0-9._+~:/@-]*")
# C0 and C1 control characters and DEL: a NUL truncates what rpm reads, the rest garble it.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SpecText(str):
    """Free text already escaped for a spec (or a trusted constant)."""


# xz -T0 decompresses multi-block archives (kernel.org's are) in parallel; older xz ignores it.
_DECOMPRESS = {
    ".xz": SpecText("xz -T0 -dc"),
    ".bz2": SpecText("bzip2 -dc"),
    ".gz": SpecText("gzip -dc"),
    ".zst": SpecText("zstd -dc"),
}
_NO_DECOMPRESSION = SpecText("cat")
_MAGIC = (
    (b"\xfd7zXZ\x00", ".xz"),
    (b"BZh", ".bz2"),
    (b"\x1f\x8b", ".gz"),
    (b"\x28\xb5\x2f\xfd", ".zst"),
)


def text(value: str) -> SpecText:
    """Escape free text: `%` starts a macro in nearly every spec section."""
    if _CONTROL_RE.search(value):
        raise InputError(f"spec text must be a single line without control characters: {value!r}")
    return SpecText(value.replace("%", "%%"))


def token(value: str) -> str:
    """`value` if it is a safe token, else refused (exit 2) before anything is written."""
    if not _TOKEN_RE.fullmatch(value):
        raise InputError(f"refusing to put {value!r} into the spec (not a safe token)")
    return value


def words(tokens: Iterable[str]) -> SpecText:
    """Tokens separated by spaces (`ExclusiveArch`): each checked, only the spaces trusted."""
    return SpecText(" ".join(token(item) for item in tokens))


def _finalize(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # raises UndefinedError naming the variable
    if isinstance(value, (SpecText, int)):
        return value
    if isinstance(value, str):
        return token(value)
    raise InputError(f"refusing to put a {type(value).__name__} into the spec")


@functools.cache
def environment(template_dir: Path) -> jinja2.Environment:
    """The environment of one template directory, kept for the process: a template is parsed
    once and read again only when its file changed. Templates are read through the
    checkout's input gate (no symlink out of it, size, UTF-8), not jinja's file loader."""
    checkout = template_dir.parent

    def load(name: str) -> tuple[str, str, Callable[[], bool]]:
        path = template_dir / name
        text = inputs.read_text(path, checkout)
        read = _file_state(path)
        return text, str(path), lambda: _file_state(path) == read

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.lstat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class SpecInputs:
    """Everything the spec is made of; built by `inputs()` from validated parts."""

    manifest: Manifest
    upstream: Upstream
    flavour: str
    buildid: str
    patches: tuple[Patch, ...]
    config_names: tuple[str, ...]
    local_tarball_sha512: str | None = None

    @property
    def release(self) -> str:
        return self.upstream.version.rpm_release(self.manifest.release)

    @property
    def identity(self) -> BuildIdentity:
        return BuildIdentity(self.manifest.name, self.upstream.version, self.release + self.buildid)

    @property
    def nvr(self) -> str:
        return self.identity.nvr

    def kernel_release(self, arch: str) -> str:
        return self.identity.kernel_release(arch)


@dataclass(frozen=True)
class BuildIdentity:
    """Name, version and release of a build (`%{?dist}` is empty off Fedora)."""

    name: str
    version: UpstreamVersion
    release: str

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version.rpm_version}-{self.release}"

    def kernel_release(self, arch: str) -> str:
        try:
            return kernel_release(self.version, self.release, arch)
        except ValueError as exc:
            raise InputError(str(exc)) from None


def identity(
    manifest: Manifest, version: UpstreamVersion, flavour: str, buildid: str | None
) -> BuildIdentity:
    """The NVR a build of `flavour` gets; `buildid` overrides the manifest's."""
    release = version.rpm_release(manifest.release) + effective_buildid(manifest, flavour, buildid)
    return BuildIdentity(manifest.name, version, release)


def effective_buildid(manifest: Manifest, flavour: str, buildid: str | None) -> str:
    """`%{buildid}`: the override or the manifest's, plus the flavour mark (`.local.smoke`)."""
    chosen = manifest.buildid if buildid is None else buildid
    if chosen and not BUILDID_RE.fullmatch(chosen):
        raise InputError(f"buildid {chosen!r}: expected e.g. .local")
    return flavour_buildid(chosen, flavour)


def flavour_buildid(manifest_buildid: str, flavour: str) -> str:
    """Non-default flavours mark their release (like a buildid) so NVRs never collide."""
    return manifest_buildid + ("" if flavour == "default" else f".{flavour}")


def config_names(manifest: Manifest, upstream: Upstream, flavour: str) -> tuple[str, ...]:
    kernelversion = upstream.version.kernelversion
    return tuple(Target(arch, flavour).config_name(kernelversion) for arch in manifest.arches)


def render(inputs: SpecInputs, template_dir: Path) -> str:
    manifest, upstream = inputs.manifest, inputs.upstream
    for arch in manifest.arches:
        inputs.kernel_release(arch)  # refuses releases beyond the UTS limit
    version = upstream.version
    local = upstream.is_local
    snap = upstream.snapshot
    tarball = shipped_tarball_name(upstream)
    context = {
        "name": manifest.name,
        "summary": text(manifest.summary),
        "license": text(manifest.license),
        "url": text(manifest.url),
        "version": version.rpm_version,
        "release": inputs.release,
        "buildid": inputs.buildid,
        "flavour": inputs.flavour,
        "arches": words(manifest.arches),
        "upstream_version": str(version),
        "upstream_origin": upstream.origin,
        "local_tarball": tarball if local else "",
        "local_tarball_sha512": inputs.local_tarball_sha512 or "",
        "git_commit": snap.commit if snap else "",
        "git_describe": snap.describe if snap else "",
        "source0": _location(manifest, upstream, tarball),
        "build_dir": build_dir(upstream),
        "source0_decompress": _decompressor(tarball),
        "upstream_patches": [
            {
                "number": UPSTREAM_SOURCE_BASE + index,
                "location": _location(manifest, upstream, name),
                "decompress": _decompressor(name),
            }
            for index, name in enumerate(shipped_names(upstream)[1:])
        ],
        "configs": [
            {"number": CONFIG_SOURCE_BASE + index, "name": name, "arch": arches.get(arch)}
            for index, (arch, name) in enumerate(
                zip(manifest.arches, inputs.config_names, strict=True)
            )
        ],
        "patches": [
            {"number": f"{PATCH_BASE + index:04d}", "name": patch.name, "strip": patch.strip}
            for index, patch in enumerate(inputs.patches)
        ],
        "extraversion": version.makefile_extraversion,
        "uname_variant": UNAME_VARIANT,
        "snapshot_levels": version.snapshot_levels or (),
        "toolchain_regex": SpecText(toolchain.TOOLCHAIN_SYMBOLS),
        "changelog": _changelog(inputs),
    }
    try:
        return environment(template_dir).get_template(TEMPLATE_NAME).render(context)
    except jinja2.UndefinedError as exc:
        raise InputError(f"{template_dir / TEMPLATE_NAME}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"{template_dir / TEMPLATE_NAME}:{exc.lineno}: {exc.message}") from None


def shipped_names(upstream: Upstream) -> tuple[str, ...]:
    """The file names the spec gives `upstream.files`, in the same order (Source0, 1, ...)."""
    return (shipped_tarball_name(upstream), *(path.name for path in upstream.patches))


def shipped_tarball_name(upstream: Upstream) -> str:
    """Source0: kernel.org's own name, else `linux-<version>.tar[.xz|.bz2|.gz|.zst]` from
    the tree's version and the tarball's content, never from what the file is called."""
    if not upstream.is_local:
        return upstream.version.tarball
    return f"{build_dir(upstream)}.tar{compression_suffix(upstream.tarball)}"


def build_dir(upstream: Upstream) -> str:
    """The directory `%setup -c` makes; the tarball unpacks into it without its top directory,
    so what that directory is called never matters."""
    return upstream.build_dir


def compression_suffix(path: Path) -> str:
    """`.xz`, `.bz2`, `.gz`, `.zst` as the file's first bytes say, or "" for a plain tar."""
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the tarball: {exc.strerror}") from None
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), "")


def _decompressor(filename: str) -> SpecText:
    return _DECOMPRESS.get(PurePosixPath(filename).suffix, _NO_DECOMPRESSION)


def _location(manifest: Manifest, upstream: Upstream, filename: str) -> str:
    """Full kernel.org URL for upstream files (rpm uses the basename), else the name."""
    if upstream.is_local:
        return filename
    return manifest.mirrors[0] + upstream.version.path_of(filename)


def _changelog(inputs: SpecInputs) -> list[dict[str, Any]]:
    entries = []
    current = f"{inputs.upstream.version.rpm_version}-{inputs.release}"
    snap = inputs.upstream.snapshot
    if snap is not None:
        # The commit goes into the SRPM's changelog; dated by the commit so that
        # SOURCE_DATE_EPOCH, hence the SRPM, stays reproducible.
        newest = inputs.manifest.changelog[0]
        date = max(snap.committed, newest.date)  # rpm wants newest-first entries
        header = f"{date.strftime('%a %b %d %Y')} {newest.author} - {current}"
        change = f"Snapshot of upstream git commit {snap.commit} ({snap.describe})"
        entries.append({"header": text(header), "changes": [text(change)]})
        current = ""
    for index, entry in enumerate(inputs.manifest.changelog):
        header = f"{entry.date.strftime('%a %b %d %Y')} {entry.author}"
        evr = entry.version or (current if index == 0 and current else None)
        if evr:
            header += f" - {evr}"
        entries.append({"header": text(header), "changes": [text(c) for c in entry.changes]})
    return entries


def write(spec_text: str, path: Path) -> None:
    atomic_write_text(path, spec_text)
