"""Planted cases of the filter-image stage (sizes and aspect ratios at ALIGN's thresholds, a near-duplicate of an
evaluation image) and of the fetch stage (an image the archive lacks, HTML served as a JPEG, a truncated JPEG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from pipeline.core.registry import FETCH, FILTER_IMAGE
from pipeline.sample.hosts import BLOG, CDN
from pipeline.sample.oracle import kept, rejected
from pipeline.sample.photos import crop_resize, encode_image
from pipeline.sample.pools import EVAL_PHOTOS, ORDINARY_PHOTOS
from pipeline.sample.records import ArchivedImageRecord

if TYPE_CHECKING:
    from pipeline.sample.builder import SampleBuilder


def plant_image_cases(builder: SampleBuilder) -> None:
    """Sizes and aspect ratios at and around ALIGN's thresholds (shorter side > 200 px, aspect < 3)."""
    page = builder.page(f"{BLOG}/2023/08/pictures-in-all-shapes.html", "en", "Pictures in all shapes")
    too_small, extreme = (
        rejected(FILTER_IMAGE, "image_too_small"),
        rejected(FILTER_IMAGE, "aspect_ratio_too_extreme"),
    )
    cases = [
        ("chelsea", (150, 400), "image_150x400_too_small", too_small),
        ("chelsea", (120, 120), "image_120x120_thumbnail", too_small),
        ("astronaut", (200, 300), "image_shorter_side_200", too_small),
        ("astronaut", (201, 300), "image_shorter_side_201_kept", kept()),
        ("hubble", (900, 250), "aspect_ratio_3_6", extreme),
        ("hubble", (750, 250), "aspect_ratio_exactly_3", extreme),
        ("hubble", (747, 250), "aspect_ratio_2_99_kept", kept()),
        ("hubble", (240, 800), "aspect_ratio_tall_3_33", extreme),
    ]
    for photo, size, case, fate in cases:
        url = builder.fresh_variant(CDN, "photos/shapes", photo, case, size=size)
        # The page declares a large display size: the rules must look at the image's own pixels.
        dims = f' width="{size[0] * 4}" height="{size[1] * 4}"'
        page.blocks.append(builder.img(page, url, builder.alts.take(ORDINARY_PHOTOS[photo]), case, fate, extra=dims))


def plant_eval_cases(builder: SampleBuilder) -> None:
    """The stand-in evaluation set, and a resized, re-compressed, slightly cropped copy of its first photo."""
    for name in EVAL_PHOTOS:
        builder.eval_files[f"{name}.jpg"] = encode_image(builder.photo(name), quality=90)
    original = builder.photo(EVAL_PHOTOS[0])
    width, height = original.size
    # 1% off each side: pHash moves fast under cropping (2% already costs ~8 bits on this photo).
    box = (round(width * 0.01), round(height * 0.01), round(width * 0.99), round(height * 0.99))
    copy = original.resize((430, 287), Image.Resampling.BILINEAR, box=box)
    url = builder.archive_image(
        f"{CDN}/photos/cafe/espresso-cup.jpg",
        encode_image(copy, quality=70),
        photo="coffee",
        case="eval_near_duplicate",
    )
    fate = rejected(FILTER_IMAGE, "eval_near_duplicate")
    for lang, alt in (
        ("en", "Espresso in a red cup and saucer on a wooden table"),
        ("de", "Espresso in roter Tasse mit Löffel auf einem Holztisch"),
    ):
        page = builder.page(f"https://travel.example.com/cafes/{lang}/morning-coffee.html", lang, "Morning coffee")
        page.blocks.append(builder.img(page, url, builder.alts.claim(alt), "eval_near_duplicate", fate))


def plant_fetch_cases(builder: SampleBuilder) -> None:
    """An image URL the archive lacks (fetch fails; the reason depends on the network), HTML served as a JPEG,
    and a truncated JPEG."""
    page = builder.page(f"{BLOG}/2021/02/lost-pictures.html", "en", "Lost pictures")
    missing = "https://images.missing.invalid/photos/astronaut-portrait.jpg"
    builder.images[missing] = ArchivedImageRecord(
        missing, b"", "", "astronaut", None, None, "image_not_archived", False, False
    )
    page.blocks.append(
        builder.img(page, missing, builder.alts.take("astronaut"), "image_not_archived", rejected(FETCH, None))
    )

    url = f"{CDN}/photos/moved/motorcycle-garage.jpg"
    moved = b"<!DOCTYPE html><html><body><h1>This picture has moved</h1><p>See our new gallery.</p></body></html>"
    builder.archive_image(url, moved, photo="none", case="html_served_as_jpeg", decodable=False)
    page.blocks.append(
        builder.img(page, url, builder.alts.take("motorcycle"), "html_served_as_jpeg", rejected(FETCH, "not_an_image"))
    )

    whole = encode_image(crop_resize(builder.photo("astronaut"), 400, 400, builder.rng, 0.9), quality=88)
    url = f"{CDN}/photos/partial/astronaut-portrait.jpg"
    builder.archive_image(
        url, whole[: len(whole) * 55 // 100], photo="astronaut", case="truncated_jpeg", decodable=False
    )
    page.blocks.append(
        builder.img(page, url, builder.alts.take("astronaut"), "truncated_jpeg", rejected(FETCH, "decode_error"))
    )
