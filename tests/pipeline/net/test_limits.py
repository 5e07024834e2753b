"""The fetch limits hold whatever the server does: time at every receive (status line, headers, 100 Continue, chunk
framing, trailers, robots.txt), bytes counted as received on the socket, and IPv6 literals as ordinary URLs.

Every server here is a real loopback TCP server writing exact bytes (``tests/fixtures/raw_server.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import time
import zlib
from collections.abc import Iterator

import pytest

from pipeline.core.config import FetchConfig
from pipeline.net.client import PoliteClient
from tests.fixtures.http_server import MisbehavingServer, encode, photo
from tests.fixtures.raw_server import RawServer, forever

TOTAL_S = 1.5
#: Slack for a loaded 2-core machine: the fetch must end within the total plus this, not after a retry or more.
SLACK_S = 0.8
DRIP_S = 0.05  # well under the read timeout: every receive succeeds, only the total limit can end the fetch
CAP = 2_000_000

CONFIG = FetchConfig(
    connect_timeout_s=1.0,
    read_timeout_s=1.0,
    total_timeout_s=TOTAL_S,
    max_image_bytes=CAP,
    max_redirects=3,
    max_retries=2,
    retry_backoff_s=0.05,
    allow_private_addresses=True,
)


@functools.cache
def jpeg() -> bytes:
    return encode(photo("astronaut"), "JPEG", size=(128, 128))


def drip(data: bytes) -> Iterator[tuple[bytes, float]]:
    for byte in data:
        yield bytes([byte]), DRIP_S


def status_line_drip(path: str) -> Iterator[tuple[bytes, float]]:
    """A status line whose reason phrase never ends."""
    yield b"HTTP/1.1 200 O", DRIP_S
    yield from forever(b"K", DRIP_S)


def header_drip(path: str) -> Iterator[tuple[bytes, float]]:
    """A status line, then a header line that never ends."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Pad: ", DRIP_S
    yield from forever(b"a", DRIP_S)


def endless_continue(path: str) -> Iterator[tuple[bytes, float]]:
    """``100 Continue`` interim responses, one after another, never the final one."""
    yield from forever(b"HTTP/1.1 100 Continue\r\n\r\n", DRIP_S)


def chunk_size_drip(path: str) -> Iterator[tuple[bytes, float]]:
    """A chunked body whose first chunk-size line (a chunk extension) never ends."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n10;ext=", DRIP_S
    yield from forever(b"a", DRIP_S)


def chunked_jpeg_then_trailers(pause: float) -> Iterator[tuple[bytes, float]]:
    body = jpeg()
    yield b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n", 0.0
    yield f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n", 0.0
    yield from forever(b"X-Trailer: " + b"t" * 1000 + b"\r\n", pause)


def slow_trailers(path: str) -> Iterator[tuple[bytes, float]]:
    """A whole image, then trailer lines one by one, never the blank line that ends them."""
    yield from chunked_jpeg_then_trailers(DRIP_S)


def fast_trailers(path: str) -> Iterator[tuple[bytes, float]]:
    """A whole image, then trailer lines as fast as the client takes them: megabytes no body counter sees."""
    yield from chunked_jpeg_then_trailers(0.0)


def empty_deflate_blocks(wrapper: str) -> Iterator[tuple[bytes, float]]:
    """A compressed body of empty stored blocks: endless on the wire, nothing once decoded."""
    header = {"gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", "deflate": b"\x78\x9c"}[wrapper]
    yield f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Encoding: {wrapper}\r\n\r\n".encode(), 0.0
    yield header, 0.0
    yield from forever(b"\x00\x00\x00\xff\xff" * 20_000, 0.0)  # each an empty, non-final stored block


def gzip_nothing(path: str) -> Iterator[tuple[bytes, float]]:
    yield from empty_deflate_blocks("gzip")


def deflate_nothing(path: str) -> Iterator[tuple[bytes, float]]:
    yield from empty_deflate_blocks("deflate")


def gzipped_jpeg(path: str) -> Iterator[tuple[bytes, float]]:
    """A real JPEG, gzip-compressed although the client asked for identity."""
    compressor = zlib.compressobj(wbits=31)
    body = compressor.compress(jpeg()) + compressor.flush()
    yield (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
        0.0,
    )


def identity_jpeg(path: str) -> Iterator[tuple[bytes, float]]:
    """A real JPEG, labelled ``Content-Encoding: identity`` (harmless and allowed)."""
    body = jpeg()
    yield (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Encoding: identity\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
        0.0,
    )


ROUTES = {
    "/status-drip.jpg": status_line_drip,
    "/header-drip.jpg": header_drip,
    "/continue.jpg": endless_continue,
    "/chunk-size-drip.jpg": chunk_size_drip,
    "/slow-trailers.jpg": slow_trailers,
    "/fast-trailers.jpg": fast_trailers,
    "/gzip-nothing.jpg": gzip_nothing,
    "/deflate-nothing.jpg": deflate_nothing,
    "/gzipped.jpg": gzipped_jpeg,
    "/identity.jpg": identity_jpeg,
}


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with RawServer(ROUTES) as running:
        yield running


@pytest.mark.parametrize(
    "path", ["/status-drip.jpg", "/header-drip.jpg", "/continue.jpg", "/chunk-size-drip.jpg", "/slow-trailers.jpg"]
)
def test_a_drip_anywhere_ends_at_the_total_limit(server: RawServer, path: str) -> None:
    """Every receive gets at most the time left: the fetch ends as ``timeout`` at the total limit, not retried."""
    client = PoliteClient(CONFIG)
    started = time.monotonic()
    result = client.fetch(server.url(path))
    elapsed = time.monotonic() - started
    assert result.status == "timeout", result.error
    assert TOTAL_S - 0.1 <= elapsed < TOTAL_S + SLACK_S, elapsed
    assert result.attempts == 1  # the total limit is not a hiccup: a dripping server would drip again
    assert server.requests[path] >= 1


def test_a_dripping_robots_txt_ends_at_the_total_limit() -> None:
    """robots.txt is fetched under the same limits; the image then gets robots.txt's status."""
    with RawServer({"/robots.txt": header_drip, "/identity.jpg": identity_jpeg}) as server:
        client = PoliteClient(CONFIG)
        started = time.monotonic()
        result = client.fetch(server.url("/identity.jpg"))
        elapsed = time.monotonic() - started
        assert result.status == "timeout", result.error
        assert "robots.txt" in (result.error or "")
        assert elapsed < TOTAL_S + SLACK_S, elapsed
        assert server.requests["/identity.jpg"] == 0


def test_trailers_count_against_the_byte_cap(server: RawServer) -> None:
    """Bytes are counted as they arrive, framing and trailers included: endless trailers end as ``too_large``."""
    client = PoliteClient(dataclasses.replace(CONFIG, total_timeout_s=10.0, read_timeout_s=5.0))
    started = time.monotonic()
    result = client.fetch(server.url("/fast-trailers.jpg"))
    assert result.status == "too_large", result.error
    assert time.monotonic() - started < 5.0
    # The server may have buffered a little more in the socket, never a multiple of the cap.
    assert server.sent["/fast-trailers.jpg"] < 2 * CAP + 8 * 1024 * 1024


@pytest.mark.parametrize("path", ["/gzip-nothing.jpg", "/deflate-nothing.jpg", "/gzipped.jpg"])
def test_compressed_bodies_are_refused_unread(server: RawServer, path: str) -> None:
    """identity was asked for: a body compressed anyway is refused before it is read, so nothing is decoded."""
    client = PoliteClient(dataclasses.replace(CONFIG, total_timeout_s=10.0, read_timeout_s=5.0))
    started = time.monotonic()
    result = client.fetch(server.url(path))
    assert result.status == "not_an_image", result.error
    assert "Content-Encoding" in (result.error or "")
    assert time.monotonic() - started < 2.0


def test_identity_content_encoding_is_fine(server: RawServer) -> None:
    client = PoliteClient(CONFIG)
    result = client.fetch(server.url("/identity.jpg"))
    assert result.status == "ok", result.error
    assert result.body == jpeg()
    assert client.headers["Accept-Encoding"] == "identity"


def _ipv6_loopback() -> str | None:
    """Why ``::1`` cannot be used here, or None when it can."""
    if not socket.has_ipv6:
        return "Python built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"cannot bind ::1: {error}"
    return None


def test_ipv6_literal_urls_are_fetched() -> None:
    """``http://[::1]:port/...`` works directly and as a redirect target; robots.txt is fetched from the same origin."""
    # Linux gives every network namespace an IPv6 loopback; a machine without one fails here, naming why.
    assert _ipv6_loopback() is None, f"this test needs the IPv6 loopback ::1: {_ipv6_loopback()}"
    robots = b"User-agent: *\nDisallow: /private/\n"

    def robots_txt(path: str) -> Iterator[tuple[bytes, float]]:
        yield b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(robots) + robots, 0.0

    with RawServer({"/robots.txt": robots_txt, "/x.jpg": identity_jpeg, "/private/x.jpg": identity_jpeg}, "::1") as v6:
        client = PoliteClient(CONFIG)
        direct = client.fetch(v6.url("/x.jpg"))
        assert direct.status == "ok", direct.error
        assert client.fetch(v6.url("/private/x.jpg")).status == "robots_disallowed"
        assert v6.requests["/robots.txt"] == 1
        with MisbehavingServer({"astronaut.jpg": jpeg()}) as v4:
            hop = client.fetch(v4.url(f"/redirect?to={v6.url('/x.jpg')}"))
        assert hop.status == "ok", hop.error
        assert hop.final_url == v6.url("/x.jpg")
