"""Launch commands: the worker's argument list, ``torchrun`` for one or several nodes, and SLURM sbatch scripts.

Single node, several GPUs: ``torchrun --standalone --nnodes=1 --nproc-per-node=G -m training.worker ...``.
Several nodes under SLURM: one task per node (``srun --ntasks-per-node=1``), each running ``torchrun`` with a c10d
rendezvous on the first node of the allocation; torchrun sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``, which
open_clip_train reads before SLURM's own variables, so every GPU becomes one open_clip_train rank.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from training.config import TrainConfig, open_clip_argv
from training.corpus import CorpusShards

WORKER_MODULE = "training.worker"
DEFAULT_MASTER_PORT = 29500


def worker_args(config: TrainConfig, corpus: CorpusShards) -> list[str]:
    """Arguments of ``python -m training.worker``: ALIGN loss options, ``--``, then open_clip_train's arguments."""
    ours: list[str] = []
    if config.label_smoothing is not None:
        ours += ["--label-smoothing", repr(config.label_smoothing)]
    if config.init_temperature is not None:
        ours += ["--init-temperature", repr(config.init_temperature)]
    if config.cpu_threads is not None:
        ours += ["--cpu-threads", str(config.cpu_threads)]
    if not config.caption_source.is_alt_only:
        ours += ["--caption-source", config.caption_source.to_json()]
    if config.one_tower_objectives:
        ours += ["--one-tower-objectives", json.dumps(config.one_tower_objectives, sort_keys=True)]
    return [*ours, "--", *open_clip_argv(config, corpus)]


def torchrun_command(
    args: list[str],
    gpus_per_node: int,
    nodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "altcorpus",
    torchrun: str = "torchrun",
    node_rank: str | None = None,
) -> list[str]:
    """The torchrun command running the worker on ``gpus_per_node`` processes on each of ``nodes`` nodes."""
    if gpus_per_node < 1:
        raise ValueError("torchrun needs at least one process per node (gpus_per_node >= 1)")
    if nodes == 1 and rdzv_endpoint is None:
        # --standalone: a local rendezvous on a free port, nothing to configure on one machine.
        head = [torchrun, "--standalone", "--nnodes=1", f"--nproc-per-node={gpus_per_node}"]
    else:
        if rdzv_endpoint is None:
            raise ValueError("a multi-node torchrun needs a rendezvous endpoint (host:port of the first node)")
        head = [
            torchrun,
            f"--nnodes={nodes}",
            f"--nproc-per-node={gpus_per_node}",
            *([f"--node-rank={node_rank}"] if node_rank is not None else []),
            f"--rdzv-id={rdzv_id}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
        ]
    return [*head, "-m", WORKER_MODULE, *args]


def shell_command(command: list[str]) -> str:
    """A command line for a shell: every part quoted except those holding ``$VARIABLES`` the shell should expand."""
    return " ".join(part if "$" in part else shlex.quote(part) for part in command)


def sbatch_script(
    args: list[str],
    nodes: int,
    gpus_per_node: int,
    job_name: str,
    log_dir: str | Path,
    slurm: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
) -> str:
    """An sbatch script running the worker on ``nodes`` x ``gpus_per_node`` GPUs (one srun task per node)."""
    slurm = dict(slurm or {})
    cpus_per_task = int(slurm.pop("cpus_per_task", max(1, gpus_per_node) * 8))
    directives = [
        f"--job-name={job_name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--gpus-per-node={gpus_per_node}",
        f"--cpus-per-task={cpus_per_task}",
        f"--output={Path(log_dir) / 'slurm-%j.out'}",
    ]
    for key in ("partition", "account", "time", "qos", "constraint", "mem"):
        if slurm.get(key) not in (None, ""):
            directives.append(f"--{key}={slurm.pop(key)}")
        else:
            slurm.pop(key, None)
    setup = slurm.pop("setup", None)
    setup_lines = [setup] if isinstance(setup, str) else list(setup or _default_setup())
    directives += [str(line) for line in slurm.pop("directives", [])]
    if slurm:
        raise ValueError(f"unknown slurm settings: {sorted(slurm)}")
    torchrun = torchrun_command(
        args,
        gpus_per_node=gpus_per_node,
        nodes=nodes,
        rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT",
        rdzv_id="$SLURM_JOB_ID",
    )
    # Quote everything except the $VARIABLES the script itself sets, so SLURM's shell expands only those.
    command = shell_command(torchrun)
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {directive}" for directive in directives),
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir or Path.cwd()))}",
        *setup_lines,
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'export MASTER_PORT="${{MASTER_PORT:-{DEFAULT_MASTER_PORT}}}"',
        f'export OMP_NUM_THREADS="${{OMP_NUM_THREADS:-{max(1, cpus_per_task // max(1, gpus_per_node))}}}"',
        f"srun --nodes={nodes} --ntasks-per-node=1 --cpus-per-task={cpus_per_task} {command}",
        "",
    ]
    return "\n".join(lines)


def submit(script_path: str | Path) -> str:
    """Submit an sbatch script; return SLURM's job id."""
    result = subprocess.run(["sbatch", "--parsable", str(script_path)], check=True, capture_output=True, text=True)
    return result.stdout.strip().split(";")[0]


def local_torchrun() -> str:
    """The torchrun beside this interpreter (the project venv's), else whatever ``torchrun`` is on PATH."""
    candidate = Path(sys.executable).parent / "torchrun"
    return str(candidate) if candidate.exists() else "torchrun"


def _default_setup() -> list[str]:
    # Activate the interpreter's virtual environment on the compute nodes when there is one.
    if sys.prefix != sys.base_prefix:
        return [f"source {shlex.quote(os.path.join(sys.prefix, 'bin', 'activate'))}"]
    return []
