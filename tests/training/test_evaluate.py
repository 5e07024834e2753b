"""Evaluation mechanics: Recall@K on hand-made similarities, checkpoint loading, shards vs Parquet, zero-shot options.

The quality check (a trained model beating chance) is in test_training.py; here an untrained ALIGN-tiny checkpoint,
saved the way open_clip_train saves one, is enough to exercise every path of ``training.evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from schemas import SampleImage
from tests.fixtures.digits_corpus import (
    DigitsSplit,
    digits_splits,
    sample_rows,
    write_digits_corpus,
    write_image_folder,
)
from training import evaluate
from training.models import register_model_configs

IMAGE_SIZE = 32


def test_recall_at_k_counts_a_hit_when_any_positive_is_in_the_top_k() -> None:
    similarity = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]])
    positives = torch.tensor([[True, False, False], [True, False, False], [False, True, True]])
    # Row 0: best column 0 is positive. Row 1: order 2, 1, 0 -> positive at rank 3.
    # Row 2: order 0, 1, 2 -> first positive (1) at rank 2.
    assert evaluate.recall_at_k(similarity, positives, ks=(1, 2, 3)) == {
        1: pytest.approx(1 / 3),
        2: pytest.approx(2 / 3),
        3: pytest.approx(1.0),
    }


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 held-out digits as shards, as a Parquet of SampleImage rows, and as an ImageFolder; an untrained checkpoint."""
    root = tmp_path_factory.mktemp("evaluate")
    _, test_split = digits_splits()
    split = DigitsSplit(test_split.images[:60], test_split.labels[:60])
    write_digits_corpus(split, root / "corpus", IMAGE_SIZE, samples_per_shard=25, prefix="eval")
    rows = list(sample_rows(split, IMAGE_SIZE, prefix="eval"))
    pq.write_table(pa.Table.from_pylist(rows, schema=SampleImage.schema()), root / "pairs.parquet")
    write_image_folder(split, root / "images", IMAGE_SIZE)
    # A checkpoint as open_clip_train writes it (DDP "module." prefixes, epoch, params.txt beside the run).
    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("ALIGN-tiny", force_image_size=IMAGE_SIZE)
    run_dir = root / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    state_dict = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"epoch": 1, "name": "run", "state_dict": state_dict}, run_dir / "checkpoints" / "epoch_1.pt")
    (run_dir / "params.txt").write_text("force_image_size: 32\nmodel: ALIGN-tiny\nprecision: fp32\n")
    return {"root": root, "checkpoint": run_dir / "checkpoints" / "epoch_1.pt"}


def test_model_and_image_size_come_from_the_runs_params(held_out: dict[str, Path]) -> None:
    assert evaluate.read_run_params(held_out["checkpoint"])["model"] == "ALIGN-tiny"
    model, preprocess, _, name = evaluate.load_model(str(held_out["checkpoint"]))
    assert name == "ALIGN-tiny" and model.visual.image_size == (IMAGE_SIZE, IMAGE_SIZE)
    assert preprocess.transforms[0].size == IMAGE_SIZE  # the eval transform resizes to the trained size
    saved = torch.load(held_out["checkpoint"], map_location="cpu")["state_dict"]
    assert torch.equal(model.logit_scale.detach(), saved["module.logit_scale"])


def test_retrieval_from_shards_and_from_parquet_agree(
    held_out: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--checkpoint", str(held_out["checkpoint"]), "--batch-size", "16"]
    output = held_out["root"] / "shards.json"
    from_shards = evaluate.run([*common, "--retrieval-shards", str(held_out["root"] / "corpus" / "shards" / "*.tar"),
                                "--output", str(output)])  # fmt: skip
    table = capsys.readouterr().out
    from_parquet = evaluate.run([*common, "--retrieval-parquet", str(held_out["root"] / "pairs.parquet")])
    assert json.loads(output.read_text()) == from_shards
    assert "retrieval image_to_text_R@1" in table and "retrieval text_to_image_R@10" in table
    shards, parquet = from_shards["retrieval"], from_parquet["retrieval"]
    assert shards["num_images"] == parquet["num_images"] == 60
    assert shards["num_texts"] == parquet["num_texts"] == len({row[1] for row in evaluate.pairs_from_parquet(
        str(held_out["root"] / "pairs.parquet"), "image", "alt_text")})  # fmt: skip
    for key in shards:
        if key.endswith(("R@1", "R@5", "R@10")):
            assert shards[key] == pytest.approx(parquet[key], abs=1e-6), key
    limited = evaluate.run([*common, "--retrieval-parquet", str(held_out["root"] / "pairs.parquet"),
                            "--max-retrieval-pairs", "20"])  # fmt: skip
    assert limited["retrieval"]["num_images"] == 20


def test_zero_shot_options(held_out: dict[str, Path], tmp_path: Path) -> None:
    folder = held_out["root"] / "images"
    classes = sorted(path.name for path in folder.iterdir())
    assert evaluate.resolve_classnames(None, classes) == classes
    assert evaluate.resolve_classnames(",".join(c.upper() for c in classes), classes)[0] == classes[0].upper()
    with pytest.raises(ValueError, match="class names"):
        evaluate.resolve_classnames("one,two", classes)
    assert (
        len(evaluate.resolve_templates("openai")) == 80
        and len(evaluate.resolve_templates("simple")) == len(open_clip.SIMPLE_IMAGENET_TEMPLATES) == 7
    )
    template_file = tmp_path / "templates.txt"
    template_file.write_text("a photo of the number {}.\nno placeholder here\nthe digit {}\n")
    templates = evaluate.resolve_templates(str(template_file))
    assert [t("seven") for t in templates] == ["a photo of the number seven.", "the digit seven"]
    results = evaluate.run(["--checkpoint", str(held_out["checkpoint"]), "--zeroshot-imagefolder", str(folder),
                            "--templates", str(template_file)])  # fmt: skip
    zeroshot = results["zeroshot"]
    assert zeroshot["num_images"] == 60 and zeroshot["num_classes"] == len(classes) and zeroshot["num_templates"] == 2
    assert 0.0 <= zeroshot["top1"] <= zeroshot["top5"] <= 1.0
    with pytest.raises(SystemExit, match="nothing to evaluate"):
        evaluate.run(["--checkpoint", str(held_out["checkpoint"])])


def _subset_folder(held_out: dict[str, Path], destination: Path, classes: list[str]) -> Path:
    for name in classes:
        (destination / name).mkdir(parents=True)
        for image in sorted((held_out["root"] / "images" / name).iterdir()):
            (destination / name / image.name).write_bytes(image.read_bytes())
    return destination


def test_zero_shot_with_one_class_reports_at_most_100_percent(held_out: dict[str, Path], tmp_path: Path) -> None:
    folder = _subset_folder(held_out, tmp_path / "one", ["seven"])
    zeroshot = evaluate.run(["--checkpoint", str(held_out["checkpoint"]), "--zeroshot-imagefolder", str(folder),
                             "--templates", "simple"])["zeroshot"]  # fmt: skip
    assert zeroshot["num_classes"] == 1 and zeroshot["top1"] == 1.0  # one choice: always right, never 200%
    assert zeroshot["top5"] is None and not any(
        key.startswith("top") and key not in ("top1", "top5") for key in zeroshot
    )


def test_zero_shot_on_a_subset_of_a_larger_class_list(held_out: dict[str, Path], tmp_path: Path) -> None:
    # An ImageNet-style subset: the class list names 10 classes, the folders hold 3 of them.
    folder = _subset_folder(held_out, tmp_path / "subset", ["eight", "one", "three"])
    all_names = tmp_path / "names.txt"
    all_names.write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    assert evaluate.resolve_classnames(str(all_names), ["eight", "one", "three"]) == ["eight", "one", "three"]
    assert evaluate.resolve_classnames(str(all_names), ["8", "1", "3"]) == ["eight", "one", "three"]  # by index
    with pytest.raises(ValueError, match="eleven"):
        evaluate.resolve_classnames(str(all_names), ["eleven", "one"])
    zeroshot = evaluate.run(["--checkpoint", str(held_out["checkpoint"]), "--zeroshot-imagefolder", str(folder),
                             "--classnames", str(all_names), "--templates", "simple"])["zeroshot"]  # fmt: skip
    assert zeroshot["num_classes"] == 3 and zeroshot["top5"] is None  # fewer than 5 classes: no top-5, not "top3"
    assert 0.0 <= zeroshot["top1"] <= 1.0


def test_retrieval_from_an_image_folder_with_captions(held_out: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "captioned"
    folder.mkdir()
    for index, (image_bytes, caption) in enumerate(
        zip(
            *(pq.read_table(held_out["root"] / "pairs.parquet").column(c).to_pylist() for c in ("image", "alt_text")),
            strict=True,
        )
    ):
        (folder / f"{index:04d}.jpg").write_bytes(image_bytes)
        (folder / f"{index:04d}.txt").write_text(caption)
    common = ["--checkpoint", str(held_out["checkpoint"]), "--batch-size", "16"]
    from_folder = evaluate.run([*common, "--retrieval-imagefolder", str(folder)])["retrieval"]
    from_parquet = evaluate.run([*common, "--retrieval-parquet", str(held_out["root"] / "pairs.parquet")])["retrieval"]
    assert from_folder["num_images"] == 60
    for key, value in from_parquet.items():
        if key.endswith(("R@1", "R@5", "R@10")):
            assert from_folder[key] == pytest.approx(value, abs=1e-6), key


def test_preprocessing_follows_the_runs_params(held_out: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    checkpoint = run_dir / "checkpoints" / "epoch_1.pt"
    checkpoint.write_bytes(held_out["checkpoint"].read_bytes())
    (run_dir / "params.txt").write_text(
        "force_image_size: 32\nimage_interpolation: bilinear\nimage_mean: (0.25, 0.5, 0.75)\n"
        "image_resize_mode: squash\nimage_std: [0.1, 0.2, 0.3]\nmodel: ALIGN-tiny\n"
    )
    _, preprocess, _, _ = evaluate.load_model(str(checkpoint))
    normalize = preprocess.transforms[-1]
    assert tuple(normalize.mean) == (0.25, 0.5, 0.75) and tuple(normalize.std) == (0.1, 0.2, 0.3)
    resize = preprocess.transforms[0]
    assert resize.size == (32, 32)  # squash: both sides to the size, no centre crop
    assert resize.interpolation.value == "bilinear"


def test_linear_probe_on_frozen_image_features(held_out: dict[str, Path], tmp_path: Path) -> None:
    _, test_split = digits_splits()
    write_image_folder(DigitsSplit(test_split.images[:200], test_split.labels[:200]), tmp_path / "probe" / "train", 32)
    write_image_folder(DigitsSplit(test_split.images[200:], test_split.labels[200:]), tmp_path / "probe" / "test", 32)
    probe = evaluate.run(["--checkpoint", str(held_out["checkpoint"]), "--linear-probe", str(tmp_path / "probe")])[
        "linear_probe"
    ]
    assert (
        probe["num_train"] == 200 and probe["num_test"] == len(test_split.labels) - 200 and probe["num_classes"] == 10
    )
    # Even an untrained tower's random features separate digits well above chance (10%) with a linear classifier.
    assert 0.3 <= probe["top1"] <= 1.0 and probe["C"] > 0
