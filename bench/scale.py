"""Benchmark: how the whole pipeline's cost grows with the crawl, on simulated crawls 10x apart.

For each size (``--sizes 100MB 1GB``; the quick pair ``--sizes 10MB 100MB``) a Common-Crawl-shaped mirror is generated
by ``pipeline.crawl.simulate`` (WARC bytes in all; one file per ``--file-size``; cached under build/bench/scale/ by
size and seed), served from loopback (the mirror on 127.0.0.1, the images from many ``*.sim.test`` hosts on
127.0.0.2..N), and ``python -m pipeline build-corpus --crawl ... --cc-base-url ...`` runs on it in a subprocess with
``--direct_running_mode=multi_processing --direct_num_workers=N``: every stage, images fetched over HTTP.

Measured from outside, per stage (a stage runs from its ``<stage>: starting`` log line to its ``done in`` line):

- wall seconds;
- CPU core-seconds of the job's process tree (the driver and its Beam worker processes, user + system; live processes
  sampled, finished ones through the driver's reaped-children times), and per million candidates extracted;
- peak RSS of the largest Beam worker process and of the driver (sampled every ``--sample-s``).

Then the 10x/1x ratios: whole-pipeline wall (goal <= 11x), and peak worker RSS (goal within 20%). The simulator's
servers run in this process and their CPU is not counted (they stand for the web). Stages that keep no state per
candidate should scale linearly; fixed costs (Beam start-up, worker processes, graph construction: seconds per stage)
make the small size look expensive per candidate, so the ratio at small sizes is below 10x.

The simulated alt texts are made distinct for 80% of the descriptive ones (``--alt-variety 0.8``): with the pools'
texts alone, filter-text's max_images_per_alt drops every candidate from about 100 MB on (measured: 0 samples).

Measured (2 Dec 2026, the 2-core development box shared with other jobs, load average 3-4.4; 2 workers; the quick
pair, since 1 GB did not fit in the time left; wall and CPU s, per million candidates, peak RSS of the largest worker):

    10 MB  (1 file, 6,463 candidates -> 2,918 samples):  113.5 s wall, 112.4 CPU s
      extract 13.4 s / 2,038 CPU s per M / 278 MB, filter-text 14.6 / 2,095 / 359, fetch 27.9 / 4,476 / 580,
      filter-image 25.0 / 3,842 / 772, write-shards 21.7 / 3,534 / 1,568 (driver 2,065 MB)
    100 MB (10 files, 67,877 candidates -> 17,504 samples, 19,332 URLs fetched): 337.0 s wall, 352.0 CPU s
      extract 17.5 s / 292 / 316 MB, filter-text 19.7 / 289 / 584, fetch 134.1 / 2,138 / 1,026,
      filter-image 80.1 / 1,240 / 2,568 (driver 6,192 MB), write-shards 79.1 / 1,148 / 4,022 (driver 6,901 MB)
    100 MB vs 10 MB: wall 2.97x, CPU 3.13x for 10x the data (goal <= 11x: met; the 10 MB run is mostly fixed cost);
      peak worker RSS 1,568 -> 4,022 MB = 2.56x (goal within 20%: missed; the driver too, 2.1 -> 6.9 GB: image
      bytes pass through the DirectRunner's in-process shuffles in filter-image and write-shards).

Fetch costs most per candidate at both sizes (2,138 CPU s per million at 100 MB: decode, resize, re-encode). At
100 MB the funnel did not balance: write-shards wrote 17,504 of filter-image's 18,008 samples (shards of 9,714 and
7,790 where 10,000 and 8,008 were planned) and recorded no reason for the other 504; a 10 MB run (one shard) balances.

Measured again (2 Dec 2026, later; at d4a2b26: the local runner's data-plane fix, no image bytes in any shuffle of
filter-image, write-shards' file shuffle; the simulator of this tree, which gives about 4x the candidates per MB of
the figures above; load average 1-3.5):

    10 MB  (26,913 candidates -> 8,244 samples): 119.5 s wall, 128.6 CPU s, largest process 1,103 MB
    100 MB (270,842 candidates, 73,205 URLs fetched -> 51,913 samples): 519.5 s wall, 660.6 CPU s, largest 1,873 MB
      extract 23.2 CPU s / 86 per M / 402 MB, filter-text 29.4 / 109 / 972, fetch 462.9 / 1,709 / 1,192,
      filter-image 90.5 / 334 / 1,882 (driver 1,507), write-shards 49.9 / 184 / 1,424 (driver 1,251)
    100 MB vs 10 MB: wall 4.35x, CPU 5.14x for 10x the data (goal <= 11x: met); peak worker RSS 1,049 -> 1,882 MB =
      1.79x (goal within 20%: missed, but at 3x the candidates of the earlier 100 MB run the largest process is
      1.9 GB where it was 6.8 GB, and the funnel balances).

The earlier 100 MB run of this simulator (before filter-image stopped shuffling image bytes) was killed by the OOM
killer in filter-image, its two workers at 7.5 and 7.0 GB. Fetch costs most per candidate at both sizes.

1 GB attempted (2 Dec 2026, at 9f49f5f: the local runner's bounded bundle input; ``--sizes 100MB 1GB``, 2 workers,
load average 2-21 with other jobs). The 100 MB point of that run: 452.0 s wall (extract 19.1 s, filter-text 21.8,
fetch 328.4, filter-image 45.0, write-shards 31.3); its CPU and RSS figures were lost when the run was stopped.
1 GB: 100 files, 1,446,244 records, 2,700,885 candidates (9.97x), 925,137 text-kept, 711,971 image URLs on 100
image hosts. Extract 117.4 s wall (6.1x the 100 MB run's), filter-text 132.2 s (6.1x). Fetch was stopped after 42
minutes with 49 of its 50 non-empty parts done: the last part is one host, img-1.sim.test, with 165,314 URLs (23% of
all: the simulator's Zipf hosts), which per-host politeness (4 concurrent requests, one worker at a time per host)
confines to one worker; it had written 2.17 GB of about 7.6 GB. It was stopped because the corpus would not fit the
disk: fetch stores 1.5x the bytes it downloads (re-encoded JPEG q95, 512 px side: 3.35 GB stored for 2.18 GB
fetched at 100 MB) and writes them twice (the parts, then images/ rewritten from them), about 33 GB each at 1 GB,
with 33 GB free. Read off the live processes before stopping: driver peak RSS 4.2 GB (extract, filter-text and
fetch), fetch workers 1,356 and 981 MB peak (1,192 MB in the 100 MB run above: 1.14x), fetch workers 2,535 CPU s for
49 parts. So at 1 GB: extract and filter-text scale sublinearly in time; fetch's time is its hottest host's URLs over
that host's politeness budget (linear in the host's share, not in workers); a worker's memory stays near 1 GB; the
driver, which holds every shuffle's input on the local runner, grows (4.2 GB). Since then fetch links its parts'
files as images/ instead of rewriting them (4d1340c; 100 MB: fetch 108.9 -> 99.8 CPU s, its worker 972 -> 549 MB),
so a 1 GB run stores its images once: about 33 GB for images/, then samples/ and shards/ on top.

Measured again on the quick pair (2 Dec 2026, at 6ed75dc: fetch's counted URLs, the bounded bundle input, Arrow
coders; the simulator in /work/main, which reads ../shared/data's real pages: a checkout without ../shared beside it
falls back to smaller synthetic pages, about 4x the candidates per MB, as in the 1 GB attempt; load average 0.6-3.5):

    10 MB  (6,463 candidates -> 2,918 samples):  51.1 s wall, 67.6 CPU s, largest process 709 MB
    100 MB (67,880 candidates, 19,333 URLs -> 18,010 samples): 144.2 s wall, 189.2 CPU s, largest process 1,489 MB
      extract 14.3 CPU s / 211 per M / 307 MB, filter-text 13.7 / 202 / 574, fetch 108.9 / 1,604 / 972,
      filter-image 28.5 / 420 / 1,428 (driver 890), write-shards 20.0 / 294 / 1,221 (driver 854)
    100 MB vs 10 MB: wall 2.82x, CPU 2.80x (goal <= 11x: met); peak worker RSS 719 -> 1,428 MB = 1.99x (goal within
      20%: missed). On this same crawl the first run above had filter-image's workers at 2,568 MB and write-shards'
      at 4,022 (driver 6.9 GB); whole job 337 s wall then, 144 s now.

What the 10 MB -> 100 MB worker growth is: buffers filling to their caps, not rows held. filter-image's workers read
images/ a row group (56-72 MB of JPEGs) at a time and write samples/ in 64 MB row groups; at 10 MB the one images/
file is smaller than one row group. Run alone on the 100 MB corpus's inputs with one worker instead of two (twice
the rows per worker), its worker peaked at 1,442 MB against 1,268 MB: +14% for 2x the rows; and 1,085 MB with
``ARROW_DEFAULT_MEMORY_POOL=system MALLOC_ARENA_MAX=2`` (allocator retention). At 1 GB (above) the fetch workers
were 1.14x the 100 MB run's.

The 1 GB point, end to end (2 Dec 2026, afternoon; the real-page simulator of /work/main, 2 workers; load average
1-3 for the final run). At 46f6ec5 (a hot host's images processed outside its request slots):

    100 MB (67,877 candidates -> 18,008 samples):    108.4 s wall, 118.2 CPU s; largest worker 1,264 MB, driver 785
    1 GB   (682,408 candidates -> 104,905 samples):  838.3 s wall, 767.7 CPU s; largest worker 1,760 MB, driver 2,363
      extract 15.0 s, filter-text 21.8, fetch 629.7 (181,195 URLs; 4.85 GB downloaded, 7.46 GB stored),
      filter-image 100.9, write-shards 67.5
    2 GB   (1,364,003 candidates -> 168,174 samples): 1,644.5 s wall, 1,594.2 CPU s; workers: extract 472 MB,
      filter-text 1,633, fetch 767, filter-image 2,133, write-shards 1,448; driver 3,054 MB. Fetch 1,371.8 s, its
      tail the hottest host alone (23% of the URLs, 4 requests in flight; its worker at 58% CPU: politeness-bound)

Worker peaks still grew from 1 GB to 2 GB, so not only buffers reaching their caps. Found on the 2 GB inputs, each
stage run alone: the allocators kept what finished bundles freed (filter-text's worker 1,416 MB as Beam starts it,
997 MB with ``MALLOC_ARENA_MAX=2`` and Arrow's system pool, now the local runner's default; filter-image 1,774 ->
1,453 MB), and filter-text's partitions grew with the crawl up to 4M candidates (now 65,536 per partition: 1 GB ->
2 GB 799 -> 982 MB). At c4d61d2 (those, the encoded shuffle buffer, typed Arrow tables):

    100 MB: 118.0 s wall, 150.6 CPU s; largest worker 896 MB (filter-image), largest process 932 MB
      extract 5.5 s / 124 CPU s per M / 269 MB, filter-text 6.2 / 139 / 415, fetch 77.1 / 1,308 / 471,
      filter-image 14.7 / 330 / 896, write-shards 12.1 / 278 / 885
    1 GB:   844.0 s wall, 1,003.2 CPU s; largest worker 1,360 MB (filter-image), largest process 1,372 MB
      extract 16.3 / 43 / 391, filter-text 18.6 / 44 / 832, fetch 677.3 / 1,074 / 634 (driver 642),
      filter-image 85.8 / 193 / 1,360 (driver 1,243), write-shards 42.2 / 108 / 1,018
    1 GB vs 100 MB: wall 7.15x (goal <= 11x: met), CPU 6.66x; largest worker 896 -> 1,360 MB = 1.52x (goal within
      20%: missed; both sizes lower than before: 1,264 and 1,760 MB); largest process at 1 GB 2,356 -> 1,372 MB

Then (2 Dec 2026, evening, at f324710: row groups of 16 MB and byte-bounded row batches, filter-text's 16,384
candidates per partition, filter-image's bytes attached per images/ row group; load average 2-3.4):

    100 MB: 109.5 s wall, 125.8 CPU s; largest worker 943 MB (write-shards), largest process 941-943 MB
      extract 5.2 s / 116 CPU s per M / 268 MB, filter-text 5.8 / 127 / 420, fetch 71.6 / 1,059 / 459,
      filter-image 13.1 / 264 / 646, write-shards 11.2 / 249 / 943
    1 GB:   755.2 s wall, 841.1 CPU s; largest worker 998 MB (write-shards), largest process 1,196 MB (driver)
      extract 16.2 / 42 / 299, filter-text 17.4 / 40 / 617 (driver 1,127), fetch 626.1 / 915 / 623,
      filter-image 55.1 / 135 / 949 (driver 1,211), write-shards 37.2 / 94 / 998
    1 GB vs 100 MB: wall 6.90x (goal <= 11x: met), CPU 6.68x; largest worker 943 -> 998 MB = 1.06x (goal within
      20%: met). Per stage the workers still grow 1.47x in filter-text and filter-image and 1.36x in fetch, below
      write-shards' peak, which holds one shard's rows at both sizes (1.06x).

Each change measured alone, the stage run on the 1 GB crawl's inputs (2 workers): filter-image's largest workers
1,305 / 1,180 -> 906 / 845 MB (CPU 102.7 -> 94.2 s) with samples grouped by images/ row group (the hot host's part
file held 23% of the samples as one group) and samples/ written in 16 MB row groups of 16-row batches;
filter-text's 825 -> 724 MB with 16 MB candidates/ row groups (142k rows at 64 MB, where a 100 MB crawl's were
34k), then 759 -> 611 MB with 16,384 candidates per partition (65,536 gave 11 partitions of 62k rows at 1 GB, the
floor of 8 partitions of 8.5k rows at 100 MB). What remains of the per-stage growth is mostly the allocator keeping
freed memory: filter-image alone with ``MALLOC_MMAP_THRESHOLD_=1048576`` (a fixed mmap threshold: large buffers
go back to the system when freed) peaked at 692 / 652 MB instead of 871 / 859, for 29% more CPU (123.3 s against
95.7), so it is an operator's choice (the local runner passes such variables to its workers), not a default.

Last (2 Dec 2026, at 80785b8: write-shards streams a shard's images from sorted spill files; load average 1.1-3.3):

    100 MB: 104.7 s wall, 123.6 CPU s; largest worker 669 MB (filter-image), largest process 696 MB
      extract 4.6 s / 103 CPU s per M / 270 MB, filter-text 5.2 / 115 / 402, fetch 70.7 / 1,049 / 495,
      filter-image 12.1 / 270 / 669, write-shards 10.0 / 246 / 543
    1 GB:   751.8 s wall, 803.3 CPU s; largest worker 925 MB (filter-image), largest process 1,343 MB (its driver)
      extract 15.2 / 40 / 299, filter-text 16.7 / 41 / 584 (driver 1,088), fetch 625.2 / 866 / 605,
      filter-image 51.6 / 126 / 925 (driver 1,343), write-shards 39.6 / 99 / 614
    1 GB vs 100 MB: wall 7.18x (goal <= 11x: met), CPU 6.50x; largest worker 669 -> 925 MB = 1.38x (goal within
      20%: missed). write-shards' 943 MB peak had hidden the others' growth: per stage extract 1.11x, filter-text
      1.45x, fetch 1.22x, filter-image 1.38x, write-shards 1.13x. Against the start of the day's 1 GB run (at
      f1abeca: largest worker 1,392 MB, write-shards 1,015, filter-text 799) every stage's peak is lower.

The same code with jemalloc preloaded in every process (``LD_PRELOAD=.../libjemalloc.so.2``, Debian's libjemalloc2
5.3.0): largest worker 622 -> 848 MB = 1.36x (filter-text 460 -> 705, filter-image 622 -> 848), wall 7.29x, but
972.7 CPU s at 1 GB against 803.3 (filter-image 118.0 against 85.7, write-shards 91.6 against 67.3): not a fix.

Then (2 Dec 2026, night, at ddc10e1: local workers flush their data output streams every 1 MB, filter-image's alt
limit as a side input, glibc's mmap/trim thresholds fixed at 4/64 MB; load average 0.9-2.6):

    100 MB: 86.5 s wall, 96.3 CPU s; largest worker 461 MB (filter-image), largest process 520 MB
      extract 3.4 s / 81 CPU s per M / 270 MB, filter-text 3.9 / 88 / 363, fetch 59.5 / 797 / 426,
      filter-image 9.3 / 211 / 461, write-shards 8.7 / 215 / 440
    1 GB:   643.2 s wall, 690.4 CPU s; largest worker 573 MB (write-shards), largest process 1,113 MB (a driver)
      extract 13.5 / 36 / 297, filter-text 15.6 / 37 / 528 (driver 919), fetch 527.8 / 722 / 515,
      filter-image 42.5 / 106 / 571 (driver 1,128), write-shards 40.8 / 105 / 573
    1 GB vs 100 MB: wall 7.44x (goal <= 11x: met), CPU 7.17x; largest worker 461 -> 573 MB = 1.24x (goal within
      20%: missed by 4 points; 669 -> 925 = 1.38x before). Per stage extract 1.10x, filter-text 1.45x, fetch 1.21x,
      filter-image 1.24x, write-shards 1.30x.

What had grown: memray (aggregated, live allocations at each worker's peak) on filter-image alone found 25 data
output stream buffers of Beam's worker, ~16 MB each once a stream passed Beam's 10 MB flush threshold and kept by
the cached bundle processors: 163 MB of the peak at 100 MB, 336 MB at 1 GB; and the join by sha256 handing one
worker the most copied picture's 30,779 rows (124 MB decoded) at 1 GB. With those gone the live peak is 350 -> 410
MB (1.17x) and the rest of the RSS growth is the heap's holes, which the fixed mmap threshold shrank. filter-text's
live peak is ~340 MB at 1 GB against an RSS of 500-560 MB: its growth is the same kind, not found in its code.

Then (3 Dec 2026, at 22dc901: write-shards' images files beside its spill files and a 32 MB spill buffer,
filter-text's 4,096-candidate partitions and per-unit row groups, the local workers' 2 MB input messages and 4 MB
queues, filter-image's images read 32 at a time, fetch's 8 MB row groups and heap trim every 10 s; load average
0.4-2.6):

    100 MB: 87.3 s wall, 91.2 CPU s; largest worker 439 MB (filter-image), largest process 472 MB
      extract 3.5 s / 79 CPU s per M / 297 MB, filter-text 3.6 / 82 / 374, fetch 59.8 / 733 / 387,
      filter-image 10.1 / 223 / 439, write-shards 8.3 / 193 / 391
    1 GB:   736.3 s wall, 716.2 CPU s; largest worker 500 MB (filter-image), largest process 1,209 MB (a driver)
      extract 16.1 / 36 / 324, filter-text 18.7 / 43 / 464 (driver 1,011), fetch 590.8 / 698 / 472,
      filter-image 58.8 / 147 / 500 (driver 1,238), write-shards 44.0 / 112 / 435
    1 GB vs 100 MB: wall 8.43x (goal <= 11x: met), CPU 7.86x; largest worker 439 -> 500 MB = 1.14x (goal within
      20%: met). Per stage extract 1.09x, filter-text 1.24x, fetch 1.22x, filter-image 1.14x, write-shards 1.11x.

The bench before those changes, the same morning (at 8b10835): 100 MB largest worker 529 MB, 1 GB 635 MB
(write-shards) = 1.20x; filter-text 1.43x, fetch 1.23x, filter-image 1.13x, write-shards 1.33x. Each stage run alone
on the 1 GB crawl's inputs (2 workers), largest worker before -> after: write-shards 587 -> 432 MB (100 MB crawl:
459 -> 374), filter-text 523 -> 440-448 (375 -> 354-372), filter-image 609 -> 506-518 (500 -> 463), fetch 499 ->
435. What had grown was in each case a bound a 1 GB crawl reached and a 100 MB crawl did not: write-shards' 128 MB
spill buffer (11 shards open against 2) and a row group held per spill file; filter-text's 16 MB gathering of its
outputs across read units and its floor of 8 partitions; 8 MB input messages; a row group's whole image column
decoded at once; fetch's 32 MB row groups (held three times while written) and the heap's holes, which grew with
the minutes fetch ran (407 -> 495 MB over 400 s, its live allocations near 220 MB). filter-image's and
write-shards' CPU at 1 GB varies between runs on this box by a third (72.9 / 100.6 s, 56.5 / 76.6 s in the two
runs of the day at nearly the same code; write-shards alone 90.8-103.4 s with either message size): I/O-bound
steps on a shared disk.

Fetch costs most per candidate at every size. Its CPU varies between runs of one commit (46f6ec5 at 100 MB: 62.8 and
77.5 CPU s; c4d61d2: 87.6-90.8 over three runs, whichever allocator settings): fetch's 32 threads and the
simulator's servers share the two cores.

Usage: ``python bench/scale.py [--sizes 100MB 1GB] [--workers 2] [--file-size 10MB] [--keep]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.registry import ALL_STAGE_SPECS  # noqa: E402
from pipeline.crawl.simulate import (  # noqa: E402
    MIRROR_ADDRESS,
    SimSpec,
    SimulatedCrawl,
    free_port,
    generate,
    host_addresses,
    parse_size,
)

WORK = ROOT / "build" / "bench" / "scale"
STAGES = [spec.name for spec in ALL_STAGE_SPECS]
_START = re.compile(r"altcorpus: (?P<stage>[\w-]+): starting \(")
_DONE = re.compile(r"altcorpus: (?P<stage>[\w-]+): done in ")


@dataclasses.dataclass
class StageFigures:
    """What one stage cost: wall, CPU of the process tree, and peak RSS (MB) of the largest worker and the driver."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    worker_rss_mb: float = 0.0
    driver_rss_mb: float = 0.0
    workers: int = 0


class TreeMonitor:
    """Samples a process tree: its CPU seconds so far (live processes plus reaped children) and each process's RSS,
    attributing RSS peaks to the stage running, which the job's log lines set (``mark``)."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.lock = threading.Lock()
        self.stage: str | None = None
        self.figures: dict[str, StageFigures] = {}
        self.started_at: dict[str, tuple[float, float]] = {}
        self.worker_pids: dict[str, set[int]] = {}
        self.last_cpu: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def cpu_s(self) -> float:
        """CPU seconds of the whole tree up to now: the driver's own and reaped children's, plus live descendants'."""
        total = 0.0
        try:
            times = self.root.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            children = self.root.children(recursive=True)
        except psutil.Error:
            return sum(self.last_cpu.values())
        for child in children:
            try:
                times = child.cpu_times()
                self.last_cpu[child.pid] = times.user + times.system
            except psutil.Error:
                continue  # gone between listing and reading: its time is in the driver's children times once reaped
            total += self.last_cpu[child.pid]
        return total

    def mark(self, stage: str, event: str) -> None:
        """A stage started or finished (from the job's log): close or open its figures."""
        with self.lock:
            now, cpu = time.monotonic(), self.cpu_s()
            if event == "start":
                self.stage = stage
                self.started_at[stage] = (now, cpu)
                self.figures.setdefault(stage, StageFigures())
                self.worker_pids[stage] = set()
            elif stage in self.started_at:
                began, began_cpu = self.started_at[stage]
                figures = self.figures[stage]
                figures.wall_s, figures.cpu_s = now - began, cpu - began_cpu
                figures.workers = len(self.worker_pids[stage])
                self.stage = None

    def _sample(self) -> None:
        with self.lock:
            stage = self.stage
            if stage is None:
                return
            figures = self.figures[stage]
            try:
                figures.driver_rss_mb = max(figures.driver_rss_mb, self.root.memory_info().rss / 1e6)
                children = self.root.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                try:
                    rss = child.memory_info().rss / 1e6
                except psutil.Error:
                    continue
                self.worker_pids[stage].add(child.pid)
                figures.worker_rss_mb = max(figures.worker_rss_mb, rss)

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval_s):  # bounded by stop()
            self._sample()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


def mirror_for(size: str, file_size: str, seed: int, alt_variety: float) -> tuple[Path, dict[str, Any], float]:
    """The simulated crawl of ``size`` (generated, or reused when an earlier run left it and its port is free);
    its plan, and the CPU seconds generating it took (0 when reused)."""
    total, per_file = parse_size(size), parse_size(file_size)
    root = WORK / f"mirror-{size}-seed{seed}"
    spec = SimSpec(
        size_bytes=total,
        files=max(1, round(total / per_file)),
        segments=max(1, min(10, round(total / per_file) // 5)),
        page_hosts=300,
        image_hosts=100,
        addresses=24,
        seed=seed,
        alt_variety=alt_variety,
    )
    addresses = sorted({MIRROR_ADDRESS, *host_addresses(spec).values()})
    plan_path = root / "simulation.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        if plan.get("bench_spec") == dataclasses.asdict(spec) and _port_free(addresses, int(plan["port"])):
            return root, plan, 0.0
        shutil.rmtree(root)
    started = time.process_time()
    generate(root, dataclasses.replace(spec, port=free_port(addresses)))
    plan = json.loads(plan_path.read_text())
    plan["bench_spec"] = dataclasses.asdict(spec)
    plan_path.write_text(json.dumps(plan, sort_keys=True))
    return root, plan, time.process_time() - started


def _port_free(addresses: list[str], port: int) -> bool:
    import socket

    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def run_size(size: str, args: argparse.Namespace) -> dict[str, Any]:
    """Generate (or reuse) the crawl of ``size``, run build-corpus on it, and return its figures."""
    mirror, plan, generate_cpu_s = mirror_for(size, args.file_size, args.seed, args.alt_variety)
    output = WORK / f"corpus-{size}"
    shutil.rmtree(output, ignore_errors=True)
    log_path = WORK / f"build-{size}.log"
    with SimulatedCrawl(mirror) as sim:
        command = [
            sys.executable, "-m", "pipeline", "build-corpus", "--crawl", plan["crawl_id"],
            "--cc-base-url", sim.base_url, "--output", str(output), "--allowed-addresses", "127.0.0.0/8",
            "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}",
            *args.extra,
        ]  # fmt: skip
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        with open(log_path, "w", buffering=1) as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **sim.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            monitor = TreeMonitor(process.pid, args.sample_s)
            monitor.start()
            assert process.stdout is not None
            for line in process.stdout:  # ends when the job exits
                log.write(line)
                if match := _START.search(line):
                    monitor.mark(match.group("stage"), "start")
                elif match := _DONE.search(line):
                    monitor.mark(match.group("stage"), "done")
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            monitor.stop()
        wall = time.monotonic() - started
    done = all(_success(output, stage) for stage in monitor.figures)
    if process.returncode != 0 and not (done and "THE BOOKS DO NOT BALANCE" in log_path.read_text()):
        raise SystemExit(f"build-corpus on {size} failed ({process.returncode}); see {log_path}")
    candidates = _success(output, "extract")["counters"].get("candidates", 0)
    text_kept = _success(output, "filter-text")["counters"].get("kept", 0)
    urls = _success(output, "fetch")["counters"].get("urls", 0)
    samples = json.loads((output / "manifest.json").read_text()).get("sample_count")
    result = {
        "size": size,
        "warc_mb": plan["warc_bytes"] / 1e6,
        "files": len(plan["warc_files"]),
        "pages": plan["pages"],
        "image_urls": plan["image_urls"],
        "candidates": candidates,
        "text_kept": text_kept,
        "urls_fetched": urls,
        "samples": samples,
        "generate_cpu_s": generate_cpu_s,
        "balanced": process.returncode == 0,  # every stage ran; a non-zero exit is then the funnel's balance check
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # 1-minute, before and after the job
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # the whole tree, exact (wait4 counts reaped descendants)
        "max_rss_mb": usage.ru_maxrss / 1e3,  # the largest single process of the tree (driver or worker), exact
        "stages": {stage: dataclasses.asdict(figures) for stage, figures in monitor.figures.items()},
        "success_s": {stage: _success(output, stage).get("seconds") for stage in monitor.figures},
    }
    if not args.keep and process.returncode == 0:
        shutil.rmtree(output, ignore_errors=True)
    return result


def _success(output: Path, stage: str) -> dict[str, Any]:
    from pipeline.core.layout import CorpusLayout

    layout = CorpusLayout(str(output))
    return layout.read_success(stage) if layout.is_done(stage) else {}


def report(results: list[dict[str, Any]]) -> None:
    """Print each size's per-stage table, then the ratios between the first and last size."""
    for result in results:
        per_million = 1e6 / max(1, result["candidates"])
        load = result.get("load_average", ["?", "?"])
        print(
            f"\n== {result['size']}: {result['warc_mb']:.1f} MB WARC in {result['files']} files, {result['pages']:,} "
            f"pages, {result['image_urls']:,} image URLs, {result['candidates']:,} candidates -> "
            f"{result.get('text_kept', 0):,} text-kept, {result.get('urls_fetched', 0):,} URLs fetched -> "
            f"{result['samples']:,} samples; whole job {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} CPU s, "
            f"largest process {result['max_rss_mb']:.0f} MB (generating the crawl: "
            f"{result['generate_cpu_s']:.0f} CPU s; "
            f"load average {load[0]} before, {load[1]} after)"
        )
        print(f"{'stage':<14}{'wall s':>9}{'CPU s':>9}{'CPU s/M cand':>14}{'worker RSS MB':>15}{'driver RSS MB':>15}")
        for stage in STAGES:
            figures = result["stages"].get(stage)
            if figures is None:
                continue
            print(
                f"{stage:<14}{figures['wall_s']:>9.1f}{figures['cpu_s']:>9.1f}{figures['cpu_s'] * per_million:>14.0f}"
                f"{figures['worker_rss_mb']:>15.0f}{figures['driver_rss_mb']:>15.0f}"
            )
        staged_wall = sum(figures["wall_s"] for figures in result["stages"].values())
        staged_cpu = sum(figures["cpu_s"] for figures in result["stages"].values())
        other_cpu = result["cpu_s"] - staged_cpu
        print(  # the driver between stages: start-up, fingerprints, listing the crawl, the funnel at the end
            f"{'(between)':<14}{result['wall_s'] - staged_wall:>9.1f}{other_cpu:>9.1f}{other_cpu * per_million:>14.0f}"
        )
        if not result.get("balanced", True):
            print("WARNING: the funnel does not balance (candidates placed nowhere): see the job's log")
        if not result["samples"]:
            print("WARNING: no samples: the later stages ran on nothing; their figures say nothing of their cost")
        costly = max(result["stages"].items(), key=lambda item: item[1]["cpu_s"])
        print(f"most CPU per candidate: {costly[0]} ({costly[1]['cpu_s'] * per_million:,.0f} CPU s per M candidates)")
    if len(results) < 2:
        return
    small, large = results[0], results[-1]
    data = large["warc_mb"] / small["warc_mb"]
    time_ratio = large["wall_s"] / small["wall_s"]
    cpu_ratio = large["cpu_s"] / small["cpu_s"]
    worker = [max(figures["worker_rss_mb"] for figures in result["stages"].values()) for result in (small, large)]
    rss_ratio = worker[1] / worker[0]
    print(
        f"\n== {large['size']} vs {small['size']}: {data:.1f}x the data, "
        f"{large['candidates'] / small['candidates']:.1f}x the candidates"
    )
    print(
        f"whole-pipeline wall {time_ratio:.2f}x (goal <= 1.1x the data ratio): "
        f"{'met' if time_ratio <= 1.1 * data else 'MISSED'}"
    )
    print(f"whole-pipeline CPU {cpu_ratio:.2f}x")
    print(
        f"peak worker RSS {worker[0]:.0f} -> {worker[1]:.0f} MB = {rss_ratio:.2f}x (goal within 20%): "
        f"{'met' if abs(rss_ratio - 1) <= 0.2 else 'MISSED'}"
    )
    for stage in STAGES:
        if stage in small["stages"] and stage in large["stages"]:
            a, b = small["stages"][stage], large["stages"][stage]
            print(
                f"  {stage:<14} wall {b['wall_s'] / max(a['wall_s'], 1e-9):5.2f}x  "
                f"CPU {b['cpu_s'] / max(a['cpu_s'], 1e-9):5.2f}x  "
                f"worker RSS {b['worker_rss_mb'] / max(a['worker_rss_mb'], 1e-9):4.2f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["100MB", "1GB"], help="WARC bytes of each crawl (10x apart)")
    parser.add_argument("--workers", type=int, default=2, help="Beam worker processes (multi_processing)")
    parser.add_argument("--file-size", default="10MB", help="WARC bytes per crawl file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alt-variety",
        type=float,
        default=0.8,
        help="Share of the simulator's descriptive alt texts made distinct (with 0 filter-text drops every one from "
        "about 100 MB on: its pools' texts are each on more than 10 images)",
    )
    parser.add_argument("--sample-s", type=float, default=0.25, help="RSS sampling interval")
    parser.add_argument("--keep", action="store_true", help="Keep each corpus under build/bench/scale/")
    parser.add_argument("--json", default=None, help="Also write the figures here")
    parser.add_argument("--report-from", default=None, help="Print the report of an earlier --json file; run nothing")
    parser.add_argument("extra", nargs="*", help="More build-corpus flags, after --")
    args = parser.parse_args(argv)
    if args.report_from:
        report(json.loads(Path(args.report_from).read_text()))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        print(f"{size}: generating or reusing the crawl, then build-corpus ...", flush=True)
        results.append(run_size(size, args))
        print(f"{size}: {results[-1]['wall_s']:.1f} s wall", flush=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
