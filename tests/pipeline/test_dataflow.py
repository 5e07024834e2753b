"""Dataflow readiness without a cloud account: every stage's graph translates into a Dataflow job (``--dry_run``) with
no network access, every DoFn round-trips through Beam's default pickler, and the worker packaging (``setup.py``
sdist, ``Dockerfile``) carries what the workers need."""

from __future__ import annotations

import dataclasses
import importlib
import re
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.stager import Stager
from apache_beam.runners.runner import PipelineState

from pipeline import build
from pipeline.core.config import resolve_config
from pipeline.core.dry_run import scratch_corpus
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGE_SPECS, STAGES, stage_spec
from pipeline.core.stage import is_dry_run
from schemas import ArchivedImage, Candidate, FetchedImage, SampleImage, TextKept
from schemas.tables import EvalImageHash
from tests.conftest import shared_path

# Offline Dataflow translations and an sdist build: ~30 s; make test runs them, make test-fast does not.
pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Our own source files: a lambda in one of them would give a step a label with a line number (unstable).
OWN_FILES = tuple(path.name for path in (PROJECT_ROOT / "pipeline").glob("*.py"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any DNS lookup or connection fails at once and loudly: the dry run must not need the cloud."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(f"network access attempted during a Dataflow dry run: {args[:2]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A corpus whose tables exist but are empty (the dry run's scratch corpus), plus an empty eval index.

    ``ReadTable`` lists a table's files when the graph is built and builds an empty branch when there are none; with
    one file per table every stage builds its full production graph.
    """
    root = tmp_path / "corpus"
    scratch_corpus(str(root))
    for table in (Candidate, ArchivedImage, TextKept, FetchedImage, SampleImage):
        assert list((root / table.FOLDER).glob("*.parquet")), table.FOLDER
    pq.write_table(EvalImageHash.schema().empty_table(), tmp_path / "eval_index.parquet")
    return root


def dataflow_options(corpus: Path, stage: str) -> PipelineOptions:
    """DataflowRunner options as ``make build-corpus RUNNER=DataflowRunner`` gives them, plus ``--dry_run``."""
    return PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=altcorpus-test",
            "--region=europe-west4",
            "--temp_location=gs://altcorpus-test-bucket/tmp",
            "--staging_location=gs://altcorpus-test-bucket/staging",
            f"--job_name=altcorpus-{stage}",
            "--dry_run=True",
            "--input",
            str(shared_path("warc/clipped.warc.gz")),
            "--output",
            str(corpus),
            "--eval-index",
            str(corpus.parent / "eval_index.parquet"),
        ]
    )


def build_stage(stage: str, corpus: Path) -> beam.Pipeline:
    """The stage's graph, built exactly as ``run_stage`` builds it, on a DataflowRunner pipeline."""
    options = dataflow_options(corpus, stage)
    pipeline = beam.Pipeline(options=options)
    importlib.import_module(stage_spec(stage).module).build(
        pipeline, CorpusLayout(str(corpus)), resolve_config(options), options
    )
    return pipeline


class CollectTransforms(beam.pipeline.PipelineVisitor):
    """Every applied transform of a pipeline, composites included."""

    def __init__(self) -> None:
        self.applied: list[beam.pipeline.AppliedPTransform] = []

    def enter_composite_transform(self, node: beam.pipeline.AppliedPTransform) -> None:
        self.applied.append(node)

    def visit_transform(self, node: beam.pipeline.AppliedPTransform) -> None:
        self.applied.append(node)


def transforms_of(pipeline: beam.Pipeline) -> list[beam.pipeline.AppliedPTransform]:
    visitor = CollectTransforms()
    pipeline.visit(visitor)
    return visitor.applied


@pytest.mark.parametrize("stage", STAGES)
def test_stage_translates_to_a_dataflow_job_offline(stage: str, corpus: Path, no_network: None) -> None:
    pipeline = build_stage(stage, corpus)
    labels = [node.full_label for node in transforms_of(pipeline)]
    # Every table was found, so no step fell back to the empty branch: this is the production graph.
    assert not [label for label in labels if label.endswith("/NoFiles")], labels
    # Step names are stable: none derives from a lambda's line number in our code.
    unstable = [
        label for label in labels if re.search(r"<lambda at (" + "|".join(map(re.escape, OWN_FILES)) + ")", label)
    ]
    assert not unstable, unstable
    result = pipeline.run()
    assert result.state == PipelineState.DONE
    job = result.job.proto
    assert job.name == f"altcorpus-{stage}"
    assert int(job.type_) == 1  # JOB_TYPE_BATCH: every stage is a bounded batch job
    # The translated portable pipeline holds the stage's own composites (its readable top-level labels).
    translated = {t.unique_name for t in pipeline.runner.proto_pipeline.components.transforms.values()}
    top_level = {
        node.full_label for node in transforms_of(pipeline) if node.full_label.count("/") == 0 and node.full_label
    }
    assert top_level and top_level <= translated


def test_build_corpus_dry_run_translates_every_stage_offline(
    tmp_path: Path, no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make build-corpus RUNNER=DataflowRunner ... DRY_RUN=1``'s command: every stage translated for Dataflow with
    no network, one line per stage with its step count, exit 0, and the (remote) output never touched."""
    pq.write_table(EvalImageHash.schema().empty_table(), tmp_path / "eval_index.parquet")
    argv = [
        "--runner=DataflowRunner",
        "--project=altcorpus-test",
        "--region=europe-west4",
        "--temp_location=gs://altcorpus-test-bucket/tmp",
        "--staging_location=gs://altcorpus-test-bucket/staging",
        "--dry_run=True",
        "--input",
        "gs://altcorpus-test-bucket/crawl/*.warc.gz",
        "--output",
        "gs://altcorpus-test-bucket/corpus",
        "--eval-index",
        str(tmp_path / "eval_index.parquet"),
    ]
    assert build.run(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {}
    for line in lines:
        match = re.fullmatch(r"(\S+): (\d+) steps \(translated into a Dataflow job, not submitted\)", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    assert list(counts) == list(STAGES), lines
    assert all(count > 3 for count in counts.values()), counts


def test_dry_run_false_is_not_a_dry_run() -> None:
    assert is_dry_run(PipelineOptions(["--dry_run=True"])) and not is_dry_run(PipelineOptions(["--dry_run=False"]))
    assert not is_dry_run(PipelineOptions([]))


def test_make_passes_dry_run_through() -> None:
    """``DRY_RUN=1`` reaches build-corpus as Beam's ``--dry_run=True`` (make -n prints the command, runs nothing)."""
    make = ["make", "-n", "build-corpus", "RUNNER=DataflowRunner", "PROJECT=p", "REGION=r", "BUCKET=b"]
    with_input = [*make, "INPUT=gs://b/crawl/*.warc.gz", "OUTPUT=gs://b/corpus"]
    printed = subprocess.run([*with_input, "DRY_RUN=1"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    (command,) = [line for line in printed.stdout.splitlines() if "pipeline build-corpus" in line]
    assert "--dry_run=True" in command and "--runner=DataflowRunner" in command
    printed = subprocess.run(with_input, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert "--dry_run" not in printed.stdout


def _configuration(fn: Any) -> dict[str, Any]:
    """The configuration a DoFn carries: its dataclass attributes (the stage configs) and plain values."""
    return {
        name: value
        for name, value in vars(fn).items()
        if dataclasses.is_dataclass(value) or isinstance(value, (str, int, float, bool, tuple))
    }


@pytest.mark.parametrize("stage", STAGES)
def test_every_dofn_and_its_configuration_pickles(stage: str, corpus: Path) -> None:
    """Beam's default pickler (what DataflowRunner and multi-process runners use) round-trips every DoFn/CombineFn."""
    pipeline = build_stage(stage, corpus)
    functions = []
    for node in transforms_of(pipeline):
        transform = node.transform
        if isinstance(transform, beam.ParDo) or (
            isinstance(transform, (beam.CombinePerKey, beam.CombineGlobally)) and hasattr(transform, "fn")
        ):
            functions.append((node.full_label, transform.fn))
    own = [(label, fn) for label, fn in functions if type(fn).__module__.startswith("pipeline.")]
    assert own, f"{stage}: no DoFn of ours found in the graph"
    for label, fn in functions:
        payload = pickler.dumps(fn)
        restored = pickler.loads(payload)
        assert type(restored) is type(fn), label
        assert _configuration(restored) == _configuration(fn), label
        if type(fn).__module__.startswith("pipeline."):
            # Heavy resources (models, sessions, indexes) belong in setup(), not in the pickled DoFn.
            assert len(payload) < 1_000_000, f"{label}: {type(fn).__name__} pickles to {len(payload):,} bytes"


def test_setup_file_builds_the_sdist_workers_install(tmp_path: Path) -> None:
    """``--setup_file=setup.py`` as Beam's stager runs it: the sdist holds every package and the SQL files.

    ``make`` writes under ``build/`` at the repository root, where the stager runs ``python -m build``; the ``build``
    package (a dependency, so the installed frontend wins over that folder) builds the sdist, which must leave the
    folder out.
    """
    (PROJECT_ROOT / "build").mkdir(exist_ok=True)  # as after `make build-corpus` (git-ignored)
    sdist = Stager._build_setup_package(str(PROJECT_ROOT / "setup.py"), str(tmp_path))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        pkg_info = archive.extractfile(next(m for m in archive.getmembers() if m.name.endswith("/PKG-INFO")))
        metadata = pkg_info.read().decode()
    assert "Name: altcorpus" in metadata
    # Dataflow workers need Beam's gcp extra (the aws one reads s3://commoncrawl/).
    assert re.search(r"^Requires-Dist: apache-beam\[[a-z,]*\bgcp\b", metadata, flags=re.MULTILINE), metadata
    for spec in STAGE_SPECS:
        assert spec.module.replace(".", "/") + ".py" in names
    assert {
        "schemas/tables.py",
        "pipeline/corpus/stats.py",
        "pipeline/corpus/sql/funnel.sql",
        "pipeline/corpus/sql/tables.sql",
    } <= names
    # Nothing local and bulky is staged (setuptools adds tests/test*.py to an sdist by default; they are not installed).
    assert not [name for name in names if name.startswith(("build/", ".venv/", "bench/"))]
    # The extract stage's C tag scanner travels as source, never as this machine's binary...
    assert "pipeline/html/_tagscan.c" in names and not [name for name in names if name.endswith(".so")]
    # ... and a worker installing the sdist compiles it (as pip does there; no index needed with --no-deps).
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), sdist],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("altcorpus-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert [name for name in archive.namelist() if name.startswith("pipeline/html/_tagscan.") and ".so" in name]


def test_python_m_build_is_the_build_frontend_beside_make_s_build_folder() -> None:
    """The stager's ``python -m build`` in the checkout must reach the installed frontend, not the ``build/`` folder."""
    (PROJECT_ROOT / "build").mkdir(exist_ok=True)
    ran = subprocess.run(
        [sys.executable, "-m", "build", "--version"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "build" in ran.stdout


def test_dockerfile_matches_the_launcher_sdk() -> None:
    """Dataflow needs the worker image's Beam and Python to match the launcher's; the Dockerfile pins both."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/beam_python(\d+)\.(\d+)_sdk:(\S+)$", dockerfile, flags=re.MULTILINE)
    assert base is not None, "Dockerfile must build FROM apache/beam_pythonX.Y_sdk:VERSION"
    assert (int(base.group(1)), int(base.group(2))) == sys.version_info[:2]
    assert base.group(3) == beam.__version__
    # It installs the project (compiling the C tag scanner) and fails to build where the scanner did not compile.
    assert re.search(r"pip install --no-cache-dir \.\s", dockerfile)
    assert 'python -c "import pipeline.html._tagscan' in dockerfile


def test_dockerfile_gives_dataflow_workers_the_local_workers_allocator_settings() -> None:
    """Beam's SDK harness has no hook for a worker's environment short of its container: the image sets the same
    variables the local runner gives its worker processes (``WORKER_MEMORY_ENV``)."""
    from pipeline.core.local_runner import WORKER_MEMORY_ENV

    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    lines = re.findall(r"^ENV (.+)$", dockerfile, flags=re.MULTILINE)
    assigned = dict(pair.split("=", 1) for line in lines for pair in line.split())
    assert {name: assigned.get(name) for name in WORKER_MEMORY_ENV} == WORKER_MEMORY_ENV
