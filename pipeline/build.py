"""``build-corpus``: every stage in order on one corpus directory, then the funnel with its balance check.

A stage whose ``_SUCCESS`` exists is skipped (resume after a crash), unless ``--force`` is given; each stage is its
own Beam job, so the same flags (runner included) apply to all of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from pipeline.core.config import CorpusOptions
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGE_SPECS
from pipeline.core.stage import pipeline_options

log = logging.getLogger("altcorpus")


def run(argv: Sequence[str]) -> int:
    """Run the stages not yet done, then print the funnel; non-zero exit when the books do not balance."""
    options = pipeline_options(argv).view_as(CorpusOptions)
    if not options.input:
        raise SystemExit("build-corpus needs --input (a WARC file or glob)")
    layout = CorpusLayout(options.output)
    force = bool(options.force)
    for spec in STAGE_SPECS:
        stage = spec.name
        if layout.is_done(stage) and not force:
            log.info("%s: already done (%s exists); skipping (use --force to redo)", stage, layout.success_path(stage))
            continue
        importlib.import_module(spec.module).run(list(argv))
        # Every later stage depends on this one: redo them too.
        force = True
    from pipeline.corpus import stats

    return stats.main([layout.root])
