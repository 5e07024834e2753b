"""The polite HTTP client against a real, misbehaving server on 127.0.0.1: each case ends with its status in time."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.core.config import FetchConfig
from pipeline.net.client import PoliteClient, parse_retry_after
from pipeline.net.errors import FetchError
from pipeline.net.safety import AddressPolicy, check_url
from pipeline.stages.fetch import fetch_one
from tests.fixtures.http_server import MisbehavingServer, encode, photo, png_bomb

#: Short limits so that every endless case ends in about a second and a half.
TEST_CONFIG = FetchConfig(
    connect_timeout_s=1.0,
    read_timeout_s=1.0,
    total_timeout_s=1.5,
    max_image_bytes=2_000_000,
    max_redirects=3,
    max_retries=2,
    retry_backoff_s=0.05,
    max_retry_after_s=2.0,
    allow_private_addresses=True,
    concurrency=8,
    per_host_concurrency=4,
)


@functools.cache
def sample_images() -> dict[str, bytes]:
    """Real photos from scikit-image and scikit-learn, plus a decompression bomb."""
    return {
        "astronaut.jpg": encode(photo("astronaut"), "JPEG"),
        "coffee.png": encode(photo("coffee"), "PNG"),
        "chelsea.jpg": encode(photo("chelsea"), "JPEG"),
        "china.jpg": encode(photo("china"), "JPEG"),
        "bomb.png": png_bomb(),
    }


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer(sample_images()) as running:
        yield running


@pytest.fixture(scope="module")
def client() -> Iterator[PoliteClient]:
    polite = PoliteClient(TEST_CONFIG)
    yield polite
    polite.close()


# (path, expected status, seconds it may take at most)
CASES = [
    ("/img/astronaut.jpg", "ok", 2.0),
    ("/img/coffee.png", "ok", 2.0),
    ("/nobody/china.jpg", "ok", 2.0),  # disallowed for '*' only: our agent has its own group
    ("/plain/chelsea.jpg", "ok", 2.0),
    ("/chunked.jpg", "ok", 2.0),  # a JPEG served as text/plain: magic bytes win
    ("/noai-for-others.jpg", "ok", 2.0),  # an opt-out addressed to another agent
    ("/html-as-jpeg.jpg", "not_an_image", 2.0),
    ("/drawing.svg", "not_an_image", 2.0),  # an image, but a drawing with no pixels: not stored
    ("/truncated.jpg", "decode_error", 2.0),
    ("/bomb.png", "decompression_bomb", 2.0),
    ("/missing.jpg", "http_404", 2.0),
    ("/error.jpg", "http_500", 3.0),  # retried twice with back-off, then given up
    ("/busy-503.jpg", "http_503", 1.0),  # Retry-After 3600 exceeds the cap: give up at once, do not hammer
    ("/slow-drip.jpg", "timeout", TEST_CONFIG.total_timeout_s + 1.0),
    ("/endless.jpg", "too_large", 3.0),
    ("/huge-length.jpg", "too_large", 1.0),
    ("/noai.jpg", "opted_out", 1.0),  # its body drips: reading it would have taken the whole timeout
    ("/noimageai-for-us.jpg", "opted_out", 1.0),
    ("/private/astronaut.jpg", "robots_disallowed", 1.0),
    ("/loop/0", "too_many_redirects", 2.0),
    ("/redirect?to=ftp://example.org/cat.jpg", "unsupported_scheme", 1.0),
    ("/redirect?to=/img/china.jpg", "ok", 2.0),
]


@pytest.mark.parametrize(("path", "status", "max_seconds"), CASES, ids=[case[0] for case in CASES])
def test_each_case_ends_with_its_status_in_time(
    server: MisbehavingServer, client: PoliteClient, path: str, status: str, max_seconds: float
) -> None:
    started = time.monotonic()
    row = fetch_one(server.url(path), None, client, TEST_CONFIG)
    elapsed = time.monotonic() - started
    assert row["status"] == status, row["error"]
    assert elapsed < max_seconds
    assert row["source"] == "http"
    if status == "ok":
        assert row["image"][:3] == b"\xff\xd8\xff"
        assert row["sha256"] and row["original_width"] > 0
    else:
        assert row["error"] and row["image"] is None


def test_server_side_effects(server: MisbehavingServer, client: PoliteClient) -> None:
    """What the server saw: retries only where transient, and robots.txt fetched once for all of the above."""
    for path in ("/error.jpg", "/busy-503.jpg", "/missing.jpg"):
        fetch_one(server.url(path), None, client, TEST_CONFIG)
    server_counts = dict(server.requests)
    assert server_counts["/error.jpg"] >= 1 + TEST_CONFIG.max_retries
    assert server_counts["/error.jpg"] % (1 + TEST_CONFIG.max_retries) == 0  # every fetch retried exactly twice
    assert server_counts["/robots.txt"] == 1
    assert server_counts.get("/private/astronaut.jpg", 0) == 0  # disallowed: never requested


def test_retry_after_is_honoured_then_success(server: MisbehavingServer, client: PoliteClient) -> None:
    started = time.monotonic()
    result = client.fetch(server.url("/flaky-429/once.jpg?after=1"))
    elapsed = time.monotonic() - started
    assert result.status == "ok", result.error
    assert result.attempts == 2
    assert 1.0 <= elapsed < 3.0  # waited the second the server asked for, not the 0.05 s back-off
    too_long = client.fetch(server.url("/flaky-429/long.jpg?after=30"))
    assert too_long.status == "http_429"  # 30 s is above the 2 s cap: stop instead of coming back early
    assert too_long.attempts == 1


def test_unreachable_and_unresolvable_hosts() -> None:
    client = PoliteClient(TEST_CONFIG)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    refused = client.fetch(f"http://127.0.0.1:{free_port}/photo.jpg")
    assert refused.status == "connection_error"
    unresolvable = client.fetch("http://no-such-host.invalid/photo.jpg")
    assert unresolvable.status == "dns_error"
    assert client.fetch("file:///etc/passwd").status == "unsupported_scheme"
    assert client.fetch("javascript:alert(1)").status == "unsupported_scheme"


def test_private_addresses_are_refused_before_any_connection(server: MisbehavingServer) -> None:
    """Loopback is allowed for exactly the test server's address; everything private beyond it is refused."""
    strict = dataclasses.replace(TEST_CONFIG, allow_private_addresses=False, allowed_addresses=("127.0.0.1/32",))
    client = PoliteClient(strict)
    assert client.fetch(server.url("/img/astronaut.jpg")).status == "ok"
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/photo.jpg", "http://[::1]:80/x.jpg"):
        started = time.monotonic()
        result = client.fetch(server.url(f"/redirect?to={target}"))
        # 10.0.0.1 does not answer here: a connection attempt would have taken the 1 s connect timeout.
        assert result.status == "private_address", (target, result.error)
        assert time.monotonic() - started < 0.5
    locked = PoliteClient(dataclasses.replace(strict, allowed_addresses=()))
    before = sum(server.requests.values())
    assert locked.fetch(server.url("/img/astronaut.jpg")).status == "private_address"
    assert sum(server.requests.values()) == before  # refused before connecting, robots.txt included


def test_address_policy() -> None:
    public = AddressPolicy()
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "::1"):
        assert public.refusal(address), address
    for address in ("fe80::1", "fc00::1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1", "240.0.0.1"):
        assert public.refusal(address), address
    assert public.refusal("93.184.216.34") is None
    assert public.refusal("2606:2800:220:1::1") is None
    with pytest.raises(FetchError) as literal:
        check_url("http://169.254.169.254/", public)
    assert literal.value.status == "private_address"
    assert check_url("http://8.8.8.8/x", public).addresses == ("8.8.8.8",)


def test_per_host_concurrency_limit_is_never_exceeded() -> None:
    limit = 3
    config = dataclasses.replace(TEST_CONFIG, per_host_concurrency=limit, concurrency=16, total_timeout_s=5.0)
    with MisbehavingServer(sample_images(), robots_txt=None, slow_ok_delay_s=0.15) as server:
        client = PoliteClient(config)
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(client.fetch, [server.url(f"/slow-ok/{i}.jpg") for i in range(24)]))
        assert [result.status for result in results] == ["ok"] * 24
        assert server.max_in_flight <= limit
        assert server.max_in_flight == limit  # the limit was reached, so the test really exercised it
        assert server.max_open_connections <= limit  # pooled keep-alive connections: no more than the limit either
        assert server.requests["/robots.txt"] == 1  # a 404 robots.txt, fetched once, means allowed


def test_parse_retry_after() -> None:
    """Delta-seconds or an HTTP date (urllib3's parser); None for anything else, a past date means now."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(None) is None
    for bad in ("", "soon", "-5", "1.5", "Mon, 99 Foo 2015 99:99:99 GMT", "Wed, 21 Oct 99999 07:28:00 GMT"):
        assert parse_retry_after(bad) is None, bad
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert parse_retry_after(in_ten_seconds) == pytest.approx(10.0, abs=1.5)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("86400") == 86400.0  # not clipped: the caller compares it with its own cap


def test_the_client_loads_no_beam() -> None:
    """The HTTP client (and its ``parse_retry_after``, which the crawl stream uses) needs no Beam (seconds to import)."""
    probe = "import json, sys; import pipeline.net.client; print(json.dumps(sorted(sys.modules)))"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(process.stdout)
    assert "pipeline.net.client" in loaded  # the probe did import it
    assert [name for name in loaded if name.split(".")[0] == "apache_beam" or name == "pipeline.core.config"] == []
