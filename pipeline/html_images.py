"""Finding every ``<img>`` of an HTML page, with the URL it shows and its alt text, using selectolax (Lexbor).

Three concerns live here, each a plain function so the Beam stage, the tests and the benchmark run the same code:

* ``html_document``: bytes -> what the parser gets. Charset order: a byte-order mark, the HTTP header's charset,
  ``<meta charset>`` / ``<meta http-equiv=content-type>``, then UTF-8, then a declared charset with replacement
  characters for its few bad bytes, and last cp1252 in which the five bytes it leaves undefined map to the same
  code points (so the fallback never fails and loses no byte). Valid UTF-8 is handed over as bytes, undecoded:
  Lexbor parses UTF-8 bytes natively, so the common case pays for no decode/encode round trip.
* ``find_images``: parse once; ``<html lang>``, ``<base href>`` and each ``<img>`` (with its ordinal among all
  ``<img>`` tags of the page, which makes candidate ids stable).
* ``choose_image_url`` / ``resolve_url``: which attribute's URL an ``<img>`` shows, and the absolute URL.

URL choice per ``<img>`` (first that applies): a lazy-loading attribute (``data-src``, ``data-lazy-src``,
``data-original``), because lazy pages put a placeholder in ``src``; ``src``, unless it is an inline ``data:``
placeholder and a ``srcset`` exists; the largest ``srcset`` candidate (by ``w``, else by ``x`` density);
the largest ``data-srcset`` candidate; a ``data:`` ``src`` as the last resort (it is then rejected with a reason
rather than silently skipped).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

#: Lazy-loading attributes, in order of preference; they win over ``src``.
LAZY_ATTRIBUTES = ("data-src", "data-lazy-src", "data-original")
SRCSET_ATTRIBUTES = ("srcset", "data-srcset")
WEB_SCHEMES = ("http", "https")

# How far into a page a <meta> charset declaration is looked for (the HTML standard says 1024; pages with long
# <head> scripts often declare later, so look a bit further).
_META_SNIFF_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)

# Labels whose WHATWG decoder is a superset codec: browsers decode them with the superset, and so do we.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "big5": "big5hkscs",
    "utf8": "utf-8",
    "unicode": "utf-8",
}


def _cp1252_lossless(error: UnicodeDecodeError) -> tuple[str, int]:
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: map them to U+0081... as latin-1 (and browsers) do.
    return "".join(chr(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("altcorpus-latin1", _cp1252_lossless)


def codec_name(label: str | None) -> str | None:
    """Python's codec for a charset label (WHATWG supersets applied), or ``None`` for an unknown label."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def meta_charset(body: bytes) -> str | None:
    """The charset a ``<meta>`` tag near the start of the page declares, if any."""
    match = _META_CHARSET.search(body, 0, _META_SNIFF_BYTES)
    return match.group(1).decode("ascii") if match else None


def html_document(body: bytes, header_charset: str | None = None) -> tuple[str | bytes, str]:
    """What to hand to the parser for ``body`` and the codec used: valid UTF-8 stays bytes, anything else a str."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:], "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", errors="replace"), "utf-16"
    declared = [name for name in (codec_name(header_charset), codec_name(meta_charset(body))) if name]
    for name in [*declared, "utf-8"]:
        if name == "utf-8":
            if body.isascii():
                return body, name
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                continue
            return body, name
        try:
            return body.decode(name), name
        except UnicodeDecodeError:
            continue
    if declared:
        # The page says what it is but has a few bad bytes (cut multi-byte sequences are common): trust it.
        return body.decode(declared[0], errors="replace"), declared[0]
    return body.decode("cp1252", errors="altcorpus-latin1"), "cp1252"


@dataclass(frozen=True, slots=True)
class ImgTag:
    """One ``<img>`` as written: its ordinal among the page's ``<img>`` tags, chosen URL, attribute and raw alt."""

    ordinal: int
    url: str | None
    url_attribute: str | None
    alt: str | None


@dataclass(frozen=True, slots=True)
class PageImages:
    """What one page contributes: its ``<html lang>``, its ``<base href>`` and every ``<img>``."""

    lang: str | None
    base_href: str | None
    images: list[ImgTag]


def largest_srcset_url(srcset: str) -> str | None:
    """The URL of the largest candidate of a ``srcset`` (by ``w`` width, else by ``x`` density; none means 1x)."""
    best_url, best_rank = None, (-1, -1.0)
    for url, descriptor in _srcset_candidates(srcset):
        rank = (-1, 1.0)
        descriptor = descriptor.strip().lower()
        try:
            if descriptor.endswith("w"):
                rank = (int(float(descriptor[:-1])), 0.0)
            elif descriptor.endswith("x"):
                rank = (-1, float(descriptor[:-1]))
        except ValueError:
            pass  # an unreadable descriptor counts as 1x: the URL itself is still usable
        if rank > best_rank:
            best_url, best_rank = url, rank
    return best_url


def _srcset_candidates(srcset: str) -> list[tuple[str, str]]:
    """``(url, descriptor)`` pairs of a ``srcset``, split the way the HTML standard does (URLs may hold commas)."""
    candidates = []
    position, length = 0, len(srcset)
    while position < length:
        while position < length and (srcset[position].isspace() or srcset[position] == ","):
            position += 1
        start = position
        while position < length and not srcset[position].isspace():
            position += 1
        url = srcset[start:position]
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            end = srcset.find(",", position)
            end = length if end < 0 else end
            descriptor = srcset[position:end]
            position = end + 1
        if url:
            candidates.append((url, descriptor))
    return candidates


def choose_image_url(attributes: dict[str, str | None]) -> tuple[str | None, str | None]:
    """``(url, attribute)`` an ``<img>`` shows, by the rule in the module docstring; ``(None, None)`` if none."""
    for name in LAZY_ATTRIBUTES:
        value = (attributes.get(name) or "").strip()
        if value and not value.startswith("data:"):
            return value, name
    src = (attributes.get("src") or "").strip()
    if src and not (src[:5].lower() == "data:" and any(attributes.get(name) for name in SRCSET_ATTRIBUTES)):
        return src, "src"
    for name in SRCSET_ATTRIBUTES:
        value = attributes.get(name)
        if value:
            url = largest_srcset_url(value)
            if url:
                return url, name
    return (src, "src") if src else (None, None)


def clean_url(raw: str) -> str:
    """Strip a URL the way browsers do: outer whitespace/control characters, inner tabs and newlines; spaces escaped."""
    url = raw.strip(" \t\n\r\f\x00")
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.replace("\t", "").replace("\n", "").replace("\r", "")
    return url.replace(" ", "%20")


def resolve_url(raw: str, base: str) -> tuple[str, str | None, str | None]:
    """``(absolute_url_without_fragment, lower_case_host, problem)``; problem is a rejection reason or ``None``."""
    url = clean_url(raw)
    try:
        absolute = urljoin(base, url)
        absolute = absolute.split("#", 1)[0]
        parts = urlsplit(absolute)
        scheme = parts.scheme.lower()
        if scheme not in WEB_SCHEMES:
            return absolute, None, "unsupported_url_scheme" if scheme else "invalid_url"
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return url, None, "invalid_url"
    if not host:
        return absolute, None, "invalid_url"
    return absolute, host, None


def page_base(page_url: str, base_href: str | None) -> str:
    """The URL relative image URLs resolve against: ``<base href>`` (itself resolved against the page) or the page."""
    if base_href:
        resolved, _, problem = resolve_url(base_href, page_url)
        if problem is None:
            return resolved
    return page_url


def find_images(document: str | bytes) -> PageImages:
    """Parse a page once and return its ``<html lang>``, ``<base href>`` and every ``<img>`` in document order."""
    tree = LexborHTMLParser(document)
    root = tree.root
    lang = None
    if root is not None:
        lang = (root.attrs.get("lang") or root.attrs.get("xml:lang") or "").strip() or None
    base_href = None
    for node in tree.tags("base"):
        href = node.attrs.get("href")
        if href and href.strip():
            base_href = href.strip()
            break
    images = []
    for ordinal, node in enumerate(tree.tags("img")):
        attributes = node.attributes
        url, attribute = choose_image_url(attributes)
        images.append(ImgTag(ordinal, url, attribute, attributes.get("alt")))
    return PageImages(lang, base_href, images)
