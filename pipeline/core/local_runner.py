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

import logging
import re
import threading
from typing import Any


def apply_data_plane_fix() -> None:
    """Make the local runner's worker data channels lossless (idempotent; see the module docstring)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    # Read when the runner builds its gRPC server and its in-process gRPC workers: 0 means size-based buffering.
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


# A bundle's input goes to a gRPC worker in messages of about this size (whole elements), so the worker holds a few
# of them at a time instead of its whole part of a shuffle.
INPUT_CHUNK_BYTES = 8 << 20
#: Beam's own ``GroupingBuffer.partition``, kept when ``apply_bounded_bundle_input`` replaces it (tests compare both).
BEAM_GROUPING_PARTITION: Any = None


def apply_bounded_bundle_input() -> None:
    """Make the local runner stream each bundle's input to gRPC workers in bounded pieces (idempotent).

    Beam's FnApiRunner encodes a worker's whole part of a shuffle (``GroupingBuffer.partition``) into one bytes
    object, writes all of it before asking the worker to start the bundle, and the worker receives it as one message:
    a worker's memory then grows with its share of the stage's input (measured on filter-image over a 100 MB crawl:
    workers at 1.9 GB). Here the parts are cut into ``INPUT_CHUNK_BYTES`` pieces at element boundaries, and the input
    is written by a thread of its own, flushed piece by piece, while the runner asks the worker to start: the worker's
    receive queue (five messages) then paces the runner, and nothing waits for a worker that waits for it (the
    deadlock a piecewise flush before the start request runs into). The in-process worker is left as Beam made it: it
    runs a bundle synchronously when asked, so its input must be complete before.
    """
    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner

    global BEAM_GROUPING_PARTITION
    if getattr(fn_runner.BundleManager, "_altcorpus_bounded_input", False):
        return
    BEAM_GROUPING_PARTITION = execution.GroupingBuffer.partition
    execution.GroupingBuffer.partition = _chunked_partition
    send = fn_runner.BundleManager._send_input_to_worker
    process = fn_runner.BundleManager.process_bundle

    def send_input_to_worker(self: Any, process_bundle_id: str, read_transform_id: str, byte_streams: Any) -> None:
        from apache_beam.runners.worker import data_plane

        if not isinstance(self._worker_handler.data_conn, data_plane._GrpcDataChannel):
            return send(self, process_bundle_id, read_transform_id, byte_streams)
        stream = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
        sender = _InputSender(stream, list(byte_streams or []))
        self.__dict__.setdefault("_altcorpus_senders", []).append(sender)
        sender.start()
        return None

    def process_bundle(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._altcorpus_senders = []
        result = process(self, *args, **kwargs)
        for sender in self._altcorpus_senders:  # all sent: the worker finished the bundle, so it read every piece
            sender.join()
            if sender.error is not None:
                raise RuntimeError(f"sending a bundle's input to a local worker failed: {sender.error}")
        return result

    fn_runner.BundleManager._send_input_to_worker = send_input_to_worker
    fn_runner.BundleManager.process_bundle = process_bundle
    fn_runner.BundleManager._altcorpus_bounded_input = True


class _InputSender(threading.Thread):
    """Writes one bundle input to a worker's data stream, flushing whole pieces as it goes, then closes it."""

    def __init__(self, stream: Any, pieces: list[bytes]) -> None:
        super().__init__(name="altcorpus-bundle-input", daemon=True)
        self.stream, self.pieces = stream, pieces
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for piece in self.pieces:
                self.stream.write(piece)
                self.stream.flush()  # one message per piece (whole elements: the worker decodes each on its own)
            self.pieces = []
        except (
            BaseException
        ) as error:  # process_bundle raises it once the bundle ends: the job fails, nothing lost quietly
            self.error = error
        finally:
            self.stream.close()


def _chunked_partition(self: Any, n: int) -> list[list[bytes]]:
    """``GroupingBuffer.partition`` of Beam 2.77 with each part cut into pieces of whole elements.

    Same elements, same order, same parts (key i to part i % n): only the part's encoding is a list of
    ``INPUT_CHUNK_BYTES`` pieces instead of one bytes object.
    """
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.transforms import trigger
    from apache_beam.transforms.window import GlobalWindow, GlobalWindows
    from apache_beam.utils import windowed_value

    if not self._grouped_output:
        if self._windowing.is_default():
            globally_window = GlobalWindows.windowed_value(
                None,
                timestamp=GlobalWindow().max_timestamp(),
                pane_info=windowed_value.PaneInfo(
                    is_first=True,
                    is_last=True,
                    timing=windowed_value.PaneInfoTiming.ON_TIME,
                    index=0,
                    nonspeculative_index=0,
                ),
            ).with_value

            def windowed_key_values(key: Any, values: Any) -> list[Any]:
                return [globally_window((key, values))]
        else:
            windowed_key_values = trigger.create_trigger_driver(self._windowing, True).process_entire_key
        coder_impl = self._post_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        parts: list[list[bytes]] = [[] for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for idx, (encoded_key, values) in enumerate(self._table.items()):
            part = idx % n
            key = key_coder_impl.decode(encoded_key)
            for kvs in windowed_key_values(key, values):
                coder_impl.encode_to_stream(kvs, streams[part], True)
            if streams[part].size() >= INPUT_CHUNK_BYTES:
                parts[part].append(streams[part].get())
                streams[part] = create_OutputStream()
        for part, stream in enumerate(streams):
            if stream.size() or not parts[part]:
                parts[part].append(stream.get())
        self._grouped_output = parts
        self._table.clear()
    return self._grouped_output


#: The local runner's logger for what its worker processes log (``BeamFnLoggingServicer``: ``Worker: <LogEntry>``).
WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
_ENTRY = re.compile(r'message: "(?P<message>(?:[^"\\]|\\.)*)".*?log_location: "(?P<location>[^"]*)"')


class WorkerLines(logging.Filter):
    """Let the project's own lines from local worker processes through (progress every few seconds), as plain lines.

    With ``--direct_running_mode=multi_processing`` each worker's log records reach the runner's log as
    ``Worker: severity: INFO timestamp {...} message: "..." log_location: "..."`` at their own level, under a Beam
    logger the CLI keeps at WARNING (Beam's workers log every bundle's set-up at INFO): without this filter a
    multi-process run shows no progress at all. Records from code under ``package_dir`` pass at any level and show
    only their message; Beam's own pass from WARNING up, unchanged.
    """

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self.package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        match = _ENTRY.search(text)
        if match is None or not match["location"].startswith(self.package_dir):
            # Every local worker warns that it has no semi-persistent directory, which only matters for pickled
            # main sessions and registered schemas (neither used here): two lines per stage that say nothing.
            return record.levelno >= logging.WARNING and "No semi_persistent_directory found" not in text
        record.name, record.msg, record.args = "altcorpus.worker", "%s", (_unescape(match["message"]),)
        return True


def _unescape(text: str) -> str:
    """A protobuf text-format string back to text: C escapes, and UTF-8 bytes that may come as octal escapes."""

    def byte(match: re.Match[bytes]) -> bytes:
        code = match[1]
        if len(code) == 1:
            return _SIMPLE_ESCAPES.get(code, code)
        return bytes([int(code[1:], 16) if code[0:1] == b"x" else int(code, 8) & 0xFF])

    return _ESCAPES.sub(byte, text.encode("utf-8")).decode("utf-8", "replace")


_ESCAPES = re.compile(rb"\\([0-7]{3}|x[0-9a-fA-F]{2}|.)")
_SIMPLE_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t"}


def show_worker_lines(package_dir: str) -> None:
    """Log local workers' lines from ``package_dir`` at INFO (progress), Beam's own worker lines from WARNING."""
    logger = logging.getLogger(WORKER_LOGGER)
    logger.setLevel(logging.INFO)
    if not any(isinstance(existing, WorkerLines) for existing in logger.filters):
        logger.addFilter(WorkerLines(package_dir))
