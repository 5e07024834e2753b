"""filter-image on real photos: every ALIGN rule at its thresholds, eval decontamination, the unsafe hook, and books.

One full stage run (two worker processes) on hand-built candidates/, text_kept/ and images/ tables covers the wiring
(candidates/ holds every text_kept/ row plus raw-only rows, as if filter-text had dropped them: the alts-per-image
rule counts those too); the rule functions are also checked directly at their edges, including the inclusive
(DataComp) aspect-ratio variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.core.config import ImageFilterConfig
from pipeline.images.eval_index import build_eval_index
from pipeline.stages import filter_image
from schemas import Candidate, FetchedImage, Rejection, SampleImage, TextKept
from tests.fixtures.image_corpus import image_row, jpeg, photo, text_kept_row, write_rows

MAX_UNSAFE = 0.6


def mean_brightness(image: Image.Image) -> float:
    """A real (if naive) scorer for the hook: mean luminance in [0, 1]; the bright scanned page scores ~0.67."""
    return float(np.asarray(image.convert("L"), dtype=np.float32).mean() / 255.0)


def near_copy(image: Image.Image) -> bytes:
    """A resized (half), re-compressed (JPEG q60), slightly cropped (1% per side) copy of a photo."""
    width, height = image.size
    cropped = image.crop((width // 100, height // 100, width - width // 100, height - height // 100))
    return jpeg(cropped, (cropped.width // 2, cropped.height // 2), quality=60)


class Inputs:
    """Builds candidates/, text_kept/ and images/ and remembers what fate each candidate must meet."""

    def __init__(self) -> None:
        self.candidates: list[dict] = []
        self.raw_only: list[dict] = []  # in candidates/ but not in text_kept/: dropped by filter-text
        self.images: list[dict] = []
        self.expected: dict[str, str] = {}  # candidate_id -> "kept" | reason | "fetch"

    def image(self, url: str, data: bytes | None, status: str = "ok", original_size: tuple[int, int] | None = None):
        self.images.append(image_row(url, data, status, original_size))

    def candidate(self, url: str, alt_text: str, fate: str) -> dict:
        row = text_kept_row(url, alt_text, len(self.candidates))
        self.candidates.append(row)
        self.expected[row[TextKept.CANDIDATE_ID]] = fate
        return row

    def dropped_by_text_filter(self, url: str, alt_text: str) -> None:
        self.raw_only.append(text_kept_row(url, alt_text, len(self.candidates) + len(self.raw_only) + 100_000))

    def write(self, root: Path) -> None:
        raw = [Candidate.project(row) for row in self.candidates + self.raw_only]
        write_rows(root / "candidates", Candidate, raw)
        write_rows(root / "text_kept", TextKept, self.candidates)
        write_rows(root / "images", FetchedImage, self.images)


def expect_one_kept(inputs: Inputs, same_content_and_alt: list[dict]) -> None:
    """Of candidates with the same image content and alt text, the smallest (key, candidate_id) is the sample."""
    winner = min(same_content_and_alt, key=lambda row: (row[TextKept.KEY], row[TextKept.CANDIDATE_ID]))
    for row in same_content_and_alt:
        inputs.expected[row[TextKept.CANDIDATE_ID]] = "kept" if row is winner else "duplicate_image_alt"


def build_inputs(root: Path) -> Inputs:
    inputs = Inputs()
    astronaut, coffee = photo("astronaut"), photo("coffee")
    # Size on the original image: 200 is too small, 201 is enough (ALIGN: shorter side > 200).
    for name, size, fate in [
        ("small-200", (200, 400), "image_too_small"),
        ("small-201", (201, 402), "kept"),
        ("wide-200", (400, 200), "image_too_small"),
    ]:
        inputs.image(f"https://img.example/{name}.jpg", jpeg(astronaut, size))
        inputs.candidate(f"https://img.example/{name}.jpg", f"an astronaut portrait {name}", fate)
    # The rule reads the original size, not the stored (resized) one.
    inputs.image("https://img.example/big-stored-small.jpg", jpeg(astronaut, (150, 150)), original_size=(600, 600))
    inputs.candidate("https://img.example/big-stored-small.jpg", "astronaut in a suit", "kept")
    inputs.image("https://img.example/small-stored-big.jpg", jpeg(astronaut, (300, 300)), original_size=(150, 150))
    inputs.candidate("https://img.example/small-stored-big.jpg", "astronaut with a flag", "image_too_small")
    # Aspect ratio long/short: 2.99 kept, 3.0 and 3.01 dropped (ALIGN: < 3).
    for long_side, fate in [(897, "kept"), (900, "aspect_ratio_too_extreme"), (903, "aspect_ratio_too_extreme")]:
        url = f"https://img.example/coffee-{long_side}.jpg"
        inputs.image(url, jpeg(coffee, (long_side, 300)))
        inputs.candidate(url, f"a cup of coffee {long_side}", fate)
    # Image frequency by content: the same rocket at 4 URLs carries exactly 1000 distinct alts (kept), repeated alts
    # at a fifth URL are duplicates, not new alts; the camera man at 3 URLs carries 1001 (all dropped).
    rocket = jpeg(photo("rocket"), (320, 240))
    for index in range(4):
        inputs.image(f"https://img.example/rocket-{index}.jpg", rocket)
    first_copies = [
        inputs.candidate(f"https://img.example/rocket-{alt % 4}.jpg", f"rocket launch number {alt}", "kept")
        for alt in range(1000)
    ]
    inputs.image("https://img.example/rocket-4.jpg", rocket)
    for alt in range(10):
        second_copy = inputs.candidate("https://img.example/rocket-4.jpg", f"rocket launch number {alt}", "?")
        expect_one_kept(inputs, [first_copies[alt], second_copy])
    camera = jpeg(photo("camera"), (256, 256))
    for index in range(3):
        inputs.image(f"https://img.example/camera-{index}.jpg", camera)
    for alt in range(1001):
        inputs.candidate(f"https://img.example/camera-{alt % 3}.jpg", f"camera man {alt}", "image_has_too_many_alts")
    # ALIGN counts alts on the raw data, as filter-text's per-URL rule does: 600 survivors of the text filters are
    # below the limit, but with the 401 other alt texts filter-text dropped the picture carries 1001: all dropped.
    cells = jpeg(photo("hubble_deep_field"), (300, 300))
    for index in range(2):
        inputs.image(f"https://img.example/cells-{index}.jpg", cells)
    for alt in range(600):
        inputs.candidate(f"https://img.example/cells-{alt % 2}.jpg", f"stained tissue {alt}", "image_has_too_many_alts")
    for alt in range(600, 1001):
        inputs.dropped_by_text_filter(f"https://img.example/cells-{alt % 2}.jpg", f"stained tissue {alt}")
    # Raw rows that add no distinct alt leave the rocket at exactly 1000: its own alts again at another URL of the
    # same picture, and new alts at a URL whose image fetch could not get (no content to count them for).
    for alt in range(50):
        inputs.dropped_by_text_filter(f"https://img.example/rocket-{(alt + 1) % 4}.jpg", f"rocket launch number {alt}")
        inputs.dropped_by_text_filter("https://img.example/missing.jpg", f"rocket launch extra {alt}")
    # Exact duplicates: one sample per (content, alt text), whatever the URL; the smallest (key, candidate_id) stays.
    cat = jpeg(photo("chelsea"))
    duplicates = []
    for index in range(3):
        inputs.image(f"https://img.example/cat-{index}.jpg", cat)
        duplicates.append(inputs.candidate(f"https://img.example/cat-{index}.jpg", "a cat on a sofa", "?"))
    expect_one_kept(inputs, duplicates)
    inputs.candidate("https://img.example/cat-2.jpg", "a tabby cat", "kept")
    # Evaluation leakage: a resized, re-compressed, cropped copy of an indexed eval photo.
    inputs.image("https://img.example/retina-copy.jpg", near_copy(photo("retina")))
    inputs.candidate("https://img.example/retina-copy.jpg", "a retina scan", "eval_near_duplicate")
    # Unsafe hook: the bright scanned page scores above the limit.
    inputs.image("https://img.example/page.jpg", jpeg(photo("page"), (600, 300)))
    inputs.candidate("https://img.example/page.jpg", "a scanned book page", "unsafe")
    # Fetch failures were rejected by fetch: counted here, written nowhere.
    inputs.image("https://img.example/missing.jpg", None, status="http_404")
    inputs.candidate("https://img.example/missing.jpg", "a missing picture", "fetch")
    # A URL fetch never wrote a row for: recorded, not lost.
    inputs.candidate("https://img.example/never-fetched.jpg", "a forgotten picture", "image_not_fetched")
    inputs.write(root)
    eval_dir = root / "eval"
    eval_dir.mkdir()
    photo("retina").save(eval_dir / "retina.png")
    photo("moon").save(eval_dir / "moon.png")
    build_eval_index([str(eval_dir)], str(root / "eval_index.parquet"))
    return inputs


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Inputs, dict[str, int]]:
    root = tmp_path_factory.mktemp("filter-image")
    inputs = build_inputs(root)
    counters = filter_image.run(
        [
            f"--output={root}",
            f"--eval-index={root / 'eval_index.parquet'}",
            f"--unsafe-scorer={__name__}:mean_brightness",
            f"--max-unsafe-score={MAX_UNSAFE}",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    return root, inputs, counters


def read_folder(folder: Path) -> list[dict]:
    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_every_candidate_meets_its_fate_exactly_once(stage_run: tuple[Path, Inputs, dict[str, int]]) -> None:
    root, inputs, _ = stage_run
    samples = read_folder(root / "samples")
    rejected = [row for row in read_folder(root / "rejected") if row[Rejection.STAGE] == "filter-image"]
    found: dict[str, list[str]] = {}
    for row in samples:
        found.setdefault(row[SampleImage.CANDIDATE_ID], []).append("kept")
    for row in rejected:
        found.setdefault(row[Rejection.CANDIDATE_ID], []).append(row[Rejection.REASON])
    wrong = {
        cid: (fate, found.get(cid))
        for cid, fate in inputs.expected.items()
        if found.get(cid, []) != ([] if fate == "fetch" else [fate])
    }
    assert not wrong, f"{len(wrong)} candidates in the wrong place, e.g. {list(wrong.items())[:5]}"
    assert set(found) <= set(inputs.expected)


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_samples_carry_their_image_and_the_unsafe_score(stage_run: tuple[Path, Inputs, dict[str, int]]) -> None:
    root, inputs, _ = stage_run
    by_url = {row[FetchedImage.IMAGE_URL]: row for row in inputs.images}
    samples = read_folder(root / "samples")
    assert len(samples) == sum(1 for fate in inputs.expected.values() if fate == "kept")
    for sample in samples:
        image = by_url[sample[SampleImage.IMAGE_URL]]
        assert sample[SampleImage.IMAGE] == image[FetchedImage.IMAGE]
        assert sample[SampleImage.SHA256] == image[FetchedImage.SHA256]
        assert sample[SampleImage.ORIGINAL_WIDTH] == image[FetchedImage.ORIGINAL_WIDTH]
        assert 0.0 < sample[SampleImage.UNSAFE_SCORE] <= MAX_UNSAFE
        assert sample[SampleImage.SHARD] is None


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_rejections_explain_themselves_and_counters_add_up(stage_run: tuple[Path, Inputs, dict[str, int]]) -> None:
    root, inputs, counters = stage_run
    rejected = {row[Rejection.REASON]: row for row in read_folder(root / "rejected")}
    assert "distance" in rejected["eval_near_duplicate"][Rejection.DETAIL]
    assert "retina.png" in rejected["eval_near_duplicate"][Rejection.DETAIL]
    assert "1001 distinct alt texts" in rejected["image_has_too_many_alts"][Rejection.DETAIL]
    assert "score 0.6" in rejected["unsafe"][Rejection.DETAIL]
    assert counters["image_not_ok"] == 1
    assert counters["candidates"] == len(inputs.candidates)
    fates = list(inputs.expected.values())
    assert counters["samples"] == fates.count("kept")
    for reason in ("image_too_small", "aspect_ratio_too_extreme", "duplicate_image_alt", "image_has_too_many_alts"):
        assert counters[reason] == fates.count(reason), reason
    success = json.loads((root / "samples" / "_SUCCESS").read_text())
    assert success["config"]["image"]["eval_max_distance"] == ImageFilterConfig().eval_max_distance


def sized(width: int, height: int) -> dict:
    return {SampleImage.ORIGINAL_WIDTH: width, SampleImage.ORIGINAL_HEIGHT: height}


def test_size_and_aspect_rules_at_their_edges() -> None:
    align = ImageFilterConfig()
    too_small = filter_image.too_small_rule(align)
    assert too_small(sized(201, 201)) is None
    assert too_small(sized(200, 5000))[0] == "image_too_small"
    assert too_small(sized(5000, 200))[0] == "image_too_small"
    exclusive = filter_image.aspect_ratio_rule(align)
    inclusive = filter_image.aspect_ratio_rule(ImageFilterConfig(aspect_ratio_inclusive=True))
    assert exclusive(sized(299, 100)) is None and inclusive(sized(299, 100)) is None
    assert exclusive(sized(100, 300))[0] == "aspect_ratio_too_extreme" and inclusive(sized(100, 300)) is None
    assert exclusive(sized(301, 100))[0] == "aspect_ratio_too_extreme"
    assert inclusive(sized(301, 100))[0] == "aspect_ratio_too_extreme"
    assert exclusive(sized(0, 100))[0] == "aspect_ratio_too_extreme"
    off = ImageFilterConfig(min_shorter_side_px=None, max_aspect_ratio=None)
    assert filter_image.too_small_rule(off)(sized(1, 1)) is None
    assert filter_image.aspect_ratio_rule(off)(sized(1, 100)) is None


def test_unsafe_rule_only_drops_with_a_limit() -> None:
    row = {SampleImage.UNSAFE_SCORE: 0.9}
    assert filter_image.unsafe_rule(ImageFilterConfig())(row) is None
    assert filter_image.unsafe_rule(ImageFilterConfig(max_unsafe_score=0.9))(row) is None
    assert filter_image.unsafe_rule(ImageFilterConfig(max_unsafe_score=0.5))(row)[0] == "unsafe"


def test_a_scorer_that_cannot_be_loaded_fails_clearly() -> None:
    from pipeline.images.unsafe import load_scorer

    assert load_scorer(f"{__name__}:mean_brightness")(photo("page")) > MAX_UNSAFE
    with pytest.raises(ValueError, match="module:callable"):
        load_scorer("no_colon_here")
    with pytest.raises(ValueError, match="cannot load"):
        load_scorer("pipeline.images.unsafe:no_such_scorer")
