"""Table definitions: each Parquet table is a class whose attributes are its columns, in order.

A ``Column`` is a ``str`` (its name), so ``row[Candidate.IMAGE_URL]`` reads naturally, and it also carries the
Arrow type and a one-line doc that ``Table.schema()`` attaches as field metadata (DuckDB and ``parquet-tools``
show it).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import pyarrow as pa

#: Bump on any change of a column's name, type or meaning; written into every manifest and Parquet footer.
SCHEMA_VERSION = "1.0.0"


class Column(str):
    """A column name that also knows its Arrow type, nullability and one-line documentation."""

    arrow_type: pa.DataType
    doc: str
    nullable: bool

    def __new__(cls, name: str, arrow_type: pa.DataType, doc: str, nullable: bool = True) -> Column:
        column = super().__new__(cls, name)
        column.arrow_type = arrow_type
        column.doc = doc
        column.nullable = nullable
        return column

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # Rows travel between Beam workers pickled: a column name must arrive as a plain str.
        return (str, (str(self),))

    def field(self) -> pa.Field:
        """The Arrow field for this column, with its doc in the field metadata."""
        return pa.field(str(self), self.arrow_type, nullable=self.nullable, metadata={"doc": self.doc})


class Table:
    """Base of every table: subclasses list ``Column`` attributes; inheritance appends columns."""

    #: Folder (under the corpus output directory) that holds this table's Parquet files.
    FOLDER: ClassVar[str] = ""
    DOC: ClassVar[str] = ""

    @classmethod
    @functools.cache
    def _column_tuple(cls) -> tuple[Column, ...]:
        # Computed once per table: row()/project() run for every element of every stage.
        return tuple(cls._collect_columns())

    @classmethod
    def columns(cls) -> list[Column]:
        """Columns in definition order, base classes first, each name once."""
        return list(cls._column_tuple())

    @classmethod
    @functools.cache
    def _name_tuple(cls) -> tuple[str, ...]:
        return tuple(str(c) for c in cls._column_tuple())

    @classmethod
    def _collect_columns(cls) -> list[Column]:
        """Columns in definition order, base classes first, each name once."""
        seen: dict[str, Column] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                if isinstance(value, Column) and str(value) not in seen:
                    seen[str(value)] = value
        return list(seen.values())

    @classmethod
    def names(cls) -> list[str]:
        """Column names in order."""
        return list(cls._name_tuple())

    @classmethod
    def schema(cls) -> pa.Schema:
        """The Arrow schema, with table name, doc and ``SCHEMA_VERSION`` in its metadata."""
        return pa.schema(
            [c.field() for c in cls.columns()],
            metadata={"altcorpus.table": cls.__name__, "altcorpus.schema_version": SCHEMA_VERSION, "doc": cls.DOC},
        )

    @classmethod
    def row(cls, **values: Any) -> dict[str, Any]:
        """A complete row: every column present (missing ones ``None``); unknown names raise ``KeyError``."""
        names = cls._name_tuple()
        unknown = values.keys() - set(names)
        if unknown:
            raise KeyError(f"{cls.__name__} has no column(s) {sorted(unknown)}")
        return {name: values.get(name) for name in names}

    @classmethod
    def project(cls, row: dict[str, Any]) -> dict[str, Any]:
        """Keep only this table's columns of ``row`` (missing ones ``None``): narrows a wider row."""
        return {name: row.get(name) for name in cls._name_tuple()}


def _c(name: str, arrow_type: pa.DataType, doc: str, nullable: bool = True) -> Column:
    return Column(name, arrow_type, doc, nullable)


class Candidate(Table):
    """One ``<img>`` with a non-empty alt text found on one archived HTML page (written by ``extract``)."""

    FOLDER = "candidates"
    DOC = "One <img> with a non-empty alt text on one archived HTML page."
    CANDIDATE_ID = _c(
        "candidate_id",
        pa.string(),
        "Unique id of this <img> occurrence: hash of WARC file name, record offset and ordinal.",
        False,
    )
    KEY = _c("key", pa.string(), "Sample key: hash of image URL and alt text; identical pairs share it.", False)
    IMAGE_URL = _c(
        "image_url", pa.string(), "Absolute image URL, resolved against the page URL and <base href>.", False
    )
    ALT_TEXT = _c("alt_text", pa.string(), "Alt text: entities decoded, whitespace collapsed, Unicode NFC.", False)
    PAGE_URL = _c("page_url", pa.string(), "URL of the HTML page the <img> was found on.", False)
    PAGE_HOST = _c("page_host", pa.string(), "Lower-cased host of page_url.")
    IMAGE_HOST = _c("image_host", pa.string(), "Lower-cased host of image_url.")
    URL_ATTRIBUTE = _c(
        "url_attribute", pa.string(), "The <img> attribute the URL came from: src, data-src, srcset, ..."
    )
    HTML_LANG = _c("html_lang", pa.string(), "The page's <html lang> attribute, if any.")
    CRAWL_DATE = _c("crawl_date", pa.string(), "WARC-Date of the page record, as written in the WARC.")
    WARC_FILE = _c("warc_file", pa.string(), "Path of the WARC file the page was read from.")
    WARC_RECORD_OFFSET = _c("warc_record_offset", pa.int64(), "Byte offset of the page's record in warc_file.")
    WARC_RECORD_ID = _c("warc_record_id", pa.string(), "WARC-Record-ID of the page record.")


class TextKept(Candidate):
    """A candidate that passed ``filter-text``, with its language tag (written by ``filter-text``)."""

    FOLDER = "text_kept"
    DOC = "Candidates that passed the text filters, tagged with their language."
    LANGUAGE = _c("language", pa.string(), "fastText lid.176 top-1 language code of the alt text (e.g. 'en').")
    LANGUAGE_SCORE = _c("language_score", pa.float32(), "Probability fastText gave to `language`.")
    UNIGRAM_COUNT = _c(
        "unigram_count", pa.int32(), "Number of unigrams of the alt text under the documented tokeniser."
    )
    DUPLICATE_COUNT = _c(
        "duplicate_count",
        pa.int64(),
        "Candidates with the same (image_url, alt_text) this one stands for (1 = unique).",
    )


class Rejection(Table):
    """A candidate dropped by a stage, with one machine-readable reason (every stage writes these)."""

    FOLDER = "rejected"
    DOC = "Every dropped candidate with the stage and reason that dropped it."
    CANDIDATE_ID = Candidate.CANDIDATE_ID
    KEY = Candidate.KEY
    STAGE = _c(
        "stage", pa.string(), "Stage that dropped the candidate: extract, filter-text, fetch, filter-image.", False
    )
    REASON = _c("reason", pa.string(), "Machine-readable reason from the stage's documented, closed list.", False)
    DETAIL = _c("detail", pa.string(), "Human-readable detail (the value that failed the rule, the error message).")
    IMAGE_URL = Candidate.IMAGE_URL
    ALT_TEXT = Candidate.ALT_TEXT
    PAGE_URL = Candidate.PAGE_URL


class RecordError(Table):
    """A WARC record or file that could not be read or decoded: not a candidate, but never silent."""

    FOLDER = "record_errors"
    DOC = "WARC files and records that could not be read, with the reason."
    STAGE = _c("stage", pa.string(), "Stage that met the error.", False)
    WARC_FILE = Candidate.WARC_FILE
    WARC_RECORD_OFFSET = Candidate.WARC_RECORD_OFFSET
    RECORD_URL = _c("record_url", pa.string(), "WARC-Target-URI of the record, when it could be read.")
    REASON = _c(
        "reason", pa.string(), "Machine-readable reason: truncated_file, malformed_record, undecodable_page, ...", False
    )
    DETAIL = _c("detail", pa.string(), "The error message.")


class ArchivedImage(Table):
    """An image response found in the input WARCs, kept so ``fetch`` can use it instead of HTTP."""

    FOLDER = "archived_images"
    DOC = "Image responses archived in the input WARCs."
    IMAGE_URL = _c("image_url", pa.string(), "WARC-Target-URI of the image response.", False)
    HTTP_STATUS = _c("http_status", pa.int32(), "HTTP status code of the archived response.")
    CONTENT_TYPE = _c("content_type", pa.string(), "Content-Type header of the archived response.")
    X_ROBOTS_TAG = _c("x_robots_tag", pa.string(), "X-Robots-Tag header of the archived response, if any.")
    BODY = _c("body", pa.binary(), "Response body as archived (content-encoding removed).")
    WARC_FILE = Candidate.WARC_FILE
    WARC_RECORD_OFFSET = Candidate.WARC_RECORD_OFFSET
    CRAWL_DATE = Candidate.CRAWL_DATE


class FetchedImage(Table):
    """One row per distinct image URL: how it was obtained, and the processed image when it was (``fetch``)."""

    FOLDER = "images"
    DOC = "One row per distinct image URL with its fetch status and, when ok, the processed image."
    IMAGE_URL = _c("image_url", pa.string(), "The image URL.", False)
    STATUS = _c(
        "status", pa.string(), "ok, or the error class: http_404, timeout, robots_disallowed, opted_out, ...", False
    )
    ERROR = _c("error", pa.string(), "Error message when status is not ok.")
    SOURCE = _c("source", pa.string(), "Where the bytes came from: archive or http.")
    HTTP_STATUS = _c("http_status", pa.int32(), "Final HTTP status code.")
    CONTENT_TYPE = _c("content_type", pa.string(), "Content-Type the server declared.")
    FETCH_SECONDS = _c("fetch_seconds", pa.float32(), "Wall time spent obtaining the bytes.")
    ORIGINAL_BYTES = _c("original_bytes", pa.int64(), "Size of the original image file in bytes.")
    SHA256 = _c("sha256", pa.string(), "Hex sha256 of the original image bytes.")
    PHASH = _c("phash", pa.uint64(), "64-bit perceptual hash (imagehash pHash) of the decoded image.")
    ORIGINAL_FORMAT = _c("original_format", pa.string(), "Image format Pillow detected (JPEG, PNG, WEBP, ...).")
    ORIGINAL_WIDTH = _c("original_width", pa.int32(), "Width of the original image in pixels.")
    ORIGINAL_HEIGHT = _c("original_height", pa.int32(), "Height of the original image in pixels.")
    WIDTH = _c("width", pa.int32(), "Width of the stored (resized) image.")
    HEIGHT = _c("height", pa.int32(), "Height of the stored (resized) image.")
    IMAGE = _c(
        "image",
        pa.binary(),
        "The stored image: re-encoded JPEG after resizing; with keep_original_bytes, the original JPEG, PNG or WebP.",
    )


class Sample(TextKept):
    """A sample of the corpus: the candidate, its language and its image's metadata (``shards/*.parquet``)."""

    FOLDER = "shards"
    DOC = "One row per sample in the shard of the same name."
    SHA256 = FetchedImage.SHA256
    PHASH = FetchedImage.PHASH
    IMAGE_SOURCE = _c("image_source", pa.string(), "Where the image bytes came from: archive or http.")
    ORIGINAL_WIDTH = FetchedImage.ORIGINAL_WIDTH
    ORIGINAL_HEIGHT = FetchedImage.ORIGINAL_HEIGHT
    WIDTH = FetchedImage.WIDTH
    HEIGHT = FetchedImage.HEIGHT
    UNSAFE_SCORE = _c(
        "unsafe_score", pa.float32(), "Score of the configured unsafe-content scorer; null when none ran."
    )
    ENHANCED_CAPTION = _c("enhanced_caption", pa.string(), "Optional second caption (e.g. a generated dense caption).")
    SHARD = _c(
        "shard", pa.string(), "Name of the tar shard holding the sample (e.g. '00000'); null before write-shards."
    )


class SampleImage(Sample):
    """A sample that passed ``filter-image`` with its image bytes, waiting for ``write-shards``."""

    FOLDER = "samples"
    DOC = "Samples that passed the image filters, with image bytes, before sharding."
    IMAGE = FetchedImage.IMAGE


class Caption(Table):
    """One sample's enhanced caption from an image-to-text model, or why it has none (written by ``caption``)."""

    FOLDER = "captions"
    DOC = "One row per sample of samples/: the caption model's text, or the reason it wrote none (alt text kept)."
    CANDIDATE_ID = Candidate.CANDIDATE_ID
    KEY = Candidate.KEY
    ENHANCED_CAPTION = Sample.ENHANCED_CAPTION
    CAPTION_MODEL = _c(
        "caption_model", pa.string(), "The caption model (local folder or hub name) that wrote enhanced_caption."
    )
    CAPTION_STATUS = _c(
        "caption_status",
        pa.string(),
        "ok, or why there is no enhanced caption: decode_error, model_error, empty_caption.",
        False,
    )
    CAPTION_ERROR = _c("caption_error", pa.string(), "The error message when caption_status is not ok.")


class CaptionedSample(Sample):
    """A sample of a corpus built with the ``caption`` stage: Sample's columns, then the caption model's id."""

    FOLDER = "shards"
    DOC = "One row per sample in the shard of the same name, with the model that wrote its enhanced caption."
    CAPTION_MODEL = Caption.CAPTION_MODEL


class CaptionedSampleImage(CaptionedSample):
    """A captioned sample with its image bytes, on its way into a shard (never written as a table of its own)."""

    FOLDER = "samples"
    DOC = "Captioned samples with image bytes, before sharding."
    IMAGE = FetchedImage.IMAGE


class EvalImageHash(Table):
    """One evaluation image (or an unreadable one) of the decontamination index (``python -m pipeline eval-index``)."""

    FOLDER = ""
    DOC = "Perceptual hashes of evaluation-set images whose near-duplicates filter-image removes."
    PHASH = _c(
        "phash", pa.uint64(), "64-bit pHash of the decoded image (same function as fetch); null when unreadable."
    )
    SOURCE = _c(
        "source", pa.string(), "The input the image came from: a folder, a WebDataset tar or a Parquet file.", False
    )
    ITEM = _c(
        "item",
        pa.string(),
        "The image within its source: relative file path, tar member name or Parquet row key.",
        False,
    )
    STATUS = _c("status", pa.string(), "ok, or why no hash (fetch's statuses): decode_error, not_an_image, ...", False)
    ERROR = _c("error", pa.string(), "The decoder's error message when status is not ok.")


def all_tables() -> list[type[Table]]:
    """Every Parquet table the pipeline writes, in data-path order."""
    return [
        Candidate,
        RecordError,
        ArchivedImage,
        TextKept,
        Rejection,
        FetchedImage,
        SampleImage,
        Sample,
        Caption,
        CaptionedSample,
        EvalImageHash,
    ]
