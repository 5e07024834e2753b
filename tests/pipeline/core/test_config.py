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
    assert config.text.min_words == 3 and config.text.min_unigrams is None and config.text.min_chars == 6
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
    helps = {action.dest: action.help for action in parser._actions if action.help != argparse.SUPPRESS}
    for section in SECTIONS.values():
        for item in dataclasses.fields(section):
            assert helps[item.name].startswith(item.metadata["help"].replace("%", "%%")), item.name


# --- Bad settings are refused, not obeyed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "suggestion"),
    [
        (("--max-image-per-alt", "5"), "--max-images-per-alt"),
        (("--min-unigram", "5"), "--min-unigrams"),  # a prefix of a real flag: not silently taken for it
        (("--respect_robot=false",), "--respect-robots"),
    ],
)
def test_a_misspelled_flag_is_refused_with_a_suggestion(flags: tuple[str, ...], suggestion: str) -> None:
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match=f"unknown flag .*did you mean {suggestion}"):
        resolve(*flags)


def test_beams_own_options_still_pass_through() -> None:
    config = resolve("--direct_num_workers", "2", "--direct_running_mode=in_memory", "--temp_location", "/tmp")
    assert config == PRESETS["align"]


@pytest.mark.parametrize("value", ["ture", "nope", "2", ""])
def test_a_boolean_takes_only_true_or_false_forms(value: str) -> None:
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match=r"--respect-robots .*true, false"):
        resolve(f"--respect-robots={value}")


def test_boolean_forms() -> None:
    assert resolve("--respect-robots").fetch.respect_robots is True
    assert resolve("--respect-robots", "no").fetch.respect_robots is False  # "no" is one of the false forms
    assert resolve("--respect-robots=FALSE").fetch.respect_robots is False
    assert resolve("--no-respect-robots").fetch.respect_robots is False
    assert resolve("--no-full-parse").extract.full_parse is False
    assert resolve("--full-parse=yes").extract.full_parse is True


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--image-size", "0"), r"--image-size 0 is out of range: at least 1"),
        (("--resize-mode", "squash"), r"--resize-mode 'squash' is not one of: keep_ratio, center_crop, border"),
        (("--fetch-mode", "http"), r"--fetch-mode 'http' is not one of: archive-then-http, archive-only"),
        (("--min-unigrams", "-1"), r"--min-unigrams -1 is out of range: at least 0"),
        (("--max-unigrams", "-3"), r"--max-unigrams -3 is out of range: at least 1"),
        (("--max-aspect-ratio", "-2"), r"--max-aspect-ratio -2.0 is out of range: at least 1"),
        (("--concurrency", "0"), r"--concurrency 0 is out of range: at least 1"),
        (("--jpeg-quality", "500"), r"--jpeg-quality 500 is out of range: 1 to 100"),
        (("--samples-per-shard", "0"), r"--samples-per-shard 0 is out of range: at least 1"),
        (("--min-language-score", "1.5"), r"--min-language-score 1.5 is out of range: 0.0 to 1.0"),
        (("--connect-timeout-s", "0"), r"--connect-timeout-s 0.0 is out of range: more than 0"),
        (("--image-size", "big"), r"--image-size 'big' is not an integer"),
        (("--max-aspect-ratio", "wide"), r"--max-aspect-ratio 'wide' is not a number"),
        (("--languages", "english"), r"--languages 'english' is not a language code of lid.176 .*e.g. en, de"),
        (("--eval-index", "/nonexistent/eval.parquet"), r"--eval-index '/nonexistent/eval.parquet' matches no file"),
        (("--language-model", "/nonexistent/lid.bin"), r"--language-model '/nonexistent/lid.bin' is not a file"),
    ],
)
def test_a_value_out_of_range_is_refused_with_the_range(flags: tuple[str, ...], message: str) -> None:
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match=message):
        resolve(*flags)


def test_none_still_switches_an_optional_rule_off_and_ranges_allow_the_bounds() -> None:
    config = resolve("--max-aspect-ratio", "none", "--jpeg-quality", "100", "--min-unigrams", "0")
    assert config.image.max_aspect_ratio is None and config.fetch.jpeg_quality == 100
    assert config.text.min_unigrams == 0


def test_an_existing_eval_index_and_real_language_codes_are_accepted(tmp_path) -> None:
    index = tmp_path / "eval.parquet"
    index.write_bytes(b"PAR1")
    config = resolve("--eval-index", str(index), "--languages", "en,de,yue")
    assert config.image.eval_index == str(index) and config.text.languages == ("en", "de", "yue")


def test_the_language_list_is_the_bundled_models_labels() -> None:
    """The codes ``--languages`` accepts are read from lid.176.ftz's dictionary (stored as plain strings)."""
    import re

    from pipeline.core.config import LID176_LANGUAGES
    from pipeline.text.langid import bundled_model_path

    labels = set(re.findall(rb"__label__([A-Za-z_-]+)\x00", bundled_model_path().read_bytes()))
    assert {label.decode() for label in labels} == set(LID176_LANGUAGES)
    assert len(LID176_LANGUAGES) == 176


def test_every_range_is_in_the_fields_metadata_and_shown_in_help() -> None:
    from pipeline.core.config import SECTIONS, add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    bounded = 0
    for section in SECTIONS.values():
        for item in dataclasses.fields(section):
            if "minimum" in item.metadata:
                bounded += 1
                assert f">= {item.metadata['minimum']}" in helps[item.name], item.name
            if "choices" in item.metadata:
                assert ", ".join(item.metadata["choices"]) in helps[item.name], item.name
    assert bounded >= 20


def test_every_preset_is_within_the_ranges() -> None:
    from pipeline.core.config import check_settings

    for preset in PRESETS.values():
        check_settings(preset)
