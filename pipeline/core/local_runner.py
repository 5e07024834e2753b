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

``apply_bounded_bundle_input`` also changes the runner's shuffle buffer (``GroupingBuffer``), where a GroupByKey's
whole input waits in the driver. Beam's decodes each windowed KV, keeps the value as a Python object in a list per
key, and at ``partition`` encodes every group again while the table is still whole, so the driver holds the input
and its full encoding at once. For the default windowing (others keep Beam's buffer) each key's values are kept
here as the encoding of their Iterable, a count and the values' bytes as they came (``_EncodedGroups``), and
``partition`` writes each grouped element from them: the windowed header and key by Beam's coders, then those bytes,
byte for byte what Beam writes (compared with Beam's ``partition`` in the tests and on each buffer's first element,
which falls back to Beam's buffer if they differ), letting each group go as it is written. Rows reach the runner
already encoded (a coder it does not know is length-prefixed, so it holds bytes): a value then costs its encoding
instead of a bytes object and a list slot; values of coders it decodes (tuples, ints, strings, ``Row``) cost their
encoding instead of Python objects (30k decoded row dicts: 57 -> 9 MB). Measured on 1M row encodings in 300k keys
(328 MB), one process: the buffer's RSS peak from first append to partitioned 689 -> 445 MB, CPU 2.3 -> 2.1 s; in
30k keys (33 values each) 2.0-2.1 s against Beam's 1.4 (appending costs more per value, writing less). A 2-worker
pipeline's driver peak: 631-703 MB against 710-746 for 300k rows in 100k keys, 1.01-1.07 GB against 1.06-1.17 for
1M rows, CPU the same within noise; the rest of that peak is the parts being sent (gRPC copies, send queues).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import re
import struct
import sys
import threading
import time
from typing import Any


def apply_data_plane_fix() -> None:
    """Make the local runner's worker data channels lossless (idempotent; see the module docstring)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    # Read when the runner builds its gRPC server and its in-process gRPC workers: 0 means size-based buffering.
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


#: What the local runner's worker processes start with, unless the environment says otherwise: glibc's malloc at two
#: arenas (instead of eight per core, one per thread that allocates) and Arrow's buffers from that same malloc instead
#: of its bundled mimalloc. Each allocator otherwise keeps the memory a finished bundle freed, so a worker's resident
#: size crept up with the data it had processed: filter-text over a 2 GB simulated crawl, largest worker 1,416 MB
#: as Beam starts it, 1,186 MB with two arenas, 997 MB with both; its CPU the same (57.0, 55.7, 54.9 s).
#: And a fixed mmap threshold of 4 MB with a trim threshold of 64 MB: glibc raises its threshold to the size of every
#: mmapped block freed (up to 32 MB), after which a stage's row-group-sized buffers came from the heap and left it in
#: holes a worker kept. Stage alone, 1 GB simulated crawl, 2 workers, largest worker: filter-image 600-670 -> 552 MB,
#: write-shards 591-614 -> 527, filter-text 497-562 -> 502, CPU -3% to +8%; the threshold alone cost 8-24% CPU (its
#: default 128 KB trim threshold gives the heap's top back and faults it in again).
WORKER_MEMORY_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(4 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}
# glibc's mallopt parameter numbers (malloc.h) for the variables of WORKER_MEMORY_ENV it reads at start.
_MALLOPT = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}


def apply_worker_memory_settings() -> None:
    """Start the local runner's worker processes with ``WORKER_MEMORY_ENV`` (values already set are kept), and set
    this process's own malloc the same way (glibc only; elsewhere nothing changes)."""
    for name, value in WORKER_MEMORY_ENV.items():
        os.environ.setdefault(name, value)
    for name, parameter in _MALLOPT.items():
        with contextlib.suppress(OSError, AttributeError, ValueError):
            _libc().mallopt(parameter, int(os.environ[name]))


#: A local worker's data output streams (one per PCollection a fused stage sends the runner) are flushed to the send
#: queue once they hold this many bytes (Beam's ``_DEFAULT_SIZE_FLUSH_THRESHOLD``: 10 MB). A stream's buffer keeps the
#: size it grew to (16 MB past a 10 MB flush), and a cached bundle processor keeps its last bundle's streams until it
#: runs again, so a worker held a full buffer for every output of every stage it had run that output 10 MB once:
#: measured with memray on filter-image (2 workers), 25 such buffers were 163 MB of a worker's 493 MB peak over the
#: 100 MB simulated crawl (many outputs too small to fill one), 336 MB of 730 MB over the 1 GB crawl (all full).
WORKER_FLUSH_BYTES = 1 << 20
#: What a local worker queues of the data it sends the runner, in each of its two send queues, and holds of a bundle's
#: input received (Beam's ``_DEFAULT_SEND_QUEUE_MAX_BYTES``: 100 MB for each of the three). The runner took the
#: measured workers' outputs in about as fast as they came; when it does not (it appends every worker's outputs to
#: its shuffle buffers on its own), the worker waits for it instead of holding 200 MB more. With ``INPUT_CHUNK_BYTES``
#: (the messages that fill the input side): 16 / 8 MB -> 4 / 2 MB, 1 GB simulated crawl alone, 2 workers, largest
#: worker (3 runs / 2 runs each): filter-text 480-495 -> 440-448 MB (100 MB crawl: 354-372), filter-image 521-524
#: -> 506-518, CPU the same (memray had 45 MB of a filter-text worker's peak in received input messages).
WORKER_QUEUE_BYTES = 4 << 20
#: The module the local runner's worker processes run (``pipeline/core/local_worker.py``) instead of Beam's.
WORKER_MODULE = "pipeline.core.local_worker"
_BEAM_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"


def apply_bounded_worker_data_plane() -> None:
    """Start the local runner's worker processes as ``WORKER_MODULE`` (Beam's worker, its output streams flushed at
    ``WORKER_FLUSH_BYTES`` and its queues bounded to ``WORKER_QUEUE_BYTES``) where it would start Beam's own
    (idempotent; other environments are left as they are)."""
    from apache_beam.transforms import environments

    subprocess_environment = environments.SubprocessSDKEnvironment
    if getattr(subprocess_environment, "_altcorpus_worker_module", False):
        return
    from_command_string = subprocess_environment.from_command_string.__func__

    def worker_command(cls: Any, command_string: str) -> Any:
        beams = f"{sys.executable} -m {_BEAM_WORKER_MODULE}"
        if command_string == beams:  # FnApiRunner's own multi_processing workers, nothing an operator configured
            command_string = f"{sys.executable} -m {WORKER_MODULE}"
        return from_command_string(cls, command_string)

    subprocess_environment.from_command_string = classmethod(worker_command)
    subprocess_environment._altcorpus_worker_module = True


# A bundle's input goes to a gRPC worker in messages of about this size (whole elements), so the worker holds a few
# of them at a time instead of its whole part of a shuffle (was 8 MB: ``WORKER_QUEUE_BYTES`` has the figures).
INPUT_CHUNK_BYTES = 2 << 20
#: Beam's own ``GroupingBuffer.partition``, kept when ``apply_bounded_bundle_input`` replaces it (tests compare both).
BEAM_GROUPING_PARTITION: Any = None
#: Beam's own ``GroupingBuffer`` methods that ``apply_bounded_bundle_input`` replaces, by name (tests use them to
#: build a buffer that holds decoded values, as Beam's does).
BEAM_GROUPING: dict[str, Any] = {}
# A group's count, as an Iterable's encoding starts: a big-endian int32 (``SequenceCoderImpl``, length known).
_COUNT = struct.Struct(">i")
_ONE = _COUNT.pack(1)
_NONE = _COUNT.pack(0)
# The groups written into this many pieces are given back to the system (``_return_freed_memory``) as partition
# goes, so the pieces it writes and the groups it let go are not both held.
_TRIM_EVERY_PIECES = 4


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

    It also makes the runner keep a shuffle's input encoded (``_EncodedGroups``): Beam's ``GroupingBuffer`` holds
    every value of a GroupByKey as a Python object until it encodes the groups again for the workers.
    """
    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner

    global BEAM_GROUPING_PARTITION
    if getattr(fn_runner.BundleManager, "_altcorpus_bounded_input", False):
        return
    grouping = execution.GroupingBuffer
    BEAM_GROUPING.update(
        __init__=grouping.__init__, append=grouping.append, extend=grouping.extend, partition=grouping.partition
    )
    BEAM_GROUPING_PARTITION = grouping.partition
    grouping.__init__ = _grouping_init
    grouping.append = _grouping_append
    grouping.extend = _grouping_extend
    grouping.partition = _chunked_partition
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


class _EncodedGroups:
    """How a ``GroupingBuffer`` with the default windowing reads its input without decoding the values.

    Beam's ``append`` decodes each windowed KV and keeps the value as a Python object in a list per encoded key;
    ``partition`` encodes them all again. Here each key's values are kept as the encoding of their Iterable, as
    ``partition`` writes it: a big-endian int32 count, then each value's nested encoding sliced from the input as it
    came (a key of one value: an exact-size ``bytes``, as most of a join's keys are; from its second value a
    ``bytearray`` that grows in place, the count updated in place). ``partition`` then writes the windowed header and
    the key (Beam's coders) followed by those bytes. A value costs its encoded size instead of a Python object
    (``bytes``: 33 bytes more than its payload, and a list slot; a dict or a ``Row``: several times its encoding).

    Used only where the post-grouped encoding is known to be that framing: both coders are ``WindowedValueCoder`` of
    a two-component ``TupleCoder``, the grouped one's second component an ``IterableCoder`` of the same value coder
    (same key coder), with Beam's Python implementations. Anything else keeps Beam's buffer as it is.
    """

    def __init__(self, pre_grouped_coder: Any, post_grouped_coder: Any) -> None:
        from apache_beam.coders import coder_impl

        key_value = pre_grouped_coder.wrapped_value_coder
        self.key = key_value.coders()[0].get_impl()
        self.value = key_value.coders()[1].get_impl()
        # The windowed KV's encoding up to its value: a windowed value whose value is the key.
        self.windowed_key = coder_impl.WindowedValueCoderImpl(
            self.key, pre_grouped_coder.timestamp_coder.get_impl(), pre_grouped_coder.window_coder.get_impl()
        )
        self.grouped = post_grouped_coder.get_impl()
        self.globally = _global_pane(None).with_value
        self.checked = False
        # The runner appends each worker's output from that worker's bundle thread: a group's update (read its count,
        # write it, extend it, or replace it by a bytearray) is several steps, where a list's append was one.
        self.lock = threading.RLock()

    @staticmethod
    def applies(pre_grouped_coder: Any, post_grouped_coder: Any, windowing: Any) -> bool:
        """Whether a buffer with these coders and windowing can keep its values encoded (see the class)."""
        from apache_beam.coders import coder_impl, coders

        if not windowing.is_default():
            return False
        try:
            key_value, grouped = pre_grouped_coder.wrapped_value_coder, post_grouped_coder.wrapped_value_coder
            iterable = grouped.coders()[1]
            return (
                type(pre_grouped_coder) is coders.WindowedValueCoder
                and type(post_grouped_coder) is coders.WindowedValueCoder
                and type(pre_grouped_coder.get_impl()) is coder_impl.WindowedValueCoderImpl
                and type(post_grouped_coder.get_impl()) is coder_impl.WindowedValueCoderImpl
                and type(key_value) is coders.TupleCoder
                and type(grouped) is coders.TupleCoder
                and len(key_value.coders()) == 2
                and len(grouped.coders()) == 2
                and type(iterable) is coders.IterableCoder
                and type(iterable.get_impl()) is coder_impl.IterableCoderImpl
                and grouped.coders()[0] == key_value.coders()[0]
                and iterable._elem_coder == key_value.coders()[1]
            )
        except (AttributeError, IndexError, TypeError):
            return False

    def header(self, key: Any) -> bytes:
        """The grouped element's encoding up to its values: window, timestamp, pane, key (Beam's coders)."""
        encoded = self.grouped.encode_nested(self.globally((key, ())))
        if not encoded.endswith(_NONE):  # an empty Iterable of known length ends it: its count, 0
            raise RuntimeError("unexpected grouped encoding: it does not end with an empty Iterable's count")
        return encoded[: -len(_NONE)]

    def append(self, table: dict[bytes, bytes | bytearray], data: bytes) -> bool:
        """Add ``data``'s windowed KVs to ``table``; False (nothing added) if Beam's encoding of the first one
        differs from ours, where the caller keeps Beam's buffer."""
        from apache_beam.coders.coder_impl import create_InputStream

        stream = create_InputStream(data)
        view, total = memoryview(data), len(data)
        key_impl, value_impl, windowed_key = self.key, self.value, self.windowed_key
        count, pack_into = _COUNT.unpack_from, _COUNT.pack_into
        left = stream.size()
        while left > 0:
            key = windowed_key.decode_from_stream(stream, True).value  # window, time, pane: dropped, as Beam does
            start = total - stream.size()
            value_object = value_impl.decode_from_stream(stream, True)  # where the value ends (coders vary)
            left = stream.size()
            value = view[start : total - left]
            if not self.checked:
                expected = self.grouped.encode_nested(self.globally((key, [value_object])))
                if expected != self.header(key) + _ONE + value:
                    return False
                self.checked = True
            encoded_key = key_impl.encode(key)
            group = table.get(encoded_key)
            if group is None:
                table[encoded_key] = _ONE + value
            else:
                if type(group) is bytes:  # a second value: the group grows in place from now on
                    table[encoded_key] = group = bytearray(group)
                pack_into(group, 0, count(group)[0] + 1)
                group += value
        return True

    def decoded(self, table: dict[bytes, bytes | bytearray]) -> dict[bytes, list[Any]]:
        """``table`` as Beam's buffer holds it: each key's values decoded, in order."""
        from apache_beam.coders.coder_impl import create_InputStream

        beams: dict[bytes, list[Any]] = collections.defaultdict(list)
        for key, group in table.items():
            stream = create_InputStream(bytes(group))
            beams[key] = [self.value.decode_from_stream(stream, True) for _ in range(stream.read_bigendian_int32())]
        return beams


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    The groups of more than one value outgrow Python's small-object allocator (512 bytes) and come from the C heap,
    where the holes they leave once written are not returned on their own: measured on a 2-worker GroupByKey of 1M
    rows, the driver kept 140 MB more after ``partition`` than with Beam's values, and peaked higher while sending.
    """
    # Not glibc: the memory stays with the process, reused by its next allocations.
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


#: How often a long-running worker step gives glibc's free heap pages back (``HeapTrimmer``).
TRIM_EVERY_S = 10.0


class HeapTrimmer:
    """Gives the C heap's free pages back to the system (``_return_freed_memory``), at most every ``every_s``.

    For a step that runs for minutes with many threads (fetch: decode, resize, encode on each): the holes its freed
    buffers leave in the heap are kept by malloc, so the worker's resident size crept up with the time it ran
    (1 GB simulated crawl: 407 -> 495 MB over 400 s, its live allocations near 220 MB). Elsewhere a no-op.
    """

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self._last = time.monotonic()

    def maybe(self) -> bool:
        """Trim if ``every_s`` passed since the last time (or since this was made); whether it was time."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return False
        self._last = now
        _return_freed_memory()
        return True


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library this process runs on."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _global_pane(value: Any) -> Any:
    """A grouped element as Beam's ``partition`` windows it for the default windowing (the same pane and time)."""
    from apache_beam.transforms.window import GlobalWindow, GlobalWindows
    from apache_beam.utils import windowed_value

    return GlobalWindows.windowed_value(
        value,
        timestamp=GlobalWindow().max_timestamp(),
        pane_info=windowed_value.PaneInfo(
            is_first=True, is_last=True, timing=windowed_value.PaneInfoTiming.ON_TIME, index=0, nonspeculative_index=0
        ),
    )


def _grouping_init(self: Any, pre_grouped_coder: Any, post_grouped_coder: Any, windowing: Any) -> None:
    """``GroupingBuffer.__init__``, then an encoded table where ``_EncodedGroups`` applies."""
    BEAM_GROUPING["__init__"](self, pre_grouped_coder, post_grouped_coder, windowing)
    self._altcorpus_groups = None
    if _EncodedGroups.applies(pre_grouped_coder, post_grouped_coder, windowing):
        self._altcorpus_groups = _EncodedGroups(pre_grouped_coder, post_grouped_coder)
        self._table = {}


def _to_beams_table(buffer: Any) -> None:
    """Turn an encoded buffer into Beam's (values decoded): where its encoding differs, or to merge with Beam's."""
    groups = getattr(buffer, "_altcorpus_groups", None)
    if groups is not None:
        buffer._table = groups.decoded(buffer._table)
        buffer._altcorpus_groups = None


def _grouping_append(self: Any, elements_data: bytes) -> None:
    """``GroupingBuffer.append``: values kept encoded where ``_EncodedGroups`` applies, else Beam's."""
    groups = getattr(self, "_altcorpus_groups", None)
    if groups is None:
        return BEAM_GROUPING["append"](self, elements_data)
    with groups.lock:
        if self._altcorpus_groups is None:  # another thread found the encodings differ: Beam's buffer from then on
            return BEAM_GROUPING["append"](self, elements_data)
        if self._grouped_output:
            raise RuntimeError("Grouping table append after read.")
        if not groups.append(self._table, elements_data):
            logging.getLogger(__name__).warning(
                "the local runner's shuffle of %s keeps Beam's decoded values: its encoding differs from ours",
                self._post_grouped_coder,
            )
            _to_beams_table(self)
            BEAM_GROUPING["append"](self, elements_data)
    return None


def _grouping_extend(self: Any, input_buffer: Any) -> None:
    """``GroupingBuffer.extend``: merges two encoded tables (counts added, values appended), else Beam's."""
    from apache_beam.runners.portability.fn_api_runner import execution

    mine = getattr(self, "_altcorpus_groups", None)
    if isinstance(input_buffer, execution.GroupingBuffer) and getattr(input_buffer, "_altcorpus_groups", None):
        if mine is None:  # a Beam buffer takes the other's values decoded, as Beam's own would hold them
            theirs = input_buffer._altcorpus_groups.decoded(input_buffer._table)
            for key, values in theirs.items():
                self._table[key].extend(values)
            return None
        with mine.lock, input_buffer._altcorpus_groups.lock:  # re-entrant: Beam's copy() may give a buffer itself
            theirs = input_buffer._table
            if input_buffer is self:  # its groups would grow while read: merge copies of them
                theirs = {key: bytes(group) for key, group in theirs.items()}
            _merge_groups(self._table, theirs)
        return None
    if mine is not None and isinstance(input_buffer, execution.GroupingBuffer):
        _to_beams_table(self)  # the other holds decoded values: merge as Beam does
    return BEAM_GROUPING["extend"](self, input_buffer)


def _merge_groups(table: dict[bytes, bytes | bytearray], other: dict[bytes, bytes | bytearray]) -> None:
    """Add ``other``'s encoded groups to ``table``'s: counts added, values appended after the table's."""
    for key, group in other.items():
        existing = table.get(key)
        if existing is None:
            table[key] = bytes(group)  # a copy where it is a bytearray: the other buffer may grow it
        else:
            merged = existing if type(existing) is bytearray else bytearray(existing)
            _COUNT.pack_into(merged, 0, _COUNT.unpack_from(existing)[0] + _COUNT.unpack_from(group)[0])
            merged += memoryview(group)[_COUNT.size :]
            table[key] = merged


def _chunked_partition(self: Any, n: int) -> list[list[bytes]]:
    """``GroupingBuffer.partition`` of Beam 2.77 with each part cut into pieces of whole elements.

    Same elements, same order, same parts (key i to part i % n), byte for byte: only the part's encoding is a list of
    ``INPUT_CHUNK_BYTES`` pieces instead of one bytes object. An encoded table (``_EncodedGroups``) is written from
    its bytes, a key's group let go once written, so the buffer's input and its encoding are not both held whole.
    """
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.transforms import trigger

    if self._grouped_output:
        return self._grouped_output
    groups = getattr(self, "_altcorpus_groups", None)
    parts: list[list[bytes]] = [[] for _ in range(n)]
    if groups is not None:
        pending: list[list[Any]] = [[] for _ in range(n)]
        sizes, written = [0] * n, 0
        key_impl = self._key_coder.get_impl()
        for idx, encoded_key in enumerate(list(self._table)):
            group = self._table.pop(encoded_key)
            part = idx % n
            header = groups.header(key_impl.decode(encoded_key))
            pending[part] += (header, group)
            sizes[part] += len(header) + len(group)
            if sizes[part] >= INPUT_CHUNK_BYTES:
                parts[part].append(b"".join(pending[part]))
                pending[part], sizes[part] = [], 0
                written += 1
                if written % _TRIM_EVERY_PIECES == 0:
                    _return_freed_memory()
        for part, chunks in enumerate(pending):
            if chunks or not parts[part]:
                parts[part].append(b"".join(chunks))
        self._grouped_output = parts
        _return_freed_memory()
        return parts
    if self._windowing.is_default():
        globally_window = _global_pane(None).with_value

        def windowed_key_values(key: Any, values: Any) -> list[Any]:
            return [globally_window((key, values))]
    else:
        windowed_key_values = trigger.create_trigger_driver(self._windowing, True).process_entire_key
    coder_impl = self._post_grouped_coder.get_impl()
    key_coder_impl = self._key_coder.get_impl()
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
