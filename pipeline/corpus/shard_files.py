"""How a WebDataset shard and its Parquet twin are written: the file format ``write-shards`` and ``reshard`` share.

A shard is ``NNNNN.tar`` (``{key}.jpg`` image, ``{key}.txt`` alt text, ``{key}.enhanced.txt`` enhanced caption when
the sample has one, ``{key}.json`` portable metadata, per sample, in ``(key, candidate_id)`` order, with fixed tar metadata: the same samples give byte-identical tars anywhere) and its
twin ``NNNNN.parquet`` (Sample rows). Each file is written under a temporary name and renamed over the final one, the
twin last, so a tar with its twin is complete (its columns: ``Sample``'s, or ``CaptionedSample``'s with the caption
model's id when the corpus was captioned); ``sizes.json`` (``{"00000.tar": n, ...}``) lists the shards.

The image member's extension is the format its bytes announce (``image_extension``): ``.jpg`` for the JPEGs fetch
writes by default, ``.png`` or ``.webp`` for originals kept with ``--keep-original-bytes``. WebDataset loaders pick
the decoder and the sample field by extension (open_clip_train's takes ``jpg;png;jpeg;webp``), so a PNG named
``.jpg`` would be decoded by luck and a GIF named anything would be skipped.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.core.layout import CorpusLayout, delete_matching, list_matching, write_text_atomically
from pipeline.images.sniff import SNIFF_BYTES, sniff_raster_type
from schemas import Candidate, Sample, SampleImage, Table
from schemas.tables import CaptionedSample, CaptionedSampleImage

SIZES_JSON = "sizes.json"
SHARD_NAME_DIGITS = 5
#: Fixed tar member metadata: the same bytes wherever and whenever a shard is built.
TAR_MTIME = 0
TAR_MODE = 0o644
#: Infix of a file being written (``00042.tar.tmp-<uuid>``); a resumed run deletes whatever still carries it.
TEMPORARY_MARK = ".tmp-"

#: Image member extension per sniffed type; bytes of any other type keep the ``jpg`` every member had before.
IMAGE_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}
#: Every extension an image member may have (readers of shards, e.g. reshard, look for these).
IMAGE_MEMBER_EXTENSIONS = ("jpg", "png", "webp", "gif")
#: Columns that are local file paths: reduced to their base name in the tar's JSON so tars are portable.
_PATH_COLUMNS = (str(Candidate.WARC_FILE),)
#: The tar member of a sample's enhanced caption (WebDataset key ``enhanced.txt``); absent when it has none.
ENHANCED_MEMBER = "enhanced.txt"
#: The twin's table -> the same rows with image bytes (what a shard is built from).
#: The rows-with-image table of each Parquet twin's table (what a shard writer is given).
WITH_IMAGE: dict[type[Table], type[Table]] = {Sample: SampleImage, CaptionedSample: CaptionedSampleImage}
#: Non-nullable string columns a caller of ``write_shard`` may leave out (e.g. a corpus not built from the web).
_REQUIRED_DEFAULTS = (str(Sample.IMAGE_URL), str(Sample.PAGE_URL))


def shard_name(index: int) -> str:
    """The zero-padded name of shard ``index`` (``00042``)."""
    return f"{index:0{SHARD_NAME_DIGITS}d}"


def sort_identity(sample: dict[str, Any]) -> tuple[str, str]:
    """What orders samples: the key, then the candidate id (ties only if a key repeats)."""
    return (str(sample[Sample.KEY]), str(sample.get(Sample.CANDIDATE_ID) or ""))


def normalise_shard(
    samples: Sequence[dict[str, Any]], name: str, twin: type[Table] = Sample
) -> tuple[pa.Table, list[Any], list[int]]:
    """Every column but the image as an Arrow table (rows sorted, ``shard`` set, defaults filled: float32 etc. rounded
    once), each sample's ``image`` value in the order given, and the order: the given index of each sorted row.

    The images stay the objects the caller passed (no copy): bytes, or for a shard written from spill files, each
    image's length (its bytes are streamed in later, ``write_sorted_shard``).
    """
    with_image = WITH_IMAGE[twin]
    rows = []
    for sample in samples:
        row = with_image.project(sample)
        row[SampleImage.SHARD] = name
        if row[SampleImage.CANDIDATE_ID] is None:
            row[SampleImage.CANDIDATE_ID] = row[SampleImage.KEY]
        for column in _REQUIRED_DEFAULTS:
            if row[column] is None:
                row[column] = ""
        if row[SampleImage.KEY] is None or row[SampleImage.ALT_TEXT] is None or row[SampleImage.IMAGE] is None:
            raise ValueError(f"a shard sample needs key, alt_text and image bytes; got keys {sorted(sample)}")
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda index: sort_identity(rows[index]))
    keys = [row[SampleImage.KEY] for row in rows]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"shard {name}: duplicate sample keys {duplicated} would merge samples in WebDataset")
    images = [row.pop(SampleImage.IMAGE) for row in rows]
    schema = with_image.schema()
    schema = schema.remove(schema.get_field_index(str(SampleImage.IMAGE)))
    return pa.Table.from_pylist([rows[index] for index in order], schema=schema), images, order


def _as_bytes(image: Any) -> bytes:
    # bytes (what Parquet reads give) are kept as they are; other buffers and str are converted as Arrow's binary
    # column converted them before the image left the Arrow table.
    if isinstance(image, bytes):
        return image
    return image.encode("utf-8") if isinstance(image, str) else bytes(image)


def _portable_metadata(row: dict[str, Any], twin: type[Table] = Sample) -> bytes:
    """The ``{key}.json`` member: every column of the twin, local paths reduced to base names, stable formatting."""
    metadata = twin.project(row)
    for column in _PATH_COLUMNS:
        if metadata.get(column):
            metadata[column] = posixpath.basename(str(metadata[column]).replace("\\", "/"))
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def image_extension(image: bytes) -> str:
    """The tar member extension of an image: its sniffed format's (``jpg``, ``png``, ``webp``, ``gif``), else ``jpg``."""
    return IMAGE_EXTENSIONS.get(sniff_raster_type(image[:SNIFF_BYTES]) or "", "jpg")


def _text_members(row: dict[str, Any], twin: type[Table] = Sample) -> list[tuple[str, bytes]]:
    """A sample's members after its image: ``{key}.txt``, ``{key}.enhanced.txt`` when it has one, ``{key}.json``."""
    key = row[SampleImage.KEY]
    members = [(f"{key}.txt", row[SampleImage.ALT_TEXT].encode("utf-8"))]
    if row.get(SampleImage.ENHANCED_CAPTION) is not None:
        members.append((f"{key}.{ENHANCED_MEMBER}", row[SampleImage.ENHANCED_CAPTION].encode("utf-8")))
    members.append((f"{key}.json", _portable_metadata(row, twin)))
    return members


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _tar_size(rows: Sequence[dict[str, Any]], image_sizes: Sequence[int], twin: type[Table] = Sample) -> int:
    """The size of the tar of these rows with images of these sizes (a member's header is one block, whatever its
    name), to tell a complete earlier shard without reading it."""
    total = 0
    for row, image_size in zip(rows, image_sizes, strict=True):
        total += tarfile.BLOCKSIZE + _padded(image_size)
        total += sum(tarfile.BLOCKSIZE + _padded(len(data)) for _, data in _text_members(row, twin))
    total += 2 * tarfile.BLOCKSIZE  # end-of-archive marker
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _write_tar(
    handle: Any, rows: Sequence[dict[str, Any]], images: Iterable[bytes], twin: type[Table] = Sample
) -> None:
    """The tar of ``rows``, each with the next of ``images`` (taken one at a time: they may be streamed in)."""
    # Stream mode ("w|") needs no seek/tell, so the same code writes to gs:// and s3:// handles.
    with tarfile.open(fileobj=handle, mode="w|", format=tarfile.USTAR_FORMAT) as archive:
        for row, image in zip(rows, images, strict=True):
            image_member = (f"{row[SampleImage.KEY]}.{image_extension(image)}", image)
            for member_name, data in (image_member, *_text_members(row, twin)):
                info = tarfile.TarInfo(member_name)
                info.size = len(data)
                info.mtime = TAR_MTIME
                info.mode = TAR_MODE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                archive.addfile(info, io.BytesIO(data))


def _temporary(path: str) -> str:
    return f"{path}{TEMPORARY_MARK}{uuid.uuid4().hex}"


def _rename_over(temporary: str, path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def _paths(shard_dir: str, name: str) -> tuple[str, str]:
    return FileSystems.join(shard_dir, f"{name}.tar"), FileSystems.join(shard_dir, f"{name}.parquet")


def _existing_shard_matches(
    shard_dir: str, name: str, table: pa.Table, tar_size: int, twin: type[Table] = Sample
) -> bool:
    """Whether a complete shard from an earlier run holds exactly these samples (resume reuses it)."""
    tar_path, parquet_path = _paths(shard_dir, name)
    if not (FileSystems.exists(tar_path) and FileSystems.exists(parquet_path)):
        return False
    metadata = FileSystems.match([tar_path])[0].metadata_list
    if not metadata or metadata[0].size_in_bytes != tar_size:
        return False
    try:
        with FileSystems.open(parquet_path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            existing = pq.read_table(io.BytesIO(handle.read()))
    except Exception:  # an unreadable twin is simply rewritten
        return False
    return existing.to_pylist() == table.select(twin.names()).to_pylist()


def write_shard(
    shard_dir: str,
    shard_name: str,
    samples: list[dict[str, Any]],
    reuse_existing: bool = False,
    twin: type[Table] = Sample,
) -> int:
    """Write one shard: ``{shard_name}.tar`` then its Parquet twin, each via a temporary name; returns its size.

    ``samples`` are SampleImage rows (at least ``key``, ``alt_text`` and ``image`` bytes; other columns may be
    missing). They are sorted by key here, so the caller's order does not matter. With ``reuse_existing``, a complete
    shard already holding exactly these samples is kept as it is (resume). ``twin`` is the Parquet twin's table:
    ``CaptionedSample`` for a captioned corpus (its rows then carry ``caption_model``).
    """
    name = shard_name.removesuffix(".tar")
    table, given, order = normalise_shard(samples, name, twin)
    images = [_as_bytes(given[index]) for index in order]
    return write_sorted_shard(
        shard_dir, name, table, [len(image) for image in images], iter(images), reuse_existing, twin
    )


def write_sorted_shard(
    shard_dir: str,
    name: str,
    table: pa.Table,
    image_sizes: Sequence[int],
    images: Iterator[bytes],
    reuse_existing: bool = False,
    twin: type[Table] = Sample,
) -> int:
    """``write_shard`` from its normalised parts: the rows without images (sorted, ``normalise_shard``), each image's
    size, and the images in that order, taken one at a time while the tar is written (never all held)."""
    rows = table.to_pylist()  # values as the twin stores them (float32 rounded), as the tar's JSON shows them
    tar_size = _tar_size(rows, image_sizes, twin)
    if reuse_existing and _existing_shard_matches(shard_dir, name, table, tar_size, twin):
        return len(rows)
    tar_path, parquet_path = _paths(shard_dir, name)
    # The twin goes first: a tar without its twin, or a twin whose tar is being rewritten, is never "complete".
    delete_matching(parquet_path)
    temporary = _temporary(tar_path)
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        _write_tar(handle, rows, _checked_sizes(images, image_sizes), twin)
    _rename_over(temporary, tar_path)
    buffer = io.BytesIO()
    pq.write_table(table.select(twin.names()).cast(twin.schema()), buffer)
    temporary = _temporary(parquet_path)
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(buffer.getvalue())
    _rename_over(temporary, parquet_path)
    return len(rows)


def _checked_sizes(images: Iterator[bytes], sizes: Sequence[int]) -> Iterator[bytes]:
    """The images, each checked against the size the tar's planned size used."""
    for image, size in zip(images, sizes, strict=True):
        if len(image) != size:
            raise RuntimeError(f"an image of {len(image)} bytes where {size} were planned")
        yield image


def write_sizes(shard_dir: str, sizes: dict[str, int]) -> None:
    """``sizes.json`` (``{"00000.tar": n, ...}``), which open_clip reads to know the dataset size."""
    write_text_atomically(FileSystems.join(shard_dir, SIZES_JSON), json.dumps(dict(sorted(sizes.items())), indent=1))


def delete_stale_shards(shard_dir: str, shard_count: int) -> None:
    """Delete shards numbered ``shard_count`` or above (left by an earlier, larger run)."""
    for path in list_matching(FileSystems.join(shard_dir, "*.tar")) + list_matching(
        FileSystems.join(shard_dir, "*.parquet")
    ):
        stem = posixpath.basename(path).split(".")[0]
        if stem.isdigit() and int(stem) >= shard_count:
            FileSystems.delete([path])


def write_corpus(samples: Iterable[dict[str, Any]], output_dir: str, samples_per_shard: int = 10_000) -> dict[str, int]:
    """Write samples as ``{output_dir}/shards/NNNNN.tar`` + ``.parquet`` and ``sizes.json``; returns the sizes.

    Plain Python, one process: shards are assigned by sorted ``(key, candidate_id)`` exactly as ``write-shards``
    assigns them, so both give the same tars for the same samples. For samples that come from no crawl: the shard
    benchmark (``bench/shards.py``) writes its synthetic corpus with it, and the tests write their corpora with it.
    """
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be at least 1")
    ordered = sorted(samples, key=sort_identity)
    shard_dir = CorpusLayout(output_dir).folder(Sample)
    sizes: dict[str, int] = {}
    for index, start in enumerate(range(0, len(ordered), samples_per_shard)):
        name = shard_name(index)
        sizes[f"{name}.tar"] = write_shard(shard_dir, name, ordered[start : start + samples_per_shard])
    delete_stale_shards(shard_dir, len(sizes))
    write_sizes(shard_dir, sizes)
    return sizes
