"""The shard format: a tar with three members per sample and its Parquet twin, reused on resume only when complete.

Samples are SampleImage rows of real skimage photos as JPEG; the stage's own behaviour (ranking, workers, kills) is
tested in tests/pipeline/stages/test_write_shards.py.
"""

from __future__ import annotations

import json
import tarfile
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.corpus.shard_files import delete_stale_shards, shard_name, write_corpus, write_shard
from schemas import Sample, SampleImage
from tests.fixtures.http_server import encode
from tests.fixtures.http_server import photo as photo_array
from tests.fixtures.image_corpus import jpeg, photo, sample_image_row


def samples(count: int) -> list[dict]:
    image = jpeg(photo("coffee"), (96, 64), quality=80)
    return [
        sample_image_row(f"https://img.example/{index}.jpg", f"cup number {index}", image, index)
        for index in range(count)
    ]


def test_a_shard_is_three_members_per_sample_in_key_order_and_its_twin(tmp_path: Path) -> None:
    rows = samples(5)
    assert write_shard(str(tmp_path), "00007.tar", list(reversed(rows))) == 5
    keys = sorted(row[Sample.KEY] for row in rows)
    with tarfile.open(tmp_path / "00007.tar") as archive:
        assert archive.getnames() == [f"{key}.{ext}" for key in keys for ext in ("jpg", "txt", "json")]
    twin = pq.read_table(tmp_path / "00007.parquet").to_pylist()
    assert [row[Sample.KEY] for row in twin] == keys and {row[Sample.SHARD] for row in twin} == {"00007"}
    again = tmp_path / "again"
    write_shard(str(again), "00007", rows)
    assert (again / "00007.tar").read_bytes() == (tmp_path / "00007.tar").read_bytes()  # the caller's order is moot


def test_resume_keeps_a_complete_shard_and_rewrites_a_damaged_one(tmp_path: Path) -> None:
    rows = samples(4)
    write_shard(str(tmp_path), "00000", rows)
    tar, twin = tmp_path / "00000.tar", tmp_path / "00000.parquet"
    written, inodes = tar.read_bytes(), (tar.stat().st_ino, twin.stat().st_ino)
    # Kept only if the tar has exactly the size planned without building it, and the twin lists the same rows.
    write_shard(str(tmp_path), "00000", rows, reuse_existing=True)
    assert (tar.stat().st_ino, twin.stat().st_ino) == inodes
    with tar.open("ab") as handle:  # a tar with bytes too many is rewritten
        handle.write(b"\0" * tarfile.RECORDSIZE)
    write_shard(str(tmp_path), "00000", rows, reuse_existing=True)
    assert tar.read_bytes() == written and tar.stat().st_ino != inodes[0]
    twin.unlink()  # a tar without its twin is incomplete
    write_shard(str(tmp_path), "00000", rows, reuse_existing=True)
    assert twin.exists() and tar.read_bytes() == written
    inode = tar.stat().st_ino
    write_shard(str(tmp_path), "00000", rows[:3], reuse_existing=True)  # other samples: rewritten
    assert tar.stat().st_ino != inode and pq.read_table(twin).num_rows == 3


def test_a_shard_is_written_from_the_image_bytes_given_without_copying_them(tmp_path: Path) -> None:
    """A shard writer holds a whole shard's images (about 500 MB at 10,000 samples): the tar is written from the bytes
    in the rows given, so writing a shard makes no Python copy of them (tracemalloc sees every bytes object made)."""
    image = jpeg(photo("astronaut"), (512, 512), quality=95)
    rows = [
        sample_image_row(f"https://img.example/{index}.jpg", f"astronaut {index}", image, index) for index in range(24)
    ]
    given = sum(len(row[SampleImage.IMAGE]) for row in rows)
    tracemalloc.start()
    try:
        write_shard(str(tmp_path), "00000", rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert given > 2_000_000
    assert peak < given / 4, f"writing the shard allocated {peak:,} bytes at peak for {given:,} bytes of images"
    with tarfile.open(tmp_path / "00000.tar") as archive:
        assert all(archive.extractfile(f"{row[Sample.KEY]}.jpg").read() == image for row in rows)


def test_stale_shards_beyond_the_count_are_deleted(tmp_path: Path) -> None:
    for index in range(4):
        for suffix in (".tar", ".parquet"):
            (tmp_path / f"{shard_name(index)}{suffix}").write_bytes(b"x")
    (tmp_path / "notes.tar").write_bytes(b"x")
    delete_stale_shards(str(tmp_path), 2)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "00000.parquet",
        "00000.tar",
        "00001.parquet",
        "00001.tar",
        "notes.tar",
    ]


def test_write_shard_refuses_duplicate_keys_and_missing_images(tmp_path: Path) -> None:
    row = samples(1)[0]
    with pytest.raises(ValueError, match="duplicate sample keys"):
        write_shard(str(tmp_path), "00000", [row, dict(row, candidate_id="other")])
    with pytest.raises(ValueError, match="image bytes"):
        write_shard(str(tmp_path), "00000", [dict(row, image=None)])
    assert write_corpus([], str(tmp_path / "empty")) == {}
    assert json.loads((tmp_path / "empty" / "shards" / "sizes.json").read_text()) == {}


def test_the_image_member_is_named_by_the_format_of_its_bytes(tmp_path: Path) -> None:
    """Originals kept by fetch (--keep-original-bytes) are PNG or WebP: WebDataset decodes by member extension."""
    images = {extension: encode(photo_array("coffee"), name, size=(96, 64)) for extension, name in FORMATS.items()}
    rows = [
        sample_image_row(f"https://img.example/{index}.{extension}", f"cup as {extension}", data, index)
        for index, (extension, data) in enumerate(sorted(images.items()))
    ]
    write_shard(str(tmp_path), "00000", rows)
    with tarfile.open(tmp_path / "00000.tar") as archive:
        images = {
            member.name: archive.extractfile(member).read()
            for member in archive
            if member.name.rsplit(".", 1)[1] not in ("txt", "json")
        }
    expected = {f"{row[Sample.KEY]}.{row[Sample.IMAGE_URL].rsplit('.', 1)[1]}": row[SampleImage.IMAGE] for row in rows}
    assert images == expected  # the bytes as given, under their format's extension
    assert sorted(name.rsplit(".", 1)[1] for name in expected) == ["gif", "jpg", "png", "webp"]


FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
