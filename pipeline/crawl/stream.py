"""A crawl file read over HTTP(S) as one stream: never downloaded whole, resumed with a Range request when the
connection drops, retried with bounded exponential back-off on 503/SlowDown and other transient answers.

Common Crawl serves its files from ``https://data.commoncrawl.org/`` (CloudFront in front of S3): a 1 GB WARC takes
minutes, connections drop mid-body, and under load the endpoint answers ``503 Slow Down``. ``CrawlStream`` hides
that from the reader (fastwarc pulls bytes with ``read``): after a drop it asks for ``Range: bytes=<reached>-`` and
checks the ``Content-Range`` start, so the bytes it returns are exactly the file's, in order, once.

Bounds: each request waits at most ``timeout_s`` to connect and between two reads; at most ``max_retries + 1``
attempts per (re)open, with back-off ``backoff_s * 2**attempt`` (jittered, at most ``max_backoff_s``; a
``Retry-After``, in seconds or as an HTTP-date, is honoured up to that cap: ``pipeline.net.client``'s parser, the
fetcher's); at most ``max_resumes`` resumptions per file. Past any bound the read raises ``CrawlFileError`` (an
``OSError``): extract records the file in ``record_errors/`` and goes on. An ``s3://`` file is read the same way, each
GET boto3's ``GetObject`` with botocore's own retries off (``S3Stream``), so the same bounds hold there.

The base URL is the user's own setting, not a stranger's link, so no address guard applies here (``pipeline.net``
guards fetch's image URLs).
"""

from __future__ import annotations

import functools
import io
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from pipeline.net.client import parse_retry_after

#: Answers worth another attempt: S3's SlowDown is a 503; CloudFront answers 502/504 when S3 is slow.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Bytes asked of the connection per read: large reads keep the per-call overhead out of the profile.
READ_BYTES = 1 << 20
USER_AGENT = "altcorpus/0.1 (+https://github.com/altcorpus/altcorpus; crawl reader)"


class CrawlFileError(OSError):
    """A crawl file that could not be read to its end within the retry and resume bounds; says why."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one crawl file is tried (the ``crawl`` config section's numbers)."""

    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_resumes: int = 50
    timeout_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: doubling from ``backoff_s``, jittered, capped."""
        wait = self.backoff_s * (2**attempt) * rng.uniform(0.5, 1.0)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff_s)


_POOL: urllib3.PoolManager | None = None


def shared_pool() -> urllib3.PoolManager:
    """One connection pool per process for every crawl file and listing (created on first use, so it pickles)."""
    global _POOL
    if _POOL is None:
        _POOL = urllib3.PoolManager(num_pools=16, maxsize=8, retries=False, headers={"User-Agent": USER_AGENT})
    return _POOL


class CrawlStream(io.RawIOBase):
    """A read-only, forward stream over one HTTP(S) URL that resumes and retries within ``RetryPolicy``'s bounds.

    ``stats`` counts what it took (``requests``, ``retries``, ``resumes``), for the stage's counters. A subclass
    changes how one GET is made (``_request``, and the errors it may raise in ``request_errors``): ``S3Stream``.
    """

    def __init__(
        self,
        url: str,
        policy: RetryPolicy | None = None,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        #: What a failed request or read may raise that another attempt (or a resumption) may get past.
        self.request_errors: tuple[type[BaseException], ...] = (Urllib3Error, OSError)
        self.policy = policy or RetryPolicy()
        self.pool = pool or shared_pool()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.position = 0
        self.length: int | None = None  # the whole file's size, once a response said it
        self.stats = {"requests": 0, "retries": 0, "resumes": 0}
        self._response: Any = None

    # -- io.RawIOBase -----------------------------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Absolute seeks reopen at that byte (a Range request); ``seek(0, SEEK_CUR)`` is ``tell``."""
        if whence == io.SEEK_CUR and offset == 0:
            return self.position
        if whence != io.SEEK_SET or offset < 0:
            raise io.UnsupportedOperation("a crawl stream seeks only to absolute positions")
        if offset != self.position:
            self._drop()
            self.position = offset
        return self.position

    def close(self) -> None:
        self._drop()
        super().close()

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the file at ``position``; 0 only at the file's end. Drops resume, within bounds."""
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        while True:
            if self.length is not None and self.position >= self.length:
                return 0
            if self._response is None and not self._open():
                return 0  # 416: the position is the end of the file
            try:
                count = self._response.readinto(view)
            except self.request_errors as error:
                self._resume(f"{type(error).__name__}: {error}")
                continue
            if count:
                self.position += count
                return count
            # The body ended: the file's end, or a connection closed early (no Content-Length to catch it).
            if self.length is None or self.position >= self.length:
                self._drop()
                self.length = self.position if self.length is None else self.length
                return 0
            self._resume(f"connection closed at byte {self.position} of {self.length}")

    # -- requests ---------------------------------------------------------------------------------------------------
    def _drop(self) -> None:
        if self._response is not None:
            try:
                self._response.close()
                self._response.release_conn()
            except Exception:  # a broken connection may fail to close; it is discarded either way
                pass
            self._response = None

    def _resume(self, why: str) -> None:
        self._drop()
        self.stats["resumes"] += 1
        if self.stats["resumes"] > self.policy.max_resumes:
            raise CrawlFileError(
                f"{self.url}: gave up after {self.policy.max_resumes} resumptions at byte {self.position} ({why})"
            )

    def _open(self) -> bool:
        """Open the file at ``position`` (a Range request past 0); False when the position is its end."""
        policy = self.policy
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        last = ""
        for attempt in range(policy.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self.stats["requests"] += 1
            retry_after = None
            try:
                response = self._request(headers)
            except self.request_errors as error:
                last = f"{type(error).__name__}: {error}"
            else:
                status = response.status
                if status in (200, 206):
                    self._start(response, status)
                    return True
                if status == 416 and self.position:
                    response.release_conn()
                    self.length = self.position
                    return False
                reason = _reason(response)
                response.drain_conn()
                response.release_conn()
                if status not in TRANSIENT_STATUSES:
                    raise CrawlFileError(f"{self.url}: HTTP {status}{reason}")
                last = f"HTTP {status}{reason}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < policy.max_retries:
                self.sleep(policy.backoff(attempt, self.rng, retry_after))
        raise CrawlFileError(f"{self.url}: {last} after {policy.max_retries + 1} attempts (byte {self.position})")

    def _request(self, headers: dict[str, str]) -> Any:
        """One GET of the file (``headers``: its Range, if any); an answer of any status, or one of
        ``request_errors``."""
        return self.pool.urlopen(
            "GET",
            self.url,
            headers=headers,
            preload_content=False,
            decode_content=False,  # the bytes as stored: positions must be the file's
            redirect=True,
            timeout=urllib3.Timeout(connect=self.policy.timeout_s, read=self.policy.timeout_s),
        )

    def _start(self, response: Any, status: int) -> None:
        """Take a 200/206 response as the stream from ``position``: a 206 must start there; a 200 (the server
        ignored Range) is read forward to it."""
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != self.position:
                response.release_conn()
                raise CrawlFileError(f"{self.url}: asked for byte {self.position}, got a range from {start}")
            self.length = total if total is not None else self.length
        else:
            size = response.headers.get("Content-Length")
            self.length = int(size) if size and size.isdigit() else None
            skip = self.position
            while skip:  # bounded: at most the bytes already read once
                chunk = response.read(min(skip, READ_BYTES))
                if not chunk:
                    response.release_conn()
                    raise CrawlFileError(f"{self.url}: a full response ended before byte {self.position}")
                skip -= len(chunk)
        self._response = response


def _reason(response: Any) -> str:
    """S3's error code (``SlowDown``) or the status phrase, for the message: ``HTTP 503 (SlowDown)``."""
    try:
        body = response.read(2048, decode_content=True) or b""
    except Exception:
        body = b""
    start = body.find(b"<Code>")
    if start >= 0:
        end = body.find(b"</Code>", start)
        return f" ({body[start + 6 : end].decode('ascii', 'replace')})"
    return f" ({response.reason})" if getattr(response, "reason", None) else ""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); the total may be ``*``."""
    try:
        unit_range, _, total = (value or "").partition("/")
        start = int(unit_range.split()[-1].split("-")[0])
        return start, (int(total) if total.strip().isdigit() else None)
    except (ValueError, IndexError):
        return None, None


def open_crawl_url(url: str, policy: RetryPolicy | None = None) -> io.BufferedReader:
    """A buffered binary stream over a crawl file's URL (what extract hands fastwarc)."""
    return io.BufferedReader(CrawlStream(url, policy), READ_BYTES)


def read_url(url: str, policy: RetryPolicy | None = None, limit: int = 256 << 20) -> bytes:
    """A small file (a paths listing) read whole through the same retries; refuses more than ``limit`` bytes."""
    with open_crawl_url(url, policy) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise CrawlFileError(f"{url}: more than {limit} bytes; not a paths listing")
    return data


#: What an operator whose S3 reads have no key pair to sign with is told (boto3 looks in this order).
NO_AWS_CREDENTIALS = (
    "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
    "or --s3_access_key_id and --s3_secret_access_key)"
)


def aws_credentials_problem(path: str) -> str | None:
    """``"<path>: no AWS credentials (...)"`` when Beam's S3 client would have no key pair to sign ``path``'s requests
    with; None for a path elsewhere or when it has one.

    Checked before Beam is asked: botocore's ``NoCredentialsError`` carries no HTTP status, which Beam's retry filter
    (``retry_on_server_errors_and_timeout_filter``) takes for a server error, so each HEAD was retried seven times,
    5 s doubling (5 to 10.6 minutes), before the run said "Unable to locate credentials".
    """
    if not path.startswith("s3://"):
        return None
    import boto3
    import botocore.exceptions
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    # The options Beam's S3 filesystem is made with (beam.Pipeline sets them in the launcher and on workers).
    if (FileSystems._pipeline_options or PipelineOptions()).view_as(S3Options).s3_access_key_id:
        return None
    environment = tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith("AWS_")))
    if environment in _AWS_SIGNED_FOR:
        return None
    try:
        # What Beam's client does without a key pair: boto3's own chain (variables, profile, role, metadata).
        found = boto3.session.Session().get_credentials()
    except botocore.exceptions.BotoCoreError as error:  # AWS_PROFILE naming no profile, a broken config file
        return f"{path}: {error}"
    if found is None:
        return f"{path}: {NO_AWS_CREDENTIALS}"
    _AWS_SIGNED_FOR.add(environment)  # a look costs about 0.1 s: once per process, not per file
    return None


#: The ``AWS_*`` variables under which boto3 found credentials in this process.
_AWS_SIGNED_FOR: set[tuple[tuple[str, str], ...]] = set()


def open_s3_file(path: str, policy: RetryPolicy | None = None) -> io.BufferedReader:
    """A buffered binary stream over an ``s3://`` file, read as an http(s) crawl file is (``S3Stream``): retries,
    back-off and resumptions within ``policy``, the ``--crawl-*`` bounds."""
    problem = aws_credentials_problem(path)
    if problem:
        raise CrawlFileError(problem)
    return io.BufferedReader(S3Stream(path, policy), READ_BYTES)


class S3Stream(CrawlStream):
    """``CrawlStream`` over an ``s3://`` file: each GET is boto3's ``GetObject`` (with its ``Range``), made by a
    client built from Beam's ``S3Options`` (key pair, endpoint, region: as Beam's own ``boto3_client.Client``) with
    botocore's own retries off, so ``CrawlStream``'s loop is the only one.

    Not Beam's S3 filesystem: its retry decorators (``apache_beam.utils.retry.with_exponential_backoff``: 8 attempts
    from 5 s, doubling, fixed when Beam is imported, no option to change them) wrap botocore calls that retry on their
    own (5 attempts in botocore's default mode; Beam builds its client with no ``Config``): a throttled file took up
    to 40 HEADs, or 80 GETs (Beam's read retries twice within each attempt), and 10 minutes and more, whatever
    ``--crawl-max-retries`` said.
    """

    def __init__(self, path: str, policy: RetryPolicy | None = None, **kwargs: Any) -> None:
        import botocore.exceptions

        super().__init__(path, policy, **kwargs)
        self.bucket, _, self.key = path[len("s3://") :].partition("/")
        if not self.bucket or not self.key:
            raise CrawlFileError(f"{path}: not an s3://bucket/key path")
        self.client = _s3_client(_s3_settings(), self.policy.timeout_s)
        self.request_errors = (*self.request_errors, botocore.exceptions.BotoCoreError)

    def _request(self, headers: dict[str, str]) -> Any:
        import botocore.exceptions

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key, **headers)
        except botocore.exceptions.ClientError as error:  # S3 answered: a status and its error code
            metadata = error.response.get("ResponseMetadata", {})
            code = error.response.get("Error", {}).get("Code") or ""
            return _S3Answer(metadata.get("HTTPStatusCode") or 0, metadata.get("HTTPHeaders") or {}, code=code)
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as error:
            raise CrawlFileError(f"{self.url}: {error}") from error  # no attempt can pass (checked before, too)
        metadata = answer["ResponseMetadata"]
        return _S3Answer(metadata["HTTPStatusCode"], metadata.get("HTTPHeaders") or {}, body=answer["Body"])


class _S3Answer:
    """A ``GetObject`` answer (its body) or refusal (its error code), as ``CrawlStream`` reads a urllib3 response."""

    def __init__(self, status: int, headers: dict[str, str], body: Any = None, code: str = "") -> None:
        self.status = status
        self.headers = urllib3.HTTPHeaderDict(headers)  # botocore's are lower-cased; CrawlStream asks "Content-Range"
        self.body = body
        self.code = code
        self.reason = None

    def readinto(self, view: memoryview) -> int:
        data = self.body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, amount: int | None = None, decode_content: bool = False) -> bytes:
        if self.body is None:  # a refusal: its code, as S3's XML body says it (``_reason`` reads it)
            return f"<Code>{self.code}</Code>".encode() if self.code else b""
        return self.body.read(amount)

    def close(self) -> None:
        if self.body is not None:
            self.body.close()

    def drain_conn(self) -> None:
        pass  # botocore read a refusal's body whole

    def release_conn(self) -> None:
        pass  # ``close`` gives the connection back to botocore's pool


def _s3_settings() -> tuple[Any, ...]:
    """Beam's ``S3Options`` for this process (what a pipeline gave its filesystems) and the ``AWS_*`` variables: what
    the client is made from, so a change of either makes a new one."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    options = (FileSystems._pipeline_options or PipelineOptions()).view_as(S3Options)
    environment = tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith("AWS_")))
    return (
        options.s3_access_key_id,
        options.s3_secret_access_key,
        options.s3_session_token,
        options.s3_endpoint_url,
        options.s3_region_name,
        options.s3_api_version,
        bool(options.s3_disable_ssl),
        options.s3_verify,
        environment,
    )


@functools.lru_cache(maxsize=8)
def _s3_client(settings: tuple[Any, ...], timeout_s: float) -> Any:
    """A boto3 S3 client with the arguments Beam's ``boto3_client.Client`` gives one, and botocore's retries off
    (one attempt per call: ``CrawlStream`` retries) and its timeouts the crawl reader's. One per process and
    settings: a client costs tens of milliseconds, and is safe to share between threads."""
    import boto3
    from botocore.config import Config

    access_key, secret_key, token, endpoint, region, api_version, disable_ssl, verify, _ = settings
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        api_version=api_version,
        use_ssl=not disable_ssl,
        verify=verify,
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            user_agent_extra=USER_AGENT,
        ),
    )


class BeamFileStream(io.RawIOBase):
    """A file on any Beam filesystem (``gs://``, local; ``s3://`` too, though crawl files there are read by
    ``open_s3_file``) whose failures are ``CrawlFileError``s naming it, as an HTTP(S) crawl file's are.

    Beam's S3 and GCS clients raise ``S3ClientError`` and ``google.api_core``'s errors, which are no ``OSError``: a
    refused HEAD (403) escaped extract's per-file handler and failed the job, a refused GET (403 InvalidObjectState)
    was recorded as the file's ``malformed_record``, and a refused listing ended in a traceback. Reads, retries and
    resumptions are the filesystem's own.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        problem = aws_credentials_problem(path)
        if problem:
            raise CrawlFileError(problem)
        self._stream = self._call(_open_on_beam, path)

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except CrawlFileError:
            raise
        except OSError as error:  # a missing file (Beam's S3 says "Not found: <path>"), a refused local one
            reason = (error.strerror or str(error)).replace(f": {self.path}", "")
            raise CrawlFileError(f"{self.path}: {_one_line(reason)}") from error
        except Exception as error:  # a filesystem's own error types (S3ClientError, google.api_core's): the same
            message = getattr(error, "message", None) or str(error)
            code = getattr(error, "code", None)
            status = f" (HTTP {code})" if code else ""
            raise CrawlFileError(f"{self.path}: {type(error).__name__}: {_one_line(message)}{status}") from error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(self._stream.seek, offset, whence)

    def readinto(self, buffer: Any) -> int:
        return self._call(self._stream.readinto, buffer)

    def close(self) -> None:
        if not self.closed and hasattr(self, "_stream"):
            self._stream.close()
        super().close()


def _one_line(text: str) -> str:
    """A message on one line (a client's may span several): whitespace runs become one space."""
    return " ".join(str(text).split())


def _open_on_beam(path: str) -> Any:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    # The bytes as stored: fastwarc finds gzip itself, and a listing is unpacked by parse_listing.
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_beam_file(path: str) -> io.BufferedReader:
    """A buffered binary stream over a file on any Beam filesystem, failing with ``CrawlFileError`` (an ``OSError``)
    naming the file whatever the filesystem raised, so extract records the file and goes on."""
    return io.BufferedReader(BeamFileStream(path), READ_BYTES)
