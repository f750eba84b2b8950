"""The training engine: one network over a task set, single tasks and mixes, the paper's methods 1-3.

Each step draws one job (a task or a mix; uniformly, as the authors do, unless ``task_weights`` says
otherwise) for the whole batch, or with ``mixed_batch=True`` one job per sample, run in a single forward
pass with per-sample task vectors. Methods: 1 = single tasks only (mixes only at inference);
2 = mixes trained with L_A + L_B; 3 = mixes trained with L2 to made teacher images.
"""
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from filmmtl import distributed, losses, metrics
from filmmtl.checkpoints import FORMAT_VERSION, read_checkpoint, saved_bytes, upgrade_config, verify
from filmmtl.data import load_dataset
from filmmtl.evaluate import evaluate
from filmmtl.files import atomic_write, check_writable
from filmmtl.config import ARCHITECTURE, RESUMABLE, model_options
from filmmtl.models import build, count_parameters
from filmmtl.profiles import make_config, training_jobs, validate_config
from filmmtl.tasks import MIXES, TASKS, TaskSpace, job_target, make_input, method2_loss

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


class Trainer:
    """Builds model, discriminators, losses, optimisers and data from one config (see ``profiles``)."""

    def __init__(self, config=None, quiet=False, **overrides):
        self.config = make_config(**overrides) if config is None else validate_config(dict(config))
        cfg = self.config
        self.quiet = quiet
        self.rank, self.world_size = distributed.world()
        self.device = distributed.local_device(resolve_device(cfg["device"]))
        if self.world_size > 1:
            distributed.shard(cfg["batch_size"], self.rank, self.world_size)  # refuses an uneven split now
            if cfg["mixed_batch"]:
                raise ValueError("mixed_batch=True is for one process; under torchrun every process trains one "
                                 "job per step (its shard of the global batch)")
            self.quiet = quiet or self.rank > 0
        self.space = TaskSpace(cfg["tasks"])
        torch.manual_seed(cfg["seed"])
        self.model = model_from_config(cfg).to(self.device)
        if cfg["mixes"] and cfg["method"] in (2, 3) and not getattr(self.model, "can_mix", True):
            raise ValueError(f"{cfg['model']} runs one task at a time and cannot learn mixes; "
                             "train it with method=1 or without mixes")
        if cfg["model"] == "piggyback":
            if not cfg["base_checkpoint"]:
                raise ValueError("piggyback needs base_checkpoint: a plain 'johnson' network trained on one "
                                 "task (the paper: completion for Piggyback1, segmentation for Piggyback2)")
            base = read_checkpoint(cfg["base_checkpoint"])  # its config upgraded on read
            design = ("width", "input_skip", "feature_skips", "output_scale", "output_gate")
            mismatch = {k: (base["config"][k], cfg[k]) for k in design if base["config"][k] != cfg[k]}
            if mismatch:
                raise ValueError(f"piggyback's base {cfg['base_checkpoint']} was built with another backbone "
                                 f"(base, piggyback): {mismatch}; train the base with the same design")
            self.model.load_base(base["model"])
        self.discriminators = torch.nn.ModuleDict({
            k: losses.PatchDiscriminator(width=cfg["width"]) for k in self.space
            if "adversarial" in TASKS[k].losses and cfg["adversarial_weight"] > 0}).to(self.device)
        self.perceptual = None
        if any(TASKS[k].style for k in self.space):
            self.perceptual = losses.PerceptualLoss(cfg["feature_net"], content_scale=cfg["content_scale"])
            self.perceptual.to(self.device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.d_optimiser = (torch.optim.Adam(self.discriminators.parameters(), lr=cfg["discriminator_lr"],
                                             betas=(0.5, 0.999)) if len(self.discriminators) else None)
        self.generator = torch.Generator().manual_seed(cfg["seed"])
        self.jobs = training_jobs(cfg)
        weights = cfg["task_weights"] or {}
        self.job_weights = torch.tensor([float(weights.get(j, 1.0)) for j in self.jobs])
        self.balance_ema = {}  # job -> EMA of its gradient norm (balance="grad_norm")
        self.step_count = 0
        self.history = []
        # One entry per fit() call (a "leg": resumed runs have several), saved with every checkpoint: its
        # steps, seconds and precision, so that a run resumed across machines still reports its wall time.
        self.legs = []
        self.train_set = load_dataset(cfg["data"], "train", cfg["size"], cfg["n_train"], cfg["data_root"],
                                      cfg["data_seed"])
        # Training never sees the test split: its curves and every choice made from them use validation.
        self.val_set = load_dataset(cfg["data"], "val", cfg["size"], cfg["n_val"], cfg["data_root"], cfg["data_seed"])
        cuda = self.device.type == "cuda"
        self.amp = cuda if cfg["amp"] == "auto" else bool(cfg["amp"])  # bf16 on a CPU: opt in (profiles.py)
        if (cfg["channels_last"] == "auto" and cuda) or cfg["channels_last"] is True:
            self.model.to(memory_format=torch.channels_last)
        # The network as trained: wrapped in DistributedDataParallel under torchrun (unused parameters
        # exist: a routed baseline runs one sub-network per step).
        self.network = (torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=True)
                        if self.world_size > 1 else self.model)

    # ------------------------------------------------------------ provenance

    def provenance(self):
        cfg = self.config
        return {
            "profile": cfg["profile"], "data_source": self.train_set.source,
            "feature_net": self.perceptual.feature_net if self.perceptual else "none",
            "fid_network": metrics.fid_network_source() or "unavailable",
            "parameters": count_parameters(self.model), "device": str(self.device),
            "torch": str(torch.__version__), "python": platform.python_version(), "world_size": self.world_size,
            "bf16_autocast": self.amp,
        }

    # ------------------------------------------------------------ one step

    def vector(self, job):
        return self.space.vector(job).to(self.device)

    def stylise(self, key, images):
        """The network's own style output (no gradient): the style part of method 3's teachers."""
        with torch.no_grad():
            return self.model(images, self.vector(key))

    def task_loss(self, key, output, images, masks, region=None):
        """Task ``key``'s reconstruction-type loss (L2 or perceptual) of ``output`` for clean ``images``.
        With a ``region`` (completion's hole) its pixels weigh ``hole_weight`` against 1 outside."""
        task = TASKS[key]
        if task.style:
            return self.perceptual(output, images, task.style)
        target = job_target(key, images, masks)
        weight = self.config["hole_weight"]
        if region is None or weight == 1:
            return F.mse_loss(output, target)
        pixels = 1 + (weight - 1) * region.to(output.dtype)
        return ((output - target).square() * pixels).sum() / (pixels.sum() * output.shape[1])

    def draw_jobs(self, batch_size):
        if self.config["mixed_batch"]:
            picks = torch.multinomial(self.job_weights, batch_size, replacement=True, generator=self.generator)
        else:
            picks = torch.multinomial(self.job_weights, 1, generator=self.generator).expand(batch_size)
        return [self.jobs[i] for i in picks.tolist()]

    def step(self):
        """One optimisation step on the global batch (this process's shard of it under torchrun); returns
        {job: loss} for the jobs it trained, averaged over the global batch."""
        cfg = self.config
        index = torch.randint(len(self.train_set), (cfg["batch_size"],), generator=self.generator)
        images, masks = (t.to(self.device) for t in self.train_set.batch(index))
        jobs = self.draw_jobs(cfg["batch_size"])
        images = self.noisy_identity(images, jobs)
        groups = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job, []).append(i)
        parts = []  # (job, sample indices, inputs, region or None) over the global batch, grouped by job
        for job, idx in groups.items():
            idx = torch.tensor(idx, device=self.device)
            inputs, region = make_input(job.split("+"), images[idx], self.generator)
            parts.append((job, idx, inputs, region))
        inputs = torch.cat([p[2] for p in parts])
        order = torch.cat([p[1] for p in parts])
        c = torch.stack([self.vector(job) for job, idx, *_ in parts for _ in range(len(idx))])
        images, masks = images[order], masks[order]
        mine = distributed.shard(len(jobs), self.rank, self.world_size)
        inputs, c, images, masks = inputs[mine], c[mine], images[mine], masks[mine]
        parts = self.shard_parts(parts, mine)
        with torch.autocast(self.device.type, enabled=self.amp, dtype=torch.bfloat16):
            output = self.network(inputs, c).float()
        total, start = 0.0, 0
        sums = torch.zeros(2 * len(groups), device=self.device)  # per job: loss x samples, samples
        for job, n, part_inputs, region in parts:
            sl = slice(start, start + n)
            start += n
            loss = self.job_loss(job, output[sl], images[sl], masks[sl], part_inputs, region)
            k = list(groups).index(job)
            sums[2 * k], sums[2 * k + 1] = loss.detach() * n, n
            total = total + loss * n / len(inputs)
        sums = distributed.total(sums, self.world_size)
        logged = {job: float(sums[2 * k] / sums[2 * k + 1]) for k, job in enumerate(groups)}
        overall = float(sums[0::2].sum() / sums[1::2].sum())
        if not math.isfinite(overall) or overall > cfg["max_loss"]:
            raise NonFiniteLoss(f"the loss became {overall:.4g} at step {self.step_count} on {list(logged)} "
                                f"(diverged: not finite or above max_loss={cfg['max_loss']:g}); the run stopped "
                                "and the last good checkpoint is kept. Lower lr or check the data")
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        if cfg["balance"] == "grad_norm":
            self.balance_gradient(jobs[0])
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(cfg, self.step_count)
        self.optimiser.step()
        self.update_discriminators(parts, output.detach(), images, masks)
        self.step_count += 1
        return logged

    def noisy_identity(self, images, jobs):
        """Each reconstruction sample becomes, with probability ``identity_noise``, restoration's noisy
        image: its input and its target. Why: trained on clean images only, c = 0 smooths a noisy input
        (the network shipped before removed a quarter of the noise's energy there), so the restoration
        slider started part of the way to the clean image. Draws nothing when the option is 0 (older runs reproduce)."""
        p = self.config["identity_noise"]
        recon = [i for i, job in enumerate(jobs) if job == "reconstruction"]
        if not p or not recon:
            return images
        picked = torch.tensor(recon)[torch.rand(len(recon), generator=self.generator) < p].to(images.device)
        images = images.clone()
        images[picked] = TASKS["restoration"].make_input(images[picked], self.generator)[0]
        return images

    @staticmethod
    def shard_parts(parts, mine):
        """[(job, samples in this shard, their inputs, their region or None)] for the shard ``mine`` of the
        job-ordered batch."""
        out, start = [], 0
        for job, idx, inputs, region in parts:
            lo, hi = max(start, mine.start), min(start + len(idx), mine.stop)
            if hi > lo:
                out.append((job, hi - lo, inputs[lo - start:hi - start],
                            None if region is None else region[lo - start:hi - start]))
            start += len(idx)
        return out

    def balance_gradient(self, job):
        """Per-job gradient balancing: scale this step's gradient by (mean over jobs of an EMA of each
        job's gradient norm) / (this job's), at most ``balance_cap`` times. Why: all jobs share one Adam,
        and the near-identity tasks' gradients are ~10x smaller than the styles' (restoration 0.15 vs Gogh
        1.9 on the shipped network), so without it they barely move the shared weights."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        previous = self.balance_ema.get(job)
        self.balance_ema[job] = norm if previous is None else BALANCE_DECAY * previous + (1 - BALANCE_DECAY) * norm
        mean = sum(self.balance_ema.values()) / len(self.balance_ema)
        scale = min(mean / max(self.balance_ema[job], 1e-12), self.config["balance_cap"])
        for g in grads:
            g.mul_(scale)

    def job_loss(self, job, output, images, masks, inputs, region=None):
        cfg = self.config
        if job in MIXES:
            mix = MIXES[job]
            if cfg["method"] == 2:
                return method2_loss(mix, output, images, masks, self.task_loss)
            return F.mse_loss(output, job_target(job, images, masks, self.stylise))
        loss = self.task_loss(job, output, images, masks, region)
        if job in self.discriminators:
            w = cfg["adversarial_weight"]
            adv = losses.generator_adversarial_loss(self.discriminators[job], inputs, output)
            loss = (1 - w) * loss + w * adv
        return loss

    def update_discriminators(self, parts, output, images, masks):
        if self.d_optimiser is None:
            return
        start, d_loss = 0, 0.0
        for job, n, inputs, _ in parts:
            sl = slice(start, start + n)
            start += n
            if job in self.discriminators:
                target = job_target(job, images[sl], masks[sl])
                d_loss = d_loss + losses.discriminator_loss(self.discriminators[job], inputs, output[sl], target)
        if torch.is_tensor(d_loss):
            self.d_optimiser.zero_grad(set_to_none=True)
            d_loss.backward()
            distributed.average_gradients(self.discriminators.parameters(), self.world_size)
            self.d_optimiser.step()

    # ------------------------------------------------------------ the loop

    def fit(self, steps=None, checkpoint=None):
        """Train until ``steps`` total steps (default and at most the config's, where the learning-rate
        schedule ends); validate and checkpoint periodically."""
        cfg = self.config
        steps = cfg["steps"] if steps is None else steps
        main = self.rank == 0  # under torchrun only rank 0 validates and writes
        if checkpoint and main:
            check_writable(checkpoint)
        if steps > cfg["steps"]:
            raise ValueError(f"fit(steps={steps}) goes past the config's steps={cfg['steps']}, where the "
                             f"learning rate reaches its end; build the Trainer with steps={steps} instead")
        bar = tqdm(total=steps, initial=self.step_count, disable=self.quiet, desc="training")
        started = time.perf_counter()
        leg = {"from_step": self.step_count, "to_step": self.step_count, "seconds": 0.0,
               "processor": processor_name(self.device), "device": str(self.device),
               "bf16_autocast": self.amp}
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

    # ------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, n=None, fid=0, batch_size=32, jobs=None):
        """Metrics per task and mix on the validation split (the first ``n`` images), inputs seeded for
        repeatability. Also the trivial answer's scores (the degraded input itself) for comparison."""
        return evaluate(self.model, self.space, self.val_set, jobs or self.jobs + [
            m for m in self.config["mixes"] if m not in self.jobs], self.perceptual, n=n, fid=fid,
            batch_size=batch_size, device=self.device)

    # ------------------------------------------------------------ checkpoints

    def state(self):
        return {
            "model": self.model.state_dict(), "discriminators": self.discriminators.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "d_optimiser": self.d_optimiser.state_dict() if self.d_optimiser else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "step": self.step_count, "config": self.config, "provenance": self.provenance(),
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
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step_count = state["step"]
        self.history = list(state["history"])
        self.legs = list(state.get("legs", []))  # absent before legs were recorded
        self.balance_ema = dict(state.get("balance_ema", {}))
        return self


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


def model_from_config(cfg):
    cfg = upgrade_config(cfg)
    return build(cfg["model"], n_tasks=len(cfg["tasks"]), **model_options(cfg))


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
