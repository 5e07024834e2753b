"""``fetch`` stage: one fetch per distinct image URL, from the input WARCs' archived responses or over HTTP(S).

Reads ``text_kept/`` (only the columns a rejection needs) and ``archived_images/``, reduces both to one element per
image URL (so a URL with a thousand alt texts is fetched once), obtains and processes each URL's image on a bounded
thread pool inside the DoFn, and writes ``images/`` (one FetchedImage row per distinct URL, with the re-encoded JPEG
when ok, or with ``--keep-original-bytes`` the original JPEG, PNG or WebP file: ``pipeline.images.process``)
and ``rejected/fetch-*`` (every candidate of a failed URL, with the URL's status as reason). Kept candidates are not
rewritten: filter-image joins ``text_kept/`` with ``images/`` by URL.

Hot keys (an image URL on a million pages, a million archived copies of one URL): what reaches the fetching DoFn per
URL is bounded, never the URL's candidate rows. ``UrlsToFetch`` counts a URL's candidates with a combiner and
picks its archived response with another (``BestArchived``, ``choose_archived``'s order), each pre-combined in a
worker with a bounded number of URLs held (``pipeline.core.combine``), then joins the two (at most one value of each
per URL). The rejections of a failed URL's candidates are made after the fetch, by a streamed join of every
candidate with the ``images/`` rows that are not ok (``RejectCandidates``: tagged values and a ``GroupByKey``, the
group iterated twice, never listed), for the parts fetched now and those of an earlier run alike.

Resolution order (``--fetch-mode``): ``archive-then-http`` (default) uses the archived response when the WARCs hold
one (a 3xx archived response holds no image, so HTTP is tried), else HTTP; ``archive-only`` never goes to the
network (``not_archived``); ``http-only`` ignores the archive. Archived responses go through the same checks as
HTTP ones (status code, X-Robots-Tag opt-out, byte cap, magic bytes, decode); robots.txt is not re-checked for
them, since no request is made. ``Content-Type`` is recorded but never trusted: the magic bytes decide (a JPEG
served as text/plain is ok, an HTML page served as image/jpeg is ``not_an_image``).

Politeness holds for the whole job, on any runner and any number of workers, with no state outside Beam: every URL
of a host (``pipeline.net.client.host_key``: the lower-cased host name) falls in the same part (``part_of`` hashes
the host, not the URL), and a part is fetched by one DoFn, so one worker's client alone talks to a host during the
job. That client keeps at most ``per_host_concurrency`` requests in flight to the host and spaces their starts by
``1 / per_host_requests_per_s`` or the host's robots.txt ``Crawl-delay`` (capped by ``max_crawl_delay_s``),
whichever is longer. The DoFn holds a host's URLs back until its gate is ready, and sends one URL alone until the
first request (which reads robots.txt) has finished, so a spaced host parks no pool thread. A host with millions of
URLs neither stalls the other hosts nor fills memory: each host keeps at most ``host_queue_held`` of its URLs in
memory and spills the rest, in order, to a local temporary file (``HostQueue``) while the DoFn reads on to the other
hosts, and the parts of a bundle are fetched together. Not covered: a redirect to another host is made under this
worker's gate of that host, which another part may be fetching at the same time.

Statuses (the closed list; every one but ``ok`` is also the rejection reason of the URL's candidates):
``ok``, ``http_<code>``, ``timeout``, ``robots_disallowed``, ``opted_out``, ``too_large``, ``not_an_image``,
``decode_error``, ``decompression_bomb``, ``private_address``, ``unsupported_scheme``, ``too_many_redirects``,
``connection_error``, ``dns_error``, ``not_archived``.

Resumable in parts: distinct URLs fall into ``fetch_parts`` parts (``--fetch-parts``, default 64) by a stable hash of
their host (``part_of``); the count also caps how many parts, so DoFns, fetch at once. Each part is fetched by
``FetchPart`` (the same per-host queues and limits as ``FetchImages``), which writes its ``images/`` rows as a Parquet
file under ``_parts/fetch-<digest>/`` (temporary name, rename) and then its marker ``part-NNNNN.done`` (the file and
the part's counters, ``candidates_rejected`` included), last. The digest is the stage's fingerprint (upstream run ids
and fetch config, the part count included), so a rerun after a crash or Ctrl-C skips parts whose marker exists
(filtered out when the graph is built; their counters are re-counted from the markers) and fetches only the rest; a
different fingerprint (another part count too) removes the old parts and starts from zero. The parts' files become
``images/`` as they are (``promote_image_parts``: hard-linked on a local disk, copied by the file system elsewhere;
never read back and rewritten, which doubled the stage's disk and passed every image through Python again), the
rejections are joined from their URL and status columns as ``rejected/fetch-*`` (so each is written once, whichever
run fetched its URL), and the parts folder is deleted once the stage succeeded.
Test hook: ``ALTCORPUS_TEST_FETCH_FAIL_AFTER_PARTS`` (an integer) makes a worker fail after writing that many parts,
as an interruption would; never set it in production.

Counters (``altcorpus/fetch:<name>``): one per status, ``urls``, ``source_archive``, ``source_http``,
``bytes_original`` (image bytes obtained), ``bytes_http`` (of those, downloaded), ``bytes_stored`` (images written),
``candidates_rejected``; each worker also logs its candidates done of the total, rate, ETA and URLs per status
(``pipeline.core.progress``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from pipeline.core.combine import BoundedCombinePerKey, BoundedCountPerKey
from pipeline.core.config import CorpusConfig, CorpusOptions, FetchConfig
from pipeline.core.layout import (
    PARTS,
    CorpusLayout,
    ReadTable,
    WriteTable,
    delete_tree,
    list_matching,
    read_row_groups,
    read_text,
    remove_if_empty,
    top_folders,
    write_text_atomically,
)
from pipeline.core.local_runner import HeapTrimmer
from pipeline.core.progress import StageProgress, table_progress
from pipeline.core.reasons import FetchReason, http_status_reason
from pipeline.core.rules import REJECTED, counter, rejection
from pipeline.core.stage import pipeline_options, run_stage, stage_fingerprint
from pipeline.images.process import DecodeBudget, ImageError, process_image
from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type
from pipeline.net.client import FetchResult, PoliteClient, host_key
from pipeline.net.robots import opted_out
from schemas import ArchivedImage, FetchedImage, Rejection, TextKept

log = logging.getLogger("altcorpus")

STAGE = "fetch"
FETCH_MODES = ("archive-then-http", "archive-only", "http-only")
#: Bytes of rows a worker's open parts gather before writing them as row groups (bounds what they hold in memory).
#: Writing a row group costs about twice its bytes again (the Arrow table, then Parquet's pages): at 32 MB, memray
#: put 120 MB of a fetch worker's 270 MB peak there on the 100 MB simulated crawl; at 8 MB its largest worker was
#: 443 -> 391 MB. The cost: Parquet's dictionary finds a part's repeated images within a row group only, so images/
#: of that crawl (many copies of each picture) took 512 MB instead of 392 (756 without the dictionary).
PART_ROW_GROUP_BYTES = 8 * 1024 * 1024
FAIL_AFTER_PARTS_ENV = "ALTCORPUS_TEST_FETCH_FAIL_AFTER_PARTS"
#: How parts are formed; part of the parts folder's digest, so parts made under another routing are never reused.
PART_ROUTING = "host"
#: URLs held in memory per bundle, per ``concurrency``: the DoFn stops reading new URLs while more are held.
HELD_PER_THREAD = 8
#: URLs a host's queue writes to (and reads from) its spill file at once.
SPILL_CHUNK = 64


def host_queue_held(config: FetchConfig) -> int:
    """URLs of one host held in memory while they wait (the rest spill to disk): twice the host's limit, at least 4,
    and at most a quarter of all a bundle holds, so one host's backlog never stops the DoFn reading other hosts."""
    return min(max(2 * config.per_host_concurrency, 4), max(1, HELD_PER_THREAD * config.concurrency // 4))


#: URLs whose chosen archived response (its body included) a worker's pre-combine holds at most at once.
ARCHIVED_KEYS_HELD = 1_000
#: The columns of text_kept/ a rejection row needs; the rest stays on disk.
CANDIDATE_COLUMNS = [TextKept.CANDIDATE_ID, TextKept.KEY, TextKept.IMAGE_URL, TextKept.ALT_TEXT, TextKept.PAGE_URL]
#: Tags of the joins by image URL: its candidate count and its chosen archived response (``UrlsToFetch``, before the
#: fetch); a candidate row and the URL's status when not ok (``RejectCandidates``, after it).
_COUNT, _ARCHIVED, _CANDIDATE, _FAILED = 0, 1, 2, 3


def archived_rank(record: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key of a URL's archived responses, best first: a 2xx beats anything else, then the latest crawl, then the
    first (file, offset), so the same one is chosen on any runner."""
    status = record.get(ArchivedImage.HTTP_STATUS) or 200
    return (
        0 if 200 <= status < 300 else 1,
        _negated(record.get(ArchivedImage.CRAWL_DATE) or ""),
        record.get(ArchivedImage.WARC_FILE) or "",
        record.get(ArchivedImage.WARC_RECORD_OFFSET) or 0,
    )


def choose_archived(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The archived response to use when the WARCs hold several for one URL (``archived_rank``'s best); ``None``
    when there is none. Reads the records once and keeps only the best so far."""
    return min(records, key=archived_rank, default=None)


class BestArchived(beam.CombineFn):
    """``choose_archived`` as a combiner: a URL archived a million times is reduced to one record ahead of the
    shuffle (the accumulator is the best record so far, or ``None``), never gathered into a list."""

    def create_accumulator(self) -> dict[str, Any] | None:
        return None

    def add_input(self, best: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        return record if best is None or archived_rank(record) < archived_rank(best) else best

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
        return choose_archived(best for best in accumulators if best is not None)

    def extract_output(self, best: dict[str, Any] | None) -> dict[str, Any] | None:
        return best


def _negated(text: str) -> tuple[int, ...]:
    """A sort key that orders strings descending (latest crawl date first)."""
    return tuple(-ord(character) for character in text)


def archived_result(record: dict[str, Any], config: FetchConfig) -> FetchResult | None:
    """Judge an archived response like an HTTP one; ``None`` when it holds no image to judge (a redirect)."""
    url = record[ArchivedImage.IMAGE_URL]
    status = record.get(ArchivedImage.HTTP_STATUS) or 200  # a WARC resource record has no HTTP status
    content_type = record.get(ArchivedImage.CONTENT_TYPE)
    body: bytes = record.get(ArchivedImage.BODY) or b""

    def failed(reason: str, message: str) -> FetchResult:
        return FetchResult(url, reason, f"archived: {message}", status, content_type, final_url=url)

    if 300 <= status < 400:
        return None
    if not 200 <= status < 300:
        return failed(http_status_reason(status), f"HTTP {status}")
    if config.respect_opt_out:
        tag = record.get(ArchivedImage.X_ROBOTS_TAG)
        directive = opted_out(tag.split("\n") if tag else [], config.robots_agent)
        if directive is not None:
            return failed(FetchReason.OPTED_OUT, f"X-Robots-Tag: {directive}")
    if len(body) > config.max_image_bytes:
        return failed(FetchReason.TOO_LARGE, f"{len(body)} bytes > cap {config.max_image_bytes}")
    if sniff_raster_type(body[:SNIFF_BYTES]) is None:
        return failed(FetchReason.NOT_AN_IMAGE, f"body starts with {body[:SNIFF_BYTES]!r}")
    return FetchResult(url, "ok", None, status, content_type, body, final_url=url)


@dataclass
class Obtained:
    """A URL's bytes in hand (or why there are none): what ``obtain`` gives ``process_obtained``."""

    url: str
    result: FetchResult
    source: str
    started: float


def obtain(url: str, archived: dict[str, Any] | None, client: PoliteClient | None, config: FetchConfig) -> Obtained:
    """Obtain one image URL's bytes: its archived response, else (per ``fetch_mode``) one HTTP fetch through
    ``client``. The only part of a URL's work that is a request to its host, so the only part its host's limits
    count."""
    started = time.monotonic()
    result: FetchResult | None = None
    source = None
    if archived is not None and config.fetch_mode != "http-only":
        result, source = archived_result(archived, config), "archive"
    if result is None:
        if config.fetch_mode == "archive-only" or client is None:
            why = "archived response is a redirect" if archived is not None else "no archived response"
            result, source = (
                FetchResult(url, FetchReason.NOT_ARCHIVED, f"{why} and fetch mode is archive-only"),
                "archive",
            )
        else:
            source = "http"
            try:
                result = client.fetch(url)
            except Exception as error:  # the client maps every known failure; this keeps a bug from killing the job
                result = FetchResult(url, FetchReason.CONNECTION_ERROR, f"unexpected {type(error).__name__}: {error}")
    return Obtained(url, result, source, started)


def needs_processing(obtained: Obtained) -> bool:
    """Whether ``process_obtained`` has an image to decode (else it only writes the failure's row)."""
    return obtained.result.status == "ok" and obtained.result.body is not None


def process_obtained(obtained: Obtained, config: FetchConfig, budget: DecodeBudget | None = None) -> dict[str, Any]:
    """The URL's ``images/`` row: its status, and when ok its decoded, checked and re-encoded image.

    Processing (waiting for ``budget``, the worker's decode memory, then decoding) has ``total_timeout_s`` of its
    own from when the bytes are in hand."""
    result = obtained.result
    row = FetchedImage.row(
        image_url=obtained.url,
        status=result.status,
        error=result.error,
        source=obtained.source,
        http_status=result.http_status,
        content_type=result.content_type,
    )
    if needs_processing(obtained):
        assert result.body is not None
        row[FetchedImage.ORIGINAL_BYTES] = len(result.body)
        try:
            image = process_image(
                result.body,
                config.max_image_pixels,
                config.resize_mode,
                config.image_size,
                config.jpeg_quality,
                budget=budget,
                deadline=time.monotonic() + config.total_timeout_s,
                keep_original=config.keep_original_bytes,
            )
        except ImageError as error:
            row.update({FetchedImage.STATUS: error.reason, FetchedImage.ERROR: error.detail})
        except Exception as error:  # an image that breaks Pillow in an unforeseen way is a bad image, not a crash
            row.update(
                {FetchedImage.STATUS: FetchReason.DECODE_ERROR, FetchedImage.ERROR: f"{type(error).__name__}: {error}"}
            )
        else:
            row.update(
                {
                    FetchedImage.SHA256: image.sha256,
                    FetchedImage.PHASH: image.phash,
                    FetchedImage.ORIGINAL_FORMAT: image.original_format,
                    FetchedImage.ORIGINAL_WIDTH: image.original_width,
                    FetchedImage.ORIGINAL_HEIGHT: image.original_height,
                    FetchedImage.WIDTH: image.width,
                    FetchedImage.HEIGHT: image.height,
                    FetchedImage.IMAGE: image.image_bytes,
                }
            )
    row[FetchedImage.FETCH_SECONDS] = round(time.monotonic() - obtained.started, 4)
    return row


def fetch_one(
    url: str,
    archived: dict[str, Any] | None,
    client: PoliteClient | None,
    config: FetchConfig,
    budget: DecodeBudget | None = None,
) -> dict[str, Any]:
    """Obtain (archive, then HTTP, per ``fetch_mode``) and process one image URL, in this thread: its ``images/``
    row. (``FetchImages`` runs the two halves as separate tasks, so processing holds no host slot.)"""
    return process_obtained(obtain(url, archived, client, config), config, budget)


def host_of(url: str) -> str:
    """The host a URL's requests count against (``host_key``; '' when none): the unit the DoFn and parts schedule."""
    return host_key(url)


class HostQueue:
    """One host's waiting URLs in arrival order: the first ``held`` in memory, the rest pickled in chunks of
    ``SPILL_CHUNK`` to a local temporary file and read back a chunk at a time as the memory queue empties, so a host
    with millions of URLs holds at most ``held`` plus two chunks of them in memory."""

    def __init__(self, held: int) -> None:
        self.held = max(1, held)
        #: Whether a request of this queue has finished: until then one URL goes at a time, since that first request
        #: also reads the host's robots.txt, whose Crawl-delay may space the rest.
        self.probed = False
        self.memory: deque[Any] = deque()
        self.spilled = 0  # items not in ``memory``: in chunks on disk, then in ``_outbox``
        self._outbox: list[Any] = []
        self._chunks = 0
        self._file: Any = None
        self._read_at = 0
        self._write_at = 0

    def __len__(self) -> int:
        return len(self.memory) + self.spilled

    def append(self, item: Any) -> bool:
        """Queue ``item``; True when it did not stay in memory (the memory queue is full, or older items are out)."""
        if not self.spilled and len(self.memory) < self.held:
            self.memory.append(item)
            return False
        self._outbox.append(item)
        self.spilled += 1
        if len(self._outbox) >= SPILL_CHUNK:
            if self._file is None:
                # Open while chunks wait on it, across calls: closed by ``popleft`` once drained, or by ``close``.
                self._file = tempfile.TemporaryFile(prefix="altcorpus-fetch-host-")  # noqa: SIM115
                self._read_at = self._write_at = 0
            self._file.seek(self._write_at)
            pickle.dump(self._outbox, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._write_at = self._file.tell()
            self._chunks += 1
            self._outbox = []
        return True

    def popleft(self) -> tuple[Any, int]:
        """The oldest item, and how many spilled items came back into memory (a chunk once the memory queue empties)."""
        item = self.memory.popleft()
        if self.memory or not self.spilled:
            return item, 0
        if self._chunks:
            self._file.seek(self._read_at)
            chunk = pickle.load(self._file)
            self._read_at = self._file.tell()
            self._chunks -= 1
            if not self._chunks:
                self.close()
        else:
            chunk, self._outbox = self._outbox, []
        self.memory.extend(chunk)
        self.spilled -= len(chunk)
        return item, len(chunk)

    def close(self) -> None:
        """Delete the spill file (a queue dropped with items left, as at a failure, leaves nothing behind)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class FetchImages(beam.DoFn):
    """Obtain every URL's image on a bounded thread pool; emit its ``images/`` row.

    An element is ``(url, (candidates, archived))`` (``UrlsToFetch``): how many candidates point at the URL (counted,
    for progress and ``candidates_rejected``; their rejections are joined after the fetch) and its chosen archived
    response or ``None``.

    URLs wait in one queue per host (``HostQueue``: a few in memory, the rest on local disk) and are handed to the
    pool only while their host has fewer than ``per_host_concurrency`` in flight and its gate is ready (a host
    spaced by a rate or Crawl-delay gets one URL per interval), so a bundle dominated by one host does not park every
    thread on that host's limits while other hosts' URLs wait (the client's own per-host gate still enforces them,
    for redirects and robots.txt too). A URL's work is two pool tasks: ``obtain`` (the request, which holds one of
    its host's slots) and then ``process_obtained`` (decode, resize, encode, which holds none), so a host's limit
    paces its requests and not the CPU work on its images: a host with most of a part's URLs keeps every pool thread
    processing while its ``per_host_concurrency`` requests are in flight. At most ``2 x concurrency`` tasks are
    submitted and ``8 x concurrency`` URLs held in memory per bundle; results are emitted as they complete
    (``process``) and the rest at the end of the bundle (``finish_bundle``). Counters are incremented on the DoFn's
    own thread, where Beam's metrics context lives.
    """

    def __init__(self, config: FetchConfig, progress: StageProgress | None = None) -> None:
        self.config = config
        self.progress = progress or StageProgress(STAGE, "candidates")
        self.client: PoliteClient | None = None
        self.executor: ThreadPoolExecutor | None = None
        self._counters: dict[str, Any] = {}
        self.tally: Counter[str] = Counter()  # what was counted since the last reset of it (one part's counters)
        self._reset()

    def _reset(self) -> None:
        for queue in getattr(self, "waiting", {}).values():
            queue.close()
        # future, candidates, host (None for a processing task, which holds no host slot), tag
        self.pending: deque[tuple[Future, int, str | None, Any]] = deque()
        self.waiting: dict[str, HostQueue] = {}
        self.in_flight: Counter[str] = Counter()
        self.waiting_count = 0  # URLs waiting, in memory or spilled
        self.spilled_count = 0  # of those, on disk
        self.next_launch: dict[str, float] = {}  # hosts spaced by a rate or Crawl-delay: when the next may go

    def setup(self) -> None:
        if self.config.fetch_mode not in FETCH_MODES:
            raise ValueError(f"unknown fetch mode {self.config.fetch_mode!r}; choose one of {FETCH_MODES}")
        if self.config.fetch_mode != "archive-only":
            self.client = PoliteClient(self.config)
        self.executor = ThreadPoolExecutor(max(1, self.config.concurrency), thread_name_prefix="fetch")
        self.budget = DecodeBudget(self.config.decode_memory_budget_mb * 1024 * 1024)

    def teardown(self) -> None:
        self._reset()  # deletes any spill files
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    def start_bundle(self) -> None:
        self._reset()

    def _count(self, name: str, amount: int = 1) -> None:
        self.tally[name] += amount
        if name not in self._counters:
            self._counters[name] = counter(STAGE, name)
        if amount:
            self._counters[name].inc(amount)

    def process(self, element: tuple[str, tuple[int, dict[str, Any] | None]]) -> Iterator[Any]:
        url, (candidates, archived) = element
        yield from self._enqueue(url, candidates, archived)

    def _enqueue(self, url: str, candidates: int, archived: dict[str, Any] | None, tag: Any = None) -> Iterator[Any]:
        """Queue one URL (on its host's queue) and emit what has finished, waiting while too much is held.

        ``tag`` travels with the URL to ``_finished`` (``FetchPart``: the URL's part)."""
        if candidates:  # else an archived image no surviving candidate points at: nothing to do
            self._queued(tag)
            # An archived image needs no network: it gets its own queue, free of any host's limit.
            host = f"archive:{url}" if archived is not None and self.config.fetch_mode != "http-only" else host_of(url)
            queue = self.waiting.get(host)
            if queue is None:
                queue = self.waiting[host] = HostQueue(host_queue_held(self.config))
            self.spilled_count += queue.append((url, archived, candidates, tag))
            self.waiting_count += 1
            self._launch()
        concurrency = max(1, self.config.concurrency)
        while self.waiting_count - self.spilled_count + len(self.pending) > HELD_PER_THREAD * concurrency:
            yield from self._drain(block=True)
        yield from self._drain(block=False)

    def finish_bundle(self) -> Iterator[Any]:
        while self.pending or self.waiting_count:
            for output in self._drain(block=True):
                # finish_bundle must emit windowed values; the inputs came from bounded sources in the global window.
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
                else:
                    yield GlobalWindows.windowed_value(output)
        self.progress.add(0)  # a last line if the interval has passed

    def _ready_at(self, host: str) -> float:
        """When the host's next URL may be handed to the pool (0 for an archived URL, which makes no request)."""
        if self.client is None or host.startswith("archive:"):
            return 0.0
        return max(self.client.ready_at(host), self.next_launch.get(host, 0.0))

    def _launch(self) -> None:
        """Submit waiting URLs whose host is under its limit and ready, up to ``2 x concurrency`` in flight."""
        assert self.executor is not None
        limit, most = max(1, self.config.per_host_concurrency), 2 * max(1, self.config.concurrency)
        now = time.monotonic()
        for host in list(self.waiting):
            queue = self.waiting[host]
            if self.in_flight[host] >= limit or self._ready_at(host) > now:
                continue
            network = self.client is not None and not host.startswith("archive:")
            probing = network and not queue.probed
            if probing and self.in_flight[host]:
                continue  # its first request has not finished yet
            spaced = network and self.client is not None and self.client.interval_s(host) > 0
            while queue and self.in_flight[host] < limit and len(self.pending) < most:
                (url, archived, candidates, tag), returned = queue.popleft()
                self.spilled_count -= returned
                self.waiting_count -= 1
                self.in_flight[host] += 1
                future = self.executor.submit(obtain, url, archived, self.client, self.config)
                self.pending.append((future, candidates, host, tag))
                if spaced:  # one per interval: the next would only sleep in a pool thread until its turn
                    assert self.client is not None
                    self.next_launch[host] = now + self.client.interval_s(host)
                    break
                if probing:
                    break
            if not queue:
                queue.close()
                del self.waiting[host]
                self.next_launch.pop(host, None)
            if len(self.pending) >= most:
                return

    def _wait_s(self) -> float | None:
        """Seconds until the first waiting host held back by its gate or spacing becomes ready; None when none is (the
        others wait for a request to finish)."""
        limit, now = max(1, self.config.per_host_concurrency), time.monotonic()
        later = [
            ready_at
            for host in self.waiting
            if self.in_flight[host] < limit and (ready_at := self._ready_at(host)) > now
        ]
        return min(later) - now if later else None

    def _drain(self, block: bool) -> Iterator[Any]:
        """Emit finished results (waiting for at least one, or for a held-back host's turn, when ``block``), then
        launch what they made room for."""
        if not self.pending:
            self._launch()
        if block:
            timeout = self._wait_s()
            if self.pending:
                wait([item[0] for item in self.pending], timeout=timeout, return_when=FIRST_COMPLETED)
            elif timeout is not None:
                time.sleep(min(max(timeout, 0.001), 1.0))
        finished = [item for item in self.pending if item[0].done()]
        rows = []
        for item in finished:
            future, candidates, host, tag = item
            self.pending.remove(item)
            if host is None:  # a processing task: its row is done
                rows.append((future.result(), candidates, tag))
                continue
            if host in self.waiting:
                self.waiting[host].probed = True
            self.in_flight[host] -= 1  # the request is over: the host's slot is free while its image is processed
            if not self.in_flight[host]:
                del self.in_flight[host]
            obtained = future.result()
            if needs_processing(obtained):
                assert self.executor is not None
                processing = self.executor.submit(process_obtained, obtained, self.config, self.budget)
                self.pending.append((processing, candidates, None, tag))
            else:
                rows.append((process_obtained(obtained, self.config), candidates, tag))
        self._launch()
        for row, candidates, tag in rows:
            yield from self._finished(row, candidates, tag)

    def _queued(self, tag: Any) -> None:
        """Hook: a URL with this tag was queued."""

    def _finished(self, row: dict[str, Any], candidates: int, tag: Any) -> Iterator[Any]:
        """What a finished URL gives: its row (``FetchPart`` writes it to the URL's part)."""
        return self._emit(row, candidates)

    def _emit(self, row: dict[str, Any], candidates: int) -> Iterator[Any]:
        """Count a finished URL (``candidates``: how many point at it) and yield its row."""
        status = row[FetchedImage.STATUS]
        self._count("urls")
        self._count(status)
        self._count(f"source_{row[FetchedImage.SOURCE]}")
        original = row.get(FetchedImage.ORIGINAL_BYTES) or 0
        self._count("bytes_original", original)
        if row[FetchedImage.SOURCE] == "http":
            self._count("bytes_http", original)
        self._count("bytes_stored", len(row.get(FetchedImage.IMAGE) or b""))
        self.progress.add(candidates, status=status)
        if status != "ok":  # their rows are written by ``RejectCandidates``, joined with this row after the fetch
            self._count("candidates_rejected", candidates)
        yield row


def part_of(url: str, parts: int) -> int:
    """The part of ``parts`` a URL belongs to: a stable hash of its host (the same on any machine, Python version or
    run) modulo ``parts``, so every URL of a host is fetched in one part, by one worker."""
    digest = hashlib.sha256(host_of(url).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % parts


def part_name(part: int) -> str:
    """``part-00042``: the file name stem of one part's files and marker."""
    return f"part-{part:05d}"


class PartFile:
    """One Parquet file of one part, written under a temporary name in row groups and renamed when closed."""

    def __init__(self, path: str, table: Any) -> None:
        self.path = path
        self.table = table
        self.schema = table.schema()
        self.temporary = f"{path}.tmp-{time.time_ns()}"
        self.rows: list[dict[str, Any]] = []
        self.held = 0
        self.handle: Any = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(self.table.project(row))
        self.held += 256 + len(row.get(FetchedImage.IMAGE) or b"")
        if self.held >= PART_ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the rows held as one row group."""
        if not self.rows:
            return
        if self.writer is None:
            self.handle = FileSystems.create(self.temporary, compression_type=CompressionTypes.UNCOMPRESSED)
            self.writer = pq.ParquetWriter(self.handle, self.schema)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows, self.held = [], 0

    def close(self) -> str | None:
        """Write what is held, rename into place; the final path, or ``None`` when the part had no such rows."""
        self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        self.handle.close()
        if FileSystems.exists(self.path):  # a part an interrupted run wrote but never marked done
            FileSystems.delete([self.path])
        FileSystems.rename([self.temporary], [self.path])
        return self.path


@dataclass
class _OpenPart:
    """A part being fetched: its files, its counters, and how many of its URLs are queued or in flight."""

    stem: str
    files: dict[str, PartFile]
    tally: Counter[str] = field(default_factory=Counter)
    outstanding: int = 0
    read: bool = False  # every URL of the part was queued (or spilled)


class FetchPart(FetchImages):
    """Fetch parts' URLs (``FetchImages``' queues and limits), write each part's file, then its marker; emit paths.

    A part's URLs are queued as ``process`` reads them; ``process`` returns once they are all queued, so the parts
    of a bundle are fetched together (a part holding a host of a million URLs does not hold back the bundle's next
    parts; hosts never span parts, so the per-host limits stay exact). A part is complete when its last URL finished:
    its file is closed, its marker written, and the path of its ``images/`` file emitted, from ``process`` or
    ``finish_bundle``: nothing downstream reads a part that is not complete. A part holds no rejections: they are
    joined from its ``images/`` rows after the fetch (``RejectCandidates``).
    """

    def __init__(self, config: FetchConfig, folder: str, progress: StageProgress | None = None) -> None:
        super().__init__(config, progress)
        self.folder = folder
        self.parts: dict[int, _OpenPart] = {}

    def setup(self) -> None:
        super().setup()
        self.fail_after = int(os.environ.get(FAIL_AFTER_PARTS_ENV, "0") or 0)
        self.parts_written = 0
        self.trimmer = HeapTrimmer()

    def start_bundle(self) -> None:
        super().start_bundle()
        self.parts = {}

    def process(self, element: tuple[int, Iterable[tuple[str, tuple[int, dict[str, Any] | None]]]]) -> Iterator[Any]:
        part, urls = element
        stem = FileSystems.join(self.folder, part_name(part))
        self.parts[part] = _OpenPart(stem, {"images": PartFile(f"{stem}.images.parquet", FetchedImage)})
        for url, (candidates, archived) in urls:
            yield from self._enqueue(url, candidates, archived, part)
        self.parts[part].read = True
        yield from self._complete(part)

    def _queued(self, part: Any) -> None:
        self.parts[part].outstanding += 1

    def _finished(self, row: dict[str, Any], candidates: int, part: Any) -> Iterator[Any]:
        state = self.parts[part]
        self.tally = state.tally  # _emit counts into the part's own counters (its marker keeps them)
        for output in self._emit(row, candidates):
            state.files["images"].add(output)
        state.outstanding -= 1
        self.trimmer.maybe()
        held = sum(file.held for open_part in self.parts.values() for file in open_part.files.values())
        if held >= PART_ROW_GROUP_BYTES:  # parts open together share the one bound on rows held
            for open_part in self.parts.values():
                for file in open_part.files.values():
                    file.flush()
        return self._complete(part)

    def _complete(self, part: int) -> Iterator[Any]:
        """Once every URL of ``part`` finished: close its file, write its marker (last), emit the file's path."""
        state = self.parts[part]
        if not state.read or state.outstanding:
            return
        del self.parts[part]
        paths = {name: file.close() for name, file in state.files.items()}
        marker = {"part": part, "files": paths, "counters": dict(state.tally)}
        write_text_atomically(f"{state.stem}.done", json.dumps(marker, sort_keys=True))
        self.parts_written += 1
        if self.fail_after and self.parts_written >= self.fail_after:
            if self.executor is not None:  # as a kill would: no request of this run after the failure
                self.executor.shutdown(wait=True, cancel_futures=True)
            raise RuntimeError(f"{FAIL_AFTER_PARTS_ENV}={self.fail_after}: failing after {self.parts_written} parts")
        if paths["images"]:
            yield paths["images"]


class RecountPart(beam.DoFn):
    """Count again what a part fetched by an earlier run counted, so the stage's counters cover every URL."""

    def process(self, counters: dict[str, int]) -> Iterator[None]:
        for name, amount in sorted(counters.items()):
            if amount:
                counter(STAGE, name).inc(amount)
        return iter(())


def parts_digest(layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> str:
    """A short digest of the stage's fingerprint (upstream run ids, fetch config) and of the split (part count,
    routing): parts are reused only under it."""
    corpus = getattr(layout, "corpus", layout)  # a staged layout's corpus: the upstream stages' _SUCCESS files
    fingerprint = stage_fingerprint(STAGE, corpus, config, options)
    text = json.dumps(
        {"fingerprint": fingerprint, "parts": config.fetch.fetch_parts, "routing": PART_ROUTING},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def done_parts(folder: str) -> dict[int, dict[str, Any]]:
    """The markers of the parts already finished under ``folder``, by part."""
    markers = {}
    for path in list_matching(FileSystems.join(folder, "part-*.done")):
        marker = json.loads(read_text(path))
        markers[int(marker["part"])] = marker
    return markers


def prepare_parts(layout: CorpusLayout, folder: str) -> dict[int, dict[str, Any]]:
    """Remove the parts of runs with another fingerprint (they fetched other inputs or settings); the done ones."""
    corpus = getattr(layout, "corpus", layout)
    for directory in top_folders(corpus.path(PARTS), f"{STAGE}-*"):
        if directory.rstrip("/") != folder.rstrip("/"):
            delete_tree(directory)
    return done_parts(folder)


def url_to_fetch(
    element: tuple[str, Iterable[tuple[int, Any]]],
) -> Iterator[tuple[str, tuple[int, dict[str, Any] | None]]]:
    """``(url, (candidates, archived))`` for a URL some candidate points at (an archived image no candidate points at
    is dropped). The group holds one value of each tag at most: both were reduced by combiners."""
    url, values = element
    candidates, records = 0, []
    for tag, value in values:
        if tag == _COUNT:
            candidates += value
        else:
            records.append(value)
    if candidates:
        yield url, (candidates, choose_archived(records))


class UrlsToFetch(beam.PTransform):
    """(candidate rows, archived rows) -> ``(url, (candidates, archived))``: for each URL a candidate points at (and
    ``keep`` accepts), how many do and its chosen archived response (``None`` when not archived).

    Both are reduced per URL by combiners (a count, ``BestArchived``) applied ahead of the shuffle in a bounded
    pre-combine (``pipeline.core.combine``: Beam's lifting holds up to 100,000 archived records per bundle, image
    bodies and all, and a million URLs' counts), then joined by tagged values: a URL on a million pages, or archived
    a million times, is one small element, never a list of its rows.
    """

    def __init__(self, keep: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.keep = keep

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        candidates, archived = inputs
        keep = self.keep or (lambda url: True)
        counts = (
            candidates
            | "CandidateUrls" >> beam.Map(lambda row: row[TextKept.IMAGE_URL])
            | "CandidateUrlsToFetch" >> beam.Filter(keep)
            | "KeyByUrl" >> beam.Map(lambda url: (url, None))
            | "CandidatesPerUrl" >> BoundedCountPerKey()
            | "TagCount" >> beam.MapTuple(lambda url, count: (url, (_COUNT, count)))
        )
        best = (
            archived
            | "KeyArchivedByUrl" >> beam.Map(lambda row: (row[ArchivedImage.IMAGE_URL], row))
            | "ArchivedToFetch" >> beam.Filter(lambda item: keep(item[0]))
            | "BestArchivedPerUrl" >> BoundedCombinePerKey(BestArchived(), ARCHIVED_KEYS_HELD)
            | "TagArchived" >> beam.MapTuple(lambda url, record: (url, (_ARCHIVED, record)))
        )
        return (
            (counts, best)
            | "UrlJoinInputs" >> beam.Flatten()
            | "JoinByImageUrl" >> beam.GroupByKey()
            | "OneElementPerUrl" >> beam.FlatMap(url_to_fetch)
        )


def reject_candidates(element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[dict[str, Any]]:
    """Join by URL, streamed: the ``rejected/`` row of each candidate of a URL whose ``images/`` row is not ok.

    Two passes over the re-iterable group (the URL's status first, then the candidates one at a time), so a URL on a
    million pages is never held as a list. An ok URL's candidates (no ``_FAILED`` value) give nothing.
    """
    _, values = element
    failed = min(
        (value for tag, value in values if tag == _FAILED), key=lambda value: (value[0], value[1] or ""), default=None
    )
    if failed is None:
        return
    status, error = failed
    for tag, candidate in values:
        if tag == _CANDIDATE:
            yield rejection(candidate, STAGE, status, error)


class RejectCandidates(beam.PTransform):
    """(candidate rows, ``images/`` rows) -> a fetch rejection per candidate of a URL that is not ok, with the URL's
    status as reason and its error as detail: a streamed join by URL (``reject_candidates``)."""

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        candidates, images = inputs
        failed = (
            images
            | "NotOk" >> beam.Filter(lambda row: row[FetchedImage.STATUS] != "ok")
            | "TagFailed"
            >> beam.Map(
                lambda row: (
                    row[FetchedImage.IMAGE_URL],
                    (_FAILED, (row[FetchedImage.STATUS], row.get(FetchedImage.ERROR))),
                )
            )
        )
        tagged = candidates | "TagCandidate" >> beam.Map(lambda row: (row[TextKept.IMAGE_URL], (_CANDIDATE, row)))
        return (
            (tagged, failed)
            | "RejectionJoinInputs" >> beam.Flatten()
            | "JoinStatusByImageUrl" >> beam.GroupByKey()
            | "RejectEachCandidate" >> beam.FlatMap(reject_candidates)
        )


#: The images/ columns the rejection join reads from the parts (the bytes stay on disk).
STATUS_COLUMNS = [FetchedImage.IMAGE_URL, FetchedImage.STATUS, FetchedImage.ERROR]


def status_rows(path: str) -> Iterator[dict[str, Any]]:
    """The ``STATUS_COLUMNS`` of an images/ file as row dicts, one row group at a time (never the image bytes).

    ``beam.io.ReadAllFromParquet`` does this, but passes each row group between its steps as an untyped Arrow table,
    which Beam's element-size sampling pickles (see ``ReadTable``).
    """
    for _, table in read_row_groups(path, STATUS_COLUMNS):
        yield from table.to_pylist()


def promote_image_parts(paths: list[str], prefix: str) -> list[str]:
    """The parts' images files become images/ (``{prefix}-SSSSS-of-NNNNN.parquet``), linked or copied, not rewritten.

    A part's file already is images/ rows in FetchedImage's schema: reading every image back into a row and writing
    it again (as a table write would) doubled fetch's disk (3.35 GB stored at 100 MB of crawl, twice) and passed every
    byte through Python once more. On a local disk the file is hard-linked (no copy; the parts folder is deleted once
    the stage succeeds), elsewhere copied by the file system (server-side on GCS and S3). No part with images (every
    URL failed, or none): one empty file with the schema, as a table write of nothing gives.
    """
    paths = sorted(set(paths))
    if not paths:
        target = f"{prefix}-00000-of-00001.parquet"
        with FileSystems.create(target, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            pq.write_table(FetchedImage.schema().empty_table(), handle)
        return [target]
    targets = [f"{prefix}-{index:05d}-of-{len(paths):05d}.parquet" for index in range(len(paths))]
    for source, target in zip(paths, targets, strict=True):
        if "://" not in source and "://" not in target:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            try:
                os.link(source, target)
                continue
            except OSError:  # another file system, or links not allowed: a copy
                pass
        FileSystems.copy([source], [target])
    return targets


class FetchStage(beam.PTransform):
    """text_kept + archived_images -> (images, rejected): one element per URL, grouped by part; obtain once, process;
    then the rejections of failed URLs' candidates, joined from every part's ``images/`` rows.

    Parts in ``done`` (their markers) are skipped when the graph is built, and their files read with the new ones.
    """

    def __init__(
        self, layout: CorpusLayout, config: FetchConfig, folder: str, done: dict[int, dict[str, Any]] | None = None
    ) -> None:
        super().__init__()
        self.layout = layout
        self.config = config
        self.folder = folder
        self.done = done or {}

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        layout, config = self.layout, self.config
        skip = frozenset(self.done)
        parts = config.fetch_parts

        def to_fetch(url: str) -> bool:
            return part_of(url, parts) not in skip

        candidates = pbegin | "ReadTextKept" >> ReadTable(layout.glob(TextKept), columns=list(CANDIDATE_COLUMNS))
        if config.fetch_mode == "http-only":
            archived = pbegin | "NoArchive" >> beam.Create([])
        else:
            archived = pbegin | "ReadArchivedImages" >> ReadTable(layout.glob(ArchivedImage))
        new_files = (
            (candidates, archived)
            | "UrlsToFetch" >> UrlsToFetch(to_fetch)
            | "KeyByPart" >> beam.Map(lambda item: (part_of(item[0], parts), item))
            | "GroupByPart" >> beam.GroupByKey()
            | "FetchParts"
            >> beam.ParDo(
                FetchPart(
                    config, self.folder, table_progress(STAGE, "candidates", layout.glob(TextKept), pbegin.pipeline)
                )
            )
        )
        earlier = sorted(self.done.values(), key=lambda marker: marker["part"])
        _ = (
            pbegin
            | "DonePartCounters" >> beam.Create([marker["counters"] for marker in earlier])
            | "RecountDoneParts" >> beam.ParDo(RecountPart())
        )
        # Only the images/ file of a done part is read: an earlier run's rejections (if it wrote any) are joined again.
        done_files = [marker["files"]["images"] for marker in earlier if marker["files"].get("images")]
        image_files = (new_files, pbegin | "DoneImagesFiles" >> beam.Create(done_files)) | "AllImagesFiles" >> (
            beam.Flatten()
        )
        # The rejections need each URL's status, not its bytes.
        statuses = image_files | "ReadImageStatuses" >> beam.FlatMap(status_rows)
        rejected = (candidates, statuses) | "RejectFailedCandidates" >> RejectCandidates()
        return {"image_files": image_files, REJECTED: rejected}


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The fetch graph: read, one element per URL, by part; obtain the parts not done yet, write images/, join the
    rejections."""
    folder = layout.parts_folder(STAGE, parts_digest(layout, config, options))
    done = prepare_parts(layout, folder)
    if done:
        log.info(
            "%s: resuming, %d of %d parts already fetched (%s)", STAGE, len(done), config.fetch.fetch_parts, folder
        )
    results = pipeline | "Fetch" >> FetchStage(layout, config.fetch, folder, done)
    _ = (
        results["image_files"]
        | "ImageFileList" >> beam.combiners.ToList()
        | "PromoteImageParts" >> beam.Map(promote_image_parts, layout.prefix(FetchedImage))
    )
    results[REJECTED] | "WriteRejected" >> WriteTable(layout.rejected_prefix(STAGE), Rejection)


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run the fetch stage (``python -m pipeline fetch --output DIR``); returns its counters.

    Once it succeeded, its parts are no longer needed: the next run fetches afresh."""
    counters = run_stage(STAGE, argv, build)
    corpus = CorpusLayout(pipeline_options(argv).view_as(CorpusOptions).output)
    for directory in top_folders(corpus.path(PARTS), f"{STAGE}-*"):
        delete_tree(directory)
    remove_if_empty(corpus.path(PARTS))
    return counters
