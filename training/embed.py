"""``python -m training.embed --checkpoint PATH [--model NAME] --corpus DIR --output EMB_DIR``: embed a corpus.

Every sample of ``DIR/shards/NNNNN.tar`` gets an image and a text (alt text) embedding, L2-normalised, written as
``EMB_DIR/NNNNN.parquet`` (one file per shard; ``key``, ``shard``, the image's tar ``image_member``, ``image_offset``
and ``image_size``, ``alt_text``, ``image_embedding``, ``text_embedding``): the member offsets are the tar index the search page
reads images through, in place. Resumable per shard: a file is written under a temporary name and renamed, and a
shard whose file exists with as many rows as the shard's Parquet twin, from the same checkpoint (its SHA-256 is in
the file's metadata), is skipped. ``EMB_DIR/manifest.json`` records the model, checkpoint path and hash, the
normalisation, the dimension and each shard's count. Batched, on CUDA when available, with ``--workers`` DataLoader
processes decoding and preprocessing whole shards. The model and its preprocessing come from
``training.evaluate.load_model`` (the run's ``params.txt``), so the project's ALIGN configs and any open_clip
checkpoint work the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from training.evaluate import load_model

MANIFEST_FILE = "manifest.json"
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
#: Parquet key-value metadata of an embedding file: which checkpoint made it (a resume skips only its own files).
CHECKPOINT_META = b"altcorpus.checkpoint_sha256"
#: Columns of an embedding file besides the two vectors.
#: ``alt_text`` rides along so a search over alt texts can drop repeats without a corpus lookup per hit.
ROW_COLUMNS = ("key", "shard", "image_member", "image_offset", "image_size", "alt_text")


def checkpoint_sha256(path: str) -> str:
    """SHA-256 of the checkpoint file (the name of a pretrained tag when ``path`` is no file)."""
    if not Path(path).is_file():
        return hashlib.sha256(path.encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_sample_count(tar_path: Path) -> int:
    """Samples in a shard, from its Parquet twin's footer (no data read)."""
    return pq.ParquetFile(tar_path.with_suffix(".parquet")).metadata.num_rows


def tar_samples(tar_path: Path) -> Iterator[dict[str, Any]]:
    """A shard's samples in tar order: key, image member name, its data offset and size, image bytes, alt text."""
    current: dict[str, Any] = {}
    with tarfile.open(tar_path, mode="r:") as archive:
        for member in archive:
            if not member.isfile():
                continue
            key, _, suffix = member.name.rpartition("/")[2].partition(".")
            if current and current["key"] != key:
                if "image" in current and "alt_text" in current:
                    yield current
                current = {}
            current["key"] = key
            if suffix in IMAGE_SUFFIXES:
                handle = archive.extractfile(member)
                current.update(
                    image=handle.read(),
                    image_member=member.name,
                    image_offset=member.offset_data,
                    image_size=member.size,
                )
            elif suffix == "txt":
                current["alt_text"] = archive.extractfile(member).read().decode("utf-8")
    if "image" in current and "alt_text" in current:
        yield current


class ShardBatches(torch.utils.data.IterableDataset):
    """Batches of preprocessed images and alt texts, one shard at a time per loader worker (shards split by worker)."""

    def __init__(self, tar_paths: list[Path], preprocess: Callable[[Image.Image], torch.Tensor], batch_size: int):
        super().__init__()
        self.tar_paths = tar_paths
        self.preprocess = preprocess
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        paths = self.tar_paths if worker is None else self.tar_paths[worker.id :: worker.num_workers]
        for tar_path in paths:
            batch: list[dict[str, Any]] = []
            for sample in tar_samples(tar_path):
                with Image.open(io.BytesIO(sample.pop("image"))) as image:
                    sample["pixels"] = self.preprocess(image.convert("RGB"))
                batch.append(sample)
                if len(batch) == self.batch_size:
                    yield self._collate(tar_path, batch, last=False)
                    batch = []
            yield self._collate(tar_path, batch, last=True)  # possibly empty: it closes the shard

    @staticmethod
    def _collate(tar_path: Path, batch: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        return {
            "shard": tar_path.stem,
            "last": last,
            "pixels": torch.stack([s["pixels"] for s in batch]) if batch else None,
            **{column: [s[column] for s in batch] for column in ("key", "image_member", "image_offset", "image_size")},
            "alt_text": [s["alt_text"] for s in batch],
        }


def embedding_table(rows: dict[str, list], image: np.ndarray, text: np.ndarray, checkpoint_hash: str) -> pa.Table:
    """One shard's embeddings as an Arrow table (vectors as fixed-size float32 lists), stamped with the checkpoint."""
    dim = image.shape[1] if image.size else text.shape[1]
    vector_type = pa.list_(pa.float32(), dim)

    def vectors(matrix: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(matrix.astype(np.float32).reshape(-1)), dim)

    table = pa.table(
        {
            "key": pa.array(rows["key"], pa.string()),
            "shard": pa.array(rows["shard"], pa.string()),
            "image_member": pa.array(rows["image_member"], pa.string()),
            "image_offset": pa.array(rows["image_offset"], pa.int64()),
            "image_size": pa.array(rows["image_size"], pa.int64()),
            "alt_text": pa.array(rows["alt_text"], pa.string()),
            "image_embedding": vectors(image).cast(vector_type),
            "text_embedding": vectors(text).cast(vector_type),
        }
    )
    return table.replace_schema_metadata({CHECKPOINT_META: checkpoint_hash.encode()})


def read_embedding_file(path: Path) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """An embedding file as (its row columns, {"image": matrix, "text": matrix})."""
    table = pq.read_table(path)
    vectors = {}
    for modality in ("image", "text"):
        column = table.column(f"{modality}_embedding").combine_chunks()
        dim = column.type.list_size
        vectors[modality] = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    return table.select(list(ROW_COLUMNS)), vectors


def is_complete(output_file: Path, expected_rows: int, checkpoint_hash: str) -> bool:
    """Whether a shard's embedding file is finished: as many rows as the shard, made by this checkpoint."""
    if not output_file.is_file():
        return False
    try:
        parquet = pq.ParquetFile(output_file)
    except Exception:  # a truncated or foreign file is simply embedded again
        return False
    metadata = parquet.schema_arrow.metadata or {}
    if not set(ROW_COLUMNS) <= set(parquet.schema_arrow.names):
        return False  # written by an earlier version of this module
    return parquet.metadata.num_rows == expected_rows and metadata.get(CHECKPOINT_META) == checkpoint_hash.encode()


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it: a file under the final name is complete."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


@torch.no_grad()
def embed_corpus(
    checkpoint: str,
    corpus: Path,
    output: Path,
    model_name: str | None = None,
    batch_size: int = 256,
    workers: int = 4,
    device: str | None = None,
    force_image_size: int | None = None,
) -> dict[str, Any]:
    """Embed every shard of ``corpus`` not yet embedded by this checkpoint; write the manifest and return it."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tar_paths = sorted((corpus / "shards").glob("[0-9]*.tar"))
    if not tar_paths:
        raise ValueError(f"{corpus}/shards holds no NNNNN.tar shard")
    output.mkdir(parents=True, exist_ok=True)
    checkpoint_hash = checkpoint_sha256(checkpoint)
    expected = {path.stem: shard_sample_count(path) for path in tar_paths}
    pending = [p for p in tar_paths if not is_complete(output / f"{p.stem}.parquet", expected[p.stem], checkpoint_hash)]
    model, preprocess, tokenizer, model_name = load_model(checkpoint, model_name, device, force_image_size)
    started = time.perf_counter()
    embedded_samples = 0
    if pending:
        loader = torch.utils.data.DataLoader(
            ShardBatches(pending, preprocess, batch_size),
            batch_size=None,  # the dataset yields whole batches, each from one shard
            num_workers=min(workers, len(pending)),
            pin_memory=device.startswith("cuda"),
        )
        open_shards: dict[str, dict[str, list]] = {}
        for batch in loader:
            state = open_shards.setdefault(
                batch["shard"], {"rows": {column: [] for column in ROW_COLUMNS}, "image": [], "text": []}
            )
            if batch["pixels"] is not None:
                images = model.encode_image(batch["pixels"].to(device, non_blocking=True), normalize=True)
                texts = model.encode_text(tokenizer(batch["alt_text"]).to(device), normalize=True)
                state["image"].append(images.float().cpu().numpy())
                state["text"].append(texts.float().cpu().numpy())
                for column in ROW_COLUMNS:
                    state["rows"][column] += (
                        [batch["shard"]] * len(batch["key"]) if column == "shard" else batch[column]
                    )
            if batch["last"]:
                shard = batch["shard"]
                done = open_shards.pop(shard)
                if len(done["rows"]["key"]) != expected[shard]:
                    raise ValueError(
                        f"shard {shard}: {len(done['rows']['key'])} samples in the tar, {expected[shard]} in its twin"
                    )
                # An empty shard still gets a (0 x dim) file; the dimension then comes from one empty text.
                dim = (
                    done["image"][0].shape[1]
                    if done["image"]
                    else model.encode_text(tokenizer([""]).to(device)).shape[-1]
                )
                image = np.concatenate(done["image"]) if done["image"] else np.zeros((0, dim), np.float32)
                text = np.concatenate(done["text"]) if done["text"] else np.zeros((0, dim), np.float32)
                write_atomically(
                    embedding_table(done["rows"], image, text, checkpoint_hash), output / f"{shard}.parquet"
                )
                embedded_samples += len(done["rows"]["key"])
                print(f"embedded shard {shard}: {len(done['rows']['key'])} samples", flush=True)
    seconds = time.perf_counter() - started
    shards = []
    dim = None
    for path in tar_paths:
        file = output / f"{path.stem}.parquet"
        complete = is_complete(file, expected[path.stem], checkpoint_hash)
        if complete and dim is None:
            dim = pq.ParquetFile(file).schema_arrow.field("image_embedding").type.list_size
        shards.append({"shard": path.stem, "file": file.name, "samples": expected[path.stem], "complete": complete})
    manifest = {
        "model": model_name,
        "checkpoint": str(Path(checkpoint).resolve()) if Path(checkpoint).is_file() else checkpoint,
        "checkpoint_sha256": checkpoint_hash,
        "corpus": str(corpus.resolve()),
        "normalised": "l2",  # both modalities: inner product is cosine similarity
        "dim": dim,
        "dtype": "float32",
        "device": device,
        "samples": sum(expected.values()),
        "shards": shards,
        "last_run": {
            "embedded_shards": len(pending),
            "embedded_samples": embedded_samples,
            "seconds": round(seconds, 3),
        },
    }
    (output / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.embed", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="an open_clip checkpoint (epoch_N.pt)")
    parser.add_argument("--model", help="open_clip model name (default: from the run's params.txt)")
    parser.add_argument("--corpus", required=True, type=Path, help="corpus folder holding shards/")
    parser.add_argument("--output", required=True, type=Path, help="embedding folder to write")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (0: in the main one)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--force-image-size", type=int, help="image size the model was trained at, if overridden")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    manifest = embed_corpus(
        cli.checkpoint, cli.corpus, cli.output, cli.model, cli.batch_size, cli.workers, cli.device, cli.force_image_size
    )
    run = manifest["last_run"]
    print(
        f"{manifest['samples']} samples in {len(manifest['shards'])} shards, dim {manifest['dim']}; this run embedded "
        f"{run['embedded_samples']} samples of {run['embedded_shards']} shards in {run['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
