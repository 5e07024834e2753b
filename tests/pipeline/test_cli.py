"""The command line: one line per error (no traceback unless --debug), --version, stage --help, closed pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.core.errors import UsageError
from schemas import Candidate, RecordError
from tests.conftest import PROJECT_ROOT, shared_path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error a command printed: exactly one line on stderr, no traceback."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_a_misspelled_flag_is_one_line_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filter-text", "--output", str(tmp_path), "--min-unigram", "5"]) == 2
    line = error_line(capsys)
    assert line.startswith("altcorpus filter-text: error: unknown flag --min-unigram")
    assert "did you mean --min-unigrams?" in line


def test_a_string_for_an_int_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-corpus", "--input", "x.warc", "--output", str(tmp_path), "--image-size", "big"]) == 2
    assert error_line(capsys) == "altcorpus build-corpus: error: --image-size 'big' is not an integer"


def test_a_bad_preset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filter-text", "--output", str(tmp_path), "--preset", "laion"]) == 2
    line = error_line(capsys)
    assert "unknown preset 'laion'" in line and "datacomp-basic" in line


def test_a_missing_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.warc.gz"
    assert main(["extract", "--input", str(missing), "--output", str(tmp_path / "out")]) == 2
    line = error_line(capsys)
    assert line.startswith("altcorpus extract: error:") and str(missing) in line


def test_output_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warc = shared_path("warc/jwarc-cc.warc.gz")
    assert main(["extract", "--input", str(warc), "--output", str(blocker / "corpus")]) == 1
    line = error_line(capsys)
    assert line.startswith("altcorpus extract: error:") and "a-file" in line


def test_an_unwritable_output_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # /proc takes no new folders, even from root (CI runs as root, which writes into chmod-read-only folders).
    locked = Path("/proc") / f"altcorpus-locked-{os.getpid()}"
    warc = shared_path("warc/jwarc-cc.warc.gz")
    assert main(["extract", "--input", str(warc), "--output", str(locked / "corpus")]) == 1
    assert "altcorpus-locked" in error_line(capsys)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="did you mean --min-unigrams"):
        main(["filter-text", "--debug", "--output", str(tmp_path), "--min-unigram", "5"])


def test_a_bad_reshard_where_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.corpus.shard_files import write_corpus
    from tests.pipeline.corpus.test_reshard import make_rows

    write_corpus(make_rows(5), str(tmp_path / "source"), samples_per_shard=4)
    argv = ["reshard", "--corpus", str(tmp_path / "source"), "--output", str(tmp_path / "subset")]
    assert main([*argv, "--where", "langage = 'en'"]) == 2
    line = error_line(capsys)
    assert line.startswith("altcorpus reshard: error: --where \"langage = 'en'\": Binder Error")
    assert not (tmp_path / "subset").exists()


def test_stats_html_into_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no-such-folder" / "report.html"
    assert main(["stats", str(tmp_path), "--html", str(target)]) == 2
    line = error_line(capsys)
    assert line.startswith("altcorpus stats: error:") and "no-such-folder" in line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"altcorpus {version('altcorpus')}"


@pytest.mark.slow  # a subprocess importing the CLI
def test_help_into_a_closed_pipe_is_quiet() -> None:
    """``altcorpus --help | head`` must not end in a BrokenPipeError traceback when head stops reading."""
    for args in (["--help"], ["fetch", "--help"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.close()  # the reader goes away before the help is written
        stderr = process.stderr.read().decode()
        process.wait(timeout=60)
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def stage_help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_a_stage_help_shows_its_own_section_first_and_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    text = stage_help("extract", capsys)
    assert "``" not in text
    assert "--full-parse / --no-full-parse" in text
    assert "(required)" in text.split("\n  --input", 1)[1].split("--output", 1)[0]
    assert "--max-images-per-alt" not in text  # filter-text's rules are not extract's options
    assert "--max-image-bytes" in text  # extract does use fetch's archived-image limit
    assert text.index("extract options") < text.index("--max-image-bytes")
    assert "Beam pipeline option" in text.strip().splitlines()[-1]

    fetch_help = " ".join(stage_help("fetch", capsys).split())
    assert "--resize-mode" in fetch_help and "keep_ratio, center_crop, border, keep_ratio_largest, no" in fetch_help
    assert "--min-unigrams" not in fetch_help and "--input" not in fetch_help

    everything = stage_help("build-corpus", capsys)
    for section in ("extract", "filter-text", "fetch", "filter-image", "write-shards"):
        assert f"{section} options" in everything


@pytest.mark.slow  # stage runs in subprocesses
def test_a_run_with_no_readable_input_fails_and_keeps_the_previous_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "corpus"
    warc = shared_path("warc/jwarc-cc.warc.gz")
    assert main(["extract", "--input", str(warc), "--output", str(output)]) == 0
    before = pq.read_table(str(output / "candidates")).num_rows
    assert before > 0

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.warc").write_bytes(b"")
    (bad / "notes.warc").write_text("these are my notes, not a web archive\n")
    (bad / "photo.warc.gz").write_bytes(bytes.fromhex("ffd8ffe000104a46494600") + b"\0" * 200)
    capsys.readouterr()
    assert main(["extract", "--force", "--input", str(bad / "*"), "--output", str(output)]) == 1
    line = error_line(capsys)
    assert line.startswith("altcorpus extract: error: no input file is a readable WARC/WAT: ")
    assert "empty.warc (not_a_warc)" in line and "while running" not in line
    assert pq.read_table(str(output / "candidates")).num_rows == before


def test_files_that_are_not_warc_become_record_errors(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.warc.gz").write_bytes(shared_path("warc/jwarc-cc.warc.gz").read_bytes())
    (inputs / "empty.warc").write_bytes(b"")
    (inputs / "notes.warc").write_text("these are my notes, not a web archive\n")
    (inputs / "photo.warc.gz").write_bytes(bytes.fromhex("ffd8ffe000104a46494600") + b"\0" * 200)
    output = tmp_path / "corpus"
    assert main(["extract", "--input", str(inputs / "*"), "--output", str(output)]) == 0
    errors = pq.read_table(str(output / "record_errors")).to_pylist()
    by_file = {Path(row[RecordError.WARC_FILE]).name: row for row in errors}
    assert {name: row[RecordError.REASON] for name, row in by_file.items()} == {
        "empty.warc": "not_a_warc",
        "notes.warc": "not_a_warc",
        "photo.warc.gz": "not_a_warc",
    }
    assert "empty" in by_file["empty.warc"][RecordError.DETAIL]
    assert "these are my notes" in by_file["notes.warc"][RecordError.DETAIL]
    assert pq.read_table(str(output / "candidates")).column(Candidate.ALT_TEXT).to_pylist()


def test_a_commands_first_import_is_frozen_out_of_the_garbage_collectors_reach() -> None:
    """Beam's modules are ~200,000 objects every collection walked (1.2 to 1.6 CPU s of each run, bench/extract.py):
    a command's first import runs with the collector off and freezes what it made; a second freezes nothing more,
    and the collector is on again after both. In a fresh interpreter, so this process's state does not matter."""
    script = (
        "import gc, sys\n"
        "from pipeline.cli import _imports_frozen\n"
        "before = gc.get_freeze_count()\n"
        "with _imports_frozen('json.tool'):\n"
        "    assert not gc.isenabled()\n"
        "    import json.tool\n"
        "first = gc.get_freeze_count()\n"
        "with _imports_frozen('json.tool'):\n"
        "    assert gc.isenabled()\n"
        "print(before, first, gc.get_freeze_count(), gc.isenabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, first, second, enabled = done.stdout.split()
    assert int(before) == 0 and int(first) > 1000, done.stdout
    assert int(second) == int(first) and enabled == "True", done.stdout
