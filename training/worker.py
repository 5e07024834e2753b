"""One training process: register the ALIGN configs, install ALIGN's loss options, run ``open_clip_train.main``.

``python -m training.worker [--label-smoothing X] [--init-temperature T] -- OPEN_CLIP_ARGS...`` is what ``torchrun``
starts once per GPU (and what ``training.train`` calls in-process for a single CPU/GPU run). Everything after ``--``
goes to open_clip_train unchanged; open_clip_train reads rank and world size from torchrun's environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

from training import compat, loss, one_tower
from training.captions import CaptionSource, caption_source_from_json
from training.models import register_model_configs


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: (altcorpus arguments, open_clip_train arguments)."""
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def parse_worker_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse the worker's own options and return them with the open_clip_train arguments."""
    ours, open_clip_args = split_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m training.worker", description=__doc__)
    parser.add_argument("--label-smoothing", type=float, default=None, help="ALIGN: 0.1; unset: open_clip's ClipLoss.")
    parser.add_argument("--init-temperature", type=float, default=None, help="ALIGN: 1.0; unset: the model config's.")
    parser.add_argument("--cpu-threads", type=int, default=None, help="torch intra-op threads; unset: torch's default.")
    parser.add_argument(
        "--caption-source", default=None, help="caption_source as JSON (training.captions); unset: alt."
    )
    parser.add_argument("--one-tower-objectives", type=json.loads, default={}, help='JSON, e.g. {"xmc": 0.5}.')
    return parser.parse_args(ours), open_clip_args


def run(argv: list[str]) -> None:
    """Run one open_clip_train process; raise when open_clip_train refuses to start (it returns -1 then)."""
    options, open_clip_args = parse_worker_args(argv)
    register_model_configs()
    compat.check_webdataset()
    compat.install_cpu_ddp()
    compat.install_seeded_data_order()  # batches follow --seed, epoch, rank: reproducible and resumable
    source = CaptionSource() if options.caption_source is None else caption_source_from_json(options.caption_source)
    compat.install_caption_choice(source)  # alt text, enhanced caption or a mix, per sample and epoch
    loss.install(label_smoothing=options.label_smoothing, init_temperature=options.init_temperature)
    import open_clip_train.main as open_clip_main

    one_tower.install_objectives(options.one_tower_objectives, open_clip_main)  # after loss.install: wraps its hooks

    threads_before = torch.get_num_threads()
    handlers_before = list(logging.root.handlers)
    if options.cpu_threads is not None:
        torch.set_num_threads(options.cpu_threads)
    try:
        status = open_clip_main.main(open_clip_args)
    finally:
        torch.set_num_threads(threads_before)  # an in-process run leaves its caller's setting as it was
        # open_clip_train adds a console and an out.log handler to the root logger per run and never removes them: a
        # second run in this process would print every line twice and write its log into the first run's out.log.
        for handler in [handler for handler in logging.root.handlers if handler not in handlers_before]:
            logging.root.removeHandler(handler)
            handler.close()
    if status == -1:
        raise RuntimeError(
            "open_clip_train refused to start (its message is above): typically the run folder already has a log; "
            "resume it with `resume: latest` or pick another --name"
        )


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
