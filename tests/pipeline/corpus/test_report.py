"""The HTML report: self-contained (no external resource), every chart drawn, and rendered by headless Chromium into
a non-blank screenshot whose DOM holds the charts' marks."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from pipeline.corpus import stats
from pipeline.corpus.report import render_html
from tests.pipeline.corpus.test_stats import build_corpus

CHARTS = (
    "funnel",
    "reasons",
    "languages",
    "alt_length_histogram",
    "image_size_heatmap",
    "aspect_ratio",
    "page_hosts",
    "image_hosts",
    "fetch_status",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The Chromium binary (Debian's ``chromium`` package; ``make test`` installs it)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (the Makefile's `chromium` target)")
    return binary


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the 20-candidate corpus of test_stats, written by ``stats --html``."""
    root = tmp_path_factory.mktemp("report") / "corpus"
    build_corpus(root)
    path = root.parent / "report.html"
    assert stats.main([str(root), "--html", str(path)]) == 0
    return path


def test_report_is_self_contained_with_every_chart(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    # No external resource: nothing is fetched when the page opens (links to http(s) would be a CDN or a font).
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    for name in CHARTS:
        assert f'data-chart="{name}"' in html, name
    assert "The books balance: 20 extracted = 9 kept + 11 rejected" in html


def test_unbalanced_report_says_so(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    build_corpus(root, extra_shard_rows=2)
    html = render_html(stats.collect(str(root)))
    assert "THE BOOKS DO NOT BALANCE" in html and "placed_more_than_once: 2" in html


def test_partial_corpus_report_shows_pending_stages(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    build_corpus(root, stages_done=2)
    html = render_html(stats.collect(str(root)))
    assert "pending: fetch, filter-image, write-shards" in html
    assert "pending: the stage has not run" in html


def test_report_escapes_what_the_corpus_says(tmp_path: Path) -> None:
    """Paths, hosts, reasons and ids are data: markup in them is shown as text, never run (the template autoescapes)."""
    root = tmp_path / "corpus"
    build_corpus(root, extra_shard_rows=2)
    collected = stats.collect(str(root))
    payload = '<script>alert("x")</script>'
    collected["corpus"] = f"/data/{payload}"
    collected["hosts"][0]["host"] = payload
    collected["funnel"]["stages"][1]["reasons"][0]["reason"] = payload
    collected["balance"]["problems"][0]["examples"][0]["candidate_id"] = payload
    collected["record_errors"] = [{"stage": "extract", "reason": payload, "records": 1, "warc_files": 1}]
    html = render_html(collected)
    assert "<script" not in html
    # Once per place it was put: the title and header (corpus), the host and reason charts (label and hover text),
    # the balance banner, the record-errors table.
    assert html.count("&lt;script&gt;") >= 7


def test_chromium_renders_the_charts(report: Path, tmp_path: Path) -> None:
    """Headless Chromium draws the page: a non-blank screenshot, and the DOM it built holds every chart's marks."""
    binary = chromium()
    screenshot = tmp_path / "report.png"
    common = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1280,2400", report.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1280, 2400)
    # Non-blank: many distinct colours and real contrast (a blank or error page is one or two flat colours).
    colours = image.resize((320, 600)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 200
    assert max(ImageStat.Stat(image).stddev) > 20
    # The header band is the report's teal gradient, the funnel's bars are drawn below it.
    red, green, blue = image.getpixel((640, 20))
    assert green > red and blue > red
    dom = subprocess.run(
        [*common, "--dump-dom", report.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    for name in CHARTS:
        chart = re.search(rf'<svg[^>]*data-chart="{name}".*?</svg>', dom, flags=re.DOTALL)
        assert chart is not None, f"chart {name} missing from the rendered DOM"
        assert len(re.findall(r"<rect", chart.group(0))) >= 2, f"chart {name} has no marks"


#: Run in the page after it is laid out: every chart's box, its text labels' and marks' boxes, the banner's colour,
#: written into the DOM as JSON (``--dump-dom`` then carries the browser's own layout out).
MEASURE = """<script>
const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
  const box = r => { const b = r.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  return {name: svg.dataset.chart, box: box(svg),
          texts: [...svg.querySelectorAll('text')].map(t => [...box(t), t.textContent]),
          rects: [...svg.querySelectorAll('rect')].map(r => [...box(r), r.querySelector('title')?.textContent || ''])};
});
const banner = getComputedStyle(document.getElementById('balance')).backgroundColor;
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify({charts, banner});
document.body.appendChild(out);
</script>"""


def measured(html: str, tmp_path: Path, width: int = 1280) -> dict:
    """Chromium's layout of ``html``: element boxes in CSS pixels, read back from the DOM after ``MEASURE`` ran."""
    page = tmp_path / "measured.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},2400",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, flags=re.DOTALL)
    assert found is not None, dom[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


def overlaps(a: list, b: list, slack: float = 0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def check_layout(layout: dict) -> None:
    """No two labels of a chart overlap; every bar lies inside its chart."""
    for chart in layout["charts"]:
        left, top, right, bottom = chart["box"]
        for rect in chart["rects"]:
            assert left - 0.5 <= rect[0] and rect[2] <= right + 0.5, (chart["name"], rect, chart["box"])
            assert top - 0.5 <= rect[1] and rect[3] <= bottom + 0.5, (chart["name"], rect, chart["box"])
        texts = chart["texts"]
        for text in texts:  # no label runs off its chart (rotated ones excepted: their box is the turned one)
            assert left - 1 <= text[0] and text[2] <= right + 1, (chart["name"], text, chart["box"])
        for index, text in enumerate(texts):
            for other in texts[index + 1 :]:
                assert not overlaps(text, other), (chart["name"], text, other)


@pytest.mark.parametrize("width", [1280, 800])
def test_labels_do_not_collide_and_bars_stay_in_their_charts(tmp_path: Path, width: int) -> None:
    """Laid out by Chromium: more kept samples than fetched images (several alts per image), a stage that drops
    nearly everything (its count label beside its percentage), the histogram's last ticks."""
    root = tmp_path / "corpus"
    build_corpus(root)
    collected = stats.collect(str(root))
    for row in collected["aspect_ratio"]:
        if row["population"] == "kept":
            row["images"] *= 5  # kept counts samples, fetched counts images
    first = collected["funnel"]["stages"][0]
    first["remaining"], first["dropped"] = 37, collected["funnel"]["extracted"] * 100 - 37
    collected["funnel"]["extracted"] *= 100
    check_layout(measured(render_html(collected), tmp_path, width))


def test_a_corpus_that_kept_nothing_has_no_green_banner(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    build_corpus(root)
    collected = stats.collect(str(root))
    assert measured(render_html(collected), tmp_path)["banner"] == "rgb(236, 253, 245)"  # the green "ok" of a good one
    for held in collected["funnel"]["held"]:
        held["candidates"] = 0
    collected["funnel"]["kept"] = 0
    red, green, blue = map(int, re.findall(r"\d+", measured(render_html(collected), tmp_path)["banner"])[:3])
    assert not (green > red and green > blue), (red, green, blue)


def test_tables_keep_min_and_max_like_the_text_output(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    for title in ("Alt-text length percentiles", "Original image size percentiles"):
        section = html.split(f"<h2>{title}</h2>", 1)[1].split("</section>", 1)[0]
        headers = re.findall(r"<th[^>]*>(\w+)</th>", section)
        assert headers[headers.index("n") + 1] == "min" and headers[-1] == "max", (title, headers)
