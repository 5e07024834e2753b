"""One-tower models: one transformer encodes images and alt text; only the input embeddings are per modality.

Two designs of one family, both open_clip model configs (``training/model_configs/one_tower/*.json``):
- **OneR mode** (Jang et al., AAAI 2023, "Unifying Vision-Language Representation Space with Single-tower
  Transformer"): image patches (a patch embedding + image positions) and caption tokens (a token embedding + text
  positions) go through the same transformer, the same final norm and the same projection; a shared class token is
  pooled for both. Text attends bidirectionally with padding masked (CLIP's BPE tokenizer, pad id 0).
- **CLIPPO mode** (Tschannen et al., CVPR 2023, "Image-and-Language Understanding from Pixels Only"): the alt text is
  rendered to an image (:class:`TextRenderer`, which open_clip's ``get_tokenizer`` returns for these configs) and
  encoded by the very same ViT, patch embedding included: no text-specific parameter at all.

How it is wired into open_clip 3.3 without forking it (:func:`install`, called by ``training.models``):
open_clip's factory picks the model class from a fixed set (``CLIP``, ``CustomTextCLIP``, ``CoCa``), so the configs
set ``custom_text: true`` plus a ``one_tower`` block, and ``open_clip.factory.CustomTextCLIP`` is rebound to
:func:`custom_text_or_one_tower`, which builds :class:`OneTowerCLIP` for configs with that block and open_clip's own
``CustomTextCLIP`` otherwise. Everything else of the factory (checkpoint loading, precision, preprocessing) is
open_clip's. ``get_tokenizer`` (in ``open_clip``, ``open_clip.factory`` and ``open_clip_train.main``) is rebound the
same way: the renderer for CLIPPO configs, open_clip's tokenizer for everything else.

The extra OneR objectives (cross-modal mixup contrastive, contextual invariance) are in :class:`OneTowerLoss`; see
``training/README.md`` for what follows which source.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from open_clip.transformer import LayerNorm, Transformer
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torch.nn import functional as F

#: Folder of the one-tower model configs (kept apart from the ALIGN family's ``model_configs/*.json``).
ONE_TOWER_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs" / "one_tower"
#: The objectives a training config can switch on (``one_tower_objectives: {xmc: 0.5, cic: 0.5}``).
OBJECTIVES = ("xmc", "cic")

_ORIGINAL_CUSTOM_TEXT_CLIP = open_clip.factory.CustomTextCLIP
_ORIGINAL_GET_TOKENIZER = open_clip.factory.get_tokenizer


class ImageInput(nn.Module):
    """The image-specific input: a patch embedding and the positions of the class token and the patch grid.

    Named ``visual`` on the model, with ``image_size``/``grid_size``, so open_clip's preprocessing and its
    position-embedding resize on checkpoint loading (``force_image_size``) treat it like a ViT's.
    """

    def __init__(self, image_size: int, patch_size: int, width: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size = (image_size, image_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size[0] * self.grid_size[1] + 1, width))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, grid cells, width) patch tokens with their positions (the class position excluded)."""
        x = self.conv1(image).flatten(2).transpose(1, 2)
        positions = self.positional_embedding[1:]
        if x.shape[1] != positions.shape[0]:
            raise ValueError(f"image gives {x.shape[1]} patches, the model has positions for {positions.shape[0]}")
        return x + positions.to(x.dtype)


class TextInput(nn.Module):
    """The text-specific input (OneR mode): a token embedding and the positions of the class token and the tokens."""

    def __init__(self, vocab_size: int, context_length: int, width: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length + 1, width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, L, width) token vectors with their positions."""
        return self.token_embedding(text) + self.positional_embedding[1 : text.shape[1] + 1]


class OneTowerCLIP(nn.Module):
    """One modality-agnostic transformer for images and text; open_clip's CLIP interface (encode_*, forward).

    Shared: the class token, ``ln_pre``, the transformer, ``ln_post``, the projection and the temperature.
    Per modality: :class:`ImageInput` (``visual``) and, in OneR mode, :class:`TextInput` (``text``).
    """

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: dict[str, Any],
        text_cfg: dict[str, Any],
        one_tower: dict[str, Any],
        quick_gelu: bool = False,
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float | None = None,
        cast_dtype: torch.dtype | None = None,
        output_dict: bool = False,
        **unused: Any,
    ) -> None:
        super().__init__()
        self.output_dict = output_dict
        self.mode = str(one_tower.get("mode", "oner"))
        if self.mode not in ("oner", "clippo"):
            raise ValueError(f"one_tower mode must be 'oner' or 'clippo', got {self.mode!r}")
        width = int(vision_cfg["width"])
        self.heads = int(vision_cfg["heads"])
        self.visual = ImageInput(int(vision_cfg["image_size"]), int(vision_cfg["patch_size"]), width)
        self.text = (
            TextInput(int(text_cfg["vocab_size"]), int(text_cfg["context_length"]), width)
            if self.mode == "oner"
            else None
        )
        self.context_length = int(text_cfg.get("context_length", 0))
        self.class_embedding = nn.Parameter(width**-0.5 * torch.randn(width))
        self.ln_pre = LayerNorm(width)
        act_layer = open_clip.model.QuickGELU if quick_gelu else nn.GELU
        self.transformer = Transformer(
            width=width,
            layers=int(vision_cfg["layers"]),
            heads=self.heads,
            mlp_ratio=float(vision_cfg.get("mlp_ratio", 4.0)),
            act_layer=act_layer,
        )
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(width**-0.5 * torch.randn(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * init_logit_scale)
        self.logit_bias = None if init_logit_bias is None else nn.Parameter(torch.ones([]) * init_logit_bias)
        #: Weights of the extra objectives; set by :func:`install_objectives` when the training config asks.
        self.objectives: dict[str, float] = {}

    # -- the shared encoder ----------------------------------------------------------------------------------------

    def _encode(
        self,
        tokens: torch.Tensor,
        cls_position: torch.Tensor,
        key_padding: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prepend the shared class token (at the modality's class position), run the shared transformer.

        Returns the (N, 1 + L, width) outputs after ``ln_post``.
        """
        cls = (self.class_embedding + cls_position).to(tokens.dtype)
        x = torch.cat([cls.expand(tokens.shape[0], 1, -1), tokens], dim=1)
        x = self.ln_pre(x)
        mask = self._attention_mask(x, key_padding, attn_mask)
        return self.ln_post(self.transformer(x, attn_mask=mask))

    def _attention_mask(
        self, x: torch.Tensor, key_padding: torch.Tensor | None, attn_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        # An additive (N * heads, L, L) mask: -inf where a query may not look (padding keys, blocked context).
        if key_padding is None and attn_mask is None:
            return None
        n, length = x.shape[0], x.shape[1]
        blocked = torch.zeros(n, length, length, dtype=torch.bool, device=x.device)
        if key_padding is not None:
            pad = torch.cat([torch.zeros(n, 1, dtype=torch.bool, device=x.device), key_padding], dim=1)
            blocked |= pad[:, None, :]
        if attn_mask is not None:
            blocked |= attn_mask
        additive = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device).masked_fill(blocked, float("-inf"))
        return additive.repeat_interleave(self.heads, dim=0)

    def _project(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled @ self.proj

    def image_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """Patch tokens of an image batch (input embedding only)."""
        return self.visual(image)

    def text_tokens(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input tokens of a text batch and its padding mask: token ids (OneR) or rendered text images (CLIPPO)."""
        if self.mode == "clippo":
            if text.ndim != 4:
                raise ValueError("a CLIPPO model encodes text rendered as images (use its get_tokenizer renderer)")
            return self.visual(text), None
        return self.text(text), text == 0

    @property
    def image_cls_position(self) -> torch.Tensor:
        """Position vector of the class token in an image sequence (also a mixed one)."""
        return self.visual.positional_embedding[0]

    @property
    def text_cls_position(self) -> torch.Tensor:
        """Position vector of the class token in a text sequence (CLIPPO's text is an image)."""
        return self.text.positional_embedding[0] if self.text is not None else self.visual.positional_embedding[0]

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embedding of an image batch: the class token of the shared encoder, projected."""
        features = self._project(self._encode(self.image_tokens(image), self.image_cls_position)[:, 0])
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embedding of a text batch, by the same encoder and projection as images."""
        tokens, padding = self.text_tokens(text)
        features = self._project(self._encode(tokens, self.text_cls_position, padding)[:, 0])
        return F.normalize(features, dim=-1) if normalize else features

    def patch_features(self, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(N, grid h, grid w, embed_dim) per-patch outputs of the shared encoder, in the joint space (localisation)."""
        outputs = self._encode(self.image_tokens(image), self.image_cls_position)[:, 1:]
        features = self._project(outputs)
        features = F.normalize(features, dim=-1) if normalize else features
        return features.reshape(image.shape[0], *self.visual.grid_size, -1)

    # -- the extra objectives --------------------------------------------------------------------------------------

    def mixed_features(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: Any) -> torch.Tensor:
        """XMC's input: an image's patches and its caption's tokens as one sequence, pooled at the class token."""
        padding = self._concat_padding(image_tokens, text_padding, text_tokens.shape[1])
        outputs = self._encode(torch.cat([image_tokens, text_tokens], dim=1), self.image_cls_position, padding)
        return F.normalize(self._project(outputs[:, 0]), dim=-1)

    def contextual_features(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CIC's pair: the caption's tokens (queries) with the image as context vs with the caption as context.

        Returns two (N, embed_dim) normalised means over the caption's (unpadded) token outputs: in the first the
        caption tokens attend only to the class token and the image's patches (keys/values); in the second only to
        the class token and the caption, exactly as when the caption is encoded alone.
        """
        n, num_image, num_text = image_tokens.shape[0], image_tokens.shape[1], text_tokens.shape[1]
        length = 1 + num_image + num_text
        text_rows = torch.zeros(length, dtype=torch.bool, device=image_tokens.device)
        text_rows[1 + num_image :] = True
        padding = self._concat_padding(image_tokens, text_padding, num_text)
        # Image context: caption rows see the class token and the patches only; patch rows never see the caption.
        image_context = text_rows[None, :].expand(length, length) | (~text_rows[:, None] & text_rows[None, :])
        # Text context: the class token and the caption rows see only the class token and the caption (as when the
        # caption is encoded alone); patch rows see only the patches and the class token.
        image_columns = ~text_rows
        image_columns[0] = False
        caption_side = text_rows.clone()
        caption_side[0] = True
        text_context = (caption_side[:, None] & image_columns[None, :]) | (~caption_side[:, None] & text_rows[None, :])
        sequence = torch.cat([image_tokens, text_tokens], dim=1)
        pooled = []
        for blocked in (image_context, text_context):
            mask = blocked[None].expand(n, -1, -1)
            outputs = self._encode(sequence, self.image_cls_position, padding, mask)[:, 1 + num_image :]
            keep = torch.ones(n, num_text, dtype=outputs.dtype, device=outputs.device)
            if text_padding is not None:
                keep = (~text_padding).to(outputs.dtype)
            mean = (outputs * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp_min(1)
            pooled.append(F.normalize(self._project(mean), dim=-1))
        return pooled[0], pooled[1]

    @staticmethod
    def _concat_padding(image_tokens: torch.Tensor, text_padding: Any, num_text: int) -> torch.Tensor | None:
        if text_padding is None:
            return None
        image_pad = torch.zeros(
            image_tokens.shape[0], image_tokens.shape[1], dtype=torch.bool, device=image_tokens.device
        )
        return torch.cat([image_pad, text_padding[:, :num_text]], dim=1)

    # -- open_clip's interface -------------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> Any:
        """open_clip's CLIP forward: a dict (``output_dict``) or (image_features, text_features, logit_scale).

        In training with objectives switched on, the dict also holds what :class:`OneTowerLoss` needs for them.
        """
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        if not self.output_dict:
            if self.logit_bias is not None:
                return image_features, text_features, self.logit_scale.exp(), self.logit_bias
            return image_features, text_features, self.logit_scale.exp()
        out: dict[str, Any] = {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": self.logit_scale.exp(),
        }
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        if self.training and self.objectives and image is not None and text is not None:
            image_tokens = self.image_tokens(image)
            text_tokens, text_padding = self.text_tokens(text)
            if self.objectives.get("xmc"):
                out["mixed_features"] = self.mixed_features(image_tokens, text_tokens, text_padding)
            if self.objectives.get("cic"):
                out["image_context_features"], out["text_context_features"] = self.contextual_features(
                    image_tokens, text_tokens, text_padding
                )
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """open_clip_train's ``--grad-checkpointing``."""
        self.transformer.grad_checkpointing = enable

    def lock_image_tower(self, *args: Any, **kwargs: Any) -> None:
        """There is no separate image tower to lock."""
        raise ValueError("a one-tower model has no separate image tower: --lock-image does not apply")

    def lock_text_tower(self, *args: Any, **kwargs: Any) -> None:
        """There is no separate text tower to lock."""
        raise ValueError("a one-tower model has no separate text tower: --lock-text does not apply")


def shared_parameters(model: OneTowerCLIP) -> dict[str, int]:
    """Parameter counts by part: ``shared`` (the one encoder), ``image_input``, ``text_input`` (0 for CLIPPO)."""
    image_input = sum(p.numel() for p in model.visual.parameters())
    text_input = sum(p.numel() for p in model.text.parameters()) if model.text is not None else 0
    total = sum(p.numel() for p in model.parameters())
    return {"shared": total - image_input - text_input, "image_input": image_input, "text_input": text_input}


# -- CLIPPO's text renderer ---------------------------------------------------------------------------------------


class TextRenderer:
    """CLIPPO's "tokenizer": alt text rendered as an image, normalised like the images (value range -1..1).

    Follows big_vision's ``render_unifont`` as configured in ``configs/proj/clippo/train_clippo.py`` in what it does:
    lowercased text, dark text (brightness 0) on a mid-grey background (127), glyphs trimmed to their ink plus one
    pixel of spacing (at least 4 px wide) and laid out left to right in rows that fill a square image, top to bottom,
    cut off where the image ends, grey to RGB, then value range -1..1. The font differs: big_vision downloads GNU
    Unifont (16 px bitmaps); nothing is downloaded here, so the glyphs come from Pillow's bundled default font
    (``ImageFont.load_default(size)``: Aileron Regular under FreeType), rendered at ``font_size`` px.
    """

    def __init__(
        self,
        image_size: int = 224,
        font_size: int = 16,
        lower: bool = True,
        text_brightness: int = 0,
        background_brightness: int = 127,
        spacing: int = 1,
        min_width: int = 4,
        max_chars: int = 768,
        font: str = "pillow-default",
        context_length: int = 0,
    ) -> None:
        if font != "pillow-default":
            raise ValueError(f"font {font!r}: only 'pillow-default' (Pillow's bundled Aileron) is supported")
        self.image_size, self.font_size, self.lower = image_size, font_size, lower
        self.text_brightness, self.background_brightness = text_brightness, background_brightness
        self.spacing, self.min_width, self.max_chars = spacing, min_width, max_chars
        self.font_name = font
        self.context_length = context_length  # open_clip_train reads it; rendering has no token limit
        self._glyphs: dict[str, np.ndarray] = {}

    @functools.cached_property
    def _font(self) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.load_default(size=self.font_size)

    @property
    def line_height(self) -> int:
        """Pixel rows per line of text: the font size plus room for descenders."""
        return self.font_size + self.font_size // 4

    def _glyph(self, char: str) -> np.ndarray:
        # A (line_height, w) ink mask of one character, trimmed to its ink plus `spacing`, at least `min_width` wide.
        cached = self._glyphs.get(char)
        if cached is not None:
            return cached
        canvas = Image.new("L", (self.font_size * 3, self.line_height), 0)
        ImageDraw.Draw(canvas).text((self.font_size, 0), char, fill=255, font=self._font)
        ink = np.asarray(canvas, dtype=np.uint8)
        columns = np.flatnonzero(ink.max(axis=0) > 0)
        if columns.size == 0:
            glyph = np.zeros((ink.shape[0], self.min_width), dtype=np.uint8)  # a space keeps its width
        else:
            first = max(int(columns[0]) - self.spacing, 0)
            last = max(int(columns[-1]) + 1 + self.spacing, first + self.min_width)
            glyph = ink[:, first:last]
        self._glyphs[char] = glyph
        return glyph

    def render(self, text: str) -> np.ndarray:
        """One text as an (image_size, image_size) uint8 grey image."""
        text = (text.lower() if self.lower else text)[: self.max_chars]
        size = self.image_size
        ink = np.zeros((size, size), dtype=np.uint8)
        x = y = 0
        for char in text:
            glyph = self._glyph(char)
            height, width = glyph.shape
            if x + width > size:
                x, y = 0, y + height
            if y + height > size:
                break
            ink[y : y + height, x : x + width] = np.maximum(ink[y : y + height, x : x + width], glyph[:, : size - x])
            x += width
        alpha = ink.astype(np.float32) / 255.0
        grey = self.background_brightness + alpha * (self.text_brightness - self.background_brightness)
        return np.round(grey).astype(np.uint8)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """(N, 3, image_size, image_size) float tensor in -1..1, as open_clip's tokenizers return (N, L) ids."""
        if isinstance(texts, str):
            texts = [texts]
        images = np.stack([self.render(str(text)) for text in texts]).astype(np.float32)
        tensor = torch.from_numpy(images / 127.5 - 1.0)
        return tensor[:, None].expand(-1, 3, -1, -1).contiguous()


# -- wiring into open_clip ----------------------------------------------------------------------------------------


def custom_text_or_one_tower(**model_cfg: Any) -> nn.Module:
    """open_clip's factory's ``CustomTextCLIP``: :class:`OneTowerCLIP` for configs with a ``one_tower`` block."""
    if "one_tower" in model_cfg:
        return OneTowerCLIP(**model_cfg)
    return _ORIGINAL_CUSTOM_TEXT_CLIP(**model_cfg)


custom_text_or_one_tower.__name__ = "CustomTextCLIP|OneTowerCLIP"  # the factory logs the class's name


def get_tokenizer(model_name: str = "", context_length: int | None = None, **kwargs: Any) -> Any:
    """open_clip's ``get_tokenizer``, except that a CLIPPO config gets its :class:`TextRenderer`."""
    config = open_clip.get_model_config(model_name) if model_name else None
    one_tower = (config or {}).get("one_tower") or {}
    if one_tower.get("mode") == "clippo":
        render = dict((config or {}).get("text_cfg", {}).get("render", {}))
        render.setdefault("image_size", config["vision_cfg"]["image_size"])
        return TextRenderer(**render)
    return _ORIGINAL_GET_TOKENIZER(model_name, context_length=context_length, **kwargs)


def install() -> None:
    """Register the one-tower configs and rebind the factory's class choice and ``get_tokenizer`` (idempotent)."""
    if not ONE_TOWER_CONFIG_DIR.is_dir():
        raise FileNotFoundError(f"no one-tower model configs in {ONE_TOWER_CONFIG_DIR}")
    names = [path.stem for path in ONE_TOWER_CONFIG_DIR.glob("*.json")]
    if any(name not in open_clip.list_models() for name in names):
        open_clip.add_model_config(ONE_TOWER_CONFIG_DIR)
    open_clip.factory.CustomTextCLIP = custom_text_or_one_tower
    open_clip.factory.get_tokenizer = get_tokenizer
    open_clip.get_tokenizer = get_tokenizer
    open_clip_main = sys.modules.get("open_clip_train.main")
    if open_clip_main is not None:
        open_clip_main.get_tokenizer = get_tokenizer


def one_tower_model_names() -> list[str]:
    """Names of the one-tower configs this package ships."""
    return sorted(path.stem for path in ONE_TOWER_CONFIG_DIR.glob("*.json"))


# -- the objectives -----------------------------------------------------------------------------------------------


class OneTowerLoss(nn.Module):
    """The trainer's contrastive loss plus OneR's extra objectives, each weighted (0 or absent: off).

    ``contrastive_loss``: the base loss (``ClipLoss``/``AlignLoss``) on image vs text features, as for two towers.
    ``xmc_loss``: the base loss between the mixed (image + caption) embedding and the image embedding, and between
    the mixed embedding and the text embedding, averaged, times ``xmc``.
    ``cic_loss``: the base loss between the caption's representation with the image as context and with itself as
    context, times ``cic``. All use the model's one temperature; the base loss does the cross-rank gathering.
    """

    def __init__(self, base: nn.Module, weights: dict[str, float]) -> None:
        super().__init__()
        unknown = set(weights) - set(OBJECTIVES)
        if unknown:
            raise ValueError(f"unknown one-tower objectives {sorted(unknown)}; known: {', '.join(OBJECTIVES)}")
        self.base = base
        self.weights = {name: float(weight) for name, weight in weights.items() if weight}

    def _contrastive(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, logit_bias: Any) -> Any:
        kwargs = {} if logit_bias is None else {"logit_bias": logit_bias}
        return self.base(a, b, logit_scale, **kwargs)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        mixed_features: torch.Tensor | None = None,
        image_context_features: torch.Tensor | None = None,
        text_context_features: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> Any:
        losses = {"contrastive_loss": self._contrastive(image_features, text_features, logit_scale, logit_bias)}
        if "xmc" in self.weights:
            if mixed_features is None:
                raise ValueError("the xmc objective is on but the model returned no mixed_features")
            xmc = (
                self._contrastive(mixed_features, image_features, logit_scale, logit_bias)
                + self._contrastive(mixed_features, text_features, logit_scale, logit_bias)
            ) / 2
            losses["xmc_loss"] = self.weights["xmc"] * xmc
        if "cic" in self.weights:
            if image_context_features is None or text_context_features is None:
                raise ValueError("the cic objective is on but the model returned no contextual features")
            cic = self._contrastive(image_context_features, text_context_features, logit_scale, logit_bias)
            losses["cic_loss"] = self.weights["cic"] * cic
        return losses if output_dict else sum(losses.values())


def parse_objectives(value: Any) -> dict[str, float]:
    """``one_tower_objectives`` of a training config: a mapping of objective -> weight (null: none)."""
    if value in (None, False, ""):
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"`one_tower_objectives` must map objectives ({', '.join(OBJECTIVES)}) to weights")
    weights = {str(name): float(weight) for name, weight in value.items()}
    unknown = set(weights) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"unknown one-tower objectives {sorted(unknown)}; known: {', '.join(OBJECTIVES)}")
    return weights


def install_objectives(weights: dict[str, float], open_clip_main: types.ModuleType | None = None) -> None:
    """Wrap ``open_clip_train.main``'s (already hooked) loss and model factory for the one-tower objectives.

    Call after ``training.loss.install``: the model factory then sets ``model.objectives`` on one-tower models, and
    the loss factory wraps whatever loss it made in :class:`OneTowerLoss`. Empty weights change nothing.
    """
    if open_clip_main is None:
        import open_clip_train.main as open_clip_main

    install()
    open_clip_main.get_tokenizer = get_tokenizer
    weights = {name: weight for name, weight in weights.items() if weight}
    if not weights:
        return
    create_loss: Callable[[Any], nn.Module] = open_clip_main.create_loss
    create_model_and_transforms: Callable[..., Any] = open_clip_main.create_model_and_transforms

    def create_one_tower_loss(args: Any) -> nn.Module:
        base = create_loss(args)
        logging.info(f"one-tower objectives: {weights}")
        return OneTowerLoss(base, weights)

    def create_one_tower_model(*args: Any, **kwargs: Any) -> Any:
        created = create_model_and_transforms(*args, **kwargs)
        if not isinstance(created[0], OneTowerCLIP):
            raise ValueError("`one_tower_objectives` needs a one-tower model (training/model_configs/one_tower/)")
        created[0].objectives = dict(weights)
        return created

    open_clip_main.create_loss = create_one_tower_loss
    open_clip_main.create_model_and_transforms = create_one_tower_model
