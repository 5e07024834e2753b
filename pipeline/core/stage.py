"""Running one stage as its own Beam job: checks first, outputs staged then swapped in, counters, ``_SUCCESS``.

Order matters: options, config, runner, inputs and the upstream stage are all checked before anything is written or
deleted; the job writes beside the old outputs; only its success replaces them (``CorpusLayout.promote``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from pipeline.core.config import CorpusConfig, CorpusOptions, resolve_config
from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout, delete_tree, list_matching, match_pattern, new_run_id
from pipeline.core.local_runner import (
    apply_bounded_bundle_input,
    apply_bounded_worker_data_plane,
    apply_data_plane_fix,
    apply_worker_memory_settings,
)
from pipeline.core.progress import format_summary
from pipeline.core.registry import stage_spec
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
    and ``--direct_running_mode``/``--direct_num_workers`` still apply. That engine's multi-process and multi-thread
    modes lose rows in Beam's own data plane; ``apply_data_plane_fix`` (``pipeline/core/local_runner.py``) makes them
    lossless before any local pipeline runs; ``apply_worker_memory_settings`` starts its workers with allocators that
    give freed memory back, ``apply_bounded_worker_data_plane`` with output buffers flushed every megabyte and data
    queues bounded.
    """
    options = PipelineOptions(list(argv))
    standard = options.view_as(StandardOptions)
    if not standard.runner or standard.runner.lower() in LOCAL_RUNNERS:
        standard.runner = "FnApiRunner"
        apply_data_plane_fix()
        apply_bounded_bundle_input()
        apply_worker_memory_settings()
        apply_bounded_worker_data_plane()
    return options


def runs_locally(options: PipelineOptions) -> bool:
    """Whether the job runs on Beam's local runner, which holds everything that goes through a shuffle in memory."""
    return (options.view_as(StandardOptions).runner or "").lower() in LOCAL_RUNNERS


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


def input_files(text: str | None) -> list[dict[str, Any]]:
    """The files the comma-separated ``--input`` patterns match, with sizes and mtimes; an error names a bad one."""
    patterns = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not patterns:
        raise ValueError("extract needs --input: a WARC/WAT file or glob (several separated by commas)")
    files: dict[str, dict[str, Any]] = {}
    for pattern in patterns:
        matched = match_pattern(pattern)  # a plain path: one metadata call (one HEAD on s3://), not Beam's two
        if not matched:
            raise ValueError(f"--input {pattern!r} matches no file")
        for item in matched:
            files[item.path] = {"path": item.path, "size": item.size_in_bytes, "mtime": item.last_updated_in_seconds}
    return [files[path] for path in sorted(files)]


def stage_input_files(options: PipelineOptions, config: CorpusConfig) -> list[dict[str, Any]]:
    """What the first stage reads: ``--input``'s files with sizes and mtimes, or the URLs of ``--crawl``'s selected
    files (a crawl's files never change, so their names say enough). ``--crawl`` and ``--input`` together are refused.
    """
    text = options.view_as(CorpusOptions).input
    if not config.crawl.crawl:
        return input_files(text)
    if text:
        raise UsageError(f"--input and --crawl {config.crawl.crawl} both name the input: give one of them")
    from pipeline.crawl.listing import crawl_files  # reads the crawl's paths listing

    return [{"path": url, "size": None, "mtime": None} for url in crawl_files(config.crawl)]


def stage_fingerprint(
    stage: str, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions
) -> dict[str, Any]:
    """What a run of ``stage`` would depend on: its input files or upstream runs, and its config sections."""
    spec = stage_spec(stage)
    values = config.to_dict()
    names = tuple(values) if spec.fingerprints_whole_config else spec.config_sections
    settings: dict[str, Any] = {}
    for name in names:
        section, _, field_name = name.partition(".")
        settings[name] = values[section][field_name] if field_name else values[section]
    fingerprint: dict[str, Any] = {
        "config": settings,
        "upstream": {upstream: layout.run_id(upstream) for upstream in spec.inputs},
    }
    if not spec.inputs:  # the first stage reads --input, or --crawl's selected files
        fingerprint["input_files"] = stage_input_files(options, config)
    # In the form _SUCCESS gives back (tuples become lists), so a recorded fingerprint compares equal.
    return json.loads(json.dumps(fingerprint, default=str))


def fingerprint_changes(recorded: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    """Why a done stage must run again, one phrase per difference (empty: nothing changed)."""
    if not recorded:
        return ["its _SUCCESS records no fingerprint (written by an older version)"]
    changes = []
    if recorded.get("input_files") != expected.get("input_files"):
        before, now = recorded.get("input_files") or [], expected.get("input_files") or []
        changes.append(f"its input files changed ({len(before)} before, {len(now)} now, or other sizes/mtimes)")
    for section, value in expected["config"].items():
        if recorded.get("config", {}).get(section) != value:
            changes.append(f"its config section {section!r} changed")
    for upstream, run_id in expected["upstream"].items():
        if recorded.get("upstream", {}).get(upstream) != run_id:
            changes.append(f"upstream {upstream} was re-run since" if run_id else f"upstream {upstream} is not done")
    return changes


def check_upstream(stage: str, layout: CorpusLayout) -> None:
    """Refuse to run a stage whose main upstream left nothing to read (a typo in --output, a skipped stage)."""
    spec = stage_spec(stage)
    if not spec.inputs:
        return
    upstream = stage_spec(spec.inputs[0])
    if layout.is_done(upstream.name) or list_matching(layout.glob(upstream.output)):
        return
    raise ValueError(
        f"{stage} reads {upstream.folder}/ of {layout.root}, which {upstream.name} has not written: "
        f"run `python -m pipeline {upstream.name} --output {layout.root} ...` first"
    )


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether Beam's ``--dry_run`` is set (Beam keeps it as a string: ``--dry_run=False`` must read false)."""
    value = options.view_as(TestOptions).dry_run
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def refuse_dry_run(stage: str, options: PipelineOptions) -> None:
    """Refuse Beam's ``--dry_run`` on one stage: the run would promote empty staged outputs over the real ones.

    ``build-corpus --dry_run=True`` is the dry run (``pipeline.core.dry_run``): every graph built, nothing touched.
    """
    if is_dry_run(options):
        raise UsageError(
            f"{stage}: --dry_run is only for build-corpus (`altcorpus build-corpus ... --dry_run=True` translates every "
            "stage and touches nothing); a single stage would replace its outputs with empty ones"
        )


def run_stage(
    stage: str,
    argv: Sequence[str],
    build: GraphBuilder,
    extra_info: Callable[[CorpusLayout, CorpusConfig, PipelineOptions], dict[str, Any]] | None = None,
    clear_outputs: bool = True,
) -> dict[str, int]:
    """Run one stage end to end and mark it done; returns its counters.

    Everything is checked before anything is touched: the config (every choice), the runner, the inputs
    (``--input`` matches files; the upstream stage wrote its table). The job then writes under a staging folder,
    and only its success replaces the old outputs, so a re-run never mixes files of two runs and a failed one
    leaves the corpus as it was; ``_SUCCESS`` (with the run's id and fingerprint) is written last. A stage that
    resumes from its own complete outputs (write-shards) passes ``clear_outputs=False``: it writes in place and
    removes only what it must.
    """
    options = pipeline_options(argv)
    refuse_dry_run(stage, options)
    config = resolve_config(options)
    corpus = options.view_as(CorpusOptions)
    layout = CorpusLayout(corpus.output)
    pipeline = beam.Pipeline(options=options)  # an unknown --runner fails here
    layout.finish_promotions()  # a run that stopped while swapping its outputs in (its upstream's, or this stage's)
    check_upstream(stage, layout)
    fingerprint = stage_fingerprint(stage, layout, config, options)  # --input must match files
    run_id = new_run_id()
    staged = layout.staged(stage, run_id) if clear_outputs else None
    layout.clean_temporaries(stage)
    log.info("%s: starting (%s, runner %s)", stage, layout.root, options.view_as(StandardOptions).runner)
    started = time.monotonic()
    promoting = False
    try:
        build(pipeline, staged or layout, config, options)
        result = pipeline.run()
        result.wait_until_finish()
        seconds = time.monotonic() - started
        counters = stage_counters(result, stage)
        info: dict[str, Any] = {
            "counters": counters,
            "config": config.to_dict(),
            "seconds": round(seconds, 3),
            "run_id": run_id,
            "fingerprint": fingerprint,
        }
        if extra_info is not None:
            info.update(extra_info(layout, config, options))
        if staged is None:
            layout.mark_done(stage, info)
        else:
            promoting = True  # from here the staged outputs are journaled: a later run finishes what this one starts
            layout.promote(staged, info)
    finally:
        if staged is not None and not promoting:  # a failed or interrupted run leaves nothing behind
            delete_tree(staged.root)
    log.info("%s", format_summary(stage, seconds, counters))
    return counters
