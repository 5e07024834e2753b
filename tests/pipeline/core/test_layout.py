"""ReadTable and WriteTable: rows in and out of Parquet, with the Arrow tables between their steps typed.

Beam sizes the elements each step outputs; an untyped Arrow table is sized by pickling it whole (image bytes
included), a typed one by ``TableCoder`` from its buffers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import typecoders
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.layout import ReadTable, TableCoder, WriteTable, WriteTableBatches, _GatherRows
from schemas import Rejection


def _rows(count: int) -> list[dict[str, Any]]:
    """Rejection rows, every fifth with its nullable column null."""
    return [
        {
            "candidate_id": f"c{index:05d}",
            "key": f"k{index:05d}",
            "stage": "filter-text",
            "reason": "alt_too_short",
            "detail": None if index % 5 == 0 else f"detail {index}",
            "image_url": f"https://example.com/{index}.jpg",
            "alt_text": "a" * (index % 7),
            "page_url": f"https://example.com/page{index % 3}",
        }
        for index in range(count)
    ]


class _Outputs(PipelineVisitor):
    """Every leaf step's output PCollections, by the step's full label."""

    def __init__(self) -> None:
        self.outputs: dict[str, list[beam.PCollection]] = {}

    def visit_transform(self, node: AppliedPTransform) -> None:
        self.outputs[node.full_label] = [o for o in node.outputs.values() if isinstance(o, beam.PCollection)]


def test_read_and_write_table_type_their_arrow_tables(tmp_path: Path) -> None:
    """The row groups ReadTable reads and WriteTable writes are ``pa.Table`` PCollections coded by ``TableCoder``:
    Beam's ReadFromParquet and WriteToParquet leave them untyped (a pickling coder)."""
    pq.write_table(pa.Table.from_pylist(_rows(3), schema=Rejection.schema()), tmp_path / "in.parquet")
    pipeline = beam.Pipeline()
    rows = pipeline | "Read" >> ReadTable(str(tmp_path / "*.parquet"))
    _ = rows | "Write" >> WriteTable(str(tmp_path / "out" / "part"), Rejection)
    visitor = _Outputs()
    pipeline.visit(visitor)
    tables = {
        label: [typecoders.registry.get_coder(o.element_type).__class__ for o in outputs]
        for label, outputs in visitor.outputs.items()
        if label.endswith("SDFBoundedSourceReader/ParDo(SDFBoundedSourceDoFn)") or label == "Write/RowGroups"
    }
    assert tables == {
        "Read/ReadParquet/Read/SDFBoundedSourceReader/ParDo(SDFBoundedSourceDoFn)": [TableCoder],
        "Write/RowGroups": [TableCoder],
    }


def test_write_then_read_table_gives_back_the_rows(tmp_path: Path) -> None:
    """Rows written by WriteTable (more than one record batch of them, nulls included) read back equal."""
    rows = _rows(2500)
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(rows) | WriteTable(str(tmp_path / "part"), Rejection)
    written = sorted(tmp_path.glob("part-*-of-*.parquet"))
    assert written
    assert pq.read_schema(written[0]).equals(Rejection.schema())
    with beam.Pipeline() as pipeline:
        read = pipeline | ReadTable(str(tmp_path / "part-*.parquet"))
        assert_that(read, equal_to(rows))


def test_gather_rows_makes_row_groups_of_the_byte_bound(tmp_path: Path) -> None:
    """_GatherRows turns rows into tables of about ``row_group_bytes`` (a batch past it at most), no row lost."""
    rows = _rows(600)
    schema = Rejection.schema()
    gather = _GatherRows(schema, row_group_bytes=4096, batch_rows=50)
    with beam.Pipeline() as pipeline:
        tables = pipeline | beam.Create(rows, reshuffle=False) | beam.ParDo(gather).with_output_types(pa.Table)
        sizes = tables | beam.Map(lambda table: (table.num_rows, table.nbytes))

        def check(found: list[tuple[int, int]]) -> None:
            assert sum(count for count, _ in found) == len(rows)
            assert sum(1 for _, nbytes in found if nbytes >= 4096) > 1  # the bound cut them, not the end of input
            assert all(nbytes < 4096 + 2 * 50 * 200 for _, nbytes in found)  # at most one batch of 50 past the bound

        assert_that(sizes, check)


def test_gather_rows_holds_a_sixteenth_of_a_row_group_of_large_rows_as_python_objects() -> None:
    """Rows of 50 KB images: batches shrink to about ``row_group_bytes / 16`` (2 rows here), not ``batch_rows``."""
    schema = pa.schema([("id", pa.int64()), ("image", pa.binary())])
    row_group_bytes = 32 * 50_000
    gather = _GatherRows(schema, row_group_bytes=row_group_bytes, batch_rows=1000)
    gather.start_bundle()
    held, tables = [], []
    for index in range(200):
        tables.extend(gather.process({"id": index, "image": bytes([index % 256]) * 50_000}))
        held.append(len(gather._rows))
    tables.extend(value.value for value in gather.finish_bundle())
    assert sum(table.num_rows for table in tables) == 200
    assert [index for table in tables for index in table.column("id").to_pylist()] == list(range(200))
    assert max(held) == _GatherRows.FIRST_BATCH_ROWS - 1  # the first batch, then 2 rows at a time
    assert max(held[_GatherRows.FIRST_BATCH_ROWS :]) <= 1
    assert all(table.nbytes < row_group_bytes + 3 * 50_100 for table in tables)


def test_write_table_batches_without_a_bound_writes_each_batch_as_its_row_group(tmp_path: Path) -> None:
    """``row_group_bytes=0`` (filter-text's outputs): every non-empty batch is written as it comes, as one row group
    (a worker holds one batch, never several gathered), and an empty batch makes no row group."""
    schema = Rejection.schema()
    sizes = [700, 0, 1200, 5]
    batches = [pa.RecordBatch.from_pylist(_rows(count), schema=schema) for count in sizes]
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(batches, reshuffle=False).with_output_types(pa.RecordBatch)
            | WriteTableBatches(str(tmp_path / "part"), Rejection, num_shards=1, row_group_bytes=0)
        )
    [written] = sorted(tmp_path.glob("part-*-of-*.parquet"))
    metadata = pq.ParquetFile(written).metadata
    groups = sorted(metadata.row_group(group).num_rows for group in range(metadata.num_row_groups))
    assert groups == [5, 700, 1200]
