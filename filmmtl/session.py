"""What a notebook's parameters cell resolves to: profile, device, output folder and checkpoint policy.

``Session.network(recipe)`` returns a trained network: the shipped course-profile checkpoint from
``data/checkpoints`` when the profile is ``course`` and ``retrain`` is False (checked against the sha256
manifest), else a network trained here by the same ``Trainer`` the CLI uses (``smoke``: seconds).
With ``retrain=True`` in the course profile the shipped checkpoint is remade.
"""
import os
import tempfile
import warnings
from pathlib import Path

import torch

from filmmtl.data import REPO_DATA, load_dataset
from filmmtl.profiles import make_config, recipe_overrides
from filmmtl.checkpoints import export_checkpoint, read_checkpoint
from filmmtl.train import Trainer, check_compatible, load_model, resolve_device

SHIPPED = REPO_DATA / "checkpoints"
# What a shipped network must share with the session's recipe. Its design (output layer, skips, init,
# balancing) is its own, read from its config: every shipped network says which it has.
RECIPE_FIELDS = ("model", "tasks", "mixes", "method", "width", "size")

class Session:
    """One notebook run: resolved parameters plus the networks it needs."""

    def __init__(self, profile="auto", seed=0, device="auto", data="scenes", data_root=None,
                 retrain=False, output_dir="results", quiet=True):
        self.config = make_config(profile, seed=seed, device=device, data=data, data_root=data_root)
        self.profile = self.config["profile"]
        self.device = resolve_device(device)
        self.retrain = retrain
        self.quiet = quiet
        self.output_dir = Path(os.environ.get("FILMMTL_OUTPUT") or output_dir)  # tests redirect it
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._trained = {}   # recipe -> (model, config, provenance, history)
        self._trainers = {}  # recipe -> Trainer, for networks trained in this session
        self._perceptual = {}

    def __repr__(self):
        return (f"Session(profile={self.profile!r}, device={str(self.device)!r}, size={self.config['size']}, "
                f"width={self.config['width']}, data={self.config['data']!r}, retrain={self.retrain})")

    def test_set(self, n=None):
        cfg = self.config
        return load_dataset(cfg["data"], "test", cfg["size"], n or cfg["n_test"], cfg["data_root"],
                            cfg["data_seed"])

    def shipped(self, recipe):
        return SHIPPED / f"{recipe}.pt"

    def network(self, recipe):
        """(model, config, provenance, history) for a recipe of ``profiles.RECIPES``."""
        if recipe in self._trained:
            return self._trained[recipe]
        path = self.shipped(recipe)
        if self.profile == "course" and not self.retrain and path.exists():
            model, cfg, provenance = load_model(path, self.device)  # checked against the manifest
            check_compatible(cfg, {**self.config, **recipe_overrides(recipe, self.config)}, path, RECIPE_FIELDS)
            result = (model, cfg, provenance, read_checkpoint(path)["history"])
        else:
            result = self._train(recipe)
        self._trained[recipe] = result
        return result

    def _train(self, recipe):
        overrides = recipe_overrides(recipe, self.config)
        base = overrides.get("base_checkpoint")
        workdir = Path(tempfile.mkdtemp(prefix="filmmtl-"))
        if base:
            self.network(base)
            overrides["base_checkpoint"] = str(workdir / f"{base}.pt")
            if base in self._trainers:
                self._trainers[base].save(overrides["base_checkpoint"])
            else:  # the shipped base: its fp16 weights serve as the frozen base
                overrides["base_checkpoint"] = str(self.shipped(base))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trainer = Trainer({**self.config, **overrides}, quiet=self.quiet)
        trainer.fit()
        self._trainers[recipe] = trainer
        if self.profile == "course" and self.retrain:
            source = trainer.save(workdir / f"{recipe}.pt")
            command = f"python -m filmmtl train --recipe {recipe} --profile course --out runs/{recipe}.pt"
            export_checkpoint(source, self.shipped(recipe), command)
        trainer.model.eval()
        return trainer.model, trainer.config, trainer.provenance(), trainer.history

    def perceptual(self, feature_net):
        """The perceptual network of a trained config (for Gram-distance scores), built once."""
        from filmmtl.losses import PerceptualLoss
        if feature_net not in self._perceptual:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._perceptual[feature_net] = PerceptualLoss(feature_net).to(self.device)
        return self._perceptual[feature_net]

    def save_figure(self, fig, name):
        path = self.output_dir / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        return path

    def save_text(self, text, name):
        path = self.output_dir / name
        path.write_text(text)
        return path

