from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kxen.errors import ExitCode, InputError, SourceError
from kxen.upstream import sources
from kxen.upstream.sources import Lookaside, SourceEntry

SHA512 = hashlib.sha512(b"a").hexdigest()
SHA256 = hashlib.sha256(b"b").hexdigest()


def _sources(tmp_path: Path, text: str) -> Path:
    path = tmp_path / sources.SOURCES_NAME
    path.write_text(text)
    return path


def test_parse_sha512_and_sha256_lines(tmp_path):
    path = _sources(
        tmp_path,
        "# upstream files\n"
        f"SHA512 (linux-6.1.tar.xz) = {SHA512}\n"
        "\n"
        f"SHA256 (patch-6.1.192.xz) = {SHA256}\n",
    )
    assert sources.parse_sources(path) == [
        SourceEntry("SHA512", "linux-6.1.tar.xz", SHA512),
        SourceEntry("SHA256", "patch-6.1.192.xz", SHA256),
    ]


def test_shipped_sources_file_parses(repo):
    entries = sources.parse_sources(repo / sources.SOURCES_NAME)
    assert entries
    assert all(len(e.digest) == sources.ALGORITHMS[e.algorithm] for e in entries)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"SHA512 (linux-6.1.tar.xz) {SHA512}", "expected 'SHA512 (file) = <hex digest>'"),
        (f"SHA512 linux-6.1.tar.xz = {SHA512}", "expected 'SHA512 (file) = <hex digest>'"),
        (f"SHA512 (linux-6.1.tar.xz) = {SHA512.upper()}", "expected 'SHA512 (file) = "),
        (f"sha512 (linux-6.1.tar.xz) = {SHA512}", "expected 'SHA512 (file) = "),
        (f"{hashlib.md5(b'a').hexdigest()}  linux-6.1.tar.xz", "MD5 entries are too weak"),
        (f"MD5 (linux-6.1.tar.xz) = {hashlib.md5(b'a').hexdigest()}", "unsupported hash MD5"),
        (f"SHA1 (linux-6.1.tar.xz) = {hashlib.sha1(b'a').hexdigest()}", "unsupported hash SHA1"),
        (f"SHA512 (linux-6.1.tar.xz) = {SHA256}", "has 64 hex digits, expected 128"),
        (f"SHA256 (linux-6.1.tar.xz) = {SHA512}", "has 128 hex digits, expected 64"),
        (f"SHA512 (linux-6.1.tar.xz) = {SHA512[:-1]}", "has 127 hex digits, expected 128"),
        (f"SHA512 (../x) = {SHA512}", "unsafe file name '../x'"),
        (f"SHA512 (a/b) = {SHA512}", "unsafe file name 'a/b'"),
        (f"SHA512 (.hidden) = {SHA512}", "unsafe file name '.hidden'"),
        (f"SHA512 (-rf) = {SHA512}", "unsafe file name '-rf'"),
        (f"SHA512 (a..b) = {SHA512}", "unsafe file name 'a..b'"),
        (f"SHA512 (a b) = {SHA512}", "unsafe file name 'a b'"),
    ],
)
def test_bad_lines_are_refused_with_file_and_line(tmp_path, line, problem):
    path = _sources(tmp_path, f"# header\nSHA512 (ok.tar.xz) = {SHA512}\n{line}\n")
    with pytest.raises(InputError) as info:
        sources.parse_sources(path)
    assert info.value.message.startswith(f"{path}:3: ")
    assert problem in info.value.message
    assert info.value.exit_code == ExitCode.INVALID_INPUT


def test_duplicate_file_is_refused(tmp_path):
    path = _sources(
        tmp_path,
        f"SHA512 (linux-6.1.tar.xz) = {SHA512}\n#\nSHA256 (linux-6.1.tar.xz) = {SHA256}\n",
    )
    with pytest.raises(InputError) as info:
        sources.parse_sources(path)
    assert info.value.message == f"{path}:3: linux-6.1.tar.xz is already listed on line 1"


def test_missing_sources_file(tmp_path):
    with pytest.raises(InputError, match="no sources file"):
        sources.parse_sources(tmp_path / "sources")


def test_write_sources_round_trip(tmp_path):
    entries = [
        SourceEntry("SHA512", "linux-6.1.tar.xz", SHA512),
        SourceEntry("SHA256", "patch-6.1.192.xz", SHA256),
    ]
    path = tmp_path / "sources"
    sources.write_sources(path, entries)
    assert path.read_text() == (
        f"SHA512 (linux-6.1.tar.xz) = {SHA512}\nSHA256 (patch-6.1.192.xz) = {SHA256}\n"
    )
    assert sources.parse_sources(path) == entries


def test_mirror_urls():
    assert sources.mirror_urls(["https://a/", "file:///m/"], "v6.x/x.tar.xz") == [
        "https://a/v6.x/x.tar.xz",
        "file:///m/v6.x/x.tar.xz",
    ]


# --- lookaside ---------------------------------------------------------------

CONTENT = b"not really a kernel tarball\n" * 1000
NAME = "linux-6.1.tar.xz"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel.org-like mirror on loopback HTTP; yields its base URL."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "v6.x").mkdir(parents=True)
    (root / "v6.x" / NAME).write_bytes(CONTENT)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _url(base: str) -> str:
    return f"{base}v6.x/{NAME}"


def _dead(tmp_path: Path) -> str:
    """A mirror that does not exist."""
    return f"file://{tmp_path}/no-such-mirror/"


def _entry(algorithm: str = "SHA512", content: bytes = CONTENT) -> SourceEntry:
    return SourceEntry(algorithm, NAME, hashlib.new(algorithm.lower(), content).hexdigest())


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("algorithm", ["SHA512", "SHA256"])
def test_fetch_downloads_into_the_cache(tmp_path, mirror, algorithm):
    cache = Lookaside(tmp_path / "cache")
    entry = _entry(algorithm)
    seen: list[tuple[str, int, int | None]] = []
    path, downloaded = cache.fetch(entry, [_url(mirror)], lambda *a: seen.append(a))
    assert downloaded is True
    assert path == tmp_path / "cache" / algorithm.lower() / entry.digest / NAME
    assert path.read_bytes() == CONTENT
    assert _files(tmp_path / "cache") == [path]
    assert seen and seen[-1][:2] == (NAME, len(CONTENT))


def test_fetch_from_a_file_mirror(tmp_path):
    root = tmp_path / "mirror"
    (root / "v6.x").mkdir(parents=True)
    (root / "v6.x" / NAME).write_bytes(CONTENT)
    cache = Lookaside(tmp_path / "cache")
    path, downloaded = cache.fetch(_entry(), [_url(f"file://{root}/")])
    assert downloaded
    assert path.read_bytes() == CONTENT


def test_mismatch_is_refused_and_leaves_nothing_in_the_cache(tmp_path, mirror):
    cache_root = tmp_path / "cache"
    entry = _entry(content=b"what the sources file expects")
    with pytest.raises(SourceError) as info:
        Lookaside(cache_root).fetch(entry, [_url(mirror)])
    message = info.value.message
    assert NAME in message
    assert entry.digest in message
    assert hashlib.sha512(CONTENT).hexdigest() in message
    assert info.value.exit_code == ExitCode.SOURCE_VERIFY
    assert _files(cache_root) == []
    assert not list(cache_root.rglob(".untrusted-*"))
    assert not Lookaside(cache_root).path_for(entry).parent.exists()


def test_good_cached_copy_is_reused_without_download(tmp_path, mirror):
    cache = Lookaside(tmp_path / "cache")
    entry = _entry()
    first, downloaded = cache.fetch(entry, [_url(mirror)])
    assert downloaded
    again, downloaded = cache.fetch(entry, [_url(_dead(tmp_path))])
    assert (again, downloaded) == (first, False)
    assert again.read_bytes() == CONTENT


def test_corrupted_cached_copy_is_downloaded_again(tmp_path, mirror):
    cache = Lookaside(tmp_path / "cache")
    entry = _entry()
    path, _ = cache.fetch(entry, [_url(mirror)])
    path.chmod(0o644)
    path.write_bytes(b"bit rot")
    assert cache.cached(entry) is None
    again, downloaded = cache.fetch(entry, [_url(mirror)])
    assert (again, downloaded) == (path, True)
    assert again.read_bytes() == CONTENT


def test_corrupted_cached_copy_fails_if_no_mirror_has_it(tmp_path, mirror):
    cache = Lookaside(tmp_path / "cache")
    entry = _entry()
    path, _ = cache.fetch(entry, [_url(mirror)])
    path.chmod(0o644)
    path.write_bytes(b"bit rot")
    with pytest.raises(SourceError):
        cache.fetch(entry, [_url(_dead(tmp_path))])
    assert not path.exists()


def test_next_mirror_is_tried_when_one_fails(tmp_path, mirror):
    cache = Lookaside(tmp_path / "cache")
    urls = [_url(_dead(tmp_path)), _url(f"{mirror}missing/"), _url(mirror)]
    path, downloaded = cache.fetch(_entry(), urls)
    assert downloaded
    assert path.read_bytes() == CONTENT


def test_all_mirrors_failing(tmp_path):
    cache_root = tmp_path / "cache"
    urls = [_url(_dead(tmp_path)), "http://127.0.0.1:9/nothing-listens-here"]
    with pytest.raises(SourceError) as info:
        Lookaside(cache_root).fetch(_entry(), urls)
    assert NAME in info.value.message
    assert "any mirror" in info.value.message
    assert len(info.value.details) == 2
    assert all(detail.startswith(url) for detail, url in zip(info.value.details, urls, strict=True))
    assert _files(cache_root) == []


def test_import_file_and_write_sources_round_trip(tmp_path):
    source = tmp_path / "linux-6.1.5.tar.xz"
    source.write_bytes(CONTENT)
    cache = Lookaside(tmp_path / "cache")
    entry = cache.import_file(source)
    assert entry == SourceEntry("SHA512", source.name, hashlib.sha512(CONTENT).hexdigest())
    cached = cache.cached(entry)
    assert cached is not None
    assert cached.read_bytes() == CONTENT
    assert not list((tmp_path / "cache").rglob(".untrusted-*"))
    # importing again is a no-op
    assert cache.import_file(source) == entry
    listing = tmp_path / "sources"
    sources.write_sources(listing, [entry])
    assert sources.parse_sources(listing) == [entry]
    assert cache.fetch(entry, [])[0] == cached


def test_import_file_refusals(tmp_path):
    cache = Lookaside(tmp_path / "cache")
    hidden = tmp_path / ".hidden.tar.xz"
    hidden.write_bytes(b"x")
    with pytest.raises(InputError, match="unsafe file name"):
        cache.import_file(hidden)
    with pytest.raises(InputError, match="no such file"):
        cache.import_file(tmp_path / "missing.tar.xz")
    assert _files(tmp_path / "cache") == []


def test_file_digest(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sources.file_digest(path, "SHA512") == hashlib.sha512(b"abc").hexdigest()
    assert sources.file_digest(path, "SHA256") == hashlib.sha256(b"abc").hexdigest()
