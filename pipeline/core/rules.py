"""Keep-or-drop rules: one protocol for every filter stage, one evaluator, one way to count and record a decision.

A rule is one idea bound to its config: a callable taking the subject (filter-image: a sample row; filter-text: a
pair's facts) and returning ``None`` to keep it, or a member of the stage's reason enum (``pipeline.core.reasons``),
alone or as ``(reason, detail)``. A rule with thresholds is built by a factory taking the config, so the list of
rules is data: ``image_rules(config)``, ``text_rules(config)``. ``evaluate`` runs a list in order and refuses a
reason outside the stage's enum; ``Decisions`` turns its answer into counters and a ``rejected/`` row: the first
failing rule is the recorded reason, and every failing rule is counted (``<stage>:<reason>``, plus ``kept`` or
``dropped``), so a funnel shows both what removed a candidate and how often each rule fired. ``ApplyRules`` is the
Beam step doing all this per row; filter-text's ``DecideAltText`` does it per pair after its joins.

Adding a filter (say "caption is all capitals" to filter-text):
1. the function: ``def alt_all_caps_rule(config) -> Rule`` whose inner ``rule(facts)`` returns
   ``(FilterTextReason.ALT_ALL_CAPS, detail)`` or ``None`` (``None`` too when its config field is ``None``);
2. the list entry: put it in ``text_rules`` where its reason should win; add the member to ``FilterTextReason``
   and the reason to the stage docstring's list and ARCHITECTURE.md (``test_reasons`` fails until all three agree);
3. the test: the rule at and around its threshold, as the stage's other rule tests do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.core.reasons import Reason
from schemas import Rejection

RuleResult = Reason | tuple[Reason, str | None] | None
#: A rule: subject -> ``None`` (keep) or ``reason`` or ``(reason, detail)`` (drop).
Rule = Callable[[Any], RuleResult]
#: One failing rule: its reason and optional detail.
Failure = tuple[Reason, str | None]

REJECTED = "rejected"
COUNTER_NAMESPACE = "altcorpus"


class UnknownReason(ValueError):
    """A rule answered with a reason outside its stage's closed list: a programming error, never data."""


def counter(stage: str, name: str) -> Any:
    """The Beam counter ``altcorpus/<stage>:<name>``: one namespace, so ``_SUCCESS`` files can list them all."""
    return Metrics.counter(COUNTER_NAMESPACE, f"{stage}:{name}")


def rejection(row: dict[str, Any], stage: str, reason: str, detail: str | None = None) -> dict[str, Any]:
    """The ``rejected/`` row recording why ``row`` (a candidate or a wider row) was dropped."""
    return Rejection.row(
        candidate_id=row.get(Rejection.CANDIDATE_ID),
        key=row.get(Rejection.KEY),
        stage=stage,
        reason=str(reason),  # an enum member's plain value: the Parquet column holds strings
        detail=detail,
        image_url=row.get(Rejection.IMAGE_URL),
        alt_text=row.get(Rejection.ALT_TEXT),
        page_url=row.get(Rejection.PAGE_URL),
    )


def evaluate(rules: Sequence[Rule], subject: Any, reasons: type[Reason]) -> list[Failure]:
    """Every failing rule of ``rules`` on ``subject`` as ``(reason, detail)``, in list order (empty: keep it).

    Raises ``UnknownReason`` when a rule answers with anything but a member of ``reasons``.
    """
    failures: list[Failure] = []
    for rule in rules:
        result = rule(subject)
        if result is None:
            continue
        reason, detail = result if isinstance(result, tuple) else (result, None)
        if not isinstance(reason, reasons):
            name = getattr(rule, "__qualname__", repr(rule))
            raise UnknownReason(f"rule {name} answered {reason!r}, not a member of {reasons.__name__}")
        failures.append((reason, detail))
    return failures


class Decisions:
    """Counts and records one stage's keep-or-drop decisions. Build it in a DoFn's ``setup`` (it holds counters)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._counters: dict[str, Any] = {}

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to ``<stage>:<name>``."""
        if name not in self._counters:
            self._counters[name] = counter(self.stage, name)
        self._counters[name].inc(amount)

    def record(self, row: dict[str, Any], failures: Sequence[Failure], reason_weight: int = 1) -> dict[str, Any] | None:
        """Count one decision; the ``rejected/`` row (first failure's reason) when ``failures`` drop ``row``.

        Each failing rule adds ``reason_weight`` to its reason's counter, ``kept``/``dropped`` add 1. filter-text
        passes a pair's duplicate count: its reasons count every candidate, while the duplicates themselves were
        already counted ``dropped`` as ``duplicate_pair``.
        """
        if not failures:
            self.count("kept")
            return None
        return self._drop(row, failures, reason_weight)

    def drop(self, row: dict[str, Any], reason: Reason, detail: str | None = None) -> dict[str, Any]:
        """Count and record a drop decided outside a rule list (a rule over a group of rows)."""
        return self._drop(row, [(reason, detail)], 1)

    def _drop(self, row: dict[str, Any], failures: Sequence[Failure], reason_weight: int) -> dict[str, Any]:
        for reason, _ in failures:
            self.count(reason, reason_weight)
        self.count("dropped")
        reason, detail = failures[0]
        return rejection(row, self.stage, reason, detail)


class ApplyRules(beam.DoFn):
    """Route each row to the main output or, with its first failing rule's reason, to the ``rejected`` output."""

    def __init__(self, stage: str, reasons: type[Reason], rules: Sequence[Rule]) -> None:
        self.stage = stage
        self.reasons = reasons
        self.rules = list(rules)

    def setup(self) -> None:
        self.decisions = Decisions(self.stage)

    def process(self, row: dict[str, Any]):
        rejected = self.decisions.record(row, evaluate(self.rules, row, self.reasons))
        if rejected is None:
            yield row
        else:
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)


def apply_rules(
    rows: beam.PCollection, stage: str, reasons: type[Reason], rules: Sequence[Rule], label: str
) -> tuple[Any, Any]:
    """``(kept, rejected)`` PCollections from applying ``rules`` in order (see ``ApplyRules``)."""
    results = rows | label >> beam.ParDo(ApplyRules(stage, reasons, rules)).with_outputs(REJECTED, main="kept")
    return results.kept, results[REJECTED]
