"""A generated "shapes world": does training on enhanced captions teach composition that alt text cannot?

Each image holds two coloured shapes side by side, drawn with Pillow (colours, shapes, sizes and positions drawn at
random; the two objects never share a colour or a shape). Each sample has two texts, as a recaptioned web corpus does:

- alt text, bag-of-words style: the four words in a random order (``"square red blue circle"``). Which colour belongs
  to which shape, and what is left of what, is not in the text: ``red circle left of blue square`` and ``blue circle
  left of red square`` have the same alt texts.
- an enhanced caption stating colours and the relation: ``"a red circle left of a blue square"``.

:func:`write_shapes_corpus` writes a corpus in this project's shard layout (``shards/NNNNN.tar`` with ``jpg``,
``txt``, ``json`` and ``enhanced.txt`` members, Parquet twins, ``sizes.json``) through the pipeline's own shard
writer; :func:`write_evaluation_items` writes held-out images and SugarCrepe-style items (``training.compositional``)
with a swapped-attribute and a swapped-relation negative each. ``python -m training.shapes_world --output DIR`` (``make
demo-compositional``) trains the same tiny model once on alt text and once on enhanced captions, with the same seeds,
and prints both models' accuracies side by side (chance is 50%).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (40, 70, 230)}
SHAPES = ("circle", "square", "triangle")
RELATION = "left of"
BACKGROUND = (245, 245, 240)
#: Rendered side; the demo trains at this size (``force_image_size``).
IMAGE_SIZE = 32
#: Drawn this many times larger, then reduced: anti-aliased edges like a photo's, not a pixel-art staircase.
_SUPERSAMPLE = 4
DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "shapes-world.yaml"
#: Categories of the evaluation items and what their negative changes.
CATEGORIES = ("swap_attribute", "swap_relation")


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: a colour name and a shape name."""

    colour: str
    shape: str

    @property
    def words(self) -> str:
        """``"red circle"``."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects, ``left`` left of ``right``, with where and how large each is drawn (fractions of the side)."""

    left: ShapeObject
    right: ShapeObject
    left_box: tuple[float, float, float]  # centre x, centre y, size
    right_box: tuple[float, float, float]

    def caption(self) -> str:
        """The enhanced caption: colours bound to shapes, and the relation."""
        return f"a {self.left.words} {RELATION} a {self.right.words}"

    def alt_text(self, rng: random.Random) -> str:
        """Bag-of-words alt text: the scene's four words in a random order."""
        words = [self.left.colour, self.left.shape, self.right.colour, self.right.shape]
        rng.shuffle(words)
        return " ".join(words)

    def swapped_attribute(self) -> str:
        """A hard negative with the same words: the two colours exchanged."""
        left = ShapeObject(self.right.colour, self.left.shape)
        right = ShapeObject(self.left.colour, self.right.shape)
        return f"a {left.words} {RELATION} a {right.words}"

    def swapped_relation(self) -> str:
        """A hard negative with the same words: the objects exchanged around the relation."""
        return f"a {self.right.words} {RELATION} a {self.left.words}"


def random_scene(rng: random.Random) -> Scene:
    """A scene with two objects of different colours and shapes, in the left and right halves."""
    colours = rng.sample(sorted(COLOURS), 2)
    shapes = rng.sample(SHAPES, 2)
    boxes = []
    for half in (0, 1):
        size = rng.uniform(0.3, 0.42)
        centre_x = rng.uniform(0.25 + 0.5 * half - 0.05, 0.25 + 0.5 * half + 0.05)
        centre_y = rng.uniform(0.3, 0.7)
        boxes.append((centre_x, centre_y, size))
    return Scene(ShapeObject(colours[0], shapes[0]), ShapeObject(colours[1], shapes[1]), boxes[0], boxes[1])


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels."""
    canvas = size * _SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj, (centre_x, centre_y, extent) in ((scene.left, scene.left_box), (scene.right, scene.right_box)):
        half = extent * canvas / 2
        x, y = centre_x * canvas, centre_y * canvas
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse((x - half, y - half, x + half, y + half), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x - half * 0.85, y - half * 0.85, x + half * 0.85, y + half * 0.85), fill=fill)
        else:
            draw.polygon([(x, y - half), (x - half, y + half * 0.8), (x + half, y + half * 0.8)], fill=fill)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def sample_rows(count: int, seed: int, size: int = IMAGE_SIZE, prefix: str = "shapes") -> Iterator[dict[str, Any]]:
    """``SampleImage`` rows (alt text and enhanced caption) of ``count`` random scenes, fixed by ``seed``."""
    import hashlib

    from pipeline.core.keys import sample_key
    from schemas import SampleImage

    rng = random.Random(seed)
    for index in range(count):
        scene = random_scene(rng)
        image_bytes = _jpeg(render(scene, size))
        image_url = f"https://shapes.example/{prefix}/{index}.jpg"
        alt_text = scene.alt_text(rng)
        yield SampleImage.row(
            candidate_id=f"{prefix}-{index}",
            key=sample_key(image_url, alt_text),
            image_url=image_url,
            alt_text=alt_text,
            enhanced_caption=scene.caption(),
            page_url=f"https://shapes.example/{prefix}/",
            language="en",
            sha256=hashlib.sha256(image_bytes).hexdigest(),
            original_width=size,
            original_height=size,
            width=size,
            height=size,
            image=image_bytes,
        )


def write_shapes_corpus(
    output_dir: str | Path, count: int, seed: int, samples_per_shard: int = 500, size: int = IMAGE_SIZE
) -> dict[str, int]:
    """Write ``count`` scenes as a corpus (the pipeline's shard writer); returns ``sizes.json``'s mapping."""
    from pipeline.corpus.shard_files import write_corpus

    return write_corpus(sample_rows(count, seed, size), str(output_dir), samples_per_shard=samples_per_shard)


def write_evaluation_items(output_dir: str | Path, count: int, seed: int, size: int = IMAGE_SIZE) -> Path:
    """Write ``count`` held-out scenes as ``images/NNNNN.png`` and ``items.jsonl`` (two items per image).

    Each image gets a ``swap_attribute`` item (colours exchanged) and a ``swap_relation`` item (objects exchanged
    around "left of"); a negative has exactly the positive's words, so bag-of-words text cannot tell them apart.
    """
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        scene = random_scene(rng)
        image_path = f"images/{index:05d}.png"
        render(scene, size).save(output_dir / image_path)
        for category, negative in zip(CATEGORIES, (scene.swapped_attribute(), scene.swapped_relation()), strict=True):
            item = {"image": image_path, "caption": scene.caption(), "negative_captions": [negative]}
            lines.append(json.dumps({**item, "category": category}))
    items = output_dir / "items.jsonl"
    items.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return items


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and seeds of the demo: the test and ``make demo-compositional`` use the same defaults."""

    train_samples: int = 2000
    eval_images: int = 200
    epochs: int = 2
    seed: int = 0
    samples_per_shard: int = 500


def run_demo(output: str | Path, settings: DemoSettings = DemoSettings()) -> dict[str, Any]:
    """Generate the world, train on alt text and on enhanced captions, evaluate both; return the accuracies."""
    from training import compositional, evaluate, train

    output = Path(output)
    corpus = output / "corpus"
    write_shapes_corpus(corpus, settings.train_samples, settings.seed, settings.samples_per_shard)
    items = write_evaluation_items(output / "eval", settings.eval_images, settings.seed + 1)
    results: dict[str, Any] = {}
    for text in ("alt", "enhanced"):
        name = f"shapes-{text}"
        shutil.rmtree(output / "runs" / name, ignore_errors=True)  # a fresh run each time: the demo is not resumed
        status = train.run([
            "--corpus", str(corpus), "--config", str(DEMO_CONFIG), "--logs", str(output / "runs"), "--name", name,
            "--set", f"caption_source={text}", "--set", f"epochs={settings.epochs}", "--set", f"seed={settings.seed}",
            "--set", "resume=null",
        ])  # fmt: skip
        if status != 0:
            raise RuntimeError(f"training on {text} captions failed with status {status}")
        checkpoint = output / "runs" / name / "checkpoints" / f"epoch_{settings.epochs}.pt"
        model, preprocess, tokenizer, _ = evaluate.load_model(str(checkpoint))
        results[text] = compositional.compositional_accuracy(model, preprocess, tokenizer, items)
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def format_comparison(results: dict[str, Any]) -> str:
    """The two models' accuracies side by side, per category and overall."""
    rows = [("category", "items", "alt text", "enhanced")]
    for category in sorted(results["alt"]["categories"]):
        alt, enhanced = results["alt"]["categories"][category], results["enhanced"]["categories"][category]
        rows.append((category, str(alt["num_items"]), f"{alt['accuracy']:.1%}", f"{enhanced['accuracy']:.1%}"))
    rows.append(
        (
            "all",
            str(results["alt"]["num_items"]),
            f"{results['alt']['accuracy']:.1%}",
            f"{results['enhanced']['accuracy']:.1%}",
        )
    )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n(chance: 50%: one positive and one hard negative per item)"


def main(argv: list[str] | None = None) -> None:
    """``python -m training.shapes_world --output DIR``: the demo, printed as a table."""
    parser = argparse.ArgumentParser(prog="python -m training.shapes_world", description=__doc__)
    parser.add_argument("--output", default="build/demo-compositional", help="folder for corpus, runs and results")
    parser.add_argument("--train-samples", type=int, default=DemoSettings.train_samples)
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    parser.add_argument("--seed", type=int, default=DemoSettings.seed)
    cli = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = DemoSettings(train_samples=cli.train_samples, epochs=cli.epochs, seed=cli.seed)
    results = run_demo(cli.output, settings)
    print(format_comparison(results))


if __name__ == "__main__":
    main()
