"""Benchmark: samples/s reading altcorpus shards with webdataset versus the plain ``tarfile`` module, same tars, same run.

A corpus of ``--samples`` samples (real skimage/scikit-learn photos as ~512 px JPEG, distinct alt texts) is written
into ``build/bench/shards/`` with ``pipeline.corpus.shard_files.write_corpus`` (the write-shards layout), unless
``--corpus DIR`` names an existing one. Two readers then go through every tar, one process each, best of ``--repeats``:

* ``tarfile``: ``tarfile.open(mode="r|")`` streaming each tar, grouping members by key into samples: the floor.
* ``webdataset``: ``wds.WebDataset(urls, shardshuffle=False)``, the reader open_clip_train builds on.

Both run twice: ``raw`` (bytes only: the reader's own overhead) and ``decoded`` (each JPEG decoded with Pillow and the
JSON parsed, as training does). It prints samples/s and MB/s of each and the ratio webdataset / tarfile (target:
within 10%, i.e. ratio >= 0.90). ``python bench/shards.py --samples 2000`` for a quick run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from pipeline.corpus.shard_files import write_corpus  # noqa: E402
from schemas import SampleImage  # noqa: E402


def photos() -> list[bytes]:
    """Real photos that ship inside pip packages, as JPEG at most 512 px (what fetch stores by default)."""
    import numpy as np
    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays = [getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")]
    arrays += list(load_sample_images().images)
    encoded = []
    for array in arrays:
        image = Image.fromarray(np.asarray(array)).convert("RGB")
        image.thumbnail((512, 512))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        encoded.append(buffer.getvalue())
    return encoded


def build_corpus(directory: Path, samples: int, per_shard: int) -> list[str]:
    """Write ``samples`` samples with ``write_corpus``; returns the tar paths."""
    images = photos()
    rows = []
    for index in range(samples):
        url = f"https://bench.example/{index}.jpg"
        alt_text = f"benchmark photo number {index} of a varied scene"
        rows.append(
            SampleImage.row(
                candidate_id=hashlib.sha256(f"c{index}".encode()).hexdigest()[:24],
                key=hashlib.sha256(f"{url}\n{alt_text}".encode()).hexdigest()[:24],
                image_url=url,
                alt_text=alt_text,
                page_url="https://bench.example/",
                language="en",
                image=images[index % len(images)],
            )
        )
    sizes = write_corpus(rows, str(directory), samples_per_shard=per_shard)
    return [str(directory / "shards" / name) for name in sizes]


def read_with_tarfile(urls: list[str], decode: bool) -> tuple[int, int]:
    """Samples and bytes read by streaming each tar with ``tarfile`` and grouping members by key."""
    samples = total_bytes = 0
    for url in urls:
        with tarfile.open(url, mode="r|") as archive:
            current_key, sample = None, {}
            for member in archive:
                key, _, extension = member.name.partition(".")
                if key != current_key:
                    if sample:
                        samples += 1
                        consume(sample, decode)
                    current_key, sample = key, {}
                data = archive.extractfile(member).read()
                total_bytes += len(data)
                sample[extension] = data
            if sample:
                samples += 1
                consume(sample, decode)
    return samples, total_bytes


def read_with_webdataset(urls: list[str], decode: bool) -> tuple[int, int]:
    """Samples and bytes read by ``webdataset.WebDataset`` (no shuffling, no decoder: the same work as above)."""
    import webdataset as wds  # imported in main() first, so its (torch) import time is not measured here

    samples = total_bytes = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        samples += 1
        total_bytes += sum(len(value) for name, value in sample.items() if not name.startswith("__"))
        consume(sample, decode)
    return samples, total_bytes


def consume(sample: dict, decode: bool) -> None:
    """Decode the image and parse the metadata (``decoded`` runs), or nothing (``raw`` runs)."""
    if decode:
        with Image.open(io.BytesIO(sample["jpg"])) as image:
            image.convert("RGB").load()
        json.loads(sample["json"])
        sample["txt"].decode("utf-8")


def best_rate(reader: Callable[[list[str], bool], tuple[int, int]], urls: list[str], decode: bool, repeats: int):
    """(samples/s, MB/s, samples) of the best of ``repeats`` runs."""
    best = None
    for _ in range(repeats):
        started = time.perf_counter()
        samples, total_bytes = reader(urls, decode)
        seconds = time.perf_counter() - started
        if best is None or seconds < best[0]:
            best = (seconds, samples, total_bytes)
    seconds, samples, total_bytes = best
    return samples / seconds, total_bytes / seconds / 1e6, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--samples-per-shard", type=int, default=1_000)
    parser.add_argument("--corpus", default=None, help="read this corpus's shards instead of building one")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import webdataset  # noqa: F401  (pulls in torch: seconds, which must not count as reading time)

    if args.corpus:
        sizes = json.loads((Path(args.corpus) / "shards" / "sizes.json").read_text())
        urls = [str(Path(args.corpus) / "shards" / name) for name in sizes]
    else:
        directory = ROOT / "build" / "bench" / "shards"
        print(f"writing {args.samples} samples into {directory} ...", flush=True)
        started = time.perf_counter()
        urls = build_corpus(directory, args.samples, args.samples_per_shard)
        print(f"  written in {time.perf_counter() - started:.1f} s ({len(urls)} tars)")
    for mode in ("raw", "decoded"):
        decode = mode == "decoded"
        floor = best_rate(read_with_tarfile, urls, decode, args.repeats)
        ours = best_rate(read_with_webdataset, urls, decode, args.repeats)
        assert floor[2] == ours[2], f"readers disagree on the sample count: {floor[2]} vs {ours[2]}"
        print(f"{mode:8} tarfile    {floor[0]:10.0f} samples/s {floor[1]:8.1f} MB/s  ({floor[2]} samples)")
        print(f"{mode:8} webdataset {ours[0]:10.0f} samples/s {ours[1]:8.1f} MB/s")
        ratio = ours[0] / floor[0]
        verdict = "within 10%" if ratio >= 0.9 else "MORE than 10% slower"
        print(f"{mode:8} ratio webdataset / tarfile = {ratio:.2f} ({verdict})")


if __name__ == "__main__":
    main()
