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
The side inputs are two pairs of integers. These are the pure parts of that cut (order, boundaries); filter-text's
graph (``pipeline.stages.filter_text``) applies them per n-gram partition.
"""

from __future__ import annotations

import hashlib

#: Tag of a rare-n-gram hit in filter-text's join by alt text (its pairs are tagged otherwise).
RARE = 1
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
