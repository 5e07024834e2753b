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
5. ``alt_shared_by_too_many_images``: the alt text appears with more than ``max_images_per_alt`` (10) DISTINCT
   image URLs.
6. ``image_url_has_too_many_alts``: the image URL carries more than ``max_alts_per_image_url`` (1000) DISTINCT alt
   texts. (5 and 6 count distinct pairs, so duplicates never inflate them.)
7. ``rare_ngram``: the alt text holds a unigram or bigram outside the ``ngram_vocab_size`` (ALIGN: 100M) most frequent
   n-grams. Counts are taken over the whole RAW candidate set (every candidate row, duplicates and candidates that
   fail other rules included, every occurrence in an alt text), as ALIGN counts its raw corpus. N-grams are ranked by
   count, descending; among equal counts by ``tie_order``: the 64-bit BLAKE2b hash of the n-gram's UTF-8 text, then
   the text. The first N are frequent. A hash order rather than the string order because a string order would make
   every tie at the cut-off fall by script (Latin before Cyrillic before CJK, "a..." before "z..."), and because a
   uniform order lets the tie be split with small histograms instead of a sort (below).
8. ``language_not_allowed``: only when ``languages`` is set: fastText lid.176's top-1 label is not in it, or its
   probability is below ``min_language_score``. Without ``languages`` nothing is dropped; the tag is always written.

Deliberately absent (ALIGN's bet is scale over cleaning, unlike Conceptual Captions' pipeline): hypernymisation,
part-of-speech rules, stop-word or profanity cleaning, and image-text classifiers.

How it scales (every step is a keyed shuffle or a per-element map; nothing global is held by one worker):
``GroupByKey(key)`` dedups; ``GroupByKey(image_url)`` over distinct pairs counts alts per URL; n-gram occurrences are
pre-summed per bundle (a hand-lifted combiner that also carries the ids of the alt texts holding each n-gram) and
``GroupByKey(n-gram)`` joins each n-gram's count with its alt texts; a final ``GroupByKey(alt text)`` joins the pairs,
the distinct-URL count of the alt text and its rare n-grams. (Tagged values + ``GroupByKey`` is what
``CoGroupByKey`` does internally, but CoGroupByKey materialises each side as a list, and an alt text shared by
millions of images must be streamed.) The top-N cut needs no sort and no vocabulary: a histogram count -> number of
n-grams (a few thousand entries) gives the boundary count c* and how many (r) of the n-grams counted c* fit. In one
pass, n-grams counted above c* are frequent (their alt ids are never read) and those below are rare; only the n-grams
counted exactly c* (each holding at most c* alt ids) go on: they are bucketed by the top 16 bits of their hash (a
histogram of at most 65,536 entries) to find the boundary bucket, and only that bucket's members (about ties / 65,536
of them) are sorted to pick the last ones. The side inputs are two pairs of integers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.core.config import CorpusConfig, TextFilterConfig
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable
from pipeline.core.rules import REJECTED, RuleResult, counter, rejection
from pipeline.core.stage import run_stage
from pipeline.text.langid import LanguageIdentifier
from pipeline.text.tokenize import ngrams, unigrams
from schemas import Candidate, Rejection, TextKept

STAGE = "filter-text"

#: The closed list of reasons, in the order that decides which one is recorded.
REASONS = (
    "duplicate_pair",
    "alt_too_short",
    "alt_too_long",
    "alt_too_few_chars",
    "alt_shared_by_too_many_images",
    "image_url_has_too_many_alts",
    "rare_ngram",
    "language_not_allowed",
)

NGRAMS = "ngrams"
TIED = "tied"
BOUNDARY = "boundary"
_PAIR = 0  # tag of a pair in the alt-text join
_RARE = 1  # tag of a rare n-gram in the alt-text join
#: Buffered (n-gram, alt id) entries after which a bundle's n-gram table is emitted, bounding worker memory.
NGRAM_BUFFER_LIMIT = 200_000
#: Bits of the tie hash used to bucket the n-grams tied at the cut-off count.
TIE_BUCKET_BITS = 16


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


# -- the rules: pure functions of (facts, config), None when kept or switched off ---------------------------------------
def rule_alt_too_short(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """Fewer than ``min_unigrams`` unigrams."""
    if config.min_unigrams is not None and facts.unigram_count < config.min_unigrams:
        return "alt_too_short", f"{facts.unigram_count} unigrams < {config.min_unigrams}"
    return None


def rule_alt_too_long(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """More than ``max_unigrams`` unigrams."""
    if config.max_unigrams is not None and facts.unigram_count > config.max_unigrams:
        return "alt_too_long", f"{facts.unigram_count} unigrams > {config.max_unigrams}"
    return None


def rule_alt_too_few_chars(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """Fewer than ``min_chars`` characters (code points)."""
    chars = len(_alt_text(facts.row))
    if config.min_chars is not None and chars < config.min_chars:
        return "alt_too_few_chars", f"{chars} characters < {config.min_chars}"
    return None


def rule_alt_shared_by_too_many_images(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """The alt text appears with more than ``max_images_per_alt`` distinct image URLs."""
    if config.max_images_per_alt is not None and facts.images_per_alt > config.max_images_per_alt:
        return "alt_shared_by_too_many_images", f"{facts.images_per_alt} image URLs > {config.max_images_per_alt}"
    return None


def rule_image_url_has_too_many_alts(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """The image URL carries more than ``max_alts_per_image_url`` distinct alt texts."""
    limit = config.max_alts_per_image_url
    if limit is not None and facts.alts_per_image_url > limit:
        return "image_url_has_too_many_alts", f"{facts.alts_per_image_url} alt texts > {limit}"
    return None


def rule_rare_ngram(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """An n-gram of the alt text is outside the ``ngram_vocab_size`` most frequent."""
    if config.ngram_vocab_size is not None and facts.rare_ngram is not None:
        return "rare_ngram", f"{facts.rare_ngram!r} is not among the {config.ngram_vocab_size} most frequent n-grams"
    return None


def rule_language_not_allowed(facts: PairFacts, config: TextFilterConfig) -> RuleResult:
    """With ``languages`` set: top-1 language not allowed, or less probable than ``min_language_score``."""
    if not config.languages:
        return None
    if facts.language not in config.languages or facts.language_score < config.min_language_score:
        allowed = ",".join(config.languages)
        return "language_not_allowed", f"{facts.language or '?'} ({facts.language_score:.2f}) not in {allowed}"
    return None


#: Rules 2..8 in recording order (``duplicate_pair`` is decided before, when pairs are formed).
RULES = (
    rule_alt_too_short,
    rule_alt_too_long,
    rule_alt_too_few_chars,
    rule_alt_shared_by_too_many_images,
    rule_image_url_has_too_many_alts,
    rule_rare_ngram,
    rule_language_not_allowed,
)


def failed_rules(facts: PairFacts, config: TextFilterConfig) -> list[tuple[str, str | None]]:
    """Every failing rule as ``(reason, detail)``, in recording order (empty: the pair is kept)."""
    failures = []
    for rule in RULES:
        result = rule(facts, config)
        if result is not None:
            failures.append(result if isinstance(result, tuple) else (result, None))
    return failures


# -- the rare-n-gram cut --------------------------------------------------------------------------------------------------
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
            yield identifier, (_RARE, gram)
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
            yield identifier, (_RARE, gram)


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


# -- the DoFns --------------------------------------------------------------------------------------------------------
class KeepOnePerPair(beam.DoFn):
    """Per ``key``: the candidate with the smallest id stands for the pair; the others are ``duplicate_pair``."""

    def setup(self) -> None:
        self.duplicates = counter(STAGE, "duplicate_pair")
        self.dropped = counter(STAGE, "dropped")

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        _, rows = element
        # Two passes over the (re-iterable) group, so a pair seen millions of times is never held as a list.
        representative: dict[str, Any] | None = None
        multiplicity = 0
        for row in rows:
            multiplicity += 1
            if representative is None or row[Candidate.CANDIDATE_ID] < representative[Candidate.CANDIDATE_ID]:
                representative = row
        assert representative is not None
        kept_id = representative[Candidate.CANDIDATE_ID]
        for row in rows:
            if row[Candidate.CANDIDATE_ID] != kept_id:
                detail = f"same image URL and alt text as candidate {kept_id}"
                yield beam.pvalue.TaggedOutput(REJECTED, rejection(row, STAGE, "duplicate_pair", detail))
        if multiplicity > 1:
            self.duplicates.inc(multiplicity - 1)
            self.dropped.inc(multiplicity - 1)
        yield representative.get(Candidate.IMAGE_URL) or "", PairFacts(row=representative, multiplicity=multiplicity)


def count_alts_per_image_url(element: tuple[str, Iterable[PairFacts]]) -> Iterator[PairFacts]:
    """Every pair of one image URL, with the number of distinct alt texts the URL carries."""
    _, pairs = element
    alts = sum(1 for _ in pairs)
    for facts in pairs:
        facts.alts_per_image_url = alts
        yield facts


class TokenizeAndCountNgrams(beam.DoFn):
    """Tokenise each pair's alt text; key the pair by alt id; pre-sum n-gram counts (weighted by duplicates).

    The side output carries ``(n-gram, (count, alt ids))`` per bundle: the count part is a hand-lifted combiner
    (Beam's own lifting would first need one element per occurrence), the ids are the n-gram side of the join.
    """

    def __init__(self, count_ngrams: bool) -> None:
        self.count_ngrams = count_ngrams

    def start_bundle(self) -> None:
        self._table: dict[str, list[Any]] = {}
        self._buffered = 0

    def _flush(self) -> Iterator[tuple[str, tuple[int, list[bytes]]]]:
        for gram, (count, ids) in self._table.items():
            yield gram, (count, sorted(ids))
        self._table = {}
        self._buffered = 0

    def process(self, facts: PairFacts) -> Iterator[Any]:
        alt_text = _alt_text(facts.row)
        tokens = unigrams(alt_text)
        facts.unigram_count = len(tokens)
        identifier = alt_id(alt_text)
        if self.count_ngrams:
            table = self._table
            for gram in ngrams(tokens):
                entry = table.get(gram)
                if entry is None:
                    entry = table[gram] = [0, set()]
                    self._buffered += 1
                # Raw-corpus counts: a pair stands for `multiplicity` candidates.
                entry[0] += facts.multiplicity
                if identifier not in entry[1]:
                    entry[1].add(identifier)
                    self._buffered += 1
            if self._buffered >= NGRAM_BUFFER_LIMIT:
                for item in self._flush():
                    yield beam.pvalue.TaggedOutput(NGRAMS, item)
        yield identifier, (_PAIR, facts)

    def finish_bundle(self) -> Iterator[Any]:
        for item in self._flush():
            yield beam.pvalue.TaggedOutput(NGRAMS, WindowedValue(item, MIN_TIMESTAMP, [GlobalWindow()]))


class DecideAltText(beam.DoFn):
    """Per alt text: its distinct-URL count, rare n-gram and language; then every rule on each of its pairs."""

    def __init__(self, config: TextFilterConfig) -> None:
        self.config = config

    def setup(self) -> None:
        self.identifier = LanguageIdentifier(self.config.language_model).load()
        self.kept = counter(STAGE, "kept")
        self.dropped = counter(STAGE, "dropped")
        self.reason_counters = {reason: counter(STAGE, reason) for reason in REASONS}

    def process(self, element: tuple[bytes, Iterable[tuple[int, Any]]]) -> Iterator[Any]:
        _, values = element
        images = 0
        rare: str | None = None
        alt_text = ""
        for tag, value in values:
            if tag == _PAIR:
                images += 1
                alt_text = _alt_text(value.row)
            elif rare is None or value < rare:
                rare = value  # the smallest rare n-gram: a deterministic detail
        if images == 0:
            return  # only possible with a hash collision of alt ids; nothing to decide
        # fastText runs once per distinct alt text, and only when its answer is used: to filter, or to tag a survivor.
        language: tuple[str, float] | None = None
        if self.config.languages:
            language = self.identifier.identify(alt_text)
        for tag, facts in values:
            if tag != _PAIR:
                continue
            facts.images_per_alt = images
            facts.rare_ngram = rare
            if language is not None:
                facts.language, facts.language_score = language
            failures = failed_rules(facts, self.config)
            if not failures and language is None:
                language = self.identifier.identify(alt_text)
                facts.language, facts.language_score = language
            for reason, _ in failures:
                self.reason_counters[reason].inc(facts.multiplicity)
            if failures:
                reason, detail = failures[0]
                self.dropped.inc()
                yield beam.pvalue.TaggedOutput(REJECTED, rejection(facts.row, STAGE, reason, detail))
                continue
            self.kept.inc()
            yield TextKept.row(
                **Candidate.project(facts.row),
                **{
                    TextKept.LANGUAGE: facts.language,
                    TextKept.LANGUAGE_SCORE: facts.language_score,
                    TextKept.UNIGRAM_COUNT: facts.unigram_count,
                    TextKept.DUPLICATE_COUNT: facts.multiplicity,
                },
            )


class CountInput(beam.DoFn):
    """Count candidates entering the stage (the funnel's top: input = kept + dropped)."""

    def setup(self) -> None:
        self.input = counter(STAGE, "input")

    def process(self, row: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        self.input.inc()
        yield row[Candidate.KEY], row


class FilterText(beam.PTransform):
    """Candidate rows -> ``(kept TextKept rows, Rejection rows)`` under ALIGN's text rules (module docstring)."""

    def __init__(self, config: TextFilterConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, candidates: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        config = self.config
        count_ngrams = config.ngram_vocab_size is not None
        pairs = (
            candidates
            | "CountAndKeyByPair" >> beam.ParDo(CountInput())
            | "GroupIdenticalPairs" >> beam.GroupByKey()
            | "KeepOnePerPair" >> beam.ParDo(KeepOnePerPair()).with_outputs(REJECTED, main="pairs")
        )
        tokenized = (
            pairs.pairs
            | "GroupPairsByImageUrl" >> beam.GroupByKey()
            | "CountAltsPerImageUrl" >> beam.FlatMap(count_alts_per_image_url)
            | "TokenizeAndCountNgrams"
            >> beam.ParDo(TokenizeAndCountNgrams(count_ngrams)).with_outputs(NGRAMS, main="pairs")
        )
        by_alt = [tokenized.pairs]
        if count_ngrams:
            grouped_ngrams = tokenized[NGRAMS] | "GroupNgramOccurrences" >> beam.GroupByKey()
            by_alt.append(grouped_ngrams | "FindRareNgrams" >> RareNgramAlts(config.ngram_vocab_size))
        decided = (
            by_alt
            | "JoinByAltText" >> beam.Flatten()
            | "GroupByAltText" >> beam.GroupByKey()
            | "ApplyTextRules" >> beam.ParDo(DecideAltText(config)).with_outputs(REJECTED, main="kept")
        )
        rejected = (pairs[REJECTED], decided[REJECTED]) | "AllRejections" >> beam.Flatten()
        return decided.kept, rejected


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: Any) -> None:
    """The ``filter-text`` graph: read candidates, filter, write ``text_kept/`` and ``rejected/filter-text-*``."""
    candidates = pipeline | "ReadCandidates" >> ReadTable(layout.glob(Candidate))
    kept, rejected = candidates | "FilterText" >> FilterText(config.text)
    kept | "WriteTextKept" >> WriteTable(layout.prefix(TextKept), TextKept)
    rejected | "WriteRejected" >> WriteTable(layout.rejected_prefix(STAGE), Rejection)


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``filter-text`` on ``--output``'s ``candidates/``; returns the stage's counters."""
    return run_stage(STAGE, argv, build)
