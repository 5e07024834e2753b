"""Altcorpus's flags in the underscore spelling the Airflow Beam provider writes (``--eval_index=...``) set the same
fields as the documented hyphenated ones, through Beam's real option parsing, and clash with none of Beam's flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.core.argv import BEAM_OWNS, flag_names
from pipeline.core.config import SECTIONS, CorpusOptions, resolve_config
from pipeline.core.stage import pipeline_options
from schemas.tables import EvalImageHash

FIELDS = [item.name for section in SECTIONS.values() for item in dataclasses.fields(section)]


def test_underscore_flags_set_the_same_fields_as_hyphenated_ones(tmp_path: Path) -> None:
    index = tmp_path / "eval.parquet"
    pq.write_table(EvalImageHash.schema().empty_table(), index)
    hyphenated = resolve_config(
        pipeline_options(
            [f"--eval-index={index}", "--samples-per-shard", "50", "--languages=en,de", "--full-parse=false"]
        )
    )
    underscored = resolve_config(
        pipeline_options(
            [f"--eval_index={index}", "--samples_per_shard", "50", "--languages=en,de", "--full_parse=false"]
        )
    )
    assert underscored == hyphenated
    assert underscored.image.eval_index == str(index) and underscored.shards.samples_per_shard == 50
    assert underscored.text.languages == ("en", "de") and underscored.extract.full_parse is False
    # The rule-off value and the bare boolean form work in the underscore spelling too.
    config = resolve_config(pipeline_options(["--max_images_per_alt=none", "--allow_private_addresses"]))
    assert config.text.max_images_per_alt is None and config.fetch.allow_private_addresses is True


def test_no_underscore_alias_clashes_with_a_beam_flag(tmp_path: Path) -> None:
    """Every PipelineOptions subclass's flags in one parser (what get_all_options builds) with ours: no conflict, and
    BEAM_OWNS is exactly the set of fields whose underscore spelling Beam already registers."""
    beam = _BeamArgumentParser(allow_abbrev=False)
    for cls in PipelineOptions.__subclasses__():
        if cls is not CorpusOptions:
            cls._add_argparse_args(beam)
    beam_flags = {flag for action in beam._actions for flag in action.option_strings}
    assert {name for name in FIELDS if f"--{name}" in beam_flags and "_" in name} == BEAM_OWNS
    for name in FIELDS:
        assert not set(flag_names(name)) & beam_flags, name
    # The whole option set parses (argparse raises on a conflicting option string).
    index = tmp_path / "eval.parquet"
    pq.write_table(EvalImageHash.schema().empty_table(), index)
    options = PipelineOptions([f"--eval_index={index}", "--user_agent=beam-client", "--user-agent=altcorpus-test"])
    assert options.get_all_options()["eval_index"] == str(index)
    assert resolve_config(options).fetch.user_agent == "altcorpus-test"
