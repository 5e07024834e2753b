"""eval-index: hashing folders, WebDataset tars and Parquet; the banded lookup; and the default distance, on real photos.

The default ``eval_max_distance`` is justified here: resized + re-compressed + slightly cropped copies of real photos
fall within it, different photos of similar scenes (LFW faces) and unrelated photos fall outside it.
"""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import cli
from pipeline.core.config import ImageFilterConfig
from pipeline.corpus.shard_files import write_corpus
from pipeline.images.eval_index import HashIndex, build_eval_index, hamming, phash_uint64
from pipeline.stages.filter_image import build_hash_index
from schemas import SampleImage
from schemas.tables import EvalImageHash
from tests.conftest import shared_path
from tests.fixtures.image_corpus import jpeg, photo, sample_image_row
from tests.pipeline.stages.test_filter_image import near_copy

DEFAULT = ImageFilterConfig().eval_max_distance
REAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "retina", "cell", "text")


def real_photos() -> dict[str, Image.Image]:
    """Distinct real photos: skimage.data, scikit-learn's samples and the 10 distinct UKBench base images."""
    from sklearn.datasets import load_sample_images

    photos = {name: photo(name) for name in REAL_PHOTOS}
    for name, array in zip(("china", "flower"), load_sample_images().images, strict=True):
        photos[name] = Image.fromarray(array)
    for path in sorted(shared_path("images/near-duplicates/base_images").glob("*.jpg")):
        photos[path.stem] = Image.open(path).convert("RGB")
    return photos


def test_a_near_copy_is_within_the_default_distance_and_distinct_photos_are_far() -> None:
    photos = real_photos()
    hashes = {name: phash_uint64(image) for name, image in photos.items()}
    copies = {
        name: hamming(hashes[name], phash_uint64(Image.open(io.BytesIO(near_copy(image)))))
        for name, image in photos.items()
    }
    assert max(copies.values()) <= DEFAULT, copies
    closest_distinct = min(hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2))
    assert closest_distinct > DEFAULT + 4, closest_distinct


def test_different_photos_of_a_similar_scene_are_not_near_duplicates() -> None:
    import skimage.data

    # LFW: 100 different photos of the same kind of scene (a centred frontal face).
    faces = skimage.data.lfw_subset()[:100]
    hashes = [phash_uint64(Image.fromarray((face * 255).astype(np.uint8))) for face in faces]
    closest = min(hamming(a, b) for a, b in itertools.combinations(hashes, 2))
    assert closest > DEFAULT, closest


def test_a_stereo_pair_counts_as_the_same_picture() -> None:
    """Documented limit: skimage's motorcycle stereo pair (camera moved a few cm) is within the default distance."""
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    assert hamming(phash_uint64(Image.fromarray(left)), phash_uint64(Image.fromarray(right))) <= DEFAULT


@pytest.mark.slow  # an end-to-end eval-index run over the shared images: make test, not make test-fast
def test_ukbench_variants_and_a_corrupt_file(tmp_path: Path) -> None:
    folder = shared_path("images/near-duplicates")
    output = tmp_path / "index.parquet"
    assert cli.main(["eval-index", "--input", str(folder), "--output", str(output)]) == 0
    rows = {row[EvalImageHash.ITEM]: row for row in pq.read_table(output).to_pylist()}
    corrupt = rows["mixed_images/ukbench09268_corrupt.jpg"]
    # fetch's own verdict on the file (its first bytes are no image signature): recorded, not a crash.
    assert corrupt[EvalImageHash.STATUS] == "not_an_image" and corrupt[EvalImageHash.PHASH] is None
    assert corrupt[EvalImageHash.ERROR]
    assert sum(row[EvalImageHash.STATUS] == "ok" for row in rows.values()) == len(rows) - 1 == 16
    original = rows["base_images/ukbench00120.jpg"][EvalImageHash.PHASH]

    def distance(item: str) -> int:
        return hamming(original, rows[item][EvalImageHash.PHASH])

    # 0 with plain imagehash; fetch's box pre-reduction (pipeline/imageproc.py) moves it a few bits, still caught.
    assert distance("mixed_images/ukbench00120_resize.jpg") <= DEFAULT
    assert distance("ukbench00120_gray.jpg") <= DEFAULT
    # pHash is not flip- or rotation-invariant: these stay in the corpus by design.
    assert distance("mixed_images/ukbench00120_hflip.jpg") > 3 * DEFAULT
    assert distance("mixed_images/ukbench00120_rotation.jpg") > 3 * DEFAULT
    # What filter-image builds from the index: the readable images only, labelled ``source:item``.
    index = build_hash_index(list(rows.values()), DEFAULT)
    assert len(index) == 16 and all(label.startswith(f"{folder}:") for label in index.labels)
    # Hashing in worker processes gives the same index, row for row.
    parallel = tmp_path / "parallel.parquet"
    assert build_eval_index([str(folder)], str(parallel), workers=2) == 16
    assert pq.read_table(parallel).to_pylist() == pq.read_table(output).to_pylist()


def test_folders_tars_and_parquet_give_the_same_hashes(tmp_path: Path) -> None:
    names = ("astronaut", "coffee", "rocket")
    samples = [
        sample_image_row(f"https://eval.example/{n}.jpg", f"a {n}", jpeg(photo(n)), i) for i, n in enumerate(names)
    ]
    folder = tmp_path / "folder"
    folder.mkdir()
    for sample in samples:
        (folder / f"{sample['key']}.jpg").write_bytes(sample["image"])
    write_corpus(samples, str(tmp_path / "corpus"), samples_per_shard=2)
    assert build_eval_index([str(folder)], str(tmp_path / "a.parquet")) == 3
    assert build_eval_index([str(tmp_path / "corpus" / "shards" / "*.tar")], str(tmp_path / "b.parquet")) == 3
    samples_parquet = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist(samples, schema=SampleImage.schema()), samples_parquet)
    assert build_eval_index([str(samples_parquet)], str(tmp_path / "d.parquet")) == 3

    def by_key(path: Path) -> dict[str, int]:
        rows = pq.read_table(path).to_pylist()
        return {row[EvalImageHash.ITEM].split("/")[-1].split(".")[0]: row[EvalImageHash.PHASH] for row in rows}

    expected = {sample["key"]: sample["phash"] for sample in samples}
    assert by_key(tmp_path / "a.parquet") == expected
    assert by_key(tmp_path / "b.parquet") == expected
    assert by_key(tmp_path / "d.parquet") == expected


def test_parquet_without_an_image_column_is_a_clear_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"caption": ["a red boat"]}), tmp_path / "captions.parquet")
    with pytest.raises(ValueError, match="image column"):
        build_eval_index([str(tmp_path / "captions.parquet")], str(tmp_path / "index.parquet"))


def flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


@pytest.mark.parametrize("max_distance", [0, 1, 3, 5, DEFAULT, 11])
def test_banded_lookup_equals_brute_force(max_distance: int) -> None:
    rng = random.Random(max_distance)
    indexed = [rng.getrandbits(64) for _ in range(5000)]
    index = HashIndex(indexed, max_distance)
    queries = [flip_bits(rng.choice(indexed), rng.randint(0, max_distance + 3), rng) for _ in range(400)]
    queries += [rng.getrandbits(64) for _ in range(100)]
    for query in queries:
        distances = [hamming(query, h) for h in indexed]
        best = min(distances)
        expected = (best, distances.index(best)) if best <= max_distance else None
        assert index.nearest(query) == expected


def test_lookup_cost_does_not_scan_the_index() -> None:
    rng = random.Random(7)
    index = HashIndex([rng.getrandbits(64) for _ in range(200_000)], DEFAULT)
    examined = [index.candidates(rng.getrandbits(64)).size for _ in range(200)]
    # 4 bands of 16 bits, 137 probes each at distance 8: about 4 * 137 * 200,000 / 2**16 = 1,700 verifications.
    assert np.mean(examined) < 200_000 / 50


def test_near_copies_are_found_through_the_index() -> None:
    photos = real_photos()
    names = sorted(photos)
    index = HashIndex([phash_uint64(photos[name]) for name in names], DEFAULT, names)
    for position, name in enumerate(names):
        found = index.nearest(phash_uint64(Image.open(io.BytesIO(near_copy(photos[name])))))
        assert found is not None and found[1] == position, name
    assert index.nearest(phash_uint64(photo("gravel"))) is None
