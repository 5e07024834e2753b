"""End to end: ``build-corpus`` on the generated sample archive, checked against the sample's own oracle.

The sample generator writes ``expected.json``: for every ``<img>`` with an alt text it planted, where ALIGN's rules
must send it. This test runs every stage with DirectRunner, then checks each planted case, that the books balance
per candidate, that webdataset and open_clip_train read the shards, and (with two worker processes) that a second
run gives byte-identical tars.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import duckdb
import pytest

from pipeline import build
from pipeline.core.layout import CorpusLayout
from pipeline.images.eval_index import build_eval_index
from pipeline.sample.builder import generate_sample
from schemas import Candidate, Rejection, Sample
from tests.fixtures.open_clip_loader import open_clip_train_loader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    generate_sample(str(directory), seed=0)
    build_eval_index([str(directory / "eval")], str(directory / "eval_index.parquet"))
    return directory


def build_args(sample_dir: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--input",
        str(sample_dir / "sample.warc.gz"),
        "--output",
        str(output),
        "--eval-index",
        str(sample_dir / "eval_index.parquet"),
        *extra,
    ]


@pytest.fixture(scope="module")
def corpus(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("corpus")
    assert build.run(build_args(sample_dir, output, "--samples-per-shard", "100")) == 0
    return output


def sql(query: str) -> list[tuple]:
    return duckdb.sql(query).fetchall()


def test_every_stage_is_marked_done_and_the_manifest_is_complete(corpus: Path) -> None:
    layout = CorpusLayout(str(corpus))
    for stage in ("extract", "filter-text", "fetch", "filter-image", "write-shards"):
        assert layout.is_done(stage), stage
    manifest = json.loads((corpus / "manifest.json").read_text())
    sizes = json.loads((corpus / "shards" / "sizes.json").read_text())
    assert sum(sizes.values()) > 0
    assert all((corpus / "shards" / name).exists() for name in sizes)
    assert "schema_version" in manifest and "config" in manifest


def test_funnel_balances_per_candidate(corpus: Path) -> None:
    # extract writes its own drops (data: URLs, ...) only to rejected/, so "extracted" is both together.
    extracted_ids = (
        f"(select {Candidate.CANDIDATE_ID} from read_parquet('{corpus}/candidates/*.parquet') "
        f"union all select {Rejection.CANDIDATE_ID} from read_parquet('{corpus}/rejected/*.parquet') "
        f"where {Rejection.STAGE} = 'extract')"
    )
    outcomes = (
        f"(select {Candidate.CANDIDATE_ID} from read_parquet('{corpus}/shards/*.parquet') "
        f"union all select {Rejection.CANDIDATE_ID} from read_parquet('{corpus}/rejected/*.parquet'))"
    )
    (extracted,) = sql(f"select count(*) from {extracted_ids}")[0]
    assert extracted > 1000
    assert sql(f"select count(distinct {Candidate.CANDIDATE_ID}) from {extracted_ids}") == [(extracted,)]
    missing = sql(f"select count(*) from {extracted_ids} c anti join {outcomes} o using ({Candidate.CANDIDATE_ID})")
    assert missing == [(0,)], "candidates that ended nowhere"
    duplicated = sql(
        f"select count(*) from (select {Candidate.CANDIDATE_ID} from {outcomes} group by 1 having count(*) > 1)"
    )
    assert duplicated == [(0,)], "candidates that ended in two places"
    (outcome_count,) = sql(f"select count(*) from {outcomes}")[0]
    assert outcome_count == extracted


def fates(corpus: Path) -> dict[tuple[str, str, str], list[tuple[str, str | None, str | None]]]:
    """(page_url, image_url, alt_text) -> the fates of its candidates, from the corpus."""
    found: dict[tuple[str, str, str], list] = collections.defaultdict(list)
    kept = sql(
        f"select {Sample.PAGE_URL}, {Sample.IMAGE_URL}, {Sample.ALT_TEXT} from read_parquet('{corpus}/shards/*.parquet')"
    )
    for page, image, alt in kept:
        found[(page, image, alt)].append(("kept", None, None))
    rejected = sql(
        f"select {Rejection.PAGE_URL}, {Rejection.IMAGE_URL}, {Rejection.ALT_TEXT}, {Rejection.STAGE}, "
        f"{Rejection.REASON} from read_parquet('{corpus}/rejected/*.parquet')"
    )
    for page, image, alt, stage, reason in rejected:
        found[(page, image, alt)].append(("rejected", stage, reason))
    return found


def test_every_planted_case_lands_where_aligns_rules_say(corpus: Path, sample_dir: Path) -> None:
    expected = json.loads((sample_dir / "expected.json").read_text())
    entries = expected["candidates"] if isinstance(expected, dict) else expected
    found = fates(corpus)
    groups: dict[str, list] = collections.defaultdict(list)
    wrong = []
    for entry in entries:
        where = (entry["page_url"], entry["image_url"], entry["alt_text"])
        outcomes = found.get(where)
        if not outcomes:
            wrong.append((entry.get("case"), where, "not found in the corpus"))
            continue
        outcome = outcomes.pop()
        if entry["fate"] == "kept_one":
            groups[entry["duplicate_group"]].append(outcome)
        elif entry["fate"] == "kept":
            if outcome[0] != "kept":
                wrong.append((entry.get("case"), where, outcome))
        else:
            stage_ok = outcome[0] == "rejected" and outcome[1] == entry["stage"]
            if not stage_ok or (entry.get("reason") and outcome[2] != entry["reason"]):
                wrong.append((entry.get("case"), where, outcome, entry["stage"], entry.get("reason")))
    for group, outcomes in groups.items():
        kept = [o for o in outcomes if o[0] == "kept"]
        others = [o for o in outcomes if o[0] != "kept"]
        if len(kept) != 1 or any(o[2] not in ("duplicate_pair", "duplicate_image_alt") for o in others):
            wrong.append((group, outcomes))
    assert not wrong, f"{len(wrong)} planted candidates landed in the wrong place: {wrong[:10]}"
    leftovers = {k: v for k, v in found.items() if v}
    assert not leftovers, f"candidates the oracle does not know: {list(leftovers.items())[:5]}"


def test_webdataset_reads_decoded_images_with_their_texts(corpus: Path) -> None:
    import webdataset as wds

    sizes = json.loads((corpus / "shards" / "sizes.json").read_text())
    urls = [str(corpus / "shards" / name) for name in sorted(sizes)]
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json")
    seen = 0
    for key, image, text, meta in dataset:
        assert image.size[0] > 0 and text.strip() and meta[Sample.KEY] == key
        seen += 1
    assert seen == sum(sizes.values())


def test_open_clip_train_loader_yields_batches(corpus: Path) -> None:
    loader = open_clip_train_loader(corpus, batch_size=8, image_size=224)
    batches = list(loader)  # a full epoch crosses every shard boundary
    assert len(batches) == loader.num_batches
    images, texts = batches[0]
    assert images.shape == (8, 3, 224, 224)
    assert texts.shape[0] == 8


def test_stats_reports_a_balanced_funnel(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.corpus import stats

    assert stats.main([str(corpus)]) == 0


def test_two_worker_processes_give_byte_identical_shards(
    corpus: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    output = tmp_path_factory.mktemp("corpus-mp")
    flags = ("--samples-per-shard", "100", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert build.run(build_args(sample_dir, output, *flags)) == 0
    first = sorted(p.name for p in (corpus / "shards").glob("*.tar"))
    second = sorted(p.name for p in (output / "shards").glob("*.tar"))
    assert first == second and first
    for name in first:
        assert (corpus / "shards" / name).read_bytes() == (output / "shards" / name).read_bytes(), name
