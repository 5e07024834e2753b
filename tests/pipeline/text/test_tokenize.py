"""The tokeniser behind the length and rare-n-gram rules, on hand-made strings and on real Japanese/Chinese pages."""

from __future__ import annotations

import random
import re
import string

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from pipeline.text.tokenize import _unigram_pattern, bigrams, ngrams, unigrams
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


# -- emoji and the characters that attach to others (Unicode Technical Standard #51, "Unicode Emoji") -------------------
# Each sequence below is one of UTS #51's definitions; an emoji is never a unigram, in whatever form it comes, and
# none of its parts (variation selector, keycap enclosure, zero-width joiner, skin-tone modifier, tag) is one alone.
EMOJI_SEQUENCES = {
    "emoji presentation sequence (ED-9a): heart + VS16": "\u2764\ufe0f",
    "text presentation sequence (ED-8a): heart + VS15": "\u2764\ufe0e",
    "emoji presentation sequence of a digit": "7\ufe0f",
    "emoji presentation sequence of a letter-category emoji (INFORMATION SOURCE, Ll)": "\u2139\ufe0f",
    "emoji keycap sequence (ED-14c)": "1\ufe0f\u20e3",
    "keycap sequence of # and *": "#\ufe0f\u20e3*\ufe0f\u20e3",
    "keycap without VS16 (unqualified in emoji-test.txt)": "0\u20e3",
    "emoji modifier sequence (ED-13): thumbs up + skin tone 4": "\U0001f44d\U0001f3fd",
    "emoji flag sequence (ED-14): regional indicators J P": "\U0001f1ef\U0001f1f5",
    "emoji tag sequence (ED-14a): flag of Scotland": "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "emoji ZWJ sequence (ED-16): family": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "emoji ZWJ sequence with a presentation sequence inside: couple with heart": (
        "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f468"
    ),
    "emoji ZWJ sequence with a modifier: woman technologist, skin tone 2": "\U0001f469\U0001f3fc\u200d\U0001f4bb",
}


@pytest.mark.parametrize("sequence", EMOJI_SEQUENCES.values(), ids=EMOJI_SEQUENCES.keys())
def test_an_emoji_sequence_is_no_unigram_and_leaves_its_neighbours_alone(sequence: str) -> None:
    assert unigrams(sequence) == []
    assert unigrams(sequence * 3) == []
    assert unigrams(f"red {sequence} balloon") == ["red", "balloon"]
    assert unigrams(f"red{sequence}balloon") == ["red", "balloon"]
    assert unigrams(f"2024 {sequence} 5") == ["2024", "5"]


def test_a_character_that_attaches_never_forms_a_unigram_alone() -> None:
    # Stray (defective) combining sequences: a mark, selector or enclosure with no base character to attach to.
    for stray in ("\ufe0f", "\ufe0e", "\u20e3", "\u0301", "\u200d", "\u200c", "\U0001f3fd", "\U000e0100", "\u180b"):
        assert unigrams(stray) == [], repr(stray)
        assert unigrams(f"red {stray} balloon") == ["red", "balloon"], repr(stray)
    assert not any("\ufe0f" in gram or "\u20e3" in gram for gram in ngrams(unigrams("red ❤️ balloon 1️⃣ 2️⃣")))


def test_variation_selectors_pick_a_glyph_and_are_not_part_of_the_unigram() -> None:
    # A variation selector after a letter or an ideograph only chooses its glyph (ideographic variation sequences),
    # so, as with case, both spellings are one unigram.
    assert unigrams("\u845b\U000e0100\u98fe\u5317\u658e") == ["\u845b", "\u98fe", "\u5317", "\u658e"]
    assert unigrams("dog\ufe0e house") == ["dog", "house"]
    assert unigrams("\u1820\u180b\u1821") == ["\u1820\u1821"]  # Mongolian free variation selector inside a word
    # Text presentation of a digit is the digit.
    assert unigrams("7\ufe0e days") == ["7", "days"]


def test_joiners_between_letters_stay_inside_the_word() -> None:
    # Persian writes a zero-width non-joiner inside words; Malayalam and Sinhala use the zero-width joiner.
    assert unigrams("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u0628\u0631\u0648\u0645") == [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "\u0628\u0631\u0648\u0645",
    ]
    # After a virama the joiner asks for the chillu form (Malayalam "n" of the old encoding): it stays in the word.
    assert unigrams("\u0d28\u0d4d\u200d \u0d15\u0d3e\u0d7b") == ["\u0d28\u0d4d\u200d", "\u0d15\u0d3e\u0d7b"]
    # Between a letter and an emoji it belongs to the emoji: the word ends before it.
    assert unigrams("guide\u200d\U0001f415 dog") == ["guide", "dog"]
    assert unigrams("\u0dc1\u0dca\u200d\u0dbb\u0dd3 \u0dbd\u0d82\u0d9a\u0dcf") == [
        "\u0dc1\u0dca\u200d\u0dbb\u0dd3",
        "\u0dbd\u0d82\u0d9a\u0dcf",
    ]
    # A combining mark after a letter stays with it (decomposed é).
    assert unigrams("cafe\u0301 noir") == ["cafe\u0301", "noir"]


def test_the_ascii_fast_path_splits_exactly_as_the_full_pattern() -> None:
    """ASCII text takes a small regex; on every ASCII string it must give the full Unicode pattern's unigrams."""
    rng = random.Random(16)
    tricky = "aZ09 '.,-_&#*\t\n!?x9'.."
    for _ in range(20_000):
        alphabet = tricky if rng.random() < 0.5 else string.printable
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert unigrams(text) == [token.casefold() for token in _unigram_pattern().findall(text)], repr(text)
