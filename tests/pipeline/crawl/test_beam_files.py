"""Crawl files on Beam's other filesystems (``gs://``, local paths): every failure to open one is a
``CrawlFileError`` naming the file, which extract records before going on, as it does for ``s3://`` and HTTP(S)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from apache_beam.utils import retry

from pipeline.crawl.stream import CrawlFileError
from pipeline.stages import extract

REFUSAL = "anonymous caller does not have storage.objects.get access to the Google Cloud Storage object."


@pytest.fixture
def refusing_gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A loopback server answering Cloud Storage's JSON API as GCS answers a caller without access (403), made the
    GCS endpoint of Beam's filesystem (``STORAGE_EMULATOR_HOST``, read by the Cloud Storage client); yields the paths
    it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps({"error": {"code": 403, "message": REFUSAL, "errors": [{"reason": "forbidden"}]}})
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server to look for Google credentials on
    # Without Google credentials Beam retries its look for them four times (about 18 s, once per process) before it
    # connects anonymously: those waits are skipped, not slept.
    monkeypatch.setattr(retry.Clock, "sleep", lambda clock, seconds: None)
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_gcs_file_is_a_crawl_file_error_naming_it(refusing_gcs: list[str]) -> None:
    """Beam's GCS filesystem raises the Cloud Storage client's ``Forbidden``, no ``OSError``: extract's per-file
    handler let it through and the whole job failed."""
    path = "gs://commoncrawl/crawl-data/CC-MAIN-2099-01/segments/1/warc/a.warc.gz"
    with pytest.raises(CrawlFileError, match=rf"^{re.escape(path)}: Forbidden: .*{re.escape(REFUSAL)}"):
        extract.open_input(path)
    assert refusing_gcs and "/b/commoncrawl/o/crawl-data" in refusing_gcs[0]


def test_a_missing_local_file_is_a_crawl_file_error_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.warc.gz")
    with pytest.raises(CrawlFileError, match=rf"^{re.escape(path)}: No such file or directory$"):
        extract.open_input(path)
