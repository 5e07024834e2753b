"""training.loss.install() takes effect on the installed open_clip_train, and refuses loudly where it could not.

The refusal cases build small module objects (``types.ModuleType``) whose ``main()`` gets the loss the ways a later
open_clip_train could: through ``open_clip.create_loss`` or a helper of another name. open_clip itself is real.
"""

from __future__ import annotations

import re
import types

import open_clip
import open_clip_train.main as open_clip_main
import pytest
from open_clip_train.params import parse_args

from training import loss
from training.models import register_model_configs


def module_from_source(source: str) -> types.ModuleType:
    """A module named like open_clip_train's entry point, holding ``source``'s definitions."""
    module = types.ModuleType("open_clip_train.main")
    exec(compile(source, "<open_clip_train.main variant>", "exec"), module.__dict__)
    return module


def test_installed_open_clip_trains_main_looks_up_both_hooked_names() -> None:
    assert set(loss.HOOKED_NAMES) <= loss.global_lookups(open_clip_main.main)
    loss.check_hook_points(open_clip_main)  # does not raise
    register_model_configs()
    args = parse_args(["--model", "ALIGN-tiny"])
    args.distill, args.rank, args.world_size = False, 0, 1
    try:
        loss.install(label_smoothing=0.1)
        # main() calls the name it finds in its module globals at run time: the one install() put there.
        assert isinstance(open_clip_main.main.__globals__["create_loss"](args), loss.AlignLoss)
    finally:
        loss.install()
    assert not isinstance(open_clip_main.create_loss(args), loss.AlignLoss)


def test_install_refuses_a_main_that_reads_create_loss_off_the_open_clip_package() -> None:
    variant = module_from_source(
        "import open_clip\n"
        "from open_clip import create_model_and_transforms\n"
        "def main(args):\n"
        "    model = create_model_and_transforms(args.model)\n"
        "    return open_clip.create_loss(args)\n"
    )
    expected = f"open_clip_torch {open_clip.__version__}: open_clip_train.main.main() does not look up create_loss in"
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        loss.install(label_smoothing=0.1, open_clip_main=variant)
    # Nothing was rebound: the variant keeps open_clip's own factory.
    assert variant.create_model_and_transforms is open_clip.create_model_and_transforms


def test_install_refuses_a_name_that_is_imported_but_no_longer_used_by_main() -> None:
    variant = module_from_source(
        "from open_clip import create_loss, create_model_and_transforms\n"
        "def build_task(args):\n"
        "    return create_loss(args)\n"
        "def main(args):\n"
        "    model = create_model_and_transforms(args.model)\n"
        "    return build_task(args)\n"
    )
    with pytest.raises(RuntimeError, match="does not look up create_loss in its module"):
        loss.install(label_smoothing=0.1, open_clip_main=variant)
    assert variant.create_loss is open_clip.create_loss


def test_install_refuses_a_module_without_main() -> None:
    with pytest.raises(RuntimeError, match="create_loss, create_model_and_transforms"):
        loss.install(open_clip_main=module_from_source("from open_clip import create_loss\n"))


def test_lookups_in_nested_functions_count() -> None:
    variant = module_from_source(
        "from open_clip import create_loss, create_model_and_transforms\n"
        "def main(args):\n"
        "    def build():\n"
        "        return create_model_and_transforms(args.model)\n"
        "    return build(), [create_loss(a) for a in [args]]\n"
    )
    try:
        loss.install(label_smoothing=0.1, open_clip_main=variant)
        assert variant.create_loss is not open_clip.create_loss
    finally:
        loss.install(open_clip_main=variant)
