"""The sample's pools (``pipeline/sample/pools/*.json``): each loads, ships in the wheel, and fits what the generator
draws from it; a missing one fails with a message that says which and why."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import read_configuration

from pipeline.sample import pools
from pipeline.sample.alt_texts import clearly_within_length

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def pool_files() -> list[str]:
    folder = resources.files("pipeline.sample") / pools.POOLS_FOLDER
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".json"))


def test_a_missing_pool_names_the_file_and_the_package_data_it_needs() -> None:
    with pytest.raises(FileNotFoundError, match=r"'no_such_pool' is missing.*no_such_pool\.json.*package-data"):
        pools.load_pool("no_such_pool")


def test_every_pool_file_loads_and_is_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    names = pool_files()
    assert {"photos.json", "alt_subjects.json", "alt_contexts.json", "languages.json", "listing_titles.json"} <= set(
        names
    )
    for name in names:
        assert pools.load_pool(name.removesuffix(".json"))
    # read_configuration resolves paths against the working directory.
    monkeypatch.chdir(PROJECT_ROOT)
    package_data = read_configuration(PROJECT_ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("pipeline.sample", [])
    for name in names:
        assert any(Path(pools.POOLS_FOLDER, name).match(pattern) for pattern in patterns), (name, patterns)


def test_pools_cover_what_the_generator_draws() -> None:
    # Every photo drawn is a packaged file, every ordinary photo has English alts, and every language a page can be
    # written in has contexts, hosts, words and a caption.
    assert set(pools.ORDINARY_PHOTOS) | set(pools.EVAL_PHOTOS) <= set(pools.PHOTO_FILES)
    assert not set(pools.ORDINARY_PHOTOS) & set(pools.EVAL_PHOTOS)
    assert all(crops >= 1 for crops in pools.ORDINARY_CROPS.values())
    for pool in set(pools.ORDINARY_PHOTOS.values()):
        assert pools.SUBJECTS[pool]["en"], pool
    for pool, by_language in pools.SUBJECTS.items():
        for lang, subjects in by_language.items():
            # The writer keeps only subject + context combinations whose length is clearly within ALIGN's limits.
            combinations = [f"{subject} {context}".strip() for subject in subjects for context in pools.CONTEXTS[lang]]
            assert sum(map(clearly_within_length, combinations)) >= len(subjects), (pool, lang)
    for lang in pools.CONTEXTS:
        assert "" in pools.CONTEXTS[lang]
        assert pools.LANGUAGE_WEIGHTS[lang] > 0 and pools.LANGUAGE_HOSTS[lang]
        assert pools.PAGE_WORDS[lang] and pools.CAPTIONS[lang]
    assert all(len(words) >= 2 for words in pools.LISTING_WORDS.values())
