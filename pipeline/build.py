"""``build-corpus``: every stage in order on one corpus directory, then the funnel with its balance check.

A stage is skipped (resume after a crash, or a re-run with nothing changed) only when its ``_SUCCESS`` exists and
records the same fingerprint a new run would: the same input files (extract), the same upstream runs, the same
config sections. Anything else reruns it, with one line saying what changed; ``--force`` redoes every stage. Each
stage is its own Beam job, so the same flags (runner included) apply to all of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from pipeline.core.config import CorpusOptions, resolve_config
from pipeline.core.dry_run import dry_run
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import ALL_STAGE_SPECS
from pipeline.core.stage import (
    fingerprint_changes,
    is_dry_run,
    pipeline_options,
    stage_fingerprint,
    stage_input_files,
)

log = logging.getLogger("altcorpus")


def run(argv: Sequence[str]) -> int:
    """Run the stages not done with these inputs and settings, then print the funnel; non-zero when unbalanced."""
    options = pipeline_options(argv)
    corpus = options.view_as(CorpusOptions)
    crawl = "--crawl" in argv or any(str(arg).startswith("--crawl=") for arg in argv)
    if not corpus.input and not crawl:
        raise SystemExit("build-corpus needs --input (a WARC file or glob) or --crawl (a Common Crawl id)")
    if is_dry_run(options):  # every graph built (and translated for Dataflow); nothing read, written or marked done
        return dry_run(argv)
    # Every mistake in the flags is refused here, before any stage runs (and each stage checks again).
    config = resolve_config(options)
    stage_input_files(options, config)  # --input matches files, or --crawl's listing is read and selects some
    layout = CorpusLayout(corpus.output)
    layout.finish_promotions()  # a stage that stopped while swapping its outputs in is done once they are all in
    force = bool(corpus.force)
    for spec in ALL_STAGE_SPECS:
        stage = spec.name
        if not spec.is_enabled(config.to_dict()):  # an optional stage (caption) its setting leaves off
            log.info("%s: off (set --%s to run it)", stage, spec.enabled_by.partition(".")[2].replace("_", "-"))
            continue
        if layout.is_done(stage) and not force:
            recorded = layout.read_success(stage).get("fingerprint")
            changes = fingerprint_changes(recorded, stage_fingerprint(stage, layout, config, options))
            if not changes:
                log.info("%s: already done (%s); skipping (use --force to redo)", stage, layout.success_path(stage))
                continue
            log.info("%s: rerunning: %s", stage, "; ".join(changes))
        importlib.import_module(spec.module).run(list(argv))
    from pipeline.corpus import stats

    return stats.main([layout.root])
