"""Where a page's ``<img>``, ``<html>`` and ``<base>`` tags are, found in its raw bytes without parsing the page.

The scan tokenises like the HTML standard only as far as it must to find where each ``<img ...>`` tag starts and ends,
and where raw-text regions (comments, scripts, styles, textareas, templates, ...) hide markup; ``find_images`` then
has just those tags (plus the ``<html>`` and ``<base>`` tags the parser uses, ``_HeadTags``) read, so attribute values come out exactly as in a full parse and
only their bytes are decoded from the page's charset.

``scan_page_reference`` is the specification, in Python: it scans a lower-cased copy (``bytes.lower()`` only touches
ASCII, so offsets stay the same) with case-sensitive patterns. ``pipeline.html._tagscan`` (``_tagscan.c``, built by
``setup.py``) implements the same rules in C, plus ``tag_attributes``, which reads a tag's attributes exactly as the
HTML tokenizer does or declines; tests/pipeline/html/test_tagscan.py holds the C scan equal to the reference.
``scan_page`` and ``tag_attributes`` are the compiled ones where the module was built, else the reference and None.
Why C: extract's per-record loop takes 1.75x the CPU time on the Python fallback (measured on 8 MB of pages).
"""

from __future__ import annotations

import re

#: What a scan gives: the ``<img>`` count, ``(ordinal, start, end)`` of the tags mentioning "alt", and the spans of
#: the first ``<html>`` and the first ``<base>`` mentioning "href" that are elements (None where absent).
ScannedPage = tuple[int, list[tuple[int, int, int]], "tuple[int, int] | None", "tuple[int, int] | None"]

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
# A comment ends at the first "-->" or "--!>" (the tokenizer's comment end and comment end bang states).
_COMMENT_END = re.compile(rb"--!?>")
_HEAD_TAG = re.compile(rb"<(?:html|base)[\s/>]")
#: Longest <html>/<base> tag read.
_MAX_TAG_BYTES = 100_000
_I, _M, _BANG, _H = ord("i"), ord("m"), ord("!"), ord("h")


def _tag_end(lower: bytes, start: int, name_length: int) -> int:
    """End (exclusive) of the tag starting at ``start``, or -1 if it never closes (EOF inside a tag drops it)."""
    match = _ATTRIBUTES_AFTER_NAME.match(lower, start + 1 + name_length, start + _MAX_TAG_BYTES)
    return match.end() if match else -1


def _inside_a_tag(lower: bytes, position: int, start: int) -> bool:
    """Whether the "<" at ``start`` sits inside another tag opened since ``position`` (an attribute value such as
    title="<img ...>"): the last "<" before it opens a tag and no ">" closed that tag yet."""
    opener = lower.rfind(b"<", position, start)
    return opener >= 0 and lower[opener + 1 : opener + 2].isalpha() and lower.find(b">", opener, start) < 0


class _HeadTags:
    """The first ``<html>`` tag and the first ``<base>`` tag mentioning "href" that a parser sees as elements.

    The parser takes the page's language from the first ``<html>`` start tag and its base URL from the first
    ``<base href>``; those inside comments (IE's conditional comments hold whole ``<html class="ie7">`` tags), raw
    text (a script writing "<base href=...>"), ``<img>`` tags or other tags' attribute values are not elements."""

    def __init__(self, lower: bytes) -> None:
        self.lower = lower
        self.starts = [found.start() for found in _HEAD_TAG.finditer(lower)]  # every candidate, usually one or two
        self.next = 0
        self.html: tuple[int, int] | None = None
        self.html_seen = False
        self.base: tuple[int, int] | None = None

    def visible(self, position: int, stop: int) -> None:
        """Considers the candidates in ``lower[position:stop]``, markup the scan stepped over as tags and text (the
        scan's ``position`` is where its last comment, raw text or ``<img>`` tag ended); those before are hidden."""
        starts, lower = self.starts, self.lower
        while self.next < len(starts) and starts[self.next] < stop:
            start = starts[self.next]
            self.next += 1
            if start < position or _inside_a_tag(lower, position, start):
                continue
            end = _tag_end(lower, start, 4)
            if lower[start + 1] == _H:
                if not self.html_seen:
                    self.html_seen = True
                    self.html = (start, end) if end > 0 else None  # a first <html> that never closes: none
            elif self.base is None and end > 0 and lower.find(b"href", start, end) >= 0:
                self.base = (start, end)


def _img_tags(lower: bytes, heads: _HeadTags) -> list[tuple[int, int]]:
    """``(start, end)`` of every ``<img ...>`` tag that a parser would see as an element, in document order;
    ``heads`` is shown the stretches of the page outside comments, raw text and those tags."""
    tags = []
    position = 0
    search = _SCAN.search
    while True:
        found = search(lower, position)
        if heads.next < len(heads.starts):
            heads.visible(position, len(lower) if found is None else found.start())
        if found is None:
            break
        start, after = found.span()
        first = lower[start + 1]
        if first == _I and lower[start + 2] == _M:
            if _inside_a_tag(lower, position, start):
                # "<img" inside another tag (an attribute value such as title="<img ...>"): not an element.
                position = start + 4
                continue
            tags.append((start, after))
            position = after
        elif first == _BANG:
            if lower.startswith(b">", after) or lower.startswith(b"->", after):
                position = after + (1 if lower.startswith(b">", after) else 2)  # "<!-->" and "<!--->" are complete
                continue
            end = _COMMENT_END.search(lower, after)
            if end is None:
                break
            position = end.end()
        elif lower[after : after + 1] not in _NAME_ENDS:
            position = after  # a longer tag name such as <titles>
        else:
            closing = _RAW_END[lower[start + 1 : after]].search(lower, after)
            if closing is None:
                break  # the rest of the page is raw text
            position = closing.end()
    return tags


def scan_page_reference(body: bytes) -> ScannedPage:
    """What ``find_images`` needs from a page's bytes, in pure Python (``pipeline.html._tagscan`` matches it exactly):
    the number of ``<img>`` elements, ``(ordinal, start, end)`` of those whose tag mentions "alt" (only they can
    carry one; the others are counted but never parsed), and the spans of the first ``<html>`` and the first
    ``<base>`` mentioning "href" that are elements (``_HeadTags``)."""
    lower = body.lower()
    heads = _HeadTags(lower)
    tags = _img_tags(lower, heads)
    with_alt = [
        (ordinal, start, end) for ordinal, (start, end) in enumerate(tags) if lower.find(b"alt", start, end) >= 0
    ]
    return len(tags), with_alt, heads.html, heads.base


try:
    from pipeline.html._tagscan import scan_page, tag_attributes
except ImportError:  # not compiled (no C compiler where it was installed): the same rules, several times slower
    scan_page, tag_attributes = scan_page_reference, None
