"""Unit tests of <img>/alt finding, URL choice and resolution, charset choice and alt normalisation on small HTML."""

from __future__ import annotations

import pytest

from pipeline.alt_text import normalise_alt
from pipeline.html_images import (
    choose_image_url,
    find_images,
    html_document,
    largest_srcset_url,
    meta_charset,
    page_base,
    resolve_url,
)

PAGE = "http://Example.COM/dir/page.html?q=1#top"


def images_of(html: str | bytes) -> list[tuple[str | None, str | None, str | None]]:
    return [(tag.url, tag.url_attribute, tag.alt) for tag in find_images(html).images]


def test_base_href_is_resolved_against_the_page_and_used_for_relative_urls() -> None:
    page = find_images('<html lang="fr"><head><base href="/static/v2/"></head><body><img src="a.png" alt="A">')
    assert page.lang == "fr"
    base = page_base(PAGE, page.base_href)
    assert base == "http://Example.COM/static/v2/"
    assert resolve_url("a.png", base) == ("http://Example.COM/static/v2/a.png", "example.com", None)


def test_relative_urls_resolve_against_the_page_and_lose_their_fragment() -> None:
    assert resolve_url("../img/x.jpg#frag", PAGE)[0] == "http://Example.COM/img/x.jpg"
    assert resolve_url("//cdn.example.org/y.jpg", PAGE)[:2] == ("http://cdn.example.org/y.jpg", "cdn.example.org")
    assert resolve_url("/root.gif", "https://h.example/a/b")[0] == "https://h.example/root.gif"
    assert resolve_url("  sp ace.jpg\n", "http://h.example/")[0] == "http://h.example/sp%20ace.jpg"
    # A <base href> that is not a web URL is ignored (the page URL stays the base).
    assert page_base(PAGE, "javascript:void(0)") == PAGE


def test_srcset_largest_candidate_by_width_then_density() -> None:
    assert largest_srcset_url("small.jpg 320w, large.jpg 1024w, medium.jpg 640w") == "large.jpg"
    assert largest_srcset_url("a.jpg, b.jpg 2x, c.jpg 1.5x") == "b.jpg"
    # URLs may contain commas; the HTML standard splits on whitespace first.
    assert largest_srcset_url("img,1.jpg 100w,img,2.jpg 200w") == "img,2.jpg"
    assert largest_srcset_url(" , ") is None
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
    (tag,) = find_images('<img src="a.jpg" alt="Tom &amp; Jerry &eacute;t&eacute; &#x2014; &amp;eacute;">').images
    assert normalise_alt(tag.alt) == "Tom & Jerry été — é"


def test_alt_normalisation_whitespace_nfc_and_invisible_characters() -> None:
    assert normalise_alt("  a\n\t b\u00a0\u00a0c\u3000d  ") == "a b c d"
    decomposed = "Cafe\u0301"
    assert normalise_alt(decomposed) == "Caf\u00e9"
    assert normalise_alt("zero\u200bwidth\ufeff") == "zerowidth"
    assert normalise_alt(" \n ") == ""
    assert normalise_alt(None) == ""


def test_broken_markup_still_yields_every_img() -> None:
    html = b"""<html><body><div><p><img src=unquoted.jpg alt=unquoted><table><tr><img src='t.jpg' alt='in table'>
      <b><i></b></i><img SRC="UPPER.JPG" ALT="Upper case">
      <!-- <img src="commented.jpg" alt="comment"> -->
      <script>document.write('<img src="script.jpg" alt="script">')</script>
      <img src="last.jpg" alt="unclosed tag at the end" """
    found = images_of(html)
    assert ("unquoted.jpg", "src", "unquoted") in found
    assert ("t.jpg", "src", "in table") in found
    assert ("UPPER.JPG", "src", "Upper case") in found
    assert all(url not in ("commented.jpg", "script.jpg") for url, _, _ in found)


def test_missing_alt_and_empty_alt_are_told_apart_but_neither_is_a_caption() -> None:
    no_alt, empty_alt, blank_alt = find_images('<img src="a.jpg"><img src="b.jpg" alt=""><img src="c" alt="  ">').images
    assert no_alt.alt is None and empty_alt.alt == "" and blank_alt.alt == "  "
    assert [normalise_alt(tag.alt) for tag in (no_alt, empty_alt, blank_alt)] == ["", "", ""]
    assert [tag.ordinal for tag in (no_alt, empty_alt, blank_alt)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", "unsupported_url_scheme"),
        ("javascript:void(0)", "unsupported_url_scheme"),
        ("mailto:someone@example.org", "unsupported_url_scheme"),
        ("http://[::1/broken-ipv6.jpg", "invalid_url"),
        ("http://host.example:99999999/x.jpg", "invalid_url"),
        ("https:///no-host.jpg", "invalid_url"),
        ("https://ok.example/x.jpg", None),
    ],
)
def test_non_web_and_broken_urls_are_flagged(raw: str, problem: str | None) -> None:
    assert resolve_url(raw, PAGE)[2] == problem


def test_charset_order_header_then_meta_then_utf8_then_lossless_cp1252() -> None:
    japanese = '<meta charset="euc-jp"><img src="a.jpg" alt="日本語">'.encode("euc-jp")
    assert meta_charset(japanese) == "euc-jp"
    document, codec = html_document(japanese)
    assert codec == "euc_jp" and "日本語" in document
    # The HTTP header wins over the meta tag.
    shift_jis = '<img alt="日本語">'.encode("cp932")
    assert html_document(shift_jis, "Shift_JIS")[0] == '<img alt="日本語">'
    # Valid UTF-8 goes to the parser as bytes, undecoded.
    utf8 = '<img alt="naïve">'.encode()
    assert html_document(utf8) == (utf8, "utf-8")
    # Undeclared, not UTF-8: cp1252, with its undefined bytes kept (0x81 -> U+0081), nothing lost.
    text, codec = html_document(b'<img alt="caf\xe9 \x80 \x81">')
    assert codec == "cp1252" and text == '<img alt="caf\u00e9 \u20ac \x81">'
    # A declared charset with a few bad bytes is still trusted (replacement characters for the bad bytes).
    text, codec = html_document('<img alt="日本">'.encode("euc-jp") + b"\xff", "euc-jp")
    assert codec == "euc_jp" and "日本" in text
    # A meta http-equiv declaration counts too.
    assert meta_charset(b'<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1251">') == "windows-1251"
