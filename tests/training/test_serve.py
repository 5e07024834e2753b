"""The search page: a real ``training.serve`` HTTP server on loopback over an embedded digits corpus, driven by real
HTTP requests and by headless Chromium (the page runs its query, the expected image comes first, a screenshot)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageStat

from tests.fixtures.search_index import digits_search_corpus, embed_and_index, untrained_checkpoint
from tests.pipeline.corpus.test_report import CHROMIUM_FLAGS, chromium
from tests.training.test_search import jpeg_of
from training import serve
from training.search import Searcher


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """60 digits in 2 shards, indexed with an untrained checkpoint, served on a free loopback port."""
    root = tmp_path_factory.mktemp("serve")
    corpus = digits_search_corpus(root, count=60, samples_per_shard=30)
    index_dir = embed_and_index(untrained_checkpoint(root / "run"), corpus, root)
    searcher = Searcher(index_dir, sandboxed=True)
    searcher.query_vector(text="warm up")  # load the model before a browser waits on the first query
    server = serve.make_server(searcher, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield {"corpus": corpus, "url": f"http://{host}:{port}", "searcher": searcher}
    server.shutdown()
    server.server_close()


def post(url: str, body: dict) -> tuple[int, dict]:
    """POST JSON, return (status, decoded JSON)."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def browse(url: str, tmp_path: Path, *extra: str) -> str:
    """Chromium's DOM of ``url`` after the page's scripts (and its fetches) ran."""
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--window-size=1280,1000", *extra, url],
        check=True, capture_output=True, text=True, timeout=180,
    ).stdout  # fmt: skip


def test_the_page_shows_the_expected_image_first_in_chromium(served: dict, tmp_path: Path) -> None:
    wanted = pq.read_table(served["corpus"] / "shards" / "00001.parquet").to_pylist()[4]
    url = f"{served['url']}/?like={quote(wanted['key'])}"
    dom = browse(url, tmp_path, "--dump-dom")
    keys = re.findall(r'<figure class="result" data-key="([0-9a-f]+)"', dom)
    assert len(keys) == 24 and keys[0] == wanted["key"], dom[-3000:]
    assert re.search(r'<p id="status"[^>]*>24 results in', dom)
    assert f'src="/image/{wanted["key"]}"' in dom
    # A text query through the address runs the same way and shows alt texts and source links.
    dom = browse(f"{served['url']}/?text={quote('the handwritten digit seven')}&weight=1", tmp_path, "--dump-dom")
    assert len(re.findall(r'<figure class="result"', dom)) == 24
    assert 'href="https://digits.example/search/"' in dom
    screenshot = tmp_path / "search-page.png"
    browse(url, tmp_path, f"--screenshot={screenshot}")
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1280, 1000)
    assert max(ImageStat.Stat(image).stddev) > 20  # not a blank or error page: header band, images, captions
    red, green, blue = image.getpixel((640, 20))
    assert green > red and blue > red  # the teal header


def test_an_uploaded_image_finds_itself_and_images_come_from_the_tars(served: dict) -> None:
    wanted = pq.read_table(served["corpus"] / "shards" / "00000.parquet").to_pylist()[11]
    image_bytes = jpeg_of(served["corpus"], wanted["key"])
    upload = "data:image/jpeg;base64," + base64.b64encode(image_bytes).decode()
    status, answer = post(f"{served['url']}/api/search", {"image": upload, "k": 5})
    assert status == 200 and answer["results"][0]["key"] == wanted["key"]
    assert answer["results"][0]["alt_text"] == wanted["alt_text"]
    status, answer = post(f"{served['url']}/api/search", {"image": upload, "text": "seven", "weight": 0.5, "k": 5})
    assert status == 200 and len(answer["results"]) == 5
    with urllib.request.urlopen(f"{served['url']}/image/{wanted['key']}", timeout=30) as response:
        assert response.headers["Content-Type"] == "image/jpeg" and response.read() == image_bytes


def test_bad_requests_are_refused_and_the_filter_cannot_read_files(served: dict) -> None:
    url = f"{served['url']}/api/search"
    status, answer = post(url, {"text": "seven", "where": "shard = '00001'", "k": 30})
    assert status == 200 and len(answer["results"]) == 30 and {r["shard"] for r in answer["results"]} == {"00001"}
    status, answer = post(url, {"text": "seven", "where": "key IN (SELECT column0 FROM read_csv('/etc/passwd'))"})
    assert status == 400 and "passwd" in answer["error"]
    status, answer = post(url, {"image": "data:image/png;base64,bm90IGFuIGltYWdl"})
    assert status == 400 and "not an image" in answer["error"]
    assert post(url, {})[0] == 400  # neither text nor image
    assert post(url, {"text": "seven", "k": 100_000})[0] == 400
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{served['url']}/image/{'0' * 24}", timeout=30)
    assert missing.value.code == 404
