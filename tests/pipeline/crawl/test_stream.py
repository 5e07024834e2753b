"""Reading crawl files over HTTP from the simulator's mirror: Range resumption, 503 back-off, bounded failure."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest

from pipeline.core.config import CrawlConfig
from pipeline.crawl.listing import crawl_files
from pipeline.crawl.simulate import Fault, SimulatedCrawl
from pipeline.crawl.stream import CrawlFileError, CrawlStream, RetryPolicy, open_crawl_url
from tests.fixtures.crawl_mirror import plan, small_mirror
from tests.fixtures.http_server import MisbehavingServer

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=0.05, max_resumes=20, timeout_s=5)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_mirror(tmp_path_factory.mktemp("mirror"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_dropped_connection_resumes_with_a_range_request_and_gives_the_files_bytes(mirror: Path) -> None:
    relative = plan(mirror)["warc_files"][0]
    expected = (mirror / relative).read_bytes()
    name = relative.rsplit("/", 1)[1]
    # Dropped after 7,000 bytes, three times in a row: four requests, each resuming where the last one stopped.
    with SimulatedCrawl(mirror, faults=[Fault(name, drop_after=7000, times=3)]) as sim:
        with open_crawl_url(sim.base_url + relative, FAST) as stream:
            data = stream.read()
            stats = stream.raw.stats
        ranges = [header for path, header in sim.stats.ranges if path.endswith(name)]
    assert len(expected) > 4 * 7000
    assert sha(data) == sha(expected)
    assert stats["resumes"] == 3
    assert ranges == ["bytes=7000-", "bytes=14000-", "bytes=21000-"]


def test_small_reads_across_drops_and_tell_follow_the_file(mirror: Path) -> None:
    relative = plan(mirror)["wat_files"][1]
    expected = (mirror / relative).read_bytes()
    with SimulatedCrawl(mirror, faults=[Fault(relative.rsplit("/", 1)[1], drop_after=1500, times=2)]) as sim:
        stream = CrawlStream(sim.base_url + relative, FAST)
        pieces = []
        for _ in range(len(expected)):  # bounded: one byte or more per read
            piece = stream.read(997)
            if not piece:
                break
            pieces.append(piece)
            assert stream.tell() == sum(len(part) for part in pieces)
        stream.seek(100)
        again = stream.read(50)
    assert b"".join(pieces) == expected
    assert again == expected[100:150]


def test_503_slow_down_is_retried_with_growing_back_off_then_succeeds(mirror: Path) -> None:
    relative = plan(mirror)["warc_files"][1]
    waits: list[float] = []
    with SimulatedCrawl(mirror, faults=[Fault(relative.rsplit("/", 1)[1], status=503, times=3)]) as sim:
        stream = CrawlStream(sim.base_url + relative, RetryPolicy(max_retries=4, backoff_s=0.02), sleep=waits.append)
        data = stream.read()
        requests = sim.stats.paths["/" + relative]
    assert data == (mirror / relative).read_bytes()
    assert stream.stats["retries"] == 3 and requests == 4
    # Doubling from 0.02 s with jitter in [0.5, 1): each wait lies in its own band.
    assert [0.01 <= wait <= 0.02 for wait in waits[:1]] == [True]
    assert 0.02 <= waits[1] <= 0.04 and 0.04 <= waits[2] <= 0.08


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("30", 30.0, 30.0),  # delta-seconds
        ("date+30", 25.0, 30.0),  # an HTTP-date 30 s ahead (whole seconds, and the test's own time passes)
        ("date+3600", 60.0, 60.0),  # honoured only up to max_backoff_s
        ("date-3600", 0.005, 0.01),  # a date already past: the usual jittered back-off from backoff_s
    ],
)
def test_a_503_retry_after_in_seconds_or_as_an_http_date_is_honoured(retry_after: str, low: float, high: float) -> None:
    """S3 and CloudFront may give Retry-After as an HTTP-date; the wait before the retry is what it asks for."""
    if retry_after.startswith("date"):
        retry_after = formatdate(time.time() + int(retry_after[len("date") :]), usegmt=True)
    body = bytes(range(256)) * 64
    waits: list[float] = []
    with MisbehavingServer({"astronaut.jpg": body}, robots_txt=None) as server:
        url = server.url(f"/flaky-503/CC-MAIN-00000.warc.gz?after={quote(retry_after)}")
        policy = RetryPolicy(max_retries=2, backoff_s=0.01, max_backoff_s=60.0, timeout_s=5)
        stream = CrawlStream(url, policy, sleep=waits.append)  # the wait is recorded, not slept
        data = stream.read()
        requests = server.requests["/flaky-503/CC-MAIN-00000.warc.gz"]
    assert data == body and requests == 2
    assert len(waits) == 1 and low <= waits[0] <= high, (retry_after, waits)


def test_a_file_that_keeps_failing_raises_after_the_bounded_attempts(mirror: Path) -> None:
    relative = plan(mirror)["warc_files"][2]
    with SimulatedCrawl(mirror, faults=[Fault(relative.rsplit("/", 1)[1], status=503, times=None)]) as sim:
        stream = CrawlStream(sim.base_url + relative, FAST, sleep=lambda _: None)
        with pytest.raises(CrawlFileError, match=r"HTTP 503 \(SlowDown\) after 4 attempts"):
            stream.read()
        assert sim.stats.paths["/" + relative] == FAST.max_retries + 1
        missing = CrawlStream(sim.base_url + relative + ".absent", FAST)
        with pytest.raises(CrawlFileError, match="HTTP 404"):
            missing.read()  # not transient: one request, no retry
        assert sim.stats.paths["/" + relative + ".absent"] == 1


def test_endless_drops_stop_at_the_resume_bound(mirror: Path) -> None:
    relative = plan(mirror)["warc_files"][0]
    with SimulatedCrawl(mirror, faults=[Fault(relative.rsplit("/", 1)[1], drop_after=2000, times=None)]) as sim:
        stream = CrawlStream(sim.base_url + relative, RetryPolicy(max_resumes=3, backoff_s=0))
        with pytest.raises(CrawlFileError, match="gave up after 3 resumptions at byte 8000"):
            stream.read()


def test_the_crawl_listing_is_read_from_the_mirror_and_selects_by_segment(mirror: Path) -> None:
    files = plan(mirror)["warc_files"]
    with SimulatedCrawl(mirror) as sim:
        everything = crawl_files(CrawlConfig(crawl="CC-MAIN-2099-01", cc_base_url=sim.base_url))
        last_segment = crawl_files(CrawlConfig(crawl="CC-MAIN-2099-01", cc_base_url=sim.base_url, segment_range="1:"))
        wat = crawl_files(CrawlConfig(crawl="CC-MAIN-2099-01", cc_base_url=sim.base_url, source="wat", files=1))
        # --files-from over HTTP: another listing (here the WAT one) replaces the crawl's own.
        listing = f"{sim.base_url}crawl-data/CC-MAIN-2099-01/wat.paths.gz"
        from_listing = crawl_files(CrawlConfig(crawl="CC-MAIN-2099-01", cc_base_url=sim.base_url, files_from=listing))
    assert everything == tuple(sim.base_url + path for path in files)
    assert last_segment == (sim.base_url + files[2],)  # three files over two segments: 0, 0, 1
    assert wat == (sim.base_url + plan(mirror)["wat_files"][0],)
    assert from_listing == tuple(sim.base_url + path for path in plan(mirror)["wat_files"])


def test_reading_warcs_loads_no_beam() -> None:
    """pipeline.html.warc imports the crawl stream, and it the fetcher's client (its Retry-After parser): none may pull
    in Beam (seconds) where nothing is retried."""
    probe = "import json, sys; import pipeline.html.warc; print(json.dumps(sorted(sys.modules)))"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(process.stdout)
    assert "pipeline.crawl.stream" in loaded and "pipeline.net.client" in loaded  # the probe did import them
    assert [name for name in loaded if name.split(".")[0] == "apache_beam" or name == "pipeline.core.config"] == []
