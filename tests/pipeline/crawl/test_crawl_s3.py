"""``extract --crawl --cc-base-url s3://commoncrawl/`` against a real S3 API: moto's server on loopback, holding a
simulated crawl at Common Crawl's keys, read with Beam's S3 options (``--s3_endpoint_url`` and friends): files by
``S3Stream`` (boto3 GETs within the ``--crawl-*`` bounds), folder listings by Beam's S3 filesystem."""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import apache_beam as beam
import boto3
import duckdb
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import retry

try:
    from moto import settings as moto_settings
    from moto.server import ThreadedMotoServer
except ImportError as error:  # a missing prerequisite fails, naming it, rather than skipping the S3 path unseen
    raise ImportError(
        "tests/pipeline/crawl/test_crawl_s3.py needs moto's S3 server: pip install 'moto[server]' "
        "(it is in the test extra: pip install -e '.[test]')"
    ) from error

from pipeline import cli
from pipeline.core.config import CorpusConfig, CrawlConfig
from pipeline.core.errors import InputError
from pipeline.core.layout import CorpusLayout
from pipeline.core.progress import file_progress
from pipeline.core.stage import input_files
from pipeline.crawl.listing import crawl_files, crawl_progress, listing_path
from pipeline.crawl.simulate import SimulatedCrawl
from pipeline.crawl.stream import CrawlFileError
from pipeline.stages import extract
from schemas import Candidate, RecordError
from tests.fixtures.crawl_mirror import plan, small_mirror
from tests.pipeline.crawl.test_crawl_extract import local_candidate_ids

CRAWL = "CC-MAIN-2099-01"
BUCKET = "commoncrawl"
BASE_URL = f"s3://{BUCKET}/"
#: Any key pair: moto accepts every one unless told to check them (``refuse_unknown_keys``).
ACCESS_KEY, SECRET_KEY, REGION = "altcorpus-test", "altcorpus-test-secret", "us-east-1"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture
def endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, empty, stopped after the test."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's accounts live in the process, not the server: every test starts from an empty S3.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    crawl_files.cache_clear()  # moto's buckets outlive a server: a listing cached from the last test would be stale
    try:
        yield endpoint
    finally:
        server.stop()
        crawl_files.cache_clear()


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


def upload(endpoint: str, mirror: Path, keys: list[str], archived: tuple[str, ...] = ()) -> None:
    """Create the bucket and put ``keys`` (paths under the mirror, Common Crawl's keys); ``archived`` keys go to
    GLACIER, where S3 lists and HEADs them but refuses a GET (403 InvalidObjectState): a file that cannot be read."""
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    for key in keys:
        extra = {"StorageClass": "GLACIER"} if key in archived else None
        client.upload_file(str(mirror / key), BUCKET, key, ExtraArgs=extra)


def s3_flags(endpoint: str, keys: bool = True) -> list[str]:
    """Beam's ``S3Options``: where the S3 API is and (unless ``keys`` is False) the key pair to sign with."""
    flags = [f"--s3_endpoint_url={endpoint}", f"--s3_region_name={REGION}"]
    if keys:
        flags += [f"--s3_access_key_id={ACCESS_KEY}", f"--s3_secret_access_key={SECRET_KEY}"]
    return flags


def rows(output: Path, table_type: type) -> list[dict]:
    glob = CorpusLayout(str(output)).glob(table_type)
    return duckdb.sql(f"select * from read_parquet('{glob}')").to_arrow_table().to_pylist()


def by_id(candidates: list[dict], base_url: str) -> dict[str, dict]:
    """Candidates by id, their WARC file named relative to ``base_url`` (the one column that names the source)."""
    result = {}
    for row in candidates:
        assert row[Candidate.WARC_FILE].startswith(base_url), row[Candidate.WARC_FILE]
        result[row[Candidate.CANDIDATE_ID]] = {
            **row,
            Candidate.WARC_FILE: row[Candidate.WARC_FILE][len(base_url) :],
        }
    return result


@pytest.mark.slow  # two extract runs (S3, then HTTP), about 12 s together
def test_an_s3_crawl_gives_the_candidates_of_the_same_crawl_over_http(
    mirror: Path, endpoint: str, tmp_path: Path
) -> None:
    files = plan(mirror)["warc_files"]
    upload(endpoint, mirror, [listing_path(CRAWL, "warc"), *files])
    selection = ["--crawl", CRAWL, "--files", "2"]
    from_s3 = tmp_path / "s3"
    counters = extract.run([*selection, "--cc-base-url", BASE_URL, "--output", str(from_s3), *s3_flags(endpoint)])
    from_http = tmp_path / "http"
    with SimulatedCrawl(mirror) as sim:
        extract.run([*selection, "--cc-base-url", sim.base_url, "--output", str(from_http)])
    s3_candidates = by_id(rows(from_s3, Candidate), BASE_URL)
    assert s3_candidates == by_id(rows(from_http, Candidate), sim.base_url)
    assert set(s3_candidates) == local_candidate_ids(mirror / files[0]) | local_candidate_ids(mirror / files[1])
    assert counters["files"] == 2 and counters["candidates"] == len(s3_candidates) > 0
    success = CorpusLayout(str(from_s3)).read_success("extract")
    assert success["crawl"] == {"id": CRAWL, "source": "warc", "base_url": BASE_URL}
    assert success["inputs"] == [BASE_URL + relative for relative in files[:2]]
    assert [item["path"] for item in success["fingerprint"]["input_files"]] == success["inputs"]


@pytest.mark.slow  # one extract run, 7 to 10 s here; the fast tests below cover open_input on s3:// without one
def test_a_missing_key_and_an_unreadable_one_are_recorded_and_the_job_goes_on(
    mirror: Path, endpoint: str, tmp_path: Path
) -> None:
    files = plan(mirror)["warc_files"]
    # Listed: all three. Uploaded: the first, and the second in GLACIER; the third is missing (404).
    upload(endpoint, mirror, [listing_path(CRAWL, "warc"), *files[:2]], archived=(files[1],))
    output = tmp_path / "corpus"
    counters = extract.run(["--crawl", CRAWL, "--cc-base-url", BASE_URL, "--output", str(output), *s3_flags(endpoint)])
    candidates = rows(output, Candidate)
    assert {row[Candidate.CANDIDATE_ID] for row in candidates} == local_candidate_ids(mirror / files[0])
    assert {row[Candidate.WARC_FILE] for row in candidates} == {BASE_URL + files[0]}
    errors = sorted(rows(output, RecordError), key=lambda row: row[RecordError.WARC_FILE])
    assert [(row[RecordError.WARC_FILE], row[RecordError.REASON]) for row in errors] == [
        (BASE_URL + files[1], "unreadable_file"),
        (BASE_URL + files[2], "unreadable_file"),
    ]
    assert "InvalidObjectState" in errors[0][RecordError.DETAIL] and "403" in errors[0][RecordError.DETAIL]
    assert errors[1][RecordError.DETAIL].endswith(": HTTP 404 (NoSuchKey)")
    assert counters["error_unreadable_file"] == 2 and counters["files"] == 3
    assert "error_malformed_record" not in counters  # a refused GET is the file's failure, not its framing's
    success = CorpusLayout(str(output)).read_success("extract")
    assert success["inputs"] == [BASE_URL + relative for relative in files]


@pytest.fixture
def refuse_unknown_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto check signatures from now on, as S3 does: a key pair no IAM user holds gets 403 (moto reads its
    ``INITIAL_NO_AUTH_ACTION_COUNT`` variable at import, so the setting it became is what changes here)."""
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)


def test_a_refused_listing_stops_the_run_in_one_line_naming_it(
    mirror: Path, endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    upload(endpoint, mirror, [listing_path(CRAWL, "warc")])
    request.getfixturevalue("refuse_unknown_keys")  # after the upload: the wrong credentials are the run's
    output = tmp_path / "corpus"
    code = cli.main(
        ["extract", "--crawl", CRAWL, "--cc-base-url", BASE_URL, "--output", str(output), *s3_flags(endpoint)]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1, lines  # an input that cannot be read (InputError), not a mistake in the flags
    assert len(lines) == 1 and lines[0].startswith(
        f"altcorpus extract: error: cannot read the paths listing of {CRAWL} ({BASE_URL}{listing_path(CRAWL, 'warc')}):"
    ), lines
    assert lines[0].endswith("HTTP 403 (InvalidAccessKeyId)"), lines  # S3's code, from the refused GET's body
    assert not output.exists()


def test_a_refused_get_is_the_files_failure_not_the_jobs(
    mirror: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Beam raises S3's 403 at open (its HEAD) as ``S3ClientError``, no ``OSError``: extract would fail the whole job
    on it. ``open_input`` reads ``s3://`` itself and fails with a ``CrawlFileError``, which extract records (as the
    test above shows)."""
    key = plan(mirror)["warc_files"][0]
    upload(endpoint, mirror, [key])
    request.getfixturevalue("refuse_unknown_keys")
    # The options a pipeline gives Beam's filesystems (beam.Pipeline sets them), for this test's process only.
    monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(endpoint)))
    with pytest.raises(Exception) as raw:
        FileSystems.open(BASE_URL + key)
    assert not isinstance(raw.value, OSError), raw.value  # why open_input wraps s3:// files
    stream = extract.open_input(BASE_URL + key)
    with pytest.raises(CrawlFileError, match=rf"^{re.escape(BASE_URL + key)}: HTTP 403 \(InvalidAccessKeyId\)$"):
        stream.read(1)


class DroppingProxy:
    """A loopback TCP proxy to the S3 server that cuts the first ``GET`` of ``key`` after ``cut_after`` bytes of its
    answer (headers included): a connection dropped mid-body, as a long read from S3 sees."""

    def __init__(self, endpoint: str, key: str, cut_after: int) -> None:
        self.target = urllib.parse.urlsplit(endpoint)
        self.marker = f"GET /{BUCKET}/{key}".encode()
        self.cut_after = cut_after
        self.gets: list[bytes] = []  # the request line and headers of each GET of the key
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection((self.target.hostname, self.target.port))
        with client, upstream:
            request = client.recv(65536)
            cut = request.startswith(self.marker) and not self.gets
            if request.startswith(self.marker):
                self.gets.append(request)
            upstream.sendall(request)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            sent = 0
            while chunk := upstream.recv(65536):
                if cut and sent + len(chunk) > self.cut_after:
                    client.sendall(chunk[: self.cut_after - sent])
                    client.shutdown(socket.SHUT_RDWR)  # the drop: the body stops short of its Content-Length
                    return
                client.sendall(chunk)
                sent += len(chunk)

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
        except OSError:
            pass  # either side closed

    def close(self) -> None:
        self.listener.close()


def test_a_dropped_s3_connection_is_resumed_with_a_range_get(
    mirror: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``s3://`` does on a drop: ``S3Stream`` (``CrawlStream``'s resumption) asks at once for the bytes from
    where the cut answer ended (``Range: bytes=<reached>-``): the short read is kept, the answer's Content-Length
    says it is not the end. The file arrives whole and once."""
    key = plan(mirror)["warc_files"][0]
    upload(endpoint, mirror, [key])
    proxy = DroppingProxy(endpoint, key, cut_after=9000)
    try:
        monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(proxy.url)))
        with extract.open_input(BASE_URL + key) as stream:
            data = stream.read()
    finally:
        proxy.close()
    assert data == (mirror / key).read_bytes()
    assert len(proxy.gets) == 2, proxy.gets
    ranges = [re.search(rb"(?im)^range: bytes=(\d+)-\r$", get) for get in proxy.gets]
    started_at, resumed_at = (int(match[1]) if match else None for match in ranges)
    assert started_at is None, proxy.gets  # the whole file
    # The first answer was cut within its first 9,000 bytes, headers included: the second GET starts where it ended.
    assert resumed_at is not None and 0 < resumed_at < 9000, proxy.gets


@pytest.fixture
def beam_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits Beam's retry decorator (``apache_beam.utils.retry.with_exponential_backoff``, around every S3 HEAD,
    LIST and GET) asks for, recorded instead of slept: a test sees the back-off a run would sit through (seven
    waits from 5 s, doubling, 5 to 10.6 minutes in all) without sitting through it."""
    waits: list[float] = []
    monkeypatch.setattr(retry.Clock, "sleep", lambda clock, seconds: waits.append(seconds))
    return waits


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key pair anywhere boto3 looks: no variables, no credentials or config file, no instance metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


NO_CREDENTIALS = "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"


def test_without_aws_credentials_the_run_stops_at_once_in_one_line(
    mirror: Path,
    endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_aws_credentials: None,
    beam_backoff: list[float],
) -> None:
    """botocore's NoCredentialsError carries no HTTP status, which Beam's retry filter takes for a server error: the
    listing's HEAD was retried for 5 to 10 minutes before the run said "Unable to locate credentials"."""
    upload(endpoint, mirror, [listing_path(CRAWL, "warc")])
    output = tmp_path / "corpus"
    code = cli.main(
        [
            "extract",
            *("--crawl", CRAWL, "--cc-base-url", BASE_URL, "--output", str(output)),
            *s3_flags(endpoint, keys=False),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1, lines
    assert len(lines) == 1 and f"{BASE_URL}{listing_path(CRAWL, 'warc')}: {NO_CREDENTIALS}" in lines[0], lines
    assert beam_backoff == []
    assert not output.exists()


def test_without_aws_credentials_a_file_and_a_selection_listed_locally_fail_at_once(
    mirror: Path,
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_aws_credentials: None,
    beam_backoff: list[float],
) -> None:
    """A worker opening a file records it at once; a ``--files-from`` list on this machine stops the run before its
    progress plan sizes every file (two HEADs each, each retried minutes long without credentials)."""
    key = plan(mirror)["warc_files"][0]
    upload(endpoint, mirror, [key])
    monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(endpoint, keys=False)))
    with pytest.raises(CrawlFileError, match=re.escape(f"{BASE_URL}{key}: {NO_CREDENTIALS}")):
        extract.open_input(BASE_URL + key)
    listed = tmp_path / "mine.paths"
    listed.write_text(key + "\n")
    with pytest.raises(InputError, match=re.escape(f"{BASE_URL}{key}: {NO_CREDENTIALS}")):
        crawl_files(CrawlConfig(crawl=CRAWL, files_from=str(listed), cc_base_url=BASE_URL))
    assert beam_backoff == []


def test_refusals_and_missing_keys_fail_without_back_off_naming_the_file(
    mirror: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, beam_backoff: list
) -> None:
    """What cannot succeed on a retry is not retried: a missing key or bucket (404) and a refusal (403)."""
    key = plan(mirror)["warc_files"][0]
    upload(endpoint, mirror, [key])
    monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(endpoint)))
    absent = f"{BASE_URL}crawl-data/{CRAWL}/absent.warc.gz"
    refusals = {
        absent: rf"^{re.escape(absent)}: HTTP 404 \(NoSuchKey\)$",
        f"s3://no-such-bucket/{key}": r"^s3://no-such-bucket/\S+: HTTP 404 \(NoSuchBucket\)$",
        BASE_URL + key: rf"^{re.escape(BASE_URL + key)}: HTTP 403 \(InvalidAccessKeyId\)$",
    }
    for path, message in refusals.items():
        if path == BASE_URL + key:
            request.getfixturevalue("refuse_unknown_keys")
        stream = extract.open_input(path, CorpusConfig())
        with pytest.raises(CrawlFileError, match=message):
            stream.read(1)
        assert stream.raw.stats == {"requests": 1, "retries": 0, "resumes": 0}, path
    assert beam_backoff == []


class LoopbackServer:
    """An HTTP server on a free loopback port, serving ``handler`` from a thread until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


class SlowDownServer(LoopbackServer):
    """A loopback server answering as a throttled S3 does (``503 SlowDown``): every request, or, with ``upstream`` (an
    S3 endpoint), the requests for ``key`` only, the others passed on to ``upstream``. ``throttled`` counts the 503s.
    """

    def __init__(self, upstream: str | None = None, key: str | None = None) -> None:
        target = urllib.parse.urlsplit(upstream) if upstream else None
        throttled_path = f"/{BUCKET}/{key}" if key else None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                if target is None or path == throttled_path:
                    self.slow_down()
                else:
                    self.pass_on(target)

            do_GET = do_HEAD

            def slow_down(self) -> None:
                with server.lock:
                    server.throttled += 1
                body = SLOW_DOWN if self.command == "GET" else b""
                self.send_response(503, "Slow Down")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def pass_on(self, target: urllib.parse.SplitResult) -> None:
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    connection.request(self.command, self.path, headers=dict(self.headers))
                    answer = connection.getresponse()
                    body = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.lock = threading.Lock()
        self.throttled = 0
        super().__init__(Handler)


@pytest.mark.parametrize("trouble", ["503 SlowDown", "connection refused"])
def test_throttling_and_connection_errors_are_retried_within_the_crawl_bounds(
    mirror: Path, monkeypatch: pytest.MonkeyPatch, beam_backoff: list[float], trouble: str
) -> None:
    """What may pass is retried, ``--crawl-max-retries`` times and no more: one request per attempt (botocore's own
    retries are off), none of Beam's back-off. It was 8 of Beam's attempts, each of 5 botocore requests (HEAD) or
    10 (GET), 5 to 10.6 minutes of back-off, whatever the crawl settings said."""
    server = SlowDownServer() if trouble == "503 SlowDown" else None
    if server is not None:
        url = server.url
    else:
        with socket.create_server(("127.0.0.1", 0)) as closed:
            url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    config = CorpusConfig(crawl=CrawlConfig(crawl_max_retries=2, crawl_backoff_s=0.01, crawl_max_backoff_s=0.05))
    try:
        monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(url)))
        path = BASE_URL + plan(mirror)["warc_files"][0]
        stream = extract.open_input(path, config)
        expected = "HTTP 503 \\(SlowDown\\)" if server is not None else "EndpointConnectionError: .*"
        with pytest.raises(CrawlFileError, match=rf"^{re.escape(path)}: {expected} after 3 attempts \(byte 0\)$"):
            stream.read(1)
    finally:
        if server is not None:
            server.close()
    assert stream.raw.stats == {"requests": 3, "retries": 2, "resumes": 0}
    if server is not None:
        assert server.throttled == 3
    assert beam_backoff == []


def test_an_always_throttled_s3_file_costs_the_crawl_bounds_attempts_and_is_recorded(
    mirror: Path, endpoint: str, tmp_path: Path, beam_backoff: list[float]
) -> None:
    """A whole extract job over S3 where one listed file answers ``503 SlowDown`` to every request: it is asked for
    ``--crawl-max-retries`` + 1 times in all, then recorded in ``record_errors/`` while the other files are read."""
    files = plan(mirror)["warc_files"]
    upload(endpoint, mirror, [listing_path(CRAWL, "warc"), *files])
    throttling = SlowDownServer(upstream=endpoint, key=files[1])
    output = tmp_path / "corpus"
    retries = ["--crawl-max-retries", "3", "--crawl-backoff-s", "0.01", "--crawl-max-backoff-s", "0.05"]
    try:
        counters = extract.run(
            ["--crawl", CRAWL, "--cc-base-url", BASE_URL, "--output", str(output), *retries, *s3_flags(throttling.url)]
        )
    finally:
        throttling.close()
    assert throttling.throttled == 4  # one GET per attempt: no HEAD, no botocore retry, no Beam retry
    errors = rows(output, RecordError)
    assert [(row[RecordError.WARC_FILE], row[RecordError.REASON]) for row in errors] == [
        (BASE_URL + files[1], "unreadable_file")
    ]
    assert errors[0][RecordError.DETAIL].endswith("HTTP 503 (SlowDown) after 4 attempts (byte 0)"), errors
    read = {row[Candidate.WARC_FILE] for row in rows(output, Candidate)}
    assert read == {BASE_URL + files[0], BASE_URL + files[2]}
    assert counters["files"] == 3 and counters["error_unreadable_file"] == 1
    assert counters["crawl_file_retries"] == 3
    assert beam_backoff == []


class FolderS3(LoopbackServer):
    """A second S3 mirror on loopback: the objects are the files under ``root/<bucket>/``, served as S3's REST API
    serves them to a reader (HEAD, and GET with ``Range``); moto keeps its buckets per process, not per server."""

    def __init__(self, root: Path) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                path = root / urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                start = int(match[1]) if match else 0
                self.send_response(206 if match else 200)
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
                self.send_header("Last-Modified", email.utils.formatdate(path.stat().st_mtime, usegmt=True))
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

        super().__init__(Handler)


def test_two_s3_mirrors_of_one_crawl_give_their_own_listings(
    mirror: Path, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``s3://commoncrawl/`` names a bucket, not a place: which listing it is depends on ``--s3_endpoint_url``."""
    files = plan(mirror)["warc_files"]
    upload(endpoint, mirror, [listing_path(CRAWL, "warc")])  # moto's listing: all three files
    other = tmp_path / "other"
    (other / BUCKET / listing_path(CRAWL, "warc")).parent.mkdir(parents=True)
    (other / BUCKET / listing_path(CRAWL, "warc")).write_text(files[2] + "\n")  # the other mirror's: one
    folder_s3 = FolderS3(other)
    crawl = CrawlConfig(crawl=CRAWL, cc_base_url=BASE_URL)
    try:
        listed = {}
        for name, url in (("moto", endpoint), ("folder", folder_s3.url), ("moto again", endpoint)):
            monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(url)))
            listed[name] = crawl_files(crawl)
    finally:
        folder_s3.close()
    assert listed == {
        "moto": tuple(BASE_URL + path for path in files),
        "folder": (BASE_URL + files[2],),
        "moto again": tuple(BASE_URL + path for path in files),
    }


def test_extracts_progress_sizes_s3_crawl_files_with_a_listing_per_folder_not_heads_per_file(
    mirror: Path, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The progress plan (the selected files' total size) is made in the launching process before the job starts:
    two HEADs a file (Beam's ``match`` of a plain path: ``exists``, then ``metadata``), one after the other, were
    200,000 requests for a whole crawl; a LIST per segment folder is about a hundred."""
    files = plan(mirror)["warc_files"]
    upload(endpoint, mirror, [listing_path(CRAWL, "warc"), *files])
    pipeline = beam.Pipeline(options=PipelineOptions(s3_flags(endpoint)))  # gives Beam's filesystems the options
    selected = crawl_files(CrawlConfig(crawl=CRAWL, cc_base_url=BASE_URL, files=2))  # files 0 and 1: one folder
    caplog.set_level(logging.INFO, logger="werkzeug")  # moto's server logs each request it answers
    _ = pipeline | "Extract" >> extract.ExtractCandidates(selected, CorpusConfig(), listed=True)
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert not [line for line in requests if '"HEAD ' in line], requests
    assert len([line for line in requests if '"GET ' in line]) == 1, requests  # the folder's LIST
    sizes = [(mirror / path).stat().st_size for path in files]
    # The total: the selected files only, not the folder's third file nor the other folder's.
    assert crawl_progress(extract.STAGE, selected, pipeline).total == sizes[0] + sizes[1]


def test_progress_sizes_plain_s3_input_files_with_one_head_each(
    mirror: Path, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``--input`` files named one by one (no glob) are sized and listed with one HEAD each: Beam's ``match`` of a plain
    path made two (``exists``, then ``metadata``), one after the other, per file, before the job started."""
    files = plan(mirror)["warc_files"]
    upload(endpoint, mirror, files)
    pipeline = beam.Pipeline(options=PipelineOptions(s3_flags(endpoint)))  # gives Beam's filesystems the options
    caplog.set_level(logging.INFO, logger="werkzeug")  # moto's server logs each request it answers
    progress = file_progress(extract.STAGE, [BASE_URL + path for path in files[:2]], pipeline)
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert len(requests) == 2 and all('"HEAD ' in line for line in requests), requests
    assert progress.total == sum((mirror / path).stat().st_size for path in files[:2])
    caplog.clear()
    # What the run records as its input (the manifest, the fingerprint): the same, one HEAD a file.
    found = input_files(",".join(BASE_URL + path for path in files[:2]))
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert len(requests) == 2 and all('"HEAD ' in line for line in requests), requests
    assert [(item["path"], item["size"]) for item in found] == sorted(
        (BASE_URL + path, (mirror / path).stat().st_size) for path in files[:2]
    )
    assert all(item["mtime"] for item in found)
    with pytest.raises(ValueError, match="matches no file"):
        input_files(BASE_URL + files[0] + ".missing")
    caplog.clear()
    globbed = file_progress(extract.STAGE, [f"{BASE_URL}{files[0].rsplit('/', 1)[0]}/*.warc.gz"], pipeline)
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert not [line for line in requests if '"HEAD ' in line], requests  # a glob: its listing
    folder = files[0].rsplit("/", 1)[0]
    assert globbed.total == sum((mirror / path).stat().st_size for path in files if path.startswith(folder + "/"))
