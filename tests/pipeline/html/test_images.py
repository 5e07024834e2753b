"""Unit tests of <img>/alt finding, URL choice and resolution, charset choice and alt normalisation on small HTML."""

from __future__ import annotations

import pytest

from pipeline.html.alt_text import normalise_alt
from pipeline.html.images import (
    UrlResolver,
    _slow_resolve,
    choose_image_url,
    find_images,
    html_document,
    largest_srcset_url,
    meta_charset,
    page_base,
    resolve_url,
)
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
    (tag,) = find_images(b'<img src="a.jpg" alt="Tom &amp; Jerry &eacute;t&eacute; &#x2014; &amp;eacute;">').images
    assert normalise_alt(tag.alt) == "Tom & Jerry été — é"


def test_alt_normalisation_whitespace_nfc_and_invisible_characters() -> None:
    assert normalise_alt("  a\n\t b\u00a0\u00a0c\u3000d  ") == "a b c d"
    decomposed = "Cafe\u0301"
    assert normalise_alt(decomposed) == "Caf\u00e9"
    assert normalise_alt("zero\u200bwidth\ufeff") == "zerowidth"
    assert normalise_alt(" \n ") == ""
    assert normalise_alt(None) == ""


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
    assert codec == "euc_jp" and "日本語".encode() in document
    assert images_of(japanese) == [("a.jpg", "src", "日本語")]
    # The HTTP header wins over the meta tag.
    shift_jis = '<meta charset="utf-8"><img alt="日本語">'.encode("cp932")
    assert html_document(shift_jis, "Shift_JIS")[0] == '<meta charset="utf-8"><img alt="日本語">'.encode()
    assert find_images(shift_jis, "Shift_JIS").images[0].alt == "日本語"
    # Valid UTF-8 goes to the parser as it is.
    utf8 = '<img alt="naïve">'.encode()
    assert html_document(utf8) == (utf8, "utf-8")
    # Undeclared, not UTF-8: cp1252, with its undefined bytes kept (0x81 -> U+0081), nothing lost.
    text, codec = html_document(b'<img alt="caf\xe9 \x80 \x81">')
    assert codec == "cp1252" and text == '<img alt="caf\u00e9 \u20ac \x81">'.encode()
    # A declared charset with a few bad bytes is still trusted (replacement characters for the bad bytes).
    text, codec = html_document('<img alt="日本">'.encode("euc-jp") + b"\xff", "euc-jp")
    assert codec == "euc_jp" and "日本".encode() in text
    # A meta http-equiv declaration counts too.
    assert meta_charset(b'<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1251">') == "windows-1251"
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


def test_fast_url_resolution_equals_urljoin() -> None:
    raws = ["/a.jpg", "//cdn.example/b.jpg#f", "http://h.example:8080/c", "d.jpg", "/./e", "http://u@h/x", "?q", "#f"]
    raws += ["./x/y.jpg", "././z.png", "../up.gif", "a:b", "img/a:b.jpg", ".hidden", "data:x", "x.jpg?q=1#f", ""]
    for base in ("https://Example.org/dir/page?x=1", "http://h.example", "http://h.example/", "http://h.example?q"):
        resolver = UrlResolver(base)
        for raw in raws:
            assert resolver.resolve(raw) == _slow_resolve(raw, base), (base, raw)
