"""The pipeline's tests need no train extra: with torch and open_clip unimportable, they all still collect.

``make test-fast`` also runs the fast ones that way; this keeps the property under ``make test`` (CI) too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_pipeline_and_schema_tests_collect_with_torch_blocked() -> None:
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.fixtures.without_torch",
        "--collect-only", "-q", "tests/pipeline", "tests/schemas",
    ]  # fmt: skip
    process = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert "tests/pipeline/stages/test_write_shards.py::" in process.stdout  # imports the open_clip loader fixture
    assert " collected" in process.stdout


def test_the_blocker_blocks() -> None:
    code = "import tests.fixtures.without_torch\ntry:\n    import torch\nexcept ModuleNotFoundError as e:\n    print(e.name)"
    process = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert process.stdout.strip() == "torch", process.stderr
