"""The corpus as the trainer sees it: the tar shards listed in ``shards/sizes.json``, their sample count, the manifest.

``open_clip_train`` reads WebDataset shards from a brace-expanded URL list (``DIR/{00000..00041}.tar``) and needs the
number of samples up front (``--train-num-samples``); both come from ``sizes.json`` (``{"00000.tar": 10000, ...}``),
which the write-shards stage writes beside the tars. Empty shards are left out: a DataLoader worker given only empty
shards would yield nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARDS_FOLDER = "shards"
SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.json"
_NUMBERED_TAR = re.compile(r"^(\d+)\.tar$")


@dataclass(frozen=True)
class CorpusShards:
    """The shards of one corpus: their paths, sample counts and the corpus manifest (when present)."""

    root: Path
    sizes: dict[str, int]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def shard_dir(self) -> Path:
        """The folder holding the tars."""
        return self.root / SHARDS_FOLDER

    @property
    def shard_names(self) -> list[str]:
        """Names of the non-empty shards, in order."""
        return sorted(name for name, count in self.sizes.items() if count > 0)

    @property
    def shard_paths(self) -> list[Path]:
        """Paths of the non-empty shards, in order."""
        return [self.shard_dir / name for name in self.shard_names]

    @property
    def num_samples(self) -> int:
        """Total number of samples over all shards (``--train-num-samples``)."""
        return sum(self.sizes[name] for name in self.shard_names)

    @property
    def num_shards(self) -> int:
        """Number of non-empty shards: open_clip needs at least one per DataLoader worker and rank."""
        return len(self.shard_names)

    def webdataset_urls(self) -> str:
        """The shard list as one brace expression (``--train-data``): a range when contiguous, else a list."""
        names = self.shard_names
        if len(names) == 1:
            return str(self.shard_dir / names[0])
        numbers = [_NUMBERED_TAR.match(name) for name in names]
        if all(numbers):
            digits = {len(match.group(1)) for match in numbers if match}
            values = [int(match.group(1)) for match in numbers if match]
            if len(digits) == 1 and values == list(range(values[0], values[0] + len(values))):
                first, last = (match.group(1) for match in (numbers[0], numbers[-1]) if match)
                return str(self.shard_dir / f"{{{first}..{last}}}.tar")
        return str(self.shard_dir / ("{" + ",".join(names) + "}"))


def read_corpus(root: str | Path) -> CorpusShards:
    """Read ``shards/sizes.json`` (required) and ``manifest.json`` (optional) of a corpus directory."""
    root = Path(root)
    sizes_path = root / SHARDS_FOLDER / SIZES_FILE
    if not sizes_path.is_file():
        raise FileNotFoundError(
            f"{sizes_path} not found: --corpus must be a corpus directory written by the write-shards stage "
            "(shards/NNNNN.tar + shards/sizes.json); build one with `make build-corpus`"
        )
    raw_sizes = json.loads(sizes_path.read_text(encoding="utf-8"))
    if not isinstance(raw_sizes, dict):
        raise ValueError(f"{sizes_path} must hold a JSON object {{shard name: sample count}}")
    sizes = {str(name): int(count) for name, count in raw_sizes.items()}
    corpus = CorpusShards(root=root, sizes=sizes, manifest=_read_manifest(root / MANIFEST_FILE))
    missing = [str(path) for path in corpus.shard_paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"shards listed in {sizes_path} are missing: {missing[:5]}")
    if corpus.num_samples == 0:
        raise ValueError(f"the corpus at {root} has no samples ({sizes_path} sums to 0)")
    return corpus


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return manifest if isinstance(manifest, dict) else {"manifest": manifest}
