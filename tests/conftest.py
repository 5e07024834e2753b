"""Shared fixtures: the real crawl data in ../shared/data, and helpers to run stages on it."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


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
