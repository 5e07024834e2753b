"""``python -m training.train --corpus DIR --config training/configs/NAME.yaml [--set k=v ...] [-- open_clip args]``.

Resolves a config and a corpus into open_clip_train arguments and runs them: in this process when the config asks
for at most one GPU on one node (CPU included), under ``torchrun`` for several GPUs on one node, and as an sbatch
script with ``--slurm`` (``--submit`` also submits it) for several nodes. ``--print-command`` only prints the
commands. Arguments after ``--`` go to open_clip_train last, so they override the config.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from training import launch
from training.config import TrainConfig, apply_overrides, load_config, validate_open_clip_argv
from training.corpus import CorpusShards, read_corpus
from training.models import check_model_name
from training.worker import split_argv

log = logging.getLogger("altcorpus.train")
RUN_INFO_FILE = "altcorpus_run.json"


@dataclass
class TrainPlan:
    """Everything resolved before launching: the config, the corpus, the worker's arguments."""

    config: TrainConfig
    corpus: CorpusShards
    worker_args: list[str]

    @property
    def open_clip_args(self) -> list[str]:
        """The arguments open_clip_train receives."""
        return self.worker_args[self.worker_args.index("--") + 1 :]

    def torchrun_command(self, torchrun: str = "torchrun") -> list[str]:
        """The single-node torchrun command for ``gpus_per_node`` GPUs (at least 1)."""
        return launch.torchrun_command(self.worker_args, max(1, self.config.gpus_per_node), torchrun=torchrun)

    def multi_node_torchrun_command(self) -> list[str]:
        """The torchrun command to run on every node of a multi-node run without SLURM (c10d rendezvous).

        The shell variables are for the person (or scheduler) starting it: ``MASTER_ADDR``/``MASTER_PORT`` of the
        first node, ``NODE_RANK`` 0..nodes-1 on each node, and one ``RDZV_ID`` shared by the nodes of this run.
        """
        return launch.torchrun_command(
            self.worker_args,
            max(1, self.config.gpus_per_node),
            nodes=self.config.nodes,
            rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT",
            rdzv_id="$RDZV_ID",
            node_rank="$NODE_RANK",
        )

    def sbatch_script(self) -> str:
        """The sbatch script for ``nodes`` x ``gpus_per_node`` GPUs."""
        return launch.sbatch_script(
            self.worker_args,
            nodes=self.config.nodes,
            gpus_per_node=max(1, self.config.gpus_per_node),
            job_name=f"altcorpus-{self.config.name}",
            log_dir=self.config.run_dir.resolve(),
            slurm=self.config.slurm,
        )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (everything after ``--`` is left for open_clip_train)."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--corpus", required=True, help="corpus directory (shards/*.tar, shards/sizes.json)")
    parser.add_argument("--config", required=True, help="training config YAML (training/configs/*.yaml)")
    parser.add_argument("--name", help="run name (default: the config's, else its file name)")
    parser.add_argument("--logs", help="folder of run folders (default: the config's, else build/train)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (YAML value), e.g. --set epochs=3 --set precision=amp_bf16",
    )
    parser.add_argument("--nodes", type=int, help="number of nodes (several need --slurm)")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs (processes) per node; >1 launches torchrun")
    parser.add_argument("--print-command", action="store_true", help="print the commands and exit")
    parser.add_argument("--slurm", action="store_true", help="write an sbatch script into the run folder")
    parser.add_argument("--slurm-script", help="where --slurm writes the script (default: RUN_DIR/train.sbatch)")
    parser.add_argument("--submit", action="store_true", help="with --slurm: submit the script with sbatch")
    return parser


def plan_training(argv: list[str]) -> tuple[argparse.Namespace, TrainPlan]:
    """Parse the command line and resolve config, overrides and corpus into a validated plan."""
    ours, passthrough = split_argv(argv)
    cli = build_parser().parse_args(ours)
    overrides = list(cli.overrides)
    for key in ("name", "logs", "nodes", "gpus_per_node"):
        if getattr(cli, key) is not None:
            overrides.append(f"{key}={getattr(cli, key)}")
    config = apply_overrides(load_config(cli.config), overrides)
    config.extra_args = [*config.extra_args, *passthrough]
    check_model_name(config.model)
    corpus = read_corpus(cli.corpus)
    plan = TrainPlan(config=config, corpus=corpus, worker_args=launch.worker_args(config, corpus))
    parsed = validate_open_clip_argv(plan.open_clip_args)
    if parsed.opt.startswith("timm/") and parsed.eps is None:
        # open_clip_train passes eps=None to timm's optimisers, which fail on it (Lamb: float(None)) after model setup.
        raise ValueError(f"`opt: {parsed.opt}` needs `eps` (open_clip_train sets none for timm optimisers), e.g. 1e-6")
    check_shards_per_loader(corpus.num_shards, parsed.workers, config.nodes * max(1, config.gpus_per_node), parsed)
    return cli, plan


def check_shards_per_loader(num_shards: int, workers: int, ranks: int, parsed: argparse.Namespace) -> None:
    """Refuse a run where some data loader would get no shard: it waits forever instead of failing.

    Without ``--dataset-resampled`` open_clip_train splits the shard list over every rank's loaders, and ``workers:
    0`` is still one loader (the main process) per rank, so there must be a shard for each of max(1, workers) x ranks.
    """
    if parsed.dataset_resampled:
        return
    loaders_per_rank = max(1, workers)
    if num_shards >= loaders_per_rank * ranks:
        return
    advice = []
    if num_shards >= ranks and workers > 1:
        advice.append(f"lower `workers` to {num_shards // ranks}")
    advice += ["write smaller shards (more of them)", "or set `dataset_resampled: true`"]
    raise ValueError(
        f"{num_shards} shard(s) for {loaders_per_rank} data loader(s) per rank x {ranks} rank(s): open_clip_train "
        f"needs a shard per loader, and a loader without one hangs; {', '.join(advice)}"
    )


def write_run_info(plan: TrainPlan) -> Path:
    """Record the corpus manifest, the resolved config and the worker arguments beside open_clip's own logs."""
    run_dir = plan.config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "config": plan.config.source,
        "corpus": str(plan.corpus.root),
        "corpus_manifest": plan.corpus.manifest,
        "num_samples": plan.corpus.num_samples,
        "num_shards": plan.corpus.num_shards,
        "label_smoothing": plan.config.label_smoothing,
        "init_temperature": plan.config.init_temperature,
        "caption_source": asdict(plan.config.caption_source),
        "worker_args": plan.worker_args,
    }
    path = run_dir / RUN_INFO_FILE
    path.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def run(argv: list[str]) -> int:
    """Resolve and launch a training run; return a process exit status."""
    cli, plan = plan_training(argv)
    config = plan.config
    worker_command = [sys.executable, "-m", launch.WORKER_MODULE, *plan.worker_args]
    if cli.print_command and config.nodes > 1:
        print(
            f"# on each of the {config.nodes} nodes, with MASTER_ADDR/MASTER_PORT of the first node, NODE_RANK "
            f"0..{config.nodes - 1} and one RDZV_ID for the run (or use --slurm):"
        )
        print(launch.shell_command(plan.multi_node_torchrun_command()))
        return 0
    if cli.print_command:
        print("# one process (CPU or one GPU):")
        print(shlex.join(worker_command))
        print(f"# one node, {max(1, config.gpus_per_node)} GPU(s):")
        print(shlex.join(plan.torchrun_command()))
        return 0
    if cli.slurm:
        script_path = Path(cli.slurm_script) if cli.slurm_script else config.run_dir / "train.sbatch"
        script_path.parent.mkdir(parents=True, exist_ok=True)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        script_path.write_text(plan.sbatch_script(), encoding="utf-8")
        write_run_info(plan)
        print(f"wrote {script_path}")
        if cli.submit:
            print(f"submitted SLURM job {launch.submit(script_path)}")
        return 0
    if cli.submit:
        raise SystemExit("--submit needs --slurm")
    if config.nodes > 1:
        raise SystemExit(
            f"{config.nodes} nodes need --slurm, or run the multi-node torchrun that --print-command prints on every "
            "node yourself"
        )
    write_run_info(plan)
    if config.gpus_per_node > 1:
        command = plan.torchrun_command(torchrun=launch.local_torchrun())
        print(shlex.join(command), flush=True)
        return subprocess.run(command, check=False).returncode
    from training import worker

    worker.run(plan.worker_args)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    raise SystemExit(run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
