"""The HTML report: self-contained (no external resource), every chart drawn, and rendered by headless Chromium into
a non-blank screenshot whose DOM holds the charts' marks."""

from __future__ import annotations

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
