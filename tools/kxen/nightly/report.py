"""report.html: what a nightly found, for people, in one file that needs nothing else.

The status matrix comes first (it is what everyone opens the page for), then what
changed since the previous run (regressions and recoveries first, then the commits, the
inputs and the config symbols), the trends over the history as small inline SVG plots,
and every failure with its first error lines and a link to its log. The page loads
nothing: its CSS and plots are inline, and its only links are to files of the run
directory and of the runs beside it.

Every text in a run came from builds, logs and names that may be hostile: each is
neutralised here (control characters, capped length) and escaped by Jinja (autoescape),
and a log is linked only as a relative path inside the run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import jinja2

from kxen.nightly import key
from kxen.nightly.model import STEPS, Cell, Change, Run, Status, Step
from kxen.support.fsutil import atomic_write_text
from kxen.support.text import neutralise

TEMPLATE = "report.html.j2"
TREND_RUNS = 30
"""Runs a trend plot spans (this one and the newest earlier ones)."""
MAX_TEXT = 300
"""Characters shown of a name, a summary or an excerpt line: a hostile run cannot make
the page unreadable."""
MAX_EXCERPT_LINES = 40
MAX_CONFIG_LINES = 200
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#8a6d00", "#56b4e9", "#444444")
"""Okabe-Ito colours (told apart by colour-blind readers too), darkened where too light."""
DASHES = ("", "6 3", "2 3")
"""Once the colours run out, the same colours dashed."""
INPUTS = {
    "upstream": "the upstream tree (commit or tarball)",
    "kernel-xen.yaml": "the manifest",
    "sources": "the sources file",
    "configs": "the config fragments",
    "patches": "the downstream patches",
    "specs": "the spec template",
    "kxen": "kxen itself",
    "backend": "the build backend or its options",
    "matrix": "the arches, flavours or boot modes asked for",
    "toolchain": "the toolchain",
}
SYMBOLS = {"PASS": "✓", "FAIL": "✗", "ERROR": "!", "SKIP": "\u2013"}  # an en dash


def write(path: Path, run: Run, earlier: list[Run]) -> None:
    """Write `run`'s report.html (`earlier`: the completed runs before it, newest first)."""
    atomic_write_text(path, render(run, earlier))


def render(run: Run, earlier: list[Run]) -> str:
    return _environment().get_template(TEMPLATE).render(page=page(run, earlier))


@functools.cache
def _environment() -> jinja2.Environment:
    """Autoescape on for every template, whatever its name: all of a run's text is hostile."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("kxen.nightly", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --- what the template shows ------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    text: str
    href: str | None
    """None when the target is not a plain relative path (then the text is shown alone)."""


@dataclass(frozen=True)
class StepView:
    name: str
    status: str
    symbol: str
    duration: str
    summary: str
    log: Link | None


@dataclass(frozen=True)
class CellView:
    name: str
    status: str
    symbol: str
    nvr: str
    steps: list[StepView]
    change: str
    """`regression`, `recovery` or empty."""
    failure: str | None
    """The anchor of the cell's first failure entry."""


@dataclass(frozen=True)
class Row:
    arch: str
    cells: list[CellView | None]
    """One per flavour; None where the run has no such cell."""


@dataclass(frozen=True)
class ChangeView:
    kind: str
    cell: str
    step: str
    excerpt: list[str]


@dataclass(frozen=True)
class FailureView:
    anchor: str
    cell: str
    step: StepView
    excerpt: list[str]
    change: str


@dataclass(frozen=True)
class ConfigChanges:
    cells: str
    """The cells (comma-separated) whose configs changed alike."""
    lines: list[str]
    more: int
    """Lines left out."""


@dataclass(frozen=True)
class Dot:
    x: str
    y: str
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    dash: str
    points: str
    """The polyline's `points` (numbers only)."""
    dots: list[Dot]
    latest: str


@dataclass(frozen=True)
class Tick:
    position: str
    text: str


@dataclass(frozen=True)
class Plot:
    anchor: str
    title: str
    description: str
    series: list[Series]
    y_ticks: list[Tick]
    x_ticks: list[Tick]


@dataclass(frozen=True)
class Geometry:
    """The plot area of every trend SVG, in its own units (the viewBox)."""

    width: int = 360
    height: int = 150
    left: int = 58
    right: int = 12
    top: int = 10
    bottom: int = 24

    def x(self, index: int, count: int) -> float:
        span = self.width - self.left - self.right
        return self.left + span * (index / (count - 1) if count > 1 else 0.5)

    def y(self, value: float, top_value: float) -> float:
        span = self.height - self.top - self.bottom
        return self.top + span * (1 - value / top_value)


GEOMETRY = Geometry()


@dataclass(frozen=True)
class HistoryRow:
    run: Link
    started: str
    status: str
    symbol: str
    upstream: str
    current: bool


@dataclass(frozen=True)
class Page:
    run_id: str
    status: str
    symbol: str
    headline: str
    facts: list[tuple[str, str]]
    flavours: list[str]
    rows: list[Row]
    changes: list[ChangeView]
    previous: str
    inputs_changed: list[tuple[str, str]]
    compared_with: str
    commits: list[tuple[str, str]]
    config_changes: list[ConfigChanges]
    plots: list[Plot]
    trend_runs: int
    failures: list[FailureView]
    history: list[HistoryRow]
    notifications: list[str]
    geometry: Geometry


def page(run: Run, earlier: list[Run]) -> Page:
    """Everything report.html shows, as text already neutralised (Jinja escapes it)."""
    earlier = [other for other in earlier if other.id != run.id]
    history = [*reversed(earlier[: TREND_RUNS - 1]), run]
    failures = _failures(run)
    first_failure = {view.cell: view.anchor for view in reversed(failures)}
    previous = earlier[0] if earlier else None
    return Page(
        run_id=_text(run.id),
        status=str(run.status),
        symbol=SYMBOLS[str(run.status)],
        headline=_headline(run),
        facts=_facts(run),
        flavours=[_text(flavour) for flavour in _unique(c.flavour for c in run.cells)],
        rows=_rows(run, first_failure),
        changes=[_change(change) for change in run.changes],
        previous=_text(run.previous or ""),
        inputs_changed=_inputs_changed(run, previous),
        compared_with=_text(previous.id) if previous else "",
        commits=[_commit(line) for line in run.commits],
        config_changes=_config_changes(run.cells),
        plots=_trends(history),
        trend_runs=len(history),
        failures=failures,
        history=[_history_row(other, other is run) for other in reversed(history)],
        notifications=[_text(line) for line in run.notifications],
        geometry=GEOMETRY,
    )


# --- text -------------------------------------------------------------------------------


def _text(value: object, limit: int = MAX_TEXT) -> str:
    """One line safe to show: control characters neutralised, at most `limit` characters."""
    line = neutralise(str(value))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _lines(lines: list[str]) -> list[str]:
    shown = [_text(line) for line in lines[:MAX_EXCERPT_LINES]]
    if len(lines) > MAX_EXCERPT_LINES:
        shown.append(f"… {len(lines) - MAX_EXCERPT_LINES} more lines in the log")
    return shown


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"


def _unique(values: Iterable[str]) -> list[str]:
    """In order of first appearance."""
    return list(dict.fromkeys(values))


def _link(relative: str | None) -> Link | None:
    """A link to a file of the run directory: only a relative path that stays inside it is
    linked, percent-encoded, so that no scheme (`javascript:` becomes a file name), host
    (`//host`), absolute path or `..` can come out of a run record."""
    if not relative:
        return None
    shown = _text(relative)
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or "\\" in relative or ".." in parts:
        return Link(shown, None)
    return Link(shown, quote(relative, safe="/"))


def _run_link(run: Run) -> Link:
    """Another run's report, beside this run's directory."""
    if run.id in ("", ".", "..") or "/" in run.id:
        return Link(_text(run.id), None)
    return Link(_text(run.id), f"../{quote(run.id, safe='')}/report.html")


def _upstream(run: Run) -> str:
    git = run.upstream.get("git")
    if isinstance(git, dict) and (git.get("describe") or git.get("commit")):
        return _text(git.get("describe") or str(git.get("commit"))[:12])
    return _text(run.upstream.get("version") or run.upstream.get("identity") or "")


# --- header -----------------------------------------------------------------------------


def _headline(run: Run) -> str:
    failed = [c for c in run.cells if c.status in (Status.FAIL, Status.ERROR)]
    parts = [
        f"{len(failed)} of {_plural(len(run.cells), 'cell')} did not pass"
        if failed
        else f"all {_plural(len(run.cells), 'cell')} passed"
        if run.cells
        else "no cell was built",
    ]
    if run.regressions:
        parts.append(_plural(len(run.regressions), "regression"))
    if run.recoveries:
        parts.append(_plural(len(run.recoveries), "recovery", "recoveries"))
    return ", ".join(parts)


def _facts(run: Run) -> list[tuple[str, str]]:
    git = run.upstream.get("git")
    commit = git.get("commit") if isinstance(git, dict) else None
    facts = [
        ("Upstream", _upstream(run)),
        ("Commit", _text(commit or "")),
        ("Tarball SHA-512", _text(str(run.upstream.get("tarball_sha512") or "")[:32])),
        ("Started", _text(run.started)),
        ("Finished", _text(run.finished)),
        ("Backend", _text(run.backend)),
        ("Compared with", _text(run.previous or "")),
        ("Key", _text(run.key[:16])),
    ]
    return [(label, value) for label, value in facts if value]


# --- the matrix -------------------------------------------------------------------------


def _step(step: Step) -> StepView:
    status = str(step.status)
    ran = step.status != Status.SKIP or step.seconds > 0
    return StepView(
        name=_text(step.name),
        status=status,
        symbol=SYMBOLS[status],
        duration=_duration(step.seconds) if ran else "",
        summary=_text(step.summary),
        log=_link(step.log),
    )


def _rows(run: Run, first_failure: dict[str, str]) -> list[Row]:
    kinds = {change.cell: change.kind for change in run.changes}
    by_place = {(c.arch, c.flavour): c for c in run.cells}
    flavours = _unique(c.flavour for c in run.cells)

    def view(cell: Cell | None) -> CellView | None:
        if cell is None:
            return None
        status = str(cell.status)
        return CellView(
            name=_text(cell.name),
            status=status,
            symbol=SYMBOLS[status],
            nvr=_text(cell.nvr or ""),
            steps=[_step(step) for step in cell.steps],
            change=_kind(kinds.get(cell.name, "")),
            failure=first_failure.get(_text(cell.name)),
        )

    return [
        Row(_text(arch), [view(by_place.get((arch, flavour))) for flavour in flavours])
        for arch in _unique(c.arch for c in run.cells)
    ]


def _kind(kind: str) -> str:
    """Only the two kinds the page styles: anything else in a record is not highlighted."""
    return kind if kind in ("regression", "recovery") else ""


# --- what changed -----------------------------------------------------------------------


def _change(change: Change) -> ChangeView:
    return ChangeView(
        kind=_kind(change.kind) or _text(change.kind),
        cell=_text(change.cell),
        step=_text(change.step),
        excerpt=_lines(change.excerpt),
    )


def _inputs_changed(run: Run, previous: Run | None) -> list[tuple[str, str]]:
    if previous is None:
        return []
    return [
        (_text(name), INPUTS.get(name, "")) for name in key.changed(previous.inputs, run.inputs)
    ]


def _commit(line: str) -> tuple[str, str]:
    """`hash subject` of `git log --oneline`, apart."""
    commit, _, subject = _text(line).partition(" ")
    return commit, subject


def _config_changes(cells: list[Cell]) -> list[ConfigChanges]:
    """Cells whose configs changed alike are listed once, together."""
    alike: dict[tuple[str, ...], list[str]] = {}
    for cell in cells:
        if cell.config_changes:
            alike.setdefault(tuple(cell.config_changes), []).append(_text(cell.name))
    return [
        ConfigChanges(
            cells=", ".join(names),
            lines=[_text(line) for line in lines[:MAX_CONFIG_LINES]],
            more=max(0, len(lines) - MAX_CONFIG_LINES),
        )
        for lines, names in alike.items()
    ]


# --- failures ---------------------------------------------------------------------------


def _failures(run: Run) -> list[FailureView]:
    """Every step that failed or errored, cell by cell, in the order the matrix shows."""
    kinds = {change.cell: change.kind for change in run.changes}
    failed = [
        (cell, step)
        for cell in run.cells
        for step in cell.steps
        if step.status in (Status.FAIL, Status.ERROR)
    ]
    return [
        FailureView(
            anchor=f"failure-{number}",
            cell=_text(cell.name),
            step=_step(step),
            excerpt=_lines(step.excerpt),
            change=_kind(kinds.get(cell.name, "")),
        )
        for number, (cell, step) in enumerate(failed, 1)
    ]


# --- trends -----------------------------------------------------------------------------

Measure = Callable[[Cell, str], float | None]


def _trends(history: list[Run]) -> list[Plot]:
    """One plot per step (its duration), then the RPM sizes and the ccache hit rate: one
    line per cell in each, over `history` (oldest first)."""
    cells = _unique(cell.name for run in reversed(history) for cell in run.cells)
    steps = sorted(
        _unique(step.name for run in history for cell in run.cells for step in cell.steps),
        key=_step_order,
    )
    plots = [_plot(f"{step} duration", history, cells, _seconds, _duration, step) for step in steps]
    plots.append(_plot("RPM size", history, cells, _rpm_mib, lambda v: f"{v:.1f} MiB"))
    plots.append(_plot("ccache hit rate", history, cells, _hit_rate, lambda v: f"{v:.0f} %"))
    found = [plot for plot in plots if plot is not None]
    return [dataclasses.replace(plot, anchor=f"trend-{n}") for n, plot in enumerate(found, 1)]


def _step_order(name: str) -> int:
    """Where STEPS puts it (boot modes, and names it does not know, keep their order)."""
    base = "boot" if name.startswith("boot-") else name
    return STEPS.index(base) if base in STEPS else len(STEPS)


def _seconds(cell: Cell, step_name: str) -> float | None:
    """The step's duration where it passed: one that failed stopped early, one skipped
    did not run, and neither says how long the step takes."""
    step = cell.step(step_name)
    return step.seconds if step is not None and step.status == Status.PASS else None


def _rpm_mib(cell: Cell, _: str) -> float | None:
    return sum(rpm.size for rpm in cell.rpms) / 2**20 if cell.rpms else None


def _hit_rate(cell: Cell, _: str) -> float | None:
    return 100 * cell.ccache.hit_rate if cell.ccache is not None else None


def _plot(
    title: str,
    history: list[Run],
    cells: list[str],
    measure: Measure,
    shown: Callable[[float], str],
    step: str = "",
) -> Plot | None:
    """A plot of `measure` per cell over `history`, or None when nothing was measured."""
    values = {name: [_measured(run, name, measure, step) for run in history] for name in cells}
    found = [v for series in values.values() for v in series if v is not None]
    if not found:
        return None
    top = _nice(max(found))
    series = [
        _series(name, index, points, history, top, shown)
        for index, (name, points) in enumerate(values.items())
        if any(v is not None for v in points)
    ]
    first, last = _text(history[0].started[:10]), _text(history[-1].started[:10])
    g = GEOMETRY
    return Plot(
        anchor="",
        title=_text(title),
        description=(
            f"{_text(title)} of {_plural(len(series), 'cell')} over the last "
            f"{_plural(len(history), 'run')}, {first} to {last}; latest: "
            + "; ".join(f"{s.name} {s.latest}" for s in series)
        ),
        series=series,
        y_ticks=[
            Tick(f"{g.y(fraction * top, top):.1f}", shown(fraction * top))
            for fraction in (0, 0.5, 1)
        ],
        x_ticks=[
            Tick(f"{g.x(index, len(history)):.1f}", text)
            for index, text in _unique_ticks([(0, first), (len(history) - 1, last)])
        ],
    )


def _unique_ticks(ticks: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The first and the last run's ticks, once when they are the same run."""
    return ticks[:1] if ticks[0][0] == ticks[-1][0] else ticks


def _measured(run: Run, cell_name: str, measure: Measure, step: str) -> float | None:
    cell = next((c for c in run.cells if c.name == cell_name), None)
    value = measure(cell, step) if cell is not None else None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _series(
    name: str,
    index: int,
    values: list[float | None],
    history: list[Run],
    top: float,
    shown: Callable[[float], str],
) -> Series:
    g = GEOMETRY
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    xy = [(g.x(i, len(values)), g.y(v, top)) for i, v in points]
    return Series(
        name=_text(name),
        colour=PALETTE[index % len(PALETTE)],
        dash=DASHES[(index // len(PALETTE)) % len(DASHES)],
        points=" ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
        dots=[
            Dot(f"{x:.1f}", f"{y:.1f}", f"{_text(name)}, {_text(history[i].id)}: {shown(v)}")
            for (x, y), (i, v) in zip(xy, points, strict=True)
        ],
        latest=shown(values[-1]) if values[-1] is not None else "not measured in this run",
    )


def _nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (the top of a
    plot's scale, so that its ticks read as round numbers)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value)


# --- the history table ------------------------------------------------------------------


def _history_row(run: Run, current: bool) -> HistoryRow:
    status = str(run.status)
    return HistoryRow(
        run=_run_link(run) if not current else Link(_text(run.id), None),
        started=_text(run.started),
        status=status,
        symbol=SYMBOLS[status],
        upstream=_upstream(run),
        current=current,
    )
