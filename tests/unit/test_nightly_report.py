"""report.html of a nightly: the matrix first, what changed, the trends as inline SVG, the
failures with their excerpts and logs; self-contained, and every hostile text escaped.

The runs built here by hand are also what the KCIDB, notification and browser tests use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from kxen.nightly import report
from kxen.nightly.model import Ccache, Cell, Change, Rpm, Run, Status, Step

COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5"
HOSTILE = "<script>alert(1)</script>"
CONTROL = "\x1b[31mred\x1b[0m\x07bell\x00nul\u202eevil"
LINK_TO_UPSTREAM = "https://git.kernel.org/torvalds/c/abc"
INPUTS = {"upstream": "u0", "configs": "c0", "patches": "p0", "sources": "s0", "kxen": "k0"}


# --- runs, by hand ----------------------------------------------------------------------


def boot_modes(arch: str) -> list[str]:
    return ["boot-pv", "boot-pvh"] if arch == "x86_64" else ["boot-native"]


def make_cell(
    arch: str,
    flavour: str,
    day: int = 0,
    broken: str | None = None,
    status: Status = Status.FAIL,
    excerpt: list[str] | None = None,
) -> Cell:
    """A cell whose steps pass up to `broken` (which ends `status`), the rest skipped;
    durations, sizes and ccache grow with `day` so that the trends have a shape."""
    names = ["config-check", "patches-check", "srpm", "build", "verify", *boot_modes(arch)]
    steps, failed = [], False
    for number, name in enumerate(names):
        if failed:
            steps.append(Step(name, Status.SKIP, summary="an earlier step did not pass"))
            continue
        seconds = (10.0 * (number + 1) + day) * (1.5 if arch == "x86_64" else 1.0)
        step = Step(name, Status.PASS, seconds=seconds, summary="ok")
        step.log = f"logs/{arch}-{flavour}/{name}.log"
        if name == broken:
            step.status, failed = status, True
            step.summary = f"{name} did not pass"
            step.excerpt = excerpt if excerpt is not None else [f"{name}: error line {day}"]
        steps.append(step)
    built = broken not in ("config-check", "patches-check", "srpm", "build")
    return Cell(
        arch=arch,
        flavour=flavour,
        steps=steps,
        nvr=f"kernel-xen-6.13.0-0.{day}.nightly" if built else None,
        rpms=[Rpm(f"kernel-xen-6.13.0-0.{day}.nightly.{arch}.rpm", (len(arch) * 9 + day) * 2**20)]
        if built
        else [],
        warnings=day,
        ccache=Ccache(hits=50 + 10 * day, misses=50 * len(flavour)) if built else None,
    )


def make_run(day: int, cells: list[Cell] | None = None, **fields: object) -> Run:
    """A run of day `day` (of November 2026): every cell passing unless given."""
    if cells is None:
        cells = [make_cell(a, f, day) for a in ("x86_64", "i686") for f in ("default", "smoke")]
    commit = f"{day:02d}" + COMMIT[2:]
    run = Run(
        id=f"202611{day:02d}T020000Z-{commit[:12]}",
        started=f"2026-11-{day:02d}T02:00:00+00:00",
        finished=f"2026-11-{day:02d}T03:30:00+00:00",
        key=f"{day:064x}",
        inputs=dict(INPUTS),
        upstream={
            "origin": "git",
            "version": "6.13.0",
            "git": {"repository": "/srv/linux", "commit": commit, "describe": f"v6.13-rc{day}"},
        },
        cells=cells,
    )
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def earlier_runs(count: int = 5) -> list[Run]:
    """`count` passing runs before day 20, newest first."""
    return [make_run(day) for day in range(19, 19 - count, -1)]


def regression_run() -> Run:
    """Day 20: x86_64/default fails to boot as PVH (a regression, with an excerpt and a
    log), i686/smoke errors at the build (the infrastructure), the patches and configs
    changed, and git knows the commits in between."""
    excerpt = ["[    0.52] Kernel panic - not syncing: VFS: Unable to mount root fs", "---[ end"]
    cells = [
        make_cell("x86_64", "default", 20, "boot-pvh", Status.FAIL, excerpt),
        make_cell("x86_64", "smoke", 20),
        make_cell("i686", "default", 20),
        make_cell("i686", "smoke", 20, "build", Status.ERROR, ["mock: No space left on device"]),
    ]
    cells[0].config_changes = ["CONFIG_XEN_PVH: y -> n", "CONFIG_NEW: unset -> m"]
    cells[1].config_changes = ["CONFIG_XEN_PVH: y -> n", "CONFIG_NEW: unset -> m"]
    previous = earlier_runs(1)[0]
    return make_run(
        20,
        cells,
        inputs={**INPUTS, "configs": "c1", "patches": "p1"},
        previous=previous.id,
        commits=["abcdef012345 xen/pvh: drop the early console", "0123456789ab Linux 6.13-rc20"],
        changes=[Change("x86_64/default", "regression", "boot-pvh", excerpt)],
    )


def hostile_run() -> Run:
    """Names, excerpts and log paths as an attacker would write them into run.json."""
    cell = make_cell("x86_64", HOSTILE, 21, "verify", Status.FAIL, [HOSTILE, CONTROL])
    cell.steps[4].log = "//evil.example/verify.log"
    cell.steps[3].log = "javascript:alert(1)"
    cell.steps[2].log = "../../../etc/passwd"
    cell.nvr = f"kernel-xen-{CONTROL}"
    cell.config_changes = [f"CONFIG_{HOSTILE}: y -> n"]
    return make_run(
        21,
        [cell, make_cell("i686", "default", 21)],
        commits=[f"abcdef012345 {HOSTILE} see {LINK_TO_UPSTREAM}"],
        changes=[Change(f"x86_64/{HOSTILE}", "regression", "verify", [CONTROL])],
        notifications=[f"not delivered to https://hooks.example/{HOSTILE}: {CONTROL}"],
        backend=HOSTILE,
    )


# --- reading the page -------------------------------------------------------------------


VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col"})
"""HTML elements without an end tag."""


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class Page(HTMLParser):
    """Every element of a page, in document order, with the text inside it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        for parent in self._open:
            parent.children.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def index(self, tag: str) -> int:
        return next(i for i, e in enumerate(self.elements) if e.tag == tag)


def rendered(run: Run, earlier: list[Run] | None = None) -> tuple[str, Page]:
    html = report.render(run, earlier or [])
    return html, Page(html)


def cell_of(page: Page, arch: str, flavour: str) -> Element:
    """The matrix cell of `arch` and `flavour` (by the header row and column)."""
    flavours = [th.text for th in page.all("th", scope="col")][1:]
    table = page.all("table")[0]
    rows = [e for e in table.children if e.tag == "tr"][1:]
    for row in rows:
        heads = [e for e in row.children if e.tag == "th"]
        if heads and heads[0].text == arch:
            cells = [e for e in row.children if e.tag == "td"]
            return cells[flavours.index(flavour)]
    raise AssertionError(f"no cell {arch}/{flavour}")


def squash(text: str) -> str:
    return " ".join(text.split())


# --- tests ------------------------------------------------------------------------------


def test_a_passing_run_shows_its_matrix_first_with_every_step_and_duration() -> None:
    html, page = rendered(make_run(19), earlier_runs(5)[1:])
    assert html.startswith("<!DOCTYPE html>")
    assert page.index("table") < page.index("svg")
    first_section = page.all("section")[0]
    assert first_section.attrs["id"] == "matrix"
    assert [th.text for th in page.all("th", scope="col")][:3] == ["Arch", "default", "smoke"]
    assert [th.text for th in page.all("th", scope="row")][:2] == ["x86_64", "i686"]
    cell = cell_of(page, "i686", "smoke")
    assert cell.attrs["data-status"] == "PASS"
    steps = [squash(li.text) for li in cell.children if li.tag == "li"]
    assert steps == [
        "config-check PASS 29.0 s",
        "patches-check PASS 39.0 s",
        "srpm PASS 49.0 s",
        "build PASS 59.0 s",
        "verify PASS 1 min 09 s",
        "boot-native PASS 1 min 19 s",
    ]
    assert "all 4 cells passed" in squash(page.all("p", class_="verdict")[0].text)
    assert "No step failed." in html


def test_a_regression_is_highlighted_with_its_excerpt_log_commits_and_inputs() -> None:
    run = regression_run()
    html, page = rendered(run, earlier_runs(5))

    broken = cell_of(page, "x86_64", "default")
    assert broken.attrs["data-status"] == "FAIL"
    assert "regression" in broken.attrs["class"].split()
    assert "REGRESSION" in broken.text.upper()
    pvh = next(li for li in broken.children if li.tag == "li" and "boot-pvh" in li.text)
    assert pvh.attrs["data-status"] == "FAIL"
    assert "FAIL" in pvh.text  # the status as text, not only as a colour

    failures = page.all("article")
    assert [squash(a.children[0].text) for a in failures] == [
        "✗ FAIL x86_64/default: boot-pvh regression",
        "! ERROR i686/smoke: build",
    ]
    pvh_failure = failures[0]
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in pvh_failure.text
    links = [a.attrs["href"] for a in pvh_failure.children if a.tag == "a"]
    assert links == ["logs/x86_64-default/boot-pvh.log"]
    assert any(a.attrs.get("href") == "#failure-1" for a in broken.children)

    changes = page.all("section", id="changes")[0]
    callout = squash(changes.children[1].text)
    assert callout.startswith("Regressions and recoveries regression x86_64/default, step boot-pvh")
    assert "2 commits since run 20261119T020000Z" in callout
    inputs = [squash(li.text) for li in changes.children if li.tag == "li"]
    assert "configs: the config fragments" in inputs
    assert "patches: the downstream patches" in inputs
    assert not any(line.startswith("sources") for line in inputs)
    assert "abcdef012345 xen/pvh: drop the early console" in inputs
    assert "CONFIG_XEN_PVH: y -> n" in inputs
    summaries = [squash(s.text) for s in page.all("summary")]
    assert summaries == ["x86_64/default, x86_64/smoke: 2 symbols"]  # alike cells, once
    assert "1 regression" in squash(page.all("p", class_="verdict")[0].text)
    assert html.count("Kernel panic") == 2  # in the highlight and in the failure


def test_an_error_cell_is_an_error_not_a_failure() -> None:
    _, page = rendered(regression_run(), earlier_runs(1))
    cell = cell_of(page, "i686", "smoke")
    assert cell.attrs["data-status"] == "ERROR"
    assert "status-ERROR" in cell.attrs["class"].split()
    statuses = [li.attrs["data-status"] for li in cell.children if li.tag == "li"]
    assert statuses == ["PASS", "PASS", "PASS", "ERROR", "SKIP", "SKIP"]
    assert "No space left on device" in page.all("article")[1].text


def test_trends_are_one_inline_svg_per_measure_with_a_title_and_a_line_per_cell() -> None:
    run = regression_run()
    history = earlier_runs(5)
    _, page = rendered(run, history)
    plots = page.all("svg", role="img")
    titles = [next(c.text for c in svg.children if c.tag == "title") for svg in plots]
    assert titles == [
        "config-check duration",
        "patches-check duration",
        "srpm duration",
        "build duration",
        "verify duration",
        "boot-pv duration",  # the boot modes in the order the matrix shows them
        "boot-pvh duration",
        "boot-native duration",
        "RPM size",
        "ccache hit rate",
    ]
    by_title = dict(zip(titles, plots, strict=True))
    build = [c for c in by_title["build duration"].children if c.tag == "polyline"]
    # 5 earlier runs and this one; i686/smoke's build errored here: no measurement
    assert [len(line.attrs["points"].split()) for line in build] == [6, 6, 6, 5]
    sizes = [c for c in by_title["RPM size"].children if c.tag == "polyline"]
    assert len(sizes) == 4
    assert [len(line.attrs["points"].split()) for line in sizes] == [6, 6, 6, 5]
    description = next(c.text for c in by_title["ccache hit rate"].children if c.tag == "desc")
    assert "over the last 6 runs, 2026-11-15 to 2026-11-20" in description
    assert "x86_64/default 42 %" in description  # 250 hits, 350 misses on day 20

    # Durations grow with the days: each line climbs (SVG y grows downwards).
    ys = [float(point.split(",")[1]) for point in build[0].attrs["points"].split()]
    assert ys == sorted(ys, reverse=True)


def test_hostile_names_excerpts_and_control_characters_are_escaped() -> None:
    html, page = rendered(hostile_run(), earlier_runs(2))
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not page.all("script")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", html)
    assert "?red??bell?nul?evil" in html  # each escape sequence as one ?
    flavours = [th.text for th in page.all("th", scope="col")]
    assert HOSTILE in flavours  # shown as text, whole


def test_only_relative_links_come_out_of_a_run_and_nothing_is_loaded() -> None:
    html, page = rendered(hostile_run(), earlier_runs(2))
    hrefs = [e.attrs["href"] for e in page.elements if "href" in e.attrs]
    assert hrefs
    for href in hrefs:
        assert not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//|^/", href), href
        assert ".." not in href.split("/")[2:] and not href.startswith("../../"), href
    assert "javascript%3Aalert%281%29" in hrefs  # a file name, not a script
    assert not any("evil.example" in href or "passwd" in href for href in hrefs)
    assert "not linked" in page.all("article")[0].text
    assert [h for h in hrefs if h.startswith("../")] == [
        f"../{run.id}/report.html" for run in earlier_runs(2)
    ]

    assert not any("src" in e.attrs for e in page.elements)
    assert not page.all("link") and not page.all("iframe") and not page.all("img")
    style = page.all("style")[0].text
    assert "url(" not in style and "@import" not in style
    # http(s):// only where the run had it, as text (the commit, a notification)
    assert html.count("https://") == 2
    assert "http://" not in html
    assert "default-src 'none'" in page.all("meta", **{"http-equiv": "Content-Security-Policy"})[
        0
    ].attrs.get("content", "")


def test_a_run_without_cells_or_history_still_reads() -> None:
    run = Run(id="20261130T020000Z-deadbeef", started="2026-11-30T02:00:00+00:00")
    html, page = rendered(run)
    assert "No cell was built in this run." in html
    assert "The first run: nothing to compare with." in html
    assert "Nothing measured yet." in html
    assert not page.all("svg", role="img")
    assert page.all("section")[0].attrs["id"] == "matrix"


def test_write_replaces_report_html_atomically(tmp_path: Path) -> None:
    target = tmp_path / "run" / "report.html"
    target.parent.mkdir()
    target.write_text("old")
    report.write(target, regression_run(), earlier_runs(3))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
