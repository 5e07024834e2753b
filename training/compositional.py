"""Compositional evaluation (a positive caption against hard negatives) and long-description retrieval data.

**Hard-negative items** (SugarCrepe, ARO): a JSONL file, one item per line::

    {"image": "images/0001.png", "caption": "a red circle left of a blue square",
     "negative_captions": ["a blue circle left of a red square"], "category": "swap_attribute"}

- ``image``: the image path, relative to the JSONL file's folder (or absolute); SugarCrepe's ``filename`` and ARO's
  ``image_path`` are read too.
- ``caption``: the positive caption (ARO's ``true_caption`` is read too).
- ``negative_captions``: one or more hard negatives; a single ``negative_caption`` string (SugarCrepe) or
  ``false_caption`` (ARO) is read as a list of one.
- ``category``: the item's group for per-category accuracy (SugarCrepe: ``replace_att``, ``swap_obj``, ...);
  default ``all``.
An item is correct when the image's similarity to the positive is strictly above its similarity to every negative
(ties count as wrong, so a model that scores every caption alike gets 0%, not 100%); with one negative chance is 50%.

**Long descriptions** (DOCCI): DOCCI's ``docci_descriptions.jsonlines``, one JSON object a line with ``image_file``
(relative to an images folder, by default the JSONL's folder) and ``description``, optionally ``split`` (``train``,
``test``, ``qual_dev``, ``qual_test``); ``training.evaluate --long-retrieval FILE`` scores image->text and
text->image Recall@1/5/10 over them. A description longer than the text tower's context is cut by the tokenizer, as
in training (DOCCI's descriptions run to about 136 words on average, beyond a 77-token context).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

DEFAULT_CATEGORY = "all"


@dataclass(frozen=True)
class CompositionalItem:
    """One test: an image, its true caption and captions that differ from it in a controlled way."""

    image: Path
    caption: str
    negatives: tuple[str, ...]
    category: str = DEFAULT_CATEGORY


def _first(record: dict[str, Any], names: tuple[str, ...], line: str) -> Any:
    for name in names:
        if record.get(name) is not None:
            return record[name]
    raise ValueError(f"{line}: no {' / '.join(names)} field")


def read_items(path: str | Path) -> list[CompositionalItem]:
    """The items of a JSONL file (format in the module docstring); image paths resolved against its folder."""
    path = Path(path)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = json.loads(line)
        negatives = _first(record, ("negative_captions", "negative_caption", "false_caption"), where)
        negatives = [negatives] if isinstance(negatives, str) else list(negatives)
        if not negatives:
            raise ValueError(f"{where}: an item needs at least one negative caption")
        image = Path(_first(record, ("image", "filename", "image_path"), where))
        items.append(
            CompositionalItem(
                image=image if image.is_absolute() else path.parent / image,
                caption=str(_first(record, ("caption", "true_caption"), where)),
                negatives=tuple(str(negative) for negative in negatives),
                category=str(record.get("category") or DEFAULT_CATEGORY),
            )
        )
    if not items:
        raise ValueError(f"{path}: no items")
    return items


@torch.no_grad()
def compositional_accuracy(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokenizer: Any,
    items_path: str | Path,
    batch_size: int = 128,
    device: str = "cpu",
) -> dict[str, Any]:
    """Share of items whose positive caption outscores all its negatives, overall and per category."""
    items = read_items(items_path)
    images = sorted({item.image for item in items})
    texts = sorted({text for item in items for text in (item.caption, *item.negatives)})
    image_index = {image: index for index, image in enumerate(images)}
    text_index = {text: index for index, text in enumerate(texts)}
    image_features = []
    for start in range(0, len(images), batch_size):
        batch = []
        for image_path in images[start : start + batch_size]:
            with Image.open(image_path) as image:
                batch.append(preprocess(image.convert("RGB")))
        image_features.append(model.encode_image(torch.stack(batch).to(device), normalize=True).cpu())
    text_features = torch.cat(
        [
            model.encode_text(tokenizer(texts[start : start + batch_size]).to(device), normalize=True).cpu()
            for start in range(0, len(texts), batch_size)
        ]
    )
    similarity = torch.cat(image_features) @ text_features.T
    correct: dict[str, int] = {}
    totals: dict[str, int] = {}
    for item in items:
        scores = similarity[image_index[item.image]]
        positive = scores[text_index[item.caption]]
        hit = all(positive > scores[text_index[negative]] for negative in item.negatives)
        totals[item.category] = totals.get(item.category, 0) + 1
        correct[item.category] = correct.get(item.category, 0) + int(hit)
    return {
        "items": str(items_path),
        "num_items": len(items),
        "accuracy": sum(correct.values()) / len(items),
        "categories": {
            category: {"num_items": totals[category], "accuracy": correct[category] / totals[category]}
            for category in sorted(totals)
        },
    }


def pairs_from_descriptions(
    path: str | Path, images_dir: str | Path | None = None, split: str | None = None
) -> Iterator[tuple[Image.Image, str]]:
    """(image, description) pairs of a DOCCI-format JSONL file, optionally only one ``split``."""
    path = Path(path)
    root = Path(images_dir) if images_dir is not None else path.parent
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if split is not None and record.get("split") != split:
            continue
        where = f"{path}:{number}"
        image_file = _first(record, ("image_file", "image"), where)
        description = str(_first(record, ("description", "caption"), where))
        with Image.open(root / image_file) as image:
            yield image.convert("RGB"), description
