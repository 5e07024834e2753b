"""``filter-image``: text_kept/ + images/ (+ candidates/) -> samples/ (ALIGN's rules) and ``rejected/filter-image-*``.

Candidates are joined with their image by ``image_url``. A candidate whose image is not ``ok`` was already rejected
by ``fetch`` and is only counted here (``image_not_ok``), so every candidate still ends in exactly one place.

The surviving samples get their image bytes without the bytes passing through a shuffle (``WithImageBytes``: the
local runner held the old by-URL join's input of every ok image's bytes, 7.5 GB per worker for a 100 MB crawl):
where each ok URL's bytes are (images/ read without the bytes) meets the samples by URL, the rows meet their file by
path, and each images/ file is read once, a row group at a time, for the bytes its samples need. Only the optional
byte consumers (the unsafe scorer, CLIP embeddings) read images/ with the bytes as rows.

Rules, in the order a rejection's reason is chosen (ALIGN defaults in ``ImageFilterConfig``; ``None`` = off):
- ``image_too_small``: the original image's shorter side is below ``min_shorter_side_px`` (201: ALIGN's "> 200").
- ``aspect_ratio_too_extreme``: long/short side >= ``max_aspect_ratio`` (3), or > it with ``aspect_ratio_inclusive``.
- ``eval_near_duplicate``: the pHash is within ``eval_max_distance`` bits of an image of the ``eval_index``
  (banded lookup, ``pipeline.images.eval_index.HashIndex``, built once as a Beam side input).
- ``unsafe``: the configured ``unsafe_scorer`` scored the image above ``max_unsafe_score`` (the score is recorded in
  ``unsafe_score`` whenever a scorer is configured).
- ``low_clip_score``: with ``min_clip_score`` (off in every preset), the cosine similarity of the image's and the alt
  text's embeddings by ``clip_score_checkpoint`` (DataComp's CLIP score) is below it; the score is in the detail.
  Judged on the rows the rules above kept (``pipeline.images.clip_score``: RunInference, one model per worker).
- ``image_has_too_many_alts``: the image content (sha256, so one picture at many URLs counts once) carries more than
  ``max_alts_per_image_content`` distinct alt texts (ALIGN: 1000). Counted as ALIGN counts, on the raw data: every
  row of ``candidates/`` (those filter-text dropped included) whose image URL fetched ``ok``, joined to its content
  by URL; applied to the rows that survived. filter-text's ``image_url_has_too_many_alts`` counts the same way per
  URL, so the two rules differ only in what they key on.
- ``duplicate_image_alt``: one sample per (image sha256, alt text); the one with the smallest (key, candidate_id)
  stays, the others are rejected.
- ``semantic_duplicate``: with ``semantic_dedup_threshold`` (off in every preset), the image's embedding is within that
  cosine distance of an earlier image's (the larger original first, then by sha256) among the images the rules above
  kept: every row of the image goes, as SemDeDup drops an item (an exact copy is ``duplicate_image_alt``'s; this is for re-encoded or resized
  ones). Pairs are compared within LSH buckets (``pipeline.images.clip_score``), never all images in one worker.
- ``image_not_fetched``: fetch wrote no row for the candidate's image URL (a broken contract, recorded, not lost).

The reasons are ``pipeline.core.reasons.FilterImageReason``; the first four rules are ``image_rules(config)``,
evaluated and counted by ``pipeline.core.rules`` (the protocol every filter stage shares).

Counting alts (it scales to a picture with millions of alts: no step holds one key's values as a list): distinct
``(image URL, alt-text hash)`` pairs of candidates/ (``BoundedDistinct``, a combiner whose pre-combine holds a
bounded number of keys per worker: ``pipeline.core.combine``); a streamed join with each ok image's sha256 by URL
(tagged values + ``GroupByKey``, iterated, never listed); distinct ``(sha256, alt hash)`` pairs; a count per sha256
(``BoundedCountPerKey``). The counts over the limit (few) reach the surviving rows as a side input, so the rows are
never grouped by content (``TooManyAltsPerContent``), and ``duplicate_image_alt``'s winner per ``(sha256, alt text)``
is a combiner (``FirstByIdentity``: one identity per accumulator) joined back to that pair's rows
(``OneSamplePerContentAlt``). The joins iterate their group twice (the small tagged value first, then the rows one at
a time): one image at a million URLs, or a million copies of one (image, alt) pair, is never listed or sorted in one
worker's memory (``tests/pipeline/stages/test_hot_keys.py``).

Counters: ``candidates``, ``image_not_ok``, ``clip_score_missing`` (a row left unscored: its image did not decode or
the model raised), ``clip_image_decode_error``, ``clip_model_error``, ``kept``/``dropped`` and one per reason of the
per-image rules (via ``pipeline.core.rules.apply_rules``), one per reason of the grouping rules, and ``samples`` (rows
written to samples/).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.combine import BoundedCombinePerKey, BoundedCountPerKey, BoundedDistinct
from pipeline.core.config import CorpusConfig, ImageFilterConfig
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable, list_matching, read_row_groups
from pipeline.core.progress import StageProgress, table_progress, with_progress
from pipeline.core.reasons import FilterImageReason
from pipeline.core.rules import REJECTED, Decisions, Rule, RuleResult, apply_rules, counter, rejection
from pipeline.core.stage import run_stage
from pipeline.images.eval_index import HashIndex
from pipeline.stages.filter_text import alt_id
from schemas import Candidate, FetchedImage, Rejection, Sample, SampleImage, TextKept
from schemas.tables import EvalImageHash

STAGE = "filter-image"
OK = "ok"
#: Transient field (never written) carrying the eval-index match from the annotating DoFn to the rule.
EVAL_MATCH = "_eval_match"
#: Tags of the streamed joins: by URL (an image's sha256, a raw alt hash), by (sha256, alt text) (a surviving row, the
#: winner's identity).
_SHA, _ALT = 0, 1
_ROW, _WINNER = 0, 1
#: Tags of the model rules' joins: an embedding, a wanted image content, its bytes, its nearest earlier duplicate.
_VECTOR, _WANTED, _BYTES, _DUPLICATE = 3, 4, 5, 6
#: Tags of the joins by image URL: a candidate (or a surviving sample), the URL's fetched image, its unsafe score.
_CANDIDATE, _IMAGE, _SCORE = 7, 8, 9
#: Tag of the bytes join by image URL: the images/ file holding the URL's bytes.
_FILE = 10


# -- per-image rules ------------------------------------------------------------------------------------------------


def too_small_rule(config: ImageFilterConfig) -> Rule:
    """``image_too_small`` when the original shorter side is below ``min_shorter_side_px``."""

    def rule(row: dict[str, Any]) -> RuleResult:
        if config.min_shorter_side_px is None:
            return None
        shorter = min(int(row[Sample.ORIGINAL_WIDTH] or 0), int(row[Sample.ORIGINAL_HEIGHT] or 0))
        if shorter < config.min_shorter_side_px:
            return FilterImageReason.IMAGE_TOO_SMALL, f"shorter side {shorter} px < {config.min_shorter_side_px}"
        return None

    return rule


def aspect_ratio_rule(config: ImageFilterConfig) -> Rule:
    """``aspect_ratio_too_extreme`` when long/short reaches ``max_aspect_ratio`` (exceeds it, if inclusive)."""

    def rule(row: dict[str, Any]) -> RuleResult:
        if config.max_aspect_ratio is None:
            return None
        width, height = int(row[Sample.ORIGINAL_WIDTH] or 0), int(row[Sample.ORIGINAL_HEIGHT] or 0)
        if min(width, height) <= 0:
            return FilterImageReason.ASPECT_RATIO_TOO_EXTREME, f"{width}x{height}"
        # Exact rational comparison: 300x100 is exactly 3, with no float rounding on either side.
        ratio = Fraction(max(width, height), min(width, height))
        limit = Fraction(str(config.max_aspect_ratio))
        if ratio > limit or (ratio == limit and not config.aspect_ratio_inclusive):
            detail = f"{width}x{height}: ratio {float(ratio):.3f}, limit {limit}"
            return FilterImageReason.ASPECT_RATIO_TOO_EXTREME, detail
        return None

    return rule


def eval_rule(row: dict[str, Any]) -> RuleResult:
    """``eval_near_duplicate`` when the annotating step found an evaluation image within the distance."""
    match = row.get(EVAL_MATCH)
    return (FilterImageReason.EVAL_NEAR_DUPLICATE, match) if match else None


def unsafe_rule(config: ImageFilterConfig) -> Rule:
    """``unsafe`` when a scorer ran and its score exceeds ``max_unsafe_score``."""

    def rule(row: dict[str, Any]) -> RuleResult:
        score = row.get(Sample.UNSAFE_SCORE)
        if config.max_unsafe_score is None or score is None or score <= config.max_unsafe_score:
            return None
        return FilterImageReason.UNSAFE, f"score {score:.4f} > {config.max_unsafe_score}"

    return rule


def image_rules(config: ImageFilterConfig) -> list[Rule]:
    """The per-image rules in the order their reasons win."""
    return [too_small_rule(config), aspect_ratio_rule(config), eval_rule, unsafe_rule(config)]


# -- DoFns ----------------------------------------------------------------------------------------------------------


class ScoreUnsafe(beam.DoFn):
    """``(image_url, unsafe score)`` of each ok image, from the configured scorer (loaded once per worker)."""

    def __init__(self, scorer_spec: str) -> None:
        self.scorer_spec = scorer_spec

    def setup(self) -> None:
        from pipeline.images.unsafe import load_scorer

        self.scorer = load_scorer(self.scorer_spec)
        self.failed = counter(STAGE, "unsafe_score_error")

    def process(self, image: dict[str, Any]) -> Iterable[tuple[str, float | None]]:
        from PIL import Image

        from pipeline.images.unsafe import score_image

        try:
            with Image.open(io.BytesIO(image[FetchedImage.IMAGE])) as decoded:
                score: float | None = score_image(self.scorer, decoded)
        except Exception:  # a scorer failing on one image must not stop the job; the score stays null
            self.failed.inc()
            score = None
        yield image[FetchedImage.IMAGE_URL], score


class JoinCandidatesWithImage(beam.DoFn):
    """One light sample row (no bytes) per candidate whose image is ok; count the others (fetch rejected them).

    The group is one image URL's tagged values (``_CANDIDATE`` rows, its ``_IMAGE`` row, its ``_SCORE``), streamed in
    two passes over the re-iterable group: the image and the count first, then the candidates one at a time, so a
    URL on a million pages is never held as a list (a CoGroupByKey would build that list).
    """

    progress = StageProgress(STAGE, "candidates")

    def setup(self) -> None:
        self.candidates = counter(STAGE, "candidates")
        self.not_ok = counter(STAGE, "image_not_ok")
        self.unused_images = counter(STAGE, "images_without_candidates")
        self.not_fetched = counter(STAGE, "image_not_fetched")

    def process(self, element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterable[Any]:
        _, values = element
        images: list[dict[str, Any]] = []
        scores: list[float | None] = []
        count = 0
        for tag, value in values:
            if tag == _CANDIDATE:
                count += 1
            elif tag == _IMAGE:
                images.append(value)
            else:
                scores.append(value)
        if not count:
            self.unused_images.inc()
            return
        self.candidates.inc(count)
        self.progress.add(count)
        candidates = (value for tag, value in values if tag == _CANDIDATE)
        if not images:
            self.not_fetched.inc(count)
            for candidate in candidates:
                yield beam.pvalue.TaggedOutput(
                    REJECTED, rejection(candidate, STAGE, FilterImageReason.IMAGE_NOT_FETCHED)
                )
            return
        image = min(images, key=lambda image: image[FetchedImage.STATUS] != OK)  # the first ok one, as sorted
        if image[FetchedImage.STATUS] != OK:
            self.not_ok.inc(count)
            return
        for candidate in candidates:
            yield sample_row(candidate, image, scores[0] if scores else None)


def sample_row(candidate: dict[str, Any], image: dict[str, Any], unsafe_score: float | None) -> dict[str, Any]:
    """A kept candidate joined with its fetched image's facts: the Sample row the image rules judge."""
    row = Sample.project(candidate)
    row.update(
        {
            Sample.SHA256: image[FetchedImage.SHA256],
            Sample.PHASH: image[FetchedImage.PHASH],
            Sample.IMAGE_SOURCE: image[FetchedImage.SOURCE],
            Sample.ORIGINAL_WIDTH: image[FetchedImage.ORIGINAL_WIDTH],
            Sample.ORIGINAL_HEIGHT: image[FetchedImage.ORIGINAL_HEIGHT],
            Sample.WIDTH: image[FetchedImage.WIDTH],
            Sample.HEIGHT: image[FetchedImage.HEIGHT],
            Sample.UNSAFE_SCORE: unsafe_score,
        }
    )
    return row


def build_hash_index(rows: list[dict[str, Any]], max_distance: int) -> HashIndex:
    """The banded index of an eval index's readable rows, in a fixed order (labels ``source:item``)."""
    usable = sorted(
        (str(row[EvalImageHash.SOURCE]), str(row[EvalImageHash.ITEM]), int(row[EvalImageHash.PHASH]))
        for row in rows
        if row[EvalImageHash.STATUS] == OK and row[EvalImageHash.PHASH] is not None
    )
    return HashIndex([h for _, _, h in usable], max_distance, [f"{s}:{i}" for s, i, _ in usable])


def annotate_eval_match(row: dict[str, Any], index: HashIndex) -> dict[str, Any]:
    """Add the transient eval match (``distance=d to source:item``) when the row's pHash is near an eval image."""
    found = index.nearest(row[Sample.PHASH]) if row.get(Sample.PHASH) is not None else None
    if found is None:
        return row
    distance, position = found
    return dict(row, **{EVAL_MATCH: f"distance {distance} to {index.label(position)}"})


def _identity(row: dict[str, Any]) -> tuple[str, str]:
    return str(row[Sample.KEY]), str(row[Sample.CANDIDATE_ID])


def content_alt_pairs(element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[tuple[str, bytes]]:
    """``(sha256, alt hash)`` for every distinct raw alt of one image URL whose image is ok (none when it is not).

    Two passes over the (re-iterable) group, so a URL with millions of alts is streamed, never held as a list.
    """
    _, values = element
    sha256 = next((value for tag, value in values if tag == _SHA), None)
    if sha256 is None:
        return
    for tag, value in values:
        if tag == _ALT:
            yield sha256, value


class CountRawAltsPerContent(beam.PTransform):
    """Raw candidate rows + ok images -> ``(sha256, distinct alt texts of that content over all candidates)``."""

    def __init__(self, ok_images: beam.PCollection) -> None:
        super().__init__()
        self.ok_images = ok_images

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        alts_by_url = (
            candidates
            | "UrlAltPairs" >> beam.Map(lambda row: (row[Candidate.IMAGE_URL], alt_id(row[Candidate.ALT_TEXT] or "")))
            | "DistinctUrlAlts" >> BoundedDistinct()
            | "TagAlt" >> beam.MapTuple(lambda url, alt: (url, (_ALT, alt)))
        )
        sha_by_url = self.ok_images | "TagSha" >> beam.Map(
            lambda image: (image[FetchedImage.IMAGE_URL], (_SHA, image[FetchedImage.SHA256]))
        )
        return (
            (alts_by_url, sha_by_url)
            | "UrlJoinInputs" >> beam.Flatten()
            | "GroupByUrl" >> beam.GroupByKey()
            | "ContentAltPairs" >> beam.FlatMap(content_alt_pairs)
            | "CountPerContent" >> CountDistinctPerKey()
        )


class CountDistinctPerKey(beam.PTransform):
    """``(k, v)`` pairs -> ``(k, number of distinct v)``: two combiners (``Distinct``, ``Count.PerKey``), so a key with
    a million pairs is counted in partial sums, never gathered."""

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return pairs | "DistinctContentAlts" >> BoundedDistinct() | "AltsPerContent" >> BoundedCountPerKey()


class TooManyAltsPerContent(beam.DoFn):
    """Reject every surviving row of a content with too many distinct raw alts; pass the others on keyed by
    ``(sha256, alt text)``.

    The contents over the limit come as a side input (``over_limit``: sha256 -> distinct raw alt count, only those
    above ``max_alts``: few, as the limit is ALIGN's 1000), so the rows are judged one at a time where they are and
    never grouped by content. A join by sha256 handed one worker a content's rows as one element on Beam's local
    runner (it sends a GroupByKey's group whole): the 1 GB simulated crawl's most copied picture carried 30,779 rows,
    124 MB decoded in a worker, ten times its 100 MB crawl's, and growing with the crawl.
    """

    def __init__(self, max_alts: int) -> None:
        self.max_alts = max_alts

    def setup(self) -> None:
        self.decisions = Decisions(STAGE)

    def process(self, row: dict[str, Any], over_limit: dict[str, int]) -> Iterator[Any]:
        sha256 = row[Sample.SHA256]
        distinct_alts = over_limit.get(sha256)
        if distinct_alts is None:
            yield _by_content_alt(row)
            return
        detail = f"{distinct_alts} distinct alt texts > {self.max_alts} for sha256 {sha256}"
        yield beam.pvalue.TaggedOutput(
            REJECTED, self.decisions.drop(row, FilterImageReason.IMAGE_HAS_TOO_MANY_ALTS, detail)
        )


def _by_content_alt(row: dict[str, Any]) -> tuple[tuple[str, str], dict[str, Any]]:
    return (row[Sample.SHA256], row[Sample.ALT_TEXT]), row


class OneSamplePerContentAlt(beam.DoFn):
    """Join by ``(sha256, alt text)``, streamed: keep the row whose identity is the group's winner, reject the rest.

    The winner (the smallest ``(key, candidate_id)``) comes from a combiner (``FirstByIdentity``), tagged
    ``_WINNER``; two passes over the re-iterable group find it, then judge the rows one at a time.
    """

    def setup(self) -> None:
        self.decisions = Decisions(STAGE)

    def process(self, element: tuple[tuple[str, str], Iterable[tuple[int, Any]]]) -> Iterator[Any]:
        _, values = element
        winner = next((value for tag, value in values if tag == _WINNER), None)
        for tag, row in values:
            if tag != _ROW:
                continue
            if _identity(row) == winner:
                yield row
                continue
            detail = f"same image and alt text as sample {winner[0] if winner else None}"
            yield beam.pvalue.TaggedOutput(
                REJECTED, self.decisions.drop(row, FilterImageReason.DUPLICATE_IMAGE_ALT, detail)
            )


class ContentRules(beam.PTransform):
    """Rules over all candidates of one image content: too many distinct alts, then one sample per alt text.

    Scales to one picture at millions of URLs: counts and the winner of each ``(sha256, alt text)`` come from
    combiners (accumulators of one count or one identity); the contents over the alt limit reach the rows as a side
    input (the rows are not grouped by content), and each pair's rows meet its winner in a join that is iterated,
    never listed or sorted. Input: the surviving rows; ``alt_counts`` (``(sha256, count)``) when the alt rule is on.
    Outputs: ``kept`` and ``REJECTED``.
    """

    def __init__(self, max_alts: int | None, alt_counts: beam.PCollection | None = None) -> None:
        super().__init__()
        self.max_alts = max_alts
        self.alt_counts = alt_counts

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        rejections = []
        if self.max_alts is not None and self.alt_counts is not None:
            over_limit = self.alt_counts | "OverAltLimit" >> beam.Filter(
                lambda pair, limit: pair[1] > limit, self.max_alts
            )
            counted = rows | "TooManyAlts" >> beam.ParDo(
                TooManyAltsPerContent(self.max_alts), over_limit=beam.pvalue.AsDict(over_limit)
            ).with_outputs(REJECTED, main="kept")
            rejections.append(counted[REJECTED])
            by_pair = counted.kept
        else:
            by_pair = rows | "KeyByContentAlt" >> beam.Map(_by_content_alt)
        winners = by_pair | "WinnerPerContentAlt" >> FirstByIdentity()
        judged = (
            (
                by_pair | "TagRow" >> beam.MapTuple(lambda pair, row: (pair, (_ROW, row))),
                winners | "TagWinner" >> beam.MapTuple(lambda pair, identity: (pair, (_WINNER, identity))),
            )
            | "PairJoinInputs" >> beam.Flatten()
            | "GroupByContentAlt" >> beam.GroupByKey()
            | "OneSamplePerAlt" >> beam.ParDo(OneSamplePerContentAlt()).with_outputs(REJECTED, main="kept")
        )
        rejections.append(judged[REJECTED])
        return {"kept": judged.kept, REJECTED: rejections | "ContentRejections" >> beam.Flatten()}


class FirstByIdentity(beam.PTransform):
    """``(k, row)`` -> ``(k, smallest (key, candidate_id))``: a combiner whose accumulator is one identity."""

    def expand(self, keyed_rows: beam.PCollection) -> beam.PCollection:
        return (
            keyed_rows
            | "Identity" >> beam.MapTuple(lambda group, row: (group, _identity(row)))
            | "Smallest" >> BoundedCombinePerKey(SmallestFn())
        )


class SmallestFn(beam.CombineFn):
    """The smallest of comparable values (``None`` when there is none): one value per accumulator."""

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, smallest: Any, value: Any) -> Any:
        return value if smallest is None or value < smallest else smallest

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        smallest = None
        for value in accumulators:
            if value is not None:
                smallest = self.add_input(smallest, value)
        return smallest

    def extract_output(self, smallest: Any) -> Any:
        return smallest


# -- the model rules (CLIP score, semantic duplicates): see pipeline.images.clip_score ---------------------------


def wanted_with(element: tuple[Any, Iterable[tuple[int, Any]]], tag: int) -> Iterator[tuple[Any, Any]]:
    """``(key, value tagged tag)`` when the group also holds ``_WANTED`` (groups of at most two values)."""
    key, values = element
    values = list(values)
    if any(value_tag == _WANTED for value_tag, _ in values):
        for value_tag, value in values:
            if value_tag == tag:
                yield key, value
                return


def _url_and_bytes_by_sha256(image: dict[str, Any]) -> tuple[str, tuple[str, bytes]]:
    return image[FetchedImage.SHA256], (image[FetchedImage.IMAGE_URL], image[FetchedImage.IMAGE])


class ImageVectors(beam.PTransform):
    """Rows -> ``((IMAGE | TEXT, sha256 | alt text), vector)``: each distinct image content of the rows and, with
    ``embed_texts``, each distinct alt text, embedded by the configured checkpoint."""

    def __init__(self, ok_images: beam.PCollection, config: ImageFilterConfig, embed_texts: bool) -> None:
        super().__init__()
        self.ok_images = ok_images
        self.config = config
        self.embed_texts = embed_texts

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        wanted = (
            rows
            | "ContentOfRow" >> beam.Map(lambda row: row[Sample.SHA256])
            | "DistinctContents" >> beam.Distinct()
            | "TagWanted" >> beam.Map(lambda sha256: (sha256, (_WANTED, None)))
        )
        # One stored image per content (the smallest URL's: same sha256, same bytes), picked by a combiner.
        one_per_content = (
            self.ok_images
            | "BytesBySha256" >> beam.Map(_url_and_bytes_by_sha256)
            | "OneImagePerContent" >> beam.CombinePerKey(SmallestFn())
            | "TagBytes" >> beam.MapTuple(lambda sha256, url_bytes: (sha256, (_BYTES, url_bytes[1])))
        )
        images = (
            (wanted, one_per_content)
            | "ImageJoinInputs" >> beam.Flatten()
            | "GroupImageBySha256" >> beam.GroupByKey()
            | "WantedImages" >> beam.FlatMap(wanted_with, tag=_BYTES)
        )
        # Imported here: Beam's inference module costs seconds of start-up (and pulls in scipy), and only a stage
        # with a checkpoint needs it.
        from pipeline.images.clip_score import EmbedImagesAndTexts

        texts = None
        if self.embed_texts:
            texts = rows | "AltTexts" >> beam.Map(lambda row: row[Sample.ALT_TEXT]) | "DistinctAlts" >> beam.Distinct()
        return images | "Embed" >> EmbedImagesAndTexts(self.config, STAGE, texts)


def vectors_of(vectors: beam.PCollection, kind: str, label: str) -> beam.PCollection:
    """``(name, vector)`` of one kind (IMAGE or TEXT) of ``ImageVectors``' output."""
    return vectors | label >> beam.FlatMap(lambda item: [(item[0][1], item[1])] if item[0][0] == kind else [])


def attach_image_vector(element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[tuple[str, Any]]:
    """Join by sha256, streamed: each row with its image's vector (None when it has none), keyed by alt text."""
    _, values = element
    vector = next((value for tag, value in values if tag == _VECTOR), None)
    for tag, row in values:
        if tag == _ROW:
            yield row[Sample.ALT_TEXT], (_ROW, (row, vector))


class JudgeClipScore(beam.DoFn):
    """Join by alt text, streamed: score each row (its image's vector against its alt text's), reject it under
    ``min_clip_score``. A row missing a vector passes, counted ``clip_score_missing``."""

    def __init__(self, min_clip_score: float) -> None:
        self.min_clip_score = min_clip_score

    def setup(self) -> None:
        from pipeline.images.clip_score import clip_score

        self.decisions = Decisions(STAGE)
        self.score = clip_score

    def process(self, element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[Any]:
        _, values = element
        text_vector = next((value for tag, value in values if tag == _VECTOR), None)
        for tag, value in values:
            if tag != _ROW:
                continue
            row, image_vector = value
            if image_vector is None or text_vector is None:
                self.decisions.count("clip_score_missing")
                yield row
                continue
            score = self.score(image_vector, text_vector)
            if score < self.min_clip_score:
                detail = f"clip score {score:.4f} < {self.min_clip_score}"
                yield beam.pvalue.TaggedOutput(
                    REJECTED, self.decisions.drop(row, FilterImageReason.LOW_CLIP_SCORE, detail)
                )
            else:
                yield row


class ClipScoreRule(beam.PTransform):
    """Rows -> ``kept`` and ``REJECTED`` (``low_clip_score``): two streamed joins, by sha256 then by alt text, so a
    picture at a million URLs or an alt text on a million images is never held as a list."""

    def __init__(self, vectors: beam.PCollection, min_clip_score: float) -> None:
        super().__init__()
        self.vectors = vectors
        self.min_clip_score = min_clip_score

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        from pipeline.images.clip_score import IMAGE, TEXT

        image_vectors = vectors_of(self.vectors, IMAGE, "ImageVectorsOnly")
        text_vectors = vectors_of(self.vectors, TEXT, "TextVectorsOnly")
        by_alt = (
            (
                rows | "RowBySha256" >> beam.Map(lambda row: (row[Sample.SHA256], (_ROW, row))),
                image_vectors | "TagImageVector" >> beam.MapTuple(lambda sha256, vector: (sha256, (_VECTOR, vector))),
            )
            | "ScoreJoinInputs" >> beam.Flatten()
            | "GroupRowsBySha256" >> beam.GroupByKey()
            | "AttachImageVector" >> beam.FlatMap(attach_image_vector)
        )
        judged = (
            (by_alt, text_vectors | "TagTextVector" >> beam.MapTuple(lambda alt, vector: (alt, (_VECTOR, vector))))
            | "AltJoinInputs" >> beam.Flatten()
            | "GroupByAltText" >> beam.GroupByKey()
            | "JudgeClipScore" >> beam.ParDo(JudgeClipScore(self.min_clip_score)).with_outputs(REJECTED, main="kept")
        )
        return {"kept": judged.kept, REJECTED: judged[REJECTED]}


def dedup_rank(row: dict[str, Any]) -> tuple[int, str]:
    """Which of two near-duplicate images comes first (stays): the larger original (more pixels), then by sha256."""
    pixels = int(row[Sample.ORIGINAL_WIDTH] or 0) * int(row[Sample.ORIGINAL_HEIGHT] or 0)
    return -pixels, row[Sample.SHA256]


def ranked_vector(element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[tuple[tuple[int, str], Any]]:
    """``(dedup rank, vector)`` of a kept image content that has a vector (groups of at most two values)."""
    _, values = element
    values = list(values)
    rank = next((value for tag, value in values if tag == _WANTED), None)
    vector = next((value for tag, value in values if tag == _VECTOR), None)
    if rank is not None and vector is not None:
        yield rank, vector


class JudgeSemanticDuplicate(beam.DoFn):
    """Join by sha256, streamed: reject every row of an image with an earlier near duplicate, keep the others."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def setup(self) -> None:
        self.decisions = Decisions(STAGE)

    def process(self, element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[Any]:
        _, values = element
        duplicate = next((value for tag, value in values if tag == _DUPLICATE), None)
        for tag, row in values:
            if tag != _ROW:
                continue
            if duplicate is None:
                yield row
                continue
            distance, earlier = duplicate
            detail = f"cosine distance {distance:.4f} <= {self.threshold} to image sha256 {earlier} (kept first)"
            yield beam.pvalue.TaggedOutput(
                REJECTED, self.decisions.drop(row, FilterImageReason.SEMANTIC_DUPLICATE, detail)
            )


class SemanticDedupRule(beam.PTransform):
    """Rows -> ``kept`` and ``REJECTED`` (``semantic_duplicate``): the rows' distinct images with their vectors, LSH
    buckets (``SemanticDuplicates``), then a streamed join of the duplicates with the rows by sha256."""

    def __init__(self, vectors: beam.PCollection, config: ImageFilterConfig) -> None:
        super().__init__()
        self.vectors = vectors
        self.config = config

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        config = self.config
        threshold = float(config.semantic_dedup_threshold)  # type: ignore[arg-type]
        from pipeline.images.clip_score import IMAGE, SemanticDuplicates

        image_vectors = vectors_of(self.vectors, IMAGE, "DedupImageVectors")
        kept_vectors = (
            (
                rows
                | "KeptContent" >> beam.Map(lambda row: (row[Sample.SHA256], dedup_rank(row)))
                | "DistinctKeptContents" >> beam.Distinct()
                | "TagKeptContent" >> beam.MapTuple(lambda sha256, rank: (sha256, (_WANTED, rank))),
                image_vectors | "TagDedupVector" >> beam.MapTuple(lambda sha256, vector: (sha256, (_VECTOR, vector))),
            )
            | "DedupJoinInputs" >> beam.Flatten()
            | "GroupVectorBySha256" >> beam.GroupByKey()
            | "KeptVectors" >> beam.FlatMap(ranked_vector)
        )
        duplicates = (
            kept_vectors
            | "NearDuplicates"
            >> SemanticDuplicates(threshold, config.semantic_dedup_hash_bits, config.semantic_dedup_hash_tables)
            | "BySha256" >> beam.MapTuple(lambda rank, found: (rank[1], (found[0], found[1][1])))
        )
        judged = (
            (
                rows | "DedupRowBySha256" >> beam.Map(lambda row: (row[Sample.SHA256], (_ROW, row))),
                duplicates | "TagDuplicate" >> beam.MapTuple(lambda sha256, found: (sha256, (_DUPLICATE, found))),
            )
            | "DuplicateJoinInputs" >> beam.Flatten()
            | "GroupDuplicateBySha256" >> beam.GroupByKey()
            | "JudgeSemanticDuplicate"
            >> beam.ParDo(JudgeSemanticDuplicate(threshold)).with_outputs(REJECTED, main="kept")
        )
        return {"kept": judged.kept, REJECTED: judged[REJECTED]}


def ok_image_files(path: str) -> Iterator[tuple[str, tuple[int, tuple[str, int]]]]:
    """``(image_url, (_FILE, (path, row group)))`` for each ok image of one images/ file: where its bytes are.

    These two small columns were read already (``ReadImageMetadata``), but ``ReadTable`` does not say which file and
    row group a row came from; reading them again costs 0.02 CPU s for the 19k images of a 100 MB crawl (of
    filter-image's 90).
    """
    for group, table in read_row_groups(path, [FetchedImage.IMAGE_URL, FetchedImage.STATUS]):
        urls = table.column(FetchedImage.IMAGE_URL).to_pylist()
        for url, status in zip(urls, table.column(FetchedImage.STATUS).to_pylist(), strict=True):
            if status == OK:
                yield url, (_FILE, (path, group))


def sample_file(element: tuple[str, Iterable[tuple[int, Any]]]) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    """Join by URL, streamed: ``((images/ file, row group) holding the URL's bytes, sample row)`` per surviving sample.

    Two passes over the re-iterable group (the place first, then the rows one at a time), so a URL on a million pages
    is never held as a list. Of several places holding the URL, the first by path and row group, so every run picks
    the same one.
    """
    _, values = element
    place = min((value for tag, value in values if tag == _FILE), default=None)
    if place is None:  # never for a surviving sample: it was joined with an ok row of the same images/ files
        return
    for tag, row in values:
        if tag == _CANDIDATE:
            yield place, row


#: Images read at once from an images/ row group by ``AttachImageBytes`` (about 1.5 MB of 512 px JPEGs).
IMAGE_READ_ROWS = 32


class AttachImageBytes(beam.DoFn):
    """For one row group of an images/ file and the samples whose image it holds: their SampleImage rows, with bytes.

    The samples are grouped by row group, not by file: a hot host's fetch part can hold a quarter of a crawl's
    images (hundreds of row groups), and a group is one element, held whole by a worker. Only the row group's
    ``image`` column is read, and only the needed URLs' bytes are kept; the group (rows without bytes) is iterated
    twice, never listed.
    """

    def setup(self) -> None:
        self.samples = counter(STAGE, "samples")

    def process(self, element: tuple[tuple[str, int], Iterable[dict[str, Any]]]) -> Iterable[dict[str, Any]]:
        (path, group), rows = element
        needed = {row[Sample.IMAGE_URL] for row in rows}
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            found = self._needed_bytes(pq.ParquetFile(handle), group, needed)
        for row in rows:
            image_bytes = found.get(row[Sample.IMAGE_URL])
            if image_bytes is not None:
                self.samples.inc()
                yield SampleImage.project(dict(row, **{SampleImage.IMAGE: image_bytes}))

    @staticmethod
    def _needed_bytes(parquet: pq.ParquetFile, group: int, needed: set[str]) -> dict[str, bytes]:
        # URLs and statuses first (small), then the image column: a URL's first ok row in the row group wins.
        keys = parquet.read_row_group(group, columns=[FetchedImage.IMAGE_URL, FetchedImage.STATUS])
        urls = keys.column(FetchedImage.IMAGE_URL).to_pylist()
        statuses = keys.column(FetchedImage.STATUS).to_pylist()
        wanted = [
            i for i, (url, status) in enumerate(zip(urls, statuses, strict=True)) if status == OK and url in needed
        ]
        if not wanted:
            return {}
        # The images in small batches, the wanted ones kept: a whole row group's column (up to 12 MB of images) was
        # read through Arrow's growing binary builders, about 100 MB of a worker's peak on the 1 GB simulated crawl.
        found: dict[str, bytes] = {}
        wanted_at = iter(wanted)
        index = next(wanted_at, None)
        first = 0
        for batch in parquet.iter_batches(
            batch_size=IMAGE_READ_ROWS, row_groups=[group], columns=[FetchedImage.IMAGE], use_threads=False
        ):
            images = batch.column(0)
            while index is not None and index < first + len(images):
                found.setdefault(urls[index], images[index - first].as_py())
                index = next(wanted_at, None)
            first += len(images)
            if index is None:
                break
        return found


class WithImageBytes(beam.PTransform):
    """Sample rows -> SampleImage rows with their image bytes from the images/ files matching ``pattern``.

    No image bytes pass through a shuffle (the local runner holds a GroupByKey's whole input in its driver and hands
    each worker its part as one message; elsewhere it would be a needless shuffle of every image): the files are
    listed when the graph is built and read without the bytes for where each ok URL is, which meets the samples by
    URL (``sample_file``); the rows, without bytes, are grouped by file and row group, and each row group is read once
    for the bytes its samples need (``AttachImageBytes``).
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        files_by_url = (
            rows.pipeline
            | "ImageFiles" >> beam.Create(list_matching(self.pattern))
            | "OkImageFiles" >> beam.FlatMap(ok_image_files)
        )
        return (
            (rows | "SampleByUrl" >> beam.Map(lambda row: (row[Sample.IMAGE_URL], (_CANDIDATE, row))), files_by_url)
            | "UrlJoinSamples" >> beam.Flatten()
            | "JoinImageFiles" >> beam.GroupByKey()
            | "SampleByFile" >> beam.FlatMap(sample_file)
            | "GroupSamplesByFile" >> beam.GroupByKey()
            | "AttachImageBytes" >> beam.ParDo(AttachImageBytes())
        )


# -- the stage ------------------------------------------------------------------------------------------------------


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The filter-image graph: join, per-image rules, content rules, attach bytes, write."""
    image_config = config.image
    candidates = pipeline | "ReadTextKept" >> ReadTable(layout.glob(TextKept))
    # images/ is read twice: its metadata (every column but the bytes) for the joins and counts, and the ok images
    # with their bytes only where bytes are used. One read feeding every consumer would be held whole, bytes and all,
    # by the local runner between stages (a PCollection read by several stages is materialised in its memory).
    metadata = [name for name in FetchedImage.names() if name != FetchedImage.IMAGE]
    images = pipeline | "ReadImageMetadata" >> ReadTable(layout.glob(FetchedImage), columns=metadata)
    ok_metadata = images | "OkImageMetadata" >> beam.Filter(lambda image: image[FetchedImage.STATUS] == OK)
    ok_images = None
    if image_config.unsafe_scorer or image_config.clip_score_checkpoint:
        # Only the optional byte consumers read the bytes this way (an unconsumed read would still run, bytes and all).
        ok_images = (
            pipeline
            | "ReadImages" >> ReadTable(layout.glob(FetchedImage))
            | "OkImages" >> beam.Filter(lambda image: image[FetchedImage.STATUS] == OK)
        )
    join_inputs = [
        candidates | "CandidateByUrl" >> beam.Map(lambda row: (row[TextKept.IMAGE_URL], (_CANDIDATE, row))),
        # Read without the bytes (``metadata``): the rows go into the join as they are.
        images | "ImageMetaByUrl" >> beam.Map(lambda image: (image[FetchedImage.IMAGE_URL], (_IMAGE, image))),
    ]
    if image_config.unsafe_scorer:
        assert ok_images is not None
        join_inputs.append(
            ok_images
            | "ScoreUnsafe" >> beam.ParDo(ScoreUnsafe(image_config.unsafe_scorer))
            | "TagScore" >> beam.MapTuple(lambda url, score: (url, (_SCORE, score)))
        )
    joined = (
        join_inputs
        | "UrlJoinCandidates" >> beam.Flatten()
        | "JoinByImageUrl" >> beam.GroupByKey()
        | "CandidatesWithImage"
        >> beam.ParDo(
            with_progress(
                JoinCandidatesWithImage(), table_progress(STAGE, "candidates", layout.glob(TextKept), pipeline)
            )
        ).with_outputs(REJECTED, main="rows")
    )
    rows = joined.rows
    if image_config.eval_index:
        index = (
            pipeline
            | "ReadEvalIndex" >> ReadTable(image_config.eval_index)
            | "EvalIndexRows" >> beam.combiners.ToList()
            | "BuildHashIndex" >> beam.Map(build_hash_index, max_distance=image_config.eval_max_distance)
        )
        rows = rows | "MatchEvalIndex" >> beam.Map(annotate_eval_match, index=beam.pvalue.AsSingleton(index))
    passed, rejected_per_image = apply_rules(rows, STAGE, FilterImageReason, image_rules(image_config), "ImageRules")
    content_rows = passed | "DropEvalMatch" >> beam.Map(lambda row: Sample.project(row))
    model_rejections = []
    vectors = None
    if image_config.clip_score_checkpoint:
        assert ok_images is not None
        embed_texts = image_config.min_clip_score is not None
        vectors = content_rows | "ClipEmbeddings" >> ImageVectors(ok_images, image_config, embed_texts)
    if vectors is not None and image_config.min_clip_score is not None:
        scored = content_rows | "ClipScore" >> ClipScoreRule(vectors, image_config.min_clip_score)
        content_rows = scored["kept"]
        model_rejections.append(scored[REJECTED])
    alt_counts = None
    if image_config.max_alts_per_image_content is not None:
        columns = [Candidate.IMAGE_URL, Candidate.ALT_TEXT]
        alt_counts = (
            pipeline
            | "ReadRawCandidates" >> ReadTable(layout.glob(Candidate), columns=columns)
            | "CountRawAltsPerContent" >> CountRawAltsPerContent(ok_metadata)
        )
    by_content = content_rows | "ContentRules" >> ContentRules(image_config.max_alts_per_image_content, alt_counts)
    kept = by_content["kept"]
    if vectors is not None and image_config.semantic_dedup_threshold is not None:
        deduplicated = kept | "SemanticDedup" >> SemanticDedupRule(vectors, image_config)
        kept = deduplicated["kept"]
        model_rejections.append(deduplicated[REJECTED])
    samples = kept | "WithImageBytes" >> WithImageBytes(layout.glob(FetchedImage))
    _ = samples | "WriteSamples" >> WriteTable(layout.prefix(SampleImage), SampleImage)
    _ = (
        (joined[REJECTED], rejected_per_image, by_content[REJECTED], *model_rejections)
        | "AllRejections" >> beam.Flatten()
        | "WriteRejections" >> WriteTable(layout.rejected_prefix(STAGE), Rejection)
    )


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``filter-image`` on ``--output``; returns its counters."""
    return run_stage(STAGE, argv, build)
