"""Unit tests of <img>/alt finding (URL choice, charsets, broken markup) and alt normalisation on small HTML."""

from __future__ import annotations

import pytest

from pipeline.html.alt_text import normalise_alt
from pipeline.html.images import find_images
from pipeline.html.urls import choose_image_url, page_base, resolve_url
from pipeline.html.warc import HtmlResponse, iter_warc_items
from tests.conftest import shared_path

PAGE = "http://Example.COM/dir/page.html?q=1#top"


def images_of(html: str | bytes, full_parse: bool = False) -> list[tuple[str | None, str | None, str | None]]:
    body = html.encode() if isinstance(html, str) else html
    return [(tag.url, tag.url_attribute, tag.alt) for tag in find_images(body, full_parse=full_parse).images]


def test_base_href_is_resolved_against_the_page_and_used_for_relative_urls() -> None:
    page = find_images(b'<html lang="fr"><head><base href="/static/v2/"></head><body><img src="a.png" alt="A">')
    assert page.lang == "fr"
    base = page_base(PAGE, page.base_href)
    assert base == "http://Example.COM/static/v2/"
    assert resolve_url("a.png", base) == ("http://Example.COM/static/v2/a.png", "example.com", None)


def test_the_largest_srcset_candidate_is_the_url() -> None:
    html = '<img srcset="s.jpg 1x, l.jpg 3x" alt="set">'
    assert images_of(html) == [("l.jpg", "srcset", "set")]


def test_lazy_attributes_win_over_a_placeholder_src() -> None:
    html = """
      <img src="placeholder.gif" data-src="real.jpg" alt="lazy">
      <img src="p.gif" data-lazy-src="real2.jpg" alt="lazy2">
      <img src="p.gif" data-original="real3.jpg" alt="lazy3">
      <img src="data:image/gif;base64,R0lGOD" srcset="big.jpg 800w, small.jpg 200w" alt="inline placeholder">
      <img src="data:image/gif;base64,R0lGOD" data-srcset="x.jpg 2x" alt="lazy srcset">
      <img src="plain.jpg" srcset="other.jpg 2x" alt="src first">
    """
    assert images_of(html) == [
        ("real.jpg", "data-src", "lazy"),
        ("real2.jpg", "data-lazy-src", "lazy2"),
        ("real3.jpg", "data-original", "lazy3"),
        ("big.jpg", "srcset", "inline placeholder"),
        ("x.jpg", "data-srcset", "lazy srcset"),
        ("plain.jpg", "src", "src first"),
    ]
    assert choose_image_url({"alt": "x"}) == (None, None)


def test_entities_are_decoded_including_double_escaped_ones() -> None:
    (tag,) = find_images(b'<img src="a.jpg" alt="Tom &amp; Jerry &eacute;t&eacute; &#x2014; &amp;eacute;">').images
    assert normalise_alt(tag.alt) == "Tom & Jerry été — é"


def test_alt_normalisation_whitespace_nfc_and_invisible_characters() -> None:
    assert normalise_alt("  a\n\t b\u00a0\u00a0c\u3000d  ") == "a b c d"
    decomposed = "Cafe\u0301"
    assert normalise_alt(decomposed) == "Caf\u00e9"
    assert normalise_alt("zero\u200bwidth\ufeff") == "zerowidth"
    assert normalise_alt(" \n ") == ""
    assert normalise_alt(None) == ""


def test_every_invisible_character_is_dropped_from_non_ascii_alts() -> None:
    """Each dropped character alone, at either end and doubled, in alts that take the non-ASCII path (which looks
    for them before translating), and random mixes of them with other text against the plain definition."""
    import random
    import unicodedata

    dropped = "\x00\u200b\u200c\u200d\u2060\ufeff"
    for character in dropped:
        assert normalise_alt(f"{character}caf\u00e9{character}{character} au lait{character}") == "caf\u00e9 au lait"
    generator = random.Random(3)
    pieces = [*dropped, "a", "\u00e9", "e\u0301", " ", "\u00a0", "\u6f22", "\n"]
    for _ in range(2000):
        raw = "".join(generator.choice(pieces) for _ in range(generator.randrange(1, 12)))
        expected = unicodedata.normalize("NFC", " ".join("".join(c for c in raw if c not in dropped).split()))
        assert normalise_alt(raw) == expected, repr(raw)


@pytest.mark.parametrize("full_parse", [False, True])
def test_broken_markup_still_yields_every_img(full_parse: bool) -> None:
    html = b"""<html><body><div><p><img src=unquoted.jpg alt=unquoted><table><tr><img src='t.jpg' alt='in table'>
      <b><i></b></i><IMG SRC="UPPER.JPG" ALT="Upper case"><img/src="slash.jpg"/alt="slash">
      <!-- <img src="commented.jpg" alt="comment"> --><!--><img src="after-empty-comment.jpg" alt="e">
      <script>document.write('<img src="script.jpg" alt="script">')</script>
      <a title="<img src='attribute.jpg' alt='attr'>">link</a><img src="gt.jpg" alt="a > b">
      <textarea><img src="textarea.jpg" alt="t"></textarea><StYlE>.x{}</style><img src=x.jpg alt=it's>
      <img src="last.jpg" alt="unclosed tag at the end" """
    found = images_of(html, full_parse)
    assert found == [
        ("unquoted.jpg", "src", "unquoted"),
        ("t.jpg", "src", "in table"),
        ("UPPER.JPG", "src", "Upper case"),
        ("slash.jpg", "src", "slash"),
        ("after-empty-comment.jpg", "src", "e"),
        ("gt.jpg", "src", "a > b"),
        ("x.jpg", "src", "it's"),
    ]


@pytest.mark.parametrize("full_parse", [False, True])
def test_images_without_alt_are_counted_but_only_a_non_empty_alt_is_kept(full_parse: bool) -> None:
    page = find_images(
        b'<img src="a.jpg"><img src="b.jpg" alt=""><img src="c" alt="  "><img src=d alt=D>', full_parse=full_parse
    )
    assert page.img_count == 4
    blank, kept = page.images
    assert (blank.ordinal, blank.alt, normalise_alt(blank.alt)) == (2, "  ", "")
    assert (kept.ordinal, kept.url, kept.alt) == (3, "d", "D")


def test_pages_in_other_charsets_yield_their_alts() -> None:
    japanese = '<meta charset="euc-jp"><img src="a.jpg" alt="日本語">'.encode("euc-jp")
    assert images_of(japanese) == [("a.jpg", "src", "日本語")]
    # The HTTP header wins over the meta tag.
    shift_jis = '<meta charset="utf-8"><img alt="日本語">'.encode("cp932")
    assert find_images(shift_jis, "Shift_JIS").images[0].alt == "日本語"
    # UTF-16 (not ASCII-compatible) is transcoded before the tags are looked for.
    utf16 = '<html lang="ko"><img src="k.png" alt="한국어">'.encode("utf-16")
    page = find_images(utf16)
    assert page.lang == "ko" and [(tag.url, tag.alt) for tag in page.images] == [("k.png", "한국어")]


def test_fast_tag_scan_matches_a_full_parse_on_every_real_page() -> None:
    """The fast path must give exactly what a full Lexbor parse gives, on all real pages of the shared data."""
    pages = 0
    for path in sorted(shared_path("warc/warcfile.warc.gz").parent.glob("*.warc*")):
        with open(path, "rb") as stream:
            for item in iter_warc_items(stream, str(path), 5_000_000, 20_000_000):
                if isinstance(item, HtmlResponse):
                    pages += 1
                    fast = find_images(item.body, item.charset)
                    full = find_images(item.body, item.charset, full_parse=True)
                    assert fast == full, item.info.url
    assert pages >= 60
