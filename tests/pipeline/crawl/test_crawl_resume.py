"""A crawl job killed (SIGKILL) mid-fetch and started again resumes from its finished fetch parts and writes the same
shards, byte for byte, as a job never interrupted; the parts it had finished are not fetched again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from pipeline import build
from pipeline.core.layout import CorpusLayout
from pipeline.crawl.simulate import SimulatedCrawl
from schemas import ArchivedImage, Candidate, RecordError, Rejection, TextKept
from tests.fixtures.crawl_mirror import small_mirror

ROOT = Path(__file__).resolve().parents[3]
CRAWL = "CC-MAIN-2099-01"
#: One request at a time per host, each answered after this long: a part is done after its host's robots.txt and
#: URLs one after another, so the parts of one-URL hosts are done at 0.6 s and those of the busy hosts (four or more
#: URLs) not before 1.5 s.
SERVER_LATENCY_S = 0.3
#: Killed once this many fetch parts are marked done (of six: one per host-hash part holding URLs).
KILL_AFTER_PARTS = 2
#: The longest the interrupted run may take to mark its parts done.
WAIT_S = 240.0


def shard_digests(output: Path) -> dict[str, str]:
    """sha256 of every file under ``shards/`` but its ``_SUCCESS``, by its path there."""
    folder = output / "shards"
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "_SUCCESS"  # the run's id and seconds: not a shard
    }


def done_markers(output: Path) -> list[Path]:
    return sorted((output / "_parts").glob("fetch-*/part-*.done"))


def kill_mid_fetch(argv: list[str], output: Path, env: dict[str, str], log: Path) -> list[Path]:
    """Run build-corpus in a subprocess and SIGKILL its process group once ``KILL_AFTER_PARTS`` fetch parts are done;
    the markers that existed at the kill."""
    with open(log, "wb") as stderr:  # a file, not a pipe: a pipe nobody reads would block the job when full
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "build-corpus", *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # its own process group: the kill reaches any worker it started
        )
        markers: list[Path] = []
        deadline = time.monotonic() + WAIT_S
        try:
            while time.monotonic() < deadline:  # bounded by WAIT_S
                markers = done_markers(output)
                if len(markers) >= KILL_AFTER_PARTS or process.poll() is not None:
                    break
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    return markers


def host_path(url: str) -> tuple[str, str]:
    """``(host, /path)`` of an image URL, as the simulator counts its requests."""
    host_port, _, path = url.split("://", 1)[1].partition("/")
    return host_port.split(":", 1)[0], "/" + path


def urls_of(markers: list[Path]) -> set[str]:
    """The image URLs of the parts these markers mark done (their images/ files)."""
    files = [json.loads(marker.read_text())["files"]["images"] for marker in markers]
    files = [file for file in files if file]
    rows = duckdb.sql(f"select image_url from read_parquet({files!r})").fetchall()
    return {url for (url,) in rows}


def copy_upstream(source: Path, target: Path) -> None:
    """Copy extract's and filter-text's outputs (``_SUCCESS`` included): a build-corpus on ``target`` skips them."""
    for table in (Candidate, ArchivedImage, RecordError, TextKept):
        shutil.copytree(source / table.FOLDER, target / table.FOLDER)
    for stage in ("extract", "filter-text"):
        for path in (source / Rejection.FOLDER).glob(f"{stage}-*"):
            (target / Rejection.FOLDER).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / Rejection.FOLDER / path.name)


@pytest.mark.slow  # build-corpus over one small crawl file killed mid-fetch, rerun, and fetched once more unbroken
def test_a_crawl_job_killed_mid_fetch_resumes_and_writes_the_same_shards(tmp_path: Path) -> None:
    """The reference job starts from the killed job's extract and filter-text outputs (the stages before the kill;
    it skips them by their fingerprints) and runs fetch, filter-image and write-shards without a break."""
    mirror = small_mirror(tmp_path / "mirror")
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    with SimulatedCrawl(mirror, latency_s=SERVER_LATENCY_S) as sim:

        def argv(output: Path) -> list[str]:
            return [
                "--crawl", CRAWL, "--cc-base-url", sim.base_url, "--files", "1", "--output", str(output),
                "--allowed-addresses", "127.0.0.0/8", "--per-host-concurrency=1", "--retry-backoff-s", "0.01",
            ]  # fmt: skip

        markers = kill_mid_fetch(argv(killed), killed, sim.env, tmp_path / "killed.log")
        layout = CorpusLayout(str(killed))
        assert len(markers) >= KILL_AFTER_PARTS, markers
        assert layout.is_done("filter-text") and not layout.is_done("fetch")
        fetched_before = urls_of(markers)
        before = sum(count for (host, _), count in sim.stats.host_paths.items() if host.startswith("img-"))
        assert build.run(argv(killed)) == 0
        requests = Counter(sim.stats.host_paths)
        copy_upstream(killed, whole)
        assert build.run(argv(whole)) == 0
    after = sum(count for (host, _), count in requests.items() if host.startswith("img-"))
    assert fetched_before and after > before  # the rerun fetched the parts not done
    # The parts done before the kill were not fetched again: each of their URLs was requested once in all.
    assert {url: requests[host_path(url)] for url in fetched_before} == dict.fromkeys(fetched_before, 1)
    assert (
        CorpusLayout(str(whole)).read_success("filter-text")["run_id"] == layout.read_success("filter-text")["run_id"]
    )
    urls = [CorpusLayout(str(output)).read_success("fetch")["counters"]["urls"] for output in (killed, whole)]
    assert urls[0] == urls[1], urls
    digests = shard_digests(killed)
    assert any(name.endswith(".tar") for name in digests), digests
    assert digests == shard_digests(whole)
