"""The oracle's document (``pipeline/sample/oracle.py``): its stated assumptions are the ``align`` preset's, its
stages are the registry's, and ``expected.json``'s hand-laid-out text parses back to the document."""

from __future__ import annotations

import json

import pytest

from pipeline.core.config import PRESETS
from pipeline.core.registry import STAGES
from pipeline.sample.builder import MIN_PAGES, SampleBuilder
from pipeline.sample.oracle import REASON, STAGE, oracle_document, oracle_json


@pytest.fixture(scope="module")
def document() -> dict:
    builder = SampleBuilder(MIN_PAGES, seed=0)
    builder.build()
    return oracle_document(builder)


def test_the_oracle_assumes_the_align_presets_thresholds(document: dict) -> None:
    # The planted cases sit at these thresholds; a changed default must show up here, not as a silently wrong oracle.
    align = PRESETS["align"]
    assumes = document["assumes"]
    assert assumes["preset"] == align.preset
    assert assumes["max_images_per_alt"] == align.text.max_images_per_alt
    assert assumes["max_alts_per_image_url"] == align.text.max_alts_per_image_url
    assert assumes["max_alts_per_image_content"] == align.image.max_alts_per_image_content
    assert (assumes["min_unigrams"], assumes["max_unigrams"]) == (align.text.min_unigrams, align.text.max_unigrams)
    assert assumes["min_shorter_side_px"] == align.image.min_shorter_side_px
    assert assumes["max_aspect_ratio_exclusive"] == align.image.max_aspect_ratio
    assert not align.image.aspect_ratio_inclusive


def test_every_fate_names_a_registered_stage(document: dict) -> None:
    stages = {entry[STAGE] for entry in document["candidates"] if entry["fate"] != "kept"}
    assert stages and stages <= set(STAGES)
    assert {entry[STAGE] for entry in document["candidates"] if entry["fate"] == "kept"} == {None}
    assert all(entry[REASON] for entry in document["candidates"] if entry["fate"] == "kept_one")


def test_expected_json_text_parses_back_to_the_document(document: dict) -> None:
    text = oracle_json(document)
    assert json.loads(text) == document
    # One line per candidate keeps the file diffable.
    assert text.count("\n") > len(document["candidates"]) + len(document["images"]) + len(document["pages"])
