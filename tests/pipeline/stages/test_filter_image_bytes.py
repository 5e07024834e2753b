"""filter-image's bytes join (issue 15): samples get their image bytes from the images/ files, no shuffle carries them.

The old join grouped every ok image's bytes by URL: Beam's local runner holds a GroupByKey's whole input in the driver
and hands each worker its part as one message (7.5 GB per worker on a 100 MB crawl, OOM-killed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.config import resolve_config
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable
from pipeline.core.stage import pipeline_options
from pipeline.stages import filter_image
from schemas import FetchedImage, Sample, SampleImage, TextKept
from tests.fixtures.beam_graph import image_shuffles
from tests.fixtures.image_corpus import image_row, jpeg, photo, text_kept_row, write_rows


def mean_brightness(image: Any) -> float:
    """A real (if simple) unsafe scorer, for the graph with a scorer configured."""
    return 0.0


def test_no_group_by_key_carries_image_bytes(tmp_path: Path) -> None:
    url = "https://img.example/a.jpg"
    write_rows(tmp_path / TextKept.FOLDER, TextKept, [text_kept_row(url, "an astronaut", 0)])
    write_rows(tmp_path / FetchedImage.FOLDER, FetchedImage, [image_row(url, jpeg(photo("astronaut"), (300, 300)))])
    layout = CorpusLayout(str(tmp_path))
    shuffles = {}
    for extra in ([], [f"--unsafe-scorer={__name__}:mean_brightness", "--max-unsafe-score=0.5"]):
        options = pipeline_options([f"--output={tmp_path}", *extra])
        pipeline = beam.Pipeline(options=options)
        filter_image.build(pipeline, layout, resolve_config(options), options)
        visitor = image_shuffles(
            pipeline,
            layout.glob(FetchedImage),
            FetchedImage.IMAGE,
            adds_bytes=[filter_image.AttachImageBytes],
            drops_bytes=[filter_image.ScoreUnsafe],  # it passes on scores
        )
        assert visitor.adders == ["WithImageBytes/AttachImageBytes"]
        shuffles[bool(extra)] = visitor.shuffles
    assert shuffles == {False: [], True: []}, shuffles


def test_the_walker_finds_a_group_by_key_fed_image_bytes(tmp_path: Path) -> None:
    """The check above can fail: a by-URL GroupByKey of images/ rows is found when they carry the bytes, whether read
    with them or given them by an ``adds_bytes`` step, and not past a ``drops_bytes`` step or inside a sink."""
    url = "https://img.example/a.jpg"
    write_rows(tmp_path / FetchedImage.FOLDER, FetchedImage, [image_row(url, jpeg(photo("astronaut"), (300, 300)))])
    pattern = CorpusLayout(str(tmp_path)).glob(FetchedImage)

    def walk(columns: list[str] | None) -> list[str]:
        pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
        images = pipeline | "ReadImages" >> ReadTable(pattern, columns=columns)
        _ = (
            images
            | "ByUrl" >> beam.Map(lambda row: (row[FetchedImage.IMAGE_URL], row))
            | "GroupByUrl" >> beam.GroupByKey()
        )
        _ = (
            images
            | "Score" >> beam.ParDo(filter_image.ScoreUnsafe("unused:scorer"))
            | "GroupScores" >> beam.GroupByKey()
        )
        _ = images | "Write" >> WriteTable(str(tmp_path / "out" / "part"), FetchedImage)
        samples = pipeline | "Samples" >> beam.Create([((pattern, 0), {})]) | "Files" >> beam.GroupByKey()
        _ = samples | "Attach" >> beam.ParDo(filter_image.AttachImageBytes()) | "Regroup" >> beam.GroupByKey()
        visitor = image_shuffles(
            pipeline,
            pattern,
            FetchedImage.IMAGE,
            adds_bytes=[filter_image.AttachImageBytes],
            drops_bytes=[filter_image.ScoreUnsafe],
        )
        assert visitor.adders == ["Attach"]
        return visitor.shuffles

    assert walk(None) == ["GroupByUrl", "Regroup"]
    assert walk([FetchedImage.IMAGE_URL, FetchedImage.IMAGE]) == ["GroupByUrl", "Regroup"]
    assert walk([FetchedImage.IMAGE_URL, FetchedImage.STATUS]) == ["Regroup"]


def _write_images(path: Path, rows: list[dict[str, Any]]) -> None:
    # One row per row group: the reader must find a URL in any row group, not only the first.
    pq.write_table(pa.Table.from_pylist(rows, schema=FetchedImage.schema()), path, row_group_size=1)


def _sample(url: str, index: int) -> dict[str, Any]:
    return Sample.project(
        {
            Sample.IMAGE_URL: url,
            Sample.ALT_TEXT: f"alt {index}",
            Sample.KEY: f"{index:024d}",
            Sample.CANDIDATE_ID: f"{index:024d}",
        }
    )


def test_a_sample_gets_the_bytes_from_the_second_of_two_image_files(tmp_path: Path) -> None:
    folder = tmp_path / FetchedImage.FOLDER
    folder.mkdir()
    astronaut, coffee, rocket = (jpeg(photo(name), (300, 300)) for name in ("astronaut", "coffee", "rocket"))
    first, second, later = (
        "https://img.example/first.jpg",
        "https://img.example/second.jpg",
        "https://img.example/x.jpg",
    )
    _write_images(
        folder / "part-00000-of-00002.parquet", [image_row(first, astronaut), image_row(later, None, "http_404")]
    )
    _write_images(
        folder / "part-00001-of-00002.parquet",
        [image_row("https://img.example/unused.jpg", coffee), image_row(later, coffee), image_row(second, rocket)],
    )
    samples = [_sample(first, 0), _sample(second, 1), _sample(second, 2), _sample(later, 3)]
    expected = [
        SampleImage.project(dict(samples[0], **{SampleImage.IMAGE: astronaut})),
        SampleImage.project(dict(samples[1], **{SampleImage.IMAGE: rocket})),
        SampleImage.project(dict(samples[2], **{SampleImage.IMAGE: rocket})),
        # Not ok in the first file, ok in the second: the bytes come from the ok row.
        SampleImage.project(dict(samples[3], **{SampleImage.IMAGE: coffee})),
    ]
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        rows = pipeline | beam.Create(samples) | filter_image.WithImageBytes(str(folder / "*.parquet"))
        assert_that(rows, equal_to(expected))


def test_the_bytes_are_read_per_row_group_so_no_group_holds_a_whole_file(tmp_path: Path) -> None:
    # A hot host's fetch part can hold a quarter of a crawl's images: the samples meet their bytes per row group.
    path = tmp_path / "part-00000-of-00001.parquet"
    urls = [f"https://img.example/{index}.jpg" for index in range(3)]
    images = [jpeg(photo(name), (300, 300)) for name in ("astronaut", "coffee", "rocket")]
    _write_images(path, [image_row(url, image) for url, image in zip(urls, images, strict=True)])
    places = dict(filter_image.ok_image_files(str(path)))
    assert places == {url: (filter_image._FILE, (str(path), group)) for group, url in enumerate(urls)}
    attach = filter_image.AttachImageBytes()
    attach.setup()
    # Given the second row group and samples of all three images, only that row group's bytes are attached.
    rows = list(attach.process(((str(path), 1), [_sample(url, index) for index, url in enumerate(urls)])))
    assert [(row[Sample.IMAGE_URL], row[SampleImage.IMAGE]) for row in rows] == [(urls[1], images[1])]


def test_a_row_groups_images_are_read_a_few_at_a_time_and_only_the_wanted_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row group of 40 images read 7 at a time: each wanted URL gets its first ok row's bytes, wherever the batch
    boundaries fall; a URL fetched twice in the row group keeps the first ok copy, a failed row is never attached."""
    monkeypatch.setattr(filter_image, "IMAGE_READ_ROWS", 7)
    urls = [f"https://img.example/{index}.jpg" for index in range(40)]
    real = image_row(urls[0], jpeg(photo("coffee"), (64, 64)))
    rows = [
        dict(real, **{FetchedImage.IMAGE_URL: url, FetchedImage.IMAGE: bytes([i]) * (100 + i)})
        for i, url in enumerate(urls)
    ]
    rows[13] = image_row(urls[13], None, status="http_404")
    rows[27] = dict(rows[27], **{FetchedImage.IMAGE_URL: urls[6], FetchedImage.IMAGE: b"second copy of 6"})
    path = tmp_path / "part-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=FetchedImage.schema()), path)  # one row group
    wanted = [0, 6, 7, 13, 20, 21, 34, 39]
    attach = filter_image.AttachImageBytes()
    attach.setup()
    samples = [_sample(urls[index], index) for index in wanted]
    attached = {row[Sample.IMAGE_URL]: row[SampleImage.IMAGE] for row in attach.process(((str(path), 0), samples))}
    assert attached == {urls[index]: bytes([index]) * (100 + index) for index in wanted if index != 13}
