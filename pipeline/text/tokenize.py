"""The tokeniser of the text filters: what a *unigram* and a *bigram* of an alt text are.

ALIGN counts alt-text length in unigrams (keep 3..20) and drops alt texts with a rare unigram or bigram, but does not
say how text is split. altcorpus splits it like this, for every language, with no dictionary and no model:

* A unigram is either
  - one character of a script written without spaces between words: Han (CJK ideographs, radicals, 々 〇),
    Hiragana, Katakana (full and half width, ー) and Thai, together with any combining marks that follow it
    (Thai vowel and tone marks, the combining kana voicing marks). Segmenting these scripts into words would need a
    dictionary per language; one character per unigram is language-neutral and deterministic, and it is how
    multilingual n-gram statistics commonly treat them. Consequence: for these scripts the 3..20 length rule reads
    as "3 to 20 characters" (``日本最大規模`` is 6 unigrams, ``微信`` is 2);
  - or a maximal run of other letters, combining marks and digits (Unicode categories L*, M*, N*) that starts with a
    letter or digit, i.e. a word of a script written with spaces (Latin, Cyrillic, Greek, Hangul, Arabic, Devanagari, ...). Inside such a run, an
    apostrophe (' or ’) between two word characters is kept (``don't``, ``l'eau`` are one unigram), as is a ``.`` or
    ``,`` between two digits (``3.5``, ``1,000``).
* Everything else separates unigrams and is dropped: spaces, punctuation (``-`` splits ``state-of-the-art`` into
  four), symbols, the underscore, and every emoji. An emoji is never a unigram, in any of the forms Unicode's
  UTS #51 defines: a single pictograph, an emoji presentation sequence (``❤️`` = U+2764 U+FE0F, and ``7️``: a digit
  followed by VS16 is an emoji, a digit alone or with VS15 is a digit), a keycap (``1️⃣``), a skin-tone modifier
  sequence, a flag, a tag sequence or a ZWJ sequence. An alt text of only punctuation or emoji has no unigram.
* A character that attaches to the one before it never forms a unigram alone: combining marks, variation selectors,
  the keycap enclosure U+20E3, skin-tone modifiers, the zero-width joiner (ZWJ) and non-joiner (ZWNJ). After an emoji it is part
  of the emoji, alone (say after a space) it is dropped, and in a word it stays: a combining mark or a variation
  selector after a letter, a ZWJ/ZWNJ before a letter or after a virama (Persian, Malayalam and Sinhala spell words
  with them). A skin-tone modifier, a symbol, never joins a word. Variation
  selectors only pick a glyph, so they are left out of the unigram (``葛󠄀`` with its ideographic variation selector
  and ``葛`` are one unigram).
* Unigrams are case-folded (``str.casefold``: ``Dog``/``DOG``/``dog`` are one unigram; ``Straße`` = ``strasse``), so
  case variants of a frequent word do not count as rare. The alt text itself is never changed: only the counts and
  the n-gram keys use the folded form. Besides dropping variation selectors, no normalisation is applied (the
  extract stage already wrote NFC).
* A bigram is two consecutive unigrams joined by one space (``"hot dog"``); bigrams run across removed punctuation
  (``"Paris, France"`` has the bigram ``"paris france"``). Unigrams never contain a space, so one string key space
  holds both without ambiguity.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata

#: Code point ranges of the scripts written without spaces; only their letters, digits and marks count (so the
#: katakana middle dot ・ and the Thai currency sign stay separators).
NO_SPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x2E80, 0x2FDF),  # CJK radicals supplement, Kangxi radicals
    (0x3005, 0x3007),  # 々 (iteration mark), 〆, 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3038, 0x303B),  # more Han numerals and iteration marks
    (0x3040, 0x30FF),  # Hiragana, Katakana (incl. ー and the combining voicing marks)
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x1B000, 0x1B16F),  # Kana supplement and extensions
    (0x20000, 0x323AF),  # CJK unified ideographs extensions B..H, compatibility supplement
)


def _ranges_class(codepoints: list[int]) -> str:
    """A regex character class body (``a-z...``) matching exactly ``codepoints`` (sorted)."""
    parts: list[str] = []
    start = previous = None
    for point in [*codepoints, -2]:
        if previous is not None and point == previous + 1:
            previous = point
            continue
        if start is not None:
            parts.append(
                re.escape(chr(start)) if start == previous else f"{re.escape(chr(start))}-{re.escape(chr(previous))}"
            )
        start = previous = point
    return "".join(parts)


#: Unicode's Variation_Selector characters (PropList.txt): Mongolian free variation selectors, VS1..VS16 and the
#: ideographic VS17..VS256. Each picks a glyph of the character before it, so it is left out of the unigram's key.
VARIATION_SELECTORS: tuple[tuple[int, int], ...] = (
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0xFE00, 0xFE0F),
    (0xE0100, 0xE01EF),
)
_SELECTOR = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in VARIATION_SELECTORS) + "]")
#: The zero-width non-joiner and joiner: inside a word they are spelling (Persian, Malayalam, Sinhala).
_ZERO_WIDTH_JOINERS = "\u200c\u200d"
#: The emoji of UTS #51 made of word characters: a keycap sequence (ED-14c; also written without VS16 or with VS15)
#: and an emoji presentation sequence (ED-9a) of a digit or of INFORMATION SOURCE (U+2139, a letter by category),
#: the only letters and digits with the Emoji property. Every other emoji is made of symbols, which separate anyway.
_WORD_CHARACTER_EMOJI = re.compile("[0-9#*][\ufe0e\ufe0f]?\u20e3|[0-9\u2139]\ufe0f")


@functools.cache
def _unigram_pattern() -> re.Pattern[str]:
    """The unigram regex, built once per process from the Unicode database of this Python."""
    no_space: list[int] = []
    marks: list[int] = []
    letters: list[int] = []
    in_no_space = bytearray(sys.maxunicode + 1)
    for low, high in NO_SPACE_RANGES:
        in_no_space[low : high + 1] = b"\x01" * (high - low + 1)
    for point in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(point))
        kind = category[0]
        if kind not in "LMN":
            continue
        if kind == "M":
            marks.append(point)
        elif in_no_space[point]:
            no_space.append(point)
        else:
            letters.append(point)
    mark = f"[{_ranges_class(marks)}]"
    letter = f"[{_ranges_class(letters)}]"
    continuing = f"[{_ranges_class(sorted(letters + marks))}]"
    # A word starts with a letter or digit; a mark (variation selectors and keycap enclosures included) only continues
    # one, so it never forms a unigram alone. A zero-width (non-)joiner stays in a word before a letter, or after a
    # mark (a virama: Malayalam chillu forms); elsewhere (between emoji) it separates.
    zero_width = f"(?:[{_ZERO_WIDTH_JOINERS}](?={letter})|(?<={mark})[{_ZERO_WIDTH_JOINERS}])"
    single = f"[{_ranges_class(no_space)}]{mark}*"
    word_run = f"{letter}{continuing}*(?:{zero_width}{continuing}*)*"
    joiner = r"(?:['\u2019]|(?<=\d)[.,](?=\d))"
    return re.compile(f"{single}|{word_run}(?:{joiner}{word_run})*")


#: The unigram regex restricted to ASCII input, where it matches exactly as the full one: the only ASCII letters and
#: digits (categories L*, N*) are ``A-Za-z0-9``, no ASCII character is a mark, a no-space script or a zero-width
#: joiner, and ``’`` is not ASCII. The full pattern's huge character classes cost several times more per character.
_ASCII_UNIGRAM = re.compile(r"[A-Za-z0-9]+(?:(?:'|(?<=[0-9])[.,](?=[0-9]))[A-Za-z0-9]+)*")


def unigrams(alt_text: str) -> list[str]:
    """The case-folded unigrams of an alt text, in order (see the module docstring for the rules)."""
    if alt_text.isascii():
        # ASCII case folding is lower-casing.
        return _ASCII_UNIGRAM.findall(alt_text.lower())
    # The emoji made of word characters become separators (every other emoji is made of symbols), then the
    # variation selectors left, all attached to a character before them, are taken out of the words they are in.
    alt_text = _SELECTOR.sub("", _WORD_CHARACTER_EMOJI.sub(" ", alt_text))
    return [token.casefold() for token in _unigram_pattern().findall(alt_text)]


def bigrams(tokens: list[str]) -> list[str]:
    """Consecutive pairs of unigrams, each joined by one space."""
    return [f"{first} {second}" for first, second in itertools.pairwise(tokens)]


def ngrams(tokens: list[str]) -> list[str]:
    """Unigrams then bigrams of a tokenised alt text: the keys the rare-n-gram rule counts (repeats kept)."""
    return tokens + bigrams(tokens)
