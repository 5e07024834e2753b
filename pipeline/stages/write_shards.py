"""``write-shards``: samples/ -> exact, deterministic, resumable WebDataset shards with Parquet twins.

Shard contents and order are a pure function of the sample keys: samples are ranked by ``(key, candidate_id)``,
sample ``r`` goes to shard ``r // samples_per_shard``, and members are written in that order with fixed tar
metadata, so the same samples give byte-identical tars on any runner and any number of workers.

Scalable ranking (no global list on one worker): the ranking reads only the key and candidate id of samples/ (a
second read, so the rows with image bytes have one consumer, which the local runner need not hold whole in memory);
keys are counted per key-prefix bucket (a small side input of counts); each bucket's keys are sorted on their own and
the keys that open a shard (global rank a multiple of ``samples_per_shard``) are collected as a side input of shard
boundaries; each sample then finds its shard by a binary search over the boundaries, and samples are grouped by shard
and written.

File shuffle on the local runner: Beam's local runner (FnApiRunner) holds a GroupByKey's whole input in the driver's
memory (5.5-6.2 GB RSS for 473 MB of samples when samples went through ``GroupByShard`` with their image bytes). So
on the local runner ``SpillByShard`` buffers each shard's rows per bundle and writes them as spill Parquet files
(``shards/_spill/<random id>/NNNNN-<uuid>.parquet``: the rows without their images, sorted, and beside it
``NNNNN-<uuid>.images``: their image bytes in the same order; a bounded buffer per worker), emitting only ``(shard,
spill path, rows)``; ``GroupByShard`` groups those small tuples and ``WriteSpilledShard`` reads the files it was
given: their rows first (to sort them and plan the tar), then the images in shard order while the tar is written,
one image at a time from each images file read front to back, so no worker holds a shard's images (10,000 samples:
500 MB of 512 px JPEGs, gigabytes of kept originals), nor anything per spill file but an open handle. Measured on
the 1 GB simulated crawl's samples/ (2 workers): largest workers 958 / 944 -> 608 / 601 MB, with the spill bounds
halved as well (a 128 MB buffer, 32 MB files; now 32 and 16, ``SPILL_BUFFER_BYTES``), the same tars byte for byte.
The spill folder is deleted once every shard is written and counted (``FinishCorpus``), and by ``prepare_resume`` at
the next start (a killed run leaves it); the shard globs (``shards/*.tar``, ``*.parquet``) never descend into it.
With captions, the file shuffle joins them by candidate id to the samples' identities (no image bytes) and groups
them by shard beside the spill paths. Distributed runners shuffle on disk, so they keep the plain ``GroupByShard``
of rows (and the captions join on the rows).

Resume: the stage does not clear its outputs. It deletes only temporary files and stale markers (``_SUCCESS``,
``sizes.json``, ``manifest.json``), keeps a shard whose Parquet twin already lists exactly the planned rows and whose
tar has the planned size, rewrites the others, deletes shards beyond the new shard count, and writes
``sizes.json`` then ``manifest.json`` last.

Captions: with ``--caption-model`` set (the ``caption`` stage ran with the same caption settings, or this stage
refuses to start), each sample is joined by ``candidate_id`` with its ``captions/`` row: a caption becomes the
``{key}.enhanced.txt`` member and the ``enhanced_caption`` column, the Parquet twins take ``CaptionedSample``'s
columns (``caption_model`` added), and ``manifest.json`` records the model, prompt, generation settings and counts
under ``captions``. Without it captions/ is not read and the shards are exactly those of an uncaptioned corpus.

Files: ``shards/NNNNN.tar`` + ``shards/NNNNN.parquet`` and ``shards/sizes.json``, written by
``pipeline.corpus.shard_files`` (the shard format, shared with ``reshard``), and ``manifest.json`` at the corpus root.
Test hook: ``ALTCORPUS_TEST_SHARD_DELAY_S`` (seconds, float) sleeps after each shard is written, so a test can kill
the process between shards; never set it in production.
"""

from __future__ import annotations

import bisect
import functools
import io
import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from pipeline.core.config import CorpusConfig
from pipeline.core.errors import UsageError
from pipeline.core.layout import (
    STAGES,
    CorpusLayout,
    ReadTable,
    delete_matching,
    delete_tree,
    list_matching,
    remove_if_empty,
    write_text_atomically,
)
from pipeline.core.progress import StageProgress, table_progress, with_progress
from pipeline.core.rules import counter
from pipeline.core.stage import run_stage, runs_locally
from pipeline.corpus.shard_files import (
    SIZES_JSON,
    TEMPORARY_MARK,
    WITH_IMAGE,
    delete_stale_shards,
    normalise_shard,
    shard_name,
    sort_identity,
    write_shard,
    write_sizes,
    write_sorted_shard,
)
from schemas import SCHEMA_VERSION, Candidate, Sample, SampleImage, Table
from schemas.tables import Caption, CaptionedSample

STAGE = "write-shards"
#: Key-prefix length of the counting buckets: 16**4 = 65,536 buckets, a small side input at any corpus size.
BUCKET_PREFIX_CHARS = 4
DELAY_ENV = "ALTCORPUS_TEST_SHARD_DELAY_S"
#: The local runner's file shuffle spills under ``shards/_spill/``: a folder, so no shard glob matches what it holds.
SPILL_FOLDER = "_spill"
#: A shard's buffered rows are spilled once their image bytes pass this (one spill file's size, about).
SPILL_FILE_BYTES = 16 << 20
#: All buffered rows of one worker: past this the largest shard buffer is spilled, however many shards are open.
#: Small, since spill files cost the shard's writer only an open handle each: at 128 MB a 1 GB crawl's 11 shards
#: reached the bound where a 100 MB crawl's 2 did not. Samples/ of the 1 GB simulated crawl alone, 2 workers, largest
#: worker at 128 / 64 / 32 MB (files of 32 / 32 / 16 MB): 544 / 477 / 432 MB (100 MB crawl: 418 / 423 / 374), CPU
#: 47 / 53 / 51 s, 230 / 460 / 900 spill files.
SPILL_BUFFER_BYTES = 32 << 20
#: What a row costs beyond its image bytes in the buffer bound (its other columns, the dict): a rough constant.
ROW_OVERHEAD_BYTES = 2048
#: A spill file's column of image sizes: where each image is in the images file, and the tar's plan without them.
SPILL_IMAGE_SIZE = "_image_size"
#: The images file beside each spill file (``NNNNN-<uuid>.images``): the image bytes, in the spill file's row order.
SPILL_IMAGES_SUFFIX = ".images"
#: Images files a shard's writer keeps open at once: a shard may have hundreds of spill files when many are open.
MAX_OPEN_SPILL_FILES = 256


def _bucket(key: str) -> str:
    # A prefix of a string orders like the string itself, so bucket order is global key order.
    return key[:BUCKET_PREFIX_CHARS]


def _bucket_offsets(counts: dict[str, int]) -> dict[str, int]:
    """Samples in all earlier buckets, per bucket: the global rank of a bucket's first sample."""
    offsets: dict[str, int] = {}
    running = 0
    for bucket in sorted(counts):
        offsets[bucket] = running
        running += counts[bucket]
    return offsets


def _shard_openers(
    bucket_and_ids: tuple[str, Iterable[tuple[str, str]]], offsets: dict[str, int], samples_per_shard: int
) -> Iterable[tuple[str, str]]:
    """The sample identities in one bucket whose global rank starts a shard."""
    bucket, identities = bucket_and_ids
    first_rank = offsets[bucket]
    for position, identity in enumerate(sorted(identities)):
        if (first_rank + position) % samples_per_shard == 0:
            yield identity


def _assign_shard(sample: dict[str, Any], openers: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    return bisect.bisect_right(openers, sort_identity(sample)) - 1, sample


class WriteShardDoFn(beam.DoFn):
    """Write one shard from its samples (reusing a complete earlier copy); emits ``("00042.tar", n)``."""

    progress = StageProgress(STAGE, "samples")

    def __init__(self, shard_dir: str, twin: type[Table] = Sample) -> None:
        self.shard_dir = shard_dir
        self.twin = twin
        self.delay_s = 0.0

    def setup(self) -> None:
        self.written = counter(STAGE, "shards_written")
        self.samples = counter(STAGE, "samples")
        self.delay_s = float(os.environ.get(DELAY_ENV, "0") or 0)

    def process(self, element: tuple[int, Iterable[dict[str, Any]]]) -> Iterable[tuple[str, int]]:
        index, samples = element
        name = shard_name(index)
        count = write_shard(self.shard_dir, name, list(samples), reuse_existing=True, twin=self.twin)
        yield from self._written(name, count)

    def _written(self, name: str, count: int) -> Iterator[tuple[str, int]]:
        self.written.inc()
        self.samples.inc(count)
        self.progress.add(count)
        if self.delay_s:
            time.sleep(self.delay_s)
        yield f"{name}.tar", count


def spill_root(layout: CorpusLayout) -> str:
    """The folder under shards/ where the local runner's file shuffle spills samples (every run's folder in it)."""
    return FileSystems.join(layout.folder(Sample), SPILL_FOLDER)


def _spill_schema(with_image: type[Table]) -> pa.Schema:
    """A spill file's columns: the twin's without the image (every one nullable: rows are spilled as read, and
    write_shard fills defaults later, whatever samples/ allowed), then each image's size in its images file."""
    fields = [field.with_nullable(True) for field in with_image.schema() if field.name != SampleImage.IMAGE]
    return pa.schema([*fields, pa.field(SPILL_IMAGE_SIZE, pa.int64())])


def spill_images_path(path: str) -> str:
    """The images file beside a spill file: the spilled rows' image bytes, concatenated in the rows' order."""
    return path.removesuffix(".parquet") + SPILL_IMAGES_SUFFIX


class SpillByShard(beam.DoFn):
    """Assign each sample its shard and spill the rows, per shard, to files; emits ``(shard, path, rows)``.

    The file half of the local runner's file shuffle: image bytes go to disk here, and only the small tuples go
    through ``GroupByShard``. A worker holds at most ``buffer_bytes`` of rows (plus one row), whatever the input.
    """

    def __init__(
        self,
        spill_dir: str,
        twin: type[Table] = Sample,
        file_bytes: int = SPILL_FILE_BYTES,
        buffer_bytes: int = SPILL_BUFFER_BYTES,
    ) -> None:
        self.spill_dir = spill_dir
        self.with_image = WITH_IMAGE[twin]
        self.file_bytes = file_bytes
        self.buffer_bytes = buffer_bytes
        self._start()

    def _start(self) -> None:
        self._rows: dict[int, list[dict[str, Any]]] = {}
        self._bytes: dict[int, int] = {}
        self._total = 0

    def setup(self) -> None:
        self.schema = _spill_schema(self.with_image)
        self.spill_files = counter(STAGE, "spill_files")

    def start_bundle(self) -> None:
        self._start()

    def process(self, sample: dict[str, Any], openers: list[tuple[str, str]]) -> Iterator[tuple[int, str, int]]:
        index, _ = _assign_shard(sample, openers)
        image = sample.get(SampleImage.IMAGE)
        size = (len(image) if image is not None else 0) + ROW_OVERHEAD_BYTES
        self._rows.setdefault(index, []).append(self.with_image.project(sample))
        self._bytes[index] = self._bytes.get(index, 0) + size
        self._total += size
        if self._bytes[index] >= self.file_bytes:
            yield self._spill(index)
        elif self._total >= self.buffer_bytes:  # many shards open at once: the largest buffer goes to disk
            yield self._spill(max(self._bytes, key=lambda shard: self._bytes[shard]))

    def finish_bundle(self) -> Iterator[Any]:
        # Bounded input in the global window (as every stage's): the tuples belong at the end of that window.
        for index in sorted(self._rows):
            yield GlobalWindows.windowed_value_at_end_of_window(self._spill(index))

    def _spill(self, index: int) -> tuple[int, str, int]:
        """Write one shard's buffered rows, sorted in shard order (``sort_identity``): their images, one after the
        other, to an images file, then the rows without them (each image's size instead) to a Parquet spill file;
        each under a temporary name, then renamed. Returns ``(shard, spill file, rows)``.

        The images are written from the rows as they are (no table of them is built), and the shard's writer reads
        them back one at a time in the same order (``_SpilledImages``), however many spill files its shard has.
        """
        rows = self._rows.pop(index)
        self._total -= self._bytes.pop(index)
        rows.sort(key=sort_identity)
        path = FileSystems.join(self.spill_dir, f"{shard_name(index)}-{uuid.uuid4().hex}.parquet")
        images_path = spill_images_path(path)
        temporary = f"{images_path}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for row in rows:  # each row's image replaced by its size
                image = row.pop(SampleImage.IMAGE, None)
                row[SPILL_IMAGE_SIZE] = None if image is None else len(image)
                if image:
                    handle.write(image)
        FileSystems.rename([temporary], [images_path])
        table = pa.Table.from_pylist(rows, schema=self.schema)
        count = table.num_rows
        del rows
        buffer = io.BytesIO()  # as write_shard does: object-store handles need not support tell()
        pq.write_table(table, buffer)
        del table
        temporary = f"{path}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(buffer.getbuffer())
        FileSystems.rename([temporary], [path])
        self.spill_files.inc()
        return index, path, count


def _read_spill_rows(spills: Sequence[tuple[str, int]]) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Every row of the spill files named, without its image: ``image`` holds the image's size instead; and each row's
    place, ``(file, row)``. Each file is checked against the row count its writer reported."""
    rows: list[dict[str, Any]] = []
    places: list[tuple[int, int]] = []
    for number, (path, count) in enumerate(spills):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            table = pq.read_table(handle)
        if table.num_rows != count:
            raise RuntimeError(f"spill file {path} holds {table.num_rows} rows, its writer reported {count}")
        names = [SampleImage.IMAGE if name == SPILL_IMAGE_SIZE else name for name in table.column_names]
        rows.extend(table.rename_columns(names).to_pylist())
        places.extend((number, row) for row in range(count))
    return rows, places


class _SpilledImages:
    """The images of a shard's spill files in the order asked, each read from its images file when it is needed.

    Each file's rows are in shard order (``SpillByShard``), so writing a shard in order reads every images file front
    to back, one image at a time: the writer holds one image, whatever the number of spill files. At most
    ``MAX_OPEN_SPILL_FILES`` are open at once (the least recently read is closed, and reopened at its offset).
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self.handles: OrderedDict[int, Any] = OrderedDict()
        self.next_row: dict[int, int] = {}
        self.offsets: dict[int, int] = {}

    def take(self, places: Iterable[tuple[tuple[int, int], int | None]]) -> Iterator[bytes | None]:
        """The image of each ``((file, row), size)``, in the order given; rows of each file must come in order."""
        try:
            for (number, row), size in places:
                yield self._image(number, row, size)
        finally:
            self.close()

    def _image(self, number: int, row: int, size: int | None) -> bytes | None:
        expected = self.next_row.get(number, 0)
        if row != expected:
            raise RuntimeError(f"spill file {self.paths[number]} asked for row {row} where row {expected} is next")
        self.next_row[number] = row + 1
        if size is None:
            return None
        image = self._handle(number).read(size)
        if len(image) != size:
            raise RuntimeError(
                f"{spill_images_path(self.paths[number])} ends {size - len(image)} bytes short of row {row}'s image"
            )
        self.offsets[number] = self.offsets.get(number, 0) + size
        return image

    def _handle(self, number: int) -> Any:
        handle = self.handles.get(number)
        if handle is not None:
            self.handles.move_to_end(number)
            return handle
        if len(self.handles) >= MAX_OPEN_SPILL_FILES:
            _, oldest = self.handles.popitem(last=False)
            oldest.close()
        path = spill_images_path(self.paths[number])
        handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        if self.offsets.get(number):
            handle.seek(self.offsets[number])
        self.handles[number] = handle
        return handle

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()


def _captions_by_shard(
    joined: tuple[str, dict[str, list[Any]]], openers: list[tuple[str, str]]
) -> Iterable[tuple[int, tuple[str, str, str]]]:
    """A sample's caption, for the file shuffle: ``(shard, (candidate id, caption, caption model))`` per identity."""
    candidate_id, groups = joined
    captions = [row for row in groups["captions"] if row.get(Caption.ENHANCED_CAPTION) is not None]
    if not captions:
        return
    caption = (candidate_id, captions[0][Caption.ENHANCED_CAPTION], captions[0][Caption.CAPTION_MODEL])
    for identity in groups["identities"]:
        yield bisect.bisect_right(openers, identity) - 1, caption


class WriteSpilledShard(WriteShardDoFn):
    """``WriteShardDoFn`` for the file shuffle: one shard from the spill files ``SpillByShard`` wrote for it.

    Its element is ``(shard, [(path, rows), ...])``, or with captions ``(shard, {"spills": [...], "captions":
    [(candidate id, caption, model), ...]})``: captions travel by shard beside the spills, so no rows with image
    bytes go through the captions join either.
    """

    def process(self, element: tuple[int, Any]) -> Iterable[tuple[str, int]]:
        index, grouped = element
        spills, captions = (grouped["spills"], grouped["captions"]) if isinstance(grouped, dict) else (grouped, [])
        spills = sorted(spills)
        # Nothing is deleted here: a retried bundle reads the same files; FinishCorpus removes them all at the end.
        rows, places = _read_spill_rows(spills)  # without the images: a shard's images are never all held
        by_id = {candidate_id: (text, model) for candidate_id, text, model in captions}
        if by_id:  # as _with_caption does in the row shuffle: a caption and its model replace the sample's columns
            for row in rows:
                found = by_id.get(sort_identity(row)[1])
                if found is not None:
                    row[CaptionedSample.ENHANCED_CAPTION], row[CaptionedSample.CAPTION_MODEL] = found
        name = shard_name(index)
        table, sizes, order = normalise_shard(rows, name, self.twin)
        del rows
        images = _SpilledImages([path for path, _ in spills]).take(
            (places[position], sizes[position]) for position in order
        )
        count = write_sorted_shard(
            self.shard_dir, name, table, [sizes[position] for position in order], images, True, self.twin
        )
        yield from self._written(name, count)


def _stage_counts(layout: CorpusLayout) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for stage in STAGES:
        if stage != STAGE and layout.is_done(stage):
            counts[stage] = layout.read_success(stage).get("counters", {})
    return counts


def _extract_inputs(layout: CorpusLayout) -> list[str]:
    """The inputs named by extract's ``_SUCCESS`` (when it records them)."""
    if not layout.is_done("extract"):
        return []
    info = layout.read_success("extract")
    for name in ("inputs", "input"):
        value = info.get(name)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(v) for v in value]
    return []


class FinishCorpus(beam.DoFn):
    """After every shard exists: drop stale shards, then write ``sizes.json`` and ``manifest.json`` (last)."""

    def __init__(
        self,
        root: str,
        config: dict[str, Any],
        captions: dict[str, Any] | None = None,
        expected: int | None = None,
        spill_dir: str | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.captions = captions
        self.expected = expected
        self.spill_dir = spill_dir

    def process(self, _: Any, written: list[tuple[str, int]], warc_files: list[str]) -> Iterable[int]:
        layout = CorpusLayout(self.root)
        shard_dir = layout.folder(Sample)
        sizes = dict(sorted(written))
        if self.expected is not None and sum(sizes.values()) != self.expected:
            # Nothing is lost: a runner that delivered fewer samples than samples/ holds fails the stage here, before
            # sizes.json, manifest.json and _SUCCESS; a rerun keeps the complete shards and rewrites the short ones.
            raise RuntimeError(
                f"write-shards received {sum(sizes.values())} of the {self.expected} samples in samples/ "
                f"(shards {sizes}); nothing was marked done, run it again"
            )
        if self.spill_dir is not None:  # every shard is written and counted: the file shuffle's spills are done with
            delete_tree(self.spill_dir)
            remove_if_empty(FileSystems.split(self.spill_dir)[0])
        delete_stale_shards(shard_dir, len(sizes))
        write_sizes(shard_dir, sizes)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "config": self.config,
            "inputs": _extract_inputs(layout) or sorted(set(warc_files)),
            "warc_files": sorted(set(warc_files)),
            "stage_counts": _stage_counts(layout),
            "shard_count": len(sizes),
            "sample_count": sum(sizes.values()),
            "shards": sizes,
        }
        if self.captions is not None:
            manifest["captions"] = self.captions
        write_text_atomically(layout.manifest_path(), json.dumps(manifest, indent=2, sort_keys=True, default=str))
        yield len(sizes)


def prepare_resume(layout: CorpusLayout) -> None:
    """Delete what a killed run may have left that is not a complete shard: temporaries and stale markers."""
    shard_dir = layout.folder(Sample)
    delete_matching(layout.success_path(STAGE))
    delete_matching(FileSystems.join(shard_dir, SIZES_JSON))
    delete_matching(layout.manifest_path())
    delete_matching(FileSystems.join(shard_dir, f"*{TEMPORARY_MARK}*"))
    delete_tree(spill_root(layout))  # a killed local run's spill files: its shards are rewritten from samples/


def caption_record(layout: CorpusLayout, config: CorpusConfig) -> dict[str, Any]:
    """What the manifest records of the captions this run joins; refuses captions missing or made otherwise.

    The caption stage's ``_SUCCESS`` must record the same caption settings as this run's (``--caption-*``) and the
    filter-image run whose samples are being sharded, so every shard's captions are of these samples by this model.
    """
    settings = config.to_dict()["caption"]
    if not layout.is_done("caption"):
        raise UsageError(
            f"--caption-model is set but caption has not run on {layout.root}: run `python -m pipeline caption` "
            "with the same --caption-* flags first (or leave --caption-model empty for alt-text-only shards)"
        )
    success = layout.read_success("caption")
    fingerprint = success.get("fingerprint") or {}
    if fingerprint.get("config", {}).get("caption") != settings:
        raise UsageError(
            f"captions/ of {layout.root} was written with other caption settings than these --caption-* flags: "
            "run caption again with them (build-corpus does)"
        )
    if fingerprint.get("upstream", {}).get("filter-image") != layout.run_id("filter-image"):
        raise UsageError(f"captions/ of {layout.root} is of an earlier filter-image run: run caption again")
    record = dict(success.get("captions") or {})
    record.update(counters=success.get("counters", {}), run_id=success.get("run_id"))
    return record


def _with_caption(joined: tuple[str, dict[str, list[dict[str, Any]]]]) -> Iterable[dict[str, Any]]:
    """A sample with its caption (and the caption model) when its ``captions/`` row holds one."""
    _, groups = joined
    captions = [row for row in groups["captions"] if row.get(Caption.ENHANCED_CAPTION) is not None]
    for sample in groups["samples"]:
        if captions:
            sample = dict(
                sample,
                **{
                    CaptionedSample.ENHANCED_CAPTION: captions[0][Caption.ENHANCED_CAPTION],
                    CaptionedSample.CAPTION_MODEL: captions[0][Caption.CAPTION_MODEL],
                },
            )
        yield sample


def _row_count(pattern: str) -> int:
    """Rows of the Parquet files matching ``pattern``, from their footers."""
    total = 0
    for path in list_matching(pattern):
        with FileSystems.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def build(
    pipeline: beam.Pipeline,
    layout: CorpusLayout,
    config: CorpusConfig,
    options: PipelineOptions,
    file_shuffle: bool | None = None,
) -> None:
    """The write-shards graph: rank by key, assign shards, write them, then sizes.json and manifest.json.

    ``file_shuffle``: samples reach their shard writer through spill files (the default on the local runner) or
    through a GroupByKey of rows (the default elsewhere); tests set it to compare the two.
    """
    if file_shuffle is None:
        file_shuffle = runs_locally(options)
    samples_per_shard = config.shards.samples_per_shard
    if samples_per_shard < 1:
        raise ValueError("--samples-per-shard must be at least 1")
    captions = caption_record(layout, config) if config.caption.caption_model else None
    prepare_resume(layout)
    shard_dir = layout.folder(Sample)
    samples = pipeline | "ReadSamples" >> ReadTable(layout.glob(SampleImage))
    caption_rows = pipeline | "ReadCaptions" >> ReadTable(layout.glob(Caption)) if captions is not None else None
    if caption_rows is not None and not file_shuffle:  # joined by candidate_id: one captions/ row per sample
        samples = (
            {
                "samples": samples | "SampleById" >> beam.Map(lambda row: (row[SampleImage.CANDIDATE_ID], row)),
                "captions": caption_rows | "CaptionById" >> beam.Map(lambda row: (row[Caption.CANDIDATE_ID], row)),
            }
            | "JoinCaptions" >> beam.CoGroupByKey()
            | "WithCaption" >> beam.FlatMap(_with_caption)
        )
    # The ranking reads samples/ again with only the two identity columns (captions do not change a sample's rank):
    # were it fed from `samples`, that PCollection of rows with image bytes would have two consumers, which the local
    # runner holds whole in its memory between stages; with one consumer the image read fuses with AssignShard.
    identity_columns = [str(SampleImage.KEY), str(SampleImage.CANDIDATE_ID)]
    identities = (
        pipeline
        | "ReadIdentities" >> ReadTable(layout.glob(SampleImage), columns=identity_columns)
        | "SortIdentity" >> beam.Map(sort_identity)
    )
    offsets = (
        identities
        | "BucketOf" >> beam.Map(lambda identity: _bucket(identity[0]))
        | "CountPerBucket" >> beam.combiners.Count.PerElement()
        | "BucketCounts" >> beam.combiners.ToDict()
        | "BucketOffsets" >> beam.Map(_bucket_offsets)
    )
    openers = (
        identities
        | "KeyByBucket" >> beam.Map(lambda identity: (_bucket(identity[0]), identity))
        | "GroupByBucket" >> beam.GroupByKey()
        | "ShardOpeners"
        >> beam.FlatMap(_shard_openers, offsets=beam.pvalue.AsSingleton(offsets), samples_per_shard=samples_per_shard)
        | "OpenersList" >> beam.combiners.ToList()
        | "SortOpeners" >> beam.Map(sorted)
    )
    twin = Sample if captions is None else CaptionedSample
    progress = table_progress(STAGE, "samples", layout.glob(SampleImage), pipeline)
    spill_dir = FileSystems.join(spill_root(layout), uuid.uuid4().hex) if file_shuffle else None
    if spill_dir is not None:
        spills = (
            samples
            | "AssignShard"
            >> beam.ParDo(
                SpillByShard(spill_dir, twin, SPILL_FILE_BYTES, SPILL_BUFFER_BYTES),
                openers=beam.pvalue.AsSingleton(openers),
            )
            | "KeyByShard" >> beam.Map(lambda spill: (spill[0], (spill[1], spill[2])))
        )
        if caption_rows is None:
            grouped = spills | "GroupByShard" >> beam.GroupByKey()
        else:
            # Captions meet the samples' identities (no image bytes) by candidate id, then their shard's spills.
            shard_captions = (
                {
                    "identities": identities | "IdentityById" >> beam.Map(lambda identity: (identity[1], identity)),
                    "captions": caption_rows
                    | "CaptionById" >> beam.Map(lambda row: (str(row[Caption.CANDIDATE_ID] or ""), row)),
                }
                | "JoinCaptions" >> beam.CoGroupByKey()
                | "CaptionsByShard" >> beam.FlatMap(_captions_by_shard, openers=beam.pvalue.AsSingleton(openers))
            )
            grouped = {"spills": spills, "captions": shard_captions} | "GroupByShard" >> beam.CoGroupByKey()
        written = grouped | "WriteShard" >> beam.ParDo(with_progress(WriteSpilledShard(shard_dir, twin), progress))
    else:
        written = (
            samples
            | "AssignShard" >> beam.Map(_assign_shard, openers=beam.pvalue.AsSingleton(openers))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(with_progress(WriteShardDoFn(shard_dir, twin), progress))
        )
    warc_files = (
        pipeline
        | "ReadCandidateFiles" >> ReadTable(layout.glob(Candidate), columns=[str(Candidate.WARC_FILE)])
        | "WarcFile" >> beam.Map(lambda row: row[Candidate.WARC_FILE] or "")
        | "DistinctWarcFiles" >> beam.Distinct()
    )
    _ = (
        pipeline
        | "Finish" >> beam.Create([None])
        | "WriteSizesAndManifest"
        >> beam.ParDo(
            FinishCorpus(
                layout.root,
                config.to_dict(),
                captions,
                expected=_row_count(layout.glob(SampleImage)),
                spill_dir=spill_dir,
            ),
            written=beam.pvalue.AsList(written),
            warc_files=beam.pvalue.AsList(warc_files),
        )
    )


def run(argv: Sequence[str], file_shuffle: bool | None = None) -> dict[str, int]:
    """Run ``write-shards`` on ``--output`` (resuming from complete shards); returns its counters.

    ``file_shuffle`` forces how samples reach their shard writer (``build``'s; by default the runner decides).
    """
    return run_stage(STAGE, argv, functools.partial(build, file_shuffle=file_shuffle), clear_outputs=False)
