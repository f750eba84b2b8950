"""What a notebook's parameters cell resolves to: profile, device, output folder and checkpoint policy.

``Session.network(recipe)`` returns a trained network. With ``retrain=False`` (the default) nothing long
is trained: ``profile="auto"`` becomes ``course`` on any device and the shipped checkpoints of
``data/checkpoints`` load (checked against the sha256 manifest); a profile without shipped networks says
so at once. With ``retrain=True`` networks train here (``auto``: ``paper`` on a GPU, ``course`` on a CPU)
with the same ``Trainer`` the CLI uses, checkpointed under the output folder; in the course profile the
shipped checkpoint is remade. The ``smoke`` profile (tests) trains its tiny networks in seconds.
"""
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

from filmmtl.data import REPO_DATA, load_dataset
from filmmtl.profiles import make_config, recipe_overrides, resolve_profile
from filmmtl.checkpoints import export_checkpoint, read_checkpoint
from filmmtl.files import atomic_write, locked
from filmmtl.plots import check_readable
from filmmtl.train import Trainer, check_compatible, load_model, provenance, resolve_device

SHIPPED = REPO_DATA / "checkpoints"
# What a shipped network must share with the session's recipe. Its design (output layer, skips, init,
# balancing) is its own, read from its config: every shipped network says which it has.
RECIPE_FIELDS = ("model", "tasks", "mixes", "method", "width", "size")

ESTIMATE_STEPS = 5  # steps timed (after as many for warm-up) before a notebook training says how long it takes


class NoShippedNetwork(RuntimeError):
    """The resolved profile has no shipped network and retrain=False: nothing is trained unasked."""


def estimate_training_seconds(config, device, repeats=2):
    """Rough time of a whole training run on ``device``: a few steps of the network timed on random images
    at the config's size (an L2 step and a perceptual step, weighted by the share of style jobs)."""
    import torch.nn.functional as F
    from filmmtl.losses import PerceptualLoss
    from filmmtl.tasks import TASKS
    from filmmtl.checkpoints import model_from_config
    model = model_from_config(config).to(device)
    optimiser = torch.optim.Adam(model.parameters())
    x = torch.rand(config["batch_size"], 3, config["size"], config["size"], device=device)
    c = torch.zeros(config["batch_size"], len(config["tasks"]), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        perceptual = PerceptualLoss(config["feature_net"]).to(device)

    def seconds(loss_of):
        times = []
        for _ in range(repeats + 1):
            start = time.time()
            optimiser.zero_grad()
            loss_of(model(x, c)).backward()
            optimiser.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.time() - start)
        return min(times[1:])
    l2 = seconds(lambda y: F.mse_loss(y, x))
    style = seconds(lambda y: perceptual(y, x, "gogh"))
    jobs = list(config["tasks"]) + list(config["mixes"])
    share = sum(1 for j in jobs if any(TASKS[p].style for p in j.split("+"))) / len(jobs)
    return config["steps"] * (share * style + (1 - share) * l2)


# A notebook parameter's accepted types: papermill's `-p retrain false` passes the *text* "false", which
# Python reads as true, so every parameter is checked before anything trains.
PARAMETER_TYPES = {"profile": (str,), "seed": (int,), "device": (str,), "data": (str,),
                   "data_root": (str, os.PathLike, type(None)), "retrain": (bool,), "output_dir": (str, os.PathLike)}


def check_parameters(**values):
    for name, value in values.items():
        types = PARAMETER_TYPES[name]
        if not isinstance(value, types) or (name == "seed" and isinstance(value, bool)):
            hint = (" (papermill: -p retrain True, or -y 'retrain: false'; a quoted word is text)"
                    if isinstance(value, str) and bool in types else "")
            raise TypeError(f"notebook parameter {name} must be {' or '.join(t.__name__ for t in types)}, got "
                            f"{value!r} ({type(value).__name__}){hint}")
    if Path(values["output_dir"]).is_file():
        raise ValueError(f"output_dir {values['output_dir']} is a file; give a folder for the figures and tables")


class Session:
    """One notebook run: resolved parameters plus the networks it needs."""

    def __init__(self, profile="auto", seed=0, device="auto", data="scenes", data_root=None,
                 retrain=False, output_dir="results", quiet=None):
        check_parameters(profile=profile, seed=seed, device=device, data=data, data_root=data_root,
                         retrain=retrain, output_dir=output_dir)
        profile = resolve_profile(profile, train_here=retrain)
        self.config = make_config(profile, seed=seed, device=device, data=data, data_root=data_root)
        self.profile = self.config["profile"]
        self.device = resolve_device(device)
        self.retrain = retrain
        self.quiet = self.profile == "smoke" if quiet is None else quiet  # a real training shows its progress
        self.output_dir = Path(os.environ.get("FILMMTL_OUTPUT") or output_dir)  # tests redirect it
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._trained = {}   # (recipe, seed) -> (model, config, provenance, history)
        self._trainers = {}  # (recipe, seed) -> Trainer, for networks trained in this session
        self._perceptual = {}
        self._test_sets = {}  # number of images -> test split

    def __repr__(self):
        return (f"Session(profile={self.profile!r}, device={str(self.device)!r}, size={self.config['size']}, "
                f"width={self.config['width']}, data={self.config['data']!r}, retrain={self.retrain})")

    def test_set(self, n=None):
        """The test split, loaded once per size (notebook 04 scores ten networks on it)."""
        cfg = self.config
        n = n or cfg["n_test"]
        if n not in self._test_sets:
            self._test_sets[n] = load_dataset(cfg["data"], "test", cfg["size"], n, cfg["data_root"], cfg["data_seed"])
        return self._test_sets[n]

    @staticmethod
    def file_name(recipe, seed=0):
        """``proposed.pt`` for seed 0, ``proposed_seed1.pt`` for the same recipe trained with seed 1."""
        return f"{recipe}.pt" if seed == 0 else f"{recipe}_seed{seed}.pt"

    def shipped(self, recipe, seed=0):
        return SHIPPED / self.file_name(recipe, seed)

    def trained_here(self, recipe, seed=0):
        """Where a network trained in a notebook lives, so that later notebooks reuse it and a disconnected
        runtime resumes it: under the output folder, one folder per profile."""
        return self.output_dir / "networks" / self.profile / self.file_name(recipe, seed)

    def network(self, recipe, seed=None):
        """(model, config, provenance, history) for a recipe of ``profiles.RECIPES`` trained with ``seed``
        (default: the session's; another seed is the same recipe trained again, to see what training noise
        does).

        ``retrain=False``: the shipped network (course profile; smoke networks train in seconds). Where the
        profile has none, a ``NoShippedNetwork`` error says so at once, with the time training would take
        here and the command. ``retrain=True``: trained here with a progress bar, checkpointed under the
        output folder and resumed from there after an interruption; a finished one is reused."""
        seed = self.config["seed"] if seed is None else seed
        if (recipe, seed) in self._trained:
            return self._trained[recipe, seed]
        path = self.shipped(recipe, seed)
        if self.profile == "smoke" or self.retrain:
            result = self._train(recipe, seed)
        elif self.profile == "course" and path.exists():
            model, cfg, provenance = load_model(path, self.device)  # checked against the manifest
            wanted = {**self.config, **recipe_overrides(recipe, self.config), "seed": seed}
            check_compatible(cfg, wanted, path, RECIPE_FIELDS + ("seed",))
            result = (model, cfg, provenance, read_checkpoint(path)["history"])
        else:
            raise NoShippedNetwork(self.no_network_message(recipe, seed))
        self._trained[recipe, seed] = result
        return result

    def trainer(self, recipe, seed=0):
        overrides = {**recipe_overrides(recipe, self.config), "seed": seed}
        base = overrides.get("base_checkpoint")
        if base:  # Piggyback's frozen base: trained (or reused) first
            self.network(base, seed)
            overrides["base_checkpoint"] = str(self._base_path(base, seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return Trainer({**self.config, **overrides}, quiet=self.quiet)

    def _base_path(self, base, seed):
        if (base, seed) in self._trainers:
            return self._trainers[base, seed].save(Path(tempfile.mkdtemp(prefix="filmmtl-")) / f"{base}.pt")
        return self.trained_here(base, seed) if self.trained_here(base, seed).exists() else self.shipped(base, seed)

    def no_network_message(self, recipe, seed=0):
        trainer_config = {**self.config, **recipe_overrides(recipe, self.config)}
        seconds = estimate_training_seconds(trainer_config, self.device)
        return (f"no shipped '{recipe}' network for the {self.profile} profile (networks ship for the course "
                f"profile only). Training it would take about {seconds / 3600:.1f} h on this device "
                f"({self.device}); set retrain=True in the parameters cell to train it here (checkpointed under "
                f"{self.trained_here(recipe, seed).parent}, resumed after a disconnect), or run\n"
                f"  python -m filmmtl train --recipe {recipe} --profile {self.profile} --seed {seed} --out "
                f"{self.trained_here(recipe, seed)}")

    def _train(self, recipe, seed=0):
        trainer = self.trainer(recipe, seed)
        if self.profile == "smoke":  # seconds: nothing worth keeping
            trainer.fit()
        else:
            with locked(self.trained_here(recipe, seed)) as checkpoint:  # one writer per run
                train_and_export(self, trainer, checkpoint, recipe, seed)
        self._trainers[recipe, seed] = trainer
        trainer.model.eval()
        return trainer.model, trainer.config, provenance(trainer), trainer.history

    def perceptual(self, feature_net):
        """The perceptual network of a trained config (for Gram-distance scores), built once."""
        from filmmtl.losses import PerceptualLoss
        if feature_net not in self._perceptual:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._perceptual[feature_net] = PerceptualLoss(feature_net).to(self.device)
        return self._perceptual[feature_net]

    def evaluate(self, model, config, provenance, jobs=None, fid=0, stylist=None, seeds=0, only=None):
        """Scores of a network on this session's test set (all its tasks and mixes unless ``jobs``; mixes'
        teachers from ``stylist`` when given, see ``evaluate``; with ``seeds``, 95% intervals too; ``only``:
        these metrics), cached under the output folder by the network's and test set's checksums
        (``evaluate_cached``)."""
        from filmmtl.evaluate import evaluate_cached
        from filmmtl.tasks import TaskSpace
        space = TaskSpace(config["tasks"])
        jobs = list(space) + list(config["mixes"]) if jobs is None else jobs
        scores, _ = evaluate_cached(self.output_dir / "cache" / "evaluations", model, space, self.test_set(), jobs,
                                    self.perceptual(provenance["feature_net"]), fid=fid, device=self.device,
                                    stylist=stylist, seeds=seeds, only=only)
        return scores

    def save_figure(self, fig, name):
        """Save into the output folder, after checking that no text of it displays under 8 pt in a notebook
        (``plots.check_readable``). Returns nothing, so a notebook cell ending with it shows only the
        figure, not a path of this machine."""
        check_readable(fig, name)  # every figure the course saves reads at a notebook's width
        picture = io.BytesIO()
        fig.savefig(picture, format="png", dpi=100, bbox_inches="tight")
        atomic_write(self.output_dir / f"{name}.png", picture.getvalue())

    def save_text(self, text, name):
        atomic_write(self.output_dir / name, text)


def train_and_export(session, trainer, checkpoint, recipe, seed):
    """Train (or resume) into ``checkpoint``, saying how long it will take; on the course profile, export it
    over the shipped file."""
    if checkpoint.exists():
        trainer.load(checkpoint)
    if trainer.step_count < trainer.config["steps"]:
        print(f"training '{recipe}' ({session.profile} profile, {trainer.config['steps']:,} steps) on "
              f"{session.device}, from step {trainer.step_count}; checkpoint: {checkpoint}")
        trainer.fit(steps=min(trainer.step_count + ESTIMATE_STEPS, trainer.config["steps"]), checkpoint=checkpoint)
        start, done = time.time(), trainer.step_count
        trainer.fit(steps=min(done + ESTIMATE_STEPS, trainer.config["steps"]), checkpoint=checkpoint)
        if trainer.step_count > done:
            rate = (trainer.step_count - done) / (time.time() - start)
            left = trainer.config["steps"] - trainer.step_count
            print(f"  {rate:.2f} steps/s measured: about {left / rate / 60:.0f} min to go")
        trainer.fit(checkpoint=checkpoint)
    if session.profile == "course":  # remake the shipped network
        command = (f"python -m filmmtl train --recipe {recipe} --profile course --seed {seed} "
                   f"--out runs/{session.file_name(recipe, seed)}")
        export_checkpoint(checkpoint, session.shipped(recipe, seed), command)
