"""``python -m training.index --embeddings EMB_DIR --output INDEX_DIR``: nearest-neighbour indexes over embeddings.

Reads what ``training.embed`` wrote (one Parquet file per shard) and builds, for each modality (``image``, ``text``),
an inner-product index over the L2-normalised embeddings (inner product = cosine), plus ``rows.parquet``: the index's
row number -> sample key, shard and the image's tar member, offset and size (what the search and the web page need to
show a result and read its image in place).

Kinds (``--kind``): ``flat`` (faiss ``IndexFlatIP``: exact), ``ivf`` (faiss ``IndexIVFFlat``: k-means cells, the
``nprobe`` nearest searched), ``hnsw`` (faiss ``IndexHNSWFlat``), ``usearch`` (usearch's HNSW). ``auto`` (default)
takes ``flat`` below ``--exact-below`` vectors (100,000: a flat scan is then tens of ms and exact), else ``ivf``:
on ``bench/search.py`` (10^5 x 512, training/README.md) IVF built in 11 s against 527 s for faiss HNSW and 910 s for
usearch on this project's 2-core machine, with recall@10 0.96 at ``nprobe`` 32; HNSW answers faster (2 ms against
16 ms) but its build, extrapolated, passes an hour at 10^6 here. faiss also searches IVF under an allow-list of row ids
(``IDSelectorBatch``), which ``--where`` filters need. ``manifest.json`` records kind,
parameters, build seconds and index bytes per modality.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MODALITIES = ("image", "text")
KINDS = ("auto", "flat", "ivf", "hnsw", "usearch")
#: Below this many vectors ``auto`` builds the exact index: a flat scan is fast enough and loses nothing.
EXACT_BELOW = 100_000
#: IVF cells searched per query: recall@10 >= 0.95 on the bench's clustered embeddings at 10^5 and 10^6.
IVF_NPROBE = 32
#: HNSW graph degree and search depths (faiss and usearch alike).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96
INDEX_MANIFEST = "manifest.json"
ROWS_FILE = "rows.parquet"


#: k-means of the IVF cells: points per cell sampled (faiss warns below 39) and iterations. Cheaper than faiss's
#: defaults (256, 25): at 10^6 x 512 those take many minutes on a few cores for no measured recall gain.
IVF_TRAIN_POINTS_PER_CELL = 64
IVF_KMEANS_ITERATIONS = 10


def ivf_cells(count: int) -> int:
    """IVF cell count: ~sqrt(n) (faiss's lower guideline: cheap k-means), at most n / 39 (39 points per cell)."""
    return max(1, min(int(math.sqrt(count)), count // 39))


@dataclass
class VectorIndex:
    """One built index: ``search`` returns (scores, row ids) best first, ``-1`` ids where fewer than k were found."""

    kind: str
    backend: Any
    dim: int
    count: int
    params: dict[str, Any]

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows by inner product for each query row; with ``allowed`` (row ids) only those rows (pre-filter)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, self.count))
        if self.kind == "usearch":
            if allowed is not None:
                raise ValueError("usearch indexes take no allow-list here; build a faiss kind (flat, ivf, hnsw)")
            matches = self.backend.search(queries, k)
            keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
            scores = 1.0 - np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
            return scores, keys
        import faiss

        parameters = None
        if self.kind == "ivf":
            parameters = faiss.SearchParametersIVF(nprobe=self.params["nprobe"])
        elif self.kind == "hnsw":
            parameters = faiss.SearchParametersHNSW(efSearch=self.params["ef_search"])
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if parameters is None:
                parameters = faiss.SearchParameters()
            parameters.sel = selector
        scores, ids = self.backend.search(queries, k, params=parameters)
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of rows ``ids`` (for an exact scan over an allow-list, or "more like this")."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "usearch":
            return np.asarray(self.backend.get(ids.astype(np.uint64)), dtype=np.float32).reshape(len(ids), self.dim)
        if self.kind == "ivf" and self.backend.direct_map.no():
            self.backend.make_direct_map()  # row id -> (cell, offset), built on first use and kept
        return self.backend.reconstruct_batch(ids)

    def save(self, path: Path) -> int:
        """Write the index to ``path``; returns its size in bytes."""
        if self.kind == "usearch":
            self.backend.save(str(path))
        else:
            import faiss

            faiss.write_index(self.backend, str(path))
        return path.stat().st_size


def choose_kind(kind: str, count: int, exact_below: int = EXACT_BELOW) -> str:
    """The kind ``auto`` resolves to for ``count`` vectors (``flat`` when small, else ``ivf``); others pass through."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if count < exact_below else "ivf"


def build_vector_index(vectors: np.ndarray, kind: str = "auto", exact_below: int = EXACT_BELOW) -> VectorIndex:
    """An inner-product index over ``vectors`` (rows L2-normalised by the caller); row i gets id i."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if count == 0:
        raise ValueError("no vectors to index")
    kind = choose_kind(kind, count, exact_below)
    params: dict[str, Any] = {}
    if kind == "usearch":
        from usearch.index import Index

        backend = Index(
            ndim=dim,
            metric="ip",
            dtype="f32",
            connectivity=HNSW_M // 2,  # usearch's connectivity is M of the upper layers; level 0 gets 2x
            expansion_add=HNSW_EF_CONSTRUCTION,
            expansion_search=HNSW_EF_SEARCH,
        )
        backend.add(np.arange(count, dtype=np.uint64), vectors)
        params = {"connectivity": HNSW_M // 2, "expansion_add": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
        return VectorIndex(kind, backend, dim, count, params)
    import faiss

    if kind == "flat":
        backend = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        backend = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        backend.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    else:
        cells = ivf_cells(count)
        quantizer = faiss.IndexFlatIP(dim)
        backend = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
        backend.cp.niter = IVF_KMEANS_ITERATIONS
        # k-means on a seeded sample (repeatable builds); faiss would otherwise sample 256 points per cell itself.
        sample = vectors
        if count > IVF_TRAIN_POINTS_PER_CELL * cells:
            chosen = np.random.default_rng(0).choice(count, IVF_TRAIN_POINTS_PER_CELL * cells, replace=False)
            sample = vectors[np.sort(chosen)]
        backend.train(sample)
        params = {"nlist": cells, "nprobe": min(IVF_NPROBE, cells)}
    backend.add(vectors)
    return VectorIndex(kind, backend, dim, count, params)


def load_vector_index(path: Path, kind: str, dim: int, count: int, params: dict[str, Any]) -> VectorIndex:
    """Read an index written by :meth:`VectorIndex.save` (the manifest says its kind and parameters)."""
    if kind == "usearch":
        from usearch.index import Index

        backend = Index.restore(str(path))
        backend.expansion_search = params["ef_search"]
    else:
        import faiss

        backend = faiss.read_index(str(path))
    return VectorIndex(kind, backend, dim, count, params)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top ``k`` by inner product with numpy: the reference the approximate kinds are measured against."""
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(scores, ids, axis=1), ids


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of each query's true top ``k`` ids that ``found`` (its top ``k``) holds."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (len(truth) * k)


def read_embeddings(embeddings_dir: Path) -> tuple[pa.Table, dict[str, np.ndarray], dict[str, Any]]:
    """Every shard's embeddings in shard order: (rows without vectors, {modality: matrix}, the embedding manifest)."""
    from training.embed import MANIFEST_FILE, read_embedding_file

    manifest = json.loads((embeddings_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    tables, matrices = [], {modality: [] for modality in MODALITIES}
    for shard in manifest["shards"]:
        rows, vectors = read_embedding_file(embeddings_dir / shard["file"])
        tables.append(rows)
        for modality in MODALITIES:
            matrices[modality].append(vectors[modality])
    if not tables:
        raise ValueError(f"{embeddings_dir}: the embedding manifest lists no shard")
    dim = manifest["dim"]
    stacked = {m: np.concatenate(parts) if parts else np.zeros((0, dim), np.float32) for m, parts in matrices.items()}
    return pa.concat_tables(tables), stacked, manifest


def build(embeddings_dir: Path, output_dir: Path, kind: str = "auto", exact_below: int = EXACT_BELOW) -> dict:
    """Build one index per modality from ``embeddings_dir`` into ``output_dir``; returns the index manifest."""
    rows, matrices, embedding_manifest = read_embeddings(embeddings_dir)
    incomplete = [s["file"] for s in embedding_manifest["shards"] if not s.get("complete")]
    if incomplete:
        raise ValueError(f"{embeddings_dir}: shards not embedded yet: {incomplete[:5]} (run training.embed again)")
    output_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, output_dir / ROWS_FILE)
    indexes: dict[str, Any] = {}
    for modality, vectors in matrices.items():
        started = time.perf_counter()
        index = build_vector_index(vectors, kind, exact_below)
        build_seconds = time.perf_counter() - started
        file_name = f"{modality}.{'usearch' if index.kind == 'usearch' else 'faiss'}"
        size = index.save(output_dir / file_name)
        indexes[modality] = {
            "file": file_name,
            "kind": index.kind,
            "params": index.params,
            "count": index.count,
            "dim": index.dim,
            "build_seconds": round(build_seconds, 3),
            "index_bytes": size,  # what the loaded index holds in memory, within a few percent, for these kinds
        }
    manifest = {
        "embeddings": str(embeddings_dir.resolve()),
        "corpus": embedding_manifest["corpus"],
        "model": embedding_manifest["model"],
        "checkpoint": embedding_manifest["checkpoint"],
        "checkpoint_sha256": embedding_manifest["checkpoint_sha256"],
        "normalised": embedding_manifest["normalised"],
        "exact_below": exact_below,
        "indexes": indexes,
    }
    (output_dir / INDEX_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.index", description=__doc__)
    parser.add_argument("--embeddings", required=True, type=Path, help="what training.embed wrote")
    parser.add_argument("--output", required=True, type=Path, help="index folder to write")
    parser.add_argument("--kind", default="auto", choices=KINDS)
    parser.add_argument("--exact-below", type=int, default=EXACT_BELOW, help="auto: flat index below this many rows")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point: build and print the manifest's per-modality summary."""
    cli = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    manifest = build(cli.embeddings, cli.output, cli.kind, cli.exact_below)
    for modality, info in manifest["indexes"].items():
        print(
            f"{modality}: {info['kind']} over {info['count']} x {info['dim']}, built in {info['build_seconds']:.2f} s, "
            f"{info['index_bytes'] / 2**20:.1f} MiB"
        )


if __name__ == "__main__":
    main()
