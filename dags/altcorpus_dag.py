"""Airflow 3 DAG ``altcorpus``: extract -> filter-text -> fetch -> filter-image -> write-shards -> stats (-> train).

Each Beam stage is a ``BeamRunPythonPipelineOperator`` running ``python -m pipeline <stage> --output ... --preset ...``
(the same command as ``make build-corpus`` runs, stage by stage), so one DAG runs locally with the DirectRunner or on
Google Cloud Dataflow (``runner=DataflowRunner`` plus ``project``, ``region`` and ``temp_location``; the operator's
``DataflowConfiguration`` then names the job and waits for it). ``stats`` prints the funnel and fails the run when the
books do not balance; ``train`` is off unless the ``train`` param is true.

Trigger with a config, e.g.::

    airflow dags trigger altcorpus --conf '{"input": "crawl/*.warc.gz", "output": "build/my-corpus",
        "beam_options": {"eval_index": "build/sample/eval_index.parquet", "languages": ["en", "de"]}}'
    airflow dags trigger altcorpus --conf '{"input": "gs://b/crawl/*.warc.gz", "output": "gs://b/corpus",
        "runner": "DataflowRunner", "project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp"}'
    airflow dags trigger altcorpus --conf '{"crawl": "CC-MAIN-2024-33", "files": 8, "output": "build/cc-corpus"}'

A Common Crawl crawl by id (``crawl``, with ``source``, ``files``, ``files_from``, ``segment_range``,
``cc_base_url``: extract's flags of the same names, ``pipeline.crawl``) replaces ``input``: extract then gets the crawl
flags that are set and no ``--input``, unless ``input`` was changed from its default too, which extract refuses.

Local paths (``input``, ``output``, ``files_from``, ``cc_base_url``, ``eval_index``, ``language_model``,
``train_config``) are made absolute once, against ``ALTCORPUS_BASE_DIR`` (default: the checkout holding this file), so
the Beam tasks (run in the Airflow worker's working directory) and ``stats`` (run in the checkout) read the same
corpus; URLs (``gs://...``) pass as they are. ``beam_options`` keys are altcorpus or Beam flags in either spelling (``eval_index`` or ``eval-index``);
lists become one comma-separated value and booleans ``true``/``false`` (the provider would repeat a list's flag and
drop a false one). Deployment: ``dags/README.md``.

A stage stages its new outputs and swaps them in only on success, so a retry re-runs it from scratch without mixing
files.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, chain

#: The repository root: the default sample input and the training configs are found from it.
REPO_ROOT = Path(__file__).resolve().parents[1]

# The stages come from the registry. Where Airflow's Python lacks altcorpus (ALTCORPUS_PYTHON names another one),
# the checkout beside this file provides it. The registry is Beam-free (schemas, i.e. pyarrow, which the Beam
# provider already needs), so parsing this file stays cheap: tests/dags/test_dags.py holds it to that.
if importlib.util.find_spec("pipeline") is None:
    sys.path.append(str(REPO_ROOT))
from pipeline.core.registry import STAGE_SPECS, stage_spec  # noqa: E402

#: Relative local paths in the params resolve against this folder, once, for every task.
BASE_DIR = Path(os.environ.get("ALTCORPUS_BASE_DIR") or REPO_ROOT).resolve()

#: The DAG's own default corpus: ``make build-corpus`` owns build/corpus, and a DAG run must not replace it.
DEFAULT_OUTPUT = "build/dag-corpus"

#: Option names (either spelling) whose values are local paths to resolve against BASE_DIR.
PATH_OPTIONS = frozenset({"input", "output", "eval_index", "language_model", "setup_file", "files_from", "cc_base_url"})

#: The default ``input``: the bundled sample. A run that sets ``crawl`` reads the crawl instead.
DEFAULT_INPUT = str(REPO_ROOT / "build/sample/sample.warc.gz")

#: Params naming a Common Crawl crawl for extract (``pipeline.core.config.CrawlConfig``), each passed as the flag of
#: its name only when set; the rest of the crawl section (retries, back-off) goes through ``beam_options``.
CRAWL_OPTIONS = ("crawl", "source", "files", "files_from", "segment_range", "cc_base_url")

#: The Python that runs the stages: one with altcorpus installed (the Airflow worker's own by default).
PYTHON = os.environ.get("ALTCORPUS_PYTHON", sys.executable)

#: Per-task retries and time limits, keyed by stage name (plus ``stats`` and ``train``): fetch talks to the web and is
#: the longest; the others are CPU-bound passes. A test requires an entry for every registered stage.
LIMITS: dict[str, tuple[int, dt.timedelta]] = {
    "extract": (2, dt.timedelta(hours=6)),
    "filter-text": (2, dt.timedelta(hours=4)),
    "fetch": (3, dt.timedelta(hours=12)),
    "filter-image": (2, dt.timedelta(hours=4)),
    "write-shards": (2, dt.timedelta(hours=4)),
    "stats": (1, dt.timedelta(minutes=30)),
    "train": (0, dt.timedelta(hours=48)),
}

#: Options only a Dataflow job needs; left out of local runs so the DirectRunner sees no empty flags.
DATAFLOW_ONLY_OPTIONS = ("temp_location", "staging_location", "setup_file", "sdk_container_image")


def absolute(value: str) -> str:
    """``value`` as an absolute local path against BASE_DIR; URLs and empty values unchanged; each comma-separated
    pattern of an ``--input`` list on its own."""
    parts = [part.strip() for part in str(value).split(",")]
    return ",".join(part if not part or "://" in part else str(BASE_DIR / os.path.expanduser(part)) for part in parts)


def flag_value(name: str, value: Any) -> Any:
    """A param as the one ``--name=value`` the stage's parser reads: lists comma-joined, booleans spelled out (the
    provider repeats a list's flag, of which argparse keeps the last, and drops a false boolean), paths absolute."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(item) for item in value)
    if name.replace("-", "_") in PATH_OPTIONS and isinstance(value, str):
        value = absolute(value)
    return value


def first_stage_input(params: dict[str, Any]) -> dict[str, Any]:
    """What extract reads: ``input``, or with ``crawl`` set the crawl params that are set and no ``input`` (unless it
    was changed from the default as well: both are passed, and extract refuses the pair with its own message)."""
    crawl = {name: params.get(name) for name in CRAWL_OPTIONS if params.get(name) not in ("", None)}
    if crawl.get("crawl") and params.get("input") in ("", None, DEFAULT_INPUT):
        return crawl
    return {"input": params.get("input"), **crawl}  # crawl flags without --crawl: extract names what is missing


class CorpusStageOperator(BeamRunPythonPipelineOperator):
    """One altcorpus stage as a Beam job: params become pipeline options; Dataflow settings only for Dataflow.

    The provider runs ``[py_interpreter, *py_options, py_file, --runner=..., --key=value ...]``; with
    ``py_options=["-m", "pipeline"]`` and ``py_file=<stage>`` that is exactly the stage's command line.
    """

    def __init__(self, *, stage: str, **kwargs: Any) -> None:
        spec = stage_spec(stage)
        options = {"output": "{{ params.output }}", "preset": "{{ params.preset }}"}
        if spec == STAGE_SPECS[0]:  # the first stage reads the crawl; the others read the corpus
            options["input"] = "{{ params.input }}"
        retries, timeout = LIMITS[stage]
        super().__init__(
            task_id=spec.task_id,
            py_file=stage,
            py_options=["-m", "pipeline"],
            py_interpreter=PYTHON,
            runner="{{ params.runner }}",
            pipeline_options=options,
            dataflow_config=DataflowConfiguration(
                job_name=f"altcorpus-{stage}", location="{{ params.region }}", wait_until_finished=True
            ),
            retries=retries,
            retry_delay=dt.timedelta(minutes=2),
            retry_exponential_backoff=True,
            execution_timeout=timeout,
            **kwargs,
        )
        self.stage = stage

    def stage_options(self, params: dict[str, Any], runner: str) -> dict[str, Any]:
        """The pipeline options of this stage for a run's params: its own, the Dataflow ones (for Dataflow only),
        then ``beam_options``; empty ones dropped, each value as the stage's parser reads it (``flag_value``)."""
        options: dict[str, Any] = {"output": params["output"], "preset": params["preset"]}
        if self.stage == STAGE_SPECS[0].name:
            options.update(first_stage_input(params))
        if runner.lower() == "dataflowrunner":
            options.update({name: params.get(name) for name in DATAFLOW_ONLY_OPTIONS})
        options.update(params.get("beam_options") or {})
        return {name: flag_value(name, value) for name, value in options.items() if value not in ("", None)}

    def execute(self, context: Any) -> Any:
        """Set the run's pipeline options (and the Dataflow project), then run the Beam job."""
        params = context["params"]
        self.pipeline_options = self.stage_options(params, str(self.runner))
        if str(self.runner).lower() == "dataflowrunner":
            self.dataflow_config.project_id = params.get("project") or None
        return super().execute(context)


with DAG(
    dag_id="altcorpus",
    description="WARC files -> ALIGN-filtered image/alt-text WebDataset shards, then stats (and optionally training)",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["altcorpus", "beam"],
    params={
        "input": Param(DEFAULT_INPUT, type="string", description="WARC glob(s); not read when crawl is set"),
        "crawl": Param("", type="string", description="Common Crawl id (CC-MAIN-YYYY-WW) read instead of input"),
        "source": Param(
            None, type=["null", "string"], enum=[None, "warc", "wat"], description="Crawl files: warc (default) or wat"
        ),
        "files": Param(None, type=["null", "integer"], minimum=1, description="Read only the crawl's first N files"),
        "files_from": Param(
            "", type="string", description="A paths listing (.gz or plain) read instead of the crawl's own"
        ),
        "segment_range": Param("", type="string", description="START:END of the crawl's segments (e.g. 0:3)"),
        "cc_base_url": Param(
            "", type="string", description="Where crawl-data/ lives (default https://data.commoncrawl.org/)"
        ),
        "output": Param(DEFAULT_OUTPUT, type="string", description="Corpus directory (relative: to BASE_DIR)"),
        "preset": Param("align", enum=["align", "datacomp-basic", "none"], description="Filter preset"),
        "runner": Param("DirectRunner", type="string", description="Beam runner: DirectRunner, DataflowRunner, ..."),
        "project": Param("", type="string", description="GCP project (DataflowRunner)"),
        "region": Param("", type="string", description="GCP region (DataflowRunner)"),
        "temp_location": Param("", type="string", description="gs:// temp folder (DataflowRunner)"),
        "setup_file": Param(str(REPO_ROOT / "setup.py"), type="string", description="Worker packaging (Dataflow)"),
        "sdk_container_image": Param("", type="string", description="Custom worker image, see Dockerfile"),
        "beam_options": Param(
            {}, type="object", description="Extra Beam/altcorpus flags, e.g. {'eval_index': ..., 'languages': ['en']}"
        ),
        "train": Param(False, type="boolean", description="Train open_clip on the shards after stats"),
        "train_config": Param(
            str(REPO_ROOT / "training/configs/tiny-cpu.yaml"), type="string", description="Trainer config"
        ),
    },
    doc_md=__doc__,
    user_defined_macros={"absolute": absolute},
    user_defined_filters={"shell_quote": shlex.quote},
) as dag:
    stage_tasks = [CorpusStageOperator(stage=spec.name) for spec in STAGE_SPECS]

    retries, timeout = LIMITS["stats"]
    stats = BashOperator(
        task_id="stats",
        # Exit 1 (books do not balance) fails the run; the report lands beside the corpus.
        bash_command=(
            f"{PYTHON} -m pipeline stats {{{{ absolute(params.output) | shell_quote }}}}"
            # The report is a local file: beside a local corpus; none for a gs:// one (the funnel is in the log).
            "{% if '://' not in params.output %}"
            f" --html {{{{ (absolute(params.output) ~ '/report.html') | shell_quote }}}}"
            "{% endif %}"
        ),
        cwd=str(REPO_ROOT),
        retries=retries,
        execution_timeout=timeout,
    )

    retries, timeout = LIMITS["train"]
    train = BashOperator(
        task_id="train",
        # Exit code 99 marks the task skipped (BashOperator's skip_on_exit_code): training is opt-in.
        bash_command=(
            "{% if params.train %}"
            f"{PYTHON} -m training.train --corpus {{{{ absolute(params.output) | shell_quote }}}}"
            f" --config {{{{ absolute(params.train_config) | shell_quote }}}}"
            "{% else %}echo 'train param is false: skipping'; exit 99{% endif %}"
        ),
        cwd=str(REPO_ROOT),
        retries=retries,
        execution_timeout=timeout,
    )

    chain(*stage_tasks, stats, train)
