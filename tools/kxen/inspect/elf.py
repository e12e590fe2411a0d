"""What a Xen domain builder reads of a kernel: the compressed vmlinux inside a bzImage
(found through the boot protocol header, else by searching for a stream), its ELF notes
(Xen's public/elfnote.h), and the `.modinfo` of a module."""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kxen.support.runner import Runner

ELF_MAGIC = b"\x7fELF"
MAX_VMLINUX = 1 << 30


# Compressions Xen's bzImage loader reads, and the others a kernel may use.
SUPPORTED_MAGICS = (
    ("xz", b"\xfd7zXZ\x00"),
    ("gzip", b"\x1f\x8b\x08"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)


OTHER_MAGICS = (
    ("bzip2", b"BZh"),
    ("lzo", b"\x89LZO"),
    ("lz4", b"\x02\x21\x4c\x18"),
    ("lzma", b"\x5d\x00\x00"),
)


@dataclass(frozen=True)
class Payload:
    """The compressed kernel inside a bzImage: its format, where it starts, the vmlinux."""

    compression: str
    offset: int
    elf: bytes | None
    problem: str = ""


def compression_of(blob: bytes) -> str:
    for name, magic in (*SUPPORTED_MAGICS, *OTHER_MAGICS):
        if blob.startswith(magic):
            return name
    return "unknown"


def decompress(compression: str, blob: bytes, runner: Runner | None, scratch: Path | None) -> bytes:
    """The decompressed stream (trailing bytes after it, such as the size word, ignored)."""
    if compression == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob, MAX_VMLINUX)
    if compression == "gzip":
        return zlib.decompressobj(wbits=31).decompress(blob, MAX_VMLINUX)
    if compression == "zstd":
        if runner is None or scratch is None:
            raise ValueError("zstd needs the zstd tool")
        packed, unpacked = scratch / "payload.zst", scratch / "payload"
        packed.write_bytes(blob)
        runner.run(["zstd", "-d", "-q", "-f", packed, "-o", unpacked], check=False)
        data = unpacked.read_bytes() if unpacked.exists() else b""
        packed.unlink()
        unpacked.unlink(missing_ok=True)
        return data
    raise ValueError(f"{compression} is not a compression Xen's loader reads")


def _try_decompress(
    compression: str, blob: bytes, runner: Runner | None, scratch: Path | None
) -> bytes | None:
    try:
        data = decompress(compression, blob, runner, scratch)
    except (lzma.LZMAError, zlib.error, EOFError, ValueError):
        return None
    return data if data.startswith(ELF_MAGIC) else None


def find_payload(
    image: bytes, runner: Runner | None = None, scratch: Path | None = None
) -> Payload:
    """The vmlinux ELF inside a bzImage.

    A real bzImage says where its payload is (boot protocol >= 2.08: payload_offset and
    payload_length after the setup sectors); anything else is searched for the first
    xz, gzip or zstd stream that decompresses to an ELF file."""
    if len(image) >= 0x250 and image[0x202:0x206] == b"HdrS":
        (protocol,) = struct.unpack_from("<H", image, 0x206)
        if protocol >= 0x208:
            setup_sects = image[0x1F1] or 4
            offset, length = struct.unpack_from("<II", image, 0x248)
            start = (setup_sects + 1) * 512 + offset
            blob = image[start : start + length]
            compression = compression_of(blob)
            if compression not in dict(SUPPORTED_MAGICS):
                return Payload(compression, start, None, "not a compression Xen reads")
            if compression == "zstd":
                # Linux appends the 4-byte uncompressed size to every payload; the zstd
                # tool, unlike the xz and gzip readers, refuses trailing bytes.
                blob = blob[:-4]
            elf = _try_decompress(compression, blob, runner, scratch)
            problem = "" if elf else "does not decompress to an ELF file"
            return Payload(compression, start, elf, problem)
    candidates = sorted(
        (position, name)
        for name, magic in SUPPORTED_MAGICS
        for position in _positions(image, magic)
    )
    for position, name in candidates:
        elf = _try_decompress(name, image[position:], runner, scratch)
        if elf is not None:
            return Payload(name, position, elf)
    return Payload("unknown", -1, None, "no xz, gzip or zstd stream that holds an ELF file")


def _positions(data: bytes, magic: bytes, limit: int = 64) -> Iterator[int]:
    start = 0
    for _ in range(limit):
        found = data.find(magic, start)
        if found < 0:
            return
        yield found
        start = found + 1


@dataclass(frozen=True)
class Note:
    owner: str
    type: int
    desc: bytes


def parse_notes(data: bytes, little_endian: bool = True) -> list[Note]:
    """ELF note records (namesz, descsz, type, name, desc; 4-byte aligned)."""
    fmt = "<III" if little_endian else ">III"
    notes, offset = [], 0
    while offset + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from(fmt, data, offset)
        offset += 12
        name_end = offset + namesz
        desc_start = offset + _align4(namesz)
        desc_end = desc_start + descsz
        if desc_end > len(data):
            break
        owner = data[offset:name_end].rstrip(b"\0").decode("ascii", "replace")
        notes.append(Note(owner, kind, data[desc_start:desc_end]))
        offset = desc_start + _align4(descsz)
    return notes


def _align4(size: int) -> int:
    return (size + 3) & ~3


def elf_notes(elf: bytes) -> list[Note]:
    """Every note of an ELF file (note sections, else note segments)."""
    from elftools.elf.elffile import ELFFile  # (pyelftools only when a kernel is read)

    parsed = ELFFile(io.BytesIO(elf))
    little = parsed.little_endian
    sections = [s for s in parsed.iter_sections() if s["sh_type"] == "SHT_NOTE"]
    if sections:
        return [note for s in sections for note in parse_notes(s.data(), little)]
    segments = [s for s in parsed.iter_segments() if s["p_type"] == "PT_NOTE"]
    return [note for s in segments for note in parse_notes(s.data(), little)]


def xen_notes(elf: bytes) -> dict[int, bytes]:
    return {note.type: note.desc for note in elf_notes(elf) if note.owner == "Xen"}


def modinfo(path: Path) -> dict[str, str]:
    """`key=value` pairs of a module's .modinfo section."""
    with path.open("rb") as handle:
        from elftools.elf.elffile import ELFFile

        section = ELFFile(handle).get_section_by_name(".modinfo")
        data = section.data() if section is not None else b""
    pairs = (item.decode("utf-8", "replace").partition("=") for item in data.split(b"\0"))
    return {key: value for key, _, value in pairs if key}
