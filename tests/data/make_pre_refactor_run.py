"""Writes pre_refactor_run.pt (a smoke training checkpoint at step 3 of 8) and pre_refactor_run.json (how
that run went on to step 8 in the same process), with the code of commit db6e7d1, before the training
loop was split into functions. tests/test_train.py resumes the checkpoint with today's code and checks
that it continues the same way. Run from the repository root: python tests/data/make_pre_refactor_run.py"""
import json
import warnings
from pathlib import Path

import torch

from filmmtl.train import Trainer

warnings.filterwarnings("ignore", message="feature_net='auto'")
HERE = Path(__file__).parent
# Every part of a step: mixes taught by method 3 (styled teachers), the adversarial
# terms, gradient balancing, the noisy identity, the weighted hole and a gated skip.
CONFIG = dict(profile="smoke", steps=8, mixes=["restoration+style_gogh", "segmentation+style_gogh"], method=3,
              identity_noise=0.5, hole_weight=6.0, feature_skips=[0], skip_gate=True, seed=0)


def weight_summary(model):
    return {name: [float(p.double().sum()), float(p.double().abs().sum())]
            for name, p in model.state_dict().items() if p.is_floating_point()}


if __name__ == "__main__":
    torch.set_num_threads(2)
    torch.manual_seed(0)
    trainer = Trainer(quiet=True, **CONFIG)
    trainer.fit(steps=3, checkpoint=HERE / "pre_refactor_run.pt")
    trainer.fit()
    losses = [[h["step"], h["job"], h["loss"]] for h in trainer.history if "loss" in h]
    record = {"config": CONFIG, "losses": losses, "weights": weight_summary(trainer.model)}
    (HERE / "pre_refactor_run.json").write_text(json.dumps(record, indent=1) + "\n")
