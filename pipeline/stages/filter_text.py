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

How it scales (every step is a keyed shuffle or a per-element map; nothing global is held by one worker):
``GroupByKey(key)`` dedups; ``GroupByKey(image_url)`` over distinct pairs counts alts per URL; n-gram occurrences are
pre-summed per bundle (a hand-lifted combiner that also carries the ids of the alt texts holding each n-gram) and
``GroupByKey(n-gram)`` joins each n-gram's count with its alt texts; a final ``GroupByKey(alt text)`` joins the pairs,
the distinct-URL count of the alt text and its rare n-grams. (Tagged values + ``GroupByKey`` is what
``CoGroupByKey`` does internally, but CoGroupByKey materialises each side as a list, and an alt text shared by
millions of images must be streamed.) The top-N cut needs no sort and no vocabulary, only two small histograms
(``pipeline.text.ngram_vocab.RareNgramAlts``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.core.config import CorpusConfig, TextFilterConfig
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable
from pipeline.core.progress import StageProgress, table_progress, with_progress
from pipeline.core.reasons import FilterTextReason
from pipeline.core.rules import REJECTED, Decisions, Rule, RuleResult, counter, evaluate
from pipeline.core.stage import run_stage
from pipeline.text.langid import LanguageIdentifier
from pipeline.text.ngram_vocab import NGRAM_BUFFER_LIMIT, RARE, RareNgramAlts
from pipeline.text.tokenize import ngrams, unigrams
from schemas import Candidate, Rejection, TextKept

STAGE = "filter-text"

NGRAMS = "ngrams"
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


# -- the DoFns --------------------------------------------------------------------------------------------------------
class KeepOnePerPair(beam.DoFn):
    """Per ``key``: the candidate with the smallest id stands for the pair; the others are ``duplicate_pair``."""

    def setup(self) -> None:
        self.decisions = Decisions(STAGE)

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
                yield beam.pvalue.TaggedOutput(
                    REJECTED, self.decisions.drop(row, FilterTextReason.DUPLICATE_PAIR, detail)
                )
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
        self.rules = text_rules(self.config)
        self.decisions = Decisions(STAGE)

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
            rejected = self.decisions.record(
                facts.row, evaluate(self.rules, facts, FilterTextReason), reason_weight=facts.multiplicity
            )
            if rejected is not None:
                yield beam.pvalue.TaggedOutput(REJECTED, rejected)
                continue
            if language is None:
                language = self.identifier.identify(alt_text)
                facts.language, facts.language_score = language
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

    progress = StageProgress(STAGE, "candidates")

    def setup(self) -> None:
        self.input = counter(STAGE, "input")

    def process(self, row: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        self.input.inc()
        self.progress.add()
        yield row[Candidate.KEY], row


class FilterText(beam.PTransform):
    """Candidate rows -> ``(kept TextKept rows, Rejection rows)`` under ALIGN's text rules (module docstring)."""

    def __init__(self, config: TextFilterConfig, progress: StageProgress | None = None) -> None:
        super().__init__()
        self.config = config
        self.progress = progress or CountInput.progress

    def expand(self, candidates: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        config = self.config
        count_ngrams = config.ngram_vocab_size is not None
        pairs = (
            candidates
            | "CountAndKeyByPair" >> beam.ParDo(with_progress(CountInput(), self.progress))
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
    progress = table_progress(STAGE, "candidates", layout.glob(Candidate), pipeline)
    kept, rejected = candidates | "FilterText" >> FilterText(config.text, progress)
    kept | "WriteTextKept" >> WriteTable(layout.prefix(TextKept), TextKept)
    rejected | "WriteRejected" >> WriteTable(layout.rejected_prefix(STAGE), Rejection)


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``filter-text`` on ``--output``'s ``candidates/``; returns the stage's counters."""
    return run_stage(STAGE, argv, build)
