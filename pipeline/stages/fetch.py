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

Resumable in parts: distinct URLs fall into ``PARTS`` parts by a stable hash of the URL (``part_of``). Each part is
fetched by one DoFn call (``FetchPart``, the same per-host queues and limits as ``FetchImages``), which writes its
``images/`` and ``rejected/fetch`` rows as Parquet files under ``_parts/fetch-<digest>/`` (temporary name, rename)
and then its marker ``part-NNNNN.done`` (the files and the part's counters), last. The digest is the stage's
fingerprint (upstream run ids and fetch config), so a rerun after a crash or Ctrl-C skips parts whose marker exists
(filtered out when the graph is built; their counters are re-counted from the markers) and fetches only the rest; a
different fingerprint removes the old parts and starts from zero. The union of all parts is written as ``images/``
and ``rejected/fetch-*`` as before, and the parts folder is deleted once the stage succeeded. Test hook:
``ALTCORPUS_TEST_FETCH_FAIL_AFTER_PARTS`` (an integer) makes a worker fail after writing that many parts, as an
interruption would; never set it in production.

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
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from pipeline.core.config import CorpusConfig, CorpusOptions, FetchConfig
from pipeline.core.layout import (
    PARTS,
    CorpusLayout,
    ReadTable,
    WriteTable,
    delete_tree,
    list_matching,
    read_text,
    remove_if_empty,
    top_folders,
    write_text_atomically,
)
from pipeline.core.progress import StageProgress, table_progress
from pipeline.core.reasons import FetchReason, http_status_reason
from pipeline.core.rules import REJECTED, counter, rejection
from pipeline.core.stage import pipeline_options, run_stage, stage_fingerprint
from pipeline.images.process import DecodeBudget, ImageError, process_image
from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type
from pipeline.net.client import FetchResult, PoliteClient
from pipeline.net.robots import opted_out
from schemas import ArchivedImage, FetchedImage, Rejection, TextKept

log = logging.getLogger("altcorpus")

STAGE = "fetch"
FETCH_MODES = ("archive-then-http", "archive-only", "http-only")
#: How many parts the distinct URLs are split into (fixed, so a rerun splits them the same way whatever its workers).
PARTS_COUNT = 64
#: Bytes of rows a part file gathers before writing them as one row group (bounds what one part holds in memory).
PART_ROW_GROUP_BYTES = 32 * 1024 * 1024
FAIL_AFTER_PARTS_ENV = "ALTCORPUS_TEST_FETCH_FAIL_AFTER_PARTS"

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
        self.tally: Counter[str] = Counter()  # what was counted since the last reset of it (one part's counters)
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
        self.tally[name] += amount
        if name not in self._counters:
            self._counters[name] = counter(STAGE, name)
        if amount:
            self._counters[name].inc(amount)

    def process(self, element: tuple[str, dict[str, Iterable[dict[str, Any]]]]) -> Iterator[Any]:
        yield from self._enqueue(*element)

    def _enqueue(self, url: str, groups: dict[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        """Queue one grouped URL (on its host's queue) and emit what has finished, waiting while too much is held."""
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


def part_of(url: str) -> int:
    """The part a URL belongs to: a stable hash (the same on any machine, Python version or run) modulo ``PARTS_COUNT``."""
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % PARTS_COUNT


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
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.handle = FileSystems.create(self.temporary, compression_type=CompressionTypes.UNCOMPRESSED)
            self.writer = pq.ParquetWriter(self.handle, self.schema)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows, self.held = [], 0

    def close(self) -> str | None:
        """Write what is held, rename into place; the final path, or ``None`` when the part had no such rows."""
        self._flush()
        if self.writer is None:
            return None
        self.writer.close()
        self.handle.close()
        if FileSystems.exists(self.path):  # a part an interrupted run wrote but never marked done
            FileSystems.delete([self.path])
        FileSystems.rename([self.temporary], [self.path])
        return self.path


class FetchPart(FetchImages):
    """Fetch one part's URLs (``FetchImages``' queues and limits), write its files, then its marker; emit the paths.

    Emits the path of the part's ``images/`` file (main output) and of its rejections (``REJECTED``), once the
    marker is written: nothing downstream reads a part that is not complete.
    """

    def __init__(self, config: FetchConfig, folder: str, progress: StageProgress | None = None) -> None:
        super().__init__(config, progress)
        self.folder = folder

    def setup(self) -> None:
        super().setup()
        self.fail_after = int(os.environ.get(FAIL_AFTER_PARTS_ENV, "0") or 0)
        self.parts_written = 0

    def process(self, element: tuple[int, Iterable[tuple[str, dict[str, Iterable[dict[str, Any]]]]]]) -> Iterator[Any]:
        part, urls = element
        stem = FileSystems.join(self.folder, part_name(part))
        files = {
            "images": PartFile(f"{stem}.images.parquet", FetchedImage),
            REJECTED: PartFile(f"{stem}.rejected.parquet", Rejection),
        }

        def keep(outputs: Iterable[Any]) -> None:
            for output in outputs:
                if isinstance(output, beam.pvalue.TaggedOutput):
                    files[REJECTED].add(output.value)
                else:
                    files["images"].add(output)

        self._reset()
        self.tally = Counter()
        for url, groups in urls:
            keep(self._enqueue(url, groups))
        while self.pending or self.waiting_count:
            keep(self._drain(block=True))
        paths = {name: file.close() for name, file in files.items()}
        marker = {"part": part, "files": paths, "counters": dict(self.tally)}
        write_text_atomically(f"{stem}.done", json.dumps(marker, sort_keys=True))
        self.parts_written += 1
        if self.fail_after and self.parts_written >= self.fail_after:
            raise RuntimeError(f"{FAIL_AFTER_PARTS_ENV}={self.fail_after}: failing after {self.parts_written} parts")
        if paths["images"]:
            yield paths["images"]
        if paths[REJECTED]:
            yield beam.pvalue.TaggedOutput(REJECTED, paths[REJECTED])

    def finish_bundle(self) -> Iterator[Any]:
        self.progress.add(0)  # every part is finished in its own process call
        return iter(())


class RecountPart(beam.DoFn):
    """Count again what a part fetched by an earlier run counted, so the stage's counters cover every URL."""

    def process(self, counters: dict[str, int]) -> Iterator[None]:
        for name, amount in sorted(counters.items()):
            if amount:
                counter(STAGE, name).inc(amount)
        return iter(())


def parts_digest(layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> str:
    """A short digest of the stage's fingerprint (upstream run ids, fetch config): parts are reused only under it."""
    corpus = getattr(layout, "corpus", layout)  # a staged layout's corpus: the upstream stages' _SUCCESS files
    fingerprint = stage_fingerprint(STAGE, corpus, config, options)
    text = json.dumps({"fingerprint": fingerprint, "parts": PARTS_COUNT}, sort_keys=True, default=str)
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


class FetchStage(beam.PTransform):
    """text_kept + archived_images -> (images, rejected): group by URL, then by part; obtain once, process.

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

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        layout, config = self.layout, self.config
        skip = frozenset(self.done)

        def to_fetch(url: str) -> bool:
            return part_of(url) not in skip

        candidates = (
            pbegin
            | "ReadTextKept" >> ReadTable(layout.glob(TextKept), columns=list(CANDIDATE_COLUMNS))
            | "KeyCandidatesByUrl" >> beam.Map(lambda row: (row[TextKept.IMAGE_URL], row))
            | "CandidatesToFetch" >> beam.Filter(lambda item: to_fetch(item[0]))
        )
        if config.fetch_mode == "http-only":
            archived = pbegin | "NoArchive" >> beam.Create([])
        else:
            archived = (
                pbegin
                | "ReadArchivedImages" >> ReadTable(layout.glob(ArchivedImage))
                | "KeyArchivedByUrl" >> beam.Map(lambda row: (row[ArchivedImage.IMAGE_URL], row))
                | "ArchivedToFetch" >> beam.Filter(lambda item: to_fetch(item[0]))
            )
        fetched = (
            {"candidates": candidates, "archived": archived}
            | "GroupByImageUrl" >> beam.CoGroupByKey()
            | "KeyByPart" >> beam.Map(lambda item: (part_of(item[0]), item))
            | "GroupByPart" >> beam.GroupByKey()
            | "FetchParts"
            >> beam.ParDo(
                FetchPart(
                    config, self.folder, table_progress(STAGE, "candidates", layout.glob(TextKept), pbegin.pipeline)
                )
            ).with_outputs(REJECTED, main="images")
        )
        earlier = sorted(self.done.values(), key=lambda marker: marker["part"])
        _ = (
            pbegin
            | "DonePartCounters" >> beam.Create([marker["counters"] for marker in earlier])
            | "RecountDoneParts" >> beam.ParDo(RecountPart())
        )
        outputs = {}
        for name, label in (("images", "Images"), (REJECTED, "Rejected")):
            done_files = [marker["files"][name] for marker in earlier if marker["files"].get(name)]
            outputs[name] = (
                (fetched[name], pbegin | f"Done{label}Files" >> beam.Create(done_files))
                | f"All{label}Files" >> beam.Flatten()
                | f"Read{label}Parts" >> beam.io.ReadAllFromParquet()
            )
        return outputs


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The fetch graph: read, group by URL and by part, obtain the parts not done yet, write images/ and rejected/."""
    folder = layout.parts_folder(STAGE, parts_digest(layout, config, options))
    done = prepare_parts(layout, folder)
    if done:
        log.info("%s: resuming, %d of %d parts already fetched (%s)", STAGE, len(done), PARTS_COUNT, folder)
    results = pipeline | "Fetch" >> FetchStage(layout, config.fetch, folder, done)
    results["images"] | "WriteImages" >> WriteTable(layout.prefix(FetchedImage), FetchedImage)
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
