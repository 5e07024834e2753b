"""Writing ``sample.warc.gz``: one gzip member per record, fixed WARC-Dates and record ids derived from the seed, so
the same seed gives the same bytes."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.sample.hosts import BLOG, SHOP

if TYPE_CHECKING:
    from pipeline.sample.builder import SampleBuilder

WARC_NAME = "sample.warc.gz"

# Crawl time of the first record; each later record is a few seconds after it, so WARC-Dates are fixed.
CRAWL_START = datetime(2024, 3, 4, 9, 30, 0, tzinfo=timezone.utc)

#: Responses that are neither HTML pages with images nor images: the extractor must pass over them quietly.
OTHER_RESPONSES: list[tuple[str, str, str, bytes]] = [
    (f"{SHOP}/robots.txt", "200 OK", "text/plain", b"User-agent: *\nDisallow: /cart/\n"),
    (f"{BLOG}/static/site.css", "200 OK", "text/css", b"body { font-family: serif; }\nfigure { margin: 0; }\n"),
    (
        f"{BLOG}/2019/gone.html",
        "404 Not Found",
        "text/html; charset=utf-8",
        b"<!DOCTYPE html><html><body><h1>Not found</h1></body></html>",
    ),
    (f"{BLOG}/old-home", "301 Moved Permanently", "text/html; charset=utf-8", b""),
]


class _RecordIds:
    """WARC-Record-IDs and WARC-Dates derived from the seed and the record's position: reruns write the same bytes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.count = 0

    def next(self) -> dict[str, str]:
        digest = hashlib.sha256(f"altcorpus-sample:{self.seed}:{self.count}".encode()).digest()
        date = CRAWL_START + timedelta(seconds=3 * self.count)
        self.count += 1
        return {
            "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>",
            "WARC-Date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def write_warc(builder: SampleBuilder, path: Path) -> None:
    """Write the archive: a warcinfo record, then each page (request + response) followed by the images it is the
    first to reference (response only), then a few other responses."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    ids = _RecordIds(builder.seed)
    with path.open("wb") as output:
        writer = WARCWriter(output, gzip=True)

        def response(url: str, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
            http_headers = StatusAndHeaders(status, [*headers, ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(body),
                length=len(body),
                http_headers=http_headers,
                warc_headers_dict=ids.next(),
            )
            writer.write_record(record)

        def request(url: str) -> None:
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = [("Host", parts.netloc), ("User-Agent", "altcorpus-sample/1.0"), ("Accept", "*/*")]
            http_headers = StatusAndHeaders(f"GET {target} HTTP/1.1", headers, is_http_request=True)
            record = writer.create_warc_record(
                url,
                "request",
                payload=io.BytesIO(b""),
                length=0,
                http_headers=http_headers,
                warc_headers_dict=ids.next(),
            )
            writer.write_record(record)

        info = (
            f"software: altcorpus make-sample (seed {builder.seed})\r\n"
            "format: WARC File Format 1.1\r\n"
            "description: generated sample; photos from scikit-image and scikit-learn\r\n"
        ).encode()
        warcinfo = writer.create_warc_record(
            "",
            "warcinfo",
            payload=io.BytesIO(info),
            length=len(info),
            warc_content_type="application/warc-fields",
            warc_headers_dict={**ids.next(), "WARC-Filename": WARC_NAME},
        )
        writer.write_record(warcinfo)

        written: set[str] = set()
        referenced = builder.images_by_page()
        for page in builder.pages:
            body = page.body()
            headers = [("Content-Type", page.content_type()), ("Server", "nginx")]
            if page.content_encoding:
                headers.append(("Content-Encoding", page.content_encoding))
            request(page.url)
            response(page.url, "200 OK", headers, body)
            for url in referenced.get(page.url, []):
                image = builder.images[url]
                if url in written or not image.archived:
                    continue
                written.add(url)
                response(url, "200 OK", [("Content-Type", image.content_type), ("Server", "nginx")], image.body)
        # Crawls also hold images no page of theirs links to (with few --pages, some CDN crops go unused): last.
        for url in sorted(builder.images):
            image = builder.images[url]
            if image.archived and url not in written:
                response(url, "200 OK", [("Content-Type", image.content_type), ("Server", "nginx")], image.body)
        for url, status, content_type, body in OTHER_RESPONSES:
            headers = [("Content-Type", content_type)]
            if status.startswith("301"):
                headers.append(("Location", f"{BLOG}/"))
            response(url, status, headers, body)
