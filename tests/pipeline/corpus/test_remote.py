"""stats on a corpus behind a Beam filesystem (gs://, s3://, here mem://): its Parquet tables and markers, not its
tars, are copied to a local folder through FileSystems and DuckDB reads them there (no httpfs, no credentials)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from pipeline.corpus import stats
from pipeline.corpus.remote import local_corpus
from pipeline.corpus.reshard import reshard
from tests.fixtures import memory_filesystem
from tests.pipeline.corpus.test_stats import build_corpus


def upload(local: Path, remote: str) -> None:
    """Every file of a local corpus under ``remote``, as ``gcloud storage cp -r`` would put it in a bucket."""
    for path in sorted(local.rglob("*")):
        if path.is_file():
            with FileSystems.create(f"{remote}/{path.relative_to(local).as_posix()}") as handle:
                handle.write(path.read_bytes())


@pytest.fixture(autouse=True)
def empty_store() -> None:
    memory_filesystem.STORE.clear()


def test_stats_of_a_remote_corpus_equal_its_local_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = tmp_path / "corpus"
    build_corpus(local)
    (local / "shards" / "00000.tar").write_bytes(b"tar bytes that stats must not download")
    upload(local, "mem://bucket/corpus")
    assert stats.main([str(local), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert stats.main(["mem://bucket/corpus", "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    for name in ("corpus", "seconds"):
        expected.pop(name), remote.pop(name)
    assert remote == expected and remote["funnel"]["kept"] > 0


def test_only_tables_and_markers_are_copied_and_the_copy_is_removed() -> None:
    root = "mem://bucket/c"
    for name, data in {
        "candidates/part-00000-of-00001.parquet": b"p",
        "candidates/_SUCCESS": b"{}",
        "shards/00000.tar": b"t" * 1000,
        "shards/00000.parquet": b"q",
        "manifest.json": b"{}",
    }.items():
        with FileSystems.create(f"{root}/{name}") as handle:
            handle.write(data)
    with local_corpus(root) as folder:
        copied = sorted(path.relative_to(folder).as_posix() for path in Path(folder).rglob("*") if path.is_file())
        assert copied == [
            "candidates/_SUCCESS",
            "candidates/part-00000-of-00001.parquet",
            "manifest.json",
            "shards/00000.parquet",
        ]
    assert not Path(folder).exists()


def test_a_local_corpus_is_read_in_place(tmp_path: Path) -> None:
    with local_corpus(str(tmp_path)) as folder:
        assert folder == str(tmp_path)


def test_stats_of_a_remote_resharded_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.corpus.shard_files import write_corpus
    from tests.pipeline.corpus.test_reshard import make_rows

    write_corpus(make_rows(), str(tmp_path / "source"), samples_per_shard=4)
    reshard(str(tmp_path / "source"), str(tmp_path / "resharded"), samples_per_shard=5)
    upload(tmp_path / "resharded", "mem://bucket/resharded")
    assert stats.main(["mem://bucket/resharded", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_count"] == len(make_rows())
