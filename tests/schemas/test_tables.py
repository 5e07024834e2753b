"""The schemas package is the one place columns are named: it must stay consistent and documented."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from schemas import SCHEMA_VERSION, Candidate, Rejection, Sample, SampleImage, TextKept, all_tables


def test_every_column_has_a_doc_and_the_schema_carries_the_version() -> None:
    for table in all_tables():
        schema = table.schema()
        assert schema.metadata[b"altcorpus.schema_version"].decode() == SCHEMA_VERSION
        for field in schema:
            assert field.metadata and field.metadata[b"doc"].strip(), f"{table.__name__}.{field.name} has no doc"


def test_derived_tables_extend_their_base_in_order() -> None:
    assert TextKept.names()[: len(Candidate.names())] == Candidate.names()
    assert Sample.names()[: len(TextKept.names())] == TextKept.names()
    assert SampleImage.names() == [*Sample.names(), "image"]


def test_row_fills_missing_columns_and_refuses_unknown_ones() -> None:
    row = Rejection.row(stage="fetch", reason="http_404")
    assert set(row) == set(Rejection.names())
    assert row[Rejection.DETAIL] is None
    with pytest.raises(KeyError, match="no column"):
        Rejection.row(stage="fetch", reasons="typo")


def test_column_names_pickle_as_plain_strings() -> None:
    restored = pickle.loads(pickle.dumps({Candidate.KEY: "k"}))
    assert type(next(iter(restored))) is str
    assert restored == {"key": "k"}


def test_rows_convert_to_arrow_with_the_schema() -> None:
    row = Candidate.row(
        candidate_id="c",
        key="k",
        image_url="https://a.example/x.jpg",
        alt_text="a red boat",
        page_url="https://a.example/",
    )
    table = pa.Table.from_pylist([row], schema=Candidate.schema())
    assert table.num_rows == 1
    assert table.schema.field(Candidate.IMAGE_URL).type == pa.string()
