"""The compiled ``<img>`` tag scanner (pipeline.html._tagscan) against its pure-Python reference (pipeline.html.scan).

The C scanner is what the extract stage runs; ``scan_page_reference`` is the specification it must match
exactly: on every real page of the shared crawl data, and on generated markup built from the pieces that
trip tag scanners (quotes, comments, raw-text elements, tags inside attribute values, case, control bytes).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import random
from collections import Counter
from types import ModuleType

import pytest
from selectolax.lexbor import LexborHTMLParser

import pipeline.html.images as html_images
from pipeline.html import scan
from pipeline.html.images import find_images
from pipeline.html.scan import scan_page_reference
from pipeline.html.warc import HtmlResponse, iter_warc_items
from tests.conftest import shared_path

try:
    from pipeline.html import _tagscan
except ImportError:  # every test that needs it fails with the message below
    _tagscan = None

if os.environ.get("ALTCORPUS_TAGSCAN_BUILD"):
    # `make check-c`: the same tests against a sanitizer build of the module (the pipeline keeps its own import).
    _loader = importlib.machinery.ExtensionFileLoader("_tagscan", os.environ["ALTCORPUS_TAGSCAN_BUILD"])
    _tagscan = importlib.util.module_from_spec(importlib.util.spec_from_loader("_tagscan", _loader))
    _loader.exec_module(_tagscan)

_NOT_COMPILED = (
    "pipeline.html._tagscan is not compiled: install with a C compiler (make install builds it); without it the "
    "extract stage runs the pure-Python reference, several times slower"
)


@pytest.fixture
def tagscan() -> ModuleType:
    """The compiled module (the test fails, clearly, where it was not built)."""
    if _tagscan is None:
        pytest.fail(_NOT_COMPILED)
    return _tagscan


# Pieces of markup that stress each rule of the scanner; documents are random sequences of them.
_PIECES = [
    b"<img",
    b"<IMG",
    b"<imgx",
    b"<img ",
    b"<img/",
    b"<img>",
    b" alt=",
    b" ALT",
    b"alt",
    b"src=x",
    b"=",
    b"/",
    b'"',
    b"'",
    b">",
    b" ",
    b"\t",
    b"\n",
    b"\x0b",
    b"\x0c",
    b"\x00",
    b"\xc3\xa9",
    b"text",
    b"<",
    b"--",
    b"- -",
    b"<!--",
    b"-->",
    b"<!-->",
    b"<!--->",
    b"<script>",
    b"<script",
    b"</script>",
    b"</SCRIPT ",
    b"<style>",
    b"</style>",
    b"<title>",
    b"<titles>",
    b"</title>",
    b"<textarea>",
    b"</textarea/",
    b"<template>",
    b"</template>",
    b"<iframe>",
    b"</iframe>",
    b"<xmp>",
    b"</xmp>",
    b"<noembed>",
    b"</noembed>",
    b"<noframes ",
    b"</noframes>",
    b"<plaintext>",
    b'<a title="',
    b"<b>",
    b"</b>",
    b"<p",
    b"<html lang=en>",
    b"<html",
    b"<base",
    b"<base href=/x/>",
]


def test_the_compiled_scanner_is_built_and_used(tagscan: ModuleType) -> None:
    from pipeline.html import _tagscan as installed

    assert scan.scan_page is installed.scan_page and scan.tag_attributes is installed.tag_attributes
    assert html_images.scan_page is installed.scan_page and html_images.tag_attributes is installed.tag_attributes


def test_equal_to_the_reference_on_every_real_page(tagscan: ModuleType) -> None:
    pages = tags = 0
    for path in sorted(shared_path("warc/warcfile.warc.gz").parent.glob("*.warc*")):
        with open(path, "rb") as stream:
            for item in iter_warc_items(stream, str(path), 5_000_000, 20_000_000):
                if isinstance(item, HtmlResponse):
                    expected = scan_page_reference(item.body)
                    assert tagscan.scan_page(item.body) == expected, item.info.url
                    pages += 1
                    tags += expected[0]
    assert pages >= 60 and tags >= 500


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_the_reference_on_generated_hostile_markup(seed: int, tagscan: ModuleType) -> None:
    rng = random.Random(seed)
    for _ in range(5_000):
        document = b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))
        assert tagscan.scan_page(document) == scan_page_reference(document), document


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"", (0, [], None, None)),
        (b"<", (0, [], None, None)),
        (b"<img", (0, [], None, None)),  # the page ends inside the tag: not an element
        (b'<IMG SRC=a ALT="x">', (1, [(0, 0, 19)], None, None)),
        (b'<img src=a><img alt="b>c" src=d>', (2, [(1, 11, 32)], None, None)),
        # No closing quote: read unquoted, as the reference's pattern does (Lexbor then sees no tag, and
        # find_images notices the count differs and parses that page in full).
        (b'<img alt="never closed>', (1, [(0, 0, 23)], None, None)),
        (b"<!-- <img alt=a> --><img alt=b>", (1, [(0, 20, 31)], None, None)),
        (b"<script><img alt=a></script ><img alt=b>", (1, [(0, 29, 40)], None, None)),
        (b"<titles><img alt=a>", (1, [(0, 8, 19)], None, None)),
        (b'<a title="<img alt=a>">', (0, [], None, None)),
        (b'<html lang="de"><base href="/b/"><img>', (1, [], (0, 16), (16, 33))),
        # A comment ends at the first "-->" or "--!>" (the tokenizer's comment end bang state).
        (b"<!-- a --!><img alt=b>", (1, [(0, 11, 22)], None, None)),
        (b"<!-- a -!><img alt=b>", (0, [], None, None)),
        # <html> and <base> count only where a parser sees them: not in comments (conditional ones included),
        # raw text, <img> tags or other tags' attribute values; the first <base> with an href.
        (b'<!--[if IE 7]><html class="ie7"><![endif]--><html lang="en">', (0, [], (44, 60), None)),
        (b"<!--[if gt IE 8]><!--><html lang=en><!--<![endif]-->", (0, [], (22, 36), None)),
        (b"<!--><html lang=a><!---><html lang=b>", (0, [], (5, 18), None)),
        (b'<!-- <base href="/old/"> --><base href="/new/">', (0, [], None, (28, 47))),
        (b'<script>"<base href=/s/>"</script><base href=/b/>', (0, [], None, (34, 49))),
        (b"<textarea><html lang=t></textarea><html lang=h>", (0, [], (34, 47), None)),
        (b'<img alt="<base href=/i/>"><base href=/b/>', (1, [(0, 0, 27)], None, (27, 42))),
        (b'<a title="<html lang=x>"><html lang=y>', (0, [], (25, 38), None)),
        (b"<base target=_top><base href=/h/>", (0, [], None, (18, 33))),
        (b"<html", (0, [], None, None)),
    ],
)
def test_known_cases(document: bytes, expected: tuple, tagscan: ModuleType) -> None:
    assert scan_page_reference(document) == expected
    assert tagscan.scan_page(document) == expected


def test_accepts_any_bytes_like_and_rejects_text(tagscan: ModuleType) -> None:
    document = b"<p><img alt=x src=y></p>"
    assert tagscan.scan_page(bytearray(document)) == tagscan.scan_page(memoryview(document))
    with pytest.raises(TypeError):
        tagscan.scan_page("<img alt=x>")


_WANTED = ("alt", "src", "data-src", "srcset", "lang", "href")
# Pieces of one start tag: attribute names (cases, repeats), values (quoted, unquoted, empty, with the characters
# that make the tokenizer do more than copy bytes), separators.
_TAG_PIECES = [
    b" alt",
    b" ALT",
    b" Src",
    b" src",
    b" data-src",
    b" srcset",
    b" lang",
    b" href",
    b" title",
    b" x",
    b"=",
    b" = ",
    b'"a b"',
    b"'q'",
    b"v",
    b'""',
    b"&amp;",
    b"&eacute",
    b"\x00",
    b"\r\n",
    b"\n",
    b"\x0b",
    b"\t",
    b"/",
    b" ",
    b"\xc3\xa9",
    b"\xe6\x97\xa5",
    b"\xff",
    b'"',
    b"'",
    b"<",
    b"`",
]


def _lexbor_attributes(tag: bytes) -> dict | None:
    nodes = LexborHTMLParser(tag).css("img")
    if len(nodes) != 1:
        return None
    return {name: value for name, value in nodes[0].attributes.items() if name in _WANTED}


@pytest.mark.parametrize("seed", range(4))
def test_tag_attributes_read_tags_as_lexbor_does(seed: int, tagscan: ModuleType) -> None:
    """Whenever the reader answers for a tag (a dict), it is exactly what Lexbor's tokenizer gives."""
    rng = random.Random(seed)
    answered = 0
    for _ in range(3_000):
        # The scanner only hands over tags whose name "img" ends in whitespace, "/" or ">".
        tag = (
            rng.choice((b"<img ", b"<img/", b"<IMG\n"))
            + b"".join(rng.choice(_TAG_PIECES) for _ in range(rng.randint(1, 14)))
            + b">"
        )
        (result,) = tagscan.tag_attributes(tag, [(0, len(tag))], _WANTED)
        if result is False:
            with pytest.raises(UnicodeDecodeError):
                tag.decode("utf-8")
        elif result is not None:
            answered += 1
            assert result == _lexbor_attributes(tag), tag
    assert answered > 500  # most generated tags are simple enough to be read without the parser


def test_tag_attributes_on_every_img_tag_of_the_real_pages(tagscan: ModuleType) -> None:
    checked = 0
    for path in sorted(shared_path("warc/warcfile.warc.gz").parent.glob("*.warc*")):
        with open(path, "rb") as stream:
            for item in iter_warc_items(stream, str(path), 5_000_000, 20_000_000):
                if not isinstance(item, HtmlResponse):
                    continue
                _, with_alt, _, _ = tagscan.scan_page(item.body)
                spans = [(start, end) for _, start, end in with_alt]
                for (start, end), result in zip(spans, tagscan.tag_attributes(item.body, spans, _WANTED), strict=True):
                    if isinstance(result, dict):
                        checked += 1
                        assert result == _lexbor_attributes(item.body[start:end]), item.body[start:end]
    assert checked >= 300


@pytest.mark.parametrize(("seed", "declared"), [(0, []), (1, ["utf-8"]), (2, ["cp1252"]), (3, ["euc_jp"])])
def test_pages_read_without_lexbor_equal_the_lexbor_path(seed: int, declared: list[str], tagscan: ModuleType) -> None:
    """Where find_images reads a page's tags itself, it must give what parsing those tags with Lexbor gives, in
    UTF-8 and (tags transcoded first) in other charsets."""
    pieces = [*_PIECES, *_TAG_PIECES, b'<img src="a.jpg" alt="x">', b'<img data-src=b srcset="c 2x, d 100w" alt=y>']
    pieces += [b"\xa4\xa2", b"\xb0\xa1\xb0", b'<img alt="\xc6\xfc\xcb\xdc" src=j.png>']  # EUC-JP and cut sequences
    rng = random.Random(seed)
    read = 0
    for _ in range(5_000):
        document = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        scanned = tagscan.scan_page(document)
        if not scanned[0]:
            continue
        page = html_images._images_of_tags(document, declared, scanned)
        if page is not None:
            read += 1
            assert page == html_images._images_of_parsed_tags(document, declared, scanned), document
    assert read > 1_000


def test_tag_attributes_rejects_spans_outside_the_body(tagscan: ModuleType) -> None:
    with pytest.raises(ValueError):
        tagscan.tag_attributes(b"<img alt=x>", [(0, 99)], _WANTED)
    with pytest.raises(TypeError):
        tagscan.tag_attributes(b"<img alt=x>", [(0, 11)], ("alt", 1))


def test_find_images_is_the_same_with_the_pure_python_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no C compiler was available the fallback runs: it must extract exactly the same images."""
    bodies = []
    for name in ("warcfile.warc.gz", "iana.warc.gz"):
        with open(shared_path(f"warc/{name}"), "rb") as stream:
            bodies += [
                item for item in iter_warc_items(stream, name, 5_000_000, 20_000_000) if isinstance(item, HtmlResponse)
            ]
    assert bodies
    compiled = [find_images(item.body, item.charset) for item in bodies]
    # What pipeline.html.scan gives find_images where the import of the compiled module fails.
    monkeypatch.setattr(html_images, "scan_page", scan_page_reference)
    monkeypatch.setattr(html_images, "tag_attributes", None)
    assert [find_images(item.body, item.charset) for item in bodies] == compiled


# Pieces around <html> and <base>: conditional comments (hiding and revealing), comments, scripts and other raw
# text holding the tags, the tags inside attribute values, and tags that do not close.
_HEAD_PIECES = [
    b"<!--[if IE 7]>",
    b"<![endif]-->",
    b"<!--[if gt IE 8]><!-->",
    b"<!--<![endif]-->",
    b"<![if !IE]>",
    b"<![endif]>",
    b"<!--",
    b"-->",
    b"--!>",
    b"<!-->",
    b"<!--->",
    b'<html class="no-js ie7">',
    b"<html lang=en>",
    b"<HTML LANG='de'>",
    b"<html",
    b"<htmlx>",
    b"<base href=/a/>",
    b'<BASE HREF="/b/">',
    b"<base target=_top>",
    b"<base",
    b"<script>",
    b'document.write("',
    b"</script>",
    b"<style>",
    b"</style>",
    b"<textarea>",
    b"</textarea>",
    b"<template>",
    b"</template>",
    b"<noscript>",
    b'<a title="',
    b'<img alt="',
    b'">',
    b"<img src=x alt=y>",
    b"<head>",
    b" ",
    b">",
    b'"',
]


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_the_reference_on_generated_html_and_base_tags(seed: int, tagscan: ModuleType) -> None:
    rng = random.Random(seed)
    found = Counter()
    for _ in range(5_000):
        document = b"".join(rng.choice(_HEAD_PIECES) for _ in range(rng.randint(0, 30)))
        expected = scan_page_reference(document)
        assert tagscan.scan_page(document) == expected, document
        found["html"] += expected[2] is not None
        found["base"] += expected[3] is not None
    assert min(found.values()) > 1_000  # the generated pages do exercise both tags


# Markup that hides an <html> or <base> tag from the parser (the tag is the "{}"), as real pages do.
_HIDING = [
    b"<!--[if IE 7]>{}<![endif]-->",
    b"<!--[if lt IE 9]><script src=h.js></script>{}<![endif]-->",
    b"<!-- {} -->",
    b"<!-- {} --!>",
    b'<script>document.write("{}");</script>',
    b"<script type=text/template>{}</script>",
    b"<style>/* {} */</style>",
    b"<noscript>x</noscript><textarea>{}</textarea>",
    b"<template>{}</template>",
    b'<img src=x.png alt="{}">',
    b'<a title="{}">link</a>',
]


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_path_finds_the_lang_and_base_a_full_parse_finds(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conditional comments, scripts and the like around the real <html>/<base>: the fast path (the compiled scanner
    and its reference) gives the page's lang and base exactly as --full-parse (Lexbor on the whole page) does."""
    rng = random.Random(seed)

    def hidden() -> bytes:
        tag = rng.choice((b"<html lang=hidden>", b'<html class="ie" lang="xx">', b"<base href=/hidden/>"))
        return b"".join(rng.choice(_HIDING).replace(b"{}", tag) for _ in range(rng.randint(0, 3)))

    # (markup, what it gives): the page's real <html> and <base> tags.
    htmls = [(b"<html lang=en-GB>", "en-GB"), (b"<html>", None), (b"", None)]
    bases = [(b'<base href="/real/">', "/real/"), (b"<base target=_top><base href=/later/>", "/later/"), (b"", None)]
    checked = Counter()
    for _ in range(400):
        (html, lang), (base, base_href) = rng.choice(htmls), rng.choice(bases)
        document = (
            b"<!DOCTYPE html>" + hidden() + html + hidden() + b"<head>" + hidden() + base + hidden() + b"</head>"
            b"<body>" + hidden() + b'<img src="a.png" alt="an image"></body></html>'
        )
        full = find_images(document, full_parse=True)
        assert (full.lang, full.base_href) == (lang, base_href), document
        for scanner in (scan.scan_page, scan_page_reference):
            monkeypatch.setattr(html_images, "scan_page", scanner)
            assert find_images(document) == full, (scanner, document)
        checked[(lang, base_href)] += 1
    assert len(checked) == 6  # every pairing of a lang or none with a base or none


# -- sha256_hex: the digests of pipeline.core.keys ---------------------------------------------------------------

_SHA256_CHECK = """
import hashlib, random, sys
sys.path.insert(0, {root!r})
{load}
rounds = module.sha256_rounds
generator = random.Random(7)
alphabet = "ab\\n\\x00\\xe9\\u20ac\\U0001f600\\u200b"
for length in list(range(0, 200)) + [447, 448, 511, 512, 513, 4095, 100_000]:
    for _ in range(3):
        text = "".join(
            generator.choice(alphabet) if generator.random() < 0.3 else chr(generator.randrange(32, 127))
            for _ in range(length)
        )
        for chars in (0, 1, 24, 63, 64):
            got, expected = module.sha256_hex(text, chars), hashlib.sha256(text.encode()).hexdigest()[:chars]
            assert got == expected, (rounds, length, chars, text[:80])
print(rounds)
"""


@pytest.mark.parametrize("portable", [False, True])
def test_sha256_hex_equals_hashlib(portable: bool, tagscan: ModuleType) -> None:
    """Every message length around SHA-256's block and padding boundaries, ASCII and multi-byte UTF-8, with the
    SHA-NI rounds where this CPU has them and with the portable rounds (``ALTCORPUS_SHA256_PORTABLE=1``): the
    module picks its rounds once at import, so each runs in a fresh interpreter."""
    import subprocess
    import sys
    from pathlib import Path

    loader = (
        "import importlib.machinery, importlib.util\n"
        f"loader = importlib.machinery.ExtensionFileLoader('_tagscan', {tagscan.__file__!r})\n"
        "module = importlib.util.module_from_spec(importlib.util.spec_from_loader('_tagscan', loader))\n"
        "loader.exec_module(module)"
    )
    environment = {**os.environ, "ALTCORPUS_SHA256_PORTABLE": "1" if portable else "0"}
    done = subprocess.run(
        [sys.executable, "-c", _SHA256_CHECK.format(root=str(Path(__file__).parents[3]), load=loader)],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rounds = done.stdout.strip()
    assert rounds == "portable" if portable else rounds in ("sha-ni", "portable")


def test_sha256_hex_refuses_what_str_encode_refuses(tagscan: ModuleType) -> None:
    with pytest.raises(UnicodeEncodeError):
        tagscan.sha256_hex("a lone surrogate \ud800", 24)
    with pytest.raises(TypeError):
        tagscan.sha256_hex(b"bytes", 24)
    with pytest.raises(ValueError):
        tagscan.sha256_hex("text", 65)
    with pytest.raises(ValueError):
        tagscan.sha256_hex("text", -1)
    with pytest.raises(TypeError):
        tagscan.sha256_hex("text")


def test_keys_use_the_compiled_digest_and_match_hashlib(tagscan: ModuleType) -> None:
    import hashlib

    from pipeline.core import keys

    assert keys._sha256_hex is tagscan.sha256_hex or os.environ.get("ALTCORPUS_TAGSCAN_BUILD")
    url, alt = "https://example.com/a.jpg?x=1", "Un chat \u00e9tonn\u00e9 \U0001f431"
    assert keys.sample_key(url, alt) == hashlib.sha256(f"{url}\n{alt}".encode()).hexdigest()[:24]
    assert (
        keys.candidate_id("s3://b/CC-1.warc.gz", 1234, 7) == (hashlib.sha256(b"CC-1.warc.gz\n1234\n7").hexdigest()[:24])
    )
