"""The one image sniffer: every format's magic bytes, written by a real encoder where Pillow has one, and SVG."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.images.sniff import RASTER_TYPES, SNIFF_BYTES, SVG_SNIFF_BYTES, sniff_image_type, sniff_raster_type
from tests.fixtures.http_server import HTML_PAGE, photo


def written_by_pillow(image_format: str, **options: object) -> bytes:
    """A small real photo saved by Pillow in ``image_format``."""
    image = Image.fromarray(photo("chelsea")).resize((64, 48))
    output = io.BytesIO()
    image.save(output, image_format, **options)
    return output.getvalue()


PILLOW_FORMATS = {
    "JPEG": "jpeg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
    "ICO": "ico",
    "AVIF": "avif",
}


@pytest.mark.parametrize(("image_format", "expected"), PILLOW_FORMATS.items(), ids=PILLOW_FORMATS)
def test_each_format_written_by_pillow_is_recognised(image_format: str, expected: str) -> None:
    Image.init()
    if image_format not in Image.SAVE:
        pytest.fail(f"this Pillow cannot write {image_format}; the sniffer's test needs it")
    head = written_by_pillow(image_format)[:SNIFF_BYTES]
    assert sniff_image_type(head) == expected
    assert sniff_raster_type(head) == expected


# Signatures Pillow does not write (or not by default): the bytes as their specifications give them.
SIGNATURES = {
    "GIF87a": (b"GIF87a\x40\x00\x30\x00\x80\x00\x00", "gif"),
    "big-endian TIFF": (b"MM\x00*\x00\x00\x00\x08", "tiff"),
    "HEIC brand": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "avif"),
    "AVIF sequence": (b"\x00\x00\x00\x20ftypavis\x00\x00\x00\x00", "avif"),
    "MIF1 brand": (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00", "avif"),
    "AVIF with a 256-byte ftyp box": (b"\x00\x00\x01\x00ftypavif\x00\x00\x00\x00", "avif"),
}


@pytest.mark.parametrize(("head", "expected"), SIGNATURES.values(), ids=SIGNATURES)
def test_signatures_from_the_specifications(head: bytes, expected: str) -> None:
    assert sniff_image_type(head[:SNIFF_BYTES]) == expected
    assert sniff_raster_type(head[:SNIFF_BYTES]) == expected


SVG_DOCUMENTS = {
    "bare": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "upper case after whitespace": b'\n  <SVG xmlns="http://www.w3.org/2000/svg"/>',
    "after an XML declaration": b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg">',
    "after a declaration and a doctype": (
        b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    ),
}


@pytest.mark.parametrize("document", SVG_DOCUMENTS.values(), ids=SVG_DOCUMENTS)
def test_svg_is_an_image_but_not_a_raster(document: bytes) -> None:
    """The documented decision: warc keeps an SVG record as an image, fetch calls it not_an_image."""
    assert sniff_image_type(document[:SVG_SNIFF_BYTES]) == "svg"
    assert sniff_raster_type(document[:SVG_SNIFF_BYTES]) is None
    assert "svg" not in RASTER_TYPES


def test_svg_declared_beyond_the_sniff_window_is_not_seen() -> None:
    late = b'<?xml version="1.0"?>\n<!--' + b" " * SVG_SNIFF_BYTES + b"-->\n<svg/>"
    assert sniff_image_type(late) is None


NOT_IMAGES = {
    "HTML page": HTML_PAGE,
    "XML that is not SVG": b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>',
    "plain text": b"plain text",
    "JSON": b'{"error": "not found"}',
    "empty": b"",
    "a truncated PNG signature": b"\x89PNG\r\n",
    "RIFF that is not WebP": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "ftyp of an MP4 video": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00",
}


@pytest.mark.parametrize("head", NOT_IMAGES.values(), ids=NOT_IMAGES)
def test_what_is_not_an_image(head: bytes) -> None:
    assert sniff_image_type(head[:SVG_SNIFF_BYTES]) is None
    assert sniff_raster_type(head[:SVG_SNIFF_BYTES]) is None
