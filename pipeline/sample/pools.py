"""The sample's text pools and photo table, read from ``pools/*.json`` (one file per theme, shipped as package data).

The data lives in JSON so the words can be read and edited without reading the generator; this module only loads it
and names each table. Order matters: the generator draws from these lists with a seeded RNG, so reordering an entry
changes the sample's bytes (and is a deliberate, reviewable change to the bundled sample).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

POOLS_FOLDER = "pools"


def load_pool(name: str) -> Any:
    """The parsed ``pools/<name>.json``; a missing file says which one and why it may be absent."""
    path = resources.files("pipeline.sample") / POOLS_FOLDER / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"sample pool {name!r} is missing: expected {path}; an installed altcorpus lacks it when "
            'pyproject.toml\'s [tool.setuptools.package-data] does not list "pipeline.sample" = ["pools/*.json"]'
        ) from None
    return json.loads(text)


_PHOTOS = load_pool("photos")

#: photo name -> (package, file name); all ship inside the installed wheels, nothing is downloaded.
PHOTO_FILES: dict[str, tuple[str, str]] = {
    name: (spec["package"], spec["file"]) for name, spec in _PHOTOS["files"].items()
}

#: The stand-in evaluation set: never used by ordinary pages; the corpus holds one near-duplicate of the first.
EVAL_PHOTOS: tuple[str, ...] = tuple(_PHOTOS["eval"])

#: Photos drawn in ordinary pages, and which alt pool describes each (the stereo pair shares one).
ORDINARY_PHOTOS: dict[str, str] = {photo: spec["alt_pool"] for photo, spec in _PHOTOS["ordinary"].items()}

#: How many CDN crops of each ordinary photo the sample archives.
ORDINARY_CROPS: dict[str, int] = {photo: spec["crops"] for photo, spec in _PHOTOS["ordinary"].items()}

#: alt pool -> language -> subjects: what is in the photo. An alt text is a subject optionally followed by a context.
SUBJECTS: dict[str, dict[str, list[str]]] = load_pool("alt_subjects")

#: language -> where the page shows the photo: appended to a subject (after a space); "" leaves the subject alone.
CONTEXTS: dict[str, list[str]] = load_pool("alt_contexts")

_LANGUAGES: dict[str, dict[str, Any]] = load_pool("languages")

#: How often ordinary pages are in each language (relative weights, in draw order).
LANGUAGE_WEIGHTS: dict[str, int] = {lang: spec["weight"] for lang, spec in _LANGUAGES.items()}

#: The sites that publish ordinary pages in each language.
LANGUAGE_HOSTS: dict[str, list[str]] = {lang: spec["hosts"] for lang, spec in _LANGUAGES.items()}

#: An ordinary page's paragraph (its title is the first 24 characters).
PAGE_WORDS: dict[str, str] = {lang: spec["page_words"] for lang, spec in _LANGUAGES.items()}

#: The ``<figcaption>`` under a photo.
CAPTIONS: dict[str, str] = {lang: spec["caption"] for lang, spec in _LANGUAGES.items()}

#: Words of the listing pages' titles: web noise that ALIGN's frequency rules exist for (a sprite or a stock photo
#: shown beside product names and article titles that say nothing about it). Keys: materials, products, colours,
#: used_goods, towns, dishes, ingredients, garden_topics.
LISTING_WORDS: dict[str, list[str]] = load_pool("listing_titles")
