"""A fix for the local runner's data plane, which loses rows in its multi-process and multi-thread modes.

Beam's FnApiRunner (the engine of the DirectRunner) sends a stage's input to a gRPC worker through an output stream
that a background thread flushes every ``DATA_BUFFER_TIME_LIMIT_MS`` (1,000 ms): the flush hands the buffer to the
send queue and *then* clears it (``apache_beam.runners.worker.data_plane.TimeBasedBufferingClosableOutputStream``).
The send queue holds at most 100 MB, so while a large input is being sent the flush blocks in the hand-over, the
runner's main thread goes on writing chunks into the same buffer, and the clear that follows drops them. Measured on
write-shards over a 100 MB simulated crawl with ``--direct_running_mode=multi_processing --direct_num_workers=2``:
the runner wrote 452 MB of samples for one worker and 326 MB reached it, so 6,463 of 18,008 samples never reached
a shard writer (more the busier the machine; none in one process, whose in-memory channel has no flush thread).

The fix turns the timer off (``DATA_BUFFER_TIME_LIMIT_MS = 0``): the runner's streams are then size-buffered and
sent whole when the runner closes them, so nothing written can be cleared unsent. Flushing them in smaller pieces is
not an option: the runner sends a bundle's whole input before it asks the worker to start the bundle, and the worker
buffers only five messages until then, so a runner that flushed every 10 MB would wait for a worker that waits for
it (tried: write-shards hung). One message per bundle input is what Beam's in-process channel does too; a bundle
input beyond gRPC's 2 GB message limit cannot be sent this way (not tried here; use a distributed runner at that
size, where the shuffle is not held in one process's memory anyway).
Applied before any local pipeline runs (``pipeline_options``); other runners (Dataflow, Flink, Spark) have their own
data plane and are not touched.
"""

from __future__ import annotations


def apply_data_plane_fix() -> None:
    """Make the local runner's worker data channels lossless (idempotent; see the module docstring)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    # Read when the runner builds its gRPC server and its in-process gRPC workers: 0 means size-based buffering.
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
