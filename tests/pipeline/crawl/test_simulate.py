"""The crawl simulator: a Common-Crawl-shaped mirror (one gzip member per record, WAT twins, listings), deterministic,
with its planted variety, served from many loopback host names; and the WAT-against-WARC comparison on it."""

from __future__ import annotations

import gzip
import json
import random
import socket
import zlib
from collections import Counter
from pathlib import Path

import pytest
import urllib3
from fastwarc import ArchiveIterator

from pipeline.crawl.compare import compare_sources, format_comparison
from pipeline.crawl.simulate import SimulatedCrawl, Zipf, generate, parse_size
from tests.fixtures.crawl_mirror import SMALL, plan, small_mirror


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_mirror(tmp_path_factory.mktemp("mirror"))


def gzip_members(data: bytes) -> list[tuple[int, bytes]]:
    """Each gzip member of ``data``: its offset and its decompressed bytes."""
    members, offset = [], 0
    for _ in range(len(data)):  # bounded: every member is at least one byte
        if offset >= len(data):
            break
        inflater = zlib.decompressobj(31)
        members.append((offset, inflater.decompress(data[offset:])))
        offset = len(data) - len(inflater.unused_data)
    return members


def test_the_mirror_has_common_crawls_shape(mirror: Path) -> None:
    simulation = plan(mirror)
    crawl_dir = mirror / "crawl-data" / "CC-MAIN-2099-01"
    for source in ("warc", "wat"):
        listed = gzip.decompress((crawl_dir / f"{source}.paths.gz").read_bytes()).decode().split()
        assert listed == simulation[f"{source}_files"]
        assert all((mirror / path).is_file() for path in listed)
    assert simulation["warc_files"][0].endswith("/warc/CC-MAIN-20981229000000-20981229000000-00000.warc.gz")
    assert simulation["wat_files"][0].endswith("/wat/CC-MAIN-20981229000000-20981229000000-00000.warc.wat.gz")
    warc_bytes = (mirror / simulation["warc_files"][0]).read_bytes()
    members = gzip_members(warc_bytes)
    # One record per member: every member starts a record, and fastwarc's offsets are exactly the members' offsets.
    assert all(body.startswith(b"WARC/1.1\r\n") and body.count(b"\r\nWARC-Type: ") == 1 for _, body in members)
    records = list(ArchiveIterator(open(mirror / simulation["warc_files"][0], "rb")))  # noqa: SIM115
    assert [record.stream_pos for record in records] == [offset for offset, _ in members]
    # Each WAT record points (Container.Offset) at its page's response record in the WARC.
    by_offset = dict(members)
    wat_members = gzip_members((mirror / simulation["wat_files"][0]).read_bytes())[1:]  # after the warcinfo
    assert wat_members
    for _, body in wat_members:
        envelope = json.loads(body.split(b"\r\n\r\n", 1)[1])
        offset = int(envelope["Container"]["Offset"])
        uri = envelope["Envelope"]["WARC-Header-Metadata"]["WARC-Target-URI"]
        assert b"WARC-Type: response" in by_offset[offset] and f"WARC-Target-URI: {uri}".encode() in by_offset[offset]


def test_the_same_spec_gives_the_same_bytes(mirror: Path, tmp_path: Path) -> None:
    simulation = plan(mirror)
    again = generate(tmp_path, type(SMALL)(**{**SMALL.__dict__, "port": simulation["port"]}))
    for relative in [*again.warc_files, *again.wat_files, "crawl-data/CC-MAIN-2099-01/warc.paths.gz"]:
        assert (tmp_path / relative).read_bytes() == (mirror / relative).read_bytes(), relative
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == sorted(
        path.name for path in (mirror / "images").iterdir()
    )


def test_planted_variety_and_zipf_hosts(mirror: Path) -> None:
    simulation = plan(mirror)
    assert {"src", "srcset", "data-src", "src_relative_base", "no_alt"} <= set(simulation["attributes"])
    assert simulation["boilerplate_alts"] > 0
    assert simulation["image_kinds"]["ordinary"] > simulation["images"] // 2
    assert {"small", "near_duplicate"} <= set(simulation["image_kinds"])
    # Zipf: the first host is drawn far more often than the uniform share.
    zipf = Zipf(20, 1.1, random.Random(0))
    draws = Counter(zipf.draw() for _ in range(5000))
    assert draws[0] > 3 * 5000 / 20 and draws[0] > draws[5] > draws[19]
    assert parse_size("100MB") == 100_000_000 and parse_size("1.5G") == 1_500_000_000 and parse_size("512k") == 512_000


def test_images_are_served_from_many_loopback_host_names(mirror: Path) -> None:
    simulation = plan(mirror)
    original = socket.getaddrinfo
    pool = urllib3.PoolManager(retries=False)
    with SimulatedCrawl(mirror, latency_s=0.01) as sim:
        assert socket.getaddrinfo("img-3.sim.test", sim.port)[0][4][0] == simulation["hosts"]["img-3.sim.test"]
        bodies = {}
        for host in ("img-1.sim.test", "img-2.sim.test", "site-4.sim.test"):
            response = pool.request("GET", f"http://{host}:{sim.port}/i/5/any-name.jpg")
            bodies[host] = response.data
        missing = pool.request("GET", f"http://img-1.sim.test:{sim.port}/nothing-here")
    assert set(bodies.values()) == {(mirror / "images" / "00005.jpg").read_bytes()}
    assert missing.status == 404
    assert sim.stats.requests["img-2.sim.test"] == 1 and sim.stats.max_in_flight["img-1.sim.test"] == 1
    assert sim.stats.max_rate("img-1.sim.test", window_s=10) == 2
    assert socket.getaddrinfo is original  # the override is gone with the servers


def test_wat_against_warc_finds_fewer_pairs_and_says_which(mirror: Path) -> None:
    result = compare_sources(mirror)
    totals = result["totals"]
    assert len(result["files"]) == 3
    lost = result["lost_in_wat_by_attribute"]
    assert set(lost) == {"srcset", "data-src"}
    assert totals["wat_pairs"] + sum(lost.values()) == totals["warc_pairs"]
    assert totals["wat_rejected"] > 0  # the data: placeholders a WAT lists instead of data-src
    assert totals["warc_with_html_lang"] > 0
    assert "pairs only in the WARC" in format_comparison(result)


@pytest.mark.slow  # two mirrors of 150 pages (about 3 s, 6 s on a loaded machine)
def test_alt_variety_keeps_descriptive_alt_texts_under_the_images_per_alt_limit(tmp_path: Path) -> None:
    """The pools' alt texts repeat so often that past a few MB filter-text's max_images_per_alt (10) would drop them
    all; with ``alt_variety`` most descriptive alts are distinct."""
    from pipeline.core.config import CorpusConfig
    from pipeline.crawl.simulate import BOILERPLATE_ALTS, SimSpec
    from pipeline.stages.extract import iter_extracted

    def images_per_alt(variety: float) -> tuple[dict[str, set[str]], int]:
        folder = tmp_path / str(variety)
        path = folder / generate(folder, SimSpec(pages=150, files=1, images=20, alt_variety=variety)).warc_files[0]
        urls: dict[str, set[str]] = {}
        rows = [row for tag, row in iter_extracted(str(path), str(path), CorpusConfig()) if tag == "candidates"]
        descriptive = [row for row in rows if row["alt_text"] not in BOILERPLATE_ALTS]
        for row in descriptive:
            urls.setdefault(row["alt_text"], set()).add(row["image_url"])
        over = sum(1 for row in descriptive if len(urls[row["alt_text"]]) > 10)
        return urls, over * 100 // len(descriptive)

    pooled, pooled_over = images_per_alt(0.0)
    varied, varied_over = images_per_alt(0.8)
    assert pooled_over > 30 and varied_over < 15, (pooled_over, varied_over)
    assert len(varied) > 4 * len(pooled)
