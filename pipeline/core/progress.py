"""What a running stage tells its user: done of total, rate and ETA per worker, a status breakdown, Beam counters.

A stage's build knows its totals up front, cheaply: input file sizes (extract), or row counts from the Parquet
footers of the table it reads (``parquet_rows``). It hands its main DoFn a ``StageProgress`` (picklable, holds no
state until used); the DoFn calls ``self.progress.add(n)`` (or ``add(n, status=...)``) where work completes. Every
``interval_s`` seconds (``ALTCORPUS_PROGRESS_EVERY_S`` overrides the default; 0 logs every call, for tests) each
worker process logs one line::

    extract: 12.3/50.0 MB (24.7%), 1.2 MB/s, ETA 0:00:31
    fetch [worker 2 of 2]: 1,234/~2,500 candidates (49.4%), 41/s, ETA 0:00:31; ok 10, dns_error 889

With several workers each sees only its own share: the line counts this worker's work against ``total / workers``
(the runner splits work about evenly), so ETA is this worker's. Where the worker count is unknown (Dataflow
autoscaling) the line gives counts and rate only; the job-wide progress is then the counter
``altcorpus.progress/<stage>:<unit>`` (Dataflow shows it live), kept out of the ``altcorpus`` namespace so it never
lands among a stage's recorded counters. ``format_summary`` is the end-of-run line that keeps the funnel's numbers
apart from rule hits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.metrics import Metrics

log = logging.getLogger("altcorpus")

#: Seconds between two progress lines of one worker.
LOG_EVERY_S = 10.0
#: Overrides ``LOG_EVERY_S`` (in worker processes too, which inherit the environment).
INTERVAL_ENV = "ALTCORPUS_PROGRESS_EVERY_S"
#: Namespace of the live progress counters; not ``altcorpus``, so ``_SUCCESS`` never records them.
PROGRESS_NAMESPACE = "altcorpus.progress"
#: Units counted in bytes and shown in MB.
BYTE_UNITS = {"bytes"}


def parquet_rows(paths: Sequence[str]) -> int | None:
    """Rows in these Parquet files, from their footers only (no data read); ``None`` when one cannot be read."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    total = 0
    try:
        for path in paths:
            with FileSystems.open(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    except Exception as error:  # progress is a convenience: a total we cannot read is an unknown total
        log.debug("progress: no row count for %s: %s", paths, error)
        return None
    return total


def worker_count(options: Any) -> int | None:
    """How many workers share a stage's work under these Beam options; ``None`` when the runner decides."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions, WorkerOptions

    runner = (options.view_as(StandardOptions).runner or "").lower()
    if runner in {"", "directrunner", "direct", "fnapirunner"}:
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode in {"multi_processing", "multi_threading"}:
            return direct.direct_num_workers or os.cpu_count() or 1
        return 1
    workers = options.view_as(WorkerOptions)
    if workers.max_num_workers and workers.max_num_workers != workers.num_workers:
        return None  # autoscaling: the share of one worker is unknown
    return workers.num_workers or None


def format_duration(seconds: float) -> str:
    """``H:MM:SS``, as an ETA reads."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_amount(amount: float, unit: str) -> str:
    """``12,345`` or, for bytes, ``12.3`` (MB)."""
    return f"{amount / 1e6:,.1f}" if unit in BYTE_UNITS else f"{amount:,.0f}"


@dataclass
class _Live:
    """One process's running state for one stage's progress."""

    started: float
    last_log: float
    done: int = 0
    statuses: Counter = field(default_factory=Counter)
    positions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_LIVE: dict[tuple[str, str], _Live] = {}
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class StageProgress:
    """The progress plan of one stage's main DoFn: what is counted, of what total, shared by how many workers.

    Picklable and stateless until ``add``: the running state lives per process (DoFn copies in one worker share
    it), so one line per worker, not per thread.
    """

    stage: str
    unit: str
    total: int | None = None
    workers: int | None = 1
    interval_s: float | None = None

    def _live(self) -> _Live:
        key = (self.stage, self.unit)
        with _LIVE_LOCK:
            live = _LIVE.get(key)
            if live is None:
                now = time.monotonic()
                live = _LIVE[key] = _Live(started=now, last_log=now)
            return live

    def _interval(self) -> float:
        if self.interval_s is not None:
            return self.interval_s
        try:
            return float(os.environ.get(INTERVAL_ENV, LOG_EVERY_S))
        except ValueError:
            return LOG_EVERY_S

    def add(self, amount: int = 1, status: str | None = None) -> None:
        """Count ``amount`` units done (and one result of ``status``); log when the interval has passed.

        Call it on the DoFn's own thread: the Beam counter needs that thread's metrics context.
        """
        if amount:
            Metrics.counter(PROGRESS_NAMESPACE, f"{self.stage}:{self.unit}").inc(amount)
        live = self._live()
        with live.lock:
            live.done += amount
            if status is not None:
                live.statuses[status] += 1
            now = time.monotonic()
            if now - live.last_log < self._interval():
                return
            live.last_log = now
            line = self.line(live.done, now - live.started, live.statuses)
        log.info("%s", line)

    def at_position(self, key: str, position: int) -> None:
        """Count progress as a position within ``key`` (bytes read of one file): adds what was read since last call."""
        live = self._live()
        with live.lock:
            delta = position - live.positions.get(key, 0)
            live.positions[key] = position
        if delta > 0:
            self.add(delta)

    def flush(self) -> None:
        """Log this worker's line now (at the end of a bundle, say), whatever the interval."""
        live = self._live()
        with live.lock:
            live.last_log = now = time.monotonic()
            line = self.line(live.done, now - live.started, live.statuses)
        log.info("%s", line)

    def line(self, done: int, seconds: float, statuses: Mapping[str, int] | None = None) -> str:
        """The progress line for ``done`` units after ``seconds``: counts, rate, ETA, statuses by count."""
        unit = "MB" if self.unit in BYTE_UNITS else self.unit
        share = None
        if self.total is not None and self.workers:
            share = self.total / self.workers
        who = self.stage if self.workers == 1 else f"{self.stage} [worker pid {os.getpid()}]"
        rate = done / seconds if seconds > 0 else 0.0
        if share is not None:
            approx = "~" if self.workers != 1 else ""
            text = f"{who}: {format_amount(done, self.unit)}/{approx}{format_amount(share, self.unit)} {unit}"
            # A worker's share is an estimate: one that gets more than its share reads 100%, not 120%.
            text += f" ({min(100.0, 100 * done / share):.1f}%)" if share else " (100.0%)"
        else:
            text = f"{who}: {format_amount(done, self.unit)} {unit}"
            if self.total is not None:
                text += f" (of {format_amount(self.total, self.unit)} across all workers)"
        text += f", {format_amount(rate, self.unit)}{' MB' if self.unit in BYTE_UNITS else ''}/s"
        if share is not None and self.workers != 1 and done >= share and self.total is not None:
            # Past its share the work is uneven (one hot host's URLs on one worker): no ETA, but what bounds it.
            left = max(0, self.total - done)
            text += f", ETA unknown: past this worker's share, at most {format_amount(left, self.unit)} {unit} left"
        elif share is not None:
            remaining = max(0.0, share - done)
            text += f", ETA {format_duration(remaining / rate)}" if rate > 0 else ", ETA unknown"
        if statuses:
            ordered = sorted(statuses.items(), key=lambda item: (-item[1], item[0]))
            text += "; " + ", ".join(f"{name} {count:,}" for name, count in ordered)
        return text


def reset() -> None:
    """Forget every running state of this process (a new stage run in the same process starts from zero)."""
    with _LIVE_LOCK:
        _LIVE.clear()


#: Stages whose reason counters count every failing rule (``Decisions``), not only the recorded (first) reason.
RULE_HIT_STAGES = ("filter-text", "filter-image")
#: The counters that are the funnel's own numbers, listed first.
FUNNEL_COUNTERS = ("candidates", "kept", "dropped")


def format_summary(stage: str, seconds: float, counters: Mapping[str, int]) -> str:
    """The end-of-run line: the funnel's counters first, then the filter stages' rule hits under their own heading.

    A filter stage counts every failing rule (``<reason>``) but rejects a row for its first failing rule only, so
    its reason counters add up to more than ``dropped``; printed in one list they read as rejections that do not
    match the funnel. The counters themselves (and ``_SUCCESS``) keep their names; only this line groups them.
    """
    from pipeline.core.reasons import STAGE_REASONS

    reasons = STAGE_REASONS.get(stage) if stage in RULE_HIT_STAGES else None
    hit_names = set(reasons._value2member_map_) if reasons is not None else set()
    main = [f"{name}={counters[name]:,}" for name in FUNNEL_COUNTERS if name in counters]
    rest = [
        f"{name}={value:,}" for name, value in counters.items() if name not in hit_names and name not in FUNNEL_COUNTERS
    ]
    hits = [f"{name}={value:,}" for name, value in counters.items() if name in hit_names]
    text = f"{stage}: done in {seconds:.1f} s: " + (", ".join(main + rest) or "no counters")
    if hits:
        text += "; rule hits (a row failing several rules counts in each; dropped counts it once): " + ", ".join(hits)
    return text


def with_progress(dofn: Any, progress: StageProgress) -> Any:
    """``dofn`` reporting under ``progress`` (its class holds a totals-free default): one call at build time."""
    dofn.progress = progress
    return dofn


def table_progress(stage: str, unit: str, pattern: str, pipeline: Any) -> StageProgress:
    """The plan of a stage reading the Parquet table at ``pattern``: its row count (from footers) is the total."""
    from pipeline.core.layout import list_matching

    return StageProgress(stage, unit, parquet_rows(list_matching(pattern)), worker_count(pipeline.options))


def file_progress(stage: str, patterns: Sequence[str], pipeline: Any) -> StageProgress:
    """The plan of a stage reading whole files: the matched files' total size in bytes is the total.

    A plain path is sized with one metadata call (``match_pattern``: one HEAD on ``s3://``), a glob by its listing.
    A pattern matching nothing (a file gone, a refusal) leaves the total unknown: that only costs the percentage and
    ETA.
    """
    from pipeline.core.layout import match_pattern

    matched = [match_pattern(pattern) for pattern in patterns]
    sizes = {item.path: item.size_in_bytes for items in matched for item in items}
    total = sum(sizes.values()) if all(matched) else None
    return StageProgress(stage, "bytes", total, worker_count(pipeline.options))
