"""`kxen verify`: check built kernel-xen RPMs against what kxen would build.

Every check says what it expected and what it found; the library only
returns the report (the CLI decides the exit code). Checks: rpm metadata
(name, version-release, arch, Provides), the payload (/boot files, modules,
modules.dep against `depmod -n`, module vermagic), the config inside against
the config kxen generates (toolchain symbols aside) and the Xen options, the
ELF notes a Xen domain builder reads from the vmlinux inside the bzImage and
its compression, and rpmlint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError

from kxen import arches
from kxen.arches import Arch, GuestType
from kxen.build import spec
from kxen.config import fragments as configs
from kxen.config import operations as config_ops
from kxen.config import toolchain
from kxen.errors import ExitCode, InputError, KxenError
from kxen.inspect import lint
from kxen.inspect.elf import SUPPORTED_MAGICS, find_payload, modinfo, xen_notes
from kxen.inspect.rpmfile import extract_payload, header_text, rpm_header
from kxen.inspect.xennotes import NOTE_NAMES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_HYPERCALL_PAGE
from kxen.project import Project, UpstreamChoice, resolve_upstream
from kxen.support import inputs
from kxen.support.runner import Runner

# What each arch and guest type needs is in kxen.arches. HYPERCALL_PAGE is not required:
# Linux dropped it with XSA-466 (6.12, backported to the stable series, 6.1.119 included) and
# sets its hypercall page up at run time; Xen's domain builder treats the note as optional.
# It is reported when present.
OPTIONAL_NOTES = (XEN_ELFNOTE_HYPERCALL_PAGE,)


def required_notes(guests: tuple[GuestType, ...]) -> tuple[int, ...]:
    return tuple(note for guest in guests for note in guest.notes)


def required_options(arch: Arch, guests: tuple[GuestType, ...]) -> tuple[str, ...]:
    return arch.required_options + tuple(o for guest in guests for o in guest.options)


# rpmlint findings that built kernel packages always have, as Fedora's kernel packages do:
# depmod writes empty index files when no module has aliases or device names, and the devel
# package ships upstream's Makefiles, Kconfig files and scripts as they are (empty files,
# scripts sourced rather than run, old FSF addresses, .gitignore files).
BINARY_RPMLINT_FILTERS = (
    r"zero-length /lib/modules/[^/ ]+/modules\.",
    r"-devel\.[a-z0-9_]+: [EW]: [a-z-]+ /usr/src/kernels/",
)
_MODULE_RE = re.compile(r"^([^\s:#]+\.ko(?:\.[a-z]+)?):(.*)$")


@dataclass(frozen=True)
class Check:
    package: str
    check: str
    ok: bool
    expected: str = ""
    found: str = ""

    def describe(self) -> str:
        state = "ok" if self.ok else "FAILED"
        text = f"{self.package}: {self.check}: {state}"
        if not self.ok:
            text += f" (expected {self.expected}, found {self.found})"
        return text


@dataclass
class VerifyReport:
    expected_nvr: str
    flavour: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def add(
        self, package: str, check: str, ok: bool, expected: object = "", found: object = ""
    ) -> bool:
        self.checks.append(Check(package, check, ok, str(expected), str(found)))
        return ok


class VerifyFailed(KxenError):
    """Some check failed: the report says which, with expected and found values."""

    exit_code = ExitCode.VERIFY

    def __init__(self, report: VerifyReport) -> None:
        failures = report.failures
        super().__init__(
            f"{len(failures)} of {len(report.checks)} checks failed",
            details=[check.describe() for check in failures],
        )
        self.report = report


# --- the bzImage payload and ELF notes -----------------------------------------


# --- RPMs ------------------------------------------------------------------------


def verify(
    project: Project,
    packages: list[Path],
    flavour: str,
    local_tarball: UpstreamChoice,
    scratch: Path,
    guests: tuple[str, ...] = (),
) -> VerifyReport:
    """Check `packages` against the build kxen would make of this checkout.

    `guests` names the guest types (pv, pvh) the kernels must boot as; by default the
    ones their arch boots as (kxen.arches)."""
    known_guests = [guest.name for guest in arches.guest_types()]
    unknown = sorted(set(guests) - set(known_guests))
    if unknown:
        raise InputError(f"--guest {unknown[0]}: expected one of {', '.join(known_guests)}")
    project.check_flavour(flavour)
    up = resolve_upstream(project, local_tarball)
    ident = spec.identity(project.manifest, up.version, flavour, None)
    report = VerifyReport(ident.nvr, flavour)
    name = project.manifest.name
    built = arches.names()
    mains: list[tuple[Path, str, str]] = []  # package, arch, kernel release
    readable = []
    for package in packages:
        project.progress.phase("verify", package.name)
        label = package.name
        try:
            header = rpm_header(package)
        except Exception as exc:  # rpm raises plain errors for non-RPM files
            report.add(label, "readable rpm", False, "an RPM package", exc)
            continue
        readable.append(package)
        if not header["sourcerpm"]:
            report.add(label, "binary rpm", False, "a binary package", "a source package")
            continue
        pkg_name, arch = header_text(header["name"]), header_text(header["arch"])
        version, release = header_text(header["version"]), header_text(header["release"])
        report.add(
            label, "name", pkg_name in (name, f"{name}-devel"), f"{name} or {name}-devel", pkg_name
        )
        expected_vr = f"{ident.version.rpm_version}-{ident.release}"
        report.add(
            label,
            "version-release",
            f"{version}-{release}" == expected_vr,
            expected_vr,
            f"{version}-{release}",
        )
        report.add(label, "arch", arch in built, " or ".join(built), arch)
        kver = ident.kernel_release(arch)
        provides = {
            header_text(n): header_text(v)
            for n, v in zip(header["providename"], header["provideversion"], strict=True)
        }
        uname = f"{pkg_name}-uname-r"
        report.add(
            label,
            f"provides {uname}",
            provides.get(uname) == kver,
            f"{uname} = {kver}",
            f"{uname} = {provides[uname]}" if uname in provides else "absent",
        )
        if pkg_name == name:
            report.add(
                label,
                "provides installonlypkg(kernel)",
                "installonlypkg(kernel)" in provides,
                "present",
                "present" if "installonlypkg(kernel)" in provides else "absent",
            )
            if arch in built:
                mains.append((package, arch, kver))
    generated = _generated_configs(project, up, flavour, sorted({a for _, a, _ in mains}), scratch)
    for index, (package, arch, kver) in enumerate(mains):
        project.progress.phase("verify", f"payload of {package.name}")
        root = scratch / f"root-{index}"
        extract_payload(package, root, project.runner)
        record = arches.get(arch)
        wanted = tuple(map(arches.guest_type, guests)) or record.guests
        _check_payload(
            report, package.name, root, (record, wanted), kver, generated[arch], project.runner
        )
    if readable:
        project.progress.phase("verify", "rpmlint")
        rc = _binary_rpmlintrc(project.root / f"{name}.rpmlintrc", scratch / "rpmlintrc")
        result = lint.rpmlint(readable, rc, project.runner, ignore_unused=True)
        report.add(
            ", ".join(p.name for p in readable),
            "rpmlint",
            result.errors == 0,
            "0 errors",
            f"{result.errors} errors: " + "; ".join(result.error_lines[:5]),
        )
    return report


def _binary_rpmlintrc(checkout_rc: Path, target: Path) -> Path:
    """The checkout's rpmlint filters plus those for built kernel packages."""
    text = inputs.read_text(checkout_rc, checkout_rc.parent) if checkout_rc.is_file() else ""
    text += "\n# kxen verify: built kernel packages\n"
    text += "".join(f'addFilter("{pattern}")\n' for pattern in BINARY_RPMLINT_FILTERS)
    target.write_text(text)
    return target


def _generated_configs(
    project: Project,
    up: Any,
    flavour: str,
    arches: list[str],
    scratch: Path,
) -> dict[str, dict[str, configs.Value]]:
    if not arches:
        return {}
    targets = [configs.Target(arch, flavour) for arch in arches]
    paths = config_ops.generate_configs(project, up, targets, scratch / "configs")
    by_name = {path.name: path for path in paths}
    kernelversion = up.version.kernelversion
    return {
        t.arch: configs.parse_config_values(by_name[t.config_name(kernelversion)].read_text())
        for t in targets
    }


def _check_payload(
    report: VerifyReport,
    label: str,
    root: Path,
    target: tuple[Arch, tuple[GuestType, ...]],
    kver: str,
    generated: dict[str, configs.Value],
    runner: Runner,
) -> None:
    """`target`: the arch and the guest types the kernel must boot as."""
    for path in (f"/boot/vmlinuz-{kver}", f"/boot/System.map-{kver}", f"/boot/config-{kver}"):
        present = (root / path.lstrip("/")).is_file()
        report.add(label, f"file {path}", present, "present", "present" if present else "absent")
    moddir = root / "lib" / "modules" / kver
    report.add(
        label,
        f"directory /lib/modules/{kver}/",
        moddir.is_dir(),
        "present",
        "present" if moddir.is_dir() else "absent",
    )
    if moddir.is_dir():
        _check_modules(report, label, root, moddir, kver, runner)
    config = root / "boot" / f"config-{kver}"
    if config.is_file():
        _check_config(report, label, config, target, generated)
    image = root / "boot" / f"vmlinuz-{kver}"
    if image.is_file():
        _check_image(report, label, image.read_bytes(), target[1], runner, root.parent)


def _parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            break  # depmod -n goes on with modules.alias
        matched = _MODULE_RE.match(line)
        if matched:
            deps[matched[1]] = tuple(matched[2].split())
    return deps


def _check_modules(
    report: VerifyReport, label: str, root: Path, moddir: Path, kver: str, runner: Runner
) -> None:
    argv: list[str | Path] = ["/usr/sbin/depmod", "-n", "-e", "-b", root]
    system_map = root / "boot" / f"System.map-{kver}"
    if system_map.is_file():
        argv += ["-F", system_map]
    result = runner.run([*argv, kver], check=False)
    lines = result.output.splitlines()
    warnings = [line for line in lines if line.startswith("depmod:")]
    computed = _parse_modules_dep("\n".join(line for line in lines if line not in warnings))
    unknown = [line for line in warnings if "unknown symbol" in line]
    report.add(
        label,
        "module dependencies resolve",
        result.ok and not unknown,
        "depmod -e without unknown symbols",
        "; ".join(unknown[:5]) or f"depmod exit {result.returncode}",
    )
    shipped_path = moddir / "modules.dep"
    if shipped_path.is_file():
        shipped = _parse_modules_dep(shipped_path.read_text())
        differ = sorted(set(shipped) ^ set(computed)) + sorted(
            m for m in set(shipped) & set(computed) if set(shipped[m]) != set(computed[m])
        )
        report.add(
            label,
            "modules.dep matches depmod",
            not differ,
            f"{len(computed)} modules as depmod -n lists them",
            f"differences in {', '.join(differ[:5])}",
        )
    modules = sorted(p for p in moddir.rglob("*.ko") if p.is_file())
    wrong = []
    for module in modules:
        try:
            vermagic = modinfo(module).get("vermagic", "")
        except ELFError as exc:
            vermagic = f"unreadable ({exc})"
        if vermagic != kver and not vermagic.startswith(f"{kver} "):
            wrong.append(f"{module.relative_to(moddir)}: {vermagic or 'no vermagic'}")
    report.add(
        label,
        "module vermagic",
        not wrong,
        f"vermagic starting with {kver}",
        "; ".join(wrong[:5]) or f"{len(modules)} modules",
    )


def _show(value: configs.Value) -> str:
    return "not set" if value is None else value


def _check_config(
    report: VerifyReport,
    label: str,
    path: Path,
    target: tuple[Arch, tuple[GuestType, ...]],
    generated: dict[str, configs.Value],
) -> None:
    inside = configs.parse_config_values(path.read_text())
    for option in required_options(*target):
        value = inside.get(option)
        report.add(label, f"config CONFIG_{option}", value == "y", "y", _show(value))
    significant = {
        symbol
        for symbol in set(inside) | set(generated)
        if not toolchain.is_toolchain_symbol(symbol)
    }
    differ = sorted(s for s in significant if inside.get(s) != generated.get(s))
    report.add(
        label,
        "config equals the generated one",
        not differ,
        "; ".join(f"CONFIG_{s}={_show(generated.get(s))}" for s in differ[:10]) or "same",
        "; ".join(f"CONFIG_{s}={_show(inside.get(s))}" for s in differ[:10])
        + (f" (+{len(differ) - 10} more)" if len(differ) > 10 else ""),
    )


def _check_image(
    report: VerifyReport,
    label: str,
    image: bytes,
    guests: tuple[GuestType, ...],
    runner: Runner,
    scratch: Path,
) -> None:
    payload = find_payload(image, runner, scratch)
    readable = dict(SUPPORTED_MAGICS)
    report.add(
        label,
        "kernel compression",
        payload.compression in readable,
        " or ".join(readable),
        payload.compression,
    )
    report.add(
        label,
        "vmlinux inside the bzImage",
        payload.elf is not None,
        "an ELF file",
        payload.problem or "an ELF file",
    )
    if payload.elf is None:
        return
    try:
        notes = xen_notes(payload.elf)
    except ELFError as exc:
        report.add(label, "ELF notes", False, "readable notes", exc)
        return
    for kind in required_notes(guests):
        report.add(
            label,
            f"Xen ELF note {NOTE_NAMES[kind]}",
            kind in notes,
            "present",
            "present" if kind in notes else "absent",
        )
    for kind in OPTIONAL_NOTES:
        found = "present" if kind in notes else "absent"
        report.add(label, f"Xen ELF note {NOTE_NAMES[kind]} (optional)", True, "either", found)
    if XEN_ELFNOTE_GUEST_OS in notes:
        guest = notes[XEN_ELFNOTE_GUEST_OS].rstrip(b"\0").decode("ascii", "replace")
        report.add(label, "Xen ELF note GUEST_OS value", guest == "linux", "linux", guest)
