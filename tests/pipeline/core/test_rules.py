"""The keep-or-drop protocol every filter stage uses: first failing rule recorded, all failing rules counted."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.reasons import FilterTextReason, Reason
from pipeline.core.rules import RuleResult, UnknownReason, apply_rules, evaluate
from pipeline.core.stage import stage_counters
from schemas import Candidate, Rejection


class DemoReason(Reason):
    TOO_SHORT = "alt_too_short"
    HAS_DIGIT = "has_digit"


def too_short(row: dict) -> RuleResult:
    return DemoReason.TOO_SHORT if len(row[Candidate.ALT_TEXT].split()) < 3 else None


def has_digit(row: dict) -> RuleResult:
    text = row[Candidate.ALT_TEXT]
    return (DemoReason.HAS_DIGIT, text) if any(ch.isdigit() for ch in text) else None


def test_evaluate_reports_every_failure_in_list_order() -> None:
    row = {Candidate.ALT_TEXT: "boat 7"}
    assert evaluate([too_short, has_digit], row, DemoReason) == [
        (DemoReason.TOO_SHORT, None),
        (DemoReason.HAS_DIGIT, "boat 7"),
    ]
    assert evaluate([has_digit, too_short], row, DemoReason)[0][0] == "has_digit"
    assert evaluate([too_short, has_digit], {Candidate.ALT_TEXT: "a red boat"}, DemoReason) == []


@pytest.mark.parametrize(
    "answer",
    [
        "alt_too_short",  # a plain string, even one equal to a member's value: rules name reasons by the enum
        "made_up_reason",
        FilterTextReason.ALT_TOO_SHORT,  # another stage's enum
        ("made_up_reason", "detail"),
    ],
)
def test_a_reason_outside_the_stages_enum_is_refused(answer: object) -> None:
    def stray_rule(row: dict) -> object:
        return answer

    with pytest.raises(UnknownReason, match="stray_rule"):
        evaluate([too_short, stray_rule], {Candidate.ALT_TEXT: "a red boat"}, DemoReason)


def test_first_failing_rule_is_recorded_and_every_failure_is_counted() -> None:
    rows = [
        Candidate.row(candidate_id="a", key="ka", alt_text="a red boat at sea"),
        Candidate.row(candidate_id="b", key="kb", alt_text="boat 7"),
        Candidate.row(candidate_id="c", key="kc", alt_text="three boats in 1999"),
    ]
    pipeline = BeamTestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"]))
    kept, rejected = apply_rules(pipeline | beam.Create(rows), "demo", DemoReason, [too_short, has_digit], "Rules")
    assert_that(kept | "KeptIds" >> beam.Map(lambda r: r[Candidate.CANDIDATE_ID]), equal_to(["a"]), label="Kept")
    assert_that(
        rejected
        | "Reasons"
        >> beam.Map(
            lambda r: (r[Rejection.CANDIDATE_ID], r[Rejection.STAGE], type(r[Rejection.REASON]), r[Rejection.DETAIL])
        ),
        equal_to([("b", "demo", str, None), ("c", "demo", str, "three boats in 1999")]),
        label="Rejected",
    )
    assert_that(
        rejected | "ReasonValues" >> beam.Map(lambda r: r[Rejection.REASON]),
        equal_to(["alt_too_short", "has_digit"]),
        label="RejectedReasons",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert stage_counters(result, "demo") == {"alt_too_short": 1, "dropped": 2, "has_digit": 2, "kept": 1}
