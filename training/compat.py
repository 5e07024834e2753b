"""Two compatibility shims for open_clip_train 3.3, installed by the worker process without forking it.

1. WebDataset reader: webdataset 0.2.96 made ``tar_file_expander`` yield an empty dict at the end of every shard
   (``eof_value={}``); open_clip_train's ``group_by_keys_nothrow`` then fails with ``KeyError: 'fname'`` at the
   first shard boundary (mlfoundations/open_clip#935, webdataset/webdataset#384; still so with webdataset 1.0).
   The fix the maintainers point to is ``eof_value=None``. :func:`install` rebinds the module-level name
   ``open_clip_train.data.tarfile_to_samples_nothrow``, which ``get_wds_dataset`` looks up when it builds the
   pipeline, to :func:`tarfile_to_samples_nothrow` below; it lives in this module so DataLoader workers started
   with ``spawn`` unpickle it from here and get the fixed version too.
2. DDP on CPU: see :func:`install_cpu_ddp`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from open_clip_train import data as open_clip_data
from torch.nn.parallel import DistributedDataParallel
from webdataset.tariterators import tar_file_expander, url_opener


def tarfile_to_samples_nothrow(
    src: Iterable[dict[str, Any]], handler: Any = open_clip_data.log_and_continue
) -> Iterator[dict[str, Any]]:
    """open_clip_train's tar -> samples stage, without webdataset's end-of-shard marker."""
    streams = url_opener(src, handler=handler)
    files = tar_file_expander(streams, handler=handler, eof_value=None)
    return open_clip_data.group_by_keys_nothrow(files, handler=handler)


def install() -> None:
    """Point open_clip_train's WebDataset pipeline at the fixed tar reader (idempotent)."""
    open_clip_data.tarfile_to_samples_nothrow = tarfile_to_samples_nothrow


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
