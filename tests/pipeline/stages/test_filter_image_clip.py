"""filter-image's model rules on real photos with a real (untrained) open_clip checkpoint: the CLIP-score filter and
semantic near-duplicates, in one stage run under RunInference; both off by default.

The expected fates come from the same checkpoint loaded independently (``training.evaluate.load_model``, the loader
``training.embed`` uses) over the stored bytes: the CLIP-score threshold is put between two neighbouring scores of the
rows, and the dedup threshold (0.05, a value a user would set) is checked to lie between every re-encoded copy's
distance to its original and every distinct pair's distance, so a change of model fails here loudly.
"""

from __future__ import annotations

import io
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from pipeline.core.config import PRESETS, CorpusOptions, resolve_config
from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout
from pipeline.stages import filter_image
from schemas import Candidate, FetchedImage, Rejection, SampleImage, TextKept
from tests.fixtures.image_corpus import image_row, jpeg, photo, text_kept_row, write_rows
from tests.fixtures.search_index import untrained_checkpoint

DEDUP_THRESHOLD = 0.05
DISTINCT = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "retina")
COPIED = ("astronaut", "coffee")
ALTS_PER_IMAGE = 3


def near_copy(image: Image.Image) -> bytes:
    """A 1%-cropped, resized (240 px), re-compressed (JPEG q60) copy: another sha256, the same picture."""
    width, height = image.size
    cropped = image.crop((width // 100, height // 100, width - width // 100, height - height // 100))
    return jpeg(cropped, (240, 240), quality=60)


def build_inputs(root: Path) -> tuple[list[dict], list[dict]]:
    """Candidates (three alts per image) and images: eight distinct photos and re-encoded copies of two."""
    images, candidates = [], []
    pictures = [(name, jpeg(photo(name), (256, 256))) for name in DISTINCT]
    pictures += [(f"{name}-copy", near_copy(photo(name))) for name in COPIED]
    for name, data in pictures:
        url = f"https://img.example/{name}.jpg"
        images.append(image_row(url, data))
        for alt in range(ALTS_PER_IMAGE):
            text = [f"a photo of {name}", f"{name} seen from afar", f"picture number {alt} of a {name}"][alt]
            candidates.append(text_kept_row(url, text, len(candidates)))
    write_rows(root / "candidates", Candidate, [Candidate.project(row) for row in candidates])
    write_rows(root / "text_kept", TextKept, candidates)
    write_rows(root / "images", FetchedImage, images)
    return candidates, images


def independent_embeddings(checkpoint: Path, images: list[dict], candidates: list[dict]) -> tuple[dict, dict]:
    """Image vectors by sha256 and text vectors by alt text, from the checkpoint loaded outside the pipeline."""
    import torch

    from training.evaluate import load_model

    model, preprocess, tokenizer, _ = load_model(str(checkpoint), None, "cpu")
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(io.BytesIO(i[FetchedImage.IMAGE])).convert("RGB")) for i in images])
        image_vectors = model.encode_image(pixels, normalize=True).numpy()
        alts = sorted({row[TextKept.ALT_TEXT] for row in candidates})
        text_vectors = model.encode_text(tokenizer(alts), normalize=True).numpy()
    return (
        {image[FetchedImage.SHA256]: vector for image, vector in zip(images, image_vectors, strict=True)},
        dict(zip(alts, text_vectors, strict=True)),
    )


def read_folder(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("filter-image-clip")
    checkpoint = untrained_checkpoint(root / "run")
    candidates, images = build_inputs(root)
    image_vectors, text_vectors = independent_embeddings(checkpoint, images, candidates)
    sha_of_url = {image[FetchedImage.IMAGE_URL]: image[FetchedImage.SHA256] for image in images}
    scores = {
        row[TextKept.CANDIDATE_ID]: float(
            np.dot(image_vectors[sha_of_url[row[TextKept.IMAGE_URL]]], text_vectors[row[TextKept.ALT_TEXT]])
        )
        for row in candidates
    }
    ordered = sorted(scores.values())
    middle = len(ordered) // 2
    assert ordered[middle] - ordered[middle - 1] > 1e-4, "two middle scores too close to put a threshold between"
    min_score = (ordered[middle] + ordered[middle - 1]) / 2
    counters = filter_image.run(
        [
            f"--output={root}",
            f"--clip-score-checkpoint={checkpoint}",
            f"--min-clip-score={min_score}",
            f"--semantic-dedup-threshold={DEDUP_THRESHOLD}",
            "--clip-score-batch-size=8",
        ]
    )
    return root, candidates, images, image_vectors, scores, min_score, counters


def expected_fates(candidates, images, image_vectors, scores, min_score) -> dict[str, str]:
    """Each candidate's fate: ``low_clip_score`` under the threshold; of a picture and its smaller copy that both keep
    rows, the copy's are ``semantic_duplicate``; the rest kept."""
    sha_of_url = {image[FetchedImage.IMAGE_URL]: image[FetchedImage.SHA256] for image in images}
    fates = {row[TextKept.CANDIDATE_ID]: "low_clip_score" if scores[row[TextKept.CANDIDATE_ID]] < min_score else "kept"
             for row in candidates}  # fmt: skip
    surviving = {
        sha_of_url[row[TextKept.IMAGE_URL]] for row in candidates if fates[row[TextKept.CANDIDATE_ID]] == "kept"
    }
    for name in COPIED:
        original, copy = (sha_of_url[f"https://img.example/{n}.jpg"] for n in (name, f"{name}-copy"))
        if {original, copy} <= surviving:
            for row in candidates:
                if sha_of_url[row[TextKept.IMAGE_URL]] == copy and fates[row[TextKept.CANDIDATE_ID]] == "kept":
                    fates[row[TextKept.CANDIDATE_ID]] = "semantic_duplicate"
    return fates


@pytest.mark.slow
@pytest.mark.needs_torch
def test_the_dedup_threshold_separates_copies_from_distinct_photos(clip_run) -> None:
    _, _, images, image_vectors, *_ = clip_run
    sha_of_url = {image[FetchedImage.IMAGE_URL]: image[FetchedImage.SHA256] for image in images}
    vector = {url.rsplit("/", 1)[1][:-4]: image_vectors[sha] for url, sha in sha_of_url.items()}
    copies = [1.0 - float(vector[name] @ vector[f"{name}-copy"]) for name in COPIED]
    distinct = [1.0 - float(vector[a] @ vector[b]) for a in DISTINCT for b in DISTINCT if a < b]
    assert max(copies) < DEDUP_THRESHOLD < min(distinct), (copies, min(distinct))


@pytest.mark.slow
@pytest.mark.needs_torch
def test_low_scores_and_semantic_duplicates_are_rejected_and_the_books_balance(clip_run) -> None:
    root, candidates, images, image_vectors, scores, min_score, counters = clip_run
    expected = expected_fates(candidates, images, image_vectors, scores, min_score)
    sha_of_url = {image[FetchedImage.IMAGE_URL]: image[FetchedImage.SHA256] for image in images}
    assert list(expected.values()).count("semantic_duplicate") >= 1, "the run must exercise the dedup"
    assert list(expected.values()).count("low_clip_score") == len(candidates) // 2
    found: dict[str, list[str]] = {}
    for row in read_folder(root / "samples"):
        found.setdefault(row[SampleImage.CANDIDATE_ID], []).append("kept")
    rejected = read_folder(root / "rejected")
    for row in rejected:
        found.setdefault(row[Rejection.CANDIDATE_ID], []).append(row[Rejection.REASON])
    assert {cid: fates for cid, fates in found.items()} == {cid: [fate] for cid, fate in expected.items()}
    # The score in the detail is the pair's own, as the independent model computed it.
    for row in rejected:
        if row[Rejection.REASON] == "low_clip_score":
            recorded = float(row[Rejection.DETAIL].split()[2])
            assert recorded == pytest.approx(scores[row[Rejection.CANDIDATE_ID]], abs=1e-3), row[Rejection.DETAIL]
            assert row[Rejection.DETAIL].endswith(f"< {min_score}")
        else:
            assert row[Rejection.REASON] == "semantic_duplicate"
            originals = {sha_of_url[f"https://img.example/{name}.jpg"] for name in COPIED}
            assert "cosine distance 0.0" in row[Rejection.DETAIL], row[Rejection.DETAIL]
            assert row[Rejection.DETAIL].split("to image sha256 ")[1].split()[0] in originals
    fates = list(expected.values())
    for reason in ("low_clip_score", "semantic_duplicate"):
        assert counters[reason] == fates.count(reason)
    assert counters["samples"] == fates.count("kept")
    assert counters.get("clip_score_missing", 0) == 0 and counters.get("clip_model_error", 0) == 0


def graph_labels(argv: list[str]) -> list[str]:
    """Every transform label of the filter-image graph ``argv`` configures (built, not run)."""
    options = PipelineOptions(argv)
    config = resolve_config(options)
    pipeline = beam.Pipeline(options=options)
    filter_image.build(pipeline, CorpusLayout(options.view_as(CorpusOptions).output), config, options)
    labels: list[str] = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node) -> None:
            labels.append(node.full_label)

        def visit_transform(self, node) -> None:
            labels.append(node.full_label)

    pipeline.visit(Visitor())
    return labels


@pytest.mark.slow  # two Beam graphs built: about 7 s on a loaded 2-core box
def test_off_by_default_no_model_step_in_the_graph(tmp_path: Path) -> None:
    for preset in PRESETS.values():
        image = preset.image
        assert (image.clip_score_checkpoint, image.min_clip_score, image.semantic_dedup_threshold) == ("", None, None)
    default = graph_labels([f"--output={tmp_path}"])
    assert not [label for label in default if "RunInference" in label or "Clip" in label or "Semantic" in label]
    checkpoint = tmp_path / "epoch_1.pt"
    checkpoint.write_bytes(b"not read while the graph is built")
    both = graph_labels(
        [
            f"--output={tmp_path}",
            f"--clip-score-checkpoint={checkpoint}",
            "--min-clip-score=0.2",
            "--semantic-dedup-threshold=0.05",
        ]
    )
    assert any(label.endswith("ClipEmbeddings/Embed/RunInference") for label in both), both
    assert any(label.startswith("ClipScore") for label in both) and any(
        label.startswith("SemanticDedup") for label in both
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-clip-score=0.28"], "--min-clip-score needs --clip-score-checkpoint"),
        (["--semantic-dedup-threshold=0.05", "--clip-score-checkpoint=/no/such/epoch_3.pt"], "is not a file"),
        (["--min-clip-score=1.5"], "--min-clip-score 1.5 is out of range"),
    ],
)
def test_settings_are_refused_before_anything_runs(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_config(PipelineOptions([f"--output={tmp_path}", *flags]))


def test_a_checkpoint_without_a_rule_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "epoch_1.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(UsageError, match="neither --min-clip-score nor --semantic-dedup-threshold"):
        resolve_config(PipelineOptions([f"--output={tmp_path}", f"--clip-score-checkpoint={checkpoint}"]))
