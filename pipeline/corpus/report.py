"""The HTML report of ``python -m pipeline stats DIR --html report.html``: one self-contained file, inline SVG charts.

Nothing is fetched when the page opens (no CDN, no fonts, no script libraries), so the report can be mailed, archived
beside the corpus, or opened offline. The page is the Jinja template ``templates/report.html.j2`` (autoescaped); the
functions here only turn the dict ``pipeline.corpus.stats.collect`` returns into what it draws: each chart is a
``Chart`` of positioned marks (bars, labels, lines), computed in Python because the geometry is arithmetic, and
drawn by the template's ``charts.html.j2`` macros. Every chart is an ``<svg class="chart" data-chart=NAME>``;
hovering a mark shows its exact numbers.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jinja2

from pipeline.core.registry import FETCH, stage_spec

# Colours: slate for what went in, teal for what was kept, warm tones for what was dropped (each stage's own colour,
# from the registry).
INK = "#1e293b"
MUTED = "#64748b"
GRID = "#e2e8f0"
EXTRACTED = "#cbd5e1"
KEPT = "#0f766e"
DROPPED = ("#f97316", "#fb923c", "#fdba74", "#ea580c", "#c2410c", "#fed7aa")
HEAT = ("#f0fdfa", "#ccfbf1", "#99f6e4", "#5eead4", "#2dd4bf", "#14b8a6", "#0d9488", "#0f766e", "#115e59", "#134e4a")


def stage_colour(name: str) -> str:
    """The colour of a stage's drops: the registry's, or the first warm tone for a stage it does not know."""
    try:
        return stage_spec(name).colour
    except KeyError:
        return DROPPED[0]


# -- what a chart is made of: the template's charts.html.j2 draws each kind ---------------------------------------
@dataclass(frozen=True)
class Rect:
    """A bar or cell; ``tip`` is the hover text."""

    kind: ClassVar[str] = "rect"
    x: float
    y: float
    width: float
    height: float
    fill: str
    tip: str = ""
    radius: float = 3


@dataclass(frozen=True)
class Text:
    """A label anchored at (x, y); ``rotate`` turns it about that point (degrees)."""

    kind: ClassVar[str] = "text"
    x: float
    y: float
    content: str
    size: int = 12
    fill: str = INK
    anchor: str = "start"
    weight: int = 400
    rotate: float = 0


@dataclass(frozen=True)
class Line:
    """A grid line, axis or (``dashed``) a limit drawn over a chart."""

    kind: ClassVar[str] = "line"
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    dashed: bool = False


@dataclass(frozen=True)
class Polyline:
    """A dashed limit curve through ``points``."""

    kind: ClassVar[str] = "polyline"
    points: tuple[tuple[float, float], ...]
    stroke: str


Mark = Rect | Text | Line | Polyline


@dataclass(frozen=True)
class Chart:
    """One ``<svg class="chart" data-chart=name>``: its view box, its accessible label and its marks, in paint order."""

    name: str
    width: int
    height: int
    label: str
    marks: tuple[Mark, ...]


def _n(value: float | int | None) -> str:
    """A count for people: 1,234 / 12.3k / 4.5M."""
    if value is None:
        return "–"
    value = float(value)
    if abs(value) >= 10_000_000:
        return f"{value / 1e6:.0f}M"
    if abs(value) >= 1_000_000:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 100_000:
        return f"{value / 1e3:.0f}k"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _short(value: float) -> str:
    """A count in at most four characters, for labels inside small marks: 950 / 2.7k / 11k / 3.4M."""
    if value >= 999_500:
        return f"{value / 1e6:.1f}M" if value < 9_950_000 else f"{value / 1e6:.0f}M"
    if value >= 1000:
        return f"{value / 1e3:.1f}k" if value < 9_950 else f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def _nice_ticks(largest: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) from 0 up to at least ``largest``."""
    if largest <= 0:
        return [0.0, 1.0]
    raw = largest / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * index for index in range(math.ceil(largest / step) + 1)]


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "–"


def _cell(value: Any) -> str:
    """A table cell: numbers as counts for people, anything empty as a dash."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _n(value)
    return str(value or "–")


def _svg(name: str, width: int, height: int, body: Sequence[Mark], label: str) -> Chart:
    return Chart(name, width, height, label, tuple(body))


def _text(
    x: float, y: float, content: str, size: int = 12, fill: str = INK, anchor: str = "start", weight: int = 400
) -> Text:
    return Text(x, y, content, size, fill, anchor, weight)


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", radius: float = 3) -> Rect:
    return Rect(x, y, max(w, 0), max(h, 0), fill, tip, radius)


def _empty(name: str, message: str) -> Chart:
    return _svg(name, 600, 60, [_text(300, 35, message, 13, MUTED, "middle")], message)


# -- charts --------------------------------------------------------------------------------------------------------
def funnel_chart(funnel: dict[str, Any], held_place: str) -> Chart:
    """Extracted -> after each stage -> kept: one bar per step, the dropped part of each stage in its colour."""
    extracted = funnel["extracted"] or 0
    if not extracted:
        return _empty("funnel", "no candidates extracted")
    width, left, right, bar, gap = 1160, 150, 250, 34, 16
    steps = [("extracted", extracted, 0, "", None)]
    for stage in funnel["stages"]:
        steps.append((stage["stage"], stage["remaining"], stage["dropped"], stage["stage"], stage))
    held = sum(item["candidates"] for item in funnel["held"])
    steps.append(("kept" if funnel["kept"] is not None else "in flight", held, 0, "", None))
    height = 24 + len(steps) * (bar + gap) + 36
    scale = (width - left - right) / extracted
    body: list[Mark] = []
    for tick in range(0, 101, 25):
        x = left + (width - left - right) * tick / 100
        body.append(Line(x, 14, x, height - 30, GRID))
        body.append(_text(x, height - 12, f"{tick}%", 11, MUTED, "middle"))
    for index, (label, remaining, dropped, stage_name, stage) in enumerate(steps):
        y = 20 + index * (bar + gap)
        pending = stage is not None and not stage["done"] and not dropped
        body.append(_text(left - 12, y + bar / 2 + 5, label, 13, MUTED if pending else INK, "end", 600))
        if pending:
            body.append(_rect(left, y, (width - left - right), bar, "#f8fafc", f"{label}: pending"))
            body.append(_text(left + 12, y + bar / 2 + 5, "pending: the stage has not run", 12, MUTED))
            continue
        colour = "#334155" if index == 0 else ("#115e59" if index == len(steps) - 1 else KEPT)
        body.append(_rect(left, y, remaining * scale, bar, colour, f"{label}: {remaining:,} candidates remain"))
        if dropped:
            reasons = ", ".join(f"{r['reason']} {r['candidates']:,}" for r in stage["reasons"])
            body.append(
                _rect(
                    left + remaining * scale,
                    y,
                    dropped * scale,
                    bar,
                    stage_colour(stage_name),
                    f"{label} dropped {dropped:,}: {reasons}",
                )
            )
        # The count goes inside its bar when it fits (about 8 px a digit at 13 px); else it leads the note on the
        # right, since beside a full-width bar it would sit on the note.
        count = _n(remaining)
        inside = remaining * scale >= 8 * len(count) + 16
        if inside:
            body.append(_text(left + 8, y + bar / 2 + 5, count, 13, "#fff", weight=650))
        note = f"{_pct(remaining, extracted)} of extracted" if inside else f"{count} · {_pct(remaining, extracted)}"
        note += f"  ·  −{_n(dropped)} dropped" if dropped else ""
        body.append(_text(width - right + 14, y + bar / 2 + 5, note, 12, MUTED))
    return _svg("funnel", width, height, body, f"Funnel: {extracted:,} extracted, {held_place}")


def reasons_chart(funnel: dict[str, Any]) -> Chart:
    """Every drop reason as a bar, coloured by the stage that applied it, largest first within each stage."""
    rows = [(stage["stage"], reason) for stage in funnel["stages"] for reason in stage["reasons"]]
    if not rows:
        return _empty("reasons", "nothing was dropped")
    width, left, right, bar, gap = 560, 210, 70, 18, 7
    height = 10 + len(rows) * (bar + gap)
    largest = max(reason["candidates"] for _, reason in rows)
    body: list[Mark] = []
    for index, (stage, reason) in enumerate(rows):
        y = 6 + index * (bar + gap)
        size = (width - left - right) * reason["candidates"] / largest
        tip = f"{stage} · {reason['reason']}: {reason['candidates']:,} candidates"
        body.append(_text(left - 8, y + bar - 4, reason["reason"], 12, INK, "end"))
        body.append(_rect(left, y, max(size, 2), bar, stage_colour(stage), tip))
        body.append(_text(left + max(size, 2) + 6, y + bar - 4, _n(reason["candidates"]), 12, MUTED))
    return _svg("reasons", width, height, body, "Drop reasons")


def hbar_chart(
    name: str,
    items: Sequence[tuple[str, float, float | None]],
    total_label: str,
    part_label: str,
    width: int = 560,
    colours: Sequence[str] = (),
) -> Chart:
    """Horizontal bars: the total (light) with the kept part (teal) over it; labels on the left."""
    if not items:
        return _empty(name, "no data")
    left, right, bar, gap = 190, 70, 17, 7
    height = 8 + len(items) * (bar + gap)
    # The part is not always a subset of the total (kept samples vs fetched images: one image, several alts), so
    # the scale covers both and the larger is drawn behind.
    largest = max(max(total, part or 0) for _, total, part in items) or 1
    body: list[Mark] = []
    for index, (label, total, part) in enumerate(items):
        y = 4 + index * (bar + gap)
        short = label if len(label) <= 28 else label[:26] + "…"
        body.append(_text(left - 8, y + bar - 4, short, 12, INK, "end"))
        scale = (width - left - right) / largest
        tip = f"{label}: {total_label} {total:,.0f}" + (f", {part_label} {part:,.0f}" if part is not None else "")
        colour = colours[index] if index < len(colours) else (EXTRACTED if part is not None else KEPT)
        if part is not None and part > total:
            body.append(_rect(left, y, max(part * scale, 2), bar, KEPT, tip))
            body.append(_rect(left, y, max(total * scale, 0), bar, colour, tip))
        else:
            body.append(_rect(left, y, max(total * scale, 2), bar, colour, tip))
            if part is not None:
                body.append(_rect(left, y, max(part * scale, 0), bar, KEPT, tip))
        end = max(total, part or 0) * scale
        body.append(_text(left + max(end, 2) + 6, y + bar - 4, _n(total), 12, MUTED))
    return _svg(name, width, height, body, name)


def histogram_chart(rows: list[dict[str, Any]]) -> Chart:
    """Alt-text length in words: extracted (light) behind kept (teal), ALIGN's 3..20 window shaded."""
    if not rows:
        return _empty("alt_length_histogram", "no alt texts")
    width, height, left, bottom, top = 1160, 260, 56, 34, 14
    by_words = {row["words"]: row for row in rows}
    bins = list(range(1, 42))
    ticks = _nice_ticks(max(max(row["extracted"], row["kept"]) for row in rows))
    largest = ticks[-1]
    slot = (width - left - 16) / len(bins)
    plot_h = height - bottom - top

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * value / largest

    body: list[Mark] = [
        _rect(left + 2 * slot, top, 18 * slot, plot_h, "#f0fdfa", "ALIGN keeps 3..20 unigrams", 0),
        _text(left + 11 * slot, top + 14, "ALIGN window: 3–20 words", 11, KEPT, "middle", 600),
    ]
    for tick in ticks[1:]:
        y = y_of(tick)
        body.append(Line(left, y, width - 16, y, GRID))
        body.append(_text(left - 6, y + 4, _short(tick), 11, MUTED, "end"))
    for index, words in enumerate(bins):
        row = by_words.get(words, {"extracted": 0, "kept": 0})
        x = left + index * slot + 2
        label = "more than 40" if words == 41 else f"{words} word{'s' if words > 1 else ''}"
        tip = f"{label}: extracted {row['extracted']:,}, kept {row['kept']:,}"
        body.append(
            _rect(x, y_of(row["extracted"]), slot - 4, top + plot_h - y_of(row["extracted"]), EXTRACTED, tip, 2)
        )
        body.append(_rect(x + 3, y_of(row["kept"]), slot - 10, top + plot_h - y_of(row["kept"]), KEPT, tip, 2))
        if words in (1, 3, 5, 10, 15, 20, 25, 30, 35, 41):  # no 40: its label would touch "40+" beside it
            body.append(_text(x + slot / 2 - 2, height - 14, "40+" if words == 41 else str(words), 11, MUTED, "middle"))
    body.append(Line(left, top + plot_h, width - 16, top + plot_h, "#94a3b8"))
    return _svg("alt_length_histogram", width, height, body, "Alt-text length histogram")


def heatmap_chart(rows: list[dict[str, Any]]) -> Chart:
    """Original width x height on a log2 grid, darker = more images; ALIGN's size and aspect limits drawn over it."""
    if not rows:
        return _empty("image_size_heatmap", "no fetched images")
    low, high = 4, 13
    cells = high - low + 1
    size, left, bottom, top = 34, 62, 44, 10
    width, height = left + cells * size + 20, top + cells * size + bottom
    counts = {(row["width_log2"], row["height_log2"]): row for row in rows}
    largest = max(row["images"] for row in rows) or 1
    body: list[Mark] = []
    for wl in range(low, high + 1):
        for hl in range(low, high + 1):
            x, y = left + (wl - low) * size, top + (high - hl) * size
            row = counts.get((wl, hl))
            if row is None:
                body.append(_rect(x + 1, y + 1, size - 2, size - 2, "#f8fafc", "", 4))
                continue
            level = 1 + int((len(HEAT) - 2) * math.log1p(row["images"]) / math.log1p(largest))
            tip = (
                f"width {2**wl}–{2 ** (wl + 1) - 1} px, height {2**hl}–{2 ** (hl + 1) - 1} px: "
                f"{row['images']:,} images, {row['kept_samples']:,} kept"
            )
            body.append(_rect(x + 1, y + 1, size - 2, size - 2, HEAT[level], tip, 4))
            if size >= 30:
                colour = "#fff" if level >= 6 else INK
                body.append(_text(x + size / 2, y + size / 2 + 4, _short(row["images"]), 10, colour, "middle"))
    # ALIGN: shorter side > 200 px (log2 200 = 7.64) and long/short < 3 (log2 3 = 1.58) as dashed guides.
    edge = math.log2(200) - low
    x200, y200 = left + edge * size, top + (cells - edge) * size
    body.append(Line(x200, top, x200, y200, "#be123c", dashed=True))
    body.append(Line(x200, y200, left + cells * size, y200, "#be123c", dashed=True))
    ratio = math.log2(3)
    for sign in (1, -1):
        # h = w ± log2(3) in log2 space, clipped to the grid
        points: list[tuple[float, float]] = []
        for step in range(0, 101):
            wl = low + (cells) * step / 100
            hl = wl + sign * ratio
            if low <= hl <= high + 1:
                points.append((left + (wl - low) * size, top + (high + 1 - hl) * size))
        if points:
            body.append(Polyline(tuple(points), "#7c3aed"))
    for index in range(cells):
        value = 2 ** (low + index)
        label = f"{value // 1024}k" if value >= 1024 else str(value)
        body.append(_text(left + index * size + size / 2, top + cells * size + 16, label, 10, MUTED, "middle"))
        body.append(_text(left - 6, top + (cells - 1 - index) * size + size / 2 + 4, label, 10, MUTED, "end"))
    body.append(_text(left + cells * size / 2, height - 6, "original width (px, log scale)", 12, INK, "middle"))
    body.append(Text(14, top + cells * size / 2, "original height (px)", 12, INK, "middle", rotate=-90))
    return _svg("image_size_heatmap", width, height, body, "Original image size heatmap")


def aspect_chart(rows: list[dict[str, Any]]) -> Chart:
    """Aspect-ratio buckets: fetched images (light) and kept samples (teal), ALIGN's limit of 3 marked."""
    buckets = sorted({row["ratio_bucket"] for row in rows})
    if not buckets:
        return _empty("aspect_ratio", "no fetched images")
    by = {(row["population"], row["ratio_bucket"]): row["images"] for row in rows}
    items = [(bucket, by.get(("fetched", bucket), 0), by.get(("kept", bucket), 0)) for bucket in buckets]
    return hbar_chart("aspect_ratio", items, "fetched", "kept")


# -- page ----------------------------------------------------------------------------------------------------------
@functools.cache
def _environment() -> jinja2.Environment:
    """The template environment: autoescaped (corpus paths, hosts and alt-derived labels are data, not markup)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.corpus", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update(count=_n, cell=_cell, px=lambda value: f"{value:.1f}", thousands=lambda n: f"{n:,}")
    return environment


def _banner(stats: dict[str, Any]) -> dict[str, Any]:
    """The balance verdict: the funnel equation, pending stages, and the problems when the books do not balance."""
    funnel, balance, stages = stats["funnel"], stats["balance"], stats["stages"]
    held = sum(item["candidates"] for item in funnel["held"])
    return {
        "balanced": balance["balanced"],
        # Balanced books over an empty corpus are no success: the banner says so in amber, not green.
        "empty": funnel["kept"] is not None and held == 0,
        "equation": (
            f"{funnel['extracted']:,} extracted = {held:,} {stages['held_place']} + {funnel['rejected']:,} rejected"
        ),
        "pending": stages["pending"],
        "problems": balance["problems"],
    }


def _kpis(stats: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The headline numbers as (label, value, note)."""
    funnel = stats["funnel"]
    held = sum(item["candidates"] for item in funnel["held"])
    kept_label = "Kept" if funnel["kept"] is not None else "In flight"
    fetch = stats["fetch_status"]
    urls = sum(row["urls"] for row in fetch)
    ok = sum(row["urls"] for row in fetch if row["status"] == "ok")
    languages = [row for row in stats["languages"] if row["kept"] or row["text_kept"]]
    return [
        ("Extracted", _n(funnel["extracted"]), "candidates (<img> with alt)"),
        (kept_label, _n(held), f"{_pct(held, funnel['extracted'])} of extracted"),
        ("Rejected", _n(funnel["rejected"]), "with a stage and a reason"),
        ("Images fetched", _n(ok), f"{_pct(ok, urls)} of {_n(urls)} URLs" if urls else "fetch pending"),
        ("Languages", _n(len(languages)), f"top: {languages[0]['language']}" if languages else "–"),
        ("Record errors", _n(sum(row["records"] for row in stats["record_errors"])), "unreadable WARC records"),
    ]


def _charts(stats: dict[str, Any], kept_word: str) -> dict[str, Chart]:
    """Every chart of the page, by its ``data-chart`` name."""
    funnel = stats["funnel"]
    languages = [
        (row["language"], row["text_kept"], row["kept"])
        for row in stats["languages"]
        if row["text_kept"] or row["kept"]
    ][:15]
    hosts = {
        kind: [(row["host"], row["extracted"], row["kept"]) for row in stats["hosts"] if row["host_kind"] == kind][:15]
        for kind in ("page", "image")
    }
    fetch_items = [(f"{row['status']} · {row['source']}", row["urls"], None) for row in stats["fetch_status"]]
    fetch_colours = [KEPT if row["status"] == "ok" else FETCH.colour for row in stats["fetch_status"]]
    charts = [
        funnel_chart(funnel, stats["stages"]["held_place"]),
        reasons_chart(funnel),
        hbar_chart("languages", languages, "passed text filters", kept_word),
        histogram_chart(stats["alt_length_histogram"]),
        heatmap_chart(stats["image_size_heatmap"]),
        aspect_chart(stats["aspect_ratio"]),
        hbar_chart("page_hosts", hosts["page"], "extracted", kept_word),
        hbar_chart("image_hosts", hosts["image"], "extracted", kept_word),
        hbar_chart("fetch_status", fetch_items, "URLs", "", colours=fetch_colours),
    ]
    return {chart.name: chart for chart in charts}


def render_html(stats: dict[str, Any]) -> str:
    """The whole report as one HTML string (inline CSS and SVG; no external resources)."""
    funnel = stats["funnel"]
    kept_word = "kept" if funnel["kept"] is not None else "in flight"
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            stats=stats,
            kept_word=kept_word,
            kpis=_kpis(stats),
            banner=_banner(stats),
            charts=_charts(stats, kept_word),
            # The stages that can drop candidates (the funnel's), each in its colour: the reasons' legend.
            stage_legend=[(stage["stage"], stage_colour(stage["stage"])) for stage in funnel["stages"]],
            duplicates=[dict(row, rate=_pct(row["value"], row["base"])) for row in stats["duplicates"]],
            colours={"extracted": EXTRACTED, "kept": KEPT},
            generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
