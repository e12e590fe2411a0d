"""report.html as a real browser renders it: headless Chromium dumps the DOM it built and
takes a screenshot (kept under the test's directory, and in $KXEN_TEST_ARTIFACTS if set)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from kxen.nightly import report
from kxen.nightly.model import Run

from ..unit.test_nightly_report import (
    HOSTILE,
    Page,
    cell_of,
    earlier_runs,
    hostile_run,
    regression_run,
    squash,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1280, 2000)


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    assert CHROMIUM is not None, "run tools/setup-host: it installs Debian's chromium"


def browse(tmp_path: Path, run: Run, earlier: list[Run], screenshot: Path | None = None) -> Page:
    """Write the run's report.html in a run directory (with its logs) and return the DOM
    Chromium built from it; take a screenshot too if asked."""
    run_dir = tmp_path / run.id
    for cell in run.cells:
        for step in cell.steps:
            if step.log and not step.log.startswith(("/", "..")) and ":" not in step.log:
                (run_dir / step.log).parent.mkdir(parents=True, exist_ok=True)
                (run_dir / step.log).write_text("\n".join(step.excerpt) + "\n")
    page = run_dir / "report.html"
    report.write(page, run, earlier)
    command = [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
    ]
    if screenshot is not None:
        command += [f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    done = subprocess.run(
        [*command, page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Page(done.stdout)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_renders_the_matrix_the_plots_and_the_failures(tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    dom = browse(tmp_path, regression_run(), earlier_runs(5), shot)

    assert dom.all("section")[0].attrs["id"] == "matrix"
    assert dom.index("table") < dom.index("svg")
    broken = cell_of(dom, "x86_64", "default")
    assert broken.attrs["data-status"] == "FAIL"
    assert "REGRESSION" in broken.text.upper()
    assert cell_of(dom, "i686", "smoke").attrs["data-status"] == "ERROR"

    plots = dom.all("svg", role="img")
    assert len(plots) == 10
    for plot in plots:
        assert next(c for c in plot.children if c.tag == "title").text.strip()
        assert [c for c in plot.children if c.tag == "polyline"]

    first = dom.all("article")[0]
    assert squash(first.children[0].text) == "✗ FAIL x86_64/default: boot-pvh regression"
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in first.text
    (log,) = [a for a in first.children if a.tag == "a"]
    assert log.attrs["href"] == "logs/x86_64-default/boot-pvh.log"

    assert png_size(shot) == WINDOW
    assert shot.stat().st_size > 50_000  # a page, not a blank window
    artifacts = os.environ.get("KXEN_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / "nightly-report.png")


def test_chromium_runs_nothing_from_a_hostile_run(tmp_path: Path) -> None:
    dom = browse(tmp_path, hostile_run(), earlier_runs(2))
    assert not dom.all("script")
    assert HOSTILE in [th.text for th in dom.all("th", scope="col")]
    title = dom.all("title")[0]  # the page's, before any plot's
    assert title.text == "kxen nightly 20261121T020000Z-212b3c4d5e6f: FAIL"
    assert dom.all("article")[0].attrs["data-status"] == "FAIL"
