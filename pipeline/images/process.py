"""Image bytes -> the stored image: sniff, decode under a pixel limit, hash, resize as img2dataset does, re-encode.

Resize modes follow img2dataset's ``resizer.py`` with ``resize_only_if_bigger=True`` (never upscale):
- ``keep_ratio``: the shorter side becomes ``image_size`` (only when it is larger), aspect ratio kept;
- ``center_crop``: as keep_ratio, then the centre ``image_size`` x ``image_size`` square;
- ``keep_ratio_largest``: the longer side becomes ``image_size`` (only when it is larger);
- ``border``: as keep_ratio_largest, then padded with white to an ``image_size`` square;
- ``no``: the decoded image as it is (still re-encoded as JPEG).
An image too small to need a resize is stored at its size, uncropped and unpadded, as img2dataset does.

Transparent images are flattened on white (img2dataset's alpha matting), EXIF orientation is applied, and the JPEG
is re-encoded by Pillow without metadata: the same bytes in always give the same bytes out. JPEGs are decoded at the
smallest DCT scale still at least as large as the output (Pillow's ``draft``), which is several times faster than a
full decode and visually identical after the resize. Downscaling is area averaging (Pillow's BOX, img2dataset's
default ``cv2.INTER_AREA``); the pHash is taken on the scaled image before any crop or pad.

Memory and time: a few hundred KB of PNG can declare 89 million RGBA pixels (under the pixel limit) and take 1.5 GB
and seconds of CPU to decode and flatten. Before any pixel is decoded, the image's working set is estimated from its
header (``decode_bytes``: pixels at the size actually decoded, a JPEG's draft scale included, times the bytes Pillow
stores per pixel plus two 4-byte working copies for conversion or rotation) and reserved from the worker's
``DecodeBudget``, shared by its threads: an image waits (first come, first served) until it fits, one larger than the
whole budget runs alone, and the wait counts against the processing deadline. The deadline is checked before the
decode (refused when the remaining time cannot cover the decode at ``DECODE_NS_PER_PIXEL``) and after it; a decode
that has started cannot be interrupted. The draft scale of JPEGs is what it always was (unchanged by the budget), so
the stored bytes do not depend on memory pressure.

Keeping the original (``keep_original=True``, fetch's ``keep_original_bytes``; img2dataset's ``resize_mode=no``
with its re-encoding skipped): a JPEG, PNG or WebP is stored as the very bytes obtained, unresized, with its
format's extension in the shards (``ORIGINAL_EXTENSIONS``: what open_clip_train's loader reads); any other format
(GIF, BMP, TIFF, ICO, AVIF) is re-encoded as JPEG at its full decoded size. The image is still decoded, checked
(pixel limit, memory budget, deadline, decode errors) and hashed exactly as without the option, the resize settings
giving only the scale the pHash is taken at: ``sha256`` (of the bytes obtained, which are now also the bytes stored)
and ``phash`` equal a default run's, so duplicate removal by content and evaluation decontamination by pHash
(whose index ``eval_index.phash_of_bytes`` builds with the default settings) select the same images either way.
``width``/``height`` are then the original size as displayed (after EXIF orientation); the stored bytes keep
their EXIF orientation, which a loader must apply (WebDataset's ``pilrgb`` decoder does not).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps

from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type

RESIZE_MODES = ("keep_ratio", "center_crop", "border", "keep_ratio_largest", "no")

# Formats a web image may legitimately be in. Pillow's other plugins (EPS calls Ghostscript, PSD, FITS, ...) are
# attack surface with no image-text value, so they are never tried.
Image.init()
DECODABLE_FORMATS = tuple(
    name for name in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "ICO") if name in Image.OPEN
)

# The pixel limit is checked explicitly per decode (``max_pixels``); Pillow's own global warning adds nothing.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

WHITE = (255, 255, 255)

#: Pillow formats stored as they came with ``keep_original``, and the extension of their shard member: the image
#: suffixes open_clip_train's WebDataset loader accepts (``jpg;png;jpeg;webp``); a GIF member would be skipped there.
ORIGINAL_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ImageError(Exception):
    """An image that cannot be stored: ``reason`` is one of fetch's statuses (``not_an_image``, ``decode_error``,
    ``decompression_bomb``), which its caller records as the image's status; ``detail`` says what was found."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: A decode's speed floor (a 2020s core decodes and flattens a PNG at 10-60 ns per pixel): a decode is refused
#: when the time left cannot cover this; set low so that only decodes that cannot finish are refused.
DECODE_NS_PER_PIXEL = 5.0


def decode_bytes(width: int, height: int, mode: str) -> int:
    """Estimated peak bytes of processing a ``width`` x ``height`` image decoded in ``mode``: the decoded pixels (Pillow
    keeps multi-band pixels in 4 bytes) plus two 4-byte working copies (RGB conversion and white background, or EXIF
    rotation)."""
    if mode in ("1", "L", "P"):
        stored = 1
    elif mode.startswith("I;16"):
        stored = 2
    else:
        stored = 4
    return width * height * (stored + 8)


class DecodeBudget:
    """Bytes of decoded pixels one worker's threads may hold at once, handed out first come, first served.

    A reservation larger than the whole budget is granted when nothing else is held (so it runs alone rather than
    never); a reservation still waiting at its deadline ends as ``ImageError('timeout')``.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = max(1, capacity_bytes)
        self.in_use = 0
        self.peak = 0  # the most bytes ever reserved at once (for tests and logs)
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, deadline: float | None = None) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the ``with`` block, waiting (until ``deadline``) for room."""
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or (self.in_use and self.in_use + nbytes > self.capacity):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ImageError(
                            "timeout", f"waited for {nbytes} bytes of the decode budget ({self.in_use} in use)"
                        )
                    self._changed.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()


@dataclass(frozen=True)
class ProcessedImage:
    """An image ready to store: its bytes (re-encoded, or with ``keep_original`` the input itself when
    its format is in ``ORIGINAL_EXTENSIONS``) and what was learned from the original."""

    sha256: str
    phash: int
    original_format: str
    original_width: int
    original_height: int
    original_bytes: int
    width: int
    height: int
    image_bytes: bytes


def _scaled_size(width: int, height: int, target: int, side: str) -> tuple[int, int] | None:
    """Size after scaling the shorter (``side='min'``) or longer side to ``target``; None when no downscale."""
    reference = min(width, height) if side == "min" else max(width, height)
    if reference <= target:
        return None
    scale = target / reference
    return max(1, round(width * scale)), max(1, round(height * scale))


def _output_size(width: int, height: int, mode: str, target: int) -> tuple[int, int] | None:
    if mode == "no":
        return None
    return _scaled_size(width, height, target, "min" if mode in ("keep_ratio", "center_crop") else "max")


#: Pillow's 16- and 32-bit integer greyscale modes (16-bit grey PNGs and TIFFs open as one of these).
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) greyscale -> 8-bit ``L``, 0..65535 scaled to 0..255 with rounding.

    Pillow's own ``convert`` clips these values to 0..255 instead of scaling them, so everything above 255 of 65535
    (all but the darkest 0.4 %) came out white.
    """
    values = np.asarray(image).astype(np.int64).clip(0, 65535)  # mode I may hold any 32-bit value
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (a black background would invent dark borders)."""
    if image.mode in WIDE_GREY_MODES:
        image = _wide_grey_to_l(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")  # no copy of what is RGBA already
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left, top = max(0, (width - size) // 2), max(0, (height - size) // 2)
    return image.crop((left, top, left + min(size, width), top + min(size, height)))


def _pad_white(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    canvas = Image.new("RGB", (max(size, width), max(size, height)), WHITE)
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return canvas


ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def decode_image(
    data: bytes,
    max_pixels: int,
    draft_size: tuple[int, int] | None = None,
    before_load: Callable[[Image.Image], None] | None = None,
) -> tuple[Image.Image, str, int, int]:
    """Decode ``data`` after checking its declared size: ``(image, format, original width, original height)``.

    The pixel limit is checked on the header, before any pixel is decoded, so a 100000 x 100000 PNG of a few KB
    costs nothing; ``decompression_bomb``, ``not_an_image`` and ``decode_error`` are raised as ``ImageError``.
    The original size is as displayed (after EXIF rotation); ``draft_size`` (stored orientation) lets a JPEG be
    decoded at a reduced DCT scale no smaller than it. ``before_load`` sees the opened image at the size it is about
    to be decoded at (the memory budget and deadline are applied there) and may raise ``ImageError``.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageError("decompression_bomb", str(error)) from None
    except Image.UnidentifiedImageError as error:
        # The magic bytes said image (checked first); a header Pillow cannot parse is a broken image.
        status = "decode_error" if sniff_raster_type(data[:SNIFF_BYTES]) else "not_an_image"
        raise ImageError(status, str(error)) from None
    except Exception as error:  # a corrupt header can raise almost anything inside a plugin
        raise ImageError("decode_error", f"{type(error).__name__}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError("decompression_bomb", f"{width}x{height} = {width * height} pixels > limit {max_pixels}")
    if width <= 0 or height <= 0:
        raise ImageError("decode_error", f"image declares size {width}x{height}")
    image_format = image.format or "unknown"
    try:
        if draft_size is not None and image_format == "JPEG":
            image.draft(image.mode if image.mode in ("RGB", "L") else None, draft_size)
        if before_load is not None:
            before_load(image)
        # After the budget: a PNG's eXIf chunk may follow its pixels, so Pillow decodes them to read it.
        orientation = image_orientation(image)
        if orientation in ROTATING_ORIENTATIONS:
            width, height = height, width
        image.load()
        if orientation != 1:  # exif_transpose copies even an upright image
            image = ImageOps.exif_transpose(image) or image
    except Image.DecompressionBombError as error:
        raise ImageError("decompression_bomb", str(error)) from None
    except ImageError:
        raise
    except Exception as error:  # truncated data, bad Huffman tables, zlib errors, ...
        raise ImageError("decode_error", f"{type(error).__name__}: {error}") from None
    return image, image_format, width, height


def image_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright) of an opened image; 1 when absent or unreadable."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF must not fail an otherwise good image
        return 1


def phash_uint64(image: Image.Image) -> int:
    """imagehash's 64-bit pHash as an unsigned integer (bit order of ``str(hash)``).

    imagehash shrinks to 32 x 32 with Lanczos; a box reduction to >= 64 px first makes that 4x cheaper and moves
    the hash by a fraction of a bit on average.
    """
    factor = min(image.size) // 64
    return int(str(imagehash.phash(image.reduce(factor) if factor > 1 else image)), 16)


def process_image(
    data: bytes,
    max_pixels: int,
    resize_mode: str = "keep_ratio",
    image_size: int = 512,
    jpeg_quality: int = 95,
    budget: DecodeBudget | None = None,
    deadline: float | None = None,
    keep_original: bool = False,
) -> ProcessedImage:
    """Hash, decode, resize (img2dataset semantics, no upscaling) and re-encode one image; ``ImageError`` on failure.

    With ``budget``, the decode first reserves its estimated memory (see the module docstring); with ``deadline``
    (``time.monotonic()``), a decode that cannot finish by then is refused and one that did not is ``timeout``.
    With ``keep_original``, ``data`` itself is stored (JPEG, PNG, WebP) or re-encoded unresized (other formats);
    decoding, checks and hashes are unchanged (see the module docstring).
    """
    with contextlib.ExitStack() as held:
        return _process_image(
            data, max_pixels, resize_mode, image_size, jpeg_quality, budget, deadline, held, keep_original
        )


def _process_image(
    data: bytes,
    max_pixels: int,
    resize_mode: str,
    image_size: int,
    jpeg_quality: int,
    budget: DecodeBudget | None,
    deadline: float | None,
    held: contextlib.ExitStack,
    keep_original: bool = False,
) -> ProcessedImage:
    """``process_image``, with the budget reservation kept in ``held`` until the caller's block ends."""

    def before_load(image: Image.Image) -> None:
        width, height = image.size
        if budget is not None:
            held.enter_context(budget.reserve(decode_bytes(width, height, image.mode), deadline))
        if deadline is not None:
            needed = width * height * DECODE_NS_PER_PIXEL / 1e9
            if time.monotonic() + needed > deadline:
                raise ImageError("timeout", f"{width}x{height} pixels cannot be decoded in the time left")

    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize_mode!r}; choose one of {RESIZE_MODES}")
    if sniff_raster_type(data[:SNIFF_BYTES]) is None:
        raise ImageError("not_an_image", f"body does not start with an image signature: {data[:SNIFF_BYTES]!r}")
    draft_size = None
    if resize_mode != "no":
        try:
            with Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS) as header:
                # Only a JPEG is drafted; reading another format's EXIF may decode all its pixels (a PNG's eXIf
                # chunk may follow them), which would be a second, unbudgeted decode.
                if header.format == "JPEG":
                    stored, rotated = header.size, image_orientation(header) in ROTATING_ORIENTATIONS
                else:
                    stored, rotated = None, False
        except Exception:
            stored, rotated = None, False  # decode_image reports the error with its proper status
        if stored is not None:
            displayed = (stored[1], stored[0]) if rotated else stored
            target = _output_size(*displayed, resize_mode, image_size)
            if target is not None:
                draft_size = (target[1], target[0]) if rotated else target
    image, image_format, original_width, original_height = decode_image(data, max_pixels, draft_size, before_load)
    if deadline is not None and time.monotonic() > deadline:
        raise ImageError("timeout", f"decoding {original_width}x{original_height} pixels passed the time limit")
    try:
        image = _to_rgb(image)
        stored_as_is = keep_original and image_format in ORIGINAL_EXTENSIONS
        # Kept unresized: only a format that is re-encoded needs its full pixels (a JPEG may be a draft here).
        unresized = image if keep_original and not stored_as_is else None
        # The size the original gives, whatever scale a draft decode produced (it rounds up).
        size = _output_size(original_width, original_height, resize_mode, image_size)
        if size is not None and image.size != size:
            # BOX is area averaging: img2dataset's default downscale interpolation (cv2.INTER_AREA).
            image = image.resize(size, Image.Resampling.BOX)
        # pHash on the whole scaled image (before any crop or pad): it only looks at a 32 x 32 thumbnail anyway.
        phash = phash_uint64(image)
        if stored_as_is:
            stored, width, height = data, original_width, original_height
        else:
            if unresized is not None:
                image, size = unresized, None
            if size is not None:
                if resize_mode == "center_crop":
                    image = _center_crop(image, image_size)
                elif resize_mode == "border":
                    image = _pad_white(image, image_size)
            output = io.BytesIO()
            image.save(output, format="JPEG", quality=jpeg_quality)
            stored, width, height = output.getvalue(), image.width, image.height
    except Exception as error:  # conversion of exotic modes (e.g. 16-bit, CMYK with bad profiles)
        raise ImageError("decode_error", f"{type(error).__name__}: {error}") from None
    return ProcessedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash,
        original_format=image_format,
        original_width=original_width,
        original_height=original_height,
        original_bytes=len(data),
        width=width,
        height=height,
        image_bytes=stored,
    )
