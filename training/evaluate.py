"""``python -m training.evaluate --checkpoint PATH [--model NAME] ...``: zero-shot classification and retrieval.

- Zero-shot classification (CLIP's protocol): ``--zeroshot-imagefolder DIR`` (torchvision ImageFolder: one folder per
  class), class names from ``--classnames`` (comma list, a file with one per line, or ``imagenet``) or the folder
  names, prompts from CLIP's 80 ImageNet templates (``--templates openai``, open_clip's ``OPENAI_IMAGENET_TEMPLATES``)
  or open_clip's 7-template subset (``simple``) or a file of ``{}`` templates; reports top-1 and top-5 accuracy.
- Retrieval: image->text and text->image Recall@1/5/10 over (image, caption) pairs from WebDataset shards
  (``--retrieval-shards GLOB``) or a Parquet file (``--retrieval-parquet FILE``, image bytes + caption columns).
  Identical captions are one text (web corpora repeat alt texts): an image's positives are its caption, a caption's
  positives are all images that carry it, and a query scores a hit at K when any positive is among its top K. With
  unique captions this is the usual one-to-one protocol.
Results print as a table; ``--output FILE`` also writes them as JSON. ``--model`` and ``--force-image-size`` default
to the values in the run's ``params.txt`` (``RUN/checkpoints/epoch_N.pt`` -> ``RUN/params.txt``).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from PIL import Image

from training.models import register_model_configs

RECALL_KS = (1, 5, 10)


def read_run_params(checkpoint: str | Path) -> dict[str, str]:
    """The ``params.txt`` open_clip_train wrote beside a checkpoint's folder, as strings (empty when absent)."""
    params_path = Path(checkpoint).resolve().parent.parent / "params.txt"
    if not params_path.is_file():
        return {}
    params: dict[str, str] = {}
    for line in params_path.read_text(encoding="utf-8").splitlines():
        key, separator, value = line.partition(": ")
        if separator:
            params[key.strip()] = value.strip()
    return params


def load_model(
    checkpoint: str, model_name: str | None = None, device: str = "cpu", force_image_size: int | None = None
) -> tuple[torch.nn.Module, Callable[[Image.Image], torch.Tensor], Any, str]:
    """Build the model from its config, load the checkpoint; return (model, image transform, tokenizer, name)."""
    register_model_configs()
    params = read_run_params(checkpoint)
    model_name = model_name or params.get("model")
    if not model_name:
        raise ValueError(f"no --model given and no params.txt beside {checkpoint} to read it from")
    if force_image_size is None and params.get("force_image_size") not in (None, "None"):
        force_image_size = int(params["force_image_size"].strip("[]"))
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=checkpoint, device=device, force_image_size=force_image_size
    )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name), model_name


def resolve_classnames(spec: str | None, folder_classes: Sequence[str]) -> list[str]:
    """Class names in ImageFolder order: from a comma list, a file, ``imagenet``, or the folder names."""
    if not spec:
        return [name.replace("_", " ") for name in folder_classes]
    if spec == "imagenet":
        names = list(open_clip.IMAGENET_CLASSNAMES)
    elif Path(spec).is_file():
        names = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [name.strip() for name in spec.split(",")]
    if len(names) != len(folder_classes):
        raise ValueError(f"{len(names)} class names for {len(folder_classes)} class folders")
    return names


def resolve_templates(spec: str) -> list[Callable[[str], str]]:
    """Prompt templates: ``openai`` (CLIP's 80), ``simple`` (7), or a file with one ``{}`` template per line."""
    if spec == "openai":
        return list(open_clip.OPENAI_IMAGENET_TEMPLATES)
    if spec == "simple":
        return list(open_clip.SIMPLE_IMAGENET_TEMPLATES)
    lines = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines() if "{}" in line]
    if not lines:
        raise ValueError(f"{spec}: no template with a {{}} placeholder")
    return [lambda classname, template=line: template.format(classname) for line in lines]


@torch.no_grad()
def zero_shot_accuracy(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokenizer: Any,
    image_folder: str,
    classnames: str | None = None,
    templates: str = "openai",
    batch_size: int = 128,
    device: str = "cpu",
) -> dict[str, Any]:
    """Top-1/top-5 zero-shot accuracy on an ImageFolder with prompt-ensembled class embeddings."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(image_folder, transform=preprocess)
    names = resolve_classnames(classnames, dataset.classes)
    classifier = open_clip.build_zero_shot_classifier(
        model, tokenizer=tokenizer, classnames=names, templates=resolve_templates(templates), device=device
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    top_k = min(5, len(names))
    correct = {1: 0, top_k: 0}
    total = 0
    for images, targets in loader:
        features = model.encode_image(images.to(device), normalize=True)
        predictions = (features @ classifier).topk(top_k, dim=1).indices.cpu()
        hits = predictions == targets.unsqueeze(1)
        correct[1] += int(hits[:, :1].any(dim=1).sum())
        correct[top_k] += int(hits.any(dim=1).sum())
        total += len(targets)
    return {
        "dataset": str(image_folder),
        "num_images": total,
        "num_classes": len(names),
        "templates": templates,
        "num_templates": len(resolve_templates(templates)),
        "top1": correct[1] / total,
        f"top{top_k}": correct[top_k] / total,
    }


def pairs_from_shards(pattern: str) -> Iterator[tuple[Image.Image, str]]:
    """(image, caption) pairs of WebDataset tar shards matching a glob (or a brace expression)."""
    import webdataset as wds

    urls = sorted(glob.glob(pattern)) or [pattern]
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pilrgb").to_tuple("jpg;png;jpeg;webp", "txt")
    yield from dataset


def pairs_from_parquet(path: str, image_column: str, caption_column: str) -> Iterator[tuple[Image.Image, str]]:
    """(image, caption) pairs of a Parquet file holding encoded image bytes and a caption per row."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=[image_column, caption_column])
    for image_bytes, caption in zip(table[image_column].to_pylist(), table[caption_column].to_pylist(), strict=True):
        if image_bytes is None or caption is None:
            continue
        yield Image.open(io.BytesIO(image_bytes)).convert("RGB"), str(caption)


def recall_at_k(similarity: torch.Tensor, positives: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> dict[int, float]:
    """Share of queries (rows) with a positive among their top K columns, for each K."""
    ranked = similarity.argsort(dim=1, descending=True)
    positive_ranked = positives.gather(1, ranked)
    return {k: float(positive_ranked[:, :k].any(dim=1).float().mean()) for k in ks}


@torch.no_grad()
def retrieval_recall(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokenizer: Any,
    pairs: Iterator[tuple[Image.Image, str]],
    batch_size: int = 128,
    max_pairs: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Image->text and text->image Recall@1/5/10 over (image, caption) pairs, identical captions merged."""
    image_features: list[torch.Tensor] = []
    captions: list[str] = []
    batch: list[torch.Tensor] = []
    for image, caption in pairs:
        if max_pairs is not None and len(captions) >= max_pairs:
            break
        batch.append(preprocess(image))
        captions.append(caption)
        if len(batch) == batch_size:
            image_features.append(model.encode_image(torch.stack(batch).to(device), normalize=True).cpu())
            batch = []
    if batch:
        image_features.append(model.encode_image(torch.stack(batch).to(device), normalize=True).cpu())
    if not captions:
        raise ValueError("no (image, caption) pairs to evaluate retrieval on")
    texts = sorted(set(captions))
    text_index = {text: index for index, text in enumerate(texts)}
    text_features = torch.cat(
        [
            model.encode_text(tokenizer(texts[start : start + batch_size]).to(device), normalize=True).cpu()
            for start in range(0, len(texts), batch_size)
        ]
    )
    images = torch.cat(image_features)
    positives = torch.zeros(len(captions), len(texts), dtype=torch.bool)
    positives[torch.arange(len(captions)), torch.tensor([text_index[c] for c in captions])] = True
    similarity = images @ text_features.T
    image_to_text = recall_at_k(similarity, positives)
    text_to_image = recall_at_k(similarity.T, positives.T)
    results: dict[str, Any] = {"num_images": len(captions), "num_texts": len(texts)}
    results.update({f"image_to_text_R@{k}": value for k, value in image_to_text.items()})
    results.update({f"text_to_image_R@{k}": value for k, value in text_to_image.items()})
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a two-column text table."""
    rows: list[tuple[str, str]] = [("checkpoint", str(results["checkpoint"])), ("model", str(results["model"]))]
    for section in ("zeroshot", "retrieval"):
        for key, value in (results.get(section) or {}).items():
            rows.append((f"{section} {key}", f"{100 * value:.2f}%" if isinstance(value, float) else str(value)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="an open_clip_train checkpoint (epoch_N.pt)")
    parser.add_argument("--model", help="open_clip model name (default: from the run's params.txt)")
    parser.add_argument("--force-image-size", type=int, help="image size the model was trained at, if overridden")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--zeroshot-imagefolder", help="ImageFolder directory for zero-shot classification")
    parser.add_argument("--classnames", help="comma list, a file (one per line) or 'imagenet'; default: folder names")
    parser.add_argument("--templates", default="openai", help="openai (CLIP's 80), simple (7) or a file of {} lines")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--retrieval-shards", help="glob of WebDataset tar shards with jpg + txt members")
    source.add_argument("--retrieval-parquet", help="Parquet file with image bytes and captions")
    parser.add_argument("--image-column", default="image", help="Parquet column of encoded image bytes")
    parser.add_argument("--caption-column", default="alt_text", help="Parquet column of captions")
    parser.add_argument("--max-retrieval-pairs", type=int, help="evaluate retrieval on at most this many pairs")
    parser.add_argument("--output", help="also write the results as JSON here")
    return parser


def run(argv: list[str]) -> dict[str, Any]:
    """Evaluate a checkpoint as the command line asks; print the table and return the results."""
    cli = build_parser().parse_args(argv)
    if not (cli.zeroshot_imagefolder or cli.retrieval_shards or cli.retrieval_parquet):
        raise SystemExit(
            "nothing to evaluate: give --zeroshot-imagefolder and/or --retrieval-shards/--retrieval-parquet"
        )
    model, preprocess, tokenizer, model_name = load_model(
        cli.checkpoint, cli.model, device=cli.device, force_image_size=cli.force_image_size
    )
    results: dict[str, Any] = {"checkpoint": cli.checkpoint, "model": model_name}
    if cli.zeroshot_imagefolder:
        results["zeroshot"] = zero_shot_accuracy(
            model,
            preprocess,
            tokenizer,
            cli.zeroshot_imagefolder,
            cli.classnames,
            cli.templates,
            cli.batch_size,
            cli.device,
        )
    if cli.retrieval_shards or cli.retrieval_parquet:
        if cli.retrieval_shards:
            pairs, source = pairs_from_shards(cli.retrieval_shards), cli.retrieval_shards
        else:
            pairs = pairs_from_parquet(cli.retrieval_parquet, cli.image_column, cli.caption_column)
            source = cli.retrieval_parquet
        results["retrieval"] = {
            "source": source,
            **retrieval_recall(
                model, preprocess, tokenizer, pairs, cli.batch_size, cli.max_retrieval_pairs, cli.device
            ),
        }
    print(format_table(results))
    if cli.output:
        Path(cli.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cli.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
