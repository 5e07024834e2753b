"""Per-key combining whose pre-combine in each worker holds a bounded number of keys.

Beam lifts ``CombinePerKey`` (and ``Distinct``, ``Count``, built on it) into a partial combine ahead of the shuffle
that keeps up to 100,000 keys' accumulators per bundle (1,000,000 for ``Count``'s and ``Mean``'s; a Cython field,
``PGBKCVOperation.max_keys``, with no option to change it): a worker's memory then grows with the crawl until a stage
has that many distinct keys per bundle. ``BoundedCombinePerKey`` does the same pre-combine in a DoFn that sends its
table on whenever it reaches ``max_keys`` keys, then groups the accumulators (a ``GroupByKey``, which is not lifted)
and merges them: the same result, with what a worker holds per transform bounded by ``max_keys``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.window import GlobalWindows

#: Keys one pre-combine holds before it sends their accumulators on.
MAX_KEYS = 10_000


class _PreCombine(beam.DoFn):
    """``(key, value)`` -> ``(key, accumulator)``, at most ``max_keys`` keys held at once (then all sent on)."""

    def __init__(self, combine_fn: beam.CombineFn, max_keys: int) -> None:
        self.combine_fn = combine_fn
        self.max_keys = max_keys

    def setup(self) -> None:
        self.combine_fn.setup()
        self.table: dict[Any, Any] = {}

    def start_bundle(self) -> None:
        self.table = {}

    def process(self, element: tuple[Any, Any]) -> Iterator[tuple[Any, Any]]:
        key, value = element
        accumulator = self.table[key] if key in self.table else self.combine_fn.create_accumulator()
        self.table[key] = self.combine_fn.add_input(accumulator, value)
        if len(self.table) >= self.max_keys:
            table, self.table = self.table, {}
            yield from table.items()

    def finish_bundle(self) -> Iterator[Any]:
        table, self.table = self.table, {}
        for item in table.items():
            yield GlobalWindows.windowed_value(item)

    def teardown(self) -> None:
        self.combine_fn.teardown()


class _MergeAccumulators(beam.DoFn):
    """``(key, accumulators)`` -> ``(key, output)``: merged, then extracted."""

    def __init__(self, combine_fn: beam.CombineFn) -> None:
        self.combine_fn = combine_fn

    def setup(self) -> None:
        self.combine_fn.setup()

    def process(self, element: tuple[Any, Iterable[Any]]) -> Iterator[tuple[Any, Any]]:
        key, accumulators = element
        merged = self.combine_fn.merge_accumulators(accumulators)
        yield key, self.combine_fn.extract_output(self.combine_fn.compact(merged))

    def teardown(self) -> None:
        self.combine_fn.teardown()


class BoundedCombinePerKey(beam.PTransform):
    """``CombinePerKey(combine_fn)`` with a pre-combine of at most ``max_keys`` keys per worker (module docstring)."""

    def __init__(self, combine_fn: beam.CombineFn, max_keys: int = MAX_KEYS) -> None:
        super().__init__()
        self.combine_fn = combine_fn
        self.max_keys = max_keys

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return (
            pairs
            | "PreCombine" >> beam.ParDo(_PreCombine(self.combine_fn, self.max_keys))
            | "GroupAccumulators" >> beam.GroupByKey()
            | "MergeAccumulators" >> beam.ParDo(_MergeAccumulators(self.combine_fn))
        )


class _Nothing(beam.CombineFn):
    """Combines any values into ``None``: a key's presence is all that is kept (``BoundedDistinct``)."""

    def create_accumulator(self) -> None:
        return None

    def add_input(self, accumulator: None, value: Any) -> None:
        return None

    def merge_accumulators(self, accumulators: Iterable[None]) -> None:
        return None

    def extract_output(self, accumulator: None) -> None:
        return None


class BoundedDistinct(beam.PTransform):
    """``beam.Distinct()`` with a bounded pre-combine: each distinct element once."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        super().__init__()
        self.max_keys = max_keys

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        return (
            elements
            | "AsKeys" >> beam.Map(lambda element: (element, None))
            | "Combine" >> BoundedCombinePerKey(_Nothing(), self.max_keys)
            | "Keys" >> beam.Keys()
        )


class BoundedCountPerKey(beam.PTransform):
    """``beam.combiners.Count.PerKey()`` with a bounded pre-combine: ``(key, number of its elements)``."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        super().__init__()
        self.max_keys = max_keys

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return pairs | "Combine" >> BoundedCombinePerKey(CountCombineFn(), self.max_keys)
