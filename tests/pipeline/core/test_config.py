"""Presets and flag overrides resolve to the typed config every stage receives."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from pipeline.core.config import PRESETS, CorpusConfig, resolve_config
from pipeline.core.stage import pipeline_options


def resolve(*flags: str) -> CorpusConfig:
    return resolve_config(pipeline_options(["--output", "unused", *flags]))


def test_align_is_the_default_preset_with_the_papers_values() -> None:
    config = resolve()
    assert config.preset == "align"
    assert (config.text.min_unigrams, config.text.max_unigrams) == (3, 20)
    assert config.text.max_images_per_alt == 10
    assert config.text.max_alts_per_image_url == 1000
    assert config.text.ngram_vocab_size == 100_000_000
    assert config.image.min_shorter_side_px == 201  # ALIGN keeps shorter side > 200 px
    assert config.image.max_aspect_ratio == 3.0 and not config.image.aspect_ratio_inclusive
    assert config.image.max_alts_per_image_content == 1000


def test_datacomp_basic_preset() -> None:
    config = resolve("--preset", "datacomp-basic")
    assert config.text.languages == ("en",)
    assert config.text.min_unigrams == 3 and config.text.min_chars == 6
    assert config.text.max_images_per_alt is None
    assert config.image.min_shorter_side_px == 200 and config.image.aspect_ratio_inclusive


def test_flags_override_the_preset_and_none_switches_a_rule_off() -> None:
    config = resolve(
        "--preset", "align", "--max-images-per-alt", "20", "--min-unigrams", "none", "--languages", "en,de"
    )
    assert config.text.max_images_per_alt == 20
    assert config.text.min_unigrams is None
    assert config.text.languages == ("en", "de")
    assert config.text.max_unigrams == 20  # untouched fields keep the preset's value


def test_bool_and_float_flags_parse() -> None:
    config = resolve("--allow-private-addresses", "--respect-robots=false", "--max-aspect-ratio", "2.5")
    assert config.fetch.allow_private_addresses is True
    assert config.fetch.respect_robots is False
    assert config.image.max_aspect_ratio == 2.5


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("--preset", "laion")


def test_every_preset_serialises_for_the_manifest() -> None:
    for name, preset in PRESETS.items():
        assert json.loads(json.dumps(preset.to_dict()))["preset"] == name


def test_stage_help_lists_every_flag_with_its_documentation(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["filter-text", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-images-per-alt" in text and "Drop an alt text shared by more than this many" in text
    assert "hypernymisation" in text  # what filter-text deliberately does not do is stated in --help


def test_every_config_field_documents_itself_for_help() -> None:
    """The help is the field's own metadata: a new field without it fails here, not silently in ``--help``."""
    from pipeline.core.config import SECTIONS, add_config_arguments

    undocumented = [
        f"{section.__name__}.{item.name}"
        for section in (CorpusConfig, *SECTIONS.values())
        for item in dataclasses.fields(section)
        if not item.metadata.get("help", "").strip()
    ]
    assert undocumented == []
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    for section in SECTIONS.values():
        for item in dataclasses.fields(section):
            assert helps[item.name].startswith(item.metadata["help"].replace("%", "%%")), item.name
