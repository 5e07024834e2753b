"""Model configs of the trainer: the ALIGN family as open_clip JSON configs, registered with open_clip.

Every ``training/model_configs/*.json`` becomes an open_clip model name (``ALIGN-tiny``, ``ALIGN-B0`` .. ``ALIGN-B7``,
``ALIGN-L2``) beside the CLIP configs open_clip ships (``ViT-B-32``, ``RN50``, ...), so ``--model NAME`` works in
``open_clip_train`` and in ``open_clip.create_model_and_transforms`` alike.

The ALIGN family (Jia et al., 2021): an EfficientNet image tower from timm with global average pooling and a linear
projection, and a Transformer text tower with open_clip's bundled BPE tokenizer (ALIGN used BERT with a WordPiece
vocabulary; no tokenizer is downloaded here, so the text tower keeps CLIP's tokenizer and its causal transformer pooled
at the end-of-text token: open_clip 3.3's text config cannot mask padding in bidirectional mode, which BERT-style
[CLS] pooling would need). ALIGN-L2 is the paper's scale: EfficientNet-L2 at 289 px and a BERT-Large-size text tower
(24 layers, width 1024, 16 heads, 64 tokens), 640-d joint embedding. ALIGN-B0..B7 use each EfficientNet's native
resolution and a BERT-Base-size text tower. ALIGN-tiny (timm's ``test_efficientnet``, 64 px, a 2-layer width-64 text
tower) exists for CPU tests. All ALIGN configs set ``init_logit_scale`` to 0, i.e. ALIGN's initial softmax
temperature of 1.0 (logit scale = 1/temperature; see ``training.loss``). Nothing downloads weights: ``timm_model_pretrained``
is false and the trainer passes no ``--pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import open_clip

#: Folder of the ALIGN-family JSON configs shipped with the trainer.
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"


def register_model_configs(config_dir: Path = MODEL_CONFIG_DIR) -> list[str]:
    """Register every JSON config of ``config_dir`` with open_clip (idempotent) and return their model names."""
    names = sorted(path.stem for path in config_dir.glob("*.json"))
    if not names:
        raise FileNotFoundError(f"no open_clip model configs (*.json) in {config_dir}")
    missing = [name for name in names if name not in open_clip.list_models()]
    if missing:
        # add_model_config rescans the whole folder, so one call registers every file of it.
        open_clip.add_model_config(config_dir)
    from training import one_tower

    one_tower.install()  # the one-tower family (model_configs/one_tower/), built by open_clip's own factory
    return names


def align_model_names() -> list[str]:
    """Names of the ALIGN-family configs this package ships."""
    return sorted(path.stem for path in MODEL_CONFIG_DIR.glob("*.json"))


def check_model_name(name: str) -> str:
    """Fail early, with the list of known names, when ``name`` is not an open_clip model (after registration)."""
    register_model_configs()
    if name not in open_clip.list_models():
        known = ", ".join(open_clip.list_models())
        raise ValueError(f"unknown model {name!r}; known model configs: {known}")
    return name
