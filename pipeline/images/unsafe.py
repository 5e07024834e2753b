"""The optional unsafe-content hook of ``filter-image``: a pluggable scorer named by an entry point string.

ALIGN removed unsafe images with an unpublished classifier; altcorpus ships none. An operator names one with
``--unsafe-scorer module:callable`` (the ``module:attr`` form of a Python entry point). The callable takes a decoded
RGB ``PIL.Image.Image`` and returns a float (higher = less safe). If the named object is a class, it is instantiated
once with no arguments and its instances are called, so a scorer can load its model once per worker.
``filter-image`` records the score in ``unsafe_score`` and, with ``--max-unsafe-score``, drops images above it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint
from typing import Any

#: A scorer: decoded RGB image -> score (higher = less safe).
Scorer = Callable[[Any], float]


def load_scorer(spec: str) -> Scorer:
    """The scorer named by ``module:callable`` (a class is instantiated once); a clear error when it is not there."""
    if ":" not in spec:
        raise ValueError(f"unsafe scorer {spec!r} must be an entry point 'module:callable'")
    try:
        target = EntryPoint(name="unsafe_scorer", value=spec, group="altcorpus.unsafe_scorers").load()
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load unsafe scorer {spec!r}: {error}") from error
    if isinstance(target, type):
        target = target()
    if not callable(target):
        raise ValueError(f"unsafe scorer {spec!r} is not callable")
    return target


def score_image(scorer: Scorer, image: Any) -> float:
    """The scorer's score of ``image`` as a float (RGB conversion done here so every scorer sees the same input)."""
    return float(scorer(image.convert("RGB")))
