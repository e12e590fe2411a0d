"""The one gate every file kxen reads from the checkout passes through.

A packager's checkout is input like any other: a file in it may be a symlink to
somewhere else, a FIFO, a gigabyte, binary, or YAML built to explode. Each read
here makes sure the path resolves inside the checkout (nothing outside it is read,
packed into an SRPM, uploaded or echoed in an error), is a regular file no larger
than its kind may be, and is UTF-8 text without NUL bytes. Errors name the file
relative to the checkout and echo at most a short excerpt of what was found.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from kxen.errors import InputError, UnsafePathError

KIB = 1 << 10
MIB = 1 << 20
SMALL_FILE = 1 * MIB
"""The manifest, `sources`, the series, layers.yaml, allow.yaml, keys, rpmlintrc."""
FRAGMENT_FILE = 4 * MIB
"""A config fragment (a whole distribution .config is about 300 KiB)."""
PATCH_FILE = 64 * MIB
EXCERPT = 60


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """`text` as an error may echo it: quoted, and cut short when long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def shown(path: Path, root: Path) -> str:
    """`path` as messages name it: relative to the checkout when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def contained(path: Path, root: Path) -> Path:
    """The resolved `path`, which must stay inside `root` (a symlink may point within
    the checkout, never out of it)."""
    resolved = path.resolve()
    top = root.resolve()
    if resolved != top and top not in resolved.parents:
        raise UnsafePathError(
            f"{shown(path, root)}: leads outside the checkout (a symbolic link); "
            "kxen reads only files inside it"
        )
    return resolved


def read_bytes(path: Path, root: Path, limit: int) -> bytes:
    """The bytes of a regular file inside the checkout, refused beyond `limit`."""
    real = contained(path, root)
    name = shown(path, root)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(f"{name}: not a regular file")
        if info.st_size > limit:
            raise InputError(f"{name}: {info.st_size} bytes, more than the {limit} it may have")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{name}: more than the {limit} bytes it may have")
    return data


def read_text(path: Path, root: Path, limit: int = SMALL_FILE) -> str:
    """A checkout text file: inside the checkout, regular, small enough, UTF-8, no NUL."""
    return decode(read_bytes(path, root, limit), shown(path, root))


def decode(data: bytes, name: str) -> str:
    try:
        text = codecs.decode(data, "utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise InputError(f"{name}:{line}: holds a NUL byte (a text file never does)")
    return text


# --- YAML ---------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML silently keeps the last one)
    and anchors and aliases (a few hundred bytes of aliases expand to gigabytes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # (untyped in the stubs)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&, *) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# Dates stay strings: the manifest schema checks their form itself.
StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """The data and the node tree (for line numbers) of a strict YAML document."""
    try:
        node = yaml.compose(text, Loader=StrictLoader)
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: invalid YAML: {problem}") from None
    return data, node
