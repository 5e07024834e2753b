"""The Airflow DAG: it imports cleanly, its graph and per-task settings are as documented, and it builds a corpus
from the bundled sample end to end with ``dag.test()`` and the DirectRunner.

Airflow runs in subprocesses with its own ``AIRFLOW_HOME`` (a sqlite database in a tmp dir): importing Airflow
configures logging and an ORM from the environment at import time, which must not leak into the rest of the suite.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.core.config import PRESETS, CrawlConfig, resolve_config
from pipeline.core.errors import UsageError
from pipeline.core.registry import STAGE_SPECS, STAGES, stage_spec
from pipeline.core.stage import pipeline_options, stage_input_files
from pipeline.corpus import stats
from pipeline.images.eval_index import build_eval_index
from pipeline.sample.builder import generate_sample
from schemas.tables import EvalImageHash

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS = PROJECT_ROOT / "dags"

GRAPH_SCRIPT = """
import json
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder={dags!r})
dag = bag.dags.get("altcorpus")
result = {{"import_errors": {{str(k): str(v) for k, v in bag.import_errors.items()}}, "dags": sorted(bag.dags)}}
if dag is not None:
    result["tasks"] = {{
        task.task_id: {{
            "downstream": sorted(task.downstream_task_ids),
            "operator": type(task).__name__,
            "retries": task.retries,
            "timeout_s": task.execution_timeout.total_seconds() if task.execution_timeout else None,
            "py_options": getattr(task, "py_options", None),
            "py_file": getattr(task, "py_file", None),
            "job_name": getattr(getattr(task, "dataflow_config", None), "job_name", None),
        }}
        for task in dag.tasks
    }}
    result["params"] = sorted(dag.params.keys())
print("RESULT " + json.dumps(result))
"""

PARSE_SCRIPT = """
import importlib.util, json, sys

spec = importlib.util.spec_from_file_location("altcorpus_dag", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
limits = {{name: [retries, timeout.total_seconds()] for name, (retries, timeout) in module.LIMITS.items()}}
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("apache_beam", "pipeline"))
print("RESULT " + json.dumps({{"limits": limits, "loaded": loaded}}))
"""

OPTIONS_SCRIPT = """
import copy, json
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.param import ParamValidationError
from airflow.providers.apache.beam.hooks.beam import beam_options_to_args

dag = DagBag(dag_folder={dags!r}).dags["altcorpus"]
defaults = {{name: param.value for name, param in dag.params.items()}}
results = {{}}
for label, conf in {confs!r}.items():  # one Airflow start for every conf
    params = {{**defaults, **conf}}
    checked = copy.deepcopy(dag.params)
    try:  # as a trigger's conf is checked against the params' schemas
        for name, value in conf.items():
            checked[name] = value
        refused = None
    except ParamValidationError as error:
        refused = str(error)
    args = {{}}
    for task in dag.tasks:
        if hasattr(task, "stage_options"):
            # The provider's own translation of the options into the stage's command line.
            args[task.task_id] = beam_options_to_args(task.stage_options(params, params["runner"]))
    commands = {{
        name: dag.get_task(name).render_template(dag.get_task(name).bash_command, {{"params": params}})
        for name in ("stats", "train")
    }}
    results[label] = {{"defaults": defaults, "args": args, "commands": commands, "refused": refused}}
print("RESULT " + json.dumps(results))
"""

RUN_SCRIPT = """
import json
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(dag_folder={dags!r}).dags["altcorpus"]
run = dag.test(run_conf={conf!r})
states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
print("RESULT " + json.dumps({{"run_state": str(run.state), "states": states}}))
"""


def run_airflow(script: str, home: Path, timeout: int, **env_extra: str) -> dict:
    """Run a Python script under an isolated Airflow home; its ``RESULT {json}`` line, parsed."""
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        ALTCORPUS_PYTHON=sys.executable,
        **env_extra,
    )
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, (
        f"airflow script failed:\n{process.stdout[-6000:]}\n{process.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated sqlite database (what ``dag.test()`` needs in Airflow 3)."""
    home = tmp_path_factory.mktemp("airflow")
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return home


def test_dagbag_imports_and_the_graph_is_the_pipeline(airflow_home: Path) -> None:
    result = run_airflow(GRAPH_SCRIPT.format(dags=str(DAGS)), airflow_home, timeout=300)
    assert result["import_errors"] == {} and result["dags"] == ["altcorpus"]
    tasks = result["tasks"]
    order = [spec.task_id for spec in STAGE_SPECS] + ["stats", "train"]
    assert sorted(tasks) == sorted(order)
    for upstream, downstream in itertools.pairwise(order):
        assert tasks[upstream]["downstream"] == [downstream], upstream
    assert tasks["train"]["downstream"] == []
    for stage in STAGES:
        task = tasks[stage_spec(stage).task_id]
        # The stage runs as `python -m pipeline <stage> --runner=... --output=...`, the CLI contract.
        assert task["operator"] == "CorpusStageOperator"
        assert (task["py_options"], task["py_file"]) == (["-m", "pipeline"], stage)
        assert task["job_name"] == f"altcorpus-{stage}"
    for task in tasks.values():
        assert task["timeout_s"] and task["timeout_s"] > 0
    assert tasks["fetch"]["retries"] >= 2 and tasks["train"]["retries"] == 0
    assert {"input", "output", "preset", "runner", "project", "region", "train"} <= set(result["params"])
    assert {"crawl", "source", "files", "files_from", "segment_range", "cc_base_url"} <= set(result["params"])


def test_registry_import_loads_no_beam() -> None:
    """The CLI's --help, the DAG and the report read the registry: importing it must not pull in Beam."""
    probe = "import json, sys; import pipeline.core.registry; print(json.dumps(sorted(sys.modules)))"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(process.stdout)
    assert "pipeline.core.registry" in loaded and "pyarrow" in loaded  # the probe did import it
    assert not [name for name in loaded if name.split(".")[0] == "apache_beam"]


def test_dag_parses_without_beam_and_limits_every_registered_stage(tmp_path: Path) -> None:
    """Parsing the DAG file is cheap (registry only, no Beam, no stage module), and every registered stage, plus
    stats and train, has its own retries and time limit: a new stage without an entry fails here, not at parse time
    in a scheduler."""
    result = run_airflow(PARSE_SCRIPT.format(path=str(DAGS / "altcorpus_dag.py")), tmp_path, timeout=300)
    assert "pipeline.core.registry" in result["loaded"]
    assert [
        name for name in result["loaded"] if name.startswith(("apache_beam", "pipeline.stages", "pipeline.core.layout"))
    ] == []
    assert set(result["limits"]) == {*STAGES, "stats", "train"}
    for name, (retries, timeout_s) in result["limits"].items():
        assert retries >= 0 and timeout_s > 0, name


#: The documented ``beam_options`` (underscore keys as the provider writes them, a list, a false boolean).
LOCAL_CONF = {
    "input": "crawl/a.warc.gz, gs://bucket/b/*.warc.gz",
    "output": "corpora/one",
    "beam_options": {
        "eval_index": "idx/eval.parquet",
        "languages": ["en", "de"],
        "full_parse": False,
        "respect_robots": False,
        "max_images_per_alt": None,
        "samples_per_shard": 50,
    },
}
#: A crawl by id, every crawl param set (relative local paths among them).
CRAWL_CONF = {
    "crawl": "CC-MAIN-2024-33",
    "source": "wat",
    "files": 2,
    "files_from": "lists/wat.paths.gz",
    "segment_range": "0:3",
    "cc_base_url": "mirror/cc",
    "output": "corpora/cc",
}


@pytest.fixture(scope="module")
def dag_options(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every stage's command line, through the DAG and the provider, for each conf the tests below check."""
    base = tmp_path_factory.mktemp("base")
    (base / "idx").mkdir(parents=True)
    pq.write_table(EvalImageHash.schema().empty_table(), base / "idx" / "eval.parquet")
    confs = {
        "default": {},
        "local": LOCAL_CONF,
        "remote": {"output": "gs://bucket/corpus"},
        "crawl": CRAWL_CONF,
        "crawl_and_input": {"crawl": "CC-MAIN-2024-33", "input": "crawl/a.warc.gz"},
        "files_without_crawl": {"files": 2},
        "no_files": {"crawl": "CC-MAIN-2024-33", "files": 0},
    }
    home = tmp_path_factory.mktemp("home")
    script = OPTIONS_SCRIPT.format(dags=str(DAGS), confs=confs)
    return base, run_airflow(script, home, timeout=300, ALTCORPUS_BASE_DIR=str(base))


def test_dag_options_reach_the_stage_as_its_parser_reads_them(dag_options: tuple[Path, dict[str, Any]]) -> None:
    """The documented ``beam_options``, through the provider's own ``beam_options_to_args``, set altcorpus's config;
    relative paths are resolved once against ALTCORPUS_BASE_DIR for the Beam tasks and for stats alike; the default
    output is not make's build/corpus."""
    base, results = dag_options
    result = results["local"]
    assert result["defaults"]["output"] not in ("build/corpus", str(PROJECT_ROOT / "build/corpus"))
    corpus = str(base / "corpora" / "one")
    for stage in STAGES:
        args = result["args"][stage_spec(stage).task_id]
        assert f"--output={corpus}" in args, args
        assert not [arg for arg in args if arg.startswith("--languages=")][1:], "a list must be one flag"
        config = resolve_config(pipeline_options(["--runner=DirectRunner", *args]))
        assert config.image.eval_index == str(base / "idx" / "eval.parquet")
        assert config.text.languages == ("en", "de") and config.shards.samples_per_shard == 50
        assert config.extract.full_parse is False and config.fetch.respect_robots is False
        # None is not forwarded (the provider skips it): the preset's value stays.
        assert config.text.max_images_per_alt == PRESETS["align"].text.max_images_per_alt
    (extract_input,) = [arg for arg in result["args"][STAGE_SPECS[0].task_id] if arg.startswith("--input=")]
    assert extract_input == f"--input={base / 'crawl/a.warc.gz'},gs://bucket/b/*.warc.gz"
    assert shlex.split(result["commands"]["stats"])[-3:] == [corpus, "--html", f"{corpus}/report.html"]
    remote = results["remote"]
    assert shlex.split(remote["commands"]["stats"])[-2:] == ["stats", "gs://bucket/corpus"]
    assert all("--output=gs://bucket/corpus" in args for args in remote["args"].values())


def test_crawl_params_reach_extract_alone_and_the_default_reads_the_sample(
    dag_options: tuple[Path, dict[str, Any]],
) -> None:
    """``crawl`` and its selection params become extract's crawl flags (and no ``--input``); the other stages and a
    run without ``crawl`` get exactly the command they always had."""
    base, results = dag_options
    extract = STAGE_SPECS[0].task_id
    assert [label for label, result in results.items() if result["refused"]] == ["no_files"]
    assert "Invalid input for param files" in results["no_files"]["refused"]
    default_output = str(base / results["default"]["defaults"]["output"])
    sample = str(PROJECT_ROOT / "build/sample/sample.warc.gz")
    assert results["default"]["defaults"]["input"] == sample
    assert sorted(results["default"]["args"][extract]) == sorted(
        [f"--output={default_output}", "--preset=align", f"--input={sample}"]
    )
    for stage in STAGE_SPECS[1:]:
        assert sorted(results["default"]["args"][stage.task_id]) == [f"--output={default_output}", "--preset=align"]

    args = results["crawl"]["args"][extract]
    assert not [arg for arg in args if arg.startswith("--input")], args
    config = resolve_config(pipeline_options(["--runner=DirectRunner", *args]))
    assert config.crawl == CrawlConfig(
        crawl="CC-MAIN-2024-33",
        source="wat",
        files=2,
        files_from=str(base / "lists/wat.paths.gz"),
        segment_range="0:3",
        cc_base_url=str(base / "mirror/cc"),
    )
    corpus = str(base / "corpora" / "cc")
    for stage in STAGE_SPECS[1:]:
        assert sorted(results["crawl"]["args"][stage.task_id]) == [f"--output={corpus}", "--preset=align"]

    # A crawl and an input of the user's: both are passed, and extract refuses the pair before reading anything.
    args = results["crawl_and_input"]["args"][extract]
    options = pipeline_options(["--runner=DirectRunner", *args])
    with pytest.raises(UsageError, match="--input and --crawl CC-MAIN-2024-33 both name the input"):
        stage_input_files(options, resolve_config(options))
    # A crawl selection without a crawl: passed beside the sample input, and refused with what is missing.
    args = results["files_without_crawl"]["args"][extract]
    assert f"--input={sample}" in args and "--files=2" in args
    with pytest.raises(UsageError, match="--files select files of a crawl: give --crawl"):
        resolve_config(pipeline_options(["--runner=DirectRunner", *args]))


@pytest.mark.slow
def test_dag_builds_the_sample_corpus_end_to_end(airflow_home: Path, tmp_path: Path) -> None:
    """``dag.test()`` with the DirectRunner: every stage succeeds, stats balances, train is skipped (off by default)."""
    sample = tmp_path / "sample"
    generate_sample(str(sample), seed=0)
    build_eval_index([str(sample / "eval")], str(sample / "eval_index.parquet"))
    output = tmp_path / "corpus"
    # The output relative to ALTCORPUS_BASE_DIR, the beam_options as documented (underscore keys).
    conf = {
        "input": str(sample / "sample.warc.gz"),
        "output": "corpus",
        "preset": "align",
        "runner": "DirectRunner",
        "beam_options": {"eval_index": "sample/eval_index.parquet", "samples_per_shard": 50},
    }
    result = run_airflow(
        RUN_SCRIPT.format(dags=str(DAGS), conf=conf), airflow_home, timeout=900, ALTCORPUS_BASE_DIR=str(tmp_path)
    )
    states = result["states"]
    assert {task: states[task] for task in states if task != "train"} == {
        task: "success" for task in [spec.task_id for spec in STAGE_SPECS] + ["stats"]
    }, states
    assert states["train"] == "skipped"
    # The corpus the DAG built is complete and balances; the stats task wrote its report beside it.
    collected = stats.collect(str(output))
    assert collected["stages"]["pending"] == [] and collected["balance"]["balanced"]
    assert collected["funnel"]["kept"] > 0
    # The eval index was applied (the sample's stand-in evaluation images are dropped) and shards hold 50 samples.
    assert json.loads((output / "manifest.json").read_text())["config"]["image"]["eval_index"] == str(
        sample / "eval_index.parquet"
    )
    assert sorted(p.name for p in (output / "shards").glob("*.tar"))
    assert (output / "report.html").read_text(encoding="utf-8").count('class="chart"') >= 5
