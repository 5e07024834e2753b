"""``python -m training.serve --index DIR [--corpus DIR] [--host 127.0.0.1] [--port 8000]``: the search page.

A small stdlib HTTP server over a :class:`training.search.Searcher`: ``/`` is the page (``training/web/search.html``:
text box, image upload, text-weight slider, a filter box, a result grid with alt text and source links),
``POST /api/search`` takes ``{"text", "image" (data URL), "weight", "where", "target", "like" (a key), "k"}`` and
answers ``{"results": [...], "seconds"}``, ``GET /image/KEY`` streams a sample's image straight out of its shard tar
(member offset and size from the index's rows: nothing is copied), ``GET /api/about`` says what is served.
Listens on 127.0.0.1 unless told otherwise; the filter box runs in a DuckDB with file access switched off (see
``Searcher(sandboxed=True)``), and request bodies over ``MAX_BODY_BYTES`` are refused.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from PIL import Image, UnidentifiedImageError

from training.search import QueryError, Searcher

MAX_BODY_BYTES = 16 << 20
MAX_RESULTS = 200
PAGE = "search.html"


def page_html() -> bytes:
    """The search page, shipped as package data."""
    return resources.files("training").joinpath("web", PAGE).read_bytes()


def decode_image(data_url: str) -> Image.Image:
    """An uploaded image from a ``data:image/...;base64,...`` URL (or bare base64)."""
    payload = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError) as error:
        raise QueryError(f"the uploaded file is not an image this server can read ({error})") from error
    return image


def run_query(searcher: Searcher, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer one search request (the page's JSON) with result dicts."""
    k = int(request.get("k") or 24)
    if not 1 <= k <= MAX_RESULTS:
        raise QueryError(f"k must be between 1 and {MAX_RESULTS}")
    where = request.get("where") or None
    if request.get("like"):
        return [r.as_dict() for r in searcher.search_like(str(request["like"]), k, where)]
    image = decode_image(request["image"]) if request.get("image") else None
    weight = float(request.get("weight", 0.5))
    target = str(request.get("target") or "image")
    results = searcher.search(request.get("text") or None, image, weight, k, target, where)
    return [r.as_dict() for r in results]


def make_handler(searcher: Searcher) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one searcher."""
    about = {
        "samples": len(searcher.keys),
        "model": searcher.manifest["model"],
        "kind": searcher.manifest["indexes"]["image"]["kind"],
        "corpus": str(searcher.corpus),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "altcorpus-search"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "max-age=86400, immutable" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page_html(), "text/html; charset=utf-8")
            elif path == "/api/about":
                self._json(HTTPStatus.OK, about)
            elif path.startswith("/image/"):
                key = unquote(path.removeprefix("/image/"))
                try:
                    data = searcher.image_bytes(key)
                except KeyError:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no sample {key!r}"})
                    return
                # Shards hold JPEG (write-shards re-encodes every image); the member's suffix says so.
                self._send(HTTPStatus.OK, data, "image/jpeg", cache=True)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/api/search":
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"request over {MAX_BODY_BYTES} bytes"})
                return
            started = time.perf_counter()
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(request, dict):
                    raise QueryError("the request must be a JSON object")
                results = run_query(searcher, request)
            except (QueryError, ValueError) as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            self._json(HTTPStatus.OK, {"results": results, "seconds": time.perf_counter() - started})

    return Handler


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threading HTTP server for the searcher (port 0: any free port; see ``server.server_address``)."""
    return ThreadingHTTPServer((host, port), make_handler(searcher))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.serve", description=__doc__)
    parser.add_argument("--index", required=True, type=Path, help="what training.index wrote")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: the one the index was built from)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point: serve until interrupted."""
    cli = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    searcher = Searcher(cli.index, cli.corpus, cli.device, sandboxed=True)
    server = make_server(searcher, cli.host, cli.port)
    host, port = server.server_address[:2]
    print(f"search page on http://{host}:{port}/ ({len(searcher.keys)} samples)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
