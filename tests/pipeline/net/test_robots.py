"""robots.txt (RFC 9309) and X-Robots-Tag, through the real fetch path: a real loopback server, a real PoliteClient.

Each robots.txt case is served by its own ``MisbehavingServer``; a path the rules disallow must end as
``robots_disallowed`` and must never reach the server.
"""

from __future__ import annotations

import functools

import pytest

from pipeline.core.config import FetchConfig
from pipeline.net.client import PoliteClient
from pipeline.net.robots import ROBOTS_MAX_BYTES, RobotsResponse, RobotsRules, opted_out, x_robots_directives
from tests.fixtures.http_server import MisbehavingServer, encode, photo

CONFIG = FetchConfig(
    connect_timeout_s=1.0,
    read_timeout_s=1.0,
    total_timeout_s=2.0,
    max_retries=0,
    retry_backoff_s=0.05,
    allow_private_addresses=True,
)
assert CONFIG.robots_agent == "altcorpus"  # the product token every robots.txt below names


@functools.cache
def images() -> dict[str, bytes]:
    return {"astronaut.jpg": encode(photo("astronaut"), "JPEG"), "coffee.png": encode(photo("coffee"), "PNG")}


def fetched_statuses(robots_txt: bytes | None, paths: list[str], robots_status: int = 200) -> dict[str, str]:
    """Fetch ``paths`` from a fresh server serving ``robots_txt``: each path's status; checks what the server saw."""
    client = PoliteClient(CONFIG)
    try:
        with MisbehavingServer(images(), robots_txt=robots_txt, robots_status=robots_status) as server:
            statuses = {path: client.fetch(server.url(path)).status for path in paths}
            seen = dict(server.targets)
    finally:
        client.close()
    assert seen.get("/robots.txt") == 1  # fetched once for the origin, whatever it said
    for path, status in statuses.items():
        if status == "robots_disallowed":
            assert seen.get(path, 0) == 0, f"{path} was requested although robots.txt disallows it"
    return statuses


# (robots.txt, {path: expected status}): each one a rule of RFC 9309 section 2.2.
RFC_9309_CASES = {
    "longest match wins over file order": (
        b"User-agent: *\nAllow: /\nDisallow: /secret/\n",
        {"/secret/astronaut.jpg": "robots_disallowed", "/public/astronaut.jpg": "ok"},
    ),
    "longest match wins, allow inside a disallowed folder": (
        b"User-agent: altcorpus\nDisallow: /photos/\nAllow: /photos/open/\n",
        {"/photos/open/astronaut.jpg": "ok", "/photos/closed/astronaut.jpg": "robots_disallowed"},
    ),
    "allow beats disallow at equal length": (
        b"User-agent: altcorpus\nDisallow: /same/\nAllow: /same/\n",
        {"/same/astronaut.jpg": "ok"},
    ),
    "$ anchors the end of the path and query": (
        b"User-agent: altcorpus\nDisallow: /*.jpg$\n",
        {"/a/astronaut.jpg": "robots_disallowed", "/a/astronaut.jpg?x=1": "ok", "/a/coffee.png": "ok"},
    ),
    "* in the middle of a path": (
        b"User-agent: altcorpus\nDisallow: /photos/*/private/\n",
        {"/photos/2024/private/astronaut.jpg": "robots_disallowed", "/photos/2024/public/astronaut.jpg": "ok"},
    ),
    "our group, matched case-insensitively, replaces *'s": (
        b"User-agent: *\nDisallow: /\n\nUser-agent: AltCorpus\nDisallow: /mine/\n",
        {"/mine/astronaut.jpg": "robots_disallowed", "/theirs/astronaut.jpg": "ok"},
    ),
    "another agent's group does not apply": (
        b"User-agent: otherbot\nDisallow: /\n",
        {"/any/astronaut.jpg": "ok"},
    ),
    "groups naming the same agent are combined": (
        b"User-agent: altcorpus\nDisallow: /first/\n\nUser-agent: otherbot\nDisallow: /\n\n"
        b"User-agent: altcorpus\nDisallow: /second/\n",
        {"/first/astronaut.jpg": "robots_disallowed", "/second/astronaut.jpg": "robots_disallowed"},
    ),
    "a UTF-8 byte order mark does not hide the first group": (
        b"\xef\xbb\xbfUser-agent: *\nDisallow: /bom/\n",
        {"/bom/astronaut.jpg": "robots_disallowed", "/other/astronaut.jpg": "ok"},
    ),
    "an empty Disallow allows everything": (
        b"User-agent: *\nDisallow:\n",
        {"/any/astronaut.jpg": "ok"},
    ),
}


@pytest.mark.parametrize(("robots_txt", "expected"), RFC_9309_CASES.values(), ids=RFC_9309_CASES.keys())
def test_robots_txt_rules_follow_rfc_9309(robots_txt: bytes, expected: dict[str, str]) -> None:
    assert fetched_statuses(robots_txt, list(expected)) == expected


def test_robots_txt_beyond_the_parse_limit_is_ignored() -> None:
    """RFC 9309 section 2.5: at least 500 KiB is parsed; the rules after our limit are not."""
    filler = b"# padding\n" * (ROBOTS_MAX_BYTES // 10 + 1)
    robots_txt = b"User-agent: altcorpus\nDisallow: /early/\n" + filler + b"Disallow: /late/\n"
    assert len(robots_txt) > ROBOTS_MAX_BYTES
    statuses = fetched_statuses(robots_txt, ["/early/astronaut.jpg", "/late/astronaut.jpg"])
    assert statuses == {"/early/astronaut.jpg": "robots_disallowed", "/late/astronaut.jpg": "ok"}


# RFC 9309 section 2.3.1: 4xx is "unavailable" (allow all); 5xx is "unreachable" (disallow all). A 429 is read as
# unreachable too, as Google's crawler does: the server asked us to slow down, not told us there are no rules.
STATUS_CASES = {
    200: "robots_disallowed",  # the body's rules apply
    301: "robots_disallowed",  # followed to /moved/robots.txt, whose rules apply (section 2.3.1.2)
    401: "ok",
    403: "ok",
    404: "ok",
    410: "ok",
    429: "robots_disallowed",
    500: "robots_disallowed",
    503: "robots_disallowed",
}


@pytest.mark.parametrize(("robots_status", "expected"), STATUS_CASES.items(), ids=map(str, STATUS_CASES))
def test_robots_txt_status_codes_follow_rfc_9309(robots_status: int, expected: str) -> None:
    robots_txt = b"User-agent: *\nDisallow: /photos/\n"
    statuses = fetched_statuses(robots_txt, ["/photos/astronaut.jpg"], robots_status=robots_status)
    assert statuses == {"/photos/astronaut.jpg": expected}


def test_robots_rules_from_responses() -> None:
    url = "http://example.org/photo.jpg"
    assert RobotsRules.from_response(RobotsResponse(404)).allows("altcorpus", url)
    assert not RobotsRules.from_response(RobotsResponse(503)).allows("altcorpus", url)
    assert not RobotsRules.from_response(RobotsResponse(429)).allows("altcorpus", url)
    unreachable = RobotsRules.from_response(RobotsResponse(None, error_status="timeout", error="timed out"))
    assert not unreachable.allows("altcorpus", url) and unreachable.refusal_status == "timeout"
    body = b"User-agent: altcorpus\nDisallow: /photo\n\nUser-agent: *\nAllow: /\n"
    rules = RobotsRules.from_response(RobotsResponse(200, body))
    assert not rules.allows("altcorpus", url)
    assert rules.allows("otherbot", url)


def test_x_robots_tag_parsing() -> None:
    assert opted_out(["noai"], "altcorpus") == "noai"
    assert opted_out(["noindex, NoImageAI"], "altcorpus") == "noimageai"
    assert opted_out(["altcorpus: noai"], "altcorpus") == "noai"
    assert opted_out(["googlebot: noai"], "altcorpus") is None
    assert opted_out(["max-snippet: 20, noai"], "altcorpus") == "noai"  # a valued directive, not an agent name
    assert opted_out(["noindex, nofollow"], "altcorpus") is None
    assert x_robots_directives(["otherbot: noai", "nofollow"], "altcorpus") == {"nofollow"}
