from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from kxen import manifest
from kxen.errors import ExitCode, InputError
from kxen.versions import UpstreamVersion

from ..support import REPO

BASE = """\
name: kernel-xen
summary: The Linux kernel for Xen domU guests
upstream:
  version: "6.1"
  stable: 192
release: 2
arches: [i686, x86_64]
flavours: [default, smoke]
changelog:
  - date: 2026-11-25
    author: Jane Doe <jane@example.org>
    changes:
      - Second
  - date: 2026-01-02
    author: Jane Doe <jane@example.org>
    version: 6.1.0-1
    changes:
      - First
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / manifest.MANIFEST_NAME
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str) -> manifest.Manifest:
    return manifest.load(_write(tmp_path, text))


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as info:
        _load(tmp_path, text)
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    return info.value.message


def test_shipped_manifest_loads(repo):
    loaded = manifest.load(repo / manifest.MANIFEST_NAME)
    assert loaded.name == "kernel-xen"
    assert set(loaded.arches) == {"i686", "x86_64"}
    assert "default" in loaded.flavours
    assert isinstance(loaded.upstream, UpstreamVersion)
    assert loaded.release >= 1
    assert loaded.mirrors and all(m.endswith("/") for m in loaded.mirrors)
    assert loaded.changelog
    assert loaded.root == repo


def test_fields_are_read(tmp_path):
    loaded = _load(tmp_path, BASE)
    assert loaded.path == tmp_path / manifest.MANIFEST_NAME
    assert loaded.upstream == UpstreamVersion("6.1", 192)
    assert loaded.release == 2
    assert loaded.arches == ("i686", "x86_64")
    assert loaded.flavours == ("default", "smoke")
    # defaults of optional fields
    assert loaded.buildid == ""
    assert loaded.license == "GPL-2.0-only"
    assert loaded.mirrors == manifest.DEFAULT_MIRRORS
    first, second = loaded.changelog
    assert first.date == dt.date(2026, 11, 25)
    assert first.changes == ("Second",)
    assert first.version is None
    assert second.version == "6.1.0-1"
    assert second.author == "Jane Doe <jane@example.org>"


def test_optional_fields(tmp_path):
    text = BASE.replace(
        "release: 2\n",
        "release: 2\nbuildid: .local.test_1\nlicense: GPL-2.0-only AND MIT\n",
    ).replace(
        "  stable: 192\n", "  stable: 192\n  mirrors: [file:///srv/mirror/, https://m.example/k/]\n"
    )
    loaded = _load(tmp_path, text)
    assert loaded.buildid == ".local.test_1"
    assert loaded.license == "GPL-2.0-only AND MIT"
    assert loaded.mirrors == ("file:///srv/mirror/", "https://m.example/k/")


def test_stable_must_be_an_integer(tmp_path, line_of):
    text = BASE.replace("stable: 192", 'stable: "192"')
    message = _refusal(tmp_path, text)
    path = tmp_path / manifest.MANIFEST_NAME
    assert message == f"{path}:{line_of(text, 'stable:')}: upstream.stable: expected an integer"


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("release: 2\n", "release: 2\nreleese: 3\n", "releese", "releese:"),
        ("  stable: 192\n", "  stable: 192\n  stabel: 3\n", "upstream.stabel", "stabel:"),
        (
            "    version: 6.1.0-1\n",
            "    version: 6.1.0-1\n    mood: ok\n",
            "changelog[1].mood",
            "mood:",
        ),
    ],
)
def test_unknown_keys_are_refused_with_their_line(tmp_path, line_of, old, new, field, needle):
    text = BASE.replace(old, new)
    message = _refusal(tmp_path, text)
    path = tmp_path / manifest.MANIFEST_NAME
    assert message == f"{path}:{line_of(text, needle)}: {field}: unknown key"


@pytest.mark.parametrize(
    ("old", "new", "expected", "needle"),
    [
        ("release: 2", "release: two", "release: expected an integer", "release:"),
        ("release: 2", "release: true", "release: expected an integer", "release:"),
        ("arches: [i686, x86_64]", "arches: x86_64", "arches: expected a list", "arches:"),
        (
            "flavours: [default, smoke]",
            "flavours: [default, 3]",
            "flavours[1]: expected a string",
            "flavours:",
        ),
        (
            "summary: The Linux kernel for Xen domU guests",
            "summary: [a, b]",
            "summary: expected a string",
            "summary:",
        ),
        (
            'upstream:\n  version: "6.1"\n  stable: 192\n',
            'upstream: "6.1"\n',
            "upstream: expected a mapping",
            "upstream:",
        ),
        ("      - Second", "      - 5", "changelog[0].changes[0]: expected a string", "- 5"),
    ],
)
def test_wrong_types_are_refused(tmp_path, line_of, old, new, expected, needle):
    text = BASE.replace(old, new)
    message = _refusal(tmp_path, text)
    path = tmp_path / manifest.MANIFEST_NAME
    assert message == f"{path}:{line_of(text, needle)}: {expected}"


def test_unquoted_float_version_suggests_quoting(tmp_path, line_of):
    text = BASE.replace('version: "6.1"', "version: 6.1")
    message = _refusal(tmp_path, text)
    path = tmp_path / manifest.MANIFEST_NAME
    assert message.startswith(f"{path}:{line_of(text, 'version: 6.1')}: upstream.version: ")
    assert 'quote it: "6.1"' in message


def test_unquoted_float_version_hint_keeps_what_was_written(tmp_path):
    text = BASE.replace('version: "6.1"', "version: 6.10")
    message = _refusal(tmp_path, text)
    assert 'quote it: "6.10"' in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "arches: [i686, x86_64]",
            "arches: [i686, aarch64]",
            "arches[1]: 'aarch64' is not one of i686, x86_64",
        ),
        ("arches: [i686, x86_64]", "arches: [i686, i686]", "arches: invalid value"),
        ("arches: [i686, x86_64]", "arches: []", "arches: invalid value"),
        ("release: 2\n", "release: 2\nbuildid: local\n", "buildid: invalid value 'local'"),
        ("release: 2\n", "release: 2\nbuildid: .a-b\n", "buildid: invalid value '.a-b'"),
        ("release: 2\n", "release: 0\n", "release: invalid value 0"),
        ("flavours: [default, smoke]", "flavours: [Default]", "flavours[0]: invalid value"),
        ("  stable: 192\n", "  stable: 0\n", "upstream.stable: invalid value 0"),
        (
            "  stable: 192\n",
            "  stable: 1\n  mirrors: [ftp://x.example/]\n",
            "upstream.mirrors[0]: invalid value",
        ),
        (
            "  stable: 192\n",
            "  stable: 1\n  mirrors: [https://x.example/k]\n",
            "upstream.mirrors[0]: invalid value",
        ),
        (
            "    author: Jane Doe <jane@example.org>\n    changes:\n      - Second",
            "    author: Jane Doe\n    changes:\n      - Second",
            "changelog[0].author: invalid value",
        ),
        ('  version: "6.1"\n', '  version: "6.1.1"\n', "upstream.version: invalid value '6.1.1'"),
    ],
)
def test_invalid_values_are_refused(tmp_path, old, new, expected):
    message = _refusal(tmp_path, BASE.replace(old, new))
    assert f": {expected}" in message


@pytest.mark.parametrize("field", ["name", "release", "buildid", "version"])
def test_macro_injection_in_token_fields_is_refused(tmp_path, field):
    payload = f"%(touch {tmp_path}/CANARY)"
    text = {
        "name": BASE.replace("name: kernel-xen", f'name: "{payload}"'),
        "release": BASE.replace("release: 2", f'release: "{payload}"'),
        "buildid": BASE.replace("release: 2\n", f'release: 2\nbuildid: "{payload}"\n'),
        "version": BASE.replace('version: "6.1"', f'version: "{payload}"'),
    }[field]
    message = _refusal(tmp_path, text)
    assert f"{field}:" in message
    assert not (tmp_path / "CANARY").exists()


def test_missing_required_field(tmp_path):
    message = _refusal(tmp_path, BASE.replace("release: 2\n", ""))
    assert message.endswith("(top level): 'release' is required")


def test_stable_and_rc_together_are_refused(tmp_path):
    message = _refusal(tmp_path, BASE.replace("stable: 192", "stable: 192\n  rc: 3"))
    assert "upstream:" in message
    assert "stable update" in message


def test_changelog_must_be_newest_first(tmp_path):
    text = BASE.replace("date: 2026-11-25", "date: 2025-12-31")
    message = _refusal(tmp_path, text)
    path = tmp_path / manifest.MANIFEST_NAME
    assert message == f"{path}: changelog: entries must be newest first"


def test_changelog_entries_of_the_same_day_are_accepted(tmp_path):
    loaded = _load(tmp_path, BASE.replace("date: 2026-01-02", "date: 2026-11-25"))
    assert [e.date for e in loaded.changelog] == [dt.date(2026, 11, 25)] * 2


def test_invalid_date_is_refused_with_its_line(tmp_path, line_of):
    text = BASE.replace("date: 2026-01-02", "date: 2026-02-30")
    message = _refusal(tmp_path, text)
    line = line_of(text, "2026-02-30")
    assert message == (
        f"{tmp_path / manifest.MANIFEST_NAME}:{line}: changelog[1].date: "
        "not a real date '2026-02-30'"
    )


def test_badly_formed_date_is_refused(tmp_path):
    message = _refusal(tmp_path, BASE.replace("date: 2026-01-02", "date: 2 Jan 2026"))
    assert "changelog[1].date: invalid value '2 Jan 2026'" in message


def test_invalid_yaml_names_the_line(tmp_path):
    text = BASE.replace("release: 2", "release: [2")
    message = _refusal(tmp_path, text)
    assert message.startswith(f"{tmp_path / manifest.MANIFEST_NAME}:")
    assert "invalid YAML" in message


def test_a_manifest_must_be_a_mapping(tmp_path):
    assert "must be a mapping" in _refusal(tmp_path, "- a\n- b\n")


def test_missing_and_undecodable_manifests(tmp_path):
    with pytest.raises(InputError, match="no manifest here"):
        manifest.load(tmp_path / manifest.MANIFEST_NAME)
    (tmp_path / manifest.MANIFEST_NAME).write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        manifest.load(tmp_path / manifest.MANIFEST_NAME)


def test_a_trailing_newline_in_a_token_field_is_refused(tmp_path):
    with pytest.raises(InputError):
        _load(tmp_path, BASE.replace("name: kernel-xen", 'name: "kernel-xen\\n"'))


@pytest.mark.parametrize(
    ("old", "new"), [("release: 2", "release: 2.0"), ("stable: 192", "stable: 192.0")]
)
def test_integral_floats_are_not_integers(tmp_path, old, new):
    with pytest.raises(InputError):
        _load(tmp_path, BASE.replace(old, new))


def test_duplicate_keys_are_refused(tmp_path):
    text = BASE.replace("flavours: [default, smoke]\n", "flavours: [default, smoke]\nrelease: 7\n")
    with pytest.raises(InputError, match="release"):
        _load(tmp_path, text)


def test_find_walks_up_to_the_manifest(tmp_path):
    root = tmp_path / "repo"
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    path = _write(root, BASE)
    assert manifest.find(deep) == path
    assert manifest.find(root) == path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(InputError, match=r"no kernel-xen\.yaml"):
        manifest.find(elsewhere)


def test_a_stable_update_snapshot_is_refused_in_the_manifest(tmp_path):
    """kernel.org has no such files: a stable-branch snapshot comes from a git checkout."""
    text = (
        (REPO / "kernel-xen.yaml")
        .read_text()
        .replace('  version: "6.1"\n', '  version: "6.1"\n  stable: 192\n  git: 5\n')
    )
    path = tmp_path / "kernel-xen.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"upstream\.git: kernel\.org publishes no snapshot"):
        manifest.load(path)
