"""``build-corpus --dry_run=True`` (``make build-corpus ... DRY_RUN=1``): every stage's graph built, nothing run.

With ``--runner=DataflowRunner`` each graph is also translated into a Dataflow job the way a real submission does it
(options validated, coders and DoFns pickled, ``--setup_file``'s sdist built) and stopped before the job is sent:
Beam's own ``--dry_run`` of the DataflowRunner, which needs no credentials and no network. The graphs are built
against a scratch corpus holding an empty, schema-only file of every table (stages list their input tables when
their graph is built, and a missing table would give a smaller, empty branch), so the step counts are those of the
production graphs; ``--output`` is never read nor written, and no stage is marked done. Remote ``--input`` patterns
(``gs://...``) cannot be listed without credentials: extract's graph is then built on a local stand-in file, and the
run says so (a local ``--input`` is checked as a real run checks it).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.core.config import CorpusOptions, resolve_config
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGE_SPECS
from pipeline.core.stage import pipeline_options


def scratch_corpus(root: str) -> CorpusLayout:
    """A corpus under ``root`` with one empty Parquet file (the table's schema) per table any stage writes."""
    layout = CorpusLayout(root)
    for spec in STAGE_SPECS:
        for table in (spec.output, *spec.extra_outputs):
            folder = layout.folder(table)
            beam.io.filesystems.FileSystems.mkdirs(folder)
            pq.write_table(table.schema().empty_table(), f"{folder}/part-00000-of-00001.parquet")
    return layout


def leaf_steps(pipeline: beam.Pipeline) -> int:
    """The primitive steps of a pipeline (composites excluded): from the runner's translation when it made one."""
    proto = getattr(pipeline.runner, "proto_pipeline", None) or pipeline.to_runner_api()
    return sum(1 for transform in proto.components.transforms.values() if not transform.subtransforms)


def dry_run(argv: Sequence[str]) -> int:
    """Build (and for Dataflow translate) every stage's graph; print one line per stage; 0 when all built."""
    options = pipeline_options(argv)
    config = resolve_config(options)
    runner = str(options.view_as(StandardOptions).runner)
    dataflow = runner.lower() in ("dataflowrunner", "dataflow")
    patterns = [part.strip() for part in str(options.view_as(CorpusOptions).input).split(",") if part.strip()]
    remote = [pattern for pattern in patterns if "://" in pattern]
    with tempfile.TemporaryDirectory(prefix="altcorpus-dry-run-") as scratch:
        layout = scratch_corpus(scratch)
        stand_in = f"{scratch}/input/stand-in.warc.gz"
        if remote:
            beam.io.filesystems.FileSystems.mkdirs(f"{scratch}/input")
            open(stand_in, "wb").close()
            print(f"--input {', '.join(remote)}: not listed offline; extract's graph is built on a local stand-in")
        for spec in STAGE_SPECS:
            stage_options = pipeline_options(argv)  # a fresh set per job: the runner adds to the options it runs
            if remote:
                stage_options.view_as(CorpusOptions).input = stand_in
            pipeline = beam.Pipeline(options=stage_options)
            importlib.import_module(spec.module).build(pipeline, layout, config, stage_options)
            if dataflow:
                pipeline.run().wait_until_finish()  # --dry_run: translated, staged locally, not submitted
                what = "translated into a Dataflow job, not submitted"
            else:
                what = f"graph built for {runner}, not run"
            print(f"{spec.name}: {leaf_steps(pipeline)} steps ({what})")
    print(f"dry run: {len(STAGE_SPECS)} stages built; nothing was read from or written to the corpus")
    return 0
