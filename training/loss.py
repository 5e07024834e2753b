"""ALIGN's loss details on top of open_clip's contrastive loss, wired into ``open_clip_train`` without forking it.

ALIGN (Jia et al., 2021, section 5) trains with a normalised softmax loss in both directions, a softmax temperature
that is learned jointly with the encoders and initialised to 1.0 (shared by the image-to-text and text-to-image
losses), and label smoothing 0.1 on both softmaxes. open_clip's ``ClipLoss`` has the learnable temperature (the
model's ``logit_scale`` = 1/temperature, stored as a log) but no label smoothing, and CLIP's initial temperature 0.07.

How it is wired in (``install``), both by rebinding a name ``open_clip_train.main`` imported, before ``main()`` runs:
- ``open_clip_train.main.create_loss`` becomes a function that returns :class:`AlignLoss` (a ``ClipLoss`` subclass, so
  ``--local-loss``, ``--gather-with-grad``, rank and world size keep working) when label smoothing is asked for, and
  otherwise defers to open_clip's own ``create_loss`` (CoCa, SigLIP and distillation are left untouched).
- ``open_clip_train.main.create_model_and_transforms`` becomes a wrapper that adds ``init_logit_scale=log(1/T)`` when
  an initial temperature T is asked for. The ALIGN model configs already carry T = 1.0 (``init_logit_scale`` 0), so
  this option is for CLIP configs trained ALIGN-style, or ALIGN configs started at CLIP's 0.07.
``install`` first checks that ``open_clip_train.main.main`` looks both names up in its module, and raises otherwise:
an open_clip release that gets them some other way would silently train with plain ``ClipLoss``.
open_clip_train clamps ``logit_scale`` to [0, ln 100] after every step, i.e. temperature in [0.01, 1]: ALIGN's initial
1.0 is the upper end, and the learned temperature can only go down from there, as it does in the paper.
"""

from __future__ import annotations

import dis
import inspect
import logging
import math
import types
from collections.abc import Callable
from typing import Any

import open_clip
import torch
from open_clip.loss import ClipLoss
from torch.nn import functional as F

#: ALIGN's label smoothing on the contrastive softmax.
ALIGN_LABEL_SMOOTHING = 0.1
#: ALIGN's initial softmax temperature.
ALIGN_INIT_TEMPERATURE = 1.0


class AlignLoss(ClipLoss):
    """open_clip's bidirectional contrastive loss with label smoothing on both softmaxes (ALIGN used 0.1)."""

    def __init__(self, label_smoothing: float = ALIGN_LABEL_SMOOTHING, **clip_loss_kwargs: Any) -> None:
        super().__init__(**clip_loss_kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        logits_per_image, logits_per_text = self.get_logits(
            image_features, text_features, logit_scale, logit_bias=logit_bias
        )
        labels = self.get_ground_truth(image_features.device, logits_per_image.shape[0])
        total_loss = (
            F.cross_entropy(logits_per_image, labels, label_smoothing=self.label_smoothing)
            + F.cross_entropy(logits_per_text, labels, label_smoothing=self.label_smoothing)
        ) / 2
        return {"contrastive_loss": total_loss} if output_dict else total_loss


def logit_scale_for_temperature(temperature: float) -> float:
    """The value of open_clip's ``logit_scale`` parameter (a log of 1/temperature) for a softmax temperature."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return math.log(1.0 / temperature)


def make_create_loss(label_smoothing: float | None) -> Callable[[Any], torch.nn.Module]:
    """A drop-in for ``open_clip.create_loss(args)``: AlignLoss when label smoothing is set, else open_clip's own."""

    def create_loss(args: Any) -> torch.nn.Module:
        plain_contrastive = not args.distill and "coca" not in args.model.lower() and not args.siglip
        if label_smoothing is None or not plain_contrastive:
            return open_clip.create_loss(args)
        logging.info(f"ALIGN loss: contrastive softmax with label smoothing {label_smoothing}")
        return AlignLoss(
            label_smoothing=label_smoothing,
            local_loss=args.local_loss,
            gather_with_grad=args.gather_with_grad,
            cache_labels=True,
            rank=args.rank,
            world_size=args.world_size,
            use_horovod=args.horovod,
        )

    return create_loss


def make_create_model_and_transforms(init_temperature: float | None) -> Callable[..., Any]:
    """A drop-in for ``open_clip.create_model_and_transforms`` that sets the initial temperature when asked."""

    def create_model_and_transforms(*args: Any, **kwargs: Any) -> Any:
        if init_temperature is not None and "init_logit_scale" not in kwargs:
            kwargs["init_logit_scale"] = logit_scale_for_temperature(init_temperature)
            logging.info(f"ALIGN temperature: learnable, initialised to {init_temperature}")
        return open_clip.create_model_and_transforms(*args, **kwargs)

    return create_model_and_transforms


#: The names :func:`install` rebinds in ``open_clip_train.main``.
HOOKED_NAMES = ("create_loss", "create_model_and_transforms")


def global_lookups(function: Callable[..., Any]) -> set[str]:
    """Names a function (and any function or comprehension nested in it) reads as module globals (``LOAD_GLOBAL``)."""
    names: set[str] = set()
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        names.update(str(op.argval) for op in dis.get_instructions(code) if op.opname == "LOAD_GLOBAL")
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names


def check_hook_points(open_clip_main: types.ModuleType) -> None:
    """Refuse, naming the open_clip version, when ``main()`` would not see names rebound in its module.

    Rebinding a module global only reaches code that looks the name up in that module when it runs; a release whose
    ``main()`` gets the loss some other way (open_clip's main branch no longer imports ``create_loss`` there) would
    silently train with plain ``ClipLoss``.
    """
    main = getattr(open_clip_main, "main", None)
    looked_up = global_lookups(main) if inspect.isfunction(main) else set()
    missing = [name for name in HOOKED_NAMES if name not in looked_up or not hasattr(open_clip_main, name)]
    if missing:
        raise RuntimeError(
            f"open_clip_torch {open_clip.__version__}: {open_clip_main.__name__}.main() does not look up "
            f"{', '.join(missing)} in its module, so ALIGN's label smoothing and initial temperature would silently "
            "not apply; training.loss supports open_clip_torch 3.3 (the train extra's pin): adapt training/loss.py's "
            "hook to this release or install open_clip_torch[training]>=3.3,<3.4"
        )


def install(
    label_smoothing: float | None = None,
    init_temperature: float | None = None,
    open_clip_main: types.ModuleType | None = None,
) -> None:
    """Rebind ``create_loss`` / ``create_model_and_transforms`` in ``open_clip_train.main`` (see module docstring).

    Always rebinds both, from open_clip's originals, so calling it twice in one process (tests) never stacks wrappers
    and ``install()`` with no options restores open_clip's behaviour. Raises ``RuntimeError`` (and rebinds nothing)
    when the installed open_clip_train's ``main()`` would not see them (:func:`check_hook_points`).
    ``open_clip_main`` defaults to the imported ``open_clip_train.main``.
    """
    if open_clip_main is None:
        import open_clip_train.main as open_clip_main

    check_hook_points(open_clip_main)
    open_clip_main.create_loss = make_create_loss(label_smoothing)
    open_clip_main.create_model_and_transforms = make_create_model_and_transforms(init_temperature)
