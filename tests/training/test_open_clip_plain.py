"""open_clip trains on altcorpus shards directly: plain ``python -m open_clip_train.main``, no altcorpus code in it.

The run reads a corpus of three shards written by the pipeline's shard writer, so it crosses two shard boundaries:
where webdataset ends a shard with an empty sample (0.2.96 and later), open_clip_train 3.3 stops there with
``KeyError: 'fname'`` (open_clip#935); the train extra pins the webdataset open_clip's own training extra uses. The
model is ALIGN-tiny, handed over the way open_clip reads a config from a folder (``--model local-dir:DIR``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.digits_corpus import DigitsSplit, digits_splits, write_digits_corpus
from training import compat
from training.models import MODEL_CONFIG_DIR

pytestmark = pytest.mark.slow

SAMPLES_PER_SHARD = 16
SHARDS = 3
BATCH_SIZE = 8


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One epoch of plain open_clip_train over a three-shard digits corpus: (the process, its run folder)."""
    root = tmp_path_factory.mktemp("plain")
    train, _ = digits_splits()
    count = SAMPLES_PER_SHARD * SHARDS
    sizes = write_digits_corpus(
        DigitsSplit(train.images[:count], train.labels[:count]),
        root / "corpus",
        size=64,
        samples_per_shard=SAMPLES_PER_SHARD,
        prefix="plain",
    )
    assert list(sizes.values()) == [SAMPLES_PER_SHARD] * SHARDS
    model_dir = root / "ALIGN-tiny"
    model_dir.mkdir()
    config = json.loads((MODEL_CONFIG_DIR / "ALIGN-tiny.json").read_text())
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    command = [
        sys.executable, "-m", "open_clip_train.main",
        "--train-data", str(root / "corpus" / "shards" / f"{{00000..{SHARDS - 1:05d}}}.tar"),
        "--dataset-type", "webdataset",
        "--train-num-samples", str(count),
        "--model", f"local-dir:{model_dir}",
        "--batch-size", str(BATCH_SIZE), "--epochs", "1", "--workers", "1",
        "--device", "cpu", "--precision", "fp32", "--seed", "0",
        "--logs", str(root / "logs"), "--name", "plain", "--log-every-n-steps", "1",
    ]  # fmt: skip
    # open_clip_train's own entry point, started from the run folder: no altcorpus code is imported by it.
    process = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    return process, root / "logs" / "plain"


def test_plain_open_clip_train_reads_every_shard(plain_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    process, run_dir = plain_run
    assert process.returncode == 0, process.stderr[-4000:]
    assert "KeyError" not in process.stderr
    log = (run_dir / "out.log").read_text()
    steps = [line for line in log.splitlines() if "Train Epoch: 0 [" in line]
    total = SAMPLES_PER_SHARD * SHARDS
    assert len(steps) == total // BATCH_SIZE  # every batch of every shard, one log line per step
    assert f"[{total}/{total} (100%)]" in steps[-1]
    assert (run_dir / "checkpoints" / "epoch_1.pt").is_file()


def test_installed_webdataset_is_one_open_clip_train_can_read() -> None:
    compat.check_webdataset()  # raises on webdataset >= 0.2.96, which the run above would crash on
