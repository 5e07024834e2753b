"""Which text a training sample gets: its alt text, its enhanced caption, or a per-sample mix of the two.

A shard carries the alt text as the ``txt`` member and, when the ``caption`` stage wrote one, an enhanced caption as
the ``enhanced.txt`` member (WebDataset key ``"enhanced.txt"``). The config key ``caption_source`` chooses::

    caption_source:
      text: mix                 # alt (default) | enhanced | mix
      enhanced_probability: 0.5 # mix only: chance a sample gets its enhanced caption in an epoch
      split_sentences: false    # true: an enhanced caption is split into sentences and one is drawn per visit

Choices are drawn from a generator seeded by (``--seed``, epoch, sample key), so a run repeated with the same seed,
or resumed at an epoch, gives every sample the same text, whatever the shuffle, loader worker or rank; another epoch
draws anew. A sample without an enhanced caption falls back to its alt text and is counted (logged once per pass).
:class:`CaptionChoice` is a WebDataset pipeline stage; ``training.compat.install_caption_choice`` puts it into
open_clip_train's own pipeline just before it renames ``txt`` to ``text``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("altcorpus.captions")

#: The WebDataset key of the alt text (what open_clip_train renames to ``text``).
ALT_MEMBER = "txt"
#: The WebDataset key of the enhanced caption (tar member ``{key}.enhanced.txt``).
ENHANCED_MEMBER = "enhanced.txt"
TEXT_CHOICES = ("alt", "enhanced", "mix")
# A sentence ends at . ! or ? followed by white space; "e.g. x" splits too, which costs a short fragment at worst.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class CaptionSource:
    """The ``caption_source`` config setting: which text each sample trains on."""

    text: str = "alt"
    enhanced_probability: float = 0.5
    split_sentences: bool = False

    def __post_init__(self) -> None:
        if self.text not in TEXT_CHOICES:
            raise ValueError(f"caption_source.text must be one of {', '.join(TEXT_CHOICES)}; got {self.text!r}")
        if not 0.0 <= self.enhanced_probability <= 1.0:
            raise ValueError(f"caption_source.enhanced_probability must be in [0, 1]; got {self.enhanced_probability}")

    @property
    def is_alt_only(self) -> bool:
        """True when every sample keeps its alt text: nothing to install in open_clip_train's pipeline."""
        return self.text == "alt"

    def to_json(self) -> str:
        """The setting as one JSON argument (``python -m training.worker --caption-source JSON``)."""
        return json.dumps(asdict(self), sort_keys=True)


def caption_source_from_config(value: Any) -> CaptionSource:
    """Read ``caption_source`` from a config: null (alt text), a word (``enhanced``) or a mapping."""
    if value is None:
        return CaptionSource()
    if isinstance(value, str):
        return CaptionSource(text=value)
    if not isinstance(value, dict):
        raise ValueError(f"caption_source must be alt|enhanced|mix or a mapping; got {value!r}")
    unknown = set(value) - {"text", "enhanced_probability", "split_sentences"}
    if unknown:
        raise ValueError(
            f"caption_source: unknown keys {sorted(unknown)} (text, enhanced_probability, split_sentences)"
        )
    return CaptionSource(
        text=str(value.get("text", "alt")),
        enhanced_probability=float(value.get("enhanced_probability", 0.5)),
        split_sentences=bool(value.get("split_sentences", False)),
    )


def caption_source_from_json(text: str) -> CaptionSource:
    """The inverse of :meth:`CaptionSource.to_json`."""
    return caption_source_from_config(json.loads(text))


def split_sentences(text: str) -> list[str]:
    """The sentences of a caption (at least the whole caption when it has no sentence end)."""
    sentences = [sentence.strip() for sentence in _SENTENCE_END.split(text.strip())]
    return [sentence for sentence in sentences if sentence] or [text]


def _as_text(value: Any) -> str | None:
    # open_clip_train's pipeline decodes .txt members to str; bytes when the stage runs before the decoder.
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    text = str(value).strip()
    return text or None


def sample_generator(seed: int, epoch: int, key: str) -> random.Random:
    """The generator of one sample's choices in one epoch: a hash of (seed, epoch, key), independent of order."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class CaptionChoice:
    """WebDataset stage: set each sample's ``txt`` to the text :class:`CaptionSource` picks for it this epoch.

    ``epoch`` is an int or open_clip_train's ``SharedEpoch`` (read at the start of each pass, as the shuffle does).
    ``counts`` holds, for the current pass over the loader's shards, how many samples got ``alt``, ``enhanced``, and
    ``fallback`` (wanted the enhanced caption, had none, kept the alt text); the pass's counts are logged at its end.
    """

    def __init__(self, source: CaptionSource, seed: int, epoch: Any = 0) -> None:
        self.source, self.seed, self.epoch = source, seed, epoch
        self.counts: Counter[str] = Counter()

    def _epoch(self) -> int:
        get_value = getattr(self.epoch, "get_value", None)
        return int(get_value()) if get_value is not None else int(self.epoch)

    def choose(self, sample: dict[str, Any], epoch: int) -> tuple[str, str]:
        """(text, which) for one sample in one epoch; which is ``alt``, ``enhanced`` or ``fallback``."""
        alt_text = _as_text(sample.get(ALT_MEMBER)) or ""
        rng = sample_generator(self.seed, epoch, str(sample.get("__key__", "")))
        # Drawn whatever the mode, so a sample's sentence draw does not depend on the mode or the probability.
        draw = rng.random()
        wants_enhanced = self.source.text == "enhanced" or (
            self.source.text == "mix" and draw < self.source.enhanced_probability
        )
        if not wants_enhanced:
            return alt_text, "alt"
        enhanced = _as_text(sample.get(ENHANCED_MEMBER))
        if enhanced is None:
            return alt_text, "fallback"
        if self.source.split_sentences:
            enhanced = rng.choice(split_sentences(enhanced))
        return enhanced, "enhanced"

    def __call__(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        epoch = self._epoch()
        self.counts = counts = Counter()
        try:
            for sample in samples:
                text, which = self.choose(sample, epoch)
                counts[which] += 1
                yield {**sample, ALT_MEMBER: text}
        finally:
            # Runs when open_clip_train stops pulling (with_epoch) and drops this generator, or at a shard list's end.
            log.info(
                "caption choice (%s, epoch %d): %d enhanced, %d alt, %d without an enhanced caption kept their alt "
                "text",
                self.source.text,
                epoch,
                counts["enhanced"],
                counts["alt"],
                counts["fallback"],
            )
