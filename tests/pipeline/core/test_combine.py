"""Bounded per-key combining: the same results as Beam's lifted combiners, with a pre-combine that never holds more
than ``max_keys`` keys."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.combine import BoundedCombinePerKey, BoundedCountPerKey, BoundedDistinct, _PreCombine
from pipeline.core.stage import pipeline_options


class Smallest(beam.CombineFn):
    def create_accumulator(self) -> None:
        return None

    def add_input(self, smallest, value):
        return value if smallest is None or value < smallest else smallest

    def merge_accumulators(self, accumulators):
        return min((a for a in accumulators if a is not None), default=None)

    def extract_output(self, smallest):
        return smallest


def pairs(seed: int = 7) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    keys = [f"k{index}" for index in range(50)]
    # A hot key (a third of the pairs) among 49 small ones, in a shuffled order.
    return [(rng.choice(keys) if rng.random() > 0.33 else "hot", rng.randrange(10_000)) for _ in range(3_000)]


@pytest.mark.parametrize("max_keys", [1, 3, 10_000])
def test_bounded_combines_give_beams_results(max_keys: int) -> None:
    data = pairs()
    smallest: dict[str, int] = {}
    counts: dict[str, int] = {}
    for key, value in data:
        smallest[key] = min(value, smallest.get(key, value))
        counts[key] = counts.get(key, 0) + 1
    with TestPipeline() as pipeline:
        created = pipeline | beam.Create(data)
        assert_that(
            created | "Smallest" >> BoundedCombinePerKey(Smallest(), max_keys),
            equal_to(list(smallest.items())),
            label="SmallestMatches",
        )
        assert_that(
            created | "Count" >> BoundedCountPerKey(max_keys), equal_to(list(counts.items())), label="CountMatches"
        )
        assert_that(
            created | "Distinct" >> BoundedDistinct(max_keys), equal_to(sorted(set(data))), label="DistinctMatches"
        )


@pytest.mark.slow  # two worker processes
def test_bounded_combine_on_two_worker_processes() -> None:
    data = pairs(11)
    expected = sorted({(key, sum(1 for k, _ in data if k == key)) for key, _ in data})
    options = pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with beam.Pipeline(options=options) as pipeline:
        counted = pipeline | beam.Create(data) | beam.Reshuffle() | BoundedCountPerKey(max_keys=4)
        assert_that(counted, equal_to(expected))


def test_the_pre_combine_never_holds_more_than_max_keys() -> None:
    """Through the DoFn itself: its table is sent on when it reaches ``max_keys``, so it never holds more; what it
    sends merges to the right counts."""
    from apache_beam.transforms.combiners import CountCombineFn

    fn = _PreCombine(CountCombineFn(), max_keys=5)
    fn.setup()
    fn.start_bundle()
    sent: list[tuple[str, int]] = []
    for key, _ in pairs(3):
        sent.extend(fn.process((key, 1)))
        assert len(fn.table) < 5
    sent.extend(windowed.value for windowed in fn.finish_bundle())
    totals: dict[str, int] = {}
    for key, count in sent:
        totals[key] = totals.get(key, 0) + count
    expected: dict[str, int] = {}
    for key, _ in pairs(3):
        expected[key] = expected.get(key, 0) + 1
    assert totals == expected
    assert len(sent) > len(expected)  # it did send early: more partial counts than keys
