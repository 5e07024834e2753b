"""Every shipped recipe in training/configs/ trains a few steps on CPU, its optimiser, schedule, loss and towers kept.

Only sizes change: a tiny model of the same family (ALIGN-tiny for the EfficientNet ALIGN configs, a 2-layer ViT for
the CLIP ViT config), 16 real digits, batch 4, fp32 on one CPU process. Everything else (``opt``, ``eps``,
``lr_scheduler``, ``local_loss``, ``grad_checkpointing``, ``dataset_resampled``, label smoothing, temperature) is the
file's own, so a recipe that cannot start (an optimiser refusing its arguments, say) fails here rather than on a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip_train.params import parse_args

from tests.fixtures.digits_corpus import DigitsSplit, digits_splits, write_digits_corpus
from training import train
from training.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((PROJECT_ROOT / "training" / "configs").glob("*.yaml"))
IMAGE_SIZE = 32
#: A ViT as small as ALIGN-tiny, for recipes built on open_clip's ViT configs.
TINY_VIT = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real digits in 4 shards of 4."""
    root = tmp_path_factory.mktemp("configs")
    train_split, _ = digits_splits()
    split = DigitsSplit(train_split.images[:16], train_split.labels[:16])
    write_digits_corpus(split, root / "corpus", IMAGE_SIZE, samples_per_shard=4, prefix="configs")
    model_dir = root / "model_configs"
    model_dir.mkdir()
    (model_dir / "ViT-tiny-test.json").write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(model_dir)
    return root / "corpus"


def _tiny_model(model: str) -> str:
    if model.startswith("ALIGN-"):
        return "ALIGN-tiny"  # timm EfficientNet (test_efficientnet) + Transformer text tower, as every ALIGN config
    if model.startswith("ViT-"):
        return "ViT-tiny-test"
    if model.startswith(("OneR-", "CLIPPO-")):
        return model.split("-")[0] + "-tiny"  # the one-tower family's own tiny configs (training/one_tower.py)
    raise AssertionError(f"no tiny stand-in for {model}: add one to this test")


@pytest.mark.slow
@pytest.mark.parametrize("config_path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_shipped_config_trains_a_few_steps_on_cpu(config_path: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    config = load_config(config_path)
    overrides = {
        "model": _tiny_model(config.model), "device": "cpu", "precision": "fp32", "nodes": 1, "gpus_per_node": 0,
        "workers": 0, "batch_size": 4, "epochs": 2, "warmup": 2, "force_image_size": IMAGE_SIZE, "cpu_threads": 1,
        "log_every_n_steps": 1,
    }  # fmt: skip
    if config.options.get("epochs_cooldown") is not None:
        overrides["epochs_cooldown"] = 1
    argv = ["--corpus", str(tiny_corpus), "--config", str(config_path), "--logs", str(tmp_path / "logs")]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    assert train.run(argv) == 0
    run_dir = tmp_path / "logs" / config.name
    checkpoint = torch.load(run_dir / "checkpoints" / "epoch_2.pt", map_location="cpu")
    assert checkpoint["epoch"] == 2
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values() if value.is_floating_point())
    info = json.loads((run_dir / train.RUN_INFO_FILE).read_text())
    args = parse_args(info["worker_args"][info["worker_args"].index("--") + 1 :])
    # What the recipe is made of went through unchanged.
    for key in ("opt", "eps", "lr", "wd", "lr_scheduler", "local_loss", "gather_with_grad", "grad_checkpointing",
                "dataset_resampled", "lr_cooldown_power"):  # fmt: skip
        if key in config.options:
            assert getattr(args, key) == config.options[key], key
    assert info["label_smoothing"] == config.label_smoothing
    log = (run_dir / "out.log").read_text()
    if config.label_smoothing is not None:
        assert f"label smoothing {config.label_smoothing}" in log


def test_a_timm_optimiser_without_eps_is_refused_before_launch(tiny_corpus: Path, tmp_path: Path) -> None:
    config = PROJECT_ROOT / "training" / "configs" / "tiny-cpu.yaml"
    argv = ["--corpus", str(tiny_corpus), "--config", str(config), "--logs", str(tmp_path / "logs"),
            "--set", "opt=timm/lamb", "--print-command"]  # fmt: skip
    with pytest.raises(ValueError, match="needs `eps`"):
        train.run(argv)
    assert train.run([*argv, "--set", "eps=1e-6"]) == 0
