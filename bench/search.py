"""Benchmark of ``training.index``: build time, memory, single-query latency p50/p99 and recall@10 of each index kind
against a brute-force numpy scan, at 10^5 and 10^6 generated embeddings (dim 512 unless ``--dim``).

Generated embeddings are clustered like real ones (a mixture of 2,000 Gaussian directions, normalised): uniform
random vectors have no neighbourhood structure and make every ANN index look worse than on real data. Queries are
fresh points of the same mixture. Latency is one query at a time (what the search page does); the numpy baseline
is a matrix-vector product plus ``argpartition`` over all rows, in the same run.

    python bench/search.py [--sizes 100000,1000000] [--dim 512] [--kinds flat,ivf,hnsw,usearch] [--queries 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.index import build_vector_index, exact_top_k, recall_at_k

K = 10


def clustered_embeddings(count: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``count`` unit vectors near random centres (noise about as large as the centre: a loose, realistic cluster)."""
    vectors = np.empty((count, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, count, step):
        end = min(count, start + step)
        chosen = centres[rng.integers(0, len(centres), end - start)]
        block = chosen + rng.standard_normal((end - start, dim), dtype=np.float32) * (1.0 / np.sqrt(dim))
        vectors[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    values = np.asarray(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def run(sizes: list[int], dim: int, kinds: list[str], query_count: int) -> None:
    """Print one table per size: kind, build seconds, index MiB, p50/p99 ms, recall@10, and ratios to numpy."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for size in sizes:
        vectors = clustered_embeddings(size, dim, rng, centres)
        queries = clustered_embeddings(query_count, dim, rng, centres)
        print(f"\n{size:,} x {dim} float32 ({vectors.nbytes / 2**20:.0f} MiB), {query_count} single queries, k={K}")
        latencies = []
        truth = np.empty((query_count, K), dtype=np.int64)
        for i, query in enumerate(queries):
            started = time.perf_counter()
            _, ids = exact_top_k(vectors, query[None, :], K)
            latencies.append(time.perf_counter() - started)
            truth[i] = ids[0]
        base_p50, base_p99 = percentiles(latencies)
        print(
            f"{'kind':<8} {'build s':>8} {'MiB':>7} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>9} {'p50 vs numpy':>13}"
        )
        print(f"{'numpy':<8} {0.0:>8.2f} {vectors.nbytes / 2**20:>7.0f} {base_p50:>8.2f} {base_p99:>8.2f} {1.0:>9.3f}")
        for kind in kinds:
            started = time.perf_counter()
            index = build_vector_index(vectors, kind, exact_below=0)
            build_seconds = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as folder:
                size_bytes = index.save(Path(folder) / "index")
            latencies, found = [], np.empty((query_count, K), dtype=np.int64)
            for i, query in enumerate(queries):
                started = time.perf_counter()
                _, ids = index.search(query[None, :], K)
                latencies.append(time.perf_counter() - started)
                found[i] = ids[0]
            p50, p99 = percentiles(latencies)
            recall = recall_at_k(found, truth, K)
            print(
                f"{kind:<8} {build_seconds:>8.2f} {size_bytes / 2**20:>7.0f} {p50:>8.2f} {p99:>8.2f} {recall:>9.3f} "
                f"{base_p50 / p50:>12.1f}x"
            )
            del index


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--kinds", default="flat,ivf,hnsw,usearch")
    parser.add_argument("--queries", type=int, default=200)
    cli = parser.parse_args()
    run([int(s) for s in cli.sizes.split(",")], cli.dim, cli.kinds.split(","), cli.queries)


if __name__ == "__main__":
    main()
