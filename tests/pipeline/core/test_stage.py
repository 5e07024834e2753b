"""``run_stage`` never destroys a corpus: every check happens before anything is deleted, and a stage's new outputs
are written beside the old ones and swapped in only when the Beam job succeeded.

Real Beam runs (DirectRunner) of real stages on a small real WARC from ../shared/data.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pipeline.core.layout import PROMOTION, STAGING, CorpusLayout
from pipeline.stages import extract, fetch, filter_text
from tests.conftest import shared_path

pytestmark = pytest.mark.slow


def snapshot(root: Path) -> dict[str, str]:
    """Every file under a corpus with the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def warc() -> str:
    return str(shared_path("warc/clipped.warc.gz"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus with extract, filter-text and fetch done (archive only: no network)."""
    root = tmp_path_factory.mktemp("corpus")
    extract.run(["--input", warc(), "--output", str(root)])
    filter_text.run(["--output", str(root)])
    fetch.run(["--output", str(root), "--fetch-mode", "archive-only"])
    return root


@pytest.mark.parametrize(
    ("module", "flags", "message"),
    [
        (extract, ["--input", "typo*.warc.gz"], "matches no file"),
        (extract, [], "needs --input"),
        (fetch, ["--fetch-mode", "archive"], "--fetch-mode"),
        (filter_text, ["--preset", "no-such-preset"], "unknown preset"),
        (extract, ["--input", "WARC", "--runner", "NoSuchRunner"], "NoSuchRunner"),
        # One stage under Beam's --dry_run would promote empty staged outputs over the real ones.
        (fetch, ["--fetch-mode", "archive-only", "--dry_run=True"], "--dry_run"),
    ],
    ids=["input-typo", "no-input", "bad-fetch-mode", "bad-preset", "bad-runner", "dry-run-on-one-stage"],
)
def test_a_mistake_is_refused_before_anything_is_deleted(
    corpus: Path, module: object, flags: list[str], message: str
) -> None:
    before = snapshot(corpus)
    flags = [warc() if flag == "WARC" else flag for flag in flags]
    with pytest.raises((ValueError, SystemExit)) as raised:
        module.run([*flags, "--output", str(corpus)])  # type: ignore[attr-defined]
    assert message in str(raised.value)
    assert snapshot(corpus) == before


def test_a_stage_needs_its_upstream_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extract"):
        filter_text.run(["--output", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_a_failure_inside_the_job_keeps_the_old_outputs(corpus: Path) -> None:
    # A language model that does not exist fails in a worker, after the graph was built and the job started.
    before = snapshot(corpus)
    missing = corpus.parent / "no-such-model.bin"
    with pytest.raises(Exception, match="no-such-model"):
        filter_text.run(["--output", str(corpus), "--language-model", str(missing), "--languages", "en"])
    after = snapshot(corpus)
    assert {name: digest for name, digest in after.items() if not name.startswith(STAGING)} == before


def test_leftover_temporaries_are_removed_and_a_rerun_replaces_the_outputs(corpus: Path) -> None:
    layout = CorpusLayout(str(corpus))
    first = layout.read_success("extract")
    # What a Ctrl-C leaves: Beam's temporary folder of a sink, and a staging folder of an interrupted run.
    beam_temp = corpus / "candidates" / "beam-temp-part-0123456789abcdef"
    beam_temp.mkdir()
    (beam_temp / "0123-4567").write_bytes(b"half a parquet file")
    staging = corpus / STAGING / "extract-interrupted" / "candidates"
    staging.mkdir(parents=True)
    (staging / "part-00000-of-00001.parquet").write_bytes(b"half a parquet file")
    extract.run(["--input", warc(), "--output", str(corpus)])
    assert not beam_temp.exists()
    assert not (corpus / STAGING).exists() or not any((corpus / STAGING).rglob("*"))
    assert sorted(p.name for p in (corpus / "candidates").iterdir()) == ["_SUCCESS", "part-00000-of-00001.parquet"]
    assert sorted(p.name for p in (corpus / "rejected").glob("extract-*")) == ["extract-00000-of-00001.parquet"]
    second = layout.read_success("extract")
    assert second["run_id"] != first["run_id"]
    assert second["counters"] == first["counters"]
    # Later stages read what the first extract wrote: they are stale now.
    assert layout.stale_stages() == ["filter-text", "fetch"]


def test_a_promotion_that_stops_half_way_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The swap of a successful run's outputs is journaled: if it stops half-way (here a rename refused after the
    first file), the old files are already gone and the new ones not all in, and the next run finishes it."""
    from pipeline.core import layout as layout_module

    root, reference = tmp_path / "corpus", tmp_path / "reference"
    extract.run(["--input", warc(), "--output", str(root)])
    filter_text.run(["--output", str(root)])
    shutil.copytree(root, reference)
    stricter = ["--min-unigrams", "5"]  # another run of filter-text, with outputs of its own
    filter_text.run(["--output", str(reference), *stricter])  # what the run gives when nothing stops it
    real_move = layout_module.move_files
    calls: list[int] = []

    def move_one_then_fail(paths: list[str], folder: str) -> None:
        calls.append(len(paths))
        if len(calls) == 2:  # text_kept/ moved in; the rejections: one file renamed, then the disk refuses
            real_move(paths[:1], folder)
            raise OSError("rename refused")
        real_move(paths, folder)

    monkeypatch.setattr(layout_module, "move_files", move_one_then_fail)
    with pytest.raises(OSError, match="rename refused"):
        filter_text.run(["--output", str(root), *stricter])
    monkeypatch.setattr(layout_module, "move_files", real_move)
    layout = CorpusLayout(str(root))
    assert not layout.is_done("filter-text")
    assert list((root / STAGING).glob(f"filter-text-*/{PROMOTION}"))  # the journal, and what is left to move
    # The next run of any stage finishes it first (here the next stage, which needs filter-text done).
    fetch.run(["--output", str(root), "--fetch-mode", "archive-only"])
    assert not (root / STAGING).exists() or not any((root / STAGING).rglob("*"))
    done, expected = layout.read_success("filter-text"), CorpusLayout(str(reference)).read_success("filter-text")
    assert done["counters"] == expected["counters"] and done["config"] == expected["config"]
    assert done["fingerprint"] == expected["fingerprint"]
    after, want = snapshot(root), snapshot(reference)
    for folder in ("text_kept/part-", "rejected/filter-text-"):
        assert {k: v for k, v in after.items() if k.startswith(folder)} == {
            k: v for k, v in want.items() if k.startswith(folder)
        }


def test_the_checked_choices_are_the_ones_the_stages_understand() -> None:
    from pipeline.core.config import CHOICES
    from pipeline.images.process import RESIZE_MODES

    assert CHOICES[("fetch", "fetch_mode")] == fetch.FETCH_MODES
    assert CHOICES[("fetch", "resize_mode")] == RESIZE_MODES
