"""Upstream kernel versions in kernel.org's scheme, and what they mean for the RPM.

One model covers both eras: 2.6.N (tarballs in v2.6/, bzip2) and 3.0 onwards
(vN.x/, xz). From a version come the upstream file names and URLs, the rpm
Version and Release (Fedora's scheme: prereleases are `0.<n>.rcR.gitG` so the
final release sorts above them) and the kernel's `uname -r` string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UTS_RELEASE_MAX = 64  # __NEW_UTS_LEN: longer kernel releases are truncated by uname

_VERSION_RE = re.compile(
    r"^(?P<base>2\.6\.\d+|[3-9]\.\d+)"
    r"(?:\.(?P<stable>\d+))?"
    r"(?:-rc(?P<rc>\d+))?"
    r"(?:-git(?P<git>\d+))?$"
)

# The last minor release of each major series: the base tarball an rc of the
# next major series is applied to (6.0-rc1 is a patch on top of 5.19).
_LAST_MINOR = {2: 39, 3: 19, 4: 20, 5: 19}


@dataclass(frozen=True, order=True)
class UpstreamVersion:
    """A kernel.org release: base (`6.1`, `2.6.25`), stable update, rc and git snapshot.

    `git` alone (no rc) is a snapshot taken after `base` and before the next rc1,
    which Fedora spelled `rc0.gitN`. `git` with `stable` is a snapshot of a stable branch
    after that update (`6.1.192-git5`: linux-6.1.y five commits past v6.1.192, as LKFT and
    KernelCI test stable-rc): it sorts above the update's release and below the next one.
    """

    base: str
    stable: int | None = None
    rc: int | None = None
    git: int | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"2\.6\.\d+|[3-9]\.\d+", self.base):
            raise ValueError(f"invalid kernel base version {self.base!r}")
        if self.stable is not None and self.rc is not None:
            raise ValueError("a stable update cannot also be an -rc")
        for name in ("stable", "rc", "git"):
            number = getattr(self, name)
            if number is not None and number < 1:
                raise ValueError(f"{name} numbers start at 1 (kernel.org has no {name}0)")

    @classmethod
    def parse(cls, text: str) -> UpstreamVersion:
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise ValueError(
                f"invalid kernel version {text!r} (expected e.g. 6.1, 6.1.192, 6.2-rc3, "
                "2.6.25-rc8-git3, 2.6.24.4)"
            )

        def num(name: str) -> int | None:
            value = match.group(name)
            return int(value) if value is not None else None

        return cls(match["base"], num("stable"), num("rc"), num("git"))

    # --- structure -------------------------------------------------------

    @property
    def is_26(self) -> bool:
        return self.base.startswith("2.6.")

    @property
    def major(self) -> int:
        return int(self.base.split(".")[0])

    @property
    def prerelease(self) -> bool:
        """Before the release it leads to (an rc, or a mainline snapshot)."""
        return self.rc is not None or (self.git is not None and self.stable is None)

    @property
    def stable_snapshot(self) -> bool:
        """A snapshot of a stable branch after its update `stable`."""
        return self.stable is not None and self.git is not None

    @property
    def target_base(self) -> str:
        """The release this version leads to (a git snapshot of 6.1 leads to 6.2)."""
        if self.git is not None and self.rc is None and self.stable is None:
            return _next_base(self.base)
        return self.base

    @property
    def tarball_base(self) -> str:
        """The released tree the upstream patches apply to."""
        if self.rc is None:
            return self.base
        return _previous_base(self.base)

    def __str__(self) -> str:
        text = self.base
        if self.stable is not None:
            text += f".{self.stable}"
        if self.rc is not None:
            text += f"-rc{self.rc}"
        if self.git is not None:
            text += f"-git{self.git}"
        return text

    # --- kernel.org files --------------------------------------------------

    @property
    def _dir(self) -> str:
        return _kernel_org_dir(self.base)

    @property
    def _ext(self) -> str:
        return "bz2" if self.is_26 else "xz"

    @property
    def tarball(self) -> str:
        suffix = "tar.bz2" if self.tarball_base.startswith("2.6.") else "tar.xz"
        return f"linux-{self.tarball_base}.{suffix}"

    @property
    def tarball_topdir(self) -> str:
        return f"linux-{self.tarball_base}"

    @property
    def patches(self) -> tuple[str, ...]:
        """Upstream patches applied in order on top of the tarball."""
        ext = self._ext
        if self.stable is not None:
            return (f"patch-{self.base}.{self.stable}.{ext}",)
        names: list[str] = []
        if self.rc is not None:
            names.append(f"patch-{self.base}-rc{self.rc}.{ext}")
            if self.git is not None:
                names.append(f"patch-{self.base}-rc{self.rc}-git{self.git}.{ext}")
        elif self.git is not None:
            names.append(f"patch-{self.base}-git{self.git}.{ext}")
        return tuple(names)

    def path_of(self, filename: str) -> str:
        """Path of an upstream file relative to the kernel.org `linux/kernel/` root."""
        if filename == self.tarball:
            return f"{_kernel_org_dir(self.tarball_base)}/{filename}"
        if filename.startswith(f"patch-{self.base}."):
            return f"{self._dir}/{filename}"
        if "-git" in filename:
            return f"{self._dir}/snapshots/{filename}"
        if "-rc" in filename:
            return f"{self._dir}/testing/{filename}"
        raise ValueError(f"{filename} is not an upstream file of {self}")

    @property
    def files(self) -> tuple[str, ...]:
        return (self.tarball, *self.patches)

    # --- rpm -------------------------------------------------------------

    @property
    def kernelversion(self) -> str:
        """What `make kernelversion` prints: VERSION.PATCHLEVEL.SUBLEVEL[EXTRA]."""
        base = self.target_base
        if not base.startswith("2.6."):
            base += f".{self.stable or 0}"
        elif self.stable is not None:
            base += f".{self.stable}"
        return base

    @property
    def makefile_version(self) -> UpstreamVersion:
        """What the tree's own Makefile says: snapshots do not record their -gitN."""
        return UpstreamVersion(self.base, self.stable, self.rc)

    @property
    def rpm_version(self) -> str:
        return self.kernelversion

    @property
    def makefile_extraversion(self) -> str:
        """The part of the rpm Version the kernel Makefile keeps in EXTRAVERSION."""
        if self.is_26 and self.stable is not None:
            return f".{self.stable}"
        return ""

    @property
    def snapshot_levels(self) -> tuple[int, int, int] | None:
        """For a -gitN snapshot without -rc: the VERSION, PATCHLEVEL and SUBLEVEL of the
        release it leads to, which its Makefile does not say yet (it still names the base)."""
        if self.git is None or self.rc is not None or self.stable is not None:
            return None
        numbers = [int(part) for part in self.kernelversion.split(".")]
        return numbers[0], numbers[1], numbers[2]

    def rpm_release(self, build: int) -> str:
        """Release without `%{?buildid}%{?dist}`: `<n>`, `0.<n>.rcR[.gitG]` before a release,
        `<n>.gitG` for a stable-branch snapshot after its update (above `<n>`)."""
        if self.stable_snapshot:
            return f"{build}.git{self.git}"
        if not self.prerelease:
            return str(build)
        release = f"0.{build}.rc{self.rc or 0}"
        if self.git is not None:
            release += f".git{self.git}"
        return release


def _kernel_org_dir(base: str) -> str:
    return "v2.6" if base.startswith("2.6.") else f"v{base.split('.')[0]}.x"


def _next_base(base: str) -> str:
    parts = base.split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return ".".join(parts)


def _previous_base(base: str) -> str:
    parts = [int(p) for p in base.split(".")]
    if base.startswith("2.6."):
        return f"2.6.{parts[2] - 1}"
    major, minor = parts
    if minor > 0:
        return f"{major}.{minor - 1}"
    if major == 3:
        return f"2.6.{_LAST_MINOR[2]}"
    return f"{major - 1}.{_LAST_MINOR.get(major - 1, 19)}"


# Suffix of kernel-xen's `uname -r`, the way Fedora marks kernel variants ("+debug", "+rt"):
# the bare-metal kernel of the same version-release then owns other /boot and
# /lib/modules paths, so the two packages never conflict.
UNAME_VARIANT = "xen"


def kernel_release(version: UpstreamVersion, release: str, arch: str) -> str:
    """`uname -r` of the built kernel; refused when longer than the UTS limit."""
    text = f"{version.kernelversion}-{release}.{arch}+{UNAME_VARIANT}"
    if len(text) > UTS_RELEASE_MAX:
        raise ValueError(
            f"kernel release {text!r} is {len(text)} characters; the limit is {UTS_RELEASE_MAX}"
        )
    return text


def from_makefile(text: str) -> UpstreamVersion:
    """Read VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION of a kernel top-level Makefile."""
    fields: dict[str, str] = {}
    for line in text.splitlines()[:20]:
        match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$", line)
        if match:
            fields[match[1]] = match[2]
    try:
        version, patchlevel, sublevel = (
            int(fields[k]) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")
        )
    except (KeyError, ValueError) as exc:
        raise ValueError("no VERSION/PATCHLEVEL/SUBLEVEL in the kernel Makefile") from exc
    extra = fields.get("EXTRAVERSION", "")
    if version == 2:
        text_version = f"{version}.{patchlevel}.{sublevel}{extra}"
    else:
        text_version = f"{version}.{patchlevel}"
        if sublevel:
            text_version += f".{sublevel}"
        text_version += extra
    return UpstreamVersion.parse(text_version)
