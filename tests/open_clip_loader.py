"""open_clip_train's own WebDataset loader over an altcorpus corpus, as the trainer configures it (for tests)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import open_clip
from open_clip_train.data import get_wds_dataset

from training import compat
from training.corpus import read_corpus


def open_clip_train_loader(corpus_root: Path, batch_size: int, image_size: int) -> Any:
    """The training DataLoader ``open_clip_train.data.get_wds_dataset`` builds for the corpus's shards."""
    compat.install()  # webdataset >= 0.2.96's end-of-shard marker breaks open_clip_train 3.3 (open_clip#935)
    corpus = read_corpus(corpus_root)
    args = argparse.Namespace(
        train_data=corpus.webdataset_urls(),
        train_num_samples=corpus.num_samples,
        train_data_upsampling_factors=None,
        dataset_resampled=False,
        seed=0,
        batch_size=batch_size,
        workers=0,
        world_size=1,
        distributed=False,
    )
    preprocess = open_clip.image_transform(image_size, is_train=True)
    data = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer("RN50"))
    return data.dataloader
