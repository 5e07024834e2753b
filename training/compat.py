"""Compatibility checks and shims for open_clip_train 3.3, installed by the worker process without forking it.

1. WebDataset reader: webdataset 0.2.96 made ``tar_file_expander`` yield an empty dict at the end of every shard
   (``eof_value={}``); open_clip_train 3.3's ``group_by_keys_nothrow`` then fails with ``KeyError: 'fname'`` at the
   first shard boundary (mlfoundations/open_clip#935, webdataset/webdataset#384; still so with webdataset 1.0). The
   train extra pins webdataset 0.2.86, as open_clip's own training extra does, so plain ``python -m
   open_clip_train.main`` reads the shards and nothing is patched; :func:`check_webdataset` turns a drifted install
   into a clear error at start-up instead of that KeyError after the first shard.
2. DDP on CPU: see :func:`install_cpu_ddp`.
3. Caption choice (alt text, enhanced caption or a mix): see :func:`install_caption_choice`.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from typing import Any

import torch
from open_clip_train import data as open_clip_data
from torch.nn.parallel import DistributedDataParallel
from webdataset import filters as wds_filters
from webdataset import tariterators
from webdataset import utils as wds_utils

from training.captions import CaptionChoice, CaptionSource


def check_webdataset() -> None:
    """Refuse a webdataset whose tar reader ends shards with a marker open_clip_train 3.3 cannot read (open_clip#935)."""
    eof_value = inspect.signature(tariterators.tar_file_expander).parameters.get("eof_value")
    if eof_value is not None and eof_value.default is not None:
        raise RuntimeError(
            f"webdataset {version('webdataset')} ends every shard with an empty sample, which open_clip_train "
            f"{version('open_clip_torch')} cannot read (KeyError: 'fname' at the first shard boundary, open_clip#935); "
            "install the train extra's pin: pip install 'webdataset==0.2.86'"
        )


class CpuDistributedDataParallel(DistributedDataParallel):
    """DDP that accepts open_clip_train's ``device_ids=[device]`` for a CPU module (torch wants None there)."""

    def __init__(self, module: torch.nn.Module, device_ids: Any = None, *args: Any, **kwargs: Any) -> None:
        if device_ids is not None and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids, *args, **kwargs)


def install_cpu_ddp() -> None:
    """Let open_clip_train run DDP on CPU (gloo) under torchrun, so multi-process runs are testable without GPUs.

    open_clip_train builds ``torch.nn.parallel.DistributedDataParallel(model, device_ids=[device])``, which torch
    refuses for CPU modules; the subclass drops ``device_ids`` in that one case and changes nothing on GPUs.
    Installed by the worker process only, never imported into a user's own process.
    """
    torch.nn.parallel.DistributedDataParallel = CpuDistributedDataParallel


class SeededSampleShuffle:
    """webdataset's buffered sample shuffle, its generator seeded from (seed, epoch, rank, loader worker).

    ``wds.shuffle`` in open_clip_train's pipeline seeds itself from the process id and the clock, so two runs with the
    same ``--seed`` (or a run resumed at an epoch and the uninterrupted one) see different batches. The epoch comes
    from open_clip_train's ``SharedEpoch``, which it updates each epoch and which DataLoader workers share.
    """

    def __init__(self, bufsize: int, initial: int, seed: int, epoch: Any) -> None:
        self.bufsize, self.initial, self.seed, self.epoch = bufsize, initial, seed, epoch

    def __call__(self, src: Iterable[Any]) -> Iterator[Any]:
        rank, _, worker, _ = wds_utils.pytorch_worker_info()
        rng = random.Random(_mixed_seed(self.seed, _epoch_value(self.epoch), rank, worker))
        return wds_filters._shuffle(iter(src), self.bufsize, self.initial, rng)


class SeededShardSampler:
    """``ResampledShards2``'s ``worker_seed``: distinct per rank and loader worker, fixed by ``--seed`` (it adds epoch).

    open_clip_train's default falls back, with ``workers: 0``, to ``rank * 1000 + worker``: the same shard draws in
    every epoch and for every ``--seed``.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self) -> int:
        rank, _, worker, _ = wds_utils.pytorch_worker_info()
        return _mixed_seed(self.seed, 0, rank, worker)


def _epoch_value(epoch: Any) -> int:
    return int(epoch.get_value()) if isinstance(epoch, open_clip_data.SharedEpoch) else int(epoch)


def _mixed_seed(seed: int, epoch: int, rank: int, worker: int) -> int:
    # A hash of the tuple, so (seed, epoch + 1) never collides with (seed + 1, epoch) as a sum would.
    digest = hashlib.sha256(f"{seed}/{epoch}/{rank}/{worker}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seeded_get_wds_dataset(args: Any, preprocess_img: Any, is_train: bool, epoch: int = 0, **kwargs: Any) -> Any:
    """open_clip_train's ``get_wds_dataset`` with its training shuffles seeded by ``args.seed``, epoch, rank, worker."""
    info = _ORIGINAL_GET_WDS_DATASET(args, preprocess_img, is_train, epoch=epoch, **kwargs)
    if not is_train:
        return info
    pipeline = info.dataloader.pipeline[0].dataset.pipeline
    for index, stage in enumerate(pipeline):
        if isinstance(stage, open_clip_data.ResampledShards2):
            stage.worker_seed = SeededShardSampler(args.seed)
        elif isinstance(stage, wds_filters.FilterFunction) and stage.f is wds_filters._shuffle:
            bufsize = stage.kw.get("bufsize", stage.args[0] if stage.args else 1000)
            initial = stage.kw.get("initial", stage.args[1] if len(stage.args) > 1 else 100)
            pipeline[index] = SeededSampleShuffle(bufsize, initial, args.seed, info.shared_epoch)
    return info


_ORIGINAL_GET_WDS_DATASET = open_clip_data.get_wds_dataset


def install_seeded_data_order() -> None:
    """Make open_clip_train's WebDataset order a function of ``--seed``, epoch, rank and worker (idempotent)."""
    open_clip_data.get_wds_dataset = seeded_get_wds_dataset


def insert_caption_choice(info: Any, source: CaptionSource, seed: int) -> CaptionChoice:
    """Put a :class:`CaptionChoice` into a training pipeline open_clip_train built, just before its ``txt`` rename.

    The hook point is open_clip_train 3.3's ``wds.rename(image="jpg;png;jpeg;webp", text="txt")``: everything before
    it (shard order, shuffles, decoding) and after it (image transform, tokenizer, batching) stays open_clip_train's.
    A release without that stage fails here, at start-up, instead of silently training on alt text.
    """
    pipeline = info.dataloader.pipeline[0].dataset.pipeline
    for index, stage in enumerate(pipeline):
        if (
            isinstance(stage, wds_filters.FilterFunction)
            and stage.f is wds_filters._rename
            and stage.kw.get("text") == "txt"
        ):
            choice = CaptionChoice(source, seed, info.shared_epoch)
            pipeline.insert(index, choice)
            return choice
    raise RuntimeError(
        f"open_clip_train {version('open_clip_torch')}'s WebDataset pipeline has no rename(text='txt') stage to put "
        "the caption choice before; `caption_source` needs open_clip_train 3.3's get_wds_dataset"
    )


def install_caption_choice(source: CaptionSource) -> None:
    """Train on the text ``source`` picks per sample (alt, enhanced, mix), inside open_clip_train's own data path.

    Wraps the (seeded) ``get_wds_dataset`` in place; call after :func:`install_seeded_data_order`. Alt text only
    restores the seeded loader untouched.
    """
    if source.is_alt_only:
        open_clip_data.get_wds_dataset = seeded_get_wds_dataset
        return

    def get_wds_dataset_with_caption_choice(
        args: Any, preprocess_img: Any, is_train: bool, epoch: int = 0, **kwargs: Any
    ) -> Any:
        info = seeded_get_wds_dataset(args, preprocess_img, is_train, epoch=epoch, **kwargs)
        if is_train:
            insert_caption_choice(info, source, args.seed)
        return info

    open_clip_data.get_wds_dataset = get_wds_dataset_with_caption_choice
