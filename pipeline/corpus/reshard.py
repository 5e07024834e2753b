"""``reshard``: rewrite a corpus with a new shard size and/or a DuckDB ``WHERE`` subset, without re-fetching.

``python -m pipeline reshard --corpus DIR --output DIR2 [--samples-per-shard N] [--where "language = 'en'"]
[--captions DIR/captions]``

The selection runs in DuckDB over the corpus's ``shards/*.parquet``; image bytes come from the existing tars (each
row's ``shard`` column says which). Output shards follow the same rule as ``write-shards`` (sorted by key, exactly
N per shard but the last, written through ``pipeline.corpus.shard_files.write_shard``), so resharding a corpus to
its own size reproduces its tars byte for byte. Because both corpora are in key order, each source tar is read
once and only the images still needed are held in memory. ``manifest.json`` records the source corpus and the filter.

``--captions`` adds enhanced captions without re-fetching: the ``captions/`` table the ``caption`` stage wrote for
the corpus (``python -m pipeline caption --output DIR --caption-model M``) is joined by ``candidate_id``, so every
sample takes its caption from there (none when its row has none) and the new shards carry the ``enhanced.txt``
member and ``CaptionedSample``'s columns, exactly as write-shards would have written them. A source that already has
captions keeps them when no ``--captions`` is given.

A resharded corpus holds ``shards/`` and ``manifest.json`` only: its funnel (candidates, rejections, stage markers)
is the source's, which a ``--where`` subset no longer balances against. ``stats`` on it prints what it holds
(``describe``) and names the source. An existing output is replaced only with ``--overwrite``, and a corpus built
by the stages never is (its books would then describe other shards).
"""

from __future__ import annotations

import argparse
import json
import logging
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.core.errors import UsageError
from pipeline.core.layout import CorpusLayout, list_matching, read_text, write_text_atomically
from pipeline.core.registry import STAGES
from pipeline.corpus.shard_files import (
    IMAGE_MEMBER_EXTENSIONS,
    delete_stale_shards,
    shard_name,
    write_shard,
    write_sizes,
)
from schemas import SCHEMA_VERSION, Sample, SampleImage, Table
from schemas.tables import Caption, CaptionedSample

log = logging.getLogger("altcorpus")


class Selection:
    """The samples of a corpus matching a DuckDB condition, streamed in key order in Arrow batches."""

    def __init__(self, corpus: str, where: str | None, captions: str | None = None) -> None:
        import duckdb

        self.connection = duckdb.connect()
        self.source = _quoted_parquet(CorpusLayout(corpus).glob(Sample))
        try:
            columns = [row[0] for row in self.connection.sql(f"describe select * from {self.source}").fetchall()]
        except duckdb.IOException:  # no shards: the same error as before, from the first query that reads them
            columns = []
        #: The twins' table: captioned when the source has captions or ``captions`` brings them.
        self.twin: type[Table] = CaptionedSample if captions or CaptionedSample.CAPTION_MODEL in columns else Sample
        if captions:
            if not list_matching(captions):
                raise UsageError(f"--captions {captions!r} matches no file (the caption stage writes DIR/captions/)")
            replaced = [str(Caption.ENHANCED_CAPTION), *(c for c in [str(Caption.CAPTION_MODEL)] if c in columns)]
            self.source = (
                f"(select samples.* exclude ({', '.join(replaced)}), captions.{Caption.ENHANCED_CAPTION}, "
                # the model only beside a caption, as write-shards joins them (a failed row names the model too)
                f"case when captions.{Caption.ENHANCED_CAPTION} is not null then captions.{Caption.CAPTION_MODEL} end "
                f"as {Caption.CAPTION_MODEL} from {self.source} as samples left join "
                f"{_quoted_parquet(captions)} as captions using ({Caption.CANDIDATE_ID}))"
            )
        self.condition = f"({where})" if where and where.strip() else "true"
        if where and where.strip():
            try:  # bind the condition (no rows read) so a typo is one line before anything is written
                self.connection.sql(f"select * from {self.source} where {self.condition} limit 0").fetchall()
            except (duckdb.ParserException, duckdb.BinderException) as error:
                raise UsageError(f"--where {where!r}: {str(error).splitlines()[0]}") from error

    def rows(self, batch_rows: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every selected row, ordered by (key, candidate_id) like the shards themselves."""
        query = f"select * from {self.source} where {self.condition} order by {Sample.KEY}, {Sample.CANDIDATE_ID}"
        # A cursor of its own: the stream stays open while keys_in() queries the main connection.
        with self.connection.cursor() as cursor:
            for batch in cursor.sql(query).to_arrow_reader(batch_rows):
                yield from batch.to_pylist()

    def last_use(self) -> dict[str, int]:
        """For each source shard, the rank of the last selected row it holds (when its images can be dropped)."""
        ranked = (
            f"select {Sample.SHARD} as source, row_number() over (order by {Sample.KEY}, {Sample.CANDIDATE_ID}) - 1"
            f" as rank from {self.source} where {self.condition}"
        )
        query = f"select source, max(rank) from ({ranked}) group by source"
        return {source: int(rank) for source, rank in self.connection.execute(query).fetchall()}

    def keys_in(self, source: str) -> set[str]:
        """The selected keys held by one source shard."""
        query = f"select {Sample.KEY} from {self.source} where {self.condition} and {Sample.SHARD} = ?"
        return {key for (key,) in self.connection.execute(query, [source]).fetchall()}

    def models(self) -> list[str]:
        """The caption models named by the selected rows (empty for an uncaptioned selection)."""
        if self.twin is not CaptionedSample:
            return []
        column = CaptionedSample.CAPTION_MODEL
        query = f"select distinct {column} from {self.source} where {self.condition} and {column} is not null"
        return sorted(model for (model,) in self.connection.execute(query).fetchall())

    def close(self) -> None:
        self.connection.close()


def _quoted_parquet(pattern: str) -> str:
    """``read_parquet('pattern')`` with the pattern quoted for SQL."""
    return f"read_parquet('{pattern.replace(chr(39), chr(39) * 2)}')"


class SourceImages:
    """Image bytes of the source shards, loaded one tar at a time and dropped once no later row needs them."""

    def __init__(self, shard_dir: str, selection: Selection) -> None:
        self.shard_dir = shard_dir
        self.selection = selection
        self.last_use = selection.last_use()
        if None in self.last_use:
            raise ValueError(f"some samples have no shard: is {shard_dir} a corpus written by write-shards?")
        self.loaded: dict[str, dict[str, bytes]] = {}

    def _load(self, source: str) -> dict[str, bytes]:
        wanted, images = self.selection.keys_in(source), {}
        path = FileSystems.join(self.shard_dir, f"{source}.tar")
        with (
            FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle,
            tarfile.open(fileobj=handle, mode="r|") as archive,
        ):
            for member in archive:
                key, _, extension = member.name.partition(".")
                if extension in IMAGE_MEMBER_EXTENSIONS and key in wanted:
                    images[key] = archive.extractfile(member).read()
        missing = wanted - set(images)
        if missing:
            raise ValueError(f"{path} lacks the images of {len(missing)} samples, e.g. {sorted(missing)[:3]}")
        return images

    def image(self, row: dict[str, Any], rank: int) -> bytes:
        """The image bytes of ``row``, the ``rank``-th selected row."""
        source = row[Sample.SHARD]
        if source not in self.loaded:
            self.loaded[source] = self._load(source)
        data = self.loaded[source][row[Sample.KEY]]
        for name in [name for name in self.loaded if self.last_use[name] <= rank]:
            del self.loaded[name]
        return data


def check_target(target: CorpusLayout, overwrite: bool) -> None:
    """Refuse an output that holds a corpus: any stage-built one, and an earlier reshard unless ``overwrite``."""
    built = [stage for stage in STAGES if target.is_done(stage)]
    if built:
        raise UsageError(
            f"--output {target.root} holds a corpus built by the stages ({', '.join(built)} done): resharding into it "
            "would leave its candidates, rejections and markers describing other shards; choose a new folder"
        )
    existing = list_matching(target.glob(Sample, "*")) + list_matching(target.manifest_path())
    if existing and not overwrite:
        raise UsageError(
            f"--output {target.root} already holds a corpus ({len(existing)} files, e.g. {existing[0]}); "
            "pass --overwrite to replace its shards and manifest"
        )


def describe(root: str) -> dict[str, Any] | None:
    """What a resharded corpus holds (its source, filter, counts and languages); ``None`` for any other folder.

    ``stats`` shows this instead of a funnel: the candidates and rejections stayed with the source corpus.
    """
    layout = CorpusLayout(root)
    if any(layout.is_done(stage) for stage in STAGES) or not FileSystems.exists(layout.manifest_path()):
        return None
    manifest = json.loads(read_text(layout.manifest_path()))
    if "resharded_from" not in manifest:
        return None
    import duckdb

    source = f"read_parquet('{layout.glob(Sample).replace(chr(39), chr(39) * 2)}')"
    with duckdb.connect() as connection:
        languages = connection.execute(
            f"select {Sample.LANGUAGE} as language, count(*) as samples from {source} group by 1 order by 2 desc, 1"
        ).fetchall()
    return {
        "corpus": layout.root,
        "resharded_from": manifest["resharded_from"],
        "where": manifest.get("where"),
        "sample_count": manifest.get("sample_count"),
        "shard_count": manifest.get("shard_count"),
        "samples_per_shard": manifest.get("config", {}).get("shards", {}).get("samples_per_shard"),
        "languages": [{"language": language, "samples": count} for language, count in languages],
    }


def format_description(summary: dict[str, Any]) -> str:
    """``describe``'s dict as the few lines ``stats`` prints."""
    where = f" where {summary['where']}" if summary["where"] else ""
    languages = ", ".join(f"{row['language']}: {row['samples']}" for row in summary["languages"]) or "-"
    return "\n".join(
        [
            f"{summary['corpus']}: a resharded corpus: {summary['sample_count']} samples in {summary['shard_count']} "
            f"shards of {summary['samples_per_shard']}",
            f"  from {summary['resharded_from']}{where}",
            f"  languages: {languages}",
            f"  its funnel (candidates, rejections) is the source's: python -m pipeline stats {summary['resharded_from']}",
        ]
    )


def reshard(
    corpus: str,
    output: str,
    samples_per_shard: int | None = None,
    where: str | None = None,
    overwrite: bool = False,
    captions: str | None = None,
) -> dict[str, int]:
    """Write the selected samples of ``corpus`` as a new corpus under ``output``; returns its ``sizes.json``.

    ``output`` must not hold a corpus, unless it is an earlier reshard's and ``overwrite`` is true. ``captions`` (a
    glob of the caption stage's ``captions/`` Parquet files) gives every sample its enhanced caption.
    """
    source = CorpusLayout(corpus)
    target = CorpusLayout(output)
    if source.root == target.root:
        raise UsageError("reshard writes a new corpus: --output must differ from --corpus")
    check_target(target, overwrite)
    manifest: dict[str, Any] = {}
    if FileSystems.exists(source.manifest_path()):
        manifest = json.loads(read_text(source.manifest_path()))
    size = samples_per_shard or manifest.get("config", {}).get("shards", {}).get("samples_per_shard") or 10_000
    if size < 1:
        raise UsageError("--samples-per-shard must be at least 1")
    selection = Selection(corpus, where, captions)
    images = SourceImages(source.folder(Sample), selection)
    shard_dir = target.folder(Sample)
    sizes: dict[str, int] = {}
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        name = shard_name(len(sizes))
        sizes[f"{name}.tar"] = write_shard(shard_dir, name, chunk, reuse_existing=True, twin=selection.twin)
        log.info("reshard: wrote %s (%d samples)", name, sizes[f"{name}.tar"])
        chunk.clear()

    for rank, row in enumerate(selection.rows()):
        chunk.append(dict(row, **{SampleImage.IMAGE: images.image(row, rank)}))
        if len(chunk) == size:
            flush()
    if chunk:
        flush()
    models = selection.models()
    selection.close()
    delete_stale_shards(shard_dir, len(sizes))
    write_sizes(shard_dir, sizes)
    manifest.update(
        {
            "schema_version": SCHEMA_VERSION,
            "resharded_from": source.root,
            "where": where or None,
            "shard_count": len(sizes),
            "sample_count": sum(sizes.values()),
            "shards": sizes,
        }
    )
    manifest.setdefault("config", {}).setdefault("shards", {})["samples_per_shard"] = size
    if captions:  # the source's own caption record (if any) described other captions
        manifest["captions"] = {"from": captions, "models": models}
    write_text_atomically(target.manifest_path(), json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return sizes


def main(argv: Sequence[str]) -> int:
    """``python -m pipeline reshard --corpus DIR --output DIR2 [--samples-per-shard N] [--where SQL]``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline reshard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="corpus directory to read (its shards/ folder)")
    parser.add_argument("--output", required=True, help="new corpus directory to write")
    parser.add_argument("--samples-per-shard", type=int, default=None, help="default: the source corpus's size")
    parser.add_argument("--where", default=None, help="DuckDB condition on Sample columns, e.g. \"language = 'en'\"")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the shards and manifest of an earlier reshard at --output"
    )
    parser.add_argument(
        "--captions", default=None, help="the caption stage's captions/*.parquet (glob): adds enhanced captions"
    )
    args = parser.parse_args(list(argv))
    if args.captions and not args.captions.endswith(".parquet"):
        args.captions = FileSystems.join(args.captions, "*.parquet")  # a captions/ folder
    sizes = reshard(
        args.corpus, args.output, args.samples_per_shard, args.where, overwrite=args.overwrite, captions=args.captions
    )
    print(f"{sum(sizes.values())} samples in {len(sizes)} shards under {CorpusLayout(args.output).folder(Sample)}")
    return 0
