"""Which text a sample trains on (``caption_source``): the config key, the per-sample draw, and the hook that puts
the choice into open_clip_train's own WebDataset pipeline (read here through its real training loader)."""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import open_clip
import pytest
from open_clip_train import data as open_clip_data
from webdataset import filters as wds_filters

from training import compat, launch
from training.captions import (
    CaptionChoice,
    CaptionSource,
    caption_source_from_config,
    caption_source_from_json,
    split_sentences,
)
from training.config import apply_overrides, config_from_mapping
from training.corpus import read_corpus
from training.shapes_world import sample_rows
from training.worker import parse_worker_args

LONG_CAPTION = "A red circle sits on the left. A blue square is on the right! Is the background white? Yes."


def _samples(count: int, with_enhanced: bool = True) -> list[dict]:
    return [
        {
            "__key__": f"key{index:04d}",
            "txt": f"alt {index}",
            **({"enhanced.txt": LONG_CAPTION} if with_enhanced else {}),
        }
        for index in range(count)
    ]


def test_config_key_parses_validates_and_reaches_the_worker(tmp_path: Path) -> None:
    assert caption_source_from_config(None) == CaptionSource() and CaptionSource().is_alt_only
    assert caption_source_from_config("enhanced") == CaptionSource(text="enhanced")
    mixed = caption_source_from_config({"text": "mix", "enhanced_probability": 0.3, "split_sentences": True})
    assert caption_source_from_json(mixed.to_json()) == mixed
    for bad in ({"text": "both"}, {"text": "mix", "enhanced_probability": 1.5}, {"txt": "alt"}, 3):
        with pytest.raises(ValueError, match="caption_source"):
            caption_source_from_config(bad)
    config = config_from_mapping({"model": "ALIGN-tiny", "caption_source": {"text": "mix"}})
    assert config.caption_source == CaptionSource(text="mix") and "caption_source" not in config.options
    overridden = apply_overrides(config, ["caption_source.enhanced_probability=0.25", "caption_source.text=enhanced"])
    assert overridden.caption_source == CaptionSource(text="enhanced", enhanced_probability=0.25)
    assert apply_overrides(config, ["caption_source=alt"]).caption_source.is_alt_only
    # The launcher hands it to every worker process (torchrun, SLURM) as one JSON argument; alt text adds nothing.
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "00000.tar").write_bytes(b"")
    (tmp_path / "shards" / "sizes.json").write_text('{"00000.tar": 1}')
    corpus = read_corpus(tmp_path)
    worker_options, _ = parse_worker_args(launch.worker_args(overridden, corpus))
    assert caption_source_from_json(worker_options.caption_source) == overridden.caption_source
    assert "--caption-source" not in launch.worker_args(config_from_mapping({"model": "ALIGN-tiny"}), corpus)


def test_sentences_split_at_sentence_ends() -> None:
    assert split_sentences(LONG_CAPTION) == [
        "A red circle sits on the left.",
        "A blue square is on the right!",
        "Is the background white?",
        "Yes.",
    ]
    assert split_sentences("no end mark here") == ["no end mark here"]
    assert split_sentences("  one.  ") == ["one."]


def test_enhanced_only_falls_back_to_alt_text_and_counts_it() -> None:
    samples = _samples(3) + _samples(2, with_enhanced=False)
    samples[-2:] = [{**sample, "__key__": f"bare{index}"} for index, sample in enumerate(samples[-2:])]
    choice = CaptionChoice(CaptionSource(text="enhanced"), seed=0)
    texts = [sample["txt"] for sample in choice(samples)]
    assert texts == [LONG_CAPTION] * 3 + ["alt 0", "alt 1"]
    assert choice.counts == Counter({"enhanced": 3, "fallback": 2})
    blank = {"__key__": "blank", "txt": b"alt bytes", "enhanced.txt": b"  "}  # undecoded members, an empty caption
    (chosen,) = list(choice([blank]))
    assert chosen["txt"] == "alt bytes" and choice.counts == Counter({"fallback": 1})


def test_mix_draws_per_sample_and_epoch_reproducibly_whatever_the_order() -> None:
    source = CaptionSource(text="mix", enhanced_probability=0.3)
    samples = _samples(2000)

    def chosen(epoch: int, seed: int = 0, order: list[dict] = samples) -> dict[str, str]:
        return {sample["__key__"]: sample["txt"] for sample in CaptionChoice(source, seed, epoch)(order)}

    first = chosen(epoch=0)
    share = sum(text == LONG_CAPTION for text in first.values()) / len(first)
    assert 0.26 <= share <= 0.34  # 0.3 +- 4 standard deviations of 2000 draws
    shuffled = list(samples)
    random.Random(1).shuffle(shuffled)
    assert chosen(epoch=0, order=shuffled) == first  # a sample's draw depends on its key, not on the shuffle
    assert chosen(epoch=1) != first and chosen(epoch=0, seed=1) != first
    assert chosen(epoch=1) == chosen(epoch=1)
    all_alt = CaptionChoice(CaptionSource(text="mix", enhanced_probability=0.0), 0)(samples)
    assert all(sample["txt"].startswith("alt") for sample in all_alt)


def test_split_sentences_draws_one_sentence_per_visit() -> None:
    source = CaptionSource(text="enhanced", split_sentences=True)
    sample = _samples(1)[0]
    drawn = [next(CaptionChoice(source, seed=0, epoch=epoch)([sample]))["txt"] for epoch in range(40)]
    assert set(drawn) == set(split_sentences(LONG_CAPTION))  # each sentence is drawn in some epoch
    assert drawn[:5] == [next(CaptionChoice(source, seed=0, epoch=epoch)([sample]))["txt"] for epoch in range(5)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 shapes-world samples in 3 shards; every third has no enhanced caption (its member is absent)."""
    from pipeline.corpus.shard_files import write_corpus

    rows = list(sample_rows(30, seed=5))
    for row in rows[::3]:
        row["enhanced_caption"] = None
    root = tmp_path_factory.mktemp("captions") / "corpus"
    write_corpus(rows, str(root), samples_per_shard=10)
    (root / "rows.json").write_text(json.dumps([[row["alt_text"], row["enhanced_caption"]] for row in rows]))
    return root


def _loader_args(corpus: Path) -> argparse.Namespace:
    shards = read_corpus(corpus)
    return argparse.Namespace(
        train_data=shards.webdataset_urls(), train_num_samples=shards.num_samples, train_data_upsampling_factors=None,
        dataset_resampled=False, seed=0, batch_size=10, workers=0, world_size=1, distributed=False,
    )  # fmt: skip


def test_open_clip_trains_loader_yields_the_chosen_texts(corpus: Path) -> None:
    tokenizer = open_clip.get_tokenizer("RN50")
    rows = json.loads((corpus / "rows.json").read_text())
    compat.install_seeded_data_order()
    try:
        compat.install_caption_choice(CaptionSource(text="enhanced"))
        info = open_clip_data.get_wds_dataset(
            _loader_args(corpus), open_clip.image_transform(32, is_train=True), is_train=True, tokenizer=tokenizer
        )
        pipeline = info.dataloader.pipeline[0].dataset.pipeline
        (stage,) = [stage for stage in pipeline if isinstance(stage, CaptionChoice)]
        rename = pipeline[pipeline.index(stage) + 1]
        assert rename.f is wds_filters._rename and rename.kw["text"] == "txt"  # right before open_clip's rename
        tokens = [tuple(row.tolist()) for _, texts in info.dataloader for row in texts]
    finally:
        compat.install_caption_choice(CaptionSource())
    expected = [enhanced if enhanced is not None else alt for alt, enhanced in rows]
    assert sorted(tokens) == sorted(tuple(row.tolist()) for row in tokenizer(expected))
    assert stage.counts == Counter({"enhanced": 20, "fallback": 10})
    # Alt text restores the seeded loader untouched: the texts are the alt texts.
    info = open_clip_data.get_wds_dataset(
        _loader_args(corpus), open_clip.image_transform(32, is_train=True), is_train=True, tokenizer=tokenizer
    )
    assert not any(isinstance(stage, CaptionChoice) for stage in info.dataloader.pipeline[0].dataset.pipeline)
    tokens = [tuple(row.tolist()) for _, texts in info.dataloader for row in texts]
    assert sorted(tokens) == sorted(tuple(row.tolist()) for row in tokenizer([alt for alt, _ in rows]))


def test_a_pipeline_without_the_hook_point_is_refused(corpus: Path) -> None:
    compat.install_seeded_data_order()
    info = open_clip_data.get_wds_dataset(
        _loader_args(corpus), open_clip.image_transform(32, is_train=True), is_train=True,
        tokenizer=open_clip.get_tokenizer("RN50"),
    )  # fmt: skip
    pipeline = info.dataloader.pipeline[0].dataset.pipeline
    pipeline[:] = [stage for stage in pipeline if getattr(stage, "f", None) is not wds_filters._rename]
    with pytest.raises(RuntimeError, match="no rename"):
        compat.insert_caption_choice(info, CaptionSource(text="enhanced"), seed=0)
