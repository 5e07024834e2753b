"""The stage registry: every Beam stage's identity declared once, in data-path order.

Beam-free on purpose (only ``schemas``, i.e. pyarrow, is imported) so the CLI's ``--help``, the Airflow DAG file,
``stats`` and the HTML report can read it without loading Beam. Everything that used to spell a stage's name,
module, folder or colour (the CLI's command table, ``build-corpus``, the corpus layout, the funnel, the report, the
DAG, the sample's oracle) derives it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import ArchivedImage, Candidate, FetchedImage, RecordError, SampleImage, Table, TextKept
from schemas.tables import Caption, Sample


@dataclass(frozen=True)
class StageSpec:
    """One Beam stage: its CLI name, where its code lives, what it writes, and how reports draw it."""

    #: The CLI command and the ``stage`` value of its ``rejected/`` rows (``filter-text``).
    name: str
    #: The module whose ``run(argv)`` runs the stage as one Beam job.
    module: str
    #: One line for ``--help`` and the docs: what it reads and writes.
    summary: str
    #: The table whose folder holds the stage's main output and its ``_SUCCESS`` marker.
    output: type[Table]
    #: Other folders the stage writes (and clears before a re-run).
    extra_outputs: tuple[type[Table], ...] = ()
    #: The colour of the stage's drops in the HTML report.
    colour: str = "#64748b"
    #: The stages whose outputs it reads, the main one first: a re-run of any makes this stage stale.
    inputs: tuple[str, ...] = ()
    #: The settings it applies: a ``CorpusConfig`` section (``"fetch"``) or one field of one (``"fetch.max_image_bytes"``).
    #: Its ``--help`` lists them first; its ``_SUCCESS`` fingerprint records them, so changing one reruns the stage.
    config_sections: tuple[str, ...] = ()
    #: Whether its outputs record the whole resolved config (write-shards' manifest): then any change reruns it.
    fingerprints_whole_config: bool = False
    #: For an optional stage, the setting (``section.field``) that switches it on when non-empty (``build-corpus``
    #: runs it only then); empty for the stages every corpus runs.
    enabled_by: str = ""

    def is_enabled(self, config: dict[str, Any]) -> bool:
        """Whether ``build-corpus`` runs this stage under ``config`` (``CorpusConfig.to_dict()``)."""
        if not self.enabled_by:
            return True
        section, _, field_name = self.enabled_by.partition(".")
        return bool(config[section][field_name])

    @property
    def folder(self) -> str:
        """The folder (under the corpus root) of the main output and ``_SUCCESS``."""
        return self.output.FOLDER

    @property
    def extra_folders(self) -> tuple[str, ...]:
        """The folders of the extra outputs."""
        return tuple(table.FOLDER for table in self.extra_outputs)

    @property
    def task_id(self) -> str:
        """An identifier-safe form of the name (``filter_text``): Airflow task ids, Python names."""
        return self.name.replace("-", "_")

    @property
    def entry_point(self) -> str:
        """``module:run``, the form the CLI's command table uses."""
        return f"{self.module}:run"


EXTRACT = StageSpec(
    name="extract",
    module="pipeline.stages.extract",
    summary="WARC/WAT files -> candidates/ (one row per <img> with alt text)",
    output=Candidate,
    extra_outputs=(ArchivedImage, RecordError),
    colour="#a855f7",
    inputs=(),
    # Archived images above the fetch byte cap are dropped; "crawl" selects the files of a --crawl.
    config_sections=("extract", "crawl", "fetch.max_image_bytes"),
)
FILTER_TEXT = StageSpec(
    name="filter-text",
    module="pipeline.stages.filter_text",
    summary="candidates/ -> text_kept/ (ALIGN's text rules, language tags)",
    output=TextKept,
    colour="#f97316",
    inputs=("extract",),
    config_sections=("text",),
)
FETCH = StageSpec(
    name="fetch",
    module="pipeline.stages.fetch",
    summary="text_kept/ -> images/ (archive first, then polite HTTP)",
    output=FetchedImage,
    colour="#e11d48",
    inputs=("filter-text", "extract"),
    config_sections=("fetch",),
)
FILTER_IMAGE = StageSpec(
    name="filter-image",
    module="pipeline.stages.filter_image",
    summary="text_kept/ + images/ (+ raw alt counts from candidates/) -> samples/ (size, aspect, duplicates; "
    "optional CLIP score and semantic dedup)",
    output=SampleImage,
    colour="#eab308",
    inputs=("filter-text", "fetch", "extract"),
    config_sections=("image",),
)
CAPTION = StageSpec(
    name="caption",
    module="pipeline.stages.caption",
    summary="samples/ -> captions/ (optional: an image-text-to-text model's enhanced caption per sample)",
    output=Caption,
    colour="#2563eb",
    inputs=("filter-image",),
    config_sections=("caption",),
    enabled_by="caption.caption_model",
)
WRITE_SHARDS = StageSpec(
    name="write-shards",
    module="pipeline.stages.write_shards",
    summary="samples/ (+ captions/) -> shards/*.tar + *.parquet, sizes.json, manifest.json",
    output=Sample,
    colour="#0f766e",
    # caption last: its run id is None (equal to an older _SUCCESS's missing entry) while it has not run.
    inputs=("filter-image", "extract", "caption"),
    config_sections=("shards", "caption"),  # --caption-model set: join the captions made with these settings
    fingerprints_whole_config=True,
)

#: Every Beam stage, in data-path order.
STAGE_SPECS: tuple[StageSpec, ...] = (EXTRACT, FILTER_TEXT, FETCH, FILTER_IMAGE, WRITE_SHARDS)
#: Their names, in the same order.
STAGES: tuple[str, ...] = tuple(spec.name for spec in STAGE_SPECS)
#: Every stage, the optional ones (``enabled_by``) included, in the order ``build-corpus`` runs them. The optional
#: ones are not in STAGE_SPECS: the funnel, the balance check and the DAG count on every stage there having run.
ALL_STAGE_SPECS: tuple[StageSpec, ...] = (EXTRACT, FILTER_TEXT, FETCH, FILTER_IMAGE, CAPTION, WRITE_SHARDS)
_BY_NAME = {spec.name: spec for spec in ALL_STAGE_SPECS}


def stage_spec(name: str) -> StageSpec:
    """The registered stage called ``name``; a clear error naming the known stages otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; the stages are {', '.join(_BY_NAME)}") from None
