"""``write-shards``: samples/ -> exact, deterministic, resumable WebDataset shards with Parquet twins.

Shard contents and order are a pure function of the sample keys: samples are ranked by ``(key, candidate_id)``,
sample ``r`` goes to shard ``r // samples_per_shard``, and members are written in that order with fixed tar
metadata, so the same samples give byte-identical tars on any runner and any number of workers.

Scalable ranking (no global list on one worker): keys are counted per key-prefix bucket (a small side input of
counts); each bucket's keys are sorted on their own and the keys that open a shard (global rank a multiple of
``samples_per_shard``) are collected as a side input of shard boundaries; each sample then finds its shard by a
binary search over the boundaries, and samples are grouped by shard and written.

Resume: the stage does not clear its outputs. It deletes only temporary files and stale markers (``_SUCCESS``,
``sizes.json``, ``manifest.json``), keeps a shard whose Parquet twin already lists exactly the planned rows and whose
tar has the planned size, rewrites the others, deletes shards beyond the new shard count, and writes
``sizes.json`` then ``manifest.json`` last.

Files: ``shards/NNNNN.tar`` (``{key}.jpg``, ``{key}.txt`` alt text, ``{key}.json`` portable metadata),
``shards/NNNNN.parquet`` (Sample rows), ``shards/sizes.json``, ``manifest.json`` at the corpus root.
Test hook: ``ALTCORPUS_TEST_SHARD_DELAY_S`` (seconds, float) sleeps after each shard is written, so a test can kill
the process between shards; never set it in production.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import posixpath
import tarfile
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.config import CorpusConfig
from pipeline.core.layout import (
    STAGES,
    CorpusLayout,
    ReadTable,
    delete_matching,
    list_matching,
    read_text,
    write_text_atomically,
)
from pipeline.core.rules import counter
from pipeline.core.stage import run_stage
from schemas import SCHEMA_VERSION, Candidate, Sample, SampleImage

STAGE = "write-shards"
SIZES_JSON = "sizes.json"
SHARD_NAME_DIGITS = 5
#: Key-prefix length of the counting buckets: 16**4 = 65,536 buckets, a small side input at any corpus size.
BUCKET_PREFIX_CHARS = 4
#: Fixed tar member metadata: the same bytes wherever and whenever a shard is built.
TAR_MTIME = 0
TAR_MODE = 0o644
TEMPORARY_MARK = ".tmp-"
DELAY_ENV = "ALTCORPUS_TEST_SHARD_DELAY_S"

#: Columns that are local file paths: reduced to their base name in the tar's JSON so tars are portable.
_PATH_COLUMNS = (str(Candidate.WARC_FILE),)
#: Non-nullable string columns a caller of ``write_shard`` may leave out (e.g. a corpus not built from the web).
_REQUIRED_DEFAULTS = (str(Sample.IMAGE_URL), str(Sample.PAGE_URL))


def shard_name(index: int) -> str:
    """The zero-padded name of shard ``index`` (``00042``)."""
    return f"{index:0{SHARD_NAME_DIGITS}d}"


def sort_identity(sample: dict[str, Any]) -> tuple[str, str]:
    """What orders samples: the key, then the candidate id (ties only if a key repeats)."""
    return (str(sample[Sample.KEY]), str(sample.get(Sample.CANDIDATE_ID) or ""))


def _bucket(key: str) -> str:
    # A prefix of a string orders like the string itself, so bucket order is global key order.
    return key[:BUCKET_PREFIX_CHARS]


def _normalise(samples: Sequence[dict[str, Any]], name: str) -> pa.Table:
    """SampleImage rows (sorted, ``shard`` set, defaults filled) as an Arrow table: float32 etc. rounded once."""
    rows = []
    for sample in samples:
        row = SampleImage.project(sample)
        row[SampleImage.SHARD] = name
        if row[SampleImage.CANDIDATE_ID] is None:
            row[SampleImage.CANDIDATE_ID] = row[SampleImage.KEY]
        for column in _REQUIRED_DEFAULTS:
            if row[column] is None:
                row[column] = ""
        if row[SampleImage.KEY] is None or row[SampleImage.ALT_TEXT] is None or row[SampleImage.IMAGE] is None:
            raise ValueError(f"a shard sample needs key, alt_text and image bytes; got keys {sorted(sample)}")
        rows.append(row)
    rows.sort(key=sort_identity)
    keys = [row[SampleImage.KEY] for row in rows]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"shard {name}: duplicate sample keys {duplicated} would merge samples in WebDataset")
    return pa.Table.from_pylist(rows, schema=SampleImage.schema())


def _portable_metadata(row: dict[str, Any]) -> bytes:
    """The ``{key}.json`` member: every Sample column, local paths reduced to base names, stable formatting."""
    metadata = Sample.project(row)
    for column in _PATH_COLUMNS:
        if metadata.get(column):
            metadata[column] = posixpath.basename(str(metadata[column]).replace("\\", "/"))
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _members(row: dict[str, Any]) -> list[tuple[str, bytes]]:
    key = row[SampleImage.KEY]
    return [
        (f"{key}.jpg", row[SampleImage.IMAGE]),
        (f"{key}.txt", row[SampleImage.ALT_TEXT].encode("utf-8")),
        (f"{key}.json", _portable_metadata(row)),
    ]


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def tar_size(samples: Sequence[dict[str, Any]], shard_name: str) -> int:
    """The exact byte size of the tar ``write_shard`` writes for these samples, computed without building it."""
    return _tar_size(_normalise(samples, shard_name.removesuffix(".tar")).to_pylist())


def _tar_size(rows: Sequence[dict[str, Any]]) -> int:
    total = sum(tarfile.BLOCKSIZE + _padded(len(data)) for row in rows for _, data in _members(row))
    total += 2 * tarfile.BLOCKSIZE  # end-of-archive marker
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _write_tar(handle: Any, rows: Sequence[dict[str, Any]]) -> None:
    # Stream mode ("w|") needs no seek/tell, so the same code writes to gs:// and s3:// handles.
    with tarfile.open(fileobj=handle, mode="w|", format=tarfile.USTAR_FORMAT) as archive:
        for row in rows:
            for member_name, data in _members(row):
                info = tarfile.TarInfo(member_name)
                info.size = len(data)
                info.mtime = TAR_MTIME
                info.mode = TAR_MODE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                archive.addfile(info, io.BytesIO(data))


def _temporary(path: str) -> str:
    return f"{path}{TEMPORARY_MARK}{uuid.uuid4().hex}"


def _rename_over(temporary: str, path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def _paths(shard_dir: str, name: str) -> tuple[str, str]:
    return FileSystems.join(shard_dir, f"{name}.tar"), FileSystems.join(shard_dir, f"{name}.parquet")


def _existing_shard_matches(shard_dir: str, name: str, table: pa.Table, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a complete shard from an earlier run holds exactly these samples (resume reuses it)."""
    tar_path, parquet_path = _paths(shard_dir, name)
    if not (FileSystems.exists(tar_path) and FileSystems.exists(parquet_path)):
        return False
    metadata = FileSystems.match([tar_path])[0].metadata_list
    if not metadata or metadata[0].size_in_bytes != _tar_size(rows):
        return False
    try:
        with FileSystems.open(parquet_path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            existing = pq.read_table(io.BytesIO(handle.read()))
    except Exception:  # an unreadable twin is simply rewritten
        return False
    return existing.to_pylist() == table.select(Sample.names()).to_pylist()


def write_shard(shard_dir: str, shard_name: str, samples: list[dict[str, Any]], reuse_existing: bool = False) -> int:
    """Write one shard: ``{shard_name}.tar`` then its Parquet twin, each via a temporary name; returns its size.

    ``samples`` are SampleImage rows (at least ``key``, ``alt_text`` and JPEG ``image`` bytes; other columns may be
    missing). They are sorted by key here, so the caller's order does not matter. With ``reuse_existing``, a complete
    shard already holding exactly these samples is kept as it is (resume).
    """
    name = shard_name.removesuffix(".tar")
    table = _normalise(samples, name)
    rows = table.to_pylist()
    if reuse_existing and _existing_shard_matches(shard_dir, name, table, rows):
        return len(rows)
    tar_path, parquet_path = _paths(shard_dir, name)
    # The twin goes first: a tar without its twin, or a twin whose tar is being rewritten, is never "complete".
    delete_matching(parquet_path)
    temporary = _temporary(tar_path)
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        _write_tar(handle, rows)
    _rename_over(temporary, tar_path)
    buffer = io.BytesIO()
    pq.write_table(table.select(Sample.names()).cast(Sample.schema()), buffer)
    temporary = _temporary(parquet_path)
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(buffer.getvalue())
    _rename_over(temporary, parquet_path)
    return len(rows)


def write_sizes(shard_dir: str, sizes: dict[str, int]) -> None:
    """``sizes.json`` (``{"00000.tar": n, ...}``), which open_clip reads to know the dataset size."""
    write_text_atomically(FileSystems.join(shard_dir, SIZES_JSON), json.dumps(dict(sorted(sizes.items())), indent=1))


def delete_stale_shards(shard_dir: str, shard_count: int) -> None:
    """Delete shards numbered ``shard_count`` or above (left by an earlier, larger run)."""
    for path in list_matching(FileSystems.join(shard_dir, "*.tar")) + list_matching(
        FileSystems.join(shard_dir, "*.parquet")
    ):
        stem = posixpath.basename(path).split(".")[0]
        if stem.isdigit() and int(stem) >= shard_count:
            FileSystems.delete([path])


def write_corpus(samples: Iterable[dict[str, Any]], output_dir: str, samples_per_shard: int = 10_000) -> dict[str, int]:
    """Write samples as ``{output_dir}/shards/NNNNN.tar`` + ``.parquet`` and ``sizes.json``; returns the sizes.

    Plain Python, one process: shards are assigned by sorted ``(key, candidate_id)`` exactly as ``write-shards``
    assigns them, so both give the same tars for the same samples.
    """
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be at least 1")
    ordered = sorted(samples, key=sort_identity)
    shard_dir = CorpusLayout(output_dir).folder(Sample)
    sizes: dict[str, int] = {}
    for index, start in enumerate(range(0, len(ordered), samples_per_shard)):
        name = shard_name(index)
        sizes[f"{name}.tar"] = write_shard(shard_dir, name, ordered[start : start + samples_per_shard])
    delete_stale_shards(shard_dir, len(sizes))
    write_sizes(shard_dir, sizes)
    return sizes


# -- the Beam stage -------------------------------------------------------------------------------------------------


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

    def __init__(self, shard_dir: str) -> None:
        self.shard_dir = shard_dir
        self.delay_s = 0.0

    def setup(self) -> None:
        self.written = counter(STAGE, "shards_written")
        self.samples = counter(STAGE, "samples")
        self.delay_s = float(os.environ.get(DELAY_ENV, "0") or 0)

    def process(self, element: tuple[int, Iterable[dict[str, Any]]]) -> Iterable[tuple[str, int]]:
        index, samples = element
        name = shard_name(index)
        count = write_shard(self.shard_dir, name, list(samples), reuse_existing=True)
        self.written.inc()
        self.samples.inc(count)
        if self.delay_s:
            time.sleep(self.delay_s)
        yield f"{name}.tar", count


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

    def __init__(self, root: str, config: dict[str, Any]) -> None:
        self.root = root
        self.config = config

    def process(self, _: Any, written: list[tuple[str, int]], warc_files: list[str]) -> Iterable[int]:
        layout = CorpusLayout(self.root)
        shard_dir = layout.folder(Sample)
        sizes = dict(sorted(written))
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
        write_text_atomically(layout.manifest_path(), json.dumps(manifest, indent=2, sort_keys=True, default=str))
        yield len(sizes)


def prepare_resume(layout: CorpusLayout) -> None:
    """Delete what a killed run may have left that is not a complete shard: temporaries and stale markers."""
    shard_dir = layout.folder(Sample)
    delete_matching(layout.success_path(STAGE))
    delete_matching(FileSystems.join(shard_dir, SIZES_JSON))
    delete_matching(layout.manifest_path())
    delete_matching(FileSystems.join(shard_dir, f"*{TEMPORARY_MARK}*"))


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The write-shards graph: rank by key, assign shards, write them, then sizes.json and manifest.json."""
    samples_per_shard = config.shards.samples_per_shard
    if samples_per_shard < 1:
        raise ValueError("--samples-per-shard must be at least 1")
    prepare_resume(layout)
    shard_dir = layout.folder(Sample)
    samples = pipeline | "ReadSamples" >> ReadTable(layout.glob(SampleImage))
    identities = samples | "SortIdentity" >> beam.Map(sort_identity)
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
    written = (
        samples
        | "AssignShard" >> beam.Map(_assign_shard, openers=beam.pvalue.AsSingleton(openers))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(WriteShardDoFn(shard_dir))
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
            FinishCorpus(layout.root, config.to_dict()),
            written=beam.pvalue.AsList(written),
            warc_files=beam.pvalue.AsList(warc_files),
        )
    )


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``write-shards`` on ``--output`` (resuming from complete shards); returns its counters."""
    return run_stage(STAGE, argv, build, clear_outputs=False)


def read_sizes(shard_dir: str) -> dict[str, int]:
    """The ``sizes.json`` of a shard folder."""
    return json.loads(read_text(FileSystems.join(shard_dir, SIZES_JSON)))
