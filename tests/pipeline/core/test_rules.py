"""The keep-or-drop helper every filter stage uses: first failing rule recorded, all failing rules counted."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.rules import apply_rules
from pipeline.core.stage import stage_counters
from schemas import Candidate, Rejection


def too_short(row: dict) -> str | None:
    return "alt_too_short" if len(row[Candidate.ALT_TEXT].split()) < 3 else None


def has_digit(row: dict) -> tuple[str, str] | None:
    text = row[Candidate.ALT_TEXT]
    return ("has_digit", text) if any(ch.isdigit() for ch in text) else None


def test_first_failing_rule_is_recorded_and_every_failure_is_counted() -> None:
    rows = [
        Candidate.row(candidate_id="a", key="ka", alt_text="a red boat at sea"),
        Candidate.row(candidate_id="b", key="kb", alt_text="boat 7"),
        Candidate.row(candidate_id="c", key="kc", alt_text="three boats in 1999"),
    ]
    pipeline = TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"]))
    kept, rejected = apply_rules(pipeline | beam.Create(rows), "demo", [too_short, has_digit], "Rules")
    assert_that(kept | "KeptIds" >> beam.Map(lambda r: r[Candidate.CANDIDATE_ID]), equal_to(["a"]), label="Kept")
    assert_that(
        rejected
        | "Reasons"
        >> beam.Map(
            lambda r: (r[Rejection.CANDIDATE_ID], r[Rejection.STAGE], r[Rejection.REASON], r[Rejection.DETAIL])
        ),
        equal_to([("b", "demo", "alt_too_short", None), ("c", "demo", "has_digit", "three boats in 1999")]),
        label="Rejected",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert stage_counters(result, "demo") == {"alt_too_short": 1, "dropped": 2, "has_digit": 2, "kept": 1}
