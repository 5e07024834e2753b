"""The fetch stage as a whole Beam job on a small corpus: archive first, then a real misbehaving HTTP server."""

from __future__ import annotations

import dataclasses
import glob
import json
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.core.config import FetchConfig, resolve_config
from pipeline.core.errors import UsageError
from pipeline.core.keys import candidate_id, sample_key
from pipeline.core.layout import CorpusLayout
from pipeline.core.rules import REJECTED
from pipeline.core.stage import pipeline_options
from pipeline.images.process import process_image
from pipeline.stages import fetch, filter_image, write_shards
from schemas import ArchivedImage, Candidate, FetchedImage, Rejection, TextKept
from tests.fixtures.http_server import HTML_PAGE, SVG_DRAWING, MisbehavingServer, encode, photo
from tests.pipeline.net.test_client import sample_images

FAST_FLAGS = [
    "--allow-private-addresses=true",
    "--connect-timeout-s=1",
    "--read-timeout-s=1",
    "--total-timeout-s=1.5",
    "--retry-backoff-s=0.05",
    "--max-retry-after-s=2",
    "--max-image-bytes=2000000",
    "--concurrency=8",
]

# image URL path (on the test server) or absolute URL -> (number of candidates pointing at it, expected status)
SERVER_CASES = {
    "/img/astronaut.jpg": (3, "ok"),
    "/img/coffee.png": (1, "ok"),
    "/plain/chelsea.jpg": (1, "ok"),
    "/missing.jpg": (2, "http_404"),
    "/html-as-jpeg.jpg": (1, "not_an_image"),
    "/private/china.jpg": (1, "robots_disallowed"),
    "/noai.jpg": (1, "opted_out"),
    "/slow-drip.jpg": (1, "timeout"),
    "/bomb.png": (2, "decompression_bomb"),
    "/truncated.jpg": (1, "decode_error"),
    "/loop/0": (1, "too_many_redirects"),
}
DEFAULT_PARTS = FetchConfig().fetch_parts
ARCHIVE = "http://archive.invalid"  # never resolvable: an archived URL that went to HTTP would fail with dns_error
ARCHIVE_CASES = {
    f"{ARCHIVE}/cat.jpg": (2, "ok"),
    f"{ARCHIVE}/gone.jpg": (1, "http_404"),
    f"{ARCHIVE}/optout.jpg": (1, "opted_out"),
    f"{ARCHIVE}/soft404.jpg": (1, "not_an_image"),
    f"{ARCHIVE}/drawing.svg": (1, "not_an_image"),  # warc keeps an SVG as an image; fetch does not store it
    f"{ARCHIVE}/twice.jpg": (1, "ok"),  # archived twice: a 404 and a 200; the 200 wins
}
OTHER_CASES = {
    "http://no-such-host.invalid/photo.jpg": (1, "dns_error"),
    "ftp://files.example.org/photo.jpg": (1, "unsupported_scheme"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer(sample_images()) as running:
        yield running


def candidate_rows(urls: dict[str, tuple[int, str]]) -> list[dict[str, Any]]:
    rows = []
    for url, (count, _) in sorted(urls.items()):
        for index in range(count):
            alt = f"a photo number {index} of {url.rsplit('/', 1)[-1]}"
            rows.append(
                TextKept.row(
                    candidate_id=candidate_id("test.warc.gz", len(rows) * 1000, index),
                    key=sample_key(url, alt),
                    image_url=url,
                    alt_text=alt,
                    page_url=f"http://pages.example.org/{len(rows)}.html",
                    language="en",
                    unigram_count=6,
                    duplicate_count=1,
                )
            )
    return rows


def archived_rows() -> list[dict[str, Any]]:
    chelsea = encode(photo("chelsea"), "JPEG")

    def record(url: str, status: int, body: bytes, offset: int, tag: str | None = None, date: str = "2024-01-01"):
        return ArchivedImage.row(
            image_url=url,
            http_status=status,
            content_type="image/jpeg",
            x_robots_tag=tag,
            body=body,
            warc_file="test.warc.gz",
            warc_record_offset=offset,
            crawl_date=date,
        )

    return [
        record(f"{ARCHIVE}/cat.jpg", 200, chelsea, 1),
        record(f"{ARCHIVE}/gone.jpg", 404, b"not found", 2),
        record(f"{ARCHIVE}/optout.jpg", 200, chelsea, 3, tag="noindex, noimageai"),
        record(f"{ARCHIVE}/soft404.jpg", 200, HTML_PAGE, 4),
        record(f"{ARCHIVE}/drawing.svg", 200, SVG_DRAWING, 8),
        record(f"{ARCHIVE}/twice.jpg", 404, b"gone", 5, date="2024-03-01"),
        record(f"{ARCHIVE}/twice.jpg", 200, chelsea, 6, date="2023-01-01"),
        record(f"{ARCHIVE}/nobody-points-here.jpg", 200, chelsea, 7),
    ]


def write_table(path: Path, table: Any, rows: list[dict[str, Any]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema()), path / "part-00000-of-00001.parquet")


def expected_cases(server: MisbehavingServer) -> dict[str, tuple[int, str]]:
    cases = {server.url(path): value for path, value in SERVER_CASES.items()}
    return {**cases, **ARCHIVE_CASES, **OTHER_CASES}


@pytest.fixture()
def corpus(tmp_path: Path, server: MisbehavingServer) -> Path:
    write_table(tmp_path / TextKept.FOLDER, TextKept, candidate_rows(expected_cases(server)))
    write_table(tmp_path / ArchivedImage.FOLDER, ArchivedImage, archived_rows())
    return tmp_path


def read_rows(pattern: str) -> list[dict[str, Any]]:
    files = sorted(glob.glob(pattern))
    return [row for file in files for row in pq.read_table(file).to_pylist()]


def check_outputs(corpus: Path, cases: dict[str, tuple[int, str]], counters: dict[str, int]) -> dict[str, Any]:
    """images/ has one row per distinct URL with its status; rejected/ every candidate of every failed URL."""
    images = read_rows(str(corpus / "images" / "*.parquet"))
    by_url = {row[FetchedImage.IMAGE_URL]: row for row in images}
    assert len(images) == len(by_url) == len(cases)  # one row per distinct URL, the orphan archive record ignored
    assert {url: row[FetchedImage.STATUS] for url, row in by_url.items()} == {
        url: status for url, (_, status) in cases.items()
    }
    for url, row in by_url.items():
        if row[FetchedImage.STATUS] == "ok":
            assert row[FetchedImage.IMAGE][:3] == b"\xff\xd8\xff"
            assert row[FetchedImage.PHASH] is not None and row[FetchedImage.SHA256]
            assert row[FetchedImage.SOURCE] == ("archive" if url.startswith(ARCHIVE) else "http")
        else:
            assert row[FetchedImage.IMAGE] is None and row[FetchedImage.ERROR]
    rejected = read_rows(str(corpus / "rejected" / "fetch-*.parquet"))
    candidates = read_rows(str(corpus / TextKept.FOLDER / "*.parquet"))
    failed = {url for url, (_, status) in cases.items() if status != "ok"}
    expected_rejected = {row[TextKept.CANDIDATE_ID] for row in candidates if row[TextKept.IMAGE_URL] in failed}
    assert sorted(row[Rejection.CANDIDATE_ID] for row in rejected) == sorted(expected_rejected)
    for row in rejected:
        assert row[Rejection.STAGE] == "fetch"
        assert row[Rejection.REASON] == by_url[row[Rejection.IMAGE_URL]][FetchedImage.STATUS]
        assert row[Rejection.KEY] and row[Rejection.ALT_TEXT] and row[Rejection.PAGE_URL]
    statuses = Counter(status for _, status in cases.values())
    assert counters["urls"] == len(cases)
    for status, count in statuses.items():
        assert counters[status] == count, status
    assert counters["candidates_rejected"] == len(expected_rejected)
    assert counters["bytes_original"] > 0 and counters["bytes_http"] > 0
    assert (corpus / "images" / "_SUCCESS").exists()
    return by_url


def stable(rows: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The deterministic part of images/ rows (fetch time and error wording of timeouts may differ)."""
    columns = [FetchedImage.STATUS, FetchedImage.SHA256, FetchedImage.PHASH, FetchedImage.WIDTH, FetchedImage.IMAGE]
    return {url: tuple(row[column] for column in columns) for url, row in rows.items()}


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_fetch_stage_end_to_end(corpus: Path, server: MisbehavingServer) -> None:
    server.reset_counts()
    counters = fetch.run(["--output", str(corpus), *FAST_FLAGS])
    cases = expected_cases(server)
    single = check_outputs(corpus, cases, counters)
    # One fetch per distinct URL: three candidates, one request; robots.txt once for the whole run.
    assert server.requests["/img/astronaut.jpg"] == 1
    assert server.requests["/robots.txt"] == 1
    assert counters["source_archive"] == len(ARCHIVE_CASES)

    rejected = sorted(row[Rejection.CANDIDATE_ID] for row in read_rows(str(corpus / "rejected" / "*.parquet")))

    # The same job on two worker processes gives the same images.
    counters = fetch.run(
        ["--output", str(corpus), *FAST_FLAGS, "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    assert stable(check_outputs(corpus, cases, counters)) == stable(single)

    # Split into 3 parts instead of the default 64: the same images/ and rejected/ rows.
    counters = fetch.run(["--output", str(corpus), *FAST_FLAGS, "--fetch-parts=3"])
    assert stable(check_outputs(corpus, cases, counters)) == stable(single)
    assert sorted(row[Rejection.CANDIDATE_ID] for row in read_rows(str(corpus / "rejected" / "*.parquet"))) == rejected


@pytest.mark.slow  # three whole stage runs
def test_an_interrupted_fetch_resumes_with_only_the_parts_it_had_not_finished(
    corpus: Path, server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Killed after some parts, the rerun requests only the other parts' URLs and ends with an uninterrupted run's rows."""
    cases = expected_cases(server)
    reference = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(corpus, reference, dirs_exist_ok=True)
    server.reset_counts()
    whole = check_outputs(reference, cases, fetch.run(["--output", str(reference), *FAST_FLAGS]))
    whole_requests = Counter(server.requests)
    whole_rejected = sorted(row[Rejection.CANDIDATE_ID] for row in read_rows(str(reference / "rejected" / "*.parquet")))

    parts = {fetch.part_of(url, DEFAULT_PARTS) for url in cases}
    stop_after = len(parts) // 2
    monkeypatch.setenv(fetch.FAIL_AFTER_PARTS_ENV, str(stop_after))
    with pytest.raises(Exception, match=fetch.FAIL_AFTER_PARTS_ENV):
        fetch.run(["--output", str(corpus), *FAST_FLAGS])
    monkeypatch.delenv(fetch.FAIL_AFTER_PARTS_ENV)
    assert not (corpus / "images" / "_SUCCESS").exists()
    markers = [json.loads(Path(path).read_text()) for path in glob.glob(str(corpus / "_parts" / "fetch-*" / "*.done"))]
    assert len(markers) == stop_after
    done = {marker["part"] for marker in markers}
    fetched_before = {
        row[FetchedImage.IMAGE_URL] for marker in markers for row in read_rows(marker["files"]["images"] or "")
    }
    assert fetched_before == {url for url in cases if fetch.part_of(url, DEFAULT_PARTS) in done}
    assert 0 < len(fetched_before) < len(cases)

    server.reset_counts()
    counters = fetch.run(["--output", str(corpus), *FAST_FLAGS])
    resumed = check_outputs(corpus, cases, counters)  # the counters cover the parts of the first run too
    assert stable(resumed) == stable(whole)
    assert sorted(row[Rejection.CANDIDATE_ID] for row in read_rows(str(corpus / "rejected" / "*.parquet"))) == (
        whole_rejected
    )
    for path in SERVER_CASES:
        expected = 0 if server.url(path) in fetched_before else whole_requests[path]
        assert server.requests[path] == expected, path
    assert not (corpus / "_parts").exists()  # the stage succeeded: its parts are gone


@pytest.mark.slow  # three whole stage runs
def test_a_rerun_with_another_part_count_starts_its_parts_from_zero(
    corpus: Path, server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts finished under the default split are never reused by a run split into 5 parts: it starts from zero,
    and resumes under its own split."""
    cases = expected_cases(server)

    def interrupted(after: int, *flags: str) -> dict[str, list[int]]:
        monkeypatch.setenv(fetch.FAIL_AFTER_PARTS_ENV, str(after))
        with pytest.raises(Exception, match=fetch.FAIL_AFTER_PARTS_ENV):
            fetch.run(["--output", str(corpus), *FAST_FLAGS, *flags])
        monkeypatch.delenv(fetch.FAIL_AFTER_PARTS_ENV)
        folders = glob.glob(str(corpus / "_parts" / "fetch-*"))
        markers = {folder: glob.glob(str(Path(folder) / "*.done")) for folder in folders}
        return {
            folder: sorted(json.loads(Path(path).read_text())["part"] for path in done)
            for folder, done in markers.items()
        }

    before = interrupted(2)
    assert [len(parts) for parts in before.values()] == [2]
    after = interrupted(1, "--fetch-parts=5")
    # The old split's folder is gone and the new one holds only this run's part: nothing was carried over.
    assert len(after) == 1 and not set(after) & set(before)
    assert [len(parts) for parts in after.values()] == [1] and all(part < 5 for part in next(iter(after.values())))

    counters = fetch.run(["--output", str(corpus), *FAST_FLAGS, "--fetch-parts=5"])
    check_outputs(corpus, cases, counters)
    assert not (corpus / "_parts").exists()


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_part_count_below_one_is_refused_before_anything_is_written(tmp_path: Path, value: str) -> None:
    with pytest.raises(UsageError) as refused:
        fetch.run(["--output", str(tmp_path), f"--fetch-parts={value}"])
    assert str(refused.value) == f"--fetch-parts {value} is out of range: at least 1"
    assert not list(tmp_path.iterdir())


def test_parts_of_another_fingerprint_are_removed_and_never_reused(corpus: Path) -> None:
    """Another fetch setting (or upstream run) gives another parts folder; building the graph drops the old one."""
    layout = CorpusLayout(str(corpus))
    options = [f"--output={corpus}", *FAST_FLAGS]
    first = fetch.parts_digest(layout, resolve_config(pipeline_options(options)), pipeline_options(options))
    again = fetch.parts_digest(layout, resolve_config(pipeline_options(options)), pipeline_options(options))
    other_options = [*options, "--jpeg-quality=80"]
    other = fetch.parts_digest(layout, resolve_config(pipeline_options(other_options)), pipeline_options(other_options))
    split_options = [*options, f"--fetch-parts={DEFAULT_PARTS // 2}"]
    split = fetch.parts_digest(layout, resolve_config(pipeline_options(split_options)), pipeline_options(split_options))
    assert first == again != other
    assert split not in (first, other)  # parts made under another split are never reused
    old = Path(layout.parts_folder("fetch", first))
    old.mkdir(parents=True)
    (old / "part-00001.done").write_text(json.dumps({"part": 1, "files": {}, "counters": {}}))
    assert list(fetch.prepare_parts(layout, layout.parts_folder("fetch", first))) == [1]
    assert fetch.prepare_parts(layout, layout.parts_folder("fetch", other)) == {}
    assert not old.exists()


def test_archive_only_never_touches_the_network(corpus: Path, server: MisbehavingServer) -> None:
    server.reset_counts()
    counters = fetch.run(["--output", str(corpus), *FAST_FLAGS, "--fetch-mode=archive-only"])
    cases = {url: (count, "not_archived") for url, (count, _) in expected_cases(server).items()}
    cases.update(ARCHIVE_CASES)
    images = read_rows(str(corpus / "images" / "*.parquet"))
    assert {row[FetchedImage.IMAGE_URL]: row[FetchedImage.STATUS] for row in images} == {
        url: status for url, (_, status) in cases.items()
    }
    assert sum(server.requests.values()) == 0
    assert counters["not_archived"] == len(cases) - len(ARCHIVE_CASES)


def test_fetch_dofn_keeps_each_host_under_its_limit() -> None:
    """Many URLs of one slow host and a few of another: every one fetched, never more than the limit per host."""
    config = dataclasses.replace(
        FetchConfig(), allow_private_addresses=True, concurrency=8, per_host_concurrency=2, fetch_mode="http-only"
    )
    with (
        MisbehavingServer(sample_images(), robots_txt=None, slow_ok_delay_s=0.1) as slow,
        MisbehavingServer(sample_images(), robots_txt=None) as fast,
    ):
        urls = [slow.url(f"/slow-ok/{i}.jpg") for i in range(16)] + [fast.url(f"/img/china.jpg?{i}") for i in range(4)]
        elements = [(url, (1, None)) for url in urls]  # one candidate each, not archived
        with TestPipeline() as pipeline:
            results = (
                pipeline
                | beam.Create(elements)
                | beam.ParDo(fetch.FetchImages(config)).with_outputs(REJECTED, main="images")
            )
            statuses = results.images | beam.Map(lambda row: (row[FetchedImage.IMAGE_URL], row[FetchedImage.STATUS]))
            assert_that(statuses, equal_to([(url, "ok") for url in urls]), label="AllOk")
            assert_that(results[REJECTED], equal_to([]), label="NoRejections")
        assert slow.max_in_flight == 2  # reached, never exceeded
        assert fast.max_in_flight <= 2


def test_archived_responses_pass_the_same_checks() -> None:
    config = FetchConfig()
    rows = {row[ArchivedImage.IMAGE_URL]: row for row in archived_rows()}
    assert fetch.archived_result(rows[f"{ARCHIVE}/gone.jpg"], config).status == "http_404"
    assert fetch.archived_result(rows[f"{ARCHIVE}/optout.jpg"], config).status == "opted_out"
    no_opt_out = dataclasses.replace(config, respect_opt_out=False)
    assert fetch.archived_result(rows[f"{ARCHIVE}/optout.jpg"], no_opt_out).status == "ok"
    small_cap = dataclasses.replace(config, max_image_bytes=100)
    assert fetch.archived_result(rows[f"{ARCHIVE}/cat.jpg"], small_cap).status == "too_large"
    redirect = dict(rows[f"{ARCHIVE}/cat.jpg"], http_status=301)
    assert fetch.archived_result(redirect, config) is None  # holds no image: HTTP decides
    twice = [row for row in archived_rows() if row[ArchivedImage.IMAGE_URL].endswith("twice.jpg")]
    assert fetch.choose_archived(twice)[ArchivedImage.HTTP_STATUS] == 200
    assert fetch.choose_archived(list(reversed(twice))) == fetch.choose_archived(twice)


# Archived originals (image URL -> format): kept as they are with --keep-original-bytes, except the GIF (re-encoded).
ORIGINALS = {
    f"{ARCHIVE}/kept/chelsea.jpg": "JPEG",
    f"{ARCHIVE}/kept/coffee.png": "PNG",
    f"{ARCHIVE}/kept/astronaut.webp": "WEBP",
    f"{ARCHIVE}/kept/rocket.gif": "GIF",
}


def build_shards(root: Path, *fetch_flags: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """fetch (archive-only) -> filter-image -> write-shards on the archived ORIGINALS; (url -> served bytes, tar members
    by name)."""
    bodies = {url: encode(photo(url.rsplit("/", 1)[1].split(".")[0]), name) for url, name in ORIGINALS.items()}
    rows = candidate_rows({url: (1, "ok") for url in ORIGINALS})
    write_table(root / TextKept.FOLDER, TextKept, rows)
    write_table(root / Candidate.FOLDER, Candidate, [Candidate.project(row) for row in rows])
    archived = [
        ArchivedImage.row(image_url=url, http_status=200, body=body, warc_file="test.warc.gz", warc_record_offset=i)
        for i, (url, body) in enumerate(sorted(bodies.items()))
    ]
    write_table(root / ArchivedImage.FOLDER, ArchivedImage, archived)
    fetch.run(["--output", str(root), "--fetch-mode=archive-only", *fetch_flags])
    filter_image.run(["--output", str(root)])
    write_shards.run(["--output", str(root)])
    with tarfile.open(root / "shards" / "00000.tar") as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive}
    return bodies, members


def image_members(members: dict[str, bytes], rows: list[dict[str, Any]]) -> dict[str, tuple[str, bytes]]:
    """image URL -> (extension, bytes) of its sample's image member."""
    url_of = {row[TextKept.KEY]: row[TextKept.IMAGE_URL] for row in rows}
    found = {}
    for name, data in members.items():
        key, extension = name.split(".", 1)
        if extension not in ("txt", "json"):
            found[url_of[key]] = (extension, data)
    return found


@pytest.fixture(scope="module")
def kept_and_default(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict, list]]:
    """The same archived originals through three stages with and without --keep-original-bytes."""
    built = {}
    for name, flags in (("kept", ["--keep-original-bytes=true"]), ("default", [])):
        root = tmp_path_factory.mktemp(name)
        bodies, members = build_shards(root, *flags)
        built[name] = (bodies, members, read_rows(str(root / "images" / "*.parquet")), root)
    return built


@pytest.mark.slow  # three stage runs twice
def test_keep_original_bytes_puts_the_archived_file_itself_in_the_shard(kept_and_default: dict) -> None:
    bodies, members, images, _ = kept_and_default["kept"]
    rows = candidate_rows({url: (1, "ok") for url in ORIGINALS})
    stored = image_members(members, rows)
    assert set(stored) == set(ORIGINALS)  # every sample survived filter-image
    extensions = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
    for url, image_format in ORIGINALS.items():
        extension, data = stored[url]
        if image_format in extensions:
            assert (extension, data) == (extensions[image_format], bodies[url]), url  # byte for byte
        else:  # a GIF is re-encoded, unresized, as a JPEG member
            assert extension == "jpg" and data[:3] == b"\xff\xd8\xff"
    by_url = {row[FetchedImage.IMAGE_URL]: row for row in images}
    assert {url: row[FetchedImage.ORIGINAL_FORMAT] for url, row in by_url.items()} == ORIGINALS
    for row in by_url.values():  # nothing resized: astronaut and chelsea are larger than the 512 px default
        assert (row[FetchedImage.WIDTH], row[FetchedImage.HEIGHT]) == (
            row[FetchedImage.ORIGINAL_WIDTH],
            row[FetchedImage.ORIGINAL_HEIGHT],
        )
    # Hashes as without the option: same content duplicates, same eval-index matches.
    default = {row[FetchedImage.IMAGE_URL]: row for row in kept_and_default["default"][2]}
    for url, row in by_url.items():
        assert (row[FetchedImage.SHA256], row[FetchedImage.PHASH]) == (
            default[url][FetchedImage.SHA256],
            default[url][FetchedImage.PHASH],
        )


@pytest.mark.slow
def test_without_the_option_every_member_is_the_resized_jpeg(kept_and_default: dict) -> None:
    bodies, members, _, _ = kept_and_default["default"]
    stored = image_members(members, candidate_rows({url: (1, "ok") for url in ORIGINALS}))
    config = FetchConfig()
    for url, (extension, data) in stored.items():
        expected = process_image(
            bodies[url], config.max_image_pixels, config.resize_mode, config.image_size, config.jpeg_quality
        )
        assert (extension, data) == ("jpg", expected.image_bytes), url


@pytest.mark.slow
def test_open_clip_train_reads_the_png_and_webp_members(kept_and_default: dict) -> None:
    from tests.fixtures.open_clip_loader import open_clip_train_loader

    root = kept_and_default["kept"][3]
    images, texts = next(iter(open_clip_train_loader(root, batch_size=len(ORIGINALS), image_size=64)))
    assert images.shape == (len(ORIGINALS), 3, 64, 64) and texts.shape == (len(ORIGINALS), 77)


def test_keep_original_bytes_refuses_a_resize_setting(tmp_path: Path) -> None:
    """Originals and a resize at once: refused before anything is read, not one of them silently ignored."""
    with pytest.raises(UsageError, match="--image-size 256 would be ignored"):
        fetch.run(["--output", str(tmp_path), "--keep-original-bytes=true", "--image-size=256"])
    with pytest.raises(UsageError, match="--resize-mode no would be ignored"):
        dataclasses.replace(FetchConfig(), keep_original_bytes=True, resize_mode="no")
    assert FetchConfig(keep_original_bytes=True, jpeg_quality=80).keep_original_bytes  # used for re-encoded GIFs
    assert not list(tmp_path.iterdir())


def test_part_files_become_images_files_without_being_rewritten(tmp_path: Path) -> None:
    parts = tmp_path / "_parts"
    parts.mkdir()
    rows = [
        FetchedImage.project({FetchedImage.IMAGE_URL: f"http://h/{index}.jpg", FetchedImage.STATUS: "ok"})
        for index in range(3)
    ]
    sources = []
    for index in (3, 1):  # the targets are numbered in the order of the sorted source paths
        source = parts / f"part-{index:05d}.images.parquet"
        pq.write_table(pa.Table.from_pylist(rows[:index], schema=FetchedImage.schema()), source)
        sources.append(str(source))
    prefix = str(tmp_path / "images" / "part")
    targets = fetch.promote_image_parts(sources, prefix)
    assert targets == [f"{prefix}-00000-of-00002.parquet", f"{prefix}-00001-of-00002.parquet"]
    for source, target in zip(sorted(sources), targets, strict=True):
        # The same file, linked on a local disk: no image's bytes were read or written again.
        assert Path(target).stat().st_ino == Path(source).stat().st_ino
    shutil.rmtree(parts)  # what fetch.run does once the stage succeeded: images/ keeps its files
    urls = pq.read_table(str(tmp_path / "images")).column(FetchedImage.IMAGE_URL).to_pylist()
    assert sorted(urls) == sorted(row[FetchedImage.IMAGE_URL] for row in rows[:3] + rows[:1])


def test_no_image_part_gives_one_empty_images_file_with_the_schema(tmp_path: Path) -> None:
    (target,) = fetch.promote_image_parts([], str(tmp_path / "images" / "part"))
    table = pq.read_table(target)
    assert table.num_rows == 0 and table.schema.equals(FetchedImage.schema(), check_metadata=False)


def test_status_rows_read_every_row_group_without_the_image_bytes(tmp_path: Path) -> None:
    # The rejections of failed URLs need each URL's status and error, never its bytes.
    rows = [
        FetchedImage.project(
            {
                FetchedImage.IMAGE_URL: f"http://h/{index}.jpg",
                FetchedImage.STATUS: "ok" if index % 2 else "http_404",
                FetchedImage.ERROR: None if index % 2 else "HTTP 404",
                FetchedImage.IMAGE: b"\xff\xd8" * 100 if index % 2 else None,
            }
        )
        for index in range(5)
    ]
    path = tmp_path / "part-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=FetchedImage.schema()), path, row_group_size=2)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert list(fetch.status_rows(str(path))) == [{name: row[name] for name in fetch.STATUS_COLUMNS} for row in rows]
