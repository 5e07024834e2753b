"""The local runner's worker processes (``--direct_running_mode=multi_processing``): Beam's own SDK worker, with its
data plane's buffers bounded (``WORKER_FLUSH_BYTES``, ``WORKER_QUEUE_BYTES``: ``pipeline/core/local_runner.py`` says
what each held before).

``apply_bounded_worker_data_plane`` makes the local runner start its workers with
``python -m pipeline.core.local_worker`` instead of ``python -m apache_beam.runners.worker.sdk_worker_main``; nothing
else about the worker changes.
"""

from __future__ import annotations

import sys
from typing import Any

from apache_beam.runners.worker import data_plane, sdk_worker_main

from pipeline.core.local_runner import WORKER_FLUSH_BYTES, WORKER_QUEUE_BYTES


def bound_data_plane() -> None:
    """Flush this process's data output streams at ``WORKER_FLUSH_BYTES`` and bound its data queues to
    ``WORKER_QUEUE_BYTES`` (idempotent). Takes effect for the data channels and streams made after it."""
    streams = data_plane.SizeBasedBufferingClosableOutputStream
    if not getattr(streams, "_altcorpus_bounded", False):
        init = streams.__init__

        def bounded_init(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self._size_flush_threshold = min(self._size_flush_threshold, WORKER_FLUSH_BYTES)

        streams.__init__ = bounded_init
        streams._altcorpus_bounded = True
    data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = WORKER_QUEUE_BYTES  # read when the worker builds its data channel


def main(argv: list[str] | None = None) -> None:
    """Run Beam's SDK worker with ``bound_data_plane`` applied first."""
    bound_data_plane()
    sdk_worker_main.main(argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
