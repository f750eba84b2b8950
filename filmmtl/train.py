"""The training loop: one network over a task set, single tasks and mixes, the paper's methods 1-3.

A step is ``make_batch`` (``batches``), the network's forward pass, ``multitask_loss`` (``objective``) and
its backward pass; the rest is bookkeeping: gradient balancing, the learning rate, the discriminators,
validation, checkpoints that resume exactly. Methods: 1 = single tasks only (mixes only at inference);
2 = mixes trained with L_A + L_B; 3 = mixes trained with L2 to made teacher images.
"""
import math
import platform
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from filmmtl import distributed, losses, metrics
from filmmtl.backbone import inputs_checked_upstream
from filmmtl.batches import make_batch
from filmmtl.checkpoints import FORMAT_VERSION, model_from_config, read_checkpoint, saved_bytes, upgrade_config, verify
from filmmtl.config import ARCHITECTURE, RESUMABLE
from filmmtl.data import load_dataset
from filmmtl.evaluate import evaluate
from filmmtl.files import atomic_write, check_writable
from filmmtl.models import count_parameters
from filmmtl.objective import Objective, check_losses, discriminator_step, discriminators_for, multitask_loss
from filmmtl.profiles import make_config, training_jobs, validate_config
from filmmtl.tasks import TASKS, TaskSpace

BALANCE_DECAY = 0.9  # EMA decay of each job's gradient norm (balance="grad_norm")


class NonFiniteLoss(RuntimeError):
    pass


def processor_name(device):
    """What a leg of training ran on, for its record: the GPU's name, or the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{models[0] if models else platform.machine()}, {torch.get_num_threads()} threads"


def resolve_device(name="auto"):
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    present = {"cuda": torch.cuda.is_available,
               "mps": lambda: bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if device.type in present and not present[device.type]():
        raise ValueError(f"device {name!r} is not available on this machine; use 'auto' or 'cpu'")
    return device


def balance_gradient(parameters, ema, job, cap):
    """Per-job gradient balancing: scale this step's gradient by (mean over jobs of an EMA of each job's
    gradient norm) / (this job's), at most ``cap`` times. Why: all jobs share one Adam, and the near-identity
    tasks' gradients are ~10x smaller than the styles', so without it they barely move the shared weights."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    previous = ema.get(job)
    ema[job] = norm if previous is None else BALANCE_DECAY * previous + (1 - BALANCE_DECAY) * norm
    scale = min(sum(ema.values()) / len(ema) / max(ema[job], 1e-12), cap)
    for g in grads:
        g.mul_(scale)


def logged_losses(sums, jobs, world_size, cfg, step):
    """{job: mean loss over the global batch}; a diverged step (not finite, or above ``max_loss``) stops."""
    sums = distributed.total(sums, world_size)
    logged = {job: float(sums[2 * k] / sums[2 * k + 1]) for k, job in enumerate(jobs)}
    overall = float(sums[0::2].sum() / sums[1::2].sum())
    if not math.isfinite(overall) or overall > cfg["max_loss"]:
        raise NonFiniteLoss(f"the loss became {overall:.4g} at step {step} on {list(logged)} "
                            f"(diverged: not finite or above max_loss={cfg['max_loss']:g}); the run stopped "
                            "and the last good checkpoint is kept. Lower lr or check the data")
    return logged


def network_for(cfg, device):
    """The network a config trains, on ``device``: a network that needs a base (Piggyback) gets it here."""
    model = model_from_config(cfg).to(device)
    if cfg["mixes"] and cfg["method"] in (2, 3) and not getattr(model, "can_mix", True):
        raise ValueError(f"{cfg['model']} runs one task at a time and cannot learn mixes; "
                         "train it with method=1 or without mixes")
    if hasattr(model, "load_base"):
        if not cfg["base_checkpoint"]:
            raise ValueError(f"{cfg['model']} needs base_checkpoint: a plain 'johnson' network trained on one "
                             "task (the paper: completion for Piggyback1, segmentation for Piggyback2)")
        base = read_checkpoint(cfg["base_checkpoint"])  # its config upgraded on read
        model.load_base(base["model"], base["config"], source=cfg["base_checkpoint"])
    if (cfg["channels_last"] == "auto" and device.type == "cuda") or cfg["channels_last"] is True:
        model.to(memory_format=torch.channels_last)
    return model


class Trainer:
    """Builds model, discriminators, losses, optimisers and data from one config (see ``profiles``)."""

    def __init__(self, config=None, quiet=False, **overrides):
        self.config = cfg = make_config(**overrides) if config is None else validate_config(dict(config))
        self.rank, self.world_size = distributed.world()
        self.device = distributed.local_device(resolve_device(cfg["device"]))
        self.quiet = quiet or self.rank > 0
        if self.world_size > 1:
            distributed.shard(cfg["batch_size"], self.rank, self.world_size)  # refuses an uneven split now
            if cfg["mixed_batch"]:
                raise ValueError("mixed_batch=True is for one process; under torchrun every process trains one "
                                 "job per step (its shard of the global batch)")
        self.space = TaskSpace(cfg["tasks"])
        check_losses(self.space)
        torch.manual_seed(cfg["seed"])
        self.model = network_for(cfg, self.device)
        self.discriminators = discriminators_for(self.space, cfg).to(self.device)
        self.perceptual = None
        if any(TASKS[k].style for k in self.space):
            self.perceptual = losses.PerceptualLoss(cfg["feature_net"], content_scale=cfg["content_scale"])
            self.perceptual.to(self.device)
        self.objective = Objective(cfg["method"], cfg["hole_weight"], cfg["adversarial_weight"], self.perceptual,
                                   self.discriminators, self.stylise)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.d_optimiser = (torch.optim.Adam(self.discriminators.parameters(), lr=cfg["discriminator_lr"],
                                             betas=(0.5, 0.999)) if len(self.discriminators) else None)
        self.rng = torch.Generator().manual_seed(cfg["seed"])  # batches, jobs and degradations
        self.jobs = training_jobs(cfg)
        self.job_weights = torch.tensor([float((cfg["task_weights"] or {}).get(j, 1.0)) for j in self.jobs])
        self.balance_ema = {}  # job -> EMA of its gradient norm (balance="grad_norm")
        self.step_count, self.history = 0, []
        self.legs = []  # one entry per fit() call: its steps, seconds and processor (saved with every checkpoint)
        self.train_set = load_dataset(cfg["data"], "train", cfg["size"], cfg["n_train"], cfg["data_root"],
                                      cfg["data_seed"])
        # Training never sees the test split: its curves and every choice made from them use validation.
        self.val_set = load_dataset(cfg["data"], "val", cfg["size"], cfg["n_val"], cfg["data_root"], cfg["data_seed"])
        self.amp = self.device.type == "cuda" if cfg["amp"] == "auto" else bool(cfg["amp"])  # bf16: opt in on a CPU
        # Under torchrun, wrapped in DistributedDataParallel (a routed baseline leaves parameters unused).
        self.network = (torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=True)
                        if self.world_size > 1 else self.model)

    def stylise(self, key, images):
        """The network's own style output (no gradient): the style part of method 3's teachers."""
        with torch.no_grad():
            return self.model(images, self.space.vector(key).to(self.device))

    def step(self):
        """One optimisation step on the global batch (this process's shard of it under torchrun); returns
        {job: loss} for the jobs it trained, averaged over the global batch."""
        cfg = self.config
        batch = make_batch(self.train_set, self.space, self.jobs, self.job_weights, cfg, self.rng, self.device)
        batch = distributed.shard_batch(batch, self.rank, self.world_size)
        with inputs_checked_upstream():  # made by make_batch from checked vectors and the package's images
            with torch.autocast(self.device.type, enabled=self.amp, dtype=torch.bfloat16):
                output = self.network(batch.inputs, batch.vectors).float()
            loss, sums = multitask_loss(self.objective, batch, output)
        logged = logged_losses(sums, batch.jobs, self.world_size, cfg, self.step_count)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["balance"] == "grad_norm":
            balance_gradient(self.model.parameters(), self.balance_ema, batch.jobs[0], cfg["balance_cap"])
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(cfg, self.step_count)
        self.optimiser.step()
        discriminator_step(self.objective, self.d_optimiser, batch, output.detach(), self.world_size)
        self.step_count += 1
        return logged

    def fit(self, steps=None, checkpoint=None):
        """Train until ``steps`` total steps (default and at most the config's, where the learning-rate
        schedule ends); validate and checkpoint periodically (under torchrun, rank 0 only)."""
        cfg, main = self.config, self.rank == 0
        steps = cfg["steps"] if steps is None else steps
        if checkpoint and main:
            check_writable(checkpoint)
        if steps > cfg["steps"]:
            raise ValueError(f"fit(steps={steps}) goes past the config's steps={cfg['steps']}, where the "
                             f"learning rate reaches its end; build the Trainer with steps={steps} instead")
        bar = tqdm(total=steps, initial=self.step_count, disable=self.quiet, desc="training")
        started = time.perf_counter()
        leg = {"from_step": self.step_count, "to_step": self.step_count, "seconds": 0.0,
               "processor": processor_name(self.device), "device": str(self.device), "bf16_autocast": self.amp}
        self.legs.append(leg)
        while self.step_count < steps:
            self.model.train()
            logged = self.step()
            self.history.extend({"step": self.step_count, "job": j, "loss": v} for j, v in logged.items())
            bar.update(1)
            bar.set_postfix_str(" ".join(f"{j}={v:.4f}" for j, v in logged.items()))
            if main and cfg["eval_every"] and self.step_count % cfg["eval_every"] == 0:
                scores = self.evaluate(n=cfg["n_val"])
                self.history.append({"step": self.step_count, "job": "validation", "scores": scores})
            leg.update(to_step=self.step_count, seconds=round(time.perf_counter() - started, 3))
            if main and checkpoint and (self.step_count % cfg["checkpoint_every"] == 0 or self.step_count == steps):
                self.save(checkpoint)
        bar.close()
        return self

    @torch.no_grad()
    def evaluate(self, n=None, fid=0, batch_size=32, jobs=None):
        """Metrics per task and mix on the validation split (the first ``n`` images), inputs seeded for
        repeatability. Also the trivial answer's scores (the degraded input itself) for comparison."""
        jobs = jobs or self.jobs + [m for m in self.config["mixes"] if m not in self.jobs]
        return evaluate(self.model, self.space, self.val_set, jobs, self.perceptual, n=n, fid=fid,
                        batch_size=batch_size, device=self.device)

    def state(self):
        """Everything an exact resume needs, and the run's record (config, provenance, history, legs)."""
        return {
            "model": self.model.state_dict(), "discriminators": self.discriminators.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "d_optimiser": self.d_optimiser.state_dict() if self.d_optimiser else None,
            "generator": self.rng.get_state(), "torch_rng": torch.get_rng_state(),  # the key older files use
            "step": self.step_count, "config": self.config, "provenance": provenance(self),
            "history": self.history, "legs": self.legs, "balance_ema": dict(self.balance_ema), "format": FORMAT_VERSION,
        }

    def save(self, path):
        """Write atomically: a temporary file renamed over the old one, never a half-written checkpoint."""
        return atomic_write(path, saved_bytes(self.state()))

    def load(self, path):
        """Resume exactly: the checkpoint must be a training checkpoint of this very run (same config,
        except where it runs: ``RUNTIME`` fields); anything else is refused, naming the fields."""
        state = read_checkpoint(path, kind="training")
        check_same_run(state["config"], self.config, path)
        self.model.load_state_dict(state["model"])
        self.discriminators.load_state_dict(state["discriminators"])
        self.optimiser.load_state_dict(state["optimiser"])
        if self.d_optimiser is not None and state["d_optimiser"] is not None:
            self.d_optimiser.load_state_dict(state["d_optimiser"])
        self.rng.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step_count, self.history = state["step"], list(state["history"])
        self.legs = list(state.get("legs", []))  # absent before legs were recorded
        self.balance_ema = dict(state.get("balance_ema", {}))
        return self


def provenance(trainer):
    """Where a run's numbers come from: its data, feature and FID networks, size, machine and precision."""
    cfg = trainer.config
    return {
        "profile": cfg["profile"], "data_source": trainer.train_set.source,
        "feature_net": trainer.perceptual.feature_net if trainer.perceptual else "none",
        "fid_network": metrics.fid_network_source() or "unavailable",
        "parameters": count_parameters(trainer.model), "device": str(trainer.device),
        "torch": str(torch.__version__), "python": platform.python_version(), "world_size": trainer.world_size,
        "bf16_autocast": trainer.amp,
    }


def learning_rate(cfg, step):
    """The network's learning rate at ``step``: constant, or cosine from ``lr`` down to 0 at the config's
    last step. A function of the step alone, so a resumed run follows the same schedule."""
    if cfg["lr_schedule"] == "constant":
        return cfg["lr"]
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(step / cfg["steps"], 1.0)))


def check_compatible(saved, wanted, path="checkpoint", fields=ARCHITECTURE):
    """The same network and task set (what loading weights needs), compared on ``fields``."""
    differ(upgrade_config(saved), wanted, fields, path, "was made for another network or task set")


def check_same_run(saved, wanted, path="checkpoint"):
    """The same run (what an exact resume needs): every field but the ``RESUMABLE`` ones (where and how
    often it runs, and ``comparison_draws``, whose only effect is a compared recipe's ``steps``)."""
    saved = upgrade_config(saved)
    fields = sorted((set(saved) | set(wanted)) - set(RESUMABLE))
    differ(saved, wanted, fields, path, "is another run; --resume continues only the same run (start a new "
                                        "--out, or resume with the checkpoint's settings)")


def differ(saved, wanted, fields, path, why):
    mismatch = {k: (saved.get(k), wanted.get(k)) for k in fields if saved.get(k) != wanted.get(k)}
    if mismatch:
        lines = "; ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in mismatch.items())
        raise ValueError(f"{path} {why} -- {lines}")


def load_model(path, device="cpu"):
    """A trained network from a checkpoint (full or weights-only), with its config and provenance.
    A file in a folder with a sha256 manifest (the shipped networks) must match it."""
    verify(path)
    state = read_checkpoint(path)
    cfg = state["config"]
    model = model_from_config(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit the network its config describes ({str(err)[:300]}); "
                         "the file is damaged or its config was changed") from None
    return model.to(device).eval(), cfg, state.get("provenance", {})
