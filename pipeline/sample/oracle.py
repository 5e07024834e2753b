"""The oracle, ``expected.json``: every candidate's fate under ALIGN's rules, and the file that states them.

Fates name their stage through the stage registry and their columns through the pipeline's own schemas, so the
end-to-end test compares like with like.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from PIL import Image

from pipeline.core.registry import StageSpec
from pipeline.sample.warc_writer import WARC_NAME
from schemas import Candidate, Rejection

if TYPE_CHECKING:
    from pipeline.sample.builder import SampleBuilder

EXPECTED_NAME = "expected.json"
EVAL_DIR_NAME = "eval"
ORACLE_VERSION = 1

# ALIGN's thresholds the planted cases are built around (12/11/10 images per alt, 1001/1000 alts, 200/201 px). They
# equal the `align` preset's defaults in pipeline/core/config.py, which tests/pipeline/sample/test_builder.py checks;
# they are not read from there because the cases would not follow a changed default (and config imports Beam).
MAX_IMAGES_PER_ALT = 10
MAX_ALTS_PER_IMAGE = 1000
MIN_SHORTER_SIDE = 201

# Column names of the oracle's candidate entries are the pipeline's own.
PAGE_URL, IMAGE_URL, ALT_TEXT = str(Candidate.PAGE_URL), str(Candidate.IMAGE_URL), str(Candidate.ALT_TEXT)
URL_ATTRIBUTE, HTML_LANG = str(Candidate.URL_ATTRIBUTE), str(Candidate.HTML_LANG)
STAGE, REASON = str(Rejection.STAGE), str(Rejection.REASON)


# ---------------------------------------------------------------------------------------------------------------------
# Fates, as the oracle writes them.


def kept() -> dict[str, Any]:
    """The fate of a candidate that must reach the shards."""
    return {"fate": "kept", STAGE: None, REASON: None}


def rejected(stage: StageSpec, reason: str | None) -> dict[str, Any]:
    """The fate of a candidate dropped at ``stage`` for ``reason`` (None: environment-dependent, e.g. a DNS error)."""
    return {"fate": "rejected", STAGE: stage.name, REASON: reason}


def kept_one(group: str, stage: StageSpec, reason: str) -> dict[str, Any]:
    """Exactly one candidate of ``group`` is kept (the filter's choice); the others are dropped with ``reason``."""
    return {"fate": "kept_one", "duplicate_group": group, STAGE: stage.name, REASON: reason}


# ---------------------------------------------------------------------------------------------------------------------
# The file.


def oracle_document(builder: SampleBuilder) -> dict[str, Any]:
    """The content of expected.json."""
    cases = Counter(entry["case"] for entry in builder.candidates)
    fates = Counter(entry["fate"] for entry in builder.candidates)
    groups = {entry["duplicate_group"] for entry in builder.candidates if entry["fate"] == "kept_one"}
    return {
        "oracle_version": ORACLE_VERSION,
        "seed": builder.seed,
        "warc_file": WARC_NAME,
        "assumes": {
            "preset": "align",
            "max_images_per_alt": MAX_IMAGES_PER_ALT,
            "max_alts_per_image_url": MAX_ALTS_PER_IMAGE,
            "max_alts_per_image_content": MAX_ALTS_PER_IMAGE,
            "min_unigrams": 3,
            "max_unigrams": 20,
            "min_shorter_side_px": MIN_SHORTER_SIDE,
            "max_aspect_ratio_exclusive": 3.0,
            "eval_index": f"built from {EVAL_DIR_NAME}/ by `python -m pipeline eval-index`",
            "network": "none needed: every image but the .invalid one is archived",
        },
        "counts": {
            "pages": len(builder.pages),
            "candidates": len(builder.candidates),
            "expected_kept": fates["kept"] + len(groups),
            "fates": dict(sorted(fates.items())),
            "cases": dict(sorted(cases.items())),
            "non_candidates": len(builder.non_candidates),
        },
        "candidates": builder.candidates,
        "non_candidates": builder.non_candidates,
        "images": {url: builder.images[url].oracle() for url in sorted(builder.images)},
        "pages": [
            {
                "url": page.url,
                "encoding": page.encoding,
                "header_charset": page.header_charset,
                "meta_charset": page.meta_charset,
                "content_encoding": page.content_encoding,
                "case": page.case,
            }
            for page in builder.pages
        ],
        "eval_images": {
            name: {"width": size[0], "height": size[1], "sha256": hashlib.sha256(body).hexdigest()}
            for name, body in sorted(builder.eval_files.items())
            for size in [Image.open(io.BytesIO(body)).size]
        },
    }


def oracle_json(oracle: dict[str, Any]) -> str:
    """expected.json's text: one line per candidate, image and page, so it stays small and diffs read well."""
    parts = []
    for key, value in oracle.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            body = ",\n".join(json.dumps(item, ensure_ascii=False) for item in value)
            text = f"[\n{body}\n]"
        elif key == "images":
            body = ",\n".join(f"{json.dumps(url)}: {json.dumps(item)}" for url, item in value.items())
            text = f"{{\n{body}\n}}"
        else:
            text = json.dumps(value, ensure_ascii=False, indent=1)
        parts.append(f"{json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
