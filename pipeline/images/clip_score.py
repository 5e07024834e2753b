"""filter-image's model-based rules: DataComp's CLIP-score filter and semantic near-duplicates (SemDeDup-style).

Both read embeddings of one open_clip checkpoint (``--clip-score-checkpoint``, built by ``training.evaluate.load_model``
as ``training.embed`` builds it: the run's ``params.txt`` gives the model name and preprocessing unless
``--clip-score-model`` names the model), computed under Beam's ``RunInference`` by ``ClipEmbeddingHandler``: the
model is loaded once per worker, images and alt texts are batched (one batch may mix both), on the worker's GPU
when it has one. Each distinct image content (sha256) and each distinct alt text is embedded once.

- CLIP score: the cosine similarity of the L2-normalised image and alt-text embeddings, as DataComp's
  ``clip_l14_similarity_score`` (no logit scale). A pair scoring below ``min_clip_score`` is rejected
  (``low_clip_score``, the score in the detail). An absolute threshold, DataComp's ``--threshold`` mode, not its
  "top 30%" mode: a threshold decides each pair alone (no global quantile pass, the same answer for any slice of a
  crawl); LAION-2B's cut, DataComp's ``laion`` baseline, is 0.28 with OpenAI's ViT-B/32. A threshold only means
  something for the model it was chosen with.
- Semantic near-duplicates: an image content whose embedding lies within cosine distance ``semantic_dedup_threshold``
  of an earlier one (the larger original first, so a resized copy goes and its source stays; then by sha256) among
  the images still kept is rejected (``semantic_duplicate``; the detail
  names the earlier image and the distance). SemDeDup's rule (Abbas et al., 2023): an item goes when any earlier item
  is that close, whether that one stays or not, so each image's fate depends on pairs only and needs no global pass.
  To scale, images are compared only within buckets of a locality-sensitive hash (random hyperplanes, Charikar
  2002): ``hash_tables`` tables of ``hash_bits`` sign bits each; two images at angle theta share a bucket of one
  table with probability ``(1 - theta/pi) ** bits``, so a pair at the threshold is found with probability
  ``lsh_recall``. A bucket is held in one worker's memory and compared blockwise (O(n^2) dot products): a crawl with
  one picture re-encoded a million times puts a million vectors (2 GB at 512 dimensions) in one bucket, the limit of
  this design; exact copies (same sha256) are one image here and never count twice.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from pipeline.core.config import ImageFilterConfig

#: What an example embeds: an image (a decoded PIL image) or a text (an alt text).
IMAGE, TEXT = "image", "text"
#: Seed of the random hyperplanes: fixed, so the buckets and so the duplicates found are the same on every run.
LSH_SEED = 20_260_419
#: Compare a bucket's vectors this many rows at a time (bounds the similarity block's memory).
COMPARE_BLOCK = 1024


@dataclass(frozen=True)
class LoadedClip:
    """A worker's model: the open_clip model, its image transform, its tokenizer and its device."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str


def resolve_device(device: str) -> str:
    """``auto`` is the worker's first GPU when torch sees one, else the CPU."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cuda:0" if device == "cuda" else "cpu"


class ClipEmbeddingHandler(ModelHandler[tuple[str, Any], PredictionResult, LoadedClip]):
    """An open_clip checkpoint as a RunInference model handler: ``(IMAGE, PIL image)`` or ``(TEXT, str)`` in, the
    L2-normalised float32 embedding out. A batch may mix images and texts: each kind goes through its tower at once.
    """

    def __init__(self, checkpoint: str, model_name: str, batch_size: int, device: str) -> None:
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.checkpoint = checkpoint
        self.model_name = model_name
        self.device = device

    def load_model(self) -> LoadedClip:
        from training.evaluate import load_model

        device = resolve_device(self.device)
        model, preprocess, tokenizer, _ = load_model(self.checkpoint, self.model_name or None, device)
        return LoadedClip(model, preprocess, tokenizer, device)

    def run_inference(
        self, batch: Sequence[tuple[str, Any]], model: LoadedClip, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        import torch

        vectors: list[np.ndarray | None] = [None] * len(batch)
        with torch.no_grad():
            for kind in (IMAGE, TEXT):
                positions = [i for i, (example_kind, _) in enumerate(batch) if example_kind == kind]
                if not positions:
                    continue
                if kind == IMAGE:
                    pixels = torch.stack([model.preprocess(batch[i][1]) for i in positions]).to(model.device)
                    encoded = model.model.encode_image(pixels, normalize=True)
                else:
                    tokens = model.tokenizer([batch[i][1] for i in positions]).to(model.device)
                    encoded = model.model.encode_text(tokens, normalize=True)
                for position, vector in zip(positions, encoded.float().cpu().numpy(), strict=True):
                    vectors[position] = vector.astype(np.float32)
        for example, vector in zip(batch, vectors, strict=True):
            yield PredictionResult(example, vector, self.checkpoint)

    def get_metrics_namespace(self) -> str:
        return "altcorpus_clip_score"


def clip_score(image_vector: np.ndarray, text_vector: np.ndarray) -> float:
    """Cosine similarity of two L2-normalised embeddings (DataComp's CLIP score), in float64."""
    return float(np.dot(image_vector.astype(np.float64), text_vector.astype(np.float64)))


def decode_image(data: bytes) -> Any:
    """The stored image bytes as an RGB PIL image (the whole image decoded here, not in a batch)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


# -- locality-sensitive hashing of embeddings -----------------------------------------------------------------------


def hyperplanes(dim: int, bits: int, tables: int, seed: int = LSH_SEED) -> np.ndarray:
    """``tables x bits`` random hyperplane normals of ``dim`` dimensions (Gaussian), the same for a given seed."""
    return np.random.default_rng(seed).standard_normal((tables, bits, dim)).astype(np.float32)


def bucket_keys(vector: np.ndarray, planes: np.ndarray) -> list[tuple[int, int]]:
    """The ``(table, bucket)`` of ``vector`` in each table: the sign bits of its projections on the table's planes."""
    signs = (np.einsum("tbd,d->tb", planes, vector) >= 0).astype(np.int64)
    weights = 1 << np.arange(planes.shape[1], dtype=np.int64)
    return [(table, int(code)) for table, code in enumerate(signs @ weights)]


def lsh_recall(distance: float, bits: int, tables: int) -> float:
    """Probability that two vectors at cosine ``distance`` share a bucket in at least one table."""
    angle = math.acos(max(-1.0, min(1.0, 1.0 - distance)))
    same_bucket = (1.0 - angle / math.pi) ** bits
    return 1.0 - (1.0 - same_bucket) ** tables


def earlier_neighbours(
    items: Iterable[tuple[Any, np.ndarray]], max_distance: float
) -> Iterator[tuple[Any, tuple[float, Any]]]:
    """``(name, (distance, earlier name))`` for each item with an earlier item (in name order: filter-image names an
    image by its dedup rank) within ``max_distance``: the nearest such one. Blockwise: a block of rows against every earlier row at a time."""
    ordered = sorted(items, key=lambda item: item[0])
    if len(ordered) < 2:
        return
    names = [name for name, _ in ordered]
    matrix = np.stack([vector for _, vector in ordered]).astype(np.float32)
    for start in range(1, len(ordered), COMPARE_BLOCK):
        stop = min(start + COMPARE_BLOCK, len(ordered))
        distances = 1.0 - matrix[start:stop] @ matrix[:stop].T
        for row in range(stop - start):
            position = start + row
            earlier = distances[row, :position]
            nearest = int(np.argmin(earlier))
            if earlier[nearest] <= max_distance:
                yield names[position], (round(float(earlier[nearest]), 6), names[nearest])


# -- Beam steps -----------------------------------------------------------------------------------------------------


def embedding_handler(config: ImageFilterConfig) -> KeyedModelHandler:
    """The keyed RunInference handler of the configured checkpoint."""
    handler = ClipEmbeddingHandler(
        config.clip_score_checkpoint, config.clip_score_model, config.clip_score_batch_size, config.clip_score_device
    )
    return KeyedModelHandler(handler)


class PrepareImage(beam.DoFn):
    """``(sha256, bytes)`` -> ``((IMAGE, sha256), (IMAGE, PIL image))``; bytes that do not decode are counted."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def setup(self) -> None:
        from pipeline.core.rules import counter

        self.failed = counter(self.stage, "clip_image_decode_error")

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        sha256, data = element
        try:
            image = decode_image(data)
        except Exception:  # Pillow raises many types for bad bytes; the image then gets no embedding, no score
            self.failed.inc()
            return
        yield (IMAGE, sha256), (IMAGE, image)


def _vector_of(keyed: tuple[tuple[str, str], PredictionResult]) -> tuple[tuple[str, str], np.ndarray]:
    (kind, name), result = keyed
    return (kind, name), result.inference


class EmbedImagesAndTexts(beam.PTransform):
    """``images`` (``(sha256, bytes)``, one per content) and ``texts`` (distinct alt texts, or None) -> one
    PCollection of ``((IMAGE | TEXT, sha256 | alt text), vector)`` from one RunInference (one model per worker)."""

    def __init__(self, config: ImageFilterConfig, stage: str, texts: beam.PCollection | None) -> None:
        super().__init__()
        self.config = config
        self.stage = stage
        self.texts = texts

    def expand(self, images: beam.PCollection) -> beam.PCollection:
        examples = [images | "DecodeForModel" >> beam.ParDo(PrepareImage(self.stage))]
        if self.texts is not None:
            examples.append(self.texts | "TextExamples" >> beam.Map(lambda alt: ((TEXT, alt), (TEXT, alt))))
        inference = (
            examples
            | "AllExamples" >> beam.Flatten()
            | "RunInference" >> RunInference(embedding_handler(self.config)).with_exception_handling()
        )
        results, dead_letters = inference
        stage = self.stage
        _ = dead_letters.failed_inferences | "CountModelErrors" >> beam.ParDo(CountFailedBatch(stage))
        return results | "Vectors" >> beam.Map(_vector_of)


class CountFailedBatch(beam.DoFn):
    """Count the examples of a batch the model raised on (they get no embedding: their rows pass unscored)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def setup(self) -> None:
        from pipeline.core.rules import counter

        self.failed = counter(self.stage, "clip_model_error")

    def process(self, failed: tuple[Sequence[Any], Any]) -> Iterator[Any]:
        batch, _ = failed
        self.failed.inc(len(batch))
        return iter(())


class SemanticDuplicates(beam.PTransform):
    """``(name, vector)`` of distinct images -> ``(name, (distance, earlier name))`` for each image with an
    earlier image (in name order) within ``max_distance`` (the nearest one): LSH buckets, pairs compared within each bucket, the
    nearest of each image's finds kept by a combiner."""

    def __init__(self, max_distance: float, bits: int, tables: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.bits = bits
        self.tables = tables

    def expand(self, vectors: beam.PCollection) -> beam.PCollection:
        from pipeline.stages.filter_image import SmallestFn

        bits, tables, max_distance = self.bits, self.tables, self.max_distance
        return (
            vectors
            | "Buckets" >> beam.ParDo(HashIntoBuckets(bits, tables))
            | "GroupByBucket" >> beam.GroupByKey()
            | "PairsInBucket" >> beam.FlatMap(lambda element: earlier_neighbours(element[1], max_distance))
            | "NearestEarlier" >> beam.CombinePerKey(SmallestFn())
        )


class HashIntoBuckets(beam.DoFn):
    """``(name, vector)`` -> ``((table, bucket), (name, vector))`` once per table (planes drawn once per worker)."""

    def __init__(self, bits: int, tables: int) -> None:
        self.bits = bits
        self.tables = tables
        self.planes: np.ndarray | None = None

    def process(self, element: tuple[str, np.ndarray]) -> Iterator[Any]:
        sha256, vector = element
        if self.planes is None or self.planes.shape[2] != vector.shape[0]:
            self.planes = hyperplanes(vector.shape[0], self.bits, self.tables)
        for key in bucket_keys(vector, self.planes):
            yield key, (sha256, vector)
