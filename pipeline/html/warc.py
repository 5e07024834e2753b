"""Reading WARC files with fastwarc: the records ``extract`` needs, decoded, and every problem as a value.

``iter_warc_items`` walks one WARC (or WAT) stream and yields, in file order:

* ``HtmlResponse``: an HTML page (Content-Type text/html or application/xhtml+xml, or an untyped body that starts
  like HTML), HTTP status 200, content-encoding removed;
* ``ImageResponse``: an image response (Content-Type image/*, or an untyped body with an image's magic bytes),
  any status, so ``fetch`` can serve it from the archive (and see its status and X-Robots-Tag);
* ``WatLinks``: the ``IMG@/src`` links of a Common Crawl WAT metadata record;
* ``RecordProblem``: a record or file that could not be read, with a reason from this closed list:
  ``truncated_file`` (the stream ended inside a record: a cut gzip member or plain file; detail says where),
  ``truncated_content`` (the HTTP body ends before its content-encoding stream does; the partial page is still
  used), ``malformed_record`` (fastwarc could not parse the WARC/HTTP framing), ``undecodable_page`` (the
  content-encoding claim is true but the body does not decode), ``page_too_large`` (over
  ``ExtractConfig.max_page_bytes``, before or after decoding), ``archived_image_too_large`` (over
  ``FetchConfig.max_image_bytes``; fetch may still get it over HTTP), ``malformed_wat`` (a WAT record whose
  JSON does not parse), ``not_a_warc`` (the file holds no WARC record at all: empty, plain text, an image under a
  ``.warc.gz`` name; detail says what it starts with).

Offsets are fastwarc's ``stream_pos``: the byte offset of the record in a plain WARC, the offset of its gzip member
in a per-record-gzipped one (what Common Crawl's indexes call the offset). Records that are not used are consumed
without copying, but still checked for truncation, so a file cut inside a request record is not missed.
fastwarc detects gzip, lz4, zstd or plain input itself. A WARC/1.0 ``WARC-Target-URI: <uri>`` (wget 1.19-1.21) is
read as ``uri`` (``target_uri``), and counted.
"""

from __future__ import annotations

import io
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastwarc import ArchiveIterator, WarcRecordType
from fastwarc.stream_io import BrotliReader, ZstdReader

from pipeline.crawl.stream import CrawlFileError
from pipeline.images.sniff import sniff_image_type

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: Types whose body is read and sniffed for HTML or image magic bytes, since servers label pages and images so.
SNIFFED_TYPES = frozenset({"", "text/plain", "application/octet-stream", "binary/octet-stream", "unknown/unknown"})
_USED_TYPES = WarcRecordType.response | WarcRecordType.resource
_SNIFF_BYTES = 1024
WAT_IMG_PATH = "IMG@/src"


@dataclass(slots=True)
class RecordInfo:
    """Where a record is and what the WARC says about it."""

    warc_file: str
    offset: int
    url: str
    record_id: str | None
    date: str | None


@dataclass(slots=True)
class HtmlResponse:
    """An HTML page, body decoded from its content-encoding (not yet from its charset)."""

    info: RecordInfo
    body: bytes
    charset: str | None


@dataclass(slots=True)
class ImageResponse:
    """An archived image response: status, type, opt-out header and the body (content-encoding removed)."""

    info: RecordInfo
    status: int | None
    content_type: str | None
    x_robots_tag: str | None
    body: bytes


@dataclass(slots=True)
class WatLinks:
    """The ``<img>`` links a WAT metadata record lists for one page: ``(src, alt)`` pairs, plus the page's base."""

    info: RecordInfo
    base_href: str | None
    images: list[tuple[str, str | None]]


@dataclass(slots=True)
class RecordProblem:
    """A record (or the file from it on) that could not be used, with a machine-readable reason."""

    info: RecordInfo
    reason: str
    detail: str


WarcItem = HtmlResponse | ImageResponse | WatLinks | RecordProblem


def looks_like_html(head: bytes) -> bool:
    """Whether an untyped body starts like an HTML page."""
    start = head[:_SNIFF_BYTES].lower()
    return b"<html" in start or b"<!doctype html" in start


def decode_content(body: bytes, encoding: str | None, limit: int) -> tuple[bytes, str | None, str]:
    """Undo HTTP Content-Encoding: ``(body, problem, detail)``; problem is None, a RecordProblem reason, or
    ``truncated_content`` with the partial body. A false claim (a gzip page whose bytes are not gzip, which
    ClueWeb and others store) passes the body through unchanged."""
    coding = (encoding or "").strip().lower()
    if not body or coding in ("", "identity", "none", "utf-8", "binary", "chunked"):
        return body, None, ""
    if coding in ("gzip", "x-gzip", "deflate"):
        if coding != "deflate" and not body.startswith(b"\x1f\x8b"):
            return body, None, ""
        # Servers send both zlib-wrapped (0x78...) and raw deflate under "deflate"; 47 auto-detects gzip or zlib.
        wbits = -15 if coding == "deflate" and body[:1] != b"\x78" else 47
        inflater = zlib.decompressobj(wbits)
        try:
            decoded = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            if coding == "deflate" and body.lstrip()[:1] == b"<":
                return body, None, ""  # claimed deflate, actually plain markup
            return b"", "undecodable_page", f"{coding} content-encoding: {error}"
        if len(decoded) > limit:
            return b"", "page_too_large", f"more than {limit} bytes after {coding} decoding"
        if not inflater.eof:
            return (
                decoded,
                "truncated_content",
                f"{coding} stream ends early ({len(body)} bytes in, {len(decoded)} out)",
            )
        return decoded, None, ""
    if coding in ("br", "zstd"):
        reader_class = BrotliReader if coding == "br" else ZstdReader
        try:
            decoded = reader_class(io.BytesIO(body)).read(limit + 1)
        except (OSError, ValueError) as error:
            if body.lstrip()[:1] == b"<":
                return body, None, ""
            return b"", "undecodable_page", f"{coding} content-encoding: {error}"
        if len(decoded) > limit:
            return b"", "page_too_large", f"more than {limit} bytes after {coding} decoding"
        return decoded, None, ""
    # An unknown coding: use the body if it is readable as is, else say why it was dropped.
    if body.lstrip()[:1] == b"<" or sniff_image_type(body[:_SNIFF_BYTES]) is not None:
        return body, None, ""
    return b"", "undecodable_page", f"unsupported content-encoding {coding!r}"


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _short(value: str | None, limit: int = 2000) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def target_uri(value: str | None, counts: Counter | None = None) -> str:
    """A WARC-Target-URI as a plain URL. WARC/1.0 (ISO 28500:2009) wrote it ``<uri>``, like WARC-Record-ID, and wget
    1.19-1.21 does; WARC/1.1 dropped the brackets. Unwrapped, each counted in ``counts["target_uri_unwrapped"]``."""
    uri = value or ""
    if uri[:1] == "<" and uri[-1:] == ">":
        uri = uri[1:-1]
        if counts is not None:
            counts["target_uri_unwrapped"] += 1
    return uri


def iter_warc_items(
    stream: BinaryIO | str,
    warc_file: str,
    max_page_bytes: int,
    max_image_bytes: int,
    counts: Counter | None = None,
) -> Iterator[WarcItem]:
    """Every usable item and every problem of one WARC/WAT stream, in file order (see the module docstring)."""
    counts = counts if counts is not None else Counter()
    info = RecordInfo(warc_file, 0, "", None, None)
    records = ArchiveIterator(stream, parse_http=True, quirks_mode=True, strict_mode=False)
    seen = 0
    try:
        for record in records:
            seen += 1
            counts["records"] += 1
            headers = record.headers
            info = RecordInfo(
                warc_file,
                record.stream_pos,
                _short(target_uri(headers.get("WARC-Target-URI"), counts)) or "",
                record.record_id,
                headers.get("WARC-Date"),
            )
            record_type = record.record_type
            expected = record.content_length
            if record_type & _USED_TYPES:
                item = _read_response(record, info, expected, max_page_bytes, max_image_bytes, counts)
            elif (
                record_type == WarcRecordType.metadata
                and _media_type(headers.get("Content-Type")) == "application/json"
            ):
                item = _read_wat(record, info, expected, counts)
            else:
                item = None
                consumed = record.consume()
                if consumed < expected:
                    item = _truncated(info, consumed, expected)
            if item is None:
                continue
            if type(item) is tuple:
                yield from item
            else:
                yield item
    except CrawlFileError:
        raise  # the input itself failed (a crawl file past its retries), not a record: the caller records the file
    except Exception as error:
        yield RecordProblem(info, "malformed_record", f"{type(error).__name__}: {error} (after offset {info.offset})")
        return
    if not seen:  # fastwarc skips what it cannot parse, so a file with no record at all would otherwise pass silently
        yield RecordProblem(info, "not_a_warc", _not_a_warc_detail(stream))


def _not_a_warc_detail(stream: BinaryIO | str) -> str:
    """What a file without a single WARC record holds instead, from its first bytes (when it can be re-read)."""
    try:
        if isinstance(stream, str):
            with open(stream, "rb") as file:
                head = file.read(64)
        else:
            stream.seek(0)
            head = stream.read(64)
    except (OSError, ValueError, AttributeError):  # a stream that cannot seek back: say only what is known
        return "no WARC or WAT record found"
    if not head:
        return "no WARC or WAT record found: the file is empty"
    kind = sniff_image_type(head)
    return f"no WARC or WAT record found: {f'an image ({kind})' if kind else f'it starts with {head[:40]!r}'}"


def _truncated(info: RecordInfo, got: int, expected: int) -> RecordProblem:
    return RecordProblem(
        info, "truncated_file", f"input ends inside the record at offset {info.offset}: {got} of {expected} bytes read"
    )


def _read_response(
    record, info: RecordInfo, expected: int, max_page_bytes: int, max_image_bytes: int, counts: Counter
) -> WarcItem | tuple[WarcItem, ...] | None:
    if record.is_http:
        http = record.http_headers
        status = http.status_code
        media_type = _media_type(http.get("Content-Type"))
        coding = http.get("Content-Encoding")
    else:
        http, status, coding = None, None, None
        media_type = _media_type(record.headers.get("Content-Type"))
    if media_type in HTML_TYPES:
        kind = "html"
    elif media_type.startswith("image/"):
        kind = "image"
    elif media_type in SNIFFED_TYPES:
        kind = "sniff"
    else:
        counts["skipped_other_types"] += 1
        return _skip(record, info, expected)
    if kind != "image" and status not in (200, None):
        # Redirects, errors and 304s carry no page to read; counted, not recorded as problems.
        counts["skipped_status_not_200"] += 1
        return _skip(record, info, expected)
    limit = max_image_bytes if kind == "image" else max_page_bytes
    if expected > limit:
        record.consume()
        reason = "archived_image_too_large" if kind == "image" else "page_too_large"
        return RecordProblem(info, reason, f"{expected} bytes, over the limit of {limit}")
    body = record.reader.read()
    if len(body) < expected:
        # The file ends inside this record. A cut image is not the archived object, but a cut page still holds
        # the <img> tags before the cut: both the problem and the partial page are reported.
        problem_item = _truncated(info, len(body), expected)
        if kind == "image" or (kind == "sniff" and not looks_like_html(body[:_SNIFF_BYTES])):
            return problem_item
        body, problem, _ = decode_content(body, coding, limit)
        if problem in (None, "truncated_content"):
            return (problem_item, HtmlResponse(info, body, record.http_charset if http is not None else None))
        return problem_item
    if kind == "sniff":
        head = body[:_SNIFF_BYTES]
        if sniff_image_type(head) is not None:  # SVG included: fetch then records it as not_an_image
            kind = "image"
        elif looks_like_html(head):
            kind = "html"
        else:
            counts["skipped_other_types"] += 1
            return None
    body, problem, detail = decode_content(body, coding, limit)
    if problem is not None and problem != "truncated_content":
        if problem == "page_too_large" and kind == "image":
            problem = "archived_image_too_large"
        return RecordProblem(info, problem, detail)
    if kind == "image":
        if problem == "truncated_content":
            return RecordProblem(info, problem, detail)
        return ImageResponse(
            info,
            status,
            (http.get("Content-Type") if http is not None else record.headers.get("Content-Type")) or None,
            http.get("X-Robots-Tag") if http is not None else None,
            body,
        )
    charset = record.http_charset if http is not None else None
    page = HtmlResponse(info, body, charset)
    if problem == "truncated_content":
        # The partial page is still a page: both are reported, the problem first.
        return (RecordProblem(info, problem, detail), page)
    return page


def _skip(record, info: RecordInfo, expected: int) -> RecordProblem | None:
    consumed = record.consume()
    return _truncated(info, consumed, expected) if consumed < expected else None


def _read_wat(record, info: RecordInfo, expected: int, counts: Counter) -> WarcItem | None:
    body = record.reader.read()
    if len(body) < expected:
        return _truncated(info, len(body), expected)
    if b"IMG@" not in body:
        return None
    try:
        envelope = json.loads(body)["Envelope"]
        response = envelope["Payload-Metadata"]["HTTP-Response-Metadata"]
        html_metadata = response.get("HTML-Metadata") or {}
        page_url = target_uri(envelope["WARC-Header-Metadata"].get("WARC-Target-URI")) or info.url
    except (ValueError, KeyError, TypeError) as error:
        return RecordProblem(info, "malformed_wat", f"{type(error).__name__}: {error}")
    counts["wat_records"] += 1
    base_href = None
    head = html_metadata.get("Head") or {}
    if isinstance(head.get("Base"), str):
        base_href = head["Base"]
    images = [
        (link.get("url") or "", link.get("alt"))
        for link in html_metadata.get("Links") or ()
        if isinstance(link, dict) and link.get("path") == WAT_IMG_PATH
    ]
    info.url = _short(page_url) or ""
    return WatLinks(info, base_href, images)
