"""The charset of a fetched HTML page, and its bytes as the UTF-8 the parser gets.

Order: a byte-order mark, the HTTP header's charset, ``<meta charset>`` / ``<meta http-equiv=content-type>``, then
UTF-8, then a declared charset with replacement characters for its few bad bytes, and last cp1252 in which the five
bytes it leaves undefined map to the same code points (so the fallback never fails and loses no byte). Labels are
mapped to the superset codecs browsers decode them with (gb2312 -> gb18030, iso-8859-1 -> cp1252, ...). Valid UTF-8
is handed over as bytes, undecoded: Lexbor parses UTF-8 bytes natively, so the common case pays for no decode/encode
round trip.
"""

from __future__ import annotations

import codecs
import re

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
