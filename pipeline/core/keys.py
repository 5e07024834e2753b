"""Content-derived identifiers: the same inputs give the same keys on any runner and in any order."""

from __future__ import annotations

import hashlib
import posixpath
from functools import lru_cache

KEY_HEX_CHARS = 24  # 96 bits: collision-free in practice at the tens-of-billions scale of Common Crawl


def _sha256_hex_reference(text: str, chars: int) -> str:
    """The first ``chars`` hex digits of the SHA-256 of ``text``'s UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


try:  # the same digests in C (SHA-NI where the CPU has it): extract makes two per candidate, ~1 us each via hashlib
    from pipeline.html._tagscan import sha256_hex as _sha256_hex
except ImportError:  # the tag scanner's extension was not compiled
    _sha256_hex = _sha256_hex_reference


def sample_key(image_url: str, alt_text: str) -> str:
    """The sample key of an (image URL, alt text) pair: a WebDataset-safe hex string (no dots)."""
    return _sha256_hex(f"{image_url}\n{alt_text}", KEY_HEX_CHARS)


@lru_cache(maxsize=64)
def warc_name(warc_file: str) -> str:
    """The part of a WARC path that identifies it in candidate ids: its base name (same on any filesystem)."""
    return posixpath.basename(warc_file.replace("\\", "/"))


def candidate_id_prefix(warc_file: str, record_offset: int) -> str:
    """What the candidate ids of one record share; ``candidate_id_in`` adds the ordinal (extract's per-page path)."""
    return f"{warc_name(warc_file)}\n{record_offset}\n"


def candidate_id_in(prefix: str, ordinal: int) -> str:
    """``candidate_id`` of the ordinal-th ``<img>`` of the record whose ``candidate_id_prefix`` is given."""
    return _sha256_hex(f"{prefix}{ordinal}", KEY_HEX_CHARS)


def candidate_id(warc_file: str, record_offset: int, ordinal: int) -> str:
    """Id of one ``<img>`` occurrence: its WARC file's base name, the record's offset and the tag's ordinal."""
    return candidate_id_in(candidate_id_prefix(warc_file, record_offset), ordinal)
