"""``filter-text``: ALIGN's text rules over ``candidates/``, exact at any scale, with a language tag on every survivor.

Reads ``candidates/`` and writes ``text_kept/`` (TextKept: the candidate plus ``language``, ``language_score``,
``unigram_count`` and ``duplicate_count``) and ``rejected/filter-text-*`` (one row per dropped candidate). Every
candidate ends in exactly one of the two.

Rules, in the order that decides the recorded reason (the first failing one is recorded; every failing one is
counted, in ``<stage>:<reason>`` counters, for duplicates too). Thresholds are ``TextFilterConfig`` fields, ``None``
switches a rule off; defaults are ALIGN's (Jia et al., 2021):

1. ``duplicate_pair``: one candidate per (image URL, alt text) (= same ``key``) is kept, the one with the smallest
   ``candidate_id``; the others are rejected and the kept one's ``duplicate_count`` says how many it stands for.
2. ``alt_too_short`` / 3. ``alt_too_long``: fewer than ``min_unigrams`` (3) or more than ``max_unigrams`` (20)
   unigrams, as ``pipeline.text.tokenize`` defines them (each Han/Kana/Thai character is one unigram).
4. ``alt_too_few_chars``: fewer than ``min_chars`` characters (Unicode code points; off in ALIGN, 6 in DataComp).
5. ``alt_too_few_words``: fewer than ``min_words`` whitespace-separated words, ``len(alt_text.split())`` exactly as
   DataComp's basic filter counts them (off in ALIGN; 3 in DataComp: "more than 2 words"). Unlike unigrams, a
   hyphenated ``state-of-the-art`` is one word and an emoji or ``&`` standing alone is one.
6. ``alt_shared_by_too_many_images``: the alt text appears with more than ``max_images_per_alt`` (10) DISTINCT
   image URLs.
7. ``image_url_has_too_many_alts``: the image URL carries more than ``max_alts_per_image_url`` (1000) DISTINCT alt
   texts, counted over the raw candidates (every row, before any rule). filter-image's ``image_has_too_many_alts``
   counts the same way per image content. (6 and 7 count distinct pairs, so duplicates never inflate them.)
8. ``rare_ngram``: the alt text holds a unigram or bigram outside the ``ngram_vocab_size`` (ALIGN: 100M) most frequent
   n-grams. Counts are taken over the whole RAW candidate set (every candidate row, duplicates and candidates that
   fail other rules included, every occurrence in an alt text), as ALIGN counts its raw corpus. N-grams are ranked by
   count, descending; among equal counts by a hash order (``pipeline.text.ngram_vocab``, which says why).
9. ``language_not_allowed``: only when ``languages`` is set: fastText lid.176's top-1 label is not in it, or its
   probability is below ``min_language_score``. Without ``languages`` nothing is dropped; the tag is always written.

The reasons are ``pipeline.core.reasons.FilterTextReason``; rules 2..9 are ``text_rules(config)``, evaluated and
counted by ``pipeline.core.rules`` (the protocol every filter stage shares).

Deliberately absent (ALIGN's bet is scale over cleaning, unlike Conceptual Captions' pipeline): hypernymisation,
part-of-speech rules, stop-word or profanity cleaning, and image-text classifiers.

How it scales (every step is a keyed shuffle or a per-element map; nothing global is held by one worker). The input
is read per Parquet row group (a *read unit*); candidates are spread over ``partition_count(rows)`` hash partitions
(about ``ROWS_PER_PARTITION`` each), and every shuffle moves one payload of numpy/Arrow arrays per (unit or
partition, partition), never one element per row (Beam's per-element cost and pickled dict rows were most of the
time, and the local runner holds every shuffle in memory). Only compact columns travel: the key and candidate id,
a row reference, 128-bit URL and 96-bit alt ids (``alt_id``) and the unigram count; the full rows are read again,
once, by the last step. Steps: per unit, each distinct alt text is tokenised once and its n-grams counted once per
candidate row (a per-unit pre-aggregation; counts are Zipfian) -> per key partition, duplicates are decided (sort by
key, candidate id) -> per URL partition, distinct alts per URL; per n-gram partition, raw counts are summed and
the cut is found from two small histograms (``pipeline.text.ngram_vocab``: no sort, no vocabulary); per alt
partition, distinct URLs per alt and the smallest rare n-gram of each alt text -> per read unit, the facts are
joined with the re-read rows and ``text_rules`` applied (fastText once per distinct alt text of the unit), and the
outputs leave as Arrow record batches (``WriteTableBatches``). A hot key (an alt text on millions of images) is a
long array in one partition, not a Python list.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.core.config import CorpusConfig, TextFilterConfig
from pipeline.core.layout import CorpusLayout, WriteTableBatches, list_matching
from pipeline.core.progress import StageProgress, table_progress, with_progress
from pipeline.core.reasons import FilterTextReason
from pipeline.core.rules import REJECTED, Decisions, Rule, RuleResult, counter
from pipeline.core.stage import run_stage
from pipeline.text.langid import LanguageIdentifier
from pipeline.text.ngram_vocab import RARE, bucket_boundary, count_boundary, tie_bucket, tie_order
from pipeline.text.tokenize import unigrams
from schemas import Candidate, Rejection, TextKept

STAGE = "filter-text"

NGRAMS = "ngrams"
URLS = "urls"
ALTS = "alts"
_PAIR = 0  # tag of a pair in the alt-text join (rare-n-gram hits are tagged ``RARE``)
assert _PAIR != RARE


@dataclass
class PairFacts:
    """One distinct (image URL, alt text) pair: its representative candidate and what the rules look at."""

    row: dict[str, Any]
    multiplicity: int
    alts_per_image_url: int = 0
    unigram_count: int = 0
    images_per_alt: int = 0
    rare_ngram: str | None = None
    language: str = ""
    language_score: float = 0.0


def alt_id(alt_text: str) -> bytes:
    """A 96-bit id of an alt text, carried in the n-gram join instead of the (up to 1000-character) text."""
    return hashlib.blake2b(alt_text.encode("utf-8"), digest_size=12).digest()


def _alt_text(row: dict[str, Any]) -> str:
    return row.get(Candidate.ALT_TEXT) or ""


# -- the rules: each bound to its config, a function of a pair's facts; None when kept or switched off -----------------
def alt_too_short_rule(config: TextFilterConfig) -> Rule:
    """Fewer than ``min_unigrams`` unigrams."""

    def rule(facts: PairFacts) -> RuleResult:
        if config.min_unigrams is not None and facts.unigram_count < config.min_unigrams:
            return FilterTextReason.ALT_TOO_SHORT, f"{facts.unigram_count} unigrams < {config.min_unigrams}"
        return None

    return rule


def alt_too_long_rule(config: TextFilterConfig) -> Rule:
    """More than ``max_unigrams`` unigrams."""

    def rule(facts: PairFacts) -> RuleResult:
        if config.max_unigrams is not None and facts.unigram_count > config.max_unigrams:
            return FilterTextReason.ALT_TOO_LONG, f"{facts.unigram_count} unigrams > {config.max_unigrams}"
        return None

    return rule


def alt_too_few_chars_rule(config: TextFilterConfig) -> Rule:
    """Fewer than ``min_chars`` characters (code points)."""

    def rule(facts: PairFacts) -> RuleResult:
        chars = len(_alt_text(facts.row))
        if config.min_chars is not None and chars < config.min_chars:
            return FilterTextReason.ALT_TOO_FEW_CHARS, f"{chars} characters < {config.min_chars}"
        return None

    return rule


def alt_too_few_words_rule(config: TextFilterConfig) -> Rule:
    """Fewer than ``min_words`` whitespace-separated words (DataComp's ``len(text.split())``)."""

    def rule(facts: PairFacts) -> RuleResult:
        if config.min_words is None:
            return None
        words = len(_alt_text(facts.row).split())
        if words < config.min_words:
            return FilterTextReason.ALT_TOO_FEW_WORDS, f"{words} words < {config.min_words}"
        return None

    return rule


def alt_shared_by_too_many_images_rule(config: TextFilterConfig) -> Rule:
    """The alt text appears with more than ``max_images_per_alt`` distinct image URLs."""

    def rule(facts: PairFacts) -> RuleResult:
        limit = config.max_images_per_alt
        if limit is not None and facts.images_per_alt > limit:
            return FilterTextReason.ALT_SHARED_BY_TOO_MANY_IMAGES, f"{facts.images_per_alt} image URLs > {limit}"
        return None

    return rule


def image_url_has_too_many_alts_rule(config: TextFilterConfig) -> Rule:
    """The image URL carries more than ``max_alts_per_image_url`` distinct alt texts."""

    def rule(facts: PairFacts) -> RuleResult:
        limit = config.max_alts_per_image_url
        if limit is not None and facts.alts_per_image_url > limit:
            return FilterTextReason.IMAGE_URL_HAS_TOO_MANY_ALTS, f"{facts.alts_per_image_url} alt texts > {limit}"
        return None

    return rule


def rare_ngram_rule(config: TextFilterConfig) -> Rule:
    """An n-gram of the alt text is outside the ``ngram_vocab_size`` most frequent."""

    def rule(facts: PairFacts) -> RuleResult:
        if config.ngram_vocab_size is not None and facts.rare_ngram is not None:
            detail = f"{facts.rare_ngram!r} is not among the {config.ngram_vocab_size} most frequent n-grams"
            return FilterTextReason.RARE_NGRAM, detail
        return None

    return rule


def language_not_allowed_rule(config: TextFilterConfig) -> Rule:
    """With ``languages`` set: top-1 language not allowed, or less probable than ``min_language_score``."""

    def rule(facts: PairFacts) -> RuleResult:
        if not config.languages:
            return None
        if facts.language not in config.languages or facts.language_score < config.min_language_score:
            allowed = ",".join(config.languages)
            detail = f"{facts.language or '?'} ({facts.language_score:.2f}) not in {allowed}"
            return FilterTextReason.LANGUAGE_NOT_ALLOWED, detail
        return None

    return rule


def text_rules(config: TextFilterConfig) -> list[Rule]:
    """Rules 2..9 in recording order (``duplicate_pair`` is decided before, when pairs are formed)."""
    return [
        alt_too_short_rule(config),
        alt_too_long_rule(config),
        alt_too_few_chars_rule(config),
        alt_too_few_words_rule(config),
        alt_shared_by_too_many_images_rule(config),
        image_url_has_too_many_alts_rule(config),
        rare_ngram_rule(config),
        language_not_allowed_rule(config),
    ]


@dataclass
class PairColumns:
    """The facts of many pairs at once, one array per fact: what ``text_rule_masks`` reads."""

    alt_texts: list[str]
    unigram_count: np.ndarray
    images_per_alt: np.ndarray
    alts_per_image_url: np.ndarray
    rare_ngram: np.ndarray  # object array: the smallest rare n-gram, or None
    language: np.ndarray | None = None  # object array of language codes (only read when ``languages`` is set)
    language_score: np.ndarray | None = None


def text_rule_masks(config: TextFilterConfig, columns: PairColumns) -> list[np.ndarray]:
    """``text_rules(config)`` over many pairs at once: one mask per rule, in the same order (True: the rule fails).

    The vectorised form the stage applies (a rule that needs no per-row Python should not pay for it, as in
    DataComp's metadata filters); the per-pair rules stay the definition, give the recorded detail, and a test holds
    the two to the same answers.
    """
    size = len(columns.alt_texts)
    never = np.zeros(size, dtype=bool)

    def below(values: np.ndarray, limit: int | None) -> np.ndarray:
        return never if limit is None else values < limit

    def above(values: np.ndarray, limit: int | None) -> np.ndarray:
        return never if limit is None else values > limit

    chars = words = never
    if config.min_chars is not None:
        chars = np.fromiter(map(len, columns.alt_texts), np.int64, size) < config.min_chars
    if config.min_words is not None:
        counts = np.fromiter((len(alt.split()) for alt in columns.alt_texts), np.int64, size)
        words = counts < config.min_words
    rare = never
    if config.ngram_vocab_size is not None:
        rare = np.fromiter((gram is not None for gram in columns.rare_ngram), bool, size)
    language = never
    if config.languages:
        assert columns.language is not None and columns.language_score is not None
        allowed = set(config.languages)
        outside = np.fromiter((code not in allowed for code in columns.language), bool, size)
        language = outside | (columns.language_score < config.min_language_score)
    return [
        below(columns.unigram_count, config.min_unigrams),
        above(columns.unigram_count, config.max_unigrams),
        chars,
        words,
        above(columns.images_per_alt, config.max_images_per_alt),
        above(columns.alts_per_image_url, config.max_alts_per_image_url),
        rare,
        language,
    ]


#: The reason of each entry of ``text_rules`` / ``text_rule_masks``, in order.
TEXT_RULE_REASONS: tuple[FilterTextReason, ...] = tuple(FilterTextReason)[1:]

# -- the batched graph ------------------------------------------------------------------------------------------------
#: Candidates per hash partition: every shuffle moves one payload per (read unit, partition), never one per row. A
#: partition's payloads are what a worker holds at once in the partition steps, so the bound is a worker's memory:
#: at 500,000 a partition kept growing with the crawl up to 4M candidates (filter-text's largest worker 837 -> 1,136
#: MB from a 1 GB to a 2 GB simulated crawl; 799 -> 982 MB at 65,536, and 16% less CPU at 2 GB). At 65,536 a 1 GB
#: crawl's partitions were 7x a 100 MB crawl's (which gets the floor of 8): largest worker 759 MB at 65,536, 611 at
#: 16,384, 582 at 8,192, CPU 33.8 / 31.3 / 32.5 s. Payloads grow as read units x partitions, so far smaller costs more.
#: At 4,096 a 100 MB crawl (17 partitions) has partitions as large as any bigger crawl's, where at 16,384 it got the
#: floor of 8 with half a 1 GB crawl's rows each: 1 GB, 2 workers, largest worker 477 / 460 / 446 MB at 16,384 /
#: 8,192 / 4,096 (100 MB: 375 at both ends), CPU 25.6 / 24.7 / 26.8 s.
ROWS_PER_PARTITION = 4_096
#: At least this many partitions, so several workers share even a small input.
MIN_PARTITIONS = 8
#: Candidate columns the shuffles need; the full rows are read again, once, when the rules are applied.
_KEY_COLUMNS = [Candidate.KEY, Candidate.CANDIDATE_ID, Candidate.IMAGE_URL, Candidate.ALT_TEXT]
_ROW_BITS = 32  # a row reference is (read unit << 32) | row within the unit's row group
_DUP, _PAIR_FACT, _URL_FACT, _ALT_FACT = range(4)  # tags of the facts joined per read unit
#: ``WriteTableBatches``' gathering bound for filter-text's outputs: none, so each unit's batch is its own row group.
UNIT_ROW_GROUP = 0


def partition_count(rows: int) -> int:
    """Hash partitions for ``rows`` candidates: a partition holds about ``ROWS_PER_PARTITION`` of them."""
    return max(MIN_PARTITIONS, -(-rows // ROWS_PER_PARTITION))


def read_units(paths: Sequence[str]) -> tuple[list[tuple[str, int]], int]:
    """Every ``(file, row group)`` of the candidate files (read from footers only), and their total rows."""
    units: list[tuple[str, int]] = []
    rows = 0
    for path in paths:
        with FileSystems.open(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        units.extend((path, group) for group in range(metadata.num_row_groups))
        rows += metadata.num_rows
    return units, rows


def read_unit(unit: tuple[str, int], columns: list[str] | None = None) -> pa.Table:
    """One row group of a candidate file."""
    path, group = unit
    with FileSystems.open(path) as handle:
        return pq.ParquetFile(handle).read_row_group(group, columns=columns)


def _split_ids(digests: list[bytes], high: int) -> tuple[np.ndarray, np.ndarray]:
    """Digests of ``8 + n`` bytes -> (first 8 bytes as uint64, the rest as uint64): compact shuffle keys."""
    joined = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), -1)
    first = joined[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    rest = np.zeros(len(digests), dtype=np.uint64)
    for column in range(8, joined.shape[1]):
        rest = (rest << np.uint64(8)) | joined[:, column].astype(np.uint64)
    assert joined.shape[1] == high
    return first, rest


def _by_partition(partitions: np.ndarray, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(partition, indices)`` of each non-empty partition, indices in their original order."""
    order = np.argsort(partitions, kind="stable")
    bounds = np.searchsorted(partitions[order], np.arange(count + 1))
    for partition in range(count):
        if bounds[partition] < bounds[partition + 1]:
            yield partition, order[bounds[partition] : bounds[partition + 1]]


def _group_starts(*sorted_columns: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in lexicographically sorted columns, plus the end."""
    size = len(sorted_columns[0])
    change = np.zeros(size, dtype=bool)
    if size:
        change[0] = True
    for column in sorted_columns:
        change[1:] |= column[1:] != column[:-1]
    return np.append(np.flatnonzero(change), size)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (a sort and a mask: numpy's hash-based ``unique`` is slower here)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _by_unit(rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(read unit, indices into rows)`` for row references ``rows``."""
    units = rows >> np.int64(_ROW_BITS)
    order = np.argsort(units, kind="stable")
    starts = _group_starts(units[order])
    for start, end in itertools.pairwise(starts):
        yield int(units[order[start]]), order[start:end]


def _row_in_unit(rows: np.ndarray) -> np.ndarray:
    return (rows & np.int64((1 << _ROW_BITS) - 1)).astype(np.int32)


class PrepareUnit(beam.DoFn):
    """One row group of candidates -> compact shuffle payloads (no full rows), per hash partition.

    Main output ``(key partition, table of key, candidate id, row, URL id, alt id)`` for the duplicate pass; ``NGRAMS``
    ``(n-gram partition, (n-grams, raw counts, (n-gram, alt id) memberships))``: each distinct alt text of the unit is
    tokenised once and its n-grams counted once per row carrying it (a per-unit pre-aggregation: counts are Zipfian).
    """

    progress = StageProgress(STAGE, "candidates")

    def __init__(self, units: list[tuple[str, int]], partitions: int, count_ngrams: bool) -> None:
        self.units = units
        self.partitions = partitions
        self.count_ngrams = count_ngrams

    def setup(self) -> None:
        self.input = counter(STAGE, "input")

    def process(self, unit: int) -> Iterator[Any]:
        table = read_unit(self.units[unit], _KEY_COLUMNS)
        size = table.num_rows
        self.input.inc(size)
        self.progress.add(size)
        if not size:
            return
        # Built whole, then yielded: the cyclic garbage collector is paused while it is built (next to no cycles are
        # made here, but millions of small lists and strings would trigger a collection every few hundred).
        with _collector_paused():
            outputs = self._prepare(unit, table)
        yield from outputs

    def _prepare(self, unit: int, table: pa.Table) -> list[Any]:
        size = table.num_rows
        outputs: list[Any] = []
        alts = table[Candidate.ALT_TEXT].combine_chunks().fill_null("").dictionary_encode()
        row_alt = alts.indices.to_numpy().astype(np.int64)
        distinct_alts = alts.dictionary.to_pylist()
        tokens = [unigrams(alt) for alt in distinct_alts]
        unigram_counts = np.fromiter(map(len, tokens), np.int64, len(tokens))
        alt_high, alt_low = _split_ids([alt_id(alt) for alt in distinct_alts], 12)
        urls = table[Candidate.IMAGE_URL].combine_chunks().fill_null("").dictionary_encode()
        row_url = urls.indices.to_numpy().astype(np.int64)
        url_high, url_low = _split_ids(
            [hashlib.blake2b(url.encode("utf-8"), digest_size=16).digest() for url in urls.dictionary.to_pylist()], 16
        )
        rows = (np.int64(unit) << np.int64(_ROW_BITS)) | np.arange(size, dtype=np.int64)
        compact = pa.table(
            {
                "key": table[Candidate.KEY],
                "candidate_id": table[Candidate.CANDIDATE_ID],
                "row": rows,
                "url_high": url_high[row_url],
                "url_low": url_low[row_url],
                "alt_high": alt_high[row_alt],
                "alt_low": alt_low[row_alt],
                "unigrams": unigram_counts[row_alt],
            }
        )
        # One row per distinct key of the unit (its smallest candidate id) with the key's count in the unit: a pair
        # repeated a million times (a logo on every page) reaches the duplicate pass as one row per read unit.
        compact, starts, _ = _sorted_by_key(compact)
        counts = np.diff(np.append(starts, compact.num_rows))
        compact = compact.take(pa.array(starts)).append_column("count", pa.array(counts, pa.int64()))
        key_partitions = _hex_prefix(compact["key"].combine_chunks(), 15) % np.uint64(self.partitions)
        for partition, indices in _by_partition(key_partitions.astype(np.int64), self.partitions):
            outputs.append((partition, compact.take(indices)))
        if self.count_ngrams:
            weights = np.bincount(row_alt, minlength=len(distinct_alts))
            outputs.extend(self._ngrams(tokens, weights, alt_high, alt_low))
        return outputs

    def _ngrams(
        self, tokens: list[list[str]], weights: np.ndarray, alt_high: np.ndarray, alt_low: np.ndarray
    ) -> Iterator[Any]:
        # Vectorised: the unigrams of the unit's distinct alt texts in one flat Arrow array, the bigrams joined from
        # it in C (``pipeline.text.tokenize.bigrams``: consecutive unigrams of one alt text, joined by a space), then
        # dictionary-encoded; counts and distinct (n-gram, alt) memberships are numpy reductions over the codes.
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        if not lengths.any():
            return
        flat = pa.array(list(itertools.chain.from_iterable(tokens)), pa.string())
        owners = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
        same_alt = np.flatnonzero(owners[1:] == owners[:-1])
        bigram_array = pc.binary_join_element_wise(flat.take(same_alt), flat.take(same_alt + 1), " ")
        encoded = pa.concat_arrays([flat, bigram_array]).dictionary_encode()
        owners = np.concatenate([owners, owners[same_alt]])
        gram_array = encoded.dictionary
        codes = encoded.indices.to_numpy().astype(np.int64)
        # Raw-corpus counts: every occurrence in every candidate row (an alt text's rows are its weight).
        count_array = np.bincount(codes, weights=weights[owners], minlength=len(gram_array)).astype(np.int64)
        pairs = _distinct(codes * len(tokens) + owners)
        members, member_alts = np.divmod(pairs, len(tokens))
        gram_partitions = np.fromiter(
            (zlib.crc32(gram.encode("utf-8")) % self.partitions for gram in gram_array.to_pylist()),
            np.int64,
            len(gram_array),
        )
        # Renumber each partition's n-grams 0..k-1 so its memberships index its own list.
        local = np.empty(len(gram_array), dtype=np.int64)
        member_groups = dict(_by_partition(gram_partitions[members], self.partitions))
        for partition, indices in _by_partition(gram_partitions, self.partitions):
            local[indices] = np.arange(len(indices))
            chosen = member_groups[partition]
            payload = (
                gram_array.take(indices),
                count_array[indices],
                local[members[chosen]],
                alt_high[member_alts[chosen]],
                alt_low[member_alts[chosen]],
            )
            yield beam.pvalue.TaggedOutput(NGRAMS, (partition, payload))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything) for a block that makes
    millions of acyclic objects; it ran about a fifth of the stage's CPU time in the tokeniser before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _hex_prefix(keys: pa.StringArray, digits: int) -> np.ndarray:
    """``int(key[:digits], 16)`` of every key, vectorised over the Arrow buffer when all keys are hex of one length."""
    if not len(keys) or keys.null_count or keys.type != pa.string():
        return np.fromiter((int(key[:digits], 16) for key in keys.to_pylist()), np.uint64, len(keys))
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    lengths = np.diff(offsets)
    if lengths.min() == lengths.max() >= digits:
        data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        characters = data.reshape(len(keys), int(lengths[0]))[:, :digits].astype(np.uint64)
        lower = characters | np.uint64(0x20)
        values = np.where(characters <= ord("9"), characters - ord("0"), lower - (ord("a") - 10))
        if ((characters >= ord("0")) & (values < 16)).all():
            result = np.zeros(len(keys), dtype=np.uint64)
            for column in range(digits):
                result = (result << np.uint64(4)) | values[:, column]
            return result
    return np.fromiter((int(key[:digits], 16) for key in keys.to_pylist()), np.uint64, len(keys))


def _sorted_by_key(table: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """``table`` sorted by (key, candidate id), the start of each key's run, and each row's run number."""
    table = table.take(pc.sort_indices(table, [("key", "ascending"), ("candidate_id", "ascending")]))
    keys = table["key"].combine_chunks()
    change = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        change[1:] = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    return table, np.flatnonzero(change), np.cumsum(change) - 1


class KeepOnePerPair(beam.DoFn):
    """Per key partition: the candidate with the smallest id stands for its pair; the others are ``duplicate_pair``.

    Its input holds one row per (read unit, key) with the key's count in that unit. Outputs facts per read unit
    (main: ``(unit, (_DUP|_PAIR_FACT, ...))``; ``_DUP`` gives, for each key of the unit that has more than one
    candidate in the job, the candidate id that stands for it) and the pairs, keyed by URL partition (``URLS``) and
    by alt-text partition (``ALTS``), as arrays.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator[Any]:
        _, tables = element
        table, starts, group = _sorted_by_key(pa.concat_tables(list(tables)))
        multiplicity = np.add.reduceat(table["count"].to_numpy(), starts) if len(starts) else starts
        rows = table["row"].to_numpy()
        shared = np.flatnonzero(multiplicity[group] > 1)
        if len(shared):
            kept_ids = table["candidate_id"].combine_chunks().take(pa.array(starts[group[shared]]))
            shared_keys = table["key"].combine_chunks().take(pa.array(shared))
            for unit, indices in _by_unit(rows[shared]):
                chosen = pa.array(indices)
                yield unit, (_DUP, shared_keys.take(chosen), kept_ids.take(chosen))
        pair_rows = rows[starts]
        pair_unigrams = table["unigrams"].to_numpy()[starts]
        for unit, indices in _by_unit(pair_rows):
            yield unit, (_PAIR_FACT, _row_in_unit(pair_rows[indices]), multiplicity[indices], pair_unigrams[indices])
        url_high, url_low = table["url_high"].to_numpy()[starts], table["url_low"].to_numpy()[starts]
        for partition, indices in _by_partition(
            (url_high % np.uint64(self.partitions)).astype(np.int64), self.partitions
        ):
            yield beam.pvalue.TaggedOutput(URLS, (partition, (pair_rows[indices], url_high[indices], url_low[indices])))
        alt_high, alt_low = table["alt_high"].to_numpy()[starts], table["alt_low"].to_numpy()[starts]
        for partition, indices in _by_partition(
            (alt_high % np.uint64(self.partitions)).astype(np.int64), self.partitions
        ):
            payload = (_PAIR, (pair_rows[indices], alt_high[indices], alt_low[indices]))
            yield beam.pvalue.TaggedOutput(ALTS, (partition, payload))


def _group_sizes(rows: np.ndarray, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort pairs by (high, low): ``(order, group start per sorted pair, size of each pair's group)``."""
    order = np.lexsort((low, high))
    starts = _group_starts(high[order], low[order])
    sizes = np.diff(starts)
    return order, starts, np.repeat(sizes, sizes)


def count_alts_per_image_url(element: tuple[int, Iterable[tuple]]) -> Iterator[Any]:
    """Per URL partition: each pair's number of distinct alt texts on its image URL, as facts per read unit."""
    _, payloads = element
    parts = list(payloads)
    rows, high, low = (np.concatenate([part[column] for part in parts]) for column in range(3))
    order, _, sizes = _group_sizes(rows, high, low)
    rows = rows[order]
    for unit, indices in _by_unit(rows):
        yield unit, (_URL_FACT, _row_in_unit(rows[indices]), sizes[indices])


def count_images_per_alt(element: tuple[int, Iterable[tuple[int, Any]]]) -> Iterator[Any]:
    """Per alt-text partition: each pair's number of distinct image URLs and its alt text's smallest rare n-gram."""
    _, payloads = element
    pairs = []
    rare: dict[tuple[int, int], str] = {}
    for tag, payload in payloads:
        if tag == _PAIR:
            pairs.append(payload)
            continue
        for high, low, gram in zip(payload[0].tolist(), payload[1].tolist(), payload[2], strict=True):
            previous = rare.get((high, low))
            if previous is None or gram < previous:
                rare[(high, low)] = gram
    if not pairs:
        return  # only rare-n-gram hits: possible only with a hash collision of alt ids
    rows, high, low = (np.concatenate([part[column] for part in pairs]) for column in range(3))
    order, starts, sizes = _group_sizes(rows, high, low)
    rows, high, low = rows[order], high[order], low[order]
    grams: list[str | None] = [None] * len(rows)
    if rare:
        for start, end in itertools.pairwise(starts.tolist()):
            gram = rare.get((int(high[start]), int(low[start])))
            if gram is not None:
                grams[start:end] = [gram] * (end - start)
    for unit, indices in _by_unit(rows):
        yield unit, (_ALT_FACT, _row_in_unit(rows[indices]), sizes[indices], [grams[index] for index in indices])


def merge_ngram_partition(element: tuple[int, Iterable[tuple]]) -> tuple[Any, ...]:
    """One n-gram partition's payloads -> (distinct n-grams, raw counts, memberships as (n-gram index, alt id))."""
    _, payloads = element
    parts = list(payloads)
    encoded = pa.chunked_array([part[0] for part in parts], pa.string()).combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy()
    counts = np.concatenate([part[1] for part in parts])
    totals = np.zeros(len(encoded.dictionary), dtype=np.int64)
    np.add.at(totals, codes, counts)
    offsets = np.cumsum([0] + [len(part[0]) for part in parts[:-1]])
    members = np.concatenate([codes[part[2] + offset] for part, offset in zip(parts, offsets, strict=True)])
    high = np.concatenate([part[3] for part in parts])
    low = np.concatenate([part[4] for part in parts])
    return encoded.dictionary, totals, members, high, low


def count_histogram(merged: tuple[Any, ...]) -> Counter:
    """count -> number of n-grams of one partition."""
    values, numbers = np.unique(merged[1], return_counts=True)
    return Counter(dict(zip(values.tolist(), numbers.tolist(), strict=True)))


def merge_histograms(histograms: Iterable[Counter]) -> Counter:
    """Sum of histograms (an associative combiner: Beam applies it to its own outputs too)."""
    merged: Counter = Counter()
    for histogram in histograms:
        merged.update(histogram)
    return merged


def with_ties(merged: tuple[Any, ...], boundary: tuple[int, int] | None) -> tuple[Any, ...]:
    """One merged n-gram partition plus its n-grams counted exactly c* and their tie buckets, hashed once here
    (BLAKE2b per tied n-gram; the tie histogram, the boundary bucket and the rare hits all read them)."""
    if boundary is None:
        return (*merged, [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    positions = np.flatnonzero(merged[1] == boundary[0])
    grams = merged[0].take(pa.array(positions)).to_pylist()
    buckets = np.fromiter(map(tie_bucket, grams), np.int64, len(grams))
    return (*merged, grams, positions, buckets)


def tie_bucket_histogram(annotated: tuple[Any, ...]) -> Counter:
    """Tie bucket -> number of this partition's n-grams counted exactly c*."""
    values, numbers = np.unique(annotated[-1], return_counts=True)
    return Counter(dict(zip(values.tolist(), numbers.tolist(), strict=True)))


def boundary_bucket_members(annotated: tuple[Any, ...], buckets: tuple[int, int] | None) -> Iterator[str]:
    """This partition's n-grams counted c* in the boundary tie bucket b* (about ties / 65,536 in all)."""
    if buckets is None:
        return
    grams, bucket_of = annotated[-3], annotated[-1]
    yield from (grams[index] for index in np.flatnonzero(bucket_of == buckets[0]).tolist())


def rare_in_boundary(members: list[str], buckets: tuple[int, int] | None) -> list[str]:
    """The boundary bucket's members after the first r' in ``tie_order``: rare (the only sort, of a few items)."""
    if buckets is None:
        return []
    return sorted(members, key=tie_order)[buckets[1] :]


class RareHitsByAlt(beam.DoFn):
    """Per n-gram partition: which n-grams are rare (``ngram_vocab``'s cut), and for each alt text holding one the
    smallest, keyed by alt-text partition."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def process(
        self,
        annotated: tuple[Any, ...],
        boundary: tuple[int, int] | None,
        buckets: tuple[int, int] | None,
        boundary_rare: list[str],
    ) -> Iterator[Any]:
        if boundary is None:
            return
        dictionary, totals, members, high, low, tied_grams, tied_positions, tied_buckets = annotated
        rare = totals < boundary[0]
        if buckets is not None:
            rare[tied_positions[tied_buckets > buckets[0]]] = True
            if boundary_rare:
                rare_ties = set(boundary_rare)
                for index in np.flatnonzero(tied_buckets == buckets[0]).tolist():
                    if tied_grams[index] in rare_ties:
                        rare[tied_positions[index]] = True
        hit = np.flatnonzero(rare[members])
        if not len(hit):
            return
        # The smallest rare n-gram of each alt text: sort hits by (alt id, n-gram) and keep each alt's first. Arrow
        # sorts strings by UTF-8 bytes, which is code point order, i.e. Python's ``<`` on str.
        hits = pa.table({"high": high[hit], "low": low[hit], "gram": dictionary.take(pa.array(members[hit]))})
        hits = hits.take(pc.sort_indices(hits, [("high", "ascending"), ("low", "ascending"), ("gram", "ascending")]))
        alt_high, alt_low = hits["high"].to_numpy(), hits["low"].to_numpy()
        first = _group_starts(alt_high, alt_low)[:-1]
        alt_high, alt_low = alt_high[first], alt_low[first]
        values = hits["gram"].take(pa.array(first)).to_pylist()
        for partition, indices in _by_partition(
            (alt_high % np.uint64(self.partitions)).astype(np.int64), self.partitions
        ):
            payload = (alt_high[indices], alt_low[indices], [values[index] for index in indices.tolist()])
            yield partition, (RARE, payload)


class DecideUnit(beam.DoFn):
    """Per read unit: its rows read again, joined with their facts, every rule applied (``text_rule_masks``).

    Vectorised: the facts land in arrays, the rules are masks, the outputs are columns taken from the unit's Arrow
    table; per-row Python is left only where a row needs it (the recorded detail of a dropped pair, fastText once per
    distinct alt text).
    """

    def __init__(self, config: TextFilterConfig, units: list[tuple[str, int]]) -> None:
        self.config = config
        self.units = units

    def setup(self) -> None:
        self.identifier = LanguageIdentifier(self.config.language_model).load()
        self.rules = text_rules(self.config)
        assert len(self.rules) == len(TEXT_RULE_REASONS)
        self.decisions = Decisions(STAGE)
        self.kept_schema = TextKept.schema()
        self.rejected_schema = Rejection.schema()

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterator[Any]:
        unit, facts_of_unit = element
        table = read_unit(self.units[unit])
        size = table.num_rows
        multiplicity = np.zeros(size, dtype=np.int64)
        unigram_counts = np.zeros(size, dtype=np.int64)
        alts_per_url = np.zeros(size, dtype=np.int64)
        images_per_alt = np.zeros(size, dtype=np.int64)
        rare = np.full(size, None, dtype=object)
        duplicate_of = np.full(size, None, dtype=object)
        shared_keys: list[pa.Array] = []
        kept_ids: list[pa.Array] = []
        for tag, positions, *values in facts_of_unit:
            if tag == _DUP:
                shared_keys.append(positions)  # for _DUP: keys, then the candidate id standing for each
                kept_ids.append(values[0])
            elif tag == _PAIR_FACT:
                multiplicity[positions] = values[0]
                unigram_counts[positions] = values[1]
            elif tag == _URL_FACT:
                alts_per_url[positions] = values[0]
            else:
                images_per_alt[positions] = values[0]
                rare[positions] = _objects(values[1])
        if shared_keys:
            # A row whose key is shared across the job is a duplicate unless it is the candidate standing for it.
            found = pc.index_in(table[Candidate.KEY], value_set=pa.concat_arrays(shared_keys)).combine_chunks()
            known = found.is_valid().to_numpy(zero_copy_only=False)
            kept_of_row = pa.concat_arrays(kept_ids).take(pc.fill_null(found, 0))
            other = pc.not_equal(kept_of_row, table[Candidate.CANDIDATE_ID].combine_chunks())
            is_duplicate = known & other.to_numpy(zero_copy_only=False)
            duplicate_of[is_duplicate] = _objects(kept_of_row.filter(pa.array(is_duplicate)).to_pylist())
        duplicates = np.fromiter((kept is not None for kept in duplicate_of), bool, size)
        pairs = np.flatnonzero(~duplicates)
        if (multiplicity[pairs] <= 0).any():
            raise AssertionError("a candidate with neither a duplicate nor a pair fact")
        alt_texts = table[Candidate.ALT_TEXT].to_pylist()
        pair_alts = [alt_texts[position] or "" for position in pairs.tolist()]
        languages: dict[str, tuple[str, float]] = {}
        columns = PairColumns(pair_alts, unigram_counts[pairs], images_per_alt[pairs], alts_per_url[pairs], rare[pairs])
        if self.config.languages:
            # fastText once per distinct alt text of the unit, and only when its answer is used.
            tags = [self._language(languages, alt) for alt in pair_alts]
            columns.language = _objects([code for code, _ in tags])
            columns.language_score = np.fromiter((score for _, score in tags), np.float64, len(tags))
        failing = np.vstack(text_rule_masks(self.config, columns))
        dropped = failing.any(axis=0)
        self._count(duplicates, failing, dropped, multiplicity[pairs])
        rejected_positions = [np.flatnonzero(duplicates), pairs[dropped]]
        reasons = [FilterTextReason.DUPLICATE_PAIR.value] * len(rejected_positions[0])
        details = [f"same image URL and alt text as candidate {kept}" for kept in duplicate_of[duplicates]]
        for index in np.flatnonzero(dropped).tolist():
            reason, detail = self._first_failure(columns, failing[:, index], index, int(multiplicity[pairs[index]]))
            reasons.append(reason.value)
            details.append(detail)
        kept = pairs[~dropped]
        if len(kept):
            kept_tags = [self._language(languages, pair_alts[index]) for index in np.flatnonzero(~dropped).tolist()]
            yield from self._kept_batches(table, kept, kept_tags, unigram_counts[kept], multiplicity[kept])
        positions = np.concatenate(rejected_positions)
        if len(positions):
            order = np.argsort(positions, kind="stable")  # rows leave in input order, as one batch per unit
            yield from (
                beam.pvalue.TaggedOutput(REJECTED, batch)
                for batch in self._rejected_batches(
                    table, positions[order], [reasons[i] for i in order.tolist()], [details[i] for i in order.tolist()]
                )
            )

    def _count(self, duplicates: np.ndarray, failing: np.ndarray, dropped: np.ndarray, weights: np.ndarray) -> None:
        """The counters ``Decisions.record`` would add row by row: each failing rule adds the pair's weight (its
        duplicate count), kept/dropped add one per candidate; duplicates count as ``duplicate_pair`` and dropped."""
        amounts: list[tuple[str, int]] = [
            (FilterTextReason.DUPLICATE_PAIR, int(duplicates.sum())),
            *((reason, int(weights[mask].sum())) for reason, mask in zip(TEXT_RULE_REASONS, failing, strict=True)),
            ("kept", int((~dropped).sum())),
            ("dropped", int(duplicates.sum() + dropped.sum())),
        ]
        for name, amount in amounts:
            if amount:
                self.decisions.count(name, amount)

    def _first_failure(
        self, columns: PairColumns, failing: np.ndarray, index: int, weight: int
    ) -> tuple[FilterTextReason, str | None]:
        """The recorded reason and detail of a dropped pair: its first failing rule, asked per pair."""
        rule = int(failing.argmax())
        facts = PairFacts(
            row={Candidate.ALT_TEXT: columns.alt_texts[index]},
            multiplicity=weight,
            alts_per_image_url=int(columns.alts_per_image_url[index]),
            unigram_count=int(columns.unigram_count[index]),
            images_per_alt=int(columns.images_per_alt[index]),
            rare_ngram=columns.rare_ngram[index],
        )
        if columns.language is not None and columns.language_score is not None:
            facts.language, facts.language_score = columns.language[index], float(columns.language_score[index])
        result = self.rules[rule](facts)
        if result is None:
            raise AssertionError(f"text_rule_masks and text_rules disagree on {TEXT_RULE_REASONS[rule]}")
        reason, detail = result if isinstance(result, tuple) else (result, None)
        return reason, detail

    def _kept_batches(
        self,
        table: pa.Table,
        kept: np.ndarray,
        tags: list[tuple[str, float]],
        unigram_counts: np.ndarray,
        duplicate_counts: np.ndarray,
    ) -> Iterator[pa.RecordBatch]:
        taken = table.take(pa.array(kept))
        added = {
            TextKept.LANGUAGE: pa.array([code for code, _ in tags], pa.string()),
            TextKept.LANGUAGE_SCORE: pa.array([score for _, score in tags], pa.float32()),
            TextKept.UNIGRAM_COUNT: pa.array(unigram_counts, pa.int32()),
            TextKept.DUPLICATE_COUNT: pa.array(duplicate_counts, pa.int64()),
        }
        yield from _batches(taken, added, self.kept_schema)

    def _rejected_batches(
        self, table: pa.Table, positions: np.ndarray, reasons: list[str], details: list[str | None]
    ) -> Iterator[pa.RecordBatch]:
        taken = table.take(pa.array(positions))
        added = {
            Rejection.STAGE: pa.array([STAGE] * len(positions), pa.string()),
            Rejection.REASON: pa.array(reasons, pa.string()),
            Rejection.DETAIL: pa.array(details, pa.string()),
        }
        yield from _batches(taken, added, self.rejected_schema)

    def _language(self, cache: dict[str, tuple[str, float]], alt_text: str) -> tuple[str, float]:
        language = cache.get(alt_text)
        if language is None:
            language = cache[alt_text] = self.identifier.identify(alt_text)
        return language


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array of ``values`` (``np.array`` would make strings a fixed-width unicode array)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _batches(taken: pa.Table, added: dict[str, pa.Array], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``schema``'s columns from ``added`` or else from ``taken`` (null when neither has it), as record batches."""
    arrays = []
    for field in schema:
        if field.name in added:
            arrays.append(added[field.name])
        elif field.name in taken.column_names:
            arrays.append(taken[field.name].cast(field.type))
        else:
            arrays.append(pa.nulls(taken.num_rows, field.type))
    yield from pa.Table.from_arrays(arrays, schema=schema).combine_chunks().to_batches()


class FilterText(beam.PTransform):
    """Candidate files -> ``(kept TextKept rows, Rejection rows)`` under ALIGN's text rules (module docstring)."""

    def __init__(self, config: TextFilterConfig, paths: Sequence[str], progress: StageProgress | None = None) -> None:
        super().__init__()
        self.config = config
        self.paths = list(paths)
        self.progress = progress or PrepareUnit.progress

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        config = self.config
        count_ngrams = config.ngram_vocab_size is not None
        units, rows = read_units(self.paths)
        partitions = partition_count(rows)
        prepared = (
            pbegin
            | "ReadUnits" >> beam.Create(list(range(len(units))))
            | "SpreadUnits" >> beam.Reshuffle()
            | "PrepareUnits"
            >> beam.ParDo(with_progress(PrepareUnit(units, partitions, count_ngrams), self.progress)).with_outputs(
                NGRAMS, main="pairs"
            )
        )
        paired = (
            prepared.pairs
            | "GroupByKeyPartition" >> beam.GroupByKey()
            | "KeepOnePerPair" >> beam.ParDo(KeepOnePerPair(partitions)).with_outputs(URLS, ALTS, main="facts")
        )
        url_facts = (
            paired[URLS]
            | "GroupByUrlPartition" >> beam.GroupByKey()
            | "CountAltsPerImageUrl" >> beam.FlatMap(count_alts_per_image_url)
        )
        by_alt = [paired[ALTS]]
        if count_ngrams:
            merged = (
                prepared[NGRAMS]
                | "GroupByNgramPartition" >> beam.GroupByKey()
                | "MergeNgramPartition" >> beam.Map(merge_ngram_partition)
            )
            boundary = beam.pvalue.AsSingleton(
                merged
                | "CountHistogram" >> beam.Map(count_histogram)
                | "MergeCountHistograms" >> beam.CombineGlobally(merge_histograms)
                | "CountBoundary" >> beam.Map(count_boundary, config.ngram_vocab_size)
            )
            annotated = merged | "TiedNgrams" >> beam.Map(with_ties, boundary)
            buckets = beam.pvalue.AsSingleton(
                annotated
                | "TieBucketHistogram" >> beam.Map(tie_bucket_histogram)
                | "MergeTieHistograms" >> beam.CombineGlobally(merge_histograms)
                | "TieBucketBoundary"
                >> beam.Map(
                    lambda histogram, bound: None if bound is None else bucket_boundary(histogram, bound[1]), boundary
                )
            )
            boundary_rare = beam.pvalue.AsSingleton(
                annotated
                | "BoundaryBucketMembers" >> beam.FlatMap(boundary_bucket_members, buckets)
                | "AllBoundaryMembers" >> beam.combiners.ToList()
                | "RareInBoundaryBucket" >> beam.Map(rare_in_boundary, buckets)
            )
            by_alt.append(
                annotated | "RareHitsByAlt" >> beam.ParDo(RareHitsByAlt(partitions), boundary, buckets, boundary_rare)
            )
        alt_facts = (
            by_alt
            | "JoinByAltPartition" >> beam.Flatten()
            | "GroupByAltPartition" >> beam.GroupByKey()
            | "CountImagesPerAlt" >> beam.FlatMap(count_images_per_alt)
        )
        decided = (
            (paired.facts, url_facts, alt_facts)
            | "AllFacts" >> beam.Flatten()
            | "GroupFactsByUnit" >> beam.GroupByKey()
            | "ApplyTextRules" >> beam.ParDo(DecideUnit(config, units)).with_outputs(REJECTED, main="kept")
        )
        return decided.kept, decided[REJECTED]


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: Any) -> None:
    """The ``filter-text`` graph: read candidates, filter, write ``text_kept/`` and ``rejected/filter-text-*``."""
    paths = list_matching(layout.glob(Candidate))
    progress = table_progress(STAGE, "candidates", layout.glob(Candidate), pipeline)
    kept, rejected = pipeline | "FilterText" >> FilterText(config.text, paths, progress)
    # Each read unit's outputs are written as they come, a row group apiece (about a unit's rows: tens of thousands):
    # gathered to ROW_GROUP_BYTES across units, a worker held up to that much of kept and of rejected rows (in Arrow
    # buffers of twice their size), which a 100 MB crawl, a unit or two per worker, never filled and 1 GB always did.
    kept | "WriteTextKept" >> WriteTableBatches(layout.prefix(TextKept), TextKept, row_group_bytes=UNIT_ROW_GROUP)
    rejected | "WriteRejected" >> WriteTableBatches(
        layout.rejected_prefix(STAGE), Rejection, row_group_bytes=UNIT_ROW_GROUP
    )


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``filter-text`` on ``--output``'s ``candidates/``; returns the stage's counters."""
    return run_stage(STAGE, argv, build)
