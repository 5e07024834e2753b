"""The caption stage on a small corpus with a tiny BLIP saved by the test: real transformers loading, real RunInference.

One module-scoped run captions six samples (four photos, one undecodable image, one alt text too long for the
model's positions); the tests then read what it wrote, shard it with write-shards, reshard an uncaptioned copy with
its captions, and query the caption statistics in DuckDB. Expected captions come from the same checkpoint called
through transformers directly (the oracle), never from hard-coded text.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.core.config import resolve_config
from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import ALL_STAGE_SPECS, STAGES
from pipeline.core.stage import pipeline_options
from pipeline.corpus import reshard, stats
from pipeline.stages import caption, write_shards
from schemas import Sample, SampleImage
from schemas.tables import Caption, CaptionedSample
from tests.fixtures.caption_model import MAX_POSITIONS, save_tiny_blip
from tests.fixtures.image_corpus import PHOTOS, jpeg, photo, sample_image_row, write_rows

PROMPT = "{alt_text} a photo of"
MAX_NEW_TOKENS = 6
ALT_TEXTS = ("a red cat on the boat", "coffee cup on the left", "rocket above the moon", "man with a camera")
#: An alt text whose prompt alone needs more positions than the tiny model has: the model raises on it.
TOO_LONG_ALT = " ".join(["small round coins"] * MAX_POSITIONS)
#: A JPEG cut short: the header reads, the pixels do not.
TRUNCATED_JPEG = jpeg(photo("coins"), (40, 40))[:200]


def _samples() -> list[dict[str, Any]]:
    rows = [
        sample_image_row(f"https://img.example/{name}.jpg", alt, jpeg(photo(name), (48, 40)), ordinal)
        for ordinal, (name, alt) in enumerate(zip(PHOTOS, ALT_TEXTS, strict=False))
    ]
    rows.append(sample_image_row("https://img.example/long.jpg", TOO_LONG_ALT, jpeg(photo("moon"), (40, 40)), 10))
    broken = sample_image_row("https://img.example/broken.jpg", "black and white coins", jpeg(photo("coins")), 11)
    broken[SampleImage.IMAGE] = TRUNCATED_JPEG
    rows.append(broken)
    return rows


def _flags(root: Path, model: Path, **overrides: Any) -> list[str]:
    settings = {"caption_model": str(model), "caption_prompt": PROMPT, "caption_max_new_tokens": MAX_NEW_TOKENS}
    settings.update(caption_batch_size=1, caption_device="cpu", samples_per_shard=4)
    settings.update(overrides)
    return ["--output", str(root), *(f"--{name.replace('_', '-')}={value}" for name, value in settings.items())]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """samples/ of six rows captioned by the caption stage, then sharded by write-shards with the same flags."""
    base = tmp_path_factory.mktemp("caption")
    model = save_tiny_blip(base / "tiny-blip")
    root = base / "corpus"
    samples = _samples()
    write_rows(root / SampleImage.FOLDER, SampleImage, samples)
    counters = caption.run(_flags(root, model))
    write_shards.run(_flags(root, model))
    return {"root": root, "model": model, "samples": samples, "counters": counters}


def _read(folder: Path) -> list[dict[str, Any]]:
    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def _oracle(model: Path, samples: list[dict[str, Any]]) -> dict[str, str]:
    """What the checkpoint writes for each decodable sample, called through transformers without Beam."""
    from PIL import Image
    from transformers import pipeline

    captioner = pipeline("image-text-to-text", model=str(model), device="cpu")
    expected = {}
    for sample in samples:
        if sample[SampleImage.IMAGE] == TRUNCATED_JPEG or sample[SampleImage.ALT_TEXT] == TOO_LONG_ALT:
            continue
        image = Image.open(io.BytesIO(sample[SampleImage.IMAGE])).convert("RGB")
        (output,) = captioner(
            images=[image],
            text=[PROMPT.replace("{alt_text}", sample[SampleImage.ALT_TEXT])],
            generate_kwargs={"max_new_tokens": MAX_NEW_TOKENS, "num_beams": 1, "do_sample": False},
            return_full_text=False,
        )
        expected[sample[SampleImage.CANDIDATE_ID]] = " ".join(output["generated_text"].split())
    return expected


@pytest.mark.slow  # the module's caption run: transformers' import and two Beam jobs, about 30 s
def test_every_sample_gets_one_caption_row_and_failures_keep_their_reason(corpus: dict[str, Any]) -> None:
    rows = {row[Caption.CANDIDATE_ID]: row for row in _read(corpus["root"] / Caption.FOLDER)}
    samples = {sample[SampleImage.CANDIDATE_ID]: sample for sample in corpus["samples"]}
    assert set(rows) == set(samples)  # nothing lost, nothing invented
    by_alt = {samples[cid][SampleImage.ALT_TEXT]: row for cid, row in rows.items()}
    assert by_alt["black and white coins"][Caption.CAPTION_STATUS] == "decode_error"
    assert by_alt[TOO_LONG_ALT][Caption.CAPTION_STATUS] == "model_error"
    assert "index out of range" in by_alt[TOO_LONG_ALT][Caption.CAPTION_ERROR]
    expected = _oracle(corpus["model"], corpus["samples"])
    for candidate, text in expected.items():
        row = rows[candidate]
        assert row[Caption.CAPTION_MODEL] == str(corpus["model"])
        assert row[Caption.ENHANCED_CAPTION] == (text or None)
        assert row[Caption.CAPTION_STATUS] == ("ok" if text else "empty_caption")
    assert sum(1 for text in expected.values() if text) >= 2, "the tiny model should caption some photos"
    statuses = [row[Caption.CAPTION_STATUS] for row in rows.values()]
    counted = {("captioned" if status == "ok" else status): statuses.count(status) for status in set(statuses)}
    assert corpus["counters"] == counted


@pytest.mark.slow  # the module's caption run, then another Beam job
def test_a_batch_the_model_raises_on_loses_only_the_sample_that_fails_alone(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """Batches of four: the too-long prompt makes its whole batch raise; its batch-mates are captioned again alone."""
    root = tmp_path / "corpus"
    shutil.copytree(corpus["root"] / SampleImage.FOLDER, root / SampleImage.FOLDER)
    counters = caption.run(_flags(root, corpus["model"], caption_batch_size=4))
    rows = _read(root / Caption.FOLDER)
    by_alt = {row[Caption.KEY]: row for row in rows}
    statuses = {
        sample[SampleImage.ALT_TEXT]: by_alt[sample[SampleImage.KEY]][Caption.CAPTION_STATUS]
        for sample in corpus["samples"]
    }
    assert statuses.pop(TOO_LONG_ALT) == "model_error"
    assert statuses.pop("black and white coins") == "decode_error"
    assert set(statuses.values()) <= {"ok", "empty_caption"}, statuses
    assert counters["model_error"] == 1 and len(rows) == len(corpus["samples"])


@pytest.mark.slow  # the module's caption run: transformers' import and two Beam jobs, about 30 s
def test_shards_carry_alt_text_and_enhanced_caption(corpus: dict[str, Any]) -> None:
    root = corpus["root"]
    captions = {row[Caption.KEY]: row for row in _read(root / Caption.FOLDER)}
    twins = _read(root / Sample.FOLDER)
    assert len(twins) == len(corpus["samples"])  # failed captions keep their sample
    assert pq.read_schema(next((root / Sample.FOLDER).glob("*.parquet"))).names == CaptionedSample.names()
    members: dict[str, bytes] = {}
    for path in sorted((root / Sample.FOLDER).glob("*.tar")):
        with tarfile.open(path) as archive:
            members.update({member.name: archive.extractfile(member).read() for member in archive})
    for twin in twins:
        key, caption_text = twin[Sample.KEY], captions[twin[Sample.KEY]][Caption.ENHANCED_CAPTION]
        assert members[f"{key}.txt"].decode() == twin[Sample.ALT_TEXT]
        assert twin[Sample.ENHANCED_CAPTION] == caption_text
        assert twin[CaptionedSample.CAPTION_MODEL] == (str(corpus["model"]) if caption_text else None)
        assert json.loads(members[f"{key}.json"])[CaptionedSample.CAPTION_MODEL] == twin[CaptionedSample.CAPTION_MODEL]
        if caption_text is None:
            assert f"{key}.enhanced.txt" not in members
        else:
            assert members[f"{key}.enhanced.txt"].decode() == caption_text
    manifest = json.loads((root / "manifest.json").read_text())
    recorded = manifest["captions"]
    assert recorded["model"] == str(corpus["model"]) and recorded["prompt"] == PROMPT
    assert recorded["generation"] == {"max_new_tokens": MAX_NEW_TOKENS, "num_beams": 1, "do_sample": False}
    assert recorded["counters"] == corpus["counters"]


@pytest.mark.slow  # the module's caption run: transformers' import and two Beam jobs, about 30 s
def test_write_shards_refuses_captions_made_with_other_settings(corpus: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus["root"], copy)
    with pytest.raises(UsageError, match="other caption settings"):
        write_shards.run(_flags(copy, corpus["model"], caption_prompt="a photo of"))
    shutil.rmtree(copy / Caption.FOLDER)
    with pytest.raises(UsageError, match="caption has not run"):
        write_shards.run(_flags(copy, corpus["model"]))


@pytest.mark.slow  # the module's caption run: transformers' import and two Beam jobs, about 30 s
def test_reshard_adds_captions_to_an_uncaptioned_corpus(corpus: dict[str, Any], tmp_path: Path) -> None:
    """An alt-text-only corpus plus the caption stage's captions/ reshards into the captioned corpus, byte for byte."""
    plain = tmp_path / "plain"
    shutil.copytree(corpus["root"] / SampleImage.FOLDER, plain / SampleImage.FOLDER)
    write_shards.run(["--output", str(plain), "--samples-per-shard=4"])
    assert pq.read_schema(next((plain / Sample.FOLDER).glob("*.parquet"))).names == Sample.names()
    target = tmp_path / "recaptioned"
    assert (
        reshard.main(["--corpus", str(plain), "--output", str(target), "--captions", str(corpus["root"] / "captions")])
        == 0
    )
    sizes = json.loads((target / Sample.FOLDER / "sizes.json").read_text())
    assert sum(sizes.values()) == len(corpus["samples"])
    for name in sizes:
        built = corpus["root"] / Sample.FOLDER / name
        assert (target / Sample.FOLDER / name).read_bytes() == built.read_bytes(), name
        twin = name.replace(".tar", ".parquet")
        assert _read_twin(target / Sample.FOLDER / twin) == _read_twin(built.with_name(twin))
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["captions"]["from"] == str(corpus["root"] / Caption.FOLDER / "*.parquet")
    assert manifest["captions"]["models"] == [str(corpus["model"])]


def _read_twin(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


@pytest.mark.slow  # the module's caption run: transformers' import and two Beam jobs, about 30 s
def test_stats_report_caption_coverage_and_lengths(corpus: dict[str, Any]) -> None:
    layout = CorpusLayout(str(corpus["root"]))
    connection = stats.connect(layout, list(STAGES))
    captions = [row[Caption.ENHANCED_CAPTION] for row in _read(corpus["root"] / Caption.FOLDER)]
    written = [text for text in captions if text is not None]
    (coverage,) = stats.query(connection, "caption_coverage")
    assert coverage["samples"] == len(captions)
    assert coverage["captioned"] == len(written)
    assert coverage["percent"] == round(100 * len(written) / len(captions), 2)
    lengths = {(row["population"], row["unit"]): row for row in stats.query(connection, "caption_length")}
    characters = lengths[("enhanced_caption", "characters")]
    assert (characters["n"], characters["min"], characters["max"]) == (
        len(written),
        min(map(len, written)),
        max(map(len, written)),
    )
    words = lengths[("enhanced_caption", "words")]
    assert words["max"] == max(len(text.split()) for text in written)


# -- without the model ------------------------------------------------------------------------------------------------
def _config(*flags: str):
    options = pipeline_options(["--output", "/tmp/unused", *flags])
    return resolve_config(options)


def test_build_corpus_runs_caption_after_filter_image_only_when_a_model_is_named(tmp_path: Path) -> None:
    def order(config) -> list[str]:
        return [spec.name for spec in ALL_STAGE_SPECS if spec.is_enabled(config.to_dict())]

    assert order(_config()) == list(STAGES)  # the align preset: off, so the sample's shards stay as they were
    captioned = order(_config("--caption-model", str(tmp_path)))
    assert captioned == [*STAGES[:4], "caption", *STAGES[4:]]


def test_caption_model_must_be_a_folder_or_a_hub_id(tmp_path: Path) -> None:
    assert _config("--caption-model", "Salesforce/blip-image-captioning-base").caption.caption_model
    with pytest.raises(UsageError, match="neither a folder nor a Hugging Face hub id"):
        _config("--caption-model", str(tmp_path / "missing-folder"))
    with pytest.raises(UsageError, match="--caption-device 'tpu' is not one of"):
        _config("--caption-device", "tpu")


def test_prompt_takes_the_alt_text_verbatim() -> None:
    assert (
        caption.caption_prompt("alt text: {alt_text}. a photo of", "a {red} cat") == "alt text: a {red} cat. a photo of"
    )
    assert caption.caption_prompt("", "a red cat") == ""
