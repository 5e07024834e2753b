"""The corpus directory: where each stage's tables live, and how they are read, written and marked done.

All paths go through Beam's ``FileSystems`` so the same code works on local disk, ``gs://`` and ``s3://``.
Tables are written by ``beam.io.WriteToParquet``, which writes to a temporary location and renames on
finalisation, so nothing is ever half-written under its final name.

A stage writes its new tables beside the old ones, under ``_staging/<stage>-<run id>/`` (``StagedLayout``), and
``promote`` swaps them in only after the Beam job succeeded: a mistake or a crash never costs the old outputs. The
swap is journaled first (``PROMOTION``), so one that stops half-way is finished by the next run
(``finish_promotions``), never left with the old files gone and the new ones not all in.
Each ``_SUCCESS`` records a ``run_id`` and a ``fingerprint`` (what the stage read, the config it used), so a stage
whose upstream was re-run since is known to be stale (``stale_stages``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipeline.core.registry import STAGE_SPECS, STAGES, stage_spec
from schemas import SCHEMA_VERSION, Rejection, Table

log = logging.getLogger("altcorpus")

__all__ = [
    "PARTS",
    "PROMOTION",
    "STAGES",
    "STAGING",
    "CorpusLayout",
    "ReadTable",
    "StagedLayout",
    "WriteTable",
    "WriteTableBatches",
    "new_run_id",
]

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
#: The folder (under the corpus root) where stages write their new outputs until they succeed.
STAGING = "_staging"
#: How Beam's file sinks name their temporary folders beside the final files (left behind by a killed job).
BEAM_TEMP = "beam-temp-"
#: The folder (under the corpus root) where a resumable stage keeps its finished parts until the stage succeeds.
PARTS = "_parts"
#: A staging folder's promotion journal: written before the swap starts, gone with the folder when it is done.
PROMOTION = "_PROMOTION.json"


class CorpusLayout:
    """Paths of every table under one corpus root (a local directory or a ``gs://``/``s3://`` prefix)."""

    def __init__(self, root: str) -> None:
        if not root:
            raise ValueError("a corpus needs an --output directory")
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        """A path under the corpus root."""
        return FileSystems.join(self.root, *parts)

    def folder(self, table: type[Table] | str) -> str:
        """The folder of a table (or a named folder)."""
        return self.path(table if isinstance(table, str) else table.FOLDER)

    def prefix(self, table: type[Table] | str, name: str = "part") -> str:
        """The file prefix a Beam sink writes ``{prefix}-00000-of-00004.parquet`` under."""
        return FileSystems.join(self.folder(table), name)

    def glob(self, table: type[Table] | str, name: str = "*") -> str:
        """Glob matching every Parquet file of a table."""
        return FileSystems.join(self.folder(table), f"{name}.parquet")

    def rejected_prefix(self, stage: str) -> str:
        """Prefix of one stage's rejection files: ``rejected/{stage}-00000-of-00001.parquet``."""
        return self.prefix(Rejection, stage)

    def rejected_glob(self, stage: str | None = None) -> str:
        """Glob of one stage's rejection files, or all of them."""
        return self.glob(Rejection, f"{stage}-*" if stage else "*")

    def success_path(self, stage: str) -> str:
        """The ``_SUCCESS`` marker of a stage."""
        return FileSystems.join(self.folder(stage_spec(stage).folder), SUCCESS)

    def manifest_path(self) -> str:
        """``manifest.json`` at the corpus root."""
        return self.path(MANIFEST)

    # -- markers -------------------------------------------------------------------------------------------------
    def is_done(self, stage: str) -> bool:
        """Whether the stage finished (its ``_SUCCESS`` exists)."""
        return FileSystems.exists(self.success_path(stage))

    def read_success(self, stage: str) -> dict[str, Any]:
        """The JSON a finished stage wrote into its ``_SUCCESS`` (counters, config, timing)."""
        with FileSystems.open(self.success_path(stage), compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return json.loads(handle.read().decode("utf-8"))

    def mark_done(self, stage: str, info: dict[str, Any]) -> None:
        """Write the stage's ``_SUCCESS`` last, through a temporary name, so it only exists when all else does."""
        payload = dict(info, stage=stage, schema_version=SCHEMA_VERSION, finished_at=time.time())
        write_text_atomically(self.success_path(stage), json.dumps(payload, indent=2, sort_keys=True, default=str))

    def run_id(self, stage: str) -> str | None:
        """The id of the stage's last successful run (``None`` when not done, or done before run ids existed)."""
        return self.read_success(stage).get("run_id") if self.is_done(stage) else None

    def stale_stages(self) -> list[str]:
        """Done stages that read outputs replaced since (an upstream stage re-run, undone or itself stale).

        A stage whose ``_SUCCESS`` predates fingerprints is trusted (nothing to compare).
        """
        stale: list[str] = []
        for spec in STAGE_SPECS:
            if not self.is_done(spec.name):
                continue
            recorded = (self.read_success(spec.name).get("fingerprint") or {}).get("upstream")
            if recorded is None:
                continue
            if any(up in stale or recorded.get(up) != self.run_id(up) for up in spec.inputs):
                stale.append(spec.name)
        return stale

    def owned_folders(self, stage: str) -> tuple[str, ...]:
        """The folders a stage writes whole: its main output's (with ``_SUCCESS``) and its extra outputs'."""
        spec = stage_spec(stage)
        return (spec.folder, *spec.extra_folders)

    def parts_folder(self, stage: str, digest: str) -> str:
        """Where a resumable stage keeps the finished parts of runs with one fingerprint digest (kept across runs)."""
        return self.path(PARTS, f"{stage}-{digest}")

    def staged(self, stage: str, run_id: str) -> StagedLayout:
        """A layout whose writes for one run of ``stage`` go to its own staging folder beside the corpus's tables."""
        return StagedLayout(self.root, stage, run_id)

    def clean_temporaries(self, stage: str) -> None:
        """Remove what an interrupted run of ``stage`` left: its staging folders and Beam's temporary folders."""
        staging_root = self.path(STAGING)
        for directory in top_folders(staging_root, f"{stage}-*"):
            delete_tree(directory)
        for folder in self.owned_folders(stage):
            for directory in top_folders(self.folder(folder), f"{BEAM_TEMP}*"):
                delete_tree(directory)
        for directory in top_folders(self.folder(Rejection), f"{BEAM_TEMP}{stage}-*"):
            delete_tree(directory)
        remove_if_empty(staging_root)

    def promote(self, staged: StagedLayout, info: dict[str, Any]) -> None:
        """Replace a stage's outputs by what its successful run staged, then mark it done with ``info``.

        A journal goes first (``PROMOTION``, in the staging folder: the staged file names per folder and the
        ``_SUCCESS`` to write), so a promotion that stops half-way (a crash, a refused rename) is finished by the next
        run (``finish_promotions``) instead of leaving a corpus with the old files gone and the new ones not all in.
        """
        stage = staged.stage
        plan = {
            "stage": stage,
            "run_id": staged.run_id,
            "folders": {
                folder: _names(list_matching(FileSystems.join(staged.folder(folder), "*")))
                for folder in self.owned_folders(stage)
            },
            "rejected": _names(list_matching(staged.rejected_glob(stage))),
            "success": info,
        }
        write_text_atomically(
            FileSystems.join(staged.root, PROMOTION), json.dumps(plan, indent=1, sort_keys=True, default=str)
        )
        self._carry_out(staged, plan)

    def finish_promotions(self) -> list[str]:
        """Finish every promotion a run journaled and did not complete (in staging-folder order); returns their
        stages."""
        finished = []
        for directory in top_folders(self.path(STAGING), "*"):
            journal = FileSystems.join(directory, PROMOTION)
            if not FileSystems.exists(journal):
                continue  # a run that never succeeded: clean_temporaries removes it
            plan = json.loads(read_text(journal))
            stage = plan["stage"]
            log.warning("%s: finishing the promotion of %s, which stopped half-way", stage, directory)
            self._carry_out(StagedLayout(self.root, stage, plan["run_id"]), plan)
            finished.append(stage)
        return finished

    def _carry_out(self, staged: StagedLayout, plan: dict[str, Any]) -> None:
        """Do (or redo) a journaled promotion; every step may be repeated after a crash.

        The marker goes first, so until ``mark_done`` the stage reads as not done. A file in a target folder that the
        plan does not name is an old output and is deleted; a staged file still there is renamed in (over an old one of
        the same name); one already renamed is kept.
        """
        stage = plan["stage"]
        delete_matching(self.success_path(stage))
        for folder, names in plan["folders"].items():
            target = self.folder(folder)
            _delete_unnamed(list_matching(FileSystems.join(target, "*")), names)
            move_files(list_matching(FileSystems.join(staged.folder(folder), "*")), target)
        _delete_unnamed(list_matching(self.rejected_glob(stage)), plan["rejected"])
        move_files(list_matching(staged.rejected_glob(stage)), self.folder(Rejection))
        self.mark_done(stage, plan["success"])
        delete_tree(staged.root)
        remove_if_empty(self.path(STAGING))


def _names(paths: list[str]) -> list[str]:
    return [FileSystems.split(path)[1] for path in paths]


def _delete_unnamed(paths: list[str], names: list[str]) -> None:
    """Delete the files among ``paths`` whose names are not in ``names``."""
    keep = set(names)
    unnamed = [path for path in paths if FileSystems.split(path)[1] not in keep]
    if unnamed:
        FileSystems.delete(unnamed)


def new_run_id() -> str:
    """A unique, sortable id for one run of a stage (UTC time and a random suffix)."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class StagedLayout(CorpusLayout):
    """The corpus as one run of a stage sees it: it reads the corpus's tables, but writes its own under staging.

    ``root`` is the staging folder, so ``folder``/``prefix`` of the stage's tables point there; every other table
    (what the stage reads) resolves under the corpus root.
    """

    def __init__(self, corpus_root: str, stage: str, run_id: str) -> None:
        self.corpus = CorpusLayout(corpus_root)
        super().__init__(self.corpus.path(STAGING, f"{stage}-{run_id}"))
        self.stage = stage
        self.run_id = run_id
        self.writes = set(self.corpus.owned_folders(stage))

    def folder(self, table: type[Table] | str) -> str:
        name = table if isinstance(table, str) else table.FOLDER
        return super().folder(table) if name in self.writes else self.corpus.folder(table)

    def rejected_prefix(self, stage: str) -> str:
        if stage != self.stage:
            raise ValueError(f"a staged run of {self.stage} cannot write the rejections of {stage}")
        return FileSystems.join(self.path(Rejection.FOLDER), stage)

    def rejected_glob(self, stage: str | None = None) -> str:
        """This run's staged rejections (only its own stage's exist here)."""
        return FileSystems.join(self.path(Rejection.FOLDER), f"{stage or self.stage}-*.parquet")

    def success_path(self, stage: str) -> str:
        return self.corpus.success_path(stage)

    def manifest_path(self) -> str:
        return self.corpus.manifest_path()

    def parts_folder(self, stage: str, digest: str) -> str:
        return self.corpus.parts_folder(stage, digest)


def delete_matching(pattern: str) -> None:
    """Delete every file matching a glob; no error when nothing matches."""
    matches = FileSystems.match([pattern])[0].metadata_list
    if matches:
        FileSystems.delete([m.path for m in matches])


def delete_tree(directory: str) -> None:
    """Delete a folder and everything under it (on object stores: every object under the prefix)."""
    delete_matching(FileSystems.join(directory, "**"))
    if FileSystems.exists(directory):  # a local folder (object stores have none once their objects are gone)
        FileSystems.delete([directory])


def remove_if_empty(directory: str) -> None:
    """Remove a local folder that holds no file any more (object stores have no empty folders)."""
    if FileSystems.exists(directory) and not list_matching(FileSystems.join(directory, "**")):
        FileSystems.delete([directory])


def top_folders(parent: str, pattern: str) -> list[str]:
    """The sub-folders of ``parent`` matching ``pattern`` that hold files, found through the files they hold."""
    base = parent.rstrip("/") + "/"
    found = set()
    for path in list_matching(FileSystems.join(parent, pattern, "**")):
        found.add(base + path[len(base) :].split("/", 1)[0])
    return sorted(found)


def move_files(paths: list[str], folder: str) -> None:
    """Rename files into ``folder`` under their own names (per file: object stores rename one object at a time)."""
    if not paths:
        return
    if not FileSystems.exists(folder):
        FileSystems.mkdirs(folder)
    FileSystems.rename(paths, [FileSystems.join(folder, FileSystems.split(path)[1]) for path in paths])


def list_matching(pattern: str) -> list[str]:
    """Sorted paths matching a glob or path (empty when none): ``match_pattern``'s."""
    return sorted(item.path for item in match_pattern(pattern))


def match_pattern(pattern: str) -> list[Any]:
    """Beam ``FileMetadata`` of the files a path or glob matches (empty when none, or when it cannot be listed).

    A plain path (no glob) takes one metadata call (one HEAD on ``s3://``): Beam's ``match`` of one asks ``exists`` and
    then ``metadata``, two requests one after the other per file, made in the launching process before the job starts.
    """
    try:
        if not any(char in pattern for char in "*?["):
            return [FileSystems.get_filesystem(pattern).metadata(pattern)]
        return list(FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # a file or a glob's directory that does not exist, a refusal: nothing matched
        return []


def read_row_groups(path: str, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """``(row group, its columns)`` of a Parquet file, one row group at a time (never the whole file at once)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            yield group, parquet.read_row_group(group, columns=columns)


def write_bytes_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename: readers see all of it or nothing."""
    temporary = f"{path}.tmp-{time.time_ns()}"
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def write_text_atomically(path: str, text: str) -> None:
    """``write_bytes_atomically`` for UTF-8 text."""
    write_bytes_atomically(path, text.encode("utf-8"))


def read_text(path: str) -> str:
    """Read a whole (small) text file from any Beam filesystem."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read().decode("utf-8")


class ReadTable(beam.PTransform):
    """Read every row of a table (as dicts) from Parquet files matching a glob; no files gives no rows.

    ``beam.io.ReadFromParquet`` does the same, but its row groups, read as Arrow tables, pass between its two steps
    untyped: Beam's element-size sampling then sizes each table by pickling it, image bytes included (103.7 MB of
    tables pickled in the sample's ``build-corpus``, 414 MB in ``bench/shards.py``'s write-shards). Here the
    row groups are typed ``pa.Table``, so Beam sizes them with ``TableCoder`` (their buffers' size, no copy).
    """

    def __init__(self, pattern: str, columns: list[str] | None = None) -> None:
        super().__init__()
        self.pattern = pattern
        self.columns = columns

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if not list_matching(self.pattern):
            return pbegin | "NoFiles" >> beam.Create([])
        return (
            pbegin
            | "ReadParquet"
            >> beam.io.ReadFromParquetBatched(self.pattern, columns=self.columns).with_output_types(pa.Table)
            | "ToRows" >> beam.FlatMap(_table_rows)
        )


def _table_rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    """A row group's rows as dicts, column name to Python value (what ``beam.io.ReadFromParquet`` yields).

    A thousand rows at a time: a row group of large rows is never all Python objects at once.
    """
    for batch in table.to_batches(max_chunksize=1024):
        yield from batch.to_pylist()


class WriteTable(beam.PTransform):
    """Write rows (dicts) as Parquet files ``{prefix}-SSSSS-of-NNNNN.parquet`` with a table's schema.

    What ``beam.io.WriteToParquet`` does (rows gathered a thousand at a time into record batches, the batches into
    row groups of about ``ROW_GROUP_BYTES``), but with its row groups typed ``pa.Table``: Beam's own writer passes
    them to its sink untyped, and its element-size sampling pickled each (64 MB in the sample's filter-image, image
    bytes included), where ``TableCoder`` sizes them from their buffers.
    """

    def __init__(self, prefix: str, table: type[Table], num_shards: int = 0) -> None:
        super().__init__()
        self.prefix = prefix
        self.table = table
        self.num_shards = num_shards

    def expand(self, rows: beam.PCollection) -> beam.pvalue.PDone:
        table = self.table
        schema = table.schema()
        return (
            rows
            | "Project" >> beam.Map(table.project)
            | "RowGroups" >> beam.ParDo(_GatherRows(schema, ROW_GROUP_BYTES)).with_output_types(pa.Table)
            | "WriteParquet" >> _write_row_groups(self.prefix, schema, self.num_shards)
        )


def _write_row_groups(prefix: str, schema: pa.Schema, num_shards: int) -> beam.PTransform:
    """Beam's Parquet sink writing each Arrow table it gets as one row group (``WriteTable``'s and
    ``WriteTableBatches``' files: the same names, schema and options)."""
    return beam.io.WriteToParquetBatched(
        prefix,
        schema,
        file_name_suffix=".parquet",
        num_shards=num_shards,
        shard_name_template="-SSSSS-of-NNNNN",
    )


#: Arrow bytes a batched writer gathers before writing them as one Parquet row group (both writers, so row groups
#: are alike). A row group is what a worker holds to write it and what the next stage reads as one element, so it
#: sets memory on both sides: at ``WriteToParquet``'s 64 MB a 1 GB simulated crawl's candidates/ came in 142k-row
#: groups where a 100 MB crawl's were 34k (its inputs fill no cap), and filter-text's per-group step held 4x the rows.
#: 16 MB (about 35k candidate rows, 300 images) is filled by a 100 MB crawl already.
ROW_GROUP_BYTES = 16 * 1024 * 1024


class _GatherRowGroups(beam.DoFn):
    """Arrow record batches -> tables of about ``row_group_bytes`` each, one Parquet row group apiece.

    A record batch per WARC file or per thousand rows would make as many tiny row groups; gathering bounds what one
    worker holds to ``row_group_bytes`` (plus one batch) per table, whatever the input's size.
    """

    def __init__(self, schema: pa.Schema, row_group_bytes: int) -> None:
        self.schema = schema
        self.row_group_bytes = row_group_bytes
        self._batches: list[pa.RecordBatch] = []
        self._bytes = 0

    def start_bundle(self) -> None:
        self._batches, self._bytes = [], 0

    def process(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"a record batch does not have the table's schema: {batch.schema} != {self.schema}")
        if batch.num_rows:
            self._batches.append(batch)
            self._bytes += batch.nbytes
        if self._batches and self._bytes >= self.row_group_bytes:
            yield self._table()

    def finish_bundle(self) -> Iterator[Any]:
        # Bounded input in the global window (as every stage's): the table belongs at the end of that window.
        if self._batches:
            yield GlobalWindows.windowed_value_at_end_of_window(self._table())

    def _table(self) -> pa.Table:
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        self._batches, self._bytes = [], 0
        return table


class _GatherRows(_GatherRowGroups):
    """Row dicts -> record batches -> tables of about ``row_group_bytes``, one row group each.

    Rows are converted as ``beam.io.WriteToParquet`` converts them (a field missing from a row is null). A batch is
    ``batch_rows`` rows at most and about ``1 / BATCHES_PER_ROW_GROUP`` of a row group (its size per row learnt from
    the batch before; the first is ``FIRST_BATCH_ROWS``): a thousand rows of 60 KB images held as Python objects,
    then converted, were 120 MB where the row group is 16.
    """

    FIRST_BATCH_ROWS = 16
    BATCHES_PER_ROW_GROUP = 16

    def __init__(self, schema: pa.Schema, row_group_bytes: int, batch_rows: int = 1000) -> None:
        super().__init__(schema, row_group_bytes)
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._limit = min(batch_rows, self.FIRST_BATCH_ROWS)

    def start_bundle(self) -> None:
        super().start_bundle()
        self._rows = []

    def process(self, row: dict[str, Any]) -> Iterator[pa.Table]:
        self._rows.append(row)
        if len(self._rows) >= self._limit:
            yield from super().process(self._batch())

    def finish_bundle(self) -> Iterator[Any]:
        if self._rows:
            self._batches.append(self._batch())
        yield from super().finish_bundle()

    def _batch(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
        self._rows = []
        if batch.num_rows:
            per_row = max(1, batch.nbytes // batch.num_rows)
            self._limit = max(1, min(self.batch_rows, self.row_group_bytes // self.BATCHES_PER_ROW_GROUP // per_row))
        return batch


class RecordBatchCoder(beam.coders.Coder):
    """Arrow record batches as Arrow IPC streams, their size estimated from their buffers.

    Beam samples the size of the elements a step outputs; for a type without a coder it pickles the element to
    measure it: on extract's 150 MB bench WARC, 4% of the stage's samples (py-spy) went to pickling its record
    batches and row-group tables. Registered for ``pa.RecordBatch``; a step that outputs them declares it.
    """

    def encode(self, batch: pa.RecordBatch | pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write(batch)  # a batch or a table: the subclass shares it
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        return pa.ipc.open_stream(encoded).read_next_batch()

    def estimate_size(self, batch: pa.RecordBatch) -> int:
        return batch.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> type:
        return pa.RecordBatch


class TableCoder(RecordBatchCoder):
    """``RecordBatchCoder`` for Arrow tables (``WriteTableBatches``' row groups)."""

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(encoded).read_all()

    def to_type_hint(self) -> type:
        return pa.Table


beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
beam.coders.registry.register_coder(pa.Table, TableCoder)


class WriteTableBatches(beam.PTransform):
    """Write Arrow record batches of a table's schema as Parquet files ``{prefix}-SSSSS-of-NNNNN.parquet``.

    ``WriteTable`` for a stage that builds its rows in batches: the same files, schema and row-group size, without
    per-row Beam elements (each costs a pickle, a windowed value and a per-row write call, many times the
    extraction itself). Empty batches are dropped.
    """

    def __init__(
        self, prefix: str, table: type[Table], num_shards: int = 0, row_group_bytes: int = ROW_GROUP_BYTES
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.table = table
        self.num_shards = num_shards
        self.row_group_bytes = row_group_bytes

    def expand(self, batches: beam.PCollection) -> beam.pvalue.PDone:
        schema = self.table.schema()
        return (
            batches
            | "RowGroups" >> beam.ParDo(_GatherRowGroups(schema, self.row_group_bytes)).with_output_types(pa.Table)
            | "WriteParquet" >> _write_row_groups(self.prefix, schema, self.num_shards)
        )
