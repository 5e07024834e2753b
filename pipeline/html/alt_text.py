"""Alt-text normalisation: the one definition of "the alt text" every later stage counts, hashes and filters on.

Three steps, in this order: HTML entities decoded (the parser already decodes one level; pages that escape twice,
``&amp;eacute;``, are common, so a remaining entity is decoded once more), every run of whitespace (Unicode
whitespace included, e.g. NBSP and the ideographic space) collapsed to one space and the ends stripped, and
Unicode NFC so that visually identical alts compare and hash equal.
"""

from __future__ import annotations

import html
import re
import unicodedata

#: Characters removed outright: NUL and the zero-width/formatting marks that make equal captions hash differently.
_DROPPED = "\x00\u200b\u200c\u200d\u2060\ufeff"
_DROPPED_CHARACTERS = dict.fromkeys(map(ord, _DROPPED))
#: Whether a text holds any of them: ``str.translate`` looks every character up in a dict (1.6-4.5 us for a
#: typical non-ASCII alt, 5% of extract's loop), a search for a character class a tenth of that.
_HAS_DROPPED = re.compile(f"[{_DROPPED}]").search


def normalise_alt(raw: str | None) -> str:
    """The normalised alt text of a raw attribute value; ``""`` when nothing is left (or there was no alt)."""
    if not raw:
        return ""
    text = raw
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        if _HAS_DROPPED(text):
            text = text.translate(_DROPPED_CHARACTERS)
        text = " ".join(text.split())
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text
    # ASCII fast path: no NFC or zero-width work needed. Most alts are already normal (printable, so no NUL, tab
    # or newline; single spaces; no space at either end) and are returned as they are; split() does the rest.
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    if "\x00" in text:
        text = text.replace("\x00", "")
    return " ".join(text.split())
