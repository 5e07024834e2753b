"""Benchmark of the extract stage's per-record path against its two anchors, measured in the same run.

A WARC of about ``--target-mb`` MB (gzip, one member per record as Common Crawl writes them) is generated into
``build/bench/`` by replicating the real HTML pages of ``../shared/data/warc`` under new URLs. Then, on one core:

* ``extract``: ``pipeline.stages.extract.extract_columns`` over the file, candidates taken out as Arrow record batches
  (the exact code the Beam DoFn runs; before the third round, ``iter_extracted``'s dicts), and again with
  ``--full-parse`` (whole pages through Lexbor: the reference the tag scan is measured against);
* ``zcat``: ``zcat file > /dev/null``, the decompression limit;
* ``fastwarc``: fastwarc alone reading every record body (for reference: the floor under ``extract``);
* ``warcio+bs4``: warcio + BeautifulSoup (html.parser) doing the same job (every ``<img>`` with alt, URLs
  resolved against the page and ``<base href>``). It is ~100x slower, so it runs on the first records only
  (``--baseline-seconds``) and its rate is scaled from the bytes it covered.

Times are CPU seconds of one process (``time.process_time``; zcat's from ``getrusage``): the goals are per core,
and on a shared machine wall time measures the neighbours' load as much as the code. CPU time still drifts by tens
of percent with that load, so zcat, extract and fastwarc are timed piece by piece (the file cut at record
boundaries into ``--piece-mb`` pieces), one after the other on each piece, for ``--repeat`` rounds; each reader's
fastest time per piece is kept and summed. Every round's totals and ratio are printed as well.
It prints MB/s of compressed input and of uncompressed WARC bytes for each, and the ratios against the goals
(extract >= 0.5x zcat, >= 10x warcio+bs4).  ``python bench/extract.py --target-mb 20`` for a quick run.

The loop is not what users run. The bench also times the whole stage, ``python -m pipeline extract`` on the file
(one worker; then two, ``multi_processing``), in CPU seconds of the stage and its worker processes
(``getrusage`` of the children: the machine is shared, wall time would measure the neighbours), and prints
stage/zcat beside loop/zcat (goal >= 0.4x), with a run's fixed cost (Beam's start-up and bookkeeping, measured on a
one-record WARC) shown apart. Then it runs the stage on WARCs of ``--memory-mb`` sizes and prints each peak RSS
(largest process): a stage's memory must not grow with its input (goal: within 20%).

Profile before batching (issue 17; ``python -m cProfile -m pipeline extract`` on the 50 MB file, 136,261
candidates): the loop was a fifth of the run. The rest was Beam moving one dict per row: 1.9 million
``pickle.dumps`` (14 per candidate: each ``Column`` key pickled alone through its ``__reduce__``, 1.8 million
calls), ``bundle_processor.process_encoded`` and per-row ``process``, ``WriteToParquet``'s per-row dict-to-column
DoFn, a windowed value and two ``Timestamp`` objects per row, ``Table.project`` per row, and the per-row
``Reshuffle`` whose whole input the local runner (FnApiRunner) keeps in memory before the write starts: 888 MB RSS
on 50 MB of input, 3.1 GB on 150 MB. Measured here (2 shared cores, CPU s): 58.9 CPU s and 1007 MiB on 50 MB.

After (rows leave the DoFn as Arrow record batches of 4,096 rows per table, ``WriteTableBatches`` gathers them
into 64 MiB row groups, no reshuffle on the local runner; same rows, schemas and row groups): 12.5 to 14.2 CPU s on
50 MB (4.7x less), of which 6.5 to 7.7 s is the fixed cost of any run (``import apache_beam`` alone is 3.7 s here);
the profile is now the loop itself (``iter_extracted``), ``RecordBatch.from_pylist`` (0.4 s per 136k rows) and
Beam's start-up. Peak RSS 396 MiB at 50 MB, 549 MiB at 150 MB, 548 MiB at 500 MB (a 1 GB file took too long to
generate and run on the shared machine). On that loaded machine loop/zcat read 0.38x and stage/zcat 0.11x whole
run, 0.24x less the fixed cost; the stage cannot beat the loop, so its goal rests on the loop's.

Second round (issue 17). Profile of the stage on the 150 MB file (py-spy -n at 50 Hz, native frames; shares of all
samples, 14% of them idle Beam threads): the run 70%, of which the stage's own code 61% (the loop, and
``RecordBatch.from_pylist`` 12%: Arrow's conversion of each Python value, which building the columns by hand did not
beat) and Beam 9% (coders 3%, Parquet writes 1.5%, bundles 5%); imports 9%; graph construction 3% (four
``WriteToParquetBatched`` expansions, each rebuilding Beam's option parser); the cyclic garbage collector 8%, most
of it walking Beam's ~200,000 module objects: at import, at each full collection during the run, at exit. So
``pipeline.cli`` now imports a command's modules with the collector off and ``gc.freeze()``s them: the fixed cost
7.6 -> 5.4 CPU s and the 50 MB stage 12.8 -> 11.3 s (min of 3, alternated in one run). After, this bench (50 MB,
3 rounds, loaded machine): loop/zcat 0.43x; stage 10.7 CPU s, 78.7 CPU s per million candidates, peak RSS 406 MiB, of
which 5.0 s is the fixed cost; stage/zcat 0.14x whole run, 0.26x less the fixed cost. Peak RSS: 558 MiB at 150 MB
(25.5 CPU s), 559 MiB at 511 MB (2,656 MB raw, 68.0 CPU s): +0%. A 1 GB file did not fit the time: generating it ran
at 17 to 42 MB a minute on the loaded machine, so it was stopped at 511 MB and cut at a record boundary. Left: the
fixed cost is Beam's (``import apache_beam``, 2.3 to 3 s, a third of it its GCS, BigQuery and Dataflow clients),
and stage/zcat 0.4x needs the loop itself near 0.5x and the fixed cost spread over a larger input.

Third round (issue 17: where the stage's per-row time goes outside the loop). Profile of the stage on the 150 MB
file (py-spy -n at 50 Hz; shares of all samples, ~16% of them idle Beam threads): the loop 50%;
``RecordBatch.from_pylist`` 13% (8% its own 13 ``row.get`` per row, 5% Arrow's conversion); the cyclic collector 5%,
run from inside the loop: every candidate was a GC-tracked dict, and 4,096 of them waiting per batch survived into
the older generations (in-process on 25 MB: 172 collections, 0.49 of 3.4 CPU s); the Parquet writes 4% (the sink
and settings ``WriteToParquet`` used: no codec, dictionary encoding and statistics on, so left alone); Beam sampling
element sizes 1.3% (it pickles a sampled record batch); imports 7%. Hashing (``candidate_id``, ``sample_key``) is
7% and URL resolution 4%, inside the loop. So candidates no longer become dicts in the stage: ``extract_columns``
appends each candidate's six own values to lists (``CandidateColumns``) and a page's seven shared values once per
page, and ``take_batch`` makes the record batch with ``pa.array`` per column (``iter_extracted`` is now a view of it
as dicts, for tests and tools: same rows, same order). After: ``take_batch`` 3.2%, the collector 1.5% (in-process
on 25 MB: 94 collections, 0.06 of 2.5 CPU s, so pausing it per batch was not worth its code); Beam and Parquet
outside the loop went from about 46% of the loop's own time to 27%. The Parquet files of the 150 MB run are
byte-identical before and after. Whole stage, one process, ``/usr/bin/time``, old (HEAD) and new alternated twice
on the loaded machine: 30.0 and 26.1 CPU s before, 22.6 and 22.4 after (-14 to -25%); zcat 4.63 and 4.62 s; stage/zcat
0.15-0.18x before, 0.21x after (0.27x less the 5 s fixed cost). This bench now times ``extract_columns`` with its
record batches as the loop (before, ``iter_extracted``'s dicts with no Arrow conversion: about the same time).
On the issue's 1 GB accounting ("95 CPU s outside the loop"): it set a loop/zcat read as the fastest of 5 rounds per
piece against a stage timed once; timed once under the same load as the stage, the loop reads 0.26-0.39x zcat (25 MB
piece: 1.96-2.95 s against 0.75-0.79 s), not 0.43x. The profile's split is the sounder figure: outside the loop,
per row, 46% of the loop's own time before this round, 27% after. The 1,022 MB file after, one process: 113.7 CPU s
(105.2 user + 8.5 sys; 41 CPU s per million candidates; was 147.8 in the run below), peak RSS 505 MiB; zcat of the
same file minutes later took 31.0 CPU s on the then busier machine (22 s in the run below): stage/zcat 0.27x.

1 GB (2 Dec 2026): the 511 MB file written twice into one 1,022 MB file (the same pages twice: generating 1 GB anew
runs at 17-42 MB a minute here; for memory, what matters is the stream length), ``python -m pipeline extract`` in one
process under ``/usr/bin/time -v`` on the loaded machine: 125,902 records, 2,774,218 candidates, 141.6 user + 6.2 sys
CPU s (53 CPU s per million candidates; 6.9 MB of gzip input per CPU second), peak RSS 550 MiB. Against 558 MiB at
150 MB and 559 MiB at 511 MB: the stage's memory does not grow with its input (goal: within 20%; -1.5%).

Fourth round (issue 17). Profile of the stage on the 150 MB file (py-spy -n at 50 Hz, shares of all samples): the
loop 50%, within it hashlib's ``sample_key``/``candidate_id`` 7%, fastwarc's inflate (zlib-rs) 7%, ``normalise_alt``
4% (mostly ``str.translate`` on non-ASCII alts), URL resolution 4%; ``take_batch`` 8%; Beam sampling element sizes 4%
(no coder for ``pa.RecordBatch``/``pa.Table``, so it pickled sampled batches and whole 64 MiB row groups); imports
18%; Parquet writes 2%; the collector 2%. Kept: (1) Arrow IPC coders for record batches and tables
(``pipeline.core.layout``), declared on the DoFn's outputs and on ``WriteTableBatches``' row groups: sampling 43
samples -> 2, peak RSS 573 -> 472 MiB. (2) ``_tagscan.sha256_hex``, SHA-256 in C (SHA-NI where the CPU has it,
portable rounds otherwise; the same digests), used by ``pipeline.core.keys``: 0.25 against 0.68 us a key. (3) A page's
seven shared columns made Arrow arrays once per page and run-end decoded in ``take_batch``. (4) ``normalise_alt``
translates invisible characters away only where a character-class search finds one (the per-character dict lookup
took 1.6-4.5 us a non-ASCII alt). Dropped: a faster gzip. fastwarc 2.0 already inflates with zlib-rs: on the 50 MB
file fastwarc alone (inflate, WARC and HTTP parsing, body copies) takes 0.37 CPU s, ISA-L (``isal`` 1.9.1,
``igzip.decompress``) 0.75-0.79 s for the inflate alone, zlib member by member 1.1-1.3 s, zcat ~1.2 s, and fastwarc
reading an ``igzip`` file object 0.38-0.42 s, while losing the gzip member offsets that are ``warc_record_offset``;
no dependency added. Also not kept: Python's private ``_sha256`` (0.2 us less an id), reading fastwarc's header maps
whole (``dict(items())`` costs more than the four ``get``). After (150 MB, 2 shared cores, load average 14-16): this
bench's loop (25 MB pieces, best of 3) 6.30 -> 5.70 s, loop/zcat 0.58x -> 0.65x (an earlier, quieter pair: 6.11 ->
5.28 s, 0.60x -> 0.69x); the whole stage, one process, ``/usr/bin/time``, HEAD and new alternated three times: 11.3,
10.7 and 9.9 CPU s before, 8.9, 8.7 and 9.5 after, zcat 3.69-3.71 s in the same rounds: stage/zcat 0.33-0.38x ->
0.39-0.42x (0.60x less the fixed cost, unchanged at 2.7-2.9 CPU s, two thirds of it Beam's imports). Candidates,
archived images, record errors and rejections of the 150 MB run are byte-identical Parquet before and after. Left:
the loop is now 43% compiled code (fastwarc 22%, the tag scan and attribute reader 17%) and the rest Python spread
thin (URL resolution 12%, ``_page_candidates`` 5%, per-page charset and header work); a stage/zcat well above 0.4x
needs that per-candidate Python in C, or a smaller fixed cost than Beam's.

1 GB after the fourth round (2 Dec 2026, load average about 2; ``/usr/bin/time``, one process): the 1,022 MB file
(125,902 records, 2,774,218 candidates, as in the 1 GB paragraph above) 49.3 user + 1.5 sys = 50.8 CPU s (was 113.7
and 147.8 in the runs above; 18 CPU s per million candidates), peak RSS 456 MiB; zcat of the same file just before
and after: 27.5 and 28.7 CPU s. Stage/zcat 0.54-0.56x at the size of one Common Crawl WARC (goal >= 0.4x: met). The
150 MB file minutes later: 12.9 CPU s, zcat 4.3 s, 0.33x whole run (the ~3 s fixed cost is a quarter of it), peak
RSS 462 MiB: the same as at 1 GB (goal: within 20%).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastwarc import ArchiveIterator, WarcRecordType  # noqa: E402

from pipeline.core.config import CorpusConfig, ExtractConfig  # noqa: E402
from pipeline.html.scan import scan_page, scan_page_reference  # noqa: E402
from pipeline.html.warc import HTML_TYPES, decode_content  # noqa: E402
from pipeline.stages.extract import BATCH_ROWS, CandidateColumns, extract_columns  # noqa: E402
from schemas import Candidate  # noqa: E402

SHARED_WARC = ROOT.parent / "shared" / "data" / "warc"
BENCH_DIR = ROOT / "build" / "bench"
_DROPPED_HTTP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


def real_pages() -> list[tuple[str, bytes, bytes]]:
    """``(url, http_header_block_without_length, body)`` of every real HTML 200 response in the shared WARCs."""
    pages = []
    for path in sorted(SHARED_WARC.glob("*.warc*")):
        if ".wat" in path.name or ".wet" in path.name:
            continue
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, record_types=WarcRecordType.response, quirks_mode=True):
                http = record.http_headers
                if not record.is_http or http.status_code != 200:
                    continue
                if (http.get("Content-Type") or "").split(";")[0].strip().lower() not in HTML_TYPES:
                    continue
                body = record.reader.read()
                if len(body) < record.content_length:
                    continue  # a clipped record: not a page to replicate
                body, problem, _ = decode_content(body, http.get("Content-Encoding"), 50_000_000)
                if problem is not None:
                    continue
                lines = [http.status_line or "HTTP/1.1 200 OK"]
                lines += [f"{k}: {v}" for k, v in http.items() if k.lower() not in _DROPPED_HTTP_HEADERS]
                pages.append((record.headers.get("WARC-Target-URI"), "\r\n".join(lines).encode("utf-8"), body))
    return pages


def generate(path: Path, target_bytes: int) -> dict[str, int]:
    """Write the benchmark WARC (per-record gzip members) until it reaches ``target_bytes``; returns its sizes."""
    pages = real_pages()
    if not pages:
        raise SystemExit(f"no HTML pages found under {SHARED_WARC}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = uncompressed = records = 0
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as out:
        while written < target_bytes:
            url, http_head, body = pages[records % len(pages)]
            parts = urlsplit(url)
            # A new host and path per copy: every replicated page is a distinct page of a distinct site.
            new_url = f"{parts.scheme}://copy{records}.{parts.hostname}{parts.path or '/'}"
            if parts.query:
                new_url += "?" + parts.query
            block = http_head + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            head = (
                "WARC/1.0\r\nWARC-Type: response\r\n"
                f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=records + 1)}>\r\n"
                f"WARC-Target-URI: {new_url}\r\nWARC-Date: 2024-05-18T01:58:10Z\r\n"
                "Content-Type: application/http; msgtype=response\r\n"
                f"Content-Length: {len(block)}\r\n\r\n"
            ).encode()
            record = head + block + b"\r\n\r\n"
            member = gzip.compress(record, compresslevel=6, mtime=0)
            out.write(member)
            written += len(member)
            uncompressed += len(record)
            records += 1
    temporary.replace(path)
    sizes = {"compressed_bytes": written, "uncompressed_bytes": uncompressed, "records": records}
    path.with_suffix(".json").write_text(json.dumps(sizes))
    return sizes


def split_pieces(path: Path, piece_bytes: int) -> list[Path]:
    """The WARC cut at record boundaries into files of about ``piece_bytes`` (concatenated, they are the file)."""
    folder = path.with_name(path.name.replace(".warc.gz", f"-pieces-{piece_bytes}"))
    stamp = folder / "source.json"
    source = {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
    if stamp.exists() and json.loads(stamp.read_text()) == source:
        return sorted(folder.glob("*.warc.gz"))
    with open(path, "rb") as stream:
        offsets = [record.stream_pos for record in ArchiveIterator(stream, parse_http=False)]
    cuts = [0]
    for offset in offsets:
        if offset - cuts[-1] >= piece_bytes:
            cuts.append(offset)
    cuts.append(source["size"])
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.warc.gz"):
        old.unlink()
    pieces = []
    with open(path, "rb") as stream:
        for number, (start, end) in enumerate(itertools.pairwise(cuts)):
            stream.seek(start)
            piece = folder / f"{number:03d}.warc.gz"
            piece.write_bytes(stream.read(end - start))
            pieces.append(piece)
    stamp.write_text(json.dumps(source))
    return pieces


def time_extract(path: Path, full_parse: bool = False) -> tuple[float, Counter]:
    """Seconds for the stage's per-record path over the whole file (as the DoFn runs it: candidates gathered in
    columns and taken out as record batches of ``BATCH_ROWS``), and its counters."""
    counts: Counter = Counter()
    config = CorpusConfig(extract=ExtractConfig(full_parse=full_parse))
    candidates, schema = CandidateColumns(), Candidate.schema()
    started = time.process_time()
    with open(path, "rb") as stream:
        for _, row in extract_columns(stream, str(path), config, candidates, counts):
            while row is None and len(candidates) >= BATCH_ROWS:
                candidates.take_batch(BATCH_ROWS, schema)
    while len(candidates):
        candidates.take_batch(BATCH_ROWS, schema)
    return time.process_time() - started, counts


def time_fastwarc_read(path: Path) -> float:
    """Seconds for fastwarc alone to decompress the file and hand over every record body (the reading floor)."""
    started = time.process_time()
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream, parse_http=True):
            record.reader.read()
    return time.process_time() - started


def time_zcat(path: Path) -> float:
    """CPU seconds of ``zcat file > /dev/null`` (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["zcat", str(path)], stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


#: Runs a command and prints, as JSON, its CPU seconds (user + system) and peak RSS (largest process, KiB) from
#: getrusage of the children: a fresh process per measurement, since RUSAGE_CHILDREN's maxrss only ever grows.
_MEASURE = (
    "import json, resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(json.dumps({'rc': done.returncode, 'cpu_s': usage.ru_utime + usage.ru_stime, 'user_s': usage.ru_utime,"
    " 'sys_s': usage.ru_stime, 'max_rss_kib': usage.ru_maxrss}))"
)


def time_stage(path: Path, output: Path, *beam_args: str) -> dict[str, float]:
    """The whole stage as a user runs it (``python -m pipeline extract``, one worker unless ``beam_args`` say
    otherwise): CPU seconds of it and its worker processes, and the peak RSS of the largest of them (MiB)."""
    if output.exists():
        shutil.rmtree(output)
    command = [sys.executable, "-m", "pipeline", "extract", "--input", str(path), "--output", str(output)]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command, *beam_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["rc"]:
        raise SystemExit(f"the extract stage failed on {path}:\n{done.stderr[-3000:]}")
    shutil.rmtree(output)
    return {**measured, "max_rss_mib": measured["max_rss_kib"] / 1024}


def bench_file(target_mb: float, regenerate: bool = False) -> tuple[Path, dict[str, int]]:
    """The benchmark WARC of about ``target_mb`` MB (generated when missing) and its sizes."""
    path = BENCH_DIR / f"extract-{target_mb:g}mb.warc.gz"
    sizes_path = path.with_suffix(".json")
    if regenerate or not path.exists() or not sizes_path.exists():
        started = time.process_time()
        sizes = generate(path, int(target_mb * 1e6))
        print(f"generated {path} in {time.process_time() - started:.1f} s", flush=True)
        return path, sizes
    return path, json.loads(sizes_path.read_text())


def time_warcio_bs4(path: Path, seconds: float) -> tuple[float, int, int, int]:
    """The common HTML path on the first records: ``(seconds, compressed_bytes, uncompressed_bytes, candidates)``."""
    from bs4 import BeautifulSoup
    from warcio.archiveiterator import ArchiveIterator as WarcioIterator

    candidates = uncompressed = 0
    started = time.process_time()
    with open(path, "rb") as stream:
        records = WarcioIterator(stream)
        for record in records:
            if record.rec_type != "response":
                continue
            body = record.content_stream().read()
            uncompressed += record.length
            content_type = (record.http_headers.get_header("Content-Type") or "").split(";")[0].strip().lower()
            if content_type not in HTML_TYPES:
                continue
            page_url = record.rec_headers.get_header("WARC-Target-URI")
            soup = BeautifulSoup(body, "html.parser")
            base = soup.find("base", href=True)
            base_url = urljoin(page_url, base["href"]) if base else page_url
            for img in soup.find_all("img"):
                alt = " ".join((img.get("alt") or "").split())
                src = img.get("data-src") or img.get("src")
                if alt and src:
                    urljoin(base_url, src.strip()).split("#", 1)[0]
                    candidates += 1
            if time.process_time() - started > seconds:
                records.read_to_end(record)
                break
        compressed = stream.tell()
    return time.process_time() - started, compressed, uncompressed, candidates


def main(argv: list[str] | None = None) -> int:
    """Generate (if needed) and time the three readers; print MB/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-mb", type=float, default=200.0, help="size of the generated WARC (gzip MB)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="time budget of warcio+bs4")
    parser.add_argument("--regenerate", action="store_true", help="write the WARC again even if it exists")
    parser.add_argument("--repeat", type=int, default=5, help="rounds over the pieces (fastest per piece kept)")
    parser.add_argument("--piece-mb", type=float, default=10.0, help="size of the pieces timed one after the other")
    parser.add_argument(
        "--memory-mb",
        default="150,1000",
        help="sizes (gzip MB, comma-separated) of the WARCs the whole stage runs on to compare its peak RSS; '' skips",
    )
    parser.add_argument("--no-stage", action="store_true", help="time the per-record loop only, not the stage")
    args = parser.parse_args(argv)

    path, sizes = bench_file(args.target_mb, args.regenerate)
    compressed_mb, uncompressed_mb = sizes["compressed_bytes"] / 1e6, sizes["uncompressed_bytes"] / 1e6
    scanner = "compiled (pipeline.html._tagscan)" if scan_page is not scan_page_reference else "pure-Python fallback"
    print(f"tag scanner: {scanner}")
    print(f"input: {compressed_mb:.1f} MB gzip, {uncompressed_mb:.1f} MB uncompressed, {sizes['records']} records")

    # Noise: CPU time on a shared machine drifts by tens of percent with the neighbours' load (cache, memory
    # bandwidth), within a run as well as between runs. So the file is cut at record boundaries into pieces of
    # about --piece-mb, each piece is timed with zcat, extract and fastwarc one after the other, for --repeat
    # rounds, and each reader's fastest time per piece is kept (as timeit keeps the fastest run); a reader's time
    # is the sum over the pieces. Anchor and subject are thus measured on the same bytes, minutes apart at most.
    pieces = split_pieces(path, int(args.piece_mb * 1e6))
    best: dict[str, list[float]] = {name: [float("inf")] * len(pieces) for name in ("zcat", "extract", "fastwarc")}
    counts: Counter = Counter()
    for round_number in range(1, args.repeat + 1):
        spent = dict.fromkeys(best, 0.0)
        for index, piece in enumerate(pieces):
            piece_times = {"zcat": time_zcat(piece)}
            piece_times["extract"], piece_counts = time_extract(piece)
            piece_times["fastwarc"] = time_fastwarc_read(piece)
            if round_number == 1:
                counts.update(piece_counts)
            for name, seconds in piece_times.items():
                spent[name] += seconds
                best[name][index] = min(best[name][index], seconds)
        print(
            f"round {round_number}: zcat {spent['zcat']:.2f} s, extract {spent['extract']:.2f} s, fastwarc"
            f" {spent['fastwarc']:.2f} s (extract/zcat {spent['zcat'] / spent['extract']:.2f}x)",
            flush=True,
        )
    zcat_s, extract_s, fastwarc_s = (sum(best[name]) for name in ("zcat", "extract", "fastwarc"))
    print(
        f"fastest of {args.repeat} per piece ({len(pieces)} pieces), summed: zcat {zcat_s:.2f} s, extract {extract_s:.2f} s"
    )
    full_parse_s, full_counts = time_extract(path, full_parse=True)
    if full_counts["candidates"] != counts["candidates"]:
        print(
            f"WARNING: --full-parse found {full_counts['candidates']} candidates, the tag scan {counts['candidates']}"
        )
    bs4_s, bs4_compressed, bs4_uncompressed, _ = time_warcio_bs4(path, args.baseline_seconds)

    rates = {
        "extract": (compressed_mb / extract_s, uncompressed_mb / extract_s),
        "extract --full-parse": (compressed_mb / full_parse_s, uncompressed_mb / full_parse_s),
        "zcat": (compressed_mb / zcat_s, uncompressed_mb / zcat_s),
        "fastwarc": (compressed_mb / fastwarc_s, uncompressed_mb / fastwarc_s),
        "warcio+bs4": (bs4_compressed / 1e6 / bs4_s, bs4_uncompressed / 1e6 / bs4_s),
    }
    print(f"extract counters: {dict(sorted(counts.items()))}")
    print(
        f"density: {counts['img_tags'] / uncompressed_mb:.0f} <img> and {counts['candidates'] / uncompressed_mb:.0f}"
        " candidates per uncompressed MB (the real pages replicated; per-<img> Python work dominates extract)"
    )
    print(f"{'reader':<22} {'gzip MB/s':>10} {'raw MB/s':>10}")
    for name, (gz_rate, raw_rate) in rates.items():
        print(f"{name:<22} {gz_rate:>10.1f} {raw_rate:>10.1f}")
    vs_zcat = rates["extract"][1] / rates["zcat"][1]
    vs_bs4 = rates["extract"][1] / rates["warcio+bs4"][1]
    print(f"loop / zcat          = {vs_zcat:.2f}x  (extract_columns; goal >= 0.5x)")
    if not args.no_stage:
        stage_summary(path, counts, zcat_s)
    print(f"extract / warcio+bs4 = {vs_bs4:.1f}x  (goal >= 10x; bs4 timed on {bs4_uncompressed / 1e6:.1f} MB)")
    sizes_mb = [float(part) for part in args.memory_mb.split(",") if part.strip()]
    if sizes_mb and not args.no_stage:
        memory_summary(sizes_mb)
    return 0


def stage_summary(path: Path, counts: Counter, zcat_s: float) -> None:
    """The whole stage (what users run) against zcat, CPU seconds of every process it starts; the fixed cost of a
    run (Beam's start, the graph, the job's own bookkeeping) measured on a one-record WARC and shown apart."""
    output = BENCH_DIR / "stage-output"
    stage = time_stage(path, output)
    fixed = time_stage(SHARED_WARC / "jwarc-cc.warc.gz", output)
    multi = time_stage(path, output, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    per_million = stage["cpu_s"] / counts["candidates"] * 1e6 if counts["candidates"] else float("nan")
    print(
        f"stage (python -m pipeline extract, one worker): {stage['cpu_s']:.2f} CPU s ({stage['user_s']:.2f} user +"
        f" {stage['sys_s']:.2f} sys), peak RSS {stage['max_rss_mib']:.0f} MiB; {per_million:.1f} CPU s per million"
        f" candidates; of which {fixed['cpu_s']:.2f} s is a run's fixed cost (a one-record WARC)"
    )
    print(
        f"stage, 2 workers (multi_processing): {multi['cpu_s']:.2f} CPU s in all, largest process"
        f" {multi['max_rss_mib']:.0f} MiB"
    )
    print(f"stage / zcat         = {zcat_s / stage['cpu_s']:.2f}x  (CPU s per core, whole run; goal >= 0.4x)")
    print(
        f"stage / zcat         = {zcat_s / max(stage['cpu_s'] - fixed['cpu_s'], 1e-9):.2f}x  (less the fixed cost:"
        " what each further MB costs)"
    )


def memory_summary(sizes_mb: list[float]) -> None:
    """Peak RSS of the whole stage on WARCs of each size: a stage's memory must not grow with its input (goal: the
    largest within 20% of the smallest)."""
    output = BENCH_DIR / "stage-output"
    peaks = []
    for size_mb in sizes_mb:
        path, sizes = bench_file(size_mb)
        measured = time_stage(path, output)
        peaks.append(measured["max_rss_mib"])
        print(
            f"memory: {sizes['compressed_bytes'] / 1e6:.0f} MB gzip ({sizes['uncompressed_bytes'] / 1e6:.0f} MB raw):"
            f" peak RSS {measured['max_rss_mib']:.0f} MiB, {measured['cpu_s']:.1f} CPU s",
            flush=True,
        )
    growth = max(peaks) / min(peaks) - 1
    print(f"peak RSS growth, smallest to largest input: {growth:+.0%}  (goal within 20%)")


if __name__ == "__main__":
    raise SystemExit(main())
