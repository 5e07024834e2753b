"""Image processing on real photos: sniffing, pixel limit, hashes, img2dataset's resize modes, determinism."""

from __future__ import annotations

import hashlib
import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from pipeline.images.process import RESIZE_MODES, ImageError, process_image
from tests.fixtures.http_server import SVG_DRAWING, encode, photo, png_bomb

LIMIT = 89_478_485


@pytest.fixture(scope="module")
def coffee_jpeg() -> bytes:
    """scikit-image's coffee photo (400 x 600) upscaled to 800 x 1200, so every mode must downscale."""
    return encode(photo("coffee"), "JPEG", size=(1200, 800))


def decoded(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    return image


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep_ratio", (768, 512)),  # shorter side -> 512
        ("center_crop", (512, 512)),
        ("border", (512, 512)),
        ("keep_ratio_largest", (512, 341)),  # longer side -> 512, 800 * 512 / 1200 = 341.3
        ("no", (1200, 800)),
    ],
)
def test_resize_modes_follow_img2dataset(coffee_jpeg: bytes, mode: str, expected: tuple[int, int]) -> None:
    result = process_image(coffee_jpeg, LIMIT, mode, 512)
    assert (result.width, result.height) == expected
    assert decoded(result.jpeg).size == expected
    assert (result.original_width, result.original_height) == (1200, 800)
    assert result.original_format == "JPEG"
    assert result.original_bytes == len(coffee_jpeg)
    assert result.sha256 == hashlib.sha256(coffee_jpeg).hexdigest()


def test_border_pads_with_white_and_center_crop_keeps_the_middle(coffee_jpeg: bytes) -> None:
    border = np.asarray(decoded(process_image(coffee_jpeg, LIMIT, "border", 512).jpeg))
    # 1200 x 800 -> 512 x 341, padded top and bottom: the first rows are white.
    assert border[:50].min() > 240
    assert border[200:300].std() > 10  # the photo itself is in the middle
    cropped = np.asarray(decoded(process_image(coffee_jpeg, LIMIT, "center_crop", 512).jpeg))
    assert cropped.shape == (512, 512, 3)
    assert cropped.std() > 10


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_small_images_are_never_upscaled(mode: str) -> None:
    small = encode(photo("chelsea"), "PNG", size=(300, 200))
    result = process_image(small, LIMIT, mode, 512)
    assert (result.width, result.height) == (300, 200)  # as img2dataset with resize_only_if_bigger
    assert result.original_format == "PNG"


def test_phash_is_unsigned_64_bit_and_matches_imagehash(coffee_jpeg: bytes) -> None:
    result = process_image(coffee_jpeg, LIMIT, "keep_ratio", 512)
    assert 0 <= result.phash < 2**64
    full_decode = imagehash.phash(Image.open(io.BytesIO(coffee_jpeg)).convert("RGB"))
    # The JPEG is decoded at a reduced DCT scale; the perceptual hash barely moves (eval matching allows 6 bits).
    assert bin(int(str(full_decode), 16) ^ result.phash).count("1") <= 4
    other = process_image(encode(photo("astronaut"), "JPEG"), LIMIT)
    assert bin(other.phash ^ result.phash).count("1") > 10  # different photos, different hashes


def test_output_is_deterministic(coffee_jpeg: bytes) -> None:
    first = process_image(coffee_jpeg, LIMIT, "keep_ratio", 512)
    second = process_image(coffee_jpeg, LIMIT, "keep_ratio", 512)
    assert first == second


def test_transparency_is_flattened_on_white() -> None:
    rgba = np.zeros((300, 300, 4), dtype=np.uint8)  # fully transparent black
    rgba[100:200, 100:200] = (200, 30, 30, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    pixels = np.asarray(decoded(process_image(buffer.getvalue(), LIMIT).jpeg))
    assert pixels[10, 10].min() > 245  # white, not black
    assert pixels[150, 150, 0] > 150 and pixels[150, 150, 1] < 80


def test_exif_rotation_is_applied_and_recorded() -> None:
    image = Image.fromarray(photo("astronaut")).resize((600, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    result = process_image(buffer.getvalue(), LIMIT, "keep_ratio", 256)
    assert (result.original_width, result.original_height) == (400, 600)
    assert (result.width, result.height) == (256, 384)


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    bomb = png_bomb()
    assert len(bomb) < 100_000  # a tiny file of 144 million pixels
    with pytest.raises(ImageError) as caught:
        process_image(bomb, LIMIT)
    assert caught.value.reason == "decompression_bomb"
    # The limit is per call: a stricter one rejects a normal photo too.
    with pytest.raises(ImageError) as strict:
        process_image(encode(photo("astronaut"), "JPEG"), 100_000)
    assert strict.value.reason == "decompression_bomb"


def test_truncated_and_non_images() -> None:
    jpeg = encode(photo("astronaut"), "JPEG")
    with pytest.raises(ImageError) as truncated:
        process_image(jpeg[: len(jpeg) // 2], LIMIT)
    assert truncated.value.reason == "decode_error"
    with pytest.raises(ImageError) as html:
        process_image(b"<!DOCTYPE html><html><body>not found</body></html>", LIMIT)
    assert html.value.reason == "not_an_image"
    with pytest.raises(ImageError) as drawing:  # an image format, but no pixels to store (pipeline/images/sniff.py)
        process_image(SVG_DRAWING, LIMIT)
    assert drawing.value.reason == "not_an_image"
    with pytest.raises(ImageError) as header_only:
        process_image(jpeg[:20], LIMIT)
    assert header_only.value.reason == "decode_error"
