"""The bundled sample: a small, deterministic web archive whose pages embed real photos, and the oracle of its fates.

``python -m pipeline make-sample --output build/sample [--pages N] [--seed S]`` writes

- ``sample.warc.gz``: HTML pages on invented hosts (reserved ``*.example.{com,org,net}`` names, plus ``.invalid``
  for an image that is deliberately not archived) and, in the same archive, the image responses their ``<img>``
  tags point at. The photos are the real ones that ship inside pip packages (``skimage.data`` and scikit-learn's
  sample images), cropped and re-encoded; their alt texts are written here, in English, German, French, Spanish,
  Japanese and Chinese.
- ``expected.json``: for every ``<img>`` with a non-empty alt text, its absolute image URL, normalised alt text,
  page URL and fate under ALIGN's rules (``kept``, ``rejected`` at a stage with a reason, or ``kept_one`` of an
  exact-duplicate group), labelled with the planted ``case`` it exercises. The end-to-end test holds the pipeline
  to it.
- ``eval/``: a few JPEGs standing in for an evaluation test set; the corpus holds one resized, re-compressed,
  slightly cropped copy of one of them, which ``filter-image`` must remove as ``eval_near_duplicate``.

Every planted case trips exactly one rule and every ordinary candidate is clearly kept (3..20 unigrams under any
usual tokeniser: whitespace, word + punctuation, or one per CJK character; a unique alt text; an image whose shorter
side is 224..360 px and whose aspect ratio is at most 1.6; far in pHash from every evaluation image), so each fate is
unambiguous. Where the pipeline has a documented choice the oracle follows it: a ``srcset`` yields its largest
candidate and ``data-src`` wins over a ``data:`` placeholder (pipeline/html_images.py), and an alt text escaped
twice is decoded twice (pipeline/alt_text.py). Determinism: the
same seed gives byte-identical files (fixed WARC-Dates, record ids derived from the seed, one gzip member per record
written by zlib with mtime 0, images encoded from the packaged photos with fixed parameters).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import importlib.util
import io
import json
import random
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from PIL import Image

from schemas import Candidate, Rejection

WARC_NAME = "sample.warc.gz"
EXPECTED_NAME = "expected.json"
EVAL_DIR_NAME = "eval"
ORACLE_VERSION = 1
DEFAULT_PAGES = 200
"""Ordinary article pages; the planted cases add about 170 more (listing pages, edge-case pages)."""
MIN_PAGES, MAX_PAGES = 10, 400

# Crawl time of the first record; each later record is a few seconds after it, so WARC-Dates are fixed.
CRAWL_START = datetime(2024, 3, 4, 9, 30, 0, tzinfo=timezone.utc)

# ALIGN's thresholds the oracle assumes (they are the `align` preset's defaults in pipeline/config.py).
MAX_IMAGES_PER_ALT = 10
MAX_ALTS_PER_IMAGE = 1000
MIN_SHORTER_SIDE = 201

# Stages and reasons, spelled as ARCHITECTURE.md lists them.
EXTRACT, FILTER_TEXT, FETCH, FILTER_IMAGE = "extract", "filter-text", "fetch", "filter-image"

# Column names of the oracle's candidate entries are the pipeline's own.
PAGE_URL, IMAGE_URL, ALT_TEXT = str(Candidate.PAGE_URL), str(Candidate.IMAGE_URL), str(Candidate.ALT_TEXT)
URL_ATTRIBUTE, HTML_LANG = str(Candidate.URL_ATTRIBUTE), str(Candidate.HTML_LANG)
STAGE, REASON = str(Rejection.STAGE), str(Rejection.REASON)

CDN = "https://cdn.example.net"
BLOG = "https://www.photo-blog.example.com"
SHOP = "https://shop.example.org"
MARKET = "https://market.example.com"
RECIPES = "https://recipes.example.net"
GARDEN = "https://garden-diary.example.org"

# ---------------------------------------------------------------------------------------------------------------------
# The photos and what they show. Each alt text is a subject (what is in the photo) optionally followed by a context
# phrase (where the page shows it), so every combination stays a truthful description.

#: photo name -> (package, file name); all ship inside the installed wheels, nothing is downloaded.
PHOTO_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage.data", "astronaut.png"),
    "camera": ("skimage.data", "camera.png"),
    "chelsea": ("skimage.data", "chelsea.png"),
    "coffee": ("skimage.data", "coffee.png"),
    "coins": ("skimage.data", "coins.png"),
    "hubble": ("skimage.data", "hubble_deep_field.jpg"),
    "ihc": ("skimage.data", "ihc.png"),
    "motorcycle_left": ("skimage.data", "motorcycle_left.png"),
    "motorcycle_right": ("skimage.data", "motorcycle_right.png"),
    "rocket": ("skimage.data", "rocket.jpg"),
    "retina": ("skimage.data", "retina.jpg"),
    "moon": ("skimage.data", "moon.png"),
    "horse": ("skimage.data", "horse.png"),
    "brick": ("skimage.data", "brick.png"),
    "grass": ("skimage.data", "grass.png"),
    "gravel": ("skimage.data", "gravel.png"),
    "colorwheel": ("skimage.data", "color.png"),
    "china": ("sklearn.datasets.images", "china.jpg"),
    "flower": ("sklearn.datasets.images", "flower.jpg"),
}

#: The stand-in evaluation set: never used by ordinary pages; the corpus holds one near-duplicate of the first.
EVAL_PHOTOS = ("coffee", "rocket")

#: Photos drawn in ordinary pages, and which alt pool describes each (the stereo pair shares one).
ORDINARY_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "camera": "camera",
    "chelsea": "chelsea",
    "coins": "coins",
    "hubble": "hubble",
    "ihc": "ihc",
    "motorcycle_left": "motorcycle",
    "motorcycle_right": "motorcycle",
    "retina": "retina",
    "moon": "moon",
    "china": "china",
    "flower": "flower",
    "horse": "horse",
    "brick": "brick",
    "gravel": "gravel",
}

SUBJECTS: dict[str, dict[str, list[str]]] = {
    "astronaut": {
        "en": [
            "Astronaut Eileen Collins in an orange flight suit",
            "Official NASA portrait of astronaut Eileen Collins smiling",
            "Smiling astronaut beside an American flag and a space shuttle model",
            "Woman astronaut in an orange launch and entry suit",
            "Space shuttle commander Eileen Collins posing for her portrait",
            "Portrait of a NASA astronaut with her helmet on the table",
            "Astronaut in an orange pressure suit with mission patches",
        ],
        "de": [
            "Astronautin Eileen Collins im orangefarbenen Raumanzug",
            "Offizielles NASA Porträt einer lächelnden Astronautin",
            "Astronautin mit Helm vor der amerikanischen Flagge",
        ],
        "fr": [
            "L'astronaute Eileen Collins en combinaison orange",
            "Portrait officiel de la NASA d'une astronaute souriante",
            "Astronaute posant devant le drapeau américain",
        ],
        "es": [
            "La astronauta Eileen Collins con traje naranja",
            "Retrato oficial de la NASA de una astronauta sonriente",
            "Astronauta junto a la bandera estadounidense y su casco",
        ],
        "ja": ["宇宙服の 女性 宇宙飛行士", "星条旗と 宇宙飛行士の 肖像", "ヘルメットと 笑顔の 宇宙飛行士"],
        "zh": ["身穿 橙色 宇航服的 宇航员", "美国国旗 前的 女宇航员 肖像", "面带 微笑的 女宇航员"],
    },
    "camera": {
        "en": [
            "Black and white photo of a cameraman with a tripod",
            "Man in a dark coat looking through a camera on a tripod",
            "Photographer filming on a lawn with buildings in the distance",
            "Grayscale portrait of a man operating a film camera outdoors",
            "Cameraman standing on grass behind his tripod",
            "A man adjusts an old camera mounted on a tripod",
        ],
        "de": [
            "Schwarzweißfoto eines Kameramanns mit Stativ",
            "Mann im dunklen Mantel blickt durch eine Kamera",
            "Fotograf mit Kamera auf einer Wiese",
        ],
        "fr": [
            "Photo en noir et blanc d'un caméraman avec trépied",
            "Homme en manteau sombre regardant dans une caméra",
            "Photographe au travail sur une pelouse",
        ],
        "es": [
            "Foto en blanco y negro de un camarógrafo con trípode",
            "Hombre con abrigo oscuro mirando por una cámara",
            "Fotógrafo trabajando sobre el césped",
        ],
        "ja": ["三脚と カメラを 構える男性", "白黒の カメラマン 写真", "芝生で 撮影する 男性"],
        "zh": ["架着 三脚架的 摄影师", "黑白 摄影师 照片", "在 草地上 拍摄的 男子"],
    },
    "chelsea": {
        "en": [
            "Close up of a tabby cat named Chelsea",
            "Tabby cat with green eyes looking at the camera",
            "Portrait of a brown striped cat with long whiskers",
            "Face of a curious tabby cat in warm light",
            "Striped house cat staring straight ahead",
            "Detail of a tabby cat face with pink nose",
        ],
        "de": [
            "Nahaufnahme einer getigerten Katze namens Chelsea",
            "Getigerte Katze mit grünen Augen",
            "Porträt einer braun gestreiften Katze",
        ],
        "fr": [
            "Gros plan d'une chatte tigrée nommée Chelsea",
            "Chat tigré aux yeux verts",
            "Portrait d'un chat rayé aux longues moustaches",
        ],
        "es": [
            "Primer plano de una gata atigrada llamada Chelsea",
            "Gato atigrado de ojos verdes",
            "Retrato de un gato rayado con bigotes largos",
        ],
        "ja": ["緑の目の トラ猫 の顔", "カメラを 見つめる 猫", "しま模様の 猫の 顔写真"],
        "zh": ["绿眼睛的 虎斑猫 特写", "盯着 镜头的 猫", "条纹 家猫的 肖像"],
    },
    "coins": {
        "en": [
            "Ancient Greek coins arranged in rows on a dark cloth",
            "Grayscale photo of two dozen old silver coins",
            "Collection of worn ancient coins in a museum tray",
            "Rows of small antique coins seen from above",
            "Old coins laid out in four rows on black velvet",
        ],
        "de": ["Antike griechische Münzen in Reihen", "Sammlung alter Silbermünzen", "Alte Münzen auf dunklem Tuch"],
        "fr": [
            "Pièces grecques antiques alignées",
            "Collection de vieilles pièces d'argent",
            "Anciennes pièces sur fond noir",
        ],
        "es": [
            "Monedas griegas antiguas en filas",
            "Colección de viejas monedas de plata",
            "Monedas antiguas sobre fondo negro",
        ],
        "ja": ["古代 ギリシャの 硬貨", "並べられた 古い 銀貨", "黒い布の上の 古い 硬貨"],
        "zh": ["古希腊 钱币 收藏", "排成 几排的 古代 银币", "黑布上的 古老 硬币"],
    },
    "hubble": {
        "en": [
            "Hubble deep field full of distant galaxies",
            "Thousands of faint galaxies in the Hubble deep field",
            "Deep space image showing colourful galaxies on black",
            "Distant spiral and elliptical galaxies seen by Hubble",
            "Tiny red and blue galaxies scattered across dark sky",
            "Hubble Space Telescope view of the early universe",
        ],
        "de": [
            "Hubble Deep Field mit fernen Galaxien",
            "Tausende ferne Galaxien im All",
            "Bunte Galaxien vor schwarzem Himmel",
        ],
        "fr": [
            "Le champ profond de Hubble et ses galaxies",
            "Des milliers de galaxies lointaines",
            "Galaxies colorées sur fond noir",
        ],
        "es": [
            "Campo profundo del Hubble con galaxias lejanas",
            "Miles de galaxias lejanas",
            "Galaxias de colores sobre cielo negro",
        ],
        "ja": ["ハッブル 深宇宙 画像", "遠くの 銀河の 集まり", "暗い 宇宙に 浮かぶ 銀河"],
        "zh": ["哈勃 深空 场景", "遥远 星系的 集合", "黑色 天空中的 彩色 星系"],
    },
    "ihc": {
        "en": [
            "Immunohistochemistry stain of human tissue under a microscope",
            "Microscope slide of tissue stained brown and blue",
            "Stained tissue section showing glandular structures",
            "Histology sample with brown antibody staining",
            "Light microscopy of a stained tissue sample",
        ],
    },
    "motorcycle": {
        "en": [
            "Red motorcycle parked in a workshop",
            "Red and black motorbike in a garage full of boxes",
            "Classic red motorcycle on a concrete floor indoors",
            "Motorcycle in front of metal shelves and cardboard boxes",
            "Side view of a red motorbike with chrome exhaust",
            "Red street motorcycle standing in a storage room",
        ],
        "de": ["Rotes Motorrad in einer Werkstatt", "Motorrad vor Regalen mit Kartons", "Rotes Motorrad in der Garage"],
        "fr": [
            "Moto rouge garée dans un atelier",
            "Moto devant des étagères et des cartons",
            "Moto rouge dans un garage",
        ],
        "es": [
            "Moto roja aparcada en un taller",
            "Motocicleta delante de estanterías y cajas",
            "Moto roja en un garaje",
        ],
        "ja": ["倉庫の 赤い オートバイ", "棚の前の 赤い バイク", "ガレージの 赤い バイク"],
        "zh": ["车间里的 红色 摩托车", "货架前的 红色 摩托", "车库里 停着的 摩托车"],
    },
    "retina": {
        "en": [
            "Fundus photograph of a human retina",
            "Retina with the optic disc and branching blood vessels",
            "Medical photo of the back of the eye",
            "Orange retinal image showing veins and the macula",
            "Eye fundus scan taken during an exam",
        ],
    },
    "moon": {
        "en": [
            "Grayscale close up of the lunar surface",
            "Craters and dark patches on the surface of the moon",
            "Detail of moon terrain in black and white",
            "Photo of the lunar surface with small craters",
        ],
    },
    "china": {
        "en": [
            "Chinese pagoda among trees beside a lake",
            "Tower of Buddhist Incense at the Summer Palace in Beijing",
            "Traditional Chinese temple with a view over the water",
            "Red and green pagoda roof against a pale sky",
            "Historic tower on a hill surrounded by trees",
            "Summer Palace pavilion with a lake in the background",
        ],
        "de": [
            "Chinesische Pagode zwischen Bäumen am See",
            "Turm im Sommerpalast von Peking",
            "Traditioneller chinesischer Tempel",
        ],
        "fr": [
            "Pagode chinoise parmi les arbres",
            "Tour du Palais d'été à Pékin",
            "Temple chinois traditionnel au bord de l'eau",
        ],
        "es": [
            "Pagoda china entre árboles junto a un lago",
            "Torre del Palacio de Verano en Pekín",
            "Templo chino tradicional junto al agua",
        ],
        "ja": ["湖畔の 中国の 仏塔", "北京 頤和園の 楼閣", "木々に 囲まれた 寺院"],
        "zh": ["北京 颐和园 佛香阁", "湖边 树林中的 宝塔", "传统 中式 楼阁"],
    },
    "flower": {
        "en": [
            "Orange dahlia in full bloom",
            "Close up of an orange dahlia against dark green leaves",
            "Single dahlia flower with layered petals",
            "Bright orange flower on a blurred green background",
            "Macro photo of a dahlia blossom",
            "Round orange dahlia with a second bud below",
        ],
        "de": [
            "Orange Dahlie in voller Blüte",
            "Nahaufnahme einer orangefarbenen Dahlie",
            "Dahlienblüte vor grünem Hintergrund",
        ],
        "fr": ["Dahlia orange en pleine floraison", "Gros plan d'un dahlia orange", "Fleur de dahlia sur fond vert"],
        "es": [
            "Dalia naranja en plena floración",
            "Primer plano de una dalia naranja",
            "Flor de dalia sobre fondo verde",
        ],
        "ja": ["満開の オレンジ色の ダリア", "ダリアの 花の 接写", "緑を 背景にした 花"],
        "zh": ["盛开的 橙色 大丽花", "大丽花 花朵 特写", "绿色 背景上的 橙色 花朵"],
    },
    "horse": {
        "en": [
            "Black silhouette of a standing horse",
            "Outline of a horse in black on white",
            "Horse silhouette facing right",
            "Simple black shape of a horse standing still",
        ],
    },
    "brick": {
        "en": [
            "Grey brick wall seen at an angle",
            "Texture of old bricks laid in rows",
            "Close up of a brick pavement texture",
        ],
    },
    "gravel": {
        "en": [
            "Grey gravel stones seen from above",
            "Texture of small pebbles on the ground",
            "Close up of a gravel path",
        ],
    },
}

#: Where the page shows the photo: appended to a subject (after a space); the empty one leaves the subject alone.
CONTEXTS: dict[str, list[str]] = {
    "en": [
        "",
        "in our photo archive",
        "from the spring collection",
        "featured on the front page",
        "shared by a reader",
        "from last week's gallery",
        "in the weekly roundup",
        "photographed for this article",
        "selected by the editors",
        "in high resolution",
        "seen in our travel notes",
        "as used in the newsletter",
        "from the reader gallery",
        "from the 2023 photo contest",
        "in the archive section",
        "on the events page",
    ],
    "de": [
        "",
        "aus unserem Fotoarchiv",
        "in der Bildergalerie",
        "auf der Titelseite",
        "aus dem Reisetagebuch",
        "in hoher Auflösung",
        "aus dem Frühjahrsheft",
        "im Wochenrückblick",
    ],
    "fr": [
        "",
        "dans nos archives photo",
        "dans la galerie du mois",
        "à la une du site",
        "dans le carnet de voyage",
        "en haute résolution",
        "dans le numéro de printemps",
        "dans la revue de la semaine",
    ],
    "es": [
        "",
        "de nuestro archivo fotográfico",
        "en la galería del mes",
        "en la portada",
        "del diario de viaje",
        "en alta resolución",
        "del número de primavera",
        "en el resumen semanal",
    ],
    "ja": ["", "写真館 より", "今月の 特集", "旅行記 より", "読者 投稿", "高画質 版"],
    "zh": ["", "摄影 档案", "本月 精选", "旅行 日记", "读者 投稿", "高清 版本"],
}

LANGUAGE_HOSTS: dict[str, list[str]] = {
    "en": [BLOG, "https://news.example.net", "https://travel.example.com"],
    "de": ["https://de.reisen.example.org"],
    "fr": ["https://fr.voyages.example.org"],
    "es": ["https://es.viajes.example.org"],
    "ja": ["https://jp.shashin.example.com"],
    "zh": ["https://zh.tupian.example.com"],
}
LANGUAGE_WEIGHTS = {"en": 70, "de": 6, "fr": 6, "es": 6, "ja": 6, "zh": 6}

PAGE_WORDS = {
    "en": "Notes and photos from our latest visits, with a few words about each picture below.",
    "de": "Notizen und Fotos von unseren letzten Reisen, mit ein paar Worten zu jedem Bild.",
    "fr": "Notes et photos de nos derniers voyages, avec quelques mots sur chaque image.",
    "es": "Notas y fotos de nuestros últimos viajes, con unas palabras sobre cada imagen.",
    "ja": "最近の旅の写真とメモです。各写真について少し書きました。",
    "zh": "我们最近旅行的照片和笔记，每张图片都附有简短说明。",
}

CAPTIONS = {
    "en": "Photo: our staff",
    "de": "Foto: Redaktion",
    "fr": "Photo : la rédaction",
    "es": "Foto: redacción",
    "ja": "写真：編集部",
    "zh": "图片：编辑部",
}

# Listing titles of the bulk cases: web noise that ALIGN's frequency rules exist for (a sprite or a stock photo
# shown beside product names and article titles that say nothing about it).
MATERIALS = ["Linen", "Ceramic", "Walnut", "Leather", "Wool", "Bamboo", "Copper", "Cotton", "Glass", "Oak"]
PRODUCTS = ["tote bag", "coffee mug", "desk lamp", "wallet", "scarf", "serving tray", "plant pot", "notebook"]
COLOURS = ["forest green", "ocean blue", "sand beige", "charcoal grey", "rust red", "mustard yellow", "navy"]
USED_GOODS = ["mountain bike", "sofa bed", "washing machine", "guitar amplifier", "office chair", "camping tent"]
TOWNS = ["Springfield", "Riverton", "Lakeside", "Fairview", "Oakdale", "Hillcrest"]
DISHES = ["Lemon cake", "Tomato soup", "Mushroom risotto", "Apple crumble", "Vegetable curry", "Pumpkin bread"]
INGREDIENTS = ["fresh thyme", "roasted garlic", "brown butter", "toasted almonds", "sea salt", "wild honey"]
GARDEN_TOPICS = ["dahlias in late summer", "planting bulbs", "watering in a heatwave", "saving seeds", "autumn borders"]

TILES_PER_LISTING_PAGE = 25
PIXEL_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


# ---------------------------------------------------------------------------------------------------------------------
# Fates, as the oracle writes them.


def kept() -> dict[str, Any]:
    """The fate of a candidate that must reach the shards."""
    return {"fate": "kept", STAGE: None, REASON: None}


def rejected(stage: str, reason: str | None) -> dict[str, Any]:
    """The fate of a candidate dropped at ``stage`` for ``reason`` (None: environment-dependent, e.g. a DNS error)."""
    return {"fate": "rejected", STAGE: stage, REASON: reason}


def kept_one(group: str, stage: str, reason: str) -> dict[str, Any]:
    """Exactly one candidate of ``group`` is kept (the filter's choice); the others are dropped with ``reason``."""
    return {"fate": "kept_one", "duplicate_group": group, STAGE: stage, REASON: reason}


# ---------------------------------------------------------------------------------------------------------------------
# Text helpers.


def normalise_expected_alt(raw_attribute_value: str) -> str:
    """The alt text ARCHITECTURE.md defines, computed independently of the extractor: one more entity decoding pass
    (the HTML parser did the first), whitespace (Unicode's) collapsed, NFC."""
    text = html.unescape(raw_attribute_value) if "&" in raw_attribute_value else raw_attribute_value
    return unicodedata.normalize("NFC", " ".join(text.split()))


def _has_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)


def clearly_within_length(alt: str) -> bool:
    """Whether ``alt`` has 3..20 unigrams under every usual tokeniser (whitespace, word+punctuation, CJK per
    character), so an ordinary candidate's fate does not depend on which one filter-text documents."""
    if _has_cjk(alt):
        return len(alt.split()) >= 3 and 3 <= len(alt.replace(" ", "")) <= 18
    words = alt.split()
    tokens = re.findall(r"\w+|[^\w\s]", alt)
    return len(words) >= 4 and len(tokens) <= 20 and len(re.findall(r"\w+", alt)) >= 3


class AltWriter:
    """Hands out alt texts that are unique across the whole sample, drawn from subject x context combinations."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self._queues: dict[tuple[str, str], list[str]] = {}

    def claim(self, alt: str) -> str:
        """Register a hand-written alt text, failing loudly if it was already used (the oracle needs unique alts)."""
        if alt in self.used:
            raise ValueError(f"alt text used twice in the sample: {alt!r}")
        self.used.add(alt)
        return alt

    def pools(self, lang: str) -> list[str]:
        """Alt pools (photo subjects) with texts left in ``lang``."""
        return [pool for pool in sorted(SUBJECTS) if lang in SUBJECTS[pool] and self._queue(pool, lang)]

    def _queue(self, pool: str, lang: str) -> list[str]:
        key = (pool, lang)
        if key not in self._queues:
            combos = [f"{subject} {context}".strip() for subject in SUBJECTS[pool][lang] for context in CONTEXTS[lang]]
            combos = [alt for alt in combos if clearly_within_length(alt)]
            self.rng.shuffle(combos)
            self._queues[key] = combos
        queue = self._queues[key]
        while queue and queue[-1] in self.used:
            queue.pop()
        return queue

    def take(self, pool: str, lang: str = "en", accept: Callable[[str], bool] | None = None) -> str:
        """The next unused alt text describing ``pool``'s photo in ``lang`` (and passing ``accept``)."""
        queue = self._queue(pool, lang)
        for index in range(len(queue) - 1, -1, -1):
            alt = queue[index]
            if alt not in self.used and (accept is None or accept(alt)):
                del queue[index]
                return self.claim(alt)
        raise ValueError(f"no alt texts left for {pool}/{lang}; lower --pages")


# ---------------------------------------------------------------------------------------------------------------------
# Images.


def _package_folder(package: str) -> Path:
    """The folder of a (sub)package found without importing it: importing sklearn.datasets costs seconds."""
    top, *rest = package.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {top} is not installed; the sample's photos ship inside it")
    return Path(next(iter(spec.submodule_search_locations)), *rest)


def load_photo(name: str) -> Image.Image:
    """One packaged photo, decoded: grayscale photos stay ``L``, everything else becomes ``RGB``."""
    package, filename = PHOTO_FILES[name]
    with Image.open(_package_folder(package) / filename) as image:
        image.load()
        return image.copy() if image.mode in ("L", "RGB") else image.convert("RGB")


def encode_image(image: Image.Image, image_format: str = "JPEG", quality: int = 85) -> bytes:
    """Encode with fixed parameters and no metadata, so the bytes depend only on the pixels."""
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def crop_resize(photo: Image.Image, width: int, height: int, rng: random.Random, zoom: float = 1.0) -> Image.Image:
    """A ``width`` x ``height`` view of ``photo``: the largest box of that aspect ratio, scaled by ``zoom``, at a
    seeded position, resized."""
    source_w, source_h = photo.size
    box_w, box_h = source_w, source_w * height / width
    if box_h > source_h:
        box_w, box_h = source_h * width / height, source_h
    box_w, box_h = box_w * zoom, box_h * zoom
    left = rng.uniform(0, source_w - box_w)
    top = rng.uniform(0, source_h - box_h)
    box = (round(left), round(top), round(left + box_w), round(top + box_h))
    return photo.resize((width, height), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)


@dataclass
class ArchivedImageRecord:
    """An image response the sample archives (or, with ``archived`` False, only references)."""

    url: str
    body: bytes
    content_type: str
    photo: str
    width: int | None
    height: int | None
    case: str
    archived: bool = True
    decodable: bool = True

    def oracle(self) -> dict[str, Any]:
        """What expected.json says about this image URL."""
        return {
            "archived": self.archived,
            "content_type": self.content_type if self.archived else None,
            "decodable": self.decodable if self.archived else None,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.body) if self.archived else None,
            "sha256": hashlib.sha256(self.body).hexdigest() if self.archived else None,
            "photo": self.photo,
            "case": self.case,
        }


# ---------------------------------------------------------------------------------------------------------------------
# Pages.


@dataclass
class Page:
    """One archived HTML page: its blocks of body markup and how it is encoded and declared."""

    url: str
    lang: str | None
    title: str
    blocks: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)
    base_href: str | None = None
    encoding: str = "utf-8"
    meta_charset: str | None = "utf-8"
    header_charset: str | None = "utf-8"
    content_encoding: str | None = None
    raw_markup: str | None = None
    case: str = "ordinary"

    @property
    def base_url(self) -> str:
        """The URL relative references resolve against (``<base href>`` resolved against the page URL)."""
        return urljoin(self.url, self.base_href) if self.base_href else self.url

    def markup(self) -> str:
        """The page's HTML as text (before encoding)."""
        if self.raw_markup is not None:
            return self.raw_markup
        lang = f' lang="{self.lang}"' if self.lang else ""
        head = []
        if self.meta_charset:
            head.append(f'<meta charset="{self.meta_charset}">')
        head.append(f"<title>{html.escape(self.title)}</title>")
        if self.base_href:
            head.append(f'<base href="{self.base_href}">')
        head += self.head
        head.append('<link rel="stylesheet" href="/static/site.css">')
        host = urlsplit(self.url).hostname
        return "\n".join(
            [
                "<!DOCTYPE html>",
                f"<html{lang}>",
                "<head>",
                *head,
                "</head>",
                "<body>",
                f'<header><a href="/"><img src="/static/logo.png" alt="" width="120" height="40"></a> {host}</header>',
                "<main>",
                f"<h1>{html.escape(self.title)}</h1>",
                *self.blocks,
                "</main>",
                "<footer><p>(c) 2024 example site. All pictures are used with permission.</p></footer>",
                "</body>",
                "</html>",
                "",
            ]
        )

    def body(self) -> bytes:
        """The HTTP body as archived (encoded, and gzip-compressed when the page says so)."""
        payload = self.markup().encode(self.encoding)
        if self.content_encoding == "gzip":
            payload = gzip.compress(payload, compresslevel=6, mtime=0)
        return payload

    def content_type(self) -> str:
        """The HTTP Content-Type header."""
        return f"text/html; charset={self.header_charset}" if self.header_charset else "text/html"


# ---------------------------------------------------------------------------------------------------------------------
# The generator.


class SampleBuilder:
    """Builds the pages, the archived images and the oracle in memory; ``write`` puts them on disk."""

    def __init__(self, pages: int, seed: int) -> None:
        self.ordinary_page_count = pages
        self.seed = seed
        self.rng = random.Random(seed)
        self.alts = AltWriter(self.rng)
        self.pages: list[Page] = []
        self.images: dict[str, ArchivedImageRecord] = {}
        self.candidates: list[dict[str, Any]] = []
        self.non_candidates: list[dict[str, Any]] = []
        self.eval_files: dict[str, bytes] = {}
        self._photos: dict[str, Image.Image] = {}
        self._digests: set[str] = set()
        self._ordinary_variants: dict[str, list[str]] = {}
        self._variant_cursor: Counter[str] = Counter()
        self._fresh = 0

    # -- images -----------------------------------------------------------------------------------------------------

    def photo(self, name: str) -> Image.Image:
        """A packaged photo, loaded once."""
        if name not in self._photos:
            self._photos[name] = load_photo(name)
        return self._photos[name]

    def archive_image(
        self,
        url: str,
        body: bytes,
        *,
        photo: str,
        case: str,
        content_type: str = "image/jpeg",
        shared_bytes: bool = False,
        decodable: bool = True,
    ) -> str:
        """Archive an image response at ``url``; distinct URLs get distinct bytes unless ``shared_bytes``."""
        if url in self.images:
            raise ValueError(f"image URL archived twice: {url}")
        digest = hashlib.sha256(body).hexdigest()
        if digest in self._digests and not shared_bytes:
            raise ValueError(f"identical bytes at a second URL without being planted: {url}")
        self._digests.add(digest)
        width = height = None
        if decodable:
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
        self.images[url] = ArchivedImageRecord(url, body, content_type, photo, width, height, case, True, decodable)
        return url

    def variant(
        self,
        url: str,
        photo: str,
        case: str,
        size: tuple[int, int] | None = None,
        image_format: str = "JPEG",
        zoom: float | None = None,
    ) -> str:
        """Archive a crop of ``photo`` at ``url``: exactly ``size`` when given, else a seeded size that is clearly
        kept (shorter side 224..360 px, aspect ratio at most 1.6)."""
        if size is None:
            shorter = self.rng.randint(224, 360)
            aspect = self.rng.choice([0.67, 0.75, 0.8, 1.0, 1.25, 1.33, 1.5, 1.6])
            size = (round(shorter * aspect), shorter) if aspect >= 1 else (shorter, round(shorter / aspect))
        zoom = self.rng.uniform(0.72, 1.0) if zoom is None else zoom
        image = crop_resize(self.photo(photo), size[0], size[1], self.rng, zoom)
        body = encode_image(image, image_format, quality=self.rng.randint(78, 88))
        content_type = "image/jpeg" if image_format == "JPEG" else "image/png"
        return self.archive_image(url, body, photo=photo, case=case, content_type=content_type)

    def fresh_variant(self, host: str, folder: str, photo: str, case: str, **kwargs: Any) -> str:
        """A new archived crop of ``photo`` under ``host/folder/`` with a unique, descriptive file name."""
        self._fresh += 1
        extension = "png" if kwargs.get("image_format") == "PNG" else "jpg"
        url = f"{host}/{folder}/{photo.replace('_', '-')}-{self._fresh:03d}.{extension}"
        return self.variant(url, photo, case, **kwargs)

    def ordinary_image(self, pool: str) -> str:
        """The next CDN image of ``pool``'s photos, cycling so every ordinary variant is shown."""
        variants = self._ordinary_variants[pool]
        url = variants[self._variant_cursor[pool] % len(variants)]
        self._variant_cursor[pool] += 1
        return url

    def make_ordinary_variants(self) -> None:
        """The CDN's ordinary photos: several crops of every ordinary photo, a few of them PNG."""
        per_photo = {"motorcycle_left": 4, "motorcycle_right": 4, "ihc": 5, "retina": 5, "moon": 4, "horse": 4}
        for photo, pool in ORDINARY_PHOTOS.items():
            count = per_photo.get(photo, 3 if photo in ("brick", "gravel") else 8)
            for index in range(count):
                # The horse silhouette is line art: PNG is what a site would serve.
                image_format = "PNG" if photo == "horse" and index < 2 else "JPEG"
                url = self.fresh_variant(CDN, f"photos/{pool}", photo, "ordinary", image_format=image_format)
                self._ordinary_variants.setdefault(pool, []).append(url)
        for pool in self._ordinary_variants:
            self.rng.shuffle(self._ordinary_variants[pool])

    # -- pages and candidates ------------------------------------------------------------------------------------------

    def page(self, url: str, lang: str | None, title: str, **kwargs: Any) -> Page:
        """Start a page (kept in build order)."""
        page = Page(url=url, lang=lang, title=title, **kwargs)
        self.pages.append(page)
        return page

    def expect(
        self, page: Page, image_url: str, alt: str, case: str, fate: dict[str, Any], url_attribute: str = "src"
    ) -> None:
        """Record one expected candidate in the oracle."""
        if not alt:
            raise ValueError("an empty alt text is not a candidate")
        self.candidates.append(
            {
                PAGE_URL: page.url,
                IMAGE_URL: image_url,
                ALT_TEXT: alt,
                URL_ATTRIBUTE: url_attribute,
                HTML_LANG: page.lang,
                "case": case,
                **fate,
            }
        )

    def img(
        self,
        page: Page,
        ref: str,
        alt: str,
        case: str,
        fate: dict[str, Any] | None = None,
        *,
        alt_raw: str | None = None,
        attribute: str = "src",
        extra: str = "",
        image_url: str | None = None,
        figure: bool = True,
    ) -> str:
        """Markup of an ``<img>`` whose ``attribute`` holds ``ref``, registered in the oracle; ``alt_raw`` is the
        attribute value as written when it differs from the escaped normalised text."""
        raw = html.escape(alt, quote=True) if alt_raw is None else alt_raw
        if normalise_expected_alt(html.unescape(raw)) != alt:
            raise ValueError(f"alt {raw!r} does not normalise to {alt!r}")
        if image_url is None:
            reference = ref.split()[0] if attribute == "srcset" else ref
            image_url = urljoin(page.base_url, html.unescape(reference))
        self.expect(page, image_url, alt, case, fate or kept(), url_attribute=attribute)
        tag = f'<img {attribute}="{ref}" alt="{raw}"{extra}>'
        if not figure:
            return tag
        caption = CAPTIONS.get(page.lang or "en", CAPTIONS["en"])
        return f"<figure>{tag}<figcaption>{html.escape(caption)}</figcaption></figure>"

    def ordinary_figure(self, page: Page, lang: str, case: str = "ordinary", pool: str | None = None) -> str:
        """A clearly kept candidate: a unique alt describing one of the CDN's ordinary photos."""
        pool = pool or self.rng.choice(self.alts.pools(lang))
        alt = self.alts.take(pool, lang)
        url = self.ordinary_image(pool)
        # Most sites write absolute URLs; some write protocol-relative ones.
        ref = url if self.rng.random() < 0.75 else url.removeprefix("https:")
        size = self.images[url]
        dims = f' width="{size.width}" height="{size.height}"' if self.rng.random() < 0.5 else ""
        return self.img(page, ref, alt, case, extra=dims + ' loading="lazy"', image_url=url)

    def not_a_candidate(self, page: Page, case: str, markup: str) -> str:
        """An ``<img>`` that must not become a candidate (no alt, empty alt, hidden in a comment or a script)."""
        self.non_candidates.append({PAGE_URL: page.url, "case": case, "markup": markup})
        return markup

    # -- ordinary pages ---------------------------------------------------------------------------------------------

    def ordinary_pages(self) -> None:
        """Article pages in six languages, each with one to four photos and the usual alt-less decoration."""
        languages = list(LANGUAGE_WEIGHTS)
        weights = [LANGUAGE_WEIGHTS[lang] for lang in languages]
        for index in range(self.ordinary_page_count):
            lang = self.rng.choices(languages, weights)[0]
            host = self.rng.choice(LANGUAGE_HOSTS[lang])
            year = 2019 + index % 5
            # Some English sites leave out <html lang>.
            page_lang = None if lang == "en" and host.endswith("news.example.net") else lang
            page = self.page(f"{host}/posts/{year}/entry-{index:03d}.html", page_lang, f"{PAGE_WORDS[lang][:24]}")
            page.blocks.append(f"<p>{html.escape(PAGE_WORDS[lang])}</p>")
            for _ in range(self.rng.choice([1, 2, 2, 3, 3, 4])):
                if not self.alts.pools(lang):
                    break
                page.blocks.append(self.ordinary_figure(page, lang))
            if self.rng.random() < 0.3:
                page.blocks.append(self.not_a_candidate(page, "img_without_alt", '<img src="/static/icons/share.png">'))

    # -- planted cases: the text rules ------------------------------------------------------------------------------

    def plant_frequency_cases(self) -> None:
        """Alt texts shared by 12, 11 and exactly 10 distinct image URLs."""
        shared = [
            (
                "Click here to enlarge",
                12,
                "alt_shared_by_12_images",
                rejected(FILTER_TEXT, "alt_shared_by_too_many_images"),
            ),
            (
                "Photo of the item for sale",
                11,
                "alt_shared_by_11_images",
                rejected(FILTER_TEXT, "alt_shared_by_too_many_images"),
            ),
            ("Picture from our gallery", 10, "alt_shared_by_10_images_kept", kept()),
        ]
        hosts = {12: SHOP, 11: MARKET, 10: BLOG}
        photos = ["chelsea", "flower", "motorcycle_left", "coins", "china", "astronaut", "hubble", "camera"]
        for alt, count, case, fate in shared:
            self.alts.claim(alt)
            host = hosts[count]
            for index in range(count):
                photo = photos[index % len(photos)]
                url = self.fresh_variant(host, "media/items", photo, case)
                page = self.page(f"{host}/item/{case}-{index:02d}.html", "en", f"Item {index + 1}")
                page.blocks.append("<p>Details, shipping and returns below.</p>")
                page.blocks.append(self.img(page, urlsplit(url).path, alt, case, fate))

    def plant_many_alts_cases(self) -> None:
        """One URL with 1001 distinct alts (a sprite), one with exactly 1000 (a default listing photo), and one photo
        at two URLs whose alts add up to 1001 (a stock header image): filter-text counts by URL, filter-image by
        content."""
        sprite = self.variant(
            f"{SHOP}/static/tiles-sprite.png",
            "colorwheel",
            "image_url_with_1001_alts",
            size=(240, 240),
            image_format="PNG",
            zoom=1.0,
        )
        titles = [
            f"{MATERIALS[n % 10]} {PRODUCTS[n // 10 % 8]} in {COLOURS[n // 80 % 7]} item {n:04d}" for n in range(1001)
        ]
        self._listing_pages(
            SHOP,
            "catalog",
            sprite,
            titles,
            "image_url_with_1001_alts",
            rejected(FILTER_TEXT, "image_url_has_too_many_alts"),
        )

        default = self.variant(
            f"{MARKET}/img/default-listing.jpg", "horse", "image_url_with_1000_alts_kept", size=(280, 230), zoom=1.0
        )
        titles = [f"Used {USED_GOODS[n % 6]} for sale in {TOWNS[n // 6 % 6]} listing {n:04d}" for n in range(1000)]
        self._listing_pages(MARKET, "listings", default, titles, "image_url_with_1000_alts_kept", kept())

        stock = encode_image(crop_resize(self.photo("flower"), 300, 300, self.rng, 0.8), quality=85)
        case = "image_content_with_1001_alts_at_two_urls"
        fate = rejected(FILTER_IMAGE, "image_has_too_many_alts")
        first = self.archive_image(f"{RECIPES}/media/stock/dahlia.jpg", stock, photo="flower", case=case)
        second = self.archive_image(
            f"{GARDEN}/wp-content/uploads/dahlia-header.jpg", stock, photo="flower", case=case, shared_bytes=True
        )
        titles = [f"{DISHES[n % 6]} with {INGREDIENTS[n // 6 % 6]} recipe number {n:03d}" for n in range(501)]
        self._listing_pages(RECIPES, "recipes", first, titles, case, fate)
        titles = [f"Garden diary entry {n:03d} about {GARDEN_TOPICS[n % 5]}" for n in range(500)]
        self._listing_pages(GARDEN, "diary", second, titles, case, fate)

    def _listing_pages(
        self, host: str, folder: str, image_url: str, titles: Sequence[str], case: str, fate: dict[str, Any]
    ) -> None:
        """Listing pages of 25 tiles, each tile the same image with its own title as alt text."""
        # Tiles reference the image root-relative when it lives on the same host, as listing templates do.
        same_host = urlsplit(image_url).netloc == urlsplit(host).netloc
        ref = urlsplit(image_url).path if same_host else image_url
        for start in range(0, len(titles), TILES_PER_LISTING_PAGE):
            number = start // TILES_PER_LISTING_PAGE + 1
            page = self.page(f"{host}/{folder}/page-{number:02d}.html", "en", f"{folder.title()}, page {number}")
            tiles = []
            for offset, title in enumerate(titles[start : start + TILES_PER_LISTING_PAGE]):
                self.alts.claim(title)
                tag = self.img(page, ref, title, case, fate, figure=False, extra=' width="120" height="120"')
                tiles.append(
                    f'<li><a href="/{folder}/{start + offset}">{tag}</a> <span>{html.escape(title)}</span></li>'
                )
            page.blocks.append('<ul class="tiles">\n' + "\n".join(tiles) + "\n</ul>")

    def plant_length_cases(self) -> None:
        """Alt texts of 1, 2, 3, 20 and 21 words, a one-character Japanese alt, and one over 1000 characters."""
        page = self.page(f"{BLOG}/2023/11/cats-of-the-neighbourhood.html", "en", "Cats of the neighbourhood")
        twenty = "A tabby cat with green eyes and long white whiskers looks straight into the camera in soft warm afternoon light"
        twenty_one = twenty + " today"
        cases = [
            ("Chelsea", "alt_1_word", rejected(FILTER_TEXT, "alt_too_short")),
            ("tabby cat", "alt_2_words", rejected(FILTER_TEXT, "alt_too_short")),
            ("curious tabby cat", "alt_3_words_kept", kept()),
            (twenty, "alt_20_words_kept", kept()),
            (twenty_one, "alt_21_words", rejected(FILTER_TEXT, "alt_too_long")),
            ("猫", "alt_1_cjk_character", rejected(FILTER_TEXT, "alt_too_short")),
        ]
        assert len(twenty.split()) == 20 and len(twenty_one.split()) == 21
        for alt, case, fate in cases:
            url = self.fresh_variant(BLOG, "media/cats", "chelsea", case)
            page.blocks.append(self.img(page, url, self.alts.claim(alt), case, fate))
        stuffed = " ".join(
            f"cheap cat photos {word} best cat pictures free download" for word in ["today", "online", "now"] * 14
        )
        assert len(stuffed) > 1000
        url = self.fresh_variant(BLOG, "media/cats", "chelsea", "alt_over_1000_characters")
        page.blocks.append(
            self.img(
                page, url, self.alts.claim(stuffed), "alt_over_1000_characters", rejected(EXTRACT, "alt_too_long_chars")
            )
        )

    def plant_duplicate_cases(self) -> None:
        """Exact duplicates: the same (URL, alt) on two pages and three times (twice on one page); the same bytes at
        two URLs with the same alt; and, as a control, the same bytes at two URLs with different alts (both kept)."""
        first = self.page(f"{BLOG}/2023/05/summer-palace.html", "en", "A day at the Summer Palace")
        second = self.page(f"{BLOG}/2023/05/beijing-highlights.html", "en", "Beijing highlights")
        url = self.fresh_variant(CDN, "photos/beijing", "china", "duplicate_pair_two_pages")
        alt = self.alts.take("china")
        fate = kept_one("duplicate_pair_two_pages", FILTER_TEXT, "duplicate_pair")
        for page in (first, second):
            page.blocks.append(self.img(page, url, alt, "duplicate_pair_two_pages", fate))

        url = self.fresh_variant(CDN, "photos/space", "hubble", "duplicate_pair_three_times")
        alt = self.alts.take("hubble")
        fate = kept_one("duplicate_pair_three_times", FILTER_TEXT, "duplicate_pair")
        for page in (first, first, second):
            page.blocks.append(self.img(page, url, alt, "duplicate_pair_three_times", fate))

        photo = encode_image(crop_resize(self.photo("china"), 360, 240, self.rng, 0.9), quality=86)
        alt = self.alts.take("china")
        case = "duplicate_image_alt_two_urls"
        fate = kept_one(case, FILTER_IMAGE, "duplicate_image_alt")
        mirror = self.page("https://mirror.example.org/beijing/summer-palace.html", "en", "Summer Palace (mirror)")
        for page, url in (
            (first, f"{CDN}/photos/beijing/pagoda-lake.jpg"),
            (mirror, "https://mirror.example.org/img/pagoda-lake.jpg"),
        ):
            self.archive_image(url, photo, photo="china", case=case, shared_bytes=True)
            page.blocks.append(self.img(page, url, alt, case, fate))

        photo = encode_image(crop_resize(self.photo("flower"), 320, 280, self.rng, 0.85), quality=84)
        case = "same_image_two_urls_different_alts_kept"
        for page, url in (
            (second, f"{CDN}/photos/garden/dahlia-bloom.jpg"),
            (mirror, "https://mirror.example.org/img/dahlia-bloom.jpg"),
        ):
            self.archive_image(url, photo, photo="flower", case=case, shared_bytes=True)
            page.blocks.append(self.img(page, url, self.alts.take("flower"), case))

    # -- planted cases: the image rules and fetch ---------------------------------------------------------------------

    def plant_image_cases(self) -> None:
        """Sizes and aspect ratios at and around ALIGN's thresholds (shorter side > 200 px, aspect < 3)."""
        page = self.page(f"{BLOG}/2023/08/pictures-in-all-shapes.html", "en", "Pictures in all shapes")
        too_small, extreme = (
            rejected(FILTER_IMAGE, "image_too_small"),
            rejected(FILTER_IMAGE, "aspect_ratio_too_extreme"),
        )
        cases = [
            ("chelsea", (150, 400), "image_150x400_too_small", too_small),
            ("chelsea", (120, 120), "image_120x120_thumbnail", too_small),
            ("astronaut", (200, 300), "image_shorter_side_200", too_small),
            ("astronaut", (201, 300), "image_shorter_side_201_kept", kept()),
            ("hubble", (900, 250), "aspect_ratio_3_6", extreme),
            ("hubble", (750, 250), "aspect_ratio_exactly_3", extreme),
            ("hubble", (747, 250), "aspect_ratio_2_99_kept", kept()),
            ("hubble", (240, 800), "aspect_ratio_tall_3_33", extreme),
        ]
        for photo, size, case, fate in cases:
            url = self.fresh_variant(CDN, "photos/shapes", photo, case, size=size)
            # The page declares a large display size: the rules must look at the image's own pixels.
            dims = f' width="{size[0] * 4}" height="{size[1] * 4}"'
            page.blocks.append(self.img(page, url, self.alts.take(ORDINARY_PHOTOS[photo]), case, fate, extra=dims))

    def plant_eval_cases(self) -> None:
        """The stand-in evaluation set, and a resized, re-compressed, slightly cropped copy of its first photo."""
        for name in EVAL_PHOTOS:
            self.eval_files[f"{name}.jpg"] = encode_image(self.photo(name), quality=90)
        original = self.photo(EVAL_PHOTOS[0])
        width, height = original.size
        # 1% off each side: pHash moves fast under cropping (2% already costs ~8 bits on this photo).
        box = (round(width * 0.01), round(height * 0.01), round(width * 0.99), round(height * 0.99))
        copy = original.resize((430, 287), Image.Resampling.BILINEAR, box=box)
        url = self.archive_image(
            f"{CDN}/photos/cafe/espresso-cup.jpg",
            encode_image(copy, quality=70),
            photo="coffee",
            case="eval_near_duplicate",
        )
        fate = rejected(FILTER_IMAGE, "eval_near_duplicate")
        for lang, alt in (
            ("en", "Espresso in a red cup and saucer on a wooden table"),
            ("de", "Espresso in roter Tasse mit Löffel auf einem Holztisch"),
        ):
            page = self.page(f"https://travel.example.com/cafes/{lang}/morning-coffee.html", lang, "Morning coffee")
            page.blocks.append(self.img(page, url, self.alts.claim(alt), "eval_near_duplicate", fate))

    def plant_fetch_cases(self) -> None:
        """An image URL the archive lacks (fetch fails; the reason depends on the network), HTML served as a JPEG,
        and a truncated JPEG."""
        page = self.page(f"{BLOG}/2021/02/lost-pictures.html", "en", "Lost pictures")
        missing = "https://images.missing.invalid/photos/astronaut-portrait.jpg"
        self.images[missing] = ArchivedImageRecord(
            missing, b"", "", "astronaut", None, None, "image_not_archived", False, False
        )
        page.blocks.append(
            self.img(page, missing, self.alts.take("astronaut"), "image_not_archived", rejected(FETCH, None))
        )

        url = f"{CDN}/photos/moved/motorcycle-garage.jpg"
        moved = b"<!DOCTYPE html><html><body><h1>This picture has moved</h1><p>See our new gallery.</p></body></html>"
        self.archive_image(url, moved, photo="none", case="html_served_as_jpeg", decodable=False)
        page.blocks.append(
            self.img(page, url, self.alts.take("motorcycle"), "html_served_as_jpeg", rejected(FETCH, "not_an_image"))
        )

        whole = encode_image(crop_resize(self.photo("astronaut"), 400, 400, self.rng, 0.9), quality=88)
        url = f"{CDN}/photos/partial/astronaut-portrait.jpg"
        self.archive_image(
            url, whole[: len(whole) * 55 // 100], photo="astronaut", case="truncated_jpeg", decodable=False
        )
        page.blocks.append(
            self.img(page, url, self.alts.take("astronaut"), "truncated_jpeg", rejected(FETCH, "decode_error"))
        )

    # -- planted cases: extraction --------------------------------------------------------------------------------------

    def plant_source_cases(self) -> None:
        """``data:`` and ``javascript:`` sources and an unparsable URL (rejected at extract), relative URLs, ``<base
        href>``, protocol-relative URLs, an entity in a query string, ``srcset``-only and ``data-src`` lazy images."""
        page = self.page(f"{BLOG}/2022/07/walks/harbour-walk.html", "en", "A walk by the harbour")
        bad = [
            (PIXEL_GIF, "Small inline icon of a camera", "data_url", "unsupported_url_scheme"),
            ("javascript:void(0)", "Open the photo viewer for this album", "javascript_url", "unsupported_url_scheme"),
            ("http://[broken-ipv6/pic.jpg", "Photo of the harbour with a broken link", "invalid_url", "invalid_url"),
        ]
        for ref, alt, case, reason in bad:
            page.blocks.append(
                self.img(page, ref, self.alts.claim(alt), case, rejected(EXTRACT, reason), image_url=ref)
            )
        forms = [
            ("../../../media/walks/{name}", "relative_url_dot_dot"),
            ("/media/walks/{name}", "relative_url_root"),
            ("photos/{name}", "relative_url_same_folder"),
            ("//www.photo-blog.example.com/media/walks/cdn/{name}", "protocol_relative_url"),
        ]
        for index, (template, case) in enumerate(forms):
            photo = ["motorcycle_right", "coins", "china", "flower"][index]
            name = f"{photo.replace('_', '-')}-{case.replace('_', '-')}.jpg"
            url = urljoin(page.url, template.format(name=name))
            self.variant(url, photo, case)
            page.blocks.append(self.img(page, template.format(name=name), self.alts.take(ORDINARY_PHOTOS[photo]), case))
        url = f"{BLOG}/media/thumb.php?id=17&w=480"
        self.variant(url, "camera", "url_with_entity_in_query")
        ref = "/media/thumb.php?id=17&amp;w=480"
        page.blocks.append(self.img(page, ref, self.alts.take("camera"), "url_with_entity_in_query"))

        # <base href> on another host, then a relative one; root-relative and absolute references ignore the path.
        page = self.page(
            "https://travel.example.com/2023/space/astronauts.html",
            "en",
            "Astronauts",
            base_href="https://cdn.example.net/albums/space/",
        )
        self.variant("https://cdn.example.net/albums/space/astronaut-portrait.jpg", "astronaut", "base_href_absolute")
        page.blocks.append(self.img(page, "astronaut-portrait.jpg", self.alts.take("astronaut"), "base_href_absolute"))
        page = self.page(
            "https://news.example.net/science/2023/deep-field.html", "en", "The deep field", base_href="/static/v2/"
        )
        self.variant("https://news.example.net/static/v2/img/hubble-deep-field.jpg", "hubble", "base_href_relative")
        page.blocks.append(self.img(page, "img/hubble-deep-field.jpg", self.alts.take("hubble"), "base_href_relative"))
        self.variant("https://news.example.net/assets/hubble-crop.jpg", "hubble", "base_href_root_relative")
        page.blocks.append(
            self.img(page, "/assets/hubble-crop.jpg", self.alts.take("hubble"), "base_href_root_relative")
        )

        page = self.page(f"{BLOG}/2022/09/lazy-gallery.html", "en", "Lazy gallery")
        url = self.variant(f"{BLOG}/media/lazy/tabby-cat.jpg", "chelsea", "data_src_lazy")
        page.blocks.append(
            self.img(
                page,
                "/media/lazy/tabby-cat.jpg",
                self.alts.take("chelsea"),
                "data_src_lazy",
                attribute="data-src",
                extra=f' src="{PIXEL_GIF}" class="lazyload"',
            )
        )
        url = self.variant(f"{BLOG}/media/lazy/dahlia-800.jpg", "flower", "srcset_only_width_descriptor")
        page.blocks.append(
            self.img(
                page,
                "/media/lazy/dahlia-800.jpg 800w",
                self.alts.take("flower"),
                "srcset_only_width_descriptor",
                attribute="srcset",
                extra=' sizes="100vw"',
                image_url=url,
            )
        )
        # Several candidates: the extractor takes the largest (pipeline/html_images.py); only that one is archived.
        url = self.variant(f"{BLOG}/media/lazy/astronaut-960.jpg", "astronaut", "srcset_largest_candidate")
        srcset = (
            "/media/lazy/astronaut-480.jpg 480w, /media/lazy/astronaut-960.jpg 960w, /media/lazy/astronaut-720.jpg 720w"
        )
        page.blocks.append(
            self.img(
                page, srcset, self.alts.take("astronaut"), "srcset_largest_candidate", attribute="srcset", image_url=url
            )
        )
        url = self.variant(f"{CDN}/lazy/coins-2x.jpg", "coins", "srcset_only_density_descriptor")
        page.blocks.append(
            self.img(
                page,
                "//cdn.example.net/lazy/coins-2x.jpg 2x",
                self.alts.take("coins"),
                "srcset_only_density_descriptor",
                attribute="srcset",
                image_url=url,
            )
        )
        url = self.variant(f"{BLOG}/media/lazy/moon.jpg", "moon", "picture_element")
        tag = self.img(page, "/media/lazy/moon.jpg", self.alts.take("moon"), "picture_element", figure=False)
        page.blocks.append(f'<picture><source srcset="/media/lazy/moon.webp" type="image/webp">{tag}</picture>')

    def plant_text_encoding_cases(self) -> None:
        """Entities (named, decimal, hex, ``&nbsp;``, escaped twice), whitespace to collapse, a decomposed (NFD) alt."""
        page = self.page(f"{BLOG}/2023/02/notes-with-entities.html", "en", "Notes with entities")
        cases = [
            ("chelsea", "Chelsea the cat &amp; her green eyes", "entity_amp"),
            ("flower", "Orange dahlia in the jardin d&#233;coratif", "entity_decimal"),
            ("hubble", "Hubble deep field &#x2014; thousands of galaxies", "entity_hex"),
            ("china", "The &quot;Tower of Buddhist Incense&quot; in Beijing", "entity_quot"),
            ("motorcycle_left", "Red&nbsp;motorcycle&nbsp;parked in a&nbsp;garage", "entity_nbsp"),
            ("astronaut", "Portrait d&amp;eacute;taill&amp;eacute; d'une astronaute", "entity_escaped_twice"),
            ("gravel", "  Grey gravel\n\tstones   photographed from above ", "alt_whitespace_collapsed"),
            ("flower", unicodedata.normalize("NFD", "Dahlia orange photographié en été"), "alt_nfd_normalised"),
        ]
        for photo, raw, case in cases:
            url = self.fresh_variant(BLOG, "media/notes", photo, case)
            alt = self.alts.claim(normalise_expected_alt(html.unescape(raw)))
            page.blocks.append(self.img(page, urlsplit(url).path, alt, case, alt_raw=raw))

    def plant_charset_cases(self) -> None:
        """Pages that are not UTF-8: Shift_JIS declared only by the HTTP header, EUC-JP only by ``<meta http-equiv>``,
        windows-1252 only by ``<meta charset>``; and a gzip Content-Encoding page."""
        specs = [
            (
                "shift_jis",
                "Shift_JIS",
                None,
                None,
                "shift_jis_http_header",
                "ja",
                "https://jp.shashin.example.com/sjis/gallery.html",
            ),
            (
                "euc_jp",
                None,
                None,
                '<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">',
                "euc_jp_meta_http_equiv",
                "ja",
                "https://jp.shashin.example.com/eucjp/index.html",
            ),
        ]
        for encoding, header, meta, head, case, lang, url in specs:
            page = self.page(
                url,
                lang,
                "写真ギャラリー",
                encoding=encoding,
                header_charset=header,
                meta_charset=meta,
                head=[head] if head else [],
                case=case,
            )
            page.blocks.append(f"<p>{PAGE_WORDS['ja']}</p>")
            for pool in ("chelsea", "china", "flower"):
                alt = self.alts.take(pool, "ja", accept=lambda text, encoding=encoding: _encodable(text, encoding))
                image = self.fresh_variant("https://jp.shashin.example.com", "img", _photo_of(pool), case)
                page.blocks.append(self.img(page, urlsplit(image).path, alt, case))

        page = self.page(
            "https://fr.voyages.example.org/archives/vieux-site.html",
            "fr",
            "Archives du vieux site",
            encoding="windows-1252",
            header_charset=None,
            meta_charset="windows-1252",
            case="windows_1252_meta_charset",
        )
        for photo, alt in (
            ("chelsea", "Chat tigré “Chelsea” aux yeux verts"),
            ("coins", "Pièces grecques antiques – collection d’un musée"),
            ("motorcycle_left", "Moto rouge garée dans l’atelier à côté des cartons"),
        ):
            image = self.fresh_variant("https://fr.voyages.example.org", "images", photo, "windows_1252_meta_charset")
            page.blocks.append(self.img(page, image, self.alts.claim(alt), "windows_1252_meta_charset"))

        page = self.page(
            "https://news.example.net/compressed/space-week.html",
            "en",
            "Space week",
            content_encoding="gzip",
            case="gzip_content_encoding",
        )
        for pool in ("astronaut", "hubble"):
            page.blocks.append(self.ordinary_figure(page, "en", "gzip_content_encoding", pool=pool))

    def plant_markup_cases(self) -> None:
        """An old hand-written page: upper-case tags, unquoted and single-quoted attributes, a duplicated alt (the
        first wins), stray ``<``, unclosed and misnested tags, images in a comment and a script (not elements),
        alt-less, empty and blank alts, and a tag cut off by the end of the file (dropped)."""
        url = f"{BLOG}/old-site/guestbook.html"
        page = self.page(url, None, "Old guestbook", case="broken_markup")
        refs = {
            photo: self.fresh_variant(BLOG, "old-site/pics", photo, "broken_markup")
            for photo in ("chelsea", "moon", "coins", "flower", "china")
        }
        path = {photo: urlsplit(ref).path for photo, ref in refs.items()}
        alt = {photo: self.alts.take(ORDINARY_PHOTOS[photo]) for photo in refs}
        self.alts.claim("second alt attribute is ignored")
        lines = [
            "<HTML><HEAD><TITLE>Old guestbook</TITLE>",
            "<BODY BGCOLOR=#ffffff><CENTER><FONT FACE=Arial SIZE=2>",
            "<P>Welcome to my homepage! Prices < 20 euros & more",
            self.img(page, path["chelsea"], alt["chelsea"], "uppercase_unquoted_attributes", figure=False)
            .replace(f'src="{path["chelsea"]}"', f"SRC={path['chelsea']}")
            .replace("<img ", "<IMG ")
            .replace(" alt=", " ALT="),
            "<p>An unclosed paragraph <b><i>with misnested tags</b></i>",
            f"<img alt='{html.escape(alt['moon'], quote=True)}' src='{path['moon']}'>",
            "<table><tr><td>first cell<td>"
            + self.img(page, path["coins"], alt["coins"], "image_in_unclosed_table_cell", figure=False)
            + "</table>",
            self.img(page, path["flower"], alt["flower"], "duplicate_alt_attribute_first_wins", figure=False).replace(
                ">", ' alt="second alt attribute is ignored">'
            ),
            self.img(page, path["china"], alt["china"], "xhtml_self_closing", figure=False).replace(">", " />"),
            self.not_a_candidate(page, "img_without_alt", "<img src=/old-site/pics/spacer.gif>"),
            self.not_a_candidate(page, "empty_alt", '<img src="/old-site/pics/divider.gif" alt="">'),
            self.not_a_candidate(page, "blank_alt", '<img src="/old-site/pics/blank.gif" alt=" &nbsp; ">'),
            self.not_a_candidate(
                page, "img_in_comment", '<!-- <img src="/old-site/pics/boat.jpg" alt="A boat on the lake"> -->'
            ),
            self.not_a_candidate(
                page,
                "img_in_script",
                '<script>document.write(\'<img src="/counter.gif" alt="visitor counter">\');</script>',
            ),
            "</FONT>",
            self.not_a_candidate(
                page,
                "tag_cut_off_at_end_of_file",
                '<p>The page ends here <img src="/old-site/pics/last.jpg" alt="cut off at the end of',
            ),
        ]
        # The single-quoted <img> was written by hand above: register it.
        self.expect(page, refs["moon"], alt["moon"], "single_quoted_attributes", kept())
        page.raw_markup = "\n".join(lines)

    # -- everything ---------------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Plant every case, then the ordinary pages, then shuffle the page order (seeded) like a crawl's."""
        self.plant_eval_cases()
        self.plant_frequency_cases()
        self.plant_many_alts_cases()
        self.plant_length_cases()
        self.plant_source_cases()
        self.plant_text_encoding_cases()
        self.plant_markup_cases()
        self.make_ordinary_variants()
        self.plant_duplicate_cases()
        self.plant_image_cases()
        self.plant_fetch_cases()
        self.plant_charset_cases()
        self.ordinary_pages()
        self.rng.shuffle(self.pages)


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _photo_of(pool: str) -> str:
    return next(photo for photo, name in ORDINARY_PHOTOS.items() if name == pool)


# ---------------------------------------------------------------------------------------------------------------------
# Writing.

#: Responses that are neither HTML pages with images nor images: the extractor must pass over them quietly.
OTHER_RESPONSES: list[tuple[str, str, str, bytes]] = [
    (f"{SHOP}/robots.txt", "200 OK", "text/plain", b"User-agent: *\nDisallow: /cart/\n"),
    (f"{BLOG}/static/site.css", "200 OK", "text/css", b"body { font-family: serif; }\nfigure { margin: 0; }\n"),
    (
        f"{BLOG}/2019/gone.html",
        "404 Not Found",
        "text/html; charset=utf-8",
        b"<!DOCTYPE html><html><body><h1>Not found</h1></body></html>",
    ),
    (f"{BLOG}/old-home", "301 Moved Permanently", "text/html; charset=utf-8", b""),
]


class _RecordIds:
    """WARC-Record-IDs and WARC-Dates derived from the seed and the record's position: reruns write the same bytes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.count = 0

    def next(self) -> dict[str, str]:
        digest = hashlib.sha256(f"altcorpus-sample:{self.seed}:{self.count}".encode()).digest()
        date = CRAWL_START + timedelta(seconds=3 * self.count)
        self.count += 1
        return {
            "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>",
            "WARC-Date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _write_warc(builder: SampleBuilder, path: Path) -> None:
    """Write the archive: a warcinfo record, then each page (request + response) followed by the images it is the
    first to reference (response only), then a few other responses."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    ids = _RecordIds(builder.seed)
    with path.open("wb") as output:
        writer = WARCWriter(output, gzip=True)

        def response(url: str, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
            http_headers = StatusAndHeaders(status, [*headers, ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(body),
                length=len(body),
                http_headers=http_headers,
                warc_headers_dict=ids.next(),
            )
            writer.write_record(record)

        def request(url: str) -> None:
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = [("Host", parts.netloc), ("User-Agent", "altcorpus-sample/1.0"), ("Accept", "*/*")]
            http_headers = StatusAndHeaders(f"GET {target} HTTP/1.1", headers, is_http_request=True)
            record = writer.create_warc_record(
                url,
                "request",
                payload=io.BytesIO(b""),
                length=0,
                http_headers=http_headers,
                warc_headers_dict=ids.next(),
            )
            writer.write_record(record)

        info = (
            f"software: altcorpus make-sample (seed {builder.seed})\r\n"
            "format: WARC File Format 1.1\r\n"
            "description: generated sample; photos from scikit-image and scikit-learn\r\n"
        ).encode()
        warcinfo = writer.create_warc_record(
            "",
            "warcinfo",
            payload=io.BytesIO(info),
            length=len(info),
            warc_content_type="application/warc-fields",
            warc_headers_dict={**ids.next(), "WARC-Filename": WARC_NAME},
        )
        writer.write_record(warcinfo)

        written: set[str] = set()
        referenced = _images_by_page(builder)
        for page in builder.pages:
            body = page.body()
            headers = [("Content-Type", page.content_type()), ("Server", "nginx")]
            if page.content_encoding:
                headers.append(("Content-Encoding", page.content_encoding))
            request(page.url)
            response(page.url, "200 OK", headers, body)
            for url in referenced.get(page.url, []):
                image = builder.images[url]
                if url in written or not image.archived:
                    continue
                written.add(url)
                response(url, "200 OK", [("Content-Type", image.content_type), ("Server", "nginx")], image.body)
        # Crawls also hold images no page of theirs links to (with few --pages, some CDN crops go unused): last.
        for url in sorted(builder.images):
            image = builder.images[url]
            if image.archived and url not in written:
                response(url, "200 OK", [("Content-Type", image.content_type), ("Server", "nginx")], image.body)
        for url, status, content_type, body in OTHER_RESPONSES:
            headers = [("Content-Type", content_type)]
            if status.startswith("301"):
                headers.append(("Location", f"{BLOG}/"))
            response(url, status, headers, body)


def _images_by_page(builder: SampleBuilder) -> dict[str, list[str]]:
    """Image URLs each page references (in oracle order, de-duplicated), for writing images after their page."""
    by_page: dict[str, list[str]] = {}
    for entry in builder.candidates:
        urls = by_page.setdefault(entry[PAGE_URL], [])
        if entry[IMAGE_URL] in builder.images and entry[IMAGE_URL] not in urls:
            urls.append(entry[IMAGE_URL])
    return by_page


def _oracle(builder: SampleBuilder) -> dict[str, Any]:
    """The content of expected.json."""
    cases = Counter(entry["case"] for entry in builder.candidates)
    fates = Counter(entry["fate"] for entry in builder.candidates)
    groups = {entry["duplicate_group"] for entry in builder.candidates if entry["fate"] == "kept_one"}
    return {
        "oracle_version": ORACLE_VERSION,
        "seed": builder.seed,
        "warc_file": WARC_NAME,
        "assumes": {
            "preset": "align",
            "max_images_per_alt": MAX_IMAGES_PER_ALT,
            "max_alts_per_image_url": MAX_ALTS_PER_IMAGE,
            "max_alts_per_image_content": MAX_ALTS_PER_IMAGE,
            "min_unigrams": 3,
            "max_unigrams": 20,
            "min_shorter_side_px": MIN_SHORTER_SIDE,
            "max_aspect_ratio_exclusive": 3.0,
            "eval_index": f"built from {EVAL_DIR_NAME}/ by `python -m pipeline eval-index`",
            "network": "none needed: every image but the .invalid one is archived",
        },
        "counts": {
            "pages": len(builder.pages),
            "candidates": len(builder.candidates),
            "expected_kept": fates["kept"] + len(groups),
            "fates": dict(sorted(fates.items())),
            "cases": dict(sorted(cases.items())),
            "non_candidates": len(builder.non_candidates),
        },
        "candidates": builder.candidates,
        "non_candidates": builder.non_candidates,
        "images": {url: builder.images[url].oracle() for url in sorted(builder.images)},
        "pages": [
            {
                "url": page.url,
                "encoding": page.encoding,
                "header_charset": page.header_charset,
                "meta_charset": page.meta_charset,
                "content_encoding": page.content_encoding,
                "case": page.case,
            }
            for page in builder.pages
        ],
        "eval_images": {
            name: {"width": size[0], "height": size[1], "sha256": hashlib.sha256(body).hexdigest()}
            for name, body in sorted(builder.eval_files.items())
            for size in [Image.open(io.BytesIO(body)).size]
        },
    }


def _oracle_json(oracle: dict[str, Any]) -> str:
    """expected.json's text: one line per candidate, image and page, so it stays small and diffs read well."""
    parts = []
    for key, value in oracle.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            body = ",\n".join(json.dumps(item, ensure_ascii=False) for item in value)
            text = f"[\n{body}\n]"
        elif key == "images":
            body = ",\n".join(f"{json.dumps(url)}: {json.dumps(item)}" for url, item in value.items())
            text = f"{{\n{body}\n}}"
        else:
            text = json.dumps(value, ensure_ascii=False, indent=1)
        parts.append(f"{json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def generate_sample(output_dir: str, pages: int = DEFAULT_PAGES, seed: int = 0) -> dict[str, Any]:
    """Write sample.warc.gz, expected.json and eval/ under ``output_dir``; returns paths and counts."""
    if not MIN_PAGES <= pages <= MAX_PAGES:
        raise ValueError(f"pages must be between {MIN_PAGES} and {MAX_PAGES} (the alt-text pools are sized for that)")
    builder = SampleBuilder(pages, seed)
    builder.build()
    root = Path(output_dir)
    eval_dir = root / EVAL_DIR_NAME
    eval_dir.mkdir(parents=True, exist_ok=True)
    for stale in eval_dir.glob("*.jpg"):
        stale.unlink()
    for name, body in builder.eval_files.items():
        (eval_dir / name).write_bytes(body)
    warc_path = root / WARC_NAME
    # Written under a temporary name and renamed: make's target is the WARC, never half-written.
    partial = root / f".{WARC_NAME}.partial"
    _write_warc(builder, partial)
    oracle = _oracle(builder)
    expected_path = root / EXPECTED_NAME
    expected_path.write_text(_oracle_json(oracle), encoding="utf-8")
    partial.replace(warc_path)
    archived = [image for image in builder.images.values() if image.archived]
    return {
        "warc": str(warc_path),
        "expected": str(expected_path),
        "eval_dir": str(eval_dir),
        "pages": len(builder.pages),
        "images": len(archived),
        "image_urls": len({entry[IMAGE_URL] for entry in builder.candidates}),
        "candidates": len(builder.candidates),
        "expected_kept": oracle["counts"]["expected_kept"],
        "warc_bytes": warc_path.stat().st_size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline make-sample``: generate the sample and print what it holds."""
    parser = argparse.ArgumentParser(prog="python -m pipeline make-sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="build/sample", help="Folder to write into (default: build/sample)")
    parser.add_argument(
        "--pages", type=int, default=DEFAULT_PAGES, help=f"Ordinary article pages, {MIN_PAGES}..{MAX_PAGES}"
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed: the same seed gives byte-identical files")
    args = parser.parse_args(argv)
    if not MIN_PAGES <= args.pages <= MAX_PAGES:
        parser.error(f"--pages must be between {MIN_PAGES} and {MAX_PAGES}")
    summary = generate_sample(args.output, pages=args.pages, seed=args.seed)
    print(
        f"sample: {summary['pages']} pages, {summary['images']} archived images, {summary['image_urls']} distinct "
        f"image URLs in candidates, {summary['candidates']} candidates ({summary['expected_kept']} expected kept), "
        f"{summary['warc_bytes']:,} bytes -> {summary['warc']}"
    )
    return 0
