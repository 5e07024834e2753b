"""``extract --crawl`` over the simulator's mirror: files streamed over loopback HTTP, faults survived or recorded."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from pipeline import cli
from pipeline.core.config import CorpusConfig
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGES
from pipeline.crawl.simulate import Fault, HostStats, SimulatedCrawl
from pipeline.stages import extract
from pipeline.stages.extract import iter_extracted
from schemas import Candidate, RecordError
from tests.fixtures.crawl_mirror import plan, small_mirror

CRAWL = "CC-MAIN-2099-01"
FAST_RETRIES = ["--crawl-max-retries", "2", "--crawl-backoff-s", "0.01", "--crawl-max-backoff-s", "0.05"]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_mirror(tmp_path_factory.mktemp("mirror"))


def local_candidate_ids(path: Path) -> set[str]:
    """The candidate ids of one mirror file read locally (the same ids: they hash the file's base name)."""
    rows = iter_extracted(str(path), str(path), CorpusConfig())
    return {row[Candidate.CANDIDATE_ID] for tag, row in rows if tag == "candidates"}


def table(layout: CorpusLayout, table_type: type) -> list[dict]:
    return duckdb.sql(f"select * from read_parquet('{layout.glob(table_type)}')").to_arrow_table().to_pylist()


def test_crawl_files_are_streamed_resumed_retried_and_a_failing_one_is_recorded(mirror: Path, tmp_path: Path) -> None:
    files = plan(mirror)["warc_files"]
    names = [relative.rsplit("/", 1)[1] for relative in files]
    faults = [
        Fault(names[0], drop_after=9000, times=2),  # dropped twice mid-body: resumed with Range requests
        Fault(names[1], status=503, times=2),  # SlowDown twice, then served
        Fault(names[2], status=503, times=None),  # never served: recorded, the job goes on
    ]
    output = tmp_path / "corpus"
    with SimulatedCrawl(mirror, faults=faults) as sim:
        extract.run(["--crawl", CRAWL, "--cc-base-url", sim.base_url, "--output", str(output), *FAST_RETRIES])
        requests = sim.stats.paths
    layout = CorpusLayout(str(output))
    candidates = table(layout, Candidate)
    expected = local_candidate_ids(mirror / files[0]) | local_candidate_ids(mirror / files[1])
    assert {row[Candidate.CANDIDATE_ID] for row in candidates} == expected
    assert {row[Candidate.WARC_FILE] for row in candidates} == {sim.base_url + files[0], sim.base_url + files[1]}
    errors = table(layout, RecordError)
    assert [(row[RecordError.WARC_FILE], row[RecordError.REASON]) for row in errors] == [
        (sim.base_url + files[2], "unreadable_file")
    ]
    assert "HTTP 503 (SlowDown) after 3 attempts" in errors[0][RecordError.DETAIL]
    assert requests["/" + files[2]] == 3 and requests["/" + files[1]] == 3
    success = layout.read_success("extract")
    assert success["counters"]["crawl_file_resumes"] == 2
    assert success["counters"]["crawl_file_retries"] == 2 + 2  # file 1's two, file 2's two before it gave up
    assert success["crawl"] == {"id": CRAWL, "source": "warc", "base_url": sim.base_url}
    assert success["inputs"] == [sim.base_url + relative for relative in files]
    assert [item["path"] for item in success["fingerprint"]["input_files"]] == success["inputs"]


@pytest.mark.slow  # a second extract run (about 5 s); compare_sources covers WAT reading in test_simulate
def test_wat_source_and_files_select_from_the_wat_listing(mirror: Path, tmp_path: Path) -> None:
    wat_files = plan(mirror)["wat_files"]
    output = tmp_path / "corpus"
    with SimulatedCrawl(mirror) as sim:
        extract.run(
            [
                "--crawl",
                CRAWL,
                "--source",
                "wat",
                "--files",
                "1",
                "--cc-base-url",
                sim.base_url,
                "--output",
                str(output),
            ]
        )
    candidates = table(CorpusLayout(str(output)), Candidate)
    assert {row[Candidate.WARC_FILE] for row in candidates} == {sim.base_url + wat_files[0]}
    assert Counter(row[Candidate.URL_ATTRIBUTE] for row in candidates) == {"src": len(candidates)}


def test_a_bad_crawl_id_fails_in_one_line_before_any_output_is_touched(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "corpus"
    (output / "candidates").mkdir(parents=True)
    (output / "candidates" / "old.parquet").write_bytes(b"an earlier run's output")
    before = sorted(str(path) for path in output.rglob("*"))
    for command in ("extract", "build-corpus"):
        code = cli.main([command, "--crawl", "CC-MAIN-24-33", "--output", str(output)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert lines == [
            f"altcorpus {command}: error: --crawl 'CC-MAIN-24-33' is not a Common Crawl id: expected CC-MAIN-YYYY-WW "
            "(e.g. CC-MAIN-2024-33)"
        ]
    code = cli.main(["extract", "--crawl", CRAWL, "--input", str(mirror / "x.warc.gz"), "--output", str(output)])
    assert code == 2 and "--input and --crawl CC-MAIN-2099-01 both name the input" in capsys.readouterr().err
    assert sorted(str(path) for path in output.rglob("*")) == before
    assert (output / "candidates" / "old.parquet").read_bytes() == b"an earlier run's output"


#: The politeness the end-to-end job is held to, and the server latency that makes its requests overlap: with 0.5 s
#: per response and starts 0.2 s apart, a busy host would have 3 in flight without the concurrency limit.
PER_HOST_CONCURRENCY, PER_HOST_RATE, SERVER_LATENCY_S = 2, 5.0, 0.5
#: The fetch client spaces request starts; the server sees each a connect and a send later (tens of ms apart on a
#: loaded machine), so the gaps it measures may fall short of 1 / rate by that much.
JITTER_S = 0.08


def politeness_report(stats: HostStats, hosts: set[str]) -> dict[str, tuple[int, int, float]]:
    """Per host: the most requests in flight at once, the most started within one second, the smallest start gap."""
    report = {}
    for host in sorted(hosts):
        times = sorted(stats.times[host])
        smallest_gap = min((later - earlier for earlier, later in itertools.pairwise(times)), default=float("inf"))
        report[host] = (stats.max_in_flight[host], stats.max_rate(host, 1.0), round(smallest_gap, 3))
    return report


@pytest.mark.slow
def test_build_corpus_from_a_crawl_id_with_two_workers_fetches_images_from_many_hosts(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole job over two crawl files on two worker processes, images from many hosts: every host's requests
    (robots.txt and images, from either worker) stay within the per-host concurrency and rate for the whole job."""
    from pipeline import build

    files = plan(mirror)["warc_files"]
    output = tmp_path / "corpus"
    drop = Fault(files[0].rsplit("/", 1)[1], drop_after=20000, times=1)
    with SimulatedCrawl(mirror, faults=[drop], latency_s=SERVER_LATENCY_S) as sim:
        for name, value in sim.env.items():  # Beam's worker processes resolve *.sim.test through the environment
            monkeypatch.setenv(name, value)
        argv = [
            "--crawl", CRAWL, "--cc-base-url", sim.base_url, "--files", "2", "--output", str(output),
            "--allowed-addresses", "127.0.0.0/8", "--retry-backoff-s", "0.01", *FAST_RETRIES,
            f"--per-host-concurrency={PER_HOST_CONCURRENCY}", f"--per-host-requests-per-s={PER_HOST_RATE}",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2",
        ]  # fmt: skip
        assert build.run(argv) == 0
        image_hosts = {host for host in sim.stats.requests if host.startswith("img-")}
        report = politeness_report(sim.stats, image_hosts)
        run_ids = {stage: CorpusLayout(str(output)).run_id(stage) for stage in STAGES}
        # Run again: the listing selects the same files, so every stage is skipped (its fingerprint matches).
        assert build.run(argv) == 0
        assert {stage: CorpusLayout(str(output)).run_id(stage) for stage in STAGES} == run_ids
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["config"]["crawl"]["crawl"] == CRAWL
    assert manifest["inputs"] == [sim.base_url + relative for relative in files[:2]]
    fetched = duckdb.sql(
        f"select status, count(*) from read_parquet('{output}/images/*.parquet') group by 1"
    ).fetchall()
    statuses = dict(fetched)
    assert statuses.get("ok", 0) > 20, statuses
    assert len(image_hosts) >= 6, image_hosts
    assert manifest["sample_count"] > 10
    for host, (in_flight, per_second, smallest_gap) in report.items():
        assert in_flight <= PER_HOST_CONCURRENCY, (host, report)
        assert per_second <= PER_HOST_RATE + 1, (host, report)  # a closed 1 s window holds rate + 1 spaced starts
        # Arrivals, not starts, are seen here: on a loaded box both requests of a pair can be late by the jitter
        # (measured 0.072 s for a 0.2 s spacing at load 16), so a gap may shrink by twice it; the rate check above
        # still holds every window of the whole job to the limit.
        assert smallest_gap >= 1 / PER_HOST_RATE - 2 * JITTER_S, (host, report)
    # The limits bound something: the busiest host (its logo is on every page) had its requests overlap up to it.
    busiest = max(image_hosts, key=lambda host: sim.stats.requests[host])
    assert report[busiest][0] == PER_HOST_CONCURRENCY, report
    assert sim.stats.requests[busiest] >= 10, sim.stats.requests
