"""Which files of a Common Crawl crawl a run reads: the crawl id, its paths listing, and the selection flags.

A crawl ``CC-MAIN-YYYY-WW`` lists its files in ``crawl-data/<id>/warc.paths.gz`` (``wat.paths.gz`` for WAT), one
path a line (``crawl-data/<id>/segments/<segment>/warc/<name>.warc.gz``), segment after segment. The selection is
applied in this order: ``--files-from`` replaces the crawl's listing, ``--segment-range START:END`` keeps those
segments (a Python slice of the segments in the order the listing first names them), ``--files N`` keeps the first
N files. Paths become URLs under ``--cc-base-url`` (``https://data.commoncrawl.org/``, ``s3://commoncrawl/`` or a
mirror); a listed entry that is already a URL is kept as it is.

``selection_problems`` runs inside ``check_settings`` (no I/O), so a malformed id, range or base URL stops the run
with one line before anything is read or written; ``crawl_files`` then reads the listing (also before any output is
touched: the stage's fingerprint needs the file list).
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import InputError
from pipeline.core.progress import StageProgress, worker_count
from pipeline.crawl.stream import RetryPolicy, aws_credentials_problem, open_beam_file, open_s3_file, read_url

if TYPE_CHECKING:
    from pipeline.core.config import CrawlConfig

#: What a Common Crawl main-crawl id looks like (``CC-MAIN-2024-33``: year, ISO week).
CRAWL_ID = re.compile(r"^CC-MAIN-(?P<year>\d{4})-(?P<week>\d{2})$")
#: The listing file of each source, under ``crawl-data/<id>/``.
LISTINGS = {"warc": "warc.paths.gz", "wat": "wat.paths.gz"}
#: A listing longer than this is not a paths listing (CC's largest lists about 100,000 files, 10 MB unpacked).
MAX_LISTING_BYTES = 256 << 20
_SEGMENT_RANGE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")
_SEGMENT = re.compile(r"/segments/([^/]+)/")
_URL_SCHEMES = ("http://", "https://", "s3://", "gs://", "file://")


def selection_problems(crawl: CrawlConfig) -> list[str]:
    """Every mistake in the ``crawl`` section that can be seen without reading anything, as one phrase each."""
    problems = []
    if crawl.crawl and not CRAWL_ID.match(crawl.crawl):
        problems.append(
            f"--crawl {crawl.crawl!r} is not a Common Crawl id: expected CC-MAIN-YYYY-WW (e.g. CC-MAIN-2024-33)"
        )
    elif crawl.crawl and not 1 <= int(CRAWL_ID.match(crawl.crawl)["week"]) <= 53:
        problems.append(f"--crawl {crawl.crawl!r}: the week must be 01 to 53")
    if crawl.segment_range and not _SEGMENT_RANGE.match(crawl.segment_range):
        problems.append(f"--segment-range {crawl.segment_range!r} is not START:END (e.g. 0:3)")
    if not crawl.cc_base_url.startswith(_URL_SCHEMES) and "://" in crawl.cc_base_url:
        problems.append(f"--cc-base-url {crawl.cc_base_url!r}: use http(s)://, s3://, gs:// or a local folder")
    if not crawl.crawl:
        given = [
            flag
            for flag, value in (
                ("--files", crawl.files),
                ("--files-from", crawl.files_from),
                ("--segment-range", crawl.segment_range),
            )
            if value
        ]
        if given:
            problems.append(f"{', '.join(given)} select files of a crawl: give --crawl CC-MAIN-YYYY-WW too")
    return problems


def listing_path(crawl_id: str, source: str) -> str:
    """``crawl-data/<id>/warc.paths.gz`` (or ``wat.paths.gz``), relative to the base URL."""
    return f"crawl-data/{crawl_id}/{LISTINGS[source]}"


def join_url(base: str, path: str) -> str:
    """A listed path under the base URL (an entry that is already a URL or absolute path stays as it is)."""
    if path.startswith(_URL_SCHEMES) or path.startswith("/"):
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


def parse_listing(data: bytes) -> list[str]:
    """The paths of a listing, gzipped or plain: one a line, blank lines and ``#`` comments skipped, order kept."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def segment_of(path: str) -> str | None:
    """The segment a listed path belongs to (``1722640353668.0``), or None for a path outside ``segments/``."""
    match = _SEGMENT.search(path)
    return match.group(1) if match else None


def segment_slice(text: str) -> slice:
    """``"0:3"`` -> ``slice(0, 3)``; empty -> every segment."""
    match = _SEGMENT_RANGE.match(text or ":")
    if not match:
        raise ValueError(f"--segment-range {text!r} is not START:END")
    start, end = (int(part) if part is not None else None for part in match.groups())
    return slice(start, end)


def select(paths: list[str], segment_range: str = "", files: int | None = None) -> list[str]:
    """The listed paths kept by ``--segment-range`` (segments in the order the listing first names them; a path
    outside ``segments/`` is its own segment) then ``--files`` (the first N), in listing order."""
    if segment_range:
        order = list(dict.fromkeys(segment_of(path) or path for path in paths))
        kept = set(order[segment_slice(segment_range)])
        paths = [path for path in paths if (segment_of(path) or path) in kept]
    if files is not None:
        paths = paths[:files]
    return paths


def read_bytes(location: str, crawl: CrawlConfig | None = None) -> bytes:
    """A small file (a listing) from an http(s) URL or ``s3://`` (with the crawl reader's retries) or any Beam
    filesystem."""
    if location.startswith(("http://", "https://")):
        return read_url(location, retry_policy(crawl), MAX_LISTING_BYTES)
    opened = open_s3_file(location, retry_policy(crawl)) if location.startswith("s3://") else open_beam_file(location)
    with opened as stream:  # a refusal (S3's 403) is a CrawlFileError, an OSError: crawl_files' one line
        return stream.read(MAX_LISTING_BYTES + 1)


def retry_policy(crawl: CrawlConfig | None) -> RetryPolicy:
    """The crawl reader's bounds from the ``crawl`` section (defaults without one)."""
    if crawl is None:
        return RetryPolicy()
    return RetryPolicy(
        max_retries=crawl.crawl_max_retries,
        backoff_s=crawl.crawl_backoff_s,
        max_backoff_s=crawl.crawl_max_backoff_s,
        max_resumes=crawl.crawl_max_resumes,
        timeout_s=crawl.crawl_timeout_s,
    )


def crawl_files(crawl: CrawlConfig) -> tuple[str, ...]:
    """The URLs of the selected files of ``crawl`` (listing read once per process, selection and place it is read
    from); ``InputError`` when the listing cannot be read, the selection is empty or its S3 files cannot be signed
    for."""
    where = crawl.files_from or join_url(crawl.cc_base_url, listing_path(crawl.crawl, crawl.source))
    return _crawl_files(crawl, where, s3_endpoint(where))


def s3_endpoint(location: str) -> str | None:
    """Which S3 API an ``s3://`` location is read from (``--s3_endpoint_url``; ``"AWS"`` without one); None for a
    location elsewhere. ``s3://commoncrawl/`` names a bucket, not a place: two mirrors can hold one crawl id."""
    if not location.startswith("s3://"):
        return None
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    return (FileSystems._pipeline_options or PipelineOptions()).view_as(S3Options).s3_endpoint_url or "AWS"


@functools.lru_cache(maxsize=8)
def _crawl_files(crawl: CrawlConfig, where: str, endpoint: str | None) -> tuple[str, ...]:
    """``crawl_files``, cached by the crawl section and where its listing is (``endpoint``: that S3's API)."""
    try:
        data = read_bytes(where, crawl)
        paths = parse_listing(data)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the paths listing of {crawl.crawl} ({where}): {error}") from None
    if len(data) > MAX_LISTING_BYTES:
        raise InputError(f"{where} is larger than {MAX_LISTING_BYTES} bytes: not a paths listing")
    selected = select(paths, crawl.segment_range, crawl.files)
    if not selected:
        raise InputError(
            f"the selection of {crawl.crawl} is empty: {len(paths)} files listed in {where}, "
            f"--segment-range {crawl.segment_range or ':'} and --files {crawl.files} keep none"
        )
    urls = tuple(join_url(crawl.cc_base_url, path) for path in selected)
    # Here, once, not per file: sizing the files for the progress plan would retry each for minutes without them.
    problem = next((aws_credentials_problem(url) for url in urls if url.startswith("s3://")), None)
    if problem:
        raise InputError(f"cannot read the selected files of {crawl.crawl}: {problem}")
    return urls


#: ``crawl_files.cache_clear()``: forget the listings read (a test's bucket changed under the same place).
crawl_files.cache_clear = _crawl_files.cache_clear  # type: ignore[attr-defined]


def crawl_progress(stage: str, urls: Sequence[str], pipeline: Any) -> StageProgress:
    """The progress plan of reading a crawl's selected files: their total size, from one listing per folder.

    Made in the launching process before the job starts: Beam's ``match`` of each plain ``s3://`` path is two HEADs
    (``exists``, then ``metadata``), one after the other, 200,000 for a whole crawl; a LIST per segment folder is
    about a hundred. Unknown (None) for http(s) files, which no Beam filesystem lists; it only costs the ETA.
    """
    from apache_beam.io.filesystems import FileSystems

    total = None
    if urls and not any(url.startswith(("http://", "https://")) for url in urls):
        folders = sorted({url.rsplit("/", 1)[0] for url in urls})
        try:
            sizes = {
                item.path: item.size_in_bytes
                for result in FileSystems.match([f"{folder}/*" for folder in folders])
                for item in result.metadata_list
            }
            total = sum(sizes.get(url, 0) for url in urls)
        except Exception:  # an unknown total only costs the percentage and ETA
            total = None
    return StageProgress(stage, "bytes", total, worker_count(pipeline.options))
