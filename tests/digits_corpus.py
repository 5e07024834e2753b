"""A real, tiny image/caption corpus for trainer tests: scikit-learn's handwritten digits, written as altcorpus shards.

``load_digits()`` holds 1,797 real 8x8 scans of handwritten digits (UCI). Each becomes a ``SampleImage`` row with the
digit upscaled to a small RGB JPEG and a caption such as "a photo of the number seven" (several phrasings, so the text
tower sees variety), and the corpus is written with the pipeline's own shard writer (``pipeline.shards.write_corpus``).
A stratified held-out split becomes an ImageFolder (one folder per class word) for zero-shot evaluation.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pipeline.keys import sample_key
from pipeline.shards import write_corpus
from schemas import SampleImage

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "a photo of the number {}",
    "the handwritten digit {}",
    "a scan of a handwritten {}",
    "number {} written by hand",
    "a picture of the digit {}",
)


@dataclass(frozen=True)
class DigitsSplit:
    """Images (uint8 HxW, 0..255) and labels of one split."""

    images: np.ndarray
    labels: np.ndarray


def digits_splits(held_out_fraction: float = 0.2, seed: int = 0) -> tuple[DigitsSplit, DigitsSplit]:
    """(train, held-out) stratified splits of the digits, pixel values scaled from 0..16 to 0..255."""
    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, test_size=held_out_fraction, random_state=seed, stratify=digits.target
    )
    return DigitsSplit(train_x, train_y), DigitsSplit(test_x, test_y)


def digit_image(pixels: np.ndarray, size: int) -> Image.Image:
    """An 8x8 digit as a ``size`` x ``size`` RGB image, dark ink on white paper like a scan."""
    gray = Image.fromarray(255 - pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR)
    return gray.convert("RGB")


def jpeg_bytes(image: Image.Image) -> bytes:
    """JPEG-encode an image (the format shards hold)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def caption(label: int, index: int) -> str:
    """A caption for a digit, the phrasing chosen by the sample's index."""
    return CAPTION_TEMPLATES[index % len(CAPTION_TEMPLATES)].format(DIGIT_WORDS[label])


def sample_rows(split: DigitsSplit, size: int, prefix: str) -> Iterator[dict]:
    """``SampleImage`` rows for a split, as the filter-image stage would hand them to write-shards."""
    for index, (pixels, label) in enumerate(zip(split.images, split.labels, strict=True)):
        image_bytes = jpeg_bytes(digit_image(pixels, size))
        image_url = f"https://digits.example/{prefix}/{index}.jpg"
        alt_text = caption(int(label), index)
        yield SampleImage.row(
            candidate_id=f"{prefix}-{index}",
            key=sample_key(image_url, alt_text),
            image_url=image_url,
            alt_text=alt_text,
            page_url=f"https://digits.example/{prefix}/",
            language="en",
            sha256=hashlib.sha256(image_bytes).hexdigest(),
            original_width=8,
            original_height=8,
            width=size,
            height=size,
            image=image_bytes,
        )


def write_digits_corpus(split: DigitsSplit, output_dir: Path, size: int, samples_per_shard: int, prefix: str) -> dict:
    """Write a split as an altcorpus corpus (``output_dir/shards/*.tar`` + ``sizes.json``) with the pipeline's writer."""
    return write_corpus(sample_rows(split, size, prefix), str(output_dir), samples_per_shard=samples_per_shard)


def write_image_folder(split: DigitsSplit, output_dir: Path, size: int) -> Path:
    """Write a split as an ImageFolder: ``output_dir/<digit word>/<index>.png``."""
    for index, (pixels, label) in enumerate(zip(split.images, split.labels, strict=True)):
        folder = output_dir / DIGIT_WORDS[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        digit_image(pixels, size).save(folder / f"{index:04d}.png")
    return output_dir
