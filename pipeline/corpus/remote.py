"""A corpus on a Beam filesystem (gs://, s3://, ...) made readable by DuckDB: its tables copied to a local folder.

DuckDB reads gs:// only through its httpfs extension, which it downloads at first use and which needs HMAC keys:
impossible offline and a second set of credentials. Beam's ``FileSystems`` already reads every scheme the stages
write with, so ``stats`` copies what its queries read (the Parquet tables, the ``_SUCCESS`` markers and
``manifest.json``; never the tars, which hold the image bytes) into a temporary folder and queries that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.core.layout import CorpusLayout, list_matching
from pipeline.core.registry import STAGES

log = logging.getLogger("altcorpus")


def is_remote(root: str) -> bool:
    """Whether ``root`` names a non-local Beam filesystem (``gs://b/c``; a plain or ``file://`` path is local)."""
    return "://" in root and not root.startswith("file://")


def corpus_files(root: str) -> list[str]:
    """What the queries read: every Parquet file under the corpus, its stage markers and its manifest."""
    layout = CorpusLayout(root)
    markers = [layout.success_path(stage) for stage in STAGES] + [layout.manifest_path()]
    return sorted(list_matching(layout.path("*", "*.parquet")) + [path for path in markers if FileSystems.exists(path)])


@contextlib.contextmanager
def local_corpus(root: str) -> Iterator[str]:
    """``root`` itself when local; else a temporary local copy of its ``corpus_files``, removed afterwards."""
    if not is_remote(root):
        yield root
        return
    source = CorpusLayout(root).root.rstrip("/") + "/"
    with tempfile.TemporaryDirectory(prefix="altcorpus-stats-") as folder:
        files = corpus_files(root)
        copied = 0
        for path in files:
            target = os.path.join(folder, *path[len(source) :].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with (
                FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as reader,
                open(target, "wb") as writer,
            ):
                shutil.copyfileobj(reader, writer, 1 << 20)
                copied += writer.tell()
        log.info("stats: copied %d files (%.1f MB) of %s to %s", len(files), copied / 1e6, root, folder)
        yield folder
