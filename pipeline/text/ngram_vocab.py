"""The rare-n-gram cut of ``filter-text``: which n-grams fall outside the ``vocab_size`` most frequent, exactly.

N-grams are ranked by raw-corpus count, descending; among equal counts by ``tie_order``: the 64-bit BLAKE2b hash of
the n-gram's UTF-8 text, then the text. The first ``vocab_size`` are frequent. A hash order rather than the string
order because a string order would make every tie at the cut-off fall by script (Latin before Cyrillic before CJK,
"a..." before "z..."), and because a uniform order lets the tie be split with small histograms instead of a sort.

The cut needs no sort and no vocabulary: a histogram count -> number of n-grams (a few thousand entries) gives the
boundary count c* and how many (r) of the n-grams counted c* fit. In one pass, n-grams counted above c* are frequent
(their alt ids are never read) and those below are rare; only the n-grams counted exactly c* (each holding at most
c* alt ids) go on: they are bucketed by the top 16 bits of their hash (a histogram of at most 65,536 entries) to find
the boundary bucket, and only that bucket's members (about ties / 65,536 of them) are sorted to pick the last ones.
The side inputs are two pairs of integers. ``RareNgramAlts`` is the composite; the rest are its parts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

TIED = "tied"
BOUNDARY = "boundary"
#: Tag of a rare-n-gram hit in ``RareNgramAlts``' output ``(alt id, (RARE, n-gram))``: filter-text joins these hits
#: with its pairs (tagged otherwise) by alt id.
RARE = 1
#: Buffered (n-gram, alt id) entries after which a bundle's table is emitted, bounding worker memory.
NGRAM_BUFFER_LIMIT = 200_000
#: Bits of the tie hash used to bucket the n-grams tied at the cut-off count.
TIE_BUCKET_BITS = 16


def tie_hash(ngram: str) -> int:
    """64-bit BLAKE2b of the n-gram's UTF-8 text: the order among n-grams of equal count."""
    return int.from_bytes(hashlib.blake2b(ngram.encode("utf-8"), digest_size=8).digest(), "big")


def tie_order(ngram: str) -> tuple[int, str]:
    """Sort key among equal counts: the hash, then the text (hash collisions stay deterministic)."""
    return tie_hash(ngram), ngram


def tie_bucket(ngram: str) -> int:
    """The top ``TIE_BUCKET_BITS`` bits of the tie hash: ``tie_order`` sorts buckets in the same order."""
    return tie_hash(ngram) >> (64 - TIE_BUCKET_BITS)


def count_boundary(histogram: dict[int, int], vocab_size: int | None) -> tuple[int, int] | None:
    """``(c*, r)``: n-grams counted above c* are frequent, below it rare, and r of those counted c* are frequent.

    ``None`` when every n-gram is frequent (no cut, or no more distinct n-grams than ``vocab_size``).
    """
    if vocab_size is None or sum(histogram.values()) <= vocab_size:
        return None
    above = 0
    for count in sorted(histogram, reverse=True):
        if above + histogram[count] >= vocab_size:
            return count, vocab_size - above
        above += histogram[count]
    raise AssertionError("unreachable: the histogram holds more n-grams than vocab_size")


def bucket_boundary(bucket_histogram: dict[int, int], keep: int) -> tuple[int, int]:
    """``(b*, r')``: tied n-grams in buckets below b* are frequent, above it rare, and r' of bucket b*'s are."""
    below = 0
    for bucket in sorted(bucket_histogram):
        if below + bucket_histogram[bucket] >= keep:
            return bucket, keep - below
        below += bucket_histogram[bucket]
    raise AssertionError("unreachable: fewer tied n-grams than the number to keep")


class HistogramFn(beam.CombineFn):
    """``value -> how many elements have it`` for a small set of values (counts, bucket numbers)."""

    def __init__(self, value_of: Any) -> None:
        self.value_of = value_of

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, accumulator: Counter, element: Any) -> Counter:
        accumulator[self.value_of(element)] += 1
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Counter]) -> Counter:
        merged: Counter = Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator: Counter) -> dict[int, int]:
        return dict(accumulator)


def _count_of(item: tuple[str, int]) -> int:
    return item[1]


def _tied_bucket(item: tuple[str, list[bytes]]) -> int:
    return tie_bucket(item[0])


def _bucket_boundary_or_none(histogram: dict[int, int], boundary: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if boundary is None else bucket_boundary(histogram, boundary[1])


def ngram_count(element: tuple[str, Iterable[tuple[int, list[bytes]]]]) -> tuple[str, int]:
    """``(n-gram, raw-corpus count)`` from its grouped per-bundle partial counts."""
    gram, partials = element
    return gram, sum(count for count, _ in partials)


class _RareHitBuffer(beam.DoFn):
    """Base of the DoFns emitting ``(alt id, (RARE, n-gram))``: one hit per alt id per bundle, the smallest n-gram.

    An alt text with several rare n-grams needs only one to be dropped; buffering per bundle keeps the join small.
    """

    def start_bundle(self) -> None:
        self._hits: dict[bytes, str] = {}

    def _add(self, gram: str, ids: Iterable[bytes]) -> Iterator[Any]:
        hits = self._hits
        for identifier in ids:
            previous = hits.get(identifier)
            if previous is None or gram < previous:
                hits[identifier] = gram
        if len(hits) >= NGRAM_BUFFER_LIMIT:
            yield from self._flush()

    def _flush(self) -> Iterator[tuple[bytes, tuple[int, str]]]:
        for identifier, gram in self._hits.items():
            yield identifier, (RARE, gram)
        self._hits = {}

    def finish_bundle(self) -> Iterator[Any]:
        for item in self._flush():
            yield WindowedValue(item, MIN_TIMESTAMP, [GlobalWindow()])


class SplitAtBoundaryCount(_RareHitBuffer):
    """Counts below c* are rare (hits emitted), above it frequent; n-grams counted exactly c* go to ``TIED``.

    A tied n-gram carries at most c* alt ids (each id adds at least 1 to the count), so ``TIED`` stays small.
    """

    def process(self, element: tuple[str, Iterable[tuple[int, list[bytes]]]], boundary: Any) -> Iterator[Any]:
        gram, count = ngram_count(element)
        if boundary is None or count > boundary[0]:
            return  # frequent: its (possibly millions of) alt ids are never read
        ids = [identifier for _, batch in element[1] for identifier in batch]
        if count == boundary[0]:
            yield beam.pvalue.TaggedOutput(TIED, (gram, ids))
            return
        yield from self._add(gram, ids)


class SplitAtBoundaryBucket(_RareHitBuffer):
    """Among the n-grams counted c*: tie buckets below b* are frequent, above it rare (hits emitted); the members of
    bucket b* itself go to ``BOUNDARY`` (about ties / 65,536 of them)."""

    def process(self, element: tuple[str, list[bytes]], buckets: tuple[int, int] | None) -> Iterator[Any]:
        gram, ids = element
        if buckets is None:
            return
        bucket = tie_bucket(gram)
        if bucket == buckets[0]:
            yield beam.pvalue.TaggedOutput(BOUNDARY, element)
        elif bucket > buckets[0]:
            yield from self._add(gram, ids)


def rare_in_boundary_bucket(
    members: list[tuple[str, list[bytes]]], buckets: tuple[int, int] | None
) -> Iterator[tuple[bytes, tuple[int, str]]]:
    """Hits for the boundary bucket's members after the first r' in ``tie_order`` (the only sort, of a few items)."""
    if buckets is None:
        return
    for gram, ids in sorted(members, key=lambda member: tie_order(member[0]))[buckets[1] :]:
        for identifier in ids:
            yield identifier, (RARE, gram)


class RareNgramAlts(beam.PTransform):
    """Grouped n-gram occurrences ``(n-gram, [(count, alt ids)])`` -> ``(alt id, (RARE, n-gram))`` per alt text holding
    an n-gram outside the ``vocab_size`` most frequent (ranked by count, then ``tie_order``; module docstring).

    Side inputs are only the count boundary (c*, r) and the tie-bucket boundary (b*, r'); the boundary bucket's few
    members are sorted in one place.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def expand(self, grouped: beam.PCollection) -> beam.PCollection:
        boundary = (
            grouped
            | "NgramCounts" >> beam.Map(ngram_count)
            | "CountHistogram" >> beam.CombineGlobally(HistogramFn(_count_of))
            | "CountBoundary" >> beam.Map(count_boundary, self.vocab_size)
        )
        split = grouped | "SplitAtBoundaryCount" >> beam.ParDo(
            SplitAtBoundaryCount(), beam.pvalue.AsSingleton(boundary)
        ).with_outputs(TIED, main="rare")
        tied = split[TIED]
        buckets = (
            tied
            | "TieBucketHistogram" >> beam.CombineGlobally(HistogramFn(_tied_bucket))
            | "TieBucketBoundary" >> beam.Map(_bucket_boundary_or_none, beam.pvalue.AsSingleton(boundary))
        )
        split_ties = tied | "SplitAtBoundaryBucket" >> beam.ParDo(
            SplitAtBoundaryBucket(), beam.pvalue.AsSingleton(buckets)
        ).with_outputs(BOUNDARY, main="rare")
        rare_boundary = (
            split_ties[BOUNDARY]
            | "BoundaryBucketMembers" >> beam.combiners.ToList()
            | "RareInBoundaryBucket" >> beam.FlatMap(rare_in_boundary_bucket, beam.pvalue.AsSingleton(buckets))
        )
        return (split.rare, split_ties.rare, rare_boundary) | "RareHits" >> beam.Flatten()
