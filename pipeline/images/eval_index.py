"""``eval-index``: perceptual hashes of evaluation images, and the banded lookup ``filter-image`` checks them with.

ALIGN removed near-duplicates of its downstream test images (ImageNet val, Flickr30K, MSCOCO test) from the corpus.
``python -m pipeline eval-index --input PATH [--input PATH ...] --output index.parquet`` hashes every image of
folders (recursively), WebDataset tar shards (plain or gzip) and Parquet files with an image-bytes column, with
the same decoding and pHash as ``fetch`` (``imageproc.process_image`` with fetch's default settings: EXIF rotation,
transparency on white); an unreadable image is recorded with fetch's status (``decode_error``, ``not_an_image``,
``decompression_bomb``), never a crash.

Lookup (``HashIndex``): multi-index hashing (Norouzi et al., 2012). The 64 bits are split into ``m`` bands
(``m = min(d + 1, 4)``: 16-bit bands); two hashes within Hamming distance ``d`` differ by at most ``d // m`` bits in
at least one band (pigeonhole; with ``m = d + 1`` that is an exact match). Each band keeps a sorted array of
(band value, hash position); a query probes, per band, every band value within ``d // m`` bits of its own (17 probes
for one bit, 137 for two) by one vectorised binary search, and verifies the true distance of those candidates only.
Plain ``d + 1`` exact bands would be 7 bits wide at ``d = 8`` and return ~1/128 of the index per band; 16-bit bands
return ~1/65536 per probe, so a few hundred thousand eval hashes cost about a thousand verifications per image.

Default distance (``ImageFilterConfig.eval_max_distance = 8``), measured in tests/pipeline/images/test_eval_index.py on real photos
with fetch's hash: a copy resized to half size, re-encoded as JPEG at quality 60 and cropped by 1% per side lands
within 8 bits of its original (fetch's box pre-reduction before pHash's 32 x 32 shrink moves some copies by up to 8;
plain imagehash kept them within 4); different photos of similar scenes (LFW faces: centred frontal faces) are at
least 10 apart and unrelated photos 13 or more. Flips and rotations (distance ~32) are out of pHash's reach by design.
A stereo pair (skimage's motorcycle left/right, the camera moved a few centimetres) is within 4 bits: pHash treats it
as the same picture, and it leaks the same scene, so it is removed.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.core.config import FetchConfig
from pipeline.core.layout import list_matching, write_bytes_atomically
from schemas.tables import EvalImageHash

log = logging.getLogger("altcorpus")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
#: Image-bytes column names tried in order when ``--image-column`` is not given (ours, WebDataset-style, HF-style).
IMAGE_COLUMN_GUESSES = ("image", "jpg", "png", "webp", "img", "image_bytes", "bytes")
KEY_COLUMN_GUESSES = ("key", "__key__", "id", "image_id", "file_name", "filename", "path")
HASH_BITS = 64


def phash_uint64(image: Any) -> int:
    """The 64-bit pHash of a decoded PIL image as an unsigned int (``fetch``'s ``imageproc.phash_uint64`` on RGB)."""
    from pipeline.images import process as imageproc

    return imageproc.phash_uint64(image if image.mode == "RGB" else image.convert("RGB"))


def phash_of_bytes(data: bytes) -> int:
    """The pHash ``fetch`` stores for these image bytes with its default settings (same decode, EXIF rotation,
    transparency on white, draft scale); raises ``ImageError`` (reason decode_error, not_an_image, ...)."""
    from pipeline.images import process as imageproc

    fetch = FetchConfig()
    processed = imageproc.process_image(
        data, fetch.max_image_pixels, fetch.resize_mode, fetch.image_size, fetch.jpeg_quality
    )
    return processed.phash


def hamming(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


#: Bands are kept this wide (16 bits) so each probe returns ~1/65536 of the index.
MAX_BANDS = 4


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of the ``min(max_distance + 1, MAX_BANDS)`` bands covering all 64 bits."""
    count = min(max(max_distance, 0) + 1, MAX_BANDS)
    widths = [HASH_BITS // count + (1 if i < HASH_BITS % count else 0) for i in range(count)]
    bands, shift = [], 0
    for width in widths:
        bands.append((shift, width))
        shift += width
    return bands


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every XOR mask of at most ``radius`` set bits within ``width`` bits (the probes around a band value)."""
    masks = [0]
    for bits in range(1, radius + 1):
        masks += [sum(1 << bit for bit in chosen) for chosen in itertools.combinations(range(width), bits)]
    return np.asarray(masks, dtype=np.uint64)


class HashIndex:
    """Banded (multi-index) lookup of 64-bit hashes within a Hamming distance; picklable (a Beam side input)."""

    def __init__(self, hashes: Sequence[int] | np.ndarray, max_distance: int, labels: Sequence[str] = ()) -> None:
        self.max_distance = int(max_distance)
        self.hashes = np.asarray(hashes, dtype=np.uint64)
        self.labels = list(labels)
        self.bands = _bands(self.max_distance)
        # Pigeonhole: within distance d overall means within d // m in at least one of the m bands.
        self.band_radius = max(self.max_distance, 0) // len(self.bands)
        self.band_masks = [_flip_masks(width, self.band_radius) for _, width in self.bands]
        # Per band: band values sorted, with the hash positions in the same order (searchsorted finds the run).
        self.band_values: list[np.ndarray] = []
        self.band_positions: list[np.ndarray] = []
        for shift, width in self.bands:
            values = (self.hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            order = np.argsort(values, kind="stable")
            self.band_values.append(values[order])
            self.band_positions.append(order.astype(np.int64))

    def __len__(self) -> int:
        return int(self.hashes.size)

    def candidates(self, query: int) -> np.ndarray:
        """Positions of indexed hashes within ``band_radius`` of ``query`` in some band (a superset of the matches)."""
        found = []
        for (shift, width), values, positions, masks in zip(
            self.bands, self.band_values, self.band_positions, self.band_masks, strict=True
        ):
            probes = np.uint64((int(query) >> shift) & ((1 << width) - 1)) ^ masks
            starts = np.searchsorted(values, probes, side="left")
            stops = np.searchsorted(values, probes, side="right")
            hits = np.nonzero(stops > starts)[0]
            found.extend(positions[starts[hit] : stops[hit]] for hit in hits)
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(found))

    def nearest(self, query: int) -> tuple[int, int] | None:
        """``(distance, position)`` of the closest indexed hash within ``max_distance`` (lowest position on ties)."""
        if query is None or self.hashes.size == 0:
            return None
        positions = self.candidates(query)
        if positions.size == 0:
            return None
        distances = np.bitwise_count(self.hashes[positions] ^ np.uint64(int(query)))
        best = int(np.argmin(distances))  # positions are sorted, so argmin's first minimum is the lowest position
        if int(distances[best]) > self.max_distance:
            return None
        return int(distances[best]), int(positions[best])

    def label(self, position: int) -> str:
        """The ``source:item`` of an indexed hash, for rejection details."""
        return self.labels[position] if position < len(self.labels) else str(position)


@dataclass(frozen=True)
class _Item:
    source: str
    item: str
    data: bytes


def _hash_item(entry: _Item) -> dict[str, object]:
    from pipeline.images.process import ImageError

    try:
        value = phash_of_bytes(entry.data)
    except ImageError as error:  # an unreadable image is recorded with fetch's status, never fatal
        return EvalImageHash.row(source=entry.source, item=entry.item, status=error.reason, error=error.detail[:500])
    except Exception as error:  # anything else a broken file can raise: still recorded
        message = f"{type(error).__name__}: {error}"[:500]
        return EvalImageHash.row(source=entry.source, item=entry.item, status="decode_error", error=message)
    return EvalImageHash.row(phash=value, source=entry.source, item=entry.item, status="ok")


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def _folder_items(folder: str) -> Iterator[_Item]:
    for directory, subdirectories, files in os.walk(folder):
        subdirectories.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    yield _Item(folder, os.path.relpath(path, folder), handle.read())


def _tar_items(path: str) -> Iterator[_Item]:
    # "r|*" streams plain or compressed tars without seeking (gs:// handles included).
    with (
        FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle,
        tarfile.open(fileobj=handle, mode="r|*") as archive,
    ):
        for member in archive:
            if member.isfile() and member.name.lower().endswith(IMAGE_EXTENSIONS):
                extracted = archive.extractfile(member)
                yield _Item(path, member.name, extracted.read() if extracted else b"")


def _image_bytes(value: object) -> bytes | None:
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None


def _parquet_items(path: str, image_column: str | None) -> Iterator[_Item]:
    parquet = pq.ParquetFile(io.BytesIO(_read(path)))
    names = parquet.schema_arrow.names
    column = image_column or next((name for name in IMAGE_COLUMN_GUESSES if name in names), None)
    if column is None or column not in names:
        raise ValueError(f"{path}: no image column (tried {image_column or IMAGE_COLUMN_GUESSES}); use --image-column")
    key_column = next((name for name in KEY_COLUMN_GUESSES if name in names), None)
    row_number = 0
    for batch in parquet.iter_batches(columns=[column] + ([key_column] if key_column else []), batch_size=256):
        for row in batch.to_pylist():
            item = str(row[key_column]) if key_column and row[key_column] is not None else str(row_number)
            yield _Item(path, item, _image_bytes(row[column]) or b"")
            row_number += 1


def iter_source_items(source: str, image_column: str | None = None) -> Iterator[_Item]:
    """Every image of one input: a folder, a tar (``.tar``, ``.tar.gz``, ``.tgz``), a Parquet file or a glob of them."""
    if os.path.isdir(source):
        yield from _folder_items(source)
        return
    paths = list_matching(source) if any(ch in source for ch in "*?[") else [source]
    if not paths:
        raise FileNotFoundError(f"eval-index input matches nothing: {source}")
    for path in paths:
        lower = path.lower()
        if lower.endswith((".tar", ".tar.gz", ".tgz")):
            yield from _tar_items(path)
        elif lower.endswith(".parquet"):
            yield from _parquet_items(path, image_column)
        elif lower.endswith(IMAGE_EXTENSIONS):
            yield _Item(path, os.path.basename(path), _read(path))
        else:
            raise ValueError(f"eval-index cannot read {path}: give a folder, .tar, .parquet or image file")


def hash_items(items: Iterable[_Item], workers: int = 1) -> list[dict[str, object]]:
    """EvalImageHash rows for the items, hashed in ``workers`` processes (order kept)."""
    if workers <= 1:
        return [_hash_item(item) for item in items]
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return list(pool.imap(_hash_item, items, chunksize=16))


def build_eval_index(sources: list[str], output: str, image_column: str | None = None, workers: int = 1) -> int:
    """Hash every image of ``sources`` into the Parquet index ``output``; returns how many images were hashed."""
    rows: list[dict[str, object]] = []
    for source in sources:
        rows.extend(hash_items(iter_source_items(source, image_column), workers))
    rows.sort(key=lambda row: (row[EvalImageHash.SOURCE], row[EvalImageHash.ITEM]))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=EvalImageHash.schema()), buffer)
    write_bytes_atomically(output, buffer.getvalue())
    hashed = sum(1 for row in rows if row[EvalImageHash.STATUS] == "ok")
    failed = len(rows) - hashed
    log.info("eval-index: %d images hashed, %d unreadable (recorded), -> %s", hashed, failed, output)
    return hashed


def main(argv: Sequence[str]) -> int:
    """``python -m pipeline eval-index --input PATH [--input PATH ...] --output index.parquet``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline eval-index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", required=True, help="folder, WebDataset tar, Parquet file or glob")
    parser.add_argument("--output", required=True, help="the Parquet index to write")
    parser.add_argument("--image-column", default=None, help="image-bytes column of Parquet inputs (default: guessed)")
    parser.add_argument("--workers", type=int, default=1, help="processes hashing images in parallel")
    args = parser.parse_args(list(argv))
    hashed = build_eval_index(args.input, args.output, args.image_column, args.workers)
    print(f"{hashed} images hashed into {args.output}")
    return 0
