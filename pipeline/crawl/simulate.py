"""A Common-Crawl-shaped mirror on loopback: generated from real pages and real photos, served from many host names.

``generate`` writes, under one folder::

    crawl-data/<id>/warc.paths.gz, wat.paths.gz
    crawl-data/<id>/segments/<segment>/warc/CC-MAIN-<ts>-<ts>-NNNNN.warc.gz      (one gzip member per record)
    crawl-data/<id>/segments/<segment>/wat/CC-MAIN-<ts>-<ts>-NNNNN.warc.wat.gz   (the same pages' WAT records)
    images/NNNNN.jpg                                                               (the distinct image bodies)
    simulation.json                                                                (hosts, port, what was planted)

The pages are real ones (the HTML pages of ``../shared/data/warc``, their own ``<img>`` and ``<base>`` tags removed;
a plain generated page where that folder is absent) into which generated ``<img>`` tags are inserted: alt texts from
the sample's pools (written for the photos they describe, in six languages) and boilerplate ones ("logo", "Share on
Facebook", "thumbnail"); images that are crops of real photos (``skimage.data``, scikit-learn's samples and
``../shared/data/images``), some of them tiny, extreme in aspect, undecodable, exact duplicates under other URLs,
or near-duplicates (resized and re-compressed). Page hosts and image hosts are Zipf-distributed (a few hosts carry
most URLs), and so is the popularity of each image. The URL attribute varies as on the web: ``src`` (absolute, or
relative under a ``<base href>``), ``srcset`` only, ``data-src`` behind a ``data:`` placeholder; the WAT records
list only ``IMG@/src`` links (as Common Crawl's do), so comparing the two sources shows what WAT gives up.

``SimulatedCrawl`` serves it: the mirror (``crawl-data/...``, HTTP Range supported) from 127.0.0.1, and the images
from one server per address 127.0.0.2..127.0.0.N, all on one port, under ``*.sim.test`` names that
``pipeline.net.resolver`` resolves in this process (and, through ``ALTCORPUS_TEST_HOSTS``, in Beam's workers).
Latency and misbehaviour are configurable (``Fault``: 503 / SlowDown a number of times, a connection dropped
mid-body); the servers count requests, concurrent connections and request times per host. Only loopback; every
loop is bounded; the servers stop when the ``with`` block ends.

CLI: ``python -m pipeline.crawl.simulate --out DIR --size 100MB [--serve]`` (``--help`` for the rest).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import gzip
import hashlib
import html
import json
import logging
import random
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image

log = logging.getLogger("altcorpus")

DEFAULT_CRAWL = "CC-MAIN-2099-01"
SIM_SUFFIX = ".sim.test"
MIRROR_ADDRESS = "127.0.0.1"
#: Every served response sleeps at most this long, whatever latency is asked for.
MAX_LATENCY_S = 5.0
#: The project's neighbour folder of real crawl data (absent on a machine without it: plain pages are generated).
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

#: Alt texts repeated across sites and images: what the text rules' frequency limits exist for.
BOILERPLATE_ALTS = (
    "logo",
    "Share on Facebook",
    "Share on Twitter",
    "thumbnail",
    "image",
    "click here",
    "Read more",
    "photo",
    "spacer",
    "Print this page",
)
#: Descriptions of the shared UKBench photos (everyday objects photographed on a table).
OBJECT_ALTS = (
    "An everyday object photographed on a wooden table",
    "Close-up photo of a small household item",
    "Product photo of an object from several angles",
    "A CD case and a book photographed on a desk",
    "Photo of a toy on a plain background",
)
_IMG_OR_BASE = re.compile(rb"<(?:img|base|source)\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(rb"<a\b[^>]*?\bhref=[\"']([^\"'>]{1,300})", re.IGNORECASE)
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


def parse_size(text: str) -> int:
    """``"100MB"`` -> 100_000_000 (k/M/G, decimal; a bare number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a size like 100MB")
    return int(float(match.group(1)) * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()])


@dataclass(frozen=True)
class SimSpec:
    """What to generate. ``size_bytes`` (WARC bytes in all) wins over ``pages`` when given."""

    crawl_id: str = DEFAULT_CRAWL
    pages: int = 60
    size_bytes: int | None = None
    files: int = 3
    segments: int = 2
    page_hosts: int = 30
    image_hosts: int = 20
    #: Loopback addresses the host names are spread over: 127.0.0.2 .. 127.0.0.(addresses + 1).
    addresses: int = 24
    #: Distinct image bodies (None: about one per page, at most 2,000).
    images: int | None = None
    images_per_page: tuple[int, int] = (2, 8)
    zipf_s: float = 1.1
    port: int = 18080
    seed: int = 0
    gzip_level: int = 6
    shared_data: str | None = None
    #: The share of descriptive alt texts made distinct by three words of page text appended (0: the pools' texts
    #: only). The pools hold a few hundred texts, so past a few MB every one is on more than 10 images and
    #: filter-text's max_images_per_alt drops them all; a crawl of 100 MB or more needs this to keep candidates.
    alt_variety: float = 0.0

    def image_count(self, pages: int) -> int:
        """The number of distinct image bodies for ``pages`` pages."""
        return self.images if self.images is not None else max(20, min(2000, pages))


def host_addresses(spec: SimSpec) -> dict[str, str]:
    """Every simulated host name -> its loopback address (names spread round-robin over the addresses)."""
    names = [f"img-{index}{SIM_SUFFIX}" for index in range(1, spec.image_hosts + 1)]
    names += [f"site-{index}{SIM_SUFFIX}" for index in range(1, spec.page_hosts + 1)]
    return {name: f"127.0.0.{2 + position % spec.addresses}" for position, name in enumerate(names)}


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s (bisect over the cumulative sum)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.rng = rng
        total, self.cumulative = 0.0, []
        for rank in range(n):
            total += 1.0 / (rank + 1) ** s
            self.cumulative.append(total)

    def draw(self) -> int:
        return min(
            bisect.bisect_left(self.cumulative, self.rng.random() * self.cumulative[-1]), len(self.cumulative) - 1
        )


# -- sources: real pages, real photos, alt pools --------------------------------------------------------------------


def real_pages(shared_data: Path | None) -> list[bytes]:
    """The UTF-8 HTML pages of ``shared_data/warc`` with their ``<img>``, ``<source>`` and ``<base>`` tags removed."""
    if shared_data is None or not (shared_data / "warc").is_dir():
        return []
    from pipeline.html.warc import HtmlResponse, iter_warc_items

    pages = []
    for path in sorted((shared_data / "warc").iterdir()):
        if (
            ".wat" in path.name
            or ".wet" in path.name
            or not path.name.startswith(("whirl", "books", "jwarc", "iana", "cc-", "warcfile"))
        ):
            continue
        for item in iter_warc_items(str(path), path.name, 2_000_000, 1):
            if type(item) is HtmlResponse and len(item.body) > 2000:
                try:
                    item.body.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                pages.append(_IMG_OR_BASE.sub(b"", item.body))
    return pages


def plain_page(rng: random.Random, words: Sequence[str]) -> bytes:
    """A generated page (when no real page is at hand): a title and a few paragraphs."""
    paragraphs = "".join(
        f"<p>{' '.join(rng.choice(words) for _ in range(rng.randint(30, 90)))}.</p>\n" for _ in range(rng.randint(3, 9))
    )
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Notes</title></head><body>{paragraphs}</body></html>".encode()


@dataclass
class Body:
    """One distinct image body: its photo, the alt pool that describes it, and what was planted in it."""

    index: int
    photo: str
    alts: list[str]
    kind: str  # ordinary, small, extreme_aspect, near_duplicate, corrupt


def _photo_sources(shared_data: Path | None) -> dict[str, tuple[Any, list[str]]]:
    """Photo name -> (loader, alt texts describing it): the sample's packaged photos and the shared UKBench photos."""
    from pipeline.sample.photos import load_photo
    from pipeline.sample.pools import ORDINARY_PHOTOS, SUBJECTS

    sources: dict[str, tuple[Any, list[str]]] = {}
    for photo, pool in ORDINARY_PHOTOS.items():
        alts = [alt for texts in SUBJECTS[pool].values() for alt in texts]
        sources[photo] = ((lambda photo=photo: load_photo(photo)), alts)
    folder = shared_data / "images" / "near-duplicates" / "base_images" if shared_data else None
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.jpg")):

            def load(path: Path = path) -> Image.Image:
                with Image.open(path) as image:
                    return image.convert("RGB")

            sources[path.stem] = (load, list(OBJECT_ALTS))
    return sources


def make_bodies(spec: SimSpec, count: int, out: Path, rng: random.Random) -> list[Body]:
    """Encode ``count`` image bodies into ``out/images/``: crops of real photos, with planted trouble."""
    from pipeline.sample.photos import crop_resize, encode_image

    shared = Path(spec.shared_data) if spec.shared_data else None
    sources = _photo_sources(shared)
    names = sorted(sources)
    loaded: dict[str, Image.Image] = {}
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    bodies: list[Body] = []
    previous: Image.Image | None = None
    for index in range(count):
        roll = rng.random()
        if previous is not None and roll < 0.08:
            kind = "near_duplicate"  # the previous body, slightly smaller and re-compressed: same pHash, other bytes
            photo, alts = bodies[-1].photo, bodies[-1].alts
            image = previous.resize((max(1, previous.width * 92 // 100), max(1, previous.height * 92 // 100)))
            data = encode_image(image, quality=70)
        else:
            photo = rng.choice(names)
            if photo not in loaded:
                loaded[photo] = sources[photo][0]()
            alts = sources[photo][1]
            if roll < 0.16:
                kind, size = "small", (rng.randint(48, 160), rng.randint(48, 160))
            elif roll < 0.20:
                kind, size = "extreme_aspect", (rng.randint(600, 800), rng.randint(120, 180))
            else:
                kind = "ordinary"
                width = rng.randint(240, 480)
                size = (width, int(width * rng.uniform(0.65, 1.5)))
            image = crop_resize(loaded[photo], size[0], size[1], rng, zoom=rng.uniform(0.6, 1.0))
            if image.mode != "RGB":
                image = image.convert("RGB")
            data = encode_image(image, quality=85)
            if roll > 0.98:
                kind, data = "corrupt", data[: len(data) // 3]  # a cut JPEG: fetch's decode_error
            previous = image
        (folder / f"{index:05d}.jpg").write_bytes(data)
        bodies.append(Body(index, photo, alts, kind))
    return bodies


# -- WARC / WAT records -----------------------------------------------------------------------------------------------


def gzip_member(data: bytes, level: int = 6) -> bytes:
    """One gzip member (Common Crawl's layout: each record its own member, so an offset starts a readable record)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def warc_record(headers: Sequence[tuple[str, str]], payload: bytes) -> bytes:
    """A WARC/1.1 record: the headers given, Content-Length, the payload and the two CRLFs after it."""
    head = "WARC/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload + b"\r\n\r\n"


@dataclass
class PlannedImg:
    """One generated ``<img>``: the URL it resolves to, its alt (None: no alt), the attribute carrying the URL."""

    url: str
    alt: str | None
    attribute: str
    markup: str
    body: int


@dataclass
class Plan:
    """What was generated: counts for tests and benches (written to ``simulation.json``)."""

    crawl_id: str
    port: int
    hosts: dict[str, str]
    warc_files: list[str] = field(default_factory=list)
    wat_files: list[str] = field(default_factory=list)
    pages: int = 0
    warc_bytes: int = 0
    wat_bytes: int = 0
    images: int = 0
    image_kinds: dict[str, int] = field(default_factory=dict)
    img_tags: int = 0
    attributes: dict[str, int] = field(default_factory=dict)
    image_urls: int = 0
    boilerplate_alts: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class Generator:
    """Writes the mirror (see the module docstring); deterministic for a given ``SimSpec``."""

    def __init__(self, spec: SimSpec, out: Path) -> None:
        self.spec = spec
        self.out = out
        self.rng = random.Random(spec.seed)
        self.hosts = host_addresses(spec)
        self.image_hosts = Zipf(spec.image_hosts, spec.zipf_s, self.rng)
        self.page_hosts = Zipf(spec.page_hosts, spec.zipf_s, self.rng)
        shared = Path(spec.shared_data) if spec.shared_data else None
        self.templates = real_pages(shared)
        self.anchors = [
            [match.decode("utf-8", "replace") for match in _HREF.findall(template)[:500]] for template in self.templates
        ]
        from pipeline.sample.pools import PAGE_WORDS

        self.words = " ".join(PAGE_WORDS.values()).split()
        self.record_count = 0
        self.canonical: dict[int, str] = {}
        self.plan = Plan(spec.crawl_id, spec.port, self.hosts)
        self.start = _crawl_start(spec.crawl_id)

    # names and URLs
    def _image_url(self, body: int, token: str) -> str:
        host = f"img-{self.image_hosts.draw() + 1}{SIM_SUFFIX}"
        return f"http://{host}:{self.spec.port}/i/{body}/{token}.jpg"

    def _record_headers(
        self, kind: str, url: str | None, extra: Sequence[tuple[str, str]] = ()
    ) -> list[tuple[str, str]]:
        digest = hashlib.sha256(f"{self.spec.seed}:{self.record_count}".encode()).digest()
        when = self.start + timedelta(seconds=self.record_count)
        self.record_count += 1
        headers = [
            ("WARC-Type", kind),
            ("WARC-Date", when.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"),
        ]
        if url is not None:
            headers.append(("WARC-Target-URI", url))
        return headers + list(extra)

    # pages
    def _imgs(self, page: int, page_url: str, base: str | None, bodies: list[Body], zipf: Zipf) -> list[PlannedImg]:
        rng, port = self.rng, self.spec.port
        imgs = []
        site = urlsplit_host(page_url)
        # Boilerplate on every page of a site: its logo (same URL on all its pages) and share buttons.
        logo = f"http://img-1{SIM_SUFFIX}:{port}/i/{hash_int(site) % len(bodies)}/logo-{site}.jpg"
        imgs.append(PlannedImg(logo, "logo", "src", f'<img src="{logo}" alt="logo">', 0))
        for ordinal in range(rng.randint(*self.spec.images_per_page)):
            body = zipf.draw()
            roll = rng.random()
            if roll < 0.5 and body in self.canonical:
                url = self.canonical[body]  # the same image URL on many pages
            else:
                url = self._image_url(body, f"p{page}-{ordinal}")
                self.canonical.setdefault(body, url)
            if rng.random() < 0.12:
                alt: str | None = rng.choice(BOILERPLATE_ALTS)
                self.plan.boilerplate_alts += 1
            else:
                alt = rng.choice(bodies[body].alts)
                if self.spec.alt_variety and rng.random() < self.spec.alt_variety:
                    alt = f"{alt} {' '.join(rng.choice(self.words) for _ in range(3))}"
            style = rng.random()
            if style < 0.08:
                alt = None
            alt_markup = "" if alt is None else f' alt="{html.escape(alt, quote=True)}"'
            if style >= 0.08 and style < 0.18 and base is not None:
                relative = url.split("/i/", 1)[1]
                url = f"{base}{relative}"
                markup, attribute = f'<img src="{relative}"{alt_markup}>', "src_relative_base"
            elif style >= 0.18 and style < 0.28:
                small = url.replace(".jpg", "-small.jpg")
                markup = f'<img srcset="{small} 480w, {url} 960w" sizes="50vw"{alt_markup}>'
                attribute = "srcset"
            elif style >= 0.28 and style < 0.38:
                markup, attribute = f'<img src="{_PLACEHOLDER}" data-src="{url}"{alt_markup}>', "data-src"
            else:
                markup, attribute = f'<img src="{url}"{alt_markup} loading="lazy">', "src"
            imgs.append(PlannedImg(url, alt, attribute, markup, body))
        return imgs

    def _page_html(self, imgs: list[PlannedImg], base: str | None) -> tuple[bytes, list[str]]:
        """The page's HTML (a real page with the generated figures before ``</body>``) and its ``<a href>``s."""
        if self.templates:
            chosen = self.rng.randrange(len(self.templates))
            template, anchors = self.templates[chosen], self.anchors[chosen]
        else:
            template, anchors = plain_page(self.rng, self.words), []
        figures = "\n".join(f"<figure>{img.markup}</figure>" for img in imgs).encode()
        if base is not None:
            figures = f'<base href="{base}">\n'.encode() + figures
        ends = list(_BODY_END.finditer(template))
        cut = ends[-1].start() if ends else len(template)
        return template[:cut] + b"\n" + figures + b"\n" + template[cut:], anchors

    def _wat_record(
        self,
        page_url: str,
        title: str,
        base: str | None,
        imgs: list[PlannedImg],
        anchors: list[str],
        offset: int,
        warc_name: str,
    ) -> bytes:
        links = [
            {"path": "IMG@/src", "url": _src_of(img), "alt": img.alt}
            if img.alt is not None
            else {"path": "IMG@/src", "url": _src_of(img)}
            for img in imgs
            if img.attribute != "srcset"  # an <img> with only a srcset has no IMG@/src link in a WAT
        ]
        # The page's own links, as a WAT lists them: most of a real WAT record's bytes.
        links += [{"path": "A@/href", "url": href} for href in anchors]
        head: dict[str, Any] = {"Title": title}
        if base is not None:
            head["Base"] = base
        envelope = {
            "Container": {"Filename": warc_name, "Compressed": True, "Offset": str(offset)},
            "Envelope": {
                "Format": "WARC",
                "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": page_url},
                "Payload-Metadata": {
                    "Actual-Content-Type": "application/http; msgtype=response",
                    "HTTP-Response-Metadata": {
                        "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
                        # What a real WAT record also carries (so its size and parse cost are closer to CC's).
                        "Headers": {
                            "Content-Type": "text/html; charset=utf-8",
                            "Server": "nginx",
                            "Cache-Control": "max-age=600",
                            "Vary": "Accept-Encoding",
                        },
                        "Headers-Length": "180",
                        "Entity-Length": str(self.rng.randint(5_000, 200_000)),
                        "Entity-Digest": f"sha1:{hashlib.sha1(page_url.encode()).hexdigest().upper()[:32]}",
                        "HTML-Metadata": {"Head": head, "Links": links},
                    },
                },
            },
        }
        payload = json.dumps(envelope, ensure_ascii=False).encode()
        headers = self._record_headers("metadata", page_url, [("Content-Type", "application/json")])
        return warc_record(headers, payload)

    def generate(self) -> Plan:
        spec, rng = self.spec, self.rng
        estimated_pages = spec.pages if spec.size_bytes is None else max(spec.files, spec.size_bytes // 7_000)
        bodies = make_bodies(spec, spec.image_count(estimated_pages), self.out, rng)
        self.plan.images = len(bodies)
        self.plan.image_kinds = dict(Counter(body.kind for body in bodies))
        zipf = Zipf(len(bodies), spec.zipf_s, rng)
        crawl_dir = self.out / "crawl-data" / spec.crawl_id
        segments = [f"{4102444800000 + 1000 * index}.{index}" for index in range(spec.segments)]
        level = spec.gzip_level
        page = 0
        attributes: Counter = Counter()
        urls: set[str] = set()
        for file_index in range(spec.files):
            segment = segments[file_index * spec.segments // spec.files]
            stamp = (self.start + timedelta(hours=file_index)).strftime("%Y%m%d%H%M%S")
            name = f"CC-MAIN-{stamp}-{stamp}-{file_index:05d}"
            warc_rel = f"crawl-data/{spec.crawl_id}/segments/{segment}/warc/{name}.warc.gz"
            wat_rel = f"crawl-data/{spec.crawl_id}/segments/{segment}/wat/{name}.warc.wat.gz"
            for rel in (warc_rel, wat_rel):
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(self.out / warc_rel, "wb") as warc, open(self.out / wat_rel, "wb") as wat:
                info = b"software: altcorpus crawl simulator\r\nformat: WARC File Format 1.1\r\n"
                warc.write(
                    gzip_member(
                        warc_record(
                            self._record_headers(
                                "warcinfo",
                                None,
                                [("WARC-Filename", f"{name}.warc.gz"), ("Content-Type", "application/warc-fields")],
                            ),
                            info,
                        ),
                        level,
                    )
                )
                wat.write(
                    gzip_member(
                        warc_record(
                            self._record_headers(
                                "warcinfo",
                                None,
                                [("WARC-Filename", f"{name}.warc.wat.gz"), ("Content-Type", "application/warc-fields")],
                            ),
                            info,
                        ),
                        level,
                    )
                )
                pages_here = (
                    None
                    if spec.size_bytes is not None
                    else (spec.pages * (file_index + 1)) // spec.files - (spec.pages * file_index) // spec.files
                )
                file_budget = None if spec.size_bytes is None else spec.size_bytes // spec.files
                for written in range(10**9):  # bounded by the page count or the byte budget below
                    if pages_here is not None and written >= pages_here:
                        break
                    if file_budget is not None and warc.tell() >= file_budget:
                        break
                    host = f"site-{self.page_hosts.draw() + 1}{SIM_SUFFIX}"
                    page_url = f"http://{host}:{spec.port}/articles/{page}.html"
                    base = (
                        f"http://img-{self.image_hosts.draw() + 1}{SIM_SUFFIX}:{spec.port}/i/"
                        if rng.random() < 0.3
                        else None
                    )
                    imgs = self._imgs(page, page_url, base, bodies, zipf)
                    body, anchors = self._page_html(imgs, base)
                    http = (
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    request = (
                        f"GET /articles/{page}.html HTTP/1.1\r\nHost: {host}\r\nUser-Agent: CCBot/2.0\r\n\r\n".encode()
                    )
                    warc.write(
                        gzip_member(
                            warc_record(
                                self._record_headers(
                                    "request", page_url, [("Content-Type", "application/http; msgtype=request")]
                                ),
                                request,
                            ),
                            level,
                        )
                    )
                    offset = warc.tell()
                    warc.write(
                        gzip_member(
                            warc_record(
                                self._record_headers(
                                    "response", page_url, [("Content-Type", "application/http; msgtype=response")]
                                ),
                                http,
                            ),
                            level,
                        )
                    )
                    fields = f"fetchTimeMs: {rng.randint(80, 900)}\r\n".encode()
                    warc.write(
                        gzip_member(
                            warc_record(
                                self._record_headers(
                                    "metadata", page_url, [("Content-Type", "application/warc-fields")]
                                ),
                                fields,
                            ),
                            level,
                        )
                    )
                    wat.write(
                        gzip_member(
                            self._wat_record(
                                page_url, f"Article {page}", base, imgs, anchors, offset, f"{name}.warc.gz"
                            ),
                            level,
                        )
                    )
                    for img in imgs:
                        attributes[img.attribute if img.alt is not None else "no_alt"] += 1
                        urls.add(img.url)
                    self.plan.img_tags += len(imgs)
                    page += 1
                self.plan.warc_bytes += warc.tell()
                self.plan.wat_bytes += wat.tell()
            self.plan.warc_files.append(warc_rel)
            self.plan.wat_files.append(wat_rel)
        self.plan.pages = page
        self.plan.attributes = dict(sorted(attributes.items()))
        self.plan.image_urls = len(urls)
        for source, names in (("warc", self.plan.warc_files), ("wat", self.plan.wat_files)):
            listing = "".join(f"{rel}\n" for rel in names).encode()
            (crawl_dir / f"{source}.paths.gz").write_bytes(gzip.compress(listing, mtime=0))
        (self.out / "simulation.json").write_text(self.plan.to_json())
        return self.plan


def _src_of(img: PlannedImg) -> str:
    """What a WAT's ``IMG@/src`` link says for an ``<img>``: the literal ``src`` value (a placeholder for data-src)."""
    if img.attribute == "data-src":
        return _PLACEHOLDER
    if img.attribute == "src_relative_base":
        return img.url.split("/i/", 1)[1]
    return img.url


def urlsplit_host(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]


def hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _crawl_start(crawl_id: str) -> datetime:
    """The Monday of the crawl id's ISO week (``CC-MAIN-2099-01``), as the crawl's first WARC-Date."""
    year, week = (int(part) for part in crawl_id.rsplit("-", 2)[-2:])
    day = date.fromisocalendar(year, max(1, min(week, 52)), 1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def generate(out: str | Path, spec: SimSpec | None = None) -> Plan:
    """Write a simulated crawl under ``out`` (see the module docstring); returns what was planted."""
    spec = spec or SimSpec()
    if spec.shared_data is None and DEFAULT_SHARED_DATA.is_dir():
        spec = dataclasses.replace(spec, shared_data=str(DEFAULT_SHARED_DATA))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return Generator(spec, out).generate()


# -- serving ----------------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """A misbehaviour of the mirror for files whose name ends with ``suffix``: answer ``status`` (503 with S3's
    ``SlowDown`` body) ``times`` times (None: always), or send ``drop_after`` bytes of the body then drop the
    connection (``times`` times)."""

    suffix: str
    status: int = 503
    times: int | None = 1
    drop_after: int | None = None


class HostStats:
    """Per host name: requests, the most in flight at once, and every request's start time (for rates); requests per
    path, and per (host, path)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.paths: Counter[str] = Counter()
        self.host_paths: Counter[tuple[str, str]] = Counter()
        self.ranges: list[tuple[str, str]] = []

    def enter(self, host: str, path: str, range_header: str | None) -> None:
        with self.lock:
            self.requests[host] += 1
            self.paths[path] += 1
            self.host_paths[host, path] += 1
            self.times[host].append(time.monotonic())
            self.in_flight[host] += 1
            self.max_in_flight[host] = max(self.max_in_flight[host], self.in_flight[host])
            if range_header:
                self.ranges.append((path, range_header))

    def leave(self, host: str) -> None:
        with self.lock:
            self.in_flight[host] -= 1

    def max_rate(self, host: str, window_s: float = 1.0) -> int:
        """The most requests to ``host`` that started within any ``window_s`` seconds."""
        times = sorted(self.times.get(host, ()))
        best, start = 0, 0
        for end in range(len(times)):
            while times[end] - times[start] > window_s:
                start += 1
            best = max(best, end - start + 1)
        return best


def _handler(server_state: SimulatedCrawl) -> type[BaseHTTPRequestHandler]:
    state = server_state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":", 1)[0].lower() or self.server.server_address[0]
            path = self.path.split("?", 1)[0]
            state.stats.enter(host, path, self.headers.get("Range"))
            try:
                if state.latency_s:
                    time.sleep(min(state.latency_s, MAX_LATENCY_S))
                if path.startswith("/crawl-data/"):
                    self._mirror(path)
                elif path.startswith("/i/"):
                    self._image(path)
                else:
                    self._send(404, b"not found\n", "text/plain")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                state.stats.leave(host)

        def _send(self, status: int, body: bytes, content_type: str, headers: Sequence[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _image(self, path: str) -> None:
            parts = path.split("/")
            try:
                data = state.image(int(parts[2]))
            except (IndexError, ValueError, OSError):
                self._send(404, b"no such image\n", "text/plain")
                return
            self._send(200, data, "image/jpeg")

        def _mirror(self, path: str) -> None:
            file = (state.root / path.lstrip("/")).resolve()
            if state.root not in file.parents or not file.is_file():
                self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
                return
            fault = state.take_fault(path)
            if fault is not None and fault.drop_after is None:
                body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self._send(fault.status, body, "application/xml", [("Retry-After", "0")])
                return
            size = file.stat().st_size
            start = 0
            range_header = self.headers.get("Range")
            if range_header:
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
                start = int(match.group(1)) if match else 0
                if start >= size:
                    self._send(416, b"", "text/plain", [("Content-Range", f"bytes */{size}")])
                    return
            self.send_response(206 if range_header else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            if range_header:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            limit = size - start if fault is None else min(size - start, fault.drop_after or 0)
            with open(file, "rb") as stream:
                stream.seek(start)
                sent = 0
                while sent < limit:  # bounded by the file's size
                    chunk = stream.read(min(64 * 1024, limit - sent))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
            if fault is not None:  # the connection drops mid-body: the client must resume with a Range request
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


class _Server(ThreadingHTTPServer):
    """A threading server that can also close its open keep-alive connections: stopped, it must not go on serving
    a client's pooled connection with the state of a finished test."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_activate(self) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting a kept-alive connection it no longer needs is normal, not an error to print."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def free_port(addresses: Sequence[str], rng: random.Random | None = None, attempts: int = 64) -> int:
    """A port free on every one of ``addresses`` (tried at random, at most ``attempts`` times)."""
    rng = rng or random.Random()
    for _ in range(attempts):
        port = rng.randint(20_000, 60_000)
        sockets = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise OSError(f"no port free on all of {len(addresses)} loopback addresses after {attempts} tries")


class SimulatedCrawl:
    """Serves a generated mirror: ``with SimulatedCrawl(out) as sim: sim.base_url``; resolver override installed.

    ``faults`` misbehave on mirror files, ``latency_s`` delays every response; ``stats`` counts per host.
    """

    def __init__(self, root: str | Path, faults: Sequence[Fault] = (), latency_s: float = 0.0) -> None:
        self.root = Path(root).resolve()
        self.plan = json.loads((self.root / "simulation.json").read_text())
        self.port = int(self.plan["port"])
        self.hosts: dict[str, str] = self.plan["hosts"]
        self.faults = list(faults)
        self.latency_s = latency_s
        self.stats = HostStats()
        self._faults_lock = threading.Lock()
        self._fault_uses: Counter[int] = Counter()
        self._images: dict[int, bytes] = {}
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        """The mirror's base URL (``--cc-base-url``)."""
        return f"http://{MIRROR_ADDRESS}:{self.port}/"

    @property
    def env(self) -> dict[str, str]:
        """The environment a subprocess (or Beam worker) needs to resolve the simulated host names."""
        from pipeline.net.resolver import ENV

        return {ENV: json.dumps(self.hosts)}

    def image(self, index: int) -> bytes:
        if index not in self._images:
            self._images[index] = (self.root / "images" / f"{index:05d}.jpg").read_bytes()
        return self._images[index]

    def take_fault(self, path: str) -> Fault | None:
        """The fault this request of ``path`` suffers (each fault used at most ``times`` times)."""
        with self._faults_lock:
            for position, fault in enumerate(self.faults):
                if path.endswith(fault.suffix) and (fault.times is None or self._fault_uses[position] < fault.times):
                    self._fault_uses[position] += 1
                    return fault
        return None

    def start(self) -> SimulatedCrawl:
        from pipeline.net.resolver import install

        addresses = sorted({MIRROR_ADDRESS, *self.hosts.values()})
        handler = _handler(self)
        for address in addresses:
            server = _Server((address, self.port), handler)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        install(self.hosts)
        return self

    def stop(self) -> None:
        from pipeline.net.resolver import uninstall

        uninstall()
        for server in self._servers:
            server.shutdown()
            server.server_close()
            server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> SimulatedCrawl:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- command line -----------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.crawl.simulate --out DIR --size 100MB [--serve]``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.crawl.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Folder to write the mirror into")
    parser.add_argument("--size", default=None, help="WARC bytes in all (e.g. 100MB, 1GB); wins over --pages")
    parser.add_argument("--pages", type=int, default=SimSpec.pages, help="Pages in all (without --size)")
    parser.add_argument("--files", type=int, default=SimSpec.files, help="WARC files (each with its WAT)")
    parser.add_argument("--segments", type=int, default=SimSpec.segments)
    parser.add_argument("--page-hosts", type=int, default=SimSpec.page_hosts)
    parser.add_argument("--image-hosts", type=int, default=SimSpec.image_hosts)
    parser.add_argument("--addresses", type=int, default=SimSpec.addresses, help="Loopback addresses 127.0.0.2..")
    parser.add_argument("--images", type=int, default=None, help="Distinct image bodies")
    parser.add_argument("--crawl-id", default=DEFAULT_CRAWL)
    parser.add_argument("--port", type=int, default=SimSpec.port, help="The port every server listens on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alt-variety", type=float, default=0.0, help="Share of alt texts made distinct (0.8 for 100MB and more)"
    )
    parser.add_argument("--shared-data", default=None, help=f"Real pages and photos (default {DEFAULT_SHARED_DATA})")
    parser.add_argument("--serve", action="store_true", help="Serve the mirror and images after generating")
    parser.add_argument("--serve-only", action="store_true", help="Serve an existing mirror")
    parser.add_argument("--serve-seconds", type=float, default=3600.0, help="Stop serving after this long")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.serve_only:
        spec = SimSpec(
            crawl_id=args.crawl_id,
            pages=args.pages,
            size_bytes=parse_size(args.size) if args.size else None,
            files=args.files,
            segments=args.segments,
            page_hosts=args.page_hosts,
            image_hosts=args.image_hosts,
            addresses=args.addresses,
            images=args.images,
            port=args.port,
            seed=args.seed,
            shared_data=args.shared_data,
            alt_variety=args.alt_variety,
        )
        started = time.monotonic()
        plan = generate(args.out, spec)
        print(
            f"{plan.crawl_id}: {len(plan.warc_files)} WARC files ({plan.warc_bytes / 1e6:.1f} MB), "
            f"{plan.pages} pages, {plan.img_tags} <img>, {plan.images} image bodies, "
            f"in {time.monotonic() - started:.1f} s -> {args.out}"
        )
    if args.serve or args.serve_only:
        with SimulatedCrawl(args.out, latency_s=args.latency_ms / 1000) as sim:
            print(f"serving: --crawl {sim.plan['crawl_id']} --cc-base-url {sim.base_url}")
            print(f"images: export {next(iter(sim.env))}='{next(iter(sim.env.values()))}'")
            deadline = time.monotonic() + args.serve_seconds
            while time.monotonic() < deadline:  # bounded by --serve-seconds (or Ctrl-C)
                try:
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                except KeyboardInterrupt:
                    break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
