"""The ``extract`` stage: WARC/WAT files -> one candidate per ``<img>`` with a non-empty alt text.

Graph: the ``--input`` patterns (comma-separated; files or globs on any Beam filesystem) are matched, the file
paths reshuffled so files spread over workers, and each file is read from start to end by one DoFn
(``extract_columns``: fastwarc -> charset -> selectolax -> rows, candidates gathered column by column). Rows leave
that DoFn as Arrow record batches of up to ``BATCH_ROWS`` per table, gathered into row groups and written by
``WriteTableBatches``: a Beam element per row cost a pickle per column name, a windowed value and a per-row write,
ten times the extraction (bench/extract.py).
On a distributed runner the candidate batches are reshuffled before writing, so one huge input file does not make
one huge output shard; on the local runner they are not, since it holds a shuffle's whole input in memory (the
stage's memory grew with its input). Raw records are not shuffled between reading and parsing: that would move
every decompressed page over the network to save nothing, since parsing costs about what reading does.

Outputs: ``candidates/`` (Candidate), ``archived_images/`` (ArchivedImage: every image response in the inputs,
for ``fetch``), ``record_errors/`` (RecordError; reasons in ``pipeline.html.warc``), ``rejected/extract-*``.

Which records are pages: WARC ``response``/``resource`` records whose Content-Type is text/html or
application/xhtml+xml, or untyped (text/plain, octet-stream, none) bodies that start like HTML, with HTTP status
200. Other statuses (redirects, errors, 304) carry no page and are counted as ``skipped_status_not_200``.

Rejection reasons (closed list): ``unsupported_url_scheme`` (data:, javascript:, mailto:, ...), ``invalid_url``
(unparseable, no host), ``alt_too_long_chars`` (longer than ``ExtractConfig.max_alt_chars``). An ``<img>``
with no or empty alt is not a candidate (counted ``img_without_alt``); neither is one with an alt but no URL
attribute at all (counted ``img_without_url``).

Worth a look in the counters: ``target_uri_unwrapped`` (records whose WARC-Target-URI was written ``<uri>``, as by
wget 1.19-1.21: read as ``uri``) and ``python_tag_scanner_pages`` (pages scanned by the pure-Python tag scanner,
where ``pipeline.html._tagscan`` was not compiled: same rows, 1.8x the CPU time; each such worker also logs a
warning once). ``_SUCCESS`` says which scanner ran (``tag_scanner``: compiled, python or none with --full-parse).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.config import CorpusConfig, CorpusOptions
from pipeline.core.errors import InputError
from pipeline.core.keys import candidate_id_in, candidate_id_prefix, sample_key
from pipeline.core.layout import CorpusLayout, WriteTableBatches, list_matching
from pipeline.core.progress import StageProgress, file_progress, with_progress
from pipeline.core.reasons import ExtractReason
from pipeline.core.rules import counter, rejection
from pipeline.core.stage import run_stage, runs_locally
from pipeline.crawl.listing import crawl_files, crawl_progress, retry_policy
from pipeline.crawl.stream import CrawlStream, open_beam_file, open_crawl_url, open_s3_file
from pipeline.html.alt_text import normalise_alt
from pipeline.html.images import ImgTag, find_images, tag_scanner
from pipeline.html.urls import UrlResolver, page_base, url_host
from pipeline.html.warc import HtmlResponse, ImageResponse, RecordProblem, WatLinks, iter_warc_items
from schemas import ArchivedImage, Candidate, RecordError, Rejection, Table

STAGE = "extract"
CANDIDATES = "candidates"
ARCHIVED_IMAGES = "archived_images"
RECORD_ERRORS = "record_errors"
REJECTED = "rejected"
#: Not a table: one ``(path, problem)`` per input file (problem None when it held a WARC/WAT record), so a run in
#: which no file was readable fails instead of writing an empty corpus.
FILES = "files"

#: The table each tag's rows are written to.
TABLES: dict[str, type[Table]] = {
    CANDIDATES: Candidate,
    ARCHIVED_IMAGES: ArchivedImage,
    RECORD_ERRORS: RecordError,
    REJECTED: Rejection,
}
#: Rows per Arrow record batch the DoFn emits for one table (a batch of candidates is about 1.5 MB).
BATCH_ROWS = 4096
#: An archived_images batch is also cut at this many body bytes: an image body can be megabytes.
BATCH_BODY_BYTES = 16 * 1024 * 1024
#: Rows between two progress updates (each takes a lock; per row it showed in profiles).
_PROGRESS_EVERY_ROWS = 512

#: A rejected data: URL can be megabytes; the rejection keeps its start, which says enough.
_MAX_REJECTED_URL_CHARS = 512

log = logging.getLogger("altcorpus")
#: Whether this process has warned that it scans pages with the pure-Python tag scanner (once per worker).
_warned_about_python_scanner = False


def _scanner_in_use(full_parse: bool) -> str:
    """The tag scanner pages go through: compiled, python (warned about once per process, since it is a silent
    1.8x slowdown otherwise) or none (``--full-parse``: Lexbor parses every page)."""
    global _warned_about_python_scanner
    if full_parse:
        return "none"
    scanner = tag_scanner()
    if scanner == "python" and not _warned_about_python_scanner:
        _warned_about_python_scanner = True
        log.warning(
            "extract: pipeline.html._tagscan is not compiled here, so pages go through the pure-Python tag scanner: "
            "same candidates, about 1.8x the CPU time. Reinstall with a C compiler (make install) to build it."
        )
    return scanner


def _record_error(problem: RecordProblem) -> dict[str, Any]:
    info = problem.info
    return {
        RecordError.STAGE: STAGE,
        RecordError.WARC_FILE: info.warc_file,
        RecordError.WARC_RECORD_OFFSET: info.offset,
        RecordError.RECORD_URL: info.url or None,
        RecordError.REASON: problem.reason,
        RecordError.DETAIL: problem.detail,
    }


def _archived_image(image: ImageResponse) -> dict[str, Any]:
    info = image.info
    return {
        ArchivedImage.IMAGE_URL: info.url.split("#", 1)[0],
        ArchivedImage.HTTP_STATUS: image.status,
        ArchivedImage.CONTENT_TYPE: image.content_type,
        ArchivedImage.X_ROBOTS_TAG: image.x_robots_tag,
        ArchivedImage.BODY: image.body,
        ArchivedImage.WARC_FILE: info.warc_file,
        ArchivedImage.WARC_RECORD_OFFSET: info.offset,
        ArchivedImage.CRAWL_DATE: info.date,
    }


# Candidate's column names as module constants: the candidate row is built once per <img> of the crawl.
_CANDIDATE_ID, _KEY, _IMAGE_URL, _ALT_TEXT = (
    Candidate.CANDIDATE_ID,
    Candidate.KEY,
    Candidate.IMAGE_URL,
    Candidate.ALT_TEXT,
)
_PAGE_URL, _PAGE_HOST, _IMAGE_HOST = Candidate.PAGE_URL, Candidate.PAGE_HOST, Candidate.IMAGE_HOST
_URL_ATTRIBUTE, _HTML_LANG, _CRAWL_DATE = Candidate.URL_ATTRIBUTE, Candidate.HTML_LANG, Candidate.CRAWL_DATE
_WARC_FILE, _WARC_RECORD_OFFSET, _WARC_RECORD_ID = (
    Candidate.WARC_FILE,
    Candidate.WARC_RECORD_OFFSET,
    Candidate.WARC_RECORD_ID,
)


class CandidateColumns:
    """Candidate rows gathered column by column, taken out as Arrow record batches (the stage) or dicts (tests).

    A dict per candidate, turned into Arrow by ``RecordBatch.from_pylist``, cost a dict build, 13 ``row.get`` and a
    GC-tracked object per row; profiled on the 150 MB bench WARC, ``from_pylist`` alone was 13% of the stage. The six
    columns that vary per ``<img>`` are lists; the seven a page's candidates share (its URL, host, lang, date, WARC
    file, offset and record id) are kept once per run of rows (``pages``, ``page_rows``) and become Arrow arrays
    once per page, then are run-end decoded: converting each row's copy of them was half of ``take_batch``.
    """

    __slots__ = ("page_rows", "pages", "per_row")

    def __init__(self) -> None:
        #: The six columns that vary per ``<img>`` (``_PER_ROW_COLUMNS``), one value per row.
        self.per_row: tuple[list[Any], ...] = tuple([] for _ in _PER_ROW_COLUMNS)
        #: The shared values (``_PER_PAGE_COLUMNS``) of each run of rows from one page, and the run lengths.
        self.pages: list[tuple[Any, ...]] = []
        self.page_rows: list[int] = []

    def __len__(self) -> int:
        return len(self.per_row[0])

    def add_page_rows(self, values: tuple[Any, ...], rows: int) -> None:
        """The last ``rows`` rows appended share the page values ``values`` (called once they are appended)."""
        self.pages.append(values)
        self.page_rows.append(rows)

    def take_batch(self, rows: int, schema: pa.Schema) -> pa.RecordBatch:
        """The first ``rows`` rows (at most) as one record batch of ``schema``, removed from the columns."""
        rows = min(rows, len(self))
        runs, needed = [], rows
        for count in self.page_rows:
            if needed <= 0:
                break
            runs.append(min(count, needed))
            needed -= count
        pages = self.pages[: len(runs)]
        run_ends = pa.array(itertools.accumulate(runs), pa.int32())
        arrays = {}
        for index, name in enumerate(_PER_PAGE_COLUMNS):
            values = pa.array([page[index] for page in pages], type=schema.field(name).type)
            arrays[name] = pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(run_ends, values)) if runs else values
        for name, values in zip(_PER_ROW_COLUMNS, self.per_row, strict=True):
            arrays[name] = pa.array(values[:rows], type=schema.field(name).type)
            del values[:rows]
        if runs and runs[-1] < self.page_rows[len(runs) - 1]:  # the last page's rows go on in the next batch
            self.page_rows[len(runs) - 1] -= runs[-1]
            del self.pages[: len(runs) - 1], self.page_rows[: len(runs) - 1]
        else:
            del self.pages[: len(runs)], self.page_rows[: len(runs)]
        return pa.RecordBatch.from_arrays([arrays[field.name] for field in schema], schema=schema)

    def take_rows(self) -> Iterator[dict[str, Any]]:
        """Every row as a dict keyed by ``Candidate``'s columns (in the table's order), removed from the columns."""
        per_page = [values for values, rows in zip(self.pages, self.page_rows, strict=True) for _ in range(rows)]
        by_name = dict(zip(_PER_ROW_COLUMNS, self.per_row, strict=True))
        for index, name in enumerate(_PER_PAGE_COLUMNS):
            by_name[name] = [values[index] for values in per_page]
        names = [_CANDIDATE_KEYS[name] for name in _CANDIDATE_ORDER]
        columns = [by_name[name] for name in _CANDIDATE_ORDER]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        for values in self.per_row:
            values.clear()
        self.pages.clear()
        self.page_rows.clear()
        return iter(rows)


_CANDIDATE_ORDER = [str(name) for name in Candidate.names()]
_CANDIDATE_KEYS = {str(column): column for column in Candidate.columns()}
_PER_ROW_COLUMNS = tuple(
    str(name) for name in (_CANDIDATE_ID, _KEY, _IMAGE_URL, _ALT_TEXT, _IMAGE_HOST, _URL_ATTRIBUTE)
)
_PER_PAGE_COLUMNS = tuple(
    str(name)
    for name in (_PAGE_URL, _PAGE_HOST, _HTML_LANG, _CRAWL_DATE, _WARC_FILE, _WARC_RECORD_OFFSET, _WARC_RECORD_ID)
)


def _page_candidates(
    info: Any,
    lang: str | None,
    base_href: str | None,
    img_count: int,
    images: Sequence[ImgTag],
    max_alt_chars: int,
    counts: Counter,
    out: CandidateColumns,
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """One page's images (``images``: those of its ``img_count`` tags with an alt): candidates are appended to
    ``out``, rejections yielded as rows, and ``(CANDIDATES, None)`` after the page when it added candidates. This
    runs once per ``<img>`` of the crawl, so it binds what it reuses and counts in locals."""
    page_url = info.url
    resolve = UrlResolver(page_base(page_url, base_href)).resolve
    page_host = url_host(page_url)
    warc_file, offset, crawl_date, record_id = info.warc_file, info.offset, info.date, info.record_id
    id_prefix = candidate_id_prefix(warc_file, offset)
    ids, keys, urls, alts, hosts, attributes = (values.append for values in out.per_row)
    page_values = (page_url, page_host, lang, crawl_date, warc_file, offset, record_id)
    add_page_rows = out.add_page_rows
    # Candidates whose page columns are not appended yet: done once per page, or before a rejection so that the
    # columns are whole wherever this generator yields.
    without_alt, without_url, kept, unsynced = img_count - len(images), 0, 0, 0
    try:
        for ordinal, raw_url, url_attribute, raw_alt in images:
            alt = normalise_alt(raw_alt)
            if not alt:
                without_alt += 1
                continue
            if not raw_url:
                without_url += 1
                continue
            image_url, image_host, problem = resolve(raw_url)
            if problem is None and len(alt) <= max_alt_chars:
                kept += 1
                unsynced += 1
                ids(candidate_id_in(id_prefix, ordinal))
                keys(sample_key(image_url, alt))
                urls(image_url)
                alts(alt)
                hosts(image_host)
                attributes(url_attribute)
                continue
            if problem is None:
                problem = ExtractReason.ALT_TOO_LONG_CHARS
                detail = f"{len(alt)} characters, more than {max_alt_chars}"
            else:
                image_url = image_url[:_MAX_REJECTED_URL_CHARS]
                problem = ExtractReason(problem)  # the resolver's reason, held to the closed list
                detail = f"{problem}: {image_url[:200]}"
            row = {
                _CANDIDATE_ID: candidate_id_in(id_prefix, ordinal),
                _KEY: sample_key(image_url, alt),
                _IMAGE_URL: image_url,
                _ALT_TEXT: alt,
                _PAGE_URL: page_url,
            }
            counts[f"rejected_{problem}"] += 1
            if unsynced:
                add_page_rows(page_values, unsynced)
                unsynced = 0
            yield REJECTED, rejection(row, STAGE, problem, detail)
    finally:
        if unsynced:
            add_page_rows(page_values, unsynced)
        counts["img_tags"] += img_count
        counts["img_without_alt"] += without_alt
        counts["img_without_url"] += without_url
        counts["candidates"] += kept
    if kept:
        yield CANDIDATES, None


def extract_columns(
    stream: BinaryIO | str, warc_file: str, config: CorpusConfig, out: CandidateColumns, counts: Counter
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """The stage's whole per-record path over one WARC/WAT stream: candidates are appended to ``out`` (then
    ``(CANDIDATES, None)`` is yielded, once per page that added some); archived_images, record_errors and rejected
    rows are yielded as ``(tag, row)``, in order with the candidates. The DoFn and ``bench/extract.py`` run it."""
    max_alt_chars = config.extract.max_alt_chars
    full_parse = config.extract.full_parse
    python_scanner = _scanner_in_use(full_parse) == "python"
    items = iter_warc_items(
        stream, warc_file, config.extract.max_page_bytes, config.fetch.max_image_bytes, counts=counts
    )
    for item in items:
        kind = type(item)
        if kind is HtmlResponse:
            counts["html_pages"] += 1
            if python_scanner:
                counts["python_tag_scanner_pages"] += 1
            page = find_images(item.body, item.charset, full_parse)
            if not page.img_count:
                counts["pages_without_img"] += 1
                continue
            yield from _page_candidates(
                item.info, page.lang, page.base_href, page.img_count, page.images, max_alt_chars, counts, out
            )
        elif kind is ImageResponse:
            counts["archived_images"] += 1
            yield ARCHIVED_IMAGES, _archived_image(item)
        elif kind is WatLinks:
            images = [ImgTag(ordinal, url, "src", alt) for ordinal, (url, alt) in enumerate(item.images) if alt]
            yield from _page_candidates(
                item.info, None, item.base_href, len(item.images), images, max_alt_chars, counts, out
            )
        else:
            counts[f"error_{item.reason}"] += 1
            yield RECORD_ERRORS, _record_error(item)


def iter_extracted(
    stream: BinaryIO | str, warc_file: str, config: CorpusConfig, counts: Counter | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every output row of one WARC/WAT stream as ``(tag, row)``, in record order; tags: candidates,
    archived_images, record_errors, rejected. ``counts`` (if given) collects the stage's counters. The rows of
    ``extract_columns`` (the stage's per-record path) as dicts: for tests and tools that look at rows."""
    counts = counts if counts is not None else Counter()
    out = CandidateColumns()
    for tag, row in extract_columns(stream, warc_file, config, out, counts):
        if len(out):  # candidates appended before this row (or this page's end) come first
            for candidate in out.take_rows():
                yield CANDIDATES, candidate
        if row is not None:
            yield tag, row


def open_input(path: str, config: CorpusConfig | None = None) -> BinaryIO:
    """Open a WARC on any Beam filesystem as raw bytes: fastwarc detects gzip, lz4, zstd or plain itself. An http(s)
    URL or an ``s3://`` file (a ``--crawl`` file) is streamed, resumed after a dropped connection and retried within
    the ``crawl`` section's bounds (``pipeline.crawl.stream``)."""
    if path.startswith(("http://", "https://")):
        return open_crawl_url(path, retry_policy(config.crawl if config is not None else None))
    if path.startswith("s3://"):
        return open_s3_file(path, retry_policy(config.crawl if config is not None else None))
    # Any Beam filesystem's failure (S3's and GCS's are no OSError) becomes a CrawlFileError naming the file: recorded.
    return open_beam_file(path)


def _count_crawl_requests(stream: Any, counts: Counter) -> None:
    """A crawl file's retries and resumptions, in the stage's counters (``crawl_file_retries``, ...)."""
    raw = getattr(stream, "raw", None)
    if isinstance(raw, CrawlStream):
        for name, value in raw.stats.items():
            counts[f"crawl_file_{name}"] += value


class ExtractFromWarcFile(beam.DoFn):
    """One WARC/WAT file path -> Arrow record batches per table (see ``extract_columns``), with the stage's counters.

    Rows cross Beam in batches of up to ``BATCH_ROWS``: a dict per element cost Beam a pickle per column name, a
    windowed value and a per-row write call, ten times the extraction itself. The main output is candidates; the
    other tables are tagged outputs; ``FILES`` gets one ``(path, problem)`` per file.
    """

    progress = StageProgress(STAGE, "bytes")

    def __init__(self, config: CorpusConfig) -> None:
        self.config = config
        self._counters: dict[str, Any] = {}
        self._schemas: dict[str, pa.Schema] = {}

    def setup(self) -> None:
        self._counters = {}
        self._schemas = {tag: table.schema() for tag, table in TABLES.items()}

    def _batch(self, tag: str, rows: list[dict[str, Any]]) -> Any:
        return beam.pvalue.TaggedOutput(tag, pa.RecordBatch.from_pylist(rows, schema=self._schemas[tag]))

    def process(self, path: str) -> Iterator[Any]:
        counts: Counter = Counter()
        # Candidates (nearly every row) gather in columns; the other tables' rows are few and stay dicts.
        candidates = CandidateColumns()
        candidate_schema = self._schemas[CANDIDATES]
        pending: dict[str, list[dict[str, Any]]] = {tag: [] for tag in TABLES if tag != CANDIDATES}
        body_bytes = seen = 0
        stream = None
        try:
            with open_input(path, self.config) as stream:
                for tag, row in extract_columns(stream, path, self.config, candidates, counts):
                    if row is None:  # a page's candidates were appended: emit each full batch
                        while len(candidates) >= BATCH_ROWS:
                            yield candidates.take_batch(BATCH_ROWS, candidate_schema)
                        seen += 1
                    else:
                        rows = pending[tag]
                        rows.append(row)
                        if tag == ARCHIVED_IMAGES:
                            body_bytes += len(row[ArchivedImage.BODY] or b"")
                            full = len(rows) >= BATCH_ROWS or body_bytes >= BATCH_BODY_BYTES
                        else:
                            full = len(rows) >= BATCH_ROWS
                        if full:
                            yield self._batch(tag, rows)
                            pending[tag] = []
                            if tag == ARCHIVED_IMAGES:
                                body_bytes = 0
                        seen += 1
                    if not seen % _PROGRESS_EVERY_ROWS:
                        self.progress.at_position(path, stream.tell())
                self.progress.at_position(path, stream.tell())  # the records that gave no row
        except OSError as error:
            # The file could not be opened or read at all: one recorded error, the rest of the job goes on.
            counts["error_unreadable_file"] += 1
            pending[RECORD_ERRORS].append(
                {
                    RecordError.STAGE: STAGE,
                    RecordError.WARC_FILE: path,
                    RecordError.WARC_RECORD_OFFSET: None,
                    RecordError.RECORD_URL: None,
                    RecordError.REASON: "unreadable_file",
                    RecordError.DETAIL: f"{type(error).__name__}: {error}",
                }
            )
        _count_crawl_requests(stream, counts)
        # The rows read before the end (or the error) of the file. The main output takes plain elements: a
        # TaggedOutput named like it would go nowhere.
        while len(candidates):
            yield candidates.take_batch(BATCH_ROWS, candidate_schema)
        for tag, rows in pending.items():
            if rows:
                yield self._batch(tag, rows)
        counts["files"] += 1
        problem = None if counts["records"] else next((name[6:] for name in counts if name.startswith("error_")), "")
        yield beam.pvalue.TaggedOutput(FILES, (path, problem))
        for name, value in counts.items():
            if name not in self._counters:
                self._counters[name] = counter(STAGE, name)
            self._counters[name].inc(value)


def _metadata_path(metadata: Any) -> str:
    return metadata.path


def input_patterns(text: str | None) -> list[str]:
    """The comma-separated ``--input`` patterns, each checked to match at least one file."""
    patterns = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not patterns:
        raise ValueError("extract needs --input: a WARC/WAT file or glob (several separated by commas)")
    for pattern in patterns:
        if not list_matching(pattern):
            raise ValueError(f"--input {pattern!r} matches no file")
    return patterns


class ExtractCandidates(beam.PTransform):
    """Input patterns -> a tagged PCollection bundle (candidates, archived_images, record_errors, rejected)."""

    def __init__(self, patterns: Sequence[str], config: CorpusConfig, listed: bool = False) -> None:
        super().__init__()
        self.patterns = list(patterns)
        self.config = config
        #: The patterns are the files themselves (a crawl's URLs, already listed): nothing to match.
        self.listed = listed

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        if self.listed:
            paths = pbegin | "CrawlFiles" >> beam.Create(self.patterns)
        else:
            paths = (
                pbegin
                | "InputPatterns" >> beam.Create(self.patterns)
                | "MatchFiles" >> fileio.MatchAll()
                | "FilePaths" >> beam.Map(_metadata_path)
            )
        return (
            paths
            | "DistinctFiles" >> beam.Distinct()
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadWarcFiles"
            >> beam.ParDo(
                with_progress(
                    ExtractFromWarcFile(self.config),
                    (crawl_progress if self.listed else file_progress)(STAGE, self.patterns, pbegin.pipeline),
                )
            )
            # Declared so that Beam measures the batches with layout.RecordBatchCoder, not by pickling them.
            .with_output_types(
                pa.RecordBatch,
                **dict.fromkeys((ARCHIVED_IMAGES, RECORD_ERRORS, REJECTED), pa.RecordBatch),
                **{FILES: tuple[str, str | None]},
            )
            .with_outputs(ARCHIVED_IMAGES, RECORD_ERRORS, REJECTED, FILES, main=CANDIDATES)
        )


class TallyFiles(beam.CombineFn):
    """``(path, problem)`` per input file -> ``(readable files, a few unreadable ones as "path (problem)")``."""

    EXAMPLES = 3

    def create_accumulator(self) -> tuple[int, list[str]]:
        return 0, []

    def add_input(self, tally: tuple[int, list[str]], item: tuple[str, str | None]) -> tuple[int, list[str]]:
        path, problem = item
        if problem is None:
            return tally[0] + 1, tally[1]
        return tally[0], (tally[1] + [f"{path} ({problem})"])[: self.EXAMPLES]

    def merge_accumulators(self, tallies: Any) -> tuple[int, list[str]]:
        tallies = list(tallies)
        examples = [example for tally in tallies for example in tally[1]]
        return sum(tally[0] for tally in tallies), examples[: self.EXAMPLES]

    def extract_output(self, tally: tuple[int, list[str]]) -> tuple[int, list[str]]:
        return tally


def require_a_readable_file(tally: tuple[int, list[str]]) -> None:
    """Fail the run (so nothing replaces the previous outputs) when not one input file held a WARC/WAT record."""
    readable, examples = tally
    if not readable:
        raise InputError(
            f"no input file is a readable WARC/WAT: {', '.join(examples)}{', ...' if len(examples) >= 3 else ''}"
        )


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The extract graph: read every input file once, write the four tables from Arrow record batches."""
    if config.crawl.crawl:  # --crawl: the selected files of the crawl's listing, as URLs (pipeline.crawl.listing)
        outputs = pipeline | "Extract" >> ExtractCandidates(crawl_files(config.crawl), config, listed=True)
    else:
        patterns = input_patterns(options.view_as(CorpusOptions).input)
        outputs = pipeline | "Extract" >> ExtractCandidates(patterns, config)
    candidates = outputs[CANDIDATES]
    if not runs_locally(options):
        # On a distributed runner batches of candidates are spread over workers, so one huge input file does not
        # make one huge output shard. Not on the local runner: it keeps a shuffle's whole input in memory (888 MB
        # RSS for a 50 MB WARC, 3.1 GB for 150 MB, when every row was shuffled), and it has nothing to spread.
        candidates = candidates | "SpreadCandidates" >> beam.Reshuffle()
    candidates | "WriteCandidates" >> WriteTableBatches(layout.prefix(Candidate), Candidate)
    outputs[ARCHIVED_IMAGES] | "WriteArchivedImages" >> WriteTableBatches(layout.prefix(ArchivedImage), ArchivedImage)
    outputs[RECORD_ERRORS] | "WriteRecordErrors" >> WriteTableBatches(layout.prefix(RecordError), RecordError)
    outputs[REJECTED] | "WriteRejected" >> WriteTableBatches(layout.rejected_prefix(STAGE), Rejection)
    (
        outputs[FILES]
        | "TallyFiles" >> beam.CombineGlobally(TallyFiles())
        | "RequireReadableFile" >> beam.Map(require_a_readable_file)
    )


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run the extract stage (``python -m pipeline extract --input GLOB --output DIR``); returns its counters."""
    return run_stage(STAGE, argv, build, extra_info=_run_info)


def _run_info(layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> dict[str, Any]:
    """What extract adds to its ``_SUCCESS``: the tag scanner pages went through, as the launching process has it
    (workers elsewhere can differ: they count their pages in ``python_tag_scanner_pages``)."""
    info: dict[str, Any] = {"tag_scanner": _scanner_in_use(config.extract.full_parse)}
    if config.crawl.crawl:  # write-shards' manifest.json names the crawl and the files read (its "inputs")
        info["crawl"] = {"id": config.crawl.crawl, "source": config.crawl.source, "base_url": config.crawl.cc_base_url}
        info["inputs"] = list(crawl_files(config.crawl))
    return info
