"""The corpus directory: where each stage's tables live, and how they are read, written and marked done.

All paths go through Beam's ``FileSystems`` so the same code works on local disk, ``gs://`` and ``s3://``.
Tables are written by ``beam.io.WriteToParquet``, which writes to a temporary location and renames on
finalisation, so nothing is ever half-written under its final name.
"""

from __future__ import annotations

import json
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.core.registry import STAGES, stage_spec
from schemas import SCHEMA_VERSION, Rejection, Table

__all__ = ["STAGES", "CorpusLayout", "ReadTable", "WriteTable"]

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"


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

    def clear_stage(self, stage: str) -> None:
        """Remove a stage's previous outputs (marker first) so a re-run never mixes old and new files."""
        spec = stage_spec(stage)
        delete_matching(self.success_path(stage))
        delete_matching(FileSystems.join(self.folder(spec.folder), "*"))
        for folder in spec.extra_folders:
            delete_matching(FileSystems.join(self.folder(folder), "*"))
        delete_matching(self.rejected_glob(stage))


def delete_matching(pattern: str) -> None:
    """Delete every file matching a glob; no error when nothing matches."""
    matches = FileSystems.match([pattern])[0].metadata_list
    if matches:
        FileSystems.delete([m.path for m in matches])


def list_matching(pattern: str) -> list[str]:
    """Sorted paths matching a glob (empty when none)."""
    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # Beam raises when a pattern's directory does not exist
        return []
    return sorted(m.path for m in result.metadata_list)


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
    """Read every row of a table (as dicts) from Parquet files matching a glob; no files gives no rows."""

    def __init__(self, pattern: str, columns: list[str] | None = None) -> None:
        super().__init__()
        self.pattern = pattern
        self.columns = columns

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if not list_matching(self.pattern):
            return pbegin | "NoFiles" >> beam.Create([])
        return pbegin | "ReadParquet" >> beam.io.ReadFromParquet(self.pattern, columns=self.columns)


class WriteTable(beam.PTransform):
    """Write rows (dicts) as Parquet files ``{prefix}-SSSSS-of-NNNNN.parquet`` with a table's schema."""

    def __init__(self, prefix: str, table: type[Table], num_shards: int = 0) -> None:
        super().__init__()
        self.prefix = prefix
        self.table = table
        self.num_shards = num_shards

    def expand(self, rows: beam.PCollection) -> beam.pvalue.PDone:
        table = self.table
        return (
            rows
            | "Project" >> beam.Map(table.project)
            | "WriteParquet"
            >> beam.io.WriteToParquet(
                self.prefix,
                table.schema(),
                file_name_suffix=".parquet",
                num_shards=self.num_shards,
                shard_name_template="-SSSSS-of-NNNNN",
            )
        )
