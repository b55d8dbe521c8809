"""The HTML report opens in headless Chromium and every embedded figure decodes and renders.

A copy of ``report.html`` gets a small script that, once the page has loaded, marks each
``<img>`` with ``data-ok="1"`` when ``img.complete && img.naturalWidth > 0`` (else ``"0"``), plus
one deliberately broken image as a control that the check can fail. Chromium dumps the DOM after
the page settled (``--virtual-time-budget``); a screenshot checks that the page paints at all.
Skipped when no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.load import save_parquet
from analysis.report import build_report
from tests.test_analysis import synthetic_table

_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _find_chromium() -> str | None:
    for candidate in _CANDIDATES:
        if os.path.isabs(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
        elif (found := shutil.which(candidate)) is not None:
            return found
    return None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium: none of /usr/bin/chromium, chromium, chromium-browser, google-chrome "
    "found (apt-get install -y chromium to run this check)",
)

_CHECK_SCRIPT = """
<img id="broken-control" alt="control" src="data:image/png;base64,AAAA">
<script>
window.addEventListener("load", function () {
  var images = document.querySelectorAll("img"), ok = 0;
  images.forEach(function (img) {
    var rendered = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-ok", rendered ? "1" : "0");
    if (rendered) { ok += 1; }
  });
  document.body.setAttribute("data-images", images.length + ":" + ok);
});
</script>
"""


def _chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("render")
    parquet = save_parquet(synthetic_table(), directory / "runs.parquet")
    return build_report([], None, directory / "report", parquet=parquet, seed=0)


def test_every_figure_of_the_html_report_renders_in_chromium(report, tmp_path):
    drawn = [f for f in report.figures if f.skipped is None]
    page = tmp_path / "check.html"
    html = report.html.read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    images = re.findall(r"<img\b[^>]*>", dom)
    assert len(images) == len(drawn) + 1
    control = [tag for tag in images if 'id="broken-control"' in tag]
    assert len(control) == 1 and 'data-ok="0"' in control[0]  # the check can fail
    figures = [tag for tag in images if 'id="broken-control"' not in tag]
    assert all('data-ok="1"' in tag for tag in figures), [t[:80] for t in figures if 'data-ok="1"' not in t]
    assert f'data-images="{len(drawn) + 1}:{len(drawn)}"' in dom


def test_the_html_report_paints_a_screenshot(report, tmp_path):
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", report.html.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000  # a blank page compresses to far less


_WIDTH_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var right = 0, overflow = 0;
  document.querySelectorAll("table").forEach(function (table) {
    var box = table.parentElement;
    right = Math.max(right, Math.ceil(table.getBoundingClientRect().right));
    overflow = Math.max(overflow, box.scrollWidth - box.clientWidth);
  });
  var widths = [window.innerWidth, document.documentElement.scrollWidth, right, overflow];
  document.body.setAttribute("data-widths", widths.join(":"));
});
</script>
"""


def _widths(page: Path, tmp_path: Path, width: int) -> tuple[int, ...]:
    """(window width, page scroll width, widest table's right edge, largest table overflow), in px."""
    result = _chromium(tmp_path, "--dump-dom", f"--window-size={width},1000", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    return tuple(int(v) for v in re.search(r'data-widths="(\d+):(\d+):(\d+):(\d+)"', result.stdout).groups())


def test_the_report_tables_fit_a_1280_px_window_without_horizontal_scroll(report, tmp_path):
    page = tmp_path / "widths.html"
    html = report.html.read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", _WIDTH_SCRIPT + "</body>"), encoding="utf-8")
    window, scroll, right, overflow = _widths(page, tmp_path, 1280)
    assert window == 1280 and scroll <= window and right <= window and overflow == 0
    # the check can fail: in a window narrower than the main table, the table scrolls in its box
    window, scroll, right, overflow = _widths(page, tmp_path, 600)
    assert overflow > 0 or right > window
