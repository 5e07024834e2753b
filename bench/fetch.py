"""Benchmark: the fetch stage against img2dataset's downloader on the same URLs, cores, output size and format.

Thousands of distinct URLs of real photos (variants of scikit-image / scikit-learn sample photos, a few hundred KB
each, shorter side 600-1400 px) are served by a loopback server spread over 16 host names (127.0.0.1-16, so the
stage's per-host politeness limit applies as on a real crawl). Both downloaders store 512 px ``keep_ratio`` JPEGs at
quality 95 without upscaling, in Parquet, with the same number of processes and threads:

- this stage: ``python -m pipeline fetch --fetch-mode http-only`` on the DirectRunner (multi_processing);
- img2dataset 1.x in its own virtualenv under build/bench (created here on first use: it pins other versions of
  albumentations/pyarrow than the project).

Prints images/s of each (wall clock of the whole command, start-up included) and the ratio; the goal is >= 1.0x.
Measured on the 2-core development machine shared with other jobs, 3000 URLs, 2 processes x 32 threads, three runs
(img2dataset vs this stage, images/s): 16.2 vs 30.1 (1.86x, load average ~15), 34.8 vs 38.0 (1.09x, this stage
first, load ~10), 50.7 vs 63.5 (1.25x, load ~2). The spread is the other jobs' load; about 10-20 s of this stage's
wall time is the DirectRunner starting its worker processes. Same stored size for every URL in every run.
Usage: ``python bench/fetch.py [--urls 3000] [--workers 2] [--threads 32]``.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench" / "fetch"
VENV = ROOT / "build" / "bench" / "img2dataset-venv"
HOSTS = 16
IMAGE_SIZE = 512
QUALITY = 95


# -- the photos --------------------------------------------------------------------------------------------------
def base_photos() -> list:
    """Real photos that ship inside scikit-image and scikit-learn (no download)."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"]
    photos = [getattr(data, name)() for name in names]
    photos += [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    return photos


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct JPEG variants (size, crop, mirror) of the base photos; cached across runs."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= count:
        return existing[:count]
    from PIL import Image, ImageOps

    photos = [Image.fromarray(array).convert("RGB") for array in base_photos()]
    paths = []
    for index in range(count):
        photo = photos[index % len(photos)]
        shorter = 600 + (index * 37) % 800
        scale = shorter / min(photo.size)
        image = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
        margin = (index * 13) % 40
        image = image.crop((margin, margin // 2, image.width - margin // 2, image.height - margin))
        if index % 2:
            image = ImageOps.mirror(image)
        path = folder / f"{index:05d}.jpg"
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


# -- the server ---------------------------------------------------------------------------------------------------
def serve(folder: Path, port: int, hosts: int) -> None:
    """Serve every JPEG of ``folder`` at ``/v<n>/<name>`` on 127.0.0.1..hosts:port until killed (own process)."""
    images = {path.name: path.read_bytes() for path in folder.glob("*.jpg")}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = images.get(self.path.rsplit("/", 1)[-1])
            if body is None:  # robots.txt and anything else: 404, i.e. no rules
                body = b"not found"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # clients closing pooled keep-alive connections at exit: not news

    servers = []
    for host in range(1, hosts + 1):
        server = QuietServer((f"127.0.0.{host}", port), Handler)
        server.daemon_threads = True
        server.request_queue_size = 1024
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    print("ready", flush=True)
    threading.Event().wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the two downloaders ------------------------------------------------------------------------------------------
def ensure_img2dataset() -> Path:
    """img2dataset in its own virtualenv (it pins albumentations and pyarrow versions the project does not)."""
    binary = VENV / "bin" / "img2dataset"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return binary


def run_ours(urls: list[str], workers: int, threads: int) -> tuple[float, int, dict[str, tuple[int, int]]]:
    """This stage on the URLs: (seconds, images ok, url -> stored size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    from pipeline.core.keys import sample_key
    from schemas import FetchedImage, TextKept

    corpus = WORK / "ours"
    shutil.rmtree(corpus, ignore_errors=True)
    (corpus / TextKept.FOLDER).mkdir(parents=True)
    rows = [
        TextKept.row(
            candidate_id=f"{index:024x}",
            key=sample_key(url, "a photo"),
            image_url=url,
            alt_text="a photo",
            page_url="http://127.0.0.1/page.html",
        )
        for index, url in enumerate(urls)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=TextKept.schema()), corpus / TextKept.FOLDER / "part-0.parquet")
    command = [
        sys.executable, "-m", "pipeline", "fetch", "--output", str(corpus), "--fetch-mode=http-only",
        "--allow-private-addresses=true", f"--concurrency={threads}", "--per-host-concurrency=4",
        f"--image-size={IMAGE_SIZE}", "--resize-mode=keep_ratio", f"--jpeg-quality={QUALITY}",
    ]  # fmt: skip
    if workers > 1:
        command += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    started = time.monotonic()
    log = WORK / "ours.log"
    with log.open("w") as handle:
        subprocess.run(command, check=True, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    table = pq.read_table(
        corpus / FetchedImage.FOLDER,
        columns=[FetchedImage.IMAGE_URL, FetchedImage.STATUS, FetchedImage.WIDTH, FetchedImage.HEIGHT],
    ).to_pylist()
    sizes = {row["image_url"]: (row["width"], row["height"]) for row in table if row["status"] == "ok"}
    return seconds, len(sizes), sizes


def run_img2dataset(urls: list[str], workers: int, threads: int) -> tuple[float, int, dict[str, tuple[int, int]]]:
    """img2dataset's downloader on the same URLs, same output size and format: (seconds, images ok, sizes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    binary = ensure_img2dataset()
    folder = WORK / "img2dataset"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url_list = folder / "urls.parquet"
    pq.write_table(pa.table({"url": urls}), url_list)
    output = folder / "out"
    command = [
        str(binary), "--url_list", str(url_list), "--input_format", "parquet", "--url_col", "url",
        "--output_format", "parquet", "--output_folder", str(output), "--processes_count", str(workers),
        "--thread_count", str(threads), "--image_size", str(IMAGE_SIZE), "--resize_mode", "keep_ratio",
        "--resize_only_if_bigger", "True", "--encode_format", "jpg", "--encode_quality", str(QUALITY),
        "--timeout", "10", "--retries", "0", "--number_sample_per_shard", "1000", "--enable_wandb", "False",
        "--distributor", "multiprocessing",
    ]  # fmt: skip
    environment = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    started = time.monotonic()
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    successes = sum(json.loads(Path(path).read_text())["successes"] for path in glob.glob(str(output / "*_stats.json")))
    sizes = {}
    for path in glob.glob(str(output / "*.parquet")):
        for row in pq.read_table(path, columns=["url", "width", "height", "status"]).to_pylist():
            if row["status"] == "success":
                sizes[row["url"]] = (row["width"], row["height"])
    return seconds, successes, sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=3000, help="distinct image URLs to fetch")
    parser.add_argument("--images", type=int, default=300, help="distinct image files behind them")
    parser.add_argument("--workers", type=int, default=2, help="processes for both downloaders")
    parser.add_argument("--threads", type=int, default=32, help="concurrent requests per process, both")
    parser.add_argument("--only", choices=["ours", "img2dataset"], default=None)
    parser.add_argument("--ours-first", action="store_true", help="run this stage before img2dataset")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve), args.port, HOSTS)
        return 0

    started = time.monotonic()
    files = make_images(WORK / "images", args.images)
    total_bytes = sum(path.stat().st_size for path in files)
    print(
        f"{len(files)} photos, {total_bytes / len(files) / 1e3:.0f} KB on average ({time.monotonic() - started:.0f} s)"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(WORK / "images"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        urls = [f"http://127.0.0.{1 + i % HOSTS}:{port}/v{i}/{files[i % len(files)].name}" for i in range(args.urls)]
        runs = {"img2dataset": run_img2dataset, "altcorpus fetch": run_ours}
        order = ["altcorpus fetch", "img2dataset"] if args.ours_first else ["img2dataset", "altcorpus fetch"]
        wanted = {None: order, "ours": ["altcorpus fetch"], "img2dataset": ["img2dataset"]}[args.only]
        results = {name: runs[name](urls, args.workers, args.threads) for name in order if name in wanted}
    finally:
        server.terminate()
        server.wait()

    print(f"{args.urls} URLs over {HOSTS} loopback hosts, {args.workers} processes x {args.threads} threads, "
          f"{IMAGE_SIZE} px keep_ratio JPEG q{QUALITY}, on {os.cpu_count()} CPUs")  # fmt: skip
    for name, (seconds, ok, _) in results.items():
        print(f"  {name:<16} {ok:>6} images in {seconds:6.1f} s = {ok / seconds:7.1f} images/s")
    if len(results) == 2:
        (ours_s, ours_ok, ours_sizes), (theirs_s, theirs_ok, theirs_sizes) = (
            results["altcorpus fetch"],
            results["img2dataset"],
        )
        common = set(ours_sizes) & set(theirs_sizes)
        same = sum(ours_sizes[url] == theirs_sizes[url] for url in common)
        print(f"  same stored size for {same}/{len(common)} URLs both fetched")
        print(f"  ratio altcorpus / img2dataset: {(ours_ok / ours_s) / (theirs_ok / theirs_s):.2f}x (goal >= 1.0x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
