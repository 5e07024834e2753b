"""Test inputs for the image stages: real photos (skimage.data) as JPEG, and table rows built with the schemas."""

from __future__ import annotations

import hashlib
import io
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.eval_index import phash_of_bytes
from pipeline.keys import candidate_id, sample_key
from schemas import FetchedImage, SampleImage, Table, TextKept

#: skimage.data photos shipped inside the scikit-image wheel (no download).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "page", "retina", "cell")


@cache
def photo(name: str) -> Image.Image:
    """A real photo from skimage.data as an RGB PIL image."""
    import skimage.data

    array = getattr(skimage.data, name)()
    return Image.fromarray(np.asarray(array)).convert("RGB")


def jpeg(image: Image.Image, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    """``image`` (resized to ``size`` when given) encoded as JPEG."""
    if size is not None:
        image = image.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def text_kept_row(image_url: str, alt_text: str, ordinal: int, warc_file: str = "/data/crawl-0.warc.gz") -> dict:
    """A TextKept row as filter-text writes it."""
    return TextKept.row(
        candidate_id=candidate_id(warc_file, 1000, ordinal),
        key=sample_key(image_url, alt_text),
        image_url=image_url,
        alt_text=alt_text,
        page_url=f"https://pages.example/{ordinal // 50}.html",
        page_host="pages.example",
        image_host="img.example",
        url_attribute="src",
        warc_file=warc_file,
        warc_record_offset=1000,
        language="en",
        language_score=0.9,
        unigram_count=len(alt_text.split()),
        duplicate_count=1,
    )


def image_row(image_url: str, data: bytes | None, status: str = "ok", original_size: tuple[int, int] | None = None):
    """A FetchedImage row: sha256, pHash and sizes computed from the real JPEG bytes (ok), or an error status."""
    if status != "ok" or data is None:
        return FetchedImage.row(image_url=image_url, status=status, error="test: not fetched", source="http")
    with Image.open(io.BytesIO(data)) as decoded:
        width, height = decoded.size
    phash = phash_of_bytes(data)
    original_width, original_height = original_size or (width, height)
    return FetchedImage.row(
        image_url=image_url,
        status="ok",
        source="archive",
        http_status=200,
        content_type="image/jpeg",
        original_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash,
        original_format="JPEG",
        original_width=original_width,
        original_height=original_height,
        width=width,
        height=height,
        image=data,
    )


def sample_image_row(image_url: str, alt_text: str, data: bytes, ordinal: int) -> dict[str, Any]:
    """A SampleImage row (what filter-image writes to samples/) for a real JPEG."""
    row = dict(text_kept_row(image_url, alt_text, ordinal))
    image = image_row(image_url, data)
    row.update(
        sha256=image[FetchedImage.SHA256],
        phash=image[FetchedImage.PHASH],
        image_source="archive",
        original_width=image[FetchedImage.ORIGINAL_WIDTH],
        original_height=image[FetchedImage.ORIGINAL_HEIGHT],
        width=image[FetchedImage.WIDTH],
        height=image[FetchedImage.HEIGHT],
        image=data,
    )
    return SampleImage.project(row)


def write_rows(folder: Path, table: type[Table], rows: list[dict], parts: int = 2) -> None:
    """Write rows as ``parts`` Parquet files in ``folder`` (several files, as a Beam sink leaves them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(parts):
        chunk = rows[part::parts]
        pq.write_table(
            pa.Table.from_pylist(chunk, schema=table.schema()), folder / f"part-{part:05d}-of-{parts:05d}.parquet"
        )
