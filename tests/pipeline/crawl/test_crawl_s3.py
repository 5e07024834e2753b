"""``extract --crawl --cc-base-url s3://commoncrawl/`` against a real S3 API: moto's server on loopback, holding a
simulated crawl at Common Crawl's keys, read through Beam's S3 filesystem (``--s3_endpoint_url`` and friends)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import duckdb
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

try:
    from moto import settings as moto_settings
    from moto.server import ThreadedMotoServer
except ImportError as error:  # a missing prerequisite fails, naming it, rather than skipping the S3 path unseen
    raise ImportError(
        "tests/pipeline/crawl/test_crawl_s3.py needs moto's S3 server: pip install 'moto[server]' "
        "(it is in the test extra: pip install -e '.[test]')"
    ) from error

from pipeline import cli
from pipeline.core.layout import CorpusLayout
from pipeline.crawl.listing import crawl_files, listing_path
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
    crawl_files.cache_clear()  # its cache is keyed by the crawl section, not the endpoint: each test's is new
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


def s3_flags(endpoint: str) -> list[str]:
    """Beam's ``S3Options``: where the S3 API is and the key pair to sign with."""
    return [
        f"--s3_endpoint_url={endpoint}",
        f"--s3_access_key_id={ACCESS_KEY}",
        f"--s3_secret_access_key={SECRET_KEY}",
        f"--s3_region_name={REGION}",
    ]


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
    assert "Not found" in errors[1][RecordError.DETAIL]
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
    assert lines[0].endswith("Forbidden (HTTP 403)"), lines  # a HEAD: S3 says why in no body, only its status
    assert not output.exists()


def test_a_refused_head_is_the_files_failure_not_the_jobs(
    mirror: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Beam raises S3's 403 at open (its HEAD) as ``S3ClientError``, no ``OSError``: extract would fail the whole job
    on it. ``open_input`` gives a ``CrawlFileError`` instead, which extract records (as the test above shows)."""
    key = plan(mirror)["warc_files"][0]
    upload(endpoint, mirror, [key])
    request.getfixturevalue("refuse_unknown_keys")
    # The options a pipeline gives Beam's filesystems (beam.Pipeline sets them), for this test's process only.
    monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_flags(endpoint)))
    with pytest.raises(Exception) as raw:
        FileSystems.open(BASE_URL + key)
    assert not isinstance(raw.value, OSError), raw.value  # why open_input wraps s3:// files
    with pytest.raises(CrawlFileError, match=r"HeadObject operation: Forbidden \(HTTP 403\)$"):
        extract.open_input(BASE_URL + key)


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


def test_a_dropped_s3_connection_is_resumed_by_beam_with_a_range_get(
    mirror: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``s3://`` does on a drop: Beam's S3 client (not ``CrawlStream``) asks again at once for the bytes from
    where the cut answer ended (``Range: bytes=<reached>-``): the short read is kept, the file's size (from its HEAD)
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
    assert started_at == 0, proxy.gets
    # The first answer was cut within its first 9,000 bytes, headers included: the second GET starts where it ended.
    assert resumed_at is not None and 0 < resumed_at < 9000, proxy.gets
