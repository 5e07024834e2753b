"""``build-corpus`` skips a stage only when what it read and how it was configured are unchanged.

Each ``_SUCCESS`` records a fingerprint (extract: its input files with sizes and mtimes; the others: the run ids of
the upstream stages they read) and the config sections the stage uses. Real Beam runs on small real WARCs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline import build
from pipeline.core.layout import CorpusLayout
from pipeline.core.registry import STAGES
from pipeline.stages import filter_text
from tests.conftest import shared_path

pytestmark = pytest.mark.slow


def args(output: Path, warc: str, *extra: str) -> list[str]:
    return [
        "--input",
        str(shared_path(f"warc/{warc}")),
        "--output",
        str(output),
        "--fetch-mode",
        "archive-only",
        *extra,
    ]


def run_ids(layout: CorpusLayout) -> dict[str, str]:
    return {stage: layout.read_success(stage)["run_id"] for stage in STAGES}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("corpus")
    assert build.run(args(output, "clipped.warc.gz")) == 0
    return output


def test_an_unchanged_build_skips_every_stage(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = CorpusLayout(str(corpus))
    before = run_ids(layout)
    with caplog.at_level(logging.INFO, logger="altcorpus"):
        assert build.run(args(corpus, "clipped.warc.gz")) == 0
    assert run_ids(layout) == before
    assert sum("already done" in record.getMessage() for record in caplog.records) == len(STAGES)


def test_other_inputs_rebuild_the_corpus(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = CorpusLayout(str(corpus))
    before = run_ids(layout)
    with caplog.at_level(logging.INFO, logger="altcorpus"):
        assert build.run(args(corpus, "books.toscrape.warc")) == 0
    after = run_ids(layout)
    assert all(after[stage] != before[stage] for stage in STAGES)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["inputs"] == [str(shared_path("warc/books.toscrape.warc"))]
    assert any("extract: rerunning" in r.getMessage() and "input" in r.getMessage() for r in caplog.records)


def test_another_setting_reruns_from_the_stage_that_uses_it(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = CorpusLayout(str(corpus))
    before = run_ids(layout)
    with caplog.at_level(logging.INFO, logger="altcorpus"):
        assert build.run(args(corpus, "books.toscrape.warc", "--min-unigrams", "2")) == 0
    after = run_ids(layout)
    assert after["extract"] == before["extract"]
    assert all(after[stage] != before[stage] for stage in STAGES[1:])
    assert layout.read_success("filter-text")["config"]["text"]["min_unigrams"] == 2
    assert any("filter-text: rerunning" in r.getMessage() and "config" in r.getMessage() for r in caplog.records)


def test_rerunning_one_stage_makes_the_later_ones_stale(corpus: Path) -> None:
    layout = CorpusLayout(str(corpus))
    filter_text.run(["--output", str(corpus), "--min-unigrams", "2"])
    assert layout.stale_stages() == ["fetch", "filter-image", "write-shards"]
    from pipeline.corpus import stats

    assert stats.main([str(corpus)]) != 0
    before = run_ids(layout)
    assert build.run(args(corpus, "books.toscrape.warc", "--min-unigrams", "2")) == 0
    after = run_ids(layout)
    assert layout.stale_stages() == []
    assert [stage for stage in STAGES if after[stage] != before[stage]] == ["fetch", "filter-image", "write-shards"]


def test_force_redoes_every_stage(corpus: Path) -> None:
    layout = CorpusLayout(str(corpus))
    before = run_ids(layout)
    assert build.run(args(corpus, "books.toscrape.warc", "--min-unigrams", "2", "--force")) == 0
    after = run_ids(layout)
    assert all(after[stage] != before[stage] for stage in STAGES)


def test_a_fingerprint_records_single_fields_a_stage_borrows_from_another_section(tmp_path: Path) -> None:
    """extract drops archived images above fetch's byte cap: that one fetch field, not the whole section, reruns it."""
    from pipeline.core.config import resolve_config
    from pipeline.core.stage import pipeline_options, stage_fingerprint

    def fingerprint(*flags: str) -> dict:
        options = pipeline_options(
            ["--input", str(shared_path("warc/clipped.warc.gz")), "--output", str(tmp_path), *flags]
        )
        return stage_fingerprint("extract", CorpusLayout(str(tmp_path)), resolve_config(options), options)

    plain = fingerprint()
    assert plain["config"]["fetch.max_image_bytes"] == 20_000_000 and "fetch" not in plain["config"]
    assert fingerprint("--max-image-bytes", "1000")["config"] != plain["config"]
    assert fingerprint("--concurrency", "3")["config"] == plain["config"]
    # write-shards' manifest records the whole resolved config, so its fingerprint holds every section.
    options = pipeline_options(["--output", str(tmp_path)])
    shards = stage_fingerprint("write-shards", CorpusLayout(str(tmp_path)), resolve_config(options), options)
    assert {"extract", "text", "fetch", "image", "shards"} <= set(shards["config"])
