"""Consent signals: robots.txt (fetched once per origin and cached) and ``X-Robots-Tag`` opt-outs.

robots.txt follows RFC 9309 through protego (Scrapy's parser): the group of our product token (``robots_agent``,
case-insensitive; groups naming it are combined; ``*`` only when none does), the longest matching Allow/Disallow
wins and Allow wins a tie, ``*`` matches any run of characters and a final ``$`` anchors the end of the path and
query. At most ``ROBOTS_MAX_BYTES`` are parsed, a UTF-8 byte order mark is dropped. By status (section 2.3.1): a
2xx body is parsed (redirects were followed by the client); 4xx (404 included) is "unavailable", so everything is
allowed; 5xx, a timeout or a connection error is "unreachable", so everything is disallowed (a 429 is read as
unreachable too, as Google's crawler does: the server asked us to slow down, it did not say there are no rules)
until the cache is rebuilt (one per worker, per stage run). A host that does not answer at all (timeout, refused,
no DNS) gives its images that network status instead of ``robots_disallowed``: the images would not have come
either, and the funnel then says why.

``Crawl-delay`` (our group's, else ``*``'s) is honoured by the client up to ``max_crawl_delay_s``: the least time
between two requests started to the host (``RobotsRules.crawl_delay``).

``X-Robots-Tag`` is read from the response headers before the body: ``noai`` or ``noimageai`` addressed to every
agent (``X-Robots-Tag: noai``) or to ours (``X-Robots-Tag: altcorpus: noimageai``) opts the image out.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protego import Protego

#: Directives that opt an image out of AI training (the de-facto convention of DeviantArt, img2dataset, spawning.ai).
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai"})

#: Directives that carry a value after a colon, so ``max-snippet: 20`` is not read as an agent named max-snippet.
VALUED_DIRECTIVES = frozenset({"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"})

#: RFC 9309 asks crawlers to parse at least 500 KiB of robots.txt; more is ignored.
ROBOTS_MAX_BYTES = 512 * 1024

_AGENT_PREFIX = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*:\s*(.*)$")


@dataclass(frozen=True)
class RobotsResponse:
    """What fetching ``/robots.txt`` gave: an HTTP status and the body, or the network error when unreachable."""

    http_status: int | None
    body: bytes = b""
    error_status: str | None = None
    """When no HTTP answer came: fetch's status for it (timeout, connection_error, dns_error, ...)."""
    error: str | None = None


class RobotsRules:
    """The rules of one origin: allow-all, disallow-all, or a parsed robots.txt."""

    def __init__(
        self,
        parser: Protego | None,
        allow_all: bool,
        why: str,
        refusal_status: str = "robots_disallowed",
    ) -> None:
        self.parser = parser
        self.allow_all = allow_all
        self.why = why
        self.refusal_status = refusal_status

    @classmethod
    def from_response(cls, response: RobotsResponse) -> RobotsRules:
        """Rules from a robots.txt response, per RFC 9309's status handling (see the module docstring)."""
        status = response.http_status
        if status is None:
            # The host did not answer at all: its images will not either, so say what happened (RFC 9309 would
            # disallow; the result is the same, the status is more useful in the funnel).
            return cls(
                None,
                allow_all=False,
                why=response.error or "robots.txt unreachable",
                refusal_status=response.error_status or "connection_error",
            )
        if status >= 500 or status == 429:  # 429 is "overloaded": unreachable, as Google's crawler also reads it
            return cls(None, allow_all=False, why=f"robots.txt unreachable (status {status}): disallow all")
        if 400 <= status < 500:
            return cls(None, allow_all=True, why=f"robots.txt status {status}: no rules")
        if not 200 <= status < 300:
            return cls(None, allow_all=True, why=f"robots.txt status {status}: no rules")
        # utf-8-sig drops a byte order mark, which would otherwise turn the first User-agent line into an unknown one.
        text = response.body[:ROBOTS_MAX_BYTES].decode("utf-8-sig", errors="replace")
        return cls(Protego.parse(text), allow_all=False, why="robots.txt")

    def crawl_delay(self, agent: str) -> float | None:
        """The ``Crawl-delay`` (seconds) our group asks for, or ``None``: not in RFC 9309, but a widely used
        extension, read by protego from the same group the Allow/Disallow rules come from."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(agent)
        return float(delay) if delay is not None and delay > 0 else None

    def allows(self, agent: str, url: str) -> bool:
        """Whether ``agent`` may fetch ``url`` under these rules."""
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(url, agent)


class RobotsCache:
    """robots.txt rules per origin, fetched at most once per origin (threads asking together wait for one fetch)."""

    def __init__(self, fetch_robots: Callable[[str], RobotsResponse], agent: str) -> None:
        self.fetch_robots = fetch_robots
        self.agent = agent
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0

    def rules(self, origin: str) -> RobotsRules:
        """The cached rules of ``origin`` (``scheme://host:port``), fetching robots.txt the first time."""
        cached = self._rules.get(origin)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            cached = self._rules.get(origin)
            if cached is None:
                self.fetches += 1
                cached = RobotsRules.from_response(self.fetch_robots(f"{origin}/robots.txt"))
                self._rules[origin] = cached
        return cached

    def refusal(self, origin: str, url: str) -> tuple[str, str] | None:
        """``None`` when our agent may fetch ``url`` on ``origin``, else ``(status, message)``."""
        rules = self.rules(origin)
        if rules.allows(self.agent, url):
            return None
        return rules.refusal_status, f"{rules.why}: {url} disallowed for {self.agent}"


def x_robots_directives(header_values: Iterable[str], agent: str) -> set[str]:
    """The lower-cased ``X-Robots-Tag`` directives that apply to ``agent`` (general ones and ``agent:`` ones).

    Each header value is ``[agent:] directive, directive, ...``; a value naming another agent applies only to it.
    """
    agent = agent.lower()
    directives: set[str] = set()
    for value in header_values:
        addressed_to: str | None = None
        text = value.strip()
        match = _AGENT_PREFIX.match(text)
        if match and match.group(1).lower() not in VALUED_DIRECTIVES:
            addressed_to, text = match.group(1).lower(), match.group(2)
        if addressed_to not in (None, agent):
            continue
        for token in text.split(","):
            token = token.strip().lower()
            if token:
                directives.add(token.split(":", 1)[0].strip())
    return directives


def opted_out(header_values: Iterable[str], agent: str) -> str | None:
    """The opt-out directive (``noai``/``noimageai``) that applies to ``agent``, or ``None``."""
    found = sorted(x_robots_directives(header_values, agent) & OPT_OUT_DIRECTIVES)
    return found[0] if found else None
