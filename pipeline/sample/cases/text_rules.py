"""Planted cases of the filter-text stage: alt texts shared by many images, images with many alts, alt lengths at
the unigram limits, and exact duplicates (including the same bytes at two URLs, which filter-image judges)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.core.registry import EXTRACT, FILTER_IMAGE, FILTER_TEXT
from pipeline.sample.hosts import BLOG, CDN, GARDEN, MARKET, RECIPES, SHOP
from pipeline.sample.oracle import kept, kept_one, rejected
from pipeline.sample.photos import crop_resize, encode_image
from pipeline.sample.pools import LISTING_WORDS

if TYPE_CHECKING:
    from pipeline.sample.builder import SampleBuilder

TILES_PER_LISTING_PAGE = 25


def plant_frequency_cases(builder: SampleBuilder) -> None:
    """Alt texts shared by 12, 11 and exactly 10 distinct image URLs."""
    shared = [
        (
            "Click here to enlarge",
            12,
            "alt_shared_by_12_images",
            rejected(FILTER_TEXT, "alt_shared_by_too_many_images"),
        ),
        (
            "Photo of the item for sale",
            11,
            "alt_shared_by_11_images",
            rejected(FILTER_TEXT, "alt_shared_by_too_many_images"),
        ),
        ("Picture from our gallery", 10, "alt_shared_by_10_images_kept", kept()),
    ]
    hosts = {12: SHOP, 11: MARKET, 10: BLOG}
    photos = ["chelsea", "flower", "motorcycle_left", "coins", "china", "astronaut", "hubble", "camera"]
    for alt, count, case, fate in shared:
        builder.alts.claim(alt)
        host = hosts[count]
        for index in range(count):
            photo = photos[index % len(photos)]
            url = builder.fresh_variant(host, "media/items", photo, case)
            page = builder.page(f"{host}/item/{case}-{index:02d}.html", "en", f"Item {index + 1}")
            page.blocks.append("<p>Details, shipping and returns below.</p>")
            page.blocks.append(builder.img(page, urlsplit(url).path, alt, case, fate))


def plant_many_alts_cases(builder: SampleBuilder) -> None:
    """One URL with 1001 distinct alts (a sprite), one with exactly 1000 (a default listing photo), and one photo
    at two URLs whose alts add up to 1001 (a stock header image): filter-text counts by URL, filter-image by
    content."""
    sprite = builder.variant(
        f"{SHOP}/static/tiles-sprite.png",
        "colorwheel",
        "image_url_with_1001_alts",
        size=(240, 240),
        image_format="PNG",
        zoom=1.0,
    )
    materials, products, colours = (LISTING_WORDS[key] for key in ("materials", "products", "colours"))
    titles = [
        f"{materials[n % len(materials)]} {products[n // len(materials) % len(products)]} in "
        f"{colours[n // (len(materials) * len(products)) % len(colours)]} item {n:04d}"
        for n in range(1001)
    ]
    _listing_pages(
        builder,
        SHOP,
        "catalog",
        sprite,
        titles,
        "image_url_with_1001_alts",
        rejected(FILTER_TEXT, "image_url_has_too_many_alts"),
    )

    default = builder.variant(
        f"{MARKET}/img/default-listing.jpg", "horse", "image_url_with_1000_alts_kept", size=(280, 230), zoom=1.0
    )
    goods, towns = LISTING_WORDS["used_goods"], LISTING_WORDS["towns"]
    titles = [
        f"Used {goods[n % len(goods)]} for sale in {towns[n // len(goods) % len(towns)]} listing {n:04d}"
        for n in range(1000)
    ]
    _listing_pages(builder, MARKET, "listings", default, titles, "image_url_with_1000_alts_kept", kept())

    stock = encode_image(crop_resize(builder.photo("flower"), 300, 300, builder.rng, 0.8), quality=85)
    case = "image_content_with_1001_alts_at_two_urls"
    fate = rejected(FILTER_IMAGE, "image_has_too_many_alts")
    first = builder.archive_image(f"{RECIPES}/media/stock/dahlia.jpg", stock, photo="flower", case=case)
    second = builder.archive_image(
        f"{GARDEN}/wp-content/uploads/dahlia-header.jpg", stock, photo="flower", case=case, shared_bytes=True
    )
    dishes, ingredients = LISTING_WORDS["dishes"], LISTING_WORDS["ingredients"]
    titles = [
        f"{dishes[n % len(dishes)]} with {ingredients[n // len(dishes) % len(ingredients)]} recipe number {n:03d}"
        for n in range(501)
    ]
    _listing_pages(builder, RECIPES, "recipes", first, titles, case, fate)
    topics = LISTING_WORDS["garden_topics"]
    titles = [f"Garden diary entry {n:03d} about {topics[n % len(topics)]}" for n in range(500)]
    _listing_pages(builder, GARDEN, "diary", second, titles, case, fate)


def _listing_pages(
    builder: SampleBuilder,
    host: str,
    folder: str,
    image_url: str,
    titles: Sequence[str],
    case: str,
    fate: dict[str, Any],
) -> None:
    """Listing pages of 25 tiles, each tile the same image with its own title as alt text."""
    # Tiles reference the image root-relative when it lives on the same host, as listing templates do.
    same_host = urlsplit(image_url).netloc == urlsplit(host).netloc
    ref = urlsplit(image_url).path if same_host else image_url
    for start in range(0, len(titles), TILES_PER_LISTING_PAGE):
        number = start // TILES_PER_LISTING_PAGE + 1
        page = builder.page(f"{host}/{folder}/page-{number:02d}.html", "en", f"{folder.title()}, page {number}")
        tiles = []
        for offset, title in enumerate(titles[start : start + TILES_PER_LISTING_PAGE]):
            builder.alts.claim(title)
            tag = builder.img(page, ref, title, case, fate, figure=False, extra=' width="120" height="120"')
            tiles.append(f'<li><a href="/{folder}/{start + offset}">{tag}</a> <span>{html.escape(title)}</span></li>')
        page.blocks.append('<ul class="tiles">\n' + "\n".join(tiles) + "\n</ul>")


def plant_length_cases(builder: SampleBuilder) -> None:
    """Alt texts of 1, 2, 3, 20 and 21 words, a one-character Japanese alt, and one over 1000 characters."""
    page = builder.page(f"{BLOG}/2023/11/cats-of-the-neighbourhood.html", "en", "Cats of the neighbourhood")
    twenty = "A tabby cat with green eyes and long white whiskers looks straight into the camera in soft warm afternoon light"
    twenty_one = twenty + " today"
    cases = [
        ("Chelsea", "alt_1_word", rejected(FILTER_TEXT, "alt_too_short")),
        ("tabby cat", "alt_2_words", rejected(FILTER_TEXT, "alt_too_short")),
        ("curious tabby cat", "alt_3_words_kept", kept()),
        (twenty, "alt_20_words_kept", kept()),
        (twenty_one, "alt_21_words", rejected(FILTER_TEXT, "alt_too_long")),
        ("猫", "alt_1_cjk_character", rejected(FILTER_TEXT, "alt_too_short")),
    ]
    assert len(twenty.split()) == 20 and len(twenty_one.split()) == 21
    for alt, case, fate in cases:
        url = builder.fresh_variant(BLOG, "media/cats", "chelsea", case)
        page.blocks.append(builder.img(page, url, builder.alts.claim(alt), case, fate))
    stuffed = " ".join(
        f"cheap cat photos {word} best cat pictures free download" for word in ["today", "online", "now"] * 14
    )
    assert len(stuffed) > 1000
    url = builder.fresh_variant(BLOG, "media/cats", "chelsea", "alt_over_1000_characters")
    page.blocks.append(
        builder.img(
            page, url, builder.alts.claim(stuffed), "alt_over_1000_characters", rejected(EXTRACT, "alt_too_long_chars")
        )
    )


def plant_duplicate_cases(builder: SampleBuilder) -> None:
    """Exact duplicates: the same (URL, alt) on two pages and three times (twice on one page); the same bytes at
    two URLs with the same alt; and, as a control, the same bytes at two URLs with different alts (both kept)."""
    first = builder.page(f"{BLOG}/2023/05/summer-palace.html", "en", "A day at the Summer Palace")
    second = builder.page(f"{BLOG}/2023/05/beijing-highlights.html", "en", "Beijing highlights")
    url = builder.fresh_variant(CDN, "photos/beijing", "china", "duplicate_pair_two_pages")
    alt = builder.alts.take("china")
    fate = kept_one("duplicate_pair_two_pages", FILTER_TEXT, "duplicate_pair")
    for page in (first, second):
        page.blocks.append(builder.img(page, url, alt, "duplicate_pair_two_pages", fate))

    url = builder.fresh_variant(CDN, "photos/space", "hubble", "duplicate_pair_three_times")
    alt = builder.alts.take("hubble")
    fate = kept_one("duplicate_pair_three_times", FILTER_TEXT, "duplicate_pair")
    for page in (first, first, second):
        page.blocks.append(builder.img(page, url, alt, "duplicate_pair_three_times", fate))

    photo = encode_image(crop_resize(builder.photo("china"), 360, 240, builder.rng, 0.9), quality=86)
    alt = builder.alts.take("china")
    case = "duplicate_image_alt_two_urls"
    fate = kept_one(case, FILTER_IMAGE, "duplicate_image_alt")
    mirror = builder.page("https://mirror.example.org/beijing/summer-palace.html", "en", "Summer Palace (mirror)")
    for page, url in (
        (first, f"{CDN}/photos/beijing/pagoda-lake.jpg"),
        (mirror, "https://mirror.example.org/img/pagoda-lake.jpg"),
    ):
        builder.archive_image(url, photo, photo="china", case=case, shared_bytes=True)
        page.blocks.append(builder.img(page, url, alt, case, fate))

    photo = encode_image(crop_resize(builder.photo("flower"), 320, 280, builder.rng, 0.85), quality=84)
    case = "same_image_two_urls_different_alts_kept"
    for page, url in (
        (second, f"{CDN}/photos/garden/dahlia-bloom.jpg"),
        (mirror, "https://mirror.example.org/img/dahlia-bloom.jpg"),
    ):
        builder.archive_image(url, photo, photo="flower", case=case, shared_bytes=True)
        page.blocks.append(builder.img(page, url, builder.alts.take("flower"), case))
