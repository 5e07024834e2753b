"""Finding every ``<img>`` of an HTML page, with the URL it shows and its alt text: a page's bytes -> ``PageImages``.

``find_images`` reads ``<html lang>``, ``<base href>`` and each ``<img>`` (with its ordinal among all ``<img>`` tags of
the page, which makes candidate ids stable). Three tiers, each giving what the one below gives: the tags found by
``pipeline.html.scan`` read by the compiled attribute reader where it can read them exactly as the HTML tokenizer
does; Lexbor (selectolax) on just the page's ``<img>``/``<html>``/``<base>`` tags; Lexbor on the whole page
(``--full-parse``, and the fallback when the tags do not parse one-to-one). The page's bytes are decoded as
``pipeline.html.charset`` says, and each ``<img>``'s URL chosen as ``pipeline.html.urls`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser

from pipeline.html.charset import ascii_compatible, declared_charsets, html_document
from pipeline.html.scan import ScannedPage, scan_page, scan_page_reference, tag_attributes
from pipeline.html.urls import LAZY_ATTRIBUTES, SRCSET_ATTRIBUTES, choose_image_url


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


_IMG_ATTRIBUTES = ("alt", "src", *LAZY_ATTRIBUTES, *SRCSET_ATTRIBUTES)
_HTML_ATTRIBUTES = ("lang", "xml:lang")
_BASE_ATTRIBUTES = ("href",)


def _lang_of(attributes: dict[str, str | None]) -> str | None:
    return (attributes.get("lang") or attributes.get("xml:lang") or "").strip() or None


def _href_of(attributes: dict[str, str | None]) -> str | None:
    return (attributes.get("href") or "").strip() or None


def _transcoded_tags(body: bytes, declared: list[str], scanned: ScannedPage) -> tuple[bytes, ScannedPage] | None:
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


def _images_of_tags(body: bytes, declared: list[str], scanned: ScannedPage) -> PageImages | None:
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


def _images_of_parsed_tags(body: bytes, declared: list[str], scanned: ScannedPage) -> PageImages:
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


def tag_scanner() -> str:
    """Which tag scanner ``find_images`` runs here: "compiled" (``pipeline.html._tagscan``), or "python" where that
    module was not built (the reference: same results, extract about 1.8x slower)."""
    return "python" if scan_page is scan_page_reference else "compiled"


def find_images(body: bytes, header_charset: str | None = None, full_parse: bool = False) -> PageImages:
    """A page's ``<html lang>``, ``<base href>`` and every ``<img>`` in document order (tiers: module docstring)."""
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
