"""Shared fixtures (the real crawl data in ../shared/data) and the markers every test gets from where it lives.

Markers (registered in pyproject.toml) are applied here, so test files need no edits: everything under
tests/training/ is ``needs_torch``, under tests/dags/ ``needs_airflow``; a test whose own source names chromium is
``needs_browser``, and one that names torch or open_clip ``needs_torch``. ``make test-fast`` deselects them and ``slow``;
it also blocks torch (tests/fixtures/without_torch.py), so a test that needs torch without saying so fails there.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
TESTS_DIR = Path(__file__).resolve().parent

#: tests/<folder>/** -> the marker all its tests get.
FOLDER_MARKERS = {"training": "needs_torch", "dags": "needs_airflow"}
#: A test function whose source matches -> the marker it gets.
SOURCE_MARKERS = (
    (re.compile(r"\bchromium\b", re.IGNORECASE), "needs_browser"),
    (re.compile(r"\b(torch|torchvision|open_clip\w*)\b"), "needs_torch"),
)


def shared_path(relative: str) -> Path:
    """A file of ../shared/data, failing the test with a clear message when it is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.fail(
            f"test data missing: {path} (tests read real crawl data from ../shared/data beside the project; "
            "see ../shared/data/README.md for what each file is and where it comes from)"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder (fails clearly when absent)."""
    return shared_path("README.md").parent


def deselected_markers(markexpr: str) -> set[str]:
    """The markers a ``-m "not a and not b and ..."`` expression deselects; empty for any other form of expression."""
    if not markexpr or "(" in markexpr or re.search(r"\bor\b", markexpr):
        return set()
    terms = [term.split() for term in re.split(r"\band\b", markexpr)]
    return {term[1] for term in terms if len(term) == 2 and term[0] == "not"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip importing a folder whose marker ``-m`` deselects anyway: its modules import torch or Airflow."""
    marker = FOLDER_MARKERS.get(collection_path.name) if collection_path.parent == TESTS_DIR else None
    if marker is not None and marker in deselected_markers(config.getoption("markexpr")):
        return True
    return None  # let pytest and other hooks decide


def markers_for(item: pytest.Item) -> set[str]:
    """The markers this file gives a collected test (see the module docstring)."""
    markers = set()
    path = item.path.resolve()
    if path.is_relative_to(TESTS_DIR):
        folder = path.relative_to(TESTS_DIR).parts[0]
        if folder in FOLDER_MARKERS:
            markers.add(FOLDER_MARKERS[folder])
    function = getattr(item, "function", None)
    if function is not None:
        source = inspect.getsource(function)
        markers.update(marker for pattern, marker in SOURCE_MARKERS if pattern.search(source))
    return markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the folder and source markers to every collected test."""
    for item in items:
        for marker in sorted(markers_for(item) - {mark.name for mark in item.iter_markers()}):
            item.add_marker(marker)
