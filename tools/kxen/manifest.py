"""The manifest `kernel-xen.yaml`: what to build, validated against a strict schema.

Every refusal names the field path and the line (`kernel-xen.yaml:7:
upstream.stable: expected an integer`), because a packager fixes a manifest
from the message alone.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kxen import arches, locate
from kxen.errors import InputError
from kxen.support import inputs
from kxen.versions import UpstreamVersion

if TYPE_CHECKING:  # jsonschema is imported by the first validation: `kxen --help` stays fast
    import jsonschema

MANIFEST_NAME = locate.MANIFEST_NAME
find = locate.find_manifest
DEFAULT_MIRRORS = ("https://cdn.kernel.org/pub/linux/kernel/",)


@dataclass(frozen=True)
class ChangelogEntry:
    date: dt.date
    author: str
    changes: tuple[str, ...]
    version: str | None = None


@dataclass(frozen=True)
class SignatureRule:
    """`upstream.signatures[i]`: the detached signature of one upstream file and the
    fingerprints of the keys allowed to make it (see `kxen.signatures`)."""

    file: str
    signature: str
    keys: tuple[str, ...]
    where: str
    """`kernel-xen.yaml:<line>: upstream.signatures[i]`, for messages about this rule."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    summary: str
    license: str
    url: str
    upstream: UpstreamVersion
    mirrors: tuple[str, ...]
    release: int
    buildid: str
    arches: tuple[str, ...]
    flavours: tuple[str, ...]
    changelog: tuple[ChangelogEntry, ...]
    signatures: tuple[SignatureRule, ...] = ()
    mock_roots: tuple[tuple[str, str], ...] = ()
    """`mock.roots`: the mock config per arch, overriding kxen's default Fedora roots."""

    @property
    def root(self) -> Path:
        return self.path.parent

    def signature_rule(self, filename: str) -> SignatureRule | None:
        return next((rule for rule in self.signatures if rule.file == filename), None)


@cache
def _schema_file() -> dict[str, Any]:
    text = resources.files("kxen").joinpath("schemas/manifest.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _schema() -> dict[str, Any]:
    """The schema file with its arch fields made from kxen.arches: `arches` takes their
    names and `mock.roots` a root for each."""
    schema = copy.deepcopy(_schema_file())
    names = list(arches.names())
    fields = schema["properties"]
    fields["arches"]["items"]["enum"] = names
    fields["mock"]["properties"]["roots"]["properties"] = dict.fromkeys(
        names, schema["$defs"]["mock_root"]
    )
    return schema


def load(path: Path) -> Manifest:
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no manifest here (expected {MANIFEST_NAME})")
    return parse(inputs.read_text(path, path.parent), path)


def parse(text: str, path: Path) -> Manifest:
    data, node = inputs.load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path}: the manifest must be a mapping of fields")
    _validate(data, node, path)
    return _build(data, node, path)


@cache
def _validator_class() -> Any:
    """Draft 2020-12 with strict integers: JSON Schema counts 2.0 as an integer, and a
    manifest's `release: 2.0` is a typo, not a 2."""
    import jsonschema

    strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, type_checker=strict
    )


def _multi_line_field(data: Any, parts: list[Any]) -> list[Any] | None:
    """Path of the first string holding a line break: no manifest field may span lines."""
    if isinstance(data, str):
        return parts if ("\n" in data or "\r" in data) else None
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for key, value in items:
        found = _multi_line_field(value, [*parts, key])
        if found is not None:
            return found
    return None


def _validate(data: dict[str, Any], node: yaml.Node | None, path: Path) -> None:
    multi_line = _multi_line_field(data, [])
    if multi_line is not None:
        raise InputError(
            f"{path}:{_line_of(node, multi_line)}: {_dotted(multi_line)}: must be a single line"
        )
    validator = _validator_class()(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    error = errors[0]
    field_path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        field_path = [*field_path, extra[0]]
    line = _line_of(node, field_path)
    where = f"{path}:{line}" if line else str(path)
    field = _dotted(field_path) or "(top level)"
    raw = _node_at(node, field_path)
    written = raw.value if isinstance(raw, yaml.ScalarNode) else None
    raise InputError(f"{where}: {field}: {_describe(error, written)}")


def _describe(error: jsonschema.ValidationError, written: str | None) -> str:
    kind = error.validator
    value = error.instance
    if kind == "type":
        wanted = {
            "integer": "an integer",
            "string": "a string",
            "array": "a list",
            "object": "a mapping",
            "boolean": "true or false",
        }
        expected = str(error.validator_value)
        text = f"expected {wanted.get(expected, expected)}"
        if expected == "string" and isinstance(value, float):
            text += f' (quote it: "{written or value}")'
        return text
    if kind == "additionalProperties":
        return "unknown key"
    if kind == "required":
        return error.message.replace("is a required property", "is required")
    if kind == "enum":
        options = error.validator_value if isinstance(error.validator_value, list) else []
        return f"{value!r} is not one of {', '.join(map(str, options))}"
    if kind == "pattern":
        hint = error.schema.get("description") if isinstance(error.schema, dict) else None
        return f"invalid value {value!r}" + (f": {hint}" if hint else "")
    if kind in ("minimum", "maximum", "minLength", "maxLength", "minItems", "uniqueItems"):
        return f"invalid value {value!r}: {error.message}"
    return error.message


def _dotted(parts: list[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _node_at(node: yaml.Node | None, parts: list[Any]) -> yaml.Node | None:
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            return None
    return node


def _line_of(node: yaml.Node | None, parts: list[Any]) -> int | None:
    """1-based line of the key (or item) at `parts`, or of its nearest existing parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in parts:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child, line = value, key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _build(data: dict[str, Any], node: yaml.Node | None, path: Path) -> Manifest:
    up = data["upstream"]
    try:
        upstream = UpstreamVersion(up["version"], up.get("stable"), up.get("rc"), up.get("git"))
    except ValueError as exc:
        raise InputError(f"{path}: upstream: {exc}") from None
    if upstream.stable_snapshot:
        line = _line_of(node, ["upstream", "git"])
        raise InputError(
            f"{path}:{line}: upstream.git: kernel.org publishes no snapshot of a stable update; "
            "build one from a git checkout (--upstream CHECKOUT --ref REF)"
        )
    changelog = []
    for index, entry in enumerate(data["changelog"]):
        try:
            date = dt.date.fromisoformat(entry["date"])
        except ValueError:
            line = _line_of(node, ["changelog", index, "date"])
            raise InputError(
                f"{path}:{line}: changelog[{index}].date: not a real date {entry['date']!r}"
            ) from None
        changelog.append(
            ChangelogEntry(date, entry["author"], tuple(entry["changes"]), entry.get("version"))
        )
    dates = [entry.date for entry in changelog]
    if dates != sorted(dates, reverse=True):
        raise InputError(f"{path}: changelog: entries must be newest first")
    return Manifest(
        path=path,
        name=data["name"],
        summary=data["summary"],
        license=data.get("license", "GPL-2.0-only"),
        url=data.get("url", "https://www.kernel.org/"),
        upstream=upstream,
        mirrors=tuple(up.get("mirrors", DEFAULT_MIRRORS)),
        release=data["release"],
        buildid=data.get("buildid", ""),
        arches=tuple(data["arches"]),
        flavours=tuple(data["flavours"]),
        changelog=tuple(changelog),
        signatures=_signature_rules(up.get("signatures", []), upstream, node, path),
        mock_roots=tuple(sorted(data.get("mock", {}).get("roots", {}).items())),
    )


def default_signature_name(filename: str) -> str:
    """kernel.org's name for the signature of a file: the uncompressed name + `.sign`
    (`linux-6.1.tar.xz` -> `linux-6.1.tar.sign`), since it signs the uncompressed data."""
    for suffix in (".xz", ".bz2", ".gz"):
        if filename.endswith(suffix):
            return filename.removesuffix(suffix) + ".sign"
    return filename + ".sign"


def _signature_rules(
    items: list[dict[str, Any]], version: UpstreamVersion, node: yaml.Node | None, path: Path
) -> tuple[SignatureRule, ...]:
    """Each rule must name an upstream file of this version, once, and a signature name
    that cannot collide with an upstream file in the lookaside cache."""
    rules: list[SignatureRule] = []
    for index, item in enumerate(items):
        field = f"upstream.signatures[{index}]"

        def refuse(key: str, problem: str, field: str = field, index: int = index) -> InputError:
            line = _line_of(node, ["upstream", "signatures", index, key])
            return InputError(f"{path}:{line}: {field}.{key}: {problem}")

        name = item["file"]
        if name not in version.files:
            raise refuse(
                "file",
                f"{name} is not an upstream file of {version} (its files: "
                f"{', '.join(version.files)})",
            )
        if any(rule.file == name for rule in rules):
            raise refuse("file", f"{name} already has a signature rule")
        signature = item.get("signature", default_signature_name(name))
        if ".." in signature or signature in version.files:
            raise refuse("signature", f"invalid signature file name {signature!r}")
        line = _line_of(node, ["upstream", "signatures", index])
        rules.append(SignatureRule(name, signature, tuple(item["keys"]), f"{path}:{line}: {field}"))
    return tuple(rules)
