"""Launch paths: the torchrun command, the sbatch script, and a real 2-process torchrun (DDP over gloo) on CPU."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from open_clip_train.params import parse_args

from tests.fixtures.digits_corpus import DigitsSplit, digits_splits, write_digits_corpus
from training import train

LAUNCH_CONFIG = """\
model: ALIGN-tiny
device: cpu
precision: fp32
workers: 0
batch_size: 16
epochs: 1
lr: 0.001
warmup: 2
resume: latest
label_smoothing: 0.1
cpu_threads: 1
"""
PASSTHROUGH = ["--local-loss", "--gather-with-grad", "--grad-checkpointing", "--dataset-resampled"]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 real digits in two shards of 48, written by the pipeline's shard writer."""
    root = tmp_path_factory.mktemp("launch")
    train_split, _ = digits_splits()
    split = DigitsSplit(train_split.images[:96], train_split.labels[:96])
    assert write_digits_corpus(split, root / "corpus", 32, samples_per_shard=48, prefix="launch") == {
        "00000.tar": 48,
        "00001.tar": 48,
    }
    return root / "corpus"


@pytest.fixture()
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "launch-test.yaml"
    path.write_text(LAUNCH_CONFIG)
    return path


def _open_clip_part(command: list[str]) -> list[str]:
    return command[command.index("--") + 1 :]


def test_torchrun_command_for_one_node(
    small_corpus: Path, config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    argv = ["--corpus", str(small_corpus), "--config", str(config_path), "--logs", str(logs), "--gpus-per-node", "8",
            "--set", "precision=amp_bf16", "--print-command", "--", *PASSTHROUGH]  # fmt: skip
    assert train.run(argv) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    single_process, torchrun = (shlex.split(line) for line in printed)
    expected_worker_args = [
        "--label-smoothing", "0.1", "--cpu-threads", "1", "--",
        "--train-data", str(small_corpus / "shards" / "{00000..00001}.tar"), "--train-num-samples", "96",
        "--dataset-type", "webdataset",
        "--model", "ALIGN-tiny", "--device", "cpu", "--precision", "amp_bf16", "--workers", "0", "--batch-size", "16",
        "--epochs", "1", "--lr", "0.001", "--warmup", "2", "--resume", "latest",
        "--logs", str(logs), "--name", "launch-test", *PASSTHROUGH,
    ]  # fmt: skip
    assert torchrun == [
        "torchrun", "--standalone", "--nnodes=1", "--nproc-per-node=8", "-m", "training.worker", *expected_worker_args
    ]  # fmt: skip
    assert single_process[1:3] == ["-m", "training.worker"] and single_process[3:] == expected_worker_args
    # open_clip_train's own parser reads the pass-through options as meant.
    args = parse_args(_open_clip_part(torchrun))
    assert args.precision == "amp_bf16" and args.local_loss and args.gather_with_grad
    assert args.grad_checkpointing and args.dataset_resampled and args.resume == "latest"
    assert args.train_num_samples == 96 and args.name == "launch-test"


def test_sbatch_script_for_several_nodes(small_corpus: Path, config_path: Path, tmp_path: Path) -> None:
    script_path = tmp_path / "job.sbatch"
    argv = ["--corpus", str(small_corpus), "--config", str(config_path), "--logs", str(tmp_path / "logs"),
            "--nodes", "4", "--gpus-per-node", "8", "--set", "device=cuda", "--set", "slurm.partition=gpu",
            "--set", "slurm.time=12:00:00", "--set", "slurm.cpus_per_task=64", "--slurm",
            "--slurm-script", str(script_path), "--", *PASSTHROUGH]  # fmt: skip
    assert train.run(argv) == 0
    script = script_path.read_text()
    directives = [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert directives == [
        "--job-name=altcorpus-launch-test", "--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8",
        "--cpus-per-task=64", f"--output={(tmp_path / 'logs' / 'launch-test').resolve() / 'slurm-%j.out'}",
        "--partition=gpu", "--time=12:00:00",
    ]  # fmt: skip
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in script
    srun_line = next(line for line in script.splitlines() if line.startswith("srun "))
    srun = shlex.split(srun_line)
    assert srun[: srun.index("-m")] == [
        "srun", "--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=64",
        "torchrun", "--nnodes=4", "--nproc-per-node=8", "--rdzv-id=$SLURM_JOB_ID", "--rdzv-backend=c10d",
        "--rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT",
    ]  # fmt: skip
    assert srun[srun.index("-m") + 1] == "training.worker"
    args = parse_args(_open_clip_part(srun))
    assert args.device == "cuda" and args.local_loss and args.gather_with_grad and args.dataset_resampled
    subprocess.run(["bash", "-n", str(script_path)], check=True)  # the script is valid shell


def test_multi_node_print_command_is_a_per_node_rendezvous(
    small_corpus: Path, config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--corpus", str(small_corpus), "--config", str(config_path), "--logs", str(tmp_path / "logs"),
            "--nodes", "2", "--gpus-per-node", "8", "--set", "dataset_resampled=true"]  # fmt: skip
    with pytest.raises(SystemExit, match="--print-command") as refused:
        train.run(base)
    assert "--slurm" in str(refused.value)
    assert train.run([*base, "--print-command"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("torchrun")]
    assert len(printed) == 1 and "--standalone" not in printed[0]
    torchrun = shlex.split(printed[0])
    assert torchrun[: torchrun.index("-m")] == [
        "torchrun", "--nnodes=2", "--nproc-per-node=8", "--node-rank=$NODE_RANK", "--rdzv-id=$RDZV_ID",
        "--rdzv-backend=c10d", "--rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT",
    ]  # fmt: skip
    assert parse_args(_open_clip_part(torchrun)).dataset_resampled


def test_refusals_come_before_any_launch(small_corpus: Path, config_path: Path, tmp_path: Path) -> None:
    base = ["--corpus", str(small_corpus), "--config", str(config_path), "--logs", str(tmp_path / "logs")]
    with pytest.raises(SystemExit, match="--slurm"):
        train.run([*base, "--nodes", "2", "--gpus-per-node", "8", "--set", "dataset_resampled=true"])
    with pytest.raises(SystemExit, match="--slurm"):
        train.run([*base, "--submit"])
    with pytest.raises(ValueError, match="shard per loader"):
        train.run([*base, "--set", "workers=4", "--print-command"])
    # workers: 0 still means one loader per rank: 4 ranks over 2 shards would leave ranks 2 and 3 waiting forever.
    with pytest.raises(ValueError, match="2 shard") as refused:
        train.run([*base, "--gpus-per-node", "4", "--print-command"])
    assert "lower `workers`" not in str(refused.value)  # already at one loader per rank: lowering cannot help
    with pytest.raises(ValueError, match="lower `workers`"):
        train.run([*base, "--set", "workers=2", "--gpus-per-node", "2", "--print-command"])
    with pytest.raises(ValueError, match="unknown model"):
        train.run([*base, "--set", "model=no-such-model", "--print-command"])
    with pytest.raises(ValueError, match="rejected"):
        train.run([*base, "--print-command", "--", "--no-such-open-clip-flag"])
    assert not (tmp_path / "logs").exists()  # nothing was started or written


def test_torchrun_two_cpu_processes_train_with_local_loss(
    small_corpus: Path, config_path: Path, tmp_path: Path
) -> None:
    # The multi-GPU path for real: torchrun, DDP (gloo on CPU), gathered features with local loss, rank-0 checkpoint.
    argv = ["--corpus", str(small_corpus), "--config", str(config_path), "--logs", str(tmp_path / "logs"),
            "--gpus-per-node", "2", "--set", "force_image_size=32", "--", "--local-loss", "--gather-with-grad"]  # fmt: skip
    assert train.run(argv) == 0
    run_dir = tmp_path / "logs" / "launch-test"
    log = (run_dir / "out.log").read_text()
    assert (
        "Running in distributed mode with multiple processes. Device: cpu.Process (global: 0, local 0), total 2." in log
    )
    assert "ALIGN loss: contrastive softmax with label smoothing 0.1" in log
    checkpoint = torch.load(run_dir / "checkpoints" / "epoch_1.pt", map_location="cpu")
    assert checkpoint["epoch"] == 1 and any(key.startswith("module.") for key in checkpoint["state_dict"])
