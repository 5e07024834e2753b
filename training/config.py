"""Training configs: a YAML file of open_clip_train options plus the few settings altcorpus adds on top.

A config is flat YAML. These keys belong to altcorpus:
- ``label_smoothing`` / ``init_temperature``: ALIGN's loss details (see ``training.loss``); null leaves open_clip's.
- ``cpu_threads``: torch's intra-op threads per process (null: torch's default). On a shared CPU, 1 avoids OpenMP
  threads spinning against other jobs (measured here: 2 epochs of the digits test in 56 s with 1 thread, 255 s with 2).
- ``nodes`` / ``gpus_per_node``: how to launch (one process, torchrun on one node, or SLURM over several).
- ``slurm``: sbatch settings (``partition``, ``account``, ``time``, ``cpus_per_task``, ``qos``, ``constraint``,
  ``mem``, ``setup`` (shell lines run before srun), ``directives`` (extra ``#SBATCH`` lines)).
- ``checkpoint_every_samples``: how often a long run checkpoints. open_clip_train checkpoints at the end of an
  "epoch", whose size is ``--train-num-samples``; when the corpus is larger than this, the trainer uses open_clip's
  documented way of checkpointing more often: ``--train-num-samples`` this many samples with ``--dataset-resampled``
  (shards drawn with replacement), and ``epochs`` / ``epochs_cooldown`` (passes over the corpus in the config)
  converted into that many chunks, so ``resume: latest`` loses at most one chunk after a crash. Unset: 20M samples
  (an ALIGN-size corpus of 1.8B pairs then checkpoints 90 times a pass); a corpus no larger than that trains in
  whole-corpus epochs as before; ``0``/``false`` turns it off.
- ``caption_source``: which text each sample trains on: ``alt`` (default), ``enhanced`` or ``mix`` (with
  ``enhanced_probability``), optionally ``split_sentences``; see ``training.captions``.
- ``one_tower_objectives``: OneR's extra objectives for one-tower models, objective -> weight (``{xmc: 0.5, cic:
  0.5}``; see ``training.one_tower``); null: the contrastive loss alone.
- ``extra_args``: raw open_clip_train arguments appended last.
Every other key is an ``open_clip_train`` option, spelled as its flag without dashes (``batch_size`` or
``batch-size``): ``true`` gives a bare flag (``local_loss: true`` -> ``--local-loss``), ``false``/null leaves it out,
a list gives several values, a mapping gives ``key=value`` pairs (``aug_cfg``). The corpus supplies ``--train-data``,
``--train-num-samples`` and ``--dataset-type webdataset``; anything later on the command line wins (argparse keeps
the last value), which is how ``--set`` and arguments after ``--`` override the file.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.captions import CaptionSource, caption_source_from_config
from training.corpus import CorpusShards

#: Keys of a config file that altcorpus handles itself; the rest go to open_clip_train.
ALTCORPUS_KEYS = (
    "label_smoothing",
    "init_temperature",
    "cpu_threads",
    "nodes",
    "gpus_per_node",
    "slurm",
    "extra_args",
    "checkpoint_every_samples",
    "caption_source",
    "one_tower_objectives",
)
#: Where runs are logged and checkpointed when the config does not say.
DEFAULT_LOGS = "build/train"
#: Samples between checkpoints when the config does not say (only corpora larger than this are split).
DEFAULT_CHECKPOINT_EVERY_SAMPLES = 20_000_000
#: open_clip_train's default ``--epochs``.
OPEN_CLIP_DEFAULT_EPOCHS = 32


@dataclass
class TrainConfig:
    """A resolved training config: open_clip options and altcorpus's launch and loss settings."""

    options: dict[str, Any]
    label_smoothing: float | None = None
    init_temperature: float | None = None
    cpu_threads: int | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    slurm: dict[str, Any] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    source: str = ""
    checkpoint_every_samples: int | None = None
    caption_source: CaptionSource = field(default_factory=CaptionSource)
    one_tower_objectives: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The open_clip model name."""
        model = self.options.get("model")
        if not model:
            raise ValueError(f"config {self.source or '<inline>'} sets no `model`")
        return str(model)

    @property
    def name(self) -> str:
        """The run name (log and checkpoint folder): the config's ``name``, else the config file's stem."""
        return str(self.options.get("name") or Path(self.source).stem or self.model)

    @property
    def logs(self) -> str:
        """The folder holding every run's folder."""
        return str(self.options.get("logs") or DEFAULT_LOGS)

    @property
    def run_dir(self) -> Path:
        """``logs/name``: open_clip_train writes ``out.log``, ``params.txt`` and ``checkpoints/`` there."""
        return Path(self.logs) / self.name


def config_from_mapping(values: dict[str, Any], source: str = "") -> TrainConfig:
    """Split a parsed config into open_clip options and altcorpus settings, normalising option names."""
    values = copy.deepcopy(values)
    options = {_option_key(key): value for key, value in values.items() if _option_key(key) not in ALTCORPUS_KEYS}
    settings = {_option_key(key): value for key, value in values.items() if _option_key(key) in ALTCORPUS_KEYS}
    extra_args = settings.get("extra_args") or []
    if not isinstance(extra_args, list):
        raise ValueError("`extra_args` must be a list of command-line arguments")
    return TrainConfig(
        options=options,
        label_smoothing=_optional_float(settings.get("label_smoothing")),
        init_temperature=_optional_float(settings.get("init_temperature")),
        cpu_threads=None if settings.get("cpu_threads") is None else int(settings["cpu_threads"]),
        nodes=int(settings.get("nodes") or 1),
        gpus_per_node=int(settings.get("gpus_per_node") or 0),
        slurm=dict(settings.get("slurm") or {}),
        extra_args=[str(arg) for arg in extra_args],
        source=source,
        checkpoint_every_samples=_checkpoint_every(settings.get("checkpoint_every_samples")),
        caption_source=caption_source_from_config(settings.get("caption_source")),
        one_tower_objectives=_objective_weights(settings.get("one_tower_objectives")),
    )


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config."""
    path = Path(path)
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a YAML mapping of option: value")
    return config_from_mapping(values, source=str(path))


def apply_overrides(config: TrainConfig, assignments: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides (values parsed as YAML, so ``epochs=3``, ``local_loss=true``, ``slurm.time=4:00:00``)."""
    merged: dict[str, Any] = dict(config.options)
    merged.update(
        label_smoothing=config.label_smoothing,
        init_temperature=config.init_temperature,
        cpu_threads=config.cpu_threads,
        nodes=config.nodes,
        gpus_per_node=config.gpus_per_node,
        slurm=dict(config.slurm),
        extra_args=list(config.extra_args),
        checkpoint_every_samples=config.checkpoint_every_samples,
        caption_source=asdict(config.caption_source),
        one_tower_objectives=dict(config.one_tower_objectives),
    )
    for assignment in assignments:
        key, separator, raw_value = assignment.partition("=")
        if not separator or not key:
            raise ValueError(f"override {assignment!r} is not key=value")
        if key.startswith("slurm."):
            # Kept as text: YAML 1.1 would read a time such as 1:00:00 as the sexagesimal integer 3600.
            merged["slurm"][key.removeprefix("slurm.")] = raw_value
            continue
        value = yaml.safe_load(raw_value) if raw_value else None
        if key.startswith("caption_source."):
            current = asdict(caption_source_from_config(merged["caption_source"]))
            merged["caption_source"] = {**current, key.removeprefix("caption_source."): value}
            continue
        merged[_option_key(key)] = value
    return config_from_mapping(merged, source=config.source)


def open_clip_argv(config: TrainConfig, corpus: CorpusShards) -> list[str]:
    """The ``open_clip_train.main`` arguments: the corpus's shards and size, then the config's options, then extras."""
    options = dict(config.options)
    samples_per_epoch = corpus.num_samples
    chunk = chunk_samples(config, corpus.num_samples)
    if chunk is not None:
        # Epochs of `chunk` samples drawn with replacement: checkpoints every chunk, same number of samples seen.
        samples_per_epoch = chunk
        options["dataset_resampled"] = True
        for key, default in (("epochs", OPEN_CLIP_DEFAULT_EPOCHS), ("epochs_cooldown", None)):
            passes = options.get(key, default)
            if passes is not None:
                options[key] = math.ceil(float(passes) * corpus.num_samples / chunk)
    argv = [
        "--train-data",
        corpus.webdataset_urls(),
        "--train-num-samples",
        str(samples_per_epoch),
        "--dataset-type",
        "webdataset",
    ]
    options.setdefault("name", config.name)
    options.setdefault("logs", config.logs)
    for key, value in options.items():
        argv.extend(_option_argv(key, value))
    argv.extend(config.extra_args)
    return argv


def chunk_samples(config: TrainConfig, corpus_samples: int) -> int | None:
    """Samples per open_clip "epoch" when the corpus is split into checkpoint chunks; None for whole-corpus epochs."""
    every = config.checkpoint_every_samples
    if every is None:
        every = DEFAULT_CHECKPOINT_EVERY_SAMPLES
    if every <= 0 or corpus_samples <= every:
        return None
    return every


def validate_open_clip_argv(argv: list[str]) -> Any:
    """Parse ``argv`` with open_clip_train's own parser, so a typo fails before any process or job starts."""
    from open_clip_train.params import parse_args

    try:
        return parse_args(list(argv))
    except SystemExit as exit_error:
        raise ValueError(f"open_clip_train rejected the arguments (see its message above): {argv}") from exit_error


def _option_argv(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, dict):
        return [flag, *(f"{name}={item}" for name, item in value.items())]
    if isinstance(value, (list, tuple)):
        return [flag, *(str(item) for item in value)]
    return [flag, str(value)]


def _option_key(key: str) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def _checkpoint_every(value: Any) -> int | None:
    # null: the default; false/0: off (whole-corpus epochs); a number: samples between checkpoints.
    if value is None:
        return None
    if value is False:
        return 0
    if value is True:
        raise ValueError("`checkpoint_every_samples` takes a number of samples (or false/0 to turn it off)")
    return int(value)


def _objective_weights(value: Any) -> dict[str, float]:
    from training.one_tower import parse_objectives  # imports torch: only configs that set the key pay for it

    return parse_objectives(value) if value else {}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
