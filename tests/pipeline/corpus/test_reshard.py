"""reshard: a new shard size or a DuckDB WHERE subset, images taken from the existing tars, same rules as write-shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGES
from pipeline.corpus import stats
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


def test_resharding_over_an_existing_corpus_needs_overwrite(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, _ = source
    target = tmp_path / "target"
    assert cli.main(["reshard", "--corpus", str(root), "--output", str(target), "--samples-per-shard", "3"]) == 0
    before = tars(target)
    manifest = (target / "manifest.json").read_text()
    with pytest.raises(UsageError, match="--overwrite"):
        reshard(str(root), str(target), samples_per_shard=7)
    assert tars(target) == before and (target / "manifest.json").read_text() == manifest
    # Told to, it replaces the shards (no stale shard of the old size is left) and the manifest.
    sizes = reshard(str(root), str(target), samples_per_shard=7, overwrite=True)
    assert list(sizes.values()) == [7, 7, 3] and sorted(tars(target)) == ["00000.tar", "00001.tar", "00002.tar"]
    assert json.loads((target / "manifest.json").read_text())["config"]["shards"]["samples_per_shard"] == 7


def test_a_corpus_built_by_the_stages_is_never_a_reshard_target(
    source: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    """Replacing the shards of a stage-built corpus would leave its books (candidates, rejected, _SUCCESS) describing
    other shards: refused even with --overwrite."""
    root, rows = source
    built = tmp_path / "built"
    write_corpus(rows, str(built), samples_per_shard=4)
    CorpusLayout(str(built)).mark_done(STAGES[0], {})
    before = tars(built)
    with pytest.raises(UsageError, match="built by the stages"):
        reshard(str(root), str(built), samples_per_shard=7, overwrite=True)
    assert tars(built) == before


def test_stats_reads_a_resharded_corpus(
    source: tuple[Path, list[dict]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resharded corpus holds shards only (its funnel is the source's): stats says so, with its own counts."""
    root, rows = source
    output = tmp_path / "english"
    reshard(str(root), str(output), samples_per_shard=5, where="language = 'en'")
    english = [row for row in rows if row[Sample.LANGUAGE] == "en"]
    assert stats.main([str(output)]) == 0
    text = capsys.readouterr().out
    assert f"{len(english)} samples in 3 shards" in text and str(root) in text and "language = 'en'" in text
    assert stats.main([str(output), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resharded_from"] == CorpusLayout(str(root)).root and summary["sample_count"] == len(english)
    assert summary["languages"] == [{"language": "en", "samples": len(english)}]


def test_original_bytes_members_of_any_stored_format_are_resharded(tmp_path: Path) -> None:
    """A corpus fetched with --keep-original-bytes holds .png/.webp members: reshard carries each one unchanged."""
    import io

    def encoded(name: str, image_format: str) -> bytes:
        buffer = io.BytesIO()
        photo(name).resize((80, 60)).save(buffer, format=image_format)
        return buffer.getvalue()

    formats = {"astronaut": "PNG", "chelsea": "WEBP", "coffee": "JPEG"}
    rows = [
        sample_image_row(f"https://img.example/{name}", f"{name} as stored", encoded(name, fmt), index)
        for index, (name, fmt) in enumerate(formats.items())
    ]
    write_corpus(rows, str(tmp_path / "source"), samples_per_shard=2)
    reshard(str(tmp_path / "source"), str(tmp_path / "one"), samples_per_shard=3)

    def members(root: Path) -> dict[str, bytes]:
        import tarfile

        found = {}
        for path in sorted((root / "shards").glob("*.tar")):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if not member.name.endswith((".txt", ".json")):
                        found[member.name] = archive.extractfile(member).read()
        return found

    before, after = members(tmp_path / "source"), members(tmp_path / "one")
    assert after == before
    assert sorted(name.rsplit(".", 1)[1] for name in after) == ["jpg", "png", "webp"]
