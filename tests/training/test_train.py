"""The trainer end to end on CPU: digits corpus (pipeline's shard writer) -> open_clip_train -> zero-shot + retrieval.

One module-scoped run trains ALIGN-tiny (``training/configs/tiny-cpu.yaml`` at 32 px) on 1,437 real handwritten
digits for 3 epochs; the tests then evaluate it on 360 held-out digits and resume it for a fifth epoch.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss, SigLipLoss
from open_clip_train.params import parse_args
from torch.nn import functional as F

from tests.fixtures.digits_corpus import digits_splits, write_digits_corpus, write_image_folder
from training import evaluate, loss, train
from training.config import apply_overrides, config_from_mapping, open_clip_argv, validate_open_clip_argv
from training.corpus import CorpusShards, read_corpus
from training.models import align_model_names, register_model_configs

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY_CPU = PROJECT_ROOT / "training" / "configs" / "tiny-cpu.yaml"
IMAGE_SIZE = 32
EPOCHS = 3
RUN_NAME = "digits"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train corpus (5 shards), held-out corpus and held-out ImageFolder, all from scikit-learn's digits."""
    root = tmp_path_factory.mktemp("digits")
    train_split, held_out = digits_splits(held_out_fraction=0.2, seed=0)
    sizes = write_digits_corpus(train_split, root / "corpus", IMAGE_SIZE, samples_per_shard=300, prefix="train")
    assert sizes == {"00000.tar": 300, "00001.tar": 300, "00002.tar": 300, "00003.tar": 300, "00004.tar": 237}
    write_digits_corpus(held_out, root / "held_out_corpus", IMAGE_SIZE, samples_per_shard=1000, prefix="test")
    write_image_folder(held_out, root / "held_out_images", IMAGE_SIZE)
    return {
        "root": root,
        "corpus": root / "corpus",
        "held_out_corpus": root / "held_out_corpus",
        "held_out_images": root / "held_out_images",
        "logs": root / "logs",
    }


def _train_argv(digits: dict[str, Path], epochs: int) -> list[str]:
    return [
        "--corpus", str(digits["corpus"]), "--config", str(TINY_CPU), "--logs", str(digits["logs"]), "--name", RUN_NAME,
        "--set", f"force_image_size={IMAGE_SIZE}", "--set", "batch_size=64", "--set", f"epochs={epochs}",
        "--set", "warmup=20", "--set", "log_every_n_steps=5", "--set", "cpu_threads=1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(digits: dict[str, Path]) -> Path:
    """Train the tiny config in this process (one CPU process) and return the run folder."""
    assert train.run(_train_argv(digits, EPOCHS)) == 0
    run_dir = digits["logs"] / RUN_NAME
    assert (run_dir / "checkpoints" / f"epoch_{EPOCHS}.pt").is_file()
    return run_dir


@pytest.fixture(scope="module")
def evaluation(digits: dict[str, Path], trained_run: Path) -> dict:
    """Zero-shot on the held-out ImageFolder and retrieval on the held-out shards, as the CLI reports them."""
    output = digits["root"] / "eval.json"
    results = evaluate.run([
        "--checkpoint", str(trained_run / "checkpoints" / f"epoch_{EPOCHS}.pt"),
        "--zeroshot-imagefolder", str(digits["held_out_images"]),
        "--retrieval-shards", str(digits["held_out_corpus"] / "shards" / "*.tar"),
        "--output", str(output),
    ])  # fmt: skip
    assert json.loads(output.read_text()) == results
    print(json.dumps(results, indent=2))
    return results


def test_the_run_reads_the_corpus_and_uses_aligns_loss(trained_run: Path, digits: dict[str, Path]) -> None:
    info = json.loads((trained_run / train.RUN_INFO_FILE).read_text())
    assert info["num_samples"] == 1437 and info["num_shards"] == 5
    args = parse_args(info["worker_args"][info["worker_args"].index("--") + 1 :])
    assert args.train_data == str(digits["corpus"] / "shards" / "{00000..00004}.tar")
    assert args.train_num_samples == 1437 and args.dataset_type == "webdataset" and args.model == "ALIGN-tiny"
    log = (trained_run / "out.log").read_text()
    assert "ALIGN loss: contrastive softmax with label smoothing 0.1" in log
    checkpoint = torch.load(trained_run / "checkpoints" / f"epoch_{EPOCHS}.pt", map_location="cpu")
    assert checkpoint["epoch"] == EPOCHS
    assert "--cpu-threads" in info["worker_args"] and torch.get_num_threads() >= 1
    # The temperature was learned from ALIGN's 1.0 (logit scale exp(0) = 1) and went down (scale up).
    assert checkpoint["state_dict"]["logit_scale"].item() > 0.0


def test_zero_shot_on_held_out_digits_clearly_beats_chance(evaluation: dict) -> None:
    zeroshot = evaluation["zeroshot"]
    assert zeroshot["num_images"] == 360 and zeroshot["num_classes"] == 10 and zeroshot["num_templates"] == 80
    # Chance is 10%; runs here reach ~90%+ top-1. 60% leaves a wide margin for thread-count nondeterminism.
    assert zeroshot["top1"] >= 0.60, zeroshot
    assert zeroshot["top5"] >= zeroshot["top1"]


def test_retrieval_recall_is_measured_and_above_chance(evaluation: dict) -> None:
    retrieval = evaluation["retrieval"]
    assert retrieval["num_images"] == 360 and retrieval["num_texts"] == 50  # 10 digits x 5 caption phrasings
    for direction in ("image_to_text", "text_to_image"):
        recalls = [retrieval[f"{direction}_R@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls) and all(0.0 <= r <= 1.0 for r in recalls)
    # Chance: an image's one caption among 50 texts in the top 5 -> 10%; a caption's ~7 images of 360 in the top 10
    # -> ~18%. The trained model is far above both.
    assert retrieval["image_to_text_R@5"] >= 0.40, retrieval
    assert retrieval["text_to_image_R@10"] >= 0.40, retrieval


def test_resume_continues_from_the_saved_epoch(digits: dict[str, Path], trained_run: Path) -> None:
    saved = trained_run / "checkpoints" / f"epoch_{EPOCHS}.pt"
    saved_bytes = saved.read_bytes()
    assert train.run(_train_argv(digits, EPOCHS + 1)) == 0  # the config says `resume: latest`
    log = (trained_run / "out.log").read_text()
    resumed_at = log.index(f"=> resuming checkpoint '{saved}' (epoch {EPOCHS})")
    after_resume = log[resumed_at:]
    assert f"Start epoch {EPOCHS}" in after_resume and "Start epoch 0" not in after_resume
    # The first loss after resuming is a trained model's, not a fresh one's (~ln 64 = 4.16 at temperature 1).
    first_loss = float(re.search(r"Contrastive_loss: ([0-9.]+)", after_resume).group(1))
    assert first_loss < 3.9
    continued = torch.load(trained_run / "checkpoints" / f"epoch_{EPOCHS + 1}.pt", map_location="cpu")
    assert continued["epoch"] == EPOCHS + 1
    assert saved.read_bytes() == saved_bytes  # the saved epoch stays as it was


def test_align_loss_is_clip_loss_with_label_smoothing() -> None:
    torch.manual_seed(0)
    image_features = F.normalize(torch.randn(8, 16), dim=-1)
    text_features = F.normalize(torch.randn(8, 16), dim=-1)
    logit_scale = torch.tensor(3.0)
    unsmoothed = loss.AlignLoss(label_smoothing=0.0)(image_features, text_features, logit_scale)
    assert torch.allclose(unsmoothed, ClipLoss()(image_features, text_features, logit_scale))
    logits = logit_scale * image_features @ text_features.T
    targets = torch.full((8, 8), 0.1 / 8) + torch.eye(8) * 0.9  # smoothed one-hot, as torch defines it
    expected = (
        -(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.T.log_softmax(1)).sum(1).mean()
    ) / 2
    smoothed = loss.AlignLoss(label_smoothing=0.1)(image_features, text_features, logit_scale, output_dict=True)
    assert torch.allclose(smoothed["contrastive_loss"], expected)
    with pytest.raises(ValueError):
        loss.AlignLoss(label_smoothing=1.0)


def test_install_rebinds_open_clip_trains_loss_and_model_factory() -> None:
    import open_clip_train.main as open_clip_main

    register_model_configs()
    args = parse_args(["--model", "ALIGN-tiny"])
    args.distill, args.rank, args.world_size = False, 0, 1
    try:
        loss.install(label_smoothing=0.1, init_temperature=0.07)
        created = open_clip_main.create_loss(args)
        assert isinstance(created, loss.AlignLoss) and created.label_smoothing == 0.1
        args.siglip = True  # SigLIP, CoCa and distillation keep open_clip's own losses
        assert isinstance(open_clip_main.create_loss(args), SigLipLoss)
        args.siglip = False
        model, _, _ = open_clip_main.create_model_and_transforms("ALIGN-tiny")
        assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    finally:
        loss.install()
    assert type(open_clip_main.create_loss(args)) is ClipLoss
    model, _, _ = open_clip_main.create_model_and_transforms("ALIGN-tiny")
    assert model.logit_scale.item() == 0.0  # ALIGN's initial temperature 1.0, from the model config


def test_align_model_family_is_registered_and_builds_without_downloads() -> None:
    names = register_model_configs()
    assert names == align_model_names()
    assert {"ALIGN-tiny", "ALIGN-B0", "ALIGN-B7", "ALIGN-L2"} <= set(names) <= set(open_clip.list_models())
    assert "ViT-B-32" in open_clip.list_models()
    paper = open_clip.get_model_config("ALIGN-L2")
    assert paper["embed_dim"] == 640 and paper["vision_cfg"]["timm_model_name"] == "efficientnet_l2"
    assert paper["vision_cfg"]["timm_pool"] == "avg" and paper["vision_cfg"]["timm_proj"] == "linear"
    assert (paper["text_cfg"]["width"], paper["text_cfg"]["layers"], paper["text_cfg"]["heads"]) == (1024, 24, 16)
    for name in names:
        assert open_clip.get_model_config(name)["vision_cfg"]["timm_model_pretrained"] is False


def test_config_options_become_open_clip_flags(digits: dict[str, Path]) -> None:
    config = config_from_mapping(
        {"model": "ALIGN-tiny", "batch-size": 8, "local_loss": True, "lock_text": False, "resume": None,
         "image_mean": [0.5, 0.5, 0.5], "aug_cfg": {"scale": "(0.9, 1.0)"}, "label_smoothing": 0.1, "nodes": 2},
        source="configs/example.yaml",
    )  # fmt: skip
    corpus = read_corpus(digits["corpus"])
    argv = open_clip_argv(config, corpus)
    assert argv[:6] == [
        "--train-data",
        corpus.webdataset_urls(),
        "--train-num-samples",
        "1437",
        "--dataset-type",
        "webdataset",
    ]
    assert argv[6:] == [
        "--model", "ALIGN-tiny", "--batch-size", "8", "--local-loss", "--image-mean", "0.5", "0.5", "0.5",
        "--aug-cfg", "scale=(0.9, 1.0)", "--name", "example", "--logs", "build/train",
    ]  # fmt: skip
    assert config.label_smoothing == 0.1 and config.nodes == 2
    overridden = apply_overrides(config, ["batch_size=16", "local-loss=false", "slurm.time=1:00:00", "gpus_per_node=4"])
    assert overridden.options["batch_size"] == 16 and overridden.options["local_loss"] is False
    assert overridden.slurm == {"time": "1:00:00"} and overridden.gpus_per_node == 4
    assert validate_open_clip_argv(open_clip_argv(overridden, corpus)).batch_size == 16
    with pytest.raises(ValueError, match="rejected"):
        validate_open_clip_argv([*argv, "--no-such-option"])


def test_shard_lists_are_brace_expressions(tmp_path: Path) -> None:
    contiguous = CorpusShards(root=tmp_path, sizes={"00000.tar": 3, "00001.tar": 2, "00002.tar": 0})
    assert contiguous.webdataset_urls() == str(tmp_path / "shards" / "{00000..00001}.tar")
    assert contiguous.num_samples == 5 and contiguous.num_shards == 2  # the empty shard is left out
    gappy = CorpusShards(root=tmp_path, sizes={"00000.tar": 3, "00002.tar": 2})
    assert gappy.webdataset_urls() == str(tmp_path / "shards" / "{00000.tar,00002.tar}")
    with pytest.raises(FileNotFoundError, match=r"sizes\.json"):
        read_corpus(tmp_path)
