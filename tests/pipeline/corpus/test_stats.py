"""``pipeline.corpus.stats``: the funnel and its per-candidate balance check on small corpora written with the schemas,
partial corpora, the distributions, and the ``.sql`` files' columns against ``schemas``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGE_SPECS, STAGES
from pipeline.corpus import stats
from schemas import Candidate, FetchedImage, RecordError, Rejection, Sample, SampleImage, Table, TextKept

SQL_FILES = sorted(stats.SQL_DIR.glob("*.sql"))


def write_rows(
    layout: CorpusLayout, table: type[Table], rows: list[dict[str, Any]], name: str = "part-00000-of-00001"
) -> None:
    """Write rows as one Parquet file of a table, as the stages do (the schema from ``schemas``)."""
    folder = Path(layout.folder(table))
    folder.mkdir(parents=True, exist_ok=True)
    full = [table.row(**row) for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=table.schema()), folder / f"{name}.parquet")


def candidate(number: int, alt: str = "a small red house by the lake", host: str = "example.org") -> dict[str, Any]:
    """A candidate row with a readable id."""
    return Candidate.row(
        candidate_id=f"c{number:04d}",
        key=f"k{number:04d}",
        image_url=f"https://img.{host}/{number}.jpg",
        alt_text=alt,
        page_url=f"https://{host}/page{number % 3}.html",
        page_host=host,
        image_host=f"img.{host}",
        warc_file="sample.warc.gz",
        warc_record_offset=number * 100,
    )


def rejection(row: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    """The rejected/ row of a candidate."""
    return Rejection.row(
        **{column: row[column] for column in Rejection.names() if column in row}, stage=stage, reason=reason
    )


def build_corpus(root: Path, stages_done: int = len(STAGES), extra_shard_rows: int = 0) -> dict[str, list]:
    """A corpus of 20 candidates: 2 dropped at extract, 4 by filter-text, 3 by fetch, 2 by filter-image, 9 kept.

    ``stages_done`` marks only the first N stages done (and writes only their outputs): a partial corpus.
    """
    layout = CorpusLayout(str(root))
    rows = [candidate(n, host="example.org" if n % 2 else "photos.example.com") for n in range(20)]
    rows[12] = candidate(12, alt="Ein kleines rotes Haus am See")
    extract_dropped, candidates = rows[:2], rows[2:]
    text_dropped, text_kept = candidates[:4], candidates[4:]
    fetch_dropped, fetched = text_kept[:3], text_kept[3:]
    image_dropped, kept = fetched[:2], fetched[2:]
    out = {"candidates": candidates, "kept": kept}

    def tagged(row: dict[str, Any], index: int) -> dict[str, Any]:
        language = "de" if row[Candidate.CANDIDATE_ID] == "c0012" else "en"
        return TextKept.row(
            **row, language=language, language_score=0.9, unigram_count=len(row[Candidate.ALT_TEXT].split())
        )

    def size(index: int) -> tuple[int, int]:
        return (640 + 10 * index, 480) if index % 3 else (300, 900)

    write_rows(layout, Candidate, candidates)
    write_rows(
        layout,
        Rejection,
        [rejection(r, "extract", "unsupported_url_scheme") for r in extract_dropped],
        "extract-00000-of-00001",
    )
    write_rows(
        layout,
        RecordError,
        [RecordError.row(stage="extract", warc_file="bad.warc.gz", reason="truncated_file", detail="EOF")],
    )
    if stages_done >= 2:
        write_rows(layout, TextKept, [tagged(r, i) for i, r in enumerate(text_kept)])
        reasons = ["alt_too_short", "alt_too_short", "duplicate_pair", "alt_shared_by_too_many_images"]
        write_rows(
            layout,
            Rejection,
            [rejection(r, "filter-text", why) for r, why in zip(text_dropped, reasons, strict=True)],
            "filter-text-00000-of-00001",
        )
    if stages_done >= 3:
        images = [
            FetchedImage.row(
                image_url=r[Candidate.IMAGE_URL],
                status="ok",
                source="archive",
                original_width=size(i)[0],
                original_height=size(i)[1],
                sha256=f"s{i % 5}",
                fetch_seconds=0.01,
                original_bytes=1000,
            )
            for i, r in enumerate(fetched)
        ]
        images += [
            FetchedImage.row(image_url=r[Candidate.IMAGE_URL], status="http_404", source="http", fetch_seconds=0.2)
            for r in fetch_dropped
        ]
        write_rows(layout, FetchedImage, images)
        write_rows(
            layout, Rejection, [rejection(r, "fetch", "http_404") for r in fetch_dropped], "fetch-00000-of-00001"
        )
    if stages_done >= 4:
        samples = [
            SampleImage.row(
                **tagged(r, i), original_width=size(i + 2)[0], original_height=size(i + 2)[1], sha256=f"s{i}"
            )
            for i, r in enumerate(kept)
        ]
        write_rows(layout, SampleImage, samples)
        write_rows(
            layout,
            Rejection,
            [
                rejection(image_dropped[0], "filter-image", "image_too_small"),
                rejection(image_dropped[1], "filter-image", "aspect_ratio_too_extreme"),
            ],
            "filter-image-00000-of-00001",
        )
    if stages_done >= 5:
        shard_rows = [
            Sample.row(
                **tagged(r, i),
                original_width=size(i + 2)[0],
                original_height=size(i + 2)[1],
                sha256=f"s{i}",
                shard="00000",
            )
            for i, r in enumerate(kept)
        ]
        shard_rows += shard_rows[:extra_shard_rows]
        write_rows(layout, Sample, shard_rows, "00000")
    for stage in STAGES[:stages_done]:
        layout.mark_done(stage, {"counters": {}})
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    build_corpus(tmp_path / "corpus")
    return tmp_path / "corpus"


def test_balanced_funnel_counts_every_stage_and_reason(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats.main([str(corpus)]) == 0
    text = capsys.readouterr().out
    assert "BALANCED: extracted 20 = kept 9 + rejected 11" in text
    for reason in ("unsupported_url_scheme", "alt_too_short", "duplicate_pair", "http_404", "aspect_ratio_too_extreme"):
        assert reason in text
    funnel = stats.collect(str(corpus))["funnel"]
    assert funnel["extracted"] == 20 and funnel["kept"] == 9 and funnel["rejected"] == 11
    assert [(s["stage"], s["dropped"], s["remaining"]) for s in funnel["stages"]] == [
        ("extract", 2, 18),
        ("filter-text", 4, 14),
        ("fetch", 3, 11),
        ("filter-image", 2, 9),
    ]
    assert {r["reason"]: r["candidates"] for r in funnel["stages"][1]["reasons"]} == {
        "alt_too_short": 2,
        "duplicate_pair": 1,
        "alt_shared_by_too_many_images": 1,
    }


def test_json_output_is_machine_readable(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats.main([str(corpus), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["balance"] == {"balanced": True, "problems": []}
    assert result["stages"]["pending"] == []
    languages = {row["language"]: (row["text_kept"], row["kept"], row["kept_pct"]) for row in result["languages"]}
    assert languages == {"en": (13, 8, 88.89), "de": (1, 1, 11.11)}
    statuses = {(row["status"], row["source"]): row["urls"] for row in result["fetch_status"]}
    assert statuses == {("ok", "archive"): 11, ("http_404", "http"): 3}
    assert result["record_errors"][0]["reason"] == "truncated_file"
    kept_chars = next(r for r in result["alt_length"] if r["population"] == "kept" and r["unit"] == "characters")
    assert kept_chars["n"] == 9 and kept_chars["p5"] == len("a small red house by the lake")
    page_hosts = [row for row in result["hosts"] if row["host_kind"] == "page"]
    assert sum(row["extracted"] for row in page_hosts) == 18 and sum(row["kept"] for row in page_hosts) == 9
    shorter = next(r for r in result["image_size"] if r["population"] == "kept" and r["measure"] == "shorter_side_px")
    assert shorter["min"] == 300 and shorter["max"] == 480
    assert sum(row["images"] for row in result["image_size_heatmap"]) == 11


def test_missing_and_duplicated_candidates_fail_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "corpus"
    build_corpus(root, extra_shard_rows=1)  # the first kept sample appears twice in shards/
    layout = CorpusLayout(str(root))
    # Lose one rejection: that candidate is now nowhere.
    (Path(layout.folder(Rejection)) / "fetch-00000-of-00001.parquet").unlink()
    assert stats.main([str(root)]) == 1
    captured = capsys.readouterr()
    assert "THE BOOKS DO NOT BALANCE" in captured.out and "does not balance" in captured.err
    problems = {p["problem"]: p for p in stats.collect(str(root))["balance"]["problems"]}
    assert problems["missing"]["candidates"] == 3
    assert [e["candidate_id"] for e in problems["missing"]["examples"]] == ["c0006", "c0007", "c0008"]
    duplicated = problems["placed_more_than_once"]
    assert duplicated["candidates"] == 1 and duplicated["examples"][0]["placed"] == ["kept", "kept"]
    assert "c0011  placed: kept, kept" in captured.out


def test_unknown_ids_fail(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    build_corpus(root)
    layout = CorpusLayout(str(root))
    write_rows(
        layout,
        Rejection,
        [rejection(candidate(99) | {Candidate.CANDIDATE_ID: "ghost"}, "fetch", "timeout")],
        "fetch-00001-of-00002",
    )
    result = stats.collect(str(root))
    assert not result["balance"]["balanced"]
    assert [(p["problem"], p["examples"][0]["placed"]) for p in result["balance"]["problems"]] == [
        ("unknown", ["rejected by fetch"])
    ]


@pytest.mark.parametrize(("done", "held"), [(1, "candidates"), (2, "text_kept"), (3, "text_kept"), (4, "samples")])
def test_partial_corpus_balances_with_candidates_in_flight(
    tmp_path: Path, done: int, held: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "corpus"
    build_corpus(root, stages_done=done)
    assert stats.main([str(root)]) == 0
    text = capsys.readouterr().out
    in_flight = {1: 18, 2: 14, 3: 11, 4: 9}[done]
    assert f"in flight ({held}/)" in text
    assert f"pending {', '.join(STAGES[done:])}; the {in_flight} candidates still in flight are in {held}/" in text
    result = stats.collect(str(root))
    assert result["funnel"]["in_flight"] == in_flight and result["funnel"]["kept"] is None


def test_not_a_corpus_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats.main([str(tmp_path)]) == 2
    assert "not a corpus yet" in capsys.readouterr().err


def test_cli_runs_stats_as_a_command(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["stats", str(corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["funnel"]["kept"] == 9


def test_every_registered_stage_says_where_its_survivors_are() -> None:
    """A new stage in the registry needs an entry here, and the survivors must sit in a table with one row per
    candidate (a ``candidate_id`` column) that stats has a view for, written by this stage or an earlier one."""
    assert list(stats.HELD_AFTER_STAGE) == list(STAGES)
    views = {table.FOLDER: table for table in stats.VIEW_TABLES}
    for position, spec in enumerate(STAGE_SPECS):
        table, minus_stages = stats.HELD_AFTER_STAGE[spec.name]
        assert table in {earlier.folder for earlier in STAGE_SPECS[: position + 1]}, spec.name
        assert "candidate_id" in views[table].schema().names, spec.name
        assert set(minus_stages) <= set(STAGES[: position + 1]), spec.name


# -- the .sql files against the schemas -----------------------------------------------------------------------------
def _empty_corpus_connection(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with tables.sql's views over one empty Parquet file per table, each with exactly its schema's columns."""
    for table in stats.VIEW_TABLES:
        folder = tmp_path / table.FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.schema().empty_table(), folder / "part-00000-of-00001.parquet")
    con = duckdb.connect()
    con.execute("SET VARIABLE corpus = ?", [str(tmp_path)])
    con.execute(stats.read_sql("tables"))
    con.execute(stats.read_sql("views"))
    con.execute("SET VARIABLE candidate_ids = ['x']")
    return con


@pytest.mark.parametrize("path", [p for p in SQL_FILES if p.stem not in ("tables", "views")], ids=lambda p: p.name)
def test_every_sql_column_exists_in_the_schemas(tmp_path: Path, path: Path) -> None:
    """DuckDB's binder rejects any column a query names that the Parquet (written from ``schemas``) lacks."""
    con = _empty_corpus_connection(tmp_path)
    con.execute(path.read_text()).fetchall()


def test_sql_runs_as_documented_on_a_finished_corpus(corpus: Path) -> None:
    """tables.sql (the DuckDB CLI route) gives the same funnel as ``pipeline stats``."""
    con = duckdb.connect()
    con.execute("SET VARIABLE corpus = ?", [str(corpus)])
    con.execute(stats.read_sql("tables"))
    con.execute(stats.read_sql("views"))
    cli_funnel = stats.query(con, "funnel")
    layout = CorpusLayout(str(corpus))
    assert cli_funnel == stats.query(stats.connect(layout, list(STAGES)), "funnel")
    assert stats.query(con, "balance") == []
