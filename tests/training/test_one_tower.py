"""The one-tower family (training/one_tower.py): parameter sharing, the objectives' losses, CLIPPO's renderer, wiring.

Fast tests on tiny models and random tensors; the trained comparison with a two-tower model, checkpoints and
localisation are in test_one_tower_train.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss
from PIL import Image
from torch.nn import functional as F

from training import loss, one_tower
from training.config import config_from_mapping, load_config
from training.launch import worker_args
from training.localize import localize, overlay, peak_cell, similarity_map
from training.models import register_model_configs
from training.worker import parse_worker_args

PROJECT_ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_one_encoder_instance_serves_both_modalities() -> None:
    register_model_configs()
    model = open_clip.create_model("OneR-tiny")
    assert isinstance(model, one_tower.OneTowerCLIP) and model.mode == "oner"
    calls: list[tuple[int, ...]] = []
    model.transformer.register_forward_hook(lambda module, args, output: calls.append(tuple(args[0].shape)))
    transformers = [m for m in model.modules() if isinstance(m, open_clip.transformer.Transformer)]
    assert transformers == [model.transformer]  # exactly one transformer in the whole model
    tokens = open_clip.get_tokenizer("OneR-tiny")(["the handwritten digit seven", "two"])
    model.encode_image(torch.randn(2, 3, 32, 32))
    model.encode_text(tokens)
    assert calls == [(2, 1 + 16, 64), (2, 1 + 16, 64)]  # class token + 4x4 patches; class token + 16 tokens
    # Parameters: one tower (everything but the inputs) + the patch embedding (+ image positions) + the token
    # embedding (+ text positions), each counted from the layers themselves.
    width, layers = 64, 4
    block = 2 * width + (3 * width * width + 3 * width) + (width * width + width) + 2 * width  # ln_1, attn, ln_2
    block += (width * 4 * width + 4 * width) + (4 * width * width + width)  # mlp
    tower = layers * block + width + 2 * 2 * width + width * 64 + 1  # + class token, ln_pre/ln_post, proj, scale
    image_input = 3 * width * 8 * 8 + (16 + 1) * width
    text_input = 49408 * width + (16 + 1) * width
    assert _count(model) == tower + image_input + text_input
    assert one_tower.shared_parameters(model) == {"shared": tower, "image_input": image_input, "text_input": text_input}
    assert _count(model.visual) == image_input and _count(model.text) == text_input


def test_clippo_has_no_text_specific_parameter_and_reads_rendered_text() -> None:
    register_model_configs()
    oner, clippo = open_clip.create_model("OneR-tiny"), open_clip.create_model("CLIPPO-tiny")
    assert clippo.text is None and clippo.mode == "clippo"
    parts = one_tower.shared_parameters(clippo)
    assert parts["text_input"] == 0 and _count(clippo) == parts["shared"] + parts["image_input"]
    assert _count(clippo) == _count(oner) - _count(oner.text)
    renderer = open_clip.get_tokenizer("CLIPPO-tiny")
    assert isinstance(renderer, one_tower.TextRenderer) and renderer.image_size == 32 and renderer.font_size == 8
    assert type(open_clip.get_tokenizer("OneR-tiny")).__name__ == "SimpleTokenizer"  # others keep open_clip's
    rendered = renderer(["Seven", "seven", "two"])
    assert rendered.shape == (3, 3, 32, 32) and rendered.dtype == torch.float32
    assert torch.equal(rendered[0], rendered[1])  # lowercased, as big_vision's render_unifont(lower=True)
    assert not torch.equal(rendered[1], rendered[2])
    with torch.no_grad():
        assert clippo.encode_text(rendered, normalize=True).shape == (3, 64)
    with pytest.raises(ValueError, match="rendered"):
        clippo.encode_text(open_clip.get_tokenizer("OneR-tiny")(["seven"]))


def test_renderer_follows_big_visions_layout() -> None:
    renderer = one_tower.TextRenderer(image_size=64, font_size=12)
    empty = renderer.render("")
    assert empty.shape == (64, 64) and (empty == 127).all()  # background brightness 127
    image = renderer.render("abc " * 40)  # longer than fits: rows fill the square, the rest is cut off
    assert image.min() < 40 and image.max() == 127  # dark text on grey
    rows_with_ink = np.flatnonzero((image < 100).any(axis=1))
    assert rows_with_ink[0] < renderer.line_height and rows_with_ink[-1] > 64 - 2 * renderer.line_height
    first_line = image[: renderer.line_height]
    assert (first_line < 100).any(axis=0)[: 64 // 2].any() and (first_line < 100).any(axis=0)[64 // 2 :].any()
    # Glyphs are trimmed to their ink: "ii" is much narrower than "mm".
    assert renderer._glyph("i").shape[1] < renderer._glyph("m").shape[1]
    assert renderer._glyph(" ").shape[1] == renderer.min_width


def _contrastive(a: torch.Tensor, b: torch.Tensor, scale: float, smoothing: float = 0.0) -> torch.Tensor:
    # Written out: symmetric softmax cross-entropy over the similarity matrix, targets on the diagonal.
    logits = scale * a @ b.T
    n = logits.shape[0]
    targets = torch.full((n, n), smoothing / n) + torch.eye(n) * (1 - smoothing)
    row = -(targets * logits.log_softmax(dim=1)).sum(1).mean()
    column = -(targets * logits.T.log_softmax(dim=1)).sum(1).mean()
    return (row + column) / 2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_each_objective_matches_an_independent_implementation(smoothing: float) -> None:
    generator = torch.Generator().manual_seed(0)
    image, text, mixed, in_image, in_text = (
        F.normalize(torch.randn(6, 12, generator=generator), dim=-1) for _ in range(5)
    )
    scale = torch.tensor(4.0)
    base = loss.AlignLoss(label_smoothing=smoothing) if smoothing else ClipLoss()
    objective = one_tower.OneTowerLoss(base, {"xmc": 0.3, "cic": 0.7})
    losses = objective(image, text, scale, mixed_features=mixed, image_context_features=in_image,
                       text_context_features=in_text, output_dict=True)  # fmt: skip
    expected_contrastive = _contrastive(image, text, 4.0, smoothing)
    expected_xmc = 0.3 * (_contrastive(mixed, image, 4.0, smoothing) + _contrastive(mixed, text, 4.0, smoothing)) / 2
    expected_cic = 0.7 * _contrastive(in_image, in_text, 4.0, smoothing)
    assert set(losses) == {"contrastive_loss", "xmc_loss", "cic_loss"}
    assert torch.allclose(losses["contrastive_loss"], expected_contrastive)
    assert torch.allclose(losses["xmc_loss"], expected_xmc)
    assert torch.allclose(losses["cic_loss"], expected_cic)
    total = objective(image, text, scale, mixed_features=mixed, image_context_features=in_image,
                      text_context_features=in_text)  # fmt: skip
    assert torch.allclose(total, expected_contrastive + expected_xmc + expected_cic)
    only_contrastive = one_tower.OneTowerLoss(base, {"xmc": 0.0})(image, text, scale, output_dict=True)
    assert set(only_contrastive) == {"contrastive_loss"}  # a zero weight switches an objective off
    with pytest.raises(ValueError, match="mixed_features"):
        one_tower.OneTowerLoss(base, {"xmc": 1.0})(image, text, scale)


def test_the_models_objective_features_follow_their_definitions() -> None:
    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("OneR-tiny", output_dict=True).eval()
    tokens = open_clip.get_tokenizer("OneR-tiny")(["the digit seven", "a scan of a handwritten two"])
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image_tokens = model.image_tokens(images)
        text_tokens, padding = model.text_tokens(tokens)
        mixed = model.mixed_features(image_tokens, text_tokens, padding)
        in_image, in_text = model.contextual_features(image_tokens, text_tokens, padding)
        # XMC's mixed sequence, built by hand: class token, the patches, then only the unpadded caption tokens.
        length = int((tokens[1] != 0).sum())
        by_hand = model._encode(torch.cat([image_tokens[1:], text_tokens[1:, :length]], 1), model.image_cls_position)
        assert torch.allclose(mixed[1], F.normalize(by_hand[0, 0] @ model.proj, dim=-1), atol=1e-5)
        # CIC with the caption as context: the caption tokens see only themselves (and the class token), so their
        # outputs equal the caption encoded alone, whatever the image.
        alone = model._encode(text_tokens[1:, :length], model.image_cls_position)[0, 1:]
        assert torch.allclose(in_text[1], F.normalize(alone.mean(0) @ model.proj, dim=-1), atol=1e-5)
        other_image = model.image_tokens(torch.randn(2, 3, 32, 32))
        assert torch.allclose(model.contextual_features(other_image, text_tokens, padding)[1], in_text, atol=1e-5)
        assert not torch.allclose(model.contextual_features(other_image, text_tokens, padding)[0], in_image)
    model.train()
    assert set(model(images, tokens)) == {"image_features", "text_features", "logit_scale"}  # objectives off
    model.objectives = {"xmc": 0.5, "cic": 0.5}
    out = model(images, tokens)
    assert {"mixed_features", "image_context_features", "text_context_features"} <= set(out)


def test_config_key_reaches_the_worker_and_installs_the_objectives(tmp_path: Path) -> None:
    import open_clip_train.main as open_clip_main
    from open_clip_train.params import parse_args

    from training.corpus import CorpusShards

    config = load_config(PROJECT_ROOT / "training" / "configs" / "oner-tiny-cpu.yaml")
    assert config.model == "OneR-tiny" and config.one_tower_objectives == {"xmc": 0.5, "cic": 0.5}
    assert "one_tower_objectives" not in config.options  # an altcorpus key, never an open_clip flag
    args = worker_args(config, CorpusShards(root=tmp_path, sizes={"00000.tar": 10}))
    options, _ = parse_worker_args(args)
    assert options.one_tower_objectives == {"cic": 0.5, "xmc": 0.5}
    with pytest.raises(ValueError, match="unknown one-tower objectives"):
        config_from_mapping({"model": "OneR-tiny", "one_tower_objectives": {"mim": 1.0}})
    register_model_configs()
    train_args = parse_args(["--model", "OneR-tiny"])
    train_args.distill, train_args.rank, train_args.world_size = False, 0, 1
    try:
        loss.install(label_smoothing=0.1)
        one_tower.install_objectives({"xmc": 0.5}, open_clip_main)
        created = open_clip_main.create_loss(train_args)
        assert isinstance(created, one_tower.OneTowerLoss) and isinstance(created.base, loss.AlignLoss)
        model, _, _ = open_clip_main.create_model_and_transforms("OneR-tiny")
        assert model.objectives == {"xmc": 0.5}
        with pytest.raises(ValueError, match="one-tower model"):
            open_clip_main.create_model_and_transforms("ALIGN-tiny")
    finally:
        loss.install()
        one_tower.install_objectives({}, open_clip_main)
    assert type(open_clip_main.create_loss(train_args)) is ClipLoss


def test_localisation_map_and_overlay(tmp_path: Path) -> None:
    register_model_configs()
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("OneR-tiny")
    model.eval()
    tokenizer = open_clip.get_tokenizer("OneR-tiny")
    picture = Image.new("RGB", (64, 64), "white")
    picture.paste(Image.new("RGB", (20, 20), "black"), (40, 8))
    picture.save(tmp_path / "square.png")
    similarity = similarity_map(model, preprocess(picture)[None], tokenizer(["a black square"]))
    assert similarity.shape == (1, 4, 4) and similarity.abs().max() <= 1.0 + 1e-5
    row, column = peak_cell(similarity[0])
    assert similarity[0, row, column] == similarity.max()
    blended = overlay(picture, similarity[0])
    assert blended.size == picture.size and blended.mode == "RGB"
    results = localize(model, preprocess, tokenizer, [tmp_path / "square.png"], "a black square", tmp_path / "out")
    written = Image.open(results[0]["overlay"])
    assert written.size == (64, 64) and results[0]["grid"] == [4, 4]
    x0, y0, x1, y1 = results[0]["peak_box"]
    assert (x1 - x0, y1 - y0) == (16.0, 16.0)
    two_tower = open_clip.create_model("TwoTower-tiny")
    with pytest.raises(ValueError, match="one-tower"):
        similarity_map(two_tower, preprocess(picture)[None], tokenizer(["x"]))
    assert json.loads(json.dumps(results))  # JSON-ready for --output
