"""Alt texts: the normalisation the oracle expects, the length every ordinary alt must clearly pass, and the writer
that hands out unique alts from subject x context combinations."""

from __future__ import annotations

import html
import random
import re
import unicodedata
from collections.abc import Callable

from pipeline.sample.pools import CONTEXTS, SUBJECTS


def normalise_expected_alt(raw_attribute_value: str) -> str:
    """The alt text ARCHITECTURE.md defines, computed independently of the extractor: one more entity decoding pass
    (the HTML parser did the first), whitespace (Unicode's) collapsed, NFC."""
    text = html.unescape(raw_attribute_value) if "&" in raw_attribute_value else raw_attribute_value
    return unicodedata.normalize("NFC", " ".join(text.split()))


def _has_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)


def clearly_within_length(alt: str) -> bool:
    """Whether ``alt`` has 3..20 unigrams under every usual tokeniser (whitespace, word+punctuation, CJK per
    character), so an ordinary candidate's fate does not depend on which one filter-text documents."""
    if _has_cjk(alt):
        return len(alt.split()) >= 3 and 3 <= len(alt.replace(" ", "")) <= 18
    words = alt.split()
    tokens = re.findall(r"\w+|[^\w\s]", alt)
    return len(words) >= 4 and len(tokens) <= 20 and len(re.findall(r"\w+", alt)) >= 3


class AltWriter:
    """Hands out alt texts that are unique across the whole sample, drawn from subject x context combinations."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self._queues: dict[tuple[str, str], list[str]] = {}

    def claim(self, alt: str) -> str:
        """Register a hand-written alt text, failing loudly if it was already used (the oracle needs unique alts)."""
        if alt in self.used:
            raise ValueError(f"alt text used twice in the sample: {alt!r}")
        self.used.add(alt)
        return alt

    def pools(self, lang: str) -> list[str]:
        """Alt pools (photo subjects) with texts left in ``lang``."""
        return [pool for pool in sorted(SUBJECTS) if lang in SUBJECTS[pool] and self._queue(pool, lang)]

    def _queue(self, pool: str, lang: str) -> list[str]:
        key = (pool, lang)
        if key not in self._queues:
            combos = [f"{subject} {context}".strip() for subject in SUBJECTS[pool][lang] for context in CONTEXTS[lang]]
            combos = [alt for alt in combos if clearly_within_length(alt)]
            self.rng.shuffle(combos)
            self._queues[key] = combos
        queue = self._queues[key]
        while queue and queue[-1] in self.used:
            queue.pop()
        return queue

    def take(self, pool: str, lang: str = "en", accept: Callable[[str], bool] | None = None) -> str:
        """The next unused alt text describing ``pool``'s photo in ``lang`` (and passing ``accept``)."""
        queue = self._queue(pool, lang)
        for index in range(len(queue) - 1, -1, -1):
            alt = queue[index]
            if alt not in self.used and (accept is None or accept(alt)):
                del queue[index]
                return self.claim(alt)
        raise ValueError(f"no alt texts left for {pool}/{lang}; lower --pages")
