"""filter-text: each ALIGN rule at and around its threshold, the n-gram cut's ties, presets, and full Beam runs."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.config import CorpusOptions, TextFilterConfig, resolve_config
from pipeline.core.keys import candidate_id, sample_key
from pipeline.core.reasons import FilterTextReason
from pipeline.core.rules import evaluate
from pipeline.core.stage import pipeline_options
from pipeline.stages import filter_text
from pipeline.stages.filter_text import PairFacts, text_rules
from pipeline.text.ngram_vocab import bucket_boundary, count_boundary, tie_order
from pipeline.text.tokenize import ngrams, unigrams
from schemas import Candidate, Rejection, TextKept

ALIGN = TextFilterConfig()


def facts(alt: str = "a dog on a beach", **values: Any) -> PairFacts:
    """A pair's facts as the stage computes them, with the unigram count from the real tokeniser."""
    values.setdefault("unigram_count", len(unigrams(alt)))
    return PairFacts(row={Candidate.ALT_TEXT: alt}, multiplicity=1, **values)


def reasons(pair: PairFacts, config: TextFilterConfig = ALIGN) -> list[str]:
    return [reason for reason, _ in evaluate(text_rules(config), pair, FilterTextReason)]


# -- rules at their thresholds ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("alt", "expected"),
    [
        ("blue sky", ["alt_too_short"]),
        ("blue sky today", []),
        (" ".join(["word"] * 20), []),
        (" ".join(["word"] * 21), ["alt_too_long"]),
        ("微信", ["alt_too_short"]),
        ("微信码", []),
        # An emoji and its variation selector are no unigrams (pipeline.text.tokenize).
        ("red \u2764\ufe0f balloon", ["alt_too_short"]),
        ("\u2764\ufe0f\u2764\ufe0f\u2764\ufe0f", ["alt_too_short"]),
        ("call 1\ufe0f\u20e3 now", ["alt_too_short"]),
    ],
)
def test_length_in_unigrams(alt: str, expected: list[str]) -> None:
    assert reasons(facts(alt)) == expected


@pytest.mark.parametrize(("images", "expected"), [(10, []), (11, ["alt_shared_by_too_many_images"])])
def test_alt_shared_by_images(images: int, expected: list[str]) -> None:
    assert reasons(facts(images_per_alt=images)) == expected


@pytest.mark.parametrize(("alts", "expected"), [(1000, []), (1001, ["image_url_has_too_many_alts"])])
def test_image_url_alts(alts: int, expected: list[str]) -> None:
    assert reasons(facts(alts_per_image_url=alts)) == expected


def test_min_chars_and_language_only_when_configured() -> None:
    datacomp = TextFilterConfig(min_chars=6, languages=("en",), ngram_vocab_size=None)
    assert reasons(facts("a b c", language="en", language_score=0.9), datacomp) == ["alt_too_few_chars"]
    assert reasons(facts("a b cd", language="en", language_score=0.9), datacomp) == []
    assert reasons(facts("un chien noir", language="fr", language_score=0.9), datacomp) == ["language_not_allowed"]
    # ALIGN tags languages but drops none.
    assert reasons(facts("un chien noir", language="fr", language_score=0.9)) == []
    strict = TextFilterConfig(languages=("en",), min_language_score=0.5)
    assert reasons(facts("a dog here", language="en", language_score=0.4), strict) == ["language_not_allowed"]


@pytest.mark.parametrize(
    ("alt", "expected"),
    [
        ("state-of-the-art", ["alt_too_few_words"]),  # 4 unigrams, 1 word
        ("blue  sky", ["alt_too_few_words"]),
        ("a\tb\u3000c", []),  # str.split() splits on every Unicode whitespace, as DataComp's len(text.split()) does
        ("blue sky today", []),
        ("red \u2764\ufe0f balloon", []),  # 3 words to DataComp, though 2 unigrams
    ],
)
def test_min_words_counts_whitespace_separated_words_as_datacomp_does(alt: str, expected: list[str]) -> None:
    config = TextFilterConfig(min_unigrams=None, max_unigrams=None, min_words=3, ngram_vocab_size=None)
    assert reasons(facts(alt), config) == expected


def test_every_failing_rule_is_reported_in_the_documented_order() -> None:
    pair = facts("x", images_per_alt=11, alts_per_image_url=1001, rare_ngram="x", language="fr")
    assert reasons(pair, TextFilterConfig(languages=("en",), min_chars=6, min_words=3)) == [
        "alt_too_short",
        "alt_too_few_chars",
        "alt_too_few_words",
        "alt_shared_by_too_many_images",
        "image_url_has_too_many_alts",
        "rare_ngram",
        "language_not_allowed",
    ]
    assert reasons(pair, TextFilterConfig(min_unigrams=None, max_images_per_alt=None, ngram_vocab_size=None)) == [
        "image_url_has_too_many_alts"
    ]


@pytest.mark.parametrize(
    "config",
    [
        ALIGN,
        TextFilterConfig(languages=("en", "de"), min_language_score=0.5, min_chars=6, min_words=3),
        TextFilterConfig(min_unigrams=None, max_unigrams=None, max_images_per_alt=None, ngram_vocab_size=None),
    ],
    ids=["align", "everything-on", "most-off"],
)
def test_vectorised_masks_give_the_per_pair_rules_answers(config: TextFilterConfig) -> None:
    """The stage applies ``text_rule_masks``; ``text_rules`` define the rules: on pairs at and around every threshold
    the two must agree rule by rule, and the mask order must be the reason order."""
    rng = random.Random(16)
    alts = ["x", "two words", "a b c", "state-of-the-art", "微信码", " ".join(["w"] * 21), "dog\u00a0on a\tbeach", ""]
    pairs = [
        facts(
            rng.choice(alts),
            unigram_count=rng.choice([0, 2, 3, 20, 21]),
            images_per_alt=rng.choice([1, 10, 11]),
            alts_per_image_url=rng.choice([1, 1000, 1001]),
            rare_ngram=rng.choice([None, "zzz"]),
            language=rng.choice(["en", "de", "fr", ""]),
            language_score=rng.choice([0.1, 0.5, 0.9]),
        )
        for _ in range(400)
    ]
    columns = filter_text.PairColumns(
        alt_texts=[pair.row[Candidate.ALT_TEXT] for pair in pairs],
        unigram_count=np.array([pair.unigram_count for pair in pairs]),
        images_per_alt=np.array([pair.images_per_alt for pair in pairs]),
        alts_per_image_url=np.array([pair.alts_per_image_url for pair in pairs]),
        rare_ngram=np.array([pair.rare_ngram for pair in pairs], dtype=object),
        language=np.array([pair.language for pair in pairs], dtype=object),
        language_score=np.array([pair.language_score for pair in pairs]),
    )
    masks = filter_text.text_rule_masks(config, columns)
    assert len(masks) == len(text_rules(config)) == len(filter_text.TEXT_RULE_REASONS)
    for index, pair in enumerate(pairs):
        from_masks = [
            str(reason) for reason, mask in zip(filter_text.TEXT_RULE_REASONS, masks, strict=True) if mask[index]
        ]
        assert from_masks == reasons(pair, config), pair
    assert any(mask.any() for mask in masks) and not all(mask.all() for mask in masks)


# -- the top-N n-gram cut -------------------------------------------------------------------------------------------------
def hash_order(gram: str) -> tuple[int, str]:
    """The documented tie order, computed here independently of the module."""
    return int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "big"), gram


def test_count_boundary_finds_the_cut_count_and_how_many_tied_fit() -> None:
    # counts a=5, b=c=d=3, e=1 -> histogram {5: 1, 3: 3, 1: 1}
    histogram = {5: 1, 3: 3, 1: 1}
    assert count_boundary(histogram, 1) == (5, 1)
    assert count_boundary(histogram, 2) == (3, 1)  # a, and 1 of the 3 tied at count 3
    assert count_boundary(histogram, 3) == (3, 2)
    assert count_boundary(histogram, 4) == (3, 3)
    assert count_boundary(histogram, 5) is None  # every n-gram fits
    assert count_boundary(histogram, None) is None


def test_bucket_boundary_splits_the_tie_in_hash_order() -> None:
    assert bucket_boundary({7: 2, 100: 5, 9000: 1}, 1) == (7, 1)
    assert bucket_boundary({7: 2, 100: 5, 9000: 1}, 2) == (7, 2)
    assert bucket_boundary({7: 2, 100: 5, 9000: 1}, 3) == (100, 1)
    assert bucket_boundary({7: 2, 100: 5, 9000: 1}, 8) == (9000, 1)
    assert tie_order("b") == hash_order("b")


def rare_ngrams_in_beam(counts: dict[str, int], vocab_size: int, root: Path) -> None:
    """Run the filter-text stage on one-word alt texts with ``counts`` and check its cut against a full sort.

    Each n-gram is its own alt text, on ``count`` distinct URLs (raw-corpus count = number of candidates), and every
    other rule is off, so exactly the alt texts ranked past ``vocab_size`` by (count desc, hash order) are rejected
    as ``rare_ngram``.
    """
    ranked = sorted(counts, key=lambda gram: (-counts[gram], hash_order(gram)))
    corpus = Corpus()
    for gram, count in counts.items():
        for copy in range(count):
            corpus.add(f"http://img.example/{gram}/{copy}.jpg", gram, "?")
    corpus.write(root)
    filter_text.run(
        ["--output", str(root), "--preset", "none", "--ngram-vocab-size", str(vocab_size), "--min-unigrams", "none"]
    )
    rejected = {row[Rejection.ALT_TEXT] for row in read_rows(root, "rejected/filter-text-*.parquet")}
    reasons = {row[Rejection.REASON] for row in read_rows(root, "rejected/filter-text-*.parquet")}
    assert rejected == set(ranked[vocab_size:])
    assert reasons <= {"rare_ngram"}


@pytest.mark.parametrize(
    ("vocab_size", "expected_rare"),
    # BLAKE2b-64: c = 373f..., b = 8472..., d = b5a5...: among b, c, d (count 3) c ranks first, then b, then d.
    [(1, ["b", "c", "d", "e"]), (2, ["b", "d", "e"]), (3, ["d", "e"]), (4, ["e"]), (5, [])],
)
@pytest.mark.slow  # one stage run per cut-off
def test_rare_ngrams_with_a_tie_at_a_small_cut_off(vocab_size: int, expected_rare: list[str], tmp_path: Path) -> None:
    counts = {"a": 5, "b": 3, "c": 3, "d": 3, "e": 1}
    assert sorted(counts, key=lambda gram: (-counts[gram], hash_order(gram)))[vocab_size:] == sorted(
        expected_rare, key=lambda gram: (-counts[gram], hash_order(gram))
    )
    rare_ngrams_in_beam(counts, vocab_size, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("vocab_size", [3, 1234, 5000])
def test_rare_ngrams_in_beam_match_a_full_sort_across_tie_buckets(vocab_size: int, tmp_path: Path) -> None:
    # 3000 n-grams tied at count 1 fall in many hash buckets: the boundary-bucket logic must give a full sort's answer.
    counts = {f"w{i}": 1 for i in range(3000)} | {f"top{i}": 7 for i in range(5)} | {"mid": 2}
    rare_ngrams_in_beam(counts, vocab_size, tmp_path)


# -- presets --------------------------------------------------------------------------------------------------------------
def test_presets_resolve() -> None:
    align = resolve_config(pipeline_options(["--output", "x"]).view_as(CorpusOptions)).text
    assert (align.min_unigrams, align.max_unigrams, align.max_images_per_alt) == (3, 20, 10)
    assert (align.max_alts_per_image_url, align.ngram_vocab_size, align.languages) == (1000, 100_000_000, ())
    datacomp = resolve_config(pipeline_options(["--preset", "datacomp-basic"])).text
    assert datacomp.languages == ("en",)
    # DataComp's own code: len(text.split()) > 2 and len(text) > 5; unigrams are not what it counts.
    assert (datacomp.min_words, datacomp.min_chars, datacomp.min_unigrams, datacomp.min_language_score) == (
        3,
        6,
        None,
        0,
    )
    assert align.min_words is None and align.min_chars is None
    assert datacomp.max_images_per_alt is None and datacomp.ngram_vocab_size is None
    none = resolve_config(pipeline_options(["--preset", "none"])).text
    assert none.min_unigrams is None and none.max_images_per_alt is None and none.languages == ()
    overridden = resolve_config(pipeline_options(["--max-images-per-alt", "none", "--ngram-vocab-size", "7"])).text
    assert overridden.max_images_per_alt is None and overridden.ngram_vocab_size == 7


# -- full Beam runs over a generated corpus --------------------------------------------------------------------------------
class Corpus:
    """Candidates built one by one with the fate each must meet."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.fate: dict[str, str] = {}

    def add(self, url: str, alt: str, fate: str) -> str:
        identifier = candidate_id("generated.warc.gz", len(self.rows), 0)
        self.rows.append(
            Candidate.row(
                candidate_id=identifier,
                key=sample_key(url, alt),
                image_url=url,
                alt_text=alt,
                page_url=f"http://pages.example/{len(self.rows)}.html",
                warc_file="generated.warc.gz",
                warc_record_offset=len(self.rows),
            )
        )
        self.fate[identifier] = fate
        return identifier

    def write(self, root: Path) -> None:
        (root / "candidates").mkdir(parents=True)
        table = pa.Table.from_pylist(self.rows, schema=Candidate.schema())
        # Two files, so the read is split like a real extract output.
        half = len(self.rows) // 2
        pq.write_table(table.slice(0, half), root / "candidates" / "part-00000-of-00002.parquet")
        pq.write_table(table.slice(half), root / "candidates" / "part-00001-of-00002.parquet")


def planted_corpus() -> tuple[Corpus, int]:
    """A corpus where every candidate's fate is known, and the vocabulary size that makes count-1 n-grams rare."""
    corpus = Corpus()
    words = [f"tone{i}" for i in range(40)]
    combos = [f"gallery photo {a} {b}" for a in words for b in words if a != b][:1001]
    # One URL with exactly 1000 distinct alts (kept), one with 1001 (all dropped); mirrors make every n-gram of the
    # 1000 alts appear at least twice, so none is rare.
    for i, alt in enumerate(combos[:1000]):
        corpus.add("http://img.example/gallery-1000.jpg", alt, "kept")
        corpus.add(f"http://mirror.example/{i}.jpg", alt, "kept")
    for alt in combos:
        corpus.add("http://img.example/gallery-1001.jpg", alt, "image_url_has_too_many_alts")
    # An alt text on 10 distinct URLs is kept, on 11 dropped; duplicates of one URL do not raise the count.
    for i in range(10):
        corpus.add(f"http://img.example/banner{i}.jpg", "summer sale banner image", "kept")
    corpus.add("http://img.example/banner0.jpg", "summer sale banner image", "duplicate_pair")
    for i in range(11):
        corpus.add(f"http://img.example/ship{i}.jpg", "free shipping on all orders", "alt_shared_by_too_many_images")
    # Exact duplicates: the smallest candidate_id is kept.
    ids = [corpus.add("http://img.example/bike.jpg", "a red bicycle against a wall", "?") for _ in range(3)]
    for identifier in ids:
        corpus.fate[identifier] = "kept" if identifier == min(ids) else "duplicate_pair"
    # Lengths 2, 3, 20, 21 unigrams, each on two URLs so their n-grams are not rare.
    long20 = " ".join(f"tone{i}" for i in range(20))
    long21 = " ".join(f"tone{i}" for i in range(21))
    for alt, fate in [
        ("blue sky", "alt_too_short"),
        ("blue sky today", "kept"),
        (long20, "kept"),
        (long21, "alt_too_long"),
    ]:
        corpus.add("http://img.example/len-a.jpg" + alt[:8].replace(" ", "-"), alt, fate)
        corpus.add("http://img.example/len-b.jpg" + alt[:8].replace(" ", "-"), alt, fate)
    # Rare n-grams (count 1): one alt that fails only that rule, one that also fails the length rule.
    corpus.add("http://img.example/rare.jpg", "blue sky jjkkq", "rare_ngram")
    corpus.add("http://img.example/rare2.jpg", "qwzxv", "alt_too_short")
    raw_counts = Counter(gram for row in corpus.rows for gram in ngrams(unigrams(row[Candidate.ALT_TEXT])))
    # The 1001st gallery alt brings the only bigram that appears once besides the planted ones.
    assert {gram for gram, count in raw_counts.items() if count == 1} == {
        "jjkkq",
        "sky jjkkq",
        "qwzxv",
        "tone25 tone26",
    }
    return corpus, sum(1 for count in raw_counts.values() if count >= 2)


def read_rows(root: Path, pattern: str) -> list[dict[str, Any]]:
    return [row for path in sorted(root.glob(pattern)) for row in pq.read_table(path).to_pylist()]


def outcome(root: Path) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    kept = sorted(read_rows(root, "text_kept/*.parquet"), key=lambda r: r["candidate_id"])
    rejected = sorted(
        read_rows(root, "rejected/filter-text-*.parquet"),
        key=lambda r: r["candidate_id"],
    )
    fates: dict[str, str] = {}
    for row in kept:
        assert row[TextKept.CANDIDATE_ID] not in fates
        fates[row[TextKept.CANDIDATE_ID]] = "kept"
    for row in rejected:
        assert row[Rejection.CANDIDATE_ID] not in fates, "a candidate was both kept and rejected"
        assert row[Rejection.STAGE] == "filter-text"
        fates[row[Rejection.CANDIDATE_ID]] = row[Rejection.REASON]
    return fates, kept, rejected


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    corpus, vocab_size = planted_corpus()
    root = tmp_path_factory.mktemp("planted", numbered=True)
    corpus.write(root)
    counters = filter_text.run(["--output", str(root), "--ngram-vocab-size", str(vocab_size)])
    return {"corpus": corpus, "root": root, "vocab_size": vocab_size, "counters": counters}


def test_every_candidate_meets_its_planted_fate_and_the_funnel_balances(planted: dict[str, Any]) -> None:
    corpus, counters = planted["corpus"], planted["counters"]
    fates, kept, rejected = outcome(planted["root"])
    assert fates == corpus.fate
    assert counters["input"] == len(corpus.rows) == counters["kept"] + counters["dropped"]
    assert counters["kept"] == len(kept) and counters["dropped"] == len(rejected)
    recorded = Counter(row[Rejection.REASON] for row in rejected)
    assert recorded["image_url_has_too_many_alts"] == 1001
    # Every failing rule is counted: 'qwzxv' (too short) and the 1001st gallery alt are rare too.
    assert counters["rare_ngram"] == recorded["rare_ngram"] + 2
    assert counters["alt_too_short"] == recorded["alt_too_short"]
    assert counters["duplicate_pair"] == recorded["duplicate_pair"] == 3


def test_kept_rows_carry_language_length_and_duplicate_count(planted: dict[str, Any]) -> None:
    _, kept, _ = outcome(planted["root"])
    by_alt = {row[TextKept.ALT_TEXT]: row for row in kept}
    bike = by_alt["a red bicycle against a wall"]
    assert bike[TextKept.DUPLICATE_COUNT] == 3 and bike[TextKept.UNIGRAM_COUNT] == 6
    assert bike[TextKept.LANGUAGE] == "en" and 0.0 < bike[TextKept.LANGUAGE_SCORE] <= 1.0
    assert {row[TextKept.DUPLICATE_COUNT] for row in kept if row[TextKept.ALT_TEXT] != bike[TextKept.ALT_TEXT]} <= {
        1,
        2,
    }
    assert all(row[TextKept.LANGUAGE] for row in kept)
    table = pq.read_table(next(planted["root"].glob("text_kept/*.parquet")))
    assert table.schema.names == TextKept.names()


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_two_worker_processes_give_identical_results(planted: dict[str, Any], tmp_path: Path) -> None:
    planted["corpus"].write(tmp_path)
    counters = filter_text.run(
        [
            "--output", str(tmp_path), "--ngram-vocab-size", str(planted["vocab_size"]),
            "--direct_running_mode=multi_processing", "--direct_num_workers=2",
        ]
    )  # fmt: skip
    _, kept, rejected = outcome(tmp_path)
    _, first_kept, first_rejected = outcome(planted["root"])
    assert kept == first_kept and rejected == first_rejected
    assert counters == planted["counters"]


def test_datacomp_basic_keeps_english_of_three_words_and_six_characters(tmp_path: Path) -> None:
    corpus = Corpus()
    corpus.add("http://img.example/1.jpg", "A brown dog running on the beach", "kept")
    corpus.add("http://img.example/2.jpg", "Un chien brun qui court sur la plage", "language_not_allowed")
    corpus.add("http://img.example/3.jpg", "a b c", "alt_too_few_chars")
    corpus.add("http://img.example/4.jpg", "brown dog", "alt_too_few_words")
    # DataComp counts whitespace-separated words (len(text.split()) > 2), not unigrams: 2 words but 5 unigrams ...
    corpus.add("http://img.example/5.jpg", "state-of-the-art photography", "alt_too_few_words")
    # ... and 3 words but 2 unigrams.
    corpus.add("http://img.example/6.jpg", "Dog & cat", "kept")
    # Frequency rules are off in DataComp basic: a popular alt text stays.
    for i in range(12):
        corpus.add(f"http://img.example/p{i}.jpg", "click here to see the photo", "kept")
    corpus.write(tmp_path)
    counters = filter_text.run(["--output", str(tmp_path), "--preset", "datacomp-basic"])
    fates, kept, _ = outcome(tmp_path)
    assert fates == corpus.fate
    assert counters["language_not_allowed"] == 1 and counters["kept"] == 14 and counters["alt_too_few_words"] == 2
    assert {row[TextKept.LANGUAGE] for row in kept} == {"en"}


def test_a_pair_repeated_across_a_unit_reaches_the_duplicate_pass_as_one_row() -> None:
    """Hot key: a pair on 100,000 pages (a logo with one alt) leaves a read unit as one row carrying its count, the
    smallest candidate id, and that row's reference; the n-gram counts still weigh every candidate."""
    size = 100_000
    url, alt = "https://cdn.example/logo.png", "example shop logo"
    ids = [candidate_id("hot.warc.gz", index, 0) for index in range(size)]
    table = pa.table(
        {
            Candidate.KEY: [sample_key(url, alt)] * size,
            Candidate.CANDIDATE_ID: ids,
            Candidate.IMAGE_URL: [url] * size,
            Candidate.ALT_TEXT: [alt] * size,
        }
    )
    prepare = filter_text.PrepareUnit([("unused", 0)], partitions=8, count_ngrams=True)
    outputs = prepare._prepare(3, table)
    pairs = [payload for payload in outputs if not isinstance(payload, beam.pvalue.TaggedOutput)]
    assert len(pairs) == 1
    (_, compact) = pairs[0]
    assert compact.num_rows == 1
    assert compact["count"].to_pylist() == [size]
    assert compact["candidate_id"].to_pylist() == [min(ids)]
    assert compact["row"].to_pylist() == [(3 << 32) | ids.index(min(ids))]
    grams = {}
    for output in outputs:
        if isinstance(output, beam.pvalue.TaggedOutput):
            names, counts = output.value[1][0].to_pylist(), output.value[1][1].tolist()
            grams.update(zip(names, counts, strict=True))
    assert grams == {gram: size for gram in ["example", "shop", "logo", "example shop", "shop logo"]}
