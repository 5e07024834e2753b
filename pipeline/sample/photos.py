"""The packaged photos the sample draws (from ``skimage.data`` and scikit-learn), and how they are cropped and encoded.

Encoding uses fixed parameters and no metadata, so the archived bytes depend only on the pixels and the seed.
"""

from __future__ import annotations

import importlib.util
import io
import random
from pathlib import Path

from PIL import Image

from pipeline.sample.pools import ORDINARY_PHOTOS, PHOTO_FILES


def _package_folder(package: str) -> Path:
    """The folder of a (sub)package found without importing it: importing sklearn.datasets costs seconds."""
    top, *rest = package.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {top} is not installed; the sample's photos ship inside it")
    return Path(next(iter(spec.submodule_search_locations)), *rest)


def load_photo(name: str) -> Image.Image:
    """One packaged photo, decoded: grayscale photos stay ``L``, everything else becomes ``RGB``."""
    package, filename = PHOTO_FILES[name]
    with Image.open(_package_folder(package) / filename) as image:
        image.load()
        return image.copy() if image.mode in ("L", "RGB") else image.convert("RGB")


def photo_of(pool: str) -> str:
    """The first ordinary photo that ``pool``'s alt texts describe."""
    return next(photo for photo, name in ORDINARY_PHOTOS.items() if name == pool)


def encode_image(image: Image.Image, image_format: str = "JPEG", quality: int = 85) -> bytes:
    """Encode with fixed parameters and no metadata, so the bytes depend only on the pixels."""
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def crop_resize(photo: Image.Image, width: int, height: int, rng: random.Random, zoom: float = 1.0) -> Image.Image:
    """A ``width`` x ``height`` view of ``photo``: the largest box of that aspect ratio, scaled by ``zoom``, at a
    seeded position, resized."""
    source_w, source_h = photo.size
    box_w, box_h = source_w, source_w * height / width
    if box_h > source_h:
        box_w, box_h = source_h * width / height, source_h
    box_w, box_h = box_w * zoom, box_h * zoom
    left = rng.uniform(0, source_w - box_w)
    top = rng.uniform(0, source_h - box_h)
    box = (round(left), round(top), round(left + box_w), round(top + box_h))
    return photo.resize((width, height), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
