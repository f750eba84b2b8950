"""The paper profile on a CPU, in shape: every recipe at 128x128 and width 1.0 builds, takes two training
steps and is evaluated, so shape, dtype and memory mistakes show here before a GPU ever sees them. And the
GPU's speed settings (bf16 autocast, channels_last) give the loss of plain fp32 within a tolerance."""
import warnings

import pytest
import torch

from filmmtl.models import count_parameters
from filmmtl.profiles import RECIPES, make_config, recipe_overrides
from filmmtl.train import Trainer

TINY_DATA = dict(n_train=2, n_test=1, batch_size=1, eval_every=0, n_val=1)


def paper_trainer(recipe, base=None, **overrides):
    config = make_config("paper", **TINY_DATA)
    options = {**recipe_overrides(recipe, config), "steps": 2, **overrides}
    if base:
        options["base_checkpoint"] = str(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Trainer(make_config("paper", **TINY_DATA, **options), quiet=True)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Piggyback's frozen bases (the paper's recipe's and the design's), at the paper's shape."""
    folder = tmp_path_factory.mktemp("paper")
    return {name: paper_trainer(name).fit().save(folder / f"{name}.pt")
            for name in ("base_completion", "base_completion_design")}


@pytest.mark.parametrize("recipe", sorted(set(RECIPES) - {"base_completion", "base_completion_design"}))
def test_every_recipe_trains_and_evaluates_at_the_papers_shape(recipe, bases):
    base = RECIPES[recipe].get("base_checkpoint")
    trainer = paper_trainer(recipe, bases[base.replace("segmentation", "completion")] if base else None)
    assert trainer.config["size"] == 128 and trainer.config["width"] == 1.0
    trainer.fit()
    assert trainer.step_count == 2 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    scores = trainer.evaluate(n=1)
    assert set(scores) >= set(trainer.space.keys) and count_parameters(trainer.model) > 1_000_000
    x = trainer.val_set.batch(torch.arange(1))[0]
    with torch.no_grad():
        assert trainer.model(x, torch.zeros(1, 6)).shape == (1, 3, 128, 128)


def test_speed_settings_give_the_fp32_loss():
    """Two steps' losses under bf16 autocast and channels_last match fp32: bf16 keeps 8 bits of mantissa
    (a few per cent on a loss); channels_last changes only the order of the sums."""
    plain = dict(amp=False, channels_last=False)
    reference = paper_trainer("proposed", **plain).fit().history
    for setting, tolerance in ((dict(channels_last=True), 1e-3), (dict(amp=True, channels_last=True), 0.05)):
        fast = paper_trainer("proposed", **{**plain, **setting}).fit().history
        assert [r["job"] for r in fast] == [r["job"] for r in reference]
        assert [r["loss"] for r in fast] == pytest.approx([r["loss"] for r in reference], rel=tolerance), setting
