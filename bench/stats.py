"""Benchmark of ``python -m pipeline stats``: a synthetic corpus of N extracted candidates (default 10 million),
written as the stages would write it (same schemas, same folders, ``_SUCCESS`` markers), then every statistic of it.

Prints the generation time, then the stats time and candidates/s. The corpus has realistic shapes (Zipf hosts,
log-normal alt lengths and image sizes, ALIGN's rules applied to them), so the report drawn from it is also a fair
preview: ``python bench/stats.py --rows 200000 --html build/bench-report.html``.

    python bench/stats.py [--rows 10000000] [--output build/bench-stats] [--html report.html] [--threads N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.layout import STAGES, CorpusLayout
from pipeline.corpus import stats
from schemas import Candidate, FetchedImage, RecordError, Rejection, Sample, Table, TextKept

WORDS = [
    "red",
    "blue",
    "green",
    "small",
    "large",
    "old",
    "new",
    "wooden",
    "stone",
    "house",
    "river",
    "mountain",
    "city",
    "street",
    "market",
    "beach",
    "forest",
    "dog",
    "cat",
    "bird",
    "child",
    "woman",
    "man",
    "family",
    "team",
    "car",
    "bike",
    "boat",
    "train",
    "bridge",
    "tower",
    "garden",
    "kitchen",
    "table",
    "chair",
    "lamp",
    "book",
    "phone",
    "photo",
    "view",
    "sunset",
    "night",
    "morning",
    "winter",
    "summer",
    "festival",
    "concert",
    "museum",
    "church",
    "castle",
    "harbour",
    "road",
    "field",
    "flower",
]
LANGUAGES = ["en", "de", "fr", "es", "ja", "ru", "it", "pt", "nl", "pl", "zh", "sv", "tr", "ko", "cs", "ar"]
LANGUAGE_SHARE = np.array([52, 9, 7, 6, 5, 4, 3, 3, 2, 2, 2, 1.5, 1.2, 1, 0.8, 0.5])


def _choice(rng: np.random.Generator, n: int, shares: np.ndarray) -> np.ndarray:
    return rng.choice(len(shares), size=n, p=shares / shares.sum())


def _strings(prefix: str, values: np.ndarray, suffix: str = "") -> pa.Array:
    """``prefix + str(value) + suffix`` for many values, in Arrow (no Python loop)."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), suffix, "")


def _table(table: type[Table], columns: dict[str, pa.Array], rows: int) -> pa.Table:
    """A full table of a schema: given columns cast to their type, the others null."""
    schema = table.schema()
    arrays = []
    for field in schema:
        if field.name in columns:
            arrays.append(pc.cast(columns[field.name], field.type))
        else:
            arrays.append(pa.nulls(rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write(table: pa.Table, folder: Path, prefix: str, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-table.num_rows // files))
    count = max(1, -(-table.num_rows // step))
    for index in range(count):
        part = table.slice(index * step, step)
        pq.write_table(part, folder / f"{prefix}-{index:05d}-of-{count:05d}.parquet", compression="snappy")


def generate_corpus(root: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Write a finished corpus of ``rows`` extracted candidates under ``root``; returns the count per place."""
    rng = np.random.default_rng(seed)
    layout = CorpusLayout(str(root))
    ids = np.arange(rows, dtype=np.int64)
    candidate_id = _strings("c", ids)
    key = _strings("k", ids)
    page_host_index = np.minimum(rng.zipf(1.3, rows), 5000)
    image_host_index = np.minimum(rng.zipf(1.5, rows), 2000)
    page_host = _strings("www.site", page_host_index, ".example")
    image_host = _strings("img", image_host_index, ".cdn.example")
    image_url = pc.binary_join_element_wise("https://", image_host, _strings("/i/", ids, ".jpg"), "")
    page_url = pc.binary_join_element_wise("https://", page_host, _strings("/p/", ids // 7), "")
    words = np.clip(np.rint(rng.lognormal(1.9, 0.75, rows)), 1, 60).astype(np.int64)
    # A pool of alt texts per length, picked per candidate: realistic strings without a Python loop over rows.
    per_length = 64
    pool = [" ".join(rng.choice(WORDS, size=length)) for length in range(1, 61) for _ in range(per_length)]
    alt_text = pa.array(pool).take(pa.array((words - 1) * per_length + rng.integers(0, per_length, rows)))
    base = {
        Candidate.CANDIDATE_ID: candidate_id,
        Candidate.KEY: key,
        Candidate.IMAGE_URL: image_url,
        Candidate.ALT_TEXT: alt_text,
        Candidate.PAGE_URL: page_url,
        Candidate.PAGE_HOST: page_host,
        Candidate.IMAGE_HOST: image_host,
        Candidate.WARC_FILE: _strings("crawl-", ids // 100_000, ".warc.gz"),
        Candidate.WARC_RECORD_OFFSET: pa.array(ids * 1000),
    }
    full = pa.table(base)

    # extract: 2% are unusable URLs (rejected at extraction, never in candidates/).
    roll = rng.random(rows)
    extract_drop = roll < 0.02
    rejections = []

    def reject(mask: np.ndarray, stage: str, reasons: list[str] | np.ndarray, shares: list[float] = (1.0,)) -> None:
        """Record the candidates of ``mask`` as dropped: reasons drawn by share, or one per row when an array."""
        part = full.filter(pa.array(mask))
        if isinstance(reasons, np.ndarray):
            chosen = reasons[mask]
        else:
            chosen = np.array(reasons)[_choice(rng, part.num_rows, np.array(shares))]
        columns = {name: part[name] for name in Rejection.names() if name in part.column_names}
        columns[Rejection.STAGE] = pa.array(np.full(part.num_rows, stage))
        columns[Rejection.REASON] = pa.array(chosen)
        rejections.append(_table(Rejection, columns, part.num_rows))

    reject(extract_drop, "extract", ["unsupported_url_scheme", "invalid_url", "alt_too_long_chars"], [0.8, 0.15, 0.05])
    alive = ~extract_drop
    _write(_table(Candidate, base, rows).filter(pa.array(alive)), Path(layout.folder(Candidate)), "part", 8)

    # filter-text: ALIGN's length window, then duplicates, shared alts and rare n-grams at plausible rates.
    short, long_ = words < 3, words > 20
    reject(alive & short, "filter-text", ["alt_too_short"])
    reject(alive & long_, "filter-text", ["alt_too_long"])
    other = alive & ~short & ~long_ & (roll > 0.02) & (roll < 0.12)
    reject(other, "filter-text", ["duplicate_pair", "alt_shared_by_too_many_images", "rare_ngram"], [0.5, 0.35, 0.15])
    text_kept = alive & ~short & ~long_ & ~other
    language = np.array(LANGUAGES)[_choice(rng, rows, LANGUAGE_SHARE)]
    kept_table = _table(
        TextKept,
        {
            **base,
            TextKept.LANGUAGE: pa.array(language),
            TextKept.LANGUAGE_SCORE: pa.array(rng.uniform(0.4, 1.0, rows)),
            TextKept.UNIGRAM_COUNT: pa.array(words),
        },
        rows,
    )
    _write(kept_table.filter(pa.array(text_kept)), Path(layout.folder(TextKept)), "part", 8)

    # fetch: one URL per candidate here; 15% fail.
    fetch_roll = rng.random(rows)
    fetch_fail = text_kept & (fetch_roll < 0.15)
    fail_reasons = ["http_404", "timeout", "robots_disallowed", "not_an_image", "connection_error", "opted_out"]
    fail_shares = [0.45, 0.2, 0.1, 0.1, 0.1, 0.05]
    status = np.array(fail_reasons)[_choice(rng, rows, np.array(fail_shares))]
    status = np.where(fetch_fail, status, "ok")
    width = np.clip(rng.lognormal(6.4, 0.7, rows), 16, 12000).astype(np.int64)
    height = np.clip(width * rng.lognormal(-0.15, 0.45, rows), 16, 12000).astype(np.int64)
    ok = text_kept & ~fetch_fail
    images = _table(
        FetchedImage,
        {
            FetchedImage.IMAGE_URL: image_url,
            FetchedImage.STATUS: pa.array(status),
            FetchedImage.SOURCE: pa.array(np.where(rng.random(rows) < 0.3, "archive", "http")),
            FetchedImage.FETCH_SECONDS: pa.array(rng.gamma(2.0, 0.15, rows)),
            FetchedImage.ORIGINAL_BYTES: pa.array(np.where(ok, width * height // 6, 0)),
            FetchedImage.SHA256: _strings("sha", ids - (ids % 50 == 0)),
            FetchedImage.ORIGINAL_WIDTH: pa.array(np.where(ok, width, 0)),
            FetchedImage.ORIGINAL_HEIGHT: pa.array(np.where(ok, height, 0)),
        },
        rows,
    )
    _write(images.filter(pa.array(text_kept)), Path(layout.folder(FetchedImage)), "part", 8)
    reject(fetch_fail, "fetch", status)

    # filter-image: ALIGN's size and aspect rules on the original size, then duplicate image+alt.
    shorter, longer = np.minimum(width, height), np.maximum(width, height)
    small = ok & (shorter < 201)
    extreme = ok & ~small & (longer >= 3 * shorter)
    duplicate = ok & ~small & ~extreme & (rng.random(rows) < 0.01)
    reject(small, "filter-image", ["image_too_small"])
    reject(extreme, "filter-image", ["aspect_ratio_too_extreme"])
    reject(duplicate, "filter-image", ["duplicate_image_alt"])
    kept = ok & ~small & ~extreme & ~duplicate

    samples = _table(
        Sample,
        {
            **{name: kept_table[name] for name in TextKept.names()},
            Sample.SHA256: images[FetchedImage.SHA256],
            Sample.ORIGINAL_WIDTH: pa.array(width),
            Sample.ORIGINAL_HEIGHT: pa.array(height),
            Sample.WIDTH: pa.array(np.minimum(width, 512)),
            Sample.HEIGHT: pa.array(np.minimum(height, 512)),
            Sample.IMAGE_SOURCE: images[FetchedImage.SOURCE],
        },
        rows,
    ).filter(pa.array(kept))
    shard_rows = 10_000 if samples.num_rows <= 200_000 else 500_000
    shards = Path(layout.folder(Sample))
    shards.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, samples.num_rows, shard_rows)):
        name = f"{index:05d}"
        part = samples.slice(start, shard_rows)
        part = part.set_column(
            part.schema.get_field_index(Sample.SHARD), Sample.SHARD, pa.array([name] * part.num_rows)
        )
        pq.write_table(part, shards / f"{name}.parquet")
    rejected = pa.concat_tables(rejections)
    _write(rejected, Path(layout.folder(Rejection)), "all", 4)
    errors = max(1, rows // 10_000)
    _write(
        _table(
            RecordError,
            {
                RecordError.STAGE: pa.array(["extract"] * errors),
                RecordError.WARC_FILE: _strings("crawl-", np.arange(errors) % 7, ".warc.gz"),
                RecordError.REASON: pa.array(
                    np.array(["truncated_file", "malformed_record", "undecodable_page"])[np.arange(errors) % 3]
                ),
                RecordError.DETAIL: pa.array(["synthetic error"] * errors),
            },
            errors,
        ),
        Path(layout.folder(RecordError)),
        "part",
        1,
    )
    for stage in STAGES:
        layout.mark_done(stage, {"counters": {}, "synthetic": True})
    return {"extracted": rows, "kept": int(kept.sum()), "rejected": rejected.num_rows}


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus (unless it exists with the same size), time ``stats.collect`` on it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="Extracted candidates to generate")
    parser.add_argument("--output", default="build/bench-stats", help="Where the synthetic corpus is written")
    parser.add_argument("--html", default=None, help="Also render the HTML report there")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = Path(args.output) / f"rows-{args.rows}"
    marker = root / "shards" / "_SUCCESS"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        counts = generate_corpus(root, args.rows, args.seed)
        print(f"generated {counts} in {time.perf_counter() - started:.1f} s under {root}")
    else:
        print(f"reusing the corpus under {root}")
    started = time.perf_counter()
    result = stats.collect(str(root), threads=args.threads)
    seconds = time.perf_counter() - started
    text = stats.format_text(result)
    print(text.split("\n\nLANGUAGES")[0])
    extracted = result["funnel"]["extracted"]
    print(
        f"\nstats: {extracted:,} extracted candidates (+ {result['funnel']['rejected']:,} rejections, "
        f"{result['funnel']['kept']:,} kept) in {seconds:.2f} s = {extracted / seconds:,.0f} candidates/s "
        f"(balance check included; DuckDB threads: {args.threads or 'all'})"
    )
    if args.html:
        from pipeline.corpus.report import render_html

        Path(args.html).write_text(render_html(result), encoding="utf-8")
        print(f"report: {args.html}")
    return 0 if result["balance"]["balanced"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
