"""Zero-shot localisation with a one-tower model: where in an image does a text query match?

OneR's demonstration (Jang et al., 2023): because one encoder and one projection embed image patches and captions
into the same space, the similarity of each patch's output token to the query's embedding is a map of where the
query's content is, with no localisation training. Here: the shared encoder's per-patch outputs (after the shared
final norm and projection, :meth:`OneTowerCLIP.patch_features`), cosine similarity with the normalised text
embedding, a (grid h, grid w) map; written as a heat-map overlay PNG (``python -m training.evaluate --localize IMAGE
--query TEXT``). The overlay colours and the min-max scaling are this module's choice, not the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from training.one_tower import OneTowerCLIP


@torch.no_grad()
def similarity_map(
    model: torch.nn.Module, image: torch.Tensor, text: torch.Tensor, device: str = "cpu"
) -> torch.Tensor:
    """(N, grid h, grid w) cosine similarity of each image's patch outputs with its query's text embedding.

    ``image``: (N, 3, H, W) preprocessed images; ``text``: the tokenizer's output for N queries (or for one, used for
    every image).
    """
    if not isinstance(model, OneTowerCLIP):
        raise ValueError(f"localisation needs a one-tower model (one encoder for both), not {type(model).__name__}")
    patches = model.patch_features(image.to(device), normalize=True)
    query = model.encode_text(text.to(device), normalize=True)
    if query.shape[0] == 1:
        query = query.expand(patches.shape[0], -1)
    return torch.einsum("nhwd,nd->nhw", patches, query).cpu()


def peak_cell(similarity: torch.Tensor) -> tuple[int, int]:
    """(row, column) of the largest value of one (grid h, grid w) map."""
    index = int(similarity.flatten().argmax())
    return divmod(index, similarity.shape[1])


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> RGB uint8 on a blue-cyan-yellow-red ramp (no plotting library needed)."""
    stops = np.array([[0, 0, 128], [0, 160, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float32)
    position = np.clip(values, 0.0, 1.0) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    fraction = (position - low)[..., None]
    return (stops[low] * (1 - fraction) + stops[low + 1] * fraction).astype(np.uint8)


def overlay(image: Image.Image, similarity: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """The image with the similarity map (min-max scaled, upsampled bilinearly to the image) blended over it."""
    values = similarity.numpy().astype(np.float32)
    span = float(values.max() - values.min())
    scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    heat = Image.fromarray((scaled * 255).astype(np.uint8), mode="L").resize(image.size, Image.Resampling.BILINEAR)
    colours = Image.fromarray(heat_colours(np.asarray(heat, dtype=np.float32) / 255.0), mode="RGB")
    return Image.blend(image.convert("RGB"), colours, alpha)


def localize(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokenizer: Any,
    images: Sequence[str | Path],
    query: str,
    output: str | Path,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Write one overlay PNG per image (``output`` is a folder, or a ``.png`` path for a single image).

    Returns, per image, the map's grid, its peak cell and that cell's box in the input image's pixels.
    """
    output = Path(output)
    single_file = output.suffix.lower() == ".png"
    if single_file and len(images) != 1:
        raise ValueError("--localize-output is a .png file but several images were given; give a folder")
    text = tokenizer([query])
    results = []
    for path in images:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        similarity = similarity_map(model, preprocess(picture)[None], text, device)[0]
        row, column = peak_cell(similarity)
        grid_h, grid_w = similarity.shape
        cell_w, cell_h = picture.width / grid_w, picture.height / grid_h
        target = output if single_file else output / f"{Path(path).stem}.localize.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        overlay(picture, similarity).save(target)
        results.append({
            "image": str(path),
            "query": query,
            "overlay": str(target),
            "grid": [grid_h, grid_w],
            "peak_cell": [row, column],
            "peak_box": [column * cell_w, row * cell_h, (column + 1) * cell_w, (row + 1) * cell_h],
            "similarity_min": float(similarity.min()),
            "similarity_max": float(similarity.max()),
        })  # fmt: skip
    return results
