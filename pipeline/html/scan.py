"""Where a page's ``<img>``, ``<html>`` and ``<base>`` tags are, found in its raw bytes without parsing the page.

The scan tokenises like the HTML standard only as far as it must to find where each ``<img ...>`` tag starts and ends,
and where raw-text regions (comments, scripts, styles, textareas, templates, ...) hide markup; ``find_images`` then
has just those tags (plus ``<html>`` and ``<base>``) read, so attribute values come out exactly as in a full parse and
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
#: the first ``<html>`` and ``<base>`` tags (None where absent).
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


def scan_page_reference(body: bytes) -> ScannedPage:
    """What ``find_images`` needs from a page's bytes, in pure Python (``pipeline.html._tagscan`` matches it exactly):
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
