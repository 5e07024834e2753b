"""The bundled sample: a small, deterministic web archive whose pages embed real photos, and the oracle of its fates.

``python -m pipeline make-sample --output build/sample [--pages N] [--seed S]`` writes

- ``sample.warc.gz``: HTML pages on invented hosts (reserved ``*.example.{com,org,net}`` names, plus ``.invalid``
  for an image that is deliberately not archived) and, in the same archive, the image responses their ``<img>``
  tags point at. The photos are the real ones that ship inside pip packages (``skimage.data`` and scikit-learn's
  sample images), cropped and re-encoded; their alt texts are written here, in English, German, French, Spanish,
  Japanese and Chinese.
- ``expected.json``: for every ``<img>`` with a non-empty alt text, its absolute image URL, normalised alt text,
  page URL and fate under ALIGN's rules (``kept``, ``rejected`` at a stage with a reason, or ``kept_one`` of an
  exact-duplicate group), labelled with the planted ``case`` it exercises. The end-to-end test holds the pipeline
  to it.
- ``eval/``: a few JPEGs standing in for an evaluation test set; the corpus holds one resized, re-compressed,
  slightly cropped copy of one of them, which ``filter-image`` must remove as ``eval_near_duplicate``.

Every planted case trips exactly one rule and every ordinary candidate is clearly kept (3..20 unigrams under any
usual tokeniser: whitespace, word + punctuation, or one per CJK character; a unique alt text; an image whose shorter
side is 224..360 px and whose aspect ratio is at most 1.6; far in pHash from every evaluation image), so each fate is
unambiguous. Where the pipeline has a documented choice the oracle follows it: a ``srcset`` yields its largest
candidate and ``data-src`` wins over a ``data:`` placeholder (pipeline/html/images.py), and an alt text escaped
twice is decoded twice (pipeline/html/alt_text.py). Determinism: the same seed gives byte-identical files (fixed
WARC-Dates, record ids derived from the seed, one gzip member per record written by zlib with mtime 0, images
encoded from the packaged photos with fixed parameters).

This module holds the in-memory sample (``SampleBuilder``: its images, pages and oracle entries, and the ordinary
pages) and writes it out; the words are in ``pools/``, the planted cases in ``cases/``, the archive writer in
``warc_writer.py`` and the oracle's format in ``oracle.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import io
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from PIL import Image

from pipeline.sample.alt_texts import AltWriter, normalise_expected_alt
from pipeline.sample.cases.extraction import (
    plant_charset_cases,
    plant_markup_cases,
    plant_source_cases,
    plant_text_encoding_cases,
)
from pipeline.sample.cases.image_rules import plant_eval_cases, plant_fetch_cases, plant_image_cases
from pipeline.sample.cases.text_rules import (
    plant_duplicate_cases,
    plant_frequency_cases,
    plant_length_cases,
    plant_many_alts_cases,
)
from pipeline.sample.hosts import CDN
from pipeline.sample.oracle import (
    ALT_TEXT,
    EVAL_DIR_NAME,
    EXPECTED_NAME,
    HTML_LANG,
    IMAGE_URL,
    PAGE_URL,
    URL_ATTRIBUTE,
    kept,
    oracle_document,
    oracle_json,
)
from pipeline.sample.photos import crop_resize, encode_image, load_photo
from pipeline.sample.pools import (
    CAPTIONS,
    LANGUAGE_HOSTS,
    LANGUAGE_WEIGHTS,
    ORDINARY_CROPS,
    ORDINARY_PHOTOS,
    PAGE_WORDS,
)
from pipeline.sample.records import ArchivedImageRecord, Page
from pipeline.sample.warc_writer import WARC_NAME, write_warc

DEFAULT_PAGES = 200
"""Ordinary article pages; the planted cases add about 170 more (listing pages, edge-case pages)."""
MIN_PAGES, MAX_PAGES = 10, 400


class SampleBuilder:
    """Builds the pages, the archived images and the oracle in memory; ``generate_sample`` puts them on disk."""

    def __init__(self, pages: int, seed: int) -> None:
        self.ordinary_page_count = pages
        self.seed = seed
        self.rng = random.Random(seed)
        self.alts = AltWriter(self.rng)
        self.pages: list[Page] = []
        self.images: dict[str, ArchivedImageRecord] = {}
        self.candidates: list[dict[str, Any]] = []
        self.non_candidates: list[dict[str, Any]] = []
        self.eval_files: dict[str, bytes] = {}
        self._photos: dict[str, Image.Image] = {}
        self._digests: set[str] = set()
        self._ordinary_variants: dict[str, list[str]] = {}
        self._variant_cursor: Counter[str] = Counter()
        self._fresh = 0

    # -- images -----------------------------------------------------------------------------------------------------

    def photo(self, name: str) -> Image.Image:
        """A packaged photo, loaded once."""
        if name not in self._photos:
            self._photos[name] = load_photo(name)
        return self._photos[name]

    def archive_image(
        self,
        url: str,
        body: bytes,
        *,
        photo: str,
        case: str,
        content_type: str = "image/jpeg",
        shared_bytes: bool = False,
        decodable: bool = True,
    ) -> str:
        """Archive an image response at ``url``; distinct URLs get distinct bytes unless ``shared_bytes``."""
        if url in self.images:
            raise ValueError(f"image URL archived twice: {url}")
        digest = hashlib.sha256(body).hexdigest()
        if digest in self._digests and not shared_bytes:
            raise ValueError(f"identical bytes at a second URL without being planted: {url}")
        self._digests.add(digest)
        width = height = None
        if decodable:
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
        self.images[url] = ArchivedImageRecord(url, body, content_type, photo, width, height, case, True, decodable)
        return url

    def variant(
        self,
        url: str,
        photo: str,
        case: str,
        size: tuple[int, int] | None = None,
        image_format: str = "JPEG",
        zoom: float | None = None,
    ) -> str:
        """Archive a crop of ``photo`` at ``url``: exactly ``size`` when given, else a seeded size that is clearly
        kept (shorter side 224..360 px, aspect ratio at most 1.6)."""
        if size is None:
            shorter = self.rng.randint(224, 360)
            aspect = self.rng.choice([0.67, 0.75, 0.8, 1.0, 1.25, 1.33, 1.5, 1.6])
            size = (round(shorter * aspect), shorter) if aspect >= 1 else (shorter, round(shorter / aspect))
        zoom = self.rng.uniform(0.72, 1.0) if zoom is None else zoom
        image = crop_resize(self.photo(photo), size[0], size[1], self.rng, zoom)
        body = encode_image(image, image_format, quality=self.rng.randint(78, 88))
        content_type = "image/jpeg" if image_format == "JPEG" else "image/png"
        return self.archive_image(url, body, photo=photo, case=case, content_type=content_type)

    def fresh_variant(self, host: str, folder: str, photo: str, case: str, **kwargs: Any) -> str:
        """A new archived crop of ``photo`` under ``host/folder/`` with a unique, descriptive file name."""
        self._fresh += 1
        extension = "png" if kwargs.get("image_format") == "PNG" else "jpg"
        url = f"{host}/{folder}/{photo.replace('_', '-')}-{self._fresh:03d}.{extension}"
        return self.variant(url, photo, case, **kwargs)

    def ordinary_image(self, pool: str) -> str:
        """The next CDN image of ``pool``'s photos, cycling so every ordinary variant is shown."""
        variants = self._ordinary_variants[pool]
        url = variants[self._variant_cursor[pool] % len(variants)]
        self._variant_cursor[pool] += 1
        return url

    def make_ordinary_variants(self) -> None:
        """The CDN's ordinary photos: several crops of every ordinary photo, a few of them PNG."""
        for photo, pool in ORDINARY_PHOTOS.items():
            for index in range(ORDINARY_CROPS[photo]):
                # The horse silhouette is line art: PNG is what a site would serve.
                image_format = "PNG" if photo == "horse" and index < 2 else "JPEG"
                url = self.fresh_variant(CDN, f"photos/{pool}", photo, "ordinary", image_format=image_format)
                self._ordinary_variants.setdefault(pool, []).append(url)
        for pool in self._ordinary_variants:
            self.rng.shuffle(self._ordinary_variants[pool])

    # -- pages and candidates ------------------------------------------------------------------------------------------

    def page(self, url: str, lang: str | None, title: str, **kwargs: Any) -> Page:
        """Start a page (kept in build order)."""
        page = Page(url=url, lang=lang, title=title, **kwargs)
        self.pages.append(page)
        return page

    def expect(
        self, page: Page, image_url: str, alt: str, case: str, fate: dict[str, Any], url_attribute: str = "src"
    ) -> None:
        """Record one expected candidate in the oracle."""
        if not alt:
            raise ValueError("an empty alt text is not a candidate")
        self.candidates.append(
            {
                PAGE_URL: page.url,
                IMAGE_URL: image_url,
                ALT_TEXT: alt,
                URL_ATTRIBUTE: url_attribute,
                HTML_LANG: page.lang,
                "case": case,
                **fate,
            }
        )

    def img(
        self,
        page: Page,
        ref: str,
        alt: str,
        case: str,
        fate: dict[str, Any] | None = None,
        *,
        alt_raw: str | None = None,
        attribute: str = "src",
        extra: str = "",
        image_url: str | None = None,
        figure: bool = True,
    ) -> str:
        """Markup of an ``<img>`` whose ``attribute`` holds ``ref``, registered in the oracle; ``alt_raw`` is the
        attribute value as written when it differs from the escaped normalised text."""
        raw = html.escape(alt, quote=True) if alt_raw is None else alt_raw
        if normalise_expected_alt(html.unescape(raw)) != alt:
            raise ValueError(f"alt {raw!r} does not normalise to {alt!r}")
        if image_url is None:
            reference = ref.split()[0] if attribute == "srcset" else ref
            image_url = urljoin(page.base_url, html.unescape(reference))
        self.expect(page, image_url, alt, case, fate or kept(), url_attribute=attribute)
        tag = f'<img {attribute}="{ref}" alt="{raw}"{extra}>'
        if not figure:
            return tag
        caption = CAPTIONS.get(page.lang or "en", CAPTIONS["en"])
        return f"<figure>{tag}<figcaption>{html.escape(caption)}</figcaption></figure>"

    def ordinary_figure(self, page: Page, lang: str, case: str = "ordinary", pool: str | None = None) -> str:
        """A clearly kept candidate: a unique alt describing one of the CDN's ordinary photos."""
        pool = pool or self.rng.choice(self.alts.pools(lang))
        alt = self.alts.take(pool, lang)
        url = self.ordinary_image(pool)
        # Most sites write absolute URLs; some write protocol-relative ones.
        ref = url if self.rng.random() < 0.75 else url.removeprefix("https:")
        size = self.images[url]
        dims = f' width="{size.width}" height="{size.height}"' if self.rng.random() < 0.5 else ""
        return self.img(page, ref, alt, case, extra=dims + ' loading="lazy"', image_url=url)

    def not_a_candidate(self, page: Page, case: str, markup: str) -> str:
        """An ``<img>`` that must not become a candidate (no alt, empty alt, hidden in a comment or a script)."""
        self.non_candidates.append({PAGE_URL: page.url, "case": case, "markup": markup})
        return markup

    def images_by_page(self) -> dict[str, list[str]]:
        """Image URLs each page references (in oracle order, de-duplicated), for writing images after their page."""
        by_page: dict[str, list[str]] = {}
        for entry in self.candidates:
            urls = by_page.setdefault(entry[PAGE_URL], [])
            if entry[IMAGE_URL] in self.images and entry[IMAGE_URL] not in urls:
                urls.append(entry[IMAGE_URL])
        return by_page

    # -- ordinary pages ---------------------------------------------------------------------------------------------

    def ordinary_pages(self) -> None:
        """Article pages in six languages, each with one to four photos and the usual alt-less decoration."""
        languages = list(LANGUAGE_WEIGHTS)
        weights = [LANGUAGE_WEIGHTS[lang] for lang in languages]
        for index in range(self.ordinary_page_count):
            lang = self.rng.choices(languages, weights)[0]
            host = self.rng.choice(LANGUAGE_HOSTS[lang])
            year = 2019 + index % 5
            # Some English sites leave out <html lang>.
            page_lang = None if lang == "en" and host.endswith("news.example.net") else lang
            page = self.page(f"{host}/posts/{year}/entry-{index:03d}.html", page_lang, f"{PAGE_WORDS[lang][:24]}")
            page.blocks.append(f"<p>{html.escape(PAGE_WORDS[lang])}</p>")
            for _ in range(self.rng.choice([1, 2, 2, 3, 3, 4])):
                if not self.alts.pools(lang):
                    break
                page.blocks.append(self.ordinary_figure(page, lang))
            if self.rng.random() < 0.3:
                page.blocks.append(self.not_a_candidate(page, "img_without_alt", '<img src="/static/icons/share.png">'))

    # -- everything ---------------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Plant every case, then the ordinary pages, then shuffle the page order (seeded) like a crawl's."""
        # The order is part of the output: every step draws from the one seeded RNG.
        plant_eval_cases(self)
        plant_frequency_cases(self)
        plant_many_alts_cases(self)
        plant_length_cases(self)
        plant_source_cases(self)
        plant_text_encoding_cases(self)
        plant_markup_cases(self)
        self.make_ordinary_variants()
        plant_duplicate_cases(self)
        plant_image_cases(self)
        plant_fetch_cases(self)
        plant_charset_cases(self)
        self.ordinary_pages()
        self.rng.shuffle(self.pages)


def generate_sample(output_dir: str, pages: int = DEFAULT_PAGES, seed: int = 0) -> dict[str, Any]:
    """Write sample.warc.gz, expected.json and eval/ under ``output_dir``; returns paths and counts."""
    if not MIN_PAGES <= pages <= MAX_PAGES:
        raise ValueError(f"pages must be between {MIN_PAGES} and {MAX_PAGES} (the alt-text pools are sized for that)")
    builder = SampleBuilder(pages, seed)
    builder.build()
    root = Path(output_dir)
    eval_dir = root / EVAL_DIR_NAME
    eval_dir.mkdir(parents=True, exist_ok=True)
    for stale in eval_dir.glob("*.jpg"):
        stale.unlink()
    for name, body in builder.eval_files.items():
        (eval_dir / name).write_bytes(body)
    warc_path = root / WARC_NAME
    # Written under a temporary name and renamed: make's target is the WARC, never half-written.
    partial = root / f".{WARC_NAME}.partial"
    write_warc(builder, partial)
    oracle = oracle_document(builder)
    expected_path = root / EXPECTED_NAME
    expected_path.write_text(oracle_json(oracle), encoding="utf-8")
    partial.replace(warc_path)
    archived = [image for image in builder.images.values() if image.archived]
    return {
        "warc": str(warc_path),
        "expected": str(expected_path),
        "eval_dir": str(eval_dir),
        "pages": len(builder.pages),
        "images": len(archived),
        "image_urls": len({entry[IMAGE_URL] for entry in builder.candidates}),
        "candidates": len(builder.candidates),
        "expected_kept": oracle["counts"]["expected_kept"],
        "warc_bytes": warc_path.stat().st_size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline make-sample``: generate the sample and print what it holds."""
    parser = argparse.ArgumentParser(prog="python -m pipeline make-sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="build/sample", help="Folder to write into (default: build/sample)")
    parser.add_argument(
        "--pages", type=int, default=DEFAULT_PAGES, help=f"Ordinary article pages, {MIN_PAGES}..{MAX_PAGES}"
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed: the same seed gives byte-identical files")
    args = parser.parse_args(argv)
    if not MIN_PAGES <= args.pages <= MAX_PAGES:
        parser.error(f"--pages must be between {MIN_PAGES} and {MAX_PAGES}")
    summary = generate_sample(args.output, pages=args.pages, seed=args.seed)
    print(
        f"sample: {summary['pages']} pages, {summary['images']} archived images, {summary['image_urls']} distinct "
        f"image URLs in candidates, {summary['candidates']} candidates ({summary['expected_kept']} expected kept), "
        f"{summary['warc_bytes']:,} bytes -> {summary['warc']}"
    )
    return 0
