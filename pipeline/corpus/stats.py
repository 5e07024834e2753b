"""``python -m pipeline stats DIR``: DuckDB over a corpus's Parquet: the funnel with its balance check, and distributions.

The queries are the ``pipeline/corpus/sql/*.sql`` files, so a user can run the same ones in the DuckDB CLI (see the header of
``pipeline/corpus/sql/tables.sql``). Here the table views are built from the files each stage wrote: a stage that has not
run yet gives an empty table of its schema, so a partial corpus still reports, and says which stages are pending
and where the candidates still in flight are.

Exit code: 0 when every extracted candidate ended exactly once in ``shards/`` (or the in-flight table) or
``rejected/``; 1 when the books do not balance (with the ids that do not add up); 2 when DIR is not a corpus.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout, list_matching
from pipeline.core.registry import EXTRACT, FETCH, FILTER_IMAGE, FILTER_TEXT, STAGES, WRITE_SHARDS
from pipeline.corpus.remote import is_remote, local_corpus
from pipeline.corpus.reshard import describe, format_description
from schemas import (
    SCHEMA_VERSION,
    Candidate,
    FetchedImage,
    RecordError,
    Rejection,
    Sample,
    SampleImage,
    Table,
    TextKept,
)

log = logging.getLogger("altcorpus")

SQL_DIR = Path(__file__).with_name("sql")

#: Views the queries read, named after their folders (``candidates``, ``shards``, ...), with the schema that types
#: an empty stand-in when a stage has not written the table yet.
VIEW_TABLES: tuple[type[Table], ...] = (Candidate, RecordError, TextKept, FetchedImage, SampleImage, Sample, Rejection)

#: Newest finished stage -> (table holding the candidates no stage dropped, stages whose rejections come out of it).
#: Names and folders are the registry's; which table holds the survivors is this module's knowledge: fetch writes one
#: row per URL, not per survivor, so after fetch the survivors are filter-text's output minus fetch's drops.
HELD_AFTER_STAGE: dict[str, tuple[str, tuple[str, ...]]] = {
    EXTRACT.name: (EXTRACT.folder, (EXTRACT.name,)),
    FILTER_TEXT.name: (FILTER_TEXT.folder, ()),
    FETCH.name: (FILTER_TEXT.folder, (FETCH.name,)),
    FILTER_IMAGE.name: (FILTER_IMAGE.folder, ()),
    WRITE_SHARDS.name: (WRITE_SHARDS.folder, ()),
}

#: The report's sections: query file (without .sql) per section, in print order.
DISTRIBUTIONS: tuple[str, ...] = (
    "languages",
    "alt_length",
    "alt_length_histogram",
    "caption_coverage",
    "caption_length",
    "image_size",
    "image_size_heatmap",
    "aspect_ratio",
    "hosts",
    "duplicates",
    "fetch_status",
    "record_errors",
)

BALANCE_EXAMPLES = 10


def read_sql(name: str) -> str:
    """The text of ``pipeline/corpus/sql/{name}.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def query(con: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    """Run one query file; its rows as dicts of plain JSON values."""
    cursor = con.execute(read_sql(name))
    columns = [item[0] for item in cursor.description]
    return [{column: _plain(value) for column, value in zip(columns, row, strict=True)} for row in cursor.fetchall()]


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def stage_status(layout: CorpusLayout) -> tuple[list[str], list[str]]:
    """``(done, pending)``: stages whose ``_SUCCESS`` exists, and the rest, in data-path order."""
    done = [stage for stage in STAGES if layout.is_done(stage)]
    return done, [stage for stage in STAGES if stage not in done]


def held_after(done: Sequence[str]) -> tuple[str, str, tuple[str, ...]]:
    """``(table, place, minus_stages)`` of the survivors, from the last stage of the unbroken run of finished ones."""
    last = None
    for stage in STAGES:
        if stage not in done:
            break
        last = stage
    if last is None:
        raise ValueError("extract has not finished: there is nothing to count yet")
    table, minus_stages = HELD_AFTER_STAGE[last]
    place = "kept" if last == STAGES[-1] else f"in flight ({table}/)"
    return table, place, minus_stages


def connect(layout: CorpusLayout, done: Sequence[str], threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per table (empty with its schema when not written) and ``views.sql`` loaded."""
    con = duckdb.connect()
    # Nothing here depends on row order: letting DuckDB drop it saves memory and time on large scans.
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for table in VIEW_TABLES:
        files = list_matching(layout.glob(table))
        if files:
            paths = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
            con.execute(
                f"CREATE OR REPLACE VIEW {table.FOLDER} AS SELECT * FROM read_parquet([{paths}], union_by_name = true)"
            )
        else:
            con.register(f"{table.FOLDER}_empty", pa.Table.from_batches([], schema=table.schema()))
            con.execute(f"CREATE OR REPLACE VIEW {table.FOLDER} AS SELECT * FROM {table.FOLDER}_empty")
    held_table, held_place, minus_stages = held_after(done)
    con.execute("SET VARIABLE held_table = ?", [held_table])
    con.execute("SET VARIABLE held_place = ?", [held_place])
    con.execute("SET VARIABLE held_minus_stages = ?::VARCHAR[]", [list(minus_stages)])
    con.execute(read_sql("views"))
    return con


def funnel_summary(rows: list[dict[str, Any]], done: Sequence[str]) -> dict[str, Any]:
    """The funnel as numbers: extracted, per stage its drops by reason and what remains, and what is held."""
    extracted = sum(row["candidates"] for row in rows if row["step"] == "extracted")
    held = [{"place": row["reason"], "candidates": row["candidates"]} for row in rows if row["step"] == "held"]
    stages: list[dict[str, Any]] = []
    remaining = extracted
    for stage in STAGES[:-1]:
        reasons = [
            {"reason": row["reason"], "candidates": row["candidates"]}
            for row in rows
            if row["step"] == "dropped" and row["stage"] == stage
        ]
        dropped = sum(item["candidates"] for item in reasons)
        remaining -= dropped
        stages.append(
            {"stage": stage, "done": stage in done, "dropped": dropped, "remaining": remaining, "reasons": reasons}
        )
    unknown_stages = sorted({row["stage"] for row in rows if row["step"] == "dropped" and row["stage"] not in STAGES})
    rejected = sum(row["candidates"] for row in rows if row["step"] == "dropped")
    held_total = sum(item["candidates"] for item in held)
    return {
        "extracted": extracted,
        "stages": stages,
        "rejected": rejected,
        "held": held,
        "kept": held_total if STAGES[-1] in done else None,
        "in_flight": held_total if STAGES[-1] not in done else 0,
        "unknown_stages": unknown_stages,
        "adds_up": extracted == held_total + rejected,
    }


def balance_check(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Per-candidate balance: the problems ``balance.sql`` finds, each with example ids and where they ended."""
    problems = query(con, "balance")
    example_ids = sorted({candidate for problem in problems for candidate in problem["examples"]})
    placements: dict[str, list[str]] = {}
    if example_ids:
        con.execute("SET VARIABLE candidate_ids = ?::VARCHAR[]", [example_ids])
        for row in query(con, "placements"):
            placements.setdefault(row["candidate_id"], []).append(row["place"])
    for problem in problems:
        problem["examples"] = [
            {"candidate_id": candidate, "placed": placements.get(candidate, [])} for candidate in problem["examples"]
        ]
    return {"balanced": not problems, "problems": problems}


def collect(root: str, threads: int | None = None) -> dict[str, Any]:
    """Every statistic of the corpus at ``root`` as one JSON-ready dict (what ``--json`` prints)."""
    layout = CorpusLayout(root)
    done, pending = stage_status(layout)
    started = time.perf_counter()
    con = connect(layout, done, threads)
    held_table, held_place, _ = held_after(done)
    funnel = funnel_summary(query(con, "funnel"), done)
    balance = balance_check(con)
    balance["balanced"] = balance["balanced"] and funnel["adds_up"]
    result: dict[str, Any] = {
        "corpus": layout.root,
        "schema_version": SCHEMA_VERSION,
        "stages": {"done": done, "pending": pending, "held_table": held_table, "held_place": held_place},
        "funnel": funnel,
        "balance": balance,
    }
    for name in DISTRIBUTIONS:
        result[name] = query(con, name)
    result["seconds"] = round(time.perf_counter() - started, 3)
    con.close()
    return result


# -- text output ---------------------------------------------------------------------------------------------------
def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as an aligned plain-text table (numbers right-aligned); ``(none)`` when empty."""
    if not rows:
        return "  (none)"
    columns = list(columns or rows[0].keys())
    cells = [[_format_value(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(column), (int, float)) or row.get(column) is None for row in rows) for column in columns
    ]

    def line(values: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                value.rjust(width) if is_number else value.ljust(width)
                for value, width, is_number in zip(values, widths, numeric, strict=True)
            ).rstrip()
        )

    return "\n".join([line(columns), line(["-" * width for width in widths]), *(line(values) for values in cells)])


def format_funnel(stats: dict[str, Any]) -> str:
    """The funnel and the balance verdict as text; the verdict is loud when the books do not balance."""
    funnel, stages, balance = stats["funnel"], stats["stages"], stats["balance"]
    lines = [f"corpus {stats['corpus']} (schema {stats['schema_version']})"]
    lines.append(
        f"stages done: {', '.join(stages['done']) or 'none'}; pending: {', '.join(stages['pending']) or 'none'}"
    )
    lines += ["", "FUNNEL", f"  extracted candidates {funnel['extracted']:>14,}"]
    for stage in funnel["stages"]:
        if not stage["done"] and not stage["dropped"]:
            lines.append(f"  {stage['stage']:<20} {'pending':>14}")
            continue
        lines.append(f"  {stage['stage']:<20} {-stage['dropped']:>+14,}   remaining {stage['remaining']:,}")
        for reason in stage["reasons"]:
            lines.append(f"      {reason['reason']:<34} {reason['candidates']:>10,}")
    for held in funnel["held"] or [{"place": stages["held_place"], "candidates": 0}]:
        lines.append(f"  {held['place']:<20} {held['candidates']:>14,}")
    if funnel["unknown_stages"]:
        lines.append(f"  rejections from unknown stages: {', '.join(funnel['unknown_stages'])}")
    if stages["pending"]:
        lines.append(
            f"  partial corpus: pending {', '.join(stages['pending'])}; the {funnel['in_flight']:,} candidates "
            f"still in flight are in {stages['held_table']}/"
        )
    held_total = sum(item["candidates"] for item in funnel["held"])
    equation = (
        f"extracted {funnel['extracted']:,} {'=' if funnel['adds_up'] else '!='} "
        f"{stages['held_place']} {held_total:,} + rejected {funnel['rejected']:,}"
    )
    lines.append("")
    if balance["balanced"]:
        lines.append(f"BALANCED: {equation}; every candidate_id ends exactly once")
        return "\n".join(lines)
    lines.append("!" * 78)
    lines.append(f"THE BOOKS DO NOT BALANCE: {equation}")
    for problem in balance["problems"]:
        lines.append(f"  {problem['problem']}: {problem['candidates']:,} candidate(s), e.g.")
        for example in problem["examples"]:
            lines.append(f"    {example['candidate_id']}  placed: {', '.join(example['placed']) or 'nowhere'}")
    lines.append("!" * 78)
    return "\n".join(lines)


SECTION_TITLES = {
    "languages": "LANGUAGES (fastText top-1 of the alt text)",
    "alt_length": "ALT-TEXT LENGTH PERCENTILES",
    "alt_length_histogram": "ALT-TEXT LENGTH HISTOGRAM (whitespace words; 41 = more than 40)",
    "caption_coverage": "ENHANCED CAPTIONS (caption stage; the others keep their alt text only)",
    "caption_length": "ENHANCED-CAPTION LENGTH PERCENTILES (beside the alt texts of the same samples)",
    "image_size": "ORIGINAL IMAGE SIZE PERCENTILES",
    "image_size_heatmap": "ORIGINAL IMAGE SIZE GRID (log2 width x log2 height)",
    "aspect_ratio": "ASPECT RATIOS (long/short side)",
    "hosts": "TOP HOSTS",
    "duplicates": "DUPLICATE RATES",
    "fetch_status": "FETCH STATUS (one row per distinct image URL)",
    "record_errors": "RECORD ERRORS (WARC records that yielded no candidate)",
}


def format_text(stats: dict[str, Any]) -> str:
    """The whole report as plain text: the funnel first, then every distribution."""
    parts = [format_funnel(stats)]
    for name in DISTRIBUTIONS:
        if name in ("alt_length_histogram", "image_size_heatmap"):
            continue  # charts in the HTML report; the percentiles above carry the same information in text
        if name.startswith("caption_") and not any(row["captioned"] for row in stats["caption_coverage"]):
            continue  # an uncaptioned corpus (the caption stage is optional): --json still has the zeros
        parts.append(f"\n{SECTION_TITLES[name]}\n{format_table(stats[name])}")
    parts.append(f"\n({stats['seconds']:.2f} s)")
    return "\n".join(parts)


# -- command line --------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Flags of ``python -m pipeline stats``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline stats", description=__doc__.split("\n")[0])
    parser.add_argument("corpus", help="Corpus directory (the --output of the stages)")
    parser.add_argument("--json", action="store_true", help="Print every statistic as one JSON object instead")
    parser.add_argument("--html", metavar="PATH", help="Also write a self-contained HTML report with charts")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    """Print the statistics of a corpus; exit 1 when the funnel does not balance, 2 when DIR holds no corpus."""
    args = parse_args(argv)
    if args.html and not Path(args.html).resolve().parent.is_dir():
        raise UsageError(f"--html {args.html}: the folder {Path(args.html).resolve().parent} does not exist")
    if is_remote(args.corpus):  # DuckDB reads local files: the tables (not the tars) are copied to a temp folder
        with local_corpus(args.corpus) as folder:
            return main([folder if arg == args.corpus else arg for arg in argv])
    layout = CorpusLayout(args.corpus)
    resharded = describe(args.corpus)  # shards only: the funnel stayed with the source corpus
    if resharded is not None:
        print(json.dumps(resharded, indent=2) if args.json else format_description(resharded))
        return 0
    if not layout.is_done(STAGES[0]):
        print(
            f"{args.corpus}: not a corpus yet: {layout.success_path(STAGES[0])} is missing "
            f"(run `python -m pipeline extract --output {args.corpus} ...` first)",
            file=sys.stderr,
        )
        return 2
    stale = layout.stale_stages()
    if stale:
        print(
            f"{args.corpus}: {', '.join(stale)} read outputs that a later re-run of an earlier stage replaced "
            "(stale): run `python -m pipeline build-corpus` with the same flags to redo them",
            file=sys.stderr,
        )
        return 1
    stats = collect(args.corpus, threads=args.threads)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=False))
    else:
        print(format_text(stats))
    if args.html:
        from pipeline.corpus.report import render_html

        Path(args.html).write_text(render_html(stats), encoding="utf-8")
        log.info("stats: HTML report written to %s", args.html)
    if not stats["balance"]["balanced"]:
        print(
            f"stats: the funnel of {args.corpus} does not balance: see THE BOOKS DO NOT BALANCE above", file=sys.stderr
        )
        return 1
    return 0
