"""Progress lines while a stage runs (done of total, rate, ETA, statuses) and the end-of-run summary line."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import progress
from pipeline.core.progress import StageProgress, format_summary
from pipeline.stages import extract, fetch
from schemas import ArchivedImage, TextKept
from tests.conftest import shared_path
from tests.pipeline.stages.test_fetch import ARCHIVE_CASES, archived_rows, candidate_rows, write_table
from tests.pipeline.stages.test_write_shards import make_corpus, stage_args

# Each test runs a whole stage to read its progress lines.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
#: ``stage: done/total unit (pct%), rate/s, ETA h:mm:ss`` with numbers grouped by thousands.
LINE = re.compile(
    r"^(?P<stage>[a-z-]+)(?: \[worker pid \d+\])?: (?P<done>[\d,.]+)/~?(?P<total>[\d,.]+) (?P<unit>\w+) "
    r"\((?P<percent>[\d.]+)%\), (?P<rate>[\d,.]+)(?: MB)?/s, ETA (?:\d+:\d\d:\d\d|unknown)"
)


@pytest.fixture(autouse=True)
def every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line at every call, from a fresh per-process state."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    progress.reset()


def progress_lines(records: list[logging.LogRecord], stage: str) -> list[re.Match]:
    lines = [record.getMessage() for record in records if record.name == "altcorpus"]
    return [match for line in lines if (match := LINE.match(line)) and match["stage"] == stage]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_line_gives_counts_rate_eta_and_statuses_by_count() -> None:
    plan = StageProgress("fetch", "candidates", total=50_000)
    line = plan.line(12_345, 10.0, {"ok": 3, "dns_error": 889, "http_404": 7})
    assert line == ("fetch: 12,345/50,000 candidates (24.7%), 1,234/s, ETA 0:00:31; dns_error 889, http_404 7, ok 3")
    assert StageProgress("extract", "bytes", total=50_000_000).line(12_300_000, 10.0) == (
        "extract: 12.3/50.0 MB (24.6%), 1.2 MB/s, ETA 0:00:31"
    )


def test_several_workers_count_their_share_and_unknown_totals_give_no_eta() -> None:
    line = StageProgress("filter-text", "candidates", total=1_000, workers=2).line(250, 5.0)
    assert f"[worker pid {os.getpid()}]: 250/~500 candidates (50.0%), 50/s, ETA 0:00:05" in line
    # A worker past its share (uneven work: one host's URLs on one worker) gives no ETA of 0, but what bounds it.
    past = StageProgress("fetch", "candidates", total=1_000, workers=2).line(700, 10.0)
    assert past.endswith(
        "700/~500 candidates (100.0%), 70/s, ETA unknown: past this worker's share, at most 300 candidates left"
    )
    assert StageProgress("fetch", "candidates").line(10, 2.0) == "fetch: 10 candidates, 5/s"
    assert "of 1,000 across all workers" in StageProgress("fetch", "candidates", 1_000, workers=None).line(10, 2.0)


def test_summary_keeps_rule_hits_apart_from_the_funnel() -> None:
    counters = {"alt_too_short": 5, "dropped": 6, "input": 20, "kept": 14, "rare_ngram": 3}
    summary = format_summary("filter-text", 1.25, counters)
    main, hits = summary.split("; rule hits")
    assert main == "filter-text: done in 1.2 s: kept=14, dropped=6, input=20"
    assert hits.endswith(": alt_too_short=5, rare_ngram=3")
    # fetch's statuses are one per URL, not rule hits: all on the main list
    assert "rule hits" not in format_summary("fetch", 1.0, {"dns_error": 889, "ok": 0, "urls": 889})


def test_fetch_logs_candidates_done_and_running_counts_per_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = {"http://unknown.invalid/a.jpg": (2, "not_archived"), "http://unknown.invalid/b.jpg": (1, "not_archived")}
    rows = candidate_rows({**ARCHIVE_CASES, **failing})
    write_table(tmp_path / TextKept.FOLDER, TextKept, rows)
    write_table(tmp_path / ArchivedImage.FOLDER, ArchivedImage, archived_rows())
    with caplog.at_level(logging.INFO, logger="altcorpus"):
        counters = fetch.run(["--output", str(tmp_path), "--fetch-mode=archive-only"])
    lines = progress_lines(caplog.records, "fetch")
    assert len(lines) >= counters["urls"]  # interval 0: a line per URL done (and one at the end of a bundle)
    last = lines[-1]
    assert (number(last["done"]), number(last["total"]), last["unit"]) == (len(rows), len(rows), "candidates")
    assert last["percent"] == "100.0"
    statuses = dict(re.findall(r"([a-z_0-9]+) (\d+)", last.string.split("; ", 1)[1]))
    assert {name: int(count) for name, count in statuses.items()} == {
        name: counters[name] for name in ("ok", "not_archived", "http_404", "opted_out", "not_an_image")
    }
    done = [number(match["done"]) for match in lines]
    assert done == sorted(done) and done[0] < done[-1]


def test_extract_logs_bytes_read_of_the_input_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    warc = shared_path("warc/books.toscrape.warc")
    with caplog.at_level(logging.INFO, logger="altcorpus"):
        extract.run(["--input", str(warc), "--output", str(tmp_path)])
    lines = progress_lines(caplog.records, "extract")
    assert lines and all(match["unit"] == "MB" for match in lines)
    assert number(lines[-1]["total"]) == round(warc.stat().st_size / 1e6, 1)
    assert lines[-1]["percent"] == "100.0"


@pytest.mark.slow  # a two-process stage run
def test_two_worker_processes_each_log_their_share(tmp_path: Path) -> None:
    rows = make_corpus(tmp_path)
    script = (
        "import logging, sys; from pipeline.stages import write_shards;"
        "logging.basicConfig(level=logging.INFO); write_shards.run(sys.argv[1:])"
    )
    args = stage_args(tmp_path, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    env = {**os.environ, progress.INTERVAL_ENV: "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Worker processes' records reach the runner's log as ``... message: "<line>" ...``.
    messages = re.findall(r'message: "([^"]*)"', done.stderr)
    lines = [match for message in messages if (match := LINE.match(message))]
    assert lines, done.stderr[-3000:]
    pids = {re.search(r"worker pid (\d+)", match.string)[1] for match in lines}
    assert str(os.getpid()) not in pids and pids  # logged by the workers, each naming itself
    assert len(pids) == 2 and {match["stage"] for match in lines} == {"write-shards"}
    assert {number(match["total"]) for match in lines} == {len(rows) / 2}  # each counts against its share
