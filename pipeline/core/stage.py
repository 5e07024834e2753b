"""Running one stage as its own Beam job: options, clearing old outputs, counters, and the ``_SUCCESS`` marker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.core.config import CorpusConfig, CorpusOptions, resolve_config
from pipeline.core.layout import CorpusLayout
from pipeline.core.rules import COUNTER_NAMESPACE

log = logging.getLogger("altcorpus")

#: Builds a stage's graph on a pipeline: ``build(pipeline, layout, config, options)``.
GraphBuilder = Callable[[beam.Pipeline, CorpusLayout, CorpusConfig, PipelineOptions], None]


#: Runner names that mean "run locally": Beam's DirectRunner family.
LOCAL_RUNNERS = {"directrunner", "direct", "fnapirunner"}


def pipeline_options(argv: Sequence[str]) -> PipelineOptions:
    """Beam options from command-line flags; the local direct runner unless ``--runner`` names another.

    Beam 2.77's DirectRunner first tries to download the Prism binary from the internet and falls back to its
    FnApiRunner engine for batch pipelines. We go to that engine directly: no download attempt, same semantics,
    and ``--direct_running_mode``/``--direct_num_workers`` still apply.
    """
    options = PipelineOptions(list(argv))
    standard = options.view_as(StandardOptions)
    if not standard.runner or standard.runner.lower() in LOCAL_RUNNERS:
        standard.runner = "FnApiRunner"
    return options


def stage_counters(result: beam.runners.runner.PipelineResult, stage: str) -> dict[str, int]:
    """This stage's counters (``altcorpus/<stage>:<name>``), summed over steps, keyed by ``<name>``."""
    totals: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))
    for item in query["counters"]:
        name = item.key.metric.name
        if not name.startswith(f"{stage}:"):
            continue
        value = item.committed if item.committed is not None else item.attempted
        totals[name.split(":", 1)[1]] = totals.get(name.split(":", 1)[1], 0) + int(value or 0)
    return dict(sorted(totals.items()))


def run_stage(
    stage: str,
    argv: Sequence[str],
    build: GraphBuilder,
    extra_info: Callable[[CorpusLayout, CorpusConfig, PipelineOptions], dict[str, Any]] | None = None,
    clear_outputs: bool = True,
) -> dict[str, int]:
    """Run one stage end to end and mark it done; returns its counters.

    Old outputs of the stage are removed first, so a re-run (after a crash or with new settings) never mixes
    files of two runs; ``_SUCCESS`` is written only after the Beam job finished. A stage that resumes from its
    own complete outputs (write-shards) passes ``clear_outputs=False`` and removes only what it must.
    """
    options = pipeline_options(argv)
    config = resolve_config(options)
    corpus = options.view_as(CorpusOptions)
    layout = CorpusLayout(corpus.output)
    if clear_outputs:
        layout.clear_stage(stage)
    log.info("%s: starting (%s, runner %s)", stage, layout.root, options.view_as(StandardOptions).runner)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build(pipeline, layout, config, options)
    result = pipeline.run()
    result.wait_until_finish()
    seconds = time.monotonic() - started
    counters = stage_counters(result, stage)
    info: dict[str, Any] = {"counters": counters, "config": config.to_dict(), "seconds": round(seconds, 3)}
    if extra_info is not None:
        info.update(extra_info(layout, config, options))
    layout.mark_done(stage, info)
    summary = ", ".join(f"{name}={value}" for name, value in counters.items())
    log.info("%s: done in %.1f s: %s", stage, seconds, summary or "no counters")
    return counters
