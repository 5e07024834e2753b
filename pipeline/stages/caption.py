"""``caption`` (optional): samples/ -> captions/, an enhanced caption per sample from an image-text-to-text model.

Alt text treats an image as a bag of words; a captioning model (BLIP, GIT, a small VLM) states colours, counts and
relations. This stage runs one such checkpoint, by local folder or Hugging Face hub name (``--caption-model``),
over every sample of ``samples/`` under Beam's ``RunInference``: batched (``--caption-batch-size``), the model
loaded once per worker by the model handler, on the worker's GPU when it has one (``--caption-device auto``). The
caption may be conditioned on the alt text: ``--caption-prompt`` is the text the model continues, with
``{alt_text}`` replaced by the sample's alt text (the recaptioning recipe of COYO/LAION recaptions: the model sees
what the page said about the image). Generation is greedy or beam search (deterministic), ``--caption-max-new-tokens``
long. ``write-shards`` then adds the caption to each shard as the ``enhanced.txt`` member and the
``enhanced_caption`` column; ``txt`` stays the alt text.

A sample is never lost here: one that gets no caption keeps its alt text and has a ``captions/`` row with its
reason, counted as ``caption:<reason>``:

- ``decode_error``: the image bytes do not decode (the sample's image is checked again before the model sees it).
- ``model_error``: the model raised on the sample: when a batch raises, each of its samples is captioned again alone
  with the same loaded model, so only the samples that fail alone get this (a one-sample batch that raises goes to
  ``RunInference``'s dead-letter output, which becomes these rows too).
- ``empty_caption``: the model generated no text (only special tokens, or only the prompt back).

Captioned samples count as ``caption:captioned``. Rule-based rewriting of alt text is not captioning and is not done
here. The model handler is our own (``CaptionModelHandler``), shaped like Beam's ``HuggingFacePipelineModelHandler``:
Beam 2.77's ``apache_beam.ml.inference.huggingface_inference`` imports TensorFlow and ``transformers.TFAutoModel``,
which transformers 5 removed, so that module cannot be imported beside the transformers this project uses; and its
pipeline task ``image-to-text`` became ``image-text-to-text`` in transformers 5, whose per-image prompts this stage
needs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.config import CaptionConfig, CorpusConfig
from pipeline.core.layout import CorpusLayout, ReadTable, WriteTable
from pipeline.core.progress import StageProgress, table_progress, with_progress
from pipeline.core.reasons import Reason
from pipeline.core.rules import counter
from pipeline.core.stage import run_stage
from schemas.tables import Caption, SampleImage

STAGE = "caption"
#: The status of a sample the model captioned.
CAPTIONED = "ok"
#: Where ``--caption-prompt`` takes the sample's alt text.
ALT_TEXT_FIELD = "{alt_text}"
#: The transformers pipeline task: images with a text each in, generated text out.
PIPELINE_TASK = "image-text-to-text"


class CaptionFailure(Reason):
    """Why a sample has no enhanced caption (it keeps its alt text: not a rejection)."""

    DECODE_ERROR = "decode_error"
    MODEL_ERROR = "model_error"
    EMPTY_CAPTION = "empty_caption"


def caption_prompt(template: str, alt_text: str) -> str:
    """The text the model continues for one sample: ``template`` with ``{alt_text}`` replaced (braces elsewhere in
    the template or the alt text stay as they are, unlike ``str.format``)."""
    return template.replace(ALT_TEXT_FIELD, alt_text)


def generation_settings(config: CaptionConfig) -> dict[str, Any]:
    """The ``generate`` arguments every caption uses (recorded in ``manifest.json``)."""
    return {"max_new_tokens": config.caption_max_new_tokens, "num_beams": config.caption_num_beams, "do_sample": False}


def caption_row(sample: dict[str, Any], model: str, caption: str | None, status: str, error: str | None = None):
    """The ``captions/`` row of one sample."""
    return Caption.row(
        candidate_id=sample[Caption.CANDIDATE_ID],
        key=sample[Caption.KEY],
        enhanced_caption=caption,
        caption_model=model,
        caption_status=str(status),
        caption_error=error,
    )


@dataclass(frozen=True)
class ModelError:
    """The inference of an example the model raised on when captioned alone (its batch's others went on)."""

    message: str


class CaptionModelHandler(ModelHandler[dict[str, Any], PredictionResult, Any]):
    """A transformers ``image-text-to-text`` pipeline as a RunInference model handler.

    An example is ``{"image": PIL image, "text": prompt}``; a batch is one pipeline call (images and prompts as
    lists), so the model generates for the whole batch at once. ``load_model`` runs once per worker (RunInference
    shares the loaded model between the worker's threads), where the device is resolved: ``auto`` is the worker's
    first GPU when torch sees one.
    """

    def __init__(self, config: CaptionConfig) -> None:
        super().__init__(min_batch_size=1, max_batch_size=config.caption_batch_size)
        self.config = config

    def device(self) -> str:
        """The torch device of this worker's model."""
        import torch

        if self.config.caption_device == "auto":
            return "cuda:0" if torch.cuda.is_available() else "cpu"
        return "cuda:0" if self.config.caption_device == "cuda" else "cpu"

    def load_model(self) -> Any:
        from transformers import pipeline

        captioner = pipeline(
            task=PIPELINE_TASK, model=self.config.caption_model, device=self.device(), dtype=self.config.caption_dtype
        )
        if not getattr(captioner.model.config, "is_encoder_decoder", False):
            # A decoder continues each prompt from its last token: in a batch of prompts of several lengths the
            # padding must come first (right padding would make it continue after pad tokens).
            for tokenizer in (captioner.tokenizer, getattr(captioner.processor, "tokenizer", None)):
                if tokenizer is not None:
                    tokenizer.padding_side = "left"
        return captioner

    def _generate(self, batch: Sequence[dict[str, Any]], model: Any) -> list[str]:
        outputs = model(
            images=[example["image"] for example in batch],
            text=[example["text"] for example in batch],
            generate_kwargs=generation_settings(self.config),
            return_full_text=False,  # the prompt (and so the alt text) is not part of the caption
        )
        if len(outputs) != len(batch):
            raise ValueError(f"the caption model gave {len(outputs)} outputs for {len(batch)} images")
        # An output is a list when the model returns several sequences: the first is the caption.
        return [(output[0] if isinstance(output, list) else output)["generated_text"] for output in outputs]

    def run_inference(
        self, batch: Sequence[dict[str, Any]], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        try:
            texts: list[str | ModelError] = list(self._generate(batch, model))
        except Exception:
            if len(batch) == 1:
                raise  # RunInference's dead-letter output takes it: a model_error row
            # One sample the model cannot take (a prompt past its positions, an odd image) or a batch too big for
            # the device must not cost the others their captions: each again alone, with the same loaded model.
            texts = []
            for example in batch:
                try:
                    texts.extend(self._generate([example], model))
                except Exception as error:
                    texts.append(ModelError(repr(error)[:500]))
        for example, text in zip(batch, texts, strict=True):
            yield PredictionResult(example, text, self.config.caption_model)

    def get_metrics_namespace(self) -> str:
        return "altcorpus_caption"


class PrepareExamples(beam.DoFn):
    """SampleImage row -> ``(candidate_id, example)`` for the model; an image that does not decode -> ``failed``."""

    FAILED = "failed"

    def __init__(self, config: CaptionConfig) -> None:
        self.config = config

    def process(self, sample: dict[str, Any]) -> Iterator[Any]:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(sample[SampleImage.IMAGE])) as opened:
                image = opened.convert("RGB")  # decodes the whole image: a truncated file fails here, not in a batch
        except Exception as error:  # Pillow raises many types for bad bytes (OSError, SyntaxError, ValueError, ...)
            row = caption_row(sample, self.config.caption_model, None, CaptionFailure.DECODE_ERROR, repr(error)[:500])
            yield beam.pvalue.TaggedOutput(self.FAILED, row)
            return
        text = caption_prompt(self.config.caption_prompt, sample[SampleImage.ALT_TEXT])
        identity = {Caption.CANDIDATE_ID: sample[SampleImage.CANDIDATE_ID], Caption.KEY: sample[SampleImage.KEY]}
        yield sample[SampleImage.CANDIDATE_ID], {"image": image, "text": text, "identity": identity}


def captioned_row(keyed: tuple[str, PredictionResult], model: str) -> dict[str, Any]:
    """A RunInference result as a ``captions/`` row: ``ok``, ``empty_caption`` when the text is blank, or
    ``model_error`` for an example the model raised on alone."""
    _, result = keyed
    if isinstance(result.inference, ModelError):
        return caption_row(
            result.example["identity"], model, None, CaptionFailure.MODEL_ERROR, result.inference.message
        )
    caption = " ".join(str(result.inference or "").split())  # one line, single spaces, like the alt texts
    if not caption:
        return caption_row(result.example["identity"], model, None, CaptionFailure.EMPTY_CAPTION, "no text generated")
    return caption_row(result.example["identity"], model, caption, CAPTIONED)


def error_text(error: Any) -> str:
    """The message of a dead-letter error: RunInference gives ``(type, repr, traceback lines)`` or the exception."""
    if isinstance(error, tuple) and len(error) >= 2:
        return str(error[1])[:500]
    return repr(error)[:500]


def failed_batch_rows(failed: tuple[Sequence[tuple[str, dict[str, Any]]], Any], model: str):
    """Every sample of a batch the model raised on, as a ``model_error`` row carrying the error message."""
    batch, error = failed
    for _, example in batch:
        yield caption_row(example["identity"], model, None, CaptionFailure.MODEL_ERROR, error_text(error))


class CountCaptions(beam.DoFn):
    """Count each row's outcome (``caption:captioned`` or ``caption:<reason>``) and the stage's progress; pass it on."""

    progress = StageProgress(STAGE, "samples")

    def setup(self) -> None:
        self.counters: dict[str, Any] = {}

    def process(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        status = row[Caption.CAPTION_STATUS]
        name = "captioned" if status == CAPTIONED else status
        if name not in self.counters:
            self.counters[name] = counter(STAGE, name)
        self.counters[name].inc()
        self.progress.add(1)
        yield row


class CaptionSamples(beam.PTransform):
    """Sample rows -> one ``captions/`` row each: decoded, prompted, captioned in batches, failures kept."""

    def __init__(self, config: CaptionConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        model = self.config.caption_model
        prepared = samples | "Prepare" >> beam.ParDo(PrepareExamples(self.config)).with_outputs(
            PrepareExamples.FAILED, main="examples"
        )
        inference = (
            prepared.examples
            | "RunInference"
            >> RunInference(KeyedModelHandler(CaptionModelHandler(self.config))).with_exception_handling()
        )
        results, dead_letters = inference
        captioned = results | "CaptionRows" >> beam.Map(captioned_row, model=model)
        model_errors = dead_letters.failed_inferences | "ModelErrorRows" >> beam.FlatMap(failed_batch_rows, model=model)
        return (captioned, model_errors, prepared[PrepareExamples.FAILED]) | "AllRows" >> beam.Flatten()


def build(pipeline: beam.Pipeline, layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> None:
    """The caption graph: read samples/, caption every sample, write captions/ (one row per sample)."""
    if not config.caption.caption_model:
        raise ValueError("caption needs --caption-model: a local checkpoint folder or a Hugging Face hub id")
    _ = (
        pipeline
        | "ReadSamples" >> ReadTable(layout.glob(SampleImage))
        | "Caption" >> CaptionSamples(config.caption)
        | "Count"
        >> beam.ParDo(
            with_progress(CountCaptions(), table_progress(STAGE, "samples", layout.glob(SampleImage), pipeline))
        )
        | "WriteCaptions" >> WriteTable(layout.prefix(Caption), Caption)
    )


def manifest_entry(caption: CaptionConfig) -> dict[str, Any]:
    """What ``manifest.json`` records of the captions: the model, the prompt and the generation settings."""
    return {
        "model": caption.caption_model,
        "prompt": caption.caption_prompt,
        "task": PIPELINE_TASK,
        "generation": generation_settings(caption),
        "dtype": caption.caption_dtype,
        "device": caption.caption_device,
    }


def _success_info(layout: CorpusLayout, config: CorpusConfig, options: PipelineOptions) -> dict[str, Any]:
    return {"captions": manifest_entry(config.caption)}


def run(argv: Sequence[str]) -> dict[str, int]:
    """Run ``caption`` on ``--output`` (its samples/ from filter-image); returns its counters."""
    return run_stage(STAGE, argv, build, extra_info=_success_info)
