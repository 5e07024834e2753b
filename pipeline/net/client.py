"""A polite, bounded HTTP client for image URLs, built on urllib3's connection pools.

Why urllib3 (already a dependency): connection pooling per host, streaming reads with ``read1`` (one ``recv`` at a
time, so the clock is checked between chunks), and no redirect/retry magic once switched off, so every hop and retry
is ours to check. One ``PoliteClient`` lives in a DoFn's ``setup()`` and is shared by that worker's threads.

What every fetch guarantees (statuses are fetch's closed list, see ``pipeline/stages/fetch.py``):
- only http(s), and only public addresses, checked after DNS, on every redirect hop, and on the connected socket
  (``safety``);
- robots.txt of every origin fetched once and honoured for ``robots_agent`` (``robots``);
- at most ``per_host_concurrency`` requests in flight per host (every origin of a host name shares its gate), request
  starts spaced by ``1 / per_host_requests_per_s`` or the host's robots.txt ``Crawl-delay`` (up to
  ``max_crawl_delay_s``), whichever is longer, and a shared pause for the whole host after a 429/503 (``Retry-After``
  honoured up to ``max_retry_after_s``; a longer one ends the fetch instead of hammering). These hold per client;
  the fetch stage gives each host to one client for the whole job, so they hold for the job;
- retries with jittered exponential back-off for transient failures only (connect/read timeouts, connection errors,
  429, 500, 502, 503, 504), never for a body that is too slow, too large or not an image;
- ``X-Robots-Tag`` opt-outs and ``Content-Length`` above the byte cap end the fetch before the body is read;
- the body is streamed and its magic bytes checked on the first chunk;
- the total-time and byte caps are enforced at the socket (``_BudgetedSocket``), not between body reads: every
  receive of a request (status line, headers, ``100 Continue`` responses, chunk-size lines, trailers, body) waits at
  most the time left before ``total_timeout_s`` and counts its bytes, so a server that drips any part of a response
  ends as ``timeout`` at the limit (not retried: it would drip again), and one that sends endless framing or trailers
  ends as ``too_large`` once the bytes received pass ``max_image_bytes`` plus a small allowance for headers and
  chunk framing (``raw_byte_cap``). robots.txt is fetched under the same limits (its body beyond ``ROBOTS_MAX_BYTES``
  ignored, per RFC 9309).

Content-Encoding: images are requested with ``Accept-Encoding: identity`` and read undecoded; a server that
compresses an image anyway is refused (``not_an_image``) before its body is read. Image formats are compressed
already, so nothing of value is lost, and no decoder runs on a stranger's stream (a gzip or deflate stream of empty
blocks decodes to nothing however long it is, and urllib3's deflate decoder is quadratic on it). robots.txt bodies
are still decoded: their raw bytes are capped at the socket, so the decoder's input is bounded.

Bounds of one request: the connection (TCP, then TLS) takes at most ``connect_timeout_s`` each (capped by
``total_timeout_s``), every byte of the response arrives before ``total_timeout_s`` from the request's start, and at
most ``raw_byte_cap(max_image_bytes)`` bytes are received. A fetch is at most ``max_redirects + 1`` hops, each at
most one robots.txt request (once per origin) and ``max_retries + 1`` attempts with their back-off; a deadline or
byte-cap ending is never retried. DNS resolution (``safety.resolve``) is the system resolver's and is not bounded
here.
"""

from __future__ import annotations

import io
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader, NameResolutionError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Retry

from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type
from pipeline.net.errors import FetchError
from pipeline.net.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsResponse, opted_out
from pipeline.net.safety import AddressPolicy, Target, check_connected_peer, check_url

# Only the annotations name it: the config module imports Beam (seconds), which the HTTP client does not need.
if TYPE_CHECKING:
    from pipeline.core.config import FetchConfig

#: Statuses worth another attempt: the server or the network may do better in a moment.
TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})
#: Of those, the ones that ask the client to slow down (the whole host pauses, honouring Retry-After).
BACK_OFF_HTTP = frozenset({429, 503})
REDIRECT_HTTP = frozenset({301, 302, 303, 307, 308})

CHUNK_BYTES = 256 * 1024
ACCEPT = "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.1"


def host_key(url: str) -> str:
    """The politeness unit of a URL: its lower-cased host name without port or user info ('' when none), the same as
    ``safety.check_url``'s ``Target.host``: the key of a host's gate and of the fetch stage's routing."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True)
class FetchResult:
    """How one URL ended: ``status`` ``ok`` with the body, or an error class with a message."""

    url: str
    status: str
    error: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    seconds: float = 0.0
    final_url: str | None = None
    attempts: int = 0


@dataclass
class _Response:
    """One attempt's outcome before the redirect/retry logic decides what it means."""

    http_status: int
    content_type: str | None
    location: str | None = None
    retry_after_s: float | None = None
    body: bytes | None = None


class HostGate:
    """Per-host politeness: a bounded number of requests in flight, a least interval between request starts (the
    configured rate, or robots.txt's Crawl-delay) and a shared 'not before' time (a 429/503 pause)."""

    def __init__(self, limit: int, interval_s: float = 0.0) -> None:
        self.slots = threading.BoundedSemaphore(limit)
        self.lock = threading.Lock()
        self.not_before = 0.0
        self.interval_s = interval_s
        self.next_start = 0.0

    def slow_to(self, interval_s: float) -> None:
        """Space request starts at least ``interval_s`` apart from now on (the longest asked for wins)."""
        with self.lock:
            if interval_s > self.interval_s:
                self.next_start += interval_s - self.interval_s
                self.interval_s = interval_s

    def ready_at(self) -> float:
        """The monotonic time from which a request may start (a scheduler holds a URL back until then)."""
        with self.lock:
            return max(self.not_before, self.next_start)

    def take_turn(self) -> None:
        """Wait until a request may start, then claim that start: call it holding a slot, right before the request."""
        while True:
            with self.lock:
                now = time.monotonic()
                delay = max(self.not_before, self.next_start) - now
                if delay <= 0:
                    self.next_start = now + self.interval_s
                    return
            time.sleep(min(delay, 1.0))

    def pause_until(self, moment: float) -> None:
        """Ask every thread to leave this origin alone until ``moment`` (monotonic clock)."""
        with self.lock:
            self.not_before = max(self.not_before, moment)

    def wait_turn(self) -> None:
        """Sleep out any pause the origin asked for."""
        while (delay := self.not_before - time.monotonic()) > 0:
            time.sleep(min(delay, 1.0))


#: urllib3's Retry-After parser; no ceiling of its own, since ``max_retry_after_s`` decides what is too long.
_RETRY_AFTER = Retry(retry_after_max=sys.maxsize)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date, a past date being 0); None when
    absent or invalid (negative or fractional seconds, an unparseable or out-of-range date)."""
    if value is None:
        return None
    try:
        return float(_RETRY_AFTER.parse_retry_after(value))
    except (InvalidHeader, ValueError, OverflowError):  # ValueError/OverflowError: a date beyond what time handles
        return None


#: Bytes a response may bring beyond the body cap: status line, headers and chunk framing.
RAW_ALLOWANCE_BYTES = 64 * 1024


def raw_byte_cap(max_body_bytes: int) -> int:
    """Bytes one response may bring over the wire: the body cap, 64 KiB for headers and 1/8 more for chunk framing."""
    return max_body_bytes + RAW_ALLOWANCE_BYTES + max_body_bytes // 8


class _Budget:
    """What the request in progress on this thread may still receive: a deadline and a byte cap."""

    def __init__(self, deadline: float, max_bytes: int) -> None:
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.received = 0
        self.expired = False  # set when the deadline ended a receive
        self.exhausted = False  # set when the byte cap ended a receive


class _OverByteCap(OSError):
    """Raised inside a receive when the response brought more bytes than its cap (mapped to ``too_large``)."""


#: The budget of the request this thread is making (a pooled connection serves one request at a time).
_current = threading.local()


class _BudgetedSocket:
    """A connected (possibly TLS) socket whose every receive waits at most the time left and counts its bytes.

    http.client and urllib3 read the status line, headers, chunk framing, trailers and body through ``makefile``'s
    buffered reader, which calls ``recv_into``: bounding that one call bounds every read they make. Everything else
    is the wrapped socket's.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._timeout = value  # the read timeout asked for; each receive takes the smaller of it and the time left
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self, budget: _Budget | None, nbytes: int) -> int:
        """Set the socket timeout for one receive and return how many bytes it may take."""
        if budget is None:
            return nbytes
        remaining = budget.deadline - time.monotonic()
        if remaining <= 0:
            budget.expired = True
            raise TimeoutError("total time limit reached")
        self._sock.settimeout(remaining if self._timeout is None else min(self._timeout, remaining))
        # One byte past the cap is enough to know it was passed.
        return max(1, min(nbytes, budget.max_bytes - budget.received + 1))

    def _count(self, budget: _Budget | None, received: int) -> None:
        if budget is not None:
            budget.received += received
            if budget.received > budget.max_bytes:
                budget.exhausted = True
                raise _OverByteCap(f"response passed {budget.max_bytes} bytes")

    def _timed_out(self, budget: _Budget | None) -> None:
        if budget is not None and time.monotonic() >= budget.deadline - 0.01:
            budget.expired = True

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        budget: _Budget | None = getattr(_current, "budget", None)
        allowed = self._arm(budget, nbytes or len(buffer))
        try:
            received = self._sock.recv_into(buffer, allowed, flags)
        except TimeoutError:
            self._timed_out(budget)
            raise
        self._count(budget, received)
        return received

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        budget: _Budget | None = getattr(_current, "budget", None)
        allowed = self._arm(budget, bufsize)
        try:
            data = self._sock.recv(allowed, flags)
        except TimeoutError:
            self._timed_out(budget)
            raise
        self._count(budget, len(data))
        return data

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        """A buffered reader whose raw reads come through ``recv_into`` above (http.client asks for ``"rb"``)."""
        if mode != "rb":
            return self._sock.makefile(mode, buffering, **kwargs)
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        self._sock._io_refs += 1  # as socket.makefile does: the socket closes once its files are closed too
        return io.BufferedReader(raw, buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE)


def _guarded_connection_classes(policy: AddressPolicy) -> dict[str, type]:
    """Pool classes whose connections refuse a peer ``policy`` does not allow (checked after connect, before TLS)
    and read through ``_BudgetedSocket``."""

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            check_connected_peer(sock, policy)
            return sock

        def connect(self) -> None:
            super().connect()
            self.sock = _BudgetedSocket(self.sock)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            check_connected_peer(sock, policy)
            return sock

        def connect(self) -> None:
            super().connect()  # the TLS handshake runs under the connect timeout
            self.sock = _BudgetedSocket(self.sock)

    class GuardedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}


class PoliteClient:
    """Fetches image URLs under ``FetchConfig``'s limits; thread-safe, one per worker."""

    def __init__(self, config: FetchConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.policy = AddressPolicy(config.allow_private_addresses, config.allowed_addresses)
        self.headers = {"User-Agent": config.user_agent, "Accept": ACCEPT, "Accept-Encoding": "identity"}
        self.pool = urllib3.PoolManager(
            num_pools=max(64, config.concurrency * 4),
            maxsize=config.per_host_concurrency,
            block=False,
            retries=False,
            headers=self.headers,
        )
        self.pool.pool_classes_by_scheme = _guarded_connection_classes(self.policy)
        self.robots = RobotsCache(self._fetch_robots, config.robots_agent)
        self._gates: dict[str, HostGate] = {}
        rate = config.per_host_requests_per_s
        self._interval_s = 1.0 / rate if rate else 0.0
        self._gates_lock = threading.Lock()
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()

    def gate(self, host: str) -> HostGate:
        """The politeness gate of a host (``host_key``; created on first use): every origin of the host shares it."""
        with self._gates_lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = self._gates[host] = HostGate(self.config.per_host_concurrency, self._interval_s)
            return gate

    def ready_at(self, host: str) -> float:
        """When the next request to ``host`` may start (monotonic); a host not seen yet may start now."""
        with self._gates_lock:
            gate = self._gates.get(host)
        return gate.ready_at() if gate is not None else 0.0

    def interval_s(self, host: str) -> float:
        """The least time between two request starts to ``host`` (its rate or Crawl-delay; 0 when unspaced)."""
        with self._gates_lock:
            gate = self._gates.get(host)
        return gate.interval_s if gate is not None else self._interval_s

    def _honour_crawl_delay(self, target: Target) -> None:
        """Slow the host's gate to its robots.txt Crawl-delay, capped at ``max_crawl_delay_s`` (0: ignored)."""
        cap = self.config.max_crawl_delay_s
        if cap <= 0:
            return
        delay = self.robots.rules(target.origin).crawl_delay(self.config.robots_agent)
        if delay is not None:
            self.gate(target.host).slow_to(min(delay, cap))

    # -- public --------------------------------------------------------------------------------------------------
    def fetch(self, url: str) -> FetchResult:
        """Fetch one image URL; never raises for anything the URL or server does (the status says what happened)."""
        started = time.monotonic()
        attempts = [0]
        current = url
        content_type: str | None = None
        http_status: int | None = None
        try:
            for _ in range(self.config.max_redirects + 1):
                target = check_url(current, self.policy)
                if self.config.respect_robots:
                    refusal = self.robots.refusal(target.origin, current)
                    if refusal is not None:
                        raise FetchError(refusal[0], refusal[1])
                    self._honour_crawl_delay(target)
                response = self._with_retries(target, current, attempts, image=True)
                http_status, content_type = response.http_status, response.content_type
                if response.location is not None:
                    current = urljoin(current, response.location)
                    continue
                return FetchResult(
                    url=url,
                    status="ok",
                    http_status=http_status,
                    content_type=content_type,
                    body=response.body,
                    seconds=time.monotonic() - started,
                    final_url=current,
                    attempts=attempts[0],
                )
            raise FetchError("too_many_redirects", f"more than {self.config.max_redirects} redirects (last {current})")
        except FetchError as error:
            return FetchResult(
                url=url,
                status=error.status,
                error=error.message,
                http_status=error.http_status or http_status,
                content_type=content_type,
                seconds=time.monotonic() - started,
                final_url=current,
                attempts=attempts[0],
            )

    # -- attempts and retries ------------------------------------------------------------------------------------
    def _with_retries(self, target: Target, url: str, attempts: list[int], image: bool) -> _Response:
        """One request, retried with jittered back-off while the failure is transient."""
        gate = self.gate(target.host)
        for attempt in range(self.config.max_retries + 1):
            gate.wait_turn()
            attempts[0] += 1
            retry_after: float | None = None
            try:
                with gate.slots:
                    gate.take_turn()
                    response = self._request(url, image=image)
                if response.http_status not in TRANSIENT_HTTP:
                    return response
                retry_after = response.retry_after_s
                failure = FetchError(
                    f"http_{response.http_status}", f"HTTP {response.http_status}", response.http_status
                )
            except FetchError as error:
                if not error.transient:
                    raise
                failure = error
            if attempt == self.config.max_retries:
                raise failure
            delay = self._backoff(attempt)
            if retry_after is not None:
                if retry_after > self.config.max_retry_after_s:
                    failure.message += (
                        f" (Retry-After {retry_after:.0f} s exceeds the {self.config.max_retry_after_s} s cap)"
                    )
                    raise failure
                delay = max(delay, retry_after)
            if failure.http_status in BACK_OFF_HTTP:
                gate.pause_until(time.monotonic() + delay)  # the whole origin asked to slow down, not just this URL
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _backoff(self, attempt: int) -> float:
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.5)
        return self.config.retry_backoff_s * (2**attempt) * jitter

    # -- one request ---------------------------------------------------------------------------------------------
    def _request(self, url: str, image: bool, max_bytes: int | None = None) -> _Response:
        """One GET under the time and byte caps (enforced on every receive); raises ``FetchError`` (``transient``
        set when it is)."""
        config = self.config
        max_bytes = config.max_image_bytes if max_bytes is None else max_bytes
        budget = _Budget(time.monotonic() + config.total_timeout_s, raw_byte_cap(max_bytes))
        timeout = urllib3.Timeout(
            connect=min(config.connect_timeout_s, config.total_timeout_s),
            read=min(config.read_timeout_s, config.total_timeout_s),
        )
        _current.budget = budget
        try:
            try:
                response = self.pool.urlopen(
                    "GET",
                    url,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=not image,  # images are read as sent (see the module docstring)
                    timeout=timeout,
                    assert_same_host=False,
                )
            except FetchError:
                raise
            except Exception as error:
                raise self._ended(budget, error, "before the response headers") from None
            try:
                return self._respond(response, budget, max_bytes, image)
            finally:
                # An unread or partly read body cannot be reused on the connection: close it first; either way the
                # connection goes back to the pool (a closed one is reopened on next use).
                if not response.isclosed():
                    response.close()
                response.release_conn()
        finally:
            _current.budget = None

    def _ended(self, budget: _Budget, error: Exception, where: str) -> FetchError:
        """The FetchError for an exception raised while receiving: the caps first (never retried), then the rest."""
        if budget.expired:
            # The total-time cap, not a hiccup: a server that drips will drip again, so no retry.
            return FetchError(
                "timeout",
                f"response not complete after {self.config.total_timeout_s} s ({where}, "
                f"{budget.received} bytes received)",
            )
        if budget.exhausted:
            return FetchError("too_large", f"response passed {budget.max_bytes} bytes received ({where})")
        return _network_error(error)

    def _respond(self, response: Any, budget: _Budget, max_bytes: int, image: bool) -> _Response:
        """Judge the status and headers, then read the body."""
        config = self.config
        http_status = response.status
        content_type = response.headers.get("Content-Type")
        if http_status in REDIRECT_HTTP and response.headers.get("Location"):
            return _Response(http_status, content_type, location=response.headers["Location"])
        if http_status in TRANSIENT_HTTP:
            return _Response(
                http_status, content_type, retry_after_s=parse_retry_after(response.headers.get("Retry-After"))
            )
        if not 200 <= http_status < 300:
            raise FetchError(f"http_{http_status}", f"HTTP {http_status} {response.reason or ''}".strip(), http_status)
        if image and config.respect_opt_out:
            directive = opted_out(response.headers.getlist("X-Robots-Tag"), config.robots_agent)
            if directive is not None:
                raise FetchError("opted_out", f"X-Robots-Tag: {directive}", http_status)
        declared = response.headers.get("Content-Length", "")
        if image and declared.strip().isdigit() and int(declared) > max_bytes:
            raise FetchError("too_large", f"Content-Length {declared} > cap {max_bytes}", http_status)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if image and encoding not in ("", "identity"):
            raise FetchError(
                "not_an_image", f"Content-Encoding {encoding} although identity was asked for: refused", http_status
            )
        body = self._read_body(response, budget, max_bytes, image, http_status)
        return _Response(http_status, content_type, body=body)

    def _read_body(self, response: Any, budget: _Budget, max_bytes: int, image: bool, http_status: int) -> bytes:
        """Stream the body (time and bytes are bounded at the socket), checking the magic bytes of an image."""
        chunks: list[bytes] = []
        received = 0
        sniffed = not image
        while True:
            try:
                chunk = response.read1(CHUNK_BYTES)
            except Exception as error:
                if budget.exhausted and not image:
                    break  # robots.txt beyond the parse limit is ignored, per RFC 9309
                raise self._ended(budget, error, f"body, {received} bytes in") from None
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
            if received > max_bytes:
                if not image:
                    break  # robots.txt beyond the parse limit is ignored, per RFC 9309
                raise FetchError("too_large", f"body exceeds cap {max_bytes} bytes", http_status)
            if not sniffed and received >= SNIFF_BYTES:
                head = b"".join(chunks)[:SNIFF_BYTES]
                if sniff_raster_type(head) is None:
                    raise FetchError("not_an_image", f"body starts with {head!r}, not an image signature", http_status)
                sniffed = True
        body = b"".join(chunks)[:max_bytes]
        if not sniffed and sniff_raster_type(body[:SNIFF_BYTES]) is None:
            raise FetchError("not_an_image", f"body of {len(body)} bytes is not an image", http_status)
        return body

    # -- robots.txt ----------------------------------------------------------------------------------------------
    def _fetch_robots(self, robots_url: str) -> RobotsResponse:
        """GET robots.txt (redirects followed and checked like any hop); unreachable gives no status."""
        current = robots_url
        try:
            for _ in range(self.config.max_redirects + 1):
                target = check_url(current, self.policy)
                gate = self.gate(target.host)
                with gate.slots:
                    gate.take_turn()  # robots.txt is a request to the host like any other
                    response = self._request(current, image=False, max_bytes=ROBOTS_MAX_BYTES)
                if response.location is not None:
                    current = urljoin(current, response.location)
                    continue
                return RobotsResponse(response.http_status, response.body or b"")
            return RobotsResponse(
                None, error_status="too_many_redirects", error=f"robots.txt redirected too often ({current})"
            )
        except FetchError as error:
            if error.http_status is not None:
                return RobotsResponse(error.http_status)
            return RobotsResponse(None, error_status=error.status, error=f"robots.txt: {error.message}")


def _network_error(error: Exception) -> FetchError:
    """Map a urllib3/socket exception to fetch's statuses; timeouts and connection errors are transient."""
    if isinstance(error, FetchError):
        return error
    # Order matters: urllib3's NameResolutionError is a NewConnectionError, which is a ConnectTimeoutError.
    if isinstance(error, NameResolutionError):
        return FetchError("dns_error", str(error), transient=True)
    if isinstance(error, NewConnectionError):
        return FetchError("connection_error", f"{type(error).__name__}: {error}", transient=True)
    if isinstance(error, Urllib3Timeout | TimeoutError):
        return FetchError("timeout", f"{type(error).__name__}: {error}", transient=True)
    if isinstance(error, SSLError):  # a bad certificate stays bad: no retry
        return FetchError("connection_error", f"TLS: {error}")
    # protocol errors, resets, incomplete bodies
    return FetchError("connection_error", f"{type(error).__name__}: {error}", transient=True)
