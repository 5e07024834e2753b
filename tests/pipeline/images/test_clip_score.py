"""The semantic-dedup helpers without a model: LSH buckets, the in-bucket compare against brute force, the recall the
hash settings promise, and the Beam composite finding every near copy among random vectors (torch-free)."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.config import ImageFilterConfig
from pipeline.images import clip_score

DIM = 64


def unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def with_copies(count: int, noise: float, seed: int = 0) -> tuple[list[tuple[str, np.ndarray]], dict[str, str]]:
    """``count`` random unit vectors, each with a perturbed copy; names are fixed strings (sorted like sha256)."""
    rng = np.random.default_rng(seed)
    originals = unit(rng.standard_normal((count, DIM)))
    copies = unit(originals + noise * rng.standard_normal((count, DIM)))
    items, copy_of = [], {}
    for index in range(count):
        items.append((f"{index:05d}a", originals[index]))
        items.append((f"{index:05d}b", copies[index]))
        copy_of[f"{index:05d}b"] = f"{index:05d}a"
    return items, copy_of


def brute_force(items: list[tuple[str, np.ndarray]], max_distance: float) -> dict[str, tuple[float, str]]:
    """Every pair's distance at once (float64); for each item, the nearest earlier one within ``max_distance``."""
    ordered = sorted(items, key=lambda item: item[0])
    matrix = np.stack([vector for _, vector in ordered]).astype(np.float64)
    distances = 1.0 - matrix @ matrix.T
    found = {}
    for position in range(1, len(ordered)):
        nearest = int(np.argmin(distances[position, :position]))
        if distances[position, nearest] <= max_distance:
            found[ordered[position][0]] = (float(distances[position, nearest]), ordered[nearest][0])
    return found


def test_in_bucket_compare_matches_brute_force_across_blocks() -> None:
    # Past one compare block, with near copies and a few three-way clusters: the nearest earlier item, by name order.
    items, _ = with_copies(clip_score.COMPARE_BLOCK // 2 + 40, noise=0.02)  # copies near distance 0.013
    rng = np.random.default_rng(1)
    items += [(f"{index:05d}c", unit(items[2 * index][1] + 0.02 * rng.standard_normal(DIM))) for index in range(30)]
    found = dict(clip_score.earlier_neighbours(reversed(items), 0.02))
    expected = brute_force(items, 0.02)
    assert set(found) == set(expected)
    assert len(found) > 500
    for name, (distance, earlier) in found.items():
        assert earlier == expected[name][1]
        assert distance == np.float32(expected[name][0]) or abs(distance - expected[name][0]) < 1e-5


def test_buckets_are_deterministic_and_near_vectors_share_one() -> None:
    planes = clip_score.hyperplanes(DIM, bits=12, tables=10)
    assert np.array_equal(planes, clip_score.hyperplanes(DIM, bits=12, tables=10))
    items, _ = with_copies(50, noise=0.02)
    shared = 0
    for index in range(0, len(items), 2):
        original = clip_score.bucket_keys(items[index][1], planes)
        copy = clip_score.bucket_keys(items[index + 1][1], planes)
        assert [table for table, _ in original] == list(range(10))
        shared += bool(set(original) & set(copy))
    assert shared == 50
    assert clip_score.bucket_keys(items[0][1], planes) != clip_score.bucket_keys(items[2][1], planes)


def test_lsh_recall_at_the_documented_settings() -> None:
    config = ImageFilterConfig()
    bits, tables = config.semantic_dedup_hash_bits, config.semantic_dedup_hash_tables
    assert clip_score.lsh_recall(0.0, bits, tables) == 1.0
    assert clip_score.lsh_recall(0.01, bits, tables) > 0.999
    assert clip_score.lsh_recall(0.05, bits, tables) > 0.95
    assert clip_score.lsh_recall(1.0, bits, tables) < 0.01  # orthogonal vectors almost never meet
    assert clip_score.lsh_recall(0.05, bits, 1) < clip_score.lsh_recall(0.05, bits, tables)


@pytest.mark.slow  # a Beam pipeline run: about 8 s on a loaded 2-core box
def test_semantic_duplicates_composite_finds_every_copy_and_nothing_else() -> None:
    items, copy_of = with_copies(100, noise=0.0125)  # copies near cosine distance 0.005, others near 1
    with BeamTestPipeline() as pipeline:
        found = (
            pipeline
            | beam.Create(items)
            | clip_score.SemanticDuplicates(0.05, bits=12, tables=10)
            | beam.MapTuple(lambda name, nearest: (name, nearest[1]))
        )
        assert_that(found, equal_to(sorted(copy_of.items())))
