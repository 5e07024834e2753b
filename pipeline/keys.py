"""Content-derived identifiers: the same inputs give the same keys on any runner and in any order."""

from __future__ import annotations

import hashlib
import posixpath

KEY_HEX_CHARS = 24  # 96 bits: collision-free in practice at the tens-of-billions scale of Common Crawl


def sample_key(image_url: str, alt_text: str) -> str:
    """The sample key of an (image URL, alt text) pair: a WebDataset-safe hex string (no dots)."""
    return hashlib.sha256(f"{image_url}\n{alt_text}".encode()).hexdigest()[:KEY_HEX_CHARS]


def candidate_id(warc_file: str, record_offset: int, ordinal: int) -> str:
    """Id of one ``<img>`` occurrence: its WARC file's base name, the record's offset and the tag's ordinal."""
    name = posixpath.basename(warc_file.replace("\\", "/"))
    return hashlib.sha256(f"{name}\n{record_offset}\n{ordinal}".encode()).hexdigest()[:KEY_HEX_CHARS]
