"""The one image sniffer: what the first bytes of a body say it is, whatever its ``Content-Type`` claims.

Magic bytes decide, never ``Content-Type``: servers label JPEGs ``text/plain`` and error pages ``image/jpeg``.

The decision on SVG: SVG is an image *format* but not a *raster* one, and the two callers ask different questions.
- ``pipeline/html/warc.py`` asks "is this archived record an image response?" with ``sniff_image_type``, which
  says ``"svg"``: an untyped SVG record is kept as an image, so ``fetch`` sees it and records it as
  ``not_an_image`` exactly as it would have over HTTP, instead of the record vanishing as ``skipped_other_types``.
- ``fetch`` (``pipeline/stages/fetch.py``, ``pipeline/net/client.py``, ``pipeline/images/process.py``) asks "is
  this a picture we can decode?" with ``sniff_raster_type``, which says ``None`` for SVG: the corpus stores pixels,
  and rendering SVG would take a renderer (scripts, external references) for drawings with no photo in them.
"""

from __future__ import annotations

#: Bytes needed to recognise every raster signature.
SNIFF_BYTES = 16
#: Bytes searched for an ``<svg`` element after an XML declaration.
SVG_SNIFF_BYTES = 1024

#: Raster types ``sniff_image_type`` can return (Pillow decodes each, see ``process.DECODABLE_FORMATS``).
RASTER_TYPES = ("jpeg", "png", "gif", "webp", "bmp", "tiff", "avif", "ico")

_PREFIXES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),  # little-endian
    (b"MM\x00*", "tiff"),  # big-endian
)
#: ISO-BMFF brands (bytes 8-12, after ``ftyp``) of AVIF and HEIF files, both reported as ``avif``.
_AVIF_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1")


def sniff_image_type(head: bytes) -> str | None:
    """The image type the first bytes announce: one of ``RASTER_TYPES``, ``"svg"``, or ``None`` when not an image.

    Give it ``SNIFF_BYTES`` for raster types; an SVG after an XML declaration is only found within
    ``SVG_SNIFF_BYTES``.
    """
    for prefix, image_type in _PREFIXES:
        if head.startswith(prefix):
            return image_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _AVIF_BRANDS:
        return "avif"
    if head.startswith(b"\x00\x00\x01\x00"):  # after AVIF: an ftyp box of 256 bytes starts with these too
        return "ico"
    start = head[:256].lstrip().lower()
    if start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in head[:SVG_SNIFF_BYTES].lower()):
        return "svg"
    return None


def sniff_raster_type(head: bytes) -> str | None:
    """The raster type the first bytes announce, or ``None`` for SVG and anything else: what fetch may decode."""
    image_type = sniff_image_type(head)
    return image_type if image_type in RASTER_TYPES else None
