"""Cross-modal search: ``training.embed`` -> ``training.index`` -> ``training.search`` on a real digits corpus.

The fast tests use an untrained ALIGN-tiny checkpoint (mechanics: keys, tar offsets, resume, filters, image+text
queries, the index kinds against the exact scan on generated embeddings). The slow one trains the tiny config on the
digits for 3 epochs and measures how often an image's own alt text is among its 5 nearest distinct alt texts, against
an untrained model of the same architecture.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.fixtures.digits_corpus import digits_splits, write_digits_corpus
from tests.fixtures.search_index import IMAGE_SIZE, digits_search_corpus, embed_and_index, untrained_checkpoint
from training import embed, index, search, train
from training.index import build_vector_index, exact_top_k, recall_at_k

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def searchable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """120 digits in 3 shards, embedded (2 loader workers) and indexed with an untrained checkpoint."""
    root = tmp_path_factory.mktemp("search")
    checkpoint = untrained_checkpoint(root / "run")
    corpus = digits_search_corpus(root, count=120, samples_per_shard=50)
    index_dir = embed_and_index(checkpoint, corpus, root, workers=2)
    return {"root": root, "checkpoint": checkpoint, "corpus": corpus, "index": index_dir}


def shard_members(tar_path: Path) -> dict[str, bytes]:
    """Every member of a tar, by name."""
    with tarfile.open(tar_path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


def test_embeddings_are_keyed_by_the_corpus_and_point_at_the_image_bytes(searchable: dict[str, Path]) -> None:
    manifest = json.loads((searchable["root"] / "embeddings" / embed.MANIFEST_FILE).read_text())
    assert manifest["model"] == "ALIGN-tiny" and manifest["normalised"] == "l2" and manifest["dim"] == 64
    assert manifest["checkpoint_sha256"] == embed.checkpoint_sha256(str(searchable["checkpoint"]))
    assert [s["shard"] for s in manifest["shards"]] == ["00000", "00001", "00002"]
    assert all(s["complete"] for s in manifest["shards"]) and manifest["samples"] == 120
    for shard in manifest["shards"]:
        rows, vectors = embed.read_embedding_file(searchable["root"] / "embeddings" / shard["file"])
        twin = pq.read_table(searchable["corpus"] / "shards" / f"{shard['shard']}.parquet")
        assert sorted(rows.column("key").to_pylist()) == sorted(twin.column("key").to_pylist())
        for modality in ("image", "text"):
            assert vectors[modality].shape == (shard["samples"], 64)
            np.testing.assert_allclose(np.linalg.norm(vectors[modality], axis=1), 1.0, rtol=1e-5)
        members = shard_members(searchable["corpus"] / "shards" / f"{shard['shard']}.tar")
        tar_bytes = (searchable["corpus"] / "shards" / f"{shard['shard']}.tar").read_bytes()
        for row in rows.to_pylist():
            start = row["image_offset"]
            assert tar_bytes[start : start + row["image_size"]] == members[row["image_member"]]
            assert row["image_member"] == f"{row['key']}.jpg"


def test_embedding_resumes_per_shard(searchable: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "embeddings"
    first = embed.embed_corpus(str(searchable["checkpoint"]), searchable["corpus"], output, workers=0, device="cpu")
    assert first["last_run"]["embedded_shards"] == 3
    again = embed.embed_corpus(str(searchable["checkpoint"]), searchable["corpus"], output, workers=0, device="cpu")
    assert again["last_run"]["embedded_shards"] == 0
    # A truncated file (a crash mid-write without the rename would leave none; a foreign one) and a missing one are
    # embedded again, the complete one is kept as it was.
    kept = (output / "00000.parquet").stat().st_mtime_ns
    (output / "00001.parquet").write_bytes(b"PAR1 not a parquet file")
    (output / "00002.parquet").unlink()
    resumed = embed.embed_corpus(str(searchable["checkpoint"]), searchable["corpus"], output, workers=0, device="cpu")
    assert resumed["last_run"]["embedded_shards"] == 2 and resumed["last_run"]["embedded_samples"] == 70
    assert (output / "00000.parquet").stat().st_mtime_ns == kept
    # Same vectors as the first (multi-worker) run: outputs do not depend on worker count.
    for shard in ("00000", "00001", "00002"):
        _, ours = embed.read_embedding_file(output / f"{shard}.parquet")
        _, theirs = embed.read_embedding_file(searchable["root"] / "embeddings" / f"{shard}.parquet")
        np.testing.assert_allclose(ours["image"], theirs["image"], atol=1e-5)
    # Another checkpoint's files are not "complete" for this one.
    other = untrained_checkpoint(tmp_path / "other_run", seed=1)
    redone = embed.embed_corpus(str(other), searchable["corpus"], output, workers=0, device="cpu")
    assert redone["last_run"]["embedded_shards"] == 3


def test_small_corpora_get_the_exact_index_and_the_manifest_reports_cost(searchable: dict[str, Path]) -> None:
    manifest = json.loads((searchable["index"] / index.INDEX_MANIFEST).read_text())
    for modality in ("image", "text"):
        info = manifest["indexes"][modality]
        assert info["kind"] == "flat" and info["count"] == 120 and info["dim"] == 64
        assert info["build_seconds"] >= 0 and info["index_bytes"] >= 120 * 64 * 4
    assert index.choose_kind("auto", index.EXACT_BELOW - 1) == "flat"
    assert index.choose_kind("auto", index.EXACT_BELOW) == "ivf"


def clustered(count: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors near random centres (real embeddings cluster; uniform noise has no neighbours to find)."""
    points = centres[rng.integers(0, len(centres), count)] + rng.standard_normal((count, dim)) / np.sqrt(dim)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "usearch"])
def test_approximate_indexes_find_what_the_exact_scan_finds(kind: str) -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((200, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors, queries = clustered(20_000, 64, rng, centres), clustered(200, 64, rng, centres)
    _, truth = exact_top_k(vectors, queries, 10)
    built = build_vector_index(vectors, kind, exact_below=0)
    assert built.kind == kind
    scores, found = built.search(queries, 10)
    recall = recall_at_k(found, truth, 10)
    print(f"{kind}: recall@10 against the exact scan = {recall:.3f}")
    assert recall >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    np.testing.assert_allclose(built.vectors(np.array([5, 17])), vectors[[5, 17]], atol=1e-6)


def test_an_allow_list_is_a_pre_filter_on_every_faiss_kind() -> None:
    rng = np.random.default_rng(3)
    vectors = clustered(8_000, 32, rng, rng.standard_normal((50, 32)))
    allowed = np.arange(1, 8_000, 7)
    _, truth = exact_top_k(vectors[allowed], vectors[:20], 10)
    for kind in ("flat", "ivf", "hnsw"):
        _, found = build_vector_index(vectors, kind, exact_below=0).search(vectors[:20], 10, allowed)
        assert set(found[found >= 0].tolist()) <= set(allowed.tolist())
        assert recall_at_k(found, allowed[truth], 10) >= 0.9, kind


def jpeg_of(corpus: Path, key: str) -> bytes:
    """A sample's JPEG straight from its shard."""
    for tar_path in sorted((corpus / "shards").glob("*.tar")):
        members = shard_members(tar_path)
        if f"{key}.jpg" in members:
            return members[f"{key}.jpg"]
    raise KeyError(key)


def test_cli_image_query_returns_that_image_first_with_its_location(
    searchable: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = pq.read_table(searchable["corpus"] / "shards" / "00001.parquet").to_pylist()
    wanted = twin[7]
    image_path = tmp_path / "query.jpg"
    image_path.write_bytes(jpeg_of(searchable["corpus"], wanted["key"]))
    assert search.main(["--index", str(searchable["index"]), "--image", str(image_path), "-k", "5", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert (
        len(results) == 5 and results[0]["key"] == wanted["key"] and results[0]["score"] == pytest.approx(1, abs=1e-4)
    )
    first = results[0]
    assert first["alt_text"] == wanted["alt_text"] and first["page_url"] == wanted["page_url"]
    assert first["shard"] == "00001" and first["image_member"] == f"{wanted['key']}.jpg"
    assert first["tar"] == str(searchable["corpus"] / "shards" / "00001.tar")
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_where_filters_by_corpus_columns_before_the_search(searchable: dict[str, Path]) -> None:
    searcher = search.Searcher(searchable["index"])
    twin = pq.read_table(searchable["corpus"] / "shards" / "00000.parquet").to_pylist()
    query = Image.open(io.BytesIO(jpeg_of(searchable["corpus"], twin[0]["key"])))
    unfiltered = searcher.search(image=query, k=10)
    assert unfiltered[0].key == twin[0]["key"]
    in_shard_two = searcher.search(image=query, k=10, where="shard = '00002' AND language = 'en'")
    assert len(in_shard_two) == 10 and {r.shard for r in in_shard_two} == {"00002"}
    assert searcher.search(image=query, k=10, where="original_width > 8") == []  # every digit is 8 px wide
    few = searcher.search(image=query, k=10, where=f"key IN ('{twin[3]['key']}', '{twin[4]['key']}')")
    assert {r.key for r in few} == {twin[3]["key"], twin[4]["key"]}
    for bad in ("no_such_column = 1", "1=1); DROP TABLE samples; SELECT (1"):
        with pytest.raises(search.QueryError):
            searcher.search(text="seven", where=bad)


def test_image_plus_text_is_the_renormalised_weighted_sum(searchable: dict[str, Path]) -> None:
    searcher = search.Searcher(searchable["index"])
    twin = pq.read_table(searchable["corpus"] / "shards" / "00000.parquet").to_pylist()
    image = Image.open(io.BytesIO(jpeg_of(searchable["corpus"], twin[0]["key"])))
    text = "the handwritten digit seven"
    image_vector, text_vector = searcher.embed_image(image), searcher.embed_text(text)
    mixed = searcher.query_vector(text, image, weight=0.3)
    expected = 0.7 * image_vector + 0.3 * text_vector
    np.testing.assert_allclose(mixed, expected / np.linalg.norm(expected), atol=1e-5)
    assert [r.key for r in searcher.search(text, image, weight=0.0)] == [r.key for r in searcher.search(image=image)]
    assert [r.key for r in searcher.search(text, image, weight=1.0)] == [r.key for r in searcher.search(text=text)]
    with pytest.raises(search.QueryError):
        searcher.query_vector(text, image, weight=1.5)
    with pytest.raises(search.QueryError):
        searcher.query_vector()


def test_text_targets_return_each_alt_text_once(searchable: dict[str, Path]) -> None:
    searcher = search.Searcher(searchable["index"])
    results = searcher.search(text="a photo of the number seven", k=20, target="text")
    texts = [r.alt_text for r in results]
    assert len(texts) == len(set(texts)) == 20  # 120 samples carry 50 distinct alt texts


# --- quality: a trained model against an untrained one -----------------------------------------------------------


def own_alt_text_top5_rate(index_dir: Path) -> float:
    """Share of samples whose own alt text is among the 5 nearest distinct alt texts to their image (image->text)."""
    searcher = search.Searcher(index_dir)
    image_index = searcher.index("image")
    hits = 0
    for row in range(len(searcher.keys)):
        texts = [
            searcher.alt_texts[hit] for hit, _ in searcher.nearest(image_index.vectors(np.array([row]))[0], 5, "text")
        ]
        assert len(texts) == len(set(texts)) == 5
        hits += searcher.alt_texts[row] in texts
    return hits / len(searcher.keys)


@pytest.mark.slow
def test_a_trained_model_finds_each_images_own_alt_text(tmp_path: Path) -> None:
    train_split, _ = digits_splits()
    corpus = tmp_path / "corpus"
    write_digits_corpus(train_split, corpus, IMAGE_SIZE, samples_per_shard=300, prefix="train")
    logs = tmp_path / "logs"
    argv = [
        "--corpus", str(corpus), "--config", str(PROJECT_ROOT / "training" / "configs" / "tiny-cpu.yaml"),
        "--logs", str(logs), "--name", "digits", "--set", f"force_image_size={IMAGE_SIZE}", "--set", "batch_size=64",
        "--set", "epochs=3", "--set", "warmup=20", "--set", "cpu_threads=1",
    ]  # fmt: skip
    assert train.run(argv) == 0
    trained = embed_and_index(logs / "digits" / "checkpoints" / "epoch_3.pt", corpus, tmp_path / "trained")
    untrained = embed_and_index(untrained_checkpoint(tmp_path / "untrained_run"), corpus, tmp_path / "untrained")
    trained_rate, untrained_rate = own_alt_text_top5_rate(trained), own_alt_text_top5_rate(untrained)
    print(f"own alt text in the top 5 of 50 distinct texts: trained {trained_rate:.3f}, untrained {untrained_rate:.3f}")
    # Chance is 5/50 = 10%. Measured: trained 0.979, untrained 0.074 (training/README.md).
    assert trained_rate >= 0.5
    assert untrained_rate < 0.3
