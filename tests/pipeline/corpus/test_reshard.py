"""reshard: a new shard size or a DuckDB WHERE subset, images taken from the existing tars, same rules as write-shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.corpus.reshard import reshard
from pipeline.corpus.shard_files import write_corpus
from schemas import Sample
from tests.fixtures.image_corpus import jpeg, photo, sample_image_row

NAMES = ("astronaut", "chelsea", "coffee", "rocket")


def make_rows(count: int = 17) -> list[dict]:
    images = {name: jpeg(photo(name), (96, 72), quality=75) for name in NAMES}
    rows = []
    for index in range(count):
        name = NAMES[index % len(NAMES)]
        row = sample_image_row(f"https://img.example/{index}.jpg", f"{name} number {index}", images[name], index)
        row[Sample.LANGUAGE] = "fr" if index % 3 == 0 else "en"
        rows.append(row)
    return rows


def tars(root: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((root / "shards").glob("*.tar"))}


def twins(root: Path) -> dict[str, list[dict]]:
    return {path.name: pq.read_table(path).to_pylist() for path in sorted((root / "shards").glob("*.parquet"))}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("source")
    rows = make_rows()
    write_corpus(rows, str(root), samples_per_shard=4)
    return root, rows


def test_resharding_to_the_same_size_reproduces_the_corpus(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, _ = source
    sizes = reshard(str(root), str(tmp_path / "same"), samples_per_shard=4)
    assert sizes == json.loads((root / "shards" / "sizes.json").read_text())
    assert tars(tmp_path / "same") == tars(root)
    assert twins(tmp_path / "same") == twins(root)


def test_a_new_size_gives_the_shards_write_shards_would(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, rows = source
    sizes = reshard(str(root), str(tmp_path / "seven"), samples_per_shard=7)
    assert list(sizes.values()) == [7, 7, 3]
    write_corpus(rows, str(tmp_path / "direct"), samples_per_shard=7)
    assert tars(tmp_path / "seven") == tars(tmp_path / "direct")
    manifest = json.loads((tmp_path / "seven" / "manifest.json").read_text())
    assert manifest["sample_count"] == len(rows) and manifest["config"]["shards"]["samples_per_shard"] == 7


def test_a_where_subset_through_the_command_line(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    import webdataset as wds

    root, rows = source
    output = tmp_path / "english"
    command = ["reshard", "--corpus", str(root), "--output", str(output), "--samples-per-shard", "5"]
    assert cli.main([*command, "--where", "language = 'en'"]) == 0
    english = [row for row in rows if row[Sample.LANGUAGE] == "en"]
    write_corpus(english, str(tmp_path / "direct"), samples_per_shard=5)
    assert tars(output) == tars(tmp_path / "direct")
    urls = [str(path) for path in sorted((output / "shards").glob("*.tar"))]
    seen = {}
    for (metadata,) in wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("json"):
        seen[metadata[Sample.KEY]] = metadata
    assert sorted(seen) == sorted(row[Sample.KEY] for row in english)
    assert {meta[Sample.LANGUAGE] for meta in seen.values()} == {"en"}
    assert json.loads((output / "manifest.json").read_text())["where"] == "language = 'en'"


def test_resharding_onto_itself_is_refused(source: tuple[Path, list[dict]]) -> None:
    root, _ = source
    with pytest.raises(ValueError, match="must differ"):
        reshard(str(root), str(root))
