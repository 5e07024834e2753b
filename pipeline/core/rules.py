"""Keep-or-drop rules as small named functions, and the one Beam helper that applies them.

A rule takes a row (dict) and returns ``None`` to keep it, or a reason string (or ``(reason, detail)``) to drop it.
``ApplyRules`` runs a list of rules in their documented order: the first failing rule is the recorded reason, and
every failing rule is counted (``<stage>:<reason>`` counters plus ``<stage>:failed_any``), so a funnel shows both
what removed a candidate and how often each rule fired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import Rejection

RuleResult = str | tuple[str, str] | None
Rule = Callable[[dict[str, Any]], RuleResult]

REJECTED = "rejected"
COUNTER_NAMESPACE = "altcorpus"


def counter(stage: str, name: str) -> Any:
    """The Beam counter ``altcorpus/<stage>:<name>``: one namespace, so ``_SUCCESS`` files can list them all."""
    return Metrics.counter(COUNTER_NAMESPACE, f"{stage}:{name}")


def rejection(row: dict[str, Any], stage: str, reason: str, detail: str | None = None) -> dict[str, Any]:
    """The ``rejected/`` row recording why ``row`` (a candidate or a wider row) was dropped."""
    return Rejection.row(
        candidate_id=row.get(Rejection.CANDIDATE_ID),
        key=row.get(Rejection.KEY),
        stage=stage,
        reason=reason,
        detail=detail,
        image_url=row.get(Rejection.IMAGE_URL),
        alt_text=row.get(Rejection.ALT_TEXT),
        page_url=row.get(Rejection.PAGE_URL),
    )


def _split(result: RuleResult) -> tuple[str, str | None]:
    if isinstance(result, tuple):
        return result[0], result[1]
    return str(result), None


class ApplyRules(beam.DoFn):
    """Route each row to the main output or, with its first failing rule's reason, to the ``rejected`` output."""

    def __init__(self, stage: str, rules: Sequence[Rule]) -> None:
        self.stage = stage
        self.rules = list(rules)
        self._counters: dict[str, Any] = {}

    def _count(self, name: str) -> None:
        if name not in self._counters:
            self._counters[name] = counter(self.stage, name)
        self._counters[name].inc()

    def process(self, row: dict[str, Any]):
        failures = [result for rule in self.rules if (result := rule(row)) is not None]
        if not failures:
            self._count("kept")
            yield row
            return
        for result in failures:
            self._count(_split(result)[0])
        self._count("dropped")
        reason, detail = _split(failures[0])
        yield beam.pvalue.TaggedOutput(REJECTED, rejection(row, self.stage, reason, detail))


def apply_rules(rows: beam.PCollection, stage: str, rules: Sequence[Rule], label: str) -> tuple[Any, Any]:
    """``(kept, rejected)`` PCollections from applying ``rules`` in order (see ``ApplyRules``)."""
    results = rows | label >> beam.ParDo(ApplyRules(stage, rules)).with_outputs(REJECTED, main="kept")
    return results.kept, results[REJECTED]
