"""A real HTTP server on 127.0.0.1 that serves real photos and misbehaves on purpose, for the fetcher's tests.

Started on port 0 in a daemon thread and stopped by the test that started it. Every endless behaviour (slow
drip, never-ending body) is bounded: it stops when the client goes away, when the server stops, or after
``MAX_MISBEHAVE_S`` seconds, so no test can hang on it. The server counts requests per path, the most requests
ever in flight at once and the most TCP connections ever open at once, so tests can check what the client did
(robots.txt fetched once, the per-host limit).
"""

from __future__ import annotations

import io
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

MAX_MISBEHAVE_S = 15.0
DRIP_INTERVAL_S = 0.05

ROBOTS_TXT = b"""# test robots.txt
User-agent: altcorpus
Disallow: /private/

User-agent: *
Disallow: /nobody/
"""

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Not an image</title></head><body><p>Soft 404</p></body></html>\n" * 20


def photo(name: str) -> np.ndarray:
    """A real photo shipped inside scikit-image or scikit-learn, as an RGB array."""
    from skimage import data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    return getattr(data, name)()


def encode(array: np.ndarray, image_format: str, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    """Encode an RGB array (optionally resized to ``size``) as JPEG/PNG/WEBP bytes."""
    image = Image.fromarray(array)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    output = io.BytesIO()
    if image_format.upper() == "JPEG":
        image.save(output, "JPEG", quality=quality)
    else:
        image.save(output, image_format.upper())
    return output.getvalue()


def png_bomb(width: int = 12_000, height: int = 12_000) -> bytes:
    """A genuine 1-bit PNG of ``width`` x ``height`` pixels (all black) that compresses to a few tens of KB."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])  # 1-bit grey
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(height // 1000)]
    parts.append(compressor.compress(row * (height % 1000)))
    parts.append(compressor.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


class MisbehavingServer:
    """The test server: ``with MisbehavingServer(images) as server: server.url('/img/astronaut.jpg')``."""

    def __init__(self, images: dict[str, bytes], robots_txt: bytes | None = ROBOTS_TXT, slow_ok_delay_s: float = 0.2):
        self.images = images
        self.robots_txt = robots_txt
        self.slow_ok_delay_s = slow_ok_delay_s
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> MisbehavingServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and serve from a daemon thread."""
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving; misbehaving handlers see ``stopping`` and return."""
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def reset_counts(self) -> None:
        """Forget request counts and the in-flight maximum."""
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0
            self.max_open_connections = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    owner: MisbehavingServer

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def setup(self) -> None:
        # One handler per TCP connection (keep-alive serves many requests on it): count connections open at once.
        super().setup()
        with self.owner.lock:
            self.owner.open_connections += 1
            self.owner.max_open_connections = max(self.owner.max_open_connections, self.owner.open_connections)

    def finish(self) -> None:
        with self.owner.lock:
            self.owner.open_connections -= 1
        super().finish()

    def do_GET(self) -> None:
        owner = self.owner
        path = urlsplit(self.path).path
        with owner.lock:
            owner.requests[path] += 1
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
            count = owner.requests[path]
        try:
            self.route(path, count)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should on the endless cases
        finally:
            with owner.lock:
                owner.in_flight -= 1

    # -- responses ------------------------------------------------------------------------------------------------
    def send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def image(self, name: str, content_type: str | None = None, headers: dict[str, str] | None = None) -> None:
        body = self.owner.images.get(name)
        if body is None:
            self.send(404, b"no such image", "text/plain")
            return
        kind = "image/png" if name.endswith(".png") else "image/jpeg"
        self.send(200, body, content_type or kind, headers)

    def stream_forever(self, first: bytes, filler: bytes, interval_s: float, headers: dict[str, str]) -> None:
        """Headers, then ``first``, then ``filler`` every ``interval_s`` until the client leaves (bounded)."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        self.wfile.write(first)
        self.wfile.flush()
        started = time.monotonic()
        while not self.owner.stopping.is_set() and time.monotonic() - started < MAX_MISBEHAVE_S:
            self.wfile.write(filler)
            self.wfile.flush()
            if interval_s:
                time.sleep(interval_s)

    def route(self, path: str, count: int) -> None:
        owner = self.owner
        jpeg = owner.images["astronaut.jpg"]
        query = parse_qs(urlsplit(self.path).query)
        if path == "/robots.txt":
            if owner.robots_txt is None:
                self.send(404, b"not found", "text/plain")
            else:
                self.send(200, owner.robots_txt, "text/plain")
        elif path.startswith("/img/") or path.startswith("/private/") or path.startswith("/nobody/"):
            self.image(path.rsplit("/", 1)[1])
        elif path.startswith("/slow-ok/"):
            time.sleep(owner.slow_ok_delay_s)  # long enough for many requests to overlap
            self.image("astronaut.jpg")
        elif path.startswith("/plain/"):
            self.image(path.rsplit("/", 1)[1], content_type="text/plain")
        elif path == "/chunked.jpg":
            # No Content-Length: the body comes in chunks, as from many dynamic image servers.
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(jpeg), 7000):
                piece = jpeg[start : start + 7000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/html-as-jpeg.jpg":
            self.send(200, HTML_PAGE, "image/jpeg")
        elif path == "/truncated.jpg":
            self.send(200, jpeg[: len(jpeg) // 2], "image/jpeg")
        elif path == "/bomb.png":
            self.image("bomb.png")
        elif path == "/missing.jpg":
            self.send(404, b"not found", "text/plain")
        elif path == "/error.jpg":
            self.send(500, b"internal error", "text/plain")
        elif path.startswith("/flaky-429/"):
            if count == 1:
                self.send(429, b"slow down", "text/plain", {"Retry-After": query.get("after", ["1"])[0]})
            else:
                self.image("astronaut.jpg")
        elif path == "/busy-503.jpg":
            self.send(503, b"come back tomorrow", "text/plain", {"Retry-After": "3600"})
        elif path == "/slow-drip.jpg":
            # A valid JPEG start, then one byte every DRIP_INTERVAL_S: every read succeeds, the body never ends.
            self.stream_forever(jpeg[:64], b"\x00", DRIP_INTERVAL_S, {})
        elif path == "/endless.jpg":
            self.stream_forever(jpeg[:64], b"\x00" * 65536, 0.0, {})
        elif path == "/huge-length.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
            self.wfile.write(jpeg[:1024])
            self.close_connection = True
        elif path == "/noai.jpg":
            # The opt-out is in the headers; the body drips, so a client that read it would time out.
            self.stream_forever(jpeg[:64], b"\x00", DRIP_INTERVAL_S, {"X-Robots-Tag": "noai"})
        elif path == "/noimageai-for-us.jpg":
            self.image("astronaut.jpg", headers={"X-Robots-Tag": "altcorpus: noimageai"})
        elif path == "/noai-for-others.jpg":
            self.image("astronaut.jpg", headers={"X-Robots-Tag": "otherbot: noai, noimageai"})
        elif path.startswith("/loop/"):
            hop = int(path.rsplit("/", 1)[1])
            self.send(302, b"", "text/plain", {"Location": f"/loop/{(hop + 1) % 2}"})
        elif path == "/redirect":
            self.send(302, b"", "text/plain", {"Location": query["to"][0]})
        else:
            self.send(404, b"unknown path", "text/plain")
