"""Finding every ``<img>`` of an HTML page, with the URL it shows and its alt text, using selectolax (Lexbor).

Three concerns live here, each a plain function so the Beam stage, the tests and the benchmark run the same code:

* ``html_document``: bytes -> what the parser gets. Charset order: a byte-order mark, the HTTP header's charset,
  ``<meta charset>`` / ``<meta http-equiv=content-type>``, then UTF-8, then a declared charset with replacement
  characters for its few bad bytes, and last cp1252 in which the five bytes it leaves undefined map to the same
  code points (so the fallback never fails and loses no byte). Valid UTF-8 is handed over as bytes, undecoded:
  Lexbor parses UTF-8 bytes natively, so the common case pays for no decode/encode round trip.
* ``find_images``: ``<html lang>``, ``<base href>`` and each ``<img>`` (with its ordinal among all ``<img>`` tags
  of the page, which makes candidate ids stable). Three tiers, each giving what the one below gives: the compiled
  scanner and attribute reader (``pipeline/html/_tagscan.c``) for tags it can read exactly as the HTML tokenizer does;
  Lexbor on just the page's ``<img>``/``<html>``/``<base>`` tags; Lexbor on the whole page (``--full-parse``, and
  the fallback when the tags do not parse one-to-one).
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
from functools import partial
from typing import NamedTuple
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


class ImgTag(NamedTuple):
    """One ``<img>`` with a non-empty alt attribute: its ordinal among all the page's ``<img>`` tags, the URL it
    shows and from which attribute (``None`` if it has none), and its raw alt. A tuple: pages hold hundreds."""

    ordinal: int
    url: str | None
    url_attribute: str | None
    alt: str


#: ``_img_tag((ordinal, url, attribute, alt))``: an ImgTag without the NamedTuple constructor's Python frame (the
#: fast path builds one per <img> of the crawl).
_img_tag = partial(tuple.__new__, ImgTag)


@dataclass(frozen=True, slots=True)
class PageImages:
    """What one page contributes: its ``<html lang>``, its ``<base href>``, how many ``<img>`` tags it has, and
    those of them with a non-empty alt attribute (the only ones that can become candidates)."""

    lang: str | None
    base_href: str | None
    img_count: int
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


_LAZY_OR_SRCSET = frozenset(LAZY_ATTRIBUTES + SRCSET_ATTRIBUTES)


def choose_image_url(attributes: dict[str, str | None]) -> tuple[str | None, str | None]:
    """``(url, attribute)`` an ``<img>`` shows, by the rule in the module docstring; ``(None, None)`` if none."""
    if _LAZY_OR_SRCSET.isdisjoint(attributes):  # the common <img src alt>: nothing else can win
        src = (attributes.get("src") or "").strip()
        return (src, "src") if src else (None, None)
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
    if raw.isprintable() and " " not in raw:  # the common URL: nothing to strip, remove or escape
        return raw
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


# The netloc of a plain absolute URL (after "scheme://"): a host without userinfo, IPv6 brackets, escapes or
# backslashes, then an optional all-digit port, then the end or the start of the path, query or fragment.
_PLAIN_NETLOC = re.compile(r"([^/?#@\[%\\:]*)(?::([0-9]*))?(?=[/?#]|\Z)")


def _simple_host(absolute: str, netloc_start: int) -> str | None:
    """The lower-cased host of a plain ``scheme://host[:port]/...`` URL; None when it needs the full parser."""
    match = _PLAIN_NETLOC.match(absolute, netloc_start)
    if match is None:
        return None
    host, port = match.groups()
    if port and int(port) > 65535:
        return None
    return host.lower() or None


class UrlResolver:
    """Resolves a page's image URLs against one base; the common shapes skip ``urljoin`` (same result, 5x faster).

    Relative and root-relative URLs keep the base's host, which is therefore parsed once per page, not per image.
    """

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
        #: The base's host when relative URLs can be joined by concatenation; None sends them to urljoin.
        self.host = _simple_host(self.origin, len(scheme) + 3) if self.origin else None

    def resolve(self, raw: str) -> tuple[str, str | None, str | None]:
        """``(absolute_url_without_fragment, lower_case_host, problem)``; problem is a rejection reason or None."""
        url = clean_url(raw)
        if url.startswith(("http://", "https://")):
            absolute = url.split("#", 1)[0] if "#" in url else url
            host = _simple_host(absolute, 7 if url[4] == ":" else 8)
            if host is not None:
                return absolute, host, None
        elif self.host is not None and url and "/." not in url:
            joined = None
            if url[0] == "/":
                if url[1:2] == "/":
                    absolute = self.scheme + ":" + (url.split("#", 1)[0] if "#" in url else url)
                    host = _simple_host(absolute, len(self.scheme) + 3)
                    if host is not None:
                        return absolute, host, None
                else:
                    joined = self.origin + url
            elif url[0] not in "?#":
                colon = url.find(":")
                if colon < 0 or 0 <= url.find("/") < colon:  # no scheme: a relative path
                    while url.startswith("./"):
                        url = url[2:]
                    if not url.startswith("."):
                        joined = self.directory + url
            if joined is not None:
                return (joined.split("#", 1)[0] if "#" in joined else joined), self.host, None
        return _slow_resolve(url, self.base)


def url_host(url: str) -> str | None:
    """The lower-cased host of an absolute URL as ``urlsplit(url).hostname`` gives it (None if it has none or
    cannot be parsed); plain http(s) URLs skip ``urlsplit``."""
    if url.startswith(("http://", "https://")) and url.isprintable():
        host = _simple_host(url, 7 if url[4] == ":" else 8)
        if host is not None:
            return host
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


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
    nodes = tree.tags("img")
    if ordinals is not None and len(nodes) != len(ordinals):
        return PageImages(lang, base_href, len(nodes), [])  # the caller sees the mismatch and parses in full
    images = []
    for index, node in enumerate(nodes):
        attributes = node.attributes
        alt = attributes.get("alt")
        if alt:  # only an <img> with an alt can become a candidate: the URL choice is skipped for the others
            url, attribute = choose_image_url(attributes)
            images.append(ImgTag(index if ordinals is None else ordinals[index], url, attribute, alt))
    return PageImages(lang, base_href, len(nodes), images)


def find_images_full(document: str | bytes) -> PageImages:
    """Parse the whole page with Lexbor: the reference behaviour (``--full-parse``), and the fallback."""
    return _page_images(LexborHTMLParser(document))


# The fast path tokenises like the HTML standard only as far as it must to find where each <img ...> tag starts and
# ends, and where raw-text regions (comments, scripts, styles, textareas, templates, ...) hide markup; those tags
# (plus <html> and <base>) are then read by _tagscan.tag_attributes or parsed by Lexbor, so attribute values come
# out exactly as in a full parse, and only the bytes of those tags are decoded from the page's charset.
# scan_page_reference below is the specification of that scan, in Python: it scans a lower-cased copy
# (bytes.lower() only touches ASCII, so offsets stay the same) with case-sensitive patterns; pipeline.html._tagscan
# implements the same rules in C (tests/pipeline/html/test_tagscan.py holds them equal) and is what runs when it is compiled.
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


def scan_page_reference(
    body: bytes,
) -> tuple[int, list[tuple[int, int, int]], tuple[int, int] | None, tuple[int, int] | None]:
    """What the fast path needs from a page's bytes, in pure Python (the reference ``pipeline.html._tagscan`` matches):
    the number of ``<img>`` elements, ``(ordinal, start, end)`` of those whose tag mentions "alt" (only they can
    carry one; the others are counted but never parsed), and the spans of the first ``<html>`` and ``<base>``."""
    lower = body.lower()
    tags = _img_tags(lower)
    with_alt = [
        (ordinal, start, end) for ordinal, (start, end) in enumerate(tags) if lower.find(b"alt", start, end) >= 0
    ]
    head: list[tuple[int, int] | None] = []
    for pattern in (_HTML_TAG, _BASE_TAG):
        found = pattern.search(lower)
        end = _tag_end(lower, found.start(), 4) if found is not None else -1
        head.append((found.start(), end) if found is not None and end > 0 else None)
    return len(tags), with_alt, head[0], head[1]


try:
    from pipeline.html._tagscan import scan_page, tag_attributes
except ImportError:  # not compiled (no C compiler where it was installed): the same rules, several times slower
    scan_page, tag_attributes = scan_page_reference, None

_IMG_ATTRIBUTES = ("alt", "src", *LAZY_ATTRIBUTES, *SRCSET_ATTRIBUTES)
_HTML_ATTRIBUTES = ("lang", "xml:lang")
_BASE_ATTRIBUTES = ("href",)


def _lang_of(attributes: dict[str, str | None]) -> str | None:
    return (attributes.get("lang") or attributes.get("xml:lang") or "").strip() or None


def _href_of(attributes: dict[str, str | None]) -> str | None:
    return (attributes.get("href") or "").strip() or None


_Scanned = tuple[int, list[tuple[int, int, int]], "tuple[int, int] | None", "tuple[int, int] | None"]


def _transcoded_tags(body: bytes, declared: list[str], scanned: _Scanned) -> tuple[bytes, _Scanned] | None:
    """A non-UTF-8 page's ``<html>``, ``<base>`` and alt-bearing ``<img>`` tags joined and decoded like the page
    (the very document ``_images_of_parsed_tags`` gives Lexbor), with their spans in it; None if a scan of that
    document does not find the same tags back to back."""
    img_count, with_alt, html_span, base_span = scanned
    heads = [span for span in (html_span, base_span) if span is not None]
    parts = [body[start:end] for start, end in heads]
    parts += [body[start:end] for _, start, end in with_alt]
    document, _ = html_document(b"".join(parts), declared=declared)
    _, found, new_html, new_base = scan_page(document)
    if (new_html is None) != (html_span is None) or (new_base is None) != (base_span is None):
        return None
    if len(found) != len(with_alt):
        return None
    position = 0
    for span in (new_html, new_base):
        if span is not None:
            if span[0] != position:
                return None
            position = span[1]
    tags = []
    for (ordinal, _, _), (_, start, end) in zip(with_alt, found, strict=True):
        if start != position:
            return None
        tags.append((ordinal, start, end))
        position = end
    if position != len(document):
        return None
    return document, (img_count, tags, new_html, new_base)


def _images_of_tags(body: bytes, declared: list[str], scanned: _Scanned) -> PageImages | None:
    """The fast path without Lexbor: the page's tags read by ``_tagscan.tag_attributes`` (in place on a UTF-8 page;
    a page in another charset has them transcoded first, exactly as ``_images_of_parsed_tags`` does).

    None, and ``_images_of_parsed_tags`` reads the page, when any of its tags is not one the reader can take
    exactly as the HTML tokenizer does (a character reference or NUL in a wanted value, an unclosed quote...)
    or is not valid UTF-8. Only then do the tags meet Lexbor, together, so that a tag which swallows the next
    ones still sends the page to a full parse.
    """
    if tag_attributes is None:
        return None
    if declared and declared[0] != "utf-8":
        transcoded = _transcoded_tags(body, declared, scanned)
        if transcoded is None:
            return None
        body, scanned = transcoded
    img_count, with_alt, html_span, base_span = scanned
    attributes = tag_attributes(body, [(start, end) for _, start, end in with_alt], _IMG_ATTRIBUTES)
    html_tag = tag_attributes(body, [html_span], _HTML_ATTRIBUTES)[0] if html_span else {}
    base_tag = tag_attributes(body, [base_span], _BASE_ATTRIBUTES)[0] if base_span else {}
    if type(html_tag) is not dict or type(base_tag) is not dict or None in attributes or False in attributes:
        return None
    images = []
    for (ordinal, _, _), tag in zip(with_alt, attributes, strict=True):
        alt = tag.get("alt")
        if alt:
            if len(tag) == 2 and "src" in tag:  # just alt and src, the common case: src is the URL
                src = (tag["src"] or "").strip()
                url, attribute = (src, "src") if src else (None, None)
            else:
                url, attribute = choose_image_url(tag)
            images.append(_img_tag((ordinal, url, attribute, alt)))
    return PageImages(_lang_of(html_tag), _href_of(base_tag), img_count, images)


def _images_of_parsed_tags(body: bytes, declared: list[str], scanned: _Scanned) -> PageImages:
    """The fast path through Lexbor: the page's ``<html>``, ``<base>`` and alt-bearing ``<img>`` tags, parsed as
    one small document decoded like the page."""
    img_count, with_alt, html_span, base_span = scanned
    parts = [body[span[0] : span[1]] for span in (html_span, base_span) if span is not None]
    parts += [body[start:end] for _, start, end in with_alt]
    document, _ = html_document(b"".join(parts), declared=declared)
    ordinals = [ordinal for ordinal, _, _ in with_alt]
    page = _page_images(LexborHTMLParser(document), ordinals)
    if page.img_count != len(ordinals):
        # The tags did not parse one-to-one (markup the scanner does not model): parse the page in full instead.
        return find_images_full(html_document(body, declared=declared)[0])
    return PageImages(page.lang, page.base_href, img_count, page.images)


def find_images(body: bytes, header_charset: str | None = None, full_parse: bool = False) -> PageImages:
    """A page's ``<html lang>``, ``<base href>`` and every ``<img>`` in document order (see the fast path above)."""
    declared = declared_charsets(body, header_charset)
    if declared and not ascii_compatible(declared[0]):
        body, _ = html_document(body, declared=declared)
        declared = ["utf-8"]
    if full_parse:
        return find_images_full(html_document(body, declared=declared)[0])
    scanned = scan_page(body)
    if not scanned[0]:
        return PageImages(None, None, 0, [])
    page = _images_of_tags(body, declared, scanned)
    return page if page is not None else _images_of_parsed_tags(body, declared, scanned)
