"""Compositional items and long-description retrieval through ``training.evaluate``, on an untrained ALIGN-tiny.

Whether training on enhanced captions beats alt text is measured in test_shapes_world.py; here the item formats, the
scoring rule (ties are wrong, one negative gives chance 50%) and DOCCI-format retrieval are checked on real images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.search_index import untrained_checkpoint
from training import compositional, evaluate, shapes_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """20 held-out shapes-world images with their items, and an untrained checkpoint saved as open_clip_train saves."""
    root = tmp_path_factory.mktemp("compositional")
    items = shapes_world.write_evaluation_items(root / "eval", 20, seed=3)
    return {"root": root, "items": items, "checkpoint": untrained_checkpoint(root / "run")}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_items_in_this_sugarcrepe_and_aro_spellings_read_alike(world: dict[str, Path], tmp_path: Path) -> None:
    image = world["root"] / "eval" / "images" / "00000.png"
    spellings = [
        {"image": str(image), "caption": "a b", "negative_captions": ["b a"], "category": "swap"},
        {"filename": str(image), "caption": "a b", "negative_caption": "b a", "category": "swap"},
        {"image_path": str(image), "true_caption": "a b", "false_caption": "b a", "category": "swap"},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in spellings) + "\n\n")
    items = compositional.read_items(path)
    assert items == [compositional.CompositionalItem(image, "a b", ("b a",), "swap")] * 3
    relative = tmp_path / "relative.jsonl"
    relative.write_text(json.dumps({"image": "x.png", "caption": "a", "negative_captions": ["b", "c"]}))
    (item,) = compositional.read_items(relative)
    assert item.image == tmp_path / "x.png" and item.negatives == ("b", "c") and item.category == "all"
    for broken, message in (({"image": "x.png", "caption": "a"}, "negative"), ({"caption": "a", "negative_caption": "b"}, "image"),
                            ({"image": "x.png", "caption": "a", "negative_captions": []}, "at least one")):  # fmt: skip
        relative.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            compositional.read_items(relative)


def test_ties_are_wrong_and_mirrored_items_split_evenly(world: dict[str, Path], tmp_path: Path) -> None:
    """Scored by the real model: an item whose negative is its positive always fails; of an item and its mirror (the
    negative as positive), exactly one succeeds, whatever the model; several negatives must all be beaten."""
    shipped = compositional.read_items(world["items"])
    lines = []
    for item in shipped[::2]:
        image, positive, (negative,) = str(item.image), item.caption, item.negatives
        lines.append({"image": image, "caption": positive, "negative_captions": [positive], "category": "tie"})
        lines.append({"image": image, "caption": positive, "negative_captions": [negative], "category": "mirror"})
        lines.append({"image": image, "caption": negative, "negative_captions": [positive], "category": "mirror"})
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    common = ["--checkpoint", str(world["checkpoint"]), "--batch-size", "8"]
    results = evaluate.run([*common, "--compositional", str(path)])["compositional"]
    assert results["categories"] == {
        "mirror": {"num_items": 40, "accuracy": 0.5},
        "tie": {"num_items": 20, "accuracy": 0.0},
    }
    assert results["num_items"] == 60 and results["accuracy"] == pytest.approx(20 / 60)
    shipped_results = evaluate.run([*common, "--compositional", str(world["items"])])["compositional"]
    assert set(shipped_results["categories"]) == set(shapes_world.CATEGORIES)
    assert all(scores["num_items"] == 20 for scores in shipped_results["categories"].values())
    # Per item, beating two negatives is never easier than beating the first of them.
    model, preprocess, tokenizer, _ = evaluate.load_model(str(world["checkpoint"]))
    both = tmp_path / "both.jsonl"
    by_image: dict[Path, list[str]] = {}
    for item in shipped:
        by_image.setdefault(item.image, [item.caption]).extend(item.negatives)
    both.write_text("\n".join(json.dumps({"image": str(image), "caption": texts[0], "negative_captions": texts[1:]})
                              for image, texts in by_image.items()))  # fmt: skip
    one = tmp_path / "one.jsonl"
    one.write_text("\n".join(json.dumps({"image": str(image), "caption": texts[0], "negative_captions": texts[1:2]})
                             for image, texts in by_image.items()))  # fmt: skip
    two_negatives = compositional.compositional_accuracy(model, preprocess, tokenizer, both)
    one_negative = compositional.compositional_accuracy(model, preprocess, tokenizer, one)
    assert two_negatives["accuracy"] <= one_negative["accuracy"]


def test_long_description_retrieval_reads_doccis_format(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = world["root"] / "eval" / "images"
    records, folder = [], tmp_path / "pairs"
    folder.mkdir()
    for index, item in enumerate(compositional.read_items(world["items"])[::2]):
        # A description several sentences long, as DOCCI's are (past ALIGN-tiny's 32-token context: cut as in training).
        description = f"{item.caption}. The background is pale grey. " * 3 + f"Image number {index}."
        split = "test" if index < 12 else "train"
        records.append(
            {"example_id": f"ex_{index}", "split": split, "image_file": item.image.name, "description": description}
        )
        if split == "test":
            (folder / item.image.name).write_bytes(item.image.read_bytes())
            (folder / item.image.with_suffix(".txt").name).write_text(description)
    descriptions = tmp_path / "docci_descriptions.jsonlines"
    descriptions.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    common = ["--checkpoint", str(world["checkpoint"]), "--batch-size", "8"]
    long_results = evaluate.run([*common, "--long-retrieval", str(descriptions), "--long-retrieval-images", str(images),
                                 "--long-retrieval-split", "test"])["long_retrieval"]  # fmt: skip
    assert "long_retrieval text_to_image_R@1" in capsys.readouterr().out
    assert long_results["num_images"] == long_results["num_texts"] == 12
    from_folder = evaluate.run([*common, "--retrieval-imagefolder", str(folder)])["retrieval"]
    for key, value in from_folder.items():
        if key.endswith(("R@1", "R@5", "R@10")):
            assert long_results[key] == pytest.approx(value, abs=1e-6), key
    everything = evaluate.run([*common, "--long-retrieval", str(descriptions), "--long-retrieval-images", str(images)])
    assert everything["long_retrieval"]["num_images"] == 20
