"""The HTML report of ``python -m pipeline stats DIR --html report.html``: one self-contained file, charts as inline SVG.

Nothing is fetched when the page opens (no CDN, no fonts, no script libraries): the charts are drawn here, in Python,
from the dict ``pipeline.corpus.stats.collect`` returns, so the report can be mailed, archived beside the corpus, or opened
offline. Every chart is an ``<svg class="chart" data-chart=NAME>``; hovering a mark shows its exact numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape
from typing import Any

# Colours: slate for what went in, teal for what was kept, warm tones for what was dropped.
INK = "#1e293b"
MUTED = "#64748b"
GRID = "#e2e8f0"
EXTRACTED = "#cbd5e1"
KEPT = "#0f766e"
DROPPED = ("#f97316", "#fb923c", "#fdba74", "#ea580c", "#c2410c", "#fed7aa")
STAGE_COLOURS = {"extract": "#a855f7", "filter-text": "#f97316", "fetch": "#e11d48", "filter-image": "#eab308"}
HEAT = ("#f0fdfa", "#ccfbf1", "#99f6e4", "#5eead4", "#2dd4bf", "#14b8a6", "#0d9488", "#0f766e", "#115e59", "#134e4a")

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1e293b; background: #f1f5f9; }
header { background: linear-gradient(120deg, #134e4a, #0f766e 55%, #0e7490); color: #f8fafc; padding: 28px 40px 72px; }
header h1 { margin: 0 0 4px; font-size: 28px; letter-spacing: -0.02em; }
header .sub { opacity: .85; font-size: 14px; word-break: break-all; }
main { max-width: 1240px; margin: -52px auto 40px; padding: 0 24px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 14px; margin-bottom: 18px; }
.kpi { background: #fff; border-radius: 14px; padding: 16px 18px; box-shadow: 0 1px 3px rgba(15,23,42,.08); }
.kpi .label { color: #64748b; font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
.kpi .value { font-size: 26px; font-weight: 650; letter-spacing: -0.02em; }
.kpi .note { color: #64748b; font-size: 12px; }
.banner { border-radius: 14px; padding: 14px 18px; margin-bottom: 18px; font-weight: 600; display: flex; gap: 12px;
          align-items: center; box-shadow: 0 1px 3px rgba(15,23,42,.08); }
.banner.ok { background: #ecfdf5; color: #065f46; border: 1px solid #a7f3d0; }
.banner.bad { background: #fef2f2; color: #991b1b; border: 2px solid #f87171; }
.banner .icon { font-size: 22px; }
.banner ul { margin: 6px 0 0; font-weight: 400; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px; }
.card { background: #fff; border-radius: 14px; padding: 18px 20px 14px; box-shadow: 0 1px 3px rgba(15,23,42,.08); }
.card.wide { grid-column: 1 / -1; }
.card h2 { margin: 0 0 2px; font-size: 17px; letter-spacing: -0.01em; }
.card p.what { margin: 0 0 10px; color: #64748b; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart[data-chart="image_size_heatmap"] { max-width: 440px; margin: 0 auto; }
svg.chart text { font-family: inherit; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e2e8f0; text-align: right; white-space: nowrap; }
th { color: #64748b; font-weight: 600; font-size: 12px; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: #475569; margin: 2px 0 6px; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; border-radius: 3px;
                       margin-right: 6px; background: var(--c); vertical-align: -1px; }
.pending { color: #64748b; font-style: italic; }
footer { text-align: center; color: #94a3b8; font-size: 12px; margin: 24px 0; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
"""


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


def _svg(name: str, width: int, height: int, body: Sequence[str], label: str) -> str:
    return (
        f'<svg class="chart" data-chart="{name}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def _text(
    x: float, y: float, content: str, size: int = 12, fill: str = INK, anchor: str = "start", weight: int = 400
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}" '
        f'font-weight="{weight}">{escape(content)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", radius: float = 3) -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" rx="{radius}" '
        f'fill="{fill}">{title}</rect>'
    )


def _empty(name: str, message: str) -> str:
    return _svg(name, 600, 60, [_text(300, 35, message, 13, MUTED, "middle")], message)


# -- charts --------------------------------------------------------------------------------------------------------
def funnel_chart(funnel: dict[str, Any], held_place: str) -> str:
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
    body = []
    for tick in range(0, 101, 25):
        x = left + (width - left - right) * tick / 100
        body.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="{height - 30}" stroke="{GRID}"/>')
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
                    STAGE_COLOURS.get(stage_name, DROPPED[0]),
                    f"{label} dropped {dropped:,}: {reasons}",
                )
            )
        inside = remaining * scale > 80
        body.append(
            _text(
                left + (8 if inside else remaining * scale + dropped * scale + 8),
                y + bar / 2 + 5,
                _n(remaining),
                13,
                "#fff" if inside else INK,
                weight=650,
            )
        )
        note = f"{_pct(remaining, extracted)} of extracted" + (f"  ·  −{_n(dropped)} dropped" if dropped else "")
        body.append(_text(width - right + 14, y + bar / 2 + 5, note, 12, MUTED))
    return _svg("funnel", width, height, body, f"Funnel: {extracted:,} extracted, {held_place}")


def reasons_chart(funnel: dict[str, Any]) -> str:
    """Every drop reason as a bar, coloured by the stage that applied it, largest first within each stage."""
    rows = [(stage["stage"], reason) for stage in funnel["stages"] for reason in stage["reasons"]]
    if not rows:
        return _empty("reasons", "nothing was dropped")
    width, left, right, bar, gap = 560, 210, 70, 18, 7
    height = 10 + len(rows) * (bar + gap)
    largest = max(reason["candidates"] for _, reason in rows)
    body = []
    for index, (stage, reason) in enumerate(rows):
        y = 6 + index * (bar + gap)
        size = (width - left - right) * reason["candidates"] / largest
        tip = f"{stage} · {reason['reason']}: {reason['candidates']:,} candidates"
        body.append(_text(left - 8, y + bar - 4, reason["reason"], 12, INK, "end"))
        body.append(_rect(left, y, max(size, 2), bar, STAGE_COLOURS.get(stage, DROPPED[0]), tip))
        body.append(_text(left + max(size, 2) + 6, y + bar - 4, _n(reason["candidates"]), 12, MUTED))
    return _svg("reasons", width, height, body, "Drop reasons")


def hbar_chart(
    name: str,
    items: Sequence[tuple[str, float, float | None]],
    total_label: str,
    part_label: str,
    width: int = 560,
    colours: Sequence[str] = (),
) -> str:
    """Horizontal bars: the total (light) with the kept part (teal) over it; labels on the left."""
    if not items:
        return _empty(name, "no data")
    left, right, bar, gap = 190, 70, 17, 7
    height = 8 + len(items) * (bar + gap)
    largest = max(total for _, total, _ in items) or 1
    body = []
    for index, (label, total, part) in enumerate(items):
        y = 4 + index * (bar + gap)
        short = label if len(label) <= 28 else label[:26] + "…"
        body.append(_text(left - 8, y + bar - 4, short, 12, INK, "end"))
        scale = (width - left - right) / largest
        tip = f"{label}: {total_label} {total:,.0f}" + (f", {part_label} {part:,.0f}" if part is not None else "")
        colour = colours[index] if index < len(colours) else (EXTRACTED if part is not None else KEPT)
        body.append(_rect(left, y, max(total * scale, 2), bar, colour, tip))
        if part is not None:
            body.append(_rect(left, y, max(part * scale, 0), bar, KEPT, tip))
        body.append(_text(left + max(total * scale, 2) + 6, y + bar - 4, _n(total), 12, MUTED))
    return _svg(name, width, height, body, name)


def histogram_chart(rows: list[dict[str, Any]]) -> str:
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

    body = [
        _rect(left + 2 * slot, top, 18 * slot, plot_h, "#f0fdfa", "ALIGN keeps 3..20 unigrams", 0),
        _text(left + 11 * slot, top + 14, "ALIGN window: 3–20 words", 11, KEPT, "middle", 600),
    ]
    for tick in ticks[1:]:
        y = y_of(tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 16}" y2="{y:.1f}" stroke="{GRID}"/>')
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
        if words in (1, 3, 5, 10, 15, 20, 25, 30, 35, 40, 41):
            body.append(_text(x + slot / 2 - 2, height - 14, "40+" if words == 41 else str(words), 11, MUTED, "middle"))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 16}" y2="{top + plot_h}" stroke="#94a3b8"/>')
    return _svg("alt_length_histogram", width, height, body, "Alt-text length histogram")


def heatmap_chart(rows: list[dict[str, Any]]) -> str:
    """Original width x height on a log2 grid, darker = more images; ALIGN's size and aspect limits drawn over it."""
    if not rows:
        return _empty("image_size_heatmap", "no fetched images")
    low, high = 4, 13
    cells = high - low + 1
    size, left, bottom, top = 34, 62, 44, 10
    width, height = left + cells * size + 20, top + cells * size + bottom
    counts = {(row["width_log2"], row["height_log2"]): row for row in rows}
    largest = max(row["images"] for row in rows) or 1
    body = []
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
    dash = 'stroke="#be123c" stroke-width="1.6" stroke-dasharray="5 4" fill="none"'
    body.append(f'<line x1="{x200:.1f}" y1="{top}" x2="{x200:.1f}" y2="{y200:.1f}" {dash}/>')
    body.append(f'<line x1="{x200:.1f}" y1="{y200:.1f}" x2="{left + cells * size}" y2="{y200:.1f}" {dash}/>')
    ratio = math.log2(3)
    for sign in (1, -1):
        # h = w ± log2(3) in log2 space, clipped to the grid
        points = []
        for step in range(0, 101):
            wl = low + (cells) * step / 100
            hl = wl + sign * ratio
            if low <= hl <= high + 1:
                points.append(f"{left + (wl - low) * size:.1f},{top + (high + 1 - hl) * size:.1f}")
        if points:
            body.append(f'<polyline points="{" ".join(points)}" {dash.replace("#be123c", "#7c3aed")}/>')
    for index in range(cells):
        value = 2 ** (low + index)
        label = f"{value // 1024}k" if value >= 1024 else str(value)
        body.append(_text(left + index * size + size / 2, top + cells * size + 16, label, 10, MUTED, "middle"))
        body.append(_text(left - 6, top + (cells - 1 - index) * size + size / 2 + 4, label, 10, MUTED, "end"))
    body.append(_text(left + cells * size / 2, height - 6, "original width (px, log scale)", 12, INK, "middle"))
    body.append(
        f'<text transform="translate(14 {top + cells * size / 2}) rotate(-90)" font-size="12" fill="{INK}" '
        'text-anchor="middle">original height (px)</text>'
    )
    return _svg("image_size_heatmap", width, height, body, "Original image size heatmap")


def aspect_chart(rows: list[dict[str, Any]]) -> str:
    """Aspect-ratio buckets: fetched images (light) and kept samples (teal), ALIGN's limit of 3 marked."""
    buckets = sorted({row["ratio_bucket"] for row in rows})
    if not buckets:
        return _empty("aspect_ratio", "no fetched images")
    by = {(row["population"], row["ratio_bucket"]): row["images"] for row in rows}
    items = [(bucket, by.get(("fetched", bucket), 0), by.get(("kept", bucket), 0)) for bucket in buckets]
    return hbar_chart("aspect_ratio", items, "fetched", "kept")


# -- page ----------------------------------------------------------------------------------------------------------
def _table(rows: list[dict[str, Any]], columns: Sequence[str], text_columns: Sequence[str] = ()) -> str:
    if not rows:
        return '<p class="pending">none</p>'
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            shown = _n(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value or "–")
            cells.append(f'<td class="{"text" if column in text_columns else ""}">{escape(shown)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(title: str, what: str, content: str, wide: bool = False, legend: Sequence[tuple[str, str]] = ()) -> str:
    keys = "".join(f'<span style="--c:{colour}">{escape(label)}</span>' for label, colour in legend)
    legend_html = f'<div class="legend">{keys}</div>' if keys else ""
    return (
        f'<section class="card{" wide" if wide else ""}"><h2>{escape(title)}</h2><p class="what">{escape(what)}</p>'
        f"{legend_html}{content}</section>"
    )


def _banner(stats: dict[str, Any]) -> str:
    funnel, balance, stages = stats["funnel"], stats["balance"], stats["stages"]
    held = sum(item["candidates"] for item in funnel["held"])
    equation = f"{funnel['extracted']:,} extracted = {held:,} {stages['held_place']} + {funnel['rejected']:,} rejected"
    pending = f" · pending: {', '.join(stages['pending'])}" if stages["pending"] else ""
    if balance["balanced"]:
        return (
            f'<div class="banner ok" id="balance"><span class="icon">✔</span><div>The books balance: {escape(equation)};'
            f" every candidate ends exactly once{escape(pending)}</div></div>"
        )
    items = "".join(
        f"<li>{escape(p['problem'])}: {p['candidates']:,} — e.g. "
        + escape(", ".join(f"{e['candidate_id']} ({', '.join(e['placed']) or 'nowhere'})" for e in p["examples"][:3]))
        + "</li>"
        for p in balance["problems"]
    )
    return (
        f'<div class="banner bad" id="balance"><span class="icon">✖</span><div>THE BOOKS DO NOT BALANCE '
        f"({escape(equation.replace(' = ', ' vs '))}){escape(pending)}<ul>{items}</ul></div></div>"
    )


def _kpis(stats: dict[str, Any]) -> str:
    funnel = stats["funnel"]
    held = sum(item["candidates"] for item in funnel["held"])
    kept_label = "Kept" if funnel["kept"] is not None else "In flight"
    fetch = stats["fetch_status"]
    urls = sum(row["urls"] for row in fetch)
    ok = sum(row["urls"] for row in fetch if row["status"] == "ok")
    languages = [row for row in stats["languages"] if row["kept"] or row["text_kept"]]
    cards = [
        ("Extracted", _n(funnel["extracted"]), "candidates (<img> with alt)"),
        (kept_label, _n(held), f"{_pct(held, funnel['extracted'])} of extracted"),
        ("Rejected", _n(funnel["rejected"]), "with a stage and a reason"),
        ("Images fetched", _n(ok), f"{_pct(ok, urls)} of {_n(urls)} URLs" if urls else "fetch pending"),
        ("Languages", _n(len(languages)), f"top: {languages[0]['language']}" if languages else "–"),
        ("Record errors", _n(sum(row["records"] for row in stats["record_errors"])), "unreadable WARC records"),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
            f'<div class="note">{escape(note)}</div></div>'
            for label, value, note in cards
        )
        + "</div>"
    )


def render_html(stats: dict[str, Any]) -> str:
    """The whole report as one HTML string (inline CSS and SVG; no external resources)."""
    funnel = stats["funnel"]
    kept_word = "kept" if funnel["kept"] is not None else "in flight"
    languages = [
        (row["language"], row["text_kept"], row["kept"])
        for row in stats["languages"]
        if row["text_kept"] or row["kept"]
    ][:15]
    page_hosts = [(row["host"], row["extracted"], row["kept"]) for row in stats["hosts"] if row["host_kind"] == "page"]
    image_hosts = [
        (row["host"], row["extracted"], row["kept"]) for row in stats["hosts"] if row["host_kind"] == "image"
    ]
    fetch_items = [(f"{row['status']} · {row['source']}", row["urls"], None) for row in stats["fetch_status"]]
    fetch_colours = [KEPT if row["status"] == "ok" else STAGE_COLOURS["fetch"] for row in stats["fetch_status"]]
    duplicates = [dict(row, rate=_pct(row["value"], row["base"])) for row in stats["duplicates"]]
    reason_legend = [(stage, colour) for stage, colour in STAGE_COLOURS.items()]
    cards = [
        _card(
            "Funnel",
            "Candidates remaining after each stage; the coloured tail of a bar is what that stage dropped.",
            funnel_chart(funnel, stats["stages"]["held_place"]),
            wide=True,
            legend=[("remaining", KEPT), *reason_legend],
        ),
        _card(
            "Why candidates were dropped",
            "Every rejection reason, coloured by stage.",
            reasons_chart(funnel),
            legend=reason_legend,
        ),
        _card(
            "Languages",
            "fastText top-1 language of the alt text (top 15).",
            hbar_chart(
                "languages", [(lang, total, kept) for lang, total, kept in languages], "passed text filters", kept_word
            ),
            legend=[("passed text filters", EXTRACTED), (kept_word, KEPT)],
        ),
        _card(
            "Alt-text length",
            "Words per alt text (whitespace-separated), every extracted candidate against the kept ones.",
            histogram_chart(stats["alt_length_histogram"]),
            wide=True,
            legend=[("extracted", EXTRACTED), (kept_word, KEPT)],
        ),
        _card(
            "Original image sizes",
            "Fetched images on a log2 grid (hover a cell for counts). Red: shorter side 200 px; violet: aspect ratio 3.",
            heatmap_chart(stats["image_size_heatmap"]),
        ),
        _card(
            "Aspect ratios",
            "Long side / short side of fetched images and kept samples; ALIGN keeps ratios below 3.",
            aspect_chart(stats["aspect_ratio"]),
            legend=[("fetched", EXTRACTED), (kept_word, KEPT)],
        ),
        _card(
            "Top page hosts",
            "Hosts of the pages the candidates came from.",
            hbar_chart("page_hosts", page_hosts[:15], "extracted", kept_word),
            legend=[("extracted", EXTRACTED), (kept_word, KEPT)],
        ),
        _card(
            "Top image hosts",
            "Hosts serving the images.",
            hbar_chart("image_hosts", image_hosts[:15], "extracted", kept_word),
            legend=[("extracted", EXTRACTED), (kept_word, KEPT)],
        ),
        _card(
            "Fetch status",
            "One row per distinct image URL: ok, or why not.",
            hbar_chart("fetch_status", fetch_items, "URLs", "", colours=fetch_colours),
        ),
        _card(
            "Duplicate rates",
            "How much of the material repeats, and what the duplicate rules removed.",
            _table(duplicates, ["measure", "value", "base", "rate"], ["measure"]),
        ),
        _card(
            "Alt-text length percentiles",
            "Characters, whitespace words and filter-text's unigrams.",
            _table(
                stats["alt_length"],
                ["population", "unit", "n", "p5", "p25", "p50", "p75", "p95", "max"],
                ["population", "unit"],
            ),
        ),
        _card(
            "Original image size percentiles",
            "Before resizing: fetched images (status ok) and kept samples.",
            _table(
                stats["image_size"],
                ["population", "measure", "n", "p5", "p25", "p50", "p75", "p95"],
                ["population", "measure"],
            ),
        ),
        _card(
            "Record errors",
            "WARC files and records that yielded no candidate.",
            _table(
                stats["record_errors"],
                ["stage", "reason", "records", "warc_files", "example_detail"],
                ["stage", "reason", "example_detail"],
            ),
            wide=True,
        ),
    ]
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>altcorpus report · {escape(stats['corpus'])}</title><style>{CSS}</style></head><body>"
        f'<header><h1>altcorpus corpus report</h1><div class="sub">{escape(stats["corpus"])} · schema '
        f"{escape(str(stats['schema_version']))} · stages done: {escape(', '.join(stats['stages']['done']) or 'none')}"
        f" · generated {generated}</div></header><main>"
        + _kpis(stats)
        + _banner(stats)
        + '<div class="grid">'
        + "".join(cards)
        + "</div></main>"
        + f"<footer>altcorpus · DuckDB over the corpus Parquet in {stats['seconds']:.2f} s · "
        "queries in pipeline/corpus/sql/*.sql</footer></body></html>"
    )
