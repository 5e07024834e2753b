"""The tokeniser behind the length and rare-n-gram rules, on hand-made strings and on real Japanese/Chinese pages."""

from __future__ import annotations

import re

from fastwarc.warc import ArchiveIterator, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from pipeline.text.tokenize import bigrams, ngrams, unigrams
from tests.conftest import shared_path

CHARSET = re.compile(rb"charset=[\"']?([A-Za-z0-9_-]+)")


def page_alt_texts(warc_name: str, default_charset: str) -> list[str]:
    """Every non-empty <img alt> of the HTML responses of a shared WARC (charset from the header, meta or default)."""
    alts: list[str] = []
    with open(shared_path(f"warc/{warc_name}"), "rb") as handle:
        for record in ArchiveIterator(handle, record_types=WarcRecordType.response, parse_http=True):
            body = record.reader.read()
            content_type = (record.http_headers.get("Content-Type") or "").encode() if record.http_headers else b""
            found = CHARSET.search(content_type) or CHARSET.search(body[:4096])
            charset = found.group(1).decode() if found else default_charset
            try:
                text = body.decode(charset, errors="replace")
            except LookupError:
                text = body.decode("utf-8", errors="replace")
            for img in LexborHTMLParser(text).css("img"):
                alt = " ".join((img.attributes.get("alt") or "").split())
                if alt:
                    alts.append(alt)
    return alts


def test_words_of_spaced_scripts_are_case_folded_runs_of_letters_marks_and_digits() -> None:
    assert unigrams("A Dog, running!") == ["a", "dog", "running"]
    assert unigrams("state-of-the-art file_name") == ["state", "of", "the", "art", "file", "name"]
    assert unigrams("Don't 3.5 1,000 l’eau v2.0 end.") == ["don't", "3.5", "1,000", "l’eau", "v2.0", "end"]
    assert unigrams("Straße ΣΟΦΙΑ Яндекс.Метрика") == ["strasse", "σοφια", "яндекс", "метрика"]
    # Devanagari vowel signs are combining marks: they stay inside the word.
    assert unigrams("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert unigrams("한국어 사진") == ["한국어", "사진"]


def test_punctuation_symbols_and_emoji_are_not_unigrams() -> None:
    assert unigrams("😀 !! -- © ★") == []
    assert unigrams("") == []


def test_han_kana_and_thai_characters_are_one_unigram_each() -> None:
    assert unigrams("微信二维码") == ["微", "信", "二", "维", "码"]
    assert unigrams("2024年 東京tower") == ["2024", "年", "東", "京", "tower"]
    assert unigrams("ラーメン・すし") == ["ラ", "ー", "メ", "ン", "す", "し"]
    # Thai tone and vowel marks attach to the consonant before them.
    assert unigrams("ง่าย") == ["ง่", "า", "ย"]


def test_bigrams_join_consecutive_unigrams_across_removed_punctuation() -> None:
    tokens = unigrams("Paris, France at night")
    assert bigrams(tokens) == ["paris france", "france at", "at night"]
    assert ngrams(tokens) == ["paris", "france", "at", "night", "paris france", "france at", "at night"]
    assert bigrams(["one"]) == []


def test_japanese_alt_texts_of_the_clueweb_page() -> None:
    # The ClueWeb09 pages are EUC-JP and declare no charset.
    alts = set(page_alt_texts("clueweb-quirk.warc.gz", "euc_jp"))
    assert "当店一番人気、ヘッドポーター財布" in alts
    assert unigrams("当店一番人気、ヘッドポーター財布") == list("当店一番人気ヘッドポーター財布")
    brand = "ブラウニー ウェストバッグ【ヘッドポーター HEADPORTER 吉田かばん】"
    assert brand in alts
    assert unigrams(brand) == [*"ブラウニーウェストバッグヘッドポーター", "headporter", *"吉田かばん"]
    assert len(unigrams(brand)) == 25
    assert unigrams("e-brand QRコード") == ["e", "brand", "qr", "コ", "ー", "ド"]
    assert "e-brand QRコード" in alts


def test_chinese_alt_texts_of_the_common_crawl_pages() -> None:
    alts = set(page_alt_texts("warcfile.warc.gz", "utf-8"))
    assert {"微信二维码", "点击这里给我发消息", "用心专注，服务专业"} <= alts
    assert len(unigrams("点击这里给我发消息")) == 9
    assert unigrams("用心专注，服务专业") == list("用心专注服务专业")
    assert unigrams("Tour de France Live, Resultate, Etappen, Startliste Liveticker") == [
        "tour", "de", "france", "live", "resultate", "etappen", "startliste", "liveticker",
    ]  # fmt: skip


def test_every_cjk_character_of_the_real_pages_is_its_own_unigram() -> None:
    alts = page_alt_texts("clueweb-quirk.warc.gz", "euc_jp") + page_alt_texts("warcfile.warc.gz", "utf-8")
    cjk = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
    checked = 0
    for alt in alts:
        for token in unigrams(alt):
            if cjk.search(token):
                assert len(token) == 1, (alt, token)
                checked += 1
    assert checked > 100
