"""The extract stage on real crawl files: candidates, archived images, record errors, rejections, full Beam runs."""

from __future__ import annotations

import gzip
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

import pipeline.html.images as html_images
import pipeline.stages.extract as extract_stage
from pipeline.core.config import CorpusConfig, ExtractConfig, FetchConfig
from pipeline.core.keys import candidate_id, sample_key
from pipeline.core.layout import CorpusLayout, WriteTableBatches
from pipeline.html.scan import scan_page_reference
from pipeline.stages.extract import ARCHIVED_IMAGES, CANDIDATES, RECORD_ERRORS, REJECTED, iter_extracted, run
from pipeline.stages.fetch import fetch_one
from schemas import ArchivedImage, Candidate, FetchedImage, RecordError, Rejection
from tests.conftest import shared_path


def extract(path: Path, config: CorpusConfig | None = None) -> tuple[dict[str, list[dict[str, Any]]], Counter]:
    rows: dict[str, list[dict[str, Any]]] = {CANDIDATES: [], ARCHIVED_IMAGES: [], RECORD_ERRORS: [], REJECTED: []}
    counts: Counter = Counter()
    with open(path, "rb") as stream:
        for tag, row in iter_extracted(stream, str(path), config or CorpusConfig(), counts):
            rows[tag].append(row)
    return rows, counts


def alts(rows: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {row[Candidate.ALT_TEXT] for row in rows[CANDIDATES]}


def warc_record(url: str, http_head: str, body: bytes, record_type: str = "response") -> bytes:
    """A WARC/1.0 record around an HTTP response, as crawlers write it."""
    block = http_head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body
    head = (
        f"WARC/1.0\r\nWARC-Type: {record_type}\r\nWARC-Record-ID: <urn:uuid:{abs(hash(url)):032x}>\r\n"
        f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-02T03:04:05Z\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n"
    )
    return gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0)


def test_candidate_rows_have_every_column_and_content_derived_ids() -> None:
    path = shared_path("warc/jwarc-cc.warc.gz")
    rows, counts = extract(path)
    assert counts["candidates"] == len(rows[CANDIDATES]) == 6
    assert counts["img_tags"] == 8 and counts["img_without_alt"] == 2
    for row in rows[CANDIDATES]:
        assert list(row) == Candidate.names()
        assert row[Candidate.KEY] == sample_key(row[Candidate.IMAGE_URL], row[Candidate.ALT_TEXT])
        assert row[Candidate.WARC_FILE] == str(path) and row[Candidate.WARC_RECORD_OFFSET] == 0
        assert row[Candidate.PAGE_URL] == "http://commoncrawl.org/" and row[Candidate.PAGE_HOST] == "commoncrawl.org"
        assert row[Candidate.HTML_LANG] == "en-US"
        assert row[Candidate.CRAWL_DATE] == "2019-12-10T10:00:01Z"
        assert row[Candidate.WARC_RECORD_ID] == "<urn:uuid:ececb7b0-ed4d-4d27-9ae8-2676df51cf7d>"
    assert len({row[Candidate.CANDIDATE_ID] for row in rows[CANDIDATES]}) == 6
    # Ordinals count every <img> of the page, with or without alt: ids stay stable whatever is dropped.
    all_ids = {candidate_id(str(path), 0, ordinal) for ordinal in range(8)}
    assert {row[Candidate.CANDIDATE_ID] for row in rows[CANDIDATES]} < all_ids
    assert {"40+ Languages", "Raw Data, Metadata, Text Data"} <= alts(rows)


def test_common_crawl_pages() -> None:
    rows, counts = extract(shared_path("warc/cc-2014-35-sample.warc"))
    assert counts["html_pages"] == 3 and counts["candidates"] == 861
    assert {"496", "Next", "Previous"} <= alts(rows)
    urls = {row[Candidate.IMAGE_URL] for row in rows[CANDIDATES]}
    assert "http://0pointer.de/photos/galleries/Australia/lq/img-496.jpg" in urls  # "./galleries/..." resolved

    rows, counts = extract(shared_path("warc/whirlwind.warc.gz"))
    assert counts["candidates"] == 7
    assert {"Biquipedia", "A enciclopedia libre", "Escudo d'armas"} <= alts(rows)
    assert {row[Candidate.HTML_LANG] for row in rows[CANDIDATES]} == {"an"}
    assert "upload.wikimedia.org" in {row[Candidate.IMAGE_HOST] for row in rows[CANDIDATES]}


def test_common_crawl_wat_gives_the_same_candidates_as_the_warc_page() -> None:
    wat_rows, counts = extract(shared_path("warc/cc-2014-35-sample.warc.wat"))
    warc_rows, _ = extract(shared_path("warc/cc-2014-35-sample.warc"))
    assert counts["candidates"] == len(wat_rows[CANDIDATES]) > 0
    wat_pairs = {(row[Candidate.IMAGE_URL], row[Candidate.ALT_TEXT]) for row in wat_rows[CANDIDATES]}
    warc_pairs = {(row[Candidate.IMAGE_URL], row[Candidate.ALT_TEXT]) for row in warc_rows[CANDIDATES]}
    assert wat_pairs <= warc_pairs
    assert all(list(row) == Candidate.names() for row in wat_rows[CANDIDATES])


def test_chinese_pages() -> None:
    rows, counts = extract(shared_path("warc/warcfile.warc.gz"))
    assert counts["html_pages"] == 16 and counts["candidates"] == 32
    assert {"中国新闻网", "微博", "微信", "Стратегия пожарной безопасности"} <= alts(rows)


def test_euc_jp_clueweb_page_whose_header_claims_gzip() -> None:
    rows, counts = extract(shared_path("warc/clueweb-quirk.warc.gz"))
    assert counts["html_pages"] == 29 and not rows[RECORD_ERRORS]
    found = alts(rows)
    assert {"当店一番人気、ヘッドポーター財布", "新しくアップされたアイテム", "e-brand QRコード"} <= found
    assert "ブラウニー ブリーフケース【ヘッドポーター HEADPORTER 吉田かばん】" in found
    assert not any("\ufffd" in alt for alt in found)  # no replacement characters: decoded as EUC-JP throughout
    assert {row[Candidate.CRAWL_DATE] for row in rows[CANDIDATES]} == {"2008-10-294T05:21:46-0700"}


def test_pywb_archive_images_are_kept_aside() -> None:
    rows, counts = extract(shared_path("warc/iana.warc.gz"))
    images = rows[ARCHIVED_IMAGES]
    assert counts["archived_images"] == len(images) >= 5
    by_url = {row[ArchivedImage.IMAGE_URL]: row for row in images}
    logo = by_url["http://www.iana.org/_img/2013.1/iana-logo-homepage.png"]
    assert logo[ArchivedImage.BODY].startswith(b"\x89PNG") and logo[ArchivedImage.HTTP_STATUS] == 200
    assert any(row[ArchivedImage.CONTENT_TYPE].startswith("image/svg+xml") for row in images)
    assert all(list(row) == ArchivedImage.names() for row in images)
    candidate_urls = {row[Candidate.IMAGE_URL] for row in rows[CANDIDATES]}
    assert "http://www.iana.org/_img/2013.1/iana-logo-header.svg" in candidate_urls


def test_books_toscrape_covers_are_archived_beside_their_titles() -> None:
    rows, counts = extract(shared_path("warc/books.toscrape.warc"))
    assert counts["candidates"] == 20 and counts["archived_images"] == 20
    assert {"A Light in the Attic", "Tipping the Velvet", "Soumission"} <= alts(rows)
    covers = {row[ArchivedImage.IMAGE_URL] for row in rows[ARCHIVED_IMAGES]}
    assert covers == {row[Candidate.IMAGE_URL] for row in rows[CANDIDATES]}
    assert all(row[ArchivedImage.BODY].startswith(b"\xff\xd8\xff") for row in rows[ARCHIVED_IMAGES])


def test_bad_files_give_recorded_errors() -> None:
    rows, counts = extract(shared_path("warc/clipped.warc.gz"))
    assert [row[RecordError.REASON] for row in rows[RECORD_ERRORS]] == ["truncated_file"]
    assert counts["error_truncated_file"] == 1 and counts["candidates"] == 6  # the part before the clip is used
    assert all(list(row) == RecordError.names() for row in rows[RECORD_ERRORS])
    rows, _ = extract(shared_path("warc/example-trunc.warc"))
    assert [row[RecordError.REASON] for row in rows[RECORD_ERRORS]] == ["truncated_content"]
    rows, counts = extract(shared_path("warc/example-bad-non-chunked.warc.gz"))
    assert counts["html_pages"] == 1 and not rows[RECORD_ERRORS]


def test_rejections_encodings_statuses_and_sniffing(tmp_path: Path) -> None:
    long_alt = "word " * 300
    page = f"""<html lang="de"><head><base href="https://cdn.example/assets/"></head><body>
      <img src="data:image/png;base64,iVBORw0KGgo=" alt="inline image">
      <img src="javascript:alert(1)" alt="script url">
      <img src="http://[::1/x.jpg" alt="broken url">
      <img src="long.jpg" alt="{long_alt}">
      <img src="ok.jpg" alt="  Gr&uuml;&szlig;e\n aus Berlin ">
      <img alt="no url at all">
    </body></html>"""
    latin1_page = '<html><body><img src="/é.jpg" alt="Café crème"></body></html>'.encode("cp1252")
    warc = tmp_path / "crafted.warc.gz"
    warc.write_bytes(
        warc_record(
            "https://Site.Example/page", "HTTP/1.1 200 OK\nContent-Type: text/html; charset=utf-8", page.encode()
        )
        + warc_record(
            "https://site.example/gz",
            "HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Encoding: gzip",
            gzip.compress(latin1_page),
        )
        + warc_record("https://site.example/missing", "HTTP/1.1 404 Not Found\nContent-Type: text/html", page.encode())
        + warc_record("https://site.example/untyped", "HTTP/1.1 200 OK", b"<!DOCTYPE html><html><img src=u.jpg alt=U>")
        + warc_record(
            "https://site.example/pic", "HTTP/1.1 200 OK\nContent-Type: application/octet-stream", b"GIF89a.."
        )
    )
    rows, counts = extract(warc, CorpusConfig(extract=ExtractConfig(max_alt_chars=1000)))
    reasons = Counter(row[Rejection.REASON] for row in rows[REJECTED])
    assert reasons == {"unsupported_url_scheme": 2, "invalid_url": 1, "alt_too_long_chars": 1}
    assert all(row[Rejection.STAGE] == "extract" and row[Rejection.CANDIDATE_ID] for row in rows[REJECTED])
    by_alt = {row[Candidate.ALT_TEXT]: row for row in rows[CANDIDATES]}
    assert set(by_alt) == {"Grüße aus Berlin", "Café crème", "U"}
    greeting = by_alt["Grüße aus Berlin"]
    assert greeting[Candidate.IMAGE_URL] == "https://cdn.example/assets/ok.jpg"
    assert greeting[Candidate.PAGE_HOST] == "site.example" and greeting[Candidate.HTML_LANG] == "de"
    assert by_alt["Café crème"][Candidate.IMAGE_URL] == "https://site.example/é.jpg"
    assert counts["img_without_url"] == 1 and counts["skipped_status_not_200"] == 1
    assert [row[ArchivedImage.IMAGE_URL] for row in rows[ARCHIVED_IMAGES]] == ["https://site.example/pic"]


def test_candidate_columns_give_the_rows_in_page_order_and_the_batches_from_pylist_gave(tmp_path: Path) -> None:
    """Candidates gather column by column (a page's shared columns once per page) while rejections are rows: the
    rows still come in document order, with each page's own values, and the record batches equal
    ``RecordBatch.from_pylist`` of those rows, however the batches cut the pages."""
    tags = (
        "".join(f'<img src="ok{n}.jpg" alt="fine {n}"><img src="javascript:x()" alt="script {n}">' for n in range(3))
        + f'<img src="long.jpg" alt="{"x" * 30}"><img src="last.jpg" alt="last">'
    )
    warc = tmp_path / "mixed.warc.gz"
    warc.write_bytes(
        warc_record(
            "https://a.example/one", "HTTP/1.1 200 OK\nContent-Type: text/html", f"<html lang=fr>{tags}".encode()
        )
        + warc_record("https://b.example/two", "HTTP/1.1 200 OK\nContent-Type: text/html", tags.encode())
    )
    config = CorpusConfig(extract=ExtractConfig(max_alt_chars=20))
    with open(warc, "rb") as stream:
        rows = list(iter_extracted(stream, str(warc), config))
    page = [CANDIDATES, REJECTED] * 3 + [REJECTED, CANDIDATES]
    assert [tag for tag, _ in rows] == page + page
    candidates = [row for tag, row in rows if tag == CANDIDATES]
    assert [(row[Candidate.PAGE_HOST], row[Candidate.HTML_LANG], row[Candidate.ALT_TEXT]) for row in candidates] == [
        (host, lang, alt)
        for host, lang in (("a.example", "fr"), ("b.example", None))
        for alt in ("fine 0", "fine 1", "fine 2", "last")
    ]
    schema = Candidate.schema()
    expected = pa.RecordBatch.from_pylist(candidates, schema=schema)
    for batch_rows in (1, 3, 4096):
        out, batches = extract_stage.CandidateColumns(), []
        with open(warc, "rb") as stream:
            for _, row in extract_stage.extract_columns(stream, str(warc), config, out, Counter()):
                while row is None and len(out) >= batch_rows:
                    batches.append(out.take_batch(batch_rows, schema))
        while len(out):
            batches.append(out.take_batch(batch_rows, schema))
        assert all(batch.num_rows <= batch_rows for batch in batches)
        assert pa.Table.from_batches(batches, schema=schema).equals(pa.Table.from_batches([expected]))


def _applied_transforms(pipeline: Any) -> list[Any]:
    """Every applied transform of a pipeline's graph."""
    from apache_beam.pipeline import PipelineVisitor

    found = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, applied: Any) -> None:
            found.append(applied)

        def enter_composite_transform(self, applied: Any) -> None:
            found.append(applied)

    pipeline.visit(Visitor())
    return found


def test_batches_cross_beam_with_the_arrow_coders() -> None:
    """The DoFn declares its record batches and WriteTableBatches its row groups, so Beam encodes them (and samples
    their size) with the Arrow IPC coders, not by pickling them; the coders give back equal batches and tables."""
    import apache_beam as beam
    from apache_beam.coders import typecoders

    from pipeline.core.layout import RecordBatchCoder, TableCoder

    pipeline = beam.Pipeline()
    outputs = pipeline | extract_stage.ExtractCandidates([str(shared_path("warc/jwarc-cc.warc.gz"))], CorpusConfig())
    for tag in (CANDIDATES, ARCHIVED_IMAGES, RECORD_ERRORS, REJECTED):
        assert isinstance(typecoders.registry.get_coder(outputs[tag].element_type), RecordBatchCoder), tag
    outputs[CANDIDATES] | "Write" >> WriteTableBatches("unused/candidates", Candidate)
    row_groups = [
        output
        for applied in _applied_transforms(pipeline)
        if applied.full_label == "Write/RowGroups"
        for output in applied.outputs.values()
    ]
    assert [typecoders.registry.get_coder(output.element_type).__class__ for output in row_groups] == [TableCoder]
    with open(shared_path("warc/jwarc-cc.warc.gz"), "rb") as stream:
        rows = [row for tag, row in iter_extracted(stream, "jwarc-cc.warc.gz", CorpusConfig()) if tag == CANDIDATES]
    batch = pa.RecordBatch.from_pylist(rows, schema=Candidate.schema())
    assert batch.num_rows
    coder, table_coder = RecordBatchCoder(), TableCoder()
    decoded = coder.decode(coder.encode(batch))
    assert decoded.equals(batch) and decoded.schema.equals(batch.schema, check_metadata=True)
    table = pa.Table.from_batches([batch, batch])
    assert table_coder.decode(table_coder.encode(table)).equals(table)
    assert coder.estimate_size(batch) == batch.nbytes


# -- full Beam runs ---------------------------------------------------------------------------------------------

RUN_INPUTS = ("books.toscrape.warc", "jwarc-cc.warc.gz", "clipped.warc.gz", "warcfile.warc.gz", "example-trunc.warc")


def read_table(folder: Path, name: str = "part-*") -> list[dict[str, Any]]:
    files = sorted(folder.glob(f"{name}.parquet"))
    assert files, f"no Parquet files in {folder}"
    return [row for path in files for row in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def inputs() -> str:
    return ",".join(str(shared_path(f"warc/{name}")) for name in RUN_INPUTS)


def test_full_stage_run_writes_every_table(tmp_path: Path, inputs: str) -> None:
    counters = run(["--input", inputs, "--output", str(tmp_path)])
    candidates = read_table(tmp_path / "candidates")
    assert counters["candidates"] == len(candidates) == 20 + 6 + 6 + 32
    assert counters["files"] == len(RUN_INPUTS)
    assert pq.read_schema(next((tmp_path / "candidates").glob("*.parquet"))).names == Candidate.names()
    assert "A Light in the Attic" in {row[Candidate.ALT_TEXT] for row in candidates}
    archived = read_table(tmp_path / "archived_images")
    assert len(archived) == counters["archived_images"] == 20
    errors = read_table(tmp_path / "record_errors")
    assert Counter(row[RecordError.REASON] for row in errors) == {"truncated_file": 1, "truncated_content": 1}
    assert (tmp_path / "candidates" / "_SUCCESS").exists()


def _sorted_rows(rows: list[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    return sorted((tuple(row[name] for name in names) for row in rows), key=repr)


def test_rows_cross_beam_in_batches_and_are_written_as_the_loop_gives_them(
    tmp_path: Path, inputs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage emits Arrow record batches (not a Beam element per row) and writes them in row groups: with
    batches of 7 rows and row groups of about 2 KB, every table holds exactly the loop's rows, with the table's
    schema (metadata included), over several row groups."""
    monkeypatch.setattr(extract_stage, "BATCH_ROWS", 7)
    monkeypatch.setattr(extract_stage, "WriteTableBatches", _small_row_groups(WriteTableBatches))
    run(["--input", inputs, "--output", str(tmp_path)])
    expected: dict[str, list[dict[str, Any]]] = {CANDIDATES: [], ARCHIVED_IMAGES: [], RECORD_ERRORS: [], REJECTED: []}
    for name in RUN_INPUTS:
        rows, _ = extract(shared_path(f"warc/{name}"))
        for tag, tagged in rows.items():
            expected[tag] += tagged
    for tag, table, folder, pattern in (
        (CANDIDATES, Candidate, "candidates", "part-*"),
        (ARCHIVED_IMAGES, ArchivedImage, "archived_images", "part-*"),
        (RECORD_ERRORS, RecordError, "record_errors", "part-*"),
        (REJECTED, Rejection, "rejected", "extract-*"),
    ):
        files = sorted((tmp_path / folder).glob(f"{pattern}.parquet"))
        written = [row for path in files for row in pq.read_table(path).to_pylist()]
        names = table.names()
        assert _sorted_rows(written, names) == _sorted_rows([table.project(r) for r in expected[tag]], names), tag
        for path in files:
            assert pq.read_schema(path).equals(table.schema(), check_metadata=True)
    candidate_files = sorted((tmp_path / "candidates").glob("*.parquet"))
    assert sum(pq.ParquetFile(path).metadata.num_row_groups for path in candidate_files) > len(candidate_files)


def _small_row_groups(writer: type) -> Any:
    """``WriteTableBatches`` with a tiny row group, so a small input gives several."""

    def make(prefix: str, table: type, num_shards: int = 0) -> Any:
        return writer(prefix, table, num_shards, row_group_bytes=2048)

    return make


@pytest.mark.slow  # a full multi-process or end-to-end stage run: make test, not make test-fast
def test_multi_processing_run_gives_the_same_candidates(tmp_path: Path, inputs: str) -> None:
    single, multi = tmp_path / "single", tmp_path / "multi"
    run(["--input", inputs, "--output", str(single)])
    run(
        [
            "--input",
            inputs,
            "--output",
            str(multi),
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )

    def ids(root: Path) -> list[tuple[str, str]]:
        return sorted((row[Candidate.CANDIDATE_ID], row[Candidate.KEY]) for row in read_table(root / "candidates"))

    assert ids(single) == ids(multi) and len(ids(single)) == 64


def test_unmatched_input_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matches no file"):
        run(["--input", str(tmp_path / "nothing-*.warc.gz"), "--output", str(tmp_path / "out")])


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_wget_warc(path: Path, image: bytes) -> None:
    """A WARC as wget 1.19-1.21 writes it: every WARC-Target-URI inside angle brackets (a page, its image)."""
    page = (
        b'<!DOCTYPE html><html lang="en"><head><title>Cats</title></head><body>'
        b'<img src="pics/cat.png" alt="A sleeping cat"><img src="/logo.png" alt="The site logo"></body></html>'
    )
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        for uri, content_type, body in (
            ("<https://example.org/dir/page.html>", "text/html; charset=utf-8", page),
            ("<https://example.org/dir/pics/cat.png>", "image/png", image),
        ):
            http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=http))


def test_angle_bracketed_target_uris_of_wget_are_unwrapped(tmp_path: Path) -> None:
    """wget 1.19-1.21 writes ``WARC-Target-URI: <https://...>``: pages and archived images get their plain URL, so
    relative images resolve, page_host is set, and fetch finds the archived image of a candidate."""
    warc = tmp_path / "wget.warc.gz"
    write_wget_warc(warc, _png())
    with open(warc, "rb") as stream:  # the file really holds the brackets
        assert b"WARC-Target-URI: <https://example.org/dir/page.html>" in gzip.decompress(stream.read())
    counters = run(["--input", str(warc), "--output", str(tmp_path / "corpus")])
    candidates = {row[Candidate.ALT_TEXT]: row for row in read_table(tmp_path / "corpus" / "candidates")}
    assert read_table(tmp_path / "corpus" / "rejected", "extract-*") == []  # before: both relative URLs invalid_url
    assert {alt: row[Candidate.IMAGE_URL] for alt, row in candidates.items()} == {
        "A sleeping cat": "https://example.org/dir/pics/cat.png",
        "The site logo": "https://example.org/logo.png",
    }
    for row in candidates.values():
        assert row[Candidate.PAGE_URL] == "https://example.org/dir/page.html"
        assert row[Candidate.PAGE_HOST] == "example.org" and row[Candidate.IMAGE_HOST] == "example.org"
    (archived,) = read_table(tmp_path / "corpus" / "archived_images")
    assert archived[ArchivedImage.IMAGE_URL] == candidates["A sleeping cat"][Candidate.IMAGE_URL]
    # Every unwrapped URI is counted: a corpus built from such files says so in extract's _SUCCESS.
    assert counters["target_uri_unwrapped"] == 2
    success = CorpusLayout(str(tmp_path / "corpus")).read_success("extract")
    assert success["counters"]["target_uri_unwrapped"] == 2
    # fetch, archive only (no network), serves the cat from the archived record it now matches.
    config = FetchConfig(fetch_mode="archive-only")
    image = fetch_one(archived[ArchivedImage.IMAGE_URL], archived, None, config)
    assert image[FetchedImage.STATUS] == "ok" and image[FetchedImage.SOURCE] == "archive"


@pytest.mark.slow  # two full stage runs
def test_the_pure_python_tag_scanner_is_loud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the compiled scanner is missing (installed without a C compiler) extract still runs, about 1.8x slower:
    a warning once per worker process, a counter of the pages it scanned, and _SUCCESS saying which scanner ran."""
    inputs = ",".join(str(shared_path(f"warc/{name}")) for name in ("jwarc-cc.warc.gz", "whirlwind.warc.gz"))
    compiled = run(["--input", inputs, "--output", str(tmp_path / "compiled")])
    assert "python_tag_scanner_pages" not in compiled
    assert CorpusLayout(str(tmp_path / "compiled")).read_success("extract")["tag_scanner"] == "compiled"

    # What pipeline.html.scan gives find_images where the import of the compiled module fails.
    monkeypatch.setattr(html_images, "scan_page", scan_page_reference)
    monkeypatch.setattr(html_images, "tag_attributes", None)
    monkeypatch.setattr(extract_stage, "_warned_about_python_scanner", False)  # as in a fresh worker process
    with caplog.at_level(logging.WARNING, logger="altcorpus"):
        fallback = run(["--input", inputs, "--output", str(tmp_path / "python")])
    warnings = [record.getMessage() for record in caplog.records if "tag scanner" in record.getMessage()]
    assert len(warnings) == 1 and "pipeline.html._tagscan" in warnings[0], warnings  # two files, one warning
    assert fallback["python_tag_scanner_pages"] == fallback["html_pages"] == 2
    assert {name: value for name, value in fallback.items() if name != "python_tag_scanner_pages"} == compiled
    assert CorpusLayout(str(tmp_path / "python")).read_success("extract")["tag_scanner"] == "python"
