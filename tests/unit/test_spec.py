from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from kxen import manifest
from kxen.build import spec
from kxen.errors import ExitCode, InputError
from kxen.manifest import Manifest
from kxen.patches.series import Patch
from kxen.upstream import origin
from kxen.upstream.origin import ORIGIN_GIT, ORIGIN_KERNEL_ORG, ORIGIN_LOCAL_TARBALL, Upstream
from kxen.upstream.snapshot import Snapshot
from kxen.versions import UpstreamVersion

from ..hostile.injection import (
    HOSTILE_TARBALL_NAMES,
    HOSTILE_TOKENS,
    HOSTILE_TOP_DIRECTORY,
    traces,
)
from ..support import make_checkout
from .conftest import kernel_makefile, write_tarball

MIRROR = "https://cdn.kernel.org/pub/linux/kernel/"
UP_192 = Upstream(
    version=UpstreamVersion("6.1", 192),
    tarball=Path("linux-6.1.tar.xz"),
    patches=(Path("patch-6.1.192.xz"),),
    topdir="linux-6.1",
    origin=ORIGIN_KERNEL_ORG,
    identity="x",
)
UP_RC3 = Upstream(
    version=UpstreamVersion("6.2", rc=3),
    tarball=Path("linux-6.1.tar.xz"),
    patches=(Path("patch-6.2-rc3.xz"),),
    topdir="linux-6.1",
    origin=ORIGIN_KERNEL_ORG,
    identity="y",
)


@pytest.fixture
def load(checkout):
    """Load the checkout's manifest after replacing text in it (each `old` must occur)."""
    path = checkout / manifest.MANIFEST_NAME
    original = path.read_text()

    def load(*replacements: tuple[str, str]) -> Manifest:
        text = original
        for old, new in replacements:
            assert old in text, f"{old!r} is not in the shipped manifest any more"
            text = text.replace(old, new, 1)
        path.write_text(text)
        return manifest.load(path)

    return load


@pytest.fixture
def templates(checkout) -> Path:
    return checkout / "specs"


@pytest.fixture
def local_upstream(tmp_path, make_tarball, makefile_text):
    """A local kernel 6.1.5 tarball called `name` with top directory `top`, as kxen reads it."""

    def make(name: str = "linux-source-6.1.tar.xz", top: str = "linux-source-6.1") -> Upstream:
        given = tmp_path / "given"
        given.mkdir(exist_ok=True)
        members = {f"{top}/Makefile": makefile_text(6, 1, 5).encode(), f"{top}/README": b"Linux\n"}
        return origin.from_tarball(make_tarball(given / name, members), tmp_path / "cache")

    return make


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The working directory, where a hostile name's `touch pwned` would land."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _inputs(
    loaded: Manifest,
    upstream: Upstream = UP_192,
    flavour: str = "default",
    patches: tuple[Patch, ...] = (),
    **overrides: object,
) -> spec.SpecInputs:
    inputs = spec.SpecInputs(
        manifest=loaded,
        upstream=upstream,
        flavour=flavour,
        buildid=spec.flavour_buildid(loaded.buildid, flavour),
        patches=patches,
        config_names=spec.config_names(loaded, upstream, flavour),
    )
    return dataclasses.replace(inputs, **overrides)


def _render_to(tmp_path: Path, inputs: spec.SpecInputs, templates: Path) -> Path:
    path = tmp_path / "kernel-xen.spec"
    spec.write(spec.render(inputs, templates), path)
    return path


_TAG_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*(?:\([a-z]+\))?):\s*(.*)$")


def _tags(parsed: str) -> list[tuple[str, str]]:
    """(tag, value) of the main package's preamble in `rpmspec -P` output."""
    tags = []
    for line in parsed.splitlines():
        if line.startswith("%description"):
            break
        if match := _TAG_RE.match(line):
            tags.append((match[1], match[2].strip()))
    return tags


def _tag(parsed: str, name: str) -> str:
    values = [value for tag, value in _tags(parsed) if tag == name]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


@pytest.mark.parametrize("arch", ["x86_64", "i686"])
def test_rendered_spec_parses_with_rpmspec(tmp_path, load, templates, rpmspec, arch):
    path = _render_to(tmp_path, _inputs(load()), templates)
    parsed = rpmspec("-P", "--target", arch, path).stdout
    assert _tag(parsed, "Name") == "kernel-xen"
    assert _tag(parsed, "Version") == "6.1.192"
    assert _tag(parsed, "Release") == "1"
    assert _tag(parsed, "Source0") == MIRROR + "v6.x/linux-6.1.tar.xz"
    assert _tag(parsed, "Source1") == MIRROR + "v6.x/patch-6.1.192.xz"
    assert _tag(parsed, "Source100") == "kernel-6.1.192-i686-xen.config"
    assert _tag(parsed, "Source101") == "kernel-6.1.192-x86_64-xen.config"
    assert _tag(parsed, "ExclusiveArch").split() == ["i686", "x86_64"]
    assert _tag(parsed, "License") == "GPL-2.0-only"
    provides = [value for tag, value in _tags(parsed) if tag == "Provides"]
    assert f"kernel-xen-uname-r = 6.1.192-1.{arch}+xen" in provides
    assert f"Provides: kernel-xen-devel-uname-r = 6.1.192-1.{arch}+xen" in parsed
    # %prep applies the upstream patch and copies the config of this arch, a declared Source,
    # each file quoted so that it stays one word in the shell
    assert 'xz -T0 -dc "/nonexistent/linux-6.1.tar.xz" | tar -xf - --strip-components=1' in parsed
    assert 'xz -T0 -dc "/nonexistent/patch-6.1.192.xz" | patch -p1' in parsed
    assert f'cp "/nonexistent/kernel-6.1.192-{arch}-xen.config" .config' in parsed
    assert "kernel_arch" not in parsed.split("%prep", 1)[1].split("%build", 1)[0]
    # the arch's block (kxen.arches): make's ARCH, the x86 image and devel files
    assert ("ARCH=i386 " in parsed) == (arch == "i686")
    assert "  bzImage modules\n" in parsed
    assert 'install -m 0755 arch/x86/boot/bzImage "' in parsed
    assert "find include scripts arch/x86/include " in parsed
    assert "%{kernel_image" not in parsed and "%{kernel_srcarch}" not in parsed


def test_source_names_match_the_rpm_query(tmp_path, load, templates, rpmspec):
    path = _render_to(tmp_path, _inputs(load()), templates)
    result = rpmspec(
        "-q", "--srpm", "--target", "x86_64", "--qf", "%{NAME}|%{VERSION}|%{RELEASE}\n", path
    )
    assert result.stdout.strip() == "kernel-xen|6.1.192|1"


def test_buildid_and_smoke_flavour(tmp_path, load, templates, rpmspec):
    loaded = load(("release: 1\n", "release: 3\nbuildid: .local\n"))
    inputs = _inputs(loaded, flavour="smoke")
    assert inputs.buildid == ".local.smoke"
    parsed = rpmspec("-P", "--target", "x86_64", _render_to(tmp_path, inputs, templates)).stdout
    assert _tag(parsed, "Release") == "3.local.smoke"
    assert _tag(parsed, "Source100") == "kernel-6.1.192-i686-smoke-xen.config"
    assert _tag(parsed, "Source101") == "kernel-6.1.192-x86_64-smoke-xen.config"
    assert "Provides: kernel-xen-uname-r = 6.1.192-3.local.smoke.x86_64+xen" in parsed
    assert 'cp "/nonexistent/kernel-6.1.192-x86_64-smoke-xen.config" .config' in parsed
    assert inputs.nvr == "kernel-xen-6.1.192-3.local.smoke"
    assert inputs.kernel_release("x86_64") == "6.1.192-3.local.smoke.x86_64+xen"


def test_prerelease_release(tmp_path, load, templates, rpmspec):
    loaded = load(('  version: "6.1"\n', '  version: "6.2"\n  rc: 3\n'))
    assert loaded.upstream == UP_RC3.version
    parsed = rpmspec(
        "-P", "--target", "x86_64", _render_to(tmp_path, _inputs(loaded, UP_RC3), templates)
    ).stdout
    assert _tag(parsed, "Version") == "6.2.0"
    assert _tag(parsed, "Release") == "0.1.rc3"
    assert _tag(parsed, "Source0") == MIRROR + "v6.x/linux-6.1.tar.xz"
    assert _tag(parsed, "Source1") == MIRROR + "v6.x/testing/patch-6.2-rc3.xz"
    assert _tag(parsed, "Source101") == "kernel-6.2.0-x86_64-xen.config"
    assert "Provides: kernel-xen-uname-r = 6.2.0-0.1.rc3.x86_64+xen" in parsed


def test_local_tarball_origin(tmp_path, load, templates, rpmspec, local_upstream):
    local = local_upstream("linux-source-6.1.tar.xz", "linux-source-6.1")
    assert local.version == UpstreamVersion("6.1", 5)
    inputs = _inputs(load(), local, local_tarball_sha512=local.tarball_sha512)
    path = _render_to(tmp_path, inputs, templates)
    # the tarball ships under kxen's own name and unpacks into kxen's own directory
    assert (
        f"# Local tarball: linux-6.1.5.tar.xz, SHA512 {local.tarball_sha512}\n" in path.read_text()
    )
    assert "\n# Flavour: default\n" in path.read_text()
    parsed = rpmspec("-P", "--target", "x86_64", path).stdout
    assert _tag(parsed, "Source0") == "linux-6.1.5.tar.xz"
    assert "Source1" not in dict(_tags(parsed))
    assert "%setup -q -T -n linux-6.1.5 -c" in path.read_text()
    assert "linux-source" not in path.read_text()


@pytest.mark.parametrize("name", HOSTILE_TARBALL_NAMES.values(), ids=HOSTILE_TARBALL_NAMES.keys())
def test_a_local_tarball_ships_under_a_name_of_kxen_s_own(
    tmp_path, load, templates, rpmspec, local_upstream, scratch, name
):
    local = local_upstream(name, HOSTILE_TOP_DIRECTORY)
    path = _render_to(tmp_path, _inputs(load(), local), templates)
    text = path.read_text()
    assert name not in text
    assert HOSTILE_TOP_DIRECTORY not in text
    assert "pwned" not in text
    assert "%setup -q -T -n linux-6.1.5 -c\n" in text
    parsed = rpmspec("-P", "--target", "x86_64", path).stdout
    assert _tag(parsed, "Source0") == "linux-6.1.5.tar.xz"
    assert 'xz -T0 -dc "/nonexistent/linux-6.1.5.tar.xz" | tar -xf - --strip-components=1' in parsed
    assert not traces(scratch)


@pytest.mark.parametrize(
    ("magic", "suffix", "decompress"),
    [
        (lzma.compress(b"tar"), ".xz", "xz -T0 -dc"),
        (b"BZh91AY&SY", ".bz2", "bzip2 -dc"),
        (b"\x1f\x8b\x08\x00", ".gz", "gzip -dc"),
        (b"\x28\xb5\x2f\xfd\x00", ".zst", "zstd -dc"),
        (b"linux-6.1/\x00\x00", "", "cat"),
    ],
)
def test_the_shipped_name_follows_the_tarball_s_content(
    tmp_path, load, templates, magic, suffix, decompress
):
    given = tmp_path / "linux.tar.gz"  # whatever the name says
    given.write_bytes(magic)
    assert spec.compression_suffix(given) == suffix
    local = dataclasses.replace(
        UP_192, tarball=given, patches=(), origin=ORIGIN_LOCAL_TARBALL, topdir="whatever"
    )
    assert spec.shipped_names(local) == (f"linux-6.1.192.tar{suffix}",)
    text = spec.render(_inputs(load(), local), templates)
    assert f"Source0: linux-6.1.192.tar{suffix}\n" in text
    assert f'{decompress} "%{{SOURCE0}}" | tar -xf -' in text


def test_a_git_snapshot_ships_as_its_version(tmp_path, load, templates):
    made = tmp_path / "snapshot.tar.zst"
    made.write_bytes(b"\x28\xb5\x2f\xfd\x00")
    version = UpstreamVersion("6.2", rc=3, git=2)
    snap = _snapshot(version, made, describe="v6.2-rc3-2-gabcdef")
    git = Upstream(version, made, (), "linux-6.2-rc3-git2", ORIGIN_GIT, "g", "cd" * 64, snap)
    assert spec.shipped_names(git) == ("linux-6.2-rc3-git2.tar.zst",)
    assert spec.build_dir(git) == "linux-6.2-rc3-git2"


def test_kernel_org_files_keep_their_names(load, templates):
    assert spec.shipped_names(UP_192) == ("linux-6.1.tar.xz", "patch-6.1.192.xz")
    assert spec.build_dir(UP_192) == "linux-6.1"
    assert spec.shipped_names(UP_RC3) == ("linux-6.1.tar.xz", "patch-6.2-rc3.xz")


def test_an_unreadable_local_tarball_is_an_input_error(tmp_path):
    local = dataclasses.replace(
        UP_192, tarball=tmp_path / "gone.tar.xz", patches=(), origin=ORIGIN_LOCAL_TARBALL
    )
    with pytest.raises(InputError, match=r"gone\.tar\.xz: cannot read the tarball"):
        spec.shipped_tarball_name(local)


def test_downstream_patches(tmp_path, load, templates, rpmspec):
    patches = (Patch(Path("0001-fix-a.patch"), 1, 3), Patch(Path("0002-fix-b.patch"), 0, 4))
    path = _render_to(tmp_path, _inputs(load(), patches=patches), templates)
    parsed = rpmspec("-P", "--target", "x86_64", path).stdout
    assert _tag(parsed, "Patch0001") == "0001-fix-a.patch"
    assert _tag(parsed, "Patch0002") == "0002-fix-b.patch"
    prep = parsed.split("%prep", 1)[1].split("%build", 1)[0]
    applied = []
    for line in prep.splitlines():
        words = line.split()
        files = [w for w in words if w.endswith(".patch")]
        strips = [w for w in words if re.fullmatch(r"-p[0-9]+", w)]
        if files and strips:
            applied.append((*files, strips))
    assert applied == [
        ("/nonexistent/0001-fix-a.patch", ["-p1"]),
        ("/nonexistent/0002-fix-b.patch", ["-p0"]),
    ]
    assert prep.index("0001-fix-a.patch") < prep.index("0002-fix-b.patch")
    # upstream patches come before downstream ones
    assert prep.index("patch-6.1.192.xz") < prep.index("0001-fix-a.patch")


def test_changelog_is_valid_for_rpm(tmp_path, load, templates, rpmspec):
    loaded = load()
    path = _render_to(tmp_path, _inputs(loaded), templates)
    result = rpmspec(
        "-q",
        "--srpm",
        "--target",
        "x86_64",
        "--qf",
        "[%{CHANGELOGTIME:day}|%{CHANGELOGNAME}\n]",
        path,
    )
    assert "bogus date" not in result.stderr
    first = result.stdout.splitlines()[0]
    entry = loaded.changelog[0]
    day = entry.date.strftime("%a %b %d %Y")
    assert first == f"{day}|{entry.author} - 6.1.192-1"


def test_free_text_cannot_run_macros(tmp_path, load, templates, rpmspec):
    shell = f"%(touch {tmp_path}/CANARY)"
    lua = f"%{{lua: os.execute('touch {tmp_path}/CANARY2')}}"
    author = f"%(touch {tmp_path}/CANARY3) maintainers"
    loaded = load(
        ("summary: The Linux kernel", f"summary: 100% {shell} The Linux kernel"),
        ("      - Build the Xen", f'      - "{shell} and {lua} 50%"\n      - Build the Xen'),
        ("    author: kernel-xen maintainers <", f'    author: "{author} <'),
        ("example.org>\n", 'example.org>"\n'),
    )
    path = _render_to(tmp_path, _inputs(loaded), templates)
    parsed = rpmspec("-P", "--target", "x86_64", path).stdout
    assert not (tmp_path / "CANARY").exists()
    assert not (tmp_path / "CANARY2").exists()
    assert not (tmp_path / "CANARY3").exists()
    # the text reaches the package unchanged
    assert _tag(parsed, "Summary").startswith(f"100% {shell} The Linux kernel")
    assert f"- {shell} and {lua} 50%" in parsed
    assert f"* Wed Nov 25 2026 {author} <" in parsed
    # control: the same spec without the escaping does run both payloads
    raw = tmp_path / "raw.spec"
    raw.write_text(path.read_text().replace("%%", "%"))
    rpmspec("-P", "--target", "x86_64", raw, check=False)
    assert (tmp_path / "CANARY").exists()
    assert (tmp_path / "CANARY2").exists()
    assert (tmp_path / "CANARY3").exists()


def test_text_escapes_percent_and_refuses_line_breaks():
    assert spec.text("100% %{x} %%") == "100%% %%{x} %%%%"
    assert isinstance(spec.text("a"), spec.SpecText)
    for bad in ("a\nb", "a\rb", "trailing\n", "a\x00b", "a\tb", "a\x1b[31mb", "a\x7fb", "a\x85b"):
        with pytest.raises(InputError, match="single line"):
            spec.text(bad)


def _render_and_write(inputs: spec.SpecInputs, templates: Path, path: Path) -> None:
    """What the pipeline does: render, then write only what rendered."""
    spec.write(spec.render(inputs, templates), path)


def _bypasses(
    loaded: Manifest, payload: str, local: Upstream | None = None
) -> dict[str, spec.SpecInputs]:
    """Inputs with `payload` at the start of a token field, built around the schema."""
    local = local or dataclasses.replace(UP_192, origin=ORIGIN_LOCAL_TARBALL, patches=())
    snapshot = _snapshot(local.version, local.tarball, describe="v6.1-5-gabcdef")
    git = dataclasses.replace(local, origin=ORIGIN_GIT)
    return {
        "name": _inputs(dataclasses.replace(loaded, name=payload)),
        "arches": _inputs(dataclasses.replace(loaded, arches=("x86_64", payload))),
        "mirror": _inputs(dataclasses.replace(loaded, mirrors=(f"{payload}/",))),
        "buildid": _inputs(loaded, buildid=payload),
        "flavour": _inputs(loaded, flavour=payload),
        "config": _inputs(loaded, config_names=(payload,) * len(loaded.arches)),
        "patch": _inputs(loaded, patches=(Patch(Path(f"{payload}.patch"), 1, 1),)),
        "sha512": _inputs(loaded, local, local_tarball_sha512=payload),
        "git commit": _inputs(
            loaded, dataclasses.replace(git, snapshot=dataclasses.replace(snapshot, commit=payload))
        ),
        "git describe": _inputs(
            loaded,
            dataclasses.replace(git, snapshot=dataclasses.replace(snapshot, describe=payload)),
        ),
        "changelog version": _inputs(
            dataclasses.replace(
                loaded,
                changelog=(dataclasses.replace(loaded.changelog[0], version=payload),),
            )
        ),
    }


DAY = dt.date(2026, 11, 25)


def _snapshot(version: UpstreamVersion, tarball: Path, describe: str) -> Snapshot:
    return Snapshot(
        repo=Path("/git"),
        commit="ab" * 20,
        describe=describe,
        version=version,
        tarball=tarball,
        committed=DAY,
        tarball_sha512="cd" * 64,
    )


TOKEN_FIELDS = [
    "name",
    "arches",
    "mirror",
    "buildid",
    "flavour",
    "config",
    "patch",
    "sha512",
    "git commit",
    "git describe",
]


@pytest.mark.parametrize("field", TOKEN_FIELDS)
def test_token_fields_that_bypass_the_schema_are_refused(
    tmp_path, load, templates, local_upstream, field
):
    payload = "%(touch CANARY)"
    inputs = _bypasses(load(), payload, local_upstream())[field]
    target = tmp_path / "kernel-xen.spec"
    target.write_bytes(b"previous spec\n")
    before = sorted(tmp_path.iterdir())
    with pytest.raises(InputError) as info:
        _render_and_write(inputs, templates, target)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert payload in info.value.message
    assert target.read_bytes() == b"previous spec\n"
    assert sorted(tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def one_checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Upstream, Path]:
    """A checkout's manifest, templates and a local upstream, made once for the 440 cases
    below (each renders one spec; none of them writes anything)."""
    root = make_checkout(tmp_path_factory.mktemp("checkout"))
    members = {"linux-6.1.5/Makefile": kernel_makefile(6, 1, 5).encode()}
    tarball = write_tarball(tmp_path_factory.mktemp("given") / "linux-6.1.5.tar.xz", members)
    up = origin.from_tarball(tarball, tmp_path_factory.mktemp("cache"))
    return manifest.load(root / manifest.MANIFEST_NAME), up, root / "specs"


@pytest.mark.parametrize("payload", HOSTILE_TOKENS.values(), ids=HOSTILE_TOKENS.keys())
@pytest.mark.parametrize("field", TOKEN_FIELDS)
def test_every_hostile_character_in_every_token_field_is_refused(
    one_checkout: tuple[Manifest, Upstream, Path], field: str, payload: str
) -> None:
    loaded, up, templates = one_checkout
    inputs = _bypasses(loaded, payload, up)[field]
    with pytest.raises(InputError) as info:
        spec.render(inputs, templates)
    assert repr(payload)[1:-1] in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "",
        "kernel-xen",
        "6.1.192",
        "0.1.rc3.git2",
        ".local.smoke",
        "linux-2.6.25.tar.bz2",
        "patch-6.2-rc3-git2.xz",
        "kernel-6.1.192-x86_64-smoke-xen.config",
        "0001-xen-fix_a+b.patch",
        "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.tar.xz",
        "file:///srv/mirror/~kernel/linux/kernel/v2.6/snapshots/patch-2.6.25-rc8-git3.bz2",
        "https://user@mirror.example:8443/linux/",
        "v6.2-rc3-45-g1234abcd5678",
    ],
)
def test_names_rpm_and_kernel_org_use_are_tokens(value):
    assert spec.token(value) == value


def test_changelog_version_is_escaped_text(tmp_path, load, templates, rpmspec):
    payload = f"%(touch {tmp_path}/CANARY)"
    inputs = _bypasses(load(), payload)["changelog version"]
    rpmspec("-P", "--target", "x86_64", _render_to(tmp_path, inputs, templates))
    assert not (tmp_path / "CANARY").exists()


def test_a_token_with_a_trailing_newline_is_refused(tmp_path, load, templates):
    loaded = load()
    with pytest.raises(InputError):
        spec.render(_inputs(dataclasses.replace(loaded, name="kernel-xen\n")), templates)


def test_values_that_are_not_strings_are_refused(tmp_path):
    env = spec.environment(tmp_path)
    assert env.from_string("{{ n }}-{{ s }}").render(n=3, s="a.b") == "3-a.b"
    for value in (None, 1.5, ["a"], {"a": 1}):
        with pytest.raises(InputError, match="refusing to put"):
            env.from_string("{{ v }}").render(v=value)


def _broken_templates(tmp_path: Path, templates: Path) -> Path:
    """The real template with one variable misspelt."""
    broken = tmp_path / "broken-templates"
    broken.mkdir()
    text = (templates / spec.TEMPLATE_NAME).read_text()
    assert "{{ name }}" in text
    (broken / spec.TEMPLATE_NAME).write_text(text.replace("{{ name }}", "{{ package_name }}", 1))
    return broken


def test_unknown_template_variable_fails(tmp_path, load, templates):
    env = spec.environment(tmp_path)
    with pytest.raises((jinja2.UndefinedError, InputError)):
        env.from_string("Name: {{ nmae }}").render(name="kernel-xen")
    with pytest.raises(jinja2.UndefinedError, match="nmae"):
        env.from_string("{% if nmae %}x{% endif %}").render(name="kernel-xen")
    broken = _broken_templates(tmp_path, templates)
    target = tmp_path / "kernel-xen.spec"
    target.write_bytes(b"previous spec\n")
    with pytest.raises((jinja2.UndefinedError, InputError)):
        _render_and_write(_inputs(load()), broken, target)
    assert target.read_bytes() == b"previous spec\n"


def test_unknown_template_variable_is_named(tmp_path, load, templates):
    with pytest.raises(InputError, match=r"kernel-xen\.spec\.j2: 'package_name' is undefined"):
        spec.render(_inputs(load()), _broken_templates(tmp_path, templates))


def test_kernel_release_over_the_uts_limit_is_refused(tmp_path, load, templates):
    loaded = load()
    inputs = _inputs(loaded, buildid="." + "x" * 60)
    with pytest.raises(InputError, match="the limit is 64"):
        spec.render(inputs, templates)


def test_spec_inputs_properties(load):
    loaded = load(("release: 1\n", "release: 4\nbuildid: .ci\n"))
    inputs = _inputs(loaded, UP_RC3)
    assert inputs.release == "0.4.rc3"
    assert inputs.nvr == "kernel-xen-6.2.0-0.4.rc3.ci"
    assert inputs.kernel_release("i686") == "6.2.0-0.4.rc3.ci.i686+xen"
    assert spec.flavour_buildid("", "default") == ""
    assert spec.flavour_buildid(".ci", "smoke") == ".ci.smoke"
    assert spec.config_names(loaded, UP_RC3, "smoke") == (
        "kernel-6.2.0-i686-smoke-xen.config",
        "kernel-6.2.0-x86_64-smoke-xen.config",
    )


# --- %prep of the rendered spec on a fake kernel tree -----------------------------


def _xz_diff(path: Path, name: str, old: str, new: str) -> None:
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
    )
    path.write_bytes(lzma.compress("".join(diff).encode()))


def _run_prep(tmp_path, load, templates, make_tarball, makefile_text, upstream, patch_files):
    if shutil.which("rpmbuild") is None or shutil.which("make") is None:
        pytest.skip("rpmbuild and make are needed")
    topdir = tmp_path / "rpmbuild"
    sources_dir = topdir / "SOURCES"
    sources_dir.mkdir(parents=True)
    make_tarball(
        sources_dir / upstream.tarball.name,
        {"linux-6.1/Makefile": makefile_text(6, 1, 0).encode(), "linux-6.1/README": b"Linux\n"},
    )
    for name, (old, new) in patch_files.items():
        _xz_diff(sources_dir / name[1], name[0], old, new)
    loaded = load()
    inputs = _inputs(loaded, upstream)
    for config in inputs.config_names:
        (sources_dir / config).write_text("CONFIG_XEN=y\n")
    spec_path = _render_to(tmp_path, inputs, templates)
    return subprocess.run(
        [
            "rpmbuild",
            "-bp",
            "--nodeps",
            "--target",
            "x86_64",
            "--define",
            f"_topdir {topdir}",
            "--define",
            "dist %{nil}",
            spec_path,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prep_applies_a_stable_update(tmp_path, load, templates, make_tarball, makefile_text):
    patches = {("Makefile", "patch-6.1.192.xz"): (makefile_text(6, 1, 0), makefile_text(6, 1, 192))}
    result = _run_prep(tmp_path, load, templates, make_tarball, makefile_text, UP_192, patches)
    assert result.returncode == 0, result.stderr
    (makefile,) = (tmp_path / "rpmbuild").rglob("linux-6.1/Makefile")
    assert "SUBLEVEL = 192\n" in makefile.read_text()
    assert "EXTRAVERSION = -1.x86_64+xen\n" in makefile.read_text()
    assert (makefile.parent / ".config").read_text() == "CONFIG_XEN=y\n"


def test_prep_applies_an_rc(tmp_path, load, templates, make_tarball, makefile_text):
    patches = {
        ("Makefile", "patch-6.2-rc3.xz"): (makefile_text(6, 1, 0), makefile_text(6, 2, 0, "-rc3"))
    }
    result = _run_prep(tmp_path, load, templates, make_tarball, makefile_text, UP_RC3, patches)
    assert result.returncode == 0, result.stderr


def test_prep_refuses_a_tree_of_another_version(
    tmp_path, load, templates, make_tarball, makefile_text
):
    patches = {("Makefile", "patch-6.1.192.xz"): (makefile_text(6, 1, 0), makefile_text(6, 1, 191))}
    result = _run_prep(tmp_path, load, templates, make_tarball, makefile_text, UP_192, patches)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert any(
        "6.1.191-1.x86_64+xen" in line and "6.1.192-1.x86_64+xen" in line for line in errors
    ), result.stderr


def test_prep_of_a_git_snapshot(tmp_path, load, templates, make_tarball, makefile_text):
    snapshot = Upstream(
        version=UpstreamVersion("6.1", git=5),
        tarball=Path("linux-6.1.tar.xz"),
        patches=(Path("patch-6.1-git5.xz"),),
        topdir="linux-6.1",
        origin=ORIGIN_KERNEL_ORG,
        identity="g",
    )
    patches = {("README", "patch-6.1-git5.xz"): ("Linux\n", "Linux, merge window\n")}
    result = _run_prep(tmp_path, load, templates, make_tarball, makefile_text, snapshot, patches)
    assert result.returncode == 0, result.stderr
