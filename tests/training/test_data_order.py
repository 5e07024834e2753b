"""Data order follows the config's seed: two fresh runs see the same batches, and so does a run resumed at an epoch.

webdataset's sample shuffle seeds itself from the process id and the clock unless given a generator; the trainer's
shim (``training.compat.install_seeded_data_order``) seeds it from (seed, epoch, rank, loader worker) instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip_train import data as open_clip_data

from tests.fixtures.digits_corpus import DigitsSplit, digits_splits, write_digits_corpus
from training import compat
from training.corpus import read_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real digits in 6 shards of 10."""
    root = tmp_path_factory.mktemp("order") / "corpus"
    train_split, _ = digits_splits()
    write_digits_corpus(DigitsSplit(train_split.images[:60], train_split.labels[:60]), root, 32, 10, "order")
    return root


def _first_batches(corpus: Path, epoch: int, seed: int = 0, resampled: bool = False, batches: int = 3) -> list:
    """Token ids of the first batches open_clip_train's training loader yields (images get random crops)."""
    compat.install_seeded_data_order()
    shards = read_corpus(corpus)
    args = argparse.Namespace(
        train_data=shards.webdataset_urls(), train_num_samples=shards.num_samples, train_data_upsampling_factors=None,
        dataset_resampled=resampled, seed=seed, batch_size=4, workers=0, world_size=1, distributed=False,
    )  # fmt: skip
    info = open_clip_data.get_wds_dataset(
        args, open_clip.image_transform(32, is_train=True), True, epoch=epoch, tokenizer=open_clip.get_tokenizer("RN50")
    )
    info.set_epoch(epoch)
    found = []
    for _, texts in info.dataloader:
        found.append(texts.tolist())
        if len(found) == batches:
            break
    return found


@pytest.mark.parametrize("resampled", [False, True], ids=["shards", "resampled"])
def test_two_runs_see_the_same_first_batches(corpus: Path, resampled: bool) -> None:
    first = _first_batches(corpus, epoch=0, resampled=resampled)
    assert _first_batches(corpus, epoch=0, resampled=resampled) == first
    # A run resumed at epoch 2 sees what the uninterrupted run saw in its epoch 2.
    assert _first_batches(corpus, epoch=2, resampled=resampled) == _first_batches(corpus, epoch=2, resampled=resampled)
    # ... and the order still changes with the epoch and the seed.
    assert _first_batches(corpus, epoch=1, resampled=resampled) != first
    assert _first_batches(corpus, epoch=0, seed=1, resampled=resampled) != first
    assert torch.get_num_threads() >= 1
