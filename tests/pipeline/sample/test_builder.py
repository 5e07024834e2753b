"""The bundled sample (``pipeline/sample/``): deterministic, readable by both WARC libraries, and its oracle right.

The oracle (expected.json) is what the end-to-end test holds the whole pipeline to, so it is checked here against
the archive itself, with tools independent of the pipeline: warcio and fastwarc read the records, Pillow decodes
every image, BeautifulSoup re-finds every ``<img>``, imagehash measures the evaluation near-duplicate, and a small
re-statement of ALIGN's rules (written here from the paper's thresholds, not imported) must predict every fate the
oracle states, with no candidate failing more than one rule.
"""

from __future__ import annotations

import collections
import gzip
import html
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import imagehash
import pytest
from bs4 import BeautifulSoup
from bs4.dammit import EncodingDetector
from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType
from PIL import Image
from warcio.archiveiterator import ArchiveIterator

from pipeline.core.config import PRESETS
from pipeline.sample.alt_texts import clearly_within_length
from pipeline.sample.builder import generate_sample
from pipeline.sample.oracle import (
    ALT_TEXT,
    EXPECTED_NAME,
    HTML_LANG,
    IMAGE_URL,
    PAGE_URL,
    REASON,
    STAGE,
    URL_ATTRIBUTE,
)
from pipeline.sample.warc_writer import WARC_NAME

PAGES = 60  # ordinary pages: enough for every language and photo, and fast (the planted cases are always all there)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    generate_sample(str(directory), pages=PAGES, seed=0)
    return directory


@pytest.fixture(scope="module")
def oracle(sample_dir: Path) -> dict[str, Any]:
    return json.loads((sample_dir / EXPECTED_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def responses(sample_dir: Path) -> dict[str, tuple[str, dict[str, str], bytes]]:
    """URL -> (HTTP status line, HTTP headers, body as archived: no Content-Encoding undone) of every response."""
    found = {}
    with (sample_dir / WARC_NAME).open("rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type == "response":
                url = record.rec_headers.get_header("WARC-Target-URI")
                assert url not in found, f"two responses for {url}"
                headers = dict(record.http_headers.headers)
                found[url] = (record.http_headers.statusline, headers, record.raw_stream.read())
    return found


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --- determinism -----------------------------------------------------------------------------------------------------


@pytest.mark.slow  # three sample builds
def test_same_seed_gives_byte_identical_files_and_another_seed_differs(sample_dir: Path, tmp_path: Path) -> None:
    again = generate_sample(str(tmp_path / "again"), pages=PAGES, seed=0)
    first, second = files_of(sample_dir), files_of(tmp_path / "again")
    assert set(first) == {WARC_NAME, EXPECTED_NAME, "eval/coffee.jpg", "eval/rocket.jpg"}
    assert first == second
    assert again["candidates"] > 3000 and again["warc_bytes"] == len(first[WARC_NAME])

    generate_sample(str(tmp_path / "other"), pages=PAGES, seed=1)
    other = files_of(tmp_path / "other")
    assert other[WARC_NAME] != first[WARC_NAME]
    assert other[EXPECTED_NAME] != first[EXPECTED_NAME]
    # The evaluation set is the same photos whatever the seed: only the corpus around it changes.
    assert other["eval/coffee.jpg"] == first["eval/coffee.jpg"]


def test_record_ids_dates_and_gzip_members_are_fixed(sample_dir: Path) -> None:
    raw = (sample_dir / WARC_NAME).read_bytes()
    with (sample_dir / WARC_NAME).open("rb") as stream:
        iterator = ArchiveIterator(stream)
        headers, offsets = [], []
        for record in iterator:
            headers.append(record.rec_headers)
            offsets.append(iterator.get_record_offset())
    # One gzip member per record (so a reader can seek to any record), each with mtime 0 (header bytes 4..8).
    assert all(raw[offset : offset + 3] == b"\x1f\x8b\x08" for offset in offsets)
    assert all(raw[offset + 4 : offset + 8] == b"\0\0\0\0" for offset in offsets)
    ids = [h.get_header("WARC-Record-ID") for h in headers]
    assert len(set(ids)) == len(ids)
    assert headers[0].get_header("WARC-Date") == "2024-03-04T09:30:00Z"
    assert headers[0].get_header("WARC-Type") == "warcinfo"


# --- the archive reads back --------------------------------------------------------------------------------------------


def test_warc_reads_back_identically_with_fastwarc_and_warcio(sample_dir: Path, responses: dict) -> None:
    path = sample_dir / WARC_NAME
    with path.open("rb") as stream:
        by_warcio = [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI")) for r in ArchiveIterator(stream)]
    by_fastwarc, fast_responses = [], 0
    with path.open("rb") as stream:
        # fastwarc streams: each record is checked before the iterator moves on.
        for record in FastArchiveIterator(stream, parse_http=False):
            by_fastwarc.append((str(record.record_type), record.headers.get("WARC-Target-URI")))
            assert record.verify_block_digest()
    assert [(kind, url or None) for kind, url in by_warcio] == by_fastwarc
    with path.open("rb") as stream:
        for record in FastArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
            assert record.http_headers.status_code in (200, 301, 404)
            assert record.verify_payload_digest()
            fast_responses += 1
    assert fast_responses == len(responses)
    kinds = collections.Counter(kind for kind, _ in by_warcio)
    assert kinds["warcinfo"] == 1 and kinds["request"] > 200 and kinds["response"] == len(responses)


def test_every_archived_image_decodes_to_the_size_the_oracle_says(oracle: dict, responses: dict) -> None:
    images = oracle["images"]
    archived = {url for url, image in images.items() if image["archived"]}
    assert archived <= set(responses)
    assert 100 <= len(archived) <= 250
    for url in archived:
        image, (status, headers, body) = images[url], responses[url]
        assert status == "200 OK" and headers["Content-Type"] == image["content_type"]
        assert image["content_type"] in ("image/jpeg", "image/png")
        assert len(body) == image["bytes"]
        if image["decodable"]:
            with Image.open(io.BytesIO(body)) as decoded:
                decoded.load()
                assert decoded.size == (image["width"], image["height"]), url
                assert decoded.format == ("PNG" if image["content_type"] == "image/png" else "JPEG")
        else:
            # UnidentifiedImageError is an OSError; so is a truncated JPEG's "image file is truncated".
            with pytest.raises(OSError), Image.open(io.BytesIO(body)) as decoded:
                decoded.load()
    not_archived = [url for url, image in images.items() if not image["archived"]]
    assert not_archived == ["https://images.missing.invalid/photos/astronaut-portrait.jpg"]
    assert not set(not_archived) & set(responses)
    # Small enough to ship in CI: a few MB.
    assert sum(len(responses[url][2]) for url in archived) < 8_000_000


def test_eval_set_has_exactly_one_near_duplicate_in_the_corpus(sample_dir: Path, oracle: dict, responses: dict) -> None:
    eval_hashes = {p.name: imagehash.phash(Image.open(p)) for p in sorted((sample_dir / "eval").glob("*.jpg"))}
    assert set(eval_hashes) == {"coffee.jpg", "rocket.jpg"}
    near = {e[IMAGE_URL] for e in oracle["candidates"] if e["case"] == "eval_near_duplicate"}
    assert len(near) == 1
    distances = {}
    for url, image in oracle["images"].items():
        if image["archived"] and image["decodable"]:
            corpus_hash = imagehash.phash(Image.open(io.BytesIO(responses[url][2])))
            distances[url] = min(corpus_hash - eval_hash for eval_hash in eval_hashes.values())
    (copy,) = near
    # Caught by a small threshold (the pipeline's default is 6) while every other image is far away.
    assert distances.pop(copy) <= 3
    assert min(distances.values()) >= 12
    with Image.open(io.BytesIO(responses[copy][2])) as decoded, Image.open(sample_dir / "eval/coffee.jpg") as original:
        assert decoded.size != original.size  # resized, not just re-compressed


# --- the oracle agrees with the HTML ----------------------------------------------------------------------------------


def page_text(headers: dict[str, str], body: bytes) -> str:
    """Decode a page as a browser would: Content-Encoding, then the HTTP charset, else the document's <meta>."""
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    header_charset = re.search(r"charset=([\w-]+)", headers.get("Content-Type", ""))
    encoding = header_charset.group(1) if header_charset else EncodingDetector.find_declared_encoding(body, True)
    return body.decode(encoding or "utf-8")


def largest_srcset_url(srcset: str) -> str:
    candidates = [part.split() for part in srcset.split(",") if part.strip()]
    return max(candidates, key=lambda c: float(c[1][:-1]) if len(c) > 1 else 1.0)[0]


def expected_alt(raw: str) -> str:
    text = html.unescape(raw) if "&" in raw else raw  # the parser decoded once; pages escaping twice are common
    return unicodedata.normalize("NFC", " ".join(text.split()))


def images_in_page(page_url: str, markup: str) -> list[tuple[str, str, str, str]]:
    """(page URL, image URL, alt text, attribute) of every <img> with a non-empty alt, found by html.parser."""
    soup = BeautifulSoup(markup, "html.parser", on_duplicate_attribute="ignore")  # HTML: the first attribute wins
    base = soup.find("base", href=True)
    base_url = urljoin(page_url, base["href"]) if base else page_url
    found = []
    for img in soup.find_all("img"):
        alt = expected_alt(img.get("alt") or "")
        if not alt:
            continue
        src = img.get("src", "")
        if img.get("data-src"):
            attribute, reference = "data-src", img["data-src"]
        elif img.get("srcset") and (not src or src.startswith("data:")):
            attribute, reference = "srcset", largest_srcset_url(img["srcset"])
        else:
            attribute, reference = "src", src.strip()
        try:
            url = urljoin(base_url, reference)
        except ValueError:
            url = reference
        found.append((page_url, url, alt, attribute))
    return found


def test_every_expected_candidate_is_an_img_of_its_page_and_nothing_else_is(oracle: dict, responses: dict) -> None:
    from_html: collections.Counter = collections.Counter()
    pages = 0
    for url, (status, headers, body) in responses.items():
        if status == "200 OK" and headers["Content-Type"].startswith("text/html"):
            pages += 1
            from_html.update(images_in_page(url, page_text(headers, body)))
    columns = (PAGE_URL, IMAGE_URL, ALT_TEXT, URL_ATTRIBUTE)
    from_oracle = collections.Counter(tuple(entry[c] for c in columns) for entry in oracle["candidates"])
    assert pages == oracle["counts"]["pages"] == len(oracle["pages"])
    assert from_html == from_oracle, (
        f"in the HTML only: {list((from_html - from_oracle).items())[:3]}; "
        f"in the oracle only: {list((from_oracle - from_html).items())[:3]}"
    )


def test_non_utf8_pages_are_declared_only_where_the_case_says(responses: dict) -> None:
    _, headers, body = responses["https://jp.shashin.example.com/sjis/gallery.html"]
    assert headers["Content-Type"] == "text/html; charset=Shift_JIS" and b"charset" not in body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    _, headers, body = responses["https://fr.voyages.example.org/archives/vieux-site.html"]
    assert headers["Content-Type"] == "text/html" and b'<meta charset="windows-1252">' in body[:1024]
    assert "“Chelsea”".encode("cp1252") in body
    _, headers, body = responses["https://jp.shashin.example.com/eucjp/index.html"]
    assert headers["Content-Type"] == "text/html" and b"charset=EUC-JP" in body[:1024]
    _, headers, body = responses["https://news.example.net/compressed/space-week.html"]
    assert headers["Content-Encoding"] == "gzip" and body[:2] == b"\x1f\x8b"


def test_raw_markup_holds_the_encodings_the_oracle_normalises(responses: dict, oracle: dict) -> None:
    notes = responses["https://www.photo-blog.example.com/2023/02/notes-with-entities.html"][2].decode()
    for raw in ("&amp;eacute;", "&#x2014;", "&#233;", "&nbsp;", "&quot;", "\n\tstones", "photographie\u0301"):
        assert raw in notes, raw
    alts = {e["case"]: e[ALT_TEXT] for e in oracle["candidates"]}
    assert alts["entity_escaped_twice"] == "Portrait détaillé d'une astronaute"
    assert alts["entity_nbsp"] == "Red motorcycle parked in a garage"
    assert alts["alt_nfd_normalised"] == unicodedata.normalize("NFC", alts["alt_nfd_normalised"])
    assert alts["alt_whitespace_collapsed"] == "Grey gravel stones photographed from above"


# --- the oracle follows ALIGN's rules ----------------------------------------------------------------------------------


def unigrams(alt: str) -> int:
    """Whitespace words; a CJK run without spaces counts one unigram per character (the planted CJK case is 1)."""
    if any("\u3040" <= ch <= "\u9fff" for ch in alt):
        return len(alt.replace(" ", ""))
    return len(alt.split())


def predicted_fates(oracle: dict, responses: dict, eval_dir: Path) -> list[list[tuple[str, str | None]]]:
    """Every rule each candidate fails, stage by stage, computed here from ALIGN's thresholds and the archive.

    Returns per candidate the list of (stage, reason) of the first stage that drops it (all of that stage's failing
    rules), or [] when kept. Duplicate rules mark every member of a group but its first.
    """
    align = PRESETS["align"]
    entries = oracle["candidates"]
    fates: list[list[tuple[str, str | None]]] = [[] for _ in entries]

    def alive() -> list[int]:
        return [i for i, f in enumerate(fates) if not f]

    def drop(index: int, stage: str, reasons: list[str | None]) -> None:
        fates[index] = [(stage, reason) for reason in reasons]

    for i, entry in enumerate(entries):
        url, alt = entry[IMAGE_URL], entry[ALT_TEXT]
        reasons = []
        try:
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https"):
                reasons.append("unsupported_url_scheme")
        except ValueError:
            reasons.append("invalid_url")
        if len(alt) > align.extract.max_alt_chars:
            reasons.append("alt_too_long_chars")
        if reasons:
            drop(i, "extract", reasons)

    survivors = alive()
    images_per_alt: dict[str, set] = collections.defaultdict(set)
    alts_per_url: dict[str, set] = collections.defaultdict(set)
    for i in survivors:
        images_per_alt[entries[i][ALT_TEXT]].add(entries[i][IMAGE_URL])
        alts_per_url[entries[i][IMAGE_URL]].add(entries[i][ALT_TEXT])
    seen_pairs = set()
    for i in survivors:
        url, alt = entries[i][IMAGE_URL], entries[i][ALT_TEXT]
        reasons = []
        if (url, alt) in seen_pairs:
            reasons.append("duplicate_pair")
        seen_pairs.add((url, alt))
        if unigrams(alt) < align.text.min_unigrams:
            reasons.append("alt_too_short")
        if unigrams(alt) > align.text.max_unigrams:
            reasons.append("alt_too_long")
        if len(images_per_alt[alt]) > align.text.max_images_per_alt:
            reasons.append("alt_shared_by_too_many_images")
        if len(alts_per_url[url]) > align.text.max_alts_per_image_url:
            reasons.append("image_url_has_too_many_alts")
        if reasons:
            drop(i, "filter-text", reasons)

    images = oracle["images"]
    for i in alive():
        image = images[entries[i][IMAGE_URL]]
        if not image["archived"]:
            drop(i, "fetch", [None])
        elif not image["decodable"]:
            body = responses[entries[i][IMAGE_URL]][2]
            drop(i, "fetch", ["decode_error" if body.startswith(b"\xff\xd8") else "not_an_image"])

    eval_hashes = [imagehash.phash(Image.open(p)) for p in sorted(eval_dir.glob("*.jpg"))]
    hashes: dict[str, Any] = {}
    alts_per_content: dict[str, set] = collections.defaultdict(set)
    for i in alive():
        alts_per_content[images[entries[i][IMAGE_URL]]["sha256"]].add(entries[i][ALT_TEXT])
    seen_contents = set()
    for i in alive():
        url, alt = entries[i][IMAGE_URL], entries[i][ALT_TEXT]
        image = images[url]
        shorter, longer = sorted((image["width"], image["height"]))
        if url not in hashes:
            hashes[url] = imagehash.phash(Image.open(io.BytesIO(responses[url][2])))
        reasons = []
        if shorter < align.image.min_shorter_side_px:
            reasons.append("image_too_small")
        if longer / shorter >= align.image.max_aspect_ratio:
            reasons.append("aspect_ratio_too_extreme")
        if len(alts_per_content[image["sha256"]]) > align.image.max_alts_per_image_content:
            reasons.append("image_has_too_many_alts")
        if (image["sha256"], alt) in seen_contents:
            reasons.append("duplicate_image_alt")
        seen_contents.add((image["sha256"], alt))
        if min(hashes[url] - h for h in eval_hashes) <= align.image.eval_max_distance:
            reasons.append("eval_near_duplicate")
        if reasons:
            drop(i, "filter-image", reasons)
    return fates


def test_every_fate_follows_from_alignss_rules_and_each_case_trips_one_rule(
    sample_dir: Path, oracle: dict, responses: dict
) -> None:
    fates = predicted_fates(oracle, responses, sample_dir / "eval")
    wrong = []
    groups: dict[str, list] = collections.defaultdict(list)
    for entry, fate in zip(oracle["candidates"], fates, strict=True):
        if len(fate) > 1:
            wrong.append((entry["case"], "trips several rules", fate))
        elif entry["fate"] == "kept_one":
            groups[entry["duplicate_group"]].append((entry, fate))
        elif entry["fate"] == "kept" and fate:
            wrong.append((entry["case"], "expected kept", fate))
        elif entry["fate"] == "rejected" and fate != [(entry[STAGE], entry[REASON])]:
            wrong.append((entry["case"], (entry[STAGE], entry[REASON]), fate))
    assert not wrong, wrong[:5]
    assert len(groups) == 3
    for group, members in groups.items():
        assert len(members) >= 2
        assert [fate for _, fate in members].count([]) == 1, group
        for entry, fate in members:
            assert fate in ([], [(entry[STAGE], entry[REASON])]), group


def test_every_planted_case_is_there_at_its_threshold(oracle: dict) -> None:
    entries = oracle["candidates"]
    cases = collections.Counter(e["case"] for e in entries)
    by_case = collections.defaultdict(list)
    for entry in entries:
        by_case[entry["case"]].append(entry)
    required = {
        "alt_shared_by_12_images", "alt_shared_by_11_images", "alt_shared_by_10_images_kept",
        "image_url_with_1001_alts", "image_url_with_1000_alts_kept", "image_content_with_1001_alts_at_two_urls",
        "alt_1_word", "alt_2_words", "alt_3_words_kept", "alt_20_words_kept", "alt_21_words", "alt_1_cjk_character",
        "alt_over_1000_characters", "image_150x400_too_small", "image_shorter_side_200", "image_shorter_side_201_kept",
        "aspect_ratio_3_6", "aspect_ratio_exactly_3", "aspect_ratio_2_99_kept", "aspect_ratio_tall_3_33",
        "duplicate_pair_two_pages", "duplicate_pair_three_times", "duplicate_image_alt_two_urls",
        "same_image_two_urls_different_alts_kept", "eval_near_duplicate", "relative_url_dot_dot",
        "relative_url_root", "relative_url_same_folder", "protocol_relative_url", "base_href_absolute",
        "base_href_relative", "srcset_only_width_descriptor", "srcset_only_density_descriptor",
        "srcset_largest_candidate", "data_src_lazy", "picture_element", "entity_amp", "entity_escaped_twice",
        "entity_nbsp", "alt_nfd_normalised", "shift_jis_http_header", "euc_jp_meta_http_equiv",
        "windows_1252_meta_charset", "gzip_content_encoding", "data_url", "javascript_url", "invalid_url",
        "uppercase_unquoted_attributes", "duplicate_alt_attribute_first_wins", "image_not_archived",
        "html_served_as_jpeg", "truncated_jpeg", "ordinary",
    }  # fmt: skip
    assert required <= set(cases), required - set(cases)

    def distinct(case: str, key: str, of: str) -> list[int]:
        groups = collections.defaultdict(set)
        for entry in by_case[case]:
            groups[entry[key]].add(entry[of])
        return sorted(len(v) for v in groups.values())

    assert distinct("alt_shared_by_12_images", ALT_TEXT, IMAGE_URL) == [12]
    assert distinct("alt_shared_by_11_images", ALT_TEXT, IMAGE_URL) == [11]
    assert distinct("alt_shared_by_10_images_kept", ALT_TEXT, IMAGE_URL) == [10]
    assert distinct("image_url_with_1001_alts", IMAGE_URL, ALT_TEXT) == [1001]
    assert distinct("image_url_with_1000_alts_kept", IMAGE_URL, ALT_TEXT) == [1000]
    per_url = distinct("image_content_with_1001_alts_at_two_urls", IMAGE_URL, ALT_TEXT)
    assert per_url == [500, 501]  # each URL is under the limit; the content is over it
    digests = {oracle["images"][e[IMAGE_URL]]["sha256"] for e in by_case["image_content_with_1001_alts_at_two_urls"]}
    assert len(digests) == 1
    words = {
        case: len(by_case[case][0][ALT_TEXT].split())
        for case in ("alt_1_word", "alt_2_words", "alt_3_words_kept", "alt_20_words_kept", "alt_21_words")
    }
    assert words == {
        "alt_1_word": 1,
        "alt_2_words": 2,
        "alt_3_words_kept": 3,
        "alt_20_words_kept": 20,
        "alt_21_words": 21,
    }
    sizes = {
        case: (
            oracle["images"][by_case[case][0][IMAGE_URL]]["width"],
            oracle["images"][by_case[case][0][IMAGE_URL]]["height"],
        )
        for case in (
            "image_shorter_side_200",
            "image_shorter_side_201_kept",
            "aspect_ratio_exactly_3",
            "aspect_ratio_3_6",
        )
    }
    assert sizes == {
        "image_shorter_side_200": (200, 300),
        "image_shorter_side_201_kept": (201, 300),
        "aspect_ratio_exactly_3": (750, 250),
        "aspect_ratio_3_6": (900, 250),
    }
    languages = collections.Counter(e[HTML_LANG] for e in by_case["ordinary"])
    assert {"en", "de", "fr", "es", "ja", "zh"} <= set(languages)
    assert len(by_case["alt_over_1000_characters"][0][ALT_TEXT]) > 1000
    # Not candidates, but there: alt-less, empty, blank alts; <img> in a comment, a script, a cut-off tag.
    assert {"img_without_alt", "empty_alt", "blank_alt", "img_in_comment", "img_in_script"} <= {
        n["case"] for n in oracle["non_candidates"]
    }


def test_ordinary_candidates_are_clearly_kept(oracle: dict) -> None:
    entries = oracle["candidates"]
    alt_uses = collections.Counter(e[ALT_TEXT] for e in entries)
    ordinary = [e for e in entries if e["case"] == "ordinary"]
    assert len(ordinary) > 100
    for entry in ordinary:
        alt = entry[ALT_TEXT]
        image = oracle["images"][entry[IMAGE_URL]]
        assert alt_uses[alt] == 1, alt
        assert clearly_within_length(alt), alt
        assert (
            min(image["width"], image["height"]) >= 210
            and max(image["width"], image["height"]) / min(image["width"], image["height"]) < 2.6
        )
        assert entry["fate"] == "kept"


def test_make_sample_command_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["make-sample", "--output", str(tmp_path), "--pages", "10", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    assert "pages" in printed and "candidates" in printed and str(tmp_path) in printed
    oracle = json.loads((tmp_path / EXPECTED_NAME).read_text(encoding="utf-8"))
    assert oracle["seed"] == 7 and oracle["counts"]["candidates"] == len(oracle["candidates"])
    with pytest.raises(SystemExit):
        main(["make-sample", "--output", str(tmp_path), "--pages", "5"])
