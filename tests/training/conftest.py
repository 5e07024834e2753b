"""Fixtures shared by the training tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    import torch  # here, not at import: make test-fast blocks torch, and collecting this file must not need it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a test: OpenMP threads spinning on a shared 2-core CPU cost more than they give."""
    with _one_intra_op_thread():
        yield


@pytest.fixture(scope="module")
def one_torch_thread_per_module() -> Iterator[None]:
    """``one_torch_thread`` for a whole module, for module-scoped fixtures that train or evaluate."""
    with _one_intra_op_thread():
        yield
