"""WARC reading on real crawl files and on cut or corrupted copies of them: usable items or recorded problems."""

from __future__ import annotations

import gzip
import io
import zlib
from collections import Counter
from pathlib import Path

import brotli
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.html.warc import (
    HtmlResponse,
    ImageResponse,
    RecordProblem,
    WatLinks,
    decode_content,
    iter_warc_items,
    target_uri,
)
from pipeline.images.sniff import sniff_image_type
from tests.conftest import shared_path
from tests.fixtures.http_server import HTML_PAGE, SVG_DRAWING, encode, photo

LIMIT = 5_000_000


def items_of(path: Path | str, counts: Counter | None = None, max_page_bytes: int = LIMIT) -> list:
    with open(path, "rb") as stream:
        return list(iter_warc_items(stream, str(path), max_page_bytes, 20_000_000, counts))


def test_clueweb_warc_018_with_false_gzip_claim_and_invalid_date() -> None:
    counts: Counter = Counter()
    items = items_of(shared_path("warc/clueweb-quirk.warc.gz"), counts)
    pages = [item for item in items if isinstance(item, HtmlResponse)]
    assert len(pages) == 29 and counts["records"] == 30
    assert not [item for item in items if isinstance(item, RecordProblem)]
    # The header says Content-Encoding: gzip, but the body is plain HTML: passed through, not an error.
    assert all(page.body.lstrip().lower().startswith(b"<html") for page in pages)
    assert {page.charset for page in pages} == {"euc-jp"}
    assert pages[0].info.date == "2008-10-294T05:21:46-0700"  # kept as written, although invalid
    assert pages[0].info.url.startswith("http://www.uraharajuku.st/")


def test_truncated_gzip_member_is_recorded_with_the_offset_reached(tmp_path: Path) -> None:
    original = shared_path("warc/warcfile.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(original[:100_000])
    items = items_of(cut)
    problems = [item for item in items if isinstance(item, RecordProblem)]
    assert [problem.reason for problem in problems] == ["truncated_file"]
    assert problems[0].info.offset == 99_077  # the gzip member that the cut falls into
    assert "offset 99077" in problems[0].detail and "of 35214 bytes" in problems[0].detail
    # Every page before the cut is still read.
    assert sum(isinstance(item, HtmlResponse) for item in items) >= 10


def test_truncated_plain_warc_inside_an_unused_record_is_noticed(tmp_path: Path) -> None:
    original = shared_path("warc/cc-2014-35-sample.warc").read_bytes()
    # Cut inside the first request record's block (offset 648, header ~700 bytes long).
    cut = tmp_path / "cut.warc"
    cut.write_bytes(original[:1500])
    problems = [item for item in items_of(cut) if isinstance(item, RecordProblem)]
    assert [(problem.reason, problem.info.offset) for problem in problems] == [("truncated_file", 648)]
    cut.write_bytes(original[:150_000])
    problems = [item for item in items_of(cut) if isinstance(item, RecordProblem)]
    assert [(problem.reason, problem.info.offset) for problem in problems] == [("truncated_file", 12_786)]


def test_bad_files_from_warcio_and_resiliparse_give_problems_or_pages_never_exceptions() -> None:
    trunc = items_of(shared_path("warc/example-trunc.warc"))
    problems = [item for item in trunc if isinstance(item, RecordProblem)]
    assert [problem.reason for problem in problems] == ["truncated_content"]
    assert "gzip stream ends early" in problems[0].detail
    (page,) = [item for item in trunc if isinstance(item, HtmlResponse)]
    assert page.body.startswith(b"<!doctype html>")  # the part before the cut is decoded and used

    non_chunked = items_of(shared_path("warc/example-bad-non-chunked.warc.gz"))
    assert [type(item) for item in non_chunked] == [HtmlResponse]

    clipped = items_of(shared_path("warc/clipped.warc.gz"))
    assert [type(item) for item in clipped] == [RecordProblem, HtmlResponse]
    assert clipped[0].reason == "truncated_file" and "74970 of 88038" in clipped[0].detail


def test_garbage_and_empty_input_do_not_crash(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.warc.gz"
    garbage.write_bytes(bytes(range(256)) * 40)
    assert all(isinstance(item, RecordProblem) for item in items_of(garbage))
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    assert [item.reason for item in items_of(empty)] == ["not_a_warc"]  # recorded, no longer silently nothing
    # A valid file followed by garbage: the records before the garbage are all read.
    mixed = tmp_path / "mixed.warc.gz"
    mixed.write_bytes(shared_path("warc/jwarc-cc.warc.gz").read_bytes() + b"\x1f\x8b\x08garbage" * 50)
    items = items_of(mixed)
    assert isinstance(items[0], HtmlResponse)


def test_pywb_archive_keeps_images_aside_and_skips_non_200_pages() -> None:
    counts: Counter = Counter()
    items = items_of(shared_path("warc/iana.warc.gz"), counts)
    images = [item for item in items if isinstance(item, ImageResponse)]
    types = {image.content_type.split(";")[0] for image in images}
    assert {"image/png", "image/svg+xml"} <= types
    assert all(sniff_image_type(image.body[:1024]) is not None for image in images)
    assert counts["skipped_status_not_200"] > 0
    assert sum(isinstance(item, HtmlResponse) for item in items) == 16


def test_page_over_the_size_limit_is_recorded() -> None:
    items = items_of(shared_path("warc/whirlwind.warc.gz"), max_page_bytes=10_000)
    problems = [item for item in items if isinstance(item, RecordProblem)]
    assert [problem.reason for problem in problems] == ["page_too_large"]
    assert not [item for item in items if isinstance(item, HtmlResponse)]


def test_wat_img_links_are_read() -> None:
    items = items_of(shared_path("warc/cc-2014-35-sample.warc.wat"))
    (links,) = [item for item in items if isinstance(item, WatLinks)]
    assert links.info.url == "http://0pointer.de/photos/?gallery=Australia&photo=496"
    assert ("./galleries/Australia/lq/img-496.jpg", "496") in links.images


def test_content_encoding_decoding() -> None:
    page = b"<html><body>" + b"<img src=a.jpg alt=x>" * 100 + b"</body></html>"
    assert decode_content(gzip.compress(page), "gzip", LIMIT) == (page, None, "")
    assert decode_content(zlib.compress(page), "deflate", LIMIT) == (page, None, "")
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert decode_content(raw_deflate.compress(page) + raw_deflate.flush(), "deflate", LIMIT)[0] == page
    assert decode_content(brotli.compress(page), "br", LIMIT) == (page, None, "")
    # False claims pass the body through.
    assert decode_content(page, "gzip", LIMIT) == (page, None, "")
    assert decode_content(page, "br", LIMIT) == (page, None, "")
    # A true claim with a broken stream is undecodable; a cut one gives the part before the cut.
    assert decode_content(b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip", LIMIT)[1] == "undecodable_page"
    cut, problem, _ = decode_content(gzip.compress(page)[:60], "gzip", LIMIT)
    assert problem == "truncated_content" and page.startswith(cut)
    # A decompression bomb stops at the limit.
    bomb = gzip.compress(b"\x00" * 10_000_000)
    assert decode_content(bomb, "gzip", 1_000_000)[1] == "page_too_large"


def test_untyped_records_are_sniffed_svg_included(tmp_path: Path) -> None:
    """An untyped body is an image when the one sniffer says so (SVG too, see pipeline/images/sniff.py)."""
    bodies = {
        "http://example.org/drawing": SVG_DRAWING,
        "http://example.org/photo": encode(photo("chelsea"), "PNG"),
        "http://example.org/page": HTML_PAGE,
        "http://example.org/data": b'{"error": "not found"}',
    }
    path = tmp_path / "untyped.warc.gz"
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, body in bodies.items():
            headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    counts: Counter = Counter()
    items = {item.info.url: type(item).__name__ for item in items_of(path, counts)}
    assert items == {
        "http://example.org/drawing": "ImageResponse",
        "http://example.org/photo": "ImageResponse",
        "http://example.org/page": "HtmlResponse",
    }
    assert counts["skipped_other_types"] == 1


def test_target_uri_unwraps_the_warc_1_0_brackets_and_counts_them() -> None:
    counts: Counter = Counter()
    assert target_uri("<https://example.org/a b?c=<d>>", counts) == "https://example.org/a b?c=<d>"
    assert target_uri("https://example.org/<x>", counts) == "https://example.org/<x>"
    assert target_uri("<", counts) == "<" and target_uri(None, counts) == ""
    assert counts == {"target_uri_unwrapped": 1}


def test_a_file_with_no_warc_record_is_a_recorded_problem(tmp_path: Path) -> None:
    """Empty files, plain text and an image named .warc.gz used to yield nothing at all: now one not_a_warc each."""
    files = {
        "empty.warc": b"",
        "notes.warc": b"these are my notes, not a web archive\n",
        "photo.warc.gz": encode(photo("astronaut"), "JPEG"),
    }
    details = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        items = items_of(tmp_path / name)
        assert [type(item) for item in items] == [RecordProblem], name
        assert items[0].reason == "not_a_warc" and items[0].info.offset == 0
        details[name] = items[0].detail
    assert "empty" in details["empty.warc"]
    assert "these are my notes" in details["notes.warc"]
    assert "an image (jpeg)" in details["photo.warc.gz"]
    # A real WARC gives no such problem.
    assert not [item for item in items_of(shared_path("warc/jwarc-cc.warc.gz")) if isinstance(item, RecordProblem)]
