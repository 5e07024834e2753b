"""Every stage's closed list of rejection reasons, as enums (no Beam here: tests and tools import it freely).

A reason is what a ``rejected/`` row's ``reason`` column holds and what names the ``<stage>:<reason>`` counter. The
members are ``str`` subclasses whose ``str()`` and f-string form is the plain value, so Parquet rows, counter names
and comparisons with plain strings are unchanged by using them. ``fetch`` has one open family besides its enum:
``http_<code>`` (the HTTP status code of a failed answer), built by ``http_status_reason`` and recognised by
``is_fetch_reason``. ``tests/pipeline/core/test_reasons.py`` holds these lists against ARCHITECTURE.md and against
each stage module's docstring, so the code, the stage docs and the architecture page cannot drift apart.
"""

from __future__ import annotations

import enum
import re


class Reason(str, enum.Enum):
    """Base of the reason enums: a member reads, prints and compares as its plain string value."""

    def __str__(self) -> str:
        # Without this, Python 3.11+ formats a (str, Enum) member as "Class.MEMBER" in f-strings and str().
        return str.__str__(self)


class ExtractReason(Reason):
    """Why ``extract`` rejects an ``<img>`` that has an alt text."""

    UNSUPPORTED_URL_SCHEME = "unsupported_url_scheme"
    INVALID_URL = "invalid_url"
    ALT_TOO_LONG_CHARS = "alt_too_long_chars"


class FilterTextReason(Reason):
    """Why ``filter-text`` rejects a candidate, in the order that decides the recorded reason."""

    DUPLICATE_PAIR = "duplicate_pair"
    ALT_TOO_SHORT = "alt_too_short"
    ALT_TOO_LONG = "alt_too_long"
    ALT_TOO_FEW_CHARS = "alt_too_few_chars"
    ALT_TOO_FEW_WORDS = "alt_too_few_words"
    ALT_SHARED_BY_TOO_MANY_IMAGES = "alt_shared_by_too_many_images"
    IMAGE_URL_HAS_TOO_MANY_ALTS = "image_url_has_too_many_alts"
    RARE_NGRAM = "rare_ngram"
    LANGUAGE_NOT_ALLOWED = "language_not_allowed"


class FetchReason(Reason):
    """Why ``fetch`` got no image for a URL (its status; ``ok`` is not a rejection). ``http_<code>`` is apart:
    an open family, see ``http_status_reason``."""

    TIMEOUT = "timeout"
    ROBOTS_DISALLOWED = "robots_disallowed"
    OPTED_OUT = "opted_out"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    DECODE_ERROR = "decode_error"
    DECOMPRESSION_BOMB = "decompression_bomb"
    PRIVATE_ADDRESS = "private_address"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    CONNECTION_ERROR = "connection_error"
    DNS_ERROR = "dns_error"
    NOT_ARCHIVED = "not_archived"


class FilterImageReason(Reason):
    """Why ``filter-image`` rejects a candidate: the per-image rules in the order their reasons win, then the rules
    over an image's candidates, then the broken-join safety net."""

    IMAGE_TOO_SMALL = "image_too_small"
    ASPECT_RATIO_TOO_EXTREME = "aspect_ratio_too_extreme"
    EVAL_NEAR_DUPLICATE = "eval_near_duplicate"
    UNSAFE = "unsafe"
    LOW_CLIP_SCORE = "low_clip_score"
    IMAGE_HAS_TOO_MANY_ALTS = "image_has_too_many_alts"
    DUPLICATE_IMAGE_ALT = "duplicate_image_alt"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    IMAGE_NOT_FETCHED = "image_not_fetched"


#: fetch's status for an image that was obtained and processed: not a rejection, so not a ``FetchReason``.
FETCH_OK = "ok"
#: How ARCHITECTURE.md and fetch's docstring write the open family.
HTTP_FAMILY = "http_<code>"
_HTTP_REASON = re.compile(r"http_[0-9]+")


def http_status_reason(code: int) -> str:
    """fetch's reason for an answer with HTTP status ``code`` that is neither a success nor a redirect followed."""
    return f"http_{int(code)}"


def is_fetch_reason(reason: str) -> bool:
    """Whether ``reason`` is one of fetch's rejection reasons: a ``FetchReason`` value or ``http_<code>``."""
    return reason in FetchReason._value2member_map_ or _HTTP_REASON.fullmatch(reason) is not None


#: Each stage's enum, by the stage's registry name.
STAGE_REASONS: dict[str, type[Reason]] = {
    "extract": ExtractReason,
    "filter-text": FilterTextReason,
    "fetch": FetchReason,
    "filter-image": FilterImageReason,
}
