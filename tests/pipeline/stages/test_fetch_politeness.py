"""Politeness for the whole fetch job: per-host concurrency, request rate and robots.txt Crawl-delay, measured by real
loopback hosts (one address each) while the real fetch stage runs, on two worker processes where it matters."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.config import FetchConfig
from pipeline.core.rules import REJECTED
from pipeline.stages import fetch
from schemas import ArchivedImage, FetchedImage, TextKept
from tests.fixtures.host_recorder import RecordingHosts
from tests.fixtures.http_server import encode, photo
from tests.pipeline.stages.test_fetch import candidate_rows, write_table

FLAGS = [
    "--allow-private-addresses=true",
    "--fetch-mode=http-only",
    "--connect-timeout-s=2",
    "--read-timeout-s=5",
    "--total-timeout-s=10",
    "--retry-backoff-s=0.05",
]
#: Request starts are spaced by the client; the server sees them a connect and a send later, which may differ by tens
#: of milliseconds between two requests on a loaded machine.
JITTER_S = 0.05


def small_jpeg() -> bytes:
    return encode(photo("chelsea"), "JPEG", size=(240, 160))


def write_corpus(root: Path, urls: list[str]) -> None:
    write_table(root / TextKept.FOLDER, TextKept, candidate_rows({url: (1, "ok") for url in urls}))
    write_table(root / ArchivedImage.FOLDER, ArchivedImage, [])


def gaps(starts: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(sorted(starts))]


def most_in_window(starts: list[float], window_s: float) -> int:
    """The most requests that started within any ``window_s`` seconds (robust to jitter, unlike the smallest gap)."""
    ordered = sorted(starts)
    return max(bisect.bisect_left(ordered, start + window_s) - index for index, start in enumerate(ordered))


def fetch_all_ok(urls: list[str], concurrency: int) -> None:
    """Fetch ``urls`` (one candidate each, not archived) through ``FetchImages`` in one bundle, one request at a time
    per host, and check every one is ok."""
    config = FetchConfig(
        allow_private_addresses=True,
        concurrency=concurrency,
        per_host_concurrency=1,
        fetch_mode="http-only",
        respect_robots=False,
    )
    with TestPipeline() as pipeline:
        results = (
            pipeline
            | beam.Create([(url, (1, None)) for url in urls], reshuffle=False)
            | beam.ParDo(fetch.FetchImages(config)).with_outputs(REJECTED, main="images")
        )
        statuses = results.images | beam.Map(lambda row: (row[FetchedImage.IMAGE_URL], row[FetchedImage.STATUS]))
        assert_that(statuses, equal_to([(url, "ok") for url in urls]), label="AllOk")


@pytest.mark.slow  # a two-worker stage run
def test_per_host_concurrency_and_rate_hold_for_the_whole_job_on_two_workers(tmp_path: Path) -> None:
    """One big host and three small ones, fetched by two worker processes with 8 threads each: every host sees at
    most the configured concurrency (the big one reaches it) and rate, and the small hosts are not held back until
    the big one is done."""
    limit, rate = 2, 6.0
    with RecordingHosts(4, small_jpeg(), delay_s=0.25) as hosts:
        urls = [hosts.url(0, f"/big/{index}.jpg") for index in range(16)]
        urls += [hosts.url(host, f"/small/{index}.jpg") for host in (1, 2, 3) for index in range(4)]
        write_corpus(tmp_path, urls)
        counters = fetch.run(
            [
                "--output",
                str(tmp_path),
                *FLAGS,
                f"--per-host-concurrency={limit}",
                f"--per-host-requests-per-s={rate}",
                "--concurrency=8",
                "--direct_running_mode=multi_processing",
                "--direct_num_workers=2",
            ]
        )
    assert counters["ok"] == len(urls)
    records = hosts.records
    report = {
        address: (
            record.max_in_flight,
            most_in_window(record.starts, 1.0),
            [round(gap, 3) for gap in gaps(record.starts)],
        )
        for address, record in zip(hosts.addresses, records, strict=True)
    }
    for record in records:
        assert sum(record.paths.values()) == len(record.image_starts) + 1  # each image once, robots.txt once
        assert record.max_in_flight <= limit, report
        assert most_in_window(record.starts, 1.0) <= rate + 1, report
        # Each arrival may be late by up to the jitter, so a gap between two may shrink by twice it; over longer runs
        # the jitter does not add up: every 5 consecutive gaps span at least 5 intervals less the same two jitters.
        assert min(gaps(record.starts)) >= 1 / rate - 2 * JITTER_S, report
        ordered = sorted(record.starts)
        spans = [later - earlier for earlier, later in zip(ordered, ordered[5:], strict=False)]
        assert not spans or min(spans) >= 5 / rate - 2 * JITTER_S, report
    assert records[0].max_in_flight == limit, report
    big_median = sorted(records[0].starts)[len(records[0].starts) // 2]
    for record in records[1:]:
        assert min(record.starts) < big_median, report


@pytest.mark.slow  # about 3 s of spaced requests
def test_robots_crawl_delay_is_honoured_up_to_the_cap(tmp_path: Path) -> None:
    """Crawl-delay spaces a host's requests (ours and ``*``'s group), a longer one than ``max_crawl_delay_s`` is
    capped, and a host without one is not spaced at all."""
    robots = {
        0: b"User-agent: *\nCrawl-delay: 0.4\nDisallow: /private/\n",
        1: b"User-agent: otherbot\nCrawl-delay: 0.1\n\nUser-agent: altcorpus\nCrawl-delay: 600\nAllow: /\n",
    }
    with RecordingHosts(3, small_jpeg(), delay_s=0.05, robots_txt=robots, first_address=12) as hosts:
        urls = [hosts.url(host, f"/img/{index}.jpg") for host in range(3) for index in range(4)]
        write_corpus(tmp_path, urls)
        counters = fetch.run(["--output", str(tmp_path), *FLAGS, "--concurrency=8", "--max-crawl-delay-s=0.6"])
    assert counters["ok"] == len(urls)
    delayed, capped, free = hosts.records
    for record, delay in ((delayed, 0.4), (capped, 0.6)):
        assert record.paths["/robots.txt"] == 1
        # robots.txt first, then every image at least the delay after the request before it.
        assert min(record.image_starts) > min(record.starts)
        assert min(gaps(record.starts)) >= delay - JITTER_S, gaps(record.starts)
        assert max(gaps(record.starts)) < delay + 1.0  # capped: 600 s would have outlived the test
    assert min(gaps(free.image_starts)) < 0.1  # no Crawl-delay, no rate: requests overlap up to the limit
    assert free.max_in_flight > 1


@pytest.mark.slow  # about 3 s of one-at-a-time requests
def test_a_host_with_many_urls_does_not_hold_back_the_hosts_read_after_it() -> None:
    """A bundle holding 150 URLs of one host (one at a time) before 4 URLs of another: the other host's URLs are read
    past the big host's queue (spilled to disk beyond a few) and fetched at once, not after the big host drained."""
    with RecordingHosts(2, small_jpeg(), delay_s=0.01, first_address=22) as hosts:
        urls = [hosts.url(0, f"/big/{index}.jpg") for index in range(150)]
        urls += [hosts.url(1, f"/small/{index}.jpg") for index in range(4)]
        fetch_all_ok(urls, concurrency=2)
    big, small = hosts.records
    assert big.max_in_flight == 1 and small.max_in_flight == 1
    # Without spilling, the reader waits until the big host's backlog fits in memory: ~130 requests later.
    assert max(small.starts) < sorted(big.starts)[40], (sorted(big.starts)[:3], small.starts)


def test_a_hosts_limit_paces_its_requests_not_the_processing_of_its_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """One host, one request at a time: while the next request is in flight, the images already downloaded are
    decoded on other pool threads (processing holds no host slot), so a hot host's CPU work is not serialised by its
    politeness limit. The real ``process_image`` runs, slowed down and watched."""
    real_process_image = fetch.process_image
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def slow_process_image(*args: Any, **kwargs: Any) -> Any:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.3)
            return real_process_image(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(fetch, "process_image", slow_process_image)
    with RecordingHosts(1, small_jpeg(), delay_s=0.02, first_address=23) as hosts:
        fetch_all_ok([hosts.url(0, f"/hot/{index}.jpg") for index in range(12)], concurrency=8)
    (record,) = hosts.records
    assert record.max_in_flight == 1  # the host's limit held
    # Within the limit, 12 downloads of ~0.02 s and 0.3 s of processing each: several images are processed at once.
    assert state["most"] >= 3, state
