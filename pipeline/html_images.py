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


#: Codecs in which the bytes of ``<``, ``>``, quotes, ``=``, ``/`` and whitespace always mean those characters, so
#: tags can be found in the raw bytes before decoding (every charset the web uses except UTF-16/32 and ISO-2022).
def ascii_compatible(codec: str) -> bool:
    """Whether markup characters can be found in this codec's bytes without decoding them."""
    return not codec.startswith(("utf_16", "utf-16", "utf_32", "utf-32", "iso2022", "iso-2022", "utf_7", "utf-7"))


def declared_charsets(body: bytes, header_charset: str | None = None) -> list[str]:
    """Python codecs the page declares, in the order they count: byte-order mark, HTTP header, ``<meta>``."""
    if body.startswith(codecs.BOM_UTF8):
        return ["utf-8"]
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ["utf-16"]
    return [name for name in (codec_name(header_charset), codec_name(meta_charset(body))) if name]


def html_document(
    body: bytes, header_charset: str | None = None, declared: list[str] | None = None
) -> tuple[bytes, str]:
    """``body`` as UTF-8 bytes for the parser, and the codec it was read with (order: module docstring).

    Valid UTF-8 is returned as it is: Lexbor parses UTF-8 bytes natively, so the common case costs one validation.
    ``declared`` (from ``declared_charsets`` of the whole page) lets a part of a page be decoded like the page.
    """
    if declared is None:
        declared = declared_charsets(body, header_charset)
    if body.startswith(codecs.BOM_UTF8):
        body = body[3:]
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
            return body.decode(name).encode("utf-8", errors="replace"), name
        except UnicodeDecodeError:
            continue
    if declared:
        # The page says what it is but has a few bad bytes (cut multi-byte sequences are common): trust it.
        return body.decode(declared[0], errors="replace").encode("utf-8", errors="replace"), declared[0]
    return body.decode("cp1252", errors="altcorpus-latin1").encode("utf-8"), "cp1252"


@dataclass(frozen=True, slots=True)
class ImgTag:
    """One ``<img>``: its ordinal among the page's ``<img>`` tags, raw alt, and (only when it has an alt) its URL."""

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


def _slow_resolve(url: str, base: str) -> tuple[str, str | None, str | None]:
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


def _simple_host(absolute: str, netloc_start: int) -> str | None:
    """The lower-cased host of a plain ``scheme://host[:port]/...`` URL; None when it needs the full parser."""
    end = len(absolute)
    for separator in "/?#":
        index = absolute.find(separator, netloc_start, end)
        if index >= 0:
            end = index
    netloc = absolute[netloc_start:end]
    if not netloc or "@" in netloc or "[" in netloc or "%" in netloc or "\\" in netloc:
        return None
    host, _, port = netloc.partition(":")
    if port and not (port.isdigit() and port.isascii() and int(port) <= 65535):
        return None
    return host.lower() or None


class UrlResolver:
    """Resolves a page's image URLs against one base; the common shapes skip ``urljoin`` (same result, 5x faster)."""

    def __init__(self, base: str) -> None:
        self.base = base
        scheme, _, rest = base.partition("://")
        self.scheme = scheme.lower() if rest else ""
        netloc_end = len(base)
        for separator in "/?#":
            index = base.find(separator, len(scheme) + 3)
            if 0 <= index < netloc_end:
                netloc_end = index
        self.origin = base[:netloc_end] if self.scheme in WEB_SCHEMES else ""
        path = base[netloc_end:].split("?", 1)[0].split("#", 1)[0]
        self.directory = self.origin + (path[: path.rfind("/") + 1] if "/" in path else "/")

    def resolve(self, raw: str) -> tuple[str, str | None, str | None]:
        """``(absolute_url_without_fragment, lower_case_host, problem)``; problem is a rejection reason or None."""
        url = clean_url(raw)
        absolute = None
        if url.startswith(("http://", "https://")):
            absolute = url
        elif self.origin and url and "/." not in url:
            if url.startswith("//"):
                absolute = self.scheme + ":" + url
            elif url.startswith("/"):
                absolute = self.origin + url
            elif url[0] not in "?#":
                colon = url.find(":")
                slash = url.find("/")
                if colon < 0 or 0 <= slash < colon:  # no scheme: a relative path
                    while url.startswith("./"):
                        url = url[2:]
                    if not url.startswith("."):
                        absolute = self.directory + url
        if absolute is not None:
            absolute = absolute.split("#", 1)[0]
            host = _simple_host(absolute, absolute.index("//") + 2)
            if host is not None:
                return absolute, host, None
        return _slow_resolve(url, self.base)


def resolve_url(raw: str, base: str) -> tuple[str, str | None, str | None]:
    """``(absolute_url_without_fragment, lower_case_host, problem)``; problem is a rejection reason or ``None``."""
    return UrlResolver(base).resolve(raw)


def page_base(page_url: str, base_href: str | None) -> str:
    """The URL relative image URLs resolve against: ``<base href>`` (itself resolved against the page) or the page."""
    if base_href:
        resolved, _, problem = resolve_url(base_href, page_url)
        if problem is None:
            return resolved
    return page_url


def _page_images(tree: LexborHTMLParser, ordinals: list[int] | None = None) -> PageImages:
    """Lang, base and images of a parsed tree; ``ordinals`` renumbers the ``<img>`` nodes (fast path)."""
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
    for index, node in enumerate(tree.tags("img")):
        attributes = node.attributes
        alt = attributes.get("alt")
        # Only an <img> with an alt can become a candidate: the URL choice is skipped for the others.
        url, attribute = choose_image_url(attributes) if alt else (None, None)
        images.append(ImgTag(index if ordinals is None else ordinals[index], url, attribute, alt))
    return PageImages(lang, base_href, images)


def find_images_full(document: str | bytes) -> PageImages:
    """Parse the whole page with Lexbor: the reference behaviour (``--full-parse``), and the fallback."""
    return _page_images(LexborHTMLParser(document))


# The fast path tokenises like the HTML standard only as far as it must to find where each <img ...> tag starts and
# ends, and where raw-text regions (comments, scripts, styles, textareas, templates, ...) hide markup; Lexbor then
# parses just those tags (plus <html> and <base>), so attribute values are decoded exactly as in a full parse, and
# only the bytes of those tags are decoded from the page's charset. It scans a lower-cased copy (bytes.lower() only
# touches ASCII, so offsets stay the same) with case-sensitive patterns, several times faster than IGNORECASE ones.
_RAW_NAMES = (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes", b"template")
_RAW_NAMES += (b"plaintext",)
# A tag's attributes as the tokenizer reads them: names up to whitespace, "/", ">" or "="; values quoted or not.
_ATTRIBUTES = rb"""(?:[\s/]++|[^\s/>=][^\s/>=]*+(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s>]*+))?+)*+>"""
# One pass finds whole <img ...> tags and the openers of raw-text regions. No capturing groups and a factored
# alternation: sre scans several times faster that way (measured); which one matched is read from its first bytes.
_SCAN = re.compile(
    rb"<(?:i(?:mg(?=[\s/>])" + _ATTRIBUTES + rb"|frame)|!--|s(?:cript|tyle)|t(?:extarea|itle|emplate)|xmp"
    rb"|no(?:embed|frames)|plaintext)"
)
_ATTRIBUTES_AFTER_NAME = re.compile(_ATTRIBUTES)
_RAW_END = {name: re.compile(rb"</" + name + rb"[\s/>]") for name in _RAW_NAMES}
_NAME_ENDS = frozenset((b" ", b"\t", b"\n", b"\r", b"\f", b"/", b">"))
_HTML_TAG = re.compile(rb"<html[\s/>]")
_BASE_TAG = re.compile(rb"<base[\s/>]")
#: Longest <html>/<base> tag read.
_MAX_TAG_BYTES = 100_000
_I, _M, _BANG = ord("i"), ord("m"), ord("!")


def _tag_end(lower: bytes, start: int, name_length: int) -> int:
    """End (exclusive) of the tag starting at ``start``, or -1 if it never closes (EOF inside a tag drops it)."""
    match = _ATTRIBUTES_AFTER_NAME.match(lower, start + 1 + name_length, start + _MAX_TAG_BYTES)
    return match.end() if match else -1


def _img_tags(lower: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of every ``<img ...>`` tag that a parser would see as an element, in document order."""
    tags = []
    position = 0
    search = _SCAN.search
    while True:
        found = search(lower, position)
        if found is None:
            break
        start, after = found.span()
        first = lower[start + 1]
        if first == _I and lower[start + 2] == _M:
            opener = lower.rfind(b"<", position, start)
            if opener >= 0 and lower[opener + 1 : opener + 2].isalpha() and lower.find(b">", opener, start) < 0:
                # "<img" inside another tag (an attribute value such as title="<img ...>"): not an element.
                position = start + 4
                continue
            tags.append((start, after))
            position = after
        elif first == _BANG:
            if lower.startswith(b">", after) or lower.startswith(b"->", after):
                position = after + (1 if lower.startswith(b">", after) else 2)  # "<!-->" and "<!--->" are complete
                continue
            end = lower.find(b"-->", after)
            if end < 0:
                break
            position = end + 3
        elif lower[after : after + 1] not in _NAME_ENDS:
            position = after  # a longer tag name such as <titles>
        else:
            closing = _RAW_END[lower[start + 1 : after]].search(lower, after)
            if closing is None:
                break  # the rest of the page is raw text
            position = closing.end()
    return tags


def find_images(body: bytes, header_charset: str | None = None, full_parse: bool = False) -> PageImages:
    """A page's ``<html lang>``, ``<base href>`` and every ``<img>`` in document order (see the fast path above)."""
    declared = declared_charsets(body, header_charset)
    if declared and not ascii_compatible(declared[0]):
        body, _ = html_document(body, declared=declared)
        declared = ["utf-8"]
    if full_parse:
        return find_images_full(html_document(body, declared=declared)[0])
    lower = body.lower()
    tags = _img_tags(lower)
    if not tags:
        return PageImages(None, None, [])
    # Only tags that mention "alt" can carry one: the others are counted (by ordinal) but never parsed.
    with_alt = [ordinal for ordinal, (start, end) in enumerate(tags) if lower.find(b"alt", start, end) >= 0]
    head = []
    for pattern in (_HTML_TAG, _BASE_TAG):
        found = pattern.search(lower)
        if found is not None:
            end = _tag_end(lower, found.start(), 4)
            if end > 0:
                head.append(body[found.start() : end])
    parts = head + [body[tags[ordinal][0] : tags[ordinal][1]] for ordinal in with_alt]
    document, _ = html_document(b"".join(parts), declared=declared)
    page = _page_images(LexborHTMLParser(document), with_alt)
    if len(page.images) != len(with_alt):
        # The tags did not parse one-to-one (markup the scanner does not model): parse the page in full instead.
        return find_images_full(html_document(body, declared=declared)[0])
    images = [ImgTag(ordinal, None, None, None) for ordinal in range(len(tags))]
    for image in page.images:
        images[image.ordinal] = image
    return PageImages(page.lang, page.base_href, images)
