"""kxen.build.ccache: the cache directory, the settings that keep a compile's hash free of
the build's path, and one build's hits and misses, with the real ccache and gcc."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from kxen.build import ccache
from kxen.build.backends.base import BUILD_LOCALE, BuildRequest
from kxen.build.backends.local import LocalBackend
from kxen.build.backends.mock import MockBackend
from kxen.build.ccache import Ccache, Stats, parse_stats_log
from kxen.errors import InputError, MissingToolError, UnsafePathError
from kxen.support.runner import SubprocessRunner

from ..support import REPO

pytestmark = pytest.mark.skipif(
    not (Path("/usr/lib/ccache/gcc").exists() or Path("/usr/lib64/ccache/gcc").exists()),
    reason="ccache is not installed (tools/setup-host installs it)",
)


def compile_through(
    cache: Ccache, tree: Path, build: str, *sources: str, locale: Mapping[str, str] = BUILD_LOCALE
) -> None:
    """Compile `sources` of `tree` with `gcc -c`, as the spec does with kxen's settings:
    the backend's environment (its `locale`), the macro's assignments, the tree as base dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANG", "LC_"))}
    env = {**env, **locale, **cache.environment(), "CCACHE_BASEDIR": str(tree)}
    for key, value in ccache.COMPILE_SETTINGS.items():
        env[key] = value
    env["CCACHE_STATSLOG"] = str(cache.stats_log(build))
    for source in sources:
        subprocess.run(
            [
                "gcc",
                "-I",
                str(tree / "include"),
                "-c",
                str(tree / source),
                "-o",
                str(tree / f"{source}.o"),
            ],
            env=env,
            check=True,
            cwd=tree,
        )


def make_tree(where: Path, release: str) -> Path:
    """Two sources, one of them including the release the way init/version.c does."""
    (where / "include").mkdir(parents=True)
    (where / "include" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    (where / "version.c").write_text("#include <utsrelease.h>\nconst char v[] = UTS_RELEASE;\n")
    (where / "other.c").write_text("int other(void) { return 42; }\n")
    return where


def test_a_new_tree_elsewhere_with_a_new_release_hits_all_but_the_release(tmp_path: Path) -> None:
    cache = Ccache(tmp_path / "ccache")
    cache.prepare()
    first = make_tree(tmp_path / "build-1" / "linux", "6.1.192-1.smoke.x86_64+xen")
    compile_through(cache, first, "one", "version.c", "other.c")
    assert cache.collect("one", tmp_path) == Stats(hits=0, misses=2)

    # Absolute paths under another build directory, the release changed, files brand new.
    second = make_tree(tmp_path / "build-2-elsewhere" / "linux", "6.1.192-2.smoke.x86_64+xen")
    compile_through(cache, second, "two", "version.c", "other.c")
    assert cache.collect("two", tmp_path) == Stats(hits=1, misses=1)
    assert json.loads((tmp_path / ccache.STATS_FILE).read_text()) == {"hits": 1, "misses": 1}
    assert not cache.stats_log("two").exists()


def test_a_build_root_in_another_locale_hits_the_objects_of_a_local_build(
    tmp_path: Path,
) -> None:
    """kxen local sets the C locale's categories, mock and koji's builders only their
    config's LANG (rpm makes it C): ccache hashes each, so the spec's settings fix them."""
    cache = Ccache(tmp_path / "ccache")
    cache.prepare()
    local = make_tree(tmp_path / "local" / "linux", "6.1.192-1.smoke.x86_64+xen")
    under_kbuild = {k: v for k, v in BUILD_LOCALE.items() if k != "LC_ALL"}  # unexported
    compile_through(cache, local, "local", "other.c", locale=under_kbuild)
    in_mock = make_tree(tmp_path / "mock" / "linux", "6.1.192-1.smoke.x86_64+xen")
    compile_through(cache, in_mock, "mock", "other.c", locale={"LANG": "C"})
    assert cache.collect("mock", tmp_path) == Stats(hits=1, misses=0)


def test_stats_log_counts_ccache_own_counters() -> None:
    log = (
        "# a.c\ncache_miss\ndirect_cache_miss\nlocal_storage_write\n"
        "# a.c\ndirect_cache_hit\nlocal_storage_hit\n"
        "# b.c\npreprocessed_cache_hit\n"
        "# c.c\ncalled_for_preprocessing\n"
        "# d.S\nunsupported_code_directive\n"
    )
    assert parse_stats_log(log) == Stats(hits=2, misses=1)


def test_no_stats_log_is_no_compile(tmp_path: Path) -> None:
    cache = Ccache(tmp_path / "ccache")
    assert cache.collect("never-ran", tmp_path) == Stats(hits=0, misses=0)
    assert json.loads((tmp_path / ccache.STATS_FILE).read_text()) == {"hits": 0, "misses": 0}


def test_the_spec_macro_carries_the_settings_and_a_stats_log_per_build(tmp_path: Path) -> None:
    define, value = Ccache(tmp_path).spec_define("kxen42-x86_64")
    assert define == "--define"
    name, _, assignments = value.partition(" ")
    assert name == ccache.SPEC_MACRO
    assert assignments.split() == [
        "CCACHE_NOHASHDIR=1",
        "CCACHE_SLOPPINESS=include_file_ctime,include_file_mtime,time_macros",
        "CCACHE_COMPILERCHECK=content",
        "LANG=C",
        "LC_CTYPE=C",
        "LC_MESSAGES=C",
        'CCACHE_STATSLOG="${CCACHE_DIR}/kxen-stats-kxen42-x86_64.log"',
    ]
    with pytest.raises(ValueError, match="plain build name"):
        Ccache(tmp_path).spec_define("x; rm -rf /")


def test_the_readme_gives_a_koji_builder_what_kxen_writes() -> None:
    config = Ccache(Path("/var/cache/kxen-ccache")).koji_builder_config()
    assert config in (REPO / "README.md").read_text()
    assert f"['%{ccache.SPEC_MACRO}']" in config


def test_mock_gets_its_ccache_plugin_on_the_directory(tmp_path: Path) -> None:
    assert Ccache(tmp_path / "cc").mock_options() == [
        "--enable-plugin=ccache",
        f"--plugin-option=ccache:dir={tmp_path / 'cc'}",
        "--plugin-option=ccache:max_cache_size=5G",
        "--plugin-option=ccache:hashdir=False",
    ]


def test_backends_pass_ccache_only_when_asked(tmp_path: Path) -> None:
    request = BuildRequest(tmp_path / "k.src.rpm", "x86_64", tmp_path / "staging")
    runner, roots = SubprocessRunner(), {"x86_64": "fedora-41-x86_64"}
    cache = Ccache(tmp_path / "cc")
    plain = MockBackend(runner, roots, unique_prefix="kxen1").command(request)
    cached = MockBackend(runner, roots, unique_prefix="kxen1", ccache=cache).command(request)
    assert [arg for arg in cached if arg not in plain] == [
        *cache.mock_options(),
        *cache.spec_define("kxen1-x86_64")[1:],
    ]
    local = LocalBackend(runner, tmp_path, cache)._rpmbuild(request, tmp_path, "b1")
    assert local[-2:] == cache.spec_define("b1")
    assert LocalBackend(runner, tmp_path)._rpmbuild(request, tmp_path, "b1")[-2:] != local[-2:]


def test_the_environment_puts_the_compiler_links_first(tmp_path: Path) -> None:
    env = Ccache(tmp_path).environment()
    assert env["CCACHE_DIR"] == str(tmp_path)
    first = Path(env["PATH"].split(os.pathsep)[0])
    assert (first / "gcc").resolve().name == "ccache"


def test_no_compiler_links_is_a_missing_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ccache, "MASQUERADE_DIRS", (tmp_path / "none",))
    with pytest.raises(MissingToolError, match="--no-ccache"):
        ccache.check_host()


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        Ccache(tmp_path / "link").prepare()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsafePathError):
        Ccache(tmp_path / "dangling").prepare()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("name", ["cache%{lua:x}", "{{root}}", "new\nline"])
def test_a_path_mock_or_rpm_would_expand_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="braces or control characters"):
        Ccache(tmp_path / name).prepare()
    assert list(tmp_path.iterdir()) == []


def test_a_file_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        Ccache(tmp_path / "file").prepare()


def test_prepare_removes_only_stale_stats_logs(tmp_path: Path) -> None:
    cache = Ccache(tmp_path / "new" / "ccache")
    cache.prepare()
    assert cache.dir.is_dir()
    stale, fresh = cache.stats_log("killed"), cache.stats_log("running")
    stale.write_text("# a.c\ncache_miss\n")
    fresh.write_text("# a.c\ncache_miss\n")
    old = time.time() - ccache.STALE_LOG_SECONDS - 60
    os.utime(stale, (old, old))
    cache.prepare()
    assert not stale.exists() and fresh.exists()
