"""Unit tests of URL choice (``srcset``) and resolution: relative URLs, fragments, non-web and broken URLs."""

from __future__ import annotations

import pytest

from pipeline.html.urls import UrlResolver, _slow_resolve, largest_srcset_url, page_base, resolve_url

PAGE = "http://Example.COM/dir/page.html?q=1#top"


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


def test_fast_url_resolution_equals_urljoin() -> None:
    raws = ["/a.jpg", "//cdn.example/b.jpg#f", "http://h.example:8080/c", "d.jpg", "/./e", "http://u@h/x", "?q", "#f"]
    raws += ["./x/y.jpg", "././z.png", "../up.gif", "a:b", "img/a:b.jpg", ".hidden", "data:x", "x.jpg?q=1#f", ""]
    for base in ("https://Example.org/dir/page?x=1", "http://h.example", "http://h.example/", "http://h.example?q"):
        resolver = UrlResolver(base)
        for raw in raws:
            assert resolver.resolve(raw) == _slow_resolve(raw, base), (base, raw)
