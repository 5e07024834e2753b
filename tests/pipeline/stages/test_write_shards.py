"""write-shards: exact sizes, byte-identical tars (any worker count, after a SIGKILL and restart, through the local
runner's file shuffle or a GroupByKey of rows), and real readers.

Inputs are samples/ Parquet files (SampleImage rows of real skimage photos as JPEG) written with the schemas.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor

from pipeline.core.config import resolve_config
from pipeline.core.layout import CorpusLayout, ReadTable
from pipeline.core.stage import pipeline_options
from pipeline.corpus.shard_files import TEMPORARY_MARK, sort_identity, write_corpus
from pipeline.stages import write_shards as shards
from schemas import Candidate, Sample, SampleImage
from schemas.tables import Caption, CaptionedSample
from tests.conftest import PROJECT_ROOT
from tests.fixtures.beam_graph import image_shuffles
from tests.fixtures.image_corpus import jpeg, photo, sample_image_row, write_rows
from tests.fixtures.open_clip_loader import open_clip_train_loader

SAMPLES = 20
PER_SHARD = 3
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera")
#: A hub-style model id: write-shards only joins the captions/ rows, it never loads the model.
CAPTION_MODEL = "example/tiny-captioner"


def make_samples() -> list[dict]:
    images = {name: jpeg(photo(name), (160, 120), quality=80) for name in PHOTO_NAMES}
    rows = []
    for index in range(SAMPLES):
        name = PHOTO_NAMES[index % len(PHOTO_NAMES)]
        alt_text = f"{name} photo number {index} · été"  # non-ASCII on purpose: UTF-8 in the .txt member
        rows.append(sample_image_row(f"https://img.example/{name}/{index}.jpg", alt_text, images[name], index))
    return rows


def make_corpus(root: Path) -> list[dict]:
    """samples/ (two Parquet files), candidates/ with the WARC names, and filter-image's _SUCCESS."""
    rows = make_samples()
    write_rows(root / "samples", SampleImage, rows)
    write_rows(root / "candidates", Candidate, [Candidate.project(row) for row in rows], parts=1)
    CorpusLayout(str(root)).mark_done("filter-image", {"counters": {"samples": len(rows)}})
    return rows


def make_captioned_corpus(root: Path) -> list[str]:
    """``make_corpus`` plus captions/ (a caption for two samples in three, a failure for the rest) and caption's
    ``_SUCCESS`` with this run's caption settings; returns the write-shards flags that join them."""
    rows = make_corpus(root)
    args = stage_args(root, f"--caption-model={CAPTION_MODEL}")
    captions = []
    for index, row in enumerate(rows):
        captioned = index % 3 != 0
        values = {
            Caption.CANDIDATE_ID: row[SampleImage.CANDIDATE_ID],
            Caption.KEY: row[SampleImage.KEY],
            Caption.ENHANCED_CAPTION: f"a generated caption of sample {index}" if captioned else None,
            Caption.CAPTION_MODEL: CAPTION_MODEL if captioned else None,
            Caption.CAPTION_STATUS: "ok" if captioned else "decode_error",
        }
        captions.append(Caption.row(**values))
    write_rows(root / Caption.FOLDER, Caption, captions, parts=1)
    settings = resolve_config(pipeline_options(args)).to_dict()["caption"]
    fingerprint = {"config": {"caption": settings}, "upstream": {"filter-image": None}}
    CorpusLayout(str(root)).mark_done("caption", {"fingerprint": fingerprint, "captions": {"model": CAPTION_MODEL}})
    return args


def stage_args(root: Path, *extra: str) -> list[str]:
    return [f"--output={root}", f"--samples-per-shard={PER_SHARD}", *extra]


def spill_folder(root: Path) -> Path:
    return root / "shards" / shards.SPILL_FOLDER


def tar_bytes(root: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((root / "shards").glob("*.tar"))}


def parquet_rows(root: Path) -> dict[str, list[dict]]:
    return {path.name: pq.read_table(path).to_pylist() for path in sorted((root / "shards").glob("*.parquet"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict[str, int]]:
    root = tmp_path_factory.mktemp("shards-reference")
    rows = make_corpus(root)
    counters = shards.run(stage_args(root))
    return root, rows, counters


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test corpus sharded through a GroupByKey of rows (what distributed runners run), in one process."""
    root = tmp_path_factory.mktemp("shards-shuffled")
    make_corpus(root)
    counters = shards.run(stage_args(root), file_shuffle=False)
    assert "spill_files" not in counters
    return root


def test_exact_shard_sizes_in_key_order(reference: tuple[Path, list[dict], dict[str, int]]) -> None:
    root, rows, counters = reference
    sizes = json.loads((root / "shards" / "sizes.json").read_text())
    expected_shards = -(-SAMPLES // PER_SHARD)
    assert list(sizes) == [f"{index:05d}.tar" for index in range(expected_shards)]
    assert list(sizes.values()) == [PER_SHARD] * (expected_shards - 1) + [SAMPLES - PER_SHARD * (expected_shards - 1)]
    assert counters["samples"] == SAMPLES and counters["shards_written"] == expected_shards
    keys_in_tars = []
    for name in sizes:
        with tarfile.open(root / "shards" / name) as archive:
            members = archive.getmembers()
            assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
            keys = [m.name.split(".")[0] for m in members[::3]]
            assert [m.name for m in members] == [f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")]
            assert len(keys) == sizes[name]
            keys_in_tars += keys
    assert keys_in_tars == sorted(row[Sample.KEY] for row in rows)


def test_parquet_twins_json_and_manifest(reference: tuple[Path, list[dict], dict[str, int]]) -> None:
    root, rows, _ = reference
    by_key = {row[Sample.KEY]: row for row in rows}
    for name, twin in parquet_rows(root).items():
        shard = name.removesuffix(".parquet")
        assert all(row[Sample.SHARD] == shard for row in twin)
        with tarfile.open(root / "shards" / f"{shard}.tar") as archive:
            for row in twin:
                key = row[Sample.KEY]
                assert archive.extractfile(f"{key}.jpg").read() == by_key[key][SampleImage.IMAGE]
                assert archive.extractfile(f"{key}.txt").read().decode("utf-8") == by_key[key][Sample.ALT_TEXT]
                metadata = json.loads(archive.extractfile(f"{key}.json").read())
                assert metadata[Sample.KEY] == key and metadata[Sample.SHARD] == shard
                assert metadata[Sample.WARC_FILE] == "crawl-0.warc.gz"  # no local path inside a portable tar
                assert metadata[Sample.PHASH] == by_key[key][Sample.PHASH]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["sample_count"] == SAMPLES and manifest["shard_count"] == len(parquet_rows(root))
    assert manifest["inputs"] == ["/data/crawl-0.warc.gz"]
    assert manifest["stage_counts"]["filter-image"] == {"samples": SAMPLES}
    assert manifest["config"]["shards"]["samples_per_shard"] == PER_SHARD
    assert manifest["schema_version"]
    success = json.loads((root / "shards" / "_SUCCESS").read_text())
    assert success["counters"]["samples"] == SAMPLES


def test_the_file_shuffle_gives_the_row_shuffles_shards_and_leaves_no_spill(
    reference: tuple[Path, list[dict], dict[str, int]], shuffled: Path
) -> None:
    """On the local runner samples reach their shard writer through spill files; the shards must not show it."""
    root, _, counters = reference
    assert len(tar_bytes(root)) == -(-SAMPLES // PER_SHARD)
    assert tar_bytes(root) == tar_bytes(shuffled)
    assert parquet_rows(root) == parquet_rows(shuffled)
    assert (root / "shards" / "sizes.json").read_bytes() == (shuffled / "shards" / "sizes.json").read_bytes()
    assert counters["spill_files"] >= len(
        tar_bytes(root)
    )  # the file shuffle did run: one spill file per shard at least
    assert not spill_folder(root).exists()
    assert sorted(p.name for p in (root / "shards").iterdir()) == sorted(
        p.name for p in (shuffled / "shards").iterdir()
    )


@pytest.mark.parametrize("file_bytes, buffer_rows", [(1, 1000), (10**9, 3)])
def test_a_worker_spills_past_its_bounds_and_every_row_reaches_its_shard(
    tmp_path: Path, file_bytes: int, buffer_rows: int
) -> None:
    """One spill file per row past a tiny file bound; with a buffer of 3 rows over 7 open shards, the largest shard
    buffer is spilled each time, so a worker never holds more than the buffer bound whatever the shard count."""
    write_rows(tmp_path / "samples", SampleImage, make_samples())
    rows = pq.read_table(tmp_path / "samples").to_pylist()  # as ReadTable gives them to the stage
    openers = sorted(sort_identity(row) for row in rows)[::PER_SHARD]
    row_cost = min(len(row[SampleImage.IMAGE]) for row in rows) + shards.ROW_OVERHEAD_BYTES  # bound in rows, at most
    spill = shards.SpillByShard(str(tmp_path / "spill"), Sample, file_bytes, buffer_rows * row_cost)
    spill.setup()
    spill.start_bundle()
    emitted: list[tuple[int, str, int]] = []
    for seen, row in enumerate(rows, start=1):
        emitted += list(spill.process(row, openers))
        assert seen - sum(count for _, _, count in emitted) < buffer_rows, "rows held past the buffer bound"
    if file_bytes == 1:
        assert len(emitted) == SAMPLES  # every row went to its own file at once
    emitted += [windowed.value for windowed in spill.finish_bundle()]
    assert sum(count for _, _, count in emitted) == SAMPLES
    expected = {row[Sample.KEY]: row for row in rows}
    for index in {index for index, _, _ in emitted}:
        spills = sorted((path, count) for shard, path, count in emitted if shard == index)
        # The shard's writer: its rows without the images (their sizes instead), then the images streamed in order.
        spilled, places = shards._read_spill_rows(spills)
        order = sorted(range(len(spilled)), key=lambda position: sort_identity(spilled[position]))
        sizes = [row[SampleImage.IMAGE] for row in spilled]
        reader = shards._SpilledImages([path for path, _ in spills])
        images = reader.take((places[position], sizes[position]) for position in order)
        keys = [spilled[position][Sample.KEY] for position in order]
        assert keys == sorted(expected)[index * PER_SHARD : (index + 1) * PER_SHARD]
        for position, image in zip(order, images, strict=True):
            assert spilled[position][SampleImage.IMAGE] == len(image)
            assert dict(spilled[position], **{SampleImage.IMAGE: image}) == expected[spilled[position][Sample.KEY]]
    assert not list((tmp_path / "spill").glob(f"*{TEMPORARY_MARK}*"))


def test_a_shards_writer_reads_one_image_at_a_time_from_many_spill_files(tmp_path: Path) -> None:
    """Each spill file holds its rows sorted and their images in a file beside it, in the same order; the writer
    reads the images in shard order one at a time, with no more than ``MAX_OPEN_SPILL_FILES`` files open, however
    many spill files the shard has: 20 rows of 700 KB images in 20 spill files, at most 3 open."""
    rows = [dict(row, **{SampleImage.IMAGE: bytes([index]) * 700_000}) for index, row in enumerate(make_samples())]
    spill = shards.SpillByShard(str(tmp_path / "spill"), Sample, buffer_bytes=1)  # every row spilled on its own
    spill.setup()
    spill.start_bundle()
    first = [min(sort_identity(row) for row in rows)]  # one shard
    emitted = [spilled for row in reversed(rows) for spilled in spill.process(row, first)]
    emitted += [windowed.value for windowed in spill.finish_bundle()]
    spills = sorted((path, count) for _, path, count in emitted)
    assert len(spills) == SAMPLES and {count for _, count in spills} == {1}
    bigger = shards.SpillByShard(str(tmp_path / "spill"), Sample)  # and one file of them all: its rows sorted
    bigger.setup()
    bigger.start_bundle()
    assert [spilled for row in reversed(rows) for spilled in bigger.process(row, first)] == []
    [whole] = [windowed.value for windowed in bigger.finish_bundle()]
    keys = pq.read_table(whole[1], columns=[Sample.KEY]).column(0).to_pylist()
    assert (
        keys == sorted(keys)
        and pq.read_table(whole[1]).column(shards.SPILL_IMAGE_SIZE).to_pylist() == [700_000] * SAMPLES
    )
    assert Path(shards.spill_images_path(whole[1])).stat().st_size == 700_000 * SAMPLES
    assert SampleImage.IMAGE not in pq.read_schema(whole[1]).names  # the images are in the images file only
    spilled, places = shards._read_spill_rows(spills)
    order = sorted(range(len(spilled)), key=lambda position: sort_identity(spilled[position]))
    image_of = {row[Sample.KEY]: row[SampleImage.IMAGE] for row in rows}
    original = shards.MAX_OPEN_SPILL_FILES
    shards.MAX_OPEN_SPILL_FILES = 3
    try:
        reader = shards._SpilledImages([path for path, _ in spills])
        taken = reader.take((places[position], spilled[position][SampleImage.IMAGE]) for position in order)
        for position, image in zip(order, taken, strict=True):
            assert image == image_of[spilled[position][Sample.KEY]]
            assert len(reader.handles) <= 3
    finally:
        shards.MAX_OPEN_SPILL_FILES = original
    assert not reader.handles  # all closed once the shard is written


def test_a_short_images_file_or_rows_out_of_order_fail_the_shard(tmp_path: Path) -> None:
    """A truncated images file fails the shard with the file named, as does a file asked for its rows out of order."""
    rows = [dict(row, **{SampleImage.IMAGE: bytes([index]) * 1000}) for index, row in enumerate(make_samples()[:3])]
    spill = shards.SpillByShard(str(tmp_path / "spill"), Sample)
    spill.setup()
    spill.start_bundle()
    first = [min(sort_identity(row) for row in rows)]
    assert [spilled for row in rows for spilled in spill.process(row, first)] == []
    [(_, path, count)] = [windowed.value for windowed in spill.finish_bundle()]
    with pytest.raises(RuntimeError, match="asked for row 1 where row 0 is next"):
        list(shards._SpilledImages([path]).take([((0, 1), 1000)]))
    images = Path(shards.spill_images_path(path))
    images.write_bytes(images.read_bytes()[:2500])
    taken = shards._SpilledImages([path]).take(((0, row), 1000) for row in range(count))
    assert len(next(taken)) == len(next(taken)) == 1000  # the first two images are whole
    with pytest.raises(RuntimeError, match=r"\.images ends 500 bytes short of row 2's image"):
        next(taken)


def test_a_spill_file_shorter_than_its_writer_reported_fails_the_shard(tmp_path: Path) -> None:
    """A spill file is read whole and counted: a short one fails the shard rather than writing it short."""
    spill = shards.SpillByShard(str(tmp_path / "spill"), Sample)
    spill.setup()
    spill.start_bundle()
    row = make_samples()[0]
    assert list(spill.process(row, [sort_identity(row)])) == []
    [(index, path, count)] = [windowed.value for windowed in spill.finish_bundle()]
    assert (index, count) == (0, 1)
    with pytest.raises(RuntimeError, match="holds 1 rows, its writer reported 2"):
        shards._read_spill_rows([(path, 2)])


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_two_worker_processes_and_the_plain_helper_give_identical_shards(
    reference: tuple[Path, list[dict], dict[str, int]], shuffled: Path, tmp_path: Path
) -> None:
    root, rows, _ = reference
    parallel = tmp_path / "parallel"
    make_corpus(parallel)
    counters = shards.run(stage_args(parallel, "--direct_running_mode=multi_processing", "--direct_num_workers=2"))
    assert counters["spill_files"] >= len(tar_bytes(root))  # through the file shuffle
    assert tar_bytes(parallel) == tar_bytes(root) == tar_bytes(shuffled)
    assert parquet_rows(parallel) == parquet_rows(root)
    assert (parallel / "shards" / "sizes.json").read_bytes() == (shuffled / "shards" / "sizes.json").read_bytes()
    assert not spill_folder(parallel).exists()
    helper = tmp_path / "helper"
    sizes = write_corpus(reversed(rows), str(helper), samples_per_shard=PER_SHARD)
    assert sizes == json.loads((root / "shards" / "sizes.json").read_text())
    assert tar_bytes(helper) == tar_bytes(root)


@pytest.mark.slow  # two stage runs: make test, not make test-fast
def test_captioned_shards_are_the_same_through_the_file_shuffle(tmp_path: Path) -> None:
    """With captions the file shuffle joins them to the samples' identities, not to the rows with image bytes."""
    results = {}
    for file_shuffle in (True, False):
        root = tmp_path / f"file-shuffle-{file_shuffle}"
        counters = shards.run(make_captioned_corpus(root), file_shuffle=file_shuffle)
        assert ("spill_files" in counters) == file_shuffle and counters["samples"] == SAMPLES
        assert not spill_folder(root).exists()
        sizes = (root / "shards" / "sizes.json").read_bytes()
        results[file_shuffle] = (tar_bytes(root), parquet_rows(root), sizes)
    assert results[True] == results[False]
    twins = [row for rows in results[True][1].values() for row in rows]
    captioned = [row for row in twins if row[CaptionedSample.ENHANCED_CAPTION] is not None]
    assert len(twins) == SAMPLES and len(captioned) == len([i for i in range(SAMPLES) if i % 3 != 0])
    assert {row[CaptionedSample.CAPTION_MODEL] for row in captioned} == {CAPTION_MODEL}
    enhanced_members = 0
    for tar in results[True][0].values():
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            enhanced_members += sum(name.endswith(".enhanced.txt") for name in archive.getnames())
    assert enhanced_members == len(captioned)


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_killed_mid_run_then_restarted_gives_identical_tars(
    reference: tuple[Path, list[dict], dict[str, int]], tmp_path: Path
) -> None:
    root, _, _ = reference
    killed = tmp_path / "killed"
    make_corpus(killed)
    environment = dict(os.environ, **{shards.DELAY_ENV: "2"})
    command = [sys.executable, "-m", "pipeline", "write-shards", *stage_args(killed)]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((killed / "shards").glob("*.parquet")) and time.monotonic() < deadline:
            assert process.poll() is None, "the writer finished before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    left = tar_bytes(killed)
    assert 0 < len(left) < len(tar_bytes(root)), "the kill must land mid-run"
    assert not (killed / "shards" / "sizes.json").exists() and not (killed / "shards" / "_SUCCESS").exists()
    complete = {
        p.name: p.stat().st_mtime_ns for p in (killed / "shards").glob("*.tar") if p.with_suffix(".parquet").exists()
    }
    assert complete, "at least one shard was complete when the process died"
    assert list(spill_folder(killed).rglob("*.parquet")), "the killed run's spill files are left behind"
    # A half-written temporary left by the kill is cleaned up, never mistaken for a shard.
    (killed / "shards" / f"00001.tar{TEMPORARY_MARK}leftover").write_bytes(b"partial")
    counters = shards.run(stage_args(killed))
    assert tar_bytes(killed) == tar_bytes(root)
    assert parquet_rows(killed) == parquet_rows(root)
    assert counters["samples"] == SAMPLES
    reused = {name: (killed / "shards" / name).stat().st_mtime_ns for name in complete}
    assert reused == complete, "complete shards of the killed run are reused, not rewritten"
    assert not list((killed / "shards").glob(f"*{TEMPORARY_MARK}*"))
    assert not spill_folder(killed).exists()


def test_a_rerun_with_fewer_shards_removes_the_stale_ones(
    reference: tuple[Path, list[dict], dict[str, int]], tmp_path: Path
) -> None:
    root, _, _ = reference
    rerun = tmp_path / "rerun"
    make_corpus(rerun)
    shards.run([f"--output={rerun}", "--samples-per-shard=2"])
    assert len(tar_bytes(rerun)) == SAMPLES // 2
    shards.run(stage_args(rerun))
    assert tar_bytes(rerun) == tar_bytes(root)
    assert sorted(parquet_rows(rerun)) == sorted(parquet_rows(root))


def test_webdataset_reads_every_sample(reference: tuple[Path, list[dict], dict[str, int]]) -> None:
    import webdataset as wds

    root, rows, _ = reference
    urls = [str(path) for path in sorted((root / "shards").glob("*.tar"))]
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json")
    by_key = {row[Sample.KEY]: row for row in rows}
    seen = []
    for key, image, text, metadata in dataset:
        assert image.size == (160, 120) and text == by_key[key][Sample.ALT_TEXT] and metadata[Sample.KEY] == key
        seen.append(key)
    assert sorted(seen) == sorted(by_key)


def test_open_clip_train_loader_yields_images_and_tokens(reference: tuple[Path, list[dict], dict[str, int]]) -> None:
    root, _, _ = reference
    loader = open_clip_train_loader(root, batch_size=4, image_size=64)
    images, texts = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and images.std() > 0
    assert texts.shape == (4, 77) and (texts[:, 0] == texts[0, 0]).all() and (texts > 0).sum(dim=1).min() > 3


def test_fewer_samples_than_samples_holds_fail_the_stage_before_it_is_marked_done(tmp_path: Path) -> None:
    """Nothing is lost: if the runner delivers fewer samples to the shard writers than samples/ holds (seen with the
    local runner's multi-process mode on a 100 MB crawl), the last step refuses to write sizes.json and manifest.json,
    so the stage is not done and build-corpus does not go on."""
    layout = CorpusLayout(str(tmp_path))
    finish = shards.FinishCorpus(layout.root, {}, expected=5)
    with pytest.raises(RuntimeError, match="received 4 of the 5 samples"):
        list(finish.process(None, written=[("00000.tar", 3), ("00001.tar", 1)], warc_files=[]))
    assert not Path(layout.manifest_path()).exists()
    assert list(finish.process(None, written=[("00000.tar", 3), ("00001.tar", 2)], warc_files=[])) == [2]
    assert json.loads(Path(layout.manifest_path()).read_text())["sample_count"] == 5


class _SampleReads(PipelineVisitor):
    """The ReadTable steps over samples/ (their columns) and how many steps consume each one's rows."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.reads: list[tuple[list[str] | None, int]] = []  # (columns read, id of the output PCollection)
        self.consumers: dict[int, list[str]] = {}

    def enter_composite_transform(self, node: AppliedPTransform) -> None:
        if isinstance(node.transform, ReadTable) and node.transform.pattern == self.pattern:
            self.reads.append((node.transform.columns, id(node.outputs[None])))

    def visit_transform(self, node: AppliedPTransform) -> None:
        # Main inputs and side inputs alike: the local runner materialises a PCollection read by two steps either way.
        for pcollection in [*node.inputs, *(side.pvalue for side in node.side_inputs)]:
            self.consumers.setdefault(id(pcollection), []).append(node.full_label)


def test_rows_with_image_bytes_have_one_consumer_and_the_ranking_reads_no_image(tmp_path: Path) -> None:
    """Beam's local runner holds a PCollection with two consumers whole in its memory between stages: on a 100 MB
    crawl the rows with image bytes feeding both the ranking and the shard assignment cost GBs in the driver."""
    make_corpus(tmp_path)
    options = pipeline_options(stage_args(tmp_path))
    layout = CorpusLayout(str(tmp_path))
    pipeline = beam.Pipeline(options=options)
    shards.build(pipeline, layout, resolve_config(options), options)
    visitor = _SampleReads(layout.glob(SampleImage))
    pipeline.visit(visitor)
    with_image = [output for columns, output in visitor.reads if columns is None or SampleImage.IMAGE in columns]
    without_image = [
        columns for columns, _ in visitor.reads if columns is not None and SampleImage.IMAGE not in columns
    ]
    assert len(with_image) == 1 and len(visitor.consumers[with_image[0]]) == 1, visitor.consumers.get(with_image[0])
    assert without_image == [[Sample.KEY, Sample.CANDIDATE_ID]]


@pytest.mark.slow  # four graphs built: about 5 s
def test_on_the_local_runner_no_group_by_key_carries_image_bytes(tmp_path: Path) -> None:
    """The local runner holds a GroupByKey's whole input in the driver's memory (5.5-6.2 GB for 473 MB of samples
    grouped by shard with their bytes): there, image bytes go through spill files and no GroupByKey sees them."""
    captioned_args = make_captioned_corpus(tmp_path)
    layout = CorpusLayout(str(tmp_path))
    shuffles = {}
    for args in (stage_args(tmp_path), captioned_args):
        options = pipeline_options(args)
        assert shards.runs_locally(options)
        for file_shuffle in (None, False):  # None: the runner decides (the file shuffle, locally)
            pipeline = beam.Pipeline(options=options)
            shards.build(pipeline, layout, resolve_config(options), options, file_shuffle=file_shuffle)
            # SpillByShard writes the rows to spill files and passes on only their paths.
            visitor = image_shuffles(
                pipeline, layout.glob(SampleImage), SampleImage.IMAGE, drops_bytes=[shards.SpillByShard]
            )
            shuffles[args is captioned_args, file_shuffle] = visitor.shuffles
    assert shuffles == {
        (False, None): [],
        (False, False): ["GroupByShard"],
        (True, None): [],
        (True, False): ["JoinCaptions/CoGroupByKeyImpl/GroupByKey", "GroupByShard"],
    }
    assert not shards.runs_locally(pipeline_options([*stage_args(tmp_path), "--runner=DataflowRunner"]))
