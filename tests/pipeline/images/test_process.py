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
    assert decoded(result.image_bytes).size == expected
    assert (result.original_width, result.original_height) == (1200, 800)
    assert result.original_format == "JPEG"
    assert result.original_bytes == len(coffee_jpeg)
    assert result.sha256 == hashlib.sha256(coffee_jpeg).hexdigest()


def test_border_pads_with_white_and_center_crop_keeps_the_middle(coffee_jpeg: bytes) -> None:
    border = np.asarray(decoded(process_image(coffee_jpeg, LIMIT, "border", 512).image_bytes))
    # 1200 x 800 -> 512 x 341, padded top and bottom: the first rows are white.
    assert border[:50].min() > 240
    assert border[200:300].std() > 10  # the photo itself is in the middle
    cropped = np.asarray(decoded(process_image(coffee_jpeg, LIMIT, "center_crop", 512).image_bytes))
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
    pixels = np.asarray(decoded(process_image(buffer.getvalue(), LIMIT).image_bytes))
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


@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_greyscale_keeps_its_tones(big_endian: bool) -> None:
    """A real 16-bit grey PNG ramp (0..65535) comes out as the same ramp in 8 bits, not clipped to white."""
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (64, 1))
    source = Image.fromarray(ramp)  # mode I;16
    if big_endian:
        source = Image.frombytes("I;16B", source.size, ramp.astype(">u2").tobytes())
    data = io.BytesIO()
    source.save(data, format="PNG")
    assert Image.open(io.BytesIO(data.getvalue())).mode in ("I;16", "I;16B", "I")  # really 16-bit on disk
    image = process_image(data.getvalue(), LIMIT, "no", jpeg_quality=100)
    out = np.asarray(decoded(image.image_bytes).convert("L"), dtype=np.int16)[32]
    expected = np.linspace(0, 255, 256)
    assert np.abs(out - expected).max() <= 3  # JPEG rounding only
    assert out[0] <= 3 and out[128] in range(124, 132) and out[-1] >= 252


def test_decode_budget_is_shared_and_never_exceeded(coffee_jpeg: bytes) -> None:
    """Threads decoding together hold at most the budget; one image needs its header's estimate, at draft scale."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.images.process import DecodeBudget, decode_bytes

    one = decode_bytes(1200, 800, "RGB")  # 1200 x 800 JPEG to 512: the DCT draft scale is 1 (1/2 is under 512)
    budget = DecodeBudget(one + one // 2)  # room for one decode at a time
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: process_image(coffee_jpeg, LIMIT, budget=budget), range(8)))
    assert {(result.width, result.height) for result in results} == {(768, 512)}
    assert budget.peak == one  # reserved, exactly once at a time
    assert budget.in_use == 0

    big = encode(photo("coffee"), "JPEG", size=(4800, 3200))
    drafted = DecodeBudget(1)  # smaller than any image: each runs alone
    image = process_image(big, LIMIT, budget=drafted)
    assert (image.original_width, image.original_height) == (4800, 3200)  # from the header, not the draft
    assert drafted.peak == decode_bytes(1200, 800, "RGB")  # decoded at 1/4 scale, and budgeted so


def test_waiting_for_the_budget_counts_against_the_deadline(coffee_jpeg: bytes) -> None:
    import time

    from pipeline.images.process import DecodeBudget

    budget = DecodeBudget(10_000_000)
    with budget.reserve(10_000_000):  # another thread's decode holds all of it
        started = time.monotonic()
        with pytest.raises(ImageError) as waited:
            process_image(coffee_jpeg, LIMIT, budget=budget, deadline=started + 0.3)
        assert waited.value.reason == "timeout"
        assert 0.3 <= time.monotonic() - started < 1.5
    assert budget.in_use == 0
    assert process_image(coffee_jpeg, LIMIT, budget=budget, deadline=time.monotonic() + 30).width == 768


def test_a_decode_that_cannot_finish_in_time_is_refused_before_it_starts() -> None:
    import time

    big = png_bomb(6000, 6000)  # 36 million pixels: tens of milliseconds at the very least
    with pytest.raises(ImageError) as refused:
        process_image(big, LIMIT, deadline=time.monotonic() + 0.01)
    assert refused.value.reason == "timeout"
    assert "cannot be decoded" in refused.value.detail


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_keep_original_stores_the_input_bytes_with_a_default_runs_hashes(image_format: str) -> None:
    data = encode(photo("chelsea"), image_format, size=(900, 600))
    kept = process_image(data, LIMIT, keep_original=True)
    default = process_image(data, LIMIT)
    assert kept.image_bytes == data
    assert (kept.width, kept.height) == (kept.original_width, kept.original_height) == (900, 600)
    assert kept.original_format == image_format
    # The same content hash and pHash as without the option: duplicate and eval-index matching do not change.
    assert (kept.sha256, kept.phash) == (default.sha256, default.phash)
    assert (default.width, default.height) == (768, 512) and default.image_bytes != data


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF"])
def test_keep_original_re_encodes_other_formats_as_jpeg_unresized(image_format: str) -> None:
    data = encode(photo("chelsea"), image_format, size=(900, 600))
    kept = process_image(data, LIMIT, keep_original=True)
    assert decoded(kept.image_bytes).size == (kept.width, kept.height) == (900, 600)
    assert kept.original_format == image_format
    assert kept.phash == process_image(data, LIMIT).phash


def test_keep_original_still_applies_the_limits() -> None:
    with pytest.raises(ImageError) as bomb:
        process_image(png_bomb(), LIMIT, keep_original=True)
    assert bomb.value.reason == "decompression_bomb"
    whole = encode(photo("coffee"), "JPEG")
    with pytest.raises(ImageError) as truncated:
        process_image(whole[: len(whole) // 2], LIMIT, keep_original=True)
    assert truncated.value.reason == "decode_error"
    with pytest.raises(ImageError) as small_limit:
        process_image(encode(photo("coffee"), "PNG"), 1000, keep_original=True)
    assert small_limit.value.reason == "decompression_bomb"
