"""``fetch`` stage: one fetch per distinct image URL, from the input WARCs' archived responses or over HTTP(S).

Reads ``text_kept/`` (only the columns a rejection needs) and ``archived_images/``, groups both by image URL (so a
URL with a thousand alt texts is fetched once), obtains and processes each URL's image on a bounded thread pool
inside the DoFn, and writes ``images/`` (one FetchedImage row per distinct URL, with the re-encoded JPEG when ok, or with
``--keep-original-bytes`` the original JPEG, PNG or WebP file: ``pipeline.images.process``)
and ``rejected/fetch-*`` (every candidate of a failed URL, with the URL's status as reason). Kept candidates are not
rewritten: filter-image joins ``text_kept/`` with ``images/`` by URL.

Resolution order (``--fetch-mode``): ``archive-then-http`` (default) uses the archived response when the WARCs hold
one (a 3xx archived response holds no image, so HTTP is tried), else HTTP; ``archive-only`` never goes to the
network (``not_archived``); ``http-only`` ignores the archive. Archived responses go through the same checks as
HTTP ones (status code, X-Robots-Tag opt-out, byte cap, magic bytes, decode); robots.txt is not re-checked for
them, since no request is made. ``Content-Type`` is recorded but never trusted: the magic bytes decide (a JPEG
served as text/plain is ok, an HTML page served as image/jpeg is ``not_an_image``).

Politeness is per worker: each worker keeps at most ``per_host_concurrency`` requests in flight per host, so across
N workers a host sees at most N times that.

Statuses (the closed list; every one but ``ok`` is also the rejection reason of the URL's candidates):
``ok``, ``http_<code>``, ``timeout``, ``robots_disallowed``, ``opted_out``, ``too_large``, ``not_an_image``,
``decode_error``, ``decompression_bomb``, ``private_address``, ``unsupported_scheme``, ``too_many_redirects``,
``connection_error``, ``dns_error``, ``not_archived``.

Counters (``altcorpus/fetch:<name>``): one per status, ``urls``, ``source_archive``, ``source_http``,
``bytes_original`` (image bytes obtained), ``bytes_http`` (of those, downloaded), ``bytes_stored`` (images written),
``candidates_rejected``; each worker also logs its candidates done of the total, rate, ETA and URLs per status
(``pipeline.core.progress``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from pipeline.core.config import CorpusConfig, FetchConfig
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable
from pipeline.core.progress import StageProgress, table_progress
from pipeline.core.reasons import FetchReason, http_status_reason
from pipeline.core.rules import REJECTED, counter, rejection
from pipeline.core.stage import run_stage
from pipeline.images.process import DecodeBudget, ImageError, process_image
from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type
from pipeline.net.client import FetchResult, PoliteClient
from pipeline.net.robots import opted_out
from schemas import ArchivedImage, FetchedImage, Rejection, TextKept

log = logging.getLogger("altcorpus")

STAGE = "fetch"
FETCH_MODES = ("archive-then-http", "archive-only", "http-only")

#: The columns of text_kept/ a rejection row needs; the rest stays on disk.
CANDIDATE_COLUMNS = [TextKept.CANDIDATE_ID, TextKept.KEY, TextKept.IMAGE_URL, TextKept.ALT_TEXT, TextKept.PAGE_URL]


def choose_archived(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The archived response to use when the WARCs hold several for one URL: deterministic, best first.

    A 2xx beats anything else, then the latest crawl, then the first (file, offset): the same choice on any runner.
    """

    def rank(record: dict[str, Any]) -> tuple[Any, ...]:
        status = record.get(ArchivedImage.HTTP_STATUS) or 200
        return (
            0 if 200 <= status < 300 else 1,
            _negated(record.get(ArchivedImage.CRAWL_DATE) or ""),
            record.get(ArchivedImage.WARC_FILE) or "",
            record.get(ArchivedImage.WARC_RECORD_OFFSET) or 0,
        )

    ordered = sorted(records, key=rank)
    return ordered[0] if ordered else None


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


def fetch_one(
    url: str,
    archived: dict[str, Any] | None,
    client: PoliteClient | None,
    config: FetchConfig,
    budget: DecodeBudget | None = None,
) -> dict[str, Any]:
    """Obtain (archive, then HTTP, per ``fetch_mode``) and process one image URL: its ``images/`` row.

    Processing (waiting for ``budget``, the worker's decode memory, then decoding) has ``total_timeout_s`` of its
    own from when the bytes are in hand."""
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
    row = FetchedImage.row(
        image_url=url,
        status=result.status,
        error=result.error,
        source=source,
        http_status=result.http_status,
        content_type=result.content_type,
    )
    if result.status == "ok" and result.body is not None:
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
    row[FetchedImage.FETCH_SECONDS] = round(time.monotonic() - started, 4)
    return row


def host_of(url: str) -> str:
    """The lower-cased ``host[:port]`` of a URL ('' when none): the unit the DoFn schedules politely."""
    try:
        return urlsplit(url).netloc.rsplit("@", 1)[-1].lower()
    except ValueError:
        return ""


class FetchImages(beam.DoFn):
    """Obtain every grouped URL's image on a bounded thread pool; emit its ``images/`` row and any rejections.

    URLs wait in one queue per host and are handed to the pool only while their host has fewer than
    ``per_host_concurrency`` in flight, so a bundle dominated by one host does not park every thread on that
    host's limit while other hosts' URLs wait (the client's own per-host gate still enforces the limit for
    redirects and robots.txt). At most ``2 x concurrency`` URLs are submitted and ``8 x concurrency`` held per
    bundle; results are emitted as they complete (``process``) and the rest at the end of the bundle
    (``finish_bundle``). Counters are incremented on the DoFn's own thread, where Beam's metrics context lives.
    """

    def __init__(self, config: FetchConfig, progress: StageProgress | None = None) -> None:
        self.config = config
        self.progress = progress or StageProgress(STAGE, "candidates")
        self.client: PoliteClient | None = None
        self.executor: ThreadPoolExecutor | None = None
        self._counters: dict[str, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self.pending: deque[tuple[Future, list[dict[str, Any]], str]] = deque()
        self.waiting: dict[str, deque[tuple[str, dict[str, Any] | None, list[dict[str, Any]]]]] = {}
        self.in_flight: Counter[str] = Counter()
        self.waiting_count = 0

    def setup(self) -> None:
        if self.config.fetch_mode not in FETCH_MODES:
            raise ValueError(f"unknown fetch mode {self.config.fetch_mode!r}; choose one of {FETCH_MODES}")
        if self.config.fetch_mode != "archive-only":
            self.client = PoliteClient(self.config)
        self.executor = ThreadPoolExecutor(max(1, self.config.concurrency), thread_name_prefix="fetch")
        self.budget = DecodeBudget(self.config.decode_memory_budget_mb * 1024 * 1024)

    def teardown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    def start_bundle(self) -> None:
        self._reset()

    def _count(self, name: str, amount: int = 1) -> None:
        if name not in self._counters:
            self._counters[name] = counter(STAGE, name)
        if amount:
            self._counters[name].inc(amount)

    def process(self, element: tuple[str, dict[str, Iterable[dict[str, Any]]]]) -> Iterator[Any]:
        url, groups = element
        candidates = list(groups.get("candidates", ()))
        if candidates:  # else an archived image no surviving candidate points at: nothing to do
            archived = choose_archived(groups.get("archived", ()))
            # An archived image needs no network: it gets its own queue, free of any host's limit.
            host = f"archive:{url}" if archived is not None and self.config.fetch_mode != "http-only" else host_of(url)
            self.waiting.setdefault(host, deque()).append((url, archived, candidates))
            self.waiting_count += 1
            self._launch()
        concurrency = max(1, self.config.concurrency)
        while self.waiting_count + len(self.pending) > 8 * concurrency:
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

    def _launch(self) -> None:
        """Submit waiting URLs whose host is under its limit, up to ``2 x concurrency`` in flight."""
        assert self.executor is not None
        limit, most = max(1, self.config.per_host_concurrency), 2 * max(1, self.config.concurrency)
        for host in list(self.waiting):
            queue = self.waiting[host]
            while queue and self.in_flight[host] < limit and len(self.pending) < most:
                url, archived, candidates = queue.popleft()
                self.waiting_count -= 1
                self.in_flight[host] += 1
                future = self.executor.submit(fetch_one, url, archived, self.client, self.config, self.budget)
                self.pending.append((future, candidates, host))
            if not queue:
                del self.waiting[host]
            if len(self.pending) >= most:
                return

    def _drain(self, block: bool) -> Iterator[Any]:
        """Emit finished results (waiting for at least one when ``block``), then launch what they made room for."""
        if not self.pending:
            self._launch()
        if block and self.pending:
            wait([item[0] for item in self.pending], return_when=FIRST_COMPLETED)
        finished = [item for item in self.pending if item[0].done()]
        for item in finished:
            self.pending.remove(item)
            self.in_flight[item[2]] -= 1
            if not self.in_flight[item[2]]:
                del self.in_flight[item[2]]
        self._launch()
        for future, candidates, _ in finished:
            yield from self._emit(future.result(), candidates)

    def _emit(self, row: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> Iterator[Any]:
        status = row[FetchedImage.STATUS]
        self._count("urls")
        self._count(status)
        self._count(f"source_{row[FetchedImage.SOURCE]}")
        original = row.get(FetchedImage.ORIGINAL_BYTES) or 0
        self._count("bytes_original", original)
        if row[FetchedImage.SOURCE] == "http":
            self._count("bytes_http", original)
        self._count("bytes_stored", len(row.get(FetchedImage.IMAGE) or b""))
        self.progress.add(len(candidates), status=status)
        yield row
        if status != "ok":
            self._count("candidates_rejected", len(candidates))
            for candidate in candidates:
                yield beam.pvalue.TaggedOutput(
                    REJECTED, rejection(candidate, STAGE, status, row.get(FetchedImage.ERROR))
                )


class FetchStage(beam.PTransform):
    """text_kept + archived_images -> (images, rejected): group by URL, obtain once, process."""

    def __init__(self, layout: CorpusLayout, config: FetchConfig) -> None:
        super().__init__()
        self.layout = layout
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        layout, config = self.layout, self.config
        candidates = (
            pbegin
            | "ReadTextKept" >> ReadTable(layout.glob(TextKept), columns=list(CANDIDATE_COLUMNS))
            | "KeyCandidatesByUrl" >> beam.Map(lambda row: (row[TextKept.IMAGE_URL], row))
        )
        if config.fetch_mode == "http-only":
            archived = pbegin | "NoArchive" >> beam.Create([])
        else:
            archived = (
                pbegin
                | "ReadArchivedImages" >> ReadTable(layout.glob(ArchivedImage))
                | "KeyArchivedByUrl" >> beam.Map(lambda row: (row[ArchivedImage.IMAGE_URL], row))
            )
        return (
            {"candidates": candidates, "archived": archived}
            | "GroupByImageUrl" >> beam.CoGroupByKey()
            | "FetchImages"
            >> beam.ParDo(
                FetchImages(config, table_progress(STAGE, "candidates", layout.glob(TextKept), pbegin.pipeline))
            ).with_outputs(REJECTED, main="images")
        )


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The fetch graph: read, group by URL, obtain, write images/ and rejected/fetch-*."""
    results = pipeline | "Fetch" >> FetchStage(layout, config.fetch)
    results.images | "WriteImages" >> WriteTable(layout.prefix(FetchedImage), FetchedImage)
    results[REJECTED] | "WriteRejected" >> WriteTable(layout.rejected_prefix(STAGE), Rejection)


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run the fetch stage (``python -m pipeline fetch --output DIR``); returns its counters."""
    return run_stage(STAGE, argv, build)
