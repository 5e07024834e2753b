"""Checkpoints within a pass over a large corpus: ``checkpoint_every_samples`` chunks, and a killed run resumes.

open_clip_train checkpoints at the end of an epoch of ``--train-num-samples``; the trainer splits a large corpus into
chunks of ``checkpoint_every_samples`` drawn with ``--dataset-resampled`` (open_clip's documented way), converting
the config's passes (``epochs``, ``epochs_cooldown``) into chunks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from open_clip_train.params import parse_args

from tests.fixtures.digits_corpus import DigitsSplit, digits_splits, write_digits_corpus
from training import train
from training.config import DEFAULT_CHECKPOINT_EVERY_SAMPLES, load_config, open_clip_argv
from training.corpus import CorpusShards

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = PROJECT_ROOT / "training" / "configs"


def test_an_align_size_corpus_checkpoints_every_chunk(tmp_path: Path) -> None:
    # 1.8B pairs in 180,000 shards of 10,000 (no files needed to build the arguments).
    huge = CorpusShards(root=tmp_path, sizes={f"{index:06d}.tar": 10_000 for index in range(180_000)})
    config = load_config(CONFIGS / "align-l2.yaml")
    args = parse_args(open_clip_argv(config, huge))
    chunk = config.checkpoint_every_samples or DEFAULT_CHECKPOINT_EVERY_SAMPLES
    assert args.train_num_samples == chunk < huge.num_samples
    assert args.dataset_resampled
    # 12 passes over 1.8B samples, in chunks: the same number of samples, the schedule's cooldown likewise converted.
    assert args.epochs == 12 * huge.num_samples // chunk and args.epochs_cooldown == args.epochs
    # A corpus no larger than a chunk keeps whole-corpus epochs, as before.
    small = CorpusShards(root=tmp_path, sizes={"00000.tar": 1000})
    tiny = parse_args(open_clip_argv(load_config(CONFIGS / "tiny-cpu.yaml"), small))
    assert tiny.train_num_samples == 1000 and tiny.epochs == 4 and not tiny.dataset_resampled
    # Off: whole-corpus epochs even for the huge corpus.
    config.checkpoint_every_samples = 0
    assert parse_args(open_clip_argv(config, huge)).train_num_samples == huge.num_samples


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_resumes_and_continues(tmp_path: Path) -> None:
    train_split, _ = digits_splits()
    write_digits_corpus(DigitsSplit(train_split.images[:16], train_split.labels[:16]), tmp_path / "corpus", 32, 4, "ck")
    argv = ["--corpus", str(tmp_path / "corpus"), "--config", str(CONFIGS / "tiny-cpu.yaml"),
            "--logs", str(tmp_path / "logs"), "--name", "chunks", "--set", "force_image_size=32",
            "--set", "batch_size=4", "--set", "epochs=4", "--set", "warmup=2", "--set", "checkpoint_every_samples=8"]  # fmt: skip
    checkpoints = tmp_path / "logs" / "chunks" / "checkpoints"
    process = subprocess.Popen([sys.executable, "-m", "training.train", *argv], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (checkpoints / "epoch_2.pt").exists():  # epoch_1.pt is complete once the next one is started
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # a crash: no clean shutdown
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    for newer in checkpoints.glob("*.pt"):  # one written as it was killed may be partial; keep the first chunk's
        if newer.name != "epoch_1.pt":
            os.remove(newer)
    assert train.run(argv) == 0  # `resume: latest`
    log = (tmp_path / "logs" / "chunks" / "out.log").read_text()
    after_resume = log[log.index(f"=> resuming checkpoint '{checkpoints / 'epoch_1.pt'}' (epoch 1)") :]
    assert "Start epoch 1" in after_resume and "Start epoch 0" not in after_resume
    # 4 passes over 16 samples in chunks of 8: 8 checkpoints, each half a pass.
    final = torch.load(checkpoints / "epoch_8.pt", map_location="cpu")
    assert final["epoch"] == 8 and not (checkpoints / "epoch_9.pt").exists()
