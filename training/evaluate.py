"""``python -m training.evaluate --checkpoint PATH [--model NAME] ...``: zero-shot classification and retrieval.

- Zero-shot classification (CLIP's protocol): ``--zeroshot-imagefolder DIR`` (torchvision ImageFolder: one folder per
  class), class names from ``--classnames`` (comma list, a file with one per line, or ``imagenet``) or the folder
  names, prompts from CLIP's 80 ImageNet templates (``--templates openai``, open_clip's ``OPENAI_IMAGENET_TEMPLATES``)
  or open_clip's 7-template subset (``simple``) or a file of ``{}`` templates; reports top-1 and top-5 accuracy (top-5
  is None with 5 classes or fewer). A class list longer than the folders (an ImageNet subset) is matched by folder
  name or index and the classifier covers the classes present.
- Linear probe (CLIP's protocol): ``--linear-probe DIR`` with ``DIR/train`` and ``DIR/test`` ImageFolders; logistic
  regression on frozen, normalised image features, C chosen on a validation fifth of train; reports test top-1.
- Retrieval: image->text and text->image Recall@1/5/10 over (image, caption) pairs from WebDataset shards
  (``--retrieval-shards GLOB``), a Parquet file (``--retrieval-parquet FILE``, image bytes + caption columns) or an
  image folder with a ``NAME.txt`` caption beside each image (``--retrieval-imagefolder DIR``).
  Identical captions are one text (web corpora repeat alt texts): an image's positives are its caption, a caption's
  positives are all images that carry it, and a query scores a hit at K when any positive is among its top K. With
  unique captions this is the usual one-to-one protocol.
- Compositionality: ``--compositional ITEMS.jsonl``, an image with its caption and hard negatives per line
  (SugarCrepe/ARO items, format in ``training.compositional``); accuracy overall and per category.
- Long descriptions: ``--long-retrieval FILE.jsonl`` in DOCCI's format (``image_file`` + ``description``, images in
  ``--long-retrieval-images`` or beside the file, ``--long-retrieval-split test``); Recall@1/5/10 both ways, as above.
Results print as a table; ``--output FILE`` also writes them as JSON. ``--model``, ``--force-image-size`` and the
image transform (``image_mean``, ``image_std``, ``image_interpolation``, ``image_resize_mode``) follow the run's
``params.txt`` (``RUN/checkpoints/epoch_N.pt`` -> ``RUN/params.txt``).
"""

from __future__ import annotations

import argparse
import ast
import glob
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES
from PIL import Image

from training import compositional
from training.models import register_model_configs

RECALL_KS = (1, 5, 10)
#: params.txt keys that shape the image transform, passed to ``open_clip.create_model_and_transforms``.
PREPROCESS_PARAMS = ("image_mean", "image_std", "image_interpolation", "image_resize_mode")
#: Image file suffixes of a captioned image folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Inverse regularisation strengths tried by the linear probe (CLIP's paper sweeps C on a validation split).
PROBE_C_VALUES = (0.01, 0.1, 1.0, 10.0, 100.0)


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


def _param_value(raw: str | None) -> Any:
    # params.txt holds Python reprs: None, 'bicubic', (0.5, 0.5, 0.5), [0.1, 0.2, 0.3].
    if raw is None or raw == "None":
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    return tuple(value) if isinstance(value, list) else value


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
    # The run's own preprocessing (open_clip_train's --image-mean/--image-std/--image-interpolation/
    # --image-resize-mode), else the model config's: evaluating with other statistics shifts every input.
    preprocessing = {key: _param_value(params.get(key)) for key in PREPROCESS_PARAMS}
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name,
        pretrained=checkpoint,
        device=device,
        force_image_size=force_image_size,
        **{key: value for key, value in preprocessing.items() if value is not None},
    )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name), model_name


def resolve_classnames(spec: str | None, folder_classes: Sequence[str]) -> list[str]:
    """Class names in ImageFolder order: from a comma list, a file, ``imagenet``, or the folder names.

    A list with as many names as folders is taken in folder order. A longer list (all ImageNet classes, say, with the
    folders holding a subset) is matched folder by folder: a folder named by a class of the list, or by its index in
    the list; the classifier then covers the classes present, as the ImageNet-subset protocols (ImageNet-A/-R) do.
    """
    if not spec:
        return [name.replace("_", " ") for name in folder_classes]
    if spec == "imagenet":
        names = list(open_clip.IMAGENET_CLASSNAMES)
    elif Path(spec).is_file():
        names = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [name.strip() for name in spec.split(",")]
    if len(names) == len(folder_classes):
        return names
    if len(names) < len(folder_classes):
        raise ValueError(f"{len(names)} class names for {len(folder_classes)} class folders")
    by_name = {name.lower(): name for name in names}
    matched: list[str] = []
    for folder in folder_classes:
        key = folder.replace("_", " ").lower()
        if key in by_name:
            matched.append(by_name[key])
        elif folder.isdigit() and int(folder) < len(names):
            matched.append(names[int(folder)])
        else:
            raise ValueError(f"class folder {folder!r} is neither a name nor an index of the {len(names)} class names")
    return matched


def resolve_templates(spec: str) -> list[Callable[[str], str]]:
    """Prompt templates: ``openai`` (CLIP's 80), ``simple`` (7), or a file with one ``{}`` template per line."""
    if spec == "openai":
        return list(OPENAI_IMAGENET_TEMPLATES)  # the CLIP paper's 80-prompt ImageNet ensemble, as data
    if spec == "simple":
        return list(SIMPLE_IMAGENET_TEMPLATES)
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
    correct_top1 = correct_top5 = total = 0  # two counters: with one class top-1 and top-k are the same k
    for images, targets in loader:
        features = model.encode_image(images.to(device), normalize=True)
        predictions = (features @ classifier).topk(top_k, dim=1).indices.cpu()
        hits = predictions == targets.unsqueeze(1)
        correct_top1 += int(hits[:, :1].any(dim=1).sum())
        correct_top5 += int(hits.any(dim=1).sum())
        total += len(targets)
    return {
        "dataset": str(image_folder),
        "num_images": total,
        "num_classes": len(names),
        "templates": templates,
        "num_templates": len(resolve_templates(templates)),
        "top1": correct_top1 / total,
        # Top-5 needs more than 5 classes to mean anything; with fewer it is None, never another k under this name.
        "top5": correct_top5 / total if len(names) > 5 else None,
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


def pairs_from_image_folder(folder: str) -> Iterator[tuple[Image.Image, str]]:
    """(image, caption) pairs of a folder (searched recursively) holding ``NAME.jpg`` beside ``NAME.txt`` captions."""
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        caption_path = path.with_suffix(".txt")
        if not caption_path.is_file():
            continue  # an image without a caption is no retrieval pair
        with Image.open(path) as image:
            yield image.convert("RGB"), caption_path.read_text(encoding="utf-8").strip()


@torch.no_grad()
def image_features(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    image_folder: str | Path,
    batch_size: int = 128,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Normalised image embeddings, labels and class names of an ImageFolder."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(image_folder), transform=preprocess)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    features, labels = [], []
    for images, targets in loader:
        features.append(model.encode_image(images.to(device), normalize=True).cpu())
        labels.append(targets)
    return torch.cat(features), torch.cat(labels), list(dataset.classes)


def linear_probe_accuracy(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    folder: str,
    batch_size: int = 128,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """CLIP's linear probe: logistic regression on frozen image features of ``folder/train``, scored on ``folder/test``.

    As in the CLIP paper (appendix A.3), the L2 strength is chosen on a validation split of the training images
    (a stratified fifth here, over :data:`PROBE_C_VALUES`), then the classifier is refit on all training images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    train_x, train_y, train_classes = image_features(model, preprocess, Path(folder) / "train", batch_size, device)
    test_x, test_y, test_classes = image_features(model, preprocess, Path(folder) / "test", batch_size, device)
    if train_classes != test_classes:
        raise ValueError(f"{folder}: train/ and test/ hold different class folders")
    fit_x, val_x, fit_y, val_y = train_test_split(
        train_x.numpy(), train_y.numpy(), test_size=0.2, random_state=seed, stratify=train_y.numpy()
    )
    scores = {}
    for c in PROBE_C_VALUES:
        classifier = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(fit_x, fit_y)
        scores[c] = classifier.score(val_x, val_y)
    best_c = max(scores, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    classifier = LogisticRegression(C=best_c, max_iter=1000, random_state=seed).fit(train_x.numpy(), train_y.numpy())
    return {
        "dataset": str(folder),
        "num_train": len(train_y),
        "num_test": len(test_y),
        "num_classes": len(train_classes),
        "C": best_c,
        "top1": float(classifier.score(test_x.numpy(), test_y.numpy())),
    }


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
    for section in ("zeroshot", "retrieval", "long_retrieval", "linear_probe"):
        for key, value in (results.get(section) or {}).items():
            rows.append((f"{section} {key}", f"{100 * value:.2f}%" if isinstance(value, float) else str(value)))
    if results.get("compositional"):
        rows.append(("compositional accuracy", f"{100 * results['compositional']['accuracy']:.2f}%"))
        for category, scores in results["compositional"]["categories"].items():
            rows.append((f"compositional {category}", f"{100 * scores['accuracy']:.2f}% of {scores['num_items']}"))
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
    source.add_argument("--retrieval-imagefolder", help="folder of images with a NAME.txt caption beside each")
    parser.add_argument("--image-column", default="image", help="Parquet column of encoded image bytes")
    parser.add_argument("--caption-column", default="alt_text", help="Parquet column of captions")
    parser.add_argument("--max-retrieval-pairs", type=int, help="evaluate retrieval on at most this many pairs")
    parser.add_argument("--linear-probe", help="folder with train/ and test/ ImageFolders: logistic regression probe")
    parser.add_argument(
        "--localize", nargs="+", metavar="IMAGE", help="one-tower models: heat map of --query per image"
    )
    parser.add_argument("--query", help="the text query of --localize")
    parser.add_argument("--localize-output", default="localize", help="folder of overlay PNGs (or one .png path)")
    parser.add_argument("--compositional", help="JSONL of image + caption + hard negatives: accuracy per category")
    parser.add_argument("--long-retrieval", help="DOCCI-format JSONL (image_file, description): long-text retrieval")
    parser.add_argument("--long-retrieval-images", help="folder of --long-retrieval's images (default: beside it)")
    parser.add_argument("--long-retrieval-split", help="only this split of --long-retrieval (DOCCI: test)")
    parser.add_argument("--output", help="also write the results as JSON here")
    return parser


def run(argv: list[str]) -> dict[str, Any]:
    """Evaluate a checkpoint as the command line asks; print the table and return the results."""
    cli = build_parser().parse_args(argv)
    retrieval_source = cli.retrieval_shards or cli.retrieval_parquet or cli.retrieval_imagefolder
    wanted = (
        cli.zeroshot_imagefolder,
        retrieval_source,
        cli.linear_probe,
        cli.localize,
        cli.compositional,
        cli.long_retrieval,
    )
    if not any(wanted):
        raise SystemExit(
            "nothing to evaluate: give --zeroshot-imagefolder, --linear-probe, --localize, --compositional, "
            "--long-retrieval and/or "
            "--retrieval-shards/--retrieval-parquet/--retrieval-imagefolder"
        )
    if cli.localize and not cli.query:
        raise SystemExit("--localize needs --query TEXT")
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
    if cli.linear_probe:
        results["linear_probe"] = linear_probe_accuracy(model, preprocess, cli.linear_probe, cli.batch_size, cli.device)
    if retrieval_source:
        if cli.retrieval_shards:
            pairs, source = pairs_from_shards(cli.retrieval_shards), cli.retrieval_shards
        elif cli.retrieval_imagefolder:
            pairs, source = pairs_from_image_folder(cli.retrieval_imagefolder), cli.retrieval_imagefolder
        else:
            pairs = pairs_from_parquet(cli.retrieval_parquet, cli.image_column, cli.caption_column)
            source = cli.retrieval_parquet
        results["retrieval"] = {
            "source": source,
            **retrieval_recall(
                model, preprocess, tokenizer, pairs, cli.batch_size, cli.max_retrieval_pairs, cli.device
            ),
        }
    if cli.localize:
        from training.localize import localize

        results["localize"] = localize(
            model, preprocess, tokenizer, cli.localize, cli.query, cli.localize_output, cli.device
        )
    if cli.compositional:
        results["compositional"] = compositional.compositional_accuracy(
            model, preprocess, tokenizer, cli.compositional, cli.batch_size, cli.device
        )
    if cli.long_retrieval:
        descriptions = compositional.pairs_from_descriptions(
            cli.long_retrieval, cli.long_retrieval_images, cli.long_retrieval_split
        )
        results["long_retrieval"] = {
            "source": cli.long_retrieval,
            **retrieval_recall(
                model, preprocess, tokenizer, descriptions, cli.batch_size, cli.max_retrieval_pairs, cli.device
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
