"""Hot keys at 10^6: one image content at a million URLs (filter-image), one host with a million URLs and one image URL
on a million pages (fetch).

Each workload runs at 10^5 and at 10^6, each size in a fresh subprocess (``python -m tests.pipeline.stages.test_hot_keys N``),
which reports the peak resident memory of each workload (Linux ``VmHWM``, reset before each through
``/proc/self/clear_refs``). A step that held a key's rows would need hundreds of MB more at 10^6 than at 10^5; the
tests allow ``GROWTH_MB``.

- ``combiners``: a real Beam pipeline whose 10^6 rows share one (sha256, alt text) pair, generated inside the pipeline,
  through filter-image's winner (``FirstByIdentity``, a combiner the runner lifts ahead of the shuffle).
- ``joins``: filter-image's streamed join of that pair's rows with its winner (``OneSamplePerContentAlt``) given one
  group of 10^6 rows made on the fly, as a runner hands a DoFn a lazily read ``GroupByKey`` group
  (``TooManyAltsPerContent`` needs no group: it judges each row against a side input of the contents over the limit).
  The same for one image URL on a million pages: filter-image's join of its candidates with its fetched image
  (``JoinCandidatesWithImage``), of the surviving samples with the images/ file holding its bytes (``sample_file``),
  the image (or file's row group) last in each group; then that row group's million rows given their bytes, read
  from a real Parquet file (``AttachImageBytes``).
- ``host_queue``: fetch's ``HostQueue`` given 10^6 URLs of one host, then drained in order.
- ``fetch_url``: one image URL on 10^6 pages (and archived 10^4 times) through fetch's ``UrlsToFetch`` in a real Beam
  pipeline, rows generated inside it (a count and the chosen archived record reach the fetch, by combiners), then
  the rejection of each of its candidates (``reject_candidates``) given one group of 10^6 rows made on the fly, the
  URL's failed status last.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import FetchedImage, Sample, SampleImage

GROWTH_MB = 40
ROOT = Path(__file__).resolve().parents[3]
SHA = "f" * 64


def _peak_kb() -> int:
    match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    assert match, "VmHWM missing from /proc/self/status: these measurements need Linux"
    return int(match.group(1))


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size


def _row(index: int) -> dict[str, Any]:
    """A surviving filter-image row (the columns the content rules read): one content and one alt text at a million
    URLs. Keys are a permutation of the indexes, so the winner (index 0, key 0) is not simply the first row."""
    return {
        Sample.SHA256: SHA,
        Sample.ALT_TEXT: "company logo",
        Sample.KEY: f"{index * 7919 % 1_000_003:024d}",
        Sample.CANDIDATE_ID: f"{index:024d}",
        Sample.IMAGE_URL: f"https://cdn.example.com/logo.png?v={index}",
    }


WINNER = (f"{0:024d}", f"{0:024d}")


def combiners(count: int) -> dict[str, Any]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.stages import filter_image

    chunks = 100
    per_chunk = count // chunks

    def generate(chunk: int) -> Iterator[dict[str, Any]]:
        for index in range(chunk * per_chunk, (chunk + 1) * per_chunk):
            yield _row(index)

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        rows = pipeline | beam.Create(list(range(chunks))) | "Generate" >> beam.FlatMap(generate)
        winners = rows | "ByPair" >> beam.Map(filter_image._by_content_alt) | "Winner" >> filter_image.FirstByIdentity()
        assert_that(winners, equal_to([((SHA, "company logo"), WINNER)]), label="OneWinner")
    return {"rows": count}


class GeneratedGroup:
    """A re-iterable group of values made on the fly (a runner's lazily read GroupByKey values), tagged last."""

    def __init__(self, count: int, make: Callable[[int], Any], last: Any) -> None:
        self.count, self.make, self.last = count, make, last

    def __iter__(self) -> Iterator[Any]:
        for index in range(self.count):
            yield self.make(index)
        yield self.last


def _image_file(folder: str, url: str, image_bytes: bytes) -> str:
    """An images/ file of three row groups, the URL's ok image in the last (after a failed fetch of it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        FetchedImage.project({FetchedImage.IMAGE_URL: "https://cdn.example.com/other.png", FetchedImage.STATUS: "ok"}),
        FetchedImage.project({FetchedImage.IMAGE_URL: url, FetchedImage.STATUS: "http_404"}),
        FetchedImage.project({FetchedImage.IMAGE_URL: url, FetchedImage.STATUS: "ok", FetchedImage.IMAGE: image_bytes}),
    ]
    path = str(Path(folder) / "part-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=FetchedImage.schema()), path, row_group_size=1)
    return path


def joins(count: int) -> dict[str, Any]:
    import apache_beam as beam

    from pipeline.stages import filter_image

    def tally(outputs: Iterator[Any]) -> dict[str, int]:
        kept = rejected = 0
        for output in outputs:
            if isinstance(output, beam.pvalue.TaggedOutput):
                rejected += 1
            else:
                kept += 1
        return {"kept": kept, "rejected": rejected}

    def tagged_row(index: int) -> tuple[int, dict[str, Any]]:
        return filter_image._ROW, _row(index)

    one_per_alt = filter_image.OneSamplePerContentAlt()
    one_per_alt.setup()
    pair = (SHA, "company logo")
    judged = tally(one_per_alt.process((pair, GeneratedGroup(count, tagged_row, (filter_image._WINNER, WINNER)))))

    # One image URL on a million pages: its candidates joined with its image, then its samples with its bytes.
    url = "https://cdn.example.com/logo.png"
    image = dict(
        FetchedImage.project({}),
        **{
            FetchedImage.IMAGE_URL: url,
            FetchedImage.STATUS: filter_image.OK,
            FetchedImage.SHA256: SHA,
            FetchedImage.ORIGINAL_WIDTH: 400,
            FetchedImage.ORIGINAL_HEIGHT: 300,
        },
    )

    def tagged_candidate(index: int) -> tuple[int, dict[str, Any]]:
        return filter_image._CANDIDATE, dict(_row(index), **{Sample.IMAGE_URL: url})

    with_image = filter_image.JoinCandidatesWithImage()
    with_image.setup()
    joined = tally(with_image.process((url, GeneratedGroup(count, tagged_candidate, (filter_image._IMAGE, image)))))
    # The bytes join: the samples meet their images/ file by URL, then the file's bytes by path (no bytes shuffled).
    image_bytes = b"\xff\xd8" + bytes(1000)
    with tempfile.TemporaryDirectory() as folder:
        path = _image_file(folder, url, image_bytes)
        # Where the URL's ok bytes are, as the stage finds it: the file's third row group.
        (place,) = [tagged for image_url, tagged in filter_image.ok_image_files(path) if image_url == url]
        by_file = filter_image.sample_file((url, GeneratedGroup(count, tagged_candidate, place)))
        in_file = sum(found == (path, 2) for found, _ in by_file)

        def sample(index: int) -> dict[str, Any]:
            return dict(_row(index), **{Sample.IMAGE_URL: url})

        with_bytes = filter_image.AttachImageBytes()
        with_bytes.setup()
        attached = with_bytes.process(((path, 2), GeneratedGroup(count - 1, sample, sample(count - 1))))
        with_the_bytes = sum(row[SampleImage.IMAGE] == image_bytes for row in attached)
    return {"judged": judged, "joined": joined, "in_file": in_file, "with_bytes": with_the_bytes}


def host_queue(count: int) -> dict[str, Any]:
    from pipeline.stages.fetch import HostQueue

    queue = HostQueue(16)
    url = "https://one-host.example.com/img/{}.jpg"
    spilled = sum(
        queue.append((url.format(index), None, [{"candidate_id": f"{index:024d}"}], 7)) for index in range(count)
    )
    in_order = True
    for index in range(count):
        (item_url, _, _, _), _ = queue.popleft()
        in_order &= item_url == url.format(index)
    return {"spilled": spilled, "in_order": in_order, "left": len(queue)}


def fetch_url(count: int) -> dict[str, Any]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.stages import fetch
    from schemas import ArchivedImage, Rejection, TextKept

    url = "https://cdn.example.com/logo.png"
    chunks = 100
    per_chunk, archived_per_chunk = count // chunks, count // chunks // 100

    def candidate(index: int) -> dict[str, Any]:
        """A text_kept row as fetch reads it (``CANDIDATE_COLUMNS``)."""
        row = _row(index)
        return {
            TextKept.CANDIDATE_ID: row[Sample.CANDIDATE_ID],
            TextKept.KEY: row[Sample.KEY],
            TextKept.IMAGE_URL: url,
            TextKept.ALT_TEXT: row[Sample.ALT_TEXT],
            TextKept.PAGE_URL: f"https://pages.example.com/{index}.html",
        }

    def archived(index: int) -> dict[str, Any]:
        # Every copy a 404 but one 200 in the middle: the one ``choose_archived`` takes.
        status = 200 if index == count // 200 else 404
        return ArchivedImage.row(
            image_url=url, http_status=status, body=b"x" * 100, warc_file="a.warc.gz", warc_record_offset=index
        )

    def generate(chunk: int) -> Iterator[dict[str, Any]]:
        for index in range(chunk * per_chunk, (chunk + 1) * per_chunk):
            yield candidate(index)

    def generate_archived(chunk: int) -> Iterator[dict[str, Any]]:
        for index in range(chunk * archived_per_chunk, (chunk + 1) * archived_per_chunk):
            yield archived(index)

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        chunk_numbers = pipeline | beam.Create(list(range(chunks)))
        candidates = chunk_numbers | "Generate" >> beam.FlatMap(generate)
        records = chunk_numbers | "GenerateArchived" >> beam.FlatMap(generate_archived)
        elements = (candidates, records) | "UrlsToFetch" >> fetch.UrlsToFetch()
        assert_that(elements, equal_to([(url, (count, archived(count // 200)))]), label="OneElement")

    def tagged_candidate(index: int) -> tuple[int, dict[str, Any]]:
        return fetch._CANDIDATE, candidate(index)

    failed = (fetch._FAILED, ("http_404", "HTTP 404"))
    rejected = fetch.reject_candidates((url, GeneratedGroup(count, tagged_candidate, failed)))
    return {"rejected": sum(row[Rejection.REASON] == "http_404" for row in rejected)}


WORKLOADS = {"combiners": combiners, "joins": joins, "host_queue": host_queue, "fetch_url": fetch_url}


def measure(count: int) -> dict[str, Any]:
    """Run every workload at ``count``: its result, peak resident MB and seconds."""
    import apache_beam  # noqa: F401  (imported before measuring, so its import is not counted)

    import pipeline.stages.fetch
    import pipeline.stages.filter_image  # noqa: F401

    report = {}
    for name, workload in WORKLOADS.items():
        _reset_peak()
        started = time.monotonic()
        result = workload(count)
        report[name] = {"result": result, "peak_mb": _peak_kb() / 1024, "seconds": time.monotonic() - started}
    return report


def run_measured(*counts: int) -> list[dict[str, Any]]:
    """``measure`` at each count, each in its own subprocess, run side by side (peaks are per process)."""
    command = [sys.executable, "-m", "tests.pipeline.stages.test_hot_keys"]
    runs = [
        subprocess.Popen([*command, str(count)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for count in counts
    ]
    reports = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


@pytest.mark.slow  # two subprocesses, the larger with 10^6 rows through each workload
def test_a_key_with_a_million_rows_is_never_held_in_memory() -> None:
    small, large = run_measured(10**5, 10**6)
    figures = {name: (round(small[name]["peak_mb"]), round(large[name]["peak_mb"])) for name in WORKLOADS}
    assert large["joins"]["result"] == {
        "judged": {"kept": 1, "rejected": 10**6 - 1},
        "joined": {"kept": 10**6, "rejected": 0},
        "in_file": 10**6,
        "with_bytes": 10**6,
    }
    assert large["host_queue"]["result"] == {"spilled": 10**6 - 16, "in_order": True, "left": 0}
    assert large["fetch_url"]["result"] == {"rejected": 10**6}
    for name in WORKLOADS:
        assert large[name]["peak_mb"] - small[name]["peak_mb"] < GROWTH_MB, figures


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
