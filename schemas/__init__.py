"""Arrow schemas of every Parquet table altcorpus writes: the one place a column is named.

Pipeline code refers to columns through the constants here (``Candidate.IMAGE_URL``), never by spelling the
string, so renaming a column is a one-line change plus a ``SCHEMA_VERSION`` bump.
"""

from __future__ import annotations

from schemas.tables import (
    SCHEMA_VERSION,
    ArchivedImage,
    Candidate,
    FetchedImage,
    RecordError,
    Rejection,
    Sample,
    SampleImage,
    Table,
    TextKept,
    all_tables,
)

__all__ = [
    "SCHEMA_VERSION",
    "ArchivedImage",
    "Candidate",
    "FetchedImage",
    "RecordError",
    "Rejection",
    "Sample",
    "SampleImage",
    "Table",
    "TextKept",
    "all_tables",
]
