"""``python -m training.search --index DIR (--text "..." | --image PATH | --image PATH --text "..." --weight 0.5)``.

Cross-modal search over an index built by ``training.index``: a text, an image, or both (ALIGN's image+text query:
the weighted sum of the two normalised embeddings, renormalised; ``--weight`` is the text's share, 0 = image only,
1 = text only). ``--target image`` (default) searches images, ``--target text`` alt texts (identical alt texts, which
web corpora repeat, are returned once). Each result has the sample key, the score (cosine), alt text, page URL, image
URL and the image's location: shard tar, member name, data offset and size (read in place, never copied).

``--where "language = 'en' AND original_width >= 400"`` filters by any column of the corpus's ``shards/*.parquet``
(DuckDB SQL). It is a **pre-filter**: the matching keys become an allow-list of index rows before the search; an
allow-list of at most ``EXACT_SUBSET`` rows (or one the approximate index cannot fill k from) is scanned exactly, a
larger one is searched by faiss with an ``IDSelectorBatch`` (only allowed rows count), so no over-fetch is needed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas import Sample
from training.index import INDEX_MANIFEST, MODALITIES, ROWS_FILE, VectorIndex, exact_top_k, load_vector_index

#: An allow-list this small is scanned exactly (a few ms), whatever the index kind.
EXACT_SUBSET = 50_000
#: Corpus columns every result carries.
RESULT_COLUMNS = (Sample.ALT_TEXT, Sample.PAGE_URL, Sample.IMAGE_URL, Sample.LANGUAGE, Sample.WIDTH, Sample.HEIGHT)


class QueryError(ValueError):
    """A query the user can fix: no text nor image, a weight outside 0..1, a ``--where`` that is not one condition."""


@dataclass(frozen=True)
class Result:
    """One hit: the sample, its score, what the corpus says about it, and where its image bytes are."""

    rank: int
    key: str
    score: float
    alt_text: str
    page_url: str
    image_url: str
    language: str | None
    width: int | None
    height: int | None
    shard: str
    image_member: str
    image_offset: int
    image_size: int
    tar: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dict(self.__dict__)


def combine(image: np.ndarray | None, text: np.ndarray | None, weight: float) -> np.ndarray:
    """ALIGN's image+text query: ``(1 - weight) * image + weight * text`` of normalised vectors, renormalised."""
    if image is None and text is None:
        raise QueryError("give a text, an image, or both")
    if not 0.0 <= weight <= 1.0:
        raise QueryError(f"--weight is the text's share, between 0 and 1; got {weight}")
    if image is None:
        vector = text
    elif text is None:
        vector = image
    else:
        vector = (1.0 - weight) * image + weight * text
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise QueryError("the image and text embeddings cancel out at this weight")
    return (vector / norm).astype(np.float32)


class Searcher:
    """An index folder opened for queries: its indexes, its rows, the corpus metadata (DuckDB) and, lazily, the model.

    ``sandboxed`` (the web server): the corpus metadata is loaded into DuckDB's memory once and DuckDB's file access is
    then switched off and locked, so a ``where`` typed into the page cannot read or write any file.
    """

    def __init__(self, index_dir: Path, corpus: Path | None = None, device: str | None = None, sandboxed: bool = False):
        self.index_dir = Path(index_dir)
        self.manifest = json.loads((self.index_dir / INDEX_MANIFEST).read_text(encoding="utf-8"))
        self.corpus = Path(corpus or self.manifest["corpus"])
        self.device = device
        self.rows = pq.read_table(self.index_dir / ROWS_FILE)
        self.keys = self.rows.column("key").to_pylist()
        self.alt_texts = self.rows.column("alt_text").to_pylist()
        self.row_of_key = {key: row for row, key in enumerate(self.keys)}
        self.indexes: dict[str, VectorIndex] = {}
        self._model: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()  # one query at a time through the model and DuckDB's connection
        self.db = duckdb.connect()
        shards = str(self.corpus / "shards" / "*.parquet")
        row_ids = self.rows.select(["key"]).append_column("row_id", pa.array(np.arange(len(self.keys), dtype=np.int64)))
        self.db.register("index_rows_arrow", row_ids)
        if sandboxed:
            self.db.execute(f"CREATE TABLE samples AS SELECT * FROM read_parquet({_literal(shards)})")
            self.db.execute("CREATE TABLE index_rows AS SELECT * FROM index_rows_arrow")
            self.db.unregister("index_rows_arrow")
            self.db.execute("SET enable_external_access = false")
            self.db.execute("SET lock_configuration = true")
        else:
            self.db.execute(f"CREATE VIEW samples AS SELECT * FROM read_parquet({_literal(shards)})")
            self.db.execute("CREATE VIEW index_rows AS SELECT * FROM index_rows_arrow")

    def index(self, modality: str) -> VectorIndex:
        """The index of one modality, read on first use."""
        if modality not in self.indexes:
            info = self.manifest["indexes"][modality]
            self.indexes[modality] = load_vector_index(
                self.index_dir / info["file"], info["kind"], info["dim"], info["count"], info["params"]
            )
        return self.indexes[modality]

    def _loaded_model(self) -> tuple[Any, Any, Any]:
        if self._model is None:
            import torch

            from training.evaluate import load_model

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.device = device
            model, preprocess, tokenizer, _ = load_model(self.manifest["checkpoint"], self.manifest["model"], device)
            self._model = (model, preprocess, tokenizer)
        return self._model

    def embed_text(self, text: str) -> np.ndarray:
        """The normalised embedding of a text, by the model the index was built with."""
        import torch

        model, _, tokenizer = self._loaded_model()
        with torch.no_grad():
            return model.encode_text(tokenizer([text]).to(self.device), normalize=True)[0].float().cpu().numpy()

    def embed_image(self, image: Image.Image) -> np.ndarray:
        """The normalised embedding of an image, with the model's own preprocessing."""
        import torch

        model, preprocess, _ = self._loaded_model()
        with torch.no_grad():
            pixels = preprocess(image.convert("RGB")).unsqueeze(0).to(self.device)
            return model.encode_image(pixels, normalize=True)[0].float().cpu().numpy()

    def query_vector(
        self, text: str | None = None, image: Image.Image | None = None, weight: float = 0.5
    ) -> np.ndarray:
        """The query embedding for a text, an image, or both (see :func:`combine`)."""
        with self._lock:
            text_vector = self.embed_text(text) if text else None
            image_vector = self.embed_image(image) if image is not None else None
        return combine(image_vector, text_vector, weight)

    def allowed_rows(self, where: str) -> np.ndarray:
        """Index rows whose sample matches ``where`` (a DuckDB condition over the corpus's Parquet columns)."""
        sql = f"SELECT row_id FROM index_rows WHERE key IN (SELECT {Sample.KEY} FROM samples WHERE ({where}))"
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as error:
            raise QueryError(f"--where {where!r}: {str(error).splitlines()[0]}") from error
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise QueryError(f"--where must be one condition, not statements: {where!r}")
        try:
            with self._lock:
                ids = self.db.execute(sql).fetchnumpy()["row_id"]
        except duckdb.Error as error:
            raise QueryError(f"--where {where!r}: {str(error).splitlines()[0]}") from error
        return np.sort(np.asarray(ids, dtype=np.int64))

    def nearest(
        self, vector: np.ndarray, k: int, target: str = "image", where: str | None = None
    ) -> list[tuple[int, float]]:
        """(row, score) of the best ``k`` rows of the ``target`` index, restricted to ``where`` when given."""
        if target not in MODALITIES:
            raise QueryError(f"--target must be one of {MODALITIES}")
        index = self.index(target)
        allowed = self.allowed_rows(where) if where else None
        if allowed is not None and len(allowed) == 0:
            return []
        fetch = k
        while True:
            hits = self._search(index, vector, fetch, allowed)
            if target == "image":
                return hits[:k]
            # Alt texts repeat: keep the first row of each distinct text, fetching more until k distinct are found.
            seen: set[str] = set()
            distinct = []
            texts = [self.alt_texts[row] for row, _ in hits]
            for (row, score), text in zip(hits, texts, strict=True):
                if text not in seen:
                    seen.add(text)
                    distinct.append((row, score))
            limit = index.count if allowed is None else len(allowed)
            if len(distinct) >= k or fetch >= limit:
                return distinct[:k]
            fetch = min(limit, fetch * 4)

    def _search(
        self, index: VectorIndex, vector: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        query = vector.reshape(1, -1)
        if allowed is not None and (len(allowed) <= EXACT_SUBSET or index.kind == "usearch"):
            return self._exact_subset(index, query, k, allowed)
        scores, ids = index.search(query, k, allowed)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if allowed is not None and len(hits) < min(k, len(allowed)):
            return self._exact_subset(index, query, k, allowed)  # the probed cells held too few allowed rows
        return hits

    @staticmethod
    def _exact_subset(index: VectorIndex, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        vectors = index.vectors(allowed)
        scores, positions = exact_top_k(vectors, query, k)
        return [(int(allowed[p]), float(s)) for p, s in zip(positions[0], scores[0], strict=True)]

    def _metadata(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        columns = ", ".join(str(c) for c in RESULT_COLUMNS)
        with self._lock:
            cursor = self.db.execute(
                f"SELECT {Sample.KEY}, {columns} FROM samples WHERE {Sample.KEY} IN (SELECT UNNEST(?))", [keys]
            )
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        return {row[str(Sample.KEY)]: row for row in rows}

    def results(self, hits: list[tuple[int, float]]) -> list[Result]:
        """Hits with their corpus metadata and image locations, in rank order."""
        keys = [self.keys[row] for row, _ in hits]
        metadata = self._metadata(keys)
        results = []
        for rank, ((row, score), key) in enumerate(zip(hits, keys, strict=True), start=1):
            meta = metadata.get(key, {})
            shard = self.rows.column("shard")[row].as_py()
            results.append(
                Result(
                    rank=rank,
                    key=key,
                    score=round(score, 6),
                    alt_text=meta.get(str(Sample.ALT_TEXT)) or "",
                    page_url=meta.get(str(Sample.PAGE_URL)) or "",
                    image_url=meta.get(str(Sample.IMAGE_URL)) or "",
                    language=meta.get(str(Sample.LANGUAGE)),
                    width=meta.get(str(Sample.WIDTH)),
                    height=meta.get(str(Sample.HEIGHT)),
                    shard=shard,
                    image_member=self.rows.column("image_member")[row].as_py(),
                    image_offset=self.rows.column("image_offset")[row].as_py(),
                    image_size=self.rows.column("image_size")[row].as_py(),
                    tar=str(self.corpus / "shards" / f"{shard}.tar"),
                )
            )
        return results

    def search(
        self,
        text: str | None = None,
        image: Image.Image | None = None,
        weight: float = 0.5,
        k: int = 10,
        target: str = "image",
        where: str | None = None,
    ) -> list[Result]:
        """Embed the query and return the ``k`` best results (see the module docstring)."""
        return self.results(self.nearest(self.query_vector(text, image, weight), k, target, where))

    def search_like(self, key: str, k: int = 10, where: str | None = None) -> list[Result]:
        """Images nearest to an indexed sample's own image ("more like this"): its stored embedding is the query."""
        if key not in self.row_of_key:
            raise QueryError(f"no sample {key!r} in the index")
        vector = self.index("image").vectors(np.array([self.row_of_key[key]], dtype=np.int64))[0]
        return self.results(self.nearest(vector, k, "image", where))

    def image_bytes(self, key: str) -> bytes:
        """A sample's image, read from its shard tar at the member's offset (no copy of the corpus exists)."""
        row = self.row_of_key.get(key)
        if row is None:
            raise KeyError(key)
        shard = self.rows.column("shard")[row].as_py()
        with open(self.corpus / "shards" / f"{shard}.tar", "rb") as handle:
            handle.seek(self.rows.column("image_offset")[row].as_py())
            return handle.read(self.rows.column("image_size")[row].as_py())


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.search", description=__doc__)
    parser.add_argument("--index", required=True, type=Path, help="what training.index wrote")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: the one the index was built from)")
    parser.add_argument("--text", help="query text")
    parser.add_argument("--image", type=Path, help="query image file")
    parser.add_argument("--weight", type=float, default=0.5, help="the text's share of an image+text query (0..1)")
    parser.add_argument("--target", default="image", choices=MODALITIES, help="search images or alt texts")
    parser.add_argument("--where", help="DuckDB condition over the corpus's shard Parquet columns (pre-filter)")
    parser.add_argument("-k", "--top", type=int, default=10, help="number of results")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point: print the results; exit 2 on a query the user can fix."""
    cli = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    searcher = Searcher(cli.index, cli.corpus, cli.device)
    try:
        image = Image.open(io.BytesIO(cli.image.read_bytes())) if cli.image else None
        results = searcher.search(cli.text, image, cli.weight, cli.top, cli.target, cli.where)
    except QueryError as error:
        print(f"python -m training.search: error: {error}", file=sys.stderr)
        return 2
    for result in results:
        if cli.json:
            print(json.dumps(result.as_dict(), ensure_ascii=False))
        else:
            print(
                f"{result.rank:>3} {result.score:.4f} {result.key} {result.tar}:{result.image_member}  {result.alt_text}"
            )
            print(f"    {result.page_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
