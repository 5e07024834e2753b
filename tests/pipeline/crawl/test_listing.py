"""Crawl ids, paths listings and the file selection (``--files``, ``--files-from``, ``--segment-range``)."""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import pytest

from pipeline.core.config import CorpusConfig, CrawlConfig, check_settings
from pipeline.core.errors import InputError, UsageError
from pipeline.crawl.listing import (
    crawl_files,
    join_url,
    listing_path,
    parse_listing,
    segment_of,
    select,
    selection_problems,
)

CRAWL = "CC-MAIN-2024-33"
#: The shape of Common Crawl's warc.paths.gz: segment after segment, five files over three segments.
PATHS = [
    f"crawl-data/{CRAWL}/segments/1722640353668.0/warc/CC-MAIN-20240802234508-20240803024508-00000.warc.gz",
    f"crawl-data/{CRAWL}/segments/1722640353668.0/warc/CC-MAIN-20240802234508-20240803024508-00001.warc.gz",
    f"crawl-data/{CRAWL}/segments/1722640353669.1/warc/CC-MAIN-20240802234508-20240803024508-00002.warc.gz",
    f"crawl-data/{CRAWL}/segments/1722640353670.2/warc/CC-MAIN-20240802234508-20240803024508-00003.warc.gz",
    f"crawl-data/{CRAWL}/segments/1722640353670.2/warc/CC-MAIN-20240802234508-20240803024508-00004.warc.gz",
]


def test_listings_parse_gzipped_or_plain_with_blank_lines_and_comments() -> None:
    text = "\n".join(PATHS[:2]) + "\n\n# a comment\n  " + PATHS[2] + "  \n"
    assert parse_listing(gzip.compress(text.encode())) == PATHS[:3]
    assert parse_listing(text.encode()) == PATHS[:3]
    assert listing_path(CRAWL, "wat") == f"crawl-data/{CRAWL}/wat.paths.gz"
    assert segment_of(PATHS[3]) == "1722640353670.2"
    assert segment_of("elsewhere/file.warc.gz") is None


def test_segment_range_keeps_segments_in_listing_order_then_files_keeps_the_first_n() -> None:
    assert select(PATHS, "0:1") == PATHS[:2]
    assert select(PATHS, "1:3") == PATHS[2:]
    assert select(PATHS, "-1:") == PATHS[3:]
    assert select(PATHS, "1:", files=2) == PATHS[2:4]
    assert select(PATHS, files=1) == PATHS[:1]
    assert select(PATHS, "5:9") == []
    # A segment named again later stays one segment, at its first place.
    shuffled = [PATHS[0], PATHS[2], PATHS[1]]
    assert select(shuffled, "0:1") == [PATHS[0], PATHS[1]]


def test_paths_join_the_base_url_and_urls_stay_as_listed() -> None:
    assert join_url("https://data.commoncrawl.org/", PATHS[0]) == f"https://data.commoncrawl.org/{PATHS[0]}"
    assert join_url("s3://commoncrawl", PATHS[0]) == f"s3://commoncrawl/{PATHS[0]}"
    assert join_url("https://data.commoncrawl.org/", "http://127.0.0.1:9/x.warc.gz") == "http://127.0.0.1:9/x.warc.gz"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crawl": "CC-MAIN-24-33"}, "is not a Common Crawl id: expected CC-MAIN-YYYY-WW"),
        ({"crawl": "cc-main-2024-33"}, "is not a Common Crawl id"),
        ({"crawl": "CC-MAIN-2024-60"}, "the week must be 01 to 53"),
        ({"crawl": CRAWL, "segment_range": "0-3"}, "--segment-range '0-3' is not START:END"),
        ({"files": 2}, "--files select files of a crawl: give --crawl"),
        ({"crawl": CRAWL, "source": "wet"}, "--source 'wet' is not one of: warc, wat"),
        ({"crawl": CRAWL, "cc_base_url": "ftp://mirror/"}, "--cc-base-url 'ftp://mirror/'"),
    ],
)
def test_bad_crawl_settings_are_one_usage_error(fields: dict, message: str) -> None:
    config = dataclasses.replace(CorpusConfig(), crawl=CrawlConfig(**fields))
    with pytest.raises(UsageError, match=re.escape(message)):
        check_settings(config)


def test_good_settings_have_no_problem() -> None:
    assert selection_problems(CrawlConfig(crawl=CRAWL, segment_range="0:3", files=2, source="wat")) == []
    assert selection_problems(CrawlConfig()) == []


def test_files_from_a_local_list_replaces_the_listing(tmp_path: Path) -> None:
    listing = tmp_path / "mine.paths.gz"
    listing.write_bytes(gzip.compress("\n".join(PATHS).encode()))
    crawl = CrawlConfig(
        crawl=CRAWL, files_from=str(listing), segment_range="1:", files=2, cc_base_url="s3://commoncrawl/"
    )
    assert crawl_files(crawl) == tuple(f"s3://commoncrawl/{path}" for path in PATHS[2:4])
    plain = tmp_path / "list.txt"
    plain.write_text(PATHS[4] + "\n")
    assert crawl_files(CrawlConfig(crawl=CRAWL, files_from=str(plain))) == (f"https://data.commoncrawl.org/{PATHS[4]}",)


def test_an_empty_selection_or_a_missing_listing_is_an_input_error(tmp_path: Path) -> None:
    listing = tmp_path / "mine.paths"
    listing.write_text("\n".join(PATHS))
    with pytest.raises(InputError, match="selection of CC-MAIN-2024-33 is empty: 5 files listed"):
        crawl_files(CrawlConfig(crawl=CRAWL, files_from=str(listing), segment_range="7:"))
    with pytest.raises(InputError, match="cannot read the paths listing of CC-MAIN-2024-33"):
        crawl_files(CrawlConfig(crawl=CRAWL, files_from=str(tmp_path / "absent.gz")))
