"""Benchmark of ``filter-text`` on DirectRunner: candidates per second at two sizes, and whether time grows linearly.

Generates candidate corpora with a realistic alt-text shape (Zipf-distributed vocabulary, 1..24 words per alt text,
some alt texts shared across many images, some popular image URLs carrying many alts, some exact duplicates), runs
the stage on each, and prints both rates and the ratio of times (goal: <= 12x for 10x the data).

    python bench/filter_text.py                     # 100k and 1M candidates
    python bench/filter_text.py --sizes 10000 100000  # a quick check

Measured (shared 2-core box, DirectRunner, one worker): 100k in 40.2 s (2,489/s), 1M in 327.8 s (3,051/s),
time ratio 8.16x for 10x the data.
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.keys import candidate_id, sample_key
from pipeline.stages import filter_text
from schemas import Candidate

VOCABULARY = 50_000
ROWS_PER_FILE = 100_000


def generate(size: int, root: Path, seed: int = 7) -> None:
    """Write ``size`` candidates under ``root/candidates`` (deterministic for a seed)."""
    rng = random.Random(seed)
    words = [f"w{rank}" for rank in range(VOCABULARY)]
    # Zipf(1.1)-like word frequencies over the vocabulary.
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(VOCABULARY)))
    shared_alts = [" ".join(rng.choices(words[:200], k=rng.randint(1, 4))) for _ in range(max(10, size // 2000))]
    popular_urls = [f"http://cdn.example/popular/{i}.gif" for i in range(max(5, size // 20_000))]
    (root / "candidates").mkdir(parents=True)
    rows: list[dict] = []
    file_index = 0
    previous: tuple[str, str] | None = None
    for index in range(size):
        draw = rng.random()
        if draw < 0.03 and previous is not None:
            url, alt = previous  # an exact duplicate (same image and alt on another page)
        else:
            url = rng.choice(popular_urls) if draw < 0.08 else f"http://img{index % 97}.example/{index}.jpg"
            if rng.random() < 0.1:
                alt = rng.choice(shared_alts)
            else:
                alt = " ".join(
                    rng.choices(words, cum_weights=cumulative, k=min(24, max(1, int(rng.expovariate(1 / 7)))))
                )
        previous = (url, alt)
        rows.append(
            Candidate.row(
                candidate_id=candidate_id("bench.warc.gz", index, 0),
                key=sample_key(url, alt),
                image_url=url,
                alt_text=alt,
                page_url=f"http://page{index % 1013}.example/{index}.html",
                warc_file="bench.warc.gz",
                warc_record_offset=index,
            )
        )
        if len(rows) == ROWS_PER_FILE or index == size - 1:
            table = pa.Table.from_pylist(rows, schema=Candidate.schema())
            pq.write_table(table, root / "candidates" / f"part-{file_index:05d}.parquet")
            rows, file_index = [], file_index + 1


def run_once(size: int, extra: list[str]) -> tuple[float, dict[str, int]]:
    """Seconds the stage took on ``size`` generated candidates (generation excluded), and its counters."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-filter-text-{size}-"))
    try:
        generate(size, root)
        # ALIGN keeps 100M n-grams of a corpus of billions; scale N with the corpus so the rule bites alike.
        vocab = str(size)
        started = time.perf_counter()
        counters = filter_text.run(["--output", str(root), "--ngram-vocab-size", vocab, *extra])
        return time.perf_counter() - started, counters
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("beam_args", nargs="*", help="extra Beam flags, e.g. --direct_num_workers=2")
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes:
        seconds, counters = run_once(size, args.beam_args)
        results.append((size, seconds))
        print(
            f"filter-text {size:>9,} candidates: {seconds:8.1f} s  {size / seconds:10,.0f} candidates/s  "
            f"kept {counters.get('kept', 0):,}  dropped {counters.get('dropped', 0):,}",
            flush=True,
        )
    (small, small_s), (large, large_s) = results
    ratio = large_s / small_s
    print(f"time ratio {large:,}/{small:,} candidates: {ratio:.2f}x for {large / small:.0f}x the data (goal <= 12x)")
    return 0 if ratio <= 12 * (large / small) / 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
